//! What the guards read about processes from `/proc`, and how they stop one.
//!
//! Everything here tolerates processes vanishing mid-read (they do, all the time): a read that
//! fails gives `None`, never an error or a panic. Stopping a process goes through a pidfd where
//! the kernel has one, so a process that exited and whose pid was reused is never the one
//! stopped.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The kernel's flag for a kernel thread in `/proc/PID/stat` (`PF_KTHREAD`).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The fields of `/proc/PID/stat` the guards use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `Z` (a zombie: already dead, waiting for its parent), ...
    pub state: u8,
    pub ppid: u32,
    pub flags: u64,
    /// Clock ticks after boot at which it started: with the pid, this names one process
    /// uniquely even when pids are reused.
    pub start_time: u64,
}

impl Stat {
    pub fn is_kernel_thread(&self) -> bool {
        self.flags & PF_KTHREAD != 0
    }

    pub fn is_zombie(&self) -> bool {
        self.state == b'Z' || self.state == b'X'
    }
}

/// Parses `/proc/PID/stat`. The process name (field 2) may contain spaces and parentheses,
/// so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: state(3) ppid(4) pgrp session tty_nr tpgid flags(9) ... starttime(22).
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    Some(Stat {
        state: *field(3)?.as_bytes().first()?,
        ppid: field(4)?.parse().ok()?,
        flags: field(9)?.parse().ok()?,
        start_time: field(22)?.parse().ok()?,
    })
}

/// The real uid from `/proc/PID/status` (the `Uid:` line: real, effective, saved, fs).
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_ascii_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

fn proc_path(pid: u32, what: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{what}"))
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(proc_path(pid, "stat")).ok()?)
}

/// The executable's path; `None` for kernel threads, zombies and vanished processes.
pub fn exe(pid: u32) -> Option<String> {
    let path = fs::read_link(proc_path(pid, "exe")).ok()?;
    Some(path.to_string_lossy().into_owned())
}

pub fn comm(pid: u32) -> Option<String> {
    let text = fs::read_to_string(proc_path(pid, "comm")).ok()?;
    Some(text.trim_end_matches('\n').to_string())
}

pub fn uid(pid: u32) -> Option<u32> {
    parse_status_uid(&fs::read_to_string(proc_path(pid, "status")).ok()?)
}

/// Every process id now in `/proc`.
pub fn pids() -> io::Result<Vec<u32>> {
    Ok(fs::read_dir("/proc")?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// `pid` and the processes it runs under, up to process 1.
pub fn self_and_ancestors(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut at = pid;
    // Bounded: a pid chain longer than this would be a broken /proc, not a real tree.
    for _ in 0..256 {
        match stat(at) {
            Some(s) if s.ppid != 0 && !out.contains(&s.ppid) => {
                out.push(s.ppid);
                at = s.ppid;
            }
            _ => break,
        }
    }
    out
}

/// What the open file descriptors of `pid` point at (readlink only: nothing is opened).
pub fn open_files(pid: u32) -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(proc_path(pid, "fd")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| fs::read_link(e.path()).ok())
        .collect()
}

/// The account name for `uid`, from a passwd-format file; `uid N` when it has none.
pub fn user_name_in(passwd: &str, uid: u32) -> String {
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid && !name.is_empty()).then(|| name.to_string())
        })
        .next()
        .unwrap_or_else(|| format!("uid {uid}"))
}

pub fn user_name(uid: u32) -> String {
    user_name_in(&fs::read_to_string("/etc/passwd").unwrap_or_default(), uid)
}

/// A handle on one process that stays bound to it even if its pid is later reused.
pub struct ProcessHandle {
    pid: u32,
    pidfd: Option<OwnedFd>,
}

impl ProcessHandle {
    /// `None` when the process has already gone. On kernels without pidfds (before 5.3) the
    /// handle falls back to the bare pid, with the small reuse race that has always had.
    pub fn open(pid: u32) -> Option<Self> {
        let raw = libc::pid_t::try_from(pid).ok()?;
        // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1; no
        // memory is shared with the kernel.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw, 0) };
        if fd >= 0 {
            let fd = i32::try_from(fd).ok()?;
            // SAFETY: the kernel just returned this fd to us and nothing else owns it, so
            // OwnedFd may close it exactly once.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            return Some(Self {
                pid,
                pidfd: Some(owned),
            });
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::ESRCH) => None,
            _ => Some(Self { pid, pidfd: None }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends SIGKILL: the app gets no chance to ignore it or to argue.
    pub fn kill(&self) -> io::Result<()> {
        let rc = match &self.pidfd {
            // SAFETY: the fd is a live pidfd we own; a null siginfo asks the kernel to fill
            // in the usual kill() details, and flags must be 0.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            },
            None => {
                let pid = libc::pid_t::try_from(self.pid)
                    .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
                // SAFETY: kill takes plain integers and touches no memory of ours.
                libc::c_long::from(unsafe { libc::kill(pid, libc::SIGKILL) })
            }
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// The files a `--camera-path` pattern names now: the path itself, or, when its file name
/// contains `*`, every entry of its folder that matches (`/dev/video*`). Sorted.
pub fn expand_pattern(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    };
    if !name.contains('*') {
        return if pattern.exists() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().unwrap_or(Path::new("/"));
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(name, n)))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `*` matches any run of characters (and nothing else is special).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_is_read_from_after_the_name() {
        let text = "4242 (evil) game (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 3 1 0 0 20 0 1 0 987654 1000 100 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.state, b'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_time, 987_654);
        assert!(!s.is_kernel_thread() && !s.is_zombie());
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0";
        assert!(parse_stat(kthread).unwrap().is_kernel_thread());
        assert_eq!(parse_stat("12 (short) S 1"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn the_real_uid_is_read_from_status() {
        let text = "Name:\tgame\nUmask:\t0022\nUid:\t1001\t0\t0\t0\nGid:\t1001\t1001\t1001\t1001\n";
        assert_eq!(parse_status_uid(text), Some(1001));
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
        assert_eq!(parse_status_uid("Uid:\tnot-a-number\n"), None);
    }

    #[test]
    fn user_names_come_from_passwd_or_say_the_uid() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\namira:x:1001:1001::/home/amira:/bin/bash\nbroken\n";
        assert_eq!(user_name_in(passwd, 1001), "amira");
        assert_eq!(user_name_in(passwd, 0), "root");
        assert_eq!(user_name_in(passwd, 4242), "uid 4242");
    }

    #[test]
    fn wildcards_match_camera_names() {
        assert!(wildcard("video*", "video0"));
        assert!(wildcard("video*", "video"));
        assert!(!wildcard("video*", "vbi0"));
        assert!(wildcard("*cam*", "mycamera"));
        assert!(!wildcard("a*b*c", "acb"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
    }

    #[test]
    fn patterns_expand_to_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["video0", "video1", "audio0"] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        let found = expand_pattern(&dir.path().join("video*"));
        assert_eq!(
            found,
            vec![dir.path().join("video0"), dir.path().join("video1")]
        );
        assert_eq!(expand_pattern(&dir.path().join("audio0")).len(), 1);
        assert!(expand_pattern(&dir.path().join("missing")).is_empty());
        assert!(expand_pattern(&dir.path().join("nothing/video*")).is_empty());
    }

    #[test]
    fn this_process_can_be_read_and_is_not_a_kernel_thread() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert!(!s.is_kernel_thread());
        assert!(exe(me).is_some() && comm(me).is_some() && uid(me).is_some());
        let chain = self_and_ancestors(me);
        assert_eq!(chain[0], me);
        assert!(pids().unwrap().contains(&me));
    }
}
