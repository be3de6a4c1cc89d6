//! The app guard (D4): stops every app the child's plan does not allow, the moment it starts.
//!
//! Two sources, one check:
//! - the kernel's process-event connector announces each `exec` as it happens; the check runs
//!   on that thread at once (read `/proc/PID`, decide, SIGKILL);
//! - a full `/proc` scan every few seconds is the backstop (a missed or dropped event, a
//!   process that slipped past between reading and killing), and runs at once whenever a new
//!   policy is applied, for apps that were already running.
//!
//! Fail-closed, not fail-open: if the connector cannot be opened (not root, or not in the
//! host's namespaces) the guard still starts and scans every second instead, saying so in the
//! log. The policy is still enforced, only more slowly, so `apply` still succeeds; refusing to
//! run would leave nothing enforced at all.
//!
//! Whatever the policy says, the guard never stops process 1, kernel threads, the agent
//! itself or the processes it runs under (see [`crate::apps`] for the rest of the rules).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use haven_proto::agent::v1::ViolationKind;
use tracing::{info, warn};

use super::content::{self, Trust};
use super::proc_events::{ProcEvent, ProcEvents};
use super::procfs::{self, ProcessHandle};
use super::{GuardError, describe_process};
use crate::apps::{AppRules, AppVerdict, BlockReason, ProcessFacts, SESSION_ESSENTIALS};
use crate::enforcer::{DevicePolicy, EnforceError, Enforcer};
use crate::report::{Blocked, BlockedSink};

/// How often the guard scans when it cannot hear process events.
const FALLBACK_SCAN: Duration = Duration::from_secs(1);

/// Settings for [`AppGuard::start`].
#[derive(Debug, Clone)]
pub struct AppGuardConfig {
    /// Time between full scans of the running apps (the backstop to process events).
    pub scan_every: Duration,
    /// Programs this device needs even when only allowed apps may run, beyond the built-in
    /// [`crate::apps::SESSION_ESSENTIALS`] (names or full paths).
    pub always_allowed: Vec<String>,
    /// Listen to the kernel's process events. `false` scans only (at most a second apart).
    pub process_events: bool,
}

impl Default for AppGuardConfig {
    fn default() -> Self {
        Self {
            scan_every: Duration::from_secs(5),
            always_allowed: Vec::new(),
            process_events: true,
        }
    }
}

struct Inner {
    rules: RwLock<Arc<AppRules>>,
    always_allowed: Vec<String>,
    sink: Arc<dyn BlockedSink>,
    /// The agent and the processes it runs under (and process 1): never stopped.
    protected: Vec<u32>,
    /// Processes already stopped (pid, start time), so the event and the scan that both
    /// see a dying process report it once.
    stopped: Mutex<HashSet<(u32, u64)>>,
    /// One scan at a time (apply and the scanner thread may both ask).
    scan_lock: Mutex<()>,
    scan_every: Duration,
    events_live: AtomicBool,
    stop: AtomicBool,
    wake: Mutex<bool>,
    woken: Condvar,
}

/// Stops apps the plan does not allow. Threads stop when it is dropped.
pub struct AppGuard {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl AppGuard {
    /// Starts watching. Nothing is stopped until the first policy is applied.
    pub fn start(config: AppGuardConfig, sink: Arc<dyn BlockedSink>) -> Result<Self, GuardError> {
        procfs::pids().map_err(|cause| GuardError::Start {
            guard: "app guard",
            cause,
        })?;
        let mut protected = procfs::self_and_ancestors(std::process::id());
        protected.push(1);
        let events = if config.process_events {
            match ProcEvents::open() {
                Ok(events) => Some(events),
                Err(e) => {
                    warn!(
                        "app guard: cannot listen to the kernel's process events ({e}); scanning \
                         the running apps every second instead, so a blocked app may run for up \
                         to a second (run the agent as root to fix this)"
                    );
                    None
                }
            }
        } else {
            None
        };
        let inner = Arc::new(Inner {
            rules: RwLock::new(Arc::new(AppRules::default())),
            always_allowed: config.always_allowed,
            sink,
            protected,
            stopped: Mutex::new(HashSet::new()),
            scan_lock: Mutex::new(()),
            scan_every: config.scan_every.max(Duration::from_millis(100)),
            events_live: AtomicBool::new(events.is_some()),
            stop: AtomicBool::new(false),
            wake: Mutex::new(false),
            woken: Condvar::new(),
        });
        let spawn_err = |cause| GuardError::Start {
            guard: "app guard",
            cause,
        };
        let mut guard = AppGuard {
            inner: inner.clone(),
            threads: Vec::new(),
        };
        if let Some(events) = events {
            info!(
                "app guard: listening to the kernel's process events; full scan every {} s",
                inner.scan_every.as_secs_f64()
            );
            let inner = inner.clone();
            guard.threads.push(
                std::thread::Builder::new()
                    .name("haven-apps-ev".into())
                    .spawn(move || inner.listen(&events))
                    .map_err(spawn_err)?,
            );
        }
        guard.threads.push(
            std::thread::Builder::new()
                .name("haven-apps-scan".into())
                .spawn(move || inner.scan_loop())
                .map_err(spawn_err)?,
        );
        Ok(guard)
    }

