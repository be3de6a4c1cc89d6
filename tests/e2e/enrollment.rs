//! A new home's first day: log in, add a child, enroll a tablet, see it in the device list.

use haven_tests::*;

// clause D1, D7
#[test]
fn d1_d7_a_device_enrolls_end_to_end_and_shows_in_the_device_list() {
    let home = Home::new();
    let code_json = home.admin.json(&["device", "enroll", "Amira"]);
    let code = code_json["code"].as_str().unwrap();
    assert_eq!(code.len(), 14, "codes look like XXXX-XXXX-XXXX");
    assert_eq!(code_json["ca_pin"], home.controller.ca_pin().as_str());

    let mut agent = Agent::new(&home.path("tablet"));
    let r = agent.enroll(&home.controller, code);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("Amira"),
        "the device says whose it is: {}",
        r.stdout
    );

    // The private key was made on the device and stays there, readable by its owner only.
    let key = home.path("tablet").join("device-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o077,
        0,
        "the device key is private"
    );
    let key_text = std::fs::read_to_string(&key).unwrap();
    let db = std::fs::read(home.controller.data_dir.join("haven.db")).unwrap();
    let wal = std::fs::read(home.controller.data_dir.join("haven.db-wal")).unwrap_or_default();
    let key_body: String = key_text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for bytes in [&db, &wal] {
        assert!(
            !String::from_utf8_lossy(bytes).contains(&key_body[..32]),
            "the device key never reaches the controller"
        );
    }

    agent.start();
    let device = eventually(
        "the device to come online and apply its policy",
        WAIT,
        || {
            let d = home.devices().into_iter().next()?;
            (d["online"] == true
                && d["applied_policy_version"].uint()? > 0
                && d["applied_policy_version"] == d["desired_policy_version"])
                .then_some(d)
        },
    );
    let inv = &device["inventory"];
    assert!(
        !inv["os_name"].as_str().unwrap_or_default().is_empty(),
        "{device}"
    );
    assert!(!inv["agent_version"].as_str().unwrap_or_default().is_empty());
    assert!(inv["storage_total_bytes"].uint().unwrap_or(0) > 0);
    assert!(device["last_seen_at_unix_ms"].int().unwrap() > 0);

    let table = home.admin.ok(&["device", "list"]);
    assert!(
        table.contains("online") && table.contains("applied"),
        "{table}"
    );
    let shown = home
        .admin
        .ok(&["device", "show", device["id"].as_str().unwrap()]);
    assert!(shown.contains("applied — version"), "{shown}");
    assert!(shown.contains("Amira Khan"), "{shown}");
}

#[test]
fn a_code_works_once() {
    let home = Home::new();
    let code = home.enrollment_code();
    let first = Agent::new(&home.path("first"));
    assert!(first.enroll(&home.controller, &code).ok);
    let second = Agent::new(&home.path("second"));
    let r = second.enroll(&home.controller, &code);
    assert!(!r.ok);
    assert!(r.stderr.contains("already been used"), "{}", r.stderr);
    assert!(!home.path("second").join("device-cert.pem").exists());
    assert_eq!(home.devices().len(), 1);
}

#[test]
fn an_expired_code_is_refused() {
    let home = Home::new();
    let code = home
        .admin
        .json(&["device", "enroll", "Amira", "--valid-for", "1m"])["code"]
        .as_str()
        .unwrap()
        .to_string();
    // Let the minute pass without waiting for it: age the code's record in the real database.
    runtime().block_on(async {
        use sqlx::ConnectOptions;
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(home.controller.data_dir.join("haven.db"))
            .connect()
            .await
            .unwrap();
        sqlx::query("UPDATE enrollments SET expires_at = expires_at - 120000")
            .execute(&mut db)
            .await
            .unwrap();
    });
    let agent = Agent::new(&home.path("late"));
    let r = agent.enroll(&home.controller, &code);
    assert!(!r.ok);
    assert!(r.stderr.contains("expired"), "{}", r.stderr);
}

