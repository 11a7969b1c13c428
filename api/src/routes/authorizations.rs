//! `/oauth/authorizations`, Heroku's words for a user's tokens (`ouro authorizations`): list,
//! create (with a description and a life in seconds), show, regenerate (a new secret, the old
//! one refused at once) and revoke (refused at once). Each user sees and changes only their
//! own; scoped tokens (the runner's, the providers') reach none of it. The token itself is in
//! the answer that made it and nowhere after: only its SHA-256 is kept.

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use ouro_types::{AccessToken, Authorization, AuthorizationUser};
use serde::Deserialize;

use crate::accounts::Authorization as Row;
use crate::auth::{User, hash_secret, new_token};
use crate::error::Json;
use crate::{ApiError, AppState};

/// The longest life a token may be given: ten years.
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;
/// The longest description kept.
const MAX_DESCRIPTION: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oauth/authorizations", get(list).post(create))
        .route("/oauth/authorizations/{id}", get(info).delete(revoke))
        .route("/oauth/authorizations/{id}/actions/regenerate-tokens", post(regenerate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizationCreate {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    /// Heroku's clients send it; only the one scope a user's token has is taken.
    #[serde(default)]
    scope: Option<Vec<String>>,
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<axum::Json<Vec<Authorization>>, ApiError> {
    let rows = state.store.authorizations(&user.id).await?;
    Ok(axum::Json(rows.into_iter().map(|row| json(&user, row, None)).collect()))
}

async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Json(body): Json<AuthorizationCreate>,
) -> Result<(StatusCode, axum::Json<Authorization>), ApiError> {
    let description = body.description.unwrap_or_default().trim().to_string();
    if description.chars().count() > MAX_DESCRIPTION || description.chars().any(char::is_control) {
        return Err(ApiError::invalid_params(format!(
            "a description is one line of at most {MAX_DESCRIPTION} characters"
        )));
    }
    if body.scope.is_some_and(|scope| scope.iter().any(|s| s != "global")) {
        return Err(ApiError::invalid_params("a user's token has the scope `global` only"));
    }
    let expires_at = match body.expires_in {
        None => None,
        Some(seconds @ 1..=MAX_EXPIRES_IN) => {
            Some(humantime::format_rfc3339_micros(SystemTime::now() + Duration::from_secs(seconds)).to_string())
        }
        Some(_) => {
            return Err(ApiError::invalid_params(format!(
                "expires_in is a number of seconds from 1 to {MAX_EXPIRES_IN} (ten years)"
            )));
        }
    };
    let (id, secret, token) = new_token();
    let row = state
        .store
        .create_authorization(&user.id, &id, &hash_secret(&secret), &description, expires_at.as_deref())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(json(&user, row, Some(token)))))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<axum::Json<Authorization>, ApiError> {
    Ok(axum::Json(json(&user, find(&state, &user, &id).await?, None)))
}

async fn revoke(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<axum::Json<Authorization>, ApiError> {
    let row = find(&state, &user, &id).await?;
    if !state.store.revoke_authorization(&user.id, &id).await? {
        return Err(not_found(&id));
    }
    // Dashboard sessions of the token end with it (they check it on every page).
    Ok(axum::Json(json(&user, row, None)))
}

async fn regenerate(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Result<axum::Json<Authorization>, ApiError> {
    find(&state, &user, &id).await?;
    let secret = new_token().1;
    if !state.store.regenerate_authorization(&user.id, &id, &hash_secret(&secret)).await? {
        return Err(not_found(&id));
    }
    let row = find(&state, &user, &id).await?;
    Ok(axum::Json(json(&user, row, Some(format!("ouro_{id}_{secret}")))))
}

/// The caller's token `id`; another user's is as unknown as a token that does not exist.
async fn find(state: &AppState, user: &User, id: &str) -> Result<Row, ApiError> {
    state.store.authorization(&user.id, id).await?.ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("you have no token `{id}`; `ouro authorizations` lists yours"))
}

fn json(user: &User, row: Row, token: Option<String>) -> Authorization {
    let expires_in = row.expires_at.as_deref().and_then(|at| humantime::parse_rfc3339(at).ok()).map(|at| {
        at.duration_since(SystemTime::now()).map_or(0, |left| i64::try_from(left.as_secs()).unwrap_or(i64::MAX))
    });
    Authorization {
        access_token: AccessToken { id: row.id.clone(), token, expires_in, expires_at: row.expires_at },
        id: row.id,
        description: row.description,
        scope: vec![row.scope.unwrap_or_else(|| "global".into())],
        created_at: row.created_at,
        updated_at: row.updated_at,
        user: AuthorizationUser { id: user.id.clone(), email: user.email.clone() },
    }
}
