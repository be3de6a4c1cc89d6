//! Where records live: narrow storage interfaces, one per need, and their backends.
//!
//! Each trait says only what one part of the controller needs, so a backend (SQLite, the
//! default, or PostgreSQL) implements plain operations and the conformance suite in `conformance`
//! proves every backend behaves the same. Every write that changes a record appends to the
//! audit trail in the same transaction: there is no change without its audit entry.

// Both backends mount the same query files (`store/sql/*.rs`) with `#[path]`, once per
// database type: one copy of the SQL, compiled twice. That is the point, not a slip.
#[allow(clippy::duplicate_mod)]
pub mod postgres;
#[allow(clippy::duplicate_mod)]
pub mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod testdb;
#[cfg(test)]
mod tests;

use async_trait::async_trait;

use crate::domain::audit::AuditEntry;
use crate::domain::camera::CameraIncident;
use crate::domain::checkpoint::Checkpoint;
use crate::domain::emergency::ActiveLockdown;
use crate::domain::enrollment::CodeState;
pub use crate::domain::paging::{Page, Paged};
use crate::domain::policy::ProtectedContact;
use crate::domain::reads::Read;
use crate::domain::trail::RecordFacts;
use crate::domain::{HomeScope, Role, StaffIdentity, UnixMillis};

// The sort keys of the lists read a page at a time: unique in their list, in the list's order,
// so "the rows after this key" neither skips nor repeats a row (keyset paging, not OFFSET).
/// Violations, newest first: (occurred_at, received_at, id, device_id), all descending.
pub type ViolationKey = (UnixMillis, UnixMillis, String, String);
/// Reads of a child's records, newest first: (at, seq), both descending.
pub type ReadKey = (UnixMillis, i64);
/// Children: (home name, child name, id), ascending.
pub type ChildKey = (String, String, String);
/// Devices: (child name, enrolled_at, id), ascending.
pub type DeviceKey = (String, UnixMillis, String);
/// Sanctions, newest first: opened_at descending, then id ascending.
pub type SanctionKey = (UnixMillis, String);
/// Lockdowns, newest first: started_at descending, then id ascending.
pub type LockdownKey = (UnixMillis, String);
/// Manager tasks, oldest first: (opened_at, id), ascending.
pub type TaskKey = (UnixMillis, String);
/// Staff, oldest first: (created_at, id), ascending.
pub type StaffKey = (UnixMillis, String);
/// A child's plan revisions, oldest first: the revision number.
pub type RevisionKey = (i64,);

