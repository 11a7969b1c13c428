//! Drains: an app's lines forwarded to a syslog server (RFC 5424 over TCP) or an HTTP(S)
//! endpoint (logplex's batches), from a bounded queue, by one task per drain.

use std::fmt;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ouro_types::egress::Cidr;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use crate::overflow::{LossyReceiver, LossySender, lossy_channel};
use crate::{Error, LogLine, Result, octet_framed, rfc5424};

/// Lines queued for one drain; past that, lines are dropped (counted, then an L10 line).
pub const DRAIN_QUEUE: usize = 10_000;

/// Lines in one HTTP POST (and in one TCP write) at most.
pub const HTTP_BATCH: usize = 100;

/// Times a failed HTTP batch is sent again before it is dropped.
pub const HTTP_RETRIES: u32 = 3;

/// The limit on every connect, write and HTTP request.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const MAX_URL_CHARS: usize = 2000;
const ACCEPTED: &str = "a drain URL is syslog+tcp://host:port, http://host/path or https://host/path";

/// Where a drain sends lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainUrl {
    /// `syslog+tcp://host:port`: RFC 5424 messages, octet-counted, on one TCP connection.
    SyslogTcp { host: String, port: u16 },
    /// `http://…` or `https://…` (credentials in the URL are sent as HTTP Basic auth).
    Http { url: String },
}

/// A running drain; dropping it stops its task (lines still queued are lost).
pub struct Drain {
    url: DrainUrl,
    tx: LossySender,
    counters: Arc<Counters>,
    task: AbortHandle,
}

impl DrainUrl {
    pub fn parse(url: &str) -> Result<DrainUrl> {
        if url.chars().count() > MAX_URL_CHARS {
            return Err(bad("is longer than 2,000 characters"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains spaces or control characters"));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(&format!("`{url}` has no scheme")));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "syslog+tcp" => parse_syslog(rest),
            "http" | "https" => parse_http(url, rest),
            _ => Err(bad(&format!("scheme `{scheme}` is not supported"))),
        }
    }
}

fn bad(problem: &str) -> Error {
    Error::DrainUrl(format!("drain URL {problem}: {ACCEPTED}"))
}

fn parse_syslog(rest: &str) -> Result<DrainUrl> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(bad("has a path, query or fragment, which syslog has no use for"));
    }
    if authority.contains('@') {
        return Err(bad("has credentials (user@), which syslog cannot send"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| bad("has no port"))?;
    if !valid_host(host) {
        return Err(bad(&format!("has an invalid host `{host}`")));
    }
    let port = port.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(|| bad("has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok(DrainUrl::SyslogTcp { host, port })
}

fn parse_http(url: &str, rest: &str) -> Result<DrainUrl> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port);
    let host = match split_host_port(host_port) {
        Some((host, port)) => {
            if port.parse::<u16>().ok().is_none_or(|port| port == 0) {
                return Err(bad("has an invalid port"));
            }
            host
        }
        None => host_port,
    };
    if !valid_host(host) {
        return Err(bad(&format!("has an invalid host `{host}`")));
    }
    // What ureq will send it to must agree.
    if url.parse::<ureq::http::Uri>().is_err() {
        return Err(bad("is not a valid URL"));
    }
    Ok(DrainUrl::Http { url: url.to_string() })
}

/// `host:port` or `[v6]:port`; `None` without a port.
fn split_host_port(authority: &str) -> Option<(&str, &str)> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let port = authority[end + 1..].strip_prefix(':')?;
        return Some((&authority[..=end], port));
    }
    authority.rsplit_once(':')
}

/// A DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        }
    }
}

impl fmt::Display for DrainUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainUrl::SyslogTcp { host, port } if host.contains(':') => write!(f, "syslog+tcp://[{host}]:{port}"),
            DrainUrl::SyslogTcp { host, port } => write!(f, "syslog+tcp://{host}:{port}"),
            DrainUrl::Http { url } => f.write_str(url),
        }
    }
}

impl DrainUrl {
    /// The host and port the drain connects to.
    fn host_port(&self) -> Option<(String, u16)> {
        match self {
            DrainUrl::SyslogTcp { host, port } => Some((host.clone(), *port)),
            DrainUrl::Http { url } => {
                let uri = url.parse::<ureq::http::Uri>().ok()?;
                let https = uri.scheme_str() == Some("https");
                let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_string();
                Some((host, uri.port_u16().unwrap_or(if https { 443 } else { 80 })))
            }
        }
    }

    /// Why the egress policy keeps the platform from sending here (see
    /// `ouro_types::egress`), judged on the addresses the host resolves to now; `None` if it
    /// may, or if the name does not resolve (yet: it is judged again at each connection).
    pub async fn refused(&self, allow: &[Cidr]) -> Option<String> {
        let (host, port) = self.host_port()?;
        let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await.ok()?.collect();
        let refused = addresses.iter().find(|a| !ouro_types::egress::permits(a.ip(), allow))?;
        Some(format!(
            "{host} is {}, which log drains may not reach (private, loopback and link-local addresses are the platform's; an operator may allow a range with OURO_EGRESS_ALLOW)",
            refused.ip()
        ))
    }
}

