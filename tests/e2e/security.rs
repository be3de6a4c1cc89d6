//! Who may do what: devices prove themselves with certificates, staff with tokens and roles.

use haven_proto::agent::v1::{
    AgentMessage, Hello, agent_message::Body, agent_service_client::AgentServiceClient,
};
use haven_proto::trust::CONTROLLER_TLS_NAME;
use haven_tests::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

async fn channel(url: &str, ca_pem: &str, identity: Option<Identity>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CONTROLLER_TLS_NAME);
    if let Some(id) = identity {
        tls = tls.identity(id);
    }
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Opens `Sync` and reads it to the end: `Err` is the controller's refusal.
async fn try_sync(channel: Channel) -> Result<(), tonic::Status> {
    let mut client = AgentServiceClient::new(channel);
    let hello = AgentMessage {
        body: Some(Body::Hello(Hello {
            applied_policy_version: 0,
            agent_version: "test".into(),
            inventory: None,
            ..Default::default()
        })),
    };
    let mut stream = client
        .sync(tokio_stream::iter(vec![hello]))
        .await?
        .into_inner();
    // A refused device may first be told to retire; what matters is how the stream ends.
    while stream.message().await?.is_some() {}
    Ok(())
}

fn ca_pem(home: &Home) -> String {
    std::fs::read_to_string(home.controller.data_dir.join("ca.pem")).unwrap()
}

#[test]
fn sync_without_a_device_certificate_is_refused() {
    let home = Home::new();
    let ca = ca_pem(&home);
    runtime().block_on(async {
        let ch = channel(&home.controller.url, &ca, None).await.unwrap();
        let err = try_sync(ch).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains("enroll"), "{}", err.message());
    });
}

#[test]
fn sync_with_a_certificate_from_another_authority_is_refused() {
    let home = Home::new();
    let ca = ca_pem(&home);
    // A stranger's CA and a client certificate it signed.
    let stranger_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let stranger_ca = ca_params.self_signed(&stranger_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &stranger_key);
    let device_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&device_key, &issuer).unwrap();
    drop(stranger_ca);
    let identity = Identity::from_pem(cert.pem(), device_key.serialize_pem());
    runtime().block_on(async {
        let refused = match channel(&home.controller.url, &ca, Some(identity)).await {
            Err(_) => true, // the TLS handshake itself was refused
            Ok(ch) => try_sync(ch).await.is_err(),
        };
        assert!(refused, "a certificate from another CA must never sync");
    });
}

#[test]
fn a_revoked_device_is_disconnected_at_once_and_refused_on_reconnect() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let id = eventually("the device to come online", WAIT, || {
        let d = home.devices().into_iter().next()?;
        (d["online"] == true).then(|| d["id"].as_str().unwrap().to_string())
    });
    let out = home
        .admin
        .ok(&["device", "revoke", &id, "--reason", "tablet lost"]);
    assert!(out.contains("Revoked"), "{out}");
    let d = home.device(&id);
    assert_eq!(d["status"], "revoked");
    assert_eq!(d["online"], false, "disconnected at once");
    assert_eq!(d["revoked_reason"], "tablet lost");

    // The device's own certificate no longer gets a stream.
    let identity = Identity::from_pem(
        agent.identity_file("device-cert.pem"),
        agent.identity_file("device-key.pem"),
    );
    let ca = ca_pem(&home);
    runtime().block_on(async {
        let ch = channel(&home.controller.url, &ca, Some(identity))
            .await
            .unwrap();
        let err = try_sync(ch).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    });
    // The real agent was told: it drops to the safe default and stops reconnecting.
    assert!(
        agent
            .stderr
            .wait_for("removed from Haven by staff", WAIT)
            .is_some(),
        "{}",
        agent.stderr.text()
    );
    assert!(agent.wait_applied(0, WAIT), "the safe default is enforced");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(home.device(&id)["online"], false);
    let status = agent.command(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(v["retired"], true, "{v}");
    // Revoking twice is a clear refusal, not a crash.
    let err = home.admin.fails(&["device", "revoke", &id]);
    assert!(err.contains("already revoked"), "{err}");
}

#[test]
fn a_device_revoked_while_offline_retires_when_it_next_connects() {
    let home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    let id = eventually("the device to come online", WAIT, || {
        let d = home.devices().into_iter().next()?;
        (d["online"] == true).then(|| d["id"].as_str().unwrap().to_string())
    });
    agent.stop();
    eventually("the device to go offline", WAIT, || {
        (home.device(&id)["online"] == false).then_some(())
    });
    home.admin
        .ok(&["device", "revoke", &id, "--reason", "lost on a trip"]);
    agent.start();
    assert!(
        agent
            .stderr
            .wait_for("removed from Haven by staff", WAIT)
            .is_some(),
        "{}",
        agent.stderr.text()
    );
    assert!(agent.stderr.text().contains("lost on a trip"));
}

