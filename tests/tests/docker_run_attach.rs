//! Attached one-off dynos (`ouro run`), the dyno runner's side, on the real Docker Engine: the
//! runner opens `GET /runner/attach/{app}/run.N` as an `ouro-attach` upgrade before it starts
//! the dyno, then speaks frames: the dyno's stdin from `STDIN`/`STDIN_EOF`, its stdout and
//! stderr as `STDOUT`/`STDERR` (a TTY's all `STDOUT`), its exit status as the last frame. A
//! refused upgrade means the dyno never starts; a one-off with a time to live is stopped once
//! it has run it out. Both are reported finished with their reason.
//!
//! The other end is a small stand-in for the API inside this test (the API's attach routes are
//! built elsewhere): it serves a desired state, drops one-offs once reported finished (as the
//! API does), records the reports, and answers attach upgrades with `101` (handing the raw
//! socket to the test) or `404`.
//! Needs a Docker Engine and the stack image (built on first use: minutes, then cached).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use ouro_tests::stand_in::{RunnerUnderTest, read_request, respond};
use ouro_tests::{Value, json, make_slug, sha256sum};
use ouro_types::attach;

const APP: &str = "attached";
const BOOT: Duration = Duration::from_secs(240);

/// What the stand-in API knows and has received.
struct Shared {
    desired: Mutex<Value>,
    /// Every dyno the runner reported, in order, with when.
    reports: Mutex<Vec<(Instant, Value)>>,
    /// One-offs reported finished: `run.N` → reason.
    finished: Mutex<BTreeMap<String, String>>,
    /// `run.N` whose attach upgrade is refused (404).
    refused: Vec<String>,
    /// Attach requests: `run.N` and whether they carried the runner's token and the upgrade.
    attach_requests: Mutex<Vec<(String, bool)>>,
    /// Upgraded attach connections, to the test.
    upgraded: Mutex<mpsc::Sender<(String, TcpStream)>>,
}

/// The stand-in API on a loopback port; its threads end with the test process.
fn fake_api(desired: Value, refused: &[&str]) -> (String, Arc<Shared>, mpsc::Receiver<(String, TcpStream)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        desired: Mutex::new(desired),
        reports: Mutex::new(Vec::new()),
        finished: Mutex::new(BTreeMap::new()),
        refused: refused.iter().map(|r| r.to_string()).collect(),
        attach_requests: Mutex::new(Vec::new()),
        upgraded: Mutex::new(tx),
    });
    let serving = shared.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let shared = serving.clone();
            std::thread::spawn(move || answer(stream, &shared));
        }
    });
    (url, shared, rx)
}

/// Reads one request and answers it.
fn answer(stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else { return };
    let attach_prefix = format!("/runner/attach/{APP}/");
    let (status, reply) = match (request.method.as_str(), request.route()) {
        _ if !request.authorized() => (401, json!({"id": "unauthorized", "message": "no token"}).to_string()),
        ("GET", "/runner/desired-state") => (200, shared.desired.lock().unwrap().to_string()),
        ("GET", "/runner/changes") => {
            // The API's long poll, shortened.
            std::thread::sleep(Duration::from_millis(500));
            (200, json!({"version": 1}).to_string())
        }
        ("PUT", "/runner/dynos") => {
            let report: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            for dyno in report["dynos"].as_array().cloned().unwrap_or_default() {
                let state = dyno["state"].as_str().unwrap_or("");
                if dyno["type"] == "run" && (state == "down" || state == "crashed") {
                    // As the API does: a one-off that has ended leaves the desired state.
                    let name = dyno["name"].as_str().unwrap_or("").to_string();
                    let reason = dyno["reason"].as_str().unwrap_or("finished").to_string();
                    shared.finished.lock().unwrap().entry(name.clone()).or_insert(reason);
                    let number: u64 = name.trim_start_matches("run.").parse().unwrap_or(0);
                    let mut desired = shared.desired.lock().unwrap();
                    if let Some(one_offs) = desired["apps"][0]["one_offs"].as_array_mut() {
                        one_offs.retain(|o| o["number"].as_u64() != Some(number));
                    }
                }
                shared.reports.lock().unwrap().push((Instant::now(), dyno));
            }
            (204, String::new())
        }
        ("GET", route) if route.starts_with(&attach_prefix) => {
            let dyno = route[attach_prefix.len()..].to_string();
            let upgrade = request.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("upgrade"))
                && request.header("upgrade") == Some(attach::UPGRADE);
            shared.attach_requests.lock().unwrap().push((dyno.clone(), upgrade));
            if upgrade && !shared.refused.contains(&dyno) {
                let mut stream = reader.into_inner();
                let _ = stream.set_read_timeout(None);
                let switched = stream.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ouro-attach\r\n\r\n",
                );
                if switched.is_ok() {
                    let _ = shared.upgraded.lock().unwrap().send((dyno, stream));
                }
                return;
            }
            (404, json!({"id": "not_found", "message": "nobody is attached to this dyno"}).to_string())
        }
        _ => (404, json!({"id": "not_found", "message": "no such route"}).to_string()),
    };
    respond(&mut reader.into_inner(), status, &reply);
}

