//! A staff token's lifetime: when it expires and what a person is told when it has.
//!
//! Tokens are bearer secrets on staff laptops; a lost laptop or a leaver whose account was not
//! revoked must not mean a way into children's records for ever. Every token expires (90 days
//! by default) and its owner or an administrator rotates it before then.

use super::UnixMillis;

/// The default lifetime of a staff token.
pub const DEFAULT_LIFETIME_DAYS: u32 = 90;

const DAY_MS: i64 = 24 * 3_600_000;

/// When a token made at `now` stops working.
pub fn expires_at(now: UnixMillis, lifetime_days: u32) -> UnixMillis {
    now.saturating_add(i64::from(lifetime_days).saturating_mul(DAY_MS))
}

/// Refuses an expired token with what to do; `None` (a row from before tokens expired) is
/// treated as expired too, so no token lives for ever.
pub fn check_not_expired(expires_at: Option<UnixMillis>, now: UnixMillis) -> Result<(), String> {
    match expires_at {
        Some(at) if now < at => Ok(()),
        _ => Err("this staff token has expired: ask an administrator for a new one; rotate yours before it expires".into()),
    }
}

/// Days left before a token expires, rounded down (0 on its last day or after).
pub fn days_left(expires_at: UnixMillis, now: UnixMillis) -> i64 {
    ((expires_at - now) / DAY_MS).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_until_it_expires_and_never_for_ever() {
        let made = 1_000;
        let end = expires_at(made, 90);
        assert_eq!(end - made, 90 * DAY_MS);
        assert!(check_not_expired(Some(end), end - 1).is_ok());
        let e = check_not_expired(Some(end), end).unwrap_err();
        assert!(e.contains("expired") && e.contains("administrator"), "{e}");
        assert!(check_not_expired(None, 0).is_err());
        assert_eq!(days_left(end, made), 90);
        assert_eq!(days_left(end, end + 5), 0);
        assert_eq!(expires_at(i64::MAX - 1, 90), i64::MAX);
    }
}
