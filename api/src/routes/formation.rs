//! `/apps/{app}/formation`: how many dynos of each process type, of which size; and
//! `/apps/{app}/dynos`, the dynos as the dyno runner last reported them.
//!
//! Scaling is not a release (as on Heroku): it changes how many dynos run, not what they run.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Router};
use ouro_types::{Dyno, DynoState, Formation, FormationBatch, dyno_size, valid_process_type};

use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::formation::FormationRow;
use crate::formation::{commands, scale};
use crate::limits::{MAX_ONE_OFF_TIME_TO_LIVE, ONE_OFF_TIME_TO_LIVE};
use crate::one_offs::NewOneOff;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/formation", get(list).patch(update))
        .route("/apps/{app}/formation/{type}", get(info))
        .route("/apps/{app}/dynos", get(dynos).delete(restart_all).post(run_one_off))
        .route("/apps/{app}/dynos/{target}", axum::routing::delete(restart))
        .route("/apps/{app}/dynos/{dyno}/actions/stop", post(stop))
}

/// `POST /apps/{app}/dynos {"command": "...", "size"?, "env"?}`: a one-off dyno `run.N` on the
/// current release, run once by the dyno runner (detached: its output is not streamed yet).
/// Capped by [`crate::limits`]: so many at once per app, so large an `env`.
async fn run_one_off(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<ouro_types::OneOffCreate>,
) -> Result<(axum::http::StatusCode, axum::Json<Dyno>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let command = body.command.trim();
    if command.is_empty() || command.len() > 4096 || command.contains('\0') {
        return Err(ApiError::invalid_params("command must be 1 to 4096 characters"));
    }
    let size = match &body.size {
        Some(size) => {
            dyno_size(size).ok_or_else(|| ApiError::invalid_params(format!("unknown dyno size `{size}`")))?.name
        }
        None => ouro_types::DEFAULT_DYNO_SIZE,
    };
    crate::one_offs::check_env(&body.env)?;
    let release = state.store.current_release(&app).await?;
    if commands(&state, &app).await?.is_none() {
        return Err(ApiError::invalid_params(format!(
            "app `{}` has no slug to run on yet; deploy first (`ouro deploy`)",
            app.name
        )));
    }
    let time_to_live = body.time_to_live.unwrap_or(ONE_OFF_TIME_TO_LIVE);
    if !(1..=MAX_ONE_OFF_TIME_TO_LIVE).contains(&time_to_live) {
        return Err(ApiError::invalid_params(format!(
            "time_to_live must be 1 to {MAX_ONE_OFF_TIME_TO_LIVE} seconds (a day)"
        )));
    }
    if body.tty && !body.attach {
        return Err(ApiError::invalid_params("a terminal (tty) needs an attached dyno"));
    }
    let new = NewOneOff {
        command,
        size,
        env: &body.env,
        mounts: &[],
        api_access: false,
        slug_id: None,
        attach: body.attach,
        tty: body.tty,
        time_to_live_seconds: Some(time_to_live as i64),
    };
    let one_off = state.store.create_user_one_off(&app.id, new).await?;
    let dyno = Dyno {
        id: one_off.id,
        app: app.name.clone(),
        name: format!("run.{}", one_off.number),
        process_type: "run".into(),
        state: DynoState::Starting,
        size: size.to_string(),
        release: release.version,
        reason: None,
        restarts: 0,
        created_at: one_off.created_at,
        node: None,
    };
    Ok((axum::http::StatusCode::CREATED, axum::Json(dyno)))
}

/// `DELETE /apps/{app}/dynos`: restart every dyno.
async fn restart_all(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    request_restart(&state, &app, "*").await
}

/// `DELETE /apps/{app}/dynos/{web | web.1}`: restart a process type or one dyno.
async fn restart(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, target)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    if !valid_process_type(&target) && parse_dyno_name(&target).is_none() {
        return Err(ApiError::invalid_params(format!("`{target}` is neither a process type nor a dyno like web.1")));
    }
    request_restart(&state, &app, &target).await
}

/// `POST /apps/{app}/dynos/{dyno}/actions/stop`: stops one dyno; as on Heroku, the dyno
/// runner starts it again while the formation wants it.
async fn stop(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, dyno)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    if parse_dyno_name(&dyno).is_none() {
        return Err(ApiError::invalid_params(format!("`{dyno}` is not a dyno name like web.1")));
    }
    request_restart(&state, &app, &dyno).await
}

async fn request_restart(
    state: &AppState,
    app: &AppRow,
    target: &str,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    state.store.request_restart(&app.id, target, now_ms).await?;
    Ok(axum::Json(serde_json::json!({ "app": app.name, "target": target })))
}

/// `web.1` → (`web`, 1).
fn parse_dyno_name(name: &str) -> Option<(&str, u32)> {
    let (process_type, index) = name.rsplit_once('.')?;
    let index: u32 = index.parse().ok().filter(|i| *i >= 1)?;
    valid_process_type(process_type).then_some((process_type, index))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Formation>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let commands = commands(&state, &app).await?;
    let rows = state.store.formation(&app.id).await?;
    Ok(axum::Json(rows.into_iter().map(|r| formation_json(r, commands.as_ref())).collect()))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, process_type)): Path<(String, String)>,
) -> Result<axum::Json<Formation>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let commands = commands(&state, &app).await?;
    let row = state
        .store
        .formation(&app.id)
        .await?
        .into_iter()
        .find(|r| r.process_type == process_type)
        .ok_or_else(|| ApiError::not_found(format!("app `{}` has no process type `{process_type}`", app.name)))?;
    Ok(axum::Json(formation_json(row, commands.as_ref())))
}

/// `{"updates": [{"type": "web", "quantity": 2, "size": "standard-2x"}]}`: all or nothing.
async fn update(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(batch): Json<FormationBatch>,
) -> Result<axum::Json<Vec<Formation>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let (rows, commands) = scale(&state, &user, &app, batch).await?;
    Ok(axum::Json(rows.into_iter().map(|r| formation_json(r, commands.as_ref())).collect()))
}

async fn dynos(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Dyno>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let mut dynos = state.dynos.read().map(|d| d.get(&app.name).cloned().unwrap_or_default()).unwrap_or_default();
    // One-offs asked for but not reported yet (the runner reports within moments) are
    // `starting`, as Heroku lists a `run.N` as soon as `heroku run` returns.
    let unreported: Vec<_> = state
        .store
        .running_one_offs(&app.id)
        .await?
        .into_iter()
        .filter(|o| !dynos.iter().any(|d| d.name == format!("run.{}", o.number)))
        .collect();
    if !unreported.is_empty() {
        let version = state.store.current_release(&app).await?.version;
        dynos.extend(unreported.into_iter().map(|o| Dyno {
            id: o.id,
            app: app.name.clone(),
            name: format!("run.{}", o.number),
            process_type: "run".into(),
            state: DynoState::Starting,
            size: o.size,
            release: version,
            reason: None,
            restarts: 0,
            created_at: o.created_at,
            node: None,
        }));
    }
    Ok(axum::Json(dynos))
}

fn formation_json(row: FormationRow, commands: Option<&BTreeMap<String, String>>) -> Formation {
    Formation {
        command: commands.and_then(|c| c.get(&row.process_type).cloned()),
        id: row.id,
        process_type: row.process_type,
        quantity: row.quantity,
        size: row.size,
        updated_at: row.updated_at,
    }
}
