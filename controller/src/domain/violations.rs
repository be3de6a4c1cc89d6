//! What devices report they blocked, in the words staff read (D5); when an attempt to reach an
//! unknown contact becomes a manager task, and when repeats are grouped onto it (GD3); and
//! when a device that has gone quiet is "not reporting".

use std::fmt;

use super::UnixMillis;
use super::phone;

/// What a device blocked. Stored as the snake-case name the wire enum gives
/// (`app_blocked`); shown to people and scripts in kebab words (`app-blocked`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    AppBlocked,
    CameraBlocked,
    ContactBlocked,
    UnknownContact,
    WebBlocked,
    Tampering,
    JournalOverflow,
    /// Attempts counted over the device's budget and stored as one summary
    /// (`domain::device_input`); `detail` says how many of which kind.
    OverBudget,
    /// A kind this controller does not know (a newer agent), or none at all.
    Other,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 8] = [
        ViolationKind::AppBlocked,
        ViolationKind::CameraBlocked,
        ViolationKind::ContactBlocked,
        ViolationKind::UnknownContact,
        ViolationKind::WebBlocked,
        ViolationKind::Tampering,
        ViolationKind::JournalOverflow,
        ViolationKind::OverBudget,
    ];

    /// The kebab words of the command line and JSON, e.g. `camera-blocked`.
    pub fn words(self) -> &'static str {
        match self {
            ViolationKind::AppBlocked => "app-blocked",
            ViolationKind::CameraBlocked => "camera-blocked",
            ViolationKind::ContactBlocked => "contact-blocked",
            ViolationKind::UnknownContact => "unknown-contact",
            ViolationKind::WebBlocked => "web-blocked",
            ViolationKind::Tampering => "tampering",
            ViolationKind::JournalOverflow => "journal-overflow",
            ViolationKind::OverBudget => "over-budget",
            ViolationKind::Other => "other",
        }
    }

    /// The form kept in the database (the wire enum's name without its prefix, lower case).
    pub fn stored(self) -> &'static str {
        match self {
            ViolationKind::AppBlocked => "app_blocked",
            ViolationKind::CameraBlocked => "camera_blocked",
            ViolationKind::ContactBlocked => "contact_blocked",
            ViolationKind::UnknownContact => "unknown_contact",
            ViolationKind::WebBlocked => "web_blocked",
            ViolationKind::Tampering => "tampering",
            ViolationKind::JournalOverflow => "journal_overflow",
            ViolationKind::OverBudget => "over_budget",
            ViolationKind::Other => "unspecified",
        }
    }

    /// Reads a stored kind; anything unknown is `Other`, so an old row never fails to list.
    pub fn from_stored(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.stored() == s)
            .unwrap_or(ViolationKind::Other)
    }

    /// Reads what a person typed: `camera-blocked`, `camera_blocked`, `Camera Blocked`.
    pub fn parse(typed: &str) -> Result<Self, UnknownKind> {
        let key: String = typed
            .trim()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c == '_' || c == ' ' { '-' } else { c })
            .collect();
        Self::ALL
            .into_iter()
            .find(|k| k.words() == key)
            .ok_or_else(|| UnknownKind(typed.trim().to_string()))
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{:?} is not a kind of violation: use one of {}", .0, kinds_list())]
pub struct UnknownKind(pub String);

