//! The web dashboard under `/dashboard`: server-rendered pages of the apps, each app's releases,
//! config var names, add-ons and its formation as desired vs live, kept current by a
//! server-sent-events stream.
//!
//! It sits outside the token middleware and has its own door: `POST /dashboard/login` trades a
//! token (in the form body, never in a URL) for a session cookie ([`session`]). Pages then apply
//! the API's own ownership rules ([`crate::apps::find_app`]); every state-changing request is
//! a POST carrying the session's CSRF value. It never shows a config value unless asked by such
//! a POST, and loads nothing from outside the API.

mod page;
mod session;
mod view;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ouro_types::{FormationBatch, FormationUpdate};

use crate::accounts::TokenRow;
use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::User;
use crate::{ApiError, AppState};

/// How often an open app page's stream looks at the formation and the dynos.
const POLL: Duration = Duration::from_secs(1);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(home))
        .route("/dashboard/login", get(to_home).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/apps/{app}", get(app_page))
        .route("/dashboard/apps/{app}/events", get(events))
        .route("/dashboard/apps/{app}/scale", post(scale))
        .route("/dashboard/apps/{app}/config-vars/reveal", post(reveal))
        .route("/dashboard/assets/dashboard.css", get(css))
        .route("/dashboard/assets/dashboard.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
}

/// Who is looking: the user of a live session whose token still exists.
struct Visitor {
    user: User,
    session_id: String,
    session: session::Session,
}

impl Visitor {
    fn who(&self) -> Option<(&str, &str)> {
        Some((&self.user.email, &self.session.csrf))
    }
}

async fn visitor(state: &AppState, headers: &HeaderMap) -> Result<Option<Visitor>, ApiError> {
    let Some(id) = session::cookie(headers, session::COOKIE) else { return Ok(None) };
    let Some(session) = session::find(&state.store, id).await? else { return Ok(None) };
    let Some(token) = session_token(state, &session).await? else {
        session::remove(&state.store, id).await?;
        return Ok(None);
    };
    let user = User {
        id: token.user.id,
        email: token.user.email,
        admin: token.user.admin,
        scope: None,
        needs: Default::default(),
    };
    Ok(Some(Visitor { user, session_id: id.to_string(), session }))
}

/// The token `session` logged in with, if it is still there (and the same) and not expired:
/// revoking or rotating it, or its expiry, ends the session.
async fn session_token(state: &AppState, session: &session::Session) -> Result<Option<TokenRow>, ApiError> {
    let token = state.store.token(&session.token_id).await?;
    Ok(token.filter(|t| {
        t.user.id == session.user_id && t.secret_sha256 == session.token_sha256 && t.expired_at().is_none()
    }))
}

/// Whether `visitor`'s session and the token it came from still exist.
async fn still_logged_in(state: &AppState, visitor: &Visitor) -> bool {
    matches!(session::find(&state.store, &visitor.session_id).await, Ok(Some(_)))
        && matches!(session_token(state, &visitor.session).await, Ok(Some(_)))
}

/// The session's visitor if the form's `csrf` field is its CSRF value.
async fn checked_visitor(state: &AppState, headers: &HeaderMap, form: &Form) -> Result<Visitor, Response> {
    let visitor = match visitor(state, headers).await {
        Ok(Some(visitor)) => visitor,
        Ok(None) => return Err(failure(None, StatusCode::UNAUTHORIZED, "not logged in, or the session ended")),
        Err(e) => return Err(failure(None, e.status, &e.message)),
    };
    if !session::csrf_matches(&visitor.session, form.get("csrf")) {
        let who = visitor.who();
        return Err(failure(
            who,
            StatusCode::FORBIDDEN,
            "the form is stale or forged (CSRF check failed); reload the page",
        ));
    }
    Ok(visitor)
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let visitor = match visitor(&state, &headers).await {
        Ok(Some(visitor)) => visitor,
        Ok(None) => return Html(page::login(None)).into_response(),
        Err(e) => return failure(None, e.status, &e.message),
    };
    match app_lines(&state, &visitor.user).await {
        Ok(lines) => Html(page::apps(&visitor.user.email, &visitor.session.csrf, &lines)).into_response(),
        Err(e) => failure(visitor.who(), e.status, &e.message),
    }
}

async fn to_home() -> Redirect {
    Redirect::to("/dashboard")
}

async fn app_lines(state: &AppState, user: &User) -> Result<Vec<page::AppLine>, ApiError> {
    let owner = (!user.admin).then_some(user.id.as_str());
    let mut lines = Vec::new();
    for app in state.store.apps(owner).await? {
        if ouro_types::platform::is_system_app(&app.name) {
            continue;
        }
        let view = formation(state, &app).await?;
        lines.push(page::AppLine {
            up: view.processes.iter().flat_map(|p| &p.dynos).filter(|d| d.ok).count(),
            wanted: view.processes.iter().map(|p| p.quantity).sum(),
            release: app.current_version,
            owner: app.owner_email,
            name: app.name,
        });
    }
    Ok(lines)
}

async fn login(
    State(state): State<AppState>,
    transport: Option<axum::Extension<ouro_serve::Transport>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Form::parse(&body);
    let token = form.get("token").trim();
    let refuse = |message: &str| (StatusCode::UNAUTHORIZED, Html(page::login(Some(message)))).into_response();
    let user = match crate::auth::authenticate(&state.store, token).await {
        Ok(Some(user)) => user,
        Ok(None) => return refuse("invalid token; `ouro login` stores a valid one"),
        Err(e) => return failure(None, e.status, &e.message),
    };
    if let Some(scope) = &user.scope {
        return refuse(&format!("this token is scoped to the {scope}; log in with a user's token"));
    }
    // `authenticate` accepted it, so it has this shape.
    let token_id = token.strip_prefix("ouro_").and_then(|rest| rest.split_once('_')).map_or("", |(id, _)| id);
    let stored = match state.store.token(token_id).await {
        Ok(Some(row)) => row.secret_sha256,
        Ok(None) => return refuse("invalid token; `ouro login` stores a valid one"),
        Err(e) => return failure(None, StatusCode::INTERNAL_SERVER_ERROR, &ApiError::from(e).message),
    };
    let id = match session::create(&state.store, token_id, &stored, &user.id).await {
        Ok((id, _)) => id,
        Err(e) => return failure(None, StatusCode::INTERNAL_SERVER_ERROR, &ApiError::from(e).message),
    };
    // Over the API's own TLS, or the router's (which says so in `X-Forwarded-Proto`).
    let over_tls = matches!(transport, Some(axum::Extension(ouro_serve::Transport::Tls)));
    let cookie = session::set_cookie(&id, over_tls || session::came_over_https(&headers));
    ([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard")).into_response()
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let visitor = match checked_visitor(&state, &headers, &Form::parse(&body)).await {
        Ok(visitor) => visitor,
        Err(refused) => return refused,
    };
    if let Err(e) = session::remove(&state.store, &visitor.session_id).await {
        return failure(visitor.who(), StatusCode::INTERNAL_SERVER_ERROR, &ApiError::from(e).message);
    }
    ([(header::SET_COOKIE, session::clear_cookie())], Redirect::to("/dashboard")).into_response()
}

async fn app_page(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let visitor = match visitor(&state, &headers).await {
        Ok(Some(visitor)) => visitor,
        Ok(None) => return Redirect::to("/dashboard").into_response(),
        Err(e) => return failure(None, e.status, &e.message),
    };
    match render_app(&state, &visitor, &name).await {
        Ok(html) => Html(html).into_response(),
        Err(e) => failure(visitor.who(), e.status, &e.message),
    }
}

async fn render_app(state: &AppState, visitor: &Visitor, name: &str) -> Result<String, ApiError> {
    let app = find_app(state, &visitor.user, name).await?;
    let mut releases = state.store.releases(&app.id).await?;
    releases.reverse();
    releases.truncate(10);
    let current = state.store.current_release(&app).await?;
    let addons = state.store.addons_of_app(&app.id).await?;
    let formation = formation(state, &app).await?;
    let web_url = crate::apps::web_url(&state.settings, &app.name);
    let page = page::AppPage {
        name: &app.name,
        web_url: &web_url,
        releases: &releases,
        config_keys: current.config.keys().map(String::as_str).collect(),
        addons: &addons,
        formation: &formation,
    };
    Ok(page::app(&visitor.user.email, &visitor.session.csrf, &page))
}

/// The app's formation against the runner's last report.
async fn formation(state: &AppState, app: &AppRow) -> Result<view::FormationView, ApiError> {
    let release = state.store.current_release(app).await?;
    let rows = state.store.formation(&app.id).await?;
    let live = state.dynos.read().map(|d| d.get(&app.name).cloned().unwrap_or_default()).unwrap_or_default();
    Ok(view::formation_view(release.version, release.slug_id.is_some(), &rows, &live))
}

/// `text/event-stream` of `formation` events (the [`view::FormationView`] as JSON): one at
/// once, then one whenever it changes. Ends when the session does, or the API stops.
async fn events(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let visitor = match visitor(&state, &headers).await {
        Ok(Some(visitor)) => visitor,
        Ok(None) => return failure(None, StatusCode::UNAUTHORIZED, "not logged in, or the session ended"),
        Err(e) => return failure(None, e.status, &e.message),
    };
    let app = match find_app(&state, &visitor.user, &name).await {
        Ok(app) => app,
        Err(e) => return failure(visitor.who(), e.status, &e.message),
    };
    let closing = state.stopping.subscribe();
    let start = (state, visitor, app.id, None::<String>, closing);
    let stream = futures_util::stream::unfold(start, |(state, visitor, app_id, last, mut closing)| async move {
        let mut first = last.is_none();
        loop {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    _ = closing.wait_for(|closing| *closing) => return None,
                }
            }
            first = false;
            if *closing.borrow() || !still_logged_in(&state, &visitor).await {
                return None;
            }
            // Looked up again each time: access is checked anew and the current release moves.
            let app = find_app(&state, &visitor.user, &app_id).await.ok()?;
            let json = serde_json::to_string(&formation(&state, &app).await.ok()?).ok()?;
            if last.as_deref() != Some(json.as_str()) {
                let event = Event::default().event("formation").data(json.as_str());
                return Some((Ok::<_, Infallible>(event), (state, visitor, app_id, Some(json), closing)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// `POST /dashboard/apps/{app}/scale` (`type`, `quantity`, `csrf`): as `PATCH
/// /apps/{app}/formation` with one update, then back to the app's page.
async fn scale(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let visitor = match checked_visitor(&state, &headers, &form).await {
        Ok(visitor) => visitor,
        Err(refused) => return refused,
    };
    // Scaling, as `PATCH /apps/{app}/formation`, needs `operate`.
    let mut visitor = visitor;
    visitor.user.needs = crate::access::Permission::Operate;
    let app = match find_app(&state, &visitor.user, &name).await {
        Ok(app) => app,
        Err(e) => return failure(visitor.who(), e.status, &e.message),
    };
    let quantity = form.get("quantity").trim();
    let result = match quantity.parse::<i64>() {
        Ok(quantity) => {
            let update =
                FormationUpdate { process_type: form.get("type").to_string(), quantity: Some(quantity), size: None };
            crate::formation::scale(&state, &visitor.user, &app, FormationBatch { updates: vec![update] })
                .await
                .map(|_| ())
        }
        Err(_) => Err(ApiError::invalid_params(format!("quantity `{quantity}` is not a number"))),
    };
    let status = result.as_ref().map_or_else(|e| e.status, |()| StatusCode::SEE_OTHER);
    let target = format!("/dashboard/apps/{}/scale", app.name);
    let recorded = state
        .store
        .record_audit(
            &visitor.user.email,
            "POST /dashboard/apps/{app}/scale",
            &target,
            Some(&app.name),
            status.as_u16(),
        )
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, %target, "could not record audit event");
    }
    match result {
        Ok(()) => Redirect::to(&format!("/dashboard/apps/{}", app.name)).into_response(),
        Err(e) => failure(visitor.who(), e.status, &e.message),
    }
}

/// `POST /dashboard/apps/{app}/config-vars/reveal` (`key`, `csrf`): that config var's value,
/// as text.
async fn reveal(State(state): State<AppState>, headers: HeaderMap, Path(name): Path<String>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let visitor = match checked_visitor(&state, &headers, &form).await {
        Ok(visitor) => visitor,
        Err(refused) => return refused,
    };
    // A value, as `GET /apps/{app}/config-vars`, needs `deploy`.
    let mut visitor = visitor;
    visitor.user.needs = crate::access::Permission::Deploy;
    let value = async {
        let app = find_app(&state, &visitor.user, &name).await?;
        let mut config = state.store.current_release(&app).await?.config;
        let key = form.get("key");
        config.remove(key).ok_or_else(|| ApiError::not_found(format!("app `{}` has no config var `{key}`", app.name)))
    };
    match value.await {
        Ok(value) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], value).into_response(),
        Err(e) => (e.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], e.message).into_response(),
    }
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("dashboard.css"))
}

async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("dashboard.js"))
}

fn failure(who: Option<(&str, &str)>, status: StatusCode, message: &str) -> Response {
    (status, Html(page::error(who, message))).into_response()
}

/// Every dashboard answer: nothing from elsewhere, no framing, no caching, no referrer.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// An `application/x-www-form-urlencoded` body.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        let text = String::from_utf8_lossy(body);
        let fields = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        Form(fields)
    }

    /// The first value of field `name`; empty when absent.
    fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str())
    }
}

/// `+` is a space and `%XX` a byte; malformed escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode() {
        let form = Form::parse(b"token=ouro_ab_c%2Bd&csrf=&type=web&quantity=+2&x=%zz%&y=a+b%20c&token=second");
        assert_eq!(form.get("token"), "ouro_ab_c+d");
        assert_eq!(form.get("csrf"), "");
        assert_eq!(form.get("quantity"), " 2");
        assert_eq!(form.get("x"), "%zz%");
        assert_eq!(form.get("y"), "a b c");
        assert_eq!(form.get("missing"), "");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
