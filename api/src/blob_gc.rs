//! Collection of blobs nothing needs any more: the slugs of all but each app's last
//! [`KEEP_RELEASES`] releases, the sources of all but its last [`KEEP_BUILDS`] builds, and
//! whatever deleted apps left (their slug and source blobs stay behind their rows). Add-on
//! backups are kept until their add-on goes. A blob younger than the grace period is never
//! taken (an upload waiting for its release, a build in progress), and committing a blob that
//! exists makes it young again. Releases older than the last ten keep their rows (history);
//! rolling back to one whose slug was collected is refused with why (`slug_kept`).
//!
//! Runs every `OURO_BLOB_GC_SECONDS` (an hour) in a task of the API; two API processes (a
//! handover) may both run it: it is idempotent.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use sqlx::Row;

use crate::blob::BlobStore;
use crate::store::Store;
use crate::{AppState, Result};

/// Releases per app whose slugs are kept (rollback targets).
pub const KEEP_RELEASES: i64 = 10;
/// Builds per app whose sources are kept.
pub const KEEP_BUILDS: i64 = 10;

/// Collects now; returns how many blobs were removed.
pub async fn collect(store: &Store, blobs: &dyn BlobStore, grace: Duration) -> Result<usize> {
    let since = humantime::format_rfc3339_micros(SystemTime::now() - grace).to_string();
    let kept = store.blobs_in_use(&since).await?;
    let mut removed = 0;
    for (digest, stored) in blobs.list().await? {
        let young = stored.elapsed().map(|age| age < grace).unwrap_or(true);
        if young || kept.contains(&digest) {
            continue;
        }
        blobs.remove(&digest).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Collects every `every`, for as long as the API runs.
pub async fn collect_forever(state: AppState, every: Duration, grace: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match collect(&state.store, state.blobs.as_ref(), grace).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed blobs no release, build or backup needs"),
            Err(e) => tracing::warn!(error = %e, "could not collect blobs; trying again later"),
        }
    }
}

/// Whether the blob of a slug (`SHA256:<hex>`) is still stored.
pub async fn slug_kept(blobs: &dyn BlobStore, checksum: &str) -> bool {
    blobs.open(&digest_of(checksum)).await.is_ok()
}

/// The blob store's key of a checksum (`SHA256:<hex>` or `<hex>`).
fn digest_of(checksum: &str) -> String {
    checksum.trim_start_matches("SHA256:").to_ascii_lowercase()
}

impl Store {
    /// The digests of every blob something still needs, counting anything made after `since`.
    async fn blobs_in_use(&self, since: &str) -> Result<HashSet<String>> {
        let rows = sqlx::query(
            "SELECT s.checksum AS blob FROM slugs s JOIN (SELECT slug_id, ROW_NUMBER() OVER \
               (PARTITION BY app_id ORDER BY version DESC) AS n FROM releases WHERE slug_id IS NOT NULL) r \
               ON r.slug_id = s.id WHERE r.n <= $1 AND s.checksum IS NOT NULL \
             UNION SELECT checksum AS blob FROM slugs WHERE created_at > $3 AND checksum IS NOT NULL \
             UNION SELECT b.source_blob AS blob FROM (SELECT source_blob, ROW_NUMBER() OVER \
               (PARTITION BY app_id ORDER BY created_at DESC) AS n FROM builds) b WHERE b.n <= $2 \
             UNION SELECT source_blob AS blob FROM builds WHERE created_at > $3 \
             UNION SELECT blob FROM addon_backups",
        )
        .bind(KEEP_RELEASES)
        .bind(KEEP_BUILDS)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(digest_of(&r.try_get::<String, _>("blob")?))).collect()
    }
}
