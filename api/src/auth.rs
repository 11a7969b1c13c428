//! Tokens (Bearer, or HTTP Basic with the token as password for git) and the audit log.
//!
//! A token is `ouro_<id>_<secret>`: the id finds the row, the secret is checked by comparing its
//! SHA-256 with the stored one in constant time. The secret itself is never stored.
//! Every request but `/health` passes [`require_token`], which also records each mutating
//! request (actor, method and route, target, status) in the audit log. A response that is
//! still streaming (`logs --tail`, a build's output) checks its token again every
//! [`RECHECK`] and breaks off once the token is revoked, rotated or expired; attached sessions
//! do the same ([`until_refused`], `routes/attach.rs`).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::access::Permission;
use crate::accounts::UserRow;
use crate::store::Store;
use crate::{ApiError, AppState, Result};

/// The authenticated caller, put in request extensions for handlers.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub admin: bool,
    /// The token's scope (`runner`): it may do only that, whatever its user may.
    pub scope: Option<String>,
    /// What the request needs on the app it names ([`crate::access::needed`]), for `find_app`.
    pub needs: Permission,
}

impl User {
    pub fn row(&self) -> UserRow {
        UserRow { id: self.id.clone(), email: self.email.clone(), admin: self.admin }
    }
}

/// A handler may set this on its response to name the app it acted on when the path does
/// not (`POST /apps`).
#[derive(Debug, Clone)]
pub struct AuditApp(pub String);

const ADMIN_EMAIL: &str = "admin@ouro.local";
const TOKEN_FILE: &str = "admin-token";

/// On a store with no user, creates the admin user and its token and writes the token to
/// `<data_dir>/admin-token` (mode 0600). Returns the path when it made one. The token is
/// `given` when set (`OURO_ADMIN_TOKEN`: `ouro up` makes it, so it knows it before the API
/// runs in its container), else a fresh one.
pub async fn bootstrap_admin(store: &Store, data_dir: &Path, given: Option<&str>) -> Result<Option<PathBuf>> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let (token_id, secret, token) = match given {
        Some(token) => {
            let parsed = token.strip_prefix("ouro_").and_then(|rest| rest.split_once('_')).filter(|(id, secret)| {
                id.len() == 16
                    && secret.len() == 64
                    && (id.bytes().chain(secret.bytes())).all(|b| b.is_ascii_hexdigit())
            });
            let (id, secret) = parsed.ok_or_else(|| {
                crate::Error::Config("OURO_ADMIN_TOKEN is not a token like ouro_<16 hex>_<64 hex>".into())
            })?;
            (id.to_string(), secret.to_string(), token.to_string())
        }
        None => new_token(),
    };
    store.create_user_with_token(ADMIN_EMAIL, true, &token_id, &hash_secret(&secret), "first admin token").await?;
    let path = data_dir.join(TOKEN_FILE);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    writeln!(file.open(&path)?, "{token}")?;
    Ok(Some(path))
}

/// A new token for the platform's own user `email` (made, as an admin, when missing): the
/// credential of a system app's dynos. Returns the token; only its hash is kept.
pub async fn system_token(store: &Store, email: &str, description: &str, scope: Option<&str>) -> Result<String> {
    let (token_id, secret, token) = new_token();
    store.add_token(email, true, &token_id, &hash_secret(&secret), description, scope).await?;
    Ok(token)
}

/// The requests a `runner` token may make: read the desired state (and wait for changes),
/// report dynos, fetch slugs. Routes as axum matched them.
const RUNNER_ROUTES: &[(&str, &str)] = &[
    ("GET", "/runner/desired-state"),
    ("GET", "/runner/changes"),
    ("PUT", "/runner/dynos"),
    ("POST", "/runner/logs"),
    ("GET", "/runner/attach/{app}/{dyno}"),
    ("GET", "/apps/{app}/slugs/{slug}/blob"),
];

