//! Ouro's control plane: the Platform API and the desired state behind it (apps, releases,
//! slugs, config vars, formation, tokens, audit log).
//!
//! It decides *what should run*; it never starts a container itself (that is the dyno
//! runner's job) and nothing in an app's request path ever calls it.

mod access;
mod accounts;
mod acm;
mod acme;
mod addons;
mod apps;
mod attach;
mod audit;
mod auth;
mod blob;
mod blob_gc;
mod builder_app;
mod builds;
mod certificates;
mod dashboard;
mod desired_state;
mod domains;
mod embedded;
mod error;
mod formation;
mod git;
pub mod hook;
mod https;
mod limits;
mod log_journal;
mod logs;
mod one_offs;
mod pipeline;
mod platform_key;
mod releases;
mod routes;
mod services;
mod stack_updates;
pub mod store;
mod system_addons;
mod teams;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;

pub use blob::{BlobStore, LocalBlobStore};
pub use error::ApiError;
use store::Store;

/// Errors below the HTTP edge. Handlers turn them into [`ApiError`]s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored state: {0}")]
    State(#[from] ouro_types::UnknownState),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("already exists")]
    Conflict,
    /// A cap of [`limits`] reached; the message names it and what to do.
    #[error("{0}")]
    Limit(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the API is set up; every field has an environment variable (see README).
#[derive(Debug, Clone)]
pub struct Config {
    /// `OURO_LISTEN`, default `127.0.0.1:7700`. Port 0 picks a free one.
    pub listen: SocketAddr,
    /// `OURO_DATA_DIR`, default `$HOME/.local/share/ouro`: SQLite file, blobs, admin token.
    pub data_dir: PathBuf,
    /// `OURO_DATABASE_URL`; unset means the SQLite file in the data dir.
    pub database_url: Option<String>,
    /// `OURO_API_URL`: how clients reach this API (git and blob URLs); default from `listen`.
    pub public_url: Option<String>,
    /// `OURO_DOMAIN`, default `localhost`: apps answer at `<app>.<domain>`.
    pub domain: String,
    /// `OURO_APPS_PORT`, default 80: the router's HTTP port, shown in apps' web URLs.
    pub apps_port: u16,
    /// `OURO_MAX_SLUG_BYTES`, default 500 MiB (Heroku's slug limit).
    pub max_slug_bytes: u64,
    /// `OURO_BUILD_TIMEOUT_SECONDS`, default 900 (Heroku's 15 minutes).
    pub build_timeout: std::time::Duration,
    /// `OURO_ROUTER_URL`: the router as this host reaches it (`http://127.0.0.1:8080`), for
    /// calls to apps of the platform (add-on providers registered as `app:<name>`).
    pub router_url: Option<String>,
    /// `OURO_ADDON_PROVIDERS`, default `postgresql,redis`: the add-on providers the API deploys
    /// as system apps at start (`system_addons.rs`); empty for none.
    pub addon_providers: Vec<String>,
    /// `OURO_ADMIN_TOKEN`: the first admin's token, when the API makes the first user (else a
    /// random one); `ouro up` sets it.
    pub admin_token: Option<String>,
    /// `OURO_PLATFORM_KEY` (64 hex digits): seals secrets kept in SQL (`platform_key.rs`);
    /// default: `<data dir>/platform-key`, made at the first start.
    pub platform_key: Option<String>,
    /// `OURO_BLOB_GC_SECONDS` (3600): how often blobs nothing needs are removed
    /// (`blob_gc.rs`); `OURO_BLOB_GC_GRACE_SECONDS` (3600): the youngest that may go.
    pub blob_gc_every: std::time::Duration,
    /// `OURO_EGRESS_ALLOW`: private ranges log drains may reach after all (the runner reads
    /// the same variable for dynos): see `ouro_types::egress`.
    pub egress_allow: Vec<ouro_types::egress::Cidr>,
    pub blob_gc_grace: std::time::Duration,
    /// `OURO_STACK_UPDATE_SECONDS`: how old the stack's updates may grow before the API asks
    /// for a stack update by itself (`stack_updates.rs`); unset: only `ouro stack:update`.
    pub stack_update_every: Option<std::time::Duration>,
    /// The listener's bounds: [`LIMITS`], with `OURO_HEADER_READ_TIMEOUT_SECONDS` and
    /// `OURO_MAX_CONNECTIONS` if set.
    pub limits: ouro_serve::Limits,
    /// `OURO_TLS` (`auto`, `off`), `OURO_TLS_CERT_FILE`, `OURO_TLS_KEY_FILE`: HTTPS on the
    /// listener (`https.rs`).
    pub tls: https::Setting,
    /// `OURO_ACME_DIRECTORY` (Let's Encrypt's): where automatic certificates come from.
    pub acme_directory: String,
    /// `OURO_ACME_CA_FILE`: the PEM of the one authority trusted for the ACME server (a test
    /// server); unset: the public ones.
    pub acme_ca_pem: Option<String>,
    /// `OURO_TLS_NAMES`: more names (or addresses) for the API's own certificate, comma-separated.
    pub tls_names: Vec<String>,
    /// `OURO_PLAIN_HTTP_FROM` (none): IPv4 ranges besides loopback and the Docker bridges from
    /// which plain HTTP is served when TLS is on.
    pub plain_http_from: Vec<ouro_types::egress::Cidr>,
}

/// The listener's bounds, unless the environment says otherwise (see `ouro-serve`).
pub const LIMITS: ouro_serve::Limits = ouro_serve::Limits {
    header_read_timeout: ouro_serve::HEADER_READ_TIMEOUT,
    // The API's clients hold a few connections each (a runner's long poll and log shipping,
    // the CLI's requests, `logs --tail`, attached one-offs and tunnels, pushes and builds):
    // a few hundred at a busy time. 4096 leaves ten times that and bounds what they cost (a
    // file descriptor, a task and its buffers each).
    max_connections: 4096,
    // After shutdown (a handover to a new API, say), requests in flight get 16 minutes: a push
    // waits for its build (15 minutes at most), an upload or a backup may be long; the new
    // API takes every new connection meanwhile. Long polls and followed logs end at once
    // (`AppState::stopping`), so an idle API leaves at once.
    drain_timeout: std::time::Duration::from_secs(16 * 60),
};

impl Config {
    pub fn from_env() -> Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let listen = var("OURO_LISTEN").unwrap_or_else(|| "127.0.0.1:7700".into());
        let listen = listen
            .parse()
            .map_err(|_| Error::Config(format!("OURO_LISTEN `{listen}` is not an address like 127.0.0.1:7700")))?;
        let data_dir = match var("OURO_DATA_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = var("HOME").ok_or_else(|| Error::Config("set OURO_DATA_DIR or HOME".into()))?;
                PathBuf::from(home).join(".local/share/ouro")
            }
        };
        let max_slug_bytes = match var("OURO_MAX_SLUG_BYTES") {
            Some(v) => v.parse().map_err(|_| Error::Config(format!("OURO_MAX_SLUG_BYTES `{v}` is not a number")))?,
            None => 500 * 1024 * 1024,
        };
        Ok(Config {
            listen,
            data_dir,
            database_url: var("OURO_DATABASE_URL"),
            public_url: var("OURO_API_URL"),
            domain: var("OURO_DOMAIN").unwrap_or_else(|| "localhost".into()),
            apps_port: match var("OURO_APPS_PORT") {
                Some(v) => v.parse().map_err(|_| Error::Config(format!("OURO_APPS_PORT `{v}` is not a port")))?,
                None => 80,
            },
            max_slug_bytes,
            build_timeout: std::time::Duration::from_secs(match var("OURO_BUILD_TIMEOUT_SECONDS") {
                Some(v) => {
                    v.parse().map_err(|_| Error::Config(format!("OURO_BUILD_TIMEOUT_SECONDS `{v}` is not a number")))?
                }
                None => 15 * 60,
            }),
            router_url: var("OURO_ROUTER_URL"),
            addon_providers: addon_providers(std::env::var("OURO_ADDON_PROVIDERS").ok())?,
            admin_token: var("OURO_ADMIN_TOKEN"),
            platform_key: var("OURO_PLATFORM_KEY"),
            blob_gc_every: seconds("OURO_BLOB_GC_SECONDS", 3600)?,
            egress_allow: ouro_types::egress::parse_allow(&var("OURO_EGRESS_ALLOW").unwrap_or_default())
                .map_err(Error::Config)?,
            blob_gc_grace: seconds("OURO_BLOB_GC_GRACE_SECONDS", 3600)?,
            stack_update_every: match var("OURO_STACK_UPDATE_SECONDS") {
                Some(_) => Some(seconds("OURO_STACK_UPDATE_SECONDS", 0)?).filter(|every| !every.is_zero()),
                None => None,
            },
            limits: ouro_serve::Limits::from_vars(LIMITS, var).map_err(|e| Error::Config(e.to_string()))?,
            tls: https::Setting::from_vars(var)?,
            acme_directory: var("OURO_ACME_DIRECTORY").unwrap_or_else(|| acm::LETS_ENCRYPT.into()),
            acme_ca_pem: match var("OURO_ACME_CA_FILE") {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| Error::Config(format!("OURO_ACME_CA_FILE {path}: {e}")))?,
                ),
                None => None,
            },
            tls_names: var("OURO_TLS_NAMES")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
            plain_http_from: ouro_types::egress::parse_allow(&var("OURO_PLAIN_HTTP_FROM").unwrap_or_default())
                .map_err(|e| Error::Config(format!("OURO_PLAIN_HTTP_FROM: {e}")))?,
        })
    }
}

