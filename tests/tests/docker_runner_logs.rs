//! The dyno runner's log collection on the real Docker Engine: a dyno's stdout and stderr, and
//! the router's lines posted to the runner's `/logs`, reach the API's `POST /runner/logs` as log
//! lines; a restarted runner adopts the dyno and ships its new lines without shipping old ones
//! again; lines written while the API is away are delivered once it is back.
//!
//! The receiving end is a small stand-in for the API inside this test (the API's log endpoint
//! is built elsewhere): it serves a desired state, records `POST /runner/logs`, and can refuse
//! every connection for a while, as an API in the middle of its upgrade would.
//! Needs a Docker Engine and the stack image (built on first use: minutes, then cached).

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ouro_tests::stand_in::{RunnerUnderTest, read_request, respond};
use ouro_tests::{Value, json, make_slug, sha256sum};

const BOOT: Duration = Duration::from_secs(240);

/// Prints one line on each stream, then a numbered tick every 0.3 s, and serves `$PORT`.
const TALK: &str = r#"import http.server, os, sys, threading, time
print("hello from stdout", flush=True)
print("hello from stderr", file=sys.stderr, flush=True)
def tick():
    n = 0
    while True:
        n += 1
        print(f"tick {n}", flush=True)
        time.sleep(0.3)
threading.Thread(target=tick, daemon=True).start()
http.server.HTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.BaseHTTPRequestHandler).serve_forever()
"#;

/// What the stand-in API knows and has received.
struct Shared {
    desired: Value,
    /// Every log line received, in order, as JSON.
    lines: Mutex<Vec<Value>>,
    /// While set, every connection is closed without an answer.
    down: AtomicBool,
}

/// The stand-in API on a loopback port; its threads end with the test process.
fn fake_api(desired: Value) -> (String, Arc<Shared>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let shared = Arc::new(Shared { desired, lines: Mutex::new(Vec::new()), down: AtomicBool::new(false) });
    let serving = shared.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let shared = serving.clone();
            std::thread::spawn(move || answer(stream, &shared));
        }
    });
    (url, shared)
}

/// Reads one request and answers it (or, while down, closes the connection).
fn answer(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else { return };
    if shared.down.load(Ordering::SeqCst) {
        return;
    }
    let (status, reply) = match (request.method.as_str(), request.route()) {
        _ if !request.authorized() => (401, json!({"id": "unauthorized", "message": "no token"}).to_string()),
        ("GET", "/runner/desired-state") => (200, shared.desired.to_string()),
        ("GET", "/runner/changes") => {
            // The API's long poll, shortened: nothing ever changes here.
            std::thread::sleep(Duration::from_secs(1));
            (200, json!({"version": 1}).to_string())
        }
        ("PUT", "/runner/dynos") => (204, String::new()),
        ("POST", "/runner/logs") => match serde_json::from_slice::<Vec<Value>>(&request.body) {
            Ok(lines) => {
                shared.lines.lock().unwrap().extend(lines);
                (204, String::new())
            }
            Err(e) => (422, json!({"id": "invalid_params", "message": e.to_string()}).to_string()),
        },
        _ => (404, json!({"id": "not_found", "message": "no such route"}).to_string()),
    };
    respond(&mut reader.into_inner(), status, &reply);
}

/// This runner's running containers' ids.
fn running(runner: &RunnerUnderTest) -> Vec<String> {
    runner.containers(false).into_iter().filter_map(|c| c.id).collect()
}