/// Whether the runner's container of `run.N` was ever started (a container that is gone
/// counts as not known: `None`).
fn ever_started(runner: &RunnerUnderTest, dyno: &str) -> Option<bool> {
    let index = dyno.trim_start_matches("run.");
    let summary = runner.containers(true).into_iter().find(|c| {
        let labels = c.labels.clone().unwrap_or_default();
        labels.get("ouro.type").map(String::as_str) == Some("run")
            && labels.get("ouro.index").map(String::as_str) == Some(index)
    })?;
    let inspect =
        runner.runtime.block_on(runner.docker.inspect_container(&summary.id.unwrap_or_default(), None)).ok()?;
    let started_at = inspect.state.and_then(|s| s.started_at).unwrap_or_default();
    Some(!started_at.is_empty() && !started_at.starts_with("0001-"))
}

/// Every frame until the runner closes the connection, within `timeout`.
fn read_frames(stream: &mut TcpStream, timeout: Duration) -> Vec<(u8, Vec<u8>)> {
    let deadline = Instant::now() + timeout;
    let mut decoder = attach::Decoder::default();
    let mut frames = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the attach connection was not closed within {timeout:?}; frames so far: {frames:?}");
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return frames,
            Ok(n) => decoder.push(&buffer[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading frames: {e}; frames so far: {frames:?}"),
        }
        while let Some(frame) = decoder.next_frame().expect("a well-formed frame") {
            frames.push(frame);
        }
    }
}

