//! Add-ons: providers (`/addon-providers`, admins), an app's add-ons (`/apps/{app}/addons`) and
//! attachments (`/apps/{app}/addon-attachments`).
//!
//! The provider contract (ARCHITECTURE.md, "Add-ons"): `POST {url}/ouro/resources` with
//! `{"uuid", "plan", "app_name"}` answers `{"id", "config": {"URL": "..."}}`; `DELETE
//! {url}/ouro/resources/{id}` removes it; HTTP Basic with the provider's name and the password
//! the API generated when it was registered. An attachment named `DATABASE` sets
//! `DATABASE_URL` (one var per key of the provider's config) on its app in one new release.
//!
//! Nothing is half-made: the provider is called first; if recording or releasing then fails,
//! the API deprovisions what it asked for. A provider that cannot be reached is a 503 with its
//! name, and changes nothing. A provider that runs the server as an app on Ouro answers its
//! name as `service_app`: that app's dynos then join the networks of the attached apps only.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Router};
use ouro_types::{
    Addon, AddonAttachment, AddonBackup, AddonCreate, AddonPlan, AddonProvider, AddonState, AppRef, AttachmentCreate,
    ConfigVarsPatch, valid_config_key,
};
use rand::Rng;

use crate::apps::find_app;
use crate::auth::User;
use crate::error::Json;
use crate::store::{AddonRow, AppRow, AttachmentRow, Change, ProviderRow};
use crate::{ApiError, AppState, now};

/// How long a provider may take to answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);
const COLORS: &[&str] =
    &["AMBER", "BLUE", "BRONZE", "COBALT", "CRIMSON", "GOLD", "GREEN", "IVORY", "JADE", "OLIVE", "ONYX", "PINK"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/addon-providers", get(list_providers).post(register_provider))
        .route("/apps/{app}/addons", get(list).post(create))
        .route("/apps/{app}/addons/{addon}", get(info).delete(destroy))
        .route("/apps/{app}/addons/{addon}/tunnel", get(tunnel))
        .route("/apps/{app}/addons/{addon}/backups", get(list_backups).post(capture_backup))
        .route("/apps/{app}/addons/{addon}/backups/{backup}/restore", axum::routing::post(restore_backup))
        .route("/apps/{app}/addon-attachments", axum::routing::post(attach))
        .route("/apps/{app}/addon-attachments/{name}", delete(detach))
}

/// Where a provider is reached: its URL, or for `app:<name>` the router with the app's host.
fn provider_target(settings: &crate::Settings, provider: &ProviderRow) -> Result<(String, Option<String>), ApiError> {
    match provider.url.strip_prefix("app:") {
        None => Ok((provider.url.clone(), None)),
        Some(app) => match &settings.router_url {
            Some(router) => Ok((router.trim_end_matches('/').to_string(), Some(format!("{app}.{}", settings.domain)))),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("provider `{}` is the app `{app}`, but OURO_ROUTER_URL is not set on the API", provider.name),
            )),
        },
    }
}

#[derive(serde::Deserialize)]
struct ProviderCreate {
    name: String,
    url: String,
}

async fn register_provider(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Json(body): Json<ProviderCreate>,
) -> Result<(StatusCode, axum::Json<AddonProvider>), ApiError> {
    require_admin(&user)?;
    let name_ok = (2..=30).contains(&body.name.len())
        && body.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(ApiError::invalid_params("a provider's name is 2 to 30 of a-z, 0-9 and `-` (`postgresql`)"));
    }
    let url = body.url.trim_end_matches('/');
    let on_ouro = url.strip_prefix("app:").is_some_and(ouro_types::valid_app_name);
    let http = (url.starts_with("http://") || url.starts_with("https://")) && url.bytes().all(|b| b.is_ascii_graphic());
    if !(http || on_ouro) {
        return Err(ApiError::invalid_params(
            "a provider's url is an http(s) URL, or app:<name> for an app of this platform (reached through the router)",
        ));
    }
    let (password, _) = crate::auth::new_scoped_secret();
    let row = state.store.create_provider(&body.name, url, &password).await.map_err(|e| match e {
        crate::Error::Conflict => ApiError::conflict(format!("a provider named `{}` is registered", body.name)),
        other => other.into(),
    })?;
    let mut answer = provider_json(row);
    answer.password = Some(password);
    Ok((StatusCode::CREATED, axum::Json(answer)))
}

