//! Routing, balancing, retries, router errors and forwarded headers, over real HTTP on loopback.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hyper::Request;
use ouro_router::Config;

#[tokio::test]
async fn routes_by_host_and_answers_404_for_unknown_hosts() {
    let (a, b) = (Backend::start("a-web.1").await, Backend::start("b-web.1").await);
    let source = RouteSource::start(vec![
        route("a", &["a.localhost"], vec![a.backend()]),
        route("b", &["b.localhost", "www.b.localhost"], vec![b.backend()]),
    ])
    .await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    router.wait_for_route(&client, "a.localhost").await;

    assert_eq!(client.get(router.addr, "a.localhost", "/").await.backend(), "a-web.1");
    // Case and port do not matter.
    let reply = client.get(router.addr, "B.Localhost:8080", "/x?y=1").await;
    assert_eq!((reply.status, reply.backend()), (200, "b-web.1"));
    assert_eq!(client.get(router.addr, "www.b.localhost", "/").await.backend(), "b-web.1");

    let unknown = client.get(router.addr, "nope.localhost", "/").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.header("content-type").unwrap().starts_with("text/html"));
    assert!(unknown.body.contains("No such app"), "{}", unknown.body);
    assert!(unknown.header("x-request-id").is_some());
    assert_eq!(a.hits() + b.hits(), 4, "the 404 reached no backend");
}

#[tokio::test]
async fn spreads_requests_across_three_dynos() {
    let backends = [Backend::start("web.1").await, Backend::start("web.2").await, Backend::start("web.3").await];
    let source =
        RouteSource::start(vec![route("demo", &["demo.localhost"], backends.iter().map(Backend::backend).collect())])
            .await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    router.wait_for_route(&client, "demo.localhost").await;

    let mut replies = Vec::new();
    for _ in 0..60 {
        replies.push(client.get(router.addr, "demo.localhost", "/").await);
    }
    assert!(replies.iter().all(|r| r.status == 200));
    let counts = tally(&replies);
    for backend in &backends {
        assert!(counts.get(&backend.name).copied().unwrap_or(0) > 0, "{} got none of 60: {counts:?}", backend.name);
    }
}

#[tokio::test]
async fn least_outstanding_prefers_the_idle_dyno_when_one_is_slow() {
    let slow = Backend::start_held("web.slow").await;
    let fast = Backend::start("web.fast").await;
    let source =
        RouteSource::start(vec![route("demo", &["demo.localhost"], vec![slow.backend(), fast.backend()])]).await;
    let router = Router::following(&source).await;
    let client = std::sync::Arc::new(TestClient::new());
    let addr = router.addr;

    // Send requests one at a time until one is stuck on the slow dyno.
    let mut stuck = None;
    for _ in 0..50 {
        let client = std::sync::Arc::clone(&client);
        let mut request = tokio::spawn(async move { client.get(addr, "demo.localhost", "/").await });
        let held_before = slow.held();
        let answered = tokio::time::timeout(STEP, async {
            loop {
                tokio::select! {
                    reply = &mut request => return Some(reply.unwrap()),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {
                        if slow.held() > held_before { return None; }
                    }
                }
            }
        })
        .await
        .expect("the request was answered or held");
        match answered {
            Some(reply) => assert_eq!(reply.backend(), "web.fast"),
            None => {
                stuck = Some(request);
                break;
            }
        }
    }
    let stuck = stuck.expect("one of 50 requests went to the slow dyno");

    // While the slow dyno has one outstanding request, every new one goes to the idle dyno
    // (plain random would send about half of them to the slow one).
    for i in 0..20 {
        let reply = client.get(addr, "demo.localhost", "/").await;
        assert_eq!(reply.backend(), "web.fast", "request {i} went to the busy dyno");
    }
    assert_eq!(slow.held(), 1);

    slow.release();
    let reply = tokio::time::timeout(STEP, stuck).await.expect("released in time").unwrap();
    assert_eq!((reply.status, reply.backend()), (200, "web.slow"));
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_dyno() {
    let good = Backend::start("web.2").await;
    let source = RouteSource::start(vec![route(
        "demo",
        &["demo.localhost"],
        vec![refused("web.1", refusing_addr().await), good.backend()],
    )])
    .await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    for _ in 0..20 {
        let reply = client.get(router.addr, "demo.localhost", "/").await;
        assert_eq!((reply.status, reply.backend()), (200, "web.2"));
    }
    // A POST with a body is retried too: nothing was sent to the refusing dyno.
    let reply =
        client.send(router.addr, "demo.localhost", Request::post("/upload"), Bytes::from(vec![b'x'; 5000])).await;
    assert_eq!((reply.status, reply.echoed("body-bytes").as_deref()), (200, Some("5000")));
}

#[tokio::test]
async fn every_dyno_refusing_gives_503_h10() {
    let source = RouteSource::start(vec![route(
        "demo",
        &["demo.localhost"],
        vec![refused("web.1", refusing_addr().await), refused("web.2", refusing_addr().await)],
    )])
    .await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    let reply = client.get(router.addr, "demo.localhost", "/").await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("H10"), "{}", reply.body);
    assert!(reply.body.contains("App crashed"), "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    assert!(reply.header("content-type").unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn no_response_head_within_the_request_timeout_gives_503_h12() {
    let stuck = Backend::start_held("web.1").await;
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![stuck.backend()])]).await;
    let mut config = Config::new(source.url());
    config.request_timeout = Duration::from_secs(1);
    let router = Router::start(config).await;
    let client = TestClient::new();

    let started = Instant::now();
    let reply = client.get(router.addr, "demo.localhost", "/").await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("H12"), "{}", reply.body);
    assert!(reply.body.contains("Request timeout"), "{}", reply.body);
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(stuck.held(), 1, "the request was sent once, not retried");
}

