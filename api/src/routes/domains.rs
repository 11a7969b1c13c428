//! `/apps/{app}/domains`: the default host name and custom ones. Custom domains are routed by
//! the router as soon as the dyno runner picks them up (within about a second).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Router};
use ouro_types::{Domain, DomainCreate, valid_hostname};

use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::{ApiError, AppState, Error};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/domains", get(list).post(add))
        .route("/apps/{app}/domains/{hostname}", delete(remove))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Domain>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let mut domains = vec![default_domain(&state, &app)];
    domains.extend(state.store.domains(&app.id).await?.into_iter().map(|d| Domain {
        id: d.id,
        hostname: d.hostname,
        kind: "custom".into(),
        created_at: d.created_at,
    }));
    Ok(axum::Json(domains))
}

async fn add(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<DomainCreate>,
) -> Result<(StatusCode, axum::Json<Domain>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let hostname = body.hostname.to_ascii_lowercase();
    if !valid_hostname(&hostname) {
        return Err(ApiError::invalid_params(format!(
            "`{hostname}` is not a host name: use labels of letters, digits and dashes, like www.example.com"
        )));
    }
    let platform = format!(".{}", state.settings.domain);
    if hostname.ends_with(&platform) || hostname == state.settings.domain {
        return Err(ApiError::invalid_params(format!(
            "`{hostname}` is under the platform's domain {}; apps get `<app>{platform}` already",
            state.settings.domain
        )));
    }
    let row = match state.store.add_domain(&app.id, &hostname).await {
        Err(Error::Conflict) => return Err(ApiError::conflict(format!("`{hostname}` is already in use by an app"))),
        other => other?,
    };
    let domain = Domain { id: row.id, hostname: row.hostname, kind: "custom".into(), created_at: row.created_at };
    // With automatic certificates on, the new domain gets one.
    state.acm_wake.notify_one();
    Ok((StatusCode::CREATED, axum::Json(domain)))
}

async fn remove(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, hostname)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let hostname = hostname.to_ascii_lowercase();
    if !state.store.remove_domain(&app.id, &hostname).await? {
        return Err(ApiError::not_found(format!("app `{}` has no custom domain `{hostname}`", app.name)));
    }
    // Its automatic certificate goes too.
    state.acm_wake.notify_one();
    Ok(axum::Json(serde_json::json!({ "hostname": hostname })))
}

fn default_domain(state: &AppState, app: &AppRow) -> Domain {
    Domain {
        id: format!("default-{}", app.id),
        hostname: format!("{}.{}", app.name, state.settings.domain),
        kind: "default".into(),
        created_at: app.created_at.clone(),
    }
}
