//! Attached one-off dynos (`ouro run`): the runner's half of the bridge between a dyno and the
//! user's terminal. The runner only dials out, so for a desired one-off with `attach` it
//! creates the container (stdin open), attaches to it through Docker, opens an upgraded
//! connection to the API (`GET /runner/attach/{app}/run.N`, `Upgrade: ouro-attach`), which
//! pairs it with the CLI's, and only then starts the dyno. From then on it copies frames
//! (`ouro_types::attach`) both ways until the dyno exits, and sends its exit status last.
//!
//! Each bridge is a task of its own (supervised: a panic still ends its dyno), so the
//! reconcile loop never waits on a terminal. How a bridge ends:
//! - the API refuses the upgrade, or has not answered in [`UPGRADE_TIMEOUT`] (the user gave
//!   up): the dyno is never started, and reported finished with [`TERMINAL_GONE`];
//! - the dyno cannot start: an `ERROR` frame, and the reason reported;
//! - the dyno exits: its output, then an `EXIT` frame with its status;
//! - the API connection breaks while the dyno runs: the dyno is stopped (SIGTERM, SIGKILL
//!   after [`STOP_GRACE`]) and reported with [`TERMINAL_GONE`]: nobody watches it any more.
//!
//! It never reads an attached dyno's output into the app's log, and never keeps a connection
//! open once its dyno has ended.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use futures_util::StreamExt;
use ouro_types::attach::{self as frames, Decoder};
use ouro_types::http_upgrade::{self, Answer, HeadReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::docker;

/// How long the API has to answer the upgrade (it waits for the user's `ouro run` to pair).
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(30);
/// SIGTERM to SIGKILL for a dyno whose terminal went away.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// The reason a one-off ends with when nobody is attached to it any more.
pub const TERMINAL_GONE: &str = "the terminal went away";
/// The longest one write of a frame to the API may take before the API counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the rest of a dyno's output may take to arrive once it has exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the reconcile loop and the bridges share: which one-offs have a bridge, and the
/// containers of the bridges that have ended (with the reason to report, if the bridge has
/// one). One lock, so that the loop sees a bridge either open or ended, never neither.
#[derive(Debug, Default)]
pub struct Bridges {
    /// (app, one-off number) of the bridges running, from before their container exists
    /// until it has stopped: the loop starts none of these again.
    pub open: HashSet<(String, u32)>,
    /// Containers whose bridge has ended, and why their one-off ended if the bridge knows
    /// better than the exit status (the terminal went away, the dyno could not start).
    pub ended: Vec<(String, Option<String>)>,
}

pub type SharedBridges = Arc<Mutex<Bridges>>;

/// Where and as whom the runner opens its upgrade.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    /// `http://host:port`, maybe with a path prefix.
    pub url: String,
    pub token: String,
}

/// What a bridge needs of its one-off.
pub struct OneOff {
    pub app: String,
    pub number: u32,
    pub tty: bool,
    /// The container's name, to stop it by should the bridge fail before knowing its id.
    pub container_name: String,
}

/// Runs a bridge for `one_off` in a task of its own. `create` makes the (not started)
/// container and returns its id. The caller has put the one-off in `bridges.open`; it leaves
/// when the bridge ends, whatever happens (a panic included: its dyno is then stopped).
pub fn spawn<F>(
    docker: Docker,
    api: ApiTarget,
    one_off: OneOff,
    create: F,
    bridges: SharedBridges,
    wake: Arc<tokio::sync::Notify>,
) where
    F: Future<Output = crate::Result<String>> + Send + 'static,
{
    tokio::spawn(async move {
        let key = (one_off.app.clone(), one_off.number);
        let name = format!("{}/run.{}", one_off.app, one_off.number);
        let container_name = one_off.container_name.clone();
        let task = tokio::spawn(run(docker.clone(), api, one_off, create));
        let ended = match task.await {
            Ok(ended) => ended,
            Err(e) => {
                tracing::error!(dyno = %name, error = %e, "an attach bridge failed; stopping its dyno");
                docker::stop(&docker, &container_name, STOP_GRACE).await;
                // Reported by its id, if it was made; if not, the loop may try again.
                docker::id_of(&docker, &container_name).await.map(|id| (id, Some(TERMINAL_GONE.to_string())))
            }
        };
        if let Ok(mut bridges) = bridges.lock() {
            bridges.open.remove(&key);
            if let Some(ended) = ended {
                bridges.ended.push(ended);
            }
        }
        wake.notify_one();
    });
}

