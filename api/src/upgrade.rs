//! Self-upgrade: a successful build of the platform's source app `ouro` (a `git push` of this
//! repository, built by the rust buildpack into `bin/`: every program of the workspace; its
//! Procfile names `api` and `router`) rolls the new slug to every component, one at a time
//! ([`steps`]):
//! 1. `ouro-api`: a release over a copy of the slug, which the runner hands over without
//!    downtime (`plan::Rollout::HandOver`);
//! 2. `ouro-builder`: the new API makes its slug from the `ouro-build` beside it (at its start,
//!    and again here: the same slug changes nothing);
//! 3. each shipped add-on provider `ouro-<kind>`: the new API builds its source (the
//!    `ouro-addons` beside it) when that changed; the step waits for that build and for the
//!    new release's web dyno to be up (a failed build leaves the old release serving);
//! 4. `ouro-router`: a release over a copy of the slug, handed over as the API's.
//!
//! A component whose new dyno does not come up is rolled back to its previous release and the
//! upgrade stops there.
//!
//! The upgrade is a row (`upgrades`), so it survives the API's own replacement: the old API
//! process releases `ouro-api` and waits; once the new one is up the old one is stopped, and the
//! new one resumes every upgrade still `rolling` at its start (`resume`). Each step first checks
//! whether the component already runs the slug, so resuming repeats nothing.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use ouro_types::platform::{API_APP, BUILDER_APP, ROUTER_APP, provider_app};
use ouro_types::{BuildStatus, DynoState, UpgradeState};
use sqlx::Row;

use crate::auth::User;
use crate::releases::Change;
use crate::store::Store;
use crate::{ApiError, AppState, Result as StoreResult, now};

/// How long a component's new dyno may take to come up.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// What an upgrade does to one component.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Releases a copy of the upgrade's slug (the API, the router).
    Slug,
    /// Makes the builder's slug from the program beside this API.
    Builder,
    /// Builds kind's provider from the program beside this API and waits for it to serve.
    Provider(String),
}

/// The components an upgrade rolls, in order: the API hands over first (every later step runs
/// in the new API, with the new programs beside it), the router last, so that a broken router
/// is the one step that can fail after everything else moved, and it rolls back on its own.
fn steps(providers: &[String]) -> Vec<(String, Step)> {
    let mut steps = vec![(API_APP.to_string(), Step::Slug), (BUILDER_APP.to_string(), Step::Builder)];
    steps.extend(providers.iter().map(|kind| (provider_app(kind), Step::Provider(kind.clone()))));
    steps.push((ROUTER_APP.to_string(), Step::Slug));
    steps
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/upgrades", get(list))
}

