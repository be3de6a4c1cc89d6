//! `haven.admin.v1.ViolationService`: what devices blocked, listed and watched live (D5); the
//! manager tasks attempts to reach unknown contacts open (GD3); devices that stop reporting.
//!
//! Live watching is an in-process broadcast: the Sync handler publishes what it newly stored,
//! and each watcher reads at its own pace. A watcher that falls behind is told how many events
//! it missed; it never slows a device down.

// The deprecated words fields beside each enum are still filled and read, for older clients
// (proto/README.md).
#![allow(deprecated)]

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use haven_proto::admin::v1::{self as api, *};
use tokio::sync::broadcast;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::in_scope;
use super::convert::WithTimes as _;
use super::wire_enums::{pick, wire};
use super::{Context, now_ms, pages};
use crate::domain::sanction::ObligationState;
use crate::domain::violations::{
    ViolationKind, channel_words, close_task, describe, silence_message, silent_for, task_due,
};
use crate::domain::working_days::BankHolidays;
use crate::domain::{Action, HomeScope, StaffIdentity, UnixMillis};
use crate::store::{Actor, DeviceRecord, ManagerTaskRecord, StoredViolation};

/// One thing a watcher is told; becomes a `ViolationEvent` with exactly one field set.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Violation(api::ViolationRecord),
    NotReporting(DeviceNotReporting),
    Missed(u64),
    Task(ManagerTask),
}

impl Event {
    /// The event another replica announced; `None` for one that carries nothing.
    pub fn from_wire(e: ViolationEvent) -> Option<Self> {
        e.violation
            .map(Event::Violation)
            .or(e.not_reporting.map(Event::NotReporting))
            .or(e.task.map(Event::Task))
    }

    fn into_wire(self) -> ViolationEvent {
        let mut e = ViolationEvent::default();
        match self {
            Event::Violation(v) => e.violation = Some(v),
            Event::NotReporting(n) => e.not_reporting = Some(n),
            Event::Missed(n) => e.missed = n,
            Event::Task(t) => e.task = Some(t),
        }
        e
    }
}

/// How many events wait for a slow watcher before it is told it missed some.
const WATCH_DEPTH: usize = 1024;
/// A page of violations: 100 unless asked, at most 1,000, whatever is asked.
const VIOLATIONS: pages::PageLimits = pages::PageLimits {
    default: 100,
    max: 1000,
};

/// The live feed every `WatchViolations` call subscribes to.
pub struct Watch {
    /// `None` once the controller is shutting down: dropping the sender ends every watch.
    tx: std::sync::RwLock<Option<broadcast::Sender<Arc<Event>>>>,
    /// Watchers on the other replicas see what this one stores (`crate::cluster`).
    others: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Default for Watch {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(WATCH_DEPTH);
        Watch {
            tx: std::sync::RwLock::new(Some(tx)),
            others: std::sync::OnceLock::new(),
        }
    }
}

impl Watch {
    /// From now on, what is published here is also announced to the other replicas.
    pub fn share_with(&self, cluster: Arc<crate::cluster::Cluster>) {
        if cluster.is_shared() {
            let _ = self.others.set(cluster);
        }
    }

    /// Tells every watcher, on every replica; nobody watching is not an error.
    pub fn publish(&self, event: Event) {
        if let Some(cluster) = self.others.get()
            && !matches!(event, Event::Missed(_))
        {
            use base64::Engine as _;
            use prost::Message as _;
            let bytes = event.clone().into_wire().encode_to_vec();
            cluster.announce(crate::cluster::Event::Watch {
                event: base64::engine::general_purpose::STANDARD.encode(bytes),
            });
        }
        self.publish_here(event);
    }

    /// Tells this replica's watchers only: what another replica announced.
    pub fn publish_here(&self, event: Event) {
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(Arc::new(event));
        }
    }

    pub fn violations(&self, stored: &[StoredViolation]) {
        for v in stored {
            self.publish(Event::Violation(violation(v.clone())));
        }
    }

    pub fn tasks(&self, tasks: &[ManagerTaskRecord]) {
        for t in tasks {
            self.publish(Event::Task(task(t.clone())));
        }
    }

    /// Ends every watch, so a shutdown does not wait for watchers to hang up.
    pub fn close(&self) {
        self.tx.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Event>>> {
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        tx.as_ref().map(broadcast::Sender::subscribe)
    }
}

