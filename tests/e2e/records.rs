//! Staff reports of off-duty contact (WB3) and the photography approvals register (IM4).

use haven_tests::*;

fn carer(home: &Home) -> Cli {
    home.care_staff("Jo Carer")
}

// clause WB3
#[test]
fn wb3_an_off_duty_contact_report_reaches_the_managers_list_until_acknowledged() {
    let home = Home::new();
    let jo = carer(&home);
    let r = jo.json(&[
        "report",
        "off-duty-contact",
        "--home",
        "Oak House",
        "--child",
        "Amira",
        "--when",
        "2026-11-27 21:40",
        "--how",
        "Instagram message",
        "--who",
        "Amira",
        "--what",
        "A message asking to meet; I did not reply and blocked the account.",
    ]);
    let id = r["id"].as_str().unwrap().to_string();
    assert_eq!(r["communication_stopped"], true);

    let open = home
        .manager
        .json(&["report", "list", "--home", "Oak House"]);
    assert_eq!(open.as_array().unwrap().len(), 1, "{open}");
    let table = home.manager.ok(&["report", "list"]);
    assert!(
        table.contains("waiting") && table.contains("Instagram message"),
        "{table}"
    );

    // Only a manager follows it up, and says what was done.
    let err = jo.fails(&["report", "acknowledge", &id, "--note", "done"]);
    assert!(err.contains("only a manager"), "{err}");
    let err = home
        .manager
        .fails(&["report", "acknowledge", &id, "--note", " "]);
    assert!(err.contains("--note"), "{err}");
    home.manager.ok(&[
        "report",
        "acknowledge",
        &id,
        "--note",
        "Spoke to Jo and to Amira; social worker told.",
    ]);
    assert_eq!(
        home.manager
            .json(&["report", "list"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let all = home.manager.json(&["report", "list", "--all"]);
    assert_eq!(
        all[0]["manager_note"],
        "Spoke to Jo and to Amira; social worker told."
    );
    let err = home
        .manager
        .fails(&["report", "acknowledge", &id, "--note", "again"]);
    assert!(err.contains("already acknowledged"), "{err}");
}

#[test]
fn an_open_communication_is_flagged_to_the_reporter() {
    let home = Home::new();
    let jo = carer(&home);
    let out = jo.ok(&[
        "report",
        "off-duty-contact",
        "--home",
        "Oak House",
        "--when",
        "today 20:00",
        "--how",
        "phone call",
        "--who",
        "unknown number",
        "--what",
        "Caller said they knew Amira.",
        "--not-stopped",
    ]);
    assert!(out.contains("stop the communication at once"), "{out}");
    let err = jo.fails(&[
        "report",
        "off-duty-contact",
        "--home",
        "Oak House",
        "--when",
        "today",
        "--how",
        "text",
        "--who",
        "someone",
        "--what",
        "",
    ]);
    assert!(err.contains("what happened"), "{err}");
}

// clause IM4
#[test]
fn im4_photography_approvals_are_registered_by_a_manager() {
    let home = Home::new();
    let today = jiff::Zoned::now().date();
    let before = today
        .checked_sub(jiff::Span::new().days(3))
        .unwrap()
        .to_string();
    let after = today
        .checked_add(jiff::Span::new().days(200))
        .unwrap()
        .to_string();
    let args = [
        "photo-approval",
        "add",
        "Amira",
        "--approved-by",
        "M. Jones, Community Director",
        "--placing-authority",
        "J. Okafor (social worker)",
        "--consulted-on",
        &before,
        "--purpose",
        "School photograph; copies to Amira and her mum",
        "--valid-until",
        &after,
    ];
    let err = carer(&home).fails(&args);
    assert!(err.contains("only a manager"), "{err}");
    home.manager.ok(&args);
    let list = home.admin.json(&["photo-approval", "list", "Amira"]);
    assert_eq!(list[0]["approved_by"], "M. Jones, Community Director");
    assert_eq!(list[0]["consulted_on"], before.as_str());
    let tomorrow = today
        .checked_add(jiff::Span::new().days(1))
        .unwrap()
        .to_string();
    let err = home.manager.fails(&[
        "photo-approval",
        "add",
        "Amira",
        "--approved-by",
        "M. Jones",
        "--placing-authority",
        "J. Okafor",
        "--consulted-on",
        &tomorrow,
        "--purpose",
        "x",
    ]);
    assert!(err.contains("in the future"), "{err}");
}