fn addon_providers(setting: Option<String>) -> Result<Vec<String>> {
    let setting = setting.unwrap_or_else(|| system_addons::KINDS.join(","));
    let kinds: Vec<String> = setting.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect();
    match kinds.iter().find(|k| !system_addons::KINDS.contains(&k.as_str())) {
        Some(bad) => Err(Error::Config(format!(
            "OURO_ADDON_PROVIDERS names `{bad}`; Ouro ships providers for {}",
            system_addons::KINDS.join(", ")
        ))),
        None => Ok(kinds),
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: Arc<Settings>,
    /// The dyno runner's last report, by app name: live state, kept in memory only (the
    /// runner reports again within seconds after an API restart).
    pub dynos: Arc<std::sync::RwLock<std::collections::HashMap<String, Vec<ouro_types::Dyno>>>>,
    /// The stacks as the runner last reported them (`GET /stacks`), in memory.
    pub stacks: Arc<std::sync::RwLock<Vec<ouro_types::Stack>>>,
    /// The swarm's nodes as the runner last reported them (`GET /nodes`; none on one engine).
    pub nodes: Arc<std::sync::RwLock<Vec<ouro_types::ClusterNode>>>,
    /// One lock per app's git repository: pushes to one app run one at a time, so the refs
    /// read before and after a push are that push's.
    pub pushes: Arc<git::PushLocks>,
    /// Pushes in progress, whose `pre-receive` hooks call back to build.
    pub push_sessions: Arc<git::PushSessions>,
    /// Running builds, whose builder dynos call `/build-api/{build}/*`.
    pub active_builds: Arc<pipeline::ActiveBuilds>,
    /// Bumped after every change to the desired state; the runner long-polls it
    /// (`GET /runner/changes`) so that it acts at once instead of at its next tick.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Why add-ons whose asynchronous provisioning failed are gone, by add-on name (the
    /// newest few), so `ouro addons:wait` can say it.
    pub failed_addons: Arc<std::sync::Mutex<std::collections::VecDeque<(String, String)>>>,
    /// Every app's recent log lines, their followers and the apps' drains.
    pub logs: Arc<logs::Logs>,
    /// Attached one-off dynos waiting for their other half (`ouro run`).
    pub attachments: Arc<attach::Rendezvous>,
    /// Turns true when the process starts to stop: long polls and followed logs end then, so
    /// a replaced API (a handover) is gone in moments instead of the drain cap.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Slugs of the platform's source app to roll out: the pipeline sends each successful
    /// build of Ouro itself here, the upgrade module takes them (`upgrade::take_requests`), so
    /// that the pipeline need not know how an upgrade goes.
    pub platform_builds: tokio::sync::mpsc::UnboundedSender<String>,
    /// Seals the secrets the API keeps in SQL and must read back (TLS private keys).
    pub platform_key: Arc<platform_key::PlatformKey>,
    /// Wakes the automatic certificates' manager (`acm.rs`): an app turned ACM on, asked for
    /// a refresh, or got a domain.
    pub acm_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    /// Resolves once the process starts to stop.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping.subscribe();
        async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        }
    }

    /// Tells a waiting runner that the desired state changed.
    pub fn changed(&self) {
        self.changes.send_modify(|version| *version += 1);
    }

    /// Makes a release of `app` (as `Store::create_release`) and says so in the app's log:
    /// `ouro[api]: <what changed> by <actor>`, then `Release vN created by <actor>`.
    pub async fn create_release(
        &self,
        app: &apps::AppRow,
        actor: &str,
        change: releases::Change,
    ) -> Result<Option<releases::ReleaseRow>> {
        let release = self.store.create_release(&app.id, actor, change).await?;
        if let Some(release) = &release {
            self.logs.event(&app.name, "api", format!("{} by {actor}", release.description));
            self.logs.event(&app.name, "api", format!("Release v{} created by {actor}", release.version));
        }
        Ok(release)
    }
}

