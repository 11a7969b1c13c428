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
            "SELECT t.secret_sha256, t.scope, u.id, u.email, u.admin FROM tokens t \
             JOIN users u ON u.id = t.user_id WHERE t.id = $1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRow {
                secret_sha256: r.try_get("secret_sha256")?,
                scope: r.try_get("scope")?,
                user: UserRow {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                    admin: r.try_get::<i64, _>("admin")? == 1,
                },
            })
        })
        .transpose()
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
