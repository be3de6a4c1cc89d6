//! Building TLS connections to the controller, and describing their failures in plain words.
//!
//! Every connection verifies the controller against the pinned CA under the fixed name
//! `CONTROLLER_TLS_NAME`, so a device keeps working when the controller's address changes.

use std::error::Error as StdError;
use std::time::Duration;

use haven_proto::trust::{CONTROLLER_TLS_NAME, host_port};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long to wait for TCP + TLS before giving up on one attempt.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an endpoint could not be set up at all (as opposed to a failed connection attempt).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error("the controller address {0:?} is not valid: use https://host:port")]
    BadAddress(String),
    #[error("{0}")]
    Tls(String),
}

/// TLS settings trusting only `ca_pem`, optionally presenting a device certificate.
pub(crate) fn tls_config(ca_pem: &str, identity: Option<(&str, &str)>) -> ClientTlsConfig {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(CONTROLLER_TLS_NAME)
        // A server that accepts TCP but never finishes the handshake must not hang a device.
        .timeout(CONNECT_TIMEOUT);
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    tls
}

/// An endpoint for `url` with `tls`; fails only on a bad address or unusable certificates.
/// The controller addresses a device was enrolled with: one, or every replica's, separated by
/// commas (tried in turn, so a device moves to another replica when one dies).
pub fn controller_urls(list: &str) -> Vec<String> {
    list.split([',', ' ', '\n'])
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

pub(crate) fn endpoint(url: &str, tls: ClientTlsConfig) -> Result<Endpoint, EndpointError> {
    host_port(url).map_err(|_| EndpointError::BadAddress(url.to_string()))?;
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|_| EndpointError::BadAddress(url.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT);
    endpoint
        .tls_config(tls)
        .map_err(|e| EndpointError::Tls(error_chain(&e)))
}

/// `e` and all its sources as one line ("a: b: c"), skipping repeats. Never Debug output.
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        let text = text.trim_end_matches('.');
        // tonic wraps every cause in a bare "transport error", which tells a person nothing.
        if !text.is_empty() && text != "transport error" && !parts.iter().any(|p| p.contains(text))
        {
            parts.push(text.to_string());
        }
        next = err.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}

/// A gRPC status in plain words: its message and whatever caused it.
/// (`Status`'s own `Display` includes Debug output, which must never reach a person.)
pub(crate) fn describe_status(status: &tonic::Status) -> String {
    let mut text = if status.message().is_empty() {
        status.code().description().to_string()
    } else {
        status.message().to_string()
    };
    if let Some(source) = status.source() {
        let cause = error_chain(source);
        if !cause.is_empty() && !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_controllers_are_read_in_order() {
        assert_eq!(
            controller_urls(" https://a:7443/, https://b:7443 ,,"),
            vec!["https://a:7443", "https://b:7443"]
        );
        assert_eq!(controller_urls("https://a:7443"), vec!["https://a:7443"]);
    }

    #[test]
    fn error_chains_read_as_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let status = tonic::Status::unavailable("could not connect");
        assert_eq!(describe_status(&status), "could not connect");
        assert_eq!(error_chain(&io), "connection refused");
        let bare = tonic::Status::new(tonic::Code::PermissionDenied, "");
        assert!(!describe_status(&bare).is_empty());
    }

    #[test]
    fn bad_addresses_are_rejected_before_connecting() {
        let tls = tls_config("not a pem", None);
        assert!(matches!(
            endpoint("http://x:1", tls),
            Err(EndpointError::BadAddress(_))
        ));
    }
}
