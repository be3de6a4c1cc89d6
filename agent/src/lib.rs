//! Haven's device agent: enrolls a child's device with a controller, keeps one sync stream
//! open, and enforces the policy it receives (or the safe default when it has none).
//!
//! The library is what the `haven-agent` binary is built from, and what benchmarks use to run
//! many simulated devices in one process.
//!
//! Privacy invariant: nothing about what the child does (messages, calls, photos, browsing
//! history) ever leaves the device. The agent sends inventory, acknowledgements and, later,
//! short factual records of what it blocked; and the requests and views
//! a child chooses to send to staff (Regulation 7), only when the child writes them.

pub mod apps;
pub mod contacts;
pub mod core;
pub mod enforcer;
pub mod enroll;
#[cfg(test)]
mod fuzzing;
pub mod identity;
pub mod inventory;
pub mod journal;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod net;
pub mod report;
pub mod requests;
pub mod screening;
pub mod state;
pub mod status;
pub mod sync;
pub mod web;

pub use enforcer::{EnforceError, Enforcer, LogEnforcer, NullEnforcer};
pub use enroll::{EnrollError, Enrollment, enroll, enroll_device};
pub use identity::DeviceIdentity;
pub use state::StateDir;
pub use sync::{RunOutcome, SyncClient, SyncConfig, SyncError, SyncEvent, run};
