//! Tunnels to an add-on's server through the API, and the local clients that use them:
//! `pg:psql` (in `pg.rs`) and `redis:cli` (here).
//!
//! A tunnel is `GET /apps/{app}/addons/{addon}/tunnel` upgraded (`101 Switching Protocols`)
//! to raw TCP with the server. The CLI listens on 127.0.0.1, opens one tunnel per accepted
//! connection and runs the real client (`psql`, `redis-cli`) against that port, so the
//! database's port is never exposed. The request is written by hand on a std `TcpStream`,
//! over TLS for an `https://` API URL (`upgraded.rs`). The add-on's password goes to the client in its
//! environment, never on its command line (which other users of the machine can read).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

pub use ouro_types::http_upgrade::Endpoint;
use ouro_types::http_upgrade::{self, Answer, Head, HeadReader};
use ouro_types::{Addon, AddonState, ConfigVars, ErrorBody};

use crate::client::{Client, app_path, decode, segment};
use crate::context::Ctx;
use crate::credentials::{self, Credentials};
use crate::error::CliError;
use crate::upgraded::Upgraded;

/// For connecting to the API and for its answer to the tunnel request (not for the tunnel's
/// traffic: an idle psql session may sit for hours).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Of an error answer's body, only this much is read.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The `Upgrade` token of add-on tunnels.
const TUNNEL: &str = "ouro-tunnel";

/// `ouro redis:cli [ADDON] [-- ARGS…]`: `redis-cli` on a Redis add-on (default: the `REDIS`
/// attachment); its exit code is returned.
pub fn redis_cli(ctx: &Ctx, addon: Option<&str>, args: &[String]) -> Result<u8, CliError> {
    let program = find_program("redis-cli")
        .ok_or_else(|| CliError::local("redis-cli not found: install Redis's client (apt install redis-tools)"))?;
    let (url, port) = forward(ctx, addon.unwrap_or("REDIS"), &["redis"], "a Redis server")?;
    let mut command = Command::new(program);
    command.args(redis_cli_args(&url, port)).args(args);
    if let Some(password) = &url.password {
        command.env("REDISCLI_AUTH", password);
    }
    run_client(command, "redis-cli")
}

/// `redis-cli`'s arguments for a server behind a tunnel on `port` (the password is not among
/// them).
fn redis_cli_args(url: &ServerUrl, port: u16) -> Vec<String> {
    let mut args: Vec<String> =
        ["-h", "127.0.0.1", "-p", &port.to_string(), "--no-auth-warning"].map(String::from).into();
    let user = percent_decode(&url.user);
    if !user.is_empty() && user != "default" {
        args.extend(["--user".to_string(), user]);
    }
    let db = url.path.trim_start_matches('/');
    if !db.is_empty() {
        args.extend(["-n".to_string(), db.to_string()]);
    }
    args
}

/// The parts of an add-on's URL (`postgres://user:password@host:port/db?options`) that a
/// client needs once a tunnel stands in for the host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Lower case: `postgres`, `redis`.
    pub scheme: String,
    /// As written in the URL (percent-encoded).
    pub user: String,
    /// Decoded.
    pub password: Option<String>,
    /// `/db` as written, or empty.
    pub path: String,
    /// What follows `?`, as written, or empty.
    pub query: String,
}

/// Parses `scheme://[user[:password]@]host[:port][/path][?query][#fragment]`; `None` when the
/// text is not such a URL.
pub fn parse_server_url(url: &str) -> Option<ServerUrl> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return None;
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let userinfo = authority.rsplit_once('@').map_or("", |(userinfo, _)| userinfo);
    let (user, password) = match userinfo.split_once(':') {
        Some((user, password)) => (user, Some(percent_decode(password))),
        None => (userinfo, None),
    };
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    Some(ServerUrl {
        scheme: scheme.to_ascii_lowercase(),
        user: user.to_string(),
        password,
        path: path.to_string(),
        query: query.to_string(),
    })
}

