//! `haven.admin.v1.RecordsService`: staff reports of off-duty contact (WB3) and the register of
//! photography approvals (IM4).

// The deprecated words fields beside each enum are still filled and read, for older clients
// (proto/README.md).
#![allow(deprecated)]

use std::sync::Arc;

use haven_proto::admin::v1 as api;
use haven_proto::admin::v1::*;
use tonic::{Request, Response, Status};

use super::auth::in_scope;
use super::convert::WithTimes as _;
use super::wire_enums::{pick, wire};
use super::{Context, now_ms, today_in};
use crate::domain::Action;
use crate::domain::camera::{CameraIncident, review_required, validate_incident};
use crate::domain::reports::{OffDutyContact, PhotographyApproval, RequestDecision, answer_reason};
use crate::store::{Actor, OffDutyReportRecord, StoredDocument};

pub struct RecordsApi {
    pub ctx: Arc<Context>,
}

fn report(r: OffDutyReportRecord) -> OffDutyReport {
    let doc: Option<OffDutyContact> = serde_json::from_str(&r.document).ok();
    let doc = doc.as_ref();
    OffDutyReport {
        id: r.id,
        home_id: r.home_id,
        child_id: r.child_id.unwrap_or_default(),
        reported_by: r.reported_by,
        created_at_unix_ms: r.created_at,
        when: doc.map(|d| d.when.clone()).unwrap_or_default(),
        how: doc.map(|d| d.how.clone()).unwrap_or_default(),
        who: doc.map(|d| d.who.clone()).unwrap_or_default(),
        what_happened: doc.map(|d| d.what_happened.clone()).unwrap_or_default(),
        communication_stopped: doc.is_some_and(|d| d.communication_stopped),
        acknowledged_by: r.acknowledged_by.unwrap_or_default(),
        acknowledged_at_unix_ms: r.acknowledged_at.unwrap_or(0),
        manager_note: r.manager_note.unwrap_or_default(),
        created_at: None,
        acknowledged_at: None,
    }
    .with_times()
}

fn approval_record(d: StoredDocument) -> PhotographyApprovalRecord {
    let a: Option<PhotographyApproval> = serde_json::from_str(&d.document).ok();
    PhotographyApprovalRecord {
        id: d.id,
        child_id: d.child_id,
        recorded_by: d.made_by,
        recorded_at_unix_ms: d.made_at,
        approved_by: a
            .as_ref()
            .map(|a| a.approved_by.clone())
            .unwrap_or_default(),
        placing_authority_consulted: a
            .as_ref()
            .map(|a| a.placing_authority_consulted.clone())
            .unwrap_or_default(),
        consulted_on: a
            .as_ref()
            .map(|a| a.consulted_on.to_string())
            .unwrap_or_default(),
        purpose: a.as_ref().map(|a| a.purpose.clone()).unwrap_or_default(),
        valid_until: a
            .as_ref()
            .and_then(|a| a.valid_until)
            .map(|d| d.to_string())
            .unwrap_or_default(),
        recorded_at: None,
    }
    .with_times()
}

fn date(what: &str, raw: &str) -> Result<jiff::civil::Date, Status> {
    raw.trim().parse().map_err(|_| {
        super::errors::invalid(format!(
            "{raw:?} is not a date for the {what}: write it as YYYY-MM-DD"
        ))
    })
}

