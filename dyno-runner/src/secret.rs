//! The runner's listener credential: `GET /routes` carries every app's TLS private keys and
//! `POST /logs` writes into any app's log, so both need `Authorization: Bearer <secret>`
//! (`/health` stays open: `ouro up` reads it, and it holds no secret). The secret is
//! `OURO_RUNNER_SECRET`, or else a random one kept next to the runner's state
//! (`runner-secret`, mode 0600), so that the routers the runner started keep working across
//! its restarts. The runner hands it to the platform's own host-network components (the router
//! is one) as `OURO_RUNNER_SECRET`; no app's dyno gets it.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The variable that carries the secret, to the runner and to its routers.
pub const VARIABLE: &str = "OURO_RUNNER_SECRET";

/// The secret in `file`, made there (mode 0600) if there is none yet.
pub fn kept_in(file: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(kept) = std::fs::read_to_string(file) {
        let kept = kept.trim();
        if kept.len() >= 32 {
            return Ok(kept.to_string());
        }
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = random();
    let temporary = file.with_extension("tmp");
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    std::io::Write::write_all(&mut out, secret.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, file)?;
    Ok(secret)
}

/// 32 random bytes, hex.
pub fn random() -> String {
    let mut bytes = [0u8; 32];
    let mut urandom = std::fs::File::open("/dev/urandom").expect("/dev/urandom");
    std::io::Read::read_exact(&mut urandom, &mut bytes).expect("/dev/urandom");
    hex::encode(bytes)
}

/// Middleware: the request's bearer token must be the secret (compared in constant time, as
/// SHA-256 digests); else 401 with what to do.
pub async fn require(State(secret): State<std::sync::Arc<[u8; 32]>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| Sha256::digest(token.trim().as_bytes()));
    match given {
        Some(given) if bool::from(given.as_slice().ct_eq(&secret[..])) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "id": "unauthorized",
                "message": format!("the runner's routes and logs need `Authorization: Bearer` with its secret ({VARIABLE}, or the runner-secret file beside its state)"),
            })),
        )
            .into_response(),
    }
}

/// The digest [`require`] compares with.
pub fn digest(secret: &str) -> std::sync::Arc<[u8; 32]> {
    std::sync::Arc::new(Sha256::digest(secret.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_secret_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state/runner-secret");
        let made = kept_in(&file).unwrap();
        assert_eq!(made.len(), 64);
        assert_eq!(kept_in(&file).unwrap(), made, "the same after a restart");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
