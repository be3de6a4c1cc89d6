//! Compiling what a device must enforce from what is on record.
//!
//! The compiler is a pure function: the same records always give the same policy. It starts
//! from the safest arrangement (camera off, web off) and only ever widens it where the records
//! allow; protected contacts are always included, whatever else is in force (Regulation 19).
//! What the plan allows is compiled only when its preconditions hold, even if the plan was
//! stored without them: camera only with both agreements (IM1), web only with a filter (WB1),
//! a permission only with a linked risk assessment (KP2).

use super::UnixMillis;
use super::emergency::{self, ActiveLockdown, LockChannel};
use super::phone;
use super::plan::{
    CameraPermission, Channel, CommunicationSection, ContactAddress, ContactPermission, TimeWindow,
    WebPermission, describe_windows, is_essential_app, join_and,
};

/// A contact no rule can block: emergency services, Childline, the social worker, and so on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectedContact {
    pub id: String,
    pub home_id: String,
    /// Set for a contact protected for one child only (their social worker, IRO, advocate);
    /// `None` for the whole home (Childline, Ofsted, 999).
    pub child_id: Option<String>,
    pub name: String,
    pub address: String,
    pub added_by: String,
    pub added_at: UnixMillis,
}

/// The protected contacts that apply to one child: the home's own and the child's.
pub fn protected_for_child(all: &[ProtectedContact], child_id: &str) -> Vec<ProtectedContact> {
    all.iter()
        .filter(|c| c.child_id.as_deref().is_none_or(|id| id == child_id))
        .cloned()
        .collect()
}

/// The built-in protected contacts (`haven_protected`: 999, 112, Childline, the NSPCC, Ofsted,
/// Help at Hand) as records, one per number, so every rule that reads a home's protected
/// contacts reads these too. They are never stored: no home typed them in and none can take
/// them out.
pub fn builtin_protected() -> Vec<ProtectedContact> {
    haven_protected::BUILTIN
        .iter()
        .flat_map(|b| {
            b.numbers.iter().map(|n| {
                let address = phone::normalise_protected(n)
                    .unwrap_or_else(|_| haven_protected::normalise_address(n));
                ProtectedContact {
                    id: format!("built-in:{address}"),
                    home_id: String::new(),
                    child_id: None,
                    name: b.name.to_string(),
                    address,
                    added_by: format!(
                        "Haven (built in, list of {})",
                        haven_protected::LIST_VERSION
                    ),
                    added_at: 0,
                }
            })
        })
        .collect()
}

/// Whether a protected contact record is one of the built-in ones.
pub fn is_builtin(contact: &ProtectedContact) -> bool {
    haven_protected::builtin_for_number(&contact.address).is_some()
}

/// The built-in protected contacts first, then the home's and the child's own; an entry that
/// only repeats a built-in number is listed once (R19: a union, never a replacement).
pub fn with_builtin(home: &[ProtectedContact]) -> Vec<ProtectedContact> {
    let mut all = builtin_protected();
    all.extend(home.iter().filter(|c| !is_builtin(c)).cloned());
    all
}

/// Whether `address` reaches someone the child can always contact: a built-in protected
/// contact or one of `protected`. Attempts to reach them are never violations and never open a
/// task, whatever a device reports (Regulation 22: contact with them is private).
pub fn is_always_reachable(address: &str, protected: &[ProtectedContact]) -> bool {
    haven_protected::builtin_for_number(address).is_some()
        || protected
            .iter()
            .any(|p| phone::same_number(&p.address, address))
}

/// What a member of staff named when asking to take a protected contact off a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemovalTarget {
    /// One of the home's own entries (its id).
    Entry(ProtectedContact),
}

/// Decides whether `key` (a contact's id or number, as staff typed it) may be taken off the
/// home's protected list. The built-in contacts never can (R19): the refusal names them.
/// Otherwise the home's own entry with that id, or with that number, is the one to remove.
pub fn removal_target(
    key: &str,
    home: &[ProtectedContact],
) -> Result<RemovalTarget, crate::domain::risk::Refusal> {
    use crate::domain::risk::Refusal;
    let key = key.trim();
    let number = key.strip_prefix("built-in:").unwrap_or(key);
    if let Some(builtin) = haven_protected::builtin_for_number(number) {
        return Err(Refusal::new(
            "R19",
            format!(
                "{number} is {}, one of the contacts built into Haven that every child can always reach; no home can remove it",
                builtin.name
            ),
        )
        .because(crate::domain::reasons::PROTECTED_CONTACT_BUILT_IN));
    }
    let found = home
        .iter()
        .find(|c| c.id == key)
        .or_else(|| home.iter().find(|c| phone::same_number(&c.address, key)));
    match found {
        Some(c) => Ok(RemovalTarget::Entry(c.clone())),
        None => Err(Refusal::new(
            "R19",
            format!("{key} is not on this home's protected contacts list"),
        )
        .because(crate::domain::reasons::NOT_FOUND)),
    }
}