async fn list_providers(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<axum::Json<Vec<AddonProvider>>, ApiError> {
    require_admin(&user)?;
    Ok(axum::Json(state.store.providers().await?.into_iter().map(provider_json).collect()))
}

async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
) -> Result<axum::Json<Vec<Addon>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let mut out = Vec::new();
    for addon in state.store.addons_of_app(&app.id).await? {
        out.push(addon_json(&state, addon).await?);
    }
    Ok(axum::Json(out))
}

async fn info(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon)): Path<(String, String)>,
) -> Result<axum::Json<Addon>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = find_addon(&state, &app, &addon).await?;
    Ok(axum::Json(addon_json(&state, addon).await?))
}

async fn create(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<AddonCreate>,
) -> Result<(StatusCode, axum::Json<Addon>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let plan_ok = (1..=60).contains(&body.plan.len())
        && body.plan.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b':');
    if !plan_ok {
        return Err(ApiError::invalid_params("a plan is like `postgresql` or `postgresql:standard`"));
    }
    let (kind, plan) = match body.plan.split_once(':') {
        Some((kind, _)) => (kind.to_string(), body.plan.clone()),
        None => (body.plan.clone(), format!("{}:standard", body.plan)),
    };
    let provider = state.store.provider(&kind).await?.ok_or_else(|| {
        ApiError::not_found(format!("no add-on provider `{kind}`; an admin registers one with POST /addon-providers"))
    })?;
    let attachment_name = attachment_name(&state, &app, &kind, body.as_name.as_deref()).await?;
    let addon_id = uuid::Uuid::new_v4().to_string();
    let addon_name = format!("{kind}-{}", generated_suffix());
    let request = serde_json::json!({ "uuid": addon_id, "plan": plan, "app_name": app.name, "name": addon_name });
    let (status, answer) =
        call_provider_status(&state.settings, &provider, "POST", "/ouro/resources", Some(request)).await?;
    let resource_id = answer["id"].as_str().unwrap_or(&addon_id).to_string();
    // 202: the provider is still making it; the API polls it (see `finish_provisioning`).
    let provisioning = status == 202;
    let config = if provisioning { BTreeMap::new() } else { provider_config(&answer) };
    // A provider that runs the server on Ouro names its app: that app then joins the networks
    // of exactly the apps the add-on is attached to.
    let service_app = match answer["service_app"].as_str() {
        Some(name) => match state.store.app(name).await? {
            Some(service) => Some(service.name),
            None => {
                let _ = call_provider(
                    &state.settings,
                    &provider,
                    "DELETE",
                    &format!("/ouro/resources/{resource_id}"),
                    None,
                )
                .await;
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    format!("provider `{}` named a service app `{name}` that does not exist", provider.name),
                ));
            }
        },
        None => None,
    };
    let addon = AddonRow {
        id: addon_id,
        name: addon_name,
        app_id: app.id.clone(),
        provider_id: provider.id.clone(),
        plan,
        state: if provisioning { AddonState::Provisioning } else { AddonState::Provisioned },
        provider_resource_id: resource_id.clone(),
        config: config.clone(),
        service_app,
        created_at: now(),
    };
    let attachment = AttachmentRow {
        id: uuid::Uuid::new_v4().to_string(),
        addon_id: addon.id.clone(),
        app_id: app.id.clone(),
        name: attachment_name.clone(),
        created_at: now(),
    };
    let recorded = async {
        check_config(&provider, &attachment_name, &config)?;
        state.store.create_addon(&addon, &attachment).await?;
        release_vars(&state, &app, &user.email, &attachment_name, &config, true).await
    }
    .await;
    if let Err(e) = recorded {
        // Undo: no add-on row, no config var, nothing left at the provider.
        let _ = state.store.delete_addon(&addon.id).await;
        let _ =
            call_provider(&state.settings, &provider, "DELETE", &format!("/ouro/resources/{resource_id}"), None).await;
        return Err(e);
    }
    state.changed();
    if provisioning {
        tokio::spawn(finish_provisioning(state.clone(), addon.clone(), user.email.clone()));
        return Ok((StatusCode::ACCEPTED, axum::Json(addon_json(&state, addon).await?)));
    }
    Ok((StatusCode::CREATED, axum::Json(addon_json(&state, addon).await?)))
}

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
async fn finish_provisioning(state: AppState, addon: AddonRow, actor: String) {
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

/// Refuses a provider's config whose keys make invalid config var names.
fn check_config(provider: &ProviderRow, attachment: &str, config: &BTreeMap<String, String>) -> Result<(), ApiError> {
    match config.keys().map(|k| var(attachment, k)).find(|v| !valid_config_key(v)) {
        Some(bad) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("provider `{}` answered a config var that is not a valid name: {bad}", provider.name),
        )),
        None => Ok(()),
    }
}