fn kinds_list() -> String {
    ViolationKind::ALL
        .iter()
        .map(|k| k.words())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The channel as shown: `call`, `sms`, `messaging`, or empty when there was none.
pub fn channel_words(stored: &str) -> &str {
    match stored {
        "call" | "sms" | "messaging" => stored,
        _ => "",
    }
}

/// What happened, in plain words staff read: "tried to open the camera".
pub fn describe(kind: ViolationKind, channel: &str, subject: &str, detail: &str) -> String {
    let subject = subject.trim();
    let reach = match channel_words(channel) {
        "call" => "call",
        "sms" => "text",
        "messaging" => "message",
        _ => "contact",
    };
    let or = |s: &str, fallback: &str| {
        if s.is_empty() {
            fallback.to_string()
        } else {
            s.to_string()
        }
    };
    match kind {
        ViolationKind::AppBlocked => {
            format!(
                "tried to open {}, which is not allowed",
                or(subject, "an app")
            )
        }
        ViolationKind::CameraBlocked => match subject {
            "" => "tried to open the camera".to_string(),
            app => format!("tried to open the camera (with {app})"),
        },
        ViolationKind::ContactBlocked => {
            format!(
                "tried to {reach} {}, which is not allowed now",
                or(subject, "someone")
            )
        }
        ViolationKind::UnknownContact => format!(
            "tried to {reach} {}, who is not in the plan",
            or(subject, "someone")
        ),
        ViolationKind::WebBlocked => {
            format!("tried to visit {}, which is blocked", or(subject, "a site"))
        }
        ViolationKind::Tampering => match detail.trim() {
            "" => "something tried to stop or change Haven on the device".to_string(),
            d => format!("something tried to stop or change Haven on the device: {d}"),
        },
        ViolationKind::OverBudget => match detail.trim() {
            "" => "sent more reports than its budget; the rest were counted".to_string(),
            d => format!("sent more reports than its budget: {d}"),
        },
        ViolationKind::JournalOverflow => match detail.trim() {
            "" => "the device had to drop some reports because its store was full".to_string(),
            d => format!("the device had to drop some reports because its store was full: {d}"),
        },
        ViolationKind::Other => format!("something was blocked: {}", or(subject, "(no detail)")),
    }
}

/// When a violation happened, as far as the controller can tell: what the device said, unless
/// that is missing or later than the moment it arrived (a device clock running fast), when the
/// arrival is the best time known. Earlier times are kept: a device that was offline sends
/// what it blocked hours ago.
pub fn occurred_at(reported: UnixMillis, received: UnixMillis) -> UnixMillis {
    if reported <= 0 || reported > received {
        received
    } else {
        reported
    }
}

// ---- GD3: manager tasks for attempts to reach an unknown contact ----

/// How long after the last attempt a repeat is grouped onto the same open task instead of
/// opening a new one: a child who tries the same number twenty times in an evening makes one
/// task with a count, not twenty.
pub const GROUP_WINDOW_MS: UnixMillis = 24 * 60 * 60 * 1000;

/// An open manager task, as far as grouping needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenTask {
    pub id: String,
    pub child_id: String,
    /// The address in comparison form (`contact_key`).
    pub address_key: String,
    pub last_attempt_at: UnixMillis,
}

/// One attempt to reach an unknown contact, from a stored violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub child_id: String,
    pub address: String,
    pub channel: String,
    pub at: UnixMillis,
}

/// What to do with a batch of attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskChange {
    /// Open a new task for these attempts.
    Open {
        child_id: String,
        address: String,
        channel: String,
        attempts: u64,
        first_at: UnixMillis,
        last_at: UnixMillis,
    },
    /// Add these attempts to an open task.
    Add {
        task_id: String,
        attempts: u64,
        last_at: UnixMillis,
    },
}

/// The form two addresses are compared in: the same phone number typed two ways is one
/// contact; a messaging handle is compared without case.
pub fn contact_key(address: &str) -> String {
    if phone::looks_like_number(address) {
        phone::comparison_key(address)
    } else {
        address.trim().to_lowercase()
    }
}

