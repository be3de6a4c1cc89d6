//! The category lists the controller sent (WB1, WB4): put together from their chunks, checked
//! against the SHA-256 the controller named, kept in the state folder (each written
//! atomically, so the device keeps enforcing them offline and after a reboot) and handed to
//! the web filter.
//!
//! Files: `<dir>/<category>.hvl` (the compiled form, `haven_proto::domain_list`) and
//! `<dir>/index.json` (the versions held and the controller's last index).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use haven_proto::agent::v1::{
    FilterListChunk, FilterListIndex, FilterListInstalled, FilterListVersion,
};
use haven_proto::domain_list;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::list::DomainSet;

/// The largest list (compiled) a device accepts: far above a million names (about 10 MB).
pub const MAX_LIST_BYTES: u64 = 256 * 1024 * 1024;

/// One version of a category, as held or as the controller says is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub category: String,
    pub version: u64,
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    held: Vec<Entry>,
    /// The controller's last index; `None` before it ever sent one.
    expected: Option<Vec<Entry>>,
}

struct Held {
    entry: Entry,
    set: Arc<DomainSet>,
}

struct Partial {
    version: u64,
    base: u64,
    total: u64,
    sha256: String,
    received: u64,
    buf: Vec<u8>,
    /// Checking-only mode: the whole list's hash, as it streams in.
    hasher: Option<sha2::Sha256>,
}

#[derive(Default)]
struct State {
    held: BTreeMap<String, Held>,
    expected: Option<Vec<Entry>>,
    partial: HashMap<String, Partial>,
}

/// The categories the controller's last index named that a lists folder does not hold yet
/// (`haven-agent status`, offline; reads only the index, not the lists).
pub fn waiting_in(dir: &std::path::Path) -> Vec<String> {
    let index: IndexFile = std::fs::read(dir.join("index.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    index
        .expected
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !index.held.contains(e))
        .map(|e| e.category)
        .collect()
}

/// The received lists, shared by the sync loop (which fills it) and the web filter (which
/// reads it when told they changed).
pub struct ReceivedLists {
    dir: Option<PathBuf>,
    state: Mutex<State>,
    /// Delivery benchmarks only (see [`ReceivedLists::checking_only`]).
    checking_only: bool,
}

impl std::fmt::Debug for ReceivedLists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReceivedLists({:?}, {:?})", self.dir, self.held())
    }
}

