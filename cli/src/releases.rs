//! `releases`, `releases:info` and `releases:rollback`.

use std::time::SystemTime;

use serde_json::Value;

use ouro_types::{App, Release, ReleaseCreate};

use crate::client::{Client, app_path, decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::{ago, columns, heading, key_values, when};

pub fn list(ctx: &Ctx, num: usize) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/releases"))?;
    if ctx.json {
        return Ok(pretty(&newest(raw, num)));
    }
    let releases: Vec<Release> = decode(raw)?;
    Ok(render_list(&app, &releases, num, SystemTime::now()))
}

/// The last `num` entries of the API's (oldest-first) list, still oldest first.
fn newest(raw: Value, num: usize) -> Value {
    match raw {
        Value::Array(mut items) => {
            let skip = items.len().saturating_sub(num);
            Value::Array(items.split_off(skip))
        }
        other => other,
    }
}

fn render_list(app: &str, releases: &[Release], num: usize, now: SystemTime) -> String {
    if releases.is_empty() {
        return format!("{app} has no releases.\n");
    }
    let current = releases.iter().find(|r| r.current).map_or_else(|| "none".to_string(), |r| format!("v{}", r.version));
    let rows: Vec<Vec<String>> = releases
        .iter()
        .rev()
        .take(num)
        .map(|r| {
            let change = match &r.failure {
                Some(failure) => format!("{} (not running: {failure})", r.description),
                None => r.description.clone(),
            };
            vec![format!("v{}", r.version), change, r.user.email.clone(), ago(&r.created_at, now)]
        })
        .collect();
    heading(&format!("{app} Releases - Current: {current}")) + &columns(&rows)
}

/// Shows one release: the one named (`v3`, `3` or an id), else the current one.
pub fn info(ctx: &Ctx, release: Option<String>) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let target = match release {
        Some(release) => release,
        None => format!("v{}", current_version(&client, &app)?),
    };
    let raw = client.get(&app_path(&app, &format!("/releases/{}", segment(&target))))?;
    ctx.show(raw, |release: Release| render_info(&release, SystemTime::now()))
}

fn render_info(release: &Release, now: SystemTime) -> String {
    let slug = release.slug.as_ref().map_or("none", |s| s.id.as_str());
    let when = when(&release.created_at, now);
    let mut rows = vec![
        ("By", release.user.email.as_str()),
        ("Change", release.description.as_str()),
        ("When", when.as_str()),
        ("Current", if release.current { "yes" } else { "no" }),
        ("Slug", slug),
        ("Status", release.status.as_str()),
    ];
    if let Some(failure) = &release.failure {
        rows.push(("Not running", failure.as_str()));
    }
    heading(&format!("Release v{}", release.version)) + &key_values(&rows)
}

/// Makes a new release from an old one: the one named, else the one before the current.
pub fn rollback(ctx: &Ctx, release: Option<String>) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let (target, version) = rollback_target(&client, &app, release)?;
    let body = ReleaseCreate { release: Some(Value::String(target)), ..ReleaseCreate::default() };
    let raw = client.post(&app_path(&app, "/releases"), &body)?;
    ctx.show(raw, |new: Release| format!("Rolling back {app} to v{version}... done, v{}\n", new.version))
}

/// What to send as `release`, and the version that it names.
fn rollback_target(client: &Client, app: &str, release: Option<String>) -> Result<(String, i64), CliError> {
    match release {
        Some(arg) => match parse_version(&arg) {
            Some(version) => Ok((format!("v{version}"), version)),
            None => {
                let found: Release = decode(client.get(&app_path(app, &format!("/releases/{}", segment(&arg))))?)?;
                Ok((arg, found.version))
            }
        },
        None => {
            let current = current_version(client, app)?;
            if current <= 1 {
                return Err(CliError::local(format!(
                    "{app} is at v{current}: there is no earlier release to roll back to"
                )));
            }
            Ok((format!("v{}", current - 1), current - 1))
        }
    }
}

fn current_version(client: &Client, app: &str) -> Result<i64, CliError> {
    let found: App = decode(client.get(&app_path(app, ""))?)?;
    found.current_release.ok_or_else(|| CliError::local(format!("{app} has no releases yet")))
}

/// `v3` or `3` → 3; anything else (a release id, say) → `None`.
fn parse_version(arg: &str) -> Option<i64> {
    let digits = arg.strip_prefix(['v', 'V']).unwrap_or(arg);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_types::{Actor, SlugRef};

    #[test]
    fn versions() {
        let cases = [
            ("v3", Some(3)),
            ("3", Some(3)),
            ("V12", Some(12)),
            ("v0", None),
            ("v", None),
            ("", None),
            ("v-1", None),
            ("+3", None),
            ("v3a", None),
            ("0196b0c6-1f6e-7c4b-9a55-2c1d3e4f5a6b", None),
            ("v99999999999999999999", None),
        ];
        for (arg, expect) in cases {
            assert_eq!(parse_version(arg), expect, "{arg:?}");
        }
    }

    fn release(version: i64, description: &str, current: bool, created_at: &str) -> Release {
        Release {
            id: format!("r{version}"),
            version,
            description: description.into(),
            status: "succeeded".into(),
            current,
            failure: None,
            slug: (version > 1).then(|| SlugRef { id: "s1".into() }),
            user: Actor { email: "admin@ouro.local".into() },
            created_at: created_at.into(),
        }
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-26T03:30:00Z").unwrap()
    }

    #[test]
    fn listing_is_newest_first_and_limited() {
        let releases = [
            release(1, "Initial release", false, "2026-11-20T03:30:00Z"),
            release(2, "Set A config var", false, "2026-11-26T00:30:00Z"),
            release(3, "Rollback to v1", true, "2026-11-26T03:28:00Z"),
        ];
        let expect = "=== demo Releases - Current: v3\n\
            v3  Rollback to v1    admin@ouro.local  2m ago\n\
            v2  Set A config var  admin@ouro.local  3h ago\n";
        assert_eq!(render_list("demo", &releases, 2, now()), expect);
        assert_eq!(render_list("demo", &[], 15, now()), "demo has no releases.\n");
    }

    #[test]
    fn json_listing_keeps_the_newest() {
        let raw = serde_json::json!([1, 2, 3]);
        assert_eq!(newest(raw.clone(), 2), serde_json::json!([2, 3]));
        assert_eq!(newest(raw.clone(), 15), raw);
        assert_eq!(newest(raw, 0), serde_json::json!([]));
    }

    #[test]
    fn info_block() {
        let expect = "=== Release v2\n\
            By:      admin@ouro.local\n\
            Change:  Set A config var\n\
            When:    2026-11-26T00:30:00Z (3h ago)\n\
            Current: no\n\
            Slug:    s1\n\
            Status:  succeeded\n";
        assert_eq!(render_info(&release(2, "Set A config var", false, "2026-11-26T00:30:00Z"), now()), expect);
    }
}
