//! The platform-neutral heart of the agent: which policy is in force and what it means.
//!
//! Everything here is pure decision logic with no I/O, so the same rules hold on every
//! platform and every enforcer (the log enforcer today, Linux camera/app/DNS enforcers later)
//! reads one interpretation of a `DevicePolicy` instead of inventing its own. Where the policy
//! is missing or unclear, the answer is always the safer one.

use haven_proto::agent::v1::{
    AppDefault, AppRule, CameraRule, Channel, Contact, ContactAddress, DevicePolicy, Explanation,
    Lockdown, WebRule,
};

/// The built-in protected contacts (999, 112, Childline, …) as contacts a policy would carry.
///
/// Calls to every number are protected; texts where the organisation takes them (999's
/// emergencySMS). They come from `haven_protected`, compiled into the agent, so they hold
/// before the first policy, with an unreadable cache, and whatever a policy leaves out.
pub fn builtin_protected() -> Vec<Contact> {
    haven_protected::BUILTIN
        .iter()
        .map(|b| Contact {
            name: b.name.into(),
            relationship: b.purpose.into(),
            addresses: b
                .numbers
                .iter()
                .flat_map(|n| {
                    let call = ContactAddress {
                        channel: Channel::Call as i32,
                        address: (*n).into(),
                        app: String::new(),
                    };
                    let text = b.texts.then(|| ContactAddress {
                        channel: Channel::Sms as i32,
                        address: (*n).into(),
                        app: String::new(),
                    });
                    std::iter::once(call).chain(text)
                })
                .collect(),
            windows: Vec::new(),
        })
        .collect()
}

/// Everyone who can always be reached while `policy` is in force: the built-in list first,
/// then the home's and the child's own protected contacts (R19).
///
/// A policy entry whose every address is already built in (a home that typed in Childline) is
/// not listed twice. Nothing in a policy can remove a built-in entry: this is a union.
pub fn always_reachable(policy: &DevicePolicy) -> Vec<Contact> {
    let mut all = builtin_protected();
    for contact in &policy.protected_contacts {
        let already = if contact.addresses.is_empty() {
            haven_protected::BUILTIN
                .iter()
                .any(|b| b.name.eq_ignore_ascii_case(contact.name.trim()))
        } else {
            contact
                .addresses
                .iter()
                .all(|a| haven_protected::builtin_for_number(&a.address).is_some())
        };
        if !already {
            all.push(contact.clone());
        }
    }
    all
}

/// The policy a device enforces before it has ever heard from its controller, after it has
/// been retired, and whenever the real policy cannot be applied.
///
/// Version 0 means "not from the controller": any real policy replaces it. The camera and the
/// web are off (the two things that can do harm fastest), no contacts are allowed except the
/// built-in protected ones (999, 112, Childline and the other helplines — see
/// [`always_reachable`]), and apps stay allowed so the device is still useful for school work.
pub fn safe_default() -> DevicePolicy {
    DevicePolicy {
        version: 0,
        issued_at_unix_ms: 0,
        child_display_name: String::new(),
        camera: Some(CameraRule {
            allowed: false,
            reason: "Your device has not received your plan yet.".into(),
        }),
        web: Some(WebRule {
            allowed: false,
            filter_profile: String::new(),
            blocked_categories: Vec::new(),
            allowed_domains: Vec::new(),
            blocked_domains: Vec::new(),
            reason: "Your device has not received your plan yet.".into(),
        }),
        apps: Some(AppRule {
            default: AppDefault::Allow as i32,
            allowed: Vec::new(),
            blocked: Vec::new(),
        }),
        contacts: Vec::new(),
        protected_contacts: builtin_protected(),
        lockdown: None,
        explanations: vec![Explanation {
            topic: "getting started".into(),
            text: "Your device is waiting to hear from your home. Until it does, the camera and \
                   the internet are switched off to keep you safe, and you can still use your \
                   apps. This is not because of anything you have done. If you need help, talk \
                   to a member of staff."
                .into(),
        }],
    }
}

/// The safe default, but keeping the protected contacts of `current`.
///
/// Protected contacts (a social worker, an advocate, Childline) must stay reachable whatever
/// else is in force, so falling back to the safe default must never cut them off.
pub fn safe_default_keeping_protected(current: &DevicePolicy) -> DevicePolicy {
    DevicePolicy {
        protected_contacts: always_reachable(current),
        child_display_name: current.child_display_name.clone(),
        ..safe_default()
    }
}

/// What to do with a policy that has just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Newer than the one in force: apply it.
    Apply,
    /// The same version is already in force (e.g. resent after a reconnect): only acknowledge.
    AlreadyApplied,
    /// Older than the one in force (a late or replayed message): ignore it.
    Older { applied: u64 },
}

