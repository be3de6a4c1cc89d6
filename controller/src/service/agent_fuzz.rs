//! Fuzz harness for what a device sends (issue 13): the bytes of an `AgentMessage` as the
//! stream decodes them, then every check the controller makes before storing anything from
//! it. Properties: no panic; what would be stored is bounded (ids, subjects, details, the
//! inventory and guard report) and free of control characters; a time never lies in the
//! future; a version never issued is never believed; a bad batch or request is refused with
//! an `InvalidArgument` that says what to send instead.

use haven_proto::agent::v1::{self as wire, AgentMessage, agent_message::Body};
use proptest::prelude::*;
use prost::Message as _;
use tonic::Code;

use super::{MAX_BATCH, child_request_text, violation_records};
use crate::domain::device_health;
use crate::domain::device_input::{
    Budget, DeviceBudget, MAX_STORABLE_VERSION, check_claimed_version,
};
use crate::domain::policy::is_protected_attempt;
use crate::fuzzing::{self, bytes_from};
use crate::service::convert::{clip, device_guards, inventory_json};

const NOW: i64 = 1_796_000_000_000;

fn seeds() -> Vec<Vec<u8>> {
    let inventory = wire::Inventory {
        os_name: "Ubuntu Touch".into(),
        os_version: "24.04".into(),
        kernel_version: "6.8".into(),
        model: "Pinephone".into(),
        hostname: "amira-phone".into(),
        battery_percent: Some(87),
        storage_free_bytes: 1 << 30,
        storage_total_bytes: 1 << 34,
        memory_total_bytes: 1 << 32,
        agent_version: "0.1.0".into(),
    };
    let guards = wire::GuardReport {
        enforcer: "linux".into(),
        guards: vec![wire::GuardStatus {
            guard: "web".into(),
            state: wire::GuardState::Weakened as i32,
            reason: "nftables missing".into(),
        }],
        hardening: vec![wire::GuardHardening {
            item: "ptrace".into(),
            ok: false,
            found: "0".into(),
            fix: "set kernel.yama.ptrace_scope=1".into(),
        }],
    };
    let violation = |id: &str, kind: wire::ViolationKind, subject: &str| wire::Violation {
        id: id.into(),
        occurred_at_unix_ms: NOW - 5_000,
        kind: kind as i32,
        subject: subject.into(),
        detail: "tried to call an unknown number".into(),
        channel: wire::Channel::Call as i32,
    };
    let bodies = [
        Body::Hello(wire::Hello {
            applied_policy_version: 3,
            agent_version: "0.1.0".into(),
            inventory: Some(inventory.clone()),
            guards: Some(guards.clone()),
        }),
        Body::Hello(wire::Hello {
            applied_policy_version: i64::MAX as u64,
            ..Default::default()
        }),
        Body::Heartbeat(wire::Heartbeat {
            inventory: Some(inventory),
            guards: Some(guards),
        }),
        Body::PolicyApplied(wire::PolicyApplied {
            version: u64::MAX,
            error: "nft: \x1b[2Jcould not apply".into(),
        }),
        Body::Violations(wire::ViolationBatch {
            violations: vec![
                violation("v-1", wire::ViolationKind::UnknownContact, "+447700900999"),
                violation("v-2", wire::ViolationKind::ContactBlocked, "999"),
                violation("v-3", wire::ViolationKind::WebBlocked, "games.example"),
            ],
        }),
        Body::CommandResult(wire::CommandResult {
            command_id: "cmd-1".into(),
            ok: true,
            error: String::new(),
        }),
        Body::ChildRequest(wire::ChildRequest {
            id: "req-1".into(),
            text: "Please can I phone my brother on Sunday?".into(),
            made_at_unix_ms: NOW,
        }),
    ];
    bodies
        .into_iter()
        .map(|body| AgentMessage { body: Some(body) }.encode_to_vec())
        .collect()
}

/// Protobuf's building blocks: tags of the fields that matter, long varints, lengths.
const PROTO_TOKENS: &[&[u8]] = &[
    &[0x0a],
    &[0x12],
    &[0x22],
    &[0x08],
    &[0x10],
    &[0xc2, 0x02],
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    &[0x80, 0x80, 0x80, 0x80, 0x08],
    &[0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0x00],
    &[0x7f],
];

