//! What the home owes after an emergency action (RM4, RM5): the Regulation 35 sanction record
//! opened automatically when telephone access is reduced, and the obligations with deadlines —
//! tell the social worker within 1 working day, complete the record within 24 hours, the
//! Registered Manager signs it off within 48 hours, and within 5 days it is confirmed that the
//! child was spoken to about it, with their views recorded.
//!
//! Pure rules: deadlines come from the working-day calendar in the home's own time zone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::UnixMillis;
use super::emergency::{LockdownTarget, ProtectiveReason};
use super::working_days::{BankHolidays, Deadline};

/// The bank-holiday calendar deadlines are computed with.
pub type Holidays = BankHolidays;

/// A Regulation 35 record of a sanction. Opened by Haven with what it knows; staff complete the
/// rest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionRecord {
    pub child_name: String,
    /// The behaviour that led to it.
    pub behaviour: String,
    /// Date and time of the measure.
    pub occurred_at: UnixMillis,
    pub location: String,
    /// A description of the measure.
    pub measure: String,
    /// Its duration, in words ("until 07:00", "until reviewed, by …").
    pub duration: String,
    /// The methods used or steps taken to avoid it.
    pub steps_to_avoid: String,
    /// Who used it.
    pub imposed_by: String,
    /// Anyone else present.
    pub others_present: String,
    /// Its effectiveness and any consequences.
    pub effectiveness: String,
    /// Any injury to anyone, and any medical treatment.
    pub injury_and_treatment: String,
}

/// "2026-12-02 07:00": a time written into a record, in the home's own time zone.
pub fn home_time(ms: UnixMillis, time_zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(tz).strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// A lockdown's planned duration in words: it ends by itself, or it is reviewed.
pub fn planned_duration(
    until: Option<UnixMillis>,
    review_at: Option<UnixMillis>,
    time_zone: &str,
) -> String {
    match (until, review_at) {
        (Some(u), _) => format!("until {}", home_time(u, time_zone)),
        (_, Some(r)) => format!(
            "until lifted; to be reviewed by {}",
            home_time(r, time_zone)
        ),
        _ => "until lifted".to_string(),
    }
}

/// The record Haven opens when a lockdown withdraws calls or messages (RM5): what it knows
/// already; staff complete the rest.
pub struct LockdownMeasure<'a> {
    pub lockdown_id: &'a str,
    pub reason: ProtectiveReason,
    /// Everything withdrawn, in words ("calls", "messages", "visits").
    pub withdrawn: &'a [&'a str],
    /// Whether any of it is on a device (letters and visits are not).
    pub on_devices: bool,
    pub target: &'a LockdownTarget,
    pub note: &'a str,
    pub duration: String,
}

impl SanctionRecord {
    pub fn for_lockdown(
        child_name: &str,
        m: &LockdownMeasure<'_>,
        at: UnixMillis,
        imposed_by: &str,
    ) -> SanctionRecord {
        let (kind, on) = match m.target {
            _ if !m.on_devices => ("Emergency restriction", "no device involved".to_string()),
            LockdownTarget::Child(_) => ("Emergency lockdown", "on the child's devices".into()),
            LockdownTarget::Device(d) => (
                "Emergency lockdown",
                format!("on one of the child's devices ({d})"),
            ),
            LockdownTarget::Home(_) => ("Emergency lockdown", "on every device in the home".into()),
        };
        SanctionRecord {
            child_name: child_name.to_string(),
            behaviour: m.note.to_string(),
            occurred_at: at,
            measure: format!(
                "{kind} ({}, {}): {} withdrawn, {on}. Protected contacts stayed reachable.",
                m.lockdown_id,
                m.reason.describe(),
                m.withdrawn.join(", "),
            ),
            duration: m.duration.clone(),
            imposed_by: imposed_by.to_string(),
            ..Default::default()
        }
    }

