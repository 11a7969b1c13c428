//! What makes an app a service (an add-on server): its volumes, the apps whose networks it
//! joins, its access to the API, the host network, whether it listens; the `service_*` columns
//! of its row, read and written by an `impl Store` block of their own.

use ouro_types::Service;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::Store;
use crate::{Result, now};

impl Store {
    /// What makes the app a service (an add-on server): its volumes and the apps it joins.
    pub async fn service(&self, app_id: &str) -> Result<Service> {
        let row = sqlx::query(
            "SELECT service_mounts, service_joins, service_api_access, service_host_network, service_listens \
             FROM apps WHERE id = $1",
        )
        .bind(app_id)
        .fetch_one(&self.pool)
        .await?;
        service_row(&row)
    }

    /// Makes the app a service as `service` says, in one transaction: its volumes become its
    /// own (recorded in `volume_owners`; those it no longer mounts are let go). A volume that
    /// another app owns changes nothing and is `Err(VolumeTaken(volume))`.
    pub async fn set_service(&self, app_id: &str, service: &Service) -> Result<Result<(), VolumeTaken>> {
        let mut tx = self.pool.begin().await?;
        // The app's row first: one writer per app at a time (see ARCHITECTURE.md).
        sqlx::query(
            "UPDATE apps SET service_mounts = $2, service_joins = $3, service_api_access = $4, updated_at = $5, \
             service_host_network = $6, service_listens = $7 WHERE id = $1",
        )
        .bind(app_id)
        .bind(serde_json::to_string(&service.mounts)?)
        .bind(serde_json::to_string(&service.joins)?)
        .bind(i64::from(service.api_access))
        .bind(now())
        .bind(i64::from(service.host_network))
        .bind(i64::from(service.listens))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM volume_owners WHERE app_id = $1").bind(app_id).execute(&mut *tx).await?;
        for mount in &service.mounts {
            let owner: Option<String> = sqlx::query_scalar("SELECT app_id FROM volume_owners WHERE volume = $1")
                .bind(&mount.volume)
                .fetch_optional(&mut *tx)
                .await?;
            match owner {
                Some(owner) if owner != app_id => return Ok(Err(VolumeTaken(mount.volume.clone()))),
                Some(_) => {}
                None => {
                    sqlx::query("INSERT INTO volume_owners (volume, app_id, created_at) VALUES ($1, $2, $3)")
                        .bind(&mount.volume)
                        .bind(app_id)
                        .bind(now())
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// Records the owners of volumes mounted before owners were recorded (at start): each
    /// goes to the app that mounts it, the oldest app first if two did.
    pub async fn claim_mounted_volumes(&self) -> Result<()> {
        let rows =
            sqlx::query("SELECT id, service_mounts FROM apps WHERE service_mounts <> '[]' ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?;
        for row in rows {
            let app_id: String = row.try_get("id")?;
            let mounts: Vec<ouro_types::VolumeMount> =
                serde_json::from_str(&row.try_get::<String, _>("service_mounts")?)?;
            for mount in mounts {
                sqlx::query(
                    "INSERT INTO volume_owners (volume, app_id, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (volume) DO NOTHING",
                )
                .bind(&mount.volume)
                .bind(&app_id)
                .bind(now())
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// A volume that another app owns.
#[derive(Debug)]
pub struct VolumeTaken(pub String);

/// The `service_*` columns of an app's row.
pub(crate) fn service_row(r: &AnyRow) -> Result<Service> {
    Ok(Service {
        mounts: serde_json::from_str(&r.try_get::<String, _>("service_mounts")?)?,
        joins: serde_json::from_str(&r.try_get::<String, _>("service_joins")?)?,
        api_access: r.try_get::<i64, _>("service_api_access")? != 0,
        host_network: r.try_get::<i64, _>("service_host_network")? != 0,
        listens: r.try_get::<i64, _>("service_listens")? != 0,
    })
}
