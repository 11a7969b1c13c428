//! Teams (Heroku's `teams` and `members`): users who share the apps made in the team. A team
//! `admin` may do anything to the team's apps (destroying them too) and manages its members; a
//! `member` may view, deploy and operate every team app (`access.rs` says what each route needs;
//! a team admin may give a member more with `access:add`). Whoever makes a team is its first
//! admin; a team always keeps one.

use sqlx::Row;

use crate::store::{Store, conflict_on_unique};
use crate::{Error, Result, now};

/// A member's role in a team, in Heroku's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        match name.trim() {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: Role,
    pub created_at: String,
}

/// What a change of members did.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberChange {
    Added,
    Changed,
    Removed,
    NotAMember,
    /// Refused: the team would have no admin left.
    LastAdmin,
}

fn role_of(r: &sqlx::any::AnyRow) -> Result<Role> {
    let text: String = r.try_get("role")?;
    Role::parse(&text).ok_or_else(|| Error::Config(format!("stored team role `{text}` is unknown")))
}

fn team_of(r: &sqlx::any::AnyRow) -> Result<TeamRow> {
    Ok(TeamRow { id: r.try_get("id")?, name: r.try_get("name")?, created_at: r.try_get("created_at")? })
}

impl Store {
    /// Makes team `name` with `creator_id` as its admin; `Error::Conflict` when the name is taken.
    pub async fn create_team(&self, name: &str, creator_id: &str) -> Result<TeamRow> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, created_at, updated_at) VALUES ($1, $2, 'admin', $3, $3)",
        )
        .bind(&id)
        .bind(creator_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TeamRow { id, name: name.to_string(), created_at: now })
    }

    /// The team named `name_or_id`.
    pub async fn team(&self, name_or_id: &str) -> Result<Option<TeamRow>> {
        let row = sqlx::query("SELECT id, name, created_at FROM teams WHERE name = $1 OR id = $1")
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(team_of).transpose()
    }

    /// The teams `user_id` is in, with their role; with `every`, every team (role `None` where
    /// they are not in it).
    pub async fn teams(&self, user_id: &str, every: bool) -> Result<Vec<(TeamRow, Option<Role>)>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.created_at, m.role FROM teams t \
             LEFT JOIN team_members m ON m.team_id = t.id AND m.user_id = $1 \
             WHERE m.user_id IS NOT NULL OR $2 = 1 ORDER BY t.name",
        )
        .bind(user_id)
        .bind(i64::from(every))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role = r.try_get::<Option<String>, _>("role")?.as_deref().and_then(Role::parse);
                Ok((team_of(r)?, role))
            })
            .collect()
    }

    /// `user_id`'s role in team `team_id`; `None`: not a member.
    pub async fn team_role(&self, team_id: &str, user_id: &str) -> Result<Option<Role>> {
        let row = sqlx::query("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(role_of).transpose()
    }

    pub async fn members(&self, team_id: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.email, m.role, m.created_at FROM team_members m \
             JOIN users u ON u.id = m.user_id WHERE m.team_id = $1 ORDER BY u.email",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    user_id: r.try_get("user_id")?,
                    email: r.try_get("email")?,
                    role: role_of(r)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds `user_id` to the team with `role`, or changes their role (`None`: removes them),
    /// refused when that would leave the team without an admin.
    pub async fn set_member(&self, team_id: &str, user_id: &str, role: Option<Role>) -> Result<MemberChange> {
        let mut tx = self.pool.begin().await?;
        // Written first, so that two changes of one team run one at a time and cannot both
        // take away its last two admins.
        sqlx::query("UPDATE teams SET name = name WHERE id = $1").bind(team_id).execute(&mut *tx).await?;
        let rows = sqlx::query("SELECT user_id, role FROM team_members WHERE team_id = $1")
            .bind(team_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut current = None;
        let mut other_admins = 0;
        for row in &rows {
            let role = role_of(row)?;
            if row.try_get::<String, _>("user_id")? == user_id {
                current = Some(role);
            } else if role == Role::Admin {
                other_admins += 1;
            }
        }
        if current == Some(Role::Admin) && role != Some(Role::Admin) && other_admins == 0 {
            return Ok(MemberChange::LastAdmin);
        }
        let now = now();
        let change = match (current, role) {
            (None, None) => return Ok(MemberChange::NotAMember),
            (Some(_), None) => {
                sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
                    .bind(team_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                MemberChange::Removed
            }
            (Some(_), Some(role)) => {
                sqlx::query("UPDATE team_members SET role = $3, updated_at = $4 WHERE team_id = $1 AND user_id = $2")
                    .bind(team_id)
                    .bind(user_id)
                    .bind(role.as_str())
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                MemberChange::Changed
            }
            (None, Some(role)) => {
                sqlx::query(
                    "INSERT INTO team_members (team_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(team_id)
                .bind(user_id)
                .bind(role.as_str())
                .bind(&now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_on_unique)?;
                MemberChange::Added
            }
        };
        tx.commit().await?;
        Ok(change)
    }

    /// Deletes a team that has no apps left; `Err(names)` lists them otherwise.
    pub async fn delete_team(&self, team_id: &str) -> Result<Result<(), Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        let apps: Vec<String> = sqlx::query_scalar("SELECT name FROM apps WHERE team_id = $1 ORDER BY name")
            .bind(team_id)
            .fetch_all(&mut *tx)
            .await?;
        if !apps.is_empty() {
            return Ok(Err(apps));
        }
        sqlx::query("DELETE FROM team_members WHERE team_id = $1").bind(team_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM teams WHERE id = $1").bind(team_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}
