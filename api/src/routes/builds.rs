//! `/apps/{app}/builds`: the app's builds (from `git push`, or `POST` with a source tar.gz, as
//! Heroku's Build API), and their source tar.gz.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::{Build, SourceBlob};

use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::User;
use crate::builds::BuildRow;
use crate::{ApiError, AppState, Settings};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/builds", get(list).post(create))
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

#[derive(serde::Deserialize)]
struct CreateQuery {
    /// What the source is a version of (a commit id, say); shown in the release description.
    version: Option<String>,
}

/// `POST /apps/{app}/builds` with the source tar.gz as the body: builds it like a push, in the
/// background; the answer is the pending build (poll it). One build of an app at a time: 409
/// while another one (or a push) runs.
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Query(query): Query<CreateQuery>,
    body: Body,
) -> Result<(StatusCode, axum::Json<Build>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let version = query.version.unwrap_or_default();
    if version.len() > 64 || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
        return Err(ApiError::invalid_params("version must be up to 64 letters, digits, `.` and `-`"));
    }
    let Ok(guard) = state.pushes.of(&app.id).try_lock_owned() else {
        return Err(ApiError::conflict(format!("a build of `{}` is running; wait for it to end", app.name)));
    };
    let (digest, size) = super::build_api::store_source(&state, body, "source").await?;
    let version = if version.is_empty() { digest[..12].to_string() } else { version };
    let build = state.store.create_build(&app.id, &version, "api", &format!("SHA256:{digest}"), size).await?;
    let answer = build_json(&state.settings, &app, build.clone());
    crate::pipeline::spawn_unwatched(state, app, build, user.email, guard);
    Ok((StatusCode::CREATED, axum::Json(answer)))
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
