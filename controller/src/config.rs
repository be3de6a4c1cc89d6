//! `haven serve` settings: command-line flags win over `HAVEN_*` environment variables, which
//! win over the TOML file, which wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a person at a terminal.
    #[default]
    Human,
    /// One JSON object a line, for log collectors.
    Json,
}

#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// Where the database, certificates and keys live. Created on first start.
    /// [default: the user's data directory, e.g. ~/.local/share/haven]
    #[arg(long, env = "HAVEN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address and port to listen on. [default: 0.0.0.0:7443]
    #[arg(long, env = "HAVEN_LISTEN", value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,

    /// The address devices and staff use to reach this controller, put into enrollment
    /// commands. [default: https://<this machine's hostname>:<port>]
    #[arg(long, env = "HAVEN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Extra DNS names for the server certificate (comma separated). Only read when the
    /// certificate is first made.
    #[arg(
        long = "tls-name",
        env = "HAVEN_TLS_NAMES",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub tls_names: Vec<String>,

    /// How logs are written (to standard error). [default: human]
    #[arg(long, env = "HAVEN_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Flag an active device "not reporting" once it has not been heard from for this many
    /// seconds (it may be switched off, or the agent removed). [default: 900]
    #[arg(long, env = "HAVEN_NOT_REPORTING_AFTER_SECS", value_name = "SECS")]
    pub not_reporting_after_secs: Option<u64>,

    /// Corrections to the England and Wales bank holidays, in the format of the government's
    /// published bank-holidays JSON (deadlines count working days).
    #[arg(long, env = "HAVEN_BANK_HOLIDAYS_FILE", value_name = "FILE")]
    pub bank_holidays_file: Option<PathBuf>,

    /// The most connections (devices and staff) open at once; past it new connections wait
    /// until one closes. Keep it below the process's open-file limit. [default: 16000]
    #[arg(long, env = "HAVEN_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// How many days a staff token works before it must be rotated. [default: 90]
    #[arg(long, env = "HAVEN_STAFF_TOKEN_DAYS", value_name = "DAYS")]
    pub staff_token_days: Option<u32>,

    /// How many days a device certificate lives; devices renew it over their open stream once
    /// less than a third is left, with a new key made on the device. [default: 30]
    #[arg(long, env = "HAVEN_DEVICE_CERT_DAYS", value_name = "DAYS")]
    pub device_cert_days: Option<u32>,

    /// Tests only: a device certificate lifetime in seconds (wins over --device-cert-days), so
    /// renewal and expiry can be seen in a test run.
    #[arg(
        long,
        env = "HAVEN_DEVICE_CERT_SECONDS",
        value_name = "SECS",
        hide = true
    )]
    pub device_cert_seconds: Option<u64>,

    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g. 127.0.0.1:9464; off
    /// unless given. Only a loopback address unless --metrics-allow-remote: the metrics have
    /// no login or TLS.
    #[arg(long, env = "HAVEN_METRICS_LISTEN", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,

    /// Allow --metrics-listen on an address other machines can reach (a private monitoring
    /// network, or behind an authenticating proxy).
    #[arg(long, env = "HAVEN_METRICS_ALLOW_REMOTE")]
    pub metrics_allow_remote: bool,

    /// Sign a checkpoint of the audit trail this often, in seconds (and once at start).
    /// [default: 3600]
    #[arg(long, env = "HAVEN_CHECKPOINT_EVERY_SECS", value_name = "SECS")]
    pub checkpoint_every_secs: Option<u64>,

    /// Where records are kept: absent (or `sqlite://`) for the SQLite file `haven.db` in the
    /// data directory, or `postgres://USER@HOST:5432/DATABASE` for PostgreSQL (add
    /// `?options=-c%20search_path%3DSCHEMA` to use a schema of its own).
    #[arg(long, env = "HAVEN_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,

    /// A TOML file with any of the settings above (data_dir, listen, public_url, tls_names,
    /// database, log_format, not_reporting_after_secs, bank_holidays_file, max_connections,
    /// staff_token_days, device_cert_days, metrics_listen, metrics_allow_remote,
    /// checkpoint_every_secs). [default:
    /// haven.toml in the data directory, if present]
    #[arg(long, env = "HAVEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    tls_names: Option<Vec<String>>,
    database: Option<String>,
    log_format: Option<LogFormat>,
    not_reporting_after_secs: Option<u64>,
    bank_holidays_file: Option<PathBuf>,
    max_connections: Option<usize>,
    staff_token_days: Option<u32>,
    device_cert_days: Option<u32>,
    metrics_listen: Option<SocketAddr>,
    metrics_allow_remote: Option<bool>,
    checkpoint_every_secs: Option<u64>,
}

