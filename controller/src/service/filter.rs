//! `FilterService` and the delivery of category lists to devices (WB1, WB4).
//!
//! A list is compiled once on import (`haven_proto::domain_list`), stored as one blob per
//! category and version, and cut once into chunk messages whose bytes every device's copy
//! shares (`bytes::Bytes`). A device says which versions it holds after its `Hello`; it is
//! sent the index of what is current and only the categories it lacks or holds an older
//! version of (`domain::filter_lists::to_send`), one device's deliveries one at a time so
//! chunks of one list never interleave. Sends wait for room in the device's outbox (lists are
//! big; a full outbox is normal here, not a sign the device is gone).

// The deprecated words fields beside each enum are still filled and read, for older clients
// (proto/README.md).
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use haven_proto::admin::v1::{self as api, filter_service_server::FilterService};
use haven_proto::agent::v1::{
    self as wire, ControllerMessage, controller_message::Body as Outbound,
};
use haven_proto::domain_list;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::convert::WithTimes as _;
use super::wire_enums::{pick, wire};
use super::{Context, now_ms};
use crate::domain::Action;
use crate::domain::filter::{HomeWeb, profile_blocks};
use crate::domain::filter_lists::{
    self, ExceptionKind, ListVersion, UT1_LICENCE, UT1_SOURCE, check_import, known_category,
    to_send,
};
use crate::registry::Outbox;
use crate::store::{Actor, FilterListRecord, NewFilterList, StoreError, WebExceptionRecord};

/// Bytes of list in one chunk message: well under the 4 MB a gRPC peer accepts by default.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The largest list text accepted in one import (a million names is about 20 MB).
pub const MAX_UPLOAD_BYTES: usize = 512 * 1024 * 1024;

/// Outbox slots a list delivery never takes, kept for policy pushes and acknowledgements.
const OUTBOX_ROOM: usize = 12;

type Messages = Arc<Vec<ControllerMessage>>;
/// One payload's chunk messages, made by the first delivery that needs them.
type Encoded = Arc<tokio::sync::OnceCell<Option<Messages>>>;

/// The lists in force and what has been encoded for devices, shared by every stream.
#[derive(Default)]
pub struct FilterHub {
    inner: Mutex<HubState>,
    /// One delivery at a time per device.
    delivering: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct HubState {
    /// The current version of every category; `None` until first read from the store.
    current: Option<Arc<Vec<FilterListRecord>>>,
    /// Chunk messages by (category, from version or 0 for the whole list, to version),
    /// made once: devices asking at the same time wait for the one making them.
    encoded: HashMap<(String, u64, u64), Encoded>,
    /// The versions each connected device said it holds (or was since sent and installed).
    held: HashMap<String, Vec<ListVersion>>,
}

impl FilterHub {
    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets what was cached: a new version was imported.
    pub fn changed(&self) {
        let mut s = self.state();
        s.current = None;
        s.encoded.clear();
    }

    pub fn set_held(&self, device_id: &str, held: Vec<ListVersion>) {
        self.state().held.insert(device_id.to_string(), held);
    }

    /// A device installed a version.
    pub fn installed(&self, device_id: &str, v: ListVersion) {
        let mut s = self.state();
        if let Some(held) = s.held.get_mut(device_id) {
            held.retain(|h| h.category != v.category);
            held.push(v);
        }
    }

    pub fn disconnected(&self, device_id: &str) {
        self.state().held.remove(device_id);
        self.delivering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device_id);
    }

    fn lock_for(&self, device_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.delivering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(device_id.to_string())
            .or_default()
            .clone()
    }
}

fn version_of(r: &FilterListRecord) -> ListVersion {
    ListVersion {
        category: r.category.clone(),
        version: r.version,
        sha256: r.sha256.clone(),
    }
}