#[derive(serde::Deserialize)]
struct DestroyQuery {
    confirm: Option<String>,
}

/// Deprovisions the add-on (its data goes: `?confirm=<add-on name>` is required), removing
/// its config vars from every app it is attached to.
async fn destroy(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon)): Path<(String, String)>,
    Query(query): Query<DestroyQuery>,
) -> Result<axum::Json<Addon>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = find_addon(&state, &app, &addon).await?;
    if addon.app_id != app.id {
        return Err(ApiError::forbidden(format!("`{}` belongs to another app; detach it instead", addon.name)));
    }
    if query.confirm.as_deref() != Some(addon.name.as_str()) {
        return Err(ApiError::invalid_params(format!(
            "destroying `{0}` removes its data: pass confirm={0} to go ahead",
            addon.name
        )));
    }
    let json = addon_json(&state, addon.clone()).await?;
    deprovision(&state, &user, &addon).await?;
    state.changed();
    Ok(axum::Json(json))
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

async fn attach(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(name): Path<String>,
    Json(body): Json<AttachmentCreate>,
) -> Result<(StatusCode, axum::Json<Addon>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = state
        .store
        .addon(&body.addon)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("add-on `{}` not found", body.addon)))?;
    // Attaching needs access to the add-on's own app too.
    let owner = state.store.app(&addon.app_id).await?.ok_or_else(|| ApiError::not_found("the add-on's app is gone"))?;
    find_app(&state, &user, &owner.name).await?;
    let kind = addon.plan.split(':').next().unwrap_or_default().to_string();
    let attachment_name = attachment_name(&state, &app, &kind, body.as_name.as_deref()).await?;
    let attachment = AttachmentRow {
        id: uuid::Uuid::new_v4().to_string(),
        addon_id: addon.id.clone(),
        app_id: app.id.clone(),
        name: attachment_name.clone(),
        created_at: now(),
    };
    state.store.create_attachment(&attachment).await.map_err(|e| match e {
        crate::Error::Conflict => {
            ApiError::conflict(format!("`{attachment_name}` is already attached to {}", app.name))
        }
        other => other.into(),
    })?;
    if let Err(e) = release_vars(&state, &app, &user.email, &attachment_name, &addon.config, true).await {
        let _ = state.store.delete_attachment(&attachment.id).await;
        return Err(e);
    }
    state.changed();
    Ok((StatusCode::CREATED, axum::Json(addon_json(&state, addon).await?)))
}

/// Detaches the add-on attached as `name` (`DATABASE`) from the app: its config vars go in a
/// new release; the add-on itself stays (destroy it from its own app).
async fn detach(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((app_name, name)): Path<(String, String)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let app = find_app(&state, &user, &app_name).await?;
    let attachment = state
        .store
        .attachments_of_app(&app.id)
        .await?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found(format!("nothing is attached to {} as `{name}`", app.name)))?;
    let addon = state.store.addon(&attachment.addon_id).await?.ok_or_else(|| ApiError::not_found("no such add-on"))?;
    if state.store.attachments_of_addon(&addon.id).await?.len() == 1 {
        return Err(ApiError::invalid_params(format!(
            "`{}` is attached only here: destroy it instead (ouro addons:destroy {} --confirm {})",
            addon.name, addon.name, addon.name
        )));
    }
    release_vars(&state, &app, &user.email, &attachment.name, &addon.config, false).await?;
    state.store.delete_attachment(&attachment.id).await?;
    state.changed();
    Ok(axum::Json(serde_json::json!({ "addon": addon.name, "app": app.name, "name": attachment.name })))
}

