//! The SQL (both backends) of signed checkpoints of the audit trail, the facts records claim for the comparison
//! with the trail, and the log of who read which child's records (R36).

use async_trait::async_trait;
use sqlx::Row;

use super::{Backend, db_err};
use crate::domain::UnixMillis;
use crate::domain::checkpoint::Checkpoint;
use crate::domain::reads::Read;
use crate::domain::trail::{RecordFact, RecordFacts, ViolationCount, plan_revision_id};
use crate::store::{Page, Paged, ReadKey, ReadRecord, ReadStore, StoreResult, TrailStore};

/// Per covered kind: the query (id, then the time of each event, NULL when it has not
/// happened) and the events those times stand for, in column order.
const FACT_QUERIES: [(&str, &str, &[&str]); 13] = [
    (
        "staff member",
        "SELECT id, created_at, revoked_at FROM staff",
        &["made", "revoked"],
    ),
    ("home", "SELECT id, created_at FROM homes", &["made"]),
    (
        "child",
        "SELECT id, created_at, archived_at FROM children",
        &["made", "archived"],
    ),
    (
        "device",
        "SELECT id, enrolled_at, revoked_at FROM devices",
        &["made", "revoked"],
    ),
    (
        "risk assessment",
        "SELECT id, made_at FROM risk_assessments",
        &["made"],
    ),
    (
        "lockdown",
        "SELECT id, started_at, lifted_at FROM lockdowns",
        &["made", "lifted"],
    ),
    (
        "sanction",
        "SELECT id, opened_at, completed_at, signed_off_at, discussed_at FROM sanctions",
        &[
            "made",
            "completed",
            "signed off",
            "discussed with the child",
        ],
    ),
    (
        "obligation",
        // Only a notification someone recorded has its own entry; an obligation a sanction's
        // completion closed is witnessed by the sanction's entry.
        "SELECT id, opened_at, CASE WHEN how IS NOT NULL THEN closed_at END FROM obligations",
        &["made", "notified"],
    ),
    (
        "camera incident",
        "SELECT id, recorded_at FROM camera_incidents",
        &["made"],
    ),
    (
        "photography approval",
        "SELECT id, recorded_at FROM photography_approvals",
        &["made"],
    ),
    (
        "off-duty report",
        "SELECT id, created_at, acknowledged_at FROM off_duty_reports",
        &["made", "acknowledged"],
    ),
    (
        "manager task",
        "SELECT id, opened_at, closed_at FROM manager_tasks",
        &["made", "closed"],
    ),
    (
        "child request",
        "SELECT id, received_at, answered_at FROM child_requests",
        &["made", "answered"],
    ),
];

#[async_trait]
impl TrailStore for Backend {
    async fn save_checkpoint(&self, c: &Checkpoint) -> StoreResult<()> {
        // Through the write queue like every other write (`write()`).
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (entry_seq, entry_hash, entries, at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.entry_seq)
        .bind(&c.entry_hash)
        .bind(i64::try_from(c.entries).unwrap_or(i64::MAX))
        .bind(c.at)
        .bind(&c.key_id)
        .bind(&c.signature)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        let rows = sqlx::query(
            "SELECT entry_seq, entry_hash, entries, at, key_id, signature \
             FROM audit_checkpoints ORDER BY at, entry_seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| Checkpoint {
                entry_seq: r.get("entry_seq"),
                entry_hash: r.get("entry_hash"),
                entries: super::as_u64(r.get("entries")),
                at: r.get("at"),
                key_id: r.get("key_id"),
                signature: r.get("signature"),
            })
            .collect())
    }

    async fn record_facts(&self) -> StoreResult<RecordFacts> {
        // One read transaction: the records are compared as of one moment.
        let mut tx = self.read_snapshot().await?;
        let mut facts = Vec::new();
        for (kind, sql, events) in FACT_QUERIES {
            let rows = sqlx::query(sql).fetch_all(&mut *tx).await.map_err(db_err)?;
            for row in &rows {
                let id: String = row.get(0);
                for (i, event) in events.iter().enumerate() {
                    if let Some(at) = row.get::<Option<i64>, _>(i + 1) {
                        facts.push(RecordFact::new(kind, id.clone(), event, at));
                    }
                }
            }
        }
        let rows = sqlx::query("SELECT child_id, number, made_at FROM plan_revisions")
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        for row in &rows {
            facts.push(RecordFact::new(
                "plan revision",
                plan_revision_id(row.get("child_id"), row.get("number")),
                "made",
                row.get("made_at"),
            ));
        }
        let violations = sqlx::query(
            "SELECT device_id, COUNT(*) AS n, MIN(received_at) AS first_at FROM violations \
             GROUP BY device_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?
        .iter()
        .map(|r| ViolationCount {
            device_id: r.get("device_id"),
            stored: super::as_u64(r.get("n")),
            first_at: r.get("first_at"),
        })
        .collect();
        tx.commit().await.map_err(db_err)?;
        Ok(RecordFacts { facts, violations })
    }
}

#[async_trait]
impl ReadStore for Backend {
    async fn record_reads(&self, reads: &[Read]) -> StoreResult<()> {
        if reads.is_empty() {
            return Ok(());
        }
        let mut tx = self.write().await?;
        for r in reads {
            sqlx::query(
                "INSERT INTO audit_reads (at, staff_id, child_id, what) VALUES ($1, $2, $3, $4)",
            )
            .bind(r.at)
            .bind(&r.staff_id)
            .bind(&r.child_id)
            .bind(&r.what)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn reads_of_child(
        &self,
        child_id: &str,
        since: UnixMillis,
        page: &Page<ReadKey>,
    ) -> StoreResult<Paged<ReadRecord, ReadKey>> {
        // Before the first page the cursor is past the newest read; `seq` (written in order)
        // tells apart reads of the same millisecond.
        let (at, seq) = page.after.unwrap_or((i64::MAX, i64::MAX));
        let rows = sqlx::query(
            "SELECT r.seq, r.at, r.staff_id, r.child_id, r.what, \
             COALESCE(s.name, r.staff_id) AS name \
             FROM audit_reads r LEFT JOIN staff s ON s.id = r.staff_id \
             WHERE r.child_id = $1 AND r.at >= $2 AND r.at <= $3 AND (r.at, r.seq) < ($4, $5) \
             ORDER BY r.at DESC, r.seq DESC LIMIT $6",
        )
        .bind(child_id)
        .bind(since)
        // `at <=` is implied by the row comparison; it keeps the walk on the index.
        .bind(at)
        .bind(at)
        .bind(seq)
        .bind(i64::from(page.size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let rows = rows
            .iter()
            .map(|r| ReadRecord {
                seq: r.get("seq"),
                read: Read {
                    at: r.get("at"),
                    staff_id: r.get("staff_id"),
                    child_id: r.get("child_id"),
                    what: r.get("what"),
                },
                staff_name: r.get("name"),
            })
            .collect();
        Ok(Paged::from_fetched(rows, page.size, |r: &ReadRecord| {
            (r.read.at, r.seq)
        }))
    }
}
