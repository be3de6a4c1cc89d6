//! The guard's loop: find ModemManager's modems, listen for every new call and text, and
//! end what the plan does not allow.
//!
//! Each watcher subscribes to its signal before listing what already exists, so nothing that
//! appears in between is missed. A call is hung up before it is reported, so a slow journal
//! never keeps a refused call ringing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use haven_proto::agent::v1::Channel;
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use zbus::zvariant::OwnedObjectPath;

use super::modem;
use super::{Shared, TelephonyBus, TelephonyConfig, TelephonyState};
use crate::contacts::LocalTime;
use crate::screening::Attempt;

/// What the guard did to a refused call, in the words staff read.
const CALL_ENDED: &str = "the call was hung up";
const TEXT_WITHHELD: &str = "the text was withheld from the child (its words were not read)";
const TEXT_STOPPED: &str = "the text was deleted before it was sent";

async fn connect(bus: &TelephonyBus) -> zbus::Result<zbus::Connection> {
    match bus {
        TelephonyBus::System => zbus::Connection::system().await,
        TelephonyBus::Address(address) => {
            zbus::connection::Builder::address(address.as_str())?
                .build()
                .await
        }
    }
}

/// Runs until the guard is dropped: (re)connects, watches, and looks again every
/// `rescan_every`.
pub(super) async fn run(shared: Arc<Shared>, config: TelephonyConfig) {
    let every = config.rescan_every.max(Duration::from_millis(50));
    loop {
        match connect(&config.bus).await {
            Ok(conn) => {
                *shared.connection.lock().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                watch_bus(&shared, &conn, every).await;
                *shared.connection.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Err(e) => shared.set_state(TelephonyState::NoModem(format!(
                "cannot reach the D-Bus bus ModemManager is on: {e}"
            ))),
        }
        tokio::time::sleep(every).await;
    }
}

/// The watchers of one modem interface, by modem path.
#[derive(Default)]
struct Watchers(HashMap<OwnedObjectPath, JoinHandle<()>>);

impl Watchers {
    fn clear(&mut self) {
        for (_, task) in self.0.drain() {
            task.abort();
        }
    }

    /// Forgets watchers whose modem went away (their task ended).
    fn prune(&mut self) {
        self.0.retain(|_, task| !task.is_finished());
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Watches one bus connection until it breaks.
async fn watch_bus(shared: &Arc<Shared>, conn: &zbus::Connection, every: Duration) {
    let mut calls = Watchers::default();
    let mut texts = Watchers::default();
    loop {
        match modem::modems(conn).await {
            Ok(found) => {
                calls.prune();
                texts.prune();
                for path in found.voice {
                    if let Entry::Vacant(slot) = calls.0.entry(path) {
                        let path = slot.key().clone();
                        slot.insert(tokio::spawn(watch_calls(
                            shared.clone(),
                            conn.clone(),
                            path,
                        )));
                    }
                }
                for path in found.messaging {
                    if let Entry::Vacant(slot) = texts.0.entry(path) {
                        let path = slot.key().clone();
                        slot.insert(tokio::spawn(watch_texts(
                            shared.clone(),
                            conn.clone(),
                            path,
                        )));
                    }
                }
                let modems: std::collections::HashSet<&str> = calls
                    .0
                    .keys()
                    .chain(texts.0.keys())
                    .map(|p| p.as_str())
                    .collect();
                shared.set_state(if modems.is_empty() {
                    TelephonyState::NoModem("ModemManager lists no modem".into())
                } else {
                    TelephonyState::Watching(modems.len())
                });
            }
            Err(e) => {
                // ModemManager stopped (or never started): its modems will come back under new
                // paths, so start again from nothing.
                calls.clear();
                texts.clear();
                shared.set_state(TelephonyState::NoModem(format!(
                    "ModemManager is not answering: {e}"
                )));
                // The bus itself went away (dbus restarted): connect again from the start.
                if matches!(e, zbus::Error::InputOutput(_)) {
                    return;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shared.recheck.notified() => {
                for modem in calls.0.keys() {
                    recheck_calls(shared, conn, modem).await;
                }
            }
        }
    }
}

async fn watch_calls(shared: Arc<Shared>, conn: zbus::Connection, modem: OwnedObjectPath) {
    let result: zbus::Result<()> = async {
        let voice = modem::voice(&conn, &modem).await?;
        let mut added = voice.receive_call_added().await?;
        for call in voice.list_calls().await? {
            tokio::spawn(judge_call(shared.clone(), conn.clone(), call));
        }
        while let Some(signal) = added.next().await {
            match signal.args() {
                Ok(args) => {
                    let call = OwnedObjectPath::from(args.path().to_owned());
                    tokio::spawn(judge_call(shared.clone(), conn.clone(), call));
                }
                Err(e) => debug!("an unreadable CallAdded signal: {e}"),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        warn!(
            "telephony guard: stopped watching calls on {}: {e}",
            modem.as_str()
        );
    }
}

/// Looks again at every call in progress, after a new policy.
async fn recheck_calls(shared: &Arc<Shared>, conn: &zbus::Connection, modem: &OwnedObjectPath) {
    let calls = match modem::voice(conn, modem).await {
        Ok(voice) => voice.list_calls().await,
        Err(e) => Err(e),
    };
    match calls {
        Ok(calls) => {
            for call in calls {
                judge_call(shared.clone(), conn.clone(), call).await;
            }
        }
        Err(e) => debug!("could not list calls on {}: {e}", modem.as_str()),
    }
}

/// Decides one call and hangs it up if the plan does not allow it.
async fn judge_call(shared: Arc<Shared>, conn: zbus::Connection, call: OwnedObjectPath) {
    let facts = match modem::call_facts(&conn, &call).await {
        Ok(facts) => facts,
        // Gone already (the other side hung up first): nothing to do.
        Err(e) => return debug!("could not read call {}: {e}", call.as_str()),
    };
    if facts.finished() {
        return;
    }
    let decision = shared
        .screener
        .judge(Channel::Call, &facts.number, LocalTime::now());
    if decision.is_allowed() {
        return;
    }
    let hung_up = match modem::call(&conn, &call).await {
        Ok(proxy) => proxy.hangup().await,
        Err(e) => Err(e),
    };
    if let Err(e) = hung_up {
        warn!(
            "telephony guard: could not hang up call {}: {e}",
            call.as_str()
        );
    }
    let attempt = if facts.incoming() {
        Attempt::Incoming(CALL_ENDED)
    } else {
        Attempt::Outgoing(CALL_ENDED)
    };
    report(&shared, attempt, Channel::Call, facts.number, decision);
}

async fn watch_texts(shared: Arc<Shared>, conn: zbus::Connection, modem: OwnedObjectPath) {
    let result: zbus::Result<()> = async {
        let messaging = modem::messaging(&conn, &modem).await?;
        let mut added = messaging.receive_added().await?;
        for text in messaging.list().await? {
            tokio::spawn(judge_text(
                shared.clone(),
                conn.clone(),
                modem.clone(),
                text,
            ));
        }
        while let Some(signal) = added.next().await {
            match signal.args() {
                Ok(args) => {
                    let text = OwnedObjectPath::from(args.path().to_owned());
                    tokio::spawn(judge_text(
                        shared.clone(),
                        conn.clone(),
                        modem.clone(),
                        text,
                    ));
                }
                Err(e) => debug!("an unreadable Messaging.Added signal: {e}"),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        warn!(
            "telephony guard: stopped watching texts on {}: {e}",
            modem.as_str()
        );
    }
}

/// Decides one text (on its number only) and deletes it if the plan does not allow it.
async fn judge_text(
    shared: Arc<Shared>,
    conn: zbus::Connection,
    modem: OwnedObjectPath,
    text: OwnedObjectPath,
) {
    let facts = match modem::sms_facts(&conn, &text).await {
        Ok(facts) => facts,
        Err(e) => return debug!("could not read text {}: {e}", text.as_str()),
    };
    // A text that has already gone cannot be called back; deleting it would only hide it.
    if facts.state == modem::sms_state::SENT {
        return;
    }
    let decision = shared
        .screener
        .judge(Channel::Sms, &facts.number, LocalTime::now());
    if decision.is_allowed() {
        return;
    }
    let deleted = match modem::messaging(&conn, &modem).await {
        Ok(proxy) => proxy.delete(&text.as_ref()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = deleted {
        warn!(
            "telephony guard: could not delete text {}: {e}",
            text.as_str()
        );
    }
    let attempt = if facts.received() {
        Attempt::Incoming(TEXT_WITHHELD)
    } else {
        Attempt::Outgoing(TEXT_STOPPED)
    };
    report(&shared, attempt, Channel::Sms, facts.number, decision);
}

/// Hands a refusal to the guard's reporting thread: the journal writes and fsyncs each record,
/// and the next call must not wait for that. Reports keep their order.
fn report(
    shared: &Arc<Shared>,
    attempt: Attempt,
    channel: Channel,
    number: String,
    decision: crate::contacts::ContactDecision,
) {
    let refusal = Refusal {
        attempt,
        channel,
        number,
        decision,
    };
    let sent = shared.reports.send(refusal);
    if let Err(std::sync::mpsc::SendError(refusal)) = sent {
        // The reporting thread is gone: report here rather than lose it.
        shared.screener.report(
            refusal.attempt,
            refusal.channel,
            &refusal.number,
            &refusal.decision,
        );
    }
}

/// One refusal on its way to the sink.
pub(crate) struct Refusal {
    attempt: Attempt,
    channel: Channel,
    number: String,
    decision: crate::contacts::ContactDecision,
}

/// The reporting thread's loop: ends when the guard is gone.
pub(super) fn report_each(
    screener: Arc<crate::screening::Screener>,
    refusals: std::sync::mpsc::Receiver<Refusal>,
) {
    for r in refusals {
        screener.report(r.attempt, r.channel, &r.number, &r.decision);
    }
}
