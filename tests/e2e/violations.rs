//! Violations staff see (D5), manager tasks for unknown contacts (GD3), and devices that stop
//! reporting.
//!
//! Violations are sent here by a test device speaking the real Sync protocol over mTLS with an
//! enrolled agent's own certificate, because the agent's guards (which make real violations)
//! are wired in at integration; a test with a real agent's guard is added then.

use std::time::Duration;

use haven_proto::agent::v1::{
    AgentMessage, Channel as WireChannel, ControllerMessage, Hello, Violation, ViolationBatch,
    ViolationKind, agent_message::Body, agent_service_client::AgentServiceClient,
    controller_message::Body as Down,
};
use haven_proto::trust::CONTROLLER_TLS_NAME;
use haven_tests::*;
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A device's Sync stream, opened with an enrolled agent's certificate.
pub(crate) struct DeviceLink {
    rt: tokio::runtime::Runtime,
    tx: mpsc::Sender<AgentMessage>,
    inbound: tonic::Streaming<ControllerMessage>,
}

impl DeviceLink {
    pub(crate) fn open(home: &Home, agent: &Agent) -> DeviceLink {
        Self::open_claiming(home, agent, 0)
    }

    /// Opens the stream with a `Hello` claiming `applied_policy_version`.
    pub(crate) fn open_claiming(home: &Home, agent: &Agent, applied: u64) -> DeviceLink {
        let rt = runtime();
        let identity = Identity::from_pem(
            agent.identity_file("device-cert.pem"),
            agent.identity_file("device-key.pem"),
        );
        let ca = std::fs::read_to_string(home.controller.data_dir.join("ca.pem")).unwrap();
        let url = home.controller.url.clone();
        let (tx, inbound) = rt.block_on(async move {
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(CONTROLLER_TLS_NAME)
                .identity(identity);
            let channel = Endpoint::from_shared(url)
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .expect("connect as the device");
            let (tx, rx) = mpsc::channel(16);
            tx.send(AgentMessage {
                body: Some(Body::Hello(Hello {
                    applied_policy_version: applied,
                    agent_version: "test-device".into(),
                    inventory: None,
                    ..Default::default()
                })),
            })
            .await
            .unwrap();
            let inbound = AgentServiceClient::new(channel)
                .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("open Sync")
                .into_inner();
            (tx, inbound)
        });
        DeviceLink { rt, tx, inbound }
    }

    /// Sends one batch and waits for the controller's acknowledgement; returns the ids acked.
    pub(crate) fn send(&mut self, violations: Vec<Violation>) -> Vec<String> {
        let (tx, inbound) = (&self.tx, &mut self.inbound);
        self.rt.block_on(async {
            tx.send(AgentMessage {
                body: Some(Body::Violations(ViolationBatch { violations })),
            })
            .await
            .unwrap();
            tokio::time::timeout(WAIT, async {
                loop {
                    let message = inbound.message().await.expect("stream").expect("open");
                    if let Some(Down::ViolationAck(ack)) = message.body {
                        return ack.ids;
                    }
                }
            })
            .await
            .expect("the controller acknowledges the batch")
        })
    }
}

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub(crate) fn violation(id: &str, kind: ViolationKind, subject: &str, at: i64) -> Violation {
    Violation {
        id: id.into(),
        occurred_at_unix_ms: at,
        kind: kind as i32,
        subject: subject.into(),
        detail: String::new(),
        channel: WireChannel::Unspecified as i32,
    }
}

