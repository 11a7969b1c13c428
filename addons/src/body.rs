//! Request bodies, read with a bound: small JSON bodies into memory, a restore's dump chunk by
//! chunk.

use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_LENGTH};
use hyper::body::Body as _;

use crate::error::Error;

/// The bound of every body but a restore's.
pub const SMALL_BODY: u64 = 1 << 16;

/// The `Content-Length` the client announced (None when absent or not a number).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// 413 when the announced length is over `limit`, before reading anything.
pub fn check_length(headers: &HeaderMap, limit: u64) -> Result<(), Error> {
    match content_length(headers) {
        Some(length) if length > limit => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// The whole body, 413 once it is over `limit` bytes (announced or not).
pub async fn read_capped(headers: &HeaderMap, mut body: Body, limit: u64) -> Result<Vec<u8>, Error> {
    check_length(headers, limit)?;
    let mut data = Vec::new();
    while let Some(chunk) = next_chunk(&mut body).await {
        let chunk =
            chunk.map_err(|e| Error::new(StatusCode::BAD_REQUEST, format!("the body could not be read: {e}")))?;
        if (data.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// The next chunk of data of `body` (trailers are skipped); None at its end.
pub async fn next_chunk(body: &mut Body) -> Option<Result<Bytes, axum::Error>> {
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

fn too_large(limit: u64) -> Error {
    Error::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes"))
}
