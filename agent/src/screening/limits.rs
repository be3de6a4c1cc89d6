//! Limits on each client of the screening socket, so one account cannot flood the record or
//! starve the dialer: a per-account rate of questions and a cap on clients at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Questions an account may ask in a burst.
pub const BURST: f64 = 20.0;
/// Questions an account may ask per second, after a burst.
pub const PER_SECOND: f64 = 5.0;
/// Clients answered at once, in all.
pub const MAX_CLIENTS: usize = 16;
/// Clients answered at once for one account, so one account cannot take every slot.
pub const MAX_CLIENTS_PER_UID: usize = 4;

/// A token bucket per account (uid).
#[derive(Debug, Default)]
pub struct RateLimit {
    buckets: HashMap<u32, (f64, Instant)>,
}

impl RateLimit {
    /// Whether `uid` may ask one more question at `now`.
    pub fn allow(&mut self, uid: u32, now: Instant) -> bool {
        // Bounded: a device has a handful of accounts; forgetting them all only refills.
        if self.buckets.len() >= 4096 {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(uid).or_insert((BURST, now));
        let earned = now.saturating_duration_since(*last).as_secs_f64() * PER_SECOND;
        *tokens = (*tokens + earned).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Who holds the client slots now.
#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// The client slots; [`Slots::take`] gives a [`Slot`] that frees itself when dropped.
#[derive(Debug, Clone, Default)]
pub struct Slots(Arc<Mutex<Held>>);

/// One client's place; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    slots: Slots,
    uid: u32,
}

impl Slots {
    /// A slot for `uid`, or `None` when the service or this account is at its cap.
    pub fn take(&self, uid: u32) -> Option<Slot> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mine = held.by_uid.get(&uid).copied().unwrap_or(0);
        if held.total >= MAX_CLIENTS || mine >= MAX_CLIENTS_PER_UID {
            return None;
        }
        held.total += 1;
        held.by_uid.insert(uid, mine + 1);
        Some(Slot {
            slots: self.clone(),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(n) = held.by_uid.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.by_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn gd3_a_flood_from_one_account_is_throttled_and_others_still_ask() {
        let mut limit = RateLimit::default();
        let start = Instant::now();
        let allowed = (0..200).filter(|_| limit.allow(1000, start)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(limit.allow(1001, start), "another account is not throttled");
        // Questions come back with time.
        assert!(limit.allow(1000, start + Duration::from_secs(1)));
    }

    #[test]
    fn gd3_one_account_cannot_take_every_slot() {
        let slots = Slots::default();
        let mine: Vec<_> = (0..10).filter_map(|_| slots.take(7)).collect();
        assert_eq!(mine.len(), MAX_CLIENTS_PER_UID);
        let others: Vec<_> = (0..100).filter_map(|u| slots.take(100 + u)).collect();
        assert_eq!(others.len(), MAX_CLIENTS - MAX_CLIENTS_PER_UID);
        assert!(slots.take(9999).is_none());
        drop(mine);
        assert!(slots.take(7).is_some(), "dropped slots are free again");
    }
}
