//! The web filter's category lists end to end (WB1, WB4): an administrator imports small
//! lists through the real CLI, the controller compiles them and sends them over the devices'
//! `Sync` streams, and a real agent's filtering resolver (on a loopback port) refuses the
//! names in them; a home's own exception opens a site for that home's devices only.
//!
//! The tests build their own lists; the real UT1 lists are never needed.

use std::net::SocketAddr;
use std::path::Path;

use haven_tests::*;
use hickory_proto::op::ResponseCode;

use super::web::{ask, stand_in_upstream};

/// Waits until `name` gets `code` from the filter at `dns`.
fn until(dns: SocketAddr, name: &str, code: ResponseCode) {
    eventually(&format!("{name} answered {code:?}"), WAIT, || {
        ask(dns, name).filter(|r| r.metadata.response_code == code)
    });
}

fn write_list(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A member of care staff at `home`.
fn carer(admin: &Cli, home: &str, name: &str) -> Cli {
    let token = admin.json(&[
        "staff", "add", "--name", name, "--role", "staff", "--home", home,
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    admin.as_token(&token)
}

/// Revises `child`'s plan so the web is on through the "filtered" profile; returns the
/// policy version.
fn filtered_plan(dir: &Path, manager: &Cli, staff: &Cli, child: &str) -> u64 {
    let today = jiff::Zoned::now().date();
    let shift = |days: i64| {
        today
            .checked_add(jiff::Span::new().days(days))
            .unwrap()
            .to_string()
    };
    let dated = |t: &str| {
        t.replace("2026-11-20", &shift(-5))
            .replace("2027-02-01", &shift(60))
            .replace("2027-03-01", &shift(90))
    };
    let ra_file = dir.join(format!("ra-{child}.toml"));
    std::fs::write(&ra_file, dated(&staff.ok(&["risk", "template"]))).unwrap();
    let ra = staff.json(&["risk", "add", child, "--file", ra_file.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let template = manager.ok(&["plan", "template"]);
    let text = dated(&template.replace("ra-REPLACE-ME", &ra)).replace(
        "[section.web]\nstate = \"off\"",
        &format!(
            "[section.web]\nstate = \"filtered\"\nfilter_profile = \"filtered\"\nrisk_assessment = \"{ra}\""
        ),
    );
    let plan_file = dir.join(format!("plan-{child}.toml"));
    std::fs::write(&plan_file, text).unwrap();
    manager.json(&[
        "plan",
        "revise",
        child,
        "--file",
        plan_file.to_str().unwrap(),
    ])["policy_version"]
        .uint()
        .unwrap()
}

// clause WB1, WB4: lists imported on the controller reach the device and block there (also
// one imported while it is connected); a home's allow exception opens a site for that home's
// devices only, never a DNS-over-HTTPS service; removing it blocks the site again; staff see
// the categories without a list.
#[test]
fn wb1_wb4_imported_lists_block_on_the_device_and_a_homes_exception_opens_a_site_there_only() {
    let test =
        "wb1_wb4_imported_lists_block_on_the_device_and_a_homes_exception_opens_a_site_there_only";
    // `--enforcer linux` also guards the camera with fanotify, which needs root.
    if skip_unless_root(test) {
        return;
    }
    let mut home = Home::new();
    let lists = home.path("lists");
    std::fs::create_dir_all(lists.join("ut1/gambling")).unwrap();
    // The UT1 layout: <category>/domains.
    write_list(
        &lists.join("ut1/gambling"),
        "domains",
        "bets.example\ncasino.example\nfun-games.example\n",
    );
    let imported = home.admin.ok(&[
        "filter",
        "import",
        "--category",
        "gambling",
        lists.join("ut1").to_str().unwrap(),
        "--source",
        "test list",
        "--licence",
        "CC0",
    ]);
    assert!(
        imported.contains("Imported gambling version 1: 3 domains"),
        "{imported}"
    );
    let listed = home.admin.json(&["filter", "list"]);
    assert_eq!(listed[0]["category"], "gambling");
    assert_eq!(listed[0]["domains"].uint(), Some(3));
    assert_eq!(listed[0]["source"], "test list");
    assert_eq!(listed[0]["licence"], "CC0");
    assert!(listed[0]["imported_at_unix_ms"].int().unwrap() > 0);

    // A second home, with its own child, manager and device.
    home.admin.ok(&["home", "add", "Elm House"]);
    let ben = home.admin.json(&[
        "child",
        "add",
        "--home",
        "Elm House",
        "--name",
        "Ben Jones",
        "--dob",
        "2011-02-03",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let elm_manager = {
        let token = home.admin.json(&[
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
        home.admin.as_token(&token)
    };
    let oak_carer = carer(&home.admin, "Oak House", "Jo Carer");
    let elm_carer = carer(&home.admin, "Elm House", "Sam Carer");
    let v_oak = filtered_plan(home.dir.path(), &home.manager, &oak_carer, "Amira");
    let v_elm = filtered_plan(home.dir.path(), &elm_manager, &elm_carer, "Ben Jones");

    let upstream = stand_in_upstream();
    let oak_dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let elm_dns: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut oak = home.enrolled_agent("oak-tablet");
    let mut elm = Agent::new(&home.path("elm-tablet"));
    let code = home.admin.json(&["device", "enroll", &ben])["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(elm.enroll(&home.controller, &code).ok);
    oak.start_linux(&[
        "--dns-listen",
        &oak_dns.to_string(),
        "--dns-upstream",
        &upstream.to_string(),
    ]);
    elm.start_linux(&[
        "--dns-listen",
        &elm_dns.to_string(),
        "--dns-upstream",
        &upstream.to_string(),
    ]);
    // Each device enforces its child's filtered plan (or a newer version of it).
    for (agent, v) in [(&oak, v_oak), (&elm, v_elm)] {
        assert!(
            agent
                .stdout
                .wait_for("web on (filter: filtered)", WAIT)
                .is_some(),
            "version {v} not applied:\n{}",
            agent.stdout.text()
        );
    }

    // The list arrived over Sync: its names (and their subdomains) are refused, the rest
    // resolves, on both homes' devices.
    for dns in [oak_dns, elm_dns] {
        until(dns, "www.bets.example.", ResponseCode::NXDomain);
        until(dns, "fun-games.example.", ResponseCode::NXDomain);
        until(dns, "www.bbc.co.uk.", ResponseCode::NoError);
    }
    oak.stderr
        .wait_for("installed 3 names for gambling (version 1", WAIT)
        .expect("the agent says it installed the list");

    // Oak House allows one site: it opens on Oak's device only.
    let allowed = home.manager.ok(&[
        "filter",
        "allow",
        "--home",
        "Oak House",
        "https://Fun-Games.example/",
    ]);
    assert!(allowed.contains("fun-games.example now opens"), "{allowed}");
    until(oak_dns, "fun-games.example.", ResponseCode::NoError);
    until(oak_dns, "www.fun-games.example.", ResponseCode::NoError);
    until(elm_dns, "fun-games.example.", ResponseCode::NXDomain);
    until(oak_dns, "bets.example.", ResponseCode::NXDomain);
    // An allow never opens a way round the filter (DoH is checked first).
    home.manager
        .ok(&["filter", "allow", "--home", "Oak House", "dns.google"]);
    let exceptions = home
        .manager
        .json(&["filter", "exceptions", "--home", "Oak House"]);
    assert_eq!(exceptions.as_array().unwrap().len(), 2, "{exceptions}");
    until(oak_dns, "dns.google.", ResponseCode::NXDomain);
    // Elm's manager cannot touch Oak's exceptions.
    let refused = elm_manager.fails(&["filter", "deny", "--home", "Oak House", "x.example"]);
    assert!(refused.contains("no home called"), "{refused}");

    // Removed: blocked again.
    home.manager.ok(&[
        "filter",
        "remove",
        "--home",
        "Oak House",
        "fun-games.example",
    ]);
    until(oak_dns, "fun-games.example.", ResponseCode::NXDomain);

    // Staff see what the profile blocks and what has no list.
    let shown = home.manager.ok(&["plan", "show", "Amira"]);
    let note = shown
        .lines()
        .find(|l| l.contains("web filtered, but no list installed for:"))
        .unwrap_or_else(|| panic!("no note in:\n{shown}"));
    assert!(
        note.contains("adult") && note.contains("self-harm"),
        "{note}"
    );
    assert!(!note.contains("gambling"), "{note}");
    let device_id = home.devices()[0]["id"].as_str().unwrap().to_string();
    let device = home.admin.ok(&["device", "show", &device_id]);
    assert!(
        device.contains("web filtered, but no list installed for: adult"),
        "{device}"
    );

    // A list imported while the devices are connected reaches them at once; the note shrinks.
    let adult = write_list(&lists, "adult.txt", "0.0.0.0 adult.example\n");
    home.admin
        .ok(&["filter", "import", "--category", "mixed_adult", &adult]);
    until(oak_dns, "www.adult.example.", ResponseCode::NXDomain);
    until(elm_dns, "adult.example.", ResponseCode::NXDomain);
    let shown = home.manager.ok(&["plan", "show", "Amira"]);
    assert!(
        shown.contains("web filtered, but no list installed for: drugs, hacking"),
        "{shown}"
    );

    // Names that resolved are never logged or reported.
    let all = format!("{}\n{}", oak.stdout.text(), oak.stderr.text());
    assert!(!all.contains("bbc"), "browsing history leaked:\n{all}");

    // Offline and after a restart, the device keeps enforcing the lists it was sent.
    home.controller.stop();
    oak.stop();
    oak.start_linux(&[
        "--dns-listen",
        &oak_dns.to_string(),
        "--dns-upstream",
        &upstream.to_string(),
    ]);
    until(oak_dns, "www.bets.example.", ResponseCode::NXDomain);
    until(oak_dns, "adult.example.", ResponseCode::NXDomain);
    until(oak_dns, "www.bbc.co.uk.", ResponseCode::NoError);
    oak.stop();
    elm.stop();
}

// clause WB4: bad imports and exceptions get a clear error and write nothing; only an
// administrator imports (a list affects every home), only the home's manager sets
// exceptions.
#[test]
fn wb4_bad_imports_and_exceptions_are_refused_clearly_and_write_nothing() {
    let home = Home::new();
    let dir = home.path("lists");
    std::fs::create_dir_all(&dir).unwrap();
    let empty = write_list(
        &dir,
        "empty.txt",
        "# nothing here\n\n127.0.0.1\nnot a name\n",
    );
    let good = write_list(&dir, "good.txt", "bets.example\n");
    let staff = carer(&home.admin, "Oak House", "Jo Carer");
    let audit_before = home.manager.ok(&["audit", "verify"]);

    let e = home
        .admin
        .fails(&["filter", "import", "--category", "gambling", &empty]);
    assert!(e.contains("no usable domain names"), "{e}");
    assert!(e.contains("nothing was imported"), "{e}");
    let e = home
        .admin
        .fails(&["filter", "import", "--category", "gamblin", &good]);
    assert!(e.contains("did you mean gambling?"), "{e}");
    let e = home
        .manager
        .fails(&["filter", "import", "--category", "gambling", &good]);
    assert!(
        e.contains("only an administrator can import web filter lists"),
        "{e}"
    );
    let e = home.admin.fails(&["filter", "import", &good]);
    assert!(e.contains("--category"), "{e}");
    assert_eq!(home.admin.json(&["filter", "list"]), serde_json::json!([]));

    let e = home
        .manager
        .fails(&["filter", "allow", "--home", "Oak House", "not a site"]);
    assert!(e.contains("is not a domain name"), "{e}");
    let e = home
        .manager
        .fails(&["filter", "deny", "--home", "Oak House", "childline.org.uk"]);
    assert!(e.contains("protected"), "{e}");
    let e = staff.fails(&["filter", "allow", "--home", "Oak House", "a.example"]);
    assert!(e.contains("only a manager"), "{e}");
    let e = home
        .manager
        .fails(&["filter", "remove", "--home", "Oak House", "a.example"]);
    assert!(e.contains("haven filter exceptions"), "{e}");
    assert_eq!(
        home.manager
            .json(&["filter", "exceptions", "--home", "Oak House"]),
        serde_json::json!([])
    );
    // Nothing refused reached the audit trail.
    assert_eq!(home.manager.ok(&["audit", "verify"]), audit_before);
}