    /// Whether the kernel's process events are heard (false: scanning every second).
    pub fn hears_process_events(&self) -> bool {
        self.inner.events_live.load(Ordering::Relaxed)
    }

    /// Looks at every running process now; returns how many were stopped.
    pub fn scan_now(&self) -> std::io::Result<usize> {
        self.inner.scan()
    }
}

impl Drop for AppGuard {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.inner.wake_scanner();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Enforcer for AppGuard {
    fn name(&self) -> &'static str {
        "apps"
    }

    fn health(&self) -> Vec<crate::enforcer::GuardHealth> {
        use crate::enforcer::{GuardHealth, GuardState};
        let state = if self.threads.iter().any(|t| t.is_finished()) {
            GuardState::Failed("the app guard stopped watching".into())
        } else if self.hears_process_events() {
            GuardState::Armed
        } else {
            GuardState::Weakened(
                "the kernel's process events cannot be heard: running apps are looked at once \
                 a second instead"
                    .into(),
            )
        };
        vec![GuardHealth::new("apps", state)]
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        // Essentials are allowed at the trusted paths they resolve to, never by name.
        let mut names: Vec<String> = SESSION_ESSENTIALS.iter().map(|s| s.to_string()).collect();
        names.extend(self.inner.always_allowed.iter().cloned());
        let essentials = content::essential_paths(&names, &Trust::default());
        let rules = Arc::new(AppRules::from_policy(policy, &essentials));
        *self.inner.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        // Apps already running when the policy changed are checked now, not at the next scan.
        self.inner.scan().map_err(|e| {
            EnforceError::new(
                "apps",
                format!("could not look through the running apps ({e})"),
            )
        })?;
        Ok(())
    }
}

impl Inner {
    fn rules(&self) -> Arc<AppRules> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn wake_scanner(&self) {
        *self.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.woken.notify_all();
    }

    /// The process-event thread: check each exec as it is announced.
    fn listen(&self, events: &ProcEvents) {
        let mut buf = vec![0u8; 16 * 1024];
        while !self.stop.load(Ordering::Relaxed) {
            match events.recv(&mut buf) {
                Ok(list) => {
                    for event in list {
                        match event {
                            ProcEvent::Exec { tgid, .. } => {
                                let rules = self.rules();
                                if !rules.stops_nothing() {
                                    self.check(tgid, &rules);
                                }
                            }
                            // Events were lost: find what we missed by looking at everything.
                            ProcEvent::Overrun => self.wake_scanner(),
                            ProcEvent::Subscribed { err } if err != 0 => {
                                warn!("app guard: the kernel refused process events (error {err})");
                            }
                            ProcEvent::Subscribed { .. } => {}
                        }
                    }
                }
                Err(e) => {
                    warn!(
                        "app guard: process events stopped ({e}); scanning the running apps \
                         every second instead"
                    );
                    self.events_live.store(false, Ordering::Relaxed);
                    self.wake_scanner();
                    return;
                }
            }
        }
    }

