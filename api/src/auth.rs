//! Bearer tokens and the audit log.
//!
//! A token is `ouro_<id>_<secret>`: the id finds the row, the secret is checked by comparing its
//! SHA-256 with the stored one in constant time. The secret itself is never stored.
//! Every request but `/health` passes [`require_token`], which also records each mutating
//! request (actor, method and route, target, status) in the audit log.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, UserRow};
use crate::{ApiError, AppState, Result};

/// The authenticated caller, put in request extensions for handlers.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub admin: bool,
}

impl User {
    pub fn row(&self) -> UserRow {
        UserRow { id: self.id.clone(), email: self.email.clone(), admin: self.admin }
    }
}

/// A handler may set this on its response to name the app it acted on when the path does
/// not (`POST /apps`).
#[derive(Debug, Clone)]
pub struct AuditApp(pub String);

const ADMIN_EMAIL: &str = "admin@ouro.local";
const TOKEN_FILE: &str = "admin-token";

/// On a store with no user, creates the admin user and its token and writes the token to
/// `<data_dir>/admin-token` (mode 0600). Returns the path when it made one.
pub async fn bootstrap_admin(store: &Store, data_dir: &Path) -> Result<Option<PathBuf>> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let (token_id, secret, token) = new_token();
    store.create_user_with_token(ADMIN_EMAIL, true, &token_id, &hash_secret(&secret), "first admin token").await?;
    let path = data_dir.join(TOKEN_FILE);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    writeln!(file.open(&path)?, "{token}")?;
    Ok(Some(path))
}

/// A fresh token: (id, secret, full token string).
fn new_token() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let token = format!("ouro_{id}_{secret}");
    (id, secret, token)
}

fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

async fn authenticate(store: &Store, token: &str) -> Result<Option<User>, ApiError> {
    let Some((id, secret)) = token.strip_prefix("ouro_").and_then(|rest| rest.split_once('_')) else {
        return Ok(None);
    };
    let Some(row) = store.token(id).await? else {
        return Ok(None);
    };
    let presented = Sha256::digest(secret.as_bytes());
    let stored = hex::decode(&row.secret_sha256).unwrap_or_default();
    if !bool::from(presented.as_slice().ct_eq(&stored)) {
        return Ok(None);
    }
    Ok(Some(User { id: row.user.id, email: row.user.email, admin: row.user.admin }))
}

/// Middleware: 401 without a valid bearer token; records mutating requests once answered.
pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(presented) = presented else {
        return ApiError::unauthorized("no token: send `Authorization: Bearer <token>`; `ouro login` stores one")
            .into_response();
    };
    let user = match authenticate(&state.store, presented).await {
        Ok(Some(user)) => user,
        Ok(None) => return ApiError::unauthorized("invalid token; `ouro login` stores a valid one").into_response(),
        Err(e) => return e.into_response(),
    };
    let method = req.method().clone();
    let action = match req.extensions().get::<MatchedPath>() {
        Some(route) => format!("{method} {}", route.as_str()),
        None => format!("{method} {}", req.uri().path()),
    };
    let target = req.uri().path().to_string();
    let path_app = target.strip_prefix("/apps/").map(|rest| rest.split('/').next().unwrap_or_default().to_string());
    req.extensions_mut().insert(user.clone());
    let response = next.run(req).await;
    // The runner's periodic dyno reports are not user actions: they would drown the log.
    if method != Method::GET && method != Method::HEAD && target != "/runner/dynos" {
        let app = response.extensions().get::<AuditApp>().map(|a| a.0.clone()).or(path_app);
        let recorded =
            state.store.record_audit(&user.email, &action, &target, app.as_deref(), response.status().as_u16()).await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, %action, %target, "could not record audit event");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let (id, secret, token) = new_token();
        assert_eq!(token, format!("ouro_{id}_{secret}"));
        assert_eq!((id.len(), secret.len()), (16, 64));
        assert_ne!(new_token().2, token);
        assert_ne!(hash_secret(&secret), secret);
    }
}
