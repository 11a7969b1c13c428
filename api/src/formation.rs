//! The formation's rules: which process types may be scaled, to what quantity and size, and
//! scaling itself (the API's route and the dashboard's form both go through [`scale`]).
//!
//! Scaling is not a release (as on Heroku): it changes how many dynos run, not what they run.
//! The formation's records (`formations`) and the restarts asked of the runner
//! (`dyno_restarts`) are an `impl Store` block at the bottom.

use std::collections::{BTreeMap, BTreeSet};

use ouro_types::{DEFAULT_DYNO_SIZE, FormationBatch, dyno_size, valid_process_type};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::apps::AppRow;
use crate::auth::User;
use crate::store::Store;
use crate::{ApiError, AppState, Result as StoreResult, now};

/// Most dynos of one process type.
const MAX_QUANTITY: i64 = 100;

/// Validates and applies a formation batch (all or nothing) and says so in the app's log;
/// answers the whole formation and the current release's commands. The dashboard scales
/// through this too.
pub(crate) async fn scale(
    state: &AppState,
    user: &User,
    app: &AppRow,
    batch: FormationBatch,
) -> Result<(Vec<FormationRow>, Option<BTreeMap<String, String>>), ApiError> {
    let commands = commands(state, app).await?;
    let changes = validate(batch, commands.as_ref())?;
    let rows = state.store.update_formation(&app.id, &changes).await?;
    let scaled: Vec<String> = rows
        .iter()
        .filter(|r| changes.iter().any(|c| c.process_type == r.process_type))
        .map(|r| format!("{}@{}:{}", r.process_type, r.quantity, r.size))
        .collect();
    state.logs.event(&app.name, "api", format!("Scaled to {} by {}", scaled.join(" "), user.email));
    Ok((rows, commands))
}

/// Process type → command of the current release's slug; `None` while it has no slug.
pub(crate) async fn commands(state: &AppState, app: &AppRow) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    let release = state.store.current_release(app).await?;
    let Some(slug_id) = release.slug_id else { return Ok(None) };
    Ok(state.store.slug(&app.id, &slug_id).await?.map(|s| s.process_types))
}

/// Before the first deploy any well-formed process type may be scaled (so a formation can be
/// prepared); once a slug runs, only the types it declares, as on Heroku.
fn validate(
    batch: FormationBatch,
    commands: Option<&BTreeMap<String, String>>,
) -> Result<Vec<FormationChange>, ApiError> {
    if batch.updates.is_empty() || batch.updates.len() > 50 {
        return Err(ApiError::invalid_params("`updates` must hold 1 to 50 entries"));
    }
    let mut seen = BTreeSet::new();
    let mut changes = Vec::new();
    for update in batch.updates {
        let process_type = update.process_type;
        if !valid_process_type(&process_type) || process_type == "run" {
            return Err(ApiError::invalid_params(format!(
                "process type `{process_type}` is invalid: use 1 to 30 lowercase letters, digits, `-` and `_` \
                 (`run` is kept for one-off dynos)"
            )));
        }
        if !seen.insert(process_type.clone()) {
            return Err(ApiError::invalid_params(format!("process type `{process_type}` appears twice")));
        }
        if let Some(commands) = commands {
            if !commands.contains_key(&process_type) {
                let known: Vec<&str> = commands.keys().map(String::as_str).collect();
                return Err(ApiError::invalid_params(format!(
                    "no process type `{process_type}` in the current release (it has: {})",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )));
            }
        }
        if let Some(q) = update.quantity {
            if !(0..=MAX_QUANTITY).contains(&q) {
                return Err(ApiError::invalid_params(format!("quantity must be 0 to {MAX_QUANTITY}, not {q}")));
            }
        }
        let size = match update.size {
            Some(size) => Some(
                dyno_size(&size)
                    .ok_or_else(|| {
                        let names: Vec<&str> = ouro_types::DYNO_SIZES.iter().map(|s| s.name).collect();
                        ApiError::invalid_params(format!("unknown dyno size `{size}`; sizes: {}", names.join(", ")))
                    })?
                    .name
                    .to_string(),
            ),
            None => None,
        };
        if update.quantity.is_none() && size.is_none() {
            return Err(ApiError::invalid_params(format!("give a quantity or a size for `{process_type}`")));
        }
        changes.push(FormationChange { process_type, quantity: update.quantity, size });
    }
    Ok(changes)
}

// ---- records ---------------------------------------------------------------------------

pub struct FormationRow {
    pub id: String,
    pub process_type: String,
    pub quantity: i64,
    pub size: String,
    pub updated_at: String,
}

/// One validated entry of a formation batch.
pub struct FormationChange {
    pub process_type: String,
    pub quantity: Option<i64>,
    pub size: Option<String>,
}

impl Store {
    // ---- formation --------------------------------------------------------------------

    pub async fn formation(&self, app_id: &str) -> StoreResult<Vec<FormationRow>> {
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
    pub async fn update_formation(&self, app_id: &str, changes: &[FormationChange]) -> StoreResult<Vec<FormationRow>> {
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
        let total: i64 =
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM formations WHERE app_id = $1")
                .bind(app_id)
                .fetch_one(&mut *tx)
                .await?;
        if total > crate::limits::DYNOS_PER_APP {
            // Dropping the transaction undoes the batch.
            return Err(crate::Error::Limit(format!(
                "an app runs at most {} dynos in all (this would be {total}); scale another process type down first",
                crate::limits::DYNOS_PER_APP
            )));
        }
        tx.commit().await?;
        Ok(touched)
    }

    // ---- restarts ---------------------------------------------------------------------

    /// Records that dynos matching `target` and started before now must be replaced.
    pub async fn request_restart(&self, app_id: &str, target: &str, at_ms: i64) -> StoreResult<()> {
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
}

pub(crate) fn formation_row(r: &AnyRow) -> StoreResult<FormationRow> {
    Ok(FormationRow {
        id: r.try_get("id")?,
        process_type: r.try_get("process_type")?,
        quantity: r.try_get("quantity")?,
        size: r.try_get("size")?,
        updated_at: r.try_get("updated_at")?,
    })
}
