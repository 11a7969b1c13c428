//! An ACME client (RFC 8555), as much as automatic certificates need: an account with an ES256
//! key, an order for one DNS name, its HTTP-01 challenge, finalization with a CSR, and the
//! certificate chain. Blocking (ureq): `acm.rs` runs each call on a blocking thread.
//!
//! Every request is a JWS signed with the account key (`jwk` for the account's creation, `kid`
//! after), with a fresh nonce; a `badNonce` answer is retried with the nonce it carries, as
//! the RFC asks (§6.5).

use std::sync::Mutex;
use std::time::Duration;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A one-line reason, for the domain's status.
pub type Failure = String;

const TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a request is sent again after a `badNonce`.
const NONCE_RETRIES: usize = 5;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Directory {
    new_nonce: String,
    new_account: String,
    new_order: String,
}

/// An order (RFC 8555 §7.1.3) and where it lives.
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    #[serde(skip)]
    pub url: String,
    pub status: String,
    #[serde(default)]
    pub authorizations: Vec<String>,
    pub finalize: String,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default)]
    pub error: Option<Value>,
}

/// An authorization (§7.1.4) with its challenges.
#[derive(Debug, Deserialize)]
pub struct Authorization {
    pub status: String,
    #[serde(default)]
    pub challenges: Vec<Challenge>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Challenge {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub error: Option<Value>,
}

/// The account at one ACME server.
pub struct Account {
    agent: ureq::Agent,
    directory: Directory,
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    kid: String,
    nonce: Mutex<Option<String>>,
}

/// An HTTPS client for the ACME server: the public authorities, or `ca_pem`'s alone (a test
/// server such as pebble).
pub fn agent(ca_pem: Option<&str>) -> Result<ureq::Agent, Failure> {
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(pem) = ca_pem {
        let roots: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(pem.as_bytes())
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        if roots.is_empty() {
            return Err("OURO_ACME_CA_FILE holds no PEM certificate".into());
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("ouro-api/", env!("CARGO_PKG_VERSION"), " (acme)"))
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

/// Base64url without padding (RFC 7515 §2).
pub fn b64url(bytes: &[u8]) -> String {
    ouro_types::encode_base64url(bytes)
}

/// A new account key, PKCS#8.
pub fn new_key() -> Result<Vec<u8>, Failure> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| "cannot make an ACME account key".to_string())
}

fn problem(body: &Value) -> String {
    match (body["type"].as_str(), body["detail"].as_str()) {
        (Some(kind), Some(detail)) => format!("{detail} ({})", kind.trim_start_matches("urn:ietf:params:acme:error:")),
        (_, Some(detail)) => detail.to_string(),
        _ => body.to_string(),
    }
}

impl Account {
    /// The account of `pkcs8` at the server of `directory_url`: `kid` when it is known, else
    /// registered (or found again: the server answers the same account for the same key).
    pub fn open(agent: ureq::Agent, directory_url: &str, pkcs8: &[u8], kid: Option<&str>) -> Result<Account, Failure> {
        let unreachable = |e: ureq::Error| format!("cannot reach the ACME server at {directory_url}: {e}");
        let mut answer = agent.get(directory_url).call().map_err(unreachable)?;
        if !answer.status().is_success() {
            return Err(format!("the ACME directory {directory_url} answered {}", answer.status()));
        }
        let directory: Directory =
            answer.body_mut().read_json().map_err(|e| format!("the ACME directory {directory_url} is not one: {e}"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &SystemRandom::new())
            .map_err(|_| "the stored ACME account key is unusable".to_string())?;
        let mut account = Account {
            agent,
            directory,
            key,
            pkcs8: pkcs8.to_vec(),
            kid: kid.unwrap_or_default().to_string(),
            nonce: Mutex::new(None),
        };
        if account.kid.is_empty() {
            let url = account.directory.new_account.clone();
            let (status, location, body) = account.post(&url, Some(&json!({ "termsOfServiceAgreed": true })))?;
            if !(200..300).contains(&status) {
                return Err(format!("the ACME server refused the account: {}", problem(&body)));
            }
            account.kid = location.ok_or("the ACME server gave the account no URL")?;
        }
        Ok(account)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The account key's JWK, members in the order of its thumbprint (RFC 7638).
    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({ "crv": "P-256", "kty": "EC", "x": b64url(&point[1..33]), "y": b64url(&point[33..65]) })
    }

    /// `token.thumbprint`: what the HTTP-01 challenge's URL must answer (§8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        let point = self.key.public_key().as_ref();
        let canonical =
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, b64url(&point[1..33]), b64url(&point[33..65]));
        format!("{token}.{}", b64url(&Sha256::digest(canonical.as_bytes())))
    }