/// Decodes `%XX` escapes; anything else (a lone `%`) stays as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name` in a directory of `$PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Everything between the command line and the client: the add-on's URL (read from the
/// app's config vars) and a local port whose connections are tunnelled to its server. The
/// URL's scheme must be one of `schemes`, else the add-on is not `what` the client needs.
pub fn forward(ctx: &Ctx, addon: &str, schemes: &[&str], what: &str) -> Result<(ServerUrl, u16), CliError> {
    let app = ctx.app()?;
    let credentials = credentials::load()?;
    // Before any request, so that an unusable API URL fails at once.
    let (endpoint, tls) = reach(&credentials)?;
    let client = Client::new(&credentials);
    let (addon, url) = addon_url(&client, &app, addon)?;
    let url = parse_server_url(&url)
        .filter(|url| schemes.contains(&url.scheme.as_str()))
        .ok_or_else(|| CliError::local(format!("{} on {app} is not {what}", addon.name)))?;
    let path = endpoint.prefix.clone() + &app_path(&app, &format!("/addons/{}/tunnel", segment(&addon.name)));
    let target =
        Target { api_url: credentials.api_url, endpoint, tls, path, token: credentials.token, protocol: TUNNEL };
    Ok((url, listen(target)?))
}

/// The add-on that `name` (its name, id or attachment name) means on `app`, and the URL in
/// the config var of its attachment to `app`.
fn addon_url(client: &Client, app: &str, name: &str) -> Result<(Addon, String), CliError> {
    let addon: Addon = decode(client.get(&app_path(app, &format!("/addons/{}", segment(name))))?)?;
    if addon.state != AddonState::Provisioned {
        return Err(CliError::local(format!(
            "{} is {}, not ready yet: `ouro addons:wait {} -a {app}` waits for it",
            addon.name, addon.state, addon.name
        )));
    }
    let here: Vec<_> = addon.attachments.iter().filter(|a| a.app.name == app).collect();
    let attachment =
        here.iter().find(|a| a.name.eq_ignore_ascii_case(name)).or_else(|| here.first()).ok_or_else(|| {
            CliError::local(format!(
                "{} is not attached to {app}: `ouro addons:attach {} -a {app}` attaches it",
                addon.name, addon.name
            ))
        })?;
    let own = format!("{}_URL", attachment.name);
    let var = attachment
        .config_vars
        .iter()
        .find(|v| **v == own)
        .or_else(|| attachment.config_vars.iter().find(|v| v.ends_with("_URL")))
        .cloned()
        .unwrap_or(own);
    let vars: ConfigVars = decode(client.get(&app_path(app, "/config-vars"))?)?;
    let url = vars.get(&var).cloned().ok_or_else(|| {
        CliError::local(format!(
            "config var {var} of {} is not set on {app}: `ouro config -a {app}` lists them",
            addon.name
        ))
    })?;
    Ok((addon, url))
}

/// Runs a client (stdio inherited) until it exits, and returns its exit code.
pub fn run_client(mut command: Command, name: &str) -> Result<u8, CliError> {
    // Ctrl-C is the client's (psql cancels the running query with it), but the terminal
    // sends SIGINT to this process as well: catching it keeps the tunnels up. The flag is
    // never read.
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::new(AtomicBool::new(false)))
        .map_err(|e| CliError::local(format!("cannot catch Ctrl-C for {name}: {e}")))?;
    let status = command.status().map_err(|e| CliError::local(format!("cannot run {name}: {e}")))?;
    Ok(exit_code(status))
}

/// The client's exit code; killed by a signal, 128 + the signal, as shells report it.
fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

/// The API's address from its URL, and whether it is `https://` (port 443 unless given).
pub fn endpoint(api_url: &str) -> Result<(Endpoint, bool), String> {
    let (url, tls) = match api_url.get(..8).filter(|s| s.eq_ignore_ascii_case("https://")) {
        Some(_) => (format!("http://{}", &api_url[8..]), true),
        None => (api_url.to_string(), false),
    };
    let mut endpoint = http_upgrade::endpoint(&url).map_err(|e| format!("the API URL `{api_url}` {e}"))?;
    if tls && endpoint.addr == format!("{}:80", endpoint.host) {
        endpoint.addr = format!("{}:443", endpoint.host);
    }
    Ok((endpoint, tls))
}

