//! Fuzz harnesses for the documents staff send (issue 13): a plan revision or risk assessment
//! as the CLI reads it (TOML or JSON) and as the controller takes it (JSON), through every
//! check the controller makes before writing, then the policy compiled from it. Properties:
//! no panic; bad input gets an error that says what is wrong and what to do; what is accepted
//! is written as JSON that reads back the same.

use jiff::civil::date;
use proptest::prelude::*;
use tonic::Code;

use super::{plan_draft, risk_draft};
use crate::cli::documents::to_json;
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

const NOW: i64 = 1_796_000_000_000; // 2026-11-30 00:53 UTC
const TODAY: jiff::civil::Date = date(2026, 11, 30);

fn plan_toml() -> String {
    PLAN_TEMPLATE.replace("ra-REPLACE-ME", "ra-1")
}

fn assessment() -> RiskAssessment {
    let json = to_json(RISK_TEMPLATE).expect("the risk template reads");
    let draft = risk_draft(&json, "ra-1", "chd-1", "stf-1", NOW).expect("the risk template");
    validate_risk_assessment(&draft, TODAY).expect("the risk template is complete")
}

fn previous() -> PlanRevision {
    let json = to_json(&plan_toml()).expect("the plan template reads");
    let draft = plan_draft(&json, "chd-1", "stf-m", NOW - 1).expect("the plan template");
    PlanRevision::next(None, draft)
}

fn seeds(toml: &str) -> Vec<Vec<u8>> {
    let json = to_json(toml).expect("a template");
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&json).expect("JSON"),
    )
    .expect("JSON");
    vec![
        toml.as_bytes().to_vec(),
        json.into_bytes(),
        pretty.into_bytes(),
    ]
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
    let json = match to_json(&text) {
        Ok(json) => json,
        Err(e) => {
            prop_assert!(e.contains("fix it and try again"), "{e}");
            return clear(&e);
        }
    };
    // The controller takes any JSON text, not only what the CLI makes of a file.
    for json in [json.as_str(), text.as_ref()] {
        let draft = match plan_draft(json, "chd-1", "stf-m", NOW) {
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
        let stored =
            serde_json::to_string(&revision).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: PlanRevision =
            serde_json::from_str(&stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
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
        bytes_from(seeds(&plan_toml()), JSON_TOKENS, 400),
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
        bytes_from(seeds(RISK_TEMPLATE), JSON_TOKENS, 400),
        |input| {
            let text = String::from_utf8_lossy(&input);
            let json = match to_json(&text) {
                Ok(json) => json,
                Err(e) => return clear(&e),
            };
            for json in [json.as_str(), text.as_ref()] {
                let draft = match risk_draft(json, "ra-2", "chd-1", "stf-1", NOW) {
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
                        let stored = serde_json::to_string(&assessment)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let back: RiskAssessment = serde_json::from_str(&stored)
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
            match to_json(&text) {
                Err(e) => assert!(e.contains("fix it and try again"), "{e}"),
                Ok(json) => assert!(plan_draft(&json, "chd-1", "stf-m", NOW).is_err()),
            }
            assert!(plan_draft(&text, "chd-1", "stf-m", NOW).is_err());
        }
    }
}
