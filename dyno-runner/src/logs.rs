//! Shipping log lines to the API: one bounded queue for every line the runner collects (its
//! dynos' output, see `follow.rs`, and the router's request lines, `POST /logs`), drained by
//! one task that POSTs batches to `{OURO_API_URL}/runner/logs`.
//!
//! Bounds: the queue holds at most [`QUEUE_LINES`] lines; a producer never waits: when the queue
//! is full its line is dropped and counted, and the app gets one
//! `ouro[logs]: Error L10 (output buffer overflow): N messages dropped since <time>` line once
//! there is room (logplex's wording). A batch holds at most [`BATCH_LINES`] lines and about
//! [`BATCH_BYTES`] of JSON. While the API is away the batch in hand is retried with a capped
//! back-off and the queue keeps the newest lines it has room for; an API without the endpoint
//! (404/405: older than logs) gets nothing but a retry every [`NO_ENDPOINT_RETRY`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ouro_types::log_line::LogLine;
use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};

use crate::api::{ApiClient, Shipped};

/// Lines the runner keeps for the API at most (about 20 MB at the longest lines' 1 KB average).
pub const QUEUE_LINES: usize = 20_000;
/// Lines in one `POST /runner/logs` at most.
pub const BATCH_LINES: usize = 1_000;
/// About the most JSON in one `POST /runner/logs` (and in one `POST /logs` the runner takes).
pub const BATCH_BYTES: usize = 1 << 20;
/// How long the shipper lets lines gather after the first one before it sends (no batch waits
/// to be full).
const COALESCE: Duration = Duration::from_millis(5);
/// Back-off between two attempts at a batch the API did not take.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// An API that has no log endpoint is asked again after this.
pub const NO_ENDPOINT_RETRY: Duration = Duration::from_secs(60);
/// Apps whose dropped lines are counted one by one; beyond, drops are only counted in total.
const MAX_GAP_APPS: usize = 1_000;

/// The producers' end of the queue: cheap to clone; [`LogQueue::push`] never waits.
#[derive(Clone)]
pub struct LogQueue {
    tx: mpsc::Sender<LogLine>,
    gaps: Arc<Mutex<Gaps>>,
}

/// The shipper's end.
pub struct LogReceiver {
    rx: mpsc::Receiver<LogLine>,
    gaps: Arc<Mutex<Gaps>>,
    /// A line taken from the queue that did not fit the last batch.
    carried: Option<LogLine>,
    /// The batch being shipped, until the API took it (kept here so that a shipper stopped
    /// mid-batch loses nothing: see [`LogReceiver::unsent`]).
    in_flight: Vec<LogLine>,
}

/// Lines dropped per app since its reader last heard of it.
#[derive(Debug, Default)]
struct Gaps {
    by_app: BTreeMap<String, Gap>,
    /// Dropped since the queue was made.
    total: u64,
}

#[derive(Debug, Clone, Copy)]
struct Gap {
    count: u64,
    /// When the first of them was dropped.
    since: SystemTime,
}

/// A queue of at most `capacity` lines.
pub fn queue(capacity: usize) -> (LogQueue, LogReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let gaps = Arc::new(Mutex::new(Gaps::default()));
    (LogQueue { tx, gaps: gaps.clone() }, LogReceiver { rx, gaps, carried: None, in_flight: Vec::new() })
}