pub struct Settings {
    pub public_url: String,
    pub domain: String,
    pub apps_port: u16,
    pub max_slug_bytes: u64,
    /// `<data dir>/repos`: one bare git repository per app, `<app id>.git`.
    pub repos_dir: PathBuf,
    /// This API over loopback, for the git hooks it runs: `http://127.0.0.1:<port>`.
    pub internal_url: String,
    /// This binary, which git runs as the `pre-receive` hook.
    pub hook_exe: PathBuf,
    /// Where this binary is, and beside it the platform's other programs that the API deploys
    /// as system apps: `ouro-build` (the builder's slug) and `ouro-addons` (the providers'
    /// source). `/app/bin` in the components' slug, `target/<profile>` in a checkout.
    pub bin_dir: PathBuf,
    pub build_timeout: std::time::Duration,
    pub router_url: Option<String>,
    pub addon_providers: Vec<String>,
    /// The ACME directory automatic certificates come from (`acm.rs`).
    pub acme_directory: String,
    /// The one authority trusted for it, when not a public one (a test server).
    pub acme_ca_pem: Option<String>,
}

/// The whole HTTP surface. Separate from [`serve`] so tests can drive it in-process.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Opens the store (migrating it), makes the first admin token if there is no user yet,
/// binds, and serves until `shutdown` resolves; then drains in-flight requests.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let url = config.database_url.clone().unwrap_or_else(|| store::sqlite_url(&config.data_dir));
    store::backend_of(&url)?;
    let store = Store::open(&url).await?;
    if let Some(path) = auth::bootstrap_admin(&store, &config.data_dir, config.admin_token.as_deref()).await? {
        println!("ouro-api: created the first admin token; it is in {}", path.display());
    }
    store.claim_mounted_volumes().await?;
    let platform_key = Arc::new(platform_key::PlatformKey::load(config.platform_key.as_deref(), &config.data_dir)?);
    let sealed = store.seal_private_keys(&platform_key).await?;
    if sealed > 0 {
        tracing::info!(sealed, "TLS private keys kept in clear by an earlier version are now sealed");
    }
    // Shared with a successor (`SO_REUSEPORT`): when Ouro runs on itself, the new API dyno
    // listens beside the old one, which drains.
    let socket = match config.listen {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(config.listen)?;
    let listener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    // Bound to every interface (so dynos can reach it): loopback is how this host calls it.
    let local = match addr.ip().is_unspecified() {
        true => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        false => addr,
    };
    let hook_exe = std::env::current_exe()?;
    let (platform_builds, upgrade_requests) = tokio::sync::mpsc::unbounded_channel();
    let state = AppState {
        store: store.clone(),
        blobs: Arc::new(LocalBlobStore::open(config.data_dir.join("blobs"))?),
        settings: Arc::new(Settings {
            public_url: config.public_url.clone().unwrap_or_else(|| format!("http://{local}")),
            domain: config.domain.clone(),
            apps_port: config.apps_port,
            max_slug_bytes: config.max_slug_bytes,
            repos_dir: config.data_dir.join("repos"),
            internal_url: format!("http://{local}"),
            hook_exe: hook_exe.clone(),
            bin_dir: hook_exe.parent().map(Path::to_path_buf).unwrap_or_default(),
            build_timeout: config.build_timeout,
            router_url: config.router_url.clone(),
            addon_providers: config.addon_providers.clone(),
            acme_directory: config.acme_directory.clone(),
            acme_ca_pem: config.acme_ca_pem.clone(),
        }),
        dynos: Arc::default(),
        stacks: Arc::default(),
        nodes: Arc::default(),
        pushes: Arc::default(),
        push_sessions: Arc::default(),
        active_builds: Arc::default(),
        changes: Arc::new(tokio::sync::watch::channel(0).0),
        failed_addons: Arc::default(),
        logs: Arc::default(),
        attachments: Arc::default(),
        stopping: Arc::new(tokio::sync::watch::channel(false).0),
        platform_builds,
        platform_key,
        acm_wake: Arc::default(),
    };
    let mut drains = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (app, url) in store.all_log_drains().await? {
        drains.entry(app).or_default().push(url);
    }
    state.logs.set_egress_allow(config.egress_allow.clone());
    for (app, urls) in drains {
        state.logs.set_drains(&app, &urls);
    }
    // Before anything publishes: the kept lines first, then the new ones after them.
    let journal = log_journal::Journal::start(store.clone(), state.logs.hub().clone()).await?;
    state.logs.keep_in(journal);
    // Builds of an API process that is gone; not those another one still runs (a handover's).
    let interrupted = store.fail_interrupted_builds(&builds::stale_before()).await?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "builds left running by an earlier API process were marked failed");
    }
    builder_app::ensure(&state).await?;
    system_addons::ensure_all(&state).await;
    addons::provisioning::resume_provisioning(&state).await?;
    upgrade::resume(&state).await?;
    tokio::spawn(upgrade::take_requests(state.clone(), upgrade_requests));
    tokio::spawn(sweep_interrupted_builds_forever(state.clone()));
    tokio::spawn(blob_gc::collect_forever(state.clone(), config.blob_gc_every, config.blob_gc_grace));
    tokio::spawn(stack_updates::schedule_forever(state.clone(), config.stack_update_every));
    tokio::spawn(acm::manage_forever(state.clone()));
    let names = https::names(config.public_url.as_deref(), addr, &config.tls_names);
    let tls = https::load(&config.tls, &config.data_dir, &names)?;
    if let Some(tls) = &tls {
        // `ouro up` and the operator compare this with what `ouro login` shows.
        println!("ouro-api HTTPS certificate authority fingerprint (SHA-256): {}", tls.fingerprint);
    }
    let trust_pem = tls.as_ref().map(|t| t.trust_pem.clone());
    let serve_tls = tls.map(|tls| {
        let allow = config.plain_http_from.clone();
        ouro_serve::Tls { config: tls.server, plain_from: Arc::new(move |peer| https::plain_allowed(peer, &allow)) }
    });
    // Tests and scripts read this line to learn the port.
    println!("ouro-api listening on http://{local}");
    tracing::info!(%addr, database = url.split(':').next().unwrap_or_default(), "serving");
    // Once `shutdown` fires: no new connections, long polls and followed logs end
    // (`stopping`), other requests get the drain time (30 s) to finish.
    let stopping = state.stopping.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.send_replace(true);
    };
    let logs = state.logs.clone();
    let router = app(state).merge(https::routes(trust_pem));
    ouro_serve::serve_with(listener, router, config.limits, serve_tls, shutdown).await?;
    logs.flush_journal(std::time::Duration::from_secs(5)).await;
    store.close().await;
    Ok(())
}

