//! Dashboard sessions: a login trades a token for a random 32-byte session id, sent only as an
//! `HttpOnly; SameSite=Strict` cookie. The server keeps SHA-256(id), never the id itself, with
//! the token it came from, the user, a CSRF value and an expiry (12 hours), in SQL (the
//! `dashboard_sessions` table, an `impl Store` block of its own here): a session outlives an
//! API restart, and the two API processes of a self-upgrade's handover share it.
//!
//! The CSRF value is kept in clear, on purpose: it is no credential by itself. A request is
//! only ever checked against it after its cookie found the session, and the cookie's id is
//! kept only as its SHA-256 (of 256 random bits: not to be guessed back), so whoever reads the
//! table learns CSRF values that no request of theirs can use. The pages need the value itself
//! to put it in their forms, so it could only be sealed, not hashed, and sealing would guard
//! nothing the hashed id does not already.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, header};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::store::Store;
use crate::{Result, now};

/// How long a session lasts after its login.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The cookie's name.
pub(crate) const COOKIE: &str = "ouro_session";

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
}

/// A new session, recorded; answers its id (for the cookie) and the session. Expired sessions
/// are deleted on the way, so the table holds at most a day's logins.
pub(crate) async fn create(
    store: &Store,
    token_id: &str,
    token_sha256: &str,
    user_id: &str,
) -> Result<(String, Session)> {
    let id = random_hex();
    let session = Session {
        token_id: token_id.to_string(),
        token_sha256: token_sha256.to_string(),
        user_id: user_id.to_string(),
        csrf: random_hex(),
    };
    let expires_at = humantime::format_rfc3339_micros(SystemTime::now() + LIFETIME).to_string();
    store.purge_dashboard_sessions().await?;
    store.insert_dashboard_session(&digest(&id), &session, &expires_at).await?;
    Ok((id, session))
}

/// The unexpired session of cookie value `id`.
pub(crate) async fn find(store: &Store, id: &str) -> Result<Option<Session>> {
    store.dashboard_session(&digest(id)).await
}

/// Ends the session of cookie value `id` (its row goes).
pub(crate) async fn remove(store: &Store, id: &str) -> Result<()> {
    store.delete_dashboard_session(&digest(id)).await
}

impl Store {
    async fn insert_dashboard_session(&self, id_sha256: &str, session: &Session, expires_at: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_sha256, token_id, token_sha256, user_id, csrf, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id_sha256)
        .bind(&session.token_id)
        .bind(&session.token_sha256)
        .bind(&session.user_id)
        .bind(&session.csrf)
        .bind(now())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session whose id has SHA-256 `id_sha256`, unless it has expired.
    async fn dashboard_session(&self, id_sha256: &str) -> Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT token_id, token_sha256, user_id, csrf FROM dashboard_sessions \
             WHERE id_sha256 = $1 AND expires_at > $2",
        )
        .bind(id_sha256)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                token_id: r.try_get("token_id")?,
                token_sha256: r.try_get("token_sha256")?,
                user_id: r.try_get("user_id")?,
                csrf: r.try_get("csrf")?,
            })
        })
        .transpose()
    }

    async fn delete_dashboard_session(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_sha256 = $1").bind(id_sha256).execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes the expired sessions.
    async fn purge_dashboard_sessions(&self) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1").bind(now()).execute(&self.pool).await?;
        Ok(())
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

/// `Set-Cookie` for a new session; `Secure` when the request came over https (the API's own
/// TLS, or the router's TLS listener, which says so in `X-Forwarded-Proto`).
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

/// What the table keeps of a session id: its SHA-256, in hex.
fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_are_found_by_their_id_only_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::sqlite_url(dir.path())).await.unwrap();
        store.create_user_with_token("a@example.com", true, "tok", "sha", "test").await.unwrap();
        let user_id = store.token("tok").await.unwrap().unwrap().user.id;
        let (id, session) = create(&store, "tok", "sha", &user_id).await.unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, session.csrf);
        assert_eq!(find(&store, &id).await.unwrap().map(|s| s.user_id), Some(user_id.clone()));
        assert!(find(&store, &session.csrf).await.unwrap().is_none());
        let kept: Vec<String> =
            sqlx::query_scalar("SELECT id_sha256 FROM dashboard_sessions").fetch_all(&store.pool).await.unwrap();
        assert_eq!(kept, vec![digest(&id)], "only the id's SHA-256 is stored");
        assert!(csrf_matches(&session, &session.csrf));
        assert!(!csrf_matches(&session, "nope"));
        assert!(!csrf_matches(&session, ""));
        // An expired session is not found, and the next login deletes it.
        sqlx::query("UPDATE dashboard_sessions SET expires_at = $1").bind(now()).execute(&store.pool).await.unwrap();
        assert!(find(&store, &id).await.unwrap().is_none());
        let (second, _) = create(&store, "tok", "sha", &user_id).await.unwrap();
        let kept: Vec<String> =
            sqlx::query_scalar("SELECT id_sha256 FROM dashboard_sessions").fetch_all(&store.pool).await.unwrap();
        assert_eq!(kept, vec![digest(&second)]);
        remove(&store, &second).await.unwrap();
        assert!(find(&store, &second).await.unwrap().is_none());
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
