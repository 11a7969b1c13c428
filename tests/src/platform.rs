//! A whole platform for Docker tests: the real `ouro-api`, `ouro-dyno-runner` and `ouro-router`
//! binaries, wired together on loopback, with their own platform label so that parallel tests
//! (and a real installation) on the same Docker Engine leave each other alone.
//! Dropping it stops the processes and removes its containers and networks.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::{
    Api, Backend, Cli, Repo, Value, json, ok, spawn_service, spawn_service_with, stderr, stdout, tar_gz, terminate,
};

pub struct Platform {
    pub api: Api,
    /// Label value of this platform's containers.
    pub id: String,
    runner: Option<Child>,
    pub runner_url: String,
    router: Option<Child>,
    /// Runners of other swarm nodes (`OURO_SWARM=node`), see [`Platform::start_swarm_node`].
    node_runners: Vec<Child>,
    /// `127.0.0.1:port` of the router.
    pub router_addr: String,
    /// `127.0.0.1:port` of the router's TLS listener.
    pub router_tls_addr: String,
    logs: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    pub docker: Docker,
    /// Held while this platform lives: at most `MAX_PLATFORMS` run at once.
    _slot: PlatformSlot,
}

/// At most this many platforms run at once in one test process: on 2 cores, more would turn
/// timing-sensitive checks (boot, hand-over under load) into a measure of the machine's load.
const MAX_PLATFORMS: usize = 3;

struct PlatformSlot;

static SLOTS: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

