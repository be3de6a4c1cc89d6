//! Who a device is to its controller: the PEMs and address a sync session needs.
//!
//! A plain in-memory struct, so the same sync code serves the real agent (which loads it from
//! its state folder) and a benchmark running a thousand simulated devices in one process.

use std::fmt;

/// Everything needed to open an mTLS sync session with the controller.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// `https://host:port` of the controller.
    pub controller_url: String,
    /// The controller's certificate authority (checked against the pin at enrollment).
    pub ca_pem: String,
    /// This device's certificate, signed by the controller.
    pub cert_pem: String,
    /// This device's private key. Made on the device and never sent anywhere.
    pub key_pem: String,
    pub device_id: String,
}

// Written by hand so that the private key can never end up in a log line or error message.
impl fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("controller_url", &self.controller_url)
            .field("device_id", &self.device_id)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// When the certificate in `cert_pem` stops being valid, in Unix milliseconds.
pub fn certificate_not_after(cert_pem: &str) -> Option<i64> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    cert.validity().not_after.timestamp().checked_mul(1000)
}

/// Whether the certificate in `cert_pem` is for the private key in `key_pem`: a renewed
/// certificate is only kept if it is for the key this device just made.
pub fn certificate_matches_key(cert_pem: &str, key_pem: &str) -> bool {
    let Ok(key) = rcgen::KeyPair::from_pem(key_pem) else {
        return false;
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

/// A Unix time in milliseconds as a person reads it ("2026-12-06 11:40 UTC").
pub fn when(unix_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(unix_ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "an unreadable date".into())
}

/// What the device says, in its log and `haven-agent status`, when its certificate expired
/// while it was offline (D7): it cannot connect again, and what to do about it.
pub fn expired_message(not_after_ms: i64) -> String {
    format!(
        "this device's certificate expired on {}: ask staff for a new enrollment code \
         (`haven device enroll`), then run `haven-agent enroll --force` with it; the policy \
         already in force stays enforced until then",
        when(not_after_ms)
    )
}

/// The expiry message when the certificate in `cert_pem` has expired at `now_ms`.
pub fn expired_at(cert_pem: &str, now_ms: i64) -> Option<String> {
    certificate_not_after(cert_pem)
        .filter(|not_after| *not_after <= now_ms)
        .map(expired_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(key: &rcgen::KeyPair, days: i64) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1)
            + std::time::Duration::from_secs(u64::try_from(days * 86_400).unwrap());
        params.self_signed(key).unwrap().pem()
    }

    #[test]
    fn d7_expiry_and_key_are_read_from_the_certificate() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = self_signed(&key, 30);
        let not_after = certificate_not_after(&cert).unwrap();
        assert_eq!(when(not_after), "2020-01-31 00:00:00 UTC");
        assert!(certificate_matches_key(&cert, &key.serialize_pem()));
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(!certificate_matches_key(&cert, &other.serialize_pem()));
        assert!(!certificate_matches_key("junk", &key.serialize_pem()));
        assert_eq!(certificate_not_after("junk"), None);
        assert_eq!(expired_at(&cert, not_after - 1), None);
        let message = expired_at(&cert, not_after).unwrap();
        assert!(
            message.contains("certificate expired on 2020-01-31")
                && message.contains("ask staff for a new enrollment code"),
            "{message}"
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let id = DeviceIdentity {
            controller_url: "https://x:1".into(),
            ca_pem: String::new(),
            cert_pem: String::new(),
            key_pem: "-----BEGIN PRIVATE KEY----- secret".into(),
            device_id: "dev-1".into(),
        };
        let shown = format!("{id:?}");
        assert!(!shown.contains("secret"));
        assert!(shown.contains("dev-1"));
    }
}
