//! Apps as the other modules need them: the app a caller may act on, where it answers, and
//! the rules for the process types its slugs declare; and the apps' records (an `impl Store`
//! block at the bottom: an app, made with its release v1, and its current release).

use ouro_types::platform::is_system_app;
use ouro_types::{ConfigVars, valid_process_type};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::access::Permission;
use crate::accounts::UserRow;
use crate::auth::User;
use crate::limits::APPS_PER_OWNER;
use crate::releases::{ReleaseRow, insert_release};
use crate::store::{Store, conflict_on_unique};
use crate::{ApiError, AppState, Error, Result as StoreResult, now};

/// App `name_or_id` if `user` may do to it what their request needs (`user.needs`, set from
/// the route: `access.rs`): admins, the owner of a personal app and the admins of a team app's
/// team anything; the team's members view, deploy and operate; a collaborator what their
/// permissions allow. 404 when there is no such app, 403 otherwise.
pub(crate) async fn find_app(state: &AppState, user: &User, name_or_id: &str) -> Result<AppRow, ApiError> {
    let app = state
        .store
        .app(name_or_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("app `{name_or_id}` not found; `ouro apps` lists yours")))?;
    if user.admin {
        return Ok(app);
    }
    let has = state.store.grants(&app.id, &user.id).await?.unwrap_or_default();
    if has.is_empty() {
        return Err(ApiError::forbidden(format!("you do not have access to app `{}`", app.name)));
    }
    match user.needs {
        needs if has.contains(&needs) => Ok(app),
        Permission::Owner => Err(ApiError::forbidden(format!(
            "only the owner of `{}` (for a team's app, an admin of the team) may do this",
            app.name
        ))),
        needs => Err(ApiError::forbidden(format!(
            "this needs the `{}` permission on `{}`; you have {}",
            needs.as_str(),
            app.name,
            crate::access::names(&has).join(",")
        ))),
    }
}

/// Makes app `name` for `user` (`POST /apps`): refused (`Error::Limit`) when the user owns
/// [`APPS_PER_OWNER`] apps already, except for the platform's own app names and the add-on
/// providers' users (see [`APPS_PER_OWNER`]); `Error::Conflict` when the name is taken.
pub(crate) async fn create(store: &Store, user: &User, name: &str, team_id: Option<&str>) -> StoreResult<AppRow> {
    let capped = user.scope.as_deref() != Some("provider") && !is_system_app(name);
    store.insert_app(name, &user.row(), team_id, capped.then_some(APPS_PER_OWNER)).await
}

/// Process types of a slug: at most 50, valid names (`run` is kept for one-off dynos), commands
/// of 1 to 4096 characters.
pub(crate) fn validate_process_types(types: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    if types.len() > 50 {
        return Err(ApiError::invalid_params("a slug may declare at most 50 process types"));
    }
    for (name, command) in types {
        if !valid_process_type(name) || name == "run" {
            return Err(ApiError::invalid_params(format!(
                "process type `{name}` is invalid: use 1 to 30 lowercase letters, digits, `-` and `_` \
                 (`run` is kept for one-off dynos)"
            )));
        }
        if command.trim().is_empty() || command.len() > 4096 || command.contains('\0') {
            return Err(ApiError::invalid_params(format!("command of `{name}` must be 1 to 4096 characters")));
        }
    }
    Ok(())
}

/// Where an app answers through the router.
pub(crate) fn web_url(settings: &crate::Settings, app_name: &str) -> String {
    match settings.apps_port {
        80 => format!("http://{app_name}.{}/", settings.domain),
        port => format!("http://{app_name}.{}:{port}/", settings.domain),
    }
}

// ---- records ---------------------------------------------------------------------------

pub struct AppRow {
    pub id: String,
    pub name: String,
    pub owner_id: String,
    pub owner_email: String,
    /// The team it belongs to (id, name); `None`: a personal app.
    pub team: Option<(String, String)>,
    pub created_at: String,
    pub updated_at: String,
    pub released_at: Option<String>,
    pub current_release_id: Option<String>,
    pub current_version: Option<i64>,
}

impl Store {
    /// Creates the app and its release v1 ("Initial release", no slug, no config) together,
    /// without a cap: the platform's own apps. Users' apps are made by [`create`].
    pub async fn create_app(&self, name: &str, owner: &UserRow) -> StoreResult<AppRow> {
        self.insert_app(name, owner, None, None).await
    }

