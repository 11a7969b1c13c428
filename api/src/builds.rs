//! Builds and an app's buildpacks, as records: an `impl Store` block of their own. A build is
//! `pending` from the accepted push until it ends `succeeded` or `failed`; at most one build of
//! an app is pending. How a build runs is `pipeline.rs`.

use ouro_types::BuildStatus;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::Store;
use crate::{Error, Result, now};

#[derive(Clone)]
pub struct BuildRow {
    pub id: String,
    pub status: BuildStatus,
    pub source_commit: String,
    pub source_ref: String,
    /// `SHA256:<hex>`, the blob store key of the source tar.gz.
    pub source_blob: String,
    pub source_size: i64,
    pub output: String,
    pub release_version: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// The app's buildpacks (`buildpacks:set`), in order; empty means detect.
    pub async fn buildpacks(&self, app_id: &str) -> Result<Vec<String>> {
        let row = sqlx::query("SELECT buildpacks FROM apps WHERE id = $1").bind(app_id).fetch_one(&self.pool).await?;
        Ok(serde_json::from_str(&row.try_get::<String, _>("buildpacks")?)?)
    }

    pub async fn set_buildpacks(&self, app_id: &str, buildpacks: &[String]) -> Result<()> {
        sqlx::query("UPDATE apps SET buildpacks = $2, updated_at = $3 WHERE id = $1")
            .bind(app_id)
            .bind(serde_json::to_string(buildpacks)?)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The app's builds, oldest first (ids are UUIDv7: they sort by time).
    pub async fn builds(&self, app_id: &str) -> Result<Vec<BuildRow>> {
        let rows = sqlx::query(&format!("SELECT {BUILD_COLUMNS} WHERE app_id = $1 ORDER BY created_at, id"))
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(build_row).collect()
    }

    pub async fn build(&self, app_id: &str, id: &str) -> Result<Option<BuildRow>> {
        let row = sqlx::query(&format!("SELECT {BUILD_COLUMNS} WHERE app_id = $1 AND id = $2"))
            .bind(app_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(build_row).transpose()
    }

    /// Queues a pending build of an accepted push. At most one build per app is pending: a
    /// pending one left from an earlier push is marked failed ("superseded") in the same
    /// transaction, so the newest push is the one that gets built.
    pub async fn create_build(
        &self,
        app_id: &str,
        commit: &str,
        git_ref: &str,
        source_blob: &str,
        source_size: i64,
    ) -> Result<BuildRow> {
        let made = self.insert_build(app_id, commit, git_ref, source_blob, source_size, false).await?;
        made.ok_or_else(|| Error::NotFound("app".into()))
    }

    /// As [`Store::create_build`], unless a build of the same source is pending: then `None`
    /// and nothing changes. Decided under the app's write lock, so that of two API processes
    /// (a handover) asking at once for the same build, one makes it: two builds of one app at
    /// once share its cache volume and break each other (a provider's build failed so in a
    /// benchmark run, `tar: ./usr: Cannot mkdir`).
    pub async fn create_build_once(
        &self,
        app_id: &str,
        commit: &str,
        git_ref: &str,
        source_blob: &str,
        source_size: i64,
    ) -> Result<Option<BuildRow>> {
        self.insert_build(app_id, commit, git_ref, source_blob, source_size, true).await
    }

    async fn insert_build(
        &self,
        app_id: &str,
        commit: &str,
        git_ref: &str,
        source_blob: &str,
        source_size: i64,
        once: bool,
    ) -> Result<Option<BuildRow>> {
        let now = now();
        let row = BuildRow {
            id: uuid::Uuid::now_v7().to_string(),
            status: BuildStatus::Pending,
            source_commit: commit.into(),
            source_ref: git_ref.into(),
            source_blob: source_blob.into(),
            source_size,
            output: String::new(),
            release_version: None,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let mut tx = self.pool.begin().await?;
        // Take the app's write lock first (see `store.rs`); changes nothing.
        let locked = sqlx::query("UPDATE apps SET release_seq = release_seq WHERE id = $1")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() != 1 {
            return Err(Error::NotFound("app".into()));
        }
        if once {
            let pending =
                sqlx::query("SELECT id FROM builds WHERE app_id = $1 AND status = 'pending' AND source_blob = $2")
                    .bind(app_id)
                    .bind(source_blob)
                    .fetch_optional(&mut *tx)
                    .await?;
            if pending.is_some() {
                return Ok(None); // dropping `tx` rolls back (it changed nothing)
            }
        }
        sqlx::query(
            "UPDATE builds SET status = 'failed', output = $1, updated_at = $2 \
             WHERE app_id = $3 AND status = 'pending'",
        )
        .bind(format!("Superseded by build {} (a newer push) before it started.\n", row.id))
        .bind(&now)
        .bind(app_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO builds (id, app_id, status, source_commit, source_ref, source_blob, source_size, output, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id)
        .bind(app_id)
        .bind(row.status.as_str())
        .bind(&row.source_commit)
        .bind(&row.source_ref)
        .bind(&row.source_blob)
        .bind(row.source_size)
        .bind(&row.output)
        .bind(&row.created_at)
        .bind(&row.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Ends a build: `succeeded` or `failed`, its whole log, the release it made. Only a
    /// pending build changes; returns whether this one did.
    pub async fn finish_build(
        &self,
        build_id: &str,
        status: BuildStatus,
        output: &str,
        release_version: Option<i64>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE builds SET status = $2, output = $3, release_version = $4, updated_at = $5 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(build_id)
        .bind(status.as_str())
        .bind(output)
        .bind(release_version)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Saves the log of a running (pending) build so far.
    pub async fn save_build_output(&self, build_id: &str, output: &str) -> Result<()> {
        sqlx::query("UPDATE builds SET output = $2 WHERE id = $1 AND status = 'pending'")
            .bind(build_id)
            .bind(output)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks every pending build failed: run at start, since a build cannot outlive the API
    /// process that streams it.
    pub async fn fail_interrupted_builds(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE builds SET status = 'failed', output = output || $1, updated_at = $2 WHERE status = 'pending'",
        )
        .bind("\n !     The build was interrupted: the API restarted while it ran. Push again.\n")
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

const BUILD_COLUMNS: &str = "id, status, source_commit, source_ref, source_blob, source_size, output, \
                             release_version, created_at, updated_at FROM builds";

fn build_row(r: &AnyRow) -> Result<BuildRow> {
    Ok(BuildRow {
        id: r.try_get("id")?,
        status: r.try_get::<String, _>("status")?.parse()?,
        source_commit: r.try_get("source_commit")?,
        source_ref: r.try_get("source_ref")?,
        source_blob: r.try_get("source_blob")?,
        source_size: r.try_get("source_size")?,
        output: r.try_get("output")?,
        release_version: r.try_get("release_version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}
