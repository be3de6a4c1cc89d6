//! What a device may tell the controller: numbers checked against what was issued, and a
//! budget on how much it may write, so one misbehaving or hostile device cannot hurt the others.
//!
//! A device is trusted to say what it blocked, not to decide what the controller stores. Two
//! things are checked here, both pure (the caller passes the time and what was issued):
//! - a policy version a device claims to enforce must be one the controller has handed out;
//!   a larger one is a lie or a fault, recorded as tampering and never stored (a stored
//!   `i64::MAX` once broke every later policy change);
//! - the violations a device sends are admitted within a budget — a burst, a steady hourly
//!   rate and a daily total. Beyond it nothing is dropped silently: the excess is counted,
//!   by kind, into one summary record per device per window ("and 4,812 more
//!   unknown-contact attempts …"), and the writes staff and lockdowns need keep their turn.

use std::collections::BTreeMap;

use super::UnixMillis;

/// The largest policy version that can be stored (the database keeps signed 64-bit numbers).
pub const MAX_STORABLE_VERSION: u64 = i64::MAX as u64;

/// Why a claimed policy version is not believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeverIssued {
    pub claimed: u64,
    pub highest_issued: u64,
}

impl NeverIssued {
    /// The words stored with the tampering record.
    pub fn detail(&self) -> String {
        format!(
            "the device said it enforces policy version {}, but the controller has only issued up to {}; not stored",
            self.claimed, self.highest_issued
        )
    }
}

/// Checks a version a device says it enforces against the highest version ever issued.
/// Version 0 (the device's own safe default) is always believable.
pub fn check_claimed_version(claimed: u64, highest_issued: u64) -> Result<u64, NeverIssued> {
    if claimed <= highest_issued && claimed <= MAX_STORABLE_VERSION {
        Ok(claimed)
    } else {
        Err(NeverIssued {
            claimed,
            highest_issued,
        })
    }
}

/// How much one device may write. Documented in ARCHITECTURE.md ("device budgets").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Violations admitted at once after a quiet spell (a journal backlog after a week offline
    /// arrives in batches of 500).
    pub burst: u32,
    /// Violations admitted per hour, steadily.
    pub per_hour: u32,
    /// Violations stored per device per day (UTC), whatever the rate.
    pub per_day: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            burst: 2_000,
            per_hour: 600,
            per_day: 5_000,
        }
    }
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// One device's budget in use: a token bucket for the rate, a count for the day, and what
/// was counted over budget and not yet written as a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceBudget {
    tokens: f64,
    refilled_at: UnixMillis,
    day: i64,
    stored_today: u32,
    /// Kind → attempts counted over budget since `over_since`.
    over: BTreeMap<String, u64>,
    over_since: Option<UnixMillis>,
}

impl DeviceBudget {
    pub fn new(budget: &Budget, now: UnixMillis) -> Self {
        DeviceBudget {
            tokens: f64::from(budget.burst),
            refilled_at: now,
            day: now.div_euclid(DAY_MS),
            stored_today: 0,
            over: BTreeMap::new(),
            over_since: None,
        }
    }

    /// Admits the first `n` of a batch it can afford; `kinds` are the kinds of the records
    /// in order, and the ones after the admitted prefix are counted over budget. Returns how
    /// many are admitted.
    pub fn admit<'k>(
        &mut self,
        budget: &Budget,
        kinds: impl ExactSizeIterator<Item = &'k str>,
        now: UnixMillis,
    ) -> usize {
        let elapsed = (now - self.refilled_at).max(0) as f64;
        self.tokens = (self.tokens + elapsed * f64::from(budget.per_hour) / HOUR_MS as f64)
            .min(f64::from(budget.burst));
        self.refilled_at = now.max(self.refilled_at);
        let today = now.div_euclid(DAY_MS);
        if today != self.day {
            self.day = today;
            self.stored_today = 0;
        }
        let by_rate = self.tokens.floor().max(0.0) as usize;
        let by_day = budget.per_day.saturating_sub(self.stored_today) as usize;
        let n = kinds.len();
        let admitted = n.min(by_rate).min(by_day);
        self.tokens -= admitted as f64;
        self.stored_today = self
            .stored_today
            .saturating_add(u32::try_from(admitted).unwrap_or(u32::MAX));
        for kind in kinds.skip(admitted) {
            *self.over.entry(kind.to_string()).or_default() += 1;
            self.over_since.get_or_insert(now);
        }
        admitted
    }

    /// Whether one more would be admitted now, without using it up (for refusing a caller that
    /// has already spent its budget before doing any work for it).
    pub fn has_room(&mut self, budget: &Budget, now: UnixMillis) -> bool {
        let elapsed = (now - self.refilled_at).max(0) as f64;
        self.tokens = (self.tokens + elapsed * f64::from(budget.per_hour) / HOUR_MS as f64)
            .min(f64::from(budget.burst));
        self.refilled_at = now.max(self.refilled_at);
        if now.div_euclid(DAY_MS) != self.day {
            self.day = now.div_euclid(DAY_MS);
            self.stored_today = 0;
        }
        self.tokens >= 1.0 && self.stored_today < budget.per_day
    }

    /// Takes what was counted over budget as summaries to store, if there is any.
    pub fn take_summary(&mut self, now: UnixMillis) -> Option<OverBudget> {
        let since = self.over_since.take()?;
        let counts = std::mem::take(&mut self.over);
        (!counts.is_empty()).then_some(OverBudget {
            since,
            until: now,
            counts,
        })
    }
}

