//! Private PostgreSQL schemas for tests: each test makes its own, uniquely named, and drops
//! it when done (also when the test panics, best effort), so tests run in parallel against
//! one server. Where no PostgreSQL answers, `create` prints `SKIPPED: <reason>` and the test
//! returns early and passes. Shared by the store's conformance tests and the e2e harness.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// Where tests look for PostgreSQL unless `HAVEN_TEST_DATABASE_URL` says otherwise.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// `HAVEN_TEST_DATABASE_URL`, or the default.
pub fn test_database_url() -> String {
    std::env::var("HAVEN_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// A schema of its own on the test server, dropped with everything in it on drop.
pub struct PgSchema {
    base: String,
    name: String,
}

async fn admin_connection(base: &str) -> Result<PgConnection, String> {
    let options: PgConnectOptions = base.parse().map_err(|e| format!("{base}: {e}"))?;
    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
        .await
        .map_err(|_| format!("no answer from {base} within 5 s"))?
        .map_err(|e| format!("{base}: {e}"))
}

impl PgSchema {
    /// Makes a fresh schema on the test server, or says why not (`SKIPPED: …`) and gives
    /// `None` when no PostgreSQL answers there.
    pub async fn create() -> Option<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let base = test_database_url();
        let mut conn = match admin_connection(&base).await {
            Ok(conn) => conn,
            Err(reason) => {
                println!("SKIPPED: no PostgreSQL answers ({reason})");
                return None;
            }
        };
        let name = format!(
            "haven_test_{}_{}_{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
        {
            println!("SKIPPED: PostgreSQL at {base} would not make a schema ({e})");
            return None;
        }
        let _ = conn.close().await;
        Some(PgSchema { base, name })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL whose connections use this schema (`search_path`), for `PgStore::connect` or
    /// `haven serve --database`.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop may run inside a runtime (or while a test unwinds): a thread of its own with a
        // small runtime of its own can always wait for the server.
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = admin_connection(&base).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {name} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test schema {}", self.name);
        }
    }
}