/// Every [`builds::BUILD_HEARTBEAT`] × 2, fails the pending builds whose API process is gone (not
/// marked alive for [`builds::BUILD_STALE`]: crashed, or killed at the end of a
/// handover's grace) and, when there were any, makes sure the add-on providers' builds run
/// again (an interrupted one would otherwise wait for the next start of the API). The API's
/// start runs the first sweep itself, before it looks at the providers' builds.
async fn sweep_interrupted_builds_forever(state: AppState) {
    loop {
        tokio::time::sleep(builds::BUILD_HEARTBEAT * 2).await;
        match state.store.fail_interrupted_builds(&builds::stale_before()).await {
            Ok(0) => {}
            Ok(failed) => {
                tracing::warn!(failed, "builds whose API process stopped were marked failed");
                system_addons::ensure_all(&state).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not look for interrupted builds; trying again later"),
        }
    }
}

/// Seconds from the variable `name` (a whole number), or `default`.
fn seconds(name: &str, default: u64) -> Result<std::time::Duration> {
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| Error::Config(format!("{name} `{v}` is not a whole number of seconds"))),
        None => Ok(std::time::Duration::from_secs(default)),
    }
}

/// Now as RFC 3339 UTC with microseconds: fixed width, so stored times sort as text.
pub(crate) fn now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}
