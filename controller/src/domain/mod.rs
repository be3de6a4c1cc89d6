//! The rules of the home, as pure functions over plain types.
//!
//! Architecture invariant: nothing in `domain` knows about tokio, tonic, sqlx, files or the
//! clock. Callers pass the current time in; the rules can be tested without any I/O.

pub mod audit;
pub mod camera;
pub mod checkpoint;
pub mod child_voice;
pub mod contact_risk;
pub mod device_cert;
pub mod device_health;
pub mod device_input;
pub mod emergency;
pub mod enrollment;
pub mod filter;
pub mod filter_lists;
pub mod lookup;
pub mod paging;
pub mod phone;
pub mod plan;
pub mod policy;
pub mod reads;
pub mod reasons;
pub mod records;
pub mod reports;
pub mod restriction;
pub mod risk;
pub mod role;
pub mod sanction;
pub mod tokens;
pub mod trail;
pub mod violations;
pub mod working_days;

pub use records::*;
pub use role::{Action, Role};

/// Milliseconds since the Unix epoch. Every stored time is one of these, in UTC.
pub type UnixMillis = i64;
