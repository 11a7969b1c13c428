//! `/audit-events`: the audit log: all of it for admins; an app's (`?app=NAME`) for whoever may
//! view the app.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::AuditEvent;
use serde::Deserialize;

use crate::auth::User;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/audit-events", get(list))
}

#[derive(Deserialize)]
struct Filter {
    app: Option<String>,
    limit: Option<i64>,
}

/// The newest events (default 100, at most 1000), oldest first; `?app=NAME` narrows to one app
/// (a user who may view it sees these; only admins see the whole log).
async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Query(filter): Query<Filter>,
) -> Result<axum::Json<Vec<AuditEvent>>, ApiError> {
    match (&filter.app, user.admin) {
        (_, true) => {}
        (Some(app), false) => {
            crate::apps::find_app(&state, &user, app).await?;
        }
        (None, false) => {
            return Err(ApiError::forbidden("only admins read the whole audit log; ask for one app's with ?app=NAME"));
        }
    }
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.audit_events(filter.app.as_deref(), limit).await?;
    Ok(axum::Json(
        rows.into_iter()
            .map(|r| AuditEvent {
                id: r.id,
                actor: r.actor,
                action: r.action,
                target: r.target,
                status: r.status,
                created_at: r.created_at,
            })
            .collect(),
    ))
}
