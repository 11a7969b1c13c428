//! HTTP Basic on every route but `/health`: user `<kind>`, the provider's contract password
//! (`OURO_PROVIDER_PASSWORD`), both compared in constant time.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::Error;

/// Middleware: a request without the right credentials is answered 401.
pub async fn require(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let given = request.headers().get(AUTHORIZATION).map(|v| v.as_bytes()).unwrap_or_default();
    if !authorized(given, state.config.kind.as_str(), &state.config.provider_password) {
        return Error::new(StatusCode::UNAUTHORIZED, "wrong provider credentials").into_response();
    }
    next.run(request).await
}

/// Whether the `Authorization` header's value carries user `user` and password `expected`.
/// An empty `expected` lets nobody in.
pub fn authorized(header: &[u8], user: &str, expected: &str) -> bool {
    let Some((given_user, given_password)) = basic_credentials(header) else {
        return false;
    };
    let same = given_user.as_bytes().ct_eq(user.as_bytes()) & given_password.as_bytes().ct_eq(expected.as_bytes());
    !expected.is_empty() && bool::from(same)
}

/// `Basic base64(user:password)` → (user, password); the password is everything after the
/// first `:` (and empty without one). None when it is not Basic, not base64 or not UTF-8.
pub fn basic_credentials(header: &[u8]) -> Option<(String, String)> {
    let encoded = header.strip_prefix(b"Basic ")?;
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    match decoded.split_once(':') {
        Some((user, password)) => Some((user.to_string(), password.to_string())),
        None => Some((decoded, String::new())),
    }
}

/// Standard base64 with its `=` padding (RFC 4648 §4); None for anything else.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if input.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let quads = input.len() / 4;
    for (i, quad) in input.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && i + 1 != quads) {
            return None;
        }
        let mut bits = 0u32;
        for &c in &quad[..4 - padding] {
            bits = bits << 6 | sextet(c)?;
        }
        bits <<= 6 * padding as u32;
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> Vec<u8> {
        format!("Basic {}", encode(credentials.as_bytes())).into_bytes()
    }

    /// Base64 for the tests' headers, written independently of the decoder.
    fn encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.len();
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let idx = [b[0] >> 2, (b[0] & 3) << 4 | b[1] >> 4, (b[1] & 15) << 2 | b[2] >> 6, b[2] & 63];
            for (i, &x) in idx.iter().enumerate() {
                out.push(if i <= n { ALPHABET[x as usize] as char } else { '=' });
            }
        }
        out
    }

    #[test]
    fn base64_decodes_every_padding() {
        for text in ["", "a", "ab", "abc", "abcd", "postgresql:s3cr3t", "user:pa:ss", "ünïcödé"] {
            assert_eq!(base64_decode(encode(text.as_bytes()).as_bytes()).unwrap(), text.as_bytes(), "{text}");
        }
        assert_eq!(base64_decode(b"cmVkaXM6cA==").unwrap(), b"redis:p");
    }

    #[test]
    fn base64_refuses_what_is_not_base64() {
        for bad in ["cmVkaXM6cA", "cmVkaXM6c===", "cm=kaXM6", "cmVk aXM6", "cmVkaXM6cA==cmVk", "****", "cmVkaXM6cA=\n"]
        {
            assert_eq!(base64_decode(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_right_user_and_password_are_let_in() {
        assert!(authorized(&basic("postgresql:s3cr3t"), "postgresql", "s3cr3t"));
        assert!(authorized(&basic("redis:a:b"), "redis", "a:b"), "the password runs to the end");
    }

    #[test]
    fn a_wrong_user_or_password_is_refused() {
        assert!(!authorized(&basic("postgresql:wrong"), "postgresql", "s3cr3t"));
        assert!(!authorized(&basic("postgresql:s3cr3"), "postgresql", "s3cr3t"));
        assert!(!authorized(&basic("postgresql:s3cr3tt"), "postgresql", "s3cr3t"));
        assert!(!authorized(&basic("redis:s3cr3t"), "postgresql", "s3cr3t"), "the user is the kind");
        assert!(!authorized(&basic("s3cr3t"), "postgresql", "s3cr3t"), "no colon: no password");
        assert!(!authorized(&basic("postgresql:"), "postgresql", ""), "no password set: nobody");
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            &b""[..],
            b"Basic",
            b"Bearer cG9zdGdyZXNxbDpzM2NyM3Q=",
            b"basic cG9zdGdyZXNxbDpzM2NyM3Q=",
            b"cG9zdGdyZXNxbDpzM2NyM3Q=",
            b"Basic cG9zdGdyZXNxbDpzM2NyM3Q",
            b"Basic not base64!",
        ] {
            assert_eq!(basic_credentials(header), None, "{}", String::from_utf8_lossy(header));
            assert!(!authorized(header, "postgresql", "s3cr3t"));
        }
        assert_eq!(basic_credentials(b"Basic "), Some((String::new(), String::new())));
        assert!(!authorized(b"Basic ", "postgresql", "s3cr3t"));
        assert_eq!(
            basic_credentials(b"Basic cG9zdGdyZXNxbDpzM2NyM3Q="),
            Some(("postgresql".to_string(), "s3cr3t".to_string()))
        );
    }

    #[test]
    fn credentials_that_are_not_utf8_are_refused() {
        // base64 of b"postgresql:\xff\xfe": valid base64, not UTF-8.
        let header = format!("Basic {}", encode(b"postgresql:\xff\xfe"));
        assert_eq!(basic_credentials(header.as_bytes()), None);
        assert!(!authorized(header.as_bytes(), "postgresql", "\u{fffd}\u{fffd}"));
        // A header value that is not UTF-8 itself.
        assert!(!authorized(b"Basic \xff\xfe", "postgresql", "s3cr3t"));
    }
}
