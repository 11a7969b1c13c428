//! Ouro's HTTP router: the only public entry point for apps.
//!
//! A reverse proxy (hyper 1) that routes each request by its `Host` to one of the app's `up` web
//! dynos, Heroku-style: `X-Forwarded-*`, `X-Request-Id`, `X-Request-Start` and `Via` headers;
//! least-outstanding-requests balancing over two random choices; a connect failure is retried
//! on another dyno; a route without dynos holds requests briefly for a booting one, then
//! answers 503 H14; 30 s to the first response byte (H12); websockets and other upgrades pass
//! through; one log line per request on stdout, also shipped to the app's log (below).
//!
//! It learns routes by following the route table the dyno runner serves (a long poll on
//! `GET {routes_url}?after=N`) and swaps its table atomically on each new version. When the
//! route source is unreachable it keeps serving the last table it had.
//!
//! What it must never do:
//! - call the Platform API (or anything else in the control plane) per request: requests are
//!   served from the in-memory table only, so apps keep serving while the control plane is down;
//! - hold the Docker socket or talk to the Docker Engine: the dyno runner owns containers and
//!   tells the router where they are;
//! - take a lock or do I/O other than the proxying itself on the request path (the stdout log
//!   line aside); shipping a log line never waits;
//! - hold a credential for the API: routes come from, and log lines go to, the dyno runner.
//!
//! TLS: with a second listener ([`serve_with_tls`], `OURO_ROUTER_TLS_LISTEN`) the router
//! terminates TLS (rustls, ring) and presents, by SNI, the certificate of the app whose host is
//! asked for (from the route table), else a self-signed default certificate made at start.
//! ALPN offers `h2` and `http/1.1`. Requests that came over TLS are forwarded with
//! `X-Forwarded-Proto: https` and the TLS listener's port, and logged with `protocol=https`.
//! The plain listener speaks HTTP/1.1 and h2c.
//!
//! Logs: each request whose Host routed to an app is one `ouro[router]` line in that app's log
//! (`ouro logs`), in Heroku's router format. Lines are shipped in batches to the dyno runner's
//! log endpoint (`OURO_LOGS_URL`, else `OURO_ROUTES_URL` with `/routes` → `/logs`), which
//! forwards them with dyno output; the request path only puts a line in a bounded queue and
//! drops it when the queue is full (see `shipper`).
//!
//! `serve` takes a bound listener so tests run the router in-process on port 0; the binary
//! (`main.rs`) reads its settings from the environment.
//!
//! Limits, outermost first (each layer protects the ones after it):
//! 1. connections: at most `max_connections` open; beyond that the router stops accepting and
//!    the kernel's accept queue pushes back, instead of spawning without bound;
//! 2. request head: the first read within `header_read_timeout` of the connection's start (or
//!    of the TLS handshake's end), on HTTP/1 each later one within it of the previous response
//!    (slow clients, idle keep-alive connections); at most 64 KiB and 100 header lines (hyper
//!    answers 431), each line at most 8 KiB and names at most 1000 bytes (431/414 from the
//!    router);
//! 3. routing: a request waits at most `hold_timeout` for a dyno to appear;
//! 4. upstream: `connect_timeout` per connect, `request_timeout` to the response head across all
//!    attempts.

mod body;
mod connect;
mod error;
mod follow;
mod proxy;
mod shipper;
mod table;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::Uri;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::body::RequestBody;
use crate::connect::TimedConnector;
use crate::proxy::ConnInfo;
use crate::shipper::Shipper;
use crate::table::Table;

/// Default for `OURO_ROUTER_LISTEN`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default for `OURO_ROUTES_URL`.
pub const DEFAULT_ROUTES_URL: &str = "http://127.0.0.1:7701/routes";
/// Default for [`Config::log_queue`].
pub const DEFAULT_LOG_QUEUE: usize = 10_000;

