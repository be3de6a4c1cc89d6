//! The screening socket itself: who is asking (the peer's credentials, `SO_PEERCRED`), how
//! fast and how long they may ask, and the one-line exchange.
//!
//! The socket is mode 0666: the dialer runs as whatever account the platform chooses. Every
//! client gets an answer, but only a trusted one (root, the agent's own account, or a uid
//! given with `--screening-trusted-uid`) has a refusal recorded. Each account may ask
//! [`limits::BURST`] questions at once and [`limits::PER_SECOND`] a second after that; the
//! client's whole part of the exchange (sending its line, taking the answer) must fit in
//! [`DEADLINE`], so a slow or silent client holds its slot no longer; and at most
//! [`limits::MAX_CLIENTS`] are answered at once ([`limits::MAX_CLIENTS_PER_UID`] for one
//! account). A client over a limit is told so and nothing is recorded.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haven_proto::agent::v1::DevicePolicy;
use tracing::{debug, info, warn};

use super::limits::{RateLimit, Slots};
use super::{Answer, MAX_LINE, Question, Screener};
use crate::contacts::LocalTime;
use crate::enforcer::{EnforceError, Enforcer};
use crate::report::BlockedSink;

/// The whole of a client's part of one exchange.
pub const DEADLINE: Duration = Duration::from_secs(2);

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

/// Who the socket trusts to have refusals recorded.
#[derive(Debug, Clone, Default)]
pub struct ScreeningOptions {
    /// Accounts besides root and the agent's own (e.g. the phone's dialer).
    pub trusted_uids: Vec<u32>,
}

impl ScreeningOptions {
    /// Root, the agent itself (so the telephony guard), and the configured accounts.
    pub fn trusts(&self, uid: u32) -> bool {
        // SAFETY: geteuid takes nothing and cannot fail.
        let own = unsafe { libc::geteuid() };
        uid == 0 || uid == own || self.trusted_uids.contains(&uid)
    }
}

/// The uid of the process at the other end of `stream`, from the kernel (`SO_PEERCRED`).
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is a live Unix socket owned by `stream`; `cred` and `len` are valid for
    // writes of the size passed, which is the size of `ucred` that SO_PEERCRED fills.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// The screening service as an enforcer: applying a policy changes what it answers.
