//! `ouro stack`: the stack dynos run on (Heroku's `heroku stack`), its image and how old its
//! updates are: the stack follows Debian's security suite when it is built.

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
        }];
        assert_eq!(
            render(&stacks, now),
            "=== Stacks\n* debian-13  ouro/stack:trixie-5640189d52c3  updates installed 2026-12-07T06:31:00Z (3d ago)\n"
        );
        assert!(render(&[], now).starts_with("No stack reported yet"));
    }
}