/// Whether a device's report is an attempt to reach a built-in protected contact. Such a report
/// is never stored, never opens a task and its number is never written down (Regulation 22:
/// contact with them is private), whatever an old or faulty device sends.
pub fn is_protected_attempt(kind: &str, subject: &str) -> bool {
    matches!(kind, "unknown_contact" | "contact_blocked")
        && haven_protected::builtin_for_number(subject).is_some()
}

/// Everything the compiler reads for one device.
#[derive(Clone, Debug)]
pub struct PolicyInputs<'a> {
    pub version: u64,
    pub issued_at: UnixMillis,
    pub child_name: &'a str,
    pub protected_contacts: &'a [ProtectedContact],
    /// The communication section of the child's current plan revision; `None` compiles the
    /// safe default.
    pub plan: Option<&'a CommunicationSection>,
    /// The lockdowns in force on this device (already chosen by target); usually none.
    pub lockdowns: &'a [&'a ActiveLockdown],
}

/// The lockdown a device enforces: every lockdown in force on it, merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledLockdown {
    pub id: String,
    /// Wire names: "calls", "messages", "web", "camera", "apps".
    pub channels: Vec<String>,
    /// What the child reads beside what was paused.
    pub reason: String,
    /// 0 when it is reviewed rather than ending by itself.
    pub until: UnixMillis,
}

/// A contact the plan allows, as the device enforces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledContact {
    pub name: String,
    pub relationship: String,
    /// Numbers in E.164; handles with their app.
    pub addresses: Vec<ContactAddress>,
    /// Empty means at any time.
    pub windows: Vec<TimeWindow>,
}

/// What one device must enforce, in plain types (the gRPC adapter maps it onto the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledPolicy {
    pub version: u64,
    pub issued_at: UnixMillis,
    /// How the device greets the child: their first name only.
    pub child_display_name: String,
    pub camera_allowed: bool,
    pub camera_reason: String,
    pub web_allowed: bool,
    pub web_reason: String,
    /// `true`: apps run unless blocked; `false`: only allowed apps run.
    pub apps_allowed_by_default: bool,
    /// Apps that may run even when only allowed apps run.
    pub apps_allowed: Vec<String>,
    /// Apps that may not run. Never an app needed to reach a protected contact.
    pub apps_blocked: Vec<String>,
    /// The filtering profile web access goes through; empty when the web is off.
    pub web_filter_profile: String,
    /// Social networking sites allowed one by one (WB2); empty when the web is off.
    pub web_allowed_domains: Vec<String>,
    /// The categories the profile really blocks with the lists installed, and the home's own
    /// blocked sites (WB4, `filter::with_home_web`); empty from `compile`.
    pub web_blocked_categories: Vec<String>,
    pub web_blocked_domains: Vec<String>,
    /// The people the plan allows, besides the protected contacts.
    pub contacts: Vec<CompiledContact>,
    pub protected_contacts: Vec<(String, String)>,
    /// (topic, words the child reads on their device).
    pub explanations: Vec<(String, String)>,
    /// An emergency lockdown in force (RM3, GD4), if any.
    pub lockdown: Option<CompiledLockdown>,
}

