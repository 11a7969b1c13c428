//! The add-ons' records: providers, add-ons, their attachments to apps and their backups, as
//! an `impl Store` block of their own.

use std::collections::BTreeMap;

use ouro_types::AddonState;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::store::{Store, conflict_on_unique};
use crate::{Result, now};

/// A backup of an add-on's data: blob `SHA256:<hex>` in the blob store.
pub struct BackupRow {
    pub id: String,
    pub number: i64,
    pub blob: String,
    pub size: i64,
    pub created_at: String,
}

pub struct ProviderRow {
    pub id: String,
    pub name: String,
    pub url: String,
    pub password: String,
    pub created_at: String,
}

#[derive(Clone)]
pub struct AddonRow {
    pub id: String,
    pub name: String,
    pub app_id: String,
    pub provider_id: String,
    pub plan: String,
    pub state: AddonState,
    pub provider_resource_id: String,
    /// What the provider answered: key → value (`URL` → `postgres://…`).
    pub config: BTreeMap<String, String>,
    /// The app running the add-on's server, if its provider named one.
    pub service_app: Option<String>,
    pub created_at: String,
}

pub struct AttachmentRow {
    pub id: String,
    pub addon_id: String,
    pub app_id: String,
    /// The config var prefix on the app: `DATABASE` makes `DATABASE_URL`.
    pub name: String,
    pub created_at: String,
}

impl Store {
    pub async fn create_provider(&self, name: &str, url: &str, password: &str) -> Result<ProviderRow> {
        let row = ProviderRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            url: url.into(),
            password: password.into(),
            created_at: now(),
        };
        sqlx::query("INSERT INTO addon_providers (id, name, url, password, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&row.id)
            .bind(&row.name)
            .bind(&row.url)
            .bind(&row.password)
            .bind(&row.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_on_unique)?;
        Ok(row)
    }

    pub async fn providers(&self) -> Result<Vec<ProviderRow>> {
        let rows = sqlx::query("SELECT id, name, url, password, created_at FROM addon_providers ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(provider_row).collect()
    }

    pub async fn provider(&self, name_or_id: &str) -> Result<Option<ProviderRow>> {
        let row =
            sqlx::query("SELECT id, name, url, password, created_at FROM addon_providers WHERE name = $1 OR id = $1")
                .bind(name_or_id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(provider_row).transpose()
    }

    /// Records a provisioned add-on and its first attachment, in one transaction.
    pub async fn create_addon(&self, addon: &AddonRow, attachment: &AttachmentRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO addons (id, name, app_id, provider_id, plan, state, provider_resource_id, config, \
             service_app, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&addon.id)
        .bind(&addon.name)
        .bind(&addon.app_id)
        .bind(&addon.provider_id)
        .bind(&addon.plan)
        .bind(addon.state.as_str())
        .bind(&addon.provider_resource_id)
        .bind(serde_json::to_string(&addon.config)?)
        .bind(&addon.service_app)
        .bind(&addon.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_on_unique)?;
        insert_attachment(&mut tx, attachment).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn addon(&self, name_or_id: &str) -> Result<Option<AddonRow>> {
        let row = sqlx::query(&format!("SELECT {ADDON_COLUMNS} FROM addons a WHERE a.name = $1 OR a.id = $1"))
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(addon_row).transpose()
    }

    /// Add-ons attached to the app (its own and others'), by name.
    pub async fn addons_of_app(&self, app_id: &str) -> Result<Vec<AddonRow>> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT {ADDON_COLUMNS} FROM addons a JOIN addon_attachments t ON t.addon_id = a.id \
             WHERE t.app_id = $1 OR a.app_id = $1 ORDER BY a.name",
        ))
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(addon_row).collect()
    }

    /// Add-ons the app owns.
    pub async fn owned_addons(&self, app_id: &str) -> Result<Vec<AddonRow>> {
        let rows = sqlx::query(&format!("SELECT {ADDON_COLUMNS} FROM addons a WHERE a.app_id = $1 ORDER BY a.name"))
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(addon_row).collect()
    }