/// The requests a `provider` token (an add-on provider's, of a user that is no admin) may
/// make: manage the server apps it owns (create, configure, make a service, scale, release its
/// own slug on them, delete) and read its own app. What an app it may touch is, the ownership
/// checks of the handlers decide, as for any user.
const PROVIDER_ROUTES: &[(&str, &str)] = &[
    ("POST", "/apps"),
    ("GET", "/apps/{app}"),
    ("DELETE", "/apps/{app}"),
    ("GET", "/apps/{app}/config-vars"),
    ("PATCH", "/apps/{app}/config-vars"),
    ("PUT", "/apps/{app}/service"),
    ("PATCH", "/apps/{app}/formation"),
    ("POST", "/apps/{app}/releases"),
    ("GET", "/apps/{app}/releases/{release}"),
];

/// A token scope: its name, the routes (method, route) it may request, and what it may do in
/// words (for the refusal).
type Scope = (&'static str, &'static [(&'static str, &'static str)], &'static str);

/// The scopes a token may have.
const SCOPES: &[Scope] = &[
    ("runner", RUNNER_ROUTES, "it may read the desired state, report dynos, ship logs and fetch slugs"),
    ("provider", PROVIDER_ROUTES, "it may manage the server apps of its add-ons"),
];

/// Whether a token of `scope` may make the request `method` on `route`, and if not, what it
/// may do.
fn scope_allows(scope: &str, method: &Method, route: &str) -> std::result::Result<(), &'static str> {
    match SCOPES.iter().find(|(name, _, _)| *name == scope) {
        Some((_, routes, _)) if routes.iter().any(|(m, r)| method.as_str() == *m && route == *r) => Ok(()),
        Some((_, _, may)) => Err(may),
        None => Err("its scope is unknown to this API"),
    }
}

/// A fresh random secret for a short-lived credential (a push, a build): the secret in hex,
/// and its SHA-256, which is all that is kept.
pub fn new_scoped_secret() -> (String, [u8; 32]) {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    let digest = Sha256::digest(secret.as_bytes()).into();
    (secret, digest)
}

/// Whether `given` is the secret whose SHA-256 is `expected`, compared in constant time.
pub fn scoped_secret_matches(given: &str, expected: &[u8; 32]) -> bool {
    let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
    bool::from(digest.ct_eq(expected))
}

/// The secret of an `Authorization: Bearer <secret>` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// A fresh token: (id, secret, full token string).
pub(crate) fn new_token() -> (String, String, String) {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let token = format!("ouro_{id}_{secret}");
    (id, secret, token)
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) async fn authenticate(store: &Store, token: &str) -> Result<Option<User>, ApiError> {
    let Some((id, secret)) = token.strip_prefix("ouro_").and_then(|rest| rest.split_once('_')) else {
        return Ok(None);
    };
    let Some(row) = store.token(id).await? else {
        return Ok(None);
    };
    let presented = Sha256::digest(secret.as_bytes());
    let stored = hex::decode(&row.secret_sha256).unwrap_or_default();
    if !bool::from(presented.as_slice().ct_eq(&stored)) {
        return Ok(None);
    }
    if let Some(expired) = row.expired_at() {
        return Err(ApiError::unauthorized(format!(
            "this token expired at {expired}; `ouro login` stores a new one, `ouro authorizations:create` makes one"
        )));
    }
    Ok(Some(User {
        id: row.user.id,
        email: row.user.email,
        admin: row.user.admin,
        scope: row.scope,
        needs: Default::default(),
    }))
}

/// How often a stream still open checks its token again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// The token a request came with, for handlers whose work outlives the response (attach).
#[derive(Clone)]
pub struct PresentedToken(pub String);

/// Resolves once `token` is refused (revoked, rotated, expired) or, with `app` (its name and
/// what the stream needs on it), once the token's user may no longer do that to the app (their
/// access removed or narrowed, the app deleted), checking every [`RECHECK`]; a database that
/// cannot answer is not a refusal.
pub async fn until_refused(store: Store, token: String, app: Option<(String, Permission)>) {
    loop {
        tokio::time::sleep(RECHECK).await;
        let user = match authenticate(&store, &token).await {
            Ok(Some(user)) => user,
            Ok(None) => return,
            Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => return,
            Err(_) => continue,
        };
        let Some((app, needs)) = &app else { continue };
        if user.admin {
            continue;
        }
        match store.may(app, &user.id, *needs).await {
            Ok(Some(true)) | Err(_) => {}
            Ok(Some(false) | None) => return,
        }
    }
}

