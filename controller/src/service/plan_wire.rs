//! The one place placement plans and risk assessments cross between the wire messages of
//! `plan.proto` and the domain's types, in both directions.
//!
//! Wire → domain checks only what the domain's types cannot hold: a closed set left
//! `UNSPECIFIED` or given a number it does not know, a date that is not `YYYY-MM-DD`, a part
//! the domain requires left out, a number too large. Each such error names the field by its
//! path in the request (`plan.communication.contacts[0].windows[2].start_minute`), so a client
//! in any language can point at it. The rules of the policy are the domain's, checked after.
//!
//! Domain → wire never fails: every value the domain holds has a wire form. A stored revision
//! turned into wire and back gives the same revision (the tests below hold this).

use std::str::FromStr;

use haven_proto::admin::v1 as wire;
use haven_proto::well_known::Timestamp;
use jiff::civil::Date;

use crate::domain::UnixMillis;
use crate::domain::contact_risk::RiskDecision;
use crate::domain::emergency::ProtectiveReason;
use crate::domain::plan::{
    Agreement, AppPermission, Arrangement, CameraPermission, Channel, CommunicationSection,
    ConsultRecord, Consultation, ContactAddress, ContactPermission, Grounds, PlanRevision,
    PlanRevisionDraft, SharedWith, SocialSite, TimeWindow, WebPermission,
};
use crate::domain::risk::{
    Answer, Answered, AssessmentKind, Checklist, ChecklistDraft, Considerations, Participants,
    Question, RiskAssessment, RiskAssessmentDraft,
};

/// A field of a request the controller cannot read, by its path, and what to do about it.
/// The service layer turns it into `INVALID_ARGUMENT` with a `BadRequest.FieldViolation`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {description}")]
pub struct FieldError {
    /// The path of the field in the request, as protobuf names it:
    /// `plan.communication.contacts[0].addresses[1].channel`.
    pub field: String,
    /// What is wrong and what to write instead, in one line.
    pub description: String,
}

/// Where a field is in the request; builds the paths [`FieldError`] names.
#[derive(Clone)]
struct At(String);

impl At {
    fn field(&self, name: &str) -> At {
        At(format!("{}.{name}", self.0))
    }
    fn index(&self, i: usize) -> At {
        At(format!("{}[{i}]", self.0))
    }
    fn error(&self, description: impl Into<String>) -> FieldError {
        FieldError {
            field: self.0.clone(),
            description: description.into(),
        }
    }
}

/// The path a revision has in `RevisePlanRequest`.
pub const PLAN_FIELD: &str = "plan";
/// The path an assessment has in `RecordRiskAssessmentRequest`.
pub const RISK_FIELD: &str = "risk_assessment";

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// A Unix-milliseconds instant as a `google.protobuf.Timestamp`.
pub fn timestamp(ms: UnixMillis) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        // 0..=999_999_000: always fits.
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

/// A `google.protobuf.Timestamp` as Unix milliseconds (sub-millisecond parts dropped).
pub fn unix_ms(t: &Timestamp) -> UnixMillis {
    t.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(t.nanos.clamp(0, 999_999_999) / 1_000_000))
}

fn date_text(d: Date) -> String {
    d.to_string()
}

fn optional_date_text(d: Option<Date>) -> String {
    d.map(date_text).unwrap_or_default()
}

/// A date in ISO form; empty is "not set".
fn optional_date(at: &At, text: &str) -> Result<Option<Date>, FieldError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let b = t.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    match (shaped, Date::from_str(t)) {
        (true, Ok(d)) => Ok(Some(d)),
        _ => Err(at.error(format!(
            "{t:?} is not a date: write it as YYYY-MM-DD, e.g. 2027-02-01"
        ))),
    }
}

