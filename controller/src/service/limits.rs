//! The controller's side of device budgets: the highest policy version issued (to check what a
//! device claims) and each device's budget in use, kept in memory.
//!
//! The rules are in `domain::device_input`; this holds their state between messages and turns
//! what was counted over budget into summary records every minute. A crash loses at most the
//! last minute's counts (the attempts themselves were acknowledged to the device), which is
//! written down in ARCHITECTURE.md.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::UnixMillis;
use crate::domain::device_input::{Budget, DeviceBudget, NeverIssued, check_claimed_version};
use crate::store::{Store, StoreResult, ViolationRecord};

/// How often over-budget counts are written as summary records.
pub const SUMMARISE_EVERY: Duration = Duration::from_secs(60);

pub struct DeviceLimits {
    pub budget: Budget,
    /// The highest policy version known to be issued: raised by every push (`issued`) and
    /// refreshed from the store when a device claims more, so a legitimate new version costs
    /// no read at all when this controller pushed it, and one read otherwise.
    issued: AtomicU64,
    /// Held while the store is asked: when 10,000 devices acknowledge a version this
    /// controller did not push (another replica's, or one made before a restart), the first
    /// asks and the rest find the answer, instead of 10,000 reads queueing at the database
    /// while a lockdown spreads (issue 14).
    asking: tokio::sync::Mutex<()>,
    budgets: Mutex<HashMap<String, DeviceBudget>>,
    /// Children's requests: a child has plenty to say, but a script writing thousands a
    /// minute is not a child.
    pub request_budget: Budget,
    requests: Mutex<HashMap<String, DeviceBudget>>,
    /// Wrong enrollment codes per network address: codes are long and random, but nobody may
    /// guess at them freely. Successful enrollments never count, so an IT person enrolling
    /// forty tablets behind one address is not slowed down.
    pub enroll_failures: Budget,
    enroll: Mutex<HashMap<std::net::IpAddr, DeviceBudget>>,
}

/// The most addresses remembered for enrollment failures; beyond it the oldest knowledge is
/// dropped (memory stays bounded whatever an attacker sends).
const MAX_ENROLL_PEERS: usize = 50_000;

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits::new(Budget::default())
    }
}

impl DeviceLimits {
    pub fn new(budget: Budget) -> Self {
        DeviceLimits {
            budget,
            issued: AtomicU64::new(0),
            asking: tokio::sync::Mutex::new(()),
            budgets: Mutex::new(HashMap::new()),
            request_budget: Budget {
                burst: 20,
                per_hour: 10,
                per_day: 60,
            },
            requests: Mutex::new(HashMap::new()),
            enroll_failures: Budget {
                burst: 20,
                per_hour: 60,
                per_day: 500,
            },
            enroll: Mutex::new(HashMap::new()),
        }
    }

    /// A policy version this controller has just written and is pushing: its acknowledgements
    /// are believed without asking the store.
    pub fn issued(&self, version: u64) {
        self.issued.fetch_max(version, Ordering::Relaxed);
    }

    /// Checks a version a device says it enforces; `Err` when the controller never issued it.
    pub async fn check_version(
        &self,
        store: &dyn Store,
        claimed: u64,
    ) -> StoreResult<Result<u64, NeverIssued>> {
        let known = self.issued.load(Ordering::Relaxed);
        if check_claimed_version(claimed, known).is_ok() {
            return Ok(Ok(claimed));
        }
        let _one_at_a_time = self.asking.lock().await;
        let known = self.issued.load(Ordering::Relaxed);
        if check_claimed_version(claimed, known).is_ok() {
            return Ok(Ok(claimed));
        }
        let highest = store.highest_policy_version().await?;
        self.issued.fetch_max(highest, Ordering::Relaxed);
        Ok(check_claimed_version(claimed, highest))
    }

