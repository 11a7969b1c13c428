//! The client side of an HTTP/1.1 upgrade (`Connection: Upgrade`, answered `101 Switching
//! Protocols`), written by hand on a plain TCP connection by the three that open one: the CLI
//! (`ouro pg:psql`'s tunnels, `ouro run`), the dyno runner (an attached one-off's half) and the
//! API (a tunnel to an add-on provider). Without I/O: each reads its socket its own way (std
//! or tokio) and feeds the bytes to a [`HeadReader`], which finds the answer's head, parses it
//! and hands back the bytes that came after it (the upgraded protocol's first ones).

use std::fmt;

/// The answer's head (status line and headers) may not be longer.
pub const MAX_HEAD: usize = 16 * 1024;

/// Where to open an upgrade: from an `http://host[:port][/prefix]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to (port 80 when the URL names none).
    pub addr: String,
    /// The `Host` header.
    pub host: String,
    /// A path the server is mounted under (`/ouro`), or empty.
    pub prefix: String,
}

/// Why a URL is no [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointError {
    /// `https://`: upgrades are written on plain TCP.
    Https,
    /// Another scheme, or none.
    NotHttp,
    /// `http:///path`.
    NoHost,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointError::Https => "is https://, and upgrades are opened over http:// only",
            EndpointError::NotHttp => "is not an http:// URL",
            EndpointError::NoHost => "names no host",
        })
    }
}

impl std::error::Error for EndpointError {}

/// The endpoint of `url`, `http://` only (any case); user info is dropped.
pub fn endpoint(url: &str) -> Result<Endpoint, EndpointError> {
    let (scheme, rest) = url.split_once("://").ok_or(EndpointError::NotHttp)?;
    if scheme.eq_ignore_ascii_case("https") {
        return Err(EndpointError::Https);
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(EndpointError::NotHttp);
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end].rsplit_once('@').map_or(&rest[..end], |(_, host)| host);
    if host.is_empty() {
        return Err(EndpointError::NoHost);
    }
    let prefix = rest[end..].split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    let has_port = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, after)| after.starts_with(':')),
        None => host.contains(':'),
    };
    let addr = if has_port { host.to_string() } else { format!("{host}:80") };
    Ok(Endpoint { addr, host: host.to_string(), prefix: prefix.to_string() })
}

/// The upgrade request for `path` (under the endpoint's prefix): `authorization` is the
/// header's whole value (`Bearer …`, `Basic …`), `protocol` the `Upgrade` token.
pub fn request(endpoint: &Endpoint, path: &str, authorization: &str, user_agent: &str, protocol: &str) -> String {
    format!(
        "GET {}{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {authorization}\r\nUser-Agent: {user_agent}\r\n\
         Connection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n",
        endpoint.prefix, endpoint.host,
    )
}

/// What a client needs of an answer's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
}

/// An answer's head, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub head: Head,
    /// The bytes that came after the head: the upgraded protocol's first ones after a 101,
    /// the start of the error's body otherwise.
    pub early: Vec<u8>,
}

/// Collects an answer's bytes until its head is complete.
#[derive(Debug, Default)]
pub struct HeadReader {
    buffer: Vec<u8>,
}

impl HeadReader {
    /// Adds bytes read from the connection: `Some` once the head is complete (and parsed),
    /// `None` while it is not; an error for a head over [`MAX_HEAD`] or not HTTP/1.x.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Option<Answer>, String> {
        self.buffer.extend_from_slice(bytes);
        let window = &self.buffer[..self.buffer.len().min(MAX_HEAD + 4)];
        match window.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(at) => {
                let early = self.buffer.split_off(at + 4);
                let head = parse_head(&self.buffer[..at])?;
                Ok(Some(Answer { head, early }))
            }
            None if self.buffer.len() > MAX_HEAD => Err(format!("the answer's head is longer than {MAX_HEAD} bytes")),
            None => Ok(None),
        }
    }

    /// What to say when the connection ends before the head does.
    pub fn closed_early() -> String {
        "the connection closed before an answer".to_string()
    }
}

