//! `apps`, `apps:create`, `apps:info`, `apps:destroy` and `open`.

use std::process::{Command, Stdio};
use std::time::SystemTime;

use ouro_types::{App, AppCreate};

use crate::client::{app_path, decode};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::git;
use crate::table::{heading, key_values, when};

/// Yours, your teams' and those shared with you; with `--team`, that team's only.
pub fn list(ctx: &Ctx, team: Option<&str>) -> Output {
    let mut raw = ctx.client()?.get("/apps")?;
    if let (Some(team), Some(apps)) = (team, raw.as_array_mut()) {
        apps.retain(|a| a["team"]["name"].as_str() == Some(team));
    }
    ctx.show(raw, |apps: Vec<App>| render_list(&apps))
}

fn render_list(apps: &[App]) -> String {
    if apps.is_empty() {
        return "You have no apps.\n".to_string();
    }
    let names: String = apps.iter().map(|app| format!("{}\n", app.name)).collect();
    heading("Apps") + &names
}

/// Creates the app named by the argument or `-a` (the API picks a name when neither is
/// given), then adds the `ouro` git remote when the directory is a repository without one.
pub fn create(ctx: &Ctx, name: Option<String>, team: Option<String>) -> Output {
    let name = match (name, ctx.app_flag()) {
        (Some(name), Some(flag)) if name != flag => {
            return Err(CliError::usage(format!("two app names given: {name} and {flag}")));
        }
        (Some(name), _) => Some(name),
        (None, flag) => flag.map(str::to_string),
    };
    let raw = ctx.client()?.post("/apps", &AppCreate { name, team })?;
    let app: App = decode(raw.clone())?;
    let remote_note = add_git_remote(&app.git_url);
    if ctx.json {
        if let Some(note) = remote_note {
            eprintln!("{note}");
        }
        return Ok(pretty(&raw));
    }
    let mut out = format!("Creating {}... done\n{} | {}\n", app.name, app.web_url, app.git_url);
    if let Some(note) = remote_note {
        out.push_str(&note);
        out.push('\n');
    }
    Ok(out)
}

/// Adds the `ouro` remote if it is missing, and lets `git push` use the stored token (see
/// `git:remote`). The app exists by now, so a git failure is
/// only a warning.
fn add_git_remote(git_url: &str) -> Option<String> {
    if !git::inside_work_tree() || git::has_remote() {
        return None;
    }
    match git::add_remote(git_url).and_then(|()| {
        crate::git_remote::use_ouro_credentials(git_url).map_err(|e| format!("git credential helper: {e}"))
    }) {
        Ok(()) => Some(format!("Git remote {} added", git::REMOTE)),
        Err(e) => {
            eprintln!("ouro: warning: {e}");
            None
        }
    }
}

pub fn info(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, ""))?;
    ctx.show(raw, |app: App| render_info(&app, SystemTime::now()))
}

fn render_info(app: &App, now: SystemTime) -> String {
    let release = app.current_release.map_or_else(|| "none".to_string(), |v| format!("v{v}"));
    let released = app.released_at.as_deref().map_or_else(|| "never".to_string(), |t| when(t, now));
    let mut rows = vec![
        ("Git URL", app.git_url.clone()),
        ("Web URL", app.web_url.clone()),
        ("Owner", app.owner.email.clone()),
        ("Release", release),
        ("Created", when(&app.created_at, now)),
        ("Released", released),
    ];
    if let Some(team) = &app.team {
        // Heroku's words: a team's app is the team's; who made it is only recorded.
        rows[2] = ("Team", team.name.clone());
        rows.insert(3, ("Made by", app.owner.email.clone()));
    }
    heading(&app.name) + &key_values(&rows)
}

/// Deletes the app, but only when `--confirm` names it (and agrees with `-a`).
pub fn destroy(ctx: &Ctx, confirm: Option<String>) -> Output {
    let app = match (ctx.app_flag(), confirm.as_deref()) {
        (Some(flag), Some(confirm)) if flag == confirm => flag.to_string(),
        (None, Some(confirm)) => confirm.to_string(),
        (Some(flag), _) => return Err(refusal(flag)),
        (None, None) => return Err(refusal(&ctx.app()?)),
    };
    let raw = ctx.client()?.delete(&app_path(&app, ""))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Destroying {app}... done\n"))
}

