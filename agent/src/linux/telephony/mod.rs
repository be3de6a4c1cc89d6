//! The telephony guard (D3, GD3): every call and text through ModemManager obeys the plan,
//! whichever app made it.
//!
//! Linux phones (postmarketOS, Mobian, PinePhone / Librem 5 class hardware) place calls and
//! texts through ModemManager over D-Bus; GNOME Calls, Chatty and Plasma Dialer are its
//! clients. Two layers keep the plan:
//!
//! 1. The D-Bus policy shipped as `agent/dist/haven-telephony.conf` denies the child's account
//!    (group `haven-child`) ModemManager's Voice, Call, Messaging and Sms interfaces and its
//!    property reads, so the child's apps go through the agent's screening socket
//!    ([`crate::screening`]), which places, answers and relays only what the plan allows
//!    (through [`Phone`]).
//! 2. This guard watches ModemManager itself: every `CallAdded` and every `Added` text, from
//!    any client the policy cannot stop. Each is decided by [`crate::contacts::may_contact`]
//!    (through [`crate::screening::Screener`], which also reports); a call the plan does not
//!    allow is hung up at once, incoming or outgoing, and a text is deleted so no client can
//!    show or send it. Each refusal is reported once, with the number and never the words.
//!    Protected contacts are never touched and never reported.
//!
//! The guard runs its own thread with a small tokio runtime, like the other guards keep their
//! own threads. No ModemManager (a laptop, or a phone whose modem is not up yet) is not an
//! error: the guard says "no modem" and keeps looking, and the other guards run as usual.

mod modem;
mod phone;
mod watch;

pub use modem::{CallFacts, SmsFacts, call_direction, call_state, sms_state};
pub use phone::Phone;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::GuardError;
use crate::enforcer::{DevicePolicy, EnforceError, Enforcer};
use crate::screening::Screener;

/// Which D-Bus bus ModemManager is on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TelephonyBus {
    /// The system bus, where ModemManager lives on a phone.
    #[default]
    System,
    /// A bus at this address (tests and benchmarks use a private one).
    Address(String),
}

impl std::str::FromStr for TelephonyBus {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim() {
            "" | "system" => TelephonyBus::System,
            other => TelephonyBus::Address(other.to_string()),
        })
    }
}

/// Settings for [`TelephonyGuard::start`].
#[derive(Debug, Clone)]
pub struct TelephonyConfig {
    pub bus: TelephonyBus,
    /// How often to look for modems that appeared (and to reconnect after losing the bus).
    pub rescan_every: Duration,
}

impl Default for TelephonyConfig {
    fn default() -> Self {
        Self {
            bus: TelephonyBus::System,
            rescan_every: Duration::from_secs(5),
        }
    }
}

/// What the guard is doing now, in words for whoever looks after the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelephonyState {
    Starting,
    /// The bus could not be reached, or ModemManager is not on it.
    NoModem(String),
    /// Watching this many modems.
    Watching(usize),
}

impl std::fmt::Display for TelephonyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TelephonyState::Starting => write!(f, "starting"),
            TelephonyState::NoModem(why) => write!(f, "no modem ({why})"),
            TelephonyState::Watching(1) => write!(f, "watching 1 modem"),
            TelephonyState::Watching(n) => write!(f, "watching {n} modems"),
        }
    }
}

/// Shared between the guard, its thread and [`Phone`].
pub(crate) struct Shared {
    pub(crate) screener: Arc<Screener>,
    pub(crate) connection: Mutex<Option<zbus::Connection>>,
    pub(crate) state: Mutex<TelephonyState>,
    /// Woken when a new policy is applied, so calls already in progress are looked at again.
    pub(crate) recheck: tokio::sync::Notify,
    pub(crate) runtime: tokio::runtime::Handle,
    /// To the reporting thread, which hands refusals to the sink in order.
    pub(crate) reports: std::sync::mpsc::Sender<watch::Refusal>,
}

impl Shared {
    pub(crate) fn set_state(&self, state: TelephonyState) {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *current != state {
            match &state {
                TelephonyState::NoModem(_) => {
                    warn!("telephony guard: {state}; calls and texts are not watched until it is")
                }
                _ => info!("telephony guard: {state}"),
            }
            *current = state;
        }
    }
}

/// The telephony guard; see the module documentation.
pub struct TelephonyGuard {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TelephonyGuard {
    /// Starts watching ModemManager on `config.bus`, deciding against `screener`'s policy.
    /// Fails only if the guard's thread cannot start; an absent ModemManager is a state
    /// ([`TelephonyState::NoModem`]), not an error.
    pub fn start(config: TelephonyConfig, screener: Arc<Screener>) -> Result<Self, GuardError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("telephony")
            .enable_all()
            .build()
            .map_err(|cause| GuardError::Start {
                guard: "telephony guard",
                cause,
            })?;
        let (reports, refusals) = std::sync::mpsc::channel();
        let reporter = screener.clone();
        std::thread::Builder::new()
            .name("telephony-report".into())
            .spawn(move || watch::report_each(reporter, refusals))
            .map_err(|cause| GuardError::Start {
                guard: "telephony guard",
                cause,
            })?;
        let shared = Arc::new(Shared {
            screener,
            connection: Mutex::new(None),
            state: Mutex::new(TelephonyState::Starting),
            recheck: tokio::sync::Notify::new(),
            runtime: runtime.handle().clone(),
            reports,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("telephony-guard".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = watch::run(s, config) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here (not inside it) ends the watchers' tasks.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|cause| GuardError::Start {
                guard: "telephony guard",
                cause,
            })?;
        Ok(Self {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// What the guard is doing now.
    pub fn state(&self) -> TelephonyState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Places, answers and relays calls and texts for the child (the screening socket's
    /// `call`, `answer`, `text` and `inbox`).
    pub fn phone(&self) -> Phone {
        Phone::new(self.shared.clone())
    }
}

impl Drop for TelephonyGuard {
    fn drop(&mut self) {
        // A `Phone` that outlives the guard then answers "no modem" instead of waiting on a
        // runtime that has stopped.
        *self
            .shared
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Enforcer for TelephonyGuard {
    fn name(&self) -> &'static str {
        "telephony"
    }

    /// Swaps the policy calls and texts are decided against, and looks again at calls
    /// already in progress (a lockdown that starts mid-call ends the call, unless it is with a
    /// protected contact).
    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        self.shared.screener.set_policy(policy);
        self.shared.recheck.notify_one();
        Ok(())
    }
}
