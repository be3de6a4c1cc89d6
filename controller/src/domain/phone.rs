//! Phone numbers as Haven stores them: E.164 for ordinary numbers, bare digits for the short
//! codes (999, 112, 116 123, …) that only protected contacts may use.
//!
//! Numbers are compared in this form everywhere — above all when checking that a plan does not
//! touch a protected contact (R19) — so "0800 1111", "08001111" and "+44 800 1111" are one
//! number. The `phonenumber` crate does the parsing; a number typed without a country code is
//! read as a UK number, because Haven is for children's homes in England.

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, PhoneNumber};

/// Numbers typed without `+` or `00` are read as numbers in this region.
pub const DEFAULT_REGION: Id = Id::GB;

/// Anything longer than this is not a phone number, however it is spaced; it is refused before
/// the parser sees it.
const MAX_TYPED_LENGTH: usize = 40;

/// Why a typed phone number cannot be accepted, in words a member of staff can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty: type the number, e.g. 07700 900123")]
    Empty,
    #[error(
        "{raw:?} is not a phone number: use only digits, spaces, dashes, brackets and a leading +"
    )]
    NotDigits { raw: String },
    #[error(
        "{raw:?} has {digits} digits, too few for a phone number: type the whole number with its area code"
    )]
    TooShort { raw: String, digits: usize },
    #[error("{raw:?} has too many digits for a phone number (15 at most): check it")]
    TooLong { raw: String },
    #[error(
        "{raw:?} has an extension: Haven can only allow a whole number, so type it without the extension"
    )]
    Extension { raw: String },
    #[error("{raw:?} does not start with a country code Haven knows: check the digits after the +")]
    UnknownCountry { raw: String },
    #[error(
        "{raw:?} cannot be a phone number in {region}: it has the wrong number of digits; check it"
    )]
    WrongLength { raw: String, region: String },
    #[error(
        "{raw:?} is not a short code Haven knows (999, 112, 111, 116 000, 116 111, 116 123 …) and not a full phone number: check it"
    )]
    NotAShortCode { raw: String },
}

/// Short numbers that reach help and cannot be written in E.164: they are kept as dialled.
/// (999/112 emergency, 111 NHS, 101 police non-emergency, 116xxx harmonised helplines such as
/// 116 000 missing children, 116 111 children's helpline and 116 123 Samaritans.)
const KNOWN_SHORT_CODES: &[&str] = &[
    "999", "112", "111", "101", "105", "119", "116000", "116111", "116117", "116123",
];

/// Turns a typed number into E.164 ("07700 900123" → "+447700900123").
///
/// A number is accepted when it is a valid number for its country, or when it has a length
/// numbers there can have: the second keeps newly opened ranges (and Ofcom's drama ranges, used
/// in examples and training) from being refused while still catching typing mistakes.
pub fn normalise(raw: &str) -> Result<String, PhoneError> {
    let compact = compact(raw)?;
    let digits = compact.trim_start_matches('+').len();
    if digits < 7 {
        return Err(PhoneError::TooShort {
            raw: raw.trim().to_string(),
            digits,
        });
    }
    let number = parse(&compact).ok_or_else(|| PhoneError::UnknownCountry {
        raw: raw.trim().to_string(),
    })?;
    if number.extension().is_some() {
        return Err(PhoneError::Extension {
            raw: raw.trim().to_string(),
        });
    }
    let e164 = number.format().mode(Mode::E164).to_string();
    if e164.len() > 16 {
        return Err(PhoneError::TooLong {
            raw: raw.trim().to_string(),
        });
    }
    if valid(&number) || possible_length(&number, &e164) {
        Ok(e164)
    } else {
        let code = number.country().code();
        Err(PhoneError::WrongLength {
            raw: raw.trim().to_string(),
            region: if code == 44 {
                "the UK".into()
            } else {
                format!("the country with code +{code}")
            },
        })
    }
}

/// Normalises a number for a protected contact (R19): the short codes that reach help (999,
/// 112, 116 123 …) are kept as digits; anything else must be a full number and becomes E.164
/// ("0800 1111", Childline, becomes "+448001111").
pub fn normalise_protected(raw: &str) -> Result<String, PhoneError> {
    let compact = compact(raw)?;
    if !compact.starts_with('+') && KNOWN_SHORT_CODES.contains(&compact.as_str()) {
        return Ok(compact);
    }
    match normalise(raw) {
        Ok(n) => Ok(n),
        Err(PhoneError::TooShort { .. }) => Err(PhoneError::NotAShortCode {
            raw: raw.trim().to_string(),
        }),
        Err(e) => Err(e),
    }
}

/// The form two numbers are compared in: E.164 when the number normalises, otherwise its
/// digits (with a leading `+` kept). Never fails, so comparing can never be skipped because a
/// stored value is odd.
pub fn comparison_key(raw: &str) -> String {
    if let Ok(n) = normalise_protected(raw) {
        return n;
    }
    let trimmed = raw.trim();
    let plus = if trimmed.starts_with('+') { "+" } else { "" };
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    format!("{plus}{digits}")
}

/// Whether two typed numbers reach the same line.
pub fn same_number(a: &str, b: &str) -> bool {
    let (a, b) = (comparison_key(a), comparison_key(b));
    !a.is_empty() && a == b
}

/// Whether `raw` looks like a phone number at all (digits and separators), as opposed to a
/// messaging handle.
pub fn looks_like_number(raw: &str) -> bool {
    compact(raw).is_ok()
}