/// The status and body framing of an HTTP/1.x answer head (without its blank line).
pub fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code))
            if version.starts_with("HTTP/1.") && code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()) =>
        {
            code.parse().ok()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_an_address_a_host_and_a_prefix() {
        let check = |url: &str, expect: Result<(&str, &str, &str), EndpointError>| {
            let expect = expect.map(|(addr, host, prefix)| Endpoint {
                addr: addr.into(),
                host: host.into(),
                prefix: prefix.into(),
            });
            assert_eq!(endpoint(url), expect, "{url}");
        };
        check("http://127.0.0.1:7700", Ok(("127.0.0.1:7700", "127.0.0.1:7700", "")));
        check("http://127.0.0.1:7700/", Ok(("127.0.0.1:7700", "127.0.0.1:7700", "")));
        check("HTTP://api.example.com/ouro/", Ok(("api.example.com:80", "api.example.com", "/ouro")));
        check("http://user:pw@api.internal", Ok(("api.internal:80", "api.internal", "")));
        check("http://[::1]:7700", Ok(("[::1]:7700", "[::1]:7700", "")));
        check("http://[::1]/x?y", Ok(("[::1]:80", "[::1]", "/x")));
        check("https://api.example", Err(EndpointError::Https));
        check("127.0.0.1:7700", Err(EndpointError::NotHttp));
        check("ftp://x", Err(EndpointError::NotHttp));
        check("http:///path", Err(EndpointError::NoHost));
    }

    #[test]
    fn the_request_asks_for_the_upgrade() {
        let endpoint = endpoint("http://127.0.0.1:7700/ouro").unwrap();
        let request =
            request(&endpoint, "/runner/attach/shop/run.3", "Bearer ouro_secret", "ouro-test/1", "ouro-attach");
        assert!(
            request.starts_with("GET /ouro/runner/attach/shop/run.3 HTTP/1.1\r\nHost: 127.0.0.1:7700\r\n"),
            "{request}"
        );
        for header in ["Authorization: Bearer ouro_secret\r\n", "Connection: Upgrade\r\n", "Upgrade: ouro-attach\r\n"] {
            assert!(request.contains(header), "{header} in {request}");
        }
        assert!(request.ends_with("User-Agent: ouro-test/1\r\nConnection: Upgrade\r\nUpgrade: ouro-attach\r\n\r\n"));
    }

    #[test]
    fn answer_heads() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: ouro-tunnel";
        assert_eq!(parse_head(head), Ok(Head { status: 101, content_length: None, chunked: false }));
        let head = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 42";
        assert_eq!(parse_head(head), Ok(Head { status: 404, content_length: Some(42), chunked: false }));
        let head = b"HTTP/1.0 502 Bad Gateway\r\nTransfer-Encoding: gzip, Chunked";
        assert_eq!(parse_head(head), Ok(Head { status: 502, content_length: None, chunked: true }));
        assert_eq!(parse_head(b"HTTP/1.1 101").map(|h| h.status), Ok(101));
        for bad in [&b""[..], b"SSH-2.0-OpenSSH", b"HTTP/1.1 1O1 Switching", b"HTTP/2 101", b"HTTP/1.1 +99 x"] {
            let error = parse_head(bad).unwrap_err();
            assert!(error.contains("not HTTP/1.1"), "{}: {error}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn heads_are_split_from_the_bytes_after_them_in_any_pieces() {
        let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ouro-tunnel\r\n\r\nR\0\0\0\x08";
        for piece in [1, 3, 7, answer.len()] {
            let mut reader = HeadReader::default();
            let mut chunks = answer.chunks(piece);
            let got = chunks.by_ref().find_map(|chunk| reader.push(chunk).unwrap()).expect("a head");
            assert_eq!(got.head.status, 101);
            // What came with the head's last piece, then the rest of the stream: the tunnel's bytes, whole.
            let rest: Vec<u8> = got.early.iter().copied().chain(chunks.flatten().copied()).collect();
            assert_eq!(rest, b"R\0\0\0\x08", "pieces of {piece}");
        }
        let mut reader = HeadReader::default();
        assert_eq!(reader.push(b"HTTP/1.1 101 Switching Protocols\r\n"), Ok(None));
        let endless = vec![b'x'; MAX_HEAD + 10];
        assert!(HeadReader::default().push(&endless).unwrap_err().contains("longer"));
        let mut late = vec![b'x'; MAX_HEAD];
        late.extend_from_slice(b"\r\n\r\n");
        // Within the bound, but no HTTP: said as such.
        assert!(HeadReader::default().push(&late).unwrap_err().contains("not HTTP/1.1"));
    }
}
