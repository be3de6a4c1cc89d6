//! Children's requests and views (Regulation 7): a durable spool in the state folder.
//!
//! A child writes a request with `haven-agent request "..."`; it must survive reboots and
//! days without network, and must never be lost, so each request is its own small JSON file,
//! written atomically, and moves through three folders:
//!
//! ```text
//! requests/outbox/<id>.json   saved here, not yet confirmed by the controller (resent on
//!                             every reconnect; the controller de-duplicates by id)
//! requests/sent/<id>.json     the controller confirmed receipt (`ChildRequestReceived`)
//! requests/answers/<id>.json  the staff's answer (`ChildRequestAnswer`)
//! ```
//!
//! Permissions: the folders are made 0700 like the rest of the state folder, so today only the
//! account that runs the agent (root on a real device) can write a request. Letting the
//! child's own account hand a request to the root-owned agent (a group-writable drop folder
//! or a local socket) is a later issue; nothing here assumes who the writer is beyond that.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use haven_proto::agent::v1::{ChildRequest, ChildRequestAnswer};
use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError, write_atomic};

/// The longest request a child can write, in characters (after trimming).
pub const MAX_TEXT_CHARS: usize = 1000;
/// Longest id accepted from the controller (it stores ids of at most 64 characters).
const MAX_ID_LEN: usize = 64;

const REQUESTS_DIR: &str = "requests";
const OUTBOX_DIR: &str = "outbox";
const SENT_DIR: &str = "sent";
const ANSWERS_DIR: &str = "answers";

/// Why a request could not be saved or read. The first two are shown to the child, so they
/// are kind and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(
        "Your request is empty. Please write what you would like to ask or say, for example: \
         haven-agent request \"I would like to phone my nan on Sundays\""
    )]
    Empty,
    #[error(
        "Your request is {chars} characters long, and the most that fits is {MAX_TEXT_CHARS}. \
         Please make it a little shorter and try again."
    )]
    TooLong { chars: usize },
    #[error("{0}")]
    State(#[from] StateError),
}

/// One request as stored in `outbox/` or `sent/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub id: String,
    pub text: String,
    pub made_at_unix_ms: i64,
}

impl StoredRequest {
    pub fn to_message(&self) -> ChildRequest {
        ChildRequest {
            id: self.id.clone(),
            text: self.text.clone(),
            made_at_unix_ms: self.made_at_unix_ms,
        }
    }
}

/// A staff answer as stored in `answers/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub request_id: String,
    pub decision: String,
    pub reason: String,
    pub answered_by: String,
    pub answered_at_unix_ms: i64,
}

impl From<&ChildRequestAnswer> for StoredAnswer {
    fn from(a: &ChildRequestAnswer) -> Self {
        Self {
            request_id: a.request_id.clone(),
            decision: a.decision.clone(),
            reason: a.reason.clone(),
            answered_by: a.answered_by.clone(),
            answered_at_unix_ms: a.answered_at_unix_ms,
        }
    }
}

/// Where a request is on its way to the staff and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    WaitingToSend,
    Sent,
    Answered,
}

/// A request with its answer, if any, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub request: StoredRequest,
    pub state: RequestState,
    pub answer: Option<StoredAnswer>,
}

/// The staff's decision and reason in plain, kind words, e.g. "Staff said yes: from 4pm" or
/// "Staff said no, because it is a school night". Decisions are "agreed", "not agreed" and
/// "agreed in part" (spelling with `_` or capitals is tolerated); anything else is quoted.
pub fn describe_answer(answer: &StoredAnswer) -> String {
    let decision = answer
        .decision
        .trim()
        .to_lowercase()
        .replace(['_', '-'], " ");
    let reason = answer.reason.trim();
    let (said, joiner) = match decision.as_str() {
        "agreed" | "yes" => ("Staff said yes".to_string(), ": "),
        "not agreed" | "no" => ("Staff said no".to_string(), ", because "),
        "agreed in part" => ("Staff said yes to part of it".to_string(), ": "),
        "" => ("Staff answered".to_string(), ": "),
        _ => (
            format!("Staff answered \"{}\"", answer.decision.trim()),
            ": ",
        ),
    };
    if reason.is_empty() {
        format!("{said}.")
    } else {
        format!("{said}{joiner}{reason}")
    }
}

