//! The violations journal: every blocked attempt is written to disk before it is ever sent.
//!
//! Guards hand what they blocked to the journal (it is the agent's [`BlockedSink`]); the sync
//! loop sends what is in it to the controller in batches and removes what the controller
//! acknowledges. Because a record is on disk (appended and fsynced) before `blocked()`
//! returns, it survives `kill -9`, a crash or a power cut, and is delivered after reconnect;
//! each record has a random 128-bit id, so sending it twice never stores it twice (the
//! controller de-duplicates by id).
//!
//! File format (`violations.journal` in the state folder, mode 0600), one JSON object a line:
//!
//! ```text
//! {"type":"violation","id":"9f…32 hex…","at":1764320000000,"kind":"unknown-contact","subject":"+447700900999","detail":"…","channel":"call"}
//! {"type":"ack","ids":["9f…","…"]}
//! ```
//!
//! Acknowledgements are appended as `ack` lines; the file is rewritten atomically (compacted)
//! when more acknowledged than unacknowledged records are in it, when it is opened, and after
//! a failed write. A torn last line after a crash is skipped, never fatal.
//!
//! Bounded: at most `capacity` unacknowledged records (10,000 by default; subjects and details
//! are clipped, so that is a few megabytes at most). When full, the oldest tenth is dropped and
//! a `journal-overflow` record says how many were dropped and from when — nothing is lost
//! silently. A write that fails (a full disk) is logged and the record kept in memory, to be
//! sent while the agent runs; enforcement never waits on the journal.
//!
//! Privacy: a record holds only what a guard reported (what was blocked, never content).

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use haven_proto::agent::v1::{Channel, Violation, ViolationKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::report::{Blocked, BlockedSink, LogSink};
use crate::state::{StateDir, write_atomic};

/// The journal's file name in the state folder.
pub const JOURNAL_FILE: &str = "violations.journal";
/// Unacknowledged records kept at most, by default.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Longest subject and detail kept (the controller clips to the same lengths).
const MAX_SUBJECT: usize = 256;
const MAX_DETAIL: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the violations journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the violations journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Violation(Stored),
    Ack { ids: Vec<String> },
}

/// A violation as written to disk: readable by whoever looks after the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stored {
    id: String,
    /// When it happened, Unix milliseconds.
    at: i64,
    /// `app-blocked`, `unknown-contact`, … (as in `haven violations`).
    kind: String,
    subject: String,
    detail: String,
    /// `call`, `sms`, `messaging` or empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    channel: String,
    /// For `journal-overflow` records: how many records were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
}

/// `ViolationKind::AppBlocked` → `app-blocked` (the words `haven violations` uses).
pub fn kind_name(kind: ViolationKind) -> String {
    kind.as_str_name()
        .trim_start_matches("VIOLATION_KIND_")
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn kind_from_name(name: &str) -> ViolationKind {
    let wire = format!(
        "VIOLATION_KIND_{}",
        name.to_ascii_uppercase().replace('-', "_")
    );
    ViolationKind::from_str_name(&wire).unwrap_or(ViolationKind::Unspecified)
}

/// `Channel::Call` → `call`; unspecified → empty.
pub fn channel_name(channel: Channel) -> String {
    match channel {
        Channel::Unspecified => String::new(),
        c => c
            .as_str_name()
            .trim_start_matches("CHANNEL_")
            .to_ascii_lowercase(),
    }
}

fn channel_from_name(name: &str) -> Channel {
    if name.is_empty() {
        return Channel::Unspecified;
    }
    Channel::from_str_name(&format!("CHANNEL_{}", name.to_ascii_uppercase()))
        .unwrap_or(Channel::Unspecified)
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text[..end].to_string(),
        None => text.to_string(),
    }
}

/// A fresh random 128-bit id, as 32 hex digits.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A record waiting for the controller's acknowledgement.
#[derive(Debug, Clone)]
struct Entry {
    /// Order of writing, so the sync loop can send each record once per stream.
    seq: u64,
    violation: Violation,
    /// For overflow records: how many records they stand for.
    dropped: Option<u64>,
}

impl Entry {
    fn to_line(&self) -> Line {
        let v = &self.violation;
        Line::Violation(Stored {
            id: v.id.clone(),
            at: v.occurred_at_unix_ms,
            kind: kind_name(v.kind()),
            subject: v.subject.clone(),
            detail: v.detail.clone(),
            channel: channel_name(v.channel()),
            dropped: self.dropped,
        })
    }
}

