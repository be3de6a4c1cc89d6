//! The staff API's enums and the words for the same closed sets, in one place.
//!
//! The domain keeps its own Rust enums and reads and writes them as words ("injury-to-child",
//! "manager"); older clients send and read those words in the deprecated string fields
//! (proto/README.md). Each table here pairs every wire value (but `_UNSPECIFIED`) with the
//! domain's word, so a request's enum becomes the word the domain already checks, and a
//! record's word becomes the enum a newer client reads. The command line uses the same tables.

use haven_proto::admin::v1 as api;
use tonic::Status;

/// A closed set on the staff wire, with the domain's word for each value.
pub trait WireEnum: Copy + PartialEq + std::fmt::Debug + Into<i32> + 'static {
    /// What the set is called in an error ("a lockdown reason").
    const WHAT: &'static str;
    /// Every value but `_UNSPECIFIED`, with its word as the domain writes it.
    const WORDS: &'static [(Self, &'static str)];
    /// Other spellings read from requests and files (older clients, people typing).
    const ALSO: &'static [(&'static str, Self)] = &[];
}

/// The word for a wire value; `None` for `_UNSPECIFIED` and values this build does not know.
pub fn word<E: WireEnum>(value: i32) -> Option<&'static str> {
    E::WORDS
        .iter()
        .find(|(v, _)| (*v).into() == value)
        .map(|(_, w)| *w)
}

/// The value a word names (its own word, or another accepted spelling). Case, surrounding
/// spaces and the separator between words (`-`, `_` or a space) are ignored, as the domain's
/// own parsers ignore them: "injury_to_child" and "Injury To Child" are the same word.
pub fn value<E: WireEnum>(word: &str) -> Option<E> {
    let key = word_key(word);
    E::WORDS
        .iter()
        .find(|(_, w)| word_key(w) == key)
        .map(|(v, _)| *v)
        .or_else(|| {
            E::ALSO
                .iter()
                .find(|(w, _)| word_key(w) == key)
                .map(|(_, v)| *v)
        })
}

