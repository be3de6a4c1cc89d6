//! Category lists and a home's exceptions (WB1, WB4): what may be imported, what a home may
//! allow or deny, and what each device must be sent so it holds the lists in force.
//!
//! Versions: each import of a category is a new version (1, 2, …) named by the SHA-256 of its
//! compiled bytes. A device says which versions it holds; it is sent only the categories it
//! lacks or holds an older version of — as the change from the version it holds when the
//! controller still has that version and the change is smaller, else the whole list. A home's
//! exceptions travel in its devices' policies (a few names), never as a list.
//!
//! Pure: the compiled bytes and sizes are passed in.

use super::filter::{DOH, SOCIAL_NETWORKING, canonical_category};

/// Categories a list may be imported for: the harmful ones every profile blocks, the ones a
/// "strict" profile adds, and the two built into the agent (an import extends them).
pub const KNOWN: &[&str] = &[
    "adult",
    "gambling",
    "drugs",
    "violence",
    "hacking",
    "malware",
    "self-harm",
    "chat",
    "vpn",
    "stalkerware",
    SOCIAL_NETWORKING,
    DOH,
];

/// The source and licence recorded when an import does not name them: the lists most UK and
/// French schools use.
pub const UT1_SOURCE: &str =
    "UT1 blacklists, Université Toulouse Capitole (https://dsi.ut-capitole.fr/blacklists/)";
pub const UT1_LICENCE: &str = "CC BY-SA 4.0";

/// Why an import or an exception was refused, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterInputError {
    #[error("{0:?} is not a filter category Haven knows{1}; the categories are: {list}", list = KNOWN.join(", "))]
    UnknownCategory(String, String),
    #[error(
        "the list for {category} has no usable domain names ({skipped} lines were not names): \
         give a file with one domain a line (or the UT1 folder holding {category}/domains); \
         nothing was imported"
    )]
    Empty { category: String, skipped: u64 },
    #[error(
        "{0:?} is not a domain name: give a site like example.com (no https://, no path, no spaces)"
    )]
    BadDomain(String),
    #[error(
        "{0} is a protected helpline or emergency site (R19): it is always reachable and cannot be blocked"
    )]
    Protected(String),
    #[error("an exception is \"allow\" or \"deny\", not {0:?}")]
    BadKind(String),
}

/// The category an import names, in its one spelling, if Haven knows it (UT1 names such as
/// `mixed_adult` or `drogue` are read as the UKSIC ones).
pub fn known_category(name: &str) -> Result<String, FilterInputError> {
    let c = canonical_category(name);
    if KNOWN.contains(&c.as_str()) {
        return Ok(c);
    }
    let hint = KNOWN
        .iter()
        .find(|k| close(k, &c))
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    Err(FilterInputError::UnknownCategory(
        name.trim().to_string(),
        hint,
    ))
}

/// Whether two spellings differ by at most two edits (a typo).
fn close(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()] <= 2
}

/// A compiled list worth storing: at least one name.
pub fn check_import(category: &str, domains: u64, skipped: u64) -> Result<(), FilterInputError> {
    if domains == 0 {
        return Err(FilterInputError::Empty {
            category: category.to_string(),
            skipped,
        });
    }
    Ok(())
}

/// A home's exception kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionKind {
    /// Let the site through the category lists for the home's devices.
    Allow,
    /// Block the site on the home's devices.
    Deny,
}

impl ExceptionKind {
    pub fn parse(text: &str) -> Result<Self, FilterInputError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "allow" => Ok(Self::Allow),
            "deny" | "block" => Ok(Self::Deny),
            other => Err(FilterInputError::BadKind(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// The domain an exception names, lower case, without `www.`-style noise a person might
/// paste (a scheme, a path, a trailing dot). Denying a protected site is refused (R19).
pub fn exception_domain(text: &str, kind: ExceptionKind) -> Result<String, FilterInputError> {
    let t = text.trim();
    let t = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
        .unwrap_or(t);
    let t = t.split('/').next().unwrap_or_default();
    let name = haven_proto::domain_list::clean_name(t.as_bytes())
        .filter(|n| n.contains(&b'.'))
        .ok_or_else(|| FilterInputError::BadDomain(text.trim().to_string()))?;
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    if kind == ExceptionKind::Deny && haven_protected::is_protected_domain(&name) {
        return Err(FilterInputError::Protected(name));
    }
    Ok(name)
}

/// A version of a category list: the controller's current one, or one a device holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListVersion {
    pub category: String,
    pub version: u64,
    pub sha256: String,
}

/// What to send a device for one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub category: String,
    pub version: u64,
    /// `Some(v)`: the change from version `v`, which the device holds; `None`: the whole list.
    pub from: Option<u64>,
}

/// What a device holding `held` must be sent so it holds `current`. `change_size(category,
/// from, to)` is the size of the change between two versions when the controller still has
/// both, and `full_size(category)` the size of the whole current list. A held list whose
/// SHA-256 does not match the version it claims is sent whole (it is damaged or not ours).
pub fn to_send(
    current: &[ListVersion],
    held: &[ListVersion],
    full_size: impl Fn(&str) -> usize,
    change_size: impl Fn(&str, u64, u64) -> Option<usize>,
) -> Vec<Send> {
    let mut out = Vec::new();
    for want in current {
        let has = held.iter().find(|h| h.category == want.category);
        match has {
            Some(h) if h.version == want.version && h.sha256 == want.sha256 => {}
            Some(h) if h.version < want.version && h.version > 0 => {
                let from = change_size(&want.category, h.version, want.version)
                    .filter(|&change| change < full_size(&want.category))
                    .map(|_| h.version);
                out.push(Send {
                    category: want.category.clone(),
                    version: want.version,
                    from,
                });
            }
            _ => out.push(Send {
                category: want.category.clone(),
                version: want.version,
                from: None,
            }),
        }
    }
    out
}

/// How many versions of a category the controller keeps: the current one and the one before,
/// so a device that missed one import gets only the change.
pub const VERSIONS_KEPT: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(category: &str, version: u64, sha: &str) -> ListVersion {
        ListVersion {
            category: category.into(),
            version,
            sha256: sha.into(),
        }
    }