#[tonic::async_trait]
impl records_service_server::RecordsService for RecordsApi {
    async fn report_off_duty_contact(
        &self,
        request: Request<ReportOffDutyContactRequest>,
    ) -> Result<Response<OffDutyReport>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReportOffDutyContact)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_for(&who, req.home.trim()).await?;
        let child = match req.child.trim() {
            "" => None,
            key => Some(self.ctx.child_for(&who, key).await?),
        };
        let contact = OffDutyContact {
            when: req.when,
            how: req.how,
            who: req.who,
            what_happened: req.what_happened,
            communication_stopped: req.communication_stopped,
        }
        .checked()
        .map_err(|e| super::errors::invalid(e.0))?;
        let json = serde_json::to_string(&contact)
            .map_err(|_| super::errors::internal("could not write the report down"))?;
        let stored = self
            .ctx
            .store
            .add_off_duty_report(
                &Actor::staff(&who),
                &home.id,
                child.as_ref().map(|c| c.id.as_str()),
                &json,
                now_ms(),
            )
            .await?;
        tracing::info!(report = %stored.id, home = %home.id, "off-duty contact reported");
        Ok(Response::new(report(stored)))
    }

    async fn list_off_duty_reports(
        &self,
        request: Request<ListOffDutyReportsRequest>,
    ) -> Result<Response<ListOffDutyReportsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let home_id = self.ctx.home_filter(&who, &req.home).await?;
        let reports = self
            .ctx
            .store
            .off_duty_reports(home_id.as_deref(), req.open_only)
            .await?;
        Ok(Response::new(ListOffDutyReportsResponse {
            reports: reports
                .into_iter()
                .filter(|r| who.homes.covers(&r.home_id))
                .inspect(|r| {
                    if let Some(child) = &r.child_id {
                        self.ctx.note_read(&who, child)
                    }
                })
                .map(report)
                .collect(),
        }))
    }

    async fn acknowledge_off_duty_report(
        &self,
        request: Request<AcknowledgeOffDutyReportRequest>,
    ) -> Result<Response<OffDutyReport>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::FollowUpReports)
            .await?;
        let req = request.into_inner();
        let note = req.note.trim();
        if note.is_empty() {
            return Err(super::errors::bad_field(
                "note",
                "say what was done about the report",
            ));
        }
        // A report from another home is "not found", never "not yours".
        let found = self.ctx.store.find_off_duty_report(req.id.trim()).await?;
        in_scope(
            &who,
            &found.home_id,
            "off-duty contact report",
            req.id.trim(),
            (),
        )?;
        let done = self
            .ctx
            .store
            .acknowledge_off_duty_report(&Actor::staff(&who), req.id.trim(), note, now_ms())
            .await?;
        Ok(Response::new(report(done)))
    }

    async fn add_photography_approval(
        &self,
        request: Request<AddPhotographyApprovalRequest>,
    ) -> Result<Response<PhotographyApprovalRecord>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::RegisterPhotographyApprovals)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, req.child.trim()).await?;
        let home = self.ctx.home_for(&who, &child.home_id).await?;
        let today = today_in(&home.time_zone);
        let approval = PhotographyApproval {
            approved_by: req.approved_by,
            placing_authority_consulted: req.placing_authority_consulted,
            consulted_on: date("consultation", &req.consulted_on)?,
            purpose: req.purpose,
            valid_until: match req.valid_until.trim() {
                "" => None,
                raw => Some(date("end of the approval", raw)?),
            },
        }
        .checked(today)
        .map_err(|e| super::errors::invalid(e.0))?;
        let json = serde_json::to_string(&approval)
            .map_err(|_| super::errors::internal("could not write the approval down"))?;
        let stored = self
            .ctx
            .store
            .add_photography_approval(&Actor::staff(&who), &child.id, &json, now_ms())
            .await?;
        Ok(Response::new(approval_record(stored)))
    }

    async fn list_photography_approvals(
        &self,
        request: Request<ListPhotographyApprovalsRequest>,
    ) -> Result<Response<ListPhotographyApprovalsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let child = self
            .ctx
            .child_for(&who, request.get_ref().child.trim())
            .await?;
        let list = self.ctx.store.photography_approvals(&child.id).await?;
        Ok(Response::new(ListPhotographyApprovalsResponse {
            approvals: list.into_iter().map(approval_record).collect(),
        }))
    }

    async fn record_camera_incident(
        &self,
        request: Request<RecordCameraIncidentRequest>,
    ) -> Result<Response<CameraIncidentRecord>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::RecordIncidents)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, req.child.trim()).await?;
        let what = validate_incident(&req.what_happened)
            .map_err(|r| super::errors::refusal_in("what_happened", r))?;
        let incident = self
            .ctx
            .store
            .add_camera_incident(
                &Actor::staff(&who),
                &child.id,
                &what,
                req.images_may_reach_others,
                now_ms(),
            )
            .await?;
        tracing::info!(child = %child.id, incident = %incident.id, "camera incident recorded");
        let required = self.camera_review_required(&child.id).await?;
        Ok(Response::new(incident_record(
            incident,
            required.as_deref(),
        )))
    }

    async fn list_camera_incidents(
        &self,
        request: Request<ListCameraIncidentsRequest>,
    ) -> Result<Response<ListCameraIncidentsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let child = self
            .ctx
            .child_for(&who, request.get_ref().child.trim())
            .await?;
        let required = self.camera_review_required(&child.id).await?;
        let list = self.ctx.store.camera_incidents(&child.id).await?;
        Ok(Response::new(ListCameraIncidentsResponse {
            incidents: list
                .into_iter()
                .map(|i| incident_record(i, required.as_deref()))
                .collect(),
        }))
    }

    async fn list_child_requests(
        &self,
        request: Request<ListChildRequestsRequest>,
    ) -> Result<Response<ListChildRequestsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child_id = self.ctx.child_filter(&who, &req.child).await?;
        let list = self
            .ctx
            .store
            .child_requests(child_id.as_deref(), !req.include_answered)
            .await?;
        Ok(Response::new(ListChildRequestsResponse {
            requests: list
                .into_iter()
                .filter(|r| who.homes.covers(&r.home_id))
                .inspect(|r| self.ctx.note_read(&who, &r.child_id))
                .map(request_record)
                .collect(),
        }))
    }

    async fn answer_child_request(
        &self,
        request: Request<AnswerChildRequestRequest>,
    ) -> Result<Response<ChildRequestRecord>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::AnswerChildRequests)
            .await?;
        let req = request.into_inner();
        let decision = pick::<api::RequestDecision>(
            req.request_decision,
            "request_decision",
            &req.decision,
            "decision",
        )?;
        let decision =
            RequestDecision::parse(&decision).map_err(|e| super::errors::invalid(e.0))?;
        let reason = answer_reason(&req.reason).map_err(|e| super::errors::invalid(e.0))?;
        let asked = self.ctx.store.find_child_request(req.id.trim()).await?;
        in_scope(&who, &asked.home_id, "request", req.id.trim(), ())?;
        let answered = self
            .ctx
            .store
            .answer_child_request(
                &Actor::staff(&who),
                req.id.trim(),
                decision.as_str(),
                &reason,
                now_ms(),
            )
            .await?;
        // The child hears at once if the device is connected, otherwise when it reconnects.
        if let Some(outbox) = self.ctx.registry.outbox(&answered.device_id) {
            let _ = outbox.try_send(Ok(
                crate::service::agent::answer_message(answered.clone()).into()
            ));
        }
        Ok(Response::new(request_record(answered)))
    }
}

