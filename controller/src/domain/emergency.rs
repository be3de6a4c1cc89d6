//! Emergency action (RM3, GD4, D6, D8): any member of staff may withdraw some or all of a
//! child's communication at once, but only for a protective reason — never as a punishment —
//! and always with a note and an end or a review time (KP1). Protected contacts stay
//! reachable whatever is withdrawn (Regulation 19 and 22).
//!
//! Pure rules: the caller passes the current time in.

use std::fmt;
use std::str::FromStr;

use super::UnixMillis;

/// The only reasons the policy allows for withdrawing communication in an emergency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtectiveReason {
    InjuryToChild,
    InjuryToOthers,
    PropertyDamage,
    PreventOffence,
}

impl ProtectiveReason {
    pub const ALL: [ProtectiveReason; 4] = [
        ProtectiveReason::InjuryToChild,
        ProtectiveReason::InjuryToOthers,
        ProtectiveReason::PropertyDamage,
        ProtectiveReason::PreventOffence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtectiveReason::InjuryToChild => "injury-to-child",
            ProtectiveReason::InjuryToOthers => "injury-to-others",
            ProtectiveReason::PropertyDamage => "property-damage",
            ProtectiveReason::PreventOffence => "prevent-offence",
        }
    }

    /// How the reason reads in a record staff and inspectors read.
    pub fn describe(self) -> &'static str {
        match self {
            ProtectiveReason::InjuryToChild => "to protect the child from injury",
            ProtectiveReason::InjuryToOthers => "to protect others from injury",
            ProtectiveReason::PropertyDamage => "to protect property from damage",
            ProtectiveReason::PreventOffence => "to prevent an offence",
        }
    }
}

impl fmt::Display for ProtectiveReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProtectiveReason {
    type Err = EmergencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        ProtectiveReason::ALL
            .into_iter()
            .find(|r| r.as_str() == key)
            .ok_or_else(|| EmergencyError::NotProtective(s.trim().to_string()))
    }
}

/// A channel a lockdown can withdraw (the wire names of `Lockdown.channels`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LockChannel {
    Calls,
    Messages,
    Web,
    Camera,
    Apps,
}

impl LockChannel {
    pub const ALL: [LockChannel; 5] = [
        LockChannel::Calls,
        LockChannel::Messages,
        LockChannel::Web,
        LockChannel::Camera,
        LockChannel::Apps,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LockChannel::Calls => "calls",
            LockChannel::Messages => "messages",
            LockChannel::Web => "web",
            LockChannel::Camera => "camera",
            LockChannel::Apps => "apps",
        }
    }

    /// How a child reads the channel: "phone calls", "the internet".
    fn for_child(self) -> &'static str {
        match self {
            LockChannel::Calls => "phone calls",
            LockChannel::Messages => "messages",
            LockChannel::Web => "the internet",
            LockChannel::Camera => "the camera",
            LockChannel::Apps => "apps",
        }
    }

    pub fn parse(s: &str) -> Result<LockChannel, EmergencyError> {
        let key = s.trim().to_ascii_lowercase();
        let found = match key.as_str() {
            "call" | "calls" | "phone" => Some(LockChannel::Calls),
            "message" | "messages" | "sms" | "texts" => Some(LockChannel::Messages),
            "web" | "internet" => Some(LockChannel::Web),
            "camera" => Some(LockChannel::Camera),
            "app" | "apps" => Some(LockChannel::Apps),
            _ => None,
        };
        found.ok_or_else(|| EmergencyError::UnknownChannel(s.trim().to_string()))
    }
}

/// A contact arrangement no device enforces — letters, visits and other face-to-face contact
/// (S1) — which staff may still restrict in an emergency, for the same protective reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arrangement {
    Letters,
    Visits,
}

impl Arrangement {
    pub fn as_str(self) -> &'static str {
        match self {
            Arrangement::Letters => "letters",
            Arrangement::Visits => "visits",
        }
    }

    pub fn parse(s: &str) -> Result<Arrangement, EmergencyError> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', ' '], "-")
            .as_str()
        {
            "letter" | "letters" | "post" | "correspondence" => Ok(Arrangement::Letters),
            "visit" | "visits" | "face-to-face" | "contact-visits" => Ok(Arrangement::Visits),
            _ => Err(EmergencyError::UnknownArrangement(s.trim().to_string())),
        }
    }
}

