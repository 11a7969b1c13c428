//! `ouro logs` end to end: an app pushed with git, its dynos' output followed by the runner
//! on the real Docker Engine, the router's request lines, and the platform's events, read with
//! the real `ouro` binary as a user would (`--tail`, filters), through a redeploy and a crash.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ouro_tests::platform::{Platform, push, sample_repo, wait_for_page};
use ouro_tests::{binary, logged_in, ok};

/// Waits for a line that contains every one of `parts` on `lines`; returns it.
fn expect(lines: &mpsc::Receiver<(Instant, String)>, parts: &[&str], seen: &mut Vec<String>) -> (Instant, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok((at, line)) => {
                seen.push(line.clone());
                if parts.iter().all(|p| line.contains(p)) {
                    return (at, line);
                }
            }
            Err(_) => panic!("no line with {parts:?} within 60 s; the tail showed:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn logs_follow_a_pushed_app_its_router_lines_and_its_crash_and_survive_a_redeploy() {
    let platform = Platform::start();
    let cli = logged_in(&platform.api);
    let repo = sample_repo(&platform, &cli, "chatty", "python-logs");
    push(&repo, &["main"]);
    wait_for_page(&platform, "chatty", "logged");

    // `ouro logs --tail`, as a user runs it, read line by line as it prints.
    let mut tail = Command::new(binary("ouro"))
        .args(["logs", "--tail", "-n", "5", "-a", "chatty"])
        .env("OURO_CONFIG_DIR", cli.config_dir.path())
        .env_remove("OURO_API_URL")
        .env_remove("OURO_API_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ouro logs --tail");
    let out = tail.stdout.take().expect("stdout");
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // The recent lines come first: the app's boot among the last few is not guaranteed, but
    // the stream answers at once with what the hub has.
    let (_, first) = expect(&lines, &["chatty"], &mut seen).clone();
    assert!(first.len() > 27 && first.as_bytes()[26] == b'Z', "RFC 3339 with microseconds: {first}");

    // Each request: the app's line (with the request id it saw) reaches the tail, and the
    // router's line carries that same id.
    let mut delays = Vec::new();
    for n in 0..3 {
        let path = format!("/hello/{n}");
        let asked = Instant::now();
        let (status, _) = platform.get("chatty", &path).expect("the app answers");
        assert_eq!(status, 200);
        let (at, line) = expect(&lines, &["app[web.1]: request_id=", &format!("path={path}")], &mut seen);
        delays.push(at.duration_since(asked));
        let id = line.split("request_id=").nth(1).and_then(|r| r.split_whitespace().next()).expect("an id").to_string();
        assert!(id.len() >= 8 && id != "-", "the router gave the app a request id: {line}");
        let (_, router) = expect(&lines, &["ouro[router]: at=info method=GET", &format!("request_id={id}")], &mut seen);
        assert!(router.contains(&format!("path=\"{path}\"")) && router.contains("status=200"), "{router}");
        assert!(router.contains("dyno=web.1"), "{router}");
    }
    println!("request to its line in `ouro logs --tail`: {delays:?}");
    assert!(delays.iter().any(|d| *d < Duration::from_secs(1)), "a line within a second: {delays:?}");

    // A redeploy (a config change: new dynos); the log is the app's, not the container's.
    ok(&cli.run(&["config:set", "MOOD=calm", "-a", "chatty"]));
    expect(&lines, &["ouro[api]: Set MOOD config vars by"], &mut seen);
    expect(&lines, &["ouro[api]: Release v", "created by"], &mut seen);
    expect(&lines, &["ouro[web.1]: State changed from starting to up"], &mut seen);

    // A crash (of the new release's dyno, once the old one is gone): its exit status in the log.
    platform.wait_until(Duration::from_secs(60), "the old release's dyno is gone", || {
        let dynos = platform.dynos("chatty");
        dynos.len() == 1 && dynos[0]["release"] == 3 && dynos[0]["state"] == "up"
    });
    let _ = platform.get("chatty", "/crash");
    expect(&lines, &["app[web.1]: crashing on purpose"], &mut seen);
    expect(&lines, &["ouro[web.1]: Process exited with status 3"], &mut seen);
    expect(&lines, &["ouro[web.1]: State changed from", "to crashed"], &mut seen);
    let _ = tail.kill();
    let _ = tail.wait();

    // Reading without --tail: what came before the redeploy is still there; filters work.
    let all = ok(&cli.run(&["logs", "-n", "1500", "-a", "chatty"]));
    assert!(all.contains("path=/hello/0") && all.contains("ouro[api]: Build succeeded"), "{all}");
    let router = ok(&cli.run(&["logs", "--dyno", "router", "-a", "chatty"]));
    assert!(!router.is_empty() && router.lines().all(|l| l.contains(" ouro[router]: ")), "{router}");
    let app = ok(&cli.run(&["logs", "--source", "app", "-a", "chatty"]));
    assert!(!app.is_empty() && app.lines().all(|l| l.contains(" app[")), "{app}");
    let refused = cli.run(&["logs", "--dyno", "web 1", "-a", "chatty"]);
    assert!(!refused.status.success());
}
