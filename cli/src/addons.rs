//! `addons`, `addons:create`, `addons:info`, `addons:wait`, `addons:attach`, `addons:detach`,
//! `addons:destroy`: the app's add-ons (databases and the like, made by providers).

use std::io::{self, Write};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use ouro_types::{Addon, AddonState};

use crate::client::{Client, app_path, decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::error::CliError;
use crate::table::{columns, heading, key_values};

pub fn list(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/addons"))?;
    ctx.show(raw, |addons: Vec<Addon>| render_list(&app, &addons))
}

fn render_list(app: &str, addons: &[Addon]) -> String {
    if addons.is_empty() {
        return format!("{app} has no add-ons.\n");
    }
    let rows: Vec<Vec<String>> = addons
        .iter()
        .map(|a| {
            let here: Vec<&str> = a
                .attachments
                .iter()
                .filter(|t| t.app.name == app)
                .flat_map(|t| t.config_vars.iter().map(String::as_str))
                .collect();
            vec![a.name.clone(), a.plan.name.clone(), a.state.to_string(), here.join(", ")]
        })
        .collect();
    heading(&format!("{app} Add-ons")) + &columns(&rows)
}

pub fn create(ctx: &Ctx, plan: &str, as_name: Option<String>) -> Output {
    let app = ctx.app()?;
    let body = serde_json::json!({ "plan": plan, "as": as_name });
    let raw = ctx.client()?.post(&app_path(&app, "/addons"), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let addon: Addon = decode(raw)?;
    if addon.state == AddonState::Provisioning {
        return Ok(format!(
            "Creating {} on {app}... done\n{} is being created in the background: \
             `ouro addons:wait {} -a {app}` waits until it is ready.\n",
            addon.plan.name, addon.name, addon.name
        ));
    }
    let vars: Vec<&str> = addon.attachments.iter().flat_map(|t| t.config_vars.iter().map(String::as_str)).collect();
    Ok(format!(
        "Creating {} on {app}... done\n{} is ready; config vars set: {}\n",
        addon.plan.name,
        addon.name,
        vars.join(", ")
    ))
}

pub fn info(ctx: &Ctx, name: &str) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&addon_path(&app, name))?;
    ctx.show(raw, |addon: Addon| {
        let attached: Vec<String> = addon.attachments.iter().map(|t| format!("{}::{}", t.app.name, t.name)).collect();
        let rows = [
            ("Plan", addon.plan.name.clone()),
            ("State", addon.state.to_string()),
            ("Owning app", addon.app.name.clone()),
            ("Attachments", attached.join(", ")),
            ("Created", addon.created_at.clone()),
        ];
        heading(&addon.name) + &key_values(&rows)
    })
}

/// How often `addons:wait` asks.
const POLL: Duration = Duration::from_millis(500);

/// `ouro addons:wait [ADDON] [--timeout SECONDS]`: waits until the add-on (without ADDON,
/// every add-on of the app) is provisioned, one `Waiting for NAME... done` line on stderr
/// each. An add-on whose provisioning failed is gone: the API's 404 says why.
pub fn wait(ctx: &Ctx, name: Option<&str>, timeout: u64) -> Output {
    let app = ctx.app()?;
    let client = ctx.client()?;
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let found: Vec<Value> = match name {
        Some(name) => vec![client.get(&addon_path(&app, name))?],
        None => decode(client.get(&app_path(&app, "/addons"))?)?,
    };
    let mut ready = Vec::with_capacity(found.len());
    for raw in found {
        ready.push(wait_for(&client, &app, raw, deadline, timeout)?);
    }
    if !ctx.json {
        return Ok(String::new());
    }
    // One add-on named, one object; otherwise the list.
    let answer = if name.is_some() { ready.pop().unwrap_or_default() } else { Value::Array(ready) };
    Ok(pretty(&answer))
}

/// Polls one add-on, as first answered (`raw`), until it is provisioned; its last answer.
fn wait_for(client: &Client, app: &str, mut raw: Value, deadline: Instant, timeout: u64) -> Result<Value, CliError> {
    let mut addon: Addon = decode(raw.clone())?;
    if addon.state == AddonState::Provisioned {
        return Ok(raw);
    }
    let name = addon.name.clone();
    progress(&format!("Waiting for {name}... "));
    loop {
        match addon.state {
            AddonState::Provisioned => {
                progress("done\n");
                return Ok(raw);
            }
            AddonState::Provisioning => {}
            other => {
                progress(&format!("{other}\n"));
                return Err(CliError::local(format!("{name} is {other}, and will not be provisioned")));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            progress("timed out\n");
            return Err(CliError::local(format!(
                "{name} is still provisioning after {timeout}s: `ouro addons:info {name} -a {app}` shows it; \
                 --timeout SECONDS waits longer"
            )));
        }
        thread::sleep(POLL.min(left));
        raw = client.get(&addon_path(app, &name)).inspect_err(|_| progress("failed\n"))?;
        addon = decode(raw.clone())?;
    }
}

fn addon_path(app: &str, name: &str) -> String {
    app_path(app, &format!("/addons/{}", segment(name)))
}

/// Progress for people, on stderr (stdout is for results).
fn progress(text: &str) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes()).and_then(|()| stderr.flush());
}

pub fn attach(ctx: &Ctx, addon: &str, as_name: Option<String>) -> Output {
    let app = ctx.app()?;
    let body = serde_json::json!({ "addon": addon, "as": as_name });
    let raw = ctx.client()?.post(&app_path(&app, "/addon-attachments"), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let attached: Addon = decode(raw)?;
    let vars = attached
        .attachments
        .iter()
        .rfind(|a| a.app.name == app)
        .map(|a| format!("Setting {} config vars and restarting {app}... done\n", a.config_vars.join(", ")))
        .unwrap_or_default();
    Ok(format!("Attaching {addon} to {app}... done\n{vars}"))
}

pub fn detach(ctx: &Ctx, attachment: &str) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.delete(&app_path(&app, &format!("/addon-attachments/{}", segment(attachment))))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Detaching {attachment} from {app}... done\n"))
}

/// Destroys an add-on and its data: `--confirm NAME` must repeat its name.
pub fn destroy(ctx: &Ctx, name: &str, confirm: Option<&str>) -> Output {
    if confirm != Some(name) {
        return Err(CliError::usage(format!("this destroys {name} and its data: run again with --confirm {name}")));
    }
    let app = ctx.app()?;
    let path = app_path(&app, &format!("/addons/{}?confirm={}", segment(name), segment(name)));
    let raw = ctx.client()?.delete(&path)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Destroying {name} on {app}... done\n"))
}
