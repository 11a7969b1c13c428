//! Automatic certificates (Heroku's ACM: `ouro certs:auto:enable`): for an app that asked, a
//! certificate from an ACME server (`OURO_ACME_DIRECTORY`, Let's Encrypt by default) for each
//! custom domain, renewed [`RENEW_BEFORE`] before it expires or when asked
//! (`certs:auto:refresh`), and each domain's status as `certs:auto` shows it: `Waiting`,
//! `In Progress`, `OK`, `Failing` (retried with back-off), `Failed` (after [`ATTEMPTS`]: until
//! a refresh).
//!
//! One supervised task ([`manage_forever`]) does the work, one domain at a time, woken when an
//! app turns ACM on, asks for a refresh or gets a domain, and every ten minutes. The HTTP-01
//! challenge goes the way of every route: a row of `acme_challenges` → the desired state → the
//! runner's route table → the router, which answers it (`ouro-router`); the manager waits until
//! the router does before telling the ACME server to look. An issued certificate replaces the
//! domain's previous one in one transaction, so the router swaps them between two handshakes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sqlx::Row;

use crate::acme::{self, Account, Failure, Order};
use crate::platform_key::PlatformKey;
use crate::store::Store;
use crate::{AppState, Result, now};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// A certificate is renewed once it expires within this (Heroku: a month).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Failed attempts before a domain is `Failed` (and left alone until a refresh).
pub const ATTEMPTS: i64 = 5;
/// How long one step (the router answering, the server validating, issuing) may take.
const STEP: Duration = Duration::from_secs(90);
/// How often every app is looked at without being woken.
const EVERY: Duration = Duration::from_secs(600);

/// One custom domain of an app, as `certs:auto` shows it.
#[derive(Debug, Clone)]
pub struct DomainStatus {
    pub hostname: String,
    pub status: String,
    pub reason: Option<String>,
    pub refresh: bool,
    pub attempts: i64,
    pub updated_at: Option<String>,
    /// Of its automatic certificate, if it has one.
    pub expires_at: Option<String>,
}

