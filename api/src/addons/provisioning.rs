//! An add-on's life at the API: provisioning (at once, or polled in the background until the
//! provider says it is ready), its config vars on every attached app, its attachment names,
//! and deprovisioning.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use ouro_types::{AddonState, ConfigVarsPatch, valid_config_key};
use rand::Rng;

use super::provider::{call_provider, provider_config, provider_request};
use super::store::{AddonRow, ProviderRow};
use crate::apps::AppRow;
use crate::auth::User;
use crate::releases::Change;
use crate::{ApiError, AppState};

/// How long a provider may take to provision asynchronously, from the add-on's creation.
const PROVISION_DEADLINE: Duration = Duration::from_secs(600);

/// Picks up, after a restart of the API, the add-ons still provisioning.
pub(crate) async fn resume_provisioning(state: &AppState) -> crate::Result<()> {
    for addon in state.store.provisioning_addons().await? {
        tokio::spawn(finish_provisioning(state.clone(), addon, "ouro".into()));
    }
    Ok(())
}

/// Polls the provider (`GET /ouro/resources/{id}`) until the add-on is
/// provisioned, then sets its config vars on every app it is attached to. A provider that
/// answers `failed`, forgets the resource (404) or misses the deadline: the add-on is
/// deprovisioned and removed, and why is kept for `addons:wait`.
pub(crate) async fn finish_provisioning(state: AppState, addon: AddonRow, actor: String) {
    let created = humantime::parse_rfc3339(&addon.created_at).unwrap_or_else(|_| std::time::SystemTime::now());
    let deadline = created + PROVISION_DEADLINE;
    let mut polls = 0u32;
    let failure = loop {
        // Four times a second at first (a server is usually ready in seconds), then every second.
        polls += 1;
        tokio::time::sleep(Duration::from_millis(if polls <= 120 { 250 } else { 1000 })).await;
        if std::time::SystemTime::now() > deadline {
            break format!("the provider did not finish within {} s", PROVISION_DEADLINE.as_secs());
        }
        let Ok(Some(provider)) = state.store.provider(&addon.provider_id).await else {
            break "its provider is no longer registered".to_string();
        };
        if !matches!(state.store.addon(&addon.id).await, Ok(Some(_))) {
            return; // destroyed meanwhile
        }
        let path = format!("/ouro/resources/{}", addon.provider_resource_id);
        let answer = match provider_request(&state.settings, &provider, "GET", &path, None).await {
            Ok((200, text)) => serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
            Ok((404, _)) => break "the provider no longer knows it".to_string(),
            Ok((status, _)) => {
                tracing::debug!(addon = %addon.name, status, "provider not answering yet");
                continue;
            }
            Err(e) => {
                tracing::debug!(addon = %addon.name, error = %e.message, "provider not reachable yet");
                continue;
            }
        };
        match answer["state"].as_str().and_then(|s| s.parse().ok()) {
            Some(AddonState::Provisioned) => {
                let config = provider_config(&answer);
                match record_provisioned(&state, &provider, &addon, &config, &actor).await {
                    Ok(()) => return,
                    Err(e) => break e.message,
                }
            }
            Some(AddonState::Failed) => break answer["message"].as_str().unwrap_or("the provider failed").to_string(),
            _ => {}
        }
    };
    tracing::warn!(addon = %addon.name, reason = %failure, "provisioning failed; removing the add-on");
    let provider = state.store.provider(&addon.provider_id).await.ok().flatten();
    if let Some(provider) = provider {
        let path = format!("/ouro/resources/{}", addon.provider_resource_id);
        let _ = call_provider(&state.settings, &provider, "DELETE", &path, None).await;
    }
    let _ = state.store.delete_addon(&addon.id).await;
    let mut failed = state.failed_addons.lock().unwrap_or_else(|e| e.into_inner());
    failed.push_back((addon.name.clone(), failure));
    while failed.len() > 100 {
        failed.pop_front();
    }
    drop(failed);
    state.changed();
}

async fn record_provisioned(
    state: &AppState,
    provider: &ProviderRow,
    addon: &AddonRow,
    config: &BTreeMap<String, String>,
    actor: &str,
) -> Result<(), ApiError> {
    let attachments = state.store.attachments_of_addon(&addon.id).await?;
    for attachment in &attachments {
        check_config(provider, &attachment.name, config)?;
    }
    if !state.store.set_addon_provisioned(&addon.id, config).await? {
        return Ok(()); // destroyed or finished meanwhile
    }
    for attachment in attachments {
        if let Some(app) = state.store.app(&attachment.app_id).await? {
            release_vars(state, &app, actor, &attachment.name, config, true).await?;
        }
    }
    tracing::info!(addon = %addon.name, "provisioned");
    state.changed();
    Ok(())
}