/// Cuts a payload into chunk messages.
fn chunk_messages(
    category: &str,
    version: u64,
    from: u64,
    sha256: &str,
    payload: Vec<u8>,
) -> Vec<ControllerMessage> {
    let total = payload.len() as u64;
    let payload = bytes::Bytes::from(payload);
    let mut out = Vec::with_capacity(payload.len() / CHUNK_BYTES + 1);
    let mut offset = 0;
    loop {
        let end = (offset + CHUNK_BYTES).min(payload.len());
        out.push(ControllerMessage {
            body: Some(Outbound::FilterListChunk(wire::FilterListChunk {
                category: category.to_string(),
                version,
                base_version: from,
                offset: offset as u64,
                total_bytes: total,
                data: payload.slice(offset..end),
                sha256: sha256.to_string(),
            })),
        });
        offset = end;
        if offset >= payload.len() {
            break;
        }
    }
    out
}

fn internal(e: impl std::fmt::Display) -> Status {
    super::errors::internal(format!("could not prepare the filter list: {e}"))
}

impl Context {
    /// The current version of every category (cached until the next import).
    pub async fn current_lists(&self) -> Result<Arc<Vec<FilterListRecord>>, StoreError> {
        if let Some(c) = self.filters.state().current.clone() {
            return Ok(c);
        }
        let lists = Arc::new(self.store.filter_lists().await?);
        self.filters.state().current = Some(lists.clone());
        Ok(lists)
    }

    /// What a home adds to its devices' web rules.
    pub async fn home_web(&self, home_id: &str) -> Result<HomeWeb, StoreError> {
        let installed = self
            .current_lists()
            .await?
            .iter()
            .map(|l| l.category.clone())
            .collect();
        let mut web = HomeWeb {
            installed,
            ..Default::default()
        };
        for e in self.store.web_exceptions(home_id).await? {
            match e.kind.as_str() {
                "allow" => web.allow.push(e.domain),
                _ => web.deny.push(e.domain),
            }
        }
        Ok(web)
    }

    /// The chunk messages for one send, encoded once and shared.
    async fn messages_for(
        &self,
        list: &FilterListRecord,
        from: Option<u64>,
    ) -> Result<Option<Messages>, Status> {
        let key = (list.category.clone(), from.unwrap_or(0), list.version);
        let cell = self.filters.state().encoded.entry(key).or_default().clone();
        let made = cell
            .get_or_try_init(|| self.encode_payload(list, from))
            .await?;
        Ok(made.clone())
    }

    async fn encode_payload(
        &self,
        list: &FilterListRecord,
        from: Option<u64>,
    ) -> Result<Option<Messages>, Status> {
        let Some(full) = self
            .store
            .filter_list_bytes(&list.category, list.version)
            .await?
        else {
            return Ok(None); // replaced meanwhile; the next delivery sends the newer one
        };
        let payload = match from {
            None => full,
            Some(v) => {
                let Some(base) = self.store.filter_list_bytes(&list.category, v).await? else {
                    return Ok(None);
                };
                tokio::task::spawn_blocking(move || domain_list::diff(&base, &full))
                    .await
                    .map_err(internal)?
                    .map_err(internal)?
            }
        };
        Ok(Some(Arc::new(chunk_messages(
            &list.category,
            list.version,
            from.unwrap_or(0),
            &list.sha256,
            payload,
        ))))
    }

