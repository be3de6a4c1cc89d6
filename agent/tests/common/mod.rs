//! A fake controller for the agent's integration tests: it does only what the wire contract
//! says, with a real private CA, real TLS and real client certificates.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use haven_proto::agent::v1::agent_message::Body as Up;
use haven_proto::agent::v1::agent_service_server::{AgentService, AgentServiceServer};
use haven_proto::agent::v1::{AgentMessage, ControllerMessage, EnrollRequest, EnrollResponse};
use haven_proto::trust::{CONTROLLER_TLS_NAME, pin_of};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

pub const CODE: &str = "K7QD-M2XP-9HTR";
pub const WAIT: Duration = Duration::from_secs(10);

/// One sync stream as the test sees it.
pub struct Session {
    pub to_agent: mpsc::Sender<Result<ControllerMessage, Status>>,
    pub from_agent: Streaming<AgentMessage>,
}

struct FakeController {
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    sessions: mpsc::UnboundedSender<Session>,
}

#[tonic::async_trait]
impl AgentService for FakeController {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let request = request.into_inner();
        if request.code != CODE {
            return Err(Status::not_found("unknown or expired enrollment code"));
        }
        assert!(request.inventory.is_some(), "enrollment carries inventory");
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(&request.csr_pem)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        csr.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = rcgen::Issuer::new(self.ca_params.clone(), &self.ca_key);
        let cert = csr
            .signed_by(&issuer)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(EnrollResponse {
            device_id: "dev-1".into(),
            certificate_pem: cert.pem(),
            ca_certificate_pem: String::new(),
            child_display_name: "Sam".into(),
        }))
    }

    type SyncStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn sync(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        // The device is known from its verified certificate, never from what it says.
        if request.peer_certs().is_none_or(|c| c.is_empty()) {
            return Err(Status::permission_denied("this device has been revoked"));
        }
        let (tx, rx) = mpsc::channel(16);
        let _ = self.sessions.send(Session {
            to_agent: tx,
            from_agent: request.into_inner(),
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub struct Controller {
    pub url: String,
    pub pin: String,
    pub sessions: mpsc::UnboundedReceiver<Session>,
}

pub async fn start_controller() -> Controller {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Haven test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params.clone(), &ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut server_params =
        rcgen::CertificateParams::new(vec![CONTROLLER_TLS_NAME.to_string()]).unwrap();
    server_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            format!("{}{}", server_cert.pem(), ca_cert.pem()),
            server_key.serialize_pem(),
        ))
        .client_ca_root(Certificate::from_pem(ca_cert.pem()))
        .client_auth_optional(true);
    let (sessions_tx, sessions) = mpsc::unbounded_channel();
    let service = FakeController {
        ca_params,
        ca_key,
        sessions: sessions_tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(AgentServiceServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Controller {
        url: format!("https://127.0.0.1:{}", addr.port()),
        pin: pin_of(ca_cert.der()),
        sessions,
    }
}

/// The next message from the agent, waiting at most `WAIT`.
pub async fn next_up(session: &mut Session) -> Up {
    let message = tokio::time::timeout(WAIT, session.from_agent.message())
        .await
        .expect("agent answers in time")
        .expect("stream stays healthy")
        .expect("stream stays open");
    message.body.expect("message has a body")
}

/// The next message that is not a heartbeat.
pub async fn next_non_heartbeat(session: &mut Session) -> Up {
    loop {
        match next_up(session).await {
            Up::Heartbeat(_) => continue,
            other => return other,
        }
    }
}

/// The next sync session the agent opens.
pub async fn next_session(controller: &mut Controller) -> Session {
    tokio::time::timeout(WAIT, controller.sessions.recv())
        .await
        .expect("agent connects in time")
        .expect("controller is running")
}