pub struct ContactScreening {
    screener: Arc<Screener>,
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl ContactScreening {
    /// Listens on `path` (creating its folder) and answers from the safe default until a
    /// policy is applied, trusting only root and the agent's own account.
    pub fn start(path: &Path, sink: Arc<dyn BlockedSink>) -> Result<Self, ScreeningError> {
        let screener = Arc::new(Screener::new(crate::core::safe_default(), sink));
        Self::start_with(path, screener, ScreeningOptions::default())
    }

    /// Listens on `path`, deciding with `screener` (which the telephony guard may share).
    pub fn start_with(
        path: &Path,
        screener: Arc<Screener>,
        options: ScreeningOptions,
    ) -> Result<Self, ScreeningError> {
        let listener = bind(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (screener.clone(), stop.clone());
        std::thread::Builder::new()
            .name("screening".into())
            .spawn(move || serve(listener, s, options, st))
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

/// Opens the socket at `path` (mode 0666), replacing one left by an agent that was killed.
pub fn bind(path: &Path) -> Result<UnixListener, ScreeningError> {
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

fn serve(
    listener: UnixListener,
    screener: Arc<Screener>,
    options: ScreeningOptions,
    stop: Arc<AtomicBool>,
) {
    let slots = Slots::default();
    let rate = Arc::new(Mutex::new(RateLimit::default()));
    let options = Arc::new(options);
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
        let started = Instant::now();
        let Ok(uid) = peer_uid(&stream) else {
            // Without knowing who asks, nothing could be recorded fairly; say so and go on.
            refuse_now(
                &stream,
                "the service could not tell who is asking; ask again",
            );
            continue;
        };
        // Taken here, not in the client's thread, so a crowd of silent clients is refused at
        // the door instead of piling up threads.
        let Some(slot) = slots.take(uid) else {
            refuse_now(
                &stream,
                "the service is busy with other questions; ask again in a moment",
            );
            continue;
        };
        let (s, r, o) = (screener.clone(), rate.clone(), options.clone());
        let spawned = std::thread::Builder::new()
            .name("screening-client".into())
            .spawn(move || {
                handle(stream, uid, started, &s, &r, &o);
                drop(slot);
            });
        if let Err(e) = spawned {
            warn!("the screening socket could not answer a question: {e}");
        }
    }
}

/// Answers a client the service will not serve, without waiting for it.
fn refuse_now(stream: &UnixStream, why: &str) {
    let _ = stream.set_nonblocking(true);
    let _ = write_answer(stream, &Answer::refused(why));
}

fn write_answer(mut stream: &UnixStream, answer: &Answer) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(answer).unwrap_or_default();
    bytes.push(b'\n');
    stream.write_all(&bytes)
}

/// Reads one line, giving up at `deadline` however the client dribbles it in.
fn read_line(mut stream: &UnixStream, deadline: Instant) -> Result<Vec<u8>, ReadEnd> {
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadEnd::TooSlow);
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) if line.is_empty() => return Err(ReadEnd::Gone),
            Ok(0) => return Ok(line),
            Ok(n) => {
                let chunk = &buf[..n];
                if let Some(end) = chunk.iter().position(|b| *b == b'\n') {
                    line.extend_from_slice(&chunk[..end]);
                    return if line.len() > MAX_LINE {
                        Err(ReadEnd::TooLong)
                    } else {
                        Ok(line)
                    };
                }
                line.extend_from_slice(chunk);
                if line.len() > MAX_LINE {
                    return Err(ReadEnd::TooLong);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadEnd::TooSlow);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("a screening client went away: {e}");
                return Err(ReadEnd::Gone);
            }
        }
    }
}

enum ReadEnd {
    Gone,
    TooSlow,
    TooLong,
}

fn handle(
    stream: UnixStream,
    uid: u32,
    started: Instant,
    screener: &Screener,
    rate: &Mutex<RateLimit>,
    options: &ScreeningOptions,
) {
    let deadline = started + DEADLINE;
    let answer = match read_line(&stream, deadline) {
        Ok(line) => answer_bytes(
            screener,
            &line,
            LocalTime::now(),
            options.trusts(uid),
            || {
                rate.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .allow(uid, Instant::now())
            },
        ),
        Err(ReadEnd::TooLong) => Answer::refused(format!(
            "the question is too long: at most {MAX_LINE} bytes on one line"
        )),
        // A silent or slow client is dropped without an answer: it has had its time.
        Err(ReadEnd::Gone | ReadEnd::TooSlow) => return,
    };
    // The agent's own work (a modem call) is bounded on its own; the client then has one more
    // short deadline to take the answer.
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let _ = write_answer(&stream, &answer);
}

/// The answer to one line as read from a client (any bytes, without the newline); `allow`
/// asks the account's rate limit, which a question about a protected contact never waits on.
pub(crate) fn answer_bytes(
    screener: &Screener,
    line: &[u8],
    at: LocalTime,
    trusted: bool,
    allow: impl FnOnce() -> bool,
) -> Answer {
    // R19: a question about 999 or a helpline is never throttled.
    let protected = std::str::from_utf8(line).is_ok_and(Screener::is_about_protected);
    if !protected && !allow() {
        return Answer::refused(
            "too many questions from this account; wait a moment and ask again",
        );
    }
    match std::str::from_utf8(line) {
        Ok(text) => screener.answer_line(text, at, trusted),
        Err(_) => Answer::refused("the question is not UTF-8 text"),
    }
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
    let question = Question {
        channel: channel.to_string(),
        address: address.to_string(),
    };
    ask_line(path, &serde_json::to_string(&question).unwrap_or_default())
}

