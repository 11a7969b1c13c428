//! Request log lines shipped to the runner's log endpoint: one `ouro[router]` line per request
//! in the app's log, errors with their H-code, hostile paths, upgrades, and a log endpoint that
//! is down or hangs (requests keep being served, the queue stays bounded, L10 afterwards).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use hyper::Request;
use ouro_router::Config;
use ouro_types::log_line::{LogLine, Source};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The fields of a router line, in order; a quoted value unescaped.
fn fields(text: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            return fields;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('u') => {
                            let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                            value.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                        }
                        other => value.extend(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        fields.push((key, value));
    }
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == key).map_or_else(|| panic!("no {key} in {fields:?}"), |(_, v)| v.as_str())
}

fn keys(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(k, _)| k.as_str()).collect()
}

const INFO_KEYS: [&str; 12] =
    ["at", "method", "path", "host", "request_id", "fwd", "dyno", "connect", "service", "status", "bytes", "protocol"];

/// The router lines of the request with this id.
fn lines_for<'a>(lines: &'a [LogLine], request_id: &str) -> Vec<&'a LogLine> {
    let needle = format!(" request_id={request_id} ");
    lines.iter().filter(|line| line.process == "router" && line.text.contains(&needle)).collect()
}

fn has_line(request_id: &str) -> impl Fn(&[LogLine]) -> bool + '_ {
    move |lines| !lines_for(lines, request_id).is_empty()
}

/// A router on a fresh source with app `demo` on one backend, ready to serve.
async fn demo(backend: &Backend, tune: impl FnOnce(&mut Config)) -> (RouteSource, Router, TestClient) {
    let source = RouteSource::start(vec![route("demo", &["demo.localhost"], vec![backend.backend()])]).await;
    let mut config = Config::new(source.url());
    tune(&mut config);
    let router = Router::start(config).await;
    let client = TestClient::new();
    router.wait_for_route(&client, "demo.localhost").await;
    (source, router, client)
}

#[tokio::test]
async fn each_request_is_one_line_in_its_apps_log_with_the_id_the_dyno_saw() {
    let backend = Backend::start("web.1").await;
    let (source, router, client) = demo(&backend, |_| {}).await;

    let unknown = client.get(router.addr, "nope.localhost", "/unknown").await;
    assert_eq!(unknown.status, 404);
    let get = client.get(router.addr, "demo.localhost", "/items?id=1").await;
    let post = client
        .send(
            router.addr,
            "demo.localhost",
            Request::post("/orders").header("x-request-id", "order-42"),
            Bytes::from_static(b"hello"),
        )
        .await;
    assert_eq!((get.status, post.status), (200, 200));
    // What the dyno received (the echo), generated for GET, kept for POST.
    let get_id = get.echoed("x-request-id").expect("the dyno got an id");
    assert_eq!(post.echoed("x-request-id").as_deref(), Some("order-42"));
    assert!(uuid::Uuid::parse_str(&get_id).is_ok(), "{get_id}");

    let lines = source
        .wait_for_logs("both requests are logged", STEP, |lines| {
            has_line(&get_id)(lines) && has_line("order-42")(lines)
        })
        .await;
    for (id, method, path, reply) in [(&*get_id, "GET", "/items?id=1", &get), ("order-42", "POST", "/orders", &post)] {
        let mine = lines_for(&lines, id);
        assert_eq!(mine.len(), 1, "one line for {id}: {mine:?}");
        let line = mine[0];
        assert_eq!((line.app.as_str(), line.source, line.process.as_str()), ("demo", Source::Ouro, "router"));
        let prefix = format!(
            "at=info method={method} path=\"{path}\" host=demo.localhost request_id={id} fwd=\"127.0.0.1\" \
             dyno=web.1 connect="
        );
        assert!(line.text.starts_with(&prefix), "{}", line.text);
        let fields = fields(&line.text);
        assert_eq!(keys(&fields), INFO_KEYS, "{}", line.text);
        assert_eq!(field(&fields, "status"), "200");
        assert_eq!(field(&fields, "bytes"), reply.body.len().to_string());
        assert_eq!(field(&fields, "protocol"), "http");
        for timing in ["connect", "service"] {
            let value = field(&fields, timing);
            assert!(value.strip_suffix("ms").is_some_and(|n| n.parse::<u64>().is_ok()), "{timing}={value}");
        }
        assert_eq!(field(&fields, "request_id"), reply.header("x-request-id").unwrap());
    }
    // A Host that matched no app is in no app's log (lines arrive in order: it would be there).
    assert!(lines.iter().all(|line| !line.text.contains("nope.localhost")), "{lines:?}");
    assert!(lines.iter().all(|line| line.app == "demo"));
}