/// Largest request header block (request line and all header lines).
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Idle keep-alive connections kept per dyno.
const POOL_MAX_IDLE_PER_DYNO: usize = 256;
/// After the drain, how long queued log lines may take to be shipped.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The router's settings. [`Config::new`] gives the production defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the binary binds (`OURO_ROUTER_LISTEN`); [`serve`] uses the listener it is given.
    pub listen: SocketAddr,
    /// Address the binary binds for TLS (`OURO_ROUTER_TLS_LISTEN`), if any; [`serve_with_tls`]
    /// uses the listener it is given.
    pub tls_listen: Option<SocketAddr>,
    /// The route table to follow (`OURO_ROUTES_URL`), plain `http://`.
    pub routes_url: String,
    /// Where request log lines are shipped, plain `http://` (`OURO_LOGS_URL`; by default the
    /// routes URL with its trailing `/routes` replaced by `/logs`). `None`: stdout only.
    pub logs_url: Option<String>,
    /// The dyno runner's secret (`OURO_RUNNER_SECRET`), sent as a bearer token with every
    /// request for routes and every batch of log lines. `None`: sent without (a route source
    /// that asks for none, as the benchmark's).
    pub runner_secret: Option<String>,
    /// Most log lines waiting to be shipped; more are dropped (counted, then an L10 line).
    /// Default [`DEFAULT_LOG_QUEUE`].
    pub log_queue: usize,
    /// Connecting to a dyno (H19 when every dyno times out). Default 5 s.
    pub connect_timeout: Duration,
    /// From forwarding to the response head, across retries (H12). Default 30 s.
    pub request_timeout: Duration,
    /// How long a request waits for a route without dynos to get one (H14 after). Default 5 s.
    pub hold_timeout: Duration,
    /// Reading a request head, which is also how long an idle client connection is kept.
    /// Default 10 s.
    pub header_read_timeout: Duration,
    /// Idle keep-alive connections to dynos are closed after this. Default 90 s.
    pub pool_idle_timeout: Duration,
    /// Longest wait for one long-poll answer from the route source (which holds ~25 s).
    /// Default 40 s.
    pub routes_poll_timeout: Duration,
    /// Cap of the back-off between failed polls of the route source. Default 2 s.
    pub routes_retry_max: Duration,
    /// After shutdown is asked, how long in-flight requests may take. Default 10 s.
    pub drain_timeout: Duration,
    /// Most client connections open at once. Default 10 000.
    pub max_connections: usize,
}

/// Why the router could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {name} {value:?}: {reason}")]
    InvalidSetting { name: &'static str, value: String, reason: String },
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
}

impl Config {
    /// Production defaults, following `routes_url` (and shipping logs next to it).
    pub fn new(routes_url: impl Into<String>) -> Config {
        let routes_url = routes_url.into();
        Config {
            listen: DEFAULT_LISTEN.parse().expect("default listen address parses"),
            tls_listen: None,
            logs_url: shipper::logs_url_from_routes(&routes_url),
            runner_secret: None,
            log_queue: DEFAULT_LOG_QUEUE,
            routes_url,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            hold_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            routes_poll_timeout: Duration::from_secs(40),
            routes_retry_max: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(10),
            max_connections: 10_000,
        }
    }

