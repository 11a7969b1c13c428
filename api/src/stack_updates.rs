//! Stack updates, as Heroku patches its stacks: `ouro stack:update` (an admin's
//! `POST /stacks/debian-13/actions/update`), or the schedule an operator sets with
//! `OURO_STACK_UPDATE_SECONDS`, records an update and releases every app on the run stack or
//! the build stack (the builder) again (same slug, same config, description `Stack update …`).
//! The desired state gives each such release the latest update's id
//! (`DesiredRelease::stack_update`): the runner makes the stack with Debian's latest updates
//! installed (`ouro/stack:…-u<id>`, `ouro/stack-build:…-u<id>`, once each, when a release
//! needs it), the release's slug image on it, and rolls the dynos over as for any release:
//! web dynos of the old release serve until the new ones are up, so no request fails. Builds
//! started after it run on the updated build stack.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::Row;

use crate::releases::Change;
use crate::store::Store;
use crate::{AppState, Result, now};

/// The latest stack update (the desired state reads it in its own transaction).
pub(crate) const LATEST: &str = "SELECT id, actor, created_at FROM stack_updates ORDER BY requested_ms DESC LIMIT 1";

/// One stack update, as `POST /stacks/debian-13/actions/update` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct StackUpdateRow {
    /// The ms since the epoch when it was asked for (grows from one to the next).
    pub id: String,
    pub actor: String,
    pub created_at: String,
}

/// An app released onto the update.
#[derive(Debug, Clone, Serialize)]
pub struct Released {
    pub app: String,
    pub version: i64,
}

impl Store {
    /// The latest stack update, if any was asked for.
    pub async fn latest_stack_update(&self) -> Result<Option<StackUpdateRow>> {
        let row = sqlx::query(LATEST).fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(StackUpdateRow {
                id: r.try_get("id")?,
                actor: r.try_get("actor")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Records a new update, later than every earlier one, and returns it.
    async fn insert_stack_update(&self, actor: &str) -> Result<StackUpdateRow> {
        let mut tx = self.pool.begin().await?;
        let latest: Option<i64> = sqlx::query("SELECT MAX(requested_ms) AS latest FROM stack_updates")
            .fetch_one(&mut *tx)
            .await?
            .try_get("latest")?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let ms = now_ms.max(latest.unwrap_or(0) + 1);
        let row = StackUpdateRow { id: ms.to_string(), actor: actor.to_string(), created_at: now() };
        sqlx::query("INSERT INTO stack_updates (id, requested_ms, actor, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.id)
            .bind(ms)
            .bind(&row.actor)
            .bind(&row.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }
}

/// Records a stack update asked for by `actor` and releases every app whose current release
/// runs a slug on the run or the build stack onto it; returns the update and the releases
/// made. The update is recorded first: from then on every release (these and any later one)
/// is made on it.
pub async fn request(state: &AppState, actor: &str) -> Result<(StackUpdateRow, Vec<Released>)> {
    let update = state.store.insert_stack_update(actor).await?;
    let description =
        |stack: &str| format!("Stack update: {stack} with Debian's latest updates (update {})", update.id);
    let mut released = Vec::new();
    for app in state.store.apps(None).await? {
        let Ok(current) = state.store.current_release(&app).await else { continue };
        let Some(slug_id) = &current.slug_id else { continue };
        let stack = state
            .store
            .slug(&app.id, slug_id)
            .await?
            .filter(|slug| slug.checksum.is_some())
            .map(|slug| slug.stack)
            .filter(|stack| [ouro_types::STACK, ouro_types::BUILD_STACK].contains(&stack.as_str()));
        let Some(stack) = stack else { continue };
        let change = Change::StackUpdate { description: description(&stack) };
        match state.create_release(&app, actor, change).await {
            Ok(Some(release)) => released.push(Released { app: app.name.clone(), version: release.version }),
            Ok(None) => {}
            // An app deleted meanwhile; any other app still gets its release.
            Err(e) => tracing::warn!(app = %app.name, error = %e, "could not release an app onto the stack update"),
        }
    }
    state.changed();
    tracing::info!(update = %update.id, %actor, apps = released.len(), "stack update asked for");
    Ok((update, released))
}

/// With `every` set (`OURO_STACK_UPDATE_SECONDS`), asks for a stack update whenever the latest
/// one (or, before any, the stack's own updates as the runner reports them) is older than
/// `every`, for as long as the API runs. Two API processes (a handover) may both look: the
/// second finds the first's update young.
pub async fn schedule_forever(state: AppState, every: Option<Duration>) {
    let Some(every) = every else { return };
    let check = every.min(Duration::from_secs(600)).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(check).await;
        match due(&state, every).await {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = request(&state, "ouro (schedule)").await {
                    tracing::warn!(error = %e, "could not start the scheduled stack update; trying again later");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not look at the stack's age; trying again later"),
        }
    }
}

/// Whether the stack's latest updates are older than `every`. Nothing reported and no update
/// asked for: not yet (the stack is being made).
async fn due(state: &AppState, every: Duration) -> Result<bool> {
    let last = match state.store.latest_stack_update().await? {
        Some(update) => update.created_at,
        None => {
            let reported = state.stacks.read().map(|s| s.clone()).unwrap_or_default();
            match reported.into_iter().find(|s| s.name == ouro_types::STACK).and_then(|s| s.updated_at) {
                Some(at) => at,
                None => return Ok(false),
            }
        }
    };
    let Ok(last) = humantime::parse_rfc3339_weak(&last) else { return Ok(false) };
    Ok(SystemTime::now().duration_since(last).is_ok_and(|age| age >= every))
}
