//! The build's own endpoints, outside the user-token middleware: each takes only a scoped
//! secret that lives as long as one push or one build.
//!
//! - `POST /internal/pushes/{push}/build`: the `pre-receive` hook of a push in progress sends
//!   the pushed tree (tar.gz) with the push's secret; the answer is the build's log as plain
//!   text, streamed, ending with a status line (see [`crate::hook`]).
//! - `/build-api/{build}/{env,source,output,slug,result}`: the builder dyno of that build, with
//!   the build's token (see `builder/bin/ouro-build`). It can read this build's source and
//!   settings and write this build's log, slug and result; nothing else.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::slugs::{Staged, accept_slug, receive};
use crate::git::DEPLOY_REFS;
use crate::pipeline::{ActiveBuild, BuilderResult, Event};
use crate::{ApiError, AppState, Error, auth, pipeline};

/// The largest pushed tree (tar.gz) a build takes.
const MAX_SOURCE_BYTES: u64 = 1024 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/internal/pushes/{push}/build", post(push_build))
        .route("/build-api/{build}/env", get(env))
        .route("/build-api/{build}/source", get(source))
        .route("/build-api/{build}/output", post(output))
        .route("/build-api/{build}/slug", put(slug))
        .route("/build-api/{build}/result", post(result))
}

async fn push_build(
    State(state): State<AppState>,
    Path(push): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let session = state.push_sessions.get(&push).ok_or_else(|| ApiError::forbidden("no such push in progress"))?;
    if !auth::bearer(&headers).is_some_and(|secret| session.secret_matches(secret)) {
        return Err(ApiError::forbidden("wrong push secret"));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (commit, git_ref) = (header("x-ouro-commit"), header("x-ouro-ref"));
    if commit.len() < 40 || commit.len() > 64 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid_params("X-Ouro-Commit must be a commit id"));
    }
    if !DEPLOY_REFS.contains(&git_ref.as_str()) {
        return Err(ApiError::invalid_params("X-Ouro-Ref must be refs/heads/main or refs/heads/master"));
    }
    let app = state.store.app(&session.app_id).await?.ok_or_else(|| ApiError::not_found("the app was deleted"))?;
    let (digest, size) = store_source(&state, body, "pushed tree").await?;
    let build = state.store.create_build(&app.id, &commit, &git_ref, &format!("SHA256:{digest}"), size).await?;
    tracing::info!(app = %app.name, build = %build.id, %commit, "build started");
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(pipeline::run(state.clone(), app, build, session.actor.clone(), tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], Body::from_stream(stream)).into_response())
}

/// Streams a build's source tar.gz (at most [`MAX_SOURCE_BYTES`]) into the blob store:
/// `(sha256 hex, bytes)`. `what` names it in errors.
pub(crate) async fn store_source(state: &AppState, body: Body, what: &str) -> Result<(String, i64), ApiError> {
    let staged = Staged(state.blobs.staging_dir().join(format!("source-{}", uuid::Uuid::new_v4())));
    let (digest, size) = receive(body, &staged.0, MAX_SOURCE_BYTES, what).await?;
    state.blobs.commit(&staged.0, &digest).await.map_err(Error::Io)?;
    Ok((digest, size as i64))
}

/// The running build `build_id`, if `headers` carry its token.
fn active(state: &AppState, build_id: &str, headers: &HeaderMap) -> Result<Arc<ActiveBuild>, ApiError> {
    let build = state
        .active_builds
        .get(build_id)
        .ok_or_else(|| ApiError::new(StatusCode::GONE, "gone", format!("build `{build_id}` is not running")))?;
    if !auth::bearer(headers).is_some_and(|token| build.token_matches(token)) {
        return Err(ApiError::forbidden("wrong build token"));
    }
    Ok(build)
}

async fn env(
    State(state): State<AppState>,
    Path(build_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(active(&state, &build_id, &headers)?.settings.clone()))
}

async fn source(
    State(state): State<AppState>,
    Path(build_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let build = active(&state, &build_id, &headers)?;
    super::gzip_blob(&state, &build.source_blob, build.source_size).await
}

async fn output(
    State(state): State<AppState>,
    Path(build_id): Path<String>,
    headers: HeaderMap,
    text: String,
) -> Result<StatusCode, ApiError> {
    let build = active(&state, &build_id, &headers)?;
    send(&build, Event::Output(text)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn slug(
    State(state): State<AppState>,
    Path(build_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let build = active(&state, &build_id, &headers)?;
    let (checksum, size) = accept_slug(&state, body, |_| Ok(())).await?;
    send(&build, Event::Slug { checksum: checksum.clone(), size }).await?;
    Ok(Json(serde_json::json!({ "checksum": checksum, "size": size })))
}

async fn result(
    State(state): State<AppState>,
    Path(build_id): Path<String>,
    headers: HeaderMap,
    crate::error::Json(result): crate::error::Json<BuilderResult>,
) -> Result<StatusCode, ApiError> {
    let build = active(&state, &build_id, &headers)?;
    send(&build, Event::Result(result)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn send(build: &ActiveBuild, event: Event) -> Result<(), ApiError> {
    build.events.send(event).await.map_err(|_| ApiError::new(StatusCode::GONE, "gone", "the build has ended"))
}