/// Reads the arrangements an emergency restriction withdraws; at least one is needed.
pub fn parse_arrangements(given: &[String]) -> Result<Vec<Arrangement>, EmergencyError> {
    let mut out: Vec<Arrangement> = given
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(Arrangement::parse)
        .collect::<Result<_, _>>()?;
    if out.is_empty() {
        return Err(EmergencyError::NoArrangement);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Reads a list of channels; none given means every channel (a full lockdown).
pub fn parse_channels(given: &[String]) -> Result<Vec<LockChannel>, EmergencyError> {
    let mut out: Vec<LockChannel> = given
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.trim().is_empty())
        .map(LockChannel::parse)
        .collect::<Result<_, _>>()?;
    if out.is_empty() {
        out = LockChannel::ALL.to_vec();
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether withdrawing these channels prevents or reduces the child's telephone access: a
/// Sanction under Regulation 35 (RM5).
pub fn reduces_telephone(channels: &[LockChannel]) -> bool {
    channels
        .iter()
        .any(|c| matches!(c, LockChannel::Calls | LockChannel::Messages))
}

/// Whom a lockdown applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockdownTarget {
    /// Every device of one child.
    Child(String),
    /// One device only.
    Device(String),
    /// Every device of every child in the home.
    Home(String),
}

impl LockdownTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            LockdownTarget::Child(_) => "child",
            LockdownTarget::Device(_) => "device",
            LockdownTarget::Home(_) => "home",
        }
    }
}

/// Why an emergency action was refused, in words staff can act on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmergencyError {
    #[error(
        "{0:?} is not a protective reason: use injury-to-child, injury-to-others, property-damage or prevent-offence (restricting contact is never a punishment)"
    )]
    NotProtective(String),
    #[error(
        "{0:?} is not something a lockdown can withdraw: use calls, messages, web, camera or apps"
    )]
    UnknownChannel(String),
    #[error(
        "{0:?} is not a contact arrangement Haven records: use letters or visits (calls, messages, web, camera and apps are withdrawn by a lockdown)"
    )]
    UnknownArrangement(String),
    #[error("say which contact arrangement is restricted: letters or visits")]
    NoArrangement,
    #[error("say what happened: the record needs it")]
    NoteMissing,
    #[error("the end time is not in the future: give a time after now")]
    UntilInPast,
    #[error("the review time is not in the future: give a time after now")]
    ReviewInPast,
    #[error(
        "give either an end time or a review time, not both: a lockdown either ends by itself or is reviewed"
    )]
    UntilAndReview,
    #[error("say whom to lock down: a child, one device or one home")]
    NoTarget,
    #[error("{0} is too long: keep it under {1} characters")]
    TooLong(&'static str, usize),
}

/// What staff asked for, as typed.
#[derive(Clone, Debug, Default)]
pub struct LockdownDraft {
    pub reason: String,
    pub channels: Vec<String>,
    pub note: String,
    pub until: Option<UnixMillis>,
    pub review_at: Option<UnixMillis>,
    pub ofsted_advice: Option<String>,
}

/// A lockdown order that keeps every rule; only these are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockdownOrder {
    pub reason: ProtectiveReason,
    pub channels: Vec<LockChannel>,
    pub note: String,
    /// Ends by itself at this time.
    pub until: Option<UnixMillis>,
    /// To be reviewed by this time (always set when `until` is not).
    pub review_at: Option<UnixMillis>,
    pub ofsted_advice: Option<String>,
    /// Letters or visits withdrawn as well (S1): recorded, not enforced by a device.
    pub arrangements: Vec<Arrangement>,
}

impl LockdownOrder {
    /// Whether it is a Sanction under Regulation 35 (RM5): it reduces telephone access, or it
    /// restricts the child's contact arrangements.
    pub fn is_sanction(&self) -> bool {
        reduces_telephone(&self.channels) || !self.arrangements.is_empty()
    }

    /// Everything it withdraws, in the words stored and shown: "calls, messages", "visits".
    pub fn withdrawn(&self) -> Vec<&'static str> {
        self.channels
            .iter()
            .map(|c| c.as_str())
            .chain(self.arrangements.iter().map(|a| a.as_str()))
            .collect()
    }
}

