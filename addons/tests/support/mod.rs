//! What the provider's tests stand on: the provider served in-process on port 0, a stand-in
//! Platform API that records every call, stand-in servers (a TCP greeter-echo, Redis speaking
//! RESP plainly and over TLS), stand-ins for PostgreSQL's client tools (shell scripts), and a
//! raw HTTP/1.1 client.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ouro_addons::config::{PG_BIN, PG_LIB, Servers};
use ouro_addons::kinds::Kind;
use ouro_addons::{AppState, Config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const PASSWORD: &str = "contract-password";
pub const TOKEN: &str = "provider-token";
/// The longest any one step of a test may take.
pub const STEP: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// The stand-in Platform API

/// One call the provider made to the Platform API.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub body: Value,
    pub authorization: String,
}

impl Call {
    /// `"<METHOD> <path>"`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Default)]
struct Platform {
    calls: Vec<Call>,
    /// Apps made through it: name → config vars.
    apps: BTreeMap<String, BTreeMap<String, String>>,
    current_release: Value,
    /// `"<METHOD> <path>"` → the error answered instead.
    failures: BTreeMap<String, (u16, String)>,
}

/// A Platform API on port 0 that knows the provider app (`ouro-<kind>`, release 7 of slug
/// `slug-7`) and the apps the provider makes, and records every call.
pub struct FakeApi {
    pub url: String,
    state: Arc<Mutex<Platform>>,
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let state = Arc::new(Mutex::new(Platform { current_release: json!(7), ..Platform::default() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(platform_api).with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApi { url, state }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The calls so far as `"<METHOD> <path>"` lines, forgotten afterwards.
    pub fn take_lines(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.drain(..).map(|c| c.line()).collect()
    }

    /// `METHOD path` answers `status` with `{"message"}` from now on.
    pub fn fail(&self, call: &str, status: u16, message: &str) {
        self.state.lock().unwrap().failures.insert(call.to_string(), (status, message.to_string()));
    }

    pub fn set_current_release(&self, release: Value) {
        self.state.lock().unwrap().current_release = release;
    }

    pub fn app_vars(&self, app: &str) -> Option<BTreeMap<String, String>> {
        self.state.lock().unwrap().apps.get(app).cloned()
    }

    /// Makes the app `name` with `vars`, as if the provider had made it.
    pub fn add_app(&self, name: &str, vars: &[(&str, &str)]) {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().apps.insert(name.to_string(), vars);
    }
}

async fn platform_api(
    State(state): State<Arc<Mutex<Platform>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
    let mut state = state.lock().unwrap();
    let path = uri.path().to_string();
    let authorization = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    state.calls.push(Call { method: method.to_string(), path: path.clone(), body: body.clone(), authorization });
    if let Some((status, message)) = state.failures.get(&format!("{method} {path}")) {
        return error(*status, message);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["apps", provider]) if provider.starts_with("ouro-") => {
            Json(json!({ "name": provider, "current_release": state.current_release }))
        }
        ("GET", ["apps", provider, "releases", "7"]) if provider.starts_with("ouro-") => {
            Json(json!({ "version": 7, "slug": { "id": "slug-7" } }))
        }
        ("POST", ["apps"]) => {
            let name = body["name"].as_str().unwrap().to_string();
            if state.apps.contains_key(&name) {
                return error(409, &format!("app `{name}` already exists"));
            }
            state.apps.insert(name.clone(), BTreeMap::new());
            return (StatusCode::CREATED, axum::Json(json!({ "name": name }))).into_response();
        }
        (_, ["apps", app, ..]) if !state.apps.contains_key(*app) => {
            return error(404, &format!("app `{app}` not found"));
        }
        ("GET", ["apps", app, "config-vars"]) => Json(json!(state.apps[*app])),
        ("PATCH", ["apps", app, "config-vars"]) => {
            let vars = state.apps.get_mut(*app).unwrap();
            for (k, v) in body.as_object().unwrap() {
                vars.insert(k.clone(), v.as_str().unwrap().to_string());
            }
            Json(json!(vars))
        }
        ("PUT", ["apps", _, "service"]) => Json(body),
        ("PATCH", ["apps", _, "formation"]) => Json(json!([])),
        ("POST", ["apps", _, "releases"]) => {
            return (StatusCode::CREATED, axum::Json(json!({ "version": 1 }))).into_response();
        }
        ("DELETE", ["apps", app]) => {
            let app = app.to_string();
            state.apps.remove(&app);
            Json(json!({ "name": app }))
        }
        _ => return error(404, "no such route in the stand-in API"),
    }
    .into_response()
}

struct Json(Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (status, axum::Json(json!({ "id": "error", "message": message }))).into_response()
}

// ---------------------------------------------------------------------------------------------
// The provider

/// A provider of `kind` that calls the API at `api_url`; its servers at 127.0.0.1 on ports
/// that refuse connections until a test points them elsewhere.
pub fn config(kind: Kind, api_url: &str) -> Config {
    Config {
        kind,
        provider_password: PASSWORD.into(),
        api_url: api_url.into(),
        api_token: TOKEN.into(),
        port: 0,
        provider_app: format!("ouro-{kind}"),
        servers: Servers { host: Some("127.0.0.1".into()), port: closed_port(), tls_port: closed_port() },
        pg_bin: PathBuf::from(PG_BIN),
        pg_lib: PathBuf::from(PG_LIB),
        limits: ouro_addons::LIMITS,
    }
}

/// A port nothing listens on (bound, then let go).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The provider served on port 0 until dropped.
pub struct Provider {
    pub addr: SocketAddr,
    pub kind: Kind,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Provider {
    pub async fn start(config: Config) -> Provider {
        let kind = config.kind;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        tokio::spawn(ouro_addons::serve(listener, AppState::new(config), shutdown));
        Provider { addr, kind, _stop: stop }
    }

    /// `method path` with the provider's credentials.
    pub async fn call(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        request(self.addr, method, path, Some(&basic(self.kind.as_str(), PASSWORD)), body).await
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            let c = if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' };
            out.push(c);
        }
    }
    out
}

/// An HTTP answer as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// (status, JSON body).
    pub fn parts(&self) -> (u16, Value) {
        (self.status, self.json())
    }
}

/// One request on a connection of its own (`Connection: close`).
pub async fn request(addr: SocketAddr, method: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> Answer {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: provider\r\nConnection: close\r\n");
    if let Some(authorization) = authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw).await
}

/// Sends `raw` and reads one answer: its head, then as many bytes as its `Content-Length`
/// says (to the end of the connection without one).
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Answer {
    tokio::time::timeout(STEP, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let (status, headers, mut body) = read_head(&mut stream).await;
        let length = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        match length.map(|(_, v)| v.parse::<usize>().unwrap()) {
            Some(length) => {
                while body.len() < length {
                    let mut chunk = vec![0u8; 64 << 10];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the answer ended early");
                    body.extend_from_slice(&chunk[..n]);
                }
            }
            None => {
                stream.read_to_end(&mut body).await.unwrap();
            }
        }
        check_answer(Answer { status, headers, body })
    })
    .await
    .expect("the provider answers in time")
}

/// Reads an answer's head from `stream`: (status, headers, the bytes after the head).
pub async fn read_head(stream: &mut TcpStream) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let answer = parse_head(&got[..end]);
            return (answer.0, answer.1, got[end + 4..].to_vec());
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before an answer: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let head = std::str::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .map(|line| {
            let (k, v) = line.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}

fn check_answer(answer: Answer) -> Answer {
    assert_eq!(answer.header("transfer-encoding"), None, "answers have a length");
    let lengths = answer.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).count();
    assert!(lengths <= 1, "one Content-Length at most: {:?}", answer.headers);
    if let Some(length) = answer.header("content-length") {
        assert_eq!(answer.body.len(), length.parse::<usize>().unwrap(), "the body is as long as announced");
    }
    answer
}

// ---------------------------------------------------------------------------------------------
// Stand-in servers

/// A TCP server that greets each connection with `hello from the server\n`, then echoes.
pub async fn greeter() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                stream.write_all(b"hello from the server\n").await.unwrap();
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    port
}

