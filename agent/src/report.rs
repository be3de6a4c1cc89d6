//! What a guard hands over when it blocks something: one short, factual record.
//!
//! Guards (apps, camera, web, contacts) only describe what they blocked; where the record goes
//! (the durable journal, then the controller) is the [`BlockedSink`]'s business. Keeping this
//! seam tiny lets every guard be tested with [`MemorySink`] and no journal or network.
//!
//! Privacy: a `Blocked` names what was stopped (an executable, a number, a domain) and never
//! what the child said, saw or browsed.

use std::sync::Mutex;

use haven_proto::agent::v1::{Channel, ViolationKind};

/// One blocked attempt, as a guard saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub kind: ViolationKind,
    /// What was blocked: the app's executable, the phone number, the domain name.
    pub subject: String,
    /// A short description for staff, e.g. "tried to open the camera (pid 4242, user amira)".
    pub detail: String,
    /// The channel, for contact attempts; `Unspecified` otherwise.
    pub channel: Channel,
    pub occurred_at_unix_ms: i64,
}

impl Blocked {
    /// A record stamped with the current time.
    pub fn now(kind: ViolationKind, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            subject: subject.into(),
            detail: detail.into(),
            channel: Channel::Unspecified,
            occurred_at_unix_ms: now_unix_ms(),
        }
    }

    pub fn on_channel(mut self, channel: Channel) -> Self {
        self.channel = channel;
        self
    }
}

/// Where guards send what they blocked. Must not block for long: guards call it from their
/// hot paths (a DNS answer, a process exec).
pub trait BlockedSink: Send + Sync {
    fn blocked(&self, record: Blocked);
}

/// Keeps records in memory; for tests and for running without a state folder.
#[derive(Debug, Default)]
pub struct MemorySink {
    records: Mutex<Vec<Blocked>>,
}

impl MemorySink {
    pub fn take(&self) -> Vec<Blocked> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl BlockedSink for MemorySink {
    fn blocked(&self, record: Blocked) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }
}

/// Prints one line per blocked attempt to stdout: `blocked: <kind> <subject> — <detail>`.
/// Used until the durable journal takes the records, and by tests that watch the agent.
#[derive(Debug, Default)]
pub struct LogSink;

impl BlockedSink for LogSink {
    fn blocked(&self, record: Blocked) {
        use std::io::Write;
        let kind = record.kind.as_str_name().to_ascii_lowercase();
        let kind = kind.trim_start_matches("violation_kind_").replace('_', "-");
        let line = format!("blocked: {kind} {} — {}\n", record.subject, record.detail);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    }
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