    /// Sends a device the index of current lists and whatever it lacks. Waits for room in
    /// its outbox; ends quietly if the device goes away.
    pub async fn deliver_lists(&self, device_id: &str, outbox: Outbox) -> Result<usize, Status> {
        let lock = self.filters.lock_for(device_id);
        let _one_at_a_time = lock.lock().await;
        let current = self.current_lists().await?;
        let held = self
            .filters
            .state()
            .held
            .get(device_id)
            .cloned()
            .unwrap_or_default();
        let index = ControllerMessage {
            body: Some(Outbound::FilterListIndex(wire::FilterListIndex {
                lists: current
                    .iter()
                    .map(|l| wire::FilterListVersion {
                        category: l.category.clone(),
                        version: l.version,
                        sha256: l.sha256.clone(),
                    })
                    .collect(),
            })),
        };
        if outbox.send(Ok(index.into())).await.is_err() {
            return Ok(0);
        }
        let versions: Vec<ListVersion> = current.iter().map(version_of).collect();
        // Changes the device could take, worked out (and cached) before choosing.
        let mut change_sizes: HashMap<(String, u64), usize> = HashMap::new();
        for list in current.iter() {
            if let Some(h) = held.iter().find(|h| h.category == list.category)
                && h.version < list.version
                && h.version + filter_lists::VERSIONS_KEPT > list.version
                && let Some(m) = self.messages_for(list, Some(h.version)).await?
            {
                change_sizes.insert((list.category.clone(), h.version), payload_len(&m));
            }
        }
        let full_size = |c: &str| {
            current
                .iter()
                .find(|l| l.category == c)
                .map_or(0, |l| l.compiled_bytes as usize)
        };
        let change_size =
            |c: &str, from: u64, _to: u64| change_sizes.get(&(c.to_string(), from)).copied();
        let mut sent = 0;
        for send in to_send(&versions, &held, full_size, change_size) {
            let Some(list) = current.iter().find(|l| l.category == send.category) else {
                continue;
            };
            let Some(messages) = self.messages_for(list, send.from).await? else {
                continue;
            };
            for m in messages.iter() {
                // Leave room in the outbox for policies and acknowledgements: a push that
                // finds it full takes the device for one too far behind and drops it.
                while outbox.capacity() < OUTBOX_ROOM && !outbox.is_closed() {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                }
                if outbox.send(Ok(m.clone().into())).await.is_err() {
                    return Ok(sent);
                }
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// Sends the current lists to every connected device that said which it holds; returns
    /// how many devices were offered something.
    pub fn push_lists(self: &Arc<Self>) -> usize {
        let devices: Vec<String> = self.filters.state().held.keys().cloned().collect();
        let mut offered = 0;
        for device_id in devices {
            let Some(outbox) = self.registry.outbox(&device_id) else {
                continue;
            };
            offered += 1;
            let ctx = self.clone();
            tokio::spawn(async move {
                if let Err(e) = ctx.deliver_lists(&device_id, outbox).await {
                    tracing::warn!(device = %device_id, error = %e.message(), "could not send filter lists");
                }
            });
        }
        offered
    }
}

fn payload_len(messages: &[ControllerMessage]) -> usize {
    match messages.first().and_then(|m| m.body.as_ref()) {
        Some(Outbound::FilterListChunk(c)) => c.total_bytes as usize,
        _ => 0,
    }
}

/// The versions a device's message says it holds.
pub fn held_versions(lists: &[wire::FilterListVersion]) -> Vec<ListVersion> {
    lists
        .iter()
        .take(64)
        .map(|l| ListVersion {
            category: l.category.chars().take(64).collect(),
            version: l.version,
            sha256: l.sha256.chars().take(64).collect(),
        })
        .collect()
}

pub struct FilterApi {
    pub ctx: Arc<Context>,
}

fn invalid(e: impl std::fmt::Display) -> Status {
    super::errors::invalid(e.to_string())
}

async fn staff_names(ctx: &Context) -> HashMap<String, String> {
    ctx.store
        .list_staff(true)
        .await
        .map(|all| all.into_iter().map(|s| (s.id, s.name)).collect())
        .unwrap_or_default()
}

fn list_message(r: FilterListRecord, names: &HashMap<String, String>) -> api::FilterList {
    api::FilterList {
        imported_by_name: names.get(&r.imported_by).cloned().unwrap_or_default(),
        category: r.category,
        version: r.version,
        domains: r.domains,
        skipped: r.skipped,
        source: r.source,
        licence: r.licence,
        imported_at_unix_ms: r.imported_at,
        imported_by: r.imported_by,
        compiled_bytes: r.compiled_bytes,
        sha256: r.sha256,
        devices_sent: 0,
        imported_at: None,
    }
    .with_times()
}

fn exception_message(e: WebExceptionRecord) -> api::WebException {
    api::WebException {
        home_id: e.home_id,
        domain: e.domain,
        exception_kind: wire::<api::WebExceptionKind>(&e.kind),
        kind: e.kind,
        added_at_unix_ms: e.added_at,
        added_by: e.added_by,
        ..Default::default()
    }
    .with_times()
}

#[tonic::async_trait]
impl FilterService for FilterApi {
    async fn import_filter_list(
        &self,
        request: Request<Streaming<api::FilterListUpload>>,
    ) -> Result<Response<api::FilterList>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ImportFilterLists)
            .await?;
        let mut upload = request.into_inner();
        let first = upload.next().await.ok_or_else(|| {
            super::errors::invalid("the upload was empty: send the category and the list")
        })??;
        let category = known_category(&first.category).map_err(invalid)?;
        let source = match first.source.trim() {
            "" => UT1_SOURCE.to_string(),
            s => s.chars().take(300).collect(),
        };
        let licence = match first.licence.trim() {
            "" => UT1_LICENCE.to_string(),
            s => s.chars().take(100).collect(),
        };
        let mut text = first.data;
        while let Some(part) = upload.next().await {
            let part = part?;
            if text.len() + part.data.len() > MAX_UPLOAD_BYTES {
                return Err(super::errors::invalid(format!(
                    "the list is bigger than {} MB: split it, or remove what is not a domain name; nothing was imported",
                    MAX_UPLOAD_BYTES / (1024 * 1024)
                )));
            }
            text.extend_from_slice(&part.data);
        }
        let started = std::time::Instant::now();
        let compiled = tokio::task::spawn_blocking(move || domain_list::compile(&text))
            .await
            .map_err(internal)?;
        check_import(&category, compiled.domains as u64, compiled.skipped as u64)
            .map_err(invalid)?;
        let sha256 = domain_list::sha256_hex(&compiled.bytes);
        let now = now_ms();
        let imported = self
            .ctx
            .store
            .import_filter_list(
                &Actor::staff(&who),
                NewFilterList {
                    category: &category,
                    source: &source,
                    licence: &licence,
                    compiled: &compiled.bytes,
                    sha256: &sha256,
                    domains: compiled.domains as u64,
                    skipped: compiled.skipped as u64,
                },
                now,
            )
            .await?;
        tracing::info!(
            category = %category,
            version = imported.list.version,
            domains = compiled.domains,
            compiled_bytes = compiled.bytes.len(),
            compile_ms = started.elapsed().as_millis() as u64,
            "filter list imported"
        );
        self.ctx.filters.changed();
        self.ctx
            .cluster
            .announce(crate::cluster::Event::FilterLists);
        let sent = self.ctx.push_lists();
        // A category's first list: every home's policies now name it.
        if let Some(version) = imported.policy_version {
            for home in self.ctx.store.list_homes().await? {
                self.ctx.push_home(&home.id, version, now).await?;
            }
        }
        let mut message = list_message(imported.list, &staff_names(&self.ctx).await);
        message.devices_sent = sent as u32;
        Ok(Response::new(message))
    }

    async fn list_filter_lists(
        &self,
        request: Request<api::ListFilterListsRequest>,
    ) -> Result<Response<api::ListFilterListsResponse>, Status> {
        self.ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let names = staff_names(&self.ctx).await;
        let lists = self.ctx.current_lists().await?;
        Ok(Response::new(api::ListFilterListsResponse {
            lists: lists
                .iter()
                .cloned()
                .map(|l| list_message(l, &names))
                .collect(),
        }))
    }

    async fn set_web_exception(
        &self,
        request: Request<api::SetWebExceptionRequest>,
    ) -> Result<Response<api::WebExceptionChange>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EditWebExceptions)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_for(&who, req.home.trim()).await?;
        let kind =
            pick::<api::WebExceptionKind>(req.exception_kind, "exception_kind", &req.kind, "kind")?;
        let kind = ExceptionKind::parse(&kind).map_err(invalid)?;
        let domain = filter_lists::exception_domain(&req.domain, kind).map_err(invalid)?;
        let now = now_ms();
        let (exception, version) = self
            .ctx
            .store
            .set_web_exception(&Actor::staff(&who), &home.id, &domain, kind.as_str(), now)
            .await?;
        let report = self.ctx.push_home(&home.id, version, now).await?;
        Ok(Response::new(api::WebExceptionChange {
            exception: Some(exception_message(exception)),
            policy_version: version,
            devices_sent: report.sent as u32,
        }))
    }

    async fn remove_web_exception(
        &self,
        request: Request<api::RemoveWebExceptionRequest>,
    ) -> Result<Response<api::WebExceptionChange>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::EditWebExceptions)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_for(&who, req.home.trim()).await?;
        // Any spelling a person might paste finds the stored one.
        let domain =
            filter_lists::exception_domain(&req.domain, ExceptionKind::Allow).map_err(invalid)?;
        let now = now_ms();
        let (exception, version) = self
            .ctx
            .store
            .remove_web_exception(&Actor::staff(&who), &home.id, &domain, now)
            .await?;
        let report = self.ctx.push_home(&home.id, version, now).await?;
        Ok(Response::new(api::WebExceptionChange {
            exception: Some(exception_message(exception)),
            policy_version: version,
            devices_sent: report.sent as u32,
        }))
    }

    async fn list_web_exceptions(
        &self,
        request: Request<api::ListWebExceptionsRequest>,
    ) -> Result<Response<api::ListWebExceptionsResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let home = self.ctx.home_for(&who, req.home.trim()).await?;
        let exceptions = self.ctx.store.web_exceptions(&home.id).await?;
        Ok(Response::new(api::ListWebExceptionsResponse {
            exceptions: exceptions.into_iter().map(exception_message).collect(),
        }))
    }

    async fn filter_coverage(
        &self,
        request: Request<api::FilterCoverageRequest>,
    ) -> Result<Response<api::FilterCoverageResponse>, Status> {
        let who = self
            .ctx
            .authorize(request.metadata(), Action::ReadRecords)
            .await?;
        let req = request.into_inner();
        let child = match (req.child.trim(), req.device.trim()) {
            ("", "") => return Err(super::errors::invalid("say which child or device")),
            ("", device) => {
                let d = self.ctx.device_for(&who, device).await?;
                self.ctx.child_for(&who, &d.child_id).await?
            }
            (child, _) => self.ctx.child_for(&who, child).await?,
        };
        let inputs = self.ctx.store.home_policy_inputs(&child.home_id).await?;
        let plan = inputs
            .children
            .iter()
            .find(|c| c.child_id == child.id)
            .and_then(|c| c.plan.clone());
        let policy = super::fanout::compiled_policy(&crate::store::PolicyData {
            device_id: String::new(),
            version: 0,
            changed_at: 0,
            child_name: child.name.clone(),
            protected_contacts: Vec::new(),
            plan,
            lockdowns: Vec::new(),
        });
        let web = self.ctx.home_web(&child.home_id).await?;
        if !policy.web_allowed {
            return Ok(Response::new(api::FilterCoverageResponse::default()));
        }
        let blocks = profile_blocks(&policy.web_filter_profile, &web.installed, false);
        Ok(Response::new(api::FilterCoverageResponse {
            web_on: true,
            filter_profile: policy.web_filter_profile,
            staff_note: blocks.staff_note().unwrap_or_default(),
            blocked: blocks.blocked,
            missing: blocks.missing,
        }))
    }
}