pub(crate) fn call(id: &str, number: &str, at: i64) -> Violation {
    Violation {
        channel: WireChannel::Call as i32,
        ..violation(id, ViolationKind::UnknownContact, number, at)
    }
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

fn device_id(home: &Home) -> String {
    home.devices()[0]["id"].as_str().unwrap().to_string()
}

fn staff_member(home: &Home, name: &str) -> Cli {
    home.care_staff(name)
}

// clause D5: what a device blocked reaches the controller and staff see it, filtered,
// newest first, each stored once however often the device resends it.
#[test]
fn d5_violations_from_a_device_are_listed_with_filters_and_stored_once() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let id = device_id(&home);
    let mut link = DeviceLink::open(&home, &agent);
    let t = now_ms() - 60_000;
    let acked = link.send(vec![
        violation("v1", ViolationKind::CameraBlocked, "", t),
        violation(
            "v2",
            ViolationKind::AppBlocked,
            "/usr/bin/supertuxkart",
            t + 1000,
        ),
        violation("v3", ViolationKind::WebBlocked, "tiktok.com", t + 2000),
    ]);
    assert_eq!(acked, ["v1", "v2", "v3"]);
    // The device did not hear the acknowledgement and sends again, with one new one.
    let acked = link.send(vec![
        violation("v1", ViolationKind::CameraBlocked, "", t),
        call("v4", "+447700900999", t + 3000),
    ]);
    assert_eq!(
        acked,
        ["v1", "v4"],
        "resends are acknowledged so the device can forget them"
    );

    let all = home.admin.json(&["violations"]);
    assert_eq!(
        ids(&all),
        ["v4", "v3", "v2", "v1"],
        "each once, newest first: {all}"
    );
    let v4 = &all[0];
    assert_eq!(v4["device_id"], id.as_str());
    assert_eq!(v4["child_id"], home.child_id.as_str());
    assert_eq!(v4["child_name"], "Amira Khan");
    assert_eq!(v4["kind"], "unknown-contact");
    assert_eq!(v4["channel"], "call");
    assert_eq!(v4["subject"], "+447700900999");
    let occurred: jiff::Timestamp = v4["occurred_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(occurred.as_millisecond(), t + 3000);
    assert!(
        v4["received_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    assert_eq!(all[3]["kind"], "camera-blocked");
    assert_eq!(all[3]["channel"], "");

    let by = |args: &[&str]| ids(&home.admin.json(&[&["violations"], args].concat()));
    assert_eq!(by(&["--kind", "camera-blocked"]), ["v1"]);
    assert_eq!(by(&["--child", "Amira Khan"]).len(), 4);
    assert_eq!(by(&["--child", &home.child_id]).len(), 4);
    assert_eq!(by(&["--device", &id]).len(), 4);
    assert_eq!(by(&["--limit", "2"]), ["v4", "v3"]);
    assert_eq!(by(&["--since", "2h"]).len(), 4);
    assert!(by(&["--since", "2099-01-01"]).is_empty());
    let since = jiff::Timestamp::from_millisecond(t + 1500)
        .unwrap()
        .to_string();
    assert_eq!(by(&["--since", &since]), ["v4", "v3"]);

    // Staff read them in plain words; any member of staff may.
    let table = staff_member(&home, "Sam Carer").ok(&["violations"]);
    assert!(table.contains("tried to open the camera"), "{table}");
    assert!(
        table.contains("tried to visit tiktok.com, which is blocked"),
        "{table}"
    );

    // Bad filters are one-line refusals.
    let err = home.admin.fails(&["violations", "--child", "Nobody Here"]);
    assert!(err.contains("no child called"), "{err}");
    let err = home.admin.fails(&["violations", "--kind", "naughty"]);
    assert!(err.contains("not a kind of violation"), "{err}");
    let err = home.admin.fails(&["violations", "--since", "last tuesday"]);
    assert!(err.contains("not a time"), "{err}");
    let err = home.admin.fails(&["violations", "--device", "dev-nope"]);
    assert!(err.contains("no device called"), "{err}");
    let err = home.admin.fails(&["violations", "--limit", "0"]);
    assert!(err.contains("--limit"), "{err}");
    let err = home
        .admin
        .fails(&["violations", "--watch", "--child", "Nobody Here"]);
    assert!(err.contains("no child called"), "{err}");
}

// clause D5: staff watching see violations the moment the controller stores them, once.
#[test]
fn d5_watch_shows_each_new_violation_as_it_arrives_and_not_resends() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let mut link = DeviceLink::open(&home, &agent);
    let mut watch = home.admin.spawn(&["violations", "--watch", "--json"]);
    assert!(
        watch.stderr.wait_for("Watching", WAIT).is_some(),
        "{}",
        watch.stderr.text()
    );
    let t = now_ms();
    link.send(vec![violation("w1", ViolationKind::CameraBlocked, "", t)]);
    let line = watch
        .stdout
        .wait_for("\"w1\"", WAIT)
        .unwrap_or_else(|| panic!("no watch line:\n{}", watch.stderr.text()));
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "violation");
    assert_eq!(v["kind"], "camera-blocked");
    assert_eq!(v["child_name"], "Amira Khan");

    // A resend is not news; the next new one is.
    link.send(vec![
        violation("w1", ViolationKind::CameraBlocked, "", t),
        violation("w2", ViolationKind::WebBlocked, "tiktok.com", t + 1),
    ]);
    assert!(watch.stdout.wait_for("\"w2\"", WAIT).is_some());
    assert_eq!(watch.stdout.count("\"w1\""), 1, "{}", watch.stdout.text());
    assert!(watch.is_running());

    // A watch narrowed to another kind does not show it; a readable watch says it in words.
    let mut narrow = home
        .admin
        .spawn(&["violations", "--watch", "--kind", "app-blocked"]);
    let mut plain = home.admin.spawn(&["violations", "--watch"]);
    assert!(narrow.stderr.wait_for("Watching", WAIT).is_some());
    assert!(plain.stderr.wait_for("Watching", WAIT).is_some());
    link.send(vec![violation(
        "w3",
        ViolationKind::CameraBlocked,
        "",
        t + 2,
    )]);
    assert!(
        plain
            .stdout
            .wait_for("Amira Khan tried to open the camera", WAIT)
            .is_some(),
        "{}",
        plain.stdout.text()
    );
    link.send(vec![violation(
        "w4",
        ViolationKind::AppBlocked,
        "/usr/bin/game",
        t + 3,
    )]);
    assert!(
        narrow.stdout.wait_for("/usr/bin/game", WAIT).is_some(),
        "{}",
        narrow.stdout.text()
    );
    assert_eq!(narrow.stdout.count("camera"), 0, "{}", narrow.stdout.text());
    assert!(narrow.is_running() && plain.is_running());
}

// clause GD3: an attempt to reach an unknown contact opens a manager task; repeats are grouped
// onto it with a count, not a flood; a manager closes it with a note.
#[test]
fn gd3_unknown_contact_attempts_open_one_grouped_manager_task() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let mut link = DeviceLink::open(&home, &agent);
    let watch = home.manager.spawn(&["violations", "--watch"]);
    assert!(watch.stderr.wait_for("Watching", WAIT).is_some());
    let t = now_ms() - 10_000;
    link.send(vec![
        call("c1", "+447700900999", t),
        call("c2", "07700 900999", t + 1000),
        call("c3", "+447700900999", t + 2000),
    ]);
    link.send(vec![call("c4", "+447700900999", t + 3000)]);
    let tasks = home.manager.json(&["tasks"]);
    let list = tasks.as_array().unwrap();
    assert_eq!(list.len(), 1, "one task, not four: {tasks}");
    let task = &list[0];
    assert_eq!(task["attempts"].uint(), Some(4));
    assert_eq!(task["kind"], "unknown-contact");
    assert_eq!(task["child_name"], "Amira Khan");
    let summary = task["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Amira tried to call +447700900999")
            && summary.contains("review whether to assess this contact"),
        "{summary}"
    );
    assert!(
        watch.stdout.wait_for("MANAGER TASK", WAIT).is_some(),
        "{}",
        watch.stdout.text()
    );
    // Another number is its own task.
    link.send(vec![call("c5", "+447700900111", t + 4000)]);
    assert_eq!(home.manager.json(&["tasks"]).as_array().unwrap().len(), 2);

    let id = task["id"].as_str().unwrap();
    let err = staff_member(&home, "Sam Carer").fails(&["tasks", "close", id, "--note", "x"]);
    assert!(err.contains("manager"), "{err}");
    let err = home
        .manager
        .fails(&["tasks", "close", id, "--decision", "assess", "--note", "  "]);
    assert!(err.contains("--note"), "{err}");
    // clause GD3: it closes only with a decision.
    let err = home
        .manager
        .fails(&["tasks", "close", id, "--note", "looked at it"]);
    assert!(err.contains("--decision"), "{err}");
    let out = home.manager.ok(&[
        "tasks",
        "close",
        id,
        "--decision",
        "assess",
        "--note",
        "Spoke to the social worker: it is her old school friend; assessing",
    ]);
    assert!(out.contains("Closed task"), "{out}");
    let err = home.manager.fails(&[
        "tasks",
        "close",
        id,
        "--decision",
        "refuse",
        "--note",
        "again",
    ]);
    assert!(err.contains("already closed"), "{err}");
    let err = home.manager.fails(&[
        "tasks",
        "close",
        "tsk-nope",
        "--decision",
        "refuse",
        "--note",
        "x",
    ]);
    assert!(err.contains("no task called"), "{err}");
    assert_eq!(home.manager.json(&["tasks"]).as_array().unwrap().len(), 1);
    let all = home.manager.json(&["tasks", "--all"]);
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|t| t["decision"] == "assess"),
        "{all}"
    );
    // Closing is in the audit trail, which still proves itself.
    let verify = home.manager.ok(&["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");
}

