//! Pushing a new policy to exactly the devices a change affects, over their open streams.
//!
//! Devices that are offline are not queued for: when one reconnects it says which version it
//! has, and the controller sends the newest if it differs. So a push is only ever an
//! optimisation of "the device asks on reconnect", never the only way a policy arrives.
//!
//! A change to a home takes the newest policy version there is, so after it every device in
//! the home is at that version and the devices of one child share one policy: it is compiled
//! and encoded once per child (`Outgoing::Encoded`), and each of the child's connected devices
//! gets the same bytes — a reference count, not a copy or a re-encode (issue 14).

use std::collections::HashMap;
use std::time::Instant;

use haven_proto::agent::v1::{ControllerMessage, controller_message::Body};
use haven_proto::outgoing::Outgoing;

use super::{Context, convert};
use crate::domain::UnixMillis;
use crate::domain::emergency::{ActiveLockdown, LockdownTarget};
use crate::domain::filter::{HomeWeb, with_home_web};
use crate::domain::plan::CommunicationSection;
use crate::domain::policy::{PolicyInputs, compile, protected_for_child};
use crate::registry::Delivery;
use crate::store::{ChildPolicyInput, PolicyData, StoreResult};

/// How many devices a push reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushReport {
    pub sent: usize,
    pub offline: usize,
}

/// The policy `data` compiles to, before the home's web part is added.
pub fn compiled_policy(data: &PolicyData) -> crate::domain::policy::CompiledPolicy {
    // A stored revision that cannot be read compiles as no plan: the safe default, never
    // something wider than what was agreed.
    let section: Option<CommunicationSection> = data.plan.as_deref().and_then(|stored| {
        super::plan_wire::read_stored_section(stored)
            .inspect_err(|e| {
                tracing::error!(device = %data.device_id, error = %e, "stored plan revision unreadable; sending the safe default")
            })
            .ok()
    });
    let lockdowns: Vec<&ActiveLockdown> = data.lockdowns.iter().collect();
    compile(&PolicyInputs {
        version: data.version,
        issued_at: data.changed_at,
        child_name: &data.child_name,
        protected_contacts: &data.protected_contacts,
        plan: section.as_ref(),
        lockdowns: &lockdowns,
    })
}

/// The message carrying `data`'s policy with the home's web part (WB4: the categories with a
/// list installed, the home's allowed and denied sites).
pub fn policy_message(data: &PolicyData, web: &HomeWeb) -> ControllerMessage {
    ControllerMessage {
        body: Some(Body::Policy(Box::new(convert::policy(with_home_web(
            compiled_policy(data),
            web,
        ))))),
    }
}

impl Context {
    /// Sends policy `version` (made at `changed_at` by a change to the home) to every
    /// connected device in the home.
    pub async fn push_home(
        &self,
        home_id: &str,
        version: u64,
        changed_at: UnixMillis,
    ) -> StoreResult<PushReport> {
        self.announce_policy(home_id, None, None, version, changed_at);
        self.push(home_id, None, version, changed_at).await
    }

    /// Sends policy `version` (made by a change to one child's plan) to that child's
    /// connected devices.
    pub async fn push_child(
        &self,
        home_id: &str,
        child_id: &str,
        version: u64,
        changed_at: UnixMillis,
    ) -> StoreResult<PushReport> {
        self.announce_policy(home_id, Some(child_id), None, version, changed_at);
        self.push(home_id, Some(child_id), version, changed_at)
            .await
    }

    /// Sends policy `version` (made by a change to one device, e.g. a lockdown of that device
    /// only) to that device, if it is connected.
    pub async fn push_device(
        &self,
        home_id: &str,
        device_id: &str,
        version: u64,
        changed_at: UnixMillis,
    ) -> StoreResult<PushReport> {
        self.announce_policy(home_id, None, Some(device_id), version, changed_at);
        self.push_to(home_id, None, Some(device_id), version, changed_at)
            .await
    }

    /// Devices held by the other replicas hear of the change from them (`crate::cluster`).
    fn announce_policy(
        &self,
        home_id: &str,
        child_id: Option<&str>,
        device_id: Option<&str>,
        version: u64,
        changed_at: UnixMillis,
    ) {
        self.cluster.announce(crate::cluster::Event::Policy {
            home: home_id.to_string(),
            child: child_id.map(str::to_string),
            device: device_id.map(str::to_string),
            version,
            at: changed_at,
        });
    }

    async fn push(
        &self,
        home_id: &str,
        only_child: Option<&str>,
        version: u64,
        changed_at: UnixMillis,
    ) -> StoreResult<PushReport> {
        self.push_to(home_id, only_child, None, version, changed_at)
            .await
    }

    /// Sends to this replica's matching streams only: what another replica's announcement
    /// asks for.
    pub async fn push_to(
        &self,
        home_id: &str,
        only_child: Option<&str>,
        only_device: Option<&str>,
        version: u64,
        changed_at: UnixMillis,
    ) -> StoreResult<PushReport> {
        let started = Instant::now();
        crate::metrics::policy_issued(version, changed_at);
        self.limits.issued(version);
        let mut targets = self.registry.targets_in_home(home_id);
        if let Some(child) = only_child {
            targets.retain(|t| t.child_id == child);
        }
        if let Some(device) = only_device {
            targets.retain(|t| t.device_id == device);
        }
        if targets.is_empty() {
            return Ok(PushReport::default());
        }
        let inputs = self.store.home_policy_inputs(home_id).await?;
        let web = self.home_web(home_id).await?;
        let loaded = started.elapsed();
        let children: HashMap<&str, &ChildPolicyInput> = inputs
            .children
            .iter()
            .map(|c| (c.child_id.as_str(), c))
            .collect();
        // A device with a lockdown of its own gets its own compile; the others share their
        // child's.
        let own_lockdown: std::collections::HashSet<&str> = inputs
            .lockdowns
            .iter()
            .filter_map(|l| match &l.target {
                LockdownTarget::Device(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        // Encoded once per distinct policy; every device's stream gets the same bytes.
        let mut compiled: HashMap<(&str, &str), Outgoing> = HashMap::new();
        let mut report = PushReport::default();
        for target in &targets {
            let Some(child) = children.get(target.child_id.as_str()) else {
                continue;
            };
            let device_key = if own_lockdown.contains(target.device_id.as_str()) {
                target.device_id.as_str()
            } else {
                ""
            };
            let message = compiled
                .entry((target.child_id.as_str(), device_key))
                .or_insert_with(|| {
                    Outgoing::encode_once(&policy_message(
                        &PolicyData {
                            device_id: String::new(),
                            version,
                            changed_at,
                            child_name: child.name.clone(),
                            protected_contacts: protected_for_child(
                                &inputs.protected_contacts,
                                &child.child_id,
                            ),
                            plan: child.plan.clone(),
                            lockdowns: inputs
                                .lockdowns
                                .iter()
                                .filter(|l| {
                                    l.applies_to(home_id, &child.child_id, &target.device_id)
                                })
                                .cloned()
                                .collect(),
                        },
                        &web,
                    ))
                })
                .clone();
            match self.registry.offer_to(target, message) {
                Delivery::Sent => report.sent += 1,
                Delivery::Offline => report.offline += 1,
            }
        }
        crate::metrics::policy_pushed(report.sent);
        tracing::info!(
            home = home_id,
            version,
            sent = report.sent,
            offline = report.offline,
            load_us = loaded.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "policy pushed"
        );
        Ok(report)
    }
}