/// The add-on `name` of the app: its name, its id, or the name of its attachment to the app
/// (`DATABASE`). One whose provisioning failed is a 404 that says why.
async fn find_addon(state: &AppState, app: &AppRow, name: &str) -> Result<AddonRow, ApiError> {
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

/// The attachment's name: the one asked for, else the kind's default, else (taken) Heroku's
/// `HEROKU_POSTGRESQL_<COLOR>` style.
async fn attachment_name(state: &AppState, app: &AppRow, kind: &str, asked: Option<&str>) -> Result<String, ApiError> {
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

fn var(attachment: &str, key: &str) -> String {
    format!("{attachment}_{key}")
}

/// Sets (or, with `set` false, unsets) the attachment's `<NAME>_<KEY>` vars on `app` in one
/// release; nothing to do for a config with no keys (an add-on still provisioning).
async fn release_vars(
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

/// The provider's config: string values of `config`, keys as given (`URL`).
fn provider_config(answer: &serde_json::Value) -> BTreeMap<String, String> {
    answer["config"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

/// One call to a provider; its failures are 503 (unreachable) or 502 (refused), naming it.
async fn call_provider(
    settings: &crate::Settings,
    provider: &ProviderRow,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ApiError> {
    Ok(call_provider_status(settings, provider, method, path, body).await?.1)
}

/// [`call_provider`], with the status of a 2xx answer (202 means "still provisioning").
async fn call_provider_status(
    settings: &crate::Settings,
    provider: &ProviderRow,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, serde_json::Value), ApiError> {
    let (status, text) = provider_request(settings, provider, method, path, body).await?;
    if !(200..300).contains(&status) {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("add-on provider `{}` answered {status}: {}", provider.name, provider_message(&text)),
        ));
    }
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

/// One request to a provider: any HTTP answer as (status, body); a 503 naming the provider
/// when it cannot be reached.
async fn provider_request(
    settings: &crate::Settings,
    provider: &ProviderRow,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(u16, String), ApiError> {
    let (base, host) = provider_target(settings, provider)?;
    let url = format!("{base}{path}");
    let (name, password) = (provider.name.clone(), provider.password.clone());
    let result = tokio::task::spawn_blocking(move || {
        let config =
            ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(PROVIDER_TIMEOUT)).build();
        let agent = ureq::Agent::new_with_config(config);
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", crate::auth::basic_authorization(&name, &password));
        if let Some(host) = &host {
            request = request.header("Host", host);
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = request.body(body).map_err(|e| e.to_string())?;
        let mut response = agent.run(request).map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
        Ok::<_, String>((status, text))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?;
    result.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("add-on provider `{}` cannot be reached ({e}); try again later", provider.name),
        )
    })
}

fn generated_suffix() -> String {
    const WORDS: &[&str] = &["amber", "curly", "shiny", "solid", "round", "tidy", "rigid", "cubic", "clear", "deep"];
    let mut rng = rand::rng();
    format!("{}-{:05}", WORDS[rng.random_range(0..WORDS.len())], rng.random_range(0..100_000))
}

fn provider_json(row: ProviderRow) -> AddonProvider {
    AddonProvider { id: row.id, name: row.name, url: row.url, password: None, created_at: row.created_at }
}

async fn addon_json(state: &AppState, addon: AddonRow) -> Result<Addon, ApiError> {
    let owner = state.store.app(&addon.app_id).await?.map(|a| a.name).unwrap_or_default();
    let mut attachments = Vec::new();
    for a in state.store.attachments_of_addon(&addon.id).await? {
        let app = state.store.app(&a.app_id).await?.map(|a| a.name).unwrap_or_default();
        attachments.push(AddonAttachment {
            config_vars: addon.config.keys().map(|k| var(&a.name, k)).collect(),
            id: a.id,
            name: a.name,
            app: AppRef { name: app },
            created_at: a.created_at,
        });
    }
    Ok(Addon {
        id: addon.id,
        name: addon.name,
        plan: AddonPlan { name: addon.plan },
        state: addon.state,
        app: AppRef { name: owner },
        attachments,
        created_at: addon.created_at,
    })
}

fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.admin { Ok(()) } else { Err(ApiError::forbidden("only an admin registers add-on providers")) }
}

/// `GET /apps/{app}/addons/{addon}/tunnel` with `Upgrade: ouro-tunnel`: after `101` the
/// connection carries the add-on server's own protocol, relayed by its provider, which alone
/// reaches the server's network (`ouro pg:psql`, `ouro redis:cli`).
async fn tunnel(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon)): Path<(String, String)>,
    mut request: axum::extract::Request,
) -> Result<axum::response::Response, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = provisioned_addon(&state, &app, &addon).await?;
    if !request.headers().contains_key(axum::http::header::UPGRADE) {
        return Err(ApiError::invalid_params("a tunnel needs `Connection: Upgrade` and `Upgrade: ouro-tunnel`"));
    }
    let provider = addon_provider(&state, &addon).await?;
    let (base, host) = provider_target(&state.settings, &provider)?;
    let Some(authority) = base.strip_prefix("http://").map(|a| a.split('/').next().unwrap_or(a).to_string()) else {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!("provider `{}` is reached over https; tunnels go over plain http only", provider.name),
        ));
    };
    let unreachable = |e: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("add-on provider `{}` cannot be reached ({e}); try again later", provider.name),
        )
    };
    let mut upstream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(&authority))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let head = format!(
        "GET /ouro/resources/{}/tunnel HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: Upgrade\r\n\
         Upgrade: ouro-tunnel\r\n\r\n",
        addon.provider_resource_id,
        host.as_deref().unwrap_or(&authority),
        crate::auth::basic_authorization(&provider.name, &provider.password),
    );
    let (status, rest) = tokio::time::timeout(PROVIDER_TIMEOUT, upgrade_upstream(&mut upstream, head.as_bytes()))
        .await
        .map_err(|_| unreachable("no answer".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    if status != 101 {
        let said = String::from_utf8_lossy(&rest).chars().take(300).collect::<String>();
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("add-on provider `{}` refused the tunnel ({status}): {said}", provider.name),
        ));
    }
    let client = hyper::upgrade::on(&mut request);
    let label = addon.name.clone();
    tokio::spawn(async move {
        let client = match client.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(addon = %label, error = %e, "the client did not switch protocols"),
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        use tokio::io::AsyncWriteExt;
        if !rest.is_empty() && client.write_all(&rest).await.is_err() {
            return;
        }
        let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        tracing::debug!(addon = %label, ?copied, "tunnel closed");
    });
    axum::response::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(axum::http::header::CONNECTION, "Upgrade")
        .header(axum::http::header::UPGRADE, "ouro-tunnel")
        .body(axum::body::Body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))
}

