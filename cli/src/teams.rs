//! `ouro teams`, `teams:create`, `teams:destroy`, `members`, `members:add`, `members:set` and
//! `members:remove` (Heroku's words): teams of users who share the apps made in them
//! (`apps:create --team`), through `/teams` and `/teams/{team}/members`.

use serde_json::Value;

use crate::client::segment;
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::{columns, heading};

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

pub fn list(ctx: &Ctx) -> Output {
    let raw = ctx.client()?.get("/teams")?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let teams = raw.as_array().cloned().unwrap_or_default();
    if teams.is_empty() {
        return Ok("You are in no team. `ouro teams:create NAME` makes one.\n".into());
    }
    let mut rows = vec![vec!["Team".to_string(), "Role".to_string()]];
    rows.extend(teams.iter().map(|t| vec![text(&t["name"]), text(&t["role"])]));
    Ok(columns(&rows))
}

pub fn create(ctx: &Ctx, name: &str) -> Output {
    let raw = ctx.client()?.post("/teams", &serde_json::json!({ "name": name }))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!(
        "Creating team {}... done\nYou are its admin; `ouro members:add EMAIL -t {0}` adds others.\n",
        text(&raw["name"])
    ))
}

pub fn destroy(ctx: &Ctx, name: &str, confirm: Option<&str>) -> Output {
    if confirm != Some(name) {
        return Err(CliError::usage(format!("this deletes team {name}; run again with --confirm {name}")));
    }
    let raw = ctx.client()?.delete(&format!("/teams/{}", segment(name)))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Destroying team {name}... done\n"))
}

pub fn members(ctx: &Ctx, team: &str, role: Option<&str>) -> Output {
    let mut raw = ctx.client()?.get(&format!("/teams/{}/members", segment(team)))?;
    if let (Some(role), Some(all)) = (role, raw.as_array_mut()) {
        all.retain(|m| m["role"].as_str() == Some(role));
    }
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let rows: Vec<Vec<String>> =
        raw.as_array().into_iter().flatten().map(|m| vec![text(&m["user"]["email"]), text(&m["role"])]).collect();
    if rows.is_empty() {
        return Ok("No members found.\n".into());
    }
    Ok(heading(&format!("Members of {team}")) + &columns(&rows))
}

/// `members:add` and `members:set`: both set the role (Heroku's `PUT /teams/{team}/members`).
pub fn set(ctx: &Ctx, email: &str, team: &str, role: &str) -> Output {
    let body = serde_json::json!({ "user": email, "role": role });
    let raw = ctx.client()?.put_json(&format!("/teams/{}/members", segment(team)), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Adding {email} to {team} as {}... done\n", text(&raw["role"])))
}

pub fn remove(ctx: &Ctx, email: &str, team: &str) -> Output {
    let raw = ctx.client()?.delete(&format!("/teams/{}/members/{}", segment(team), segment(email)))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Removing {email} from {team}... done\n"))
}
