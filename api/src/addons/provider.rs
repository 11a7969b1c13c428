//! The API's client of add-on providers: calls (`POST`/`GET`/`DELETE /ouro/resources…`) with
//! HTTP Basic, long transfers (backups, restores), and the tunnel upgrade. A provider that
//! cannot be reached is a 503 naming it; one that refuses is a 502 with what it said.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;

use super::store::{AddonRow, ProviderRow};
use crate::{ApiError, AppState};

/// How long a provider may take to answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a backup or a restore may take at the provider.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

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

/// One call to a provider; its failures are 503 (unreachable) or 502 (refused), naming it.
pub(crate) async fn call_provider(
    settings: &crate::Settings,
    provider: &ProviderRow,
    method: &'static str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ApiError> {
    Ok(call_provider_status(settings, provider, method, path, body).await?.1)
}

/// [`call_provider`], with the status of a 2xx answer (202 means "still provisioning").
pub(crate) async fn call_provider_status(
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
pub(crate) async fn provider_request(
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
        let config = ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(PROVIDER_TIMEOUT))
            .build();
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

/// The provider's config: string values of `config`, keys as given (`URL`).
pub(crate) fn provider_config(answer: &serde_json::Value) -> BTreeMap<String, String> {
    answer["config"]
        .as_object()
        .map(|o| o.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

/// A long `POST` to a provider (a backup, a restore) off the async threads: `upload` as the
/// body, a 200's body handed to `read`. `read`'s errors are (status of our answer, why).
pub(crate) async fn provider_transfer<T: Send + 'static>(
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
        let config = ureq::Agent::config_builder()
            .max_idle_age(std::time::Duration::from_secs(ouro_types::CLIENT_IDLE_SECONDS))
            .http_status_as_error(false)
            .timeout_global(Some(BACKUP_TIMEOUT));
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

pub(crate) async fn addon_provider(state: &AppState, addon: &AddonRow) -> Result<ProviderRow, ApiError> {
    state
        .store
        .provider(&addon.provider_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("the provider of `{}` is no longer registered", addon.name)))
}

/// Sends `request` and reads the answer's head, with the bytes after it (the tunnel's first
/// bytes after a 101, the error body otherwise).
async fn upgrade_upstream(
    upstream: &mut tokio::net::TcpStream,
    request: &[u8],
) -> std::io::Result<ouro_types::http_upgrade::Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    upstream.write_all(request).await?;
    let mut reader = ouro_types::http_upgrade::HeadReader::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = upstream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other(ouro_types::http_upgrade::HeadReader::closed_early()));
        }
        if let Some(answer) = reader.push(&chunk[..n]).map_err(std::io::Error::other)? {
            return Ok(answer);
        }
    }
}

/// Opens a tunnel to the add-on server `resource_id` through its provider
/// (`GET /ouro/resources/{id}/tunnel` with `Upgrade: ouro-tunnel`): the connection after the
/// provider's `101`, and the bytes that came after its head.
pub(crate) async fn open_tunnel(
    settings: &crate::Settings,
    provider: &ProviderRow,
    resource_id: &str,
) -> Result<(tokio::net::TcpStream, Vec<u8>), ApiError> {
    let (base, host) = provider_target(settings, provider)?;
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
    let endpoint = ouro_types::http_upgrade::Endpoint {
        addr: authority.clone(),
        host: host.unwrap_or_else(|| authority.clone()),
        prefix: String::new(),
    };
    let request = ouro_types::http_upgrade::request(
        &endpoint,
        &format!("/ouro/resources/{resource_id}/tunnel"),
        &crate::auth::basic_authorization(&provider.name, &provider.password),
        concat!("ouro-api/", env!("CARGO_PKG_VERSION")),
        "ouro-tunnel",
    );
    let answer = tokio::time::timeout(PROVIDER_TIMEOUT, upgrade_upstream(&mut upstream, request.as_bytes()))
        .await
        .map_err(|_| unreachable("no answer".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (status, rest) = (answer.head.status, answer.early);
    if status != 101 {
        let said = String::from_utf8_lossy(&rest).chars().take(300).collect::<String>();
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("add-on provider `{}` refused the tunnel ({status}): {said}", provider.name),
        ));
    }
    Ok((upstream, rest))
}
