//! The audit log, as records: an `impl Store` block of its own. `auth.rs` records each mutating
//! request (actor, action, target, status); `GET /audit-events` reads them back.

use sqlx::Row;

use crate::store::Store;
use crate::{Result, now};

pub struct AuditRow {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub status: i64,
    pub created_at: String,
}

impl Store {
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        app_name: Option<&str>,
        status: u16,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_events (id, actor, action, target, app_name, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(app_name)
        .bind(i64::from(status))
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` events, oldest first; only those about `app_name` if given.
    pub async fn audit_events(&self, app_name: Option<&str>, limit: i64) -> Result<Vec<AuditRow>> {
        let columns = "id, actor, action, target, status, created_at FROM audit_events";
        let rows = match app_name {
            Some(app) => {
                sqlx::query(&format!("SELECT {columns} WHERE app_name = $1 ORDER BY id DESC LIMIT $2"))
                    .bind(app)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("SELECT {columns} ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut events = rows
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get("id")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }
}
