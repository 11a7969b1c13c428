//! `ouro authorizations`, `authorizations:create`, `authorizations:info`,
//! `authorizations:rotate`, `authorizations:revoke` (Heroku's words) and `ouro logout`: the
//! caller's API tokens, through `/oauth/authorizations`. A token is shown once, when it is made
//! or rotated; the API keeps only its hash.

use std::time::SystemTime;

use ouro_types::Authorization;

use crate::client::{decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::credentials;
use crate::error::CliError;
use crate::table::{columns, heading, when};

pub fn list(ctx: &Ctx) -> Output {
    let raw = ctx.client()?.get("/oauth/authorizations")?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let tokens: Vec<Authorization> = decode(raw)?;
    if tokens.is_empty() {
        return Ok("No authorizations.\n".into());
    }
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> =
        tokens.iter().map(|t| vec![description(t), t.id.clone(), t.scope.join(","), expiry(t, now)]).collect();
    Ok(heading("Authorizations") + &columns(&rows))
}

pub fn create(ctx: &Ctx, description: Option<&str>, expires_in: Option<u64>) -> Output {
    let mut body = serde_json::json!({ "description": description.unwrap_or_default() });
    if let Some(seconds) = expires_in {
        body["expires_in"] = seconds.into();
    }
    let raw = ctx.client()?.post("/oauth/authorizations", &body)?;
    shown(ctx, raw)
}

pub fn info(ctx: &Ctx, id: &str) -> Output {
    let raw = ctx.client()?.get(&format!("/oauth/authorizations/{}", segment(id)))?;
    shown(ctx, raw)
}

pub fn rotate(ctx: &Ctx, id: &str) -> Output {
    let raw = ctx
        .client()?
        .post(&format!("/oauth/authorizations/{}/actions/regenerate-tokens", segment(id)), &serde_json::json!({}))?;
    shown(ctx, raw)
}

pub fn revoke(ctx: &Ctx, id: &str) -> Output {
    let raw = ctx.client()?.delete(&format!("/oauth/authorizations/{}", segment(id)))?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let revoked: Authorization = decode(raw)?;
    Ok(format!("Revoking authorization {}... done\n", revoked.id))
}

/// `ouro logout`: revokes the stored token at the API and forgets it here. A token the API
/// no longer takes (revoked, expired) is forgotten all the same.
pub fn logout(ctx: &Ctx) -> Output {
    let stored = credentials::load()?;
    let id = stored.token.strip_prefix("ouro_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id.to_string());
    if let Some(id) = id {
        match ctx.client()?.delete(&format!("/oauth/authorizations/{}", segment(&id))) {
            Ok(_) | Err(CliError::Api { status: 401 | 404, .. }) => {}
            Err(e) => return Err(e),
        }
    }
    credentials::forget()?;
    Ok("Logging out... done\n".into())
}

fn shown(ctx: &Ctx, raw: serde_json::Value) -> Output {
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let token: Authorization = decode(raw)?;
    let now = SystemTime::now();
    let mut rows = vec![
        vec!["ID:".into(), token.id.clone()],
        vec!["Description:".into(), description(&token)],
        vec!["Scope:".into(), token.scope.join(",")],
    ];
    if let Some(secret) = &token.access_token.token {
        rows.push(vec!["Token:".into(), secret.clone()]);
    }
    rows.push(vec!["Expires:".into(), expiry(&token, now)]);
    rows.push(vec!["Updated at:".into(), when(&token.updated_at, now)]);
    Ok(columns(&rows))
}

fn description(token: &Authorization) -> String {
    if token.description.is_empty() { "(no description)".into() } else { token.description.clone() }
}

fn expiry(token: &Authorization, now: SystemTime) -> String {
    match (&token.access_token.expires_at, token.access_token.expires_in) {
        (None, _) => "never expires".into(),
        (Some(_), Some(0)) => "expired".into(),
        (Some(at), _) => format!("expires {}", when(at, now)),
    }
}
