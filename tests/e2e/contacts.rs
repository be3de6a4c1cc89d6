//! Contacts on the device, end to end: the screening socket answers from the child's real
//! plan (D3, R19, GD3), and blocked attempts reach the controller exactly once, even when they
//! were made while the controller was down and the agent was killed in between (D5).
//!
//! The screening socket needs no root: it lives in the test's temporary folder.

use std::path::Path;

use haven_tests::*;

/// A home with a risk assessment for Amira, ready for a plan revision.
fn plan_home() -> (Home, String) {
    let home = Home::new();
    let staff = home.care_staff("Jo Carer");
    let file = write(&home, "ra.toml", &staff.ok(&["risk", "template"]));
    let ra = staff.json(&["risk", "add", "Amira", "--file", &file])["id"]
        .as_str()
        .unwrap()
        .to_string();
    (home, ra)
}

/// The templates carry example dates; move them relative to today (a review date in the
/// past is refused, rightly).
fn write(home: &Home, name: &str, text: &str) -> String {
    let today = jiff::Zoned::now().date();
    let shift = |days: i64| {
        today
            .checked_add(jiff::Span::new().days(days))
            .unwrap()
            .to_string()
    };
    let text = text
        .replace("2026-11-20", &shift(-5))
        .replace("2027-02-01", &shift(60))
        .replace("2027-03-01", &shift(90));
    let path = home.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// Gives Amira the template plan, with Nan reachable at any time (so the test does not depend
/// on the hour it runs at); returns the policy version her devices should reach.
fn plan_with_nan_any_time(home: &Home, ra: &str) -> u64 {
    let template = home.manager.ok(&["plan", "template"]);
    let text = template.replace("ra-REPLACE-ME", ra).replace(
        "windows = [{ start_minute = 960, end_minute = 1200 }]   # 4pm to 8pm, every day\n",
        "",
    );
    assert!(!text.contains("start_minute"), "the template changed");
    let file = write(home, "plan.toml", &text);
    home.manager
        .json(&["plan", "revise", "Amira", "--file", &file])["policy_version"]
        .uint()
        .unwrap()
}

fn start_screening(agent: &mut Agent, socket: &Path) {
    agent.start_linux(&["--screening-socket", &socket.to_string_lossy()]);
}

fn check(agent: &Agent, socket: &Path, channel: &str, address: &str) -> Run {
    agent.command(&[
        "check-contact",
        "--screening-socket",
        &socket.to_string_lossy(),
        "--channel",
        channel,
        address,
    ])
}

/// `(kind, subject, channel)` of every violation the controller stored, sorted by subject,
/// as staff see them in `haven violations --json`.
fn stored_violations(home: &Home) -> Vec<(String, String, String)> {
    let list = home.manager.json(&["violations", "--limit", "1000"]);
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let mut stored: Vec<_> = list
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| (text(v, "kind"), text(v, "subject"), text(v, "channel")))
        .collect();
    stored.sort_by(|a, b| a.1.cmp(&b.1));
    stored
}

// clause D3, R19, GD3
#[test]
fn d3_r19_gd3_the_screening_socket_allows_approved_and_protected_contacts_and_denies_others() {
    // `--enforcer linux` guards the camera with fanotify and apps with the process connector.
    if skip_unless_root(
        "d3_r19_gd3_the_screening_socket_allows_approved_and_protected_contacts_and_denies_others",
    ) {
        return;
    }
    let (home, ra) = plan_home();
    let mut agent = home.enrolled_agent("tablet");
    let socket = home.path("run/screening.sock");
    start_screening(&mut agent, &socket);
    home.change_policy("Childline", "0800 1111");
    let version = plan_with_nan_any_time(&home, &ra);
    assert!(agent.wait_applied(version, WAIT), "{}", agent.stdout.text());

    // Nan, approved by the plan, in any way of writing her number.
    let r = check(&agent, &socket, "call", "07700 900123");
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Nan"), "{}", r.stdout);
    assert!(check(&agent, &socket, "sms", "+44 7700 900123").ok);
    // Childline, protected: always allowed.
    let r = check(&agent, &socket, "call", "08001111");
    assert!(r.ok && r.stdout.contains("always"), "{}", r.stdout);

    // Nan by a messaging app the plan does not list: refused, with a reason.
    let r = check(&agent, &socket, "messaging", "07700900123");
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("Not allowed:"), "{}", r.stdout);

    // Someone on no list: refused, reported as unknown so a manager can look at it.
    let r = check(&agent, &socket, "call", "07700 900999");
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("not one of your contacts"),
        "{}",
        r.stdout
    );
    assert!(
        agent
            .stdout
            .wait_for("blocked: unknown-contact +447700900999", WAIT)
            .is_some(),
        "{}",
        agent.stdout.text()
    );
    let stored = eventually("the unknown contact to reach the controller", WAIT, || {
        let v = stored_violations(&home);
        (v.len() == 2).then_some(v)
    });
    assert!(
        stored
            .iter()
            .any(|(k, s, c)| k == "unknown-contact" && s == "+447700900999" && c == "call"),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|(k, _, c)| k == "contact-blocked" && c == "messaging"),
        "{stored:?}"
    );

    // With the agent stopped, check-contact says plainly that it cannot ask.
    agent.stop();
    let r = check(&agent, &socket, "call", "07700900123");
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("not running"), "{}", r.stderr);
}

