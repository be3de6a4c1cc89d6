//! ModemManager's D-Bus names, as its introspection XML defines them
//! (`introspection/org.freedesktop.ModemManager1.Modem.Voice.xml`, `…Call.xml`,
//! `…Modem.Messaging.xml`, `…Sms.xml` in ModemManager's source), and the few facts the guard
//! reads from a call or a text.
//!
//! Only what the guard uses is declared. A text's `Text` property is never read here: the
//! guard decides on the number alone, and only [`super::phone`] reads a text's words, for the
//! child, when the child asks for their inbox.

use std::collections::HashMap;

use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// ModemManager's well-known bus name.
pub const SERVICE: &str = "org.freedesktop.ModemManager1";
/// Where ModemManager's object manager lists its modems.
pub const MANAGER_PATH: &str = "/org/freedesktop/ModemManager1";
pub const VOICE: &str = "org.freedesktop.ModemManager1.Modem.Voice";
pub const MESSAGING: &str = "org.freedesktop.ModemManager1.Modem.Messaging";
pub const CALL: &str = "org.freedesktop.ModemManager1.Call";
pub const SMS: &str = "org.freedesktop.ModemManager1.Sms";

/// `MMCallState`.
pub mod call_state {
    pub const UNKNOWN: i32 = 0;
    pub const DIALING: i32 = 1;
    pub const RINGING_OUT: i32 = 2;
    pub const RINGING_IN: i32 = 3;
    pub const ACTIVE: i32 = 4;
    pub const HELD: i32 = 5;
    pub const WAITING: i32 = 6;
    pub const TERMINATED: i32 = 7;
}

/// `MMCallDirection`.
pub mod call_direction {
    pub const UNKNOWN: i32 = 0;
    pub const INCOMING: i32 = 1;
    pub const OUTGOING: i32 = 2;
}

/// `MMSmsState`.
pub mod sms_state {
    pub const UNKNOWN: u32 = 0;
    pub const STORED: u32 = 1;
    pub const RECEIVING: u32 = 2;
    pub const RECEIVED: u32 = 3;
    pub const SENDING: u32 = 4;
    pub const SENT: u32 = 5;
}

