//! `pg:psql`, `pg:backups`, `pg:backups:capture`, `pg:backups:restore` and
//! `pg:credentials:rotate`: a PostgreSQL add-on's database, through a tunnel (`tunnel.rs`) or
//! through the API.

use std::io::{self, IsTerminal};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use ouro_types::{Addon, AddonBackup};

use crate::client::{app_path, decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::credentials;
use crate::error::CliError;
use crate::table::{columns, heading, when};
use crate::tunnel::{self, ServerUrl};

/// The attachment that the commands act on when no add-on is named.
const DEFAULT_ADDON: &str = "DATABASE";
/// A capture or a restore answers once the dump is stored or loaded.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// `ouro pg:psql [ADDON] [-c SQL]`: the real `psql` on the add-on's database; its exit code
/// is returned.
pub fn psql(ctx: &Ctx, addon: Option<&str>, sql: Option<&str>) -> Result<u8, CliError> {
    let program = tunnel::find_program("psql").ok_or_else(|| {
        CliError::local("psql not found: install PostgreSQL's client (apt install postgresql-client)")
    })?;
    let addon = addon.unwrap_or(DEFAULT_ADDON);
    let (url, port) = tunnel::forward(ctx, addon, &["postgres", "postgresql"], "a PostgreSQL database")?;
    let mut command = Command::new(program);
    command.arg(local_url(&url, port));
    if let Some(sql) = sql {
        command.args(["-c", sql]);
    }
    if let Some(password) = password(&url) {
        command.env("PGPASSWORD", password);
    }
    tunnel::run_client(command, "psql")
}

/// The database's URL with the tunnel's end (127.0.0.1:`port`) for host, without the
/// password (it goes in `PGPASSWORD`) and without TLS (the tunnel carries the bytes as they
/// are). Options that would override the host or carry the password are dropped.
pub(crate) fn local_url(url: &ServerUrl, port: u16) -> String {
    let user = if url.user.is_empty() { String::new() } else { format!("{}@", url.user) };
    let mut options: Vec<&str> = url
        .query
        .split('&')
        .filter(|o| !o.is_empty() && !matches!(option_name(o), "sslmode" | "host" | "hostaddr" | "port" | "password"))
        .collect();
    options.push("sslmode=disable");
    format!("postgresql://{user}127.0.0.1:{port}{}?{}", url.path, options.join("&"))
}

/// The password from the URL's userinfo, else from a `password=` option.
pub(crate) fn password(url: &ServerUrl) -> Option<String> {
    url.password.clone().or_else(|| {
        url.query
            .split('&')
            .find(|o| option_name(o) == "password")
            .map(|o| tunnel::percent_decode(o.split_once('=').map_or("", |(_, value)| value)))
    })
}

fn option_name(option: &str) -> &str {
    option.split_once('=').map_or(option, |(name, _)| name)
}

pub fn backups(ctx: &Ctx, addon: Option<&str>) -> Output {
    let addon = addon.unwrap_or(DEFAULT_ADDON);
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&backups_path(&app, addon))?;
    ctx.show(raw, |backups: Vec<AddonBackup>| render_backups(&app, addon, &backups, SystemTime::now()))
}

fn render_backups(app: &str, addon: &str, backups: &[AddonBackup], now: SystemTime) -> String {
    if backups.is_empty() {
        return format!("{addon} has no backups: `{}` captures one.\n", hint("pg:backups:capture", addon, app));
    }
    let rows: Vec<Vec<String>> =
        backups.iter().map(|b| vec![b.name.clone(), when(&b.created_at, now), human_size(b.size)]).collect();
    heading(&format!("{addon} Backups")) + &columns(&rows)
}

/// `ouro pg:backups:capture [ADDON]`: a dump of the database, stored by the platform.
pub fn capture(ctx: &Ctx, addon: Option<&str>) -> Output {
    let addon = addon.unwrap_or(DEFAULT_ADDON);
    let app = ctx.app()?;
    note(&format!("Backing up {addon} on {app}; this may take a while..."));
    let raw = post_slowly(&backups_path(&app, addon))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let backup: AddonBackup = decode(raw)?;
    Ok(format!("Backing up {addon} to {}... done\n", backup.name))
}

/// `ouro pg:backups:restore [BACKUP] [ADDON] --confirm APP`: replaces the database's data
/// with a backup's (default: the latest one).
pub fn restore(ctx: &Ctx, backup: Option<&str>, addon: Option<&str>, confirm: Option<&str>) -> Output {
    let addon = addon.unwrap_or(DEFAULT_ADDON);
    let app = ctx.app()?;
    if confirm != Some(app.as_str()) {
        let what = backup.unwrap_or("the latest backup");
        return Err(CliError::usage(format!(
            "restoring {what} overwrites all data in {addon} on {app} with the backup's: \
             run again with --confirm {app}"
        )));
    }
    let backup = match backup {
        Some(backup) => backup.to_string(),
        None => {
            let backups: Vec<AddonBackup> = decode(ctx.client()?.get(&backups_path(&app, addon))?)?;
            let latest = backups.last().ok_or_else(|| {
                CliError::local(format!(
                    "{addon} on {app} has no backups to restore: `{}` captures one",
                    hint("pg:backups:capture", addon, &app)
                ))
            })?;
            latest.name.clone()
        }
    };
    note(&format!("Restoring {backup} to {addon} on {app}; this may take a while..."));
    let raw = post_slowly(&(backups_path(&app, addon) + &format!("/{}/restore", segment(&backup))))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Restoring {backup} to {addon} on {app}... done\n"))
}

