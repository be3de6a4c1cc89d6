//! Soak benchmark (issue 13, R36, D5): the controller is killed with SIGKILL at random points
//! while devices report and staff make changes, and after every restart nothing is lost.
//!
//! Runs the real `haven serve` (release build) on one data folder, and N simulated devices in
//! this process: each the real agent sync client (`haven_agent::sync`) with its own enrolled
//! certificate and its own durable violations journal (`haven_agent::journal`, append + fsync,
//! as on a device). While it runs:
//! - the devices journal blocked attempts (`--rate` per device per second, spread randomly)
//!   and the sync client sends them, each kept until the controller acknowledges it;
//! - a staff loop makes changes through the admin API: children added, and protected contacts
//!   added to the home (each pushed to every device), up to `--contacts` of them;
//! - the controller is killed with SIGKILL after a random 0.2–3 s (`--min-ms`, `--max-ms`),
//!   mid-write as often as not, and started again on the same data folder and port.
//!
//! After each restart it checks:
//! 1. no acknowledged staff write is lost: every change whose RPC returned OK is listed;
//! 2. `haven audit verify` (the real CLI) says the trail is intact;
//! 3. once the devices have drained (journalling paused until every journal is empty, i.e.
//!    every record acknowledged), every violation a device journalled is stored exactly once
//!    and nothing else is (read from `haven.db`, read-only).
//!
//!   cargo bench -p haven-tests --bench soak -- --kills 100 --devices 100
//!   cargo bench -p haven-tests --bench soak -- --kills 5 --devices 20      # a quick look
//!
//! Prints a line per kill and a summary; exits non-zero if anything was lost. A bench, not a
//! test: it takes minutes and wants the machine to itself.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use haven_agent::journal::Journal;
use haven_agent::report::Blocked;
use haven_agent::sync::{InventorySource, SyncConfig};
use haven_proto::admin::v1 as api;
use haven_proto::agent::v1::ViolationKind;
use haven_tests::*;
use sqlx::ConnectOptions as _;
use tonic::transport::Channel;

mod common;
use common::*;

const HOME: &str = "Soak House";
/// What the devices journal, so the check counts only these.
const SUBJECT_PREFIX: &str = "/usr/bin/soak-";

struct Args {
    kills: usize,
    devices: usize,
    rate: f64,
    min_ms: u64,
    max_ms: u64,
    contacts: usize,
}

fn args() -> Args {
    let mut a = Args {
        kills: 10,
        devices: 100,
        rate: 0.2,
        min_ms: 200,
        max_ms: 3_000,
        contacts: 150,
    };
    let argv: Vec<String> = std::env::args().collect();
    let value = |i: usize, name: &str| -> String {
        argv.get(i + 1)
            .cloned()
            .unwrap_or_else(|| panic!("{name} needs a value"))
    };
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--kills" => a.kills = value(i, "--kills").parse().expect("--kills 100"),
            "--devices" => a.devices = value(i, "--devices").parse().expect("--devices 100"),
            "--rate" => a.rate = value(i, "--rate").parse().expect("--rate 0.2"),
            "--min-ms" => a.min_ms = value(i, "--min-ms").parse().expect("--min-ms 200"),
            "--max-ms" => a.max_ms = value(i, "--max-ms").parse().expect("--max-ms 3000"),
            "--contacts" => a.contacts = value(i, "--contacts").parse().expect("--contacts 150"),
            _ => {
                i += 1;
                continue; // cargo passes --bench
            }
        }
        i += 2;
    }
    a.max_ms = a.max_ms.max(a.min_ms + 1);
    a
}

