//! Signed checkpoints of the audit trail (R36): what makes a rewritten or shortened trail
//! provable.
//!
//! The hash chain alone proves only that the entries follow from one another: someone with
//! the database can edit an entry and recompute every hash after it, or delete the newest
//! entries, and the chain still verifies. A checkpoint is the controller's Ed25519 signature
//! over (the newest entry's sequence number, its hash, how many entries there were, when, which
//! key). A manager keeps the printed block off the controller; later the trail must still hold
//! that entry, with that hash, at that position — which a rewrite or a truncation cannot keep
//! without the signing key, which is separate from the CA's.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::UnixMillis;
use super::audit::AuditEntry;

/// One signed statement about the trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The newest entry's sequence number when it was made.
    pub entry_seq: i64,
    /// That entry's hash.
    pub entry_hash: String,
    /// How many entries the trail held (all verified) when it was made.
    pub entries: u64,
    pub at: UnixMillis,
    /// Which key signed it (`key_id` of its public key).
    pub key_id: String,
    /// The Ed25519 signature over `message`, hex.
    pub signature: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error(
        "this is not a Haven audit checkpoint ({0}): use the whole block `haven audit checkpoint` printed, from BEGIN to END"
    )]
    Malformed(String),
    #[error(
        "the checkpoint's signature does not match what it says: it was altered after it was printed, or is not from Haven"
    )]
    BadSignature,
}

/// Where a checkpoint and the trail disagree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Mismatch {
    #[error(
        "the checkpoint was signed by key {theirs}, not this controller's key {ours}: it is from another controller, or the key was replaced"
    )]
    OtherKey { theirs: String, ours: String },
    #[error(
        "the trail ends at entry {last} but the checkpoint of {when} covered {entries} entries: the newest entries were deleted"
    )]
    Truncated {
        last: i64,
        entries: u64,
        when: String,
    },
    #[error(
        "entry {seq} is not the entry the checkpoint of {when} signed: the trail was rewritten at or before entry {seq}"
    )]
    Rewritten { seq: i64, when: String },
}

const BEGIN: &str = "-----BEGIN HAVEN AUDIT CHECKPOINT-----";
const END: &str = "-----END HAVEN AUDIT CHECKPOINT-----";
/// Names what is signed, so a signature made for anything else never verifies as a checkpoint.
const CONTEXT: &[u8] = b"haven audit checkpoint v1";

/// A short name for a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(public.as_bytes()))[..16].to_string()
}

/// The bytes signed: every field length-prefixed, like the chain's own hashes.
fn message(entry_seq: i64, entry_hash: &str, entries: u64, at: UnixMillis, key: &str) -> Vec<u8> {
    let mut m = Vec::new();
    for field in [
        CONTEXT,
        &entry_seq.to_be_bytes(),
        entry_hash.as_bytes(),
        &entries.to_be_bytes(),
        &at.to_be_bytes(),
        key.as_bytes(),
    ] {
        m.extend_from_slice(&(field.len() as u64).to_be_bytes());
        m.extend_from_slice(field);
    }
    m
}

/// Signs the trail as it stands: `newest` is its newest entry, `entries` how many it holds.
pub fn sign(key: &SigningKey, newest: &AuditEntry, entries: u64, at: UnixMillis) -> Checkpoint {
    let id = key_id(&key.verifying_key());
    let sig = key.sign(&message(newest.seq, &newest.hash, entries, at, &id));
    Checkpoint {
        entry_seq: newest.seq,
        entry_hash: newest.hash.clone(),
        entries,
        at,
        key_id: id,
        signature: hex::encode(sig.to_bytes()),
    }
}

impl Checkpoint {
    /// Whether `public` signed exactly this (and is the key it names).
    pub fn verify(&self, public: &VerifyingKey) -> Result<(), CheckpointError> {
        if key_id(public) != self.key_id {
            return Err(CheckpointError::BadSignature);
        }
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::BadSignature)?;
        public
            .verify(
                &message(
                    self.entry_seq,
                    &self.entry_hash,
                    self.entries,
                    self.at,
                    &self.key_id,
                ),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| CheckpointError::BadSignature)
    }

    /// The self-contained block a manager keeps: the fields, the public key and the signature.
    /// `when` is the time as people read it (the caller formats it; it is not signed).
    pub fn to_text(&self, public: &VerifyingKey, when: &str) -> String {
        format!(
            "{BEGIN}\n\
             # Keep this off the controller. Check the trail still holds it with:\n\
             #   haven audit verify --since-checkpoint FILE\n\
             made: {when}\n\
             entry: {}\n\
             entry-hash: {}\n\
             entries: {}\n\
             at-unix-ms: {}\n\
             key-id: {}\n\
             public-key: {}\n\
             signature: {}\n\
             {END}\n",
            self.entry_seq,
            self.entry_hash,
            self.entries,
            self.at,
            self.key_id,
            hex::encode(public.as_bytes()),
            self.signature,
        )
    }

    /// Reads a block printed by `to_text` (anything around it is ignored) and checks its
    /// signature with the public key it carries. Returns the checkpoint and that key.
    pub fn from_text(text: &str) -> Result<(Checkpoint, VerifyingKey), CheckpointError> {
        let bad = |what: &str| CheckpointError::Malformed(what.to_string());
        let start = text.find(BEGIN).ok_or_else(|| bad("no BEGIN line"))?;
        let body = &text[start + BEGIN.len()..];
        let end = body.find(END).ok_or_else(|| bad("no END line"))?;
        let mut fields = std::collections::HashMap::new();
        for line in body[..end].lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(&format!("the line {line:?} is not `name: value`")))?;
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        let field = |k: &str| {
            fields
                .get(k)
                .cloned()
                .ok_or_else(|| bad(&format!("no {k} line")))
        };
        let number = |k: &str| -> Result<i64, CheckpointError> {
            field(k)?
                .parse::<i64>()
                .map_err(|_| bad(&format!("{k} is not a number")))
        };
        let key_bytes: [u8; 32] = hex::decode(field("public-key")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("public-key is not 64 hex digits"))?;
        let public =
            VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("public-key is not a key"))?;
        let entries = u64::try_from(number("entries")?).map_err(|_| bad("entries is negative"))?;
        let checkpoint = Checkpoint {
            entry_seq: number("entry")?,
            entry_hash: field("entry-hash")?,
            entries,
            at: number("at-unix-ms")?,
            key_id: field("key-id")?,
            signature: field("signature")?,
        };
        checkpoint.verify(&public)?;
        Ok((checkpoint, public))
    }
}

