//! Placement plans end to end: a risk assessment, a manager's revision, the device enforcing
//! it, and the rules that make the policy impossible to break.

use haven_tests::*;

struct PlanHome {
    home: Home,
    staff: Cli,
    ra: String,
}

/// The templates carry example dates; move them relative to today so these tests keep
/// meaning the same thing next year (a review date in the past is refused, rightly).
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
    std::fs::write(&path, dated(text)).unwrap();
    path.to_string_lossy().into_owned()
}

fn plan_home() -> PlanHome {
    let home = Home::new();
    let staff = home.care_staff("Jo Carer");
    let template = staff.ok(&["risk", "template"]);
    let file = write(&home, "ra.toml", &template);
    let ra = staff.json(&["risk", "add", "Amira", "--file", &file])["id"]
        .as_str()
        .unwrap()
        .to_string();
    PlanHome { home, staff, ra }
}

fn plan_text(p: &PlanHome, edit: impl Fn(String) -> String) -> String {
    let template = p.home.manager.ok(&["plan", "template"]);
    edit(template.replace("ra-REPLACE-ME", &p.ra))
}

fn revisions(p: &PlanHome) -> usize {
    p.home
        .admin
        .json(&["plan", "history", "Amira"])
        .as_array()
        .unwrap()
        .len()
}

// clause D1, D3 (controller side), RM1
#[test]
fn rm1_a_managers_revision_reaches_the_childs_device_and_is_kept_in_writing() {
    let p = plan_home();
    let mut agent = p.home.enrolled_agent("tablet");
    agent.start();
    let file = write(&p.home, "plan.toml", &plan_text(&p, |t| t));
    let r = p
        .home
        .manager
        .json(&["plan", "revise", "Amira", "--file", &file]);
    assert_eq!(r["number"].uint(), Some(1));
    let version = r["policy_version"].uint().unwrap();
    assert!(agent.wait_applied(version, WAIT), "{}", agent.stdout.text());
    agent.stop();
    let status = agent.command(&["status"]);
    assert!(
        status.stdout.contains("Nan"),
        "the child can read who they may call: {}",
        status.stdout
    );

    // The written record: who, when, why, consulted, shared with (RM1).
    let printed = p.home.admin.ok(&["plan", "print", "Amira"]);
    for expected in [
        "Revision 1",
        "Nan asked",
        "J. Okafor",
        "Shared with: the child",
        "Nan (grandmother)",
    ] {
        assert!(
            printed.contains(expected),
            "missing {expected:?} in:\n{printed}"
        );
    }
    let html = p
        .home
        .admin
        .ok(&["plan", "print", "Amira", "--format", "html"]);
    assert!(html.starts_with("<!doctype html>") && html.contains("Revision 1"));
}

// clause KP2
#[test]
fn kp2_a_permission_without_a_risk_assessment_is_refused_and_nothing_is_written() {
    let p = plan_home();
    let text = plan_text(&p, |t| t.replacen(&p.ra, "ra-doesnotexist", 1));
    let file = write(&p.home, "plan.toml", &text);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(err.contains("risk assessment"), "{err}");
    assert_eq!(revisions(&p), 0);
}

// clause RM2
#[test]
fn rm2_only_a_manager_may_revise_the_plan() {
    let p = plan_home();
    let file = write(&p.home, "plan.toml", &plan_text(&p, |t| t));
    let err = p.staff.fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(err.contains("manager"), "{err}");
    let err = p
        .home
        .admin
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(err.contains("manager"), "{err}");
    assert_eq!(revisions(&p), 0);
}

// clause IM1
#[test]
fn im1_the_camera_stays_off_without_both_agreements() {
    let p = plan_home();
    let text = plan_text(&p, |t| {
        t.replace(
            "[section.camera]\nstate = \"off\"",
            &format!(
                "[section.camera]\nstate = \"on\"\nreview_by = \"2027-03-01\"\nrisk_assessment = \"{}\"\nplacing_authority_agreement = {{ who = \"J. Okafor\", when = \"2026-11-20\" }}",
                p.ra
            ),
        )
    });
    let file = write(&p.home, "plan.toml", &text);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(err.contains("parent"), "{err}");
    assert_eq!(revisions(&p), 0);
}

