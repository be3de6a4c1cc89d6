//! `haven.agent.v1.AgentService`: enrollment, and the one long-lived stream to each device.

use std::sync::Arc;
use std::time::Duration;

use haven_proto::agent::v1::{
    self as wire, AgentMessage, ControllerMessage, EnrollRequest, EnrollResponse,
    agent_message::Body as Inbound, controller_message::Body as Outbound,
};
use haven_proto::outgoing::Outgoing;
use haven_proto::outgoing::server::agent_service_server::AgentService;
use haven_proto::trust::pin_of;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::clip;
use super::{Context, convert, fanout::policy_message, now_ms};
use crate::domain::device_cert;
use crate::domain::enrollment::{CodeState, normalise_code, refusal};
use crate::domain::policy::is_protected_attempt;
use crate::ids::new_id;
use crate::pki::PkiError;
use crate::service::auth::token_hash;
use crate::store::{CertificateUse, NewDevice, StoreError, ViolationRecord};

/// How many messages may wait for a slow device before pushes to it are dropped (it catches
/// up from its version on reconnect).
const OUTBOX_DEPTH: usize = 32;
/// Most violations accepted in one batch; a device sends more in further batches.
pub const MAX_BATCH: usize = 500;

pub struct AgentApi {
    pub ctx: Arc<Context>,
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = request.remote_addr().map(|a| a.ip());
        let now = now_ms();
        if !self.ctx.limits.enroll_allowed(peer, now) {
            crate::metrics::enrollment_refused("too_many_wrong_codes");
            return Err(Status::resource_exhausted(
                "too many wrong enrollment codes from this network address: wait an hour, then try again with the code staff gave you",
            ));
        }
        let req = request.into_inner();
        let Some(code) = normalise_code(&req.code) else {
            crate::metrics::enrollment_refused("not_a_code");
            self.ctx.limits.enroll_failed(peer, now);
            return Err(Status::invalid_argument(
                "that is not an enrollment code: codes look like K7QD-M2XP-9HTR; check what staff gave you",
            ));
        };
        // Codes are stored hashed like tokens, so the database never holds a usable code.
        let code_hash = token_hash(&code);
        let (child_id, state) = self.ctx.store.check_enrollment(&code_hash, now).await?;
        if state != CodeState::Usable {
            crate::metrics::enrollment_refused("code_not_usable");
            self.ctx.limits.enroll_failed(peer, now);
            return Err(Status::failed_precondition(refusal(Some(state))));
        }
        let device_id = new_id("dev");
        let signed = self
            .ctx
            .pki
            .sign_device(&req.csr_pem, &device_id, now)
            .map_err(|e| match e {
                PkiError::BadRequest(_) | PkiError::WrongKeyType(_) => {
                    Status::invalid_argument(e.to_string())
                }
                other => {
                    tracing::error!(error = %other, "could not sign a device certificate");
                    Status::internal(
                        "the controller could not make this device's certificate; nothing was used up. Try again, and check the controller's log if it keeps failing",
                    )
                }
            })?;
        let device = self
            .ctx
            .store
            .redeem_enrollment(
                &code_hash,
                NewDevice {
                    id: device_id.clone(),
                    cert_fingerprint: signed.fingerprint.clone(),
                    inventory: req.inventory.as_ref().map(convert::inventory_json),
                },
                now,
            )
            .await?;
        // When it expires, for staff (D7); the enrollment's audit entry holds the certificate.
        if let Err(e) = self
            .ctx
            .store
            .certificate_in_use(&device_id, &signed.fingerprint, signed.not_after, now)
            .await
        {
            tracing::warn!(device = %device_id, error = %e, "could not note when the new device's certificate expires");
        }
        tracing::info!(device = %device_id, child = %child_id, "device enrolled");
        Ok(Response::new(EnrollResponse {
            device_id,
            certificate_pem: signed.certificate_pem,
            ca_certificate_pem: self.ctx.pki.ca_pem.clone(),
            child_display_name: device
                .child_name
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
        }))
    }

    type SyncStream = ReceiverStream<Result<Outgoing, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        // The device is whoever its verified certificate says; nothing it sends can change that.
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated(
                "a device certificate is needed to sync: enroll this device with `haven-agent enroll`",
            )
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("no device certificate was presented: enroll this device first")
        })?;
        let fingerprint = pin_of(leaf);
        let now = now_ms();
        let not_after = crate::pki::not_after_of(leaf).ok_or_else(|| {
            Status::unauthenticated(
                "this device certificate cannot be read: enroll the device again",
            )
        })?;
        // A resumed TLS session carries the certificate it was first made with, and TLS does
        // not look at its dates again: an expired certificate is refused here (D7).
        if not_after <= now {
            return Err(Status::unauthenticated(
                "this device's certificate has expired: ask staff for a new enrollment code",
            ));
        }
        let unknown = || {
            Status::unauthenticated(
                "this device certificate is not known to this controller: enroll the device again",
            )
        };
        // The certificate in use, or a renewed one on its first use (D7).
        let device = match self.ctx.store.device_by_fingerprint(&fingerprint).await? {
            Some(device) => device,
            None => {
                let id = self
                    .ctx
                    .store
                    .device_for_renewed_certificate(&fingerprint, now)
                    .await?
                    .ok_or_else(unknown)?;
                self.ctx.store.find_device(&id).await?
            }
        };
        if device.status != "active" {
            return Ok(Response::new(retired_stream(
                device
                    .revoked_reason
                    .as_deref()
                    .unwrap_or("removed by staff"),
            )));
        }
        match self
            .ctx
            .store
            .certificate_in_use(&device.id, &fingerprint, not_after, now)
            .await
        {
            Ok(CertificateUse::SwitchedToRenewed) => tracing::info!(
                device = %device.id,
                "device connected with its renewed certificate; the old one no longer works"
            ),
            Ok(CertificateUse::Current) => {}
            Err(StoreError::Conflict(_)) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        }
        let (tx, rx) = mpsc::channel(OUTBOX_DEPTH);
        let connection = self
            .ctx
            .registry
            .insert(&device.id, &device.home_id, &device.child_id, tx.clone())
            .ok_or_else(|| {
                Status::unavailable("the controller is shutting down: try again shortly")
            })?;
        // Staff may have revoked the device between the check above and registering it; look
        // again now that a revoke would find it in the registry.
        let still = self.ctx.store.find_device(&device.id).await.ok();
        if still.is_none_or(|d| d.status != "active") {
            self.ctx.registry.remove(&device.id, connection);
            return Ok(Response::new(retired_stream("removed by staff")));
        }
        self.ctx.cluster.held_here(&device.id);
        tracing::info!(device = %device.id, "device connected");
        let weak = tx.downgrade();
        drop(tx);
        let ctx = self.ctx.clone();
        let renewal = Renewal {
            leaf: leaf.to_vec(),
            not_after,
            asked: false,
            tried: false,
        };
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let device_id = device.id.clone();
            if let Err(status) = serve_device(
                &ctx,
                &device_id,
                &device.home_id,
                weak.clone(),
                inbound,
                renewal,
            )
            .await
            {
                tracing::info!(device = %device_id, reason = %status.message(), "device stream ended");
                // Say why, so the device backs off instead of reconnecting at once.
                if let Some(tx) = weak.upgrade() {
                    let _ = tx.try_send(Err(status));
                }
            }
            ctx.registry.remove(&device_id, connection);
            if !ctx.registry.is_online(&device_id) {
                ctx.filters.disconnected(&device_id);
                ctx.cluster.announce(crate::cluster::Event::Offline {
                    device: device_id.clone(),
                });
            }
            tracing::info!(device = %device_id, "device disconnected");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Reads one device's messages until its stream ends.
