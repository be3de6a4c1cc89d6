//! The PostgreSQL backend: `haven serve --database postgres://…` (or `HAVEN_DATABASE_URL`).
//!
//! The same queries as SQLite, compiled a second time: every file under `store/sql/` is
//! mounted here with `#[path]`, with `Db = sqlx::Postgres` and `Backend = PgStore`, so the
//! two backends cannot drift apart. The queries are written in the SQL both accept (`$N`
//! placeholders, which sqlx-sqlite maps to argument N; `ON CONFLICT`, `RETURNING`, `CASE`
//! instead of scalar `MAX(a, b)`, `string_agg`, BIGINT everywhere). What PostgreSQL spells
//! its own way sits in `dialect` below; what only it has (connecting, its migrations in
//! `migrations/postgres/`, the write lock, its error codes) is in this file.
//!
//! **One writer at a time, as on SQLite.** Every write transaction first takes
//! `pg_advisory_xact_lock(HAVEN_WRITE_KEY, hashtext(current_schema()))`, held until commit
//! or rollback. That gives PostgreSQL exactly SQLite's `BEGIN IMMEDIATE` semantics: the
//! audit chain is extended by one writer at a time (one gap-free, ordered chain however many
//! connections and controllers write), and every check-then-write rule (last administrator,
//! a code used once, a sanction completed once) sees no concurrent writer. Under READ
//! COMMITTED each statement after the lock sees everything committed before it was granted.
//! The key includes the schema, so databases in separate schemas (tests, several homes'
//! groups on one server) do not wait for each other, while every controller on one schema
//! shares the lock. Reads never take it.
//!
//! Backups of a PostgreSQL-backed controller are PostgreSQL's own (`pg_dump`): `haven backup`
//! refuses with that advice.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Transaction;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{StoreError, StoreResult};

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
type Db = sqlx::Postgres;
type DbRow = sqlx::postgres::PgRow;
/// The store type the shared SQL implements the store traits for in this module.
type Backend = PgStore;

/// The SQL fragments PostgreSQL spells differently from SQLite.
mod dialect {
    /// The text values of a JSON array bound at `param` (e.g. `"$3"`), for `x IN (...)`.
    pub fn json_text_array(param: &str) -> String {
        format!("SELECT json_array_elements_text(CAST({param} AS json))")
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The first half of the advisory lock every write transaction takes ("HAVN").
const HAVEN_WRITE_KEY: i32 = 0x4841_564E;

/// Connections a controller keeps open. Writers queue on the advisory lock, so more
/// connections only help readers (staff lists, device hellos) run beside a write.
const POOL_CONNECTIONS: u32 = 8;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`, optionally
    /// `?options=-c%20search_path%3Dschema`) and brings the schema up to date.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Database(format!(
                "the database address is not a PostgreSQL URL ({e}): write it as \
                 postgres://USER@HOST:5432/DATABASE"
            ))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::Database(format!("could not bring the database up to date: {e}"))
        })?;
        advance_policy_counter(&pool).await?;
        let store = PgStore { pool };
        // The same versioned form of documents as SQLite (nothing to rewrite on a database
        // that never held the old form).
        documents::upgrade(&store).await?;
        Ok(store)
    }

    /// Waits for queries in flight and closes the connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction: the advisory lock makes it the only writer until it ends (see
    /// the module documentation).
    async fn write(&self) -> StoreResult<Transaction<'static, Db>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
            .bind(HAVEN_WRITE_KEY)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Ok(tx)
    }

    /// A read transaction that sees one moment (READ COMMITTED would give each statement its
    /// own).
    async fn read_snapshot(&self) -> StoreResult<Transaction<'static, Db>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db_err)
    }
}

fn db_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // 53100 is disk_full: say what a person can do about it. A unique violation is a
        // record that already exists.
        if db.code().as_deref() == Some("53100") {
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
