//! `haven-agent`: enrolls this device with a Haven controller, keeps it in sync and enforces
//! the child's policy; `status` says what is in force, offline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::sync::Arc;

use haven_agent::enforcer::{CompositeEnforcer, Enforcer, EnforcerKind, LogEnforcer};
use haven_agent::journal::{self, Journal};
use haven_agent::report::{BlockedSink, LogSink};
use haven_agent::requests::{RequestError, RequestSpool};
use haven_agent::screening::{self, ContactScreening};
use haven_agent::state::{StateDir, StateError, write_atomic};
use haven_agent::sync::{InventorySource, RunOutcome, SyncConfig};
use haven_agent::{inventory, status, sync};
use tracing::{error, info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "haven-agent",
    version,
    about = "Looks after a child's device for Haven: enrolls it, keeps it in sync and enforces its policy"
)]
struct Cli {
    /// The folder for this device's identity and cached policy
    /// [default: /var/lib/haven-agent as root, else your data folder]
    #[arg(long, global = true, env = "HAVEN_AGENT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll this device with the command staff gave you (`haven device enroll`)
    Enroll(EnrollArgs),
    /// Enforce the policy and keep in sync with the controller (runs until stopped)
    Run(Box<RunArgs>),
    /// Say whether this device is enrolled and what its policy allows (works offline)
    Status(StatusArgs),
    /// Ask staff for something or tell them what you think; it is sent when the device is
    /// connected, and the answer shows in `haven-agent status` (works offline)
    Request(RequestArgs),
    /// Ask the running agent whether this device may call, text or message an address now
    /// (exit 0: allowed, 1: not allowed, 2: could not ask)
    CheckContact(CheckContactArgs),
    /// Run only the web filter, with a block list, until stopped (benchmarks)
    #[command(hide = true)]
    DnsFilter(DnsFilterArgs),
    /// Load the web filter's default-deny firewall for the child's accounts and exit (run at
    /// boot by haven-firewall.service, before any network; needs root)
    Firewall(FirewallArgs),
}

/// Whose traffic the web filter gates, and where its resolver answers (shared by `run` and
/// `firewall`, so both load the same rules).
#[derive(Debug, Clone, clap::Args)]
struct WebGateArgs {
    /// The child's accounts, whose traffic may reach only what the web filter resolved:
    /// uids and ranges, e.g. 1000-1999,2005 (root is never filtered)
    #[arg(long, value_name = "UIDS", env = "HAVEN_WEB_CHILD_UIDS",
          default_value = haven_agent::web::nft::DEFAULT_CHILD_UIDS)]
    web_child_uids: haven_agent::web::nft::IdRanges,
    /// Groups gated the same way (e.g. a "children" group), as gids and ranges
    #[arg(
        long,
        value_name = "GIDS",
        env = "HAVEN_WEB_CHILD_GIDS",
        default_value = ""
    )]
    web_child_gids: haven_agent::web::nft::IdRanges,
}

