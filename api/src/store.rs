//! The platform's records in SQL: the pool, the migrations, and the queries of users and
//! tokens, apps, slugs, releases, formation, domains, certificates, one-offs, builds and audit
//! events. Domain modules add `impl Store` blocks of their own: the add-ons' records are in
//! `addons/store.rs`, the self-upgrades' in `upgrade.rs`, the runner's desired state is read in
//! `desired_state.rs`.
//!
//! One schema and one set of queries serve both backends through sqlx's `Any` driver: a SQLite
//! file by default, PostgreSQL when `OURO_DATABASE_URL` says so. Writes that belong together
//! run in one transaction, and every write transaction starts by writing the app's row, which
//! takes the write lock at once (SQLite) or the row lock (PostgreSQL) and so serialises
//! concurrent changes to one app.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use ouro_types::{BuildStatus, ConfigVars, ConfigVarsPatch, DEFAULT_DYNO_SIZE, Service, VolumeMount};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{Error, Result, now};

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
}

/// Which database a URL names; decides only connection setup, never a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct UserRow {
    pub id: String,
    pub email: String,
    pub admin: bool,
}

pub struct TokenRow {
    pub secret_sha256: String,
    pub user: UserRow,
    /// `runner`, or `None` for everything the user may do.
    pub scope: Option<String>,
}

pub struct AppRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub owner_email: String,
    pub created_at: String,
    pub updated_at: String,
    pub released_at: Option<String>,
    pub current_release_id: Option<String>,
    pub current_version: Option<i64>,
}

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

pub struct FormationRow {
    pub id: String,
    pub process_type: String,
    pub quantity: i64,
    pub size: String,
    pub updated_at: String,
}

pub struct DomainRow {
    pub id: String,
    pub hostname: String,
    pub created_at: String,
}

/// An SNI endpoint, without its private key.
pub struct CertificateRow {
    pub id: String,
    pub hostnames: Vec<String>,
    pub expires_at: String,
    pub created_at: String,
}

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

/// A log drain of an app.
#[derive(Clone)]
pub struct LogDrainRow {
    pub id: String,
    pub url: String,
    pub created_at: String,
}

pub struct OneOffRow {
    pub id: String,
    pub number: i64,
    pub command: String,
    pub size: String,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<VolumeMount>,
    pub api_access: bool,
    /// Runs on this slug (with the current config) instead of the current release.
    pub slug_id: Option<String>,
    pub attach: bool,
    pub tty: bool,
    pub time_to_live_seconds: Option<i64>,
    pub created_at: String,
}

/// What a new one-off dyno runs.
pub struct NewOneOff<'a> {
    pub command: &'a str,
    pub size: &'a str,
    pub env: &'a BTreeMap<String, String>,
    pub mounts: &'a [VolumeMount],
    pub api_access: bool,
    pub slug_id: Option<&'a str>,
    pub attach: bool,
    pub tty: bool,
    pub time_to_live_seconds: Option<i64>,
}

pub struct AuditRow {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: i64,
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
}

/// One validated entry of a formation batch.
pub struct FormationChange {
    pub process_type: String,
    pub quantity: Option<i64>,
    pub size: Option<String>,
}

const APP_COLUMNS: &str = "a.id, a.name, a.owner_id, u.email AS owner_email, a.created_at, \
     a.updated_at, a.released_at, a.current_release_id, \
     (SELECT r.version FROM releases r WHERE r.id = a.current_release_id) AS current_version \
     FROM apps a JOIN users u ON u.id = a.owner_id";

pub(crate) const RELEASE_COLUMNS: &str =
    "id, version, slug_id, config, description, status, actor, created_at FROM releases";

pub(crate) const SLUG_COLUMNS: &str = "id, process_types, commit_sha, commit_description, \
     expected_checksum, checksum, size, stack, created_at FROM slugs";

