//! Whether a device enforces its child's plan (D1, D5), from what its guards reported: staff
//! must be able to tell a device that holds from one that only acknowledges policies.
//!
//! - "not enforcing: camera guard failed (…)" — a guard is not armed (it failed, or the
//!   agent runs a development enforcer): a `tampering` violation is raised and a lockdown
//!   does not count the device as locked.
//! - "enforcing, weakened: …" — every guard holds, but the device lacks hardening the guards
//!   rely on (each item listed with the one line that fixes it in `haven device show`).
//! - "enforcing" — every guard armed and nothing missing.

use serde::{Deserialize, Serialize};

/// A guard's state as the device reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardState {
    Armed,
    Weakened,
    Failed,
    NotEnforcing,
    /// A state this controller does not know (a newer agent): counted as not armed.
    Unknown,
}

impl GuardState {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardState::Armed => "armed",
            GuardState::Weakened => "weakened",
            GuardState::Failed => "failed",
            GuardState::NotEnforcing => "not enforcing",
            GuardState::Unknown => "unknown",
        }
    }

    /// The guard holds its area (armed, or weakened but enforcing).
    pub fn holds(self) -> bool {
        matches!(self, GuardState::Armed | GuardState::Weakened)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub guard: String,
    pub state: GuardState,
    #[serde(default)]
    pub reason: String,
}

/// One hardening item the device checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardening {
    pub item: String,
    pub ok: bool,
    #[serde(default)]
    pub found: String,
    #[serde(default)]
    pub fix: String,
}

/// What a device last said about its guards (stored as this JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGuards {
    pub enforcer: String,
    pub guards: Vec<Guard>,
    pub hardening: Vec<Hardening>,
}

/// Whether the device enforces, and what is wrong when it does not fully.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// The device has not said (an older agent, or never connected).
    Unreported,
    Enforcing,
    /// What is missing: weakened guards' reasons and missing hardening items.
    Weakened(Vec<String>),
    /// Why not: each guard that does not hold, with its reason.
    NotEnforcing(Vec<String>),
}

impl Enforcement {
    /// The device counts as locked/enforcing (weakened still enforces).
    pub fn holds(&self) -> bool {
        matches!(
            self,
            Enforcement::Enforcing | Enforcement::Weakened(_) | Enforcement::Unreported
        )
    }

    /// The words staff read in `haven device list` and `show`.
    pub fn words(&self) -> String {
        match self {
            Enforcement::Unreported => String::new(),
            Enforcement::Enforcing => "enforcing".into(),
            Enforcement::Weakened(what) => format!("enforcing, weakened: {}", what.join("; ")),
            Enforcement::NotEnforcing(why) => format!("not enforcing: {}", why.join("; ")),
        }
    }
}

/// How a guard that does not hold is named: "camera guard failed (no device)".
fn not_holding(g: &Guard) -> String {
    let what = match g.state {
        GuardState::NotEnforcing => format!("the {} enforcer enforces nothing", g.guard),
        GuardState::Unknown => format!("{} guard in an unknown state", g.guard),
        _ => format!("{} guard {}", g.guard, g.state.as_str()),
    };
    if g.reason.trim().is_empty() || g.state == GuardState::NotEnforcing {
        what
    } else {
        format!("{what} ({})", g.reason.trim())
    }
}

/// Whether a device with this report enforces. A report naming no guard at all enforces
/// nothing.
pub fn enforcement(report: Option<&DeviceGuards>) -> Enforcement {
    let Some(r) = report else {
        return Enforcement::Unreported;
    };
    if r.guards.is_empty() {
        return Enforcement::NotEnforcing(vec![format!(
            "the {} enforcer reported no guard",
            if r.enforcer.is_empty() {
                "device's"
            } else {
                &r.enforcer
            }
        )]);
    }
    let failing: Vec<String> = r
        .guards
        .iter()
        .filter(|g| !g.state.holds())
        .map(not_holding)
        .collect();
    if !failing.is_empty() {
        return Enforcement::NotEnforcing(failing);
    }
    let mut missing: Vec<String> = r
        .hardening
        .iter()
        .filter(|h| !h.ok)
        .map(|h| h.item.clone())
        .collect();
    for g in r.guards.iter().filter(|g| g.state == GuardState::Weakened) {
        // Weakened for missing hardening says so already through the items.
        if r.hardening.iter().all(|h| h.ok) || !g.reason.starts_with("missing") {
            missing.push(format!("{} guard: {}", g.guard, g.reason.trim()));
        }
    }
    if missing.is_empty() {
        Enforcement::Enforcing
    } else {
        Enforcement::Weakened(missing)
    }
}

