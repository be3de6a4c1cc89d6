//! Devices have a lifecycle (issue 13): short-lived certificates renewed over the open stream
//! with a new key made on the device, refused once expired, and never renewed for anyone but
//! the device whose certificate opened the stream.

use std::time::Duration;

use haven_proto::agent::v1::{
    AgentMessage, CertificateRenewal, ControllerMessage, Hello, agent_message::Body as Up,
    agent_service_client::AgentServiceClient, controller_message::Body as Down,
};
use haven_proto::trust::CONTROLLER_TLS_NAME;
use haven_tests::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

fn ca_pem(home: &Home) -> String {
    std::fs::read_to_string(home.controller.data_dir.join("ca.pem")).unwrap()
}

async fn channel(url: &str, ca_pem: &str, identity: Identity) -> Result<Channel, String> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CONTROLLER_TLS_NAME)
        .identity(identity);
    Endpoint::from_shared(url.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Whether the controller lets this certificate open `Sync` and keep it (a refusal may come in
/// the TLS handshake, when the stream opens, or as the stream's end).
async fn sync_accepted(url: &str, ca: &str, cert: &str, key: &str) -> bool {
    let Ok(ch) = channel(url, ca, Identity::from_pem(cert, key)).await else {
        return false;
    };
    let hello = AgentMessage {
        body: Some(Up::Hello(Hello {
            agent_version: "test".into(),
            ..Default::default()
        })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello).await.unwrap();
    let Ok(response) = AgentServiceClient::new(ch)
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    else {
        return false;
    };
    let mut stream = response.into_inner();
    // An accepted device gets its policy at once (it said it has none).
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.message()).await,
        Ok(Ok(Some(_)))
    )
}

fn audit_count(home: &Home, action: &str) -> i64 {
    runtime().block_on(async {
        use sqlx::ConnectOptions;
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(home.controller.data_dir.join("haven.db"))
            .read_only(true)
            .connect()
            .await
            .unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = ?")
            .bind(action)
            .fetch_one(&mut db)
            .await
            .unwrap()
    })
}

fn device_id_of(agent: &Agent) -> String {
    let status = agent.command(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    v["device_id"].as_str().unwrap().to_string()
}

// clause D7 (and D1: the controller keeps holding the same device's permissions)
#[test]
fn d7_a_short_lived_certificate_is_renewed_over_the_stream_and_the_device_keeps_its_identity_and_policy()
 {
    // 20 s: due once less than a third (6.7 s) is left, so the first renewal comes about 13 s
    // after enrollment and again every 13 s after that, with room to spare on a busy machine.
    let home = Home::new_with(&["--device-cert-seconds", "20"]);
    let mut agent = home.enrolled_agent("tablet");
    let id = device_id_of(&agent);
    let old_cert = agent.identity_file("device-cert.pem");
    let old_key = agent.identity_file("device-key.pem");
    let shown = home.device(&id);
    let old_fingerprint = shown["certificate_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shown["certificate_not_after_unix_ms"].int().unwrap() > 0,
        "staff see when it expires: {shown}"
    );
    agent.start();
    assert!(
        agent
            .stderr
            .wait_for("renewed this device's certificate", Duration::from_secs(45))
            .is_some(),
        "{}",
        agent.stderr.text()
    );
    // Same device, new certificate and key, back online with it.
    let d = eventually("the device to use its renewed certificate", WAIT, || {
        let d = home.device(&id);
        (d["online"] == true && d["certificate_fingerprint"] != old_fingerprint.as_str())
            .then_some(d)
    });
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["status"], "active");
    assert_ne!(agent.identity_file("device-key.pem"), old_key, "a new key");
    assert!(audit_count(&home, "device.certificate.renew") >= 1);
    assert!(audit_count(&home, "device.certificate.use") >= 1);
    assert_eq!(home.devices().len(), 1, "no second device was made");

    // It still receives changes.
    let version = home.change_policy("Childline", "0800 1111");
    assert!(agent.wait_applied(version, WAIT), "{}", agent.stdout.text());
    // The old certificate stopped working once the new one was used.
    let ca = ca_pem(&home);
    let url = home.controller.url.clone();
    assert!(
        !runtime().block_on(sync_accepted(&url, &ca, &old_cert, &old_key)),
        "a replaced certificate must not open a stream"
    );
    // The audit trail is intact with the renewals in it.
    let v = home.admin.json(&["audit", "verify"]);
    assert_eq!(v["intact"], true, "{v}");
}

// clause D7: devices from before short-lived certificates (11 years) keep working and are moved
// onto the short lifetime when they next connect; here a 397-day certificate stands in for
// them, and the controller is restarted with the default 30 days.
#[test]
fn d7_a_long_lived_certificate_is_renewed_onto_the_short_lifetime_when_the_device_next_connects() {
    let mut home = Home::new_with(&["--device-cert-days", "397"]);
    let mut agent = home.enrolled_agent("tablet");
    let id = device_id_of(&agent);
    let day_ms = 86_400_000;
    let long = home.device(&id)["certificate_not_after_unix_ms"]
        .int()
        .unwrap();
    home.controller.restart_with(&[]);
    let shown = home.device(&id);
    assert_eq!(shown["certificate_standing"], "long-lived", "{shown}");
    assert!(
        home.admin
            .ok(&["device", "show", &id])
            .contains("renewed onto the short lifetime when the device next connects")
    );

    agent.start();
    assert!(
        agent
            .stderr
            .wait_for("renewed this device's certificate", WAIT)
            .is_some(),
        "{}",
        agent.stderr.text()
    );
    let d = eventually("the device to use its 30-day certificate", WAIT, || {
        let d = home.device(&id);
        let not_after = d["certificate_not_after_unix_ms"].int()?;
        (d["online"] == true && not_after < long - 300 * day_ms).then_some(d)
    });
    let now = jiff::Timestamp::now().as_millisecond();
    let left = d["certificate_not_after_unix_ms"].int().unwrap() - now;
    assert!(left > 29 * day_ms && left <= 30 * day_ms, "{d}");
    assert_eq!(d["certificate_standing"], "current");
    // Renewed once, not again on every connection.
    agent.stop();
    agent.start();
    eventually("the device to come back", WAIT, || {
        (home.device(&id)["online"] == true).then_some(())
    });
    assert_eq!(audit_count(&home, "device.certificate.renew"), 1);
}

// clause D1: an identity that expired while the device was offline is refused by TLS itself;
// the device says plainly what to do and keeps enforcing what it has.
#[test]
fn d1_a_device_offline_past_expiry_is_refused_and_told_to_re_enroll() {
    let home = Home::new_with(&["--device-cert-seconds", "3"]);
    let mut agent = home.enrolled_agent("tablet");
    let id = device_id_of(&agent);
    std::thread::sleep(Duration::from_secs(4));

    // The controller's client-certificate verifier checks validity: the expired certificate
    // cannot open a stream, though it is still the one on record.
    let ca = ca_pem(&home);
    let url = home.controller.url.clone();
    let cert = agent.identity_file("device-cert.pem");
    let key = agent.identity_file("device-key.pem");
    assert!(
        !runtime().block_on(sync_accepted(&url, &ca, &cert, &key)),
        "an expired certificate must be refused"
    );

    agent.start();
    let line = agent
        .stderr
        .wait_for("certificate expired on", WAIT)
        .unwrap_or_else(|| panic!("{}", agent.stderr.text()));
    assert!(
        line.contains("ask staff for a new enrollment code"),
        "{line}"
    );
    // Fail closed: the safe default (no policy was ever received) is enforced and stays.
    assert!(agent.wait_applied(0, WAIT), "{}", agent.stdout.text());
    std::thread::sleep(Duration::from_secs(2));
    assert!(agent.is_running(), "the agent keeps enforcing");
    let status = agent.command(&["status"]);
    assert!(
        status.stdout.contains("certificate expired on")
            && status
                .stdout
                .contains("ask staff for a new enrollment code"),
        "{}",
        status.stdout
    );

    // Staff see it among the devices to deal with.
    let expiring = home.admin.json(&["device", "expiring"]);
    let listed = expiring.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{expiring}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["certificate_standing"], "expired");
    let shown = home.admin.ok(&["device", "show", &id]);
    assert!(
        shown.contains("cert expires:") && shown.contains("enroll it again with a new code"),
        "{shown}"
    );
}

