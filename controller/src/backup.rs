//! `haven backup` and `haven restore`: everything a controller needs to keep serving the same
//! devices — a consistent copy of the database and every key, certificate and setting in the
//! data directory — in one file encrypted with age (a passphrase, or an age key).
//!
//! Inside the encryption the file is: the line `haven-backup 1`, one line of JSON (the
//! manifest: each file's name, size and SHA-256), then each file's bytes in manifest order.
//! age authenticates every 64 KiB chunk and the end, so a damaged or cut-short file is refused;
//! the hashes are a second check that what was restored is what was backed up.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::sqlite::{SqliteStore, backup as db};

/// The first line of a decrypted backup.
const MAGIC: &[u8] = b"haven-backup 1\n";
/// The database inside a backup, and in a data directory.
pub const DATABASE: &str = "haven.db";
/// Left in the data directory by `haven serve --database postgres://…`, so `haven backup`
/// there refuses (with the pg_dump advice) even without `HAVEN_DATABASE_URL` set.
pub const POSTGRES_MARKER: &str = "database-is-postgresql";
/// The database's own companions: never copied (the snapshot already holds what they held).
const DATABASE_FILES: [&str; 4] = [
    "haven.db",
    "haven.db-wal",
    "haven.db-shm",
    "haven.db-journal",
];
/// Files anyone may read once restored (the same as `files::tighten_data_dir` leaves alone).
const PUBLIC: [&str; 3] = ["ca.pem", "server.pem", "haven.toml"];
/// A manifest longer than this is not one Haven wrote.
const MAX_MANIFEST: usize = 1024 * 1024;
/// How far a restore moves the policy counter forward: more policy changes than a home makes
/// between two backups in years, far fewer than the counter can hold.
pub const RESTORE_VERSION_STEP: u64 = 1_000_000;

/// How a backup is locked.
pub enum Lock {
    /// A passphrase (age's scrypt recipient): anyone with it can restore.
    Passphrase(SecretString),
    /// Public age keys (`age1…`): only the holder of a matching secret key can restore, and the
    /// controller machine never holds that key.
    Recipients(Vec<age::x25519::Recipient>),
}

/// How a backup is opened.
pub enum Key {
    Passphrase(SecretString),
    Identities(Vec<Box<dyn age::Identity + Send + Sync>>),
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "this controller keeps its records in PostgreSQL, which `haven backup` cannot copy \
         consistently: back the database up with pg_dump (e.g. `pg_dump -Fc DATABASE > \
         haven.dump`) and the data directory (its keys and settings) with your file backup"
    )]
    Postgres,
    #[error(
        "there is no controller database in {0}: give the data directory `haven serve` uses with --data-dir"
    )]
    NoDatabase(PathBuf),
    #[error("could not {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "{0} is inside the data directory: write backups elsewhere (a copy on the same disk is lost with it, and the next backup would carry this one)"
    )]
    InsideDataDir(PathBuf),
    #[error("the database could not be copied: {0}")]
    Database(String),
    #[error(
        "{0} is not empty: restore into a new or empty directory, so nothing already there is overwritten"
    )]
    NotEmpty(PathBuf),
    #[error("the passphrase or key does not open this backup: check it and try again")]
    WrongKey,
    #[error(
        "this backup is locked with a passphrase: give the passphrase (asked for, piped in, or --passphrase-file), not a key file"
    )]
    NeedsPassphrase,
    #[error("this backup is locked with an age key: give its secret key with --identity-file")]
    NeedsIdentity,
    #[error("this is not a Haven backup: {0}")]
    NotABackup(String),
    #[error("the backup is damaged ({0}); nothing was restored: use another copy")]
    Damaged(String),
    #[error("the restored database fails its checks ({0}); nothing was restored: use another copy")]
    BadDatabase(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    made_at_unix_ms: i64,
    haven_version: String,
    files: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    name: String,
    size: u64,
    sha256: String,
}

/// What a backup holds.
#[derive(Debug)]
pub struct Summary {
    pub files: Vec<String>,
    pub bytes: u64,
}

/// What a restore found.
#[derive(Debug)]
pub struct Restored {
    pub files: Vec<String>,
    pub made_at_unix_ms: i64,
    pub audit_entries: u64,
    pub policy_version: u64,
}

/// A folder removed (with what is in it) when dropped, unless kept.
struct Scratch(Option<PathBuf>);

impl Scratch {
    fn new(path: PathBuf) -> Result<Self, BackupError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io_err(format!(
                "create the private folder {}",
                path.display()
            )))?;
        Ok(Scratch(Some(path)))
    }
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Whether a name from a manifest or a directory is a plain file name Haven would keep in its
/// data directory (never a path, never hidden: temporary files start with a dot).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && name.len() <= 255
}