/// Holds the policy in force and decides whether an incoming one replaces it.
#[derive(Debug, Clone)]
pub struct PolicyState {
    current: DevicePolicy,
}

impl PolicyState {
    pub fn new(initial: DevicePolicy) -> Self {
        Self { current: initial }
    }

    pub fn current(&self) -> &DevicePolicy {
        &self.current
    }

    /// The version reported to the controller in `Hello` (0 = nothing received yet).
    pub fn applied_version(&self) -> u64 {
        self.current.version
    }

    /// Versions only ever increase, so a lower one is stale; a device never goes back to an
    /// older policy because messages arrived out of order.
    pub fn consider(&self, incoming: &DevicePolicy) -> Decision {
        let applied = self.current.version;
        match incoming.version.cmp(&applied) {
            std::cmp::Ordering::Greater => Decision::Apply,
            // Version 0 is our own safe default; a controller policy numbered 0 still
            // replaces it, because it comes from the child's real plan.
            std::cmp::Ordering::Equal if applied == 0 && incoming != &self.current => {
                Decision::Apply
            }
            std::cmp::Ordering::Equal => Decision::AlreadyApplied,
            std::cmp::Ordering::Less => Decision::Older { applied },
        }
    }

    pub fn set(&mut self, policy: DevicePolicy) {
        self.current = policy;
    }
}

/// Whether apps run unless blocked, or only when allowed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppMode {
    /// Anything not on the blocked list may run.
    AllowUnlessBlocked { blocked: Vec<String> },
    /// Only the apps on the allowed list may run.
    OnlyAllowed { allowed: Vec<String> },
}

/// What a policy means once lockdown and missing parts are taken into account. Enforcers and
/// `haven-agent status` both read this, so they can never disagree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Effective {
    pub camera_allowed: bool,
    pub web_allowed: bool,
    /// The filtering profile in force when the web is allowed.
    pub web_filter_profile: String,
    pub apps: AppMode,
    /// Contacts allowed by the plan; empty while calls and messages are locked down.
    pub contacts: usize,
    /// Contacts that can always be reached, whatever else is in force.
    pub protected_contacts: usize,
    /// Channels withdrawn by an active lockdown ("calls", "messages", "web", "camera", "apps").
    pub lockdown_channels: Vec<String>,
    pub lockdown_active: bool,
}

fn lockdown_covers(lockdown: Option<&Lockdown>, channel: &str) -> bool {
    lockdown.is_some_and(|l| l.active && l.channels.iter().any(|c| c.eq_ignore_ascii_case(channel)))
}

