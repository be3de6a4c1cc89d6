//! Camera incidents and withdrawing the camera (IM2): when images may have been passed to
//! people who could exploit them, the arrangement is reviewed at once, and if the risk cannot
//! be reduced, the camera is withdrawn in one step.
//!
//! An incident does not change what the device enforces by itself: it puts the camera
//! arrangement into "review required" until a manager makes a new plan revision (keeping the
//! camera with new safeguards, or withdrawing it). Withdrawal is a plan revision like any other,
//! so it is numbered, kept and shown in the written plan.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::UnixMillis;
use super::plan::{
    CameraPermission, ConsultRecord, Consultation, PlanRevision, PlanRevisionDraft, ReviewItem,
    SharedWith,
};
use super::risk::Refusal;

/// Something that happened with the camera that staff must record (IM2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraIncident {
    pub id: String,
    pub child_id: String,
    pub recorded_by: String,
    pub recorded_at: UnixMillis,
    /// What happened, in the words of the member of staff.
    pub what_happened: String,
    /// Whether images may have been, or may be, passed to someone who could exploit them.
    pub images_may_reach_others: bool,
}

/// Checks the words of an incident report before anything is written.
pub fn validate_incident(what_happened: &str) -> Result<String, Refusal> {
    let text = what_happened.trim();
    if text.is_empty() {
        return Err(Refusal::new(
            "IM2",
            "say what happened, e.g. \"photos shared in a group chat\"",
        ));
    }
    if text.chars().count() > 4000 {
        return Err(Refusal::new(
            "IM2",
            "the description is longer than 4000 characters: shorten it",
        ));
    }
    Ok(text.to_string())
}

/// The incident that puts the camera arrangement into "review required", if any: the camera
/// is on in the current revision and an incident was recorded after that revision was made.
/// A new revision (whatever it decides) is the review.
pub fn review_required<'a>(
    current: Option<&PlanRevision>,
    incidents: &'a [CameraIncident],
) -> Option<&'a CameraIncident> {
    let current = current?;
    if !matches!(current.section.camera, CameraPermission::On { .. }) {
        return None;
    }
    incidents
        .iter()
        .filter(|i| i.recorded_at >= current.made_at)
        .max_by_key(|i| i.recorded_at)
}

/// The review item `haven reviews` lists for an incident: due on the day it happened, so it
/// is always shown as due now.
pub fn incident_review_item(incident: &CameraIncident, happened_on: Date) -> ReviewItem {
    let why = if incident.images_may_reach_others {
        "images may have reached people who could exploit them"
    } else {
        "an incident was recorded"
    };
    ReviewItem {
        what: format!("the camera arrangement: review required now ({why})"),
        due: happened_on,
        overdue: false,
    }
}