impl Drain {
    /// Starts forwarding `app`'s lines to `url` on the current tokio runtime (panics outside one),
    /// within the egress policy: `allow` are the private ranges an operator opened.
    pub fn spawn(url: DrainUrl, app: &str, allow: Arc<[Cidr]>) -> Drain {
        let (tx, rx) = lossy_channel(DRAIN_QUEUE, app);
        let counters = Arc::new(Counters::default());
        let task = match &url {
            DrainUrl::SyslogTcp { host, port } => {
                tokio::spawn(forward_syslog(host.clone(), *port, rx, counters.clone(), allow)).abort_handle()
            }
            DrainUrl::Http { .. } => {
                tokio::spawn(forward_http(url.clone(), rx, counters.clone(), allow)).abort_handle()
            }
        };
        Drain { url, tx, counters, task }
    }

    /// Queues a copy of `line` (bounded as [`LogLine::new`] does); never waits. When the queue
    /// is full the line is dropped and counted.
    pub fn send(&self, line: &LogLine) {
        let mut line = line.clone();
        line.bound();
        self.tx.send(line);
    }

    pub fn url(&self) -> &DrainUrl {
        &self.url
    }

    /// Lines delivered: written to the syslog connection, or in a POST answered with 2xx.
    pub fn sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// Lines lost: dropped from a full queue, or in an HTTP batch that failed every retry.
    pub fn dropped(&self) -> u64 {
        self.tx.dropped() + self.counters.failed.load(Ordering::Relaxed)
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
}

/// Up to [`HTTP_BATCH`] lines: the next one (waiting for it) and those queued behind it.
async fn next_batch(rx: &mut LossyReceiver) -> Option<Vec<LogLine>> {
    let mut batch = vec![rx.next().await?];
    while batch.len() < HTTP_BATCH {
        match rx.try_next() {
            Some(Some(line)) => batch.push(line),
            _ => break,
        }
    }
    Some(batch)
}

fn framed(batch: &[LogLine]) -> String {
    batch.iter().map(|line| octet_framed(&rfc5424(line))).collect()
}

/// 0.5 s, 1 s, 2 s … 30 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(BACKOFF_FIRST)
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}

async fn forward_syslog(host: String, port: u16, mut rx: LossyReceiver, counters: Arc<Counters>, allow: Arc<[Cidr]>) {
    let mut connection: Option<Connection> = None;
    let mut backoff = Backoff::new();
    while let Some(batch) = next_batch(&mut rx).await {
        let bytes = framed(&batch);
        // Until written: a syslog server cannot refuse a message, only go away.
        loop {
            if connection.as_ref().is_some_and(Connection::closed_by_peer) {
                connection = None;
            }
            if connection.is_none() {
                match connect(&host, port, &allow).await {
                    Ok(c) => connection = Some(c),
                    Err(e) => {
                        tracing::warn!(%host, port, "log drain: connect failed: {e}");
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            let Some(c) = connection.as_mut() else { continue };
            match tokio::time::timeout(IO_TIMEOUT, c.stream.write_all(bytes.as_bytes())).await {
                Ok(Ok(())) => {
                    counters.sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    backoff = Backoff::new();
                    break;
                }
                Ok(Err(e)) => tracing::warn!(%host, port, "log drain: write failed: {e}"),
                Err(_) => tracing::warn!(%host, port, "log drain: write timed out"),
            }
            connection = None;
            backoff.wait().await;
        }
    }
}

/// The stream, and a second handle on its socket to see, without the reactor, whether the
/// server closed it (a write to a closed connection succeeds once and is lost).
struct Connection {
    stream: TcpStream,
    probe: std::net::TcpStream,
}

/// Connects to the first address of `host` the egress policy permits (resolved here, so that a
/// name that later resolves to a private address is refused at that connection).
async fn connect(host: &str, port: u16, allow: &[Cidr]) -> std::io::Result<Connection> {
    let resolved = tokio::net::lookup_host((host, port)).await?;
    let permitted: Vec<std::net::SocketAddr> =
        resolved.filter(|address| ouro_types::egress::permits(address.ip(), allow)).collect();
    if permitted.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{host} resolves to no address the egress policy permits"),
        ));
    }
    let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(&permitted[..]))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let stream = stream.into_std()?;
    let probe = stream.try_clone()?;
    probe.set_nonblocking(true)?;
    Ok(Connection { stream: TcpStream::from_std(stream)?, probe })
}

