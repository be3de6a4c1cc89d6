//! The built-in protected contacts: who a child in England can always reach, on any device, in
//! any state (Regulation 19, Regulation 22, clause R19).
//!
//! This is the single source of truth that both the controller's policy compiler and the
//! agent's safe default read. It is data, not configuration: a home can add to it (its own
//! and each child's protected contacts live in the controller's records) but nothing can take
//! an entry away — no plan, lockdown, safe default, web setting or missing policy. That is why
//! it is compiled into every binary rather than fetched: a device that has never heard from its
//! controller, or whose cached policy is unreadable, still lets 999 and Childline through.
//!
//! Each entry cites the organisation's own published page for its number. When a number
//! changes, bump [`LIST_VERSION`] with the date it was checked.

/// When the numbers below were last checked against each organisation's own page.
pub const LIST_VERSION: &str = "2026-12-02";

/// One organisation a child can always reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinContact {
    /// The name the child reads ("Childline").
    pub name: &'static str,
    /// What they are for, in words a child understands.
    pub purpose: &'static str,
    /// Numbers as people write them; compared after [`normalise_address`].
    pub numbers: &'static [&'static str],
    /// Whether texts to these numbers are protected too (calls always are).
    pub texts: bool,
    /// Web destinations that stay resolvable and reachable with the web off, filtered or
    /// locked down; a name matches itself and every name under it.
    pub web: &'static [&'static str],
    /// The organisation's own page the numbers were taken from.
    pub source: &'static str,
}

/// Every built-in protected contact. Never remove an entry without a published reason: a
/// number that stops working does no harm staying allowed; a number that is missing can.
pub const BUILTIN: &[BuiltinContact] = &[
    BuiltinContact {
        name: "Emergency services",
        purpose: "police, ambulance, fire and coastguard in an emergency",
        // 112 reaches the same emergency service from any mobile in the UK and Europe. Texts
        // to 999 are the emergencySMS service for deaf and speech-impaired people.
        numbers: &["999", "112"],
        texts: true,
        web: &[],
        source: "https://www.emergencysms.net/ (texting 999); 999 and 112 reach the same emergency call centres (Ofcom, General Conditions C4)",
    },
    BuiltinContact {
        name: "Childline",
        purpose: "free, private help for anyone under 19, about anything",
        numbers: &["0800 1111"],
        texts: false,
        // 1-2-1 chat and email to a counsellor are on childline.org.uk.
        web: &["childline.org.uk"],
        source: "https://www.childline.org.uk/pages/about.aspx (\"Call free on 0800 1111, have a 1-2-1 chat online or send an email\")",
    },
    BuiltinContact {
        name: "NSPCC helpline",
        purpose: "for anyone worried about a child",
        numbers: &["0808 800 5000"],
        texts: false,
        web: &["nspcc.org.uk"],
        source: "https://www.nspcc.org.uk/what-you-can-do/report-abuse/ (\"Calls to 0808 800 5000 are free\")",
    },
    BuiltinContact {
        name: "Ofsted",
        purpose: "the inspectors of children's homes: general enquiries and concerns about a children's home",
        // General enquiries; the social care line for concerns and whistleblowing.
        numbers: &["0300 123 1231", "0300 123 3155"],
        texts: false,
        web: &["ofsted.gov.uk"],
        source: "https://www.gov.uk/government/organisations/ofsted ; https://www.gov.uk/government/publications/whistleblowing-about-childrens-social-care-services-to-ofsted",
    },
    BuiltinContact {
        name: "Help at Hand",
        purpose: "the Children's Commissioner's help for children in care or living away from home",
        numbers: &["0800 528 0731"],
        texts: false,
        web: &["childrenscommissioner.gov.uk"],
        source: "https://www.childrenscommissioner.gov.uk/help-at-hand/parents-carers-and-professionals/ (\"Phone us free on 0800 528 0731\")",
    },
];

/// The built-in contact an address belongs to, if any. `texting` says whether the attempt is
/// a text (an SMS) rather than a call; other messaging channels carry no phone numbers.
pub fn builtin_for_number(address: &str) -> Option<&'static BuiltinContact> {
    let wanted = normalise_address(address);
    if wanted.is_empty() {
        return None;
    }
    BUILTIN
        .iter()
        .find(|c| c.numbers.iter().any(|n| normalise_address(n) == wanted))
}

/// Whether `name` (a DNS name, any case, with or without the trailing dot) is one of the
/// protected web destinations or a name under one.
pub fn is_protected_domain(name: &str) -> bool {
    protected_domain_owner(name).is_some()
}

