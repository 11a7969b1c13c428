//! Serving an axum [`Router`] on a TCP listener within bounds: the listener of the API, of the
//! dyno runner and of the add-on providers (the router has its own, on the same model).
//!
//! Each bound protects the process from clients, whoever they are:
//! 1. connections: at most [`Limits::max_connections`] open; at the cap it stops accepting
//!    and the kernel's accept queue (then the client's connect timeout) pushes back, instead of
//!    a task and a buffer per connection without bound;
//! 2. request head: read within [`Limits::header_read_timeout`], counted from the connection's
//!    start or, on a keep-alive connection, from the end of the previous response, so the
//!    same timeout closes idle keep-alive connections (hyper 1.12: `Conn::poll_read_head`
//!    starts the timer whenever it waits for a head, and `State::idle` makes the connection
//!    wait for the next head as soon as a response is done). A client that connects and sends
//!    nothing is closed too: the connection is HTTP/1 from its first byte, with no protocol
//!    sniffing before hyper's timer runs (hyper-util's `auto` builder reads the first bytes
//!    without one);
//! 3. a request body left unread: a response sent while the request's body was dropped before
//!    its end (a 401 or 403 before the upload, a 413 in the middle of it) carries
//!    `Connection: close`, and the connection closes after it. Hyper would otherwise try one
//!    read to drain the rest and, when the rest has not arrived yet, close the connection
//!    without saying so, and a client that reuses it for its next request finds it closed
//!    (`Peer disconnected`): a race that depends on whether the body came in the head's
//!    packet;
//! 4. shutdown: stop accepting at once (a successor on the same `SO_REUSEPORT` port takes the
//!    new connections), let requests in flight finish, idle connections close, and after
//!    [`Limits::drain_timeout`] close whatever is still open.
//!
//! What it must never do: bound what comes after a request head. Bodies (a `git push` streams
//! up to 1 GiB), responses (long polls, build logs, `logs --tail`) and upgraded connections
//! (`ouro run`'s attach, add-on tunnels) take as long as they take; their handlers bound them.
//! An upgraded connection leaves the count of connections (it is no longer HTTP) and the
//! drain (its handler ends it, as the API's `stopping` signal does).
//!
//! HTTP/1.1 only: every client of these listeners (`ouro`, the runner, the router, the API's
//! provider client) speaks it, and axum is built with `http1` alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as _, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Default of [`Limits::header_read_timeout`], as the router's: ample for any client on a
/// slow link to send a head of a few hundred bytes, short enough that a slow-loris client
/// holds a connection for seconds, not forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that overrides [`Limits::header_read_timeout`] (seconds).
pub const HEADER_READ_TIMEOUT_VAR: &str = "OURO_HEADER_READ_TIMEOUT_SECONDS";
/// The environment variable that overrides [`Limits::max_connections`].
pub const MAX_CONNECTIONS_VAR: &str = "OURO_MAX_CONNECTIONS";

/// The bounds of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a request head: from the connection's start, or from the end of the
    /// previous response on a keep-alive connection. Then the connection is closed.
    pub header_read_timeout: Duration,
    /// Most connections open at once (at least 1); beyond it nothing is accepted.
    pub max_connections: usize,
    /// After shutdown, how long requests in flight may take before their connections close.
    pub drain_timeout: Duration,
}

