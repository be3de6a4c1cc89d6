//! What a restriction is and what it must carry, whichever path it takes (RM2, RM3, RM5, R19):
//! a plan revision that limits communication needs the same protective reasons an emergency
//! lockdown does, never punishment, and a reduction of telephone or messaging access is a
//! Regulation 35 sanction however it was made.
//!
//! Pure rules over plan sections; the caller passes the time in.

use serde::{Deserialize, Serialize};

use super::emergency::ProtectiveReason;
use super::plan::{Channel, CommunicationSection, ContactPermission, describe_windows};
use super::risk::Refusal;

/// Why a revision restricts, in the terms of the policy (RM3, R19). Kept in the revision
/// itself, so the written plan shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grounds {
    /// One of the protective reasons a lockdown also needs: injury-to-child,
    /// injury-to-others, property-damage or prevent-offence. Needed whenever the revision
    /// restricts.
    #[serde(default)]
    pub protective_reason: Option<String>,
    /// What shows the risk, in words ("messages from Dad's number threatened Amira on …").
    #[serde(default)]
    pub evidence: Option<String>,
    /// A manager's decision, with the social worker's agreement, for each contact approved
    /// although their assessment raised a concern (GD3) or names an order (GD2).
    #[serde(default)]
    pub risk_decisions: Vec<super::contact_risk::RiskDecision>,
    /// Why the child's views could not be sought — their age, capacity, or urgency (R7);
    /// needed when `child_views` is blank and the revision changes something.
    #[serde(default)]
    pub views_not_sought: Option<String>,
}

/// Words that say a restriction is used to manage behaviour: a punishment, which the policy
/// forbids (R19: "restricting contact with family and friends is never a punishment").
const PUNITIVE_WORDS: &[&str] = &[
    "punish",
    "behaviour",
    "behavior",
    "consequence",
    "sanction",
    "grounded",
    "privilege",
    "earn",
];

fn sounds_punitive(text: &str) -> bool {
    let t = text.to_lowercase();
    PUNITIVE_WORDS.iter().any(|w| t.contains(w))
}

/// Checks that a revision which limits something (`limits`, in plain words, from
/// `plan::restrictions`) is protective: one of the protective reasons and its evidence. A
/// revision whose only reason is managing behaviour is refused with R19.
pub fn check_protective_grounds(
    reason: &str,
    grounds: &Grounds,
    limits: &[String],
) -> Result<Option<ProtectiveReason>, Refusal> {
    let Some(first) = limits.first() else {
        return Ok(None);
    };
    let what = if limits.len() == 1 {
        first.clone()
    } else {
        format!("{first}, and {} more", limits.len() - 1)
    };
    let given = grounds
        .protective_reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let Some(given) = given else {
        if sounds_punitive(reason) {
            return Err(Refusal::new(
                "R19",
                format!(
                    "this revision limits the child's communication ({what}) to manage behaviour: restricting contact is never a punishment; restrict only to protect someone, and say which protective_reason applies"
                ),
            ));
        }
        return Err(Refusal::new(
            "RM3",
            format!(
                "this revision limits the child's communication ({what}): say why it protects someone with protective_reason = injury-to-child, injury-to-others, property-damage or prevent-offence, and the evidence"
            ),
        ));
    };
    let reason: ProtectiveReason = given
        .parse()
        .map_err(|e| Refusal::new("R19", format!("{e}")))?;
    let evidence = grounds.evidence.as_deref().map(str::trim).unwrap_or("");
    if evidence.is_empty() {
        return Err(Refusal::new(
            "RM3",
            format!(
                "this revision limits the child's communication ({what}) for {}: write the evidence for it in words (evidence = \"…\")",
                reason.describe()
            ),
        ));
    }
    if evidence.chars().count() > 4000 {
        return Err(Refusal::new(
            "RM3",
            "the evidence is longer than 4000 characters: shorten it",
        ));
    }
    Ok(Some(reason))
}

