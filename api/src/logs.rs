//! The platform's log hub (`ouro logs`): every app's recent lines and their followers
//! (`ouro_logs::Hub`), and the app's drains (their records, `log_drains`, are an `impl Store`
//! block at the bottom).
//!
//! Lines come from three places: the dyno runner ships its dynos' output and the router's
//! request lines (`POST /runner/logs`); the API adds its own events (`ouro[api]: Release v5
//! created by …`, scaling, builds); and the runner's dyno reports become state changes
//! (`ouro[web.1]: State changed from starting to up`, `Process exited with status 3`). The
//! last 1,500 lines per app are kept in memory, across redeploys, and in the journal
//! (`log_journal.rs`, SQL), across the API's own restarts and upgrades. Every line also goes to
//! the app's drains, which never block (`ouro_logs::Drain`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use ouro_logs::{Drain, DrainUrl, Hub, LogLine, Source};
use ouro_types::egress::Cidr;
use ouro_types::{Dyno, DynoState};
use sqlx::Row;

use crate::store::{Store, conflict_on_unique};
use crate::{Result, now};

pub struct Logs {
    hub: Hub,
    /// Each app's drains, by app name.
    drains: RwLock<HashMap<String, Vec<Drain>>>,
    /// Whether a dyno report came since this process started: the first one is a baseline,
    /// not a burst of "Starting process" for dynos that have long run.
    reported: AtomicBool,
    /// Where lines are kept across restarts, once the API started it.
    journal: OnceLock<crate::log_journal::Journal>,
    /// The private ranges drains may reach after all (`OURO_EGRESS_ALLOW`); none until set.
    egress_allow: RwLock<Arc<[Cidr]>>,
}

impl Default for Logs {
    fn default() -> Logs {
        Logs {
            hub: Hub::default(),
            drains: RwLock::default(),
            reported: AtomicBool::new(false),
            journal: OnceLock::new(),
            egress_allow: RwLock::new(Vec::new().into()),
        }
    }
}

impl Logs {
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The egress policy's allowed ranges for drains (set at start, before any drain).
    pub fn set_egress_allow(&self, allow: Vec<Cidr>) {
        if let Ok(mut current) = self.egress_allow.write() {
            *current = allow.into();
        }
    }

    /// Why drains may not go to `url` (the egress policy), if they may not.
    pub async fn drain_refused(&self, url: &DrainUrl) -> Option<String> {
        let allow = self.egress_allow.read().map(|a| a.clone()).unwrap_or_else(|_| Vec::new().into());
        url.refused(&allow).await
    }

    /// Keeps lines in `journal` from now on (the API's start, once it restored them).
    pub fn keep_in(&self, journal: crate::log_journal::Journal) {
        let _ = self.journal.set(journal);
    }

    /// Writes out the journal's queue, for at most `limit` (at shutdown).
    pub async fn flush_journal(&self, limit: std::time::Duration) {
        if let Some(journal) = self.journal.get() {
            journal.flush(limit).await;
        }
    }

    /// Keeps `line` for its app's readers and hands it to the app's drains. Never blocks.
    pub fn publish(&self, line: LogLine) {
        if let Ok(drains) = self.drains.read() {
            for drain in drains.get(&line.app).into_iter().flatten() {
                drain.send(&line);
            }
        }
        if let Some(journal) = self.journal.get() {
            journal.keep(&line);
        }
        self.hub.publish(line);
    }

    /// A platform event in `app`'s log, as `ouro[process]: text`.
    pub fn event(&self, app: &str, process: &str, text: impl Into<String>) {
        self.publish(LogLine::new(app, Source::Ouro, process, text));
    }

    /// Makes `app`'s drains the `urls` (each as `DrainUrl` prints it): a drain that stays keeps
    /// its connection and queue; new ones start; removed ones stop.
    pub fn set_drains(&self, app: &str, urls: &[String]) {
        let Ok(mut drains) = self.drains.write() else { return };
        let mut old = drains.remove(app).unwrap_or_default();
        let mut kept = Vec::new();
        for url in urls {
            match old.iter().position(|d| d.url().to_string() == *url) {
                Some(at) => kept.push(old.swap_remove(at)),
                None => match DrainUrl::parse(url) {
                    Ok(parsed) => {
                        let allow = self.egress_allow.read().map(|a| a.clone()).unwrap_or_else(|_| Vec::new().into());
                        kept.push(Drain::spawn(parsed, app, allow))
                    }
                    Err(e) => tracing::warn!(app, error = %e, "a stored log drain is not a drain URL; skipped"),
                },
            }
        }
        if !kept.is_empty() {
            drains.insert(app.to_string(), kept);
        }
    }