fn encode(line: &Line) -> Vec<u8> {
    // Serialising plain strings and numbers cannot fail; an empty line would be skipped.
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

struct Inner {
    /// Open for appending; `None` for an in-memory journal.
    file: Option<File>,
    pending: VecDeque<Entry>,
    next_seq: u64,
    /// Acknowledged records still in the file (dead lines), since the last compaction.
    dead_in_file: usize,
    /// A write failed (say, the disk is full): the file may end in a torn line, so the next
    /// write rewrites it whole. Also stops the warning being logged for every record.
    failing: bool,
}

/// The durable violations journal. Share it as `Arc<Journal>`: guards write to it (as a
/// [`BlockedSink`]), the sync loop reads, sends and acknowledges.
pub struct Journal {
    path: Option<PathBuf>,
    capacity: usize,
    echo: bool,
    inner: Mutex<Inner>,
    notify: Notify,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("capacity", &self.capacity)
            .field("pending", &self.len())
            .finish()
    }
}

impl Journal {
    /// Opens (or creates) the journal in the state folder.
    pub fn open(state: &StateDir) -> Result<Journal, JournalError> {
        state.create().map_err(|e| JournalError::Write {
            path: state.root().to_path_buf(),
            source: io::Error::other(e.to_string()),
        })?;
        Self::open_at(&state.root().join(JOURNAL_FILE), DEFAULT_CAPACITY)
    }

    /// Opens (or creates) the journal at `path`, keeping at most `capacity` records.
    pub fn open_at(path: &Path, capacity: usize) -> Result<Journal, JournalError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(JournalError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let (entries, damaged) = replay(&bytes);
        if damaged > 0 {
            // Usually the last line, torn by a crash or power cut while it was written.
            warn!(
                "skipped {damaged} damaged line(s) in {} (most likely cut short by a crash)",
                path.display()
            );
        }
        let journal = Journal {
            path: Some(path.to_path_buf()),
            capacity: capacity.max(2),
            echo: false,
            inner: Mutex::new(Inner {
                file: None,
                next_seq: entries.len() as u64,
                pending: entries,
                dead_in_file: 0,
                failing: false,
            }),
            notify: Notify::new(),
        };
        {
            let mut inner = journal.lock();
            while inner.pending.len() > journal.capacity {
                journal.trim(&mut inner);
            }
            // Start from a clean file: no acknowledged or torn lines, ending in a newline.
            journal
                .compact(&mut inner)
                .map_err(|source| JournalError::Write {
                    path: path.to_path_buf(),
                    source,
                })?;
            if !inner.pending.is_empty() {
                info!(
                    "{} blocked attempt(s) from before the restart are waiting to be sent",
                    inner.pending.len()
                );
            }
        }
        Ok(journal)
    }

    /// A journal kept in memory only: for running without a writable state folder, and tests.
    pub fn in_memory(capacity: usize) -> Journal {
        Journal {
            path: None,
            capacity: capacity.max(2),
            echo: false,
            inner: Mutex::new(Inner {
                file: None,
                pending: VecDeque::new(),
                next_seq: 0,
                dead_in_file: 0,
                failing: false,
            }),
            notify: Notify::new(),
        }
    }

