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
//! With [`Tls`] (the API's listener), one port speaks both HTTPS and plain HTTP: a connection
//! whose first byte opens a TLS handshake (0x16) is served over TLS (the handshake within the
//! head's timeout); any other is served in clear only when its peer is one the caller allows
//! (loopback and the Docker bridge, for the platform's own components), and otherwise gets a
//! 400 that says to use HTTPS. Every request carries its [`Transport`] in its extensions (the
//! dashboard marks its cookie `Secure` over TLS).
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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// How a request came: over TLS or in clear. In every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    Plain,
}

/// HTTPS on the listener: the server's certificate, and which peers may still speak plain HTTP.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ServerConfig>,
    /// Whether a plain-HTTP connection from this peer address is served.
    pub plain_from: Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync>,
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
    serve_with(listener, router, limits, None, shutdown).await
}

/// [`serve`], with HTTPS beside plain HTTP when `tls` is given (see the module's documentation).
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Tls>,
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
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically out of file descriptors: wait a little rather than spin.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let connection = Connection {
            builder: builder.clone(),
            service: service.clone(),
            draining: draining.subscribe(),
            force_closed: force_close.subscribe(),
        };
        let tls = tls.clone();
        let head_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => connection.drive(stream, Transport::Plain).await,
                Some(tls) => match tokio::time::timeout(head_timeout, opening(&stream)).await {
                    Ok(Some(0x16)) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config);
                        match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => connection.drive(stream, Transport::Tls).await,
                            Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                            Err(_) => tracing::debug!(%peer, "TLS handshake not done in time"),
                        }
                    }
                    Ok(Some(_)) if (tls.plain_from)(peer.ip()) => connection.drive(stream, Transport::Plain).await,
                    Ok(Some(_)) => refuse_plain(stream).await,
                    // Closed, or nothing sent in time.
                    Ok(None) | Err(_) => {}
                },
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

/// One accepted connection, served until it ends, the drain ends it, or the drain time is over.
struct Connection<S> {
    builder: http1::Builder,
    service: S,
    draining: watch::Receiver<bool>,
    force_closed: watch::Receiver<bool>,
}

impl<S> Connection<S>
where
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    async fn drive<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(mut self, io: IO, transport: Transport) {
        let service = Tagged { inner: self.service, transport };
        let connection = self.builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => Some(served),
            _ = self.draining.wait_for(|&draining| draining) => None,
        };
        let served = match served {
            Some(served) => Some(served),
            None => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    served = connection => Some(served),
                    _ = self.force_closed.wait_for(|&closed| closed) => None,
                }
            }
        };
        if let Some(Err(error)) = served {
            // A head not read in time, a client gone: the client's business, not ours.
            tracing::debug!(%error, "connection ended");
        }
    }
}

/// A service that puts the connection's [`Transport`] in each request's extensions.
#[derive(Clone)]
struct Tagged<S> {
    inner: S,
    transport: Transport,
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for Tagged<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut request: hyper::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.transport);
        self.inner.call(request)
    }
}

/// The connection's first byte, without taking it; `None` when it closed first.
async fn opening(stream: &TcpStream) -> Option<u8> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => Some(first[0]),
        _ => None,
    }
}

/// Answers a plain-HTTP connection from a peer that must use HTTPS, and closes it.
async fn refuse_plain(mut stream: TcpStream) {
    const BODY: &str = "this API takes HTTPS from your address: use an https:// URL\n";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut head = [0u8; 8192];
    // Read what the client sent first, so that closing does not reset the answer away.
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut head)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
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
