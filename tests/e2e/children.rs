//! A child who leaves the home is archived, never deleted, and their records are kept.

use haven_tests::*;

// clause R36 (retention): records are kept until the child's 75th birthday.
#[test]
fn r36_a_child_who_leaves_is_archived_and_their_records_are_kept() {
    let home = Home::new();
    let child = home.admin.json(&["child", "show", "Amira"]);
    assert_eq!(child["retain_records_until"], "2087-05-17");
    let agent = home.enrolled_agent("tablet");
    drop(agent);
    let err = home
        .admin
        .fails(&["child", "archive", "Amira", "--reason", "moved on"]);
    assert!(err.contains("revoke them first"), "{err}");
    let device = home.devices()[0]["id"].as_str().unwrap().to_string();
    home.admin
        .ok(&["device", "revoke", &device, "--reason", "left with Amira"]);
    let out = home.admin.ok(&[
        "child",
        "archive",
        "Amira",
        "--reason",
        "Moved to foster care",
    ]);
    assert!(out.contains("kept, unchanged, until 2087-05-17"), "{out}");
    assert_eq!(
        home.admin
            .json(&["child", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let all = home.admin.json(&["child", "list", "--all"]);
    assert_eq!(all[0]["archive_reason"], "Moved to foster care");
    let shown = home.admin.ok(&["child", "show", "Amira"]);
    assert!(
        shown.contains("left:") && shown.contains("records kept until: 2087-05-17"),
        "{shown}"
    );
    // There is no way to delete a child.
    let r = home.admin.run(&["child", "delete", "Amira"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    let audit = home.admin.json(&["audit", "verify"]);
    assert_eq!(audit["intact"], true);
}
