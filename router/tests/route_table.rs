//! Following the route source: new versions, holding for a booting dyno, and serving on when
//! the control plane is gone.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ouro_router::Config;
use ouro_types::RouteTable;

#[tokio::test]
async fn zero_backends_gives_503_h14_after_the_hold() {
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![])]).await;
    let mut config = Config::new(source.url());
    config.hold_timeout = Duration::from_millis(500);
    let router = Router::start(config).await;
    let client = TestClient::new();

    let started = Instant::now();
    let reply = client.get(router.addr, "demo.localhost", "/").await;
    let waited = started.elapsed();
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("H14"), "{}", reply.body);
    assert!(reply.body.contains("No web processes running"), "{}", reply.body);
    assert!(reply.header("retry-after").is_some());
    assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(5), "answered after {waited:?}");
}

#[tokio::test]
async fn a_request_held_for_a_booting_dyno_is_served_when_the_dyno_is_up() {
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![])]).await;
    let router = Router::following(&source).await; // holds up to 5 s
    let client = std::sync::Arc::new(TestClient::new());
    // Make sure the router has the (empty) route: an unknown host answers 404 only then.
    wait_until("the router has its first table", STEP, || async {
        client.get(router.addr, "other.localhost", "/").await.status == 404
    })
    .await;

    let addr = router.addr;
    let request_client = std::sync::Arc::clone(&client);
    let mut request = tokio::spawn(async move { request_client.get(addr, "demo.localhost", "/").await });
    let early = tokio::time::timeout(Duration::from_millis(300), &mut request).await;
    assert!(early.is_err(), "the request was answered at once instead of being held: {early:?}");

    let dyno = Backend::start("web.1").await;
    source.set(vec![route("demo", &["demo.localhost"], vec![dyno.backend()])]);
    let reply = tokio::time::timeout(STEP, request).await.expect("answered after the dyno came up").unwrap();
    assert_eq!((reply.status, reply.backend()), (200, "web.1"));
}

#[tokio::test]
async fn route_table_changes_are_picked_up_within_a_second() {
    let (old, new) = (Backend::start("web.1").await, Backend::start("web.2").await);
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![old.backend()])]).await;
    let router = Router::following(&source).await;
    let client = TestClient::new();
    router.wait_for_route(&client, "demo.localhost").await;
    assert_eq!(client.get(router.addr, "demo.localhost", "/").await.backend(), "web.1");

    source.set(vec![
        route("demo", &["demo.localhost"], vec![new.backend()]),
        route("blog", &["blog.localhost"], vec![old.backend()]),
    ]);
    wait_until("the new dyno serves demo", Duration::from_secs(1), || async {
        client.get(router.addr, "demo.localhost", "/").await.backend() == "web.2"
    })
    .await;
    assert_eq!(client.get(router.addr, "blog.localhost", "/").await.backend(), "web.1");

    // A removed host is unknown at once.
    source.set(vec![route("blog", &["blog.localhost"], vec![old.backend()])]);
    wait_until("demo is gone", Duration::from_secs(1), || async {
        client.get(router.addr, "demo.localhost", "/").await.status == 404
    })
    .await;
}

#[tokio::test]
async fn keeps_serving_its_last_table_while_the_route_source_is_gone() {
    let (first, second) = (Backend::start("web.1").await, Backend::start("web.2").await);
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![first.backend()])]).await;
    let mut config = Config::new(source.url());
    config.routes_retry_max = Duration::from_millis(300);
    let router = Router::start(config).await;
    let client = TestClient::new();
    router.wait_for_route(&client, "demo.localhost").await;

    // The control plane goes away: its port refuses connections, the held long poll breaks.
    let version = source.version();
    let source_addr = source.stop();
    let until = Instant::now() + Duration::from_millis(1500);
    let mut served = 0;
    while Instant::now() < until {
        let reply = client.get(router.addr, "demo.localhost", "/").await;
        assert_eq!((reply.status, reply.backend()), (200, "web.1"), "while the route source is down");
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 5);

    // It comes back with a newer table: the router's retries find it.
    let routes = vec![route("demo", &["demo.localhost"], vec![second.backend()])];
    let _source = RouteSource::start_on(source_addr, RouteTable { version: version + 1, routes }).await;
    wait_until("the router follows the source again", STEP, || async {
        client.get(router.addr, "demo.localhost", "/").await.backend() == "web.2"
    })
    .await;
}

#[tokio::test]
async fn requests_before_the_first_table_wait_for_it() {
    // The route source is not up yet when the router starts.
    let source_addr = refusing_addr().await;
    let backend = Backend::start("web.1").await;
    let mut config = Config::new(format!("http://{source_addr}/routes"));
    config.routes_retry_max = Duration::from_millis(200);
    let router = Router::start(config).await;
    let client = std::sync::Arc::new(TestClient::new());

    let addr = router.addr;
    let request_client = std::sync::Arc::clone(&client);
    let request = tokio::spawn(async move { request_client.get(addr, "demo.localhost", "/").await });
    let routes = vec![route("demo", &["demo.localhost"], vec![backend.backend()])];
    let _source = RouteSource::start_on(source_addr, RouteTable { version: 1, routes }).await;
    let reply = tokio::time::timeout(STEP, request).await.expect("answered").unwrap();
    assert_eq!((reply.status, reply.backend()), (200, "web.1"));
}

#[tokio::test]
async fn acme_challenges_are_answered_for_the_routes_hosts_without_a_dyno() {
    let mut demo = route("demo", &["demo.localhost", "www.demo.test"], vec![]);
    demo.acme_challenges =
        vec![ouro_types::AcmeChallenge { token: "tok-1".into(), key_authorization: "tok-1.thumb".into() }];
    let source = RouteSource::start(vec![demo, route("other", &["other.localhost"], vec![])]).await;
    let mut config = Config::new(source.url());
    config.hold_timeout = Duration::from_millis(300);
    let router = Router::start(config).await;
    let client = TestClient::new();
    wait_until("the router has its table", STEP, || async {
        client.get(router.addr, "nobody.localhost", "/").await.status == 404
    })
    .await;

    // The challenge's key authorization, on any host of the route, with no dyno up.
    let reply = client.get(router.addr, "www.demo.test", "/.well-known/acme-challenge/tok-1").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "tok-1.thumb"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    // Another token, or another app's host, is an ordinary request (no dyno: 503).
    let reply = client.get(router.addr, "demo.localhost", "/.well-known/acme-challenge/tok-2").await;
    assert_eq!(reply.status, 503);
    let reply = client.get(router.addr, "other.localhost", "/.well-known/acme-challenge/tok-1").await;
    assert_eq!(reply.status, 503);
}
