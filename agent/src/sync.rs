//! The one long-lived `Sync` stream between a device and its controller.
//!
//! [`run`] applies a policy before touching the network (so a device is never unprotected
//! while the controller is out of reach), then keeps one mTLS stream open: `Hello` first,
//! heartbeats with inventory, policies applied and acknowledged as they come, commands
//! answered. When the stream drops it reconnects with jittered exponential backoff, forever,
//! until shut down or retired. The backoff starts again from the beginning only after a
//! healthy session: one on which the controller sent at least one message, or that stayed up
//! for 30 s. A stream the controller opens and then ends at once (say, because its database is
//! failing) does not count, so devices back off instead of reconnecting every second. A device
//! the controller refuses (revoked) retries near the cap.
//!
//! Problems retrying cannot fix (a bad address or unusable certificates) are logged once, and
//! the policy already applied stays enforced until shutdown: a device never ends up
//! unprotected because it cannot sync.
//!
//! On `Retire` the device applies the safe default, records the retirement in its state
//! folder and stops syncing, but [`run`] keeps the enforcer alive until shutdown: enforcement
//! must outlive syncing. A restarted agent sees the record and does not connect again.
//!
//! Children's requests (Regulation 7) wait in the state folder's spool (see
//! [`crate::requests`]): every request not yet confirmed is sent right after `Hello` on each
//! connection, and the outbox is checked every [`SyncConfig::request_poll`] for new ones. Only
//! `ChildRequestReceived` takes a request out of the outbox, so a request is never lost: until
//! then it is resent on every reconnect (the controller de-duplicates by id). Answers are
//! stored for `status` and told to the child through the enforcer.
//!
//! Blocked attempts wait in the durable violations journal (see [`crate::journal`]): on each
//! stream, right after `Hello` and the requests, every unacknowledged record is sent in
//! `ViolationBatch`es of at most [`VIOLATION_BATCH`], and new ones as soon as they are
//! written (the journal wakes the loop). Only `ViolationAck` removes records from the journal;
//! until then they are resent on every reconnect, and the controller stores each id once.
//!
//! Everything a session needs comes in [`SyncConfig`] (identity PEMs in memory, persistence
//! optional), so a benchmark can run a thousand simulated devices in one process.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use haven_proto::agent::v1::agent_message::Body as Up;
use haven_proto::agent::v1::agent_service_client::AgentServiceClient;
use haven_proto::agent::v1::command::Kind as CommandKind;
use haven_proto::agent::v1::controller_message::Body as Down;
use haven_proto::agent::v1::{
    AgentMessage, CertificateRenewal, ChildRequestAnswer, Command, CommandResult,
    ControllerMessage, DevicePolicy, FilterListsHeld, Heartbeat, Hello, Inventory, PolicyApplied,
    ViolationBatch,
};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::Code;
use tonic::transport::Endpoint;
use tracing::{debug, error, info, warn};

use crate::core::{self, Decision, PolicyState};
use crate::enforcer::Enforcer;
use crate::identity::DeviceIdentity;
use crate::inventory::{self, AGENT_VERSION};
use crate::journal::Journal;
use crate::net::{self, EndpointError};
use crate::requests::{self, RequestSpool, StoredAnswer};
use crate::state::StateDir;

/// A session that stayed up this long counts as healthy, and resets the backoff (so does one
/// on which the controller sent anything; see [`session_was_healthy`]).
pub const HEALTHY_SESSION: Duration = Duration::from_secs(30);
/// Never wait less than this between attempts, whatever the jitter drew.
const MIN_DELAY: Duration = Duration::from_millis(50);
/// The window the first reconnect after a healthy session is drawn from (at most the cap).
/// Such a session most often ends because the controller restarted, which every device sees
/// in the same instant: drawn over 10 s, 10,000 devices come back at about 1,000 a second,
/// which one controller's TLS handshakes keep up with on two cores, rather than all within
/// the first second (issue 14). The device enforces its cached policy meanwhile, and catches
/// up on reconnect, so the wait costs no protection.
pub const RECONNECT_SPREAD: Duration = Duration::from_secs(10);
/// How long the controller may take to accept a new stream.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Outgoing messages waiting to be sent; heartbeats are dropped rather than queued past this.
const OUTBOX: usize = 32;
/// Most violations in one batch: the controller accepts up to 500 (`MAX_BATCH`).
pub const VIOLATION_BATCH: usize = 500;

/// Where inventory for `Hello` and heartbeats comes from.
#[derive(Debug, Clone)]
pub enum InventorySource {
    /// Collect afresh each time, measuring storage on the disk holding this path.
    Live { storage_path: PathBuf },
    /// Always send this one (benchmarks: a thousand agents need not read `/sys`).
    Fixed(Inventory),
}

/// Something that happened in the sync loop, for callers that want to watch (benchmarks,
/// tests). Sending never blocks the loop; a dropped receiver is fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// The controller accepted the stream (our `Hello` is its first message).
    Connected,
    /// A policy is now in force (after it was applied and, if configured, saved).
    PolicyApplied { version: u64 },
    /// The stream ended; the loop will reconnect after `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
    /// Staff removed the device; no more reconnecting.
    Retired,
    /// The controller confirmed it has the child's request `id`.
    RequestReceived { id: String },
    /// Staff answered the child's request.
    RequestAnswered {
        request_id: String,
        decision: String,
    },
    /// The controller stored violations; `removed` records left the journal.
    ViolationsAcknowledged { removed: usize },
    /// The certificate was renewed (new key made here) and kept; the loop reconnects with it.
    CertificateRenewed { not_after_unix_ms: i64 },
    /// A category list from the controller was installed (WB4).
    FilterListInstalled { category: String, version: u64 },
}

/// How a call to [`run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The shutdown future completed.
    Shutdown,
    /// The device was retired; the safe default stayed enforced until shutdown.
    Retired,
}

/// Problems that retrying cannot fix. [`run`] reports them only after shutdown, having kept
/// the policy in force until then.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the controller address {0:?} is not valid: use https://host:port")]
    BadAddress(String),
    #[error(
        "this device's certificate or key cannot be used ({0}); enroll the device again with \
         `haven-agent enroll --force`"
    )]
    BadIdentity(String),
}

/// Everything one sync loop needs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub identity: DeviceIdentity,
    /// Where to cache policies and record retirement; `None` keeps everything in memory.
    pub state: Option<StateDir>,
    /// Time between heartbeats.
    pub heartbeat: Duration,
    /// First reconnect delay ceiling; doubles per failure.
    pub initial_backoff: Duration,
    /// Largest reconnect delay; also used for a device the controller refuses.
    pub max_backoff: Duration,
    /// HTTP/2 pings, so a controller that vanished without closing is noticed.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub inventory: InventorySource,
    /// The policy already in force. `None`: [`run`] loads the cached one from `state` (or
    /// takes the safe default) and applies it before connecting.
    pub initial_policy: Option<DevicePolicy>,
    pub events: Option<mpsc::UnboundedSender<SyncEvent>>,
    /// How often a connected agent looks in the request outbox for new requests (a read of
    /// one small folder; there is no file watcher to keep the agent dependency-free). Unused
    /// without `state`: an agent kept in memory has no requests.
    pub request_poll: Duration,
    /// The violations journal whose records are sent to the controller; `None` sends none.
    pub journal: Option<Arc<Journal>>,
    /// How often a connected agent retries sending violations the outbound queue had no room
    /// for (new ones are sent at once, without waiting for this).
    pub violation_retry: Duration,
    /// Where the category lists the controller sends are kept (WB4); `None` asks for none.
    pub lists: Option<Arc<crate::web::ReceivedLists>>,
}

impl SyncConfig {
    /// Defaults: heartbeat 60 s, backoff 1 s doubling to 60 s, keepalive 20 s / 10 s,
    /// inventory measured on `/`, nothing persisted.
    pub fn new(identity: DeviceIdentity) -> Self {
        Self {
            identity,
            state: None,
            heartbeat: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            inventory: InventorySource::Live {
                storage_path: PathBuf::from("/"),
            },
            initial_policy: None,
            events: None,
            request_poll: Duration::from_secs(2),
            journal: None,
            violation_retry: Duration::from_secs(1),
            lists: None,
        }
    }
}

