//! What differs between PostgreSQL and Redis: the server app's config vars (random
//! credentials), the config an attached app gets (its URLs), how the provider connects to a
//! server (PostgreSQL's client tools), and when a server is ready.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Config, REDIS_TLS_PORT, SERVER_PORT};
use crate::error::Error;

/// How long `psql` may take to answer the readiness check.
const PSQL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long each step of a Redis readiness check (connect, handshake, a read, a write) may take.
const REDIS_STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a Redis answer to AUTH and PING is read at most.
const REDIS_ANSWER_CAP: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgresql,
    Redis,
}

impl Kind {
    pub fn parse(kind: &str) -> Option<Kind> {
        match kind {
            "postgresql" => Some(Kind::Postgresql),
            "redis" => Some(Kind::Redis),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Postgresql => "postgresql",
            Kind::Redis => "redis",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The config vars of a new server app `name`: random credentials, and the name its
/// certificate is made for (`TLS_SERVER_NAME`). PostgreSQL's are two roles: the `initdb`
/// superuser (`POSTGRES_USER`), which only the server's start script uses, over its local
/// socket; and the app's role (`POSTGRES_APP_USER`: no superuser, owner of `POSTGRES_DB`),
/// which the attached apps and the provider use.
pub fn new_config(kind: Kind, name: &str) -> BTreeMap<String, String> {
    let vars: Vec<(&str, String)> = match kind {
        Kind::Postgresql => vec![
            ("POSTGRES_USER", format!("u{}", token_hex(6))),
            ("POSTGRES_PASSWORD", token_hex(24)),
            ("POSTGRES_APP_USER", format!("a{}", token_hex(6))),
            ("POSTGRES_APP_PASSWORD", token_hex(24)),
            ("POSTGRES_DB", format!("d{}", token_hex(6))),
            ("TLS_SERVER_NAME", name.to_string()),
        ],
        Kind::Redis => vec![("REDIS_PASSWORD", token_hex(24)), ("TLS_SERVER_NAME", name.to_string())],
    };
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The config vars that rotate the credentials of a server app whose vars are `vars`: a new
/// password for the role the apps use (PostgreSQL's app's role, Redis's one password). A
/// PostgreSQL server made before app roles gets one (a name and a password), which its next
/// start makes and hands the database (`postgresql-server`), so its apps leave the superuser.
pub fn rotated_config(kind: Kind, vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let vars: Vec<(&str, String)> = match kind {
        Kind::Postgresql => {
            let user = vars.get("POSTGRES_APP_USER").cloned().unwrap_or_else(|| format!("a{}", token_hex(6)));
            vec![("POSTGRES_APP_USER", user), ("POSTGRES_APP_PASSWORD", token_hex(24))]
        }
        Kind::Redis => vec![("REDIS_PASSWORD", token_hex(24))],
    };
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `bytes` random bytes as lowercase hex (Python's `secrets.token_hex`).
fn token_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// A server's credentials, read from its app's config vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Postgresql(PgCredentials),
    Redis { password: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgCredentials {
    pub user: String,
    pub password: String,
    pub db: String,
}

impl Credentials {
    /// From the server app `name`'s config vars; a 502 naming the var when one is missing.
    pub fn from_vars(kind: Kind, name: &str, vars: &BTreeMap<String, String>) -> Result<Credentials, Error> {
        Ok(match kind {
            Kind::Postgresql => Credentials::Postgresql(PgCredentials::from_vars(name, vars)?),
            Kind::Redis => Credentials::Redis { password: var(name, vars, "REDIS_PASSWORD")? },
        })
    }
}

impl PgCredentials {
    /// The app's role of the PostgreSQL server app `name`, from its config vars, as
    /// [`Credentials::from_vars`]. A server made before servers had an app's role has only its
    /// superuser: that one, then (its attached apps' URLs name it too).
    pub fn from_vars(name: &str, vars: &BTreeMap<String, String>) -> Result<PgCredentials, Error> {
        let (user, password) = match (vars.get("POSTGRES_APP_USER"), vars.get("POSTGRES_APP_PASSWORD")) {
            (Some(user), Some(password)) => (user.clone(), password.clone()),
            _ => (var(name, vars, "POSTGRES_USER")?, var(name, vars, "POSTGRES_PASSWORD")?),
        };
        Ok(PgCredentials { user, password, db: var(name, vars, "POSTGRES_DB")? })
    }
}

fn var(name: &str, vars: &BTreeMap<String, String>, key: &str) -> Result<String, Error> {
    vars.get(key)
        .cloned()
        .ok_or_else(|| Error::new(StatusCode::BAD_GATEWAY, format!("the server app `{name}` has no config var {key}")))
}

/// What the apps the add-on is attached to get (`<ATTACHMENT>_<KEY>`): `URL` for PostgreSQL
/// (no `sslmode`: as on Heroku, the app asks for TLS); `URL` and `TLS_URL` for Redis.
pub fn addon_config(name: &str, credentials: &Credentials) -> BTreeMap<String, String> {
    let mut config = BTreeMap::new();
    match credentials {
        Credentials::Postgresql(pg) => {
            config
                .insert("URL".into(), format!("postgres://{}:{}@{name}:{SERVER_PORT}/{}", pg.user, pg.password, pg.db));
        }
        Credentials::Redis { password } => {
            config.insert("URL".into(), format!("redis://:{password}@{name}:{SERVER_PORT}"));
            config.insert("TLS_URL".into(), format!("rediss://:{password}@{name}:{REDIS_TLS_PORT}"));
        }
    }
    config
}

/// A PostgreSQL client tool (`psql`, `pg_dump`, `pg_restore`) from the slug, against the
/// server `name`: `before` its connection options, `after` them. `sslmode` is `require` for
/// the readiness check, `prefer` otherwise (TLS, or plain with a server made before TLS).
pub fn pg_command(
    config: &Config,
    tool: &str,
    name: &str,
    pg: &PgCredentials,
    sslmode: &str,
    before: &[&str],
    after: &[&std::ffi::OsStr],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(config.pg_bin.join(tool));
    command
        .args(before)
        .args(["-h", config.servers.host(name), "-p", &config.servers.port.to_string()])
        .args(["-U", &pg.user, "-d", &pg.db])
        .args(after)
        .env("LD_LIBRARY_PATH", &config.pg_lib)
        .env("PGPASSWORD", &pg.password)
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", sslmode)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Whether the server `name` accepts an authenticated connection, over TLS too: `psql -c
/// 'SELECT 1'` with `sslmode=require`; for Redis AUTH and PING on the plain and the TLS port.
pub async fn ready(config: &Config, name: &str, credentials: &Credentials) -> bool {
    match credentials {
        Credentials::Postgresql(pg) => {
            let mut command =
                pg_command(config, "psql", name, pg, "require", &[], &["-tAc".as_ref(), "SELECT 1".as_ref()]);
            command.stdout(Stdio::null()).stderr(Stdio::null());
            let Ok(mut child) = command.spawn() else {
                return false;
            };
            // On a timeout the child is dropped, and so killed.
            matches!(tokio::time::timeout(PSQL_TIMEOUT, child.wait()).await, Ok(Ok(status)) if status.success())
        }
        Credentials::Redis { password } => {
            let host = config.servers.host(name);
            redis_ping(host, config.servers.port, password, None).await
                && redis_ping(host, config.servers.tls_port, password, Some(name)).await
        }
    }
}

/// AUTH and PING on one port; with `tls` (the server app's name, for SNI) over TLS without
/// checking the self-signed certificate, as Heroku's clients do (`ssl_cert_reqs=None`).
async fn redis_ping(host: &str, port: u16, password: &str, tls: Option<&str>) -> bool {
    let Ok(Ok(stream)) = tokio::time::timeout(REDIS_STEP_TIMEOUT, TcpStream::connect((host, port))).await else {
        return false;
    };
    let Some(server_name) = tls else {
        return auth_ping(stream, password).await;
    };
    let Ok(server_name) = rustls::pki_types::ServerName::try_from(server_name.to_string()) else {
        return false;
    };
    let Ok(connector) = unverified_tls() else {
        return false;
    };
    match tokio::time::timeout(REDIS_STEP_TIMEOUT, connector.connect(server_name, stream)).await {
        Ok(Ok(stream)) => auth_ping(stream, password).await,
        _ => false,
    }
}

/// Whether AUTH then PING answer `+OK` and `+PONG` (two lines: an error is one line too).
async fn auth_ping<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, password: &str) -> bool {
    let command = format!("AUTH {password}\r\nPING\r\n");
    if !matches!(tokio::time::timeout(REDIS_STEP_TIMEOUT, stream.write_all(command.as_bytes())).await, Ok(Ok(()))) {
        return false;
    }
    let mut got = Vec::new();
    while got.windows(2).filter(|w| w == b"\r\n").count() < 2 && got.len() < REDIS_ANSWER_CAP {
        let mut chunk = [0u8; 1024];
        match tokio::time::timeout(REDIS_STEP_TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    got.starts_with(b"+OK") && got.windows(5).any(|w| w == b"+PONG")
}

/// A TLS client that takes any certificate (the servers' are self-signed) but still checks
/// that the server holds its key.
fn unverified_tls() -> Result<tokio_rustls::TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex(s: &str, len: usize) -> bool {
        s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }

    #[test]
    fn kinds_parse_and_print() {
        assert_eq!(Kind::parse("postgresql"), Some(Kind::Postgresql));
        assert_eq!(Kind::parse("redis"), Some(Kind::Redis));
        assert_eq!(Kind::parse("postgres"), None);
        assert_eq!(Kind::Redis.to_string(), "redis");
    }

    #[test]
    fn a_postgresql_server_gets_random_credentials_and_its_tls_name() {
        let vars = new_config(Kind::Postgresql, "postgresql-shiny-12345");
        let keys: Vec<&str> = vars.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "POSTGRES_APP_PASSWORD",
                "POSTGRES_APP_USER",
                "POSTGRES_DB",
                "POSTGRES_PASSWORD",
                "POSTGRES_USER",
                "TLS_SERVER_NAME"
            ]
        );
        assert!(vars["POSTGRES_USER"].starts_with('u') && is_hex(&vars["POSTGRES_USER"][1..], 12));
        assert!(vars["POSTGRES_APP_USER"].starts_with('a') && is_hex(&vars["POSTGRES_APP_USER"][1..], 12));
        assert!(vars["POSTGRES_DB"].starts_with('d') && is_hex(&vars["POSTGRES_DB"][1..], 12));
        assert!(is_hex(&vars["POSTGRES_PASSWORD"], 48) && is_hex(&vars["POSTGRES_APP_PASSWORD"], 48));
        assert_ne!(vars["POSTGRES_PASSWORD"], vars["POSTGRES_APP_PASSWORD"]);
        assert_eq!(vars["TLS_SERVER_NAME"], "postgresql-shiny-12345");
        assert_ne!(new_config(Kind::Postgresql, "x")["POSTGRES_PASSWORD"], vars["POSTGRES_PASSWORD"]);
    }

    #[test]
    fn a_redis_server_gets_a_random_password_and_its_tls_name() {
        let vars = new_config(Kind::Redis, "redis-tidy-1");
        let keys: Vec<&str> = vars.keys().map(String::as_str).collect();
        assert_eq!(keys, ["REDIS_PASSWORD", "TLS_SERVER_NAME"]);
        assert!(is_hex(&vars["REDIS_PASSWORD"], 48));
        assert_eq!(vars["TLS_SERVER_NAME"], "redis-tidy-1");
    }

    #[test]
    fn postgresql_config_is_one_url_without_sslmode() {
        let vars = new_config(Kind::Postgresql, "pg-1");
        let credentials = Credentials::from_vars(Kind::Postgresql, "pg-1", &vars).unwrap();
        let config = addon_config("pg-1", &credentials);
        assert_eq!(config.keys().collect::<Vec<_>>(), ["URL"]);
        let expected = format!(
            "postgres://{}:{}@pg-1:5000/{}",
            vars["POSTGRES_APP_USER"], vars["POSTGRES_APP_PASSWORD"], vars["POSTGRES_DB"]
        );
        assert_eq!(config["URL"], expected, "the app's role, not the superuser");
        assert!(!config["URL"].contains("sslmode"));
    }

    #[test]
    fn a_rotation_makes_new_passwords_and_gives_an_old_server_an_app_role() {
        let vars = new_config(Kind::Postgresql, "postgresql-shiny-12345");
        let rotated = rotated_config(Kind::Postgresql, &vars);
        assert_eq!(rotated.keys().collect::<Vec<_>>(), ["POSTGRES_APP_PASSWORD", "POSTGRES_APP_USER"]);
        assert_eq!(rotated["POSTGRES_APP_USER"], vars["POSTGRES_APP_USER"]);
        assert_ne!(rotated["POSTGRES_APP_PASSWORD"], vars["POSTGRES_APP_PASSWORD"]);
        assert_eq!(rotated["POSTGRES_APP_PASSWORD"].len(), 48);

        let old: BTreeMap<String, String> =
            vars.iter().filter(|(k, _)| !k.starts_with("POSTGRES_APP_")).map(|(k, v)| (k.clone(), v.clone())).collect();
        let rotated = rotated_config(Kind::Postgresql, &old);
        assert!(rotated["POSTGRES_APP_USER"].starts_with('a') && rotated["POSTGRES_APP_USER"].len() == 13);
        assert_ne!(rotated["POSTGRES_APP_USER"], old["POSTGRES_USER"]);

        let vars = new_config(Kind::Redis, "redis-shiny-12345");
        let rotated = rotated_config(Kind::Redis, &vars);
        assert_eq!(rotated.keys().collect::<Vec<_>>(), ["REDIS_PASSWORD"]);
        assert_ne!(rotated["REDIS_PASSWORD"], vars["REDIS_PASSWORD"]);
    }

    #[test]
    fn a_server_made_before_app_roles_is_reached_as_its_superuser() {
        let mut vars = new_config(Kind::Postgresql, "pg-1");
        vars.remove("POSTGRES_APP_USER");
        vars.remove("POSTGRES_APP_PASSWORD");
        let pg = PgCredentials::from_vars("pg-1", &vars).unwrap();
        assert_eq!((pg.user, pg.password), (vars["POSTGRES_USER"].clone(), vars["POSTGRES_PASSWORD"].clone()));
    }

    #[test]
    fn redis_config_is_a_plain_url_and_a_tls_url_on_5001() {
        let vars: BTreeMap<String, String> = [("REDIS_PASSWORD".to_string(), "abc123".to_string())].into();
        let credentials = Credentials::from_vars(Kind::Redis, "redis-1", &vars).unwrap();
        let config = addon_config("redis-1", &credentials);
        assert_eq!(config["URL"], "redis://:abc123@redis-1:5000");
        assert_eq!(config["TLS_URL"], "rediss://:abc123@redis-1:5001");
        assert_eq!(config.len(), 2);
    }

    #[test]
    fn a_missing_credential_is_named() {
        let mut vars = new_config(Kind::Postgresql, "pg-1");
        vars.remove("POSTGRES_DB");
        let error = Credentials::from_vars(Kind::Postgresql, "pg-1", &vars).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_GATEWAY);
        assert_eq!(error.message, "the server app `pg-1` has no config var POSTGRES_DB");
        let error = Credentials::from_vars(Kind::Redis, "r-1", &BTreeMap::new()).unwrap_err();
        assert_eq!(error.message, "the server app `r-1` has no config var REDIS_PASSWORD");
    }

    #[tokio::test]
    async fn auth_ping_wants_ok_then_pong() {
        async fn answer(reply: &'static [u8]) -> bool {
            let (client, mut server) = tokio::io::duplex(4096);
            let serve = tokio::spawn(async move {
                let mut asked = vec![0u8; 64];
                let n = server.read(&mut asked).await.unwrap();
                server.write_all(reply).await.unwrap();
                String::from_utf8(asked[..n].to_vec()).unwrap()
            });
            let ok = auth_ping(client, "pw").await;
            assert_eq!(serve.await.unwrap(), "AUTH pw\r\nPING\r\n");
            ok
        }
        assert!(answer(b"+OK\r\n+PONG\r\n").await);
        assert!(!answer(b"-WRONGPASS invalid username-password pair\r\n-NOAUTH Authentication required.\r\n").await);
        assert!(!answer(b"+OK\r\n-LOADING\r\n").await);
        assert!(!answer(b"").await);
    }
}
