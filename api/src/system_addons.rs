//! The platform's own add-on providers: the system apps `ouro-postgresql` and `ouro-redis`.
//!
//! At start, for each kind in `OURO_ADDON_PROVIDERS` (default `postgresql,redis`), the API
//! makes sure that
//! - the app `ouro-<kind>` exists with `api_access`, owned by the user `<kind>@addons.ouro.local`
//!   (no admin), and its config holds the provider's kind, its contract password and a token
//!   of that user scoped to `provider`: it manages the server apps it makes and reads its own
//!   app, nothing else (`auth::PROVIDER_ROUTES`; the service's volumes and joins are bounded
//!   too, see `routes/service.rs`);
//! - the provider `<kind>` is registered at `app:ouro-<kind>` (a provider of that name already
//!   registered elsewhere, by a third party, is left alone and no app is made);
//! - no server app of its add-ons joins the provider app's network (servers made before each
//!   had a network of its own did);
//! - the app's last build is of the provider's source (the `ouro-addons` program of the
//!   `addons/` crate, read from beside the API's binary, a `Procfile` running it and the
//!   `.ouro-<kind>` marker its server buildpack detects): when not, it builds it like
//!   `POST /apps/{app}/builds`, in the background, with the `<kind>-server` buildpack. That slug
//!   carries both the provider (`web`) and the server binaries (`server`); the provider
//!   deploys the same slug to every server app it makes.

use std::collections::BTreeMap;

use ouro_types::BuildStatus;
use sha2::{Digest, Sha256};

use crate::apps::AppRow;
use crate::embedded::{program, reproducible_tar_gz};
use crate::releases::Change;
use crate::{AppState, Result};

pub use ouro_types::platform::{ADDON_KINDS as KINDS, provider_app};

/// The user a kind's provider acts as: it owns the provider app and the server apps.
fn provider_user(kind: &str) -> String {
    format!("{kind}@addons.ouro.local")
}

/// The provider's build source: its program (`provider`, the bytes of `ouro-addons`), its
/// Procfile and its server's marker.
pub fn source(kind: &str, provider: &[u8]) -> std::io::Result<Vec<u8>> {
    let procfile = b"web: /app/bin/ouro-addons\n".as_slice();
    let marker = format!("The {kind} add-on provider and its server, built by Ouro.\n").into_bytes();
    let marker_path = format!(".ouro-{kind}");
    let mut files: Vec<(&str, u32, &[u8])> = vec![("bin/ouro-addons", 0o755, provider)];
    files.push(("Procfile", 0o644, procfile));
    files.push((marker_path.as_str(), 0o644, &marker));
    files.sort();
    reproducible_tar_gz(&files, "")
}

/// Makes every configured provider app, registers it, and starts its build when its source
/// changed. Errors are logged: the API serves without its providers rather than not at all.
pub async fn ensure_all(state: &AppState) {
    for kind in &state.settings.addon_providers {
        if let Err(e) = ensure(state, kind).await {
            tracing::error!(kind = %kind, error = %e, "could not set up the add-on provider");
        }
    }
}

/// Makes `kind`'s provider app, registers it, and starts its build when its source changed
/// (the last successful or running build is of another source). Answers the source's blob
/// key (`SHA256:<hex>`, the builds' `source_blob`), or `None` when a provider of that name is
/// registered elsewhere and Ouro makes none.
pub async fn ensure(state: &AppState, kind: &str) -> Result<Option<String>> {
    let name = provider_app(kind);
    let url = format!("app:{name}");
    let provider = match state.store.provider(kind).await? {
        Some(p) if p.url != url => {
            tracing::info!(kind, url = %p.url, "a provider of this name is registered elsewhere; not making {name}");
            return Ok(None);
        }
        Some(p) => p,
        None => {
            let (password, _) = crate::auth::new_scoped_secret();
            state.store.create_provider(kind, &url, &password).await?
        }
    };
    let user = state.store.ensure_system_user(&provider_user(kind), false).await?;
    let mut app = crate::builder_app::ensure_system_app(state, &name).await?;
    if app.owner_id != user.id {
        state.store.set_app_owner(&app.id, &user.id).await?;
        app.owner_id = user.id.clone();
        app.owner_email = user.email.clone();
    }
    let mut service = state.store.service(&app.id).await?;
    if !service.api_access {
        service.api_access = true;
        // The provider app mounts no volume: none can be taken.
        let _ = state.store.set_service(&app.id, &service).await?;
    }
    unjoin_servers(state, &provider.id, &name).await?;
    let buildpacks = vec![format!("{kind}-server")];
    if state.store.buildpacks(&app.id).await? != buildpacks {
        state.store.set_buildpacks(&app.id, &buildpacks).await?;
    }
    set_config(state, &app, kind, &provider.password).await?;
    build_when_changed(state, app, kind).await.map(Some)
}

