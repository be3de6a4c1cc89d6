//! One-time enrollment codes: how a new device is tied to a child.
//!
//! A code is 12 characters from Crockford's base-32 alphabet (no I, L, O or U, so it can be
//! read aloud and typed on a tablet without confusion), shown as `XXXX-XXXX-XXXX`. That is 60
//! bits: guessing one inside its lifetime is not practical. Only a hash of the code is stored.

use super::UnixMillis;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 12;

pub const DEFAULT_VALIDITY_MINUTES: u32 = 24 * 60;
pub const MAX_VALIDITY_MINUTES: u32 = 7 * 24 * 60;

/// Makes a display code from 12 random bytes (each reduced to one of 32 symbols).
pub fn code_from_random(random: [u8; CODE_LEN]) -> String {
    let symbols: String = random
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}-{}", &symbols[0..4], &symbols[4..8], &symbols[8..12])
}

/// Reads a code as a person might type it: any case, with or without dashes or spaces,
/// O for 0 and I or L for 1. Returns `None` if it cannot be a code at all.
pub fn normalise_code(typed: &str) -> Option<String> {
    let mut out = String::with_capacity(CODE_LEN);
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !ALPHABET.contains(&(c as u8)) || !c.is_ascii() {
            return None;
        }
        out.push(c);
    }
    (out.len() == CODE_LEN).then_some(out)
}

/// How long a new code should work, from what staff asked for.
pub fn validity_minutes(requested: u32) -> Result<u32, String> {
    match requested {
        0 => Ok(DEFAULT_VALIDITY_MINUTES),
        m if m > MAX_VALIDITY_MINUTES => Err(format!(
            "an enrollment code can work for at most 7 days ({MAX_VALIDITY_MINUTES} minutes); ask for less"
        )),
        m => Ok(m),
    }
}

/// What was found when a device presented a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeState {
    Usable,
    AlreadyUsed,
    Expired,
    /// Cancelled by staff, or dead because the member of staff who made it was revoked or
    /// the child it was for left (was archived): a code outlives neither.
    Cancelled,
}

/// Why a code that was never used may have stopped working before it expired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodeLife {
    pub cancelled: bool,
    pub creator_revoked: bool,
    pub child_archived: bool,
}

impl CodeState {
    pub fn of(used_at: Option<UnixMillis>, expires_at: UnixMillis, now: UnixMillis) -> Self {
        Self::judge(used_at, expires_at, CodeLife::default(), now)
    }

    /// What a code is now, all things considered. Used beats everything (that device exists);
    /// a cancelled code is cancelled even before it would have expired.
    pub fn judge(
        used_at: Option<UnixMillis>,
        expires_at: UnixMillis,
        life: CodeLife,
        now: UnixMillis,
    ) -> Self {
        if used_at.is_some() {
            CodeState::AlreadyUsed
        } else if life.cancelled || life.creator_revoked || life.child_archived {
            CodeState::Cancelled
        } else if now >= expires_at {
            CodeState::Expired
        } else {
            CodeState::Usable
        }
    }

    /// One word for lists: usable, used, expired, cancelled.
    pub fn word(self) -> &'static str {
        match self {
            CodeState::Usable => "usable",
            CodeState::AlreadyUsed => "used",
            CodeState::Expired => "expired",
            CodeState::Cancelled => "cancelled",
        }
    }
}

/// What staff see of a code in lists: its first group only, so a list never shows a usable
/// code ("K7QD-…").
pub fn code_hint(code: &str) -> String {
    let first: String = code.chars().take(4).collect();
    format!("{first}-…")
}

/// The refusal a device (and the person holding it) sees for a code that cannot be used.
pub fn refusal(state: Option<CodeState>) -> &'static str {
    match state {
        None => {
            "this enrollment code is not known: check it, or ask staff for a new one with `haven device enroll`"
        }
        Some(CodeState::AlreadyUsed) => {
            "this enrollment code has already been used: each code enrolls one device; ask staff for a new one"
        }
        Some(CodeState::Expired) => {
            "this enrollment code has expired: ask staff for a new one with `haven device enroll`"
        }
        Some(CodeState::Cancelled) => {
            "this enrollment code was cancelled (or the person who made it has left): ask staff for a new one with `haven device enroll`"
        }
        Some(CodeState::Usable) => "this enrollment code can be used",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A code dies when it is cancelled, when its maker is revoked or when the child leaves,
    // and a list never shows enough of it to use it.
    #[test]
    fn a_code_dies_with_its_maker_or_its_child_or_when_cancelled() {
        let live = CodeLife::default();
        assert_eq!(CodeState::judge(None, 100, live, 50), CodeState::Usable);
        for life in [
            CodeLife {
                cancelled: true,
                ..live
            },
            CodeLife {
                creator_revoked: true,
                ..live
            },
            CodeLife {
                child_archived: true,
                ..live
            },
        ] {
            assert_eq!(CodeState::judge(None, 100, life, 50), CodeState::Cancelled);
            assert!(refusal(Some(CodeState::Cancelled)).contains("cancelled"));
        }
        assert_eq!(
            CodeState::judge(
                Some(10),
                100,
                CodeLife {
                    cancelled: true,
                    ..live
                },
                50
            ),
            CodeState::AlreadyUsed
        );
        assert_eq!(code_hint("K7QD-M2XP-9HTR"), "K7QD-…");
        assert_eq!(CodeState::Cancelled.word(), "cancelled");
    }

    #[test]
    fn codes_are_grouped_and_read_back_forgivingly() {
        let code = code_from_random([0, 1, 2, 3, 31, 32, 33, 200, 255, 17, 18, 19]);
        assert_eq!(code.len(), 14);
        assert_eq!(code.matches('-').count(), 2);
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(normalise_code(&typed).unwrap(), code.replace('-', ""));
        assert_eq!(normalise_code("OIL0-0000-0000").unwrap(), "011000000000");
        assert_eq!(normalise_code("ABCD"), None);
        assert_eq!(
            normalise_code("ABCD-EFGH-JKUM"),
            None,
            "U is not in the alphabet"
        );
    }

    #[test]
    fn codes_work_once_and_expire() {
        assert_eq!(CodeState::of(None, 100, 99), CodeState::Usable);
        assert_eq!(CodeState::of(None, 100, 100), CodeState::Expired);
        assert_eq!(CodeState::of(Some(50), 100, 60), CodeState::AlreadyUsed);
    }

    #[test]
    fn validity_defaults_to_a_day_and_is_capped_at_a_week() {
        assert_eq!(validity_minutes(0).unwrap(), 24 * 60);
        assert_eq!(validity_minutes(30).unwrap(), 30);
        assert!(validity_minutes(MAX_VALIDITY_MINUTES + 1).is_err());
    }
}