/// The data directory's files a backup carries besides the database: every plain file — the
/// CA's and server's keys and certificates, settings, and any key a later version keeps there —
/// so nothing is missed by a fixed list.
fn data_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let mut out = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(io_err(format!("read the data directory {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err("read the data directory"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if !is_file || !plain_name(&name) || DATABASE_FILES.contains(&name.as_str()) {
            continue;
        }
        let bytes =
            fs::read(entry.path()).map_err(io_err(format!("read {}", entry.path().display())))?;
        out.push((name, bytes));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn sha256_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut f = File::open(path).map_err(io_err(format!("read {}", path.display())))?;
    let mut h = Sha256::new();
    let n = io::copy(&mut f, &mut h).map_err(io_err(format!("read {}", path.display())))?;
    Ok((n, hex::encode(h.finalize())))
}

fn encryptor(lock: &Lock) -> Result<age::Encryptor, BackupError> {
    match lock {
        Lock::Passphrase(p) => Ok(age::Encryptor::with_user_passphrase(p.clone())),
        Lock::Recipients(rs) => {
            age::Encryptor::with_recipients(rs.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| BackupError::NotABackup(format!("the age keys cannot be used: {e}")))
        }
    }
}

/// Writes an encrypted backup of the controller in `data_dir` to `out`: atomically (a
/// temporary file beside it, then renamed) and owner-only (0600). Safe while `haven serve`
/// runs: the database is copied as one snapshot.
pub async fn backup(
    data_dir: &Path,
    out: &Path,
    lock: &Lock,
    now: i64,
) -> Result<Summary, BackupError> {
    // A PostgreSQL-backed controller: its records are not in the data directory, and a
    // backup without them would look whole and restore an empty controller.
    let on_postgres = std::env::var("HAVEN_DATABASE_URL").is_ok_and(|url| {
        matches!(
            crate::config::Database::parse(Some(&url)),
            Ok(crate::config::Database::Postgres(_))
        )
    });
    if on_postgres || data_dir.join(POSTGRES_MARKER).exists() {
        return Err(BackupError::Postgres);
    }
    let database = data_dir.join(DATABASE);
    if !database.is_file() {
        return Err(BackupError::NoDatabase(data_dir.to_path_buf()));
    }
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let (Ok(a), Ok(b)) = (out_dir.canonicalize(), data_dir.canonicalize())
        && a.starts_with(&b)
    {
        return Err(BackupError::InsideDataDir(out.to_path_buf()));
    }
    remove_stale_snapshots(data_dir);
    // The snapshot holds children's records unencrypted for a moment: inside the data
    // directory (owner-only), in a folder of its own that is removed whatever happens.
    let scratch = Scratch::new(data_dir.join(format!(
        ".backup-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )))?;
    let snapshot = scratch.path().join(DATABASE);
    db::snapshot_into(&database, &snapshot)
        .await
        .map_err(|e| BackupError::Database(e.to_string()))?;
    let others = data_files(data_dir)?;

    let (db_size, db_hash) = sha256_file(&snapshot)?;
    let mut files = vec![Entry {
        name: DATABASE.into(),
        size: db_size,
        sha256: db_hash,
    }];
    files.extend(others.iter().map(|(name, bytes)| Entry {
        name: name.clone(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
    }));
    let manifest = Manifest {
        made_at_unix_ms: now,
        haven_version: env!("CARGO_PKG_VERSION").into(),
        files,
    };
    let summary = Summary {
        files: manifest.files.iter().map(|f| f.name.clone()).collect(),
        bytes: manifest.files.iter().map(|f| f.size).sum(),
    };

    let encryptor = encryptor(lock)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BackupError::Io {
            what: format!("write {}", out.display()),
            source: io::Error::new(io::ErrorKind::InvalidInput, "it names no file"),
        })?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> Result<(), BackupError> {
        let what = format!("write the backup {}", out.display());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(what.clone()))?;
        let mut w = encryptor
            .wrap_output(BufWriter::new(file))
            .map_err(io_err(what.clone()))?;
        w.write_all(MAGIC).map_err(io_err(what.clone()))?;
        let mut line = serde_json::to_vec(&manifest)
            .map_err(|e| BackupError::Database(format!("the manifest: {e}")))?;
        line.push(b'\n');
        w.write_all(&line).map_err(io_err(what.clone()))?;
        let mut snap = File::open(&snapshot).map_err(io_err("read the snapshot"))?;
        io::copy(&mut snap, &mut w).map_err(io_err(what.clone()))?;
        for (_, bytes) in &others {
            w.write_all(bytes).map_err(io_err(what.clone()))?;
        }
        let buffered = w.finish().map_err(io_err(what.clone()))?;
        let file = buffered.into_inner().map_err(|e| BackupError::Io {
            what: what.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(what.clone()))?;
        fs::rename(&tmp, out).map_err(io_err(what.clone()))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(what))
    };
    let result = write();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    Ok(summary)
}

/// Removes snapshot folders left by a backup that was killed (its process is gone): they hold
/// an unencrypted copy of the database.
fn remove_stale_snapshots(data_dir: &Path) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".backup-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Reads exactly `n` bytes of `r` into `w`, hashing them.
fn copy_exact(r: &mut impl Read, w: &mut impl Write, n: u64) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut left = n;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "it ends before the files it lists",
            ));
        }
        h.update(&buf[..got]);
        w.write_all(&buf[..got])?;
        left -= got as u64;
    }
    Ok(hex::encode(h.finalize()))
}

