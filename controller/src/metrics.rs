//! What operators watch: Prometheus metrics (`haven serve --metrics-listen 127.0.0.1:9464`).
//!
//! Counters and histograms are kept as the controller works, through one-line calls from the
//! services (`metrics::violations_stored(…)` and the like) into one process-wide set: atomics,
//! no lock per device, nothing on the push path but an atomic store. Gauges that describe the
//! records (devices not enforcing or not reporting, lockdowns in force and whether they reached
//! their devices, obligations overdue) are worked out from the store when Prometheus scrapes.
//!
//! The endpoint has no TLS and no login, so it listens on loopback unless the operator says
//! otherwise: the counts describe a children's home (how many lockdowns are in force now).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::domain::UnixMillis;
use crate::service::{Context, now_ms};

/// Where Prometheus conventionally finds an exporter of this kind.
pub const DEFAULT_PORT: u16 = 9464;
/// How many recent policy versions remember when they were issued (for the apply latency).
/// Versions count up across every home, so this covers the last 1,024 changes.
const RECENT_VERSIONS: usize = 1024;
/// A lockdown that has not reached one of its devices after this long is "undelivered".
pub const LOCKDOWN_DELIVERY_TARGET_MS: i64 = 60_000;
/// Scrapes served at once; more wait. The endpoint is for one Prometheus, not the public.
const MAX_SCRAPES: usize = 4;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabel {
    write: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// When a policy version was issued, and whether it was a lockdown's.
#[derive(Default)]
struct Issued {
    version: AtomicU64,
    at: AtomicI64,
    lockdown: AtomicBool,
}

struct Metrics {
    registry: Registry,
    devices_connected: Gauge,
    devices_not_enforcing: Gauge,
    devices_not_reporting: Gauge,
    policy_pushes: Counter,
    policy_apply: Histogram,
    lockdowns_started: Counter,
    lockdowns_in_force: Gauge,
    lockdown_delivery: Histogram,
    lockdown_undelivered: Gauge,
    violations_stored: Counter,
    violations_over_budget: Counter,
    store_write: Family<WriteLabel, Histogram>,
    enrollments_refused: Family<ReasonLabel, Counter>,
    obligations_overdue: Family<KindLabel, Gauge>,
    issued: Box<[Issued]>,
}

/// Seconds, from a few milliseconds (a device on the LAN) to half an hour (one that was off).
fn delivery_buckets() -> impl Iterator<Item = f64> {
    [
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    ]
    .into_iter()
}

/// Seconds a write transaction takes, from 100 µs to 5 s.
fn write_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
    ]
    .into_iter()
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("haven");
    let m = Metrics {
        registry: Registry::default(),
        devices_connected: Gauge::default(),
        devices_not_enforcing: Gauge::default(),
        devices_not_reporting: Gauge::default(),
        policy_pushes: Counter::default(),
        policy_apply: Histogram::new(delivery_buckets()),
        lockdowns_started: Counter::default(),
        lockdowns_in_force: Gauge::default(),
        lockdown_delivery: Histogram::new(delivery_buckets()),
        lockdown_undelivered: Gauge::default(),
        violations_stored: Counter::default(),
        violations_over_budget: Counter::default(),
        store_write: Family::new_with_constructor(|| Histogram::new(write_buckets())),
        enrollments_refused: Family::default(),
        obligations_overdue: Family::default(),
        issued: (0..RECENT_VERSIONS).map(|_| Issued::default()).collect(),
    };
    registry.register(
        "devices_connected",
        "Devices with their stream open now",
        m.devices_connected.clone(),
    );
    registry.register(
        "devices_not_enforcing",
        "Active devices whose guards do not hold (not enforcing: the child is not protected as the plan says)",
        m.devices_not_enforcing.clone(),
    );
    registry.register(
        "devices_not_reporting",
        "Active devices not heard from for longer than --not-reporting-after-secs",
        m.devices_not_reporting.clone(),
    );
    registry.register(
        "policy_pushes",
        "Policies sent over devices' open streams after a change",
        m.policy_pushes.clone(),
    );
    registry.register(
        "policy_apply_seconds",
        "From a policy change to a device saying it applied it",
        m.policy_apply.clone(),
    );
    registry.register(
        "lockdowns_started",
        "Lockdowns started",
        m.lockdowns_started.clone(),
    );
    registry.register(
        "lockdowns_in_force",
        "Lockdowns in force now",
        m.lockdowns_in_force.clone(),
    );
    registry.register(
        "lockdown_delivery_seconds",
        "From a lockdown to each device saying it applied it",
        m.lockdown_delivery.clone(),
    );
    registry.register(
        "lockdown_undelivered_devices",
        "Devices a lockdown in force for over a minute has not reached yet",
        m.lockdown_undelivered.clone(),
    );
    registry.register(
        "violations_stored",
        "What devices blocked, stored (new records only)",
        m.violations_stored.clone(),
    );
    registry.register(
        "violations_over_budget",
        "What devices blocked beyond their budget: counted into summary records, not stored one by one",
        m.violations_over_budget.clone(),
    );
    registry.register(
        "store_write_seconds",
        "How long the busiest writes to the database take",
        m.store_write.clone(),
    );
    registry.register(
        "enrollments_refused",
        "Enrollment attempts refused, by reason",
        m.enrollments_refused.clone(),
    );
    registry.register(
        "obligations_overdue",
        "What the home owes past its deadline, by kind",
        m.obligations_overdue.clone(),
    );
    Metrics { registry, ..m }
});