/// The violation to raise for a report that does not hold: (subject, detail), or none.
pub fn violation(report: &DeviceGuards) -> Option<(String, String)> {
    match enforcement(Some(report)) {
        e @ Enforcement::NotEnforcing(_) => Some(("guards".to_string(), e.words())),
        _ => None,
    }
}

/// One line per hardening item for `haven device show`: "ok" or "missing — fix".
pub fn hardening_lines(report: &DeviceGuards) -> Vec<String> {
    report
        .hardening
        .iter()
        .map(|h| {
            if h.ok {
                format!("{}: ok", h.item)
            } else {
                format!("{}: missing ({}) — fix: {}", h.item, h.found, h.fix)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(name: &str, state: GuardState, reason: &str) -> Guard {
        Guard {
            guard: name.into(),
            state,
            reason: reason.into(),
        }
    }

    fn item(name: &str, ok: bool) -> Hardening {
        Hardening {
            item: name.into(),
            ok,
            found: if ok {
                "noexec".into()
            } else {
                "/ mounted without noexec".into()
            },
            fix: if ok {
                String::new()
            } else {
                "mount /tmp with noexec".into()
            },
        }
    }

    fn report(guards: Vec<Guard>, hardening: Vec<Hardening>) -> DeviceGuards {
        DeviceGuards {
            enforcer: "linux".into(),
            guards,
            hardening,
        }
    }

    // clause D1, D5
    #[test]
    fn d5_a_failed_guard_means_not_enforcing_with_its_reason() {
        let r = report(
            vec![
                guard("apps", GuardState::Armed, ""),
                guard("camera", GuardState::Failed, "fanotify is not available"),
            ],
            vec![item("noexec on /tmp", false)],
        );
        let e = enforcement(Some(&r));
        assert!(!e.holds());
        assert_eq!(
            e.words(),
            "not enforcing: camera guard failed (fanotify is not available)"
        );
        assert_eq!(
            violation(&r),
            Some((
                "guards".to_string(),
                "not enforcing: camera guard failed (fanotify is not available)".to_string()
            ))
        );
    }

    // clause D1, D5: `--enforcer log` is for development and says so.
    #[test]
    fn d5_a_development_enforcer_is_not_enforcing() {
        let r = report(
            vec![guard(
                "log",
                GuardState::NotEnforcing,
                "--enforcer log is for development only",
            )],
            vec![],
        );
        assert_eq!(
            enforcement(Some(&r)).words(),
            "not enforcing: the log enforcer enforces nothing"
        );
        let none = report(vec![], vec![]);
        assert!(!enforcement(Some(&none)).holds());
        let odd = report(vec![guard("apps", GuardState::Unknown, "")], vec![]);
        assert!(!enforcement(Some(&odd)).holds());
    }

    // clause D4, D5
    #[test]
    fn d5_missing_hardening_is_enforcing_weakened_and_each_item_has_its_fix() {
        let r = report(
            vec![
                guard("apps", GuardState::Armed, ""),
                guard("exec", GuardState::Weakened, "missing noexec on /tmp"),
            ],
            vec![item("noexec on /home", true), item("noexec on /tmp", false)],
        );
        let e = enforcement(Some(&r));
        assert!(e.holds());
        assert_eq!(e.words(), "enforcing, weakened: noexec on /tmp");
        assert_eq!(violation(&r), None);
        assert_eq!(
            hardening_lines(&r),
            vec![
                "noexec on /home: ok".to_string(),
                "noexec on /tmp: missing (/ mounted without noexec) — fix: mount /tmp with noexec"
                    .to_string()
            ]
        );
        let off = report(
            vec![guard("exec", GuardState::Weakened, "switched off")],
            vec![],
        );
        assert_eq!(
            enforcement(Some(&off)).words(),
            "enforcing, weakened: exec guard: switched off"
        );
        let all = report(
            vec![guard("apps", GuardState::Armed, "")],
            vec![item("x", true)],
        );
        assert_eq!(enforcement(Some(&all)), Enforcement::Enforcing);
        assert_eq!(enforcement(None), Enforcement::Unreported);
        assert!(Enforcement::Unreported.holds());
        assert_eq!(Enforcement::Unreported.words(), "");
    }
}
