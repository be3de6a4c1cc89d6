//! Acting on what the other controllers sharing the database announce (`crate::cluster`):
//! push to this replica's own streams, end revoked devices' and staff's streams, keep lockdown
//! progress and the live violations feed whole.

use std::sync::Arc;

use base64::Engine as _;
use prost::Message as _;
use tokio::sync::mpsc;

use super::Context;
use crate::cluster::{Arrival, Event};

impl Context {
    /// Ends a member of staff's open streams on every replica.
    pub fn withdraw_staff(&self, staff_id: &str) {
        self.sessions.withdraw(staff_id);
        self.cluster.announce(Event::StaffWithdrawn {
            staff: staff_id.to_string(),
        });
    }

    /// Whether the device has a stream to this replica or another.
    pub fn is_online_anywhere(&self, device_id: &str) -> bool {
        self.registry.is_online(device_id) || self.cluster.online_elsewhere(device_id)
    }

    /// [`Self::is_online_anywhere`] for each of `devices`, under one lock of each kind.
    pub fn online_anywhere_of(&self, devices: &[&str]) -> Vec<bool> {
        let here = self.registry.online_of(devices.iter().copied());
        let elsewhere = self.cluster.online_elsewhere_of(devices.iter().copied());
        here.into_iter()
            .zip(elsewhere)
            .map(|(h, e)| h || e)
            .collect()
    }
}

/// Applies every arrival until the cluster stops.
pub async fn serve(ctx: Arc<Context>, mut arrivals: mpsc::Receiver<Arrival>) {
    while let Some(arrival) = arrivals.recv().await {
        apply(&ctx, arrival).await;
    }
}

async fn apply(ctx: &Arc<Context>, arrival: Arrival) {
    match arrival {
        Arrival::Events(events) => {
            for event in events {
                apply_event(ctx, event).await;
            }
        }
        Arrival::Joined => announce_held(ctx),
        Arrival::Resync => {
            announce_held(ctx);
            catch_up(ctx).await;
        }
    }
}

async fn apply_event(ctx: &Arc<Context>, event: Event) {
    match event {
        Event::Policy {
            home,
            child,
            device,
            version,
            at,
        } => {
            if let Err(e) = ctx
                .push_to(&home, child.as_deref(), device.as_deref(), version, at)
                .await
            {
                // The device still gets it at its next connection.
                tracing::warn!(home = %home, version, error = %e, "could not push another controller's change");
            }
        }
        Event::DeviceRevoked { device, reason } => ctx.registry.retire(&device, &reason),
        Event::StaffWithdrawn { staff } => ctx.sessions.withdraw(&staff),
        Event::FilterLists => {
            ctx.filters.changed();
            ctx.push_lists();
        }
        Event::Applied {
            device,
            version,
            failed,
        } => ctx.acks.applied(&device, version, failed),
        Event::Watch { event } => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(event)
                .ok()
                .and_then(|b| haven_proto::admin::v1::ViolationEvent::decode(b.as_slice()).ok())
                .and_then(super::violations::Event::from_wire);
            if let Some(e) = decoded {
                ctx.watch.publish_here(e);
            }
        }
        // Presence and liveness are the cluster module's own.
        Event::Online { .. } | Event::Offline { .. } | Event::Alive | Event::Joined => {}
    }
}

/// Tells the others which devices this replica holds.
fn announce_held(ctx: &Context) {
    for device in ctx.registry.held() {
        ctx.cluster.announce(Event::Online { device });
    }
}

/// Announcements may have been missed: send each held device the newest policy if the one it
/// last acknowledged is older (the reconnect rule, applied to the streams already open).
async fn catch_up(ctx: &Arc<Context>) {
    // Many held devices share a home: read each home's web part once.
    let mut webs = std::collections::HashMap::new();
    for device_id in ctx.registry.held() {
        let (Ok(Some(data)), Ok(device)) = (
            ctx.store.policy_data_for_device(&device_id).await,
            ctx.store.find_device(&device_id).await,
        ) else {
            continue;
        };
        if data.version == device.applied_version {
            continue;
        }
        let web = match webs.get(&device.home_id) {
            Some(web) => web,
            None => {
                let Ok(web) = ctx.home_web(&device.home_id).await else {
                    continue;
                };
                webs.entry(device.home_id.clone()).or_insert(web)
            }
        };
        if let Some(outbox) = ctx.registry.outbox(&device_id) {
            let _ = outbox.try_send(Ok(super::fanout::policy_message(&data, web).into()));
        }
    }
}
