//! The embedded SQLite backend: one database file in the data directory (the default).
//!
//! WAL mode lets devices' heartbeats and staff reads proceed while a change is written;
//! foreign keys are enforced; every change runs in a `BEGIN IMMEDIATE` transaction, so
//! writers are serialised and two of them never race to extend the audit chain or to check a
//! rule against rows the other is changing.
//!
//! The queries themselves are not here: they live once, in `store/sql/*.rs`, and are compiled
//! into this module and into `postgres.rs` alike (see `store/mod.rs` for the seam). This file
//! holds what only SQLite has: opening the file and its pragmas, the migrations in
//! `migrations/sqlite/`, `BEGIN IMMEDIATE`, SQLite's error codes, the few SQL fragments
//! SQLite spells its own way (`dialect`) and the `VACUUM INTO` backup (`backup.rs`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Transaction;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{StoreError, StoreResult};

pub mod backup;
mod documents_upgrade;

#[path = "sql/common.rs"]
mod common;
use common::{
    advance_policy_counter, append_audit, as_u64, conflict, homes_json, name_key,
    next_policy_version,
};

#[path = "sql/audit_log.rs"]
mod audit_log;
#[path = "sql/certs.rs"]
mod certs;
#[path = "sql/children.rs"]
mod children;
#[path = "sql/devices.rs"]
mod devices;
#[path = "sql/documents.rs"]
mod documents;
#[path = "sql/emergency.rs"]
mod emergency;
#[path = "sql/filter.rs"]
mod filter;
#[path = "sql/homes.rs"]
mod homes;
#[path = "sql/records.rs"]
mod records;
#[path = "sql/staff.rs"]
mod staff;
#[path = "sql/trail.rs"]
mod trail;
#[path = "sql/violations.rs"]
mod violations;

/// The database the shared SQL is compiled for in this module.
type Db = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;
/// The store type the shared SQL implements the store traits for in this module.
type Backend = SqliteStore;

/// The SQL fragments SQLite spells differently from PostgreSQL.
mod dialect {
    /// The text values of a JSON array bound at `param` (e.g. `"$3"`), for `x IN (...)`.
    pub fn json_text_array(param: &str) -> String {
        format!("SELECT value FROM json_each({param})")
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// One connection that every write transaction takes, in turn. SQLite has one write lock;
    /// writers racing for it from several connections wait in SQLite's busy handler, which
    /// sleeps 1, 2, 5, 10, 20… ms between tries and lets a steady writer (device reports in
    /// chunks) starve a staff change for tens of milliseconds (85 ms for a lockdown behind
    /// 10,000 acknowledgements, issue 14). Queued here, a writer is woken the moment the one
    /// before it commits, first come first served. Reads keep the other connections.
    writer: SqlitePool,
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
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::Database(format!("could not bring the database up to date: {e}"))
        })?;
        advance_policy_counter(&pool).await?;
        // A private in-memory database is one connection's own: writes must use that one.
        let writer = if max <= 1 {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .map_err(db_err)?
        };
        let store = SqliteStore { pool, writer };
        // Documents written before they had a versioned form (migration 0021).
        documents::upgrade(&store).await?;
        Ok(store)
    }

    /// Waits for queries in flight, checkpoints the WAL and closes the file.
    pub async fn close(&self) {
        self.writer.close().await;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }

    /// A write transaction: `BEGIN IMMEDIATE` takes SQLite's one write lock up front, so every
    /// check-then-write inside it sees no other writer.
    async fn write(&self) -> StoreResult<Transaction<'static, Db>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)
    }

    /// A read transaction that sees one moment: SQLite's deferred transaction does.
    async fn read_snapshot(&self) -> StoreResult<Transaction<'static, Db>> {
        self.pool.begin().await.map_err(db_err)
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
        if db.is_unique_violation() {
            return StoreError::Conflict(format!(
                "that record already exists ({}): nothing was written",
                db.message()
            ));
        }
    }
    StoreError::Database(e.to_string())
}