#[test]
fn a_mistyped_code_is_explained() {
    let home = Home::new();
    let agent = Agent::new(&home.path("t"));
    let r = agent.enroll(&home.controller, "ABCD-EFGH-JKMN");
    assert!(!r.ok);
    assert!(r.stderr.contains("not known"), "{}", r.stderr);
    let r = agent.enroll(&home.controller, "hello");
    assert!(r.stderr.contains("not an enrollment code"), "{}", r.stderr);
}

#[test]
fn codes_read_forgivingly_in_lower_case_without_dashes() {
    let home = Home::new();
    let code = home.enrollment_code().to_lowercase().replace('-', "");
    let agent = Agent::new(&home.path("t"));
    let r = agent.enroll(&home.controller, &code);
    assert!(r.ok, "{}", r.stderr);
}

#[test]
fn staff_commands_read_as_tables_and_json() {
    let home = Home::new();
    let children = home.admin.json(&["child", "list"]);
    assert_eq!(children[0]["name"], "Amira Khan");
    assert_eq!(children[0]["home_name"], "Oak House");
    let table = home.admin.ok(&["child", "list"]);
    assert!(table.contains("Amira Khan") && table.contains("2012-05-17"));
    let me = home.admin.json(&["whoami"]);
    assert_eq!(me["role"], "admin");
    assert_eq!(me["staff_role"], "STAFF_ROLE_ADMIN");
    let staff = home.admin.json(&["staff", "list"]);
    let text = staff.to_string();
    assert!(text.contains("Rita Manager"));
    assert!(!text.contains("\"token\""), "tokens are never shown again");
    // Issue 15: the homes a person works in by name for people, and by id for programs.
    let oak_id = home
        .admin
        .json(&["home", "list"])
        .as_array()
        .and_then(|homes| homes.iter().find(|h| h["name"] == "Oak House"))
        .map(|h| h["id"].clone())
        .expect("Oak House is listed");
    let rita = staff
        .as_array()
        .and_then(|all| all.iter().find(|m| m["name"] == "Rita Manager"))
        .expect("Rita is listed");
    assert_eq!(rita["homes"], serde_json::json!(["Oak House"]), "{rita}");
    assert_eq!(rita["home_ids"], serde_json::json!([oak_id]), "{rita}");
    let completions = home.admin.ok(&["completions", "bash"]);
    assert!(completions.contains("haven"));
}

// Issue 13: an IT person sees the codes that still work (never the codes themselves) and
// cancels one sent to the wrong person; a device then cannot enroll with it. A code also dies
// with the account of the member of staff who made it.
#[test]
fn codes_are_listed_without_the_code_cancelled_and_die_with_their_maker() {
    let home = Home::new();
    let made = home.admin.json(&["device", "enroll", "Amira", "--no-qr"]);
    let code = made["code"].as_str().unwrap().to_string();
    let listed = home.admin.json(&["device", "codes"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "usable");
    assert_eq!(listed[0]["code_state"], "ENROLLMENT_CODE_STATE_USABLE");
    assert!(
        !listed[0].to_string().contains(&code[5..]),
        "the code itself is never listed"
    );
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let out = home.admin.ok(&["device", "cancel-code", &id]);
    assert!(out.contains("no device can enroll with it"), "{out}");
    assert!(
        home.admin
            .json(&["device", "codes"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let agent = Agent::new(&home.path("tablet"));
    let r = agent.enroll(&home.controller, &code);
    assert!(!r.ok);
    assert!(r.stderr.contains("cancelled"), "{}", r.stderr);

    // A code made by a member of staff who is then revoked stops working.
    let rita = home
        .admin
        .json(&["staff", "add", "--name", "Rita Admin", "--role", "admin"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let code = home
        .admin
        .as_token(&rita)
        .json(&["device", "enroll", "Amira", "--no-qr"])["code"]
        .as_str()
        .unwrap()
        .to_string();
    home.admin.ok(&["staff", "revoke", "Rita Admin"]);
    let r = Agent::new(&home.path("phone")).enroll(&home.controller, &code);
    assert!(!r.ok && r.stderr.contains("cancelled"), "{}", r.stderr);
}
