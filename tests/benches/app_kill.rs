//! App-kill benchmark (D4): how soon a blocked app is dead after it starts, and what the app
//! guard costs the device while many allowed programs start.
//!
//! Runs the real Linux app guard (`haven_agent::linux::AppGuard`, the one `haven-agent run
//! --enforcer linux` uses) in this process, hearing the kernel's process events, with a policy
//! that blocks one program: a copy of `sleep` under a name nothing else uses.
//!
//!   cargo bench -p haven-tests --bench app_kill
//!   cargo bench -p haven-tests --bench app_kill -- --runs 1000 --load-secs 10 --rate 100 --poll-runs 20
//!
//! Latency is timed from just before `spawn()` (fork + exec of the blocked program) until
//! `waitpid` reports it killed by SIGKILL, so it includes the fork and exec themselves (about a
//! millisecond, printed separately as the time for an allowed `/bin/true` to run to its end).
//! CPU is the guard's own threads' time on the CPU (from `/proc/self/task/*/schedstat`) while
//! `--rate` allowed programs a second start for `--load-secs` seconds.
//!
//! Needs root (the process-event connector); prints why and exits otherwise.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use haven_agent::enforcer::Enforcer;
use haven_agent::linux::{AppGuard, AppGuardConfig};
use haven_agent::report::{Blocked, BlockedSink};
use haven_proto::agent::v1::{AppDefault, AppRule, DevicePolicy};

struct Args {
    runs: usize,
    load_secs: u64,
    rate: u64,
    poll_runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        runs: 1000,
        load_secs: 10,
        rate: 100,
        poll_runs: 20,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), value) {
            ("--runs", Some(v)) => a.runs = v as usize,
            ("--load-secs", Some(v)) => a.load_secs = v,
            ("--rate", Some(v)) => a.rate = v.max(1),
            ("--poll-runs", Some(v)) => a.poll_runs = v as usize,
            // cargo bench passes --bench; anything else unknown is ignored.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Counts reports without keeping them.
#[derive(Default)]
struct Counter(AtomicU64);

impl BlockedSink for Counter {
    fn blocked(&self, _record: Blocked) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn blocking(name: &str) -> DevicePolicy {
    DevicePolicy {
        version: 1,
        apps: Some(AppRule {
            default: AppDefault::Allow as i32,
            allowed: vec![],
            blocked: vec![name.to_string()],
        }),
        ..Default::default()
    }
}

/// Spawns the blocked program and waits until it is dead; returns spawn→dead and
/// spawn-returned→dead (spawn returns once exec has succeeded).
fn one_kill(app: &Path) -> (Duration, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(app)
        .arg("30")
        .spawn()
        .expect("start the blocked app");
    let t1 = Instant::now();
    let status = child.wait().expect("wait for the blocked app");
    let t2 = Instant::now();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the blocked app was not killed by the guard"
    );
    (t2 - t0, t2 - t1)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn summary(label: &str, mut v: Vec<Duration>) {
    v.sort();
    let mean = v.iter().sum::<Duration>() / u32::try_from(v.len().max(1)).unwrap_or(1);
    println!(
        "{label:<44} n={:<5} p50 {}  p99 {}  max {}  mean {}",
        v.len(),
        ms(percentile(&v, 0.50)),
        ms(percentile(&v, 0.99)),
        ms(v.last().copied().unwrap_or_default()),
        ms(mean)
    );
}

/// CPU time (ns) used so far by this process's threads whose name starts with `prefix`.
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
        println!(
            "app_kill: SKIPPED — needs root (the kernel's process-event connector and stopping \
             processes); run it as root, as CI does"
        );
        return;
    }
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let name = format!("havenbenchblocked{}", std::process::id());
    let app = dir.path().join(&name);
    std::fs::copy("/bin/sleep", &app).expect("copy /bin/sleep");

    let sink = Arc::new(Counter::default());
    let mut guard = AppGuard::start(AppGuardConfig::default(), sink.clone()).expect("start guard");
    assert!(
        guard.hears_process_events(),
        "the guard cannot hear process events here; the figures would be the scanner's"
    );
    guard.apply(&blocking(&name)).expect("apply");

    println!("app_kill: guard hears the kernel's process events; blocked program: {name}");

    // Fork + exec + exit of an allowed program: the floor every spawn→dead figure includes.
    let baseline: Vec<Duration> = (0..200)
        .map(|_| {
            let t0 = Instant::now();
            let s = Command::new("/bin/true").status().expect("run /bin/true");
            assert!(s.success());
            t0.elapsed()
        })
        .collect();
    summary("allowed /bin/true, spawn → exited", baseline);

    for _ in 0..20 {
        one_kill(&app); // warm-up
    }
    let (mut total, mut after_exec) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let (t, e) = one_kill(&app);
        total.push(t);
        after_exec.push(e);
    }
    summary("blocked app, spawn → dead (SIGKILL)", total);
    summary("blocked app, spawn returned (exec'd) → dead", after_exec);
    println!(
        "reports made: {} (one per kill)",
        sink.0.load(Ordering::Relaxed)
    );

    // CPU while `rate` allowed programs a second start.
    let before = thread_cpu_ns("haven-apps");
    let started = Instant::now();
    let total_spawns = a.rate * a.load_secs;
    for i in 0..total_spawns {
        let due = started + Duration::from_secs_f64(i as f64 / a.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let s = Command::new("/bin/true").status().expect("run /bin/true");
        assert!(s.success(), "an allowed program was stopped");
    }
    let wall = started.elapsed();
    let used = thread_cpu_ns("haven-apps").saturating_sub(before);
    println!(
        "guard CPU while {} allowed programs/s start for {:.1} s: {:.3} ms CPU = {:.3} % of one core ({:.1} µs per exec)",
        a.rate,
        wall.as_secs_f64(),
        used as f64 / 1e6,
        used as f64 / wall.as_nanos() as f64 * 100.0,
        used as f64 / 1e3 / total_spawns.max(1) as f64
    );
    drop(guard);

    // The comparison: the same guard without process events, scanning every second.
    if a.poll_runs > 0 {
        let sink = Arc::new(Counter::default());
        let mut poller = AppGuard::start(
            AppGuardConfig {
                process_events: false,
                scan_every: Duration::from_secs(1),
                ..Default::default()
            },
            sink,
        )
        .expect("start polling guard");
        poller.apply(&blocking(&name)).expect("apply");
        // Start each app at a random moment of the poller's second (a spawn right after a
        // kill would otherwise always land just after a scan and wait the whole second).
        let mut seed = u64::from(std::process::id()) | 1;
        let polled: Vec<Duration> = (0..a.poll_runs)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                std::thread::sleep(Duration::from_millis(seed % 1000));
                one_kill(&app).0
            })
            .collect();
        summary("same guard polling every 1 s, spawn → dead", polled);
    }
}
