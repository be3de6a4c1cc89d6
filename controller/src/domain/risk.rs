//! Risk assessments: the record that must exist before a child may communicate with anyone,
//! in any way (KP2), weighing the three considerations of GD1 and answering every question of
//! the GD2 checklist.
//!
//! A draft is what staff typed; [`validate_risk_assessment`] turns it into a
//! [`RiskAssessment`] only when nothing is missing, so a stored assessment is always complete.

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::UnixMillis;

/// Why Haven will not accept a record, as one line saying what is missing and what to do.
/// `clause` names the policy clause the refusal enforces, for tests and for the audit trail;
/// it is not part of the words a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub clause: &'static str,
    pub message: String,
    /// The stable reason programs read (`domain::reasons`); `RULE_NOT_MET` unless a more
    /// precise one is given with [`Refusal::because`].
    pub reason: &'static str,
}

impl Refusal {
    pub fn new(clause: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            clause,
            message: message.into(),
            reason: super::reasons::RULE_NOT_MET,
        }
    }

    /// The same refusal with a more precise reason.
    pub fn because(self, reason: &'static str) -> Self {
        Refusal { reason, ..self }
    }
}

/// Planned ahead, or made "on the spot" when a situation arose (the policy allows both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssessmentKind {
    Planned,
    OnTheSpot,
}

/// An answer to one checklist question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Yes,
    No,
    NotKnown,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Yes => "yes",
            Answer::No => "no",
            Answer::NotKnown => "not known",
        }
    }
}

/// An answer with the assessor's notes on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answered {
    pub answer: Answer,
    #[serde(default)]
    pub notes: String,
}

/// The questions of the GD2 checklist. "Is the contact known, an adult, a risk?" is asked as
/// three questions, because GD3 acts on "not known" and "poses a risk" separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    ContactOrder,
    ProtectionPlanOrChildInNeed,
    CarePlanPlacementPlanOrChronology,
    ParentsConsultedOrConsented,
    ContactKnown,
    ContactIsAdult,
    ContactPosesRisk,
    ChildMayBeHarmed,
    ChildMayHarmOthers,
}

impl Question {
    /// Every question, in the order the policy asks them.
    pub const ALL: [Question; 9] = [
        Question::ContactOrder,
        Question::ProtectionPlanOrChildInNeed,
        Question::CarePlanPlacementPlanOrChronology,
        Question::ParentsConsultedOrConsented,
        Question::ContactKnown,
        Question::ContactIsAdult,
        Question::ContactPosesRisk,
        Question::ChildMayBeHarmed,
        Question::ChildMayHarmOthers,
    ];

    /// The question as the policy puts it.
    pub fn text(self) -> &'static str {
        match self {
            Question::ContactOrder => {
                "Is there a Contact Order in force for the child or a member of their family?"
            }
            Question::ProtectionPlanOrChildInNeed => {
                "Is the child, or the person they communicate with, subject to a Child Protection Plan or a Child in Need plan?"
            }
            Question::CarePlanPlacementPlanOrChronology => {
                "Does anything in the Care Plan, Placement Plan or chronology show the child or others may be at risk?"
            }
            Question::ParentsConsultedOrConsented => {
                "Have the parents been consulted about the arrangements, or given consent?"
            }
            Question::ContactKnown => "Is the person being communicated with known?",
            Question::ContactIsAdult => "Is the person being communicated with an adult?",
            Question::ContactPosesRisk => "Does the person being communicated with pose any risk?",
            Question::ChildMayBeHarmed => {
                "Is there any risk the child is being, or may be, bullied, mistreated or abused?"
            }
            Question::ChildMayHarmOthers => {
                "Is there any risk the child may use the communication to bully or mistreat others, or to commit a crime?"
            }
        }
    }

    /// A short name for a refusal: "the question about …".
    pub fn short(self) -> &'static str {
        match self {
            Question::ContactOrder => "a Contact Order",
            Question::ProtectionPlanOrChildInNeed => {
                "a Child Protection Plan or Child in Need plan"
            }
            Question::CarePlanPlacementPlanOrChronology => {
                "the Care Plan, Placement Plan or chronology"
            }
            Question::ParentsConsultedOrConsented => "whether the parents were consulted",
            Question::ContactKnown => "whether the contact is known",
            Question::ContactIsAdult => "whether the contact is an adult",
            Question::ContactPosesRisk => "whether the contact poses a risk",
            Question::ChildMayBeHarmed => "the risk of the child being bullied or abused",
            Question::ChildMayHarmOthers => {
                "the risk of the child bullying others or committing a crime"
            }
        }
    }
}

