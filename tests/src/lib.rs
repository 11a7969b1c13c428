//! Harness for Ouro's end-to-end tests: starts the real `ouro-api` binary on a fresh data dir
//! (SQLite) or a fresh PostgreSQL database, talks to it over HTTP, and runs the real `ouro`
//! binary against it. Nothing here fakes a part of the platform.
//!
//! The binaries must be built first (`scripts/test` does: `cargo build --workspace --bins`).
//! PostgreSQL tests need `OURO_TEST_DATABASE_URL` (also set by `scripts/test`).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use serde_json::{Value, json};

pub mod build_box;
pub mod cluster;
pub mod platform;
pub mod stand_in;

/// Runs each scenario once per backend: `on_both_backends!(name, …)` makes, for each
/// `fn name(backend: Backend)` of the file, `mod name { fn sqlite(); fn postgres(); }`, two
/// tests: every API scenario runs on SQLite and on a real PostgreSQL server.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::Backend::Sqlite);
            }
            #[test]
            fn postgres() {
                super::$name($crate::Backend::postgres());
            }
        }
    )*};
}

/// Where the API keeps its state.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A database of its own on the test PostgreSQL server.
    Postgres(String),
}

impl Backend {
    /// A fresh, empty database on the server named by `OURO_TEST_DATABASE_URL`.
    pub fn postgres() -> Backend {
        let server = std::env::var("OURO_TEST_DATABASE_URL")
            .expect("OURO_TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL");
        let name = format!("ouro_test_{}", unique_suffix());
        let out = Command::new("psql")
            .args([server.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "CREATE DATABASE failed: {}", String::from_utf8_lossy(&out.stderr));
        let base = server.rsplit_once('/').map(|(base, _)| base).unwrap_or(&server);
        Backend::Postgres(format!("{base}/{name}"))
    }
}

/// A running `ouro-api` process; stopped (SIGTERM) when dropped.
pub struct Api {
    child: Child,
    pub url: String,
    pub token: String,
    pub data_dir: tempfile::TempDir,
    backend: Backend,
    env: Vec<(String, String)>,
    agent: ureq::Agent,
}

/// An HTTP answer: status and parsed JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Api {
    pub fn start(backend: Backend) -> Api {
        Api::start_with(backend, &[])
    }

    /// Starts with extra environment variables (e.g. a small `OURO_MAX_SLUG_BYTES`). The
    /// shipped add-on providers are off unless `OURO_ADDON_PROVIDERS` is given: they build
    /// their apps at start, which only the add-on tests want.
    pub fn start_with(backend: Backend, env: &[(&str, &str)]) -> Api {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let defaults = [("OURO_ADDON_PROVIDERS", "")];
        let env = defaults.iter().chain(env).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        start_api(data_dir, backend, env)
    }

    /// The API's URL over TLS (the same port speaks both; plain HTTP only from loopback and
    /// the Docker bridge).
    pub fn https_url(&self) -> String {
        self.url.replacen("http://", "https://", 1)
    }

    /// The certificate authority the API made for itself (`OURO_TLS=auto`).
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.path().join("tls/ca.pem")
    }

    /// Stops the process gracefully (SIGTERM) and starts a new one on the same data dir and
    /// database, as an operator restarting the service would.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Starts the process again after [`Api::stop`], on the same data dir, database and address.
    pub fn start_again(&mut self) {
        // Same address as before, so URLs handed out earlier stay valid.
        let listen = self.url.trim_start_matches("http://").to_string();
        let mut env = self.env.clone();
        env.push(("OURO_LISTEN".into(), listen));
        let (child, url) = spawn_api(self.data_dir.path(), &self.backend, &env);
        self.child = child;
        self.url = url;
    }

    /// A second API process on the same data dir and database, on a port of its own: two
    /// processes at once, as during the handover of a self-upgrade. The caller stops it.
    pub fn second_process(&self) -> (Child, String) {
        spawn_api(self.data_dir.path(), &self.backend, &self.env)
    }

    /// Stops the process gracefully (SIGTERM).
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(30));
    }

    /// What the API wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join(API_LOG)).unwrap_or_default()
    }

    /// Tells the process to stop (SIGTERM) without waiting for it, as a handover does.
    pub fn ask_to_stop(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn get(&self, path: &str) -> Answer {
        self.call("GET", path, Some(&self.token), None)
    }
    pub fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, Some(&self.token), None)
    }
    pub fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(&self.token), Some(body.to_string().as_bytes()))
    }
    pub fn patch(&self, path: &str, body: Value) -> Answer {
        self.call("PATCH", path, Some(&self.token), Some(body.to_string().as_bytes()))
    }

    /// Any request: `token` `None` sends no Authorization header; a JSON content type is sent
    /// with every body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&[u8]>) -> Answer {
        let (status, bytes) = self.raw(method, path, token, body, "application/json");
        Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    /// Like [`Api::call`] but returns the raw body and takes a content type.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> (u16, Vec<u8>) {
        let uri = format!("{}{path}", self.url);
        let mut request = ureq::http::Request::builder().method(method).uri(&uri);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => {
                self.agent.run(request.header("Content-Type", content_type).body(body.to_vec()).expect("request"))
            }
            None => self.agent.run(request.body(()).expect("request")),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
        let status = response.status().as_u16();
        let bytes = response.body_mut().with_config().limit(1 << 30).read_to_vec().expect("read body");
        (status, bytes)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_api(data_dir: tempfile::TempDir, backend: Backend, env: Vec<(String, String)>) -> Api {
    let (child, url) = spawn_api(data_dir.path(), &backend, &env);
    let token = std::fs::read_to_string(data_dir.path().join("admin-token"))
        .ok()
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    );
    Api { child, url, token, data_dir, backend, env, agent }
}