    /// The lines a new dyno report means against the previous one: each container's start and
    /// changes of state, with why a process stopped (its exit status) before the change.
    pub fn dynos_reported(&self, before: &HashMap<String, Vec<Dyno>>, after: &HashMap<String, Vec<Dyno>>) {
        if !self.reported.swap(true, Ordering::SeqCst) {
            return;
        }
        for (app, dynos) in after {
            let previous = before.get(app);
            for dyno in dynos {
                let was = previous.and_then(|list| list.iter().find(|d| d.id == dyno.id));
                for text in transition(was, dyno) {
                    self.event(app, &dyno.name, text);
                }
            }
        }
    }
}

/// What changed for one container between two reports, in Heroku's words.
fn transition(was: Option<&Dyno>, now: &Dyno) -> Vec<String> {
    let mut lines = Vec::new();
    let from = match was {
        Some(was) => was.state,
        None => {
            lines.push(format!("Starting process (release v{})", now.release));
            DynoState::Starting
        }
    };
    if from == now.state {
        return lines;
    }
    if now.state.is_finished() {
        if let Some(reason) = now.reason.as_deref().filter(|r| !r.is_empty()) {
            let mut chars = reason.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
            lines.push(format!("{first}{}", chars.as_str()));
        }
    }
    lines.push(format!("State changed from {from} to {}", now.state));
    lines
}

// ---- records ---------------------------------------------------------------------------

/// A log drain of an app.
#[derive(Clone)]
pub struct LogDrainRow {
    pub id: String,
    pub url: String,
    pub created_at: String,
}

impl Store {
    /// The app's log drains, oldest first.
    pub async fn log_drains(&self, app_id: &str) -> Result<Vec<LogDrainRow>> {
        let rows = sqlx::query("SELECT id, url, created_at FROM log_drains WHERE app_id = $1 ORDER BY created_at, id")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LogDrainRow { id: r.try_get("id")?, url: r.try_get("url")?, created_at: r.try_get("created_at")? })
            })
            .collect()
    }

    /// Every app's drains, by app name: what the API forwards at start.
    pub async fn all_log_drains(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT a.name, d.url FROM log_drains d JOIN apps a ON a.id = d.app_id ORDER BY d.created_at, d.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("url")?))).collect()
    }

    /// Adds a drain; `Error::Conflict` when the app has that URL already.
    pub async fn add_log_drain(&self, app_id: &str, url: &str) -> Result<LogDrainRow> {
        let row = LogDrainRow { id: uuid::Uuid::new_v4().to_string(), url: url.into(), created_at: now() };
        sqlx::query("INSERT INTO log_drains (id, app_id, url, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.id)
            .bind(app_id)
            .bind(&row.url)
            .bind(&row.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_on_unique)?;
        Ok(row)
    }

    /// Removes the drain named by its id or URL; whether there was one.
    pub async fn remove_log_drain(&self, app_id: &str, id_or_url: &str) -> Result<Option<LogDrainRow>> {
        let drains = self.log_drains(app_id).await?;
        let Some(drain) = drains.into_iter().find(|d| d.id == id_or_url || d.url == id_or_url) else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM log_drains WHERE id = $1").bind(&drain.id).execute(&self.pool).await?;
        Ok(Some(drain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dyno(id: &str, state: &str, reason: Option<&str>) -> Dyno {
        Dyno {
            id: id.into(),
            app: "shop".into(),
            name: "web.1".into(),
            process_type: "web".into(),
            state: state.parse().unwrap(),
            size: "standard-1x".into(),
            release: 3,
            reason: reason.map(Into::into),
            restarts: 0,
            created_at: "2026-11-26T09:00:00Z".into(),
            node: None,
        }
    }

    #[test]
    fn transitions_say_what_changed_and_why_a_process_stopped() {
        assert_eq!(transition(None, &dyno("a", "starting", None)), ["Starting process (release v3)"]);
        assert_eq!(
            transition(None, &dyno("a", "up", None)),
            ["Starting process (release v3)", "State changed from starting to up"]
        );
        let up = dyno("a", "up", None);
        assert!(transition(Some(&up), &up).is_empty());
        assert_eq!(
            transition(Some(&up), &dyno("a", "crashed", Some("process exited with status 3"))),
            ["Process exited with status 3", "State changed from up to crashed"]
        );
    }

    #[test]
    fn the_first_report_is_a_baseline_and_later_ones_become_lines() {
        let logs = Logs::default();
        let report = |state: &str| HashMap::from([("shop".to_string(), vec![dyno("a", state, None)])]);
        logs.dynos_reported(&HashMap::new(), &report("up"));
        let all = ouro_logs::Filter::default();
        assert!(logs.hub().recent("shop", &all, 10).is_empty(), "the baseline says nothing");
        logs.dynos_reported(&report("up"), &report("crashed"));
        let lines: Vec<String> = logs.hub().recent("shop", &all, 10).iter().map(|l| l.to_string()).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].ends_with("ouro[web.1]: State changed from up to crashed"), "{lines:?}");
    }
}
