//! Git's smart HTTP protocol at `/{app}.git`: `git push` (receive-pack) and `git fetch` /
//! `git clone` (upload-pack), served by the real `git` binary in `--stateless-rpc` mode.
//!
//! The request body streams into git's stdin (gunzipped when git sent it compressed) and git's
//! stdout streams back as the response: a pack is never held in memory. Pushes to one app run
//! one at a time. A push's `pre-receive` hook builds it while git waits (see [`crate::hook`]):
//! the build's log reaches the pusher as `remote:` lines, and a failed build refuses the push.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;

use crate::apps::AppRow;
use crate::apps::find_app;
use crate::auth::{AuditApp, User};
use crate::git::{clean_git, ensure_repo, repo_path};
use crate::{ApiError, AppState, Error};

/// Largest request body a push or fetch may send (after gunzip).
const MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
/// How long one `git receive-pack` or `git upload-pack` may run.
const GIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/{repo}/info/refs", get(info_refs))
        .route("/{repo}/git-receive-pack", post(receive_pack))
        .route("/{repo}/git-upload-pack", post(upload_pack))
}

#[derive(serde::Deserialize)]
struct ServiceQuery {
    service: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    Receive,
    Upload,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Receive => "git-receive-pack",
            Service::Upload => "git-upload-pack",
        }
    }

    /// The git subcommand.
    fn command(self) -> &'static str {
        match self {
            Service::Receive => "receive-pack",
            Service::Upload => "upload-pack",
        }
    }
}

/// The app of a `<name>.git` path segment, if the user may use it.
async fn repo_app(state: &AppState, user: &User, segment: &str) -> Result<AppRow, ApiError> {
    let Some(name) = segment.strip_suffix(".git") else {
        return Err(ApiError::not_found("no such resource; an app's git repository is at /<app>.git"));
    };
    find_app(state, user, name).await
}

async fn info_refs(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(segment): Path<String>,
    Query(query): Query<ServiceQuery>,
) -> Result<Response, ApiError> {
    let app = repo_app(&state, &user, &segment).await?;
    let service = match query.service.as_deref() {
        Some("git-receive-pack") => Service::Receive,
        Some("git-upload-pack") => Service::Upload,
        _ => {
            return Err(ApiError::forbidden(
                "only git's smart HTTP protocol is served: use git 1.6.6 or newer (`?service=git-receive-pack`)",
            ));
        }
    };
    let repo = repo_path(&state, &app.id);
    {
        let lock = state.pushes.of(&app.id);
        let _guard = lock.lock().await;
        ensure_repo(&repo, &state.settings.hook_exe).await?;
    }
    let mut command = clean_git();
    command.args([service.command(), "--stateless-rpc", "--advertise-refs"]).arg(&repo).stdin(Stdio::null());
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .map_err(|_| Error::Io(std::io::Error::other("git advertise-refs timed out")))?
        .map_err(Error::Io)?;
    if !output.status.success() {
        tracing::error!(app = %app.name, stderr = %String::from_utf8_lossy(&output.stderr), "git advertise-refs failed");
        return Err(Error::Io(std::io::Error::other("git advertise-refs failed")).into());
    }
    let mut body = pkt_line(&format!("# service={}\n", service.name()));
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&output.stdout);
    Ok((
        [
            (header::CONTENT_TYPE, format!("application/x-{}-advertisement", service.name())),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        body,
    )
        .into_response())
}

async fn receive_pack(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    rpc(state, user, segment, headers, body, Service::Receive).await
}

async fn upload_pack(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    rpc(state, user, segment, headers, body, Service::Upload).await
}