impl LogQueue {
    /// Queues `line`, or drops and counts it when the queue is full; never waits. An app's
    /// earlier gap is reported first (its L10 line), so that it sits where the lines went
    /// missing. False when the line was dropped or the shipper is gone.
    pub fn push(&self, line: LogLine) -> bool {
        let mut gaps = lock(&self.gaps);
        while let Some((app, gap)) = gaps.by_app.first_key_value().map(|(a, g)| (a.clone(), *g)) {
            match self.tx.try_send(l10(&app, gap)) {
                Ok(()) => {
                    gaps.by_app.remove(&app);
                }
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(line)) => {
                gaps.count(&line.app);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Lines dropped because the queue was full, since it was made.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        lock(&self.gaps).total
    }
}

impl Gaps {
    fn count(&mut self, app: &str) {
        self.total += 1;
        if let Some(gap) = self.by_app.get_mut(app) {
            gap.count += 1;
        } else if self.by_app.len() < MAX_GAP_APPS {
            self.by_app.insert(app.to_string(), Gap { count: 1, since: SystemTime::now() });
        }
    }
}

/// `ouro[logs]: Error L10 (output buffer overflow): N messages dropped since <time>`.
fn l10(app: &str, gap: Gap) -> LogLine {
    LogLine::overflow(app, "logs", gap.count, gap.since)
}

impl LogReceiver {
    /// Every line not shipped yet, oldest first: the batch in flight, then the queue (at the
    /// runner's stop, to keep them for its next start: see [`spool`]).
    pub fn unsent(&mut self) -> Vec<LogLine> {
        let mut lines = std::mem::take(&mut self.in_flight);
        while let Ok(line) = self.try_next() {
            lines.push(line);
        }
        lines
    }

    /// The next line without waiting: a queued one, else an L10 line for a gap no producer
    /// has reported yet (the queue has room: it is empty). `Err(true)` when the queue is
    /// closed and read to its end, `Err(false)` when it is empty for now.
    fn try_next(&mut self) -> Result<LogLine, bool> {
        if let Some(line) = self.carried.take() {
            return Ok(line);
        }
        let mut gaps = lock(&self.gaps);
        match self.rx.try_recv() {
            Ok(line) => Ok(line),
            Err(closed) => match gaps.by_app.pop_first() {
                Some((app, gap)) => Ok(l10(&app, gap)),
                None => Err(closed == TryRecvError::Disconnected),
            },
        }
    }

    /// The batch in flight if there is one (a shipper stopped before the API took it);
    /// else waits for at least one line, lets more gather for a few ms, and makes what is
    /// queued up to a full batch the one in flight. `None` once every producer is gone and
    /// everything was read. Lines taken from the queue are in flight at once, so that a
    /// shipper stopped at any await loses none (see [`LogReceiver::unsent`]).
    pub async fn next_batch(&mut self) -> Option<Vec<LogLine>> {
        if !self.in_flight.is_empty() {
            return Some(self.in_flight.clone());
        }
        let first = match self.try_next() {
            Ok(line) => line,
            Err(true) => return None,
            // Nothing queued and no gap: a gap can only open once the queue is full, and then
            // `recv` returns its lines first. (`recv` is cancel-safe.)
            Err(false) => self.rx.recv().await?,
        };
        self.in_flight.push(first);
        tokio::time::sleep(COALESCE).await;
        // The first line fits an empty batch whatever its size.
        let mut batch = Batch { bytes: json_size(&self.in_flight[0]), lines: std::mem::take(&mut self.in_flight) };
        while let Ok(line) = self.try_next() {
            if let Err(line) = batch.push(line) {
                self.carried = Some(line);
                break;
            }
        }
        self.in_flight = batch.lines;
        Some(self.in_flight.clone())
    }

    /// The batch in flight reached the API (or was given up): the next one comes from the queue.
    pub fn shipped(&mut self) {
        self.in_flight.clear();
    }
}

/// A batch being filled: at most [`BATCH_LINES`] lines and about [`BATCH_BYTES`] of JSON (a
/// first line always fits: no line is over 10 KB).
#[derive(Default)]
struct Batch {
    lines: Vec<LogLine>,
    bytes: usize,
}

impl Batch {
    /// Adds `line`, or hands it back when the batch is full.
    fn push(&mut self, line: LogLine) -> Result<(), LogLine> {
        let size = json_size(&line);
        if !self.lines.is_empty() && (self.lines.len() >= BATCH_LINES || self.bytes + size > BATCH_BYTES) {
            return Err(line);
        }
        self.bytes += size;
        self.lines.push(line);
        Ok(())
    }
}

/// An upper estimate of a line's JSON: its strings (escapes can double them at worst, which
/// log text seldom needs) and the fixed part.
fn json_size(line: &LogLine) -> usize {
    line.app.len() + line.process.len() + line.text.len() + line.text.len() / 8 + 100
}

/// Drains the queue into `POST /runner/logs` forever (until every producer is gone). Runs in a
/// task of its own, started again should it panic: the receiver lives behind a lock that a
/// panic releases.
pub async fn ship_forever(receiver: Arc<tokio::sync::Mutex<LogReceiver>>, api: ApiClient) {
    /// Aborts the shipping task when `ship_forever` itself is stopped (dropped).
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    loop {
        let task = tokio::spawn(ship(receiver.clone(), api.clone()));
        let _stop_with_me = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, "the log shipper failed; starting it again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn ship(receiver: Arc<tokio::sync::Mutex<LogReceiver>>, api: ApiClient) {
    let mut receiver = receiver.lock().await;
    // While `Some`, the API has no log endpoint: batches are dropped until then.
    let mut no_endpoint_until: Option<Instant> = None;
    // A batch left in flight by a shipper that stopped (a panic) comes first.
    while let Some(batch) = receiver.next_batch().await {
        if no_endpoint_until.is_some_and(|until| Instant::now() < until) {
            continue;
        }
        let body = match serde_json::to_vec(&batch) {
            Ok(body) => bytes::Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "could not encode log lines");
                continue;
            }
        };
        let mut delay = RETRY_MIN;
        let mut failures = 0u32;
        loop {
            match api.ship_logs(body.clone()).await {
                Ok(Shipped::Accepted) => {
                    if failures > 0 {
                        tracing::info!(attempts = failures + 1, "the API takes log lines again");
                    }
                    if no_endpoint_until.take().is_some() {
                        tracing::info!("the API has a log endpoint now: shipping log lines");
                    }
                    break;
                }
                Ok(Shipped::NoEndpoint) => {
                    if no_endpoint_until.is_none() {
                        tracing::info!(
                            retry_in = ?NO_ENDPOINT_RETRY,
                            "the API has no log endpoint (POST /runner/logs): dropping log lines until it has"
                        );
                    }
                    no_endpoint_until = Some(Instant::now() + NO_ENDPOINT_RETRY);
                    break;
                }
                Ok(Shipped::Rejected(why)) => {
                    tracing::warn!(lines = batch.len(), %why, "the API refused a batch of log lines; dropping it");
                    break;
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, "could not ship log lines to the API; keeping them and retrying");
                    } else {
                        tracing::debug!(error = %e, attempt = failures + 1, "shipping log lines failed again");
                    }
                    failures += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        receiver.shipped();
    }
}

/// Where the runner keeps the lines it could not ship before it stopped: beside its state.
pub fn spool_path(state_file: &std::path::Path) -> std::path::PathBuf {
    state_file.with_file_name("unsent-log-lines.jsonl")
}

/// Writes `lines` to `path` (JSON lines, mode 0600), for the next start to ship.
pub fn spool(path: &std::path::Path, lines: &[LogLine]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if lines.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out =
        std::io::BufWriter::new(std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?);
    for line in lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Queues the lines a previous runner spooled at `path` (at most the queue's size, oldest
/// first) and removes the file; how many.
pub fn unspool(path: &std::path::Path, queue: &LogQueue) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else { return 0 };
    let _ = std::fs::remove_file(path);
    let mut queued = 0;
    for line in text.lines().filter_map(|l| serde_json::from_str::<LogLine>(l).ok()).take(QUEUE_LINES) {
        queue.push(line);
        queued += 1;
    }
    queued
}

/// `POST /logs`: the router's lines (a JSON array of log lines, at most [`BATCH_BYTES`] and
/// [`BATCH_LINES`] lines), queued for the API like the dynos' own; answers 204. The listener is
/// the runner's local one: whoever reaches it is on this host.
pub fn routes(queue: LogQueue) -> Router {
    Router::new().route("/logs", post(accept_lines)).with_state(queue)
}

async fn accept_lines(State(queue): State<LogQueue>, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, BATCH_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let why = format!("a batch of log lines is at most {} bytes: send smaller batches", BATCH_BYTES);
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", why);
        }
    };
    let lines: Vec<LogLine> = match serde_json::from_slice(&bytes) {
        Ok(lines) => lines,
        Err(e) => {
            let why = format!("the body must be a JSON array of log lines: {e}");
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", why);
        }
    };
    if lines.len() > BATCH_LINES {
        let why = format!("a batch holds at most {BATCH_LINES} log lines, not {}: send smaller batches", lines.len());
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, "invalid_params", why);
    }
    for line in lines {
        queue.push(line);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Heroku's error body, one line.
fn refuse(status: StatusCode, id: &str, message: String) -> Response {
    let message = message.replace('\n', " ");
    (status, axum::Json(ouro_types::ErrorBody { id: id.to_string(), message })).into_response()
}

/// The data behind this lock stays consistent at every point a panic could happen.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch, taken as shipped.
    async fn next_batch(receiver: &mut LogReceiver) -> Option<Vec<LogLine>> {
        let batch = receiver.next_batch().await;
        receiver.shipped();
        batch
    }
    use ouro_types::log_line::Source;

    fn line(app: &str, text: &str) -> LogLine {
        LogLine::new(app, Source::App, "web.1", text)
    }

    fn texts(lines: &[LogLine]) -> Vec<String> {
        lines.iter().map(|l| format!("{}[{}]: {}", l.app, l.process, l.text)).collect()
    }

    #[tokio::test]
    async fn a_full_queue_drops_counts_and_says_so_once_per_app() {
        let (queue, mut receiver) = queue(3);
        assert!(queue.push(line("shop", "a")));
        assert!(queue.push(line("shop", "b")));
        assert!(queue.push(line("blog", "c")));
        // Full: these go, counted per app.
        assert!(!queue.push(line("shop", "d")));
        assert!(!queue.push(line("shop", "e")));
        assert!(!queue.push(line("blog", "f")));
        assert_eq!(queue.dropped(), 3);
        let batch = next_batch(&mut receiver).await.expect("a batch");
        assert_eq!(texts(&batch)[..3], ["shop[web.1]: a", "shop[web.1]: b", "blog[web.1]: c"]);
        // The queue was empty with gaps open: the reader reports them itself, an app each.
        let l10: Vec<&LogLine> = batch[3..].iter().collect();
        assert_eq!(l10.len(), 2, "{:?}", texts(&batch));
        assert_eq!((l10[0].app.as_str(), l10[0].source, l10[0].process.as_str()), ("blog", Source::Ouro, "logs"));
        assert!(l10[0].text.starts_with("Error L10 (output buffer overflow): 1 messages dropped since 20"), "{l10:?}");
        assert_eq!(l10[1].app, "shop");
        assert!(l10[1].text.starts_with("Error L10 (output buffer overflow): 2 messages dropped since "));
        // Said once: the next lines come plain.
        assert!(queue.push(line("shop", "g")));
        let batch = next_batch(&mut receiver).await.expect("a batch");
        assert_eq!(texts(&batch), ["shop[web.1]: g"]);
    }

    #[tokio::test]
    async fn the_l10_line_sits_where_the_lines_went_missing() {
        let (queue, mut receiver) = queue(2);
        queue.push(line("shop", "1"));
        queue.push(line("shop", "2"));
        queue.push(line("shop", "3")); // dropped
        // One line read makes room: the next producer puts the gap's line first, then its own
        // (or drops it, counted in a new gap, when the L10 line took the last place).
        assert_eq!(receiver.try_next().map(|l| l.text), Ok("1".to_string()));
        assert!(!queue.push(line("shop", "4")));
        assert_eq!(receiver.try_next().map(|l| l.text), Ok("2".to_string()));
        let gap = receiver.try_next().expect("the L10 line");
        assert!(gap.text.contains(": 1 messages dropped"), "{}", gap.text);
        queue.push(line("shop", "5"));
        let next = receiver.try_next().expect("the second gap");
        assert!(next.text.contains(": 1 messages dropped"), "{}", next.text);
        assert_eq!(receiver.try_next().map(|l| l.text), Ok("5".to_string()));
        assert_eq!(receiver.try_next().map(|l| l.text), Err(false));
        drop(queue);
        assert!(matches!(receiver.try_next(), Err(true)));
        assert!(next_batch(&mut receiver).await.is_none());
    }

    #[tokio::test]
    async fn batches_take_what_is_queued_up_to_their_bounds() {
        let (queue, mut receiver) = queue(QUEUE_LINES);
        for i in 0..2_500 {
            queue.push(line("shop", &format!("line {i}")));
        }
        let sizes = [
            next_batch(&mut receiver).await.unwrap().len(),
            next_batch(&mut receiver).await.unwrap().len(),
            next_batch(&mut receiver).await.unwrap().len(),
        ];
        assert_eq!(sizes, [1_000, 1_000, 500]);
        // Long lines: the byte bound cuts first, and the line that did not fit comes next.
        let long = "x".repeat(ouro_types::log_line::MAX_TEXT_BYTES);
        for _ in 0..150 {
            queue.push(line("shop", &long));
        }
        let first = next_batch(&mut receiver).await.unwrap();
        assert!(first.len() < 150 && first.len() > 50, "{}", first.len());
        let json = serde_json::to_vec(&first).unwrap();
        assert!(json.len() <= BATCH_BYTES, "{} bytes", json.len());
        let second = next_batch(&mut receiver).await.unwrap();
        assert_eq!(first.len() + second.len(), 150);
        // A single line (bounded by MAX_TEXT_BYTES) always fits an empty batch.
        let mut batch = Batch::default();
        assert!(batch.push(line("shop", &long)).is_ok());
    }

    #[tokio::test]
    async fn post_logs_takes_a_bounded_json_array() {
        let (queue, mut receiver) = queue(QUEUE_LINES);
        let post = |body: Vec<u8>| accept_lines(State(queue.clone()), Body::from(body));
        let lines = serde_json::json!([
            {"at": "2026-11-26T09:00:00Z", "app": "shop", "source": "ouro", "process": "router",
             "text": "at=info method=GET path=\"/\" status=200"},
        ]);
        let answer = post(lines.to_string().into_bytes()).await;
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let batch = next_batch(&mut receiver).await.unwrap();
        assert_eq!(
            (batch[0].app.as_str(), batch[0].source, batch[0].process.as_str()),
            ("shop", Source::Ouro, "router")
        );

        let one = serde_json::json!({"at": "2026-11-26T09:00:00Z", "app": "a", "source": "ouro",
            "process": "router", "text": "x"});
        let too_many = serde_json::Value::Array(vec![one; BATCH_LINES + 1]);
        assert_eq!(post(too_many.to_string().into_bytes()).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let answer = post(b"{\"not\": \"an array\"}".to_vec()).await;
        assert_eq!(answer.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 16).await.unwrap();
        let error: ouro_types::ErrorBody = serde_json::from_slice(&body).unwrap();
        assert!(error.message.contains("JSON array of log lines") && !error.message.contains('\n'), "{error:?}");
        assert_eq!(post(vec![b' '; BATCH_BYTES + 1]).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(receiver.try_next().map(|l| l.text), Err(false), "nothing refused was queued");
    }

    #[tokio::test]
    async fn lines_in_flight_or_queued_are_all_unsent_until_shipped() {
        let (queue, mut receiver) = queue(QUEUE_LINES);
        for text in ["a", "b"] {
            queue.push(LogLine::new("shop", ouro_types::log_line::Source::App, "web.1", text));
        }
        let batch = receiver.next_batch().await.expect("a batch");
        assert_eq!(batch.len(), 2);
        queue.push(LogLine::new("shop", ouro_types::log_line::Source::App, "web.1", "c"));
        // Not shipped yet (the API away, the shipper stopped): the same batch again, then all.
        assert_eq!(receiver.next_batch().await.expect("the same batch").len(), 2);
        let texts: Vec<String> = receiver.unsent().into_iter().map(|l| l.text).collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }
}
