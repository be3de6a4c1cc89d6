//! The Linux guards: each owns one area of a policy, keeps its own kernel interface and
//! threads, and implements [`crate::Enforcer`] so `--enforcer linux` can combine them.
//!
//! - [`AppGuard`] (D4): learns of every `exec` from the kernel's process-event connector,
//!   with a periodic `/proc` scan as the backstop, and stops apps the plan does not allow.
//! - [`CameraGuard`] (D2, IM1): answers every open of a camera device through fanotify
//!   permission events, and stops whatever holds a camera when it is switched off.
//!
//! What a policy means is decided in [`crate::core`] and [`crate::apps`]; this module only
//! carries the decisions out and reports what it stopped through a
//! [`crate::report::BlockedSink`].

pub mod app_guard;
pub mod camera;
pub mod content;
pub mod exec_guard;
pub mod hardening;
pub mod proc_events;
pub mod procfs;
pub mod telephony;

pub use app_guard::{AppGuard, AppGuardConfig};
pub use camera::{CameraGuard, CameraGuardConfig};
pub use exec_guard::{ExecGuard, ExecGuardConfig};
pub use telephony::{TelephonyConfig, TelephonyGuard};

/// Why a guard could not start. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "the {guard} needs to run as root to watch the device ({cause}): run haven-agent as root, as its systemd unit does"
    )]
    NeedsRoot {
        guard: &'static str,
        cause: std::io::Error,
    },
    #[error("the {guard} could not start: {cause}")]
    Start {
        guard: &'static str,
        cause: std::io::Error,
    },
}

/// How a guard describes a process to staff: `name (pid N, user U)`.
pub(crate) fn describe_process(name: &str, pid: u32, uid: Option<u32>) -> String {
    let user = uid.map_or_else(|| "unknown user".to_string(), procfs::user_name);
    format!("{name} (pid {pid}, user {user})")
}
