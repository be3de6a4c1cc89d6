//! One device cannot hurt the others: what it claims is checked against what was issued, and
//! what it writes is bounded by a budget (issue 13). The "device" is a test client speaking the
//! real Sync protocol over mTLS with an enrolled agent's own certificate.

use haven_tests::*;

use crate::violations::{DeviceLink, call, now_ms};

// A device claiming `i64::MAX` as its policy version once had it stored; after a restart the
// version counter moved past what SQLite holds and every later change, lockdown and
// enrollment failed for every device. Now the claim is recorded as tampering and not stored.
#[test]
fn a_device_claiming_a_version_never_issued_is_recorded_as_tampering_and_harms_nothing() {
    let mut home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let link = DeviceLink::open_claiming(&home, &agent, i64::MAX as u64);
    let tampering = eventually("the tampering record", WAIT, || {
        let list = home
            .manager
            .json(&["violations", "--kind", "tampering", "--limit", "10"]);
        let list = list.as_array().cloned().unwrap_or_default();
        (!list.is_empty()).then_some(list)
    });
    assert_eq!(tampering.len(), 1, "{tampering:?}");
    let text = tampering[0].to_string();
    assert!(
        text.contains("never") || text.contains("only issued up to"),
        "{text}"
    );
    drop(link);
    let device = &home.devices()[0];
    assert!(
        device["applied_policy_version"].uint().unwrap_or(0) < 1_000_000,
        "{device}"
    );

    // After a restart, changes still work for everyone.
    home.controller.restart();
    let version = home.change_policy("Priya (social worker)", "07700 900999");
    assert!(version < 1_000_000, "{version}");
    let code = home.manager.ok(&["device", "enroll", "Amira"]);
    assert!(code.contains("haven-agent enroll"), "{code}");
}

// A flood of violations from one device is stored up to its budget; the rest is counted into
// one summary record, never dropped silently, and every record is acknowledged so the device
// does not resend it.
#[test]
fn a_flood_of_violations_is_stored_within_budget_and_the_rest_counted() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let mut link = DeviceLink::open(&home, &agent);
    let at = now_ms();
    let mut acked = 0;
    for batch in 0..6 {
        let violations = (0..500)
            .map(|i| {
                call(
                    &format!("v-{batch}-{i}"),
                    &format!("+4477009{:05}", batch * 500 + i),
                    at,
                )
            })
            .collect();
        acked += link.send(violations).len();
    }
    assert_eq!(acked, 3_000, "every record is acknowledged");
    // The burst (2,000) is stored one by one; a list shows at most 1,000 at a time.
    let stored = home
        .manager
        .json(&["violations", "--kind", "unknown-contact", "--limit", "1000"]);
    assert_eq!(stored.as_array().unwrap().len(), 1_000);
    drop(link);
    // The controller writes the summary within a minute, and at shutdown at the latest.
    let mut home = home;
    home.controller.restart();
    let summary = home
        .manager
        .json(&["violations", "--kind", "over-budget", "--limit", "10"]);
    let summary = summary.as_array().unwrap();
    assert_eq!(summary.len(), 1, "{summary:?}");
    let text = summary[0].to_string();
    assert!(
        text.contains("1,000 more unknown-contact attempts"),
        "{text}"
    );
}

// Hundreds of connections that never finish their TLS handshake, or say nothing at all, do
// not stop a lockdown reaching a real device, keep the controller's memory bounded, and are
// closed by the handshake timeout.
#[test]
fn idle_and_half_open_connections_do_not_stop_a_lockdown() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    eventually("the device to come online", WAIT, || {
        (home
            .devices()
            .iter()
            .filter(|d| d["online"] == true)
            .count()
            == 1)
            .then_some(())
    });
    let before = home.controller.rss_kib().unwrap_or(0);
    let addr = format!("127.0.0.1:{}", home.controller.port);
    let mut idle = Vec::new();
    for i in 0..400 {
        let mut s = TcpStream::connect(&addr).expect("connect");
        if i % 2 == 0 {
            // The first bytes of a TLS record, then nothing: a handshake left half-sent.
            let _ = s.write_all(&[0x16, 0x03, 0x01, 0x02]);
        }
        idle.push(s);
    }
    let out = home.care_staff("Sam Carer").ok(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50",
        "--wait-secs",
        "20",
    ]);
    // (A log agent enforces nothing, so the controller does not count it as locked; what
    // matters here is that the lockdown reached it.)
    assert!(out.contains("is in force for Amira Khan"), "{out}");
    assert!(
        agent
            .stdout
            .wait_for("lockdown: calls, messages, web, camera, apps", WAIT)
            .is_some(),
        "{}",
        agent.stdout.text()
    );
    let after = home.controller.rss_kib().unwrap_or(0);
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB for 400 idle connections"
    );
    // The handshake timeout closes them: a read sees the end of the stream.
    let s = &mut idle[0];
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "a half-open connection was still open after 30 s");
}
