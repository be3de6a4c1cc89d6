//! `haven.admin.v1.PlanService`: risk assessments and placement-plan revisions.
//!
//! Documents arrive as the typed messages of `plan.proto`, turned into the domain's types in
//! `plan_wire`. The controller fills in what only it may know — who is asking
//! (from their token), which child, when, the new record's id — so nobody can sign a record in
//! someone else's name; then the domain checks every rule of the policy before anything is
//! written, and a new revision is pushed to the child's devices at once.

use std::sync::Arc;

use haven_proto::admin::v1 as api;
use haven_proto::admin::v1::*;
use tonic::{Code, Request, Response, Status};

use super::errors;
use super::plan_wire::{self, FieldError};
use super::{Context, date_in, now_ms, pages, today_in};
use crate::domain::camera::{incident_review_item, review_required, withdrawal};
use crate::domain::emergency::review_overdue;
use crate::domain::plan::{
    PlanRevision, PlanRevisionDraft, normalise_section, reviews_due, validate_revision,
};
use crate::domain::policy::protected_for_child;
use crate::domain::restriction::{
    check_review_carried, owes_social_worker_notice, telephone_reductions,
};
use crate::domain::risk::{Refusal, RiskAssessment, RiskAssessmentDraft, validate_risk_assessment};
use crate::domain::sanction::{ObligationKind, SanctionRecord, obligations_after};
use crate::domain::{Action, StaffIdentity, UnixMillis};
use crate::ids::new_id;
use crate::store::{
    Actor, ChildRecord, HomeRecord, NewObligation, NewSanction, Opened, StoredDocument,
};

pub struct PlanApi {
    pub ctx: Arc<Context>,
}

// Every refusal of this service goes through these three, which give it the rich error model
// of `service/errors.rs`: a stable `ErrorInfo.reason`, the clause in its metadata, and for
// bad input the path of the field in the request, so a program can branch on them.

/// A field of the request that cannot be read: INVALID_ARGUMENT, reason `INVALID_INPUT`,
/// naming the field's path (`plan.communication.contacts[0].windows[2].start_minute`). The
/// words keep the path too: people reading them have no other way to find the field.
fn bad_field(e: FieldError) -> Status {
    errors::bad_field(&e.field, &e)
}

/// A value staff typed that is not what it should be (a phone number, a web domain) in the
/// plan's communication section: INVALID_ARGUMENT with the refusal's reason and clause.
fn bad_value(r: Refusal) -> Status {
    errors::refusal_in(&format!("{}.communication", plan_wire::PLAN_FIELD), r)
}

/// A rule of the policy the request would break: FAILED_PRECONDITION with its reason (e.g.
/// `PERMISSION_NEEDS_RISK_ASSESSMENT`) and clause (e.g. `KP2`).
fn refused(r: Refusal) -> Status {
    errors::refusal(Code::FailedPrecondition, r)
}

/// A risk assessment as staff sent it, with what only the controller may fill in (its id,
/// the child, the author, the time): the shape checks; the rules are the domain's.
pub fn risk_draft(
    ra: Option<&api::RiskAssessment>,
    id: &str,
    child_id: &str,
    author: &str,
    now: UnixMillis,
) -> Result<RiskAssessmentDraft, Status> {
    let ra = ra.ok_or_else(|| {
        bad_field(FieldError {
            field: plan_wire::RISK_FIELD.into(),
            description: "the risk assessment is missing: send the assessment to record".into(),
        })
    })?;
    plan_wire::risk_from_wire(plan_wire::RISK_FIELD, ra, id, child_id, author, now)
        .map_err(bad_field)
}

/// A plan revision as staff sent it, with what only the controller may fill in, and its
/// section normalised: the shape checks; the rules are the domain's.
pub fn plan_draft(
    plan: Option<&api::PlacementPlan>,
    child_id: &str,
    made_by: &str,
    now: UnixMillis,
) -> Result<PlanRevisionDraft, Status> {
    let plan = plan.ok_or_else(|| {
        bad_field(FieldError {
            field: plan_wire::PLAN_FIELD.into(),
            description: "the plan is missing: send the whole new revision".into(),
        })
    })?;
    let mut draft = plan_wire::plan_from_wire(plan_wire::PLAN_FIELD, plan, child_id, made_by, now)
        .map_err(bad_field)?;
    draft.section = normalise_section(&draft.section).map_err(bad_value)?;
    Ok(draft)
}

