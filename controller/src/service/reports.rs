//! Device reports — when each device was last heard from, its inventory, the policy version
//! it acknowledged — gathered in memory and written in one transaction every 100 ms.
//!
//! A thousand devices acknowledging a change would otherwise be a thousand separate writes
//! competing with the next push. Nothing is lost that matters: a device repeats its applied
//! version in the first message of every stream, so a report lost in a crash is re-learnt on
//! reconnect.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::UnixMillis;
use crate::store::{DeviceReport, DeviceStore, StoreResult};

pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
const CHUNK: usize = 256;

#[derive(Default)]
pub struct DeviceReports {
    pending: Mutex<HashMap<String, DeviceReport>>,
}

impl DeviceReports {
    fn with(&self, device_id: &str, update: impl FnOnce(&mut DeviceReport)) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let report = pending
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

    /// Writes everything gathered so far. On failure the reports are kept for the next try.
    pub async fn flush(&self, store: &dyn DeviceStore) -> StoreResult<usize> {
        let batch: Vec<DeviceReport> = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().map(|(_, r)| r).collect()
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
                for r in batch.into_iter().skip(i * CHUNK) {
                    pending.entry(r.device_id.clone()).or_insert(r);
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
    fn the_newest_facts_win_within_a_batch() {
        let reports = DeviceReports::default();
        reports.seen("dev-1", Some("{a}".into()), 10);
        reports.applied("dev-1", 7, None, 12);
        reports.applied("dev-1", 6, None, 13);
        reports.seen("dev-1", None, 11);
        let pending = reports.pending.lock().unwrap();
        let r = &pending["dev-1"];
        assert_eq!(r.seen_at, 13);
        assert_eq!(r.inventory.as_deref(), Some("{a}"));
        assert_eq!(
            r.applied,
            Some((7, None, 12)),
            "an older acknowledgement never wins"
        );
    }
}