async fn serve_device(
    ctx: &Arc<Context>,
    device_id: &str,
    home_id: &str,
    outbox: mpsc::WeakSender<Result<Outgoing, Status>>,
    mut inbound: Streaming<AgentMessage>,
    mut renewal: Renewal,
) -> Result<(), Status> {
    let send = |message: ControllerMessage| {
        if let Some(tx) = outbox.upgrade() {
            let _ = tx.try_send(Ok(message.into()));
        }
    };
    // Whether the device's guards hold, as it last said (an agent that never says is
    // trusted as before); a device that does not enforce is never counted as locked.
    let mut enforcing = true;
    // A device says once, after Hello, which lists it holds; a second claim on the same stream
    // would only queue another full delivery behind the first (a device could fill the
    // controller with them), so it is ignored (WB4, one device cannot hurt the others).
    let mut lists_claimed = false;
    // Whether the certificate is due is checked on Hello and again on this timer (D7).
    let lifetime = ctx.pki.device_lifetime;
    let every = Duration::from_millis(
        u64::try_from(device_cert::check_every_ms(lifetime)).unwrap_or(3_600_000),
    );
    let mut renewal_check = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    renewal_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            // `Streaming::message` keeps its state in the stream, so losing this race to the
            // timer loses no message.
            message = inbound.message() => match message? {
                Some(message) => message,
                None => break,
            },
            _ = renewal_check.tick() => {
                if outbox.upgrade().is_none() {
                    return Ok(());
                }
                if let Some(due) = renewal.due(now_ms(), lifetime) {
                    send(due);
                }
                continue;
            }
        };
        // The registry let go of this stream (revoked, replaced or shutting down): stop
        // listening to it too.
        if outbox.upgrade().is_none() {
            return Ok(());
        }
        let now = now_ms();
        match message.body {
            Some(Inbound::Hello(hello)) => {
                let inventory = hello.inventory.as_ref().map(convert::inventory_json);
                ctx.reports.seen(device_id, inventory, now);
                if let Some(guards) = &hello.guards {
                    enforcing = guards_reported(ctx, device_id, guards, now).await?;
                }
                if believed(ctx, device_id, hello.applied_policy_version, now).await? {
                    ctx.reports
                        .applied(device_id, hello.applied_policy_version, None, now);
                    ctx.acks
                        .applied(device_id, hello.applied_policy_version, !enforcing);
                }
                // The catch-up rule: a device that does not have the newest policy gets it now.
                if let Some(data) = ctx.store.policy_data_for_device(device_id).await?
                    && data.version != hello.applied_policy_version
                {
                    send(policy_message(&data, &ctx.home_web(home_id).await?));
                }
                // Answers the device may have missed while it was away.
                for answer in ctx.store.answers_for_device(device_id).await? {
                    send(answer_message(answer));
                }
                if let Some(due) = renewal.due(now, lifetime) {
                    send(due);
                }
            }
            Some(Inbound::RenewCertificate(request)) => {
                send(renew(ctx, device_id, &mut renewal, &request.csr_pem, now).await?);
            }
            Some(Inbound::Heartbeat(beat)) => {
                let inventory = beat.inventory.as_ref().map(convert::inventory_json);
                ctx.reports.seen(device_id, inventory, now);
                if let Some(guards) = &beat.guards {
                    enforcing = guards_reported(ctx, device_id, guards, now).await?;
                }
            }
            Some(Inbound::PolicyApplied(applied)) => {
                if !believed(ctx, device_id, applied.version, now).await? {
                    continue;
                }
                crate::metrics::policy_applied(applied.version, now);
                let error = clip(&applied.error, 512);
                let error = (!error.is_empty()).then_some(error);
                let failed = error.is_some() || !enforcing;
                ctx.acks.applied(device_id, applied.version, failed);
                ctx.cluster.announce(crate::cluster::Event::Applied {
                    device: device_id.to_string(),
                    version: applied.version,
                    failed,
                });
                ctx.reports.applied(device_id, applied.version, error, now);
                tracing::debug!(
                    device = device_id,
                    version = applied.version,
                    "policy applied"
                );
            }
            Some(Inbound::Violations(batch)) => {
                let records = violation_records(&batch.violations, now)?;
                let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
                // R19, Regulation 22: an attempt to reach 999 or a helpline is never a
                // violation, whatever an old or faulty device says. Acknowledged so the device
                // forgets it; never stored, never a task, the number never logged.
                let mut records: Vec<ViolationRecord> = records
                    .into_iter()
                    .filter(|r| !is_protected_attempt(&r.kind, &r.subject))
                    .collect();
                // Within the device's budget; the rest is counted into a summary record
                // (written every minute) and acknowledged, so one device cannot flood the store.
                let admitted = ctx.limits.admit(device_id, &records, now);
                crate::metrics::violations(0, records.len().saturating_sub(admitted));
                records.truncate(admitted);
                let _timer = crate::metrics::store_write("violations");
                let recorded = ctx
                    .store
                    .record_violations(device_id, &records, now)
                    .await?;
                tracing::info!(
                    device = device_id,
                    received = records.len(),
                    new = recorded.new.len(),
                    tasks = recorded.tasks.len(),
                    "violations stored"
                );
                crate::metrics::violations(recorded.new.len(), 0);
                // Only what was newly stored goes to watchers: a resend is not news.
                ctx.watch.violations(&recorded.new);
                ctx.watch.tasks(&recorded.tasks);
                send(ControllerMessage {
                    body: Some(Outbound::ViolationAck(wire::ViolationAck { ids })),
                });
            }
            Some(Inbound::CommandResult(result)) => {
                tracing::info!(device = device_id, command = %clip(&result.command_id, 64), ok = result.ok, "command result");
            }
            Some(Inbound::ChildRequest(req)) => {
                let text = child_request_text(&req)?;
                if !ctx.limits.admit_request(device_id, now) {
                    tracing::warn!(
                        device = device_id,
                        "child requests over budget; the device keeps this one and sends it later"
                    );
                    continue;
                }
                let new = ctx
                    .store
                    .record_child_request(device_id, &req.id, &text, req.made_at_unix_ms, now)
                    .await?;
                tracing::info!(device = device_id, request = %clip(&req.id, 64), new, "child request received");
                // Confirmed only once stored, so the device keeps it until then.
                send(ControllerMessage {
                    body: Some(Outbound::RequestReceived(wire::ChildRequestReceived {
                        id: req.id,
                    })),
                });
            }
            Some(Inbound::FilterListsHeld(_)) if lists_claimed => {
                tracing::debug!(
                    device = device_id,
                    "a second list of held filter lists on one stream ignored"
                );
            }
            Some(Inbound::FilterListsHeld(held)) => {
                lists_claimed = true;
                // WB4: what it holds, then everything it lacks, on a task of its own (lists
                // are big; this loop keeps reading the device meanwhile).
                ctx.filters
                    .set_held(device_id, super::filter::held_versions(&held.lists));
                if let Some(tx) = outbox.upgrade() {
                    let ctx = ctx.clone();
                    let device_id = device_id.to_string();
                    tokio::spawn(async move {
                        if let Err(e) = ctx.deliver_lists(&device_id, tx).await {
                            tracing::warn!(device = %device_id, error = %e.message(), "could not send filter lists");
                        }
                    });
                }
            }
            Some(Inbound::FilterListInstalled(done)) => {
                if done.error.is_empty() {
                    let current = ctx.current_lists().await?;
                    if let Some(list) = current
                        .iter()
                        .find(|l| l.category == done.category && l.version == done.version)
                    {
                        ctx.filters.installed(
                            device_id,
                            crate::domain::filter_lists::ListVersion {
                                category: list.category.clone(),
                                version: list.version,
                                sha256: list.sha256.clone(),
                            },
                        );
                    }
                    tracing::info!(device = device_id, category = %clip(&done.category, 64), version = done.version, "filter list installed");
                } else {
                    tracing::warn!(device = device_id, category = %clip(&done.category, 64), version = done.version, error = %clip(&done.error, 256), "device could not install a filter list");
                }
            }
            // A newer agent may send kinds this controller does not know: ignore them.
            None => {}
        }
    }
    Ok(())
}

