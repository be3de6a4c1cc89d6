//! The agent's state folder: identity, settings and the cached policy, written safely.
//!
//! Layout (the folder is mode 0700, the key 0600):
//!
//! ```text
//! device-key.pem   this device's private key (made here, never sent anywhere)
//! device-cert.pem  the certificate the controller signed for it
//! ca.pem           the controller's certificate authority, checked against the pin
//! agent.toml       controller address, device id, child's display name, dates
//! policy.pb        the last policy applied (prost-encoded DevicePolicy)
//! device-renewed.pem  only while a renewal is being put in place: the renewed certificate
//!                  and its new key together (see `save_renewed_identity`)
//! ```
//!
//! The cached policy is what keeps a device safe across reboots while the controller is out
//! of reach, so every file is replaced atomically: a power cut leaves the old file or the new
//! one, never half of either.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use haven_proto::agent::v1::DevicePolicy;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::identity::DeviceIdentity;

/// Environment variable that chooses the state folder (same as `--state-dir`).
pub const STATE_DIR_ENV: &str = "HAVEN_AGENT_STATE_DIR";
/// Where a system-wide agent (running as root) keeps its state.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/haven-agent";

const KEY_FILE: &str = "device-key.pem";
const CERT_FILE: &str = "device-cert.pem";
const CA_FILE: &str = "ca.pem";
const CONFIG_FILE: &str = "agent.toml";
const POLICY_FILE: &str = "policy.pb";
const RENEWED_FILE: &str = "device-renewed.pem";

/// Why reading or writing the state folder failed, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "this device is not enrolled yet (nothing found in {}): run `haven-agent enroll` with \
         the command staff gave you",
        .dir.display()
    )]
    NotEnrolled { dir: PathBuf },
    #[error(
        "this device was removed from Haven by staff; to use it with Haven again, enroll it \
         with `haven-agent enroll`"
    )]
    Retired,
    #[error("could not read {}: {source}{}", .path.display(), hint(.source))]
    Read { path: PathBuf, source: io::Error },
    #[error("could not write {}: {source}{}", .path.display(), hint(.source))]
    Write { path: PathBuf, source: io::Error },
    #[error("{} is damaged ({reason}); enroll this device again with `haven-agent enroll --force`", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("could not choose a state folder: set {STATE_DIR_ENV} or use --state-dir")]
    NoDefaultDir,
}

fn hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (permission denied: run it as the user that enrolled the device, usually root)"
        }
        _ => "",
    }
}

/// The settings in `agent.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub controller_url: String,
    pub device_id: String,
    pub child_display_name: String,
    /// RFC 3339 time of enrollment.
    pub enrolled_at: String,
    /// Set when staff removed the device from Haven; the agent then stops syncing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_reason: Option<String>,
}