/// Prints the app's web URL (with `path` appended) and, when `$BROWSER` is set, starts it
/// on that URL without waiting for it.
pub fn open(ctx: &Ctx, path: Option<String>) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, ""))?;
    let found: App = decode(raw.clone())?;
    let url = with_path(&found.web_url, path.as_deref());
    if let Some((program, args)) = std::env::var("BROWSER").ok().and_then(|b| browser_command(&b, &url)) {
        let started =
            Command::new(&program).args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        // Not waited for: the browser outlives `ouro`, and init reaps it.
        if let Err(e) = started {
            eprintln!("ouro: warning: cannot start the browser `{program}` ($BROWSER): {e}");
        }
    }
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("{url}\n"))
}

/// `web_url` with `path` after exactly one `/`.
fn with_path(web_url: &str, path: Option<&str>) -> String {
    match path {
        None | Some("") => web_url.to_string(),
        Some(path) => format!("{}/{}", web_url.trim_end_matches('/'), path.trim_start_matches('/')),
    }
}

/// `$BROWSER` as a program and its arguments: split at spaces, with the URL in place of a
/// `%s` argument, else after the others. Empty: none.
fn browser_command(browser: &str, url: &str) -> Option<(String, Vec<String>)> {
    let mut words = browser.split_whitespace();
    let program = words.next()?.to_string();
    let mut args: Vec<String> = words.map(str::to_string).collect();
    match args.iter_mut().find(|a| *a == "%s") {
        Some(slot) => *slot = url.to_string(),
        None => args.push(url.to_string()),
    }
    Some((program, args))
}

fn refusal(app: &str) -> CliError {
    CliError::usage(format!("this deletes {app} and everything in it; run again with --confirm {app}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_types::Owner;

    fn app(name: &str) -> App {
        App {
            id: "id".into(),
            name: name.into(),
            owner: Owner { id: "u".into(), email: "admin@ouro.local".into() },
            team: None,
            web_url: format!("http://{name}.ouro.localhost"),
            git_url: format!("http://127.0.0.1:7700/git/{name}.git"),
            created_at: "2026-11-26T00:25:55.123456Z".into(),
            updated_at: "2026-11-26T00:25:55.123456Z".into(),
            released_at: Some("2026-11-26T01:25:55Z".into()),
            current_release: Some(3),
        }
    }

    #[test]
    fn lists() {
        assert_eq!(render_list(&[]), "You have no apps.\n");
        assert_eq!(render_list(&[app("one"), app("two")]), "=== Apps\none\ntwo\n");
    }

    #[test]
    fn web_urls() {
        let cases = [
            ("http://demo.localhost/", None, "http://demo.localhost/"),
            ("http://demo.localhost/", Some(""), "http://demo.localhost/"),
            ("http://demo.localhost/", Some("admin"), "http://demo.localhost/admin"),
            ("http://demo.localhost/", Some("/admin/x?y=1"), "http://demo.localhost/admin/x?y=1"),
            ("http://demo.localhost", Some("admin"), "http://demo.localhost/admin"),
            ("http://demo.localhost/", Some("?q=1"), "http://demo.localhost/?q=1"),
        ];
        for (web_url, path, expect) in cases {
            assert_eq!(with_path(web_url, path), expect, "{web_url} {path:?}");
        }
    }

    #[test]
    fn browsers() {
        let url = "http://demo.localhost/";
        let cases = [
            ("firefox", Some(("firefox", vec![url]))),
            ("  /usr/bin/chromium --new-window ", Some(("/usr/bin/chromium", vec!["--new-window", url]))),
            ("open -a Safari %s --background", Some(("open", vec!["-a", "Safari", url, "--background"]))),
            ("", None),
            ("   ", None),
        ];
        for (browser, expect) in cases {
            let expect = expect.map(|(p, a)| (p.to_string(), a.into_iter().map(str::to_string).collect::<Vec<_>>()));
            assert_eq!(browser_command(browser, url), expect, "{browser:?}");
        }
    }

    #[test]
    fn info_block() {
        let now = humantime::parse_rfc3339("2026-11-26T03:30:00Z").unwrap();
        let expect = "=== demo\n\
            Git URL:  http://127.0.0.1:7700/git/demo.git\n\
            Web URL:  http://demo.ouro.localhost\n\
            Owner:    admin@ouro.local\n\
            Release:  v3\n\
            Created:  2026-11-26T00:25:55Z (3h ago)\n\
            Released: 2026-11-26T01:25:55Z (2h ago)\n";
        assert_eq!(render_info(&app("demo"), now), expect);
        let mut team_app = app("demo");
        team_app.team = Some(ouro_types::TeamRef { id: "t".into(), name: "crew".into() });
        let shown = render_info(&team_app, now);
        assert!(shown.contains("Team:     crew\nMade by:  admin@ouro.local\n"), "{shown}");
        assert!(!shown.contains("Owner"), "{shown}");
    }
}