fn required_date(at: &At, text: &str, what: &str) -> Result<Date, FieldError> {
    optional_date(at, text)?.ok_or_else(|| {
        at.error(format!(
            "{what} is missing: write the date as YYYY-MM-DD, e.g. 2027-02-01"
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

fn channel_to_wire(c: Channel) -> wire::ContactChannel {
    match c {
        Channel::Call => wire::ContactChannel::Call,
        Channel::Sms => wire::ContactChannel::Sms,
        Channel::Messaging => wire::ContactChannel::Messaging,
    }
}

fn channel_from_wire(at: &At, value: i32) -> Result<Channel, FieldError> {
    match wire::ContactChannel::try_from(value) {
        Ok(wire::ContactChannel::Call) => Ok(Channel::Call),
        Ok(wire::ContactChannel::Sms) => Ok(Channel::Sms),
        Ok(wire::ContactChannel::Messaging) => Ok(Channel::Messaging),
        _ => Err(at.error(
            "say how the child reaches this contact: CONTACT_CHANNEL_CALL, CONTACT_CHANNEL_SMS or CONTACT_CHANNEL_MESSAGING",
        )),
    }
}

fn weekday_from_wire(at: &At, value: i32) -> Result<u8, FieldError> {
    match wire::Weekday::try_from(value) {
        Ok(wire::Weekday::Unspecified) | Err(_) => Err(at.error(
            "not a day of the week: use WEEKDAY_MONDAY to WEEKDAY_SUNDAY (leave the list empty for every day)",
        )),
        // The wire numbers days as ISO 8601 does, like the domain.
        Ok(day) => u8::try_from(day as i32).map_err(|_| at.error("not a day of the week")),
    }
}

fn reason_to_wire(text: Option<&str>) -> wire::RestrictionReason {
    // A reason that is not one of the four was never accepted on a revision that restricts
    // (the domain refuses it, R19), so on any stored revision it had no effect.
    match text.map(ProtectiveReason::from_str) {
        Some(Ok(ProtectiveReason::InjuryToChild)) => wire::RestrictionReason::InjuryToChild,
        Some(Ok(ProtectiveReason::InjuryToOthers)) => wire::RestrictionReason::InjuryToOthers,
        Some(Ok(ProtectiveReason::PropertyDamage)) => wire::RestrictionReason::PropertyDamage,
        Some(Ok(ProtectiveReason::PreventOffence)) => wire::RestrictionReason::PreventOffence,
        None | Some(Err(_)) => wire::RestrictionReason::Unspecified,
    }
}

fn reason_from_wire(at: &At, value: i32) -> Result<Option<String>, FieldError> {
    let reason = match wire::RestrictionReason::try_from(value) {
        Ok(wire::RestrictionReason::Unspecified) => return Ok(None),
        Ok(wire::RestrictionReason::InjuryToChild) => ProtectiveReason::InjuryToChild,
        Ok(wire::RestrictionReason::InjuryToOthers) => ProtectiveReason::InjuryToOthers,
        Ok(wire::RestrictionReason::PropertyDamage) => ProtectiveReason::PropertyDamage,
        Ok(wire::RestrictionReason::PreventOffence) => ProtectiveReason::PreventOffence,
        Err(_) => {
            return Err(at.error(
                "not a protective reason this controller knows: use RESTRICTION_REASON_INJURY_TO_CHILD, _INJURY_TO_OTHERS, _PROPERTY_DAMAGE or _PREVENT_OFFENCE",
            ));
        }
    };
    Ok(Some(reason.as_str().to_string()))
}

fn kind_to_wire(k: AssessmentKind) -> wire::RiskAssessmentKind {
    match k {
        AssessmentKind::Planned => wire::RiskAssessmentKind::Planned,
        AssessmentKind::OnTheSpot => wire::RiskAssessmentKind::OnTheSpot,
    }
}

fn kind_from_wire(at: &At, value: i32) -> Result<AssessmentKind, FieldError> {
    match wire::RiskAssessmentKind::try_from(value) {
        Ok(wire::RiskAssessmentKind::Planned) => Ok(AssessmentKind::Planned),
        Ok(wire::RiskAssessmentKind::OnTheSpot) => Ok(AssessmentKind::OnTheSpot),
        _ => Err(at.error(
            "say whether the assessment was planned or made on the spot: RISK_ASSESSMENT_KIND_PLANNED or RISK_ASSESSMENT_KIND_ON_THE_SPOT",
        )),
    }
}

fn answer_to_wire(a: Answer) -> wire::Answer {
    match a {
        Answer::Yes => wire::Answer::Yes,
        Answer::No => wire::Answer::No,
        Answer::NotKnown => wire::Answer::NotKnown,
    }
}

// ---------------------------------------------------------------------------------------------
// The plan: domain → wire
// ---------------------------------------------------------------------------------------------

fn consult_to_wire(c: &Option<ConsultRecord>) -> Option<wire::ConsultationRecord> {
    let outcome = match c.as_ref()? {
        ConsultRecord::Consulted { who, when, notes } => {
            wire::consultation_record::Outcome::Consulted(wire::Consulted {
                who: who.clone(),
                when: date_text(*when),
                notes: notes.clone(),
            })
        }
        ConsultRecord::NotConsulted { reason } => {
            wire::consultation_record::Outcome::NotConsulted(wire::NotConsulted {
                reason: reason.clone(),
            })
        }
    };
    Some(wire::ConsultationRecord {
        outcome: Some(outcome),
    })
}

fn agreement_to_wire(a: &Agreement) -> wire::Agreement {
    wire::Agreement {
        who: a.who.clone(),
        when: date_text(a.when),
    }
}

fn arrangement_to_wire(a: &Arrangement) -> wire::Arrangement {
    wire::Arrangement {
        with_whom: a.with_whom.clone(),
        details: a.details.clone(),
        risk_assessment_id: a.risk_assessment.clone(),
        review_by: optional_date_text(a.review_by),
    }
}

/// The communication section as the wire carries it.
pub fn section_to_wire(s: &CommunicationSection) -> wire::CommunicationSection {
    use wire::{camera_permission, web_permission};
    wire::CommunicationSection {
        contacts: s
            .contacts
            .iter()
            .map(|c| wire::ContactPermission {
                name: c.name.clone(),
                relationship: c.relationship.clone(),
                addresses: c
                    .addresses
                    .iter()
                    .map(|a| wire::ContactAddress {
                        channel: channel_to_wire(a.channel) as i32,
                        address: a.address.clone(),
                        app: a.app.clone(),
                    })
                    .collect(),
                windows: c
                    .windows
                    .iter()
                    .map(|w| wire::TimeWindow {
                        start_minute: u32::from(w.start_minute),
                        end_minute: u32::from(w.end_minute),
                        weekdays: w.weekdays.iter().map(|d| i32::from(*d)).collect(),
                    })
                    .collect(),
                risk_assessment_id: c.risk_assessment.clone(),
                review_by: optional_date_text(c.review_by),
            })
            .collect(),
        camera: Some(wire::CameraPermission {
            state: Some(match &s.camera {
                CameraPermission::Off => camera_permission::State::Off(wire::CameraOff {}),
                CameraPermission::On {
                    placing_authority_agreement,
                    parent_consultation,
                    review_by,
                    risk_assessment,
                } => camera_permission::State::Allowed(wire::CameraAllowed {
                    placing_authority_agreement: Some(agreement_to_wire(
                        placing_authority_agreement,
                    )),
                    parent_consultation: Some(agreement_to_wire(parent_consultation)),
                    review_by: date_text(*review_by),
                    risk_assessment_id: risk_assessment.clone(),
                }),
            }),
        }),
        web: Some(wire::WebPermission {
            state: Some(match &s.web {
                WebPermission::Off => web_permission::State::Off(wire::WebOff {}),
                WebPermission::Filtered {
                    filter_profile,
                    risk_assessment,
                    social_sites,
                    review_by,
                } => web_permission::State::Filtered(wire::WebFiltered {
                    filter_profile: filter_profile.clone(),
                    risk_assessment_id: risk_assessment.clone(),
                    social_sites: social_sites
                        .iter()
                        .map(|site| wire::SocialSite {
                            domain: site.domain.clone(),
                            risk_assessment_id: site.risk_assessment.clone(),
                            review_by: date_text(site.review_by),
                        })
                        .collect(),
                    review_by: optional_date_text(*review_by),
                }),
            }),
        }),
        apps: Some(wire::AppPermission {
            mode: if s.apps.default_allow {
                wire::AppMode::UnlessBlocked
            } else {
                wire::AppMode::OnlyAllowed
            } as i32,
            allowed: s.apps.allowed.clone(),
            blocked: s.apps.blocked.clone(),
            risk_assessment_id: s.apps.risk_assessment.clone(),
        }),
        letters: s.letters.iter().map(arrangement_to_wire).collect(),
        face_to_face: s.face_to_face.iter().map(arrangement_to_wire).collect(),
    }
}

/// The parts of a revision staff write, as the wire carries them.
#[allow(clippy::too_many_arguments)]
fn plan_parts_to_wire(
    reason: &str,
    consultation: &Consultation,
    shared_with: &SharedWith,
    child_views: &Option<String>,
    review_by: Option<Date>,
    grounds: &Grounds,
    section: &CommunicationSection,
) -> wire::PlacementPlan {
    wire::PlacementPlan {
        reason: reason.to_string(),
        consultation: Some(wire::PlanConsultation {
            social_worker: consult_to_wire(&consultation.social_worker),
            parents: consult_to_wire(&consultation.parents),
        }),
        shared_with: Some(wire::SharedWith {
            child: shared_with.child,
            social_worker: shared_with.social_worker,
            others: shared_with.others.clone(),
        }),
        child_views: child_views.clone(),
        views_not_sought: grounds.views_not_sought.clone(),
        review_by: optional_date_text(review_by),
        protective_reason: reason_to_wire(grounds.protective_reason.as_deref()) as i32,
        evidence: grounds.evidence.clone(),
        risk_decisions: grounds
            .risk_decisions
            .iter()
            .map(|d| wire::RiskDecision {
                contact: d.contact.clone(),
                decided_by: d.decided_by.clone(),
                social_worker_agreed: d.social_worker_agreed.clone(),
                decision: d.decision.clone(),
                order_terms: d.order_terms.clone(),
            })
            .collect(),
        communication: Some(section_to_wire(section)),
    }
}

/// A stored revision as the wire carries it (who, when and its number travel beside it, in
/// `PlanRevisionRecord`).
pub fn plan_to_wire(r: &PlanRevision) -> wire::PlacementPlan {
    plan_parts_to_wire(
        &r.reason,
        &r.consultation,
        &r.shared_with,
        &r.child_views,
        r.review_by,
        &r.grounds,
        &r.section,
    )
}

/// A draft as the wire carries it (how a camera withdrawal made on the controller is shown).
pub fn draft_to_wire(d: &PlanRevisionDraft) -> wire::PlacementPlan {
    plan_parts_to_wire(
        &d.reason,
        &d.consultation,
        &d.shared_with,
        &d.child_views,
        d.review_by,
        &d.grounds,
        &d.section,
    )
}

// ---------------------------------------------------------------------------------------------
// The plan: wire → domain
// ---------------------------------------------------------------------------------------------

fn consult_from_wire(
    at: &At,
    c: &Option<wire::ConsultationRecord>,
) -> Result<Option<ConsultRecord>, FieldError> {
    use wire::consultation_record::Outcome;
    let Some(c) = c else {
        return Ok(None);
    };
    match &c.outcome {
        Some(Outcome::Consulted(x)) => {
            let here = at.field("consulted");
            Ok(Some(ConsultRecord::Consulted {
                who: x.who.clone(),
                when: required_date(&here.field("when"), &x.when, "the day they were consulted")?,
                notes: x.notes.clone(),
            }))
        }
        Some(Outcome::NotConsulted(x)) => Ok(Some(ConsultRecord::NotConsulted {
            reason: x.reason.clone(),
        })),
        None => Err(at.error(
            "say whether they were consulted (`consulted`: who and when) or not (`not_consulted`: why not), or leave the record out",
        )),
    }
}

fn agreement_from_wire(
    at: &At,
    a: &Option<wire::Agreement>,
    what: &str,
) -> Result<Agreement, FieldError> {
    let a = a.as_ref().ok_or_else(|| {
        at.error(format!(
            "the camera needs {what} on record (IM1): say who agreed it and when"
        ))
    })?;
    Ok(Agreement {
        who: a.who.clone(),
        when: required_date(&at.field("when"), &a.when, "the day it was agreed")?,
    })
}

fn arrangement_from_wire(at: &At, a: &wire::Arrangement) -> Result<Arrangement, FieldError> {
    Ok(Arrangement {
        with_whom: a.with_whom.clone(),
        details: a.details.clone(),
        risk_assessment: a.risk_assessment_id.clone(),
        review_by: optional_date(&at.field("review_by"), &a.review_by)?,
    })
}

fn minute(at: &At, value: u32) -> Result<u16, FieldError> {
    u16::try_from(value).map_err(|_| {
        at.error(format!(
            "{value} is not a time of day: give minutes after midnight, 0 to 1440 (960 is 4pm)"
        ))
    })
}

fn contact_from_wire(
    at: &At,
    c: &wire::ContactPermission,
) -> Result<ContactPermission, FieldError> {
    let mut addresses = Vec::with_capacity(c.addresses.len());
    for (i, a) in c.addresses.iter().enumerate() {
        let here = at.field("addresses").index(i);
        addresses.push(ContactAddress {
            channel: channel_from_wire(&here.field("channel"), a.channel)?,
            address: a.address.clone(),
            app: a.app.clone(),
        });
    }
    let mut windows = Vec::with_capacity(c.windows.len());
    for (i, w) in c.windows.iter().enumerate() {
        let here = at.field("windows").index(i);
        let mut weekdays = Vec::with_capacity(w.weekdays.len());
        for (j, d) in w.weekdays.iter().enumerate() {
            weekdays.push(weekday_from_wire(&here.field("weekdays").index(j), *d)?);
        }
        windows.push(TimeWindow {
            start_minute: minute(&here.field("start_minute"), w.start_minute)?,
            end_minute: minute(&here.field("end_minute"), w.end_minute)?,
            weekdays,
        });
    }
    Ok(ContactPermission {
        name: c.name.clone(),
        relationship: c.relationship.clone(),
        addresses,
        windows,
        risk_assessment: c.risk_assessment_id.clone(),
        review_by: optional_date(&at.field("review_by"), &c.review_by)?,
    })
}

/// The communication section from the wire; unset parts are the safe defaults.
fn section_from_wire(
    at: &At,
    s: &Option<wire::CommunicationSection>,
) -> Result<CommunicationSection, FieldError> {
    use wire::{camera_permission, web_permission};
    let Some(s) = s else {
        return Ok(CommunicationSection::default());
    };
    let mut contacts = Vec::with_capacity(s.contacts.len());
    for (i, c) in s.contacts.iter().enumerate() {
        contacts.push(contact_from_wire(&at.field("contacts").index(i), c)?);
    }
    let camera_at = at.field("camera");
    let camera = match s.camera.as_ref().and_then(|c| c.state.as_ref()) {
        None | Some(camera_permission::State::Off(_)) => CameraPermission::Off,
        Some(camera_permission::State::Allowed(on)) => {
            let here = camera_at.field("allowed");
            CameraPermission::On {
                placing_authority_agreement: agreement_from_wire(
                    &here.field("placing_authority_agreement"),
                    &on.placing_authority_agreement,
                    "the placing authority's agreement",
                )?,
                parent_consultation: agreement_from_wire(
                    &here.field("parent_consultation"),
                    &on.parent_consultation,
                    "the consultation with the parents (or person with Parental Responsibility)",
                )?,
                review_by: required_date(
                    &here.field("review_by"),
                    &on.review_by,
                    "the camera's review date (IM3)",
                )?,
                risk_assessment: on.risk_assessment_id.clone(),
            }
        }
    };
    let web_at = at.field("web");
    let web = match s.web.as_ref().and_then(|w| w.state.as_ref()) {
        None | Some(web_permission::State::Off(_)) => WebPermission::Off,
        Some(web_permission::State::Filtered(f)) => {
            let here = web_at.field("filtered");
            let mut social_sites = Vec::with_capacity(f.social_sites.len());
            for (i, site) in f.social_sites.iter().enumerate() {
                let there = here.field("social_sites").index(i);
                social_sites.push(SocialSite {
                    domain: site.domain.clone(),
                    risk_assessment: site.risk_assessment_id.clone(),
                    review_by: required_date(
                        &there.field("review_by"),
                        &site.review_by,
                        "the site's review date (WB2)",
                    )?,
                });
            }
            WebPermission::Filtered {
                filter_profile: f.filter_profile.clone(),
                risk_assessment: f.risk_assessment_id.clone(),
                social_sites,
                review_by: optional_date(&here.field("review_by"), &f.review_by)?,
            }
        }
    };
    let apps = match &s.apps {
        None => AppPermission::default(),
        Some(a) => AppPermission {
            default_allow: match wire::AppMode::try_from(a.mode) {
                Ok(wire::AppMode::UnlessBlocked) => true,
                Ok(wire::AppMode::OnlyAllowed) => false,
                _ => {
                    return Err(at.field("apps").field("mode").error(
                        "say whether apps run unless blocked or only when allowed: APP_MODE_UNLESS_BLOCKED or APP_MODE_ONLY_ALLOWED",
                    ));
                }
            },
            allowed: a.allowed.clone(),
            blocked: a.blocked.clone(),
            risk_assessment: a.risk_assessment_id.clone(),
        },
    };
    let mut letters = Vec::with_capacity(s.letters.len());
    for (i, a) in s.letters.iter().enumerate() {
        letters.push(arrangement_from_wire(&at.field("letters").index(i), a)?);
    }
    let mut face_to_face = Vec::with_capacity(s.face_to_face.len());
    for (i, a) in s.face_to_face.iter().enumerate() {
        face_to_face.push(arrangement_from_wire(
            &at.field("face_to_face").index(i),
            a,
        )?);
    }
    Ok(CommunicationSection {
        contacts,
        camera,
        web,
        apps,
        letters,
        face_to_face,
    })
}

/// A revision as a client sent it (at `field` in the request), with what only the controller
/// may fill in: the child, who made it (from their token) and when. The domain's rules are
/// checked afterwards, by `plan::validate_revision`.
pub fn plan_from_wire(
    field: &str,
    plan: &wire::PlacementPlan,
    child_id: &str,
    made_by: &str,
    made_at: UnixMillis,
) -> Result<PlanRevisionDraft, FieldError> {
    let at = At(field.to_string());
    let consultation = match &plan.consultation {
        None => Consultation::default(),
        Some(c) => {
            let here = at.field("consultation");
            Consultation {
                social_worker: consult_from_wire(&here.field("social_worker"), &c.social_worker)?,
                parents: consult_from_wire(&here.field("parents"), &c.parents)?,
            }
        }
    };
    let shared_with = plan
        .shared_with
        .as_ref()
        .map(|s| SharedWith {
            child: s.child,
            social_worker: s.social_worker,
            others: s.others.clone(),
        })
        .unwrap_or_default();
    Ok(PlanRevisionDraft {
        child_id: child_id.to_string(),
        made_by: made_by.to_string(),
        made_at,
        reason: plan.reason.clone(),
        consultation,
        shared_with,
        child_views: plan.child_views.clone(),
        review_by: optional_date(&at.field("review_by"), &plan.review_by)?,
        grounds: Grounds {
            protective_reason: reason_from_wire(
                &at.field("protective_reason"),
                plan.protective_reason,
            )?,
            evidence: plan.evidence.clone(),
            risk_decisions: plan
                .risk_decisions
                .iter()
                .map(|d| RiskDecision {
                    contact: d.contact.clone(),
                    decided_by: d.decided_by.clone(),
                    social_worker_agreed: d.social_worker_agreed.clone(),
                    decision: d.decision.clone(),
                    order_terms: d.order_terms.clone(),
                })
                .collect(),
            views_not_sought: plan.views_not_sought.clone(),
        },
        section: section_from_wire(&at.field("communication"), &plan.communication)?,
    })
}

/// A stored revision read back: the wire form with what the record keeps beside it.
pub fn revision_from_wire(
    plan: &wire::PlacementPlan,
    number: u32,
    child_id: &str,
    made_by: &str,
    made_at: UnixMillis,
) -> Result<PlanRevision, FieldError> {
    let draft = plan_from_wire(PLAN_FIELD, plan, child_id, made_by, made_at)?;
    let mut revision = PlanRevision::next(None, draft);
    revision.number = number;
    Ok(revision)
}

// ---------------------------------------------------------------------------------------------
// Risk assessments
// ---------------------------------------------------------------------------------------------

fn answered_to_wire(a: &Answered) -> wire::ChecklistAnswer {
    wire::ChecklistAnswer {
        answer: answer_to_wire(a.answer) as i32,
        notes: a.notes.clone(),
    }
}

fn checklist_slot(c: &wire::RiskChecklist, q: Question) -> &Option<wire::ChecklistAnswer> {
    match q {
        Question::ContactOrder => &c.contact_order,
        Question::ProtectionPlanOrChildInNeed => &c.protection_plan_or_child_in_need,
        Question::CarePlanPlacementPlanOrChronology => &c.care_plan_placement_plan_or_chronology,
        Question::ParentsConsultedOrConsented => &c.parents_consulted_or_consented,
        Question::ContactKnown => &c.contact_known,
        Question::ContactIsAdult => &c.contact_is_adult,
        Question::ContactPosesRisk => &c.contact_poses_risk,
        Question::ChildMayBeHarmed => &c.child_may_be_harmed,
        Question::ChildMayHarmOthers => &c.child_may_harm_others,
    }
}

fn question_field(q: Question) -> &'static str {
    match q {
        Question::ContactOrder => "contact_order",
        Question::ProtectionPlanOrChildInNeed => "protection_plan_or_child_in_need",
        Question::CarePlanPlacementPlanOrChronology => "care_plan_placement_plan_or_chronology",
        Question::ParentsConsultedOrConsented => "parents_consulted_or_consented",
        Question::ContactKnown => "contact_known",
        Question::ContactIsAdult => "contact_is_adult",
        Question::ContactPosesRisk => "contact_poses_risk",
        Question::ChildMayBeHarmed => "child_may_be_harmed",
        Question::ChildMayHarmOthers => "child_may_harm_others",
    }
}

/// A complete assessment as the wire carries it (its id, child, author and time travel
/// beside it, in `RiskAssessmentRecord`).
pub fn risk_to_wire(ra: &RiskAssessment) -> wire::RiskAssessment {
    let c = &ra.checklist;
    wire::RiskAssessment {
        kind: kind_to_wire(ra.kind) as i32,
        considerations: Some(wire::RiskConsiderations {
            background: ra.considerations.background.clone(),
            circumstances_on_the_day: ra.considerations.circumstances_on_the_day.clone(),
            risks_to_or_from_contacts: ra.considerations.risks_to_or_from_contacts.clone(),
        }),
        checklist: Some(wire::RiskChecklist {
            contact_order: Some(answered_to_wire(&c.contact_order)),
            protection_plan_or_child_in_need: Some(answered_to_wire(
                &c.protection_plan_or_child_in_need,
            )),
            care_plan_placement_plan_or_chronology: Some(answered_to_wire(
                &c.care_plan_placement_plan_or_chronology,
            )),
            parents_consulted_or_consented: Some(answered_to_wire(
                &c.parents_consulted_or_consented,
            )),
            contact_known: Some(answered_to_wire(&c.contact_known)),
            contact_is_adult: Some(answered_to_wire(&c.contact_is_adult)),
            contact_poses_risk: Some(answered_to_wire(&c.contact_poses_risk)),
            child_may_be_harmed: Some(answered_to_wire(&c.child_may_be_harmed)),
            child_may_harm_others: Some(answered_to_wire(&c.child_may_harm_others)),
        }),
        outcome: ra.outcome.clone(),
        review_by: date_text(ra.review_by),
        participants: Some(wire::RiskParticipants {
            social_worker: ra.participants.social_worker.clone(),
            it_specialist: ra.participants.it_specialist.clone(),
            manager: ra.participants.manager.clone(),
        }),
    }
}

/// An assessment as a client sent it (at `field` in the request), with what only the
/// controller may fill in. A question left out (or answered `ANSWER_UNSPECIFIED`) stays
/// unanswered, so the domain's GD2 refusal names every one missing.
pub fn risk_from_wire(
    field: &str,
    ra: &wire::RiskAssessment,
    id: &str,
    child_id: &str,
    author: &str,
    made_at: UnixMillis,
) -> Result<RiskAssessmentDraft, FieldError> {
    let at = At(field.to_string());
    let mut checklist = ChecklistDraft::default();
    if let Some(c) = &ra.checklist {
        let here = at.field("checklist");
        for q in Question::ALL {
            let Some(item) = checklist_slot(c, q) else {
                continue;
            };
            let answer = match wire::Answer::try_from(item.answer) {
                Ok(wire::Answer::Unspecified) => continue,
                Ok(wire::Answer::Yes) => Answer::Yes,
                Ok(wire::Answer::No) => Answer::No,
                Ok(wire::Answer::NotKnown) => Answer::NotKnown,
                Err(_) => {
                    return Err(here.field(question_field(q)).field("answer").error(
                        "not an answer this controller knows: use ANSWER_YES, ANSWER_NO or ANSWER_NOT_KNOWN",
                    ));
                }
            };
            checklist.set(
                q,
                Answered {
                    answer,
                    notes: item.notes.clone(),
                },
            );
        }
    }
    let considerations = ra
        .considerations
        .as_ref()
        .map(|c| Considerations {
            background: c.background.clone(),
            circumstances_on_the_day: c.circumstances_on_the_day.clone(),
            risks_to_or_from_contacts: c.risks_to_or_from_contacts.clone(),
        })
        .unwrap_or_default();
    let participants = ra
        .participants
        .as_ref()
        .map(|p| Participants {
            social_worker: p.social_worker.clone(),
            it_specialist: p.it_specialist.clone(),
            manager: p.manager.clone(),
        })
        .unwrap_or_default();
    Ok(RiskAssessmentDraft {
        id: id.to_string(),
        child_id: child_id.to_string(),
        kind: kind_from_wire(&at.field("kind"), ra.kind)?,
        author: author.to_string(),
        made_at,
        considerations,
        checklist,
        outcome: ra.outcome.clone(),
        review_by: optional_date(&at.field("review_by"), &ra.review_by)?,
        participants,
    })
}

/// A stored assessment read back. Stored assessments are complete, so anything missing is
/// named like a bad request would be.
pub fn assessment_from_wire(
    ra: &wire::RiskAssessment,
    id: &str,
    child_id: &str,
    author: &str,
    made_at: UnixMillis,
) -> Result<RiskAssessment, FieldError> {
    let at = At(RISK_FIELD.to_string());
    let draft = risk_from_wire(RISK_FIELD, ra, id, child_id, author, made_at)?;
    let answered = |q: Question| {
        draft.checklist.get(q).cloned().ok_or_else(|| {
            at.field("checklist")
                .field(question_field(q))
                .error("not answered")
        })
    };
    let checklist = Checklist {
        contact_order: answered(Question::ContactOrder)?,
        protection_plan_or_child_in_need: answered(Question::ProtectionPlanOrChildInNeed)?,
        care_plan_placement_plan_or_chronology: answered(
            Question::CarePlanPlacementPlanOrChronology,
        )?,
        parents_consulted_or_consented: answered(Question::ParentsConsultedOrConsented)?,
        contact_known: answered(Question::ContactKnown)?,
        contact_is_adult: answered(Question::ContactIsAdult)?,
        contact_poses_risk: answered(Question::ContactPosesRisk)?,
        child_may_be_harmed: answered(Question::ChildMayBeHarmed)?,
        child_may_harm_others: answered(Question::ChildMayHarmOthers)?,
    };
    let review_by = draft
        .review_by
        .ok_or_else(|| at.field("review_by").error("not set"))?;
    Ok(RiskAssessment {
        id: draft.id,
        child_id: draft.child_id,
        kind: draft.kind,
        author: draft.author,
        made_at: draft.made_at,
        considerations: draft.considerations,
        checklist,
        outcome: draft.outcome,
        review_by,
        participants: draft.participants,
    })
}

// ---------------------------------------------------------------------------------------------
// The stored form
// ---------------------------------------------------------------------------------------------

/// The form in which the store keeps plan revisions and risk assessments (its
/// `format_version` column).
///
/// Format 2 (issue 15): the text is the base64 (standard alphabet, padded) of the protobuf
/// encoding of `PlacementPlan` or `RiskAssessment`; which child, who, when and the revision
/// number are the columns beside it. It changes only as `plan.proto` does, by its
/// compatibility rules, never because a Rust field was renamed.
///
/// Format 1 (before): the domain's serde JSON. Its texts are JSON objects, so they start with
/// `{`, which base64 never contains: a reader needs only the text. The store rewrites format
/// 1 rows to format 2 when it opens ([`upgrade_stored_plan`]); one that would not come back
/// the same stays as it is and is still read.
pub const STORED_FORMAT: i64 = 2;

/// Why a stored document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("not a protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("format 1 JSON the domain cannot read: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("the revision number {0} is out of range")]
    Number(u64),
}

fn is_format_1(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

fn from_base64(text: &str) -> Result<Vec<u8>, StoredError> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(text.trim())?)
}

fn to_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A revision in its stored form (format 2).
pub fn store_plan(r: &PlanRevision) -> String {
    use prost::Message as _;
    to_base64(&plan_to_wire(r).encode_to_vec())
}

/// An assessment in its stored form (format 2).
pub fn store_assessment(ra: &RiskAssessment) -> String {
    use prost::Message as _;
    to_base64(&risk_to_wire(ra).encode_to_vec())
}

/// A stored revision, with the columns kept beside it.
pub fn read_stored_plan(
    text: &str,
    number: u64,
    child_id: &str,
    made_by: &str,
    made_at: UnixMillis,
) -> Result<PlanRevision, StoredError> {
    use prost::Message as _;
    if is_format_1(text) {
        return Ok(serde_json::from_str(text)?);
    }
    let plan = wire::PlacementPlan::decode(from_base64(text)?.as_slice())?;
    let number = u32::try_from(number).map_err(|_| StoredError::Number(number))?;
    Ok(revision_from_wire(
        &plan, number, child_id, made_by, made_at,
    )?)
}

/// The communication section of a stored revision (all a policy needs).
pub fn read_stored_section(text: &str) -> Result<CommunicationSection, StoredError> {
    Ok(read_stored_plan(text, 1, "", "", 0)?.section)
}

/// A stored assessment, with the columns kept beside it.
pub fn read_stored_assessment(
    text: &str,
    id: &str,
    child_id: &str,
    made_by: &str,
    made_at: UnixMillis,
) -> Result<RiskAssessment, StoredError> {
    use prost::Message as _;
    if is_format_1(text) {
        return Ok(serde_json::from_str(text)?);
    }
    let ra = wire::RiskAssessment::decode(from_base64(text)?.as_slice())?;
    Ok(assessment_from_wire(&ra, id, child_id, made_by, made_at)?)
}

/// A format 1 revision in format 2, when it reads back exactly the same with its columns;
/// `None` leaves the row as it is.
pub fn upgrade_stored_plan(
    json: &str,
    number: u64,
    child_id: &str,
    made_by: &str,
    made_at: UnixMillis,
) -> Option<String> {
    let old: PlanRevision = serde_json::from_str(json).ok()?;
    let text = store_plan(&old);
    let again = read_stored_plan(&text, number, child_id, made_by, made_at).ok()?;
    (again == old).then_some(text)
}

/// A format 1 assessment in format 2, when it reads back exactly the same with its columns;
/// `None` leaves the row as it is.
pub fn upgrade_stored_assessment(
    json: &str,
    id: &str,
    child_id: &str,
    made_by: &str,
    made_at: UnixMillis,
) -> Option<String> {
    let old: RiskAssessment = serde_json::from_str(json).ok()?;
    let text = store_assessment(&old);
    let again = read_stored_assessment(&text, id, child_id, made_by, made_at).ok()?;
    (again == old).then_some(text)
}

#[cfg(test)]
#[path = "plan_wire_tests.rs"]
mod tests;