/// The revision that withdraws the camera and changes nothing else (IM2).
///
/// Withdrawal cannot wait for a meeting, so the consultation record says why the social
/// worker and the parents were not consulted first; the plan is shared with the child, who is
/// told, and with the social worker. A restriction needs a review date (KP1), given by the
/// manager.
pub fn withdrawal(
    current: &PlanRevision,
    made_by: &str,
    made_at: UnixMillis,
    reason: &str,
    review_by: Date,
) -> Result<PlanRevisionDraft, Refusal> {
    if !matches!(current.section.camera, CameraPermission::On { .. }) {
        return Err(Refusal::new(
            "IM2",
            "the camera is already off in the current plan: there is nothing to withdraw",
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Refusal::new("IM2", "say why the camera is withdrawn"));
    }
    let not_yet = ConsultRecord::NotConsulted {
        reason: "the camera was withdrawn at once after an incident (IM2); they are to be told \
                 and consulted at the review"
            .into(),
    };
    let mut section = current.section.clone();
    section.camera = CameraPermission::Off;
    Ok(PlanRevisionDraft {
        child_id: current.child_id.clone(),
        made_by: made_by.to_string(),
        made_at,
        reason: format!("Camera withdrawn after an incident: {reason}"),
        consultation: Consultation {
            social_worker: Some(not_yet.clone()),
            parents: Some(not_yet),
        },
        // What actually happened: the child's device says the camera is off; the social
        // worker has not been told yet — that is owed within a working day (RM4).
        shared_with: SharedWith {
            child: true,
            social_worker: false,
            others: Vec::new(),
        },
        child_views: None,
        review_by: Some(review_by),
        // clause RM3: images reaching people who could exploit them put the child at risk.
        grounds: super::plan::Grounds {
            protective_reason: Some("injury-to-child".into()),
            evidence: Some(reason.to_string()),
            // clause R7: urgent action first; the child is asked at the review.
            views_not_sought: Some(
                "urgency: the camera was withdrawn at once after an incident; the child's views are to be sought at the review".into(),
            ),
            ..Default::default()
        },
        section,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::{Agreement, CommunicationSection, is_restriction};

    fn date(y: i16, m: i8, d: i8) -> Date {
        Date::new(y, m, d).unwrap()
    }

    fn revision(camera_on: bool, made_at: UnixMillis) -> PlanRevision {
        let camera = if camera_on {
            CameraPermission::On {
                placing_authority_agreement: Agreement {
                    who: "Social worker".into(),
                    when: date(2026, 1, 5),
                },
                parent_consultation: Agreement {
                    who: "Mum".into(),
                    when: date(2026, 1, 6),
                },
                review_by: date(2027, 1, 1),
                risk_assessment: "ra-1".into(),
            }
        } else {
            CameraPermission::Off
        };
        PlanRevision {
            number: 3,
            child_id: "chd-1".into(),
            made_by: "stf-m".into(),
            made_at,
            reason: "camera agreed".into(),
            consultation: Consultation::default(),
            shared_with: SharedWith::default(),
            child_views: None,
            review_by: None,
            grounds: Default::default(),
            section: CommunicationSection {
                camera,
                ..CommunicationSection::default()
            },
        }
    }

    fn incident(at: UnixMillis) -> CameraIncident {
        CameraIncident {
            id: "cin-1".into(),
            child_id: "chd-1".into(),
            recorded_by: "stf-1".into(),
            recorded_at: at,
            what_happened: "photos shared in a group chat".into(),
            images_may_reach_others: true,
        }
    }

    // clause IM2: an incident puts the camera arrangement into "review required" until the
    // next revision.
    #[test]
    fn im2_an_incident_after_the_current_revision_requires_a_review() {
        let current = revision(true, 1_000);
        assert!(review_required(Some(&current), &[]).is_none());
        let incidents = [incident(500), incident(2_000)];
        let found = review_required(Some(&current), &incidents).unwrap();
        assert_eq!(found.recorded_at, 2_000);
        // A revision made after the incident is the review.
        let reviewed = revision(true, 3_000);
        assert!(review_required(Some(&reviewed), &incidents).is_none());
        // Nothing to review when the camera is off.
        assert!(review_required(Some(&revision(false, 1_000)), &incidents).is_none());
        assert!(review_required(None, &incidents).is_none());
        let item = incident_review_item(found, date(2026, 11, 28));
        assert!(item.what.contains("review required"), "{}", item.what);
    }

    // clause IM2: withdrawal is one step that turns the camera off and changes nothing else.
    #[test]
    fn im2_withdrawal_turns_only_the_camera_off_and_records_why() {
        let current = revision(true, 1_000);
        let draft = withdrawal(
            &current,
            "stf-m",
            2_000,
            "images shared",
            date(2026, 12, 26),
        )
        .unwrap();
        assert_eq!(draft.section.camera, CameraPermission::Off);
        assert!(is_restriction(Some(&current.section), &draft.section));
        assert!(draft.reason.contains("images shared"));
        assert!(matches!(
            draft.consultation.social_worker,
            Some(ConsultRecord::NotConsulted { .. })
        ));
        assert_eq!(draft.review_by, Some(date(2026, 12, 26)));
        // clause IM2, RM4: the record says the social worker has not been told, and they are
        // owed a notification.
        assert!(!draft.shared_with.social_worker);
        let next = PlanRevision::next(Some(&current), draft.clone());
        assert!(crate::domain::restriction::owes_social_worker_notice(
            Some(&current.section),
            &next
        ));
        let off = revision(false, 1_000);
        assert!(withdrawal(&off, "stf-m", 2_000, "x", date(2026, 12, 26)).is_err());
        assert!(withdrawal(&current, "stf-m", 2_000, " ", date(2026, 12, 26)).is_err());
        assert!(validate_incident("  ").is_err());
        assert_eq!(validate_incident(" shared ").unwrap(), "shared");
    }
}