// clause WB2
#[test]
fn wb2_a_social_site_needs_an_it_specialist_in_the_risk_assessment() {
    let p = plan_home();
    let text = plan_text(&p, |t| {
        t.replace(
            "[section.web]\nstate = \"off\"",
            &format!(
                "[section.web]\nstate = \"filtered\"\nfilter_profile = \"strict\"\nrisk_assessment = \"{ra}\"\nsocial_sites = [{{ domain = \"instagram.com\", risk_assessment = \"{ra}\", review_by = \"2027-03-01\" }}]",
                ra = p.ra
            ),
        )
    });
    let file = write(&p.home, "plan.toml", &text);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(err.to_lowercase().contains("it specialist"), "{err}");
    assert_eq!(revisions(&p), 0);
}

// clause R19
#[test]
fn r19_no_rule_may_block_the_way_to_a_protected_contact() {
    let p = plan_home();
    p.home.manager.ok(&[
        "protected-contact",
        "add",
        "--home",
        "Oak House",
        "--name",
        "Childline",
        "--number",
        "0800 1111",
    ]);
    let text = plan_text(&p, |t| {
        t.replace("blocked = []", "blocked = [\"com.android.dialer\"]")
    });
    let file = write(&p.home, "plan.toml", &text);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(err.contains("com.android.dialer"), "{err}");
    assert_eq!(revisions(&p), 0);
}

// clause RM2: a change is a new revision; history and diff show what changed.
#[test]
fn rm2_revisions_are_kept_and_diffed() {
    let p = plan_home();
    let first = write(&p.home, "plan1.toml", &plan_text(&p, |t| t));
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &first]);
    let second = write(
        &p.home,
        "plan2.toml",
        &plan_text(&p, |t| {
            t.replace(
                "reason = \"Nan asked",
                "reason = \"Later calls agreed; Nan asked",
            )
            .replace("end_minute = 1200", "end_minute = 1260")
        }),
    );
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &second]);
    assert_eq!(revisions(&p), 2);
    let diff = p.home.admin.ok(&["plan", "diff", "Amira", "1", "2"]);
    assert!(diff.contains("Nan"), "{diff}");
    let history = p.home.admin.ok(&["plan", "history", "Amira"]);
    assert!(history.contains("Later calls agreed"), "{history}");
    // Someone working from revision 1 cannot overwrite revision 2.
    let err = p.home.manager.fails(&[
        "plan",
        "revise",
        "Amira",
        "--file",
        &second,
        "--based-on",
        "1",
    ]);
    assert!(err.contains("changed while you were working"), "{err}");
}

