//! The `haven-agent` binary as a person (or systemd) uses it: run, status, refusals, SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{CODE, WAIT, next_session, next_up, start_controller};
use haven_agent::state::StateDir;
use haven_proto::agent::v1::agent_message::Body as Up;
use haven_proto::agent::v1::controller_message::Body as Down;
use haven_proto::agent::v1::{ControllerMessage, DevicePolicy, Explanation, Inventory, WebRule};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_haven-agent");

fn agent(state: &StateDir) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env("HAVEN_AGENT_STATE_DIR", state.root())
        .env_remove("RUST_LOG");
    cmd
}

#[tokio::test]
async fn run_status_and_refusals() {
    let mut controller = start_controller().await;
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));

    // Before enrollment: status works offline and says so; run refuses in one line.
    let out = agent(&state).arg("status").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("not enrolled"), "{text}");
    let out = agent(&state).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error: this device is not enrolled"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // Usage errors exit with 2.
    let out = agent(&state)
        .args(["run", "--heartbeat-secs", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // Enroll through the library (the binary does the same, with the pin check first).
    let ca_pem = haven_proto::trust::fetch_pinned_ca(&controller.url, &controller.pin)
        .await
        .unwrap();
    let enrollment =
        haven_agent::enroll_device(&controller.url, &ca_pem, CODE, Inventory::default())
            .await
            .unwrap();
    state
        .save_enrollment(&enrollment.identity, "Sam", "2025-01-01T00:00:00Z")
        .unwrap();

    // A second enrollment is refused without --force, before any network.
    let out = agent(&state)
        .args(["enroll", "--controller", "https://127.0.0.1:1", "--ca-pin"])
        .arg(format!("sha256:{}", "a".repeat(64)))
        .args(["--code", "X"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("already enrolled for Sam") && err.contains("--force"),
        "{err}"
    );

    // Run: the safe default comes first, then the controller's policy.
    let mut child = tokio::process::Command::new(BIN)
        .env("HAVEN_AGENT_STATE_DIR", state.root())
        .env_remove("RUST_LOG")
        .args(["run", "--heartbeat-secs", "1", "--max-backoff-secs", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut session = next_session(&mut controller).await;
    assert!(matches!(next_up(&mut session).await, Up::Hello(_)));
    session
        .to_agent
        .send(Ok(ControllerMessage {
            body: Some(Down::Policy(DevicePolicy {
                version: 3,
                issued_at_unix_ms: 1_700_000_000_000,
                web: Some(WebRule {
                    allowed: true,
                    filter_profile: "strict".into(),
                    ..Default::default()
                }),
                explanations: vec![Explanation {
                    topic: "internet".into(),
                    text: "You can use the internet with a filter.".into(),
                }],
                ..Default::default()
            })),
        }))
        .await
        .unwrap();
    let mut lines = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = stdout.next_line().await {
            lines.push(line.clone());
            if line.contains("policy version 3") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "stdout: {lines:?}");
    assert!(lines[0].contains("policy version 0"), "{lines:?}");

    // Small enough for an old laptop (generous here: this is a debug build).
    let pid = child.id().unwrap();
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        });
    if let Some(rss) = rss_kib {
        eprintln!("agent RSS: {rss} KiB");
        assert!(rss < 40 * 1024, "RSS {rss} KiB");
    }

    // SIGTERM stops it cleanly.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("no policy received yet: applying the safe default"),
        "{stderr}"
    );

    // Status, offline: enrolled for Sam, version 3, what it allows and why.
    drop(session);
    let out = agent(&state).arg("status").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for expected in [
        "enrolled in Haven for Sam",
        "policy version 3",
        "Camera:    not allowed",
        "Internet:  allowed, filtered by the \"strict\" profile",
        "You can use the internet with a filter.",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let out = agent(&state).args(["status", "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["policy"]["version"], 3);
    assert_eq!(json["enrolled"], true);

    // A restart applies the cached policy before the network.
    let mut child = tokio::process::Command::new(BIN)
        .env("HAVEN_AGENT_STATE_DIR", state.root())
        .env_remove("RUST_LOG")
        .args(["run", "--enforcer", "null"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("applied cached policy version 3") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true));
    let mut session = next_session(&mut controller).await;
    match next_up(&mut session).await {
        Up::Hello(hello) => assert_eq!(hello.applied_policy_version, 3),
        other => panic!("expected hello, got {other:?}"),
    }
    child.start_kill().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}
