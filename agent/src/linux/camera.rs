//! The camera guard (D2, IM1): every open of a camera device waits for the agent's answer.
//!
//! fanotify permission events (`FAN_OPEN_PERM`) are marked on each camera node's inode, so
//! the kernel holds every `open()` of it until this guard answers: `FAN_DENY` (the opener
//! gets EPERM, and the attempt is reported with the process that tried) while the camera is
//! off, `FAN_ALLOW` while it is on. Whatever happens, every event gets an answer and its file
//! descriptor is closed — an unanswered event would leave the opener hanging. If the guard
//! itself goes away, the kernel lets pending and future opens through; that is why the agent
//! runs under systemd with `Restart=always`.
//!
//! When the camera goes off, processes that already hold a camera open (found by reading the
//! links in `/proc/*/fd`, which opens nothing) are stopped and reported.
//!
//! Camera nodes come and go (a USB camera plugged in later). The folders of the patterns
//! (`/dev/video*`, `/dev/media*`, `/dev/v4l-subdev*` by default) are watched with inotify, so
//! a new node is marked the moment it appears; a camera found while the camera is off has its
//! holders stopped at once (which also catches an opener that came between the node appearing
//! and the mark). A slow rescan stays as the backstop. No camera at all is not an error: the
//! guard runs with nothing to watch and says so.
//!
//! Note: to give the guard an event, the kernel opens the device on the guard's behalf (that
//! is how fanotify works); the guard closes it at once and never reads from it.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use haven_proto::agent::v1::ViolationKind;
use tracing::{info, warn};

use super::procfs::{self, ProcessHandle};
use super::{GuardError, describe_process};
use crate::apps::ProcessFacts;
use crate::enforcer::{DevicePolicy, EnforceError, Enforcer};
use crate::report::{Blocked, BlockedSink};

/// `struct fanotify_event_metadata` is 24 bytes; `FANOTIFY_METADATA_VERSION` is 3.
const METADATA_LEN: usize = 24;
const FAN_ALLOW: u32 = 0x01;
const FAN_DENY: u32 = 0x02;
/// The same process trying the same camera again within this time is reported once.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);
const POLL_MS: libc::c_int = 250;

/// Settings for [`CameraGuard::start`].
#[derive(Debug, Clone)]
pub struct CameraGuardConfig {
    /// Camera device paths; a `*` in the file name matches any text.
    pub paths: Vec<PathBuf>,
    /// How often to look for cameras again (the backstop: new nodes are heard at once).
    pub rescan_every: Duration,
}

impl Default for CameraGuardConfig {
    fn default() -> Self {
        Self {
            paths: ["/dev/video*", "/dev/media*", "/dev/v4l-subdev*"]
                .iter()
                .map(PathBuf::from)
                .collect(),
            rescan_every: Duration::from_secs(30),
        }
    }
}

/// One event read from the fanotify descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanEvent {
    pub mask: u64,
    /// The file the process tried to open, opened for us (`-1` when the kernel gave none).
    pub fd: i32,
    pub pid: i32,
}

/// The events in one `read()` of a fanotify descriptor. Each record says its own length;
/// a record that is shorter than the fixed header or runs past the buffer ends the parse.
pub fn parse_events(buf: &[u8]) -> Vec<FanEvent> {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at + METADATA_LEN <= buf.len() {
        let rec = &buf[at..];
        let Some(len) = u32_at(rec, 0).and_then(|l| usize::try_from(l).ok()) else {
            break;
        };
        if len < METADATA_LEN || len > rec.len() {
            break;
        }
        let (Some(mask), Some(fd), Some(pid)) = (
            rec.get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_ne_bytes),
            u32_at(rec, 16).map(|v| v as i32),
            u32_at(rec, 20).map(|v| v as i32),
        ) else {
            break;
        };
        out.push(FanEvent { mask, fd, pid });
        at += len;
    }
    out
}

/// The 8 bytes of `struct fanotify_response { __s32 fd; __u32 response; }`.
pub fn response(fd: i32, allow: bool) -> [u8; 8] {
    let mut r = [0u8; 8];
    r[..4].copy_from_slice(&fd.to_ne_bytes());
    r[4..].copy_from_slice(&(if allow { FAN_ALLOW } else { FAN_DENY }).to_ne_bytes());
    r
}

