//! The web filter end to end: a real agent (`--enforcer linux`) answering DNS on loopback, a
//! stand-in upstream, a real DNS client, and a plan revised through the real CLI.
//!
//! Runs without root: the filter listens on a high loopback port, and the nftables rules are
//! not installed (they are tested inside a network namespace in the agent's unit tests).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use haven_tests::*;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

/// A stand-in upstream resolver on loopback: every A query gets 192.0.2.1.
pub(crate) fn stand_in_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            if let Some(query) = q.queries.first() {
                r.add_answer(Record::from_rdata(
                    query.name().clone(),
                    300,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                ));
            }
            let _ = socket.send_to(&r.to_vec().unwrap(), from);
        }
    });
    addr
}

/// One A query; `None` if nothing answered within a second (the agent may be starting).
pub(crate) fn ask(server: SocketAddr, name: &str) -> Option<Message> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    client.send_to(&q.to_vec().unwrap(), server).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = client.recv_from(&mut buf).ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    (r.metadata.id == q.metadata.id).then_some(r)
}

pub(crate) fn rcode(server: SocketAddr, name: &str) -> ResponseCode {
    eventually(&format!("an answer for {name}"), WAIT, || {
        ask(server, name).map(|r| r.metadata.response_code)
    })
}

/// Oak House with a risk assessment, and the plan template with the web changed by `web`.
fn revise_plan(home: &Home, web: &str) -> u64 {
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
    let staff = home.care_staff("Jo Carer");
    let ra_file = home.path("ra.toml");
    std::fs::write(&ra_file, dated(&staff.ok(&["risk", "template"]))).unwrap();
    let ra = staff.json(&["risk", "add", "Amira", "--file", ra_file.to_str().unwrap()])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let template = home.manager.ok(&["plan", "template"]);
    let text = dated(&template.replace("ra-REPLACE-ME", &ra))
        .replace("[section.web]\nstate = \"off\"", &web.replace("{ra}", &ra));
    let plan_file = home.path("plan.toml");
    std::fs::write(&plan_file, text).unwrap();
    home.manager.json(&[
        "plan",
        "revise",
        "Amira",
        "--file",
        plan_file.to_str().unwrap(),
    ])["policy_version"]
        .uint()
        .unwrap()
}

// clause WB1, WB4, D5 (web-blocked reports)
#[test]
fn wb1_wb4_the_agent_filters_dns_refuses_all_while_the_web_is_off_and_reports_blocks_once() {
    // `--enforcer linux` also guards the camera with fanotify, which needs root.
    if skip_unless_root(
        "wb1_wb4_the_agent_filters_dns_refuses_all_while_the_web_is_off_and_reports_blocks_once",
    ) {
        return;
    }
    let home = Home::new();
    let upstream = stand_in_upstream();
    let port = free_port();
    let dns: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut agent = home.enrolled_agent("tablet");
    agent.start_linux(&[
        "--dns-listen",
        &dns.to_string(),
        "--dns-upstream",
        &upstream.to_string(),
    ]);

    // No plan yet: the safe default keeps the web off, so nothing resolves (fail closed).
    assert_eq!(rcode(dns, "www.bbc.co.uk."), ResponseCode::Refused);
    assert_eq!(rcode(dns, "facebook.com."), ResponseCode::Refused);

    let version = revise_plan(
        &home,
        "[section.web]\nstate = \"filtered\"\nfilter_profile = \"strict\"\nrisk_assessment = \"{ra}\"",
    );
    assert!(agent.wait_applied(version, WAIT), "{}", agent.stdout.text());

    let answer = eventually("an answer from the upstream", WAIT, || {
        ask(dns, "www.bbc.co.uk.").filter(|r| r.metadata.response_code == ResponseCode::NoError)
    });
    assert_eq!(
        answer.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))
    );
    // Social networking is blocked by every profile (WB4), by suffix.
    for name in ["facebook.com.", "m.facebook.com.", "www.facebook.com."] {
        assert_eq!(rcode(dns, name), ResponseCode::NXDomain, "{name}");
    }
    assert_eq!(rcode(dns, "dns.google."), ResponseCode::NXDomain);
    assert_eq!(rcode(dns, "xfacebook.com."), ResponseCode::NoError);

    let line = agent
        .stdout
        .wait_for("blocked: web-blocked facebook.com — ", WAIT)
        .unwrap_or_else(|| panic!("no report in:\n{}", agent.stdout.text()));
    assert!(line.contains("social networking"), "{line}");
    agent
        .stdout
        .wait_for("blocked: web-blocked dns.google — ", WAIT)
        .expect("the DNS-over-HTTPS attempt is reported");
    // Three lookups under facebook.com: one report (aggregated).
    assert_eq!(agent.stdout.count("blocked: web-blocked facebook.com"), 1);
    // Names that resolved are nobody's business: never reported or logged.
    let all = format!("{}\n{}", agent.stdout.text(), agent.stderr.text());
    assert!(!all.contains("bbc"), "browsing history leaked:\n{all}");
    agent.stop();
}

