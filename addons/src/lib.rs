//! Ouro's add-on provider for PostgreSQL and Redis: the web dyno of the system app
//! `ouro-<kind>`. It speaks the provider contract (ARCHITECTURE.md, "Add-ons") to the API with
//! HTTP Basic (user `<kind>`, `OURO_PROVIDER_PASSWORD`), and runs every server as a dyno of an
//! app of its own that it makes through the Platform API like any client (`resources`).
//!
//! It keeps no state: a server's credentials are its app's config vars, so the provider can
//! restart or redeploy at any time. It never talks to Docker or to the API's database, and it
//! reaches servers only by their app's name on their own networks, which its dynos join.

mod auth;
mod backups;
mod body;
pub mod config;
mod error;
pub mod kinds;
pub mod log;
mod platform;
mod resources;
mod tunnel;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::any;
use serde_json::{Value, json};

pub use config::Config;
pub use error::Error;
use platform::Platform;

/// The listener's bounds, unless `OURO_HEADER_READ_TIMEOUT_SECONDS` or `OURO_MAX_CONNECTIONS`
/// say otherwise (see `ouro-serve`).
pub const LIMITS: ouro_serve::Limits = ouro_serve::Limits {
    header_read_timeout: ouro_serve::HEADER_READ_TIMEOUT,
    // The provider's one client is the API (provisioning, backups, a tunnel per open
    // `pg:psql` or `redis:cli`): a few dozen connections at a busy time; 1024 is far above
    // that and bounds what a misbehaving client can hold.
    max_connections: 1024,
    // A dyno gets 30 s between SIGTERM and SIGKILL.
    drain_timeout: Duration::from_secs(25),
};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    platform: Platform,
}

impl AppState {
    pub fn new(config: Config) -> AppState {
        let platform = Platform::new(&config.api_url, &config.api_token);
        AppState { config: Arc::new(config), platform }
    }
}

/// The provider's routes: `/health` open, everything else behind HTTP Basic; unknown routes
/// are 404 `no such route`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(resources::routes())
        .merge(tunnel::routes())
        .merge(backups::routes())
        .fallback(no_such_route)
        .layer(from_fn_with_state(state.clone(), auth::require))
        .route("/health", any(health))
        .layer(from_fn(log::requests))
        .with_state(state)
}

/// Serves `app(state)` on `listener` within the configuration's limits until `shutdown`, then
/// lets in-flight requests finish for at most their drain time (25 s by default).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.config.limits;
    ouro_serve::serve(listener, app(state), limits, shutdown).await
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "kind": state.config.kind.as_str() }))
}

pub(crate) async fn no_such_route() -> Error {
    Error::no_such_route()
}
