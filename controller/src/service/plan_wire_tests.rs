//! Tests of the plan and risk-assessment conversion: domain values that go to the wire and
//! back unchanged (a table and a property), the protobuf encoding in between, and wire inputs
//! that are refused with the field named.

use haven_proto::admin::v1 as wire;
use jiff::civil::date;
use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::domain::plan::tests::arb_section;
use crate::domain::risk::{sample_draft, validate_risk_assessment};

fn agreement(who: &str) -> Agreement {
    Agreement {
        who: who.into(),
        when: date(2026, 11, 20),
    }
}

/// Every part a section can hold, each with its optional parts both set and not.
fn full_section() -> CommunicationSection {
    CommunicationSection {
        contacts: vec![
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
                    ContactAddress {
                        channel: Channel::Messaging,
                        address: "nan_k".into(),
                        app: Some("WhatsApp".into()),
                    },
                ],
                windows: vec![
                    TimeWindow {
                        start_minute: 960,
                        end_minute: 1200,
                        weekdays: vec![],
                    },
                    TimeWindow {
                        start_minute: 600,
                        end_minute: 1440,
                        weekdays: vec![6, 7],
                    },
                ],
                risk_assessment: "ra-nan".into(),
                review_by: Some(date(2027, 2, 1)),
            },
            ContactPermission {
                name: "Sam".into(),
                relationship: String::new(),
                addresses: vec![ContactAddress {
                    channel: Channel::Messaging,
                    address: "sam".into(),
                    app: Some(String::new()),
                }],
                windows: vec![],
                risk_assessment: "ra-sam".into(),
                review_by: None,
            },
        ],
        camera: CameraPermission::On {
            placing_authority_agreement: agreement("K. Mensah"),
            parent_consultation: agreement("Mum"),
            review_by: date(2027, 3, 1),
            risk_assessment: "ra-cam".into(),
        },
        web: WebPermission::Filtered {
            filter_profile: "standard".into(),
            risk_assessment: "ra-web".into(),
            social_sites: vec![SocialSite {
                domain: "instagram.com".into(),
                risk_assessment: "ra-social".into(),
                review_by: date(2027, 1, 31),
            }],
            review_by: None,
        },
        apps: AppPermission {
            default_allow: false,
            allowed: vec!["com.whatsapp".into()],
            blocked: vec!["com.example.game".into()],
            risk_assessment: Some("ra-apps".into()),
        },
        letters: vec![Arrangement {
            with_whom: "Dad".into(),
            details: "through the social worker".into(),
            risk_assessment: "ra-dad".into(),
            review_by: Some(date(2027, 6, 1)),
        }],
        face_to_face: vec![Arrangement {
            with_whom: "Mum".into(),
            details: "supervised, fortnightly".into(),
            risk_assessment: "ra-mum".into(),
            review_by: None,
        }],
    }
}

fn revision(section: CommunicationSection) -> PlanRevision {
    PlanRevision {
        number: 3,
        child_id: "chd-1".into(),
        made_by: "stf-m".into(),
        made_at: 1_796_000_000_123,
        reason: "Nan asked to phone after school".into(),
        consultation: Consultation {
            social_worker: Some(ConsultRecord::Consulted {
                who: "J. Okafor".into(),
                when: date(2026, 11, 20),
                notes: "agreed".into(),
            }),
            parents: Some(ConsultRecord::NotConsulted {
                reason: "could not be reached".into(),
            }),
        },
        shared_with: SharedWith {
            child: true,
            social_worker: false,
            others: vec!["Nan".into()],
        },
        child_views: Some("wants to".into()),
        review_by: Some(date(2027, 2, 1)),
        grounds: Grounds {
            protective_reason: Some("injury-to-child".into()),
            evidence: Some("threats on 3 Nov".into()),
            risk_decisions: vec![RiskDecision {
                contact: "Dad".into(),
                decided_by: "R. Patel".into(),
                social_worker_agreed: "J. Okafor, 2026-11-20".into(),
                decision: "supervised".into(),
                order_terms: Some("as the order says".into()),
            }],
            views_not_sought: None,
        },
        section,
    }
}

/// Domain → wire → bytes → wire → domain.
fn round_trip(r: &PlanRevision) -> PlanRevision {
    let bytes = plan_to_wire(r).encode_to_vec();
    let back = wire::PlacementPlan::decode(bytes.as_slice()).unwrap();
    revision_from_wire(&back, r.number, &r.child_id, &r.made_by, r.made_at).unwrap()
}

