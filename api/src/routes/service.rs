//! `/apps/{app}/service` (admins, and add-on providers on their own apps; platform-internal):
//! makes an app a service, as add-on servers are: named volumes mounted into every dyno of its
//! formation (they outlive releases and restarts), and the apps whose networks its dynos join,
//! where they are reachable by this app's name. An app not listed cannot reach it.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::Service;

use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/apps/{app}/service", get(show).put(replace))
}

async fn show(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Service>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    Ok(axum::Json(state.store.service(&app.id).await?))
}

async fn replace(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<Service>,
) -> Result<axum::Json<Service>, ApiError> {
    // The platform (an admin), or an add-on provider (a `provider` token) on its own apps,
    // within bounds: see below.
    let provider = !user.admin && user.scope.as_deref() == Some("provider");
    if !user.admin && !provider {
        return Err(ApiError::forbidden("only the platform (an admin token) makes an app a service"));
    }
    let app = find_app(&state, &user, &name).await?;
    if provider {
        if body.host_network || body.api_access {
            return Err(ApiError::forbidden(
                "an add-on provider may not put an app on the host's network or give it the API",
            ));
        }
        // A naming convention (its volumes bear its app's name); who owns a volume is recorded
        // (`volume_owners`), not inferred from the name: see below.
        if let Some(mount) = body.mounts.iter().find(|m| !m.volume.starts_with(&format!("{}-", app.name))) {
            return Err(ApiError::forbidden(format!(
                "volume `{}`: an add-on provider's volumes are named `{}-…`",
                mount.volume, app.name
            )));
        }
    }
    if body.joins.len() > 100 {
        return Err(ApiError::invalid_params("at most 100 joined apps"));
    }
    for (i, mount) in body.mounts.iter().enumerate() {
        let volume_ok = (1..=60).contains(&mount.volume.len())
            && mount.volume.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let path_ok = ouro_types::MOUNT_PATHS.contains(&mount.path.as_str())
            && !body.mounts[..i].iter().any(|m| m.path == mount.path);
        if !volume_ok || !path_ok {
            return Err(ApiError::invalid_params(format!(
                "mount {}:{} is invalid: a volume name of a-z, 0-9 and `-`, at {} (one volume each)",
                mount.volume,
                mount.path,
                ouro_types::MOUNT_PATHS.join(" or ")
            )));
        }
        // The runner's build caches, and the platform's own data for any app but the API.
        let reserved = mount.volume.starts_with("cache-")
            || (mount.volume == ouro_types::platform::DATA_VOLUME && app.name != ouro_types::platform::API_APP);
        if reserved {
            return Err(ApiError::forbidden(format!("volume `{}` is the platform's", mount.volume)));
        }
    }
    if body.host_network && !body.joins.is_empty() {
        return Err(ApiError::invalid_params("an app on the host's network joins no other network"));
    }
    for other in &body.joins {
        if *other == app.name {
            return Err(ApiError::invalid_params("an app is always on its own network"));
        }
        match state.store.app(other).await? {
            None => return Err(ApiError::not_found(format!("app `{other}` not found"))),
            Some(joined) if provider && joined.owner_id != user.id => {
                return Err(ApiError::forbidden(format!("an add-on provider joins only apps it owns, not `{other}`")));
            }
            Some(_) => {}
        }
    }
    if let Err(taken) = state.store.set_service(&app.id, &body).await? {
        return Err(ApiError::conflict(format!(
            "volume `{}` belongs to another app: choose another name (`{}-data`, say)",
            taken.0, app.name
        )));
    }
    Ok(axum::Json(body))
}