impl Store {
    /// Connects (creating the SQLite file if needed) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let mut options = AnyPoolOptions::new();
        if backend == Backend::Sqlite {
            // One writer at a time anyway; a few readers alongside it.
            options = options.max_connections(4);
        }
        let pool = options.connect(url).await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        migrator().run(&pool).await?;
        Ok(Store { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users and tokens -------------------------------------------------------------

    pub async fn user_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?;
        Ok(row.try_get("n")?)
    }

    /// Creates a user with one token; `secret_sha256` is the hash of the token's secret part.
    pub async fn create_user_with_token(
        &self,
        email: &str,
        admin: bool,
        token_id: &str,
        secret_sha256: &str,
        description: &str,
    ) -> Result<String> {
        let user_id = uuid::Uuid::new_v4().to_string();
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO users (id, email, admin, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&user_id)
            .bind(email)
            .bind(i64::from(admin))
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
        sqlx::query(
            "INSERT INTO tokens (id, user_id, description, secret_sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_id)
        .bind(&user_id)
        .bind(description)
        .bind(secret_sha256)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(user_id)
    }

    /// Adds a token (with its `scope`, if any) to the user `email`, making the user first when
    /// there is none.
    pub async fn add_token(
        &self,
        email: &str,
        admin: bool,
        token_id: &str,
        secret_sha256: &str,
        description: &str,
        scope: Option<&str>,
    ) -> Result<()> {
        let user = sqlx::query("SELECT id FROM users WHERE email = $1").bind(email).fetch_optional(&self.pool).await?;
        let user_id: String = match user {
            Some(user) => user.try_get("id")?,
            None => {
                let user_id = uuid::Uuid::new_v4().to_string();
                sqlx::query("INSERT INTO users (id, email, admin, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&user_id)
                    .bind(email)
                    .bind(i64::from(admin))
                    .bind(now())
                    .execute(&self.pool)
                    .await
                    .map_err(conflict_on_unique)?;
                user_id
            }
        };
        sqlx::query(
            "INSERT INTO tokens (id, user_id, description, secret_sha256, created_at, scope) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_id)
        .bind(&user_id)
        .bind(description)
        .bind(secret_sha256)
        .bind(now())
        .bind(scope)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn token(&self, token_id: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "SELECT t.secret_sha256, t.scope, u.id, u.email, u.admin FROM tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRow {
                secret_sha256: r.try_get("secret_sha256")?,
                scope: r.try_get("scope")?,
                user: UserRow {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    admin: r.try_get::<i64, _>("admin")? == 1,
                },
            })
        })
        .transpose()
    }

    /// The system user `email` with the powers `admin`, made when missing. A user whose admin
    /// flag was different is corrected and loses its tokens, which were made for other powers.
    pub async fn ensure_system_user(&self, email: &str, admin: bool) -> Result<UserRow> {
        let row =
            sqlx::query("SELECT id, admin FROM users WHERE email = $1").bind(email).fetch_optional(&self.pool).await?;
        let id = match row {
            Some(row) => {
                let id: String = row.try_get("id")?;
                if (row.try_get::<i64, _>("admin")? == 1) != admin {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query("UPDATE users SET admin = $2 WHERE id = $1")
                        .bind(&id)
                        .bind(i64::from(admin))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM tokens WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
                    tx.commit().await?;
                }
                id
            }
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query("INSERT INTO users (id, email, admin, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&id)
                    .bind(email)
                    .bind(i64::from(admin))
                    .bind(now())
                    .execute(&self.pool)
                    .await
                    .map_err(conflict_on_unique)?;
                id
            }
        };
        Ok(UserRow { id, email: email.into(), admin })
    }

    /// The oldest admin user: owner of the platform's own apps.
    pub async fn first_admin(&self) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT id, email FROM users WHERE admin = 1 ORDER BY created_at, id LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(UserRow { id: r.try_get("id")?, email: r.try_get("email")?, admin: true })).transpose()
    }

    // ---- apps -------------------------------------------------------------------------

    /// Creates the app and its release v1 ("Initial release", no slug, no config) together.
    pub async fn create_app(&self, name: &str, owner: &UserRow) -> Result<AppRow> {
        let app_id = uuid::Uuid::new_v4().to_string();
        let release_id = uuid::Uuid::new_v4().to_string();
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO apps (id, name, owner_id, release_seq, current_release_id, created_at, \
             updated_at, released_at) VALUES ($1, $2, $3, 1, $4, $5, $5, $5)",
        )
        .bind(&app_id)
        .bind(name)
        .bind(&owner.id)
        .bind(&release_id)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_on_unique)?;
        insert_release(
            &mut tx,
            &release_id,
            &app_id,
            1,
            None,
            &ConfigVars::new(),
            "Initial release",
            &owner.email,
            &now,
        )
        .await?;
        tx.commit().await?;
        self.app(&app_id).await?.ok_or_else(|| Error::NotFound(format!("app {name}")))
    }

    /// Gives the app to another user (a system app to the user that runs it).
    pub async fn set_app_owner(&self, app_id: &str, owner_id: &str) -> Result<()> {
        sqlx::query("UPDATE apps SET owner_id = $2, updated_at = $3 WHERE id = $1")
            .bind(app_id)
            .bind(owner_id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn apps(&self, owner: Option<&str>) -> Result<Vec<AppRow>> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query(&format!("SELECT {APP_COLUMNS} WHERE a.owner_id = $1 ORDER BY a.name"))
                    .bind(owner)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query(&format!("SELECT {APP_COLUMNS} ORDER BY a.name")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(app_row).collect()
    }

    /// Finds an app by name or id.
    pub async fn app(&self, name_or_id: &str) -> Result<Option<AppRow>> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} WHERE a.name = $1 OR a.id = $1"))
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(app_row).transpose()
    }

    /// Deletes the app and, by cascade, its releases, slugs and formation in one statement.
    /// Slug blobs stay in the blob store (content-addressed, possibly shared).
    pub async fn delete_app(&self, app_id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // Releases point at slugs; remove them first so the slug rows can go.
        sqlx::query("DELETE FROM releases WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM builds WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM log_drains WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM apps WHERE id = $1").bind(app_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

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

    pub async fn current_release(&self, app: &AppRow) -> Result<ReleaseRow> {
        let id = app.current_release_id.as_deref().unwrap_or_default();
        self.release_by_id(&app.id, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("current release of {}", app.name)))
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

    // ---- formation --------------------------------------------------------------------

    pub async fn formation(&self, app_id: &str) -> Result<Vec<FormationRow>> {
        let rows = sqlx::query(
            "SELECT id, process_type, quantity, size, updated_at FROM formations \
             WHERE app_id = $1 ORDER BY process_type",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(formation_row).collect()
    }

    /// Applies a whole batch or nothing; returns the rows it touched.
    pub async fn update_formation(&self, app_id: &str, changes: &[FormationChange]) -> Result<Vec<FormationRow>> {
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE apps SET updated_at = $2 WHERE id = $1").bind(app_id).bind(&now).execute(&mut *tx).await?;
        let mut touched = Vec::new();
        for change in changes {
            sqlx::query(
                "INSERT INTO formations (id, app_id, process_type, quantity, size, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (app_id, process_type) DO UPDATE SET \
                 quantity = COALESCE($7, formations.quantity), size = COALESCE($8, formations.size), \
                 updated_at = $6",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(app_id)
            .bind(&change.process_type)
            .bind(change.quantity.unwrap_or(0))
            .bind(change.size.as_deref().unwrap_or(DEFAULT_DYNO_SIZE))
            .bind(&now)
            .bind(change.quantity)
            .bind(change.size.as_deref())
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT id, process_type, quantity, size, updated_at FROM formations \
                 WHERE app_id = $1 AND process_type = $2",
            )
            .bind(app_id)
            .bind(&change.process_type)
            .fetch_one(&mut *tx)
            .await?;
            touched.push(formation_row(&row)?);
        }
        tx.commit().await?;
        Ok(touched)
    }

    // ---- domains ----------------------------------------------------------------------

    pub async fn domains(&self, app_id: &str) -> Result<Vec<DomainRow>> {
        let rows = sqlx::query("SELECT id, hostname, created_at FROM domains WHERE app_id = $1 ORDER BY hostname")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DomainRow {
                    id: r.try_get("id")?,
                    hostname: r.try_get("hostname")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds a custom domain; `Conflict` if any app has it already.
    pub async fn add_domain(&self, app_id: &str, hostname: &str) -> Result<DomainRow> {
        let row = DomainRow { id: uuid::Uuid::new_v4().to_string(), hostname: hostname.to_string(), created_at: now() };
        sqlx::query("INSERT INTO domains (id, app_id, hostname, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.id)
            .bind(app_id)
            .bind(&row.hostname)
            .bind(&row.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_on_unique)?;
        Ok(row)
    }

    /// Removes a custom domain; `false` if the app had no such domain.
    pub async fn remove_domain(&self, app_id: &str, hostname: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM domains WHERE app_id = $1 AND hostname = $2")
            .bind(app_id)
            .bind(hostname)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- restarts ---------------------------------------------------------------------

    /// Records that dynos matching `target` and started before now must be replaced.
    pub async fn request_restart(&self, app_id: &str, target: &str, at_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO dyno_restarts (app_id, target, requested_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id, target) DO UPDATE SET requested_at_ms = $3",
        )
        .bind(app_id)
        .bind(target)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- one-off dynos -------------------------------------------------------------------

    /// Records a one-off dyno `run.N` with the next free N of the app.
    pub async fn create_one_off(&self, app_id: &str, new: NewOneOff<'_>) -> Result<OneOffRow> {
        let NewOneOff { command, size, env, mounts, api_access, slug_id, attach, tty, time_to_live_seconds } = new;
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE apps SET updated_at = $2 WHERE id = $1").bind(app_id).bind(&now).execute(&mut *tx).await?;
        let row = sqlx::query("SELECT COALESCE(MAX(number), 0) AS n FROM one_off_dynos WHERE app_id = $1")
            .bind(app_id)
            .fetch_one(&mut *tx)
            .await?;
        let number = row.try_get::<i64, _>("n")? + 1;
        let one_off = OneOffRow {
            id: uuid::Uuid::new_v4().to_string(),
            number,
            command: command.to_string(),
            size: size.to_string(),
            env: env.clone(),
            mounts: mounts.to_vec(),
            api_access,
            slug_id: slug_id.map(str::to_string),
            attach,
            tty,
            time_to_live_seconds,
            created_at: now.clone(),
        };
        sqlx::query(
            "INSERT INTO one_off_dynos (id, app_id, number, command, size, env, mounts, api_access, slug_id, \
             created_at, attach, tty, time_to_live_seconds) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&one_off.id)
        .bind(app_id)
        .bind(number)
        .bind(command)
        .bind(size)
        .bind(serde_json::to_string(env)?)
        .bind(serde_json::to_string(mounts)?)
        .bind(i64::from(api_access))
        .bind(slug_id)
        .bind(&now)
        .bind(i64::from(attach))
        .bind(i64::from(tty))
        .bind(time_to_live_seconds)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(one_off)
    }

    /// One-off dynos not reported finished yet.
    pub async fn running_one_offs(&self, app_id: &str) -> Result<Vec<OneOffRow>> {
        let rows = sqlx::query(
            "SELECT id, number, command, size, env, mounts, api_access, slug_id, created_at, attach, tty, \
             time_to_live_seconds FROM one_off_dynos WHERE app_id = $1 AND finished_at IS NULL ORDER BY number",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(one_off_row).collect()
    }

    /// Marks `run.<number>` of the app (by name) finished, once.
    pub async fn finish_one_off(&self, app_name: &str, number: i64, reason: &str) -> Result<()> {
        sqlx::query(
            "UPDATE one_off_dynos SET finished_at = $3, reason = $4 \
             WHERE app_id = (SELECT id FROM apps WHERE name = $1) AND number = $2 AND finished_at IS NULL",
        )
        .bind(app_name)
        .bind(number)
        .bind(now())
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Why `run.<number>` of the app ended, once the runner has reported it finished;
    /// `None` while it is still desired.
    pub async fn one_off_finished(&self, app_id: &str, number: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT reason FROM one_off_dynos WHERE app_id = $1 AND number = $2 AND finished_at IS NOT NULL",
        )
        .bind(app_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<Option<String>, _>("reason")?.unwrap_or_else(|| "finished".into())),
            None => None,
        })
    }

    // ---- audit log --------------------------------------------------------------------

    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        app_name: Option<&str>,
        status: u16,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, actor, action, target, app_name, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(app_name)
        .bind(i64::from(status))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` events, oldest first; only those about `app_name` if given.
    pub async fn audit_events(&self, app_name: Option<&str>, limit: i64) -> Result<Vec<AuditRow>> {
        let columns = "id, actor, action, target, status, created_at FROM audit_events";
        let rows = match app_name {
            Some(app) => {
                sqlx::query(&format!("SELECT {columns} WHERE app_name = $1 ORDER BY id DESC LIMIT $2"))
                    .bind(app)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {columns} ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut events = rows
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    // ---- certificates -----------------------------------------------------------------

    /// The app's SNI endpoints, oldest first.
    pub async fn certificates(&self, app_id: &str) -> Result<Vec<CertificateRow>> {
        let rows = sqlx::query(
            "SELECT id, hostnames, expires_at, created_at FROM certificates WHERE app_id = $1 ORDER BY created_at, id",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let hostnames: String = r.try_get("hostnames")?;
                Ok(CertificateRow {
                    id: r.try_get("id")?,
                    hostnames: serde_json::from_str(&hostnames).unwrap_or_default(),
                    expires_at: r.try_get("expires_at")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Stores a checked certificate chain and key.
    pub async fn add_certificate(
        &self,
        app_id: &str,
        hostnames: Vec<String>,
        expires_at: String,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<CertificateRow> {
        let row = CertificateRow { id: uuid::Uuid::new_v4().to_string(), hostnames, expires_at, created_at: now() };
        sqlx::query(
            "INSERT INTO certificates (id, app_id, hostnames, expires_at, certificate_chain, private_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(app_id)
        .bind(serde_json::to_string(&row.hostnames).unwrap_or_else(|_| "[]".into()))
        .bind(&row.expires_at)
        .bind(chain_pem)
        .bind(key_pem)
        .bind(&row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// Removes a certificate; `false` if the app had no such certificate.
    pub async fn remove_certificate(&self, app_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM certificates WHERE app_id = $1 AND id = $2")
            .bind(app_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- builds -----------------------------------------------------------------------

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
        // Take the app's write lock first (see the module doc); changes nothing.
        let locked = sqlx::query("UPDATE apps SET release_seq = release_seq WHERE id = $1")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() != 1 {
            return Err(Error::NotFound("app".into()));
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
        Ok(row)
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

    /// What makes the app a service (an add-on server): its volumes and the apps it joins.
    pub async fn service(&self, app_id: &str) -> Result<Service> {
        let row = sqlx::query(
            "SELECT service_mounts, service_joins, service_api_access, service_host_network, service_listens \
             FROM apps WHERE id = $1",
        )
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?;
        service_row(&row)
    }

    pub async fn set_service(&self, app_id: &str, service: &Service) -> Result<()> {
        sqlx::query(
            "UPDATE apps SET service_mounts = $2, service_joins = $3, service_api_access = $4, updated_at = $5, \
             service_host_network = $6, service_listens = $7 WHERE id = $1",
        )
        .bind(app_id)
        .bind(serde_json::to_string(&service.mounts)?)
        .bind(serde_json::to_string(&service.joins)?)
        .bind(i64::from(service.api_access))
        .bind(now())
        .bind(i64::from(service.host_network))
        .bind(i64::from(service.listens))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- log drains ---------------------------------------------------------------------

    /// The app's log drains, oldest first.
    pub async fn log_drains(&self, app_id: &str) -> Result<Vec<LogDrainRow>> {
        let rows = sqlx::query("SELECT id, url, created_at FROM log_drains WHERE app_id = $1 ORDER BY created_at, id")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LogDrainRow { id: r.try_get("id")?, url: r.try_get("url")?, created_at: r.try_get("created_at")? })
            })
            .collect()
    }

    /// Every app's drains, by app name: what the API forwards at start.
    pub async fn all_log_drains(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT a.name, d.url FROM log_drains d JOIN apps a ON a.id = d.app_id ORDER BY d.created_at, d.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("url")?))).collect()
    }

    /// Adds a drain; `Error::Conflict` when the app has that URL already.
    pub async fn add_log_drain(&self, app_id: &str, url: &str) -> Result<LogDrainRow> {
        let row = LogDrainRow { id: uuid::Uuid::new_v4().to_string(), url: url.into(), created_at: now() };
        sqlx::query("INSERT INTO log_drains (id, app_id, url, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.id)
            .bind(app_id)
            .bind(&row.url)
            .bind(&row.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_on_unique)?;
        Ok(row)
    }

    /// Removes the drain named by its id or URL; whether there was one.
    pub async fn remove_log_drain(&self, app_id: &str, id_or_url: &str) -> Result<Option<LogDrainRow>> {
        let drains = self.log_drains(app_id).await?;
        let Some(drain) = drains.into_iter().find(|d| d.id == id_or_url || d.url == id_or_url) else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM log_drains WHERE id = $1").bind(&drain.id).execute(&self.pool).await?;
        Ok(Some(drain))
    }
}

/// The `service_*` columns of an app's row.
pub(crate) fn service_row(r: &AnyRow) -> Result<Service> {
    Ok(Service {
        mounts: serde_json::from_str(&r.try_get::<String, _>("service_mounts")?)?,
        joins: serde_json::from_str(&r.try_get::<String, _>("service_joins")?)?,
        api_access: r.try_get::<i64, _>("service_api_access")? != 0,
        host_network: r.try_get::<i64, _>("service_host_network")? != 0,
        listens: r.try_get::<i64, _>("service_listens")? != 0,
    })
}

pub(crate) fn one_off_row(r: &AnyRow) -> Result<OneOffRow> {
    let env: String = r.try_get("env")?;
    let mounts: String = r.try_get("mounts")?;
    Ok(OneOffRow {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        command: r.try_get("command")?,
        size: r.try_get("size")?,
        env: serde_json::from_str(&env)?,
        mounts: serde_json::from_str(&mounts)?,
        api_access: r.try_get::<i64, _>("api_access")? != 0,
        slug_id: r.try_get("slug_id")?,
        attach: r.try_get::<i64, _>("attach")? != 0,
        tty: r.try_get::<i64, _>("tty")? != 0,
        time_to_live_seconds: r.try_get("time_to_live_seconds")?,
        created_at: r.try_get("created_at")?,
    })
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

/// The database URL for a data dir when `OURO_DATABASE_URL` is not set.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("ouro.db").display())
}

pub fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(Error::Config(format!(
            "unsupported database URL `{}`: use postgres://… or leave OURO_DATABASE_URL unset for SQLite",
            url.split(':').next().unwrap_or_default()
        )))
    }
}

/// The migrations, compiled into the binary so that it needs no files beside it.
fn migrator() -> Migrator {
    let migration = |version, description, sql| {
        Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, Cow::Borrowed(sql), false)
    };
    let migrations = vec![
        migration(1, "init", include_str!("../migrations/0001_init.sql")),
        migration(2, "domains and restarts", include_str!("../migrations/0002_domains_restarts.sql")),
        migration(3, "certificates", include_str!("../migrations/0003_certificates.sql")),
        migration(4, "builds", include_str!("../migrations/0004_builds.sql")),
        migration(5, "one-off dynos", include_str!("../migrations/0005_one_off_dynos.sql")),
        migration(6, "builder", include_str!("../migrations/0006_builder.sql")),
        migration(7, "release phase", include_str!("../migrations/0007_release_phase.sql")),
        migration(8, "service apps", include_str!("../migrations/0008_service.sql")),
        migration(9, "add-ons", include_str!("../migrations/0009_addons.sql")),
        migration(10, "add-on service apps", include_str!("../migrations/0010_addon_service_app.sql")),
        migration(11, "service api access", include_str!("../migrations/0011_service_api_access.sql")),
        migration(12, "addon backups", include_str!("../migrations/0012_addon_backups.sql")),
        migration(13, "service host network", include_str!("../migrations/0013_service_host_network.sql")),
        migration(14, "upgrades", include_str!("../migrations/0014_upgrades.sql")),
        migration(15, "token scopes", include_str!("../migrations/0015_token_scopes.sql")),
        migration(16, "log drains", include_str!("../migrations/0016_log_drains.sql")),
        migration(17, "attached one-offs", include_str!("../migrations/0017_attached_one_offs.sql")),
        migration(18, "service listens", include_str!("../migrations/0018_service_listens.sql")),
    ];
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

fn config_description(set: &[String], removed: &[String]) -> String {
    match (set.is_empty(), removed.is_empty()) {
        (false, true) => format!("Set {} config vars", set.join(", ")),
        (true, false) => format!("Remove {} config vars", removed.join(", ")),
        _ => format!("Set {} and remove {} config vars", set.join(", "), removed.join(", ")),
    }
}

pub(crate) fn conflict_on_unique(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict,
        _ => Error::Db(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_release(
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

fn app_row(r: &AnyRow) -> Result<AppRow> {
    Ok(AppRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner_id: r.try_get("owner_id")?,
        owner_email: r.try_get("owner_email")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        released_at: r.try_get("released_at")?,
        current_release_id: r.try_get("current_release_id")?,
        current_version: r.try_get("current_version")?,
    })
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

pub(crate) fn formation_row(r: &AnyRow) -> Result<FormationRow> {
    Ok(FormationRow {
        id: r.try_get("id")?,
        process_type: r.try_get("process_type")?,
        quantity: r.try_get("quantity")?,
        size: r.try_get("size")?,
        updated_at: r.try_get("updated_at")?,
    })
}