#[test]
fn a_staff_token_cannot_take_an_admin_action() {
    let home = Home::new();
    let jo = home.care_staff("Jo Carer");
    // Staff can read…
    jo.ok(&["child", "list"]);
    // …but not administer.
    let err = jo.fails(&["staff", "add", "--name", "Mallory", "--role", "admin"]);
    assert!(err.contains("only an administrator"), "{err}");
    let err = jo.fails(&["device", "enroll", "Amira"]);
    assert!(err.contains("only a manager or an administrator"), "{err}");
    let err = jo.fails(&["home", "add", "Elm House"]);
    assert!(err.contains("only an administrator"), "{err}");
    // A manager decides arrangements but does not run staff accounts.
    let err = home
        .manager
        .fails(&["staff", "add", "--name", "X", "--role", "staff"]);
    assert!(err.contains("only an administrator"), "{err}");
    // An administrator does not change arrangements.
    let err = home.admin.fails(&[
        "protected-contact",
        "add",
        "--home",
        "Oak House",
        "--name",
        "Childline",
        "--number",
        "0800 1111",
    ]);
    assert!(err.contains("only a manager"), "{err}");
}

#[test]
fn a_revoked_or_mistyped_token_is_refused() {
    let home = Home::new();
    let jo = home.care_staff("Jo Carer");
    jo.ok(&["whoami"]);
    home.admin.ok(&["staff", "revoke", "Jo Carer"]);
    let err = jo.fails(&["whoami"]);
    assert!(err.contains("not valid"), "{err}");
    let err = home.admin.as_token("hvn_guess").fails(&["child", "list"]);
    assert!(err.contains("not valid"), "{err}");
    // The last administrator cannot lock everyone out.
    let err = home
        .admin
        .fails(&["staff", "revoke", "First administrator"]);
    assert!(err.contains("last administrator"), "{err}");
}

#[test]
fn login_with_the_wrong_pin_is_refused_and_saves_nothing() {
    let home = Home::new();
    let other = Cli::new(&home.path("other"));
    std::fs::create_dir_all(home.path("other")).unwrap();
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let r = other.run_with_input(
        &["login", &home.controller.url, "--ca-pin", &wrong],
        &home.controller.first_token(),
    );
    assert!(!r.ok);
    let err = r.stderr;
    assert!(err.contains("pin"), "{err}");
    assert!(!other.config.exists());
    let err = other.fails(&["child", "list"]);
    assert!(err.contains("not logged in"), "{err}");
}

#[test]
fn secrets_on_disk_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let home = Home::new();
    // The first login line holds a working token: gone once the first administrator logged in.
    assert!(!home.controller.data_dir.join("first-login.txt").exists());
    for file in [
        home.controller.data_dir.join("ca-key.pem"),
        home.controller.data_dir.join("server-key.pem"),
        home.controller.data_dir.join("haven.db"),
        home.admin.config.clone(),
    ] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", file.display());
    }
    let dir_mode = std::fs::metadata(&home.controller.data_dir)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o077, 0, "the data directory is private");
    // Tokens are stored hashed: the first administrator's token is not in the database.
    let token = home.controller.first_token();
    let db = std::fs::read(home.controller.data_dir.join("haven.db")).unwrap();
    let wal = std::fs::read(home.controller.data_dir.join("haven.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!String::from_utf8_lossy(&bytes).contains(&token));
    }
}

/// Issue 3: a provider runs several homes; staff and managers see and act on the children of
/// their own homes only. A child elsewhere is refused exactly as if it did not exist.
#[test]
fn staff_see_only_the_children_of_their_own_homes() {
    let home = Home::new();
    home.admin.ok(&["home", "add", "Elm House"]);
    let zara = home.admin.json(&[
        "child",
        "add",
        "--home",
        "Elm House",
        "--name",
        "Zara Jones",
        "--dob",
        "2011-03-02",
    ]);
    let zara_id = zara["id"].as_str().unwrap();

    // The manager of Oak House sees Amira, and nothing of Elm House.
    let children = home.manager.json(&["child", "list"]);
    let names: Vec<&str> = children
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Amira Khan"]);
    let homes = home.manager.json(&["home", "list"]);
    assert_eq!(homes.as_array().unwrap().len(), 1);

    // Asking for Zara by id reads exactly like asking for a child who does not exist.
    let elsewhere = home.manager.fails(&["child", "show", zara_id]);
    let missing = home.manager.fails(&["child", "show", "chd-does-not-exist"]);
    assert_eq!(
        elsewhere.replace(zara_id, "ID"),
        missing.replace("chd-does-not-exist", "ID")
    );
    assert!(!elsewhere.contains("Zara"), "{elsewhere}");
    let err = home.manager.fails(&["plan", "show", zara_id]);
    assert!(err.contains("no child called"), "{err}");
    let err = home.manager.fails(&["reviews", "--home", "Elm House"]);
    assert!(err.contains("no home called"), "{err}");

    // Nor can she take emergency action there, or see its lockdowns.
    let err = home.manager.fails(&[
        "lockdown",
        zara_id,
        "--reason",
        "injury-to-child",
        "--note",
        "test",
    ]);
    assert!(err.contains("no child called"), "{err}");
    let err = home.manager.fails(&[
        "lockdown",
        "--home",
        "Elm House",
        "--reason",
        "injury-to-child",
        "--note",
        "test",
    ]);
    assert!(err.contains("no home called"), "{err}");
    let err = home.manager.fails(&["violations", "--child", zara_id]);
    assert!(err.contains("no child called"), "{err}");

    // Staff and managers must say where they work.
    let err = home
        .admin
        .fails(&["staff", "add", "--name", "Sam Carer", "--role", "staff"]);
    assert!(err.contains("--home"), "{err}");

    // Once Rita also works at Elm House, she sees Zara.
    let rita = home
        .admin
        .json(&["staff", "add-home", "Rita Manager", "--home", "Elm House"]);
    assert_eq!(rita["homes"].as_array().unwrap().len(), 2);
    let shown = home.manager.json(&["child", "show", zara_id]);
    assert_eq!(shown["name"], "Zara Jones");
    // The administrator runs Haven for the whole provider and sees both homes.
    assert_eq!(
        home.admin.json(&["home", "list"]).as_array().unwrap().len(),
        2
    );
}

