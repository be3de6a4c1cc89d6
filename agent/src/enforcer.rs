//! Enforcers turn a `DevicePolicy` into what the device actually allows.
//!
//! The trait is deliberately small and synchronous: the sync loop hands each new policy to
//! exactly one enforcer, and platform enforcers added later (camera via fanotify, apps via the
//! proc connector, a DNS filter) keep their own threads or file descriptors behind it. What a
//! policy *means* is decided in [`crate::core`], never here, so every enforcer agrees.

use std::io::Write;

pub use haven_proto::agent::v1::DevicePolicy;

/// Why an enforcer could not apply (part of) a policy. The text goes to staff in
/// `PolicyApplied.error`, so it says what failed in plain words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not enforce {area}: {reason}")]
pub struct EnforceError {
    /// Which part of the policy failed: "camera", "web", "apps", "contacts", ...
    pub area: &'static str,
    pub reason: String,
}

impl EnforceError {
    pub fn new(area: &'static str, reason: impl Into<String>) -> Self {
        Self {
            area,
            reason: reason.into(),
        }
    }
}

/// Something that makes the device obey a policy. Applying is idempotent: applying the same
/// policy twice leaves the device in the same state.
pub trait Enforcer: Send {
    /// Short name for logs and `--enforcer`, e.g. "log".
    fn name(&self) -> &'static str;

    /// Replaces whatever was in force with `policy` (policies are never merged).
    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError>;

    /// Shows the child a short message (say, that staff answered their request). The device
    /// has no notification area of its own yet, so the default does nothing; enforcers that
    /// own a way to reach the child override it.
    fn tell_child(&mut self, _message: &str) {}

    /// How each of its guards stands (D1, D5): staff must be able to tell a device that
    /// enforces from one that only says so. The default has nothing to report.
    fn health(&self) -> Vec<GuardHealth> {
        Vec::new()
    }

    /// The category lists the controller sent changed (WB4): an enforcer that uses them
    /// takes them up and applies the policy in force again. The default has none.
    fn lists_changed(&mut self) {}
}

/// How one guard stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardState {
    Armed,
    /// Enforcing, but with something missing (the reason says what).
    Weakened(String),
    /// Not enforcing its area at all.
    Failed(String),
    /// A development enforcer: enforces nothing, by design.
    NotEnforcing(String),
}

/// One hardening item a guard relies on (see `linux::hardening`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardeningCheck {
    pub item: String,
    pub ok: bool,
    pub found: String,
    /// The one line that fixes it (empty when ok).
    pub fix: String,
}

/// A guard's state, with the hardening items it relies on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardHealth {
    /// "apps", "exec", "camera", ...
    pub guard: String,
    pub state: GuardState,
    pub hardening: Vec<HardeningCheck>,
}

impl GuardHealth {
    pub fn new(guard: &str, state: GuardState) -> Self {
        Self {
            guard: guard.to_string(),
            state,
            hardening: Vec::new(),
        }
    }

    /// True when the guard holds its area (armed, or weakened but enforcing).
    pub fn enforcing(&self) -> bool {
        matches!(self.state, GuardState::Armed | GuardState::Weakened(_))
    }
}

/// True when every guard is armed (what `READY=1` to systemd waits for).
pub fn all_armed(health: &[GuardHealth]) -> bool {
    !health.is_empty()
        && health
            .iter()
            .all(|h| matches!(h.state, GuardState::Armed | GuardState::Weakened(_)))
}

/// Stands in for a guard that could not start (failed) or was switched off while another
/// guard covers its area (weakened), so the device says so (D5) while the others enforce.
#[derive(Debug, Clone)]
pub struct FailedGuard {
    guard: &'static str,
    state: GuardState,
}

impl FailedGuard {
    /// The guard could not start: every policy acknowledgement says so too.
    pub fn new(guard: &'static str, reason: impl Into<String>) -> Self {
        Self {
            guard,
            state: GuardState::Failed(reason.into()),
        }
    }

    /// The guard is not running, but its area is still enforced in a weaker way.
    pub fn weakened(guard: &'static str, reason: impl Into<String>) -> Self {
        Self {
            guard,
            state: GuardState::Weakened(reason.into()),
        }
    }
}

impl Enforcer for FailedGuard {
    fn name(&self) -> &'static str {
        self.guard
    }

    fn apply(&mut self, _policy: &DevicePolicy) -> Result<(), EnforceError> {
        match &self.state {
            GuardState::Failed(reason) => Err(EnforceError::new(self.guard, reason.clone())),
            _ => Ok(()),
        }
    }

    fn health(&self) -> Vec<GuardHealth> {
        vec![GuardHealth::new(self.guard, self.state.clone())]
    }
}

/// Wraps a development enforcer (`log`, `null`) so it says, to the person starting it and to
/// the controller, that it enforces nothing.
pub struct DevelopmentOnly<E>(pub E);

impl<E: Enforcer> Enforcer for DevelopmentOnly<E> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        self.0.apply(policy)
    }

    fn tell_child(&mut self, message: &str) {
        self.0.tell_child(message);
    }

    fn lists_changed(&mut self) {
        self.0.lists_changed();
    }

    fn health(&self) -> Vec<GuardHealth> {
        vec![GuardHealth::new(
            self.0.name(),
            GuardState::NotEnforcing(format!(
                "--enforcer {} is for development only and enforces nothing",
                self.0.name()
            )),
        )]
    }
}

impl<E: Enforcer + ?Sized> Enforcer for Box<E> {
    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        (**self).apply(policy)
    }

    fn tell_child(&mut self, message: &str) {
        (**self).tell_child(message);
    }

    fn lists_changed(&mut self) {
        (**self).lists_changed();
    }

    fn health(&self) -> Vec<GuardHealth> {
        (**self).health()
    }
}

