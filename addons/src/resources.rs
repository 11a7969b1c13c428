//! The resources of the provider contract: provisioning a server app, its state (and config
//! once it is ready), and deprovisioning it. A server's credentials are its app's config vars:
//! the provider keeps no state of its own.
//!
//! - `POST /ouro/resources {uuid, plan, app_name, name}`: makes the server app `<name>`
//!   (random credentials in its config vars, a volume at `/data`, quantity 1 of its `server`
//!   process and 0 of `web`, a release of this provider's own slug) and answers 202
//!   `{id, service_app, message}`. The API then puts this provider's dynos on the server
//!   app's network, where they reach it by its name.
//! - `GET /ouro/resources/<id>`: `{state: provisioning}` until the server accepts connections,
//!   then `{state: provisioned, config}`.
//! - `POST /ouro/resources/<id>/actions/rotate-credentials`: new credentials for the apps (a
//!   new password; for a PostgreSQL server made before app roles, an app's role) in the server
//!   app's config vars, after a release of this provider's slug (the server's own may predate
//!   rotations), which restarts the server, and the server takes them as it starts;
//!   answers 202. `GET` answers `provisioning` until the server takes them, then the new config.
//! - `DELETE /ouro/resources/<id>`: deletes the server app (its volume goes with it).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::AppState;
use crate::body::{SMALL_BODY, read_capped};
use crate::error::{Error, Result};
use crate::kinds::{self, Credentials};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ouro/resources", post(provision).fallback(crate::no_such_route))
        .route("/ouro/resources/{id}", get(show).delete(deprovision).fallback(crate::no_such_route))
        .route(
            "/ouro/resources/{id}/actions/rotate-credentials",
            post(rotate_credentials).fallback(crate::no_such_route),
        )
}

/// Whether `name` can name a server app: 3 to 30 of `a-z`, `0-9` and `-`, starting with a
/// letter and not ending with `-`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    (3..=30).contains(&bytes.len())
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// What `POST /ouro/resources` asks for: the add-on's name (the server app's) and the app it
/// is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub name: String,
    pub app_name: String,
}

impl ProvisionRequest {
    /// From the request's body (empty is `{}`); 400 when it is not a JSON object, 422 when
    /// `name` cannot name a server app.
    pub fn parse(body: &[u8]) -> Result<ProvisionRequest> {
        let value: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(body)
                .map_err(|e| Error::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?
        };
        let Value::Object(fields) = value else {
            return Err(Error::new(StatusCode::BAD_REQUEST, "the body is not a JSON object"));
        };
        // Only a string names an app (`null` is not the app `null`).
        let name = fields.get("name").map(text).unwrap_or_default();
        if !fields.get("name").is_some_and(Value::is_string) || !valid_name(&name) {
            return Err(Error::new(StatusCode::UNPROCESSABLE_ENTITY, format!("`{name}` cannot name a server app")));
        }
        Ok(ProvisionRequest { name, app_name: fields.get("app_name").map(text).unwrap_or_else(|| "?".into()) })
    }
}

/// A JSON value as text: a string as itself, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn provision(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Result<(StatusCode, Json<Value>)> {
    let request = ProvisionRequest::parse(&read_capped(&headers, body, SMALL_BODY).await?)?;
    // In a task of its own: a client that goes away does not leave a half-made server app.
    let made = tokio::spawn(async move { make_server(&state, &request).await })
        .await
        .map_err(|e| Error::new(StatusCode::INTERNAL_SERVER_ERROR, format!("provisioning stopped: {e}")))??;
    Ok((StatusCode::ACCEPTED, Json(made)))
}

/// Makes the server app, in the Platform API's order; the app is deleted again when any step
/// after its creation fails.
async fn make_server(state: &AppState, request: &ProvisionRequest) -> Result<Value> {
    let (kind, name) = (state.config.kind, &request.name);
    let slug = own_slug(state).await?;
    let api = &state.platform;
    api.call("POST", "/apps", Some(json!({ "name": name }))).await?;
    let configured = async {
        api.call("PATCH", &format!("/apps/{name}/config-vars"), Some(json!(kinds::new_config(kind, name)))).await?;
        // It joins no network: the API puts this provider's dynos on the server's own network
        // (and the server on those of the apps the add-on is attached to), so no two servers
        // share one.
        let service = json!({
            "mounts": [{ "volume": format!("{name}-data"), "path": "/data" }],
            // Up once it accepts connections: a restart is over when the server answers.
            "listens": true,
        });
        api.call("PUT", &format!("/apps/{name}/service"), Some(service)).await?;
        // Before the first release, so no web dyno of the shared slug ever starts here.
        let formation = json!({ "updates": [{ "type": "web", "quantity": 0 }, { "type": "server", "quantity": 1 }] });
        api.call("PATCH", &format!("/apps/{name}/formation"), Some(formation)).await?;
        let release = json!({ "slug": slug, "description": format!("{kind} server for {}", request.app_name) });
        api.call("POST", &format!("/apps/{name}/releases"), Some(release)).await
    };
    if let Err(e) = configured.await {
        if let Err(undone) = api.call_or_missing("DELETE", &format!("/apps/{name}"), None).await {
            tracing::warn!("could not remove the half-made server app {name}: {undone}");
        }
        return Err(e);
    }
    tracing::info!("provisioning {name} for {}", request.app_name);
    Ok(json!({ "id": name, "service_app": name, "message": format!("starting the {kind} server") }))
}

