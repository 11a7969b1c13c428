//! A bounded queue of lines that drops instead of waiting, and says so (logplex's L10).
//!
//! The sender (`publish`, `Drain::send`) never blocks: when the queue is full the line is
//! dropped and counted. The reader gets one `ouro[logs]: Error L10 …` line in the gap's place:
//! either the sender puts it in the queue before the next line once there is room, or the
//! reader makes it itself when it finds the queue empty. Both happen under the queue's
//! `Overflow` lock, so the L10 line comes after every line queued before the drops and before
//! every line queued after them, and exactly once per gap.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::mpsc::{self, error::TryRecvError, error::TrySendError};

use crate::LogLine;

#[derive(Debug, Default)]
struct Overflow {
    /// Dropped since the reader last heard of it.
    pending: u64,
    /// When the first of those was dropped.
    since: Option<SystemTime>,
    /// Dropped since the queue was made.
    total: u64,
}

pub(crate) struct LossySender {
    tx: mpsc::Sender<LogLine>,
    overflow: Arc<Mutex<Overflow>>,
}

pub(crate) struct LossyReceiver {
    rx: mpsc::Receiver<LogLine>,
    overflow: Arc<Mutex<Overflow>>,
    app: String,
}

/// A queue of at most `capacity` lines for `app`'s reader.
pub(crate) fn lossy_channel(capacity: usize, app: &str) -> (LossySender, LossyReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let overflow = Arc::new(Mutex::new(Overflow::default()));
    (LossySender { tx, overflow: overflow.clone() }, LossyReceiver { rx, overflow, app: app.to_string() })
}

impl LossySender {
    /// Queues `line` or drops it; never waits. False once the reader is gone.
    pub fn send(&self, line: LogLine) -> bool {
        let mut overflow = lock(&self.overflow);
        if overflow.pending > 0 {
            match self.tx.try_send(l10(&line.app, &overflow)) {
                Ok(()) => {
                    overflow.pending = 0;
                    overflow.since = None;
                }
                Err(TrySendError::Full(_)) => return drop_line(&mut overflow),
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => drop_line(&mut overflow),
            Err(TrySendError::Closed(_)) => false,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Lines dropped because the queue was full, since it was made.
    pub fn dropped(&self) -> u64 {
        lock(&self.overflow).total
    }
}

impl LossyReceiver {
    /// The next line, waiting for one; `None` once every sender is gone and all is read.
    pub async fn next(&mut self) -> Option<LogLine> {
        if let Some(next) = self.try_next() {
            return next;
        }
        // The queue was empty with nothing dropped: nothing can be dropped before the queue
        // fills, and then `recv` returns its lines first.
        match self.rx.recv().await {
            Some(line) => Some(line),
            None => self.try_next().flatten(),
        }
    }

    /// Without waiting: `Some(Some(line))`, `Some(None)` when the queue is closed and read to
    /// its end, `None` when it is empty for now.
    pub fn try_next(&mut self) -> Option<Option<LogLine>> {
        let mut overflow = lock(&self.overflow);
        match self.rx.try_recv() {
            Ok(line) => Some(Some(line)),
            // Empty, or closed (the end comes on the next call): the gap is reported first.
            Err(_) if overflow.pending > 0 => {
                let line = l10(&self.app, &overflow);
                overflow.pending = 0;
                overflow.since = None;
                Some(Some(line))
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(None),
        }
    }

    /// Lines dropped because the queue was full, since it was made.
    pub fn dropped(&self) -> u64 {
        lock(&self.overflow).total
    }
}

fn drop_line(overflow: &mut Overflow) -> bool {
    overflow.pending += 1;
    overflow.total += 1;
    overflow.since.get_or_insert_with(SystemTime::now);
    true
}

/// `ouro[logs]: Error L10 (output buffer overflow): N messages dropped since <time>`.
fn l10(app: &str, overflow: &Overflow) -> LogLine {
    LogLine::overflow(app, "logs", overflow.pending, overflow.since.unwrap_or_else(SystemTime::now))
}

/// The data behind these locks stays consistent at every point a panic could happen.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
