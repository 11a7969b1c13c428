//! Dashboard sessions: a login trades a token for a random 32-byte session id, sent only as an
//! `HttpOnly; SameSite=Strict` cookie. The server keeps SHA-256(id), never the id itself, with
//! the token it came from, the user, a CSRF value and an expiry (12 hours), in memory: an API
//! restart logs everyone out of the dashboard, which costs a login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a session lasts after its login.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The cookie's name.
pub(crate) const COOKIE: &str = "ouro_session";

/// The live sessions by SHA-256 of their id.
#[derive(Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

/// What a session stands for.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token logged in with (its id and the SHA-256 of its secret as stored): the session
    /// ends when that token is gone.
    pub token_id: String,
    pub token_sha256: String,
    pub user_id: String,
    /// Sent back with every state-changing request, from a form field.
    pub csrf: String,
    expires: Instant,
}

impl Sessions {
    /// A new session; answers its id (for the cookie) and the session.
    pub(crate) fn create(&self, token_id: &str, token_sha256: &str, user_id: &str) -> (String, Session) {
        let id = random_hex();
        let session = Session {
            token_id: token_id.to_string(),
            token_sha256: token_sha256.to_string(),
            user_id: user_id.to_string(),
            csrf: random_hex(),
            expires: Instant::now() + LIFETIME,
        };
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(digest(&id), session.clone());
        (id, session)
    }

    /// The unexpired session of cookie value `id`.
    pub(crate) fn find(&self, id: &str) -> Option<Session> {
        let key = digest(id);
        let mut sessions = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner()).remove(&digest(id));
    }
}

/// Whether `given` is the session's CSRF value, compared in constant time.
pub(crate) fn csrf_matches(session: &Session, given: &str) -> bool {
    bool::from(session.csrf.as_bytes().ct_eq(given.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// `Set-Cookie` for a new session; `Secure` when the request came over https (through the
/// router's TLS listener, which says so in `X-Forwarded-Proto`).
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age={}{secure}", LIFETIME.as_secs())
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/dashboard; Max-Age=0")
}

pub(crate) fn came_over_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_their_id_only_and_end() {
        let sessions = Sessions::default();
        let (id, session) = sessions.create("tok", "sha", "user-1");
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(sessions.find(&id).map(|s| s.user_id), Some("user-1".into()));
        assert!(sessions.find(&session.csrf).is_none());
        assert!(!sessions.by_digest.lock().unwrap().values().any(|s| s.csrf == id), "the id is not stored");
        assert!(csrf_matches(&session, &session.csrf));
        assert!(!csrf_matches(&session, "nope"));
        assert!(!csrf_matches(&session, ""));
        sessions.remove(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; ouro_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "ouro"), None);
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict; Path=/dashboard"));
        assert!(!set_cookie("x", false).contains("Secure"));
        assert!(set_cookie("x", true).ends_with("; Secure"));
    }
}