pub fn violation(v: StoredViolation) -> api::ViolationRecord {
    let kind = ViolationKind::from_stored(&v.kind);
    api::ViolationRecord {
        description: describe(kind, &v.channel, &v.subject, &v.detail),
        id: v.id,
        device_id: v.device_id,
        child_id: v.child_id,
        child_name: v.child_name,
        home_id: v.home_id,
        kind: kind.words().to_string(),
        violation_kind: wire::<api::ViolationKind>(kind.words()),
        subject: v.subject,
        detail: v.detail,
        channel: channel_words(&v.channel).to_string(),
        contact_channel: wire::<api::ContactChannel>(channel_words(&v.channel)),
        occurred_at_unix_ms: v.occurred_at,
        received_at_unix_ms: v.received_at,
        ..Default::default()
    }
    .with_times()
}

/// A task as staff read it, due by the next working day under the built-in calendar (the
/// live watch has no corrections file at hand; lists use [`task_with`]).
pub fn task(t: ManagerTaskRecord) -> api::ManagerTask {
    task_with(t, &BankHolidays::england_and_wales(), now_ms())
}

/// A task with its due time and state under `holidays` at `now` (GD3).
pub fn task_with(
    t: ManagerTaskRecord,
    holidays: &BankHolidays,
    now: UnixMillis,
) -> api::ManagerTask {
    // Counted from the attempt (the manager is consulted at once), never from a device
    // clock that runs ahead of the controller's.
    let due_at = task_due(t.first_attempt_at.min(t.opened_at), &t.time_zone, holidays);
    let state = ObligationState::of(due_at, t.closed_at, now).as_str();
    let decision = t.decision.unwrap_or_default();
    api::ManagerTask {
        due_at_unix_ms: due_at,
        state: state.to_string(),
        task_state: wire::<api::ObligationState>(state),
        task_decision: wire::<api::TaskDecision>(&decision),
        decision,
        task_kind: wire::<api::ManagerTaskKind>(&t.kind),
        contact_channel: wire::<api::ContactChannel>(channel_words(&t.channel)),
        id: t.id,
        home_id: t.home_id,
        child_id: t.child_id,
        child_name: t.child_name,
        kind: t.kind,
        address: t.address,
        channel: channel_words(&t.channel).to_string(),
        summary: t.summary,
        attempts: t.attempts,
        first_attempt_at_unix_ms: t.first_attempt_at,
        last_attempt_at_unix_ms: t.last_attempt_at,
        opened_at_unix_ms: t.opened_at,
        closed_at_unix_ms: t.closed_at.unwrap_or(0),
        closed_by: t.closed_by.unwrap_or_default(),
        note: t.note.unwrap_or_default(),
        ..Default::default()
    }
    .with_times()
}

/// A filter from the wire, with names turned into ids and the kind checked.
struct Filter {
    /// Only what happens in the homes the watcher works in.
    homes: HomeScope,
    child_id: Option<String>,
    device_id: Option<String>,
    kind: Option<ViolationKind>,
    since: Option<i64>,
}

impl Filter {
    /// Whether a live event passes. The kind narrows violations (and tasks, which are all
    /// about unknown contacts); a device going quiet is always shown for the child or device
    /// being watched.
    fn passes(&self, event: &Event) -> bool {
        let home = match event {
            Event::Violation(v) => Some(v.home_id.as_str()),
            Event::Task(t) => Some(t.home_id.as_str()),
            Event::NotReporting(n) => Some(n.home_id.as_str()),
            Event::Missed(_) => None,
        };
        if home.is_some_and(|h| !self.homes.covers(h)) {
            return false;
        }
        let (child, device) = match event {
            Event::Violation(v) => {
                if self.kind.is_some_and(|k| k.words() != v.kind) {
                    return false;
                }
                (v.child_id.as_str(), Some(v.device_id.as_str()))
            }
            Event::Task(t) => {
                if self
                    .kind
                    .is_some_and(|k| k != ViolationKind::UnknownContact)
                {
                    return false;
                }
                (t.child_id.as_str(), None)
            }
            Event::NotReporting(n) => (n.child_id.as_str(), Some(n.device_id.as_str())),
            Event::Missed(_) => return true,
        };
        self.child_id.as_deref().is_none_or(|c| c == child)
            && self
                .device_id
                .as_deref()
                .is_none_or(|d| device.is_none_or(|x| x == d))
    }
}

