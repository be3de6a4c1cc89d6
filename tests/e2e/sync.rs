//! Policies reach devices: pushed at once over the open stream, caught up on reconnect, and
//! enforced from the device's own copy when the controller cannot be reached.

use std::time::{Duration, Instant};

use haven_tests::*;

fn online_device(home: &Home) -> serde_json::Value {
    eventually(
        "the device to come online with its policy applied",
        WAIT,
        || {
            let d = home
                .devices()
                .into_iter()
                .find(|d| d["status"] == "active")?;
            (d["online"] == true && d["applied_policy_version"] == d["desired_policy_version"])
                .then_some(d)
        },
    )
}

// clause D7: staff change permissions from the command line and the device obeys at once.
#[test]
fn d7_a_policy_change_reaches_a_connected_agent_without_polling_and_is_acknowledged() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let before = online_device(&home);

    let started = Instant::now();
    let version = home.change_policy("Childline", "0800 1111");
    assert!(version > before["desired_policy_version"].uint().unwrap());
    assert!(
        agent.wait_applied(version, Duration::from_secs(10)),
        "the agent never applied version {version}:\n{}",
        agent.stdout.text()
    );
    // The agent heartbeats every 30 s and never asks for policies: arriving well inside that
    // proves the controller pushed it over the open stream.
    assert!(started.elapsed() < Duration::from_secs(10));

    let id = before["id"].as_str().unwrap();
    let d = eventually("the acknowledgement to be recorded", WAIT, || {
        let d = home.device(id);
        (d["applied_policy_version"].uint() == Some(version)).then_some(d)
    });
    assert!(d["applied_policy_at_unix_ms"].int().unwrap() > 0);
    let shown = home.admin.ok(&["device", "show", id]);
    assert!(
        shown.contains(&format!("applied — version {version}")),
        "{shown}"
    );
}

#[test]
fn a_change_reaches_only_the_devices_it_affects() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    let other_child = home.admin.json(&[
        "child",
        "add",
        "--home",
        "Elm House",
        "--name",
        "Ben Smith",
        "--dob",
        "2013-02-02",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut oak = home.enrolled_agent("oak-tablet");
    let elm_code = home.admin.json(&["device", "enroll", &other_child])["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut elm = Agent::new(&home.path("elm-tablet"));
    assert!(elm.enroll(&home.controller, &elm_code).ok);
    oak.start();
    elm.start();
    eventually("both devices online", WAIT, || {
        let all = home.devices();
        (all.len() == 2 && all.iter().all(|d| d["online"] == true)).then_some(())
    });
    let elm_before = home
        .devices()
        .into_iter()
        .find(|d| d["child_id"] == other_child.as_str())
        .unwrap();
    let version = home.change_policy("Childline", "08001111");
    assert!(oak.wait_applied(version, WAIT));
    std::thread::sleep(Duration::from_millis(500));
    let elm_after = home.device(elm_before["id"].as_str().unwrap());
    assert_eq!(
        elm_after["desired_policy_version"], elm_before["desired_policy_version"],
        "a change to Oak House does not touch Elm House's devices"
    );
    assert_eq!(elm.stdout.count(&applied_line(version)), 0);
}

#[test]
fn an_agent_that_was_offline_gets_the_newest_policy_on_reconnect() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let d = online_device(&home);
    agent.stop();
    let id = d["id"].as_str().unwrap().to_string();
    eventually("the device to go offline", WAIT, || {
        (home.device(&id)["online"] == false).then_some(())
    });
    home.change_policy("Childline", "08001111");
    let newest = home.change_policy("Emergency services", "999");
    let shown = home.admin.ok(&["device", "show", &id]);
    assert!(
        shown.contains("pending"),
        "staff see the change is not applied yet: {shown}"
    );

    agent.start();
    assert!(agent.wait_applied(newest, WAIT), "{}", agent.stdout.text());
    eventually("the newest version to be acknowledged", WAIT, || {
        (home.device(&id)["applied_policy_version"].uint() == Some(newest)).then_some(())
    });
}

#[test]
fn the_agent_applies_its_cached_policy_when_the_controller_is_down() {
    let mut home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    online_device(&home);
    let version = home.change_policy("Childline", "08001111");
    assert!(agent.wait_applied(version, WAIT));
    agent.stop();
    home.controller.stop();

    agent.start();
    assert!(
        agent.wait_applied(version, Duration::from_secs(10)),
        "with no controller, the agent still enforces what it last had:\n{}\n{}",
        agent.stdout.text(),
        agent.stderr.text()
    );
    // It keeps running and trying to reconnect, without spinning: every retry waits (full
    // jitter under a 2 s cap in the harness), so 4 s hold a handful of attempts, never a flood.
    std::thread::sleep(Duration::from_secs(4));
    assert!(agent.is_running(), "{}", agent.stderr.text());
    let attempts = agent.stderr.count("trying again in");
    assert!(
        (1..=20).contains(&attempts),
        "{attempts} reconnect attempts in 4 s:\n{}",
        agent.stderr.text()
    );
}

#[test]
fn a_controller_restart_keeps_every_record_and_agents_reconnect() {
    let mut home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let d = online_device(&home);
    let version = home.change_policy("Childline", "08001111");
    assert!(agent.wait_applied(version, WAIT));
    let children_before = home.admin.json(&["child", "list"]);
    let staff_before = home.admin.json(&["staff", "list"]);
    let contacts_before = home
        .admin
        .json(&["protected-contact", "list", "--home", "Oak House"]);

    home.controller.restart();
    assert!(
        home.controller.login_line.is_none(),
        "a second start reuses the first administrator, it does not make another"
    );
    assert_eq!(home.admin.json(&["child", "list"]), children_before);
    assert_eq!(
        home.admin
            .json(&["protected-contact", "list", "--home", "Oak House"]),
        contacts_before
    );
    let staff_after = home.admin.json(&["staff", "list"]);
    assert_eq!(
        staff_after.as_array().unwrap().len(),
        staff_before.as_array().unwrap().len()
    );
    let id = d["id"].as_str().unwrap();
    let after = eventually("the agent to reconnect", WAIT, || {
        let d = home.device(id);
        (d["online"] == true).then_some(d)
    });
    assert_eq!(after["applied_policy_version"].uint(), Some(version));
    // And new changes still flow.
    let newer = home.change_policy("Emergency services", "999");
    assert!(agent.wait_applied(newer, WAIT));
}
