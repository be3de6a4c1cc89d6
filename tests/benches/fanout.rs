//! Fan-out benchmark: how fast a staff change reaches N connected agents, what each connected
//! agent costs the controller, how long N agents take to connect, and what an idle agent costs
//! its device.
//!
//! Runs the real `haven serve` (release build) as its own process, and N simulated devices in
//! this process: each is the real agent sync client (`haven_agent::sync`) with a recording
//! enforcer, on its own TLS connection with its own enrolled certificate.
//!
//!   cargo bench -p haven-tests --bench fanout                       # 1 and 1,000 agents
//!   cargo bench -p haven-tests --bench fanout -- --agents 1,1000,10000 --rounds 30
//!
//! A "round" is one staff change (a manager adds a protected contact to the home, which every
//! device in it must enforce), timed from just before the staff request is sent until each
//! agent has applied the new policy and is about to send its acknowledgement.
//!
//! With `--lockdown`, a round is instead an emergency lockdown of the whole home by a member
//! of staff through the admin API (`EmergencyService.Lockdown`: lockdown, sanction and
//! obligations written with the audit entry, then pushed), timed the same way on the agents,
//! and also until the controller has every acknowledgement (`WatchLockdown` finished). The
//! lockdown is lifted (untimed) before the next round.
//!
//!   cargo bench -p haven-tests --bench fanout -- --lockdown --agents 1000,10000 --rounds 10
//!
//! With `--postgres` the controller keeps its records in a fresh PostgreSQL schema (at
//! `HAVEN_TEST_DATABASE_URL`, default 127.0.0.1:5432/test), made and dropped per N; with
//! `--replicas 2` as well, two `haven serve` processes share that schema and the same CA and
//! server certificate, agents are split between them round-robin (each enrolled with both
//! addresses, its own replica first), and staff speak to the first replica only, so a change
//! reaches half the agents through the other replica's LISTEN/NOTIFY.
//!
//!   cargo bench -p haven-tests --bench fanout -- --lockdown --agents 1000 --postgres --replicas 2

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use haven_agent::enforcer::{EnforceError, Enforcer};
use haven_agent::sync::{InventorySource, SyncConfig};
use haven_proto::admin::v1 as api;
use haven_proto::agent::v1::DevicePolicy;
use haven_tests::*;

mod common;
use common::*;

/// Records, per agent, the newest version applied and when.
struct Recorder {
    index: usize,
    applied: Arc<Vec<AtomicU64>>,
    at_nanos: Arc<Vec<AtomicU64>>,
    epoch: Instant,
}

impl Enforcer for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        let now = self.epoch.elapsed().as_nanos() as u64;
        self.at_nanos[self.index].store(now, Ordering::SeqCst);
        self.applied[self.index].store(policy.version, Ordering::SeqCst);
        Ok(())
    }
}

/// HAVEN_BENCH_PERF=FILE samples the controller (perf, cpu-clock: this VM has no hardware
/// counters) with call graphs into FILE, for the timed rounds (or, with
/// HAVEN_BENCH_PERF_PHASE=connect, for the connecting). HAVEN_BENCH_PERF_ALL=1: the whole
/// machine (controller, these agents, the kernel), to see how the two cores are shared between
/// the server and its load.
fn start_perf(pid: u32) -> Option<std::process::Child> {
    let out = std::env::var_os("HAVEN_BENCH_PERF")?;
    let mut command = std::process::Command::new("perf");
    command.args(["record", "-e", "cpu-clock", "-F", "997", "-g"]);
    if std::env::var_os("HAVEN_BENCH_PERF_ALL").is_some() {
        command.arg("-a");
    } else {
        command.arg("-p").arg(pid.to_string());
    }
    let child = command
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start perf record");
    std::thread::sleep(Duration::from_millis(500));
    Some(child)
}