impl PlatformSlot {
    fn acquire() -> PlatformSlot {
        let (count, freed) = &SLOTS;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= MAX_PLATFORMS {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        PlatformSlot
    }
}

impl Drop for PlatformSlot {
    fn drop(&mut self) {
        let (count, freed) = &SLOTS;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// Knobs of the runner for a test: short drains and grace periods keep tests fast.
pub fn runner_env() -> Vec<(&'static str, &'static str)> {
    vec![("OURO_DRAIN_SECONDS", "1"), ("OURO_STOP_GRACE_SECONDS", "3"), ("OURO_BOOT_TIMEOUT_SECONDS", "20")]
}

impl Platform {
    pub fn start() -> Platform {
        Platform::start_with(&runner_env())
    }

    pub fn start_with(runner_env: &[(&str, &str)]) -> Platform {
        Platform::start_with_api(&[], runner_env)
    }

    /// With extra environment for the API (e.g. a small `OURO_MAX_SLUG_BYTES`) and the runner.
    pub fn start_with_api(api_env: &[(&str, &str)], runner_env: &[(&str, &str)]) -> Platform {
        let slot = PlatformSlot::acquire();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let docker = runtime.block_on(async {
            let docker = Docker::connect_with_local_defaults().expect("Docker Engine");
            docker.negotiate_version().await.expect("Docker Engine answers")
        });
        ensure_stack(&runtime, &docker);
        // On every interface: build dynos call the API at the host's Docker bridge address.
        // The router's port is picked first: the API reaches apps of the platform (add-on
        // providers) through it.
        let router_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port for the router");
        let router_url = format!("http://127.0.0.1:{router_port}");
        let mut env = vec![("OURO_LISTEN", "0.0.0.0:0"), ("OURO_ROUTER_URL", router_url.as_str())];
        env.extend_from_slice(api_env);
        let api = Api::start_with(Backend::Sqlite, &env);
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let id = format!("ourotest{}x{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        let mut platform = Platform {
            api,
            id,
            runner: None,
            runner_url: String::new(),
            router: None,
            node_runners: Vec::new(),
            router_addr: String::new(),
            router_tls_addr: String::new(),
            logs: tempfile::tempdir().expect("temp dir"),
            runtime,
            docker,
            _slot: slot,
        };
        platform.start_runner(runner_env, "127.0.0.1:0");
        platform.start_router(&format!("127.0.0.1:{router_port}"), "127.0.0.1:0");
        platform
    }

    fn start_runner(&mut self, extra: &[(&str, &str)], listen: &str) {
        let mut env: Vec<(String, String)> = vec![
            ("OURO_API_URL".into(), self.api.url.clone()),
            ("OURO_API_TOKEN".into(), self.api.token.clone()),
            ("OURO_RUNNER_LISTEN".into(), listen.into()),
            ("OURO_PLATFORM".into(), self.id.clone()),
            ("OURO_RUNNER_STATE".into(), self.logs.path().join("desired-state.json").display().to_string()),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (child, url) = spawn_service("ouro-dyno-runner", &env, &self.logs.path().join("runner.log"));
        self.runner = Some(child);
        self.runner_url = url;
    }

    fn start_router(&mut self, listen: &str, tls_listen: &str) {
        let env = vec![
            ("OURO_ROUTER_LISTEN".to_string(), listen.to_string()),
            ("OURO_ROUTER_TLS_LISTEN".to_string(), tls_listen.to_string()),
            ("OURO_ROUTES_URL".to_string(), format!("{}/routes", self.runner_url)),
            ("OURO_RUNNER_SECRET".to_string(), self.runner_secret()),
        ];
        let (child, url, tls_url) =
            spawn_service_with("ouro-router", &env, &self.logs.path().join("router.log"), Some("tls"));
        self.router = Some(child);
        self.router_addr = url.trim_start_matches("http://").to_string();
        self.router_tls_addr = tls_url.unwrap_or_default().trim_start_matches("https://").to_string();
    }

    /// The secret the runner keeps beside its state file, which its routers show.
    pub fn runner_secret(&self) -> String {
        let file = self.logs.path().join("runner-secret");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("the runner keeps its secret in {}: {e}", file.display()))
    }

    /// Starts the runner of another node of a swarm (`OURO_SWARM=node`: it loads the stack
    /// image from this platform's runner and makes slug images on that node's engine, at
    /// `socket`), with this platform's runner's credentials.
    pub fn start_swarm_node(&mut self, name: &str, socket: &Path) {
        let env: Vec<(String, String)> = vec![
            ("OURO_API_URL".into(), self.api.url.clone()),
            ("OURO_API_TOKEN".into(), self.api.token.clone()),
            ("OURO_RUNNER_LISTEN".into(), "127.0.0.1:0".into()),
            ("OURO_PLATFORM".into(), self.id.clone()),
            ("OURO_RUNNER_STATE".into(), self.logs.path().join(format!("{name}-state.json")).display().to_string()),
            ("OURO_SWARM".into(), "node".into()),
            ("OURO_SWARM_MANAGER_URL".into(), self.runner_url.clone()),
            ("OURO_RUNNER_SECRET".into(), self.runner_secret()),
            ("DOCKER_HOST".into(), format!("unix://{}", socket.display())),
        ];
        let (child, _) = spawn_service("ouro-dyno-runner", &env, &self.logs.path().join(format!("{name}-runner.log")));
        self.node_runners.push(child);
    }

    /// Stops the runner (SIGTERM) and starts a new one on the same address.
    pub fn restart_runner(&mut self) {
        self.stop_runner();
        let listen = self.runner_url.trim_start_matches("http://").to_string();
        let env = runner_env();
        self.start_runner(&env, &listen);
    }

    pub fn restart_router(&mut self) {
        if let Some(mut child) = self.router.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
        let (listen, tls_listen) = (self.router_addr.clone(), self.router_tls_addr.clone());
        self.start_router(&listen, &tls_listen);
    }

    pub fn runner_log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("runner.log")).unwrap_or_default()
    }

    pub fn router_log(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("router.log")).unwrap_or_default()
    }

    /// Creates `app` and releases the directory `dir` (holding `app/...`) as its slug.
    pub fn create_and_deploy(&self, app: &str, dir: &Path, process_types: Value) -> i64 {
        let created = self.api.post("/apps", json!({ "name": app }));
        assert_eq!(created.status, 201, "{:?}", created.body);
        self.deploy(app, dir, process_types)
    }

    /// Releases `dir` as a new slug of `app`; returns the release version.
    pub fn deploy(&self, app: &str, dir: &Path, process_types: Value) -> i64 {
        let slug = self.api.post(&format!("/apps/{app}/slugs"), json!({ "process_types": process_types }));
        assert_eq!(slug.status, 201, "{:?}", slug.body);
        let id = slug.body["id"].as_str().expect("slug id").to_string();
        let path = format!("/apps/{app}/slugs/{id}/blob");
        let (status, body) = self.api.raw("PUT", &path, Some(&self.api.token), Some(&tar_gz(dir)), "application/gzip");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let release = self.api.post(&format!("/apps/{app}/releases"), json!({ "slug": id }));
        assert_eq!(release.status, 201, "{:?}", release.body);
        release.body["version"].as_i64().expect("version")
    }

