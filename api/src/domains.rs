//! Apps' custom domains and SNI certificates, as records: an `impl Store` block of their own.
//! A hostname belongs to one app at most; a certificate's private key is stored sealed with the
//! platform key and never read back here (the desired state opens it for the runner). An app
//! has at most [`DOMAINS_PER_APP`] custom domains and [`SNI_ENDPOINTS_PER_APP`] certificates.

use sqlx::Row;

use crate::limits::{DOMAINS_PER_APP, SNI_ENDPOINTS_PER_APP};
use crate::platform_key::PlatformKey;
use crate::store::{Store, conflict_on_unique};
use crate::{Error, Result, now};

pub struct DomainRow {
    pub id: String,
    pub hostname: String,
    pub created_at: String,
}

/// An SNI endpoint, without its private key.
pub struct CertificateRow {
    pub id: String,
    pub hostnames: Vec<String>,
    pub expires_at: String,
    pub created_at: String,
}

impl Store {
    // ---- domains ----------------------------------------------------------------------

    pub async fn domains(&self, app_id: &str) -> Result<Vec<DomainRow>> {
        let rows = sqlx::query("SELECT id, hostname, created_at FROM domains WHERE app_id = $1 ORDER BY hostname")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DomainRow {
                    id: r.try_get("id")?,
                    hostname: r.try_get("hostname")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Adds a custom domain; `Conflict` if any app has it already, `Limit` if the app has
    /// [`DOMAINS_PER_APP`] already.
    pub async fn add_domain(&self, app_id: &str, hostname: &str) -> Result<DomainRow> {
        let row = DomainRow { id: uuid::Uuid::new_v4().to_string(), hostname: hostname.to_string(), created_at: now() };
        let mut tx = self.pool.begin().await?;
        let count = lock_and_count(&mut tx, "domains", app_id).await?;
        if count >= DOMAINS_PER_APP as i64 {
            return Err(Error::Limit(format!(
                "an app has at most {DOMAINS_PER_APP} custom domains and this one has {count}; remove one first \
                 (`ouro domains:remove`)"
            )));
        }
        sqlx::query("INSERT INTO domains (id, app_id, hostname, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&row.id)
            .bind(app_id)
            .bind(&row.hostname)
            .bind(&row.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique)?;
        tx.commit().await?;
        Ok(row)
    }

    /// Removes a custom domain; `false` if the app had no such domain.
    pub async fn remove_domain(&self, app_id: &str, hostname: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM domains WHERE app_id = $1 AND hostname = $2")
            .bind(app_id)
            .bind(hostname)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // ---- certificates -----------------------------------------------------------------

    /// The app's SNI endpoints, oldest first.
    pub async fn certificates(&self, app_id: &str) -> Result<Vec<CertificateRow>> {
        let rows = sqlx::query(
            "SELECT id, hostnames, expires_at, created_at FROM certificates WHERE app_id = $1 ORDER BY created_at, id",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let hostnames: String = r.try_get("hostnames")?;
                Ok(CertificateRow {
                    id: r.try_get("id")?,
                    hostnames: serde_json::from_str(&hostnames).unwrap_or_default(),
                    expires_at: r.try_get("expires_at")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Stores a checked certificate chain and its key, sealed with the platform key; `Limit`
    /// if the app has [`SNI_ENDPOINTS_PER_APP`] already.
    pub async fn add_certificate(
        &self,
        platform_key: &PlatformKey,
        app_id: &str,
        hostnames: Vec<String>,
        expires_at: String,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<CertificateRow> {
        let row = CertificateRow { id: uuid::Uuid::new_v4().to_string(), hostnames, expires_at, created_at: now() };
        let key_pem = platform_key.seal(&private_key_place(&row.id), key_pem);
        let mut tx = self.pool.begin().await?;
        let count = lock_and_count(&mut tx, "certificates", app_id).await?;
        if count >= SNI_ENDPOINTS_PER_APP as i64 {
            return Err(Error::Limit(format!(
                "an app has at most {SNI_ENDPOINTS_PER_APP} SNI endpoints and this one has {count}; remove one \
                 first (`ouro certs:remove`)"
            )));
        }
        sqlx::query(
            "INSERT INTO certificates (id, app_id, hostnames, expires_at, certificate_chain, private_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(app_id)
        .bind(serde_json::to_string(&row.hostnames).unwrap_or_else(|_| "[]".into()))
        .bind(&row.expires_at)
        .bind(chain_pem)
        .bind(&key_pem)
        .bind(&row.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Seals the private keys kept in clear by a version before sealing; how many.
    pub async fn seal_private_keys(&self, platform_key: &PlatformKey) -> Result<usize> {
        let rows = sqlx::query("SELECT id, private_key FROM certificates").fetch_all(&self.pool).await?;
        let mut sealed = 0;
        for row in rows {
            let (id, key_pem): (String, String) = (row.try_get("id")?, row.try_get("private_key")?);
            if PlatformKey::is_sealed(&key_pem) {
                continue;
            }
            sqlx::query("UPDATE certificates SET private_key = $2 WHERE id = $1 AND private_key = $3")
                .bind(&id)
                .bind(platform_key.seal(&private_key_place(&id), &key_pem))
                .bind(&key_pem)
                .execute(&self.pool)
                .await?;
            sealed += 1;
        }
        Ok(sealed)
    }

    /// Removes a certificate; `false` if the app had no such certificate.
    pub async fn remove_certificate(&self, app_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM certificates WHERE app_id = $1 AND id = $2")
            .bind(app_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Writes the app's row (so that additions to one app run one at a time: SQLite's write lock,
/// PostgreSQL's row lock) and counts its rows of `table` (`domains` or `certificates`).
async fn lock_and_count(tx: &mut sqlx::Transaction<'_, sqlx::Any>, table: &str, app_id: &str) -> Result<i64> {
    sqlx::query("UPDATE apps SET updated_at = $2 WHERE id = $1").bind(app_id).bind(now()).execute(&mut **tx).await?;
    let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE app_id = $1"))
        .bind(app_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get("n")?)
}

/// Where a certificate's private key is kept, as the platform key seals it.
pub(crate) fn private_key_place(certificate_id: &str) -> String {
    format!("certificates.private_key {certificate_id}")
}
