//! Telephony guard benchmark: how long a refused call rings before the guard hangs it up
//! (from the stand-in ModemManager's `CallAdded` to its `Call.Hangup`), over a private
//! `dbus-daemon`, and the guard's CPU use while the phone is idle.
//!
//!   cargo bench -p haven-tests --bench telephony
//!   cargo bench -p haven-tests --bench telephony -- --calls 1000 --idle-secs 10
//!
//! Figures only, no asserts: timing targets live here, never in tests. Target: p99 under
//! 50 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_agent::linux::telephony::{
    TelephonyBus, TelephonyConfig, TelephonyGuard, TelephonyState,
};
use haven_agent::report::MemorySink;
use haven_agent::screening::Screener;
use haven_proto::agent::v1::{Channel, Contact, ContactAddress, DevicePolicy};
use haven_tests::modem::{PrivateBus, StandIn};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time (user + system, in clock ticks) of this process's threads whose name starts with
/// `prefix` — the guard's own threads, not the stand-in's or the bus's.
fn thread_ticks(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim().starts_with(prefix))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .map(|stat| {
            // Fields after the name (which ends with the last ')'): utime is the 12th, stime
            // the 13th.
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            field(11) + field(12)
        })
        .sum()
}

fn main() {
    let calls = arg("--calls", 1000);
    let idle_secs = arg("--idle-secs", 10);
    let Some(bus) = PrivateBus::start("telephony bench", "") else {
        println!("telephony: SKIPPED — needs dbus-daemon (apt-get install dbus)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("standin")
        .enable_all()
        .build()
        .expect("runtime");
    let modem = runtime
        .block_on(StandIn::start(&bus.address))
        .expect("the stand-in ModemManager");
    let policy = DevicePolicy {
        version: 1,
        contacts: vec![Contact {
            name: "Nan".into(),
            addresses: vec![ContactAddress {
                channel: Channel::Call as i32,
                address: "+447700900123".into(),
                app: String::new(),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let sink = Arc::new(MemorySink::default());
    let screener = Arc::new(Screener::new(policy, sink.clone()));
    let guard = TelephonyGuard::start(
        TelephonyConfig {
            bus: TelephonyBus::Address(bus.address.clone()),
            ..Default::default()
        },
        screener,
    )
    .expect("the guard");
    let started = Instant::now();
    while guard.state() != TelephonyState::Watching(1) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the guard never found the modem"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut samples = Vec::with_capacity(calls as usize);
    let mut missed = 0u64;
    let busy_ticks = thread_ticks("telephony");
    let run = Instant::now();
    for n in 0..calls {
        // A different stranger each time, so every call is decided and reported afresh.
        // Never Nan (+447700900123), who is allowed.
        let call = runtime.block_on(modem.ring(&format!("+4477009{:05}", 1000 + n % 90_000)));
        let waited = Instant::now();
        let hung_up = loop {
            if let Some(at) = modem.hung_up_at(&call) {
                break Some(at);
            }
            // Bounded, so a guard that misses a call shows as a miss, not a hang.
            if waited.elapsed() > Duration::from_secs(5) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let Some(hung_up) = hung_up else {
            missed += 1;
            continue;
        };
        let rung = modem.rung_at(&call).expect("the stand-in rang it");
        samples.push(hung_up.saturating_duration_since(rung));
        if n % 100 == 99 {
            runtime.block_on(modem.forget_ended_calls());
        }
    }
    let total = run.elapsed();
    if samples.is_empty() {
        println!("telephony: no call was hung up ({missed} missed)");
        return;
    }
    samples.sort();
    println!(
        "telephony: {} refused calls in {:.2} s; CallAdded → Hangup p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms; {missed} not hung up within 5 s",
        samples.len(),
        total.as_secs_f64(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    println!(
        "telephony: guard threads used {:.2} s of CPU for the {} calls",
        thread_ticks("telephony").saturating_sub(busy_ticks) as f64 / hz,
        samples.len()
    );

    // Idle: the guard waits on its signals and looks for new modems every 5 s.
    let before = thread_ticks("telephony");
    std::thread::sleep(Duration::from_secs(idle_secs));
    let used = thread_ticks("telephony").saturating_sub(before) as f64 / hz;
    println!(
        "telephony: idle for {idle_secs} s with one modem: guard threads used {:.3} s of CPU \
         ({:.3}% of one core; the clock tick is {:.0} ms)",
        used,
        used / idle_secs as f64 * 100.0,
        1000.0 / hz
    );
    // Each refusal is reported once, after its hang-up; all have been by now.
    println!("telephony: {} refusals reported", sink.take().len());
    drop(guard);
}