struct Inner {
    fan: OwnedFd,
    /// Hears nodes appear in the patterns' folders; `None` when inotify is unavailable (the
    /// rescan then is the only way new cameras are found).
    appear: Option<OwnedFd>,
    allowed: AtomicBool,
    sink: Arc<dyn BlockedSink>,
    patterns: Vec<PathBuf>,
    /// Marked camera nodes: path → (device, inode).
    watched: Mutex<HashMap<PathBuf, (u64, u64)>>,
    /// The agent and the processes it runs under: never stopped.
    protected: Vec<u32>,
    recent: Mutex<HashMap<(i32, PathBuf), Instant>>,
    rescan_every: Duration,
    stop: AtomicBool,
}

/// Guards the camera devices. The watching thread stops when it is dropped (and the kernel
/// then lets opens through, so keep it for as long as the agent runs).
pub struct CameraGuard {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl CameraGuard {
    /// Starts guarding with the camera off (the safe default) until a policy says otherwise.
    pub fn start(
        config: CameraGuardConfig,
        sink: Arc<dyn BlockedSink>,
    ) -> Result<Self, GuardError> {
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
                Some(libc::EPERM) => GuardError::NeedsRoot {
                    guard: "camera guard",
                    cause,
                },
                _ => GuardError::Start {
                    guard: "camera guard",
                    cause,
                },
            });
        }
        // SAFETY: the kernel just returned this fd to us and nothing else owns it.
        let fan = unsafe { OwnedFd::from_raw_fd(raw) };
        let appear = watch_folders(&config.paths);
        let inner = Arc::new(Inner {
            fan,
            appear,
            allowed: AtomicBool::new(false),
            sink,
            patterns: config.paths,
            watched: Mutex::new(HashMap::new()),
            protected: procfs::self_and_ancestors(std::process::id()),
            recent: Mutex::new(HashMap::new()),
            rescan_every: config.rescan_every.max(Duration::from_millis(100)),
            stop: AtomicBool::new(false),
        });
        inner.mark_new();
        let watched = inner.watched_paths();
        if watched.is_empty() {
            info!(
                "camera guard: no camera found ({}); nothing to watch until one appears",
                inner.pattern_list()
            );
        } else {
            info!(
                "camera guard: watching {}",
                watched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("haven-camera".into())
                .spawn(move || inner.run())
                .map_err(|cause| GuardError::Start {
                    guard: "camera guard",
                    cause,
                })?
        };
        Ok(Self {
            inner,
            thread: Some(thread),
        })
    }

    /// The camera nodes being watched now.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.inner.watched_paths()
    }
}

impl Drop for CameraGuard {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Enforcer for CameraGuard {
    fn name(&self) -> &'static str {
        "camera"
    }

    fn health(&self) -> Vec<crate::enforcer::GuardHealth> {
        use crate::enforcer::{GuardHealth, GuardState};
        let state = if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            GuardState::Failed("the camera guard stopped answering".into())
        } else {
            GuardState::Armed
        };
        vec![GuardHealth::new("camera", state)]
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        let allowed = crate::core::effective(policy).camera_allowed;
        // New opens are answered by the new rule from this moment on.
        self.inner.allowed.store(allowed, Ordering::SeqCst);
        if !allowed {
            // Whoever already holds a camera keeps it only while it is allowed. Checked on
            // every "off", not only on a change, so a camera opened before the agent started
            // (or before the node was marked) is caught too.
            let watched: Vec<(PathBuf, (u64, u64))> = self
                .inner
                .watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(p, id)| (p.clone(), *id))
                .collect();
            self.inner.stop_holders(&watched);
        }
        Ok(())
    }
}

