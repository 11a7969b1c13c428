//! Following the route table the dyno runner serves.
//!
//! `GET {routes_url}?after=N` is a long poll: the server answers once its table version differs
//! from N, or with the current table when its hold time ends. Each new version is compiled and
//! swapped in atomically. Failures back off up to a cap and leave the last table in place: the
//! control plane may be down while apps keep serving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ouro_types::RouteTable;

use crate::State;
use crate::error::error_chain;
use crate::table::Table;

/// Route tables larger than this are refused (a table is a few hundred bytes per app).
const MAX_TABLE_BYTES: usize = 32 * 1024 * 1024;
/// First retry delay after a failure; doubles up to `Config::routes_retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// A source that answers an unchanged table faster than this is not long-polling: pace it.
const MIN_UNCHANGED_INTERVAL: Duration = Duration::from_millis(500);
/// While failing, repeat the warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Runs until aborted.
pub(crate) async fn follow_routes(state: Arc<State>, routes_url: Uri) {
    let client: Client<HttpConnector, Empty<Bytes>> = control_client(state.config.connect_timeout);
    let authorization = crate::runner_authorization(&state.config);

    let mut delay = FIRST_RETRY;
    let mut failing_since: Option<Instant> = None;
    let mut last_warning = Instant::now();
    loop {
        let current = state.table.load();
        let after = if current.loaded { Some(current.version) } else { None };
        drop(current);
        let asked = Instant::now();
        let result = tokio::time::timeout(
            state.config.routes_poll_timeout,
            fetch(&client, &routes_url, after, authorization.as_ref()),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within the poll timeout".to_string()));
        match result {
            Ok(wire) => {
                delay = FIRST_RETRY;
                if let Some(since) = failing_since.take() {
                    tracing::info!(url = %routes_url, down_for = ?since.elapsed(), "route source reachable again");
                }
                if after == Some(wire.version) {
                    if asked.elapsed() < MIN_UNCHANGED_INTERVAL {
                        tokio::time::sleep(MIN_UNCHANGED_INTERVAL).await;
                    }
                    continue;
                }
                install(&state, &wire);
            }
            Err(error) => {
                let now = Instant::now();
                match failing_since {
                    None => {
                        failing_since = Some(now);
                        last_warning = now;
                        tracing::warn!(url = %routes_url, %error, "route source failed; serving the last table");
                    }
                    Some(since) if now - last_warning >= WARN_EVERY => {
                        last_warning = now;
                        tracing::warn!(url = %routes_url, %error, down_for = ?(now - since),
                            "route source still failing; serving the last table");
                    }
                    Some(_) => {}
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(state.config.routes_retry_max);
            }
        }
    }
}

/// The plain-HTTP client the router talks to the dyno runner with (routes, log lines).
pub(crate) fn control_client<B>(connect_timeout: Duration) -> Client<HttpConnector, B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

fn install(state: &State, wire: &RouteTable) {
    let previous = state.table.load();
    if previous.loaded && wire.version < previous.version {
        tracing::warn!(from = previous.version, to = wire.version, "route table version went back (source restarted?)");
    }
    let table = Table::compile(wire, &previous);
    let backends: usize = wire.routes.iter().map(|r| r.backends.len()).sum();
    tracing::info!(version = wire.version, routes = wire.routes.len(), backends, "route table updated");
    state.table.store(Arc::new(table));
    state.versions.send_replace(wire.version);
}

async fn fetch(
    client: &Client<HttpConnector, Empty<Bytes>>,
    routes_url: &Uri,
    after: Option<u64>,
    authorization: Option<&HeaderValue>,
) -> Result<RouteTable, String> {
    let uri = with_after(routes_url, after)?;
    let mut request = Request::get(uri).header(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization.clone());
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| format!("request failed: {}", error_chain(&e)))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_TABLE_BYTES)
        .collect()
        .await
        .map_err(|e| format!("reading the table failed: {e}"))?
        .to_bytes();
    if status != StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err(format!("status {status}: {text}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("not a route table: {e}"))
}

fn with_after(routes_url: &Uri, after: Option<u64>) -> Result<Uri, String> {
    let Some(after) = after else { return Ok(routes_url.clone()) };
    let base = routes_url.to_string();
    let separator = if routes_url.query().is_some() { '&' } else { '?' };
    format!("{base}{separator}after={after}").parse().map_err(|e| format!("bad routes URL: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_is_appended_to_the_query() {
        let url: Uri = "http://127.0.0.1:7701/routes".parse().unwrap();
        assert_eq!(with_after(&url, None).unwrap(), url);
        assert_eq!(with_after(&url, Some(7)).unwrap().to_string(), "http://127.0.0.1:7701/routes?after=7");
        let url: Uri = "http://127.0.0.1:7701/routes?host=a".parse().unwrap();
        assert_eq!(with_after(&url, Some(0)).unwrap().to_string(), "http://127.0.0.1:7701/routes?host=a&after=0");
    }
}
