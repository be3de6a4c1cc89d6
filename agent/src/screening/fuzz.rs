//! Fuzz harness for the screening socket's one JSON line (issue 13): any bytes a local process
//! sends, as `handle` receives them after framing. Properties: no panic; the answer is "allow"
//! or "deny", and a "deny" always says why (a reason or an error), on one line the asker's
//! `check-contact` can read back.

use std::sync::Arc;

use haven_proto::agent::v1::{Channel, Contact, ContactAddress, DevicePolicy};
use proptest::prelude::*;

use super::socket::answer_bytes;
use super::{Answer, InboxText, Screener, Telephone, TelephoneError};
use crate::contacts::LocalTime;
use crate::fuzzing::{self, CheckingSink, JSON_TOKENS, bytes_from};

/// A modem that does whatever it is asked, so the fuzz reaches every operation.
struct Modem;

impl Telephone for Modem {
    fn place_call(&self, number: &str) -> Result<String, TelephoneError> {
        Ok(format!("/call/{}", number.len()))
    }
    fn caller(&self, call: &str) -> Result<String, TelephoneError> {
        // The "call" the fuzz names is taken as its caller's number.
        Ok(call.to_string())
    }
    fn answer(&self, _call: &str) -> Result<(), TelephoneError> {
        Ok(())
    }
    fn send_text(&self, _number: &str, _body: &str) -> Result<(), TelephoneError> {
        Ok(())
    }
    fn inbox(&self) -> Result<Vec<InboxText>, TelephoneError> {
        Ok(vec![InboxText {
            id: "1".into(),
            from: "+447700900123".into(),
            text: "tea at 6".into(),
            at: String::new(),
        }])
    }
}

fn screener() -> Screener {
    let address = |channel: Channel, a: &str| ContactAddress {
        channel: channel as i32,
        address: a.into(),
        app: String::new(),
    };
    let policy = DevicePolicy {
        version: 4,
        contacts: vec![Contact {
            name: "Nan".into(),
            addresses: vec![
                address(Channel::Call, "+447700900123"),
                address(Channel::Sms, "+447700900123"),
                address(Channel::Messaging, "nan@example.org"),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let s = Screener::new(policy, Arc::new(CheckingSink));
    s.set_telephone(Arc::new(Modem));
    s
}

fn seeds() -> Vec<Vec<u8>> {
    [
        r#"{"channel":"call","address":"+447700900123"}"#,
        r#"{"channel":"sms","address":"07700 900123"}"#,
        r#"{"channel":"Phone","address":"+447700900999"}"#,
        r#"{"op":"ask","channel":"messaging","address":"nan@example.org"}"#,
        r#"{"op":"call","to":"999"}"#,
        r#"{"op":"call","to":"+447700900999"}"#,
        r#"{"op":"answer","call":"+447700900123"}"#,
        r#"{"op":"text","to":"+447700900123","body":"hello"}"#,
        r#"{"op":"inbox"}"#,
        r#"{"channel":"call","address":"0800 1111"}"#,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

// issue 13: whatever a local process sends, the agent answers clearly and never panics.
#[test]
fn fuzz_screening_socket_lines() {
    let screener = screener();
    let inputs = (
        bytes_from(seeds(), JSON_TOKENS, 300),
        any::<bool>(),
        any::<bool>(),
        1u8..=7,
        0u32..1440,
    );
    fuzzing::run(
        "screening lines",
        inputs,
        |(line, trusted, allowed, weekday, minute)| {
            let at = LocalTime::new(weekday, minute);
            let answer = answer_bytes(&screener, &line, at, trusted, || allowed);
            prop_assert!(answer.decision == "allow" || answer.decision == "deny");
            if !answer.allowed() {
                prop_assert!(
                    !answer.reason.is_empty() || !answer.error.is_empty(),
                    "a deny that does not say why"
                );
            }
            let mut wire =
                serde_json::to_string(&answer).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!wire.contains('\n'));
            wire.push('\n');
            let back: Result<Answer, _> = serde_json::from_str(wire.trim());
            prop_assert_eq!(back.ok(), Some(answer));
            // What `check-contact` does with any line the socket might send back.
            let _ = serde_json::from_str::<Answer>(&String::from_utf8_lossy(&line));
            Ok(())
        },
    );
}