/// Why a storage operation failed, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "no {what} called {key:?} was found: check the name or id (`{}` shows them)",
        list_command(what)
    )]
    NotFound { what: &'static str, key: String },
    #[error("more than one {what} is called {key:?}: use the id instead ({})", ids.join(", "))]
    Ambiguous {
        what: &'static str,
        key: String,
        ids: Vec<String>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{}", crate::domain::enrollment::refusal(*.0))]
    CodeUnusable(Option<CodeState>),
    #[error("the controller's disk is full, so nothing was written: free some space and try again")]
    DiskFull,
    #[error("the database failed ({0}); nothing was written")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The command that lists records of a kind, for "not found" hints.
fn list_command(what: &str) -> String {
    match what {
        "lockdown" => "haven lockdowns --all".into(),
        "obligation" => "haven obligations --all".into(),
        "sanction" => "haven sanctions".into(),
        "web exception" => "haven filter exceptions --home HOME".into(),
        _ => format!("haven {what} list"),
    }
}

/// Who made a change, as written in the audit trail.
#[derive(Clone, Debug)]
pub struct Actor(pub String);

impl Actor {
    pub fn staff(who: &StaffIdentity) -> Self {
        Actor(who.id.clone())
    }
    pub fn system() -> Self {
        Actor("system".into())
    }
    pub fn device(id: &str) -> Self {
        Actor(format!("device:{id}"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeRecord {
    pub id: String,
    pub name: String,
    pub time_zone: String,
    pub created_at: UnixMillis,
    pub children: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRecord {
    pub id: String,
    pub home_id: String,
    pub home_name: String,
    pub name: String,
    pub date_of_birth: String,
    pub created_at: UnixMillis,
    pub devices: u32,
    /// Set once the child has left: the records stay, the child is no longer listed.
    pub archived_at: Option<UnixMillis>,
    pub archive_reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub id: String,
    pub child_id: String,
    pub child_name: String,
    pub home_id: String,
    pub status: String,
    pub cert_fingerprint: String,
    pub enrolled_at: UnixMillis,
    pub last_seen_at: Option<UnixMillis>,
    /// The device's last inventory, as the JSON it was stored in.
    pub inventory: Option<String>,
    pub desired_version: u64,
    pub desired_at: UnixMillis,
    pub applied_version: u64,
    pub applied_at: Option<UnixMillis>,
    pub apply_error: Option<String>,
    pub revoked_at: Option<UnixMillis>,
    pub revoked_reason: Option<String>,
    /// What the device last said about its guards, as the JSON of
    /// `domain::device_health::DeviceGuards` (D1, D5).
    pub guards: Option<String>,
}

/// A device a lockdown reaches, as the `Lockdown` reply and `WatchLockdown` need it: no
/// inventory, guards or certificate, so a home of 10,000 devices is read quickly while the
/// lockdown is still spreading (issue 14).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachedDevice {
    pub id: String,
    pub child_name: String,
    /// The newest version the store has recorded the device applying.
    pub applied_version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaffRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub token_hint: String,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub revoked_at: Option<UnixMillis>,
    pub last_used_at: Option<UnixMillis>,
    /// Ids of the homes this person works in, sorted.
    pub homes: Vec<String>,
    /// When their token stops working (`None` only for rows older than expiry).
    pub token_expires_at: Option<UnixMillis>,
}

/// What a device must enforce is compiled from these.
#[derive(Clone, Debug)]
pub struct PolicyData {
    pub device_id: String,
    pub version: u64,
    pub changed_at: UnixMillis,
    pub child_name: String,
    pub protected_contacts: Vec<ProtectedContact>,
    /// The child's current plan revision (its JSON document), if one was ever made.
    pub plan: Option<String>,
    /// The lockdowns in force on this device.
    pub lockdowns: Vec<ActiveLockdown>,
}

/// One child's part of a home's policy inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildPolicyInput {
    pub child_id: String,
    pub name: String,
    /// The current plan revision's JSON document, if any.
    pub plan: Option<String>,
}

/// What every device policy in one home is compiled from.
#[derive(Clone, Debug, Default)]
pub struct HomePolicyInputs {
    pub protected_contacts: Vec<ProtectedContact>,
    pub children: Vec<ChildPolicyInput>,
    /// Every lockdown in force in the home (on the home, a child or a device).
    pub lockdowns: Vec<ActiveLockdown>,
}

/// A device's report of something it blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViolationRecord {
    pub id: String,
    pub kind: String,
    pub channel: String,
    pub subject: String,
    pub detail: String,
    pub occurred_at: UnixMillis,
}

/// A member of staff about to be added.
#[derive(Clone, Copy, Debug)]
pub struct NewStaff<'a> {
    pub name: &'a str,
    pub role: Role,
    /// Ids of the homes they work in.
    pub homes: &'a [String],
    pub token_hash: &'a str,
    pub token_hint: &'a str,
    pub token_expires_at: UnixMillis,
}

#[async_trait]
pub trait StaffStore: Send + Sync {
    async fn add_staff(
        &self,
        actor: &Actor,
        member: NewStaff<'_>,
        now: UnixMillis,
    ) -> StoreResult<StaffRecord>;
    /// The active staff member holding this token, if any; records when it was used (to the
    /// minute: it tells tokens apart, it is not an audit record).
    async fn staff_by_token(
        &self,
        token_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<StaffRecord>>;
    async fn list_staff(&self, include_revoked: bool) -> StoreResult<Vec<StaffRecord>>;
    /// One page of staff, oldest first; revoked ones only with `include_revoked`.
    async fn list_staff_page(
        &self,
        include_revoked: bool,
        page: &Page<StaffKey>,
    ) -> StoreResult<Paged<StaffRecord, StaffKey>>;
    /// Revokes by id or exact name. Refuses to revoke the last active administrator.
    async fn revoke_staff(
        &self,
        actor: &Actor,
        key: &str,
        now: UnixMillis,
    ) -> StoreResult<StaffRecord>;
    async fn count_staff(&self) -> StoreResult<u64>;
    /// Adds a home to those a member of staff works in (`staff_id` is an id).
    async fn add_staff_to_home(
        &self,
        actor: &Actor,
        staff_id: &str,
        home_id: &str,
        now: UnixMillis,
    ) -> StoreResult<()>;
    /// Replaces a member of staff's token with a new one (its hash and hint) that expires at
    /// `expires_at`; the old token stops working at once. Audited.
    async fn rotate_staff_token(
        &self,
        actor: &Actor,
        staff_id: &str,
        token_hash: &str,
        token_hint: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<StaffRecord>;
}

#[async_trait]
pub trait HomeStore: Send + Sync {
    async fn add_home(
        &self,
        actor: &Actor,
        name: &str,
        time_zone: &str,
        now: UnixMillis,
    ) -> StoreResult<HomeRecord>;
    async fn list_homes(&self) -> StoreResult<Vec<HomeRecord>>;
    /// Finds a home by id or by name (any case).
    async fn find_home(&self, key: &str) -> StoreResult<HomeRecord>;
}

#[async_trait]
pub trait ProtectedContactStore: Send + Sync {
    /// Adds a contact to a home's protected list, or to one child's (`child_id`), and makes a
    /// new policy version for every device in the home. Returns the contact and the version.
    async fn add_protected_contact(
        &self,
        actor: &Actor,
        home_id: &str,
        child_id: Option<&str>,
        name: &str,
        address: &str,
        now: UnixMillis,
    ) -> StoreResult<(ProtectedContact, u64)>;
    async fn list_protected_contacts(&self, home_id: &str) -> StoreResult<Vec<ProtectedContact>>;
    /// Takes one of a home's own protected contacts off its list (the record is kept, with who
    /// removed it, when and why) and makes a new policy version for every device in the home.
    /// The built-in contacts are not stored and cannot be named here.
    async fn remove_protected_contact(
        &self,
        actor: &Actor,
        home_id: &str,
        contact_id: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<(ProtectedContact, u64)>;
}

#[async_trait]
pub trait ChildStore: Send + Sync {
    async fn add_child(
        &self,
        actor: &Actor,
        home_id: &str,
        name: &str,
        date_of_birth: &str,
        now: UnixMillis,
    ) -> StoreResult<ChildRecord>;
    async fn list_children(&self, home_id: Option<&str>) -> StoreResult<Vec<ChildRecord>>;
    /// One page of children by home name, name and id: of `home_id` when set, only those of
    /// `homes` when set, archived ones only with `include_archived`.
    async fn list_children_page(
        &self,
        home_id: Option<&str>,
        include_archived: bool,
        homes: Option<&[String]>,
        page: &Page<ChildKey>,
    ) -> StoreResult<Paged<ChildRecord, ChildKey>>;
    /// Finds a child by id or by name (any case), archived or not, among the children of the
    /// homes in `scope`. A child outside it is not found, exactly as if it did not exist, and
    /// never makes a name ambiguous.
    async fn find_child_within(&self, key: &str, scope: &HomeScope) -> StoreResult<ChildRecord>;
    /// Finds a child anywhere (for the controller's own work, never for a staff request).
    async fn find_child(&self, key: &str) -> StoreResult<ChildRecord> {
        self.find_child_within(key, &HomeScope::Everywhere).await
    }
    /// Archives a child who has left; nothing about them is deleted. Refused while any of
    /// their devices is still active.
    async fn archive_child(
        &self,
        actor: &Actor,
        child_id: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<ChildRecord>;
}

/// What devices said about themselves since the last batch was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceReport {
    pub device_id: String,
    pub seen_at: UnixMillis,
    /// The newest inventory, as JSON, if one came.
    pub inventory: Option<String>,
    /// The newest policy version acknowledged: (version, error, when).
    pub applied: Option<(u64, Option<String>, UnixMillis)>,
    /// The newest guard report, as JSON, if one came.
    pub guards: Option<String>,
}

/// An enrollment code as staff see it in a list: never the code itself, only its hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollmentRecord {
    pub id: String,
    pub child_id: String,
    pub child_name: String,
    pub home_id: String,
    pub hint: String,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub expires_at: UnixMillis,
    pub used_at: Option<UnixMillis>,
    pub device_id: Option<String>,
    pub cancelled_at: Option<UnixMillis>,
    /// What the code is now (usable, used, expired, cancelled), judged at the time asked.
    pub state: crate::domain::enrollment::CodeState,
}

/// A new device, made when a code is redeemed.
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub id: String,
    pub cert_fingerprint: String,
    pub inventory: Option<String>,
}

#[async_trait]
pub trait EnrollmentStore: Send + Sync {
    async fn create_enrollment(
        &self,
        actor: &Actor,
        child_id: &str,
        code_hash: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()> {
        self.create_enrollment_with(actor, child_id, code_hash, "", "", expires_at, now)
            .await
    }
    /// Creates a code with the id and hint staff will see it by in `haven device codes`.
    #[allow(clippy::too_many_arguments)]
    async fn create_enrollment_with(
        &self,
        actor: &Actor,
        child_id: &str,
        code_hash: &str,
        id: &str,
        hint: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()>;
    /// Every code made for `child_id` (or for every child), newest first, with its state now.
    async fn list_enrollments(
        &self,
        child_id: Option<&str>,
        now: UnixMillis,
    ) -> StoreResult<Vec<EnrollmentRecord>>;
    /// Cancels a code that has not been used (kept on record, audited).
    async fn cancel_enrollment(
        &self,
        actor: &Actor,
        id: &str,
        now: UnixMillis,
    ) -> StoreResult<EnrollmentRecord>;
    /// Whether a code could be used now, and for which child; nothing is changed.
    async fn check_enrollment(
        &self,
        code_hash: &str,
        now: UnixMillis,
    ) -> StoreResult<(String, CodeState)>;
    /// Uses the code and creates the device, atomically: a code enrolls at most one device.
    async fn redeem_enrollment(
        &self,
        code_hash: &str,
        device: NewDevice,
        now: UnixMillis,
    ) -> StoreResult<DeviceRecord>;
}

/// A device certificate on record (D7): the one in use, a renewed one not yet used, or an
/// older one a renewal replaced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    pub fingerprint: String,
    pub device_id: String,
    pub issued_at: UnixMillis,
    pub not_after: UnixMillis,
    /// When the device first connected with it (then it is the one in use).
    pub first_used_at: Option<UnixMillis>,
    /// When a newer certificate took its place; it opens no stream after that.
    pub superseded_at: Option<UnixMillis>,
}

/// What happened when a device connected with a certificate (see
/// [`DeviceCertStore::certificate_in_use`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateUse {
    /// The certificate already in use (or one first seen now, from before certificates were
    /// recorded).
    Current,
    /// The device's first connection with a renewed certificate: it is now the one in use and
    /// every older one is superseded.
    SwitchedToRenewed,
}

/// Short-lived device certificates and their renewal (D7).
#[async_trait]
pub trait DeviceCertStore: Send + Sync {
    /// Records a certificate signed on renewal for an active device, with its audit entry. The
    /// certificate in use stays valid until the device first connects with the new one.
    async fn record_renewed_certificate(
        &self,
        device_id: &str,
        fingerprint: &str,
        not_after: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()>;
    /// The device a renewed certificate not yet used belongs to: a certificate the store
    /// recorded, not superseded and not expired at `now`. (The certificate in use is found by
    /// [`DeviceStore::device_by_fingerprint`].)
    async fn device_for_renewed_certificate(
        &self,
        fingerprint: &str,
        now: UnixMillis,
    ) -> StoreResult<Option<String>>;
    /// The device connected with `fingerprint` (valid until `not_after`, read from the
    /// certificate itself). A renewed certificate's first use makes it the one in use and
    /// supersedes every older one (audited); a certificate the store has no row for yet (one
    /// made before renewal existed) is recorded as it is, which is telemetry, not audited.
    async fn certificate_in_use(
        &self,
        device_id: &str,
        fingerprint: &str,
        not_after: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<CertificateUse>;
    /// The certificate a device uses now, if the store knows when it expires.
    async fn current_certificate(&self, device_id: &str) -> StoreResult<Option<DeviceCertificate>>;
    /// The certificates in use of every active device whose certificate expires before
    /// `before`, soonest first (devices near expiry that have not renewed).
    async fn certificates_expiring(
        &self,
        before: UnixMillis,
    ) -> StoreResult<Vec<DeviceCertificate>>;
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn list_devices(
        &self,
        child_id: Option<&str>,
        include_revoked: bool,
    ) -> StoreResult<Vec<DeviceRecord>>;
    /// One page of devices by child name, enrollment time and id: of `child_id` when set,
    /// only children of `homes` when set, revoked ones only with `include_revoked`.
    async fn list_devices_page(
        &self,
        child_id: Option<&str>,
        include_revoked: bool,
        homes: Option<&[String]>,
        page: &Page<DeviceKey>,
    ) -> StoreResult<Paged<DeviceRecord, DeviceKey>>;
    /// The active devices of home `home_id` (only `child_id`'s, only `device_id`, when set),
    /// by child name and enrollment time: whom a lockdown reaches.
    async fn devices_reached(
        &self,
        home_id: &str,
        child_id: Option<&str>,
        device_id: Option<&str>,
    ) -> StoreResult<Vec<ReachedDevice>>;
    async fn find_device(&self, key: &str) -> StoreResult<DeviceRecord>;
    async fn device_by_fingerprint(&self, fingerprint: &str) -> StoreResult<Option<DeviceRecord>>;
    async fn revoke_device(
        &self,
        actor: &Actor,
        device_id: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<DeviceRecord>;
    /// Writes a batch of device reports in one transaction.
    async fn record_device_reports(&self, reports: &[DeviceReport]) -> StoreResult<()>;
}

#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// What every policy in a home is compiled from: its protected contacts and its
    /// children (id, name). Devices are not loaded: the registry knows which are connected.
    async fn home_policy_inputs(&self, home_id: &str) -> StoreResult<HomePolicyInputs>;
    /// Everything needed to compile one device's policy; `None` if it is unknown or revoked.
    async fn policy_data_for_device(&self, device_id: &str) -> StoreResult<Option<PolicyData>>;
    /// The highest policy version ever handed out: a device claiming more is not believed.
    async fn highest_policy_version(&self) -> StoreResult<u64>;
}

/// A violation as stored, with the child it was made against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredViolation {
    pub id: String,
    pub device_id: String,
    pub child_id: String,
    pub child_name: String,
    pub home_id: String,
    /// The stored kind (`app_blocked`); `domain::violations::ViolationKind` reads it.
    pub kind: String,
    pub channel: String,
    pub subject: String,
    pub detail: String,
    pub occurred_at: UnixMillis,
    pub received_at: UnixMillis,
}

/// Which violations to list. Every field narrows; none set lists them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViolationFilter {
    pub child_id: Option<String>,
    pub device_id: Option<String>,
    /// The stored kind, e.g. `camera_blocked`.
    pub kind: Option<String>,
    /// Only those that happened at or after this time.
    pub since: Option<UnixMillis>,
    /// At most this many, newest first (the page size).
    pub limit: u32,
    /// Only children of these homes (ids); `None` for every home.
    pub homes: Option<Vec<String>>,
    /// Only those after this key (the last of the previous page).
    pub after: Option<ViolationKey>,
}

/// A manager task (GD3): what an attempt to reach an unknown contact asks a manager to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerTaskRecord {
    pub id: String,
    pub home_id: String,
    pub child_id: String,
    pub child_name: String,
    /// `unknown-contact`.
    pub kind: String,
    pub address: String,
    pub channel: String,
    pub summary: String,
    pub attempts: u64,
    pub first_attempt_at: UnixMillis,
    pub last_attempt_at: UnixMillis,
    pub opened_at: UnixMillis,
    pub closed_at: Option<UnixMillis>,
    pub closed_by: Option<String>,
    pub note: Option<String>,
    /// assess, refuse or no-action (GD3), once closed.
    pub decision: Option<String>,
    /// The home's time zone, which its due time is counted in.
    pub time_zone: String,
}

/// What storing a batch changed: the violations that were new (not resends), and the manager
/// tasks opened or added to by attempts to reach unknown contacts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordedViolations {
    pub new: Vec<StoredViolation>,
    pub tasks: Vec<ManagerTaskRecord>,
}

#[async_trait]
pub trait ViolationStore: Send + Sync {
    /// Stores a device's violations, ignoring any already stored (same device and id), and
    /// in the same transaction opens or adds to a manager task for each new attempt to reach
    /// an unknown contact (GD3), with their audit entries. Returns what was new.
    async fn record_violations(
        &self,
        device_id: &str,
        violations: &[ViolationRecord],
        now: UnixMillis,
    ) -> StoreResult<RecordedViolations>;
    async fn count_violations(&self, device_id: &str) -> StoreResult<u64>;
    /// Violations matching the filter, newest first (by when they happened).
    async fn list_violations(
        &self,
        filter: &ViolationFilter,
    ) -> StoreResult<Paged<StoredViolation, ViolationKey>>;
    /// Manager tasks, oldest first; only open ones unless `include_closed`.
    async fn manager_tasks(
        &self,
        child_id: Option<&str>,
        include_closed: bool,
    ) -> StoreResult<Vec<ManagerTaskRecord>>;
    /// One page of manager tasks, oldest first: of `child_id` when set, of children of
    /// `homes` when set, closed ones only with `include_closed`.
    async fn manager_tasks_page(
        &self,
        child_id: Option<&str>,
        include_closed: bool,
        homes: Option<&[String]>,
        page: &Page<TaskKey>,
    ) -> StoreResult<Paged<ManagerTaskRecord, TaskKey>>;
    async fn find_manager_task(&self, id: &str) -> StoreResult<ManagerTaskRecord>;
    /// A manager closes a task with a decision and a note; the domain's
    /// `violations::close_task` decides whether it may be closed.
    async fn close_manager_task(
        &self,
        actor: &Actor,
        id: &str,
        decision: &str,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<ManagerTaskRecord>;
}

/// A stored document (risk assessment or plan revision) and who recorded it when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDocument {
    pub id: String,
    pub child_id: String,
    /// The revision number for plans; 0 for risk assessments.
    pub number: u64,
    pub made_at: UnixMillis,
    pub made_by: String,
    pub document: String,
}

#[async_trait]
pub trait PlanStore: Send + Sync {
    /// Records a risk assessment (a JSON document already validated by the domain).
    async fn add_risk_assessment(
        &self,
        actor: &Actor,
        id: &str,
        child_id: &str,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredDocument>;
    async fn risk_assessments(&self, child_id: &str) -> StoreResult<Vec<StoredDocument>>;
    /// Adds the next revision of a child's plan. `expected_previous` is the revision the
    /// author started from: if someone else added one meanwhile the write is refused, so a
    /// change is never made on top of a plan its author has not seen. Takes a new policy
    /// version for the child's devices; returns the stored revision and that version.
    async fn add_plan_revision(
        &self,
        actor: &Actor,
        child_id: &str,
        expected_previous: u64,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<(StoredDocument, u64)>;
    /// Every revision, oldest first.
    async fn plan_revisions(&self, child_id: &str) -> StoreResult<Vec<StoredDocument>>;
    /// One page of a child's plan revisions, oldest first.
    async fn plan_revisions_page(
        &self,
        child_id: &str,
        page: &Page<RevisionKey>,
    ) -> StoreResult<Paged<StoredDocument, RevisionKey>>;
    /// [`PlanStore::add_plan_revision`], writing in the same transaction the sanction records
    /// and obligations the revision opens (RM4, RM5), each marked with the revision's number.
    async fn add_plan_revision_opening(
        &self,
        actor: &Actor,
        child_id: &str,
        expected_previous: u64,
        document: &str,
        opened: &Opened,
        now: UnixMillis,
    ) -> StoreResult<(StoredDocument, u64)>;
}

/// What a plan revision opens with it (RM4, RM5): sanction records and obligations.
#[derive(Clone, Debug, Default)]
pub struct Opened {
    pub sanctions: Vec<NewSanction>,
    pub obligations: Vec<NewObligation>,
}

/// A staff member's off-duty contact report as stored, with its manager follow-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffDutyReportRecord {
    pub id: String,
    pub home_id: String,
    pub child_id: Option<String>,
    pub reported_by: String,
    pub created_at: UnixMillis,
    pub document: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<UnixMillis>,
    pub manager_note: Option<String>,
}

#[async_trait]
pub trait ReportStore: Send + Sync {
    async fn add_off_duty_report(
        &self,
        actor: &Actor,
        home_id: &str,
        child_id: Option<&str>,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<OffDutyReportRecord>;
    async fn off_duty_reports(
        &self,
        home_id: Option<&str>,
        open_only: bool,
    ) -> StoreResult<Vec<OffDutyReportRecord>>;
    async fn find_off_duty_report(&self, id: &str) -> StoreResult<OffDutyReportRecord>;
    /// A manager has read the report and acted; refused if it was already acknowledged.
    async fn acknowledge_off_duty_report(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<OffDutyReportRecord>;
    async fn add_photography_approval(
        &self,
        actor: &Actor,
        child_id: &str,
        document: &str,
        now: UnixMillis,
    ) -> StoreResult<StoredDocument>;
    async fn photography_approvals(&self, child_id: &str) -> StoreResult<Vec<StoredDocument>>;
    /// Records a camera incident (IM2) against a child.
    async fn add_camera_incident(
        &self,
        actor: &Actor,
        child_id: &str,
        what_happened: &str,
        images_may_reach_others: bool,
        now: UnixMillis,
    ) -> StoreResult<CameraIncident>;
    /// A child's camera incidents, oldest first.
    async fn camera_incidents(&self, child_id: &str) -> StoreResult<Vec<CameraIncident>>;
}

/// A child's request and, once given, the staff answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRequestRecord {
    pub id: String,
    pub device_id: String,
    pub child_id: String,
    pub child_name: String,
    pub home_id: String,
    pub text: String,
    pub made_at: UnixMillis,
    pub received_at: UnixMillis,
    pub decision: Option<String>,
    pub reason: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<UnixMillis>,
}

#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Stores a request from a device; a resend of the same id is ignored. Returns whether it
    /// was new.
    async fn record_child_request(
        &self,
        device_id: &str,
        id: &str,
        text: &str,
        made_at: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<bool>;
    async fn child_requests(
        &self,
        child_id: Option<&str>,
        open_only: bool,
    ) -> StoreResult<Vec<ChildRequestRecord>>;
    async fn find_child_request(&self, id: &str) -> StoreResult<ChildRequestRecord>;
    /// Records the answer; refused if the request was already answered.
    async fn answer_child_request(
        &self,
        actor: &Actor,
        id: &str,
        decision: &str,
        reason: &str,
        now: UnixMillis,
    ) -> StoreResult<ChildRequestRecord>;
    /// The answered requests of one device, newest first (resent when it reconnects).
    async fn answers_for_device(&self, device_id: &str) -> StoreResult<Vec<ChildRequestRecord>>;
}

/// An emergency lockdown as stored: who started it, when, why, and whether it was lifted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockdownRecord {
    pub id: String,
    /// "home", "child" or "device".
    pub target_kind: String,
    pub home_id: String,
    pub home_name: String,
    pub child_id: Option<String>,
    pub child_name: Option<String>,
    pub device_id: Option<String>,
    pub reason: String,
    pub channels: Vec<String>,
    pub note: String,
    pub until: Option<UnixMillis>,
    pub review_at: Option<UnixMillis>,
    pub ofsted_advice: Option<String>,
    pub started_at: UnixMillis,
    pub started_by: String,
    pub started_by_name: String,
    /// The policy version that carries the lockdown to devices.
    pub policy_version: u64,
    pub lifted_at: Option<UnixMillis>,
    pub lifted_by: Option<String>,
    pub lift_note: Option<String>,
    /// The policy version that carries the lift.
    pub lifted_version: Option<u64>,
}

/// A lockdown to write: target ids already resolved, the order already validated.
#[derive(Clone, Debug)]
pub struct NewLockdown {
    pub id: String,
    pub target: crate::domain::emergency::LockdownTarget,
    pub home_id: String,
    pub order: crate::domain::emergency::LockdownOrder,
    pub started_by_name: String,
}

/// A sanction record opened with a lockdown (RM5).
#[derive(Clone, Debug)]
pub struct NewSanction {
    pub id: String,
    pub child_id: String,
    /// The JSON of the domain's `SanctionRecord`.
    pub record: String,
}

/// An obligation opened with a lockdown (RM4, RM5).
#[derive(Clone, Debug)]
pub struct NewObligation {
    pub id: String,
    pub kind: String,
    pub child_id: String,
    pub sanction_id: Option<String>,
    pub due_at: UnixMillis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanctionRow {
    pub id: String,
    pub lockdown_id: String,
    pub child_id: String,
    pub child_name: String,
    pub home_id: String,
    pub opened_at: UnixMillis,
    pub record: String,
    pub completed_at: Option<UnixMillis>,
    pub completed_by: Option<String>,
    pub signed_off_at: Option<UnixMillis>,
    pub signed_off_by: Option<String>,
    pub sign_off_note: Option<String>,
    pub discussed_at: Option<UnixMillis>,
    pub discussed_by: Option<String>,
    pub child_views: Option<String>,
    /// The plan revision that opened it, when no lockdown did (then `lockdown_id` is empty).
    pub plan_revision: Option<i64>,
    /// Whom the manager spoke to before signing off, and when (RM5).
    pub spoke_with_imposer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObligationRecord {
    pub id: String,
    pub kind: String,
    pub lockdown_id: String,
    pub sanction_id: Option<String>,
    pub child_id: String,
    pub child_name: String,
    pub home_id: String,
    pub opened_at: UnixMillis,
    pub due_at: UnixMillis,
    pub closed_at: Option<UnixMillis>,
    pub closed_by: Option<String>,
    pub done_by: Option<String>,
    pub how: Option<String>,
    pub done_at: Option<UnixMillis>,
    pub note: Option<String>,
    /// The plan revision that opened it, when no lockdown did (then `lockdown_id` is empty).
    pub plan_revision: Option<i64>,
}

#[async_trait]
pub trait LockdownStore: Send + Sync {
    /// Writes a lockdown, the sanctions and obligations it opens and its audit entry in one
    /// transaction, and takes a new policy version for its target. Never half-written.
    async fn start_lockdown(
        &self,
        actor: &Actor,
        lockdown: &NewLockdown,
        sanctions: &[NewSanction],
        obligations: &[NewObligation],
        now: UnixMillis,
    ) -> StoreResult<LockdownRecord>;
    /// Lifts a lockdown in force and takes a new policy version for its target; refused if it
    /// was already lifted.
    async fn lift_lockdown(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<LockdownRecord>;
    async fn find_lockdown(&self, id: &str) -> StoreResult<LockdownRecord>;
    /// Lockdowns newest first; only those in force unless `include_lifted`.
    async fn lockdowns(
        &self,
        home_id: Option<&str>,
        include_lifted: bool,
    ) -> StoreResult<Vec<LockdownRecord>>;
    /// One page of lockdowns, newest first: of `home_id` when set, of `homes` when set,
    /// lifted ones only with `include_lifted`.
    async fn lockdowns_page(
        &self,
        home_id: Option<&str>,
        include_lifted: bool,
        homes: Option<&[String]>,
        page: &Page<LockdownKey>,
    ) -> StoreResult<Paged<LockdownRecord, LockdownKey>>;
    /// Records that Ofsted was consulted and what it advised (RM6).
    async fn record_ofsted_advice(
        &self,
        actor: &Actor,
        id: &str,
        advice: &str,
        now: UnixMillis,
    ) -> StoreResult<LockdownRecord>;
}

#[async_trait]
pub trait SanctionStore: Send + Sync {
    /// One page of sanctions, newest first: of `home_id` when set, of `homes` when set.
    async fn sanctions_page(
        &self,
        home_id: Option<&str>,
        homes: Option<&[String]>,
        page: &Page<SanctionKey>,
    ) -> StoreResult<Paged<SanctionRow, SanctionKey>>;
    async fn find_sanction(&self, id: &str) -> StoreResult<SanctionRow>;
    /// Stores the completed record and closes its "complete" obligation; refused if done.
    async fn complete_sanction(
        &self,
        actor: &Actor,
        id: &str,
        record: &str,
        now: UnixMillis,
    ) -> StoreResult<SanctionRow>;
    /// The Registered Manager's sign-off, with whom they spoke (the person who imposed the
    /// measure); the domain's `sanction::sign_off` decides whether it may be made.
    async fn sign_off_sanction(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
        spoke_with_imposer: &str,
        now: UnixMillis,
    ) -> StoreResult<SanctionRow>;
    /// The child was spoken to about it; their views are recorded. Refused if done.
    async fn record_sanction_discussion(
        &self,
        actor: &Actor,
        id: &str,
        views: &str,
        now: UnixMillis,
    ) -> StoreResult<SanctionRow>;
}

#[async_trait]
pub trait ObligationStore: Send + Sync {
    /// Obligations, soonest due first; only open ones when `open_only`.
    async fn obligations(
        &self,
        home_id: Option<&str>,
        open_only: bool,
    ) -> StoreResult<Vec<ObligationRecord>>;
    async fn find_obligation(&self, id: &str) -> StoreResult<ObligationRecord>;
    /// Closes a notification obligation: who told the social worker, how and when. Refused
    /// if it is closed already.
    #[allow(clippy::too_many_arguments)]
    async fn record_notification(
        &self,
        actor: &Actor,
        id: &str,
        by: &str,
        how: &str,
        at: UnixMillis,
        note: &str,
        now: UnixMillis,
    ) -> StoreResult<ObligationRecord>;
}

/// A version of a category list as stored (without its bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterListRecord {
    /// Canonical category name (`domain::filter_lists::known_category`).
    pub category: String,
    pub version: u64,
    pub domains: u64,
    pub skipped: u64,
    pub source: String,
    pub licence: String,
    /// SHA-256 (hex) of the compiled bytes.
    pub sha256: String,
    pub compiled_bytes: u64,
    pub imported_at: UnixMillis,
    /// Staff id of who imported it.
    pub imported_by: String,
}

/// A compiled category list about to be stored.
#[derive(Clone, Copy, Debug)]
pub struct NewFilterList<'a> {
    pub category: &'a str,
    pub source: &'a str,
    pub licence: &'a str,
    pub compiled: &'a [u8],
    pub sha256: &'a str,
    pub domains: u64,
    pub skipped: u64,
}

/// One of a home's own web exceptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebExceptionRecord {
    pub home_id: String,
    pub domain: String,
    /// `allow` or `deny`.
    pub kind: String,
    pub added_at: UnixMillis,
    pub added_by: String,
}

/// What an import changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedList {
    pub list: FilterListRecord,
    /// The new policy version every home took because a category got its first list (what
    /// profiles block changed); `None` for a new version of a category already installed.
    pub policy_version: Option<u64>,
}

#[async_trait]
pub trait FilterStore: Send + Sync {
    /// Stores a new version of a category list with its audit entry, keeping the version
    /// before it (so a device holding that one is sent only the change) and dropping older
    /// ones. A category's first list gives every home a new policy version, in the same
    /// transaction.
    async fn import_filter_list(
        &self,
        actor: &Actor,
        list: NewFilterList<'_>,
        now: UnixMillis,
    ) -> StoreResult<ImportedList>;
    /// The current version of every category, by category name.
    async fn filter_lists(&self) -> StoreResult<Vec<FilterListRecord>>;
    /// The compiled bytes of one version, if it is still kept.
    async fn filter_list_bytes(&self, category: &str, version: u64)
    -> StoreResult<Option<Vec<u8>>>;
    /// Adds or changes one of a home's exceptions (`allow` or `deny`), with its audit entry
    /// and a new policy version for the home, which it returns.
    async fn set_web_exception(
        &self,
        actor: &Actor,
        home_id: &str,
        domain: &str,
        kind: &str,
        now: UnixMillis,
    ) -> StoreResult<(WebExceptionRecord, u64)>;
    /// Removes one of a home's exceptions (audited, new policy version for the home).
    async fn remove_web_exception(
        &self,
        actor: &Actor,
        home_id: &str,
        domain: &str,
        now: UnixMillis,
    ) -> StoreResult<(WebExceptionRecord, u64)>;
    /// A home's exceptions, by domain.
    async fn web_exceptions(&self, home_id: &str) -> StoreResult<Vec<WebExceptionRecord>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Entries in order, starting after `after_seq`, at most `limit`.
    async fn audit_entries(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEntry>>;
}

/// Signed checkpoints of the audit trail, and what the records claim happened to them, to
/// compare with the trail (R36).
#[async_trait]
pub trait TrailStore: Send + Sync {
    /// Keeps a checkpoint (not an audited change: its signature is its proof).
    async fn save_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()>;
    /// Every checkpoint kept, oldest first.
    async fn checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;
    /// What every covered record (`trail::COVERED`) says happened to it, each of which must
    /// have its audit entry, and how many violations each device has stored.
    async fn record_facts(&self) -> StoreResult<RecordFacts>;
}

/// A read of a child's records, with the reader's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub read: Read,
    pub staff_name: String,
    /// The order reads were written in: with `at`, the key a page of reads seeks by.
    pub seq: i64,
}

/// Who read which child's records (subject access requests).
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Writes a batch of reads in one transaction.
    async fn record_reads(&self, reads: &[Read]) -> StoreResult<()>;
    /// One page of the reads of one child at or after `since`, newest first.
    async fn reads_of_child(
        &self,
        child_id: &str,
        since: UnixMillis,
        page: &Page<ReadKey>,
    ) -> StoreResult<Paged<ReadRecord, ReadKey>>;
}

/// Everything the controller needs from storage.
pub trait Store:
    StaffStore
    + HomeStore
    + ProtectedContactStore
    + ChildStore
    + EnrollmentStore
    + DeviceStore
    + DeviceCertStore
    + PolicyStore
    + ViolationStore
    + AuditStore
    + PlanStore
    + ReportStore
    + RequestStore
    + LockdownStore
    + SanctionStore
    + ObligationStore
    + TrailStore
    + ReadStore
    + FilterStore
{
}

impl<T> Store for T where
    T: StaffStore
        + HomeStore
        + ProtectedContactStore
        + ChildStore
        + EnrollmentStore
        + DeviceStore
        + DeviceCertStore
        + PolicyStore
        + ViolationStore
        + AuditStore
        + PlanStore
        + ReportStore
        + RequestStore
        + LockdownStore
        + SanctionStore
        + ObligationStore
        + TrailStore
        + ReadStore
        + FilterStore
{
}