/// Exponential backoff with full jitter: each delay is drawn uniformly from
/// `[0, min(cap, initial * 2^failures)]`, so a thousand devices that lost the same controller
/// do not all come back in the same second.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial: initial.max(MIN_DELAY),
            cap: cap.max(MIN_DELAY),
            failures: 0,
        }
    }

    /// The upper bound of the next delay.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// The next delay, using a random draw.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }

    /// The next delay for a draw `unit` in `[0, 1)`; separate so tests are deterministic.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(unit.clamp(0.0, 1.0)).max(MIN_DELAY)
    }

    /// A delay near the cap, for failures that retrying soon cannot fix (a revoked device):
    /// drawn from `[cap/2, cap]` so such devices still spread out.
    pub fn at_cap_with(&mut self, unit: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let half = self.cap / 2;
        (half + half.mul_f64(unit.clamp(0.0, 1.0))).max(MIN_DELAY)
    }

    /// The first delay after a healthy session ended, for a draw `unit` in `[0, 1)`: spread
    /// over [`RECONNECT_SPREAD`] (at most the cap); later failures back off from the initial
    /// delay as usual.
    pub fn after_session_with(&mut self, unit: f64) -> Duration {
        self.failures = 0;
        RECONNECT_SPREAD
            .min(self.cap)
            .mul_f64(unit.clamp(0.0, 1.0))
            .max(MIN_DELAY)
    }

    /// After a healthy session, start again from the initial delay.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Whether a session that ended should reset the backoff: only if the controller actually
/// talked to us (sent at least one message) or the session lasted [`HEALTHY_SESSION`].
/// A stream that was accepted and then ended, cleanly or not, proves nothing: the controller
/// may be failing every stream right after accepting it.
pub fn session_was_healthy(lasted: Duration, messages_received: u64) -> bool {
    messages_received > 0 || lasted >= HEALTHY_SESSION
}

/// Logs, in one line, why this device cannot sync, what stays enforced and what to do.
pub fn log_cannot_sync(problem: &dyn Display, in_force: &DevicePolicy) {
    let problem = problem.to_string();
    let enforced = if in_force.version == 0 {
        "the safe default".to_string()
    } else {
        format!("policy version {}", in_force.version)
    };
    let fix = if problem.contains("enroll --force") {
        ""
    } else {
        "; to fix it, enroll this device again with `haven-agent enroll --force`"
    };
    error!(
        "cannot sync with the controller: {problem}{fix}; {enforced} stays enforced until the \
         agent is stopped"
    );
}

/// Loads and applies the policy to enforce before any network: the cached one if there is
/// one, else the safe default. Never fails: whatever goes wrong, the safe default is applied.
pub fn apply_startup_policy(state: Option<&StateDir>, enforcer: &mut dyn Enforcer) -> DevicePolicy {
    let cached = match state.map(StateDir::load_policy) {
        Some(Ok(Some(policy))) => Some(policy),
        Some(Ok(None)) | None => None,
        Some(Err(e)) => {
            warn!("{e}; applying the safe default until the controller sends a policy");
            None
        }
    };
    match cached {
        Some(policy) => {
            info!("applied cached policy version {}", policy.version);
            apply_or_fall_back(enforcer, policy).0
        }
        None => {
            info!("no policy received yet: applying the safe default");
            apply_or_fall_back(enforcer, core::safe_default()).0
        }
    }
}

/// Applies `policy`; if the enforcer fails, applies the safe default (keeping protected
/// contacts) instead. Returns what is in force and the error, if any.
fn apply_or_fall_back(
    enforcer: &mut dyn Enforcer,
    policy: DevicePolicy,
) -> (DevicePolicy, Option<String>) {
    match enforcer.apply(&policy) {
        Ok(()) => (policy, None),
        Err(e) => {
            let error = e.to_string();
            error!(
                "{error}; enforcing the safe default instead of policy version {}",
                policy.version
            );
            let fallback = core::safe_default_keeping_protected(&policy);
            if let Err(e) = enforcer.apply(&fallback) {
                error!("{e}; the safe default could not be fully enforced either");
            }
            (fallback, Some(error))
        }
    }
}

