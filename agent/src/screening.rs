//! The contact screening service: a Unix socket a dialer or messaging integration asks
//! "may this device call / text / message this address now?" before connecting.
//!
//! Protocol: one JSON line in, one JSON line out, then the connection closes.
//!
//! ```text
//! → {"channel":"call","address":"+447700900123"}
//! ← {"decision":"allow","reason":"Nan is one of your contacts, so you can call them now."}
//! ← {"decision":"deny","reason":"You can call Nan between 4pm and 8pm."}
//! ← {"decision":"deny","error":"…what was wrong with the question…"}
//! ```
//!
//! `channel` is `call`, `sms` or `messaging`. Anything else, or a line over
//! [`MAX_LINE`] bytes, gets an `error` answer (and counts as "deny"); the service never
//! crashes on what it is sent. The decision is [`crate::contacts::may_contact`]'s, against
//! the policy the [`Enforcer`] was last given. Refused and unknown addresses are reported to
//! the [`BlockedSink`] (the same attempt at most once a minute, so a dialer that retries does
//! not flood staff).
//!
//! The socket is mode 0666: the dialer runs as whatever user the platform chooses, and the
//! service only answers questions — asking changes nothing but the report of the attempt.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use haven_proto::agent::v1::{Channel, DevicePolicy};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::contacts::{ContactDecision, LocalTime, may_contact};
use crate::enforcer::{EnforceError, Enforcer};
use crate::report::{Blocked, BlockedSink};

/// Where the socket is, unless `--screening-socket` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/haven-agent/screening.sock";
/// The longest question accepted, in bytes (an address is a few dozen).
pub const MAX_LINE: usize = 1024;
/// How long a client may take to send its question.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Questions answered at the same time; more wait for the next free slot.
const MAX_CLIENTS: usize = 16;
/// The same attempt (channel, address, outcome) is reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ScreeningError {
    #[error("cannot create the folder for the screening socket {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} already exists and is not a socket; remove it or choose another \
         --screening-socket"
    )]
    NotASocket { path: PathBuf },
    #[error("another haven-agent is already answering on {path}; stop it first")]
    InUse { path: PathBuf },
    #[error("cannot listen on the screening socket {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The question, as sent on the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    pub channel: String,
    pub address: String,
}

/// The answer, as sent on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// "allow" or "deny".
    pub decision: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Set when the question could not be understood; the decision is then "deny".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.decision == "allow"
    }

    fn refused(error: impl Into<String>) -> Self {
        Self {
            decision: "deny".into(),
            reason: String::new(),
            error: error.into(),
        }
    }
}

/// `call`, `sms`, `messaging` (and a few natural spellings) → the wire channel.
pub fn parse_channel(text: &str) -> Option<Channel> {
    match text.trim().to_ascii_lowercase().as_str() {
        "call" | "calls" | "phone" => Some(Channel::Call),
        "sms" | "text" | "texts" => Some(Channel::Sms),
        "messaging" | "message" | "messages" => Some(Channel::Messaging),
        _ => None,
    }
}

fn channel_word(channel: Channel) -> &'static str {
    match channel {
        Channel::Call => "call",
        Channel::Sms => "text",
        Channel::Messaging => "message",
        Channel::Unspecified => "contact",
    }
}

/// Remembers recent reports, so the same attempt is reported once a minute at most.
#[derive(Default)]
struct RecentReports(HashMap<(i32, String, bool), Instant>);

impl RecentReports {
    fn should_report(&mut self, key: (i32, String, bool), now: Instant) -> bool {
        self.0
            .retain(|_, at| now.duration_since(*at) < REPORT_EVERY);
        if self.0.contains_key(&key) {
            return false;
        }
        // Bounded even under a flood of different addresses.
        if self.0.len() >= 10_000 {
            self.0.clear();
        }
        self.0.insert(key, now);
        true
    }
}

/// The decision side of the service, shared by the socket's threads.
pub struct Screener {
    policy: RwLock<DevicePolicy>,
    sink: Arc<dyn BlockedSink>,
    recent: Mutex<RecentReports>,
}