/// A stored revision, or `None` if it cannot be read (then it counts as no plan: the safe
/// default).
pub fn parse_revision(doc: &StoredDocument) -> Option<PlanRevision> {
    plan_wire::read_stored_plan(
        &doc.document,
        doc.number,
        &doc.child_id,
        &doc.made_by,
        doc.made_at,
    )
    .inspect_err(|e| {
        tracing::error!(child = %doc.child_id, revision = doc.number, error = %e, "stored plan revision unreadable");
    })
    .ok()
}

fn parse_assessment(doc: &StoredDocument) -> Option<RiskAssessment> {
    plan_wire::read_stored_assessment(
        &doc.document,
        &doc.id,
        &doc.child_id,
        &doc.made_by,
        doc.made_at,
    )
    .inspect_err(|e| {
        tracing::error!(risk_assessment = %doc.id, error = %e, "stored risk assessment unreadable");
    })
    .ok()
}

fn parse_assessments(docs: &[StoredDocument]) -> Vec<RiskAssessment> {
    docs.iter().filter_map(parse_assessment).collect()
}

impl PlanApi {
    /// Checks a draft against every rule, stores it as the next revision and pushes it to the
    /// child's devices. The one way a revision is written, whoever drafted it.
    async fn commit_revision(
        &self,
        who: &StaffIdentity,
        child: &ChildRecord,
        home: &HomeRecord,
        previous: Option<PlanRevision>,
        draft: PlanRevisionDraft,
        based_on_revision: u64,
    ) -> Result<PlanRevisionRecord, Status> {
        let now = draft.made_at;
        let assessments = parse_assessments(&self.ctx.store.risk_assessments(&child.id).await?);
        let protected = protected_for_child(
            &self.ctx.store.list_protected_contacts(&home.id).await?,
            &child.id,
        );
        validate_revision(
            previous.as_ref().map(|p| &p.section),
            &draft,
            &assessments,
            &protected,
            who.role,
            today_in(&home.time_zone),
        )
        .map_err(refused)?;
        let revision = PlanRevision::next(previous.as_ref(), draft);
        // clause KP1: a standing restriction keeps its review date.
        let history: Vec<PlanRevision> = self
            .ctx
            .store
            .plan_revisions(&child.id)
            .await?
            .iter()
            .filter_map(parse_revision)
            .collect();
        check_review_carried(&history, &revision).map_err(refused)?;
        let document = plan_wire::store_plan(&revision);
        let (sanctions, obligations) =
            self.opened_by(who, child, home, previous.as_ref(), &revision)?;
        let opened = Opened {
            sanctions,
            obligations,
        };
        let (stored, version) = self
            .ctx
            .store
            .add_plan_revision_opening(
                &Actor::staff(who),
                &child.id,
                based_on_revision,
                &document,
                &opened,
                now,
            )
            .await?;
        tracing::info!(child = %child.id, revision = stored.number, version, "plan revised");
        if let Err(e) = self.ctx.push_child(&home.id, &child.id, version, now).await {
            tracing::warn!(child = %child.id, error = %e, "push failed; devices catch up on reconnect");
        }
        let mut record = revision_record(stored, Some(&revision), version);
        record.sanction_ids = opened.sanctions.into_iter().map(|s| s.id).collect();
        Ok(record)
    }

    /// Lockdowns in force that are to be reviewed within `within_days`, or already past their
    /// review time (KP1, GD4).
    async fn lockdown_reviews(
        &self,
        who: &StaffIdentity,
        within_days: u32,
    ) -> Result<Vec<ReviewDue>, Status> {
        let now = now_ms();
        let horizon = now.saturating_add(i64::from(within_days.min(36_500)) * 86_400_000);
        let mut out = Vec::new();
        for l in self.ctx.store.lockdowns(None, false).await? {
            let Some(review_at) = l.review_at else {
                continue;
            };
            if !who.homes.covers(&l.home_id) || review_at > horizon {
                continue;
            }
            let time_zone = self.ctx.store.find_home(&l.home_id).await?.time_zone;
            out.push(ReviewDue {
                child_id: l.child_id.clone().unwrap_or_default(),
                child_name: l
                    .child_name
                    .clone()
                    .unwrap_or_else(|| format!("every child in {}", l.home_name)),
                home_name: l.home_name.clone(),
                what: format!(
                    "lockdown {} ({} withdrawn since {})",
                    l.id,
                    l.channels.join(", "),
                    date_in(&time_zone, l.started_at)
                ),
                due: date_in(&time_zone, review_at).to_string(),
                overdue: review_overdue(Some(review_at), l.lifted_at, now),
            });
        }
        Ok(out)
    }

