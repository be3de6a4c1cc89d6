//! Writing files so that a crash or a full disk never leaves half a file behind, and so that
//! secrets are readable by their owner only.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates a directory (and parents) readable by its owner only.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Files in the data directory anyone may read: the CA's and server's certificates (devices
/// and staff fetch the CA anyway) and the settings file.
const PUBLIC_IN_DATA_DIR: [&str; 3] = ["ca.pem", "server.pem", "haven.toml"];

/// Makes the data directory owner-only (0700) and every file in it but the certificates and
/// the settings owner-only (0600): the CA's key, the server's key, the database and its WAL
/// and SHM files, the first administrator's login line. Run on every start, because a
/// directory made by hand or restored from a backup keeps whatever modes it came with.
/// Returns the files it had to tighten, so the controller can say so.
pub fn tighten_data_dir(dir: &Path) -> io::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut tightened = Vec::new();
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        tightened.push(dir.display().to_string());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if !meta.is_file() || PUBLIC_IN_DATA_DIR.contains(&name.as_str()) {
            continue;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o600))?;
            tightened.push(name);
        }
    }
    Ok(tightened)
}

/// Writes a secret (mode 0600) atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, 0o600)
}

/// Writes a non-secret file (mode 0644) atomically.
pub fn write_public(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, 0o644)
}

/// Writes to a temporary file beside `path`, syncs it, then renames it into place, so readers
/// see the old file or the new one, never a mixture.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    // An existing data directory with loose modes (made by hand, restored from a backup, or
    // files the database made under a permissive umask) is tightened on start.
    #[test]
    fn the_data_directory_and_its_secrets_are_tightened_on_every_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("haven");
        fs::create_dir(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        for (name, mode) in [
            ("ca-key.pem", 0o644),
            ("haven.db", 0o644),
            ("haven.db-wal", 0o664),
            ("ca.pem", 0o644),
            ("server-key.pem", 0o600),
        ] {
            fs::write(d.join(name), b"x").unwrap();
            fs::set_permissions(d.join(name), fs::Permissions::from_mode(mode)).unwrap();
        }
        let tightened = tighten_data_dir(&d).unwrap();
        assert_eq!(tightened.len(), 4, "{tightened:?}");
        let mode = |n: &str| fs::metadata(d.join(n)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(mode("ca-key.pem"), 0o600);
        assert_eq!(mode("haven.db"), 0o600);
        assert_eq!(mode("haven.db-wal"), 0o600);
        assert_eq!(mode("ca.pem"), 0o644);
        assert!(tighten_data_dir(&d).unwrap().is_empty());
    }

    #[test]
    fn secrets_are_owner_only_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