/// Spawns `ouro-api` and waits for the line that gives its address.
fn spawn_api(data_dir: &Path, backend: &Backend, env: &[(String, String)]) -> (Child, String) {
    let mut env: Vec<(String, String)> =
        [("OURO_DATA_DIR", data_dir.to_str().expect("utf-8 path")), ("OURO_LISTEN", "127.0.0.1:0")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(env.iter().cloned())
            .collect();
    if let Backend::Postgres(url) = backend {
        env.push(("OURO_DATABASE_URL".into(), url.clone()));
    }
    spawn_service("ouro-api", &env, &data_dir.join(API_LOG))
}

/// Spawns one of the platform's binaries with `env` (and without any inherited `OURO_*`),
/// stderr to `log`, and waits for its `<name> listening on <url>` line.
pub fn spawn_service(name: &str, env: &[(String, String)], log: &Path) -> (Child, String) {
    let (child, url, _) = spawn_service_with(name, env, log, None);
    (child, url)
}

/// [`spawn_service`], also waiting for a second `<name> <extra> listening on <url>` line (the
/// router's `tls` listener) when `extra` is given.
pub fn spawn_service_with(
    name: &str,
    env: &[(String, String)],
    log: &Path,
    extra: Option<&str>,
) -> (Child, String, Option<String>) {
    let mut command = Command::new(binary(name));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OURO_")) {
        command.env_remove(key);
    }
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    command.envs(env.iter().map(|(k, v)| (k, v))).stdout(Stdio::piped()).stderr(Stdio::from(log_file));
    let mut child = command.spawn().unwrap_or_else(|e| panic!("{name} starts: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let prefix = format!("{name} listening on ");
    let extra_prefix = extra.map(|extra| format!("{name} {extra} listening on "));
    // Stdout goes to the log too (the router logs its requests there).
    let mut copy = std::fs::OpenOptions::new().append(true).open(log).expect("log file");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // One write per line: `writeln!` writes the line and its newline apart, and the
            // process's stderr, appended to the same file, could come in between (a CLI test
            // then read a fingerprint with a log line glued to it).
            let _ = copy.write_all(
                format!(
                    "{line}
"
                )
                .as_bytes(),
            );
            if let Some(url) = line.strip_prefix(&prefix) {
                let _ = tx.send((false, url.to_string()));
            } else if let Some(url) = extra_prefix.as_deref().and_then(|p| line.strip_prefix(p)) {
                let _ = tx.send((true, url.to_string()));
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut url, mut extra_url) = (None, None);
    while url.is_none() || (extra.is_some() && extra_url.is_none()) {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok((false, found)) => url = Some(found),
            Ok((true, found)) => extra_url = Some(found),
            Err(_) => break,
        }
    }
    match url {
        Some(url) if extra.is_none() || extra_url.is_some() => (child, url, extra_url),
        _ => {
            let _ = child.kill();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{name} did not report its address within 60 s; its log:\n{log}");
        }
    }
}

/// SIGTERM, then SIGKILL if it is still there after `grace`.
pub fn terminate(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + grace;
        while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The API's stderr, appended across restarts, inside its data dir.
const API_LOG: &str = "api.log";

/// Path of a workspace binary built next to this test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test does)",
        path.display()
    );
    path
}

/// The `ouro` CLI with its own config dir, logged out until [`Cli::login`].
pub struct Cli {
    pub config_dir: tempfile::TempDir,
    /// The API's `https://` URL: the CLI talks to it over TLS, as from another machine.
    pub api_url: String,
    /// The API's own certificate authority, which `login` trusts (`--ca-file`).
    pub ca_file: PathBuf,
}

