//! `GET /nodes` (admins; `ouro nodes`): the nodes of the swarm the platform runs on, as the
//! dyno runner last reported them, with how many dynos each runs. Empty on a single engine.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use ouro_types::ClusterNode;

use crate::auth::User;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/nodes", get(list))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<Json<Vec<ClusterNode>>, ApiError> {
    if !user.admin {
        return Err(ApiError::forbidden("only an admin sees the platform's nodes"));
    }
    let mut nodes = state.nodes.read().map(|n| n.clone()).unwrap_or_default();
    let dynos = state.dynos.read().map(|d| d.clone()).unwrap_or_default();
    for node in &mut nodes {
        node.dynos = dynos.values().flatten().filter(|d| d.node.as_deref() == Some(node.name.as_str())).count() as u32;
    }
    Ok(Json(nodes))
}
