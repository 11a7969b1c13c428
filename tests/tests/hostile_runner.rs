//! Issue 15's hostile-input suite, the dyno runner's listener: `GET /routes` holds every app's
//! TLS private keys and `POST /logs` writes into any app's log, so a local user without the
//! runner's secret gets neither. Against the real `ouro-dyno-runner` binary, which binds its
//! listener before it reaches the Docker Engine or the API (neither is needed here).

use std::time::Duration;

use ouro_tests::{spawn_service, terminate};

/// Checked to fail on the code before the fix: with the previous commit's runner, `GET
/// /routes` without a credential answered 200 with the table and `POST /logs` 204.
#[test]
fn the_runners_routes_and_logs_want_its_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: Vec<(String, String)> = [
        // Nothing listens there: the runner keeps trying, its listener serves meanwhile.
        ("OURO_API_URL", "http://127.0.0.1:9"),
        ("OURO_API_TOKEN", "ouro_unused"),
        ("OURO_RUNNER_LISTEN", "127.0.0.1:0"),
        ("OURO_PLATFORM", "hostile-runner"),
        // An image that does not exist: the runner says so and never builds a stack here.
        ("OURO_STACK_IMAGE", "ouro/no-such-stack:hostile-runner"),
        ("OURO_RUNNER_STATE", &dir.path().join("state/desired-state.json").display().to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let (runner, url) = spawn_service("ouro-dyno-runner", &env, &dir.path().join("runner.log"));
    let _runner = Stopped(runner);
    let secret_file = dir.path().join("state/runner-secret");
    let secret = std::fs::read_to_string(&secret_file).expect("the runner keeps its secret beside its state");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(secret.len() >= 32, "{secret:?}");

    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build(),
    );
    let routes = |authorization: Option<&str>| {
        let mut request = agent.get(&format!("{url}/routes?after=0"));
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let mut answer = request.call().expect("GET /routes");
        (answer.status().as_u16(), answer.body_mut().read_to_string().unwrap_or_default())
    };
    let logs = |authorization: Option<&str>| {
        let line = r#"[{"at": "2026-12-07T09:00:00.000001Z", "app": "bank", "source": "app", "process": "web.1", "text": "forged"}]"#;
        let mut request = agent.post(&format!("{url}/logs")).header("Content-Type", "application/json");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        request.send(line.as_bytes()).expect("POST /logs").status().as_u16()
    };
    let wrong = format!("Bearer {}x", secret.trim());
    for authorization in [None, Some("Bearer "), Some(wrong.as_str()), Some("Basic b3Vybzp4")] {
        let (status, body) = routes(authorization);
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert!(body.contains("OURO_RUNNER_SECRET") && !body.contains("routes\":"), "{body}");
        assert_eq!(logs(authorization), 401, "{authorization:?}");
    }
    let right = format!("Bearer {}", secret.trim());
    let (status, body) = routes(Some(&right));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"routes\""), "{body}");
    assert_eq!(logs(Some(&right)), 204);
    // What `ouro up` reads to see why the runner is stuck stays open: it holds no secret.
    let mut health = agent.get(&format!("{url}/health")).call().expect("GET /health");
    assert_eq!(health.status().as_u16(), 200, "{}", health.body_mut().read_to_string().unwrap_or_default());
}

/// A child process stopped when the test ends, passed or not.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        terminate(&mut self.0, Duration::from_secs(10));
    }
}

