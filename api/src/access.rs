//! Who may do what to an app (Heroku's `access`): its owner (or, for a team's app, the team's
//! admins) and the platform's admins everything; the team's members view, deploy and operate;
//! a collaborator what their permissions allow ([`grant`]). A permission is needed per route
//! ([`needed`]): reading needs `view`; deploying (builds, slugs, releases, `git push`, one-off
//! dynos and attaching to them, reading config var values, add-on tunnels) `deploy`; running
//! the app's dynos (scaling, restarting, stopping, backups) `operate`; everything else that
//! changes the app (config vars, domains, certificates, add-ons, drains, its collaborators)
//! `manage`; destroying it only its owner. `require_token` puts what the route needs in the
//! caller's [`crate::auth::User`] and `find_app` checks it, so no handler decides alone.

use std::collections::BTreeSet;

use axum::http::Method;
use sqlx::Row;

use crate::store::Store;
use crate::teams::Role;
use crate::{Result, now};

/// What a collaborator may do, in Heroku's words; `Owner` is what no collaborator may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Permission {
    #[default]
    View,
    Deploy,
    Operate,
    Manage,
    Owner,
}

impl Permission {
    pub const GRANTABLE: [Permission; 4] =
        [Permission::View, Permission::Deploy, Permission::Operate, Permission::Manage];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Deploy => "deploy",
            Permission::Operate => "operate",
            Permission::Manage => "manage",
            Permission::Owner => "owner",
        }
    }

    fn parse(name: &str) -> Option<Permission> {
        Permission::GRANTABLE.into_iter().find(|p| p.as_str() == name)
    }
}

/// A set of permissions from names (`view` always added, as Heroku does; `manage` brings
/// `deploy` and `operate`); `Err` names one that is not a permission.
pub fn parse_permissions<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> std::result::Result<BTreeSet<Permission>, String> {
    let mut set = BTreeSet::from([Permission::View]);
    for name in names {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        set.insert(
            Permission::parse(name)
                .ok_or_else(|| format!("`{name}` is not a permission: view, deploy, operate or manage"))?,
        );
    }
    // Who may change the config vars may read them, and who may change the app may run it.
    if set.contains(&Permission::Manage) {
        set.extend([Permission::Deploy, Permission::Operate]);
    }
    Ok(set)
}

/// The names of a set of permissions, in their order.
pub fn names(set: &BTreeSet<Permission>) -> Vec<String> {
    set.iter().map(|p| p.as_str().to_string()).collect()
}

/// The permission a request (method, route as axum matched it) needs on the app it names.
pub fn needed(method: &Method, route: &str) -> Permission {
    const DEPLOY: &[(&str, &str)] = &[
        ("POST", "/apps/{app}/builds"),
        ("POST", "/apps/{app}/slugs"),
        ("PUT", "/apps/{app}/slugs/{slug}/blob"),
        ("POST", "/apps/{app}/releases"),
        ("POST", "/{repo}/git-receive-pack"),
        ("POST", "/apps/{app}/dynos"),
        ("GET", "/apps/{app}/dynos/{dyno}/attach"),
        ("GET", "/apps/{app}/config-vars"),
        ("GET", "/apps/{app}/addons/{addon}/tunnel"),
    ];
    const OPERATE: &[(&str, &str)] = &[
        ("PATCH", "/apps/{app}/formation"),
        ("PATCH", "/apps/{app}/formation/{type}"),
        ("DELETE", "/apps/{app}/dynos"),
        ("DELETE", "/apps/{app}/dynos/{target}"),
        ("POST", "/apps/{app}/dynos/{dyno}/actions/stop"),
        ("POST", "/apps/{app}/addons/{addon}/backups"),
    ];
    let is = |table: &[(&str, &str)]| table.iter().any(|(m, r)| method.as_str() == *m && route == *r);
    if method == Method::DELETE && route == "/apps/{app}" {
        Permission::Owner
    } else if is(DEPLOY) {
        Permission::Deploy
    } else if is(OPERATE) {
        Permission::Operate
    } else if method == Method::GET || method == Method::HEAD || route == "/{repo}/git-upload-pack" {
        Permission::View
    } else {
        Permission::Manage
    }
}

/// A collaborator of an app, as `ouro access` lists them.
pub struct Collaborator {
    pub user_id: String,
    pub email: String,
    pub permissions: BTreeSet<Permission>,
    pub created_at: String,
}

/// What a user may do to an app: everything (`Owner` too) as the owner of a personal app or an
/// admin of the app's team; view, deploy and operate as a member of its team; and what they
/// were given as a collaborator. Empty: nothing.
pub fn grant(
    owns_personal_app: bool,
    role: Option<Role>,
    shared: Option<BTreeSet<Permission>>,
) -> BTreeSet<Permission> {
    const ALL: [Permission; 5] =
        [Permission::View, Permission::Deploy, Permission::Operate, Permission::Manage, Permission::Owner];
    let mut has = shared.unwrap_or_default();
    match role {
        _ if owns_personal_app => has.extend(ALL),
        Some(Role::Admin) => has.extend(ALL),
        Some(Role::Member) => has.extend([Permission::View, Permission::Deploy, Permission::Operate]),
        None => {}
    }
    has
}

fn stored(text: &str) -> BTreeSet<Permission> {
    parse_permissions(text.split(',')).unwrap_or_default()
}

impl Store {
    /// The permissions `user_id` has on app `app_id` as a collaborator; `None`: none.
    pub async fn permissions(&self, app_id: &str, user_id: &str) -> Result<Option<BTreeSet<Permission>>> {
        let row = sqlx::query("SELECT permissions FROM collaborators WHERE app_id = $1 AND user_id = $2")
            .bind(app_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(stored(&r.try_get::<String, _>("permissions")?))).transpose()
    }