    /// Also print each record as [`LogSink`] does (`blocked: <kind> <subject> — <detail>`),
    /// after it is on disk.
    pub fn echo_to_stdout(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Unacknowledged records.
    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every unacknowledged record, oldest first.
    pub fn pending(&self) -> Vec<Violation> {
        self.lock()
            .pending
            .iter()
            .map(|e| e.violation.clone())
            .collect()
    }

    /// Up to `max` records written after sequence number `after` (`None`: from the start),
    /// oldest first, with the sequence number of the last one returned. The sync loop uses it
    /// to send each record once per stream.
    pub fn unsent(&self, after: Option<u64>, max: usize) -> (Vec<Violation>, Option<u64>) {
        let inner = self.lock();
        let mut last = after;
        let batch = inner
            .pending
            .iter()
            .filter(|e| after.is_none_or(|a| e.seq > a))
            .take(max)
            .map(|e| {
                last = Some(e.seq);
                e.violation.clone()
            })
            .collect();
        (batch, last)
    }

    /// Completes when a record is written after the last call to this (a stored permit
    /// means one written while nobody waited is not missed).
    pub async fn written(&self) {
        self.notify.notified().await;
    }

    /// Forgets the records the controller has stored. Returns how many were removed.
    pub fn acknowledge(&self, ids: &[String]) -> usize {
        let ids: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut inner = self.lock();
        let before = inner.pending.len();
        inner
            .pending
            .retain(|e| !ids.contains(e.violation.id.as_str()));
        let removed = before - inner.pending.len();
        if removed == 0 || self.path.is_none() {
            return removed;
        }
        inner.dead_in_file += removed;
        let result = if inner.failing || inner.dead_in_file >= inner.pending.len() {
            self.compact(&mut inner)
        } else {
            let acked: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
            self.append(&mut inner, &encode(&Line::Ack { ids: acked }))
        };
        // Not fatal: an acknowledged record that stays in the file is sent again after a
        // restart, and the controller ignores it.
        if let Err(e) = result {
            self.write_failed(&mut inner, &e);
        }
        removed
    }

    fn write_failed(&self, inner: &mut Inner, e: &io::Error) {
        if !inner.failing {
            warn!(
                "cannot write the violations journal {}: {e}; blocked attempts are kept in memory \
                 and still sent while the agent runs, and enforcement continues",
                self.path.as_deref().unwrap_or(Path::new("")).display()
            );
        }
        inner.failing = true;
        inner.file = None;
    }

    fn append(&self, inner: &mut Inner, bytes: &[u8]) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if inner.failing || inner.file.is_none() {
            // The file may end in a torn line: write it whole again (this includes `bytes`,
            // since the caller already added the record to `pending`).
            return self.compact(inner);
        }
        let file = match inner.file.as_mut() {
            Some(f) => f,
            None => return Err(io::Error::other(format!("{} is not open", path.display()))),
        };
        file.write_all(bytes)?;
        file.sync_data()
    }

    /// Rewrites the file with only the unacknowledged records, atomically, and reopens it
    /// for appending.
    fn compact(&self, inner: &mut Inner) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        inner.file = None;
        let mut bytes = Vec::with_capacity(inner.pending.len() * 256);
        for entry in &inner.pending {
            bytes.extend(encode(&entry.to_line()));
        }
        write_atomic(path, &bytes, 0o600)?;
        inner.file = Some(OpenOptions::new().append(true).mode(0o600).open(path)?);
        inner.dead_in_file = 0;
        if inner.failing {
            info!(
                "the violations journal {} can be written again",
                path.display()
            );
        }
        inner.failing = false;
        Ok(())
    }

    /// Drops the oldest tenth of the records and adds one overflow record saying so.
    fn trim(&self, inner: &mut Inner) {
        // At least two, so that adding the overflow record still makes room.
        let drop = (self.capacity / 10).max(2);
        let mut dropped_records: u64 = 0;
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        // Ordinary records go first; earlier overflow records only once none is left, and
        // then their counts carry over, so the total is never lost.
        let mut removed = 0;
        let mut i = 0;
        while removed < drop && i < inner.pending.len() {
            if inner.pending[i].dropped.is_none() {
                let e = inner.pending.remove(i).expect("index checked");
                dropped_records += 1;
                first = first.min(e.violation.occurred_at_unix_ms);
                last = last.max(e.violation.occurred_at_unix_ms);
                removed += 1;
            } else {
                i += 1;
            }
        }
        while removed < drop {
            let Some(e) = inner.pending.pop_front() else {
                break;
            };
            dropped_records += e.dropped.unwrap_or(1);
            first = first.min(e.violation.occurred_at_unix_ms);
            last = last.max(e.violation.occurred_at_unix_ms);
            removed += 1;
        }
        let when = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms)
                .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|_| "an unknown time".into())
        };
        let detail = format!(
            "{dropped_records} blocked attempt(s) from {} to {} were dropped on the device: it \
             could not reach the controller for a long time and its journal was full",
            when(first),
            when(last)
        );
        warn!("{detail}");
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.pending.push_back(Entry {
            seq,
            violation: Violation {
                id: new_id(),
                occurred_at_unix_ms: crate::report::now_unix_ms(),
                kind: ViolationKind::JournalOverflow as i32,
                subject: "violations journal".into(),
                detail,
                channel: Channel::Unspecified as i32,
            },
            dropped: Some(dropped_records),
        });
    }

    /// Writes one record; see the module documentation for what "written" promises.
    pub fn record(&self, blocked: &Blocked) -> String {
        let id = new_id();
        let violation = Violation {
            id: id.clone(),
            occurred_at_unix_ms: blocked.occurred_at_unix_ms,
            kind: blocked.kind as i32,
            subject: clip(&blocked.subject, MAX_SUBJECT),
            detail: clip(&blocked.detail, MAX_DETAIL),
            channel: blocked.channel as i32,
        };
        {
            let mut inner = self.lock();
            let mut trimmed = false;
            while inner.pending.len() >= self.capacity {
                self.trim(&mut inner);
                trimmed = true;
            }
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let entry = Entry {
                seq,
                violation,
                dropped: None,
            };
            let line = encode(&entry.to_line());
            inner.pending.push_back(entry);
            let result = if trimmed {
                self.compact(&mut inner)
            } else {
                self.append(&mut inner, &line)
            };
            if let Err(e) = result {
                self.write_failed(&mut inner, &e);
            }
        }
        self.notify.notify_one();
        id
    }
}

