//! How long a device's certificate lives, when it is renewed, and how its standing reads to
//! staff (D1, D7).
//!
//! A device is its certificate (invariant 5), so a stolen or copied identity must not work for
//! years: certificates are short-lived (30 days by default) and renewed over the open `Sync`
//! stream with a new key made on the device. A certificate is renewed once less than a third
//! of the configured lifetime is left — and also when *more* than the lifetime is left (plus
//! the clock skew allowance), which is how certificates from before renewal existed (11 years)
//! or from a longer configured lifetime are moved onto the short one at their next check.

use super::UnixMillis;

/// The default lifetime of a device certificate.
pub const DEFAULT_LIFETIME_DAYS: u32 = 30;
/// How far back a new certificate's `notBefore` is set, so a device whose clock is a little
/// behind the controller's can still use it at once.
pub const CLOCK_SKEW_MS: i64 = 5 * 60_000;
/// The shortest lifetime the controller accepts (tests use a few seconds).
pub const MIN_LIFETIME_MS: i64 = 1_000;

const DAY_MS: i64 = 24 * 3_600_000;

/// The lifetime of a new device certificate, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime(i64);

impl Lifetime {
    pub fn days(days: u32) -> Self {
        Lifetime((i64::from(days) * DAY_MS).max(MIN_LIFETIME_MS))
    }
    pub fn seconds(secs: u64) -> Self {
        Lifetime(
            i64::try_from(secs)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000)
                .max(MIN_LIFETIME_MS),
        )
    }
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime::days(DEFAULT_LIFETIME_DAYS)
    }
}

/// `notBefore` and `notAfter` of a certificate signed at `now`.
pub fn validity(now: UnixMillis, lifetime: Lifetime) -> (UnixMillis, UnixMillis) {
    (
        now.saturating_sub(CLOCK_SKEW_MS),
        now.saturating_add(lifetime.millis()),
    )
}

/// Whether a certificate valid until `not_after` is due for renewal at `now`: less than a third
/// of the lifetime left, or more than the whole lifetime left (an old long-lived certificate).
pub fn renewal_due(not_after: UnixMillis, now: UnixMillis, lifetime: Lifetime) -> bool {
    let left = not_after.saturating_sub(now);
    left < lifetime.millis() / 3 || left > lifetime.millis().saturating_add(CLOCK_SKEW_MS)
}

/// How often an open stream looks again at whether its certificate is due: a twentieth of the
/// lifetime, between half a second and an hour.
pub fn check_every_ms(lifetime: Lifetime) -> i64 {
    (lifetime.millis() / 20).clamp(500, 3_600_000)
}

/// A device's certificate as staff read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not yet due for renewal.
    Current,
    /// Due and not yet renewed: the device has not connected since (or renewal failed). It
    /// keeps working until `not_after`.
    RenewalOverdue,
    /// Past `not_after`: the device cannot connect and must be enrolled again.
    Expired,
    /// An old long-lived certificate, renewed onto the short lifetime when the device next
    /// connects.
    LongLived,
}

pub fn standing(not_after: UnixMillis, now: UnixMillis, lifetime: Lifetime) -> Standing {
    let left = not_after.saturating_sub(now);
    if left <= 0 {
        Standing::Expired
    } else if left < lifetime.millis() / 3 {
        Standing::RenewalOverdue
    } else if left > lifetime.millis().saturating_add(CLOCK_SKEW_MS) {
        Standing::LongLived
    } else {
        Standing::Current
    }
}

impl Standing {
    /// What staff read next to the expiry date.
    pub fn words(self) -> &'static str {
        match self {
            Standing::Current => "renewed automatically while the device is online",
            Standing::RenewalOverdue => {
                "not renewed yet: the device has not been online since renewal was due; switch it on and connect it before this date, or it must be enrolled again with a new code"
            }
            Standing::Expired => {
                "expired: the device cannot connect; enroll it again with a new code (`haven device enroll`)"
            }
            Standing::LongLived => {
                "issued before certificates were short-lived; renewed onto the short lifetime when the device next connects"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn d7_a_certificate_lives_thirty_days_by_default_and_is_renewed_in_its_last_third() {
        let life = Lifetime::default();
        assert_eq!(life.millis(), 30 * DAY_MS);
        let now = 1_700_000_000_000;
        let (nb, na) = validity(now, life);
        assert_eq!(na - now, 30 * DAY_MS);
        assert!(nb < now);
        // Fresh: not due. Two thirds gone: due.
        assert!(!renewal_due(na, now, life));
        assert!(!renewal_due(na, now + 19 * DAY_MS, life));
        assert!(renewal_due(na, now + 21 * DAY_MS, life));
        assert!(renewal_due(na, na + 1, life));
        assert_eq!(standing(na, now, life), Standing::Current);
        assert_eq!(
            standing(na, now + 21 * DAY_MS, life),
            Standing::RenewalOverdue
        );
        assert_eq!(standing(na, na, life), Standing::Expired);
    }

    #[test]
    fn d7_an_eleven_year_certificate_is_renewed_onto_the_short_lifetime() {
        let life = Lifetime::days(30);
        let now = 1_700_000_000_000;
        let eleven_years = now + 11 * 365 * DAY_MS;
        assert!(renewal_due(eleven_years, now, life));
        assert_eq!(standing(eleven_years, now, life), Standing::LongLived);
        // Lowering the lifetime renews certificates made under the longer one.
        let (_, thirty) = validity(now, life);
        assert!(renewal_due(thirty, now, Lifetime::days(7)));
    }

    #[test]
    fn lifetimes_in_seconds_are_for_tests_and_never_zero() {
        assert_eq!(Lifetime::seconds(6).millis(), 6_000);
        assert_eq!(Lifetime::seconds(0).millis(), MIN_LIFETIME_MS);
        assert_eq!(Lifetime::days(0).millis(), MIN_LIFETIME_MS);
        assert_eq!(check_every_ms(Lifetime::seconds(6)), 500);
        assert_eq!(check_every_ms(Lifetime::default()), 3_600_000);
        assert!(Lifetime::seconds(u64::MAX).millis() > 0);
    }
}