// clause GD1, GD2
#[test]
fn gd2_a_risk_assessment_must_answer_every_question() {
    let p = plan_home();
    let template = p.staff.ok(&["risk", "template"]);
    let cut = template
        .split("[checklist.child_may_harm_others]")
        .next()
        .unwrap()
        .to_string();
    let file = write(&p.home, "ra2.toml", &cut);
    let err = p.staff.fails(&["risk", "add", "Amira", "--file", &file]);
    assert!(
        err.to_lowercase().contains("crime") || err.contains("bully"),
        "{err}"
    );
    let no_background = template.replace(
        "background = \"Amira has lived with her Nan until last year; a close, warm relationship.\"",
        "background = \"\"",
    );
    let file = write(&p.home, "ra3.toml", &no_background);
    let err = p.staff.fails(&["risk", "add", "Amira", "--file", &file]);
    assert!(err.contains("background"), "{err}");
    assert_eq!(
        p.home
            .admin
            .json(&["risk", "list", "Amira"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

// clause KP1, IM3, WB2 (remind): what is due for review is listed across the home.
#[test]
fn kp1_reviews_due_are_listed_for_the_home() {
    let p = plan_home();
    let file = write(&p.home, "plan.toml", &plan_text(&p, |t| t));
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &file]);
    let soon = p.home.admin.json(&["reviews", "--due", "--within", "7"]);
    assert_eq!(soon.as_array().unwrap().len(), 0, "{soon}");
    let later = p
        .home
        .admin
        .json(&["reviews", "--due", "--within", "100", "--home", "Oak House"]);
    let rows = later.as_array().unwrap();
    assert!(!rows.is_empty(), "{later}");
    assert!(
        rows.iter()
            .all(|r| r["child_name"] == "Amira Khan" && r["overdue"] == false)
    );
    let table = p.home.admin.ok(&["reviews"]);
    assert!(table.contains("Amira Khan"), "{table}");
    // Staff can see how long each restriction has been in force, and why.
    let shown = p.home.admin.ok(&["plan", "show", "Amira"]);
    assert!(shown.contains("Restrictions in force"), "{shown}");
    assert!(
        shown.contains("the camera is off: in force for less than a day (since revision 1"),
        "{shown}"
    );
    let printed = p.home.admin.ok(&["plan", "print", "Amira"]);
    assert!(printed.contains("Restrictions in force"), "{printed}");
}

// clause R19: a child's own social worker is protected for that child, stored in E.164, and
// reaches the child's device.
#[test]
fn r19_a_childs_own_social_worker_is_a_protected_contact_on_their_device() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let added = home.manager.json(&[
        "protected-contact",
        "add",
        "--child",
        "Amira",
        "--name",
        "Amira's social worker",
        "--number",
        "07700 900 001",
    ]);
    assert_eq!(added["address"], "+447700900001");
    assert_eq!(added["child_name"], "Amira Khan");
    let listed = home
        .manager
        .json(&["protected-contact", "list", "--child", "Amira"]);
    // Her own social worker, after the contacts built into Haven (999, Childline, …).
    let own: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["built_in"] != true)
        .collect();
    assert_eq!(own.len(), 1, "{listed}");
    let version = home.devices()[0]["desired_policy_version"].uint().unwrap();
    assert!(
        agent
            .stdout
            .wait_for(&applied_line(version), WAIT)
            // The five built-in organisations and her social worker.
            .is_some_and(|line| line.contains("6 protected contacts")),
        "{}",
        agent.stdout.text()
    );
    // A number that is not a phone number is refused with the reason, and nothing is written.
    let err = home.manager.fails(&[
        "protected-contact",
        "add",
        "--child",
        "Amira",
        "--name",
        "Advocate",
        "--number",
        "ring me",
    ]);
    assert!(err.contains("ring me"), "{err}");
    let listed = home
        .manager
        .json(&["protected-contact", "list", "--child", "Amira"]);
    let own = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["built_in"] != true)
        .count();
    assert_eq!(own, 1, "nothing half-written: {listed}");
}

fn camera_on_text(p: &PlanHome) -> String {
    plan_text(p, |t| {
        t.replace(
            "[section.camera]\nstate = \"off\"",
            &format!(
                "[section.camera]\nstate = \"on\"\nreview_by = \"2027-03-01\"\nrisk_assessment = \"{}\"\nplacing_authority_agreement = {{ who = \"J. Okafor\", when = \"2026-11-20\" }}\nparent_consultation = {{ who = \"Mum\", when = \"2026-11-20\" }}",
                p.ra
            ),
        )
    })
}

// clause IM2: a camera incident puts the arrangement into "review required", and withdrawal
// is one command that reaches the device at once.
#[test]
fn im2_a_camera_incident_requires_a_review_and_withdrawal_is_one_command() {
    let p = plan_home();
    let mut agent = p.home.enrolled_agent("tablet");
    agent.start();
    let file = write(&p.home, "plan.toml", &camera_on_text(&p));
    let r = p
        .home
        .manager
        .json(&["plan", "revise", "Amira", "--file", &file]);
    let version = r["policy_version"].uint().unwrap();
    let line = agent.stdout.wait_for(&applied_line(version), WAIT);
    assert!(
        line.as_deref().is_some_and(|l| l.contains("camera on")),
        "{}",
        agent.stdout.text()
    );

    // Any member of staff records what happened.
    let incident = p.staff.json(&[
        "camera",
        "incident",
        "Amira",
        "--what",
        "photos of another child shared in a group chat",
        "--images-may-reach-others",
    ]);
    assert_eq!(incident["review_required"], true);
    let reviews = p.home.manager.ok(&["reviews", "--due"]);
    assert!(reviews.contains("review required now"), "{reviews}");

    // Withdrawing restricts, so only a manager may do it (RM2).
    let err = p
        .staff
        .fails(&["camera", "withdraw", "Amira", "--reason", "images shared"]);
    assert!(err.contains("only a manager"), "{err}");
    let withdrawn = p.home.manager.json(&[
        "camera",
        "withdraw",
        "Amira",
        "--reason",
        "images were shared and the risk cannot be reduced",
    ]);
    assert_eq!(withdrawn["number"].uint(), Some(2));
    // clause IM2, RM4: made without consultation, so the social worker is owed a notice, and
    // the record does not claim it was shared with them.
    let owed = p.home.manager.json(&["obligations"]);
    assert!(
        owed.as_array()
            .unwrap()
            .iter()
            .any(|o| o["kind"] == "notify-social-worker" && o["plan_revision"].uint() == Some(2)),
        "{owed}"
    );
    let history = p.home.admin.json(&["plan", "history", "Amira"]);
    assert_eq!(
        history[1]["plan"]["shared_with"]["social_worker"], false,
        "{history}"
    );
    let version = withdrawn["policy_version"].uint().unwrap();
    let line = agent.stdout.wait_for(&applied_line(version), WAIT);
    assert!(
        line.as_deref().is_some_and(|l| l.contains("camera off")),
        "{}",
        agent.stdout.text()
    );
    // The revision is the review: nothing is left "review required".
    let reviews = p.home.manager.ok(&["reviews", "--due"]);
    assert!(!reviews.contains("review required now"), "{reviews}");
    let history = p.home.admin.ok(&["plan", "history", "Amira"]);
    assert!(
        history.contains("Camera withdrawn after an incident"),
        "{history}"
    );
    // Withdrawing twice is refused with the reason.
    let err = p
        .home
        .manager
        .fails(&["camera", "withdraw", "Amira", "--reason", "again"]);
    assert!(err.contains("already off"), "{err}");
}

