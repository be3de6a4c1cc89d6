//! `haven.admin.v1.EmergencyService`: lockdowns (RM3, GD4, D6, D8), their live progress to the
//! devices, lifting (by staff or by the clock), and what the home owes afterwards — the
//! social worker's notification (RM4), the Regulation 35 sanction record (RM5) and Ofsted's
//! advice (RM6).
//!
//! The lockdown, its sanctions, its obligations and the audit entry are written in one
//! transaction; only then is the new policy pushed. A device that is offline gets it first
//! thing when it reconnects (the catch-up rule in `agent.rs`).

// The deprecated words fields beside each enum are still filled and read, for older clients
// (proto/README.md).
#![allow(deprecated)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_proto::admin::v1 as api;
use haven_proto::admin::v1::*;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::in_scope;
use super::convert::WithTimes as _;
use super::lockdown_progress::Progress;
use super::wire_enums::{pick, pick_all, wire, wire_all};
use super::{Context, convert, now_ms, pages};
use crate::domain::emergency::{
    EmergencyError, LockdownDraft, LockdownOrder, LockdownTarget, REVIEW_OBLIGATION_KIND,
    review_overdue, validate_lockdown, validate_restriction,
};
use crate::domain::sanction::{
    LockdownMeasure, ObligationKind, ObligationState, SanctionCompletion, SanctionError,
    SanctionRecord, check_discussion, check_notification, complete, obligations_after,
    planned_duration,
};
use crate::domain::violations::{TASK_OBLIGATION_KIND, task_due};
use crate::domain::{Action, StaffIdentity, UnixMillis};
use crate::ids::new_id;
use crate::store::{
    Actor, LockdownRecord, NewLockdown, NewObligation, NewSanction, ObligationRecord,
    ReachedDevice, SanctionRow, StoreResult,
};

/// The newest policy version each device said it enforces, as it arrives: what a lockdown's
/// progress is measured against without waiting for the batched write to the database.
#[derive(Default)]
pub struct Acks {
    applied: Mutex<HashMap<String, (u64, bool)>>,
    changed: Notify,
}

impl Acks {
    /// A device says it enforces `version` (`failed` if it could not fully apply it).
    pub fn applied(&self, device_id: &str, version: u64, failed: bool) {
        {
            let mut map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
            let entry = map.entry(device_id.to_string()).or_insert((0, false));
            if version >= entry.0 {
                *entry = (version, failed);
            }
        }
        self.changed.notify_waiters();
    }

    /// What each of `devices` said it enforces, read under one lock (a home of 10,000 devices
    /// is looked at many times a second while a lockdown spreads).
    pub(super) fn get_all<'a>(
        &self,
        devices: impl Iterator<Item = &'a str>,
    ) -> Vec<Option<(u64, bool)>> {
        let map = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        devices.map(|d| map.get(d).copied()).collect()
    }
}

/// Least time between two progress messages that are not the last: each can name thousands
/// of waiting devices, and staff read them, not machines.
const PROGRESS_SEND_EVERY: Duration = Duration::from_millis(100);

pub struct EmergencyApi {
    pub ctx: Arc<Context>,
}

fn invalid(e: impl std::fmt::Display) -> Status {
    super::errors::invalid(e)
}

/// An emergency action refused, with the field it concerns and, for a reason that is not
/// protective, its own stable reason and clause (RM3).
fn emergency_error(e: EmergencyError) -> Status {
    use super::errors::{LOCKDOWN_REASON_NOT_PROTECTIVE, bad_field, bad_fields, refusal_in};
    match e {
        EmergencyError::NotProtective(_) => refusal_in(
            "reason",
            crate::domain::risk::Refusal::new("RM3", e.to_string())
                .because(LOCKDOWN_REASON_NOT_PROTECTIVE),
        ),
        EmergencyError::UnknownChannel(_) => bad_field("channels", e),
        EmergencyError::UnknownArrangement(_) | EmergencyError::NoArrangement => {
            bad_field("arrangements", e)
        }
        EmergencyError::NoteMissing => bad_field("note", e),
        EmergencyError::UntilInPast => bad_field("until", e),
        EmergencyError::ReviewInPast => bad_field("review_at", e),
        EmergencyError::UntilAndReview => bad_fields(&["until", "review_at"], e),
        EmergencyError::NoTarget => bad_fields(&["child", "device", "home"], e),
        EmergencyError::TooLong(_, _) => invalid(e),
    }
}