/// How long a server may take to come back with new credentials.
const ROTATION_DEADLINE: Duration = Duration::from_secs(180);

/// Rotates `addon`'s credentials (`pg:credentials:rotate`): the provider gives its server new
/// ones and restarts it (`POST /ouro/resources/{id}/actions/rotate-credentials`); once the
/// provider answers `provisioned` with a config that is not the old one, the add-on records it
/// and every attached app gets it in a release. Runs in a task of its own: a client that goes
/// away does not leave the apps on the old credentials. A server that does not come back in
/// time leaves them there, and says so: the server's credentials changed, so rotating again is
/// the way out.
pub(crate) async fn rotate_credentials(state: &AppState, addon: AddonRow, actor: String) -> Result<AddonRow, ApiError> {
    let state = state.clone();
    tokio::spawn(async move {
        let provider = super::provider::addon_provider(&state, &addon).await?;
        let resource = format!("/ouro/resources/{}", addon.provider_resource_id);
        call_provider(&state.settings, &provider, "POST", &format!("{resource}/actions/rotate-credentials"), None)
            .await?;
        let deadline = tokio::time::Instant::now() + ROTATION_DEADLINE;
        let config = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if tokio::time::Instant::now() > deadline {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    format!(
                        "`{}` did not come back with its new credentials within {} s; its apps keep the old ones                          until a rotation finishes: run it again",
                        addon.name,
                        ROTATION_DEADLINE.as_secs()
                    ),
                ));
            }
            let answer = match provider_request(&state.settings, &provider, "GET", &resource, None).await {
                Ok((200, text)) => serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
                Ok((404, _)) => return Err(ApiError::not_found(format!("the provider no longer knows `{}`", addon.name))),
                _ => continue,
            };
            if answer["state"].as_str().and_then(|s| s.parse().ok()) == Some(AddonState::Provisioned) {
                let config = provider_config(&answer);
                if !config.is_empty() && config != addon.config {
                    break config;
                }
            }
        };
        let attachments = state.store.attachments_of_addon(&addon.id).await?;
        for attachment in &attachments {
            check_config(&provider, &attachment.name, &config)?;
        }
        if !state.store.set_addon_config(&addon.id, &config).await? {
            return Err(ApiError::not_found(format!("`{}` was destroyed during the rotation", addon.name)));
        }
        for attachment in attachments {
            if let Some(app) = state.store.app(&attachment.app_id).await? {
                release_vars(&state, &app, &actor, &attachment.name, &config, true).await?;
            }
        }
        tracing::info!(addon = %addon.name, "credentials rotated");
        state.changed();
        Ok(AddonRow { config, ..addon })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", format!("the rotation stopped: {e}")))?
}

/// Refuses a provider's config whose keys make invalid config var names.
pub(crate) fn check_config(
    provider: &ProviderRow,
    attachment: &str,
    config: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    match config.keys().map(|k| var(attachment, k)).find(|v| !valid_config_key(v)) {
        Some(bad) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("provider `{}` answered a config var that is not a valid name: {bad}", provider.name),
        )),
        None => Ok(()),
    }
}

/// Removes `addon` at its provider, then its attachments' config vars and its rows.
pub(crate) async fn deprovision(state: &AppState, user: &User, addon: &AddonRow) -> Result<(), ApiError> {
    let provider = state.store.provider(&addon.provider_id).await?;
    if let Some(provider) = &provider {
        call_provider(
            &state.settings,
            provider,
            "DELETE",
            &format!("/ouro/resources/{}", addon.provider_resource_id),
            None,
        )
        .await?;
    }
    for attachment in state.store.attachments_of_addon(&addon.id).await? {
        if let Some(app) = state.store.app(&attachment.app_id).await? {
            release_vars(state, &app, &user.email, &attachment.name, &addon.config, false).await?;
        }
    }
    state.store.delete_addon(&addon.id).await?;
    Ok(())
}

