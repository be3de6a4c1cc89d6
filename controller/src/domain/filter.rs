//! Web filter categories (WB1, WB4): what a plan's filter profile blocks, given the category
//! lists the home has installed, and what staff (never the child) are told about the rest.
//!
//! The UK Safer Internet Centre's "appropriate filtering" asks for illegal and harmful content
//! to be blocked: adult content, gambling, drugs, violence (with discrimination and
//! extremism), hacking and malware, self-harm. Every profile, whatever the home called it,
//! blocks those for which a list is installed, plus social networking unless a risk
//! assessment allows it (WB2), plus DNS over HTTPS (a way round the filter). A category the
//! profile names with no list installed is not blocked, and must not look blocked: staff see
//! "web filtered, but no list installed for: gambling"; the child's own view lists only what
//! is really blocked.
//!
//! Pure: the installed categories are passed in.

/// The harmful categories every profile blocks where a list is installed (UKSIC).
pub const HARMFUL: &[&str] = &[
    "adult",
    "gambling",
    "drugs",
    "violence",
    "hacking",
    "malware",
    "self-harm",
];

/// Built into the agent; no list needs installing.
pub const SOCIAL_NETWORKING: &str = "social-networking";
pub const DOH: &str = "doh";

/// Extra categories a profile called "strict" blocks (apps and services that open other
/// ways round the plan: chat with strangers, VPNs, stalkerware).
const STRICT_EXTRA: &[&str] = &["chat", "vpn", "stalkerware"];

/// One spelling for a category: lower case, `-` between words, and the UT1 list names
/// (Université Toulouse 1) mapped onto the UKSIC ones.
pub fn canonical_category(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    match n.as_str() {
        "mixed-adult" | "porn" | "pornography" | "sexual-content" => "adult".into(),
        "drogue" | "drug" => "drugs".into(),
        "agressif" | "aggressive" | "violent" => "violence".into(),
        "arjel" | "gaming-gambling" => "gambling".into(),
        "phishing" | "cryptojacking" | "ddos" => "malware".into(),
        "suicide" | "selfharm" => "self-harm".into(),
        "social-networks" | "social-network" | "social" => SOCIAL_NETWORKING.into(),
        "dns-over-https" => DOH.into(),
        _ => n,
    }
}

/// What one profile blocks on a home's lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileBlocks {
    /// Blocked: a list is installed (or built in). Sorted.
    pub blocked: Vec<String>,
    /// Named by the profile but without a list: not blocked. Sorted.
    pub missing: Vec<String>,
}

impl ProfileBlocks {
    /// The line staff see on `haven plan show` and `haven device show` when something is
    /// missing; `None` when every category is blocked.
    pub fn staff_note(&self) -> Option<String> {
        (!self.missing.is_empty()).then(|| {
            format!(
                "web filtered, but no list installed for: {}",
                self.missing.join(", ")
            )
        })
    }

    /// The categories a child may be told are blocked: only the real ones.
    pub fn for_child(&self) -> &[String] {
        &self.blocked
    }
}

/// The categories `profile` blocks with `installed` lists; `social_allowed` when a risk
/// assessment allows social networking (WB2).
pub fn profile_blocks(profile: &str, installed: &[String], social_allowed: bool) -> ProfileBlocks {
    let mut wanted: Vec<String> = HARMFUL.iter().map(|c| c.to_string()).collect();
    if canonical_category(profile) == "strict" {
        wanted.extend(STRICT_EXTRA.iter().map(|c| c.to_string()));
    }
    let installed: Vec<String> = installed.iter().map(|c| canonical_category(c)).collect();
    let (mut blocked, mut missing): (Vec<String>, Vec<String>) = wanted
        .into_iter()
        .partition(|c| installed.iter().any(|i| i == c));
    if !social_allowed {
        blocked.push(SOCIAL_NETWORKING.into());
    }
    blocked.push(DOH.into());
    blocked.sort();
    blocked.dedup();
    missing.sort();
    missing.dedup();
    ProfileBlocks { blocked, missing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    // clause WB4: the harmful categories with a list are blocked from day one; social
    // networking and DoH always (social only until a risk assessment allows it, WB2).
    #[test]
    fn wb4_the_filtered_profile_blocks_every_installed_harmful_category() {
        let b = profile_blocks(
            "filtered",
            &installed(&["mixed_adult", "drogue", "agressif", "hacking", "vpn"]),
            false,
        );
        assert_eq!(
            b.blocked,
            [
                "adult",
                "doh",
                "drugs",
                "hacking",
                "social-networking",
                "violence"
            ]
        );
        assert_eq!(b.missing, ["gambling", "malware", "self-harm"]);
        let allowed_social = profile_blocks("filtered", &installed(&["adult"]), true);
        assert!(
            !allowed_social
                .blocked
                .contains(&SOCIAL_NETWORKING.to_string())
        );
        assert!(allowed_social.blocked.contains(&DOH.to_string()));
    }

    // clause WB1, WB4: a missing list is told to staff, never shown to the child as blocked.
    #[test]
    fn wb4_a_missing_list_is_told_to_staff_and_not_to_the_child() {
        let b = profile_blocks(
            "under-16",
            &installed(&[
                "adult",
                "drugs",
                "violence",
                "hacking",
                "malware",
                "self-harm",
            ]),
            false,
        );
        assert_eq!(
            b.staff_note().as_deref(),
            Some("web filtered, but no list installed for: gambling")
        );
        assert!(!b.for_child().contains(&"gambling".to_string()));
        let all = profile_blocks("anything", &installed(HARMFUL), false);
        assert_eq!(all.staff_note(), None);
    }

    // Whatever the home calls a profile, it never means less filtering; "strict" means more.
    #[test]
    fn wb4_a_profile_name_never_lowers_the_floor() {
        let lists = installed(&["chat", "vpn", "gambling"]);
        let odd = profile_blocks("Sanctioned Typo", &lists, false);
        assert!(odd.blocked.contains(&"gambling".to_string()));
        assert!(!odd.blocked.contains(&"chat".to_string()));
        let strict = profile_blocks("Strict", &lists, false);
        assert!(strict.blocked.contains(&"chat".to_string()));
        assert!(strict.blocked.contains(&"vpn".to_string()));
        assert!(strict.missing.contains(&"stalkerware".to_string()));
    }

    #[test]
    fn ut1_names_map_onto_the_uksic_categories() {
        assert_eq!(canonical_category("mixed_adult"), "adult");
        assert_eq!(canonical_category(" Drogue "), "drugs");
        assert_eq!(canonical_category("agressif"), "violence");
        assert_eq!(canonical_category("social_networks"), SOCIAL_NETWORKING);
        assert_eq!(canonical_category("phishing"), "malware");
        assert_eq!(canonical_category("self harm"), "self-harm");
    }
}
