//! What DNS-gated egress costs on its own (WB1): nftables transactions of each size, the
//! egress writer's throughput for new addresses and for refreshes, and the check on the
//! answer path. Root only; everything happens in a network namespace this benchmark creates
//! and removes (the host's firewall is never touched).
//!
//!   cargo bench -p haven-tests --bench egress
//!   cargo bench -p haven-tests --bench egress -- --jobs 100000
//!
//! Figures only, no asserts: timing targets live here, never in tests.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use haven_agent::web::egress::{Feed, Gated, Then};
use haven_agent::web::nft::{self, ChildAccounts, Element};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The n-th distinct address (10.0.0.0/8 and upwards).
fn addr(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + n as u32))
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIPPED egress benchmark: needs root (it makes a network namespace)");
        return;
    }
    let jobs = arg("--jobs", 100_000);
    let ns = format!("haven-bench-egress-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("SKIPPED egress benchmark: cannot create a network namespace");
        return;
    }
    let path = format!("/run/netns/{ns}");
    let result = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        // SAFETY: setns on this thread only, with an fd we own; nft children inherit it.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        run(jobs).map_err(|e| e.to_string())
    })
    .join();
    let _ = Command::new("ip").args(["netns", "delete", &ns]).status();
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => println!("egress benchmark failed: {e}"),
        Err(_) => println!("egress benchmark panicked"),
    }
}

fn run(jobs: usize) -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    nft::apply(&nft::ruleset(
        "127.0.0.1:53".parse()?,
        &ChildAccounts::default(),
    ))?;
    println!(
        "load the ruleset (haven-agent firewall): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    println!("\none nft transaction (add, delete, add) of N new addresses:");
    println!("| N | ms per transaction | µs per address |");
    println!("|---|---|---|");
    let mut next = 0;
    for (n, reps) in [(1, 30), (16, 20), (256, 10), (4096, 3)] {
        let mut total = Duration::ZERO;
        for _ in 0..reps {
            let elements: Vec<Element> = (0..n)
                .map(|_| {
                    next += 1;
                    Element {
                        addr: addr(next),
                        protected: false,
                        timeout_secs: 300,
                    }
                })
                .collect();
            let text = nft::add_elements(&elements);
            let t = Instant::now();
            nft::apply(&text)?;
            total += t.elapsed();
        }
        let per = total.as_secs_f64() / reps as f64;
        println!("| {n} | {:.2} | {:.1} |", per * 1e3, per * 1e6 / n as f64);
    }
    nft::apply(&nft::flush_allowed())?;

    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let feed = Feed::start(udp.try_clone()?, nft::apply)?;
    println!("\nthe egress writer (answers held until their addresses are in):");
    for (what, distinct) in [
        ("new address in every answer", true),
        ("one address, already in (cache-hit refreshes)", false),
    ] {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = Instant::now();
        for i in 0..jobs {
            let a = if distinct {
                addr(1_000_000 + i)
            } else {
                addr(1)
            };
            let g = Gated::new(vec![a], false);
            // Waits when the queue is full, as a swamped resolver would answer at once instead.
            let mut then = Then::Wake(tx.clone());
            loop {
                match feed.submit(g.clone(), 300, then) {
                    Ok(()) => break,
                    Err(back) => {
                        then = back;
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
        }
        for _ in 0..jobs {
            rx.recv_timeout(Duration::from_secs(60))?;
        }
        let secs = t.elapsed().as_secs_f64();
        let c = &feed.counters;
        println!(
            "- {what}: {jobs} answers in {:.2} s = {:.0} answers/s",
            secs,
            jobs as f64 / secs
        );
        println!(
            "  so far: {} transactions, {} addresses written, {:.2} s in nft",
            c.batches.load(std::sync::atomic::Ordering::Relaxed),
            c.written.load(std::sync::atomic::Ordering::Relaxed),
            c.nft_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
        );
    }

    let g = Gated::new(vec![addr(1)], false);
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = feed.submit(g.clone(), 300, Then::Wake(tx));
    rx.recv_timeout(Duration::from_secs(10))?;
    let n = 10_000_000;
    let t = Instant::now();
    let mut fresh = 0usize;
    for _ in 0..n {
        fresh += usize::from(feed.is_fresh(std::hint::black_box(&g)));
    }
    println!(
        "\nthe answer-path check for a cache hit (is the address in?): {:.1} ns ({fresh} of {n} fresh)",
        t.elapsed().as_secs_f64() * 1e9 / n as f64
    );
    Ok(())
}