/// Compiles the policy for one of a child's devices.
pub fn compile(inputs: &PolicyInputs<'_>) -> CompiledPolicy {
    let first_name = inputs
        .child_name
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    // R19: the built-in list is compiled into every policy, whatever the home has typed in.
    let mut protected: Vec<(String, String)> = with_builtin(inputs.protected_contacts)
        .iter()
        .map(|c| (c.name.clone(), c.address.clone()))
        .collect();
    protected.sort();
    protected.dedup();
    let mut protected_names: Vec<&str> = protected.iter().map(|(n, _)| n.as_str()).collect();
    protected_names.dedup();

    // No plan compiles exactly like an empty one: the safe default.
    let safe = CommunicationSection::default();
    let plan = inputs.plan.unwrap_or(&safe);

    let (mut camera_allowed, mut camera_reason) = compile_camera(&plan.camera);
    let (mut web_allowed, mut web_filter_profile, mut web_allowed_domains, mut web_reason) =
        compile_web(&plan.web);
    let mut contacts: Vec<CompiledContact> =
        plan.contacts.iter().filter_map(compile_contact).collect();
    let (mut apps_allowed_by_default, mut apps_allowed, mut apps_blocked) = compile_apps(plan);

    // An emergency lockdown narrows what the plan allows. The compiler applies it itself (not
    // only the device), so even a device that ignored `lockdown` would enforce it. Protected
    // contacts are never touched (R19), and the apps that reach them stay allowed.
    let merged = emergency::merge(inputs.lockdowns);
    if let Some(m) = &merged {
        let locked = |c: LockChannel| m.channels.contains(&c);
        if locked(LockChannel::Camera) {
            camera_allowed = false;
            camera_reason = emergency::CHILD_REASON.to_string();
        }
        if locked(LockChannel::Web) {
            web_allowed = false;
            web_filter_profile.clear();
            web_allowed_domains.clear();
            web_reason = emergency::CHILD_REASON.to_string();
        }
        if locked(LockChannel::Apps) {
            apps_allowed_by_default = false;
            apps_allowed = super::plan::ESSENTIAL_APPS
                .iter()
                .map(|a| a.to_string())
                .collect();
            apps_allowed.sort();
            apps_blocked.clear();
        }
        for c in &mut contacts {
            c.addresses.retain(|a| match a.channel {
                Channel::Call => !locked(LockChannel::Calls),
                Channel::Sms | Channel::Messaging => !locked(LockChannel::Messages),
            });
        }
        contacts.retain(|c| !c.addresses.is_empty());
    }

    let always = format!(
        "You can always contact these people, whatever else is happening: {}.",
        protected_names.join(", ")
    );

    let mut explanations = vec![("always".to_string(), always)];
    let lockdown = merged.map(|m| {
        let text = emergency::explain_to_child(&m, &protected_names);
        explanations.push(("lockdown".into(), text));
        CompiledLockdown {
            id: m.id,
            channels: m.channels.iter().map(|c| c.as_str().to_string()).collect(),
            reason: emergency::CHILD_REASON.to_string(),
            until: m.until.unwrap_or(0),
        }
    });
    if contacts.is_empty() {
        explanations.push((
            "contacts".into(),
            "If there is someone you would like to call or message, ask staff. You can ask for \
             a change to your plan at any time, and you will be told what was decided and why."
                .into(),
        ));
    }
    for c in &contacts {
        explanations.push(("contacts".into(), explain_contact(c)));
    }
    explanations.push(("camera".into(), camera_reason.clone()));
    explanations.push(("web".into(), web_reason.clone()));
    if let Some(text) = explain_apps(apps_allowed_by_default, &apps_allowed, &apps_blocked) {
        explanations.push(("apps".into(), text));
    }
    let mut others: Vec<&str> = plan
        .letters
        .iter()
        .chain(&plan.face_to_face)
        .map(|a| a.with_whom.trim())
        .filter(|w| !w.is_empty())
        .collect();
    others.sort_unstable();
    others.dedup();
    if !others.is_empty() {
        explanations.push((
            "letters and visits".into(),
            format!(
                "Your plan also sets out letters and visits with {}. Staff can tell you more about them.",
                join_and(&others)
            ),
        ));
    }

    CompiledPolicy {
        version: inputs.version,
        issued_at: inputs.issued_at,
        child_display_name: first_name,
        camera_allowed,
        camera_reason,
        web_allowed,
        web_reason,
        apps_allowed_by_default,
        apps_allowed,
        apps_blocked,
        web_filter_profile,
        web_allowed_domains,
        web_blocked_categories: Vec::new(),
        web_blocked_domains: Vec::new(),
        contacts,
        protected_contacts: protected,
        explanations,
        lockdown,
    }
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

const CAMERA_OFF: &str = "Your camera is off. It can be turned on when your social worker and \
                          your parents (or whoever has parental responsibility) have agreed it.";

/// "1 June 2027": dates a child reads.
fn long_date(d: jiff::civil::Date) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let month = usize::try_from(d.month() - 1)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .copied()
        .unwrap_or_default();
    format!("{} {month} {}", d.day(), d.year())
}

