//! The `haven` command: `haven serve` runs the controller; every other command is what staff
//! use to look after children's devices. Nouns then verbs (`haven child list`), `--json` on
//! every read, one line and a non-zero exit on any error.

// Records from an older controller carry only the deprecated words fields; `shown` falls back
// to them.
#![allow(deprecated)]

pub mod audit;
pub mod backup;
pub mod camera;
pub mod client;
pub mod documents;
pub mod emergency;
pub mod filter;
pub mod output;
pub mod pages;
pub mod plans;
pub mod records;
pub mod violations;

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::{CommandFactory, Parser, Subcommand};
use haven_proto::admin::v1::{self as api};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::config::{LogFormat, ServeArgs};
use crate::service::wire_enums::{shown, typed, value, words};
use client::{Bearer, Login, explain};
use output::{bytes, json, table, when};

#[derive(Debug, Parser)]
#[command(
    name = "haven",
    version,
    about = "Haven: keeps children's devices in line with their placement plans",
    long_about = "Haven: keeps children's devices in line with their placement plans.\n\n\
        `haven serve` runs the controller. Every other command talks to a controller you have \
        logged in to with `haven login`."
)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (creates its data directory, CA and first administrator on first start).
    Serve(Box<ServeArgs>),
    /// Save the controller's address, its CA pin and your staff token for the other commands.
    /// The token is pasted when asked (or piped on standard input), never typed on the command
    /// line, where it would stay in the shell's history.
    Login {
        /// The controller, e.g. https://haven.local:7443
        #[arg(required_unless_present = "rotate")]
        controller: Option<String>,
        /// The controller's CA fingerprint, as printed by `haven serve` (sha256:…).
        #[arg(long, required_unless_present = "rotate")]
        ca_pin: Option<String>,
        /// Replace your saved token with a new one now (the old one stops working).
        #[arg(long, conflicts_with_all = ["controller", "ca_pin"])]
        rotate: bool,
        /// Not accepted: a token on the command line stays in the shell's history.
        #[arg(long, hide = true)]
        token: Option<String>,
    },
    /// Show who you are logged in as.
    Whoami,
    /// The ids behind a name: homes, children, devices (by child or hostname) and staff
    /// called that. Scripts send ids; this finds them.
    Lookup {
        /// The name (whole, any case; a child's first name is enough).
        name: String,
        /// Only this kind: home, child, staff or device (repeat for several) [default: all].
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Include archived children, revoked devices and revoked staff.
        #[arg(long)]
        all: bool,
    },
    /// Homes: add and list them.
    #[command(subcommand)]
    Home(HomeCommand),
    /// Contacts that can never be blocked (emergency services, Childline, social worker…).
    #[command(subcommand, name = "protected-contact")]
    ProtectedContact(ProtectedContactCommand),
    /// Children: add, list and show them.
    #[command(subcommand)]
    Child(ChildCommand),
    /// Children's devices: enroll, list, show and revoke them.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Staff accounts and their tokens (administrators only).
    #[command(subcommand)]
    Staff(StaffCommand),
    /// Reviews due soon or overdue: camera agreements, social sites, restrictions, risk
    /// assessments.
    Reviews {
        /// Only this home.
        #[arg(long)]
        home: Option<String>,
        /// Only what is overdue or due within --within days.
        #[arg(long)]
        due: bool,
        /// How many days ahead counts as due.
        #[arg(long, default_value_t = 14)]
        within: u32,
    },
    /// Staff reports: off-duty contact from a child or someone known to a child.
    #[command(subcommand)]
    Report(records::ReportCommand),
    /// What children ask for from their devices, and the answers staff give.
    #[command(subcommand)]
    Requests(records::RequestsCommand),
    /// Camera incidents, and withdrawing the camera in one command (IM2).
    #[command(subcommand)]
    Camera(camera::CameraCommand),
    /// What children's devices blocked, newest first: filter by child, device, kind and time,
    /// or --watch them arrive live.
    Violations(violations::ViolationsArgs),
    /// Manager tasks: attempts to reach unknown contacts to review (`haven tasks close` to
    /// close one, managers).
    #[command(alias = "task")]
    Tasks(violations::TasksArgs),
    /// The register of approvals to take images of a child.
    #[command(subcommand, name = "photo-approval")]
    PhotoApproval(records::PhotoApprovalCommand),
    /// The audit trail of every change (managers and administrators).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Risk assessments behind a child's arrangements: record and list them.
    #[command(subcommand)]
    Risk(RiskCommand),
    /// The communication section of a child's Placement Plan: revise, show, history, diff, print.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// The web filter's category lists (import, list) and a home's own exceptions (allow,
    /// deny, remove, exceptions).
    #[command(subcommand)]
    Filter(filter::FilterCommand),
    /// Emergency: withdraw a child's communication at once, for a protective reason only
    /// (never as a punishment). Protected contacts stay reachable.
    Lockdown(Box<emergency::LockdownArgs>),
    /// Emergency: restrict letters or visits (contact arrangements no device enforces), for a
    /// protective reason only; recorded with its sanction, obligations and review like a
    /// lockdown.
    Restrict(Box<emergency::RestrictArgs>),
    /// Record on a lockdown that Ofsted was consulted, and what it advised (RM6).
    #[command(name = "lockdown-note")]
    LockdownNote {
        /// The lockdown id (lck-…).
        id: String,
        #[arg(long)]
        ofsted_advice: String,
    },
    /// End a lockdown; devices are updated at once.
    Lift {
        /// The lockdown id (lck-…).
        id: String,
        /// Why it is lifted.
        #[arg(long)]
        note: String,
    },
    /// Lockdowns in force: for whom, since when, by whom, and when they end or are reviewed
    /// (lifted ones too with --all).
    Lockdowns {
        #[arg(long)]
        home: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        pages: pages::PageArgs,
    },
    /// What the home owes after emergency action, and when: open ones (all with --all).
    Obligations {
        #[arg(long)]
        home: Option<String>,
        /// Only those past their deadline.
        #[arg(long)]
        overdue: bool,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        pages: pages::PageArgs,
    },
    /// The child's social worker was told: close the notification obligation.
    Notified {
        /// The obligation id (obl-…).
        obligation: String,
        /// Who told them.
        #[arg(long)]
        by: String,
        /// phone, email or in-person.
        #[arg(long)]
        how: String,
        /// When: "now" [default], "20m ago", "08:30", "2026-11-28 08:30" or RFC 3339.
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// The sanctions log (Regulation 35): every sanction and where its record stands.
    Sanctions {
        #[arg(long)]
        home: Option<String>,
        #[command(flatten)]
        pages: pages::PageArgs,
    },
    /// Complete, sign off, or record the talk with the child about a sanction.
    #[command(subcommand)]
    Sanction(emergency::SanctionCommand),
    /// Write an encrypted backup of this machine's controller (database, keys, certificates,
    /// settings) to FILE; safe while `haven serve` runs. Run on the controller machine.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new or empty data directory, checking it first.
    Restore(backup::RestoreArgs),
    /// Make an age key pair for backups that need no passphrase on the controller.
    #[command(name = "backup-key")]
    BackupKey(backup::BackupKeyArgs),
    /// Print shell completions, e.g. `haven completions bash > /etc/bash_completion.d/haven`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum HomeCommand {
    /// Add a home.
    Add {
        name: String,
        /// Time zone for deadlines.
        #[arg(long, default_value = "Europe/London")]
        time_zone: String,
    },
    /// List homes.
    List,
}