/// Servers made before each had a network of its own joined their provider's app: all the
/// servers of a kind shared its network, one hop from each other. That join goes (the provider
/// now joins each server's network instead: `desired_state`); the runner takes the server's
/// dynos off that network.
async fn unjoin_servers(state: &AppState, provider_id: &str, provider_app: &str) -> Result<()> {
    for server in state.store.service_apps(provider_id).await? {
        let Some(app) = state.store.app(&server).await? else {
            continue;
        };
        let mut service = state.store.service(&app.id).await?;
        if !service.joins.iter().any(|j| j == provider_app) {
            continue;
        }
        service.joins.retain(|j| j != provider_app);
        // The mounts are the same: no volume can be taken.
        let _ = state.store.set_service(&app.id, &service).await?;
        tracing::info!(server = %server, "the add-on server no longer joins {provider_app}'s network");
    }
    Ok(())
}

/// Sets the provider's config vars that are missing or stale, in one release.
async fn set_config(state: &AppState, app: &AppRow, kind: &str, password: &str) -> Result<()> {
    let current = match app.current_release_id {
        Some(_) => state.store.current_release(app).await?.config,
        None => BTreeMap::new(),
    };
    let mut patch = BTreeMap::new();
    let wanted = [("OURO_ADDON_KIND", kind), ("OURO_PROVIDER_PASSWORD", password), ("OURO_PROVIDER_APP", &app.name)];
    for (key, value) in wanted {
        if current.get(key).map(String::as_str) != Some(value) {
            patch.insert(key.to_string(), Some(value.to_string()));
        }
    }
    let token_works = match current.get("OURO_API_TOKEN") {
        Some(token) => crate::auth::authenticate(&state.store, token)
            .await
            .ok()
            .flatten()
            .is_some_and(|user| !user.admin && user.scope.as_deref() == Some("provider")),
        None => false,
    };
    if !token_works {
        let description = format!("{} provider", app.name);
        let token =
            crate::auth::system_token(&state.store, &provider_user(kind), &description, Some("provider")).await?;
        patch.insert("OURO_API_TOKEN".to_string(), Some(token));
    }
    if !patch.is_empty() {
        state.create_release(app, "ouro", Change::Config(patch)).await?;
    }
    Ok(())
}

/// Builds the provider's source unless the app's last successful build is of it already (or a
/// build is running); answers the source's blob key.
async fn build_when_changed(state: &AppState, app: AppRow, kind: &str) -> Result<String> {
    let (kind_owned, bin_dir) = (kind.to_string(), state.settings.bin_dir.clone());
    let source = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        Ok(source(&kind_owned, &program(&bin_dir, "ouro-addons")?)?)
    })
    .await
    .map_err(std::io::Error::other)??;
    let digest = hex::encode(Sha256::digest(&source));
    let blob = format!("SHA256:{digest}");
    let builds = state.store.builds(&app.id).await?;
    let built = builds.iter().rev().find(|b| b.status != BuildStatus::Failed);
    if built.is_some_and(|b| b.source_blob == blob || b.status != BuildStatus::Succeeded) {
        return Ok(blob);
    }
    let Ok(guard) = state.pushes.of(&app.id).try_lock_owned() else {
        return Ok(blob);
    };
    crate::blob::put_bytes(state.blobs.as_ref(), &source, "provider").await?;
    let version = format!("{}-{}", env!("CARGO_PKG_VERSION"), &digest[..12]);
    // Another API process (a handover's) may have started this very build meanwhile.
    let Some(build) = state.store.create_build_once(&app.id, &version, "ouro", &blob, source.len() as i64).await?
    else {
        return Ok(blob);
    };
    tracing::info!(app = %app.name, build = %build.id, "building the add-on provider");
    crate::pipeline::spawn_unwatched(state.clone(), app, build, "ouro".into(), guard);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_source_is_reproducible_and_names_its_server() {
        let a = source("redis", b"provider").unwrap();
        assert_eq!(a, source("redis", b"provider").unwrap());
        assert_ne!(a, source("postgresql", b"provider").unwrap());
        assert_ne!(a, source("redis", b"another provider").unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&a[..]));
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        for expected in ["bin/ouro-addons", "Procfile", ".ouro-redis"] {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
    }
}
