//! Filter lists benchmark (WB4): what importing the category lists costs, how big they are
//! compiled, and the time and bytes to get the full set — and then a one-domain change — to N
//! connected devices.
//!
//!   cargo bench -p haven-tests --bench filter_lists                    # 1,000 devices
//!   cargo bench -p haven-tests --bench filter_lists -- --devices 20
//!
//! Lists: the real UT1 lists at `../shared/data/filter-lists/ut1/` (skipped with a message
//! if absent) and the 1,000,000-domain list `../shared/bench/dns/gen-list.py` writes
//! (generated into a temporary folder; skipped if python3 or the script is missing).
//!
//! Part 1 compiles in this process (`haven_proto::domain_list::compile`, what the controller
//! runs on import) and loads the compiled form as the agent does. Part 2 runs the real
//! `haven serve` (release build): every list is imported through `FilterService` (client
//! streaming, as `haven filter import` does), then N simulated devices — the real agent sync
//! client, each on its own mTLS connection — connect holding nothing; timed until every one
//! has installed every list. The simulated devices check each list's SHA-256 as it streams
//! in but keep no table (`ReceivedLists::checking_only`: a thousand devices in one process
//! could not each hold a million names). Part 3 makes two one-domain changes, each timed
//! until every device has it: a re-import of the million-name list with one name more (sent
//! as a change), and a home's allow exception (sent in the policy).
//!
//! Bytes are the list payloads the controller sends (compiled list or change), without
//! gRPC/HTTP/2/TLS framing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use haven_agent::enforcer::{EnforceError, Enforcer};
use haven_agent::sync::{InventorySource, SyncConfig, SyncEvent};
use haven_agent::web::{DomainSet, ReceivedLists};
use haven_proto::admin::v1 as api;
use haven_proto::agent::v1::DevicePolicy;
use haven_proto::domain_list;
use haven_tests::*;
use tonic::transport::Channel;

mod common;
use common::*;

struct Args {
    devices: usize,
    skip_1m: bool,
}

fn args() -> Args {
    let mut a = Args {
        devices: 1000,
        skip_1m: false,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        match argv[i].as_str() {
            "--devices" => {
                a.devices = argv[i + 1].parse().expect("--devices 1000");
                i += 1;
            }
            "--skip-1m" => a.skip_1m = true,
            _ => {}
        }
        i += 1;
    }
    a
}

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// (category, list file) for every UT1 category folder.
fn ut1_lists() -> Vec<(String, PathBuf)> {
    let dir = shared().join("data/filter-lists/ut1");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("UT1 lists not found at {}: skipped", dir.display());
        return Vec::new();
    };
    let mut v: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("domains").is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().join("domains"),
            )
        })
        .collect();
    v.sort();
    v
}

/// The generated million-name list, written into `dir`.
fn million_list(dir: &Path) -> Option<PathBuf> {
    let script = shared().join("bench/dns/gen-list.py");
    if !script.is_file() {
        println!(
            "{} not found: the 1,000,000-domain list is skipped",
            script.display()
        );
        return None;
    }
    let started = Instant::now();
    let ok = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("gen-list.py failed (python3 missing?): the 1,000,000-domain list is skipped");
        return None;
    }
    println!(
        "generated the 1,000,000-domain list in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Some(dir.join("blocklist.txt"))
}

fn compile_part(lists: &[(String, PathBuf)]) {
    println!("== part 1: compile (in process, as the controller does on import) ==");
    println!(
        "  {:<22} {:>9} {:>11} {:>11} {:>9} {:>10} {:>10}",
        "list", "domains", "text bytes", "compiled", "compile", "agent load", "text load"
    );
    for (name, path) in lists {
        let text = std::fs::read(path).unwrap();
        let t0 = Instant::now();
        let c = domain_list::compile(&text);
        let compile = t0.elapsed();
        let t1 = Instant::now();
        let set = DomainSet::from_compiled(&c.bytes, name).unwrap();
        let load = t1.elapsed();
        let t2 = Instant::now();
        let (parsed, _) = DomainSet::parse(&text);
        let text_load = t2.elapsed();
        assert_eq!(set.len(), parsed.len());
        println!(
            "  {:<22} {:>9} {:>11} {:>11} {:>7.1}ms {:>8.1}ms {:>8.1}ms",
            name,
            c.domains,
            text.len(),
            c.bytes.len(),
            compile.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            text_load.as_secs_f64() * 1e3
        );
    }
}