/// Settings after every source has been merged.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub tls_names: Vec<String>,
    pub log_format: LogFormat,
    pub not_reporting_after: std::time::Duration,
    pub bank_holidays_file: Option<PathBuf>,
    pub max_connections: usize,
    pub staff_token_days: u32,
    /// How long a device certificate signed from now on lives.
    pub device_cert_lifetime: crate::domain::device_cert::Lifetime,
    pub metrics_listen: Option<SocketAddr>,
    pub checkpoint_every: std::time::Duration,
    pub database: Database,
}

/// Which backend keeps the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// `haven.db` in the data directory (the default).
    Sqlite,
    /// A PostgreSQL server, by URL.
    Postgres(String),
}

impl Database {
    /// Reads `--database` / `HAVEN_DATABASE_URL`: absent or `sqlite://` is the SQLite file in
    /// the data directory, `postgres://` (or `postgresql://`) a PostgreSQL server.
    pub fn parse(url: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Database::Sqlite);
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            if rest.trim_start_matches('/').is_empty() {
                return Ok(Database::Sqlite);
            }
            anyhow::bail!(
                "the SQLite database is always haven.db in the data directory: choose the \
                 directory with --data-dir and give --database sqlite:// (or leave it out)"
            );
        }
        anyhow::bail!(
            "the database address must start with postgres:// (PostgreSQL) or sqlite:// (the \
             file in the data directory), e.g. postgres://haven@db.example:5432/haven"
        )
    }
}

/// Below the 20,000 open files a process may have, leaving room for the database and logs.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_000;

pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("org", "Haven", "haven")
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("/var/lib/haven"))
}

fn read_file(path: &Path, required: bool) -> anyhow::Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("the settings file {} is not valid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("could not read {}", path.display())),
    }
}