    fn fresh_nonce(&self) -> Result<String, Failure> {
        if let Some(nonce) = self.nonce.lock().map_err(|_| "nonce lock")?.take() {
            return Ok(nonce);
        }
        let answer = self
            .agent
            .head(&self.directory.new_nonce)
            .call()
            .map_err(|e| format!("cannot reach the ACME server: {e}"))?;
        answer
            .headers()
            .get("replay-nonce")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| "the ACME server gave no nonce".to_string())
    }

    /// POSTs `payload` (`None`: POST-as-GET) as a JWS: (status, `Location`, JSON body).
    fn post(&self, url: &str, payload: Option<&Value>) -> Result<(u16, Option<String>, Value), Failure> {
        let (status, location, body) = self.post_raw(url, payload)?;
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, location, json))
    }

    fn post_raw(&self, url: &str, payload: Option<&Value>) -> Result<(u16, Option<String>, Vec<u8>), Failure> {
        let payload = payload.map(|p| b64url(p.to_string().as_bytes())).unwrap_or_default();
        for _ in 0..=NONCE_RETRIES {
            let mut protected = json!({ "alg": "ES256", "nonce": self.fresh_nonce()?, "url": url });
            if self.kid.is_empty() {
                protected["jwk"] = self.jwk();
            } else {
                protected["kid"] = json!(self.kid);
            }
            let protected = b64url(protected.to_string().as_bytes());
            let signed = format!("{protected}.{payload}");
            let signature = self
                .key
                .sign(&SystemRandom::new(), signed.as_bytes())
                .map_err(|_| "cannot sign the ACME request".to_string())?;
            let body = json!({ "protected": protected, "payload": payload, "signature": b64url(signature.as_ref()) });
            let mut answer = self
                .agent
                .post(url)
                .header("Content-Type", "application/jose+json")
                .send(body.to_string())
                .map_err(|e| format!("cannot reach the ACME server: {e}"))?;
            let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            if let Some(nonce) = header("replay-nonce") {
                *self.nonce.lock().map_err(|_| "nonce lock")? = Some(nonce);
            }
            let location = header("location");
            let status = answer.status().as_u16();
            let bytes = answer
                .body_mut()
                .with_config()
                .limit(1024 * 1024)
                .read_to_vec()
                .map_err(|e| format!("the ACME server's answer broke off: {e}"))?;
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == 400 && json["type"] == "urn:ietf:params:acme:error:badNonce" {
                continue;
            }
            return Ok((status, location, bytes));
        }
        Err("the ACME server refused every nonce".into())
    }

    /// A new order for `hostname`.
    pub fn new_order(&self, hostname: &str) -> Result<Order, Failure> {
        let url = self.directory.new_order.clone();
        let payload = json!({ "identifiers": [{ "type": "dns", "value": hostname }] });
        let (status, location, body) = self.post(&url, Some(&payload))?;
        if status != 201 {
            return Err(format!("the ACME server refused an order for {hostname}: {}", problem(&body)));
        }
        let mut order: Order =
            serde_json::from_value(body).map_err(|e| format!("the ACME server's order is not one: {e}"))?;
        order.url = location.ok_or("the ACME server gave the order no URL")?;
        Ok(order)
    }

    /// The order at `url`, as it is now.
    pub fn order(&self, url: &str) -> Result<Order, Failure> {
        let (status, _, body) = self.post(url, None)?;
        if status != 200 {
            return Err(format!("the ACME server did not show the order: {}", problem(&body)));
        }
        let mut order: Order =
            serde_json::from_value(body).map_err(|e| format!("the ACME server's order is not one: {e}"))?;
        order.url = url.to_string();
        Ok(order)
    }

    pub fn authorization(&self, url: &str) -> Result<Authorization, Failure> {
        let (status, _, body) = self.post(url, None)?;
        if status != 200 {
            return Err(format!("the ACME server did not show the authorization: {}", problem(&body)));
        }
        serde_json::from_value(body).map_err(|e| format!("the ACME server's authorization is not one: {e}"))
    }

    /// Tells the server the challenge at `url` is ready to be checked.
    pub fn answer(&self, url: &str) -> Result<(), Failure> {
        let (status, _, body) = self.post(url, Some(&json!({})))?;
        if status != 200 {
            return Err(format!("the ACME server refused the challenge: {}", problem(&body)));
        }
        Ok(())
    }

    /// Sends the CSR (DER) to the order's finalize URL.
    pub fn finalize(&self, order: &Order, csr_der: &[u8]) -> Result<(), Failure> {
        let (status, _, body) = self.post(&order.finalize, Some(&json!({ "csr": b64url(csr_der) })))?;
        if status != 200 {
            return Err(format!("the ACME server refused to finalize: {}", problem(&body)));
        }
        Ok(())
    }

    /// The issued chain (PEM, leaf first).
    pub fn certificate(&self, url: &str) -> Result<String, Failure> {
        let (status, _, body) = self.post_raw(url, None)?;
        let text = String::from_utf8(body).map_err(|_| "the ACME server's certificate is not text".to_string())?;
        if status != 200 || !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("the ACME server gave no certificate ({status})"));
        }
        Ok(text)
    }
}

/// A problem document's one-line reason.
pub fn reason(error: Option<&Value>) -> String {
    error.map(problem).unwrap_or_else(|| "no reason given".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_authorization_is_token_dot_thumbprint() {
        let pkcs8 = new_key().unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &SystemRandom::new()).unwrap();
        let account = Account {
            agent: agent(None).unwrap(),
            directory: Directory { new_nonce: String::new(), new_account: String::new(), new_order: String::new() },
            key,
            pkcs8,
            kid: "k".into(),
            nonce: Mutex::new(None),
        };
        let jwk = account.jwk();
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#, jwk["x"], jwk["y"]);
        let thumbprint = b64url(&Sha256::digest(canonical.as_bytes()));
        assert_eq!(account.key_authorization("tok"), format!("tok.{thumbprint}"));
        assert_eq!(thumbprint.len(), 43, "32 bytes, unpadded");
    }
}