/// The whole life of one attached one-off; the container and, if the bridge has one, the
/// reason its one-off ended (`None` when no container was made: the loop tries again).
async fn run(
    docker: Docker,
    api: ApiTarget,
    one_off: OneOff,
    create: impl Future<Output = crate::Result<String>>,
) -> Option<(String, Option<String>)> {
    let dyno = format!("{}/run.{}", one_off.app, one_off.number);
    let id = match create.await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(%dyno, error = %e, "attached one-off dyno failed to be created");
            return None;
        }
    };
    let attached = match docker::attach(&docker, &id).await {
        Ok(attached) => attached,
        Err(e) => {
            tracing::warn!(%dyno, error = %e, "could not attach to a one-off dyno; trying again");
            docker::remove(&docker, &id).await;
            return None;
        }
    };
    let path = format!("/runner/attach/{}/run.{}", one_off.app, one_off.number);
    let (connection, early) = match tokio::time::timeout(UPGRADE_TIMEOUT, upgrade(&api, &path)).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => {
            tracing::info!(%dyno, error = %e, "no terminal for an attached one-off dyno; it does not start");
            return Some((id, Some(TERMINAL_GONE.to_string())));
        }
        Err(_) => {
            tracing::info!(%dyno, "no terminal within {}s; the one-off dyno does not start", UPGRADE_TIMEOUT.as_secs());
            return Some((id, Some(TERMINAL_GONE.to_string())));
        }
    };
    let (api_read, mut api_write) = connection.into_split();
    if let Err(e) = docker::start(&docker, &id).await {
        tracing::warn!(%dyno, error = %e, "attached one-off dyno failed to start");
        let reason = format!("the dyno could not start: {e}");
        let _ = send(&mut api_write, &frames::frame(frames::ERROR, reason.as_bytes())).await;
        let _ = api_write.shutdown().await;
        return Some((id, Some(reason)));
    }
    tracing::info!(%dyno, container = %id, tty = one_off.tty, "attached one-off dyno started");
    let ended = bridge(&docker, &id, one_off.tty, attached, Box::new(api_read), early, &mut api_write).await;
    match ended {
        Ended::Exited(status) => {
            tracing::info!(%dyno, status, "attached one-off dyno exited");
            Some((id, None))
        }
        Ended::TerminalGone => {
            tracing::info!(%dyno, "the terminal of an attached one-off dyno went away; stopping it");
            docker::stop(&docker, &id, STOP_GRACE).await;
            Some((id, Some(TERMINAL_GONE.to_string())))
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The dyno exited (this status) and the `EXIT` frame was sent.
    Exited(i32),
    /// The API connection broke: nobody reads the dyno's output any more.
    TerminalGone,
}

/// Copies the dyno's output to the API as frames and the API's frames to the dyno, until the
/// dyno has exited (then `EXIT` goes last) or the API connection breaks.
async fn bridge(
    docker: &Docker,
    id: &str,
    tty: bool,
    attached: bollard::container::AttachContainerResults,
    api_read: Box<dyn AsyncRead + Send + Unpin>,
    early: Vec<u8>,
    api_write: &mut (impl AsyncWrite + Unpin),
) -> Ended {
    let (gone_tx, mut gone) = tokio::sync::oneshot::channel();
    let input = tokio::spawn(pump_input(docker.clone(), id.to_string(), tty, api_read, early, attached.input, gone_tx));
    let _abort_input = AbortOnDrop(input);
    let mut output = attached.output;
    let exit = docker::exit_status(docker, id);
    tokio::pin!(exit);
    let mut status: Option<i32> = None;
    let mut output_open = true;
    let drain = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(drain);
    while output_open || status.is_none() {
        tokio::select! {
            item = output.next(), if output_open => match item {
                Some(Ok(chunk)) => {
                    let Some((kind, bytes)) = output_frame(chunk, tty) else { continue };
                    if send(api_write, &frames::frame(kind, &bytes)).await.is_err() {
                        return Ended::TerminalGone;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(container = id, error = %e, "an attached dyno's output stream broke");
                    output_open = false;
                }
                None => output_open = false,
            },
            code = &mut exit, if status.is_none() => {
                status = Some(code.map_or(-1, |c| c as i32));
                // What the dyno wrote last is still on its way; not for ever.
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_TIMEOUT);
            }
            () = &mut drain, if output_open && status.is_some() => output_open = false,
            _ = &mut gone => return Ended::TerminalGone,
        }
    }
    let status = status.unwrap_or(-1);
    if send(api_write, &frames::exit_frame(status)).await.is_err() {
        return Ended::TerminalGone;
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, api_write.shutdown()).await;
    Ended::Exited(status)
}

/// The frame a piece of the dyno's output goes out as (a TTY's is all `STDOUT`).
fn output_frame(chunk: LogOutput, tty: bool) -> Option<(u8, bytes::Bytes)> {
    match chunk {
        LogOutput::StdErr { message } if !tty => Some((frames::STDERR, message)),
        LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => {
            Some((frames::STDOUT, message))
        }
        LogOutput::StdIn { .. } => None,
    }
}

/// Frames from the API to the dyno: `STDIN` to its input, `STDIN_EOF` closes it (the dyno's
/// stdin then ends: `stdin_once`), `RESIZE` resizes its terminal. Says `gone` when the API
/// connection ends or sends garbage.
async fn pump_input(
    docker: Docker,
    id: String,
    tty: bool,
    mut api_read: Box<dyn AsyncRead + Send + Unpin>,
    early: Vec<u8>,
    mut input: Pin<Box<dyn AsyncWrite + Send>>,
    gone: tokio::sync::oneshot::Sender<()>,
) {
    let mut decoder = Decoder::default();
    decoder.push(&early);
    let mut stdin_open = true;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        loop {
            let (kind, payload) = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(container = %id, error = %e, "bad frame from the API; closing the attach connection");
                    let _ = gone.send(());
                    return;
                }
            };
            match kind {
                frames::STDIN if stdin_open => {
                    // Waits while the dyno does not read its input (back-pressure); its exit
                    // ends the wait.
                    stdin_open = write_input(&mut input, &payload).await.is_ok();
                }
                frames::STDIN_EOF if stdin_open => {
                    let _ = input.shutdown().await;
                    stdin_open = false;
                }
                frames::RESIZE if tty => {
                    if let Some((columns, rows)) = frames::size(&payload) {
                        docker::resize(&docker, &id, columns, rows).await;
                    }
                }
                _ => {}
            }
        }
        match api_read.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = gone.send(());
                return;
            }
            Ok(n) => decoder.push(&buffer[..n]),
        }
    }
}

