//! One-off dynos (`run.N`: `ouro run`, build dynos, release-phase commands), as records: an
//! `impl Store` block of their own. A one-off is desired from its creation until it is marked
//! finished (the runner reports it ended, or the API stops waiting for it), and then keeps the
//! reason it ended. A user's one-offs are capped ([`crate::limits`]): so many running at once
//! per app, so large an `env`; the platform's own (builds, release commands) are not.

use std::collections::BTreeMap;

use ouro_types::VolumeMount;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::limits::{ONE_OFF_ENV_BYTES, ONE_OFFS_PER_APP};
use crate::store::Store;
use crate::{ApiError, Error, Result, now};

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

/// A one-off's own `env`, as a user gives it: config var names (as `PATCH /config-vars`
/// takes), no NUL in a value, and at most [`ONE_OFF_ENV_BYTES`] of keys and values.
pub(crate) fn check_env(env: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (key, value) in env {
        if !ouro_types::valid_config_key(key) || key.len() > 256 || value.contains('\0') {
            return Err(ApiError::invalid_params(format!(
                "env var `{key}` is invalid: use letters, digits and underscores, not starting with a digit, \
                 and no NUL in its value"
            )));
        }
    }
    let size: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ONE_OFF_ENV_BYTES {
        return Err(ApiError::invalid_params(format!(
            "env takes {} KiB; a one-off dyno's env is at most {} KiB: set large values as config vars",
            size.div_ceil(1024),
            ONE_OFF_ENV_BYTES / 1024
        )));
    }
    Ok(())
}

impl Store {
    /// Records a one-off dyno `run.N` with the next free N of the app, uncapped: the
    /// platform's own (a build, a release command).
    pub async fn create_one_off(&self, app_id: &str, new: NewOneOff<'_>) -> Result<OneOffRow> {
        self.insert_one_off(app_id, new, None).await
    }

    /// Records a one-off dyno a user asked for: refused (`Error::Limit`) while the app runs
    /// [`ONE_OFFS_PER_APP`] one-offs (any, the platform's included) already.
    pub async fn create_user_one_off(&self, app_id: &str, new: NewOneOff<'_>) -> Result<OneOffRow> {
        self.insert_one_off(app_id, new, Some(ONE_OFFS_PER_APP)).await
    }

    async fn insert_one_off(&self, app_id: &str, new: NewOneOff<'_>, cap: Option<usize>) -> Result<OneOffRow> {
        let NewOneOff { command, size, env, mounts, api_access, slug_id, attach, tty, time_to_live_seconds } = new;
        let now = now();
        let mut tx = self.pool.begin().await?;
        // The app's row first: one-offs of an app are made one at a time, so the count below
        // stays true until this one is in.
        sqlx::query("UPDATE apps SET updated_at = $2 WHERE id = $1").bind(app_id).bind(&now).execute(&mut *tx).await?;
        if let Some(cap) = cap {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM one_off_dynos WHERE app_id = $1 AND finished_at IS NULL")
                .bind(app_id)
                .fetch_one(&mut *tx)
                .await?;
            let running = row.try_get::<i64, _>("n")?;
            if running >= cap as i64 {
                return Err(Error::Limit(format!(
                    "an app runs at most {cap} one-off dynos at once and this one runs {running}; wait for one \
                     to finish (`ouro ps` lists them)"
                )));
            }
        }
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
