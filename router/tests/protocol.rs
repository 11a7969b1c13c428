//! Protocol edges: upgrades (websockets), header limits, h2c, graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn demo_router(backend: &Backend) -> (RouteSource, Router) {
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let router = Router::following(&source).await;
    router.wait_for_route(&TestClient::new(), "demo.localhost").await;
    (source, router)
}

#[tokio::test]
async fn upgrades_pass_bytes_both_ways() {
    let backend = Backend::start("web.1").await;
    let (_source, router) = demo_router(&backend).await;

    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: demo.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\
              X-Request-Id: ws-1\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    assert!(head.contains("connection: upgrade"), "{head}");
    assert!(head.contains("x-request-id: ws-1"), "{head}");

    for message in [&b"hello"[..], b"world, a bit longer", &[0u8, 1, 2, 255]] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(STEP, stream.read_exact(&mut echoed)).await.expect("echo in time").unwrap();
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let backend = Backend::start("web.1").await;
    let (_source, router) = demo_router(&backend).await;
    let hits = backend.hits();

    // One header line over 8 KiB (the head itself is well under 64 KiB).
    let request = format!("GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Big: {}\r\n\r\n", "b".repeat(9 * 1024));
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 431, "{head}");

    // A header name over 1000 bytes.
    let request = format!("GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-{}: 1\r\n\r\n", "n".repeat(1000));
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 431, "{head}");

    // More than 100 header lines (and so more than Heroku's 1000 too).
    let mut request = String::from("GET / HTTP/1.1\r\nHost: demo.localhost\r\n");
    for i in 0..101 {
        request.push_str(&format!("X-H{i}: 1\r\n"));
    }
    request.push_str("\r\n");
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 431, "{head}");

    // A header block over 64 KiB in lines of legal size.
    let mut request = String::from("GET / HTTP/1.1\r\nHost: demo.localhost\r\n");
    for i in 0..20 {
        request.push_str(&format!("X-Fill{i}: {}\r\n", "f".repeat(4000)));
    }
    request.push_str("\r\n");
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 431, "{head}");

    // A request line over 8 KiB.
    let request = format!("GET /{} HTTP/1.1\r\nHost: demo.localhost\r\n\r\n", "p".repeat(9 * 1024));
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 414, "{head}");

    // No Host at all (HTTP/1.0 allows it, the router cannot route it).
    let (status, head) = raw_exchange(router.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 400, "{head}");

    assert_eq!(backend.hits(), hits, "no rejected request reached the dyno");
    // Just under the limits is fine.
    let request = format!("GET / HTTP/1.1\r\nHost: demo.localhost\r\nX-Big: {}\r\n\r\n", "b".repeat(8 * 1024 - 20));
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 200, "{head}");
    let mut request = String::from("GET / HTTP/1.1\r\nHost: demo.localhost\r\n");
    for i in 0..90 {
        request.push_str(&format!("X-H{i}: 1\r\n"));
    }
    request.push_str("\r\n");
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 200, "{head}");
}

#[tokio::test]
async fn h2c_requests_are_proxied_to_http1_dynos() {
    let backend = Backend::start("web.1").await;
    let (_source, router) = demo_router(&backend).await;
    let reply = TestClient::http2().get(router.addr, "demo.localhost", "/h2").await;
    assert_eq!((reply.status, reply.backend()), (200, "web.1"));
    assert_eq!(reply.echoed("host").as_deref(), Some("demo.localhost"));
    assert_eq!(reply.echoed("via").as_deref(), Some("2.0 ouro"));
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let backend = Backend::start_held("web.1").await;
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let mut router = Router::following(&source).await;
    let addr = router.addr;

    let request = tokio::spawn(async move { TestClient::new().get(addr, "demo.localhost", "/").await });
    wait_until("the request reached the dyno", STEP, || async { backend.held() == 1 }).await;

    router.ask_shutdown();
    wait_until("the router stopped accepting", STEP, || async { TcpStream::connect(addr).await.is_err() }).await;
    assert!(!request.is_finished(), "the in-flight request was cut");

    backend.release();
    let reply = tokio::time::timeout(STEP, request).await.expect("drained in time").unwrap();
    assert_eq!((reply.status, reply.backend()), (200, "web.1"));
    tokio::time::timeout(Duration::from_secs(5), router.shutdown()).await.expect("serve returned").unwrap();
}

#[tokio::test]
async fn slow_clients_are_cut_off_after_the_header_read_timeout() {
    let backend = Backend::start("web.1").await;
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let mut config = ouro_router::Config::new(source.url());
    config.header_read_timeout = Duration::from_millis(500);
    let router = Router::start(config).await;

    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\nHost: demo.lo").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(STEP, stream.read(&mut buf)).await.expect("the router closed the connection");
    // Closed (EOF or reset), possibly after a short error response.
    assert!(matches!(read, Ok(_) | Err(_)));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(5), "cut after {waited:?}");
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn connections_without_a_request_are_cut_off_after_the_header_read_timeout() {
    let backend = Backend::start("web.1").await;
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let mut config = ouro_router::Config::new(source.url());
    config.header_read_timeout = Duration::from_millis(500);
    let router = Router::start(config).await;

    // Nothing at all, and a part of the HTTP/2 preface: before a fix, hyper-util's protocol
    // detection waited for more bytes without a limit and both stayed open.
    let silent = TcpStream::connect(router.addr).await.unwrap();
    let mut preface = TcpStream::connect(router.addr).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let started = std::time::Instant::now();
    for mut stream in [silent, preface] {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(STEP, stream.read(&mut buf)).await.expect("the router closed the connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(5), "cut after {waited:?}");
    // A connection that asked in time is not cut at the first request's deadline.
    router.wait_for_route(&TestClient::new(), "demo.localhost").await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: demo.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let head = String::from_utf8(read_head(&mut stream).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(STEP, stream.read_exact(&mut echoed)).await.expect("echo in time").unwrap();
    assert_eq!(&echoed, b"ping");
}