    /// The apps that run the servers of the provider's add-ons, by name.
    pub async fn service_apps(&self, provider_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT service_app FROM addons WHERE provider_id = $1 AND service_app IS NOT NULL \
             ORDER BY service_app",
        )
        .bind(provider_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("service_app")?)).collect()
    }

    /// Add-ons whose provider has not finished provisioning them.
    pub async fn provisioning_addons(&self) -> Result<Vec<AddonRow>> {
        let rows = sqlx::query(&format!("SELECT {ADDON_COLUMNS} FROM addons a WHERE a.state = 'provisioning'"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(addon_row).collect()
    }

    /// Marks a provisioning add-on provisioned with the provider's config; false when it is
    /// gone or was provisioned already.
    pub async fn set_addon_provisioned(&self, addon_id: &str, config: &BTreeMap<String, String>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE addons SET state = 'provisioned', config = $2 WHERE id = $1 AND state = 'provisioning'",
        )
        .bind(addon_id)
        .bind(serde_json::to_string(config)?)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a provisioned add-on's config (its credentials rotated); false when it is gone
    /// or not provisioned.
    pub async fn set_addon_config(&self, addon_id: &str, config: &BTreeMap<String, String>) -> Result<bool> {
        let done = sqlx::query("UPDATE addons SET config = $2 WHERE id = $1 AND state = 'provisioned'")
            .bind(addon_id)
            .bind(serde_json::to_string(config)?)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a backup of an add-on, numbered after its last one.
    pub async fn create_backup(&self, addon_id: &str, blob: &str, size: i64) -> Result<BackupRow> {
        let mut tx = self.pool.begin().await?;
        // Writing the add-on's row first serialises concurrent backups of it (see invariants).
        sqlx::query("UPDATE addons SET state = state WHERE id = $1").bind(addon_id).execute(&mut *tx).await?;
        let last: Option<i64> = sqlx::query("SELECT MAX(number) AS n FROM addon_backups WHERE addon_id = $1")
            .bind(addon_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let row = BackupRow {
            id: uuid::Uuid::new_v4().to_string(),
            number: last.unwrap_or(0) + 1,
            blob: blob.into(),
            size,
            created_at: now(),
        };
        sqlx::query(
            "INSERT INTO addon_backups (id, addon_id, number, blob, size, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(addon_id)
        .bind(row.number)
        .bind(&row.blob)
        .bind(row.size)
        .bind(&row.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn backups(&self, addon_id: &str) -> Result<Vec<BackupRow>> {
        let rows = sqlx::query(
            "SELECT id, number, blob, size, created_at FROM addon_backups WHERE addon_id = $1 ORDER BY number",
        )
        .bind(addon_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BackupRow {
                    id: r.try_get("id")?,
                    number: r.try_get("number")?,
                    blob: r.try_get("blob")?,
                    size: r.try_get("size")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn delete_addon(&self, addon_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM addons WHERE id = $1").bind(addon_id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn create_attachment(&self, attachment: &AttachmentRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_attachment(&mut tx, attachment).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn attachments_of_addon(&self, addon_id: &str) -> Result<Vec<AttachmentRow>> {
        let rows = sqlx::query(&format!("SELECT {ATTACHMENT_COLUMNS} WHERE addon_id = $1 ORDER BY created_at, id"))
            .bind(addon_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(attachment_row).collect()
    }

    pub async fn attachments_of_app(&self, app_id: &str) -> Result<Vec<AttachmentRow>> {
        let rows = sqlx::query(&format!("SELECT {ATTACHMENT_COLUMNS} WHERE app_id = $1 ORDER BY created_at, id"))
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(attachment_row).collect()
    }

    pub async fn delete_attachment(&self, attachment_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM addon_attachments WHERE id = $1").bind(attachment_id).execute(&self.pool).await?;
        Ok(())
    }
}

const ADDON_COLUMNS: &str = "a.id, a.name, a.app_id, a.provider_id, a.plan, a.state, a.provider_resource_id, \
                             a.config, a.service_app, a.created_at";

const ATTACHMENT_COLUMNS: &str = "id, addon_id, app_id, name, created_at FROM addon_attachments";

fn provider_row(r: &AnyRow) -> Result<ProviderRow> {
    Ok(ProviderRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        url: r.try_get("url")?,
        password: r.try_get("password")?,
        created_at: r.try_get("created_at")?,
    })
}

fn addon_row(r: &AnyRow) -> Result<AddonRow> {
    Ok(AddonRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        app_id: r.try_get("app_id")?,
        provider_id: r.try_get("provider_id")?,
        plan: r.try_get("plan")?,
        state: r.try_get::<String, _>("state")?.parse()?,
        provider_resource_id: r.try_get("provider_resource_id")?,
        config: serde_json::from_str(&r.try_get::<String, _>("config")?)?,
        service_app: r.try_get("service_app")?,
        created_at: r.try_get("created_at")?,
    })
}

fn attachment_row(r: &AnyRow) -> Result<AttachmentRow> {
    Ok(AttachmentRow {
        id: r.try_get("id")?,
        addon_id: r.try_get("addon_id")?,
        app_id: r.try_get("app_id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
    })
}

async fn insert_attachment(tx: &mut Transaction<'_, Any>, a: &AttachmentRow) -> Result<()> {
    sqlx::query("INSERT INTO addon_attachments (id, addon_id, app_id, name, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&a.id)
        .bind(&a.addon_id)
        .bind(&a.app_id)
        .bind(&a.name)
        .bind(&a.created_at)
        .execute(&mut **tx)
        .await
        .map_err(conflict_on_unique)?;
    Ok(())
}
