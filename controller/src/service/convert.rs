//! Translating between wire messages and domain or store values, and store errors into gRPC
//! statuses a person can read.

// The deprecated words fields beside each enum are still filled and read, for older clients
// (proto/README.md).
#![allow(deprecated)]

use haven_proto::admin::v1 as admin;
use haven_proto::agent::v1 as wire;
use tonic::Status;

use super::wire_enums::wire;
use crate::domain::plan::Channel;
use crate::domain::policy::CompiledPolicy;
use crate::store::{ChildRecord, DeviceRecord, HomeRecord, StaffRecord, StoreError};

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        use super::errors::{self, refused};
        use tonic::Code;
        let msg = e.to_string();
        match e {
            StoreError::NotFound { .. } => refused(Code::NotFound, errors::NOT_FOUND, None, msg),
            StoreError::Ambiguous { .. } => {
                refused(Code::InvalidArgument, errors::AMBIGUOUS_NAME, None, msg)
            }
            StoreError::Conflict(_) => errors::conflict(msg),
            StoreError::CodeUnusable(None) => {
                refused(Code::NotFound, errors::ENROLLMENT_CODE_UNUSABLE, None, msg)
            }
            StoreError::CodeUnusable(Some(_)) => refused(
                Code::FailedPrecondition,
                errors::ENROLLMENT_CODE_UNUSABLE,
                None,
                msg,
            ),
            StoreError::DiskFull => {
                refused(Code::ResourceExhausted, errors::STORAGE_FULL, None, msg)
            }
            StoreError::Database(detail) => {
                tracing::error!(%detail, "database error");
                refused(
                    Code::Unavailable,
                    errors::STORE_UNAVAILABLE,
                    None,
                    "the controller could not use its database; nothing was written. Try again; \
                     if it keeps failing, check the controller's log",
                )
            }
        }
    }
}

pub fn home(h: HomeRecord) -> admin::Home {
    admin::Home {
        id: h.id,
        name: h.name,
        created_at_unix_ms: h.created_at,
        time_zone: h.time_zone,
        children: h.children,
        ..Default::default()
    }
    .with_times()
}

pub fn child(c: ChildRecord) -> admin::Child {
    admin::Child {
        id: c.id,
        home_id: c.home_id,
        home_name: c.home_name,
        name: c.name,
        created_at_unix_ms: c.created_at,
        devices: c.devices,
        retain_records_until: c
            .date_of_birth
            .parse()
            .map(|dob| crate::domain::records::retain_records_until(dob).to_string())
            .unwrap_or_default(),
        date_of_birth: c.date_of_birth,
        archived_at_unix_ms: c.archived_at.unwrap_or(0),
        archive_reason: c.archive_reason.unwrap_or_default(),
        ..Default::default()
    }
    .with_times()
}

pub fn staff(s: StaffRecord) -> admin::StaffMember {
    admin::StaffMember {
        id: s.id,
        name: s.name,
        role: s.role.as_str().to_string(),
        staff_role: wire::<admin::StaffRole>(s.role.as_str()),
        created_at_unix_ms: s.created_at,
        created_by: s.created_by,
        revoked_at_unix_ms: s.revoked_at.unwrap_or(0),
        token_hint: s.token_hint,
        last_used_at_unix_ms: s.last_used_at.unwrap_or(0),
        // Names, filled in by the caller, which can look them up.
        homes: Vec::new(),
        home_ids: s.homes,
        token_expires_at_unix_ms: s.token_expires_at.unwrap_or(0),
        ..Default::default()
    }
    .with_times()
}