/// A setting from the environment that is not what it must be.
#[derive(Debug, thiserror::Error)]
#[error("{name} `{value}` is not {expected}")]
pub struct InvalidSetting {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Limits {
    /// `defaults`, with [`HEADER_READ_TIMEOUT_VAR`] (seconds, fractions allowed) and
    /// [`MAX_CONNECTIONS_VAR`] from `var` (an environment lookup) when set and not empty.
    pub fn from_vars(defaults: Limits, var: impl Fn(&str) -> Option<String>) -> Result<Limits, InvalidSetting> {
        let mut limits = defaults;
        if let Some(value) = var(HEADER_READ_TIMEOUT_VAR).filter(|v| !v.is_empty()) {
            limits.header_read_timeout = value
                .parse::<f64>()
                .ok()
                .filter(|seconds| *seconds > 0.0)
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .ok_or(InvalidSetting {
                    name: HEADER_READ_TIMEOUT_VAR,
                    value,
                    expected: "a positive number of seconds",
                })?;
        }
        if let Some(value) = var(MAX_CONNECTIONS_VAR).filter(|v| !v.is_empty()) {
            limits.max_connections =
                value.parse::<usize>().ok().filter(|max| (1..=MAX_CONNECTIONS_CEILING).contains(max)).ok_or(
                    InvalidSetting { name: MAX_CONNECTIONS_VAR, value, expected: "a number from 1 to 1000000" },
                )?;
        }
        Ok(limits)
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves; then stops
/// accepting (the listener is closed at once), lets requests in flight finish for at most
/// `limits.drain_timeout`, closes what is left and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let service = TowerToHyperService::new(router.layer(axum::middleware::from_fn(close_when_a_body_is_left_unread)));
    // One permit per open connection; all of them back means every connection is closed.
    let max_connections = limits.max_connections.clamp(1, MAX_CONNECTIONS_CEILING);
    let connections = Arc::new(Semaphore::new(max_connections));
    // Shutdown started: finish the request in flight, then close.
    let (draining, _) = watch::channel(false);
    // The drain time is over: close now.
    let (force_close, _) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&connections).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Typically out of file descriptors: wait a little rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = builder.serve_connection(TokioIo::new(stream), service.clone()).with_upgrades();
        let (mut draining, mut force_closed) = (draining.subscribe(), force_close.subscribe());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => Some(served),
                _ = draining.wait_for(|&draining| draining) => None,
            };
            let served = match served {
                Some(served) => Some(served),
                None => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        served = connection => Some(served),
                        _ = force_closed.wait_for(|&closed| closed) => None,
                    }
                }
            };
            if let Some(Err(error)) = served {
                // A head not read in time, a client gone: the client's business, not ours.
                tracing::debug!(%error, "connection ended");
            }
            drop(permit);
        });
    }

    drop(listener);
    draining.send_replace(true);
    let open = max_connections - connections.available_permits();
    if open > 0 {
        tracing::info!(connections = open, "shutting down: draining connections");
    }
    tokio::select! {
        _ = connections.acquire_many(max_connections as u32) => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(drain_timeout = ?limits.drain_timeout, "requests still running after the drain time; closing their connections");
        }
    }
    force_close.send_replace(true);
    Ok(())
}

/// Highest [`Limits::max_connections`]: far above what a process can hold open, and what the
/// drain can count in one go (`u32` permits).
const MAX_CONNECTIONS_CEILING: usize = 1_000_000;

/// Runs the request and, when its body was announced but dropped before its end by the time
/// the response is ready (and the connection is not being upgraded), adds `Connection: close`
/// to the response (bound 3 of the module's documentation). A body still held, by a task that
/// streams it while the response streams too, is not counted as left.
async fn close_when_a_body_is_left_unread(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let progress = Arc::new(BodyProgress::default());
    let request = request.map(|inner| Body::new(TrackedBody { inner, progress: Arc::clone(&progress) }));
    let mut response = next.run(request).await;
    if progress.left_unread() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// How far a request body got: read to its end, dropped.
#[derive(Default)]
struct BodyProgress {
    ended: AtomicBool,
    dropped: AtomicBool,
}

impl BodyProgress {
    fn left_unread(&self) -> bool {
        self.dropped.load(Ordering::Acquire) && !self.ended.load(Ordering::Acquire)
    }
}

/// A request body that reports to its [`BodyProgress`].
struct TrackedBody {
    inner: Body,
    progress: Arc<BodyProgress>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.progress.ended.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.progress.dropped.store(true, Ordering::Release);
    }
}