/// The three considerations of GD1, in the assessor's words.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Considerations {
    pub background: String,
    pub circumstances_on_the_day: String,
    pub risks_to_or_from_contacts: String,
}

/// The checklist as typed: a question not yet answered is `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistDraft {
    pub contact_order: Option<Answered>,
    pub protection_plan_or_child_in_need: Option<Answered>,
    pub care_plan_placement_plan_or_chronology: Option<Answered>,
    pub parents_consulted_or_consented: Option<Answered>,
    pub contact_known: Option<Answered>,
    pub contact_is_adult: Option<Answered>,
    pub contact_poses_risk: Option<Answered>,
    pub child_may_be_harmed: Option<Answered>,
    pub child_may_harm_others: Option<Answered>,
}

impl ChecklistDraft {
    pub fn get(&self, q: Question) -> Option<&Answered> {
        match q {
            Question::ContactOrder => self.contact_order.as_ref(),
            Question::ProtectionPlanOrChildInNeed => self.protection_plan_or_child_in_need.as_ref(),
            Question::CarePlanPlacementPlanOrChronology => {
                self.care_plan_placement_plan_or_chronology.as_ref()
            }
            Question::ParentsConsultedOrConsented => self.parents_consulted_or_consented.as_ref(),
            Question::ContactKnown => self.contact_known.as_ref(),
            Question::ContactIsAdult => self.contact_is_adult.as_ref(),
            Question::ContactPosesRisk => self.contact_poses_risk.as_ref(),
            Question::ChildMayBeHarmed => self.child_may_be_harmed.as_ref(),
            Question::ChildMayHarmOthers => self.child_may_harm_others.as_ref(),
        }
    }

    /// Sets the answer to one question (how a command line fills the draft in).
    pub fn set(&mut self, q: Question, a: Answered) {
        let slot = match q {
            Question::ContactOrder => &mut self.contact_order,
            Question::ProtectionPlanOrChildInNeed => &mut self.protection_plan_or_child_in_need,
            Question::CarePlanPlacementPlanOrChronology => {
                &mut self.care_plan_placement_plan_or_chronology
            }
            Question::ParentsConsultedOrConsented => &mut self.parents_consulted_or_consented,
            Question::ContactKnown => &mut self.contact_known,
            Question::ContactIsAdult => &mut self.contact_is_adult,
            Question::ContactPosesRisk => &mut self.contact_poses_risk,
            Question::ChildMayBeHarmed => &mut self.child_may_be_harmed,
            Question::ChildMayHarmOthers => &mut self.child_may_harm_others,
        };
        *slot = Some(a);
    }
}

/// The checklist with every question answered (GD2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checklist {
    pub contact_order: Answered,
    pub protection_plan_or_child_in_need: Answered,
    pub care_plan_placement_plan_or_chronology: Answered,
    pub parents_consulted_or_consented: Answered,
    pub contact_known: Answered,
    pub contact_is_adult: Answered,
    pub contact_poses_risk: Answered,
    pub child_may_be_harmed: Answered,
    pub child_may_harm_others: Answered,
}

