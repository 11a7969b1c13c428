//! HTTPS for the API's own listener (issue 16). By default (`OURO_TLS=auto`) the API makes its
//! own certificate authority at its first start (`<data dir>/tls/ca.pem`, its key beside it,
//! readable by the API's user only) and, at every start, a server certificate signed by it for
//! the names clients use (`localhost`, loopback, this host's name, `OURO_API_URL`'s host and
//! `OURO_TLS_NAMES`). Clients trust the authority: `ouro login` shows its SHA-256 fingerprint
//! (which `ouro up` prints on the server) and keeps it, or is given the file. An operator's own
//! certificate and key (`OURO_TLS_CERT_FILE`, `OURO_TLS_KEY_FILE`, PEM) replace it; `OURO_TLS=off`
//! serves plain HTTP only (behind a proxy that terminates TLS).
//!
//! Plain HTTP stays for loopback and the Docker bridges (peers this host routes to through a
//! bridge interface), and for the IPv4 ranges of `OURO_PLAIN_HTTP_FROM` (none by default): the
//! platform's own components call the API there; from anywhere else a plain connection is
//! refused (`ouro-serve`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::{Error, Result};

/// `OURO_TLS` and the files it may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Off,
    /// The API's own authority and certificate.
    Auto,
    /// The operator's certificate chain and key (PEM).
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
}

impl Setting {
    /// From `OURO_TLS`, `OURO_TLS_CERT_FILE` and `OURO_TLS_KEY_FILE`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Setting> {
        match (var("OURO_TLS").as_deref(), var("OURO_TLS_CERT_FILE"), var("OURO_TLS_KEY_FILE")) {
            (Some("off"), None, None) => Ok(Setting::Off),
            (Some("off"), _, _) => Err(Error::Config("OURO_TLS=off and a certificate file: pick one".into())),
            (None | Some("auto"), None, None) => Ok(Setting::Auto),
            (None | Some("auto"), Some(cert), Some(key)) => {
                Ok(Setting::Files { cert: PathBuf::from(cert), key: PathBuf::from(key) })
            }
            (None | Some("auto"), _, _) => {
                Err(Error::Config("set both OURO_TLS_CERT_FILE and OURO_TLS_KEY_FILE, or neither".into()))
            }
            (Some(other), _, _) => Err(Error::Config(format!("OURO_TLS `{other}` is not `auto` or `off`"))),
        }
    }
}

/// The listener's TLS, and the certificate clients should trust.
pub struct Https {
    pub server: Arc<rustls::ServerConfig>,
    /// PEM of the certificate a client trusts: the API's authority, or the last of the
    /// operator's chain.
    pub trust_pem: String,
    /// Its SHA-256, as `AB:CD:…`.
    pub fingerprint: String,
}

/// `GET /tls/ca.pem`, open: the certificate clients trust (404 when TLS is off). `ouro up`
/// reads it over loopback to print its fingerprint; a client that fetches it over the network
/// must still check the fingerprint, as anyone in between could answer another.
pub fn routes(trust_pem: Option<String>) -> axum::Router {
    let answer = move || {
        let trust_pem = trust_pem.clone();
        async move {
            use axum::response::IntoResponse;
            match trust_pem {
                Some(pem) => ([(axum::http::header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response(),
                None => (axum::http::StatusCode::NOT_FOUND, "the API serves no HTTPS (OURO_TLS=off)\n").into_response(),
            }
        }
    };
    axum::Router::new().route("/tls/ca.pem", axum::routing::get(answer))
}

const CA_NAME: &str = "Ouro API certificate authority";

/// The TLS the setting asks for; `None` for `off`.
pub fn load(setting: &Setting, data_dir: &Path, names: &[String]) -> Result<Option<Https>> {
    let (chain, key) = match setting {
        Setting::Off => return Ok(None),
        Setting::Files { cert, key } => {
            let read = |path: &Path| {
                std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
            };
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Config(format!("{}: no PEM certificates ({e})", cert.display())))?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?)
                .map_err(|e| Error::Config(format!("{}: no PEM private key ({e})", key.display())))?;
            (chain, key)
        }
        Setting::Auto => own_certificate(&data_dir.join("tls"), names)?,
    };
    let trust = chain.last().ok_or_else(|| Error::Config("the certificate file holds no certificate".into()))?;
    let trust_pem = ouro_types::pem("CERTIFICATE", trust);
    let fingerprint = ouro_types::fingerprint(trust);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Config(format!("the API's certificate and key do not go together: {e}")))?;
    Ok(Some(Https { server: Arc::new(server), trust_pem, fingerprint }))
}

/// The authority's parameters: the same at every start, so that a certificate signed with its
/// kept key names it as its issuer.
fn ca_params() -> Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, CA_NAME);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2026, 1, 1);
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    Ok(params)
}

fn tls_error(e: rcgen::Error) -> Error {
    Error::Config(format!("making the API's certificate: {e}"))
}