/// Checks and tidies a child's text: trimmed, 1..=[`MAX_TEXT_CHARS`] characters.
pub fn clean_text(text: &str) -> Result<String, RequestError> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 {
        return Err(RequestError::Empty);
    }
    if chars > MAX_TEXT_CHARS {
        return Err(RequestError::TooLong { chars });
    }
    Ok(text.to_string())
}

/// Whether `id` can safely name a file: ids come from the controller too, and must never
/// reach outside the spool (no `/`, no `..`, nothing hidden).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new random id, formatted as a UUID (version 4) so the controller can store it as is.
pub fn new_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The `requests/` folder of one state folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpool {
    root: PathBuf,
}

impl RequestSpool {
    pub fn new(state: &StateDir) -> Self {
        Self {
            root: state.root().join(REQUESTS_DIR),
        }
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.root.join(OUTBOX_DIR)
    }
    pub fn sent_dir(&self) -> PathBuf {
        self.root.join(SENT_DIR)
    }
    pub fn answers_dir(&self) -> PathBuf {
        self.root.join(ANSWERS_DIR)
    }

    fn file(dir: &Path, id: &str) -> PathBuf {
        dir.join(format!("{id}.json"))
    }

    /// Makes `dir` (and parents) with mode 0700; see the module notes on permissions.
    fn ensure(dir: &Path) -> Result<(), StateError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::Write {
                path: dir.to_path_buf(),
                source,
            })
    }

    /// Saves a new request in the outbox; it is on disk (synced) when this returns.
    pub fn submit(&self, text: &str, made_at_unix_ms: i64) -> Result<StoredRequest, RequestError> {
        let request = StoredRequest {
            id: new_id(),
            text: clean_text(text)?,
            made_at_unix_ms,
        };
        let dir = self.outbox_dir();
        Self::ensure(&dir)?;
        write_json(&Self::file(&dir, &request.id), &request)?;
        Ok(request)
    }

    /// Ids of the requests waiting in the outbox (from the file names, without reading them):
    /// cheap enough to call every couple of seconds.
    pub fn outbox_ids(&self) -> Result<Vec<String>, StateError> {
        ids_in(&self.outbox_dir())
    }

    /// Reads one outbox request.
    pub fn read_outbox(&self, id: &str) -> Result<Option<StoredRequest>, StateError> {
        read_json(&Self::file(&self.outbox_dir(), id))
    }

    /// Every request still waiting to be confirmed, oldest first. Damaged files are left
    /// where they are and skipped, so one bad file never holds the others back.
    pub fn pending(&self) -> Result<Vec<StoredRequest>, StateError> {
        let mut list: Vec<StoredRequest> = self
            .outbox_ids()?
            .iter()
            .filter_map(|id| self.read_outbox(id).ok().flatten())
            .collect();
        sort_requests(&mut list);
        Ok(list)
    }

    /// The controller has the request: move it from the outbox to `sent/`. Returns whether
    /// it was still in the outbox (a repeated confirmation is not an error).
    pub fn mark_received(&self, id: &str) -> Result<bool, StateError> {
        if !valid_id(id) {
            return Ok(false);
        }
        let from = Self::file(&self.outbox_dir(), id);
        if !from.try_exists().unwrap_or(true) {
            return Ok(false);
        }
        let sent = self.sent_dir();
        Self::ensure(&sent)?;
        let to = Self::file(&sent, id);
        match fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(StateError::Write { path: to, source }),
        }
        // Both folders changed; sync them so a power cut cannot bring the file back to the
        // outbox (harmless, it would only be resent) or lose it from both.
        sync_dir(&sent)?;
        sync_dir(&self.outbox_dir())?;
        Ok(true)
    }

    /// Stores the staff's answer (replacing any earlier one for the same request). An answer
    /// also proves receipt, so the request leaves the outbox.
    pub fn save_answer(&self, answer: &StoredAnswer) -> Result<(), StateError> {
        if !valid_id(&answer.request_id) {
            return Err(StateError::Corrupt {
                path: self.answers_dir(),
                reason: format!(
                    "the controller sent an answer for an unusable request id {:?}",
                    answer.request_id
                ),
            });
        }
        let dir = self.answers_dir();
        Self::ensure(&dir)?;
        write_json(&Self::file(&dir, &answer.request_id), answer)?;
        self.mark_received(&answer.request_id)?;
        Ok(())
    }

    /// Every request this device knows, oldest first, with its state and answer. A missing
    /// spool means no requests; damaged files are skipped so `status` still shows the rest.
    pub fn records(&self) -> Result<Vec<RequestRecord>, StateError> {
        let read_all = |dir: PathBuf| -> Result<Vec<StoredRequest>, StateError> {
            Ok(ids_in(&dir)?
                .iter()
                .filter_map(|id| {
                    read_json::<StoredRequest>(&Self::file(&dir, id))
                        .ok()
                        .flatten()
                })
                .collect())
        };
        let mut answers: HashMap<String, StoredAnswer> = HashMap::new();
        for id in ids_in(&self.answers_dir())? {
            if let Ok(Some(a)) = read_json::<StoredAnswer>(&Self::file(&self.answers_dir(), &id)) {
                answers.insert(a.request_id.clone(), a);
            }
        }
        let mut records = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // `sent/` first: if a crash left a copy in both, the later state wins.
        for (list, state) in [
            (read_all(self.sent_dir())?, RequestState::Sent),
            (read_all(self.outbox_dir())?, RequestState::WaitingToSend),
        ] {
            for request in list {
                if !seen.insert(request.id.clone()) {
                    continue;
                }
                let answer = answers.remove(&request.id);
                let state = if answer.is_some() {
                    RequestState::Answered
                } else {
                    state
                };
                records.push(RequestRecord {
                    request,
                    state,
                    answer,
                });
            }
        }
        // An answer whose request file is gone (say, the folder was restored from an old
        // backup) is still the child's answer: show it without the text.
        for (id, answer) in answers {
            records.push(RequestRecord {
                request: StoredRequest {
                    id,
                    text: String::new(),
                    made_at_unix_ms: answer.answered_at_unix_ms,
                },
                state: RequestState::Answered,
                answer: Some(answer),
            });
        }
        records.sort_by(|a, b| {
            (a.request.made_at_unix_ms, &a.request.id)
                .cmp(&(b.request.made_at_unix_ms, &b.request.id))
        });
        Ok(records)
    }
}

