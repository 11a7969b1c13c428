//! Users (issue 16): admins list, add and remove them (`ouro users`, `users:add`,
//! `users:remove`); a new user sets a password with the one-time invitation code `users:add`
//! answers (`POST /account/password`, no token: the code is the credential) and then logs in
//! with email and password (`POST /oauth/authorizations` with HTTP Basic, `auth.rs`). Codes
//! and passwords are stored as hashes only (SHA-256, argon2id).

use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::Removal;
use crate::auth::{User, hash_password, hash_secret, new_token};
use crate::error::Json;
use crate::{ApiError, AppState};

/// How long an invitation code may be used.
const INVITATION_LIFE: Duration = Duration::from_secs(72 * 3600);
/// The shortest password taken.
const MIN_PASSWORD: usize = 10;
/// The longest password taken (argon2 would take more, a request body need not).
const MAX_PASSWORD: usize = 1024;

/// Behind a token.
pub fn routes() -> Router<AppState> {
    Router::new().route("/users", get(list).post(add)).route("/users/{user}", delete(remove))
}

/// Without a token: the invitation code is the credential.
pub fn open_routes() -> Router<AppState> {
    Router::new().route("/account/password", post(set_password))
}

fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.admin { Ok(()) } else { Err(ApiError::forbidden("only an admin manages users")) }
}

async fn list(State(state): State<AppState>, Extension(user): Extension<User>) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&user)?;
    let users = state.store.users().await?;
    Ok(axum::Json(Value::Array(
        users
            .into_iter()
            .map(|u| {
                json!({ "id": u.id, "email": u.email, "admin": u.admin, "password_set": u.password_set,
                        "created_at": u.created_at })
            })
            .collect(),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserCreate {
    email: String,
    #[serde(default)]
    admin: bool,
}

/// Whether `email` can name a user: one `@` between non-empty parts, at most 254 characters,
/// nothing but printable ASCII.
fn valid_email(email: &str) -> bool {
    let parts: Vec<&str> = email.split('@').collect();
    email.len() <= 254
        && parts.len() == 2
        && parts.iter().all(|p| !p.is_empty())
        && email.bytes().all(|b| b.is_ascii_graphic())
}

async fn add(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Json(body): Json<UserCreate>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    require_admin(&user)?;
    let email = body.email.trim().to_ascii_lowercase();
    if !valid_email(&email) {
        return Err(ApiError::invalid_params(format!("`{email}` is not an email address")));
    }
    let code = new_token().1;
    let expires_at = humantime::format_rfc3339_micros(SystemTime::now() + INVITATION_LIFE).to_string();
    let made = state.store.create_invited_user(&email, body.admin, &hash_secret(&code), &expires_at).await;
    let made = match made {
        Err(crate::Error::Conflict) => return Err(ApiError::conflict(format!("there is a user `{email}` already"))),
        other => other?,
    };
    let answer = json!({
        "id": made.id, "email": made.email, "admin": made.admin, "password_set": false,
        "invitation": { "code": code, "expires_at": expires_at },
    });
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

async fn remove(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(target): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    require_admin(&user)?;
    match state.store.remove_user(&target).await? {
        Removal::Removed => Ok(axum::Json(json!({ "email": target }))),
        Removal::NoSuchUser => Err(ApiError::not_found(format!("no user `{target}`"))),
        Removal::OwnsApps(apps) => Err(ApiError::conflict(format!(
            "`{target}` owns {}: destroy them or have them moved first",
            apps.join(", ")
        ))),
        Removal::LastAdmin => Err(ApiError::conflict(format!("`{target}` is the last admin"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordSet {
    code: String,
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Json(body): Json<PasswordSet>,
) -> Result<axum::Json<Value>, ApiError> {
    let length = body.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(ApiError::invalid_params(format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")));
    }
    let password = body.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e))?;
    match state.store.accept_invitation(&hash_secret(body.code.trim()), &hash).await? {
        Some(email) => Ok(axum::Json(json!({ "email": email }))),
        None => Err(ApiError::unauthorized("no such invitation, or it expired or was used: ask an admin for another")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in ["a@b", "bob@example.com", "x.y+z@sub.example.org"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in ["", "bob", "@example.com", "bob@", "a@b@c", "bob @example.com", "bob@exa\nmple.com", "bób@x.y"] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        assert!(!valid_email(&format!("{}@x.y", "a".repeat(251))));
    }
}
