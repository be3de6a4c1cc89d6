//! The conformance suite against both backends, one test per scenario and backend:
//! SQLite in a private file (so several connections really race), PostgreSQL in a private
//! schema per store (skipped, and passing, where no PostgreSQL answers).

use std::sync::Mutex;

use super::conformance::Fresh;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::testdb::PgSchema;

/// SQLite files in one private folder, removed with it.
pub struct SqliteFiles {
    dir: tempfile::TempDir,
    next: Mutex<u32>,
}

impl SqliteFiles {
    pub async fn start() -> Option<Self> {
        Some(SqliteFiles {
            dir: tempfile::tempdir().ok()?,
            next: Mutex::new(0),
        })
    }
}

impl Fresh for SqliteFiles {
    type Store = SqliteStore;
    async fn fresh(&self) -> SqliteStore {
        let n = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        SqliteStore::open(&self.dir.path().join(format!("haven-{n}.db")))
            .await
            .unwrap()
    }
}

/// PostgreSQL schemas, each dropped when the test ends (also on failure).
pub struct PgSchemas {
    /// The schema made to ask whether PostgreSQL answers, not yet handed out.
    first: Mutex<Option<PgSchema>>,
    used: Mutex<Vec<PgSchema>>,
}

impl PgSchemas {
    pub async fn start() -> Option<Self> {
        // Ask once whether PostgreSQL answers, so a missing server is one SKIPPED line.
        let first = PgSchema::create().await?;
        Some(PgSchemas {
            first: Mutex::new(Some(first)),
            used: Mutex::new(Vec::new()),
        })
    }
}

impl Fresh for PgSchemas {
    type Store = PgStore;
    async fn fresh(&self) -> PgStore {
        let first = self.first.lock().unwrap().take();
        let schema = match first {
            Some(s) => s,
            None => PgSchema::create().await.expect("PostgreSQL went away"),
        };
        let store = PgStore::connect(&schema.url()).await.unwrap();
        self.used.lock().unwrap().push(schema);
        store
    }
}

mod sqlite {
    crate::conformance_tests!(super::SqliteFiles::start());
}

mod postgres {
    crate::conformance_tests!(super::PgSchemas::start());
}
