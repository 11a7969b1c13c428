//! For tests of the dyno runner alone: a runner process against a stand-in for the API that the
//! test writes (it serves a desired state and records what the runner sends), and the pieces
//! such a stand-in needs: reading one HTTP request, answering it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::{spawn_service, terminate};

/// The token the runner under test sends; a stand-in checks it.
pub const TOKEN: &str = "runner-token-for-the-test";

/// One request a stand-in API read: its method, path, headers and body.
pub struct Request {
    pub method: String,
    pub path: String,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The header `name` (any case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Whether it carries the runner's token.
    pub fn authorized(&self) -> bool {
        self.header("authorization") == Some(&format!("Bearer {TOKEN}"))
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// Reads one request (head and `Content-Length` body) within 10 s; `None` when the connection
/// ends or breaks first.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let _ = reader.get_ref().set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => head.push(line.trim_end().to_string()),
        }
    }
    let first = head.first().cloned().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let headers = head
        .iter()
        .skip(1)
        .filter_map(|h| h.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let mut request = Request { method, path, headers, body: Vec::new() };
    let length: usize = request.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    request.body = vec![0; length];
    reader.read_exact(&mut request.body).ok()?;
    Some(request)
}

/// Writes a JSON answer (or none, for 204) and lets the connection close.
pub fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        422 => "Unprocessable Entity",
        _ => "Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A dyno runner under test, its state and log in a temp dir, on platform label `platform`
/// (whose containers and networks are removed when dropped).
pub struct RunnerUnderTest {
    child: Option<Child>,
    pub url: String,
    pub platform: String,
    dir: tempfile::TempDir,
    api_url: String,
    pub runtime: tokio::runtime::Runtime,
    pub docker: bollard::Docker,
}

impl RunnerUnderTest {
    /// Starts a runner against the stand-in at `api_url`, with the stack image built first
    /// (once, here, rather than by the runner mid-test).
    pub fn start(api_url: &str, platform: &str) -> RunnerUnderTest {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let docker = runtime.block_on(async {
            let docker = bollard::Docker::connect_with_local_defaults().expect("Docker Engine");
            docker.negotiate_version().await.expect("Docker Engine answers")
        });
        runtime.block_on(ouro_dyno_runner::stack::ensure_stack_image(&docker)).expect("stack image");
        let mut runner = RunnerUnderTest {
            child: None,
            url: String::new(),
            platform: platform.to_string(),
            dir: tempfile::tempdir().expect("temp dir"),
            api_url: api_url.to_string(),
            runtime,
            docker,
        };
        runner.spawn("127.0.0.1:0");
        runner
    }

    fn spawn(&mut self, listen: &str) {
        let env: Vec<(String, String)> = [
            ("OURO_API_URL", self.api_url.as_str()),
            ("OURO_API_TOKEN", TOKEN),
            ("OURO_RUNNER_LISTEN", listen),
            ("OURO_PLATFORM", self.platform.as_str()),
            ("OURO_RUNNER_STATE", &self.dir.path().join("desired-state.json").display().to_string()),
            ("OURO_DRAIN_SECONDS", "1"),
            ("OURO_STOP_GRACE_SECONDS", "3"),
            ("OURO_BOOT_TIMEOUT_SECONDS", "60"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (child, url) = spawn_service("ouro-dyno-runner", &env, &self.dir.path().join("runner.log"));
        self.child = Some(child);
        self.url = url;
    }

    /// The secret the runner keeps beside its state file (`POST /logs` needs it).
    pub fn secret(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runner-secret")).expect("the runner's secret")
    }

    /// SIGTERM (its dynos keep running), then a new runner on the same address.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(30));
        }
        let listen = self.url.trim_start_matches("http://").to_string();
        self.spawn(&listen);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("runner.log")).unwrap_or_default()
    }

    /// This runner's containers (`all`: stopped ones too).
    pub fn containers(&self, all: bool) -> Vec<bollard::models::ContainerSummary> {
        let label = format!("ouro.platform={}", self.platform);
        let filters = HashMap::from([("label", vec![label.as_str()])]);
        let options = bollard::container::ListContainersOptions { all, filters, ..Default::default() };
        self.runtime.block_on(self.docker.list_containers(Some(options))).expect("list containers")
    }

    /// Waits until `check` holds, failing with `what` and the runner's log after `timeout`.
    pub fn wait_until(&self, timeout: Duration, what: &str, check: impl FnMut() -> bool) {
        self.wait_until_showing(timeout, what, check, String::new)
    }

    /// [`Self::wait_until`], and a failure shows `seen` too (what the test saw meanwhile).
    pub fn wait_until_showing(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> bool,
        seen: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting until {what}\n{}\n--- runner log ---\n{}",
                seen(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RunnerUnderTest {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
        self.runtime.block_on(remove_platform(&self.docker, &self.platform, false));
    }
}

/// Removes every container and network of platform label `platform` (and its volumes when
/// `volumes`): what a test leaves behind.
pub async fn remove_platform(docker: &bollard::Docker, platform: &str, volumes: bool) {
    let label = format!("ouro.platform={platform}");
    let filters = HashMap::from([("label", vec![label.as_str()])]);
    let options =
        bollard::container::ListContainersOptions { all: true, filters: filters.clone(), ..Default::default() };
    for c in docker.list_containers(Some(options)).await.unwrap_or_default() {
        let remove = bollard::container::RemoveContainerOptions { force: true, ..Default::default() };
        let _ = docker.remove_container(&c.id.unwrap_or_default(), Some(remove)).await;
    }
    let options = bollard::network::ListNetworksOptions { filters: filters.clone() };
    for n in docker.list_networks(Some(options)).await.unwrap_or_default() {
        let _ = docker.remove_network(&n.id.unwrap_or_default()).await;
    }
    if volumes {
        let options = bollard::volume::ListVolumesOptions { filters };
        let listed = docker.list_volumes(Some(options)).await.ok().and_then(|v| v.volumes).unwrap_or_default();
        for v in listed {
            let _ = docker.remove_volume(&v.name, None).await;
        }
    }
}