/// A word as compared: lower case, words joined by `-`.
fn word_key(word: &str) -> String {
    word.trim()
        .to_ascii_lowercase()
        .split(['-', '_', ' '])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The wire value for a record's word: `_UNSPECIFIED` (0) for an empty or unknown word, which
/// a client reads as "not set or not known to me".
pub fn wire<E: WireEnum>(word: &str) -> i32 {
    value::<E>(word).map_or(0, Into::into)
}

/// The wire values for a record's words, leaving out any this build does not know.
pub fn wire_all<E: WireEnum>(words: &[String]) -> Vec<i32> {
    words
        .iter()
        .filter_map(|w| value::<E>(w))
        .map(Into::into)
        .collect()
}

/// Every word of the set, for help and error texts ("calls, messages, web").
pub fn words<E: WireEnum>() -> String {
    E::WORDS
        .iter()
        .map(|(_, w)| *w)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a request means by a field that is an enum now and was words before: the enum when
/// set (`field` names it in a refusal), else the old words field (`old_field`), passed on for
/// the domain to check as it always has. Both set and saying different things is refused
/// rather than guessed at.
pub fn pick<E: WireEnum>(
    value: i32,
    field: &str,
    old: &str,
    old_field: &str,
) -> Result<String, Status> {
    if value == 0 {
        return Ok(old.to_string());
    }
    let Some(word) = word::<E>(value) else {
        return Err(unknown::<E>(field, value));
    };
    if !old.trim().is_empty() && self::value::<E>(old).is_none_or(|v| v.into() != value) {
        return Err(super::errors::bad_field(
            field,
            format!(
                "`{field}` and `{old_field}` say different things ({word:?} and {old:?}): \
                 set `{field}` only"
            ),
        ));
    }
    Ok(word.to_string())
}

/// As [`pick`], for a repeated field: the enum values when any are set, else the old words.
pub fn pick_all<E: WireEnum>(
    values: &[i32],
    field: &str,
    old: &[String],
    old_field: &str,
) -> Result<Vec<String>, Status> {
    if values.is_empty() {
        return Ok(old.to_vec());
    }
    let words = values
        .iter()
        .map(|&v| {
            word::<E>(v)
                .map(str::to_string)
                .ok_or_else(|| unknown::<E>(field, v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !old.is_empty() && wire_all::<E>(old) != values {
        return Err(super::errors::bad_field(
            field,
            format!("`{field}` and `{old_field}` say different things: set `{field}` only"),
        ));
    }
    Ok(words)
}

/// What the command line sends for what a person typed: the enum when the word names one,
/// else the words in the old field, so the controller explains what is wrong with them in its
/// own terms (and with the policy clause, as for a reason that is a punishment).
pub fn typed<E: WireEnum>(text: &str) -> (i32, String) {
    match value::<E>(text) {
        Some(v) => (v.into(), String::new()),
        None => (0, text.to_string()),
    }
}

/// As [`typed`], for a list: every word as its enum, or all of them as words.
pub fn typed_all<E: WireEnum>(texts: &[String]) -> (Vec<i32>, Vec<String>) {
    let values: Option<Vec<i32>> = texts
        .iter()
        .map(|t| value::<E>(t).map(Into::into))
        .collect();
    match values {
        Some(values) => (values, Vec::new()),
        None => (Vec::new(), texts.to_vec()),
    }
}

/// The word to show for a record's enum, or its old words field when the enum is unset (an
/// older controller, or a value newer than this build).
pub fn shown<E: WireEnum>(value: i32, old: &str) -> String {
    word::<E>(value).unwrap_or(old).to_string()
}

/// As [`shown`], for a list.
pub fn shown_all<E: WireEnum>(values: &[i32], old: &[String]) -> Vec<String> {
    let words: Vec<String> = values
        .iter()
        .filter_map(|&v| word::<E>(v))
        .map(str::to_string)
        .collect();
    if words.len() == values.len() && !values.is_empty() {
        words
    } else {
        old.to_vec()
    }
}

fn unknown<E: WireEnum>(field: &str, value: i32) -> Status {
    super::errors::bad_field(
        field,
        format!(
            "{value} is not {} this controller knows (it knows {}); update the controller or \
             send one of those",
            E::WHAT,
            words::<E>()
        ),
    )
}

impl WireEnum for api::StaffRole {
    const WHAT: &'static str = "a staff role";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Staff, "staff"),
        (Self::Manager, "manager"),
        (Self::Admin, "admin"),
    ];
    const ALSO: &'static [(&'static str, Self)] = &[("administrator", Self::Admin)];
}

impl WireEnum for api::EnrollmentCodeState {
    const WHAT: &'static str = "an enrollment code state";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Usable, "usable"),
        (Self::Used, "used"),
        (Self::Expired, "expired"),
        (Self::Cancelled, "cancelled"),
    ];
}

impl WireEnum for api::DeviceStatus {
    const WHAT: &'static str = "a device status";
    const WORDS: &'static [(Self, &'static str)] =
        &[(Self::Active, "active"), (Self::Revoked, "revoked")];
}

impl WireEnum for api::CertificateStanding {
    const WHAT: &'static str = "a certificate standing";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Current, "current"),
        (Self::RenewalOverdue, "renewal overdue"),
        (Self::Expired, "expired"),
        (Self::LongLived, "long-lived"),
    ];
}

impl WireEnum for api::GuardState {
    const WHAT: &'static str = "a guard state";
    // "unknown" (a state from a newer agent) is `_UNSPECIFIED` on the staff wire.
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Armed, "armed"),
        (Self::Weakened, "weakened"),
        (Self::Failed, "failed"),
        (Self::NotEnforcing, "not enforcing"),
    ];
}

impl WireEnum for api::ViolationKind {
    const WHAT: &'static str = "a violation kind";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::AppBlocked, "app-blocked"),
        (Self::CameraBlocked, "camera-blocked"),
        (Self::ContactBlocked, "contact-blocked"),
        (Self::UnknownContact, "unknown-contact"),
        (Self::WebBlocked, "web-blocked"),
        (Self::Tampering, "tampering"),
        (Self::JournalOverflow, "journal-overflow"),
        (Self::OverBudget, "over-budget"),
        (Self::Other, "other"),
    ];
}

