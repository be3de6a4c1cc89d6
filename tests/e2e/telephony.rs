//! Calls and texts on a Linux phone (D3, GD3, R19): the agent's telephony guard against a
//! stand-in ModemManager (the real D-Bus names) on a private `dbus-daemon` each test starts
//! and stops. The host's system bus is never touched. Skipped, with a SKIPPED line, where
//! `dbus-daemon` is not installed.
//!
//! The guard and the screening socket run in this process (the library the agent is built
//! from); the shipped D-Bus policy is loaded into a private bus and tried as an
//! unprivileged account (`nobody`, playing the child).

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use haven_agent::contacts::LocalTime;
use haven_agent::linux::telephony::{
    TelephonyBus, TelephonyConfig, TelephonyGuard, TelephonyState,
};
use haven_agent::report::{Blocked, MemorySink};
use haven_agent::screening::{ContactScreening, Screener, ScreeningOptions, ask_line};
use haven_proto::agent::v1::{
    Channel, Contact, ContactAddress, DevicePolicy, Lockdown, TimeWindow, ViolationKind,
};
use haven_tests::modem::{PrivateBus, StandIn, call_state};
use haven_tests::*;

const NAN: &str = "+447700900123";
const STRANGER: &str = "+447700900999";
/// The stranger whose call [`Phone::settle`] waits for.
const MARKER: &str = "+447700900000";

fn address(channel: Channel, a: &str) -> ContactAddress {
    ContactAddress {
        channel: channel as i32,
        address: a.into(),
        app: String::new(),
    }
}