    /// What a revision opens (RM5): reducing telephone or messaging access is a Sanction, with
    /// the same record, deadlines and notification of the social worker as a lockdown's.
    fn opened_by(
        &self,
        who: &StaffIdentity,
        child: &ChildRecord,
        home: &HomeRecord,
        previous: Option<&PlanRevision>,
        revision: &PlanRevision,
    ) -> Result<(Vec<NewSanction>, Vec<NewObligation>), Status> {
        let reductions = telephone_reductions(previous.map(|p| &p.section), &revision.section);
        if reductions.is_empty() {
            // clause RM4, IM2: restricted before the social worker was consulted.
            if !owes_social_worker_notice(previous.map(|p| &p.section), revision) {
                return Ok((Vec::new(), Vec::new()));
            }
            let notify =
                obligations_after(revision.made_at, &home.time_zone, &self.ctx.holidays, false)
                    .into_iter()
                    .map(|(kind, due_at)| NewObligation {
                        id: new_id("obl"),
                        kind: kind.as_str().to_string(),
                        child_id: child.id.clone(),
                        sanction_id: None,
                        due_at,
                    })
                    .collect();
            return Ok((Vec::new(), notify));
        }
        let record = SanctionRecord::for_revision(
            &child.name,
            revision.number,
            &revision.reason,
            &reductions,
            revision.made_at,
            revision.review_by,
            &who.name,
        );
        let sanction = NewSanction {
            id: new_id("snc"),
            child_id: child.id.clone(),
            record: serde_json::to_string(&record)
                .map_err(|_| errors::internal("could not write the sanction record"))?,
        };
        let obligations =
            obligations_after(revision.made_at, &home.time_zone, &self.ctx.holidays, true)
                .into_iter()
                .map(|(kind, due_at)| NewObligation {
                    id: new_id("obl"),
                    kind: kind.as_str().to_string(),
                    child_id: child.id.clone(),
                    sanction_id: (kind != ObligationKind::NotifySocialWorker)
                        .then(|| sanction.id.clone()),
                    due_at,
                })
                .collect();
        Ok((vec![sanction], obligations))
    }
}

/// A stored revision as the wire carries it. `revision` is the same revision already read
/// (when the caller has it); an unreadable one travels without its `plan`.
fn revision_record(
    doc: StoredDocument,
    revision: Option<&PlanRevision>,
    policy_version: u64,
) -> PlanRevisionRecord {
    let plan = match revision {
        Some(r) => Some(plan_wire::plan_to_wire(r)),
        None => parse_revision(&doc).as_ref().map(plan_wire::plan_to_wire),
    };
    if plan.is_none() {
        tracing::warn!(child = %doc.child_id, revision = doc.number, "a stored plan revision could not be read");
    }
    PlanRevisionRecord {
        child_id: doc.child_id,
        number: doc.number,
        made_at: Some(plan_wire::timestamp(doc.made_at)),
        made_by: doc.made_by,
        plan,
        policy_version,
        sanction_ids: Vec::new(),
    }
}

fn assessment_record(doc: StoredDocument) -> RiskAssessmentRecord {
    let risk_assessment = parse_assessment(&doc).as_ref().map(plan_wire::risk_to_wire);
    if risk_assessment.is_none() {
        tracing::warn!(risk_assessment = %doc.id, "a stored risk assessment could not be read");
    }
    RiskAssessmentRecord {
        id: doc.id,
        child_id: doc.child_id,
        made_at: Some(plan_wire::timestamp(doc.made_at)),
        made_by: doc.made_by,
        risk_assessment,
    }
}