/// Sends `head` and reads the answer's head: its status, and the bytes after the head (the
/// tunnel's first bytes after a 101, the error body otherwise).
async fn upgrade_upstream(upstream: &mut tokio::net::TcpStream, head: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    upstream.write_all(head).await?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("the answer's head is over 16 KiB"));
        }
        let mut chunk = [0u8; 4096];
        let n = upstream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("the connection closed before an answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let status = std::str::from_utf8(&buf[..end])
        .ok()
        .and_then(|head| head.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("the answer is not HTTP"))?;
    Ok((status, buf.split_off(end)))
}

async fn provisioned_addon(state: &AppState, app: &AppRow, name: &str) -> Result<AddonRow, ApiError> {
    let addon = find_addon(state, app, name).await?;
    if addon.state != AddonState::Provisioned {
        return Err(ApiError::conflict(format!(
            "`{}` is still provisioning; wait for it with ouro addons:wait {} -a {}",
            addon.name, addon.name, app.name
        )));
    }
    Ok(addon)
}

async fn addon_provider(state: &AppState, addon: &AddonRow) -> Result<ProviderRow, ApiError> {
    state
        .store
        .provider(&addon.provider_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("the provider of `{}` is no longer registered", addon.name)))
}

/// How long a backup or a restore may take at the provider.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest backup kept.
const MAX_BACKUP_BYTES: u64 = 8 << 30;

async fn list_backups(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon)): Path<(String, String)>,
) -> Result<axum::Json<Vec<AddonBackup>>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = find_addon(&state, &app, &addon).await?;
    let backups = state.store.backups(&addon.id).await?;
    Ok(axum::Json(backups.into_iter().map(|b| backup_json(&addon, b)).collect()))
}

/// `POST /apps/{app}/addons/{addon}/backups`: the provider dumps the data (`pg_dump -Fc`) and
/// the API keeps it in the blob store as the add-on's next backup (`b001`, …).
async fn capture_backup(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<AddonBackup>), ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = provisioned_addon(&state, &app, &addon).await?;
    let provider = addon_provider(&state, &addon).await?;
    let staged = state.blobs.staging_dir().join(format!("backup-{}", uuid::Uuid::new_v4()));
    let into = staged.clone();
    let path = format!("/ouro/resources/{}/backups", addon.provider_resource_id);
    let what = format!("backing up `{}`", addon.name);
    let fetched = provider_transfer(&state.settings, &provider, &path, None, what, move |body| {
        use std::io::Read;
        let mut body = body.with_config().limit(MAX_BACKUP_BYTES).reader();
        let mut file = std::fs::File::create(&into).map_err(|e| (500, e.to_string()))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut size = 0u64;
        loop {
            let n = body.read(&mut buf).map_err(|e| (502, format!("the dump broke off: {e}")))?;
            if n == 0 {
                break;
            }
            sha2::Digest::update(&mut hasher, &buf[..n]);
            std::io::Write::write_all(&mut file, &buf[..n]).map_err(|e| (500, e.to_string()))?;
            size += n as u64;
        }
        file.sync_all().map_err(|e| (500, e.to_string()))?;
        Ok((hex::encode(sha2::Digest::finalize(hasher)), size))
    })
    .await;
    let (digest, size) = match fetched {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(e);
        }
    };
    state.blobs.commit(&staged, &digest).await.map_err(crate::Error::Io)?;
    let backup = state.store.create_backup(&addon.id, &format!("SHA256:{digest}"), size as i64).await?;
    Ok((StatusCode::CREATED, axum::Json(backup_json(&addon, backup))))
}

