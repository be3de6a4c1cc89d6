//! Device reports — when each device was last heard from, its inventory, the policy version
//! it acknowledged — gathered in memory and written in batches once they settle.
//!
//! A thousand devices acknowledging a change would otherwise be a thousand separate writes
//! competing with the next push. A batch is written once no report has arrived for
//! [`QUIET_FOR`], or at the latest [`AT_MOST`] after its oldest report: a lockdown's 10,000
//! acknowledgements are written after it has reached the last device, not in the middle of
//! its spreading (issue 14). Nothing is lost that matters: a device repeats its applied
//! version in the first message of every stream, so a report lost in a crash is re-learnt on
//! reconnect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::UnixMillis;
use crate::store::{DeviceReport, DeviceStore, StoreResult};

/// How often the flusher looks whether a batch is due.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A batch is written once reports have stopped arriving for this long…
pub const QUIET_FOR: Duration = Duration::from_millis(100);
/// …or once its oldest report has waited this long, however busy the devices are.
pub const AT_MOST: Duration = Duration::from_secs(1);
const CHUNK: usize = 256;

/// Whether a batch whose oldest report arrived at `oldest` and newest at `newest` is due.
pub fn due(now: Instant, oldest: Instant, newest: Instant) -> bool {
    now.saturating_duration_since(newest) >= QUIET_FOR
        || now.saturating_duration_since(oldest) >= AT_MOST
}

#[derive(Default)]
struct Pending {
    reports: HashMap<String, DeviceReport>,
    /// When the oldest and the newest report of the batch arrived.
    arrived: Option<(Instant, Instant)>,
}

#[derive(Default)]
pub struct DeviceReports {
    pending: Mutex<Pending>,
}

impl DeviceReports {
    fn with(&self, device_id: &str, update: impl FnOnce(&mut DeviceReport)) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        pending.arrived = Some(match pending.arrived {
            Some((oldest, _)) => (oldest, now),
            None => (now, now),
        });
        let report = pending
            .reports
            .entry(device_id.to_string())
            .or_insert_with(|| DeviceReport {
                device_id: device_id.to_string(),
                ..Default::default()
            });
        update(report);
    }

    /// The device was heard from, with its inventory if it sent one.
    pub fn seen(&self, device_id: &str, inventory: Option<String>, at: UnixMillis) {
        self.with(device_id, |r| {
            r.seen_at = r.seen_at.max(at);
            if inventory.is_some() {
                r.inventory = inventory;
            }
        });
    }

    /// The device said how its guards stand (the JSON of `DeviceGuards`).
    pub fn guards(&self, device_id: &str, guards: String, at: UnixMillis) {
        self.with(device_id, |r| {
            r.seen_at = r.seen_at.max(at);
            r.guards = Some(guards);
        });
    }

    /// The device says it enforces `version` (with an error if it could not fully apply it).
    pub fn applied(&self, device_id: &str, version: u64, error: Option<String>, at: UnixMillis) {
        self.with(device_id, |r| {
            r.seen_at = r.seen_at.max(at);
            if r.applied.as_ref().is_none_or(|(v, _, _)| *v <= version) {
                r.applied = Some((version, error, at));
            }
        });
    }

    /// Writes the batch if it is [`due`]; what the flusher calls every [`FLUSH_EVERY`].
    pub async fn flush_if_due(&self, store: &dyn DeviceStore) -> StoreResult<usize> {
        let ready = {
            let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .arrived
                .is_some_and(|(oldest, newest)| due(Instant::now(), oldest, newest))
        };
        if !ready {
            return Ok(0);
        }
        self.flush(store).await
    }

    /// Writes everything gathered so far. On failure the reports are kept for the next try.
    pub async fn flush(&self, store: &dyn DeviceStore) -> StoreResult<usize> {
        let batch: Vec<DeviceReport> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.arrived = None;
            pending.reports.drain().map(|(_, r)| r).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        // Small transactions: a staff change waiting for the write lock should wait for one
        // chunk, not for ten thousand acknowledgements.
        for (i, chunk) in batch.chunks(CHUNK).enumerate() {
            let _timer = crate::metrics::store_write("device_reports");
            if let Err(e) = store.record_device_reports(chunk).await {
                // Put back what was not written, unless something newer arrived meanwhile.
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                pending.arrived =
                    Some(pending.arrived.map_or((now, now), |(o, n)| (o.min(now), n)));
                for r in batch.into_iter().skip(i * CHUNK) {
                    pending.reports.entry(r.device_id.clone()).or_insert(r);
                }
                return Err(e);
            }
        }
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_written_once_quiet_or_once_its_oldest_report_has_waited_long_enough() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        // Still arriving: not yet.
        assert!(!due(t + ms(150), t, t + ms(100)));
        // Quiet for 100 ms: now.
        assert!(due(t + ms(200), t, t + ms(100)));
        // Never quiet (devices keep reporting), but the oldest has waited a second: now.
        assert!(due(t + ms(1000), t, t + ms(990)));
    }

    #[test]
    fn the_newest_facts_win_within_a_batch() {
        let reports = DeviceReports::default();
        reports.seen("dev-1", Some("{a}".into()), 10);
        reports.applied("dev-1", 7, None, 12);
        reports.applied("dev-1", 6, None, 13);
        reports.seen("dev-1", None, 11);
        let pending = reports.pending.lock().unwrap();
        let r = &pending.reports["dev-1"];
        assert_eq!(r.seen_at, 13);
        assert_eq!(r.inventory.as_deref(), Some("{a}"));
        assert_eq!(
            r.applied,
            Some((7, None, 12)),
            "an older acknowledgement never wins"
        );
    }
}