/// The built-in contact whose web destination `name` is (or is under).
pub fn protected_domain_owner(name: &str) -> Option<&'static BuiltinContact> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    BUILTIN.iter().find(|c| {
        c.web
            .iter()
            .any(|d| name == *d || name.strip_suffix(d).is_some_and(|head| head.ends_with('.')))
    })
}

/// Every protected web destination, for filters that need the whole list (allow-lists, the
/// firewall's always-reachable set).
pub fn protected_domains() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().flat_map(|c| c.web.iter().copied())
}

/// One form for an address, so `0800 1111`, `+44 800 1111`, `0044 8001111` and
/// `tel:08001111` are one number, and messaging handles compare without case.
///
/// Phone-like addresses (digits with spaces, `+`, `-`, `.`, brackets) become E.164 where they
/// are UK national numbers (`0…` → `+44…`, a bracketed trunk zero dropped); short codes such as
/// `999` stay as they are. Anything else is a handle: trimmed and lower-cased.
pub fn normalise_address(raw: &str) -> String {
    let trimmed = raw.trim();
    let body = trimmed
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("tel:"))
        .map_or(trimmed, |_| &trimmed[4..])
        .trim();
    let phone_like = body.chars().any(|c| c.is_ascii_digit())
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().\u{a0}".contains(c));
    if !phone_like {
        return trimmed.to_lowercase();
    }
    let digits: String = body.chars().filter(char::is_ascii_digit).collect();
    if body.starts_with('+') {
        // "+44 (0)7700 900123": the bracketed trunk zero is not dialled from abroad.
        if let Some(rest) = digits.strip_prefix("440") {
            return format!("+44{rest}");
        }
        return format!("+{digits}");
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return format!("+{rest}");
    }
    if let Some(rest) = digits.strip_prefix('0')
        && !rest.is_empty()
    {
        return format!("+44{rest}");
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    // clause R19: the emergency numbers and Childline are recognised however they are written.
    #[test]
    fn r19_emergency_numbers_and_childline_are_recognised_in_any_form() {
        for n in ["999", " 999 ", "tel:999", "112"] {
            assert_eq!(
                builtin_for_number(n).map(|c| c.name),
                Some("Emergency services"),
                "{n}"
            );
        }
        for n in [
            "0800 1111",
            "08001111",
            "+44 800 1111",
            "0044 800 1111",
            "+44 (0)800 1111",
        ] {
            assert_eq!(
                builtin_for_number(n).map(|c| c.name),
                Some("Childline"),
                "{n}"
            );
        }
        assert_eq!(
            builtin_for_number("0808 800 5000").map(|c| c.name),
            Some("NSPCC helpline")
        );
        assert_eq!(
            builtin_for_number("0800 528 0731").map(|c| c.name),
            Some("Help at Hand")
        );
        assert!(builtin_for_number("0300 123 3155").is_some());
        assert!(builtin_for_number("07700 900123").is_none());
        assert!(builtin_for_number("9999").is_none());
        assert!(builtin_for_number("").is_none());
        assert!(builtin_for_number("childline").is_none());
    }

    // clause R19: protected web destinations match themselves and names under them only.
    #[test]
    fn r19_protected_web_names_match_at_a_dot() {
        assert!(is_protected_domain("childline.org.uk"));
        assert!(is_protected_domain("www.Childline.org.uk."));
        assert!(is_protected_domain("reports.ofsted.gov.uk"));
        assert!(is_protected_domain("www.childrenscommissioner.gov.uk"));
        assert!(!is_protected_domain("evilchildline.org.uk"));
        assert!(!is_protected_domain("childline.org.uk.example.com"));
        assert!(!is_protected_domain(""));
        assert!(protected_domains().count() >= 4);
    }

    // Every entry names where its number came from, and every number is a number.
    #[test]
    fn r19_every_entry_cites_its_source_and_has_a_dialable_number() {
        for c in BUILTIN {
            assert!(c.source.starts_with("https://"), "{}", c.name);
            assert!(!c.numbers.is_empty(), "{}", c.name);
            for n in c.numbers {
                let norm = normalise_address(n);
                assert!(
                    norm.trim_start_matches('+')
                        .chars()
                        .all(|d| d.is_ascii_digit()),
                    "{n}"
                );
            }
        }
    }

    proptest::proptest! {
        // Spacing and punctuation never change which number an address is.
        #[test]
        fn r19_spacing_never_hides_a_protected_number(spaces in proptest::collection::vec(0usize..3, 8)) {
            let digits = "08001111";
            let mut s = String::new();
            for (i, d) in digits.chars().enumerate() {
                s.push(d);
                for _ in 0..spaces[i] { s.push(' '); }
            }
            proptest::prop_assert!(builtin_for_number(&s).is_some());
        }
    }
}