pub fn device(d: DeviceRecord, online: bool) -> admin::Device {
    use crate::domain::device_health::{self, DeviceGuards};
    let guards: Option<DeviceGuards> = d
        .guards
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok());
    let enforcement = device_health::enforcement(guards.as_ref()).words();
    let guards = guards.unwrap_or_default();
    let inventory = d
        .inventory
        .as_deref()
        .and_then(|json| serde_json::from_str::<admin::DeviceInventory>(json).ok());
    admin::Device {
        id: d.id,
        child_id: d.child_id,
        child_name: d.child_name,
        device_status: wire::<admin::DeviceStatus>(&d.status),
        status: d.status,
        online,
        enrolled_at_unix_ms: d.enrolled_at,
        last_seen_at_unix_ms: d.last_seen_at.unwrap_or(0),
        inventory,
        desired_policy_version: d.desired_version,
        desired_policy_at_unix_ms: d.desired_at,
        applied_policy_version: d.applied_version,
        applied_policy_at_unix_ms: d.applied_at.unwrap_or(0),
        apply_error: d.apply_error.unwrap_or_default(),
        revoked_at_unix_ms: d.revoked_at.unwrap_or(0),
        revoked_reason: d.revoked_reason.unwrap_or_default(),
        certificate_fingerprint: d.cert_fingerprint,
        // Filled in by `Context::device_view`, which knows the configured time.
        not_reporting: false,
        enforcement,
        guards: guards
            .guards
            .into_iter()
            .map(|g| admin::GuardStatus {
                guard: g.guard,
                state: g.state.as_str().to_string(),
                guard_state: wire::<admin::GuardState>(g.state.as_str()),
                reason: g.reason,
            })
            .collect(),
        hardening: guards
            .hardening
            .into_iter()
            .map(|h| admin::GuardHardening {
                item: h.item,
                ok: h.ok,
                found: h.found,
                fix: h.fix,
            })
            .collect(),
        // Filled in by `Context::add_certificate`, which asks the store (D7).
        ..Default::default()
    }
    .with_times()
}

/// A device's guard report as the controller keeps it, each text clipped.
pub fn device_guards(r: &wire::GuardReport) -> crate::domain::device_health::DeviceGuards {
    use crate::domain::device_health::{DeviceGuards, Guard, GuardState, Hardening};
    let state = |s: i32| match wire::GuardState::try_from(s) {
        Ok(wire::GuardState::Armed) => GuardState::Armed,
        Ok(wire::GuardState::Weakened) => GuardState::Weakened,
        Ok(wire::GuardState::Failed) => GuardState::Failed,
        Ok(wire::GuardState::NotEnforcing) => GuardState::NotEnforcing,
        _ => GuardState::Unknown,
    };
    DeviceGuards {
        enforcer: clip(&r.enforcer, 32),
        guards: r
            .guards
            .iter()
            .take(32)
            .map(|g| Guard {
                guard: clip(&g.guard, 32),
                state: state(g.state),
                reason: clip(&g.reason, 256),
            })
            .collect(),
        hardening: r
            .hardening
            .iter()
            .take(32)
            .map(|h| Hardening {
                item: clip(&h.item, 80),
                ok: h.ok,
                found: clip(&h.found, 200),
                fix: clip(&h.fix, 300),
            })
            .collect(),
    }
}

/// The device's inventory as stored: the staff-facing shape, as JSON.
pub fn inventory_json(inv: &wire::Inventory) -> String {
    let record = admin::DeviceInventory {
        os_name: clip(&inv.os_name, 120),
        os_version: clip(&inv.os_version, 120),
        kernel_version: clip(&inv.kernel_version, 120),
        model: clip(&inv.model, 120),
        hostname: clip(&inv.hostname, 120),
        battery_percent: inv.battery_percent.map(|b| b.min(100)),
        storage_free_bytes: inv.storage_free_bytes,
        storage_total_bytes: inv.storage_total_bytes,
        memory_total_bytes: inv.memory_total_bytes,
        agent_version: clip(&inv.agent_version, 120),
    };
    serde_json::to_string(&record).unwrap_or_else(|_| "{}".into())
}