    /// Waits until the system app of the `kind` add-on provider has built and its web dyno is
    /// up (the API builds it at start: minutes on a first run).
    pub fn wait_for_provider(&self, kind: &str) {
        let app = format!("ouro-{kind}");
        self.wait_until(Duration::from_secs(600), &format!("{app} is built and up"), || {
            let builds = self.api.get(&format!("/apps/{app}/builds")).body;
            let last = builds.as_array().and_then(|b| b.last().cloned()).unwrap_or_default();
            assert_ne!(last["status"], "failed", "{app} failed to build: {}", last["output"]);
            let release = self.api.get(&format!("/apps/{app}")).body["current_release"].as_i64().unwrap_or(0);
            last["status"] == "succeeded" && self.up(&app, "web", release) == 1
        });
    }

    pub fn scale(&self, app: &str, process_type: &str, quantity: i64) {
        let body = json!({"updates": [{"type": process_type, "quantity": quantity}]});
        let answer = self.api.patch(&format!("/apps/{app}/formation"), body);
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }

    /// The dynos of `app` as the API shows them (the runner's last report).
    pub fn dynos(&self, app: &str) -> Vec<Value> {
        self.api.get(&format!("/apps/{app}/dynos")).body.as_array().cloned().unwrap_or_default()
    }

    /// `up` web dynos of `release`, by the API.
    pub fn up(&self, app: &str, process_type: &str, release: i64) -> usize {
        self.dynos(app)
            .iter()
            .filter(|d| d["type"] == process_type && d["state"] == "up" && d["release"] == release)
            .count()
    }

    /// GET through the router with `Host: <app>.localhost`.
    pub fn get(&self, app: &str, path: &str) -> Result<(u16, String), String> {
        http_get(&self.router_addr, &format!("{app}.localhost"), path)
    }

    /// Waits until `check` holds, failing with `what` and the logs after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting until {what}\n--- runner log ---\n{}\n--- router log (tail) ---\n{}",
                    tail(&self.runner_log(), 60),
                    tail(&self.router_log(), 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Containers of this platform: id → (app, name like `web.1`, release, running).
    pub fn containers(&self) -> HashMap<String, (String, String, i64, bool)> {
        self.runtime.block_on(async {
            let label = format!("ouro.platform={}", self.id);
            let filters = HashMap::from([("label", vec![label.as_str()])]);
            let options = bollard::container::ListContainersOptions { all: true, filters, ..Default::default() };
            let list = self.docker.list_containers(Some(options)).await.expect("list containers");
            list.into_iter()
                .map(|c| {
                    let labels = c.labels.unwrap_or_default();
                    let name = format!("{}.{}", labels["ouro.type"], labels["ouro.index"]);
                    let release = labels["ouro.release"].parse().unwrap_or(0);
                    let running = c.state.as_deref() == Some("running");
                    (c.id.unwrap_or_default(), (labels["ouro.app"].clone(), name, release, running))
                })
                .collect()
        })
    }

    /// Runs `script` with bash as the dyno user inside the running dyno `name` (`web.1`) of `app`;
    /// returns its exit code and output.
    pub fn exec(&self, app: &str, name: &str, script: &str) -> (i64, String) {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        use futures_util::StreamExt;
        let id = self
            .containers()
            .into_iter()
            .find(|(_, (a, n, _, running))| a == app && n == name && *running)
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no running {app} {name}"));
        let docker = &self.docker;
        self.block_on(async {
            let options = CreateExecOptions {
                cmd: Some(vec!["bash", "-c", script]),
                user: Some("1000:1000"),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            };
            let exec = docker.create_exec(&id, options).await.expect("create exec").id;
            let mut text = String::new();
            if let StartExecResults::Attached { mut output, .. } =
                docker.start_exec(&exec, None).await.expect("start exec")
            {
                while let Some(Ok(chunk)) = output.next().await {
                    text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                }
            }
            let code = docker.inspect_exec(&exec).await.expect("inspect exec").exit_code.unwrap_or(-1);
            (code, text)
        })
    }

    /// Removes every container of this platform at once (`docker rm -f`): what a host restart
    /// leaves.
    pub fn remove_all_containers(&self) {
        for id in self.containers().into_keys() {
            let options = bollard::container::RemoveContainerOptions { force: true, ..Default::default() };
            let _ = self.block_on(self.docker.remove_container(&id, Some(options)));
        }
    }

    /// Kills a container (SIGKILL), as a crash would.
    pub fn kill_container(&self, id: &str) {
        self.block_on(self.docker.kill_container::<String>(id, None)).expect("kill container");
    }

    /// Stops the runner (SIGTERM); dynos keep running.
    pub fn stop_runner(&mut self) {
        if let Some(mut child) = self.runner.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
    }

    /// Runs a future (a Docker call, say) on this platform's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut self.node_runners);
        for child in [self.router.take(), self.runner.take()].into_iter().flatten().chain(nodes) {
            let mut child = child;
            terminate(&mut child, Duration::from_secs(10));
        }
        self.runtime.block_on(crate::stand_in::remove_platform(&self.docker, &self.id, true));
    }
}