impl Context {
    async fn violation_filter(
        &self,
        who: &StaffIdentity,
        wire: Option<api::ViolationFilter>,
    ) -> Result<Filter, Status> {
        let f = wire.unwrap_or_default();
        let child_id = self.child_filter(who, &f.child).await?;
        let device_id = match f.device.trim() {
            "" => None,
            key => Some(self.device_for(who, key).await?.id),
        };
        let kind = pick::<api::ViolationKind>(
            f.violation_kind,
            "filter.violation_kind",
            &f.kind,
            "filter.kind",
        )?;
        let kind = match kind.trim() {
            "" => None,
            k => Some(ViolationKind::parse(k).map_err(|e| super::errors::invalid(e.to_string()))?),
        };
        Ok(Filter {
            homes: who.homes.clone(),
            child_id,
            device_id,
            kind,
            since: Some(super::convert::ms_of(f.since.as_ref(), f.since_unix_ms))
                .filter(|ms| *ms > 0),
        })
    }

    /// The staff view of a device, with whether it has gone quiet for too long.
    pub fn device_view(&self, d: DeviceRecord) -> api::Device {
        let online = self.is_online_anywhere(&d.id);
        let quiet = silent_for(
            d.status == "active",
            online,
            d.last_seen_at,
            d.enrolled_at,
            self.started_at,
            now_ms(),
            self.not_reporting_after_ms(),
        )
        .is_some();
        let mut view = super::convert::device(d, online);
        view.not_reporting = quiet;
        view
    }

    fn not_reporting_after_ms(&self) -> i64 {
        i64::try_from(self.not_reporting_after.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Looks for devices that went quiet since the last look, announces each once on the watch
/// feed, and forgets those that report again (so going quiet again is announced again).
pub async fn check_not_reporting(ctx: &Context, announced: &mut HashSet<String>) {
    let devices = match ctx.store.list_devices(None, false).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "could not check which devices are reporting");
            return;
        }
    };
    let now = now_ms();
    let mut quiet_now = HashSet::new();
    for d in devices {
        let online = ctx.is_online_anywhere(&d.id);
        let Some(silent) = silent_for(
            d.status == "active",
            online,
            d.last_seen_at,
            d.enrolled_at,
            ctx.started_at,
            now,
            ctx.not_reporting_after_ms(),
        ) else {
            continue;
        };
        quiet_now.insert(d.id.clone());
        if announced.contains(&d.id) {
            continue;
        }
        let label = d
            .inventory
            .as_deref()
            .and_then(|json| serde_json::from_str::<api::DeviceInventory>(json).ok())
            .map(|inv| inv.hostname)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{} ({h})", d.id))
            .unwrap_or_else(|| d.id.clone());
        let message = silence_message(&d.child_name, &label, silent);
        tracing::warn!(device = %d.id, silent_ms = silent, "device not reporting");
        ctx.watch.publish(Event::NotReporting(
            DeviceNotReporting {
                device_id: d.id.clone(),
                child_id: d.child_id.clone(),
                child_name: d.child_name.clone(),
                home_id: d.home_id.clone(),
                last_seen_at_unix_ms: d.last_seen_at.unwrap_or(0),
                silent_for_secs: u64::try_from(silent / 1000).unwrap_or(0),
                message,
                ..Default::default()
            }
            .with_times(),
        ));
    }
    *announced = quiet_now;
}

