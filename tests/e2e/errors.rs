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
#[test]
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
