//! The audit trail: every change is written down, and any later alteration is found.

use haven_tests::*;

fn tamper(home: &Home, sql: &'static str) {
    runtime().block_on(async {
        use sqlx::ConnectOptions;
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(home.controller.data_dir.join("haven.db"))
            .connect()
            .await
            .unwrap();
        sqlx::query(sql).execute(&mut db).await.unwrap();
    });
}

// clause R36
#[test]
fn r36_the_audit_trail_proves_it_was_not_altered_and_names_the_first_altered_entry() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    let out = home.admin.ok(&["audit", "verify"]);
    assert!(out.contains("intact"), "{out}");
    let v = home.admin.json(&["audit", "verify"]);
    assert_eq!(v["intact"], true);
    // First administrator, home, child, manager, second home: at least five changes.
    assert!(v["entries_checked"].as_u64().unwrap() >= 5, "{v}");

    // Someone edits a record's history behind Haven's back.
    tamper(
        &home,
        "UPDATE audit_log SET detail = '{\"name\":\"Someone Else\"}' WHERE seq = 3",
    );
    let err = home.admin.fails(&["audit", "verify"]);
    assert!(
        err.contains("NOT intact") && err.contains("entry 3"),
        "{err}"
    );
    assert!(err.contains("changed after it was written"), "{err}");
}

#[test]
fn a_deleted_audit_entry_is_found() {
    let home = Home::new();
    tamper(&home, "DELETE FROM audit_log WHERE seq = 2");
    let err = home.admin.fails(&["audit", "verify"]);
    assert!(err.contains("entry 3") && err.contains("missing"), "{err}");
}

#[test]
fn care_staff_cannot_run_the_audit_check() {
    let home = Home::new();
    let err = home.care_staff("Jo Carer").fails(&["audit", "verify"]);
    assert!(err.contains("only a manager or an administrator"), "{err}");
}
