//! Tunnels to an add-on's server through the API, and the local clients that use them:
//! `pg:psql` (in `pg.rs`) and `redis:cli` (here).
//!
//! A tunnel is `GET /apps/{app}/addons/{addon}/tunnel` upgraded (`101 Switching Protocols`)
//! to raw TCP with the server. The CLI listens on 127.0.0.1, opens one tunnel per accepted
//! connection and runs the real client (`psql`, `redis-cli`) against that port, so the
//! database's port is never exposed. The request is written by hand on a std `TcpStream`,
//! hence an `http://` API URL only, for now. The add-on's password goes to the client in its
//! environment, never on its command line (which other users of the machine can read).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::Duration;

use ouro_types::{Addon, AddonState, ConfigVars, ErrorBody};

use crate::client::{Client, app_path, decode, segment};
use crate::context::Ctx;
use crate::credentials;
use crate::error::CliError;

/// For connecting to the API and for its answer to the tunnel request (not for the tunnel's
/// traffic: an idle psql session may sit for hours).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The answer's head (status line and headers) may not be longer.
const MAX_HEAD: usize = 16 * 1024;
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
    // Before any request, so that an https API URL fails at once.
    let endpoint = endpoint(&credentials.api_url).map_err(CliError::local)?;
    let client = Client::new(&credentials);
    let (addon, url) = addon_url(&client, &app, addon)?;
    let url = parse_server_url(&url)
        .filter(|url| schemes.contains(&url.scheme.as_str()))
        .ok_or_else(|| CliError::local(format!("{} on {app} is not {what}", addon.name)))?;
    let path = endpoint.prefix.clone() + &app_path(&app, &format!("/addons/{}/tunnel", segment(&addon.name)));
    let target = Target { api_url: credentials.api_url, endpoint, path, token: credentials.token, protocol: TUNNEL };
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

/// Where the API listens, from its base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub addr: String,
    /// The `Host` header: the URL's authority as written.
    pub host: String,
    /// A path the API is mounted under (`/ouro`), or empty.
    pub prefix: String,
}

