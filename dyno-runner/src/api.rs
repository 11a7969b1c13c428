//! The runner's calls to the Platform API: read the desired state, fetch slugs, report dynos,
//! ship log lines. Blocking HTTP (ureq) on tokio's blocking pool; every call has a timeout.

use std::os::unix::ffi::OsStringExt as _;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use ouro_types::{DesiredState, DynoReport};

use crate::{Error, Result};

#[derive(Clone)]
pub struct ApiClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> ApiClient {
        let config = ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .timeout_connect(Some(Duration::from_secs(5)))
            // An API that takes the connection but does not answer (hung, or not the API at
            // all) must not hold the loop for two minutes.
            .timeout_recv_response(Some(ANSWER_TIMEOUT))
            .build();
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            agent: ureq::Agent::new_with_config(config),
        }
    }

    pub async fn desired_state(&self) -> Result<DesiredState> {
        let url = format!("{}/runner/desired-state", self.base);
        let bytes = self.blocking(move |this| this.get(&url, 16 << 20)).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Api(format!("bad desired state: {e}")))
    }

    /// Waits (up to about 25 s, the API's long poll) until the desired state's version differs
    /// from `after`; returns the version then.
    pub async fn changes(&self, after: u64) -> Result<u64> {
        let url = format!("{}/runner/changes?after={after}", self.base);
        let bytes = self.blocking(move |this| this.get_within(&url, 4096, LONG_POLL_TIMEOUT)).await?;
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Api(format!("bad changes answer: {e}")))?;
        answer["version"].as_u64().ok_or_else(|| Error::Api("changes answer without a version".into()))
    }

    /// The slug's tar.gz (up to 1 GiB), checked against `checksum` (`SHA256:<hex>`): from the
    /// API (`http(s)://`, with the token) or from a file on this host (`file:///absolute/path`:
    /// the bootstrap desired state of `ouro up` names one, before any API runs).
    pub async fn slug(&self, url: &str, checksum: &str) -> Result<bytes::Bytes> {
        let (url, checksum) = (url.to_string(), checksum.to_string());
        self.blocking(move |this| {
            let bytes = match slug_source(&url)? {
                SlugSource::Http => this.get(&url, MAX_SLUG_BYTES)?,
                SlugSource::File(path) => read_slug_file(&path)?,
            };
            check_checksum(&url, &bytes, &checksum)?;
            Ok(bytes.into())
        })
        .await
    }

    pub async fn report(&self, report: &DynoReport) -> Result<()> {
        let url = format!("{}/runner/dynos", self.base);
        let body = serde_json::to_vec(report).map_err(|e| Error::Api(e.to_string()))?;
        self.blocking(move |this| {
            let mut response = this
                .agent
                .put(&url)
                .header("Authorization", format!("Bearer {}", this.token))
                .header("Content-Type", "application/json")
                .send(&body[..])
                .map_err(|e| Error::Api(format!("PUT {url}: {e}")))?;
            check(&url, &mut response)?;
            Ok(Vec::<u8>::new())
        })
        .await?;
        Ok(())
    }

    /// `POST /runner/logs` with `body` (a JSON array of log lines), within [`LOG_TIMEOUT`].
    /// An error is worth retrying (the API is away, or answered 5xx, 401/403, 408 or 429).
    pub async fn ship_logs(&self, body: bytes::Bytes) -> Result<Shipped> {
        let url = format!("{}/runner/logs", self.base);
        self.blocking(move |this| {
            let mut response = this
                .agent
                .post(&url)
                .config()
                .timeout_global(Some(LOG_TIMEOUT))
                .build()
                .header("Authorization", format!("Bearer {}", this.token))
                .header("Content-Type", "application/json")
                .send(&body[..])
                .map_err(|e| Error::Api(format!("POST {url}: {e}")))?;
            let status = response.status().as_u16();
            let mut failure =
                || check(&url, &mut response).err().unwrap_or_else(|| Error::Api(format!("{url} answered {status}")));
            match status {
                200..=299 => Ok(Shipped::Accepted),
                404 | 405 => Ok(Shipped::NoEndpoint),
                401 | 403 | 408 | 429 | 500.. => Err(failure()),
                _ => Ok(Shipped::Rejected(failure().to_string())),
            }
        })
        .await
    }

    fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        self.get_within(url, limit, ANSWER_TIMEOUT)
    }

    /// A GET whose answer must start within `answer`.
    fn get_within(&self, url: &str, limit: u64, answer: Duration) -> Result<Vec<u8>> {
        let mut response = self
            .agent
            .get(url)
            .config()
            .timeout_recv_response(Some(answer))
            .build()
            .header("Authorization", format!("Bearer {}", self.token))
            .call()
            .map_err(|e| Error::Api(format!("GET {url}: {e}")))?;
        check(url, &mut response)?;
        response.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| Error::Api(format!("GET {url}: {e}")))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&ApiClient) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || call(&this)).await.map_err(|e| Error::Api(e.to_string()))?
    }
}

/// How the API took a batch of log lines.
#[derive(Debug, PartialEq, Eq)]
pub enum Shipped {
    Accepted,
    /// 404/405: an API older than logs.
    NoEndpoint,
    /// Another 4xx: this batch will never do (the reason); sending it again would stop the rest.
    Rejected(String),
}

/// The longest a log shipment may take.
const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the API may take to start answering a request (but the long poll).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);
/// The API holds `GET /runner/changes` for about 25 s.
const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(40);

/// The largest slug tar.gz the runner takes.
const MAX_SLUG_BYTES: u64 = 1 << 30;