impl Inner {
    fn pattern_list(&self) -> String {
        self.patterns
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn watched_paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Marks camera nodes not yet marked (new, or replaced since); returns them.
    fn mark_new(&self) -> Vec<(PathBuf, (u64, u64))> {
        let mut added = Vec::new();
        for pattern in &self.patterns {
            for path in procfs::expand_pattern(pattern) {
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let id = (meta.dev(), meta.ino());
                let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                if watched.get(&path) == Some(&id) {
                    continue;
                }
                match self.mark(&path) {
                    Ok(()) => {
                        watched.insert(path.clone(), id);
                        added.push((path, id));
                    }
                    Err(e) => warn!("camera guard: cannot watch {}: {e}", path.display()),
                }
            }
        }
        added
    }

    fn mark(&self, path: &Path) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: c is a valid NUL-terminated path that outlives the call; the other
        // arguments are plain integers and our own fanotify fd.
        let rc = unsafe {
            libc::fanotify_mark(
                self.fan.as_raw_fd(),
                libc::FAN_MARK_ADD,
                libc::FAN_OPEN_PERM,
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

    fn run(&self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_rescan = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let mut pfds = [
                libc::pollfd {
                    fd: self.fan.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.appear.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: pfds is a live array of two pollfds and we pass its length; a negative
            // fd is ignored by poll.
            let ready = unsafe { libc::poll(pfds.as_mut_ptr(), 2, POLL_MS) };
            if ready > 0 && pfds[0].revents != 0 {
                self.drain(&mut buf);
            }
            let appeared = ready > 0 && pfds[1].revents != 0 && self.drain_appear(&mut buf);
            if appeared || last_rescan.elapsed() >= self.rescan_every {
                last_rescan = Instant::now();
                let added = self.mark_new();
                if !added.is_empty() {
                    for (path, _) in &added {
                        info!("camera guard: now watching {}", path.display());
                    }
                    if !self.allowed.load(Ordering::SeqCst) {
                        self.stop_holders(&added);
                    }
                }
            }
        }
    }

    /// Empties the inotify queue; true when something appeared (what, the patterns decide).
    fn drain_appear(&self, buf: &mut [u8]) -> bool {
        let Some(fd) = &self.appear else {
            return false;
        };
        let mut any = false;
        loop {
            // SAFETY: buf is a live, writable slice and the length passed is its length.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n <= 0 {
                return any;
            }
            any = true;
        }
    }

    /// Reads and answers every queued event.
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
                // EAGAIN: nothing more queued. Anything else: try again on the next poll.
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
            return; // queue overflow notice: there is no open to answer
        }
        // SAFETY: the kernel opened this fd for us in the event; we own it and close it
        // exactly once, when `file` goes out of scope (after the answer is written).
        let file = unsafe { OwnedFd::from_raw_fd(event.fd) };
        if event.mask & libc::FAN_OPEN_PERM == 0 {
            return;
        }
        let allow = self.allowed.load(Ordering::SeqCst);
        let pid = u32::try_from(event.pid).unwrap_or(0);
        // Read who is asking while they wait (their /proc entry cannot go away meanwhile).
        let who = (!allow).then(|| Who::read(pid));
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
                "camera guard: could not answer an open of the camera: {}",
                io::Error::last_os_error()
            );
        }
        if let Some(who) = who {
            let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                .unwrap_or_else(|_| PathBuf::from("the camera"));
            drop(file);
            if self.first_time(event.pid, &path) {
                self.sink.blocked(Blocked::now(
                    ViolationKind::CameraBlocked,
                    who.subject(),
                    format!(
                        "{} tried to open the camera ({}) and was refused: the camera is off in \
                         the child's plan",
                        who.describe(pid),
                        path.display()
                    ),
                ));
            }
        }
    }

    /// False when this process was already reported for this camera a moment ago (an app
    /// retrying in a loop is one attempt, not hundreds).
    fn first_time(&self, pid: i32, path: &Path) -> bool {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if recent.len() > 1024 {
            recent.retain(|_, at| now.duration_since(*at) < REPORT_AGAIN_AFTER);
        }
        let key = (pid, path.to_path_buf());
        match recent.get(&key) {
            Some(at) if now.duration_since(*at) < REPORT_AGAIN_AFTER => false,
            _ => {
                recent.insert(key, now);
                true
            }
        }
    }

    /// Stops every process that holds one of `cameras` open, and reports each.
    fn stop_holders(&self, cameras: &[(PathBuf, (u64, u64))]) {
        if cameras.is_empty() {
            return;
        }
        let Ok(pids) = procfs::pids() else {
            return;
        };
        for pid in pids {
            if pid <= 1 || self.protected.contains(&pid) {
                continue;
            }
            let Some(camera) = holding(pid, cameras) else {
                continue;
            };
            let Some(handle) = ProcessHandle::open(pid) else {
                continue;
            };
            let who = Who::read(pid);
            match handle.kill() {
                Ok(()) => self.sink.blocked(Blocked::now(
                    ViolationKind::CameraBlocked,
                    who.subject(),
                    format!(
                        "{} was using the camera ({}) when it was switched off, and was stopped",
                        who.describe(pid),
                        camera.display()
                    ),
                )),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => warn!(
                    "camera guard: could not stop {} (pid {pid}), which has the camera open: {e}",
                    who.name()
                ),
            }
        }
    }
}

