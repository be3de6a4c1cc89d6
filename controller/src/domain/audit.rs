//! The append-only audit trail: every change to a record, chained by hashes so that any later
//! edit, insertion or deletion can be detected (Regulation 36: records are never silently
//! changed).
//!
//! Each entry's hash covers the previous entry's hash and the entry's own fields, with every
//! field length-prefixed so no two different entries can produce the same input.

use sha2::{Digest, Sha256};

use super::UnixMillis;

/// The hash the first entry chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One change, as it is written down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: UnixMillis,
    /// Who made the change: a staff id, `device:<id>`, or `system`.
    pub actor: String,
    /// What kind of change, e.g. `child.add`.
    pub action: String,
    /// The record changed, e.g. a child's id.
    pub subject: String,
    /// The facts of the change, as JSON.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry with these fields following `prev_hash`.
pub fn entry_hash(
    prev_hash: &str,
    seq: i64,
    at: UnixMillis,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
) -> String {
    let mut h = Sha256::new();
    for field in [
        prev_hash.as_bytes(),
        &seq.to_be_bytes(),
        &at.to_be_bytes(),
        actor.as_bytes(),
        action.as_bytes(),
        subject.as_bytes(),
        detail.as_bytes(),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field);
    }
    hex::encode(h.finalize())
}

/// Where a chain first stops proving itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub reason: &'static str,
}

/// Checks a chain one entry at a time, so a long trail can be read in pages.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    prev: String,
    expected_seq: i64,
    count: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            prev: GENESIS.to_string(),
            expected_seq: 1,
            count: 0,
        }
    }
}

impl ChainVerifier {
    /// Checks the next entry; the first that does not follow from the one before is a break.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), Break> {
        if e.seq != self.expected_seq {
            return Err(Break {
                seq: e.seq,
                reason: "an entry before this one is missing",
            });
        }
        if e.prev_hash != self.prev {
            return Err(Break {
                seq: e.seq,
                reason: "it does not follow from the entry before it",
            });
        }
        let h = entry_hash(
            &e.prev_hash,
            e.seq,
            e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.detail,
        );
        if h != e.hash {
            return Err(Break {
                seq: e.seq,
                reason: "its contents were changed after it was written",
            });
        }
        self.prev = e.hash.clone();
        self.expected_seq = e.seq + 1;
        self.count += 1;
        Ok(())
    }

    /// How many entries were checked.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Walks entries in order and returns the first that does not follow from the one before.
pub fn verify_chain<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> Result<u64, Break> {
    let mut v = ChainVerifier::default();
    for e in entries {
        v.push(e)?;
    }
    Ok(v.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEntry> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let hash = entry_hash(&prev, seq, seq * 10, "stf-1", "child.add", "chd-1", "{}");
                let e = AuditEntry {
                    seq,
                    at: seq * 10,
                    actor: "stf-1".into(),
                    action: "child.add".into(),
                    subject: "chd-1".into(),
                    detail: "{}".into(),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    // clause R36
    #[test]
    fn r36_an_intact_chain_verifies_and_any_change_is_found() {
        let entries = chain(5);
        assert_eq!(verify_chain(&entries), Ok(5));

        let mut edited = entries.clone();
        edited[2].detail = "{\"name\":\"someone else\"}".into();
        assert_eq!(verify_chain(&edited).unwrap_err().seq, 3);

        let mut removed = entries.clone();
        removed.remove(1);
        assert_eq!(verify_chain(&removed).unwrap_err().seq, 3);

        let mut first_gone = entries.clone();
        first_gone.remove(0);
        assert_eq!(verify_chain(&first_gone).unwrap_err().seq, 2);
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        let a = entry_hash(GENESIS, 1, 1, "ab", "c", "", "");
        let b = entry_hash(GENESIS, 1, 1, "a", "bc", "", "");
        assert_ne!(a, b);
    }
}