#[test]
fn plan_revisions_round_trip_unchanged() {
    let mut bare = revision(CommunicationSection::default());
    bare.consultation = Consultation::default();
    bare.shared_with = SharedWith::default();
    bare.child_views = None;
    bare.review_by = None;
    bare.grounds = Grounds::default();
    let mut other_reason = revision(full_section());
    other_reason.grounds.protective_reason = Some("prevent-offence".into());
    other_reason.grounds.views_not_sought = Some("urgency".into());
    other_reason.grounds.evidence = Some(String::new());
    other_reason.child_views = Some(String::new());
    let table = [
        revision(full_section()),
        revision(CommunicationSection::default()),
        bare,
        other_reason,
    ];
    for r in &table {
        assert_eq!(&round_trip(r), r);
    }
}

#[test]
fn risk_assessments_round_trip_unchanged() {
    let today = date(2026, 11, 28);
    let mut with_all = sample_draft("ra-1", "chd-1");
    with_all.participants.it_specialist = Some("A. Patel".into());
    with_all.kind = AssessmentKind::OnTheSpot;
    with_all.checklist.contact_known = Some(Answered {
        answer: Answer::NotKnown,
        notes: "met online".into(),
    });
    let mut with_none = sample_draft("ra-2", "chd-1");
    with_none.participants = Participants::default();
    for draft in [sample_draft("ra-1", "chd-1"), with_all, with_none] {
        let ra = validate_risk_assessment(&draft, today).unwrap();
        let bytes = risk_to_wire(&ra).encode_to_vec();
        let back = wire::RiskAssessment::decode(bytes.as_slice()).unwrap();
        let again =
            assessment_from_wire(&back, &ra.id, &ra.child_id, &ra.author, ra.made_at).unwrap();
        assert_eq!(again, ra);
        // As a request: the same draft the domain validates.
        let as_draft =
            risk_from_wire(RISK_FIELD, &back, &ra.id, &ra.child_id, &ra.author, 9).unwrap();
        assert_eq!(
            validate_risk_assessment(&as_draft, today).unwrap().outcome,
            ra.outcome
        );
    }
}

#[test]
fn timestamps_keep_milliseconds_either_side_of_the_epoch() {
    for ms in [0, 1, 999, 1_796_000_000_123, -1, -1001] {
        assert_eq!(unix_ms(&timestamp(ms)), ms);
    }
    let t = timestamp(-1);
    assert_eq!((t.seconds, t.nanos), (-1, 999_000_000));
}

fn plan_with(edit: impl FnOnce(&mut wire::PlacementPlan)) -> Result<PlanRevisionDraft, FieldError> {
    let mut p = plan_to_wire(&revision(full_section()));
    edit(&mut p);
    plan_from_wire(PLAN_FIELD, &p, "chd-1", "stf-m", 1)
}

fn communication(p: &mut wire::PlacementPlan) -> &mut wire::CommunicationSection {
    p.communication.as_mut().unwrap()
}

fn camera_allowed(p: &mut wire::PlacementPlan) -> &mut wire::CameraAllowed {
    match communication(p)
        .camera
        .as_mut()
        .unwrap()
        .state
        .as_mut()
        .unwrap()
    {
        wire::camera_permission::State::Allowed(on) => on,
        wire::camera_permission::State::Off(_) => unreachable!(),
    }
}

#[test]
fn wire_plans_that_cannot_be_read_are_refused_with_the_field_named() {
    type Edit = Box<dyn FnOnce(&mut wire::PlacementPlan)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "plan.communication.contacts[0].windows[1].start_minute",
            Box::new(|p| communication(p).contacts[0].windows[1].start_minute = 70_000),
        ),
        (
            "plan.communication.contacts[0].windows[1].weekdays[1]",
            Box::new(|p| communication(p).contacts[0].windows[1].weekdays[1] = 8),
        ),
        (
            "plan.communication.contacts[0].windows[0].weekdays[0]",
            Box::new(|p| communication(p).contacts[0].windows[0].weekdays = vec![0]),
        ),
        (
            "plan.communication.contacts[1].addresses[0].channel",
            Box::new(|p| communication(p).contacts[1].addresses[0].channel = 0),
        ),
        (
            "plan.communication.contacts[0].review_by",
            Box::new(|p| communication(p).contacts[0].review_by = "1/2/2027".into()),
        ),
        (
            "plan.communication.camera.allowed.parent_consultation",
            Box::new(|p| camera_allowed(p).parent_consultation = None),
        ),
        (
            "plan.communication.camera.allowed.placing_authority_agreement.when",
            Box::new(|p| {
                camera_allowed(p)
                    .placing_authority_agreement
                    .as_mut()
                    .unwrap()
                    .when = String::new()
            }),
        ),
        (
            "plan.communication.camera.allowed.review_by",
            Box::new(|p| camera_allowed(p).review_by = "2027-02-30".into()),
        ),
        (
            "plan.communication.web.filtered.social_sites[0].review_by",
            Box::new(|p| {
                if let Some(wire::web_permission::State::Filtered(f)) =
                    communication(p).web.as_mut().unwrap().state.as_mut()
                {
                    f.social_sites[0].review_by.clear();
                }
            }),
        ),
        (
            "plan.communication.apps.mode",
            Box::new(|p| communication(p).apps.as_mut().unwrap().mode = 0),
        ),
        (
            "plan.communication.letters[0].review_by",
            Box::new(|p| communication(p).letters[0].review_by = "2027-06-01T10:00".into()),
        ),
        (
            "plan.consultation.social_worker",
            Box::new(|p| {
                p.consultation.as_mut().unwrap().social_worker =
                    Some(wire::ConsultationRecord { outcome: None })
            }),
        ),
        (
            "plan.consultation.social_worker.consulted.when",
            Box::new(|p| {
                if let Some(wire::consultation_record::Outcome::Consulted(c)) = p
                    .consultation
                    .as_mut()
                    .unwrap()
                    .social_worker
                    .as_mut()
                    .unwrap()
                    .outcome
                    .as_mut()
                {
                    c.when = "tomorrow".into();
                }
            }),
        ),
        (
            "plan.protective_reason",
            Box::new(|p| p.protective_reason = 9),
        ),
        (
            "plan.review_by",
            Box::new(|p| p.review_by = "20270201".into()),
        ),
    ];
    for (field, edit) in cases {
        let err = plan_with(edit).unwrap_err();
        assert_eq!(err.field, field, "{err}");
        assert!(
            !err.description.contains('\n') && err.description.len() > 15,
            "{err}"
        );
    }
}