/// The camera is on only when the plan says so and both agreements are on record (IM1).
fn compile_camera(camera: &CameraPermission) -> (bool, String) {
    match camera {
        CameraPermission::On {
            placing_authority_agreement,
            parent_consultation,
            review_by,
            risk_assessment,
        } if !blank(&placing_authority_agreement.who)
            && !blank(&parent_consultation.who)
            && !blank(risk_assessment) =>
        {
            (
                true,
                format!(
                    "Your camera is on. Your social worker's team and your family agreed to it, \
                     and it will be talked about again by {}. Please ask people before you take \
                     a photo of them.",
                    long_date(*review_by)
                ),
            )
        }
        CameraPermission::On { .. } => (
            false,
            "Your camera is off for now, because not everyone who needs to agree to it has \
             agreed yet. You can ask staff about it."
                .into(),
        ),
        CameraPermission::Off => (false, CAMERA_OFF.into()),
    }
}

/// The web is on only through a named filtering profile (WB1); social networking sites only
/// with their own risk assessment (WB2).
fn compile_web(web: &WebPermission) -> (bool, String, Vec<String>, String) {
    match web {
        WebPermission::Filtered {
            filter_profile,
            risk_assessment,
            social_sites,
            ..
        } if !blank(filter_profile) && !blank(risk_assessment) => {
            let mut domains: Vec<String> = social_sites
                .iter()
                .filter(|s| !blank(&s.risk_assessment) && !blank(&s.domain))
                .map(|s| s.domain.trim().to_ascii_lowercase())
                .collect();
            domains.sort();
            domains.dedup();
            let mut reason =
                "You can use the internet. It goes through a safety filter that keeps \
                              out things that could hurt you or other people."
                    .to_string();
            if !domains.is_empty() {
                reason.push_str(&format!(
                    " You can also use {}, which your social worker agreed.",
                    join_and(&domains)
                ));
            }
            (true, filter_profile.trim().to_string(), domains, reason)
        }
        _ => (
            false,
            String::new(),
            Vec::new(),
            "The internet is off for now. It is turned on once a safe, filtered internet \
             arrangement is written into your placement plan."
                .into(),
        ),
    }
}

/// A contact reaches the device only with a risk assessment (KP2) and at least one usable
/// address; numbers that do not normalise are left out rather than sent as typed.
fn compile_contact(c: &ContactPermission) -> Option<CompiledContact> {
    if blank(&c.risk_assessment) || blank(&c.name) {
        return None;
    }
    let mut addresses: Vec<ContactAddress> = c
        .addresses
        .iter()
        .filter_map(|a| match a.channel {
            Channel::Call | Channel::Sms => {
                phone::normalise(&a.address)
                    .ok()
                    .map(|address| ContactAddress {
                        channel: a.channel,
                        address,
                        app: None,
                    })
            }
            Channel::Messaging => {
                let app = a.app.as_deref().map(str::trim).unwrap_or_default();
                (!blank(&a.address) && !app.is_empty()).then(|| ContactAddress {
                    channel: Channel::Messaging,
                    address: a.address.trim().to_string(),
                    app: Some(app.to_string()),
                })
            }
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() {
        return None;
    }
    // A window that makes no sense is dropped; if every window is dropped the contact is left
    // out, because no windows would mean "at any time" — wider than the plan meant.
    let windows: Vec<TimeWindow> = c
        .windows
        .iter()
        .filter_map(|w| {
            let weekdays: Vec<u8> = w
                .weekdays
                .iter()
                .copied()
                .filter(|d| (1..=7).contains(d))
                .collect();
            // Days that were given but are all nonsense must not become "every day".
            let days_ok = w.weekdays.is_empty() || !weekdays.is_empty();
            (w.start_minute < w.end_minute && w.end_minute <= 24 * 60 && days_ok).then_some(
                TimeWindow {
                    start_minute: w.start_minute,
                    end_minute: w.end_minute,
                    weekdays,
                },
            )
        })
        .collect();
    if windows.is_empty() && !c.windows.is_empty() {
        return None;
    }
    Some(CompiledContact {
        name: c.name.trim().to_string(),
        relationship: c.relationship.trim().to_string(),
        addresses,
        windows,
    })
}

/// App lists: the apps that reach protected contacts are never blocked, and are allowed when
/// only allowed apps may run (R19). Apps allowed by name need a risk assessment (KP2).
fn compile_apps(plan: &CommunicationSection) -> (bool, Vec<String>, Vec<String>) {
    let apps = &plan.apps;
    let mut blocked: Vec<String> = apps
        .blocked
        .iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty() && !is_essential_app(a))
        .collect();
    blocked.sort();
    blocked.dedup();
    let justified = apps.risk_assessment.as_deref().is_some_and(|r| !blank(r));
    let mut allowed: Vec<String> = if justified {
        apps.allowed
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty() && !blocked.iter().any(|b| b.eq_ignore_ascii_case(a)))
            .collect()
    } else {
        Vec::new()
    };
    if !apps.default_allow {
        allowed.extend(super::plan::ESSENTIAL_APPS.iter().map(|a| a.to_string()));
    }
    allowed.sort();
    allowed.dedup();
    (apps.default_allow, allowed, blocked)
}

