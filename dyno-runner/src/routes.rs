//! The route table for routers: `GET /routes?after=N` answers at once when the table's
//! version is above N, otherwise holds the request until it is (or 25 s pass, then answers the
//! current table). Routers thus learn changes as they happen without polling the API.

use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use ouro_types::RouteTable;
use serde::Deserialize;
use tokio::sync::watch;

const LONG_POLL: Duration = Duration::from_secs(25);

#[derive(Deserialize)]
struct After {
    after: Option<u64>,
}

pub fn router(routes: watch::Receiver<RouteTable>) -> Router {
    Router::new().route("/routes", get(serve_routes)).with_state(routes)
}

async fn serve_routes(
    State(mut routes): State<watch::Receiver<RouteTable>>,
    Query(q): Query<After>,
) -> axum::Json<RouteTable> {
    let after = q.after.unwrap_or(0);
    let newer = routes.wait_for(|table| table.version > after);
    let _ = tokio::time::timeout(LONG_POLL, newer).await;
    let table = routes.borrow().clone();
    axum::Json(table)
}

/// Publishes `routes` (ignoring `version`) if they differ from the current table, with the
/// next version number.
pub fn publish(tx: &watch::Sender<RouteTable>, mut routes: Vec<ouro_types::Route>) {
    routes.sort_by(|a, b| a.app.cmp(&b.app));
    for route in &mut routes {
        route.backends.sort_by(|a, b| a.dyno.cmp(&b.dyno).then_with(|| a.addr.cmp(&b.addr)));
    }
    tx.send_if_modified(|table| {
        if table.routes == routes {
            return false;
        }
        table.version += 1;
        table.routes = routes;
        true
    });
}
