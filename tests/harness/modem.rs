//! A stand-in ModemManager on a private D-Bus daemon, for the telephony guard's tests and
//! benchmark. Never the host's system bus.
//!
//! [`PrivateBus`] runs `dbus-daemon` with a configuration the test writes into a temporary
//! folder (any account may connect and own names, plus whatever policy the test includes) and
//! kills it when dropped. [`StandIn`] serves ModemManager's real names on it — the interfaces,
//! methods, properties and signals of `org.freedesktop.ModemManager1.Modem.Voice`, `.Call`,
//! `.Modem.Messaging` and `.Sms` as ModemManager's introspection XML defines them — for one
//! modem at `/org/freedesktop/ModemManager1/Modem/0`, and lets the test make calls ring and
//! texts arrive, and see what was hung up, deleted or sent.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

// The names and values below are written out again here, not taken from the agent, on purpose:
// a wrong name or number in the guard must make the tests fail, not agree with itself.
pub const SERVICE: &str = "org.freedesktop.ModemManager1";
pub const MANAGER_PATH: &str = "/org/freedesktop/ModemManager1";
pub const MODEM_PATH: &str = "/org/freedesktop/ModemManager1/Modem/0";

/// `MMCallState` values the stand-in uses.
pub mod call_state {
    pub const UNKNOWN: i32 = 0;
    pub const DIALING: i32 = 1;
    pub const RINGING_OUT: i32 = 2;
    pub const RINGING_IN: i32 = 3;
    pub const ACTIVE: i32 = 4;
    pub const TERMINATED: i32 = 7;
}

const DIRECTION_INCOMING: i32 = 1;
const DIRECTION_OUTGOING: i32 = 2;
const SMS_STORED: u32 = 1;
const SMS_RECEIVED: u32 = 3;
const SMS_SENT: u32 = 5;
/// `MMCallStateReason`.
const REASON_OUTGOING_STARTED: u32 = 1;
const REASON_INCOMING_NEW: u32 = 2;
const REASON_ACCEPTED: u32 = 3;
const REASON_TERMINATED: u32 = 4;

/// A `dbus-daemon` of the test's own, stopped when dropped.
pub struct PrivateBus {
    child: Child,
    dir: tempfile::TempDir,
    pub address: String,
}

