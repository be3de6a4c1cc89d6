//! The communication section of a child's Placement Plan, kept as immutable numbered revisions,
//! and the rules a new revision must pass before it is written down.
//!
//! A revision is never edited or deleted (RM2): a change is a new revision that says who made
//! it, when, why, who was consulted and with whom it was shared (RM1). Every permission in it
//! points at the risk assessment that justifies it (KP2). Letters and face-to-face contact are
//! recorded here although no device enforces them (S1).

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::UnixMillis;
use super::child_voice::check_child_voice;
use super::contact_risk::check_contact_risks;
use super::phone;
use super::policy::ProtectedContact;
pub use super::restriction::Grounds;
use super::restriction::check_protective_grounds;
pub use super::risk::Refusal;
use super::risk::RiskAssessment;
use super::role::Role;

// ---------------------------------------------------------------------------------------------
// The record
// ---------------------------------------------------------------------------------------------

/// Whether someone was consulted before a change, or why not (RM2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConsultRecord {
    Consulted {
        who: String,
        when: Date,
        #[serde(default)]
        notes: String,
    },
    NotConsulted {
        reason: String,
    },
}

/// Who was consulted about a revision. `None` means nothing was recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultation {
    pub social_worker: Option<ConsultRecord>,
    /// The parents, or the person with Parental Responsibility.
    pub parents: Option<ConsultRecord>,
}

/// With whom a revision was shared (RM1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedWith {
    pub child: bool,
    pub social_worker: bool,
    #[serde(default)]
    pub others: Vec<String>,
}

/// How a child reaches a contact on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Call,
    Sms,
    Messaging,
}

impl Channel {
    /// The verb a child reads: "call", "text", "message".
    pub fn verb(self) -> &'static str {
        match self {
            Channel::Call => "call",
            Channel::Sms => "text",
            Channel::Messaging => "message",
        }
    }
}

/// One way of reaching a contact: a number (E.164) for calls and texts, a handle for a
/// messaging app.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContactAddress {
    pub channel: Channel,
    pub address: String,
    /// The messaging app, for [`Channel::Messaging`] (e.g. "WhatsApp").
    #[serde(default)]
    pub app: Option<String>,
}

impl ContactAddress {
    fn describe(&self) -> String {
        match (&self.channel, &self.app) {
            (Channel::Messaging, Some(app)) => format!("message {} on {app}", self.address),
            (c, _) => format!("{} {}", c.verb(), self.address),
        }
    }
}

/// A time of day when contact is allowed: minutes after local midnight, `[start, end)`, on ISO
/// weekdays 1 (Monday) to 7 (empty means every day).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start_minute: u16,
    pub end_minute: u16,
    #[serde(default)]
    pub weekdays: Vec<u8>,
}

const MINUTES_IN_DAY: u16 = 24 * 60;

impl TimeWindow {
    /// "between 4pm and 8pm on weekdays".
    pub fn describe(&self) -> String {
        let days = describe_weekdays(&self.weekdays);
        let mut s = format!(
            "between {} and {}",
            clock(self.start_minute),
            clock(self.end_minute)
        );
        if !days.is_empty() {
            s.push(' ');
            s.push_str(&days);
        }
        s
    }
}

/// "4pm", "4:30pm", "noon", "midnight".
pub fn clock(minute: u16) -> String {
    let minute = minute.min(MINUTES_IN_DAY);
    match minute {
        0 | MINUTES_IN_DAY => "midnight".into(),
        720 => "noon".into(),
        _ => {
            let (h, m) = (minute / 60, minute % 60);
            let suffix = if h < 12 { "am" } else { "pm" };
            let h12 = match h % 12 {
                0 => 12,
                h => h,
            };
            if m == 0 {
                format!("{h12}{suffix}")
            } else {
                format!("{h12}:{m:02}{suffix}")
            }
        }
    }
}

fn describe_weekdays(days: &[u8]) -> String {
    const NAMES: [&str; 7] = [
        "Mondays",
        "Tuesdays",
        "Wednesdays",
        "Thursdays",
        "Fridays",
        "Saturdays",
        "Sundays",
    ];
    let set: BTreeSet<u8> = days
        .iter()
        .copied()
        .filter(|d| (1..=7).contains(d))
        .collect();
    if set.is_empty() || set.len() == 7 {
        return String::new();
    }
    if set == BTreeSet::from([1, 2, 3, 4, 5]) {
        return "on weekdays".into();
    }
    if set == BTreeSet::from([6, 7]) {
        return "at weekends".into();
    }
    let names: Vec<&str> = set.iter().map(|d| NAMES[usize::from(*d - 1)]).collect();
    format!("on {}", join_and(&names))
}

/// "at any time", or each window joined with "or".
pub fn describe_windows(windows: &[TimeWindow]) -> String {
    if windows.is_empty() {
        return "at any time".into();
    }
    let parts: Vec<String> = windows.iter().map(TimeWindow::describe).collect();
    parts.join(", or ")
}

/// "a", "a and b", "a, b and c".
pub(crate) fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}

/// A person the child may communicate with on the device, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactPermission {
    pub name: String,
    pub relationship: String,
    pub addresses: Vec<ContactAddress>,
    /// Empty means at any time.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
    /// The id of the risk assessment that justifies this contact (KP2).
    pub risk_assessment: String,
    #[serde(default)]
    pub review_by: Option<Date>,
}

impl ContactPermission {
    /// "Nan (grandmother)".
    pub fn label(&self) -> String {
        if self.relationship.trim().is_empty() {
            self.name.trim().to_string()
        } else {
            format!("{} ({})", self.name.trim(), self.relationship.trim())
        }
    }

    fn key(&self) -> (String, String) {
        (
            self.name.trim().to_lowercase(),
            self.relationship.trim().to_lowercase(),
        )
    }
}

/// Who agreed something, and on what date.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub who: String,
    pub when: Date,
}

/// The camera (and any image capture). Off unless the placing authority agreed it in
/// consultation with the parents (IM1), with a review date (IM3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CameraPermission {
    #[default]
    Off,
    On {
        placing_authority_agreement: Agreement,
        parent_consultation: Agreement,
        review_by: Date,
        risk_assessment: String,
    },
}

/// A social networking site allowed one by one (WB2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocialSite {
    /// A bare lower-case domain: "instagram.com".
    pub domain: String,
    pub risk_assessment: String,
    pub review_by: Date,
}

/// The web: off, or on through a filtering profile (WB1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WebPermission {
    #[default]
    Off,
    Filtered {
        filter_profile: String,
        risk_assessment: String,
        #[serde(default)]
        social_sites: Vec<SocialSite>,
        #[serde(default)]
        review_by: Option<Date>,
    },
}

/// Which apps may run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPermission {
    /// `true`: anything not blocked may run; `false`: only the allowed apps may run.
    pub default_allow: bool,
    #[serde(default)]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub blocked: Vec<String>,
    /// Needed once apps are allowed by name (KP2).
    #[serde(default)]
    pub risk_assessment: Option<String>,
}

impl Default for AppPermission {
    /// The same as a device with no plan: apps run unless blocked.
    fn default() -> Self {
        AppPermission {
            default_allow: true,
            allowed: Vec::new(),
            blocked: Vec::new(),
            risk_assessment: None,
        }
    }
}

/// The apps a device needs to reach protected contacts (the phone and text apps of Android and
/// iOS). No rule may block them (R19), and when only allowed apps run they are allowed anyway.
pub const ESSENTIAL_APPS: &[&str] = &[
    "com.android.dialer",
    "com.google.android.dialer",
    "com.android.phone",
    "com.android.server.telecom",
    "com.android.mms",
    "com.google.android.apps.messaging",
    "com.samsung.android.dialer",
    "com.samsung.android.messaging",
    "com.apple.mobilephone",
    "com.apple.MobileSMS",
];

/// Whether an app identifier is one the device needs to reach protected contacts.
pub fn is_essential_app(app: &str) -> bool {
    let app = app.trim();
    ESSENTIAL_APPS.iter().any(|e| e.eq_ignore_ascii_case(app))
}

/// Letters or face-to-face contact: recorded in the plan, not enforced by a device (S1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrangement {
    pub with_whom: String,
    pub details: String,
    pub risk_assessment: String,
    #[serde(default)]
    pub review_by: Option<Date>,
}

/// The communication section of a Placement Plan. The default is the safe starting point: no
/// contacts beyond the protected ones, camera off, web off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommunicationSection {
    #[serde(default)]
    pub contacts: Vec<ContactPermission>,
    #[serde(default)]
    pub camera: CameraPermission,
    #[serde(default)]
    pub web: WebPermission,
    #[serde(default)]
    pub apps: AppPermission,
    #[serde(default)]
    pub letters: Vec<Arrangement>,
    #[serde(default)]
    pub face_to_face: Vec<Arrangement>,
}

/// A revision as a manager proposes it, before it has a number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRevisionDraft {
    pub child_id: String,
    /// The staff id of the manager making the revision.
    pub made_by: String,
    pub made_at: UnixMillis,
    pub reason: String,
    #[serde(default)]
    pub consultation: Consultation,
    #[serde(default)]
    pub shared_with: SharedWith,
    /// What the child said about it, in their words (R7).
    #[serde(default)]
    pub child_views: Option<String>,
    /// When this revision's restrictions are to be looked at again; required when the revision
    /// restricts (KP1: restrictions are exceptions with a review or end date).
    #[serde(default)]
    pub review_by: Option<Date>,
    /// Why a restricting revision protects someone (RM3, R19), and what the child said.
    #[serde(flatten)]
    pub grounds: Grounds,
    pub section: CommunicationSection,
}

/// One revision of a child's plan, as stored. Never edited; a change is a new revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRevision {
    /// 1 for the first revision, then one more each time.
    pub number: u32,
    pub child_id: String,
    pub made_by: String,
    pub made_at: UnixMillis,
    pub reason: String,
    pub consultation: Consultation,
    pub shared_with: SharedWith,
    pub child_views: Option<String>,
    pub review_by: Option<Date>,
    #[serde(flatten)]
    pub grounds: Grounds,
    pub section: CommunicationSection,
}