/// The texts `web.1` of `logger` wrote, as shipped, in order.
fn dyno_texts(shared: &Shared) -> Vec<String> {
    let lines = shared.lines.lock().unwrap();
    lines
        .iter()
        .filter(|l| l["app"] == "logger" && l["source"] == "app")
        .map(|l| {
            assert_eq!(l["process"], "web.1", "{l}");
            assert!(l["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{l}");
            l["text"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// The tick numbers shipped, in order.
fn ticks(shared: &Shared) -> Vec<u64> {
    dyno_texts(shared).iter().filter_map(|t| t.strip_prefix("tick ")?.parse().ok()).collect()
}

/// How many times each text was shipped.
fn counts(texts: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for text in texts {
        *counts.entry(text.as_str()).or_default() += 1;
    }
    counts
}

fn assert_contiguous(ticks: &[u64], what: &str) {
    let gaps: Vec<(u64, u64)> = ticks.windows(2).filter(|w| w[1] != w[0] + 1).map(|w| (w[0], w[1])).collect();
    assert!(gaps.is_empty(), "{what}: ticks out of order, repeated or missing at {gaps:?} in {ticks:?}");
}

#[test]
fn dyno_output_and_router_lines_reach_the_api_once_across_restarts_and_outages() {
    let slug_dir = tempfile::tempdir().expect("temp dir");
    let slug = make_slug(&[("app/talk.py", TALK)]);
    let slug_path = slug_dir.path().join("slug.tgz");
    std::fs::write(&slug_path, &slug).expect("write slug");
    let desired = json!({
        "apps": [{
            "app_id": "logger-id",
            "app_name": "logger",
            "release": {
                "id": "release-1", "version": 1, "slug_id": "slug-1",
                "slug_checksum": format!("SHA256:{}", sha256sum(&slug)),
                "slug_url": format!("file://{}", slug_path.display()),
                "process_types": {"web": "python3 -u /app/talk.py"},
                "config": {},
            },
            "formation": [{"type": "web", "quantity": 1, "size": "basic"}],
        }],
        "volumes": [],
    });
    let (api_url, api) = fake_api(desired);
    let mut runner = RunnerUnderTest::start(&api_url, &format!("ourologs{}", std::process::id()));

    // The dyno's first lines, from both streams, and its ticks in order.
    let shipped = || {
        let lines = api.lines.lock().unwrap();
        let last: Vec<String> = lines.iter().rev().take(5).map(|l| l.to_string()).collect();
        format!("{} lines shipped; the last ones: {last:?}", lines.len())
    };
    runner.wait_until_showing(
        BOOT,
        "the dyno's first lines are shipped",
        || {
            let texts = dyno_texts(&api);
            texts.iter().any(|t| t == "hello from stdout")
                && texts.iter().any(|t| t == "hello from stderr")
                && ticks(&api).len() >= 3
        },
        shipped,
    );
    let first = ticks(&api);
    assert_eq!(first.first(), Some(&1), "from the dyno's start: {first:?}");
    assert_contiguous(&first, "before any restart");

    // A router's line, posted to the runner's listener, is shipped the same way.
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build(),
    );
    let line = json!([{"at": "2026-11-26T09:00:00.123456Z", "app": "logger", "source": "ouro", "process": "router",
        "text": "at=info method=GET path=\"/\" host=logger.localhost request_id=r1 status=200"}]);
    let authorization = format!("Bearer {}", runner.secret());
    let posted = agent
        .post(&format!("{}/logs", runner.url))
        .header("Content-Type", "application/json")
        .header("Authorization", &authorization)
        .send(line.to_string().as_bytes())
        .expect("POST /logs");
    assert_eq!(posted.status().as_u16(), 204);
    runner.wait_until(Duration::from_secs(10), "the router's line reaches the API", || {
        api.lines.lock().unwrap().iter().any(|l| {
            l["source"] == "ouro"
                && l["process"] == "router"
                && l["text"].as_str().unwrap_or("").contains("request_id=r1")
        })
    });
    let too_many = Value::Array(vec![line[0].clone(); 1_001]);
    let refused = agent
        .post(&format!("{}/logs", runner.url))
        .header("Authorization", &authorization)
        .send(too_many.to_string().as_bytes())
        .expect("POST /logs");
    assert_eq!(refused.status().as_u16(), 422);

    // A new runner adopts the dyno: new lines come, none of the old ones again.
    let containers = running(&runner);
    assert_eq!(containers.len(), 1, "{containers:?}");
    runner.restart();
    let before = ticks(&api).last().copied().unwrap_or(0);
    runner.wait_until(Duration::from_secs(60), "ticks after the restart are shipped", || {
        ticks(&api).last().is_some_and(|last| *last > before + 5)
    });
    assert_eq!(running(&runner), containers, "the same container runs: adopted, not restarted");
    let texts = dyno_texts(&api);
    let repeated: Vec<_> = counts(&texts).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(repeated.is_empty(), "shipped more than once after the restart: {repeated:?}");
    let adopted_from = ticks(&api).into_iter().find(|t| *t > before).expect("a tick after the restart");

    // The API away for a while (every connection closed): lines wait in the runner's queue
    // and are all delivered, in order, once it is back.
    api.down.store(true, Ordering::SeqCst);
    let down_at = ticks(&api).last().copied().unwrap_or(0);
    std::thread::sleep(Duration::from_secs(4)); // the outage: about 13 ticks written meanwhile
    api.down.store(false, Ordering::SeqCst);
    runner.wait_until(Duration::from_secs(30), "the lines of the outage are delivered", || {
        ticks(&api).last().is_some_and(|last| *last > down_at + 15)
    });
    let all = ticks(&api);
    let since_adoption: Vec<u64> = all.iter().copied().skip_while(|t| *t < adopted_from).collect();
    assert_contiguous(&since_adoption, "across the outage");
    let texts = dyno_texts(&api);
    let repeated: Vec<_> = counts(&texts).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(repeated.is_empty(), "shipped more than once: {repeated:?}");
    assert!(runner.log().contains("could not ship log lines to the API"), "the outage was noticed");
    println!(
        "ticks shipped: {} (first {:?}, restart after {before}, adopted from {adopted_from}, down at {down_at}, last {:?})",
        all.len(),
        all.first(),
        all.last()
    );
}