/// Device-supplied text is shown to staff and written to logs: kept short, and without
/// control characters that could rewrite a terminal. It is never trusted.
pub fn clip(s: &str, max_chars: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

pub fn policy(p: CompiledPolicy) -> wire::DevicePolicy {
    wire::DevicePolicy {
        version: p.version,
        issued_at_unix_ms: p.issued_at,
        child_display_name: p.child_display_name,
        camera: Some(wire::CameraRule {
            allowed: p.camera_allowed,
            reason: p.camera_reason,
        }),
        web: Some(wire::WebRule {
            allowed: p.web_allowed,
            reason: p.web_reason,
            filter_profile: p.web_filter_profile,
            allowed_domains: p.web_allowed_domains,
            blocked_categories: p.web_blocked_categories,
            blocked_domains: p.web_blocked_domains,
        }),
        apps: Some(wire::AppRule {
            default: if p.apps_allowed_by_default {
                wire::AppDefault::Allow as i32
            } else {
                wire::AppDefault::Block as i32
            },
            allowed: p.apps_allowed,
            blocked: p.apps_blocked,
        }),
        contacts: p
            .contacts
            .into_iter()
            .map(|c| wire::Contact {
                name: c.name,
                relationship: c.relationship,
                addresses: c
                    .addresses
                    .into_iter()
                    .map(|a| wire::ContactAddress {
                        channel: match a.channel {
                            Channel::Call => wire::Channel::Call,
                            Channel::Sms => wire::Channel::Sms,
                            Channel::Messaging => wire::Channel::Messaging,
                        } as i32,
                        address: a.address,
                        app: a.app.unwrap_or_default(),
                    })
                    .collect(),
                windows: c
                    .windows
                    .into_iter()
                    .map(|w| wire::TimeWindow {
                        start_minute: u32::from(w.start_minute),
                        end_minute: u32::from(w.end_minute),
                        weekdays: w.weekdays.into_iter().map(u32::from).collect(),
                    })
                    .collect(),
            })
            .collect(),
        protected_contacts: p
            .protected_contacts
            .into_iter()
            .map(|(name, address)| wire::Contact {
                name,
                relationship: "protected".into(),
                addresses: [wire::Channel::Call, wire::Channel::Sms]
                    .into_iter()
                    .map(|channel| wire::ContactAddress {
                        channel: channel as i32,
                        address: address.clone(),
                        app: String::new(),
                    })
                    .collect(),
                windows: vec![],
            })
            .collect(),
        lockdown: p.lockdown.map(|l| wire::Lockdown {
            active: true,
            id: l.id,
            channels: l.channels,
            reason: l.reason,
            until_unix_ms: l.until,
        }),
        explanations: p
            .explanations
            .into_iter()
            .map(|(topic, text)| wire::Explanation { topic, text })
            .collect(),
    }
}

/// A record's Unix-milliseconds time as a `Timestamp`; 0 ("not set") is an absent field.
pub fn at(ms: i64) -> Option<haven_proto::well_known::Timestamp> {
    (ms != 0).then(|| super::plan_wire::timestamp(ms))
}

/// A request's time in Unix ms: its `Timestamp` when the client sent one, else the deprecated
/// `*_unix_ms` field beside it (proto/README.md: times). Out-of-range values saturate rather
/// than wrap, and are then refused by the rule that reads the time.
pub fn ms_of(ts: Option<&haven_proto::well_known::Timestamp>, ms: i64) -> i64 {
    match ts {
        Some(t) => t
            .seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000),
        None => ms,
    }
}

/// Fills a record's `Timestamp` fields from the deprecated `*_unix_ms` fields beside them, so
/// both always say the same (proto/README.md: times).
pub trait WithTimes {
    fn with_times(self) -> Self;
}

impl WithTimes for admin::LockdownRecord {
    fn with_times(mut self) -> Self {
        self.started_at = at(self.started_at_unix_ms);
        self.review_at = at(self.review_at_unix_ms);
        self.until = at(self.until_unix_ms);
        self.lifted_at = at(self.lifted_at_unix_ms);
        self
    }
}

impl WithTimes for admin::Sanction {
    fn with_times(mut self) -> Self {
        self.opened_at = at(self.opened_at_unix_ms);
        self.occurred_at = at(self.occurred_at_unix_ms);
        self.completed_at = at(self.completed_at_unix_ms);
        self.signed_off_at = at(self.signed_off_at_unix_ms);
        self.discussed_at = at(self.discussed_at_unix_ms);
        self.complete_by = at(self.complete_by_unix_ms);
        self.sign_off_by = at(self.sign_off_by_unix_ms);
        self.discuss_by = at(self.discuss_by_unix_ms);
        self
    }
}

