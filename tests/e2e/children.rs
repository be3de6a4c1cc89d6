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
    // Issue 15: the time as a `Timestamp` beside the deprecated milliseconds, the same instant.
    let archived: jiff::Timestamp = all[0]["archived_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        Some(archived.as_millisecond()),
        all[0]["archived_at_unix_ms"].int()
    );
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

// Issue 15: a program turns a name into ids with `Lookup` (here `haven lookup`), within what
// the caller may see, and every match is returned rather than refused as ambiguous.
#[test]
fn a_name_is_looked_up_as_the_ids_it_names_within_the_callers_homes() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    let other = home.admin.json(&[
        "child",
        "add",
        "--home",
        "Elm House",
        "--name",
        "Amira Jones",
        "--dob",
        "2013-01-02",
    ]);
    let ids = |found: &serde_json::Value| {
        let mut ids: Vec<String> = found["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    // The administrator sees both Amiras (a name the name-or-id fields would refuse).
    let found = home.admin.json(&["lookup", "amira", "--kind", "child"]);
    let mut both = vec![
        home.child_id.clone(),
        other["id"].as_str().unwrap().to_string(),
    ];
    both.sort();
    assert_eq!(ids(&found), both, "{found}");
    assert_eq!(found["matches"][0]["kind"], "LOOKUP_KIND_CHILD", "{found}");
    // The manager works at Oak House only: the other Amira is not there for them.
    let found = home.manager.json(&["lookup", "Amira"]);
    assert_eq!(ids(&found), vec![home.child_id.clone()], "{found}");
    assert_eq!(found["matches"][0]["home_name"], "Oak House", "{found}");
    // Homes and staff by their whole name.
    let found = home.admin.json(&["lookup", "oak house"]);
    assert_eq!(found["matches"][0]["kind"], "LOOKUP_KIND_HOME", "{found}");
    let found = home
        .admin
        .json(&["lookup", "Rita Manager", "--kind", "staff"]);
    assert_eq!(found["matches"][0]["kind"], "LOOKUP_KIND_STAFF", "{found}");
    // Nothing found is an empty answer, not an error; a kind that does not exist is refused.
    let none = home.admin.json(&["lookup", "Nobody"]);
    assert_eq!(none["matches"].as_array().map(Vec::len), Some(0), "{none}");
    let err = home.admin.fails(&["lookup", "Amira", "--kind", "pets"]);
    assert!(err.contains("is not a kind of record"), "{err}");
}
