//! Users and their tokens, as records: an `impl Store` block of their own. How a token's secret
//! is checked and what it may do is `auth.rs`'s part. The platform's own users are found or made
//! here too: the first admin, who owns the system apps, and each add-on provider's user
//! ([`Store::ensure_system_user`]).

use sqlx::Row;

use crate::store::{Store, conflict_on_unique};
use crate::{Result, now};

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
    /// RFC 3339, as [`now`]; `None`: never.
    pub expires_at: Option<String>,
}

impl TokenRow {
    /// When it expired, if it has.
    pub fn expired_at(&self) -> Option<&str> {
        self.expires_at.as_deref().filter(|at| *at <= now().as_str())
    }
}

/// A user as admins list them (`ouro users`).
pub struct UserListing {
    pub id: String,
    pub email: String,
    pub admin: bool,
    pub password_set: bool,
    pub created_at: String,
}

/// Why a user cannot be removed.
pub enum Removal {
    Removed,
    NoSuchUser,
    /// The apps they own (by name): transfer or destroy them first.
    OwnsApps(Vec<String>),
    LastAdmin,
}

/// A token as its owner lists it (`ouro authorizations`): never its secret.
pub struct Authorization {
    pub id: String,
    pub description: String,
    pub scope: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
}

const AUTHORIZATION_COLUMNS: &str = "id, description, scope, created_at, COALESCE(updated_at, created_at) AS updated_at, \
                                     expires_at FROM tokens";