/// Where a slug comes from.
#[derive(Debug, PartialEq, Eq)]
enum SlugSource {
    Http,
    File(PathBuf),
}

/// `http://` and `https://` URLs are the API's; `file:///absolute/path` (or
/// `file://localhost/...`, percent-encoded as RFC 8089 says) names a file on this host.
fn slug_source(url: &str) -> Result<SlugSource> {
    let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => Ok(SlugSource::Http),
        Some("file") => {
            let rest = &url["file://".len()..];
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(Error::Slug(format!("{url}: a file:// slug URL names an absolute path (file:///...)")));
            }
            let decoded =
                percent_decode(path).ok_or_else(|| Error::Slug(format!("{url}: bad percent-encoding in the path")))?;
            Ok(SlugSource::File(PathBuf::from(std::ffi::OsString::from_vec(decoded))))
        }
        _ => Err(Error::Slug(format!("{url}: slug URLs are http://, https:// or file:///absolute/path"))),
    }
}

/// `%XX` sequences decoded; `None` for a `%` not followed by two hex digits.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn read_slug_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let read = |e: std::io::Error| Error::Slug(format!("cannot read {}: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_SLUG_BYTES {
        return Err(Error::Slug(format!("{} is larger than {} MiB", path.display(), MAX_SLUG_BYTES >> 20)));
    }
    std::fs::read(path).map_err(read)
}

/// The slug must be the one the release names: its image is named by that checksum.
fn check_checksum(url: &str, bytes: &[u8], checksum: &str) -> Result<()> {
    let actual = hex::encode(Sha256::digest(bytes));
    let expected = checksum.strip_prefix("SHA256:").unwrap_or(checksum);
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(Error::Slug(format!("{url} has checksum SHA256:{actual}, not the release's {checksum}")));
    }
    Ok(())
}

fn check(url: &str, response: &mut ureq::http::Response<ureq::Body>) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let message = serde_json::from_str::<ouro_types::ErrorBody>(&body).map(|e| e.message).unwrap_or(body);
    Err(Error::Api(format!("{url} answered {status}: {message}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_urls_are_the_apis_or_local_files() {
        let check = |url: &str, expect: Result<SlugSource, &str>| {
            let got = slug_source(url).map_err(|e| e.to_string());
            match expect {
                Ok(source) => assert_eq!(got.ok(), Some(source), "{url}"),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{url}: {got:?}"),
            }
        };
        check("http://127.0.0.1:7700/apps/a/slugs/s/blob", Ok(SlugSource::Http));
        check("HTTPS://api.example/slug", Ok(SlugSource::Http));
        check("file:///var/lib/ouro/slug.tgz", Ok(SlugSource::File("/var/lib/ouro/slug.tgz".into())));
        check("file://localhost/srv/slug.tgz", Ok(SlugSource::File("/srv/slug.tgz".into())));
        check("file:///srv/my%20slugs/a.tgz", Ok(SlugSource::File("/srv/my slugs/a.tgz".into())));
        check("file://relative/slug.tgz", Err("absolute path"));
        check("file:///bad%2", Err("percent-encoding"));
        check("ftp://host/slug.tgz", Err("http://, https:// or file://"));
        check("/srv/slug.tgz", Err("http://, https:// or file://"));
    }

    /// How `POST /runner/logs` answers map: taken, no endpoint (an older API), refused for
    /// good, or worth retrying; with the runner's token.
    #[tokio::test]
    async fn log_shipments_read_the_apis_answer() {
        use axum::http::{HeaderMap, StatusCode};
        let answers = |status: StatusCode| {
            axum::Router::new().route(
                "/runner/logs",
                axum::routing::post(move |headers: HeaderMap| async move {
                    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    if token == "Bearer secret" { status } else { StatusCode::UNAUTHORIZED }
                }),
            )
        };
        let serve = |router: axum::Router| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });
            ApiClient::new(&format!("http://{addr}"), "secret")
        };
        let body = bytes::Bytes::from_static(b"[]");
        let api = serve(answers(StatusCode::NO_CONTENT)).await;
        assert_eq!(api.ship_logs(body.clone()).await.unwrap(), Shipped::Accepted);
        let api = serve(axum::Router::new()).await;
        assert_eq!(api.ship_logs(body.clone()).await.unwrap(), Shipped::NoEndpoint);
        let api = serve(answers(StatusCode::UNPROCESSABLE_ENTITY)).await;
        assert!(matches!(api.ship_logs(body.clone()).await, Ok(Shipped::Rejected(why)) if why.contains("422")));
        let api = serve(answers(StatusCode::SERVICE_UNAVAILABLE)).await;
        assert!(api.ship_logs(body.clone()).await.is_err(), "retried");
        let api = ApiClient::new("http://127.0.0.1:1", "secret");
        assert!(api.ship_logs(body).await.is_err(), "no API: retried");
    }

    #[test]
    fn a_slug_file_must_match_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slug.tgz");
        std::fs::write(&path, b"slug bytes").unwrap();
        let bytes = read_slug_file(&path).unwrap();
        let sum = format!("SHA256:{}", hex::encode(Sha256::digest(b"slug bytes")));
        assert!(check_checksum("file:///x", &bytes, &sum).is_ok());
        assert!(check_checksum("file:///x", &bytes, &sum.to_ascii_uppercase()).is_ok(), "hex in either case");
        let wrong = format!("SHA256:{}", "0".repeat(64));
        let error = check_checksum("file:///x", &bytes, &wrong).unwrap_err().to_string();
        assert!(error.contains("not the release's SHA256:000"), "{error}");
        let missing = read_slug_file(&dir.path().join("gone.tgz")).unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
    }
}