    /// Defaults, with `OURO_ROUTER_LISTEN`, `OURO_ROUTER_TLS_LISTEN`, `OURO_ROUTES_URL`,
    /// `OURO_LOGS_URL` (empty: do not ship logs), `OURO_HEADER_READ_TIMEOUT_SECONDS` and
    /// `OURO_MAX_CONNECTIONS` (the names the other listeners read too) from the environment.
    pub fn from_env() -> Result<Config, Error> {
        let routes_url = std::env::var("OURO_ROUTES_URL").unwrap_or_else(|_| DEFAULT_ROUTES_URL.to_string());
        let mut config = Config::new(routes_url);
        if let Ok(listen) = std::env::var("OURO_ROUTER_LISTEN") {
            config.listen = listen.parse().map_err(|e: std::net::AddrParseError| Error::InvalidSetting {
                name: "OURO_ROUTER_LISTEN",
                value: listen.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Ok(listen) = std::env::var("OURO_ROUTER_TLS_LISTEN") {
            config.tls_listen = Some(listen.parse().map_err(|e: std::net::AddrParseError| Error::InvalidSetting {
                name: "OURO_ROUTER_TLS_LISTEN",
                value: listen.clone(),
                reason: e.to_string(),
            })?);
        }
        config.runner_secret = std::env::var("OURO_RUNNER_SECRET").ok().filter(|s| !s.is_empty());
        if let Ok(logs_url) = std::env::var("OURO_LOGS_URL") {
            config.logs_url = if logs_url.is_empty() { None } else { Some(logs_url) };
        }
        if let Some(value) = std::env::var("OURO_HEADER_READ_TIMEOUT_SECONDS").ok().filter(|v| !v.is_empty()) {
            config.header_read_timeout = value
                .parse::<f64>()
                .ok()
                .filter(|seconds| *seconds > 0.0)
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .ok_or_else(|| Error::InvalidSetting {
                    name: "OURO_HEADER_READ_TIMEOUT_SECONDS",
                    value: value.clone(),
                    reason: "expected a positive number of seconds".into(),
                })?;
        }
        if let Some(value) = std::env::var("OURO_MAX_CONNECTIONS").ok().filter(|v| !v.is_empty()) {
            config.max_connections =
                value.parse().ok().filter(|max| *max > 0).ok_or_else(|| Error::InvalidSetting {
                    name: "OURO_MAX_CONNECTIONS",
                    value: value.clone(),
                    reason: "expected a positive number".into(),
                })?;
        }
        parse_http_url("OURO_ROUTES_URL", &config.routes_url)?;
        if let Some(logs_url) = &config.logs_url {
            parse_http_url("OURO_LOGS_URL", logs_url)?;
        }
        Ok(config)
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new(DEFAULT_ROUTES_URL)
    }
}

/// What every request handler shares.
pub(crate) struct State {
    pub config: Config,
    /// The current routes: one lock-free load per request.
    pub table: ArcSwap<Table>,
    /// The version of `table`, for requests waiting on a route to get a dyno.
    pub versions: watch::Sender<u64>,
    /// Keep-alive pool to dynos.
    pub client: Client<TimedConnector, RequestBody>,
    /// `X-Forwarded-Port`: the listener's port.
    pub forwarded_port: HeaderValue,
    /// `X-Forwarded-Port` of requests that came over TLS: the TLS listener's port.
    pub tls_forwarded_port: HeaderValue,
    /// The queue of log lines to ship, if there is somewhere to ship them.
    pub shipper: Option<Arc<Shipper>>,
}

/// Runs the router on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish for up to `config.drain_timeout`, and returns.
/// A listener on `addr` that a successor may bind too (`SO_REUSEPORT`, same user): during a
/// handover the kernel spreads new connections over both routers, and the old one drains.
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    serve_with_tls(listener, None, config, shutdown).await
}

/// [`serve`], plus TLS on `tls_listener` if given: certificates by SNI from the route table,
/// a self-signed default certificate (generated now) otherwise, ALPN `h2` and `http/1.1`.
/// Both listeners share the connection limit, the drain and the route table.
pub async fn serve_with_tls(
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let routes_url = parse_http_url("OURO_ROUTES_URL", &config.routes_url)?;
    let logs_url = config.logs_url.as_deref().map(|url| parse_http_url("OURO_LOGS_URL", url)).transpose()?;
    match &logs_url {
        Some(url) => tracing::info!(%url, "shipping request log lines"),
        None => tracing::info!(
            "not shipping request log lines: no OURO_LOGS_URL, and OURO_ROUTES_URL does not end in /routes"
        ),
    }
    let port = listener.local_addr()?.port();
    let tls_port = match &tls_listener {
        Some(tls_listener) => tls_listener.local_addr()?.port(),
        None => 443,
    };
    let state = Arc::new(State {
        table: ArcSwap::from_pointee(Table::default()),
        versions: watch::Sender::new(0),
        client: dyno_client(&config),
        forwarded_port: HeaderValue::from(port),
        tls_forwarded_port: HeaderValue::from(tls_port),
        shipper: logs_url.map(|url| Arc::new(Shipper::new(url, config.log_queue, runner_authorization(&config)))),
        config,
    });
    let acceptor = match &tls_listener {
        Some(_) => {
            let provider = tls::provider();
            let default = tls::self_signed(&provider).map_err(Error::Tls)?;
            let resolver = tls::SniResolver { state: Arc::clone(&state), default };
            let server_config = tls::server_config(provider, resolver).map_err(Error::Tls)?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(server_config)))
        }
        None => None,
    };
    let follower = AbortOnDrop(tokio::spawn(follow::follow_routes(Arc::clone(&state), routes_url)));
    let log_shipper =
        state.shipper.is_some().then(|| AbortOnDrop(tokio::spawn(shipper::supervise(Arc::clone(&state)))));
    let builder = Arc::new(server_builder(&state.config));
    let graceful = GracefulShutdown::new();
    // Closes what is still open when the drain time is over.
    let (force_close, force_closed) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (accepted, tls) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => (accepted, false),
            accepted = accept_if(tls_listener.as_ref()) => (accepted, true),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically out of file descriptors: wait a little rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = ConnInfo { peer, tls };
        let request_state = Arc::clone(&state);
        let asked = Arc::new(AtomicBool::new(false));
        let first_request = FirstRequest { asked: Arc::clone(&asked), timeout: state.config.header_read_timeout };
        let service = service_fn(move |req| {
            asked.store(true, Ordering::Relaxed);
            let state = Arc::clone(&request_state);
            async move { Ok::<_, Infallible>(proxy::handle(&state, conn, req).await) }
        });
        let mut force_closed = force_closed.clone();
        if let (true, Some(acceptor)) = (tls, &acceptor) {
            // The handshake runs in the connection's task, bounded like a request head.
            let (acceptor, builder, watcher) = (acceptor.clone(), Arc::clone(&builder), graceful.watcher());
            let handshake_timeout = state.config.header_read_timeout;
            tokio::spawn(async move {
                let serve = async move {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    tokio::select! {
                        _ = watcher.watch(connection) => {}
                        () = first_request.missed() => tracing::debug!(%peer, "no request in time"),
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = force_closed.wait_for(|&closed| closed) => {}
                }
                drop(permit);
            });
            continue;
        }
        let connection =
            graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            tokio::select! {
                _ = connection => {}
                _ = force_closed.wait_for(|&closed| closed) => {}
                () = first_request.missed() => tracing::debug!(%peer, "no request in time"),
            }
            drop(permit);
        });
    }

    drop(listener);
    drop(tls_listener);
    tracing::info!(connections = graceful.count(), "shutting down: draining connections");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(state.config.drain_timeout) => {
            tracing::warn!(drain_timeout = ?state.config.drain_timeout, "drain time over; closing remaining connections");
        }
    }
    force_close.send_replace(true);
    if let Some(shipper) = &state.shipper {
        shipper::flush(shipper, LOG_FLUSH_TIMEOUT).await;
        let (full, failed) = shipper.dropped();
        if full + failed > 0 {
            tracing::warn!(queue_full = full, endpoint_failed = failed, "router log lines dropped since start");
        }
    }
    drop(log_shipper);
    drop(follower);
    Ok(())
}

