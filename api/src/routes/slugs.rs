//! `/apps/{app}/slugs`: create a slug (process types, commit), then `PUT` its tar.gz to the
//! slug's blob URL; `GET` the same URL reads it back.
//!
//! An upload streams to a staging file while it is hashed and counted, is checked (a gzip'd
//! tar that stays inside its tree, within the size limits), and only then is committed to the
//! blob store and recorded on the slug. Anything that fails leaves no blob and no change.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_util::StreamExt;
use ouro_types::{Blob, Slug, SlugCreate};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::apps::AppRow;
use crate::apps::{find_app, validate_process_types};
use crate::auth::User;
use crate::blob::check_slug_archive;
use crate::error::Json;
use crate::releases::SlugRow;
use crate::{ApiError, AppState, Error, Settings, now};

/// The stack a slug runs on unless it names one: Debian 13 "trixie".
const DEFAULT_STACK: &str = ouro_types::STACK;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/slugs", post(create))
        .route("/apps/{app}/slugs/{slug}", get(info))
        .route("/apps/{app}/slugs/{slug}/blob", get(download).put(upload))
}

async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<SlugCreate>,
) -> Result<(StatusCode, axum::Json<Slug>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    validate(&body)?;
    let row = SlugRow {
        id: uuid::Uuid::new_v4().to_string(),
        process_types: body.process_types,
        commit_sha: body.commit,
        commit_description: body.commit_description,
        expected_checksum: body.checksum,
        checksum: None,
        size: None,
        stack: body.stack.unwrap_or_else(|| DEFAULT_STACK.to_string()),
        created_at: now(),
    };
    let row = state.store.create_slug(&app.id, row).await?;
    Ok((StatusCode::CREATED, axum::Json(slug_json(&state.settings, &app, row))))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, slug_id)): Path<(String, String)>,
) -> Result<axum::Json<Slug>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let slug = find_slug(&state, &app, &slug_id).await?;
    Ok(axum::Json(slug_json(&state.settings, &app, slug)))
}

async fn upload(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, slug_id)): Path<(String, String)>,
    body: Body,
) -> Result<axum::Json<Slug>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let slug = find_slug(&state, &app, &slug_id).await?;
    let (checksum, size) = accept_slug(&state, body, |checksum| {
        if let Some(expected) = &slug.expected_checksum {
            if !expected.eq_ignore_ascii_case(checksum) {
                return Err(ApiError::invalid_params(format!(
                    "upload has checksum {checksum} but the slug was created with {expected}"
                )));
            }
        }
        if slug.checksum.as_ref().is_some_and(|c| c != checksum) {
            return Err(slug_is_immutable(&slug.id));
        }
        Ok(())
    })
    .await?;
    if !state.store.set_slug_blob(&slug.id, &checksum, size).await? {
        return Err(slug_is_immutable(&slug.id));
    }
    let slug = find_slug(&state, &app, &slug_id).await?;
    Ok(axum::Json(slug_json(&state.settings, &app, slug)))
}

async fn download(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, slug_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let slug = find_slug(&state, &app, &slug_id).await?;
    let Some(checksum) = slug.checksum else {
        return Err(ApiError::not_found(format!("slug `{slug_id}` has no uploaded tar.gz yet")));
    };
    super::gzip_blob(&state, &checksum, slug.size.unwrap_or(0)).await
}

/// Receives a slug tar.gz into the blob store: streamed to a staging file while hashed and
/// counted (413 past the slug limit), `precheck`ed by checksum, checked as an archive (stays
/// in its tree, bounded unpacked size), then committed. Returns `(SHA256:<hex>, bytes)`.
/// Anything that fails leaves no blob.
pub(crate) async fn accept_slug(
    state: &AppState,
    body: Body,
    precheck: impl FnOnce(&str) -> Result<(), ApiError>,
) -> Result<(String, i64), ApiError> {
    let staged = Staged(state.blobs.staging_dir().join(format!("upload-{}", uuid::Uuid::new_v4())));
    let limit = state.settings.max_slug_bytes;
    let (digest, size) = receive(body, &staged.0, limit, "slug").await?;
    let checksum = format!("SHA256:{digest}");
    precheck(&checksum)?;
    let path = staged.0.clone();
    let max_unpacked = limit.saturating_mul(4);
    tokio::task::spawn_blocking(move || check_slug_archive(&path, max_unpacked))
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
        .map_err(|reason| ApiError::invalid_params(format!("slug rejected: {reason}")))?;
    state.blobs.commit(&staged.0, &digest).await.map_err(Error::Io)?;
    Ok((checksum, size as i64))
}

/// A staging file that is removed when dropped, unless it was committed (moved) first.
pub(crate) struct Staged(pub(crate) PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams the body to `path`, hashing it; stops with 413 past `limit` bytes (`what` names
/// the upload in errors).
pub(crate) async fn receive(
    body: Body,
    path: &std::path::Path,
    limit: u64,
    what: &str,
) -> Result<(String, u64), ApiError> {
    let mut file = tokio::fs::File::create(path).await.map_err(Error::Io)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::too_large(format!(
                "{what} is larger than the limit of {} MiB",
                limit / (1024 * 1024)
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(Error::Io)?;
    }
    file.flush().await.map_err(Error::Io)?;
    if size == 0 {
        return Err(ApiError::invalid_params(format!("empty upload: send the {what}'s tar.gz as the request body")));
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn validate(body: &SlugCreate) -> Result<(), ApiError> {
    validate_process_types(&body.process_types)?;
    if let Some(commit) = &body.commit {
        if commit.is_empty() || commit.len() > 64 || !commit.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiError::invalid_params("commit must be a commit id (1 to 64 letters and digits)"));
        }
    }
    if body.commit_description.as_ref().is_some_and(|d| d.len() > 1000) {
        return Err(ApiError::invalid_params("commit_description is longer than 1000 characters"));
    }
    if let Some(checksum) = &body.checksum {
        let hex = checksum.strip_prefix("SHA256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::invalid_params("checksum must look like SHA256:<64 hex digits>"));
        }
    }
    if let Some(stack) = &body.stack {
        if stack != DEFAULT_STACK && stack != ouro_types::BUILD_STACK {
            return Err(ApiError::invalid_params(format!(
                "unknown stack `{stack}`; the stacks are {DEFAULT_STACK} and {}",
                ouro_types::BUILD_STACK
            )));
        }
    }
    Ok(())
}

async fn find_slug(state: &AppState, app: &AppRow, slug_id: &str) -> Result<SlugRow, ApiError> {
    state
        .store
        .slug(&app.id, slug_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("slug `{slug_id}` not found in app `{}`", app.name)))
}

fn slug_is_immutable(slug_id: &str) -> ApiError {
    ApiError::conflict(format!("slug `{slug_id}` already has other content; slugs are immutable, create a new one"))
}

fn slug_json(settings: &Settings, app: &AppRow, slug: SlugRow) -> Slug {
    Slug {
        blob: Blob {
            method: "PUT".into(),
            url: format!("{}/apps/{}/slugs/{}/blob", settings.public_url, app.name, slug.id),
        },
        id: slug.id,
        process_types: slug.process_types,
        commit: slug.commit_sha,
        commit_description: slug.commit_description,
        checksum: slug.checksum,
        size: slug.size,
        stack: slug.stack,
        created_at: slug.created_at,
    }
}