fn same_contact(a: &ContactPermission, b: &ContactPermission) -> bool {
    a.name.trim().eq_ignore_ascii_case(b.name.trim())
        && a.relationship
            .trim()
            .eq_ignore_ascii_case(b.relationship.trim())
}

fn phone_or_messaging(c: Channel) -> &'static str {
    match c {
        Channel::Call => "phone calls",
        Channel::Sms => "text messages",
        Channel::Messaging => "messages",
    }
}

/// Each way `next` prevents or reduces the child's telephone or messaging access compared
/// with `previous`, in plain words: a contact withdrawn, a number or handle withdrawn, or the
/// times narrowed. Any of these is a Sanction under Regulation 35 (RM5), whether a lockdown or
/// a plan revision made it. A first plan reduces nothing.
pub fn telephone_reductions(
    previous: Option<&CommunicationSection>,
    next: &CommunicationSection,
) -> Vec<String> {
    let Some(prev) = previous else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in &prev.contacts {
        if p.addresses.is_empty() {
            continue;
        }
        match next.contacts.iter().find(|n| same_contact(p, n)) {
            None => out.push(format!("contact with {} withdrawn", p.label())),
            Some(n) => {
                for a in p.addresses.iter().filter(|a| !n.addresses.contains(a)) {
                    out.push(format!(
                        "{} with {} ({}) withdrawn",
                        phone_or_messaging(a.channel),
                        p.label(),
                        a.address
                    ));
                }
                if super::plan::narrows_times(&p.windows, &n.windows) {
                    out.push(format!(
                        "contact with {} limited to {}",
                        p.label(),
                        describe_windows(&n.windows)
                    ));
                }
            }
        }
    }
    out
}

fn channel_words(c: Channel) -> &'static str {
    match c {
        Channel::Call => "by phone",
        Channel::Sms => "by text",
        Channel::Messaging => "by message",
    }
}

