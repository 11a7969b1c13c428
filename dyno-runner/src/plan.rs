//! Planning: from the desired state (API) and the live dynos (Docker) to the steps that
//! converge them. Pure: no Docker, no clock of its own, no I/O; table-tested below.
//!
//! The rules, per app and process type, for the desired release R and quantity q:
//! - each index 1..=q needs a dyno of R: start a missing one; replace an exited one (crashed),
//!   at once the first time and then after a back-off that grows to a cap;
//! - dynos of R with an index above q stop;
//! - dynos of other releases: web dynos keep serving until every web dyno of R is `up`
//!   (zero-downtime), then stop; other types stop at once; an app with volumes or on the
//!   host's network never runs two dynos of one slot at once (one volume, one host port):
//!   the old one stops first;
//! - running formation dynos are on the networks of the apps in `joins` (none for an app on
//!   the host's network, which has no network of its own);
//! - a service that listens (an add-on server) and that another app joins (its provider) is
//!   reached there by its app's name, an alias of its dynos on their own network: a running
//!   dyno made without it (by a runner from before) is restarted once;
//! - dynos of apps or process types that are no longer desired stop;
//! - one-off dynos run once (never restarted) and stop once they have run out their time to
//!   live; an attached one-off is left to its bridge (`attach.rs`) while it is not running.
//!
//! A slug image that does not exist yet is built before any dyno of its release starts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use ouro_types::{DesiredApp, DesiredState};

/// The process type of one-off dynos (`run.N`); reserved, no Procfile may use it.
pub const ONE_OFF: &str = "run";

/// A container the runner labelled, as Docker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveDyno {
    pub container_id: String,
    pub app: String,
    pub release: i64,
    pub process_type: String,
    pub index: u32,
    pub state: LiveState,
    /// When the runner created it, in ms since the epoch (compared with restart requests).
    pub started_ms: u64,
    /// Other apps whose networks it is on (besides its own).
    pub joined: Vec<String>,
    /// Reachable by its app's name on its app's own network.
    pub named: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveState {
    /// Running; `up` once it serves (web: accepts on its port; others: running).
    Running { up: bool },
    /// Created or exited: not running, needs replacing if still desired.
    Stopped,
    /// Being drained or stopped by the runner: leave it alone.
    Stopping,
    /// An attached one-off that its bridge owns while it is not running: created and waiting
    /// for its terminal, or exited and sending its exit status. Leave it alone.
    Attaching,
}

/// One action of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make the dyno image of this release's slug.
    BuildImage { app: String, release: i64 },
    /// Start dyno `process_type.index` of the app's desired release (removing a stopped
    /// container of the same name first).
    Start { app: String, release: i64, process_type: String, index: u32, size: String },
    /// Take the dyno out of the routes, let in-flight requests finish, stop and remove it.
    Stop { container_id: String, reason: StopReason },
    /// Remove a stopped container that nothing wants any more.
    Remove { container_id: String },
    /// Put a running dyno on another app's network (alias: its own app's name).
    Join { container_id: String, app: String, network_of: String },
    /// Take a running dyno off another app's network.
    Leave { container_id: String, network_of: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    ScaledDown,
    /// A restart was requested after it started (`ouro ps:restart`, `ps:stop`).
    Restart,
    Superseded,
    NotDesired,
    /// A one-off dyno has run its time to live (seconds): stopped, not removed, so that its
    /// end is reported with [`time_to_live_reason`].
    OutOfTime {
        seconds: u64,
    },
}

/// Why a one-off stopped by [`StopReason::OutOfTime`] ended, as `ouro ps` shows it.
pub fn time_to_live_reason(seconds: u64) -> String {
    format!("R99: the one-off dyno ran out its time to live ({seconds} s)")
}

/// Restart bookkeeping of one dyno slot (app, release, type, index), kept by the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Restarts done so far.
    pub restarts: u32,
    /// Seconds (on the caller's clock) before which the slot must not be restarted.
    pub not_before: u64,
}

/// The delay before restart number `n` (0-based): none for the first, then 1 s doubling to
/// a 60 s cap.
pub fn backoff_delay(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs((1u64 << (restarts - 1).min(6)).min(60))
}

/// How long a dyno must have run for its crash to count as a first one again.
pub const CRASH_MEMORY: Duration = Duration::from_secs(600);