fn journal_records(agent: &Agent) -> usize {
    std::fs::read_to_string(agent.state_dir.join("violations.journal"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"type\":\"violation\""))
        .count()
}

// clause D5
#[test]
fn d5_violations_made_while_the_controller_is_down_arrive_exactly_once_across_a_kill() {
    // `--enforcer linux` guards the camera with fanotify and apps with the process connector.
    if skip_unless_root(
        "d5_violations_made_while_the_controller_is_down_arrive_exactly_once_across_a_kill",
    ) {
        return;
    }
    let mut home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    let socket = home.path("screening.sock");
    start_screening(&mut agent, &socket);
    let version = home.change_policy("Childline", "0800 1111");
    assert!(agent.wait_applied(version, WAIT), "{}", agent.stdout.text());

    // One attempt while connected: sent and acknowledged at once.
    assert_eq!(check(&agent, &socket, "call", "07700900001").code, Some(1));
    eventually("the first attempt to be stored", WAIT, || {
        (stored_violations(&home).len() == 1).then_some(())
    });

    // The controller goes away; two attempts are journalled on the device.
    home.controller.stop();
    for n in ["07700900002", "07700900003"] {
        assert_eq!(check(&agent, &socket, "call", n).code, Some(1));
        let line = format!("blocked: unknown-contact +44{}", &n[1..]);
        assert!(agent.stdout.wait_for(&line, WAIT).is_some(), "{line}");
    }
    // The agent is killed outright (no chance to flush anything) and started again.
    agent.kill();
    assert_eq!(journal_records(&agent), 2, "on disk before the kill");
    start_screening(&mut agent, &socket);
    assert!(
        agent.stderr.wait_for("waiting to be sent", WAIT).is_some(),
        "{}",
        agent.stderr.text()
    );
    assert_eq!(check(&agent, &socket, "sms", "07700900004").code, Some(1));
    assert!(
        agent
            .stdout
            .wait_for("blocked: unknown-contact +447700900004", WAIT)
            .is_some()
    );

    // The controller comes back: everything arrives, each exactly once.
    home.controller.restart();
    let expected: Vec<(String, String)> = [
        ("+447700900001", "call"),
        ("+447700900002", "call"),
        ("+447700900003", "call"),
        ("+447700900004", "sms"),
    ]
    .iter()
    .map(|(s, c)| (s.to_string(), c.to_string()))
    .collect();
    let subjects = |home: &Home| -> Vec<(String, String)> {
        stored_violations(home)
            .into_iter()
            .map(|(_, s, c)| (s, c))
            .collect()
    };
    eventually("every attempt to be stored", WAIT, || {
        (subjects(&home).len() >= expected.len()).then_some(())
    });
    // Acknowledged: the device's journal empties.
    eventually(
        "the journal to be emptied by acknowledgements",
        WAIT,
        || (journal_records(&agent) == 0).then_some(()),
    );
    // Another kill and restart sends nothing twice.
    agent.kill();
    start_screening(&mut agent, &socket);
    assert!(
        agent
            .stderr
            .wait_for("connected to the controller", WAIT)
            .is_some()
    );
    assert_eq!(subjects(&home), expected);
}