/// Whether a policy version a device claims is one the controller issued. One it never issued
/// is recorded as tampering (once per version) and not stored: a stored `i64::MAX` once moved
/// the version counter past what SQLite holds and broke every later change for every device.
async fn believed(
    ctx: &Context,
    device_id: &str,
    claimed: u64,
    now: crate::domain::UnixMillis,
) -> Result<bool, Status> {
    match ctx
        .limits
        .check_version(ctx.store.as_ref(), claimed)
        .await?
    {
        Ok(_) => Ok(true),
        Err(never) => {
            tracing::warn!(
                device = device_id,
                claimed,
                highest = never.highest_issued,
                "device claimed a policy version never issued"
            );
            let record = ViolationRecord {
                id: format!("tampering:version:{claimed}"),
                kind: "tampering".into(),
                channel: "unspecified".into(),
                subject: "policy version".into(),
                detail: never.detail(),
                occurred_at: now,
            };
            let recorded = ctx
                .store
                .record_violations(device_id, std::slice::from_ref(&record), now)
                .await?;
            ctx.watch.violations(&recorded.new);
            Ok(false)
        }
    }
}

/// Keeps what a device said about its guards and, when they do not all hold, raises a
/// `tampering` violation (D1, D5) — once per device, state and day, so a device repeating
/// itself on every reconnect is one record. Returns whether the device enforces.
async fn guards_reported(
    ctx: &Context,
    device_id: &str,
    report: &wire::GuardReport,
    now: crate::domain::UnixMillis,
) -> Result<bool, Status> {
    use crate::domain::device_health;
    use sha2::{Digest, Sha256};
    let guards = convert::device_guards(report);
    let json = serde_json::to_string(&guards)
        .map_err(|e| Status::internal(format!("could not keep the guard report: {e}")))?;
    ctx.reports.guards(device_id, json, now);
    let holds = device_health::enforcement(Some(&guards)).holds();
    if let Some((subject, detail)) = device_health::violation(&guards) {
        let day = now / 86_400_000;
        let digest = Sha256::digest(format!("{device_id}\n{detail}\n{day}"));
        let id: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        let record = ViolationRecord {
            id: format!("guards-{id}"),
            kind: "tampering".into(),
            channel: "unspecified".into(),
            subject,
            detail: clip(&detail, 512),
            occurred_at: now,
        };
        let recorded = ctx
            .store
            .record_violations(device_id, &[record], now)
            .await?;
        tracing::warn!(device = device_id, %detail, "device is not enforcing");
        ctx.watch.violations(&recorded.new);
        ctx.watch.tasks(&recorded.tasks);
    }
    Ok(holds)
}

