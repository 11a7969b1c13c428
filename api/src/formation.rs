//! The formation's rules: which process types may be scaled, to what quantity and size, and
//! scaling itself (the API's route and the dashboard's form both go through [`scale`]).
//!
//! Scaling is not a release (as on Heroku): it changes how many dynos run, not what they run.

use std::collections::{BTreeMap, BTreeSet};

use ouro_types::{FormationBatch, dyno_size, valid_process_type};

use crate::auth::User;
use crate::store::{AppRow, FormationChange, FormationRow};
use crate::{ApiError, AppState};

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