    /// The record opened when a plan revision reduces telephone or messaging access (RM5):
    /// the same record, with the revision's own reason and review date.
    pub fn for_revision(
        child_name: &str,
        revision: u32,
        why: &str,
        reductions: &[String],
        at: UnixMillis,
        review_by: Option<jiff::civil::Date>,
        imposed_by: &str,
    ) -> SanctionRecord {
        SanctionRecord {
            child_name: child_name.to_string(),
            behaviour: why.trim().to_string(),
            occurred_at: at,
            measure: format!(
                "Placement plan revision {revision}: {}. Protected contacts stayed reachable.",
                super::plan::join_and(reductions)
            ),
            duration: match review_by {
                Some(d) => format!("until the plan changes; to be reviewed by {d}"),
                None => "until the plan changes".to_string(),
            },
            imposed_by: imposed_by.to_string(),
            ..Default::default()
        }
    }
}

/// What staff add to complete a record (every field required; "none" is an answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionCompletion {
    pub behaviour: String,
    pub location: String,
    pub steps_to_avoid: String,
    pub others_present: String,
    pub effectiveness: String,
    pub injury_and_treatment: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SanctionError {
    /// The words, and the field of the completion that is missing (for programs).
    #[error("the sanction record needs {0}: write \"none\" if there was none")]
    Missing(&'static str, &'static str),
    #[error("say what the child said about it (their views)")]
    NoViews,
    #[error("say what was done")]
    NoNote,
    #[error("sanction {0} was already completed: nothing was changed")]
    AlreadyCompleted(String),
    #[error(
        "sanction {0} is not complete yet: it is signed off once staff have completed it (`haven sanction complete {0}`)"
    )]
    NotComplete(String),
    #[error("sanction {0} was already signed off: nothing was changed")]
    AlreadySignedOff(String),
    #[error(
        "the discussion with the child about sanction {0} was already recorded: nothing was changed"
    )]
    AlreadyDiscussed(String),
    #[error(
        "say that you spoke to the person who imposed the measure, and when (e.g. \"Jo Carer, 3 Dec\")"
    )]
    NotSpokenWithImposer,
}

/// What has been done to a sanction record so far: the three steps of Regulation 35.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SanctionSteps {
    pub completed: bool,
    pub signed_off: bool,
    pub discussed: bool,
}

/// A record is completed once (RM5).
pub fn may_complete(id: &str, steps: SanctionSteps) -> Result<(), SanctionError> {
    if steps.completed {
        return Err(SanctionError::AlreadyCompleted(id.to_string()));
    }
    Ok(())
}

/// The Registered Manager signs off a completed record once, having spoken to the person who
/// imposed the measure (RM5); returns what they wrote about that conversation.
pub fn sign_off(
    id: &str,
    steps: SanctionSteps,
    spoke_with_imposer: &str,
) -> Result<String, SanctionError> {
    if steps.signed_off {
        return Err(SanctionError::AlreadySignedOff(id.to_string()));
    }
    if !steps.completed {
        return Err(SanctionError::NotComplete(id.to_string()));
    }
    let spoke = spoke_with_imposer.trim();
    if spoke.is_empty() {
        return Err(SanctionError::NotSpokenWithImposer);
    }
    Ok(spoke.to_string())
}

/// The discussion with the child is recorded once.
pub fn may_record_discussion(id: &str, steps: SanctionSteps) -> Result<(), SanctionError> {
    if steps.discussed {
        return Err(SanctionError::AlreadyDiscussed(id.to_string()));
    }
    Ok(())
}

/// The record's duration once the measure ended: the actual one, with the plan beside it, so
/// a lockdown lifted early (or kept longer) is recorded as it was (RM5).
pub fn with_actual_duration(
    record: &SanctionRecord,
    started_at: UnixMillis,
    ended_at: UnixMillis,
    time_zone: &str,
) -> SanctionRecord {
    let minutes = (ended_at.saturating_sub(started_at) / 60_000).max(0);
    let length = match minutes {
        0 => "less than a minute".to_string(),
        1 => "1 minute".to_string(),
        m if m < 120 => format!("{m} minutes"),
        m if m < 48 * 60 => format!("{} hours {} minutes", m / 60, m % 60),
        m => format!("{} days {} hours", m / (24 * 60), (m / 60) % 24),
    };
    let planned = record
        .duration
        .split(" (planned: ")
        .last()
        .unwrap_or(&record.duration)
        .trim_end_matches(')')
        .to_string();
    SanctionRecord {
        duration: format!(
            "{length}: from {} to {} (planned: {planned})",
            home_time(started_at, time_zone),
            home_time(ended_at, time_zone)
        ),
        ..record.clone()
    }
}

