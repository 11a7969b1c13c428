//! `/addon-providers` (admins), an app's add-ons (`/apps/{app}/addons`, with their tunnel and
//! backups) and attachments (`/apps/{app}/addon-attachments`): HTTP handlers over
//! [`crate::addons`].

use std::collections::BTreeMap;

use crate::addons::provider::{
    addon_provider, call_provider, call_provider_status, open_tunnel, provider_config, provider_transfer,
};
use crate::addons::provisioning::{
    attachment_name, check_config, deprovision, find_addon, finish_provisioning, generated_suffix, provisioned_addon,
    release_vars, rotate_credentials, var,
};
use crate::addons::store::{AddonRow, AttachmentRow, BackupRow, ProviderRow};
use crate::apps::find_app;
use crate::auth::{PresentedToken, User};
use crate::error::Json;
use crate::{ApiError, AppState, now};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Extension, Router};
use ouro_types::{
    Addon, AddonAttachment, AddonBackup, AddonCreate, AddonPlan, AddonProvider, AddonState, AppRef, AttachmentCreate,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/addon-providers", get(list_providers).post(register_provider))
        .route("/apps/{app}/addons", get(list).post(create))
        .route("/apps/{app}/addons/{addon}", get(info).delete(destroy))
        .route("/apps/{app}/addons/{addon}/tunnel", get(tunnel))
        .route("/apps/{app}/addons/{addon}/actions/rotate-credentials", axum::routing::post(rotate))
        .route("/apps/{app}/addons/{addon}/backups", get(list_backups).post(capture_backup))
        .route("/apps/{app}/addons/{addon}/backups/{backup}/restore", axum::routing::post(restore_backup))
        .route("/apps/{app}/addon-attachments", axum::routing::post(attach))
        .route("/apps/{app}/addon-attachments/{name}", delete(detach))
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
    let (mut upstream, rest) = open_tunnel(&state.settings, &provider, &addon.provider_resource_id).await?;
    let client = hyper::upgrade::on(&mut request);
    let label = addon.name.clone();
    // The tunnel closes once the token it was opened with is refused.
    let token = request.extensions().get::<PresentedToken>().map(|t| t.0.clone()).unwrap_or_default();
    let access = Some((app.name.clone(), crate::access::Permission::Deploy));
    let refused = crate::auth::until_refused(state.store.clone(), token, access);
    let tunnel = async move {
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
    };
    tokio::spawn(async move {
        tokio::select! {
            () = tunnel => {}
            () = refused => tracing::info!("an add-on tunnel closed: its token was revoked or expired"),
        }
    });
    axum::response::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(axum::http::header::CONNECTION, "Upgrade")
        .header(axum::http::header::UPGRADE, "ouro-tunnel")
        .body(axum::body::Body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))
}

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
/// `POST /apps/{app}/addons/{addon}/actions/rotate-credentials` (`pg:credentials:rotate`,
/// `redis:credentials --reset`): answers the add-on once its attached apps have the new
/// credentials.
async fn rotate(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path((name, addon)): Path<(String, String)>,
) -> Result<axum::Json<Addon>, ApiError> {
    let app = find_app(&state, &user, &name).await?;
    let addon = provisioned_addon(&state, &app, &addon).await?;
    if addon.app_id != app.id {
        // Attached here, owned by another app: its owners choose when its server restarts.
        return Err(ApiError::forbidden(format!(
            "`{}` belongs to another app: rotate its credentials from that app",
            addon.name
        )));
    }
    let addon = rotate_credentials(&state, addon, user.email.clone()).await?;
    Ok(axum::Json(addon_json(&state, addon).await?))
}

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

fn backup_name(number: i64) -> String {
    format!("b{number:03}")
}

fn backup_json(addon: &AddonRow, backup: BackupRow) -> AddonBackup {
    AddonBackup {
        id: backup.id,
        name: backup_name(backup.number),
        size: backup.size,
        addon: AppRef { name: addon.name.clone() },
        created_at: backup.created_at,
    }
}