impl Store {
    /// Turns ACM on or off for the app; off removes its automatic certificates and challenges.
    pub async fn set_acm(&self, app_id: &str, on: bool) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE apps SET acm = $2 WHERE id = $1")
            .bind(app_id)
            .bind(i64::from(on))
            .execute(&mut *tx)
            .await?;
        if !on {
            for table in ["acm_domains", "acme_challenges"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE app_id = $1")).bind(app_id).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM certificates WHERE app_id = $1 AND acm_hostname IS NOT NULL")
                .bind(app_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn acm_on(&self, app_id: &str) -> Result<bool> {
        let on: Option<i64> =
            sqlx::query_scalar("SELECT acm FROM apps WHERE id = $1").bind(app_id).fetch_optional(&self.pool).await?;
        Ok(on == Some(1))
    }

    /// Ids of the apps with ACM on.
    async fn acm_apps(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM apps WHERE acm = 1 ORDER BY name").fetch_all(&self.pool).await?)
    }

    /// Each custom domain of the app with its ACM status (`Waiting` before any attempt).
    pub async fn acm_domains(&self, app_id: &str) -> Result<Vec<DomainStatus>> {
        let rows = sqlx::query(
            "SELECT d.hostname, s.status, s.reason, s.refresh, s.attempts, s.updated_at, \
             (SELECT MAX(c.expires_at) FROM certificates c WHERE c.app_id = d.app_id AND c.acm_hostname = d.hostname) \
             AS expires_at FROM domains d LEFT JOIN acm_domains s ON s.app_id = d.app_id AND s.hostname = d.hostname \
             WHERE d.app_id = $1 ORDER BY d.hostname",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DomainStatus {
                    hostname: r.try_get("hostname")?,
                    status: r.try_get::<Option<String>, _>("status")?.unwrap_or_else(|| "Waiting".into()),
                    reason: r.try_get("reason")?,
                    refresh: r.try_get::<Option<i64>, _>("refresh")? == Some(1),
                    attempts: r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
                    updated_at: r.try_get("updated_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Records a domain's status; `attempts` counts failures since the last success.
    async fn set_domain_status(
        &self,
        app_id: &str,
        hostname: &str,
        status: &str,
        reason: Option<&str>,
        attempts: i64,
    ) -> Result<()> {
        let now = now();
        let updated = sqlx::query(
            "UPDATE acm_domains SET status = $3, reason = $4, attempts = $5, updated_at = $6 \
             WHERE app_id = $1 AND hostname = $2",
        )
        .bind(app_id)
        .bind(hostname)
        .bind(status)
        .bind(reason)
        .bind(attempts)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO acm_domains (app_id, hostname, status, reason, refresh, attempts, updated_at) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6)",
            )
            .bind(app_id)
            .bind(hostname)
            .bind(status)
            .bind(reason)
            .bind(attempts)
            .bind(&now)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Asks for new certificates for every domain of the app (`certs:auto:refresh`).
    pub async fn request_acm_refresh(&self, app_id: &str) -> Result<()> {
        for domain in self.acm_domains(app_id).await? {
            self.set_domain_status(app_id, &domain.hostname, "Waiting", None, 0).await?;
        }
        sqlx::query("UPDATE acm_domains SET refresh = 1 WHERE app_id = $1").bind(app_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn add_challenge(&self, app_id: &str, hostname: &str, token: &str, key_authorization: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO acme_challenges (token, app_id, hostname, key_authorization, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token)
        .bind(app_id)
        .bind(hostname)
        .bind(key_authorization)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn remove_challenge(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM acme_challenges WHERE token = $1").bind(token).execute(&self.pool).await?;
        Ok(())
    }

    /// Puts a new automatic certificate for `hostname` in place of its previous one, in one
    /// transaction, and marks the domain `OK`.
    #[allow(clippy::too_many_arguments)]
    async fn replace_acm_certificate(
        &self,
        platform_key: &PlatformKey,
        app_id: &str,
        hostname: &str,
        hostnames: &[String],
        expires_at: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = platform_key.seal(&crate::domains::private_key_place(&id), key_pem);
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM certificates WHERE app_id = $1 AND acm_hostname = $2")
            .bind(app_id)
            .bind(hostname)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO certificates (id, app_id, hostnames, expires_at, certificate_chain, private_key, created_at, \
             acm_hostname) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(app_id)
        .bind(serde_json::to_string(hostnames).unwrap_or_else(|_| "[]".into()))
        .bind(expires_at)
        .bind(chain_pem)
        .bind(&sealed)
        .bind(&now)
        .bind(hostname)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE acm_domains SET status = 'OK', reason = NULL, refresh = 0, attempts = 0, updated_at = $3 \
             WHERE app_id = $1 AND hostname = $2",
        )
        .bind(app_id)
        .bind(hostname)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the automatic certificates and statuses of domains the app no longer has.
    async fn forget_removed_domains(&self, app_id: &str) -> Result<u64> {
        let kept = "(SELECT hostname FROM domains WHERE app_id = $1)";
        let gone = sqlx::query(&format!(
            "DELETE FROM certificates WHERE app_id = $1 AND acm_hostname IS NOT NULL AND acm_hostname NOT IN {kept}"
        ))
        .bind(app_id)
        .execute(&self.pool)
        .await?;
        sqlx::query(&format!("DELETE FROM acm_domains WHERE app_id = $1 AND hostname NOT IN {kept}"))
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(gone.rows_affected())
    }

    /// The platform's account at `directory`: its key (sealed) and URL.
    async fn acme_account(&self, directory: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT key_sealed, kid FROM acme_accounts WHERE directory = $1")
            .bind(directory)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("key_sealed")?, r.try_get("kid")?))).transpose()
    }

    async fn save_acme_account(&self, directory: &str, key_sealed: &str, kid: &str) -> Result<()> {
        sqlx::query("DELETE FROM acme_accounts WHERE directory = $1").bind(directory).execute(&self.pool).await?;
        sqlx::query("INSERT INTO acme_accounts (directory, key_sealed, kid, created_at) VALUES ($1, $2, $3, $4)")
            .bind(directory)
            .bind(key_sealed)
            .bind(kid)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Seconds since the epoch of an RFC 3339 time (`2027-01-31T12:00:00Z`), if it is one.
fn epoch_seconds(time: &str) -> Option<u64> {
    let parsed = humantime::parse_rfc3339_weak(time.trim_end_matches('Z')).ok()?;
    parsed.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Whether `domain` needs a certificate now, at `now` (seconds since the epoch).
fn due(domain: &DomainStatus, now: u64) -> bool {
    let failing_since = domain.updated_at.as_deref().and_then(epoch_seconds).unwrap_or(0);
    match domain.status.as_str() {
        "Failed" => false,
        // Back-off: 1, 2, 4, 8 minutes…
        "Failing" => now >= failing_since + 60 * (1u64 << domain.attempts.clamp(0, 10)),
        _ if domain.refresh => true,
        _ => match domain.expires_at.as_deref().and_then(epoch_seconds) {
            Some(expires) => expires.saturating_sub(now) < RENEW_BEFORE.as_secs(),
            None => true,
        },
    }
}

/// Looks at every app with ACM on and gets the certificates due, until the API stops.
pub async fn manage_forever(state: AppState) {
    let mut stopping = state.stopping.subscribe();
    loop {
        if let Err(error) = manage_once(&state).await {
            tracing::error!(%error, "automatic certificates: a round failed; the next one tries again");
        }
        tokio::select! {
            () = state.acm_wake.notified() => {}
            () = tokio::time::sleep(EVERY) => {}
            _ = stopping.wait_for(|stopping| *stopping) => return,
        }
    }
}

async fn manage_once(state: &AppState) -> Result<()> {
    for app_id in state.store.acm_apps().await? {
        if state.store.forget_removed_domains(&app_id).await? > 0 {
            state.changed();
        }
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        for domain in state.store.acm_domains(&app_id).await? {
            if !due(&domain, now) {
                continue;
            }
            state.store.set_domain_status(&app_id, &domain.hostname, "In Progress", None, domain.attempts).await?;
            match issue(state, &app_id, &domain.hostname).await {
                Ok(()) => tracing::info!(hostname = %domain.hostname, "automatic certificate issued"),
                Err(reason) => {
                    let attempts = domain.attempts + 1;
                    let status = if attempts >= ATTEMPTS { "Failed" } else { "Failing" };
                    tracing::warn!(hostname = %domain.hostname, %reason, attempts, "automatic certificate failed");
                    state.store.set_domain_status(&app_id, &domain.hostname, status, Some(&reason), attempts).await?;
                }
            }
        }
    }
    Ok(())
}

/// Runs a blocking ACME call on a blocking thread.
async fn blocking<T: Send + 'static>(call: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(call).await.map_err(|e| format!("the ACME call stopped: {e}"))?
}

/// The platform's ACME account, registered on first use (one per directory; its key sealed).
async fn account(state: &AppState) -> Result<Arc<Account>, Failure> {
    static OPEN: tokio::sync::Mutex<Option<Arc<Account>>> = tokio::sync::Mutex::const_new(None);
    let mut open = OPEN.lock().await;
    if let Some(account) = open.as_ref() {
        return Ok(Arc::clone(account));
    }
    let directory = state.settings.acme_directory.clone();
    let place = format!("acme_accounts.key {directory}");
    let stored = state.store.acme_account(&directory).await.map_err(|e| e.to_string())?;
    let (pkcs8, kid) = match stored {
        Some((sealed, kid)) => {
            let hex = state.platform_key.open(&place, &sealed).map_err(|e| e.to_string())?;
            (hex::decode(hex).map_err(|_| "the stored ACME account key is unreadable".to_string())?, Some(kid))
        }
        None => (acme::new_key()?, None),
    };
    let agent = acme::agent(state.settings.acme_ca_pem.as_deref())?;
    let opened = {
        let (directory, pkcs8, kid) = (directory.clone(), pkcs8.clone(), kid.clone());
        blocking(move || Account::open(agent, &directory, &pkcs8, kid.as_deref())).await?
    };
    if kid.is_none() {
        let sealed = state.platform_key.seal(&place, &hex::encode(opened.pkcs8()));
        state.store.save_acme_account(&directory, &sealed, opened.kid()).await.map_err(|e| e.to_string())?;
    }
    let opened = Arc::new(opened);
    *open = Some(Arc::clone(&opened));
    Ok(opened)
}

/// The end of one step ([`STEP`]) of an issuance, for the loops that poll.
struct Deadline {
    what: &'static str,
    at: tokio::time::Instant,
}

impl Deadline {
    fn new(what: &'static str) -> Deadline {
        Deadline { what, at: tokio::time::Instant::now() + STEP }
    }

    /// Waits a second before the next look, or fails once the step has taken too long.
    async fn next(&self) -> Result<(), Failure> {
        if tokio::time::Instant::now() >= self.at {
            return Err(format!("{} took more than {} s", self.what, STEP.as_secs()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }
}

/// The order at `url`, as it is now.
async fn order_now(account: &Arc<Account>, url: &str) -> Result<Order, Failure> {
    let (account, url) = (Arc::clone(account), url.to_string());
    blocking(move || account.order(&url)).await
}

/// Gets a certificate for `hostname` of app `app_id` and puts it in place.
async fn issue(state: &AppState, app_id: &str, hostname: &str) -> Result<(), Failure> {
    let account = account(state).await?;
    let order = {
        let (account, hostname) = (Arc::clone(&account), hostname.to_string());
        blocking(move || account.new_order(&hostname)).await?
    };
    for url in order.authorizations.clone() {
        let authorization = {
            let (account, url) = (Arc::clone(&account), url.clone());
            blocking(move || account.authorization(&url)).await?
        };
        if authorization.status == "valid" {
            continue;
        }
        let challenge = authorization
            .challenges
            .iter()
            .find(|c| c.kind == "http-01")
            .cloned()
            .ok_or_else(|| "the ACME server offers no HTTP-01 challenge".to_string())?;
        let key_authorization = account.key_authorization(&challenge.token);
        state
            .store
            .add_challenge(app_id, hostname, &challenge.token, &key_authorization)
            .await
            .map_err(|e| e.to_string())?;
        state.changed();
        let validated = validate(state, &account, hostname, &url, &challenge, &key_authorization).await;
        let _ = state.store.remove_challenge(&challenge.token).await;
        state.changed();
        validated?;
    }
    let waiting = Deadline::new("the order's getting ready");
    let ready = loop {
        let now = order_now(&account, &order.url).await?;
        match now.status.as_str() {
            "pending" => waiting.next().await?,
            "invalid" => {
                return Err(format!("the ACME server gave up the order: {}", acme::reason(now.error.as_ref())));
            }
            _ => break now,
        }
    };
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    if ready.status == "ready" {
        let (account, ready, der) = (Arc::clone(&account), ready.clone(), csr.der().to_vec());
        blocking(move || account.finalize(&ready, &der)).await?;
    }
    let waiting = Deadline::new("issuing the certificate");
    let issued = loop {
        let now = order_now(&account, &order.url).await?;
        match now.status.as_str() {
            "valid" => break now,
            "invalid" => {
                return Err(format!("the ACME server refused to issue: {}", acme::reason(now.error.as_ref())));
            }
            _ => waiting.next().await?,
        }
    };
    let url = issued.certificate.ok_or_else(|| "the ACME server names no certificate".to_string())?;
    let chain = {
        let account = Arc::clone(&account);
        blocking(move || account.certificate(&url)).await?
    };
    let key_pem = key.serialize_pem();
    let checked = crate::certificates::check(&chain, &key_pem)
        .map_err(|e| format!("the ACME server's certificate is not usable: {e}"))?;
    state
        .store
        .replace_acm_certificate(
            &state.platform_key,
            app_id,
            hostname,
            &checked.hostnames,
            &checked.expires_at,
            &chain,
            &key_pem,
        )
        .await
        .map_err(|e| e.to_string())?;
    state.changed();
    Ok(())
}

/// Waits until the router answers the challenge, tells the ACME server to look, and waits
/// for its verdict.
async fn validate(
    state: &AppState,
    account: &Arc<Account>,
    hostname: &str,
    authorization_url: &str,
    challenge: &acme::Challenge,
    key_authorization: &str,
) -> Result<(), Failure> {
    if let Some(router) = state.settings.router_url.clone() {
        let url = format!("{}/.well-known/acme-challenge/{}", router.trim_end_matches('/'), challenge.token);
        let waiting = Deadline::new("the router's answering the challenge");
        loop {
            let (url, host, expected) = (url.clone(), hostname.to_string(), key_authorization.to_string());
            let answered =
                blocking(move || Ok(answered_with(&url, &host).as_deref() == Some(expected.as_str()))).await?;
            if answered {
                break;
            }
            waiting.next().await?;
        }
    } else {
        // No way to look: give the route table a moment to reach the router.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    {
        let (account, url) = (Arc::clone(account), challenge.url.clone());
        blocking(move || account.answer(&url)).await?;
    }
    let waiting = Deadline::new("the ACME server's validation");
    loop {
        let (account, url) = (Arc::clone(account), authorization_url.to_string());
        let authorization = blocking(move || account.authorization(&url)).await?;
        match authorization.status.as_str() {
            "valid" => return Ok(()),
            "pending" => waiting.next().await?,
            _ => {
                let failed =
                    authorization.challenges.iter().find(|c| c.kind == "http-01").and_then(|c| c.error.as_ref());
                return Err(format!("{hostname} was not validated: {}", acme::reason(failed)));
            }
        }
    }
}

/// The body of `GET url` (an `http://host:port/path` URL) sent with `Host: host`, when it
/// answers 200 within seconds: what a client asking for `host` gets from the router.
fn answered_with(url: &str, host: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority).ok()?.next()?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut answer).ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(status: &str, expires_at: Option<&str>, attempts: i64, updated_at: &str) -> DomainStatus {
        DomainStatus {
            hostname: "a.example".into(),
            status: status.into(),
            reason: None,
            refresh: false,
            attempts,
            updated_at: Some(updated_at.into()),
            expires_at: expires_at.map(str::to_string),
        }
    }

    #[test]
    fn what_is_due() {
        let now = epoch_seconds("2027-01-01T00:00:00Z").unwrap();
        assert!(due(&domain("Waiting", None, 0, "2027-01-01T00:00:00Z"), now), "no certificate yet");
        assert!(!due(&domain("OK", Some("2027-03-01T00:00:00Z"), 0, "2026-12-01T00:00:00Z"), now), "two months left");
        assert!(due(&domain("OK", Some("2027-01-20T00:00:00Z"), 0, "2026-12-01T00:00:00Z"), now), "renewal time");
        let mut refresh = domain("OK", Some("2030-01-01T00:00:00Z"), 0, "2026-12-01T00:00:00Z");
        refresh.refresh = true;
        assert!(due(&refresh, now), "asked for");
        assert!(!due(&domain("Failing", None, 2, "2026-12-31T23:58:00Z"), now), "backing off: 4 minutes");
        assert!(due(&domain("Failing", None, 2, "2026-12-31T23:55:00Z"), now));
        assert!(!due(&domain("Failed", None, 5, "2026-01-01T00:00:00Z"), now), "until a refresh");
    }
}
