//! The provider's client of the Platform API (`OURO_API_URL`, bearer `OURO_API_TOKEN`): the
//! calls that make, configure, scale, release and delete server apps. Blocking `ureq`, run on
//! tokio's blocking pool.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;

use crate::error::Error;

/// How long one call may take, from connecting to the last byte of the answer.
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (apps, releases and config vars are a few KiB).
const ANSWER_CAP: u64 = 1 << 20;
/// How much of an error answer is read for its `message`.
const ERROR_CAP: u64 = 64 << 10;

#[derive(Clone)]
pub struct Platform {
    agent: ureq::Agent,
    url: String,
    authorization: String,
}

impl Platform {
    /// A client of the API at `url` (no trailing `/`) with the bearer `token`.
    pub fn new(url: &str, token: &str) -> Platform {
        let config = ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(API_TIMEOUT))
            .build();
        Platform {
            agent: ureq::Agent::new_with_config(config),
            url: url.trim_end_matches('/').to_string(),
            authorization: format!("Bearer {token}"),
        }
    }

    /// One call: the answer's JSON (`Null` for an empty body). Its errors say
    /// `<METHOD> <path>: <status> <message>` with the API's status (502 when that is not an
    /// error status), or 503 when the API cannot be reached.
    pub async fn call(&self, method: &'static str, path: &str, body: Option<Value>) -> Result<Value, Error> {
        Ok(self.run(method, path, body, false).await?.unwrap_or(Value::Null))
    }

    /// [`Platform::call`], with a 404 as `None`: what is asked for is gone.
    pub async fn call_or_missing(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Option<Value>, Error> {
        self.run(method, path, body, true).await
    }

    /// The call, on tokio's blocking pool.
    async fn run(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
        ok_missing: bool,
    ) -> Result<Option<Value>, Error> {
        let (platform, path) = (self.clone(), path.to_string());
        tokio::task::spawn_blocking(move || platform.call_blocking(method, &path, body, ok_missing))
            .await
            .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{method}: {e}")))?
    }

    fn call_blocking(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
        ok_missing: bool,
    ) -> Result<Option<Value>, Error> {
        let unreachable = |e: &dyn std::fmt::Display| {
            Error::new(StatusCode::SERVICE_UNAVAILABLE, format!("{method} {path}: the API cannot be reached ({e})"))
        };
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("Authorization", &self.authorization)
            .header("Accept", "application/json");
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request.body(body.map(|b| b.to_string()).unwrap_or_default()).map_err(|e| unreachable(&e))?;
        let mut response = self.agent.run(request).map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            if ok_missing && status == 404 {
                return Ok(None);
            }
            let text = response.body_mut().with_config().limit(ERROR_CAP).read_to_string().unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(String::from))
                .unwrap_or_default();
            return Err(Error::from_code(status, format!("{method} {path}: {status} {message}").trim_end()));
        }
        let text = response.body_mut().with_config().limit(ANSWER_CAP).read_to_string().map_err(|e| unreachable(&e))?;
        if text.is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::new(StatusCode::BAD_GATEWAY, format!("{method} {path}: the API answered something not JSON ({e})"))
        })
    }
}