fn sanction_error(e: SanctionError) -> Status {
    use super::errors::{bad_field, conflict};
    match e {
        SanctionError::Missing(_, field) => bad_field(field, e),
        SanctionError::NoViews => bad_field("child_views", e),
        SanctionError::NoNote => bad_field("note", e),
        SanctionError::NotSpokenWithImposer => bad_field("spoke_with_imposer", e),
        SanctionError::AlreadyCompleted(_)
        | SanctionError::NotComplete(_)
        | SanctionError::AlreadySignedOff(_)
        | SanctionError::AlreadyDiscussed(_) => conflict(e.to_string()),
    }
}

fn opt(ms: i64) -> Option<UnixMillis> {
    (ms > 0).then_some(ms)
}

fn lockdown_record(l: LockdownRecord) -> api_types::LockdownRecord {
    api_types::LockdownRecord {
        review_overdue: review_overdue(l.review_at, l.lifted_at, now_ms()),
        in_force: l.lifted_at.is_none(),
        id: l.id,
        target_kind: wire::<api::LockdownTarget>(&l.target_kind),
        target: l.target_kind,
        home_id: l.home_id,
        home_name: l.home_name,
        child_id: l.child_id.unwrap_or_default(),
        child_name: l.child_name.unwrap_or_default(),
        device_id: l.device_id.unwrap_or_default(),
        protective_reason: wire::<api::RestrictionReason>(&l.reason),
        reason: l.reason,
        withdrawn: wire_all::<api::CommunicationChannel>(&l.channels),
        channels: l.channels,
        note: l.note,
        until_unix_ms: l.until.unwrap_or(0),
        review_at_unix_ms: l.review_at.unwrap_or(0),
        ofsted_advice: l.ofsted_advice.unwrap_or_default(),
        started_at_unix_ms: l.started_at,
        started_by: l.started_by,
        started_by_name: l.started_by_name,
        policy_version: l.policy_version,
        lifted_at_unix_ms: l.lifted_at.unwrap_or(0),
        lifted_by: l.lifted_by.unwrap_or_default(),
        lift_note: l.lift_note.unwrap_or_default(),
        lifted_policy_version: l.lifted_version.unwrap_or(0),
        ..Default::default()
    }
    .with_times()
}

/// The generated types, named apart from the store's records of the same names.
mod api_types {
    pub use haven_proto::admin::v1::{LockdownRecord, Obligation, Sanction};
}

fn obligation(o: ObligationRecord, now: UnixMillis) -> api_types::Obligation {
    let kind: Option<ObligationKind> = o.kind.parse().ok();
    let state = ObligationState::of(o.due_at, o.closed_at, now).as_str();
    api_types::Obligation {
        state: state.to_string(),
        obligation_state: wire::<api::ObligationState>(state),
        obligation_kind: wire::<api::ObligationKind>(&o.kind),
        notification_method: wire::<api::NotificationMethod>(o.how.as_deref().unwrap_or("")),
        what: kind.map(|k| k.describe().to_string()).unwrap_or_default(),
        closed_with: kind
            .map(|k| k.closed_by_command().to_string())
            .unwrap_or_default(),
        id: o.id,
        kind: o.kind,
        lockdown_id: o.lockdown_id,
        sanction_id: o.sanction_id.unwrap_or_default(),
        child_id: o.child_id,
        child_name: o.child_name,
        home_id: o.home_id,
        opened_at_unix_ms: o.opened_at,
        due_at_unix_ms: o.due_at,
        closed_at_unix_ms: o.closed_at.unwrap_or(0),
        closed_by: o.closed_by.unwrap_or_default(),
        done_by: o.done_by.unwrap_or_default(),
        how: o.how.unwrap_or_default(),
        done_at_unix_ms: o.done_at.unwrap_or(0),
        note: o.note.unwrap_or_default(),
        plan_revision: o.plan_revision.map_or(0, |n| n.max(0) as u64),
        ..Default::default()
    }
    .with_times()
}

/// A lockdown in force past its review time, as the review the home owes (KP1, GD4).
fn review_obligation(l: LockdownRecord, now: UnixMillis) -> Option<api_types::Obligation> {
    let review_at = l.review_at?;
    // Owed once the review time has passed; before that `haven reviews` lists it as due.
    if !review_overdue(l.review_at, l.lifted_at, now) {
        return None;
    }
    let whom = l
        .child_name
        .clone()
        .unwrap_or_else(|| format!("every child in {}", l.home_name));
    let state = ObligationState::of(review_at, l.lifted_at, now).as_str();
    Some(
        api_types::Obligation {
            state: state.to_string(),
            obligation_state: wire::<api::ObligationState>(state),
            obligation_kind: wire::<api::ObligationKind>(REVIEW_OBLIGATION_KIND),
            what: format!(
                "review lockdown {} ({} withdrawn): lift it, or record why it must stay",
                l.id,
                l.channels.join(", ")
            ),
            closed_with: format!("haven lift {}", l.id),
            id: format!("review-{}", l.id),
            kind: REVIEW_OBLIGATION_KIND.to_string(),
            lockdown_id: l.id,
            child_id: l.child_id.unwrap_or_default(),
            child_name: whom,
            home_id: l.home_id,
            opened_at_unix_ms: l.started_at,
            due_at_unix_ms: review_at,
            ..Default::default()
        }
        .with_times(),
    )
}