/// The bytes of all frames of `kind`, as text.
fn text_of(frames: &[(u8, Vec<u8>)], kind: u8) -> String {
    let bytes: Vec<u8> = frames.iter().filter(|(k, _)| *k == kind).flat_map(|(_, p)| p.clone()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn one_off(number: u32, command: &str, extra: Value) -> Value {
    let mut one_off = json!({"number": number, "command": command, "size": "basic"});
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        one_off[key] = value;
    }
    one_off
}

#[test]
fn attached_one_offs_bridge_their_terminal_and_end_with_their_exit_status() {
    let slug_dir = tempfile::tempdir().expect("temp dir");
    let slug = make_slug(&[("app/README", "an app to run one-off dynos of\n")]);
    let slug_path = slug_dir.path().join("slug.tgz");
    std::fs::write(&slug_path, &slug).expect("write slug");
    let desired = json!({
        "apps": [{
            "app_id": "attached-id",
            "app_name": APP,
            "release": {
                "id": "release-1", "version": 1, "slug_id": "slug-1",
                "slug_checksum": format!("SHA256:{}", sha256sum(&slug)),
                "slug_url": format!("file://{}", slug_path.display()),
                "process_types": {},
                "config": {},
            },
            "formation": [],
            "one_offs": [
                one_off(1, "sh -c 'read line; echo got $line; echo oops >&2; exit 7'", json!({"attach": true})),
                one_off(2, "sh -c 'test -t 0 && echo tty; exit 0'", json!({"attach": true, "tty": true})),
                one_off(3, "sleep 60", json!({"time_to_live_seconds": 2})),
                one_off(4, "echo should never run", json!({"attach": true})),
                one_off(5, "sleep 60", json!({"attach": true})),
            ],
        }],
        "volumes": [],
    });
    let (api_url, api, upgraded) = fake_api(desired, &["run.4"]);
    let runner = RunnerUnderTest::start(&api_url, &format!("ouroattach{}", std::process::id()));

    // The three accepted upgrades arrive (the slug image is built first: minutes the first time).
    let mut connections = HashMap::new();
    let deadline = Instant::now() + BOOT;
    while connections.len() < 3 {
        let left = deadline.saturating_duration_since(Instant::now());
        match upgraded.recv_timeout(left) {
            Ok((dyno, stream)) => {
                connections.insert(dyno, stream);
            }
            Err(_) => panic!("the attach upgrades did not come within {BOOT:?}\n--- runner log ---\n{}", runner.log()),
        }
    }
    assert!(
        api.attach_requests.lock().unwrap().iter().all(|(_, upgrade)| *upgrade),
        "every attach request asks for the ouro-attach upgrade with the runner's token: {:?}",
        api.attach_requests.lock().unwrap()
    );

    // Not a terminal: stdin in, stdout and stderr apart, the exit status last.
    let mut plain = connections.remove("run.1").expect("run.1 attached");
    plain.write_all(&attach::frame(attach::STDIN, b"hello\n")).expect("send stdin");
    plain.write_all(&attach::frame(attach::STDIN_EOF, b"")).expect("send stdin's end");
    let frames = read_frames(&mut plain, Duration::from_secs(60));
    assert_eq!(text_of(&frames, attach::STDOUT), "got hello\n", "{frames:?}");
    assert_eq!(text_of(&frames, attach::STDERR), "oops\n", "{frames:?}");
    let (kind, payload) = frames.last().expect("frames").clone();
    assert_eq!((kind, attach::exit_status(&payload)), (attach::EXIT, Some(7)), "the exit status last: {frames:?}");
    assert_eq!(frames.iter().filter(|(k, _)| *k == attach::EXIT).count(), 1);

    // A terminal: the dyno's stdin is one, and its output all comes as STDOUT.
    let mut tty = connections.remove("run.2").expect("run.2 attached");
    tty.write_all(&attach::resize_frame(100, 30)).expect("send a resize");
    let frames = read_frames(&mut tty, Duration::from_secs(60));
    assert!(text_of(&frames, attach::STDOUT).contains("tty"), "{frames:?}");
    assert_eq!(text_of(&frames, attach::STDERR), "", "{frames:?}");
    let (kind, payload) = frames.last().expect("frames").clone();
    assert_eq!((kind, attach::exit_status(&payload)), (attach::EXIT, Some(0)), "{frames:?}");

    // The terminal goes away while the dyno runs: the dyno is stopped, not left running.
    drop(connections.remove("run.5").expect("run.5 attached"));
    let dropped = Instant::now();
    runner.wait_until(Duration::from_secs(30), "run.5 is reported finished", || {
        api.finished.lock().unwrap().contains_key("run.5")
    });
    assert!(dropped.elapsed() < Duration::from_secs(15), "stopped within 15 s: {:?}", dropped.elapsed());
    assert_eq!(api.finished.lock().unwrap()["run.5"], "the terminal went away");

    // Refused (the caller gave up): never started, reported finished.
    runner.wait_until(Duration::from_secs(60), "run.4 is reported finished", || {
        api.finished.lock().unwrap().contains_key("run.4")
    });
    assert_eq!(api.finished.lock().unwrap()["run.4"], "the terminal went away");
    assert_ne!(ever_started(&runner, "run.4"), Some(true), "run.4 never starts");
    let states: Vec<String> = api
        .reports
        .lock()
        .unwrap()
        .iter()
        .map(|(_, d)| d)
        .filter(|d| d["name"] == "run.4")
        .map(|d| d["state"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!states.iter().any(|s| s == "up"), "run.4 never runs: {states:?}");
    assert!(
        api.attach_requests.lock().unwrap().iter().filter(|(dyno, _)| dyno == "run.4").count() == 1,
        "one attach attempt, no new start: {:?}",
        api.attach_requests.lock().unwrap()
    );

    // The attached ones are reported with their exit status.
    runner.wait_until(Duration::from_secs(30), "run.1 and run.2 are reported finished", || {
        let finished = api.finished.lock().unwrap();
        finished.contains_key("run.1") && finished.contains_key("run.2")
    });
    assert_eq!(api.finished.lock().unwrap()["run.1"], "process exited with status 7");
    assert_eq!(api.finished.lock().unwrap()["run.2"], "process exited with status 0");

    // The time to live: `sleep 60` stopped after about 2 s, reported with R99.
    runner.wait_until(Duration::from_secs(30), "run.3 is reported finished", || {
        api.finished.lock().unwrap().contains_key("run.3")
    });
    let reported = |states: &[&str]| {
        let reports = api.reports.lock().unwrap();
        reports
            .iter()
            .find(|(_, d)| d["name"] == "run.3" && states.contains(&d["state"].as_str().unwrap_or("")))
            .map(|(at, _)| *at)
    };
    // From its first report (starting or up: the runner has just started it) to its end.
    let first = reported(&["starting", "up"]).expect("run.3 was reported running");
    let ended = reported(&["down", "crashed"]).expect("run.3 was reported ended");
    let ran = ended.duration_since(first);
    assert!(ran < Duration::from_secs(15), "stopped within 15 s of running: {ran:?}");
    assert_eq!(api.finished.lock().unwrap()["run.3"], "R99: the one-off dyno ran out its time to live (2 s)");

    // Finished one-offs leave: their containers are removed, no upgrade is asked for again.
    runner.wait_until(Duration::from_secs(30), "the finished one-offs' containers are removed", || {
        (1..=5).all(|n| ever_started(&runner, &format!("run.{n}")).is_none())
    });
    let attempts = api.attach_requests.lock().unwrap().len();
    assert_eq!(attempts, 4, "one attach per attached one-off: {:?}", api.attach_requests.lock().unwrap());
}