/// The add-on `name` of the app: its name, its id, or the name of its attachment to the app
/// (`DATABASE`). One whose provisioning failed is a 404 that says why.
pub(crate) async fn find_addon(state: &AppState, app: &AppRow, name: &str) -> Result<AddonRow, ApiError> {
    let addons = state.store.addons_of_app(&app.id).await?;
    if let Some(addon) = addons.iter().find(|a| a.name == name || a.id == name) {
        return Ok(addon.clone());
    }
    let attached = state.store.attachments_of_app(&app.id).await?;
    let upper = name.to_ascii_uppercase();
    if let Some(attachment) = attached.iter().find(|a| a.name == upper) {
        if let Some(addon) = addons.into_iter().find(|a| a.id == attachment.addon_id) {
            return Ok(addon);
        }
    }
    let failed = state.failed_addons.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, why)) = failed.iter().rev().find(|(failed, _)| failed == name) {
        return Err(ApiError::not_found(format!("provisioning `{name}` failed and it was removed: {why}")));
    }
    Err(ApiError::not_found(format!("add-on `{name}` not found on app `{}`", app.name)))
}

pub(crate) async fn provisioned_addon(state: &AppState, app: &AppRow, name: &str) -> Result<AddonRow, ApiError> {
    let addon = find_addon(state, app, name).await?;
    if addon.state != AddonState::Provisioned {
        return Err(ApiError::conflict(format!(
            "`{}` is still provisioning; wait for it with ouro addons:wait {} -a {}",
            addon.name, addon.name, app.name
        )));
    }
    Ok(addon)
}

/// The attachment's name: the one asked for, else the kind's default, else (taken) Heroku's
/// `HEROKU_POSTGRESQL_<COLOR>` style.
pub(crate) async fn attachment_name(
    state: &AppState,
    app: &AppRow,
    kind: &str,
    asked: Option<&str>,
) -> Result<String, ApiError> {
    let taken: Vec<String> = state.store.attachments_of_app(&app.id).await?.into_iter().map(|a| a.name).collect();
    if let Some(asked) = asked {
        let asked = asked.to_ascii_uppercase();
        if !valid_config_key(&asked) || asked.len() > 60 {
            return Err(ApiError::invalid_params(format!("`{asked}` is not a valid attachment name")));
        }
        if taken.contains(&asked) {
            return Err(ApiError::conflict(format!("`{asked}` is already attached to {}", app.name)));
        }
        return Ok(asked);
    }
    let upper = kind.to_ascii_uppercase().replace('-', "_");
    let default = match kind {
        "postgresql" => "DATABASE".to_string(),
        _ => upper.clone(),
    };
    if !taken.contains(&default) {
        return Ok(default);
    }
    let prefix = if kind == "postgresql" { "HEROKU_POSTGRESQL".to_string() } else { upper };
    COLORS
        .iter()
        .map(|color| format!("{prefix}_{color}"))
        .find(|name| !taken.contains(name))
        .ok_or_else(|| ApiError::conflict(format!("{} has too many {kind} add-ons", app.name)))
}

const COLORS: &[&str] =
    &["AMBER", "BLUE", "BRONZE", "COBALT", "CRIMSON", "GOLD", "GREEN", "IVORY", "JADE", "OLIVE", "ONYX", "PINK"];

pub(crate) fn var(attachment: &str, key: &str) -> String {
    format!("{attachment}_{key}")
}

/// Sets (or, with `set` false, unsets) the attachment's `<NAME>_<KEY>` vars on `app` in one
/// release; nothing to do for a config with no keys (an add-on still provisioning).
pub(crate) async fn release_vars(
    state: &AppState,
    app: &AppRow,
    actor: &str,
    attachment: &str,
    config: &BTreeMap<String, String>,
    set: bool,
) -> Result<(), ApiError> {
    if config.is_empty() {
        return Ok(());
    }
    let patch: ConfigVarsPatch = config.iter().map(|(k, v)| (var(attachment, k), set.then(|| v.clone()))).collect();
    state.create_release(app, actor, Change::Config(patch)).await?;
    Ok(())
}

pub(crate) fn generated_suffix() -> String {
    const WORDS: &[&str] = &["amber", "curly", "shiny", "solid", "round", "tidy", "rigid", "cubic", "clear", "deep"];
    let mut rng = rand::rng();
    format!("{}-{:05}", WORDS[rng.random_range(0..WORDS.len())], rng.random_range(0..100_000))
}
