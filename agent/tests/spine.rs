//! End-to-end test of the agent library against a fake controller in the same process:
//! pin check, enrollment over TLS, the mTLS sync stream, policies, commands, reconnecting
//! and retirement. The fake controller does only what the wire contract says.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{CODE, WAIT, next_non_heartbeat, next_session, next_up, start_controller};
use haven_agent::enforcer::{EnforceError, Enforcer};
use haven_agent::state::{StateDir, StateError};
use haven_agent::sync::{InventorySource, RunOutcome, SyncConfig, SyncEvent};
use haven_agent::{EnrollError, enroll_device};
use haven_proto::agent::v1::agent_message::Body as Up;
use haven_proto::agent::v1::command::Kind as CommandKind;
use haven_proto::agent::v1::controller_message::Body as Down;
use haven_proto::agent::v1::{
    CameraRule, Command, ControllerMessage, DevicePolicy, Inventory, RefreshInventory, Retire,
};
use haven_proto::trust::fetch_pinned_ca;
use tokio::sync::mpsc;

/// Remembers every version it was asked to apply.
struct Recorder(Arc<std::sync::Mutex<Vec<u64>>>);

impl Enforcer for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }
    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        self.0.lock().unwrap().push(policy.version);
        Ok(())
    }
}

fn policy(version: u64) -> ControllerMessage {
    ControllerMessage {
        body: Some(Down::Policy(DevicePolicy {
            version,
            issued_at_unix_ms: 1_700_000_000_000,
            child_display_name: "Sam".into(),
            camera: Some(CameraRule {
                allowed: true,
                reason: "agreed".into(),
            }),
            ..Default::default()
        })),
    }
}

fn command(id: &str, kind: CommandKind) -> ControllerMessage {
    ControllerMessage {
        body: Some(Down::Command(Command {
            id: id.into(),
            kind: Some(kind),
        })),
    }
}