impl Cli {
    pub fn new(api: &Api) -> Cli {
        Cli { config_dir: tempfile::tempdir().expect("temp dir"), api_url: api.https_url(), ca_file: api.ca_file() }
    }

    /// `login` with `--api` and `--ca-file`, then `more`.
    pub fn login_args<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["login", "--api", &self.api_url, "--ca-file", self.ca_file.to_str().expect("UTF-8 path")];
        args.extend_from_slice(more);
        args
    }

    /// `ouro login --api URL` with the token on stdin, as a person pasting it would.
    pub fn login(&self, token: &str) -> Output {
        self.run_with_stdin(&self.login_args(&[]), &format!("{token}\n"), None)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "", None)
    }

    /// Runs with `stdin` as its standard input (what a person would type at its prompts).
    pub fn run_input(&self, args: &[&str], stdin: &str) -> Output {
        self.run_with_stdin(args, stdin, None)
    }

    /// Runs in `dir` (for the git remote lookup).
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.run_with_stdin(args, "", Some(dir))
    }

    /// The `ouro` command with `args` as this CLI runs it, to spawn (a client left running).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("ouro"));
        command
            .args(args)
            .env("OURO_CONFIG_DIR", self.config_dir.path())
            .env_remove("OURO_API_URL")
            .env_remove("OURO_API_TOKEN");
        command
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str, dir: Option<&Path>) -> Output {
        let mut command = self.command(args);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("ouro runs");
        child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("write stdin");
        child.wait_with_output().expect("ouro finishes")
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts success and returns stdout; shows both streams otherwise.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

/// Builds a real slug: a tar.gz of `files` (path → content) made by the `tar` command.
pub fn make_slug(files: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    tar_gz(dir.path())
}

/// `tar czf - -C dir .`
pub fn tar_gz(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar").args(["czf", "-", "-C"]).arg(dir).arg(".").output().expect("tar runs");
    assert!(out.status.success(), "tar failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Hex SHA-256 by the `sha256sum` command, independent of the API's own hashing.
pub fn sha256sum(bytes: &[u8]) -> String {
    let mut child =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum runs");
    child.stdin.take().expect("stdin").write_all(bytes).expect("write");
    let out = child.wait_with_output().expect("sha256sum finishes");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

/// A self-signed certificate and its unencrypted PKCS#8 key, both PEM, made by the `openssl`
/// command (ECDSA P-256, valid 30 days): for `/CN=cn`, with `subjectAltName=san` if given
/// (such as `DNS:www.example.com,DNS:example.com`).
pub fn openssl_certificate(cn: &str, san: Option<&str>) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let mut command = Command::new("openssl");
    command
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    if let Some(san) = san {
        command.arg("-addext").arg(format!("subjectAltName={san}"));
    }
    let out = command.output().expect("openssl runs");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    (std::fs::read_to_string(cert).expect("cert"), std::fs::read_to_string(key).expect("key"))
}

fn unique_suffix() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}_{nanos}", std::process::id())
}

/// A work tree with its own git configuration, isolated from the machine's.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub config_dir: PathBuf,
}

impl Repo {
    pub fn new(cli: &Cli) -> Repo {
        let repo = Repo {
            dir: tempfile::tempdir().expect("temp dir"),
            home: tempfile::tempdir().expect("temp dir"),
            config_dir: cli.config_dir.path().to_path_buf(),
        };
        repo.ok(&["init", "-q", "--initial-branch=main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn git(&self, args: &[&str]) -> Output {
        let ouro_dir = binary("ouro").parent().expect("bin dir").to_path_buf();
        let path = std::env::join_paths(
            std::iter::once(ouro_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )
        .expect("PATH");
        let mut command = Command::new("git");
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OURO_") || k.starts_with("GIT_")) {
            command.env_remove(key);
        }
        command
            .args(args)
            .current_dir(self.path())
            .env("PATH", path)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("OURO_CONFIG_DIR", &self.config_dir);
        command.output().expect("git runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.git(args);
        assert!(out.status.success(), "git {args:?} failed\nstdout: {}\nstderr: {}", stdout(&out), stderr(&out));
        stdout(&out).trim().to_string()
    }

    /// Writes a file and commits it; returns the new commit id.
    pub fn commit(&self, file: &str, content: &str) -> String {
        let path = self.path().join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
        self.ok(&["add", "-A"]);
        self.ok(&["commit", "-q", "-m", &format!("change {file}")]);
        self.ok(&["rev-parse", "HEAD"])
    }
}

/// A CLI logged in to `api` with its admin token.
pub fn logged_in(api: &Api) -> Cli {
    let cli = Cli::new(api);
    ok(&cli.login(&api.token));
    cli
}
