//! The exec guard (D4): a program the plan does not allow is refused *before it runs*.
//!
//! fanotify permission events with `FAN_MARK_FILESYSTEM` (a mark on the filesystem itself,
//! so a child's own mount namespace — `unshare -Urm` — cannot step round it, as it can a mount
//! mark): `FAN_OPEN_EXEC_PERM` on every filesystem a program can be run from, and
//! `FAN_OPEN_PERM` on the filesystems a child can write to, for program code loaded by an
//! allowed process (`LD_PRELOAD`, `dlopen`), as fapolicyd does. The kernel holds each exec
//! and open until this guard answers; a refused exec fails with `EPERM` and the program never
//! runs a single instruction. The decision is [`crate::apps::exec`]'s, from what the file
//! *is* ([`super::content`]): its content, whether it lies in a trusted place, and what it
//! needs to run.
//!
//! So that a mistake here can never stop the device itself, only a child's processes are
//! governed: every other process is answered "allow" as soon as its account is read. Every
//! event is answered, at once and on one thread that never opens a file (its own opens would
//! wait for itself): a file or process that cannot be looked at is refused for a child and
//! allowed for anyone else. If the guard goes away the kernel lets everything through, which
//! is why systemd restarts the agent and the app guard's exec-event kill and `/proc` scan
//! stay as the backstop.
//!
//! One exec can be several events: a script, then its interpreter, then that program's
//! loader. After allowing a file the guard remembers, per process, the interpreter or loader
//! that file named; the next event for exactly that file in the same process comes with it
//! ([`FileUse::Granted`]). The loader met any other way was started directly (`ld.so
//! ./prog`) and is refused.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use haven_proto::agent::v1::ViolationKind;
use tracing::{info, warn};

use super::camera::{FanEvent, parse_events, response};
use super::content::{ContentCache, FileKind, Trust, is_trusted, resolve};
use super::{GuardError, describe_process, procfs};
use crate::apps::exec::{ExecRules, FileFacts, FileUse, is_childs};
use crate::apps::{AppRules, AppVerdict, BlockReason, SESSION_ESSENTIALS};
use crate::enforcer::{DevicePolicy, EnforceError, Enforcer};
use crate::report::{Blocked, BlockedSink};

const POLL_MS: libc::c_int = 250;
/// An interpreter or loader named by an allowed file must follow it within this time.
const GRANT_FOR: Duration = Duration::from_secs(5);
/// The most the answering thread reads of a file not yet known (about a tenth of a second):
/// the deadline that keeps every other exec on the device from waiting long. Allowed apps are
/// read ahead, when the plan is resolved, so this is only ever a child's own file.
const HASH_ON_ANSWER: u64 = 64 * 1024 * 1024;
/// The same refusal of the same process is reported once.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// The places a child can usually write to: their filesystems get library marks too.
pub const CHILD_WRITABLE: &[&str] = &["/home", "/tmp", "/var/tmp", "/dev/shm", "/run/user"];

/// Settings for [`ExecGuard::start`].
#[derive(Debug, Clone)]
pub struct ExecGuardConfig {
    /// A path on each filesystem programs may be run from. Empty: every real filesystem
    /// mounted now (from `/proc/self/mountinfo`).
    pub exec_filesystems: Vec<PathBuf>,
    /// A path on each filesystem a child can write to: program code loaded from there is
    /// checked too (`FAN_OPEN_PERM`).
    pub library_filesystems: Vec<PathBuf>,
    /// Where trusted programs live and names are looked up.
    pub trust: Trust,
    /// Programs this device needs even when only allowed apps may run, beyond the built-in
    /// [`SESSION_ESSENTIALS`] (names or full paths; resolved to trusted files).
    pub always_allowed: Vec<String>,
    /// How often the plan's entries are resolved to files again (a package update changes
    /// an allowed app's content) and the device's hardening is checked again.
    pub refresh_every: Duration,
    /// Check the device's hardening and report it (off in tests that watch a tmpfs only).
    pub check_hardening: bool,
}

impl Default for ExecGuardConfig {
    fn default() -> Self {
        Self {
            exec_filesystems: Vec::new(),
            library_filesystems: CHILD_WRITABLE.iter().map(PathBuf::from).collect(),
            trust: Trust::default(),
            always_allowed: Vec::new(),
            refresh_every: Duration::from_secs(30),
            check_hardening: true,
        }
    }
}