/// Enforces nothing and prints one line per decision to stdout. Used where there is no
/// platform enforcer yet, and by tests, which wait for the text `policy version N`.
#[derive(Debug, Default)]
pub struct LogEnforcer;

impl Enforcer for LogEnforcer {
    fn name(&self) -> &'static str {
        "log"
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        let line = format!("enforce: {}\n", crate::core::summary_line(policy));
        // One write of the whole line, flushed at once, so the line is never interleaved with
        // other output and a test reading a pipe sees it immediately.
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop enforcement: the log is informative only.
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        Ok(())
    }

    /// Prints `tell: MESSAGE` (tests wait for e.g. `answer to your request`).
    fn tell_child(&mut self, message: &str) {
        let line = format!("tell: {}\n", message.replace('\n', " "));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

/// Does nothing at all; for benchmarks that run many agents in one process.
#[derive(Debug, Default)]
pub struct NullEnforcer;

impl Enforcer for NullEnforcer {
    fn name(&self) -> &'static str {
        "null"
    }

    fn apply(&mut self, _policy: &DevicePolicy) -> Result<(), EnforceError> {
        Ok(())
    }
}

/// Several enforcers applied as one: each platform guard (apps, camera, contacts, web) owns
/// one area, and the device obeys a policy only when every guard has applied it.
///
/// Every guard is given the policy even when an earlier one failed, so one broken guard
/// never leaves the others enforcing an old policy; the first error is reported.
pub struct CompositeEnforcer {
    name: &'static str,
    parts: Vec<Box<dyn Enforcer>>,
}

impl CompositeEnforcer {
    pub fn new(name: &'static str, parts: Vec<Box<dyn Enforcer>>) -> Self {
        Self { name, parts }
    }
}

impl Enforcer for CompositeEnforcer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        let mut first_error = None;
        for part in &mut self.parts {
            if let Err(e) = part.apply(policy) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn tell_child(&mut self, message: &str) {
        for part in &mut self.parts {
            part.tell_child(message);
        }
    }

    fn lists_changed(&mut self) {
        for part in &mut self.parts {
            part.lists_changed();
        }
    }

    /// Every part's guards, in order.
    fn health(&self) -> Vec<GuardHealth> {
        self.parts.iter().flat_map(|p| p.health()).collect()
    }
}

/// The enforcers `haven-agent run --enforcer` can choose from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnforcerKind {
    #[default]
    Log,
    Null,
}

impl EnforcerKind {
    /// The enforcer, marked as development only (it reports itself as not enforcing).
    pub fn build(self) -> Box<dyn Enforcer> {
        match self {
            EnforcerKind::Log => Box::new(DevelopmentOnly(LogEnforcer)),
            EnforcerKind::Null => Box::new(DevelopmentOnly(NullEnforcer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_enforcers_accept_any_policy() {
        for kind in [EnforcerKind::Log, EnforcerKind::Null] {
            let mut e = kind.build();
            assert!(e.apply(&crate::core::safe_default()).is_ok());
        }
        assert_eq!(EnforcerKind::Null.build().name(), "null");
        assert_eq!(
            EnforceError::new("camera", "no device").to_string(),
            "could not enforce camera: no device"
        );
    }

    struct Failing(&'static str);
    impl Enforcer for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn apply(&mut self, _policy: &DevicePolicy) -> Result<(), EnforceError> {
            Err(EnforceError::new(self.0, "broken"))
        }
    }

    #[test]
    fn a_composite_applies_every_part_and_reports_the_first_failure() {
        let mut c = CompositeEnforcer::new(
            "linux",
            vec![
                Box::new(Failing("camera")),
                Box::new(NullEnforcer),
                Box::new(Failing("web")),
            ],
        );
        assert_eq!(c.name(), "linux");
        let e = c.apply(&crate::core::safe_default()).unwrap_err();
        assert_eq!(e.area, "camera");
        assert!(
            CompositeEnforcer::new("x", vec![Box::new(NullEnforcer)])
                .apply(&crate::core::safe_default())
                .is_ok()
        );
    }

    struct Guard(GuardState);
    impl Enforcer for Guard {
        fn name(&self) -> &'static str {
            "camera"
        }
        fn apply(&mut self, _policy: &DevicePolicy) -> Result<(), EnforceError> {
            Ok(())
        }
        fn health(&self) -> Vec<GuardHealth> {
            vec![GuardHealth::new("camera", self.0.clone())]
        }
    }

    // clause D1, D5: the device can tell staff which guards hold.
    #[test]
    fn d5_a_composite_reports_every_guard_and_development_enforcers_say_they_enforce_nothing() {
        let c = CompositeEnforcer::new(
            "linux",
            vec![
                Box::new(LogEnforcer),
                Box::new(Guard(GuardState::Armed)),
                Box::new(FailedGuard::new("exec", "fanotify is missing")),
            ],
        );
        let health = c.health();
        assert_eq!(health.len(), 2, "the plain log part has nothing to say");
        assert!(health[0].enforcing());
        assert_eq!(
            health[1].state,
            GuardState::Failed("fanotify is missing".into())
        );
        assert!(!all_armed(&health));
        assert!(all_armed(&health[..1]));
        assert!(!all_armed(&[]));
        for kind in [EnforcerKind::Log, EnforcerKind::Null] {
            let h = kind.build().health();
            assert!(
                matches!(&h[0].state, GuardState::NotEnforcing(r) if r.contains("development only")),
                "{h:?}"
            );
        }
        let weakened = GuardHealth::new("exec", GuardState::Weakened("noexec".into()));
        assert!(weakened.enforcing() && all_armed(&[weakened]));
    }
}
