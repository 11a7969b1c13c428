//! The HTTP side of the CLI: one authenticated request per call, answers as JSON values, and
//! error bodies turned into [`CliError`]s.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ureq::http::{Response, StatusCode};
use ureq::{Agent, Body};

use ouro_types::ErrorBody;

use crate::credentials::Credentials;
use crate::error::CliError;

const TIMEOUT: Duration = Duration::from_secs(60);
/// A slug upload may be hundreds of MiB over a slow link.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub struct Client {
    agent: Agent,
    base: String,
    token: String,
}

impl Client {
    pub fn new(credentials: &Credentials) -> Self {
        Self::with_timeout(credentials, TIMEOUT)
    }

    /// A client whose requests may each take up to `timeout` (a backup, a restore).
    pub fn with_timeout(credentials: &Credentials, timeout: Duration) -> Self {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(der) = credentials.ca_cert.as_deref().and_then(|pem| crate::trust::parse_pem(pem, "").ok()) {
            let root = ureq::tls::Certificate::from_der(der.as_ref()).to_owned();
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&[root]));
        }
        let config = Agent::config_builder()
            .tls_config(tls.build())
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("ouro-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            agent: Agent::new_with_config(config),
            base: credentials.api_url.trim_end_matches('/').to_string(),
            token: credentials.token.clone(),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, CliError> {
        let answer = self.agent.get(self.url(path)).header("Authorization", self.bearer()).call();
        self.finish(answer)
    }

    /// `GET`s a text answer (a PEM file).
    pub fn get_text(&self, path: &str) -> Result<String, CliError> {
        let answer = self.agent.get(self.url(path)).call();
        let mut response = answer.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().map_err(|e| self.unreachable(e))?;
        if status.is_client_error() || status.is_server_error() {
            return Err(api_error(status, &text));
        }
        Ok(text)
    }

    pub fn delete(&self, path: &str) -> Result<Value, CliError> {
        let answer = self.agent.delete(self.url(path)).header("Authorization", self.bearer()).call();
        self.finish(answer)
    }

    pub fn post(&self, path: &str, body: &impl Serialize) -> Result<Value, CliError> {
        let request = self.agent.post(self.url(path)).header("Authorization", self.bearer());
        self.finish(request.send_json(body))
    }

    /// `POST`s no body.
    pub fn post_empty(&self, path: &str) -> Result<Value, CliError> {
        let request = self.agent.post(self.url(path)).header("Authorization", self.bearer());
        self.finish(request.send_empty())
    }

    /// `POST`s `body` with `authorization` as the `Authorization` header instead of the
    /// token's (a password login), or with none (an invitation's code is in the body).
    pub fn post_authorized(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &impl Serialize,
    ) -> Result<Value, CliError> {
        let mut request = self.agent.post(self.url(path));
        if let Some(authorization) = authorization {
            request = request.header("Authorization", authorization);
        }
        self.finish(request.send_json(body))
    }

    pub fn patch(&self, path: &str, body: &impl Serialize) -> Result<Value, CliError> {
        let request = self.agent.patch(self.url(path)).header("Authorization", self.bearer());
        self.finish(request.send_json(body))
    }

    pub fn put_json(&self, path: &str, body: &impl Serialize) -> Result<Value, CliError> {
        let request = self.agent.put(self.url(path)).header("Authorization", self.bearer());
        self.finish(request.send_json(body))
    }

    /// `PUT`s `body` to `url` (absolute, as the API hands out blob URLs, or a path on the
    /// API) with the token: slug uploads.
    pub fn put_bytes(&self, url: &str, content_type: &str, body: &[u8]) -> Result<Value, CliError> {
        let url = if url.starts_with('/') { self.url(url) } else { url.to_string() };
        let response = self
            .agent
            .put(&url)
            .header("Authorization", self.bearer())
            .header("Content-Type", content_type)
            .config()
            .timeout_global(Some(UPLOAD_TIMEOUT))
            .build()
            .send(body)
            .map_err(|e| CliError::local(format!("cannot upload to {url}: {}", reason(e))))?;
        self.finish(Ok(response))
    }

    /// `GET`s `path` and hands each piece of the body to `each` as it arrives (a log that is
    /// followed never ends): no overall timeout when `open_ended`, only for the answer to
    /// begin.
    pub fn stream(
        &self,
        path: &str,
        open_ended: bool,
        mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        use std::io::Read;
        let request = self.agent.get(self.url(path)).header("Authorization", self.bearer());
        let overall = if open_ended { None } else { Some(TIMEOUT) };
        let request = request.config().timeout_global(overall).timeout_recv_response(Some(TIMEOUT)).build();
        let mut response = request.call().map_err(|e| self.unreachable(e))?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let text = response.body_mut().read_to_string().map_err(|e| self.unreachable(e))?;
            return Err(api_error(status, &text));
        }
        let mut body = response.into_body().into_reader();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buffer).map_err(|e| CliError::local(format!("the log stream broke: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            // A closed stdout (`ouro logs | head`) ends the command quietly.
            if each(&buffer[..n]).is_err() {
                return Ok(());
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn finish(&self, answer: Result<Response<Body>, ureq::Error>) -> Result<Value, CliError> {
        let mut response = answer.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().map_err(|e| self.unreachable(e))?;
        if status.is_client_error() || status.is_server_error() {
            return Err(api_error(status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| CliError::local(format!("the API at {} answered with bad JSON: {e}", self.base)))
    }

    fn unreachable(&self, error: ureq::Error) -> CliError {
        let reason = reason(error);
        // A certificate this CLI does not trust: say how it comes to trust it.
        let hint = if reason.contains("certificate") {
            " (`ouro login --api URL` shows its fingerprint to trust, or takes --ca-file)"
        } else {
            ""
        };
        CliError::local(format!("cannot reach the Ouro API at {}: {reason}{hint}", self.base))
    }
}

fn reason(error: ureq::Error) -> String {
    match error {
        ureq::Error::Io(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// The error body's `message`, or the status itself when the body is not an [`ErrorBody`]
/// (a proxy's HTML page, say).
fn api_error(status: StatusCode, body: &str) -> CliError {
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(error) => error.message,
        Err(_) => format!("the API answered {status}"),
    };
    CliError::Api { status: status.as_u16(), message }
}

/// Reads a JSON value as one of the wire types.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| CliError::local(format!("unexpected answer from the API: {e}")))
}

/// `/apps/{app}{tail}`, with the app name escaped so that odd `-a` values cannot change the
/// route.
pub fn app_path(app: &str, tail: &str) -> String {
    format!("/apps/{}{tail}", segment(app))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        let cases = [("demo", "demo"), ("v3", "v3"), ("a/b", "a%2Fb"), ("a b?", "a%20b%3F"), ("é", "%C3%A9")];
        for (raw, expect) in cases {
            assert_eq!(segment(raw), expect, "input {raw:?}");
        }
        assert_eq!(app_path("demo", "/formation"), "/apps/demo/formation");
    }

    #[test]
    fn error_bodies() {
        let body = r#"{"id":"invalid_params","message":"app name `Bad` is invalid"}"#;
        let error = api_error(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert!(matches!(error, CliError::Api { status: 422, .. }));
        assert_eq!(error.to_string(), "app name `Bad` is invalid");
        let error = api_error(StatusCode::BAD_GATEWAY, "<html>");
        assert_eq!(error.to_string(), "the API answered 502 Bad Gateway");
    }
}