    fn scan_loop(&self) {
        loop {
            let every = if self.events_live.load(Ordering::Relaxed) {
                self.scan_every
            } else {
                self.scan_every.min(FALLBACK_SCAN)
            };
            {
                let mut woken = self.wake.lock().unwrap_or_else(|p| p.into_inner());
                if !*woken {
                    woken = self
                        .woken
                        .wait_timeout(woken, every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *woken = false;
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = self.scan() {
                warn!("app guard: could not look through the running apps ({e})");
            }
        }
    }

    /// Checks every running process; returns how many were stopped.
    fn scan(&self) -> std::io::Result<usize> {
        let _one_at_a_time = self.scan_lock.lock().unwrap_or_else(|p| p.into_inner());
        let pids = procfs::pids()?;
        {
            // Forget stopped processes that are gone, so the set stays small.
            let alive: HashSet<u32> = pids.iter().copied().collect();
            self.stopped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(pid, _)| alive.contains(pid));
        }
        let rules = self.rules();
        if rules.stops_nothing() {
            return Ok(0);
        }
        Ok(pids
            .into_iter()
            .filter(|&pid| self.check(pid, &rules))
            .count())
    }

    /// Decides about one process and stops it if it may not run. True when it was stopped.
    fn check(&self, pid: u32, rules: &AppRules) -> bool {
        if pid <= 1 || self.protected.contains(&pid) {
            return false;
        }
        // Bind to this very process before looking at it, so a pid reused after it exits is
        // never the one stopped.
        let Some(handle) = ProcessHandle::open(pid) else {
            return false;
        };
        let exe = procfs::exe(pid);
        let comm = procfs::comm(pid).unwrap_or_default();
        let mut facts = ProcessFacts {
            trusted: false,
            exe: exe.as_deref(),
            comm: &comm,
            uid: None,
            essential: false,
        };
        if rules.needs_uid() {
            facts.uid = procfs::uid(pid);
            // Whether the executable lies in a trusted place (stat only).
            facts.trusted = exe.as_deref().is_some_and(|exe| {
                let path = std::path::Path::new(exe);
                std::fs::metadata(path)
                    .is_ok_and(|meta| content::is_trusted(path, &meta, &Trust::default()))
            });
        }
        let AppVerdict::Stop(reason) = rules.decide(&facts) else {
            return false;
        };
        // Only now (most processes are allowed, and this is the hot path) read whether it is a
        // kernel thread or already dead, and its start time.
        let Some(stat) = procfs::stat(pid) else {
            return false;
        };
        if stat.is_kernel_thread() || stat.is_zombie() {
            return false;
        }
        if !self
            .stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((pid, stat.start_time))
        {
            return false; // already stopped and reported
        }
        // Whose it was, read before the kill: afterwards /proc/PID may already be gone and the
        // report would say "unknown user".
        let uid = facts.uid.or_else(|| procfs::uid(pid));
        if let Err(e) = handle.kill() {
            if e.raw_os_error() != Some(libc::ESRCH) {
                warn!(
                    "app guard: could not stop {} (pid {pid}): {e}",
                    facts.name()
                );
            }
            return false;
        }
        self.report(&facts, pid, uid, reason);
        true
    }

    fn report(&self, facts: &ProcessFacts<'_>, pid: u32, uid: Option<u32>, reason: BlockReason) {
        let name = facts.name();
        let subject = facts.exe.unwrap_or(name);
        let subject = subject.strip_suffix(" (deleted)").unwrap_or(subject);
        let detail = format!(
            "{} was stopped: {}",
            describe_process(name, pid, uid),
            reason.words()
        );
        self.sink
            .blocked(Blocked::now(ViolationKind::AppBlocked, subject, detail));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MemorySink;
    use haven_proto::agent::v1::{AppDefault, AppRule};
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;
    use std::time::Instant;

    fn blocking(name: &str) -> DevicePolicy {
        DevicePolicy {
            version: 2,
            apps: Some(AppRule {
                default: AppDefault::Allow as i32,
                allowed: vec![],
                blocked: vec![name.into()],
            }),
            ..Default::default()
        }
    }

    /// A copy of `sleep` under a name nothing else on the machine uses.
    fn blocked_copy(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let to = dir.join(name);
        std::fs::copy("/bin/sleep", &to).unwrap();
        to
    }

    fn wait_killed(child: &mut std::process::Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.signal() == Some(libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        false
    }

    // clause D4: runs without root, scanning only (this user's own processes can be stopped).
    #[test]
    fn d4_a_running_blocked_app_is_stopped_when_the_policy_arrives_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("havenunit{}", std::process::id());
        let mut child = Command::new(blocked_copy(dir.path(), &name))
            .arg("60")
            .spawn()
            .unwrap();
        let sink = Arc::new(MemorySink::default());
        let mut guard = AppGuard::start(
            AppGuardConfig {
                process_events: false,
                scan_every: Duration::from_secs(3600),
                ..Default::default()
            },
            sink.clone(),
        )
        .unwrap();
        assert!(!guard.hears_process_events());
        guard.apply(&blocking(&name)).unwrap();
        assert!(wait_killed(&mut child), "the blocked app was not stopped");
        let records = sink.take();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].kind, ViolationKind::AppBlocked);
        assert!(records[0].subject.ends_with(&name), "{:?}", records[0]);
        assert!(
            records[0]
                .detail
                .contains(&format!("(pid {}, user ", child.id())),
            "{:?}",
            records[0]
        );
        assert!(records[0].detail.contains("blocked in the child's plan"));
        // A second scan finds nothing more and reports nothing twice.
        assert_eq!(guard.scan_now().unwrap(), 0);
        assert!(sink.take().is_empty());
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    // clause D4: needs root (the process-event connector); skipped otherwise.
    #[test]
    fn d4_root_a_blocked_app_started_later_is_stopped_on_its_exec_event() {
        if !is_root() {
            eprintln!(
                "SKIPPED d4_root_a_blocked_app_started_later_is_stopped_on_its_exec_event: needs root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let name = format!("havenexec{}", std::process::id());
        let copy = blocked_copy(dir.path(), &name);
        let sink = Arc::new(MemorySink::default());
        let mut guard = AppGuard::start(
            AppGuardConfig {
                // No scan will come in time: only the exec event can stop it.
                scan_every: Duration::from_secs(3600),
                ..Default::default()
            },
            sink.clone(),
        )
        .unwrap();
        assert!(guard.hears_process_events());
        guard.apply(&blocking(&name)).unwrap();
        let mut child = Command::new(&copy).arg("60").spawn().unwrap();
        assert!(wait_killed(&mut child), "the blocked app was not stopped");
        // The report is made just after the kill: wait for it.
        let mut records = Vec::new();
        for _ in 0..1000 {
            records = sink.take();
            if !records.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(records[0].detail.contains("user root"), "{:?}", records[0]);
        // An app that is not blocked runs to its end.
        let status = Command::new("/bin/true").status().unwrap();
        assert!(status.success());
    }

    // clause D4: the guard never stops itself or what it runs under, even when told to.
    #[test]
    fn d4_the_guard_never_stops_the_agent_or_its_parents() {
        let me = std::process::id();
        let parent = procfs::stat(me).unwrap().ppid;
        let sink = Arc::new(MemorySink::default());
        let guard = AppGuard::start(
            AppGuardConfig {
                process_events: false,
                scan_every: Duration::from_secs(3600),
                ..Default::default()
            },
            sink.clone(),
        )
        .unwrap();
        // Rules that name this very test binary and its parent by path. They are put to the
        // two processes directly: a full scan would also stop other tests' children in the
        // moment between their fork and exec, while they still run this binary.
        let policy = DevicePolicy {
            apps: Some(AppRule {
                default: AppDefault::Allow as i32,
                allowed: vec![],
                blocked: [me, parent, 1]
                    .iter()
                    .filter_map(|&p| procfs::exe(p))
                    .collect(),
            }),
            ..Default::default()
        };
        let rules = AppRules::from_policy(&policy, &[]);
        assert!(!rules.stops_nothing());
        for pid in [me, parent, 1] {
            assert!(!guard.inner.check(pid, &rules), "pid {pid} was stopped");
        }
        assert!(sink.take().is_empty());
    }
}