/// Runs the sync loop until `shutdown` completes. See [`SyncClient`].
pub async fn run(
    config: SyncConfig,
    enforcer: Box<dyn Enforcer>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunOutcome, SyncError> {
    SyncClient::new(config, enforcer).run(shutdown).await
}

/// One device's sync loop: the policy in force, its enforcer and its reconnect state.
pub struct SyncClient {
    config: SyncConfig,
    enforcer: Box<dyn Enforcer>,
    policy: Option<PolicyState>,
    backoff: Backoff,
    /// The new key made for a renewal asked for on this stream, until its certificate comes.
    renewal_key: Option<String>,
    /// Which of several controller addresses to try (see [`net::controller_urls`]).
    replica: usize,
}

/// Why a stream is left on purpose.
enum Stop {
    Retired,
    /// A renewed certificate was kept: reconnect with it.
    Renewed,
}

/// The requests offered to the controller on the current stream, so each is sent once per
/// stream (again only after a reconnect).
#[derive(Default)]
struct RequestOffer {
    offered: HashSet<String>,
    /// Whether an unreadable outbox was already reported on this stream (it is checked every
    /// couple of seconds; one warning is enough).
    warned: bool,
}

/// How one session ended.
enum SessionEnd {
    Retired,
    /// The certificate was renewed: reconnect at once with the new one.
    Renewed,
    Lost {
        reason: String,
        /// Refused by the controller (revoked or unknown device): retry at the cap.
        refused: bool,
        /// The controller sent something, or the session stayed up long enough: reset the
        /// backoff (see [`session_was_healthy`]).
        healthy: bool,
    },
}

impl SyncClient {
    pub fn new(config: SyncConfig, enforcer: Box<dyn Enforcer>) -> Self {
        let backoff = Backoff::new(config.initial_backoff, config.max_backoff);
        Self {
            config,
            enforcer,
            policy: None,
            backoff,
            renewal_key: None,
            replica: 0,
        }
    }

    /// The controller address to try now: with several replicas, the next one after each
    /// lost connection.
    fn controller_url(&self) -> String {
        let urls = net::controller_urls(&self.config.identity.controller_url);
        match urls.len() {
            0 => self.config.identity.controller_url.clone(),
            n => urls[self.replica % n].clone(),
        }
    }

    /// The policy in force, once [`SyncClient::run`] has applied one.
    pub fn current_policy(&self) -> Option<&DevicePolicy> {
        self.policy.as_ref().map(PolicyState::current)
    }

    /// Applies the startup policy, then syncs until `shutdown` completes or the device is
    /// retired. After retirement it keeps the enforcer (and so the safe default) alive until
    /// `shutdown`, because enforcement must outlive syncing. A [`SyncError`] is logged at
    /// once, but returned only after `shutdown`, the enforcer staying alive until then.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunOutcome, SyncError> {
        tokio::pin!(shutdown);
        let initial = match self.config.initial_policy.take() {
            Some(policy) => policy,
            None => apply_startup_policy(self.config.state.as_ref(), self.enforcer.as_mut()),
        };
        self.policy = Some(PolicyState::new(initial));
        if let Some(expired) = self.expired() {
            // Said once, plainly; the loop still tries, in case this device's clock is wrong.
            error!("{expired}");
        }
        let mut endpoint = match self.endpoint() {
            Ok(endpoint) => endpoint,
            Err(e) => {
                log_cannot_sync(&e, self.state().current());
                shutdown.await;
                return Err(e);
            }
        };
        loop {
            let end = tokio::select! {
                () = &mut shutdown => return Ok(RunOutcome::Shutdown),
                end = self.session(&endpoint) => end,
            };
            let (reason, refused, healthy) = match end {
                SessionEnd::Retired => {
                    self.emit(SyncEvent::Retired);
                    shutdown.await;
                    return Ok(RunOutcome::Retired);
                }
                SessionEnd::Renewed => {
                    match self.endpoint() {
                        Ok(renewed) => endpoint = renewed,
                        // Cannot happen for PEMs that were just checked; the old certificate
                        // works until the new one is first used, so keep going with it.
                        Err(e) => warn!("{e}; reconnecting with the previous certificate"),
                    }
                    self.backoff.reset();
                    continue;
                }
                SessionEnd::Lost {
                    reason,
                    refused,
                    healthy,
                } => match self.expired() {
                    // Offline past expiry: no TLS will accept this certificate again (D7).
                    Some(expired) => (expired, true, false),
                    None => (reason, refused, healthy),
                },
            };
            if healthy {
                self.backoff.reset();
            }
            // Another replica may be up while this one is not.
            if net::controller_urls(&self.config.identity.controller_url).len() > 1 {
                self.replica += 1;
                match self.endpoint() {
                    Ok(next) => endpoint = next,
                    Err(e) => warn!("{e}; trying the same controller again"),
                }
            }
            let delay = if refused {
                self.backoff.at_cap_with(rand::random::<f64>())
            } else if healthy {
                self.backoff.after_session_with(rand::random::<f64>())
            } else {
                self.backoff.next_delay()
            };
            warn!("{reason}; trying again in {:.1} s", delay.as_secs_f64());
            self.emit(SyncEvent::Disconnected {
                reason,
                retry_in: delay,
            });
            tokio::select! {
                () = &mut shutdown => return Ok(RunOutcome::Shutdown),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn endpoint(&self) -> Result<Endpoint, SyncError> {
        let id = &self.config.identity;
        let tls = net::tls_config(&id.ca_pem, Some((&id.cert_pem, &id.key_pem)));
        let endpoint = net::endpoint(&self.controller_url(), tls).map_err(|e| match e {
            EndpointError::BadAddress(url) => SyncError::BadAddress(url),
            EndpointError::Tls(reason) => SyncError::BadIdentity(reason),
        })?;
        Ok(endpoint
            .http2_keep_alive_interval(self.config.keepalive_interval)
            .keep_alive_timeout(self.config.keepalive_timeout)
            // Ping even when idle: the stream is idle most of the time, and that is exactly
            // when a silently vanished controller must be noticed.
            .keep_alive_while_idle(true)
            .tcp_keepalive(Some(Duration::from_secs(60))))
    }

    /// The plain "expired: ask staff for a new code" message once this device's certificate
    /// has expired.
    fn expired(&self) -> Option<String> {
        crate::identity::expired_at(
            &self.config.identity.cert_pem,
            jiff::Timestamp::now().as_millisecond(),
        )
    }

    fn state(&self) -> &PolicyState {
        self.policy
            .as_ref()
            .expect("policy is set before any session")
    }

    fn emit(&self, event: SyncEvent) {
        if let Some(events) = &self.config.events {
            let _ = events.send(event);
        }
    }

    /// The enforcer's guards as the controller reads them (D1, D5).
    fn guard_report(&self) -> haven_proto::agent::v1::GuardReport {
        guard_report(self.enforcer.as_ref())
    }

    fn inventory(&self) -> Inventory {
        match &self.config.inventory {
            InventorySource::Live { storage_path } => inventory::collect_for(storage_path),
            InventorySource::Fixed(inv) => inv.clone(),
        }
    }

    /// One connection and stream, from connecting to the first error.
    async fn session(&mut self, endpoint: &Endpoint) -> SessionEnd {
        let url = self.controller_url();
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                return SessionEnd::Lost {
                    reason: format!(
                        "could not reach the controller at {url}: {}",
                        net::error_chain(&e)
                    ),
                    refused: false,
                    healthy: false,
                };
            }
        };
        let started = Instant::now();
        let (tx, rx) = mpsc::channel::<AgentMessage>(OUTBOX);
        // How the guards stand goes with the hello, and again whenever it changes (D1, D5).
        let hello = Up::Hello(Hello {
            applied_policy_version: self.state().applied_version(),
            agent_version: AGENT_VERSION.to_string(),
            inventory: Some(self.inventory()),
            guards: Some(self.guard_report()),
        });
        // The outbox is empty, so this cannot fail or wait; the hello is the first message.
        let _ = tx.try_send(AgentMessage { body: Some(hello) });
        // Then which category lists it holds, so only what it lacks is sent (WB4).
        if let Some(lists) = &self.config.lists {
            let _ = tx.try_send(AgentMessage {
                body: Some(Up::FilterListsHeld(FilterListsHeld {
                    lists: lists.held_message(),
                })),
            });
        }
        // A controller that takes the connection but never answers must not hold the device
        // forever: keepalive pings only notice a dead connection, not a stuck server.
        let opened = tokio::time::timeout(
            OPEN_TIMEOUT,
            AgentServiceClient::new(channel).sync(ReceiverStream::new(rx)),
        )
        .await;
        let inbound = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return lost(&url, &status, false, false),
            Err(_) => {
                return SessionEnd::Lost {
                    reason: format!("the controller at {url} did not answer"),
                    refused: false,
                    healthy: false,
                };
            }
        };
        info!("connected to the controller at {url}");
        self.emit(SyncEvent::Connected);
        self.drive(&url, inbound, tx, started).await
    }

    /// Serves an open stream until it ends: applies what the controller sends, answers it and
    /// sends heartbeats. Messages are handled in the order they arrive, so a `Retire` sent
    /// just before the controller ends the stream (with an error or not) is carried out.
    async fn drive<S>(
        &mut self,
        url: &str,
        mut inbound: S,
        tx: mpsc::Sender<AgentMessage>,
        started: Instant,
    ) -> SessionEnd
    where
        S: Stream<Item = Result<ControllerMessage, tonic::Status>> + Unpin,
    {
        let mut received: u64 = 0;
        // What the hello said about the guards; a heartbeat repeats it only when it changed,
        // and the guards are looked at every few seconds for that.
        let mut guards_sent = self.guard_report();
        let mut guard_check = tokio::time::interval_at(Instant::now() + GUARD_CHECK, GUARD_CHECK);
        guard_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let period = self.config.heartbeat.max(Duration::from_secs(1));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let closed = |received: u64| SessionEnd::Lost {
            reason: format!("the connection to the controller at {url} closed"),
            refused: false,
            healthy: session_was_healthy(started.elapsed(), received),
        };
        // Requests go right after the Hello (already queued), before anything else.
        let has_spool = self.config.state.is_some();
        let poll = self.config.request_poll.max(Duration::from_millis(100));
        let mut request_check = tokio::time::interval_at(Instant::now() + poll, poll);
        request_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut offer = RequestOffer::default();
        if !self.offer_requests(&mut offer, &tx) {
            return closed(received);
        }
        // Then every violation not yet acknowledged, oldest first.
        let journal = self.config.journal.clone();
        let mut violations_sent: Option<u64> = None;
        if !offer_violations(journal.as_deref(), &mut violations_sent, &tx) {
            return closed(received);
        }
        let retry = self.config.violation_retry.max(Duration::from_millis(100));
        let mut violation_retry = tokio::time::interval_at(Instant::now() + retry, retry);
        violation_retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let written = async {
                match journal.as_deref() {
                    Some(j) => j.written().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = inbound.next() => match message {
                    Some(Ok(message)) => {
                        received += 1;
                        let stop = match self.handle(message, &tx).await {
                            std::ops::ControlFlow::Continue(()) => None,
                            std::ops::ControlFlow::Break(stop) => Some(stop),
                        };
                        if let Some(Stop::Renewed) = stop {
                            // Hang up and come back with the new certificate; the controller
                            // keeps the old one valid until then.
                            return SessionEnd::Renewed;
                        }
                        if let Some(Stop::Retired) = stop {
                            // Let the acknowledgement go out before hanging up: end our side of
                            // the stream and give the controller a moment to close its own.
                            drop(tx);
                            let _ = tokio::time::timeout(
                                Duration::from_secs(2),
                                async { while let Some(Ok(_)) = inbound.next().await {} },
                            )
                            .await;
                            return SessionEnd::Retired;
                        }
                    }
                    None => {
                        return SessionEnd::Lost {
                            reason: format!("the controller at {url} closed the connection"),
                            refused: false,
                            healthy: session_was_healthy(started.elapsed(), received),
                        };
                    }
                    Some(Err(status)) => {
                        let healthy = session_was_healthy(started.elapsed(), received);
                        return lost(url, &status, true, healthy);
                    }
                },
                _ = heartbeat.tick() => {
                    let guards = self.guard_report();
                    let changed = (guards != guards_sent).then(|| guards.clone());
                    let beat = Up::Heartbeat(Heartbeat {
                        inventory: Some(self.inventory()),
                        guards: changed,
                    });
                    guards_sent = guards;
                    // A full outbox means the controller is not reading: skip this beat rather
                    // than stall the loop; the next one carries fresher inventory anyway.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        tx.try_send(AgentMessage { body: Some(beat) })
                    {
                        return closed(received);
                    }
                    debug!("heartbeat sent");
                }
                _ = guard_check.tick() => {
                    // A guard that fails (or recovers) is told at once, not at the next beat.
                    let guards = self.guard_report();
                    if guards != guards_sent {
                        let beat = Up::Heartbeat(Heartbeat {
                            inventory: None,
                            guards: Some(guards.clone()),
                        });
                        if let Err(mpsc::error::TrySendError::Closed(_)) =
                            tx.try_send(AgentMessage { body: Some(beat) })
                        {
                            return closed(received);
                        }
                        guards_sent = guards;
                    }
                }
                _ = request_check.tick(), if has_spool => {
                    if !self.offer_requests(&mut offer, &tx) {
                        return closed(received);
                    }
                }
                () = written => {
                    if !offer_violations(journal.as_deref(), &mut violations_sent, &tx) {
                        return closed(received);
                    }
                }
                _ = violation_retry.tick(), if journal.is_some() => {
                    if !offer_violations(journal.as_deref(), &mut violations_sent, &tx) {
                        return closed(received);
                    }
                }
            }
        }
    }

    /// Handles one controller message. `Break` means the device was retired, or its
    /// certificate renewed.
    async fn handle(
        &mut self,
        message: ControllerMessage,
        tx: &mpsc::Sender<AgentMessage>,
    ) -> std::ops::ControlFlow<Stop> {
        use std::ops::ControlFlow;
        let reply = match message.body {
            Some(Down::Policy(policy)) => self.on_policy(*policy).map(Up::PolicyApplied),
            Some(Down::Command(command)) => {
                let (result, retire) = self.on_command(command, tx).await;
                let _ = tx
                    .send(AgentMessage {
                        body: Some(Up::CommandResult(result)),
                    })
                    .await;
                if retire {
                    return ControlFlow::Break(Stop::Retired);
                }
                None
            }
            Some(Down::RenewalDue(_)) => self.on_renewal_due().map(Up::RenewCertificate),
            Some(Down::RenewedCertificate(renewed)) => {
                if self.on_renewed(&renewed.certificate_pem) {
                    return ControlFlow::Break(Stop::Renewed);
                }
                None
            }
            Some(Down::RenewalRefused(refused)) => {
                // The certificate in use keeps working until it expires; the controller asks
                // again on the next connection.
                self.renewal_key = None;
                warn!(
                    "the controller refused to renew this device's certificate: {}",
                    refused.reason
                );
                None
            }
            Some(Down::RequestReceived(received)) => {
                self.on_request_received(&received.id);
                None
            }
            Some(Down::RequestAnswer(answer)) => {
                self.on_request_answer(&answer);
                None
            }
            Some(Down::ViolationAck(ack)) => {
                if let Some(journal) = &self.config.journal {
                    let removed = journal.acknowledge(&ack.ids);
                    debug!("the controller stored {removed} blocked attempt(s)");
                    self.emit(SyncEvent::ViolationsAcknowledged { removed });
                }
                None
            }
            Some(Down::FilterListIndex(index)) => {
                if let Some(lists) = &self.config.lists
                    && lists.on_index(&index)
                {
                    self.enforcer.lists_changed();
                }
                None
            }
            Some(Down::FilterListChunk(chunk)) => match &self.config.lists {
                Some(lists) => {
                    let lists = lists.clone();
                    // Checking and loading a big list takes a moment: off the async threads.
                    let done = tokio::task::spawn_blocking(move || lists.on_chunk(chunk))
                        .await
                        .ok()
                        .flatten();
                    if let Some(done) = &done
                        && done.error.is_empty()
                    {
                        self.enforcer.lists_changed();
                        self.emit(SyncEvent::FilterListInstalled {
                            category: done.category.clone(),
                            version: done.version,
                        });
                    }
                    done.map(Up::FilterListInstalled)
                }
                None => None,
            },
            // A message kind added after this agent was built: ignore it (forward compatible).
            None => {
                debug!("ignoring an unknown message from the controller");
                None
            }
        };
        if let Some(body) = reply {
            let _ = tx.send(AgentMessage { body: Some(body) }).await;
        }
        ControlFlow::Continue(())
    }

    /// Makes a new key here (it never leaves the device) and the renewal request for it,
    /// naming this device (D7).
    fn on_renewal_due(&mut self) -> Option<CertificateRenewal> {
        match crate::enroll::new_key_and_csr_for(&self.config.identity.device_id) {
            Ok((key_pem, csr_pem)) => {
                info!("this device's certificate is due for renewal: asking with a new key");
                self.renewal_key = Some(key_pem);
                Some(CertificateRenewal { csr_pem })
            }
            Err(e) => {
                warn!("{e}; the certificate will be renewed on a later connection");
                None
            }
        }
    }

    /// Keeps a renewed certificate for the key made for it, crash-safe, and switches to it.
    /// Returns whether the stream should be left to reconnect with it. Nothing changes unless
    /// the pair is safely on disk: the controller stops accepting the old certificate once the
    /// new one is used, so a restart must find the new one.
    fn on_renewed(&mut self, cert_pem: &str) -> bool {
        let Some(key_pem) = self.renewal_key.take() else {
            warn!("the controller sent a certificate this device did not ask for; ignored");
            return false;
        };
        if !crate::identity::certificate_matches_key(cert_pem, &key_pem) {
            warn!("the renewed certificate is not for the key this device made; ignored");
            return false;
        }
        if let Some(state) = &self.config.state
            && let Err(e) = state.save_renewed_identity(cert_pem, &key_pem)
        {
            error!(
                "{e}; keeping the current certificate, which works until it expires; renewal \
                 will be asked again on the next connection"
            );
            return false;
        }
        let not_after = crate::identity::certificate_not_after(cert_pem).unwrap_or(0);
        self.config.identity.cert_pem = cert_pem.to_string();
        self.config.identity.key_pem = key_pem;
        info!(
            "renewed this device's certificate (valid until {}); reconnecting with it",
            crate::identity::when(not_after)
        );
        self.emit(SyncEvent::CertificateRenewed {
            not_after_unix_ms: not_after,
        });
        true
    }

    fn spool(&self) -> Option<RequestSpool> {
        self.config.state.as_ref().map(RequestSpool::new)
    }

    /// Sends every request in the outbox not yet offered on this stream, oldest first.
    /// Returns `false` when the stream has closed. A full outbound queue just leaves the rest
    /// for the next check; nothing is dropped, because the files stay in the outbox.
    fn offer_requests(&self, offer: &mut RequestOffer, tx: &mpsc::Sender<AgentMessage>) -> bool {
        let Some(spool) = self.spool() else {
            return true;
        };
        let ids = match spool.outbox_ids() {
            Ok(ids) => ids,
            Err(e) => {
                if !offer.warned {
                    warn!("{e}; the child's requests will be sent once it can be read");
                    offer.warned = true;
                }
                return true;
            }
        };
        let unsent: Vec<String> = ids
            .into_iter()
            .filter(|id| !offer.offered.contains(id))
            .collect();
        let mut fresh = Vec::new();
        for id in unsent {
            match spool.read_outbox(&id) {
                Ok(Some(request)) => fresh.push(request),
                // Confirmed (moved to sent/) between listing and reading.
                Ok(None) => {}
                Err(e) => {
                    // Left in place for someone to look at; reported once per stream.
                    warn!("{e}; this request cannot be sent");
                    offer.offered.insert(id);
                }
            }
        }
        fresh.sort_by(|a, b| (a.made_at_unix_ms, &a.id).cmp(&(b.made_at_unix_ms, &b.id)));
        for request in fresh {
            let message = AgentMessage {
                body: Some(Up::ChildRequest(request.to_message())),
            };
            match tx.try_send(message) {
                Ok(()) => {
                    debug!("sent the child's request {}", request.id);
                    offer.offered.insert(request.id);
                }
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    fn on_request_received(&mut self, id: &str) {
        if let Some(spool) = self.spool() {
            match spool.mark_received(id) {
                Ok(true) => info!("the staff's system has received the child's request {id}"),
                Ok(false) => debug!("request {id} was already confirmed"),
                // It stays in the outbox and is resent on the next reconnect; harmless.
                Err(e) => warn!("{e}; request {id} will be sent again"),
            }
        }
        self.emit(SyncEvent::RequestReceived { id: id.to_string() });
    }

    fn on_request_answer(&mut self, answer: &ChildRequestAnswer) {
        let id = &answer.request_id;
        let stored = StoredAnswer::from(answer);
        if let Some(spool) = self.spool()
            && let Err(e) = spool.save_answer(&stored)
        {
            // Still told to the child now; only `status` will not show it.
            warn!("{e}; the answer to request {id} could not be saved");
        }
        info!(
            "received the staff's answer to your request {id}: {}",
            answer.decision
        );
        let words = requests::describe_answer(&stored);
        self.enforcer.tell_child(&format!(
            "there is an answer to your request {id}: {words} (see `haven-agent status`)"
        ));
        self.emit(SyncEvent::RequestAnswered {
            request_id: id.clone(),
            decision: answer.decision.clone(),
        });
    }

    /// Applies a new policy if it is newer than the one in force; the answer to send back.
    fn on_policy(&mut self, policy: DevicePolicy) -> Option<PolicyApplied> {
        let version = policy.version;
        match self.state().consider(&policy) {
            Decision::Older { applied } => {
                info!("ignoring policy version {version}: version {applied} is already in force");
                None
            }
            Decision::AlreadyApplied => {
                debug!("policy version {version} is already in force");
                Some(PolicyApplied {
                    version,
                    error: String::new(),
                })
            }
            Decision::Apply => {
                let (in_force, error) = apply_or_fall_back(self.enforcer.as_mut(), policy);
                if let Some(state) = &self.config.state
                    && let Err(e) = state.save_policy(&in_force)
                {
                    // The policy is enforced now; only surviving a reboot is at risk.
                    warn!("{e}; the policy is enforced but will not survive a restart");
                }
                if error.is_none() {
                    info!("applied policy version {version}");
                    self.emit(SyncEvent::PolicyApplied { version });
                }
                if let Some(state) = self.policy.as_mut() {
                    state.set(in_force);
                }
                Some(PolicyApplied {
                    version,
                    error: error.unwrap_or_default(),
                })
            }
        }
    }

    /// Carries out a command; returns its result and whether the device was retired.
    async fn on_command(
        &mut self,
        command: Command,
        tx: &mpsc::Sender<AgentMessage>,
    ) -> (CommandResult, bool) {
        let ok = |id: String| CommandResult {
            command_id: id,
            ok: true,
            error: String::new(),
        };
        match command.kind {
            Some(CommandKind::RefreshInventory(_)) => {
                let beat = Up::Heartbeat(Heartbeat {
                    inventory: Some(self.inventory()),
                    guards: Some(self.guard_report()),
                });
                let _ = tx.send(AgentMessage { body: Some(beat) }).await;
                (ok(command.id), false)
            }
            Some(CommandKind::Retire(retire)) => {
                self.retire(&retire.reason);
                (ok(command.id), true)
            }
            None => (
                CommandResult {
                    command_id: command.id,
                    ok: false,
                    error: format!(
                        "this agent (version {AGENT_VERSION}) does not know this command; \
                         update the agent"
                    ),
                },
                false,
            ),
        }
    }

    fn retire(&mut self, reason: &str) {
        let because = if reason.is_empty() {
            String::new()
        } else {
            format!(" (reason given: {reason})")
        };
        warn!(
            "this device has been removed from Haven by staff{because}; enforcement continues \
             with the safe default and the agent will not connect again until it is re-enrolled"
        );
        let fallback = core::safe_default_keeping_protected(self.state().current());
        let (in_force, _) = apply_or_fall_back(self.enforcer.as_mut(), fallback);
        if let Some(state) = &self.config.state {
            let now = jiff::Timestamp::now().to_string();
            if let Err(e) = state.mark_retired(reason, &now, &in_force) {
                warn!("{e}; the device may try to sync again after a restart");
            }
        }
        if let Some(state) = self.policy.as_mut() {
            state.set(in_force);
        }
    }
}

/// Sends the journal's records written after `sent` (the last one sent on this stream), in
/// batches of at most [`VIOLATION_BATCH`]. Returns `false` when the stream has closed. A full
/// outbound queue leaves the rest for the next try; nothing is dropped, because the records
/// stay in the journal until acknowledged.
fn offer_violations(
    journal: Option<&Journal>,
    sent: &mut Option<u64>,
    tx: &mpsc::Sender<AgentMessage>,
) -> bool {
    let Some(journal) = journal else {
        return true;
    };
    loop {
        let (violations, last) = journal.unsent(*sent, VIOLATION_BATCH);
        if violations.is_empty() {
            return true;
        }
        let count = violations.len();
        let message = AgentMessage {
            body: Some(Up::Violations(ViolationBatch { violations })),
        };
        match tx.try_send(message) {
            Ok(()) => {
                debug!("sent {count} blocked attempt(s) to the controller");
                *sent = last;
            }
            Err(mpsc::error::TrySendError::Full(_)) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        }
    }
}

/// A session ended by a gRPC status, described for one log line. `accepted`: the stream was
/// open; `healthy`: see [`session_was_healthy`] (a refusal never is).
fn lost(url: &str, status: &tonic::Status, accepted: bool, healthy: bool) -> SessionEnd {
    let detail = net::describe_status(status);
    let refused = matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    );
    let reason = if refused {
        format!(
            "the controller at {url} refused this device ({detail}): it has been revoked or \
             removed; ask staff to enroll it again"
        )
    } else if accepted {
        format!("lost the connection to the controller at {url}: {detail}")
    } else {
        format!("the controller at {url} did not accept the connection: {detail}")
    };
    SessionEnd::Lost {
        reason,
        refused,
        healthy: healthy && !refused,
    }
}

/// How often the guards' state is compared with what the controller was last told.
const GUARD_CHECK: Duration = Duration::from_secs(5);

/// What the controller is told about an enforcer's guards.
pub fn guard_report(enforcer: &dyn Enforcer) -> haven_proto::agent::v1::GuardReport {
    use crate::enforcer::GuardState as S;
    use haven_proto::agent::v1::{GuardHardening, GuardReport, GuardState, GuardStatus};
    let health = enforcer.health();
    let mut hardening: Vec<GuardHardening> = Vec::new();
    let guards = health
        .into_iter()
        .map(|h| {
            for item in h.hardening {
                if !hardening.iter().any(|x| x.item == item.item) {
                    hardening.push(GuardHardening {
                        item: item.item,
                        ok: item.ok,
                        found: item.found,
                        fix: item.fix,
                    });
                }
            }
            let (state, reason) = match h.state {
                S::Armed => (GuardState::Armed, String::new()),
                S::Weakened(r) => (GuardState::Weakened, r),
                S::Failed(r) => (GuardState::Failed, r),
                S::NotEnforcing(r) => (GuardState::NotEnforcing, r),
            };
            GuardStatus {
                guard: h.guard,
                state: state as i32,
                reason,
            }
        })
        .collect();
    GuardReport {
        enforcer: enforcer.name().to_string(),
        guards,
        hardening,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_secs();
                b.next_delay_with(0.999);
                c
            })
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        // Many failures never overflow.
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn backoff_is_jittered_and_never_zero() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..6 {
            b.next_delay_with(0.5);
        }
        let low = b.clone().next_delay_with(0.0);
        let mid = b.clone().next_delay_with(0.5);
        let high = b.clone().next_delay_with(0.999_999);
        assert_eq!(low, MIN_DELAY);
        assert_eq!(mid, Duration::from_secs(30));
        assert!(high <= Duration::from_secs(60) && high > Duration::from_secs(59));
        let draws: std::collections::HashSet<_> = (0..20).map(|_| b.clone().next_delay()).collect();
        assert!(draws.len() > 1, "random draws should differ");
    }

    #[test]
    fn reconnects_after_a_healthy_session_are_spread_over_ten_seconds() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..4 {
            b.next_delay();
        }
        assert_eq!(b.after_session_with(0.0), MIN_DELAY);
        assert_eq!(b.after_session_with(0.5), Duration::from_secs(5));
        let high = b.after_session_with(0.999_999);
        assert!(high <= RECONNECT_SPREAD && high > Duration::from_secs(9));
        // Then failures back off from the start again.
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        // Never past the cap (the e2e harness runs agents with a 2 s cap).
        let mut short = Backoff::new(Duration::from_secs(1), Duration::from_secs(2));
        assert!(short.after_session_with(0.999_999) <= Duration::from_secs(2));
    }

    #[test]
    fn backoff_resets_after_a_healthy_session() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        for _ in 0..5 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(8));
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
        let refused = b.at_cap_with(0.0);
        assert_eq!(refused, Duration::from_secs(4));
        assert!(b.at_cap_with(1.0) <= Duration::from_secs(8));
    }

    #[test]
    fn refusals_are_reported_as_revoked() {
        match lost(
            "https://c:1",
            &tonic::Status::permission_denied("revoked"),
            true,
            true,
        ) {
            SessionEnd::Lost {
                reason,
                refused,
                healthy,
            } => {
                assert!(refused && !healthy);
                assert!(reason.contains("revoked"), "{reason}");
            }
            SessionEnd::Retired | SessionEnd::Renewed => panic!("not lost"),
        }
    }

    #[test]
    fn only_sessions_the_controller_talked_on_or_that_lasted_reset_the_backoff() {
        let second = Duration::from_secs(1);
        // Accepted, then ended at once (cleanly or not) without a word: not healthy.
        assert!(!session_was_healthy(Duration::ZERO, 0));
        assert!(!session_was_healthy(second, 0));
        assert!(!session_was_healthy(HEALTHY_SESSION - second, 0));
        // The controller sent something: it processed our Hello.
        assert!(session_was_healthy(Duration::ZERO, 1));
        // Up long enough, even if the controller had nothing to say.
        assert!(session_was_healthy(HEALTHY_SESSION, 0));
        assert!(session_was_healthy(HEALTHY_SESSION * 2, 0));
    }

    struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<u64>>>, bool);
    impl Enforcer for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn apply(&mut self, p: &DevicePolicy) -> Result<(), crate::enforcer::EnforceError> {
            self.0.lock().unwrap().push(p.version);
            if self.1 && p.version > 0 {
                return Err(crate::enforcer::EnforceError::new("camera", "no driver"));
            }
            Ok(())
        }
    }

    fn identity() -> DeviceIdentity {
        DeviceIdentity {
            controller_url: "https://127.0.0.1:1".into(),
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
            device_id: "d".into(),
        }
    }

    fn client(
        fail: bool,
        state: Option<StateDir>,
    ) -> (SyncClient, std::sync::Arc<std::sync::Mutex<Vec<u64>>>) {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut config = SyncConfig::new(identity());
        config.state = state;
        let mut c = SyncClient::new(config, Box::new(Recorder(seen.clone(), fail)));
        c.policy = Some(PolicyState::new(core::safe_default()));
        (c, seen)
    }

    fn versioned(version: u64) -> DevicePolicy {
        DevicePolicy {
            version,
            ..Default::default()
        }
    }

    #[test]
    fn policies_apply_in_order_and_older_ones_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let (mut c, seen) = client(false, Some(state.clone()));
        assert_eq!(c.on_policy(versioned(3)).unwrap().version, 3);
        assert!(c.on_policy(versioned(2)).is_none());
        let again = c.on_policy(versioned(3)).unwrap();
        assert!(again.error.is_empty());
        assert_eq!(*seen.lock().unwrap(), [3]);
        assert_eq!(state.load_policy().unwrap().unwrap().version, 3);
        // A restart applies the cached policy before any network.
        let mut recorder = Recorder(seen.clone(), false);
        assert_eq!(apply_startup_policy(Some(&state), &mut recorder).version, 3);
    }

    #[test]
    fn a_failed_policy_falls_back_to_the_safe_default() {
        let (mut c, seen) = client(true, None);
        let answer = c.on_policy(versioned(4)).unwrap();
        assert_eq!(answer.version, 4);
        assert!(answer.error.contains("camera"), "{}", answer.error);
        assert_eq!(*seen.lock().unwrap(), [4, 0]);
        assert_eq!(c.current_policy().unwrap().version, 0);
    }

    #[tokio::test]
    async fn retire_applies_the_safe_default_and_is_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.save_enrollment(&identity(), "Sam", "then").unwrap();
        let (mut c, seen) = client(false, Some(state.clone()));
        c.on_policy(versioned(5));
        let (tx, _rx) = mpsc::channel(4);
        let command = Command {
            id: "c1".into(),
            kind: Some(CommandKind::Retire(Default::default())),
        };
        let (result, retired) = c.on_command(command, &tx).await;
        assert!(result.ok && retired);
        assert_eq!(*seen.lock().unwrap(), [5, 0]);
        assert!(matches!(
            state.load_identity(),
            Err(crate::state::StateError::Retired)
        ));
        assert_eq!(state.load_policy().unwrap().unwrap().version, 0);
    }

    #[tokio::test]
    async fn unknown_commands_get_an_honest_answer() {
        let (mut c, _) = client(false, None);
        let (tx, _rx) = mpsc::channel(4);
        let command = Command {
            id: "c2".into(),
            kind: None,
        };
        let (result, retired) = c.on_command(command, &tx).await;
        assert!(!result.ok && !retired);
        assert_eq!(result.command_id, "c2");
    }

    #[tokio::test]
    async fn shutdown_stops_the_loop_while_it_waits_to_reconnect() {
        // Nothing listens on port 1: run keeps retrying, and must still stop promptly.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut config = SyncConfig::new(identity());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["controller.haven.internal".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        config.identity.ca_pem = cert.pem();
        config.identity.cert_pem = cert.pem();
        config.identity.key_pem = key.serialize_pem();
        config.inventory = InventorySource::Fixed(Inventory::default());
        config.events = Some(tx);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            config,
            Box::new(crate::enforcer::NullEnforcer),
            async move {
                let _ = stop_rx.await;
            },
        ));
        let first = tokio::time::timeout(Duration::from_secs(15), rx.recv()).await;
        stop_tx.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run stops promptly")
            .unwrap();
        assert_eq!(outcome.unwrap(), RunOutcome::Shutdown);
        assert!(
            matches!(first, Ok(Some(SyncEvent::Disconnected { .. }))),
            "{first:?}"
        );
    }

    /// D7: asked to renew, the agent makes a new key and sends a request naming itself; the
    /// certificate that comes back is kept (crash-safe, in the state folder) and the stream is
    /// left to reconnect with it. A certificate for some other key is not kept.
    #[tokio::test]
    async fn d7_a_renewal_makes_a_new_key_keeps_the_certificate_and_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let mut id = identity();
        id.cert_pem = "OLD CERT".into();
        id.key_pem = "OLD KEY".into();
        state.save_enrollment(&id, "Sam", "now").unwrap();
        let (mut c, _) = client(false, Some(state.clone()));
        let due = ControllerMessage {
            body: Some(Down::RenewalDue(Default::default())),
        };
        let (_, sent) = drive_script(&mut c, vec![Ok(due)]).await;
        let csr_pem = sent
            .iter()
            .find_map(|m| match &m.body {
                Some(Up::RenewCertificate(r)) => Some(r.csr_pem.clone()),
                _ => None,
            })
            .expect("a renewal request was sent");
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        assert_eq!(
            csr.params
                .distinguished_name
                .get(&rcgen::DnType::CommonName),
            Some(&rcgen::DnValue::Utf8String("d".into())),
            "the request names this device"
        );
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let renewed = |csr: rcgen::CertificateSigningRequestParams| ControllerMessage {
            body: Some(Down::RenewedCertificate(
                haven_proto::agent::v1::RenewedCertificate {
                    certificate_pem: csr.signed_by(&issuer).unwrap().pem(),
                    not_after_unix_ms: 0,
                },
            )),
        };
        // A certificate for a key this device did not make is ignored.
        let (_, stranger_csr) = crate::enroll::new_key_and_csr_for("d").unwrap();
        let stranger =
            renewed(rcgen::CertificateSigningRequestParams::from_pem(&stranger_csr).unwrap());
        let (end, _) = drive_script(&mut c, vec![Ok(stranger)]).await;
        assert!(matches!(end, SessionEnd::Lost { .. }));
        assert_eq!(state.load_identity().unwrap().0.cert_pem, "OLD CERT");
        // Asked again; this time the certificate is for the new key.
        let due = ControllerMessage {
            body: Some(Down::RenewalDue(Default::default())),
        };
        let (_, sent) = drive_script(&mut c, vec![Ok(due)]).await;
        let csr_pem = sent
            .iter()
            .find_map(|m| match &m.body {
                Some(Up::RenewCertificate(r)) => Some(r.csr_pem.clone()),
                _ => None,
            })
            .unwrap();
        let message = renewed(rcgen::CertificateSigningRequestParams::from_pem(&csr_pem).unwrap());
        let (end, _) = drive_script(&mut c, vec![Ok(message)]).await;
        assert!(matches!(end, SessionEnd::Renewed));
        let (kept, _) = state.load_identity().unwrap();
        assert_ne!(kept.key_pem, "OLD KEY");
        assert!(crate::identity::certificate_matches_key(
            &kept.cert_pem,
            &kept.key_pem
        ));
        assert_eq!(kept.device_id, "d");
        assert_eq!(c.config.identity.cert_pem, kept.cert_pem);
    }

    fn retire_command() -> ControllerMessage {
        ControllerMessage {
            body: Some(Down::Command(Command {
                id: "retire-1".into(),
                kind: Some(CommandKind::Retire(Default::default())),
            })),
        }
    }

    fn policy_message(version: u64) -> ControllerMessage {
        ControllerMessage {
            body: Some(Down::Policy(Box::new(versioned(version)))),
        }
    }

    /// Drives a session over a scripted controller stream; returns how it ended and what the
    /// agent sent back.
    async fn drive_script(
        c: &mut SyncClient,
        script: Vec<Result<ControllerMessage, tonic::Status>>,
    ) -> (SessionEnd, Vec<AgentMessage>) {
        let (tx, mut rx) = mpsc::channel(OUTBOX);
        let end = c
            .drive(
                "https://c:1",
                tokio_stream::iter(script),
                tx,
                Instant::now(),
            )
            .await;
        let mut sent = Vec::new();
        while let Ok(m) = rx.try_recv() {
            sent.push(m);
        }
        (end, sent)
    }

    fn healthy_of(end: &SessionEnd) -> bool {
        match end {
            SessionEnd::Lost { healthy, .. } => *healthy,
            SessionEnd::Retired | SessionEnd::Renewed => panic!("not lost"),
        }
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_a_message_is_not_healthy() {
        let (mut c, _) = client(false, None);
        let (end, _) = drive_script(&mut c, vec![]).await;
        assert!(!healthy_of(&end), "closed cleanly at once");
        let (end, _) = drive_script(&mut c, vec![Err(tonic::Status::internal("db down"))]).await;
        assert!(!healthy_of(&end), "failed at once");
        let (end, sent) = drive_script(&mut c, vec![Ok(policy_message(2))]).await;
        assert!(healthy_of(&end), "the controller sent a policy");
        assert!(matches!(
            &sent[..],
            [AgentMessage {
                body: Some(Up::PolicyApplied(PolicyApplied { version: 2, .. }))
            }]
        ));
    }

    #[tokio::test]
    async fn a_retire_just_before_the_controller_refuses_the_stream_is_carried_out() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.save_enrollment(&identity(), "Sam", "then").unwrap();
        let (mut c, seen) = client(false, Some(state.clone()));
        c.on_policy(versioned(7));
        let (end, sent) = drive_script(
            &mut c,
            vec![
                Ok(retire_command()),
                Err(tonic::Status::permission_denied(
                    "this device has been revoked",
                )),
            ],
        )
        .await;
        assert!(matches!(end, SessionEnd::Retired));
        assert_eq!(*seen.lock().unwrap(), [7, 0]);
        assert_eq!(c.current_policy().unwrap().version, 0);
        assert!(matches!(
            state.load_identity(),
            Err(crate::state::StateError::Retired)
        ));
        // The retirement was acknowledged.
        assert!(sent.iter().any(|m| matches!(
            &m.body,
            Some(Up::CommandResult(r)) if r.ok && r.command_id == "retire-1"
        )));
    }

    fn child_requests(sent: &[AgentMessage]) -> Vec<(String, String)> {
        sent.iter()
            .filter_map(|m| match &m.body {
                Some(Up::ChildRequest(r)) => Some((r.id.clone(), r.text.clone())),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn requests_are_resent_on_every_stream_until_the_controller_confirms_them() {
        use haven_proto::agent::v1::{ChildRequestAnswer, ChildRequestReceived};
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let spool = RequestSpool::new(&state);
        let nan = spool.submit("I would like to phone my nan", 1_000).unwrap();
        let late = spool.submit("Can I stay up late?", 2_000).unwrap();
        let (mut c, _) = client(false, Some(state.clone()));
        let (tx, mut events) = mpsc::unbounded_channel();
        c.config.events = Some(tx);

        // The stream drops before any confirmation: both are sent, oldest first, and kept.
        let (_, sent) = drive_script(&mut c, vec![]).await;
        let both = vec![
            (nan.id.clone(), nan.text.clone()),
            (late.id.clone(), late.text.clone()),
        ];
        assert_eq!(child_requests(&sent), both);
        assert_eq!(spool.pending().unwrap().len(), 2);

        // On the next stream they are sent again; one is confirmed, the other answered.
        let received = ControllerMessage {
            body: Some(Down::RequestReceived(ChildRequestReceived {
                id: nan.id.clone(),
            })),
        };
        let answer = ControllerMessage {
            body: Some(Down::RequestAnswer(ChildRequestAnswer {
                request_id: late.id.clone(),
                decision: "not agreed".into(),
                reason: "it is a school night".into(),
                answered_by: "Jo".into(),
                answered_at_unix_ms: 3_000,
            })),
        };
        let (_, sent) = drive_script(&mut c, vec![Ok(received), Ok(answer)]).await;
        assert_eq!(child_requests(&sent), both);
        assert!(spool.pending().unwrap().is_empty());
        let records = spool.records().unwrap();
        assert_eq!(records[0].state, crate::requests::RequestState::Sent);
        assert_eq!(records[1].state, crate::requests::RequestState::Answered);
        assert_eq!(records[1].answer.as_ref().unwrap().answered_by, "Jo");
        assert_eq!(
            events.recv().await,
            Some(SyncEvent::RequestReceived { id: nan.id.clone() })
        );

        // Nothing is left to send on the stream after that.
        let (_, sent) = drive_script(&mut c, vec![]).await;
        assert!(child_requests(&sent).is_empty());
    }

    #[tokio::test]
    async fn a_request_written_while_connected_is_sent_at_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let (mut c, _) = client(false, Some(state.clone()));
        c.config.request_poll = Duration::from_millis(100);
        let (down_tx, down_rx) = mpsc::channel::<Result<ControllerMessage, tonic::Status>>(4);
        let (tx, mut rx) = mpsc::channel(OUTBOX);
        let drive = c.drive(
            "https://c:1",
            ReceiverStream::new(down_rx),
            tx,
            Instant::now(),
        );
        let script = async move {
            let request = RequestSpool::new(&state).submit("hello staff", 5).unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("sent within a few checks");
            drop(down_tx);
            (request, got)
        };
        let (_, (request, got)) = tokio::join!(drive, script);
        assert!(
            matches!(got, Some(AgentMessage { body: Some(Up::ChildRequest(r)) }) if r.id == request.id),
        );
    }

    #[tokio::test]
    async fn an_answer_is_told_even_without_a_state_folder() {
        use haven_proto::agent::v1::ChildRequestAnswer;
        let (mut c, _) = client(false, None);
        let answer = ControllerMessage {
            body: Some(Down::RequestAnswer(ChildRequestAnswer {
                request_id: "r1".into(),
                decision: "agreed".into(),
                ..Default::default()
            })),
        };
        let (end, sent) = drive_script(&mut c, vec![Ok(answer)]).await;
        assert!(healthy_of(&end));
        assert!(sent.is_empty());
    }

    #[tokio::test]
    async fn an_unusable_identity_keeps_enforcing_until_shutdown() {
        let mut config = SyncConfig::new(identity());
        config.identity.controller_url = "not an address".into();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            config,
            Box::new(Recorder(seen.clone(), false)),
            async move {
                let _ = stop_rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!task.is_finished(), "run must not return before shutdown");
        // The safe default was applied, and the enforcer is still alive.
        assert_eq!(*seen.lock().unwrap(), [0]);
        assert_eq!(std::sync::Arc::strong_count(&seen), 2);
        stop_tx.send(()).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run stops promptly")
            .unwrap();
        assert!(
            matches!(outcome, Err(SyncError::BadAddress(_))),
            "{outcome:?}"
        );
        assert_eq!(std::sync::Arc::strong_count(&seen), 1);
    }

    fn violation_batches(sent: &[AgentMessage]) -> Vec<Vec<String>> {
        sent.iter()
            .filter_map(|m| match &m.body {
                Some(Up::Violations(b)) => {
                    Some(b.violations.iter().map(|v| v.id.clone()).collect())
                }
                _ => None,
            })
            .collect()
    }

    fn blocked(n: usize) -> crate::report::Blocked {
        crate::report::Blocked::now(
            haven_proto::agent::v1::ViolationKind::UnknownContact,
            format!("+44770090{n:04}"),
            "tried to call an address that is on no list",
        )
    }

    #[tokio::test]
    async fn d5_violations_are_resent_on_every_stream_until_acknowledged() {
        use crate::report::BlockedSink as _;
        use haven_proto::agent::v1::ViolationAck;
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open_at(&dir.path().join("j"), 100).unwrap());
        for n in 0..3 {
            journal.blocked(blocked(n));
        }
        let ids: Vec<String> = journal.pending().into_iter().map(|v| v.id).collect();
        let (mut c, _) = client(false, None);
        c.config.journal = Some(journal.clone());
        let (tx, mut events) = mpsc::unbounded_channel();
        c.config.events = Some(tx);

        // The stream drops before any acknowledgement: all are sent and all are kept.
        let (_, sent) = drive_script(&mut c, vec![]).await;
        assert_eq!(violation_batches(&sent), vec![ids.clone()]);
        assert_eq!(journal.len(), 3);

        // Next stream: sent again (the controller ignores ids it has); two are acknowledged.
        let ack = ControllerMessage {
            body: Some(Down::ViolationAck(ViolationAck {
                ids: ids[..2].to_vec(),
            })),
        };
        let (_, sent) = drive_script(&mut c, vec![Ok(ack)]).await;
        assert_eq!(violation_batches(&sent), vec![ids.clone()]);
        assert_eq!(
            events.recv().await,
            Some(SyncEvent::ViolationsAcknowledged { removed: 2 })
        );
        // Only the unacknowledged one is left, also after a restart of the agent.
        let (_, sent) = drive_script(&mut c, vec![]).await;
        assert_eq!(violation_batches(&sent), vec![vec![ids[2].clone()]]);
        let reopened = Journal::open_at(&dir.path().join("j"), 100).unwrap();
        assert_eq!(reopened.pending().len(), 1);
    }

    #[tokio::test]
    async fn d5_a_large_backlog_goes_in_batches_the_controller_accepts() {
        use crate::report::BlockedSink as _;
        let journal = Arc::new(Journal::in_memory(2_000));
        for n in 0..(VIOLATION_BATCH * 2 + 7) {
            journal.blocked(blocked(n));
        }
        let (mut c, _) = client(false, None);
        c.config.journal = Some(journal.clone());
        let (_, sent) = drive_script(&mut c, vec![]).await;
        let sizes: Vec<usize> = violation_batches(&sent).iter().map(Vec::len).collect();
        assert_eq!(sizes, [VIOLATION_BATCH, VIOLATION_BATCH, 7]);
    }

    #[tokio::test]
    async fn d5_a_violation_written_while_connected_is_sent_at_once() {
        use crate::report::BlockedSink as _;
        let journal = Arc::new(Journal::in_memory(100));
        let (mut c, _) = client(false, None);
        c.config.journal = Some(journal.clone());
        // No retry timer to fall back on: only the journal's wake-up can send it.
        c.config.violation_retry = Duration::from_secs(3600);
        let (down_tx, down_rx) = mpsc::channel::<Result<ControllerMessage, tonic::Status>>(4);
        let (tx, mut rx) = mpsc::channel(OUTBOX);
        let drive = c.drive(
            "https://c:1",
            ReceiverStream::new(down_rx),
            tx,
            Instant::now(),
        );
        let script = async move {
            tokio::task::yield_now().await;
            journal.blocked(blocked(1));
            let got = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await;
            drop(down_tx);
            got
        };
        let (_, got) = tokio::join!(drive, script);
        let got = got.expect("sent as soon as it was written");
        assert!(
            matches!(&got, Some(AgentMessage { body: Some(Up::Violations(b)) }) if b.violations.len() == 1),
            "{got:?}"
        );
    }

    // clause D1, D5: what the controller is told about the guards.
    #[test]
    fn d5_the_guard_report_names_each_guard_its_state_and_the_hardening_once() {
        use crate::enforcer::{
            CompositeEnforcer, EnforcerKind, FailedGuard, GuardHealth, GuardState, HardeningCheck,
        };
        use haven_proto::agent::v1::GuardState as Wire;
        struct Exec;
        impl Enforcer for Exec {
            fn name(&self) -> &'static str {
                "exec"
            }
            fn apply(&mut self, _p: &DevicePolicy) -> Result<(), crate::enforcer::EnforceError> {
                Ok(())
            }
            fn health(&self) -> Vec<GuardHealth> {
                let mut h = GuardHealth::new("exec", GuardState::Weakened("missing x".into()));
                h.hardening = vec![HardeningCheck {
                    item: "noexec on /tmp".into(),
                    ok: false,
                    found: "/ mounted without noexec".into(),
                    fix: "mount /tmp noexec".into(),
                }];
                vec![h.clone(), h]
            }
        }
        let linux = CompositeEnforcer::new(
            "linux",
            vec![
                Box::new(Exec),
                Box::new(FailedGuard::new("camera", "no fanotify")),
            ],
        );
        let r = guard_report(&linux);
        assert_eq!(r.enforcer, "linux");
        assert_eq!(r.guards.len(), 3);
        assert_eq!(r.guards[0].state, Wire::Weakened as i32);
        assert_eq!(r.guards[2].state, Wire::Failed as i32);
        assert_eq!(r.guards[2].reason, "no fanotify");
        assert_eq!(r.hardening.len(), 1, "each item once");
        let log = guard_report(EnforcerKind::Log.build().as_ref());
        assert_eq!(log.guards[0].state, Wire::NotEnforcing as i32);
    }
}
