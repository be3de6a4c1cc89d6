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

/// What a home adds to each of its devices' web rules: the categories with a list installed
/// on the controller, and the home's own exceptions (`haven filter allow/deny`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomeWeb {
    pub installed: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// Words for a category in the child's explanation.
fn plain_words(category: &str) -> String {
    match category {
        "adult" => "adult content".into(),
        SOCIAL_NETWORKING => "social networking".into(),
        DOH => "private DNS services".into(),
        other => other.replace('-', " "),
    }
}

/// The compiled policy with the home's web part (WB1, WB4): the categories the profile really
/// blocks (those with a list installed, plus social networking and DoH), the home's allowed
/// sites (which win over a category list on the device, never over DoH or a protected site)
/// and its denied ones. The child's explanation names only what is really blocked. With the
/// web off nothing is added: there is nothing to filter.
pub fn with_home_web(
    mut policy: super::policy::CompiledPolicy,
    home: &HomeWeb,
) -> super::policy::CompiledPolicy {
    if !policy.web_allowed {
        return policy;
    }
    // Social networking stays blocked as a category; the plan's risk-assessed sites are let
    // through one by one (WB2).
    let blocks = profile_blocks(&policy.web_filter_profile, &home.installed, false);
    policy
        .web_allowed_domains
        .extend(home.allow.iter().cloned());
    policy.web_allowed_domains.sort();
    policy.web_allowed_domains.dedup();
    policy.web_blocked_domains = home.deny.clone();
    policy.web_blocked_domains.sort();
    policy.web_blocked_domains.dedup();
    let words: Vec<String> = blocks
        .for_child()
        .iter()
        .filter(|c| c.as_str() != DOH)
        .map(|c| plain_words(c))
        .collect();
    if let Some((_, text)) = policy.explanations.iter_mut().find(|(t, _)| t == "web") {
        text.push_str(&format!(
            " The filter blocks sites about {}.",
            super::plan::join_and(&words)
        ));
    }
    policy.web_blocked_categories = blocks.blocked;
    policy
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

    // clause WB4: the policy names what the profile really blocks; the child is told only that.
    #[test]
    fn wb4_a_policy_blocks_the_installed_categories_and_tells_the_child_only_those() {
        use crate::domain::policy::{CompiledPolicy, PolicyInputs, compile};
        let base: CompiledPolicy = compile(&PolicyInputs {
            version: 1,
            issued_at: 0,
            child_name: "Amira K",
            protected_contacts: &[],
            plan: None,
            lockdowns: &[],
        });
        let mut on = base.clone();
        on.web_allowed = true;
        on.web_filter_profile = "filtered".into();
        on.explanations.retain(|(t, _)| t != "web");
        on.explanations
            .push(("web".into(), "You can use the internet.".into()));
        let home = HomeWeb {
            installed: installed(&["adult", "drugs"]),
            allow: vec!["games.example".into()],
            deny: vec!["bad.example".into()],
        };
        let p = with_home_web(on, &home);
        assert_eq!(
            p.web_blocked_categories,
            ["adult", "doh", "drugs", "social-networking"]
        );
        assert_eq!(p.web_allowed_domains, ["games.example"]);
        assert_eq!(p.web_blocked_domains, ["bad.example"]);
        let web = &p.explanations.iter().find(|(t, _)| t == "web").unwrap().1;
        assert!(
            web.contains("adult content, drugs and social networking"),
            "{web}"
        );
        assert!(!web.contains("gambling"), "{web}");
        // Web off: nothing to filter, nothing claimed.
        let off = with_home_web(base.clone(), &home);
        assert!(off.web_blocked_categories.is_empty() && off.web_allowed_domains.is_empty());
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
