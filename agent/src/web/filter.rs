//! What the filter decides for one name: refuse everything, block, or resolve.
//!
//! Pure: the rules are built from a `DevicePolicy` (read through [`crate::core::effective`],
//! so the filter and `haven-agent status` never disagree) and the device's [`Catalog`], and a
//! decision is a lookup in them. The resolver swaps a whole `Rules` value when a policy
//! arrives; nothing here does I/O.
//!
//! Filter profiles: the controller sends the profile's name (e.g. "strict") and the sites the
//! plan allows one by one (WB2). Every profile blocks the social networking category (WB4) and
//! every category the home installed in its lists folder, plus any category or site the policy
//! names; the DNS-over-HTTPS category is blocked whatever the policy says.

use std::sync::Arc;

use haven_proto::agent::v1::DevicePolicy;

use super::categories::{Catalog, DOH, SOCIAL_NETWORKING, canonical_category};
use super::list::DomainSet;

/// The decision for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'n> {
    /// The web is off: no name resolves (fail closed, WB1).
    Refused,
    /// The name, or a parent of it, is blocked. `listed` is the blocked name as listed (the
    /// site, not the page's host); `category` is `None` for a site the policy blocks itself.
    Blocked {
        listed: &'n str,
        category: Option<&'static str>,
    },
    /// Resolve it.
    Allowed,
}

/// The rule set in force, built once per policy.
#[derive(Debug, Clone)]
pub struct Rules {
    web_on: bool,
    doh: Arc<DomainSet>,
    allowed: DomainSet,
    blocked: DomainSet,
    categories: Vec<(&'static str, Arc<DomainSet>)>,
    /// Categories the policy named that this device has no list for.
    pub missing_categories: Vec<String>,
    /// A few words for logs: "web off", "filter strict: 3 categories, 1 site allowed".
    pub summary: String,
}

impl Rules {
    /// The rules with the web off: what runs before any policy has been applied.
    pub fn web_off(catalog: &Catalog) -> Rules {
        Rules {
            web_on: false,
            doh: catalog.get(DOH).cloned().unwrap_or_default(),
            allowed: DomainSet::default(),
            blocked: DomainSet::default(),
            categories: Vec::new(),
            missing_categories: Vec::new(),
            summary: "web off".into(),
        }
    }

    /// The rules `policy` means on this device.
    pub fn for_policy(policy: &DevicePolicy, catalog: &Catalog) -> Rules {
        let effective = crate::core::effective(policy);
        let mut rules = Rules::web_off(catalog);
        if !effective.web_allowed {
            return rules;
        }
        let web = policy.web.clone().unwrap_or_default();
        let mut wanted = profile_categories(&effective.web_filter_profile, catalog);
        wanted.extend(web.blocked_categories.iter().map(|c| canonical_category(c)));
        wanted.sort();
        wanted.dedup();
        for name in wanted {
            if name == DOH {
                continue; // checked separately, first
            }
            match catalog.get(&name) {
                Some(set) => rules.categories.push((intern(&name), set.clone())),
                None => rules.missing_categories.push(name),
            }
        }
        rules.web_on = true;
        rules.allowed = DomainSet::from_names(web.allowed_domains.iter().map(String::as_str));
        rules.blocked = DomainSet::from_names(web.blocked_domains.iter().map(String::as_str));
        rules.summary = format!(
            "filter \"{}\": {} categories blocked, {} sites allowed, {} sites blocked",
            effective.web_filter_profile,
            rules.categories.len() + 1,
            rules.allowed.len(),
            rules.blocked.len()
        );
        rules
    }

    pub fn web_on(&self) -> bool {
        self.web_on
    }

    /// Decides for one name (any case, with or without the final dot).
    pub fn decide<'n>(&self, name: &'n str) -> Verdict<'n> {
        // Protected destinations (Childline, NSPCC, ...) resolve whatever the policy says.
        if haven_protected::is_protected_domain(name) {
            return Verdict::Allowed;
        }
        if !self.web_on {
            return Verdict::Refused;
        }
        // Before the plan's allows: no allowed site may open a way round the filter.
        if let Some(listed) = self.doh.matching(name) {
            return Verdict::Blocked {
                listed,
                category: Some(DOH),
            };
        }
        if self.allowed.contains_suffix_of(name) {
            return Verdict::Allowed;
        }
        if let Some(listed) = self.blocked.matching(name) {
            return Verdict::Blocked {
                listed,
                category: None,
            };
        }
        for (category, set) in &self.categories {
            if let Some(listed) = set.matching(name) {
                return Verdict::Blocked {
                    listed,
                    category: Some(category),
                };
            }
        }
        Verdict::Allowed
    }
}