/// Sends the service on `path` one line and reads its answer.
pub fn ask_line(path: &Path, line: &str) -> Result<Answer, AskError> {
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
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    (&stream).write_all(&bytes).map_err(io)?;
    let mut reply = String::new();
    BufReader::new((&stream).take(1024 * 1024))
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
    use haven_proto::agent::v1::{Channel, Contact, ContactAddress};

    fn policy() -> DevicePolicy {
        DevicePolicy {
            version: 4,
            contacts: vec![Contact {
                name: "Nan".into(),
                addresses: vec![ContactAddress {
                    channel: Channel::Call as i32,
                    address: "+447700900123".into(),
                    app: String::new(),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn started() -> (
        tempfile::TempDir,
        PathBuf,
        ContactScreening,
        Arc<MemorySink>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("screening.sock");
        let sink = Arc::new(MemorySink::default());
        let mut service = ContactScreening::start(&path, sink.clone()).unwrap();
        service.apply(&policy()).unwrap();
        (dir, path, service, sink)
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

    #[test]
    fn gd3_a_silent_client_is_dropped_without_an_answer() {
        let (_dir, path, _service, _sink) = started();
        let silent = UnixStream::connect(&path).unwrap();
        // The service closes its end once the deadline has passed: the read ends with nothing.
        let mut reply = Vec::new();
        (&silent).read_to_end(&mut reply).unwrap();
        assert!(reply.is_empty());
        // And the service still answers others.
        assert!(ask(&path, "call", "07700900123").unwrap().allowed());
    }

    #[test]
    fn gd3_a_client_dribbling_its_question_cannot_hold_a_slot_past_the_deadline() {
        let (_dir, path, _service, sink) = started();
        let slow = UnixStream::connect(&path).unwrap();
        let question = br#"{"channel":"call","address":"+447700900999"}"#;
        // One byte every quarter of the deadline: each read is quick, the whole is too slow.
        let mut closed = false;
        for byte in question {
            if (&slow).write_all(&[*byte]).is_err() {
                closed = true;
                break;
            }
            std::thread::sleep(DEADLINE / 4);
        }
        let _ = (&slow).write_all(b"\n");
        let mut reply = Vec::new();
        let _ = (&slow).read_to_end(&mut reply);
        assert!(
            closed || reply.is_empty(),
            "{}",
            String::from_utf8_lossy(&reply)
        );
        assert!(
            sink.take().is_empty(),
            "an unanswered question records nothing"
        );
    }

    #[test]
    fn gd3_a_flood_of_questions_is_throttled_and_cannot_flood_the_record() {
        let (_dir, path, _service, sink) = started();
        let mut throttled = 0;
        for n in 0..60 {
            let a = ask(&path, "call", &format!("+4477009{n:05}")).unwrap();
            if a.error.contains("too many questions") {
                throttled += 1;
            }
        }
        assert!(throttled > 0, "the flood was not throttled");
        // clause R19: while the account is throttled, 999 and Childline are still answered.
        for number in ["999", "0800 1111"] {
            let a = ask(&path, "call", number).unwrap();
            assert!(a.allowed(), "{number} while throttled: {a:?}");
        }
        // This process is trusted (root or the agent's own account), so answered refusals are
        // recorded — but no more than the account's burst and what it earned meanwhile.
        let recorded = sink.take().len();
        assert!(
            recorded < 60 && recorded + throttled == 60,
            "{recorded} + {throttled}"
        );
    }

    #[test]
    fn gd3_root_and_the_agent_itself_are_trusted_and_others_only_when_configured() {
        let options = ScreeningOptions {
            trusted_uids: vec![1234],
        };
        assert!(options.trusts(0));
        // SAFETY: geteuid takes nothing and cannot fail.
        assert!(options.trusts(unsafe { libc::geteuid() }));
        assert!(options.trusts(1234));
        assert!(!options.trusts(54321));
        let (a, b) = UnixStream::pair().unwrap();
        // SAFETY: as above.
        let me = unsafe { libc::geteuid() };
        assert_eq!(peer_uid(&a).unwrap(), me);
        drop(b);
    }
}