/// Works out what `policy` allows.
///
/// A lockdown is honoured for as long as the controller says it is active, even past its
/// `until` time: a device clock can be wrong or wound forward, and the controller lifts a
/// lockdown by sending a new policy.
pub fn effective(policy: &DevicePolicy) -> Effective {
    let lockdown = policy.lockdown.as_ref().filter(|l| l.active);
    let camera_allowed =
        policy.camera.as_ref().is_some_and(|c| c.allowed) && !lockdown_covers(lockdown, "camera");
    // "Web access is never given without a filtering profile": a policy that says allowed but
    // names no profile is treated as web off rather than as unfiltered web.
    let web_allowed = policy
        .web
        .as_ref()
        .is_some_and(|w| w.allowed && !w.filter_profile.trim().is_empty())
        && !lockdown_covers(lockdown, "web");
    let web_filter_profile = if web_allowed {
        policy
            .web
            .as_ref()
            .map(|w| w.filter_profile.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let rule = policy.apps.clone().unwrap_or_default();
    let only_allowed =
        rule.default == AppDefault::Block as i32 || lockdown_covers(lockdown, "apps");
    let apps = if only_allowed {
        AppMode::OnlyAllowed {
            allowed: rule.allowed,
        }
    } else {
        AppMode::AllowUnlessBlocked {
            blocked: rule.blocked,
        }
    };
    let contacts_locked =
        lockdown_covers(lockdown, "calls") && lockdown_covers(lockdown, "messages");
    Effective {
        camera_allowed,
        web_allowed,
        web_filter_profile,
        apps,
        contacts: if contacts_locked {
            0
        } else {
            policy.contacts.len()
        },
        protected_contacts: always_reachable(policy).len(),
        lockdown_channels: lockdown.map(|l| l.channels.clone()).unwrap_or_default(),
        lockdown_active: lockdown.is_some(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// One line saying what a policy enforces, e.g.
/// `policy version 3 — camera off, web off, 2 protected contacts, apps: all allowed`.
///
/// Tests and people both read this line, so it always contains `policy version N`.
pub fn summary_line(policy: &DevicePolicy) -> String {
    let e = effective(policy);
    let mut parts = vec![
        format!("camera {}", if e.camera_allowed { "on" } else { "off" }),
        if e.web_allowed {
            format!("web on (filter: {})", e.web_filter_profile)
        } else {
            "web off".to_string()
        },
    ];
    if e.contacts > 0 {
        parts.push(plural(e.contacts, "contact", "contacts"));
    }
    parts.push(plural(
        e.protected_contacts,
        "protected contact",
        "protected contacts",
    ));
    parts.push(format!("apps: {}", describe_apps(&e.apps)));
    if e.lockdown_active {
        parts.push(format!("lockdown: {}", e.lockdown_channels.join(", ")));
    }
    format!("policy version {} — {}", policy.version, parts.join(", "))
}

/// Apps in a few words: "all allowed", "all allowed except 2", "only 3 allowed".
pub fn describe_apps(apps: &AppMode) -> String {
    match apps {
        AppMode::AllowUnlessBlocked { blocked } if blocked.is_empty() => "all allowed".into(),
        AppMode::AllowUnlessBlocked { blocked } => {
            format!("all allowed except {}", blocked.len())
        }
        AppMode::OnlyAllowed { allowed } if allowed.is_empty() => "none allowed".into(),
        AppMode::OnlyAllowed { allowed } => format!("only {} allowed", allowed.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::Contact;

    fn policy(version: u64) -> DevicePolicy {
        DevicePolicy {
            version,
            camera: Some(CameraRule {
                allowed: true,
                reason: String::new(),
            }),
            web: Some(WebRule {
                allowed: true,
                filter_profile: "strict".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn safe_default_turns_camera_and_web_off() {
        let p = safe_default();
        assert_eq!(p.version, 0);
        let e = effective(&p);
        assert!(!e.camera_allowed);
        assert!(!e.web_allowed);
        assert_eq!(e.contacts, 0);
        assert_eq!(e.apps, AppMode::AllowUnlessBlocked { blocked: vec![] });
        assert!(!p.explanations.is_empty());
        // clause R19: the safe default already lets the built-in protected contacts through.
        assert_eq!(
            summary_line(&p),
            format!(
                "policy version 0 — camera off, web off, {} protected contacts, apps: all allowed",
                haven_protected::BUILTIN.len()
            )
        );
    }

    #[test]
    fn falling_back_keeps_protected_contacts() {
        let mut p = policy(7);
        p.protected_contacts.push(Contact {
            name: "Social worker".into(),
            ..Default::default()
        });
        let fallback = safe_default_keeping_protected(&p);
        assert_eq!(fallback.version, 0);
        assert_eq!(
            fallback.protected_contacts.len(),
            haven_protected::BUILTIN.len() + 1
        );
        assert!(!effective(&fallback).camera_allowed);
    }

    #[test]
    fn older_policies_are_ignored_and_newer_applied() {
        let mut state = PolicyState::new(safe_default());
        assert_eq!(state.consider(&policy(1)), Decision::Apply);
        state.set(policy(5));
        assert_eq!(state.applied_version(), 5);
        assert_eq!(state.consider(&policy(4)), Decision::Older { applied: 5 });
        assert_eq!(state.consider(&policy(5)), Decision::AlreadyApplied);
        assert_eq!(state.consider(&policy(6)), Decision::Apply);
    }

    #[test]
    fn a_real_version_zero_policy_replaces_the_safe_default() {
        let state = PolicyState::new(safe_default());
        assert_eq!(state.consider(&safe_default()), Decision::AlreadyApplied);
        assert_eq!(state.consider(&policy(0)), Decision::Apply);
    }

    #[test]
    fn missing_rules_and_profileless_web_are_off() {
        let e = effective(&DevicePolicy::default());
        assert!(!e.camera_allowed && !e.web_allowed);
        let mut p = policy(1);
        p.web.as_mut().unwrap().filter_profile.clear();
        assert!(!effective(&p).web_allowed);
    }

    #[test]
    fn lockdown_withdraws_channels() {
        let mut p = policy(2);
        p.contacts.push(Contact::default());
        p.apps = Some(AppRule {
            default: AppDefault::Allow as i32,
            allowed: vec!["maths".into()],
            blocked: vec![],
        });
        p.lockdown = Some(Lockdown {
            active: true,
            channels: vec![
                "camera".into(),
                "web".into(),
                "calls".into(),
                "messages".into(),
                "apps".into(),
            ],
            ..Default::default()
        });
        let e = effective(&p);
        assert!(!e.camera_allowed && !e.web_allowed);
        assert_eq!(e.contacts, 0);
        assert_eq!(
            e.apps,
            AppMode::OnlyAllowed {
                allowed: vec!["maths".into()]
            }
        );
        assert!(summary_line(&p).contains("lockdown: camera, web"));
        // An inactive lockdown changes nothing.
        p.lockdown.as_mut().unwrap().active = false;
        assert!(effective(&p).camera_allowed);
    }
}
