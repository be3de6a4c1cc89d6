//! The SQL (both backends) of [`DeviceCertStore`]: short-lived device certificates and their renewal (D7).

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, DbRow, append_audit, db_err};
use crate::domain::UnixMillis;
use crate::store::{
    Actor, CertificateUse, DeviceCertStore, DeviceCertificate, StoreError, StoreResult,
};

const CERT_SELECT: &str = "SELECT c.fingerprint, c.device_id, c.issued_at, c.not_after, \
     c.first_used_at, c.superseded_at FROM device_certificates c";

fn cert_from_row(row: &DbRow) -> DeviceCertificate {
    DeviceCertificate {
        fingerprint: row.get("fingerprint"),
        device_id: row.get("device_id"),
        issued_at: row.get("issued_at"),
        not_after: row.get("not_after"),
        first_used_at: row.get("first_used_at"),
        superseded_at: row.get("superseded_at"),
    }
}

fn device_not_found(device_id: &str) -> StoreError {
    StoreError::NotFound {
        what: "device",
        key: device_id.to_string(),
    }
}

#[async_trait]
impl DeviceCertStore for Backend {
    async fn record_renewed_certificate(
        &self,
        device_id: &str,
        fingerprint: &str,
        not_after: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        match status.as_deref() {
            None => return Err(device_not_found(device_id)),
            Some("active") => {}
            Some(_) => {
                return Err(StoreError::Conflict(
                    "this device was removed by staff: its certificate is not renewed".into(),
                ));
            }
        }
        sqlx::query(
            "INSERT INTO device_certificates (fingerprint, device_id, issued_at, not_after) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(fingerprint)
        .bind(device_id)
        .bind(now)
        .bind(not_after)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            &Actor::device(device_id),
            "device.certificate.renew",
            device_id,
            serde_json::json!({ "certificate": fingerprint, "not_after": not_after }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn device_for_renewed_certificate(
        &self,
        fingerprint: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<String>> {
        sqlx::query_scalar(
            "SELECT c.device_id FROM device_certificates c JOIN devices d ON d.id = c.device_id \
             WHERE c.fingerprint = $1 AND c.superseded_at IS NULL AND c.not_after > $2 \
             AND d.cert_fingerprint <> c.fingerprint",
        )
        .bind(fingerprint)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn certificate_in_use(
        &self,
        device_id: &str,
        fingerprint: &str,
        not_after: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<CertificateUse> {
        // Most connections change nothing: look before taking the write lock.
        let current: Option<String> =
            sqlx::query_scalar("SELECT cert_fingerprint FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        let current = current.ok_or_else(|| device_not_found(device_id))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CERT_SELECT} WHERE c.fingerprint = $1"
        )))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(|r| cert_from_row(&r));
        if current == fingerprint && row.as_ref().is_some_and(|c| c.first_used_at.is_some()) {
            return Ok(CertificateUse::Current);
        }

        let mut tx = self.write().await?;
        let current: String =
            sqlx::query_scalar("SELECT cert_fingerprint FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or_else(|| device_not_found(device_id))?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CERT_SELECT} WHERE c.fingerprint = $1"
        )))
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .map(|r| cert_from_row(&r));
        if current == fingerprint {
            // The certificate in use: record when it expires if this is the first time it is
            // seen (enrolled before certificates were recorded). Telemetry, not a record.
            sqlx::query(
                "INSERT INTO device_certificates \
                 (fingerprint, device_id, issued_at, not_after, first_used_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (fingerprint) DO UPDATE SET \
                 first_used_at = COALESCE(device_certificates.first_used_at, excluded.first_used_at)",
            )
            .bind(fingerprint)
            .bind(device_id)
            .bind(now)
            .bind(not_after)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            return Ok(CertificateUse::Current);
        }
        let renewed = row
            .filter(|c| c.device_id == device_id && c.superseded_at.is_none() && c.not_after > now);
        if renewed.is_none() {
            return Err(StoreError::Conflict(
                "this certificate is not this device's, or was replaced: enroll the device again"
                    .into(),
            ));
        }
        sqlx::query("UPDATE devices SET cert_fingerprint = $1 WHERE id = $2")
            .bind(fingerprint)
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE device_certificates SET first_used_at = COALESCE(first_used_at, $1) \
             WHERE fingerprint = $2",
        )
        .bind(now)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        // Every older certificate stops working now, the one just replaced included.
        sqlx::query(
            "UPDATE device_certificates SET superseded_at = $1 \
             WHERE device_id = $2 AND fingerprint <> $3 AND superseded_at IS NULL",
        )
        .bind(now)
        .bind(device_id)
        .bind(fingerprint)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            &Actor::device(device_id),
            "device.certificate.use",
            device_id,
            serde_json::json!({ "certificate": fingerprint, "replaces": current }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(CertificateUse::SwitchedToRenewed)
    }

    async fn current_certificate(&self, device_id: &str) -> StoreResult<Option<DeviceCertificate>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CERT_SELECT} JOIN devices d ON d.cert_fingerprint = c.fingerprint WHERE d.id = $1"
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(row.as_ref().map(cert_from_row))
    }

    async fn certificates_expiring(
        &self,
        before: UnixMillis,
    ) -> StoreResult<Vec<DeviceCertificate>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{CERT_SELECT} JOIN devices d ON d.cert_fingerprint = c.fingerprint \
             WHERE d.status = 'active' AND c.not_after < $1 ORDER BY c.not_after, c.device_id"
        )))
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(cert_from_row).collect())
    }
}
