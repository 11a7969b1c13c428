//! `ouro users`, `users:add EMAIL [--admin]`, `users:remove EMAIL --confirm EMAIL` (admins):
//! the platform's users. A new user gets a one-time invitation code, with which they set a
//! password and log in (`ouro login --invitation CODE`).

use crate::client::segment;
use crate::context::{Ctx, Output, pretty};
use crate::credentials;
use crate::error::CliError;
use crate::table::{columns, heading};

pub fn list(ctx: &Ctx) -> Output {
    let raw = ctx.client()?.get("/users")?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let users = raw.as_array().cloned().unwrap_or_default();
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u["email"].as_str().unwrap_or("?").to_string(),
                if u["admin"] == true { "admin" } else { "member" }.to_string(),
                if u["password_set"] == true { "password set" } else { "no password" }.to_string(),
            ]
        })
        .collect();
    Ok(heading("Users") + &columns(&rows))
}

pub fn add(ctx: &Ctx, email: &str, admin: bool) -> Output {
    let raw = ctx.client()?.post("/users", &serde_json::json!({ "email": email, "admin": admin }))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let credentials = credentials::load()?;
    let api_url = credentials.api_url;
    // The authority this CLI trusts for the API, so that theirs trusts the same.
    let trust = credentials
        .ca_cert
        .as_deref()
        .and_then(|pem| crate::trust::parse_pem(pem, "").ok())
        .map(|der| format!(" --fingerprint {}", ouro_types::fingerprint(&der)))
        .unwrap_or_default();
    Ok(format!(
        "Adding {}... done\nThey set a password and log in with this (it works once, until {}):\n  ouro login --api {api_url}{trust} --invitation {}\n",
        raw["email"].as_str().unwrap_or(email),
        raw["invitation"]["expires_at"].as_str().unwrap_or("?"),
        raw["invitation"]["code"].as_str().unwrap_or("?"),
    ))
}

pub fn remove(ctx: &Ctx, email: &str, confirm: Option<&str>) -> Output {
    if confirm != Some(email) {
        return Err(CliError::usage(format!(
            "removing {email} revokes their tokens and cannot be undone: run again with --confirm {email}"
        )));
    }
    let raw = ctx.client()?.delete(&format!("/users/{}", segment(email)))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    Ok(format!("Removing {email}... done\n"))
}
