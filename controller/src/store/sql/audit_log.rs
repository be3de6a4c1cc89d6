//! The SQL (both backends) of [`AuditStore`]: reading the hash-chained audit trail
//! (appending is `append_audit` in `common.rs`).

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, db_err};
use crate::domain::audit::AuditEntry;
use crate::store::{AuditStore, StoreResult};

#[async_trait]
impl AuditStore for Backend {
    async fn audit_entries(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, detail, prev_hash, hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                seq: r.get("seq"),
                at: r.get("at"),
                actor: r.get("actor"),
                action: r.get("action"),
                subject: r.get("subject"),
                detail: r.get("detail"),
                prev_hash: r.get("prev_hash"),
                hash: r.get("hash"),
            })
            .collect())
    }
}
