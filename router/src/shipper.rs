//! Shipping request log lines to the dyno runner, which forwards them with dyno output to the
//! app's log (`ouro logs -a APP` shows them as `ouro[router]: at=info method=GET …`).
//!
//! The request path only calls [`Shipper::ship`]: a `try_send` into a bounded queue (no lock,
//! no await). When the queue is full the line is dropped and counted on its app's route
//! ([`LogDrops`]). One background task ([`supervise`] restarts it if it ever ends) takes
//! whatever is queued, at most [`BATCH`] lines without waiting for more, and POSTs it as a JSON
//! array of [`LogLine`] to the runner's log endpoint, which answers 204 (any 2xx will do). A
//! failed batch is sent again after a back-off (0.2 s doubling to 5 s, reset by a success) up to
//! [`RETRIES`] times, then dropped and counted; every POST has a [`REQUEST_TIMEOUT`].
//!
//! After lines were dropped for a full queue, the task sends, once the queue has room again,
//! one line per affected app in logplex's words:
//! `ouro[router]: Error L10 (output buffer overflow): N messages dropped since <time>`. Apps that
//! left the route table before that are not told. Batches given up after retries are not in the
//! L10 count (the runner was down, not the queue full); they are counted and logged here.
//!
//! The endpoint is the runner's (`OURO_LOGS_URL`, else `OURO_ROUTES_URL` with its trailing
//! `/routes` replaced by `/logs`): the router never talks to the API and holds no credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use ouro_types::log_line::LogLine;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::error::error_chain;
use crate::table::Table;
use crate::{AbortOnDrop, State};

/// Most lines in one POST.
pub(crate) const BATCH: usize = 500;
/// Times a failed batch is sent again before it is dropped.
pub(crate) const RETRIES: u32 = 3;
/// Limit on one POST, from connecting to reading the answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The `process` of every line: `ouro[router]`.
pub(crate) const PROCESS: &str = "router";

const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Before a shipper task that ended is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// While failing, repeat the warning at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Longest answer body read from the endpoint (it should be empty).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The queue of lines to ship, shared by the request path and the shipper task.
#[derive(Debug)]
pub(crate) struct Shipper {
    url: Uri,
    authorization: Option<HeaderValue>,
    tx: mpsc::Sender<LogLine>,
    /// Held by the running shipper task; a restarted task takes it over.
    rx: tokio::sync::Mutex<mpsc::Receiver<LogLine>>,
    /// Lines queued and not yet sent or given up (for the flush at shutdown).
    unfinished: AtomicUsize,
    /// Set when a line was dropped for a full queue: the task then looks for apps to tell.
    overflowed: AtomicBool,
    /// Lines dropped for a full queue, since start.
    dropped_full: AtomicU64,
    /// Lines dropped because their batch failed every retry, since start.
    dropped_failed: AtomicU64,
}

/// An app's lines dropped for a full queue and not yet reported (L10). Kept across route table
/// versions, like a backend's counters, so that drops are not forgotten on a table swap.
#[derive(Debug, Default)]
pub(crate) struct LogDrops {
    pending: AtomicU64,
    /// Milliseconds since the epoch of the first drop not yet reported; 0 for none.
    since_ms: AtomicU64,
}

impl Shipper {
    /// Ships to `url`, with `authorization` (the runner's secret) on every batch.
    pub fn new(url: Uri, capacity: usize, authorization: Option<HeaderValue>) -> Shipper {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Shipper {
            url,
            authorization,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            unfinished: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            dropped_full: AtomicU64::new(0),
            dropped_failed: AtomicU64::new(0),
        }
    }

