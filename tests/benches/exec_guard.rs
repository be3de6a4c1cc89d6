//! Exec-guard benchmark (D4): what checking every program *before* it runs costs a child's
//! process — per exec and per open — and the guard's own CPU while many programs start.
//!
//! Runs the real exec guard (`haven_agent::linux::ExecGuard`, the one `haven-agent run
//! --enforcer linux` starts) in this process, watching only a tmpfs this benchmark mounts
//! (and unmounts), so nothing else on the machine is touched. Programs run as a throwaway
//! child uid set in the forked child; no account is added anywhere.
//!
//!   cargo bench -p haven-tests --bench exec_guard
//!   cargo bench -p haven-tests --bench exec_guard -- --runs 2000 --opens 20000 --load-secs 10 --rate 100
//!
//! - exec: spawn-to-exit of a small program on the tmpfs (`/bin/true`'s copy), with the guard
//!   not running, then armed (a plan that blocks one program: every exec is decided), then
//!   armed with only allowed apps (the program's content compared, from the cache). The added
//!   latency is the difference of the medians; the guard's own time per event is printed too.
//! - open: one `open`+`close` of a file on the tmpfs, timed inside a child's process (perl),
//!   for a data file and for an ELF library (which the guard looks at: program code).
//! - CPU: the guard's threads' CPU time (`/proc/self/task/*/schedstat`) while `--rate`
//!   programs a second start for `--load-secs` seconds.
//!
//! Needs root (fanotify, mount, setuid); prints why and exits otherwise.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use haven_agent::enforcer::Enforcer;
use haven_agent::linux::content::Trust;
use haven_agent::linux::{ExecGuard, ExecGuardConfig};
use haven_agent::report::{Blocked, BlockedSink};
use haven_proto::agent::v1::{AppDefault, AppRule, DevicePolicy};

struct Args {
    runs: usize,
    opens: usize,
    load_secs: u64,
    rate: u64,
}

