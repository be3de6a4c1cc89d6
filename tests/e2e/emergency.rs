//! Emergency action at 2 a.m. with real agents: a lockdown reaches connected devices at once
//! and offline ones when they reconnect, the command shows its progress, a phone restriction
//! opens a Regulation 35 sanction with its deadlines and the social worker's notification,
//! lockdowns are listed, lifted once, end by themselves, survive a restart, and bad input is
//! refused in one line.

use haven_tests::*;
use serde_json::Value;

const FULL: &str = "lockdown: calls, messages, web, camera, apps";

/// A member of care staff (not a manager): anyone on shift may act in an emergency.
fn carer(home: &Home) -> Cli {
    home.care_staff("Sam Carer")
}

fn online(home: &Home, n: usize) {
    eventually("the devices to come online", WAIT, || {
        let devices = home.devices();
        (devices.iter().filter(|d| d["online"] == true).count() == n).then_some(())
    });
}

/// The first policy line with a version above 0 (0 is the built-in safe default).
fn first_controller_policy(agent: &Agent) -> String {
    eventually(
        "the agent to apply a policy from the controller",
        WAIT,
        || {
            agent
                .stdout
                .all()
                .into_iter()
                .find(|l| l.contains("policy version ") && !l.contains("policy version 0 "))
        },
    )
}

fn millis(v: &Value) -> i64 {
    v.int().unwrap_or_else(|| panic!("not a time: {v}"))
}

// clauses RM3, D6, D8, GD4: any member of staff locks a child's devices down; connected
// devices get it at once over their open stream; the command shows live progress and names
// the offline device, which gets the lockdown first thing when it reconnects.
#[test]
fn rm3_d6_d8_gd4_a_lockdown_reaches_online_agents_at_once_and_an_offline_one_on_reconnect() {
    let home = Home::new();
    let staff = carer(&home);
    let mut tablet = home.enrolled_agent("tablet");
    let mut phone = home.enrolled_agent("phone");
    tablet.start();
    online(&home, 1);
    first_controller_policy(&tablet);

    let out = staff.ok(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50; Amira is frightened",
        "--wait-secs",
        "20",
    ]);
    assert!(out.contains("Protected contacts stay reachable"), "{out}");
    // The tablet runs the development log enforcer, which enforces nothing and says so: it
    // has the lockdown but is not counted as locked (D1, D5).
    assert!(
        out.contains(
            "0 of 2 devices locked; 1 offline — will lock on reconnect; 1 could not apply it"
        ),
        "{out}"
    );
    assert!(
        out.contains("Every online device has the lockdown"),
        "{out}"
    );
    assert!(
        tablet.stdout.wait_for(FULL, WAIT).is_some(),
        "{}",
        tablet.stdout.text()
    );

    // The offline phone: the very first policy it applies from the controller is the lockdown.
    phone.start();
    let first = first_controller_policy(&phone);
    assert!(first.contains(FULL), "{first}");
    // Protected contacts stay (R19): the home has none yet, so the count is 0 but present.
    assert!(first.contains("protected contact"), "{first}");
}