impl Connection {
    /// The server sent EOF or reset (anything it sends otherwise is read and ignored).
    fn closed_by_peer(&self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match (&self.probe).read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

async fn forward_http(drain: DrainUrl, mut rx: LossyReceiver, counters: Arc<Counters>, allow: Arc<[Cidr]>) {
    let DrainUrl::Http { url } = &drain else { return };
    let url = url.clone();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(IO_TIMEOUT))
        .user_agent("ouro-logs")
        .max_redirects(0)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    // Log the host only: the URL may carry a token.
    let host = url.parse::<ureq::http::Uri>().ok().and_then(|uri| uri.host().map(str::to_string)).unwrap_or_default();
    while let Some(batch) = next_batch(&mut rx).await {
        let body: Arc<[u8]> = framed(&batch).into_bytes().into();
        let count = batch.len();
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            // Judged before each POST (ureq resolves the name again: a window of moments).
            if let Some(why) = drain.refused(&allow).await {
                tracing::warn!(%host, "log drain: dropping {count} lines: {why}");
                counters.failed.fetch_add(count as u64, Ordering::Relaxed);
                break;
            }
            let (agent, url, body) = (agent.clone(), url.clone(), body.clone());
            let result = tokio::task::spawn_blocking(move || post(&agent, &url, &body, count))
                .await
                .unwrap_or_else(|e| Err(format!("the POST panicked: {e}")));
            match result {
                Ok(()) => {
                    counters.sent.fetch_add(count as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt < HTTP_RETRIES => {
                    tracing::warn!(%host, attempt, "log drain: POST failed, will retry: {e}");
                    attempt += 1;
                    backoff.wait().await;
                }
                Err(e) => {
                    tracing::warn!(%host, "log drain: POST failed, dropping {count} lines: {e}");
                    counters.failed.fetch_add(count as u64, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// One logplex POST: the framed messages, their count, the logplex content type.
fn post(agent: &ureq::Agent, url: &str, body: &[u8], count: usize) -> Result<(), String> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/logplex-1")
        .header("Logplex-Msg-Count", count.to_string())
        .send(body)
        .map_err(|e| e.to_string())?;
    // Read a little of the answer so the connection can be reused.
    let _ = response.body_mut().with_config().limit(64 * 1024).read_to_vec();
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(format!("answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls() {
        let check = |url: &str, expect: std::result::Result<DrainUrl, &str>| {
            let got = DrainUrl::parse(url);
            match expect {
                Ok(drain) => assert_eq!(got, Ok(drain), "{url}"),
                Err(part) => {
                    let error = got.expect_err(url).to_string();
                    assert!(error.contains(part), "{url}: {error}");
                    assert!(error.contains(ACCEPTED) && !error.contains('\n'), "{url}: {error}");
                }
            }
        };
        let syslog = |host: &str, port| Ok(DrainUrl::SyslogTcp { host: host.into(), port });
        let http = |url: &str| Ok(DrainUrl::Http { url: url.into() });
        check("syslog+tcp://logs.example.com:514", syslog("logs.example.com", 514));
        check("SYSLOG+TCP://10.0.0.1:6514/", syslog("10.0.0.1", 6514));
        check("syslog+tcp://[::1]:514", syslog("::1", 514));
        check("http://logs.example.com/ingest", http("http://logs.example.com/ingest"));
        check("https://user:token@logs.example.com:8443/x?y=z", http("https://user:token@logs.example.com:8443/x?y=z"));
        check("https://[2001:db8::1]/logs", http("https://[2001:db8::1]/logs"));

        check("syslog+tcp://logs.example.com", Err("has no port"));
        check("syslog+tcp://[::1]", Err("has no port"));
        check("syslog+tcp://logs.example.com:", Err("invalid port"));
        check("syslog+tcp://logs.example.com:0", Err("invalid port"));
        check("syslog+tcp://logs.example.com:70000", Err("invalid port"));
        check("syslog+tcp://user:pw@logs.example.com:514", Err("credentials"));
        check("syslog+tcp://logs.example.com:514/path", Err("path"));
        check("syslog+tcp://:514", Err("invalid host"));
        check("syslog+tcp://bad!host:514", Err("invalid host"));
        check("syslog+tls://logs.example.com:6514", Err("scheme `syslog+tls` is not supported"));
        check("syslog://logs.example.com:514", Err("scheme `syslog` is not supported"));
        check("ftp://example.com/", Err("not supported"));
        check("logs.example.com:514", Err("no scheme"));
        check("", Err("no scheme"));
        check("http://", Err("invalid host"));
        check("https:///path", Err("invalid host"));
        check("http://example.com:notaport/", Err("invalid port"));
        check("http://exa mple.com/", Err("contains spaces"));
        check("http://example.com/\nInjected: header", Err("control characters"));
        check(&format!("https://example.com/{}", "a".repeat(2000)), Err("longer than 2,000"));
        assert!(DrainUrl::parse(&format!("https://example.com/{}", "a".repeat(1980))).is_ok());
    }

    #[test]
    fn drain_urls_display_as_given() {
        for url in ["syslog+tcp://logs.example.com:514", "syslog+tcp://[::1]:514", "https://u:p@example.com/x"] {
            assert_eq!(DrainUrl::parse(url).unwrap().to_string(), url);
        }
    }
}