/// Checks an emergency restriction of letters or visits (S1) before anything is written: the
/// same protective reason, note and end or review time as a lockdown (RM3, KP1), and no
/// device channel.
pub fn validate_restriction(
    draft: &LockdownDraft,
    arrangements: &[String],
    now: UnixMillis,
) -> Result<LockdownOrder, EmergencyError> {
    let arrangements = parse_arrangements(arrangements)?;
    // Validated as a lockdown of one channel, then the device channels are dropped: a
    // restriction of visits changes nothing a device enforces.
    let mut as_lockdown = draft.clone();
    as_lockdown.channels = vec!["web".into()];
    let mut order = validate_lockdown(&as_lockdown, now)?;
    order.channels.clear();
    order.arrangements = arrangements;
    Ok(order)
}

/// With neither an end nor a review time, the lockdown is reviewed within a day (KP1: every
/// restriction has a review or end date).
pub const DEFAULT_REVIEW_MS: i64 = 24 * 3600 * 1000;
const MAX_TEXT: usize = 4000;

fn clean_text(what: &'static str, text: &str) -> Result<String, EmergencyError> {
    let t = text.trim();
    if t.chars().count() > MAX_TEXT {
        return Err(EmergencyError::TooLong(what, MAX_TEXT));
    }
    Ok(t.to_string())
}

/// Checks a lockdown before anything is written.
pub fn validate_lockdown(
    draft: &LockdownDraft,
    now: UnixMillis,
) -> Result<LockdownOrder, EmergencyError> {
    let reason: ProtectiveReason = draft.reason.parse()?;
    let channels = parse_channels(&draft.channels)?;
    let note = clean_text("the note", &draft.note)?;
    if note.is_empty() {
        return Err(EmergencyError::NoteMissing);
    }
    let (until, review_at) = match (draft.until, draft.review_at) {
        (Some(_), Some(_)) => return Err(EmergencyError::UntilAndReview),
        (Some(u), None) if u <= now => return Err(EmergencyError::UntilInPast),
        (None, Some(r)) if r <= now => return Err(EmergencyError::ReviewInPast),
        (Some(u), None) => (Some(u), None),
        (None, Some(r)) => (None, Some(r)),
        (None, None) => (None, Some(now + DEFAULT_REVIEW_MS)),
    };
    let ofsted_advice = match &draft.ofsted_advice {
        Some(a) => Some(clean_text("the Ofsted advice", a)?).filter(|a| !a.is_empty()),
        None => None,
    };
    Ok(LockdownOrder {
        reason,
        channels,
        note,
        until,
        review_at,
        ofsted_advice,
        arrangements: Vec::new(),
    })
}

/// A lockdown in force, as the policy compiler needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveLockdown {
    pub id: String,
    pub target: LockdownTarget,
    pub channels: Vec<LockChannel>,
    pub until: Option<UnixMillis>,
    pub started_at: UnixMillis,
}

impl ActiveLockdown {
    /// Whether this lockdown applies to a device of `child_id` in `home_id`.
    pub fn applies_to(&self, home_id: &str, child_id: &str, device_id: &str) -> bool {
        match &self.target {
            LockdownTarget::Home(h) => h == home_id,
            LockdownTarget::Child(c) => c == child_id,
            LockdownTarget::Device(d) => d == device_id,
        }
    }
}

/// Every lockdown in force on one device, merged into the one lockdown the device enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedLockdown {
    /// The ids, oldest first, joined with commas.
    pub id: String,
    pub channels: Vec<LockChannel>,
    /// When the last of them ends by itself; `None` when any is open-ended (reviewed).
    pub until: Option<UnixMillis>,
}

pub fn merge(lockdowns: &[&ActiveLockdown]) -> Option<MergedLockdown> {
    if lockdowns.is_empty() {
        return None;
    }
    let mut sorted: Vec<&ActiveLockdown> = lockdowns.to_vec();
    sorted.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    let mut channels: Vec<LockChannel> = sorted
        .iter()
        .flat_map(|l| l.channels.iter().copied())
        .collect();
    channels.sort();
    channels.dedup();
    let until = sorted
        .iter()
        .map(|l| l.until)
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
    Some(MergedLockdown {
        id: sorted
            .iter()
            .map(|l| l.id.as_str())
            .collect::<Vec<_>>()
            .join(","),
        channels,
        until,
    })
}

