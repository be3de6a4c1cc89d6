//! Refusals reach programs as the gRPC rich error model (issue 15): a stable
//! `ErrorInfo.reason` in the domain `haven.homes`, the clause in its metadata, and the request
//! field named in `BadRequest`; the command line adds its own words and flags.

use haven_proto::admin::v1 as api;
use haven_proto::trust::CONTROLLER_TLS_NAME;
use haven_tests::*;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};
use tonic_types::StatusExt;

async fn staff_channel(home: &Home) -> Channel {
    let ca = std::fs::read_to_string(home.controller.data_dir.join("ca.pem")).unwrap();
    Endpoint::from_shared(home.controller.url.clone())
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(CONTROLLER_TLS_NAME),
        )
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    r.metadata_mut().insert("authorization", value);
    r
}

// clause R19, RM3: the reason and the clause of a refusal reach a client program.
// `deprecated`: the RM3 refusal is asked for in the words an older client sends (`reason`).
#[test]
#[allow(deprecated)]
fn r19_rm3_a_refusal_carries_its_reason_clause_and_field() {
    let home = Home::new();
    let token = home.admin.json(&[
        "staff",
        "add",
        "--name",
        "Pat Manager",
        "--role",
        "manager",
        "--home",
        "Oak House",
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    runtime().block_on(async {
        let channel = staff_channel(&home).await;
        let mut homes = api::home_service_client::HomeServiceClient::new(channel.clone());
        let status = homes
            .remove_protected_contact(with_token(
                &token,
                api::RemoveProtectedContactRequest {
                    home: "Oak House".into(),
                    contact: "999".into(),
                    reason: "testing".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "PROTECTED_CONTACT_BUILT_IN");
        assert_eq!(info.domain, "haven.homes");
        assert_eq!(info.metadata.get("clause").map(String::as_str), Some("R19"));

        let mut emergency =
            api::emergency_service_client::EmergencyServiceClient::new(channel.clone());
        let status = emergency
            .lockdown(with_token(
                &token,
                api::LockdownRequest {
                    child: home.child_id.clone(),
                    reason: "punishment".into(),
                    note: "testing".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "LOCKDOWN_REASON_NOT_PROTECTIVE");
        assert_eq!(info.metadata.get("clause").map(String::as_str), Some("RM3"));
        let fields: Vec<_> = details
            .bad_request()
            .expect("a BadRequest")
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["reason"]);
        assert!(!status.message().contains("--"), "{}", status.message());

        // Issue 15: the enum and the old words saying different things is refused, naming
        // the enum field, rather than one of them being guessed at.
        let status = emergency
            .lockdown(with_token(
                &token,
                api::LockdownRequest {
                    child: home.child_id.clone(),
                    protective_reason: api::RestrictionReason::InjuryToChild.into(),
                    reason: "property-damage".into(),
                    note: "testing".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_INPUT");
        let fields: Vec<_> = details
            .bad_request()
            .expect("a BadRequest")
            .field_violations
            .iter()
            .map(|v| v.field.clone())
            .collect();
        assert_eq!(fields, ["protective_reason"]);

        // A wrong token is refused with its own reason.
        let status = homes
            .list_homes(with_token("not-a-token", api::ListHomesRequest {}))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "TOKEN_INVALID"
        );
    });

    // The command line words the same refusal itself, naming its own commands and flags.
    let err = home.manager.fails(&[
        "protected-contact",
        "remove",
        "--home",
        "Oak House",
        "999",
        "--reason",
        "testing",
    ]);
    assert!(err.contains("built into Haven"), "{err}");
    assert!(err.contains("haven protected-contact list"), "{err}");
}

// clause KP2: a plan revision whose permission names no risk assessment is refused with the
// reason `PERMISSION_NEEDS_RISK_ASSESSMENT` and the clause, and a field that cannot be read is
// named by its path in the request.
#[test]
fn kp2_a_plan_without_its_risk_assessment_is_refused_with_reason_and_clause() {
    let home = Home::new();
    let token = home.admin.json(&[
        "staff",
        "add",
        "--name",
        "Pat Manager",
        "--role",
        "manager",
        "--home",
        "Oak House",
    ])["token"]
        .as_str()
        .unwrap()
        .to_string();
    let nan = |channel: api::ContactChannel| api::PlacementPlan {
        reason: "Nan asked to phone Amira after school.".into(),
        child_views: Some("Amira would like to talk to Nan.".into()),
        communication: Some(api::CommunicationSection {
            contacts: vec![api::ContactPermission {
                name: "Nan".into(),
                relationship: "grandmother".into(),
                addresses: vec![api::ContactAddress {
                    channel: channel as i32,
                    address: "07700 900123".into(),
                    app: None,
                }],
                // No risk assessment named (KP2).
                risk_assessment_id: String::new(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    runtime().block_on(async {
        let channel = staff_channel(&home).await;
        let mut plans = api::plan_service_client::PlanServiceClient::new(channel);
        let status = plans
            .revise_plan(with_token(
                &token,
                api::RevisePlanRequest {
                    child: home.child_id.clone(),
                    based_on_revision: 0,
                    plan: Some(nan(api::ContactChannel::Call)),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        let details = status.get_error_details();
        let info = details.error_info().expect("an ErrorInfo");
        assert_eq!(info.reason, "PERMISSION_NEEDS_RISK_ASSESSMENT");
        assert_eq!(info.domain, "haven.homes");
        assert_eq!(info.metadata.get("clause").map(String::as_str), Some("KP2"));

        // A channel left unset cannot be read: INVALID_INPUT, naming the field's path.
        let status = plans
            .revise_plan(with_token(
                &token,
                api::RevisePlanRequest {
                    child: home.child_id.clone(),
                    based_on_revision: 0,
                    plan: Some(nan(api::ContactChannel::Unspecified)),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let details = status.get_error_details();
        assert_eq!(
            details.error_info().expect("an ErrorInfo").reason,
            "INVALID_INPUT"
        );
        let fields: Vec<_> = details
            .bad_request()
            .expect("a BadRequest")
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(
            fields,
            ["plan.communication.contacts[0].addresses[0].channel"]
        );
    });

    // Nothing was written.
    let history = home.admin.json(&["plan", "history", &home.child_id]);
    assert_eq!(history.as_array().map(Vec::len), Some(0), "{history}");
}