/// Groups attempts onto the open tasks of the same child and address whose last attempt was
/// within `window` of them; opens one new task for the rest (and groups later attempts in the
/// same batch onto it). Attempts are taken in time order whatever order they arrived in.
pub fn group_attempts(
    open: &[OpenTask],
    attempts: &[Attempt],
    window: UnixMillis,
) -> Vec<TaskChange> {
    // Where each (child, address) stands while the batch is worked through: an existing task
    // (by id) or a new one (by index into `changes`), and its latest attempt.
    enum Slot {
        Existing(String),
        New(usize),
    }
    let mut sorted: Vec<&Attempt> = attempts.iter().collect();
    sorted.sort_by_key(|a| a.at);
    let mut changes: Vec<TaskChange> = Vec::new();
    let mut current: Vec<(String, String, Slot, UnixMillis)> = Vec::new();
    let mut added: Vec<(String, u64, UnixMillis)> = Vec::new();
    for a in sorted {
        let key = contact_key(&a.address);
        if key.is_empty() {
            continue;
        }
        let found = current
            .iter_mut()
            .find(|(child, k, _, _)| *child == a.child_id && *k == key);
        let found = match found {
            Some(f) => Some(f),
            None => {
                // The newest open task for this child and address, if any.
                if let Some(t) = open
                    .iter()
                    .filter(|t| t.child_id == a.child_id && t.address_key == key)
                    .max_by_key(|t| t.last_attempt_at)
                {
                    current.push((
                        a.child_id.clone(),
                        key.clone(),
                        Slot::Existing(t.id.clone()),
                        t.last_attempt_at,
                    ));
                    current.last_mut()
                } else {
                    None
                }
            }
        };
        if let Some((_, _, slot, last)) = found
            && (a.at - *last).abs() <= window
        {
            *last = (*last).max(a.at);
            match slot {
                Slot::Existing(id) => match added.iter_mut().find(|(t, _, _)| t == id) {
                    Some((_, n, at)) => {
                        *n += 1;
                        *at = (*at).max(a.at);
                    }
                    None => added.push((id.clone(), 1, a.at)),
                },
                Slot::New(i) => {
                    if let Some(TaskChange::Open {
                        attempts, last_at, ..
                    }) = changes.get_mut(*i)
                    {
                        *attempts += 1;
                        *last_at = (*last_at).max(a.at);
                    }
                }
            }
            continue;
        }
        // No open task close enough in time: open a new one, which later attempts join.
        changes.push(TaskChange::Open {
            child_id: a.child_id.clone(),
            address: a.address.trim().to_string(),
            channel: a.channel.clone(),
            attempts: 1,
            first_at: a.at,
            last_at: a.at,
        });
        let slot = Slot::New(changes.len() - 1);
        match current
            .iter_mut()
            .find(|(child, k, _, _)| *child == a.child_id && *k == key)
        {
            Some(entry) => {
                entry.2 = slot;
                entry.3 = a.at;
            }
            None => current.push((a.child_id.clone(), key, slot, a.at)),
        }
    }
    changes.extend(
        added
            .into_iter()
            .map(|(task_id, attempts, last_at)| TaskChange::Add {
                task_id,
                attempts,
                last_at,
            }),
    );
    changes
}

/// What the manager is asked to do, in plain words.
pub fn task_summary(child_name: &str, channel: &str, address: &str) -> String {
    let first = child_name.split_whitespace().next().unwrap_or(child_name);
    let how = match channel_words(channel) {
        "call" => "call",
        "sms" => "text",
        "messaging" => "message",
        _ => "contact",
    };
    format!(
        "{first} tried to {how} {address}, who is not in {first}'s plan: review whether to assess this contact with the social worker"
    )
}

// ---- devices that stop reporting ----

/// The default for `not_reporting_after_secs`: well past the agent's one-minute heartbeat, so
/// a slow network is not an alarm, but soon enough to act on the same shift.
pub const DEFAULT_NOT_REPORTING_AFTER_SECS: u64 = 15 * 60;

