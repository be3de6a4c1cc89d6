//! The audit trail's signing key: an Ed25519 key kept apart from the CA's, so whoever could
//! issue device certificates still cannot sign checkpoints, and the other way round.
//!
//! `audit-key.txt` in the data directory (0600, like every secret there) holds the 32-byte
//! secret as 64 hex digits; it is made on first start.

use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::domain::checkpoint::key_id;
use crate::files::write_private;

pub const FILE_NAME: &str = "audit-key.txt";

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("could not read or write {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the audit signing key {0} is damaged: restore it from a backup (checkpoints kept so far need it to be checked against this controller)"
    )]
    Damaged(PathBuf),
}

pub struct AuditKey {
    signing: SigningKey,
    /// The public key's short name, as printed in every checkpoint.
    pub id: String,
}

impl AuditKey {
    /// Loads the key from `dir`, making it if there is none yet.
    pub fn load_or_create(dir: &Path) -> Result<AuditKey, AuditKeyError> {
        let path = dir.join(FILE_NAME);
        let file_err = |source| AuditKeyError::File {
            path: path.clone(),
            source,
        };
        let signing = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| AuditKeyError::Damaged(path.clone()))?;
                SigningKey::from_bytes(&bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = crate::ids::random_bytes::<32>();
                write_private(&path, format!("{}\n", hex::encode(secret)).as_bytes())
                    .map_err(file_err)?;
                SigningKey::from_bytes(&secret)
            }
            Err(e) => return Err(file_err(e)),
        };
        Ok(AuditKey {
            id: key_id(&signing.verifying_key()),
            signing,
        })
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = AuditKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.id, b.id);
        assert_eq!(a.public(), b.public());

        std::fs::write(dir.path().join(FILE_NAME), "not hex").unwrap();
        assert!(matches!(
            AuditKey::load_or_create(dir.path()),
            Err(AuditKeyError::Damaged(_))
        ));
    }
}