/// Fills the record in; refused unless every Regulation 35 field has an answer.
pub fn complete(
    record: &SanctionRecord,
    c: &SanctionCompletion,
) -> Result<SanctionRecord, SanctionError> {
    let fields = [
        ("the behaviour that led to it", "behaviour", &c.behaviour),
        ("where it happened", "location", &c.location),
        (
            "the steps taken to avoid it",
            "steps_to_avoid",
            &c.steps_to_avoid,
        ),
        ("who else was present", "others_present", &c.others_present),
        (
            "its effectiveness and consequences",
            "effectiveness",
            &c.effectiveness,
        ),
        (
            "any injury and medical treatment",
            "injury_and_treatment",
            &c.injury_and_treatment,
        ),
    ];
    for (what, field, value) in fields {
        if value.trim().is_empty() {
            return Err(SanctionError::Missing(what, field));
        }
    }
    Ok(SanctionRecord {
        behaviour: c.behaviour.trim().into(),
        location: c.location.trim().into(),
        steps_to_avoid: c.steps_to_avoid.trim().into(),
        others_present: c.others_present.trim().into(),
        effectiveness: c.effectiveness.trim().into(),
        injury_and_treatment: c.injury_and_treatment.trim().into(),
        ..record.clone()
    })
}

/// The child's views are the point of the discussion (Regulation 7): they must be written down.
pub fn check_discussion(views: &str) -> Result<String, SanctionError> {
    let v = views.trim();
    if v.is_empty() {
        Err(SanctionError::NoViews)
    } else {
        Ok(v.to_string())
    }
}

/// Something the home must do by a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObligationKind {
    /// Tell the child's social worker (RM4): 1 working day.
    NotifySocialWorker,
    /// Complete the sanction record (Regulation 35): 24 hours.
    CompleteSanctionRecord,
    /// The Registered Manager signs the record as accurate: 48 hours.
    ManagerSignOff,
    /// Confirm the child was spoken to about it, views recorded: 5 days.
    DiscussWithChild,
}

impl ObligationKind {
    pub const ALL: [ObligationKind; 4] = [
        ObligationKind::NotifySocialWorker,
        ObligationKind::CompleteSanctionRecord,
        ObligationKind::ManagerSignOff,
        ObligationKind::DiscussWithChild,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ObligationKind::NotifySocialWorker => "notify-social-worker",
            ObligationKind::CompleteSanctionRecord => "complete-sanction-record",
            ObligationKind::ManagerSignOff => "manager-sign-off",
            ObligationKind::DiscussWithChild => "discuss-with-child",
        }
    }

    /// What a person reads in the list of what is due.
    pub fn describe(self) -> &'static str {
        match self {
            ObligationKind::NotifySocialWorker => "tell the child's social worker",
            ObligationKind::CompleteSanctionRecord => "complete the sanction record",
            ObligationKind::ManagerSignOff => "Registered Manager signs off the sanction record",
            ObligationKind::DiscussWithChild => {
                "talk with the child about it and record their views"
            }
        }
    }

    pub fn deadline(self) -> Deadline {
        match self {
            ObligationKind::NotifySocialWorker => Deadline::WorkingDays(1),
            ObligationKind::CompleteSanctionRecord => Deadline::Hours(24),
            ObligationKind::ManagerSignOff => Deadline::Hours(48),
            ObligationKind::DiscussWithChild => Deadline::Days(5),
        }
    }

    /// The command that closes it.
    pub fn closed_by_command(self) -> &'static str {
        match self {
            ObligationKind::NotifySocialWorker => "haven notified",
            ObligationKind::CompleteSanctionRecord => "haven sanction complete",
            ObligationKind::ManagerSignOff => "haven sanction sign-off",
            ObligationKind::DiscussWithChild => "haven sanction discussed",
        }
    }
}

impl fmt::Display for ObligationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObligationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObligationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s.trim())
            .ok_or_else(|| format!("{s:?} is not a kind of obligation"))
    }
}