/// A response body that breaks off (an error: the connection is cut) once its token is
/// refused.
struct UntilRefused {
    inner: axum::body::Body,
    refused: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl hyper::body::Body for UntilRefused {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.refused.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new("the token was revoked or expired")))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::Body::size_hint(&self.inner)
    }
}

/// Middleware: 401 without a valid bearer token; records mutating requests once answered.
pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some((email, password)) = header.and_then(presented_password) {
        return password_login(&state, req, next, &email, &password).await;
    }
    let presented = header.and_then(presented_token);
    let Some(presented) = presented else {
        let refusal = challenge(ApiError::unauthorized(
            "no token: send `Authorization: Bearer <token>` (or HTTP Basic with the token as password); \
             `ouro login` stores one",
        ));
        return drained(req, refusal).await;
    };
    let user = match authenticate(&state.store, &presented).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let refusal = challenge(ApiError::unauthorized("invalid token; `ouro login` stores a valid one"));
            return drained(req, refusal).await;
        }
        Err(e) => return e.into_response(),
    };
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|r| r.as_str().to_string());
    if let Some(scope) = &user.scope {
        if let Err(may) = scope_allows(scope, &method, route.as_deref().unwrap_or_default()) {
            let refusal = ApiError::forbidden(format!("this token is scoped to the {scope}: {may}, nothing else"));
            return drained(req, refusal.into_response()).await;
        }
    }
    let action = match &route {
        Some(route) => format!("{method} {route}"),
        None => format!("{method} {}", req.uri().path()),
    };
    let target = req.uri().path().to_string();
    let path_app = target.strip_prefix("/apps/").map(|rest| rest.split('/').next().unwrap_or_default().to_string());
    let mut user = user;
    user.needs = crate::access::needed(&method, route.as_deref().unwrap_or_default());
    req.extensions_mut().insert(user.clone());
    req.extensions_mut().insert(PresentedToken(presented.clone()));
    let response = next.run(req).await;
    let response = {
        // The app the request names: `/apps/{app}/…`, or `/{app}.git/…` for git.
        let git_app = target.split('/').nth(1).and_then(|first| first.strip_suffix(".git")).map(str::to_string);
        let app = path_app.clone().or(git_app).filter(|a| !a.is_empty()).map(|a| (a, user.needs));
        let refused = Box::pin(until_refused(state.store.clone(), presented, app));
        response.map(|inner| axum::body::Body::new(UntilRefused { inner, refused }))
    };
    // The runner's periodic dyno reports are not user actions: they would drown the log.
    // Neither are fetches, which git sends as POSTs.
    let read_only = method == Method::GET || method == Method::HEAD || target.ends_with("/git-upload-pack");
    if !read_only && target != "/runner/dynos" {
        let app = response.extensions().get::<AuditApp>().map(|a| a.0.clone()).or(path_app);
        let recorded =
            state.store.record_audit(&user.email, &action, &target, app.as_deref(), response.status().as_u16()).await;
        if let Err(e) = recorded {
            tracing::error!(error = %e, %action, %target, "could not record audit event");
        }
    }
    response
}

/// `POST /oauth/authorizations` with HTTP Basic email and password (`ouro login -i`, as
/// Heroku's CLI logs in): a user with a password gets a token. A password opens nothing else.
async fn password_login(state: &AppState, mut req: Request, next: Next, email: &str, password: &str) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|r| r.as_str().to_string());
    if req.method() != Method::POST || route.as_deref() != Some("/oauth/authorizations") {
        let refusal = ApiError::unauthorized("a password only makes a token (`ouro login -i`); send the token");
        return drained(req, challenge(refusal)).await;
    }
    let email_key = email.trim().to_ascii_lowercase();
    if let Some(wait) = FAILED_PASSWORDS.refused(&email_key, Instant::now()) {
        let refusal = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            format!(
                "too many wrong passwords for {email_key}; try again in {} minutes (or log in with a token)",
                wait.as_secs().div_ceil(60)
            ),
        );
        return drained(req, refusal.into_response()).await;
    }
    let found = match state.store.user_with_password(email).await {
        Ok(found) => found,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), hash),
        // Checked against a hash all the same, so an unknown email takes as long as a known one.
        None => (None, DUMMY_HASH.to_string()),
    };
    let password = password.to_string();
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &hash)).await.unwrap_or(false);
    let Some(user) = user.filter(|_| matches) else {
        FAILED_PASSWORDS.failed(&email_key, Instant::now());
        let refusal = ApiError::unauthorized("wrong email or password");
        return drained(req, challenge(refusal)).await;
    };
    FAILED_PASSWORDS.succeeded(&email_key);
    let user = User { id: user.id, email: user.email, admin: user.admin, scope: None, needs: Default::default() };
    let (action, target) = ("POST /oauth/authorizations (password)".to_string(), req.uri().path().to_string());
    req.extensions_mut().insert(user.clone());
    let response = next.run(req).await;
    let recorded = state.store.record_audit(&user.email, &action, &target, None, response.status().as_u16()).await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, %action, "could not record audit event");
    }
    response
}

