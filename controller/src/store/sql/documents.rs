//! The SQL (both backends) of [`PlanStore`]: plans, risk assessments and their revisions, and
//! the one-time rewrite of documents kept in the old form into the versioned one.

use async_trait::async_trait;
use sqlx::Row;

use super::emergency::insert_opened;
use super::{Backend, DbRow, append_audit, as_u64, db_err, next_policy_version};
use crate::domain::UnixMillis;
use crate::service::plan_wire::{STORED_FORMAT, upgrade_stored_assessment, upgrade_stored_plan};
use crate::store::{
    Actor, Opened, Page, Paged, PlanStore, RevisionKey, StoreError, StoreResult, StoredDocument,
};

pub(super) fn document_from_row(row: &DbRow) -> StoredDocument {
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
pub(super) async fn upgrade(store: &Backend) -> StoreResult<Upgraded> {
    let mut tx = store.write().await?;
    let mut done = Upgraded::default();
    let rows = sqlx::query(
        "SELECT child_id || '/' || CAST(number AS TEXT) AS id, child_id, number, made_at, \
         made_by, document FROM plan_revisions WHERE format_version = 1",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for row in &rows {
        let d = document_from_row(row);
        match upgrade_stored_plan(&d.document, d.number, &d.child_id, &d.made_by, d.made_at) {
            Some(text) => {
                sqlx::query(
                    "UPDATE plan_revisions SET document = $1, format_version = $2 \
                     WHERE child_id = $3 AND number = $4",
                )
                .bind(text)
                .bind(STORED_FORMAT)
                .bind(&d.child_id)
                .bind(row.get::<i64, _>("number"))
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
                    "UPDATE risk_assessments SET document = $1, format_version = $2 WHERE id = $3",
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
impl PlanStore for Backend {
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
             format_version) VALUES ($1, $2, $3, $4, $5, $6)",
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
            "SELECT id, child_id, CAST(0 AS BIGINT) AS number, made_at, made_by, document FROM risk_assessments \
             WHERE child_id = $1 ORDER BY made_at, id",
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
            "SELECT COALESCE(MAX(number), 0) AS n FROM plan_revisions WHERE child_id = $1",
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
             format_version) VALUES ($1, $2, $3, $4, $5, $6)",
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
        sqlx::query(
            "UPDATE children SET policy_version = $1, policy_changed_at = $2 WHERE id = $3",
        )
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
             FROM plan_revisions WHERE child_id = $1 ORDER BY number",
        )
        .bind(child_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(document_from_row).collect())
    }

    async fn plan_revisions_page(
        &self,
        child_id: &str,
        page: &Page<RevisionKey>,
    ) -> StoreResult<Paged<StoredDocument, RevisionKey>> {
        // Revisions are numbered from 1, so 0 is before the first.
        let (after,) = page.after.unwrap_or((0,));
        let rows = sqlx::query(
            "SELECT child_id || '/' || number AS id, child_id, number, made_at, made_by, document \
             FROM plan_revisions WHERE child_id = $1 AND number > $2 ORDER BY number LIMIT $3",
        )
        .bind(child_id)
        .bind(after)
        .bind(i64::from(page.size) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(Paged::from_fetched(
            rows.iter().map(document_from_row).collect(),
            page.size,
            |d: &StoredDocument| (i64::try_from(d.number).unwrap_or(i64::MAX),),
        ))
    }
}
