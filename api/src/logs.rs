//! The platform's log hub (`ouro logs`): every app's recent lines and their followers
//! (`ouro_logs::Hub`), and the app's drains.
//!
//! Lines come from three places: the dyno runner ships its dynos' output and the router's
//! request lines (`POST /runner/logs`); the API adds its own events (`ouro[api]: Release v5
//! created by …`, scaling, builds); and the runner's dyno reports become state changes
//! (`ouro[web.1]: State changed from starting to up`, `Process exited with status 3`). Lines
//! live in memory only: the last 1,500 per app, across redeploys (not across the API's own
//! restarts). Every line also goes to the app's drains, which never block (`ouro_logs::Drain`).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use ouro_logs::{Drain, DrainUrl, Hub, LogLine, Source};
use ouro_types::{Dyno, DynoState};

pub struct Logs {
    hub: Hub,
    /// Each app's drains, by app name.
    drains: RwLock<HashMap<String, Vec<Drain>>>,
    /// Whether a dyno report came since this process started: the first one is a baseline,
    /// not a burst of "Starting process" for dynos that have long run.
    reported: AtomicBool,
}

impl Default for Logs {
    fn default() -> Logs {
        Logs { hub: Hub::default(), drains: RwLock::default(), reported: AtomicBool::new(false) }
    }
}

impl Logs {
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Keeps `line` for its app's readers and hands it to the app's drains. Never blocks.
    pub fn publish(&self, line: LogLine) {
        if let Ok(drains) = self.drains.read() {
            for drain in drains.get(&line.app).into_iter().flatten() {
                drain.send(&line);
            }
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
                    Ok(parsed) => kept.push(Drain::spawn(parsed, app)),
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