/// "You can call and text Nan (grandmother) between 4pm and 8pm."
fn explain_contact(c: &CompiledContact) -> String {
    let mut verbs: Vec<&str> = Vec::new();
    for ch in [Channel::Call, Channel::Sms, Channel::Messaging] {
        if c.addresses.iter().any(|a| a.channel == ch) {
            verbs.push(ch.verb());
        }
    }
    let mut apps: Vec<&str> = c
        .addresses
        .iter()
        .filter_map(|a| a.app.as_deref())
        .collect();
    apps.sort_unstable();
    apps.dedup();
    let who = if c.relationship.is_empty() {
        c.name.clone()
    } else {
        format!("{} ({})", c.name, c.relationship)
    };
    let on = if apps.is_empty() {
        String::new()
    } else {
        format!(" on {}", join_and(&apps))
    };
    format!(
        "You can {} {who}{on} {}.",
        join_and(&verbs),
        describe_windows(&c.windows)
    )
}

fn explain_apps(default_allow: bool, allowed: &[String], blocked: &[String]) -> Option<String> {
    let chosen: Vec<&str> = allowed
        .iter()
        .map(String::as_str)
        .filter(|a| !is_essential_app(a))
        .collect();
    let mut text = String::new();
    if !default_allow {
        text.push_str(
            "Only the apps agreed in your plan can be opened on this device, and your phone and \
             messages always work.",
        );
        if !chosen.is_empty() {
            text.push_str(&format!(" The agreed apps are {}.", join_and(&chosen)));
        }
    }
    if !blocked.is_empty() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(&format!(
            "Some apps are switched off on this device: {}. You can ask staff why, and ask for a change.",
            join_and(blocked)
        ));
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, address: &str) -> ProtectedContact {
        ProtectedContact {
            id: format!("pc-{name}"),
            home_id: "home-1".into(),
            child_id: None,
            name: name.into(),
            address: address.into(),
            added_by: "stf-1".into(),
            added_at: 0,
        }
    }

    #[test]
    fn the_starting_policy_is_the_safe_one() {
        let p = compile(&PolicyInputs {
            version: 7,
            issued_at: 1,
            child_name: "Amira Khan",
            protected_contacts: &[],
            plan: None,
            lockdowns: &[],
        });
        assert_eq!(p.version, 7);
        assert_eq!(p.child_display_name, "Amira");
        assert!(!p.camera_allowed);
        assert!(!p.web_allowed);
        assert!(p.explanations.iter().any(|(_, t)| t.contains("Childline")));
    }

    // clause R19 (controller side): protected contacts always reach the device.
    #[test]
    fn r19_protected_contacts_are_always_compiled_in() {
        let contacts = [
            contact("Childline", "08001111"),
            contact("Priya (social worker)", "+447700900999"),
        ];
        let p = compile(&PolicyInputs {
            version: 1,
            issued_at: 1,
            child_name: "Sam",
            protected_contacts: &contacts,
            plan: None,
            lockdowns: &[],
        });
        // The built-in list, plus the social worker; Childline typed in again is listed once.
        assert_eq!(p.protected_contacts.len(), builtin_protected().len() + 1);
        assert!(
            p.explanations[0]
                .1
                .contains("Childline, Emergency services")
        );
        assert!(p.explanations[0].1.contains("Priya (social worker)"));
    }

    // clause R19: a home can take its own entries off its list, never a built-in one.
    #[test]
    fn r19_a_home_cannot_remove_a_built_in_protected_contact() {
        let home = [contact("Priya (social worker)", "+447700900999")];
        for key in [
            "999",
            "112",
            "0800 1111",
            "+448001111",
            "built-in:+448001111",
        ] {
            let r = removal_target(key, &home).unwrap_err();
            assert_eq!(r.clause, "R19");
            assert!(r.message.contains("no home can remove it"), "{r}");
        }
        assert_eq!(
            removal_target("07700 900999", &home),
            Ok(RemovalTarget::Entry(home[0].clone()))
        );
        assert_eq!(
            removal_target(&home[0].id, &home),
            Ok(RemovalTarget::Entry(home[0].clone()))
        );
        assert!(removal_target("07700 900123", &home).is_err());
        assert!(is_protected_attempt("unknown_contact", "+448001111"));
        assert!(is_protected_attempt("contact_blocked", "999"));
        assert!(!is_protected_attempt("unknown_contact", "+447700900123"));
        assert!(!is_protected_attempt("app_blocked", "999"));
    }

    // clause R19: a home that has typed nothing in still compiles 999, 112 and Childline into
    // every policy, in lockdown too.
    #[test]
    fn r19_the_built_in_list_is_compiled_with_an_empty_home_list() {
        let l = lockdown(&LockChannel::ALL);
        for lockdowns in [vec![], vec![&l]] {
            let p = compile(&PolicyInputs {
                version: 1,
                issued_at: 1,
                child_name: "Sam",
                protected_contacts: &[],
                plan: None,
                lockdowns: &lockdowns,
            });
            for number in ["999", "112", "+448001111"] {
                assert!(
                    p.protected_contacts.iter().any(|(_, a)| a == number),
                    "{number}: {:?}",
                    p.protected_contacts
                );
            }
        }
        assert!(is_always_reachable("0800 1111", &[]));
        assert!(is_always_reachable(
            "07700 900999",
            &[contact("Priya", "+447700900999")]
        ));
        assert!(!is_always_reachable("07700 900123", &[]));
    }

    fn with_plan(plan: &CommunicationSection, protected: &[ProtectedContact]) -> CompiledPolicy {
        compile(&PolicyInputs {
            version: 3,
            issued_at: 1,
            child_name: "Amira Khan",
            protected_contacts: protected,
            plan: Some(plan),
            lockdowns: &[],
        })
    }

    fn nan_section() -> CommunicationSection {
        use crate::domain::plan::*;
        CommunicationSection {
            contacts: vec![ContactPermission {
                name: "Nan".into(),
                relationship: "grandmother".into(),
                addresses: vec![
                    ContactAddress {
                        channel: Channel::Call,
                        address: "07700 900123".into(),
                        app: None,
                    },
                    ContactAddress {
                        channel: Channel::Sms,
                        address: "+447700900123".into(),
                        app: None,
                    },
                ],
                windows: vec![TimeWindow {
                    start_minute: 16 * 60,
                    end_minute: 20 * 60,
                    weekdays: vec![],
                }],
                risk_assessment: "ra-nan".into(),
                review_by: None,
            }],
            camera: CameraPermission::On {
                placing_authority_agreement: Agreement {
                    who: "Priya Shah".into(),
                    when: jiff::civil::date(2026, 11, 20),
                },
                parent_consultation: Agreement {
                    who: "Mrs Khan".into(),
                    when: jiff::civil::date(2026, 11, 21),
                },
                review_by: jiff::civil::date(2027, 6, 1),
                risk_assessment: "ra-camera".into(),
            },
            web: WebPermission::Filtered {
                filter_profile: "strict".into(),
                risk_assessment: "ra-web".into(),
                social_sites: vec![SocialSite {
                    domain: "instagram.com".into(),
                    risk_assessment: "ra-social".into(),
                    review_by: jiff::civil::date(2027, 1, 1),
                }],
                review_by: None,
            },
            apps: AppPermission {
                default_allow: false,
                allowed: vec!["com.whatsapp".into()],
                blocked: vec!["com.android.dialer".into(), "com.snapchat.android".into()],
                risk_assessment: Some("ra-apps".into()),
            },
            letters: vec![],
            face_to_face: vec![Arrangement {
                with_whom: "Mum".into(),
                details: "Saturdays".into(),
                risk_assessment: "ra-nan".into(),
                review_by: None,
            }],
        }
    }

    fn lockdown(channels: &[LockChannel]) -> ActiveLockdown {
        ActiveLockdown {
            id: "lck-1".into(),
            target: crate::domain::emergency::LockdownTarget::Child("chd-1".into()),
            channels: channels.to_vec(),
            until: Some(99),
            started_at: 1,
        }
    }

    // clauses RM3, D8, R19: a full lockdown withdraws everything the plan allowed, keeps every
    // protected contact and the apps that reach them, and tells the child in kind words.
    #[test]
    fn rm3_d8_r19_a_full_lockdown_keeps_protected_contacts() {
        let l = lockdown(&LockChannel::ALL);
        let protected = [contact("Childline", "08001111")];
        let p = compile(&PolicyInputs {
            version: 4,
            issued_at: 1,
            child_name: "Amira Khan",
            protected_contacts: &protected,
            plan: Some(&nan_section()),
            lockdowns: &[&l],
        });
        assert!(!p.camera_allowed && !p.web_allowed);
        assert!(p.contacts.is_empty());
        assert_eq!(p.protected_contacts.len(), builtin_protected().len());
        assert!(!p.apps_allowed_by_default);
        for e in crate::domain::plan::ESSENTIAL_APPS {
            assert!(p.apps_allowed.iter().any(|a| a == e));
        }
        let ld = p.lockdown.unwrap();
        assert_eq!(
            ld.channels,
            vec!["calls", "messages", "web", "camera", "apps"]
        );
        assert_eq!(ld.until, 99);
        let text = &p
            .explanations
            .iter()
            .find(|(t, _)| t == "lockdown")
            .unwrap()
            .1;
        assert!(text.contains("not a punishment") && text.contains("Childline"));
    }

    // clause GD4: a lockdown of some channels leaves the others as the plan says.
    #[test]
    fn gd4_a_partial_lockdown_withdraws_only_its_channels() {
        let l = lockdown(&[LockChannel::Calls]);
        let p = compile(&PolicyInputs {
            version: 4,
            issued_at: 1,
            child_name: "Amira Khan",
            protected_contacts: &[],
            plan: Some(&nan_section()),
            lockdowns: &[&l],
        });
        assert!(p.camera_allowed && p.web_allowed);
        assert_eq!(p.contacts.len(), 1);
        assert!(
            p.contacts[0]
                .addresses
                .iter()
                .all(|a| a.channel == Channel::Sms)
        );
    }

    #[test]
    fn a_plan_widens_the_safe_default_where_it_allows() {
        let p = with_plan(&nan_section(), &[contact("Childline", "08001111")]);
        assert!(p.camera_allowed);
        assert!(p.web_allowed);
        assert_eq!(p.web_filter_profile, "strict");
        assert_eq!(p.web_allowed_domains, vec!["instagram.com"]);
        assert_eq!(p.contacts.len(), 1);
        assert!(
            p.contacts[0]
                .addresses
                .iter()
                .all(|a| a.address == "+447700900123")
        );
        assert!(!p.apps_allowed_by_default);
        assert!(p.apps_allowed.contains(&"com.whatsapp".to_string()));
        assert_eq!(p.apps_blocked, vec!["com.snapchat.android"]);
        let texts: Vec<&str> = p.explanations.iter().map(|(_, t)| t.as_str()).collect();
        assert!(
            texts.contains(&"You can call and text Nan (grandmother) between 4pm and 8pm."),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("Your camera is on.") && t.contains("1 June 2027"))
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("You can also use instagram.com"))
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("letters and visits with Mum"))
        );
        assert_eq!(p.explanations[0].0, "always");
    }

    // clause IM1: a camera "on" without both agreements compiles to off.
    #[test]
    fn im1_the_camera_stays_off_without_both_agreements() {
        let mut s = nan_section();
        if let CameraPermission::On {
            parent_consultation,
            ..
        } = &mut s.camera
        {
            parent_consultation.who.clear();
        }
        let p = with_plan(&s, &[]);
        assert!(!p.camera_allowed);
        assert!(p.camera_reason.starts_with("Your camera is off"));
    }

    // clause WB1: no filter profile, no web.
    #[test]
    fn wb1_the_web_stays_off_without_a_filter_profile() {
        let mut s = nan_section();
        if let WebPermission::Filtered { filter_profile, .. } = &mut s.web {
            *filter_profile = " ".into();
        }
        let p = with_plan(&s, &[]);
        assert!(!p.web_allowed);
        assert!(p.web_filter_profile.is_empty());
        assert!(p.web_allowed_domains.is_empty());
    }

    // clause KP2: a contact without a risk assessment never reaches the device.
    #[test]
    fn kp2_a_contact_without_a_risk_assessment_is_not_compiled() {
        let mut s = nan_section();
        s.contacts[0].risk_assessment = "".into();
        assert!(with_plan(&s, &[]).contacts.is_empty());
    }

    #[test]
    fn nonsense_windows_never_widen_to_any_time() {
        let mut s = nan_section();
        s.contacts[0].windows = vec![crate::domain::plan::TimeWindow {
            start_minute: 600,
            end_minute: 500,
            weekdays: vec![],
        }];
        assert!(with_plan(&s, &[]).contacts.is_empty());
        s.contacts[0].windows[0] = crate::domain::plan::TimeWindow {
            start_minute: 500,
            end_minute: 600,
            weekdays: vec![9],
        };
        assert!(with_plan(&s, &[]).contacts.is_empty());
    }

    mod properties {
        use super::super::*;
        use crate::domain::plan::tests::{arb_protected, arb_section};
        use crate::domain::plan::{ESSENTIAL_APPS, is_essential_app};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            // clauses R19, IM1, WB1, KP2: whatever a plan says, the compiled policy keeps
            // every protected contact, never blocks the apps that reach them, and never turns
            // on the camera or the web without their preconditions.
            #[test]
            fn r19_im1_wb1_compiled_policies_keep_the_safety_rules(
                plan in prop::option::of(arb_section()),
                protected in arb_protected(),
            ) {
                let p = compile(&PolicyInputs {
                    version: 1,
                    issued_at: 0,
                    child_name: "Sam",
                    protected_contacts: &protected,
                    plan: plan.as_ref(),
                    lockdowns: &[],
                });
                // R19: every protected contact is present (a home's entry for a built-in number
                // as the built-in one), and so is every built-in one.
                for c in protected.iter().chain(&builtin_protected()) {
                    prop_assert!(
                        p.protected_contacts.contains(&(c.name.clone(), c.address.clone()))
                            || p.protected_contacts.iter().any(|(_, a)| phone::same_number(a, &c.address))
                    );
                }
                prop_assert!(!p.apps_blocked.iter().any(|a| is_essential_app(a)));
                if !p.apps_allowed_by_default {
                    for e in ESSENTIAL_APPS {
                        prop_assert!(p.apps_allowed.iter().any(|a| a == e));
                    }
                }
                // IM1
                if p.camera_allowed {
                    match plan.as_ref().map(|s| &s.camera) {
                        Some(CameraPermission::On { placing_authority_agreement, parent_consultation, risk_assessment, .. }) => {
                            prop_assert!(!placing_authority_agreement.who.trim().is_empty());
                            prop_assert!(!parent_consultation.who.trim().is_empty());
                            prop_assert!(!risk_assessment.trim().is_empty());
                        }
                        _ => prop_assert!(false, "camera on without a plan that turns it on"),
                    }
                }
                // WB1
                prop_assert_eq!(p.web_allowed, !p.web_filter_profile.is_empty());
                if !p.web_allowed {
                    prop_assert!(p.web_allowed_domains.is_empty());
                }
                if p.web_allowed {
                    let filtered = matches!(plan.as_ref().map(|s| &s.web), Some(WebPermission::Filtered { filter_profile, .. }) if !filter_profile.trim().is_empty());
                    prop_assert!(filtered);
                }
                // KP2, and numbers reach the device in E.164.
                for c in &p.contacts {
                    prop_assert!(!c.addresses.is_empty());
                    for a in &c.addresses {
                        if a.channel != Channel::Messaging {
                            prop_assert!(a.address.starts_with('+'));
                        }
                    }
                    for w in &c.windows {
                        prop_assert!(w.start_minute < w.end_minute && w.end_minute <= 1440);
                    }
                }
                if plan.is_none() {
                    prop_assert!(!p.camera_allowed && !p.web_allowed && p.contacts.is_empty());
                }
                prop_assert_eq!(&p.explanations[0].0, "always");
                for (_, text) in &p.explanations {
                    prop_assert!(!text.is_empty() && !text.contains('\n'));
                }
            }
        }
    }
}