impl WireEnum for api::ContactChannel {
    const WHAT: &'static str = "a contact channel";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Call, "call"),
        (Self::Sms, "sms"),
        (Self::Messaging, "messaging"),
    ];
}

impl WireEnum for api::ManagerTaskKind {
    const WHAT: &'static str = "a manager task kind";
    const WORDS: &'static [(Self, &'static str)] = &[(Self::UnknownContact, "unknown-contact")];
}

impl WireEnum for api::TaskDecision {
    const WHAT: &'static str = "a task decision";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Assess, "assess"),
        (Self::Refuse, "refuse"),
        (Self::NoAction, "no-action"),
    ];
}

impl WireEnum for api::RestrictionReason {
    const WHAT: &'static str = "a protective reason";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::InjuryToChild, "injury-to-child"),
        (Self::InjuryToOthers, "injury-to-others"),
        (Self::PropertyDamage, "property-damage"),
        (Self::PreventOffence, "prevent-offence"),
    ];
}

impl WireEnum for api::CommunicationChannel {
    const WHAT: &'static str = "a channel";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Calls, "calls"),
        (Self::Messages, "messages"),
        (Self::Web, "web"),
        (Self::Camera, "camera"),
        (Self::Apps, "apps"),
        (Self::Letters, "letters"),
        (Self::Visits, "visits"),
    ];
}

impl WireEnum for api::LockdownTarget {
    const WHAT: &'static str = "a lockdown target";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Home, "home"),
        (Self::Child, "child"),
        (Self::Device, "device"),
    ];
}

impl WireEnum for api::ObligationKind {
    const WHAT: &'static str = "an obligation kind";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::NotifySocialWorker, "notify-social-worker"),
        (Self::CompleteSanctionRecord, "complete-sanction-record"),
        (Self::ManagerSignOff, "manager-sign-off"),
        (Self::DiscussWithChild, "discuss-with-child"),
        (
            Self::ReviewLockdown,
            crate::domain::emergency::REVIEW_OBLIGATION_KIND,
        ),
        (
            Self::DecideOnUnknownContact,
            crate::domain::violations::TASK_OBLIGATION_KIND,
        ),
    ];
}

impl WireEnum for api::ObligationState {
    const WHAT: &'static str = "an obligation state";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Due, "due"),
        (Self::Overdue, "overdue"),
        (Self::Done, "done"),
    ];
}

impl WireEnum for api::NotificationMethod {
    const WHAT: &'static str = "a way of telling a social worker";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Phone, "phone"),
        (Self::Email, "email"),
        (Self::InPerson, "in-person"),
    ];
    const ALSO: &'static [(&'static str, Self)] = &[("face-to-face", Self::InPerson)];
}

impl WireEnum for api::RequestDecision {
    const WHAT: &'static str = "a decision";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Agreed, "agreed"),
        (Self::AgreedInPart, "agreed in part"),
        (Self::NotAgreed, "not agreed"),
    ];
    // What people type at the command line (the domain reads these too).
    const ALSO: &'static [(&'static str, Self)] = &[
        ("partly", Self::AgreedInPart),
        ("yes", Self::Agreed),
        ("no", Self::NotAgreed),
    ];
}

impl WireEnum for api::WebExceptionKind {
    const WHAT: &'static str = "a web exception kind";
    const WORDS: &'static [(Self, &'static str)] = &[(Self::Allow, "allow"), (Self::Deny, "deny")];
}

impl WireEnum for api::LookupKind {
    const WHAT: &'static str = "a kind of record";
    const WORDS: &'static [(Self, &'static str)] = &[
        (Self::Home, "home"),
        (Self::Child, "child"),
        (Self::Staff, "staff"),
        (Self::Device, "device"),
    ];
}

#[cfg(test)]
#[path = "wire_enums_tests.rs"]
mod tests;
