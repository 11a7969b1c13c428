//! `/apps/{app}/sni-endpoints`: TLS certificates (Heroku's SNI endpoints). The router presents
//! an app's certificate to clients asking, by SNI, for a name it covers, as soon as the dyno
//! runner picks it up. A certificate is checked before it is stored: a PEM chain (leaf first)
//! whose leaf parses and names DNS hosts in its subject alternative names, is not expired, and
//! a PEM private key (PKCS#8, PKCS#1 or SEC1) that matches the leaf's public key. The private key
//! is never served back.

use crate::apps::find_app;
use crate::auth::User;
use crate::certificates::check;
use crate::domains::CertificateRow;
use crate::error::Json;
use crate::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Router};
use ouro_types::{Certificate, CertificateCreate};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/sni-endpoints", get(list).post(add))
        .route("/apps/{app}/sni-endpoints/{id}", delete(remove))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Certificate>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(state.store.certificates(&app.id).await?.into_iter().map(wire).collect()))
}

async fn add(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<CertificateCreate>,
) -> Result<(StatusCode, axum::Json<Certificate>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let checked = check(&body.certificate_chain, &body.private_key).map_err(ApiError::invalid_params)?;
    let row = state
        .store
        .add_certificate(
            &state.platform_key,
            &app.id,
            checked.hostnames,
            checked.expires_at,
            &body.certificate_chain,
            &body.private_key,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(wire(row))))
}

async fn remove(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, id)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    if !state.store.remove_certificate(&app.id, &id).await? {
        return Err(ApiError::not_found(format!(
            "app `{}` has no SNI endpoint `{id}`; `ouro certs -a {}` lists them",
            app.name, app.name
        )));
    }
    Ok(axum::Json(serde_json::json!({ "id": id })))
}

fn wire(row: CertificateRow) -> Certificate {
    Certificate { id: row.id, hostnames: row.hostnames, expires_at: row.expires_at, created_at: row.created_at }
}