/// A test certificate and its key (P-256, self-signed, CN and SAN `redis-test`).
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT6gAwIBAgIUc8757Mo7cldJM48UeGx/HujqKkwwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKcmVkaXMtdGVzdDAgFw0yNjEyMDcwMjQxNDNaGA8yMTI2MTEx
MzAyNDE0M1owFTETMBEGA1UEAwwKcmVkaXMtdGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABI6XanPj6cLK8NAyV85VjZ/bj1A/vCuiV/MNHXr5mgdRZCcPB5QF
6OvpTSlNKb6B0CA+Zsq0FFWBkfV+UlG2NQejajBoMB0GA1UdDgQWBBR+MehAMJ4K
YB57Wh1yBux3BxvIwTAfBgNVHSMEGDAWgBR+MehAMJ4KYB57Wh1yBux3BxvIwTAP
BgNVHRMBAf8EBTADAQH/MBUGA1UdEQQOMAyCCnJlZGlzLXRlc3QwCgYIKoZIzj0E
AwIDSQAwRgIhAOlur9DJh4oWzHZn6LH8Kr4Q7esBI8hmsUZA4r8EBtQdAiEA4k96
xUQObzT0piXcebJysV1dpzgW3cw+KE/kObufyJc=
-----END CERTIFICATE-----
";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgm+PbHmHTZNXp5mAq
/ALLc/0vg0B/rFViDAYT5+mbGYehRANCAASOl2pz4+nCyvDQMlfOVY2f249QP7wr
olfzDR16+ZoHUWQnDweUBejr6U0pTSm+gdAgPmbKtBRVgZH1flJRtjUH
-----END PRIVATE KEY-----
";

