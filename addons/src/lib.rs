//! Ouro's add-on provider for PostgreSQL and Redis: the web dyno of the system app
//! `ouro-<kind>`. It speaks the provider contract (ARCHITECTURE.md, "Add-ons") to the API with
//! HTTP Basic (user `<kind>`, `OURO_PROVIDER_PASSWORD`), and runs every server as a dyno of an
//! app of its own that it makes through the Platform API like any client (`resources`).
//!
//! It keeps no state: a server's credentials are its app's config vars, so the provider can
//! restart or redeploy at any time. It never talks to Docker or to the API's database, and it
//! reaches servers only by their app's name on the networks they join.

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

/// How long in-flight requests may finish after SIGTERM (a dyno gets 30 s before SIGKILL).
const DRAIN_CAP: Duration = Duration::from_secs(25);

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

/// Serves `app(state)` on `listener` until `shutdown`, then lets in-flight requests finish for
/// at most [`DRAIN_CAP`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let drain_cap = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_CAP).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served,
        () = drain_cap => {
            tracing::warn!("requests still running after {} s; stopping anyway", DRAIN_CAP.as_secs());
            Ok(())
        }
    }
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "kind": state.config.kind.as_str() }))
}

pub(crate) async fn no_such_route() -> Error {
    Error::no_such_route()
}
