//! `GET /stacks` (Heroku's resource): the stack dynos run on, as the dyno runner last reported
//! it: its image and when Debian's updates and security updates were installed in it, so that
//! `ouro stack` can say how old it is.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use ouro_types::Stack;

use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/stacks", get(list))
}

async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<Stack>>, ApiError> {
    let reported = state.stacks.read().map(|s| s.clone()).unwrap_or_default();
    Ok(axum::Json(reported))
}
