//! Logs: `GET /apps/{app}/logs` reads and follows an app's log; `POST /runner/logs` is where
//! the dyno runner ships its dynos' output and the router's request lines; `/apps/{app}/
//! log-drains` lists, adds and removes the app's drains. The hub itself is `crate::logs`.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use ouro_logs::{DrainUrl, Filter, LogLine, RECENT_LINES};

use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::limits::DRAINS_PER_APP;
use crate::{ApiError, AppState};

/// Most lines one `POST /runner/logs` carries, and its largest body.
const SHIPPED_LINES: usize = 1000;
const SHIPPED_BYTES: usize = 16 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps/{app}/logs", get(read))
        .route("/apps/{app}/log-drains", get(drains).post(add_drain))
        .route("/apps/{app}/log-drains/{drain}", delete(remove_drain))
        .route("/runner/logs", post(shipped).layer(DefaultBodyLimit::max(SHIPPED_BYTES)))
}

#[derive(serde::Deserialize)]
struct ReadQuery {
    /// How many recent lines (default 100, at most 1,500).
    lines: Option<usize>,
    /// Follow new lines after the recent ones.
    #[serde(default)]
    tail: bool,
    /// `web.1` (one dyno), `web` (every `web.N`), `router`, `api`…
    dyno: Option<String>,
    /// `app` (dynos' output) or `ouro` (the platform's lines).
    source: Option<String>,
}

/// `GET /apps/{app}/logs?lines=N&tail=true&dyno=web.1&source=app`: the app's recent lines,
/// in time order, one per line of `text/plain`; with `tail`, then every new line as it comes.
/// A reader that falls behind loses lines (an `Error L10` line says how many), never the
/// API's memory.
async fn read(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let filter = Filter::parse(query.dyno.as_deref(), query.source.as_deref())
        .map_err(|e| ApiError::invalid_params(e.to_string()))?;
    let wanted = query.lines.unwrap_or(100).min(RECENT_LINES);
    let as_bytes = |line: LogLine| Ok::<_, std::convert::Infallible>(Bytes::from(format!("{line}\n")));
    // Lines arrive in the order their sources shipped them (a dyno's and the router's lines
    // about one request take different paths): what was kept is shown in time order; what
    // follows, as it comes.
    let by_time = |mut lines: Vec<LogLine>| {
        lines.sort_by_key(|line| line.at);
        lines
    };
    let body = if query.tail {
        let (recent, follower) = state.logs.hub().recent_and_follow(&app.name, filter, wanted);
        let recent = by_time(recent);
        let new = futures_util::stream::unfold(follower, |mut follower| async move {
            follower.next().await.map(|line| (line, follower))
        });
        // A stopping API ends the stream (its successor serves the next `ouro logs --tail`).
        let lines = futures_util::stream::iter(recent).chain(new).take_until(state.stopped());
        Body::from_stream(lines.map(as_bytes))
    } else {
        let recent = by_time(state.logs.hub().recent(&app.name, &filter, wanted));
        Body::from_stream(futures_util::stream::iter(recent).map(as_bytes))
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")];
    Ok((headers, body).into_response())
}

/// `POST /runner/logs` (the runner's token): a JSON array of log lines to publish.
async fn shipped(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Json(lines): Json<Vec<LogLine>>,
) -> Result<StatusCode, ApiError> {
    if !user.admin {
        return Err(ApiError::forbidden("only the dyno runner ships log lines"));
    }
    if lines.len() > SHIPPED_LINES {
        return Err(ApiError::invalid_params(format!("at most {SHIPPED_LINES} lines a request")));
    }
    for line in lines {
        state.logs.publish(line);
    }
    Ok(StatusCode::NO_CONTENT)
}

fn drain_json(drain: &crate::logs::LogDrainRow) -> serde_json::Value {
    serde_json::json!({ "id": drain.id, "url": drain.url, "created_at": drain.created_at })
}

/// `GET /apps/{app}/log-drains`: the app's drains, oldest first.
async fn drains(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<serde_json::Value>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(state.store.log_drains(&app.id).await?.iter().map(drain_json).collect()))
}

#[derive(serde::Deserialize)]
struct NewDrain {
    url: String,
}

/// `POST /apps/{app}/log-drains {"url": "syslog+tcp://host:port" | "https://…"}`: every line
/// of the app from now on also goes there (RFC 5424).
async fn add_drain(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<NewDrain>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let parsed = DrainUrl::parse(body.url.trim()).map_err(|e| ApiError::invalid_params(e.to_string()))?;
    if let Some(why) = state.logs.drain_refused(&parsed).await {
        return Err(ApiError::invalid_params(why));
    }
    let url = parsed.to_string();
    if state.store.log_drains(&app.id).await?.len() >= DRAINS_PER_APP {
        return Err(ApiError::invalid_params(format!("an app has at most {DRAINS_PER_APP} drains; remove one first")));
    }
    let drain = match state.store.add_log_drain(&app.id, &url).await {
        Err(crate::Error::Conflict) => return Err(ApiError::conflict(format!("{} drains to {url} already", app.name))),
        other => other?,
    };
    reload(&state, &app).await?;
    state.logs.event(&app.name, "api", format!("Add drain {} by {}", drain.id, user.email));
    Ok((StatusCode::CREATED, axum::Json(drain_json(&drain))))
}

/// `DELETE /apps/{app}/log-drains/{drain}`: the drain named by its id or (URL-encoded) URL.
async fn remove_drain(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, drain)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let removed =
        state.store.remove_log_drain(&app.id, &drain).await?.ok_or_else(|| {
            ApiError::not_found(format!("{} has no drain `{drain}`; `ouro drains` lists them", app.name))
        })?;
    reload(&state, &app).await?;
    state.logs.event(&app.name, "api", format!("Remove drain {} by {}", removed.id, user.email));
    Ok(axum::Json(drain_json(&removed)))
}

async fn reload(state: &AppState, app: &crate::apps::AppRow) -> Result<(), ApiError> {
    let urls: Vec<String> = state.store.log_drains(&app.id).await?.into_iter().map(|d| d.url).collect();
    state.logs.set_drains(&app.name, &urls);
    Ok(())
}