/// What the child reads about a lockdown: kind, plain, and clear that it is not a punishment
/// and whom they can still contact.
pub fn explain_to_child(merged: &MergedLockdown, protected_names: &[&str]) -> String {
    let all = LockChannel::ALL.iter().all(|c| merged.channels.contains(c));
    let what = if all {
        "calls, messages, the internet, the camera and apps".to_string()
    } else {
        let words: Vec<&str> = merged.channels.iter().map(|c| c.for_child()).collect();
        super::plan::join_and(&words)
    };
    let who = if protected_names.is_empty() {
        "You can still ask staff to help you contact your social worker, Childline (0800 1111) \
         or the emergency services (999) at any time."
            .to_string()
    } else {
        format!(
            "You can still contact {} at any time.",
            super::plan::join_and(protected_names)
        )
    };
    format!(
        "Staff have paused {what} on this device for a while to keep you and other people \
         safe. This is not a punishment. {who} Staff will talk with you about it and listen to \
         what you think."
    )
}

/// The kind of obligation a lockdown in force past its review time appears as (KP1, GD4).
pub const REVIEW_OBLIGATION_KIND: &str = "review-lockdown";

/// Whether a lockdown still in force has passed the time it was to be reviewed by (KP1:
/// restrictions are exceptions, reviewed on time). One that ends by itself has no review.
pub fn review_overdue(
    review_at: Option<UnixMillis>,
    lifted_at: Option<UnixMillis>,
    now: UnixMillis,
) -> bool {
    lifted_at.is_none() && review_at.is_some_and(|r| now > r)
}