    /// The app and its release v1; with a `cap`, refused when the owner has that many apps
    /// (the platform's own not counted) already.
    async fn insert_app(
        &self,
        name: &str,
        owner: &UserRow,
        team_id: Option<&str>,
        cap: Option<usize>,
    ) -> StoreResult<AppRow> {
        let app_id = uuid::Uuid::new_v4().to_string();
        let release_id = uuid::Uuid::new_v4().to_string();
        let now = now();
        let mut tx = self.pool.begin().await?;
        if let Some(cap) = cap {
            // Written first, so that one owner's creations run one at a time (SQLite's write
            // lock, PostgreSQL's row lock) and two of them cannot both take the last place.
            sqlx::query("UPDATE users SET admin = admin WHERE id = $1").bind(&owner.id).execute(&mut *tx).await?;
            let names =
                sqlx::query("SELECT name FROM apps WHERE owner_id = $1").bind(&owner.id).fetch_all(&mut *tx).await?;
            let mut owned = 0;
            for row in &names {
                owned += usize::from(!is_system_app(&row.try_get::<String, _>("name")?));
            }
            if owned >= cap {
                return Err(Error::Limit(format!(
                    "a user may own at most {cap} apps and you own {owned}; delete one first (`ouro apps:destroy`)"
                )));
            }
        }
        sqlx::query(
            "INSERT INTO apps (id, name, owner_id, team_id, release_seq, current_release_id, created_at, \
             updated_at, released_at) VALUES ($1, $2, $3, $6, 1, $4, $5, $5, $5)",
        )
        .bind(&app_id)
        .bind(name)
        .bind(&owner.id)
        .bind(&release_id)
        .bind(&now)
        .bind(team_id)
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
    pub async fn set_app_owner(&self, app_id: &str, owner_id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE apps SET owner_id = $2, updated_at = $3 WHERE id = $1")
            .bind(app_id)
            .bind(owner_id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn apps(&self, owner: Option<&str>) -> StoreResult<Vec<AppRow>> {
        let rows = match owner {
            Some(owner) => {
                // Theirs, their teams' and those shared with them.
                sqlx::query(&format!(
                    "SELECT {APP_COLUMNS} WHERE (a.owner_id = $1 AND a.team_id IS NULL) \
                     OR a.id IN (SELECT app_id FROM collaborators WHERE user_id = $1) \
                     OR a.team_id IN (SELECT team_id FROM team_members WHERE user_id = $1) ORDER BY a.name"
                ))
                .bind(owner)
                .fetch_all(&self.pool)
                .await?
            }
            None => sqlx::query(&format!("SELECT {APP_COLUMNS} ORDER BY a.name")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(app_row).collect()
    }

    /// Finds an app by name or id.
    pub async fn app(&self, name_or_id: &str) -> StoreResult<Option<AppRow>> {
        let row = sqlx::query(&format!("SELECT {APP_COLUMNS} WHERE a.name = $1 OR a.id = $1"))
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(app_row).transpose()
    }

    /// Deletes the app and, by cascade, its releases, slugs and formation in one statement.
    /// Slug blobs stay in the blob store (content-addressed, possibly shared).
    pub async fn delete_app(&self, app_id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Releases point at slugs; remove them first so the slug rows can go.
        sqlx::query("DELETE FROM releases WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM builds WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM log_drains WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM collaborators WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        // Its kept log lines (by name: the journal keeps lines as the hub does).
        sqlx::query("DELETE FROM log_lines WHERE app = (SELECT name FROM apps WHERE id = $1)")
            .bind(app_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM apps WHERE id = $1").bind(app_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The release the app runs now. Here rather than in `releases.rs`, which this module
    /// imports (release v1 is made with the app) and which so takes no `AppRow`.
    pub async fn current_release(&self, app: &AppRow) -> StoreResult<ReleaseRow> {
        let id = app.current_release_id.as_deref().unwrap_or_default();
        self.release_by_id(&app.id, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("current release of {}", app.name)))
    }
}

const APP_COLUMNS: &str = "a.id, a.name, a.owner_id, u.email AS owner_email, a.team_id, \
     t.name AS team_name, a.created_at, a.updated_at, a.released_at, a.current_release_id, \
     (SELECT r.version FROM releases r WHERE r.id = a.current_release_id) AS current_version \
     FROM apps a JOIN users u ON u.id = a.owner_id LEFT JOIN teams t ON t.id = a.team_id";

fn app_row(r: &AnyRow) -> StoreResult<AppRow> {
    Ok(AppRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        owner_id: r.try_get("owner_id")?,
        owner_email: r.try_get("owner_email")?,
        team: match (r.try_get::<Option<String>, _>("team_id")?, r.try_get::<Option<String>, _>("team_name")?) {
            (Some(id), Some(name)) => Some((id, name)),
            _ => None,
        },
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        released_at: r.try_get("released_at")?,
        current_release_id: r.try_get("current_release_id")?,
        current_version: r.try_get("current_version")?,
    })
}