impl Checklist {
    pub fn get(&self, q: Question) -> &Answered {
        match q {
            Question::ContactOrder => &self.contact_order,
            Question::ProtectionPlanOrChildInNeed => &self.protection_plan_or_child_in_need,
            Question::CarePlanPlacementPlanOrChronology => {
                &self.care_plan_placement_plan_or_chronology
            }
            Question::ParentsConsultedOrConsented => &self.parents_consulted_or_consented,
            Question::ContactKnown => &self.contact_known,
            Question::ContactIsAdult => &self.contact_is_adult,
            Question::ContactPosesRisk => &self.contact_poses_risk,
            Question::ChildMayBeHarmed => &self.child_may_be_harmed,
            Question::ChildMayHarmOthers => &self.child_may_harm_others,
        }
    }
}

/// Who took part in the assessment. WB2 needs both a social worker and an IT specialist for a
/// social networking site, so their names are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participants {
    pub social_worker: Option<String>,
    pub it_specialist: Option<String>,
    pub manager: Option<String>,
}

fn named(who: &Option<String>) -> bool {
    who.as_deref().is_some_and(|w| !w.trim().is_empty())
}

impl Participants {
    pub fn social_worker_took_part(&self) -> bool {
        named(&self.social_worker)
    }
    pub fn it_specialist_took_part(&self) -> bool {
        named(&self.it_specialist)
    }
    pub fn manager_took_part(&self) -> bool {
        named(&self.manager)
    }
}

/// A risk assessment as staff typed it, before it is checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAssessmentDraft {
    pub id: String,
    pub child_id: String,
    pub kind: AssessmentKind,
    /// The staff id of the person who made it (records are signed, R36).
    pub author: String,
    pub made_at: UnixMillis,
    pub considerations: Considerations,
    pub checklist: ChecklistDraft,
    pub outcome: String,
    pub review_by: Option<Date>,
    pub participants: Participants,
}

/// A complete risk assessment: every consideration weighed and every question answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskAssessment {
    pub id: String,
    pub child_id: String,
    pub kind: AssessmentKind,
    pub author: String,
    pub made_at: UnixMillis,
    pub considerations: Considerations,
    pub checklist: Checklist,
    pub outcome: String,
    pub review_by: Date,
    pub participants: Participants,
}

/// What the checklist says about the person being communicated with that GD3 must act on:
/// limit or withdraw contact and consult a manager at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactConcern {
    /// The person is not known (answered "no").
    NotKnown,
    /// Nobody could say whether the person is known ("not known").
    KnownUnclear,
    /// The person poses a risk (answered "yes").
    PosesRisk,
    /// Nobody could say whether the person poses a risk ("not known").
    RiskUnclear,
}

impl ContactConcern {
    pub fn describe(self) -> &'static str {
        match self {
            ContactConcern::NotKnown => "the person is not known",
            ContactConcern::KnownUnclear => "it is not known who the person is",
            ContactConcern::PosesRisk => "the person poses a risk",
            ContactConcern::RiskUnclear => "it is not known whether the person poses a risk",
        }
    }
}

impl RiskAssessment {
    /// The GD3 concerns this assessment records about the contact; empty when the contact is
    /// known and poses no risk.
    pub fn contact_concerns(&self) -> Vec<ContactConcern> {
        let mut out = Vec::new();
        match self.checklist.contact_known.answer {
            Answer::No => out.push(ContactConcern::NotKnown),
            Answer::NotKnown => out.push(ContactConcern::KnownUnclear),
            Answer::Yes => {}
        }
        match self.checklist.contact_poses_risk.answer {
            Answer::Yes => out.push(ContactConcern::PosesRisk),
            Answer::NotKnown => out.push(ContactConcern::RiskUnclear),
            Answer::No => {}
        }
        out
    }

    /// Whether GD3 applies: the contact is unknown or may pose a risk.
    pub fn contact_is_unknown_or_a_risk(&self) -> bool {
        !self.contact_concerns().is_empty()
    }

