//! Builds and an app's buildpacks, as records: an `impl Store` block of their own. A build is
//! `pending` from the accepted push until it ends `succeeded` or `failed`; at most one build of
//! an app is pending. How a build runs is `pipeline.rs`.

use std::time::{Duration, SystemTime};

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

    /// Marks a running build alive (its `updated_at`): the API process running it does so every
    /// [`BUILD_HEARTBEAT`].
    pub async fn touch_build(&self, build_id: &str) -> Result<()> {
        sqlx::query("UPDATE builds SET updated_at = $2 WHERE id = $1 AND status = 'pending'")
            .bind(build_id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks failed every pending build not marked alive since `stale_before` (RFC 3339, as
    /// [`now`]): the API process that ran it is gone (a build cannot outlive the process that
    /// streams it). A build that another API process still runs, as the old one does during a
    /// handover, is marked alive and kept.
    pub async fn fail_interrupted_builds(&self, stale_before: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE builds SET status = 'failed', output = output || $1, updated_at = $2 \
             WHERE status = 'pending' AND updated_at < $3",
        )
        .bind("\n !     The build was interrupted: the API process that ran it stopped. Push again.\n")
        .bind(now())
        .bind(stale_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// How often the API process running a build marks it alive.
pub const BUILD_HEARTBEAT: Duration = Duration::from_secs(15);
/// A pending build not marked alive for this long is one whose API process is gone.
pub const BUILD_STALE: Duration = Duration::from_secs(60);

/// When a pending build last marked alive before now is stale: [`BUILD_STALE`] ago.
pub fn stale_before() -> String {
    humantime::format_rfc3339_micros(SystemTime::now() - BUILD_STALE).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_build_not_marked_alive_lately_is_failed_as_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::sqlite_url(dir.path())).await.unwrap();
        store.create_user_with_token("a@example.com", true, "tok", "sha", "test").await.unwrap();
        let owner = store.first_admin().await.unwrap().unwrap();
        let mut builds = Vec::new();
        for name in ["left", "running"] {
            let app = store.create_app(name, &owner).await.unwrap();
            let commit = "0".repeat(40);
            builds.push(store.create_build(&app.id, &commit, "refs/heads/main", "SHA256:00", 1).await.unwrap());
        }
        let status = |id: String| {
            let store = store.clone();
            async move {
                sqlx::query_scalar::<_, String>("SELECT status FROM builds WHERE id = $1")
                    .bind(id)
                    .fetch_one(&store.pool)
                    .await
                    .unwrap()
            }
        };
        // Both last marked alive two minutes ago; one of them is marked alive now, as its API
        // process does while it runs.
        let long_ago = humantime::format_rfc3339_micros(SystemTime::now() - Duration::from_secs(120)).to_string();
        sqlx::query("UPDATE builds SET updated_at = $1").bind(&long_ago).execute(&store.pool).await.unwrap();
        store.touch_build(&builds[1].id).await.unwrap();
        assert_eq!(store.fail_interrupted_builds(&stale_before()).await.unwrap(), 1);
        assert_eq!(status(builds[0].id.clone()).await, "failed");
        assert_eq!(status(builds[1].id.clone()).await, "pending");
        let output: String = sqlx::query_scalar("SELECT output FROM builds WHERE id = $1")
            .bind(&builds[0].id)
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(output.contains("The build was interrupted"), "{output}");
        // Once its process stops marking it, it is failed too; a finished build never is.
        sqlx::query("UPDATE builds SET updated_at = $1").bind(&long_ago).execute(&store.pool).await.unwrap();
        assert_eq!(store.fail_interrupted_builds(&stale_before()).await.unwrap(), 1);
        assert_eq!(store.fail_interrupted_builds(&stale_before()).await.unwrap(), 0);
        assert_eq!(status(builds[1].id.clone()).await, "failed");
    }
}