impl BlockedSink for Journal {
    fn blocked(&self, record: Blocked) {
        self.record(&record);
        if self.echo {
            LogSink.blocked(record);
        }
    }
}

/// Reads the file's lines: records minus acknowledged ones, oldest first, and how many lines
/// could not be read.
fn replay(bytes: &[u8]) -> (VecDeque<Entry>, usize) {
    let mut records: Vec<Stored> = Vec::new();
    let mut acked: HashSet<String> = HashSet::new();
    let mut damaged = 0;
    for raw in bytes.split(|b| *b == b'\n') {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Line>(raw) {
            Ok(Line::Violation(v)) if !v.id.is_empty() => records.push(v),
            Ok(Line::Ack { ids }) => acked.extend(ids),
            Ok(Line::Violation(_)) | Err(_) => damaged += 1,
        }
    }
    let mut seen = HashSet::new();
    let entries = records
        .into_iter()
        .filter(|v| !acked.contains(&v.id) && seen.insert(v.id.clone()))
        .enumerate()
        .map(|(i, v)| Entry {
            seq: i as u64,
            violation: Violation {
                id: v.id,
                occurred_at_unix_ms: v.at,
                kind: kind_from_name(&v.kind) as i32,
                subject: v.subject,
                detail: v.detail,
                channel: channel_from_name(&v.channel) as i32,
            },
            dropped: v.dropped,
        })
        .collect();
    (entries, damaged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn attempt(n: usize) -> Blocked {
        Blocked::now(
            ViolationKind::UnknownContact,
            format!("+4477009{n:05}"),
            "tried to call a number that is not on the list",
        )
        .on_channel(Channel::Call)
    }

    fn subjects(j: &Journal) -> Vec<String> {
        j.pending().into_iter().map(|v| v.subject).collect()
    }

    #[test]
    fn d5_records_survive_reopening_with_unique_ids_and_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::open_at(&path, 100).unwrap();
        assert!(j.is_empty());
        for n in 0..3 {
            j.blocked(attempt(n));
        }
        let before = j.pending();
        // No close, no flush: what blocked() wrote is already on disk (as after kill -9).
        let again = Journal::open_at(&path, 100).unwrap();
        assert_eq!(again.pending(), before);
        let ids: HashSet<_> = before.iter().map(|v| v.id.clone()).collect();
        assert_eq!(ids.len(), 3);
        assert!(ids.iter().all(|id| id.len() == 32));
        assert_eq!(before[0].channel(), Channel::Call);
        assert_eq!(before[0].kind(), ViolationKind::UnknownContact);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn d5_acknowledged_records_are_forgotten_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::open_at(&path, 100).unwrap();
        for n in 0..5 {
            j.blocked(attempt(n));
        }
        let ids: Vec<String> = j.pending().iter().map(|v| v.id.clone()).collect();
        assert_eq!(j.acknowledge(&ids[..1]), 1);
        assert_eq!(j.acknowledge(&["not-ours".into()]), 0);
        assert_eq!(subjects(&j).len(), 4);
        // The ack line is on disk: a restart does not bring the record back.
        let again = Journal::open_at(&path, 100).unwrap();
        assert_eq!(again.pending(), j.pending());
        assert_eq!(again.acknowledge(&ids[1..]), 4);
        assert!(again.is_empty());
        // Once everything is acknowledged the file is compacted to nothing.
        assert_eq!(fs::read(&path).unwrap(), b"");
        assert!(Journal::open_at(&path, 100).unwrap().is_empty());
    }

    #[test]
    fn d5_a_torn_last_line_after_a_crash_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::open_at(&path, 100).unwrap();
        j.blocked(attempt(1));
        j.blocked(attempt(2));
        drop(j);
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"type":"violation","id":"abc","at":1,"ki"#);
        fs::write(&path, &bytes).unwrap();
        let j = Journal::open_at(&path, 100).unwrap();
        assert_eq!(j.len(), 2);
        // The file was cleaned, so the next record is not glued onto the torn one.
        j.blocked(attempt(3));
        assert_eq!(Journal::open_at(&path, 100).unwrap().len(), 3);
        // Garbage anywhere is skipped too.
        fs::write(&path, b"\xff\xfe\nnot json\n{\"type\":\"violation\"}\n").unwrap();
        assert!(Journal::open_at(&path, 100).unwrap().is_empty());
    }

    #[test]
    fn d5_a_full_journal_drops_the_oldest_and_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::open_at(&path, 20).unwrap();
        for n in 0..25 {
            j.blocked(attempt(n));
        }
        let pending = j.pending();
        assert!(pending.len() <= 20, "{}", pending.len());
        let overflow: Vec<_> = pending
            .iter()
            .filter(|v| v.kind() == ViolationKind::JournalOverflow)
            .collect();
        assert!(!overflow.is_empty());
        let dropped: u64 = overflow
            .iter()
            .map(|v| {
                v.detail
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        let kept = pending.len() as u64 - overflow.len() as u64;
        assert_eq!(kept + dropped, 25, "every attempt is kept or counted");
        // The newest are kept, the oldest went.
        assert_eq!(pending.last().unwrap().subject, attempt(24).subject);
        assert!(!subjects(&j).contains(&attempt(0).subject));
        // And that survives a restart, counts included.
        let again = Journal::open_at(&path, 20).unwrap();
        assert_eq!(again.pending(), pending);
    }

    #[test]
    fn d5_overflow_counts_carry_over_when_only_overflow_records_are_left() {
        let j = Journal::in_memory(2);
        for n in 0..50 {
            j.blocked(attempt(n));
        }
        let pending = j.pending();
        assert!(pending.len() <= 2);
        let inner = j.lock();
        let counted: u64 = inner.pending.iter().map(|e| e.dropped.unwrap_or(1)).sum();
        assert_eq!(counted, 50);
    }

    #[test]
    fn d5_a_journal_that_cannot_be_written_keeps_records_in_memory_and_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::open_at(&path, 100).unwrap();
        // Make the file impossible to write: replace it with a non-empty folder.
        j.lock().file = None;
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"x").unwrap();
        j.blocked(attempt(1));
        j.blocked(attempt(2));
        assert_eq!(j.len(), 2);
        assert!(j.lock().failing);
        // Once it can be written again, everything kept in memory goes to disk.
        fs::remove_dir_all(&path).unwrap();
        j.blocked(attempt(3));
        assert!(!j.lock().failing);
        assert_eq!(Journal::open_at(&path, 100).unwrap().len(), 3);
    }

    #[test]
    fn d5_unsent_gives_each_record_once_in_order() {
        let j = Journal::in_memory(100);
        for n in 0..5 {
            j.blocked(attempt(n));
        }
        let (first, last) = j.unsent(None, 3);
        assert_eq!(first.len(), 3);
        let (rest, last) = j.unsent(last, 3);
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1].subject, attempt(4).subject);
        let (none, same) = j.unsent(last, 3);
        assert!(none.is_empty());
        assert_eq!(same, last);
    }

    #[test]
    fn names_round_trip() {
        for kind in [
            ViolationKind::AppBlocked,
            ViolationKind::CameraBlocked,
            ViolationKind::ContactBlocked,
            ViolationKind::UnknownContact,
            ViolationKind::WebBlocked,
            ViolationKind::Tampering,
            ViolationKind::JournalOverflow,
        ] {
            assert_eq!(kind_from_name(&kind_name(kind)), kind);
        }
        assert_eq!(
            kind_name(ViolationKind::JournalOverflow),
            "journal-overflow"
        );
        for ch in [
            Channel::Call,
            Channel::Sms,
            Channel::Messaging,
            Channel::Unspecified,
        ] {
            assert_eq!(channel_from_name(&channel_name(ch)), ch);
        }
        assert_eq!(clip("ééé", 2), "éé");
    }
}