/// A policy version was made at `at`: remembered so its acknowledgements can be timed.
pub fn policy_issued(version: u64, at: UnixMillis) {
    let slot = &METRICS.issued[(version % RECENT_VERSIONS as u64) as usize];
    // A lockdown marks its version before pushing it; the push must not clear the mark.
    if slot.version.load(Ordering::Acquire) != version {
        slot.lockdown.store(false, Ordering::Relaxed);
        slot.at.store(at, Ordering::Relaxed);
        slot.version.store(version, Ordering::Release);
    }
}

/// `n` devices were sent a policy over their open stream.
pub fn policy_pushed(n: usize) {
    METRICS.policy_pushes.inc_by(n as u64);
}

/// A lockdown was written (taking `write` to store) as policy `version` at `at`.
pub fn lockdown_started(version: u64, at: UnixMillis, write: Duration) {
    let slot = &METRICS.issued[(version % RECENT_VERSIONS as u64) as usize];
    slot.at.store(at, Ordering::Relaxed);
    slot.lockdown.store(true, Ordering::Relaxed);
    slot.version.store(version, Ordering::Release);
    METRICS.lockdowns_started.inc();
    store_write_took("lockdown", write);
}

/// A device says it applied `version`: times it from the change, if this controller made it
/// recently (a version from before a restart is not timed).
pub fn policy_applied(version: u64, now: UnixMillis) {
    let slot = &METRICS.issued[(version % RECENT_VERSIONS as u64) as usize];
    if slot.version.load(Ordering::Acquire) != version {
        return;
    }
    let secs = (now - slot.at.load(Ordering::Relaxed)).max(0) as f64 / 1000.0;
    METRICS.policy_apply.observe(secs);
    if slot.lockdown.load(Ordering::Relaxed) {
        METRICS.lockdown_delivery.observe(secs);
    }
}

/// A batch of violations: `stored` new records, `over_budget` only counted.
pub fn violations(stored: usize, over_budget: usize) {
    METRICS.violations_stored.inc_by(stored as u64);
    METRICS.violations_over_budget.inc_by(over_budget as u64);
}

/// An enrollment attempt was refused.
pub fn enrollment_refused(reason: &'static str) {
    METRICS
        .enrollments_refused
        .get_or_create(&ReasonLabel { reason })
        .inc();
}

/// A write to the store took `took`.
pub fn store_write_took(write: &'static str, took: Duration) {
    METRICS
        .store_write
        .get_or_create(&WriteLabel { write })
        .observe(took.as_secs_f64());
}

/// Times a write from now until it is dropped: `let _t = metrics::store_write("reports");`.
pub fn store_write(write: &'static str) -> WriteTimer {
    WriteTimer {
        write,
        started: std::time::Instant::now(),
    }
}

pub struct WriteTimer {
    write: &'static str,
    started: std::time::Instant,
}

impl Drop for WriteTimer {
    fn drop(&mut self) {
        store_write_took(self.write, self.started.elapsed());
    }
}