// Revoking a member of staff ends every stream they hold at once: a `haven violations --watch`
// stops with "your access was withdrawn" instead of streaming children's names and numbers.
#[test]
fn revoking_a_member_of_staff_ends_their_open_watch_at_once() {
    let home = Home::new();
    let jo = home.care_staff("Jo Carer");
    let mut watch = jo.spawn(&["violations", "--watch"]);
    assert!(
        watch.stderr.wait_for("Watching", WAIT).is_some(),
        "{}",
        watch.stderr.text()
    );
    home.admin.ok(&["staff", "revoke", "Jo Carer"]);
    assert!(
        watch
            .stderr
            .wait_for("access was withdrawn", WAIT)
            .is_some(),
        "{}",
        watch.stderr.text()
    );
    eventually("the watch to end", WAIT, || {
        (!watch.is_running()).then_some(())
    });
}

// A token is never typed on the command line (it would stay in the shell's history): `haven
// login` reads it from standard input or asks for it, and refuses `--token` with the reason.
#[test]
fn login_reads_the_token_from_standard_input_never_from_the_command_line() {
    let home = Home::new();
    let other = Cli::new(&home.path("other"));
    std::fs::create_dir_all(home.path("other")).unwrap();
    let err = other.fails(&[
        "login",
        &home.controller.url,
        "--ca-pin",
        &home.controller.ca_pin(),
        "--token",
        "hvn_whatever",
    ]);
    assert!(err.contains("history"), "{err}");
    assert!(!other.config.exists());
    let r = other.run_with_input(
        &[
            "login",
            &home.controller.url,
            "--ca-pin",
            &home.controller.ca_pin(),
        ],
        "",
    );
    assert!(
        !r.ok && r.stderr.contains("no token was given"),
        "{}",
        r.stderr
    );
}

// Tokens can be rotated by their owner (`haven login --rotate`) or by an administrator
// (`haven staff rotate NAME`, for a lost laptop); the old token stops working at once and the
// new one says when it expires (90 days by default).
#[test]
fn a_token_is_rotated_by_its_owner_or_an_administrator_and_the_old_one_stops() {
    let home = Home::new();
    let jo_token = home.admin.json(&[
        "staff",
        "add",
        "--name",
        "Jo Carer",
        "--role",
        "staff",
        "--home",
        "Oak House",
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let jo_dir = home.path("jo");
    std::fs::create_dir_all(&jo_dir).unwrap();
    let jo = Cli::new(&jo_dir);
    let r = jo.login(&home.controller, &jo_token);
    assert!(r.ok, "{}{}", r.stdout, r.stderr);
    let me = jo.json(&["whoami"]);
    assert_eq!(me["name"], "Jo Carer");
    let out = jo.ok(&["login", "--rotate"]);
    assert!(out.contains("old one no longer works"), "{out}");
    jo.ok(&["whoami"]);
    let err = home.admin.as_token(&jo_token).fails(&["whoami"]);
    assert!(err.contains("not valid"), "{err}");

    // An administrator rotates it for her; her saved token stops working too.
    let rotated = home.admin.json(&["staff", "rotate", "Jo Carer"]);
    let new_token = rotated["token"].as_str().unwrap().to_string();
    let expires = rotated["member"]["token_expires_at_unix_ms"].int().unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    let days = (expires - now) / 86_400_000;
    assert!((89..=90).contains(&days), "{days}");
    assert!(jo.fails(&["whoami"]).contains("not valid"));
    home.admin.as_token(&new_token).ok(&["whoami"]);
    // Care staff may not rotate someone else's token.
    let err = home
        .admin
        .as_token(&new_token)
        .fails(&["staff", "rotate", "Rita Manager"]);
    assert!(err.contains("administrator"), "{err}");
}
