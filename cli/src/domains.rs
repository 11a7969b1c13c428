//! `domains`, `domains:add` and `domains:remove`: the host names an app answers on, its
//! default one (`<app>.<platform domain>`) and custom ones.

use ouro_types::Domain;

use crate::client::{app_path, segment};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::heading;

pub fn list(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/domains"))?;
    ctx.show(raw, |domains: Vec<Domain>| render(&app, &domains))
}

fn render(app: &str, domains: &[Domain]) -> String {
    let hosts = |default: bool| -> String {
        domains.iter().filter(|d| (d.kind == "default") == default).map(|d| format!("{}\n", d.hostname)).collect()
    };
    let (defaults, customs) = (hosts(true), hosts(false));
    let mut out = String::new();
    if !defaults.is_empty() {
        out += &(heading(&format!("{app} Default Domain")) + &defaults);
    }
    if customs.is_empty() {
        out += &format!("{app} has no custom domains.\n");
    } else {
        out += &(heading(&format!("{app} Custom Domains")) + &customs);
    }
    out
}

pub fn add(ctx: &Ctx, hostname: &str) -> Output {
    let hostname = parse_hostname(hostname)?;
    let app = ctx.app()?;
    let raw = ctx.client()?.post(&app_path(&app, "/domains"), &serde_json::json!({ "hostname": hostname }))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Adding {hostname} to {app}... done\n"))
}

pub fn remove(ctx: &Ctx, hostname: &str) -> Output {
    let hostname = parse_hostname(hostname)?;
    let app = ctx.app()?;
    let raw = ctx.client()?.delete(&app_path(&app, &format!("/domains/{}", segment(&hostname))))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Removing {hostname} from {app}... done\n"))
}

/// The host name in lower case, as the API stores it. Only the obvious mistakes are caught
/// here (a URL, a port, spaces, empty labels); the API has the final word.
fn parse_hostname(arg: &str) -> Result<String, CliError> {
    let hostname = arg.to_ascii_lowercase();
    let fits = !hostname.is_empty()
        && hostname.len() <= 253
        && hostname.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'))
        && hostname.split('.').all(|label| !label.is_empty());
    if fits {
        Ok(hostname)
    } else {
        Err(CliError::usage(format!("`{arg}` is not a host name such as www.example.com")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(hostname: &str, kind: &str) -> Domain {
        Domain {
            id: "d".into(),
            hostname: hostname.into(),
            kind: kind.into(),
            created_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    #[test]
    fn hostnames() {
        let ok = [
            ("www.example.com", "www.example.com"),
            ("WWW.Example.COM", "www.example.com"),
            ("example.com", "example.com"),
            ("*.example.com", "*.example.com"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("localhost", "localhost"),
        ];
        for (arg, expect) in ok {
            assert_eq!(parse_hostname(arg).unwrap(), expect, "{arg}");
        }
        let long = format!("{}.com", "a".repeat(250));
        for arg in ["", "https://www.example.com", "example.com:443", "www.example.com/", "a b.com", "a..b", ".a.com"]
            .into_iter()
            .chain(["example.com.", "bücher.example", long.as_str()])
        {
            let error = parse_hostname(arg).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{arg}");
        }
    }

    #[test]
    fn listing() {
        let domains =
            [domain("demo.localhost", "default"), domain("www.example.com", "custom"), domain("example.com", "custom")];
        assert_eq!(
            render("demo", &domains),
            "=== demo Default Domain\ndemo.localhost\n=== demo Custom Domains\nwww.example.com\nexample.com\n"
        );
        assert_eq!(
            render("demo", &domains[..1]),
            "=== demo Default Domain\ndemo.localhost\ndemo has no custom domains.\n"
        );
        let raw = serde_json::json!([{
            "id": "d1", "hostname": "demo.localhost", "kind": "default", "created_at": "2026-11-26T00:25:55Z"
        }]);
        let parsed: Vec<Domain> = crate::client::decode(raw).unwrap();
        assert_eq!((parsed[0].hostname.as_str(), parsed[0].kind.as_str()), ("demo.localhost", "default"));
    }
}
