//! `addons`, `addons:create`, `addons:info`, `addons:attach`, `addons:detach`,
//! `addons:destroy`: the app's add-ons (databases and the like, made by providers).

use ouro_types::Addon;

use crate::client::{app_path, segment};
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
            vec![a.name.clone(), a.plan.name.clone(), a.state.clone(), here.join(", ")]
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
    let addon: Addon = crate::client::decode(raw)?;
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
    let raw = ctx.client()?.get(&app_path(&app, &format!("/addons/{}", segment(name))))?;
    ctx.show(raw, |addon: Addon| {
        let attached: Vec<String> = addon.attachments.iter().map(|t| format!("{}::{}", t.app.name, t.name)).collect();
        let rows = [
            ("Plan", addon.plan.name.clone()),
            ("State", addon.state.clone()),
            ("Owning app", addon.app.name.clone()),
            ("Attachments", attached.join(", ")),
            ("Created", addon.created_at.clone()),
        ];
        heading(&addon.name) + &key_values(&rows)
    })
}

pub fn attach(ctx: &Ctx, addon: &str, as_name: Option<String>) -> Output {
    let app = ctx.app()?;
    let body = serde_json::json!({ "addon": addon, "as": as_name });
    let raw = ctx.client()?.post(&app_path(&app, "/addon-attachments"), &body)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Attaching {addon} to {app}... done\n"))
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
