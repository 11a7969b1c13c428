//! Releases and slugs, as records: an `impl Store` block of their own.
//!
//! Releases are immutable and numbered: [`Store::create_release`] makes vN+1 from the current
//! release and a [`Change`] (config vars, a deploy of a slug, a rollback) and points the app at
//! it, in one transaction that also gives a new slug's process types their formation entries.
//! A slug's blob is recorded once ([`Store::set_slug_blob`]). An app's release v1 is made with
//! the app, and its current release read, in `apps.rs`.

use std::collections::BTreeMap;

use ouro_types::{ConfigVars, ConfigVarsPatch, DEFAULT_DYNO_SIZE};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::store::Store;
use crate::{Error, Result, now};

pub struct ReleaseRow {
    pub id: String,
    pub version: i64,
    pub slug_id: Option<String>,
    pub config: ConfigVars,
    pub description: String,
    pub status: String,
    pub actor: String,
    pub created_at: String,
}

#[derive(Clone)]
pub struct SlugRow {
    pub id: String,
    pub process_types: BTreeMap<String, String>,
    pub commit_sha: Option<String>,
    pub commit_description: Option<String>,
    pub expected_checksum: Option<String>,
    pub checksum: Option<String>,
    pub size: Option<i64>,
    pub stack: String,
    pub created_at: String,
}

/// What a new release changes relative to the current one.
pub enum Change {
    /// Set (`Some`) and unset (`None`) config vars; keeps the slug.
    Config(ConfigVarsPatch),
    /// Run this slug with the current config.
    Deploy { slug_id: String, description: Option<String> },
    /// Copy slug and config of release `version`.
    Rollback { version: i64 },
    /// The current slug and config again, onto the stack with a stack update installed
    /// (`stack_updates.rs`): the runner rolls the dynos over as for any release.
    StackUpdate { description: String },
}

pub(crate) const RELEASE_COLUMNS: &str =
    "id, version, slug_id, config, description, status, actor, created_at FROM releases";

pub(crate) const SLUG_COLUMNS: &str = "id, process_types, commit_sha, commit_description, \
     expected_checksum, checksum, size, stack, created_at FROM slugs";

impl Store {
    // ---- releases ---------------------------------------------------------------------

    pub async fn releases(&self, app_id: &str) -> Result<Vec<ReleaseRow>> {
        let rows = sqlx::query(&format!("SELECT {RELEASE_COLUMNS} WHERE app_id = $1 ORDER BY version"))
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(release_row).collect()
    }