/// A small xorshift generator: the kill points need to be spread, not secret.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9);
        Rng(t | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// A staff change whose RPC returned OK.
#[derive(Clone, Debug)]
enum Acked {
    Child(String),
    Contact(String),
}

#[derive(Default)]
struct Staff {
    acked: Mutex<Vec<Acked>>,
    /// RPCs that failed (mostly: the controller was killed or not yet back); their outcome
    /// is unknown and not checked.
    failed: AtomicU64,
}

/// Makes changes one after another until `stop`: children, and protected contacts up to
/// `max_contacts` (each one is pushed to every device).
async fn staff_loop(
    channel: Channel,
    admin: String,
    manager: String,
    max_contacts: usize,
    staff: Arc<Staff>,
    stop: Arc<AtomicBool>,
) {
    let mut children = api::child_service_client::ChildServiceClient::new(channel.clone());
    let mut homes = api::home_service_client::HomeServiceClient::new(channel);
    let mut n = 0usize;
    let mut contacts = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let ok = if n.is_multiple_of(8) && contacts < max_contacts {
            let name = format!("Soak Contact {n}");
            let r = homes
                .add_protected_contact(authed(
                    &manager,
                    api::AddProtectedContactRequest {
                        home: HOME.into(),
                        name: name.clone(),
                        // Ofcom's drama range: a real-looking mobile number that rings nobody.
                        address: format!("07700 9{:05}", n % 100_000),
                        ..Default::default()
                    },
                ))
                .await;
            if r.is_ok() {
                contacts += 1;
                staff.acked.lock().unwrap().push(Acked::Contact(name));
            }
            r.is_ok()
        } else {
            let name = format!("Soak Child {n}");
            let r = children
                .add_child(authed(
                    &admin,
                    api::AddChildRequest {
                        home: HOME.into(),
                        name: name.clone(),
                        date_of_birth: "2012-01-01".into(),
                    },
                ))
                .await;
            if r.is_ok() {
                staff.acked.lock().unwrap().push(Acked::Child(name));
            }
            r.is_ok()
        };
        if ok {
            tokio::time::sleep(Duration::from_millis(40)).await;
        } else {
            staff.failed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Staff writes acknowledged but not there now.
async fn lost_staff_writes(channel: &Channel, admin: &str, acked: &[Acked]) -> Option<Vec<String>> {
    let mut children = api::child_service_client::ChildServiceClient::new(channel.clone());
    let mut homes = api::home_service_client::HomeServiceClient::new(channel.clone());
    // Every page: a long soak adds more children than one page holds.
    let mut kids = BTreeSet::new();
    let mut page_token = String::new();
    loop {
        let page = children
            .list_children(authed(
                admin,
                api::ListChildrenRequest {
                    home: HOME.into(),
                    include_archived: true,
                    page_size: 1000,
                    page_token,
                },
            ))
            .await
            .ok()?
            .into_inner();
        kids.extend(page.children.into_iter().map(|c| c.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let contacts: BTreeSet<String> = homes
        .list_protected_contacts(authed(
            admin,
            api::ListProtectedContactsRequest {
                home: HOME.into(),
                child: String::new(),
            },
        ))
        .await
        .ok()?
        .into_inner()
        .contacts
        .into_iter()
        .map(|c| c.name)
        .collect();
    Some(
        acked
            .iter()
            .filter_map(|a| match a {
                Acked::Child(name) if !kids.contains(name) => Some(format!("child {name}")),
                Acked::Contact(name) if !contacts.contains(name) => {
                    Some(format!("protected contact {name}"))
                }
                _ => None,
            })
            .collect(),
    )
}

/// (device id, violation id) of every soak violation stored, and how many rows they are.
async fn stored_violations(db: &Path) -> (BTreeSet<(String, String)>, usize) {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .connect()
        .await
        .expect("open haven.db read-only");
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT device_id, id FROM violations WHERE subject LIKE ?1")
            .bind(format!("{SUBJECT_PREFIX}%"))
            .fetch_all(&mut conn)
            .await
            .expect("read the violations");
    let n = rows.len();
    (rows.into_iter().collect(), n)
}

fn main() {
    let a = args();
    raise_open_file_limit();
    // Make sure the binaries are built (release, like this benchmark) before anything else.
    let _ = bin_dir();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let lost = rt.block_on(soak(&a));
    if lost {
        eprintln!("soak: LOSS FOUND (see above)");
        std::process::exit(1);
    }
}

async fn soak(a: &Args) -> bool {
    println!(
        "haven soak: {} kills, {} devices journalling {}/s each, staff writing; kill after {}-{} ms",
        a.kills, a.devices, a.rate, a.min_ms, a.max_ms
    );
    // On the target folder's disk (not tmpfs), so fsync means what it does on a server.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let dir = tempfile::tempdir_in(&base).unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let data = dir.path().join("data");
    let mut controller = Controller::start(&data);
    let ca = std::fs::read_to_string(data.join("ca.pem")).unwrap();
    let admin = controller.first_token();
    let cli = Cli::new(dir.path());
    let login = cli.login(&controller, &admin);
    assert!(login.ok, "haven login: {}\n{}", login.stdout, login.stderr);
    let channel = staff_channel(&controller.url, &ca).await;
    let mut homes = api::home_service_client::HomeServiceClient::new(channel.clone());
    let mut children = api::child_service_client::ChildServiceClient::new(channel.clone());
    let mut staff_api = api::staff_service_client::StaffServiceClient::new(channel.clone());
    let devices_api = api::device_service_client::DeviceServiceClient::new(channel.clone());
    homes
        .add_home(authed(
            &admin,
            api::AddHomeRequest {
                name: HOME.into(),
                time_zone: String::new(),
            },
        ))
        .await
        .unwrap();
    let child = children
        .add_child(authed(
            &admin,
            api::AddChildRequest {
                home: HOME.into(),
                name: "Sam Soak".into(),
                date_of_birth: "2012-01-01".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let manager = staff_api
        .add_staff(authed(
            &admin,
            api::AddStaffRequest {
                name: "Soak Manager".into(),
                staff_role: api::StaffRole::Manager.into(),
                homes: vec![HOME.into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .token;

    // Enroll the devices, a few at a time.
    let started = Instant::now();
    let identities: Vec<_> = futures::stream::iter(0..a.devices)
        .map(|_| {
            let mut devices = devices_api.clone();
            let (token, child_id) = (admin.clone(), child.id.clone());
            let (url, ca) = (controller.url.clone(), ca.clone());
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
                haven_agent::enroll(&url, &ca, &code, fixed_inventory())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    println!(
        "  enrolled {} devices in {:.1} s",
        identities.len(),
        started.elapsed().as_secs_f64()
    );

    // The devices: the real sync client, each with its own journal on disk.
    let stop = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut journals = Vec::new();
    let mut device_ids = Vec::new();
    let mut tasks = Vec::new();
    for (i, identity) in identities.into_iter().enumerate() {
        let folder = dir.path().join(format!("device-{i}"));
        std::fs::create_dir_all(&folder).unwrap();
        let journal =
            Arc::new(Journal::open_at(&folder.join("violations.journal"), 20_000).unwrap());
        device_ids.push(identity.device_id.clone());
        let mut config = SyncConfig::new(identity);
        config.inventory = InventorySource::Fixed(fixed_inventory());
        config.heartbeat = Duration::from_secs(3600);
        config.initial_backoff = Duration::from_millis(100);
        config.max_backoff = Duration::from_millis(1_000);
        config.keepalive_interval = Duration::from_secs(2);
        config.keepalive_timeout = Duration::from_secs(2);
        config.violation_retry = Duration::from_millis(500);
        config.journal = Some(journal.clone());
        journals.push(journal);
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ =
                haven_agent::sync::run(config, Box::new(haven_agent::NullEnforcer), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }

    // The devices' guards: blocked attempts journalled at random, on a thread of their own
    // (each record is an fsync, as on a device).
    let journalled: Arc<Mutex<BTreeSet<(String, String)>>> = Arc::default();
    let paused = Arc::new(AtomicBool::new(false));
    let producer = {
        let (journals, device_ids) = (journals.clone(), device_ids.clone());
        let (journalled, paused, stop) = (journalled.clone(), paused.clone(), stop.clone());
        let gap = Duration::from_secs_f64(1.0 / (a.rate * a.devices as f64).max(0.001));
        std::thread::spawn(move || {
            let mut rng = Rng::seeded();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(gap);
                if paused.load(Ordering::SeqCst) {
                    continue;
                }
                n += 1;
                let i = (rng.next() % journals.len() as u64) as usize;
                // Held across the write, so no record can be acknowledged before it is counted.
                let mut journalled = journalled.lock().unwrap();
                let id = journals[i].record(&Blocked::now(
                    ViolationKind::AppBlocked,
                    format!("{SUBJECT_PREFIX}{n}"),
                    "tried to start a blocked app (soak)",
                ));
                journalled.insert((device_ids[i].clone(), id));
            }
        })
    };

    let staff = Arc::new(Staff::default());
    let staff_task = tokio::spawn(staff_loop(
        channel.clone(),
        admin.clone(),
        manager.clone(),
        a.contacts,
        staff.clone(),
        stop.clone(),
    ));

    let db = data.join("haven.db");
    let mut rng = Rng::seeded();
    let soak_started = Instant::now();
    let mut losses = 0usize;
    let mut audit_failures = 0usize;
    let mut restart_ms = Vec::new();
    let mut drain_ms = Vec::new();
    for kill in 1..=a.kills {
        tokio::time::sleep(Duration::from_millis(rng.between(a.min_ms, a.max_ms))).await;
        controller.kill();
        let t = Instant::now();
        // Blocking (it waits for the port and the "listening" line): off the async workers.
        tokio::task::block_in_place(|| controller.restart());
        restart_ms.push(t.elapsed().as_secs_f64() * 1e3);

        // 1. Every acknowledged staff write is there (the channel reconnects on its own).
        let acked = staff.acked.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let lost = loop {
            if let Some(lost) = lost_staff_writes(&channel, &admin, &acked).await {
                break lost;
            }
            assert!(
                Instant::now() < deadline,
                "the controller did not answer after kill {kill}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !lost.is_empty() {
            losses += lost.len();
            println!("  kill {kill}: LOST acknowledged staff writes: {lost:?}");
        }

        // 2. The audit trail verifies, through the real CLI.
        let verify = tokio::task::block_in_place(|| cli.run(&["audit", "verify"]));
        if !verify.ok || !verify.stdout.contains("intact") {
            audit_failures += 1;
            println!(
                "  kill {kill}: audit verify FAILED:\n{}\n{}",
                verify.stdout, verify.stderr
            );
        }

        // 3. Drain: no new attempts until every journal is empty, then compare.
        paused.store(true, Ordering::SeqCst);
        let t = Instant::now();
        let drained = loop {
            if journals.iter().all(|j| j.is_empty()) {
                break true;
            }
            if t.elapsed() > Duration::from_secs(120) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        drain_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let expected = journalled.lock().unwrap().clone();
        let (stored, rows) = stored_violations(&db).await;
        paused.store(false, Ordering::SeqCst);
        let missing: Vec<_> = expected.difference(&stored).collect();
        let extra: Vec<_> = stored.difference(&expected).collect();
        if !drained || !missing.is_empty() || !extra.is_empty() || rows != stored.len() {
            losses += missing.len() + extra.len() + (rows - stored.len());
            let pending: usize = journals.iter().map(|j| j.len()).sum();
            println!(
                "  kill {kill}: violations NOT exactly once: drained {drained} ({pending} pending), {} journalled, {} stored ({rows} rows), missing {:?}, extra {:?}",
                expected.len(),
                stored.len(),
                missing.iter().take(5).collect::<Vec<_>>(),
                extra.iter().take(5).collect::<Vec<_>>()
            );
        }
        println!(
            "  kill {kill:>3} at {:>6.1} s: restart {:.0} ms, drain {:.0} ms; {} staff writes acknowledged, {} violations journalled and stored once",
            soak_started.elapsed().as_secs_f64(),
            restart_ms.last().copied().unwrap_or_default(),
            drain_ms.last().copied().unwrap_or_default(),
            acked.len(),
            expected.len()
        );
    }

    stop.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    let _ = staff_task.await;
    let _ = producer.join();
    for t in tasks {
        let _ = t.await;
    }
    let acked = staff.acked.lock().unwrap().clone();
    let (children_acked, contacts_acked) = acked.iter().fold((0, 0), |(c, p), a| match a {
        Acked::Child(_) => (c + 1, p),
        Acked::Contact(_) => (c, p + 1),
    });
    let journalled = journalled.lock().unwrap().len();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.partial_cmp(y).unwrap());
        (
            v.get(v.len() / 2).copied().unwrap_or_default(),
            v.last().copied().unwrap_or_default(),
        )
    };
    let (restart_p50, restart_max) = median(&mut restart_ms);
    let (drain_p50, drain_max) = median(&mut drain_ms);
    println!(
        "== soak: {} SIGKILLs in {:.0} s ==",
        a.kills,
        soak_started.elapsed().as_secs_f64()
    );
    println!(
        "  staff writes acknowledged: {} ({children_acked} children, {contacts_acked} protected contacts pushed to {} devices); {} RPCs failed around kills (outcome unknown, not counted)",
        acked.len(),
        a.devices,
        staff.failed.load(Ordering::SeqCst)
    );
    println!(
        "  violations journalled by the devices: {journalled}; each checked stored exactly once after every restart"
    );
    println!(
        "  restart (SIGKILL to listening): median {restart_p50:.0} ms, worst {restart_max:.0} ms; devices drained in median {drain_p50:.0} ms, worst {drain_max:.0} ms"
    );
    println!("  lost or duplicated: {losses}; audit verify failures: {audit_failures}");
    let mut hash: HashMap<&str, usize> = HashMap::new();
    for line in controller.stderr.all() {
        if line.contains("ERROR") {
            *hash
                .entry("controller errors logged (last run)")
                .or_default() += 1;
        }
    }
    for (what, n) in hash {
        println!("  {what}: {n}");
    }
    losses > 0 || audit_failures > 0
}
