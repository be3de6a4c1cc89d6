//! Protected contacts end to end (R19, S1, Regulation 22): 999, 112, Childline and the other
//! built-in helplines are reachable on a device that has never been given a list, under a full
//! lockdown, and are never reported; no home can take them off its list.

use haven_tests::*;

const FULL: &str = "lockdown: calls, messages, web, camera, apps";

fn check(agent: &Agent, socket: &std::path::Path, channel: &str, address: &str) -> Run {
    agent.command(&[
        "check-contact",
        "--screening-socket",
        &socket.to_string_lossy(),
        "--channel",
        channel,
        address,
    ])
}

// clause R19: a device the home has typed nothing into tells the child the truth — who they
// can always reach, with the numbers — before it has ever started or heard from its home.
#[test]
fn r19_a_freshly_enrolled_device_lists_999_and_childline_before_any_policy() {
    let home = Home::new();
    let agent = home.enrolled_agent("tablet");
    let status = agent.command(&["status"]);
    assert!(status.ok, "{}{}", status.stdout, status.stderr);
    for expected in [
        "Always reachable: Emergency services",
        "on 999 or 112",
        "Childline",
        "0800 1111",
        "Help at Hand",
    ] {
        assert!(
            status.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            status.stdout
        );
    }
    assert!(
        !status.stdout.contains("nobody listed yet"),
        "{}",
        status.stdout
    );
}

// clause R19: the controller lists the built-in contacts with the home's own, and refuses to
// remove one in a single line naming the clause; a home's own entry can be removed.
#[test]
fn r19_a_home_adds_to_the_built_in_list_but_cannot_remove_from_it() {
    let home = Home::new();
    let list = home
        .manager
        .json(&["protected-contact", "list", "--home", "Oak House"]);
    let list = list.as_array().expect("a JSON array");
    for number in ["999", "112", "+448001111", "+448088005000", "+448005280731"] {
        assert!(
            list.iter()
                .any(|c| c["address"] == number && c["built_in"] == true),
            "{number} not listed as built in: {list:?}"
        );
    }
    for key in ["999", "0800 1111", "built-in:+448001111"] {
        let err = home.manager.fails(&[
            "protected-contact",
            "remove",
            "--home",
            "Oak House",
            key,
            "--reason",
            "trying",
        ]);
        assert!(err.contains("no home can remove it"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    home.manager.ok(&[
        "protected-contact",
        "add",
        "--home",
        "Oak House",
        "--name",
        "Priya Shah (social worker)",
        "--number",
        "07700 900999",
    ]);
    let out = home.manager.ok(&[
        "protected-contact",
        "remove",
        "--home",
        "Oak House",
        "07700 900999",
        "--reason",
        "Priya moved to another team",
    ]);
    assert!(out.contains("no longer a protected contact"), "{out}");
    let after = home
        .manager
        .ok(&["protected-contact", "list", "--home", "Oak House"]);
    assert!(!after.contains("Priya"), "{after}");
    assert!(after.contains("built into Haven"), "{after}");
}

// clause R19, D3, GD3: on a device with no home list, no plan and then a full lockdown, 999,
// 112 and Childline are allowed by the screening socket on calls and texts, and no attempt to
// reach them becomes a violation or a manager task.
#[test]
fn r19_999_112_and_childline_connect_with_no_list_and_in_a_full_lockdown_and_are_never_reported() {
    // `--enforcer linux` guards the camera with fanotify and apps with the process connector.
    if skip_unless_root(
        "r19_999_112_and_childline_connect_with_no_list_and_in_a_full_lockdown_and_are_never_reported",
    ) {
        return;
    }
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    let socket = home.path("run/screening.sock");
    agent.start_linux(&["--screening-socket", &socket.to_string_lossy()]);
    let reachable = |agent: &Agent| {
        for number in ["999", "112", "0800 1111", "+44 800 1111", "0808 800 5000"] {
            for channel in ["call", "sms"] {
                let r = check(agent, &socket, channel, number);
                assert!(
                    r.ok && r.stdout.contains("always"),
                    "{number} by {channel}: {}{}",
                    r.stdout,
                    r.stderr
                );
            }
        }
    };
    // Whatever it is enforcing now (the safe default or the first policy): no list typed in.
    eventually("the screening socket to answer", WAIT, || {
        check(&agent, &socket, "call", "999").ok.then_some(())
    });
    reachable(&agent);

    home.care_staff("Sam Carer").ok(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50",
        "--wait-secs",
        "20",
    ]);
    assert!(
        agent.stdout.wait_for(FULL, WAIT).is_some(),
        "{}",
        agent.stdout.text()
    );
    reachable(&agent);
    // Someone else is refused and reported, so reporting works: the helplines were not.
    assert!(!check(&agent, &socket, "call", "07700 900999").ok);
    let stored = eventually("the refusal to reach the controller", WAIT, || {
        let v = home.manager.json(&["violations", "--limit", "100"]);
        let v = v.as_array().cloned().unwrap_or_default();
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["subject"], "+447700900999", "{stored:?}");
    // One task, for the stranger; none for the helplines.
    let tasks = home.manager.ok(&["tasks"]);
    assert_eq!(tasks.matches("tsk-").count(), 1, "{tasks}");
    assert!(tasks.contains("+447700900999"), "{tasks}");
}
