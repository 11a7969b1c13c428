//! `ouro access`, `access:add`, `access:update`, `access:remove` (Heroku's words): who besides
//! its owner may do what to an app, through `/apps/{app}/collaborators`.

use ouro_types::App;

use crate::client::{app_path, decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::table::columns;

pub fn list(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let raw = client.get(&app_path(&app, "/collaborators"))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let info: App = decode(client.get(&app_path(&app, ""))?)?;
    let mut rows = match &info.team {
        // A team's app: the team's members with their roles (when the caller may see them).
        Some(team) => match client.get(&format!("/teams/{}/members", segment(&team.name))) {
            Ok(members) => members
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    let role = m["role"].as_str().unwrap_or("?");
                    vec![m["user"]["email"].as_str().unwrap_or("?").to_string(), format!("team {role}"), String::new()]
                })
                .collect(),
            Err(_) => vec![vec![format!("team {}", team.name), "owner".to_string(), String::new()]],
        },
        None => vec![vec![info.owner.email.clone(), "owner".to_string(), String::new()]],
    };
    for c in raw.as_array().cloned().unwrap_or_default() {
        let permissions: Vec<String> =
            c["permissions"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_string)).collect();
        rows.push(vec![
            c["user"]["email"].as_str().unwrap_or("?").to_string(),
            "collaborator".into(),
            permissions.join(","),
        ]);
    }
    Ok(columns(&rows))
}

/// `-p view,deploy` as a list; `None` when not given.
fn permissions(given: Option<&str>) -> Option<Vec<String>> {
    given.map(|p| p.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

pub fn add(ctx: &Ctx, email: &str, given: Option<&str>) -> Output {
    let app = ctx.app()?;
    let body = serde_json::json!({ "user": email, "permissions": permissions(given) });
    let raw = ctx.client()?.post(&app_path(&app, "/collaborators"), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Adding {email} access to the app {app} with {} permissions... done\n", listed(&raw)))
}

pub fn update(ctx: &Ctx, email: &str, given: &str) -> Output {
    let app = ctx.app()?;
    let body = serde_json::json!({ "permissions": permissions(Some(given)) });
    let raw = ctx.client()?.patch(&app_path(&app, &format!("/collaborators/{}", segment(email))), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Updating {email} in application {app} with {} permissions... done\n", listed(&raw)))
}

pub fn remove(ctx: &Ctx, email: &str) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.delete(&app_path(&app, &format!("/collaborators/{}", segment(email))))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Removing {email} access from the app {app}... done\n"))
}

fn listed(raw: &serde_json::Value) -> String {
    let names: Vec<&str> = raw["permissions"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
    names.join(", ")
}
