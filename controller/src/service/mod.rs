//! The gRPC adapters: check who is asking, turn wire messages into domain values, call the
//! domain and the store, and turn the result back into wire messages.
//!
//! Architecture invariant: rules live in `domain`; this layer only validates, translates and
//! delivers. A handler never builds SQL and never decides a policy by itself.

pub mod admin;
pub mod agent;
pub mod audit;
pub mod auth;
pub mod cluster;
pub mod convert;
pub mod emergency;
pub mod errors;
pub mod fanout;
pub mod filter;
pub mod limits;
pub mod lockdown_progress;
pub mod lookup;
pub mod pages;
pub mod plan_wire;
pub mod plans;
pub mod records;
pub mod reports;
pub mod violations;
pub mod wire_enums;

use std::sync::Arc;

use crate::pki::Pki;
use crate::registry::Registry;
use crate::store::Store;

/// What every handler shares.
pub struct Context {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub pki: Arc<Pki>,
    /// How devices and staff reach this controller, e.g. `https://haven.local:7443`.
    pub public_url: String,
    /// Device reports waiting to be written (see `reports`).
    pub reports: reports::DeviceReports,
    /// The live feed of violations, manager tasks and quiet devices (`haven violations --watch`).
    pub watch: violations::Watch,
    /// How long an active device may be silent before it is flagged "not reporting".
    pub not_reporting_after: std::time::Duration,
    /// When this controller started: no device could report while it was down.
    pub started_at: crate::domain::UnixMillis,
    /// Policy versions devices acknowledged, as they arrive (lockdown progress).
    pub acks: emergency::Acks,
    /// England and Wales bank holidays, with any corrections from the configured file.
    pub holidays: crate::domain::sanction::Holidays,
    /// What devices may claim and write: issued versions and each device's budget.
    pub limits: limits::DeviceLimits,
    /// Ends a revoked member of staff's open streams at once.
    pub sessions: auth::StaffSessions,
    /// How many days a new or rotated staff token works.
    pub staff_token_days: u32,
    /// The web filter's category lists as devices are sent them (WB4).
    pub filters: filter::FilterHub,
    /// The first administrator's login file, removed after the first successful login.
    pub first_login_file: std::sync::Mutex<Option<std::path::PathBuf>>,
    /// The key that signs audit checkpoints (separate from the CA's).
    pub audit_key: Arc<crate::audit_key::AuditKey>,
    /// Reads of children's records waiting to be written (see `audit`).
    pub reads: audit::ReadLog,
    /// The other controllers sharing the database, if any, and whether this one leads.
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// The date in a home's own time zone: review dates and deadlines are the home's dates.
pub fn today_in(time_zone: &str) -> jiff::civil::Date {
    date_in(time_zone, now_ms())
}

/// The date in a home's time zone at `at` (Unix milliseconds).
pub fn date_in(time_zone: &str, at: i64) -> jiff::civil::Date {
    let tz = jiff::tz::TimeZone::get(time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    jiff::Timestamp::from_millisecond(at)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_zoned(tz)
        .date()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
