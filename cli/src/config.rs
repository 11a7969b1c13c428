//! `config`, `config:get`, `config:set` and `config:unset`.

use serde_json::Value;

use ouro_types::{App, ConfigVars, ConfigVarsPatch};

use crate::client::{Client, app_path, decode};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::{heading, key_values};

pub fn show(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/config-vars"))?;
    ctx.show(raw, |vars: ConfigVars| render_vars(&app, &vars))
}

fn render_vars(app: &str, vars: &ConfigVars) -> String {
    if vars.is_empty() {
        return format!("{app} has no config vars.\n");
    }
    let pairs: Vec<(&String, &String)> = vars.iter().collect();
    heading(&format!("{app} Config Vars")) + &key_values(&pairs)
}

/// Prints one value; a key that is not set is an error, so scripts can tell it from "".
pub fn get(ctx: &Ctx, key: &str) -> Output {
    let app = ctx.app()?;
    let vars: ConfigVars = decode(ctx.client()?.get(&app_path(&app, "/config-vars"))?)?;
    let value = vars.get(key).ok_or_else(|| CliError::local(format!("config var {key} is not set on {app}")))?;
    if ctx.json {
        return Ok(pretty(&Value::String(value.clone())));
    }
    Ok(format!("{value}\n"))
}

pub fn set(ctx: &Ctx, args: &[String]) -> Output {
    let assignments = parse_assignments(args)?;
    let app = ctx.app()?;
    let client = ctx.client()?;
    let patch: ConfigVarsPatch = assignments.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
    let raw = client.patch(&app_path(&app, "/config-vars"), &patch)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let keys: Vec<&str> = assignments.iter().map(|(k, _)| k.as_str()).collect();
    let done = release_note(&client, &app)?;
    Ok(format!("Setting {} and restarting {app}... {done}\n", keys.join(", ")) + &key_values(&assignments))
}

pub fn unset(ctx: &Ctx, keys: &[String]) -> Output {
    if keys.iter().any(String::is_empty) {
        return Err(CliError::usage("config var names cannot be empty"));
    }
    let app = ctx.app()?;
    let client = ctx.client()?;
    let patch: ConfigVarsPatch = keys.iter().map(|k| (k.clone(), None)).collect();
    let raw = client.patch(&app_path(&app, "/config-vars"), &patch)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let done = release_note(&client, &app)?;
    Ok(format!("Unsetting {} and restarting {app}... {done}\n", keys.join(", ")))
}

/// `done, vN` with the release that the change made.
fn release_note(client: &Client, app: &str) -> Result<String, CliError> {
    let app: App = decode(client.get(&app_path(app, ""))?)?;
    Ok(app.current_release.map_or_else(|| "done".to_string(), |v| format!("done, v{v}")))
}

/// `KEY=VALUE` arguments, split at the first `=`. A key given twice keeps its first place
/// and its last value.
fn parse_assignments(args: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for arg in args {
        let (key, value) = parse_assignment(arg)?;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => out.push((key, value)),
        }
    }
    Ok(out)
}

fn parse_assignment(arg: &str) -> Result<(String, String), CliError> {
    match arg.split_once('=') {
        Some(("", _)) => Err(CliError::usage(format!("config var name missing in `{arg}`: use KEY=VALUE"))),
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(CliError::usage(format!("`{arg}` is not KEY=VALUE"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn assignments() {
        let ok = [
            ("A=1", ("A", "1")),
            ("A=", ("A", "")),
            ("URL=postgres://u:p@h/db?x=y", ("URL", "postgres://u:p@h/db?x=y")),
            ("A==", ("A", "=")),
            ("A= spaced ", ("A", " spaced ")),
        ];
        for (arg, (key, value)) in ok {
            assert_eq!(parse_assignment(arg).unwrap(), (key.to_string(), value.to_string()), "{arg}");
        }
        for arg in ["A", "=1", "", "="] {
            let error = parse_assignment(arg).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{arg}");
        }
    }

    #[test]
    fn repeated_keys_keep_the_last_value() {
        let parsed = parse_assignments(&strings(&["B=1", "A=2", "B=3"])).unwrap();
        assert_eq!(parsed, vec![("B".to_string(), "3".to_string()), ("A".to_string(), "2".to_string())]);
        assert!(parse_assignments(&strings(&["A=1", "oops"])).is_err());
    }

    #[test]
    fn var_listing() {
        let vars: ConfigVars = [("A".to_string(), "1".to_string()), ("LONG".to_string(), "x=y".to_string())].into();
        assert_eq!(render_vars("demo", &vars), "=== demo Config Vars\nA:    1\nLONG: x=y\n");
        assert_eq!(render_vars("demo", &ConfigVars::new()), "demo has no config vars.\n");
    }
}