/// A manager task (GD3) as one of the home's obligations: due the next working day.
fn task_obligation(
    t: crate::store::ManagerTaskRecord,
    holidays: &crate::domain::working_days::BankHolidays,
    now: UnixMillis,
) -> api_types::Obligation {
    // Counted from the attempt (the manager is consulted at once), never from a device
    // clock that runs ahead of the controller's.
    let due_at = task_due(t.first_attempt_at.min(t.opened_at), &t.time_zone, holidays);
    let state = ObligationState::of(due_at, t.closed_at, now).as_str();
    api_types::Obligation {
        state: state.to_string(),
        obligation_state: wire::<api::ObligationState>(state),
        obligation_kind: wire::<api::ObligationKind>(TASK_OBLIGATION_KIND),
        what: t.summary,
        closed_with: format!(
            "haven tasks close {} --decision assess|refuse|no-action --note …",
            t.id
        ),
        id: t.id,
        kind: TASK_OBLIGATION_KIND.to_string(),
        child_id: t.child_id,
        child_name: t.child_name,
        home_id: t.home_id,
        opened_at_unix_ms: t.opened_at,
        due_at_unix_ms: due_at,
        closed_at_unix_ms: t.closed_at.unwrap_or(0),
        closed_by: t.closed_by.unwrap_or_default(),
        note: t.note.unwrap_or_default(),
        ..Default::default()
    }
    .with_times()
}

fn sanction(s: SanctionRow, obligations: &[ObligationRecord]) -> api_types::Sanction {
    let r: SanctionRecord = serde_json::from_str(&s.record).unwrap_or_default();
    let due = |kind: ObligationKind| {
        obligations
            .iter()
            .find(|o| o.sanction_id.as_deref() == Some(s.id.as_str()) && o.kind == kind.as_str())
            .map(|o| o.due_at)
            .unwrap_or(0)
    };
    api_types::Sanction {
        complete_by_unix_ms: due(ObligationKind::CompleteSanctionRecord),
        sign_off_by_unix_ms: due(ObligationKind::ManagerSignOff),
        discuss_by_unix_ms: due(ObligationKind::DiscussWithChild),
        id: s.id,
        lockdown_id: s.lockdown_id,
        child_id: s.child_id,
        child_name: s.child_name,
        home_id: s.home_id,
        opened_at_unix_ms: s.opened_at,
        behaviour: r.behaviour,
        occurred_at_unix_ms: r.occurred_at,
        location: r.location,
        measure: r.measure,
        duration: r.duration,
        steps_to_avoid: r.steps_to_avoid,
        imposed_by: r.imposed_by,
        others_present: r.others_present,
        effectiveness: r.effectiveness,
        injury_and_treatment: r.injury_and_treatment,
        completed_at_unix_ms: s.completed_at.unwrap_or(0),
        completed_by: s.completed_by.unwrap_or_default(),
        signed_off_at_unix_ms: s.signed_off_at.unwrap_or(0),
        signed_off_by: s.signed_off_by.unwrap_or_default(),
        sign_off_note: s.sign_off_note.unwrap_or_default(),
        discussed_at_unix_ms: s.discussed_at.unwrap_or(0),
        discussed_by: s.discussed_by.unwrap_or_default(),
        child_views: s.child_views.unwrap_or_default(),
        plan_revision: s.plan_revision.map_or(0, |n| n.max(0) as u64),
        spoke_with_imposer: s.spoke_with_imposer.unwrap_or_default(),
        ..Default::default()
    }
    .with_times()
}

impl Context {
    /// The active devices a lockdown applies to.
    async fn devices_of(&self, l: &LockdownRecord) -> StoreResult<Vec<ReachedDevice>> {
        let (child, device) = match l.target_kind.as_str() {
            "child" => (l.child_id.as_deref(), None),
            // A device lockdown without its device reaches nothing, never the whole child.
            "device" => (
                l.child_id.as_deref(),
                Some(l.device_id.as_deref().unwrap_or("")),
            ),
            _ => (None, None),
        };
        self.store.devices_reached(&l.home_id, child, device).await
    }