/// The certificate a device's stream was opened with, and where its renewal stands (D7).
struct Renewal {
    /// The verified certificate (DER) that opened this stream.
    leaf: Vec<u8>,
    not_after: crate::domain::UnixMillis,
    /// The device was told renewal is due on this stream.
    asked: bool,
    /// The device asked for a renewal on this stream (one per connection).
    tried: bool,
}

impl Renewal {
    /// The message telling the device to renew, once per stream, when its certificate is due.
    fn due(
        &mut self,
        now: crate::domain::UnixMillis,
        lifetime: device_cert::Lifetime,
    ) -> Option<ControllerMessage> {
        if self.asked || self.tried || !device_cert::renewal_due(self.not_after, now, lifetime) {
            return None;
        }
        self.asked = true;
        Some(ControllerMessage {
            body: Some(Outbound::RenewalDue(wire::CertificateRenewalDue {
                not_after_unix_ms: self.not_after,
            })),
        })
    }
}

/// Signs a renewal asked for on this device's own stream, records it (audited) and returns
/// the message for the device: the new certificate, or why not. The device is the one whose
/// verified certificate opened the stream; the request cannot name another.
async fn renew(
    ctx: &Context,
    device_id: &str,
    renewal: &mut Renewal,
    csr_pem: &str,
    now: crate::domain::UnixMillis,
) -> Result<ControllerMessage, Status> {
    let refused = |reason: String| {
        tracing::warn!(device = device_id, %reason, "certificate renewal refused");
        Ok(ControllerMessage {
            body: Some(Outbound::RenewalRefused(wire::CertificateRenewalRefused {
                reason,
            })),
        })
    };
    // One request per connection, and only when due (checked before any signing work), so a
    // device cannot keep the controller busy or fill the store with certificates.
    if renewal.tried {
        return refused(
            "this connection already asked for a renewal: reconnect and ask again when told to"
                .into(),
        );
    }
    renewal.tried = true;
    if !device_cert::renewal_due(renewal.not_after, now, ctx.pki.device_lifetime) {
        return refused(
            "this device's certificate is not due for renewal yet: the controller says when".into(),
        );
    }
    let signed = match ctx.pki.sign_renewal(csr_pem, device_id, &renewal.leaf, now) {
        Ok(signed) => signed,
        Err(e @ PkiError::WrongIdentity { .. }) => {
            // A device asking to become another is tampering (D5): recorded once a day.
            let record = ViolationRecord {
                id: format!("tampering:renewal:{}", now / 86_400_000),
                kind: "tampering".into(),
                channel: "unspecified".into(),
                subject: "device certificate".into(),
                detail: "asked for a certificate naming another device; refused".into(),
                occurred_at: now,
            };
            let recorded = ctx
                .store
                .record_violations(device_id, std::slice::from_ref(&record), now)
                .await?;
            ctx.watch.violations(&recorded.new);
            return refused(e.to_string());
        }
        Err(e) => return refused(e.to_string()),
    };
    ctx.store
        .record_renewed_certificate(device_id, &signed.fingerprint, signed.not_after, now)
        .await?;
    tracing::info!(
        device = device_id,
        not_after = signed.not_after,
        "device certificate renewed"
    );
    Ok(ControllerMessage {
        body: Some(Outbound::RenewedCertificate(wire::RenewedCertificate {
            certificate_pem: signed.certificate_pem,
            not_after_unix_ms: signed.not_after,
        })),
    })
}