/// `ouro pg:credentials:rotate [ADDON] --confirm APP`: new credentials for the database (a new
/// password; a server made before app roles gets a role of the app's, no longer the
/// superuser); the server restarts, and every attached app gets the new URL in a release.
pub fn rotate_credentials(ctx: &Ctx, addon: Option<&str>, confirm: Option<&str>) -> Output {
    let addon = addon.unwrap_or(DEFAULT_ADDON);
    let app = ctx.app()?;
    if confirm != Some(app.as_str()) {
        return Err(CliError::usage(format!(
            "rotating the credentials of {addon} restarts its server and cuts connections made with the old \
             ones; the attached apps restart with the new URL: run again with --confirm {app}"
        )));
    }
    note(&format!("Rotating the credentials of {addon} on {app}; the server restarts..."));
    let raw = post_slowly(&app_path(&app, &format!("/addons/{}/actions/rotate-credentials", segment(addon))))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let rotated: Addon = decode(raw)?;
    Ok(format!("Rotating the credentials of {}... done\n", rotated.name))
}

fn backups_path(app: &str, addon: &str) -> String {
    app_path(app, &format!("/addons/{}/backups", segment(addon)))
}

/// `ouro COMMAND [ADDON] -a APP`, with ADDON only when it is not the default.
fn hint(command: &str, addon: &str, app: &str) -> String {
    let addon = if addon == DEFAULT_ADDON { String::new() } else { format!(" {addon}") };
    format!("ouro {command}{addon} -a {app}")
}

/// A line on stderr for a person waiting at a terminal; scripts get none.
fn note(text: &str) {
    if io::stderr().is_terminal() {
        eprintln!("{text}");
    }
}

/// `512 B`, `7.9 kB`, `1.2 GB`.
fn human_size(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", units[unit]) }
}

/// `POST`s an empty body and waits up to [`BACKUP_TIMEOUT`] for the answer: the client of
/// `client.rs` gives up after a minute.
fn post_slowly(path: &str) -> Result<Value, CliError> {
    let client = crate::client::Client::with_timeout(&credentials::load()?, BACKUP_TIMEOUT);
    client.post_empty(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::parse_server_url;
    use ouro_types::AppRef;

    #[test]
    fn psql_urls() {
        let check = |url: &str, expect: &str, expect_password: Option<&str>| {
            let url = parse_server_url(url).unwrap();
            assert_eq!(local_url(&url, 40123), expect);
            assert_eq!(password(&url).as_deref(), expect_password);
        };
        check("postgres://u1:pw@db-1:5000/d1", "postgresql://u1@127.0.0.1:40123/d1?sslmode=disable", Some("pw"));
        check(
            "postgresql://u%40x:p%2Fw@db:5432/my%20db?sslmode=require&application_name=a",
            "postgresql://u%40x@127.0.0.1:40123/my%20db?application_name=a&sslmode=disable",
            Some("p/w"),
        );
        check(
            "postgres://db/d?host=/tmp&port=1&hostaddr=1.2.3.4&password=s%3Dx&connect_timeout=5",
            "postgresql://127.0.0.1:40123/d?connect_timeout=5&sslmode=disable",
            Some("s=x"),
        );
        check("postgres://u@db", "postgresql://u@127.0.0.1:40123?sslmode=disable", None);
        check("postgres://u:@db/d", "postgresql://u@127.0.0.1:40123/d?sslmode=disable", Some(""));
    }

    #[test]
    fn sizes() {
        let cases = [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (7_930, "7.9 kB"), (12_345_678, "12.3 MB")];
        for (bytes, expect) in cases {
            assert_eq!(human_size(bytes), expect, "{bytes}");
        }
    }

    #[test]
    fn backup_listing() {
        let now = humantime::parse_rfc3339("2026-11-26T03:30:00Z").unwrap();
        let backup = |name: &str, size: i64, created_at: &str| AddonBackup {
            id: format!("id-{name}"),
            name: name.into(),
            size,
            addon: AppRef { name: "postgresql-x-1".into() },
            created_at: created_at.into(),
        };
        let backups = [backup("b001", 512, "2026-11-25T03:30:00Z"), backup("b002", 7_930, "2026-11-26T03:25:00Z")];
        assert_eq!(
            render_backups("demo", "DATABASE", &backups, now),
            "=== DATABASE Backups\n\
             b001  2026-11-25T03:30:00Z (1d ago)  512 B\n\
             b002  2026-11-26T03:25:00Z (5m ago)  7.9 kB\n"
        );
        assert_eq!(
            render_backups("demo", "DATABASE", &[], now),
            "DATABASE has no backups: `ouro pg:backups:capture -a demo` captures one.\n"
        );
        assert_eq!(
            render_backups("demo", "postgresql-x-1", &[], now),
            "postgresql-x-1 has no backups: `ouro pg:backups:capture postgresql-x-1 -a demo` captures one.\n"
        );
    }
}