/// The categories a filter profile blocks on this device. Profiles are named by the home
/// (the controller only checks that one is named, WB1); whatever the name, a profile blocks
/// social networking and every category the home installed, so a new or mistyped profile
/// name never means less filtering.
pub fn profile_categories(_profile: &str, catalog: &Catalog) -> Vec<String> {
    let mut v = vec![SOCIAL_NETWORKING.to_string(), DOH.to_string()];
    v.extend(catalog.imported_categories().iter().cloned());
    v
}

/// Category names live as long as the program; there are a handful, so leaking each distinct
/// one once is cheaper than carrying owned strings through every decision.
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let set = guard.get_or_insert_with(HashSet::new);
    if let Some(found) = set.get(name) {
        return found;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// A short sentence for staff about a blocked attempt; it names the category, never a page.
pub fn describe(category: Option<&str>) -> String {
    match category {
        Some(DOH) => "tried to use a private DNS service that would get round the filter".into(),
        Some(SOCIAL_NETWORKING) => "tried to visit a social networking site".into(),
        Some(c) => format!(
            "tried to visit a site in the {} category",
            c.replace('-', " ")
        ),
        None => "tried to visit a site the plan blocks".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::{Lockdown, WebRule};

    fn policy(web: WebRule) -> DevicePolicy {
        DevicePolicy {
            version: 3,
            web: Some(web),
            ..Default::default()
        }
    }

    fn filtered() -> WebRule {
        WebRule {
            allowed: true,
            filter_profile: "strict".into(),
            ..Default::default()
        }
    }

    // clause WB1: fail closed.
    #[test]
    fn wb1_web_off_or_no_profile_or_locked_down_refuses_every_name() {
        let c = Catalog::built_in();
        let off = Rules::for_policy(&policy(WebRule::default()), &c);
        assert_eq!(off.decide("bbc.co.uk"), Verdict::Refused);
        let mut no_profile = filtered();
        no_profile.filter_profile = "  ".into();
        assert_eq!(
            Rules::for_policy(&policy(no_profile), &c).decide("bbc.co.uk"),
            Verdict::Refused
        );
        let mut locked = policy(filtered());
        locked.lockdown = Some(Lockdown {
            active: true,
            channels: vec!["web".into()],
            ..Default::default()
        });
        assert_eq!(
            Rules::for_policy(&locked, &c).decide("bbc.co.uk"),
            Verdict::Refused
        );
        assert_eq!(
            Rules::for_policy(&crate::core::safe_default(), &c).decide("bbc.co.uk"),
            Verdict::Refused
        );
        assert_eq!(Rules::web_off(&c).decide("a.example"), Verdict::Refused);
    }

    // clause WB1, WB4: any profile blocks social networking; other names resolve.
    #[test]
    fn wb4_a_profile_blocks_social_networking_and_lets_the_rest_through() {
        let rules = Rules::for_policy(&policy(filtered()), &Catalog::built_in());
        assert!(rules.web_on());
        assert_eq!(
            rules.decide("M.Facebook.com."),
            Verdict::Blocked {
                listed: "Facebook.com",
                category: Some(SOCIAL_NETWORKING)
            }
        );
        assert_eq!(rules.decide("bbc.co.uk"), Verdict::Allowed);
        assert_eq!(rules.decide("xfacebook.com"), Verdict::Allowed);
    }

    // clause WB2 (device side), WB1: the plan's allows win over categories, never over DoH.
    #[test]
    fn wb4_a_site_allowed_in_the_plan_resolves_but_doh_never_does() {
        let mut web = filtered();
        web.allowed_domains = vec!["instagram.com".into(), "dns.google".into()];
        web.blocked_domains = vec!["games.example".into()];
        let rules = Rules::for_policy(&policy(web), &Catalog::built_in());
        assert_eq!(rules.decide("www.instagram.com"), Verdict::Allowed);
        assert!(matches!(
            rules.decide("facebook.com"),
            Verdict::Blocked { .. }
        ));
        assert_eq!(
            rules.decide("dns.google"),
            Verdict::Blocked {
                listed: "dns.google",
                category: Some(DOH)
            }
        );
        assert_eq!(
            rules.decide("play.games.example"),
            Verdict::Blocked {
                listed: "games.example",
                category: None
            }
        );
    }

    // clause WB4: installed categories and the policy's own categories are enforced.
    #[test]
    fn wb4_installed_and_named_categories_are_blocked_and_unknown_ones_noted() {
        let mut c = Catalog::built_in();
        c.extend("gambling", DomainSet::from_names(["bets.example"]));
        let mut web = filtered();
        web.blocked_categories = vec!["weapons".into(), "Social_Networks".into()];
        let rules = Rules::for_policy(&policy(web), &c);
        assert_eq!(
            rules.decide("www.bets.example"),
            Verdict::Blocked {
                listed: "bets.example",
                category: Some("gambling")
            }
        );
        assert_eq!(rules.missing_categories, ["weapons"]);
        assert_eq!(
            describe(Some("gambling")),
            "tried to visit a site in the gambling category"
        );
    }
}