#[tokio::test]
async fn a_hostile_path_cannot_forge_a_field_or_a_line() {
    let backend = Backend::start("web.1").await;
    let (source, router, client) = demo(&backend, |_| {}).await;

    // Quotes, a backslash and would-be fields inside the request target.
    // (`"` is accepted in the path but not the query; U+0085 is a control character in UTF-8.)
    let path = "/a\"%20status=999\"b\\\"x\"dyno=evil\"\u{85}at=info?q=\\%0Aat=info";
    let request = format!("GET {path} HTTP/1.1\r\nHost: demo.localhost\r\nX-Request-Id: hostile-1\r\n\r\n");
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_eq!(status, 200, "the hostile request is routed: {head}");
    // A raw newline in the target: hyper refuses the request; at most its parts would be logged.
    let request = "GET /b\nstatus=999 at=info HTTP/1.1\r\nHost: demo.localhost\r\nX-Request-Id: hostile-2\r\n\r\n";
    let (status, head) = raw_exchange(router.addr, request.as_bytes()).await;
    assert_ne!(status, 200, "{head}");
    let marker = client
        .send(router.addr, "demo.localhost", Request::get("/").header("x-request-id", "marker-1"), Bytes::new())
        .await;
    assert_eq!(marker.status, 200);

    let lines = source.wait_for_logs("the marker is logged", STEP, has_line("marker-1")).await;
    let hostile = lines_for(&lines, "hostile-1");
    assert_eq!(hostile.len(), 1, "{lines:?}");
    let fields = fields(&hostile[0].text);
    assert_eq!(keys(&fields), INFO_KEYS, "{}", hostile[0].text);
    assert_eq!(field(&fields, "path"), path);
    assert_eq!((field(&fields, "status"), field(&fields, "dyno")), ("200", "web.1"));
    for line in &lines {
        assert!(!line.text.chars().any(char::is_control), "a control character in {:?}", line.text);
        let fields = self::fields(&line.text);
        assert!(fields.iter().all(|(_, v)| v != "999"), "a forged field in {:?}", line.text);
        let mut seen = keys(&fields);
        seen.sort_unstable();
        let count = seen.len();
        seen.dedup();
        assert_eq!(seen.len(), count, "a repeated field in {:?}", line.text);
    }
}

#[tokio::test]
async fn router_errors_are_logged_at_error_with_their_code() {
    let source = RouteSource::start(vec![
        route("crashy", &["crashy.localhost"], vec![refused("web.1", refusing_addr().await)]),
        route("idle", &["idle.localhost"], Vec::new()),
    ])
    .await;
    let mut config = Config::new(source.url());
    config.hold_timeout = Duration::from_millis(300);
    let router = Router::start(config).await;
    let client = TestClient::new();

    // H10: the only dyno refuses connections.
    // (The first requests may come before the route table and be held, then answered H99.)
    let deadline = Instant::now() + STEP;
    let crashed = loop {
        let reply = client.get(router.addr, "crashy.localhost", "/crash?x=1").await;
        if reply.status == 503 && reply.body.contains("H10") {
            break reply;
        }
        assert!(Instant::now() < deadline, "crashy never answered H10: {reply:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // H14: the app has no web dynos.
    let idle = client.get(router.addr, "idle.localhost", "/").await;
    assert_eq!(idle.status, 503);
    let (crashed_id, idle_id) = (crashed.header("x-request-id").unwrap(), idle.header("x-request-id").unwrap());

    let lines = source
        .wait_for_logs("both errors are logged", STEP, |lines| has_line(crashed_id)(lines) && has_line(idle_id)(lines))
        .await;
    let line = lines_for(&lines, crashed_id);
    assert_eq!(line.len(), 1);
    assert_eq!((line[0].app.as_str(), line[0].source, line[0].process.as_str()), ("crashy", Source::Ouro, "router"));
    let prefix = format!(
        "at=error code=H10 desc=\"App crashed\" method=GET path=\"/crash?x=1\" host=crashy.localhost \
         request_id={crashed_id} fwd=\"127.0.0.1\" dyno=web.1 connect= service="
    );
    assert!(line[0].text.starts_with(&prefix), "{}", line[0].text);
    let fields = fields(&line[0].text);
    assert_eq!(field(&fields, "status"), "503");
    assert_eq!(field(&fields, "bytes"), crashed.body.len().to_string());
    assert_eq!(field(&fields, "protocol"), "http");

    let line = lines_for(&lines, idle_id);
    assert_eq!(line.len(), 1);
    assert_eq!(line[0].app, "idle");
    let prefix = format!(
        "at=error code=H14 desc=\"No web processes running\" method=GET path=\"/\" host=idle.localhost \
         request_id={idle_id} fwd=\"127.0.0.1\" dyno= connect= service= status=503 bytes={} protocol=http",
        idle.body.len()
    );
    assert!(line[0].text.starts_with(&prefix), "{}", line[0].text);
}

#[tokio::test]
async fn an_upgrade_is_logged_once_when_the_101_goes_out() {
    let backend = Backend::start("web.1").await;
    let (source, router, client) = demo(&backend, |_| {}).await;

    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: demo.localhost\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\
              X-Request-Id: ws-log-1\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));

    // Logged while the tunnel is still open.
    let lines = source.wait_for_logs("the upgrade is logged", STEP, has_line("ws-log-1")).await;
    let line = lines_for(&lines, "ws-log-1");
    assert!(line[0].text.starts_with("at=info method=GET path=\"/ws\" host=demo.localhost request_id=ws-log-1 "));
    let fields = fields(&line[0].text);
    assert_eq!((field(&fields, "status"), field(&fields, "bytes")), ("101", "0"));

    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    tokio::time::timeout(STEP, stream.read_exact(&mut echoed)).await.expect("echo in time").unwrap();
    drop(stream);
    let marker = client
        .send(router.addr, "demo.localhost", Request::get("/").header("x-request-id", "marker-2"), Bytes::new())
        .await;
    assert_eq!(marker.status, 200);
    let lines = source.wait_for_logs("the marker is logged", STEP, has_line("marker-2")).await;
    assert_eq!(lines_for(&lines, "ws-log-1").len(), 1, "only once: {lines:?}");
}