/// Contacts, and ways of reaching a contact, that an earlier revision of `history` (oldest
/// first) allowed and the newest one does not, each with the index of the revision since
/// which it has been withdrawn without a break (KP1: "contact with Mum by phone withdrawn
/// since revision 4").
pub fn withdrawn_in(history: &[super::plan::PlanRevision]) -> Vec<(String, usize)> {
    let Some(current) = history.last() else {
        return Vec::new();
    };
    let now = &current.section;
    let mut out: Vec<(String, usize)> = Vec::new();
    // The newest revision (before the current one) that still had `present`.
    let since = |present: &dyn Fn(&CommunicationSection) -> bool| -> Option<usize> {
        history
            .iter()
            .rposition(|r| present(&r.section))
            .map(|last| last + 1)
            .filter(|i| *i < history.len())
    };
    let mut seen: Vec<&ContactPermission> = Vec::new();
    for c in history.iter().flat_map(|r| &r.section.contacts) {
        if seen.iter().any(|s| same_contact(s, c)) {
            continue;
        }
        seen.push(c);
        let still = now.contacts.iter().find(|n| same_contact(n, c));
        match still {
            None => {
                let had = |s: &CommunicationSection| s.contacts.iter().any(|x| same_contact(x, c));
                if let Some(i) = since(&had) {
                    out.push((format!("contact with {} withdrawn", c.label()), i));
                }
            }
            Some(n) => {
                let mut ways: Vec<&super::plan::ContactAddress> = history
                    .iter()
                    .flat_map(|r| &r.section.contacts)
                    .filter(|x| same_contact(x, c))
                    .flat_map(|x| &x.addresses)
                    .filter(|a| !n.addresses.contains(a))
                    .collect();
                ways.sort();
                ways.dedup();
                for a in ways {
                    let had = |s: &CommunicationSection| {
                        s.contacts
                            .iter()
                            .any(|x| same_contact(x, c) && x.addresses.contains(a))
                    };
                    if let Some(i) = since(&had) {
                        out.push((
                            format!(
                                "contact with {} {} ({}) withdrawn",
                                c.label(),
                                channel_words(a.channel),
                                a.address
                            ),
                            i,
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Whether a restricting revision made without consulting the social worker owes them a
/// notification (RM4): emergency action taken first — a camera withdrawn at once after an
/// incident (IM2) — is told to the social worker within a working day.
pub fn owes_social_worker_notice(
    previous: Option<&CommunicationSection>,
    next: &super::plan::PlanRevision,
) -> bool {
    let restricts = super::plan::is_restriction(previous, &next.section);
    restricts
        && matches!(
            next.consultation.social_worker,
            Some(super::plan::ConsultRecord::NotConsulted { .. })
        )
}

/// A restriction's review date is carried forward (KP1): a revision that leaves out its review
/// date while a restriction made with one still stands is refused. `history` is every stored
/// revision, oldest first; `next` the revision about to be written.
pub fn check_review_carried(
    history: &[super::plan::PlanRevision],
    next: &super::plan::PlanRevision,
) -> Result<(), Refusal> {
    if next.review_by.is_some() {
        return Ok(());
    }
    let mut all = history.to_vec();
    all.push(next.clone());
    let standing = super::plan::restrictions_in_force(&all)
        .into_iter()
        .filter(|r| r.since_revision < next.number)
        .find_map(|r| {
            // Only a restriction made with a review date carries one.
            let began = history.iter().find(|h| h.number == r.since_revision)?;
            let first = began.review_by?;
            let latest = history.last().and_then(|h| h.review_by).unwrap_or(first);
            Some((r, latest))
        });
    match standing {
        None => Ok(()),
        Some((r, date)) => Err(Refusal::new(
            "KP1",
            format!(
                "{} (since revision {}) still stands, and this revision drops its review date: carry it forward (review_by = \"{date}\") or set a new one",
                r.what, r.since_revision
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grounds(reason: Option<&str>, evidence: Option<&str>) -> Grounds {
        Grounds {
            protective_reason: reason.map(Into::into),
            evidence: evidence.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn rm3_r19_a_planned_restriction_needs_a_protective_reason_and_evidence() {
        let limits = vec!["removes contact Dad (father)".to_string()];
        // Nothing restricted: nothing needed.
        assert_eq!(
            check_protective_grounds("more calls", &Grounds::default(), &[]),
            Ok(None)
        );
        let err =
            check_protective_grounds("Dad upset her", &Grounds::default(), &limits).unwrap_err();
        assert_eq!(err.clause, "RM3");
        assert!(err.message.contains("protective_reason"), "{err}");
        let err = check_protective_grounds(
            "Dad upset her",
            &grounds(Some("injury-to-child"), None),
            &limits,
        )
        .unwrap_err();
        assert!(err.message.contains("evidence"), "{err}");
        assert_eq!(
            check_protective_grounds(
                "Dad upset her",
                &grounds(
                    Some("injury-to-child"),
                    Some("threats in messages on 1 Dec")
                ),
                &limits,
            ),
            Ok(Some(ProtectiveReason::InjuryToChild))
        );
    }

    #[test]
    fn r19_a_restriction_to_manage_behaviour_is_refused() {
        let limits = vec!["removes contact Mum (mother)".to_string()];
        let err = check_protective_grounds(
            "Consequence for her behaviour at school",
            &Grounds::default(),
            &limits,
        )
        .unwrap_err();
        assert_eq!(err.clause, "R19");
        assert!(err.message.contains("never a punishment"), "{err}");
        let err = check_protective_grounds(
            "x",
            &grounds(Some("behaviour management"), Some("she swore")),
            &limits,
        )
        .unwrap_err();
        assert_eq!(err.clause, "R19");
        assert!(err.message.contains("never a punishment"), "{err}");
    }
}

#[cfg(test)]
mod reduction_tests {
    use super::*;
    use crate::domain::plan::{ContactAddress, TimeWindow};

    fn nan(addresses: Vec<ContactAddress>, windows: Vec<TimeWindow>) -> CommunicationSection {
        CommunicationSection {
            contacts: vec![ContactPermission {
                name: "Nan".into(),
                relationship: "grandmother".into(),
                addresses,
                windows,
                risk_assessment: "ra-1".into(),
                review_by: None,
            }],
            ..Default::default()
        }
    }

    fn call() -> ContactAddress {
        ContactAddress {
            channel: Channel::Call,
            address: "+447700900123".into(),
            app: None,
        }
    }

    fn sms() -> ContactAddress {
        ContactAddress {
            channel: Channel::Sms,
            address: "+447700900123".into(),
            app: None,
        }
    }

    #[test]
    fn rm5_a_revision_that_reduces_telephone_access_is_a_sanction() {
        let before = nan(vec![call(), sms()], vec![]);
        assert!(telephone_reductions(None, &before).is_empty());
        assert!(telephone_reductions(Some(&before), &before).is_empty());
        let no_calls = nan(vec![sms()], vec![]);
        let r = telephone_reductions(Some(&before), &no_calls);
        assert_eq!(r.len(), 1);
        assert!(r[0].contains("phone calls with Nan (grandmother)"), "{r:?}");
        let gone = CommunicationSection::default();
        assert_eq!(
            telephone_reductions(Some(&before), &gone),
            vec!["contact with Nan (grandmother) withdrawn".to_string()]
        );
        let evenings = nan(
            vec![call(), sms()],
            vec![TimeWindow {
                start_minute: 960,
                end_minute: 1200,
                weekdays: vec![],
            }],
        );
        let r = telephone_reductions(Some(&before), &evenings);
        assert!(r[0].contains("limited to between 4pm and 8pm"), "{r:?}");
        // Widening is not a reduction; turning the camera off is not telephone access.
        assert!(telephone_reductions(Some(&evenings), &before).is_empty());
    }
}

#[cfg(test)]
mod review_tests {
    use super::*;
    use crate::domain::plan::{Consultation, PlanRevision, SharedWith};
    use jiff::civil::Date;

    fn revision(number: u32, review_by: Option<Date>, blocked: &[&str]) -> PlanRevision {
        let mut section = CommunicationSection::default();
        section.apps.blocked = blocked.iter().map(|b| b.to_string()).collect();
        PlanRevision {
            number,
            child_id: "chd-1".into(),
            made_by: "stf-m".into(),
            made_at: i64::from(number) * 1000,
            reason: format!("revision {number}"),
            consultation: Consultation::default(),
            shared_with: SharedWith::default(),
            child_views: Some("ok".into()),
            review_by,
            grounds: Grounds::default(),
            section,
        }
    }

    #[test]
    fn kp1_a_standing_restriction_keeps_its_review_date() {
        let d = Date::new(2026, 12, 10).unwrap();
        let first = revision(1, None, &[]);
        let blocked = revision(2, Some(d), &["com.example.game"]);
        // The game stays blocked and the review date is dropped: refused.
        let dropped = revision(3, None, &["com.example.game"]);
        let err = check_review_carried(&[first.clone(), blocked.clone()], &dropped).unwrap_err();
        assert_eq!(err.clause, "KP1");
        assert!(err.message.contains("2026-12-10"), "{err}");
        assert!(err.message.contains("com.example.game"), "{err}");
        // Carried forward, or the restriction ended: accepted.
        let carried = revision(3, Some(d), &["com.example.game"]);
        assert!(check_review_carried(&[first.clone(), blocked.clone()], &carried).is_ok());
        let ended = revision(3, None, &[]);
        assert!(check_review_carried(&[first.clone(), blocked], &ended).is_ok());
        // Nothing was ever reviewed: nothing to carry.
        assert!(check_review_carried(&[first], &revision(2, None, &[])).is_ok());
    }
}
