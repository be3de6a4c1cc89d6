//! Fuzz harnesses for the documents staff send (issue 13): a plan revision or risk assessment
//! as the CLI reads it (TOML or JSON) and as the controller takes it (the typed message, also
//! from raw protobuf bytes), through every check the controller makes before writing, then
//! the policy compiled from it. Properties: no panic; bad input gets an error that says what
//! is wrong and what to do; what is accepted goes to the wire and back unchanged.

use haven_proto::admin::v1 as api;
use jiff::civil::date;
use proptest::prelude::*;
use prost::Message as _;
use tonic::Code;

use super::{plan_draft, risk_draft};
use crate::cli::documents::{plan_from_text, risk_from_text};
use crate::cli::plans::{PLAN_TEMPLATE, RISK_TEMPLATE};
use crate::domain::Role;
use crate::domain::plan::{PlanRevision, validate_revision};
use crate::domain::policy::{PolicyInputs, builtin_protected, compile};
use crate::domain::restriction::{
    check_review_carried, owes_social_worker_notice, telephone_reductions,
};
use crate::domain::risk::{RiskAssessment, validate_risk_assessment};
use crate::domain::sanction::{SanctionRecord, obligations_after};
use crate::domain::working_days::BankHolidays;
use crate::fuzzing::{self, JSON_TOKENS, bytes_from};
use crate::service::plan_wire;

const NOW: i64 = 1_796_000_000_000; // 2026-11-30 00:53 UTC
const TODAY: jiff::civil::Date = date(2026, 11, 30);

fn plan_toml() -> String {
    PLAN_TEMPLATE.replace("ra-REPLACE-ME", "ra-1")
}

fn assessment() -> RiskAssessment {
    let ra = risk_from_text(RISK_TEMPLATE).expect("the risk template reads");
    let draft = risk_draft(Some(&ra), "ra-1", "chd-1", "stf-1", NOW).expect("the risk template");
    validate_risk_assessment(&draft, TODAY).expect("the risk template is complete")
}

fn previous() -> PlanRevision {
    let plan = plan_from_text(&plan_toml()).expect("the plan template reads");
    let draft = plan_draft(Some(&plan), "chd-1", "stf-m", NOW - 1).expect("the plan template");
    PlanRevision::next(None, draft)
}

/// The template as TOML, as the JSON of the same form, and as the protobuf encoding of the
/// message the CLI makes of it.
fn seeds(toml: &str, encoded: Vec<u8>) -> Vec<Vec<u8>> {
    let value: toml::Value = toml::from_str(toml).expect("a template");
    let pretty = serde_json::to_string_pretty(&value).expect("JSON");
    vec![toml.as_bytes().to_vec(), pretty.into_bytes(), encoded]
}

/// A refusal staff can act on: it says what is wrong and points at what to do.
fn clear(message: &str) -> Result<(), TestCaseError> {
    prop_assert!(message.len() > 15, "a terse error: {message:?}");
    prop_assert!(message.len() < 4_000, "an error of {} bytes", message.len());
    Ok(())
}

fn check_plan(
    input: &[u8],
    previous: Option<&PlanRevision>,
    role: Role,
    assessments: &[RiskAssessment],
) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(input);
    let mut messages = Vec::new();
    // As a file the CLI reads …
    match plan_from_text(&text) {
        Ok(plan) => messages.push(plan),
        Err(e) => {
            prop_assert!(!e.contains('\n'), "{e}");
            clear(&e)?;
        }
    }
    // … and as the bytes of a message any client may send.
    if let Ok(plan) = api::PlacementPlan::decode(input) {
        messages.push(plan);
    }
    for plan in &messages {
        let draft = match plan_draft(Some(plan), "chd-1", "stf-m", NOW) {
            Ok(draft) => draft,
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                clear(status.message())?;
                continue;
            }
        };
        let protected = builtin_protected();
        let before = previous.map(|p| &p.section);
        if let Err(refusal) =
            validate_revision(before, &draft, assessments, &protected, role, TODAY)
        {
            clear(&refusal.message)?;
            continue;
        }
        let revision = PlanRevision::next(previous, draft);
        let history: Vec<PlanRevision> = previous.into_iter().cloned().collect();
        if let Err(refusal) = check_review_carried(&history, &revision) {
            clear(&refusal.message)?;
            continue;
        }
        let reductions = telephone_reductions(before, &revision.section);
        let _ = owes_social_worker_notice(before, &revision);
        let record = SanctionRecord::for_revision(
            "Amira Example",
            revision.number,
            &revision.reason,
            &reductions,
            revision.made_at,
            revision.review_by,
            "R. Patel",
        );
        prop_assert!(serde_json::to_string(&record).is_ok());
        let holidays = BankHolidays::england_and_wales();
        let _ = obligations_after(revision.made_at, "Europe/London", &holidays, true);
        let stored = plan_wire::plan_to_wire(&revision).encode_to_vec();
        let decoded = api::PlacementPlan::decode(stored.as_slice())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = plan_wire::revision_from_wire(
            &decoded,
            revision.number,
            &revision.child_id,
            &revision.made_by,
            revision.made_at,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &revision);
        let _ = compile(&PolicyInputs {
            version: 7,
            issued_at: NOW,
            child_name: "Amira Example",
            protected_contacts: &protected,
            plan: Some(&revision.section),
            lockdowns: &[],
        });
    }
    Ok(())
}