/// The API's address from its URL; upgrades are written by hand, so an `https://` URL is
/// refused.
pub fn endpoint(api_url: &str) -> Result<Endpoint, String> {
    let Some((scheme, rest)) = api_url.split_once("://") else {
        return Err(format!("the API URL `{api_url}` is not an http:// URL"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(format!(
            "tunnels and attached dynos need the API's http:// URL for now, and {api_url} is https: \
             set OURO_API_URL (or `ouro login --api`) to its http:// URL"
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!("the API URL `{api_url}` is not an http:// URL"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end].rsplit_once('@').map_or(&rest[..end], |(_, host)| host);
    let prefix = rest[end..].split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    if host.is_empty() {
        return Err(format!("the API URL `{api_url}` names no host"));
    }
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
        None => host.contains(':'),
    };
    let addr = if has_port { host.to_string() } else { format!("{host}:80") };
    Ok(Endpoint { addr, host: host.to_string(), prefix: prefix.to_string() })
}

/// Everything needed to open one more upgraded connection (a tunnel, an attached dyno).
pub struct Target {
    pub api_url: String,
    pub endpoint: Endpoint,
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
fn accept(listener: &TcpListener, target: Target, first: (TcpStream, Vec<u8>)) {
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
fn splice(local: TcpStream, remote: TcpStream, early: &[u8]) {
    let _ = local.set_nodelay(true);
    let local = Arc::new(local);
    let remote = Arc::new(remote);
    let upstream = {
        let (local, remote) = (Arc::clone(&local), Arc::clone(&remote));
        thread::spawn(move || pump(&local, &remote, &[]))
    };
    pump(&remote, &local, early);
    let _ = upstream.join();
}

/// `early` (bytes that arrived with the answer's head), then everything from `from`, to `to`.
fn pump(mut from: &TcpStream, mut to: &TcpStream, early: &[u8]) {
    match to.write_all(early).and_then(|()| io::copy(&mut from, &mut to)) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

/// One upgraded connection: the socket, switched to the target's protocol (no timeouts left
/// on it), and the bytes of it that came with the answer's head. A refusal (any status but
/// 101) is the API's error.
pub fn open(target: &Target) -> Result<(TcpStream, Vec<u8>), CliError> {
    let api = &target.api_url;
    let unreachable = |e: io::Error| CliError::local(format!("cannot reach the Ouro API at {api}: {e}"));
    let mut stream = connect(&target.endpoint.addr).map_err(unreachable)?;
    stream.set_read_timeout(Some(HEAD_TIMEOUT)).map_err(unreachable)?;
    stream.set_write_timeout(Some(HEAD_TIMEOUT)).map_err(unreachable)?;
    stream.write_all(request(target).as_bytes()).map_err(unreachable)?;
    let what = if target.protocol == TUNNEL { "tunnel" } else { "attach" };
    let fail = |e: String| CliError::local(format!("{what} via {api}: {e}"));
    let (head, rest) = read_head(&mut stream).map_err(fail)?;
    let head = parse_head(&head).map_err(fail)?;
    if head.status != 101 {
        let body = read_body(&mut stream, &head, rest);
        return Err(api_error(head.status, &String::from_utf8_lossy(&body)));
    }
    stream.set_read_timeout(None).map_err(unreachable)?;
    stream.set_write_timeout(None).map_err(unreachable)?;
    stream.set_nodelay(true).map_err(unreachable)?;
    Ok((stream, rest))
}

fn request(target: &Target) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nUser-Agent: ouro-cli/{}\r\n\
         Connection: Upgrade\r\nUpgrade: {}\r\n\r\n",
        target.path,
        target.endpoint.host,
        target.token,
        env!("CARGO_PKG_VERSION"),
        target.protocol
    )
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

/// Reads up to the end of the answer's head: the head (without the blank line), and what
/// came after it.
fn read_head(stream: &mut impl Read) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = head_end(&buffer) {
            let rest = buffer.split_off(end);
            buffer.truncate(end - 4);
            return Ok((buffer, rest));
        }
        if buffer.len() > MAX_HEAD {
            return Err(format!("the answer's head is longer than {MAX_HEAD} bytes"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the API closed the connection without answering".to_string()),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(format!("no answer within {}s", HEAD_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("cannot read the answer: {e}")),
        }
    }
}

/// Where the body starts: just after the first `\r\n\r\n`, if it is within [`MAX_HEAD`].
fn head_end(buffer: &[u8]) -> Option<usize> {
    let window = &buffer[..buffer.len().min(MAX_HEAD + 4)];
    window.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// What the CLI needs of an answer's head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
}

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") && code.len() == 3 => code.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("the answer is not HTTP/1.1: `{}`", status_line.chars().take(80).collect::<String>()))?;
    let mut parsed = Head { status, content_length: None, chunked: false };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            parsed.content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            parsed.chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(parsed)
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
    fn api_endpoints() {
        let check = |url: &str, addr: &str, host: &str, prefix: &str| {
            let expect = Endpoint { addr: addr.into(), host: host.into(), prefix: prefix.into() };
            assert_eq!(endpoint(url), Ok(expect), "{url}");
        };
        check("http://127.0.0.1:7700", "127.0.0.1:7700", "127.0.0.1:7700", "");
        check("http://127.0.0.1:7700/", "127.0.0.1:7700", "127.0.0.1:7700", "");
        check("HTTP://api.example.com", "api.example.com:80", "api.example.com", "");
        check("http://api.example.com/ouro/", "api.example.com:80", "api.example.com", "/ouro");
        check("http://[::1]:7700", "[::1]:7700", "[::1]:7700", "");
        check("http://[::1]", "[::1]:80", "[::1]", "");
        let https = endpoint("https://api.example.com").unwrap_err();
        assert!(https.contains("http://") && https.contains("https"), "{https}");
        assert!(endpoint("api.example.com").is_err());
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("http:///x").is_err());
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
    fn answer_heads() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ouro-tunnel";
        assert_eq!(parse_head(head), Ok(Head { status: 101, content_length: None, chunked: false }));
        let head = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 42";
        assert_eq!(parse_head(head), Ok(Head { status: 404, content_length: Some(42), chunked: false }));
        let head = b"HTTP/1.0 502 Bad Gateway\r\nTransfer-Encoding: gzip, Chunked";
        assert_eq!(parse_head(head), Ok(Head { status: 502, content_length: None, chunked: true }));
        for bad in [&b""[..], b"SSH-2.0-OpenSSH", b"HTTP/1.1 1O1 Switching", b"HTTP/2 101"] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_are_split_from_early_bytes() {
        let mut answer = &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ouro-tunnel\r\n\r\nR\0\0\0\x08"[..];
        let (head, rest) = read_head(&mut answer).unwrap();
        assert_eq!(head, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ouro-tunnel");
        assert_eq!(rest, b"R\0\0\0\x08");
        let mut cut = &b"HTTP/1.1 101 Switching Protocols\r\n"[..];
        assert!(read_head(&mut cut).unwrap_err().contains("closed"));
        let endless = vec![b'x'; MAX_HEAD + 10];
        assert!(read_head(&mut endless.as_slice()).unwrap_err().contains("longer"));
        let mut late = vec![b'x'; MAX_HEAD];
        late.extend_from_slice(b"\r\n\r\n");
        assert!(read_head(&mut late.as_slice()).is_ok());
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