async fn write_input(input: &mut Pin<Box<dyn AsyncWrite + Send>>, bytes: &[u8]) -> std::io::Result<()> {
    input.write_all(bytes).await?;
    input.flush().await
}

/// Writes one frame to the API, within [`WRITE_TIMEOUT`].
async fn send(api: &mut (impl AsyncWrite + Unpin), frame: &[u8]) -> std::io::Result<()> {
    match tokio::time::timeout(WRITE_TIMEOUT, async {
        api.write_all(frame).await?;
        api.flush().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the API took no frame for 30 s")),
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens `path` on the API as an `ouro-attach` upgrade: the connection, switched, and the
/// bytes of it (frames already) that came with the answer's head. The caller bounds the time.
async fn upgrade(api: &ApiTarget, path: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let endpoint = http_upgrade::endpoint(&api.url)
        .map_err(|e| format!("attached one-offs need an http:// OURO_API_URL, and `{}` {e}", api.url))?;
    let mut stream =
        TcpStream::connect(&endpoint.addr).await.map_err(|e| format!("cannot reach the API at {}: {e}", api.url))?;
    let _ = stream.set_nodelay(true);
    let user_agent = format!("ouro-dyno-runner/{}", env!("CARGO_PKG_VERSION"));
    let request =
        http_upgrade::request(&endpoint, path, &format!("Bearer {}", api.token), &user_agent, frames::UPGRADE);
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send the attach request: {e}"))?;
    let answer = read_head(&mut stream).await?;
    if answer.head.status != 101 {
        return Err(format!("the API answered {} to the attach request", answer.head.status));
    }
    Ok((stream, answer.early))
}

/// Reads up to the end of the answer's head: the head, and what came after it.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Result<Answer, String> {
    let mut reader = HeadReader::default();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("the API closed the connection without answering".to_string()),
            Ok(n) => {
                if let Some(answer) = reader.push(&chunk[..n]).map_err(|e| format!("the API's answer: {e}"))? {
                    return Ok(answer);
                }
            }
            Err(e) => return Err(format!("cannot read the API's answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn heads_are_split_from_the_frames_that_came_with_them() {
        let mut first = frames::frame(frames::STDIN, b"hi");
        first.extend(frames::frame(frames::STDIN_EOF, b""));
        let mut answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ouro-attach\r\n\r\n".to_vec();
        answer.extend(&first);
        // In any pieces: a reader that hands out 3 bytes at a time.
        let (mut writer, mut reader) = tokio::io::duplex(3);
        let sent = answer.clone();
        tokio::spawn(async move { writer.write_all(&sent).await });
        let Answer { head, mut early } = read_head(&mut reader).await.unwrap();
        assert_eq!(head.status, 101);
        // What came with the head's last read, then the rest: the frames, whole.
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        early.extend(rest);
        assert_eq!(early, first);
        let mut cut = &b"HTTP/1.1 101 Switching Protocols\r\n"[..];
        assert!(read_head(&mut cut).await.unwrap_err().contains("closed"));
        let mut long = vec![b'x'; http_upgrade::MAX_HEAD + 10];
        long.extend_from_slice(b"\r\n\r\n");
        assert!(read_head(&mut &long[..]).await.unwrap_err().contains("longer"));
    }

    #[test]
    fn output_goes_out_as_stdout_and_stderr_frames() {
        let bytes = bytes::Bytes::from_static(b"x");
        let out = || LogOutput::StdOut { message: bytes.clone() };
        let err = || LogOutput::StdErr { message: bytes.clone() };
        let console = || LogOutput::Console { message: bytes.clone() };
        assert_eq!(output_frame(out(), false), Some((frames::STDOUT, bytes.clone())));
        assert_eq!(output_frame(err(), false), Some((frames::STDERR, bytes.clone())));
        assert_eq!(output_frame(console(), false), Some((frames::STDOUT, bytes.clone())));
        // A terminal has one stream.
        assert_eq!(output_frame(err(), true), Some((frames::STDOUT, bytes.clone())));
        assert_eq!(output_frame(LogOutput::StdIn { message: bytes.clone() }, false), None);
    }
}
