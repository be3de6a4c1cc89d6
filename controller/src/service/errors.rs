//! Refusals on the wire: the gRPC rich error model. Every refusal carries a
//! `google.rpc.ErrorInfo` with a stable `reason` (the one list is `domain::reasons`), the
//! domain `haven.homes` and, when a policy clause refused it, `metadata["clause"]`; bad input
//! also carries a `google.rpc.BadRequest` naming the request field. Programs branch on the
//! reason and the field; the message is for people and never names a command-line flag (the
//! `haven` command line words its own, see `cli::client::explain`).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

pub use crate::domain::reasons::*;
use crate::domain::risk::Refusal;

/// `ErrorInfo.domain` of every Haven refusal.
pub const DOMAIN: &str = "haven.homes";

/// A refusal with its stable reason and, when a policy clause refused it, the clause.
pub fn refused(
    code: Code,
    reason: &'static str,
    clause: Option<&str>,
    message: impl Into<String>,
) -> Status {
    let mut metadata = HashMap::new();
    if let Some(clause) = clause.filter(|c| !c.is_empty()) {
        metadata.insert("clause".to_string(), clause.to_string());
    }
    let details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// Bad input in one field of the request (`field` is the proto field's name, e.g. `note` or
/// `filter.kind`): INVALID_ARGUMENT, reason `INVALID_INPUT`, the field named.
pub fn bad_field(field: &str, description: impl std::fmt::Display) -> Status {
    bad_fields(&[field], description)
}

/// Bad input that concerns several fields together (e.g. "give one of child, device, home").
pub fn bad_fields(fields: &[&str], description: impl std::fmt::Display) -> Status {
    let description = description.to_string();
    let mut details = ErrorDetails::with_error_info(INVALID_INPUT, DOMAIN, HashMap::new());
    details.set_bad_request(
        fields
            .iter()
            .map(|f| FieldViolation::new(*f, description.clone()))
            .collect::<Vec<_>>(),
    );
    Status::with_error_details(Code::InvalidArgument, description, details)
}

/// Bad input in `field` with its own stable reason (e.g. `PAGE_TOKEN_INVALID`), the field named.
pub fn bad_field_because(
    field: &str,
    reason: &'static str,
    description: impl std::fmt::Display,
) -> Status {
    let description = description.to_string();
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
    details.add_bad_request_violation(field, description.clone());
    Status::with_error_details(Code::InvalidArgument, description, details)
}

/// Bad input that no single field explains.
pub fn invalid(description: impl std::fmt::Display) -> Status {
    refused(
        Code::InvalidArgument,
        INVALID_INPUT,
        None,
        description.to_string(),
    )
}

/// A domain refusal: its reason and clause travel with it.
pub fn refusal(code: Code, r: Refusal) -> Status {
    refused(code, r.reason, Some(r.clause), r.message)
}

/// A domain refusal of bad input in `field`: INVALID_ARGUMENT with the refusal's reason and
/// clause, and the field named.
pub fn refusal_in(field: &str, r: Refusal) -> Status {
    let mut metadata = HashMap::new();
    metadata.insert("clause".to_string(), r.clause.to_string());
    let mut details = ErrorDetails::with_error_info(r.reason, DOMAIN, metadata);
    details.add_bad_request_violation(field, r.message.clone());
    Status::with_error_details(Code::InvalidArgument, r.message, details)
}

/// The record is not in a state that allows this.
pub fn conflict(message: impl Into<String>) -> Status {
    refused(Code::FailedPrecondition, CONFLICT, None, message)
}

/// Nothing by that id or name (or not in the caller's homes: the same answer on purpose).
pub fn not_found(message: impl Into<String>) -> Status {
    refused(Code::NotFound, NOT_FOUND, None, message)
}

/// A fault in the controller; the words say what could not be done, the log says why.
pub fn internal(message: impl Into<String>) -> Status {
    refused(Code::Internal, INTERNAL, None, message)
}

/// What a client reads back from a status: the reason, the clause and the fields named.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub reason: String,
    pub clause: Option<String>,
    pub fields: Vec<String>,
}

/// Reads the rich error details of a status (empty when it carries none, e.g. from an older
/// controller or a proxy).
pub fn read(status: &Status) -> Reading {
    let details = status.get_error_details();
    let (reason, clause) = details
        .error_info()
        .filter(|i| i.domain == DOMAIN)
        .map(|i| (i.reason.clone(), i.metadata.get("clause").cloned()))
        .unwrap_or_default();
    let fields = details
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default();
    Reading {
        reason,
        clause,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_its_reason_and_clause() {
        let r = Refusal::new("KP2", "the call permission has no risk assessment")
            .because(PERMISSION_NEEDS_RISK_ASSESSMENT);
        let status = refusal(Code::FailedPrecondition, r);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            "the call permission has no risk assessment"
        );
        let got = read(&status);
        assert_eq!(got.reason, PERMISSION_NEEDS_RISK_ASSESSMENT);
        assert_eq!(got.clause.as_deref(), Some("KP2"));
        assert!(got.fields.is_empty());
    }

    #[test]
    fn a_bad_field_is_named() {
        let status = bad_field("note", "say what was done");
        assert_eq!(status.code(), Code::InvalidArgument);
        let got = read(&status);
        assert_eq!(got.reason, INVALID_INPUT);
        assert_eq!(got.clause, None);
        assert_eq!(got.fields, vec!["note".to_string()]);
    }

    #[test]
    fn a_refusal_in_a_field_keeps_reason_clause_and_field() {
        let status = refusal_in("reason", Refusal::new("RM3", "not protective"));
        let got = read(&status);
        assert_eq!(got.reason, RULE_NOT_MET);
        assert_eq!(got.clause.as_deref(), Some("RM3"));
        assert_eq!(got.fields, vec!["reason".to_string()]);
    }

    #[test]
    fn a_plain_status_reads_as_nothing() {
        assert_eq!(read(&Status::internal("x")), Reading::default());
    }
}
