//! Ouro's dyno runner: the host agent that makes the live state (containers) match the desired
//! state (each app's current release and formation, read from the API), and keeps it so.
//!
//! It is the only component that talks to Docker. Each tick it reads desired and live state,
//! computes a plan with [`plan::plan`] (pure) and executes it through a [`runtime::Runtime`]
//! (the Docker Engine through bollard, see `runtime.rs`; an in-memory one in the tests). The same
//! loop heals: a dyno that dies or is removed behind its back is a drift like any other.
//! It serves the route table to routers and reports dynos to the API; when the API is down it
//! keeps reconciling against the last desired state it read.
//! It follows every dyno's output and, with the router's request lines (`POST /logs` on its
//! listener), ships it to the API in batches from a bounded queue, in tasks of their own that
//! never hold up the loop.
//! An attached one-off (`ouro run`) is bridged to the user's terminal through the API by a
//! task of its own too (see `attach.rs`); the loop only keeps from starting it twice.
//! It must never hand the Docker socket or a platform credential to a dyno.

mod api;
mod attach;
mod chaos;
mod docker;
mod egress;
mod follow;
mod health;
mod logs;
pub mod plan;
#[cfg(test)]
mod reconcile_tests;
mod routes;
mod runtime;
mod secret;
mod slug_layer;
pub mod stack;
pub mod supervise;
mod swarm;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ouro_types::{DesiredApp, DesiredState, Dyno, DynoReport, DynoState, Route, RouteBackend, RouteTable};
use tokio::sync::{Notify, watch};

use crate::api::ApiClient;
use crate::plan::{Backoff, Context, LiveDyno, LiveState, Slot, Step};
use crate::runtime::{Container, DockerRuntime, Runtime};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Docker(String),
    #[error("API: {0}")]
    Api(String),
    /// A slug that cannot be fetched or is not the one its release names.
    #[error("slug: {0}")]
    Slug(String),
    #[error("stack image: {0}")]
    Stack(#[from] stack::StackError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct Config {
    /// `OURO_API_URL`, default `http://127.0.0.1:7700`.
    pub api_url: String,
    /// `OURO_API_TOKEN`: an admin token (until the runner has a scoped one).
    pub api_token: String,
    /// `OURO_API_URL_FOR_DYNOS`: the API as the dynos that may call it (builds) reach it;
    /// default `OURO_API_URL` with a loopback or unspecified host replaced by
    /// `host.docker.internal` (the API must then listen on an address containers reach).
    pub api_url_for_dynos: String,
    /// `OURO_RUNNER_LISTEN`, default `127.0.0.1:7701`: serves `/routes` to routers and takes
    /// their log lines (`POST /logs`). Only the host should reach it.
    pub listen: SocketAddr,
    /// `OURO_DOMAIN`, default `localhost`: app `demo` answers at `demo.<domain>`.
    pub domain: String,
    /// `OURO_PLATFORM`, default `ouro`: labels and names this installation's containers and
    /// networks, so that two installations (or test runs) on one engine leave each other alone.
    pub platform: String,
    /// How long a removed-from-routes dyno keeps serving in-flight requests before SIGTERM.
    pub drain: Duration,
    /// SIGTERM to SIGKILL (Heroku: 30 s).
    pub stop_grace: Duration,
    /// `OURO_COMPONENT_STOP_GRACE_SECONDS` (960): the same for the platform's own components
    /// (host-network dynos): a replaced API finishes its long requests (a push waits for its
    /// build, up to 15 minutes) instead of cutting them; it takes no new ones meanwhile.
    pub component_stop_grace: Duration,
    /// A web dyno that does not accept on `$PORT` within this is crashed (R10; Heroku: 60 s).
    pub boot_timeout: Duration,
    /// Longest pause between two reconciles.
    pub tick: Duration,
    /// `OURO_RUNNER_STATE`, default `$HOME/.local/state/ouro/<platform>/desired-state.json`:
    /// the last desired state read from the API, kept (mode 0600: it holds config vars) so
    /// that a runner started while the API is down (after a host restart, say) brings the
    /// dynos back from it.
    pub state_file: Option<PathBuf>,
    /// What routers must show to read `/routes` and send `/logs` (see `secret.rs`):
    /// `OURO_RUNNER_SECRET`, else kept in `runner-secret` beside the state file.
    pub secret: String,
    /// `OURO_EGRESS_ALLOW`: private ranges dynos may reach after all (see `egress.rs`).
    pub egress_allow: Vec<String>,
    /// `OURO_IMAGE_GC_SECONDS` (600): how often slug images nothing needs are removed.
    pub image_gc_every: Duration,
    /// `OURO_IMAGE_GC_AGE_SECONDS` (3600): the youngest slug image that may be removed.
    pub image_gc_age: Duration,
    /// The listener's bounds: [`LIMITS`], with `OURO_HEADER_READ_TIMEOUT_SECONDS` and
    /// `OURO_MAX_CONNECTIONS` if set.
    pub limits: ouro_serve::Limits,
    /// `OURO_SWARM`: unset on a single engine (the default).
    pub swarm: Option<SwarmRole>,
    /// `OURO_SWARM_MANAGER_URL`, on a node's runner: the manager's runner (its listener), whose
    /// stack image the node loads; `OURO_RUNNER_SECRET` must be the manager runner's.
    pub swarm_manager_url: Option<String>,
}

/// A runner's part on a Docker Swarm (`OURO_SWARM`, see `swarm.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmRole {
    /// `manager`: on a swarm manager, runs every dyno (services over the nodes), reports them
    /// and serves the route table.
    Manager,
    /// `node`: on every other node, only makes the slug images its node may be given.
    Node,
}

/// The listener's bounds, unless the environment says otherwise (see `ouro-serve`).
pub const LIMITS: ouro_serve::Limits = ouro_serve::Limits {
    header_read_timeout: ouro_serve::HEADER_READ_TIMEOUT,
    // Its clients are the host's routers (a long poll of `/routes` and their log lines each;
    // two routers during a handover) and `ouro up` (`/health`): 1024 is far above that and
    // bounds what a misbehaving client can hold.
    max_connections: 1024,
    // Longer than a `/routes` long poll (25 s): stopping cuts none, as before there was a cap.
    drain_timeout: Duration::from_secs(30),
};