fn no_controls(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

fn check(
    bytes: &[u8],
    highest_issued: u64,
    budget: &mut DeviceBudget,
) -> Result<(), TestCaseError> {
    // tonic refuses a message that does not decode with an error status; nothing is read.
    let Ok(message) = AgentMessage::decode(bytes) else {
        return Ok(());
    };
    let version = |claimed: u64| -> Result<(), TestCaseError> {
        match check_claimed_version(claimed, highest_issued) {
            Ok(v) => prop_assert!(v <= highest_issued && v <= MAX_STORABLE_VERSION),
            Err(never) => prop_assert!(never.detail().contains("not stored")),
        }
        Ok(())
    };
    let inventory = |inv: Option<&wire::Inventory>| -> Result<(), TestCaseError> {
        if let Some(inv) = inv {
            let json = inventory_json(inv);
            prop_assert!(json.len() < 8_192, "an inventory of {} bytes", json.len());
            prop_assert!(serde_json::from_str::<serde_json::Value>(&json).is_ok());
        }
        Ok(())
    };
    let guards = |report: Option<&wire::GuardReport>| -> Result<(), TestCaseError> {
        if let Some(report) = report {
            let g = device_guards(report);
            prop_assert!(g.guards.len() <= 32 && g.hardening.len() <= 32);
            let json = serde_json::to_string(&g).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                json.len() < 128 * 1024,
                "a guard report of {} bytes",
                json.len()
            );
            let _ = device_health::enforcement(Some(&g)).holds();
            if let Some((subject, detail)) = device_health::violation(&g) {
                prop_assert!(!subject.is_empty() && !detail.is_empty());
            }
        }
        Ok(())
    };
    match message.body {
        Some(Body::Hello(h)) => {
            inventory(h.inventory.as_ref())?;
            guards(h.guards.as_ref())?;
            version(h.applied_policy_version)?;
        }
        Some(Body::Heartbeat(b)) => {
            inventory(b.inventory.as_ref())?;
            guards(b.guards.as_ref())?;
        }
        Some(Body::PolicyApplied(a)) => {
            version(a.version)?;
            let error = clip(&a.error, 512);
            prop_assert!(error.chars().count() <= 512 && no_controls(&error));
        }
        Some(Body::Violations(batch)) => match violation_records(&batch.violations, NOW) {
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                prop_assert!(status.message().contains("batch") || status.message().contains("id"));
            }
            Ok(records) => {
                prop_assert!(records.len() <= MAX_BATCH);
                for r in &records {
                    prop_assert!(!r.id.is_empty() && r.id.len() <= 64 && no_controls(&r.id));
                    prop_assert!(r.subject.chars().count() <= 256 && no_controls(&r.subject));
                    prop_assert!(r.detail.chars().count() <= 512 && no_controls(&r.detail));
                    prop_assert!(r.occurred_at > 0 && r.occurred_at <= NOW);
                    prop_assert!(r.kind.is_ascii() && r.channel.is_ascii());
                }
                let kept: Vec<_> = records
                    .iter()
                    .filter(|r| !is_protected_attempt(&r.kind, &r.subject))
                    .collect();
                let admitted = budget.admit(
                    &Budget::default(),
                    kept.iter().map(|r| r.kind.as_str()),
                    NOW,
                );
                prop_assert!(admitted <= kept.len());
            }
        },
        Some(Body::FilterListsHeld(held)) => {
            // However many a device claims, at most 64 short entries are kept.
            let kept = crate::service::filter::held_versions(&held.lists);
            prop_assert!(kept.len() <= 64);
            prop_assert!(
                kept.iter()
                    .all(|l| l.category.chars().count() <= 64 && l.sha256.chars().count() <= 64)
            );
        }
        // A certificate request is checked by the CA against the stream's own certificate
        // (`pki::sign_renewal`, its own tests); an install report is only looked up by name.
        Some(Body::RenewCertificate(_)) | Some(Body::FilterListInstalled(_)) => {}
        Some(Body::CommandResult(c)) => {
            prop_assert!(clip(&c.command_id, 64).chars().count() <= 64);
        }
        Some(Body::ChildRequest(req)) => match child_request_text(&req) {
            Err(status) => {
                prop_assert_eq!(status.code(), Code::InvalidArgument);
                prop_assert!(status.message().contains("1 to 64 characters"));
            }
            Ok(text) => {
                prop_assert!(!text.is_empty() && text.chars().count() <= 2_000);
                prop_assert!(no_controls(&text.replace(['\n', '\t'], " ")));
                prop_assert!(!req.id.is_empty() && req.id.len() <= 64 && no_controls(&req.id));
            }
        },
        None => {}
    }
    Ok(())
}

// issue 13: whatever a device sends, the controller's checks hold and nothing panics.
#[test]
fn fuzz_device_messages() {
    let budget = std::sync::Mutex::new(DeviceBudget::new(&Budget::default(), NOW));
    let inputs = (
        bytes_from(seeds(), PROTO_TOKENS, 400),
        prop_oneof![
            Just(0u64),
            Just(3),
            Just(MAX_STORABLE_VERSION),
            any::<u64>()
        ],
    );
    fuzzing::run("device messages", inputs, |(bytes, highest)| {
        let mut budget = budget.lock().unwrap_or_else(|p| p.into_inner());
        check(&bytes, highest, &mut budget)
    });
}

#[test]
fn the_seeds_decode() {
    for seed in seeds() {
        assert!(AgentMessage::decode(&seed[..]).is_ok());
    }
}

// Found while writing `fuzz_device_messages` (its properties now check it): a child's request
// and a device's ids reached staff terminals with their control characters, so a device could
// send an escape sequence that clears or retitles the screen of whoever lists them.
#[test]
fn issue13_a_device_cannot_put_terminal_escapes_in_front_of_staff() {
    let req = wire::ChildRequest {
        id: "req-1".into(),
        text: "Can I \x1b[2Jphone Nan?\nOn Sunday\x07".into(),
        made_at_unix_ms: NOW,
    };
    assert_eq!(
        child_request_text(&req).expect("a request"),
        "Can I [2Jphone Nan?\nOn Sunday"
    );
    let bad_id = wire::ChildRequest {
        id: "req\x1b]0;owned\x07".into(),
        ..req
    };
    assert_eq!(
        child_request_text(&bad_id).map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );
    let batch = [wire::Violation {
        id: "v\x1b[2J".into(),
        ..Default::default()
    }];
    let refused = violation_records(&batch, NOW).expect_err("refused");
    assert!(refused.message().contains("control characters"));
}