    /// Queues `line` for shipping, or drops and counts it when the queue is full. Never blocks.
    pub fn ship(&self, line: LogLine, drops: &LogDrops) {
        self.unfinished.fetch_add(1, Ordering::Relaxed);
        // `Closed` cannot happen (the receiver lives in `self`); it would count as a drop.
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) = self.tx.try_send(line) {
            self.unfinished.fetch_sub(1, Ordering::Relaxed);
            drops.record();
            self.dropped_full.fetch_add(1, Ordering::Relaxed);
            self.overflowed.store(true, Ordering::Release);
        }
    }

    /// Lines dropped so far: for a full queue, and with batches that failed every retry.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_full.load(Ordering::Relaxed), self.dropped_failed.load(Ordering::Relaxed))
    }
}

impl LogDrops {
    fn record(&self) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_millis() as u64).max(1);
        let _ = self.since_ms.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
    }

    /// The drops not yet reported and since when (about), resetting both.
    fn take(&self) -> Option<(u64, SystemTime)> {
        let dropped = self.pending.swap(0, Ordering::Relaxed);
        if dropped == 0 {
            return None;
        }
        let since = match self.since_ms.swap(0, Ordering::Relaxed) {
            // A drop raced with the previous report: its time went with that report.
            0 => SystemTime::now(),
            ms => UNIX_EPOCH + Duration::from_millis(ms),
        };
        Some((dropped, since))
    }
}

/// `OURO_ROUTES_URL` with its trailing `/routes` replaced by `/logs`; `None` if it has none.
pub(crate) fn logs_url_from_routes(routes_url: &str) -> Option<String> {
    routes_url.strip_suffix("/routes").map(|base| format!("{base}/logs"))
}

/// Runs the shipper task, and starts it again whenever it ends (it should not), until aborted.
pub(crate) async fn supervise(state: Arc<State>) {
    loop {
        let mut task = AbortOnDrop(tokio::spawn(run(Arc::clone(&state))));
        match (&mut task.0).await {
            Ok(()) => tracing::error!("log shipper ended; starting it again"),
            Err(error) if error.is_panic() => tracing::error!(%error, "log shipper panicked; starting it again"),
            Err(error) => tracing::error!(%error, "log shipper stopped; starting it again"),
        }
        tokio::time::sleep(RESTART_DELAY).await;
    }
}