impl Config {
    pub fn from_env() -> Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let secs = |name: &str, default: u64| -> Result<Duration> {
            match var(name) {
                Some(v) => v
                    .parse::<f64>()
                    .map(Duration::from_secs_f64)
                    .map_err(|_| Error::Config(format!("{name} `{v}` is not a number of seconds"))),
                None => Ok(Duration::from_secs(default)),
            }
        };
        let listen = var("OURO_RUNNER_LISTEN").unwrap_or_else(|| "127.0.0.1:7701".into());
        let api_url = var("OURO_API_URL").unwrap_or_else(|| "http://127.0.0.1:7700".into());
        let platform = var("OURO_PLATFORM").unwrap_or_else(|| "ouro".into());
        let state_file = match var("OURO_RUNNER_STATE") {
            Some(path) => Some(PathBuf::from(path)),
            None => var("HOME")
                .map(|home| PathBuf::from(home).join(".local/state/ouro").join(&platform).join("desired-state.json")),
        };
        let secret = match (var(secret::VARIABLE), &state_file) {
            (Some(secret), _) => secret,
            (None, Some(state)) => {
                let file = state.with_file_name("runner-secret");
                secret::kept_in(&file)
                    .map_err(|e| Error::Config(format!("cannot keep the runner's secret in {}: {e}", file.display())))?
            }
            (None, None) => {
                tracing::warn!(
                    "no state file and no OURO_RUNNER_SECRET: routers must be given a new secret at every start"
                );
                secret::random()
            }
        };
        let config = Config {
            api_url_for_dynos: var("OURO_API_URL_FOR_DYNOS").unwrap_or_else(|| url_for_containers(&api_url)),
            api_url,
            api_token: var("OURO_API_TOKEN").ok_or_else(|| {
                Error::Config("set OURO_API_TOKEN to an admin token (the API's admin-token file)".into())
            })?,
            listen: listen
                .parse()
                .map_err(|_| Error::Config(format!("OURO_RUNNER_LISTEN `{listen}` is not an address")))?,
            domain: var("OURO_DOMAIN").unwrap_or_else(|| "localhost".into()),
            drain: secs("OURO_DRAIN_SECONDS", 5)?,
            stop_grace: secs("OURO_STOP_GRACE_SECONDS", 30)?,
            component_stop_grace: secs("OURO_COMPONENT_STOP_GRACE_SECONDS", 960)?,
            boot_timeout: secs("OURO_BOOT_TIMEOUT_SECONDS", 60)?,
            tick: Duration::from_secs(1),
            state_file,
            secret,
            egress_allow: egress::parse_allow(&var("OURO_EGRESS_ALLOW").unwrap_or_default()).map_err(Error::Config)?,
            image_gc_every: secs("OURO_IMAGE_GC_SECONDS", 600)?,
            image_gc_age: secs("OURO_IMAGE_GC_AGE_SECONDS", 3600)?,
            platform,
            limits: ouro_serve::Limits::from_vars(LIMITS, var).map_err(|e| Error::Config(e.to_string()))?,
            swarm_manager_url: var("OURO_SWARM_MANAGER_URL"),
            swarm: match var("OURO_SWARM").as_deref() {
                None => None,
                Some("manager") => Some(SwarmRole::Manager),
                Some("node") => Some(SwarmRole::Node),
                Some(other) => {
                    return Err(Error::Config(format!("OURO_SWARM is `manager` or `node`, not `{other}`")));
                }
            },
        };
        if config.swarm == Some(SwarmRole::Node) && config.swarm_manager_url.is_none() {
            return Err(Error::Config(
                "OURO_SWARM=node needs OURO_SWARM_MANAGER_URL: the manager's runner, whose stack image this node loads"
                    .into(),
            ));
        }
        Ok(config)
    }
}

/// While bootstrapping, the seed's apps the API does not know yet run on beside its desired
/// state (their volumes kept too); once the API has them all, the seed is over (emptied, and
/// `true` returned).
fn merge_seed(seed: &mut Vec<DesiredApp>, desired: &mut DesiredState) -> bool {
    if seed.is_empty() {
        return false;
    }
    let missing: Vec<DesiredApp> =
        seed.iter().filter(|s| !desired.apps.iter().any(|a| a.app_name == s.app_name)).cloned().collect();
    if missing.is_empty() {
        seed.clear();
        return true;
    }
    for mount in missing.iter().flat_map(|app| &app.mounts) {
        if !desired.volumes.contains(&mount.volume) {
            desired.volumes.push(mount.volume.clone());
        }
    }
    desired.apps.extend(missing);
    desired.seed = true;
    false
}

/// The desired state kept by [`save_state`], if there is a readable one, without its one-off
/// dynos: those run once, and a restart (of the host, say) ends them.
fn load_state(path: &Path) -> Option<DesiredState> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<DesiredState>(&bytes) {
        Ok(mut state) => {
            for app in &mut state.apps {
                app.one_offs.clear();
            }
            Some(state)
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "ignoring an unreadable desired-state file");
            None
        }
    }
}

/// Writes the desired state to `path` atomically (a temporary file renamed over it), readable
/// by this user only: it holds config vars and TLS keys.
async fn save_state(path: &Path, state: &DesiredState) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    let bytes = serde_json::to_vec(state)?;
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = path.with_extension("json.tmp");
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The release `version` of a desired app: its current one, or a one-off's own.
fn release_of(app: &DesiredApp, version: i64) -> Option<&ouro_types::DesiredRelease> {
    if app.release.version == version {
        return Some(&app.release);
    }
    app.one_offs.iter().filter_map(|o| o.release.as_ref()).find(|r| r.version == version)
}

/// The port of an `http(s)://host[:port]/…` URL.
fn port_of(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((_, port)) if !authority.ends_with(']') => port.parse().ok(),
        _ => Some(if scheme == "https" { 443 } else { 80 }),
    }
}

/// `url` with a loopback or unspecified host replaced by `host.docker.internal`.
pub fn url_for_containers(url: &str) -> String {
    for host in ["127.0.0.1", "localhost", "0.0.0.0", "[::1]", "[::]"] {
        for scheme in ["http://", "https://"] {
            let prefix = format!("{scheme}{host}");
            if let Some(rest) = url.strip_prefix(&prefix) {
                if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
                    return format!("{scheme}host.docker.internal{rest}");
                }
            }
        }
    }
    url.to_string()
}

/// Binds, then reconciles until `shutdown` resolves. Dynos keep running when the runner stops;
/// the next runner adopts them.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    // The listener first: `GET /health` says what keeps the runner from working (the Docker
    // Engine not answering, say) while it keeps trying.
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    // Versions start at the clock so that they keep growing across runner restarts.
    let epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1);
    let (routes_tx, routes_rx) = watch::channel(RouteTable { version: epoch, routes: Vec::new() });
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (log_queue, log_receiver) = logs::queue(logs::QUEUE_LINES);
    // Lines an earlier runner could not ship before it stopped go first.
    let spool = config.state_file.as_deref().map(logs::spool_path);
    if let Some(spool) = &spool {
        let queued = logs::unspool(spool, &log_queue);
        if queued > 0 {
            tracing::info!(lines = queued, "shipping the log lines the last runner kept at its stop");
        }
    }
    let log_receiver = Arc::new(tokio::sync::Mutex::new(log_receiver));
    let problems = health::Problems::default();
    // The manager's runner gives the other nodes its stack image (see `swarm.rs`).
    let (engine_tx, engine_rx) = watch::channel(None);
    let stack_share = match config.swarm {
        Some(SwarmRole::Manager) => swarm::stack_routes(engine_rx),
        _ => axum::Router::new(),
    };
    let guarded = routes::router(routes_rx)
        .merge(logs::routes(log_queue.clone()))
        .merge(chaos::routes(&config.platform))
        .merge(stack_share)
        .layer(axum::middleware::from_fn_with_state(secret::digest(&config.secret), secret::require));
    let app = guarded
        .merge(axum::Router::new().route("/health", axum::routing::get(health::serve)).with_state(problems.clone()));
    let server = ouro_serve::serve(listener, app, config.limits, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    });
    println!("ouro-dyno-runner listening on http://{addr}");
    enable_listener_handover();
    let server = tokio::spawn(server);
    let mut shutdown = std::pin::pin!(shutdown);
    let docker = tokio::select! {
        docker = connect_docker(&problems) => docker,
        () = &mut shutdown => {
            let _ = stop_tx.send(true);
            let _ = server.await;
            keep_unsent_lines(spool.as_deref(), &log_receiver).await;
            return Ok(());
        }
    };
    let resolvers = egress::resolvers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    let egress =
        Arc::new(egress::Egress::new(port_of(&config.api_url_for_dynos), config.egress_allow.clone(), resolvers));
    {
        let egress = egress.clone();
        let _ = tokio::task::spawn_blocking(move || egress.prune()).await;
    }
    let local = DockerRuntime {
        docker,
        platform: config.platform.clone(),
        egress,
        swarm: config.swarm.is_some(),
        followed_tasks: Arc::default(),
        stack_from: match config.swarm {
            Some(SwarmRole::Node) => config.swarm_manager_url.clone().map(|url| (url, config.secret.clone())),
            _ => None,
        },
    };
    let _ = engine_tx.send(Some(local.docker.clone()));
    let parts = Parts { routes_tx, log_queue, log_receiver: log_receiver.clone(), problems };
    let shutdown = async move {
        shutdown.await;
    };
    match config.swarm {
        Some(SwarmRole::Manager) => {
            let socket = swarm::engine_socket()?;
            let runtime = swarm::SwarmRuntime::new(local, socket, config.stop_grace);
            drive(config, runtime, parts, shutdown).await;
        }
        _ => drive(config, local, parts, shutdown).await,
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    keep_unsent_lines(spool.as_deref(), &log_receiver).await;
    Ok(())
}