impl WithTimes for admin::Obligation {
    fn with_times(mut self) -> Self {
        self.opened_at = at(self.opened_at_unix_ms);
        self.due_at = at(self.due_at_unix_ms);
        self.closed_at = at(self.closed_at_unix_ms);
        self.done_at = at(self.done_at_unix_ms);
        self
    }
}

impl WithTimes for admin::ViolationRecord {
    fn with_times(mut self) -> Self {
        self.occurred_at = at(self.occurred_at_unix_ms);
        self.received_at = at(self.received_at_unix_ms);
        self
    }
}

impl WithTimes for admin::Device {
    fn with_times(mut self) -> Self {
        self.desired_policy_at = at(self.desired_policy_at_unix_ms);
        self.applied_policy_at = at(self.applied_policy_at_unix_ms);
        self.certificate_not_after = at(self.certificate_not_after_unix_ms);
        self.enrolled_at = at(self.enrolled_at_unix_ms);
        self.last_seen_at = at(self.last_seen_at_unix_ms);
        self.revoked_at = at(self.revoked_at_unix_ms);
        self
    }
}

impl WithTimes for admin::AuditCheckpoint {
    fn with_times(mut self) -> Self {
        self.at = at(self.at_unix_ms);
        self
    }
}

impl WithTimes for admin::RecordRead {
    fn with_times(mut self) -> Self {
        self.at = at(self.at_unix_ms);
        self
    }
}

impl WithTimes for admin::CameraIncidentRecord {
    fn with_times(mut self) -> Self {
        self.recorded_at = at(self.recorded_at_unix_ms);
        self
    }
}

impl WithTimes for admin::OffDutyReport {
    fn with_times(mut self) -> Self {
        self.created_at = at(self.created_at_unix_ms);
        self.acknowledged_at = at(self.acknowledged_at_unix_ms);
        self
    }
}

impl WithTimes for admin::PhotographyApprovalRecord {
    fn with_times(mut self) -> Self {
        self.recorded_at = at(self.recorded_at_unix_ms);
        self
    }
}

impl WithTimes for admin::FilterList {
    fn with_times(mut self) -> Self {
        self.imported_at = at(self.imported_at_unix_ms);
        self
    }
}

impl WithTimes for admin::DeviceNotReporting {
    fn with_times(mut self) -> Self {
        self.last_seen_at = at(self.last_seen_at_unix_ms);
        self
    }
}

impl WithTimes for admin::Home {
    fn with_times(mut self) -> Self {
        self.created_at = at(self.created_at_unix_ms);
        self
    }
}

impl WithTimes for admin::ProtectedContact {
    fn with_times(mut self) -> Self {
        self.added_at = at(self.added_at_unix_ms);
        self
    }
}

impl WithTimes for admin::Child {
    fn with_times(mut self) -> Self {
        self.created_at = at(self.created_at_unix_ms);
        self.archived_at = at(self.archived_at_unix_ms);
        self
    }
}

impl WithTimes for admin::EnrollmentCode {
    fn with_times(mut self) -> Self {
        self.created_at = at(self.created_at_unix_ms);
        self.expires_at = at(self.expires_at_unix_ms);
        self
    }
}

impl WithTimes for admin::Enrollment {
    fn with_times(mut self) -> Self {
        self.expires_at = at(self.expires_at_unix_ms);
        self
    }
}

impl WithTimes for admin::StaffMember {
    fn with_times(mut self) -> Self {
        self.created_at = at(self.created_at_unix_ms);
        self.revoked_at = at(self.revoked_at_unix_ms);
        self.last_used_at = at(self.last_used_at_unix_ms);
        self.token_expires_at = at(self.token_expires_at_unix_ms);
        self
    }
}

impl WithTimes for admin::ChildRequestRecord {
    fn with_times(mut self) -> Self {
        self.made_at = at(self.made_at_unix_ms);
        self.received_at = at(self.received_at_unix_ms);
        self.answered_at = at(self.answered_at_unix_ms);
        self
    }
}

