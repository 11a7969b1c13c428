//! TLS: certificates by SNI from the route table, the self-signed default certificate, ALPN h2,
//! and `X-Forwarded-Proto: https` towards the dynos.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ouro_router::Config;
use ouro_types::TlsCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A router with a plain and a TLS listener, shut down when dropped.
struct TlsRouter {
    addr: SocketAddr,
    tls_addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

impl TlsRouter {
    async fn following(source: &RouteSource) -> TlsRouter {
        TlsRouter::start(Config::new(source.url())).await
    }

    async fn start(config: Config) -> TlsRouter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, tls_addr) = (listener.local_addr().unwrap(), tls_listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(ouro_router::serve_with_tls(listener, Some(tls_listener), config, async move {
            let _ = stop.await;
        }));
        TlsRouter { addr, tls_addr, _shutdown: shutdown }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate for `name`, as the route table carries it, and its DER.
fn certificate(name: &str) -> (TlsCert, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let cert = TlsCert { chain_pem: generated.cert.pem(), key_pem: generated.signing_key.serialize_pem() };
    (cert, generated.cert.der().clone())
}

/// Accepts any server certificate: for looking at what the router presents.
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

fn client_trusting(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn client_accepting_any() -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    config.enable_sni = true;
    config
}

async fn connect(config: ClientConfig, addr: SocketAddr, sni: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(STEP, TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake succeeds")
}

/// One GET over an established TLS stream, HTTP/1.1 or h2 by what ALPN chose.
async fn get(stream: TlsStream<TcpStream>, host: &str) -> (hyper::http::Version, u16, String) {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(stream);
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get(format!("https://{host}/tls")).body(Full::new(Bytes::new())).unwrap();
        tokio::time::timeout(STEP, sender.send_request(request)).await.expect("answer in time").unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await.unwrap();
        tokio::spawn(connection);
        let request = Request::get("/tls").header("host", host).body(Full::new(Bytes::new())).unwrap();
        tokio::time::timeout(STEP, sender.send_request(request)).await.expect("answer in time").unwrap()
    };
    let (version, status) = (response.version(), response.status().as_u16());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (version, status, String::from_utf8_lossy(&body).into_owned())
}

async fn secure_setup() -> (Backend, RouteSource, TlsRouter, CertificateDer<'static>) {
    let backend = Backend::start("web.1").await;
    let (cert, der) = certificate("secure.example");
    let mut secure = route("secure", &["secure.example"], vec![backend.backend()]);
    secure.certificates = vec![cert];
    let source = RouteSource::start(vec![secure]).await;
    let router = TlsRouter::following(&source).await;
    let client = TestClient::new();
    wait_until("the route is loaded", STEP, || async {
        client.get(router.addr, "secure.example", "/").await.status == 200
    })
    .await;
    (backend, source, router, der)
}

#[tokio::test]
async fn sni_picks_the_route_certificate_and_forwards_https() {
    let (_backend, _source, router, der) = secure_setup().await;
    let stream = connect(client_trusting(&der, &[b"http/1.1"]), router.tls_addr, "secure.example").await;
    let (version, status, body) = get(stream, "secure.example").await;
    assert_eq!((version, status), (hyper::http::Version::HTTP_11, 200), "{body}");
    assert!(body.starts_with("web.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(body.contains(&format!("x-forwarded-port: {}\n", router.tls_addr.port())), "{body}");

    // The plain listener still says http.
    let reply = TestClient::new().get(router.addr, "secure.example", "/").await;
    assert_eq!(reply.echoed("x-forwarded-proto").as_deref(), Some("http"));
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn() {
    let (_backend, _source, router, der) = secure_setup().await;
    let stream = connect(client_trusting(&der, &[b"h2", b"http/1.1"]), router.tls_addr, "secure.example").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, status, body) = get(stream, "secure.example").await;
    assert_eq!((version, status), (hyper::http::Version::HTTP_2, 200), "{body}");
    assert!(body.starts_with("web.1\n"), "{body}");
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
}

#[tokio::test]
async fn unknown_or_missing_sni_gets_the_default_certificate() {
    let (_backend, _source, router, der) = secure_setup().await;

    // An unknown name: the default certificate, which a client trusting only the route's
    // certificate rejects.
    let tcp = TcpStream::connect(router.tls_addr).await.unwrap();
    let name = ServerName::try_from("other.example").unwrap();
    let refused = TlsConnector::from(Arc::new(client_trusting(&der, &[]))).connect(name, tcp).await;
    assert!(refused.is_err(), "the route's certificate must not be served for another name");

    let stream = connect(client_accepting_any(), router.tls_addr, "other.example").await;
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_ne!(presented, der, "unknown name gets the default certificate");
    let default = presented;

    // No SNI at all (an IP address as the server name sends none).
    let mut config = client_accepting_any();
    config.enable_sni = false;
    let stream = connect(config, router.tls_addr, "secure.example").await;
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], default);
    // The request is still routed by Host.
    let (_, status, body) = get(stream, "secure.example").await;
    assert_eq!(status, 200, "{body}");

    // The known name gets the route's certificate.
    let stream = connect(client_accepting_any(), router.tls_addr, "secure.example").await;
    assert_eq!(stream.get_ref().1.peer_certificates().unwrap()[0], der);
}

#[tokio::test]
async fn certificates_follow_the_route_table() {
    let (backend, source, router, _der) = secure_setup().await;
    let (cert, der) = certificate("secure.example");
    let mut secure = route("secure", &["secure.example"], vec![backend.backend()]);
    secure.certificates = vec![cert];
    source.set(vec![secure]);
    wait_until("the new certificate is served", STEP, || {
        let der = der.clone();
        async move {
            let stream = connect(client_accepting_any(), router.tls_addr, "secure.example").await;
            stream.get_ref().1.peer_certificates().unwrap()[0] == der
        }
    })
    .await;
    // A route without certificates: the default one.
    source.set(vec![route("secure", &["secure.example"], vec![backend.backend()])]);
    wait_until("the certificate is gone", STEP, || {
        let der = der.clone();
        async move {
            let stream = connect(client_accepting_any(), router.tls_addr, "secure.example").await;
            stream.get_ref().1.peer_certificates().unwrap()[0] != der
        }
    })
    .await;
}

#[tokio::test]
async fn a_tls_connection_without_a_request_is_cut_off_after_the_header_read_timeout() {
    let source = RouteSource::start(Vec::new()).await;
    let mut config = Config::new(source.url());
    config.header_read_timeout = std::time::Duration::from_millis(500);
    let router = TlsRouter::start(config).await;
    let mut stream = connect(client_accepting_any(), router.tls_addr, "secure.example").await;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(STEP, tokio::io::AsyncReadExt::read(&mut stream, &mut buf))
        .await
        .expect("the router closed the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_millis(400), "cut after {waited:?}");
}
