//! The embedded SQLite backend: one database file in the data directory.
//!
//! WAL mode lets devices' heartbeats and staff reads proceed while a change is written;
//! foreign keys are enforced; every change runs in a `BEGIN IMMEDIATE` transaction so two
//! writers never race to extend the audit chain.
//!
//! This file holds the [`SqliteStore`] type, opening and migrations, the write-transaction
//! helper, error mapping and the helpers every area shares (`append_audit`,
//! `next_policy_version`, `name_key`, `as_u64`, `conflict`). Each store lives in its own file
//! under `sqlite/`: `staff.rs` (staff), `homes.rs` (homes, protected contacts), `children.rs`,
//! `devices.rs` (enrollment, devices, policy versions), `violations.rs` (violations, manager
//! tasks), `audit_log.rs` (reading the trail), `documents.rs` (plans, risk assessments),
//! `records.rs` (off-duty reports, children's requests), `emergency.rs` (lockdowns, sanctions,
//! obligations), `certs.rs` (device certificates), `trail.rs` (checkpoints, record facts, reads)
//! and `backup.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::*;
use crate::domain::UnixMillis;
use crate::domain::audit;

pub mod backup;
mod certs;
mod trail;

mod audit_log;
mod children;
mod devices;
mod documents;
mod emergency;
mod homes;
mod records;
mod staff;
mod violations;

mod filter;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options, 4).await
    }

    /// A private in-memory database, for tests.
    pub async fn in_memory() -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db_err)?
            .foreign_keys(true);
        // One connection: each in-memory connection would otherwise be its own database.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, max: u32) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(options)
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::Database(format!("could not bring the database up to date: {e}"))
        })?;
        // Documents written before they had a versioned form (migration 0021).
        documents::upgrade(&pool).await?;
        // After a restore from backup the counter can be behind what devices already
        // enforce; they would ignore every "older" policy. Never hand out a version a device
        // has already seen.
        sqlx::query(
            "UPDATE sequences SET value = MAX(value, \
             (SELECT COALESCE(MAX(applied_version), 0) FROM devices)) WHERE name = 'policy'",
        )
        .execute(&pool)
        .await
        .map_err(db_err)?;
        Ok(SqliteStore { pool })
    }

    /// Waits for queries in flight, checkpoints the WAL and closes the file.
    pub async fn close(&self) {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }

    async fn write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }
}

fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // SQLITE_FULL (13) and SQLITE_IOERR (10): say what a person can do about it.
        if let Some(code) = db.code() {
            let primary = code.parse::<i64>().unwrap_or(0) & 0xff;
            if primary == 13 {
                return StoreError::DiskFull;
            }
        }
        if db.message().contains("database or disk is full") {
            return StoreError::DiskFull;
        }
    }
    StoreError::Database(e.to_string())
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Appends one entry to the hash-chained audit trail inside the caller's transaction.
async fn append_audit(
    tx: &mut Transaction<'static, Sqlite>,
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
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
async fn next_policy_version(tx: &mut Transaction<'static, Sqlite>) -> StoreResult<u64> {
    let row =
        sqlx::query("UPDATE sequences SET value = value + 1 WHERE name = 'policy' RETURNING value")
            .fetch_one(&mut **tx)
            .await
            .map_err(db_err)?;
    Ok(as_u64(row.get::<i64, _>("value")))
}

/// A rule of the domain refused the change: nothing was written.
fn conflict(e: impl std::fmt::Display) -> StoreError {
    StoreError::Conflict(e.to_string())
}
