//! A contact's risk check (GD1–GD3, KP2): what a contact's own risk assessment says decides
//! whether a plan may approve them. A person who is not known or who poses a risk is approved
//! only on a manager's decision made with the social worker's agreement; a Contact Order or a
//! Child Protection Plan governs the contacts it names; an assessment past its review date
//! justifies nothing new.
//!
//! Pure rules: the caller passes today's date in the home's time zone.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::plan::{CommunicationSection, ContactPermission};
use super::risk::{Answer, Refusal, RiskAssessment};

/// A manager's decision about one contact whose assessment raised a concern, kept in the
/// revision that approves them (GD3: "a manager is consulted at once, who does a full risk
/// assessment with the social worker").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskDecision {
    /// The contact's name as the plan lists it.
    pub contact: String,
    /// The manager who decided.
    #[serde(default)]
    pub decided_by: String,
    /// The social worker who agreed, and when ("J. Okafor, 20 Nov").
    #[serde(default)]
    pub social_worker_agreed: String,
    /// What was decided and why, with the safeguards.
    #[serde(default)]
    pub decision: String,
    /// How the plan follows the Contact Order or Child Protection Plan that names this
    /// contact, when the assessment records one.
    #[serde(default)]
    pub order_terms: Option<String>,
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Whether `next` approves `c` anew: it was not in `previous`, or it now rests on another
/// assessment, or it gained a way of reaching them.
fn newly_approved(previous: Option<&CommunicationSection>, c: &ContactPermission) -> bool {
    let Some(prev) = previous else {
        return true;
    };
    match prev.contacts.iter().find(|p| {
        p.name.trim().eq_ignore_ascii_case(c.name.trim())
            && p.relationship
                .trim()
                .eq_ignore_ascii_case(c.relationship.trim())
    }) {
        None => true,
        Some(p) => {
            p.risk_assessment.trim() != c.risk_assessment.trim()
                || c.addresses.iter().any(|a| !p.addresses.contains(a))
        }
    }
}