    /// Whether the assessment is the "full" one WB2 asks for before a social networking site:
    /// a social worker and an IT specialist both took part.
    pub fn fit_for_social_networking(&self) -> bool {
        self.participants.social_worker_took_part() && self.participants.it_specialist_took_part()
    }
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Checks a draft and returns the complete assessment, or the first thing missing.
///
/// `today` is the date in the home's time zone; the caller passes it because the domain does
/// not read the clock.
pub fn validate_risk_assessment(
    draft: &RiskAssessmentDraft,
    today: Date,
) -> Result<RiskAssessment, Refusal> {
    if blank(&draft.id) {
        return Err(Refusal::new(
            "R36",
            "the risk assessment has no id: give it one",
        ));
    }
    if blank(&draft.child_id) {
        return Err(Refusal::new(
            "KP2",
            "the risk assessment does not say which child it is for: name the child",
        ));
    }
    if blank(&draft.author) {
        return Err(Refusal::new(
            "R36",
            "the risk assessment has no author: records are signed by the person who made them",
        ));
    }
    let c = &draft.considerations;
    for (text, what) in [
        (&c.background, "the child's background"),
        (&c.circumstances_on_the_day, "the circumstances on the day"),
        (
            &c.risks_to_or_from_contacts,
            "the risks posed by or to the people the child will communicate with",
        ),
    ] {
        if blank(text) {
            return Err(Refusal::new(
                "GD1",
                format!("the risk assessment does not weigh {what}: write what was considered"),
            ));
        }
    }
    let mut missing: Vec<&str> = Vec::new();
    for q in Question::ALL {
        if draft.checklist.get(q).is_none() {
            missing.push(q.short());
        }
    }
    if !missing.is_empty() {
        let n = missing.len();
        return Err(Refusal::new(
            "GD2",
            format!(
                "{n} checklist question{} not answered ({}): answer each one yes, no or not known",
                if n == 1 { " is" } else { "s are" },
                missing.join("; ")
            ),
        ));
    }
    if blank(&draft.outcome) {
        return Err(Refusal::new(
            "KP2",
            "the risk assessment has no outcome: write what was decided and why",
        ));
    }
    let Some(review_by) = draft.review_by else {
        return Err(Refusal::new(
            "KP1",
            "the risk assessment has no review date: set the date it must be looked at again",
        ));
    };
    if review_by < today {
        return Err(Refusal::new(
            "KP1",
            format!(
                "the review date {review_by} is in the past: choose today ({today}) or a later date"
            ),
        ));
    }
    let answered = |q: Question| draft.checklist.get(q).cloned();
    // Every question was checked above; `ok_or` keeps this free of panics all the same.
    let complete = (|| {
        Some(Checklist {
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
        })
    })()
    .ok_or_else(|| {
        Refusal::new(
            "GD2",
            "a checklist question is not answered: answer each one yes, no or not known",
        )
    })?;
    Ok(RiskAssessment {
        id: draft.id.trim().to_string(),
        child_id: draft.child_id.trim().to_string(),
        kind: draft.kind,
        author: draft.author.trim().to_string(),
        made_at: draft.made_at,
        considerations: Considerations {
            background: c.background.trim().to_string(),
            circumstances_on_the_day: c.circumstances_on_the_day.trim().to_string(),
            risks_to_or_from_contacts: c.risks_to_or_from_contacts.trim().to_string(),
        },
        checklist: complete,
        outcome: draft.outcome.trim().to_string(),
        review_by,
        participants: draft.participants.clone(),
    })
}

/// A complete, valid assessment for tests in this and the neighbouring modules.
#[cfg(test)]
pub(crate) fn sample_draft(id: &str, child_id: &str) -> RiskAssessmentDraft {
    let yes_no = |a| {
        Some(Answered {
            answer: a,
            notes: String::new(),
        })
    };
    RiskAssessmentDraft {
        id: id.into(),
        child_id: child_id.into(),
        kind: AssessmentKind::Planned,
        author: "stf-manager".into(),
        made_at: 1_700_000_000_000,
        considerations: Considerations {
            background: "Close to her grandmother; no concerns on file.".into(),
            circumstances_on_the_day: "Settled at school this week.".into(),
            risks_to_or_from_contacts: "None known; Nan is a protective adult.".into(),
        },
        checklist: ChecklistDraft {
            contact_order: yes_no(Answer::No),
            protection_plan_or_child_in_need: yes_no(Answer::No),
            care_plan_placement_plan_or_chronology: yes_no(Answer::No),
            parents_consulted_or_consented: yes_no(Answer::Yes),
            contact_known: yes_no(Answer::Yes),
            contact_is_adult: yes_no(Answer::Yes),
            contact_poses_risk: yes_no(Answer::No),
            child_may_be_harmed: yes_no(Answer::No),
            child_may_harm_others: yes_no(Answer::No),
        },
        outcome: "Calls and texts with Nan after school.".into(),
        review_by: Some(jiff::civil::date(2027, 6, 1)),
        participants: Participants {
            social_worker: Some("Priya Shah".into()),
            it_specialist: None,
            manager: Some("Jo Reed".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn today() -> Date {
        date(2026, 11, 28)
    }

    #[test]
    fn a_complete_assessment_is_accepted() {
        let ra = validate_risk_assessment(&sample_draft("ra-1", "chd-1"), today()).unwrap();
        assert_eq!(ra.review_by, date(2027, 6, 1));
        assert!(!ra.contact_is_unknown_or_a_risk());
        assert!(!ra.fit_for_social_networking());
    }

    // clause GD1
    #[test]
    fn gd1_each_consideration_must_be_weighed() {
        for i in 0..3 {
            let mut d = sample_draft("ra-1", "chd-1");
            match i {
                0 => d.considerations.background = "  ".into(),
                1 => d.considerations.circumstances_on_the_day.clear(),
                _ => d.considerations.risks_to_or_from_contacts.clear(),
            }
            let r = validate_risk_assessment(&d, today()).unwrap_err();
            assert_eq!(r.clause, "GD1");
            assert!(!r.message.contains('\n'));
            assert!(r.message.contains("does not weigh"), "{r}");
        }
    }

    // clause GD2
    #[test]
    fn gd2_every_checklist_question_must_be_answered() {
        let mut d = sample_draft("ra-1", "chd-1");
        d.checklist.contact_poses_risk = None;
        d.checklist.contact_order = None;
        let r = validate_risk_assessment(&d, today()).unwrap_err();
        assert_eq!(r.clause, "GD2");
        assert!(
            r.message
                .starts_with("2 checklist questions are not answered"),
            "{r}"
        );
        assert!(r.message.contains("a Contact Order"));
        assert!(r.message.contains("whether the contact poses a risk"));

        let mut d = sample_draft("ra-1", "chd-1");
        d.checklist = ChecklistDraft::default();
        let r = validate_risk_assessment(&d, today()).unwrap_err();
        assert!(r.message.starts_with("9 checklist questions"), "{r}");
    }

    // clause GD2: every question in the policy's list has a slot in the checklist.
    #[test]
    fn gd2_the_checklist_asks_every_question_of_the_policy() {
        let mut d = ChecklistDraft::default();
        for q in Question::ALL {
            assert!(d.get(q).is_none());
            d.set(
                q,
                Answered {
                    answer: Answer::NotKnown,
                    notes: "to check".into(),
                },
            );
            assert!(d.get(q).is_some());
            assert!(q.text().ends_with('?'));
        }
    }

    // clause KP1: reviews are never set in the past.
    #[test]
    fn kp1_a_review_date_in_the_past_is_refused() {
        let mut d = sample_draft("ra-1", "chd-1");
        d.review_by = Some(date(2026, 11, 27));
        let r = validate_risk_assessment(&d, today()).unwrap_err();
        assert!(r.message.contains("in the past"), "{r}");
        d.review_by = None;
        assert!(validate_risk_assessment(&d, today()).is_err());
        d.review_by = Some(today());
        assert!(validate_risk_assessment(&d, today()).is_ok());
    }

    #[test]
    fn an_assessment_without_an_outcome_or_author_is_refused() {
        let mut d = sample_draft("ra-1", "chd-1");
        d.outcome = " ".into();
        assert!(validate_risk_assessment(&d, today()).is_err());
        let mut d = sample_draft("ra-1", "chd-1");
        d.author.clear();
        assert_eq!(
            validate_risk_assessment(&d, today()).unwrap_err().clause,
            "R36"
        );
    }

    // clause GD3 (groundwork): an unknown or risky contact is visible on the assessment.
    #[test]
    fn gd3_an_unknown_or_risky_contact_is_flagged() {
        let mut d = sample_draft("ra-1", "chd-1");
        d.checklist.contact_known = Some(Answered {
            answer: Answer::No,
            notes: "met online".into(),
        });
        d.checklist.contact_poses_risk = Some(Answered {
            answer: Answer::NotKnown,
            notes: String::new(),
        });
        let ra = validate_risk_assessment(&d, today()).unwrap();
        assert_eq!(
            ra.contact_concerns(),
            vec![ContactConcern::NotKnown, ContactConcern::RiskUnclear]
        );
        assert!(ra.contact_is_unknown_or_a_risk());
    }

    // clause WB2 (groundwork): who took part is recorded.
    #[test]
    fn wb2_social_worker_and_it_specialist_make_an_assessment_fit_for_social_networking() {
        let mut d = sample_draft("ra-1", "chd-1");
        d.participants.it_specialist = Some("Sam Okoro (IT)".into());
        let ra = validate_risk_assessment(&d, today()).unwrap();
        assert!(ra.fit_for_social_networking());
        let mut d = sample_draft("ra-1", "chd-1");
        d.participants.it_specialist = Some("   ".into());
        let ra = validate_risk_assessment(&d, today()).unwrap();
        assert!(!ra.fit_for_social_networking());
    }

    #[test]
    fn assessments_round_trip_through_json() {
        let ra = validate_risk_assessment(&sample_draft("ra-1", "chd-1"), today()).unwrap();
        let json = serde_json::to_string(&ra).unwrap();
        assert!(json.contains("\"kind\":\"planned\""));
        assert!(json.contains("\"review_by\":\"2027-06-01\""));
        let back: RiskAssessment = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ra);
    }

    proptest! {
        // Any draft gives an answer, never a panic, and a refusal is always one line.
        #[test]
        fn validating_never_panics(
            bg in "\\PC{0,10}", day in "\\PC{0,10}", risks in "\\PC{0,10}",
            outcome in "\\PC{0,10}", drop in proptest::collection::vec(any::<bool>(), 9),
            days in -400i64..400,
        ) {
            let mut d = sample_draft("ra-1", "chd-1");
            d.considerations = Considerations { background: bg, circumstances_on_the_day: day, risks_to_or_from_contacts: risks };
            d.outcome = outcome;
            for (q, gone) in Question::ALL.into_iter().zip(drop) {
                if gone {
                    match q {
                        Question::ContactOrder => d.checklist.contact_order = None,
                        Question::ContactPosesRisk => d.checklist.contact_poses_risk = None,
                        Question::ChildMayHarmOthers => d.checklist.child_may_harm_others = None,
                        _ => {}
                    }
                }
            }
            d.review_by = today().checked_add(jiff::Span::new().days(days)).ok();
            match validate_risk_assessment(&d, today()) {
                Ok(ra) => prop_assert!(ra.review_by >= today()),
                Err(r) => prop_assert!(!r.message.contains('\n')),
            }
        }
    }
}