/// The template's first plan, then the same plan with Nan's calls withdrawn for `reason`,
/// with `grounds` (extra lines) added.
fn restricting_text(p: &PlanHome, reason: &str, grounds: &str) -> String {
    plan_text(p, |t| {
        t.replace(
            "reason = \"Nan asked to phone Amira after school; risk assessed and agreed.\"",
            &format!("reason = \"{reason}\"\n{grounds}"),
        )
        .replace(
            "  { channel = \"call\", address = \"07700 900123\" },\n",
            "",
        )
    })
}

// clause RM3, R19: a planned restriction is protective, never a punishment.
#[test]
fn rm3_r19_a_planned_restriction_needs_a_protective_reason_not_behaviour_management() {
    let p = plan_home();
    let first = write(&p.home, "plan1.toml", &plan_text(&p, |t| t));
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &first]);
    let punitive = write(
        &p.home,
        "plan2.toml",
        &restricting_text(&p, "Consequence for her behaviour at school", ""),
    );
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &punitive]);
    assert!(err.contains("never a punishment"), "{err}");
    let unexplained = write(
        &p.home,
        "plan3.toml",
        &restricting_text(&p, "Calls with Nan stop for now", ""),
    );
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &unexplained]);
    assert!(err.contains("protective_reason"), "{err}");
    assert_eq!(revisions(&p), 1);
    let protective = write(
        &p.home,
        "plan4.toml",
        &restricting_text(
            &p,
            "Calls with Nan stop while the police look into threats",
            "protective_reason = \"injury-to-child\"\nevidence = \"A caller on Nan's line threatened Amira on Monday.\"",
        ),
    );
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &protective]);
    assert_eq!(revisions(&p), 2);
    // clause KP1: the withdrawn way of reaching Nan is a restriction in force, with its review.
    let printed = p.home.admin.ok(&["plan", "print", "Amira"]);
    assert!(
        printed.contains("contact with Nan (grandmother) by phone (+447700900123) withdrawn"),
        "{printed}"
    );
}

// clause RM5, RM4: a plan revision that reduces telephone access opens the same sanction
// record, deadlines and notification of the social worker as a lockdown.
#[test]
fn rm5_a_revision_reducing_telephone_access_opens_a_sanction_and_its_obligations() {
    let p = plan_home();
    let first = write(&p.home, "plan1.toml", &plan_text(&p, |t| t));
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &first]);
    assert_eq!(
        p.home
            .manager
            .json(&["sanctions"])
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let second = write(
        &p.home,
        "plan2.toml",
        &restricting_text(
            &p,
            "Calls with Nan stop while the police look into threats",
            "protective_reason = \"injury-to-child\"\nevidence = \"A caller on Nan's line threatened Amira on Monday.\"",
        ),
    );
    let r = p
        .home
        .manager
        .json(&["plan", "revise", "Amira", "--file", &second]);
    assert_eq!(r["sanction_ids"].as_array().unwrap().len(), 1, "{r}");
    let sanctions = p.home.manager.json(&["sanctions"]);
    let s = &sanctions.as_array().unwrap()[0];
    assert_eq!(s["plan_revision"].uint(), Some(2));
    assert!(
        s["measure"]
            .as_str()
            .unwrap()
            .contains("phone calls with Nan (grandmother)"),
        "{s}"
    );
    let owed = p.home.manager.json(&["obligations"]);
    let kinds: Vec<&str> = owed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "notify-social-worker",
        "complete-sanction-record",
        "manager-sign-off",
        "discuss-with-child",
    ] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
}

