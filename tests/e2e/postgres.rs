//! The controller on PostgreSQL (`haven serve --database postgres://…`): the real flow staff
//! and devices go through, on a fresh schema of its own. Skipped (and passing, after a
//! `SKIPPED:` line) where no PostgreSQL answers at `HAVEN_TEST_DATABASE_URL`.

use haven_tests::*;

const FULL: &str = "lockdown: calls, messages, web, camera, apps";

// clauses R19, RM3, D6: on PostgreSQL a home, a child and a protected contact are added, a
// device enrolls and gets the policy with the contact, a lockdown reaches it at once, and
// everything is still there after the controller restarts. `haven backup` points at pg_dump.
#[test]
fn r19_rm3_d6_a_controller_on_postgresql_runs_the_whole_flow() {
    let Some(mut home) = Home::on_postgres() else {
        return;
    };
    assert!(
        home.controller.stdout.text().contains("postgres://"),
        "{}",
        home.controller.stdout.text()
    );
    let mut tablet = home.enrolled_agent("tablet");
    tablet.start();
    let version = home.change_policy("Childline", "08001111");
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );
    eventually("the tablet to come online", WAIT, || {
        (home.devices().iter().any(|d| d["online"] == true)).then_some(())
    });

    let carer = home.care_staff("Sam Carer");
    let out = carer.ok(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50",
        "--wait-secs",
        "20",
    ]);
    assert!(out.contains("Protected contacts stay reachable"), "{out}");
    assert!(
        tablet.stdout.wait_for(FULL, WAIT).is_some(),
        "{}",
        tablet.stdout.text()
    );

    // The records live in PostgreSQL: a restarted controller has them all, audit included.
    home.controller.restart();
    let devices = home.devices();
    assert_eq!(devices.len(), 1, "{devices:?}");
    let lockdowns = home.admin.json(&["lockdowns"]);
    assert_eq!(lockdowns.as_array().map(Vec::len), Some(1), "{lockdowns}");
    let verify = home.admin.json(&["audit", "verify"]);
    assert_eq!(verify["intact"], true, "{verify}");

    // There is no haven.db to copy: `haven backup` says to use pg_dump.
    let pass = home.path("pass.txt");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let data_dir = home.controller.data_dir.to_string_lossy().to_string();
    let file = home.path("b.age").to_string_lossy().to_string();
    let err = home.admin.fails(&[
        "backup",
        &file,
        "--data-dir",
        &data_dir,
        "--passphrase-file",
        &pass.to_string_lossy(),
    ]);
    assert!(err.contains("pg_dump"), "{err}");
}
