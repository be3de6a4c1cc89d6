//! The SQL (both backends) of [`ReportStore`] and [`RequestStore`]: off-duty reports, photography approvals,
//! camera incidents and children's requests.

use async_trait::async_trait;
use sqlx::Row;

use super::documents::document_from_row;
use super::{Backend, DbRow, append_audit, db_err};
use crate::domain::UnixMillis;
use crate::domain::camera::CameraIncident;
use crate::ids::new_id;
use crate::store::{
    Actor, ChildRequestRecord, OffDutyReportRecord, ReportStore, RequestStore, StoreError,
    StoreResult, StoredDocument,
};

fn report_from_row(row: &DbRow) -> OffDutyReportRecord {
    OffDutyReportRecord {
        id: row.get("id"),
        home_id: row.get("home_id"),
        child_id: row.get("child_id"),
        reported_by: row.get("reported_by"),
        created_at: row.get("created_at"),
        document: row.get("document"),
        acknowledged_by: row.get("acknowledged_by"),
        acknowledged_at: row.get("acknowledged_at"),
        manager_note: row.get("manager_note"),
    }
}

const REPORT_COLUMNS: &str = "SELECT id, home_id, child_id, reported_by, created_at, document, \
     acknowledged_by, acknowledged_at, manager_note FROM off_duty_reports";

