//! `ouro audit [-a APP] [-n NUM]`: the audit log (who changed what, and how it was answered):
//! an app's for whoever may view it, all of it for admins.

use std::time::SystemTime;

use ouro_types::AuditEvent;

use crate::client::{decode, segment};
use crate::context::{Ctx, Output, pretty};
use crate::table::{columns, when};

pub fn list(ctx: &Ctx, num: u32) -> Output {
    let mut path = format!("/audit-events?limit={num}");
    if let Some(app) = ctx.app_flag() {
        path.push_str(&format!("&app={}", segment(app)));
    }
    let raw = ctx.client()?.get(&path)?;
    if ctx.json {
        return Ok(pretty(&raw));
    }
    let events: Vec<AuditEvent> = decode(raw)?;
    if events.is_empty() {
        return Ok("No audit events.\n".into());
    }
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![when(&e.created_at, now), e.actor.clone(), e.action.clone(), e.target.clone(), e.status.to_string()]
        })
        .collect();
    Ok(columns(&rows))
}