/// One stateless-rpc round: body → git's stdin, git's stdout → response.
async fn rpc(
    state: AppState,
    user: User,
    segment: String,
    headers: HeaderMap,
    body: Body,
    service: Service,
) -> Result<Response, ApiError> {
    let app = repo_app(&state, &user, &segment).await?;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip"));
    let repo = repo_path(&state, &app.id);
    // A push holds its app's lock until its build has ended; a fetch needs none.
    let guard = match service {
        Service::Receive => {
            let guard = state.pushes.of(&app.id).lock_owned().await;
            ensure_repo(&repo, &state.settings.hook_exe).await?;
            Some(guard)
        }
        Service::Upload => {
            if !tokio::fs::try_exists(repo.join("HEAD")).await.map_err(Error::Io)? {
                return Err(ApiError::not_found(format!("app `{}` has no pushed code yet", app.name)));
            }
            None
        }
    };
    let mut command = clean_git();
    // The push's hook calls back over loopback with this push's secret.
    let session = match service {
        Service::Receive => {
            let (id, secret, session) = state.push_sessions.open(&app.id, &user.email);
            command
                .env("OURO_PUSH_URL", format!("{}/internal/pushes/{id}/build", state.settings.internal_url))
                .env("OURO_PUSH_SECRET", secret);
            Some(session)
        }
        Service::Upload => None,
    };
    command
        .args([service.command(), "--stateless-rpc"])
        .arg(&repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(Error::Io)?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let app_name = app.name.clone();
    let work = async move {
        let collect_stderr = async {
            let mut text = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut text).await;
            // Keep draining so git never blocks on a full pipe.
            let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
            String::from_utf8_lossy(&text).into_owned()
        };
        let (fed, (), stderr_text) = tokio::join!(feed(body, gzip, stdin), pump(stdout, &tx), collect_stderr);
        let status = child.wait().await;
        if let Err(e) = &fed {
            tracing::warn!(app = %app_name, error = %e, "git request body not fully delivered");
        }
        if !matches!(&status, Ok(status) if status.success()) {
            tracing::warn!(app = %app_name, ?status, stderr = %stderr_text.trim(), "git {} failed", service.command());
        }
        drop(session);
        drop(guard);
    };
    let app_name = app_name_for_log(&segment);
    tokio::spawn(async move {
        if tokio::time::timeout(GIT_TIMEOUT, work).await.is_err() {
            tracing::warn!(app = %app_name, "git {} took longer than {GIT_TIMEOUT:?}; killed", service.command());
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let mut response = (
        [
            (header::CONTENT_TYPE, format!("application/x-{}-result", service.name())),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response();
    response.extensions_mut().insert(AuditApp(segment.trim_end_matches(".git").to_string()));
    Ok(response)
}

fn app_name_for_log(segment: &str) -> String {
    segment.trim_end_matches(".git").to_string()
}

fn too_large() -> ApiError {
    ApiError::too_large(format!("git request bodies are limited to {} MiB", MAX_BODY_BYTES / (1024 * 1024)))
}

/// Streams the request body into git's stdin, gunzipping it first if asked; at most
/// [`MAX_BODY_BYTES`] go in. Dropping stdin (on return) tells git the request ended.
async fn feed(body: Body, gzip: bool, mut stdin: ChildStdin) -> std::io::Result<()> {
    let mut decoder = gzip.then(|| flate2::write::GzDecoder::new(Vec::new()));
    let mut stream = body.into_data_stream();
    let (mut received, mut delivered) = (0u64, 0u64);
    let over = || std::io::Error::other(format!("request body over {MAX_BODY_BYTES} bytes"));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        received += chunk.len() as u64;
        if received > MAX_BODY_BYTES {
            return Err(over());
        }
        match decoder.as_mut() {
            None => {
                delivered += chunk.len() as u64;
                stdin.write_all(&chunk).await?;
            }
            // Small slices bound what one step can inflate to.
            Some(decoder) => {
                for slice in chunk.chunks(8 * 1024) {
                    decoder.write_all(slice)?;
                    let out = std::mem::take(decoder.get_mut());
                    delivered += out.len() as u64;
                    if delivered > MAX_BODY_BYTES {
                        return Err(over());
                    }
                    stdin.write_all(&out).await?;
                }
            }
        }
    }
    if let Some(mut decoder) = decoder {
        decoder.try_finish()?;
        let out = std::mem::take(decoder.get_mut());
        stdin.write_all(&out).await?;
    }
    stdin.flush().await?;
    Ok(())
}

/// Sends git's stdout to the response as it comes; keeps reading (and dropping) it when the
/// client has gone, so git can finish.
async fn pump(mut stdout: ChildStdout, tx: &mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let mut open = true;
    loop {
        let mut buf = vec![0u8; 64 * 1024];
        match stdout.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                buf.truncate(n);
                if open && tx.send(Ok(Bytes::from(buf))).await.is_err() {
                    open = false;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// One pkt-line: four hex digits of length (including themselves), then the data.
fn pkt_line(data: &str) -> Vec<u8> {
    let mut line = format!("{:04x}", data.len() + 4).into_bytes();
    line.extend_from_slice(data.as_bytes());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkt_lines() {
        assert_eq!(pkt_line("# service=git-receive-pack\n"), b"001f# service=git-receive-pack\n");
    }
}
