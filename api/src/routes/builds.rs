//! `/apps/{app}/builds`: the builds that accepted `git push`es queued, and their source
//! tar.gz. Nothing runs builds yet, so they stay `pending`.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::{Build, SourceBlob};

use super::find_app;
use crate::auth::User;
use crate::store::{AppRow, BuildRow};
use crate::{ApiError, AppState, Settings};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/builds", get(list))
        .route("/apps/{app}/builds/{build}", get(info))
        .route("/apps/{app}/builds/{build}/source", get(source))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Build>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let builds = state.store.builds(&app.id).await?;
    Ok(axum::Json(builds.into_iter().map(|b| build_json(&state.settings, &app, b)).collect()))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, build_id)): Path<(String, String)>,
) -> Result<axum::Json<Build>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let build = find_build(&state, &app, &build_id).await?;
    Ok(axum::Json(build_json(&state.settings, &app, build)))
}

async fn source(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, build_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let build = find_build(&state, &app, &build_id).await?;
    super::gzip_blob(&state, &build.source_blob, build.source_size).await
}

async fn find_build(state: &AppState, app: &AppRow, build_id: &str) -> Result<BuildRow, ApiError> {
    state
        .store
        .build(&app.id, build_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("build `{build_id}` not found in app `{}`", app.name)))
}

fn build_json(settings: &Settings, app: &AppRow, build: BuildRow) -> Build {
    Build {
        source_blob: SourceBlob {
            checksum: build.source_blob,
            size: build.source_size,
            url: format!("{}/apps/{}/builds/{}/source", settings.public_url, app.name, build.id),
            version: build.source_commit,
            git_ref: build.source_ref,
        },
        id: build.id,
        status: build.status,
        output: build.output,
        release: build.release_version.map(|version| ouro_types::BuildRelease { version }),
        created_at: build.created_at,
        updated_at: build.updated_at,
    }
}
