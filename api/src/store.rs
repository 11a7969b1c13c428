//! The platform's records in SQL: the pool ([`Store`]), the migrations, and what the domain
//! modules' queries share. Each resource's queries live with its rules, in an `impl Store` block
//! of their own: users and tokens in `accounts.rs`, apps in `apps.rs`, releases and slugs in
//! `releases.rs`, the formation and restarts in `formation.rs`, domains and certificates in
//! `domains.rs`, one-off dynos in `one_offs.rs`, builds and buildpacks in `builds.rs`, the
//! service settings of apps in `services.rs`, log drains in `logs.rs`, the audit log in
//! `audit.rs`, add-ons in `addons/store.rs`, self-upgrades in `upgrade.rs`, the dashboard's
//! sessions in `dashboard/session.rs`; the runner's desired state is read in
//! `desired_state.rs`.
//!
//! One schema and one set of queries serve both backends through sqlx's `Any` driver: a SQLite
//! file by default, PostgreSQL when `OURO_DATABASE_URL` says so. Writes that belong together
//! run in one transaction, and every write transaction starts by writing the app's row, which
//! takes the write lock at once (SQLite) or the row lock (PostgreSQL) and so serialises
//! concurrent changes to one app.

use std::borrow::Cow;
use std::path::Path;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::{Error, Result};

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
        migration(19, "volume owners", include_str!("../migrations/0019_volume_owners.sql")),
        migration(20, "log lines", include_str!("../migrations/0020_log_lines.sql")),
        migration(21, "dashboard sessions", include_str!("../migrations/0021_dashboard_sessions.sql")),
        migration(22, "stack updates", include_str!("../migrations/0022_stack_updates.sql")),
        migration(23, "token life", include_str!("../migrations/0023_token_life.sql")),
        migration(24, "user passwords", include_str!("../migrations/0024_user_passwords.sql")),
        migration(25, "collaborators", include_str!("../migrations/0025_collaborators.sql")),
        migration(26, "teams", include_str!("../migrations/0026_teams.sql")),
        migration(27, "automatic certificates", include_str!("../migrations/0027_acm.sql")),
    ];
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// A unique constraint's violation as [`Error::Conflict`]; any other error as it is.
pub(crate) fn conflict_on_unique(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::Conflict,
        _ => Error::Db(e),
    }
}