fn ut1_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/filter-lists/ut1")
}

// clause WB4: real category lists (UT1) import, extend the built-in social category and block
// by suffix.
#[test]
fn wb4_real_ut1_category_lists_import() {
    use haven_agent::web::{Catalog, categories::SOCIAL_NETWORKING};
    let dir = ut1_dir();
    if !dir.is_dir() {
        eprintln!(
            "skipped wb4_real_ut1_category_lists_import: no UT1 lists at {}",
            dir.display()
        );
        return;
    }
    let (catalog, imported) = Catalog::load(&dir).unwrap();
    assert!(imported.len() >= 5, "{imported:?}");
    let social = catalog.get(SOCIAL_NETWORKING).unwrap();
    assert!(
        social.len() > 500,
        "UT1 extends the built-in list: {}",
        social.len()
    );
    assert!(social.contains_suffix_of("www.facebook.com"));
    for i in &imported {
        assert!(i.stats.domains > 0, "{i:?}");
        // Every category's first listed name blocks itself and its subdomains.
        let text = std::fs::read_to_string(&i.path).unwrap();
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| {
                !l.is_empty()
                    && !l.starts_with('#')
                    && l.parse::<Ipv4Addr>().is_err()
                    && !l.contains('_')
            })
            .unwrap();
        let set = catalog.get(&i.category).unwrap();
        assert!(
            set.contains_suffix_of(&format!("www.{first}")),
            "{}: {first}",
            i.category
        );
    }
    assert!(catalog.imported_categories().contains(&"vpn".to_string()));
}

// clause WB1: `haven-agent firewall` (what haven-firewall.service runs at boot) loads the
// default-deny rules, inside a network namespace this test makes (never the host's); a
// list of child accounts that includes root is refused with a one-line reason.
#[test]
fn wb1_the_boot_firewall_command_loads_the_rules_and_refuses_root() {
    let refused = std::process::Command::new(agent_bin())
        .args(["firewall", "--web-child-uids", "0-999"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("includes 0, which is root"), "{err}");

    if skip_unless_root("wb1_the_boot_firewall_command_loads_the_rules_and_refuses_root") {
        return;
    }
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED wb1_the_boot_firewall_command_loads_the_rules_and_refuses_root: needs nft"
        );
        return;
    }
    let ns = format!("haven-e2e-fw-{}", std::process::id());
    let netns = |args: &[&str]| {
        std::process::Command::new("ip")
            .arg("netns")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(netns(&["add", &ns]).status.success());
    let agent = agent_bin();
    let loaded = netns(&[
        "exec",
        &ns,
        agent.to_str().unwrap(),
        "firewall",
        "--web-child-uids",
        "61000-61999",
    ]);
    let listed = netns(&["exec", &ns, "nft", "list", "table", "inet", "haven_web"]);
    netns(&["delete", &ns]);
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert!(String::from_utf8_lossy(&loaded.stdout).contains("accounts 61000-61999"));
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        table.contains("meta skuid 61000-61999 jump child"),
        "{table}"
    );
    assert!(table.contains("set allowed4"), "{table}");
}