/// The slug of this provider's current release: servers run it too.
async fn own_slug(state: &AppState) -> Result<Value> {
    let no_slug = || Error::new(StatusCode::SERVICE_UNAVAILABLE, "the provider app has no slug yet");
    let path = format!("/apps/{}", state.config.provider_app);
    let app = state.platform.call("GET", &path, None).await?;
    let Some(app_name) = app.get("name").and_then(Value::as_str) else {
        return Err(Error::new(StatusCode::BAD_GATEWAY, format!("GET {path}: the answer names no app")));
    };
    let release = match app.get("current_release") {
        None | Some(Value::Null) => return Err(no_slug()),
        Some(version) => text(version),
    };
    let release = state.platform.call("GET", &format!("/apps/{app_name}/releases/{release}"), None).await?;
    release.get("slug").and_then(|slug| slug.get("id")).filter(|id| !id.is_null()).cloned().ok_or_else(no_slug)
}

/// The server app `name`'s config vars (its credentials); None when it is gone, or when
/// `name` cannot name one.
pub async fn server_vars(state: &AppState, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    if !valid_name(name) {
        return Ok(None);
    }
    let path = format!("/apps/{name}/config-vars");
    let Some(vars) = state.platform.call_or_missing("GET", &path, None).await? else {
        return Ok(None);
    };
    let Value::Object(vars) = vars else {
        return Err(Error::new(StatusCode::BAD_GATEWAY, format!("GET {path}: the answer is not an object")));
    };
    Ok(Some(vars.iter().map(|(k, v)| (k.clone(), text(v))).collect()))
}

/// [`server_vars`], a 404 naming the server when it is gone.
pub async fn find_server(state: &AppState, name: &str) -> Result<BTreeMap<String, String>> {
    server_vars(state, name).await?.ok_or_else(|| Error::not_found(format!("no {} server `{name}`", state.config.kind)))
}

async fn show(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>> {
    let vars = find_server(&state, &name).await?;
    let credentials = Credentials::from_vars(state.config.kind, &name, &vars)?;
    if kinds::ready(&state.config, &name, &credentials).await {
        return Ok(Json(json!({ "state": "provisioned", "config": kinds::addon_config(&name, &credentials) })));
    }
    Ok(Json(json!({ "state": "provisioning" })))
}

async fn rotate_credentials(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>)> {
    let vars = find_server(&state, &name).await?;
    let rotated = kinds::rotated_config(state.config.kind, &vars);
    // The server runs the slug it was made with, whose start script may predate rotations (or
    // app roles): first this provider's own slug, then the new credentials. Both are releases;
    // the runner rolls onto the last, and the server restarts once or twice.
    let slug = own_slug(&state).await?;
    let release = json!({ "slug": slug, "description": format!("{} server, new credentials", state.config.kind) });
    state.platform.call("POST", &format!("/apps/{name}/releases"), Some(release)).await?;
    state.platform.call("PATCH", &format!("/apps/{name}/config-vars"), Some(json!(rotated))).await?;
    tracing::info!("rotated the credentials of {name}");
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": name, "message": "restarting the server with new credentials" }))))
}

async fn deprovision(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>> {
    if valid_name(&name) {
        state.platform.call_or_missing("DELETE", &format!("/apps/{name}"), None).await?;
    }
    tracing::info!("deprovisioned {name}");
    Ok(Json(json!({ "id": name })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_app_names() {
        for good in ["abc", "postgresql-shiny-12345", "r2d2", "a-b-c", "a23456789012345678901234567890", "a--b"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "ab",
            "a234567890123456789012345678901",
            "1abc",
            "-abc",
            "abc-",
            "Abc",
            "abC",
            "a_bc",
            "a.bc",
            "a bc",
            "abc\n",
            "ab/c",
            "ábc",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    fn check(body: &str, status: u16, message: &str) {
        let error = ProvisionRequest::parse(body.as_bytes()).unwrap_err();
        assert_eq!((error.status.as_u16(), error.message.as_str()), (status, message), "{body}");
    }

    #[test]
    fn a_provision_request_needs_a_name_that_can_name_an_app() {
        check("", 422, "`` cannot name a server app");
        check("{}", 422, "`` cannot name a server app");
        check(r#"{"uuid":"u","plan":"standard","app_name":"shop"}"#, 422, "`` cannot name a server app");
        check(r#"{"name":"Shop_DB"}"#, 422, "`Shop_DB` cannot name a server app");
        check(r#"{"name":"x"}"#, 422, "`x` cannot name a server app");
        check(r#"{"name":42}"#, 422, "`42` cannot name a server app");
        check(r#"{"name":null}"#, 422, "`null` cannot name a server app");
        check(r#"{"name":["pg-1"]}"#, 422, "`[\"pg-1\"]` cannot name a server app");
    }

    #[test]
    fn a_provision_request_is_a_json_object() {
        check("[]", 400, "the body is not a JSON object");
        check("\"pg-1\"", 400, "the body is not a JSON object");
        let error = ProvisionRequest::parse(b"{name:").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("the body is not JSON: "), "{}", error.message);
    }

    #[test]
    fn a_provision_request_reads_name_and_app_name() {
        let request =
            ProvisionRequest::parse(br#"{"uuid":"u","plan":"standard","app_name":"shop","name":"pg-1"}"#).unwrap();
        assert_eq!(request, ProvisionRequest { name: "pg-1".into(), app_name: "shop".into() });
        let request = ProvisionRequest::parse(br#"{"name":"pg-1"}"#).unwrap();
        assert_eq!(request.app_name, "?");
    }
}