/// How often to look for quiet devices: often enough to announce within a fraction of the
/// configured time, never more than every second or less than every half minute.
pub fn check_every(after: Duration) -> Duration {
    (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

pub struct ViolationApi {
    pub ctx: Arc<Context>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ViolationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl violation_service_server::ViolationService for ViolationApi {
    async fn list_violations(
        &self,
        request: Request<ListViolationsRequest>,
    ) -> Result<Response<ListViolationsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let f = self.ctx.violation_filter(&who, req.filter).await?;
        // The filter as resolved (ids, the kind's stored name), so asking by name or by id
        // gives the same token.
        let filters = pages::Filters::new("violations")
            .with("child", f.child_id.as_deref())
            .with("device", f.device_id.as_deref())
            .with("kind", f.kind.map(|k| k.stored()))
            .with("since", f.since.map(|s| s.to_string()).as_deref());
        #[allow(deprecated)] // `limit` still read for clients written before page_size
        let size = VIOLATIONS.size(req.page_size, req.limit);
        let page = pages::page(&req.page_token, &filters, size)?;
        let list = self
            .ctx
            .store
            .list_violations(&crate::store::ViolationFilter {
                child_id: f.child_id,
                device_id: f.device_id,
                kind: f.kind.map(|k| k.stored().to_string()),
                since: f.since,
                limit: page.size,
                homes: pages::homes_of(&who.homes),
                after: page.after,
            })
            .await?;
        // A home's list is a read of each child it shows (subject access requests).
        self.ctx
            .note_reads(&who, list.items.iter().map(|v| v.child_id.as_str()));
        Ok(Response::new(ListViolationsResponse {
            next_page_token: pages::next_token(list.next.as_ref(), &filters),
            violations: list.items.into_iter().map(violation).collect(),
        }))
    }

    type WatchViolationsStream = EventStream;

    async fn watch_violations(
        &self,
        request: Request<WatchViolationsRequest>,
    ) -> Result<Response<Self::WatchViolationsStream>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let filter = self.ctx.violation_filter(&who, req.filter).await?;
        let mut rx = self.ctx.watch.subscribe().ok_or_else(|| {
            super::errors::refused(
                tonic::Code::Unavailable,
                super::errors::TRY_AGAIN,
                None,
                "the controller is shutting down: try again shortly",
            )
        })?;
        tracing::info!(staff = %who.id, "watching violations");
        let withdrawn = self.ctx.sessions.until_withdrawn(&who.id);
        let stream = async_stream(move |tx| async move {
            let feed = async {
                loop {
                    let Some(event) = next_event(&mut rx).await else {
                        return;
                    };
                    if !filter.passes(&event) {
                        continue;
                    }
                    if tx.send(Ok((*event).clone().into_wire())).await.is_err() {
                        // The watcher hung up.
                        return;
                    }
                }
            };
            tokio::select! {
                () = feed => {}
                () = withdrawn => {
                    let _ = tx.send(Err(super::auth::access_withdrawn())).await;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn list_manager_tasks(
        &self,
        request: Request<ListManagerTasksRequest>,
    ) -> Result<Response<ListManagerTasksResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child_id = self.ctx.child_filter(&who, &req.child).await?;
        let filters = pages::Filters::new("manager tasks")
            .with("child", child_id.as_deref())
            .with_bool("include_closed", req.include_closed);
        let page = pages::page(
            &req.page_token,
            &filters,
            pages::WHOLE_LIST.size(req.page_size, 0),
        )?;
        let homes = pages::homes_of(&who.homes);
        let tasks = self
            .ctx
            .store
            .manager_tasks_page(
                child_id.as_deref(),
                req.include_closed,
                homes.as_deref(),
                &page,
            )
            .await?;
        Ok(Response::new(ListManagerTasksResponse {
            next_page_token: pages::next_token(tasks.next.as_ref(), &filters),
            tasks: tasks
                .items
                .into_iter()
                .filter(|t| who.homes.covers(&t.home_id))
                .inspect(|t| self.ctx.note_read(&who, &t.child_id))
                .map(|t| task_with(t, &self.ctx.holidays, now_ms()))
                .collect(),
        }))
    }

    async fn close_manager_task(
        &self,
        request: Request<CloseManagerTaskRequest>,
    ) -> Result<Response<ManagerTask>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::CloseManagerTasks)
            .await?;
        let req = request.into_inner();
        let id = req.id.trim();
        if id.is_empty() {
            return Err(super::errors::bad_field("id", "say which task to close"));
        }
        let note = clean_note(&req.note)?;
        let decision = pick::<api::TaskDecision>(
            req.task_decision,
            "task_decision",
            &req.decision,
            "decision",
        )?;
        // clause GD3: a decision is part of closing; checked before anything is looked up.
        crate::domain::violations::task_decision(&decision).map_err(|e| {
            super::errors::bad_field(
                if req.task_decision != 0 {
                    "task_decision"
                } else {
                    "decision"
                },
                e,
            )
        })?;
        close_task(id, None, &decision, &note).map_err(super::errors::invalid)?;
        // A task in another home is "not found", never "not yours".
        let found = self.ctx.store.find_manager_task(id).await?;
        in_scope(&who, &found.home_id, "task", id, ())?;
        let closed = self
            .ctx
            .store
            .close_manager_task(&Actor::staff(&who), id, &decision, &note, now_ms())
            .await?;
        Ok(Response::new(task_with(
            closed,
            &self.ctx.holidays,
            now_ms(),
        )))
    }
}

fn clean_note(raw: &str) -> Result<String, Status> {
    let note = raw.trim();
    if note.is_empty() {
        return Err(super::errors::bad_field(
            "note",
            "say what was done, e.g. \"assessed with the social worker\"",
        ));
    }
    if note.chars().count() > 2000 {
        return Err(super::errors::bad_field(
            "note",
            "the note is too long: keep it under 2000 characters",
        ));
    }
    Ok(note.to_string())
}

/// The next event for one watcher: a watcher that fell behind is told how many it missed
/// (the oldest were dropped for it) and carries on; `None` once the controller shuts down.
async fn next_event(rx: &mut broadcast::Receiver<Arc<Event>>) -> Option<Arc<Event>> {
    match rx.recv().await {
        Ok(e) => Some(e),
        Err(broadcast::error::RecvError::Lagged(n)) => Some(Arc::new(Event::Missed(n))),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

/// A stream fed by a task: the task ends when the receiver is dropped (the watcher hung up).
fn async_stream<F, Fut>(produce: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<ViolationEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(child: &str, device: &str, kind: &str) -> Event {
        Event::Violation(api::ViolationRecord {
            child_id: child.into(),
            device_id: device.into(),
            kind: kind.into(),
            ..Default::default()
        })
    }

    #[test]
    fn watch_filters_narrow_violations_but_always_show_a_quiet_device() {
        let f = Filter {
            homes: HomeScope::Everywhere,
            child_id: Some("chd-1".into()),
            device_id: None,
            kind: Some(ViolationKind::CameraBlocked),
            since: None,
        };
        assert!(f.passes(&v("chd-1", "dev-1", "camera-blocked")));
        assert!(!f.passes(&v("chd-2", "dev-2", "camera-blocked")));
        assert!(!f.passes(&v("chd-1", "dev-1", "web-blocked")));
        assert!(f.passes(&Event::NotReporting(DeviceNotReporting {
            child_id: "chd-1".into(),
            device_id: "dev-1".into(),
            ..Default::default()
        })));
        assert!(!f.passes(&Event::Task(ManagerTask {
            child_id: "chd-1".into(),
            ..Default::default()
        })));
        assert!(f.passes(&Event::Missed(3)));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_what_it_missed_and_never_blocks_publishing() {
        let watch = Watch::default();
        let mut rx = watch.subscribe().unwrap();
        // Publishing never waits for a watcher, however far behind it is.
        for n in 0..(WATCH_DEPTH as u64 + 5) {
            watch.publish(Event::Missed(n + 1000));
        }
        assert_eq!(*next_event(&mut rx).await.unwrap(), Event::Missed(5));
        assert_eq!(*next_event(&mut rx).await.unwrap(), Event::Missed(1005));
        watch.close();
        assert!(
            watch.subscribe().is_none(),
            "no new watches while shutting down"
        );
        let mut left = 0;
        while next_event(&mut rx).await.is_some() {
            left += 1;
        }
        assert_eq!(
            left,
            WATCH_DEPTH - 1,
            "what was queued is delivered, then the watch ends"
        );
    }

    #[test]
    fn quiet_devices_are_looked_for_often_but_not_constantly() {
        assert_eq!(check_every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(
            check_every(Duration::from_secs(60)),
            Duration::from_secs(15)
        );
        assert_eq!(
            check_every(Duration::from_secs(900)),
            Duration::from_secs(30)
        );
    }
}
