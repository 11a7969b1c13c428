//! The chaos monkey's hand (`ouro chaos`): `POST /chaos/kill` on the runner's listener, behind
//! its secret like `/routes`, kills one thing of this installation at once, as a crash would:
//! - `dyno` (with `app`): one of the app's running web dynos, at random (SIGKILL);
//! - `router`, `api`: the component's dyno (the apps `ouro-router`, `ouro-api`);
//! - `addons` (with `app`): one of the add-on servers on the app's network (their dynos join
//!   it), at random;
//! - `runner`: this process, right after it answers (SIGKILL): its supervisor (`--supervise`,
//!   or systemd) starts it again, and it adopts the dynos that kept running.
//!
//! The answer says what was killed (`app`, `dyno`, `container`), so that the caller can tell
//! when it is back. Nothing is restarted here: healing is the platform's ordinary work.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bollard::Docker;
use bollard::container::{KillContainerOptions, ListContainersOptions};
use serde::Deserialize;
use serde_json::json;

use crate::docker::{LABEL_APP, LABEL_INDEX, LABEL_PLATFORM, LABEL_TYPE, network_name};
use ouro_types::platform::{API_APP, ROUTER_APP};

#[derive(Clone)]
struct Hand {
    platform: String,
}

#[derive(Deserialize)]
struct Kill {
    target: String,
    #[serde(default)]
    app: Option<String>,
}

pub fn routes(platform: &str) -> Router {
    Router::new().route("/chaos/kill", post(kill)).with_state(Hand { platform: platform.to_string() })
}

/// A running container of this installation, as a kill's answer names it.
struct Victim {
    container: String,
    app: String,
    dyno: String,
}

async fn kill(State(hand): State<Hand>, Json(kill): Json<Kill>) -> Response {
    if kill.target == "runner" {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tracing::warn!("killed by `ouro chaos`");
            // SIGKILL, as a crash or the OOM killer would end it: nothing of it runs after.
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
            std::process::abort();
        });
        let answer =
            json!({"target": "runner", "app": null, "dyno": "runner", "container": null, "pid": std::process::id()});
        return (StatusCode::ACCEPTED, Json(answer)).into_response();
    }
    let docker = match Docker::connect_with_local_defaults() {
        Ok(docker) => docker,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "docker", format!("the Docker Engine: {e}")),
    };
    let candidates = match (kill.target.as_str(), kill.app.as_deref()) {
        ("dyno", Some(app)) => running(&docker, &hand.platform, app, Some("web")).await,
        ("router", _) => running(&docker, &hand.platform, ROUTER_APP, None).await,
        ("api", _) => running(&docker, &hand.platform, API_APP, None).await,
        ("addons", Some(app)) => servers_of(&docker, &hand.platform, app).await,
        ("dyno" | "addons", None) => {
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", format!("{} needs an app", kill.target));
        }
        (other, _) => {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_params",
                format!("no target `{other}`: dyno, router, api, addons or runner"),
            );
        }
    };
    let candidates = match candidates {
        Ok(c) if c.is_empty() => {
            return refuse(StatusCode::NOT_FOUND, "not_found", format!("nothing of `{}` runs to kill", kill.target));
        }
        Ok(c) => c,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "docker", e.to_string()),
    };
    let victim = &candidates[pick(candidates.len())];
    let options = KillContainerOptions { signal: "SIGKILL" };
    if let Err(e) = docker.kill_container(&victim.container, Some(options)).await {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "docker", format!("killing {}: {e}", victim.container));
    }
    tracing::warn!(target = %kill.target, app = %victim.app, dyno = %victim.dyno, "killed by `ouro chaos`");
    let answer = json!({"target": kill.target, "app": victim.app, "dyno": victim.dyno, "container": victim.container});
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// A random index below `n` (the clock's nanoseconds: a monkey needs no better).
fn pick(n: usize) -> usize {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (nanos as usize / 7) % n.max(1)
}

fn victim(c: bollard::models::ContainerSummary) -> Option<Victim> {
    let labels = c.labels.unwrap_or_default();
    Some(Victim {
        container: c.id?,
        app: labels.get(LABEL_APP)?.clone(),
        dyno: format!("{}.{}", labels.get(LABEL_TYPE)?, labels.get(LABEL_INDEX)?),
    })
}

/// The running dynos of `app` (of `process_type`, if given).
async fn running(
    docker: &Docker,
    platform: &str,
    app: &str,
    process_type: Option<&str>,
) -> Result<Vec<Victim>, bollard::errors::Error> {
    let mut labels = vec![format!("{LABEL_PLATFORM}={platform}"), format!("{LABEL_APP}={app}")];
    if let Some(process_type) = process_type {
        labels.push(format!("{LABEL_TYPE}={process_type}"));
    }
    let filters = HashMap::from([("label".to_string(), labels), ("status".to_string(), vec!["running".to_string()])]);
    let list = docker.list_containers(Some(ListContainersOptions { filters, ..Default::default() })).await?;
    Ok(list.into_iter().filter_map(victim).collect())
}

/// The running dynos of other apps on `app`'s network: the add-on servers attached to it.
async fn servers_of(docker: &Docker, platform: &str, app: &str) -> Result<Vec<Victim>, bollard::errors::Error> {
    let network = network_name(platform, app);
    let filters = HashMap::from([
        ("label".to_string(), vec![format!("{LABEL_PLATFORM}={platform}")]),
        ("network".to_string(), vec![network]),
        ("status".to_string(), vec!["running".to_string()]),
    ]);
    let list = docker.list_containers(Some(ListContainersOptions { filters, ..Default::default() })).await?;
    Ok(list.into_iter().filter_map(victim).filter(|v| v.app != app).collect())
}

fn refuse(status: StatusCode, id: &str, message: String) -> Response {
    (status, Json(json!({"id": id, "message": message}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pick_is_always_in_range() {
        for n in 1..50 {
            assert!(pick(n) < n);
        }
        assert_eq!(pick(0), 0);
    }
}
