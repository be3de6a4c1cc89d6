//! Nothing is lost when the machine fails (R36): `haven backup` copies a serving controller
//! while staff write, `haven restore` brings it back on a new disk, and the restored controller
//! keeps serving the same devices with every record and an intact audit trail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use haven_tests::*;

fn dated(text: &str) -> String {
    let today = jiff::Zoned::now().date();
    let shift = |days: i64| {
        today
            .checked_add(jiff::Span::new().days(days))
            .unwrap()
            .to_string()
    };
    text.replace("2026-11-20", &shift(-5))
        .replace("2027-02-01", &shift(60))
        .replace("2027-03-01", &shift(90))
}

fn write(home: &Home, name: &str, text: &str) -> String {
    let path = home.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

fn extra_lines(cli: &Cli) -> usize {
    cli.json(&["protected-contact", "list", "--home", "Oak House"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap_or("").starts_with("Line "))
        .count()
}

// clause R36: a backup taken while the controller serves and staff write restores into a
// controller with the home, the child, her plan and her lockdown, whose audit trail verifies,
// and that the same device follows (a new lockdown reaches it, although it holds a policy made
// after the backup); a wrong passphrase restores nothing.
#[test]
fn r36_a_backup_taken_while_serving_restores_a_working_controller() {
    let home = Home::new();
    let staff = home.care_staff("Sam Carer");
    let ra_file = write(&home, "ra.toml", &dated(&staff.ok(&["risk", "template"])));
    let ra = staff.json(&["risk", "add", "Amira", "--file", &ra_file])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let plan = dated(&home.manager.ok(&["plan", "template"])).replace("ra-REPLACE-ME", &ra);
    let plan_file = write(&home, "plan.toml", &plan);
    home.manager
        .json(&["plan", "revise", "Amira", "--file", &plan_file]);
    let mut tablet = home.enrolled_agent("tablet");
    tablet.start();
    let lockdown = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50",
        "--channels",
        "apps",
        "--wait-secs",
        "0",
    ]);
    let lockdown_id = lockdown["lockdown"]["id"].as_str().unwrap().to_string();
    let version = lockdown["lockdown"]["policy_version"].uint().unwrap();
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );

    // Staff keep writing while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (manager, stop, acknowledged) =
            (home.manager.clone(), stop.clone(), acknowledged.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) && i < 200 {
                let r = manager.run(&[
                    "protected-contact",
                    "add",
                    "--home",
                    "Oak House",
                    "--name",
                    &format!("Line {i}"),
                    "--number",
                    &format!("0800 000 {i:04}"),
                ]);
                assert!(r.ok, "{}", r.stderr);
                acknowledged.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    eventually("some writes before the backup", WAIT, || {
        (acknowledged.load(Ordering::SeqCst) >= 2).then_some(())
    });
    let before = acknowledged.load(Ordering::SeqCst);
    let pass = write(&home, "passphrase", "correct horse battery staple\n");
    let file = home.path("haven.backup");
    let file_arg = file.to_string_lossy().into_owned();
    let data_dir = home.controller.data_dir.to_string_lossy().into_owned();
    let out = home.admin.ok(&[
        "backup",
        &file_arg,
        "--data-dir",
        &data_dir,
        "--passphrase-file",
        &pass,
    ]);
    assert!(out.contains("ca-key.pem"), "{out}");
    assert!(out.contains("server-key.pem"), "{out}");
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let total = acknowledged.load(Ordering::SeqCst);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // After the backup: a change the backup does not hold; the tablet enforces it.
    let later = home.change_policy("After the backup", "0800 000 9999");
    assert!(tablet.wait_applied(later, WAIT), "{}", tablet.stdout.text());

    // A wrong passphrase restores nothing.
    let wrong = write(&home, "wrong", "not the passphrase at all\n");
    let restored = home.path("restored");
    let restored_arg = restored.to_string_lossy().into_owned();
    let err = home.admin.fails(&[
        "restore",
        &file_arg,
        "--data-dir",
        &restored_arg,
        "--passphrase-file",
        &wrong,
    ]);
    assert!(err.contains("passphrase or key does not open"), "{err}");
    assert!(!restored.exists());

    let out = home.admin.ok(&[
        "restore",
        &file_arg,
        "--data-dir",
        &restored_arg,
        "--passphrase-file",
        &pass,
    ]);
    assert!(out.contains("audit trail is intact"), "{out}");
    assert_eq!(
        std::fs::metadata(&restored).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // The machine fails; the restored directory takes its place, on the same address.
    let mut controller = home.controller;
    controller.stop();
    std::fs::rename(&controller.data_dir, home.dir.path().join("lost")).unwrap();
    std::fs::rename(&restored, &controller.data_dir).unwrap();
    controller.restart();

    let admin = &home.admin;
    let children = admin.json(&["child", "list"]);
    assert!(children.to_string().contains("Amira Khan"), "{children}");
    assert_eq!(
        admin
            .json(&["plan", "history", "Amira"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let lockdowns = admin.json(&["lockdowns"]);
    assert!(lockdowns.to_string().contains(&lockdown_id), "{lockdowns}");
    let lines = extra_lines(admin);
    assert!(
        lines >= before && lines <= total,
        "every write acknowledged before the backup began is there: {before} <= {lines} <= {total}"
    );
    let verify = admin.ok(&["audit", "verify"]);
    assert!(verify.contains("intact"), "{verify}");

    // The same tablet follows the restored controller, although it holds a policy version
    // made after the backup.
    let second = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Again, after the restore",
        "--channels",
        "camera",
        "--wait-secs",
        "0",
    ]);
    let version = second["lockdown"]["policy_version"].uint().unwrap();
    assert!(version > later, "{version} > {later}");
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );
    drop(controller);
}