// issue 13: a plan revision, as a file or as JSON on the wire, never panics the controller,
// and a bad one is refused with words saying what is wrong.
#[test]
fn fuzz_plan_documents() {
    let assessments = vec![assessment()];
    let previous = previous();
    let inputs = (
        bytes_from(
            seeds(
                &plan_toml(),
                plan_from_text(&plan_toml())
                    .expect("the plan template")
                    .encode_to_vec(),
            ),
            JSON_TOKENS,
            400,
        ),
        any::<bool>(),
        prop_oneof![Just(Role::Manager), Just(Role::Staff), Just(Role::Admin)],
    );
    fuzzing::run("plan documents", inputs, |(input, first, role)| {
        let previous = (!first).then_some(&previous);
        check_plan(&input, previous, role, &assessments)
    });
}

// issue 13: the same for a risk assessment.
#[test]
fn fuzz_risk_documents() {
    fuzzing::run(
        "risk documents",
        bytes_from(
            seeds(
                RISK_TEMPLATE,
                risk_from_text(RISK_TEMPLATE)
                    .expect("the risk template")
                    .encode_to_vec(),
            ),
            JSON_TOKENS,
            400,
        ),
        |input| {
            let text = String::from_utf8_lossy(&input);
            let mut messages = Vec::new();
            match risk_from_text(&text) {
                Ok(ra) => messages.push(ra),
                Err(e) => clear(&e)?,
            }
            if let Ok(ra) = api::RiskAssessment::decode(input.as_slice()) {
                messages.push(ra);
            }
            for ra in &messages {
                let draft = match risk_draft(Some(ra), "ra-2", "chd-1", "stf-1", NOW) {
                    Ok(draft) => draft,
                    Err(status) => {
                        prop_assert_eq!(status.code(), Code::InvalidArgument);
                        clear(status.message())?;
                        continue;
                    }
                };
                match validate_risk_assessment(&draft, TODAY) {
                    Err(refusal) => clear(&refusal.message)?,
                    Ok(assessment) => {
                        let stored = plan_wire::risk_to_wire(&assessment).encode_to_vec();
                        let decoded = api::RiskAssessment::decode(stored.as_slice())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let back = plan_wire::assessment_from_wire(
                            &decoded,
                            &assessment.id,
                            &assessment.child_id,
                            &assessment.author,
                            assessment.made_at,
                        )
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(back, assessment);
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn the_templates_pass_every_check() {
    check_plan(plan_toml().as_bytes(), None, Role::Manager, &[assessment()]).expect("accepted");
}

// A document nested deeper than any form needs is refused with an error, not a stack
// overflow (which no harness could catch: it aborts the process).
#[test]
fn deeply_nested_documents_are_refused_with_an_error() {
    for depth in [1_000usize, 100_000] {
        let toml = format!("reason = {}{}", "[".repeat(depth), "]".repeat(depth));
        let json = format!("{{\"reason\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        for text in [toml, json] {
            let err = plan_from_text(&text).unwrap_err();
            assert!(err.contains("fix it and try again"), "{err}");
        }
    }
}
