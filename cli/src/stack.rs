//! `ouro stack`: the stack dynos run on (Heroku's `heroku stack`), its image and how old its
//! updates are: the stack follows Debian's security suite when it is built. `ouro stack:update`
//! (admins) rebuilds it with Debian's latest updates and releases every app onto it.

use std::time::SystemTime;

use ouro_types::Stack;

use crate::context::{Ctx, Output, pretty};
use crate::table::when;

pub fn show(ctx: &Ctx) -> Output {
    let raw = ctx.client()?.get("/stacks")?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let stacks: Vec<Stack> = serde_json::from_value(raw).unwrap_or_default();
    Ok(render(&stacks, SystemTime::now()))
}

pub fn update(ctx: &Ctx) -> Output {
    let raw = ctx.client()?.post(&format!("/stacks/{}/actions/update", ouro_types::STACK), &serde_json::json!({}))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(render_update(&raw))
}

fn render_update(raw: &serde_json::Value) -> String {
    let update = raw["update"]["id"].as_str().unwrap_or("?");
    let releases = raw["releases"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "Updating stack {} (update {update}): the runner rebuilds it with Debian's latest updates, then rolls each app's dynos onto it as a release.\n",
        raw["stack"].as_str().unwrap_or(ouro_types::STACK)
    );
    if releases.is_empty() {
        out.push_str("No app runs on it yet: the next deploys will.\n");
    }
    for release in &releases {
        out.push_str(&format!(
            "  {}  v{}\n",
            release["app"].as_str().unwrap_or("?"),
            release["version"].as_i64().unwrap_or(0)
        ));
    }
    out.push_str("Follow it with `ouro stack` (the update shows there once made) and `ouro ps -a APP`.\n");
    out
}

fn render(stacks: &[Stack], now: SystemTime) -> String {
    if stacks.is_empty() {
        return "No stack reported yet: the dyno runner reports it once it has made it (`ouro up`).\n".into();
    }
    let mut out = String::from("=== Stacks\n");
    for stack in stacks {
        let updated = match &stack.updated_at {
            Some(at) => format!("updates installed {}", when(at, now)),
            None => "updates: unknown (an image made before Ouro installed them)".into(),
        };
        out.push_str(&format!("* {}  {}  {updated}\n", stack.name, stack.image));
        if let Some(pending) = &stack.pending_update {
            out.push_str(&format!("  update {pending} asked for: being made, then rolled out to every app\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stack_shows_its_image_and_the_age_of_its_updates() {
        let now = humantime::parse_rfc3339("2026-12-10T06:31:00Z").unwrap();
        let stacks = [Stack {
            name: "debian-13".into(),
            image: "ouro/stack:trixie-5640189d52c3".into(),
            updated_at: Some("2026-12-07T06:31:00Z".into()),
            update: None,
            pending_update: None,
        }];
        assert_eq!(
            render(&stacks, now),
            "=== Stacks\n* debian-13  ouro/stack:trixie-5640189d52c3  updates installed 2026-12-07T06:31:00Z (3d ago)\n"
        );
        assert!(render(&[], now).starts_with("No stack reported yet"));
        let pending = [Stack { pending_update: Some("1796000000000".into()), ..stacks[0].clone() }];
        assert!(
            render(&pending, now)
                .ends_with("\n  update 1796000000000 asked for: being made, then rolled out to every app\n"),
            "{}",
            render(&pending, now)
        );
    }

    #[test]
    fn an_update_lists_the_releases_it_made() {
        let raw = serde_json::json!({
            "stack": "debian-13",
            "update": {"id": "1796000000000", "actor": "admin@ouro.local", "created_at": "2026-12-07T12:00:00Z"},
            "releases": [{"app": "shop", "version": 7}, {"app": "blog", "version": 3}],
        });
        let out = render_update(&raw);
        assert!(out.starts_with("Updating stack debian-13 (update 1796000000000)"), "{out}");
        assert!(out.contains("\n  shop  v7\n  blog  v3\n"), "{out}");
        let none = render_update(&serde_json::json!({"stack": "debian-13", "update": {"id": "1"}, "releases": []}));
        assert!(none.contains("No app runs on it yet"), "{none}");
    }
}