impl PlanRevision {
    /// Numbers a checked draft as the revision after `previous`.
    pub fn next(previous: Option<&PlanRevision>, draft: PlanRevisionDraft) -> PlanRevision {
        let number = previous.map_or(1, |p| p.number.saturating_add(1));
        PlanRevision {
            number,
            child_id: draft.child_id,
            made_by: draft.made_by,
            made_at: draft.made_at,
            reason: draft.reason,
            consultation: draft.consultation,
            shared_with: draft.shared_with,
            child_views: draft.child_views,
            review_by: draft.review_by,
            grounds: draft.grounds,
            section: draft.section,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checking typed values
// ---------------------------------------------------------------------------------------------

/// Checks and normalises a web domain: lower case, no scheme, path or port, valid labels
/// ("Instagram.com" → "instagram.com"; "https://instagram.com/x" is refused).
pub fn normalise_domain(raw: &str) -> Result<String, Refusal> {
    let t = raw.trim();
    let refuse = |why: &str| {
        Refusal::new(
            "WB2",
            format!("{t:?} is not a web domain: {why}, e.g. instagram.com"),
        )
    };
    if t.is_empty() {
        return Err(Refusal::new(
            "WB2",
            "the web domain is empty: type the site's domain, e.g. instagram.com",
        ));
    }
    if t.contains("://") {
        return Err(refuse("leave out the http:// or https://"));
    }
    if t.contains(['/', '?', '#']) {
        return Err(refuse("leave out everything after the domain"));
    }
    if t.contains(':') {
        return Err(refuse("leave out the port"));
    }
    if t.contains('*') {
        return Err(refuse("allow sites one by one, without *"));
    }
    let d = t.trim_end_matches('.').to_ascii_lowercase();
    if d.len() > 253 {
        return Err(refuse("it is longer than 253 characters"));
    }
    let labels: Vec<&str> = d.split('.').collect();
    if labels.len() < 2 {
        return Err(refuse("type the whole domain with its ending"));
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(refuse("use only letters, digits, dots and dashes"));
        }
    }
    let tld = labels.last().copied().unwrap_or_default();
    if !(tld.starts_with("xn--") || tld.bytes().all(|b| b.is_ascii_lowercase())) {
        return Err(refuse("it must end in a name such as .com or .uk"));
    }
    Ok(d)
}

/// Normalises everything typed into a section: phone numbers to E.164, domains to lower case,
/// names and app identifiers trimmed. Run it on a draft before [`validate_revision`], which
/// only accepts the normal form.
pub fn normalise_section(section: &CommunicationSection) -> Result<CommunicationSection, Refusal> {
    let mut out = section.clone();
    for c in &mut out.contacts {
        c.name = c.name.split_whitespace().collect::<Vec<_>>().join(" ");
        c.relationship = c
            .relationship
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        c.risk_assessment = c.risk_assessment.trim().to_string();
        let label = c.label();
        for a in &mut c.addresses {
            match a.channel {
                Channel::Call | Channel::Sms => {
                    a.address = phone::normalise(&a.address)
                        .map_err(|e| Refusal::new("KP2", format!("{label}'s number: {e}")))?;
                    a.app = None;
                }
                Channel::Messaging => {
                    a.address = a.address.trim().to_string();
                    a.app = a.app.as_ref().map(|s| s.trim().to_string());
                }
            }
        }
    }
    if let WebPermission::Filtered {
        filter_profile,
        risk_assessment,
        social_sites,
        ..
    } = &mut out.web
    {
        *filter_profile = filter_profile.trim().to_string();
        *risk_assessment = risk_assessment.trim().to_string();
        for s in social_sites {
            s.domain = normalise_domain(&s.domain)?;
            s.risk_assessment = s.risk_assessment.trim().to_string();
        }
    }
    for app in out
        .apps
        .allowed
        .iter_mut()
        .chain(out.apps.blocked.iter_mut())
    {
        *app = app.trim().to_string();
    }
    Ok(out)
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn check_text(clause: &'static str, what: &str, s: &str, max: usize) -> Result<(), Refusal> {
    if blank(s) {
        return Err(Refusal::new(clause, format!("{what} is empty: write it")));
    }
    if s.chars().count() > max {
        return Err(Refusal::new(
            clause,
            format!("{what} is longer than {max} characters: shorten it"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Refusal::new(
            clause,
            format!("{what} contains control characters: type it again"),
        ));
    }
    Ok(())
}

fn check_app_id(app: &str) -> Result<(), Refusal> {
    let ok = !app.is_empty()
        && app.len() <= 255
        && app
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Refusal::new(
            "S1",
            format!(
                "{app:?} is not an app identifier: use the app's package or bundle id, e.g. com.whatsapp"
            ),
        ))
    }
}

fn check_review(what: &str, date: Date, today: Date) -> Result<(), Refusal> {
    if date < today {
        return Err(Refusal::new(
            "KP1",
            format!(
                "the review date {date} for {what} is in the past: choose today ({today}) or a later date"
            ),
        ));
    }
    Ok(())
}

fn check_agreement(
    clause: &'static str,
    what: &str,
    a: &Agreement,
    today: Date,
) -> Result<(), Refusal> {
    if blank(&a.who) {
        return Err(Refusal::new(
            clause,
            format!("the camera needs {what} on record: say who agreed it and when"),
        ));
    }
    if a.when > today {
        return Err(Refusal::new(
            clause,
            format!(
                "{what} is dated {}, which is in the future: record it once it has been given",
                a.when
            ),
        ));
    }
    Ok(())
}

/// Finds the risk assessment a permission points at (KP2).
fn linked<'r>(
    id: &str,
    what: &str,
    child_id: &str,
    risk_assessments: &'r [RiskAssessment],
) -> Result<&'r RiskAssessment, Refusal> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Refusal::new(
            "KP2",
            format!("{what} has no risk assessment: record one and link it before allowing it"),
        )
        .because(super::reasons::PERMISSION_NEEDS_RISK_ASSESSMENT));
    }
    match risk_assessments.iter().find(|r| r.id == id) {
        Some(r) if r.child_id == child_id => Ok(r),
        // Another child's assessment is refused in the same words as a missing one, so a
        // refusal never reveals that an id exists for someone else.
        _ => Err(Refusal::new(
            "KP2",
            format!(
                "{what} points at risk assessment {id:?}, which this child does not have: record one for this child and link it"
            ),
        )
        .because(super::reasons::PERMISSION_NEEDS_RISK_ASSESSMENT)),
    }
}

