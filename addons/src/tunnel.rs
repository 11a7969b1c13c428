//! `GET /ouro/resources/<id>/tunnel` with `Connection: Upgrade` (`Upgrade: ouro-tunnel`): once
//! the server accepts a TCP connection, a `101` and then raw bytes both ways between the
//! caller (the API, for `ouro pg:psql` / `ouro redis:cli`) and the server's port 5000.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::header::{CONNECTION, UPGRADE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::AppState;
use crate::error::{Error, Result};
use crate::resources::find_server;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> Router<AppState> {
    Router::new().route("/ouro/resources/{id}/tunnel", get(tunnel).fallback(crate::no_such_route))
}

async fn tunnel(State(state): State<AppState>, Path(name): Path<String>, mut request: Request) -> Result<Response> {
    find_server(&state, &name).await?;
    let asks_upgrade = request
        .headers()
        .get_all(CONNECTION)
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase().contains("upgrade"));
    if !asks_upgrade {
        return Err(Error::new(StatusCode::BAD_REQUEST, "a tunnel needs Connection: Upgrade"));
    }
    // hyper hands over the connection only to a request that names its protocol.
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return Err(Error::new(StatusCode::BAD_REQUEST, "a tunnel needs Upgrade: ouro-tunnel"));
    };
    let (host, port) = (state.config.servers.host(&name), state.config.servers.port);
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => return Err(unreachable(&name, &e)),
        Err(_) => return Err(unreachable(&name, &"timed out")),
    };
    let protocol = request.headers().get(UPGRADE).cloned().unwrap_or(HeaderValue::from_static("ouro-tunnel"));
    tokio::spawn(relay(name, on_upgrade, upstream));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, protocol)
        .body(axum::body::Body::empty())
        .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn unreachable(name: &str, e: &dyn std::fmt::Display) -> Error {
    Error::new(StatusCode::SERVICE_UNAVAILABLE, format!("the server `{name}` cannot be reached: {e}"))
}

/// Copies bytes both ways once the `101` is out (the bytes the caller sent right after its
/// request's head come first), each direction closed for writing at the other's end. No idle
/// timeout: an interactive `psql` may sit for hours, and either end closing ends it.
async fn relay(name: String, on_upgrade: OnUpgrade, mut upstream: TcpStream) {
    let mut client = match on_upgrade.await {
        Ok(upgraded) => TokioIo::new(upgraded),
        Err(e) => {
            tracing::debug!("tunnel to {name}: the upgrade failed: {e}");
            return;
        }
    };
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((sent, received)) => tracing::debug!("tunnel to {name} closed: {sent} bytes in, {received} out"),
        Err(e) => tracing::debug!("tunnel to {name} ended: {e}"),
    }
}
