//! Pushing a new policy to exactly the devices a change affects, over their open streams.
//!
//! Devices that are offline are not queued for: when one reconnects it says which version it
//! has, and the controller sends the newest if it differs. So a push is only ever an
//! optimisation of "the device asks on reconnect", never the only way a policy arrives.

use haven_proto::agent::v1::{ControllerMessage, controller_message::Body};

use super::{Context, convert};
use crate::domain::policy::{PolicyInputs, compile};
use crate::registry::Delivery;
use crate::store::{PolicyData, StoreResult};

/// How many devices a push reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushReport {
    pub sent: usize,
    pub offline: usize,
}

pub fn policy_message(data: &PolicyData) -> ControllerMessage {
    let compiled = compile(&PolicyInputs {
        version: data.version,
        issued_at: data.changed_at,
        child_name: &data.child_name,
        protected_contacts: &data.protected_contacts,
    });
    ControllerMessage {
        body: Some(Body::Policy(convert::policy(compiled))),
    }
}

impl Context {
    /// Sends the current policy to every connected device in a home.
    pub async fn push_home(&self, home_id: &str) -> StoreResult<PushReport> {
        let started = std::time::Instant::now();
        let data = self.store.policy_data_for_home(home_id).await?;
        let loaded = started.elapsed();
        let mut report = PushReport::default();
        for d in &data {
            if !self.registry.is_online(&d.device_id) {
                report.offline += 1;
                continue;
            }
            match self.registry.offer(&d.device_id, policy_message(d)) {
                Delivery::Sent => report.sent += 1,
                Delivery::Offline => report.offline += 1,
            }
        }
        tracing::info!(
            home = home_id,
            sent = report.sent,
            offline = report.offline,
            load_us = loaded.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "policy pushed"
        );
        Ok(report)
    }
}
