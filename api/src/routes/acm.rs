//! `/apps/{app}/acm`, Heroku's automatic certificate management: `GET` shows whether it is on
//! and each custom domain's status (`ouro certs:auto`); `POST` turns it on, `DELETE` off (its
//! certificates go), `PATCH {"acm_refresh": true}` asks for new certificates now. The work is
//! `acm.rs`'s, woken by each change.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apps::{AppRow, find_app};
use crate::auth::User;
use crate::error::Json;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/apps/{app}/acm", get(show).post(enable).delete(disable).patch(refresh))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcmPatch {
    acm_refresh: bool,
}

async fn state_of(state: &AppState, app: &AppRow) -> Result<Value, ApiError> {
    let on = state.store.acm_on(&app.id).await?;
    let domains = if on { state.store.acm_domains(&app.id).await? } else { Vec::new() };
    Ok(json!({
        "app": { "id": app.id, "name": app.name },
        "acm": on,
        "domains": domains.iter().map(|d| json!({
            "hostname": d.hostname,
            "status": d.status,
            "reason": d.reason,
            "updated_at": d.updated_at,
            "expires_at": d.expires_at,
        })).collect::<Vec<_>>(),
    }))
}

async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(state_of(&state, &app).await?))
}

async fn enable(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    state.store.set_acm(&app.id, true).await?;
    state.acm_wake.notify_one();
    Ok(axum::Json(state_of(&state, &app).await?))
}

async fn disable(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    state.store.set_acm(&app.id, false).await?;
    state.changed();
    Ok(axum::Json(state_of(&state, &app).await?))
}

async fn refresh(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<AcmPatch>,
) -> Result<axum::Json<Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    if !state.store.acm_on(&app.id).await? {
        return Err(ApiError::invalid_params(format!(
            "automatic certificates are off for `{}`: `ouro certs:auto:enable` turns them on",
            app.name
        )));
    }
    if body.acm_refresh {
        state.store.request_acm_refresh(&app.id).await?;
        state.acm_wake.notify_one();
    }
    Ok(axum::Json(state_of(&state, &app).await?))
}
