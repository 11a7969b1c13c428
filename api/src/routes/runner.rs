//! `/runner/*`: the dyno runner's side of the API. It reads what should run
//! (`GET /runner/desired-state`) and reports what does (`PUT /runner/dynos`).
//! An admin's token, or the runner's own (scope `runner`, from `POST /runner/tokens`, which
//! `ouro up` gives the runner): that one reaches these routes and the slugs, nothing else.

use axum::extract::State;
use axum::routing::{get, put};
use axum::{Extension, Router};
use ouro_types::{DesiredState, DynoReport};

use crate::auth::User;
use crate::error::Json;
use crate::{ApiError, AppState};

/// `POST /runner/tokens` (admins): a token scoped to the runner (it reads the desired state,
/// reports dynos and fetches slugs, nothing else), shown once; `ouro up` gives it to the runner.
async fn new_token(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<(axum::http::StatusCode, axum::Json<serde_json::Value>), ApiError> {
    if !user.admin || user.scope.is_some() {
        return Err(ApiError::forbidden("only an admin's full token makes runner tokens"));
    }
    let token = crate::auth::system_token(&state.store, "runner@ouro.local", "the dyno runner", Some("runner")).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(serde_json::json!({ "token": token, "scope": "runner" }))))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/runner/desired-state", get(desired_state))
        .route("/runner/dynos", put(report))
        .route("/runner/changes", get(changes))
        .route("/runner/tokens", axum::routing::post(new_token))
}

#[derive(serde::Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    after: u64,
}

/// Long poll: answers `{"version": N}` as soon as the desired state's version differs from
/// `after` (at once if it already does), or after 25 s with the same version.
async fn changes(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    axum::extract::Query(query): axum::extract::Query<ChangesQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    require_admin(&user)?;
    let mut watch = state.changes.subscribe();
    let wait = watch.wait_for(|version| *version != query.after);
    tokio::select! {
        _ = tokio::time::timeout(std::time::Duration::from_secs(25), wait) => {}
        () = state.stopped() => {}
    }
    let version = *state.changes.borrow();
    Ok(axum::Json(serde_json::json!({ "version": version })))
}

/// Every app whose current release has an uploaded slug, with that release and the formation;
/// and apps with a release-phase one-off on a slug that is not released yet.
async fn desired_state(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<axum::Json<DesiredState>, ApiError> {
    require_admin(&user)?;
    Ok(axum::Json(
        crate::desired_state::desired_state(&state.store, &state.settings.public_url, &state.platform_key).await?,
    ))
}

/// Replaces the live dynos of every app with the runner's report.
async fn report(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Json(report): Json<DynoReport>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    require_admin(&user)?;
    if !report.stacks.is_empty() {
        if let Ok(mut stacks) = state.stacks.write() {
            *stacks = report.stacks.clone();
        }
    }
    if let Ok(mut nodes) = state.nodes.write() {
        *nodes = report.nodes.clone();
    }
    let mut by_app = std::collections::HashMap::<String, Vec<ouro_types::Dyno>>::new();
    for dyno in report.dynos {
        // A one-off that has exited is done: it leaves the desired state.
        if dyno.process_type == "run" && dyno.state.is_finished() {
            let number = dyno.name.trim_start_matches("run.").parse().unwrap_or(0);
            let reason = dyno.reason.clone().unwrap_or_else(|| "finished".into());
            state.store.finish_one_off(&dyno.app, number, &reason).await?;
            state.changed();
        }
        by_app.entry(dyno.app.clone()).or_default().push(dyno);
    }
    for dynos in by_app.values_mut() {
        dynos.sort_by(|a, b| (&a.process_type, a.name.len(), &a.name).cmp(&(&b.process_type, b.name.len(), &b.name)));
    }
    let mut dynos = state.dynos.write().map_err(|_| ApiError::conflict("dyno table poisoned; restart the API"))?;
    state.logs.dynos_reported(&dynos, &by_app);
    *dynos = by_app;
    drop(dynos);
    Ok(axum::Json(serde_json::json!({"status": "ok"})))
}

fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.admin { Ok(()) } else { Err(ApiError::forbidden("only the dyno runner (an admin token) may do this")) }
}