/// Works out the gauges from the records, as of `now`.
async fn refresh(ctx: &Context, now: UnixMillis) -> Result<(), crate::store::StoreError> {
    use crate::domain::device_health::{DeviceGuards, enforcement};
    use crate::domain::emergency::review_overdue;
    use crate::domain::violations::silent_for;
    let m = &*METRICS;
    let devices = ctx.store.list_devices(None, false).await?;
    let after_ms = i64::try_from(ctx.not_reporting_after.as_millis()).unwrap_or(i64::MAX);
    let (mut connected, mut not_enforcing, mut quiet) = (0, 0, 0);
    for d in devices.iter().filter(|d| d.status == "active") {
        let online = ctx.is_online_anywhere(&d.id);
        connected += i64::from(online);
        let guards: Option<DeviceGuards> = d
            .guards
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok());
        not_enforcing += i64::from(!enforcement(guards.as_ref()).holds());
        quiet += i64::from(
            silent_for(
                true,
                online,
                d.last_seen_at,
                d.enrolled_at,
                ctx.started_at,
                now,
                after_ms,
            )
            .is_some(),
        );
    }
    m.devices_connected.set(connected);
    m.devices_not_enforcing.set(not_enforcing);
    m.devices_not_reporting.set(quiet);

    let lockdowns = ctx.store.lockdowns(None, false).await?;
    m.lockdowns_in_force.set(lockdowns.len() as i64);
    let mut undelivered = 0;
    for l in lockdowns
        .iter()
        .filter(|l| now - l.started_at > LOCKDOWN_DELIVERY_TARGET_MS)
    {
        undelivered += devices
            .iter()
            .filter(|d| d.status == "active" && d.applied_version < l.policy_version)
            .filter(|d| match l.target_kind.as_str() {
                "device" => l.device_id.as_deref() == Some(d.id.as_str()),
                "child" => l.child_id.as_deref() == Some(d.child_id.as_str()),
                _ => l.home_id == d.home_id,
            })
            .count() as i64;
    }
    m.lockdown_undelivered.set(undelivered);

    let mut overdue: std::collections::BTreeMap<String, i64> = Default::default();
    for o in ctx.store.obligations(None, true).await? {
        if o.closed_at.is_none() && o.due_at < now {
            *overdue.entry(o.kind).or_default() += 1;
        }
    }
    // GD3: a manager's decision on an unknown contact, due by the next working day.
    let tasks = ctx
        .store
        .manager_tasks(None, false)
        .await?
        .into_iter()
        .filter(|t| t.closed_at.is_none())
        .filter(|t| {
            let opened = t.first_attempt_at.min(t.opened_at);
            crate::domain::violations::task_due(opened, &t.time_zone, &ctx.holidays) < now
        })
        .count() as i64;
    overdue.insert("manager_task".into(), tasks);
    let reviews = lockdowns
        .iter()
        .filter(|l| review_overdue(l.review_at, l.lifted_at, now))
        .count() as i64;
    overdue.insert("lockdown_review".into(), reviews);
    m.obligations_overdue.clear();
    for (kind, n) in overdue {
        m.obligations_overdue
            .get_or_create(&KindLabel { kind })
            .set(n);
    }
    Ok(())
}

/// The text Prometheus reads (OpenMetrics).
pub async fn render(ctx: &Context) -> String {
    if let Err(e) = refresh(ctx, now_ms()).await {
        tracing::warn!(error = %e, "could not read the records for the metrics; the gauges are from the last scrape");
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry) {
        tracing::warn!(error = %e, "could not write the metrics");
    }
    out
}

/// Why an address may not serve metrics.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow_remote {
        return Ok(());
    }
    Err(format!(
        "the metrics address {addr} is reachable from other machines, and the metrics have no login or TLS (they say how many of a home's children are locked down): use 127.0.0.1:{DEFAULT_PORT} and let Prometheus scrape through a tunnel or an authenticating proxy, or add --metrics-allow-remote if the network is private"
    ))
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (socket, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(socket, &ctx)).await;
        });
    }
}

/// Reads one HTTP/1 request head (up to 8 KiB) and answers it, then closes.
async fn answer(mut socket: tokio::net::TcpStream, ctx: &Context) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 || head.len() + n > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, kind, body) = if method != b"GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        )
    } else if path == b"/metrics" {
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(ctx).await,
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "Haven's metrics are at /metrics\n".to_string(),
        )
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(reply.as_bytes()).await?;
    socket.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_unless_allowed() {
        assert!(check_listen("127.0.0.1:9464".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:9464".parse().unwrap(), false).is_ok());
        let err = check_listen("0.0.0.0:9464".parse().unwrap(), false).unwrap_err();
        assert!(err.contains("--metrics-allow-remote"), "{err}");
        assert!(check_listen("0.0.0.0:9464".parse().unwrap(), true).is_ok());
    }

    #[test]
    fn a_lockdown_is_timed_from_its_start_to_each_acknowledgement() {
        // Versions far from any other test's, in the one process-wide set.
        let v = 7_000_001;
        lockdown_started(v, 1_000, Duration::from_millis(3));
        policy_issued(v, 1_500); // the push that follows must not clear the mark
        policy_applied(v, 1_250);
        policy_applied(v + RECENT_VERSIONS as u64, 9_000); // another version in the slot: not timed
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).unwrap();
        assert!(
            out.contains("haven_lockdown_delivery_seconds_bucket{le=\"0.25\"} "),
            "{out}"
        );
        assert!(out.contains("haven_lockdowns_started_total"), "{out}");
        assert!(
            out.contains("haven_store_write_seconds_count{write=\"lockdown\"}"),
            "{out}"
        );
        let slot = &METRICS.issued[(v % RECENT_VERSIONS as u64) as usize];
        assert!(slot.lockdown.load(Ordering::Relaxed));
        assert_eq!(slot.at.load(Ordering::Relaxed), 1_000);
    }
}