fn args() -> Args {
    let mut a = Args {
        runs: 1000,
        opens: 20_000,
        load_secs: 10,
        rate: 100,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), value) {
            ("--runs", Some(v)) => a.runs = v as usize,
            ("--opens", Some(v)) => a.opens = v as usize,
            ("--load-secs", Some(v)) => a.load_secs = v,
            ("--rate", Some(v)) => a.rate = v.max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

struct Quiet;
impl BlockedSink for Quiet {
    fn blocked(&self, _record: Blocked) {}
}

/// A tmpfs on a temporary folder, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path");
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"haven-bench".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                c"mode=0755,size=64m".as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount: {}", std::io::Error::last_os_error());
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(t) = CString::new(self.0.path().as_os_str().as_bytes()) {
            // SAFETY: t is a valid NUL-terminated path.
            unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn install(from: &str, to: &Path, extra: &[u8], owner: Option<u32>) -> PathBuf {
    let mut bytes = std::fs::read(from).expect("read");
    bytes.extend_from_slice(extra);
    std::fs::write(to, bytes).expect("write");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if let Some(uid) = owner {
        chown(to, Some(uid), Some(uid)).expect("chown");
    }
    to.to_path_buf()
}

fn policy(default: AppDefault, allowed: &[&Path], blocked: &[&Path]) -> DevicePolicy {
    let list = |v: &[&Path]| v.iter().map(|p| p.display().to_string()).collect();
    DevicePolicy {
        version: 2,
        apps: Some(AppRule {
            default: default as i32,
            allowed: list(allowed),
            blocked: list(blocked),
        }),
        ..Default::default()
    }
}

fn run_as(uid: u32, prog: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(prog)
        .env_clear()
        .current_dir("/")
        .uid(uid)
        .gid(uid)
        .status()
        .expect("run the program");
    assert!(status.success(), "{} failed: {status}", prog.display());
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn execs(uid: u32, prog: &Path, runs: usize) -> Duration {
    for _ in 0..20 {
        run_as(uid, prog); // warm the cache and the page cache
    }
    median((0..runs).map(|_| run_as(uid, prog)).collect())
}

/// Median µs of one open+close of `file`, timed in a child's process by perl.
fn opens(uid: u32, file: &Path, n: usize) -> Option<f64> {
    let script = "use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC); my @t; \
         for (1..$ARGV[1]) { my $a = clock_gettime(CLOCK_MONOTONIC); \
         open(my $f, '<', $ARGV[0]) or die \"open: $!\"; close $f; \
         push @t, clock_gettime(CLOCK_MONOTONIC) - $a } \
         @t = sort { $a <=> $b } @t; printf \"%.3f\\n\", $t[$#t / 2] * 1e6;";
    let out = Command::new("perl")
        .args(["-e", script])
        .arg(file)
        .arg(n.to_string())
        .current_dir("/")
        .uid(uid)
        .gid(uid)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("perl: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn thread_cpu_ns(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with(prefix))
        })
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

fn main() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("exec_guard: SKIPPED — needs root (fanotify, a tmpfs mount, setuid)");
        return;
    }
    let a = args();
    let fs = Tmpfs::mount();
    let root = fs.0.path().to_path_buf();
    let uid = 45_000 + std::process::id() % 5_000;
    let trusted = root.join("usr");
    let home = root.join("home");
    std::fs::create_dir(&trusted).expect("mkdir");
    std::fs::create_dir(&home).expect("mkdir");
    chown(&home, Some(uid), Some(uid)).expect("chown");
    let prog = install("/bin/true", &home.join("prog"), b"", Some(uid));
    let app = install("/bin/true", &trusted.join("app"), b"app", None);
    let game = install("/bin/true", &trusted.join("game"), b"blocked game", None);
    let data = home.join("notes.txt");
    std::fs::write(&data, b"hello").expect("write");
    let libm = ["/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let lib = libm.map(|l| install(l, &home.join("lib.so"), b"", Some(uid)));

    println!(
        "exec_guard: {} runs per case, {} opens, child uid {uid}, on {}",
        a.runs,
        a.opens,
        root.display()
    );
    let bare_exec = execs(uid, &prog, a.runs);
    let bare_app = execs(uid, &app, a.runs);
    let bare_open = opens(uid, &data, a.opens);
    let bare_lib = lib.as_ref().and_then(|l| opens(uid, l, a.opens));

    let mut guard = ExecGuard::start(
        ExecGuardConfig {
            exec_filesystems: vec![root.clone()],
            library_filesystems: vec![root.clone()],
            trust: Trust {
                roots: vec![trusted.clone()],
                bin_dirs: vec![trusted.clone()],
                ..Trust::default()
            },
            check_hardening: false,
            refresh_every: Duration::from_secs(3600),
            ..Default::default()
        },
        Arc::new(Quiet),
    )
    .expect("start the exec guard");
    guard
        .apply(&policy(AppDefault::Allow, &[], &[&game]))
        .expect("apply");
    let before = guard.counters().events.load(Ordering::Relaxed);
    let busy_before = guard.counters().busy_ns.load(Ordering::Relaxed);
    let decide_before = guard.counters().decide_ns.load(Ordering::Relaxed);
    let armed_exec = execs(uid, &prog, a.runs);
    let events = guard.counters().events.load(Ordering::Relaxed) - before;
    let busy = guard.counters().busy_ns.load(Ordering::Relaxed) - busy_before;
    let decide = guard.counters().decide_ns.load(Ordering::Relaxed) - decide_before;
    let armed_open = opens(uid, &data, a.opens);
    let armed_lib = lib.as_ref().and_then(|l| opens(uid, l, a.opens));
    guard
        .apply(&policy(AppDefault::Block, &[&app], &[]))
        .expect("apply");
    let only_app = execs(uid, &app, a.runs);

    let delta = |armed: Duration, bare: Duration| {
        format!(
            "{:+.1} µs",
            (armed.as_secs_f64() - bare.as_secs_f64()) * 1e6
        )
    };
    println!(
        "exec, block mode:        median {} not armed, {} armed ({} per exec)",
        us(bare_exec),
        us(armed_exec),
        delta(armed_exec, bare_exec)
    );
    println!(
        "exec, only allowed apps: median {} not armed, {} armed ({} per exec)",
        us(bare_app),
        us(only_app),
        delta(only_app, bare_app)
    );
    if events > 0 {
        println!(
            "guard's own time:        {:.1} µs per event on average, {:.1} µs of it deciding \
             ({events} events: an exec is two, the exec and the open that follows it)",
            busy as f64 / events as f64 / 1e3,
            decide as f64 / events as f64 / 1e3
        );
    }
    let show = |o: Option<f64>| o.map_or("-".to_string(), |v| format!("{v:.2} µs"));
    println!(
        "open of a data file:     median {} not armed, {} armed",
        show(bare_open),
        show(armed_open)
    );
    println!(
        "open of an ELF library:  median {} not armed, {} armed",
        show(bare_lib),
        show(armed_lib)
    );

    // CPU while `rate` programs a second start.
    guard
        .apply(&policy(AppDefault::Allow, &[], &[&game]))
        .expect("apply");
    let period = Duration::from_secs_f64(1.0 / a.rate as f64);
    let cpu_before = thread_cpu_ns("haven-exec");
    let started = Instant::now();
    let mut next = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(a.load_secs) {
        run_as(uid, &prog);
        n += 1;
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns("haven-exec") - cpu_before) as f64 / 1e9;
    println!(
        "CPU at {:.0} programs/s:  {:.3}% of one core ({:.3} s in {:.1} s, {n} programs)",
        n as f64 / wall,
        cpu / wall * 100.0,
        cpu,
        wall
    );
    drop(guard);
}