/// Builds the stack images (run and build) once per test process (the first build takes
/// minutes), so that the runners of concurrent tests do not all build them at once.
fn ensure_stack(runtime: &tokio::runtime::Runtime, docker: &Docker) {
    static DONE: OnceLock<Mutex<Option<String>>> = OnceLock::new();
    let done = DONE.get_or_init(|| Mutex::new(None));
    let mut tag = done.lock().unwrap_or_else(|e| e.into_inner());
    if tag.is_none() {
        let built = runtime.block_on(ouro_dyno_runner::stack::ensure_stack_image(docker)).expect("stack image");
        runtime.block_on(ouro_dyno_runner::stack::ensure_build_stack_image(docker)).expect("build stack image");
        *tag = Some(built);
    }
}

/// Copies sample app `name` into the work tree and commits it.
pub fn add_sample(repo: &Repo, name: &str) {
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", sample_app(name).display()))
        .arg(repo.path())
        .output();
    assert!(copied.expect("cp").status.success());
    repo.ok(&["add", "-A"]);
    repo.ok(&["commit", "-q", "-m", &format!("the {name} sample")]);
}

/// A work tree holding sample `sample`, with app `app` created on the platform and its `ouro`
/// remote set up by `ouro apps:create`, as a user would.
pub fn sample_repo(platform: &Platform, cli: &Cli, app: &str, sample: &str) -> Repo {
    let repo = Repo::new(cli);
    add_sample(&repo, sample);
    let created = ok(&cli.run_in(repo.path(), &["apps:create", app]));
    assert!(created.contains("Git remote ouro added"), "{created}");
    assert!(platform.api.get(&format!("/apps/{app}")).status == 200);
    repo
}

/// `git push ouro main` that must succeed; returns what git printed (the build's transcript).
pub fn push(repo: &Repo, args: &[&str]) -> String {
    let mut all = vec!["push", "ouro"];
    all.extend_from_slice(args);
    let out = repo.git(&all);
    let said = stderr(&out);
    println!("--- git {} ---\n{said}", all.join(" "));
    assert!(out.status.success(), "git {all:?} failed:\n{said}");
    said
}

/// What `app` answers at `path` through the router, once it answers 200 with a body
/// containing `expect` (within 2 minutes): the body.
pub fn page(platform: &Platform, app: &str, path: &str, expect: &str) -> String {
    let mut last = String::new();
    platform.wait_until(Duration::from_secs(120), &format!("{app}{path} answers {expect:?} (last: {last})"), || {
        last = match platform.get(app, path) {
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e,
        };
        last.starts_with("200 ") && last.contains(expect)
    });
    last.split_once(' ').map(|(_, body)| body.to_string()).unwrap_or_default()
}

/// Waits until the app answers `/` through the router with a page containing `expect`.
pub fn wait_for_page(platform: &Platform, app: &str, expect: &str) -> String {
    let mut last = String::new();
    platform.wait_until(Duration::from_secs(90), &format!("{app} answers with {expect:?}"), || {
        match platform.get(app, "/") {
            Ok((200, body)) if body.contains(expect) => {
                last = body;
                true
            }
            Ok((status, body)) => {
                last = format!("{status} {body}");
                false
            }
            Err(e) => {
                last = e;
                false
            }
        }
    });
    last
}

/// A sample app under `tests/apps/<name>`.
pub fn sample_app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apps").join(name)
}

/// One GET over a fresh connection; `Err` when the connection fails or breaks.
pub fn http_get(addr: &str, host: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(40))).map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ouro-tests\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `ouro addons:create PLAN -a APP`, which must succeed: the add-on's name.
pub fn create_addon(cli: &Cli, plan: &str, app: &str) -> String {
    let out = cli.run(&["addons:create", plan, "-a", app]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "addons:create {plan}: {said}");
    said.split_whitespace()
        .find(|w| w.starts_with("postgresql-") || w.starts_with("redis-"))
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-').to_string())
        .unwrap_or_else(|| panic!("no add-on name in {said}"))
}