// A device that stops reporting is flagged in the device list and announced to watchers.
#[test]
fn a_device_that_stops_reporting_is_flagged_and_announced() {
    let home = Home::new_with(&["--not-reporting-after-secs", "2"]);
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let id = eventually("the device to come online", WAIT, || {
        let d = home.devices().into_iter().next()?;
        (d["online"] == true).then(|| d["id"].as_str().unwrap().to_string())
    });
    let watch = home.admin.spawn(&["violations", "--watch", "--json"]);
    assert!(watch.stderr.wait_for("Watching", WAIT).is_some());
    // Connected, it is reporting, however long the gap between heartbeats.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(home.device(&id)["not_reporting"], false);

    agent.stop();
    let d = eventually("the device to be flagged not reporting", WAIT, || {
        let d = home.device(&id);
        (d["not_reporting"] == true).then_some(d)
    });
    assert_eq!(d["online"], false);
    let list = home.admin.ok(&["device", "list"]);
    assert!(list.contains("not reporting"), "{list}");
    let line = watch
        .stdout
        .wait_for("not-reporting", WAIT)
        .unwrap_or_else(|| panic!("not announced:\n{}", watch.stdout.text()));
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["device_id"], id.as_str());
    let message = event["message"].as_str().unwrap();
    assert!(
        message.starts_with("Amira's device")
            && message.contains("switched off or the agent removed"),
        "{message}"
    );
    // Announced once, not every check.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(watch.stdout.count("not-reporting"), 1);

    // Back again: no longer flagged.
    agent.start();
    eventually("the device to report again", WAIT, || {
        (home.device(&id)["not_reporting"] == false).then_some(())
    });
}

// clause GD3: a manager task is due the next working day; once overdue it is in
// `haven obligations --overdue` until a manager decides.
#[test]
fn gd3_a_manager_task_becomes_overdue_and_is_listed_with_the_obligations() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let mut link = DeviceLink::open(&home, &agent);
    // An attempt a week ago (the device was offline since): due long ago.
    let week_ago = now_ms() - 7 * 24 * 3_600_000;
    link.send(vec![call("old", "+447700900999", week_ago)]);
    let tasks = home.manager.json(&["tasks"]);
    let task = &tasks.as_array().unwrap()[0];
    assert_eq!(task["state"], "overdue", "{tasks}");
    let overdue = home.manager.json(&["obligations", "--overdue"]);
    let listed = overdue.as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|o| o["kind"] == "decide-on-unknown-contact" && o["id"] == task["id"]),
        "{overdue}"
    );
    let id = task["id"].as_str().unwrap();
    home.manager.ok(&[
        "tasks",
        "close",
        id,
        "--decision",
        "refuse",
        "--note",
        "Unknown adult; the social worker agrees",
    ]);
    let overdue = home.manager.json(&["obligations", "--overdue"]);
    assert_eq!(overdue.as_array().unwrap().len(), 0, "{overdue}");
}