#[tokio::test]
async fn forwarded_headers_and_request_ids() {
    let backend = Backend::start("web.1").await;
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    router.wait_for_route(&client, "demo.localhost").await;

    let before_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let reply = client
        .send(
            router.addr,
            "demo.localhost",
            Request::get("/headers")
                .header("x-request-id", "abc-123_x.y+z/w==")
                .header("x-forwarded-for", "10.0.0.1")
                .header("connection", "keep-alive, x-secret")
                .header("x-secret", "hop")
                .header("keep-alive", "timeout=5")
                .header("proxy-authorization", "Basic eDp5")
                .header("te", "trailers")
                .header("x-app-header", "kept"),
            Bytes::new(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed("host").as_deref(), Some("demo.localhost"));
    assert_eq!(reply.echoed("x-forwarded-for").as_deref(), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(reply.echoed("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(reply.echoed("x-forwarded-port"), Some(router.addr.port().to_string()));
    assert_eq!(reply.echoed("x-request-id").as_deref(), Some("abc-123_x.y+z/w=="));
    assert_eq!(reply.echoed("via").as_deref(), Some("1.1 ouro"));
    assert_eq!(reply.echoed("x-app-header").as_deref(), Some("kept"));
    let start: u128 = reply.echoed("x-request-start").expect("x-request-start").parse().expect("milliseconds");
    assert!(start >= before_ms && start < before_ms + 10_000, "x-request-start {start} vs {before_ms}");
    for hop in ["x-secret", "keep-alive", "proxy-authorization", "te", "connection"] {
        assert_eq!(reply.echoed(hop), None, "{hop} reached the dyno");
    }
    // The response carries the id and the Via too.
    assert_eq!(reply.header("x-request-id"), Some("abc-123_x.y+z/w=="));
    assert_eq!(reply.header("via"), Some("1.1 ouro"));
    assert_eq!(reply.header("x-backend"), Some("web.1"));

    // An insane id (too long, or with characters outside the set) is replaced by a UUID v4.
    for insane in ["a".repeat(201), "has space".to_string(), "semi;colon".to_string()] {
        let reply = client
            .send(
                router.addr,
                "demo.localhost",
                Request::get("/").header("x-request-id", insane.as_str()),
                Bytes::new(),
            )
            .await;
        let id = reply.echoed("x-request-id").expect("x-request-id");
        assert_ne!(id, insane);
        assert_eq!(uuid::Uuid::parse_str(&id).expect("a UUID").get_version_num(), 4);
        assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
        // Without an incoming X-Forwarded-For, only the client's address.
        assert_eq!(reply.echoed("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test]
async fn request_bodies_are_streamed_to_the_dyno() {
    let backend = Backend::start("web.1").await;
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    let body = Bytes::from(vec![b'y'; 300 * 1024]);
    let reply = client.send(router.addr, "demo.localhost", Request::put("/big"), body).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.echoed("body-bytes").as_deref(), Some("307200"));
    assert_eq!(reply.echoed("content-length").as_deref(), Some("307200"));
}

#[tokio::test]
async fn a_dyno_closing_without_answering_gives_503_h13_and_no_retry() {
    // Two "dynos" that accept, read a little, and hang up without a response.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut dynos = Vec::new();
    let mut tasks = Vec::new();
    for name in ["web.1", "web.2"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        dynos.push(ouro_types::RouteBackend { dyno: name.into(), addr: listener.local_addr().unwrap().to_string() });
        let accepted = std::sync::Arc::clone(&accepted);
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                drop(stream);
            }
        }));
    }
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], dynos)]).await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    let reply = client.get(router.addr, "demo.localhost", "/").await;
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("H13"), "{}", reply.body);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "a request that reached a dyno was resent");
    for task in tasks {
        task.abort();
    }
}