/// The back-off for a crashed dyno whose slot restarted `restarts` times and whose last run
/// lasted `ran_for`: the restarts to count from, and the delay. A dyno that ran for
/// [`CRASH_MEMORY`] or more starts afresh (restarted at once: Heroku forgets old crashes too);
/// a platform component (`component`: the router, the API, on the host's network) waits at
/// most a second, since while it is down every app is.
pub fn crash_backoff(restarts: u32, ran_for: Duration, component: bool) -> (u32, Duration) {
    let restarts = if ran_for >= CRASH_MEMORY { 0 } else { restarts };
    let delay = backoff_delay(restarts);
    (restarts, if component { delay.min(Duration::from_secs(1)) } else { delay })
}

/// A dyno slot: app, release, process type, index.
pub type Slot = (String, i64, String, u32);

/// Everything `plan` reads besides desired and live.
pub struct Context<'a> {
    /// Apps whose desired release has its dyno image already.
    pub images_ready: &'a HashSet<(String, i64)>,
    pub backoff: &'a HashMap<Slot, Backoff>,
    /// Now, in seconds on the clock that `Backoff::not_before` uses.
    pub now: u64,
    /// Now, in ms since the epoch (the clock of `LiveDyno::started_ms`).
    pub now_ms: u64,
}

pub fn plan(desired: &DesiredState, live: &[LiveDyno], ctx: &Context) -> Vec<Step> {
    let mut steps = Vec::new();
    let by_app: BTreeMap<&str, &DesiredApp> = desired.apps.iter().map(|a| (a.app_name.as_str(), a)).collect();
    // The apps whose networks other apps' dynos join.
    let joined: HashSet<&str> =
        desired.apps.iter().filter(|a| !a.host_network).flat_map(|a| a.joins.iter().map(String::as_str)).collect();
    for app in desired.apps.iter() {
        let mine: Vec<&LiveDyno> = live.iter().filter(|d| d.app == app.app_name).collect();
        let reached_by_name = app.listens && joined.contains(app.app_name.as_str());
        plan_app(app, &mine, reached_by_name, ctx, &mut steps);
    }
    for dyno in live.iter().filter(|d| !by_app.contains_key(d.app.as_str())) {
        retire(dyno, StopReason::NotDesired, &mut steps);
    }
    steps
}

/// How an app's dynos move to a new release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollout {
    /// Web dynos of the old release serve until all new ones are up; other types stop at once
    /// (Heroku's behaviour).
    WebOverlap,
    /// The old dyno of a slot stops before the new one starts: an app with volumes (a
    /// database), whose data one process at a time may hold.
    StopFirst,
    /// The new dyno of a slot starts beside the old one, which stops once the new one is up:
    /// the platform's components on the host's network, which share their ports
    /// (`SO_REUSEPORT`) and their volume (SQLite) across the handover.
    HandOver,
}

impl Rollout {
    fn of(app: &DesiredApp) -> Rollout {
        match (app.host_network, app.mounts.is_empty()) {
            (true, _) => Rollout::HandOver,
            (false, false) => Rollout::StopFirst,
            (false, true) => Rollout::WebOverlap,
        }
    }
}