    pub async fn collaborators(&self, app_id: &str) -> Result<Vec<Collaborator>> {
        let rows = sqlx::query(
            "SELECT c.user_id, u.email, c.permissions, c.created_at FROM collaborators c \
             JOIN users u ON u.id = c.user_id WHERE c.app_id = $1 ORDER BY u.email",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Collaborator {
                    user_id: r.try_get("user_id")?,
                    email: r.try_get("email")?,
                    permissions: stored(&r.try_get::<String, _>("permissions")?),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Makes `user_id` a collaborator of `app_id` with `permissions`, or changes theirs;
    /// true when they were one already.
    pub async fn set_collaborator(
        &self,
        app_id: &str,
        user_id: &str,
        permissions: &BTreeSet<Permission>,
    ) -> Result<bool> {
        let text = names(permissions).join(",");
        let now = now();
        let updated = sqlx::query(
            "UPDATE collaborators SET permissions = $3, updated_at = $4 WHERE app_id = $1 AND user_id = $2",
        )
        .bind(app_id)
        .bind(user_id)
        .bind(&text)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 1 {
            return Ok(true);
        }
        sqlx::query(
            "INSERT INTO collaborators (app_id, user_id, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(app_id)
        .bind(user_id)
        .bind(&text)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(crate::store::conflict_on_unique)?;
        Ok(false)
    }

    /// Removes a collaborator; false when they were none.
    pub async fn remove_collaborator(&self, app_id: &str, user_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM collaborators WHERE app_id = $1 AND user_id = $2")
            .bind(app_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Everything `user_id` (no admin) may do to app `name_or_id` ([`grant`]); `None` when
    /// the app is gone.
    pub async fn grants(&self, name_or_id: &str, user_id: &str) -> Result<Option<BTreeSet<Permission>>> {
        let row = sqlx::query(
            "SELECT a.owner_id, a.team_id, c.permissions, m.role FROM apps a \
             LEFT JOIN collaborators c ON c.app_id = a.id AND c.user_id = $2 \
             LEFT JOIN team_members m ON m.team_id = a.team_id AND m.user_id = $2 \
             WHERE a.name = $1 OR a.id = $1",
        )
        .bind(name_or_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let team_app = row.try_get::<Option<String>, _>("team_id")?.is_some();
        let owner = row.try_get::<String, _>("owner_id")? == user_id;
        let role = row.try_get::<Option<String>, _>("role")?.as_deref().and_then(Role::parse);
        let shared = row.try_get::<Option<String>, _>("permissions")?.map(|p| stored(&p));
        Ok(Some(grant(owner && !team_app, role, shared)))
    }

    /// Whether `user_id` (no admin) may still do what `needs` on app `name_or_id`; `None`
    /// when the app is gone. For streams that outlive their request (`auth::until_refused`).
    pub async fn may(&self, name_or_id: &str, user_id: &str, needs: Permission) -> Result<Option<bool>> {
        Ok(self.grants(name_or_id, user_id).await?.map(|has| has.contains(&needs)))
    }

    /// The user `email`'s id.
    pub async fn user_id(&self, email: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM users WHERE email = $1").bind(email).fetch_optional(&self.pool).await?;
        row.map(|r| Ok(r.try_get("id")?)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_they_change() {
        let get = Method::GET;
        assert_eq!(needed(&get, "/apps/{app}"), Permission::View);
        assert_eq!(needed(&get, "/apps/{app}/logs"), Permission::View);
        assert_eq!(needed(&get, "/apps/{app}/config-vars"), Permission::Deploy, "values are secrets");
        assert_eq!(needed(&Method::POST, "/{repo}/git-upload-pack"), Permission::View, "a clone");
        assert_eq!(needed(&Method::POST, "/{repo}/git-receive-pack"), Permission::Deploy);
        assert_eq!(needed(&Method::PATCH, "/apps/{app}/formation"), Permission::Operate);
        assert_eq!(needed(&Method::PATCH, "/apps/{app}/config-vars"), Permission::Manage);
        assert_eq!(needed(&Method::POST, "/apps/{app}/domains"), Permission::Manage);
        assert_eq!(needed(&Method::POST, "/apps/{app}/something-new"), Permission::Manage, "unknown: the most");
        assert_eq!(needed(&Method::DELETE, "/apps/{app}"), Permission::Owner);
    }

    #[test]
    fn owners_and_team_roles_grant_what_they_should() {
        let all = ["view", "deploy", "operate", "manage", "owner"];
        assert_eq!(names(&grant(true, None, None)), all);
        assert_eq!(names(&grant(false, Some(Role::Admin), None)), all);
        assert_eq!(names(&grant(false, Some(Role::Member), None)), ["view", "deploy", "operate"]);
        let manage = parse_permissions(["manage"]).ok();
        assert_eq!(names(&grant(false, Some(Role::Member), manage.clone())), ["view", "deploy", "operate", "manage"]);
        assert_eq!(names(&grant(false, None, manage)), ["view", "deploy", "operate", "manage"]);
        assert!(grant(false, None, None).is_empty(), "a stranger, or who made a team app and left the team");
    }

    #[test]
    fn permissions_always_include_view_and_refuse_other_names() {
        let set = parse_permissions(["deploy", " operate", ""]).unwrap();
        assert_eq!(names(&set), ["view", "deploy", "operate"]);
        assert_eq!(names(&parse_permissions([]).unwrap()), ["view"]);
        assert_eq!(names(&parse_permissions(["manage"]).unwrap()), ["view", "deploy", "operate", "manage"]);
        assert!(parse_permissions(["admin"]).unwrap_err().contains("`admin` is not a permission"));
        assert!(parse_permissions(["owner"]).is_err(), "no collaborator owns");
    }
}