/// A Redis stand-in on port 0: `AUTH <password>` then `PING` answer `+OK` and `+PONG` (a
/// wrong password `-WRONGPASS` and `-NOAUTH`); over TLS with `tls`. Also records the SNI name
/// of each TLS client.
pub struct FakeRedis {
    pub port: u16,
    pub server_names: Arc<Mutex<Vec<String>>>,
}

impl FakeRedis {
    pub async fn start(password: &str, tls: bool) -> FakeRedis {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tls.then(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cert = CertificateDer::from_pem_slice(CERT_PEM.as_bytes()).unwrap();
            let key = PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes()).unwrap();
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let names = Arc::clone(&server_names);
        let password = password.to_string();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (acceptor, password, names) = (acceptor.clone(), password.clone(), Arc::clone(&names));
                tokio::spawn(async move {
                    match acceptor {
                        None => resp(stream, &password).await,
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else { return };
                            let name = stream.get_ref().1.server_name().unwrap_or_default().to_string();
                            names.lock().unwrap().push(name);
                            resp(stream, &password).await
                        }
                    }
                });
            }
        });
        FakeRedis { port, server_names }
    }
}

/// Answers inline commands (`AUTH`, `PING`) line by line until the client goes.
async fn resp<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: S, password: &str) {
    let mut stream = tokio::io::BufStream::new(stream);
    let mut authenticated = false;
    loop {
        let mut line = String::new();
        match tokio::io::AsyncBufReadExt::read_line(&mut stream, &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["AUTH", given] if *given == password => {
                authenticated = true;
                "+OK\r\n"
            }
            ["AUTH", _] => "-WRONGPASS invalid username-password pair or user is disabled.\r\n",
            ["PING"] if authenticated => "+PONG\r\n",
            ["PING"] => "-NOAUTH Authentication required.\r\n",
            _ => "-ERR unknown command\r\n",
        };
        if stream.write_all(answer.as_bytes()).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stand-ins for PostgreSQL's client tools

/// A bin directory of shell scripts named like PostgreSQL's tools. Each records its arguments
/// (one a line) in `<tool>.args` and its PostgreSQL environment in `<tool>.env`, then runs the
/// shell `body` given for it.
pub struct FakeTools {
    pub dir: tempfile::TempDir,
}

impl FakeTools {
    pub fn new(tools: &[(&str, &str)]) -> FakeTools {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (tool, body) in tools {
            let path = dir.path().join(tool);
            let record = dir.path().join(tool);
            let script = format!(
                "#!/bin/sh\n\
                 [ \"$1\" = --warm-up ] && exit 0\n\
                 printf '%s\\n' \"$@\" > '{record}.args'\n\
                 printf 'LD_LIBRARY_PATH=%s\\nPGPASSWORD=%s\\nPGCONNECT_TIMEOUT=%s\\nPGSSLMODE=%s\\n' \
                   \"$LD_LIBRARY_PATH\" \"$PGPASSWORD\" \"$PGCONNECT_TIMEOUT\" \"$PGSSLMODE\" > '{record}.env'\n\
                 {body}\n",
                record = record.display(),
            );
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            warm_up(&path);
        }
        FakeTools { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The arguments `tool` was last run with.
    pub fn args(&self, tool: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{tool}.args"))).unwrap();
        text.lines().map(String::from).collect()
    }

    /// The PostgreSQL environment `tool` was last run with.
    pub fn env(&self, tool: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{tool}.env"))).unwrap();
        text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

/// Runs a freshly written script until it runs: another test's fork may hold it open for
/// writing for a moment (`ETXTBSY`), which would fail the provider's own run of it.
fn warm_up(path: &Path) {
    for _ in 0..100 {
        match std::process::Command::new(path).arg("--warm-up").status() {
            Ok(status) => {
                assert!(status.success(), "{} --warm-up: {status}", path.display());
                return;
            }
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    panic!("{} stays busy", path.display());
}