/// Counters for benchmarks and the guard's health.
#[derive(Debug, Default)]
pub struct ExecCounters {
    pub events: AtomicU64,
    pub refused: AtomicU64,
    /// Time spent deciding and answering, in nanoseconds (for benchmarks).
    pub busy_ns: AtomicU64,
    /// Of which deciding alone (before the answer is written).
    pub decide_ns: AtomicU64,
}

struct Inner {
    fan: OwnedFd,
    rules: RwLock<Arc<ExecRules>>,
    policy: Mutex<Option<DevicePolicy>>,
    essentials: Vec<String>,
    trust: Trust,
    cache: ContentCache,
    sink: Arc<dyn BlockedSink>,
    /// Per process: the interpreter or loader its last allowed file named, and when.
    granted: Mutex<HashMap<i32, (PathBuf, Instant)>>,
    recent: Mutex<HashMap<(i32, String), Instant>>,
    /// Refusals go to the reporting thread: writing the journal opens files, and an open on
    /// a watched filesystem made by the answering thread would wait for itself.
    refusals: Mutex<Option<std::sync::mpsc::Sender<Refusal>>>,
    /// The last exec allowed (pid, device, inode): the kernel follows it with a plain open
    /// event for the same file, already decided.
    last_exec: Mutex<Option<(i32, u64, u64)>>,
    /// Interpreter and loader paths with symlinks followed (cleared on every refresh).
    real_paths: Mutex<HashMap<PathBuf, PathBuf>>,
    counters: ExecCounters,
    /// The device's hardening, checked at start and on every refresh.
    hardening: Mutex<Vec<super::hardening::Item>>,
    check_hardening: bool,
    refresh_every: Duration,
    stop: AtomicBool,
    wake: Mutex<bool>,
    woken: Condvar,
}

/// What the reporting thread is handed for one refusal.
struct Refusal {
    pid: i32,
    path: String,
    reason: BlockReason,
    uid: Option<u32>,
}

/// Refuses programs the plan does not allow before they run. Its threads stop when it is
/// dropped (and the kernel then lets everything through, so keep it while the agent runs).
pub struct ExecGuard {
    inner: Arc<Inner>,
    marked: Vec<PathBuf>,
    threads: Vec<JoinHandle<()>>,
}