/// The API's own authority (made once, kept in `dir`) and a server certificate for `names`
/// signed by it (made at each start): the chain (server, authority) and the server's key.
fn own_certificate(dir: &Path, names: &[String]) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if !ca_cert.exists() || !ca_key.exists() {
        std::fs::create_dir_all(dir)?;
        let key = rcgen::KeyPair::generate().map_err(tls_error)?;
        let cert = ca_params()?.self_signed(&key).map_err(tls_error)?;
        write_private(&ca_key, &key.serialize_pem())?;
        std::fs::write(&ca_cert, cert.pem())?;
    }
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&ca_key)?).map_err(tls_error)?;
    let ca_der = CertificateDer::from_pem_file(&ca_cert)
        .map_err(|e| Error::Config(format!("{}: no PEM certificate ({e})", ca_cert.display())))?;
    let issuer = rcgen::Issuer::new(ca_params()?, ca_key);

    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Ouro API");
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(name.as_str().try_into().map_err(tls_error)?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(2 * 365 * 24 * 3600)).into();
    let key = rcgen::KeyPair::generate().map_err(tls_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(tls_error)?;
    Ok((vec![cert.der().clone(), ca_der], PrivateKeyDer::Pkcs8(key.serialize_der().into())))
}

/// Writes `text` to `path`, readable and writable by its owner only, from its creation.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The names the API's own certificate covers: loopback, this host's name, `public_url`'s
/// host, the listener's address when it is one, and `extra` (`OURO_TLS_NAMES`).
pub fn names(public_url: Option<&str>, listen: std::net::SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        names.push(host.trim().to_string());
    }
    if let Some(url) = public_url {
        let rest = url.split("://").nth(1).unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        names.push(host.to_string());
    }
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend(extra.iter().cloned());
    names.retain(|n| !n.is_empty());
    names.dedup();
    names
}

/// Whether a plain-HTTP connection from `peer` is served: loopback, an IPv4 address in
/// `allow` (`OURO_PLAIN_HTTP_FROM`), or one this host reaches through a bridge (a Docker
/// network's: the kernel's routing table names the interface, `/sys` says it is a bridge).
pub fn plain_allowed(peer: IpAddr, allow: &[ouro_types::egress::Cidr]) -> bool {
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match peer {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || allow.iter().any(|range| range.contains(v4))
                || std::fs::read_to_string("/proc/net/route")
                    .ok()
                    .and_then(|table| route_interface(&table, v4))
                    .is_some_and(|iface| Path::new("/sys/class/net").join(iface).join("bridge").is_dir())
        }
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// The interface of the most specific route to `ip` in `/proc/net/route`'s text (addresses
/// and masks in hex, in the kernel's byte order).
fn route_interface(table: &str, ip: std::net::Ipv4Addr) -> Option<String> {
    let ip = u32::from_ne_bytes(ip.octets());
    let mut best: Option<(u32, &str)> = None;
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(dest), Some(mask)) = (fields.first(), fields.get(1), fields.get(7)) else { continue };
        let (Ok(dest), Ok(mask)) = (u32::from_str_radix(dest, 16), u32::from_str_radix(mask, 16)) else { continue };
        if ip & mask == dest && best.is_none_or(|(longest, _)| mask.count_ones() > longest) {
            best = Some((mask.count_ones(), iface));
        }
    }
    best.map(|(_, iface)| iface.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_from_loopback_and_the_bridge() {
        let allow = ouro_types::egress::parse_allow("10.9.0.0/16").unwrap();
        for (peer, plain) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.9.1.1", true),
            ("192.0.2.7", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(plain_allowed(peer.parse().unwrap(), &allow), plain, "{peer}");
        }
    }

    #[test]
    fn the_route_to_an_address_names_its_interface() {
        let table = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            br-1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00F0FFFF\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let via = |ip: &str| route_interface(table, ip.parse().unwrap());
        assert_eq!(via("172.17.0.5").as_deref(), Some("docker0"));
        assert_eq!(via("192.168.3.4").as_deref(), Some("br-1"));
        assert_eq!(via("192.168.17.4").as_deref(), Some("eth0"), "outside br-1's /20: the default route");
        assert_eq!(via("192.0.2.9").as_deref(), Some("eth0"));
    }

    #[test]
    fn settings() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(Setting::from_vars(vars(&[])).unwrap(), Setting::Auto);
        assert_eq!(Setting::from_vars(vars(&[("OURO_TLS", "off")])).unwrap(), Setting::Off);
        assert!(Setting::from_vars(vars(&[("OURO_TLS", "yes")])).is_err());
        assert!(Setting::from_vars(vars(&[("OURO_TLS_CERT_FILE", "/c")])).is_err(), "a key too");
    }

    #[test]
    fn the_own_authority_is_kept_and_signs_a_certificate_for_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = names(Some("https://api.example.test:7700"), "0.0.0.0:7700".parse().unwrap(), &[]);
        assert!(names.contains(&"api.example.test".to_string()) && names.contains(&"127.0.0.1".to_string()));
        let first = load(&Setting::Auto, dir.path(), &names).unwrap().unwrap();
        let again = load(&Setting::Auto, dir.path(), &names).unwrap().unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "the authority outlives a restart");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("tls/ca-key.pem")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let kept = CertificateDer::from_pem_file(dir.path().join("tls/ca.pem")).unwrap();
        assert_eq!(
            CertificateDer::from_pem_slice(first.trust_pem.as_bytes()).unwrap(),
            kept,
            "trust_pem is the authority"
        );
    }
}