#[tokio::test]
async fn enroll_sync_reconnect_and_retire() {
    let mut controller = start_controller().await;

    // A wrong pin is refused before anything is sent.
    let wrong_pin = format!("sha256:{}", "0".repeat(64));
    assert!(fetch_pinned_ca(&controller.url, &wrong_pin).await.is_err());
    let ca_pem = fetch_pinned_ca(&controller.url, &controller.pin)
        .await
        .unwrap();

    // A wrong code is refused with advice; the right one enrolls.
    let err = enroll_device(&controller.url, &ca_pem, "NOPE", Inventory::default())
        .await
        .unwrap_err();
    assert!(matches!(err, EnrollError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("new one"), "{err}");
    let enrollment = enroll_device(
        &controller.url,
        &ca_pem,
        &format!(" {CODE} "),
        haven_agent::inventory::collect(),
    )
    .await
    .unwrap();
    assert_eq!(enrollment.child_display_name, "Sam");
    assert_eq!(enrollment.identity.device_id, "dev-1");

    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    state
        .save_enrollment(&enrollment.identity, "Sam", "2025-01-01T00:00:00Z")
        .unwrap();
    let (identity, _) = state.load_identity().unwrap();

    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut config = SyncConfig::new(identity);
    config.state = Some(state.clone());
    config.heartbeat = Duration::from_secs(1);
    config.initial_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_millis(500);
    config.inventory = InventorySource::Fixed(Inventory {
        hostname: "test-device".into(),
        ..Default::default()
    });
    config.events = Some(events_tx);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(haven_agent::run(
        config,
        Box::new(Recorder(seen.clone())),
        async move {
            let _ = stopped.await;
        },
    ));

    // The safe default is applied before the first connection.
    let mut session = next_session(&mut controller).await;
    assert_eq!(*seen.lock().unwrap(), [0]);
    match next_up(&mut session).await {
        Up::Hello(hello) => {
            assert_eq!(hello.applied_policy_version, 0);
            assert_eq!(hello.inventory.unwrap().hostname, "test-device");
        }
        other => panic!("expected hello, got {other:?}"),
    }

    // A policy is applied, saved and acknowledged; an older one is ignored.
    session.to_agent.send(Ok(policy(2))).await.unwrap();
    match next_non_heartbeat(&mut session).await {
        Up::PolicyApplied(applied) => {
            assert_eq!(applied.version, 2);
            assert!(applied.error.is_empty());
        }
        other => panic!("expected policy applied, got {other:?}"),
    }
    assert_eq!(state.load_policy().unwrap().unwrap().version, 2);
    session.to_agent.send(Ok(policy(1))).await.unwrap();
    // Unknown message kinds (from a newer controller) are ignored.
    session
        .to_agent
        .send(Ok(ControllerMessage { body: None }))
        .await
        .unwrap();
    session
        .to_agent
        .send(Ok(command(
            "c1",
            CommandKind::RefreshInventory(RefreshInventory {}),
        )))
        .await
        .unwrap();
    // The refresh answers with a heartbeat then its result; nothing about version 1.
    match next_up(&mut session).await {
        Up::Heartbeat(beat) => assert!(beat.inventory.is_some()),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    match next_non_heartbeat(&mut session).await {
        Up::CommandResult(result) => assert!(result.ok && result.command_id == "c1"),
        other => panic!("expected a command result, got {other:?}"),
    }
    assert_eq!(*seen.lock().unwrap(), [0, 2]);

    // The controller goes away; the agent reconnects and says what it enforces.
    drop(session);
    let mut session = next_session(&mut controller).await;
    match next_up(&mut session).await {
        Up::Hello(hello) => assert_eq!(hello.applied_policy_version, 2),
        other => panic!("expected hello, got {other:?}"),
    }

    // Retirement: acknowledged, safe default applied, remembered, no reconnecting.
    session
        .to_agent
        .send(Ok(command(
            "c2",
            CommandKind::Retire(Retire {
                reason: "moved on".into(),
            }),
        )))
        .await
        .unwrap();
    match next_non_heartbeat(&mut session).await {
        Up::CommandResult(result) => assert!(result.ok && result.command_id == "c2"),
        other => panic!("expected a command result, got {other:?}"),
    }
    let mut retired = false;
    while let Ok(Some(event)) = tokio::time::timeout(WAIT, events.recv()).await {
        if event == SyncEvent::Retired {
            retired = true;
            break;
        }
    }
    assert!(retired, "a retired event is sent");
    assert_eq!(*seen.lock().unwrap(), [0, 2, 0]);
    assert!(matches!(state.load_identity(), Err(StateError::Retired)));
    assert_eq!(state.load_policy().unwrap().unwrap().version, 0);
    drop(session);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        controller.sessions.try_recv().is_err(),
        "a retired device does not reconnect"
    );

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(WAIT, agent).await.unwrap().unwrap();
    assert_eq!(outcome.unwrap(), RunOutcome::Retired);
}

#[tokio::test]
async fn a_device_without_a_certificate_is_refused_and_retried_at_the_cap() {
    let mut controller = start_controller().await;
    let ca_pem = fetch_pinned_ca(&controller.url, &controller.pin)
        .await
        .unwrap();
    // A self-signed certificate the controller's CA never signed: the TLS layer rejects it,
    // or (as here, with optional client auth) the controller refuses the device.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let identity = haven_agent::DeviceIdentity {
        controller_url: controller.url.clone(),
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        device_id: "stranger".into(),
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut config = SyncConfig::new(identity);
    config.initial_backoff = Duration::from_millis(100);
    config.max_backoff = Duration::from_secs(2);
    config.inventory = InventorySource::Fixed(Inventory::default());
    config.events = Some(events_tx);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(haven_agent::run(
        config,
        Box::new(haven_agent::NullEnforcer),
        async move {
            let _ = stopped.await;
        },
    ));
    let event = tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap();
    match event {
        SyncEvent::Disconnected { reason, retry_in } => {
            assert!(retry_in >= Duration::from_millis(50), "{retry_in:?}");
            assert!(!reason.contains("Status {"), "no Debug output: {reason}");
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(controller.sessions.try_recv().is_err());
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(WAIT, agent).await.unwrap().unwrap();
    assert_eq!(outcome.unwrap(), RunOutcome::Shutdown);
}
