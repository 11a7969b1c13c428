//! `GET /stacks` (Heroku's resource): the stack dynos run on, as the dyno runner last reported
//! it: its image and when Debian's updates and security updates were installed in it, so that
//! `ouro stack` can say how old it is; and a stack update asked for that the runner has not
//! reported yet. `POST /stacks/debian-13/actions/update` (admins): `ouro stack:update`, see
//! `stack_updates.rs`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use ouro_types::Stack;
use serde_json::{Value, json};

use crate::auth::User;
use crate::{ApiError, AppState, stack_updates};

pub fn routes() -> Router<AppState> {
    Router::new().route("/stacks", get(list)).route("/stacks/{stack}/actions/update", post(update))
}

async fn list(State(state): State<AppState>) -> Result<Json<Vec<Stack>>, ApiError> {
    let mut reported = state.stacks.read().map(|s| s.clone()).unwrap_or_default();
    if let Some(latest) = state.store.latest_stack_update().await? {
        for stack in reported.iter_mut().filter(|s| s.name == ouro_types::STACK) {
            if stack.update.as_deref() != Some(latest.id.as_str()) {
                stack.pending_update = Some(latest.id.clone());
            }
        }
    }
    Ok(Json(reported))
}

async fn update(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(stack): Path<String>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    if !user.admin {
        return Err(ApiError::forbidden("only an admin updates the platform's stack"));
    }
    if stack != ouro_types::STACK {
        return Err(ApiError::not_found(format!(
            "there is no stack `{stack}` to update: the run stack is {} (ouro stack lists them)",
            ouro_types::STACK
        )));
    }
    let (update, releases) = stack_updates::request(&state, &user.email).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(json!({"stack": stack, "update": update, "releases": releases}))))
}