    /// Sends the policy `version` a lockdown (or its lift) made to the devices it affects.
    async fn push_lockdown(&self, l: &LockdownRecord, version: u64, at: UnixMillis) {
        let pushed = match (l.target_kind.as_str(), &l.child_id, &l.device_id) {
            ("child", Some(child), _) => self.push_child(&l.home_id, child, version, at).await,
            ("device", _, Some(device)) => self.push_device(&l.home_id, device, version, at).await,
            _ => self.push_home(&l.home_id, version, at).await,
        };
        if let Err(e) = pushed {
            tracing::warn!(lockdown = %l.id, error = %e, "push failed; devices catch up on reconnect");
        }
    }

    /// Lifts every lockdown whose end time has passed. Run at start and then every second,
    /// so a lockdown with `--until` ends by itself even across a restart.
    pub async fn lift_due_lockdowns(&self) -> StoreResult<usize> {
        let now = now_ms();
        let due: Vec<LockdownRecord> = self
            .store
            .lockdowns(None, false)
            .await?
            .into_iter()
            .filter(|l| l.until.is_some_and(|u| u <= now))
            .collect();
        let mut lifted = 0;
        for l in due {
            match self
                .store
                .lift_lockdown(&Actor::system(), &l.id, "ended at its planned time", now)
                .await
            {
                Ok(done) => {
                    lifted += 1;
                    tracing::info!(lockdown = %done.id, "lockdown ended at its planned time");
                    let version = done.lifted_version.unwrap_or(0);
                    self.push_lockdown(&done, version, now).await;
                }
                // Lifted by staff meanwhile: nothing to do.
                Err(crate::store::StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(lifted)
    }
}

type ProgressStream = Pin<Box<dyn Stream<Item = Result<LockdownProgress, Status>> + Send>>;

#[tonic::async_trait]
impl emergency_service_server::EmergencyService for EmergencyApi {
    async fn lockdown(
        &self,
        request: Request<LockdownRequest>,
    ) -> Result<Response<LockdownResponse>, Status> {
        let started = std::time::Instant::now();
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EmergencyAction)
            .await?;
        let req = request.into_inner();
        let now = now_ms();
        let store = &self.ctx.store;
        let given = [&req.child, &req.device, &req.home]
            .iter()
            .filter(|s| !s.trim().is_empty())
            .count();
        if given != 1 {
            return Err(super::errors::bad_fields(
                &["child", "device", "home"],
                "say whom to lock down: one child, one device or one home",
            ));
        }
        // Checked before any lookup, so a wrong reason is refused as itself.
        let order = validate_lockdown(
            &LockdownDraft {
                reason: pick::<api::RestrictionReason>(
                    req.protective_reason,
                    "protective_reason",
                    &req.reason,
                    "reason",
                )?,
                channels: pick_all::<api::CommunicationChannel>(
                    &req.withdraw,
                    "withdraw",
                    &req.channels,
                    "channels",
                )?,
                note: req.note.clone(),
                until: opt(convert::ms_of(req.until.as_ref(), req.until_unix_ms)),
                review_at: opt(convert::ms_of(
                    req.review_at.as_ref(),
                    req.review_at_unix_ms,
                )),
                ofsted_advice: Some(req.ofsted_advice.clone()),
            },
            now,
        )
        .map_err(emergency_error)?;
        let (target, home_id, children) = if !req.child.trim().is_empty() {
            let c = self.ctx.child_for(&who, req.child.trim()).await?;
            if c.archived_at.is_some() {
                return Err(super::errors::refused(
                    tonic::Code::FailedPrecondition,
                    super::errors::CHILD_ARCHIVED,
                    None,
                    format!(
                        "{} has left the home (archived): there is nothing to lock down",
                        c.name
                    ),
                ));
            }
            (
                LockdownTarget::Child(c.id.clone()),
                c.home_id.clone(),
                vec![c],
            )
        } else if !req.device.trim().is_empty() {
            let d = self.ctx.device_for(&who, req.device.trim()).await?;
            if d.status != "active" {
                return Err(super::errors::refused(
                    tonic::Code::FailedPrecondition,
                    super::errors::DEVICE_REVOKED,
                    None,
                    format!(
                        "device {} was removed from Haven: there is nothing to lock down",
                        d.id
                    ),
                ));
            }
            let c = store.find_child(&d.child_id).await?;
            (
                LockdownTarget::Device(d.id.clone()),
                d.home_id.clone(),
                vec![c],
            )
        } else {
            let h = self.ctx.home_for(&who, req.home.trim()).await?;
            let children = store
                .list_children(Some(&h.id))
                .await?
                .into_iter()
                .filter(|c| c.archived_at.is_none())
                .collect();
            (LockdownTarget::Home(h.id.clone()), h.id, children)
        };
        self.open(&who, target, &home_id, &children, order, now, started)
            .await
    }

    async fn restrict(
        &self,
        request: Request<RestrictRequest>,
    ) -> Result<Response<LockdownResponse>, Status> {
        let started = std::time::Instant::now();
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EmergencyAction)
            .await?;
        let req = request.into_inner();
        let now = now_ms();
        let order = validate_restriction(
            &LockdownDraft {
                reason: pick::<api::RestrictionReason>(
                    req.protective_reason,
                    "protective_reason",
                    &req.reason,
                    "reason",
                )?,
                channels: Vec::new(),
                note: req.note.clone(),
                until: opt(convert::ms_of(req.until.as_ref(), req.until_unix_ms)),
                review_at: opt(convert::ms_of(
                    req.review_at.as_ref(),
                    req.review_at_unix_ms,
                )),
                ofsted_advice: Some(req.ofsted_advice.clone()),
            },
            &pick_all::<api::CommunicationChannel>(
                &req.restrict,
                "restrict",
                &req.arrangements,
                "arrangements",
            )?,
            now,
        )
        .map_err(emergency_error)?;
        let c = self.ctx.child_for(&who, req.child.trim()).await?;
        if c.archived_at.is_some() {
            return Err(super::errors::refused(
                tonic::Code::FailedPrecondition,
                super::errors::CHILD_ARCHIVED,
                None,
                format!(
                    "{} has left the home (archived): there is nothing to restrict",
                    c.name
                ),
            ));
        }
        let home_id = c.home_id.clone();
        self.open(
            &who,
            LockdownTarget::Child(c.id.clone()),
            &home_id,
            &[c],
            order,
            now,
            started,
        )
        .await
    }

    type WatchLockdownStream = ProgressStream;

    async fn watch_lockdown(
        &self,
        request: Request<WatchLockdownRequest>,
    ) -> Result<Response<Self::WatchLockdownStream>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let record = self.lockdown_for(&who, req.id.trim()).await?;
        let version = record.lifted_version.unwrap_or(record.policy_version);
        let devices = self.ctx.devices_of(&record).await?;
        let wait = Duration::from_secs(u64::from(match req.wait_secs {
            0 => 30,
            n => n.min(600),
        }));
        let ctx = self.ctx.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let withdrawn = self.ctx.sessions.until_withdrawn(&who.id);
        let stopped = tx.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = withdrawn => {
                    let _ = stopped.send(Err(super::auth::access_withdrawn())).await;
                }
                () = async move {
            let deadline = tokio::time::Instant::now() + wait;
            let mut progress = Progress::new(
                version,
                devices.into_iter().map(|d| (d.id, d.applied_version)),
            );
            let mut last: Option<LockdownProgress> = None;
            let mut last_sent = tokio::time::Instant::now();
            loop {
                // Registered before reading, so an acknowledgement in between is not missed.
                let changed = ctx.acks.changed.notified();
                let looked_at = tokio::time::Instant::now();
                let heard = ctx.acks.get_all(progress.pending());
                progress.look(&heard, |ids| ctx.online_anywhere_of(ids));
                let timed_out = tokio::time::Instant::now() >= deadline;
                let done = progress.finished() || timed_out;
                let first = last.is_none();
                let due = looked_at.duration_since(last_sent) >= PROGRESS_SEND_EVERY;
                if done || first || due {
                    let p = progress.message(timed_out);
                    if done || first || last.as_ref() != Some(&p) {
                        if tx.send(Ok(p.clone())).await.is_err() {
                            return;
                        }
                        last = Some(p);
                        last_sent = tokio::time::Instant::now();
                    }
                }
                if done {
                    return;
                }
                let look_every = progress.look_every();
                tokio::select! {
                    _ = async {
                        changed.await;
                        tokio::time::sleep_until(looked_at + look_every).await;
                    } => {}
                    // Devices also connect and disconnect: look again now and then.
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
                } => {}
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn lift_lockdown(
        &self,
        request: Request<LiftLockdownRequest>,
    ) -> Result<Response<api_types::LockdownRecord>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EmergencyAction)
            .await?;
        let req = request.into_inner();
        let note = req.note.trim();
        if note.is_empty() {
            return Err(super::errors::bad_field(
                "note",
                "say why the lockdown is lifted",
            ));
        }
        let now = now_ms();
        self.lockdown_for(&who, req.id.trim()).await?;
        let record = self
            .ctx
            .store
            .lift_lockdown(&Actor::staff(&who), req.id.trim(), note, now)
            .await?;
        let version = record.lifted_version.unwrap_or(0);
        self.ctx.push_lockdown(&record, version, now).await;
        tracing::info!(lockdown = %record.id, staff = %who.id, version, "lockdown lifted");
        Ok(Response::new(lockdown_record(record)))
    }

    async fn list_lockdowns(
        &self,
        request: Request<ListLockdownsRequest>,
    ) -> Result<Response<ListLockdownsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_filter(&who, &req.home).await?;
        let filters = pages::Filters::new("lockdowns")
            .with("home", home.as_deref())
            .with_bool("include_lifted", req.include_lifted);
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let homes = pages::homes_of(&who.homes);
        let list = self
            .ctx
            .store
            .lockdowns_page(home.as_deref(), req.include_lifted, homes.as_deref(), &page)
            .await?;
        Ok(Response::new(ListLockdownsResponse {
            next_page_token: pages::next_token(list.next.as_ref(), &filters),
            lockdowns: list
                .items
                .into_iter()
                .filter(|l| who.homes.covers(&l.home_id))
                .inspect(|l| {
                    if let Some(child) = &l.child_id {
                        self.ctx.note_read(&who, child)
                    }
                })
                .map(lockdown_record)
                .collect(),
        }))
    }