/// Reads one line (up to `max` bytes) without reading past it.
fn read_line(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 || byte[0] == b'\n' {
            return Ok(line);
        }
        line.push(byte[0]);
        if line.len() > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

/// An error while reading the decrypted stream: age reports a chunk that fails its check as
/// `InvalidData`, and a cut-short file as an unexpected end.
fn damaged(e: io::Error) -> BackupError {
    BackupError::Damaged(e.to_string())
}

/// Restores the backup `file` into `data_dir`, which must not exist or be empty. Everything is
/// decrypted, checked (hashes, the database's integrity, the audit chain) and written into a
/// private folder beside `data_dir` first and renamed into place only then: a wrong key or a
/// damaged file leaves nothing behind.
pub async fn restore(file: &Path, data_dir: &Path, key: &Key) -> Result<Restored, BackupError> {
    match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(data_dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("read {}", data_dir.display()))(e)),
    }
    let input = File::open(file).map_err(io_err(format!("open {}", file.display())))?;
    let decryptor = age::Decryptor::new(BufReader::new(input)).map_err(|e| match e {
        age::DecryptError::Io(e) => BackupError::NotABackup(format!("it could not be read: {e}")),
        _ => BackupError::NotABackup("it is not an age-encrypted file".into()),
    })?;
    let reader = match (key, decryptor.is_scrypt()) {
        (Key::Passphrase(p), true) => {
            let identity = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        }
        (Key::Identities(ids), false) => {
            decryptor.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
        }
        (Key::Passphrase(_), false) => return Err(BackupError::NeedsIdentity),
        (Key::Identities(_), true) => return Err(BackupError::NeedsPassphrase),
    };
    let mut reader = reader.map_err(|e| match e {
        age::DecryptError::NoMatchingKeys
        | age::DecryptError::DecryptionFailed
        | age::DecryptError::KeyDecryptionFailed => BackupError::WrongKey,
        age::DecryptError::ExcessiveWork { .. } => BackupError::NotABackup(
            "its passphrase protection asks for far more work than Haven uses".into(),
        ),
        other => BackupError::Damaged(other.to_string()),
    })?;

    let magic = read_line(&mut reader, 64).map_err(damaged)?;
    if magic != MAGIC[..MAGIC.len() - 1] {
        return Err(BackupError::NotABackup(
            "it opens, but does not start as a Haven backup does".into(),
        ));
    }
    let line = read_line(&mut reader, MAX_MANIFEST).map_err(damaged)?;
    let manifest: Manifest = serde_json::from_slice(&line)
        .map_err(|e| BackupError::Damaged(format!("its list of files cannot be read: {e}")))?;
    if !manifest.files.iter().any(|f| f.name == DATABASE) {
        return Err(BackupError::Damaged("it holds no database".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for f in &manifest.files {
        if !plain_name(&f.name) || !seen.insert(f.name.as_str()) {
            return Err(BackupError::Damaged(format!(
                "it names a file Haven would not write: {:?}",
                f.name
            )));
        }
    }

    let target_name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BackupError::Io {
            what: format!("restore into {}", data_dir.display()),
            source: io::Error::new(io::ErrorKind::InvalidInput, "it names no directory"),
        })?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io_err(format!("create {}", parent.display())))?;
    let scratch = Scratch::new(parent.join(format!(
        ".{target_name}.restore-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    )))?;

    for f in &manifest.files {
        let path = scratch.path().join(&f.name);
        let mode = if PUBLIC.contains(&f.name.as_str()) {
            0o644
        } else {
            0o600
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io_err(format!("write {}", path.display())))?;
        let hash = copy_exact(&mut reader, &mut out, f.size).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                damaged(e)
            } else {
                io_err(format!("write {}", path.display()))(e)
            }
        })?;
        if hash != f.sha256 {
            return Err(BackupError::Damaged(format!(
                "{} is not what was backed up",
                f.name
            )));
        }
        out.sync_all()
            .map_err(io_err(format!("write {}", path.display())))?;
    }
    // Reading to the end is what makes age check the last chunk: a cut-short file fails here.
    let mut rest = [0u8; 1];
    match reader.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => {
            return Err(BackupError::Damaged(
                "it holds more than its list of files".into(),
            ));
        }
        Err(e) => return Err(damaged(e)),
    }

    let restored_db = scratch.path().join(DATABASE);
    db::check_file(&restored_db)
        .await
        .map_err(|e| BackupError::BadDatabase(e.to_string()))?;
    let (audit_entries, policy_version) = check_and_advance(&restored_db).await?;
    for name in ["haven.db-wal", "haven.db-shm"] {
        let p = scratch.path().join(name);
        if p.exists() {
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
        }
    }

    // Into place: an empty directory that was there is replaced by the full one.
    if data_dir.exists() {
        fs::remove_dir(data_dir).map_err(io_err(format!("replace {}", data_dir.display())))?;
    }
    let staged = scratch.keep();
    if let Err(e) = fs::rename(&staged, data_dir) {
        let _ = fs::remove_dir_all(&staged);
        return Err(io_err(format!(
            "move the restored files into {}",
            data_dir.display()
        ))(e));
    }
    File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("write {}", parent.display())))?;
    Ok(Restored {
        files: manifest.files.iter().map(|f| f.name.clone()).collect(),
        made_at_unix_ms: manifest.made_at_unix_ms,
        audit_entries,
        policy_version,
    })
}