impl PrivateBus {
    /// Starts a bus anyone on this machine may connect to, with `extra` (e.g. an
    /// `<include>` of a policy file) added to its configuration. `None`, after printing a
    /// SKIPPED line naming `test`, when `dbus-daemon` is not installed.
    pub fn start(test: &str, extra: &str) -> Option<PrivateBus> {
        if Command::new("dbus-daemon")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("SKIPPED {test}: needs dbus-daemon (apt-get install dbus, as .ci/run does)");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary folder for the bus");
        let socket = dir.path().join("bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  {extra}
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("write the bus configuration");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            // Only "cannot raise the fd limit" noise when run as root in a container.
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let mut first = String::new();
        let stdout = child.stdout.take().expect("dbus-daemon's output");
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("dbus-daemon's address");
        assert!(
            !first.trim().is_empty(),
            "dbus-daemon did not start with {}",
            config.display()
        );
        // Other accounts (the refused-account test) must reach the socket.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
        Some(PrivateBus {
            child,
            address: format!("unix:path={}", socket.display()),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
struct CallRecord {
    number: String,
    direction: i32,
    state: i32,
}

#[derive(Debug, Clone)]
struct TextRecord {
    number: String,
    text: String,
    state: u32,
}

/// Everything the stand-in modem knows, shared by its D-Bus objects and the test.
#[derive(Default)]
struct World {
    next_call: u32,
    next_text: u32,
    calls: HashMap<String, CallRecord>,
    texts: HashMap<String, TextRecord>,
    hung_up: HashMap<String, Instant>,
    rung: HashMap<String, Instant>,
    sent: Vec<(String, String)>,
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|p| p.into_inner())
}

fn string_arg(props: &HashMap<String, OwnedValue>, name: &str) -> String {
    props
        .get(name)
        .and_then(|v| v.downcast_ref::<&str>().ok().map(str::to_string))
        .unwrap_or_default()
}

fn ov(value: impl Into<Value<'static>>) -> OwnedValue {
    OwnedValue::try_from(value.into()).expect("a plain value")
}

fn owned_path(path: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(path.to_string()).expect("a valid object path")
}

/// `org.freedesktop.DBus.ObjectManager` at ModemManager's root: lists the modem only, as
/// ModemManager does (its calls and texts are exported beside it, not through it).
struct Manager {
    world: Shared,
}

#[zbus::interface(name = "org.freedesktop.DBus.ObjectManager")]
impl Manager {
    #[allow(clippy::type_complexity)]
    fn get_managed_objects(
        &self,
    ) -> HashMap<OwnedObjectPath, HashMap<String, HashMap<String, OwnedValue>>> {
        let world = lock(&self.world);
        let calls: Vec<OwnedObjectPath> = world.calls.keys().map(|p| owned_path(p)).collect();
        let texts: Vec<OwnedObjectPath> = world.texts.keys().map(|p| owned_path(p)).collect();
        let voice = HashMap::from([
            ("Calls".to_string(), ov(calls)),
            ("EmergencyOnly".to_string(), ov(false)),
        ]);
        let messaging = HashMap::from([
            ("Messages".to_string(), ov(texts)),
            ("SupportedStorages".to_string(), ov(vec![2u32])),
            ("DefaultStorage".to_string(), ov(2u32)),
        ]);
        HashMap::from([(
            owned_path(MODEM_PATH),
            HashMap::from([
                (
                    "org.freedesktop.ModemManager1.Modem.Voice".to_string(),
                    voice,
                ),
                (
                    "org.freedesktop.ModemManager1.Modem.Messaging".to_string(),
                    messaging,
                ),
            ]),
        )])
    }

    #[zbus(signal)]
    async fn interfaces_added(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces_and_properties: HashMap<String, HashMap<String, Value<'_>>>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn interfaces_removed(
        emitter: &SignalEmitter<'_>,
        object_path: ObjectPath<'_>,
        interfaces: Vec<String>,
    ) -> zbus::Result<()>;
}

/// `org.freedesktop.ModemManager1.Modem.Voice`.
struct Voice {
    world: Shared,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Voice")]
impl Voice {
    fn list_calls(&self) -> Vec<OwnedObjectPath> {
        lock(&self.world)
            .calls
            .keys()
            .map(|p| owned_path(p))
            .collect()
    }

    async fn delete_call(
        &self,
        path: ObjectPath<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        lock(&self.world).calls.remove(path.as_str());
        let _ = server.remove::<CallObject, _>(&path).await;
        Self::call_deleted(&emitter, path).await?;
        Ok(())
    }

    async fn create_call(
        &self,
        properties: HashMap<String, OwnedValue>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let number = string_arg(&properties, "number");
        if number.is_empty() {
            return Err(zbus::fdo::Error::InvalidArgs(
                "a call needs a number".into(),
            ));
        }
        let path = add_call(
            &self.world,
            server,
            number,
            DIRECTION_OUTGOING,
            call_state::UNKNOWN,
        )
        .await?;
        Self::call_added(&emitter, path.as_ref()).await?;
        Ok(path)
    }

    fn hold_and_accept(&self) {}
    fn hangup_and_accept(&self) {}

    fn hangup_all(&self) {
        let mut world = lock(&self.world);
        let now = Instant::now();
        let paths: Vec<String> = world.calls.keys().cloned().collect();
        for path in paths {
            if let Some(call) = world.calls.get_mut(&path) {
                call.state = call_state::TERMINATED;
            }
            world.hung_up.entry(path).or_insert(now);
        }
    }

    fn transfer(&self) {}
    fn call_waiting_setup(&self, _enable: bool) {}
    fn call_waiting_query(&self) -> bool {
        false
    }

    #[zbus(signal)]
    async fn call_added(emitter: &SignalEmitter<'_>, path: ObjectPath<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn call_deleted(emitter: &SignalEmitter<'_>, path: ObjectPath<'_>) -> zbus::Result<()>;

    #[zbus(property)]
    fn calls(&self) -> Vec<OwnedObjectPath> {
        self.list_calls()
    }

    #[zbus(property)]
    fn emergency_only(&self) -> bool {
        false
    }
}

async fn add_call(
    world: &Shared,
    server: &zbus::ObjectServer,
    number: String,
    direction: i32,
    state: i32,
) -> zbus::fdo::Result<OwnedObjectPath> {
    let path = {
        let mut w = lock(world);
        w.next_call += 1;
        let path = format!("/org/freedesktop/ModemManager1/Call/{}", w.next_call);
        w.calls.insert(
            path.clone(),
            CallRecord {
                number,
                direction,
                state,
            },
        );
        path
    };
    let object = CallObject {
        world: world.clone(),
        path: path.clone(),
    };
    server.at(path.as_str(), object).await?;
    Ok(owned_path(&path))
}

/// `org.freedesktop.ModemManager1.Call`.
struct CallObject {
    world: Shared,
    path: String,
}

impl CallObject {
    fn record(&self) -> CallRecord {
        lock(&self.world)
            .calls
            .get(&self.path)
            .cloned()
            .unwrap_or(CallRecord {
                number: String::new(),
                direction: 0,
                state: call_state::TERMINATED,
            })
    }

    /// Moves the call to `state`; returns the state it had.
    fn set_state(&self, state: i32) -> i32 {
        let mut world = lock(&self.world);
        let now = Instant::now();
        let old = match world.calls.get_mut(&self.path) {
            Some(call) => std::mem::replace(&mut call.state, state),
            None => call_state::TERMINATED,
        };
        if state == call_state::TERMINATED {
            world.hung_up.entry(self.path.clone()).or_insert(now);
        }
        old
    }
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Call")]
impl CallObject {
    async fn start(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        let old = self.set_state(call_state::DIALING);
        Self::call_state_changed(&emitter, old, call_state::DIALING, REASON_OUTGOING_STARTED)
            .await?;
        let old = self.set_state(call_state::RINGING_OUT);
        Self::call_state_changed(
            &emitter,
            old,
            call_state::RINGING_OUT,
            REASON_OUTGOING_STARTED,
        )
        .await?;
        Ok(())
    }

    async fn accept(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        if self.record().state != call_state::RINGING_IN {
            return Err(zbus::fdo::Error::Failed("the call is not ringing".into()));
        }
        let old = self.set_state(call_state::ACTIVE);
        Self::call_state_changed(&emitter, old, call_state::ACTIVE, REASON_ACCEPTED).await?;
        Ok(())
    }

    fn deflect(&self, _number: &str) {}
    fn join_multiparty(&self) {}
    fn leave_multiparty(&self) {}

    async fn hangup(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        let old = self.set_state(call_state::TERMINATED);
        Self::call_state_changed(&emitter, old, call_state::TERMINATED, REASON_TERMINATED).await?;
        Ok(())
    }

    fn send_dtmf(&self, _dtmf: &str) {}

    #[zbus(signal)]
    async fn dtmf_received(emitter: &SignalEmitter<'_>, dtmf: &str) -> zbus::Result<()>;

    // Named apart from the `State` property's own change notifier.
    #[zbus(signal, name = "StateChanged")]
    async fn call_state_changed(
        emitter: &SignalEmitter<'_>,
        old: i32,
        new: i32,
        reason: u32,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn state(&self) -> i32 {
        self.record().state
    }

    #[zbus(property)]
    fn state_reason(&self) -> i32 {
        if self.record().direction == DIRECTION_INCOMING {
            REASON_INCOMING_NEW as i32
        } else {
            REASON_OUTGOING_STARTED as i32
        }
    }

    #[zbus(property)]
    fn direction(&self) -> i32 {
        self.record().direction
    }

    #[zbus(property)]
    fn number(&self) -> String {
        self.record().number
    }

    #[zbus(property)]
    fn multiparty(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn audio_port(&self) -> String {
        String::new()
    }

    #[zbus(property)]
    fn audio_format(&self) -> HashMap<String, OwnedValue> {
        HashMap::new()
    }
}

/// `org.freedesktop.ModemManager1.Modem.Messaging`.
struct Messaging {
    world: Shared,
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Modem.Messaging")]
impl Messaging {
    fn list(&self) -> Vec<OwnedObjectPath> {
        lock(&self.world)
            .texts
            .keys()
            .map(|p| owned_path(p))
            .collect()
    }

    async fn delete(
        &self,
        path: ObjectPath<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        if lock(&self.world).texts.remove(path.as_str()).is_none() {
            return Err(zbus::fdo::Error::InvalidArgs("no such message".into()));
        }
        let _ = server.remove::<TextObject, _>(&path).await;
        Self::deleted(&emitter, path).await?;
        Ok(())
    }

    async fn create(
        &self,
        properties: HashMap<String, OwnedValue>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        let number = string_arg(&properties, "number");
        let text = string_arg(&properties, "text");
        if number.is_empty() {
            return Err(zbus::fdo::Error::InvalidArgs(
                "a text needs a number".into(),
            ));
        }
        let path = add_text(&self.world, server, number, text, SMS_STORED).await?;
        Self::added(&emitter, path.as_ref(), false).await?;
        Ok(path)
    }

    #[zbus(signal)]
    async fn added(
        emitter: &SignalEmitter<'_>,
        path: ObjectPath<'_>,
        received: bool,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn deleted(emitter: &SignalEmitter<'_>, path: ObjectPath<'_>) -> zbus::Result<()>;

    #[zbus(property)]
    fn messages(&self) -> Vec<OwnedObjectPath> {
        self.list()
    }

    #[zbus(property)]
    fn supported_storages(&self) -> Vec<u32> {
        vec![2]
    }

    #[zbus(property)]
    fn default_storage(&self) -> u32 {
        2
    }
}

async fn add_text(
    world: &Shared,
    server: &zbus::ObjectServer,
    number: String,
    text: String,
    state: u32,
) -> zbus::fdo::Result<OwnedObjectPath> {
    let path = {
        let mut w = lock(world);
        w.next_text += 1;
        let path = format!("/org/freedesktop/ModemManager1/SMS/{}", w.next_text);
        w.texts.insert(
            path.clone(),
            TextRecord {
                number,
                text,
                state,
            },
        );
        path
    };
    let object = TextObject {
        world: world.clone(),
        path: path.clone(),
    };
    server.at(path.as_str(), object).await?;
    Ok(owned_path(&path))
}

/// `org.freedesktop.ModemManager1.Sms`.
struct TextObject {
    world: Shared,
    path: String,
}

impl TextObject {
    fn record(&self) -> TextRecord {
        lock(&self.world)
            .texts
            .get(&self.path)
            .cloned()
            .unwrap_or(TextRecord {
                number: String::new(),
                text: String::new(),
                state: 0,
            })
    }
}

#[zbus::interface(name = "org.freedesktop.ModemManager1.Sms")]
impl TextObject {
    fn send(&self) -> zbus::fdo::Result<()> {
        let mut world = lock(&self.world);
        let Some(text) = world.texts.get_mut(&self.path) else {
            return Err(zbus::fdo::Error::Failed("the message was deleted".into()));
        };
        text.state = SMS_SENT;
        let sent = (text.number.clone(), text.text.clone());
        world.sent.push(sent);
        Ok(())
    }

    fn store(&self, _storage: u32) {}

    #[zbus(property)]
    fn state(&self) -> u32 {
        self.record().state
    }
    #[zbus(property)]
    fn pdu_type(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn number(&self) -> String {
        self.record().number
    }
    #[zbus(property)]
    fn text(&self) -> String {
        self.record().text
    }
    #[zbus(property)]
    fn data(&self) -> Vec<u8> {
        Vec::new()
    }
    #[zbus(property, name = "SMSC")]
    fn smsc(&self) -> String {
        String::new()
    }
    #[zbus(property)]
    fn validity(&self) -> (u32, OwnedValue) {
        // MM_SMS_VALIDITY_TYPE_UNKNOWN, no value.
        (0, ov(0u32))
    }
    #[zbus(property)]
    fn class(&self) -> i32 {
        -1
    }
    #[zbus(property)]
    fn teleservice_id(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn service_category(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn delivery_report_request(&self) -> bool {
        false
    }
    #[zbus(property)]
    fn message_reference(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn timestamp(&self) -> String {
        "2026-12-02T12:00:00+00:00".into()
    }
    #[zbus(property)]
    fn discharge_timestamp(&self) -> String {
        String::new()
    }
    #[zbus(property)]
    fn delivery_state(&self) -> u32 {
        0
    }
    #[zbus(property)]
    fn storage(&self) -> u32 {
        2
    }
}

/// The stand-in ModemManager. Its connection (and so its name on the bus) ends when dropped.
pub struct StandIn {
    conn: zbus::Connection,
    world: Shared,
}

impl StandIn {
    /// Serves ModemManager's name and one modem on the bus at `address`.
    pub async fn start(address: &str) -> zbus::Result<StandIn> {
        let world = Shared::default();
        let conn = zbus::connection::Builder::address(address)?
            .serve_at(
                MANAGER_PATH,
                Manager {
                    world: world.clone(),
                },
            )?
            .serve_at(
                MODEM_PATH,
                Voice {
                    world: world.clone(),
                },
            )?
            .serve_at(
                MODEM_PATH,
                Messaging {
                    world: world.clone(),
                },
            )?
            .name(SERVICE)?
            .build()
            .await?;
        Ok(StandIn { conn, world })
    }

    async fn emitter(&self) -> SignalEmitter<'static> {
        SignalEmitter::new(&self.conn, MODEM_PATH).expect("the modem's path")
    }

    /// A call from `number` rings in; returns its path.
    pub async fn ring(&self, number: &str) -> String {
        let path = add_call(
            &self.world,
            self.conn.object_server(),
            number.to_string(),
            DIRECTION_INCOMING,
            call_state::RINGING_IN,
        )
        .await
        .expect("add the call");
        lock(&self.world)
            .rung
            .insert(path.as_str().to_string(), Instant::now());
        Voice::call_added(&self.emitter().await, path.as_ref())
            .await
            .expect("announce the call");
        path.as_str().to_string()
    }

    /// A text from `number` arrives; returns its path.
    pub async fn receive_text(&self, number: &str, text: &str) -> String {
        let path = add_text(
            &self.world,
            self.conn.object_server(),
            number.to_string(),
            text.to_string(),
            SMS_RECEIVED,
        )
        .await
        .expect("add the text");
        Messaging::added(&self.emitter().await, path.as_ref(), true)
            .await
            .expect("announce the text");
        path.as_str().to_string()
    }

    pub fn call_state(&self, path: &str) -> Option<i32> {
        lock(&self.world).calls.get(path).map(|c| c.state)
    }

    /// When the call at `path` was ended, if it was.
    pub fn hung_up_at(&self, path: &str) -> Option<Instant> {
        lock(&self.world).hung_up.get(path).copied()
    }

    /// When the stand-in announced the call at `path` (`CallAdded`), for calls it rang in.
    pub fn rung_at(&self, path: &str) -> Option<Instant> {
        lock(&self.world).rung.get(path).copied()
    }

    pub fn has_text(&self, path: &str) -> bool {
        lock(&self.world).texts.contains_key(path)
    }

    /// Texts sent, as (number, words).
    pub fn sent(&self) -> Vec<(String, String)> {
        lock(&self.world).sent.clone()
    }

    /// Forgets ended calls (long benchmark runs).
    pub async fn forget_ended_calls(&self) {
        let ended: Vec<String> = {
            let mut world = lock(&self.world);
            let ended: Vec<String> = world
                .calls
                .iter()
                .filter(|(_, c)| c.state == call_state::TERMINATED)
                .map(|(p, _)| p.clone())
                .collect();
            for path in &ended {
                world.calls.remove(path);
                world.hung_up.remove(path);
                world.rung.remove(path);
            }
            ended
        };
        for path in ended {
            let _ = self
                .conn
                .object_server()
                .remove::<CallObject, _>(path.as_str())
                .await;
        }
    }
}