// clauses RM4, RM5, RM6: restricting the phone opens a sanction with its three deadlines and
// the social worker's notification; each is closed by the right person; Ofsted's advice is
// recorded on the action.
#[test]
fn rm4_rm5_rm6_a_phone_restriction_opens_a_sanction_with_its_deadlines() {
    let home = Home::new();
    let staff = carer(&home);
    let r = staff.json(&[
        "lockdown",
        "Amira Khan",
        "--reason",
        "injury-to-others",
        "--note",
        "Arranging a fight by phone",
        "--channels",
        "calls,messages",
        "--review",
        "in 12h",
        "--ofsted-advice",
        "Duty inspector: notify the police and the placing authority",
    ]);
    let lockdown_id = r["lockdown"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        r["lockdown"]["ofsted_advice"],
        "Duty inspector: notify the police and the placing authority"
    );
    let sanctions = r["sanctions"].as_array().unwrap();
    assert_eq!(sanctions.len(), 1, "{r}");
    let s = &sanctions[0];
    let at = millis(&s["occurred_at_unix_ms"]);
    let hour = 3_600_000;
    assert_eq!(millis(&s["complete_by_unix_ms"]) - at, 24 * hour);
    assert_eq!(millis(&s["sign_off_by_unix_ms"]) - at, 48 * hour);
    // Five calendar days in the home's zone: 120 hours, give or take a clock change.
    let five = millis(&s["discuss_by_unix_ms"]) - at;
    assert!((119 * hour..=121 * hour).contains(&five), "{five}");
    assert_eq!(s["imposed_by"], "Sam Carer");
    assert!(s["measure"].as_str().unwrap().contains("calls, messages"));
    let obligations = r["obligations"].as_array().unwrap();
    assert_eq!(obligations.len(), 4, "{r}");
    let notify = obligations
        .iter()
        .find(|o| o["kind"] == "notify-social-worker")
        .unwrap();
    // One working day: after the action, and never more than four calendar days later (a
    // Friday before a bank-holiday Monday).
    let due = millis(&notify["due_at_unix_ms"]);
    assert!(due > at && due - at <= 4 * 24 * hour, "{notify}");

    // A restriction that leaves the phone alone is not a sanction, but the social worker is
    // still told (RM4: every emergency action).
    let web = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "prevent-offence",
        "--note",
        "Buying a knife online",
        "--channels",
        "web",
    ]);
    assert_eq!(web["sanctions"].as_array().unwrap().len(), 0);
    assert_eq!(web["obligations"].as_array().unwrap().len(), 1);

    let open = staff.json(&["obligations"]);
    assert_eq!(open.as_array().unwrap().len(), 5);
    let id = notify["id"].as_str().unwrap();
    let told = staff.ok(&[
        "notified",
        id,
        "--by",
        "Sam Carer",
        "--how",
        "phone",
        "--at",
        "5m ago",
    ]);
    assert!(told.contains("is closed"), "{told}");
    let again = staff.fails(&["notified", id, "--by", "Sam", "--how", "phone"]);
    assert!(again.contains("already closed"), "{again}");

    let sid = s["id"].as_str().unwrap();
    let early = home.manager.fails(&["sanction", "sign-off", sid]);
    assert!(early.contains("not complete"), "{early}");
    staff.ok(&[
        "sanction",
        "complete",
        sid,
        "--behaviour",
        "Arranging a fight by phone",
        "--location",
        "Lounge",
        "--steps",
        "Talked it through; offered a call with her key worker",
        "--present",
        "Jo Night",
        "--effectiveness",
        "Calmed down within the hour",
        "--injury",
        "none",
    ]);
    let refused = staff.fails(&["sanction", "sign-off", sid]);
    assert!(refused.contains("only a manager"), "{refused}");
    // clause RM5: the manager records that they spoke to the person who imposed it.
    let unspoken = home
        .manager
        .fails(&["sanction", "sign-off", sid, "--note", "accurate"]);
    assert!(unspoken.contains("--spoke-with"), "{unspoken}");
    home.manager.ok(&[
        "sanction",
        "sign-off",
        sid,
        "--note",
        "Spoke to Sam; accurate",
        "--spoke-with",
        "Sam Carer, this morning",
    ]);
    staff.ok(&[
        "sanction",
        "discussed",
        sid,
        "--views",
        "She said it was unfair but understood why",
    ]);
    let log = staff.json(&["sanctions"]);
    let entry = &log.as_array().unwrap()[0];
    assert!(millis(&entry["completed_at_unix_ms"]) > 0);
    assert!(millis(&entry["signed_off_at_unix_ms"]) > 0);
    assert_eq!(entry["spoke_with_imposer"], "Sam Carer, this morning");
    assert_eq!(
        entry["child_views"],
        "She said it was unfair but understood why"
    );
    // What is left: the web lockdown's notification only.
    assert_eq!(staff.json(&["obligations"]).as_array().unwrap().len(), 1);
    let table = staff.ok(&["sanctions"]);
    assert!(table.contains("Amira Khan"), "{table}");

    // RM6, later: a note on the action.
    let noted = staff.json(&[
        "lockdown-note",
        &lockdown_id,
        "--ofsted-advice",
        "Called back: no further action",
    ]);
    assert_eq!(noted["ofsted_advice"], "Called back: no further action");

    // clause RM5: lifted early, the record says how long it actually lasted.
    staff.ok(&["lift", &lockdown_id, "--note", "calm again"]);
    let log = staff.json(&["sanctions"]);
    let entry = &log.as_array().unwrap()[0];
    let duration = entry["duration"].as_str().unwrap();
    assert!(
        duration.contains("(planned: until lifted; to be reviewed by"),
        "{duration}"
    );
    assert!(!duration.starts_with("until"), "{duration}");
}

