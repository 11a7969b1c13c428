//! `ouro_serve::serve` over a real socket on port 0: what it bounds (a head's read, idle
//! keep-alive, the number of connections, the drain) and what it must leave alone (slow
//! responses, slow bodies, upgraded connections).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::routing::{get, post};
use ouro_serve::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn silent_and_half_head_connections_are_closed_after_the_header_read_timeout() {
    let server = Server::start(limits(SHORT, 10)).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    for stream in [&mut silent, &mut half] {
        closed_within(stream, Duration::from_secs(3)).await;
    }
    assert!(started.elapsed() >= SHORT, "closed before the timeout: {:?}", started.elapsed());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let server = Server::start(limits(SHORT, 10)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("hello"), "{response}");
    }
    let idle = Instant::now();
    closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(idle.elapsed() >= SHORT - Duration::from_millis(50), "closed too soon: {:?}", idle.elapsed());
}

#[tokio::test]
async fn slow_responses_and_slow_bodies_are_not_cut() {
    let server = Server::start(limits(SHORT, 10)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.ends_with("slept"), "{response}");
    // A body sent in pieces over three times the header read timeout.
    stream.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n").await.unwrap();
    for byte in b"body" {
        tokio::time::sleep(SHORT).await;
        stream.write_all(&[*byte]).await.unwrap();
    }
    let response = read_response(&mut stream).await;
    assert!(response.ends_with("4 bytes"), "{response}");
}

#[tokio::test]
async fn a_response_that_leaves_the_request_body_unread_closes_the_connection_and_says_so() {
    let server = Server::start(limits(Duration::from_secs(10), 10)).await;
    // Refused before the body came: the client learns the connection will not be reused
    // instead of finding it closed under its next request.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{head}");
    let _ = stream.write_all(b"bytes").await;
    closed_within(&mut stream, Duration::from_secs(3)).await;

    // A body read to its end, a request without one, even refused: the connection is kept.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nbytes").await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(
        response.ends_with("5 bytes") && !response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    stream.write_all(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(
        response.starts_with("HTTP/1.1 403") && !response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    stream.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.ends_with("hello"), "{response}");
}

#[tokio::test]
async fn an_upgraded_connection_outlives_the_header_read_timeout() {
    let server = Server::start(limits(SHORT, 10)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n").await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tokio::time::sleep(SHORT * 3).await;
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
}

#[tokio::test]
async fn at_the_cap_a_connection_waits_until_one_closes() {
    let server = Server::start(limits(Duration::from_secs(30), 2)).await;
    let held = [TcpStream::connect(server.addr).await.unwrap(), TcpStream::connect(server.addr).await.unwrap()];
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut byte = [0; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "answered beyond the cap: {early:?}");
    drop(held);
    let response = tokio::time::timeout(Duration::from_secs(3), read_to_end(&mut third)).await.expect("answered");
    assert!(response.ends_with("ello"), "{response}");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_refuses_new_connections() {
    let server = Server::start(limits(SHORT, 10)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (addr, served) = server.stop();
    let response = read_response(&mut stream).await;
    assert!(response.ends_with("slept"), "{response}");
    // The connection closes after its response (no keep-alive while draining), then serve returns.
    closed_within(&mut stream, Duration::from_secs(1)).await;
    tokio::time::timeout(Duration::from_secs(1), served).await.expect("serve returned").unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

#[tokio::test]
async fn after_the_drain_timeout_what_is_left_is_closed() {
    let server = Server::start(Limits { drain_timeout: SHORT, ..limits(SHORT, 10) }).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = Instant::now();
    let (_, served) = server.stop();
    tokio::time::timeout(Duration::from_secs(3), served).await.expect("serve returned").unwrap().unwrap();
    assert!(stopped.elapsed() >= SHORT, "returned before the drain time: {:?}", stopped.elapsed());
    closed_within(&mut stream, Duration::from_secs(1)).await;
}

#[test]
fn limits_are_read_from_the_environment_over_the_defaults() {
    let defaults = limits(Duration::from_secs(10), 4096);
    let read = |vars: &[(&str, &str)]| {
        Limits::from_vars(defaults, |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    };
    assert_eq!(read(&[]).unwrap(), defaults);
    assert_eq!(read(&[("OURO_HEADER_READ_TIMEOUT_SECONDS", ""), ("OURO_MAX_CONNECTIONS", "")]).unwrap(), defaults);
    let set = read(&[("OURO_HEADER_READ_TIMEOUT_SECONDS", "2.5"), ("OURO_MAX_CONNECTIONS", "50")]).unwrap();
    assert_eq!((set.header_read_timeout, set.max_connections), (Duration::from_millis(2500), 50));
    assert_eq!(set.drain_timeout, defaults.drain_timeout);
    for bad in ["0", "-1", "soon", "NaN", "inf"] {
        let error = read(&[("OURO_HEADER_READ_TIMEOUT_SECONDS", bad)]).unwrap_err().to_string();
        assert_eq!(error, format!("OURO_HEADER_READ_TIMEOUT_SECONDS `{bad}` is not a positive number of seconds"));
    }
    for bad in ["0", "-1", "many", "1000001"] {
        let error = read(&[("OURO_MAX_CONNECTIONS", bad)]).unwrap_err().to_string();
        assert_eq!(error, format!("OURO_MAX_CONNECTIONS `{bad}` is not a number from 1 to 1000000"));
    }
}

fn limits(header_read_timeout: Duration, max_connections: usize) -> Limits {
    Limits { header_read_timeout, max_connections, drain_timeout: Duration::from_secs(2) }
}

/// `ouro_serve::serve` of a few routes on port 0, until [`Server::stop`].
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: Limits) -> Server {
        let router = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(SHORT * 2).await;
                    "slept"
                }),
            )
            .route("/forever", get(std::future::pending::<()>))
            .route("/count", post(|body: axum::body::Bytes| async move { format!("{} bytes", body.len()) }))
            .route("/echo", get(echo))
            .route("/refuse", post(|| async { (axum::http::StatusCode::FORBIDDEN, "no") }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(ouro_serve::serve(listener, router, limits, async move {
            let _ = stopped.await;
        }));
        Server { addr, stop, served }
    }

    /// Asks for shutdown; the address and the server's task.
    fn stop(self) -> (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>) {
        let _ = self.stop.send(());
        (self.addr, self.served)
    }
}

/// Upgrades, then echoes what it reads.
async fn echo(mut request: Request) -> axum::response::Response {
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let mut upgraded = hyper_util::rt::TokioIo::new(upgrade.await.expect("upgraded"));
        let mut buf = [0; 64];
        while let Ok(n @ 1..) = upgraded.read(&mut buf).await {
            if upgraded.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    axum::response::Response::builder()
        .status(101)
        .header("Connection", "upgrade")
        .header("Upgrade", "echo")
        .body(axum::body::Body::empty())
        .unwrap()
}

/// Waits until the server closes `stream` (end of stream or reset), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) {
    let closed = async {
        let mut buf = [0; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.unwrap_or_else(|_| panic!("still open after {limit:?}"));
}

/// The response head, up to and with the blank line.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed in a head: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A response with a `content-length`, head and body.
async fn read_response(stream: &mut TcpStream) -> String {
    let head = read_head(stream).await;
    let length: usize = head
        .lines()
        .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .expect("content-length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8(body).unwrap()
}

async fn read_to_end(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).await.unwrap();
    String::from_utf8(all).unwrap()
}