#[derive(Debug, Subcommand)]
enum ProtectedContactCommand {
    /// Add a protected contact for a whole home (Childline, Ofsted) or for one child (their
    /// social worker, IRO, advocate); their devices get it at once.
    Add {
        /// The home, for a contact every child in it keeps.
        #[arg(long, required_unless_present = "child", conflicts_with = "child")]
        home: Option<String>,
        /// The child, for a contact only they have (e.g. their social worker).
        #[arg(long)]
        child: Option<String>,
        #[arg(long)]
        name: String,
        /// Phone number or short code, e.g. 0800 1111.
        #[arg(long)]
        number: String,
    },
    /// Take one of the home's own protected contacts off its list (kept on record). The
    /// contacts built into Haven (999, Childline, …) can never be removed.
    Remove {
        #[arg(long)]
        home: String,
        /// The contact's id or number, as `haven protected-contact list` shows it.
        contact: String,
        /// Why it is no longer protected, e.g. "social worker changed".
        #[arg(long)]
        reason: String,
    },
    /// List a home's protected contacts, or those a child keeps (the home's and their own),
    /// including the ones built into Haven.
    List {
        #[arg(long, required_unless_present = "child", conflicts_with = "child")]
        home: Option<String>,
        #[arg(long)]
        child: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ChildCommand {
    /// Add a child to a home.
    Add {
        #[arg(long)]
        home: String,
        #[arg(long)]
        name: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long)]
        dob: String,
    },
    /// List children (of one home with --home; those who have left too with --all).
    List {
        #[arg(long)]
        home: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        pages: pages::PageArgs,
    },
    /// A child has left the home: archive them. Nothing is deleted; their records are kept
    /// until their 75th birthday.
    Archive {
        child: String,
        #[arg(long)]
        reason: String,
    },
    /// Show one child, by id or name.
    Show { child: String },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Make a one-time code that enrolls one device for a child.
    Enroll {
        /// The child, by id or name.
        child: String,
        /// How long the code works: 30m, 24h, 2d… (at most 7 days).
        #[arg(long, default_value = "24h")]
        valid_for: String,
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
    },
    /// List devices, their state and the policy each has applied.
    List {
        /// Only this child's devices.
        #[arg(long)]
        child: Option<String>,
        /// Include revoked devices.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        pages: pages::PageArgs,
    },
    /// Show one device in full.
    Show { device: String },
    /// Disconnect a device at once and refuse it from now on.
    Revoke {
        device: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// List enrollment codes that still work (never the codes themselves, only their first
    /// group); `--all` adds used, expired and cancelled ones.
    Codes {
        /// Only this child's codes.
        #[arg(long)]
        child: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Cancel an enrollment code that has not been used (sent to the wrong person, lost).
    CancelCode {
        /// The code's id (enr-…), as `haven device codes` shows it.
        id: String,
    },
    /// Devices whose certificate is due for renewal and not renewed (offline since), or
    /// expired (they must be enrolled again with a new code).
    Expiring {
        /// Only this child's devices.
        #[arg(long)]
        child: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Record a risk assessment from a TOML or JSON file (`-` reads standard input).
    Add {
        child: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// List a child's risk assessments.
    List { child: String },
    /// Print a risk assessment to fill in.
    Template,
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Make a new revision from a TOML or JSON file (managers only).
    Revise {
        child: String,
        #[arg(long)]
        file: PathBuf,
        /// The revision you started from [default: the current one].
        #[arg(long)]
        based_on: Option<u64>,
    },
    /// Show the current revision (or revision N).
    Show {
        child: String,
        revision: Option<u64>,
        /// Print it as a TOML file to edit and pass to `haven plan revise`.
        #[arg(long)]
        toml: bool,
    },
    /// List every revision: who made it, when and why.
    History { child: String },
    /// What changed between two revisions.
    Diff { child: String, from: u64, to: u64 },
    /// The written record of the plan for a social worker or an inspector.
    Print {
        child: String,
        #[arg(long, value_enum, default_value = "markdown")]
        format: plans::PrintFormat,
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print a plan revision to fill in.
    Template,
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Add a member of staff and show their token (once).
    Add {
        #[arg(long)]
        name: String,
        /// staff, manager or admin.
        #[arg(long)]
        role: String,
        /// A home they work in (repeat for several). Staff and managers see only the children
        /// of their own homes; administrators see every home.
        #[arg(long = "home", value_name = "HOME")]
        homes: Vec<String>,
    },
    /// Add a home to those a member of staff works in.
    AddHome {
        /// The member of staff, by id or name.
        staff: String,
        #[arg(long)]
        home: String,
    },
    /// List staff (tokens are never shown again).
    List {
        /// Include revoked staff.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        pages: pages::PageArgs,
    },
    /// Revoke a member of staff's token, by id or name.
    Revoke { staff: String },
    /// Give a member of staff a new token at once (a lost laptop); the old one stops working
    /// and the new one is shown only now.
    Rotate { staff: String },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log_format = match &cli.command {
        Command::Serve(args) => args.log_format.unwrap_or_default(),
        _ => LogFormat::Human,
    };
    init_logging(log_format, matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("HAVEN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

type Intercepted = InterceptedService<Channel, Bearer>;

/// Clients for every staff service, sharing one connection.
struct Staff {
    homes: api::home_service_client::HomeServiceClient<Intercepted>,
    children: api::child_service_client::ChildServiceClient<Intercepted>,
    devices: api::device_service_client::DeviceServiceClient<Intercepted>,
    staff: api::staff_service_client::StaffServiceClient<Intercepted>,
    audit: api::audit_service_client::AuditServiceClient<Intercepted>,
    plans: api::plan_service_client::PlanServiceClient<Intercepted>,
    records: api::records_service_client::RecordsServiceClient<Intercepted>,
    violations: api::violation_service_client::ViolationServiceClient<Intercepted>,
    emergency: api::emergency_service_client::EmergencyServiceClient<Intercepted>,
    filter: filter::Filter,
    lookup: api::lookup_service_client::LookupServiceClient<Intercepted>,
}

async fn connect(login: &Login) -> anyhow::Result<Staff> {
    let channel = client::channel(&login.controller, &login.ca_pem).await?;
    let bearer = Bearer::new(&login.token)?;
    Ok(Staff {
        homes: api::home_service_client::HomeServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        children: api::child_service_client::ChildServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        devices: api::device_service_client::DeviceServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        staff: api::staff_service_client::StaffServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        audit: api::audit_service_client::AuditServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        plans: api::plan_service_client::PlanServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        records: api::records_service_client::RecordsServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        violations: api::violation_service_client::ViolationServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        emergency: api::emergency_service_client::EmergencyServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        lookup: api::lookup_service_client::LookupServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        ),
        filter: api::filter_service_client::FilterServiceClient::with_interceptor(channel, bearer),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let as_json = cli.json;
    match cli.command {
        Command::Serve(args) => crate::server::serve(args.resolve()?).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "haven", &mut std::io::stdout());
            Ok(())
        }
        Command::Login {
            controller,
            ca_pin,
            rotate,
            token,
        } => {
            if token.is_some() {
                return Err(anyhow::anyhow!(
                    "the token is not given on the command line (it would stay in your shell's history): run `haven login URL --ca-pin PIN` and paste it when asked"
                ));
            }
            match (rotate, controller, ca_pin) {
                (true, _, _) => rotate_own_token(as_json).await,
                (false, Some(controller), Some(ca_pin)) => {
                    login(controller, ca_pin, read_token()?, as_json).await
                }
                _ => Err(anyhow::anyhow!(
                    "say which controller and its CA pin: haven login https://host:7443 --ca-pin sha256:…"
                )),
            }
        }
        Command::Backup(args) => backup::backup(args).await,
        Command::Restore(args) => backup::restore(args).await,
        Command::BackupKey(args) => backup::backup_key(args),
        Command::Risk(RiskCommand::Template) => {
            print!("{}", plans::RISK_TEMPLATE);
            Ok(())
        }
        Command::Plan(PlanCommand::Template) => {
            print!("{}", plans::PLAN_TEMPLATE);
            Ok(())
        }
        command => {
            let login = client::load_login()?;
            let mut staff = connect(&login).await?;
            staff_command(&mut staff, command, as_json).await
        }
    }
}

/// The token for `haven login`: `HAVEN_TOKEN` if set (for scripts), else asked for at the
/// terminal without showing it, else one line of standard input.
fn read_token() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if let Ok(token) = std::env::var("HAVEN_TOKEN")
        && !token.trim().is_empty()
    {
        return Ok(token.trim().to_string());
    }
    let token = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Paste your staff token (it is not shown): ")
            .context("could not read the token from the terminal")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("could not read the token from standard input")?;
        line
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(anyhow::anyhow!(
            "no token was given: paste the token (hvn_…) you were given when asked, or pipe it in"
        ));
    }
    Ok(token)
}

/// `haven login --rotate`: a new token for the saved login; the old one stops working.
async fn rotate_own_token(as_json: bool) -> anyhow::Result<()> {
    let mut login = client::load_login()?;
    let mut staff = connect(&login).await?;
    let rotated = staff
        .staff
        .rotate_token(api::RotateTokenRequest {
            staff: String::new(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    login.token = rotated.token.clone();
    let path = client::save_login(&login)?;
    let member = rotated.member.unwrap_or_default();
    if as_json {
        return json(&member);
    }
    println!(
        "Your token was replaced; the old one no longer works. The new one is saved in {} and works until {}.",
        path.display(),
        when(member.token_expires_at_unix_ms)
    );
    Ok(())
}

async fn login(
    controller: String,
    ca_pin: String,
    token: String,
    as_json: bool,
) -> anyhow::Result<()> {
    let controller = controller.trim_end_matches('/').to_string();
    let ca_pem = haven_proto::trust::fetch_pinned_ca(&controller, &ca_pin).await?;
    let login = Login {
        controller,
        ca_pin: haven_proto::trust::parse_pin(&ca_pin)?,
        ca_pem,
        token: token.trim().to_string(),
    };
    let mut staff = connect(&login).await?;
    let me = staff
        .staff
        .who_am_i(api::WhoAmIRequest {})
        .await
        .map_err(explain)?
        .into_inner();
    let path = client::save_login(&login)?;
    if as_json {
        return json(&me);
    }
    println!(
        "Logged in to {} as {} ({}). Saved in {}.",
        login.controller,
        me.name,
        role_of(&me),
        path.display()
    );
    Ok(())
}

async fn staff_command(s: &mut Staff, command: Command, as_json: bool) -> anyhow::Result<()> {
    match command {
        Command::Whoami => {
            let me = s
                .staff
                .who_am_i(api::WhoAmIRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&me);
            }
            println!("{} ({}), id {}", me.name, role_of(&me), me.id);
        }
        Command::Lookup { name, kinds, all } => {
            let mut wanted = Vec::new();
            for k in &kinds {
                let kind = value::<api::LookupKind>(k).ok_or_else(|| {
                    anyhow!(
                        "{k:?} is not a kind of record: use {}",
                        words::<api::LookupKind>()
                    )
                })?;
                wanted.push(i32::from(kind));
            }
            let found = s
                .lookup
                .lookup(api::LookupRequest {
                    name,
                    kinds: wanted,
                    include_inactive: all,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&found);
            }
            table(
                &["kind", "id", "name", "home", "inactive"],
                found
                    .matches
                    .into_iter()
                    .map(|m| {
                        vec![
                            shown::<api::LookupKind>(m.kind, "?"),
                            m.id,
                            m.name,
                            m.home_name,
                            if m.inactive { "yes" } else { "" }.to_string(),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Home(HomeCommand::Add { name, time_zone }) => {
            let home = s
                .homes
                .add_home(api::AddHomeRequest { name, time_zone })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&home);
            }
            println!("Added home {} ({}).", home.name, home.id);
        }
        Command::Home(HomeCommand::List) => {
            let homes = s
                .homes
                .list_homes(api::ListHomesRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .homes;
            if as_json {
                return json(&homes);
            }
            table(
                &["id", "home", "children", "time zone"],
                homes
                    .into_iter()
                    .map(|h| vec![h.id, h.name, h.children.to_string(), h.time_zone])
                    .collect(),
            );
        }
        Command::ProtectedContact(ProtectedContactCommand::Add {
            home,
            child,
            name,
            number,
        }) => {
            let c = s
                .homes
                .add_protected_contact(api::AddProtectedContactRequest {
                    home: home.unwrap_or_default(),
                    child: child.unwrap_or_default(),
                    name,
                    address: number,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&c);
            }
            let whose = if c.child_name.is_empty() {
                "every child in the home".to_string()
            } else {
                c.child_name.clone()
            };
            println!(
                "{} ({}) is now a protected contact for {whose}: no rule or lockdown can block it. Devices are being updated.",
                c.name, c.address
            );
        }
        Command::ProtectedContact(ProtectedContactCommand::Remove {
            home,
            contact,
            reason,
        }) => {
            let c = s
                .homes
                .remove_protected_contact(api::RemoveProtectedContactRequest {
                    home,
                    contact,
                    reason,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&c);
            }
            println!(
                "{} ({}) is no longer a protected contact; the record is kept. Devices are being updated.",
                c.name, c.address
            );
        }
        Command::ProtectedContact(ProtectedContactCommand::List { home, child }) => {
            let contacts = s
                .homes
                .list_protected_contacts(api::ListProtectedContactsRequest {
                    home: home.unwrap_or_default(),
                    child: child.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .contacts;
            if as_json {
                return json(&contacts);
            }
            table(
                &["name", "number", "for", "added"],
                contacts
                    .into_iter()
                    .map(|c| {
                        let whose = if c.child_name.is_empty() {
                            "everyone in the home".to_string()
                        } else {
                            c.child_name
                        };
                        let added = if c.built_in {
                            "built into Haven".to_string()
                        } else {
                            when(c.added_at_unix_ms)
                        };
                        vec![c.name, c.address, whose, added]
                    })
                    .collect(),
            );
        }
        Command::Child(ChildCommand::Add { home, name, dob }) => {
            let child = s
                .children
                .add_child(api::AddChildRequest {
                    home,
                    name,
                    date_of_birth: dob,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&child);
            }
            println!(
                "Added {} to {} ({}). Enroll a device with: haven device enroll {}",
                child.name, child.home_name, child.id, child.id
            );
        }
        Command::Child(ChildCommand::Archive { child, reason }) => {
            let c = s
                .children
                .archive_child(api::ArchiveChildRequest { child, reason })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&c);
            }
            println!(
                "Archived {}. Their records are kept, unchanged, until {}.",
                c.name, c.retain_records_until
            );
        }
        Command::Child(ChildCommand::List { home, all, pages }) => {
            let home = home.unwrap_or_default();
            let children = pages::fetch(&pages, None, |page_size, page_token| {
                let mut client = s.children.clone();
                let request = api::ListChildrenRequest {
                    home: home.clone(),
                    include_archived: all,
                    page_size,
                    page_token,
                };
                async move {
                    let r = client.list_children(request).await?.into_inner();
                    Ok((r.children, r.next_page_token))
                }
            })
            .await?;
            if as_json {
                return children.print_json("children");
            }
            children.print_next();
            let children = children.items;
            table(
                &["id", "name", "home", "born", "devices"],
                children
                    .into_iter()
                    .map(|c| {
                        vec![
                            c.id,
                            c.name,
                            c.home_name,
                            c.date_of_birth,
                            c.devices.to_string(),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Child(ChildCommand::Show { child }) => {
            let c = s
                .children
                .show_child(api::ShowChildRequest { child })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&c);
            }
            println!(
                "{}\n  id:        {}\n  home:      {}\n  born:      {}\n  devices:   {}\n  added:     {}\n  records kept until: {}",
                c.name,
                c.id,
                c.home_name,
                c.date_of_birth,
                c.devices,
                when(c.created_at_unix_ms),
                c.retain_records_until
            );
            if c.archived_at_unix_ms > 0 {
                println!(
                    "  left:      {} ({})",
                    when(c.archived_at_unix_ms),
                    c.archive_reason
                );
            }
        }
        Command::Device(DeviceCommand::Enroll {
            child,
            valid_for,
            no_qr,
        }) => {
            let minutes = output::parse_minutes(&valid_for).map_err(|e| anyhow!(e))?;
            let e = s
                .devices
                .create_enrollment(api::CreateEnrollmentRequest {
                    child,
                    valid_for_minutes: minutes,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&e);
            }
            let command = format!(
                "haven-agent enroll --controller {} --ca-pin {} --code {}",
                e.controller_url, e.ca_pin, e.code
            );
            println!(
                "Enrollment code for {}: {}\nIt works once, until {}.\n\nOn the device, run:\n\n  {command}\n",
                e.child_name,
                e.code,
                when(e.expires_at_unix_ms)
            );
            if !no_qr {
                let link = format!(
                    "haven-enroll:?controller={}&pin={}&code={}",
                    e.controller_url, e.ca_pin, e.code
                );
                if let Ok(qr) = qrcode::QrCode::new(link.as_bytes()) {
                    use qrcode::render::unicode::Dense1x2;
                    let art = qr
                        .render::<Dense1x2>()
                        .dark_color(Dense1x2::Light)
                        .light_color(Dense1x2::Dark)
                        .quiet_zone(true)
                        .build();
                    println!("Or scan this with the device:\n{art}");
                }
            }
        }
        Command::Device(DeviceCommand::List { child, all, pages }) => {
            let child = child.unwrap_or_default();
            let devices = pages::fetch(&pages, None, |page_size, page_token| {
                let mut client = s.devices.clone();
                let request = api::ListDevicesRequest {
                    child: child.clone(),
                    include_revoked: all,
                    page_size,
                    page_token,
                };
                async move {
                    let r = client.list_devices(request).await?.into_inner();
                    Ok((r.devices, r.next_page_token))
                }
            })
            .await?;
            if as_json {
                return devices.print_json("devices");
            }
            devices.print_next();
            let devices = devices.items;
            table(
                &[
                    "id",
                    "child",
                    "state",
                    "last heard",
                    "os",
                    "model",
                    "battery",
                    "free storage",
                    "agent",
                    "policy",
                    "enforcing",
                ],
                devices.into_iter().map(device_row).collect(),
            );
        }
        Command::Device(DeviceCommand::Show { device }) => {
            let d = s
                .devices
                .show_device(api::ShowDeviceRequest { device })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&d);
            }
            print_device(&d);
            filter::print_coverage(&mut s.filter, String::new(), d.id.clone()).await;
        }
        Command::Device(DeviceCommand::Expiring { child }) => {
            let devices = s
                .devices
                .list_expiring_devices(api::ListExpiringDevicesRequest {
                    child: child.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner()
                .devices;
            if as_json {
                return json(&devices);
            }
            if devices.is_empty() {
                println!("Every device's certificate is current: nothing to do.");
                return Ok(());
            }
            table(
                &[
                    "id",
                    "child",
                    "state",
                    "last heard",
                    "certificate expires",
                    "what to do",
                ],
                devices
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.clone(),
                            d.child_name.clone(),
                            device_state(d).into(),
                            when(d.last_seen_at_unix_ms),
                            when(d.certificate_not_after_unix_ms),
                            d.certificate_standing_words.clone(),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Device(DeviceCommand::Codes { child, all }) => {
            let codes = s
                .devices
                .list_enrollment_codes(api::ListEnrollmentCodesRequest {
                    child: child.unwrap_or_default(),
                    all,
                })
                .await
                .map_err(explain)?
                .into_inner()
                .codes;
            if as_json {
                return json(&codes);
            }
            if codes.is_empty() {
                println!(
                    "No enrollment codes that still work. Make one with: haven device enroll CHILD"
                );
                return Ok(());
            }
            table(
                &["id", "child", "code", "state", "made", "works until"],
                codes
                    .into_iter()
                    .map(|c| {
                        vec![
                            c.id,
                            c.child_name,
                            c.hint,
                            shown::<api::EnrollmentCodeState>(c.code_state, &c.state),
                            when(c.created_at_unix_ms),
                            when(c.expires_at_unix_ms),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Device(DeviceCommand::CancelCode { id }) => {
            let c = s
                .devices
                .cancel_enrollment_code(api::CancelEnrollmentCodeRequest { id })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&c);
            }
            println!(
                "Cancelled enrollment code {} ({}) for {}: no device can enroll with it now.",
                c.id, c.hint, c.child_name
            );
        }
        Command::Device(DeviceCommand::Revoke { device, reason }) => {
            let d = s
                .devices
                .revoke_device(api::RevokeDeviceRequest {
                    device,
                    reason: reason.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&d);
            }
            println!(
                "Revoked {} ({}'s device). It has been disconnected and will be refused from now on.",
                d.id, d.child_name
            );
        }
        Command::Staff(StaffCommand::AddHome { staff, home }) => {
            let m = s
                .staff
                .add_staff_to_home(api::AddStaffToHomeRequest { staff, home })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&m);
            }
            println!("{} now works in: {}.", m.name, m.homes.join(", "));
        }
        Command::Staff(StaffCommand::Add { name, role, homes }) => {
            let added = s
                .staff
                .add_staff(api::AddStaffRequest {
                    name,
                    staff_role: typed::<api::StaffRole>(&role).0,
                    role: typed::<api::StaffRole>(&role).1,
                    homes,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&added);
            }
            let m = added.member.unwrap_or_default();
            println!(
                "Added {} ({}), id {}.\nTheir token is shown only now — give it to them privately:\n\n  {}\n",
                m.name,
                role_of(&m),
                m.id,
                added.token
            );
        }
        Command::Staff(StaffCommand::List { all, pages }) => {
            let staff = pages::fetch(&pages, None, |page_size, page_token| {
                let mut client = s.staff.clone();
                let request = api::ListStaffRequest {
                    include_revoked: all,
                    page_size,
                    page_token,
                };
                async move {
                    let r = client.list_staff(request).await?.into_inner();
                    Ok((r.staff, r.next_page_token))
                }
            })
            .await?;
            if as_json {
                return staff.print_json("staff");
            }
            staff.print_next();
            let staff = staff.items;
            table(
                &[
                    "id",
                    "name",
                    "role",
                    "homes",
                    "token",
                    "added",
                    "last used",
                    "revoked",
                ],
                staff
                    .into_iter()
                    .map(|m| {
                        let role = role_of(&m);
                        vec![
                            m.id,
                            m.name,
                            role,
                            if m.homes.is_empty() {
                                "all".to_string()
                            } else {
                                m.homes.join(", ")
                            },
                            format!("{}…", m.token_hint),
                            when(m.created_at_unix_ms),
                            when(m.last_used_at_unix_ms),
                            if m.revoked_at_unix_ms > 0 {
                                when(m.revoked_at_unix_ms)
                            } else {
                                "-".into()
                            },
                        ]
                    })
                    .collect(),
            );
        }
        Command::Staff(StaffCommand::Rotate { staff }) => {
            let rotated = s
                .staff
                .rotate_token(api::RotateTokenRequest { staff })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&rotated);
            }
            let m = rotated.member.unwrap_or_default();
            println!(
                "{}'s old token no longer works. Their new token is shown only now — give it to them privately:\n\n  {}\n\nIt works until {}.",
                m.name,
                rotated.token,
                when(m.token_expires_at_unix_ms)
            );
        }
        Command::Staff(StaffCommand::Revoke { staff }) => {
            let m = s
                .staff
                .revoke_staff(api::RevokeStaffRequest { staff })
                .await
                .map_err(explain)?
                .into_inner();
            if as_json {
                return json(&m);
            }
            println!("Revoked {}'s token ({}). It no longer works.", m.name, m.id);
        }
        Command::Risk(cmd) => plans::risk(&mut s.plans, cmd, as_json).await?,
        Command::Report(cmd) => records::report(&mut s.records, cmd, as_json).await?,
        Command::Requests(cmd) => records::requests(&mut s.records, cmd, as_json).await?,
        Command::PhotoApproval(cmd) => records::photo(&mut s.records, cmd, as_json).await?,
        Command::Camera(cmd) => camera::camera(&mut s.records, &mut s.plans, cmd, as_json).await?,
        Command::Violations(args) => {
            violations::violations(&mut s.violations, args, as_json).await?
        }
        Command::Tasks(args) => violations::tasks(&mut s.violations, args, as_json).await?,
        Command::Reviews { home, due, within } => {
            plans::reviews(
                &mut s.plans,
                home,
                if due { within } else { 36_500 },
                as_json,
            )
            .await?
        }
        Command::Plan(cmd) => {
            // WB4: staff see what the filter really blocks, and any category without a list.
            let note_for = match &cmd {
                PlanCommand::Show {
                    child,
                    revision: None,
                    toml: false,
                } if !as_json => Some(child.clone()),
                _ => None,
            };
            plans::plan(&mut s.plans, cmd, as_json).await?;
            if let Some(child) = note_for {
                filter::print_coverage(&mut s.filter, child, String::new()).await;
            }
        }
        Command::Filter(cmd) => filter::filter(&mut s.filter, cmd, as_json).await?,
        Command::Lockdown(args) => emergency::lockdown(&mut s.emergency, *args, as_json).await?,
        Command::Restrict(args) => emergency::restrict(&mut s.emergency, *args, as_json).await?,
        Command::LockdownNote { id, ofsted_advice } => {
            emergency::ofsted_advice(&mut s.emergency, id, ofsted_advice, as_json).await?
        }
        Command::Lift { id, note } => emergency::lift(&mut s.emergency, id, note, as_json).await?,
        Command::Lockdowns { home, all, pages } => {
            emergency::lockdowns(&mut s.emergency, home, all, &pages, as_json).await?
        }
        Command::Obligations {
            home,
            overdue,
            all,
            pages,
        } => emergency::obligations(&mut s.emergency, home, overdue, all, &pages, as_json).await?,
        Command::Notified {
            obligation,
            by,
            how,
            at,
            note,
        } => emergency::notified(&mut s.emergency, obligation, by, how, at, note, as_json).await?,
        Command::Sanctions { home, pages } => {
            emergency::sanctions(&mut s.emergency, home, &pages, as_json).await?
        }
        Command::Sanction(cmd) => emergency::sanction(&mut s.emergency, cmd, as_json).await?,
        Command::Audit(cmd) => audit::run(&mut s.audit, cmd, as_json).await?,
        Command::Serve(_)
        | Command::Login { .. }
        | Command::Completions { .. }
        | Command::Backup(_)
        | Command::Restore(_)
        | Command::BackupKey(_) => {
            unreachable!("handled before connecting")
        }
    }
    Ok(())
}

fn progress(d: &api::Device) -> crate::domain::PolicyProgress<'_> {
    crate::domain::PolicyProgress {
        desired_version: d.desired_policy_version,
        desired_at: d.desired_policy_at_unix_ms,
        applied_version: d.applied_policy_version,
        applied_at: (d.applied_policy_at_unix_ms > 0).then_some(d.applied_policy_at_unix_ms),
        apply_error: Some(d.apply_error.as_str()),
    }
}

fn policy_state(d: &api::Device) -> String {
    format!("v{} {}", d.desired_policy_version, progress(d).state())
}

fn device_state(d: &api::Device) -> &'static str {
    match (
        shown::<api::DeviceStatus>(d.device_status, &d.status).as_str(),
        d.online,
    ) {
        ("revoked", _) => "revoked",
        (_, true) => "online",
        // Quiet for longer than the controller's configured time: a child may have switched
        // it off or removed the agent, so it says so instead of a plain "offline".
        _ if d.not_reporting => "not reporting",
        _ => "offline",
    }
}

fn device_row(d: api::Device) -> Vec<String> {
    let inv = d.inventory.clone().unwrap_or_default();
    vec![
        d.id.clone(),
        d.child_name.clone(),
        device_state(&d).into(),
        when(d.last_seen_at_unix_ms),
        format!("{} {}", inv.os_name, inv.os_version)
            .trim()
            .to_string(),
        inv.model.clone(),
        inv.battery_percent
            .map(|b| format!("{b}%"))
            .unwrap_or_else(|| "-".into()),
        bytes(inv.storage_free_bytes),
        inv.agent_version.clone(),
        policy_state(&d),
        enforcement(&d),
    ]
}

/// "enforcing", "enforcing, weakened: …", "not enforcing: …" or "not reported" (D1, D5).
fn enforcement(d: &api::Device) -> String {
    if d.enforcement.is_empty() {
        "not reported".into()
    } else {
        d.enforcement.clone()
    }
}

fn print_device(d: &api::Device) {
    let inv = d.inventory.clone().unwrap_or_default();
    let applied = match progress(d).state() {
        "failed" => format!(
            "failed — the device could not apply version {} ({}); it is enforcing its safe default",
            d.applied_policy_version, d.apply_error
        ),
        "applied" => format!(
            "applied — version {} since {}",
            d.applied_policy_version,
            when(d.applied_policy_at_unix_ms)
        ),
        _ => format!(
            "pending — version {} made {}; the device has version {} (acknowledged {})",
            d.desired_policy_version,
            when(d.desired_policy_at_unix_ms),
            d.applied_policy_version,
            when(d.applied_policy_at_unix_ms)
        ),
    };
    println!("Device {} — {}'s", d.id, d.child_name);
    println!("  state:        {}", device_state(d));
    println!("  policy:       {applied}");
    println!("  last heard:   {}", when(d.last_seen_at_unix_ms));
    println!("  enrolled:     {}", when(d.enrolled_at_unix_ms));
    println!(
        "  system:       {} {} (kernel {})",
        inv.os_name, inv.os_version, inv.kernel_version
    );
    println!("  model:        {}", inv.model);
    println!(
        "  battery:      {}",
        inv.battery_percent
            .map(|b| format!("{b}%"))
            .unwrap_or_else(|| "no battery".into())
    );
    println!(
        "  storage:      {} free of {}",
        bytes(inv.storage_free_bytes),
        bytes(inv.storage_total_bytes)
    );
    println!("  agent:        {}", inv.agent_version);
    println!("  enforcing:    {}", enforcement(d));
    for g in &d.guards {
        if g.reason.is_empty() {
            println!("    {} guard: {}", g.guard, guard_state(g));
        } else {
            println!("    {} guard: {} ({})", g.guard, guard_state(g), g.reason);
        }
    }
    if !d.hardening.is_empty() {
        use crate::domain::device_health::{DeviceGuards, Hardening, hardening_lines};
        let report = DeviceGuards {
            hardening: d
                .hardening
                .iter()
                .map(|h| Hardening {
                    item: h.item.clone(),
                    ok: h.ok,
                    found: h.found.clone(),
                    fix: h.fix.clone(),
                })
                .collect(),
            ..Default::default()
        };
        println!("  hardening:");
        for line in hardening_lines(&report) {
            println!("    {line}");
        }
    }
    println!("  certificate:  {}", d.certificate_fingerprint);
    if d.certificate_not_after_unix_ms > 0 {
        println!(
            "  cert expires: {} ({}: {})",
            when(d.certificate_not_after_unix_ms),
            shown::<api::CertificateStanding>(d.certificate_state, &d.certificate_standing),
            d.certificate_standing_words
        );
    } else {
        println!(
            "  cert expires: not known yet (recorded when the device next connects; it is then renewed onto the short lifetime)"
        );
    }
    if d.revoked_at_unix_ms > 0 {
        println!(
            "  revoked:      {} ({})",
            when(d.revoked_at_unix_ms),
            d.revoked_reason
        );
    }
}

/// Where the login is saved (for messages and tests).
pub fn login_file() -> PathBuf {
    client::login_path()
}

/// A member of staff's role, as a word.
fn role_of(m: &api::StaffMember) -> String {
    shown::<api::StaffRole>(m.staff_role, &m.role)
}

/// A guard's state, as a word.
fn guard_state(g: &api::GuardStatus) -> String {
    shown::<api::GuardState>(g.guard_state, &g.state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_2am_lockdown_parses() {
        Cli::try_parse_from([
            "haven",
            "lockdown",
            "Amira",
            "--reason",
            "injury-to-child",
            "--note",
            "x",
            "--channels",
            "calls,messages",
            "--until",
            "in 2h",
        ])
        .unwrap();
        assert!(
            Cli::try_parse_from([
                "haven",
                "lockdown",
                "Amira",
                "--reason",
                "injury-to-child",
                "--note",
                "x",
                "--until",
                "in 2h",
                "--review",
                "in 1h",
            ])
            .is_err()
        );
    }

    #[test]
    fn json_is_accepted_on_any_command() {
        Cli::try_parse_from(["haven", "device", "list", "--json"]).unwrap();
        Cli::try_parse_from(["haven", "--json", "child", "show", "Sam"]).unwrap();
    }
}