/// Checks every contact `next` approves anew against its own risk assessment (GD2, GD3, KP1).
pub fn check_contact_risks(
    previous: Option<&CommunicationSection>,
    next: &CommunicationSection,
    risk_assessments: &[RiskAssessment],
    decisions: &[RiskDecision],
    today: Date,
) -> Result<(), Refusal> {
    for c in next.contacts.iter().filter(|c| newly_approved(previous, c)) {
        let Some(ra) = risk_assessments
            .iter()
            .find(|r| r.id == c.risk_assessment.trim())
        else {
            // A missing assessment is refused by the plan's own KP2 check.
            continue;
        };
        let label = c.label();
        // clause KP1, KP2: an assessment past its review date no longer justifies anything new.
        if ra.review_by < today {
            return Err(Refusal::new(
                "KP2",
                format!(
                    "contact with {label} rests on risk assessment {}, whose review date {} has passed: review the assessment first (`haven risk add`), then link the new one",
                    ra.id, ra.review_by
                ),
            ));
        }
        let decision = decisions
            .iter()
            .find(|d| d.contact.trim().eq_ignore_ascii_case(c.name.trim()));
        // clause GD3: unknown or risky contacts need a manager's decision with the social worker.
        let concerns = ra.contact_concerns();
        if let Some(first) = concerns.first() {
            let ok = decision.is_some_and(|d| {
                !blank(&d.decided_by) && !blank(&d.social_worker_agreed) && !blank(&d.decision)
            });
            if !ok {
                return Err(Refusal::new(
                    "GD3",
                    format!(
                        "risk assessment {} says {} ({label}): approve them only with a manager's decision made with the social worker's agreement — add a [[risk_decisions]] entry for {} with decided_by, social_worker_agreed and decision",
                        ra.id,
                        first.describe(),
                        c.name.trim()
                    ),
                ));
            }
        }
        // clause GD2: a Contact Order or Child Protection Plan governs the contacts it names.
        let order = [
            (
                ra.checklist.contact_order.answer,
                "a Contact Order is in force",
            ),
            (
                ra.checklist.protection_plan_or_child_in_need.answer,
                "a Child Protection Plan or Child in Need plan applies",
            ),
        ]
        .into_iter()
        .find(|(a, _)| *a == Answer::Yes);
        if let Some((_, which)) = order {
            let terms = decision
                .and_then(|d| d.order_terms.as_deref())
                .unwrap_or("");
            if blank(terms) {
                return Err(Refusal::new(
                    "GD2",
                    format!(
                        "risk assessment {} says {which} ({label}): contact follows it — say how in order_terms of a [[risk_decisions]] entry for {}",
                        ra.id,
                        c.name.trim()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::{Channel, ContactAddress};
    use crate::domain::risk::{Answered, sample_draft, validate_risk_assessment};
    use jiff::civil::date;

    fn today() -> Date {
        date(2026, 11, 28)
    }

    fn ra(edit: impl FnOnce(&mut crate::domain::risk::RiskAssessmentDraft)) -> RiskAssessment {
        let mut d = sample_draft("ra-dad", "chd-1");
        edit(&mut d);
        validate_risk_assessment(&d, today()).unwrap()
    }

    fn dad() -> CommunicationSection {
        CommunicationSection {
            contacts: vec![ContactPermission {
                name: "Dad".into(),
                relationship: "father".into(),
                addresses: vec![ContactAddress {
                    channel: Channel::Call,
                    address: "+447700900456".into(),
                    app: None,
                }],
                windows: vec![],
                risk_assessment: "ra-dad".into(),
                review_by: None,
            }],
            ..Default::default()
        }
    }

    fn answered(a: Answer) -> Option<Answered> {
        Some(Answered {
            answer: a,
            notes: "from the chronology".into(),
        })
    }

    fn decided() -> RiskDecision {
        RiskDecision {
            contact: "Dad".into(),
            decided_by: "M. Patel (Registered Manager)".into(),
            social_worker_agreed: "J. Okafor, 20 Nov".into(),
            decision: "Supervised calls only, on speaker, with the key worker".into(),
            order_terms: None,
        }
    }

    #[test]
    fn gd3_a_contact_who_poses_a_risk_needs_a_managers_decision_with_the_social_worker() {
        let risky = ra(|d| d.checklist.contact_poses_risk = answered(Answer::Yes));
        let err = check_contact_risks(None, &dad(), std::slice::from_ref(&risky), &[], today())
            .unwrap_err();
        assert_eq!(err.clause, "GD3");
        assert!(err.message.contains("poses a risk"), "{err}");
        let mut half = decided();
        half.social_worker_agreed = " ".into();
        assert!(
            check_contact_risks(None, &dad(), std::slice::from_ref(&risky), &[half], today())
                .is_err()
        );
        assert!(
            check_contact_risks(
                None,
                &dad(),
                std::slice::from_ref(&risky),
                &[decided()],
                today()
            )
            .is_ok()
        );
        // Already approved in the plan before, unchanged: no new decision needed.
        assert!(check_contact_risks(Some(&dad()), &dad(), &[risky], &[], today()).is_ok());
    }

    #[test]
    fn gd3_an_unknown_contact_needs_a_decision_too() {
        let unknown = ra(|d| d.checklist.contact_known = answered(Answer::NotKnown));
        let err = check_contact_risks(None, &dad(), &[unknown], &[], today()).unwrap_err();
        assert!(err.message.contains("not known"), "{err}");
    }

    #[test]
    fn gd2_a_contact_order_governs_the_contacts_it_names() {
        let order = ra(|d| d.checklist.contact_order = answered(Answer::Yes));
        let err = check_contact_risks(None, &dad(), std::slice::from_ref(&order), &[], today())
            .unwrap_err();
        assert_eq!(err.clause, "GD2");
        assert!(err.message.contains("Contact Order"), "{err}");
        let mut d = decided();
        d.order_terms = Some("Order of 3 March: monthly supervised contact only".into());
        assert!(check_contact_risks(None, &dad(), &[order], &[d], today()).is_ok());
    }

    #[test]
    fn kp1_an_assessment_past_its_review_date_justifies_no_new_contact() {
        let old = ra(|_| {});
        let later = old
            .review_by
            .checked_add(jiff::Span::new().days(1))
            .unwrap();
        let err =
            check_contact_risks(None, &dad(), std::slice::from_ref(&old), &[], later).unwrap_err();
        assert!(err.message.contains("review the assessment first"), "{err}");
        // A contact already in the plan is not refused for it (reviews list it as overdue).
        assert!(check_contact_risks(Some(&dad()), &dad(), &[old], &[], later).is_ok());
    }
}