#[async_trait]
impl ReportStore for Backend {
    async fn add_off_duty_report(
        &self,
        actor: &Actor,
        home_id: &str,
        child_id: Option<&str>,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<OffDutyReportRecord> {
        let id = new_id("odr");
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO off_duty_reports (id, home_id, child_id, reported_by, created_at, document) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(home_id)
        .bind(child_id)
        .bind(&actor.0)
        .bind(now)
        .bind(document)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "off_duty_report.add",
            &id,
            serde_json::json!({ "home": home_id, "child": child_id, "document": document }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(OffDutyReportRecord {
            id,
            home_id: home_id.to_string(),
            child_id: child_id.map(str::to_string),
            reported_by: actor.0.clone(),
            created_at: now,
            document: document.to_string(),
            acknowledged_by: None,
            acknowledged_at: None,
            manager_note: None,
        })
    }

    async fn off_duty_reports(
        &self,
        home_id: Option<&str>,
        open_only: bool,
    ) -> StoreResult<Vec<OffDutyReportRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REPORT_COLUMNS} WHERE ($1 IS NULL OR home_id = $2) \
             AND ($3 = 0 OR acknowledged_at IS NULL) ORDER BY created_at, id"
        )))
        .bind(home_id)
        .bind(home_id)
        .bind(i64::from(open_only))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(report_from_row).collect())
    }

    async fn find_off_duty_report(&self, id: &str) -> StoreResult<OffDutyReportRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REPORT_COLUMNS} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(report_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "off-duty contact report",
                key: id.to_string(),
            })
    }

    async fn acknowledge_off_duty_report(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<OffDutyReportRecord> {
        let mut tx = self.write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REPORT_COLUMNS} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or_else(|| StoreError::NotFound {
            what: "report",
            key: id.to_string(),
        })?;
        let report = report_from_row(&row);
        if report.acknowledged_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "report {id} was already acknowledged by {}",
                report.acknowledged_by.unwrap_or_default()
            )));
        }
        sqlx::query(
            "UPDATE off_duty_reports SET acknowledged_by = $1, acknowledged_at = $2, manager_note = $3 \
             WHERE id = $4",
        )
        .bind(&actor.0)
        .bind(now)
        .bind(note)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "off_duty_report.acknowledge",
            id,
            serde_json::json!({ "note": note }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(OffDutyReportRecord {
            acknowledged_by: Some(actor.0.clone()),
            acknowledged_at: Some(now),
            manager_note: Some(note.to_string()),
            ..report
        })
    }

    async fn add_photography_approval(
        &self,
        actor: &Actor,
        child_id: &str,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredDocument> {
        let id = new_id("pha");
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO photography_approvals (id, child_id, recorded_by, recorded_at, document) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(child_id)
        .bind(&actor.0)
        .bind(now)
        .bind(document)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "photography_approval.add",
            child_id,
            serde_json::json!({ "approval": id, "document": document }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(StoredDocument {
            id,
            child_id: child_id.to_string(),
            number: 0,
            made_at: now,
            made_by: actor.0.clone(),
            document: document.to_string(),
        })
    }

    async fn add_camera_incident(
        &self,
        actor: &Actor,
        child_id: &str,
        what_happened: &str,
        images_may_reach_others: bool,
        now: UnixMillis,
    ) -> StoreResult<CameraIncident> {
        let id = new_id("cin");
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO camera_incidents (id, child_id, recorded_by, recorded_at, what_happened, \
             images_may_reach_others) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(child_id)
        .bind(&actor.0)
        .bind(now)
        .bind(what_happened)
        .bind(images_may_reach_others)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "camera_incident.add",
            child_id,
            serde_json::json!({
                "incident": id,
                "what_happened": what_happened,
                "images_may_reach_others": images_may_reach_others,
            }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(CameraIncident {
            id,
            child_id: child_id.to_string(),
            recorded_by: actor.0.clone(),
            recorded_at: now,
            what_happened: what_happened.to_string(),
            images_may_reach_others,
        })
    }

    async fn camera_incidents(&self, child_id: &str) -> StoreResult<Vec<CameraIncident>> {
        let rows = sqlx::query(
            "SELECT id, child_id, recorded_by, recorded_at, what_happened, images_may_reach_others \
             FROM camera_incidents WHERE child_id = $1 ORDER BY recorded_at, id",
        )
        .bind(child_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| CameraIncident {
                id: r.get("id"),
                child_id: r.get("child_id"),
                recorded_by: r.get("recorded_by"),
                recorded_at: r.get("recorded_at"),
                what_happened: r.get("what_happened"),
                images_may_reach_others: r.get("images_may_reach_others"),
            })
            .collect())
    }

    async fn photography_approvals(&self, child_id: &str) -> StoreResult<Vec<StoredDocument>> {
        let rows = sqlx::query(
            "SELECT id, child_id, CAST(0 AS BIGINT) AS number, recorded_at AS made_at, recorded_by AS made_by, \
             document FROM photography_approvals WHERE child_id = $1 ORDER BY recorded_at, id",
        )
        .bind(child_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(document_from_row).collect())
    }
}

const REQUEST_SELECT: &str = "SELECT r.id, r.device_id, r.child_id, c.name AS child_name, \
     c.home_id, r.text, r.made_at, r.received_at, r.decision, r.reason, r.answered_by, \
     r.answered_at FROM child_requests r JOIN children c ON c.id = r.child_id";

fn request_from_row(row: &DbRow) -> ChildRequestRecord {
    ChildRequestRecord {
        id: row.get("id"),
        device_id: row.get("device_id"),
        child_id: row.get("child_id"),
        child_name: row.get("child_name"),
        home_id: row.get("home_id"),
        text: row.get("text"),
        made_at: row.get("made_at"),
        received_at: row.get("received_at"),
        decision: row.get("decision"),
        reason: row.get("reason"),
        answered_by: row.get("answered_by"),
        answered_at: row.get("answered_at"),
    }
}

#[async_trait]
impl RequestStore for Backend {
    async fn record_child_request(
        &self,
        device_id: &str,
        id: &str,
        text: &str,
        made_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let child_id: String = sqlx::query("SELECT child_id FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(|r| r.get("child_id"))
            .ok_or_else(|| StoreError::NotFound {
                what: "device",
                key: device_id.to_string(),
            })?;
        let done = sqlx::query(
            "INSERT INTO child_requests (id, device_id, child_id, text, made_at, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device_id, id) DO NOTHING",
        )
        .bind(id)
        .bind(device_id)
        .bind(&child_id)
        .bind(text)
        .bind(made_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let new = done.rows_affected() == 1;
        if new {
            append_audit(
                &mut tx,
                &Actor::device(device_id),
                "child_request.add",
                &child_id,
                serde_json::json!({ "request": id, "text": text }),
                now,
            )
            .await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(new)
    }

    async fn child_requests(
        &self,
        child_id: Option<&str>,
        open_only: bool,
    ) -> StoreResult<Vec<ChildRequestRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE ($1 IS NULL OR r.child_id = $2) \
             AND ($3 = 0 OR r.answered_at IS NULL) ORDER BY r.received_at, r.id"
        )))
        .bind(child_id)
        .bind(child_id)
        .bind(i64::from(open_only))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(request_from_row).collect())
    }

    async fn find_child_request(&self, id: &str) -> StoreResult<ChildRequestRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref()
            .map(request_from_row)
            .ok_or_else(|| StoreError::NotFound {
                what: "request",
                key: id.to_string(),
            })
    }

    async fn answer_child_request(
        &self,
        actor: &Actor,
        id: &str,
        decision: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<ChildRequestRecord> {
        let mut tx = self.write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.id = $1"
        )))
        .bind(id.trim())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let request = match rows.as_slice() {
            [] => {
                return Err(StoreError::NotFound {
                    what: "request",
                    key: id.to_string(),
                });
            }
            [one] => request_from_row(one),
            many => {
                return Err(StoreError::Ambiguous {
                    what: "request",
                    key: id.to_string(),
                    ids: many.iter().map(|r| r.get("device_id")).collect(),
                });
            }
        };
        if request.answered_at.is_some() {
            return Err(StoreError::Conflict(format!(
                "request {id} was already answered ({})",
                request.decision.clone().unwrap_or_default()
            )));
        }
        sqlx::query(
            "UPDATE child_requests SET decision = $1, reason = $2, answered_by = $3, answered_at = $4 \
             WHERE device_id = $5 AND id = $6",
        )
        .bind(decision)
        .bind(reason)
        .bind(&actor.0)
        .bind(now)
        .bind(&request.device_id)
        .bind(&request.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        append_audit(
            &mut tx,
            actor,
            "child_request.answer",
            &request.child_id,
            serde_json::json!({ "request": request.id, "decision": decision, "reason": reason }),
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(ChildRequestRecord {
            decision: Some(decision.to_string()),
            reason: Some(reason.to_string()),
            answered_by: Some(actor.0.clone()),
            answered_at: Some(now),
            ..request
        })
    }

    async fn answers_for_device(&self, device_id: &str) -> StoreResult<Vec<ChildRequestRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REQUEST_SELECT} WHERE r.device_id = $1 AND r.answered_at IS NOT NULL \
             ORDER BY r.answered_at DESC LIMIT 50"
        )))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.iter().map(request_from_row).collect())
    }
}
