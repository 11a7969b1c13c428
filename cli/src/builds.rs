//! `builds` and `builds:info`: the builds that `git push` queued.

use std::time::SystemTime;

use ouro_types::Build;

use crate::client::{app_path, decode, segment};
use crate::context::{Ctx, Output};
use crate::error::CliError;
use crate::table::{ago, columns, heading, key_values, when};

pub fn list(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/builds"))?;
    ctx.show(raw, |builds: Vec<Build>| render_list(&app, &builds, SystemTime::now()))
}

fn render_list(app: &str, builds: &[Build], now: SystemTime) -> String {
    if builds.is_empty() {
        return format!("{app} has no builds yet: `git push ouro main` makes one.\n");
    }
    let rows: Vec<Vec<String>> = builds
        .iter()
        .rev()
        .map(|b| vec![b.id.clone(), b.status.to_string(), short(&b.source_blob.version), ago(&b.created_at, now)])
        .collect();
    heading(&format!("{app} Builds")) + &columns(&rows)
}

/// Shows one build: the one named, else the newest.
pub fn info(ctx: &Ctx, id: Option<String>) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let raw = match id {
        Some(id) => client.get(&app_path(&app, &format!("/builds/{}", segment(&id))))?,
        None => {
            let builds: Vec<serde_json::Value> = decode(client.get(&app_path(&app, "/builds"))?)?;
            builds
                .into_iter()
                .last()
                .ok_or_else(|| CliError::local(format!("{app} has no builds yet: `git push ouro main` makes one")))?
        }
    };
    ctx.show(raw, |build: Build| render_info(&build, SystemTime::now()))
}

fn render_info(build: &Build, now: SystemTime) -> String {
    let when = when(&build.created_at, now);
    let branch = build.source_blob.git_ref.trim_start_matches("refs/heads/");
    let rows = [
        ("Status", build.status.as_str()),
        ("Commit", build.source_blob.version.as_str()),
        ("Branch", branch),
        ("Source", build.source_blob.checksum.as_str()),
        ("When", when.as_str()),
    ];
    let mut out = heading(&format!("Build {}", build.id)) + &key_values(&rows);
    if build.output.is_empty() {
        out.push_str("No output yet.\n");
    } else {
        out += &heading("Output");
        out.push_str(&build.output);
        if !build.output.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// The first seven characters of a commit id.
fn short(commit: &str) -> String {
    commit.chars().take(7).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_types::SourceBlob;

    fn build(id: &str, status: &str, output: &str) -> Build {
        Build {
            id: id.into(),
            status: status.parse().unwrap(),
            source_blob: SourceBlob {
                checksum: "SHA256:ab".into(),
                size: 10,
                url: "http://x/apps/demo/builds/b1/source".into(),
                version: "0123456789abcdef0123456789abcdef01234567".into(),
                git_ref: "refs/heads/main".into(),
            },
            output: output.into(),
            release: None,
            created_at: "2026-11-26T03:28:00Z".into(),
            updated_at: "2026-11-26T03:28:00Z".into(),
        }
    }

    fn now() -> SystemTime {
        humantime::parse_rfc3339("2026-11-26T03:30:00Z").unwrap()
    }

    #[test]
    fn listing_is_newest_first() {
        let builds = [build("b1", "failed", "superseded"), build("b2", "pending", "")];
        let expect = "=== demo Builds\nb2  pending  0123456  2m ago\nb1  failed   0123456  2m ago\n";
        assert_eq!(render_list("demo", &builds, now()), expect);
        assert!(render_list("demo", &[], now()).contains("no builds"));
    }

    #[test]
    fn info_block() {
        let text = render_info(&build("b1", "pending", ""), now());
        assert!(text.starts_with("=== Build b1\nStatus: pending\n"), "{text}");
        assert!(text.contains("Branch: main\n") && text.ends_with("No output yet.\n"), "{text}");
        let text = render_info(&build("b1", "failed", "boom"), now());
        assert!(text.ends_with("=== Output\nboom\n"), "{text}");
    }
}
