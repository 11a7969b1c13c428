//! Which certificate the CLI trusts for an `https://` API: the public authorities (webpki's
//! roots) unless the credentials keep one of their own, the API's certificate authority
//! (`ouro up` makes one) that `ouro login` was given (`--ca-file`) or trusted on first use,
//! after showing its SHA-256 fingerprint (`--fingerprint` says it without a question).
//!
//! The first contact reads the server's certificates with a handshake that checks nothing and
//! sends nothing: only the fingerprint the person compares makes it trusted.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::CliError;

/// A fingerprint as people type it (any case, with or without colons or spaces).
fn normalized(fingerprint: &str) -> String {
    fingerprint.chars().filter(char::is_ascii_hexdigit).map(|c| c.to_ascii_uppercase()).collect()
}

/// The first certificate in `pem`, checked to be one.
pub fn parse_pem(pem: &str, whence: &str) -> Result<CertificateDer<'static>, CliError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| CliError::usage(format!("{whence} holds no PEM certificate: {e}")))
}

/// PEM of a DER certificate.
pub fn to_pem(der: &[u8]) -> String {
    ouro_types::pem("CERTIFICATE", der)
}

/// The rustls client configuration for an API: its own authority when `ca_pem` is given, the
/// public ones otherwise.
pub fn client_config(ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, CliError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => roots
            .add(parse_pem(pem, "the trusted API certificate")?)
            .map_err(|e| CliError::local(format!("the trusted API certificate is unusable: {e}")))?,
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::local(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates `host:port` presents, read without checking them.
fn presented(host: &str, port: u16) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let seen = Arc::new(Recorder(Mutex::new(Vec::new())));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::local(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| CliError::usage(format!("`{host}` is not a host name or address")))?;
    let unreachable = |e: std::io::Error| CliError::local(format!("cannot reach {host}:{port}: {e}"));
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| CliError::local(format!("TLS: {e}")))?;
    let mut socket = TcpStream::connect((host, port)).map_err(unreachable)?;
    socket.set_read_timeout(Some(Duration::from_secs(15))).map_err(unreachable)?;
    socket.set_write_timeout(Some(Duration::from_secs(15))).map_err(unreachable)?;
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).map_err(|e| CliError::local(format!("TLS handshake with {host}: {e}")))?;
    }
    let certificates = seen.0.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(certificates)
}

/// Host and port of an `https://` URL.
fn host_port(api_url: &str) -> Option<(String, u16)> {
    let rest = api_url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 443,
    };
    Some((host.to_string(), port))
}

/// For `ouro login` to an `https://` API whose certificate no public authority signed: the
/// PEM of the authority to trust from now on, once the person agreed to its fingerprint
/// (`given`, or a question on a terminal). `None` when the public authorities do.
pub fn on_first_use(api_url: &str, given: Option<&str>, publicly_trusted: bool) -> Result<Option<String>, CliError> {
    if publicly_trusted {
        return Ok(None);
    }
    let (host, port) =
        host_port(api_url).ok_or_else(|| CliError::usage(format!("`{api_url}` is not an https:// URL")))?;
    let chain = presented(&host, port)?;
    let authority = chain.last().ok_or_else(|| CliError::local(format!("{host} presented no certificate")))?;
    let shown = ouro_types::fingerprint(authority);
    match given {
        Some(given) if normalized(given) == normalized(&shown) => Ok(Some(to_pem(authority))),
        Some(_) => Err(CliError::local(format!(
            "the API's certificate authority has fingerprint {shown}, not the one given: someone may be in \
             between; nothing was saved"
        ))),
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            eprint!(
                "The API at {api_url} presents a certificate no public authority signed.\nIts authority's \
                 SHA-256 fingerprint is\n  {shown}\nCompare it with the one `ouro up` printed on the server. \
                 Trust it? [y/N] "
            );
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).map_err(|e| CliError::local(format!("cannot read: {e}")))?;
            match answer.trim() {
                "y" | "Y" | "yes" => Ok(Some(to_pem(authority))),
                _ => Err(CliError::usage("not trusted; nothing was saved")),
            }
        }
        None => Err(CliError::usage(format!(
            "the API's certificate is signed by an authority this machine does not know, with SHA-256 \
             fingerprint {shown}: check it against what `ouro up` printed and log in again with \
             --fingerprint {shown} (or --ca-file FILE)"
        ))),
    }
}

/// A verifier that accepts whatever is presented and keeps it, for [`presented`] only.
#[derive(Debug)]
struct Recorder(Mutex<Vec<CertificateDer<'static>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut seen) = self.0.lock() {
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_fingerprints() {
        assert_eq!(host_port("https://127.0.0.1:7700/x"), Some(("127.0.0.1".into(), 7700)));
        assert_eq!(host_port("https://ouro.example.com"), Some(("ouro.example.com".into(), 443)));
        assert_eq!(host_port("https://[::1]:7700"), Some(("::1".into(), 7700)));
        assert_eq!(host_port("http://127.0.0.1:7700"), None);
        assert_eq!(normalized("ab:cd 0f"), "ABCD0F");
        let der = b"not really a certificate";
        let pem = to_pem(der);
        assert_eq!(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().as_ref(), der);
    }
}