/// When each obligation after an action taken at `at` is due, in the home's time zone. The
/// social worker is always told (RM4); the three sanction deadlines follow only when the action
/// reduced telephone access (RM5).
pub fn obligations_after(
    at: UnixMillis,
    time_zone: &str,
    holidays: &BankHolidays,
    sanction: bool,
) -> Vec<(ObligationKind, UnixMillis)> {
    let tz = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let start = jiff::Timestamp::from_millisecond(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ObligationKind::ALL
        .into_iter()
        .filter(|k| sanction || *k == ObligationKind::NotifySocialWorker)
        .map(|k| (k, k.deadline().due(start, &tz, holidays).as_millisecond()))
        .collect()
}

/// Where an obligation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObligationState {
    Done,
    Due,
    Overdue,
}

impl ObligationState {
    pub fn of(due_at: UnixMillis, closed_at: Option<UnixMillis>, now: UnixMillis) -> Self {
        match closed_at {
            Some(_) => ObligationState::Done,
            None if now > due_at => ObligationState::Overdue,
            None => ObligationState::Due,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ObligationState::Done => "done",
            ObligationState::Due => "due",
            ObligationState::Overdue => "overdue",
        }
    }
}

/// How the social worker was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifiedHow {
    Phone,
    Email,
    InPerson,
}

impl NotifiedHow {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifiedHow::Phone => "phone",
            NotifiedHow::Email => "email",
            NotifiedHow::InPerson => "in-person",
        }
    }
}

impl FromStr for NotifiedHow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', ' '], "-")
            .as_str()
        {
            "phone" | "telephone" | "call" => Ok(NotifiedHow::Phone),
            "email" | "e-mail" => Ok(NotifiedHow::Email),
            "in-person" | "face-to-face" => Ok(NotifiedHow::InPerson),
            _ => Err(format!(
                "{s:?} is not how a social worker is told: use phone, email or in-person"
            )),
        }
    }
}

