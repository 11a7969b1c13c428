//! `/apps/{app}/collaborators`, Heroku's `access`: who besides the owner may do what to an app.
//! Listing needs `view`; adding, changing and removing collaborators `manage` (`access.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{Collaborator, Permission, names, parse_permissions};
use crate::apps::{AppRow, find_app};
use crate::auth::User;
use crate::error::Json;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/collaborators", get(list).post(add))
        .route("/apps/{app}/collaborators/{user}", axum::routing::patch(update).delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollaboratorCreate {
    user: String,
    /// Default: all of them, as a collaborator of a personal app on Heroku.
    #[serde(default)]
    permissions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CollaboratorUpdate {
    permissions: Vec<String>,
}

fn json_of(app: &AppRow, c: &Collaborator) -> Value {
    json!({
        "app": { "id": app.id, "name": app.name },
        "user": { "id": c.user_id, "email": c.email },
        "permissions": names(&c.permissions),
        "role": "collaborator",
        "created_at": c.created_at,
    })
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let collaborators = state.store.collaborators(&app.id).await?;
    Ok(axum::Json(Value::Array(collaborators.iter().map(|c| json_of(&app, c)).collect())))
}

/// The user `email` who is not `app`'s owner: a 404 when there is none.
async fn collaborator_id(state: &AppState, app: &AppRow, email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_ascii_lowercase();
    let id =
        state.store.user_id(&email).await?.ok_or_else(|| {
            ApiError::not_found(format!("no user `{email}`; an admin adds users with `ouro users:add`"))
        })?;
    if id == app.owner_id {
        return Err(ApiError::invalid_params(format!("`{email}` owns `{}`", app.name)));
    }
    Ok(id)
}

async fn find(state: &AppState, app: &AppRow, user_id: &str) -> Result<Collaborator, ApiError> {
    let all = state.store.collaborators(&app.id).await?;
    all.into_iter()
        .find(|c| c.user_id == user_id)
        .ok_or_else(|| ApiError::not_found(format!("that user is no collaborator of `{}`", app.name)))
}

async fn add(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<CollaboratorCreate>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let permissions = match &body.permissions {
        Some(asked) => parse_permissions(asked.iter().map(String::as_str)).map_err(ApiError::invalid_params)?,
        None => Permission::GRANTABLE.into_iter().collect(),
    };
    let id = collaborator_id(&state, &app, &body.user).await?;
    if state.store.permissions(&app.id, &id).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "`{}` is a collaborator of `{}` already: `ouro access:update` changes their permissions",
            body.user, app.name
        )));
    }
    state.store.set_collaborator(&app.id, &id, &permissions).await?;
    Ok((StatusCode::CREATED, axum::Json(json_of(&app, &find(&state, &app, &id).await?))))
}

async fn update(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, email)): Path<(String, String)>,
    Json(body): Json<CollaboratorUpdate>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let permissions =
        parse_permissions(body.permissions.iter().map(String::as_str)).map_err(ApiError::invalid_params)?;
    let id = collaborator_id(&state, &app, &email).await?;
    find(&state, &app, &id).await?;
    state.store.set_collaborator(&app.id, &id, &permissions).await?;
    Ok(axum::Json(json_of(&app, &find(&state, &app, &id).await?)))
}

async fn remove(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, email)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let id = collaborator_id(&state, &app, &email).await?;
    let gone = find(&state, &app, &id).await?;
    state.store.remove_collaborator(&app.id, &id).await?;
    Ok(axum::Json(json_of(&app, &gone)))
}
