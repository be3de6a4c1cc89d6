//! Helpers every area of the SQL shared by both backends uses: the audit chain, the policy
//! counter, and small conversions. Mounted once per backend (see `store/sql.rs`).

use sqlx::{Row, Transaction};

use super::{Db, db_err};
use crate::domain::UnixMillis;
use crate::domain::audit;
use crate::store::{Actor, StoreError, StoreResult};

pub(super) fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Appends one entry to the hash-chained audit trail inside the caller's transaction.
///
/// Safe only inside a write transaction (`Backend::write`): that is what makes reading the
/// last entry and inserting the next one a single step for every writer on either backend.
pub(super) async fn append_audit(
    tx: &mut Transaction<'static, Db>,
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
    now: UnixMillis,
) -> StoreResult<()> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    let (prev_seq, prev_hash) = match last {
        Some(row) => (row.get::<i64, _>("seq"), row.get::<String, _>("hash")),
        None => (0, audit::GENESIS.to_string()),
    };
    let seq = prev_seq + 1;
    let detail = detail.to_string();
    let hash = audit::entry_hash(&prev_hash, seq, now, &actor.0, action, subject, &detail);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(now)
    .bind(&actor.0)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .bind(prev_hash)
    .bind(hash)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Takes the next policy version. One sequence for all devices: versions only ever grow.
pub(super) async fn next_policy_version(tx: &mut Transaction<'static, Db>) -> StoreResult<u64> {
    let row =
        sqlx::query("UPDATE sequences SET value = value + 1 WHERE name = 'policy' RETURNING value")
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
    Ok(as_u64(row.get::<i64, _>("value")))
}

/// A rule of the domain refused the change: nothing was written.
pub(super) fn conflict(e: impl std::fmt::Display) -> StoreError {
    StoreError::Conflict(e.to_string())
}

/// Never hand out a policy version a device has already seen: after a restore from backup
/// (or a database copied from elsewhere) the counter can be behind what devices enforce, and
/// they would ignore every "older" policy. Run at every start, on both backends.
pub(super) async fn advance_policy_counter(pool: &sqlx::Pool<Db>) -> StoreResult<()> {
    sqlx::query(
        "UPDATE sequences SET value = CASE WHEN value >= m.v THEN value ELSE m.v END \
         FROM (SELECT COALESCE(MAX(applied_version), 0) AS v FROM devices) AS m \
         WHERE name = 'policy'",
    )
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// A list of home ids as the JSON array `dialect::json_text_array` reads, for `IN (…)`.
pub(super) fn homes_json(homes: &[String]) -> String {
    serde_json::to_string(homes).unwrap_or_else(|_| "[]".into())
}