/// How long an active device has been silent, if that is longer than `after_ms`.
///
/// A device with its stream open is reporting (the stream's keep-alives prove the agent runs);
/// otherwise the last time it was heard from counts, or its enrollment if it never was — but
/// never from before `controller_started`: while the controller was down no device could
/// report, so a restart after a long outage is not a flood of false alarms. A revoked device
/// is never "not reporting": it is not expected to.
pub fn silent_for(
    active: bool,
    online: bool,
    last_heard: Option<UnixMillis>,
    enrolled_at: UnixMillis,
    controller_started: UnixMillis,
    now: UnixMillis,
    after_ms: i64,
) -> Option<i64> {
    if !active || online {
        return None;
    }
    let since = last_heard
        .unwrap_or(enrolled_at)
        .max(enrolled_at)
        .max(controller_started);
    let silent = now - since;
    (silent > after_ms).then_some(silent)
}

/// "20 minutes", "2 hours", "3 days": how long, as a person would say it.
pub fn duration_words(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (n, unit) = match secs {
        ..60 => (secs, "second"),
        60..3600 => (secs / 60, "minute"),
        3600..86_400 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// The watch line for a device that went quiet.
pub fn silence_message(child_name: &str, device_label: &str, silent_ms: i64) -> String {
    let first = child_name.split_whitespace().next().unwrap_or(child_name);
    format!(
        "{first}'s device {device_label} has not reported for {} — it may be switched off or the agent removed",
        duration_words(silent_ms)
    )
}

/// The kind of obligation an open manager task appears as in `haven obligations` (GD3).
pub const TASK_OBLIGATION_KIND: &str = "decide-on-unknown-contact";

/// When a manager task is due: by the end of the next working day after it opened, in the
/// home's time zone (GD3: "a manager is consulted at once").
pub fn task_due(
    opened_at: UnixMillis,
    time_zone: &str,
    holidays: &super::working_days::BankHolidays,
) -> UnixMillis {
    let tz = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let start = jiff::Timestamp::from_millisecond(opened_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    super::working_days::Deadline::WorkingDays(1)
        .due(start, &tz, holidays)
        .as_millisecond()
}

/// What a manager decided about an unknown contact (GD3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskDecision {
    /// A full risk assessment with the social worker is to be made.
    Assess,
    /// Contact is refused.
    Refuse,
    /// Nothing more is needed (a wrong number, a known service).
    NoAction,
}

impl TaskDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskDecision::Assess => "assess",
            TaskDecision::Refuse => "refuse",
            TaskDecision::NoAction => "no-action",
        }
    }
}

/// Checks a manager's closing of a task: a decision and a note saying why, and only once.
pub fn close_task(
    id: &str,
    closed_by: Option<&str>,
    decision: &str,
    note: &str,
) -> Result<(TaskDecision, String), String> {
    if let Some(by) = closed_by {
        return Err(format!("task {id} was already closed by {by}"));
    }
    let decision = task_decision(decision)?;
    let note = note.trim();
    if note.is_empty() {
        return Err("say why: the record needs it".to_string());
    }
    Ok((decision, note.to_string()))
}