impl Screener {
    pub fn new(policy: DevicePolicy, sink: Arc<dyn BlockedSink>) -> Self {
        Self {
            policy: RwLock::new(policy),
            sink,
            recent: Mutex::new(RecentReports::default()),
        }
    }

    pub fn set_policy(&self, policy: &DevicePolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = policy.clone();
    }

    /// Decides, reports a refusal, and answers.
    pub fn decide(&self, channel: Channel, address: &str, at: LocalTime) -> ContactDecision {
        let decision = {
            let policy = self.policy.read().unwrap_or_else(|p| p.into_inner());
            may_contact(&policy, channel, address, at)
        };
        if let Some(kind) = decision.violation_kind() {
            // Reported in one form (E.164 for phone numbers), so staff see one number however
            // it was dialled, and a manager can compare it with the plan's contacts.
            let subject = crate::contacts::normalise_address(address);
            let unknown = matches!(decision, ContactDecision::Unknown { .. });
            let key = (channel as i32, subject.clone(), unknown);
            let report = self
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .should_report(key, Instant::now());
            if report {
                let verb = channel_word(channel);
                let detail = if unknown {
                    format!(
                        "tried to {verb} an address that is on no list (a manager should look at it)"
                    )
                } else {
                    format!(
                        "tried to {verb} a contact when it is not allowed: {}",
                        decision.reason()
                    )
                };
                self.sink
                    .blocked(Blocked::now(kind, subject, detail).on_channel(channel));
            }
        }
        decision
    }

    /// Answers one question line (without its newline).
    pub fn answer_line(&self, line: &str, at: LocalTime) -> Answer {
        let question: Question = match serde_json::from_str(line.trim()) {
            Ok(q) => q,
            Err(_) => {
                return Answer::refused(
                    "that is not a question this service understands: send one line of JSON \
                     like {\"channel\":\"call\",\"address\":\"+447700900123\"}",
                );
            }
        };
        let Some(channel) = parse_channel(&question.channel) else {
            return Answer::refused(format!(
                "{:?} is not a channel: use \"call\", \"sms\" or \"messaging\"",
                question.channel
            ));
        };
        let address = question.address.trim();
        if address.is_empty() || address.chars().count() > 256 {
            return Answer::refused("the address must be 1 to 256 characters");
        }
        let decision = self.decide(channel, address, at);
        Answer {
            decision: if decision.is_allowed() {
                "allow"
            } else {
                "deny"
            }
            .into(),
            reason: decision.reason().to_string(),
            error: String::new(),
        }
    }
}

/// The screening service as an enforcer: applying a policy changes what it answers.
pub struct ContactScreening {
    screener: Arc<Screener>,
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl ContactScreening {
    /// Listens on `path` (creating its folder) and answers from the safe default until a
    /// policy is applied.
    pub fn start(path: &Path, sink: Arc<dyn BlockedSink>) -> Result<Self, ScreeningError> {
        let listener = bind(path)?;
        let screener = Arc::new(Screener::new(crate::core::safe_default(), sink));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (screener.clone(), stop.clone());
        std::thread::Builder::new()
            .name("screening".into())
            .spawn(move || serve(listener, s, st))
            .map_err(|source| ScreeningError::Listen {
                path: path.to_path_buf(),
                source,
            })?;
        info!("contact screening is answering on {}", path.display());
        Ok(Self {
            screener,
            path: path.to_path_buf(),
            stop,
        })
    }

    pub fn screener(&self) -> &Arc<Screener> {
        &self.screener
    }
}

impl Drop for ContactScreening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop, then remove the socket file.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Enforcer for ContactScreening {
    fn name(&self) -> &'static str {
        "contacts"
    }

    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        self.screener.set_policy(policy);
        Ok(())
    }
}

