//! Enrollment: trading a one-time code from staff for a device certificate.
//!
//! The device makes its own private key and sends only a certificate signing request, so the
//! key never leaves the device. The call goes over TLS verified against the pinned CA, without
//! a client certificate (the device has none yet); the code is what authorises it.

use std::time::Duration;

use haven_proto::agent::v1::agent_service_client::AgentServiceClient;
use haven_proto::agent::v1::{EnrollRequest, Inventory};
use haven_proto::trust::TrustError;
use tonic::Code;

use crate::identity::DeviceIdentity;
use crate::net::{self, EndpointError};

/// How long the whole enrollment call may take once connected.
const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why enrolling failed, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("could not create this device's key: {0}")]
    Key(String),
    #[error("the controller address {0:?} is not valid: use https://host:port")]
    BadAddress(String),
    #[error("the controller's certificate authority could not be used: {0}")]
    BadCa(String),
    #[error("could not connect to the controller at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "the controller did not accept the enrollment code ({reason}); check the code, or ask \
         staff for a new one with `haven device enroll` (codes work once and expire)"
    )]
    Refused { reason: String },
    #[error("the controller could not enroll this device: {reason}; try again in a moment")]
    Failed { reason: String },
    #[error(
        "the controller's answer could not be used ({0}); try again, and tell whoever looks \
         after the controller if it keeps happening"
    )]
    BadResponse(String),
}

/// A successful enrollment: the identity to sync with, and whom the device is for.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub identity: DeviceIdentity,
    pub child_display_name: String,
}

/// Enrolls a device and returns its identity. See [`enroll_device`] for the child's name too.
pub async fn enroll(
    url: &str,
    ca_pem: &str,
    code: &str,
    inventory: Inventory,
) -> Result<DeviceIdentity, EnrollError> {
    enroll_device(url, ca_pem, code, inventory)
        .await
        .map(|e| e.identity)
}

/// Makes a new key pair, asks the controller at `url` (trusted through `ca_pem`) to certify
/// it with the one-time `code`, and returns everything needed to sync. Nothing is written to
/// disk: the caller decides where (if anywhere) to keep the identity.
pub async fn enroll_device(
    url: &str,
    ca_pem: &str,
    code: &str,
    inventory: Inventory,
) -> Result<Enrollment, EnrollError> {
    let (key_pem, csr_pem) = new_key_and_csr()?;
    let endpoint = net::endpoint(url, net::tls_config(ca_pem, None))
        .map_err(|e| match e {
            EndpointError::BadAddress(u) => EnrollError::BadAddress(u),
            EndpointError::Tls(reason) => EnrollError::BadCa(reason),
        })?
        .timeout(ENROLL_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| EnrollError::Connect {
        url: url.to_string(),
        reason: net::error_chain(&e),
    })?;
    let request = EnrollRequest {
        // Codes are read aloud and typed by hand: stray spaces must not make them fail.
        code: code.trim().to_string(),
        csr_pem,
        inventory: Some(inventory),
    };
    let response = AgentServiceClient::new(channel)
        .enroll(request)
        .await
        .map_err(|status| classify(url, &status))?
        .into_inner();
    if response.device_id.trim().is_empty() {
        return Err(EnrollError::BadResponse("no device id".into()));
    }
    if !response
        .certificate_pem
        .contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(EnrollError::BadResponse("no device certificate".into()));
    }
    Ok(Enrollment {
        identity: DeviceIdentity {
            controller_url: url.to_string(),
            // Keep the CA that was checked against the pin: it is what the controller's own
            // certificate must chain to on every later connection.
            ca_pem: ca_pem.to_string(),
            cert_pem: response.certificate_pem,
            key_pem,
            device_id: response.device_id,
        },
        child_display_name: response.child_display_name,
    })
}

/// A fresh ECDSA P-256 key and a CSR for it, both PEM. The CSR's name does not matter: the
/// controller decides the certificate's subject.
pub fn new_key_and_csr() -> Result<(String, String), EnrollError> {
    new_key_and_csr_for("haven-agent")
}

/// A fresh ECDSA P-256 key and a CSR naming `common_name`: a renewal names the device's own
/// id, which the controller checks against the certificate the stream was opened with.
pub fn new_key_and_csr_for(common_name: &str) -> Result<(String, String), EnrollError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))?;
    Ok((key.serialize_pem(), csr))
}

fn classify(url: &str, status: &tonic::Status) -> EnrollError {
    let reason = net::describe_status(status);
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::FailedPrecondition
        | Code::AlreadyExists => EnrollError::Refused { reason },
        Code::Unavailable | Code::DeadlineExceeded => EnrollError::Connect {
            url: url.to_string(),
            reason,
        },
        _ => EnrollError::Failed { reason },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_p256_key_and_a_csr() {
        let (key, csr) = new_key_and_csr().unwrap();
        assert!(key.contains("PRIVATE KEY"));
        assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        assert_eq!(
            parsed.public_key.algorithm(),
            &rcgen::PKCS_ECDSA_P256_SHA256
        );
        // Two enrollments never share a key.
        assert_ne!(new_key_and_csr().unwrap().0, key);
    }

    #[test]
    fn refusals_tell_the_user_to_get_a_new_code() {
        let e = classify("https://x:1", &tonic::Status::not_found("unknown code"));
        assert!(matches!(e, EnrollError::Refused { .. }));
        assert!(e.to_string().contains("unknown code"));
        assert!(matches!(
            classify("https://x:1", &tonic::Status::unavailable("down")),
            EnrollError::Connect { .. }
        ));
    }

    #[tokio::test]
    async fn unreachable_controller_is_a_connect_error() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let err = enroll("https://127.0.0.1:1", "", "K7QD", Inventory::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, EnrollError::Connect { .. } | EnrollError::BadCa(_)),
            "{err}"
        );
    }
}