impl WebGateArgs {
    fn accounts(&self) -> haven_agent::web::nft::ChildAccounts {
        haven_agent::web::nft::ChildAccounts {
            uids: self.web_child_uids.clone(),
            gids: self.web_child_gids.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
struct FirewallArgs {
    /// Where the web filter will answer DNS (the one local service the child may reach)
    #[arg(long, default_value = "127.0.0.1:53", value_name = "ADDR")]
    dns_listen: std::net::SocketAddr,
    #[command(flatten)]
    gate: WebGateArgs,
}

#[derive(Debug, clap::Args)]
struct CheckContactArgs {
    /// How: a phone call, a text message or a messaging app
    #[arg(long, value_parser = ["call", "sms", "messaging"])]
    channel: String,
    /// The phone number or messaging handle, e.g. +447700900123 or "07700 900123"
    address: String,
    /// Where the agent's contact screening service listens
    #[arg(long, value_name = "PATH", env = "HAVEN_AGENT_SCREENING_SOCKET",
          default_value = screening::DEFAULT_SOCKET)]
    screening_socket: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RequestArgs {
    /// What you would like to ask or say, in your own words (up to 1000 characters)
    text: String,
}

#[derive(Debug, clap::Args)]
struct EnrollArgs {
    /// The controller's address, e.g. https://haven.local:7443; with several replicas and no
    /// load balancer, every replica's, separated by commas
    #[arg(long, value_name = "URL")]
    controller: String,
    /// The controller's certificate authority pin, sha256:...
    #[arg(long, value_name = "PIN")]
    ca_pin: String,
    /// The one-time enrollment code, e.g. K7QD-M2XP-9HTR
    #[arg(long)]
    code: String,
    /// Enroll again even though this device is already enrolled
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EnforcerArg {
    /// Print each decision to standard output (development only: enforces nothing)
    Log,
    /// Do nothing (benchmarks; development only: enforces nothing)
    Null,
    /// Enforce on this Linux device: apps, camera, contacts, calls and texts, and filtered web
    /// (needs root)
    Linux,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// How decisions are enforced [default: linux as root, else log]
    #[arg(long, value_enum)]
    enforcer: Option<EnforcerArg>,
    /// Seconds between heartbeats
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_secs: u64,
    /// Longest wait, in seconds, between attempts to reach the controller
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    max_backoff_secs: u64,
    #[command(flatten)]
    linux: LinuxArgs,
}

/// Settings for `--enforcer linux`. Each guard owns its own flags.
#[derive(Debug, clap::Args)]
struct LinuxArgs {
    /// Seconds between full scans of the running apps (the backstop to the kernel's process
    /// events; a blocked app is normally stopped the moment it starts)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    app_scan_secs: u64,
    /// A program this device needs even when only the agreed apps may run, beyond the
    /// built-in desktop essentials (a name or full path; repeatable)
    #[arg(long = "app-always-allow", value_name = "NAME")]
    app_always_allow: Vec<String>,
    /// A camera device to guard; a `*` in the file name matches any text (repeatable)
    /// [default: /dev/video*, /dev/media*, /dev/v4l-subdev*]
    #[arg(long = "camera-path", value_name = "PATH")]
    camera_path: Vec<PathBuf>,
    /// Where the contact screening service listens: a phone's dialer or messaging app asks
    /// it before connecting (`haven-agent check-contact` asks it from a script)
    #[arg(long, value_name = "PATH", env = "HAVEN_AGENT_SCREENING_SOCKET",
          default_value = screening::DEFAULT_SOCKET)]
    screening_socket: PathBuf,
    /// An account (uid) whose questions to the screening socket are trusted to be recorded
    /// when refused, such as the phone's dialer; root and the agent are always trusted
    /// (repeatable)
    #[arg(long = "screening-trusted-uid", value_name = "UID")]
    screening_trusted_uid: Vec<u32>,
    /// The D-Bus bus ModemManager is on: `system`, or a bus address such as
    /// unix:path=/run/dbus/system_bus_socket
    #[arg(long, value_name = "ADDRESS", default_value = "system")]
    telephony_bus: haven_agent::linux::telephony::TelephonyBus,
    /// Where the web filter answers DNS (point the device's resolver here)
    #[arg(long, default_value = "127.0.0.1:53", value_name = "ADDR")]
    dns_listen: std::net::SocketAddr,
    /// A resolver the web filter asks for allowed names (repeat for more)
    /// [default: 9.9.9.9:53 and 149.112.112.112:53]
    #[arg(long, value_name = "ADDR")]
    dns_upstream: Vec<std::net::SocketAddr>,
    /// Ask the upstreams over DNS over TLS, checking their certificate against this name
    /// (e.g. dns.quad9.net; the default upstreams are then Quad9's on port 853)
    #[arg(long, value_name = "NAME")]
    dns_upstream_tls: Option<String>,
    /// The certificate authorities for --dns-upstream-tls (PEM)
    #[arg(long, value_name = "FILE", default_value = haven_agent::web::dot::SYSTEM_ROOTS)]
    dns_upstream_ca: PathBuf,
    /// A folder of category lists for the web filter: `<category>/domains` or `<category>.txt`
    #[arg(long, value_name = "DIR")]
    filter_lists: Option<PathBuf>,
    /// Install nftables rules so the child's accounts reach only what the web filter resolved,
    /// protected destinations and the filter itself (root; the systemd unit sets it)
    #[arg(long)]
    dns_firewall: bool,
    /// A path on a filesystem whose programs are checked before they run (repeatable)
    /// [default: every mounted filesystem]; `none` switches the exec guard off (tests), and
    /// blocked apps are then stopped just after they start
    #[arg(long = "exec-filesystem", value_name = "PATH")]
    exec_filesystem: Vec<PathBuf>,
    #[command(flatten)]
    gate: WebGateArgs,
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Print JSON instead of plain words
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour only for a person at a terminal; journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    // One thread is plenty for one stream and a heartbeat, and keeps the agent small.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes as one line, like `{:#}`, but without repeating a cause that an
/// error's own message already includes (several library errors quote their cause).
fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Needs no state folder: it only asks the running agent.
    if let Command::CheckContact(args) = &cli.command {
        return Ok(check_contact(args));
    }
    if let Command::Firewall(args) = &cli.command {
        return firewall(args).map(|()| ExitCode::SUCCESS);
    }
    let state = StateDir::resolve(cli.state_dir)?;
    match cli.command {
        Command::Enroll(args) => enroll(state, args).await.map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run(state, *args).await,
        Command::Status(args) => show_status(&state, args.json).map(|()| ExitCode::SUCCESS),
        Command::Request(args) => Ok(make_request(&state, &args.text)),
        Command::CheckContact(args) => Ok(check_contact(&args)),
        Command::DnsFilter(args) => dns_filter(args).await.map(|()| ExitCode::SUCCESS),
        Command::Firewall(args) => firewall(&args).map(|()| ExitCode::SUCCESS),
    }
}

/// `haven-agent firewall`: the web filter's rules with nothing resolved yet, so the child's
/// accounts reach nothing but the (not yet running) filter until the agent starts (WB1).
fn firewall(args: &FirewallArgs) -> anyhow::Result<()> {
    use haven_agent::web::nft;
    nft::apply(&nft::ruleset(args.dns_listen, &args.gate.accounts()))?;
    println!(
        "The web filter's firewall is loaded: accounts {} reach only what the filter resolves.",
        args.gate.web_child_uids
    );
    Ok(())
}

async fn enroll(state: StateDir, args: EnrollArgs) -> anyhow::Result<()> {
    if !args.force
        && let Some(config) = state.enrolled_config()?
    {
        bail!(
            "this device is already enrolled for {} (in {}); to enroll it again, add --force",
            config.child_display_name,
            state.root().display()
        );
    }
    // Make sure the enrollment can be saved before using up the one-time code.
    state.create()?;
    let probe = state.root().join(".write-test");
    write_atomic(&probe, b"", 0o600)
        .with_context(|| format!("cannot write to {}", state.root().display()))?;
    let _ = std::fs::remove_file(&probe);

    // Several replicas: enroll with the first that answers, keep them all for syncing.
    let urls = haven_agent::net::controller_urls(&args.controller);
    let Some(first) = urls.first() else {
        anyhow::bail!(
            "--controller is empty: give the address staff gave you, e.g. https://haven.local:7443"
        );
    };
    let mut ca = haven_proto::trust::fetch_pinned_ca(first, &args.ca_pin).await;
    let mut url = first.clone();
    for other in &urls[1..] {
        if ca.is_ok() {
            break;
        }
        url = other.clone();
        ca = haven_proto::trust::fetch_pinned_ca(other, &args.ca_pin).await;
    }
    let ca_pem = ca?;
    let inventory = inventory::collect_for(state.root());
    let mut enrollment = haven_agent::enroll_device(&url, &ca_pem, &args.code, inventory).await?;
    enrollment.identity.controller_url = urls.join(",");
    let now = jiff::Timestamp::now().to_string();
    state.save_enrollment(&enrollment.identity, &enrollment.child_display_name, &now)?;

    let child = if enrollment.child_display_name.is_empty() {
        "its child".to_string()
    } else {
        enrollment.child_display_name
    };
    let run = match StateDir::default_location() {
        Ok(default) if default == state.root() => "haven-agent run".to_string(),
        _ => format!("haven-agent run --state-dir {}", state.root().display()),
    };
    println!("This device is now enrolled for {child}. Start the agent with: {run}");
    Ok(())
}

/// Fails closed: the cached policy (or the safe default) is enforced before anything that can
/// fail, and stays enforced until the agent is stopped, even when the device cannot sync
/// (damaged identity or settings). Only a device with nothing enrolled at all is refused.
/// Exits non-zero, after shutdown, when it could not sync for such a reason.
async fn run(state: StateDir, args: RunArgs) -> anyhow::Result<ExitCode> {
    if state.is_blank() {
        return Err(StateError::NotEnrolled {
            dir: state.root().to_path_buf(),
        }
        .into());
    }
    // Every guard reports what it blocks to the durable journal (which also prints a
    // `blocked: ...` line); the sync loop sends it on. A journal that cannot be opened must
    // not stop enforcement: the records are then kept in memory while the agent runs.
    let journal = match Journal::open(&state) {
        Ok(journal) => journal,
        Err(e) => {
            warn!("{e}; blocked attempts are kept in memory only until this is fixed");
            Journal::in_memory(journal::DEFAULT_CAPACITY)
        }
    };
    let journal = Arc::new(journal.echo_to_stdout(true));
    let sink: Arc<dyn BlockedSink> = journal.clone();
    // A device enforces for real unless someone chose otherwise (D1).
    let chosen = args.enforcer.unwrap_or(if is_root() {
        EnforcerArg::Linux
    } else {
        EnforcerArg::Log
    });
    if chosen != EnforcerArg::Linux {
        warn!(
            "--enforcer {} is for development only: it enforces nothing, and this device tells \
             staff so (use --enforcer linux, as root, on a child's device)",
            if chosen == EnforcerArg::Log {
                "log"
            } else {
                "null"
            }
        );
    }
    // The category lists the controller sent, kept in the state folder (WB4): enforced from
    // the start, before any network.
    let lists = Arc::new(haven_agent::web::ReceivedLists::open(Some(
        state.root().join("filter-lists"),
    )));
    let mut enforcer = match chosen {
        EnforcerArg::Log => EnforcerKind::Log.build(),
        EnforcerArg::Null => EnforcerKind::Null.build(),
        EnforcerArg::Linux => linux_enforcer(&args.linux, sink, lists.clone())?,
    };
    // Enforce before anything else (and before any network): a device must be protected
    // while the controller is away, and also when its own state is damaged.
    let initial = sync::apply_startup_policy(Some(&state), enforcer.as_mut());
    // systemd lets people log in only once every guard is armed (Type=notify).
    let health = enforcer.health();
    if haven_agent::enforcer::all_armed(&health) {
        notify_systemd(std::env::var_os("NOTIFY_SOCKET").as_deref(), "READY=1");
    } else {
        warn!(
            "not every guard is armed, so systemd is not told this device is ready: {}",
            health
                .iter()
                .map(|h| format!("{} {:?}", h.guard, h.state))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let identity = match state.load_identity() {
        Ok((identity, _)) => identity,
        Err(StateError::Retired) => {
            // Keep enforcing the (cached) safe default, but never connect again.
            warn!(
                "this device has been removed from Haven by staff; enforcement continues with \
                 the safe default until it is enrolled again"
            );
            shutdown_signal().await;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            let problem = match e {
                // Some identity files are there, but not the settings that go with them.
                StateError::NotEnrolled { .. } => {
                    format!("{} is missing", state.config_path().display())
                }
                e => e.to_string(),
            };
            sync::log_cannot_sync(&problem, &initial);
            shutdown_signal().await;
            return Ok(ExitCode::FAILURE);
        }
    };
    info!(
        "haven-agent {} starting for device {} (enforcer: {})",
        inventory::AGENT_VERSION,
        identity.device_id,
        enforcer.name()
    );
    let mut config = SyncConfig::new(identity);
    config.heartbeat = Duration::from_secs(args.heartbeat_secs);
    config.max_backoff = Duration::from_secs(args.max_backoff_secs);
    config.inventory = InventorySource::Live {
        storage_path: state.root().to_path_buf(),
    };
    config.initial_policy = Some(initial);
    config.state = Some(state);
    config.journal = Some(journal);
    config.lists = Some(lists);
    match sync::run(config, enforcer, shutdown_signal()).await {
        Ok(RunOutcome::Retired) => {
            info!("stopped; this device stays on the safe default until it is enrolled again");
            Ok(ExitCode::SUCCESS)
        }
        Ok(RunOutcome::Shutdown) => Ok(ExitCode::SUCCESS),
        // Already logged when it happened; the policy stayed enforced until shutdown.
        Err(_) => Ok(ExitCode::FAILURE),
    }
}

/// The Linux guards as one enforcer. The log enforcer comes **last**: the composite applies
/// every part whatever the others did, so every policy is still logged as
/// `policy version N — ...`, and that line means every guard has already applied it.
fn linux_enforcer(
    args: &LinuxArgs,
    sink: Arc<dyn BlockedSink>,
    lists: Arc<haven_agent::web::ReceivedLists>,
) -> anyhow::Result<Box<dyn Enforcer>> {
    // One screener for the screening socket and the telephony guard, so a call asked about
    // and then hung up is reported once.
    let screener = Arc::new(screening::Screener::new(
        haven_agent::core::safe_default(),
        sink.clone(),
    ));
    let parts: Vec<Box<dyn Enforcer>> = vec![
        Box::new(haven_agent::linux::AppGuard::start(
            haven_agent::linux::AppGuardConfig {
                scan_every: Duration::from_secs(args.app_scan_secs),
                always_allowed: args.app_always_allow.clone(),
                ..Default::default()
            },
            sink.clone(),
        )?),
        exec_guard(args, sink.clone()),
        Box::new(haven_agent::linux::CameraGuard::start(
            haven_agent::linux::CameraGuardConfig {
                paths: if args.camera_path.is_empty() {
                    haven_agent::linux::CameraGuardConfig::default().paths
                } else {
                    args.camera_path.clone()
                },
                ..Default::default()
            },
            sink.clone(),
        )?),
        contact_screening(args, screener.clone()),
        telephony_guard(args, screener),
        web_filter(args, sink.clone(), lists),
        Box::new(LogEnforcer),
    ];
    Ok(Box::new(CompositeEnforcer::new("linux", parts)))
}

/// The exec guard (D4): refuses programs before they run. The kill backstop (the app guard)
/// still runs if it cannot start, and the device says so.
fn exec_guard(args: &LinuxArgs, sink: Arc<dyn BlockedSink>) -> Box<dyn Enforcer> {
    use haven_agent::enforcer::FailedGuard;
    if args.exec_filesystem.iter().any(|p| p.as_os_str() == "none") {
        return Box::new(FailedGuard::weakened(
            "exec",
            "switched off (--exec-filesystem none): blocked apps are stopped just after they \
             start instead of before",
        ));
    }
    let config = haven_agent::linux::ExecGuardConfig {
        always_allowed: args.app_always_allow.clone(),
        exec_filesystems: args.exec_filesystem.clone(),
        ..Default::default()
    };
    match haven_agent::linux::ExecGuard::start(config, sink) {
        Ok(guard) => Box::new(guard),
        Err(e) => {
            error!("{e}; blocked apps are stopped just after they start instead of before");
            Box::new(FailedGuard::new("exec", e.to_string()))
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Tells systemd something (`READY=1`) over `$NOTIFY_SOCKET`, as `sd_notify` does: one
/// datagram to a path, or to an abstract socket when the name starts with `@`. Nothing to
/// tell when not started by systemd; a failure is logged, never fatal.
fn notify_systemd(socket: Option<&std::ffi::OsStr>, state: &str) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(socket) = socket.filter(|s| !s.is_empty()) else {
        return;
    };
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        None => SocketAddr::from_pathname(std::path::Path::new(socket)),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state.as_bytes(), &addr));
    if let Err(e) = sent {
        warn!("could not tell systemd {state}: {e}");
    }
}

/// The contact screening guard. If its socket cannot be opened the agent still starts and
/// enforces everything else (a device must never be left unprotected because one guard could
/// not start); the problem is logged loudly for whoever looks after the device.
fn contact_screening(args: &LinuxArgs, screener: Arc<screening::Screener>) -> Box<dyn Enforcer> {
    let options = screening::ScreeningOptions {
        trusted_uids: args.screening_trusted_uid.clone(),
    };
    match ContactScreening::start_with(&args.screening_socket, screener, options) {
        Ok(screening) => Box::new(screening),
        Err(e) => {
            error!(
                "{e}; calls and messages cannot be screened until this is fixed (the rest of \
                 the policy is enforced)"
            );
            Box::new(haven_agent::NullEnforcer)
        }
    }
}

/// The telephony guard (D3, GD3): hangs up and withholds what the plan does not allow, and
/// lets the screening socket place, answer and relay calls and texts for the child. With no
/// ModemManager it says "no modem" and keeps looking; the other guards are not affected.
fn telephony_guard(args: &LinuxArgs, screener: Arc<screening::Screener>) -> Box<dyn Enforcer> {
    use haven_agent::linux::{TelephonyConfig, TelephonyGuard};
    let config = TelephonyConfig {
        bus: args.telephony_bus.clone(),
        ..Default::default()
    };
    match TelephonyGuard::start(config, screener.clone()) {
        Ok(guard) => {
            screener.set_telephone(Arc::new(guard.phone()));
            Box::new(guard)
        }
        Err(e) => {
            error!("{e}; calls and texts are not watched until this is fixed");
            Box::new(haven_agent::NullEnforcer)
        }
    }
}

/// The web filter for `--enforcer linux`: starts answering at once, with the web off until
/// the first policy is applied. If it cannot start, the other guards still run and every
/// policy acknowledgement says the web is not enforced.
fn web_filter(
    args: &LinuxArgs,
    sink: Arc<dyn BlockedSink>,
    lists: Arc<haven_agent::web::ReceivedLists>,
) -> Box<dyn Enforcer> {
    use haven_agent::web::{DEFAULT_TLS_UPSTREAMS, DEFAULT_UPSTREAMS, WebConfig, dot::DotClient};
    let defaults = if args.dns_upstream_tls.is_some() {
        DEFAULT_TLS_UPSTREAMS
    } else {
        DEFAULT_UPSTREAMS
    };
    let upstreams = if args.dns_upstream.is_empty() {
        defaults.iter().filter_map(|a| a.parse().ok()).collect()
    } else {
        args.dns_upstream.clone()
    };
    let mut config = WebConfig::new(args.dns_listen, upstreams);
    if let Some(name) = &args.dns_upstream_tls {
        match DotClient::new(name, &args.dns_upstream_ca) {
            Ok(client) => config.dot = Some(client),
            Err(e) => {
                // Never fall back to plain DNS when TLS was asked for: the filter is reported
                // as not running (and the firewall keeps the child default-deny).
                error!("{e}");
                return Box::new(haven_agent::web::NotRunning {
                    reason: e.to_string(),
                });
            }
        }
    }
    config.lists_dir = args.filter_lists.clone();
    config.received = Some(lists);
    config.firewall = args.dns_firewall;
    config.children = args.gate.accounts();
    haven_agent::web::start_or_report(config, sink)
}

#[derive(Debug, clap::Args)]
struct DnsFilterArgs {
    /// A block list (hosts file, one domain a line, or adblock rules); repeatable
    #[arg(long, value_name = "FILE")]
    list: Vec<PathBuf>,
    /// A folder of category lists
    #[arg(long, value_name = "DIR")]
    filter_lists: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:5303", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    #[arg(long, default_value = "127.0.0.1:5300", value_name = "ADDR")]
    upstream: Vec<std::net::SocketAddr>,
    /// Threads answering UDP queries
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print each blocked name (once a minute at most) instead of only counting
    #[arg(long)]
    log_blocked: bool,
    /// Gate egress as on a device: load the firewall and feed every answer's addresses to it
    /// (root; run it in a network namespace of its own, as `dns-peer.sh GATE=1` does)
    #[arg(long)]
    gate: bool,
}

/// `haven-agent dns-filter`: the web filter alone, every list blocked, for benchmarks.
async fn dns_filter(args: DnsFilterArgs) -> anyhow::Result<()> {
    use haven_agent::enforcer::DevicePolicy;
    use haven_agent::web::{CountingSink, WebConfig, WebFilter};
    use haven_proto::agent::v1::WebRule;
    let started = std::time::Instant::now();
    let mut config = WebConfig::new(args.listen, args.upstream);
    config.extra_lists = args.list;
    config.lists_dir = args.filter_lists;
    config.workers = args.threads;
    config.firewall = args.gate;
    let sink: Arc<dyn BlockedSink> = if args.log_blocked {
        Arc::new(LogSink)
    } else {
        Arc::new(CountingSink::default())
    };
    let mut filter = WebFilter::start(config, sink)?;
    let policy = DevicePolicy {
        version: 1,
        web: Some(WebRule {
            allowed: true,
            filter_profile: "benchmark".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    filter.apply(&policy)?;
    println!(
        "dns-filter: answering on {} after {:.3} s",
        filter.local_addr(),
        started.elapsed().as_secs_f64()
    );
    shutdown_signal().await;
    let c = filter.resolver().counters();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "dns-filter: {} queries, {} blocked, {} refused, {} from the cache, {} forwarded, {} upstream failures",
        n(&c.queries),
        n(&c.blocked),
        n(&c.refused),
        n(&c.cache_hits),
        n(&c.forwarded),
        n(&c.upstream_failures)
    );
    if let Some(feed) = filter.resolver().feed() {
        let f = &feed.counters;
        println!(
            "dns-filter: egress: {} nft transactions, {} addresses written, {:.3} s in nft, {} answers not held",
            n(&f.batches),
            n(&f.written),
            n(&f.nft_nanos) as f64 / 1e9,
            n(&f.overflow)
        );
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM (how systemd stops the service).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let terminate = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("shutting down");
}

/// Saves a child's request in the outbox; the running agent sends it when it can. Every
/// outcome is told in one kind, plain line, because the person reading it is a child.
///
/// Permissions: this writes into the state folder, which on a real device belongs to root
/// (mode 0700), so a child's own account cannot save a request yet. How a child's account
/// hands requests to the agent comes with a later issue.
fn make_request(state: &StateDir, text: &str) -> ExitCode {
    let refuse = |words: &str| {
        eprintln!("{words}");
        ExitCode::FAILURE
    };
    // Checked first, so a child with nothing written is told how to write it, whatever else.
    if let Err(e) = haven_agent::requests::clean_text(text) {
        return refuse(&e.to_string());
    }
    match state.load_config() {
        Ok(Some(config)) if config.retired_at.is_none() => {}
        Ok(Some(_)) => {
            return refuse(
                "Sorry, this device is no longer connected to Haven, so your request cannot \
                 reach the staff from here. Please tell a member of staff instead.",
            );
        }
        Ok(None) => {
            return refuse(
                "Sorry, this device is not set up with Haven yet, so your request cannot reach \
                 the staff from here. Please tell a member of staff instead.",
            );
        }
        Err(e) => {
            warn!("{e}");
            return refuse(
                "Sorry, your request could not be saved on this device. Please tell a member of \
                 staff instead.",
            );
        }
    }
    let now = jiff::Timestamp::now().as_millisecond();
    match RequestSpool::new(state).submit(text, now) {
        Ok(_) => {
            println!(
                "Your request has been saved and will reach the staff as soon as this device is \
                 connected. You will see their answer with `haven-agent status`."
            );
            ExitCode::SUCCESS
        }
        Err(e @ (RequestError::Empty | RequestError::TooLong { .. })) => refuse(&e.to_string()),
        Err(RequestError::State(e)) => {
            // The details are for whoever looks after the device; the child gets kind words.
            warn!("{e}");
            refuse(
                "Sorry, your request could not be saved on this device. Please tell a member of \
                 staff instead.",
            )
        }
    }
}

/// Asks the screening service and says what it answered, for a person or a script.
fn check_contact(args: &CheckContactArgs) -> ExitCode {
    match screening::ask(&args.screening_socket, &args.channel, &args.address) {
        Ok(answer) if answer.allowed() => {
            println!("Allowed: {}", answer.reason);
            ExitCode::SUCCESS
        }
        Ok(answer) if !answer.error.is_empty() => {
            println!(
                "Not allowed: the agent could not understand the question ({}).",
                answer.error
            );
            ExitCode::from(1)
        }
        Ok(answer) => {
            println!("Not allowed: {}", answer.reason);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("Cannot check: {e}");
            ExitCode::from(2)
        }
    }
}

fn show_status(state: &StateDir, json: bool) -> anyhow::Result<()> {
    let report = status::gather(state)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", status::render_text(&report));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // clause D1: systemd hears READY=1 on the socket it named.
    #[test]
    fn d1_ready_is_sent_to_the_notify_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_systemd(Some(path.as_os_str()), "READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // Not started by systemd, or a socket that is gone: nothing happens.
        notify_systemd(None, "READY=1");
        notify_systemd(Some(dir.path().join("gone").as_os_str()), "READY=1");
    }
}