impl RecordsApi {
    /// The id of the incident that makes the child's camera arrangement "review required".
    async fn camera_review_required(&self, child_id: &str) -> Result<Option<String>, Status> {
        let history = self.ctx.store.plan_revisions(child_id).await?;
        let current = history
            .last()
            .and_then(crate::service::plans::parse_revision);
        let incidents = self.ctx.store.camera_incidents(child_id).await?;
        Ok(review_required(current.as_ref(), &incidents).map(|i| i.id.clone()))
    }
}

fn incident_record(i: CameraIncident, review_required_by: Option<&str>) -> CameraIncidentRecord {
    CameraIncidentRecord {
        review_required: review_required_by == Some(i.id.as_str()),
        id: i.id,
        child_id: i.child_id,
        recorded_by: i.recorded_by,
        recorded_at_unix_ms: i.recorded_at,
        what_happened: i.what_happened,
        images_may_reach_others: i.images_may_reach_others,
        recorded_at: None,
    }
    .with_times()
}

fn request_record(r: crate::store::ChildRequestRecord) -> ChildRequestRecord {
    ChildRequestRecord {
        id: r.id,
        child_id: r.child_id,
        child_name: r.child_name,
        device_id: r.device_id,
        text: r.text,
        made_at_unix_ms: r.made_at,
        received_at_unix_ms: r.received_at,
        request_decision: wire::<api::RequestDecision>(r.decision.as_deref().unwrap_or("")),
        decision: r.decision.unwrap_or_default(),
        reason: r.reason.unwrap_or_default(),
        answered_by: r.answered_by.unwrap_or_default(),
        answered_at_unix_ms: r.answered_at.unwrap_or(0),
        ..Default::default()
    }
    .with_times()
}