    pub async fn release_by_version(&self, app_id: &str, version: i64) -> Result<Option<ReleaseRow>> {
        let row = sqlx::query(&format!("SELECT {RELEASE_COLUMNS} WHERE app_id = $1 AND version = $2"))
            .bind(app_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(release_row).transpose()
    }

    pub async fn release_by_id(&self, app_id: &str, id: &str) -> Result<Option<ReleaseRow>> {
        let row = sqlx::query(&format!("SELECT {RELEASE_COLUMNS} WHERE app_id = $1 AND id = $2"))
            .bind(app_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(release_row).transpose()
    }

    /// Makes release vN+1 from the current one and `change`, and points the app at it, in one
    /// transaction. Returns `None` (and writes nothing) when a config change changes nothing.
    pub async fn create_release(&self, app_id: &str, actor: &str, change: Change) -> Result<Option<ReleaseRow>> {
        let now = now();
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE apps SET release_seq = release_seq + 1, updated_at = $2 WHERE id = $1 \
             RETURNING release_seq, current_release_id",
        )
        .bind(app_id)
        .bind(&now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::NotFound("app".into()))?;
        let version: i64 = row.try_get("release_seq")?;
        let current_id: Option<String> = row.try_get("current_release_id")?;
        let current = fetch_release(&mut tx, app_id, "id = $2", current_id.unwrap_or_default()).await?;
        let (slug_id, config, description) = match change {
            Change::Config(patch) => {
                let current = current.ok_or_else(|| Error::NotFound("current release".into()))?;
                let mut config = current.config.clone();
                let (mut set, mut removed) = (Vec::new(), Vec::new());
                for (key, value) in patch {
                    match value {
                        Some(value) => {
                            if config.get(&key) != Some(&value) {
                                config.insert(key.clone(), value);
                                set.push(key);
                            }
                        }
                        None => {
                            if config.remove(&key).is_some() {
                                removed.push(key);
                            }
                        }
                    }
                }
                if set.is_empty() && removed.is_empty() {
                    return Ok(None); // dropping `tx` rolls back the version bump
                }
                (current.slug_id, config, config_description(&set, &removed))
            }
            Change::Deploy { slug_id, description } => {
                let config = current.map(|c| c.config).unwrap_or_default();
                let slug = fetch_slug(&mut tx, app_id, &slug_id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("slug {slug_id}")))?;
                let description = description.unwrap_or_else(|| match &slug.commit_sha {
                    Some(commit) => format!("Deploy {}", &commit[..commit.len().min(7)]),
                    None => format!("Deploy slug {}", &slug.id[..8]),
                });
                ensure_formation(&mut tx, app_id, &slug.process_types, &now).await?;
                (Some(slug_id), config, description)
            }
            Change::Rollback { version: target } => {
                let old = fetch_release(&mut tx, app_id, "version = $2", target)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("release v{target}")))?;
                if let Some(slug_id) = &old.slug_id {
                    if let Some(slug) = fetch_slug(&mut tx, app_id, slug_id).await? {
                        ensure_formation(&mut tx, app_id, &slug.process_types, &now).await?;
                    }
                }
                (old.slug_id, old.config, format!("Rollback to v{target}"))
            }
            Change::StackUpdate { description } => {
                let current = current.ok_or_else(|| Error::NotFound("current release".into()))?;
                (current.slug_id, current.config, description)
            }
        };
        let release_id = uuid::Uuid::new_v4().to_string();
        insert_release(&mut tx, &release_id, app_id, version, slug_id.as_deref(), &config, &description, actor, &now)
            .await?;
        sqlx::query("UPDATE apps SET current_release_id = $2, released_at = $3 WHERE id = $1")
            .bind(app_id)
            .bind(&release_id)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        let release = fetch_release(&mut tx, app_id, "id = $2", release_id).await?;
        tx.commit().await?;
        Ok(release)
    }

    // ---- slugs ------------------------------------------------------------------------

    pub async fn create_slug(&self, app_id: &str, slug: SlugRow) -> Result<SlugRow> {
        sqlx::query(
            "INSERT INTO slugs (id, app_id, process_types, commit_sha, commit_description, \
             expected_checksum, stack, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&slug.id)
        .bind(app_id)
        .bind(serde_json::to_string(&slug.process_types)?)
        .bind(&slug.commit_sha)
        .bind(&slug.commit_description)
        .bind(&slug.expected_checksum)
        .bind(&slug.stack)
        .bind(&slug.created_at)
        .execute(&self.pool)
        .await?;
        Ok(slug)
    }

    pub async fn slug(&self, app_id: &str, slug_id: &str) -> Result<Option<SlugRow>> {
        let row = sqlx::query(&format!("SELECT {SLUG_COLUMNS} WHERE app_id = $1 AND id = $2"))
            .bind(app_id)
            .bind(slug_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(slug_row).transpose()
    }

    /// The app (id) a slug belongs to, with the slug: to promote it to another app.
    pub async fn slug_anywhere(&self, slug_id: &str) -> Result<Option<(String, SlugRow)>> {
        let row = sqlx::query(&format!("SELECT app_id, {SLUG_COLUMNS} WHERE id = $1"))
            .bind(slug_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| Ok((r.try_get("app_id")?, slug_row(r)?))).transpose()
    }

    /// A copy of an uploaded slug as a slug of app `app_id`, over the same blob.
    pub async fn copy_slug(&self, slug: SlugRow, app_id: &str) -> Result<SlugRow> {
        let checksum = slug.checksum.clone().ok_or_else(|| Error::NotFound("the slug's blob".into()))?;
        let copy = SlugRow { id: uuid::Uuid::new_v4().to_string(), created_at: now(), ..slug };
        let copy = self.create_slug(app_id, copy).await?;
        self.set_slug_blob(&copy.id, &checksum, copy.size.unwrap_or(0)).await?;
        Ok(SlugRow { checksum: Some(checksum), ..copy })
    }

    /// Records the uploaded blob of a slug. A slug's content is set once: returns `false` if
    /// it already has a different checksum.
    pub async fn set_slug_blob(&self, slug_id: &str, checksum: &str, size: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE slugs SET checksum = $2, size = $3 WHERE id = $1 AND (checksum IS NULL OR checksum = $2)",
        )
        .bind(slug_id)
        .bind(checksum)
        .bind(size)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn config_description(set: &[String], removed: &[String]) -> String {
    match (set.is_empty(), removed.is_empty()) {
        (false, true) => format!("Set {} config vars", set.join(", ")),
        (true, false) => format!("Remove {} config vars", removed.join(", ")),
        _ => format!("Set {} and remove {} config vars", set.join(", "), removed.join(", ")),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_release(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    app_id: &str,
    version: i64,
    slug_id: Option<&str>,
    config: &ConfigVars,
    description: &str,
    actor: &str,
    now: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO releases (id, app_id, version, slug_id, config, description, status, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'succeeded', $7, $8)",
    )
    .bind(id)
    .bind(app_id)
    .bind(version)
    .bind(slug_id)
    .bind(serde_json::to_string(config)?)
    .bind(description)
    .bind(actor)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn fetch_release<T>(
    tx: &mut Transaction<'_, Any>,
    app_id: &str,
    filter: &str,
    key: T,
) -> Result<Option<ReleaseRow>>
where
    T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any> + Send,
{
    let row = sqlx::query(&format!("SELECT {RELEASE_COLUMNS} WHERE app_id = $1 AND {filter}"))
        .bind(app_id)
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(release_row).transpose()
}

async fn fetch_slug(tx: &mut Transaction<'_, Any>, app_id: &str, slug_id: &str) -> Result<Option<SlugRow>> {
    let row = sqlx::query(&format!("SELECT {SLUG_COLUMNS} WHERE app_id = $1 AND id = $2"))
        .bind(app_id)
        .bind(slug_id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(slug_row).transpose()
}

/// Adds a formation entry for each process type that has none yet: `web` at 1 (a first deploy
/// serves at once, as on Heroku), every other type at 0.
async fn ensure_formation(
    tx: &mut Transaction<'_, Any>,
    app_id: &str,
    process_types: &BTreeMap<String, String>,
    now: &str,
) -> Result<()> {
    for process_type in process_types.keys() {
        sqlx::query(
            "INSERT INTO formations (id, app_id, process_type, quantity, size, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (app_id, process_type) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(app_id)
        .bind(process_type)
        .bind(i64::from(process_type == "web"))
        .bind(DEFAULT_DYNO_SIZE)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) fn release_row(r: &AnyRow) -> Result<ReleaseRow> {
    let config: String = r.try_get("config")?;
    Ok(ReleaseRow {
        id: r.try_get("id")?,
        version: r.try_get("version")?,
        slug_id: r.try_get("slug_id")?,
        config: serde_json::from_str(&config)?,
        description: r.try_get("description")?,
        status: r.try_get("status")?,
        actor: r.try_get("actor")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(crate) fn slug_row(r: &AnyRow) -> Result<SlugRow> {
    let process_types: String = r.try_get("process_types")?;
    Ok(SlugRow {
        id: r.try_get("id")?,
        process_types: serde_json::from_str(&process_types)?,
        commit_sha: r.try_get("commit_sha")?,
        commit_description: r.try_get("commit_description")?,
        expected_checksum: r.try_get("expected_checksum")?,
        checksum: r.try_get("checksum")?,
        size: r.try_get("size")?,
        stack: r.try_get("stack")?,
        created_at: r.try_get("created_at")?,
    })
}