#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Voice",
    default_service = "org.freedesktop.ModemManager1",
    gen_blocking = false
)]
pub trait Voice {
    fn list_calls(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    fn create_call(&self, properties: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn call_added(&self, path: ObjectPath<'_>) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Modem.Messaging",
    default_service = "org.freedesktop.ModemManager1",
    gen_blocking = false
)]
pub trait Messaging {
    fn list(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
    fn delete(&self, path: &ObjectPath<'_>) -> zbus::Result<()>;
    fn create(&self, properties: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedObjectPath>;
    #[zbus(signal)]
    fn added(&self, path: ObjectPath<'_>, received: bool) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Call",
    default_service = "org.freedesktop.ModemManager1",
    gen_blocking = false
)]
pub trait Call {
    fn start(&self) -> zbus::Result<()>;
    fn accept(&self) -> zbus::Result<()>;
    fn hangup(&self) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.ModemManager1.Sms",
    default_service = "org.freedesktop.ModemManager1",
    gen_blocking = false
)]
pub trait Sms {
    fn send(&self) -> zbus::Result<()>;
}

/// What the guard needs to know about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFacts {
    pub number: String,
    pub direction: i32,
    pub state: i32,
}

impl CallFacts {
    pub fn incoming(&self) -> bool {
        self.direction == call_direction::INCOMING
    }

    pub fn finished(&self) -> bool {
        self.state == call_state::TERMINATED
    }
}

/// What the guard needs to know about a text: never its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsFacts {
    pub number: String,
    pub state: u32,
}

impl SmsFacts {
    pub fn received(&self) -> bool {
        matches!(self.state, sms_state::RECEIVING | sms_state::RECEIVED)
    }
}

fn text(props: &HashMap<String, OwnedValue>, name: &str) -> String {
    props
        .get(name)
        .and_then(|v| v.downcast_ref::<&str>().ok().map(str::to_string))
        .unwrap_or_default()
}

fn int(props: &HashMap<String, OwnedValue>, name: &str) -> i32 {
    props
        .get(name)
        .and_then(|v| v.downcast_ref::<i32>().ok())
        .unwrap_or_default()
}

fn uint(props: &HashMap<String, OwnedValue>, name: &str) -> u32 {
    props
        .get(name)
        .and_then(|v| v.downcast_ref::<u32>().ok())
        .unwrap_or_default()
}

async fn properties(
    conn: &zbus::Connection,
    path: &ObjectPath<'_>,
) -> zbus::Result<zbus::fdo::PropertiesProxy<'static>> {
    zbus::fdo::PropertiesProxy::builder(conn)
        .destination(SERVICE)?
        .path(path.to_owned())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

/// Reads a call's number, direction and state in one round trip.
pub async fn call_facts(conn: &zbus::Connection, path: &ObjectPath<'_>) -> zbus::Result<CallFacts> {
    let all = properties(conn, path)
        .await?
        .get_all(zbus::names::InterfaceName::from_static_str_unchecked(CALL))
        .await?;
    Ok(CallFacts {
        number: text(&all, "Number"),
        direction: int(&all, "Direction"),
        state: int(&all, "State"),
    })
}

/// Reads a text's number and state (two properties, not `GetAll`, so its words are never
/// fetched by the guard).
pub async fn sms_facts(conn: &zbus::Connection, path: &ObjectPath<'_>) -> zbus::Result<SmsFacts> {
    let props = properties(conn, path).await?;
    let iface = zbus::names::InterfaceName::from_static_str_unchecked(SMS);
    let number = props.get(iface.clone(), "Number").await?;
    let state = props.get(iface, "State").await?;
    Ok(SmsFacts {
        number: number
            .downcast_ref::<&str>()
            .map(str::to_string)
            .unwrap_or_default(),
        state: state.downcast_ref::<u32>().unwrap_or_default(),
    })
}

/// A received text as the child's inbox shows it: the words are read here, on the child's
/// request, and handed straight to them.
pub async fn sms_for_child(
    conn: &zbus::Connection,
    path: &ObjectPath<'_>,
) -> zbus::Result<(SmsFacts, String, String)> {
    let all = properties(conn, path)
        .await?
        .get_all(zbus::names::InterfaceName::from_static_str_unchecked(SMS))
        .await?;
    let facts = SmsFacts {
        number: text(&all, "Number"),
        state: uint(&all, "State"),
    };
    Ok((facts, text(&all, "Text"), text(&all, "Timestamp")))
}

pub async fn voice(
    conn: &zbus::Connection,
    modem: &ObjectPath<'_>,
) -> zbus::Result<VoiceProxy<'static>> {
    VoiceProxy::builder(conn)
        .path(modem.to_owned())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

pub async fn messaging(
    conn: &zbus::Connection,
    modem: &ObjectPath<'_>,
) -> zbus::Result<MessagingProxy<'static>> {
    MessagingProxy::builder(conn)
        .path(modem.to_owned())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

pub async fn call(
    conn: &zbus::Connection,
    path: &ObjectPath<'_>,
) -> zbus::Result<CallProxy<'static>> {
    CallProxy::builder(conn)
        .path(path.to_owned())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

pub async fn sms(
    conn: &zbus::Connection,
    path: &ObjectPath<'_>,
) -> zbus::Result<SmsProxy<'static>> {
    SmsProxy::builder(conn)
        .path(path.to_owned())?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
}

/// The modems ModemManager lists now, by what they can do.
#[derive(Debug, Default)]
pub struct Modems {
    /// Modems with the Voice interface (calls).
    pub voice: Vec<OwnedObjectPath>,
    /// Modems with the Messaging interface (texts).
    pub messaging: Vec<OwnedObjectPath>,
}

/// The modems ModemManager lists now (through its object manager).
pub async fn modems(conn: &zbus::Connection) -> zbus::Result<Modems> {
    let manager = zbus::fdo::ObjectManagerProxy::builder(conn)
        .destination(SERVICE)?
        .path(MANAGER_PATH)?
        .build()
        .await?;
    let objects = manager.get_managed_objects().await?;
    let mut voice = Vec::new();
    let mut messaging = Vec::new();
    for (path, interfaces) in objects {
        if interfaces.keys().any(|i| i.as_str() == VOICE) {
            voice.push(path.clone());
        }
        if interfaces.keys().any(|i| i.as_str() == MESSAGING) {
            messaging.push(path);
        }
    }
    voice.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    messaging.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(Modems { voice, messaging })
}
