//! `/apps/{app}/config-vars`: read the current release's config; PATCH makes a new release.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::{ConfigVars, ConfigVarsPatch, valid_config_key};

use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::limits::CONFIG_BYTES;
use crate::releases::Change;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/apps/{app}/config-vars", get(show).patch(update))
}

async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<ConfigVars>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(state.store.current_release(&app).await?.config))
}

/// Sets string values and unsets `null` ones; answers with the whole config afterwards.
/// A patch that changes nothing makes no release.
async fn update(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<BTreeMap<String, serde_json::Value>>,
) -> Result<axum::Json<ConfigVars>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let patch = validate(body)?;
    let current = state.store.current_release(&app).await?.config;
    let mut after = current.clone();
    for (key, value) in &patch {
        match value {
            Some(value) => after.insert(key.clone(), value.clone()),
            None => after.remove(key),
        };
    }
    let size: usize = after.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > CONFIG_BYTES {
        return Err(ApiError::invalid_params(format!(
            "config vars would take {} KiB; the limit is {} KiB",
            size.div_ceil(1024),
            CONFIG_BYTES / 1024
        )));
    }
    let config = match state.create_release(&app, &user.email, Change::Config(patch)).await? {
        Some(release) => release.config,
        None => current,
    };
    Ok(axum::Json(config))
}

fn validate(body: BTreeMap<String, serde_json::Value>) -> Result<ConfigVarsPatch, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid_params("no config vars given: send {\"KEY\": \"value\"} or {\"KEY\": null}"));
    }
    let mut patch = ConfigVarsPatch::new();
    for (key, value) in body {
        if !valid_config_key(&key) || key.len() > 256 {
            return Err(ApiError::invalid_params(format!(
                "config var name `{key}` is invalid: use letters, digits and underscores, not starting with a digit"
            )));
        }
        let value = match value {
            serde_json::Value::String(s) if s.contains('\0') => {
                return Err(ApiError::invalid_params(format!("value of `{key}` contains a NUL byte")));
            }
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Null => None,
            _ => {
                return Err(ApiError::invalid_params(format!(
                    "value of `{key}` must be a string, or null to unset it"
                )));
            }
        };
        patch.insert(key, value);
    }
    Ok(patch)
}
