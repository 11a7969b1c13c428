//! `/apps/{app}/releases`: list, info (by version or id), create from a slug, roll back.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::{Actor, DynoState, Release, ReleaseCreate, SlugRef};

use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::releases::{Change, ReleaseRow, SlugRow};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/releases", get(list).post(create))
        .route("/apps/{app}/releases/{release}", get(info))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Release>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let releases = state.store.releases(&app.id).await?;
    Ok(axum::Json(releases.into_iter().map(|r| release_json(&state, &app, r)).collect()))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, release)): Path<(String, String)>,
) -> Result<axum::Json<Release>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let found = match parse_version(&release) {
        Some(version) => state.store.release_by_version(&app.id, version).await?,
        None => state.store.release_by_id(&app.id, &release).await?,
    };
    let found = found.ok_or_else(|| release_not_found(&app, &release))?;
    Ok(axum::Json(release_json(&state, &app, found)))
}

/// A slug of another app the caller may use becomes a slug of `app` with the same blob (as
/// Heroku's pipeline promotion): the add-on providers deploy their own slug to each server.
async fn promote(state: &AppState, user: &User, app: &AppRow, slug_id: &str) -> Result<SlugRow, ApiError> {
    let not_found = || ApiError::not_found(format!("slug `{slug_id}` not found in app `{}`", app.name));
    let (owner_id, slug) = state.store.slug_anywhere(slug_id).await?.ok_or_else(not_found)?;
    let owner = state.store.app(&owner_id).await?.ok_or_else(not_found)?;
    find_app(state, user, &owner.name).await.map_err(|_| not_found())?;
    if slug.checksum.is_none() {
        return Err(ApiError::invalid_params(format!("slug `{slug_id}` has no uploaded tar.gz yet")));
    }
    Ok(state.store.copy_slug(slug, &app.id).await?)
}

/// `{"slug": id}` deploys a slug (of this app, or of another app the caller may use); `{"release": id | version}` rolls back to that release.
async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<ReleaseCreate>,
) -> Result<(StatusCode, axum::Json<Release>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    if let Some(description) = &body.description {
        if description.is_empty() || description.len() > 200 {
            return Err(ApiError::invalid_params("description must be 1 to 200 characters"));
        }
    }
    let change = match (body.slug, body.release) {
        (Some(slug_id), None) => {
            let slug = match state.store.slug(&app.id, &slug_id).await? {
                Some(slug) => slug,
                None => promote(&state, &user, &app, &slug_id).await?,
            };
            let slug_id = slug.id.clone();
            if slug.checksum.is_none() {
                return Err(ApiError::invalid_params(format!(
                    "slug `{slug_id}` has no uploaded tar.gz yet; PUT it to the slug's blob URL first"
                )));
            }
            Change::Deploy { slug_id, description: body.description }
        }
        (None, Some(target)) => {
            let key = match &target {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(ApiError::invalid_params("`release` must be a release id or version")),
            };
            let old = match parse_version(&key) {
                Some(version) => state.store.release_by_version(&app.id, version).await?,
                None => state.store.release_by_id(&app.id, &key).await?,
            };
            let old = old.ok_or_else(|| release_not_found(&app, &key))?;
            // Only the last releases keep their slugs (`blob_gc.rs`).
            if let Some(slug) = match &old.slug_id {
                Some(slug_id) => state.store.slug(&app.id, slug_id).await?,
                None => None,
            } {
                let kept = match &slug.checksum {
                    Some(checksum) => crate::blob_gc::slug_kept(state.blobs.as_ref(), checksum).await,
                    None => true,
                };
                if !kept {
                    return Err(ApiError::invalid_params(format!(
                        "v{}'s slug was collected: only the last {} releases of an app keep theirs; deploy its commit again instead",
                        old.version,
                        crate::blob_gc::KEEP_RELEASES
                    )));
                }
            }
            Change::Rollback { version: old.version }
        }
        _ => {
            return Err(ApiError::invalid_params(
                "give exactly one of `slug` (to deploy a slug) or `release` (to roll back to it)",
            ));
        }
    };
    let release = state
        .create_release(&app, &user.email, change)
        .await?
        .ok_or_else(|| ApiError::conflict("the release changed nothing"))?;
    let app = find_app(&state, &user, &app.id).await?;
    Ok((StatusCode::CREATED, axum::Json(release_json(&state, &app, release))))
}

/// `3` or `v3` → 3.
fn parse_version(s: &str) -> Option<i64> {
    s.strip_prefix('v').unwrap_or(s).parse().ok().filter(|v| *v > 0)
}

fn release_not_found(app: &AppRow, key: &str) -> ApiError {
    ApiError::not_found(format!("release `{key}` not found in app `{}`; `ouro releases` lists them", app.name))
}

fn release_json(state: &AppState, app: &AppRow, release: ReleaseRow) -> Release {
    let current = app.current_release_id.as_deref() == Some(release.id.as_str());
    Release {
        failure: if current { boot_failure(state, &app.name, release.version) } else { None },
        current,
        id: release.id,
        version: release.version,
        description: release.description,
        status: release.status,
        slug: release.slug_id.map(|id| SlugRef { id }),
        user: Actor { email: release.actor },
        created_at: release.created_at,
    }
}

/// Why the current release is not running, from the dyno runner's last report: some dyno of
/// it crashed and none of it is up (the previous release keeps serving meanwhile).
fn boot_failure(state: &AppState, app: &str, version: i64) -> Option<String> {
    let dynos = state.dynos.read().ok()?;
    let mine: Vec<_> = dynos.get(app)?.iter().filter(|d| d.release == version).collect();
    if mine.iter().any(|d| d.state == DynoState::Up) {
        return None;
    }
    let crashed = mine.iter().find(|d| d.state == DynoState::Crashed)?;
    Some(format!("{} crashed: {}", crashed.name, crashed.reason.as_deref().unwrap_or("no reason known")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_parse_with_or_without_v() {
        for (input, expect) in
            [("3", Some(3)), ("v12", Some(12)), ("v0", None), ("-1", None), ("abc", None), ("v", None)]
        {
            assert_eq!(super::parse_version(input), expect, "{input}");
        }
    }
}