#[tonic::async_trait]
impl plan_service_server::PlanService for PlanApi {
    async fn record_risk_assessment(
        &self,
        request: Request<RecordRiskAssessmentRequest>,
    ) -> Result<Response<RiskAssessmentRecord>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::RecordRiskAssessments)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, req.child.trim()).await?;
        let home = self.ctx.home_for(&who, &child.home_id).await?;
        let id = new_id("ra");
        let now = now_ms();
        let draft = risk_draft(req.risk_assessment.as_ref(), &id, &child.id, &who.id, now)?;
        let assessment =
            validate_risk_assessment(&draft, today_in(&home.time_zone)).map_err(refused)?;
        let stored = self
            .ctx
            .store
            .add_risk_assessment(
                &Actor::staff(&who),
                &id,
                &child.id,
                &plan_wire::store_assessment(&assessment),
                now,
            )
            .await?;
        Ok(Response::new(assessment_record(stored)))
    }

    async fn list_risk_assessments(
        &self,
        request: Request<ListRiskAssessmentsRequest>,
    ) -> Result<Response<ListRiskAssessmentsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let child = self
            .ctx
            .child_for(&who, request.get_ref().child.trim())
            .await?;
        let docs = self.ctx.store.risk_assessments(&child.id).await?;
        Ok(Response::new(ListRiskAssessmentsResponse {
            risk_assessments: docs.into_iter().map(assessment_record).collect(),
        }))
    }

    async fn revise_plan(
        &self,
        request: Request<RevisePlanRequest>,
    ) -> Result<Response<PlanRevisionRecord>, Status> {
        // Any member of staff may ask; the domain says who may decide (a manager, RM2).
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, req.child.trim()).await?;
        let home = self.ctx.home_for(&who, &child.home_id).await?;
        let history = self.ctx.store.plan_revisions(&child.id).await?;
        let previous = history.last().and_then(parse_revision);
        let draft = plan_draft(req.plan.as_ref(), &child.id, &who.id, now_ms())?;
        let record = self
            .commit_revision(&who, &child, &home, previous, draft, req.based_on_revision)
            .await?;
        Ok(Response::new(record))
    }

    async fn withdraw_camera(
        &self,
        request: Request<WithdrawCameraRequest>,
    ) -> Result<Response<PlanRevisionRecord>, Status> {
        // Any member of staff may ask; only a manager may restrict (RM2, checked on commit).
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, req.child.trim()).await?;
        let home = self.ctx.home_for(&who, &child.home_id).await?;
        let history = self.ctx.store.plan_revisions(&child.id).await?;
        let Some(current) = history.last().and_then(parse_revision) else {
            return Err(errors::conflict(format!(
                "{} has no placement plan yet, so the camera is already off",
                child.name
            )));
        };
        let today = today_in(&home.time_zone);
        let review_by = match req.review_by.trim() {
            "" => today
                .checked_add(jiff::Span::new().days(28))
                .unwrap_or(today),
            text => text.parse().map_err(|_| {
                errors::bad_field(
                    "review_by",
                    format!("{text:?} is not a date: use YYYY-MM-DD, e.g. 2026-12-31"),
                )
            })?,
        };
        let draft =
            withdrawal(&current, &who.id, now_ms(), &req.reason, review_by).map_err(refused)?;
        let record = self
            .commit_revision(
                &who,
                &child,
                &home,
                Some(current.clone()),
                draft,
                u64::from(current.number),
            )
            .await?;
        tracing::info!(child = %child.id, revision = record.number, "camera withdrawn");
        Ok(Response::new(record))
    }

    async fn plan_history(
        &self,
        request: Request<PlanHistoryRequest>,
    ) -> Result<Response<PlanHistoryResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child = self.ctx.child_for(&who, req.child.trim()).await?;
        let filters = pages::Filters::new("plan history").with("child", Some(&child.id));
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let docs = self.ctx.store.plan_revisions_page(&child.id, &page).await?;
        Ok(Response::new(PlanHistoryResponse {
            next_page_token: pages::next_token(docs.next.as_ref(), &filters),
            revisions: docs
                .items
                .into_iter()
                .map(|d| revision_record(d, None, 0))
                .collect(),
        }))
    }

    async fn list_reviews(
        &self,
        request: Request<ListReviewsRequest>,
    ) -> Result<Response<ListReviewsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let homes = match req.home.trim() {
            "" => {
                let mut all = self.ctx.store.list_homes().await?;
                all.retain(|h| who.homes.covers(&h.id));
                all
            }
            key => vec![self.ctx.home_for(&who, key).await?],
        };
        let mut reviews = Vec::new();
        for home in homes {
            let today = today_in(&home.time_zone);
            for child in self.ctx.store.list_children(Some(&home.id)).await? {
                if child.archived_at.is_some() {
                    continue;
                }
                let history = self.ctx.store.plan_revisions(&child.id).await?;
                let Some(current) = history.last().and_then(parse_revision) else {
                    continue;
                };
                let assessments =
                    parse_assessments(&self.ctx.store.risk_assessments(&child.id).await?);
                let incidents = self.ctx.store.camera_incidents(&child.id).await?;
                let mut items = reviews_due(&current, &assessments, today, req.within_days);
                // IM2: an incident makes the camera arrangement due for review now.
                if let Some(incident) = review_required(Some(&current), &incidents) {
                    let on = date_in(&home.time_zone, incident.recorded_at);
                    items.insert(0, incident_review_item(incident, on));
                }
                if !items.is_empty() {
                    // A child shown in the list of reviews due: a read of their plan.
                    self.ctx.note_read(&who, &child.id);
                }
                for item in items {
                    reviews.push(ReviewDue {
                        child_id: child.id.clone(),
                        child_name: child.name.clone(),
                        home_name: home.name.clone(),
                        what: item.what,
                        due: item.due.to_string(),
                        overdue: item.overdue,
                    });
                }
            }
        }
        // Overdue first, then soonest.
        reviews.extend(self.lockdown_reviews(&who, req.within_days).await?);
        reviews.sort_by(|a, b| b.overdue.cmp(&a.overdue).then(a.due.cmp(&b.due)));
        Ok(Response::new(ListReviewsResponse { reviews }))
    }
}