/// How upgrades reach the API of `credentials`: its endpoint, and TLS for an https:// URL
/// (with the certificate authority the credentials keep, else the public ones).
pub fn reach(credentials: &Credentials) -> Result<(Endpoint, Option<Arc<rustls::ClientConfig>>), CliError> {
    let (endpoint, tls) = endpoint(&credentials.api_url).map_err(CliError::local)?;
    let tls = match tls {
        true => Some(crate::trust::client_config(credentials.ca_cert.as_deref())?),
        false => None,
    };
    Ok((endpoint, tls))
}

/// Everything needed to open one more upgraded connection (a tunnel, an attached dyno).
pub struct Target {
    pub api_url: String,
    pub endpoint: Endpoint,
    /// For an https:// API.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The request's path, with the API's prefix.
    pub path: String,
    pub token: String,
    /// The `Upgrade` token: `ouro-tunnel`, `ouro-attach`.
    pub protocol: &'static str,
}

/// Opens a first tunnel, so that a refusal is reported before the client starts, then
/// listens on 127.0.0.1 and gives every connection a tunnel of its own (psql opens a second
/// one to cancel a query). Returns the port.
fn listen(target: Target) -> Result<u16, CliError> {
    let first = open(&target)?;
    let fail = |e: io::Error| CliError::local(format!("cannot listen on 127.0.0.1: {e}"));
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(fail)?;
    let port = listener.local_addr().map_err(fail)?.port();
    thread::spawn(move || accept(&listener, target, first));
    Ok(port)
}

/// Serves the listener until the process ends (with the client).
fn accept(listener: &TcpListener, target: Target, first: (Upgraded, Vec<u8>)) {
    let target = Arc::new(target);
    let mut first = Some(first);
    for local in listener.incoming() {
        let local = match local {
            Ok(local) => local,
            Err(e) => {
                eprintln!("ouro: tunnel: cannot accept a connection: {e}");
                return;
            }
        };
        let opened = first.take();
        let target = Arc::clone(&target);
        thread::spawn(move || match opened.map_or_else(|| open(&target), Ok) {
            Ok((remote, early)) => splice(local, remote, &early),
            // The client sees its connection close, and says so.
            Err(e) => eprintln!("ouro: tunnel: {}", e.to_string().trim()),
        });
    }
}

/// Copies bytes both ways until both sides are done. An end of stream is passed on as a
/// half-close, so that each side sees the other's EOF; an error closes both sockets.
fn splice(local: TcpStream, remote: Upgraded, early: &[u8]) {
    let _ = local.set_nodelay(true);
    let upstream = {
        let (local, remote) = (local.try_clone(), remote.clone());
        thread::spawn(move || {
            if let Ok(local) = local {
                pump(local, remote, &[]);
            }
        })
    };
    pump(remote, local, early);
    let _ = upstream.join();
}

/// Either end of a tunnel.
trait End: Read + Write {
    fn close(&self, how: Shutdown);
}

