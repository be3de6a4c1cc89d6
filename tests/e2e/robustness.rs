//! Bad input gets a clear error and loses nothing; the controller stops cleanly and tells
//! load balancers and tools how it is.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use haven_proto::agent::v1::{EnrollRequest, agent_service_client::AgentServiceClient};
use haven_proto::trust::CONTROLLER_TLS_NAME;
use haven_tests::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

async fn anonymous_channel(home: &Home) -> Channel {
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

/// Sends raw bytes as a gRPC message, to see what the controller does with garbage.
#[derive(Default, Clone)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

#[test]
fn malformed_and_oversized_messages_get_a_clean_error_and_the_controller_carries_on() {
    let home = Home::new();
    runtime().block_on(async {
        let channel = anonymous_channel(&home).await;

        // Bytes that are not a protobuf message at all.
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let err = grpc
            .unary::<Vec<u8>, Vec<u8>, _>(
                tonic::Request::new(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]),
                PathAndQuery::from_static("/haven.agent.v1.AgentService/Enroll"),
                RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err:?}");

        let mut client = AgentServiceClient::new(channel.clone());
        // A well-formed message with a certificate request that is not one.
        let code = home.enrollment_code();
        let err = client
            .enroll(EnrollRequest {
                code: code.clone(),
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nnonsense\n".into(),
                inventory: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("not valid"), "{}", err.message());

        // A message far larger than anything Haven sends.
        let err = client
            .enroll(EnrollRequest {
                code: code.clone(),
                csr_pem: "x".repeat(2 * 1024 * 1024),
                inventory: None,
            })
            .await
            .unwrap_err();
        // tonic refuses before decoding and names the limit.
        assert!(
            matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
            "{err:?}"
        );
        assert!(err.message().contains("too large"), "{}", err.message());
    });
    // Nothing was half-written: the code still works and no device was made.
    assert_eq!(home.devices().len(), 0);
    let agent = Agent::new(&home.path("tablet"));
    assert!(agent.enroll(&home.controller, &home.enrollment_code()).ok);
    assert_eq!(home.devices().len(), 1);
}

#[test]
fn bad_input_is_refused_in_one_line_and_writes_nothing() {
    let home = Home::new();
    let audit_before = audit_rows(&home);
    let cases: &[(&[&str], &str)] = &[
        (&["child", "show", "Nobody"], "no child called"),
        (&["device", "enroll", "Nobody"], "no child called"),
        (&["device", "show", "dev-nothere"], "no device called"),
        (
            &[
                "child",
                "add",
                "--home",
                "Nowhere",
                "--name",
                "X",
                "--dob",
                "2012-01-01",
            ],
            "no home called",
        ),
        (
            &[
                "child",
                "add",
                "--home",
                "Oak House",
                "--name",
                "X",
                "--dob",
                "17/05/2012",
            ],
            "YYYY-MM-DD",
        ),
        (
            &[
                "child",
                "add",
                "--home",
                "Oak House",
                "--name",
                "X",
                "--dob",
                "2099-01-01",
            ],
            "in the future",
        ),
        (
            &[
                "child",
                "add",
                "--home",
                "Oak House",
                "--name",
                "  ",
                "--dob",
                "2012-01-01",
            ],
            "empty",
        ),
        (&["home", "add", "oak house"], "already exists"),
        (
            &["staff", "add", "--name", "X", "--role", "boss"],
            "not a role",
        ),
        (
            &["device", "enroll", "Amira", "--valid-for", "9d"],
            "at most 7 days",
        ),
        (
            &["device", "enroll", "Amira", "--valid-for", "soon"],
            "not a length of time",
        ),
        (
            &["device", "enroll", "Amira", "--valid-for", "0m"],
            "no time at all",
        ),
    ];
    for (args, expected) in cases {
        let err = home.admin.fails(args);
        assert!(
            err.contains(expected),
            "`haven {}` said: {err}",
            args.join(" ")
        );
    }
    let err = home.manager.fails(&[
        "protected-contact",
        "add",
        "--home",
        "Oak House",
        "--name",
        "Nan",
        "--number",
        "nan's phone",
    ]);
    assert!(err.contains("not a phone number"), "{err}");
    assert_eq!(
        home.admin
            .json(&["child", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        home.admin.json(&["home", "list"]).as_array().unwrap().len(),
        1
    );
    assert_eq!(
        audit_rows(&home),
        audit_before,
        "a refused command leaves no trace in the records"
    );
}

/// How many changes the audit trail holds, read from the real database file.
fn audit_rows(home: &Home) -> i64 {
    runtime().block_on(async {
        use sqlx::{ConnectOptions, Row};
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(home.controller.data_dir.join("haven.db"))
            .read_only(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("SELECT COUNT(*) AS n FROM audit_log")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get("n")
    })
}

#[test]
fn an_unreachable_controller_is_explained() {
    let mut home = Home::new();
    home.controller.stop();
    let err = home.admin.fails(&["child", "list"]);
    assert!(err.contains("could not reach the controller"), "{err}");
}

#[test]
fn sigterm_stops_the_controller_cleanly_with_agents_connected() {
    let mut home = Home::new();
    let mut agent = home.enrolled_agent("tablet");
    agent.start();
    eventually("the device online", WAIT, || {
        home.devices()
            .into_iter()
            .any(|d| d["online"] == true)
            .then_some(())
    });
    let started = Instant::now();
    let status = home.controller.stop();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "open device streams must not hold up shutdown"
    );
    assert!(
        home.controller
            .stderr
            .wait_for("database is closed", Duration::from_secs(2))
            .is_some(),
        "{}",
        home.controller.stderr.text()
    );
}

#[test]
fn the_standard_health_service_and_reflection_answer() {
    let home = Home::new();
    runtime().block_on(async {
        let channel = anonymous_channel(&home).await;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "haven.agent.v1.AgentService".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );

        // Reflection lists the staff and device services in both versions, so tools that
        // speak only v1alpha (older grpcurl, grpcio-reflection, Postman, Evans) work too.
        use tonic_reflection::pb::{v1, v1alpha};
        let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner();
        let answer = answers.message().await.unwrap().expect("a v1 answer");
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("v1 reflection did not list services: {answer:?}");
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"haven.admin.v1.ChildService"), "{names:?}");
        assert!(names.contains(&"haven.agent.v1.AgentService"), "{names:?}");

        let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let answer = answers.message().await.unwrap().expect("a v1alpha answer");
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            panic!("v1alpha reflection did not list services: {answer:?}");
        };
        let alpha: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(alpha.contains(&"haven.admin.v1.ChildService"), "{alpha:?}");
    });
}

#[test]
fn logs_can_be_json_for_log_collectors() {
    let dir = tempfile::tempdir().unwrap();
    let mut controller =
        Controller::start_with(&dir.path().join("data"), &["--log-format", "json"]);
    controller.stop();
    // The reader thread may still be taking in the last lines.
    assert!(
        controller
            .stderr
            .wait_for("database is closed", std::time::Duration::from_secs(5))
            .is_some(),
        "{}",
        controller.stderr.text()
    );
    let lines = controller.stderr.all();
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[test]
fn a_second_start_reuses_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Controller::start(&data);
    let pin = first.ca_pin();
    assert!(
        first.login_line.is_some(),
        "the first start prints the login line"
    );
    assert!(first.stdout.text().contains("first start"));
    first.stop();
    let second = Controller::start(&data);
    assert!(second.login_line.is_none());
    assert_eq!(
        second.ca_pin(),
        pin,
        "same CA: enrolled devices keep working"
    );
    assert!(second.stdout.text().contains(&pin));
}
