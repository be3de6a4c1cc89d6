//! Two controllers on one PostgreSQL (issue 16): a change made through either reaches devices
//! held by the other at once, `haven lockdown` counts devices on both, and when one replica is
//! killed its devices move to the other, which keeps serving staff, pushing changes and running
//! the timed work. Skipped (after a `SKIPPED:` line) where no PostgreSQL answers.

use haven_tests::*;

const FULL: &str = "lockdown: calls, messages, web, camera, apps";

/// A second replica on `home`'s database, serving the same CA and server certificate.
fn second_replica(home: &Home) -> Controller {
    let url = home.database_url().expect("a PostgreSQL home");
    home.controller.start_replica(&home.path("replica-b"), &url)
}

/// An agent enrolled with every replica's address, `first` tried first.
fn agent_for(home: &Home, name: &str, first: &Controller, second: &Controller) -> Agent {
    let agent = Agent::new(&home.path(name));
    let code = home.enrollment_code();
    let r = agent.command(&[
        "enroll",
        "--controller",
        &format!("{},{}", first.url, second.url),
        "--ca-pin",
        &home.controller.ca_pin(),
        "--code",
        &code,
    ]);
    assert!(r.ok, "enroll failed:\n{}\n{}", r.stdout, r.stderr);
    agent
}

/// A manager's command line logged in to `replica`.
fn manager_on(home: &Home, replica: &Controller, name: &str) -> Cli {
    let token = home.admin.json(&[
        "staff",
        "add",
        "--name",
        name,
        "--role",
        "manager",
        "--home",
        "Oak House",
    ])["token"]
        .as_str()
        .expect("a token")
        .to_string();
    let cli = Cli::new(&home.path(&format!("cli-{}", replica.port)));
    // The same CA as A's: the pin staff were given works for every replica.
    let login = cli.login_at(&replica.url, &home.controller.ca_pin(), &token);
    assert!(
        login.ok,
        "login failed:\n{}\n{}",
        login.stdout, login.stderr
    );
    cli
}

fn online_count(cli: &Cli) -> usize {
    cli.json(&["device", "list"])
        .as_array()
        .map(|a| a.iter().filter(|d| d["online"] == true).count())
        .unwrap_or(0)
}

// clauses RM3, D6, R19: with two replicas on one database, a lockdown made through one reaches
// devices held by either and its progress counts them all; a protected contact added through
// the other reaches both; when a replica dies with SIGKILL its device moves to the survivor,
// which still serves staff, pushes the next change and ends a timed lockdown by itself.
#[test]
fn rm3_d6_r19_two_replicas_share_changes_and_survive_a_sigkill() {
    let Some(mut home) = Home::on_postgres() else {
        return;
    };
    let mut b = second_replica(&home);
    let on_b = manager_on(&home, &b, "Rita on B");

    // The tablet is held by B, the phone by A.
    let mut tablet = agent_for(&home, "tablet", &b, &home.controller);
    let mut phone = agent_for(&home, "phone", &home.controller, &b);
    tablet.start();
    phone.start();
    // Each replica knows both devices are connected, wherever they are held.
    eventually("both devices online, seen from A", WAIT, || {
        (online_count(&home.manager) == 2).then_some(())
    });
    eventually("both devices online, seen from B", WAIT, || {
        (online_count(&on_b) == 2).then_some(())
    });

    // A lockdown through A reaches the tablet on B, and A's progress counts it.
    let out = home.manager.ok(&[
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
        out.contains("Every online device has the lockdown"),
        "{out}"
    );
    // Both answered, the tablet through B: the development log enforcer enforces nothing and
    // says so, so each counts as "could not apply it" rather than locked (D1, D5).
    assert!(out.contains("2 could not apply it"), "{out}");
    assert!(!out.contains("offline —"), "{out}");
    assert!(
        tablet.stdout.wait_for(FULL, WAIT).is_some(),
        "{}",
        tablet.stdout.text()
    );
    assert!(
        phone.stdout.wait_for(FULL, WAIT).is_some(),
        "{}",
        phone.stdout.text()
    );

    // A protected contact added through B reaches the phone on A.
    on_b.ok(&[
        "protected-contact",
        "add",
        "--home",
        "Oak House",
        "--name",
        "Nan's GP",
        "--number",
        "01632960001",
    ]);
    let version = home
        .devices()
        .iter()
        .filter_map(|d| d["desired_policy_version"].uint())
        .max()
        .expect("a version");
    assert!(phone.wait_applied(version, WAIT), "{}", phone.stdout.text());
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );

    // A dies. The phone moves to B; B serves staff and pushes the next change to both.
    home.controller.kill();
    eventually("the phone to reconnect to B", WAIT, || {
        (online_count(&on_b) == 2).then_some(())
    });
    on_b.ok(&["child", "list"]);
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
    let r = on_b.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Settling after an incident",
        "--channels",
        "apps",
        "--until",
        &until.to_string(),
    ]);
    let version = r["lockdown"]["policy_version"].uint().expect("a version");
    assert!(phone.wait_applied(version, WAIT), "{}", phone.stdout.text());
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );
    // The timed work moved to B with the lease: the lockdown ends by itself.
    let ended = eventually("the timed lockdown to end on B", WAIT, || {
        let all = on_b.json(&["lockdowns", "--all"]);
        all.as_array()?
            .iter()
            .find(|l| l["until_unix_ms"].int().unwrap_or(0) > 0 && l["in_force"] == false)
            .cloned()
    });
    let lifted = ended["lifted_policy_version"].uint().expect("a version");
    assert!(phone.wait_applied(lifted, WAIT), "{}", phone.stdout.text());
    let verify = on_b.json(&["audit", "verify"]);
    assert_eq!(verify["intact"], true, "{verify}");
    b.kill();
}