fn sort_requests(list: &mut [StoredRequest]) {
    list.sort_by(|a, b| (a.made_at_unix_ms, &a.id).cmp(&(b.made_at_unix_ms, &b.id)));
}

/// The ids of the `<id>.json` files in `dir`, sorted; temporary files (`.name.tmp.pid`) and
/// anything else are ignored. A missing folder has none.
fn ids_in(dir: &Path) -> Result<Vec<String>, StateError> {
    let read_err = |source| StateError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json"))
            && valid_id(id)
        {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes, 0o600).map_err(|source| StateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StateError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, RequestSpool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = RequestSpool::new(&StateDir::new(dir.path()));
        (dir, spool)
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(clean_text("  hello \n").unwrap(), "hello");
        assert!(matches!(clean_text("   \n\t"), Err(RequestError::Empty)));
        assert!(matches!(clean_text(""), Err(RequestError::Empty)));
        let max = "é".repeat(MAX_TEXT_CHARS);
        assert_eq!(clean_text(&max).unwrap(), max, "counted in characters");
        let long = "a".repeat(MAX_TEXT_CHARS + 1);
        assert!(matches!(
            clean_text(&long),
            Err(RequestError::TooLong { chars: 1001 })
        ));
        // The refusals are one kind, plain line.
        for e in [RequestError::Empty, RequestError::TooLong { chars: 1001 }] {
            let text = e.to_string();
            assert!(
                !text.contains('\n') && text.starts_with("Your request"),
                "{text}"
            );
        }
    }

    #[test]
    fn answers_are_described_kindly() {
        let answer = |decision: &str, reason: &str| StoredAnswer {
            request_id: "r".into(),
            decision: decision.into(),
            reason: reason.into(),
            answered_by: "Jo".into(),
            answered_at_unix_ms: 1,
        };
        assert_eq!(
            describe_answer(&answer("agreed", "every Sunday at 5pm")),
            "Staff said yes: every Sunday at 5pm"
        );
        assert_eq!(
            describe_answer(&answer("not agreed", "it is a school night")),
            "Staff said no, because it is a school night"
        );
        assert_eq!(
            describe_answer(&answer("agreed_in_part", "")),
            "Staff said yes to part of it."
        );
        assert_eq!(
            describe_answer(&answer("maybe", "ask again")),
            "Staff answered \"maybe\": ask again"
        );
    }

    #[test]
    fn ids_are_unique_uuids_and_hostile_ids_are_refused() {
        let a = new_id();
        assert_eq!(a.len(), 36);
        assert!(valid_id(&a));
        assert_ne!(a, new_id());
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn submitted_requests_are_pending_oldest_first_until_received() {
        let (_dir, spool) = spool();
        assert!(spool.pending().unwrap().is_empty(), "no spool yet");
        let second = spool.submit("second", 2_000).unwrap();
        let first = spool.submit("  first  ", 1_000).unwrap();
        assert_eq!(first.text, "first");
        assert!(matches!(spool.submit(" ", 3_000), Err(RequestError::Empty)));
        let pending = spool.pending().unwrap();
        assert_eq!(pending, [first.clone(), second.clone()]);
        assert_eq!(pending[0].to_message().made_at_unix_ms, 1_000);

        assert!(spool.mark_received(&first.id).unwrap());
        assert!(!spool.mark_received(&first.id).unwrap(), "repeat is fine");
        assert!(!spool.mark_received("../../etc/passwd").unwrap());
        assert_eq!(spool.pending().unwrap(), std::slice::from_ref(&second));
        // No temporary files are left in the outbox.
        assert_eq!(fs::read_dir(spool.outbox_dir()).unwrap().count(), 1);

        let records = spool.records().unwrap();
        let states: Vec<_> = records.iter().map(|r| r.state).collect();
        assert_eq!(states, [RequestState::Sent, RequestState::WaitingToSend]);
    }

    #[test]
    fn an_answer_is_stored_and_implies_receipt() {
        let (_dir, spool) = spool();
        let r = spool.submit("Can I stay up late on Friday?", 5).unwrap();
        let answer = StoredAnswer {
            request_id: r.id.clone(),
            decision: "agreed".into(),
            reason: "until 10pm".into(),
            answered_by: "Jo".into(),
            answered_at_unix_ms: 9,
        };
        spool.save_answer(&answer).unwrap();
        assert!(spool.pending().unwrap().is_empty());
        let records = spool.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].state, RequestState::Answered);
        assert_eq!(records[0].answer.as_ref(), Some(&answer));
        assert_eq!(records[0].request.text, "Can I stay up late on Friday?");
        let hostile = StoredAnswer {
            request_id: "../x".into(),
            ..answer
        };
        assert!(spool.save_answer(&hostile).is_err());
    }

    #[test]
    fn a_damaged_file_does_not_hide_the_others() {
        let (_dir, spool) = spool();
        let good = spool.submit("hello", 1).unwrap();
        fs::write(spool.outbox_dir().join("bad.json"), b"{not json").unwrap();
        fs::write(spool.outbox_dir().join(".x.json.tmp.1"), b"partial").unwrap();
        assert_eq!(spool.pending().unwrap(), [good]);
        assert_eq!(spool.outbox_ids().unwrap().len(), 2);
        assert_eq!(spool.records().unwrap().len(), 1);
    }
}