fn bind(path: &Path) -> Result<UnixListener, ScreeningError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ScreeningError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ScreeningError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // Left behind by an agent that was killed: nobody answers on it.
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(ScreeningError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|source| ScreeningError::Listen {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|source| {
        ScreeningError::Listen {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

fn serve(listener: UnixListener, screener: Arc<Screener>, stop: Arc<AtomicBool>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("the screening socket could not accept a question: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Bound the threads: a client that connects and never writes holds one for at most
        // READ_TIMEOUT.
        while busy.load(Ordering::SeqCst) >= MAX_CLIENTS {
            std::thread::sleep(Duration::from_millis(5));
        }
        busy.fetch_add(1, Ordering::SeqCst);
        let (s, b) = (screener.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("screening-client".into())
            .spawn(move || {
                handle(stream, &s);
                b.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            busy.fetch_sub(1, Ordering::SeqCst);
            warn!("the screening socket could not answer a question: {e}");
        }
    }
}

fn handle(stream: UnixStream, screener: &Screener) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let mut reader = BufReader::new((&stream).take(MAX_LINE as u64 + 1));
    let mut line = Vec::new();
    let answer = match reader.read_until(b'\n', &mut line) {
        Ok(_) if line.len() > MAX_LINE => Answer::refused(format!(
            "the question is too long: at most {MAX_LINE} bytes on one line"
        )),
        Ok(0) => return,
        Ok(_) => match std::str::from_utf8(&line) {
            Ok(text) => screener.answer_line(text, LocalTime::now()),
            Err(_) => Answer::refused("the question is not UTF-8 text"),
        },
        Err(e) => {
            debug!("a screening client went away: {e}");
            return;
        }
    };
    let mut bytes = serde_json::to_vec(&answer).unwrap_or_default();
    bytes.push(b'\n');
    let _ = (&stream).write_all(&bytes);
}

/// Why `check-contact` could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(
        "nobody is answering on {path}: the Haven agent is not running here (start it with \
         `haven-agent run`) or uses another --screening-socket"
    )]
    NotRunning { path: PathBuf },
    #[error("could not ask the Haven agent on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Haven agent on {path} gave an answer that could not be read")]
    BadAnswer { path: PathBuf },
}

/// Asks the service on `path` one question (what `haven-agent check-contact` does).
pub fn ask(path: &Path, channel: &str, address: &str) -> Result<Answer, AskError> {
    let io = |source| AskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            AskError::NotRunning {
                path: path.to_path_buf(),
            }
        }
        _ => io(e),
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let question = Question {
        channel: channel.to_string(),
        address: address.to_string(),
    };
    let mut bytes = serde_json::to_vec(&question).unwrap_or_default();
    bytes.push(b'\n');
    (&stream).write_all(&bytes).map_err(io)?;
    let mut reply = String::new();
    BufReader::new((&stream).take(64 * 1024))
        .read_line(&mut reply)
        .map_err(io)?;
    serde_json::from_str(reply.trim()).map_err(|_| AskError::BadAnswer {
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MemorySink;
    use haven_proto::agent::v1::{Contact, ContactAddress, Lockdown, ViolationKind};

    fn policy() -> DevicePolicy {
        let address = |channel: Channel, a: &str| ContactAddress {
            channel: channel as i32,
            address: a.into(),
            app: String::new(),
        };
        DevicePolicy {
            version: 4,
            contacts: vec![Contact {
                name: "Nan".into(),
                addresses: vec![address(Channel::Call, "+447700900123")],
                ..Default::default()
            }],
            protected_contacts: vec![Contact {
                name: "Childline".into(),
                addresses: vec![address(Channel::Call, "08001111")],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const NOON: LocalTime = LocalTime {
        weekday: 2,
        minute: 720,
    };

    fn screener() -> (Screener, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        (Screener::new(policy(), sink.clone()), sink)
    }

    #[test]
    fn d3_questions_get_allow_or_deny_with_a_reason() {
        let (s, sink) = screener();
        let a = s.answer_line(r#"{"channel":"call","address":"07700 900123"}"#, NOON);
        assert!(a.allowed() && a.reason.contains("Nan"), "{a:?}");
        let a = s.answer_line(r#"{"channel":"call","address":"0800 1111"}"#, NOON);
        assert!(a.allowed(), "{a:?}");
        assert!(sink.take().is_empty(), "allowed attempts are not reported");
        let a = s.answer_line(r#"{"channel":"sms","address":"+447700900999"}"#, NOON);
        assert!(!a.allowed() && a.error.is_empty(), "{a:?}");
        let reported = sink.take();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].kind, ViolationKind::UnknownContact);
        assert_eq!(reported[0].channel, Channel::Sms);
        assert_eq!(reported[0].subject, "+447700900999");
    }

    #[test]
    fn gd3_r19_lockdown_refusals_are_reported_and_protected_contacts_still_pass() {
        let (s, sink) = screener();
        let mut p = policy();
        p.lockdown = Some(Lockdown {
            active: true,
            channels: vec!["calls".into()],
            ..Default::default()
        });
        s.set_policy(&p);
        assert!(!s.decide(Channel::Call, "07700900123", NOON).is_allowed());
        assert!(s.decide(Channel::Call, "08001111", NOON).is_allowed());
        let reported = sink.take();
        assert_eq!(reported.len(), 1);
        assert_eq!(reported[0].kind, ViolationKind::ContactBlocked);
    }

    #[test]
    fn d3_the_same_attempt_is_reported_once_a_minute() {
        let (s, sink) = screener();
        for _ in 0..5 {
            s.decide(Channel::Call, "07700900999", NOON);
        }
        s.decide(Channel::Sms, "07700900999", NOON);
        assert_eq!(sink.take().len(), 2);
        // However the number is written.
        s.decide(Channel::Sms, "+44 7700 900999", NOON);
        assert!(sink.take().is_empty());
    }

    #[test]
    fn garbage_gets_a_clear_error_never_a_crash() {
        let (s, sink) = screener();
        for line in [
            "",
            "hello",
            "{}",
            r#"{"channel":"fax","address":"1"}"#,
            r#"{"channel":"call","address":""}"#,
            r#"{"channel":"call","address":"1","extra":true}"#,
            "[1,2,3]",
        ] {
            let a = s.answer_line(line, NOON);
            assert_eq!(a.decision, "deny", "{line}");
            assert!(!a.error.is_empty(), "{line}: {a:?}");
        }
        assert!(sink.take().is_empty());
    }

    #[test]
    fn d3_the_socket_answers_and_check_contact_reads_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/screening.sock");
        let sink = Arc::new(MemorySink::default());
        let mut service = ContactScreening::start(&path, sink.clone()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        // Before any policy: the safe default, nobody but protected contacts (none yet).
        assert!(!ask(&path, "call", "07700900123").unwrap().allowed());
        service.apply(&policy()).unwrap();
        let a = ask(&path, "call", "07700900123").unwrap();
        assert!(a.allowed(), "{a:?}");
        let a = ask(&path, "nonsense", "1").unwrap();
        assert!(!a.allowed() && a.error.contains("channel"), "{a:?}");
        // A second service on the same socket is refused; a line too long gets an error.
        assert!(matches!(
            ContactScreening::start(&path, sink.clone()),
            Err(ScreeningError::InUse { .. })
        ));
        let mut raw = UnixStream::connect(&path).unwrap();
        raw.write_all(&vec![b'x'; MAX_LINE * 4]).unwrap();
        let mut reply = String::new();
        BufReader::new(&raw).read_line(&mut reply).unwrap();
        assert!(reply.contains("too long"), "{reply}");
        drop(service);
        assert!(matches!(
            ask(&path, "call", "1"),
            Err(AskError::NotRunning { .. })
        ));
    }

    #[test]
    fn a_stale_socket_is_replaced_and_other_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("screening.sock");
        drop(UnixListener::bind(&path).unwrap());
        let service = ContactScreening::start(&path, Arc::new(MemorySink::default())).unwrap();
        drop(service);
        let file = dir.path().join("precious.txt");
        std::fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            ContactScreening::start(&file, Arc::new(MemorySink::default())),
            Err(ScreeningError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
    }
}
