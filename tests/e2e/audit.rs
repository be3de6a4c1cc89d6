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
    assert!(v["entries_checked"].uint().unwrap() >= 5, "{v}");

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

// ---- R36: what the chain alone cannot prove ----

/// The chain's hash, as `controller/src/domain/audit.rs` computes it: an attacker with the
/// database and the source can recompute every hash, which is what these tests do.
fn entry_hash(
    prev: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for field in [
        prev.as_bytes(),
        &seq.to_be_bytes(),
        &at.to_be_bytes(),
        actor.as_bytes(),
        action.as_bytes(),
        subject.as_bytes(),
        detail.as_bytes(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    hex::encode(h.finalize())
}

/// Runs `sql` against the database behind Haven's back, then renumbers and recomputes the
/// whole chain so that the chain alone verifies as intact.
fn tamper_and_rechain(home: &Home, sql: &[&'static str]) {
    runtime().block_on(async {
        use sqlx::{ConnectOptions, Connection, Row};
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(home.controller.data_dir.join("haven.db"))
            .busy_timeout(std::time::Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        for statement in sql {
            sqlx::query(*statement).execute(&mut *tx).await.unwrap();
        }
        let rows =
            sqlx::query("SELECT at, actor, action, subject, detail FROM audit_log ORDER BY seq")
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        sqlx::query("DELETE FROM audit_log")
            .execute(&mut *tx)
            .await
            .unwrap();
        let mut prev = "0".repeat(64);
        for (i, r) in rows.iter().enumerate() {
            let seq = i as i64 + 1;
            let (at, actor, action, subject, detail): (i64, String, String, String, String) = (
                r.get("at"),
                r.get("actor"),
                r.get("action"),
                r.get("subject"),
                r.get("detail"),
            );
            let hash = entry_hash(&prev, seq, at, &actor, &action, &subject, &detail);
            sqlx::query(
                "INSERT INTO audit_log (seq, at, actor, action, subject, detail, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(seq)
            .bind(at)
            .bind(actor)
            .bind(action)
            .bind(subject)
            .bind(detail)
            .bind(&prev)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .unwrap();
            prev = hash;
        }
        tx.commit().await.unwrap();
    });
}

/// A manager signs a checkpoint and keeps the printed block in a file off the controller.
fn keep_checkpoint(home: &Home) -> std::path::PathBuf {
    let block = home.manager.ok(&["audit", "checkpoint"]);
    assert!(
        block.contains("BEGIN HAVEN AUDIT CHECKPOINT") && block.contains("public-key:"),
        "{block}"
    );
    let file = home.path("kept-checkpoint.txt");
    std::fs::write(&file, block).unwrap();
    file
}

// clause R36
#[test]
fn r36_an_edit_with_the_whole_chain_recomputed_is_found_by_a_kept_checkpoint() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    let file = keep_checkpoint(&home);
    let kept = file.to_str().unwrap();
    let out = home
        .manager
        .ok(&["audit", "verify", "--since-checkpoint", kept]);
    assert!(out.contains("still holds the checkpoint"), "{out}");
    home.admin.ok(&["home", "add", "Ash House"]);

    // Entry 3 is edited, every hash after it recomputed, and the controller's own kept
    // checkpoints removed: the chain alone is fooled (this is what the check was before R36).
    tamper_and_rechain(
        &home,
        &[
            "UPDATE audit_log SET detail = '{\"name\":\"Someone Else\"}' WHERE seq = 3",
            "DELETE FROM audit_checkpoints",
        ],
    );
    let fooled = home.manager.json(&["audit", "verify"]);
    assert_eq!(fooled["intact"], true, "{fooled}");

    let err = home
        .manager
        .fails(&["audit", "verify", "--since-checkpoint", kept]);
    assert!(
        err.contains("NOT intact") && err.contains("rewritten"),
        "{err}"
    );
}

// clause R36
#[test]
fn r36_the_newest_entries_deleted_are_found_by_a_kept_checkpoint() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    home.admin.ok(&["home", "add", "Ash House"]);
    let file = keep_checkpoint(&home);
    tamper(&home, "DELETE FROM audit_checkpoints");
    tamper(
        &home,
        "DELETE FROM audit_log WHERE seq > (SELECT MAX(seq) - 2 FROM audit_log)",
    );
    // The chain alone is fooled; the records still name a home whose entry went with them.
    let fooled = home.manager.run(&["audit", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&fooled.stdout).unwrap();
    assert_eq!(v["intact"], true, "{v}");
    assert!(
        fooled.stderr.contains("home") && fooled.stderr.contains("has no audit entry"),
        "{}",
        fooled.stderr
    );

    let err = home.manager.fails(&[
        "audit",
        "verify",
        "--since-checkpoint",
        file.to_str().unwrap(),
    ]);
    assert!(
        err.contains("NOT intact") && err.contains("newest entries were deleted"),
        "{err}"
    );
}

// clause R36
#[test]
fn r36_the_controller_finds_a_rewrite_with_the_checkpoints_it_kept() {
    // Signed on schedule as well as on demand: the one at start is kept in the database.
    let home = Home::new_with(&["--checkpoint-every-secs", "1"]);
    home.admin.ok(&["home", "add", "Elm House"]);
    eventually("a scheduled checkpoint", WAIT, || {
        let v = home.manager.json(&["audit", "verify"]);
        (v["checkpoints_checked"].uint().unwrap_or(0) >= 2).then_some(())
    });
    tamper_and_rechain(
        &home,
        &["UPDATE audit_log SET detail = '{\"name\":\"Someone Else\"}' WHERE seq = 2"],
    );
    let err = home.manager.fails(&["audit", "verify"]);
    assert!(
        err.contains("a checkpoint the controller kept") && err.contains("rewritten"),
        "{err}"
    );
}

// clause R36
#[test]
fn r36_a_forged_or_altered_checkpoint_is_refused() {
    let home = Home::new();
    let file = keep_checkpoint(&home);
    let text = std::fs::read_to_string(&file).unwrap();
    let entries_line = text
        .lines()
        .find(|l| l.starts_with("entries:"))
        .unwrap()
        .to_string();
    std::fs::write(&file, text.replace(&entries_line, "entries: 1")).unwrap();
    let err = home.manager.fails(&[
        "audit",
        "verify",
        "--since-checkpoint",
        file.to_str().unwrap(),
    ]);
    assert!(err.contains("signature does not match"), "{err}");
    let err = home.care_staff("Jo Carer").fails(&["audit", "checkpoint"]);
    assert!(err.contains("only a manager or an administrator"), "{err}");
}

// clause R36: the records agree with the trail
#[test]
fn r36_a_lockdown_whose_audit_entry_was_removed_is_named() {
    let home = Home::new();
    let staff = home.care_staff("Sam Carer");
    let r = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "property-damage",
        "--note",
        "Smashing the lounge window",
        "--channels",
        "camera",
        "--wait-secs",
        "0",
    ]);
    let id = r["lockdown"]["id"].as_str().unwrap().to_string();
    let v = home.manager.json(&["audit", "verify"]);
    assert_eq!(v["records_agree"], true, "{v}");

    // Its entry removed and the chain recomputed: the chain is intact, the records are not.
    tamper_and_rechain(
        &home,
        &[
            "DELETE FROM audit_log WHERE action = 'lockdown.start'",
            "DELETE FROM audit_checkpoints",
        ],
    );
    let err = home.manager.fails(&["audit", "verify"]);
    assert!(
        err.contains("do NOT agree") && err.contains(&format!("lockdown {id} has no audit entry")),
        "{err}"
    );
}

// clause R36: who read which child's records (subject access requests)
#[test]
fn r36_reads_of_a_childs_records_are_listed_for_a_subject_access_request() {
    let mut home = Home::new();
    let jo = home.care_staff("Jo Carer");
    jo.ok(&["plan", "history", "Amira"]);
    jo.ok(&["violations", "--child", "Amira"]);
    let reads = home.manager.json(&["audit", "reads", "--child", "Amira"]);
    let list = reads["reads"].as_array().unwrap();
    let by_jo: Vec<&str> = list
        .iter()
        .filter(|r| r["staff_name"] == "Jo Carer")
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    assert!(by_jo.contains(&"plan history"), "{reads}");
    assert!(by_jo.contains(&"violations"), "{reads}");

    // A list of the whole home is a read of each child it shows; and a read just before a
    // clean stop is not lost.
    home.manager.ok(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threats in messages",
        "--channels",
        "messages",
        "--wait-secs",
        "0",
    ]);
    jo.ok(&["lockdowns"]);
    jo.ok(&["camera", "incidents", "Amira"]);
    home.controller.restart();
    let table = home.manager.ok(&["audit", "reads", "--child", "Amira"]);
    assert!(
        table.contains("Jo Carer") && table.contains("camera incidents"),
        "{table}"
    );
    let reads = home.manager.json(&["audit", "reads", "--child", "Amira"]);
    assert!(
        reads["reads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["staff_name"] == "Jo Carer" && r["what"] == "lockdowns"),
        "{reads}"
    );

    // Care staff cannot see who read what.
    let err = jo.fails(&["audit", "reads", "--child", "Amira"]);
    assert!(err.contains("only a manager or an administrator"), "{err}");

    // A manager of another home cannot learn anything about Amira, not even that she exists.
    home.admin.ok(&["home", "add", "Elm House"]);
    let other = home.admin.json(&[
        "staff",
        "add",
        "--name",
        "Eve Manager",
        "--role",
        "manager",
        "--home",
        "Elm House",
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let err = home
        .admin
        .as_token(&other)
        .fails(&["audit", "reads", "--child", "Amira"]);
    assert!(err.contains("no child called"), "{err}");
}

// clause R36: a checkpoint only vouches with the key that signed it
#[test]
fn r36_after_the_audit_key_is_replaced_old_checkpoints_are_said_not_to_be_checkable() {
    let mut home = Home::new();
    let file = keep_checkpoint(&home);
    let key = home.controller.data_dir.join("audit-key.txt");
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600, "the audit key is the controller's alone");

    // Restored without its key: a new one is made on start.
    home.controller.stop();
    std::fs::remove_file(&key).unwrap();
    home.controller.restart();
    let out = home.manager.ok(&["audit", "verify"]);
    assert!(
        out.contains("intact") && out.contains("signed by another key"),
        "{out}"
    );
    let err = home.manager.fails(&[
        "audit",
        "verify",
        "--since-checkpoint",
        file.to_str().unwrap(),
    ]);
    assert!(err.contains("not this controller's key"), "{err}");
}
