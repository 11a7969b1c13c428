//! What the runner cannot get past by itself, for `GET /health` (and so for `ouro up`, which
//! stops on it instead of waiting): the Docker Engine unreachable, a stack image that cannot be
//! built, a platform component that keeps crashing. Each problem is kept under a key (its
//! area) until the same area succeeds again; the runner keeps retrying meanwhile.
//!
//! [`Throttle`] keeps a failure that repeats every tick from filling the log: it is logged
//! once, then at most every [`Throttle::EVERY`] with how many times it happened in between,
//! and its end once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use ouro_types::RunnerHealth;

/// The runner's current problems, by area (`docker`, `stack image`, an app's name).
#[derive(Clone, Default)]
pub struct Problems(Arc<Mutex<BTreeMap<String, String>>>);

impl Problems {
    /// Records `message` as the problem of `area`; returns whether it is new (not the same as
    /// the one already recorded there), so the caller can log it once.
    pub fn set(&self, area: &str, message: String) -> bool {
        let Ok(mut map) = self.0.lock() else { return false };
        map.insert(area.to_string(), message.clone()).as_ref() != Some(&message)
    }

    /// Forgets the problem of `area`; returns whether there was one.
    pub fn clear(&self, area: &str) -> bool {
        self.0.lock().map(|mut map| map.remove(area).is_some()).unwrap_or(false)
    }

    pub fn health(&self) -> RunnerHealth {
        let problems: Vec<String> = self
            .0
            .lock()
            .map(|map| map.iter().map(|(area, message)| format!("{area}: {message}")).collect())
            .unwrap_or_default();
        RunnerHealth { status: if problems.is_empty() { "ok" } else { "stuck" }.to_string(), problems }
    }
}

/// `GET /health`: 200 while the runner runs, with its problems.
pub async fn serve(State(problems): State<Problems>) -> Json<RunnerHealth> {
    Json(problems.health())
}

/// Rate limit for the log lines of one repeating failure (see the module's doc).
#[derive(Debug, Default)]
pub struct Throttle {
    failing_since: Option<Instant>,
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl Throttle {
    /// How often a failure that goes on is logged again.
    pub const EVERY: Duration = Duration::from_secs(60);

    /// One more failure at `now`: `Some(n)` when it should be logged, `n` being how many
    /// failures since the last line were not.
    pub fn failed(&mut self, now: Instant) -> Option<u64> {
        self.failing_since.get_or_insert(now);
        match self.logged_at {
            Some(at) if now.duration_since(at) < Self::EVERY => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.logged_at = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }

    /// A success at `now`: `Some(how long it failed)` when it had been failing (log that once).
    pub fn recovered(&mut self, now: Instant) -> Option<Duration> {
        let since = self.failing_since.take()?;
        self.logged_at = None;
        self.unlogged = 0;
        Some(now.duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_failure_is_logged_once_a_minute_with_the_count_and_its_end_once() {
        let start = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.recovered(start), None, "nothing failed yet");
        assert_eq!(t.failed(start), Some(0));
        // Five times a second for a minute: one line.
        let lines = (1..300).filter_map(|i| t.failed(start + Duration::from_millis(200 * i))).count();
        assert_eq!(lines, 0);
        assert_eq!(t.failed(start + Duration::from_secs(60)), Some(299));
        assert_eq!(t.recovered(start + Duration::from_secs(61)), Some(Duration::from_secs(61)));
        assert_eq!(t.recovered(start + Duration::from_secs(62)), None, "its end is logged once");
        assert_eq!(t.failed(start + Duration::from_secs(63)), Some(0), "a new failure is logged at once");
    }

    #[test]
    fn problems_are_kept_by_area_until_it_succeeds() {
        let p = Problems::default();
        assert_eq!(p.health(), RunnerHealth { status: "ok".into(), problems: vec![] });
        assert!(p.set("stack image", "debootstrap not found".into()));
        assert!(!p.set("stack image", "debootstrap not found".into()), "the same problem is not new");
        assert!(p.set("docker", "cannot reach the Docker Engine".into()));
        let health = p.health();
        assert_eq!(health.status, "stuck");
        assert_eq!(health.problems, ["docker: cannot reach the Docker Engine", "stack image: debootstrap not found"]);
        assert!(p.clear("docker") && !p.clear("docker"));
        assert_eq!(p.health().problems.len(), 1);
    }
}