/// The words of a child's request as they are stored, or why the request is refused.
/// Control characters are dropped but for line breaks and tabs: the words are shown in staff
/// terminals, where an escape sequence could rewrite the screen (issue 13, fuzzing).
fn child_request_text(req: &wire::ChildRequest) -> Result<String, Status> {
    let text = req.text.trim();
    if !good_id(&req.id) || text.is_empty() {
        return Err(Status::invalid_argument(
            "a request needs an id of 1 to 64 characters and some words",
        ));
    }
    // Kept whole (up to a generous limit): these are the child's own words.
    Ok(text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .take(2000)
        .collect())
}

/// An id a device made up for a record: 1 to 64 bytes, no control characters (it is shown to
/// staff as it is). The agent's own are hex.
fn good_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && !id.chars().any(char::is_control)
}

/// The message that carries a staff answer to the child's device.
pub fn answer_message(r: crate::store::ChildRequestRecord) -> ControllerMessage {
    ControllerMessage {
        body: Some(Outbound::RequestAnswer(wire::ChildRequestAnswer {
            request_id: r.id,
            decision: r.decision.unwrap_or_default(),
            reason: r.reason.unwrap_or_default(),
            answered_by: r.answered_by.unwrap_or_default(),
            answered_at_unix_ms: r.answered_at.unwrap_or(0),
        })),
    }
}

