//! Violation ingestion per second on each storage backend: one device's reports stored
//! through `ViolationStore::record_violations` in batches, as `service/agent.rs` does, on
//! SQLite (a file, WAL, as `haven serve` opens it) and on PostgreSQL (a fresh schema on
//! `HAVEN_TEST_DATABASE_URL`; skipped when none answers).
//!
//! `cargo bench -p haven-tests --bench store_ingest` (HAVEN_INGEST_BATCHES to change the size).

use std::time::Instant;

use haven_controller::store::postgres::PgStore;
use haven_controller::store::sqlite::SqliteStore;
use haven_controller::store::testdb::PgSchema;
use haven_controller::store::{Actor, NewDevice, Store, ViolationRecord};

const BATCH: usize = 50;
const WRITERS: usize = 4;

async fn device(s: &impl Store) -> String {
    let admin = Actor("stf-bench".into());
    let home = s.add_home(&admin, "Oak", "Europe/London", 1).await.unwrap();
    let child = s
        .add_child(&admin, &home.id, "Amira", "2012-01-01", 1)
        .await
        .unwrap();
    s.create_enrollment(&admin, &child.id, "code", 1_000_000, 1)
        .await
        .unwrap();
    s.redeem_enrollment(
        "code",
        NewDevice {
            id: "dev-bench".into(),
            cert_fingerprint: "fp-bench".into(),
            inventory: None,
        },
        2,
    )
    .await
    .unwrap()
    .id
}

/// Stores `batches` batches from `WRITERS` concurrent writers; returns violations a second.
async fn ingest(s: &impl Store, batches: usize) -> f64 {
    let device = device(s).await;
    let started = Instant::now();
    let writers = (0..WRITERS).map(|w| {
        let device = device.clone();
        async move {
            for b in 0..batches / WRITERS {
                let batch: Vec<ViolationRecord> = (0..BATCH)
                    .map(|i| ViolationRecord {
                        id: format!("v-{w}-{b}-{i}"),
                        kind: "web".into(),
                        channel: "web".into(),
                        subject: format!("blocked-{i}.example"),
                        detail: "social networking".into(),
                        occurred_at: 1_000 + i as i64,
                    })
                    .collect();
                s.record_violations(&device, &batch, 10).await.unwrap();
            }
        }
    });
    futures::future::join_all(writers).await;
    let stored = (batches / WRITERS * WRITERS * BATCH) as f64;
    stored / started.elapsed().as_secs_f64()
}

fn main() {
    let batches: usize = std::env::var("HAVEN_INGEST_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("haven.db")).await.unwrap();
        let rate = ingest(&sqlite, batches).await;
        println!(
            "sqlite:     {rate:>9.0} violations/s ({batches} batches of {BATCH}, {WRITERS} writers)"
        );
        sqlite.close().await;
        if let Some(schema) = PgSchema::create().await {
            let pg = PgStore::connect(&schema.url()).await.unwrap();
            let rate = ingest(&pg, batches).await;
            println!(
                "postgresql: {rate:>9.0} violations/s ({batches} batches of {BATCH}, {WRITERS} writers)"
            );
            pg.close().await;
        }
    });
}