    async fn record_ofsted_advice(
        &self,
        request: Request<RecordOfstedAdviceRequest>,
    ) -> Result<Response<api_types::LockdownRecord>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EmergencyAction)
            .await?;
        let req = request.into_inner();
        let advice = req.advice.trim();
        if advice.is_empty() {
            return Err(super::errors::bad_field(
                "advice",
                "say what Ofsted advised",
            ));
        }
        self.lockdown_for(&who, req.id.trim()).await?;
        let record = self
            .ctx
            .store
            .record_ofsted_advice(&Actor::staff(&who), req.id.trim(), advice, now_ms())
            .await?;
        Ok(Response::new(lockdown_record(record)))
    }

    async fn list_sanctions(
        &self,
        request: Request<ListSanctionsRequest>,
    ) -> Result<Response<ListSanctionsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_filter(&who, &req.home).await?;
        let filters = pages::Filters::new("sanctions").with("home", home.as_deref());
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let homes = pages::homes_of(&who.homes);
        let obligations = self.ctx.store.obligations(home.as_deref(), false).await?;
        let rows = self
            .ctx
            .store
            .sanctions_page(home.as_deref(), homes.as_deref(), &page)
            .await?;
        Ok(Response::new(ListSanctionsResponse {
            next_page_token: pages::next_token(rows.next.as_ref(), &filters),
            sanctions: rows
                .items
                .into_iter()
                .filter(|s| who.homes.covers(&s.home_id))
                .inspect(|s| self.ctx.note_read(&who, &s.child_id))
                .map(|s| sanction(s, &obligations))
                .collect(),
        }))
    }

    async fn complete_sanction(
        &self,
        request: Request<CompleteSanctionRequest>,
    ) -> Result<Response<api_types::Sanction>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::RecordSanctions)
            .await?;
        let req = request.into_inner();
        let row = self.sanction_for(&who, req.id.trim()).await?;
        let record: SanctionRecord = serde_json::from_str(&row.record).unwrap_or_default();
        let done = complete(
            &record,
            &SanctionCompletion {
                behaviour: req.behaviour,
                location: req.location,
                steps_to_avoid: req.steps_to_avoid,
                others_present: req.others_present,
                effectiveness: req.effectiveness,
                injury_and_treatment: req.injury_and_treatment,
            },
        )
        .map_err(sanction_error)?;
        let json = serde_json::to_string(&done)
            .map_err(|_| super::errors::internal("could not write the sanction record"))?;
        let row = self
            .ctx
            .store
            .complete_sanction(&Actor::staff(&who), &row.id, &json, now_ms())
            .await?;
        self.answer_sanction(row).await
    }

    async fn sign_off_sanction(
        &self,
        request: Request<SignOffSanctionRequest>,
    ) -> Result<Response<api_types::Sanction>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::SignOffSanctions)
            .await?;
        let req = request.into_inner();
        let found = self.sanction_for(&who, req.id.trim()).await?;
        // clause RM5: checked here as well as in the write, so a refusal names its field.
        crate::domain::sanction::sign_off(
            &found.id,
            crate::domain::sanction::SanctionSteps {
                completed: found.completed_at.is_some(),
                signed_off: found.signed_off_at.is_some(),
                discussed: found.discussed_at.is_some(),
            },
            &req.spoke_with_imposer,
        )
        .map_err(sanction_error)?;
        let row = self
            .ctx
            .store
            .sign_off_sanction(
                &Actor::staff(&who),
                req.id.trim(),
                req.note.trim(),
                req.spoke_with_imposer.trim(),
                now_ms(),
            )
            .await?;
        self.answer_sanction(row).await
    }

    async fn record_sanction_discussion(
        &self,
        request: Request<RecordSanctionDiscussionRequest>,
    ) -> Result<Response<api_types::Sanction>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::RecordSanctions)
            .await?;
        let req = request.into_inner();
        let views = check_discussion(&req.child_views).map_err(sanction_error)?;
        self.sanction_for(&who, req.id.trim()).await?;
        let row = self
            .ctx
            .store
            .record_sanction_discussion(&Actor::staff(&who), req.id.trim(), &views, now_ms())
            .await?;
        self.answer_sanction(row).await
    }

    async fn list_obligations(
        &self,
        request: Request<ListObligationsRequest>,
    ) -> Result<Response<ListObligationsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_filter(&who, &req.home).await?;
        let filters = pages::Filters::new("obligations")
            .with("home", home.as_deref())
            .with_bool("include_done", req.include_done)
            .with_bool("overdue_only", req.overdue_only);
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let now = now_ms();
        let list = self
            .ctx
            .store
            .obligations(home.as_deref(), !req.include_done)
            .await?;
        // clause GD3: a manager's decision on an unknown contact is owed too.
        let tasks = self
            .ctx
            .store
            .manager_tasks(None, req.include_done)
            .await?
            .into_iter()
            .filter(|t| home.as_deref().is_none_or(|h| h == t.home_id))
            .map(|t| task_obligation(t, &self.ctx.holidays, now));
        // clause KP1: a lockdown in force past its review time is owed a review.
        let reviews = self
            .ctx
            .store
            .lockdowns(home.as_deref(), false)
            .await?
            .into_iter()
            .filter_map(|l| review_obligation(l, now));
        let mut all: Vec<api_types::Obligation> = list
            .into_iter()
            .map(|o| obligation(o, now))
            .chain(tasks)
            .chain(reviews)
            .filter(|o| who.homes.covers(&o.home_id))
            .filter(|o| !req.overdue_only || o.state == "overdue")
            .collect();
        all.sort_by(|a, b| (a.due_at_unix_ms, &a.id).cmp(&(b.due_at_unix_ms, &b.id)));
        // Put together from three sources (obligations, GD3 tasks whose due time comes from
        // the working-day calendar, KP1 reviews worked out from the time now), so the order
        // only exists here: the page seeks past the last (due, id) in memory, still a keyset
        // and never an offset, so an obligation opened while paging cannot shift the pages.
        let page = pages::Paged::seek_sorted(all, &page, |o| (o.due_at_unix_ms, o.id.clone()));
        let all = page.items;
        self.ctx.note_reads(
            &who,
            all.iter()
                .map(|o| o.child_id.as_str())
                .filter(|c| !c.is_empty()),
        );
        Ok(Response::new(ListObligationsResponse {
            obligations: all,
            next_page_token: pages::next_token(page.next.as_ref(), &filters),
        }))
    }

    async fn record_notification(
        &self,
        request: Request<RecordNotificationRequest>,
    ) -> Result<Response<api_types::Obligation>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::RecordSanctions)
            .await?;
        let req = request.into_inner();
        let now = now_ms();
        let at = opt(convert::ms_of(req.at.as_ref(), req.at_unix_ms)).unwrap_or(now);
        let how_words = pick::<api::NotificationMethod>(req.method, "method", &req.how, "how")?;
        let (by, how) = check_notification(&req.by, &how_words, at, now).map_err(|e| {
            let field = if req.by.trim().is_empty() {
                "by"
            } else if at > now {
                "at"
            } else if req.method != 0 {
                "method"
            } else {
                "how"
            };
            super::errors::bad_field(field, e)
        })?;
        let found = self.ctx.store.find_obligation(req.id.trim()).await?;
        in_scope(&who, &found.home_id, "obligation", req.id.trim(), ())?;
        let o = self
            .ctx
            .store
            .record_notification(
                &Actor::staff(&who),
                req.id.trim(),
                &by,
                how.as_str(),
                at,
                req.note.trim(),
                now,
            )
            .await?;
        Ok(Response::new(obligation(o, now)))
    }
}