#[cfg(test)]
#[path = "plans_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::domain::policy::builtin_protected;

    fn nan(channel: api::ContactChannel) -> api::PlacementPlan {
        api::PlacementPlan {
            reason: "Nan asked to phone Amira after school.".into(),
            communication: Some(api::CommunicationSection {
                contacts: vec![api::ContactPermission {
                    name: "Nan".into(),
                    addresses: vec![api::ContactAddress {
                        channel: channel as i32,
                        address: "07700 900123".into(),
                        app: None,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    // clause KP2: the refusal of a permission with no risk assessment carries its reason and
    // clause to the client.
    #[test]
    fn kp2_a_plan_refusal_carries_reason_and_clause() {
        let now = 1_796_000_000_000;
        let draft = plan_draft(Some(&nan(api::ContactChannel::Call)), "chd-1", "stf-m", now)
            .expect("a readable plan");
        let today = jiff::civil::date(2026, 11, 30);
        let status = validate_revision(
            None,
            &draft,
            &[],
            &builtin_protected(),
            Role::Manager,
            today,
        )
        .map_err(refused)
        .expect_err("no risk assessment");
        assert_eq!(status.code(), Code::FailedPrecondition);
        let got = errors::read(&status);
        assert_eq!(got.reason, errors::PERMISSION_NEEDS_RISK_ASSESSMENT);
        assert_eq!(got.clause.as_deref(), Some("KP2"));
    }

    #[test]
    fn a_plan_field_that_cannot_be_read_is_named_by_its_path() {
        let status = plan_draft(
            Some(&nan(api::ContactChannel::Unspecified)),
            "chd-1",
            "stf-m",
            1_796_000_000_000,
        )
        .expect_err("no channel");
        assert_eq!(status.code(), Code::InvalidArgument);
        let got = errors::read(&status);
        assert_eq!(got.reason, errors::INVALID_INPUT);
        assert_eq!(
            got.fields,
            ["plan.communication.contacts[0].addresses[0].channel"]
        );
        assert!(status.message().contains("channel"), "{}", status.message());
    }

    #[test]
    fn a_bad_number_is_refused_in_the_communication_section() {
        let mut plan = nan(api::ContactChannel::Call);
        if let Some(c) = plan.communication.as_mut() {
            c.contacts[0].addresses[0].address = "not a number".into();
        }
        let status =
            plan_draft(Some(&plan), "chd-1", "stf-m", 1_796_000_000_000).expect_err("not a number");
        assert_eq!(status.code(), Code::InvalidArgument);
        let got = errors::read(&status);
        assert_eq!(got.clause.as_deref(), Some("KP2"));
        assert_eq!(got.fields, ["plan.communication"]);
    }
}