/// A category name is used as a file name: plain lower-case words only.
fn safe_category(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn entry_of(v: &FilterListVersion) -> Entry {
    Entry {
        category: v.category.clone(),
        version: v.version,
        sha256: v.sha256.clone(),
    }
}

impl ReceivedLists {
    /// Opens the lists kept in `dir` (none kept in memory only when `None`). A damaged or
    /// mismatched file is left out with a warning: the controller sends it again.
    pub fn open(dir: Option<PathBuf>) -> ReceivedLists {
        let mut state = State::default();
        if let Some(dir) = &dir {
            let index: IndexFile = std::fs::read(dir.join("index.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            state.expected = index.expected;
            for entry in index.held {
                if !safe_category(&entry.category) {
                    continue;
                }
                let path = dir.join(format!("{}.hvl", entry.category));
                let loaded = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        if domain_list::sha256_hex(&bytes) != entry.sha256 {
                            return Err("its contents do not match the version recorded".into());
                        }
                        DomainSet::from_compiled(&bytes, &path.display().to_string())
                            .map_err(|e| e.to_string())
                    });
                match loaded {
                    Ok(set) => {
                        info!(
                            "web filter: {} names for {} (version {}) from {}",
                            set.len(),
                            entry.category,
                            entry.version,
                            path.display()
                        );
                        state.held.insert(
                            entry.category.clone(),
                            Held {
                                entry,
                                set: Arc::new(set),
                            },
                        );
                    }
                    Err(e) => warn!(
                        "the filter list {} cannot be used ({e}); it is fetched again from the controller",
                        path.display()
                    ),
                }
            }
        }
        ReceivedLists {
            dir,
            state: Mutex::new(state),
            checking_only: false,
        }
    }

    /// For delivery benchmarks only: checks each whole list's SHA-256 as it streams in and
    /// records the version, but keeps no table and no bytes (a thousand simulated devices in
    /// one process could not each hold a million names); changes are taken on trust. A
    /// device never runs this way.
    pub fn checking_only() -> ReceivedLists {
        ReceivedLists {
            dir: None,
            state: Mutex::new(State::default()),
            checking_only: true,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The versions held, for `FilterListsHeld`.
    pub fn held(&self) -> Vec<Entry> {
        self.lock().held.values().map(|h| h.entry.clone()).collect()
    }

    pub fn held_message(&self) -> Vec<FilterListVersion> {
        self.held()
            .into_iter()
            .map(|e| FilterListVersion {
                category: e.category,
                version: e.version,
                sha256: e.sha256,
            })
            .collect()
    }

    /// Every list held, by category.
    pub fn sets(&self) -> Vec<(String, Arc<DomainSet>)> {
        self.lock()
            .held
            .iter()
            .map(|(c, h)| (c.clone(), h.set.clone()))
            .collect()
    }

    /// Categories the controller's index names that this device does not hold at that
    /// version yet (waiting for them).
    pub fn waiting_for(&self) -> Vec<String> {
        let s = self.lock();
        s.expected
            .iter()
            .flatten()
            .filter(|e| s.held.get(&e.category).is_none_or(|h| h.entry != **e))
            .map(|e| e.category.clone())
            .collect()
    }

    fn save_index(&self, s: &State) {
        let Some(dir) = &self.dir else { return };
        let index = IndexFile {
            held: s.held.values().map(|h| h.entry.clone()).collect(),
            expected: s.expected.clone(),
        };
        let result = std::fs::create_dir_all(dir).and_then(|()| {
            let bytes = serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?;
            crate::state::write_atomic(&dir.join("index.json"), &bytes, 0o600)
        });
        if let Err(e) = result {
            warn!(
                "could not record the filter lists in {} ({e}); they are enforced but fetched again after a restart",
                dir.display()
            );
        }
    }

    /// The controller's index of current lists: anything held that it no longer names is
    /// dropped. Returns whether a held list was dropped.
    pub fn on_index(&self, index: &FilterListIndex) -> bool {
        let mut s = self.lock();
        let expected: Vec<Entry> = index
            .lists
            .iter()
            .filter(|v| safe_category(&v.category))
            .map(entry_of)
            .collect();
        let before = s.held.len();
        s.held
            .retain(|c, _| expected.iter().any(|e| &e.category == c));
        let dropped = s.held.len() != before;
        if dropped && let Some(dir) = &self.dir {
            for c in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = c.file_name().to_string_lossy().to_string();
                if let Some(cat) = name.strip_suffix(".hvl")
                    && !s.held.contains_key(cat)
                {
                    let _ = std::fs::remove_file(c.path());
                }
            }
        }
        s.expected = Some(expected);
        self.save_index(&s);
        dropped
    }

    /// One chunk of a list. Returns what to tell the controller once the list is complete
    /// (installed, or why not); `None` while more chunks are due.
    pub fn on_chunk(&self, chunk: FilterListChunk) -> Option<FilterListInstalled> {
        let category = chunk.category.clone();
        let version = chunk.version;
        let refuse = |error: String| {
            warn!("the filter list for {category} (version {version}) was not installed: {error}");
            Some(FilterListInstalled {
                category: category.clone(),
                version,
                error,
            })
        };
        if !safe_category(&category) {
            return refuse("the category name is not one a device accepts".into());
        }
        if chunk.total_bytes > MAX_LIST_BYTES {
            return refuse(format!("it is bigger than {MAX_LIST_BYTES} bytes"));
        }
        let mut s = self.lock();
        if chunk.offset == 0 {
            s.partial.insert(
                category.clone(),
                Partial {
                    version,
                    base: chunk.base_version,
                    total: chunk.total_bytes,
                    sha256: chunk.sha256.clone(),
                    received: 0,
                    buf: if self.checking_only {
                        Vec::new()
                    } else {
                        Vec::with_capacity(chunk.total_bytes as usize)
                    },
                    hasher: (self.checking_only && chunk.base_version == 0)
                        .then(<sha2::Sha256 as sha2::Digest>::new),
                },
            );
        }
        let Some(p) = s.partial.get_mut(&category) else {
            return refuse("a chunk arrived without the start of its list".into());
        };
        if p.version != version
            || p.base != chunk.base_version
            || p.total != chunk.total_bytes
            || p.received != chunk.offset
            || p.received + chunk.data.len() as u64 > p.total
        {
            s.partial.remove(&category);
            return refuse("its chunks arrived out of order".into());
        }
        p.received += chunk.data.len() as u64;
        match &mut p.hasher {
            Some(h) => sha2::Digest::update(h, &chunk.data),
            None if self.checking_only => {}
            None => p.buf.extend_from_slice(&chunk.data),
        }
        if p.received < p.total {
            return None;
        }
        let p = s.partial.remove(&category)?;
        if self.checking_only {
            if let Some(h) = p.hasher
                && format!("{:x}", sha2::Digest::finalize(h)) != p.sha256
            {
                return refuse("its contents do not match the version the controller named".into());
            }
            let entry = Entry {
                category: category.clone(),
                version,
                sha256: p.sha256,
            };
            s.held.insert(
                category.clone(),
                Held {
                    entry,
                    set: Arc::new(DomainSet::default()),
                },
            );
            return Some(FilterListInstalled {
                category,
                version,
                error: String::new(),
            });
        }
        let full = if p.base == 0 {
            p.buf
        } else {
            let Some(base) = s.held.get(&category).filter(|h| h.entry.version == p.base) else {
                return refuse(format!(
                    "it is a change from version {}, which this device does not hold",
                    p.base
                ));
            };
            match domain_list::apply(&base.set.to_compiled(), &p.buf) {
                Ok(full) => full,
                Err(e) => return refuse(e.to_string()),
            }
        };
        if domain_list::sha256_hex(&full) != p.sha256 {
            return refuse("its contents do not match the version the controller named".into());
        }
        let set = match DomainSet::from_compiled(&full, &format!("{category} version {version}")) {
            Ok(set) => set,
            Err(e) => return refuse(e.to_string()),
        };
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{category}.hvl"));
            if let Err(e) = std::fs::create_dir_all(dir)
                .and_then(|()| crate::state::write_atomic(&path, &full, 0o600))
            {
                // Enforced now all the same; only surviving a restart is at risk.
                warn!(
                    "could not keep the filter list in {} ({e}); it is enforced but fetched again after a restart",
                    path.display()
                );
            }
        }
        info!(
            "web filter: installed {} names for {category} (version {version}{})",
            set.len(),
            if p.base == 0 {
                String::new()
            } else {
                format!(", a change from version {}", p.base)
            }
        );
        s.held.insert(
            category.clone(),
            Held {
                entry: Entry {
                    category: category.clone(),
                    version,
                    sha256: p.sha256,
                },
                set: Arc::new(set),
            },
        );
        self.save_index(&s);
        Some(FilterListInstalled {
            category,
            version,
            error: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        category: &str,
        version: u64,
        base: u64,
        payload: &[u8],
        sha: &str,
        size: usize,
    ) -> Vec<FilterListChunk> {
        payload
            .chunks(size.max(1))
            .scan(0u64, |at, part| {
                let c = FilterListChunk {
                    category: category.into(),
                    version,
                    base_version: base,
                    offset: *at,
                    total_bytes: payload.len() as u64,
                    data: part.to_vec().into(),
                    sha256: sha.into(),
                };
                *at += part.len() as u64;
                Some(c)
            })
            .collect()
    }

    fn index(entries: &[(&str, u64, &str)]) -> FilterListIndex {
        FilterListIndex {
            lists: entries
                .iter()
                .map(|(c, v, s)| FilterListVersion {
                    category: c.to_string(),
                    version: *v,
                    sha256: s.to_string(),
                })
                .collect(),
        }
    }

    // clause WB1, WB4: a list arrives in chunks, is checked, kept on disk and survives a restart;
    // a change from the held version is applied; a damaged one is refused and the old kept.
    #[test]
    fn wb4_lists_are_assembled_checked_kept_and_changed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let lists = ReceivedLists::open(Some(dir.path().to_path_buf()));
        let v1 = domain_list::compile(b"bets.example\ncasino.example\n").bytes;
        let sha1 = domain_list::sha256_hex(&v1);
        lists.on_index(&index(&[("gambling", 1, &sha1)]));
        assert_eq!(lists.waiting_for(), ["gambling"]);
        let mut parts = chunks("gambling", 1, 0, &v1, &sha1, 7);
        let last = parts.pop().unwrap();
        for c in parts {
            assert_eq!(lists.on_chunk(c), None);
        }
        let done = lists.on_chunk(last).unwrap();
        assert_eq!(done.error, "", "{done:?}");
        assert!(lists.waiting_for().is_empty());
        assert!(lists.sets()[0].1.contains_suffix_of("www.bets.example"));

        // Version 2: one name more, sent as a change.
        let v2 = domain_list::compile(b"bets.example\ncasino.example\npoker.example\n").bytes;
        let sha2 = domain_list::sha256_hex(&v2);
        let change = domain_list::diff(&v1, &v2).unwrap();
        let done = lists
            .on_chunk(chunks("gambling", 2, 1, &change, &sha2, 1 << 20).remove(0))
            .unwrap();
        assert_eq!(done.error, "");
        // A damaged version 3 is refused; version 2 stays.
        let bad = lists
            .on_chunk(chunks("gambling", 3, 0, &v1, &sha2, 1 << 20).remove(0))
            .unwrap();
        assert!(bad.error.contains("do not match"), "{bad:?}");
        assert_eq!(lists.held()[0].version, 2);

        // After a restart the list is still there, from disk.
        let again = ReceivedLists::open(Some(dir.path().to_path_buf()));
        assert_eq!(again.held()[0].version, 2);
        assert!(again.sets()[0].1.contains_suffix_of("poker.example"));
        // The controller dropped the category: so does the device.
        assert!(again.on_index(&index(&[])));
        assert!(again.sets().is_empty());
        assert!(!dir.path().join("gambling.hvl").exists());
    }

    #[test]
    fn chunks_out_of_order_or_with_bad_names_are_refused() {
        let lists = ReceivedLists::open(None);
        let v1 = domain_list::compile(b"a.example\nb.example\n").bytes;
        let sha = domain_list::sha256_hex(&v1);
        let mut parts = chunks("adult", 1, 0, &v1, &sha, 4);
        parts.remove(1);
        assert_eq!(lists.on_chunk(parts.remove(0)), None);
        assert!(!lists.on_chunk(parts.remove(0)).unwrap().error.is_empty());
        let evil = chunks("../etc", 1, 0, &v1, &sha, 1 << 20).remove(0);
        assert!(!lists.on_chunk(evil).unwrap().error.is_empty());
        let change = chunks("adult", 2, 1, &v1, &sha, 1 << 20).remove(0);
        assert!(
            lists
                .on_chunk(change)
                .unwrap()
                .error
                .contains("does not hold")
        );
    }
}