/// A manager's decision on a task, from its words (GD3).
pub fn task_decision(decision: &str) -> Result<TaskDecision, String> {
    Ok(
        match decision
            .trim()
            .to_ascii_lowercase()
            .replace(['_', ' '], "-")
            .as_str()
        {
            "assess" => TaskDecision::Assess,
            "refuse" => TaskDecision::Refuse,
            "no-action" | "none" => TaskDecision::NoAction,
            "" => {
                return Err("say what you decided: assess, refuse or no-action".to_string());
            }
            other => {
                return Err(format!(
                    "{other:?} is not a decision: it is assess, refuse or no-action"
                ));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 60 * 60 * 1000;

    #[test]
    fn kinds_read_and_print_in_kebab_words() {
        for k in ViolationKind::ALL {
            assert_eq!(ViolationKind::parse(k.words()), Ok(k));
            assert_eq!(ViolationKind::from_stored(k.stored()), k);
        }
        assert_eq!(
            ViolationKind::parse(" Camera_Blocked "),
            Ok(ViolationKind::CameraBlocked)
        );
        let err = ViolationKind::parse("naughty").unwrap_err().to_string();
        assert!(
            err.contains("app-blocked") && err.contains("naughty"),
            "{err}"
        );
        assert_eq!(
            ViolationKind::from_stored("something_new"),
            ViolationKind::Other
        );
    }

    // clause D5: staff read what was blocked in plain words.
    #[test]
    fn d5_violations_are_described_in_plain_words() {
        assert_eq!(
            describe(ViolationKind::CameraBlocked, "", "", ""),
            "tried to open the camera"
        );
        assert_eq!(
            describe(ViolationKind::UnknownContact, "call", "+447700900999", ""),
            "tried to call +447700900999, who is not in the plan"
        );
        assert_eq!(
            describe(ViolationKind::WebBlocked, "", "tiktok.com", ""),
            "tried to visit tiktok.com, which is blocked"
        );
        assert_eq!(channel_words("unspecified"), "");
        assert_eq!(channel_words("sms"), "sms");
    }

    #[test]
    fn a_missing_or_future_time_is_the_time_it_arrived() {
        assert_eq!(occurred_at(0, 500), 500);
        assert_eq!(occurred_at(-3, 500), 500);
        assert_eq!(occurred_at(900, 500), 500, "a fast device clock");
        assert_eq!(occurred_at(100, 500), 100, "sent late after being offline");
    }

    fn attempt(child: &str, address: &str, at: i64) -> Attempt {
        Attempt {
            child_id: child.into(),
            address: address.into(),
            channel: "call".into(),
            at,
        }
    }

    // clause GD3: one attempt opens one task.
    #[test]
    fn gd3_an_attempt_to_reach_an_unknown_contact_opens_a_task() {
        let changes = group_attempts(
            &[],
            &[attempt("chd-1", "+447700900999", 10)],
            GROUP_WINDOW_MS,
        );
        assert_eq!(
            changes,
            vec![TaskChange::Open {
                child_id: "chd-1".into(),
                address: "+447700900999".into(),
                channel: "call".into(),
                attempts: 1,
                first_at: 10,
                last_at: 10,
            }]
        );
    }

    // clause GD3: repeats are grouped, not a flood.
    #[test]
    fn gd3_repeated_attempts_are_grouped_onto_one_task() {
        // Twenty tries of the same number, typed two ways, in one batch: one task.
        let batch: Vec<Attempt> = (0..20)
            .map(|i| {
                let address = if i % 2 == 0 {
                    "+447700900999"
                } else {
                    "07700 900999"
                };
                attempt("chd-1", address, i * 1000)
            })
            .collect();
        let changes = group_attempts(&[], &batch, GROUP_WINDOW_MS);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(matches!(
            &changes[0],
            TaskChange::Open {
                attempts: 20,
                last_at: 19_000,
                ..
            }
        ));

        // Later, within the window of the open task: added to it.
        let open = [OpenTask {
            id: "tsk-1".into(),
            child_id: "chd-1".into(),
            address_key: contact_key("+447700900999"),
            last_attempt_at: 19_000,
        }];
        let later = group_attempts(
            &open,
            &[
                attempt("chd-1", "07700900999", 2 * H),
                attempt("chd-1", "+447700900999", 3 * H),
            ],
            GROUP_WINDOW_MS,
        );
        assert_eq!(
            later,
            vec![TaskChange::Add {
                task_id: "tsk-1".into(),
                attempts: 2,
                last_at: 3 * H
            }]
        );
    }

    #[test]
    fn gd3_other_children_other_numbers_and_old_tasks_get_their_own_task() {
        let open = [OpenTask {
            id: "tsk-1".into(),
            child_id: "chd-1".into(),
            address_key: contact_key("+447700900999"),
            last_attempt_at: 0,
        }];
        let changes = group_attempts(
            &open,
            &[
                attempt("chd-2", "+447700900999", H),
                attempt("chd-1", "+447700900111", H),
                attempt("chd-1", "+447700900999", 30 * H),
                attempt("chd-1", "+447700900999", 31 * H),
            ],
            GROUP_WINDOW_MS,
        );
        let opened = changes
            .iter()
            .filter(|c| matches!(c, TaskChange::Open { .. }))
            .count();
        assert_eq!(opened, 3, "{changes:?}");
        assert!(changes.iter().any(|c| matches!(
            c,
            TaskChange::Open { child_id, attempts: 2, first_at, .. } if child_id == "chd-1" && *first_at == 30 * H
        )));
        assert!(!changes.iter().any(|c| matches!(c, TaskChange::Add { .. })));
        // Handles are compared without case; an empty address is not a task.
        assert_eq!(contact_key("@Someone"), contact_key("@someone"));
        assert!(group_attempts(&[], &[attempt("chd-1", "  ", 1)], GROUP_WINDOW_MS).is_empty());
    }

    #[test]
    fn gd3_the_task_says_what_to_do_in_plain_words() {
        let s = task_summary("Amira Khan", "call", "+447700900999");
        assert_eq!(
            s,
            "Amira tried to call +447700900999, who is not in Amira's plan: review whether to assess this contact with the social worker"
        );
    }

    #[test]
    fn a_device_is_not_reporting_only_when_active_offline_and_silent_too_long() {
        let after = 15 * 60 * 1000;
        let now = 10 * H;
        let quiet = |last: Option<i64>, enrolled: i64, started: i64| {
            silent_for(true, false, last, enrolled, started, now, after)
        };
        assert_eq!(quiet(Some(now - 20 * 60_000), 0, 0), Some(20 * 60_000));
        assert_eq!(quiet(Some(now - 60_000), 0, 0), None);
        assert_eq!(
            silent_for(true, true, Some(0), 0, 0, now, after),
            None,
            "a connected device reports"
        );
        assert_eq!(
            silent_for(false, false, Some(0), 0, 0, now, after),
            None,
            "a revoked device is not expected to"
        );
        // Never heard from since it enrolled: counted from enrollment.
        assert_eq!(quiet(None, now - H, 0), Some(H));
        assert_eq!(quiet(None, now - 1000, 0), None);
        // The controller was down: counted from when it came back.
        assert_eq!(quiet(Some(now - 5 * H), 0, now - 60_000), None);
        assert_eq!(quiet(Some(now - 5 * H), 0, now - H), Some(H));
    }

    #[test]
    fn silence_is_announced_in_plain_words() {
        assert_eq!(duration_words(20 * 60_000), "20 minutes");
        assert_eq!(duration_words(H), "1 hour");
        assert_eq!(duration_words(3_000), "3 seconds");
        assert_eq!(
            silence_message("Amira Khan", "tablet", 20 * 60_000),
            "Amira's device tablet has not reported for 20 minutes — it may be switched off or the agent removed"
        );
    }

    #[test]
    fn gd3_a_task_is_due_the_next_working_day_and_closes_only_with_a_decision() {
        let holidays = super::super::working_days::BankHolidays::england_and_wales();
        // Friday 4 December 2026, 15:00: due by the end of Monday 7 December.
        let at = "2026-12-04T15:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let due = task_due(at, "Europe/London", &holidays);
        let monday_end = "2026-12-08T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        assert!(due > at + 2 * 86_400_000 && due <= monday_end, "{due}");
        assert_eq!(
            close_task("tsk-1", None, "Refuse", " unknown adult "),
            Ok((TaskDecision::Refuse, "unknown adult".to_string()))
        );
        assert!(
            close_task("tsk-1", None, "", "x")
                .unwrap_err()
                .contains("what you decided")
        );
        assert!(close_task("tsk-1", None, "maybe", "x").is_err());
        assert!(
            close_task("tsk-1", None, "no action", " ")
                .unwrap_err()
                .contains("say why")
        );
        assert!(
            close_task("tsk-1", Some("stf-m"), "assess", "x")
                .unwrap_err()
                .contains("already closed")
        );
    }
}