/// Wrong passwords allowed per email within [`FAILURE_WINDOW`]; then the email's password
/// logins are refused (429) until the window has passed, whatever the password: guessing is
/// bounded to this many tries per quarter hour, argon2 work too.
pub const FAILURES_ALLOWED: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Emails followed at most (a bound on memory); when that many have recent failures, new
/// ones are not followed until old ones expire.
const FAILURES_KEPT: usize = 10_000;

/// Recent wrong passwords, by email (lower case), in memory: a restart forgets them.
pub struct FailedPasswords(std::sync::Mutex<std::collections::HashMap<String, Vec<Instant>>>);

pub static FAILED_PASSWORDS: std::sync::LazyLock<FailedPasswords> =
    std::sync::LazyLock::new(|| FailedPasswords(std::sync::Mutex::new(std::collections::HashMap::new())));

impl FailedPasswords {
    fn with<T>(&self, f: impl FnOnce(&mut std::collections::HashMap<String, Vec<Instant>>) -> T) -> T {
        let mut map = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut map)
    }

    /// How long `email` must wait, when its failures within the window reached the allowance.
    pub fn refused(&self, email: &str, now: Instant) -> Option<Duration> {
        self.with(|map| {
            let failures = map.get_mut(email)?;
            failures.retain(|at| now.duration_since(*at) < FAILURE_WINDOW);
            (failures.len() >= FAILURES_ALLOWED).then(|| FAILURE_WINDOW - now.duration_since(failures[0]))
        })
    }

    pub fn failed(&self, email: &str, now: Instant) {
        self.with(|map| {
            if map.len() >= FAILURES_KEPT && !map.contains_key(email) {
                map.retain(|_, failures| failures.last().is_some_and(|at| now.duration_since(*at) < FAILURE_WINDOW));
                if map.len() >= FAILURES_KEPT {
                    return;
                }
            }
            map.entry(email.to_string()).or_default().push(now);
        });
    }

    pub fn succeeded(&self, email: &str) {
        self.with(|map| map.remove(email));
    }
}

/// The argon2id hash (PHC string) of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> std::result::Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` is the one `hash` (a PHC string) was made from.
pub fn password_matches(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// A hash of no one's password, to check unknown emails against.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$1Ow7Ah1wZtHSRZ4DeZ4YHgUZVDu9y0CIJDN7DW4cn6Y";

/// Reads (and drops) a refused request's small body before answering, so the connection stays
/// usable: a server that answers before reading the body must close the connection, and a
/// client that already reused it for its next request sees it reset.
async fn drained(req: Request, response: Response) -> Response {
    let _ = axum::body::to_bytes(req.into_body(), 64 * 1024).await;
    response
}

/// An email and a password from `Basic base64(email:password)`: a user name with an `@` and a
/// password that is no token (git sends a token as the password, with any user name).
fn presented_password(header: &str) -> Option<(String, String)> {
    let (user, password) = basic_credentials(header)?;
    (user.contains('@') && !password.starts_with("ouro_")).then_some((user, password))
}

/// The token of an `Authorization` header: `Bearer <token>`, or `Basic base64(user:token)` as
/// git sends it (any user name, the token as password, as on Heroku).
fn presented_token(header: &str) -> Option<String> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(value.trim().to_string());
    }
    basic_credentials(header).map(|(_user, password)| password)
}