/// Sends `csr_pem` as a renewal on a stream opened with `cert`/`key` and returns the
/// controller's answer to it.
async fn ask_renewal(url: &str, ca: &str, cert: &str, key: &str, csr_pem: String) -> Down {
    let ch = channel(url, ca, Identity::from_pem(cert, key))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AgentMessage {
        body: Some(Up::Hello(Hello {
            agent_version: "test".into(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    tx.send(AgentMessage {
        body: Some(Up::RenewCertificate(CertificateRenewal { csr_pem })),
    })
    .await
    .unwrap();
    let mut stream = AgentServiceClient::new(ch)
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    loop {
        let message: Option<ControllerMessage> =
            tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .expect("an answer in time")
                .expect("the stream stays open");
        match message.and_then(|m| m.body) {
            Some(answer @ (Down::RenewalRefused(_) | Down::RenewedCertificate(_))) => {
                return answer;
            }
            Some(_) => continue,
            None => panic!("the stream ended without an answer"),
        }
    }
}

fn csr(key: &rcgen::KeyPair, common_name: &str) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.serialize_request(key).unwrap().pem().unwrap()
}

// clause D1: nothing a device writes changes who it is.
#[test]
fn d1_a_renewal_request_for_another_identity_is_refused() {
    // 30 s, and the test waits until the certificate is due (less than 10 s left), so only
    // the identity or the key can be what refuses the request.
    let home = Home::new_with(&["--device-cert-seconds", "30"]);
    let mine = home.enrolled_agent("mine");
    let enrolled = std::time::Instant::now();
    let theirs = home.enrolled_agent("theirs");
    let my_id = device_id_of(&mine);
    let their_id = device_id_of(&theirs);
    let their_fingerprint = home.device(&their_id)["certificate_fingerprint"].clone();
    std::thread::sleep(Duration::from_secs(21).saturating_sub(enrolled.elapsed()));
    let ca = ca_pem(&home);
    let url = home.controller.url.clone();
    let cert = mine.identity_file("device-cert.pem");
    let key = mine.identity_file("device-key.pem");
    let p256 = || rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();

    runtime().block_on(async {
        // My stream, their name.
        match ask_renewal(&url, &ca, &cert, &key, csr(&p256(), &their_id)).await {
            Down::RenewalRefused(r) => {
                assert!(
                    r.reason.contains("another device") && r.reason.contains(&their_id),
                    "{}",
                    r.reason
                );
            }
            other => panic!("signed a certificate naming another device: {other:?}"),
        }
        // My name, but a key of another kind.
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        match ask_renewal(&url, &ca, &cert, &key, csr(&ed25519, &my_id)).await {
            Down::RenewalRefused(r) => assert!(r.reason.contains("P-256"), "{}", r.reason),
            other => panic!("signed another kind of key: {other:?}"),
        }
    });
    assert_eq!(audit_count(&home, "device.certificate.renew"), 0);
    // Asking to become another device is recorded as tampering for staff.
    let violations = home.admin.json(&["violations", "--device", &my_id]);
    assert!(
        violations
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["kind"] == "tampering" && v["subject"] == "device certificate"),
        "{violations}"
    );
    assert_eq!(
        home.device(&their_id)["certificate_fingerprint"],
        their_fingerprint
    );
    // The same request with its own name is signed, for the same device.
    runtime().block_on(async {
        match ask_renewal(&url, &ca, &cert, &key, csr(&p256(), &my_id)).await {
            Down::RenewedCertificate(c) => assert!(c.certificate_pem.contains("BEGIN CERTIFICATE")),
            other => panic!("a proper renewal was refused: {other:?}"),
        }
    });
    assert_eq!(audit_count(&home, "device.certificate.renew"), 1);
}