fn authorization(r: &sqlx::any::AnyRow) -> Result<Authorization> {
    Ok(Authorization {
        id: r.try_get("id")?,
        description: r.try_get("description")?,
        scope: r.try_get("scope")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
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
        let now = now();
        let mut tx = self.pool.begin().await?;
        let user_id = insert_user(&mut *tx, email, admin, &now).await?;
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
            None => insert_user(&self.pool, email, admin, &now()).await?,
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
            "SELECT t.secret_sha256, t.scope, t.expires_at, u.id, u.email, u.admin FROM tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRow {
                secret_sha256: r.try_get("secret_sha256")?,
                scope: r.try_get("scope")?,
                expires_at: r.try_get("expires_at")?,
                user: UserRow {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    admin: r.try_get::<i64, _>("admin")? == 1,
                },
            })
        })
        .transpose()
    }

    /// The user's tokens, oldest first.
    pub async fn authorizations(&self, user_id: &str) -> Result<Vec<Authorization>> {
        let rows = sqlx::query(&format!("SELECT {AUTHORIZATION_COLUMNS} WHERE user_id = $1 ORDER BY created_at, id"))
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(authorization).collect()
    }

    /// The user's token `id`, if it is theirs.
    pub async fn authorization(&self, user_id: &str, id: &str) -> Result<Option<Authorization>> {
        let row = sqlx::query(&format!("SELECT {AUTHORIZATION_COLUMNS} WHERE user_id = $1 AND id = $2"))
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(authorization).transpose()
    }

    /// A new token of the user's, unscoped, expiring at `expires_at` (RFC 3339) if given.
    pub async fn create_authorization(
        &self,
        user_id: &str,
        token_id: &str,
        secret_sha256: &str,
        description: &str,
        expires_at: Option<&str>,
    ) -> Result<Authorization> {
        let now = now();
        sqlx::query(
            "INSERT INTO tokens (id, user_id, description, secret_sha256, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
        )
        .bind(token_id)
        .bind(user_id)
        .bind(description)
        .bind(secret_sha256)
        .bind(&now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(Authorization {
            id: token_id.into(),
            description: description.into(),
            scope: None,
            created_at: now.clone(),
            updated_at: now,
            expires_at: expires_at.map(str::to_string),
        })
    }

    /// A new secret for the user's token `id` (the old one is refused from now on); false when
    /// it is not theirs.
    pub async fn regenerate_authorization(&self, user_id: &str, id: &str, secret_sha256: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE tokens SET secret_sha256 = $3, updated_at = $4 WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .bind(secret_sha256)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the user's token `id`: refused from now on. False when it is not theirs.
    pub async fn revoke_authorization(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every user, oldest first.
    pub async fn users(&self) -> Result<Vec<UserListing>> {
        let rows = sqlx::query("SELECT id, email, admin, password_hash, created_at FROM users ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(UserListing {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    admin: r.try_get::<i64, _>("admin")? == 1,
                    password_set: r.try_get::<Option<String>, _>("password_hash")?.is_some(),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// A new user with an invitation: the code's SHA-256, valid until `expires_at`. A taken
    /// email is a conflict.
    pub async fn create_invited_user(
        &self,
        email: &str,
        admin: bool,
        code_sha256: &str,
        expires_at: &str,
    ) -> Result<UserRow> {
        let now = now();
        let mut tx = self.pool.begin().await?;
        let id = insert_user(&mut *tx, email, admin, &now).await?;
        sqlx::query(
            "INSERT INTO user_invitations (code_sha256, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(code_sha256)
        .bind(&id)
        .bind(expires_at)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(UserRow { id, email: email.into(), admin })
    }

    /// Sets the password hash of the user an unexpired invitation `code_sha256` is for, and
    /// uses the invitation up; the user's email, or `None` when there is no such invitation.
    pub async fn accept_invitation(&self, code_sha256: &str, password_hash: &str) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT u.id, u.email FROM user_invitations i JOIN users u ON u.id = i.user_id \
             WHERE i.code_sha256 = $1 AND i.expires_at > $2",
        )
        .bind(code_sha256)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (id, email): (String, String) = (row.try_get("id")?, row.try_get("email")?);
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(&id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_invitations WHERE user_id = $1").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Some(email))
    }

    /// The user `email` and their password hash, if they have one.
    pub async fn user_with_password(&self, email: &str) -> Result<Option<(UserRow, String)>> {
        let row = sqlx::query("SELECT id, email, admin, password_hash FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(hash) = row.try_get::<Option<String>, _>("password_hash")? else { return Ok(None) };
        let user = UserRow {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            admin: row.try_get::<i64, _>("admin")? == 1,
        };
        Ok(Some((user, hash)))
    }

    /// Removes the user `email` (or id) with their tokens, invitations, dashboard sessions,
    /// collaborations and team memberships, unless they own personal apps or are the last admin.
    pub async fn remove_user(&self, email_or_id: &str) -> Result<Removal> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT id, admin FROM users WHERE email = $1 OR id = $1")
            .bind(email_or_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(Removal::NoSuchUser) };
        let id: String = row.try_get("id")?;
        if row.try_get::<i64, _>("admin")? == 1 {
            let admins: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE admin = 1").fetch_one(&mut *tx).await?;
            if admins <= 1 {
                return Ok(Removal::LastAdmin);
            }
        }
        let apps: Vec<String> =
            sqlx::query_scalar("SELECT name FROM apps WHERE owner_id = $1 AND team_id IS NULL ORDER BY name")
                .bind(&id)
                .fetch_all(&mut *tx)
                .await?;
        if !apps.is_empty() {
            return Ok(Removal::OwnsApps(apps));
        }
        // The team apps they made stay with the team: recorded as made by another member
        // (an admin first) or, in a team with no one else, by an admin of the platform.
        sqlx::query(
            "UPDATE apps SET owner_id = COALESCE(\
               (SELECT m.user_id FROM team_members m WHERE m.team_id = apps.team_id AND m.user_id <> $1 \
                ORDER BY CASE m.role WHEN 'admin' THEN 0 ELSE 1 END, m.created_at LIMIT 1), \
               (SELECT u.id FROM users u WHERE u.admin = 1 AND u.id <> $1 ORDER BY u.created_at LIMIT 1)) \
             WHERE owner_id = $1 AND team_id IS NOT NULL",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        for table in ["tokens", "user_invitations", "dashboard_sessions", "collaborators", "team_members"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1")).bind(&id).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM users WHERE id = $1").bind(&id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Removal::Removed)
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
            None => insert_user(&self.pool, email, admin, &now()).await?,
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
}

/// Inserts a new user (a taken email is a conflict); answers its id.
async fn insert_user<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    email: &str,
    admin: bool,
    at: &str,
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query("INSERT INTO users (id, email, admin, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&id)
        .bind(email)
        .bind(i64::from(admin))
        .bind(at)
        .execute(executor)
        .await
        .map_err(conflict_on_unique)?;
    Ok(id)
}
