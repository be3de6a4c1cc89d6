//! `haven backup`, `haven restore` and `haven backup-key`: run on the controller machine itself,
//! reading the same data directory as `haven serve` (the CA's key never crosses the network).

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{Context as _, anyhow, bail};

use super::output::{bytes, when};
use crate::backup::{self, Key, Lock};

/// The shortest passphrase a new backup takes: the backup holds the CA's key and every
/// child's records, and anyone who gets the file can try passphrases offline.
const MIN_PASSPHRASE: usize = 12;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (owner-only; written whole, then renamed into place).
    pub file: PathBuf,
    /// The controller's data directory, as given to `haven serve`.
    /// [default: the user's data directory, e.g. ~/.local/share/haven]
    #[arg(long, env = "HAVEN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Read the passphrase from the first line of this file (keep it owner-only) instead of
    /// asking for it; without a terminal it is read from standard input.
    #[arg(long, value_name = "FILE", conflicts_with = "recipients_file")]
    pub passphrase_file: Option<PathBuf>,
    /// Lock the backup with age public keys instead (`age1…`, one a line, e.g. printed by
    /// `haven backup-key`): only their secret keys, kept off this machine, open it.
    #[arg(long, value_name = "FILE")]
    pub recipients_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup made by `haven backup`.
    pub file: PathBuf,
    /// A new or empty directory to restore into; then `haven serve --data-dir DIR`.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Read the passphrase from the first line of this file instead of asking for it.
    #[arg(long, value_name = "FILE", conflicts_with = "identity_file")]
    pub passphrase_file: Option<PathBuf>,
    /// The age secret key file (`AGE-SECRET-KEY-1…`) for a backup locked with a public key.
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct BackupKeyArgs {
    /// Where to write the new secret key (owner-only). Keep it somewhere other than the
    /// controller: whoever holds it can open every backup made for it.
    pub file: PathBuf,
}

/// A passphrase from a file, the terminal (asked twice for a new backup) or standard input.
fn passphrase(file: Option<&Path>, new: bool) -> anyhow::Result<SecretString> {
    let text = if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the passphrase file {}", path.display()))?;
        text.lines().next().unwrap_or_default().to_string()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Backup passphrase (not shown): ")
            .context("could not read the passphrase from the terminal")?;
        if new {
            let again = rpassword::prompt_password("The same passphrase again: ")
                .context("could not read the passphrase from the terminal")?;
            if again != first {
                bail!("the two passphrases differ: nothing was written; run it again");
            }
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("could not read the passphrase from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if text.is_empty() {
        bail!("no passphrase was given: type it when asked, pipe it in, or give --passphrase-file");
    }
    if new && text.chars().count() < MIN_PASSPHRASE {
        bail!(
            "the passphrase is too short: use at least {MIN_PASSPHRASE} characters (several words are easiest), since anyone with the file can try passphrases"
        );
    }
    Ok(SecretString::from(text))
}

fn recipients(path: &Path) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the recipients file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-SECRET-KEY-") {
            bail!(
                "line {} of {} is a secret key: give only the public key (age1…) here, and keep the secret key off the controller",
                n + 1,
                path.display()
            );
        }
        out.push(age::x25519::Recipient::from_str(line).map_err(|e| {
            anyhow!(
                "line {} of {} is not an age public key (age1…): {e}",
                n + 1,
                path.display()
            )
        })?);
    }
    if out.is_empty() {
        bail!(
            "{} holds no age public key: put the age1… line `haven backup-key` printed in it",
            path.display()
        );
    }
    Ok(out)
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(crate::config::default_data_dir);
    let lock = match &args.recipients_file {
        Some(path) => Lock::Recipients(recipients(path)?),
        None => Lock::Passphrase(passphrase(args.passphrase_file.as_deref(), true)?),
    };
    let summary = backup::backup(&data_dir, &args.file, &lock, crate::service::now_ms()).await?;
    println!(
        "Backed up the controller in {} to {} ({}, {} files: {}), locked with {}.",
        data_dir.display(),
        args.file.display(),
        bytes(summary.bytes),
        summary.files.len(),
        summary.files.join(", "),
        match lock {
            Lock::Passphrase(_) => "a passphrase",
            Lock::Recipients(_) => "an age key",
        }
    );
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let key = match &args.identity_file {
        Some(path) => {
            let name = path.to_string_lossy().into_owned();
            let file = age::IdentityFile::from_file(name)
                .with_context(|| format!("could not read the age key file {}", path.display()))?;
            Key::Identities(
                file.into_identities().map_err(|e| {
                    anyhow!("{} is not an age secret key file: {e}", path.display())
                })?,
            )
        }
        None => Key::Passphrase(passphrase(args.passphrase_file.as_deref(), false)?),
    };
    let r = backup::restore(&args.file, &args.data_dir, &key).await?;
    println!(
        "Restored the backup made {} into {} ({} files: {}).\n  The audit trail is intact: all {} entries follow from one another.\n  Policy versions continue from {}, past any the old controller sent after the backup.\nStart it with: haven serve --data-dir {}",
        when(r.made_at_unix_ms),
        args.data_dir.display(),
        r.files.len(),
        r.files.join(", "),
        r.audit_entries,
        r.policy_version,
        args.data_dir.display(),
    );
    Ok(())
}

pub fn backup_key(args: BackupKeyArgs) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.file)
        .with_context(|| {
            format!(
                "could not create {} (it must not exist yet)",
                args.file.display()
            )
        })?;
    writeln!(
        f,
        "# Haven backup key, made {}\n# public key: {public}\n{}",
        when(crate::service::now_ms()),
        identity.to_string().expose_secret()
    )
    .and_then(|()| f.sync_all())
    .with_context(|| format!("could not write {}", args.file.display()))?;
    println!(
        "Wrote a new secret key to {} (keep it off the controller, e.g. with the home's manager).\nPut this public key in a recipients file on the controller and run `haven backup FILE --recipients-file THAT_FILE`:\n  {public}",
        args.file.display()
    );
    Ok(())
}
