//! The stable reasons a refusal carries on the wire (`google.rpc.ErrorInfo.reason`), in one
//! list. Programs branch on these, never on the words, so the words can improve freely while a
//! reason, once published, is never renamed or reused. `proto/README.md` lists them.

/// A field is missing or malformed; the `BadRequest` detail names the field.
pub const INVALID_INPUT: &str = "INVALID_INPUT";
/// No such record, or one outside the homes the caller works in (the same answer on purpose).
pub const NOT_FOUND: &str = "NOT_FOUND";
/// A name matches more than one record; use the id (the message lists them).
pub const AMBIGUOUS_NAME: &str = "AMBIGUOUS_NAME";
/// The record is not in a state that allows this (already done, moved on, in use).
pub const CONFLICT: &str = "CONFLICT";
/// An enrollment code that was used, expired, cancelled or never existed.
pub const ENROLLMENT_CODE_UNUSABLE: &str = "ENROLLMENT_CODE_UNUSABLE";
/// The controller's disk is full; nothing was written.
pub const STORAGE_FULL: &str = "STORAGE_FULL";
/// The controller could not use its database; nothing was written. Safe to retry.
pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
/// The controller is shutting down or busy; retry shortly.
pub const TRY_AGAIN: &str = "TRY_AGAIN";
/// A fault in the controller; its log says more.
pub const INTERNAL: &str = "INTERNAL";

/// No token was sent, or it is not a token this controller issued.
pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
/// The token has expired; rotate it or ask an administrator for a new one.
pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";
/// The caller's role may not do this (a manager's or administrator's action).
pub const ROLE_NOT_ALLOWED: &str = "ROLE_NOT_ALLOWED";
/// The caller's access was revoked or their token rotated while a stream was open.
pub const ACCESS_WITHDRAWN: &str = "ACCESS_WITHDRAWN";

/// A rule of the policy refused it; `ErrorInfo.metadata["clause"]` names the clause.
pub const RULE_NOT_MET: &str = "RULE_NOT_MET";
/// A permission in a plan has no risk assessment of this child behind it (KP2).
pub const PERMISSION_NEEDS_RISK_ASSESSMENT: &str = "PERMISSION_NEEDS_RISK_ASSESSMENT";
/// A built-in protected contact (999, Childline, …) can never be removed (R19).
pub const PROTECTED_CONTACT_BUILT_IN: &str = "PROTECTED_CONTACT_BUILT_IN";
/// Communication is only restricted for a protective reason, never as a punishment (RM3).
pub const LOCKDOWN_REASON_NOT_PROTECTIVE: &str = "LOCKDOWN_REASON_NOT_PROTECTIVE";
/// A child with active devices cannot be archived; revoke the devices first.
pub const CHILD_HAS_ACTIVE_DEVICES: &str = "CHILD_HAS_ACTIVE_DEVICES";
/// The child has left the home (archived): nothing new can be done for them.
pub const CHILD_ARCHIVED: &str = "CHILD_ARCHIVED";
/// The device was revoked: nothing new can be done for it.
pub const DEVICE_REVOKED: &str = "DEVICE_REVOKED";
/// The plan has a newer revision than the one this change was based on.
pub const PLAN_MOVED_ON: &str = "PLAN_MOVED_ON";
/// A page token that this list did not give out, or gave out for other filters; start again
/// without one (the `BadRequest` detail names `page_token`).
pub const PAGE_TOKEN_INVALID: &str = "PAGE_TOKEN_INVALID";

/// Every reason, for the documentation test and for clients that want the list.
pub const ALL: &[&str] = &[
    INVALID_INPUT,
    NOT_FOUND,
    AMBIGUOUS_NAME,
    CONFLICT,
    ENROLLMENT_CODE_UNUSABLE,
    STORAGE_FULL,
    STORE_UNAVAILABLE,
    TRY_AGAIN,
    INTERNAL,
    TOKEN_INVALID,
    TOKEN_EXPIRED,
    ROLE_NOT_ALLOWED,
    ACCESS_WITHDRAWN,
    RULE_NOT_MET,
    PERMISSION_NEEDS_RISK_ASSESSMENT,
    PROTECTED_CONTACT_BUILT_IN,
    LOCKDOWN_REASON_NOT_PROTECTIVE,
    CHILD_HAS_ACTIVE_DEVICES,
    CHILD_ARCHIVED,
    DEVICE_REVOKED,
    PLAN_MOVED_ON,
    PAGE_TOKEN_INVALID,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_readme_lists_every_reason() {
        let readme = include_str!("../../../proto/README.md");
        for r in ALL {
            assert!(
                readme.contains(&format!("| `{r}` |")),
                "{r} is not in proto/README.md"
            );
        }
    }

    #[test]
    fn reasons_are_distinct_upper_snake() {
        let mut seen = std::collections::HashSet::new();
        for r in ALL {
            assert!(seen.insert(*r), "{r} listed twice");
            assert!(
                r.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{r} is not UPPER_SNAKE"
            );
        }
    }
}