impl ExecGuard {
    /// Starts answering; everything is allowed until the first policy is applied.
    pub fn start(config: ExecGuardConfig, sink: Arc<dyn BlockedSink>) -> Result<Self, GuardError> {
        let guard = "exec guard";
        // SAFETY: fanotify_init takes two flag words and returns a new fd or -1.
        let raw = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT
                    | libc::FAN_CLOEXEC
                    | libc::FAN_NONBLOCK
                    // Permission events must never be dropped for lack of queue space.
                    | libc::FAN_UNLIMITED_QUEUE,
                (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint,
            )
        };
        if raw < 0 {
            let cause = io::Error::last_os_error();
            return Err(match cause.raw_os_error() {
                Some(libc::EPERM) => GuardError::NeedsRoot { guard, cause },
                _ => GuardError::Start { guard, cause },
            });
        }
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        let fan = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut essentials: Vec<String> =
            SESSION_ESSENTIALS.iter().map(|s| s.to_string()).collect();
        essentials.extend(config.always_allowed.iter().cloned());
        let inner = Arc::new(Inner {
            fan,
            rules: RwLock::new(Arc::new(ExecRules::default())),
            policy: Mutex::new(None),
            essentials,
            trust: config.trust,
            cache: ContentCache::default(),
            sink,
            granted: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            refusals: Mutex::new(None),
            last_exec: Mutex::new(None),
            real_paths: Mutex::new(HashMap::new()),
            counters: ExecCounters::default(),
            hardening: Mutex::new(if config.check_hardening {
                super::hardening::gather()
            } else {
                Vec::new()
            }),
            check_hardening: config.check_hardening,
            refresh_every: config.refresh_every.max(Duration::from_secs(1)),
            stop: AtomicBool::new(false),
            wake: Mutex::new(false),
            woken: Condvar::new(),
        });
        let exec_fs = if config.exec_filesystems.is_empty() {
            real_filesystems()
        } else {
            config.exec_filesystems
        };
        let mut marked = Vec::new();
        for path in &exec_fs {
            let mut mask = libc::FAN_OPEN_EXEC_PERM;
            if config
                .library_filesystems
                .iter()
                .any(|l| same_filesystem(l, path))
            {
                mask |= libc::FAN_OPEN_PERM;
            }
            match inner.mark(path, mask) {
                Ok(()) => marked.push(path.clone()),
                Err(e) => warn!("exec guard: cannot watch {}: {e}", path.display()),
            }
        }
        for path in &config.library_filesystems {
            if exec_fs.iter().any(|e| same_filesystem(e, path)) {
                continue;
            }
            match inner.mark(path, libc::FAN_OPEN_EXEC_PERM | libc::FAN_OPEN_PERM) {
                Ok(()) => marked.push(path.clone()),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => warn!("exec guard: cannot watch {}: {e}", path.display()),
            }
        }
        if marked.is_empty() {
            return Err(GuardError::Start {
                guard,
                cause: io::Error::other("no filesystem could be watched"),
            });
        }
        info!(
            "exec guard: programs are checked before they run on {} filesystem(s)",
            marked.len()
        );
        let spawn_err = |cause| GuardError::Start { guard, cause };
        let mut threads = Vec::new();
        {
            let (tx, rx) = std::sync::mpsc::channel::<Refusal>();
            *inner.refusals.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("haven-exec-report".into())
                    .spawn(move || {
                        // Ends when the sender is dropped (the guard stopping).
                        for r in rx {
                            inner.report(r.pid, &r.path, r.reason, r.uid);
                        }
                    })
                    .map_err(spawn_err)?,
            );
        }
        {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("haven-exec".into())
                    .spawn(move || inner.run())
                    .map_err(spawn_err)?,
            );
        }
        {
            let inner = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("haven-exec-ids".into())
                    .spawn(move || inner.refresh_loop())
                    .map_err(spawn_err)?,
            );
        }
        Ok(Self {
            inner,
            marked,
            threads,
        })
    }

    /// The paths whose filesystems are watched.
    pub fn watched(&self) -> &[PathBuf] {
        &self.marked
    }

    /// Events answered and refused so far.
    pub fn counters(&self) -> &ExecCounters {
        &self.inner.counters
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        drop(
            self.inner
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        *self.inner.wake.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.inner.woken.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Enforcer for ExecGuard {
    fn name(&self) -> &'static str {
        "exec"
    }

    /// Armed, or weakened when the device lacks hardening the guard relies on.
    fn health(&self) -> Vec<crate::enforcer::GuardHealth> {
        use crate::enforcer::{GuardHealth, GuardState, HardeningCheck};
        let items = self
            .inner
            .hardening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let missing: Vec<&str> = items
            .iter()
            .filter(|i| !i.ok)
            .map(|i| i.name.as_str())
            .collect();
        let state = if self.threads.iter().any(|t| t.is_finished()) {
            GuardState::Failed("the exec guard stopped answering".into())
        } else if missing.is_empty() {
            GuardState::Armed
        } else {
            GuardState::Weakened(format!("missing {}", missing.join(", ")))
        };
        let mut h = GuardHealth::new("exec", state);
        h.hardening = items
            .into_iter()
            .map(|i| HardeningCheck {
                item: i.name,
                ok: i.ok,
                found: i.found,
                fix: i.fix,
            })
            .collect();
        vec![h]
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        *self.inner.policy.lock().unwrap_or_else(|p| p.into_inner()) = Some(policy.clone());
        self.inner.refresh();
        Ok(())
    }
}

impl Inner {
    fn mark(&self, path: &Path, mask: u64) -> io::Result<()> {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: c is a valid NUL-terminated path that outlives the call; the other
        // arguments are plain integers and our own fanotify fd.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fan.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                mask,
                libc::AT_FDCWD,
                c.as_ptr(),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Resolves the plan's entries to files again and swaps the rules in one step. Runs on
    /// the applying thread or the refresh thread, never the answering one (it opens files).
    fn refresh(&self) {
        let Some(policy) = self
            .policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let app_rules = AppRules::from_policy(&policy, &[]);
        let resolved = resolve(&app_rules, &self.essentials, &self.trust, &self.cache);
        let rules = Arc::new(ExecRules::new(app_rules, resolved));
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
        self.real_paths
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    fn refresh_loop(&self) {
        loop {
            {
                let mut woken = self.wake.lock().unwrap_or_else(|p| p.into_inner());
                if !*woken {
                    woken = self
                        .woken
                        .wait_timeout(woken, self.refresh_every)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *woken = false;
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            self.refresh();
            if self.check_hardening {
                *self.hardening.lock().unwrap_or_else(|p| p.into_inner()) =
                    super::hardening::gather();
            }
        }
    }

    fn run(&self) {
        let mut buf = vec![0u8; 64 * 1024];
        while !self.stop.load(Ordering::Relaxed) {
            let mut pfd = libc::pollfd {
                fd: self.fan.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: pfd is one live pollfd and we pass a count of 1.
            let ready = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
            if ready > 0 {
                self.drain(&mut buf);
            }
        }
    }

    fn drain(&self, buf: &mut [u8]) {
        loop {
            // SAFETY: buf is a live, writable slice and the length passed is its length.
            let n = unsafe {
                libc::read(
                    self.fan.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n <= 0 {
                return;
            }
            let n = usize::try_from(n).unwrap_or(0).min(buf.len());
            for event in parse_events(&buf[..n]) {
                self.answer(event);
            }
        }
    }

    fn answer(&self, event: FanEvent) {
        if event.fd < 0 {
            return; // queue overflow notice: there is nothing to answer
        }
        // SAFETY: the kernel opened this fd for us in the event; we own it and close it
        // exactly once, when `file` goes out of scope (after the answer is written).
        let file = unsafe { File::from_raw_fd(event.fd) };
        let started = Instant::now();
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        // Whatever happens, this event is answered: an unanswered one would hold the process
        // (and, on the root filesystem, every exec on the machine). A bug that panics while
        // deciding lets that one file through rather than stopping the device.
        let decided =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.decide(&file, event)));
        let (allow, refusal) = decided.unwrap_or_else(|_| {
            warn!("exec guard: a decision failed unexpectedly; that file was let through");
            (true, None)
        });
        let decided = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters
            .decide_ns
            .fetch_add(decided, Ordering::Relaxed);
        let r = response(event.fd, allow);
        // SAFETY: r is 8 live bytes, exactly a struct fanotify_response.
        let written = unsafe {
            libc::write(
                self.fan.as_raw_fd(),
                r.as_ptr().cast::<libc::c_void>(),
                r.len(),
            )
        };
        if written != r.len() as isize {
            warn!(
                "exec guard: could not answer the kernel: {}",
                io::Error::last_os_error()
            );
        }
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.busy_ns.fetch_add(took, Ordering::Relaxed);
        if let Some((path, reason, uid)) = refusal {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(tx) = &*self.refusals.lock().unwrap_or_else(|p| p.into_inner()) {
                let _ = tx.send(Refusal {
                    pid: event.pid,
                    path,
                    reason,
                    uid,
                });
            }
        }
    }

    /// The answer, and what to report when it is a refusal.
    #[allow(clippy::type_complexity)]
    fn decide(
        &self,
        file: &File,
        event: FanEvent,
    ) -> (bool, Option<(String, BlockReason, Option<u32>)>) {
        let rules = self.rules.read().unwrap_or_else(|p| p.into_inner()).clone();
        if rules.refuses_nothing() || event.pid <= 0 {
            // Nothing to refuse, or a process outside our view (another pid namespace's
            // parent): never stop what cannot be governed.
            return (true, None);
        }
        let exec = event.mask & libc::FAN_OPEN_EXEC_PERM != 0;
        let meta = file.metadata();
        if !exec {
            use std::os::unix::fs::MetadataExt;
            // The open that follows an exec this guard just allowed.
            if let Ok(m) = &meta {
                let mut last = self.last_exec.lock().unwrap_or_else(|p| p.into_inner());
                if *last == Some((event.pid, m.dev(), m.ino())) {
                    *last = None;
                    return (true, None);
                }
            }
            // Most opens are of data: answered from the file's first bytes (cached), before
            // anything is read about the process.
            let code = meta.as_ref().is_ok_and(|m| {
                m.is_file() && matches!(self.cache.kind(file, m), FileKind::Elf { code: true, .. })
            });
            if !code {
                return (true, None);
            }
        }
        let pid = u32::try_from(event.pid).unwrap_or(0);
        let uid = account_of(pid);
        if !is_childs(uid) || pid == std::process::id() {
            return (true, None);
        }
        // A child's process from here on: anything that cannot be read is refused.
        let refuse = |path: String, reason| (false, Some((path, reason, uid)));
        let unknown = "an unreadable file".to_string();
        let Ok(meta) = meta else {
            return refuse(unknown, rules.rules().not_allowed_reason());
        };
        if !meta.is_file() {
            return (true, None);
        }
        let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) else {
            return refuse(unknown, rules.rules().not_allowed_reason());
        };
        let path_text = path.to_string_lossy().into_owned();
        let kind = self.cache.kind(file, &meta);
        let how = if !exec {
            FileUse::Library
        } else if self.take_grant(event.pid, &path) {
            FileUse::Granted
        } else {
            FileUse::Program
        };
        let trusted = is_trusted(&path, &meta, &self.trust);
        let size = std::os::unix::fs::MetadataExt::size(&meta);
        let content = if rules.needs_content(&path_text, size) {
            self.cache.content_within(file, &meta, HASH_ON_ANSWER)
        } else {
            None
        };
        let facts = FileFacts {
            path: &path_text,
            trusted,
            size,
            content,
            uid,
            how,
        };
        match rules.decide(&facts) {
            AppVerdict::Allow => {
                if exec {
                    use std::os::unix::fs::MetadataExt;
                    *self.last_exec.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((event.pid, meta.dev(), meta.ino()));
                    self.grant_next(event.pid, &path, &kind);
                }
                (true, None)
            }
            AppVerdict::Stop(reason) => refuse(path_text, reason),
        }
    }

    /// True when `path` is the interpreter or loader the process's last allowed file named.
    fn take_grant(&self, pid: i32, path: &Path) -> bool {
        let mut granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
        match granted.remove(&pid) {
            Some((expected, at)) => expected == path && at.elapsed() < GRANT_FOR,
            None => false,
        }
    }

    /// Remembers the interpreter or loader `path` names, for the next event of this exec.
    fn grant_next(&self, pid: i32, path: &Path, kind: &FileKind) {
        let next = match kind {
            FileKind::Script(interp) => interp,
            FileKind::Elf {
                interp: Some(interp),
                ..
            } => interp,
            _ => return,
        };
        // Relative to the file's folder, as the kernel reads it; symlinks followed with
        // lstat/readlink only (no open on this thread).
        let next = path
            .parent()
            .map_or_else(|| PathBuf::from(next), |d| d.join(next));
        let Ok(real) = std::fs::canonicalize(&next) else {
            return;
        };
        let mut granted = self.granted.lock().unwrap_or_else(|p| p.into_inner());
        if granted.len() > 4096 {
            granted.retain(|_, (_, at)| at.elapsed() < GRANT_FOR);
        }
        granted.insert(pid, (real, Instant::now()));
    }

    fn report(&self, pid: i32, path: &str, reason: BlockReason, uid: Option<u32>) {
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if recent.len() > 1024 {
                recent.retain(|_, at| now.duration_since(*at) < REPORT_AGAIN_AFTER);
            }
            let key = (pid, path.to_string());
            if recent
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < REPORT_AGAIN_AFTER)
            {
                return;
            }
            recent.insert(key, now);
        }
        let name = crate::apps::app_name(path);
        let pid = u32::try_from(pid).unwrap_or(0);
        self.sink.blocked(Blocked::now(
            ViolationKind::AppBlocked,
            path,
            format!(
                "{} was refused before it ran: {}",
                describe_process(name, pid, uid),
                reason.words()
            ),
        ));
    }
}

/// The account a process acts for. `/proc/PID` is owned by the process's effective uid, one
/// `stat` away: a child's uid there is a child's process. Otherwise (root, a system account,
/// or a process that made itself non-dumpable, whose folder then shows root) the real uid is
/// read from `/proc/PID/status`, so a child cannot hide behind `prctl`.
fn account_of(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(format!("/proc/{pid}")) {
        Ok(m) if is_childs(Some(m.uid())) => Some(m.uid()),
        _ => procfs::uid(pid),
    }
}

/// Whether two paths are on the same filesystem (`stat`'s device).
fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// Filesystem types programs cannot be run from (or that are not files at all).
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "autofs",
    "binfmt_misc",
    "efivarfs",
    "nsfs",
];

/// One mount point for each real filesystem in a mount table (`/proc/self/mountinfo`).
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let (Some(dev), Some(mount)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or_default();
        if PSEUDO.contains(&fstype) || !seen.insert(dev.to_string()) {
            continue;
        }
        out.push(PathBuf::from(unescape_mount(mount)));
    }
    out
}

/// Mount tables write space, tab, newline and backslash as `\040`-style octal.
pub fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(&String::from_utf8_lossy(oct), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn real_filesystems() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_else(|_| vec![PathBuf::from("/")])
}

#[cfg(test)]
mod tests;