/// After shutdown: waits, at most `timeout`, until every queued line was sent or given up.
pub(crate) async fn flush(shipper: &Shipper, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while shipper.unfinished.load(Ordering::Relaxed) > 0 {
        if Instant::now() >= deadline {
            tracing::warn!(lines = shipper.unfinished.load(Ordering::Relaxed), "router log lines not shipped at exit");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The shipper task: batches from the queue to the endpoint, L10 lines after drops.
async fn run(state: Arc<State>) {
    let Some(shipper) = state.shipper.as_deref() else { return };
    let client = crate::follow::control_client::<Full<Bytes>>(state.config.connect_timeout);
    let mut rx = shipper.rx.lock().await;
    let mut sender = BatchSender {
        client,
        url: &shipper.url,
        authorization: shipper.authorization.as_ref(),
        delay: BACKOFF_FIRST,
        failing: None,
    };
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Whatever is queued, up to BATCH; waits only while the queue is empty.
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return; // Every sender is gone: cannot happen while `state` lives.
        }
        let lines = batch.len();
        if !sender.send(&batch).await {
            shipper.dropped_failed.fetch_add(lines as u64, Ordering::Relaxed);
        }
        batch.clear();
        shipper.unfinished.fetch_sub(lines, Ordering::Relaxed);

        // The queue has room now: tell each app whose lines were dropped.
        if shipper.overflowed.swap(false, Ordering::Acquire) {
            let overflow = overflow_lines(&state.table.load());
            let dropped: u64 = overflow.iter().map(|(_, n)| n).sum();
            tracing::warn!(
                dropped,
                apps = overflow.len(),
                total = shipper.dropped_full.load(Ordering::Relaxed),
                "router log queue was full; lines dropped"
            );
            let overflow: Vec<LogLine> = overflow.into_iter().map(|(line, _)| line).collect();
            for chunk in overflow.chunks(BATCH) {
                if !sender.send(chunk).await {
                    shipper.dropped_failed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// One L10 line (and its count) per app of `table` with unreported drops.
fn overflow_lines(table: &Table) -> Vec<(LogLine, u64)> {
    table
        .routes()
        .filter_map(|route| {
            let (dropped, since) = route.log_drops.take()?;
            Some((LogLine::overflow(route.app.clone(), PROCESS, dropped, since), dropped))
        })
        .collect()
}

struct BatchSender<'a> {
    client: Client<HttpConnector, Full<Bytes>>,
    url: &'a Uri,
    authorization: Option<&'a HeaderValue>,
    /// Next back-off; back to the first after a success.
    delay: Duration,
    /// Since when POSTs fail, and when that was last said.
    failing: Option<(Instant, Instant)>,
}

impl BatchSender<'_> {
    /// POSTs `lines`, retrying; false when it gave up on them.
    async fn send(&mut self, lines: &[LogLine]) -> bool {
        let body = match serde_json::to_vec(lines) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                tracing::error!(%error, "cannot encode router log lines; dropping them");
                return false;
            }
        };
        let mut retries = 0;
        loop {
            match self.post(body.clone()).await {
                Ok(()) => {
                    self.delay = BACKOFF_FIRST;
                    if let Some((since, _)) = self.failing.take() {
                        tracing::info!(url = %self.url, down_for = ?since.elapsed(), "log endpoint reachable again");
                    }
                    return true;
                }
                Err(error) => {
                    let now = Instant::now();
                    match &mut self.failing {
                        None => {
                            self.failing = Some((now, now));
                            tracing::warn!(url = %self.url, %error, "shipping router log lines failed; retrying");
                        }
                        Some((since, warned)) if now - *warned >= WARN_EVERY => {
                            *warned = now;
                            tracing::warn!(url = %self.url, %error, failing_for = ?(now - *since),
                                "shipping router log lines still fails");
                        }
                        Some(_) => {}
                    }
                    if retries == RETRIES {
                        tracing::debug!(lines = lines.len(), "giving up on a batch of router log lines");
                        return false;
                    }
                    retries += 1;
                    tokio::time::sleep(self.delay).await;
                    self.delay = (self.delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), String> {
        let mut request =
            Request::post(self.url.clone()).header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(authorization) = self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
        let exchange = async {
            let response =
                self.client.request(request).await.map_err(|e| format!("request failed: {}", error_chain(&e)))?;
            let status = response.status();
            // Read the (normally empty) answer so that the connection can be reused.
            let answer = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?
                .to_bytes();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("status {status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(200)])))
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ouro_types::log_line::Source;

    #[test]
    fn logs_url_is_derived_from_a_routes_url_only() {
        for (routes, expect) in [
            ("http://127.0.0.1:7701/routes", Some("http://127.0.0.1:7701/logs")),
            ("http://runner:7701/v1/routes", Some("http://runner:7701/v1/logs")),
            ("http://127.0.0.1:7701/routes?x=1", None),
            ("http://127.0.0.1:7701/table", None),
        ] {
            assert_eq!(logs_url_from_routes(routes).as_deref(), expect, "{routes}");
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_counts_per_app_and_never_waits() {
        let shipper = Shipper::new("http://127.0.0.1:1/logs".parse().unwrap(), 2, None);
        let (a, b) = (LogDrops::default(), LogDrops::default());
        for i in 0..5 {
            shipper.ship(LogLine::new("a", Source::Ouro, PROCESS, format!("a{i}")), &a);
        }
        shipper.ship(LogLine::new("b", Source::Ouro, PROCESS, "b"), &b);
        assert_eq!(shipper.dropped(), (4, 0));
        assert_eq!(shipper.unfinished.load(Ordering::Relaxed), 2);
        let (dropped, since) = a.take().unwrap();
        assert_eq!(dropped, 3);
        assert!(since <= SystemTime::now());
        assert!(a.take().is_none(), "reported once");
        assert_eq!(b.take().map(|(n, _)| n), Some(1));
        assert!(shipper.overflowed.load(Ordering::Relaxed));
    }
}
