//! Hostile input and faults against the real binaries (issue 15), without Docker.
//!
//! Listeners: every one of the platform's (the API, the dyno runner, the router, the add-on
//! provider) closes a connection that has not sent a whole request head within its header
//! read timeout, whether it sent half of one or nothing at all, and serves at most its
//! connection cap at once. Each test drives one binary over a real socket with
//! `OURO_HEADER_READ_TIMEOUT_SECONDS` and `OURO_MAX_CONNECTIONS` set small.
//!
//! Each test says how it was seen to fail before the fix: run against the binaries of
//! 072df69 (main before it) copied into `target/debug`. The provider of 072df69 does not print
//! its address, so its binary there was 072df69's code with only that line added; the
//! router's second check used the commit that makes it read the variables, before its fix.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use ouro_tests::{Api, Backend, spawn_service, terminate};

/// `OURO_HEADER_READ_TIMEOUT_SECONDS` in these tests.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How late after its deadline a close may come on a busy test machine.
const SLACK: Duration = Duration::from_secs(3);
/// Half a request head: the request line and one header, never the blank line.
const HALF_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
/// A whole request for `/health`, the one path the API, the runner and the provider answer
/// without a credential.
const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Before (072df69, `axum::serve` without a timer): "80 of 80 connections still open after 7s".
#[test]
fn the_api_closes_slow_connections_and_still_answers() {
    let api = Api::start_with(Backend::Sqlite, &limits("2", "50"));
    let addr = address(&api.url);
    // 80 slow clients, 30 beyond the cap: those wait in the accept queue until the first 50
    // are closed, then get their own timeout.
    let since = Instant::now();
    let slow = slow_clients(addr, 80);
    let closed = wait_closed(slow, since, TIMEOUT * 2 + SLACK);
    let in_first_round = closed.iter().filter(|at| **at <= TIMEOUT + SLACK).count();
    assert!(in_first_round >= 50, "only {in_first_round} closed within {:?}: {closed:?}", TIMEOUT + SLACK);
    assert!(closed.iter().all(|at| *at >= TIMEOUT - Duration::from_millis(100)), "closed early: {closed:?}");
    let (status, took) = ask(addr, HEALTH);
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "/health took {took:?}");
    eprintln!("80 slow connections closed after {:?} to {:?}; /health then in {took:?}", closed[0], closed[79]);
}

/// Before (072df69, no cap): "the 51st connection was served while 50 were open".
#[test]
fn the_api_serves_no_more_connections_than_its_cap() {
    // A header read timeout far longer than the test: only the cap holds the 51st back.
    let api = Api::start_with(Backend::Sqlite, &limits("60", "50"));
    let addr = address(&api.url);
    let mut held = slow_clients(addr, 50);
    let mut beyond = TcpStream::connect(addr).unwrap();
    beyond.write_all(HEALTH.as_bytes()).unwrap();
    // A wait for something that must not happen: one second of silence.
    beyond.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut byte = [0; 1];
    match beyond.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the 51st connection was served while 50 were open: {other:?}"),
    }
    let freed = Instant::now();
    drop(held.pop());
    let (status, _) = read_status(&mut beyond);
    assert_eq!(status, 200);
    eprintln!("the 51st connection answered {:?} after one of the 50 closed", freed.elapsed());
    assert!(freed.elapsed() < Duration::from_secs(2), "answered {:?} after a slot freed", freed.elapsed());
}

/// Before (072df69, `axum::serve` without a timer): "20 of 20 connections still open after 7s".
#[test]
fn the_runner_closes_slow_connections() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OURO_API_URL", format!("http://{}", closed_port())),
        ("OURO_API_TOKEN", "no-api-here".into()),
        ("OURO_RUNNER_LISTEN", "127.0.0.1:0".into()),
        ("OURO_PLATFORM", format!("hostile-{}", std::process::id())),
        ("OURO_RUNNER_STATE", dir.path().join("desired-state.json").display().to_string()),
        // No Docker Engine: the runner serves its listener while it retries (see `/health`).
        ("DOCKER_HOST", "unix:///nonexistent/docker.sock".into()),
    ];
    let service = Service::start("ouro-dyno-runner", &env, dir.path());
    closes_slow_connections_and_answers(service.addr, HEALTH, 200);
}