fn check_consult(who: &str, rec: &Option<ConsultRecord>, today: Date) -> Result<(), Refusal> {
    match rec {
        None => Ok(()),
        Some(ConsultRecord::Consulted {
            who: name, when, ..
        }) => {
            if blank(name) {
                return Err(Refusal::new(
                    "RM2",
                    format!(
                        "the consultation with {who} does not say who was spoken to: name them"
                    ),
                ));
            }
            if *when > today {
                return Err(Refusal::new(
                    "RM2",
                    format!(
                        "the consultation with {who} is dated {when}, which is in the future: record it once it has happened"
                    ),
                ));
            }
            Ok(())
        }
        Some(ConsultRecord::NotConsulted { reason }) => {
            if blank(reason) {
                Err(Refusal::new(
                    "RM2",
                    format!("{who} was not consulted and no reason is recorded: write why not"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Checks a proposed revision against the policy. Returns the first problem as one line.
///
/// `previous` is the section in force (none for a child's first plan); `risk_assessments` are
/// the child's stored assessments; `protected` is the home's protected contacts list; `today`
/// is the home's date, passed in because the domain does not read the clock.
pub fn validate_revision(
    previous: Option<&CommunicationSection>,
    next: &PlanRevisionDraft,
    risk_assessments: &[RiskAssessment],
    protected: &[ProtectedContact],
    author_role: Role,
    today: Date,
) -> Result<(), Refusal> {
    // clause RM2 and the roles: only a Registered Manager or Director decides.
    if author_role != Role::Manager {
        let you = author_role.with_article();
        return Err(Refusal::new(
            "RM2",
            format!(
                "only a manager (the Registered Manager or a Director) can change a child's placement plan; you are signed in as {you}"
            ),
        ));
    }
    check_text("RM2", "the child", &next.child_id, 200)?;
    check_text("RM2", "who made the revision", &next.made_by, 200)?;
    check_text("RM2", "the reason for the revision", &next.reason, 2000)?;
    if let Some(views) = &next.child_views
        && views.chars().count() > 4000
    {
        return Err(Refusal::new(
            "R7",
            "the child's views are longer than 4000 characters: shorten them",
        ));
    }
    for other in &next.shared_with.others {
        check_text("RM1", "a person the revision was shared with", other, 200)?;
    }
    if let Some(date) = next.review_by {
        check_review("this revision", date, today)?;
    }

    let child = next.child_id.trim();
    let s = &next.section;
    // R19: the built-in protected contacts count as protected whatever the home typed in.
    let protected = &crate::domain::policy::with_builtin(protected);
    check_contacts(s, child, risk_assessments, protected, today)?;
    check_camera(&s.camera, child, risk_assessments, today)?;
    check_web(&s.web, child, risk_assessments, today)?;
    check_apps(&s.apps, child, risk_assessments, protected)?;
    for (kind, list) in [
        ("letters", &s.letters),
        ("face-to-face contact", &s.face_to_face),
    ] {
        for a in list {
            check_text("S1", &format!("the person for {kind}"), &a.with_whom, 200)?;
            check_text(
                "S1",
                &format!("the {kind} arrangement with {}", a.with_whom.trim()),
                &a.details,
                2000,
            )?;
            let what = format!("the {kind} arrangement with {}", a.with_whom.trim());
            linked(&a.risk_assessment, &what, child, risk_assessments)?;
            if let Some(d) = a.review_by {
                check_review(&what, d, today)?;
            }
        }
    }

    check_consult("the social worker", &next.consultation.social_worker, today)?;
    check_consult("the parents", &next.consultation.parents, today)?;
    let limits = restrictions(previous, s);
    if let Some(first) = limits.first() {
        let what = if limits.len() == 1 {
            first.clone()
        } else {
            format!("{first}, and {} more", limits.len() - 1)
        };
        // clause RM2: limiting communication needs the social worker and the parents
        // consulted, or a recorded reason why not.
        if next.consultation.social_worker.is_none() {
            return Err(Refusal::new(
                "RM2",
                format!(
                    "this revision limits the child's communication ({what}): record that the social worker was consulted (who and when), or why not"
                ),
            ));
        }
        if next.consultation.parents.is_none() {
            return Err(Refusal::new(
                "RM2",
                format!(
                    "this revision limits the child's communication ({what}): record that the parents or the person with parental responsibility were consulted (who and when), or why not"
                ),
            ));
        }
        // clause KP1: a restriction is an exception with a review date.
        if next.review_by.is_none() {
            return Err(Refusal::new(
                "KP1",
                format!(
                    "this revision limits the child's communication ({what}): set a date by which the restriction will be reviewed"
                ),
            ));
        }
    }
    // clause RM3, R19: a planned restriction is protective, like an emergency one.
    check_protective_grounds(&next.reason, &next.grounds, &limits)?;
    // clause R7: the child's voice is on the record.
    check_child_voice(
        previous,
        s,
        next.child_views.as_deref(),
        next.grounds.views_not_sought.as_deref(),
    )?;
    // clause KP1, KP2: nothing new rests on an assessment past its review date.
    check_current_assessments(previous, s, risk_assessments, today)?;
    // clause GD2, GD3, KP1: each contact approved anew, against their own assessment.
    check_contact_risks(
        previous,
        s,
        risk_assessments,
        &next.grounds.risk_decisions,
        today,
    )?;
    Ok(())
}

fn check_contacts(
    s: &CommunicationSection,
    child: &str,
    risk_assessments: &[RiskAssessment],
    protected: &[ProtectedContact],
    today: Date,
) -> Result<(), Refusal> {
    let mut seen = BTreeSet::new();
    for c in &s.contacts {
        check_text("KP2", "a contact's name", &c.name, 100)?;
        let label = c.label();
        if !c.relationship.is_empty() {
            check_text(
                "KP2",
                &format!("{}'s relationship", c.name.trim()),
                &c.relationship,
                100,
            )?;
        }
        if !seen.insert(c.key()) {
            return Err(Refusal::new(
                "KP2",
                format!("{label} is listed twice: put all their numbers under one entry"),
            ));
        }
        if c.addresses.is_empty() {
            return Err(Refusal::new(
                "KP2",
                format!("{label} has no number or handle: add how the child may reach them"),
            ));
        }
        linked(
            &c.risk_assessment,
            &format!("contact with {label}"),
            child,
            risk_assessments,
        )?;
        if let Some(d) = c.review_by {
            check_review(&format!("contact with {label}"), d, today)?;
        }
        for a in &c.addresses {
            match a.channel {
                Channel::Call | Channel::Sms => match phone::normalise(&a.address) {
                    Err(e) => {
                        return Err(Refusal::new("KP2", format!("{label}'s number: {e}")));
                    }
                    Ok(n) if n != a.address => {
                        return Err(Refusal::new(
                            "KP2",
                            format!(
                                "{label}'s number {:?} is not in Haven's stored form: write it as {n}",
                                a.address
                            ),
                        ));
                    }
                    Ok(_) => {}
                },
                Channel::Messaging => {
                    check_text(
                        "KP2",
                        &format!("{label}'s messaging handle"),
                        &a.address,
                        200,
                    )?;
                    match &a.app {
                        Some(app) if !blank(app) => {
                            check_text("KP2", &format!("{label}'s messaging app"), app, 100)?;
                        }
                        _ => {
                            return Err(Refusal::new(
                                "KP2",
                                format!(
                                    "{label}'s handle {:?} does not say which messaging app it is for: name the app",
                                    a.address
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for w in &c.windows {
            if w.start_minute >= w.end_minute || w.end_minute > MINUTES_IN_DAY {
                return Err(Refusal::new(
                    "KP1",
                    format!(
                        "the times for {label} must start before they end, within one day: split times that cross midnight into two"
                    ),
                ));
            }
            if w.weekdays.iter().any(|d| !(1..=7).contains(d)) {
                return Err(Refusal::new(
                    "KP1",
                    format!("the days for {label} must be 1 (Monday) to 7 (Sunday)"),
                ));
            }
        }
        // clause R19: a protected contact can always be reached, so no rule may put it behind
        // times of day.
        if !c.windows.is_empty() {
            for a in c
                .addresses
                .iter()
                .filter(|a| a.channel != Channel::Messaging)
            {
                if let Some(p) = protected
                    .iter()
                    .find(|p| phone::same_number(&p.address, &a.address))
                {
                    return Err(Refusal::new(
                        "R19",
                        format!(
                            "{} ({}) is a protected contact the child can always reach: remove the times of day from {label}",
                            p.name, a.address
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_camera(
    camera: &CameraPermission,
    child: &str,
    risk_assessments: &[RiskAssessment],
    today: Date,
) -> Result<(), Refusal> {
    if let CameraPermission::On {
        placing_authority_agreement,
        parent_consultation,
        review_by,
        risk_assessment,
    } = camera
    {
        // clause IM1: both facts on record.
        check_agreement(
            "IM1",
            "the placing authority's agreement",
            placing_authority_agreement,
            today,
        )?;
        check_agreement(
            "IM1",
            "the consultation with the parents or the person with parental responsibility",
            parent_consultation,
            today,
        )?;
        linked(risk_assessment, "the camera", child, risk_assessments)?;
        // clause IM3: reviewed regularly.
        if *review_by < today {
            return Err(Refusal::new(
                "IM3",
                format!(
                    "the camera's review date {review_by} is in the past: choose today ({today}) or a later date"
                ),
            ));
        }
    }
    Ok(())
}

fn check_web(
    web: &WebPermission,
    child: &str,
    risk_assessments: &[RiskAssessment],
    today: Date,
) -> Result<(), Refusal> {
    if let WebPermission::Filtered {
        filter_profile,
        risk_assessment,
        social_sites,
        review_by,
    } = web
    {
        // clause WB1: no web without a filter.
        if blank(filter_profile) {
            return Err(Refusal::new(
                "WB1",
                "the internet needs a filtering profile: name the filter profile to use, or leave the internet off",
            ));
        }
        check_text("WB1", "the filter profile", filter_profile, 100)?;
        linked(risk_assessment, "the internet", child, risk_assessments)?;
        if let Some(d) = review_by {
            check_review("the internet", *d, today)?;
        }
        let mut seen = BTreeSet::new();
        for site in social_sites {
            let domain = normalise_domain(&site.domain)?;
            if domain != site.domain {
                return Err(Refusal::new(
                    "WB2",
                    format!("write the site {:?} as {domain}", site.domain),
                ));
            }
            if !seen.insert(domain.clone()) {
                return Err(Refusal::new(
                    "WB2",
                    format!("{domain} is listed twice: keep one entry"),
                ));
            }
            let what = format!("the social networking site {domain}");
            let ra = linked(&site.risk_assessment, &what, child, risk_assessments)?;
            // clause WB2: a full assessment with a social worker and an IT specialist.
            let missing = match (
                ra.participants.social_worker_took_part(),
                ra.participants.it_specialist_took_part(),
            ) {
                (true, true) => None,
                (false, true) => Some("a social worker"),
                (true, false) => Some("an IT specialist"),
                (false, false) => Some("a social worker and an IT specialist"),
            };
            if let Some(missing) = missing {
                return Err(Refusal::new(
                    "WB2",
                    format!(
                        "{what} needs a risk assessment made with a social worker and an IT specialist; {:?} has no {}: record a full assessment with both",
                        ra.id,
                        missing.trim_start_matches("a ").trim_start_matches("an ")
                    ),
                ));
            }
            if site.review_by < today {
                return Err(Refusal::new(
                    "WB2",
                    format!(
                        "the review date {} for {what} is in the past: choose today ({today}) or a later date",
                        site.review_by
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_apps(
    apps: &AppPermission,
    child: &str,
    risk_assessments: &[RiskAssessment],
    protected: &[ProtectedContact],
) -> Result<(), Refusal> {
    for app in apps.allowed.iter().chain(&apps.blocked) {
        check_app_id(app)?;
    }
    if let Some(app) = apps
        .allowed
        .iter()
        .find(|a| apps.blocked.iter().any(|b| b.eq_ignore_ascii_case(a)))
    {
        return Err(Refusal::new(
            "S1",
            format!("{app} is both allowed and blocked: keep it in one list"),
        ));
    }
    // clause R19: the phone and text apps reach protected contacts.
    if let Some(app) = apps.blocked.iter().find(|a| is_essential_app(a)) {
        let whom = match protected.first() {
            Some(p) => format!("protected contacts such as {}", p.name),
            None => "protected contacts such as the emergency services and Childline".into(),
        };
        return Err(Refusal::new(
            "R19",
            format!(
                "blocking {app} would stop the child reaching {whom}, who can never be blocked: take it off the blocked list"
            ),
        ));
    }
    let needs_assessment = !apps.allowed.is_empty();
    match &apps.risk_assessment {
        Some(id) => {
            linked(id, "the allowed apps", child, risk_assessments)?;
        }
        None if needs_assessment => {
            return Err(Refusal::new(
                "KP2",
                "the allowed apps have no risk assessment: record one and link it before allowing apps by name",
            ));
        }
        None => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Comparing revisions
// ---------------------------------------------------------------------------------------------

/// Minutes of the week (Monday 00:00 = 0) at which the windows allow contact.
fn coverage(windows: &[TimeWindow]) -> Vec<bool> {
    let day = usize::from(MINUTES_IN_DAY);
    if windows.is_empty() {
        return vec![true; 7 * day];
    }
    let mut out = vec![false; 7 * day];
    for w in windows {
        let start = usize::from(w.start_minute.min(MINUTES_IN_DAY));
        let end = usize::from(w.end_minute.min(MINUTES_IN_DAY));
        let days: Vec<usize> = if w.weekdays.is_empty() {
            (0..7).collect()
        } else {
            w.weekdays
                .iter()
                .filter(|d| (1..=7).contains(*d))
                .map(|d| usize::from(*d) - 1)
                .collect()
        };
        for d in days {
            for m in start..end {
                out[d * day + m] = true;
            }
        }
    }
    out
}

/// Whether `next` allows contact at fewer times of the week than `prev` did.
pub fn narrows_times(prev: &[TimeWindow], next: &[TimeWindow]) -> bool {
    narrows(prev, next)
}

fn narrows(prev: &[TimeWindow], next: &[TimeWindow]) -> bool {
    if prev == next {
        return false;
    }
    let (p, n) = (coverage(prev), coverage(next));
    p.iter().zip(&n).any(|(was, now)| *was && !*now)
}

fn site_domains(web: &WebPermission) -> BTreeSet<String> {
    match web {
        WebPermission::Off => BTreeSet::new(),
        WebPermission::Filtered { social_sites, .. } => social_sites
            .iter()
            .map(|s| s.domain.trim().to_ascii_lowercase())
            .collect(),
    }
}

fn arrangement_key(a: &Arrangement) -> (String, String) {
    (
        a.with_whom.trim().to_lowercase(),
        a.details.trim().to_string(),
    )
}

/// Each way `next` limits what `previous` allowed, in plain words; empty when it limits
/// nothing. A first plan limits nothing: it only widens the safe default.
pub fn restrictions(
    previous: Option<&CommunicationSection>,
    next: &CommunicationSection,
) -> Vec<String> {
    let Some(prev) = previous else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let next_contacts: BTreeMap<_, _> = next.contacts.iter().map(|c| (c.key(), c)).collect();
    for p in &prev.contacts {
        match next_contacts.get(&p.key()) {
            None => out.push(format!("removes contact {}", p.label())),
            Some(n) => {
                let kept: BTreeSet<&ContactAddress> = n.addresses.iter().collect();
                for a in &p.addresses {
                    if !kept.contains(a) {
                        out.push(format!(
                            "stops the child being able to {} ({})",
                            a.describe(),
                            p.label()
                        ));
                    }
                }
                if narrows(&p.windows, &n.windows) {
                    out.push(format!("narrows the times for {}", p.label()));
                }
            }
        }
    }
    if matches!(prev.camera, CameraPermission::On { .. }) && next.camera == CameraPermission::Off {
        out.push("turns the camera off".into());
    }
    match (&prev.web, &next.web) {
        (WebPermission::Filtered { .. }, WebPermission::Off) => {
            out.push("turns the internet off".into());
        }
        (
            WebPermission::Filtered {
                filter_profile: a, ..
            },
            WebPermission::Filtered {
                filter_profile: b, ..
            },
        ) if a.trim() != b.trim() => {
            // Haven cannot tell whether another profile filters more; a change is treated as
            // a restriction so that it is consulted on (when in doubt, the safer path).
            out.push(format!(
                "changes the internet filter from {} to {}",
                a.trim(),
                b.trim()
            ));
        }
        _ => {}
    }
    let next_sites = site_domains(&next.web);
    for d in site_domains(&prev.web) {
        if !next_sites.contains(&d) && matches!(next.web, WebPermission::Filtered { .. }) {
            out.push(format!("removes the social networking site {d}"));
        }
    }
    if prev.apps.default_allow && !next.apps.default_allow {
        out.push("lets only allowed apps run".into());
    }
    let prev_blocked: BTreeSet<String> = prev
        .apps
        .blocked
        .iter()
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for b in &next.apps.blocked {
        if !prev_blocked.contains(&b.trim().to_ascii_lowercase()) {
            out.push(format!("blocks the app {}", b.trim()));
        }
    }
    if !next.apps.default_allow {
        let now: BTreeSet<String> = next
            .apps
            .allowed
            .iter()
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        for a in &prev.apps.allowed {
            if !now.contains(&a.trim().to_ascii_lowercase()) {
                out.push(format!("stops allowing the app {}", a.trim()));
            }
        }
    }
    for (kind, was, now) in [
        ("letters", &prev.letters, &next.letters),
        (
            "face-to-face contact",
            &prev.face_to_face,
            &next.face_to_face,
        ),
    ] {
        let now: BTreeSet<_> = now.iter().map(arrangement_key).collect();
        for a in was {
            if !now.contains(&arrangement_key(a)) {
                out.push(format!(
                    "ends or changes the {kind} arrangement with {}",
                    a.with_whom.trim()
                ));
            }
        }
    }
    out
}

/// Whether `next` limits or withdraws anything `previous` allowed (RM2).
pub fn is_restriction(
    previous: Option<&CommunicationSection>,
    next: &CommunicationSection,
) -> bool {
    !restrictions(previous, next).is_empty()
}

fn opt_date(d: &Option<Date>) -> String {
    d.map_or_else(|| "none".to_string(), |d| d.to_string())
}

fn describe_contact(c: &ContactPermission) -> String {
    let ways: Vec<String> = c.addresses.iter().map(ContactAddress::describe).collect();
    format!(
        "{}: {}, {}",
        c.label(),
        join_and(&ways),
        describe_windows(&c.windows)
    )
}

/// What changed between two sections, one plain line per change, for `haven plan diff`. A
/// missing `previous` is compared with the safe default (nothing allowed).
pub fn diff(previous: Option<&CommunicationSection>, next: &CommunicationSection) -> Vec<String> {
    let empty = CommunicationSection::default();
    let prev = previous.unwrap_or(&empty);
    let mut out = Vec::new();

    let prev_contacts: BTreeMap<_, _> = prev.contacts.iter().map(|c| (c.key(), c)).collect();
    let next_contacts: BTreeMap<_, _> = next.contacts.iter().map(|c| (c.key(), c)).collect();
    for (k, p) in &prev_contacts {
        if !next_contacts.contains_key(k) {
            out.push(format!("Removed contact {}", p.label()));
        }
    }
    for (k, n) in &next_contacts {
        let Some(p) = prev_contacts.get(k) else {
            out.push(format!("Added contact {}", describe_contact(n)));
            continue;
        };
        let label = n.label();
        let was: BTreeSet<&ContactAddress> = p.addresses.iter().collect();
        let now: BTreeSet<&ContactAddress> = n.addresses.iter().collect();
        for a in now.difference(&was) {
            out.push(format!("{label}: can now {}", a.describe()));
        }
        for a in was.difference(&now) {
            out.push(format!("{label}: can no longer {}", a.describe()));
        }
        if p.windows != n.windows {
            out.push(format!(
                "{label}: times changed from {} to {}",
                describe_windows(&p.windows),
                describe_windows(&n.windows)
            ));
        }
        if p.risk_assessment.trim() != n.risk_assessment.trim() {
            out.push(format!(
                "{label}: risk assessment changed from {} to {}",
                p.risk_assessment.trim(),
                n.risk_assessment.trim()
            ));
        }
        if p.review_by != n.review_by {
            out.push(format!(
                "{label}: review date changed from {} to {}",
                opt_date(&p.review_by),
                opt_date(&n.review_by)
            ));
        }
    }

    match (&prev.camera, &next.camera) {
        (
            CameraPermission::Off,
            CameraPermission::On {
                placing_authority_agreement: pa,
                parent_consultation: pc,
                review_by,
                ..
            },
        ) => {
            out.push(format!(
                "Camera turned on: agreed by {} on {}, parents consulted ({}, {}), review by {review_by}",
                pa.who.trim(), pa.when, pc.who.trim(), pc.when
            ));
        }
        (CameraPermission::On { .. }, CameraPermission::Off) => {
            out.push("Camera turned off".into())
        }
        (
            a @ CameraPermission::On { review_by: ra, .. },
            b @ CameraPermission::On { review_by: rb, .. },
        ) if a != b => {
            if ra != rb {
                out.push(format!("Camera: review date changed from {ra} to {rb}"));
            } else {
                out.push("Camera: the agreement on record changed".into());
            }
        }
        _ => {}
    }

    match (&prev.web, &next.web) {
        (WebPermission::Off, WebPermission::Filtered { filter_profile, .. }) => {
            out.push(format!(
                "Internet turned on through the filter profile {}",
                filter_profile.trim()
            ));
        }
        (WebPermission::Filtered { .. }, WebPermission::Off) => {
            out.push("Internet turned off".into())
        }
        (
            WebPermission::Filtered {
                filter_profile: a,
                review_by: ra,
                ..
            },
            WebPermission::Filtered {
                filter_profile: b,
                review_by: rb,
                ..
            },
        ) => {
            if a.trim() != b.trim() {
                out.push(format!(
                    "Internet filter profile changed from {} to {}",
                    a.trim(),
                    b.trim()
                ));
            }
            if ra != rb {
                out.push(format!(
                    "Internet: review date changed from {} to {}",
                    opt_date(ra),
                    opt_date(rb)
                ));
            }
        }
        _ => {}
    }
    let sites = |w: &WebPermission| -> BTreeMap<String, SocialSite> {
        match w {
            WebPermission::Off => BTreeMap::new(),
            WebPermission::Filtered { social_sites, .. } => social_sites
                .iter()
                .map(|s| (s.domain.trim().to_ascii_lowercase(), s.clone()))
                .collect(),
        }
    };
    let (ps, ns) = (sites(&prev.web), sites(&next.web));
    for (d, s) in &ns {
        match ps.get(d) {
            None => out.push(format!(
                "Social networking site allowed: {d} (review by {})",
                s.review_by
            )),
            Some(p) if p.review_by != s.review_by => out.push(format!(
                "Social networking site {d}: review date changed from {} to {}",
                p.review_by, s.review_by
            )),
            Some(_) => {}
        }
    }
    for d in ps.keys() {
        if !ns.contains_key(d) {
            out.push(format!("Social networking site no longer allowed: {d}"));
        }
    }

    if prev.apps.default_allow != next.apps.default_allow {
        out.push(if next.apps.default_allow {
            "Apps: any app that is not blocked may now run".into()
        } else {
            "Apps: only allowed apps may now run".into()
        });
    }
    let set =
        |v: &[String]| -> BTreeSet<String> { v.iter().map(|s| s.trim().to_string()).collect() };
    let (pa, na) = (set(&prev.apps.allowed), set(&next.apps.allowed));
    let (pb, nb) = (set(&prev.apps.blocked), set(&next.apps.blocked));
    out.extend(na.difference(&pa).map(|a| format!("App allowed: {a}")));
    out.extend(
        pa.difference(&na)
            .map(|a| format!("App no longer allowed: {a}")),
    );
    out.extend(nb.difference(&pb).map(|a| format!("App blocked: {a}")));
    out.extend(pb.difference(&nb).map(|a| format!("App unblocked: {a}")));

    for (kind, was, now) in [
        ("Letters", &prev.letters, &next.letters),
        (
            "Face-to-face contact",
            &prev.face_to_face,
            &next.face_to_face,
        ),
    ] {
        let w: BTreeSet<_> = was.iter().map(arrangement_key).collect();
        let n: BTreeSet<_> = now.iter().map(arrangement_key).collect();
        for (who, details) in n.difference(&w) {
            out.push(format!("{kind}: new arrangement with {who}: {details}"));
        }
        for (who, details) in w.difference(&n) {
            out.push(format!("{kind}: arrangement with {who} ended: {details}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reviews
// ---------------------------------------------------------------------------------------------

/// Something in a plan that must be looked at again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    pub what: String,
    pub due: Date,
    pub overdue: bool,
}

/// What in `revision` (and the risk assessments it relies on) is due for review within
/// `within_days` of `today`, or already overdue, soonest first (KP1, IM3, WB2).
pub fn reviews_due(
    revision: &PlanRevision,
    risk_assessments: &[RiskAssessment],
    today: Date,
    within_days: u32,
) -> Vec<ReviewItem> {
    // Clamped so the addition can never overflow; beyond the calendar's end everything is due.
    let horizon = jiff::Span::new()
        .try_days(i64::from(within_days.min(1_000_000)))
        .ok()
        .and_then(|span| today.checked_add(span).ok())
        .unwrap_or(Date::MAX);
    let mut all: Vec<(String, Date)> = Vec::new();
    let s = &revision.section;
    if let Some(d) = revision.review_by {
        all.push((
            format!("the restrictions in plan revision {}", revision.number),
            d,
        ));
    }
    for c in &s.contacts {
        if let Some(d) = c.review_by {
            all.push((format!("contact with {}", c.label()), d));
        }
    }
    if let CameraPermission::On { review_by, .. } = &s.camera {
        all.push(("the camera agreement".into(), *review_by));
    }
    if let WebPermission::Filtered {
        review_by,
        social_sites,
        ..
    } = &s.web
    {
        if let Some(d) = review_by {
            all.push(("the internet arrangement".into(), *d));
        }
        for site in social_sites {
            all.push((
                format!("the social networking site {}", site.domain.trim()),
                site.review_by,
            ));
        }
    }
    for (kind, list) in [
        ("letters", &s.letters),
        ("face-to-face contact", &s.face_to_face),
    ] {
        for a in list {
            if let Some(d) = a.review_by {
                all.push((format!("{kind} with {}", a.with_whom.trim()), d));
            }
        }
    }
    let linked: BTreeSet<&str> = linked_assessments(s).into_iter().collect();
    for ra in risk_assessments {
        if ra.child_id == revision.child_id && linked.contains(ra.id.as_str()) {
            all.push((format!("risk assessment {}", ra.id), ra.review_by));
        }
    }
    let mut out: Vec<ReviewItem> = all
        .into_iter()
        .filter(|(_, due)| *due <= horizon)
        .map(|(what, due)| ReviewItem {
            what,
            due,
            overdue: due < today,
        })
        .collect();
    out.sort_by(|a, b| a.due.cmp(&b.due).then_with(|| a.what.cmp(&b.what)));
    out
}

/// A restriction that is in force now, and since when (KP1: "staff can see how long each
/// has been in force").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestrictionInForce {
    pub what: String,
    /// When the revision that began it was made.
    pub since: UnixMillis,
    pub since_revision: u32,
    /// Why that revision was made.
    pub reason: String,
    /// The review date of the current revision, if it has one.
    pub review_by: Option<Date>,
}

/// Each way a section withholds something, keyed so the same restriction can be followed
/// from one revision to the next.
fn restriction_facts(s: &CommunicationSection) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    if s.camera == CameraPermission::Off {
        facts.insert("camera".into(), "the camera is off".into());
    }
    if s.web == WebPermission::Off {
        facts.insert("web".into(), "the internet is off".into());
    }
    if !s.apps.default_allow {
        facts.insert("apps".into(), "only allowed apps can run".into());
    }
    for app in &s.apps.blocked {
        let app = app.trim();
        facts.insert(
            format!("app:{}", app.to_ascii_lowercase()),
            format!("the app {app} is blocked"),
        );
    }
    for c in &s.contacts {
        if !c.windows.is_empty() {
            let (name, relationship) = c.key();
            let when = describe_windows(&c.windows);
            facts.insert(
                format!("times:{name}:{relationship}:{when}"),
                format!("contact with {} only {when}", c.label()),
            );
        }
    }
    facts
}

/// The restrictions in force in the newest revision of `history` (oldest first), each with
/// the revision since which it has been in force without a break.
pub fn restrictions_in_force(history: &[PlanRevision]) -> Vec<RestrictionInForce> {
    let Some(current) = history.last() else {
        return Vec::new();
    };
    let facts: Vec<BTreeMap<String, String>> = history
        .iter()
        .map(|r| restriction_facts(&r.section))
        .collect();
    let Some(now) = facts.last() else {
        return Vec::new();
    };
    let mut out: Vec<RestrictionInForce> = now
        .iter()
        .map(|(key, what)| {
            // Walk back while the same restriction was in force.
            let mut start = history.len() - 1;
            while start > 0 && facts[start - 1].contains_key(key) {
                start -= 1;
            }
            let began = &history[start];
            RestrictionInForce {
                what: what.clone(),
                since: began.made_at,
                since_revision: began.number,
                reason: began.reason.clone(),
                review_by: current.review_by,
            }
        })
        .collect();
    // clause KP1: withdrawn contacts and ways of reaching them are restrictions too.
    out.extend(
        super::restriction::withdrawn_in(history)
            .into_iter()
            .map(|(what, i)| RestrictionInForce {
                what,
                since: history[i].made_at,
                since_revision: history[i].number,
                reason: history[i].reason.clone(),
                review_by: current.review_by,
            }),
    );
    out.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.what.cmp(&b.what)));
    out
}

/// "3 days", "1 day", "less than a day": how long something has been in force.
pub fn in_force_for(since: UnixMillis, now: UnixMillis) -> String {
    let days = (now.saturating_sub(since)) / 86_400_000;
    match days {
        d if d <= 0 => "less than a day".into(),
        1 => "1 day".into(),
        d => format!("{d} days"),
    }
}

/// Each permission a section grants, in words, with the risk assessment it rests on.
fn permission_links(s: &CommunicationSection) -> Vec<(String, &str)> {
    let mut links: Vec<(String, &str)> = Vec::new();
    if let CameraPermission::On {
        risk_assessment, ..
    } = &s.camera
    {
        links.push(("the camera".into(), risk_assessment.trim()));
    }
    if let WebPermission::Filtered {
        risk_assessment,
        social_sites,
        ..
    } = &s.web
    {
        links.push(("the web".into(), risk_assessment.trim()));
        for site in social_sites {
            links.push((site.domain.clone(), site.risk_assessment.trim()));
        }
    }
    if let Some(id) = &s.apps.risk_assessment {
        links.push(("the allowed apps".into(), id.trim()));
    }
    for a in &s.letters {
        links.push((
            format!("letters with {}", a.with_whom.trim()),
            a.risk_assessment.trim(),
        ));
    }
    for a in &s.face_to_face {
        links.push((
            format!("visits with {}", a.with_whom.trim()),
            a.risk_assessment.trim(),
        ));
    }
    links
}

/// Clause KP1, KP2: a permission granted anew (or moved to another assessment) must rest on an
/// assessment that is still current; one past its review date justifies nothing new — review
/// the assessment first. Permissions carried over unchanged are not refused here: their
/// review is listed by `reviews_due`. (Contacts have the same rule in `contact_risk`.)
pub fn check_current_assessments(
    previous: Option<&CommunicationSection>,
    next: &CommunicationSection,
    risk_assessments: &[RiskAssessment],
    today: Date,
) -> Result<(), Refusal> {
    let before = previous.map(permission_links).unwrap_or_default();
    for (what, id) in permission_links(next) {
        if before.iter().any(|(w, i)| *w == what && *i == id) {
            continue;
        }
        if let Some(ra) = risk_assessments.iter().find(|r| r.id == id)
            && ra.review_by < today
        {
            return Err(Refusal::new(
                "KP2",
                format!(
                    "{what} rests on risk assessment {id}, whose review date {} has passed: review the assessment first (`haven risk add`), then link the new one",
                    ra.review_by
                ),
            ));
        }
    }
    Ok(())
}

/// The ids of every risk assessment a section points at.
pub fn linked_assessments(s: &CommunicationSection) -> Vec<&str> {
    let mut ids: Vec<&str> = Vec::new();
    ids.extend(s.contacts.iter().map(|c| c.risk_assessment.trim()));
    if let CameraPermission::On {
        risk_assessment, ..
    } = &s.camera
    {
        ids.push(risk_assessment.trim());
    }
    if let WebPermission::Filtered {
        risk_assessment,
        social_sites,
        ..
    } = &s.web
    {
        ids.push(risk_assessment.trim());
        ids.extend(social_sites.iter().map(|x| x.risk_assessment.trim()));
    }
    if let Some(id) = &s.apps.risk_assessment {
        ids.push(id.trim());
    }
    ids.extend(
        s.letters
            .iter()
            .chain(&s.face_to_face)
            .map(|a| a.risk_assessment.trim()),
    );
    ids.sort_unstable();
    ids.dedup();
    ids.retain(|id| !id.is_empty());
    ids
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::risk::{sample_draft, validate_risk_assessment};
    use jiff::civil::date;
    use proptest::prelude::*;

    pub(crate) fn today() -> Date {
        date(2026, 11, 28)
    }

    fn assessment(id: &str, child: &str, it_specialist: bool) -> RiskAssessment {
        let mut d = sample_draft(id, child);
        if it_specialist {
            d.participants.it_specialist = Some("Sam Okoro, IT".into());
        }
        validate_risk_assessment(&d, today()).unwrap()
    }

    fn assessments() -> Vec<RiskAssessment> {
        vec![
            assessment("ra-nan", "chd-1", false),
            assessment("ra-camera", "chd-1", false),
            assessment("ra-web", "chd-1", false),
            assessment("ra-social", "chd-1", true),
            assessment("ra-other-child", "chd-2", true),
        ]
    }

    // clause KP1: staff can see how long each restriction has been in force.
    #[test]
    fn kp1_each_restriction_in_force_says_since_when() {
        let mut first = PlanRevision {
            number: 1,
            child_id: "chd-1".into(),
            made_by: "stf-m".into(),
            made_at: 1_000,
            reason: "first plan".into(),
            consultation: Consultation::default(),
            shared_with: SharedWith::default(),
            child_views: None,
            review_by: None,
            grounds: Grounds::default(),
            section: CommunicationSection::default(),
        };
        first.section.apps.default_allow = true;
        let mut second = first.clone();
        second.number = 2;
        second.made_at = 5 * 86_400_000;
        second.reason = "game blocked at night".into();
        second.section.apps.blocked = vec!["com.example.game".into()];
        second.review_by = Some(Date::new(2027, 1, 1).unwrap());
        let mut third = second.clone();
        third.number = 3;
        third.made_at = 9 * 86_400_000;
        third.reason = "web filtered".into();
        let in_force = restrictions_in_force(&[first, second, third]);
        let camera = in_force
            .iter()
            .find(|r| r.what == "the camera is off")
            .unwrap();
        assert_eq!(camera.since_revision, 1, "unbroken since the first plan");
        let game = in_force
            .iter()
            .find(|r| r.what.contains("com.example.game"))
            .unwrap();
        assert_eq!(game.since_revision, 2);
        assert_eq!(game.reason, "game blocked at night");
        assert_eq!(game.review_by, Some(Date::new(2027, 1, 1).unwrap()));
        assert_eq!(in_force_for(game.since, 12 * 86_400_000), "7 days");
        assert_eq!(in_force_for(10, 20), "less than a day");
        assert!(restrictions_in_force(&[]).is_empty());
    }

    // clause KP1: a withdrawn contact, or a way of reaching one, is a restriction in force.
    #[test]
    fn kp1_withdrawn_contacts_and_ways_of_reaching_them_are_in_force() {
        let mut first = PlanRevision::next(None, draft(full_section()));
        first.made_at = 1_000;
        let nan = first.section.contacts[0].clone();
        let mut second = first.clone();
        second.number = 2;
        second.made_at = 2_000;
        second.reason = "calls stop for now".into();
        second.review_by = Some(Date::new(2026, 12, 10).unwrap());
        second.section.contacts[0]
            .addresses
            .retain(|a| a.channel != Channel::Call);
        let in_force = restrictions_in_force(&[first.clone(), second.clone()]);
        let calls = in_force
            .iter()
            .find(|r| r.what.contains("by phone"))
            .unwrap_or_else(|| panic!("{in_force:?}"));
        assert_eq!(calls.since_revision, 2);
        assert_eq!(calls.review_by, Some(Date::new(2026, 12, 10).unwrap()));
        assert!(
            calls
                .what
                .starts_with(&format!("contact with {}", nan.label()))
        );
        let mut third = second.clone();
        third.number = 3;
        third.made_at = 3_000;
        third.section.contacts.clear();
        let in_force = restrictions_in_force(&[first, second, third]);
        let gone = in_force
            .iter()
            .find(|r| r.what == format!("contact with {} withdrawn", nan.label()))
            .unwrap_or_else(|| panic!("{in_force:?}"));
        assert_eq!(gone.since_revision, 3);
    }

    pub(crate) fn protected_contact(name: &str, address: &str) -> ProtectedContact {
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

    fn protected() -> Vec<ProtectedContact> {
        vec![
            protected_contact("Childline", "08001111"),
            protected_contact("Emergency services", "999"),
            protected_contact("Priya Shah (social worker)", "+447700900999"),
        ]
    }

    fn nan() -> ContactPermission {
        ContactPermission {
            name: "Nan".into(),
            relationship: "grandmother".into(),
            addresses: vec![
                ContactAddress {
                    channel: Channel::Call,
                    address: "+447700900123".into(),
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
            review_by: Some(date(2027, 3, 1)),
        }
    }

    fn camera_on() -> CameraPermission {
        CameraPermission::On {
            placing_authority_agreement: Agreement {
                who: "Priya Shah, Kent County Council".into(),
                when: date(2026, 11, 20),
            },
            parent_consultation: Agreement {
                who: "Mrs Khan (mother, PR)".into(),
                when: date(2026, 11, 21),
            },
            review_by: date(2027, 2, 1),
            risk_assessment: "ra-camera".into(),
        }
    }

    fn web_on() -> WebPermission {
        WebPermission::Filtered {
            filter_profile: "under-16-strict".into(),
            risk_assessment: "ra-web".into(),
            social_sites: vec![SocialSite {
                domain: "instagram.com".into(),
                risk_assessment: "ra-social".into(),
                review_by: date(2027, 1, 15),
            }],
            review_by: None,
        }
    }

    fn full_section() -> CommunicationSection {
        CommunicationSection {
            contacts: vec![nan()],
            camera: camera_on(),
            web: web_on(),
            apps: AppPermission {
                default_allow: true,
                allowed: vec![],
                blocked: vec!["com.example.chatroulette".into()],
                risk_assessment: None,
            },
            letters: vec![Arrangement {
                with_whom: "Dad".into(),
                details: "Letters via the social worker, read with the child".into(),
                risk_assessment: "ra-nan".into(),
                review_by: None,
            }],
            face_to_face: vec![],
        }
    }

    fn draft(section: CommunicationSection) -> PlanRevisionDraft {
        PlanRevisionDraft {
            child_id: "chd-1".into(),
            made_by: "stf-manager".into(),
            made_at: 1_764_000_000_000,
            reason: "Placement plan agreed at the review meeting".into(),
            consultation: Consultation::default(),
            shared_with: SharedWith {
                child: true,
                social_worker: true,
                others: vec!["Mrs Khan".into()],
            },
            child_views: Some("I want to talk to Nan after school".into()),
            review_by: None,
            grounds: Grounds {
                protective_reason: Some("injury-to-child".into()),
                evidence: Some("threatening messages shown to staff on 20 November".into()),
                ..Default::default()
            },
            section,
        }
    }

    fn check(prev: Option<&CommunicationSection>, d: &PlanRevisionDraft) -> Result<(), Refusal> {
        validate_revision(
            prev,
            d,
            &assessments(),
            &protected(),
            Role::Manager,
            today(),
        )
    }

    fn consulted() -> Consultation {
        Consultation {
            social_worker: Some(ConsultRecord::Consulted {
                who: "Priya Shah".into(),
                when: date(2026, 11, 27),
                notes: "agrees".into(),
            }),
            parents: Some(ConsultRecord::NotConsulted {
                reason: "Mother could not be reached; will be told at contact on Friday".into(),
            }),
        }
    }

    #[test]
    fn a_complete_first_plan_is_accepted() {
        check(None, &draft(full_section())).unwrap();
        check(None, &draft(CommunicationSection::default())).unwrap();
    }

    // clause RM2: only a Registered Manager or Director changes the plan.
    #[test]
    fn rm2_only_a_manager_may_make_a_revision() {
        for role in [Role::Staff, Role::Admin] {
            let r = validate_revision(
                None,
                &draft(full_section()),
                &assessments(),
                &protected(),
                role,
                today(),
            )
            .unwrap_err();
            assert_eq!(r.clause, "RM2");
            assert!(r.message.starts_with("only a manager"), "{r}");
        }
    }

    // clause RM2: limiting communication needs the social worker and parents consulted (or a
    // reason why not); clause KP1: and a review date.
    #[test]
    fn rm2_a_restriction_needs_the_consultation_on_record() {
        let prev = full_section();
        let mut next = full_section();
        next.contacts.clear();
        let mut d = draft(next);
        let r = check(Some(&prev), &d).unwrap_err();
        assert_eq!(r.clause, "RM2");
        assert!(
            r.message.contains("removes contact Nan (grandmother)"),
            "{r}"
        );
        assert!(r.message.contains("social worker"), "{r}");

        d.consultation.social_worker = consulted().social_worker;
        let r = check(Some(&prev), &d).unwrap_err();
        assert!(r.message.contains("parents"), "{r}");

        d.consultation.parents = Some(ConsultRecord::NotConsulted {
            reason: "  ".into(),
        });
        let r = check(Some(&prev), &d).unwrap_err();
        assert!(r.message.contains("write why not"), "{r}");

        d.consultation = consulted();
        let r = check(Some(&prev), &d).unwrap_err();
        assert_eq!(r.clause, "KP1");
        d.review_by = Some(date(2027, 1, 1));
        check(Some(&prev), &d).unwrap();
    }

    // clause RM2: widening needs no consultation record.
    #[test]
    fn rm2_widening_needs_no_consultation() {
        let prev = CommunicationSection::default();
        let mut next = full_section();
        next.apps.blocked.clear();
        check(Some(&prev), &draft(next.clone())).unwrap();
        // Blocking an app that ran before is a restriction, even in a plan that widens.
        next.apps.blocked.push("com.example.chatroulette".into());
        assert_eq!(check(Some(&prev), &draft(next)).unwrap_err().clause, "RM2");
    }

    // clause RM2: a consultation dated in the future is refused.
    #[test]
    fn rm2_a_consultation_in_the_future_is_refused() {
        let mut d = draft(full_section());
        d.consultation.social_worker = Some(ConsultRecord::Consulted {
            who: "Priya".into(),
            when: date(2026, 12, 1),
            notes: String::new(),
        });
        assert!(
            check(None, &d)
                .unwrap_err()
                .message
                .contains("in the future")
        );
    }

    // clause KP2
    #[test]
    fn kp2_a_permission_without_a_risk_assessment_is_refused() {
        let mut s = full_section();
        s.contacts[0].risk_assessment = " ".into();
        let r = check(None, &draft(s)).unwrap_err();
        assert_eq!(r.clause, "KP2");
        assert!(
            r.message
                .contains("contact with Nan (grandmother) has no risk assessment"),
            "{r}"
        );

        let mut s = full_section();
        s.contacts[0].risk_assessment = "ra-nowhere".into();
        let missing = check(None, &draft(s)).unwrap_err();
        let mut s = full_section();
        s.contacts[0].risk_assessment = "ra-other-child".into();
        let other = check(None, &draft(s)).unwrap_err();
        assert_eq!(other.clause, "KP2");
        // Another child's assessment reads exactly like a missing one.
        assert_eq!(
            missing.message.replace("ra-nowhere", "X"),
            other.message.replace("ra-other-child", "X")
        );
    }

    // clause KP1, KP2: an assessment past its review date justifies no new camera, web, apps,
    // letters or visits; what a revision carries over unchanged is not refused for it.
    #[test]
    fn kp1_kp2_an_assessment_past_its_review_date_justifies_no_new_permission() {
        let mut old = assessments();
        for ra in &mut old {
            if ra.id == "ra-camera" {
                ra.review_by = today().checked_sub(jiff::Span::new().days(1)).unwrap();
            }
        }
        let s = full_section();
        let r = validate_revision(
            None,
            &draft(s.clone()),
            &old,
            &protected(),
            Role::Manager,
            today(),
        )
        .unwrap_err();
        assert_eq!(r.clause, "KP2", "{r}");
        assert!(
            r.message.contains("the camera") && r.message.contains("review the assessment first"),
            "{r}"
        );
        // The camera was already on, on the same assessment: carried over, not refused here.
        assert!(check_current_assessments(Some(&s), &s, &old, today()).is_ok());
    }

    // clause KP2: every kind of permission, not only contacts.
    #[test]
    fn kp2_camera_web_apps_and_letters_need_risk_assessments() {
        let mut s = full_section();
        if let CameraPermission::On {
            risk_assessment, ..
        } = &mut s.camera
        {
            *risk_assessment = "ra-x".into();
        }
        assert_eq!(check(None, &draft(s)).unwrap_err().clause, "KP2");
        let mut s = full_section();
        if let WebPermission::Filtered {
            risk_assessment, ..
        } = &mut s.web
        {
            risk_assessment.clear();
        }
        assert_eq!(check(None, &draft(s)).unwrap_err().clause, "KP2");
        let mut s = full_section();
        s.apps.allowed = vec!["com.whatsapp".into()];
        assert_eq!(check(None, &draft(s.clone())).unwrap_err().clause, "KP2");
        s.apps.risk_assessment = Some("ra-nan".into());
        check(None, &draft(s)).unwrap();
        let mut s = full_section();
        s.letters[0].risk_assessment = "ra-x".into();
        assert_eq!(check(None, &draft(s)).unwrap_err().clause, "KP2");
    }

    // clause IM1
    #[test]
    fn im1_the_camera_needs_both_agreements() {
        for which in 0..2 {
            let mut s = full_section();
            if let CameraPermission::On {
                placing_authority_agreement,
                parent_consultation,
                ..
            } = &mut s.camera
            {
                if which == 0 {
                    placing_authority_agreement.who = "".into();
                } else {
                    parent_consultation.who = " ".into();
                }
            }
            let r = check(None, &draft(s)).unwrap_err();
            assert_eq!(r.clause, "IM1");
            assert!(r.message.starts_with("the camera needs"), "{r}");
        }
    }

    // clause IM3
    #[test]
    fn im3_the_camera_review_date_cannot_be_in_the_past() {
        let mut s = full_section();
        if let CameraPermission::On { review_by, .. } = &mut s.camera {
            *review_by = date(2026, 11, 1);
        }
        let r = check(None, &draft(s)).unwrap_err();
        assert_eq!(r.clause, "IM3");
        assert!(r.message.contains("in the past"));
    }

    // clause WB1
    #[test]
    fn wb1_the_web_needs_a_filter_profile() {
        let mut s = full_section();
        if let WebPermission::Filtered { filter_profile, .. } = &mut s.web {
            *filter_profile = "  ".into();
        }
        let r = check(None, &draft(s)).unwrap_err();
        assert_eq!(r.clause, "WB1");
        assert!(r.message.contains("filtering profile"), "{r}");
    }

    // clause WB2
    #[test]
    fn wb2_a_social_site_needs_a_social_worker_and_an_it_specialist() {
        let mut s = full_section();
        if let WebPermission::Filtered { social_sites, .. } = &mut s.web {
            social_sites[0].risk_assessment = "ra-web".into();
        }
        let r = check(None, &draft(s)).unwrap_err();
        assert_eq!(r.clause, "WB2");
        assert!(r.message.contains("instagram.com"), "{r}");
        assert!(r.message.contains("has no IT specialist"), "{r}");
    }

    // clause WB2: reviewed regularly.
    #[test]
    fn wb2_a_social_site_review_date_cannot_be_in_the_past() {
        let mut s = full_section();
        if let WebPermission::Filtered { social_sites, .. } = &mut s.web {
            social_sites[0].review_by = date(2026, 1, 1);
        }
        let r = check(None, &draft(s)).unwrap_err();
        assert_eq!(r.clause, "WB2");
    }

    // clause R19: no contact rule may put a protected contact behind times of day.
    #[test]
    fn r19_a_contact_rule_cannot_limit_a_protected_contact() {
        let mut s = full_section();
        s.contacts[0].addresses[0].address = "+447700900999".into();
        let r = check(None, &draft(s.clone())).unwrap_err();
        assert_eq!(r.clause, "R19");
        assert!(r.message.contains("Priya Shah (social worker)"), "{r}");
        assert!(r.message.contains("always reach"), "{r}");
        // Listed without times, the same number is fine: it limits nothing.
        s.contacts[0].windows.clear();
        check(None, &draft(s)).unwrap();
    }

    // clause R19: Childline stored as "08001111" is the same line as "+448001111".
    #[test]
    fn r19_a_protected_number_is_recognised_in_any_form() {
        let mut s = full_section();
        s.contacts[0].addresses[0].address = "+448001111".into();
        let r = check(None, &draft(s)).unwrap_err();
        assert!(r.message.starts_with("Childline"), "{r}");
    }

    // clause R19: the phone and text apps reach protected contacts and cannot be blocked.
    #[test]
    fn r19_blocking_the_phone_app_is_refused() {
        let mut s = full_section();
        s.apps.blocked.push("com.google.android.dialer".into());
        let r = check(None, &draft(s)).unwrap_err();
        assert_eq!(r.clause, "R19");
        assert!(r.message.contains("protected contacts such as"), "{r}");
    }

    // clause R19: 999 and Childline are protected even when the home's own list is empty, so a
    // plan cannot put them behind times of day.
    #[test]
    fn r19_a_plan_cannot_limit_a_built_in_protected_number_with_an_empty_home_list() {
        // (999 itself is refused earlier: a plan's contacts are full numbers.)
        for number in ["+448001111", "+448088005000", "+448005280731"] {
            let mut s = full_section();
            s.contacts[0].addresses = vec![ContactAddress {
                channel: Channel::Call,
                address: number.into(),
                app: None,
            }];
            s.contacts[0].windows = vec![TimeWindow {
                start_minute: 16 * 60,
                end_minute: 18 * 60,
                weekdays: vec![7],
            }];
            let r = validate_revision(None, &draft(s), &assessments(), &[], Role::Manager, today())
                .unwrap_err();
            assert_eq!(r.clause, "R19", "{number}: {r}");
        }
    }

    // clause KP1: review dates are never set in the past.
    #[test]
    fn kp1_review_dates_in_the_past_are_refused() {
        let mut s = full_section();
        s.contacts[0].review_by = Some(date(2026, 11, 27));
        let r = check(None, &draft(s)).unwrap_err();
        assert!(
            r.message
                .contains("contact with Nan (grandmother) is in the past"),
            "{r}"
        );
        let mut d = draft(full_section());
        d.review_by = Some(date(2020, 1, 1));
        assert!(check(None, &d).is_err());
    }

    #[test]
    fn malformed_numbers_and_domains_are_refused() {
        let mut s = full_section();
        s.contacts[0].addresses[0].address = "07700 90".into();
        let r = check(None, &draft(s)).unwrap_err();
        assert!(r.message.starts_with("Nan (grandmother)'s number"), "{r}");

        let mut s = full_section();
        s.contacts[0].addresses[0].address = "07700 900123".into();
        let r = check(None, &draft(s.clone())).unwrap_err();
        assert!(r.message.contains("write it as +447700900123"), "{r}");
        let fixed = normalise_section(&s).unwrap();
        check(None, &draft(fixed)).unwrap();

        for bad in [
            "https://instagram.com",
            "instagram.com/x",
            "insta gram.com",
            "-a.com",
            "localhost",
            "*.tiktok.com",
            "a..com",
            "a.com:443",
            "site.123",
        ] {
            assert!(normalise_domain(bad).is_err(), "{bad}");
        }
        assert_eq!(
            normalise_domain(" Instagram.COM ").unwrap(),
            "instagram.com"
        );
        let mut s = full_section();
        if let WebPermission::Filtered { social_sites, .. } = &mut s.web {
            social_sites[0].domain = "https://www.tiktok.com/".into();
        }
        let r = check(None, &draft(s)).unwrap_err();
        assert!(r.message.contains("http"), "{r}");
    }

    #[test]
    fn windows_and_messaging_handles_are_checked() {
        let mut s = full_section();
        s.contacts[0].windows[0].end_minute = 10;
        assert!(
            check(None, &draft(s))
                .unwrap_err()
                .message
                .contains("start before they end")
        );
        let mut s = full_section();
        s.contacts[0].windows[0].weekdays = vec![8];
        assert!(check(None, &draft(s)).is_err());
        let mut s = full_section();
        s.contacts[0].addresses.push(ContactAddress {
            channel: Channel::Messaging,
            address: "nan_k".into(),
            app: None,
        });
        assert!(
            check(None, &draft(s))
                .unwrap_err()
                .message
                .contains("messaging app")
        );
    }

    // clause S1: letters and face-to-face contact are part of the same plan.
    #[test]
    fn s1_letters_and_visits_are_recorded_in_the_plan() {
        let mut s = full_section();
        s.face_to_face.push(Arrangement {
            with_whom: "Mum".into(),
            details: "Supervised, Saturdays at the family centre".into(),
            risk_assessment: "ra-nan".into(),
            review_by: Some(date(2027, 2, 1)),
        });
        check(None, &draft(s.clone())).unwrap();
        let lines = diff(Some(&full_section()), &s);
        assert_eq!(
            lines,
            vec![
                "Face-to-face contact: new arrangement with mum: Supervised, Saturdays at the family centre"
            ]
        );
        let mut less = s.clone();
        less.letters.clear();
        assert!(is_restriction(Some(&s), &less));
    }

    // clause RM2: what counts as limiting.
    #[test]
    fn rm2_restrictions_are_recognised() {
        let prev = full_section();
        assert!(!is_restriction(None, &prev), "a first plan only widens");
        assert!(!is_restriction(Some(&prev), &prev));

        let mut n = prev.clone();
        n.camera = CameraPermission::Off;
        assert_eq!(restrictions(Some(&prev), &n), vec!["turns the camera off"]);
        let mut n = prev.clone();
        n.web = WebPermission::Off;
        assert!(is_restriction(Some(&prev), &n));
        let mut n = prev.clone();
        if let WebPermission::Filtered { social_sites, .. } = &mut n.web {
            social_sites.clear();
        }
        assert_eq!(
            restrictions(Some(&prev), &n),
            vec!["removes the social networking site instagram.com"]
        );
        let mut n = prev.clone();
        n.apps.blocked.push("com.snapchat.android".into());
        assert!(is_restriction(Some(&prev), &n));
        let mut n = prev.clone();
        n.contacts[0].windows[0].end_minute = 19 * 60;
        assert_eq!(
            restrictions(Some(&prev), &n),
            vec!["narrows the times for Nan (grandmother)"]
        );
        let mut n = prev.clone();
        n.contacts[0].windows.clear(); // any time: wider
        assert!(!is_restriction(Some(&prev), &n));
        let mut n = prev.clone();
        n.contacts[0].addresses.pop();
        assert!(restrictions(Some(&prev), &n)[0].contains("text +447700900123"));
        let mut n = prev.clone();
        n.apps.default_allow = false;
        assert!(is_restriction(Some(&prev), &n));
    }

    #[test]
    fn diff_says_what_changed_in_plain_words() {
        let lines = diff(None, &full_section());
        assert!(lines.contains(
            &"Added contact Nan (grandmother): call +447700900123 and text +447700900123, between 4pm and 8pm".to_string()
        ), "{lines:?}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Camera turned on: agreed by Priya Shah"))
        );
        assert!(lines.contains(
            &"Internet turned on through the filter profile under-16-strict".to_string()
        ));
        assert!(lines.contains(
            &"Social networking site allowed: instagram.com (review by 2027-01-15)".to_string()
        ));
        assert!(lines.contains(&"App blocked: com.example.chatroulette".to_string()));

        let mut n = full_section();
        n.camera = CameraPermission::Off;
        n.contacts[0].windows[0].weekdays = vec![6, 7];
        assert_eq!(
            diff(Some(&full_section()), &n),
            vec![
                "Nan (grandmother): times changed from between 4pm and 8pm to between 4pm and 8pm at weekends",
                "Camera turned off",
            ]
        );
        assert!(diff(Some(&n), &n).is_empty());
    }

    #[test]
    fn clock_and_windows_read_naturally() {
        assert_eq!(clock(0), "midnight");
        assert_eq!(clock(720), "noon");
        assert_eq!(clock(16 * 60 + 30), "4:30pm");
        assert_eq!(clock(9 * 60), "9am");
        let w = TimeWindow {
            start_minute: 600,
            end_minute: 720,
            weekdays: vec![1, 3],
        };
        assert_eq!(
            w.describe(),
            "between 10am and noon on Mondays and Wednesdays"
        );
        assert_eq!(describe_windows(&[]), "at any time");
    }

    // clauses KP1, IM3, WB2: what is due for review, soonest first, overdue flagged.
    #[test]
    fn kp1_im3_wb2_reviews_due_lists_what_is_due_or_overdue() {
        let mut d = draft(full_section());
        d.review_by = Some(date(2026, 12, 5));
        let rev = PlanRevision::next(None, d);
        let ras = assessments();
        let due = reviews_due(&rev, &ras, today(), 60);
        let whats: Vec<&str> = due.iter().map(|i| i.what.as_str()).collect();
        assert_eq!(
            whats,
            vec![
                "the restrictions in plan revision 1",
                "the social networking site instagram.com",
            ]
        );
        assert!(due.iter().all(|i| !i.overdue));
        // Ten weeks later, the camera is due and the earlier items are overdue.
        let later = date(2027, 2, 10);
        let due = reviews_due(&rev, &ras, later, 0);
        assert!(
            due.iter()
                .any(|i| i.what == "the camera agreement" && i.overdue)
        );
        assert!(due.iter().all(|i| i.overdue));
        // Linked risk assessments are listed too; unlinked ones and other children's are not.
        let far = reviews_due(&rev, &ras, today(), 365);
        assert!(far.iter().any(|i| i.what == "risk assessment ra-nan"));
        assert!(!far.iter().any(|i| i.what.contains("ra-other-child")));
        assert!(far.windows(2).all(|w| w[0].due <= w[1].due));
        // A huge horizon never overflows.
        assert!(!reviews_due(&rev, &ras, today(), u32::MAX).is_empty());
    }

    // clause RM2: revisions are numbered, never edited.
    #[test]
    fn rm2_revisions_are_numbered_in_order() {
        let first = PlanRevision::next(None, draft(CommunicationSection::default()));
        let second = PlanRevision::next(Some(&first), draft(full_section()));
        assert_eq!((first.number, second.number), (1, 2));
        assert_eq!(first.section, CommunicationSection::default());
    }

    // clause RM1: who it was shared with travels with the revision.
    #[test]
    fn rm1_revisions_round_trip_through_json_with_sharing_and_consultation() {
        let mut d = draft(full_section());
        d.consultation = consulted();
        let rev = PlanRevision::next(None, d);
        let json = serde_json::to_string(&rev).unwrap();
        assert!(json.contains("\"state\":\"on\""));
        assert!(json.contains("\"state\":\"not_consulted\""));
        let back: PlanRevision = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rev);
        assert!(back.shared_with.child && back.shared_with.social_worker);
    }

    // ---- strategies shared with the compiler's property tests ----

    fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
        prop::sample::select(options).prop_map(str::to_string)
    }

    fn arb_address() -> impl Strategy<Value = ContactAddress> {
        (
            prop::sample::select(vec![Channel::Call, Channel::Sms, Channel::Messaging]),
            pick(&[
                "+447700900123",
                "07700 900456",
                "999",
                "08001111",
                "+448001111",
                "nonsense",
                "",
                "nan_k",
            ]),
            prop::option::of(pick(&["WhatsApp", "", " "])),
        )
            .prop_map(|(channel, address, app)| ContactAddress {
                channel,
                address,
                app,
            })
    }

    fn arb_window() -> impl Strategy<Value = TimeWindow> {
        (0u16..1500, 0u16..1500, prop::collection::vec(0u8..9, 0..3)).prop_map(
            |(start_minute, end_minute, weekdays)| TimeWindow {
                start_minute,
                end_minute,
                weekdays,
            },
        )
    }

    fn arb_date() -> impl Strategy<Value = Date> {
        (-60i64..400).prop_map(|d| today().checked_add(jiff::Span::new().days(d)).unwrap())
    }

    fn arb_ra() -> impl Strategy<Value = String> {
        pick(&[
            "",
            " ",
            "ra-nan",
            "ra-social",
            "ra-other-child",
            "ra-missing",
        ])
    }

    fn arb_contact() -> impl Strategy<Value = ContactPermission> {
        (
            pick(&["Nan", "Mum", "", " ", "Childline"]),
            pick(&["grandmother", "", "friend"]),
            prop::collection::vec(arb_address(), 0..3),
            prop::collection::vec(arb_window(), 0..2),
            arb_ra(),
            prop::option::of(arb_date()),
        )
            .prop_map(
                |(name, relationship, addresses, windows, risk_assessment, review_by)| {
                    ContactPermission {
                        name,
                        relationship,
                        addresses,
                        windows,
                        risk_assessment,
                        review_by,
                    }
                },
            )
    }

    fn arb_agreement() -> impl Strategy<Value = Agreement> {
        (pick(&["", " ", "Priya Shah"]), arb_date()).prop_map(|(who, when)| Agreement { who, when })
    }

    fn arb_camera() -> impl Strategy<Value = CameraPermission> {
        prop_oneof![
            Just(CameraPermission::Off),
            (arb_agreement(), arb_agreement(), arb_date(), arb_ra()).prop_map(|(a, p, r, ra)| {
                CameraPermission::On {
                    placing_authority_agreement: a,
                    parent_consultation: p,
                    review_by: r,
                    risk_assessment: ra,
                }
            }),
        ]
    }

    fn arb_web() -> impl Strategy<Value = WebPermission> {
        let site = (
            pick(&["instagram.com", "Instagram.com", "", "https://x.com"]),
            arb_ra(),
            arb_date(),
        )
            .prop_map(|(domain, risk_assessment, review_by)| SocialSite {
                domain,
                risk_assessment,
                review_by,
            });
        prop_oneof![
            Just(WebPermission::Off),
            (
                pick(&["", "  ", "strict"]),
                arb_ra(),
                prop::collection::vec(site, 0..3),
                prop::option::of(arb_date())
            )
                .prop_map(
                    |(filter_profile, risk_assessment, social_sites, review_by)| {
                        WebPermission::Filtered {
                            filter_profile,
                            risk_assessment,
                            social_sites,
                            review_by,
                        }
                    }
                ),
        ]
    }

    fn arb_apps() -> impl Strategy<Value = AppPermission> {
        let app = || {
            pick(&[
                "com.whatsapp",
                "com.android.dialer",
                "com.apple.MobileSMS",
                "COM.GOOGLE.ANDROID.DIALER",
                "",
                "bad app",
            ])
        };
        (
            any::<bool>(),
            prop::collection::vec(app(), 0..4),
            prop::collection::vec(app(), 0..4),
            prop::option::of(arb_ra()),
        )
            .prop_map(
                |(default_allow, allowed, blocked, risk_assessment)| AppPermission {
                    default_allow,
                    allowed,
                    blocked,
                    risk_assessment,
                },
            )
    }

    fn arb_arrangement() -> impl Strategy<Value = Arrangement> {
        (
            pick(&["Mum", "", "Dad"]),
            pick(&["weekly", ""]),
            arb_ra(),
            prop::option::of(arb_date()),
        )
            .prop_map(
                |(with_whom, details, risk_assessment, review_by)| Arrangement {
                    with_whom,
                    details,
                    risk_assessment,
                    review_by,
                },
            )
    }

    pub(crate) fn arb_section() -> impl Strategy<Value = CommunicationSection> {
        (
            prop::collection::vec(arb_contact(), 0..4),
            arb_camera(),
            arb_web(),
            arb_apps(),
            prop::collection::vec(arb_arrangement(), 0..2),
            prop::collection::vec(arb_arrangement(), 0..2),
        )
            .prop_map(|(contacts, camera, web, apps, letters, face_to_face)| {
                CommunicationSection {
                    contacts,
                    camera,
                    web,
                    apps,
                    letters,
                    face_to_face,
                }
            })
    }

    pub(crate) fn arb_protected() -> impl Strategy<Value = Vec<ProtectedContact>> {
        prop::collection::vec(
            (
                pick(&["Childline", "Emergency", "Ofsted", ""]),
                pick(&["08001111", "999", "+447700900123", "116 123", ""]),
            ),
            0..5,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(n, a)| protected_contact(&n, &a))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        // Checking never panics; an accepted revision keeps every rule the checks promise.
        #[test]
        fn validation_never_panics_and_accepted_plans_keep_the_rules(
            prev in prop::option::of(arb_section()),
            next in arb_section(),
            protected in arb_protected(),
        ) {
            let d = draft(next.clone());
            let result = validate_revision(prev.as_ref(), &d, &assessments(), &protected, Role::Manager, today());
            let _ = diff(prev.as_ref(), &next);
            let _ = normalise_section(&next);
            match result {
                Err(r) => prop_assert!(!r.message.contains('\n') && !r.message.is_empty()),
                Ok(()) => {
                    // clause IM1
                    if let CameraPermission::On { placing_authority_agreement, parent_consultation, .. } = &next.camera {
                        prop_assert!(!placing_authority_agreement.who.trim().is_empty());
                        prop_assert!(!parent_consultation.who.trim().is_empty());
                    }
                    // clause WB1
                    if let WebPermission::Filtered { filter_profile, .. } = &next.web {
                        prop_assert!(!filter_profile.trim().is_empty());
                    }
                    // clause R19
                    prop_assert!(!next.apps.blocked.iter().any(|a| is_essential_app(a)));
                    // clause KP2
                    for c in &next.contacts {
                        prop_assert_eq!(c.risk_assessment.as_str(), "ra-nan");
                    }
                    // clause RM2 (no consultation recorded in these drafts)
                    prop_assert!(!is_restriction(prev.as_ref(), &next));
                }
            }
        }
    }
}
