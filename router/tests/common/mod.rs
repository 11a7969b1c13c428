//! Real HTTP on loopback around an in-process router: tiny backends that answer with their name
//! and echo the request headers, a route source implementing the `?after=N` long poll (and, like
//! the dyno runner, taking the router's log lines on `POST /logs`), and a client. Nothing of the router itself is mocked.
#![allow(dead_code)] // each test file uses its own part of the harness

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderName, HeaderValue, UPGRADE};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ouro_router::Config;
use ouro_types::log_line::LogLine;
use ouro_types::{Route, RouteBackend, RouteTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Every single request or wait in these tests gives up after this.
pub const STEP: Duration = Duration::from_secs(10);

/// Polls `check` every 20 ms until it holds, failing the test after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Aborts a server task (and, through its JoinSet, its connections) when dropped.
struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts HTTP/1.1 connections (with upgrades) on `listener` until the task is aborted.
fn spawn_server<F, Fut>(listener: TcpListener, handler: F) -> ServerTask
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    ServerTask(tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let Ok((stream, _)) = listener.accept().await else { continue };
            let handler = handler.clone();
            connections.spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    }))
}

/// A dyno: answers `200` with its name on the first line of the body, then one `name: value`
/// line per request header, then `body-bytes: N`. Requests with `Upgrade` get `101` and an echo
/// of every byte. A held backend keeps each request until [`Backend::release`].
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    release: watch::Sender<bool>,
    _task: ServerTask,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Backend::start_with(name, false).await
    }

    /// A backend that holds every request until released.
    pub async fn start_held(name: &str) -> Backend {
        Backend::start_with(name, true).await
    }

    async fn start_with(name: &str, hold: bool) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let (release, released) = watch::channel(!hold);
        let handler = {
            let (name, hits, held) = (name.to_string(), Arc::clone(&hits), Arc::clone(&held));
            move |req: Request<Incoming>| {
                let (name, hits, held, mut released) =
                    (name.clone(), Arc::clone(&hits), Arc::clone(&held), released.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if req.headers().contains_key(UPGRADE) {
                        return upgrade_echo(req);
                    }
                    if !*released.borrow() {
                        held.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|&r| r).await;
                    }
                    let mut text = format!("{name}\n");
                    for (key, value) in req.headers() {
                        text.push_str(&format!("{key}: {}\n", value.to_str().unwrap_or("<binary>")));
                    }
                    let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
                    text.push_str(&format!("body-bytes: {body}\n"));
                    Response::builder()
                        .header("x-backend", name.as_str())
                        .header(CONTENT_TYPE, "text/plain")
                        .body(Full::new(Bytes::from(text)))
                        .unwrap()
                }
            }
        };
        let task = spawn_server(listener, handler);
        Backend { name: name.to_string(), addr, hits, held, release, _task: task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Requests currently or previously held (only for held backends).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets held requests (and all later ones) through.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    pub fn backend(&self) -> RouteBackend {
        RouteBackend { dyno: self.name.clone(), addr: self.addr.to_string() }
    }
}

fn upgrade_echo(mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    });
    let protocol = req.headers().get(UPGRADE).cloned().unwrap_or(HeaderValue::from_static("echo"));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, protocol)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// An address on which nothing listens: connections are refused.
pub async fn refusing_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

pub fn route(app: &str, hosts: &[&str], backends: Vec<RouteBackend>) -> Route {
    Route {
        app: app.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        backends,
        certificates: Vec::new(),
        acme_challenges: Vec::new(),
    }
}

pub fn refused(dyno: &str, addr: SocketAddr) -> RouteBackend {
    RouteBackend { dyno: dyno.into(), addr: addr.to_string() }
}

/// The dyno runner's route endpoint: `GET /routes?after=N` answers at once when the version is
/// greater than N, else waits (up to 25 s) for a change and answers the current table. Its log
/// endpoint: `POST /logs` with a JSON array of log lines, kept in order; `204`, or `503` while
/// [`RouteSource::set_logs_down`].
pub struct RouteSource {
    pub addr: SocketAddr,
    shared: Arc<SourceShared>,
    _task: ServerTask,
}

struct SourceShared {
    table: Mutex<RouteTable>,
    versions: watch::Sender<u64>,
    logs: Mutex<Vec<LogLine>>,
    logs_down: AtomicBool,
}

impl RouteSource {
    pub async fn start(routes: Vec<Route>) -> RouteSource {
        RouteSource::start_on("127.0.0.1:0".parse().unwrap(), RouteTable { version: 1, routes }).await
    }