/// The agent's state folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `explicit` (from `--state-dir` or `HAVEN_AGENT_STATE_DIR`), else the default location.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, StateError> {
        match explicit {
            Some(dir) => Ok(Self::new(dir)),
            None => Self::default_location().map(Self::new),
        }
    }

    /// `/var/lib/haven-agent` for root (the normal, system-wide install); otherwise the
    /// user's data folder, so the agent can be tried out without root.
    pub fn default_location() -> Result<PathBuf, StateError> {
        if running_as_root() {
            return Ok(PathBuf::from(SYSTEM_STATE_DIR));
        }
        directories::BaseDirs::new()
            .map(|b| b.data_dir().join("haven-agent"))
            .ok_or(StateError::NoDefaultDir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join(KEY_FILE)
    }
    pub fn cert_path(&self) -> PathBuf {
        self.root.join(CERT_FILE)
    }
    pub fn ca_path(&self) -> PathBuf {
        self.root.join(CA_FILE)
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn policy_path(&self) -> PathBuf {
        self.root.join(POLICY_FILE)
    }
    pub fn renewed_path(&self) -> PathBuf {
        self.root.join(RENEWED_FILE)
    }

    /// Keeps a renewed certificate and the new key made for it (D7), so that whenever the
    /// power goes the device has a key and certificate that belong together: the pair is first
    /// written as ONE file, atomically (the commit point), then copied over the key and
    /// certificate files one by one, and only then is that file removed. A crash before the
    /// commit leaves the old pair (which the controller accepts until the new one is first
    /// used); a crash after it is finished by [`StateDir::load_identity`], which prefers the
    /// renewed pair while its file exists.
    pub fn save_renewed_identity(&self, cert_pem: &str, key_pem: &str) -> Result<(), StateError> {
        let both = format!("{}\n{}", cert_pem.trim_end(), key_pem);
        self.write(&self.renewed_path(), both.as_bytes(), 0o600)?;
        self.finish_renewal().map(|_| ())
    }

    /// The renewed certificate and key waiting to be put in place, if any.
    fn pending_renewal(&self) -> Result<Option<(String, String)>, StateError> {
        let path = self.renewed_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        split_renewed(&text)
            .map(Some)
            .ok_or_else(|| StateError::Corrupt {
                path,
                reason: "it does not hold a certificate and a key".into(),
            })
    }

    /// Puts a renewed pair in place over the key and certificate files; `true` if there was
    /// one. Safe to repeat after a crash at any point.
    fn finish_renewal(&self) -> Result<bool, StateError> {
        let Some((cert, key)) = self.pending_renewal()? else {
            return Ok(false);
        };
        self.write(&self.key_path(), key.as_bytes(), 0o600)?;
        self.write(&self.cert_path(), cert.as_bytes(), 0o644)?;
        fs::remove_file(self.renewed_path()).map_err(|source| StateError::Write {
            path: self.renewed_path(),
            source,
        })?;
        self.sync_root()?;
        Ok(true)
    }

    /// The certificate this device connects with: a renewed one still being put in place, or
    /// the one in `device-cert.pem`.
    pub fn current_certificate(&self) -> Result<String, StateError> {
        if let Some((cert, _)) = self.pending_renewal()? {
            return Ok(cert);
        }
        let path = self.cert_path();
        fs::read_to_string(&path).map_err(|source| StateError::Read { path, source })
    }

    /// Creates the folder (and parents) with mode 0700, and tightens it if it already existed:
    /// it holds the device's private key.
    pub fn create(&self) -> Result<(), StateError> {
        let write_err = |source| StateError::Write {
            path: self.root.clone(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(write_err)?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(write_err)
    }

    /// The settings, or `None` when the device has never been enrolled here.
    pub fn load_config(&self) -> Result<Option<AgentConfig>, StateError> {
        let path = self.config_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                reason: e.message().to_string(),
            })
    }

    pub fn save_config(&self, config: &AgentConfig) -> Result<(), StateError> {
        let text = toml::to_string(config).map_err(|e| StateError::Corrupt {
            path: self.config_path(),
            reason: e.to_string(),
        })?;
        self.write(&self.config_path(), text.as_bytes(), 0o644)
    }

    /// Enrolled and not retired: what `enroll` refuses to overwrite without `--force`.
    pub fn enrolled_config(&self) -> Result<Option<AgentConfig>, StateError> {
        Ok(self.load_config()?.filter(|c| c.retired_at.is_none()))
    }

    /// Stores a fresh enrollment. Any cached policy is removed, because it belonged to the
    /// previous enrollment (possibly another child).
    ///
    /// Every new file is first written and synced under a temporary name; only then are they
    /// renamed into place (key, certificate, CA, then `agent.toml` last). A failure or crash
    /// while writing leaves the previous identity exactly as it was, and a device only counts
    /// as enrolled once everything else is in place.
    pub fn save_enrollment(
        &self,
        identity: &DeviceIdentity,
        child_display_name: &str,
        enrolled_at: &str,
    ) -> Result<AgentConfig, StateError> {
        self.create()?;
        let config = AgentConfig {
            controller_url: identity.controller_url.clone(),
            device_id: identity.device_id.clone(),
            child_display_name: child_display_name.to_string(),
            enrolled_at: enrolled_at.to_string(),
            retired_at: None,
            retired_reason: None,
        };
        let config_text = toml::to_string(&config).map_err(|e| StateError::Corrupt {
            path: self.config_path(),
            reason: e.to_string(),
        })?;
        // agent.toml must stay last: it is what makes the new identity count.
        let files = [
            (self.key_path(), identity.key_pem.as_bytes(), 0o600),
            (self.cert_path(), identity.cert_pem.as_bytes(), 0o644),
            (self.ca_path(), identity.ca_pem.as_bytes(), 0o644),
            (self.config_path(), config_text.as_bytes(), 0o644),
        ];
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(files.len());
        let discard = |staged: &[(PathBuf, PathBuf)]| {
            for (tmp, _) in staged {
                let _ = fs::remove_file(tmp);
            }
        };
        for (path, bytes, mode) in files {
            match stage_file(&path, bytes, mode) {
                Ok(tmp) => staged.push((tmp, path)),
                Err(source) => {
                    discard(&staged);
                    return Err(StateError::Write { path, source });
                }
            }
        }
        let (config_tmp, config_path) = staged.pop().expect("agent.toml is staged");
        for (i, (tmp, path)) in staged.iter().enumerate() {
            if let Err(source) = fs::rename(tmp, path) {
                discard(&staged[i..]);
                let _ = fs::remove_file(&config_tmp);
                return Err(StateError::Write {
                    path: path.clone(),
                    source,
                });
            }
        }
        let committed = match fs::remove_file(self.policy_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write {
                path: self.policy_path(),
                source,
            }),
        }
        // The identity files and the policy removal reach the disk before agent.toml does.
        .and_then(|()| self.sync_root());
        if let Err(e) = committed {
            let _ = fs::remove_file(&config_tmp);
            return Err(e);
        }
        fs::rename(&config_tmp, &config_path).map_err(|source| {
            let _ = fs::remove_file(&config_tmp);
            StateError::Write {
                path: config_path,
                source,
            }
        })?;
        self.sync_root()?;
        Ok(config)
    }

    /// Whether the folder holds nothing at all of an enrollment: no settings, no identity
    /// files and no cached policy. Anything that cannot be checked counts as present, so a
    /// damaged or unreadable folder is never mistaken for a device that was never enrolled.
    pub fn is_blank(&self) -> bool {
        [
            self.config_path(),
            self.key_path(),
            self.cert_path(),
            self.ca_path(),
            self.policy_path(),
        ]
        .iter()
        .all(|p| matches!(p.try_exists(), Ok(false)))
    }

    fn sync_root(&self) -> Result<(), StateError> {
        File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| StateError::Write {
                path: self.root.clone(),
                source,
            })
    }

    /// Loads what a sync session needs. Fails with [`StateError::NotEnrolled`] or
    /// [`StateError::Retired`] when there is nothing to sync.
    pub fn load_identity(&self) -> Result<(DeviceIdentity, AgentConfig), StateError> {
        let config = self.load_config()?.ok_or_else(|| StateError::NotEnrolled {
            dir: self.root.clone(),
        })?;
        if config.retired_at.is_some() {
            return Err(StateError::Retired);
        }
        let read = |path: PathBuf| {
            fs::read_to_string(&path).map_err(|source| StateError::Read { path, source })
        };
        // A renewal a crash interrupted: its pair is the one to use; put it in place now, or
        // (if the folder cannot be written) use it from where it is.
        let (cert_pem, key_pem) = match self.pending_renewal()? {
            Some(pair) => {
                if let Err(e) = self.finish_renewal() {
                    tracing::warn!("{e}; using the renewed certificate from where it is");
                }
                pair
            }
            None => (read(self.cert_path())?, read(self.key_path())?),
        };
        let identity = DeviceIdentity {
            controller_url: config.controller_url.clone(),
            ca_pem: read(self.ca_path())?,
            cert_pem,
            key_pem,
            device_id: config.device_id.clone(),
        };
        Ok((identity, config))
    }

    /// The last policy applied, or `None` when none was ever received.
    pub fn load_policy(&self) -> Result<Option<DevicePolicy>, StateError> {
        let path = self.policy_path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        DevicePolicy::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    pub fn save_policy(&self, policy: &DevicePolicy) -> Result<(), StateError> {
        self.write(&self.policy_path(), &policy.encode_to_vec(), 0o600)
    }

    /// Records that staff removed this device, and caches `fallback` (the safe default) so
    /// a restart can never bring back the last, possibly more permissive, policy.
    pub fn mark_retired(
        &self,
        reason: &str,
        retired_at: &str,
        fallback: &DevicePolicy,
    ) -> Result<(), StateError> {
        self.save_policy(fallback)?;
        if let Some(mut config) = self.load_config()? {
            config.retired_at = Some(retired_at.to_string());
            config.retired_reason = Some(reason.to_string()).filter(|r| !r.is_empty());
            self.save_config(&config)?;
        }
        Ok(())
    }

    fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
        write_atomic(path, bytes, mode).map_err(|source| StateError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Replaces `path` with `bytes` so that after a crash or power cut it holds either the old
/// or the new content: write a temporary file in the same folder (so the rename cannot cross
/// file systems), fsync it, rename it over the target, then fsync the folder so the rename
/// itself is on disk.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = stage_file(path, bytes, mode)?;
    let result = fs::rename(&tmp, path).and_then(|()| File::open(parent_of(path))?.sync_all());
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a temporary file next to `path` (`.NAME.tmp.PID`), with `mode`, synced
/// to disk; returns its path, ready to be renamed over `path`. Removes it on failure.
fn stage_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = parent_of(path).join(tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` only applies to new files, and umask may have narrowed it; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The certificate (through its END line) and the key after it, from a renewed pair.
fn split_renewed(text: &str) -> Option<(String, String)> {
    const END: &str = "-----END CERTIFICATE-----";
    let end = text.find(END)? + END.len();
    let cert = format!("{}\n", text[..end].trim());
    let key = text[end..].trim();
    if !cert.starts_with("-----BEGIN CERTIFICATE-----") || !key.starts_with("-----BEGIN") {
        return None;
    }
    Some((cert, format!("{key}\n")))
}

/// Whether this process runs as root. `/proc/self` belongs to the process's effective user,
/// which saves a libc dependency for one `geteuid()`.
pub fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_proto::agent::v1::{CameraRule, Contact};

    fn identity() -> DeviceIdentity {
        DeviceIdentity {
            controller_url: "https://127.0.0.1:7443".into(),
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
            device_id: "dev-1".into(),
        }
    }

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn atomic_write_failure_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, b"old", 0o644).unwrap();
        // Renaming a file over a non-empty directory fails; the original must survive.
        let blocker = dir.path().join("blocked");
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), b"x").unwrap();
        assert!(write_atomic(&blocker, b"new", 0o644).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn policy_cache_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        assert_eq!(state.load_policy().unwrap(), None);
        let policy = DevicePolicy {
            version: 42,
            child_display_name: "Sam".into(),
            camera: Some(CameraRule {
                allowed: true,
                reason: "agreed in the plan".into(),
            }),
            protected_contacts: vec![Contact {
                name: "Social worker".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        state.save_policy(&policy).unwrap();
        assert_eq!(state.load_policy().unwrap(), Some(policy));
        fs::write(state.policy_path(), b"\xff\xff\xff").unwrap();
        assert!(matches!(
            state.load_policy(),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn enrollment_round_trips_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("a/b"));
        assert!(matches!(
            state.load_identity(),
            Err(StateError::NotEnrolled { .. })
        ));
        state.create().unwrap();
        state.save_policy(&crate::core::safe_default()).unwrap();
        let config = state
            .save_enrollment(&identity(), "Sam", "2025-01-01T00:00:00Z")
            .unwrap();
        // A policy from a previous enrollment is never carried over.
        assert_eq!(state.load_policy().unwrap(), None);
        let (id, loaded) = state.load_identity().unwrap();
        assert_eq!(id, identity());
        assert_eq!(loaded, config);
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(state.key_path()), 0o600);
        assert_eq!(mode(state.root().to_path_buf()), 0o700);
        assert!(state.enrolled_config().unwrap().is_some());
    }

    #[test]
    fn a_failed_re_enrollment_leaves_the_old_identity_intact() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        assert!(state.is_blank());
        state.save_enrollment(&identity(), "Sam", "then").unwrap();
        state.save_policy(&crate::core::safe_default()).unwrap();
        assert!(!state.is_blank());
        let names = || {
            fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let before = names();
        // Block the certificate's temporary file, so writing the new identity fails halfway.
        let blocker = dir
            .path()
            .join(format!(".device-cert.pem.tmp.{}", std::process::id()));
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), b"x").unwrap();
        let new = DeviceIdentity {
            controller_url: "https://elsewhere:7443".into(),
            ca_pem: "CA2".into(),
            cert_pem: "CERT2".into(),
            key_pem: "KEY2".into(),
            device_id: "dev-2".into(),
        };
        assert!(matches!(
            state.save_enrollment(&new, "Alex", "now"),
            Err(StateError::Write { .. })
        ));
        let (id, config) = state.load_identity().unwrap();
        assert_eq!(id, identity());
        assert_eq!(config.child_display_name, "Sam");
        assert_eq!(state.load_policy().unwrap().unwrap().version, 0);
        // Nothing staged is left behind (only the blocker was added).
        fs::remove_dir_all(&blocker).unwrap();
        assert_eq!(before, names());
        // Once the obstacle is gone, re-enrolling replaces everything.
        state.save_enrollment(&new, "Alex", "now").unwrap();
        assert_eq!(state.load_identity().unwrap().0, new);
        assert_eq!(state.load_policy().unwrap(), None);
    }

    const CERT2: &str = "-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n";
    const KEY2: &str = "-----BEGIN PRIVATE KEY-----\nNEWKEY\n-----END PRIVATE KEY-----\n";

    #[test]
    fn d7_a_renewed_identity_replaces_the_pair_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.save_enrollment(&identity(), "Sam", "now").unwrap();
        state.save_renewed_identity(CERT2, KEY2).unwrap();
        let (id, _) = state.load_identity().unwrap();
        assert_eq!((id.cert_pem.as_str(), id.key_pem.as_str()), (CERT2, KEY2));
        assert_eq!(id.device_id, "dev-1", "the same device");
        assert!(!state.renewed_path().exists());
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(state.key_path()), 0o600);
        assert_eq!(state.current_certificate().unwrap(), CERT2);
    }

    /// Crash-safe: at every point of a renewal the device has a key and a certificate that
    /// belong together — the old pair before the commit, the new pair after it.
    #[test]
    fn d7_a_crash_during_renewal_never_leaves_a_key_without_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.save_enrollment(&identity(), "Sam", "now").unwrap();
        // Crash before the commit point: only a temporary file was written.
        fs::write(
            dir.path()
                .join(format!(".{RENEWED_FILE}.tmp.{}", std::process::id())),
            b"half",
        )
        .unwrap();
        let (id, _) = state.load_identity().unwrap();
        assert_eq!((id.cert_pem.as_str(), id.key_pem.as_str()), ("CERT", "KEY"));
        // Crash after the commit and after the key was copied, before the certificate was:
        // the files on their own do not match, but the renewed pair wins and is finished.
        state
            .write(
                &state.renewed_path(),
                format!("{CERT2}{KEY2}").as_bytes(),
                0o600,
            )
            .unwrap();
        state
            .write(&state.key_path(), KEY2.as_bytes(), 0o600)
            .unwrap();
        assert_eq!(state.current_certificate().unwrap(), CERT2);
        let (id, _) = state.load_identity().unwrap();
        assert_eq!((id.cert_pem.as_str(), id.key_pem.as_str()), (CERT2, KEY2));
        assert_eq!(fs::read_to_string(state.cert_path()).unwrap(), CERT2);
        assert!(!state.renewed_path().exists());
        // A damaged renewed file is reported, never half-used.
        fs::write(state.renewed_path(), b"junk").unwrap();
        assert!(matches!(
            state.load_identity(),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn retiring_caches_the_fallback_and_stops_sync() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.save_enrollment(&identity(), "Sam", "now").unwrap();
        state
            .mark_retired("left the home", "later", &crate::core::safe_default())
            .unwrap();
        assert!(matches!(state.load_identity(), Err(StateError::Retired)));
        assert!(state.enrolled_config().unwrap().is_none());
        assert_eq!(state.load_policy().unwrap().unwrap().version, 0);
        let config = state.load_config().unwrap().unwrap();
        assert_eq!(config.retired_reason.as_deref(), Some("left the home"));
    }

    /// A child's account must not read or change what the agent keeps: the folder is the
    /// owner's only (0700), so nothing inside is reachable by anyone else whatever the file
    /// modes, and a folder someone loosened is tightened again when the agent starts.
    #[test]
    fn the_state_folder_is_for_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("haven-agent"));
        state.save_enrollment(&identity(), "Sam", "now").unwrap();
        state.save_policy(&crate::core::safe_default()).unwrap();
        let journal = crate::journal::Journal::open(&state).unwrap();
        crate::report::BlockedSink::blocked(
            &journal,
            crate::report::Blocked::now(
                haven_proto::agent::v1::ViolationKind::AppBlocked,
                "/usr/bin/game",
                "tried to start",
            ),
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(state.root()), 0o700);
        for private in [
            state.key_path(),
            state.policy_path(),
            state.root().join(crate::journal::JOURNAL_FILE),
        ] {
            assert_eq!(mode(&private), 0o600, "{}", private.display());
        }
        fs::set_permissions(state.root(), fs::Permissions::from_mode(0o755)).unwrap();
        drop(crate::journal::Journal::open(&state).unwrap());
        assert_eq!(mode(state.root()), 0o700, "tightened again on start");
    }
}
