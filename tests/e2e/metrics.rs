//! Operators can see it working: `haven serve --metrics-listen` serves Prometheus metrics on
//! loopback, with the names the README's alert rules use, and a lockdown moves the right ones.

use std::io::{Read, Write};

use haven_tests::*;

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// The value of one sample, by its name with labels; 0 if it is not there yet.
fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_are_served_on_loopback_and_a_lockdown_moves_its_counters() {
    let port = free_port();
    let home = Home::new_with(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    assert!(
        home.controller
            .stdout
            .text()
            .contains(&format!("http://127.0.0.1:{port}/metrics"))
    );
    let text = scrape(port);
    for name in [
        "haven_devices_connected",
        "haven_devices_not_enforcing",
        "haven_devices_not_reporting",
        "haven_policy_pushes_total",
        "haven_policy_apply_seconds_count",
        "haven_lockdowns_in_force",
        "haven_lockdowns_started_total",
        "haven_lockdown_delivery_seconds_count",
        "haven_lockdown_undelivered_devices",
        "haven_violations_stored_total",
        "haven_violations_over_budget_total",
        "haven_obligations_overdue{kind=\"lockdown_review\"}",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let mut other = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    other.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    other.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");

    // A wrong code is counted; a real device connects (the log enforcer does not enforce).
    let stranger = Agent::new(&home.path("stranger"));
    assert!(!stranger.enroll(&home.controller, "nope").ok);
    let mut tablet = home.enrolled_agent("tablet");
    tablet.start();
    eventually("the tablet to be counted connected", WAIT, || {
        let t = scrape(port);
        (value(&t, "haven_devices_connected") == 1.0
            && value(&t, "haven_devices_not_enforcing") == 1.0)
            .then_some(())
    });
    let text = scrape(port);
    assert_eq!(
        value(
            &text,
            "haven_enrollments_refused_total{reason=\"not_a_code\"}"
        ),
        1.0,
        "{text}"
    );
    let pushes = value(&text, "haven_policy_pushes_total");

    let staff = home.care_staff("Sam Carer");
    let r = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50",
        "--wait-secs",
        "0",
    ]);
    let version = r["lockdown"]["policy_version"].uint().unwrap();
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );
    let text = eventually("the lockdown's delivery to be counted", WAIT, || {
        let t = scrape(port);
        (value(&t, "haven_lockdown_delivery_seconds_count") == 1.0).then_some(t)
    });
    assert_eq!(value(&text, "haven_lockdowns_started_total"), 1.0, "{text}");
    assert_eq!(value(&text, "haven_lockdowns_in_force"), 1.0, "{text}");
    assert_eq!(
        value(&text, "haven_lockdown_undelivered_devices"),
        0.0,
        "{text}"
    );
    assert!(
        value(&text, "haven_policy_pushes_total") >= pushes + 1.0,
        "{text}"
    );
    assert!(
        value(&text, "haven_policy_apply_seconds_count") >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "haven_store_write_seconds_count{write=\"lockdown\"}"),
        1.0,
        "{text}"
    );
    // Delivered within a second on loopback: in the 1 s bucket.
    assert_eq!(
        value(&text, "haven_lockdown_delivery_seconds_bucket{le=\"1.0\"}"),
        1.0,
        "{text}"
    );
}

#[test]
fn metrics_refuse_an_address_other_machines_reach() {
    let dir = tempfile::tempdir().unwrap();
    let r = std::process::Command::new(haven_bin())
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("controller"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "0.0.0.0:0"])
        .env_remove("HAVEN_CONFIG")
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--metrics-allow-remote"), "{err}");
}