/// An inotify descriptor watching the folders the patterns name, for nodes that appear
/// (created, moved in, or their permissions set by udev). `None` when none can be watched.
fn watch_folders(patterns: &[PathBuf]) -> Option<OwnedFd> {
    // SAFETY: inotify_init1 takes a flag word and returns a new fd or -1.
    let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if raw < 0 {
        warn!(
            "camera guard: cannot hear cameras appear ({}); looking for them on a timer",
            io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut folders: Vec<&Path> = patterns.iter().filter_map(|p| p.parent()).collect();
    folders.sort();
    folders.dedup();
    let mut watching = 0;
    for folder in folders {
        let Ok(c) = CString::new(folder.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: c is a valid NUL-terminated path that outlives the call.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                c.as_ptr(),
                libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB,
            )
        };
        if wd < 0 {
            warn!(
                "camera guard: cannot hear cameras appear in {}: {}",
                folder.display(),
                io::Error::last_os_error()
            );
        } else {
            watching += 1;
        }
    }
    (watching > 0).then_some(fd)
}

/// Which of `cameras` process `pid` has open, if any. Only links that name a file are looked
/// at further (sockets and pipes are skipped), and only with `stat`, which opens nothing.
fn holding(pid: u32, cameras: &[(PathBuf, (u64, u64))]) -> Option<&Path> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for entry in dir.filter_map(Result::ok) {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.is_absolute() {
            continue;
        }
        if let Some((path, _)) = cameras.iter().find(|(p, _)| *p == target) {
            return Some(path);
        }
        // The same node reached by another name (a symlink such as /dev/v4l/by-id/...).
        if let Ok(meta) = std::fs::metadata(entry.path())
            && let Some((path, _)) = cameras
                .iter()
                .find(|(_, id)| *id == (meta.dev(), meta.ino()))
        {
            return Some(path);
        }
    }
    None
}

/// The process behind an event, as staff will read it.
struct Who {
    exe: Option<String>,
    comm: String,
    uid: Option<u32>,
}

impl Who {
    fn read(pid: u32) -> Self {
        Self {
            exe: procfs::exe(pid),
            comm: procfs::comm(pid).unwrap_or_default(),
            uid: procfs::uid(pid),
        }
    }

