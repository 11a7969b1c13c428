//! Attached one-off dynos (`ouro run`): `GET /apps/{app}/dynos/run.N/attach` (the caller) and
//! `GET /runner/attach/{app}/run.N` (the runner), both HTTP upgrades to `ouro-attach`, paired
//! by `crate::attach::Rendezvous`.

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::attach::UPGRADE;

use crate::access::Permission;
use crate::apps::AppRow;
use crate::apps::find_app;
use crate::attach::Side;
use crate::auth::{PresentedToken, User};
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/dynos/{dyno}/attach", get(caller))
        .route("/runner/attach/{app}/{dyno}", get(runner))
}

/// The caller's half: the app's owner (or an admin) attaches to its running attached one-off.
async fn caller(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, dyno)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    attached_one_off(&state, &app, &dyno).await?;
    switch(state, request, format!("{}/{dyno}", app.name), Side::Caller)
}

/// The runner's half, once it has created the container (runner token).
async fn runner(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, dyno)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    if !user.admin {
        return Err(ApiError::forbidden("only the dyno runner attaches dynos"));
    }
    let app = state.store.app(&name).await?.ok_or_else(|| ApiError::not_found(format!("app `{name}` not found")))?;
    attached_one_off(&state, &app, &dyno).await?;
    switch(state, request, format!("{}/{dyno}", app.name), Side::Dyno)
}

/// `run.N` when it names an attached one-off of `app` that has not finished.
async fn attached_one_off(state: &AppState, app: &AppRow, dyno: &str) -> Result<(), ApiError> {
    let number = dyno.strip_prefix("run.").and_then(|n| n.parse::<i64>().ok());
    let running = state.store.running_one_offs(&app.id).await?;
    match number.and_then(|n| running.iter().find(|o| o.number == n)) {
        Some(one_off) if one_off.attach => Ok(()),
        Some(_) => Err(ApiError::invalid_params(format!(
            "{dyno} runs detached: its output is in `ouro logs -a {} --dyno {dyno}`",
            app.name
        ))),
        None => Err(ApiError::not_found(format!("{} has no one-off dyno {dyno} running", app.name))),
    }
}

/// Answers `101` and, once the connection switched, takes it to the rendezvous.
fn switch(state: AppState, mut request: Request, key: String, side: Side) -> Result<Response, ApiError> {
    let asked = request.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok());
    if !asked.is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE)) {
        return Err(ApiError::invalid_params(format!(
            "attaching needs `Connection: Upgrade` and `Upgrade: {UPGRADE}`"
        )));
    }
    let upgrade = hyper::upgrade::on(&mut request);
    // The session ends (both connections close) once the token it was opened with is refused.
    let token = request.extensions().get::<PresentedToken>().map(|t| t.0.clone()).unwrap_or_default();
    let app = key.split('/').next().unwrap_or_default().to_string();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let session = state.attachments.meet(key.clone(), side, hyper_util::rt::TokioIo::new(upgraded));
                tokio::select! {
                    () = session => {}
                    () = crate::auth::until_refused(state.store.clone(), token, Some((app, Permission::Deploy))) => {
                        tracing::info!(%key, "attached session ended: its token was revoked or expired");
                    }
                }
            }
            Err(e) => tracing::debug!(%key, error = %e, "the connection did not switch protocols"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, UPGRADE)
        .body(axum::body::Body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))
}
