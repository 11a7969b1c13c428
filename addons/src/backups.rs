//! PostgreSQL backups: `POST /ouro/resources/<id>/backups` answers `pg_dump -Fc` of the
//! database as its body; `POST /ouro/resources/<id>/restore` runs `pg_restore --clean` of the
//! body (at most [`MAX_RESTORE_BYTES`]) in one transaction. Both spool through a temporary
//! file: a failed dump is a 502 rather than a cut body, and a restore starts only once the
//! whole dump is in. Redis has neither route.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper::body::{Frame, SizeHint};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::AppState;
use crate::body::{SMALL_BODY, check_length, content_length, next_chunk};
use crate::error::{Error, Result};
use crate::kinds::{Kind, PgCredentials, pg_command};
use crate::resources::find_server;

/// The largest dump a restore takes.
pub const MAX_RESTORE_BYTES: u64 = 4 << 30;
/// How long `pg_dump` or `pg_restore` may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a restore's upload may stall between two chunks.
const UPLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a tool's stderr is kept (its last line is the error message).
const STDERR_TAIL: usize = 64 << 10;
/// The chunks a dump is answered in.
const CHUNK: usize = 64 << 10;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ouro/resources/{id}/backups", post(backup).fallback(crate::no_such_route))
        .route("/ouro/resources/{id}/restore", post(restore).fallback(crate::no_such_route))
}

/// The PostgreSQL server `name`'s credentials; 404 when it is gone or this provider is not
/// PostgreSQL's.
async fn pg_server(state: &AppState, name: &str) -> Result<PgCredentials> {
    let vars = find_server(state, name).await?;
    if state.config.kind != Kind::Postgresql {
        return Err(Error::no_such_route());
    }
    PgCredentials::from_vars(name, &vars)
}

async fn backup(State(state): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> Result<Response> {
    let pg = pg_server(&state, &name).await?;
    check_length(&headers, SMALL_BODY)?;
    let internal = |e: std::io::Error| Error::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the dump's file: {e}"));
    let dump = TempFile::new().map_err(internal)?;
    let mut file = dump.file.try_clone().map_err(internal)?;
    let pre = ["-Fc", "--no-owner", "--no-acl"];
    let mut command = pg_command(&state.config, "pg_dump", &name, &pg, "prefer", &pre, &[]);
    command.stdout(Stdio::from(dump.file.try_clone().map_err(internal)?));
    run("pg_dump", command).await?;
    drop(dump); // the name goes; the open file stays until the answer is sent
    let size = file.seek(SeekFrom::End(0)).map_err(internal)?;
    file.seek(SeekFrom::Start(0)).map_err(internal)?;
    let body = FileBody {
        file: tokio::fs::File::from_std(file),
        remaining: size,
        buf: vec![0; CHUNK],
        done: Some(format!("backed up {name}: {size} bytes")),
    };
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::CONTENT_LENGTH, size.to_string())],
        Body::new(body),
    )
        .into_response())
}