impl End for TcpStream {
    fn close(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

impl End for Upgraded {
    fn close(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// `early` (bytes that arrived with the answer's head), then everything from `from`, to `to`.
fn pump(mut from: impl End, mut to: impl End, early: &[u8]) {
    match to.write_all(early).and_then(|()| io::copy(&mut from, &mut to)) {
        Ok(_) => to.close(Shutdown::Write),
        Err(_) => {
            from.close(Shutdown::Both);
            to.close(Shutdown::Both);
        }
    }
}

/// One upgraded connection: the connection, switched to the target's protocol (no timeouts
/// left on it), and the bytes of it that came with the answer's head. A refusal (any status
/// but 101) is the API's error.
pub fn open(target: &Target) -> Result<(Upgraded, Vec<u8>), CliError> {
    let api = &target.api_url;
    let unreachable = |e: io::Error| CliError::local(format!("cannot reach the Ouro API at {api}: {e}"));
    let socket = connect(&target.endpoint.addr).map_err(unreachable)?;
    socket.set_read_timeout(Some(HEAD_TIMEOUT)).map_err(unreachable)?;
    socket.set_write_timeout(Some(HEAD_TIMEOUT)).map_err(unreachable)?;
    socket.set_nodelay(true).map_err(unreachable)?;
    // Shares the socket's settings, to lift the timeouts once upgraded.
    let settings = socket.try_clone().map_err(unreachable)?;
    let mut stream = match &target.tls {
        None => Upgraded::plain(socket),
        Some(config) => {
            let host = target.endpoint.host.rsplit_once(':').map_or(target.endpoint.host.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|_| CliError::local(format!("`{host}` is not a host name or address")))?;
            let mut state = rustls::ClientConnection::new(Arc::clone(config), name)
                .map_err(|e| CliError::local(format!("TLS: {e}")))?;
            let mut socket = socket;
            while state.is_handshaking() {
                state.complete_io(&mut socket).map_err(|e| {
                    CliError::local(format!(
                        "TLS with the Ouro API at {api}: {e} (`ouro login` again trusts its certificate)"
                    ))
                })?;
            }
            Upgraded::tls(socket, state)
        }
    };
    stream.write_all(request(target).as_bytes()).map_err(unreachable)?;
    let what = if target.protocol == TUNNEL { "tunnel" } else { "attach" };
    let fail = |e: String| CliError::local(format!("{what} via {api}: {e}"));
    let Answer { head, early: rest } = read_head(&mut stream).map_err(fail)?;
    if head.status != 101 {
        let body = read_body(&mut stream, &head, rest);
        return Err(api_error(head.status, &String::from_utf8_lossy(&body)));
    }
    settings.set_read_timeout(None).map_err(unreachable)?;
    settings.set_write_timeout(None).map_err(unreachable)?;
    Ok((stream, rest))
}

fn request(target: &Target) -> String {
    let user_agent = format!("ouro-cli/{}", env!("CARGO_PKG_VERSION"));
    let authorization = format!("Bearer {}", target.token);
    http_upgrade::request(&target.endpoint, &target.path, &authorization, &user_agent, target.protocol)
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} has no address"));
    for candidate in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&candidate, HEAD_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Reads up to the end of the answer's head: the head, and what came after it.
fn read_head(stream: &mut impl Read) -> Result<Answer, String> {
    let mut reader = HeadReader::default();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the API closed the connection without answering".to_string()),
            Ok(n) => {
                if let Some(answer) = reader.push(&chunk[..n])? {
                    return Ok(answer);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(format!("no answer within {}s", HEAD_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
}

/// The body of an error answer, as much as comes within the time limit and [`MAX_ERROR_BODY`].
fn read_body(stream: &mut impl Read, head: &Head, mut body: Vec<u8>) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        if head.chunked {
            if let Some(decoded) = dechunk(&body) {
                return decoded;
            }
        } else if let Some(length) = head.content_length {
            if body.len() >= length {
                body.truncate(length);
                return body;
            }
        }
        if body.len() > MAX_ERROR_BODY {
            return body;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return body,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A complete `Transfer-Encoding: chunked` body, decoded; `None` while it is incomplete.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// An error answer as a [`CliError`]: its `message`, or the status when the body is not
/// the API's error JSON.
pub fn api_error(status: u16, body: &str) -> CliError {
    let message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(error) => error.message,
        Err(_) => format!("the API answered {status}"),
    };
    CliError::Api { status, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_for_upgrades() {
        let addr = |url: &str| endpoint(url).map(|(e, tls)| (e.addr, tls));
        assert_eq!(addr("http://127.0.0.1:7700/"), Ok(("127.0.0.1:7700".to_string(), false)));
        assert_eq!(addr("https://api.example.com"), Ok(("api.example.com:443".to_string(), true)));
        assert_eq!(addr("HTTPS://[::1]:7700/ouro"), Ok(("[::1]:7700".to_string(), true)));
        assert_eq!(endpoint("ftp://x").unwrap_err(), "the API URL `ftp://x` is not an http:// URL");
        assert!(endpoint("http:///x").unwrap_err().contains("names no host"));
    }

    #[test]
    fn server_urls() {
        let url = parse_server_url("postgres://u1:p%40ss@db-1:5000/d1?application_name=x#f").unwrap();
        assert_eq!(
            url,
            ServerUrl {
                scheme: "postgres".into(),
                user: "u1".into(),
                password: Some("p@ss".into()),
                path: "/d1".into(),
                query: "application_name=x".into(),
            }
        );
        let url = parse_server_url("redis://:secret@cache:5000").unwrap();
        assert_eq!((url.user.as_str(), url.password.as_deref(), url.path.as_str()), ("", Some("secret"), ""));
        let url = parse_server_url("REDIS://cache:5000/2").unwrap();
        assert_eq!((url.scheme.as_str(), url.password, url.path.as_str()), ("redis", None, "/2"));
        for bad in ["", "db:5000", "://x", "post gres://x"] {
            assert_eq!(parse_server_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_decoding() {
        let cases =
            [("abc", "abc"), ("a%20b", "a b"), ("%2f%2F", "//"), ("100%", "100%"), ("%zz", "%zz"), ("%C3%A9", "é")];
        for (text, expect) in cases {
            assert_eq!(percent_decode(text), expect, "{text}");
        }
    }

    #[test]
    fn redis_cli_arguments() {
        let args = |url: &str| redis_cli_args(&parse_server_url(url).unwrap(), 5432).join(" ");
        assert_eq!(args("redis://:secret@cache:5000"), "-h 127.0.0.1 -p 5432 --no-auth-warning");
        assert_eq!(args("redis://default:secret@cache:5000/0"), "-h 127.0.0.1 -p 5432 --no-auth-warning -n 0");
        assert_eq!(args("redis://al%20ice:secret@cache"), "-h 127.0.0.1 -p 5432 --no-auth-warning --user al ice");
        assert!(!args("redis://:secret@cache:5000").contains("secret"));
    }

    #[test]
    fn heads_are_read_from_the_socket_with_the_bytes_after_them() {
        let mut answer = &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ouro-tunnel\r\n\r\nR\0\0\0\x08"[..];
        let Answer { head, early } = read_head(&mut answer).unwrap();
        assert_eq!((head.status, early.as_slice()), (101, &b"R\0\0\0\x08"[..]));
        let mut cut = &b"HTTP/1.1 101 Switching Protocols\r\n"[..];
        assert!(read_head(&mut cut).unwrap_err().contains("closed"));
        let endless = vec![b'x'; http_upgrade::MAX_HEAD + 10];
        assert!(read_head(&mut endless.as_slice()).unwrap_err().contains("longer"));
    }

    #[test]
    fn error_bodies() {
        let json = r#"{"id":"not_found","message":"add-on `x` failed: disk full"}"#;
        let head = Head { status: 404, content_length: Some(json.len()), chunked: false };
        let body = read_body(&mut format!("{json}trailing").as_bytes(), &head, Vec::new());
        let error = api_error(head.status, &String::from_utf8_lossy(&body));
        assert!(matches!(error, CliError::Api { status: 404, .. }));
        assert_eq!(error.to_string(), "add-on `x` failed: disk full");
        let head = Head { status: 403, content_length: None, chunked: true };
        let early = b"6\r\n{\"id\":\r\n".to_vec();
        let mut rest = &b"15;x=y\r\n\"x\",\"message\":\"nope\"}\r\n0\r\n\r\nignored"[..];
        let body = read_body(&mut rest, &head, early);
        assert_eq!(api_error(403, &String::from_utf8_lossy(&body)).to_string(), "nope");
        assert_eq!(dechunk(b"2\r\nab\r\n0\r\n\r\n").as_deref(), Some(&b"ab"[..]));
        assert_eq!(dechunk(b"2\r\nab\r\n"), None);
        assert_eq!(dechunk(b"2\r\na"), None);
        assert_eq!(api_error(502, "<html>").to_string(), "the API answered 502");
    }
}