/// A stream that tells a removed device to retire, then ends with the reason it is refused.
fn retired_stream(reason: &str) -> ReceiverStream<Result<Outgoing, Status>> {
    let (tx, rx) = mpsc::channel(2);
    crate::registry::send_retirement(&tx, reason);
    ReceiverStream::new(rx)
}

/// Checks a batch from a device. The device is trusted to say what it blocked, not to send
/// arbitrarily large or malformed records.
fn violation_records(
    violations: &[wire::Violation],
    now: crate::domain::UnixMillis,
) -> Result<Vec<ViolationRecord>, Status> {
    if violations.len() > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "a violation batch holds at most {MAX_BATCH} entries; send the rest in another batch"
        )));
    }
    violations
        .iter()
        .map(|v| {
            if !good_id(&v.id) {
                return Err(Status::invalid_argument(
                    "every violation needs an id of 1 to 64 characters, none of them control characters",
                ));
            }
            let kind = wire::ViolationKind::try_from(v.kind)
                .unwrap_or(wire::ViolationKind::Unspecified)
                .as_str_name()
                .trim_start_matches("VIOLATION_KIND_")
                .to_ascii_lowercase();
            let channel = wire::Channel::try_from(v.channel)
                .unwrap_or(wire::Channel::Unspecified)
                .as_str_name()
                .trim_start_matches("CHANNEL_")
                .to_ascii_lowercase();
            Ok(ViolationRecord {
                id: v.id.clone(),
                kind,
                channel,
                subject: clip(&v.subject, 256),
                detail: clip(&v.detail, 512),
                occurred_at: crate::domain::violations::occurred_at(v.occurred_at_unix_ms, now),
            })
        })
        .collect()
}

#[cfg(test)]
mod renewal_tests {
    use super::*;

    #[test]
    fn d7_a_stream_is_told_to_renew_once_and_only_when_due() {
        let life = device_cert::Lifetime::seconds(30);
        let mut r = Renewal {
            leaf: Vec::new(),
            not_after: 30_000,
            asked: false,
            tried: false,
        };
        assert!(r.due(0, life).is_none(), "fresh: not due");
        let told = r.due(21_000, life).expect("a third left: due");
        assert!(matches!(
            told.body,
            Some(Outbound::RenewalDue(wire::CertificateRenewalDue {
                not_after_unix_ms: 30_000
            }))
        ));
        assert!(r.due(22_000, life).is_none(), "told once per stream");
        // A device that asked by itself is not told again either.
        let mut asked = Renewal {
            leaf: Vec::new(),
            not_after: 30_000,
            asked: false,
            tried: true,
        };
        assert!(asked.due(25_000, life).is_none());
    }
}

#[cfg(test)]
#[path = "agent_fuzz.rs"]
mod fuzz;