/// Removes separators and checks the characters, before the parser sees anything: the parser
/// has panicked on odd input in the past, so it only ever gets digits and one leading `+`.
fn compact(raw: &str) -> Result<String, PhoneError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    if trimmed.chars().count() > MAX_TYPED_LENGTH {
        return Err(PhoneError::TooLong {
            raw: trimmed.chars().take(MAX_TYPED_LENGTH).collect(),
        });
    }
    let mut out = String::with_capacity(trimmed.len());
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => {
                return Err(PhoneError::NotDigits {
                    raw: trimmed.to_string(),
                });
            }
        }
    }
    let digits = out.trim_start_matches('+').len();
    if digits == 0 {
        return Err(PhoneError::NotDigits {
            raw: trimmed.to_string(),
        });
    }
    if digits > 17 {
        // 15 digits is E.164's limit; two more allow for a typed "00" or national "0".
        return Err(PhoneError::TooLong {
            raw: trimmed.to_string(),
        });
    }
    Ok(out)
}

/// Parses cleaned digits, turning any panic inside the parser into "no number": a number Haven
/// cannot read is refused, never a crash.
fn parse(compact: &str) -> Option<PhoneNumber> {
    std::panic::catch_unwind(|| phonenumber::parse(Some(DEFAULT_REGION), compact).ok())
        .ok()
        .flatten()
}

fn valid(number: &PhoneNumber) -> bool {
    std::panic::catch_unwind(|| phonenumber::is_valid(number)).unwrap_or(false)
}

/// Whether the national part has a length that numbers in its country can have.
fn possible_length(number: &PhoneNumber, e164: &str) -> bool {
    let code = number.country().code().to_string();
    let Some(national) = e164
        .strip_prefix('+')
        .and_then(|d| d.strip_prefix(code.as_str()))
    else {
        return false;
    };
    let Ok(len) = u16::try_from(national.len()) else {
        return false;
    };
    std::panic::catch_unwind(|| {
        // A number in no assigned range has no region of its own when several share the
        // country code (+44: GB, Guernsey, Jersey, Isle of Man), so the main region's lengths
        // are used.
        let meta = number.metadata(&DATABASE).or_else(|| {
            let all = DATABASE.by_code(&number.country().code())?;
            all.iter()
                .find(|m| m.is_main_country_for_code())
                .or_else(|| all.first())
                .copied()
        });
        // The crate's metadata keeps lengths per kind of number (fixed line, mobile, …), not
        // on the general descriptor, so the lengths of every ordinary kind are pooled.
        meta.is_some_and(|meta| {
            let d = meta.descriptors();
            [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.shared_cost(),
                d.personal_number(),
                d.voip(),
                d.pager(),
                d.uan(),
            ]
            .into_iter()
            .flatten()
            .any(|desc| desc.possible_length().contains(&len))
        })
    })
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uk_numbers_become_e164() {
        assert_eq!(normalise("07700 900123").unwrap(), "+447700900123");
        assert_eq!(normalise("+44 7700 900123").unwrap(), "+447700900123");
        assert_eq!(normalise("0044 7700-900123").unwrap(), "+447700900123");
        assert_eq!(normalise("020 7946 0000").unwrap(), "+442079460000");
        assert_eq!(normalise("+1 202 555 0143").unwrap(), "+12025550143");
    }

    #[test]
    fn invalid_numbers_are_refused_with_the_reason() {
        let e = normalise("").unwrap_err();
        assert!(e.to_string().contains("empty"));
        let e = normalise("call nan").unwrap_err();
        assert!(matches!(e, PhoneError::NotDigits { .. }), "{e}");
        let e = normalise("12345").unwrap_err();
        assert!(e.to_string().contains("too few"), "{e}");
        let e = normalise("+44 7700 900123 4567").unwrap_err();
        assert!(e.to_string().contains("digits"), "{e}");
        let e = normalise("07700 9001").unwrap_err();
        assert!(e.to_string().contains("the UK"), "{e}");
        assert!(
            normalise("999").is_err(),
            "short codes are not ordinary numbers"
        );
        assert!(normalise("07700900123x5").is_err());
    }

    // clause R19: the numbers that reach help are accepted for protected contacts.
    #[test]
    fn r19_protected_short_codes_are_accepted() {
        assert_eq!(normalise_protected("999").unwrap(), "999");
        assert_eq!(normalise_protected("112").unwrap(), "112");
        assert_eq!(normalise_protected("116 123").unwrap(), "116123");
        assert_eq!(normalise_protected("0800 1111").unwrap(), "+448001111");
        assert_eq!(
            normalise_protected("07700 900123").unwrap(),
            "+447700900123"
        );
        assert!(matches!(
            normalise_protected("1234").unwrap_err(),
            PhoneError::NotAShortCode { .. }
        ));
    }

    #[test]
    fn the_same_number_typed_differently_matches() {
        assert!(same_number("08001111", "+44 800 1111"));
        assert!(same_number("0800 1111", "08001111"));
        assert!(same_number("999", "999"));
        assert!(!same_number("999", "112"));
        assert!(!same_number("", ""));
    }

    proptest! {
        // No input, however odd, makes normalising panic.
        #[test]
        fn normalising_never_panics(s in "\\PC{0,60}") {
            let _ = normalise(&s);
            let _ = normalise_protected(&s);
            let _ = comparison_key(&s);
        }

        #[test]
        fn normalising_digit_strings_never_panics(s in "[+0-9 ()-]{0,30}") {
            if let Ok(n) = normalise(&s) {
                prop_assert!(n.starts_with('+'));
                prop_assert_eq!(normalise(&n).ok(), Some(n.clone()), "E.164 is a fixed point");
            }
        }
    }
}
