//! How a device or a staff laptop comes to trust a controller it has never met.
//!
//! A controller makes its own private certificate authority on first start and prints the
//! SHA-256 "pin" of that CA. Whoever is told the pin (in the login line or the enrollment
//! command) fetches the CA from the controller once, checks it against the pin, and from then
//! on verifies every connection against that CA with ordinary TLS. A stranger in the middle
//! cannot produce a CA with the same pin, so the first contact is as safe as the rest.

use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The name every controller certificate carries and every client verifies against, so that
/// devices keep working when the controller's address or IP changes. Trust comes from the
/// pinned private CA, not from public DNS names.
pub const CONTROLLER_TLS_NAME: &str = "controller.haven.internal";

const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why trusting a controller failed, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("the CA pin {0:?} is not valid: it should look like sha256: followed by 64 hex digits")]
    BadPin(String),
    #[error("the controller address {0:?} is not valid: use https://host:port")]
    BadAddress(String),
    #[error("could not reach the controller at {addr}: {cause}")]
    Unreachable { addr: String, cause: std::io::Error },
    #[error("the TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error(
        "the controller at {addr} did not present a certificate authority matching the pin; \
         check the pin and the address (you may be talking to the wrong server)"
    )]
    PinMismatch { addr: String },
}

/// `sha256:<hex>` of a DER certificate.
pub fn pin_of(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Checks that a pin is well formed and returns it in canonical lower-case form.
pub fn parse_pin(pin: &str) -> Result<String, TrustError> {
    let trimmed = pin.trim();
    let hex_part = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    if hex_part.len() != 64 || !hex_part.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(TrustError::BadPin(pin.to_string()));
    }
    Ok(format!("sha256:{}", hex_part.to_ascii_lowercase()))
}

/// Splits `https://host:port` into `(host, port)`.
pub fn host_port(url: &str) -> Result<(String, u16), TrustError> {
    let bad = || TrustError::BadAddress(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(bad)?;
        (h.to_string(), p.strip_prefix(':').unwrap_or("443"))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), "443"),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = port.parse().map_err(|_| bad())?;
    Ok((host, port))
}

/// Connects to the controller once, takes the certificate authority it presents, and returns
/// it as PEM if and only if it matches `pin`.
pub async fn fetch_pinned_ca(url: &str, pin: &str) -> Result<String, TrustError> {
    let pin = parse_pin(pin)?;
    let (host, port) = host_port(url)?;
    let addr = format!("{host}:{port}");
    let recorder = Arc::new(ChainRecorder::default());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrustError::Handshake {
            addr: addr.clone(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // Bounded waits: a person at a tablet should hear back within seconds, not minutes.
    let tcp = tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        .map_err(|cause| TrustError::Unreachable {
            addr: addr.clone(),
            cause,
        })?;
    let name = ServerName::try_from(CONTROLLER_TLS_NAME).expect("constant is a valid DNS name");
    let mut tls = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the controller did not answer in time",
            ))
        })
        .map_err(|e| TrustError::Handshake {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
    // Close politely; the controller should not log a broken connection for a pin check.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    let chain = recorder.chain.lock().map(|c| c.clone()).unwrap_or_default();
    chain
        .iter()
        .find(|der| pin_of(der) == pin)
        .map(|der| der_to_pem(der))
        .ok_or(TrustError::PinMismatch { addr })
}

/// PEM-encodes one DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    const LINE: usize = 64;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(LINE) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Accepts any chain during the one pin-checking handshake and remembers it; the pin check
/// happens afterwards, and nothing is sent over this connection.
#[derive(Debug, Default)]
struct ChainRecorder {
    chain: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            chain.push(end_entity.to_vec());
            chain.extend(intermediates.iter().map(|c| c.to_vec()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_canonicalised_and_checked() {
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_pin(&format!("sha256:{hex}")).unwrap(),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert!(parse_pin("sha256:abc").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            host_port("https://127.0.0.1:7443").unwrap(),
            ("127.0.0.1".into(), 7443)
        );
        assert_eq!(
            host_port("https://haven.local").unwrap(),
            ("haven.local".into(), 443)
        );
        assert_eq!(host_port("https://[::1]:9/").unwrap(), ("::1".into(), 9));
        assert!(host_port("http://x:1").is_err());
        assert!(host_port("https://:1").is_err());
    }
}