/// `GET /upgrades` (admins): the latest self-upgrades, newest first.
async fn list(
    State(state): State<AppState>,
    Extension(user): Extension<User>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if !user.admin {
        return Err(ApiError::forbidden("only an admin sees the platform's upgrades"));
    }
    let rows = state.store.upgrades().await?;
    let components: Vec<String> = steps(&state.settings.addon_providers).into_iter().map(|(app, _)| app).collect();
    let json = rows
        .into_iter()
        .map(|u| {
            serde_json::json!({
                "id": u.id, "slug": {"id": u.slug_id}, "state": u.state, "step": u.step,
                "components": components, "message": u.message, "created_at": u.created_at,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::Value::Array(json)))
}

/// Starts an upgrade for each slug the pipeline sends (a successful build of the source app),
/// until the API stops.
pub async fn take_requests(state: AppState, mut requests: tokio::sync::mpsc::UnboundedReceiver<String>) {
    while let Some(slug_id) = requests.recv().await {
        start(&state, &slug_id).await;
    }
}

/// Starts rolling `slug_id` (a slug of the source app) to the components; an upgrade still
/// rolling is superseded.
async fn start(state: &AppState, slug_id: &str) {
    let started = async {
        for old in state.store.upgrades().await?.into_iter().filter(|u| u.state == UpgradeState::Rolling) {
            state.store.update_upgrade(&old.id, UpgradeState::Superseded, old.step, "a newer upgrade started").await?;
        }
        state.store.create_upgrade(slug_id).await
    };
    match started.await {
        Ok(upgrade) => {
            tracing::info!(upgrade = %upgrade.id, "upgrading the platform");
            tokio::spawn(drive(state.clone(), upgrade));
        }
        Err(e) => tracing::error!(error = %e, "could not start the upgrade"),
    }
}

/// Carries on the upgrades still rolling when this API process started.
pub async fn resume(state: &AppState) -> crate::Result<()> {
    for upgrade in state.store.upgrades().await?.into_iter().filter(|u| u.state == UpgradeState::Rolling) {
        tracing::info!(upgrade = %upgrade.id, step = upgrade.step, "resuming the platform's upgrade");
        tokio::spawn(drive(state.clone(), upgrade));
    }
    Ok(())
}

enum Rolled {
    /// Every component runs the new slug.
    Done,
    /// This API process released its successor, which carries on.
    HandedOver,
}

async fn drive(state: AppState, upgrade: UpgradeRow) {
    let (outcome, step, message) = match roll(&state, &upgrade).await {
        Ok(Rolled::HandedOver) => return,
        Ok(Rolled::Done) => {
            let all = steps(&state.settings.addon_providers).len() as i64;
            (UpgradeState::Succeeded, all, "every component runs the new slug".to_string())
        }
        Err((step, message)) => (UpgradeState::Failed, step, message),
    };
    tracing::info!(upgrade = %upgrade.id, %outcome, %message, "the platform's upgrade ended");
    if let Err(e) = state.store.update_upgrade(&upgrade.id, outcome, step, &message).await {
        tracing::error!(upgrade = %upgrade.id, error = %e, "could not record the upgrade's end");
    }
}

async fn roll(state: &AppState, upgrade: &UpgradeRow) -> Result<Rolled, (i64, String)> {
    let internal = |step: usize, e: crate::Error| (step as i64, e.to_string());
    let (_, slug) = state
        .store
        .slug_anywhere(&upgrade.slug_id)
        .await
        .map_err(|e| internal(0, e))?
        .ok_or_else(|| (0, "the upgrade's slug is gone".to_string()))?;
    let label = slug.commit_sha.as_deref().map(|c| c.chars().take(12).collect()).unwrap_or_else(|| slug.id.clone());
    for (step, (component, kind)) in steps(&state.settings.addon_providers).iter().enumerate() {
        let rolling = |message: String| async move {
            let _ = state.store.update_upgrade(&upgrade.id, UpgradeState::Rolling, step as i64, &message).await;
        };
        match kind {
            Step::Slug => {}
            Step::Builder => {
                rolling(format!("making {component}'s slug")).await;
                crate::builder_app::ensure(state).await.map_err(|e| internal(step, e))?;
                continue;
            }
            Step::Provider(kind) => {
                rolling(format!("building {component}")).await;
                provider(state, kind).await.map_err(|why| (step as i64, why))?;
                continue;
            }
        }
        let component = component.as_str();
        let app = state.store.app(component).await.map_err(|e| internal(step, e))?.ok_or_else(|| {
            (step as i64, format!("there is no `{component}` app: the platform does not run on itself (ouro up)"))
        })?;
        let current = state.store.current_release(&app).await.map_err(|e| internal(step, e))?;
        let running = match &current.slug_id {
            Some(id) => state.store.slug(&app.id, id).await.map_err(|e| internal(step, e))?.and_then(|s| s.checksum),
            None => None,
        };
        if running.is_some() && running == slug.checksum {
            continue; // already rolled (a resumed upgrade)
        }
        let copy = state.store.copy_slug(slug.clone(), &app.id).await.map_err(|e| internal(step, e))?;
        let description = Some(format!("Upgrade to {label}"));
        let change = Change::Deploy { slug_id: copy.id, description };
        let release = state
            .create_release(&app, "ouro", change)
            .await
            .map_err(|e| internal(step, e))?
            .ok_or_else(|| (step as i64, format!("no release of {component} was made")))?;
        state.changed();
        rolling(format!("rolling {component} to v{}", release.version)).await;
        match wait_up(state, component, release.version).await {
            Ok(()) if component == API_APP => return Ok(Rolled::HandedOver),
            Ok(()) => {}
            Err(reason) => {
                let back = Change::Rollback { version: current.version };
                let rolled_back = state.create_release(&app, "ouro", back).await;
                state.changed();
                let how = match rolled_back {
                    Ok(Some(r)) => format!("rolled back to v{} as v{}", current.version, r.version),
                    _ => "and could not be rolled back".to_string(),
                };
                return Err((
                    step as i64,
                    format!("{component} v{} {reason}; {how}; the upgrade stopped there", release.version),
                ));
            }
        }
    }
    Ok(Rolled::Done)
}

/// The provider step: kind's provider runs a build of the source this API makes for it (the
/// build started when missing), its release's web dyno up; `Err` says why not. A provider of
/// that name registered elsewhere is not Ouro's to upgrade: nothing to do.
async fn provider(state: &AppState, kind: &str) -> Result<(), String> {
    let name = provider_app(kind);
    let Some(source) = crate::system_addons::ensure(state, kind).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let app =
        state.store.app(&name).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("there is no `{name}` app"))?;
    let deadline = Instant::now() + state.settings.build_timeout + STEP_TIMEOUT;
    let version = loop {
        let builds = state.store.builds(&app.id).await.map_err(|e| e.to_string())?;
        match builds.iter().rev().find(|b| b.source_blob == source) {
            Some(b) if b.status == BuildStatus::Succeeded => {
                break b.release_version.ok_or_else(|| format!("{name}'s build made no release"))?;
            }
            Some(b) if b.status == BuildStatus::Failed => {
                return Err(format!(
                    "{name}'s build failed (ouro builds:info {} -a {name}); it keeps its previous release; the upgrade stopped there",
                    b.id
                ));
            }
            Some(_) => {}
            // An older build was running when this API started: start this one once it ends
            // (ensure packs the program again: not while that build runs).
            None if builds.iter().all(|b| b.status != BuildStatus::Pending) => {
                crate::system_addons::ensure(state, kind).await.map_err(|e| e.to_string())?;
            }
            None => {}
        }
        if Instant::now() > deadline {
            return Err(format!("{name}'s build did not end in time; the upgrade stopped there"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if let Err(reason) = wait_up(state, &name, version).await {
        let back = Change::Rollback { version: version - 1 };
        let how = match state.create_release(&app, "ouro", back).await {
            Ok(Some(r)) => format!("rolled back to v{} as v{}", version - 1, r.version),
            _ => "and could not be rolled back".to_string(),
        };
        state.changed();
        return Err(format!("{name} v{version} {reason}; {how}; the upgrade stopped there"));
    }
    Ok(())
}

/// Waits until the runner reports a dyno of `app`'s release `version` (or a later one) up; `Err` says why not
/// (it keeps crashing, or the step's time ran out).
async fn wait_up(state: &AppState, app: &str, version: i64) -> Result<(), String> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let dynos = state.dynos.read().map(|d| d.get(app).cloned().unwrap_or_default()).unwrap_or_default();
        // A later release (a provider's config refreshed meanwhile) runs the same slug.
        let new: Vec<_> = dynos.iter().filter(|d| d.release >= version).collect();
        if new.iter().any(|d| d.state == DynoState::Up) {
            return Ok(());
        }
        if let Some(crashed) = new.iter().find(|d| d.state == DynoState::Crashed && d.restarts >= 2) {
            return Err(format!("crashed ({})", crashed.reason.clone().unwrap_or_default()));
        }
        if Instant::now() > deadline {
            return Err(format!("was not up within {} s", STEP_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

// ---- records ---------------------------------------------------------------------------

/// A self-upgrade: the platform's new slug rolling to its components, step by step.
#[derive(Clone)]
pub struct UpgradeRow {
    pub id: String,
    pub slug_id: String,
    /// `rolling`, `succeeded`, `failed` (rolled back), or `superseded` by a newer one.
    pub state: UpgradeState,
    /// How many components run the new slug.
    pub step: i64,
    pub message: String,
    pub created_at: String,
}

impl Store {
    pub async fn create_upgrade(&self, slug_id: &str) -> StoreResult<UpgradeRow> {
        let row = UpgradeRow {
            id: uuid::Uuid::new_v4().to_string(),
            slug_id: slug_id.into(),
            state: UpgradeState::Rolling,
            step: 0,
            message: String::new(),
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO upgrades (id, slug_id, state, step, message, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&row.id)
        .bind(&row.slug_id)
        .bind(row.state.as_str())
        .bind(row.step)
        .bind(&row.message)
        .bind(&row.created_at)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    pub async fn upgrades(&self) -> StoreResult<Vec<UpgradeRow>> {
        let rows = sqlx::query(
            "SELECT id, slug_id, state, step, message, created_at FROM upgrades ORDER BY created_at DESC, id LIMIT 50",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UpgradeRow {
                    id: r.try_get("id")?,
                    slug_id: r.try_get("slug_id")?,
                    state: r.try_get::<String, _>("state")?.parse()?,
                    step: r.try_get("step")?,
                    message: r.try_get("message")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn update_upgrade(&self, id: &str, state: UpgradeState, step: i64, message: &str) -> StoreResult<()> {
        sqlx::query("UPDATE upgrades SET state = $2, step = $3, message = $4, updated_at = $5 WHERE id = $1")
            .bind(id)
            .bind(state.as_str())
            .bind(step)
            .bind(message)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