impl WithTimes for admin::ManagerTask {
    fn with_times(mut self) -> Self {
        self.first_attempt_at = at(self.first_attempt_at_unix_ms);
        self.last_attempt_at = at(self.last_attempt_at_unix_ms);
        self.opened_at = at(self.opened_at_unix_ms);
        self.closed_at = at(self.closed_at_unix_ms);
        self.due_at = at(self.due_at_unix_ms);
        self
    }
}

impl WithTimes for admin::WebException {
    fn with_times(mut self) -> Self {
        self.added_at = at(self.added_at_unix_ms);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_timestamps_say_what_its_unix_ms_fields_say() {
        let l = admin::LockdownRecord {
            started_at_unix_ms: 1_733_400_000_123,
            review_at_unix_ms: 1_733_486_400_000,
            ..Default::default()
        }
        .with_times();
        let started = l.started_at.expect("set");
        assert_eq!(
            (started.seconds, started.nanos),
            (1_733_400_000, 123_000_000)
        );
        assert_eq!(l.review_at.map(|t| t.seconds), Some(1_733_486_400));
        // 0 means "not set": the Timestamp is absent, never 1970.
        assert_eq!((l.until, l.lifted_at), (None, None));
    }

    #[test]
    fn a_requests_timestamp_wins_over_its_unix_ms_and_either_alone_is_read() {
        let ts = haven_proto::well_known::Timestamp {
            seconds: 1_733_400_000,
            nanos: 123_456_789,
        };
        assert_eq!(ms_of(Some(&ts), 5), 1_733_400_000_123);
        assert_eq!(ms_of(None, 1_733_400_000_000), 1_733_400_000_000);
        assert_eq!(ms_of(None, 0), 0);
        // Nonsense from a client saturates instead of wrapping; the rule reading it refuses it.
        let far = haven_proto::well_known::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(ms_of(Some(&far), 0), i64::MAX);
        // And what the CLI sends (both forms, from one value) reads back as that value.
        let ms = 1_733_486_400_250;
        assert_eq!(ms_of(at(ms).as_ref(), ms), ms);
    }

    #[test]
    fn the_registers_and_audit_records_carry_timestamps_too() {
        let d = admin::Device {
            desired_policy_at_unix_ms: 1_000,
            certificate_not_after_unix_ms: 2_000,
            ..Default::default()
        }
        .with_times();
        assert_eq!(d.desired_policy_at.map(|t| t.seconds), Some(1));
        assert_eq!(d.certificate_not_after.map(|t| t.seconds), Some(2));
        assert_eq!(d.applied_policy_at, None);
        let r = admin::OffDutyReport {
            created_at_unix_ms: 3_000,
            ..Default::default()
        }
        .with_times();
        assert_eq!(r.created_at.map(|t| t.seconds), Some(3));
        assert_eq!(r.acknowledged_at, None);
        let read = admin::RecordRead {
            at_unix_ms: 4_000,
            ..Default::default()
        }
        .with_times();
        assert_eq!(read.at.map(|t| t.seconds), Some(4));
    }

    #[test]
    fn an_inventory_stored_before_canonical_json_still_reads() {
        // As the serde derive wrote it: 64-bit numbers as JSON numbers.
        let old = r#"{"os_name":"Debian","storage_free_bytes":1024,"battery_percent":80,
            "agent_version":"0.1.0"}"#;
        let inv: admin::DeviceInventory = serde_json::from_str(old).expect("reads");
        assert_eq!(inv.storage_free_bytes, 1024);
        assert_eq!(inv.battery_percent, Some(80));
        // And the canonical form written now reads back the same.
        let now = inventory_json(&wire::Inventory {
            os_name: "Debian".into(),
            storage_free_bytes: 1024,
            battery_percent: Some(80),
            agent_version: "0.1.0".into(),
            ..Default::default()
        });
        assert!(now.contains(r#""storage_free_bytes":"1024""#), "{now}");
        let back: admin::DeviceInventory = serde_json::from_str(&now).expect("reads");
        assert_eq!(back, inv);
    }
}