fn stop_perf(perf: Option<std::process::Child>) {
    if let Some(mut perf) = perf {
        // SAFETY: kill(2) on the pid of a child we started and still own; SIGINT makes perf
        // write its file and exit.
        unsafe {
            libc::kill(perf.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = perf.wait();
    }
}

/// User + system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Args {
    agents: Vec<usize>,
    rounds: usize,
    idle_secs: u64,
    lockdown: bool,
    postgres: bool,
    replicas: usize,
}

fn args() -> Args {
    let mut a = Args {
        agents: vec![1, 1000],
        rounds: 20,
        idle_secs: 20,
        lockdown: false,
        postgres: false,
        replicas: 1,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--agents" => {
                a.agents = argv[i + 1]
                    .split(',')
                    .map(|n| n.parse().expect("--agents 1,1000"))
                    .collect();
                i += 1;
            }
            "--rounds" => {
                a.rounds = argv[i + 1].parse().expect("--rounds 20");
                i += 1;
            }
            "--idle-secs" => {
                a.idle_secs = argv[i + 1].parse().expect("--idle-secs 20");
                i += 1;
            }
            "--lockdown" => a.lockdown = true,
            "--postgres" => a.postgres = true,
            "--replicas" => {
                a.replicas = argv[i + 1].parse().expect("--replicas 2");
                i += 1;
            }
            _ => {} // cargo passes --bench
        }
        i += 1;
    }
    a
}

/// Every replica after the first: the first one's keys, the same database.
fn more_replicas(first: &Controller, database: &str, count: usize, dir: &Path) -> Vec<Controller> {
    (1..count)
        .map(|r| first.start_replica(&dir.join(format!("replica-{r}")), database))
        .collect()
}