/// The reason the device shows beside a withdrawn channel (short, for the child).
pub const CHILD_REASON: &str =
    "Paused for a while by staff to keep everyone safe. This is not a punishment.";

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> LockdownDraft {
        LockdownDraft {
            reason: "injury-to-child".into(),
            note: "Threats made over messages at 01:50".into(),
            ..Default::default()
        }
    }

    #[test]
    fn rm3_only_protective_reasons_are_accepted() {
        for r in ProtectiveReason::ALL {
            assert_eq!(r.as_str().parse::<ProtectiveReason>().unwrap(), r);
        }
        assert_eq!(
            "Prevent Offence".parse::<ProtectiveReason>().unwrap(),
            ProtectiveReason::PreventOffence
        );
        let mut d = draft();
        d.reason = "punishment".into();
        let err = validate_lockdown(&d, 0).unwrap_err();
        assert!(err.to_string().contains("never a punishment"), "{err}");
        d.reason = "bad behaviour".into();
        assert!(matches!(
            validate_lockdown(&d, 0),
            Err(EmergencyError::NotProtective(_))
        ));
    }

    #[test]
    fn d8_no_channels_means_a_full_lockdown() {
        let order = validate_lockdown(&draft(), 0).unwrap();
        assert_eq!(order.channels, LockChannel::ALL.to_vec());
        assert!(reduces_telephone(&order.channels));
        let mut d = draft();
        d.channels = vec!["web,camera".into(), "web".into()];
        let order = validate_lockdown(&d, 0).unwrap();
        assert_eq!(order.channels, vec![LockChannel::Web, LockChannel::Camera]);
        assert!(!reduces_telephone(&order.channels));
        d.channels = vec!["telepathy".into()];
        assert!(matches!(
            validate_lockdown(&d, 0),
            Err(EmergencyError::UnknownChannel(_))
        ));
    }

    #[test]
    fn gd4_kp1_an_end_or_a_review_time_in_the_future() {
        let now = 1_000_000;
        let mut d = draft();
        d.until = Some(now - 1);
        assert_eq!(validate_lockdown(&d, now), Err(EmergencyError::UntilInPast));
        d.until = Some(now + 60_000);
        assert_eq!(
            validate_lockdown(&d, now).unwrap().until,
            Some(now + 60_000)
        );
        d.review_at = Some(now + 1);
        assert_eq!(
            validate_lockdown(&d, now),
            Err(EmergencyError::UntilAndReview)
        );
        d.until = None;
        d.review_at = Some(now);
        assert_eq!(
            validate_lockdown(&d, now),
            Err(EmergencyError::ReviewInPast)
        );
        let order = validate_lockdown(&draft(), now).unwrap();
        assert_eq!(order.review_at, Some(now + DEFAULT_REVIEW_MS));
        assert_eq!(order.until, None);
    }

    #[test]
    fn s1_rm3_visits_and_letters_are_restricted_for_the_same_protective_reasons() {
        let now = 1_000;
        let mut d = draft();
        d.until = Some(now + 60_000);
        let order = validate_restriction(&d, &["visits".into()], now).unwrap();
        assert!(order.channels.is_empty());
        assert_eq!(order.arrangements, vec![Arrangement::Visits]);
        assert!(order.is_sanction());
        assert_eq!(order.withdrawn(), vec!["visits"]);
        assert_eq!(
            validate_restriction(&d, &[], now),
            Err(EmergencyError::NoArrangement)
        );
        assert!(matches!(
            validate_restriction(&d, &["calls".into()], now),
            Err(EmergencyError::UnknownArrangement(_))
        ));
        d.reason = "punishment".into();
        let err = validate_restriction(&d, &["letters".into()], now).unwrap_err();
        assert!(err.to_string().contains("never a punishment"), "{err}");
        d.reason = "injury-to-child".into();
        d.until = Some(now - 1);
        assert_eq!(
            validate_restriction(&d, &["letters".into()], now),
            Err(EmergencyError::UntilInPast)
        );
    }

    #[test]
    fn kp1_gd4_a_lockdown_past_its_review_time_is_overdue_until_lifted() {
        assert!(!review_overdue(Some(100), None, 100));
        assert!(review_overdue(Some(100), None, 101));
        assert!(!review_overdue(Some(100), Some(150), 200));
        assert!(!review_overdue(None, None, 200));
    }

    #[test]
    fn rm3_a_note_is_required() {
        let mut d = draft();
        d.note = "  ".into();
        assert_eq!(validate_lockdown(&d, 0), Err(EmergencyError::NoteMissing));
    }

    #[test]
    fn rm6_ofsted_advice_is_kept_when_given() {
        let mut d = draft();
        d.ofsted_advice = Some(" Duty officer advised notifying police ".into());
        assert_eq!(
            validate_lockdown(&d, 0).unwrap().ofsted_advice.as_deref(),
            Some("Duty officer advised notifying police")
        );
    }

    fn active(
        id: &str,
        target: LockdownTarget,
        ch: &[LockChannel],
        until: Option<i64>,
    ) -> ActiveLockdown {
        ActiveLockdown {
            id: id.into(),
            target,
            channels: ch.to_vec(),
            until,
            started_at: id.len() as i64,
        }
    }

    #[test]
    fn d6_lockdowns_apply_to_their_target_and_merge() {
        let home = active(
            "l1",
            LockdownTarget::Home("h".into()),
            &[LockChannel::Web],
            Some(10),
        );
        let dev = active(
            "l22",
            LockdownTarget::Device("d1".into()),
            &[LockChannel::Calls],
            Some(20),
        );
        assert!(home.applies_to("h", "c1", "d9"));
        assert!(!home.applies_to("h2", "c1", "d9"));
        assert!(dev.applies_to("h", "c1", "d1"));
        assert!(!dev.applies_to("h", "c1", "d2"));
        let m = merge(&[&dev, &home]).unwrap();
        assert_eq!(m.id, "l1,l22");
        assert_eq!(m.channels, vec![LockChannel::Calls, LockChannel::Web]);
        assert_eq!(m.until, Some(20));
        let open = active(
            "l3",
            LockdownTarget::Child("c1".into()),
            &[LockChannel::Web],
            None,
        );
        assert_eq!(merge(&[&home, &open]).unwrap().until, None);
        assert!(merge(&[]).is_none());
    }

    #[test]
    fn r19_the_child_is_told_it_is_not_a_punishment_and_who_they_can_contact() {
        let m = MergedLockdown {
            id: "l1".into(),
            channels: vec![LockChannel::Calls, LockChannel::Messages],
            until: None,
        };
        let text = explain_to_child(&m, &["Childline", "Emergency services"]);
        assert!(text.contains("not a punishment"));
        assert!(text.contains("Childline and Emergency services"));
        assert!(text.contains("phone calls and messages"));
    }
}