impl EmergencyApi {
    /// Writes a checked lockdown (or restriction of letters or visits) with the sanctions and
    /// obligations it opens, pushes it, and answers with all of them.
    #[allow(clippy::too_many_arguments)]
    async fn open(
        &self,
        who: &StaffIdentity,
        target: LockdownTarget,
        home_id: &str,
        children: &[crate::store::ChildRecord],
        order: LockdownOrder,
        now: UnixMillis,
        started: std::time::Instant,
    ) -> Result<Response<LockdownResponse>, Status> {
        let store = &self.ctx.store;
        let home = store.find_home(home_id).await?;

        let lockdown_id = new_id("lck");
        let is_sanction = order.is_sanction();
        let withdrawn = order.withdrawn();
        let duration = planned_duration(order.until, order.review_at, &home.time_zone);
        let mut sanctions = Vec::new();
        let mut obligations = Vec::new();
        for child in children {
            let sanction_id = is_sanction.then(|| new_id("snc"));
            if let Some(id) = &sanction_id {
                let record = SanctionRecord::for_lockdown(
                    &child.name,
                    &LockdownMeasure {
                        lockdown_id: &lockdown_id,
                        reason: order.reason,
                        withdrawn: &withdrawn,
                        on_devices: !order.channels.is_empty(),
                        target: &target,
                        note: &order.note,
                        duration: duration.clone(),
                    },
                    now,
                    &who.name,
                );
                sanctions.push(NewSanction {
                    id: id.clone(),
                    child_id: child.id.clone(),
                    record: serde_json::to_string(&record).map_err(|_| {
                        super::errors::internal("could not write the sanction record")
                    })?,
                });
            }
            for (kind, due_at) in
                obligations_after(now, &home.time_zone, &self.ctx.holidays, is_sanction)
            {
                obligations.push(NewObligation {
                    id: new_id("obl"),
                    kind: kind.as_str().to_string(),
                    child_id: child.id.clone(),
                    sanction_id: match kind {
                        ObligationKind::NotifySocialWorker => None,
                        _ => sanction_id.clone(),
                    },
                    due_at,
                });
            }
        }
        let record = store
            .start_lockdown(
                &Actor::staff(who),
                &NewLockdown {
                    id: lockdown_id,
                    target,
                    home_id: home.id.clone(),
                    order,
                    started_by_name: who.name.clone(),
                },
                &sanctions,
                &obligations,
                now,
            )
            .await?;
        let written = started.elapsed();
        crate::metrics::lockdown_started(record.policy_version, now, written);
        self.ctx
            .push_lockdown(&record, record.policy_version, now)
            .await;
        tracing::info!(
            lockdown = %record.id,
            staff = %who.id,
            version = record.policy_version,
            written_us = written.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "lockdown started"
        );
        let reached = self.ctx.devices_of(&record).await?;
        let ids: Vec<&str> = reached.iter().map(|d| d.id.as_str()).collect();
        let online = self.ctx.online_anywhere_of(&ids);
        let devices = reached
            .iter()
            .zip(online)
            .map(|(d, online)| TargetedDevice {
                online,
                device_id: d.id.clone(),
                child_name: d.child_name.clone(),
            })
            .collect();
        let opened = store.obligations(Some(&home.id), true).await?;
        let opened: Vec<ObligationRecord> = opened
            .into_iter()
            .filter(|o| o.lockdown_id == record.id)
            .collect();
        let mut sanction_rows = Vec::new();
        for s in &sanctions {
            sanction_rows.push(sanction(store.find_sanction(&s.id).await?, &opened));
        }
        Ok(Response::new(LockdownResponse {
            lockdown: Some(lockdown_record(record)),
            devices,
            sanctions: sanction_rows,
            obligations: opened.into_iter().map(|o| obligation(o, now)).collect(),
        }))
    }
    /// A lockdown in one of the homes `who` works in; any other is "not found".
    async fn lockdown_for(
        &self,
        who: &StaffIdentity,
        id: &str,
    ) -> Result<crate::store::LockdownRecord, Status> {
        let record = self.ctx.store.find_lockdown(id).await?;
        let home_id = record.home_id.clone();
        in_scope(who, &home_id, "lockdown", id, record)
    }

    /// A sanction record in one of the homes `who` works in; any other is "not found".
    async fn sanction_for(&self, who: &StaffIdentity, id: &str) -> Result<SanctionRow, Status> {
        let row = self.ctx.store.find_sanction(id).await?;
        let home_id = row.home_id.clone();
        in_scope(who, &home_id, "sanction", id, row)
    }

    async fn answer_sanction(
        &self,
        row: SanctionRow,
    ) -> Result<Response<api_types::Sanction>, Status> {
        let obligations = self
            .ctx
            .store
            .obligations(Some(&row.home_id), false)
            .await?;
        Ok(Response::new(sanction(row, &obligations)))
    }
}
