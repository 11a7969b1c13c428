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

    pub async fn set_service(&self, app_id: &str, service: &Service) -> Result<()> {
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

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