/// `reached_by_name`: other apps' dynos on its network reach it by its name (see [`plan`]).
fn plan_app(app: &DesiredApp, live: &[&LiveDyno], reached_by_name: bool, ctx: &Context, steps: &mut Vec<Step>) {
    let release = app.release.version;
    let image_ready = ctx.images_ready.contains(&(app.app_name.clone(), release));
    let (one_offs, live): (Vec<&LiveDyno>, Vec<&LiveDyno>) = live.iter().partition(|d| d.process_type == ONE_OFF);
    let mut images_missing = plan_one_offs(app, &one_offs, ctx, steps);
    let mut needs_image = false;
    let rollout = Rollout::of(app);
    let wanted: BTreeMap<&str, (i64, &str)> = app
        .formation
        .iter()
        .filter(|p| app.release.process_types.contains_key(&p.process_type))
        .map(|p| (p.process_type.as_str(), (p.quantity, p.size.as_str())))
        .collect();

    for (&process_type, &(quantity, size)) in &wanted {
        let current: Vec<&&LiveDyno> =
            live.iter().filter(|d| d.release == release && d.process_type == process_type).collect();
        for index in 1..=quantity.max(0) as u32 {
            let existing = current.iter().find(|d| d.index == index);
            let start = match existing.map(|d| d.state) {
                None => true,
                Some(LiveState::Stopped) => {
                    let slot = (app.app_name.clone(), release, process_type.to_string(), index);
                    ctx.backoff.get(&slot).is_none_or(|b| b.not_before <= ctx.now)
                }
                Some(_) => false,
            };
            // An app with volumes (a database) never runs two dynos on one volume: the new
            // release's dyno starts once the old one has stopped, not beside it.
            let old_still_running = rollout == Rollout::StopFirst
                && live.iter().any(|d| {
                    d.release != release
                        && d.process_type == process_type
                        && d.index == index
                        && d.state != LiveState::Stopped
                });
            if !start || old_still_running {
                continue;
            }
            if image_ready {
                steps.push(Step::Start {
                    app: app.app_name.clone(),
                    release,
                    process_type: process_type.to_string(),
                    index,
                    size: size.to_string(),
                });
            } else {
                needs_image = true;
            }
        }
        for dyno in current.iter().filter(|d| i64::from(d.index) > quantity) {
            retire(dyno, StopReason::ScaledDown, steps);
        }
        for dyno in current.iter().filter(|d| i64::from(d.index) <= quantity) {
            let requested = restart_requested(app, process_type, dyno.index);
            // A dyno without its name on its own network cannot be found there: made again.
            let unnamed = reached_by_name && !dyno.named;
            if matches!(dyno.state, LiveState::Running { .. })
                && (requested.is_some_and(|at| dyno.started_ms < at) || unnamed)
            {
                retire(dyno, StopReason::Restart, steps);
            }
        }
    }

    // Web dynos of older releases serve until all desired web dynos of this release are up.
    let web_quantity = wanted.get("web").map_or(0, |w| w.0);
    let new_web_up = live
        .iter()
        .filter(|d| {
            d.release == release
                && d.process_type == "web"
                && i64::from(d.index) <= web_quantity
                && d.state == LiveState::Running { up: true }
        })
        .count() as i64;
    let web_ready = new_web_up >= web_quantity;
    for dyno in live.iter() {
        let is_current = dyno.release == release && wanted.contains_key(dyno.process_type.as_str());
        if is_current {
            continue;
        }
        let old = dyno.release != release;
        if rollout == Rollout::WebOverlap
            && old
            && dyno.process_type == "web"
            && wanted.contains_key("web")
            && !web_ready
        {
            continue;
        }
        // A component hands its slot over: its successor in the same slot is up first.
        let successor_up = live.iter().any(|d| {
            d.release == release
                && d.process_type == dyno.process_type
                && d.index == dyno.index
                && d.state == LiveState::Running { up: true }
        });
        let slot_wanted =
            wanted.get(dyno.process_type.as_str()).is_some_and(|(quantity, _)| i64::from(dyno.index) <= *quantity);
        if rollout == Rollout::HandOver && old && slot_wanted && !successor_up && dyno.state != LiveState::Stopped {
            continue;
        }
        let reason = if dyno.release == release { StopReason::NotDesired } else { StopReason::Superseded };
        retire(dyno, reason, steps);
    }
    plan_joins(app, &live, steps);
    if needs_image && !images_missing.contains(&release) {
        images_missing.push(release);
    }
    for version in images_missing.into_iter().rev() {
        steps.insert(0, Step::BuildImage { app: app.app_name.clone(), release: version });
    }
}

/// Running formation dynos are on exactly the networks of the apps in `joins` (besides their
/// own); new dynos get them when they start. Dynos on the host's network are on no other.
fn plan_joins(app: &DesiredApp, live: &[&LiveDyno], steps: &mut Vec<Step>) {
    if app.host_network {
        return;
    }
    for dyno in live.iter().filter(|d| matches!(d.state, LiveState::Running { .. })) {
        for other in app.joins.iter().filter(|o| !dyno.joined.contains(o)) {
            steps.push(Step::Join {
                container_id: dyno.container_id.clone(),
                app: app.app_name.clone(),
                network_of: other.clone(),
            });
        }
        for other in dyno.joined.iter().filter(|o| !app.joins.contains(o)) {
            steps.push(Step::Leave { container_id: dyno.container_id.clone(), network_of: other.clone() });
        }
    }
}

/// The latest restart request that covers dyno `process_type.index`.
fn restart_requested(app: &DesiredApp, process_type: &str, index: u32) -> Option<u64> {
    let dyno = format!("{process_type}.{index}");
    ["*", process_type, dyno.as_str()].iter().filter_map(|target| app.restarts.get(*target).copied()).max()
}