/// The user and password of `Basic base64(user:password)`.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(value.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

pub use ouro_types::basic_authorization;

/// Standard base64 (RFC 4648, `=` padding optional); `None` on anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character (6 bits) cannot end a valid encoding.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// A 401 that also asks HTTP Basic clients (git) for credentials, so git calls its
/// credential helper.
fn challenge(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"Ouro\""));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passwords_are_refused_after_the_allowance_until_the_window_passes() {
        let limiter = FailedPasswords(std::sync::Mutex::new(std::collections::HashMap::new()));
        let start = Instant::now();
        for i in 0..FAILURES_ALLOWED {
            assert_eq!(limiter.refused("a@x", start), None, "attempt {i}");
            limiter.failed("a@x", start + Duration::from_secs(i as u64));
        }
        let wait = limiter.refused("a@x", start + Duration::from_secs(60)).expect("refused");
        assert_eq!(wait, FAILURE_WINDOW - Duration::from_secs(60));
        assert_eq!(limiter.refused("b@x", start), None, "per email");
        assert_eq!(limiter.refused("a@x", start + FAILURE_WINDOW + Duration::from_secs(10)), None, "the window passed");
        limiter.failed("c@x", start);
        limiter.succeeded("c@x");
        assert!(limiter.with(|map| !map.contains_key("c@x")), "a success forgets the failures");
    }

    #[test]
    fn passwords_are_kept_as_argon2id_hashes_that_only_their_password_matches() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(password_matches("correct horse battery", &hash));
        assert!(!password_matches("correct horse batterY", &hash));
        assert_ne!(hash_password("correct horse battery").unwrap(), hash, "a fresh salt each time");
        // The stand-in for unknown emails is a hash, and matches nothing anyone types.
        assert!(argon2::password_hash::PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!password_matches("", DUMMY_HASH) && !password_matches("password", DUMMY_HASH));
    }

    #[test]
    fn basic_and_bearer_credentials() {
        assert_eq!(presented_token("Bearer ouro_a_b").as_deref(), Some("ouro_a_b"));
        assert_eq!(presented_token("bearer  ouro_a_b ").as_deref(), Some("ouro_a_b"));
        // base64("git:ouro_a_b") and base64("x:") / base64("nocolon")
        assert_eq!(presented_token("Basic Z2l0Om91cm9fYV9i").as_deref(), Some("ouro_a_b"));
        assert_eq!(presented_token("basic eDo=").as_deref(), Some(""));
        assert_eq!(presented_token("Basic bm9jb2xvbg=="), None);
        assert_eq!(presented_token("Basic !!!"), None);
        assert_eq!(presented_token("Digest abc"), None);
        assert_eq!(decode_base64("aGVsbG8gd29ybGQ=").as_deref(), Some(&b"hello world"[..]));
        assert_eq!(decode_base64("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("Y"), None);
        for (user, password) in
            [("", ""), ("f", "o"), ("fo", "oo"), ("postgresql", "pw"), ("bob@example.com", "pass:word")]
        {
            let header = basic_authorization(user, password);
            let encoded = header.strip_prefix("Basic ").unwrap();
            assert_eq!(decode_base64(encoded), Some(format!("{user}:{password}").into_bytes()));
        }
        assert_eq!(basic_authorization("postgresql", "pw"), "Basic cG9zdGdyZXNxbDpwdw==");
        // An email and a password that is no token: a password login; a token: git's way.
        let login = basic_authorization("bob@example.com", "pass:word");
        assert_eq!(presented_password(&login), Some(("bob@example.com".into(), "pass:word".into())));
        assert_eq!(presented_password(&basic_authorization("bob@example.com", "ouro_a_b")), None);
        assert_eq!(presented_password(&basic_authorization("git", "secret")), None);
        assert_eq!(presented_password("Bearer bob@example.com:x"), None);
    }

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let (id, secret, token) = new_token();
        assert_eq!(token, format!("ouro_{id}_{secret}"));
        assert_eq!((id.len(), secret.len()), (16, 64));
        assert_ne!(new_token().2, token);
        assert_ne!(hash_secret(&secret), secret);
    }
}