/// `POST /apps/{app}/addons/{addon}/backups/{backup}/restore`: the provider restores the
/// backup over the add-on's data (`pg_restore --clean`, in one transaction).
async fn restore_backup(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon, backup)): Path<(String, String, String)>,
) -> Result<axum::Json<AddonBackup>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = provisioned_addon(&state, &app, &addon).await?;
    let backup = state
        .store
        .backups(&addon.id)
        .await?
        .into_iter()
        .find(|b| b.id == backup || backup_name(b.number) == backup)
        .ok_or_else(|| ApiError::not_found(format!("`{}` has no backup `{backup}`", addon.name)))?;
    let provider = addon_provider(&state, &addon).await?;
    let digest = backup.blob.trim_start_matches("SHA256:").to_string();
    let file = state.blobs.open(&digest).await.map_err(crate::Error::Io)?.into_std().await;
    let path = format!("/ouro/resources/{}/restore", addon.provider_resource_id);
    let what = format!("restoring `{}`", addon.name);
    provider_transfer(&state.settings, &provider, &path, Some(file), what, |_| Ok(())).await?;
    Ok(axum::Json(backup_json(&addon, backup)))
}

/// A long `POST` to a provider (a backup, a restore) off the async threads: `upload` as the
/// body, a 200's body handed to `read`. `read`'s errors are (status of our answer, why).
async fn provider_transfer<T: Send + 'static>(
    settings: &crate::Settings,
    provider: &ProviderRow,
    path: &str,
    upload: Option<std::fs::File>,
    what: String,
    read: impl FnOnce(&mut ureq::Body) -> Result<T, (u16, String)> + Send + 'static,
) -> Result<T, ApiError> {
    let (base, host) = provider_target(settings, provider)?;
    let url = format!("{base}{path}");
    let authorization = crate::auth::basic_authorization(&provider.name, &provider.password);
    let done = tokio::task::spawn_blocking(move || -> Result<T, (u16, String)> {
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(BACKUP_TIMEOUT));
        let agent = ureq::Agent::new_with_config(config.build());
        let mut request =
            ureq::http::Request::builder().method("POST").uri(&url).header("Authorization", authorization);
        if let Some(host) = &host {
            request = request.header("Host", host);
        }
        let sent = match upload {
            Some(file) => request.header("Content-Type", "application/octet-stream").body(file).map(|r| agent.run(r)),
            None => request.body(()).map(|r| agent.run(r)),
        };
        let mut response = sent.map_err(|e| (500, e.to_string()))?.map_err(|e| (503, e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            let text = response.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
            return Err((502, format!("answered {status}: {}", provider_message(&text))));
        }
        read(response.body_mut())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))?;
    done.map_err(|(code, message)| {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
        let id = match code {
            503 => "service_unavailable",
            500 => "internal_error",
            _ => "bad_gateway",
        };
        ApiError::new(status, id, format!("{what}: provider {message}"))
    })
}

/// What a provider's error answer says: its JSON `message`, else its first line; 300
/// characters at most.
fn provider_message(text: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from))
        .unwrap_or_else(|| text.lines().next().unwrap_or_default().to_string());
    message.chars().take(300).collect()
}

fn backup_name(number: i64) -> String {
    format!("b{number:03}")
}

fn backup_json(addon: &AddonRow, backup: crate::store::BackupRow) -> AddonBackup {
    AddonBackup {
        id: backup.id,
        name: backup_name(backup.number),
        size: backup.size,
        addon: AppRef { name: addon.name.clone() },
        created_at: backup.created_at,
    }
}