/// Checks a record of a notification: who told them, how, and a time that is not in the future.
pub fn check_notification(
    by: &str,
    how: &str,
    at: UnixMillis,
    now: UnixMillis,
) -> Result<(String, NotifiedHow), String> {
    let by = by.trim();
    if by.is_empty() {
        return Err("say who told the social worker".into());
    }
    let how: NotifiedHow = how.parse()?;
    // A minute's grace for clocks that differ a little between laptop and controller.
    if at > now + 60_000 {
        return Err("the time of the notification is in the future: give when it happened".into());
    }
    Ok((by.to_string(), how))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn rm4_rm5_a_phone_restriction_opens_four_obligations_with_their_deadlines() {
        // Wednesday 2 December 2026, 02:00 in London (GMT).
        let at = ms("2026-12-02T02:00:00Z");
        let ob = obligations_after(
            at,
            "Europe/London",
            &BankHolidays::england_and_wales(),
            true,
        );
        assert_eq!(ob.len(), 4);
        let due = |k| ob.iter().find(|(kind, _)| *kind == k).unwrap().1;
        assert_eq!(
            due(ObligationKind::CompleteSanctionRecord),
            ms("2026-12-03T02:00:00Z")
        );
        assert_eq!(
            due(ObligationKind::ManagerSignOff),
            ms("2026-12-04T02:00:00Z")
        );
        assert_eq!(
            due(ObligationKind::DiscussWithChild),
            ms("2026-12-07T02:00:00Z")
        );
        // One working day: by the end of Thursday.
        let notify = due(ObligationKind::NotifySocialWorker);
        assert!(
            notify > at && notify <= ms("2026-12-04T00:00:00Z"),
            "{notify}"
        );
    }

    #[test]
    fn rm4_without_a_phone_restriction_only_the_social_worker_is_owed() {
        let ob = obligations_after(
            0,
            "Europe/London",
            &BankHolidays::england_and_wales(),
            false,
        );
        assert_eq!(ob.len(), 1);
        assert_eq!(ob[0].0, ObligationKind::NotifySocialWorker);
    }

    #[test]
    fn rm4_a_weekend_action_is_due_after_the_weekend() {
        // Saturday 5 December 2026.
        let at = ms("2026-12-05T02:00:00Z");
        let ob = obligations_after(
            at,
            "Europe/London",
            &BankHolidays::england_and_wales(),
            false,
        );
        assert!(ob[0].1 >= ms("2026-12-07T00:00:00Z"));
    }

    #[test]
    fn rm4_christmas_and_its_substitute_day_are_not_working_days() {
        // Thursday 24 December 2026: Christmas is Friday, Boxing Day Saturday (substitute
        // Monday 28), so the social worker must be told by the end of Tuesday 29 December.
        let at = ms("2026-12-24T02:00:00Z");
        let ob = obligations_after(
            at,
            "Europe/London",
            &BankHolidays::england_and_wales(),
            false,
        );
        assert_eq!(ob[0].1 + 1, ms("2026-12-30T00:00:00Z"));
    }

    #[test]
    fn rm5_a_record_is_complete_only_with_every_regulation_35_answer() {
        let r = SanctionRecord {
            child_name: "Amira Khan".into(),
            measure: "calls and messages withdrawn".into(),
            ..Default::default()
        };
        let mut c = SanctionCompletion {
            behaviour: "threats".into(),
            location: "bedroom".into(),
            steps_to_avoid: "talked it through".into(),
            others_present: "none".into(),
            effectiveness: "calmed down".into(),
            injury_and_treatment: "".into(),
        };
        assert!(
            matches!(complete(&r, &c), Err(SanctionError::Missing(w, "injury_and_treatment")) if w.contains("injury"))
        );
        c.injury_and_treatment = "none".into();
        let done = complete(&r, &c).unwrap();
        assert_eq!(done.child_name, "Amira Khan");
        assert_eq!(done.location, "bedroom");
        assert_eq!(check_discussion(" "), Err(SanctionError::NoViews));
    }

    #[test]
    fn rm4_notifications_say_who_how_and_when() {
        assert!(check_notification("Jo", "phone", 10, 100).is_ok());
        assert_eq!(
            check_notification("Jo", "In person", 10, 100).unwrap().1,
            NotifiedHow::InPerson
        );
        assert!(check_notification("", "phone", 10, 100).is_err());
        assert!(check_notification("Jo", "pigeon", 10, 100).is_err());
        assert!(check_notification("Jo", "email", 10_000_000, 100).is_err());
    }

    #[test]
    fn rm5_sign_off_needs_a_completed_record_and_the_imposer_spoken_to() {
        let fresh = SanctionSteps::default();
        assert_eq!(
            sign_off("snc-1", fresh, "Jo, 3 Dec"),
            Err(SanctionError::NotComplete("snc-1".into()))
        );
        let completed = SanctionSteps {
            completed: true,
            ..fresh
        };
        assert_eq!(
            sign_off("snc-1", completed, "  "),
            Err(SanctionError::NotSpokenWithImposer)
        );
        assert_eq!(
            sign_off("snc-1", completed, " Jo Carer, 3 Dec "),
            Ok("Jo Carer, 3 Dec".to_string())
        );
        let signed = SanctionSteps {
            signed_off: true,
            ..completed
        };
        assert!(matches!(
            sign_off("snc-1", signed, "Jo"),
            Err(SanctionError::AlreadySignedOff(_))
        ));
        assert!(may_complete("snc-1", completed).is_err());
        assert!(may_record_discussion("snc-1", fresh).is_ok());
    }

    #[test]
    fn rm5_the_recorded_duration_is_the_actual_one() {
        let r = SanctionRecord {
            duration: "until 2026-12-02 07:00".into(),
            ..Default::default()
        };
        let start = ms("2026-12-02T02:00:00Z");
        let lifted_early = with_actual_duration(&r, start, start + 90 * 60_000, "Europe/London");
        assert_eq!(
            lifted_early.duration,
            "90 minutes: from 2026-12-02 02:00 to 2026-12-02 03:30 (planned: until 2026-12-02 07:00)"
        );
        // Applied twice, the plan is kept once.
        let again = with_actual_duration(&lifted_early, start, start + 60_000, "Europe/London");
        assert!(
            again
                .duration
                .ends_with("(planned: until 2026-12-02 07:00)")
        );
    }

    #[test]
    fn rm4_obligations_become_overdue_until_closed() {
        assert_eq!(ObligationState::of(10, None, 5), ObligationState::Due);
        assert_eq!(ObligationState::of(10, None, 11), ObligationState::Overdue);
        assert_eq!(ObligationState::of(10, Some(20), 30), ObligationState::Done);
    }
}
