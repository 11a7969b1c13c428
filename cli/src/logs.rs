//! `logs` (an app's log: its dynos' output, the router's request lines and the platform's
//! events, time-ordered; `--tail` follows it) and `drains`, `drains:add`, `drains:remove`.

use std::io::Write;

use serde_json::Value;

use crate::client::{app_path, segment};
use crate::context::{Ctx, Output};
use crate::error::CliError;
use crate::table::{columns, heading};

pub struct LogsQuery {
    pub num: usize,
    pub tail: bool,
    pub dyno: Option<String>,
    pub source: Option<String>,
}

/// Prints the app's last `num` lines (and with `tail`, every new one as it comes), as the API
/// sends them, each flushed at once.
pub fn logs(ctx: &Ctx, query: &LogsQuery) -> Output {
    let app = ctx.app()?;
    let mut path = app_path(&app, &format!("/logs?lines={}", query.num));
    if query.tail {
        path.push_str("&tail=true");
    }
    for (key, value) in [("dyno", &query.dyno), ("source", &query.source)] {
        if let Some(value) = value {
            path.push_str(&format!("&{key}={}", segment(value)));
        }
    }
    let stdout = std::io::stdout();
    ctx.client()?.stream(&path, query.tail, |piece| {
        let mut out = stdout.lock();
        out.write_all(piece)?;
        out.flush()
    })?;
    Ok(String::new())
}

pub fn drains(ctx: &Ctx) -> Output {
    let app = ctx.app()?;
    let raw = ctx.client()?.get(&app_path(&app, "/log-drains"))?;
    if ctx.json {
        return Ok(crate::context::pretty(&raw));
    }
    Ok(render_drains(&app, &raw))
}

fn render_drains(app: &str, raw: &Value) -> String {
    let drains = raw.as_array().map(Vec::as_slice).unwrap_or_default();
    if drains.is_empty() {
        return format!("{app} has no log drains; `ouro drains:add syslog+tcp://host:port` adds one.\n");
    }
    let rows: Vec<Vec<String>> = drains
        .iter()
        .map(|d| {
            vec![d["url"].as_str().unwrap_or_default().to_string(), d["id"].as_str().unwrap_or_default().to_string()]
        })
        .collect();
    heading(&format!("{app} Log Drains")) + &columns(&rows)
}

pub fn add(ctx: &Ctx, url: &str) -> Output {
    let app = ctx.app()?;
    let made = ctx.client()?.post(&app_path(&app, "/log-drains"), &serde_json::json!({ "url": url }))?;
    if ctx.json {
        return Ok(crate::context::pretty(&made));
    }
    let url = made["url"].as_str().ok_or_else(|| CliError::local("the API made no drain"))?;
    Ok(format!("Successfully added drain {url} to {app}\n"))
}

pub fn remove(ctx: &Ctx, drain: &str) -> Output {
    let app = ctx.app()?;
    let removed = ctx.client()?.delete(&app_path(&app, &format!("/log-drains/{}", segment(drain))))?;
    if ctx.json {
        return Ok(crate::context::pretty(&removed));
    }
    Ok(format!("Successfully removed drain {} from {app}\n", removed["url"].as_str().unwrap_or(drain)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_are_listed_by_url() {
        let raw = serde_json::json!([{"id": "d1", "url": "syslog+tcp://logs.example:514", "created_at": "x"}]);
        let shown = render_drains("shop", &raw);
        assert!(shown.starts_with("=== shop Log Drains\n"), "{shown}");
        assert!(shown.contains("syslog+tcp://logs.example:514") && shown.contains("d1"), "{shown}");
        assert!(render_drains("shop", &serde_json::json!([])).contains("has no log drains"));
    }
}