/// Nan may call and text; nobody else is on the plan.
fn plan() -> DevicePolicy {
    DevicePolicy {
        version: 7,
        contacts: vec![Contact {
            name: "Nan".into(),
            addresses: vec![address(Channel::Call, NAN), address(Channel::Sms, NAN)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A phone: a private bus, the stand-in modem, and the guard watching it.
struct Phone {
    guard: TelephonyGuard,
    screener: Arc<Screener>,
    sink: Arc<MemorySink>,
    /// Everything reported so far (the sink is drained into it).
    seen: std::sync::Mutex<Vec<Blocked>>,
    modem: StandIn,
    runtime: tokio::runtime::Runtime,
    // Dropped last: the bus outlives everyone on it.
    bus: PrivateBus,
}

impl Phone {
    fn start(test: &str, policy: DevicePolicy) -> Option<Phone> {
        let bus = PrivateBus::start(test, "")?;
        Some(Phone::on(bus, policy))
    }

    fn on(bus: PrivateBus, policy: DevicePolicy) -> Phone {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let modem = runtime
            .block_on(StandIn::start(&bus.address))
            .expect("the stand-in ModemManager starts");
        let sink = Arc::new(MemorySink::default());
        let screener = Arc::new(Screener::new(policy, sink.clone()));
        let config = TelephonyConfig {
            bus: TelephonyBus::Address(bus.address.clone()),
            rescan_every: std::time::Duration::from_millis(200),
        };
        let guard = TelephonyGuard::start(config, screener.clone()).expect("the guard starts");
        eventually("the guard to watch the stand-in modem", WAIT, || {
            (guard.state() == TelephonyState::Watching(1)).then_some(())
        });
        screener.set_telephone(Arc::new(guard.phone()));
        Phone {
            guard,
            screener,
            sink,
            seen: std::sync::Mutex::new(Vec::new()),
            modem,
            runtime,
            bus,
        }
    }

    fn ring(&self, number: &str) -> String {
        self.runtime.block_on(self.modem.ring(number))
    }

    fn receive_text(&self, number: &str, text: &str) -> String {
        self.runtime.block_on(self.modem.receive_text(number, text))
    }

    fn wait_hung_up(&self, call: &str) {
        eventually("the call to be hung up", WAIT, || {
            (self.modem.call_state(call) == Some(call_state::TERMINATED)).then_some(())
        });
    }

    /// A stranger's call, rung after everything before it, waited for until it is hung up
    /// and reported: the guard reports in order, so by then it has decided and reported every
    /// call and text that came before.
    fn settle(&self) {
        let marker = self.ring(MARKER);
        self.wait_hung_up(&marker);
        eventually("the last call's report", WAIT, || {
            self.drain();
            let seen = self.seen.lock().unwrap();
            seen.iter().any(|b| b.subject == MARKER).then_some(())
        });
    }

    fn drain(&self) {
        self.seen.lock().unwrap().extend(self.sink.take());
    }

    /// What was reported (after [`Phone::settle`]), leaving out the settling calls.
    fn reports(&self) -> Vec<Blocked> {
        self.drain();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.subject != MARKER)
            .cloned()
            .collect()
    }

    fn answer(&self, line: &str) -> haven_agent::screening::Answer {
        self.screener.answer_line(line, LocalTime::now(), true)
    }
}

// clause D3
#[test]
fn d3_an_allowed_call_connects_both_ways_and_is_never_reported() {
    let Some(phone) = Phone::start("d3_an_allowed_call_connects_both_ways", plan()) else {
        return;
    };
    // Nan rings in; the child answers through the agent.
    let call = phone.ring(NAN);
    let a = phone.answer(&format!(r#"{{"op":"answer","call":"{call}"}}"#));
    assert!(a.allowed(), "{a:?}");
    assert_eq!(phone.modem.call_state(&call), Some(call_state::ACTIVE));
    // The child calls Nan through the agent.
    let a = phone.answer(&format!(r#"{{"op":"call","to":"{NAN}"}}"#));
    assert!(a.allowed() && !a.call.is_empty(), "{a:?}");
    phone.settle();
    assert_eq!(phone.modem.call_state(&call), Some(call_state::ACTIVE));
    assert_eq!(
        phone.modem.call_state(&a.call),
        Some(call_state::RINGING_OUT)
    );
    assert!(phone.reports().is_empty());
}

// clause GD3, D3
#[test]
fn gd3_an_unknown_incoming_call_is_hung_up_and_reported_once() {
    let Some(phone) = Phone::start("gd3_an_unknown_incoming_call_is_hung_up", plan()) else {
        return;
    };
    let call = phone.ring(STRANGER);
    phone.wait_hung_up(&call);
    // Answering it through the agent is refused too.
    let a = phone.answer(&format!(r#"{{"op":"answer","call":"{call}"}}"#));
    assert!(!a.allowed(), "{a:?}");
    // A policy applied again looks at calls in progress; the ended one is not reported again.
    let mut phone = phone;
    haven_agent::Enforcer::apply(&mut phone.guard, &plan()).unwrap();
    phone.settle();
    let reports = phone.reports();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].kind, ViolationKind::UnknownContact);
    assert_eq!(reports[0].channel, Channel::Call);
    assert_eq!(reports[0].subject, STRANGER);
    assert!(
        reports[0].detail.contains("tried to call this device")
            && reports[0].detail.contains("hung up"),
        "{reports:?}"
    );
}

// clause D3, GD3
#[test]
fn d3_an_outgoing_call_to_a_blocked_number_is_hung_up_whichever_app_placed_it() {
    let Some(phone) = Phone::start("d3_an_outgoing_call_to_a_blocked_number", plan()) else {
        return;
    };
    // A dialer that does not ask Haven, talking to ModemManager directly (the D-Bus policy
    // stops the child's account doing this; this stands for whatever it cannot stop).
    let call = phone.runtime.block_on(async {
        let conn = zbus::connection::Builder::address(phone.bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let voice = zbus::Proxy::new(
            &conn,
            "org.freedesktop.ModemManager1",
            "/org/freedesktop/ModemManager1/Modem/0",
            "org.freedesktop.ModemManager1.Modem.Voice",
        )
        .await
        .unwrap();
        let props =
            std::collections::HashMap::from([("number", zbus::zvariant::Value::from(STRANGER))]);
        let path: zbus::zvariant::OwnedObjectPath = voice
            .call_method("CreateCall", &(props,))
            .await
            .unwrap()
            .body()
            .deserialize()
            .unwrap();
        path.as_str().to_string()
    });
    phone.wait_hung_up(&call);
    // Asking the agent to place it is refused, and nothing is dialled.
    let a = phone.answer(&format!(r#"{{"op":"call","to":"{STRANGER}"}}"#));
    assert!(!a.allowed() && a.call.is_empty(), "{a:?}");
    phone.settle();
    // Reported, once: by the hang-up or by the refused request, whichever the guard heard
    // first (the two race; the hang-up itself is checked above).
    let reports = phone.reports();
    let about: Vec<_> = reports.iter().filter(|r| r.subject == STRANGER).collect();
    assert_eq!(about.len(), 1, "{reports:?}");
    assert!(
        about[0].detail.contains("tried to call an address"),
        "{reports:?}"
    );
}

// clause R19, D3
#[test]
fn r19_999_is_never_hung_up_even_in_a_full_lockdown() {
    // Nothing in the plan names 999: the built-in list (`haven_protected`) is enough.
    let mut policy = plan();
    policy.lockdown = Some(Lockdown {
        active: true,
        channels: ["calls", "messages", "web", "camera", "apps"]
            .map(String::from)
            .to_vec(),
        reason: "injury-to-child".into(),
        ..Default::default()
    });
    let Some(phone) = Phone::start("r19_999_is_never_hung_up_even_in_a_full_lockdown", policy)
    else {
        return;
    };
    let incoming = phone.ring("999");
    let nan = phone.ring(NAN);
    let a = phone.answer(r#"{"op":"call","to":"999"}"#);
    assert!(a.allowed(), "{a:?}");
    let text = phone.answer(r#"{"op":"text","to":"999","body":"help"}"#);
    assert!(text.allowed(), "{text:?}");
    phone.wait_hung_up(&nan);
    phone.settle();
    assert_eq!(
        phone.modem.call_state(&incoming),
        Some(call_state::RINGING_IN)
    );
    assert_eq!(
        phone.modem.call_state(&a.call),
        Some(call_state::RINGING_OUT)
    );
    assert_eq!(
        phone.modem.sent(),
        vec![("999".to_string(), "help".to_string())]
    );
    // Nan is refused in the lockdown and reported; 999 never is.
    let reports = phone.reports();
    assert!(reports.iter().all(|r| r.subject != "999"), "{reports:?}");
    assert!(
        reports
            .iter()
            .any(|r| r.subject == NAN && r.kind == ViolationKind::ContactBlocked)
    );
}

// clause R19
#[test]
fn r19_999_is_never_hung_up_with_an_empty_plan() {
    // No plan at all and no protected contacts in it: 999 still connects (built-in list).
    let Some(phone) = Phone::start(
        "r19_999_is_never_hung_up_with_an_empty_plan",
        DevicePolicy::default(),
    ) else {
        return;
    };
    let incoming = phone.ring("999");
    phone.settle();
    assert_eq!(
        phone.modem.call_state(&incoming),
        Some(call_state::RINGING_IN)
    );
    assert!(phone.reports().is_empty());
}

// clause GD3, D3
#[test]
fn gd3_a_text_from_an_unknown_number_is_withheld_and_reported_without_its_words() {
    let Some(phone) = Phone::start("gd3_a_text_from_an_unknown_number_is_withheld", plan()) else {
        return;
    };
    let from_nan = phone.receive_text(NAN, "tea at 5?");
    let secret = "meet me behind the shops, tell no one";
    let from_stranger = phone.receive_text(STRANGER, secret);
    eventually("the stranger's text to be withheld", WAIT, || {
        (!phone.modem.has_text(&from_stranger)).then_some(())
    });
    phone.settle();
    assert!(phone.modem.has_text(&from_nan));
    // The child's inbox (read through the agent) shows Nan's text only.
    let inbox = phone.answer(r#"{"op":"inbox"}"#);
    assert_eq!(inbox.inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox.inbox[0].from, NAN);
    assert_eq!(inbox.inbox[0].text, "tea at 5?");
    // The child texts Nan through the agent; a text to the stranger is refused.
    assert!(
        phone
            .answer(&format!(r#"{{"op":"text","to":"{NAN}","body":"yes!"}}"#))
            .allowed()
    );
    assert!(
        !phone
            .answer(&format!(r#"{{"op":"text","to":"{STRANGER}","body":"hi"}}"#))
            .allowed()
    );
    assert_eq!(
        phone.modem.sent(),
        vec![(NAN.to_string(), "yes!".to_string())]
    );
    let reports = phone.reports();
    let withheld: Vec<_> = reports
        .iter()
        .filter(|r| r.channel == Channel::Sms && r.detail.contains("withheld"))
        .collect();
    assert_eq!(withheld.len(), 1, "{reports:?}");
    assert_eq!(withheld[0].subject, STRANGER);
    for r in &reports {
        assert!(
            !r.detail.contains("behind the shops") && !r.subject.contains("shops"),
            "{r:?}"
        );
    }
}

// clause D3, GD3
#[test]
fn d3_time_windows_apply_to_calls_both_ways() {
    // A window that is certainly not now: late evening if it is morning, and the reverse.
    let now = LocalTime::now().minute;
    let (start, end) = if now < 720 { (1380, 1439) } else { (0, 60) };
    let mut policy = plan();
    policy.contacts[0].windows = vec![TimeWindow {
        start_minute: start,
        end_minute: end,
        weekdays: vec![],
    }];
    let Some(phone) = Phone::start("d3_time_windows_apply_to_calls_both_ways", policy) else {
        return;
    };
    let incoming = phone.ring(NAN);
    phone.wait_hung_up(&incoming);
    let a = phone.answer(&format!(r#"{{"op":"call","to":"{NAN}"}}"#));
    assert!(!a.allowed() && a.reason.contains("between"), "{a:?}");
    phone.settle();
    let reports = phone.reports();
    assert!(
        reports
            .iter()
            .any(|r| r.subject == NAN && r.kind == ViolationKind::ContactBlocked),
        "{reports:?}"
    );
}

// clause D3
#[test]
fn d3_with_no_modemmanager_the_guard_says_no_modem_and_the_socket_still_answers() {
    let Some(bus) = PrivateBus::start("d3_with_no_modemmanager_the_guard_says_no_modem", "") else {
        return;
    };
    let sink = Arc::new(MemorySink::default());
    let screener = Arc::new(Screener::new(plan(), sink));
    let guard = TelephonyGuard::start(
        TelephonyConfig {
            bus: TelephonyBus::Address(bus.address.clone()),
            rescan_every: std::time::Duration::from_millis(100),
        },
        screener.clone(),
    )
    .unwrap();
    let state = eventually("the guard to say there is no modem", WAIT, || {
        match guard.state() {
            TelephonyState::NoModem(why) => Some(why),
            _ => None,
        }
    });
    assert!(guard.state().to_string().starts_with("no modem"), "{state}");
    screener.set_telephone(Arc::new(guard.phone()));
    let socket = bus.path("screening.sock");
    let _screening =
        ContactScreening::start_with(&socket, screener, ScreeningOptions::default()).unwrap();
    let a = ask_line(&socket, &format!(r#"{{"op":"call","to":"{NAN}"}}"#)).unwrap();
    assert!(!a.allowed() && a.error.contains("no modem"), "{a:?}");
    let a = ask_line(
        &socket,
        &format!(r#"{{"channel":"call","address":"{NAN}"}}"#),
    )
    .unwrap();
    assert!(a.allowed(), "{a:?}");
}

/// The shipped policy, with its group swapped for `group` (one that exists on this machine,
/// so no account or group is added to the host).
fn shipped_policy_for(group: &str, dir: &Path) -> std::path::PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent/dist/haven-telephony.conf");
    let text = std::fs::read_to_string(&shipped).expect("agent/dist/haven-telephony.conf");
    assert!(
        text.contains(r#"group="haven-child""#),
        "the shipped policy names haven-child"
    );
    let file = dir.join("haven-telephony.conf");
    std::fs::write(
        &file,
        text.replace(r#"group="haven-child""#, &format!(r#"group="{group}""#)),
    )
    .unwrap();
    file
}

/// An account in /etc/passwd: its uid, its group's id, and that group's name.
fn existing_account(name: &str) -> Option<(u32, u32, String)> {
    let field = |file: &str, key: &str, n: usize| -> Option<String> {
        std::fs::read_to_string(file)
            .ok()?
            .lines()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.first() == Some(&key)).then(|| fields.get(n).map(|f| f.to_string()))?
            })
    };
    let uid = field("/etc/passwd", name, 2)?.parse().ok()?;
    let gid: u32 = field("/etc/passwd", name, 3)?.parse().ok()?;
    let group = std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.get(2) == Some(&gid.to_string().as_str())).then(|| fields[0].to_string())
        })?;
    Some((uid, gid, group))
}

/// Makes `cmd` run as `uid` with only `gid` as its group (std's own `uid()` would leave the
/// groups to the user database, which these accounts are not in).
fn run_as(cmd: &mut Command, uid: u32, gid: u32) -> std::process::Output {
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) run between fork and
    // exec; each result is checked and turned into an error for the parent.
    unsafe {
        cmd.pre_exec(move || {
            let groups = [gid];
            if libc::setgroups(1, groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run a command as another account")
}

/// Runs `dbus-send` on `bus` as `uid` with only `gid` as its group; its output.
fn dbus_send_as(uid: u32, gid: u32, bus: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("dbus-send");
    cmd.arg(format!("--bus={bus}"))
        .args(["--print-reply", "--dest=org.freedesktop.ModemManager1"])
        .args(args)
        .env_clear();
    run_as(&mut cmd, uid, gid)
}

// clause D3, GD3
#[test]
fn gd3_the_childs_account_is_refused_modemmanager_by_the_shipped_dbus_policy() {
    const TEST: &str = "gd3_the_childs_account_is_refused_modemmanager_by_the_shipped_dbus_policy";
    if skip_unless_root(TEST) {
        return;
    }
    if Command::new("dbus-send").arg("--help").output().is_err() {
        eprintln!("SKIPPED {TEST}: needs dbus-send (apt-get install dbus)");
        return;
    }
    // dbus-daemon refuses a uid it cannot look up, so the child's account is played by the
    // unprivileged `nobody`, and haven-child by its group: nothing is added to the host.
    // `daemon` plays an account outside the group.
    let (Some((child_uid, gid, group)), Some((other_uid, other_gid, _))) =
        (existing_account("nobody"), existing_account("daemon"))
    else {
        eprintln!(
            "SKIPPED {TEST}: needs the accounts nobody and daemon to play the child and another account"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let policy = shipped_policy_for(&group, dir.path());
    let include = format!("<include>{}</include>", policy.display());
    let Some(bus) = PrivateBus::start(TEST, &include) else {
        return;
    };
    let phone = Phone::on(bus, plan());
    let call = phone.ring(NAN);
    let text = phone.receive_text(NAN, "private words");
    let bus = phone.bus.address.clone();
    let modem = "/org/freedesktop/ModemManager1/Modem/0";
    let tries: Vec<Vec<String>> = vec![
        vec![
            modem.into(),
            "org.freedesktop.ModemManager1.Modem.Voice.ListCalls".into(),
        ],
        vec![
            modem.into(),
            "org.freedesktop.ModemManager1.Modem.Voice.CreateCall".into(),
            // a{ss} rather than a{sv} (dbus-send cannot write variants in a dict): the bus
            // refuses by interface before the arguments are looked at.
            format!("dict:string:string:number,{STRANGER}"),
        ],
        vec![
            call.clone(),
            "org.freedesktop.ModemManager1.Call.Accept".into(),
        ],
        vec![
            modem.into(),
            "org.freedesktop.ModemManager1.Modem.Messaging.List".into(),
        ],
        vec![
            text.clone(),
            "org.freedesktop.ModemManager1.Sms.Send".into(),
        ],
        vec![
            text.clone(),
            "org.freedesktop.DBus.Properties.Get".into(),
            "string:org.freedesktop.ModemManager1.Sms".into(),
            "string:Text".into(),
        ],
        vec![
            text.clone(),
            "org.freedesktop.DBus.Properties.GetAll".into(),
            "string:org.freedesktop.ModemManager1.Sms".into(),
        ],
        vec![
            "/org/freedesktop/ModemManager1".into(),
            "org.freedesktop.DBus.ObjectManager.GetManagedObjects".into(),
        ],
    ];
    for args in &tries {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = dbus_send_as(child_uid, gid, &bus, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("AccessDenied"),
            "the child's account was not refused {args:?}: {err}{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("private words"));
    }
    // Nothing the child tried changed anything.
    assert_eq!(phone.modem.call_state(&call), Some(call_state::RINGING_IN));
    assert!(phone.modem.sent().is_empty());
    // Root (the agent) keeps its access; so does an account outside the group.
    let out = dbus_send_as(
        0,
        0,
        &bus,
        &[modem, "org.freedesktop.ModemManager1.Modem.Voice.ListCalls"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dbus_send_as(
        other_uid,
        other_gid,
        &bus,
        &[modem, "org.freedesktop.ModemManager1.Modem.Messaging.List"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `(kind, subject, channel)` of every violation the controller stored.
fn stored_violations(home: &Home) -> Vec<(String, String, String)> {
    let list = home.manager.json(&["violations", "--limit", "1000"]);
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    list.as_array()
        .map(|rows| {
            rows.iter()
                .map(|v| (text(v, "kind"), text(v, "subject"), text(v, "channel")))
                .collect()
        })
        .unwrap_or_default()
}

// clause D3, GD3, R19
#[test]
fn d3_gd3_the_running_agent_hangs_up_an_unknown_caller_and_staff_see_it_once() {
    const TEST: &str = "d3_gd3_the_running_agent_hangs_up_an_unknown_caller_and_staff_see_it_once";
    // `--enforcer linux` also guards the camera with fanotify and apps with the process
    // connector.
    if skip_unless_root(TEST) {
        return;
    }
    let Some(bus) = PrivateBus::start(TEST, "") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let modem = runtime.block_on(StandIn::start(&bus.address)).unwrap();
    let home = Home::new();
    let mut agent = home.enrolled_agent("phone");
    agent.start_linux(&["--telephony-bus", &bus.address]);
    assert!(
        agent
            .stderr
            .wait_for("telephony guard: watching 1 modem", WAIT)
            .is_some(),
        "{}",
        agent.stderr.text()
    );
    let version = home.change_policy("Childline", "0800 1111");
    assert!(agent.wait_applied(version, WAIT), "{}", agent.stdout.text());

    let stranger = runtime.block_on(modem.ring(STRANGER));
    let childline = runtime.block_on(modem.ring("0800 1111"));
    eventually("the stranger's call to be hung up", WAIT, || {
        (modem.call_state(&stranger) == Some(call_state::TERMINATED)).then_some(())
    });
    // A second unknown caller, rung after Childline: once it is hung up, Childline's call has
    // been decided too.
    let marker = runtime.block_on(modem.ring("+447700900000"));
    eventually("the second call to be hung up", WAIT, || {
        (modem.call_state(&marker) == Some(call_state::TERMINATED)).then_some(())
    });
    assert_eq!(modem.call_state(&childline), Some(call_state::RINGING_IN));

    let stored = eventually("both refusals to reach staff", WAIT, || {
        let v = stored_violations(&home);
        (v.len() >= 2).then_some(v)
    });
    let strangers: Vec<_> = stored.iter().filter(|(_, s, _)| s == STRANGER).collect();
    assert_eq!(strangers.len(), 1, "{stored:?}");
    assert_eq!(strangers[0].0, "unknown-contact");
    assert_eq!(strangers[0].2, "call");
    assert!(
        stored.iter().all(|(_, s, _)| !s.contains("8001111")),
        "{stored:?}"
    );
    agent.stop();
}

// clause GD3
#[test]
fn gd3_another_account_asking_the_screening_socket_writes_nothing_into_the_childs_record() {
    const TEST: &str =
        "gd3_another_account_asking_the_screening_socket_writes_nothing_into_the_childs_record";
    if skip_unless_root(TEST) {
        return;
    }
    let Some((uid, gid, _)) = existing_account("nobody") else {
        eprintln!("SKIPPED {TEST}: needs the account nobody to play another account");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("screening.sock");
    let sink = Arc::new(MemorySink::default());
    let screener = Arc::new(Screener::new(plan(), sink.clone()));
    let _screening =
        ContactScreening::start_with(&socket, screener, ScreeningOptions::default()).unwrap();
    let check_as = |uid: u32, gid: u32, number: &str| {
        let mut cmd = Command::new(agent_bin());
        cmd.args(["check-contact", "--screening-socket"])
            .arg(&socket)
            .args(["--channel", "call", number])
            .env_clear();
        run_as(&mut cmd, uid, gid)
    };
    // Any local account may ask, and is told the truth...
    let out = check_as(uid, gid, STRANGER);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Not allowed:"));
    assert_eq!(check_as(uid, gid, NAN).status.code(), Some(0));
    // ...but only a trusted one (here root) puts "tried to call" into the child's record.
    assert!(
        sink.take().is_empty(),
        "an untrusted account's question was recorded"
    );
    assert_eq!(check_as(0, 0, STRANGER).status.code(), Some(1));
    let recorded = sink.take();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].subject, STRANGER);
}