/// Opens the restored database as the controller would (bringing its schema up to date),
/// proves the audit chain, and moves the policy counter past anything the lost controller may
/// have issued after the backup (`SqliteStore::advance_policy_versions`).
async fn check_and_advance(db: &Path) -> Result<(u64, u64), BackupError> {
    use crate::domain::audit::ChainVerifier;
    use crate::store::AuditStore;
    let bad = |e: crate::store::StoreError| BackupError::BadDatabase(e.to_string());
    let store = SqliteStore::open(db).await.map_err(bad)?;
    let result = async {
        let mut verifier = ChainVerifier::default();
        let mut after = 0;
        loop {
            let page = store.audit_entries(after, 1000).await.map_err(bad)?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                verifier.push(entry).map_err(|b| {
                    BackupError::BadDatabase(format!(
                        "its audit trail is broken at entry {}: {}",
                        b.seq, b.reason
                    ))
                })?;
            }
        }
        let version = store
            .advance_policy_versions(RESTORE_VERSION_STEP)
            .await
            .map_err(bad)?;
        Ok((verifier.count(), version))
    }
    .await;
    store.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(p: &str) -> SecretString {
        SecretString::from(p.to_string())
    }

    async fn controller_dir(root: &Path) -> PathBuf {
        let dir = root.join("data");
        crate::files::create_private_dir(&dir).unwrap();
        let store = SqliteStore::open(&dir.join(DATABASE)).await.unwrap();
        crate::store::HomeStore::add_home(
            &store,
            &crate::store::Actor::system(),
            "Oak House",
            "Europe/London",
            1,
        )
        .await
        .unwrap();
        store.close().await;
        crate::files::write_private(&dir.join("ca-key.pem"), b"ca key").unwrap();
        crate::files::write_public(&dir.join("ca.pem"), b"ca cert").unwrap();
        crate::files::write_private(&dir.join("audit-checkpoint-key.pem"), b"a later key").unwrap();
        dir
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    // clause R36
    #[tokio::test]
    async fn r36_a_backup_restores_every_file_with_private_modes() {
        let root = tempfile::tempdir().unwrap();
        let data = controller_dir(root.path()).await;
        let file = root.path().join("haven.backup");
        let lock = Lock::Passphrase(pass("correct horse battery"));
        let summary = backup(&data, &file, &lock, 7).await.unwrap();
        assert_eq!(
            summary.files,
            [
                "haven.db",
                "audit-checkpoint-key.pem",
                "ca-key.pem",
                "ca.pem"
            ]
        );
        assert_eq!(mode(&file), 0o600);
        let raw = fs::read(&file).unwrap();
        assert!(
            !raw.windows(9).any(|w| w == b"Oak House"),
            "the backup is encrypted"
        );
        assert!(
            fs::read_dir(&data).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')),
            "no snapshot left in the data directory"
        );

        let to = root.path().join("restored");
        let key = Key::Passphrase(pass("correct horse battery"));
        let restored = restore(&file, &to, &key).await.unwrap();
        assert_eq!(restored.made_at_unix_ms, 7);
        assert!(restored.audit_entries >= 1);
        assert!(restored.policy_version >= RESTORE_VERSION_STEP);
        assert_eq!(mode(&to), 0o700);
        assert_eq!(mode(&to.join("ca-key.pem")), 0o600);
        assert_eq!(mode(&to.join("haven.db")), 0o600);
        assert_eq!(mode(&to.join("ca.pem")), 0o644);
        assert_eq!(
            fs::read(to.join("audit-checkpoint-key.pem")).unwrap(),
            b"a later key"
        );
        let store = SqliteStore::open(&to.join(DATABASE)).await.unwrap();
        let homes = crate::store::HomeStore::list_homes(&store).await.unwrap();
        assert_eq!(homes.len(), 1);
        store.close().await;

        // Never over a directory that holds something.
        let err = restore(&file, &to, &key).await.unwrap_err();
        assert!(matches!(err, BackupError::NotEmpty(_)), "{err}");
    }

    #[tokio::test]
    async fn a_postgresql_backed_controller_is_told_to_use_pg_dump() {
        let root = tempfile::tempdir().unwrap();
        let data = controller_dir(root.path()).await;
        fs::write(data.join(POSTGRES_MARKER), b"postgres").unwrap();
        let lock = Lock::Passphrase(pass("correct horse battery"));
        let err = backup(&data, &root.path().join("b.age"), &lock, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::Postgres), "{err}");
        assert!(err.to_string().contains("pg_dump"), "{err}");
        assert!(!root.path().join("b.age").exists());
    }

    #[tokio::test]
    async fn a_backup_is_never_written_into_the_data_directory_and_stale_snapshots_go() {
        let root = tempfile::tempdir().unwrap();
        let data = controller_dir(root.path()).await;
        // A snapshot folder left by a backup killed long ago (no such process).
        let stale = data.join(".backup-999999999-1");
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join(DATABASE), b"old copy").unwrap();
        let lock = Lock::Passphrase(pass("correct horse battery"));
        let err = backup(&data, &data.join("b.age"), &lock, 1)
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::InsideDataDir(_)), "{err}");
        backup(&data, &root.path().join("b.age"), &lock, 1)
            .await
            .unwrap();
        assert!(!stale.exists());
    }

    #[tokio::test]
    async fn a_wrong_passphrase_or_a_damaged_file_writes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let data = controller_dir(root.path()).await;
        let file = root.path().join("haven.backup");
        backup(&data, &file, &Lock::Passphrase(pass("right one here")), 1)
            .await
            .unwrap();
        let to = root.path().join("restored");
        let err = restore(&file, &to, &Key::Passphrase(pass("wrong one here")))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::WrongKey), "{err}");
        assert!(!to.exists());

        // One byte changed in the middle, and a file cut short.
        let mut raw = fs::read(&file).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x40;
        let flipped = root.path().join("flipped.backup");
        fs::write(&flipped, &raw).unwrap();
        let key = Key::Passphrase(pass("right one here"));
        let err = restore(&flipped, &to, &key).await.unwrap_err();
        assert!(matches!(err, BackupError::Damaged(_)), "{err}");
        let good = fs::read(&file).unwrap();
        let short = root.path().join("short.backup");
        fs::write(&short, &good[..good.len() - 100]).unwrap();
        let err = restore(&short, &to, &key).await.unwrap_err();
        assert!(matches!(err, BackupError::Damaged(_)), "{err}");
        assert!(!to.exists());
        let leftovers: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn an_age_key_locks_it_and_only_that_key_opens_it() {
        let root = tempfile::tempdir().unwrap();
        let data = controller_dir(root.path()).await;
        let file = root.path().join("haven.backup");
        let secret = age::x25519::Identity::generate();
        let lock = Lock::Recipients(vec![secret.to_public()]);
        backup(&data, &file, &lock, 1).await.unwrap();
        let to = root.path().join("restored");
        let other = age::x25519::Identity::generate();
        let err = restore(&file, &to, &Key::Identities(vec![Box::new(other)]))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::WrongKey), "{err}");
        let err = restore(&file, &to, &Key::Passphrase(pass("anything at all")))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::NeedsIdentity), "{err}");
        restore(&file, &to, &Key::Identities(vec![Box::new(secret)]))
            .await
            .unwrap();
        assert!(to.join(DATABASE).is_file());
    }
}
