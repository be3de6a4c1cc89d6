//! SQLite side of [`PlanStore`]: plans, risk assessments and their revisions, and the
//! one-time rewrite of documents kept in the old form into the versioned one.

use async_trait::async_trait;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

use super::emergency::insert_opened;
use super::{SqliteStore, append_audit, as_u64, db_err, next_policy_version};
use crate::domain::UnixMillis;
use crate::service::plan_wire::{STORED_FORMAT, upgrade_stored_assessment, upgrade_stored_plan};
use crate::store::{Actor, Opened, PlanStore, StoreError, StoreResult, StoredDocument};

pub(super) fn document_from_row(row: &SqliteRow) -> StoredDocument {
    StoredDocument {
        id: row.get("id"),
        child_id: row.get("child_id"),
        number: as_u64(row.get::<i64, _>("number")),
        made_at: row.get("made_at"),
        made_by: row.get("made_by"),
        document: row.get("document"),
    }
}

/// How many documents [`upgrade`] rewrote, and how many it left in the old form.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Upgraded {
    pub rewritten: usize,
    pub left: usize,
}

/// Rewrites every plan revision and risk assessment still in format 1 (the domain's JSON) in
/// the versioned form, in one transaction. Runs each time the database opens; once done it
/// finds nothing to do. A row that would not read back exactly the same is left as it is
/// (it is still read) and counted, never changed.
pub(super) async fn upgrade(pool: &SqlitePool) -> StoreResult<Upgraded> {
    let mut tx: Transaction<'static, Sqlite> =
        pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let mut done = Upgraded::default();
    let rows = sqlx::query(
        "SELECT rowid, child_id || '/' || number AS id, child_id, number, made_at, made_by, \
         document FROM plan_revisions WHERE format_version = 1",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for row in &rows {
        let d = document_from_row(row);
        match upgrade_stored_plan(&d.document, d.number, &d.child_id, &d.made_by, d.made_at) {
            Some(text) => {
                sqlx::query(
                    "UPDATE plan_revisions SET document = ?, format_version = ? WHERE rowid = ?",
                )
                .bind(text)
                .bind(STORED_FORMAT)
                .bind(row.get::<i64, _>("rowid"))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                done.rewritten += 1;
            }
            None => done.left += 1,
        }
    }
    let rows = sqlx::query(
        "SELECT id, child_id, 0 AS number, made_at, made_by, document FROM risk_assessments \
         WHERE format_version = 1",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for row in &rows {
        let d = document_from_row(row);
        match upgrade_stored_assessment(&d.document, &d.id, &d.child_id, &d.made_by, d.made_at) {
            Some(text) => {
                sqlx::query(
                    "UPDATE risk_assessments SET document = ?, format_version = ? WHERE id = ?",
                )
                .bind(text)
                .bind(STORED_FORMAT)
                .bind(&d.id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                done.rewritten += 1;
            }
            None => done.left += 1,
        }
    }
    tx.commit().await.map_err(db_err)?;
    if done.rewritten > 0 || done.left > 0 {
        tracing::info!(
            rewritten = done.rewritten,
            left_in_the_old_form = done.left,
            "plan revisions and risk assessments rewritten in the versioned form"
        );
    }
    Ok(done)
}

#[async_trait]
impl PlanStore for SqliteStore {
    async fn add_risk_assessment(
        &self,
        actor: &Actor,
        id: &str,
        child_id: &str,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredDocument> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO risk_assessments (id, child_id, made_at, made_by, document, \
             format_version) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(child_id)
        .bind(now)
        .bind(&actor.0)
        .bind(document)
        .bind(STORED_FORMAT)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "risk_assessment.add",
            child_id,
            serde_json::json!({ "risk_assessment": id, "document": document }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(StoredDocument {
            id: id.to_string(),
            child_id: child_id.to_string(),
            number: 0,
            made_at: now,
            made_by: actor.0.clone(),
            document: document.to_string(),
        })
    }

    async fn risk_assessments(&self, child_id: &str) -> StoreResult<Vec<StoredDocument>> {
        let rows = sqlx::query(
            "SELECT id, child_id, 0 AS number, made_at, made_by, document FROM risk_assessments \
             WHERE child_id = ? ORDER BY made_at, id",
        )
        .bind(child_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(document_from_row).collect())
    }

    async fn add_plan_revision(
        &self,
        actor: &Actor,
        child_id: &str,
        expected_previous: u64,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<(StoredDocument, u64)> {
        self.add_plan_revision_opening(
            actor,
            child_id,
            expected_previous,
            document,
            &Opened::default(),
            now,
        )
        .await
    }

    async fn add_plan_revision_opening(
        &self,
        actor: &Actor,
        child_id: &str,
        expected_previous: u64,
        document: &str,
        opened: &Opened,
        now: UnixMillis,
    ) -> StoreResult<(StoredDocument, u64)> {
        let (sanctions, obligations) = (&opened.sanctions, &opened.obligations);
        let mut tx = self.write().await?;
        let latest: i64 = sqlx::query(
            "SELECT COALESCE(MAX(number), 0) AS n FROM plan_revisions WHERE child_id = ?",
        )
        .bind(child_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?
        .get("n");
        if as_u64(latest) != expected_previous {
            return Err(StoreError::Conflict(format!(
                "the plan changed while you were working on it (it is now at revision {latest}, \
                 you started from {expected_previous}): look at `haven plan history` and make \
                 your change again"
            )));
        }
        let number = latest + 1;
        sqlx::query(
            "INSERT INTO plan_revisions (child_id, number, made_at, made_by, document, \
             format_version) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(child_id)
        .bind(number)
        .bind(now)
        .bind(&actor.0)
        .bind(document)
        .bind(STORED_FORMAT)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let version = next_policy_version(&mut tx).await?;
        sqlx::query("UPDATE children SET policy_version = ?, policy_changed_at = ? WHERE id = ?")
            .bind(version as i64)
            .bind(now)
            .bind(child_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        insert_opened(&mut tx, child_id, number, sanctions, obligations, now).await?;
        append_audit(
            &mut tx,
            actor,
            "plan.revision.add",
            child_id,
            serde_json::json!({
                "revision": number,
                "document": document,
                "sanctions": sanctions.iter().map(|s| &s.id).collect::<Vec<_>>(),
                "obligations": obligations.iter().map(|o| serde_json::json!({
                    "id": o.id, "kind": o.kind, "due_at": o.due_at,
                })).collect::<Vec<_>>(),
            }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok((
            StoredDocument {
                id: format!("{child_id}/{number}"),
                child_id: child_id.to_string(),
                number: as_u64(number),
                made_at: now,
                made_by: actor.0.clone(),
                document: document.to_string(),
            },
            version,
        ))
    }

    async fn plan_revisions(&self, child_id: &str) -> StoreResult<Vec<StoredDocument>> {
        let rows = sqlx::query(
            "SELECT child_id || '/' || number AS id, child_id, number, made_at, made_by, document \
             FROM plan_revisions WHERE child_id = ? ORDER BY number",
        )
        .bind(child_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(document_from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::PlanRevision;
    use crate::domain::risk::{sample_draft, validate_risk_assessment};
    use crate::service::plan_wire::{read_stored_assessment, read_stored_plan};
    use crate::store::{ChildStore, HomeStore};

    fn manager() -> Actor {
        Actor("stf-m".into())
    }

    /// A revision as the controller wrote it before issue 15: the domain's JSON.
    fn old_revision(child_id: &str, number: u32, made_at: UnixMillis) -> PlanRevision {
        let template = crate::cli::plans::PLAN_TEMPLATE.replace("ra-REPLACE-ME", "ra-old");
        let plan = crate::cli::documents::plan_from_text(&template).unwrap();
        let draft = crate::service::plan_wire::plan_from_wire(
            "plan",
            &plan,
            child_id,
            &manager().0,
            made_at,
        )
        .unwrap();
        let mut r = PlanRevision::next(None, draft);
        r.number = number;
        r
    }

    async fn format_versions(store: &SqliteStore) -> Vec<i64> {
        sqlx::query(
            "SELECT format_version FROM plan_revisions UNION ALL \
             SELECT format_version FROM risk_assessments",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    // A database holding documents in the old form: opening it rewrites them in the versioned
    // form, in one go, and each reads back the same; opening it again changes nothing; a row
    // that would not come back the same is left as it was, and still read.
    #[tokio::test]
    async fn old_documents_are_rewritten_in_the_versioned_form_when_the_database_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haven.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let home = store
            .add_home(&manager(), "Oak", "Europe/London", 1)
            .await
            .unwrap();
        let child = store
            .add_child(&manager(), &home.id, "Amira", "2012-01-01", 2)
            .await
            .unwrap();
        let today = jiff::civil::date(2026, 11, 28);
        let mut draft = sample_draft("ra-old", &child.id);
        draft.author = manager().0;
        draft.made_at = 30;
        let assessment = validate_risk_assessment(&draft, today).unwrap();
        let first = old_revision(&child.id, 1, 40);
        // A reason that is not one of the four had no effect on a revision that restricted
        // nothing, and has no typed form: that row must be kept as written.
        let mut odd = old_revision(&child.id, 2, 50);
        odd.grounds.protective_reason = Some("because".into());
        // Written as the old controller wrote them.
        sqlx::query(
            "INSERT INTO risk_assessments (id, child_id, made_at, made_by, document) \
             VALUES (?, ?, 30, ?, ?)",
        )
        .bind(&assessment.id)
        .bind(&child.id)
        .bind(manager().0)
        .bind(serde_json::to_string(&assessment).unwrap())
        .execute(&store.pool)
        .await
        .unwrap();
        for r in [&first, &odd] {
            sqlx::query(
                "INSERT INTO plan_revisions (child_id, number, made_at, made_by, document) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&child.id)
            .bind(i64::from(r.number))
            .bind(r.made_at)
            .bind(&r.made_by)
            .bind(serde_json::to_string(r).unwrap())
            .execute(&store.pool)
            .await
            .unwrap();
        }
        assert_eq!(format_versions(&store).await, vec![1, 1, 1]);
        store.close().await;

        let store = SqliteStore::open(&path).await.unwrap();
        let mut versions = format_versions(&store).await;
        versions.sort();
        assert_eq!(
            versions,
            vec![1, 2, 2],
            "the odd revision stays in the old form"
        );
        let revisions = store.plan_revisions(&child.id).await.unwrap();
        assert!(!revisions[0].document.starts_with('{'));
        assert!(revisions[1].document.starts_with('{'), "left as written");
        for (doc, expected) in revisions.iter().zip([&first, &odd]) {
            let read = read_stored_plan(
                &doc.document,
                doc.number,
                &doc.child_id,
                &doc.made_by,
                doc.made_at,
            )
            .unwrap();
            assert_eq!(&read, expected);
        }
        let stored = &store.risk_assessments(&child.id).await.unwrap()[0];
        let read = read_stored_assessment(
            &stored.document,
            &stored.id,
            &stored.child_id,
            &stored.made_by,
            stored.made_at,
        )
        .unwrap();
        assert_eq!(read, assessment);
        // Idempotent: nothing more to rewrite, nothing changes.
        let before: Vec<String> = revisions.iter().map(|d| d.document.clone()).collect();
        assert_eq!(
            upgrade(&store.pool).await.unwrap(),
            Upgraded {
                rewritten: 0,
                left: 1
            }
        );
        let after: Vec<String> = store
            .plan_revisions(&child.id)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.document)
            .collect();
        assert_eq!(before, after);
        store.close().await;
    }
}