/// Attempts counted over a device's budget between two times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    pub since: UnixMillis,
    pub until: UnixMillis,
    pub counts: BTreeMap<String, u64>,
}

impl OverBudget {
    /// One line per kind, as staff read it beside the records that were stored:
    /// "and 4,812 more unknown-contact attempts in the last 60 minutes (over this device's
    /// budget; not stored one by one)".
    pub fn lines(&self) -> Vec<(String, String)> {
        let minutes = ((self.until - self.since).max(0) / 60_000).max(1);
        self.counts
            .iter()
            .map(|(kind, n)| {
                let words = kind.replace('_', "-");
                (
                    kind.clone(),
                    format!(
                        "and {} more {words} attempts in the last {minutes} minute{} (over this device's budget; counted, not stored one by one)",
                        thousands(*n),
                        if minutes == 1 { "" } else { "s" }
                    ),
                )
            })
            .collect()
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A device claiming a version the controller never issued (i64::MAX once broke every
    // later policy change) is refused; what was issued, and 0, are believed.
    #[test]
    fn a_claimed_version_must_have_been_issued() {
        assert_eq!(check_claimed_version(0, 0), Ok(0));
        assert_eq!(check_claimed_version(41, 42), Ok(41));
        assert_eq!(check_claimed_version(42, 42), Ok(42));
        let e = check_claimed_version(i64::MAX as u64, 42).unwrap_err();
        assert!(
            e.detail().contains("only issued up to 42"),
            "{}",
            e.detail()
        );
        assert!(check_claimed_version(u64::MAX, u64::MAX).is_err());
        assert!(check_claimed_version(43, 42).is_err());
    }

    fn kinds(n: usize, kind: &str) -> Vec<&str> {
        vec![kind; n]
    }

    // A flood is admitted up to the burst, then at the hourly rate; the rest is counted by
    // kind into one summary, never dropped silently.
    #[test]
    fn a_flood_is_admitted_within_budget_and_the_rest_counted() {
        let b = Budget {
            burst: 100,
            per_hour: 60,
            per_day: 1_000,
        };
        let mut d = DeviceBudget::new(&b, 0);
        assert_eq!(d.admit(&b, kinds(80, "unknown_contact").into_iter(), 0), 80);
        assert_eq!(d.admit(&b, kinds(50, "unknown_contact").into_iter(), 0), 20);
        assert_eq!(d.admit(&b, kinds(5, "web_blocked").into_iter(), 0), 0);
        // A minute later one more token has come back.
        assert_eq!(d.admit(&b, kinds(3, "app_blocked").into_iter(), 60_000), 1);
        let s = d.take_summary(3_600_000).unwrap();
        assert_eq!(s.counts["unknown_contact"], 30);
        assert_eq!(s.counts["web_blocked"], 5);
        assert_eq!(s.counts["app_blocked"], 2);
        let lines = s.lines();
        assert!(
            lines.iter().any(|(k, l)| k == "unknown_contact"
                && l.starts_with("and 30 more unknown-contact attempts in the last 60 minutes")),
            "{lines:?}"
        );
        assert_eq!(d.take_summary(3_600_001), None);
    }

    // The daily total holds whatever the rate, and starts again the next day.
    #[test]
    fn the_daily_total_caps_what_is_stored() {
        let b = Budget {
            burst: 1_000,
            per_hour: 1_000_000,
            per_day: 150,
        };
        let mut d = DeviceBudget::new(&b, 0);
        assert_eq!(d.admit(&b, kinds(100, "x").into_iter(), 0), 100);
        assert_eq!(d.admit(&b, kinds(100, "x").into_iter(), 1_000), 50);
        assert_eq!(d.admit(&b, kinds(10, "x").into_iter(), DAY_MS + 1), 10);
        assert_eq!(thousands(4_812), "4,812");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    // Wrong enrollment codes from one address: refused once its budget is spent, and room
    // comes back with time.
    #[test]
    fn has_room_says_whether_one_more_would_be_admitted() {
        let b = Budget {
            burst: 2,
            per_hour: 60,
            per_day: 100,
        };
        let mut d = DeviceBudget::new(&b, 0);
        assert!(d.has_room(&b, 0));
        assert_eq!(d.admit(&b, kinds(2, "x").into_iter(), 0), 2);
        assert!(!d.has_room(&b, 0));
        assert!(d.has_room(&b, 60_000));
    }

    // A clock that goes backwards neither mints tokens nor panics.
    #[test]
    fn a_clock_going_backwards_gives_nothing_extra() {
        let b = Budget {
            burst: 10,
            per_hour: 3_600,
            per_day: 1_000,
        };
        let mut d = DeviceBudget::new(&b, 1_000_000);
        assert_eq!(d.admit(&b, kinds(10, "x").into_iter(), 1_000_000), 10);
        assert_eq!(d.admit(&b, kinds(10, "x").into_iter(), 0), 0);
    }
}