async fn run_fanout(
    n: usize,
    rounds: usize,
    lockdown: bool,
    database: Option<String>,
    replicas: usize,
) {
    let dir = tempfile::tempdir().unwrap();
    let controller = match &database {
        Some(url) => Controller::start_with(&dir.path().join("data"), &["--database", url]),
        None => Controller::start(&dir.path().join("data")),
    };
    let others = match &database {
        Some(url) if replicas > 1 => more_replicas(&controller, url, replicas, dir.path()),
        _ => Vec::new(),
    };
    // Every replica's address; agent i is enrolled through replica i % R and keeps the others
    // after it, so it connects to its own replica first.
    let urls: Vec<String> = std::iter::once(controller.url.clone())
        .chain(others.iter().map(|c| c.url.clone()))
        .collect();
    let pid = controller.pid().unwrap();
    let ca = std::fs::read_to_string(controller.data_dir.join("ca.pem")).unwrap();
    let admin_token = controller.first_token();
    let channel = staff_channel(&controller.url, &ca).await;
    let mut homes = api::home_service_client::HomeServiceClient::new(channel.clone());
    let mut children = api::child_service_client::ChildServiceClient::new(channel.clone());
    let devices = api::device_service_client::DeviceServiceClient::new(channel.clone());
    let mut staff = api::staff_service_client::StaffServiceClient::new(channel.clone());
    homes
        .add_home(authed(
            &admin_token,
            api::AddHomeRequest {
                name: "Bench House".into(),
                time_zone: String::new(),
            },
        ))
        .await
        .unwrap();
    let child = children
        .add_child(authed(
            &admin_token,
            api::AddChildRequest {
                home: "Bench House".into(),
                name: "Sam Bench".into(),
                date_of_birth: "2012-01-01".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let manager_token = staff
        .add_staff(authed(
            &admin_token,
            api::AddStaffRequest {
                name: "Bench Manager".into(),
                staff_role: api::StaffRole::Manager.into(),
                homes: vec!["Bench House".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    let carer_token = staff
        .add_staff(authed(
            &admin_token,
            api::AddStaffRequest {
                name: "Bench Carer".into(),
                staff_role: api::StaffRole::Staff.into(),
                homes: vec!["Bench House".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .token;

    // Enroll N devices, a few at a time.
    let enroll_started = Instant::now();
    let identities: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let mut devices = devices.clone();
            let token = admin_token.clone();
            let child_id = child.id.clone();
            let own = i % urls.len();
            let url = urls[own].clone();
            let all = urls[own..]
                .iter()
                .chain(&urls[..own])
                .cloned()
                .collect::<Vec<_>>()
                .join(",");
            let ca = ca.clone();
            async move {
                let code = devices
                    .create_enrollment(authed(
                        &token,
                        api::CreateEnrollmentRequest {
                            child: child_id,
                            valid_for_minutes: 60,
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .code;
                let mut identity = haven_agent::enroll(&url, &ca, &code, fixed_inventory())
                    .await
                    .unwrap();
                identity.controller_url = all;
                identity
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let enroll_secs = enroll_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);
    let others_before: Vec<u64> = others.iter().map(|c| rss_kib(c.pid().unwrap())).collect();

    let epoch = Instant::now();
    let applied: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let at_nanos: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // HAVEN_BENCH_PERF_PHASE=connect samples the connecting instead of the rounds.
    let perf_connect = std::env::var("HAVEN_BENCH_PERF_PHASE").is_ok_and(|p| p == "connect");
    let connect_perf = perf_connect.then(|| start_perf(pid)).flatten();
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (index, identity) in identities.into_iter().enumerate() {
        let mut config = SyncConfig::new(identity);
        config.inventory = InventorySource::Fixed(fixed_inventory());
        config.heartbeat = Duration::from_secs(3600);
        let enforcer = Recorder {
            index,
            applied: applied.clone(),
            at_nanos: at_nanos.clone(),
            epoch,
        };
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = haven_agent::sync::run(config, Box::new(enforcer), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        }));
    }
    // Connected = every agent has received and applied its first policy from the controller.
    while applied.iter().any(|v| v.load(Ordering::SeqCst) == 0) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    stop_perf(connect_perf);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_after = rss_kib(pid);
    let others_after: Vec<u64> = others.iter().map(|c| rss_kib(c.pid().unwrap())).collect();

    let perf = (!perf_connect).then(|| start_perf(pid)).flatten();

    let mut homes = api::home_service_client::HomeServiceClient::new(channel.clone());
    let mut round_p50 = Vec::new();
    let mut round_p99 = Vec::new();
    let mut round_max = Vec::new();
    let mut rpc_ms = Vec::new();
    let mut acked_ms = Vec::new();
    let mut emergency = api::emergency_service_client::EmergencyServiceClient::new(channel.clone());
    for round in 0..rounds {
        let before = epoch.elapsed().as_nanos() as u64;
        let t0 = Instant::now();
        if lockdown {
            let r = emergency
                .lockdown(authed(
                    &carer_token,
                    api::LockdownRequest {
                        home: "Bench House".into(),
                        protective_reason: api::RestrictionReason::InjuryToOthers.into(),
                        note: format!("bench round {round}"),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            rpc_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            let id = r.lockdown.unwrap_or_default().id;
            let mut watch = emergency
                .watch_lockdown(authed(
                    &carer_token,
                    api::WatchLockdownRequest {
                        id: id.clone(),
                        wait_secs: 60,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            let mut finished = false;
            while let Some(p) = watch.next().await {
                finished = p.unwrap().finished;
            }
            if finished {
                acked_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
        } else {
            homes
                .add_protected_contact(authed(
                    &manager_token,
                    api::AddProtectedContactRequest {
                        home: "Bench House".into(),
                        name: format!("Contact {round}"),
                        // Ofcom's drama range: a real-looking mobile number that rings nobody.
                        address: format!("07700 9{round:05}"),
                        ..Default::default()
                    },
                ))
                .await
                .unwrap();
            rpc_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        let target = applied
            .iter()
            .map(|v| v.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0);
        // Wait until every agent has a version applied after the change started.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let done = at_nanos.iter().all(|t| t.load(Ordering::SeqCst) > before);
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let _ = target;
        let mut lat: Vec<f64> = at_nanos
            .iter()
            .map(|t| (t.load(Ordering::SeqCst).saturating_sub(before)) as f64 / 1e6)
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        round_p50.push(percentile(&lat, 50.0));
        round_p99.push(percentile(&lat, 99.0));
        round_max.push(*lat.last().unwrap());
        if lockdown {
            // Lift it (untimed) and let every agent apply the lift before the next round.
            let lifted_at = epoch.elapsed().as_nanos() as u64;
            let ids: Vec<String> = emergency
                .list_lockdowns(authed(&carer_token, api::ListLockdownsRequest::default()))
                .await
                .unwrap()
                .into_inner()
                .lockdowns
                .into_iter()
                .map(|l| l.id)
                .collect();
            for id in ids {
                emergency
                    .lift_lockdown(authed(
                        &carer_token,
                        api::LiftLockdownRequest {
                            id,
                            note: "bench".into(),
                        },
                    ))
                    .await
                    .unwrap();
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            while !at_nanos
                .iter()
                .all(|t| t.load(Ordering::SeqCst) > lifted_at)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_perf(perf);
    // Where the controller's time went in the last round (from its own log).
    for needle in [
        "protected contact added",
        "lockdown started",
        "policy pushed",
    ] {
        if let Some(line) = controller
            .stderr
            .all()
            .iter()
            .rev()
            .find(|l| l.contains(needle))
        {
            println!("  controller log: {}", line.trim());
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let mut p99s = round_p99.clone();
    p99s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut p50s = round_p50.clone();
    p50s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut maxes = round_max.clone();
    maxes.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rpc_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // With replicas each holds about n / R agents: memory per agent is per agent it holds.
    let held = n / (others.len() + 1);
    let per_agent = (rss_after.saturating_sub(rss_before)) as f64 / held.max(1) as f64;
    let what = if lockdown {
        "emergency lockdowns of the home"
    } else {
        "staff changes"
    };
    let store = match (&database, others.len() + 1) {
        (None, _) => "SQLite".to_string(),
        (Some(_), 1) => "PostgreSQL, one replica".to_string(),
        (Some(_), r) => format!("PostgreSQL, {r} replicas, agents split, staff on the first"),
    };
    println!("== {n} connected agents, {rounds} {what} ({store}) ==");
    println!("  enrolled in                 {enroll_secs:.2} s");
    println!("  connected (first policy applied) in {connect_secs:.3} s");
    println!(
        "  change -> applied by all agents, per round: p50 of agents median {:.2} ms; p99 of agents median {:.2} ms, worst {:.2} ms; slowest agent median {:.2} ms",
        percentile(&p50s, 50.0),
        percentile(&p99s, 50.0),
        p99s.last().unwrap(),
        percentile(&maxes, 50.0)
    );
    println!(
        "  staff request (commit + push) round trip: median {:.2} ms, worst {:.2} ms",
        percentile(&rpc_ms, 50.0),
        rpc_ms.last().unwrap()
    );
    if lockdown {
        acked_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        if acked_ms.is_empty() {
            println!("  lockdown -> every acknowledgement at the controller: never within 60 s");
        } else {
            println!(
                "  lockdown -> every acknowledgement at the controller (WatchLockdown finished): median {:.2} ms, worst {:.2} ms ({} of {rounds} rounds finished)",
                percentile(&acked_ms, 50.0),
                acked_ms.last().unwrap(),
                acked_ms.len()
            );
        }
    }
    println!(
        "  controller RSS: {rss_before} KiB before agents, {rss_after} KiB with its {held}: {per_agent:.1} KiB per connected agent"
    );
    for (r, (before, after)) in others_before.iter().zip(&others_after).enumerate() {
        println!(
            "  replica {} RSS: {before} KiB before agents, {after} KiB with its ~{held}: {:.1} KiB per connected agent",
            r + 2,
            after.saturating_sub(*before) as f64 / held.max(1) as f64
        );
    }
}

/// One real `haven-agent run` process, idle against a real controller.
fn idle_agent(secs: u64) {
    let home = Home::new();
    let mut agent = home.enrolled_agent("idle");
    agent.start();
    eventually("the idle agent to connect", WAIT, || {
        home.devices()
            .into_iter()
            .any(|d| d["online"] == true)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let pid = agent.pid().unwrap();
    let ticks_before = cpu_ticks(pid);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let ticks = cpu_ticks(pid) - ticks_before;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu_pct = (ticks as f64 / hz) / t0.elapsed().as_secs_f64() * 100.0;
    println!("== idle agent (real haven-agent process, {secs} s) ==");
    println!(
        "  RSS {} KiB; CPU {:.3}% of one core ({ticks} ticks)",
        rss_kib(pid),
        cpu_pct
    );
}

fn main() {
    let a = args();
    let limit = raise_open_file_limit();
    println!(
        "haven fan-out benchmark: {} cores, open-file limit {limit}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    // Make sure the binaries are built (release, like this benchmark) before timing anything.
    let _ = bin_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        a.replicas <= 1 || a.postgres,
        "--replicas needs --postgres: replicas share one PostgreSQL database"
    );
    for n in a.agents {
        // A fresh schema per N, dropped when the run ends (made outside the runtime: it runs
        // its own).
        let schema = if a.postgres {
            match postgres_schema() {
                Some(schema) => Some(schema),
                None => {
                    println!("SKIPPED: --postgres, but no PostgreSQL answers");
                    return;
                }
            }
        } else {
            None
        };
        let url = schema.as_ref().map(PgSchema::url);
        rt.block_on(run_fanout(n, a.rounds, a.lockdown, url, a.replicas));
        drop(schema);
    }
    if a.idle_secs > 0 {
        idle_agent(a.idle_secs);
    }
}
