//! TLS termination: rustls (ring provider) with one certificate per host name, picked by SNI
//! from the current route table, and a self-signed default certificate for everything else
//! (no SNI, an IP address, a host without a certificate). ALPN offers `h2` and `http/1.1`.
//!
//! Certificates are parsed into [`CertifiedKey`]s when a route table is compiled (and reused
//! across versions while unchanged), never during a handshake: the resolver does one lock-free
//! table load and one hash lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ouro_types::TlsCert;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};

use crate::State;
use crate::table::normalize_host;

/// The name in the default certificate: no client trusts it for a real host.
const DEFAULT_CERT_NAME: &str = "ouro-router.invalid";

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM chain and key into a signing-ready certificate; the error is for a log line.
pub(crate) fn certified_key(cert: &TlsCert, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("certificate chain holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).map_err(|e| format!("private key: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map(Arc::new).map_err(|e| e.to_string())
}

/// Whether `key`'s leaf certificate is valid for the (normalized) host name `host`.
pub(crate) fn covers(key: &CertifiedKey, host: &str) -> bool {
    let Some(leaf) = key.cert.first() else { return false };
    let Ok(name) = DnsName::try_from(host) else { return false };
    let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else { return false };
    end_entity.verify_is_valid_for_subject_name(&ServerName::DnsName(name)).is_ok()
}

/// A fresh self-signed certificate (ECDSA P-256) for handshakes without a matching certificate.
pub(crate) fn self_signed(provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let key_pair = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERT_NAME.to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Ouro router default certificate");
    let cert = params.self_signed(&key_pair).map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    CertifiedKey::from_der(vec![cert.der().clone()], key, provider).map(Arc::new).map_err(|e| e.to_string())
}

/// Picks the certificate by SNI from the current table, else the default one.
pub(crate) struct SniResolver {
    pub state: Arc<State>,
    pub default: Arc<CertifiedKey>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            let table = self.state.table.load();
            if let Some(key) = table.certificate(&normalize_host(name)) {
                return Some(Arc::clone(key));
            }
        }
        Some(Arc::clone(&self.default))
    }
}

/// The server side: TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`, certificates from `resolver`.
pub(crate) fn server_config(provider: Arc<CryptoProvider>, resolver: SniResolver) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Parsed certificates by (chain, key) PEM, carried from one table version to the next. Its
/// `Debug` shows no key.
#[derive(Default)]
pub(crate) struct KeyCache(pub HashMap<(String, String), Arc<CertifiedKey>>);

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCache({} certificates)", self.0.len())
    }
}