// clause GD3: a contact whose own assessment says they pose a risk is approved only with a
// manager's decision made with the social worker's agreement.
#[test]
fn gd3_a_risky_contact_is_refused_without_a_managers_decision_with_the_social_worker() {
    let p = plan_home();
    let template = p.staff.ok(&["risk", "template"]);
    let risky = template.replace(
        "[checklist.contact_poses_risk]\nanswer = \"no\"",
        "[checklist.contact_poses_risk]\nanswer = \"yes\"\nnotes = \"Past threats to Amira's mother.\"",
    );
    assert_ne!(risky, template);
    let file = write(&p.home, "ra-risky.toml", &risky);
    let ra = p.staff.json(&["risk", "add", "Amira", "--file", &file])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let text = plan_text(&p, |t| t).replacen(&p.ra, &ra, 1);
    let file = write(&p.home, "plan.toml", &text);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(
        err.contains("poses a risk") && err.contains("social_worker_agreed"),
        "{err}"
    );
    assert_eq!(revisions(&p), 0);
    let decided = text.replace(
        "[consultation.social_worker]",
        "[[risk_decisions]]\ncontact = \"Nan\"\ndecided_by = \"R. Patel\"\nsocial_worker_agreed = \"J. Okafor, 2026-11-20\"\ndecision = \"Calls on speaker in the lounge only\"\n\n[consultation.social_worker]",
    );
    let file = write(&p.home, "plan2.toml", &decided);
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &file]);
    assert_eq!(revisions(&p), 1);
}

// clause KP1: a restriction's review date is carried forward; dropping it while the
// restriction stands is refused.
#[test]
fn kp1_a_revision_that_drops_a_standing_restrictions_review_date_is_refused() {
    let p = plan_home();
    let first = write(&p.home, "plan1.toml", &plan_text(&p, |t| t));
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &first]);
    let grounds = "protective_reason = \"injury-to-child\"\nevidence = \"A caller on Nan's line threatened Amira on Monday.\"";
    let restricting = restricting_text(&p, "Calls with Nan stop for now", grounds);
    let second = write(&p.home, "plan2.toml", &restricting);
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &second]);
    let dropped = restricting
        .replace("review_by = \"2027-02-01\"", "")
        .replace("Calls with Nan stop for now", "Letters agreed");
    let third = write(&p.home, "plan3.toml", &dropped);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &third]);
    assert!(err.contains("carry it forward"), "{err}");
    assert_eq!(revisions(&p), 2);
}

// clause R7: a revision that changes the child's arrangements records their views, or why
// they could not be sought; blank is refused.
#[test]
fn r7_a_revision_without_the_childs_views_or_a_reason_is_refused() {
    let p = plan_home();
    let silent = plan_text(&p, |t| {
        t.replace(
            "child_views = \"Amira said she would like to talk to Nan every day.\"",
            "child_views = \"\"",
        )
    });
    let file = write(&p.home, "plan.toml", &silent);
    let err = p
        .home
        .manager
        .fails(&["plan", "revise", "Amira", "--file", &file]);
    assert!(
        err.contains("child_views") && err.contains("urgency"),
        "{err}"
    );
    assert_eq!(revisions(&p), 0);
    let why = silent.replace(
        "child_views = \"\"",
        "child_views = \"\"\nviews_not_sought = \"capacity: Amira was too unwell to talk about it this week\"",
    );
    let file = write(&p.home, "plan2.toml", &why);
    p.home
        .manager
        .ok(&["plan", "revise", "Amira", "--file", &file]);
    assert_eq!(revisions(&p), 1);
}