/// One-off dynos run once: start each desired `run.N` that has no container yet (never
/// restart it), on its own release when it has one (the release phase) or the app's; stop
/// those that have run out their time to live; remove those no longer desired (the API drops
/// them once reported finished). Returns the releases whose image is missing for one that
/// should start.
fn plan_one_offs(app: &DesiredApp, live: &[&LiveDyno], ctx: &Context, steps: &mut Vec<Step>) -> Vec<i64> {
    let mut missing = Vec::new();
    for one_off in &app.one_offs {
        if let Some(dyno) = live.iter().find(|d| d.index == one_off.number) {
            if let Some(seconds) = out_of_time(one_off, dyno, ctx.now_ms) {
                steps.push(Step::Stop {
                    container_id: dyno.container_id.clone(),
                    reason: StopReason::OutOfTime { seconds },
                });
            }
            continue;
        }
        let release = one_off.release.as_ref().map_or(app.release.version, |r| r.version);
        if ctx.images_ready.contains(&(app.app_name.clone(), release)) {
            steps.push(Step::Start {
                app: app.app_name.clone(),
                release,
                process_type: ONE_OFF.to_string(),
                index: one_off.number,
                size: one_off.size.clone(),
            });
        } else if !missing.contains(&release) {
            missing.push(release);
        }
    }
    for dyno in live.iter().filter(|d| !app.one_offs.iter().any(|o| o.number == d.index)) {
        retire(dyno, StopReason::NotDesired, steps);
    }
    missing
}

/// The time to live (seconds) that running one-off `dyno` has run out, if it has: it was
/// created (`started_ms`) at least that long before `now_ms`. A dyno without a creation time
/// is not judged.
fn out_of_time(one_off: &ouro_types::DesiredOneOff, dyno: &LiveDyno, now_ms: u64) -> Option<u64> {
    let seconds = one_off.time_to_live_seconds?;
    let running = matches!(dyno.state, LiveState::Running { .. });
    let ran_out = dyno.started_ms > 0 && now_ms.saturating_sub(dyno.started_ms) / 1000 >= seconds;
    (running && ran_out).then_some(seconds)
}