impl ServeArgs {
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_file(path, true)?,
            None => {
                let dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
                read_file(&dir.join("haven.toml"), false)?
            }
        };
        let public_url = self.public_url.or(file.public_url);
        let not_reporting_after = self
            .not_reporting_after_secs
            .or(file.not_reporting_after_secs)
            .unwrap_or(crate::domain::violations::DEFAULT_NOT_REPORTING_AFTER_SECS);
        if not_reporting_after == 0 {
            anyhow::bail!(
                "not_reporting_after_secs must be at least 1: it is how long a device may be silent before staff are told"
            );
        }
        let max_connections = self
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            anyhow::bail!(
                "max_connections must be at least 1: it is how many devices and staff may be connected at once"
            );
        }
        let staff_token_days = self
            .staff_token_days
            .or(file.staff_token_days)
            .unwrap_or(crate::domain::tokens::DEFAULT_LIFETIME_DAYS);
        if staff_token_days == 0 || staff_token_days > 3_650 {
            anyhow::bail!(
                "staff_token_days must be between 1 and 3650: it is how long a staff token works before it must be rotated"
            );
        }
        let device_cert_days = self
            .device_cert_days
            .or(file.device_cert_days)
            .unwrap_or(crate::domain::device_cert::DEFAULT_LIFETIME_DAYS);
        if device_cert_days == 0 || device_cert_days > 397 {
            anyhow::bail!(
                "device_cert_days must be between 1 and 397: it is how long a device certificate works before the device renews it"
            );
        }
        let device_cert_lifetime = match self.device_cert_seconds {
            Some(secs) => crate::domain::device_cert::Lifetime::seconds(secs),
            None => crate::domain::device_cert::Lifetime::days(device_cert_days),
        };
        let metrics_listen = self.metrics_listen.or(file.metrics_listen);
        if let Some(addr) = metrics_listen {
            crate::metrics::check_listen(
                addr,
                self.metrics_allow_remote || file.metrics_allow_remote.unwrap_or(false),
            )
            .map_err(anyhow::Error::msg)?;
        }
        let checkpoint_every = self
            .checkpoint_every_secs
            .or(file.checkpoint_every_secs)
            .unwrap_or(crate::service::audit::DEFAULT_CHECKPOINT_EVERY_SECS);
        if checkpoint_every == 0 {
            anyhow::bail!(
                "checkpoint_every_secs must be at least 1: it is how often the audit trail is signed"
            );
        }
        if let Some(url) = &public_url {
            haven_proto::trust::host_port(url).map_err(|_| {
                anyhow::anyhow!("the public URL {url:?} is not valid: use https://host:port")
            })?;
        }
        let database = Database::parse(self.database.as_deref().or(file.database.as_deref()))?;
        Ok(ServeConfig {
            database,
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(default_data_dir),
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 7443))),
            public_url,
            tls_names: if self.tls_names.is_empty() {
                file.tls_names.unwrap_or_default()
            } else {
                self.tls_names
            },
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
            not_reporting_after: std::time::Duration::from_secs(not_reporting_after),
            bank_holidays_file: self.bank_holidays_file.or(file.bank_holidays_file),
            max_connections,
            staff_token_days,
            device_cert_lifetime,
            metrics_listen,
            checkpoint_every: std::time::Duration::from_secs(checkpoint_every),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: &Path) -> ServeArgs {
        ServeArgs {
            data_dir: None,
            listen: None,
            public_url: None,
            tls_names: vec![],
            log_format: None,
            not_reporting_after_secs: None,
            bank_holidays_file: None,
            max_connections: None,
            staff_token_days: None,
            device_cert_days: None,
            device_cert_seconds: None,
            metrics_listen: None,
            metrics_allow_remote: false,
            checkpoint_every_secs: None,
            database: None,
            config: Some(config.to_path_buf()),
        }
    }

    #[test]
    fn the_database_is_sqlite_unless_a_postgres_url_is_given() {
        assert_eq!(Database::parse(None).unwrap(), Database::Sqlite);
        assert_eq!(
            Database::parse(Some("sqlite://")).unwrap(),
            Database::Sqlite
        );
        let url = "postgres://haven@127.0.0.1:5432/haven";
        assert_eq!(
            Database::parse(Some(url)).unwrap(),
            Database::Postgres(url.into())
        );
        let e = Database::parse(Some("sqlite:///elsewhere.db")).unwrap_err();
        assert!(e.to_string().contains("--data-dir"), "{e}");
        let e = Database::parse(Some("mysql://x")).unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_format = \"json\"\ndata_dir = \"/tmp/x\"\n",
        )
        .unwrap();
        let from_file = args(&file).resolve().unwrap();
        assert_eq!(from_file.listen.port(), 9000);
        assert_eq!(from_file.log_format, LogFormat::Json);
        let mut flagged = args(&file);
        flagged.listen = Some("127.0.0.1:9100".parse().unwrap());
        assert_eq!(flagged.resolve().unwrap().listen.port(), 9100);
    }

    #[test]
    fn the_not_reporting_time_comes_from_flags_or_the_file_and_is_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            args(&file).resolve().unwrap().not_reporting_after,
            std::time::Duration::from_secs(900)
        );
        std::fs::write(&file, "not_reporting_after_secs = 120\n").unwrap();
        assert_eq!(
            args(&file).resolve().unwrap().not_reporting_after,
            std::time::Duration::from_secs(120)
        );
        let mut flagged = args(&file);
        flagged.not_reporting_after_secs = Some(0);
        let err = format!("{:#}", flagged.resolve().unwrap_err());
        assert!(err.contains("at least 1"), "{err}");
    }

    #[test]
    fn d7_device_certificates_live_thirty_days_unless_configured() {
        use crate::domain::device_cert::Lifetime;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            args(&file).resolve().unwrap().device_cert_lifetime,
            Lifetime::days(30)
        );
        std::fs::write(&file, "device_cert_days = 7\n").unwrap();
        assert_eq!(
            args(&file).resolve().unwrap().device_cert_lifetime,
            Lifetime::days(7)
        );
        let mut seconds = args(&file);
        seconds.device_cert_seconds = Some(6);
        assert_eq!(
            seconds.resolve().unwrap().device_cert_lifetime,
            Lifetime::seconds(6)
        );
        let mut zero = args(&file);
        zero.device_cert_days = Some(0);
        let err = format!("{:#}", zero.resolve().unwrap_err());
        assert!(err.contains("between 1 and 397"), "{err}");
    }

    #[test]
    fn metrics_listen_on_loopback_unless_remote_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(&file, "metrics_listen = \"0.0.0.0:9464\"\n").unwrap();
        let err = format!("{:#}", args(&file).resolve().unwrap_err());
        assert!(err.contains("--metrics-allow-remote"), "{err}");
        let mut allowed = args(&file);
        allowed.metrics_allow_remote = true;
        assert_eq!(
            allowed.resolve().unwrap().metrics_listen,
            Some("0.0.0.0:9464".parse().unwrap())
        );
        std::fs::write(&file, "").unwrap();
        assert_eq!(args(&file).resolve().unwrap().metrics_listen, None);
    }

    #[test]
    fn a_mistyped_setting_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haven.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let err = args(&file).resolve().unwrap_err();
        assert!(format!("{err:#}").contains("not valid"));
    }
}