/// The `Authorization` header the dyno runner asks of its routers, if it has a secret.
pub(crate) fn runner_authorization(config: &Config) -> Option<HeaderValue> {
    let secret = config.runner_secret.as_deref()?;
    let mut value = HeaderValue::from_str(&format!("Bearer {secret}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A plain `http://host:port/path` URL of the dyno runner, from the setting `name`.
fn parse_http_url(name: &'static str, url: &str) -> Result<Uri, Error> {
    let invalid = |reason: &str| Error::InvalidSetting { name, value: url.to_string(), reason: reason.to_string() };
    let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(invalid("expected http://host:port/path"));
    }
    Ok(uri)
}

fn dyno_client(config: &Config) -> Client<TimedConnector, RequestBody> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_DYNO)
        // The client's own Host header is forwarded as it came.
        .set_host(false)
        .build(TimedConnector(http))
}

fn server_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // The whole request head must fit in the read buffer: larger heads get 431 from hyper.
        // The header count is left at hyper's default, `proxy::MAX_HEADERS` (100): setting it,
        // even to 100, makes hyper allocate the parse buffer on the heap for every request.
        .max_buf_size(MAX_HEADER_BLOCK);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEADER_BLOCK as u32).max_concurrent_streams(256);
    builder
}

/// The deadline of a connection's first request, `header_read_timeout` after it starts serving.
/// hyper's own header read timeout only runs once hyper-util's `auto` builder has told
/// HTTP/1 from HTTP/2 by the first bytes, which it waits for without a limit: a client that
/// connected and sent nothing, or only a part of the HTTP/2 preface, held its connection (and
/// one of `max_connections`) forever. Later requests are hyper's business: on HTTP/1 its
/// header read timeout also closes idle keep-alive connections.
struct FirstRequest {
    /// Set by the service at each request.
    asked: Arc<AtomicBool>,
    timeout: Duration,
}

impl FirstRequest {
    /// Resolves once the deadline passed without a request; never if one came.
    async fn missed(&self) {
        tokio::time::sleep(self.timeout).await;
        if self.asked.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }
}

/// Accepts on `listener`, or never when there is none.
async fn accept_if(listener: Option<&TcpListener>) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Aborts a background task when the router stops, whichever way it returns.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