#[test]
fn unset_parts_of_a_plan_are_the_safe_defaults() {
    let draft = plan_from_wire(
        PLAN_FIELD,
        &wire::PlacementPlan::default(),
        "chd-1",
        "stf-m",
        1,
    )
    .unwrap();
    assert_eq!(draft.section, CommunicationSection::default());
    assert!(matches!(draft.section.camera, CameraPermission::Off));
    assert!(matches!(draft.section.web, WebPermission::Off));
    assert!(draft.section.apps.default_allow);
    assert_eq!(draft.grounds, Grounds::default());
    assert_eq!(draft.consultation, Consultation::default());
}

#[test]
fn wire_assessments_that_cannot_be_read_are_refused_with_the_field_named() {
    let ra = validate_risk_assessment(&sample_draft("ra-1", "chd-1"), date(2026, 11, 28)).unwrap();
    let good = risk_to_wire(&ra);
    let check = |edit: &dyn Fn(&mut wire::RiskAssessment), field: &str| {
        let mut w = good.clone();
        edit(&mut w);
        let err = risk_from_wire(RISK_FIELD, &w, "ra-2", "chd-1", "stf-1", 1).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    };
    check(&|w| w.kind = 0, "risk_assessment.kind");
    check(
        &|w| w.review_by = "next week".into(),
        "risk_assessment.review_by",
    );
    check(
        &|w| {
            w.checklist
                .as_mut()
                .unwrap()
                .contact_known
                .as_mut()
                .unwrap()
                .answer = 7
        },
        "risk_assessment.checklist.contact_known.answer",
    );
    // A question left unanswered is not a shape error: the domain names every one (GD2).
    let mut w = good.clone();
    w.checklist.as_mut().unwrap().child_may_harm_others = None;
    w.checklist
        .as_mut()
        .unwrap()
        .contact_order
        .as_mut()
        .unwrap()
        .answer = 0;
    let draft = risk_from_wire(RISK_FIELD, &w, "ra-2", "chd-1", "stf-1", 1).unwrap();
    let refusal = validate_risk_assessment(&draft, date(2026, 11, 28)).unwrap_err();
    assert_eq!(refusal.clause, "GD2");
    assert!(
        refusal.message.starts_with("2 checklist questions"),
        "{refusal}"
    );
}

fn valid_weekdays(mut s: CommunicationSection) -> CommunicationSection {
    // The domain refuses days outside 1–7 before anything is stored; the wire refuses them
    // too, so only stored-able sections are expected to come back unchanged.
    for c in &mut s.contacts {
        for w in &mut c.windows {
            for d in &mut w.weekdays {
                *d = (*d).clamp(1, 7);
            }
        }
    }
    s
}

proptest! {
    // Any section the domain can hold goes to the wire, through its protobuf encoding, and
    // comes back the same.
    #[test]
    fn any_section_round_trips(section in arb_section()) {
        let r = revision(valid_weekdays(section));
        prop_assert_eq!(round_trip(&r), r);
    }

    // Whatever bytes arrive as a plan, reading them answers with a value or a named field,
    // never a panic.
    #[test]
    fn reading_any_wire_plan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(p) = wire::PlacementPlan::decode(bytes.as_slice())
            && let Err(e) = plan_from_wire(PLAN_FIELD, &p, "chd-1", "stf-m", 1)
        {
            prop_assert!(e.field.starts_with("plan"));
        }
    }
}