    /// Splits a batch into what is stored now and what is only counted (over budget).
    pub fn admit(&self, device_id: &str, records: &[ViolationRecord], now: UnixMillis) -> usize {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let budget = budgets
            .entry(device_id.to_string())
            .or_insert_with(|| DeviceBudget::new(&self.budget, now));
        budget.admit(&self.budget, records.iter().map(|r| r.kind.as_str()), now)
    }

    /// Whether one more child's request from this device is within its budget. One over it is
    /// not confirmed, so the device keeps it and sends it on a later stream: delayed, never lost.
    pub fn admit_request(&self, device_id: &str, now: UnixMillis) -> bool {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let budget = requests
            .entry(device_id.to_string())
            .or_insert_with(|| DeviceBudget::new(&self.request_budget, now));
        let admitted = budget.admit(&self.request_budget, std::iter::once("request"), now) == 1;
        // Nothing is summarised for requests: the device still holds every one of them.
        let _ = budget.take_summary(now);
        admitted
    }

    /// Whether an enrollment attempt from `peer` may be looked at: false once that address has
    /// spent its budget of wrong codes.
    pub fn enroll_allowed(&self, peer: Option<std::net::IpAddr>, now: UnixMillis) -> bool {
        let Some(peer) = peer else { return true };
        let mut enroll = self.enroll.lock().unwrap_or_else(|e| e.into_inner());
        match enroll.get_mut(&peer) {
            Some(b) => b.has_room(&self.enroll_failures, now),
            None => true,
        }
    }

    /// Counts a wrong or used-up enrollment code against `peer`.
    pub fn enroll_failed(&self, peer: Option<std::net::IpAddr>, now: UnixMillis) {
        let Some(peer) = peer else { return };
        let mut enroll = self.enroll.lock().unwrap_or_else(|e| e.into_inner());
        if enroll.len() >= MAX_ENROLL_PEERS && !enroll.contains_key(&peer) {
            enroll.clear();
        }
        let b = enroll
            .entry(peer)
            .or_insert_with(|| DeviceBudget::new(&self.enroll_failures, now));
        b.admit(&self.enroll_failures, std::iter::once("enroll"), now);
        let _ = b.take_summary(now);
    }

    /// The summary records to store for every device that went over its budget.
    pub fn summaries(&self, now: UnixMillis) -> Vec<(String, ViolationRecord)> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (device_id, budget) in budgets.iter_mut() {
            if let Some(over) = budget.take_summary(now) {
                for (kind, line) in over.lines() {
                    out.push((
                        device_id.clone(),
                        ViolationRecord {
                            id: format!("over-budget:{kind}:{now}"),
                            kind: "over_budget".into(),
                            channel: "unspecified".into(),
                            subject: String::new(),
                            detail: line,
                            occurred_at: over.since,
                        },
                    ));
                }
            }
        }
        out
    }

    /// Writes the summaries; on failure they are logged (the counts are small and the
    /// next window starts again).
    pub async fn write_summaries(&self, store: &dyn Store, now: UnixMillis) {
        for (device_id, record) in self.summaries(now) {
            if let Err(e) = store
                .record_violations(&device_id, std::slice::from_ref(&record), now)
                .await
            {
                tracing::warn!(device = %device_id, error = %e, detail = %record.detail, "could not store an over-budget summary");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn a_version_this_controller_pushed_is_believed_without_asking_the_store() {
        // A fresh store has issued nothing, so only the push's note can make version 7 believed:
        // 10,000 acknowledgements of a lockdown cost no reads (issue 14).
        let store = SqliteStore::in_memory().await.unwrap();
        let limits = DeviceLimits::default();
        assert!(limits.check_version(&store, 7).await.unwrap().is_err());
        limits.issued(7);
        assert_eq!(limits.check_version(&store, 7).await.unwrap().ok(), Some(7));
        assert!(
            limits.check_version(&store, 8).await.unwrap().is_err(),
            "a version never issued is still refused"
        );
    }
}
