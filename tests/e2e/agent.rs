//! The `haven-agent` binary as an IT person, systemd and a child meet it: status, refusals,
//! a wrong pin, re-enrollment, and a clean stop.

use std::time::Duration;

use haven_tests::*;

#[test]
fn before_enrollment_status_explains_and_run_refuses_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::new(&dir.path().join("state"));
    let status = agent.command(&["status"]);
    assert!(status.ok);
    assert!(status.stdout.contains("not enrolled"), "{}", status.stdout);
    let run = agent.command(&["run"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.starts_with("error: this device is not enrolled"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    let usage = agent.command(&["run", "--heartbeat-secs", "0"]);
    assert_eq!(usage.code, Some(2), "usage errors exit with 2");
}

#[test]
fn enrollment_with_the_wrong_pin_is_refused_and_uses_nothing_up() {
    let home = Home::new();
    let code = home.enrollment_code();
    let agent = Agent::new(&home.path("tablet"));
    let wrong = format!("sha256:{}", "cd".repeat(32));
    let r = agent.command(&[
        "enroll",
        "--controller",
        &home.controller.url,
        "--ca-pin",
        &wrong,
        "--code",
        &code,
    ]);
    assert!(!r.ok);
    assert!(r.stderr.contains("pin"), "{}", r.stderr);
    // The code was never sent, so it still works with the right pin.
    assert!(agent.enroll(&home.controller, &code).ok);
}

#[test]
fn a_second_enrollment_needs_force() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let r = agent.enroll(&home.controller, &home.enrollment_code());
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("already enrolled") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    let forced = agent.command(&[
        "enroll",
        "--force",
        "--controller",
        &home.controller.url,
        "--ca-pin",
        &home.controller.ca_pin(),
        "--code",
        &home.enrollment_code(),
    ]);
    assert!(forced.ok, "{}", forced.stderr);
    assert_eq!(home.devices().len(), 2);
}

// clause R7 (device side, first step): the child can read what is in force, offline.
#[test]
fn status_tells_the_child_what_is_in_force_in_plain_words() {
    let mut home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let version = home.change_policy("Childline", "0800 1111");
    assert!(agent.wait_applied(version, WAIT));
    agent.stop();
    home.controller.stop();

    let text = agent.command(&["status"]);
    assert!(text.ok, "{}", text.stderr);
    assert!(text.stdout.contains("Amira"), "{}", text.stdout);
    assert!(text.stdout.contains("Childline"), "{}", text.stdout);
    assert!(
        text.stdout.to_lowercase().contains("camera"),
        "{}",
        text.stdout
    );
    let json = agent.command(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["policy"]["version"].uint(), Some(version), "{v}");
    assert_eq!(v["policy"]["source"], "controller");
}

#[test]
fn sigterm_stops_the_agent_cleanly() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    eventually("the device online", WAIT, || {
        home.devices()
            .into_iter()
            .any(|d| d["online"] == true)
            .then_some(())
    });
    let mut child = agent.take_child().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = eventually("the agent to exit", Duration::from_secs(10), || {
        child.try_wait().ok().flatten()
    });
    assert!(status.success(), "{status:?}");
}