/// A runner that dies comes back by itself: `ouro up` starts it under a supervisor
/// (`ouro-dyno-runner --supervise`), which starts it again when it ends, even by SIGKILL; a
/// SIGTERM to the supervisor stops both. Checked to fail on the code before the fix: there,
/// `--supervise` was ignored (one runner, no supervisor), and after the SIGKILL nothing
/// answered.
#[test]
fn a_killed_runner_is_started_again_by_its_supervisor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().unwrap().port()
    };
    let env: Vec<(String, String)> = [
        ("OURO_API_URL", "http://127.0.0.1:9".to_string()),
        ("OURO_API_TOKEN", "ouro_unused".to_string()),
        ("OURO_RUNNER_LISTEN", format!("127.0.0.1:{port}")),
        ("OURO_PLATFORM", "hostile-supervised".to_string()),
        ("OURO_STACK_IMAGE", "ouro/no-such-stack:hostile-runner".to_string()),
        ("OURO_RUNNER_STATE", dir.path().join("state/desired-state.json").display().to_string()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    let mut command = std::process::Command::new(ouro_tests::binary("ouro-dyno-runner"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OURO_")) {
        command.env_remove(key);
    }
    let log = std::fs::File::create(dir.path().join("runner.log")).expect("log");
    command.arg("--supervise").envs(env).stdout(log.try_clone().unwrap()).stderr(log);
    let supervisor = Stopped(command.spawn().expect("the supervisor starts"));
    let supervisor_pid = supervisor.0.id();
    let health = format!("http://127.0.0.1:{port}/health");
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(2))).build(),
    );
    let answers = || agent.get(&health).call().map(|a| a.status().as_u16() == 200).unwrap_or(false);
    let runner_pid = || children_of(supervisor_pid).first().copied();
    let wait = |what: &str, check: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !check() {
            let log = std::fs::read_to_string(dir.path().join("runner.log")).unwrap_or_default();
            assert!(std::time::Instant::now() < deadline, "{what} within 30 s; the log:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the runner answers", &|| answers() && runner_pid().is_some());
    let first = runner_pid().expect("a runner under the supervisor");
    for _ in 0..2 {
        let killed = runner_pid().expect("a runner");
        std::process::Command::new("kill").args(["-KILL", &killed.to_string()]).status().expect("kill");
        wait("a new runner answers", &|| runner_pid().is_some_and(|pid| pid != killed) && answers());
    }
    assert_ne!(runner_pid(), Some(first));
    let last = runner_pid().expect("a runner");
    drop(supervisor);
    assert!(!std::path::Path::new(&format!("/proc/{last}")).exists() || zombie(last), "SIGTERM stopped the runner too");
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        if fields.get(1) == Some(&pid.to_string().as_str()) && fields.first() != Some(&"Z") {
            found.push(child);
        }
    }
    found
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// A runner that cannot start at all (here: an address that is not one) is not restarted
/// forever: after five ends within seconds of their start the supervisor gives up and exits
/// non-zero, so that `ouro up` sees it stop and shows the runner's log.
#[test]
fn a_supervisor_gives_up_on_a_runner_that_cannot_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = std::process::Command::new(ouro_tests::binary("ouro-dyno-runner"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OURO_")) {
        command.env_remove(key);
    }
    let log = std::fs::File::create(dir.path().join("runner.log")).expect("log");
    command
        .arg("--supervise")
        .env("OURO_API_TOKEN", "ouro_unused")
        .env("OURO_RUNNER_LISTEN", "not an address")
        .env("OURO_RUNNER_STATE", dir.path().join("desired-state.json"))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut supervisor = Stopped(command.spawn().expect("the supervisor starts"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = supervisor.0.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the supervisor still runs after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("runner.log")).unwrap_or_default();
    assert!(log.contains("OURO_RUNNER_LISTEN `not an address` is not an address"), "{log}");
    assert!(log.contains("5 times in a row; giving up"), "{log}");
}

/// The runner's log does not grow without bound: the supervisor writes the runner's output to
/// `--log PATH` and rotates it past `OURO_RUNNER_LOG_MAX_BYTES` (here 100 bytes, less than most
/// of its lines: each goes to a file of its own) into three numbered files. Checked to fail on the code before: its supervisor took no `--log`.
#[test]
fn the_runners_log_is_rotated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("runner.log");
    let mut command = std::process::Command::new(ouro_tests::binary("ouro-dyno-runner"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OURO_")) {
        command.env_remove(key);
    }
    command
        .args(["--supervise", "--log"])
        .arg(&log)
        .env("OURO_API_URL", "http://127.0.0.1:9")
        .env("OURO_API_TOKEN", "ouro_unused")
        .env("OURO_RUNNER_LISTEN", "127.0.0.1:0")
        .env("OURO_PLATFORM", "hostile-rotated")
        .env("OURO_STACK_IMAGE", "ouro/no-such-stack:hostile-runner")
        .env("OURO_RUNNER_STATE", dir.path().join("state/desired-state.json"))
        .env("OURO_RUNNER_LOG_MAX_BYTES", "100")
        .stdout(std::process::Stdio::null());
    let supervisor = Stopped(command.spawn().expect("the supervisor starts"));
    let numbered = |n: u32| dir.path().join(format!("runner.log.{n}"));
    // A start writes a few lines, each past the limit.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !numbered(3).exists() {
        assert!(std::time::Instant::now() < deadline, "no third rotated file within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(supervisor);
    for path in [log.clone(), numbered(1), numbered(2), numbered(3)] {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        // A line longer than the limit still goes whole into a file of its own.
        let longest = std::fs::read_to_string(&path).unwrap_or_default().lines().map(|l| l.len() as u64 + 1).max();
        assert!(size <= 100 || Some(size) == longest, "{}: {size} bytes", path.display());
    }
    assert!(!numbered(4).exists(), "three old files kept, no more");
    let all: String = [numbered(3), numbered(2), numbered(1), log.clone()]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    // The runner's own lines, to its last (older ones may have rotated out already).
    assert!(all.contains("stopping; dynos keep running"), "{all}");
}

/// The runner's unsent log lines survive its restart: lines it took while the API was away
/// (the router's, here) are kept beside its state when it stops, and the next runner ships
/// them first. Checked to fail on the code before: there the lines were gone with the process.
#[test]
fn log_lines_the_runner_could_not_ship_survive_its_restart() {
    use std::io::BufReader;
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state/desired-state.json");
    let env = |api: &str| -> Vec<(String, String)> {
        [
            ("OURO_API_URL", api),
            ("OURO_API_TOKEN", ouro_tests::stand_in::TOKEN),
            ("OURO_RUNNER_LISTEN", "127.0.0.1:0"),
            ("OURO_PLATFORM", "hostile-spool"),
            ("OURO_STACK_IMAGE", "ouro/no-such-stack:hostile-runner"),
            ("OURO_RUNNER_STATE", state.to_str().unwrap()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    // The API is away: nothing listens there.
    let (runner, url) = spawn_service("ouro-dyno-runner", &env("http://127.0.0.1:9"), &dir.path().join("runner.log"));
    let mut runner = Stopped(runner);
    let secret = std::fs::read_to_string(state.with_file_name("runner-secret")).expect("the secret");
    let lines: String = (0..3)
        .map(|i| format!(r#"{{"at": "2026-12-07T09:00:0{i}.000001Z", "app": "shop", "source": "ouro", "process": "router", "text": "kept line {i}"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let posted = agent
        .post(&format!("{url}/logs"))
        .header("Authorization", &format!("Bearer {}", secret.trim()))
        .header("Content-Type", "application/json")
        .send(format!("[{lines}]").as_bytes())
        .expect("POST /logs");
    assert_eq!(posted.status().as_u16(), 204);
    terminate(&mut runner.0, Duration::from_secs(30));
    let spool = state.with_file_name("unsent-log-lines.jsonl");
    let kept = std::fs::read_to_string(&spool).unwrap_or_default();
    assert_eq!(kept.matches("kept line").count(), 3, "kept at the stop: {kept:?}");

    // A stand-in API records what it is sent; the next runner ships the kept lines to it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let api = format!("http://{}", listener.local_addr().unwrap());
    let shipped = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let recorder = shipped.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            // One request per connection (the answer closes it).
            if let Some(request) = ouro_tests::stand_in::read_request(&mut reader) {
                if request.route() == "/runner/logs" && request.authorized() {
                    recorder.lock().unwrap().push_str(&String::from_utf8_lossy(&request.body));
                    ouro_tests::stand_in::respond(&mut stream, 204, "");
                } else {
                    ouro_tests::stand_in::respond(&mut stream, 404, "{}");
                }
            }
        }
    });
    let (again, _) = spawn_service("ouro-dyno-runner", &env(&api), &dir.path().join("runner.log"));
    let _again = Stopped(again);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while shipped.lock().unwrap().matches("kept line").count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the kept lines were not shipped within 30 s: {:?}",
            shipped.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!spool.exists(), "shipped, so no longer kept");
}
