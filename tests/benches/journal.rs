//! Device-side reporting benchmark: what writing a blocked attempt to the durable journal
//! costs a guard (append + fsync, on this machine's disk), and how long a dialer waits for
//! the contact screening socket's answer.
//!
//!   cargo bench -p haven-tests --bench journal
//!   cargo bench -p haven-tests --bench journal -- --records 5000 --questions 5000
//!
//! Figures only, no asserts: timing targets live here, never in tests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use haven_agent::enforcer::Enforcer as _;
use haven_agent::journal::Journal;
use haven_agent::report::{Blocked, BlockedSink, MemorySink};
use haven_agent::screening::{ContactScreening, ask};
use haven_proto::agent::v1::{Channel, Contact, ContactAddress, DevicePolicy, ViolationKind};

fn arg(name: &str, default: usize) -> usize {
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

fn report(what: &str, mut samples: Vec<Duration>, total: Duration) {
    samples.sort();
    println!(
        "{what}: {} in {:.2} s ({:.0}/s); p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        samples.len(),
        total.as_secs_f64(),
        samples.len() as f64 / total.as_secs_f64(),
        percentile(&samples, 0.50).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    let records = arg("--records", 2_000);
    let questions = arg("--questions", 2_000);
    // On the target folder's disk (not tmpfs), like a device's state folder.
    let base = std::env::current_dir().unwrap().join("target");
    let dir = tempfile::tempdir_in(&base).unwrap_or_else(|_| tempfile::tempdir().unwrap());

    // 1. A guard reporting one blocked attempt: durable before `blocked()` returns.
    let journal = Journal::open_at(&dir.path().join("violations.journal"), 20_000).unwrap();
    let mut samples = Vec::with_capacity(records);
    let started = Instant::now();
    for n in 0..records {
        let attempt = Blocked::now(
            ViolationKind::AppBlocked,
            format!("/usr/bin/game-{n}"),
            "tried to start a blocked app (pid 4242, user amira)",
        );
        let t = Instant::now();
        journal.blocked(attempt);
        samples.push(t.elapsed());
    }
    report(
        "journal: record (append + fsync)",
        samples,
        started.elapsed(),
    );

    // 2. Acknowledging in the controller's batches of 500.
    let ids: Vec<String> = journal.pending().into_iter().map(|v| v.id).collect();
    let mut samples = Vec::new();
    let started = Instant::now();
    for chunk in ids.chunks(500) {
        let t = Instant::now();
        journal.acknowledge(chunk);
        samples.push(t.elapsed());
    }
    report("journal: acknowledge 500", samples, started.elapsed());

    // 3. Reopening a full journal after a restart.
    for n in 0..10_000 {
        journal.record(&Blocked::now(
            ViolationKind::WebBlocked,
            format!("site-{n}.example"),
            "tried to open a blocked site",
        ));
    }
    let t = Instant::now();
    let reopened = Journal::open_at(&dir.path().join("violations.journal"), 20_000).unwrap();
    println!(
        "journal: reopen with {} records: {:.1} ms, file {} KiB",
        reopened.len(),
        t.elapsed().as_secs_f64() * 1e3,
        std::fs::metadata(dir.path().join("violations.journal"))
            .map(|m| m.len() / 1024)
            .unwrap_or(0)
    );

    // 4. A dialer asking the screening socket (a new connection per question, as a dialer
    //    would), half allowed, half unknown.
    let socket = dir.path().join("screening.sock");
    let sink = Arc::new(MemorySink::default());
    let mut screening = ContactScreening::start(&socket, sink.clone()).unwrap();
    let address = |a: &str| ContactAddress {
        channel: Channel::Call as i32,
        address: a.into(),
        app: String::new(),
    };
    screening
        .apply(&DevicePolicy {
            version: 1,
            contacts: vec![Contact {
                name: "Nan".into(),
                addresses: vec![address("+447700900123")],
                ..Default::default()
            }],
            protected_contacts: vec![Contact {
                name: "Childline".into(),
                addresses: vec![address("08001111")],
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
    let mut samples = Vec::with_capacity(questions);
    let started = Instant::now();
    for n in 0..questions {
        let number = if n % 2 == 0 {
            "07700 900123".to_string()
        } else {
            format!("07700 9{n:05}")
        };
        let t = Instant::now();
        let answer = ask(&socket, "call", &number).expect("an answer");
        samples.push(t.elapsed());
        std::hint::black_box(answer);
    }
    report("screening: ask over the socket", samples, started.elapsed());
    println!("screening: {} refusals reported", sink.take().len());
}