/// Before: on 072df69 (a fixed 10 s, the variables not read) "20 of 20 connections still open
/// after 7s"; reading them but before its fix, "5 of 20": the five that sent nothing, which
/// hyper-util's protocol detection waited on without a limit.
#[test]
fn the_router_closes_slow_connections() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OURO_ROUTER_LISTEN", "127.0.0.1:0".into()),
        ("OURO_ROUTES_URL", format!("http://{}/routes", closed_port())),
        ("OURO_LOGS_URL", String::new()),
    ];
    let service = Service::start("ouro-router", &env, dir.path());
    // No route table, where a request for a host waits for one (5 s): a request without a
    // Host is answered at once.
    closes_slow_connections_and_answers(service.addr, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 400);
}

/// Before (072df69 and the line that prints the address, `axum::serve` without a timer):
/// "20 of 20 connections still open after 7s".
#[test]
fn the_provider_closes_slow_connections() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OURO_ADDON_KIND", "redis".into()),
        ("OURO_API_URL", format!("http://{}", closed_port())),
        ("OURO_API_TOKEN", "no-api-here".into()),
        ("OURO_PROVIDER_PASSWORD", "secret".into()),
        ("PORT", "0".into()),
    ];
    let service = Service::start("ouro-addons", &env, dir.path());
    closes_slow_connections_and_answers(service.addr, HEALTH, 200);
}

/// 20 slow connections to a listener with a cap of 10 are all closed (10 after the header
/// read timeout, 10 after twice that), none before it; then `request` is answered at once.
fn closes_slow_connections_and_answers(addr: SocketAddr, request: &str, status: u16) {
    let since = Instant::now();
    let slow = slow_clients(addr, 20);
    let closed = wait_closed(slow, since, TIMEOUT * 2 + SLACK);
    assert!(closed.iter().all(|at| *at >= TIMEOUT - Duration::from_millis(100)), "closed early: {closed:?}");
    let (answered, took) = ask(addr, request);
    assert_eq!(answered, status);
    assert!(took < Duration::from_secs(2), "{request:?} took {took:?}");
    eprintln!("20 slow connections closed after {:?} to {:?}; a request then in {took:?}", closed[0], closed[19]);
}

/// The two variables, as each binary reads them.
fn limits(timeout: &'static str, max: &'static str) -> [(&'static str, &'static str); 2] {
    [("OURO_HEADER_READ_TIMEOUT_SECONDS", timeout), ("OURO_MAX_CONNECTIONS", max)]
}

/// One of the platform's binaries, with its listener's limits set as [`limits`]`("2", "10")`;
/// stopped when dropped.
struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Service {
    fn start(name: &str, env: &[(&str, String)], dir: &Path) -> Service {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .chain(limits("2", "10").iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let (child, url) = spawn_service(name, &env, &dir.join(format!("{name}.log")));
        Service { child, addr: address(&url) }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// `n` connections, three in four of which send half a request head and the rest nothing.
fn slow_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            if i % 4 != 3 {
                stream.write_all(HALF_HEAD).unwrap();
            }
            stream
        })
        .collect()
}

/// How long after `since` (taken before they connected) each of `streams` was closed by the
/// server (end of stream or reset), sorted; fails if one is still open `limit` after `since`.
fn wait_closed(streams: Vec<TcpStream>, since: Instant, limit: Duration) -> Vec<Duration> {
    let started = since;
    let mut open: Vec<TcpStream> = streams;
    for stream in &open {
        stream.set_nonblocking(true).unwrap();
    }
    let mut closed = Vec::new();
    while !open.is_empty() {
        open.retain_mut(|stream| {
            let mut buf = [0; 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(_) => break,
                }
            }
            closed.push(started.elapsed());
            false
        });
        assert!(
            started.elapsed() < limit || open.is_empty(),
            "{} of {} connections still open after {limit:?}",
            open.len(),
            open.len() + closed.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    closed.sort();
    closed
}

/// `request` on a connection of its own: the answer's status and how long it took.
fn ask(addr: SocketAddr, request: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let (status, _) = read_status(&mut stream);
    (status, started.elapsed())
}

/// Reads a whole `Connection: close` response (10 s at most) and returns its status and text.
fn read_status(stream: &mut TcpStream) -> (u16, String) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap_or_else(|e| panic!("no whole answer: {e}"));
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {response:?}"));
    (status, response)
}

/// `127.0.0.1:port` of a `http://127.0.0.1:port` URL.
fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// A port nothing listens on (bound, then let go).
fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}