    fn facts(&self) -> ProcessFacts<'_> {
        ProcessFacts {
            exe: self.exe.as_deref(),
            comm: &self.comm,
            uid: self.uid,
            essential: false,
            trusted: false,
        }
    }

    fn name(&self) -> String {
        self.facts().name().to_string()
    }

    fn subject(&self) -> String {
        match &self.exe {
            Some(exe) => exe.strip_suffix(" (deleted)").unwrap_or(exe).to_string(),
            None => self.name(),
        }
    }

    fn describe(&self, pid: u32) -> String {
        describe_process(&self.name(), pid, self.uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(len: u32, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&len.to_ne_bytes());
        r.push(3); // version
        r.push(0);
        r.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        r.extend_from_slice(&mask.to_ne_bytes());
        r.extend_from_slice(&fd.to_ne_bytes());
        r.extend_from_slice(&pid.to_ne_bytes());
        r.resize(len as usize, 0);
        r
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn wait_for_records(sink: &crate::report::MemorySink) -> Vec<Blocked> {
        for _ in 0..1000 {
            let records = sink.take();
            if !records.is_empty() {
                return records;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Vec::new()
    }

    fn camera(allowed: bool) -> DevicePolicy {
        DevicePolicy {
            version: 2,
            camera: Some(haven_proto::agent::v1::CameraRule {
                allowed,
                reason: String::new(),
            }),
            ..Default::default()
        }
    }

    // clause D2, IM1: needs root (fanotify); a temp file stands in for the camera node.
    #[test]
    fn d2_root_opens_are_refused_while_off_allowed_while_on_and_holders_stopped() {
        use std::os::unix::process::ExitStatusExt;
        if !is_root() {
            eprintln!(
                "SKIPPED d2_root_opens_are_refused_while_off_allowed_while_on_and_holders_stopped: needs root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cam = dir.path().join("video-standin");
        std::fs::write(&cam, b"").unwrap();
        let sink = Arc::new(crate::report::MemorySink::default());
        let mut guard = CameraGuard::start(
            CameraGuardConfig {
                paths: vec![cam.clone()],
                ..Default::default()
            },
            sink.clone(),
        )
        .unwrap();
        assert_eq!(guard.watched(), vec![cam.clone()]);
        // Off until a policy says otherwise.
        let err = std::fs::File::open(&cam).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        // The answer goes out before the report is made, so wait for the report.
        let records = wait_for_records(&sink);
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].kind, ViolationKind::CameraBlocked);
        assert!(
            records[0].detail.contains("was refused"),
            "{:?}",
            records[0]
        );
        // On: opens pass.
        guard.apply(&camera(true)).unwrap();
        drop(std::fs::File::open(&cam).unwrap());
        // A process holding the camera is stopped when it goes off.
        let mut holder = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec /bin/sleep 60 < '{}'", cam.display()))
            .spawn()
            .unwrap();
        let held = (0..2000).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            procfs::exe(holder.id()).is_some_and(|e| e.ends_with("sleep"))
                && holding(holder.id(), &[(cam.clone(), (0, 0))]).is_some()
        });
        assert!(held, "the holder never opened the camera");
        guard.apply(&camera(false)).unwrap();
        let status = holder.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        let records = wait_for_records(&sink);
        assert!(
            records
                .iter()
                .any(|r| r.detail.contains("when it was switched off")),
            "{records:?}"
        );
        assert!(std::fs::File::open(&cam).is_err());
    }

    // clause D2, IM1: a camera plugged in later (video, media or v4l-subdev node) is guarded
    // the moment it appears, not at the next scan. Needs root (fanotify); a temp folder
    // stands in for /dev.
    #[test]
    fn d2_root_a_camera_node_that_appears_later_is_guarded_at_once() {
        if !is_root() {
            eprintln!(
                "SKIPPED d2_root_a_camera_node_that_appears_later_is_guarded_at_once: needs root"
            );
            return;
        }
        let dev = tempfile::tempdir().unwrap();
        let sink = Arc::new(crate::report::MemorySink::default());
        let _guard = CameraGuard::start(
            CameraGuardConfig {
                paths: ["video*", "media*", "v4l-subdev*"]
                    .iter()
                    .map(|p| dev.path().join(p))
                    .collect(),
                // No scan will come in time: only hearing the node appear can guard it.
                rescan_every: Duration::from_secs(3600),
            },
            sink.clone(),
        )
        .unwrap();
        for name in ["video3", "media1", "v4l-subdev0"] {
            let node = dev.path().join(name);
            std::fs::write(&node, b"").unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let refused = loop {
                match std::fs::File::open(&node) {
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => break true,
                    _ if Instant::now() > deadline => break false,
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            assert!(refused, "{name} was not guarded when it appeared");
        }
    }

    #[test]
    fn d2_the_default_guards_video_media_and_subdevice_nodes() {
        let paths = CameraGuardConfig::default().paths;
        for p in ["/dev/video*", "/dev/media*", "/dev/v4l-subdev*"] {
            assert!(paths.contains(&PathBuf::from(p)), "{p}");
        }
    }

    // clause D2: every open the kernel asks about is found in what it sends.
    #[test]
    fn d2_fanotify_events_are_read_with_their_lengths_checked() {
        let mut two = record(24, libc::FAN_OPEN_PERM, 7, 4242);
        // A longer record (with extra information after the header) is stepped over whole.
        two.extend(record(32, libc::FAN_OPEN_PERM, 8, 4343));
        let events = parse_events(&two);
        assert_eq!(
            events,
            vec![
                FanEvent {
                    mask: libc::FAN_OPEN_PERM,
                    fd: 7,
                    pid: 4242
                },
                FanEvent {
                    mask: libc::FAN_OPEN_PERM,
                    fd: 8,
                    pid: 4343
                }
            ]
        );
        for cut in 0..24 {
            assert!(parse_events(&two[..cut]).is_empty(), "cut at {cut}");
        }
        assert_eq!(
            parse_events(&two[..40]).len(),
            1,
            "a truncated second record"
        );
        // A length shorter than the header would never advance: stop instead.
        let mut short = record(24, 0, 1, 1);
        short[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(parse_events(&short).is_empty());
        // A length beyond the buffer.
        let mut long = record(24, 0, 1, 1);
        long[0..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(parse_events(&long).is_empty());
    }

    #[test]
    fn d2_answers_are_laid_out_as_the_kernel_expects() {
        let allow = response(9, true);
        assert_eq!(i32::from_ne_bytes(allow[..4].try_into().unwrap()), 9);
        assert_eq!(
            u32::from_ne_bytes(allow[4..].try_into().unwrap()),
            FAN_ALLOW
        );
        let deny = response(9, false);
        assert_eq!(u32::from_ne_bytes(deny[4..].try_into().unwrap()), FAN_DENY);
    }
}
