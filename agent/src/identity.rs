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

#[cfg(test)]
mod tests {
    use super::*;

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