/// Uploads a list as `haven filter import` does; returns the stored list and the time.
async fn import(
    filter: &mut api::filter_service_client::FilterServiceClient<Channel>,
    token: &str,
    category: &str,
    text: &[u8],
) -> (api::FilterList, Duration) {
    let mut messages = Vec::new();
    for (i, part) in text.chunks(512 * 1024).enumerate() {
        messages.push(api::FilterListUpload {
            category: if i == 0 {
                category.into()
            } else {
                String::new()
            },
            data: part.to_vec(),
            ..Default::default()
        });
    }
    let t0 = Instant::now();
    let r = filter
        .import_filter_list(authed(token, tokio_stream::iter(messages)))
        .await
        .unwrap()
        .into_inner();
    (r, t0.elapsed())
}

/// Records the newest policy each device applied, when, and how big it was.
struct Recorder {
    index: usize,
    applied_at: Arc<Vec<AtomicU64>>,
    policy_bytes: Arc<AtomicU64>,
    epoch: Instant,
}

impl Enforcer for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        self.applied_at[self.index].store(self.epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
        self.policy_bytes.store(
            prost::Message::encoded_len(policy) as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }
}

fn wait_all(what: &str, done: impl Fn() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            println!("  {what}: not every device within {} s", timeout.as_secs());
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

fn delivery_part(lists: &[(String, PathBuf)], million: Option<&Path>, n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let controller = Controller::start(&dir.path().join("data"));
    let pid = controller.pid().unwrap();
    let ca = std::fs::read_to_string(controller.data_dir.join("ca.pem")).unwrap();
    let admin = controller.first_token();
    rt.block_on(async {
        let channel = staff_channel(&controller.url, &ca).await;
        let mut homes = api::home_service_client::HomeServiceClient::new(channel.clone());
        let mut children = api::child_service_client::ChildServiceClient::new(channel.clone());
        let devices = api::device_service_client::DeviceServiceClient::new(channel.clone());
        let mut staff = api::staff_service_client::StaffServiceClient::new(channel.clone());
        let mut filter = api::filter_service_client::FilterServiceClient::new(channel.clone())
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        homes
            .add_home(authed(&admin, api::AddHomeRequest {
                name: "Bench House".into(),
                time_zone: String::new(),
            }))
            .await
            .unwrap();
        let child = children
            .add_child(authed(&admin, api::AddChildRequest {
                home: "Bench House".into(),
                name: "Sam Bench".into(),
                date_of_birth: "2012-01-01".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        let manager = staff
            .add_staff(authed(&admin, api::AddStaffRequest {
                name: "Bench Manager".into(),
                staff_role: api::StaffRole::Manager.into(),
                homes: vec!["Bench House".into()],
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .token;

        println!("== part 2: import through the controller (FilterService, real haven serve) ==");
        let mut full_set_bytes = 0u64;
        let mut categories = 0usize;
        let mut import_total = Duration::ZERO;
        for (name, path) in lists {
            let text = std::fs::read(path).unwrap();
            let (l, took) = import(&mut filter, &admin, name, &text).await;
            import_total += took;
            full_set_bytes += l.compiled_bytes;
            categories += 1;
            println!(
                "  {:<16} -> {:<18} {:>7} domains, {:>9} bytes compiled, import {:>7.1} ms",
                name,
                l.category,
                l.domains,
                l.compiled_bytes,
                took.as_secs_f64() * 1e3
            );
        }
        if !lists.is_empty() {
            println!(
                "  UT1: {categories} categories, {full_set_bytes} bytes compiled, imported in {:.2} s in all",
                import_total.as_secs_f64()
            );
        }
        let mut million_text = None;
        if let Some(path) = million {
            let text = std::fs::read(path).unwrap();
            let (l, took) = import(&mut filter, &admin, "malware", &text).await;
            println!(
                "  1,000,000-domain list as \"malware\": {} domains, {} text bytes -> {} bytes compiled, import {:.2} s (upload, compile, store)",
                l.domains,
                text.len(),
                l.compiled_bytes,
                took.as_secs_f64()
            );
            full_set_bytes += l.compiled_bytes;
            categories += 1;
            million_text = Some(text);
        }
        println!("  controller RSS after the imports: {} KiB", rss_kib(pid));

        // N devices, enrolled then connected holding no list.
        let identities: Vec<_> = futures::stream::iter(0..n)
            .map(|_| {
                let mut devices = devices.clone();
                let admin = admin.clone();
                let child_id = child.id.clone();
                let url = controller.url.clone();
                let ca = ca.clone();
                async move {
                    let code = devices
                        .create_enrollment(authed(&admin, api::CreateEnrollmentRequest {
                            child: child_id,
                            valid_for_minutes: 60,
                        }))
                        .await
                        .unwrap()
                        .into_inner()
                        .code;
                    haven_agent::enroll(&url, &ca, &code, fixed_inventory())
                        .await
                        .unwrap()
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let epoch = Instant::now();
        let installs: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let applied_at: Arc<Vec<AtomicU64>> =
            Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let policy_bytes = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (index, identity) in identities.into_iter().enumerate() {
            let mut config = SyncConfig::new(identity);
            config.inventory = InventorySource::Fixed(fixed_inventory());
            config.heartbeat = Duration::from_secs(3600);
            config.lists = Some(Arc::new(ReceivedLists::checking_only()));
            let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
            config.events = Some(events_tx);
            let installs = installs.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(e) = events.recv().await {
                    if let SyncEvent::FilterListInstalled { .. } = e {
                        installs[index].fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
            let enforcer = Recorder {
                index,
                applied_at: applied_at.clone(),
                policy_bytes: policy_bytes.clone(),
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
        let want = categories as u64;
        let installs2 = installs.clone();
        let all_full = tokio::task::spawn_blocking(move || {
            wait_all(
                "full set",
                || installs2.iter().all(|c| c.load(Ordering::SeqCst) >= want),
                Duration::from_secs(900),
            )
        })
        .await
        .unwrap();
        let full_secs = started.elapsed().as_secs_f64();
        println!("== part 3: delivery to {n} connected devices ==");
        if all_full {
            println!(
                "  full set ({categories} lists, {full_set_bytes} bytes each): every device connected and installed it in {full_secs:.2} s; {:.1} MB sent in all ({:.1} MB/s)",
                (full_set_bytes * n as u64) as f64 / 1e6,
                (full_set_bytes * n as u64) as f64 / 1e6 / full_secs
            );
        }
        println!("  controller RSS with {n} devices connected: {} KiB", rss_kib(pid));

        // One domain more in the million-name list: sent as a change.
        if let Some(mut text) = million_text {
            let before: Vec<u64> = installs.iter().map(|c| c.load(Ordering::SeqCst)).collect();
            text.extend_from_slice(b"one-more-site.example\n");
            let old = std::fs::read(million.unwrap()).unwrap();
            let change = domain_list::diff(
                &domain_list::compile(&old).bytes,
                &domain_list::compile(&text).bytes,
            )
            .unwrap();
            let t0 = Instant::now();
            let (l, took) = import(&mut filter, &admin, "malware", &text).await;
            let installs2 = installs.clone();
            let ok = tokio::task::spawn_blocking(move || {
                wait_all(
                    "one-domain list change",
                    || {
                        installs2
                            .iter()
                            .zip(&before)
                            .all(|(c, b)| c.load(Ordering::SeqCst) > *b)
                    },
                    Duration::from_secs(300),
                )
            })
            .await
            .unwrap();
            if ok {
                println!(
                    "  one domain added to the 1,000,000-domain list (version {}): import {:.2} s; every device had it {:.2} s after the import began; change {} bytes per device ({} in all) instead of {} for the whole list",
                    l.version,
                    took.as_secs_f64(),
                    t0.elapsed().as_secs_f64(),
                    change.len(),
                    change.len() * n,
                    l.compiled_bytes
                );
            }
        }

        // One domain allowed for the home: sent in the policy.
        let mut filter2 = api::filter_service_client::FilterServiceClient::new(channel.clone());
        let mark = epoch.elapsed().as_nanos() as u64;
        let t0 = Instant::now();
        let r = filter2
            .set_web_exception(authed(&manager, api::SetWebExceptionRequest {
                home: "Bench House".into(),
                domain: "games.example".into(),
                exception_kind: api::WebExceptionKind::Allow.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let rpc = t0.elapsed();
        let applied2 = applied_at.clone();
        let ok = tokio::task::spawn_blocking(move || {
            wait_all(
                "home exception",
                || applied2.iter().all(|t| t.load(Ordering::SeqCst) > mark),
                Duration::from_secs(120),
            )
        })
        .await
        .unwrap();
        if ok {
            let b = policy_bytes.load(Ordering::Relaxed);
            println!(
                "  one domain allowed for the home: request {:.1} ms (sent to {}); every device applied it {:.1} ms after the request began; policy {b} bytes per device ({} in all)",
                rpc.as_secs_f64() * 1e3,
                r.devices_sent,
                t0.elapsed().as_secs_f64() * 1e3,
                b * n as u64
            );
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            t.abort();
        }
    });
}

fn main() {
    let a = args();
    raise_open_file_limit();
    println!(
        "haven filter lists benchmark: {} cores, {} devices",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        a.devices
    );
    let tmp = tempfile::tempdir().unwrap();
    let ut1 = ut1_lists();
    let million = if a.skip_1m {
        None
    } else {
        million_list(tmp.path())
    };
    let mut all = ut1.clone();
    if let Some(m) = &million {
        all.push(("generated-1m".into(), m.clone()));
    }
    compile_part(&all);
    delivery_part(&ut1, million.as_deref(), a.devices);
}
