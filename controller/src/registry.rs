//! Which devices are connected right now, and the way to reach each one's open stream.
//!
//! The registry holds the only strong sender of each device's outgoing stream: removing a
//! device from the registry ends its stream, which is how a revoked device is disconnected at
//! once and how shutdown closes every stream.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use haven_proto::agent::v1::ControllerMessage;
use haven_proto::outgoing::Outgoing;
use tokio::sync::mpsc;
use tonic::Status;

/// A device's outgoing stream: messages made for it, or bytes encoded once and shared.
pub type Outbox = mpsc::Sender<Result<Outgoing, Status>>;

struct Connection {
    id: u64,
    home_id: String,
    child_id: String,
    outbox: Outbox,
}

/// A connected device a push should reach.
pub struct Target {
    pub device_id: String,
    pub child_id: String,
    pub outbox: Outbox,
}

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    connections: RwLock<HashMap<String, Connection>>,
    closed: std::sync::atomic::AtomicBool,
}

/// What happened when a message was offered to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Offline,
}

impl Registry {
    /// Registers a device's new stream, replacing (and so closing) any older one. Returns the
    /// connection id to pass to `remove`, or `None` once the controller is shutting down.
    pub fn insert(
        &self,
        device_id: &str,
        home_id: &str,
        child_id: &str,
        outbox: Outbox,
    ) -> Option<u64> {
        if self.closed.load(Ordering::SeqCst) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut map = self.connections.write().unwrap_or_else(|e| e.into_inner());
        map.insert(
            device_id.to_string(),
            Connection {
                id,
                home_id: home_id.to_string(),
                child_id: child_id.to_string(),
                outbox,
            },
        );
        Some(id)
    }

    /// The connected devices of a home's children: whom a change to the home must reach.
    pub fn targets_in_home(&self, home_id: &str) -> Vec<Target> {
        let map = self.connections.read().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, c)| c.home_id == home_id)
            .map(|(device_id, c)| Target {
                device_id: device_id.clone(),
                child_id: c.child_id.clone(),
                outbox: c.outbox.clone(),
            })
            .collect()
    }

    /// Forgets a stream when it ends, unless a newer stream of the same device replaced it.
    pub fn remove(&self, device_id: &str, connection_id: u64) {
        let mut map = self.connections.write().unwrap_or_else(|e| e.into_inner());
        if map.get(device_id).is_some_and(|c| c.id == connection_id) {
            map.remove(device_id);
        }
    }

    /// Tells a connected device it has been removed (so it drops to the safe default), then
    /// ends its stream. A device that is offline is told the same when it next connects.
    pub fn retire(&self, device_id: &str, reason: &str) {
        let conn = {
            let mut map = self.connections.write().unwrap_or_else(|e| e.into_inner());
            map.remove(device_id)
        };
        if let Some(conn) = conn {
            send_retirement(&conn.outbox, reason);
        }
    }

    /// Every device with a stream here.
    pub fn held(&self) -> Vec<String> {
        let map = self.connections.read().unwrap_or_else(|e| e.into_inner());
        map.keys().cloned().collect()
    }

    pub fn is_online(&self, device_id: &str) -> bool {
        let map = self.connections.read().unwrap_or_else(|e| e.into_inner());
        map.contains_key(device_id)
    }

    /// Whether each of `devices` has a stream here, under one lock (a lockdown's progress
    /// asks about thousands of devices at a time).
    pub fn online_of<'a>(&self, devices: impl Iterator<Item = &'a str>) -> Vec<bool> {
        let map = self.connections.read().unwrap_or_else(|e| e.into_inner());
        devices.map(|d| map.contains_key(d)).collect()
    }

    /// The sender for a connected device, to send without holding the registry lock.
    pub fn outbox(&self, device_id: &str) -> Option<Outbox> {
        let map = self.connections.read().unwrap_or_else(|e| e.into_inner());
        map.get(device_id).map(|c| c.outbox.clone())
    }

    /// Offers a message to a target found with `targets_in_home`, without waiting. A device
    /// whose outbox is full is far behind: its stream is ended, so it reconnects and catches
    /// up from its version (a stalled stream must never leave a device on an old policy).
    pub fn offer_to(&self, target: &Target, message: Outgoing) -> Delivery {
        match target.outbox.try_send(Ok(message)) {
            Ok(()) => Delivery::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(device = %target.device_id, "device too far behind; asking it to reconnect");
                let mut map = self.connections.write().unwrap_or_else(|e| e.into_inner());
                map.remove(&target.device_id);
                Delivery::Offline
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Offline,
        }
    }

    /// Closes every stream and refuses new ones: the first step of shutting down.
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let mut map = self.connections.write().unwrap_or_else(|e| e.into_inner());
        map.clear();
    }
}

/// The command that tells a device it has been removed from Haven.
pub fn retire_message(reason: &str) -> ControllerMessage {
    use haven_proto::agent::v1::{Command, Retire, command::Kind, controller_message::Body};
    ControllerMessage {
        body: Some(Body::Command(Command {
            id: crate::ids::new_id("cmd"),
            kind: Some(Kind::Retire(Retire {
                reason: reason.to_string(),
            })),
        })),
    }
}

/// Tells a device it was removed, then ends its stream with the reason it is refused.
pub fn send_retirement(outbox: &Outbox, reason: &str) {
    let _ = outbox.try_send(Ok(retire_message(reason).into()));
    let _ = outbox.try_send(Err(revoked_status()));
}

pub fn revoked_status() -> Status {
    Status::permission_denied(
        "this device has been removed from Haven by staff: to use it again, enroll it again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_stream_replaces_an_older_one() {
        let r = Registry::default();
        let (tx1, mut rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let first = r.insert("dev-1", "home-1", "chd-1", tx1).unwrap();
        let second = r.insert("dev-1", "home-1", "chd-1", tx2).unwrap();
        assert!(rx1.try_recv().is_err());
        r.remove("dev-1", first);
        assert!(
            r.is_online("dev-1"),
            "the old stream ending must not unregister the new one"
        );
        r.remove("dev-1", second);
        assert!(!r.is_online("dev-1"));
    }

    #[test]
    fn closing_refuses_new_streams() {
        let r = Registry::default();
        let (tx, _rx) = mpsc::channel(1);
        r.insert("dev-1", "home-1", "chd-1", tx.clone()).unwrap();
        assert_eq!(r.targets_in_home("home-1").len(), 1);
        assert_eq!(r.targets_in_home("home-2").len(), 0);
        r.close_all();
        assert!(!r.is_online("dev-1"));
        assert!(r.insert("dev-2", "home-1", "chd-1", tx).is_none());
    }
}