async fn restore(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    mut body: Body,
) -> Result<Json<serde_json::Value>> {
    let pg = pg_server(&state, &name).await?;
    if content_length(&headers).is_some_and(|length| length > MAX_RESTORE_BYTES) {
        return Err(too_large());
    }
    let internal = |e: std::io::Error| Error::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the dump's file: {e}"));
    let dump = TempFile::new().map_err(internal)?;
    let mut file = tokio::fs::File::from_std(dump.file.try_clone().map_err(internal)?);
    let mut received = 0u64;
    loop {
        let chunk = match tokio::time::timeout(UPLOAD_IDLE_TIMEOUT, next_chunk(&mut body)).await {
            Err(_) => {
                let stalled = format!("the backup stalled for {} s", UPLOAD_IDLE_TIMEOUT.as_secs());
                return Err(Error::new(StatusCode::REQUEST_TIMEOUT, stalled));
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Error::new(StatusCode::BAD_REQUEST, "the backup ended early")),
            Ok(Some(Ok(chunk))) => chunk,
        };
        received += chunk.len() as u64;
        if received > MAX_RESTORE_BYTES {
            return Err(too_large());
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    drop(file);
    let pre = ["--clean", "--if-exists", "--no-owner", "--no-acl", "--single-transaction", "--exit-on-error"];
    let mut command = pg_command(&state.config, "pg_restore", &name, &pg, "prefer", &pre, &[dump.path.as_os_str()]);
    command.stdout(Stdio::null());
    run("pg_restore", command).await?;
    drop(dump);
    tracing::info!("restored {name}");
    Ok(Json(json!({ "id": name })))
}

fn too_large() -> Error {
    Error::new(StatusCode::PAYLOAD_TOO_LARGE, "the backup is too large")
}

/// Runs a PostgreSQL tool to its end (at most [`TOOL_TIMEOUT`]); a 502 with the last line of
/// its stderr when it fails.
async fn run(tool: &str, mut command: tokio::process::Command) -> Result<()> {
    let failed = |why: String| Error::new(StatusCode::BAD_GATEWAY, format!("{tool} failed: {why}"));
    let mut child = command.stderr(Stdio::piped()).spawn().map_err(|e| failed(e.to_string()))?;
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(TOOL_TIMEOUT, async {
        let (status, tail) = tokio::join!(child.wait(), read_tail(stderr));
        (status, tail)
    })
    .await;
    match finished {
        Err(_) => Err(failed(format!("it ran over {} s", TOOL_TIMEOUT.as_secs()))), // dropped: killed
        Ok((Err(e), _)) => Err(failed(e.to_string())),
        Ok((Ok(status), _)) if status.success() => Ok(()),
        Ok((Ok(_), tail)) => Err(failed(last_line(&tail))),
    }
}

/// The last [`STDERR_TAIL`] bytes of `stderr`.
async fn read_tail(stderr: Option<tokio::process::ChildStderr>) -> Vec<u8> {
    let Some(mut stderr) = stderr else {
        return Vec::new();
    };
    let mut tail = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    tail
}

/// The last non-empty line of a tool's output, or `no output`.
pub fn last_line(output: &[u8]) -> String {
    String::from_utf8_lossy(output).trim().lines().last().unwrap_or("no output").to_string()
}

/// A file of its own in the temporary directory (`TMPDIR`), readable by this user only and
/// removed when dropped.
struct TempFile {
    path: PathBuf,
    file: std::fs::File,
}

impl TempFile {
    fn new() -> std::io::Result<TempFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::env::temp_dir();
        let mut tries = 0;
        loop {
            let path = dir.join(format!("ouro-addons-{:016x}", rand::random::<u64>()));
            match std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => return Ok(TempFile { path, file }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A dump as a response body, read from its (unlinked) file in [`CHUNK`]s; logs `done` once
/// all of it is read.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
    done: Option<String>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            if let Some(done) = this.done.take() {
                tracing::info!("{done}");
            }
            return Poll::Ready(None);
        }
        let want = this.buf.len().min(usize::try_from(this.remaining).unwrap_or(usize::MAX));
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                Poll::Ready(Some(Err(std::io::Error::other("the dump's file ended early"))))
            }
            Poll::Ready(Ok(())) => {
                let data = Bytes::copy_from_slice(read.filled());
                this.remaining -= data.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 && self.done.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_a_tool_is_its_error() {
        let stderr = b"pg_dump: error: connection failed\npg_dump: detail: password authentication failed\n\n";
        assert_eq!(last_line(stderr), "pg_dump: detail: password authentication failed");
        assert_eq!(last_line(b"  \n"), "no output");
        assert_eq!(last_line(b"bad \xff byte"), "bad \u{fffd} byte");
    }

    #[test]
    fn a_temporary_file_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let file = TempFile::new().unwrap();
        let path = file.path.clone();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        drop(file);
        assert!(!path.exists());
    }
}