#[tokio::test]
async fn requests_are_served_promptly_while_the_log_endpoint_hangs() {
    // Accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_addr = hanging.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let _hanging = AbortOnDrop(tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hanging.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    }));
    let backend = Backend::start("web.1").await;
    let (_source, router, client) = demo(&backend, |config| {
        config.logs_url = Some(format!("http://{hanging_addr}/logs"));
    })
    .await;

    wait_until("the shipper is stuck on the endpoint", STEP, || async { accepted.load(Ordering::SeqCst) > 0 }).await;
    for i in 0..30 {
        let started = Instant::now();
        let reply = client.get(router.addr, "demo.localhost", &format!("/n/{i}")).await;
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() < Duration::from_secs(2), "request {i} took {:?}", started.elapsed());
    }
    // Shutdown is not held up either (beyond the capped flush).
    tokio::time::timeout(STEP, router.shutdown()).await.expect("shutdown in time").unwrap();
}

#[tokio::test]
async fn a_full_queue_drops_without_waiting_and_says_l10_once_there_is_room() {
    let backend = Backend::start("web.1").await;
    let (source, router, client) = demo(&backend, |config| config.log_queue = 5).await;

    source.set_logs_down(true);
    let started = Instant::now();
    for i in 0..50 {
        let reply = client
            .send(
                router.addr,
                "demo.localhost",
                Request::get("/").header("x-request-id", format!("burst-{i}")),
                Bytes::new(),
            )
            .await;
        assert_eq!(reply.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "50 requests took {:?}", started.elapsed());
    source.set_logs_down(false);

    let l10 = |lines: &[LogLine]| -> Vec<u64> {
        lines
            .iter()
            .filter_map(|line| {
                let rest = line.text.strip_prefix("Error L10 (output buffer overflow): ")?;
                assert_eq!((line.app.as_str(), line.source, line.process.as_str()), ("demo", Source::Ouro, "router"));
                let (count, since) = rest.split_once(" messages dropped since ")?;
                assert!(since.starts_with("20") && since.ends_with('Z'), "{}", line.text);
                count.parse().ok()
            })
            .collect()
    };
    // The queue holds 5 and one batch of at most 5 is in flight: at least 40 of 50 were dropped.
    let lines = source
        .wait_for_logs("L10 reports the drops", Duration::from_secs(30), |lines| l10(lines).iter().sum::<u64>() >= 40)
        .await;
    let dropped: u64 = l10(&lines).iter().sum();
    let delivered: Vec<usize> = (0..50).map(|i| lines_for(&lines, &format!("burst-{i}")).len()).collect();
    assert!(delivered.iter().all(|&n| n <= 1), "{delivered:?}");
    let delivered: u64 = delivered.iter().map(|&n| n as u64).sum();
    assert!(delivered <= 10, "the queue stayed bounded: {delivered} delivered");
    assert!(delivered + dropped <= 50, "{delivered} delivered + {dropped} dropped");

    // Shipping works normally again.
    let after = client
        .send(router.addr, "demo.localhost", Request::get("/").header("x-request-id", "after-1"), Bytes::new())
        .await;
    assert_eq!(after.status, 200);
    source.wait_for_logs("the next request is logged", STEP, has_line("after-1")).await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