    // clause WB4: only what changed is sent.
    #[test]
    fn wb4_a_device_is_sent_only_the_categories_it_lacks_or_holds_an_older_version_of() {
        let current = [
            v("adult", 3, "a3"),
            v("drugs", 1, "d1"),
            v("gambling", 2, "g2"),
        ];
        let held = [
            v("adult", 3, "a3"),
            v("gambling", 1, "g1"),
            v("vpn", 1, "v1"),
        ];
        let sends = to_send(&current, &held, |_| 1000, |_, _, _| Some(10));
        assert_eq!(
            sends,
            [
                Send {
                    category: "drugs".into(),
                    version: 1,
                    from: None
                },
                Send {
                    category: "gambling".into(),
                    version: 2,
                    from: Some(1)
                },
            ]
        );
        // Nothing at all when the device is up to date.
        assert!(to_send(&current, &current, |_| 1000, |_, _, _| Some(1)).is_empty());
    }

    // clause WB4: a change is sent only when it is smaller, and only from a version we still
    // hold; a list that does not match its version is sent whole.
    #[test]
    fn wb4_the_whole_list_goes_when_the_change_is_bigger_unknown_or_the_copy_is_damaged() {
        let current = [v("adult", 3, "a3")];
        let bigger = to_send(
            &current,
            &[v("adult", 2, "a2")],
            |_| 100,
            |_, _, _| Some(150),
        );
        assert_eq!(bigger[0].from, None);
        let gone = to_send(&current, &[v("adult", 1, "a1")], |_| 100, |_, _, _| None);
        assert_eq!(gone[0].from, None);
        let damaged = to_send(&current, &[v("adult", 3, "zz")], |_| 100, |_, _, _| Some(1));
        assert_eq!(damaged[0].from, None);
        // A device claiming a newer version than exists gets ours.
        let ahead = to_send(&current, &[v("adult", 9, "a9")], |_| 100, |_, _, _| Some(1));
        assert_eq!(ahead[0].from, None);
    }

    // clause WB4: categories are spelt one way; a typo is refused with a suggestion.
    #[test]
    fn wb4_categories_are_checked_and_typos_named() {
        assert_eq!(known_category("mixed_adult").unwrap(), "adult");
        assert_eq!(known_category("Drogue").unwrap(), "drugs");
        assert_eq!(
            known_category("social_networks").unwrap(),
            SOCIAL_NETWORKING
        );
        let e = known_category("gamblin").unwrap_err().to_string();
        assert!(e.contains("did you mean gambling?"), "{e}");
        assert!(e.contains("adult, gambling"), "{e}");
        assert!(known_category("weather").is_err());
        assert!(
            check_import("adult", 0, 3)
                .unwrap_err()
                .to_string()
                .contains("no usable")
        );
        assert!(
            crate::domain::filter::HARMFUL
                .iter()
                .all(|h| KNOWN.contains(h))
        );
    }

    // clause WB4, R19: a home's exceptions are plain domains; a helpline cannot be denied.
    #[test]
    fn r19_wb4_exceptions_are_domains_and_never_deny_a_helpline() {
        assert_eq!(
            exception_domain(" https://Games.Example/path ", ExceptionKind::Allow).unwrap(),
            "games.example"
        );
        assert!(exception_domain("not a domain", ExceptionKind::Allow).is_err());
        assert!(exception_domain("localhost", ExceptionKind::Deny).is_err());
        assert!(matches!(
            exception_domain("childline.org.uk", ExceptionKind::Deny),
            Err(FilterInputError::Protected(_))
        ));
        assert!(exception_domain("childline.org.uk", ExceptionKind::Allow).is_ok());
        assert_eq!(ExceptionKind::parse("Deny").unwrap(), ExceptionKind::Deny);
        assert!(ExceptionKind::parse("maybe").is_err());
    }
}
