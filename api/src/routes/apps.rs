//! `/apps`: create (given or generated name), list, info, delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::{App, AppCreate, Owner, TeamRef, valid_app_name};
use rand::Rng;

use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::{AuditApp, User};
use crate::error::Json;
use crate::{ApiError, AppState, Error, Settings};

pub fn routes() -> Router<AppState> {
    Router::new().route("/apps", get(list).post(create)).route("/apps/{app}", get(info).delete(destroy))
}

async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    base: ClientBase,
    Json(body): Json<AppCreate>,
) -> Result<Response, ApiError> {
    let team = match &body.team {
        Some(team) => Some(team_to_create_in(&state, &user, team).await?),
        None => None,
    };
    let team = team.as_deref();
    let app = match body.name {
        Some(name) => {
            if !valid_app_name(&name) {
                return Err(ApiError::invalid_params(format!(
                    "app name `{name}` is invalid: use 3 to 30 lowercase letters, digits and dashes, \
                     starting with a letter and not ending with a dash"
                )));
            }
            match crate::apps::create(&state.store, &user, &name, team).await {
                Err(Error::Conflict) => {
                    return Err(ApiError::conflict(format!("app name `{name}` is already taken; pick another")));
                }
                other => other?,
            }
        }
        None => create_with_generated_name(&state, &user, team).await?,
    };
    let audit = AuditApp(app.name.clone());
    let mut response = (StatusCode::CREATED, axum::Json(app_json(&state.settings, &base, app))).into_response();
    response.extensions_mut().insert(audit);
    Ok(response)
}

/// The id of team `name`, in which `user` may make apps: any of its members (and admins).
async fn team_to_create_in(state: &AppState, user: &User, name: &str) -> Result<String, ApiError> {
    let missing = || ApiError::not_found(format!("no team `{name}`; `ouro teams` lists yours"));
    let team = state.store.team(name).await?.ok_or_else(missing)?;
    if !user.admin && state.store.team_role(&team.id, &user.id).await?.is_none() {
        return Err(missing());
    }
    Ok(team.id)
}

async fn create_with_generated_name(state: &AppState, user: &User, team: Option<&str>) -> Result<AppRow, ApiError> {
    for _ in 0..10 {
        match crate::apps::create(&state.store, user, &generated_name(), team).await {
            Err(Error::Conflict) => continue,
            other => return Ok(other?),
        }
    }
    Err(ApiError::conflict("could not find a free app name; pass one"))
}

/// Heroku-style `adjective-noun-1234`.
fn generated_name() -> String {
    const ADJECTIVES: &[&str] =
        &["quiet", "bold", "calm", "brave", "swift", "sunny", "misty", "amber", "lively", "gentle", "polar", "rapid"];
    const NOUNS: &[&str] = &[
        "river", "forest", "meadow", "harbor", "canyon", "glacier", "island", "summit", "valley", "comet", "falcon",
        "reef",
    ];
    let mut rng = rand::rng();
    format!(
        "{}-{}-{:04}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        NOUNS[rng.random_range(0..NOUNS.len())],
        rng.random_range(0..10_000)
    )
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    base: ClientBase,
) -> Result<axum::Json<Vec<App>>, ApiError> {
    let owner = (!user.admin).then_some(user.id.as_str());
    let apps = state.store.apps(owner).await?;
    // The platform's own apps are reached by name (`-a ouro-builder`), not listed.
    let apps = apps.into_iter().filter(|a| !ouro_types::platform::is_system_app(&a.name));
    Ok(axum::Json(apps.map(|a| app_json(&state.settings, &base, a)).collect()))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    base: ClientBase,
    Path(name): Path<String>,
) -> Result<axum::Json<App>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(app_json(&state.settings, &base, app)))
}

async fn destroy(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    base: ClientBase,
    Path(name): Path<String>,
) -> Result<axum::Json<App>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    // Its add-ons are deprovisioned first; a provider that cannot be reached keeps the app.
    for addon in state.store.owned_addons(&app.id).await? {
        crate::addons::provisioning::deprovision(&state, &user, &addon).await?;
    }
    state.store.delete_app(&app.id).await?;
    // Its git repository goes too (under the push lock, so no push is half-way).
    let repo = crate::git::repo_path(&state, &app.id);
    {
        let lock = state.pushes.of(&app.id);
        let _guard = lock.lock().await;
        match tokio::fs::remove_dir_all(&repo).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::error!(app = %app.name, error = %e, "could not remove the app's git repository");
            }
            _ => {}
        }
    }
    Ok(axum::Json(app_json(&state.settings, &base, app)))
}

/// The API's URL as this client reached it (the scheme of its connection, its `Host`), for
/// the git URLs it is shown: a client on another machine gets one it can push to. Without a
/// usable `Host`, `OURO_API_URL`'s.
pub(crate) struct ClientBase(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientBase {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let tls = parts.extensions.get::<ouro_serve::Transport>() == Some(&ouro_serve::Transport::Tls);
        let host = parts.headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).filter(|h| {
            !h.is_empty() && h.len() <= 255 && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        });
        Ok(ClientBase(match host {
            Some(host) => format!("{}://{host}", if tls { "https" } else { "http" }),
            None => String::new(),
        }))
    }
}

pub(crate) fn app_json(settings: &Settings, base: &ClientBase, app: AppRow) -> App {
    let base = if base.0.is_empty() { settings.public_url.as_str() } else { base.0.as_str() };
    App {
        web_url: crate::apps::web_url(settings, &app.name),
        git_url: format!("{base}/{}.git", app.name),
        id: app.id,
        name: app.name,
        owner: Owner { id: app.owner_id, email: app.owner_email },
        team: app.team.map(|(id, name)| TeamRef { id, name }),
        created_at: app.created_at,
        updated_at: app.updated_at,
        released_at: app.released_at,
        current_release: app.current_version,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_names_are_valid() {
        for _ in 0..200 {
            let name = super::generated_name();
            assert!(ouro_types::valid_app_name(&name), "{name}");
        }
    }
}