/// What [`drive`] takes from [`run`]'s start.
struct Parts {
    routes_tx: watch::Sender<RouteTable>,
    log_queue: logs::LogQueue,
    log_receiver: Arc<tokio::sync::Mutex<logs::LogReceiver>>,
    problems: health::Problems,
}

/// Reconciles through `runtime` until `shutdown`.
async fn drive<R: Runtime>(config: Config, runtime: R, parts: Parts, shutdown: impl Future<Output = ()>) {
    let Parts { routes_tx, log_queue, log_receiver, problems } = parts;
    let stacks = Arc::new(Mutex::new(Vec::new()));
    let stack = tokio::spawn(ensure_stack_forever(runtime.clone(), problems.clone(), stacks.clone()));
    let mut runner = Runner::new(config, runtime, routes_tx, log_queue, problems);
    runner.stacks = stacks;
    let shipper = tokio::spawn(logs::ship_forever(log_receiver, runner.api.clone()));
    let events = tokio::spawn(wake_on_events(runner.runtime.clone(), runner.wake.clone()));
    let changes = tokio::spawn(wake_on_api_changes(runner.api.clone(), runner.wake.clone()));
    tokio::select! {
        () = runner.reconcile_forever() => {}
        () = shutdown => tracing::info!("stopping; dynos keep running"),
    }
    events.abort();
    changes.abort();
    shipper.abort();
    stack.abort();
    let _ = shipper.await;
}

/// Keeps what was not shipped for the next start (the API may be away: its own upgrade), once
/// the listener (which takes the router's lines) has stopped.
async fn keep_unsent_lines(spool: Option<&Path>, receiver: &tokio::sync::Mutex<logs::LogReceiver>) {
    let Some(spool) = spool else { return };
    let Ok(mut receiver) = tokio::time::timeout(Duration::from_secs(5), receiver.lock()).await else { return };
    let unsent = receiver.unsent();
    match logs::spool(spool, &unsent) {
        Ok(()) if !unsent.is_empty() => {
            tracing::info!(lines = unsent.len(), path = %spool.display(), "kept the log lines not shipped yet")
        }
        Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, lines = unsent.len(), "could not keep the log lines not shipped yet"),
    }
}

/// The platform's components hand their ports over (`SO_REUSEPORT`, see `plan::Rollout`):
/// when the old listener closes, the connections in its accept queue would be reset. With
/// `net.ipv4.tcp_migrate_req` (Linux 5.14) the kernel moves them to the successor's listener
/// instead. Measured here: of 200 connections queued on a closing listener, 102 were reset
/// without it and none with it; the self-upgrade test had seen 1 failed request in 647 during
/// a router handover. Components run in the host's network namespace, the runner's: the
/// setting is made there, once, as root.
fn enable_listener_handover() {
    const SETTING: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
    match std::fs::read_to_string(SETTING) {
        Ok(value) if value.trim() == "1" => {}
        Ok(_) => match std::fs::write(SETTING, "1") {
            Ok(()) => tracing::info!(
                "net.ipv4.tcp_migrate_req set to 1: connections queued on a component's old listener go to its successor"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot set net.ipv4.tcp_migrate_req (run the runner as root): a component's handover may reset connections queued on its old listener")
            }
        },
        Err(_) => tracing::warn!(
            "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14 or newer): a component's handover may reset connections queued on its old listener"
        ),
    }
}

