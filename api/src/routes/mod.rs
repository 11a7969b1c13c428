//! The Platform API's routes, one module per resource, each with its `routes()` next to its
//! handlers. Everything except `/health`, the build dyno's `/build-api` (its build's own
//! secret) and the `/dashboard` (its session cookie) sits behind [`crate::auth::require_token`].

mod access;
mod acm;
mod addons;
mod apps;
mod attach;
mod audit;
mod authorizations;
pub(crate) mod build_api;
mod buildpacks;
mod builds;
mod certs;
mod config_vars;
mod domains;
mod formation;
mod git;
mod logs;
mod nodes;
mod releases;
mod runner;
mod service;
mod slugs;
mod stacks;
mod teams;
mod users;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Extension, Router, middleware};
use ouro_types::{Account, DYNO_SIZES, DynoSize};

use crate::auth::{self, User};
use crate::{ApiError, AppState};

/// Largest JSON body any route accepts. Slug uploads stream and have their own limit.
const JSON_BODY_LIMIT: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let authenticated = Router::new()
        .route("/account", get(account))
        .route("/dyno-sizes", get(dyno_sizes))
        .merge(apps::routes())
        .merge(addons::routes())
        .merge(config_vars::routes())
        .merge(domains::routes())
        .merge(certs::routes())
        .merge(releases::routes())
        .merge(slugs::routes())
        .merge(stacks::routes())
        .merge(nodes::routes())
        .merge(formation::routes())
        .merge(audit::routes())
        .merge(authorizations::routes())
        .merge(users::routes())
        .merge(access::routes())
        .merge(acm::routes())
        .merge(teams::routes())
        .merge(runner::routes())
        .merge(service::routes())
        .merge(builds::routes())
        .merge(buildpacks::routes())
        .merge(crate::upgrade::routes())
        .merge(git::routes())
        .merge(logs::routes())
        .merge(attach::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/health", get(health))
        .merge(users::open_routes())
        .merge(build_api::routes())
        .merge(crate::dashboard::routes())
        .merge(authenticated)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), notify_changes))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .with_state(state)
}

/// After any successful change (not the runner's own reports), wakes a waiting runner.
async fn notify_changes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let mutating = !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let runner = request.uri().path().starts_with("/runner/");
    let response = next.run(request).await;
    // A redirect after a form's POST (the dashboard's) is a success too.
    let done = response.status().is_success() || response.status().is_redirection();
    if mutating && !runner && done {
        state.changed();
    }
    response
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn account(Extension(user): Extension<User>) -> axum::Json<Account> {
    axum::Json(Account { id: user.id, email: user.email, admin: user.admin })
}

async fn dyno_sizes() -> axum::Json<&'static [DynoSize]> {
    axum::Json(DYNO_SIZES)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such resource; the README lists the API's routes")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this resource does not take that method",
    )
}

/// Streams a stored tar.gz (`SHA256:<hex>` names it) as the response body, in 64 KiB chunks.
pub(crate) async fn gzip_blob(
    state: &AppState,
    checksum: &str,
    size: i64,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let digest = checksum.trim_start_matches("SHA256:");
    let file = state.blobs.open(digest).await.map_err(crate::Error::Io)?;
    let stream = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::io::AsyncReadExt::read(&mut file, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let headers = [
        (axum::http::header::CONTENT_TYPE, "application/gzip".to_string()),
        (axum::http::header::CONTENT_LENGTH, size.to_string()),
    ];
    Ok((headers, axum::body::Body::from_stream(stream)).into_response())
}