// clauses KP1, GD4: lockdowns in force are listed with who, since when and their review time;
// lifting restores the device at once and is refused the second time.
#[test]
fn kp1_lockdowns_are_listed_and_lifted_once() {
    let home = Home::new();
    let staff = carer(&home);
    let mut tablet = home.enrolled_agent("tablet");
    tablet.start();
    online(&home, 1);
    let r = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "property-damage",
        "--note",
        "Smashing the lounge window",
        "--channels",
        "camera,web",
    ]);
    let id = r["lockdown"]["id"].as_str().unwrap().to_string();
    assert!(
        tablet
            .stdout
            .wait_for("lockdown: web, camera", WAIT)
            .is_some()
    );
    let list = staff.json(&["lockdowns"]);
    let l = &list.as_array().unwrap()[0];
    assert_eq!(l["id"], id.as_str());
    assert_eq!(l["started_by_name"], "Sam Carer");
    assert_eq!(l["in_force"], true);
    assert!(millis(&l["review_at_unix_ms"]) > millis(&l["started_at_unix_ms"]));
    let table = staff.ok(&["lockdowns"]);
    assert!(table.contains("review by"), "{table}");

    let lifted = staff.json(&["lift", &id, "--note", "Calm again; spoke with Amira"]);
    let version = lifted["lifted_policy_version"].uint().unwrap();
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );
    let line = tablet
        .stdout
        .wait_for(&applied_line(version), WAIT)
        .unwrap();
    assert!(!line.contains("lockdown"), "{line}");
    let again = staff.fails(&["lift", &id, "--note", "again"]);
    assert!(again.contains("already lifted"), "{again}");
    assert_eq!(staff.json(&["lockdowns"]).as_array().unwrap().len(), 0);
    assert_eq!(
        staff
            .json(&["lockdowns", "--all"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// clause GD4: a lockdown with an end time ends by itself, and the device is told.
#[test]
fn gd4_a_lockdown_with_until_ends_by_itself() {
    let home = Home::new();
    let staff = carer(&home);
    let mut tablet = home.enrolled_agent("tablet");
    tablet.start();
    online(&home, 1);
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
    let r = staff.json(&[
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
    let version = r["lockdown"]["policy_version"].uint().unwrap();
    assert!(tablet.wait_applied(version, WAIT));
    assert!(tablet.stdout.wait_for("lockdown: apps", WAIT).is_some());
    let ended = eventually("the lockdown to end by itself", WAIT, || {
        let all = staff.json(&["lockdowns", "--all"]);
        let l = all.as_array()?.first()?.clone();
        (l["in_force"] == false).then_some(l)
    });
    assert_eq!(ended["lift_note"], "ended at its planned time");
    let version = ended["lifted_policy_version"].uint().unwrap();
    assert!(
        tablet.wait_applied(version, WAIT),
        "{}",
        tablet.stdout.text()
    );
}

// clause RM3: a controller restart in the middle of a lockdown loses nothing; a device that
// was offline throughout still gets it.
#[test]
fn rm3_a_lockdown_survives_a_controller_restart() {
    let mut home = Home::new();
    let staff = carer(&home);
    let mut tablet = home.enrolled_agent("tablet");
    let r = staff.json(&[
        "lockdown",
        "--home",
        "Oak House",
        "--reason",
        "prevent-offence",
        "--note",
        "Police advised: no contact tonight",
    ]);
    assert_eq!(r["lockdown"]["target"], "home");
    // Issue 15: proto3 canonical JSON — enums by name beside the deprecated words, 64-bit
    // integers as strings.
    assert_eq!(r["lockdown"]["target_kind"], "LOCKDOWN_TARGET_HOME", "{r}");
    assert_eq!(
        r["lockdown"]["protective_reason"], "RESTRICTION_REASON_PREVENT_OFFENCE",
        "{r}"
    );
    assert!(r["lockdown"]["started_at_unix_ms"].is_string(), "{r}");
    let started_ms = r["lockdown"]["started_at_unix_ms"].int().unwrap();
    // …and the same instant as a `Timestamp`, in RFC 3339; an unset time is null.
    let started: jiff::Timestamp = r["lockdown"]["started_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(started.as_millisecond(), started_ms, "{r}");
    assert!(r["lockdown"]["lifted_at"].is_null(), "{r}");
    let id = r["lockdown"]["id"].as_str().unwrap().to_string();
    home.controller.restart();
    let list = staff.json(&["lockdowns"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(staff.json(&["obligations"]).as_array().unwrap().len(), 4);
    tablet.start();
    let first = first_controller_policy(&tablet);
    assert!(first.contains(FULL), "{first}");
}

// clauses RM3, RM4, GD4: bad input is refused in one plain line and nothing is written.
#[test]
fn rm3_rm4_gd4_bad_input_is_refused_in_one_line() {
    let home = Home::new();
    let staff = carer(&home);
    let args = |child: &'static str, reason: &'static str, until: &'static str| {
        vec![
            "lockdown", child, "--reason", reason, "--note", "x", "--until", until,
        ]
    };
    let e = staff.fails(&args("Nobody Here", "injury-to-child", "in 1h"));
    assert!(e.contains("no child called"), "{e}");
    let e = staff.fails(&args("Amira", "punishment", "in 1h"));
    assert!(e.contains("never a punishment"), "{e}");
    let e = staff.fails(&args("Amira", "injury-to-child", "2020-01-01T00:00:00Z"));
    assert!(e.contains("not in the future"), "{e}");
    let e = staff.fails(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        "x",
        "--channels",
        "telepathy",
    ]);
    assert!(e.contains("telepathy"), "{e}");
    let e = staff.fails(&[
        "lockdown",
        "Amira",
        "--reason",
        "injury-to-child",
        "--note",
        " ",
    ]);
    assert!(e.contains("--note"), "{e}");
    let e = staff.fails(&["lift", "lck-nothing", "--note", "x"]);
    assert!(e.contains("no lockdown"), "{e}");
    let e = staff.fails(&["notified", "obl-nothing", "--by", "x", "--how", "phone"]);
    assert!(e.contains("no obligation"), "{e}");
    // An administrator runs the system; emergency action is for the staff caring for the child.
    let e = home.admin.fails(&args("Amira", "injury-to-child", "in 1h"));
    assert!(e.contains("take emergency action"), "{e}");
    assert_eq!(
        staff
            .json(&["lockdowns", "--all"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        staff
            .json(&["obligations", "--all"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

// clause S1, RM3, RM5, KP1: an emergency restriction of visits is recorded with the same
// protective reasons, sanction record, obligations and end time as a lockdown, though no
// device is involved.
#[test]
fn s1_rm3_an_emergency_restriction_of_visits_is_recorded_like_a_lockdown() {
    let home = Home::new();
    let staff = carer(&home);
    let err = staff.fails(&[
        "restrict",
        "Amira",
        "--channel",
        "visits",
        "--reason",
        "punishment",
        "--note",
        "x",
        "--until",
        "in 2h",
    ]);
    assert!(err.contains("never a punishment"), "{err}");
    let r = staff.json(&[
        "restrict",
        "Amira",
        "--channel",
        "visits",
        "--reason",
        "injury-to-child",
        "--note",
        "Dad arrived drunk and threatened to take her",
        "--until",
        "in 2h",
    ]);
    assert_eq!(r["lockdown"]["channels"], serde_json::json!(["visits"]));
    assert_eq!(
        r["lockdown"]["withdrawn"],
        serde_json::json!(["COMMUNICATION_CHANNEL_VISITS"])
    );
    assert_eq!(r["devices"].as_array().map_or(0, |d| d.len()), 0, "{r}");
    let sanctions = r["sanctions"].as_array().unwrap();
    assert_eq!(sanctions.len(), 1, "{r}");
    assert!(
        sanctions[0]["measure"]
            .as_str()
            .unwrap()
            .contains("visits withdrawn, no device involved"),
        "{r}"
    );
    assert_eq!(r["obligations"].as_array().unwrap().len(), 4, "{r}");
    let listed = staff.ok(&["lockdowns"]);
    assert!(listed.contains("visits"), "{listed}");
}

// clause KP1, GD4: a lockdown past its review time is flagged in `haven lockdowns`, listed in
// `haven reviews --due` and in `haven obligations --overdue` until it is lifted.
#[test]
fn kp1_gd4_a_lockdown_past_its_review_time_is_flagged_everywhere() {
    let home = Home::new();
    let staff = carer(&home);
    let review = jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond() + 2_000)
        .unwrap()
        .to_string();
    let r = staff.json(&[
        "lockdown",
        "Amira",
        "--reason",
        "prevent-offence",
        "--note",
        "Buying a knife online",
        "--channels",
        "web",
        "--review",
        &review,
    ]);
    let id = r["lockdown"]["id"].as_str().unwrap().to_string();
    let listed = eventually("the review to fall due", WAIT, || {
        let t = staff.ok(&["lockdowns"]);
        t.contains("REVIEW OVERDUE").then_some(t)
    });
    assert!(listed.contains(&id), "{listed}");
    let reviews = home.manager.json(&["reviews", "--due"]);
    assert!(
        reviews
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["overdue"] == true && r["what"].as_str().unwrap().contains(&id)),
        "{reviews}"
    );
    let overdue = staff.json(&["obligations", "--overdue"]);
    assert!(
        overdue
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "review-lockdown" && o["lockdown_id"] == id.as_str()),
        "{overdue}"
    );
    staff.ok(&["lift", &id, "--note", "Reviewed: no longer needed"]);
    let overdue = staff.json(&["obligations", "--overdue"]);
    assert!(
        !overdue
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "review-lockdown"),
        "{overdue}"
    );
}

// clauses RM3, D6, D8: a push is only an optimisation of the reconnect rule. A device whose
// stream is cut and comes back while a lockdown and the changes after it are being fanned out
// (to it and to the devices around it) still ends on the newest policy, like every other
// device, and the newest policy it applies is the newest there is (issue 14).
#[test]
fn rm3_d6_a_device_that_reconnects_mid_fan_out_ends_on_the_newest_policy() {
    let home = Home::new();
    let staff = carer(&home);
    let mut agents: Vec<Agent> = ["tablet", "phone", "laptop"]
        .into_iter()
        .map(|name| home.enrolled_agent(name))
        .collect();
    for agent in &mut agents {
        agent.start();
    }
    online(&home, 3);

    // The lockdown is fanned out while the phone's stream is cut and opened again.
    let mut lockdown = staff.spawn(&[
        "lockdown",
        "--home",
        "Oak House",
        "--reason",
        "injury-to-child",
        "--note",
        "Threatening messages at 01:50",
        "--json",
    ]);
    agents[1].kill();
    agents[1].start();
    eventually("the lockdown command to finish", WAIT, || {
        (!lockdown.is_running()).then_some(())
    });
    let id = eventually("the lockdown to be listed", WAIT, || {
        staff.json(&["lockdowns"])[0]["id"]
            .as_str()
            .map(str::to_string)
    });

    // Then more changes in quick succession, the phone dropping out again in between: the lift
    // and a new protected contact race the phone's Hello.
    agents[1].kill();
    let lifted = staff.json(&["lift", &id, "--note", "Calm again"]);
    assert!(lifted["lifted_policy_version"].uint().unwrap() > 0);
    agents[1].start();
    let newest = home.change_policy("Childline", "0800 1111");

    for agent in &agents {
        assert!(
            agent.wait_applied(newest, WAIT),
            "a device never reached version {newest}:\n{}",
            agent.stdout.text()
        );
    }
    eventually(
        "every device to be online on the newest policy",
        WAIT,
        || {
            let devices = home.devices();
            devices
                .iter()
                .all(|d| {
                    d["online"] == true
                        && d["applied_policy_version"].uint() == Some(newest)
                        && d["desired_policy_version"].uint() == Some(newest)
                })
                .then_some(())
        },
    );
    // Nothing newer was ever applied, and the lockdown is not in force on the phone.
    let last = agents[1]
        .stdout
        .wait_for(&applied_line(newest), WAIT)
        .unwrap();
    assert!(!last.contains("lockdown"), "{last}");
}