/// Checks a (signature-verified) checkpoint against the trail as it stands now: `ours` is
/// the controller's key id, `last_seq` the trail's newest entry and `at_position` the entry
/// now at the checkpoint's position, if any. `when` is the checkpoint's time as people read it.
pub fn check(
    checkpoint: &Checkpoint,
    ours: &str,
    last_seq: i64,
    at_position: Option<&AuditEntry>,
    when: &str,
) -> Result<(), Mismatch> {
    if checkpoint.key_id != ours {
        return Err(Mismatch::OtherKey {
            theirs: checkpoint.key_id.clone(),
            ours: ours.to_string(),
        });
    }
    match at_position {
        None => Err(Mismatch::Truncated {
            last: last_seq,
            entries: checkpoint.entries,
            when: when.to_string(),
        }),
        Some(e) if e.seq != checkpoint.entry_seq || e.hash != checkpoint.entry_hash => {
            Err(Mismatch::Rewritten {
                seq: checkpoint.entry_seq,
                when: when.to_string(),
            })
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{GENESIS, entry_hash};

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn entry(seq: i64, detail: &str) -> AuditEntry {
        let hash = entry_hash(GENESIS, seq, 10, "stf-1", "child.add", "chd-1", detail);
        AuditEntry {
            seq,
            at: 10,
            actor: "stf-1".into(),
            action: "child.add".into(),
            subject: "chd-1".into(),
            detail: detail.into(),
            prev_hash: GENESIS.into(),
            hash,
        }
    }

    // clause R36
    #[test]
    fn r36_a_printed_checkpoint_reads_back_and_any_edit_breaks_its_signature() {
        let k = key(7);
        let cp = sign(&k, &entry(42, "{}"), 42, 1_000);
        let text = cp.to_text(&k.verifying_key(), "6 Dec 2026 11:40");
        let (back, public) = Checkpoint::from_text(&format!("notes\n{text}\nmore")).unwrap();
        assert_eq!(back, cp);
        assert_eq!(public, k.verifying_key());

        for (from, to) in [
            ("entry: 42", "entry: 41"),
            ("entries: 42", "entries: 43"),
            ("at-unix-ms: 1000", "at-unix-ms: 1001"),
        ] {
            let edited = text.replace(from, to);
            assert_eq!(
                Checkpoint::from_text(&edited).unwrap_err(),
                CheckpointError::BadSignature,
                "{from}"
            );
        }
        // Someone else's key, with the rest copied: the key id no longer matches.
        let other = hex::encode(key(8).verifying_key().as_bytes());
        let swapped = text.replace(&hex::encode(k.verifying_key().as_bytes()), &other);
        assert_eq!(
            Checkpoint::from_text(&swapped).unwrap_err(),
            CheckpointError::BadSignature
        );
        assert!(matches!(
            Checkpoint::from_text("entry: 1").unwrap_err(),
            CheckpointError::Malformed(_)
        ));
    }

    // clause R36
    #[test]
    fn r36_a_checkpoint_finds_truncation_rewrite_and_another_key() {
        let k = key(7);
        let e = entry(5, "{}");
        let cp = sign(&k, &e, 5, 1_000);
        let ours = key_id(&k.verifying_key());
        assert_eq!(check(&cp, &ours, 9, Some(&e), "then"), Ok(()));
        assert!(matches!(
            check(&cp, &ours, 3, None, "then"),
            Err(Mismatch::Truncated { last: 3, .. })
        ));
        assert!(matches!(
            check(&cp, &ours, 9, Some(&entry(5, "{\"x\":1}")), "then"),
            Err(Mismatch::Rewritten { seq: 5, .. })
        ));
        assert!(matches!(
            check(&cp, "someone-else", 9, Some(&e), "then"),
            Err(Mismatch::OtherKey { .. })
        ));
    }
}