/// The Docker Engine, once it answers: tried every few seconds meanwhile, the failure logged
/// (throttled) and kept as a problem for `GET /health`.
async fn connect_docker(problems: &health::Problems) -> bollard::Docker {
    let mut throttle = health::Throttle::default();
    let mut delay = Duration::from_millis(500);
    loop {
        match docker::connect().await {
            Ok(docker) => {
                if problems.clear(DOCKER_PROBLEM) {
                    tracing::info!("the Docker Engine answers");
                }
                return docker;
            }
            Err(e) => {
                let message = format!("{e}; start it (systemctl start docker) or point DOCKER_HOST at it");
                if let Some(unlogged) = throttle.failed(Instant::now()) {
                    tracing::error!(error = %message, unlogged, "the Docker Engine does not answer; retrying");
                }
                problems.set(DOCKER_PROBLEM, message);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Makes sure of the run stack image at start, whatever the dynos need now (their slug images
/// may all exist): a stack that cannot be had stops every deploy to come, so it is a problem
/// for `GET /health` at once rather than at the next push. Tried again every 30 s until it
/// is there; slug image builds wait for it (the stack's lock) instead of building it twice.
async fn ensure_stack_forever(
    runtime: impl Runtime,
    problems: health::Problems,
    stacks: Arc<Mutex<Vec<ouro_types::Stack>>>,
) {
    let mut throttle = health::Throttle::default();
    loop {
        match runtime.ensure_stack().await {
            Ok(image) => {
                if problems.clear(STACK_PROBLEM) {
                    tracing::info!(%image, "the stack image is there now");
                }
                // What the reports say of it (`ouro stack`).
                let found = runtime.stacks(None).await;
                if let Ok(mut stacks) = stacks.lock() {
                    *stacks = found;
                }
                return;
            }
            Err(e) => {
                if let Some(unlogged) = throttle.failed(Instant::now()) {
                    tracing::error!(error = %e, unlogged, "the stack image cannot be had; trying again every 30 s");
                }
                problems.set(STACK_PROBLEM, e.to_string());
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}

/// The area of `GET /health` problems for the Docker Engine.
const DOCKER_PROBLEM: &str = "docker";
/// The area for the stack images.
const STACK_PROBLEM: &str = "stack image";
/// After how many crashes in a row a platform component's dyno is a problem.
const COMPONENT_CRASHES_REPORTED: u32 = 3;

/// Events only wake the loop (a dyno died: replace it now, not at the next tick); the loop
/// itself always works from the current state. If the stream breaks, the periodic tick still
/// reconciles and the stream is opened again.
async fn wake_on_events(runtime: impl Runtime, wake: Arc<Notify>) {
    loop {
        runtime.watch_events(&wake).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A change of the desired state in the API (a release, a scale, a build dyno asked for) wakes
/// the loop at once; the tick stays the fallback when the API cannot be reached.
async fn wake_on_api_changes(api: ApiClient, wake: Arc<Notify>) {
    let mut seen = 0u64;
    loop {
        match api.changes(seen).await {
            Ok(version) => {
                if version != seen {
                    seen = version;
                    wake.notify_one();
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "waiting for API changes failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// What the loop remembers between ticks. Nothing here is needed to recover: a new runner
/// rebuilds it from Docker (dynos are re-checked and adopted, not restarted).
struct Runner<R: Runtime> {
    config: Config,
    runtime: R,
    api: ApiClient,
    routes: watch::Sender<RouteTable>,
    desired: Option<DesiredState>,
    /// Slug images known to exist, by image name.
    images: HashSet<String>,
    /// Image builds under way, by image name.
    building: Arc<Mutex<HashSet<String>>>,
    /// Running dynos that are up (web dynos and listening services' once they answered on
    /// their port).
    up: HashSet<String>,
    /// Apps whose formation dynos listen on `$PORT` (add-on servers): probed like web dynos.
    listening: HashSet<String>,
    /// Containers in the route table last published: only they are drained before a stop.
    /// Another dyno has no routed request in flight to finish: a worker, an add-on server, or
    /// a platform component on the host's network (which, sharing its port with its
    /// successor, would even take new connections during a drain).
    routed: HashSet<String>,
    /// Containers being drained and stopped.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// When the runner first saw each starting container.
    seen_starting: HashMap<String, Instant>,
    /// Last known reason for each stopped container, and crash bookkeeping per slot.
    reasons: HashMap<String, String>,
    counted: HashSet<String>,
    backoff: HashMap<Slot, Backoff>,
    wake: Arc<Notify>,
    last_report: Option<(Instant, DynoReport)>,
    clock: Instant,
    /// When unneeded volumes were last looked for.
    volumes_checked: Option<Instant>,
    /// When slug images were last collected.
    images_collected: Option<Instant>,
    /// The containers of the platform's own components (host-network dynos), as last listed.
    components: HashSet<String>,
    /// The stacks, once made sure of (sent with each report).
    stacks: Arc<Mutex<Vec<ouro_types::Stack>>>,
    /// The desired state last written to `config.state_file`.
    saved: Option<DesiredState>,
    /// The apps of a bootstrap seed (`DesiredState::seed`), run beside the API's desired state
    /// until it has them all.
    seed: Vec<DesiredApp>,
    /// Where the dynos' output goes (to the API).
    logs: logs::LogQueue,
    /// Containers whose output is followed (each by a task of its own, see `follow.rs`).
    followed: HashSet<String>,
    /// Attached one-offs' bridges, open and ended (see `attach.rs`).
    bridges: attach::SharedBridges,
    /// The one-offs (app, number) whose bridge was open at the last observation.
    attaching: HashSet<(String, u32)>,
    /// Containers whose bridge has ended in this runner: an attached dyno running without a
    /// bridge and not in here is an orphan (a previous runner's), nobody watches it.
    bridged: HashSet<String>,
    /// What the runner cannot get past by itself, served by `GET /health`.
    problems: health::Problems,
    /// Log lines of failures that repeat every tick, each at a bounded rate.
    quiet: Quiet,
}

/// The throttles of the failures the loop may meet on every tick (see [`health::Throttle`]).
#[derive(Default)]
struct Quiet {
    api: health::Throttle,
    report: health::Throttle,
    reconcile: health::Throttle,
    /// Slug image builds, by image (each retried every few seconds while it fails).
    images: Arc<Mutex<HashMap<String, health::Throttle>>>,
}

/// How often the runner looks for volumes nothing needs.
const VOLUME_GC_EVERY: Duration = Duration::from_secs(10);

impl<R: Runtime> Runner<R> {
    fn new(
        config: Config,
        runtime: R,
        routes: watch::Sender<RouteTable>,
        logs: logs::LogQueue,
        problems: health::Problems,
    ) -> Runner<R> {
        let saved = config.state_file.as_deref().and_then(load_state);
        if let (Some(state), Some(path)) = (&saved, &config.state_file) {
            tracing::info!(apps = state.apps.len(), path = %path.display(), "starting from the last known desired state");
        }
        Runner {
            api: ApiClient::new(&config.api_url, &config.api_token),
            config,
            runtime,
            routes,
            desired: saved.clone(),
            seed: saved.as_ref().filter(|s| s.seed).map(|s| s.apps.clone()).unwrap_or_default(),
            saved,
            images: HashSet::new(),
            building: Arc::default(),
            up: HashSet::new(),
            listening: HashSet::new(),
            routed: HashSet::new(),
            stopping: Arc::default(),
            seen_starting: HashMap::new(),
            reasons: HashMap::new(),
            counted: HashSet::new(),
            backoff: HashMap::new(),
            wake: Arc::new(Notify::new()),
            last_report: None,
            clock: Instant::now(),
            volumes_checked: None,
            images_collected: None,
            components: HashSet::new(),
            stacks: Arc::default(),
            logs,
            followed: HashSet::new(),
            bridges: Arc::default(),
            attaching: HashSet::new(),
            bridged: HashSet::new(),
            problems,
            quiet: Quiet::default(),
        }
    }

    async fn reconcile_forever(&mut self) {
        let mut failures = 0u32;
        loop {
            let busy = match self.reconcile().await {
                Ok(busy) => {
                    failures = 0;
                    if let Some(down_for) = self.quiet.reconcile.recovered(Instant::now()) {
                        tracing::info!(?down_for, "reconciling again");
                    }
                    if self.problems.clear(DOCKER_PROBLEM) {
                        tracing::info!("the Docker Engine answers again");
                    }
                    busy
                }
                Err(e) => {
                    failures += 1;
                    if let Error::Docker(message) = &e {
                        self.problems.set(DOCKER_PROBLEM, format!("{message}; check that the Docker Engine runs"));
                    }
                    if let Some(unlogged) = self.quiet.reconcile.failed(Instant::now()) {
                        tracing::warn!(error = %e, unlogged, "reconcile failed; retrying");
                    }
                    false
                }
            };
            // Poll fast while dynos boot or images build; back off on repeated errors.
            let pause = if busy { Duration::from_millis(200) } else { self.config.tick * failures.clamp(1, 5) };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// One pass; returns whether something is in motion (booting dynos, builds, drains).
    async fn reconcile(&mut self) -> Result<bool> {
        let mut fresh = false;
        match self.api.desired_state().await {
            Ok(mut desired) => {
                if let Some(down_for) = self.quiet.api.recovered(Instant::now()) {
                    tracing::info!(?down_for, "the API answers again");
                }
                if merge_seed(&mut self.seed, &mut desired) {
                    tracing::info!("the API has every app of the bootstrap seed: it manages them from now on");
                }
                if self.saved.as_ref() != Some(&desired) {
                    if let Some(path) = &self.config.state_file {
                        match save_state(path, &desired).await {
                            Ok(()) => self.saved = Some(desired.clone()),
                            Err(e) => {
                                tracing::warn!(error = %e, path = %path.display(), "could not keep the desired state")
                            }
                        }
                    }
                }
                self.desired = Some(desired);
                fresh = true;
            }
            // The control plane may be down: keep converging on what we last knew.
            Err(e) if self.desired.is_some() => {
                if let Some(unlogged) = self.quiet.api.failed(Instant::now()) {
                    tracing::warn!(error = %e, unlogged, "API unreachable; using the last desired state")
                }
            }
            Err(e) => {
                if let Some(unlogged) = self.quiet.api.failed(Instant::now()) {
                    tracing::warn!(error = %e, unlogged, "API unreachable and no desired state known yet; waiting for it")
                }
                return Ok(false);
            }
        }
        let desired = self.desired.clone().unwrap_or_default();
        self.runtime.follow_tasks(self.logs.clone()).await;
        if self.config.swarm == Some(SwarmRole::Node) {
            return self.make_images(&desired).await;
        }
        let containers = self.runtime.list_dynos().await?;
        self.components = containers.iter().filter(|c| c.host_network).map(|c| c.id.clone()).collect();
        self.listening = desired.apps.iter().filter(|a| a.listens).map(|a| a.app_name.clone()).collect();
        self.follow_adopted(&containers);
        let live = self.observe(&containers).await;
        self.publish_routes(&desired, &containers);
        self.note_stack_update(&desired).await;
        self.report(&containers).await;

        let images_ready = self.images_ready(&desired).await?;
        let now_ms =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let ctx = Context { images_ready: &images_ready, backoff: &self.backoff, now: self.now(), now_ms };
        let steps = plan::plan(&desired, &live, &ctx);
        self.execute(&desired, steps).await;
        // Volumes of deleted apps go, judged only on a desired state read just now.
        if fresh && self.volumes_checked.is_none_or(|at| at.elapsed() > VOLUME_GC_EVERY) {
            self.volumes_checked = Some(Instant::now());
            if let Err(e) = self.runtime.prune_volumes(&desired.volumes).await {
                tracing::warn!(error = %e, "could not list volumes");
            }
        }
        // Slug images no desired release needs (old releases', deleted apps'): a rollback
        // makes its image again from the slug in a fraction of a second.
        if fresh && self.images_collected.is_none_or(|at| at.elapsed() > self.config.image_gc_every) {
            self.images_collected = Some(Instant::now());
            let wanted: HashSet<String> = desired
                .apps
                .iter()
                .flat_map(|app| {
                    std::iter::once(&app.release).chain(app.one_offs.iter().filter_map(|o| o.release.as_ref()))
                })
                .map(runtime::slug_image)
                .collect();
            match self.runtime.prune_images(&wanted, self.config.image_gc_age).await {
                Ok(removed) => {
                    for image in &removed {
                        self.images.remove(image);
                    }
                    if !removed.is_empty() {
                        tracing::info!(removed = removed.len(), "removed slug images no release needs");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not collect slug images"),
            }
        }
        let booting = live.iter().any(|d| d.state == LiveState::Running { up: false });
        let moving = !self.building.lock().map(|b| b.is_empty()).unwrap_or(true)
            || !self.stopping.lock().map(|s| s.is_empty()).unwrap_or(true);
        Ok(booting || moving)
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_secs()
    }

    /// A swarm node's pass (`OURO_SWARM=node`): makes the slug images of the releases whose
    /// dynos the manager's runner runs as services (see `swarm.rs`), and nothing else; returns
    /// whether builds are under way.
    async fn make_images(&mut self, desired: &DesiredState) -> Result<bool> {
        let images_ready = self.images_ready(desired).await?;
        let ctx = Context { images_ready: &images_ready, backoff: &self.backoff, now: self.now(), now_ms: 0 };
        let services: HashSet<&str> = desired
            .apps
            .iter()
            .filter(|a| swarm::runs_as_services(a.host_network, !a.mounts.is_empty(), a.api_access))
            .filter(|a| a.release.stack != ouro_types::BUILD_STACK)
            .map(|a| a.app_name.as_str())
            .collect();
        let builds: Vec<Step> = plan::plan(desired, &[], &ctx)
            .into_iter()
            .filter(|step| matches!(step, Step::BuildImage { app, .. } if services.contains(app.as_str())))
            .collect();
        self.execute(desired, builds).await;
        Ok(!self.building.lock().map(|b| b.is_empty()).unwrap_or(true))
    }

    /// Turns containers into live dynos: probes booting web dynos, times out boots, and
    /// records crashes (with their back-off) the first time it sees them. Attached one-offs
    /// are their bridge's while it is open; one running without any is stopped.
    async fn observe(&mut self, containers: &[Container]) -> Vec<LiveDyno> {
        let stopping = self.stopping.lock().map(|s| s.clone()).unwrap_or_default();
        let ids: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.up.retain(|id| ids.contains(id.as_str()));
        self.seen_starting.retain(|id, _| ids.contains(id.as_str()));
        self.reasons.retain(|id, _| ids.contains(id.as_str()));
        self.counted.retain(|id| ids.contains(id.as_str()));
        self.bridged.retain(|id| ids.contains(id.as_str()));
        // Open bridges and ended ones read at once: a bridge is seen either open or ended.
        let ended = match self.bridges.lock() {
            Ok(mut bridges) => {
                self.attaching = bridges.open.clone();
                std::mem::take(&mut bridges.ended)
            }
            Err(_) => Vec::new(),
        };
        for (id, reason) in ended {
            if let Some(reason) = reason {
                self.reasons.insert(id.clone(), reason);
            }
            self.bridged.insert(id);
        }
        let mut live = Vec::new();
        for c in containers {
            let bridging = c.process_type == plan::ONE_OFF && self.attaching.contains(&(c.app.clone(), c.index));
            let state = if stopping.contains(&c.id) {
                LiveState::Stopping
            } else if c.running && c.attached && !bridging && !self.bridged.contains(&c.id) {
                tracing::warn!(app = %c.app, dyno = %format!("run.{}", c.index), "an attached one-off dyno has no terminal (a previous runner's); stopping it");
                self.reasons.insert(c.id.clone(), attach::TERMINAL_GONE.to_string());
                self.spawn_end(c.id.clone());
                LiveState::Stopping
            } else if c.running {
                LiveState::Running { up: self.is_up(c).await }
            } else if bridging {
                LiveState::Attaching
            } else {
                self.record_crash(c).await;
                LiveState::Stopped
            };
            live.push(LiveDyno {
                container_id: c.id.clone(),
                app: c.app.clone(),
                release: c.release,
                process_type: c.process_type.clone(),
                index: c.index,
                state,
                started_ms: c.started_ms,
                joined: c.joined.clone(),
                named: c.named,
            });
        }
        live
    }

    async fn is_up(&mut self, c: &Container) -> bool {
        if self.up.contains(&c.id) {
            return true;
        }
        // A dyno on the host's network (a platform component) is up once it says it listens,
        // or, saying nothing, once it has run for the boot timeout: its predecessor in the
        // slot stops only then (see `plan::Rollout::HandOver`).
        if c.host_network {
            let first_seen = *self.seen_starting.entry(c.id.clone()).or_insert_with(Instant::now);
            if self.runtime.said_listening(c).await || first_seen.elapsed() > self.config.boot_timeout {
                self.up.insert(c.id.clone());
                self.seen_starting.remove(&c.id);
                self.problems.clear(&c.app);
                return true;
            }
            return false;
        }
        // Web dynos on an app network are probed, and a listening service's (an add-on
        // server is up when it accepts connections, not when its process starts).
        let probed = c.process_type == "web" || (self.listening.contains(&c.app) && c.process_type != plan::ONE_OFF);
        if !probed {
            self.up.insert(c.id.clone());
            return true;
        }
        if self.runtime.accepts(c).await {
            self.up.insert(c.id.clone());
            self.seen_starting.remove(&c.id);
            return true;
        }
        let first_seen = *self.seen_starting.entry(c.id.clone()).or_insert_with(Instant::now);
        if first_seen.elapsed() > self.config.boot_timeout {
            let reason = format!(
                "R10: {} process failed to bind to $PORT within {} seconds of launch",
                c.process_type,
                self.config.boot_timeout.as_secs()
            );
            tracing::warn!(app = %c.app, dyno = %format!("{}.{}", c.process_type, c.index), %reason, "boot timeout");
            self.reasons.insert(c.id.clone(), reason);
            self.runtime.kill(&c.id).await;
        }
        false
    }

    async fn record_crash(&mut self, c: &Container) {
        if self.counted.contains(&c.id) {
            return;
        }
        self.counted.insert(c.id.clone());
        if !self.reasons.contains_key(&c.id) {
            let reason = self.runtime.exit_reason(&c.id).await.unwrap_or_else(|| "stopped".into());
            self.reasons.insert(c.id.clone(), reason);
        }
        if c.process_type == plan::ONE_OFF {
            // One-offs end; they are not restarted.
            tracing::info!(app = %c.app, dyno = %format!("run.{}", c.index), reason = %self.reasons[&c.id], "one-off dyno finished");
            return;
        }
        let slot = (c.app.clone(), c.release, c.process_type.clone(), c.index);
        let now = self.now();
        let entry = self.backoff.entry(slot).or_default();
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        let ran_for = Duration::from_millis(now_ms.saturating_sub(c.started_ms));
        let (restarts, delay) = plan::crash_backoff(entry.restarts, ran_for, c.host_network);
        entry.restarts = restarts + 1;
        entry.not_before = now + delay.as_secs();
        // A platform component that keeps crashing (its port taken, say) stops the platform:
        // a problem for `GET /health`, with what it said last, until one of its dynos is up.
        if c.host_network && entry.restarts >= COMPONENT_CRASHES_REPORTED {
            let said = self.runtime.output_tail(&c.id, 3).await.join(" | ");
            let message = format!(
                "its dyno {}.{} keeps crashing ({} times; {}){}",
                c.process_type,
                c.index,
                entry.restarts,
                self.reasons[&c.id],
                if said.is_empty() { String::new() } else { format!(": {said}") }
            );
            self.problems.set(&c.app, message);
        }
        tracing::warn!(
            app = %c.app,
            dyno = %format!("{}.{}", c.process_type, c.index),
            reason = %self.reasons[&c.id],
            restart_in = ?delay,
            "dyno crashed"
        );
    }

    /// Which desired releases have their slug image, checking Docker for ones not seen yet.
    async fn images_ready(&mut self, desired: &DesiredState) -> Result<HashSet<(String, i64)>> {
        let mut ready = HashSet::new();
        for app in &desired.apps {
            let releases = std::iter::once(&app.release).chain(app.one_offs.iter().filter_map(|o| o.release.as_ref()));
            for release in releases {
                let image = runtime::slug_image(release);
                if !self.images.contains(&image) && self.runtime.image_exists(&image).await? {
                    self.images.insert(image.clone());
                }
                if self.images.contains(&image) {
                    ready.insert((app.app_name.clone(), release.version));
                }
            }
        }
        Ok(ready)
    }

    async fn execute(&mut self, desired: &DesiredState, steps: Vec<Step>) {
        let apps: HashMap<&str, &DesiredApp> = desired.apps.iter().map(|a| (a.app_name.as_str(), a)).collect();
        let mut starts = Vec::new();
        for step in steps {
            match step {
                Step::BuildImage { app, release } => {
                    if let Some(desired) = apps.get(app.as_str()).and_then(|a| release_of(a, release)) {
                        self.spawn_build(&app, desired);
                    }
                }
                Step::Start { app, release, process_type, index, size } => {
                    if let Some(app) = apps.get(app.as_str()) {
                        starts.push((*app, release, process_type, index, size));
                    }
                }
                Step::Stop { container_id, reason: plan::StopReason::OutOfTime { seconds } } => {
                    let reason = plan::time_to_live_reason(seconds);
                    tracing::info!(container = %container_id, %reason, "stopping a one-off dyno");
                    self.reasons.insert(container_id.clone(), reason);
                    self.spawn_end(container_id);
                }
                Step::Stop { container_id, reason } => {
                    tracing::info!(container = %container_id, ?reason, "draining dyno");
                    self.spawn_stop(container_id);
                }
                Step::Remove { container_id } => {
                    tracing::info!(container = %container_id, "removing stopped dyno");
                    self.runtime.remove(&container_id).await;
                }
                Step::Join { container_id, app, network_of } => {
                    match self.runtime.connect(&container_id, &app, &network_of).await {
                        Ok(()) => {
                            tracing::info!(%app, container = %container_id, network_of = %network_of, "dyno joined a network")
                        }
                        Err(e) => {
                            tracing::warn!(%app, network_of = %network_of, error = %e, "could not join a network")
                        }
                    }
                }
                Step::Leave { container_id, network_of } => {
                    if let Err(e) = self.runtime.disconnect(&container_id, &network_of).await {
                        tracing::warn!(container = %container_id, network_of = %network_of, error = %e, "could not leave a network");
                    }
                }
            }
        }
        // Networks first, one app at a time (creating one twice in parallel makes two); an
        // app on the host's network has none.
        let runtime = &self.runtime;
        let api_url = self.config.api_url_for_dynos.as_str();
        let mut networks = HashSet::new();
        for (app, ..) in starts.iter().filter(|(app, ..)| !app.host_network) {
            for name in std::iter::once(&app.app_name).chain(&app.joins) {
                if networks.insert(name.as_str()) {
                    if let Err(e) = runtime.ensure_network(name).await {
                        tracing::warn!(app = %name, error = %e, "could not create the app's network");
                    }
                }
            }
        }
        // Attached one-offs start in bridges of their own (they wait for a terminal), once.
        let launches: Vec<Launch> = starts
            .iter()
            .map(|(app, release, process_type, index, size)| {
                let mut launch = Launch::new(app, *release, process_type, *index, size, api_url);
                // The platform's own components on the host's network: the router reads the
                // route table with it (see `secret.rs`).
                if launch.host_network {
                    launch.config.insert(secret::VARIABLE.to_string(), self.config.secret.clone());
                }
                launch
            })
            .collect();
        let (attached, launches): (Vec<Launch>, Vec<Launch>) = launches.into_iter().partition(|l| l.attach);
        for launch in attached {
            self.spawn_bridge(launch);
        }
        // Then start in parallel: scaling to 20 should not take 20 round trips in a row.
        let results = futures_util::future::join_all(launches.iter().map(|launch| runtime.start(launch))).await;
        for (launch, result) in launches.iter().zip(results) {
            let dyno = format!("{}.{}", launch.process_type, launch.index);
            match result {
                Ok(id) => {
                    tracing::info!(app = %launch.app, %dyno, container = %id, "dyno started");
                    self.follow(id, &launch.app, &launch.process_type, launch.index, follow::From::Start);
                }
                Err(e) => {
                    tracing::warn!(app = %launch.app, %dyno, error = %e, "dyno failed to start");
                    // Its image may be gone (collected by another installation on this engine,
                    // or removed by hand): the next tick asks the engine again, and makes it
                    // again if so.
                    self.images.remove(&launch.image);
                }
            }
        }
    }

    /// Starts attached one-off `launch` in a bridge of its own (see `attach.rs`), unless one
    /// is open for it already.
    fn spawn_bridge(&self, launch: Launch) {
        {
            let Ok(mut bridges) = self.bridges.lock() else { return };
            if !bridges.open.insert((launch.app.clone(), launch.index)) {
                return;
            }
        }
        let api = attach::ApiTarget { url: self.config.api_url.clone(), token: self.config.api_token.clone() };
        self.runtime.bridge(api, launch, self.bridges.clone(), self.wake.clone());
    }

    /// Follows the output of the running containers no follower reads yet: dynos this runner
    /// did not start (a previous runner did: it is adopting them), from now on, since the
    /// previous runner shipped what came before. Forgets containers that are gone.
    fn follow_adopted(&mut self, containers: &[Container]) {
        let ids: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        self.followed.retain(|id| ids.contains(id.as_str()));
        let now = SystemTime::now();
        // An attached one-off's output goes to its terminal only.
        for c in containers.iter().filter(|c| c.running && !c.attached) {
            self.follow(c.id.clone(), &c.app, &c.process_type, c.index, follow::From::Time(now));
        }
    }

    /// Starts following container `id`, a dyno of `app`, unless it is already followed or is
    /// a build (whose output the build relays).
    fn follow(&mut self, id: String, app: &str, process_type: &str, index: u32, from: follow::From) {
        if app == follow::BUILDER_APP || self.followed.contains(&id) {
            return;
        }
        self.followed.insert(id.clone());
        let dyno = follow::Dyno { container_id: id, app: app.to_string(), name: format!("{process_type}.{index}") };
        self.runtime.follow(self.logs.clone(), dyno, from);
    }

    fn spawn_build(&self, app: &str, release: &ouro_types::DesiredRelease) {
        let image = runtime::slug_image(release);
        {
            let Ok(mut building) = self.building.lock() else { return };
            if !building.insert(image.clone()) {
                return;
            }
        }
        let (runtime, api, building, wake) =
            (self.runtime.clone(), self.api.clone(), self.building.clone(), self.wake.clone());
        let (problems, throttles) = (self.problems.clone(), self.quiet.images.clone());
        let (url, checksum) = (release.slug_url.clone(), release.slug_checksum.clone());
        let (name, on, update) = (app.to_string(), release.stack.clone(), release.stack_update.clone());
        tracing::info!(app = %name, %image, "building slug image");
        tokio::spawn(async move {
            let started = Instant::now();
            let result = async {
                let slug = api.slug(&url, &checksum).await?;
                runtime.build_image(&on, update.as_deref(), slug, &image).await
            }
            .await;
            // A stack image that cannot be made stops every app: a problem for `GET /health`.
            // A slug on this host's disk (the bootstrap seed's) too: nothing else brings it.
            let local_slug = url.starts_with("file://");
            match result {
                Ok(()) => {
                    tracing::info!(app = %name, %image, took = ?started.elapsed(), "slug image built");
                    if problems.clear(STACK_PROBLEM) {
                        tracing::info!("the stack image is there now");
                    }
                    if local_slug {
                        problems.clear(&name);
                    }
                    if let Ok(mut throttles) = throttles.lock() {
                        throttles.remove(&image);
                    }
                }
                Err(e) => {
                    match &e {
                        Error::Stack(stack) => {
                            problems.set(STACK_PROBLEM, stack.to_string());
                        }
                        _ if local_slug => {
                            problems.set(&name, format!("its slug image cannot be made: {e}"));
                        }
                        _ => {}
                    }
                    let log = throttles
                        .lock()
                        .ok()
                        .and_then(|mut throttles| throttles.entry(image.clone()).or_default().failed(Instant::now()));
                    if let Some(unlogged) = log {
                        tracing::error!(app = %name, %image, error = %e, unlogged, "slug image build failed; retrying every 5 s");
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            if let Ok(mut building) = building.lock() {
                building.remove(&image);
            }
            wake.notify_one();
        });
    }

    /// Out of the routes now; SIGTERM after the drain period; removed when stopped.
    fn spawn_stop(&self, id: String) {
        if let Ok(mut stopping) = self.stopping.lock() {
            if !stopping.insert(id.clone()) {
                return;
            }
        }
        let (runtime, stopping, wake) = (self.runtime.clone(), self.stopping.clone(), self.wake.clone());
        let drain = if self.routed.contains(&id) { self.config.drain } else { Duration::ZERO };
        let grace = match self.components.contains(&id) {
            true => self.config.component_stop_grace,
            false => self.config.stop_grace,
        };
        // Routes are republished at once (the dyno is now `Stopping`), before the drain starts.
        self.wake.notify_one();
        tokio::spawn(async move {
            tokio::time::sleep(drain).await;
            runtime.stop_and_remove(&id, grace).await;
            if let Ok(mut stopping) = stopping.lock() {
                stopping.remove(&id);
            }
            wake.notify_one();
        });
    }

    /// SIGTERM, SIGKILL after [`attach::STOP_GRACE`], no drain: a one-off dyno's end (out of
    /// time, or nobody attached). The container stays, so that its end is reported with the
    /// reason recorded for it; the plan removes it once the API no longer wants it.
    fn spawn_end(&self, id: String) {
        if let Ok(mut stopping) = self.stopping.lock() {
            if !stopping.insert(id.clone()) {
                return;
            }
        }
        let (runtime, stopping, wake) = (self.runtime.clone(), self.stopping.clone(), self.wake.clone());
        self.wake.notify_one();
        tokio::spawn(async move {
            runtime.stop(&id, attach::STOP_GRACE).await;
            if let Ok(mut stopping) = stopping.lock() {
                stopping.remove(&id);
            }
            wake.notify_one();
        });
    }

    fn publish_routes(&mut self, desired: &DesiredState, containers: &[Container]) {
        let stopping = self.stopping.lock().map(|s| s.clone()).unwrap_or_default();
        let mut routed = HashSet::new();
        let routes = desired
            .apps
            .iter()
            .map(|app| Route {
                app: app.app_name.clone(),
                hosts: std::iter::once(format!("{}.{}", app.app_name, self.config.domain))
                    .chain(app.domains.iter().cloned())
                    .collect(),
                backends: containers
                    .iter()
                    // The router reaches dynos at their address on their app's network: those on
                    // the host's network (which have none) are not routed.
                    .filter(|c| c.app == app.app_name && c.process_type == "web" && c.running && !c.host_network)
                    .filter(|c| self.up.contains(&c.id) && !stopping.contains(&c.id))
                    .filter_map(|c| {
                        let addr = c.addr.clone()?;
                        routed.insert(c.id.clone());
                        Some(RouteBackend { dyno: format!("web.{}", c.index), addr })
                    })
                    .collect(),
                certificates: app.certificates.clone(),
                acme_challenges: app.acme_challenges.clone(),
            })
            .collect();
        self.routed = routed;
        routes::publish(&self.routes, routes);
    }

    /// Sends the API the dynos as they are, when they changed or every 30 s.
    /// While the reported run stack is not the one with the stack update the desired state asks
    /// for, looks again (the update is made with the first slug image that needs it), so that
    /// `ouro stack` shows it once it is there. Only once the stack image itself is known (the
    /// start's [`ensure_stack_forever`]).
    async fn note_stack_update(&mut self, desired: &DesiredState) {
        let wanted = desired
            .apps
            .iter()
            .map(|a| &a.release)
            .find(|r| r.stack == ouro_types::STACK)
            .and_then(|r| r.stack_update.clone());
        let Some(wanted) = wanted else { return };
        let known = match self.stacks.lock() {
            Ok(stacks) if stacks.is_empty() => return,
            Ok(stacks) => stacks.iter().any(|s| s.update.as_deref() == Some(wanted.as_str())),
            Err(_) => return,
        };
        if known {
            return;
        }
        let found = self.runtime.stacks(Some(&wanted)).await;
        if !found.is_empty() {
            if let Ok(mut stacks) = self.stacks.lock() {
                *stacks = found;
            }
        }
    }

    async fn report(&mut self, containers: &[Container]) {
        let stopping = self.stopping.lock().map(|s| s.clone()).unwrap_or_default();
        let dynos = containers
            .iter()
            .map(|c| {
                let clean_exit = self.reasons.get(&c.id).is_some_and(|r| r.ends_with("status 0"));
                let bridging = c.process_type == plan::ONE_OFF && self.attaching.contains(&(c.app.clone(), c.index));
                let state = if stopping.contains(&c.id) || (!c.running && clean_exit && !bridging) {
                    DynoState::Down
                } else if !c.running && bridging {
                    // Its bridge owns it: waiting for its terminal, or sending its exit status.
                    DynoState::Starting
                } else if !c.running {
                    DynoState::Crashed
                } else if self.up.contains(&c.id) {
                    DynoState::Up
                } else {
                    DynoState::Starting
                };
                let slot = (c.app.clone(), c.release, c.process_type.clone(), c.index);
                Dyno {
                    id: c.id.clone(),
                    app: c.app.clone(),
                    name: format!("{}.{}", c.process_type, c.index),
                    process_type: c.process_type.clone(),
                    state,
                    size: c.size.clone(),
                    release: c.release,
                    reason: self.reasons.get(&c.id).cloned(),
                    restarts: self.backoff.get(&slot).map_or(0, |b| b.restarts),
                    created_at: humantime::format_rfc3339_seconds(
                        SystemTime::UNIX_EPOCH + Duration::from_secs(c.created.max(0) as u64),
                    )
                    .to_string(),
                    node: c.node.clone(),
                }
            })
            .collect();
        let stacks = self.stacks.lock().map(|s| s.clone()).unwrap_or_default();
        let nodes = self.runtime.nodes().await;
        let report = DynoReport { dynos, stacks, nodes };
        let fresh = self
            .last_report
            .as_ref()
            .is_some_and(|(at, last)| *last == report && at.elapsed() < Duration::from_secs(30));
        if fresh {
            return;
        }
        match self.api.report(&report).await {
            Ok(()) => {
                self.last_report = Some((Instant::now(), report));
                self.quiet.report.recovered(Instant::now());
            }
            Err(e) => {
                if let Some(unlogged) = self.quiet.report.failed(Instant::now()) {
                    tracing::warn!(error = %e, unlogged, "could not report dynos to the API; retrying");
                }
            }
        }
    }
}

/// Everything a dyno's start needs, owned: an attached one-off starts in a task of its own.
pub(crate) struct Launch {
    pub(crate) app: String,
    pub(crate) release: i64,
    pub(crate) process_type: String,
    pub(crate) index: u32,
    pub(crate) size: String,
    pub(crate) command: String,
    pub(crate) image: String,
    /// The release's config, with a one-off's env over it.
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) volumes: Vec<ouro_types::VolumeMount>,
    pub(crate) api_url: Option<String>,
    pub(crate) joins: Vec<String>,
    pub(crate) host_network: bool,
    pub(crate) attach: bool,
    pub(crate) tty: bool,
}

impl Launch {
    /// Dyno `process_type.index` of `app` on `release`; a one-off runs its own command with
    /// its env over its release's config.
    fn new(app: &DesiredApp, release: i64, process_type: &str, index: u32, size: &str, api_url: &str) -> Launch {
        let one_off =
            (process_type == plan::ONE_OFF).then(|| app.one_offs.iter().find(|o| o.number == index)).flatten();
        let run_on = release_of(app, release).unwrap_or(&app.release);
        let mut config = run_on.config.clone();
        let command = match one_off {
            Some(o) => {
                config.extend(o.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                o.command.clone()
            }
            None => run_on.process_types.get(process_type).cloned().unwrap_or_else(|| "false".into()),
        };
        let api_access = one_off.map_or(app.api_access, |o| o.api_access);
        Launch {
            app: app.app_name.clone(),
            release,
            process_type: process_type.to_string(),
            index,
            size: size.to_string(),
            command,
            image: runtime::slug_image(run_on),
            config,
            volumes: one_off.map_or(&app.mounts, |o| &o.mounts).clone(),
            api_url: api_access.then(|| api_url.to_string()),
            joins: if one_off.is_some() || app.host_network { Vec::new() } else { app.joins.clone() },
            host_network: app.host_network,
            attach: one_off.is_some_and(|o| o.attach),
            tty: one_off.is_some_and(|o| o.attach && o.tty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_urls() {
        assert_eq!(port_of("http://host.docker.internal:7700"), Some(7700));
        assert_eq!(port_of("http://host.docker.internal:7700/x:9"), Some(7700));
        assert_eq!(port_of("https://api.example.com/"), Some(443));
        assert_eq!(port_of("http://[::1]"), Some(80));
        assert_eq!(port_of("not a url"), None);
    }

    fn app(name: &str, volume: Option<&str>) -> DesiredApp {
        let mounts: Vec<serde_json::Value> =
            volume.map(|v| serde_json::json!({"volume": v, "path": "/data"})).into_iter().collect();
        serde_json::from_value(serde_json::json!({
            "app_id": name, "app_name": name, "formation": [], "mounts": mounts,
            "release": {"id": "r", "version": 1, "slug_id": "s", "slug_checksum": "SHA256:00",
                        "slug_url": "file:///s.tgz", "process_types": {}, "config": {}},
        }))
        .expect("a desired app")
    }

    #[test]
    fn the_seed_runs_beside_the_api_state_until_the_api_has_all_of_it() {
        let mut seed = vec![app("ouro-router", None), app("ouro-api", Some("ouro-data"))];
        let mut desired = DesiredState { apps: vec![app("shop", None)], volumes: vec![], seed: false };
        assert!(!merge_seed(&mut seed, &mut desired));
        let names: Vec<&str> = desired.apps.iter().map(|a| a.app_name.as_str()).collect();
        assert_eq!(names, ["shop", "ouro-router", "ouro-api"]);
        assert_eq!(desired.volumes, ["ouro-data"]);
        assert!(desired.seed, "kept as a seed, should the runner restart meanwhile");
        // The API knows the router only: the seed's API stays.
        let mut desired = DesiredState { apps: vec![app("ouro-router", None)], volumes: vec![], seed: false };
        assert!(!merge_seed(&mut seed, &mut desired));
        assert_eq!(desired.apps.len(), 2);
        // The API knows both: the seed is over, and stays over.
        let mut desired =
            DesiredState { apps: vec![app("ouro-router", None), app("ouro-api", None)], volumes: vec![], seed: false };
        assert!(merge_seed(&mut seed, &mut desired));
        assert!(seed.is_empty() && !desired.seed && desired.apps.len() == 2);
        let mut later = DesiredState::default();
        assert!(!merge_seed(&mut seed, &mut later));
        assert!(later.apps.is_empty());
    }
}