    /// Serves `table` on `addr` (port 0 for any).
    pub async fn start_on(addr: SocketAddr, table: RouteTable) -> RouteSource {
        // A stopped source's port is free once its aborted task has been dropped: retry a bit.
        let deadline = Instant::now() + STEP;
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("cannot bind the route source on {addr}: {error}"),
            }
        };
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(SourceShared {
            versions: watch::Sender::new(table.version),
            table: Mutex::new(table),
            logs: Mutex::new(Vec::new()),
            logs_down: AtomicBool::new(false),
        });
        let handler = {
            let shared = Arc::clone(&shared);
            move |req: Request<Incoming>| {
                let shared = Arc::clone(&shared);
                async move {
                    if req.method() == Method::POST && req.uri().path() == "/logs" {
                        return take_logs(&shared, req).await;
                    }
                    let after = req
                        .uri()
                        .query()
                        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("after=")))
                        .and_then(|n| n.parse::<u64>().ok());
                    if let Some(after) = after {
                        let mut versions = shared.versions.subscribe();
                        let _ = tokio::time::timeout(Duration::from_secs(25), versions.wait_for(|&v| v > after)).await;
                    }
                    let json = serde_json::to_vec(&*shared.table.lock().unwrap()).unwrap();
                    Response::builder()
                        .header(CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from(json)))
                        .unwrap()
                }
            }
        };
        let task = spawn_server(listener, handler);
        RouteSource { addr, shared, _task: task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/routes", self.addr)
    }

    /// Every log line received so far, in the order received.
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.shared.logs.lock().unwrap().clone()
    }

    /// While down, `POST /logs` answers `503` and keeps nothing.
    pub fn set_logs_down(&self, down: bool) {
        self.shared.logs_down.store(down, Ordering::SeqCst);
    }

    /// Waits until the lines received satisfy `check`, and returns them.
    pub async fn wait_for_logs(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&[LogLine]) -> bool,
    ) -> Vec<LogLine> {
        wait_until(what, timeout, || async { check(&self.log_lines()) }).await;
        self.log_lines()
    }

    pub fn version(&self) -> u64 {
        self.shared.table.lock().unwrap().version
    }

    /// Replaces the routes as a new version, waking the long polls.
    pub fn set(&self, routes: Vec<Route>) {
        let version = {
            let mut table = self.shared.table.lock().unwrap();
            table.version += 1;
            table.routes = routes;
            table.version
        };
        self.shared.versions.send_replace(version);
    }

    /// Stops listening and closes every open connection (including held long polls).
    pub fn stop(self) -> SocketAddr {
        self.addr
    }
}

async fn take_logs(shared: &SourceShared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let status = if shared.logs_down.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        match serde_json::from_slice::<Vec<LogLine>>(&body) {
            // The router sends at most 500 lines a batch; refusing more makes such a test fail.
            Ok(lines) if lines.len() > 500 => StatusCode::PAYLOAD_TOO_LARGE,
            Ok(lines) => {
                shared.logs.lock().unwrap().extend(lines);
                StatusCode::NO_CONTENT
            }
            Err(_) => StatusCode::BAD_REQUEST,
        }
    };
    Response::builder().status(status).body(Full::new(Bytes::new())).unwrap()
}

/// The router, in-process on 127.0.0.1:0; shut down gracefully when dropped.
pub struct Router {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ouro_router::Error>>>,
}

impl Router {
    pub async fn start(config: Config) -> Router {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(ouro_router::serve(listener, config, async move {
            let _ = stop.await;
        }));
        Router { addr, shutdown: Some(shutdown), task: Some(task) }
    }

    /// A router following `source` with the default settings.
    pub async fn following(source: &RouteSource) -> Router {
        Router::start(Config::new(source.url())).await
    }

    /// Asks for shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> Result<(), ouro_router::Error> {
        self.ask_shutdown();
        let task = self.task.take().expect("running");
        tokio::time::timeout(STEP, task).await.expect("serve returns after shutdown").expect("serve did not panic")
    }

    pub fn ask_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits until `host` answers with `200`.
    pub async fn wait_for_route(&self, client: &TestClient, host: &str) {
        wait_until(&format!("{host} answers 200"), STEP, || async {
            client.get(self.addr, host, "/").await.status == 200
        })
        .await;
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.ask_shutdown();
    }
}

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The backend that answered (first line of the echo body).
    pub fn backend(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// A request header as the backend saw it (lower-case name), several values joined by ", ".
    pub fn echoed(&self, name: &str) -> Option<String> {
        let values: Vec<&str> =
            self.body.lines().skip(1).filter_map(|line| line.strip_prefix(name)?.strip_prefix(": ")).collect();
        if values.is_empty() { None } else { Some(values.join(", ")) }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A real HTTP/1.1 client with a keep-alive pool.
pub struct TestClient(Client<HttpConnector, Full<Bytes>>);

impl Default for TestClient {
    fn default() -> TestClient {
        TestClient::new()
    }
}

impl TestClient {
    pub fn new() -> TestClient {
        TestClient(Client::builder(TokioExecutor::new()).build_http())
    }

    pub fn http2() -> TestClient {
        TestClient(Client::builder(TokioExecutor::new()).http2_only(true).build_http())
    }

    pub async fn get(&self, router: SocketAddr, host: &str, path: &str) -> Reply {
        self.send(router, host, Request::get(path), Bytes::new()).await
    }

    /// Sends `builder` (path only) to the router with `Host: host`.
    pub async fn send(
        &self,
        router: SocketAddr,
        host: &str,
        builder: hyper::http::request::Builder,
        body: Bytes,
    ) -> Reply {
        let mut request = builder.body(Full::new(body)).unwrap();
        let path = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or("/".into());
        *request.uri_mut() = format!("http://{router}{path}").parse().unwrap();
        request.headers_mut().insert(HOST, HeaderValue::from_str(host).unwrap());
        let response = tokio::time::timeout(STEP, self.0.request(request))
            .await
            .expect("response within the step timeout")
            .expect("request reaches the router");
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(STEP, body.collect()).await.expect("body in time").expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// Writes raw bytes to the router and reads its answer until the head is complete (or EOF);
/// returns the status code and the head.
pub async fn raw_exchange(router: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(router).await.unwrap();
    // The server may answer and close before reading everything: ignore write errors.
    let _ = tokio::time::timeout(STEP, stream.write_all(request)).await;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(STEP, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    head.extend_from_slice(&buf[..n]);
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "router answered within the step timeout");
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head)
}

/// Counts how many of `replies` each backend answered.
pub fn tally(replies: &[Reply]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        *counts.entry(reply.backend().to_string()).or_insert(0) += 1;
    }
    counts
}

pub fn header_name(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

/// Reads a response head byte by byte (the bytes after it stay unread: an upgraded
/// connection's), within [`STEP`].
pub async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(STEP, async {
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "connection closed in the response head");
            head.push(byte[0]);
        }
    })
    .await
    .expect("the response head in time");
    head
}
