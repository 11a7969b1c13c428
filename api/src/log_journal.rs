//! The log journal: every app's recent lines kept in SQL too, so that `ouro logs` shows them
//! after the API restarts or hands over to a new release of itself (a self-upgrade), as
//! Heroku's logplex does. The hub (`logs.rs`) stays the reader's source; the journal only
//! fills it: at start with each app's last lines, and then, every two seconds, with the lines
//! another API process wrote meanwhile (during a handover both processes take lines for a few
//! seconds; each writes what it took, and each reads what the other wrote).
//!
//! Writing never blocks a publisher: lines go through a bounded queue to one task that inserts
//! them in batches (a transaction each) and trims each app it touched to its last
//! `ouro_logs::RECENT_LINES` rows. A full queue drops lines from the journal only (they are
//! still in memory and in the drains), counted and said once a minute. At shutdown the queue
//! is written out, for at most a few seconds.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ouro_logs::{Hub, LogLine};
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::Result;
use crate::store::Store;

/// Lines waiting to be written; more are dropped from the journal (not from memory).
const QUEUE: usize = 20_000;
/// Lines per transaction.
const BATCH: usize = 1_000;
/// How often lines written by another API process are looked for.
const CATCH_UP_EVERY: Duration = Duration::from_secs(2);

/// The journal's writer and reader. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<LogLine>,
    flush: mpsc::Sender<oneshot::Sender<()>>,
    dropped: Arc<AtomicU64>,
}

impl Journal {
    /// Fills `hub` with each app's kept lines, then starts the writer and the catch-up task.
    pub async fn start(store: Store, hub: Hub) -> Result<Journal> {
        let writer = uuid::Uuid::new_v4().to_string();
        let cursor = store.restore_log_lines(&hub).await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (flush, flushes) = mpsc::channel(1);
        let journal = Journal { tx, flush, dropped: Arc::default() };
        tokio::spawn(write(store.clone(), writer.clone(), rx, flushes));
        tokio::spawn(catch_up(store, writer, hub, cursor));
        Ok(journal)
    }

    /// Queues `line` for the journal. Never blocks.
    pub fn keep(&self, line: &LogLine) {
        if self.tx.try_send(line.clone()).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped == 1 || dropped % 10_000 == 0 {
                tracing::warn!(dropped, "the log journal's queue is full: lines kept in memory only");
            }
        }
    }

    /// Writes out what is queued, waiting at most `limit`.
    pub async fn flush(&self, limit: Duration) {
        let (done, written) = oneshot::channel();
        if self.flush.send(done).await.is_ok() {
            let _ = tokio::time::timeout(limit, written).await;
        }
    }
}

async fn write(
    store: Store,
    writer: String,
    mut rx: mpsc::Receiver<LogLine>,
    mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let flushed = tokio::select! {
            received = rx.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                None
            }
            Some(done) = flushes.recv() => {
                while batch.len() < QUEUE {
                    match rx.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
                Some(done)
            }
        };
        for chunk in batch.chunks(BATCH) {
            if let Err(e) = store.append_log_lines(&writer, chunk).await {
                tracing::warn!(error = %e, lines = chunk.len(), "could not keep log lines in the journal");
            }
        }
        batch.clear();
        if let Some(done) = flushed {
            let _ = done.send(());
        }
    }
}

/// Publishes to `hub` the lines other API processes wrote after `cursor`.
async fn catch_up(store: Store, writer: String, hub: Hub, mut cursor: String) {
    loop {
        tokio::time::sleep(CATCH_UP_EVERY).await;
        match store.log_lines_of_others(&writer, &cursor).await {
            Ok(lines) => {
                for (id, line) in lines {
                    hub.publish(line);
                    cursor = id;
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the log journal failed; trying again"),
        }
    }
}

impl Store {
    /// Inserts `lines` (one transaction) and trims each app to its last kept lines.
    async fn append_log_lines(&self, writer: &str, lines: &[LogLine]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut apps = BTreeSet::new();
        for line in lines {
            sqlx::query("INSERT INTO log_lines (id, app, writer, line) VALUES ($1, $2, $3, $4)")
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&line.app)
                .bind(writer)
                .bind(serde_json::to_string(line)?)
                .execute(&mut *tx)
                .await?;
            apps.insert(line.app.as_str());
        }
        for app in apps {
            sqlx::query(
                "DELETE FROM log_lines WHERE app = $1 AND id < (SELECT id FROM log_lines WHERE app = $1 \
                 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(app)
            .bind((ouro_logs::RECENT_LINES - 1) as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Publishes every app's kept lines to `hub`, oldest first; returns the newest id (the
    /// catch-up's starting point).
    async fn restore_log_lines(&self, hub: &Hub) -> Result<String> {
        let rows = sqlx::query("SELECT id, line FROM log_lines ORDER BY id").fetch_all(&self.pool).await?;
        let mut newest = String::new();
        for row in &rows {
            newest = row.try_get("id")?;
            match serde_json::from_str::<LogLine>(&row.try_get::<String, _>("line")?) {
                Ok(line) => hub.publish(line),
                Err(e) => tracing::warn!(error = %e, "an unreadable line in the log journal; skipped"),
            }
        }
        if !rows.is_empty() {
            tracing::info!(lines = rows.len(), "app logs restored from the journal");
        }
        Ok(newest)
    }

    /// Lines other writers kept after `cursor`, oldest first.
    async fn log_lines_of_others(&self, writer: &str, cursor: &str) -> Result<Vec<(String, LogLine)>> {
        let rows = sqlx::query("SELECT id, line FROM log_lines WHERE id > $1 AND writer <> $2 ORDER BY id LIMIT $3")
            .bind(cursor)
            .bind(writer)
            .bind(QUEUE as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            if let Ok(line) = serde_json::from_str::<LogLine>(&row.try_get::<String, _>("line")?) {
                lines.push((id, line));
            }
        }
        Ok(lines)
    }
}
