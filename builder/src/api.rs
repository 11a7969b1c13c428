//! The build's own endpoints of the API, `<OURO_API_URL>/build-api/<build>/*`, called with the
//! build's token and nothing else: GET env, GET source, POST output, PUT slug, POST result.
//!
//! Every call has a timeout, like the socket timeout of the Python builder it replaces: each
//! lookup, connect, read and write must progress within it (60 s; the source 300 s, the slug
//! 900 s). Any answer but 2xx is an error that names the call and the API's message.

use std::fs::File;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use ureq::RequestBuilder;

/// The timeout of a call, unless said otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// The timeout of downloading the pushed tree.
pub const SOURCE_TIMEOUT: Duration = Duration::from_secs(300);
/// The timeout of uploading the slug.
pub const SLUG_TIMEOUT: Duration = Duration::from_secs(900);

/// Attempts at sending one batch of log lines, and the pause after the n-th failure.
const OUTPUT_ATTEMPTS: u32 = 3;
const OUTPUT_PAUSE: Duration = Duration::from_millis(200);
/// Attempts at sending the result, and the pause after the n-th failure (1 s more each time).
const RESULT_ATTEMPTS: u64 = 5;

/// The client of one build's endpoints.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// What the builder reports at its end (`POST result`).
#[derive(Debug, Default, serde::Serialize)]
pub struct BuildResult {
    pub ok: bool,
    pub process_types: std::collections::BTreeMap<String, String>,
    pub buildpacks: Vec<String>,
    pub message: String,
}

impl Api {
    /// The client of build `build_id`'s endpoints under `api_url`, with its `token`.
    pub fn new(api_url: &str, build_id: &str, token: &str) -> Api {
        // A pooled connection idle 5 s is dropped: the API closes idle ones at 10 s
        // (`ouro_types::CLIENT_IDLE_SECONDS`; the builder keeps to std and ureq).
        let config = ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(5))
            .http_status_as_error(false)
            .build();
        Api {
            base: format!("{}/build-api/{build_id}", api_url.trim_end_matches('/')),
            token: token.to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// `GET <path>` as JSON (at most 10 MiB).
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let request = self.agent.get(self.url(path)).header("Authorization", self.bearer());
        let mut response = within(request, TIMEOUT).call().map_err(|e| format!("GET {path}: {e}"))?;
        check("GET", path, &mut response)?;
        response.body_mut().read_json().map_err(|e| format!("GET {path}: {e}"))
    }

    /// `GET <path>` into the file `dest` (created or truncated), streamed.
    pub fn download(&self, path: &str, dest: &Path, timeout: Duration) -> Result<(), String> {
        let request = self.agent.get(self.url(path)).header("Authorization", self.bearer());
        let mut response = within(request, timeout).call().map_err(|e| format!("GET {path}: {e}"))?;
        check("GET", path, &mut response)?;
        let mut file = File::create(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        std::io::copy(&mut response.body_mut().as_reader(), &mut file).map_err(|e| format!("GET {path}: {e}"))?;
        Ok(())
    }

    /// `POST output`: log text, tried [`OUTPUT_ATTEMPTS`] times with short pauses; the last
    /// error when none went through.
    pub fn post_output(&self, text: &str) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match self.post("/output", "text/plain", text.as_bytes()) {
                Ok(()) => return Ok(()),
                Err(e) if attempt == OUTPUT_ATTEMPTS => return Err(e),
                Err(_) => std::thread::sleep(OUTPUT_PAUSE * attempt),
            }
            attempt += 1;
        }
    }

    /// `PUT slug`: the file at `path`, streamed with its Content-Length.
    pub fn put_slug(&self, path: &Path) -> Result<(), String> {
        let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = file.metadata().map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
        let request = self
            .agent
            .put(self.url("/slug"))
            .header("Authorization", self.bearer())
            .header("Content-Type", "application/gzip")
            .header("Content-Length", size.to_string());
        let mut response = within(request, SLUG_TIMEOUT).send(file).map_err(|e| format!("PUT /slug: {e}"))?;
        check("PUT", "/slug", &mut response)?;
        drain(&mut response);
        Ok(())
    }

    /// `POST result`, tried [`RESULT_ATTEMPTS`] times (each failure said on stderr); whether
    /// it went through.
    pub fn post_result(&self, result: &BuildResult) -> bool {
        let Ok(body) = serde_json::to_vec(result) else { return false };
        for attempt in 1..=RESULT_ATTEMPTS {
            match self.post("/result", "application/json", &body) {
                Ok(()) => return true,
                Err(e) => eprintln!("ouro-build: cannot send the result ({e}); retrying"),
            }
            if attempt < RESULT_ATTEMPTS {
                std::thread::sleep(Duration::from_secs(attempt));
            }
        }
        false
    }

    /// `POST <path>` with a small body; the answer's body is read and dropped.
    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<(), String> {
        let request =
            self.agent.post(self.url(path)).header("Authorization", self.bearer()).header("Content-Type", content_type);
        let mut response = within(request, TIMEOUT).send(body).map_err(|e| format!("POST {path}: {e}"))?;
        check("POST", path, &mut response)?;
        drain(&mut response);
        Ok(())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

/// `request` with `timeout` on each step: lookup, connect, every read and every write.
pub fn within<B>(request: RequestBuilder<B>, timeout: Duration) -> RequestBuilder<B> {
    request
        .config()
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .build()
}

/// Ok for a 2xx answer (its body left to read); otherwise an error with the status and the
/// API's message (`{"message": …}` or the text).
fn check(method: &str, path: &str, response: &mut ureq::http::Response<ureq::Body>) -> Result<(), String> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = response.body_mut().as_reader().take(64 * 1024).read_to_string(&mut text);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|body| body["message"].as_str().map(str::to_string))
        .unwrap_or(text);
    Err(format!("{method} {path}: the API answered {status}: {}", message.trim()))
}

/// Reads and drops a short answer's body (so the connection can serve the next call).
fn drain(response: &mut ureq::http::Response<ureq::Body>) {
    let _ = std::io::copy(&mut response.body_mut().as_reader().take(1024 * 1024), &mut std::io::sink());
}