fn retire(dyno: &LiveDyno, reason: StopReason, steps: &mut Vec<Step>) {
    match dyno.state {
        LiveState::Running { .. } => steps.push(Step::Stop { container_id: dyno.container_id.clone(), reason }),
        LiveState::Stopped => steps.push(Step::Remove { container_id: dyno.container_id.clone() }),
        LiveState::Stopping | LiveState::Attaching => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ouro_types::{DesiredProcess, DesiredRelease};

    /// App `name` on release `release` (web and worker process types) with `formation`.
    pub(crate) fn app(name: &str, release: i64, formation: &[(&str, i64)]) -> DesiredApp {
        DesiredApp {
            app_id: format!("id-{name}"),
            app_name: name.into(),
            release: DesiredRelease {
                id: format!("r{release}"),
                version: release,
                slug_id: "s".into(),
                slug_checksum: "SHA256:00".into(),
                slug_url: "http://api/slug".into(),
                process_types: [("web", "serve"), ("worker", "work")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                config: Default::default(),
                stack: ouro_types::STACK.into(),
                stack_update: None,
            },
            formation: formation
                .iter()
                .map(|(t, q)| DesiredProcess { process_type: t.to_string(), quantity: *q, size: "basic".into() })
                .collect(),
            domains: Vec::new(),
            certificates: Vec::new(),
            acme_challenges: Vec::new(),
            restarts: Default::default(),
            one_offs: Vec::new(),
            mounts: Vec::new(),
            joins: Vec::new(),
            api_access: false,
            host_network: false,
            listens: false,
        }
    }

    fn dyno(id: &str, app: &str, release: i64, process_type: &str, index: u32, state: LiveState) -> LiveDyno {
        LiveDyno {
            container_id: id.into(),
            app: app.into(),
            release,
            process_type: process_type.into(),
            index,
            state,
            started_ms: 1000,
            joined: Vec::new(),
            named: true,
        }
    }

    const UP: LiveState = LiveState::Running { up: true };
    const BOOTING: LiveState = LiveState::Running { up: false };

    fn start(app: &str, release: i64, process_type: &str, index: u32) -> Step {
        Step::Start { app: app.into(), release, process_type: process_type.into(), index, size: "basic".into() }
    }

    fn stop(id: &str, reason: StopReason) -> Step {
        Step::Stop { container_id: id.into(), reason }
    }

    fn run(
        apps: Vec<DesiredApp>,
        live: &[LiveDyno],
        ready: &[(&str, i64)],
        backoff: &[(Slot, Backoff)],
        now: u64,
    ) -> Vec<Step> {
        let images_ready = ready.iter().map(|(a, r)| (a.to_string(), *r)).collect();
        let backoff = backoff.iter().cloned().collect();
        plan(
            &DesiredState { apps, volumes: Vec::new(), seed: false },
            live,
            &Context { images_ready: &images_ready, backoff: &backoff, now, now_ms: now * 1000 },
        )
    }

    #[test]
    fn builds_the_image_before_starting_anything() {
        let steps = run(vec![app("a", 2, &[("web", 2)])], &[], &[], &[], 0);
        assert_eq!(steps, vec![Step::BuildImage { app: "a".into(), release: 2 }]);
    }

    #[test]
    fn starts_missing_dynos_and_stops_extra_ones() {
        let live = [dyno("c1", "a", 2, "web", 1, UP), dyno("c3", "a", 2, "worker", 3, UP)];
        let steps = run(vec![app("a", 2, &[("web", 2), ("worker", 1)])], &live, &[("a", 2)], &[], 0);
        assert_eq!(
            steps,
            vec![start("a", 2, "web", 2), start("a", 2, "worker", 1), stop("c3", StopReason::ScaledDown)]
        );
    }

    #[test]
    fn converged_state_plans_nothing() {
        let live = [dyno("c1", "a", 2, "web", 1, UP), dyno("c2", "a", 2, "web", 2, BOOTING)];
        assert_eq!(run(vec![app("a", 2, &[("web", 2), ("worker", 0)])], &live, &[("a", 2)], &[], 0), vec![]);
    }

    #[test]
    fn old_web_dynos_serve_until_all_new_ones_are_up() {
        let desired = || vec![app("a", 3, &[("web", 2)])];
        let old = [dyno("o1", "a", 2, "web", 1, UP), dyno("o2", "a", 2, "web", 2, UP)];
        // Nothing new yet: start both, keep both old.
        let steps = run(desired(), &old, &[("a", 3)], &[], 0);
        assert_eq!(steps, vec![start("a", 3, "web", 1), start("a", 3, "web", 2)]);
        // One new one up, one booting: still keep the old ones.
        let mut live = old.to_vec();
        live.push(dyno("n1", "a", 3, "web", 1, UP));
        live.push(dyno("n2", "a", 3, "web", 2, BOOTING));
        assert_eq!(run(desired(), &live, &[("a", 3)], &[], 0), vec![]);
        // All new ones up: retire the old.
        live[3].state = UP;
        let steps = run(desired(), &live, &[("a", 3)], &[], 0);
        assert_eq!(steps, vec![stop("o1", StopReason::Superseded), stop("o2", StopReason::Superseded)]);
    }

    #[test]
    fn a_failed_boot_leaves_the_old_release_serving() {
        let live = [dyno("o1", "a", 2, "web", 1, UP), dyno("n1", "a", 3, "web", 1, LiveState::Stopped)];
        let slot = ("a".to_string(), 3, "web".to_string(), 1);
        let cooling = Backoff { restarts: 2, not_before: 100 };
        assert_eq!(run(vec![app("a", 3, &[("web", 1)])], &live, &[("a", 3)], &[(slot.clone(), cooling)], 50), vec![]);
        // Once the back-off has passed it is tried again; the old one still serves.
        let steps = run(vec![app("a", 3, &[("web", 1)])], &live, &[("a", 3)], &[(slot, cooling)], 100);
        assert_eq!(steps, vec![start("a", 3, "web", 1)]);
    }

    #[test]
    fn old_workers_stop_at_once() {
        let live = [dyno("o1", "a", 2, "worker", 1, UP)];
        let steps = run(vec![app("a", 3, &[("worker", 1)])], &live, &[("a", 3)], &[], 0);
        assert_eq!(steps, vec![start("a", 3, "worker", 1), stop("o1", StopReason::Superseded)]);
    }

    #[test]
    fn dynos_with_volumes_start_only_after_the_old_release_stopped() {
        let mut desired = app("db", 3, &[("worker", 1)]);
        desired.mounts = vec![ouro_types::VolumeMount { volume: "db-data".into(), path: "/data".into() }];
        let live = [dyno("o1", "db", 2, "worker", 1, UP)];
        let steps = run(vec![desired.clone()], &live, &[("db", 3)], &[], 0);
        assert_eq!(steps, vec![stop("o1", StopReason::Superseded)]);
        let live = [dyno("o1", "db", 2, "worker", 1, LiveState::Stopping)];
        assert_eq!(run(vec![desired.clone()], &live, &[("db", 3)], &[], 0), vec![]);
        let live = [dyno("o1", "db", 2, "worker", 1, LiveState::Stopped)];
        let steps = run(vec![desired.clone()], &live, &[("db", 3)], &[], 0);
        assert_eq!(steps, vec![start("db", 3, "worker", 1), Step::Remove { container_id: "o1".into() }]);
        // Web dynos too (no overlap, so a brief gap instead of two servers on one volume).
        desired.formation[0].process_type = "web".into();
        let live = [dyno("o1", "db", 2, "web", 1, UP)];
        assert_eq!(run(vec![desired], &live, &[("db", 3)], &[], 0), vec![stop("o1", StopReason::Superseded)]);
    }

    #[test]
    fn scaling_web_to_zero_stops_old_and_new() {
        let live = [dyno("o1", "a", 2, "web", 1, UP), dyno("n1", "a", 3, "web", 1, UP)];
        let steps = run(vec![app("a", 3, &[("web", 0)])], &live, &[("a", 3)], &[], 0);
        assert_eq!(steps, vec![stop("n1", StopReason::ScaledDown), stop("o1", StopReason::Superseded)]);
    }

    #[test]
    fn undesired_apps_and_types_are_cleaned_up() {
        let live = [
            dyno("g1", "gone", 1, "web", 1, UP),
            dyno("g2", "gone", 1, "web", 2, LiveState::Stopped),
            dyno("x1", "a", 2, "clock", 1, UP),
            dyno("s1", "a", 2, "web", 1, LiveState::Stopping),
        ];
        let steps = run(vec![app("a", 2, &[("web", 0)])], &live, &[("a", 2)], &[], 0);
        assert_eq!(
            steps,
            vec![
                stop("x1", StopReason::NotDesired),
                stop("g1", StopReason::NotDesired),
                Step::Remove { container_id: "g2".into() },
            ]
        );
    }

    #[test]
    fn restarts_replace_dynos_started_before_the_request() {
        let live =
            [dyno("w1", "a", 2, "web", 1, UP), dyno("w2", "a", 2, "web", 2, UP), dyno("k1", "a", 2, "worker", 1, UP)];
        let with = |restarts: &[(&str, u64)]| {
            let mut a = app("a", 2, &[("web", 2), ("worker", 1)]);
            a.restarts = restarts.iter().map(|(t, at)| (t.to_string(), *at)).collect();
            run(vec![a], &live, &[("a", 2)], &[], 0)
        };
        assert_eq!(with(&[("web.2", 2000)]), vec![stop("w2", StopReason::Restart)]);
        assert_eq!(with(&[("web", 2000)]), vec![stop("w1", StopReason::Restart), stop("w2", StopReason::Restart)]);
        assert_eq!(with(&[("*", 2000)]).len(), 3);
        // Requests older than the dynos are done already.
        assert_eq!(with(&[("*", 500), ("web.1", 999)]), vec![]);
    }

    #[test]
    fn one_offs_run_once_and_leave_when_no_longer_desired() {
        let with_one_offs = |numbers: &[u32]| {
            let mut a = app("a", 2, &[("web", 1)]);
            a.one_offs = numbers
                .iter()
                .map(|n| ouro_types::DesiredOneOff {
                    number: *n,
                    command: "echo hi".into(),
                    size: "basic".into(),
                    env: Default::default(),
                    mounts: Vec::new(),
                    api_access: false,
                    release: None,
                    attach: false,
                    tty: false,
                    time_to_live_seconds: None,
                })
                .collect();
            a
        };
        let web = dyno("w1", "a", 2, "web", 1, UP);
        // A new one-off starts; web is untouched.
        let steps = run(vec![with_one_offs(&[1])], std::slice::from_ref(&web), &[("a", 2)], &[], 0);
        assert_eq!(steps, vec![start("a", 2, "run", 1)]);
        // Running or exited, it is never started twice nor restarted.
        for state in [UP, LiveState::Stopped] {
            let live = [web.clone(), dyno("r1", "a", 2, "run", 1, state)];
            assert_eq!(run(vec![with_one_offs(&[1])], &live, &[("a", 2)], &[], 0), vec![]);
        }
        // Once the API no longer wants it, it goes; a new release does not stop a running one.
        let live = [web.clone(), dyno("r1", "a", 1, "run", 1, LiveState::Stopped)];
        assert_eq!(
            run(vec![with_one_offs(&[])], &live, &[("a", 2)], &[], 0),
            vec![Step::Remove { container_id: "r1".into() }]
        );
        let live = [web, dyno("r1", "a", 1, "run", 1, UP)];
        assert_eq!(run(vec![with_one_offs(&[1])], &live, &[("a", 2)], &[], 0), vec![]);
    }

    #[test]
    fn a_release_phase_one_off_runs_on_its_own_slug_beside_the_current_release() {
        let mut a = app("a", 2, &[("web", 1)]);
        let mut next = a.release.clone();
        next.version = 0;
        next.slug_checksum = "SHA256:11".into();
        a.one_offs = vec![ouro_types::DesiredOneOff {
            number: 3,
            command: "./migrate".into(),
            size: "basic".into(),
            env: Default::default(),
            mounts: Vec::new(),
            api_access: false,
            release: Some(next),
            attach: false,
            tty: false,
            time_to_live_seconds: None,
        }];
        let web = dyno("w1", "a", 2, "web", 1, UP);
        // Its image first; the serving web dyno is left alone.
        let steps = run(vec![a.clone()], std::slice::from_ref(&web), &[("a", 2)], &[], 0);
        assert_eq!(steps, vec![Step::BuildImage { app: "a".into(), release: 0 }]);
        // Then it starts on release 0 (its own), and web still serves.
        let steps = run(vec![a.clone()], std::slice::from_ref(&web), &[("a", 2), ("a", 0)], &[], 0);
        assert_eq!(steps, vec![start("a", 0, "run", 3)]);
        // Running, it is not a dyno of an old release to retire.
        let live = [web, dyno("r3", "a", 0, "run", 3, UP)];
        assert_eq!(run(vec![a], &live, &[("a", 2), ("a", 0)], &[], 0), vec![]);
    }

    #[test]
    fn running_dynos_join_exactly_the_networks_asked_for() {
        let mut server = app("db", 1, &[("web", 1)]);
        server.joins = vec!["shop".into(), "blog".into()];
        let mut live = dyno("s1", "db", 1, "web", 1, UP);
        live.joined = vec!["blog".into(), "old".into()];
        let steps = run(vec![server.clone()], std::slice::from_ref(&live), &[("db", 1)], &[], 0);
        assert_eq!(
            steps,
            vec![
                Step::Join { container_id: "s1".into(), app: "db".into(), network_of: "shop".into() },
                Step::Leave { container_id: "s1".into(), network_of: "old".into() },
            ]
        );
        // Stopped dynos are left alone (they get the networks when started again).
        let stopped = dyno("s1", "db", 1, "web", 1, LiveState::Stopping);
        assert_eq!(run(vec![server], &[stopped], &[("db", 1)], &[], 0), vec![]);
    }

    #[test]
    fn a_server_that_another_app_joins_is_restarted_once_to_be_named_on_its_own_network() {
        let mut server = app("db", 1, &[("worker", 1)]);
        server.listens = true;
        let mut provider = app("ouro-db", 1, &[("web", 1)]);
        provider.joins = vec!["db".into()];
        let mut old = dyno("s1", "db", 1, "worker", 1, UP);
        old.named = false;
        let mut web = dyno("p1", "ouro-db", 1, "web", 1, UP);
        web.joined = vec!["db".into()];
        let both = vec![server.clone(), provider.clone()];
        let ready = [("db", 1), ("ouro-db", 1)];
        let stop = Step::Stop { container_id: "s1".into(), reason: StopReason::Restart };
        assert_eq!(run(both.clone(), &[old.clone(), web.clone()], &ready, &[], 0), vec![stop]);
        // Named, it stays; and nobody joining it, or a server that does not listen, stays too.
        let named = dyno("s1", "db", 1, "worker", 1, UP);
        assert_eq!(run(both, &[named, web.clone()], &ready, &[], 0), vec![]);
        assert_eq!(run(vec![server.clone()], std::slice::from_ref(&old), &[("db", 1)], &[], 0), vec![]);
        server.listens = false;
        assert_eq!(run(vec![server, provider], &[old, web], &ready, &[], 0), vec![]);
    }

    #[test]
    fn host_network_apps_join_no_network_and_hand_each_slot_over() {
        let mut host = app("ouro-api", 2, &[("web", 1)]);
        host.host_network = true;
        // Even if `joins` were set (the API refuses it), no Join nor Leave.
        host.joins = vec!["shop".into()];
        let mut running = dyno("a1", "ouro-api", 2, "web", 1, UP);
        running.joined = vec!["old".into()];
        assert_eq!(run(vec![host.clone()], std::slice::from_ref(&running), &[("ouro-api", 2)], &[], 0), vec![]);
        let steps = run(vec![host.clone()], &[], &[("ouro-api", 2)], &[], 0);
        assert_eq!(steps, vec![start("ouro-api", 2, "web", 1)]);
        // A new release, volume or not: the new dyno starts beside the old one (they share
        // the port), which stops once the new one is up.
        host.release.version = 3;
        host.formation[0].process_type = "api".into();
        host.release.process_types.insert("api".into(), "ouro-api".into());
        host.mounts = vec![ouro_types::VolumeMount { volume: "ouro-data".into(), path: "/data".into() }];
        let old = dyno("a1", "ouro-api", 2, "api", 1, UP);
        let steps = run(vec![host.clone()], std::slice::from_ref(&old), &[("ouro-api", 3)], &[], 0);
        assert_eq!(steps, vec![start("ouro-api", 3, "api", 1)]);
        let booting = [old.clone(), dyno("n1", "ouro-api", 3, "api", 1, BOOTING)];
        assert_eq!(run(vec![host.clone()], &booting, &[("ouro-api", 3)], &[], 0), vec![]);
        let handed = [old.clone(), dyno("n1", "ouro-api", 3, "api", 1, UP)];
        let steps = run(vec![host.clone()], &handed, &[("ouro-api", 3)], &[], 0);
        assert_eq!(steps, vec![stop("a1", StopReason::Superseded)]);
        // Scaled to zero, the old one goes at once.
        host.formation[0].quantity = 0;
        let steps = run(vec![host], std::slice::from_ref(&old), &[("ouro-api", 3)], &[], 0);
        assert_eq!(steps, vec![stop("a1", StopReason::Superseded)]);
    }

    #[test]
    fn one_offs_stop_once_they_have_run_out_their_time_to_live() {
        // (time to live, state, created at ms, now ms) -> stopped with that time to live?
        let check = |ttl: Option<u64>, state: LiveState, started_ms: u64, now_ms: u64, expect: Option<u64>| {
            let one_off: ouro_types::DesiredOneOff = serde_json::from_value(serde_json::json!({
                "number": 1, "command": "sleep 60", "size": "basic", "time_to_live_seconds": ttl,
            }))
            .unwrap();
            let mut dyno = dyno("r1", "a", 2, "run", 1, state);
            dyno.started_ms = started_ms;
            assert_eq!(out_of_time(&one_off, &dyno, now_ms), expect, "{ttl:?} {state:?} {started_ms} {now_ms}");
        };
        check(None, UP, 1_000, 1_000_000_000, None);
        check(Some(2), UP, 1_000, 2_999, None);
        check(Some(2), UP, 1_000, 3_000, Some(2));
        check(Some(2), BOOTING, 1_000, 9_000, Some(2));
        check(Some(3600), UP, 1_000, 3_600_999, None);
        check(Some(3600), UP, 1_000, 3_601_000, Some(3600));
        // Already stopping, exited, or not started yet (waiting for its terminal): left alone.
        for state in [LiveState::Stopping, LiveState::Stopped, LiveState::Attaching] {
            check(Some(2), state, 1_000, 9_000, None);
        }
        // No creation time (a container without the label): not judged.
        check(Some(2), UP, 0, 9_000, None);
        // Huge values do not overflow.
        check(Some(u64::MAX), UP, 1_000, u64::MAX, None);
    }

    #[test]
    fn a_one_off_past_its_time_to_live_is_stopped_and_an_attaching_one_is_left_alone() {
        let mut a = app("a", 2, &[]);
        a.one_offs = vec![
            serde_json::from_value(serde_json::json!({
                "number": 1, "command": "sleep 60", "size": "basic", "time_to_live_seconds": 2,
            }))
            .unwrap(),
            serde_json::from_value(serde_json::json!({
                "number": 2, "command": "bash", "size": "basic", "attach": true, "tty": true,
            }))
            .unwrap(),
        ];
        // Created at 1 s (`started_ms: 1000`); at 2 s it has time left.
        let live = [dyno("r1", "a", 2, "run", 1, UP), dyno("r2", "a", 2, "run", 2, LiveState::Attaching)];
        assert_eq!(run(vec![a.clone()], &live, &[("a", 2)], &[], 2), vec![]);
        let steps = run(vec![a.clone()], &live, &[("a", 2)], &[], 3);
        assert_eq!(steps, vec![stop("r1", StopReason::OutOfTime { seconds: 2 })]);
        // Stopping, it is not stopped again; no longer desired, the attaching one is left to
        // its bridge.
        let live =
            [dyno("r1", "a", 2, "run", 1, LiveState::Stopping), dyno("r2", "a", 2, "run", 2, LiveState::Attaching)];
        assert_eq!(run(vec![a.clone()], &live, &[("a", 2)], &[], 30), vec![]);
        a.one_offs.clear();
        assert_eq!(run(vec![a], &live, &[("a", 2)], &[], 30), vec![]);
        assert_eq!(time_to_live_reason(2), "R99: the one-off dyno ran out its time to live (2 s)");
    }

    #[test]
    fn crashes_are_forgotten_after_a_good_run_and_components_come_back_within_a_second() {
        let short = Duration::from_secs(5);
        assert_eq!(crash_backoff(0, short, false), (0, Duration::ZERO));
        assert_eq!(crash_backoff(3, short, false), (3, Duration::from_secs(4)));
        assert_eq!(crash_backoff(3, CRASH_MEMORY, false), (0, Duration::ZERO));
        assert_eq!(crash_backoff(9, short, true), (9, Duration::from_secs(1)));
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        let delays: Vec<u64> = (0..10).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
