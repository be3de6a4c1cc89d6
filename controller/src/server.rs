//! `haven serve`: the controller process — first-start setup, TLS, the gRPC services, and a
//! clean shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use haven_proto::admin::v1::{
    audit_service_server::AuditServiceServer, child_service_server::ChildServiceServer,
    device_service_server::DeviceServiceServer, emergency_service_server::EmergencyServiceServer,
    home_service_server::HomeServiceServer, plan_service_server::PlanServiceServer,
    records_service_server::RecordsServiceServer, staff_service_server::StaffServiceServer,
    violation_service_server::ViolationServiceServer,
};
use haven_proto::outgoing::server::agent_service_server::AgentServiceServer;
use tonic::transport::Server;

use crate::config::Database;
use crate::config::ServeConfig;
use crate::domain::Role;
use crate::files::{create_private_dir, write_private};
use crate::pki::Pki;
use crate::registry::Registry;
use crate::service::admin::AdminApi;
use crate::service::agent::AgentApi;
use crate::service::emergency::EmergencyApi;
use crate::service::plans::PlanApi;
use crate::service::records::RecordsApi;
use crate::service::violations::ViolationApi;
use crate::service::{Context, auth, now_ms};
use crate::store::{Actor, NewStaff, Store, postgres::PgStore, sqlite::SqliteStore};

/// The largest message the controller accepts. Policies and violation batches are a few KB;
/// anything near this is a mistake or an attack and is refused with RESOURCE_EXHAUSTED.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Streams one connection may have open at once (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// TLS handshakes in progress at once (`incoming::tls`), counted from a connection's first
/// bytes; the rest wait their turn. Generous, because a slot is held until the handshake ends
/// or times out: a client that sends a few bytes and stalls holds one for the timeout.
pub const MAX_HANDSHAKES: usize = 1024;
/// A connection that has not finished its TLS handshake by then is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The controller's TLS: its certificate, device certificates from its CA verified when
/// presented (enrollment comes before a device has one; `Sync` insists on one), HTTP/2, and
/// stateless session tickets so a device that reconnects resumes without the public-key work
/// of a full handshake. A resumed session carries the certificate it was made with, so `Sync`
/// checks that certificate's expiry itself (`service::agent`).
fn server_tls(pki: &Pki) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let unreadable = |what: &str| {
        format!("the controller's {what} cannot be read: restore the data directory from a backup")
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots
            .add(ca.with_context(|| unreadable("CA certificate"))?)
            .with_context(|| unreadable("CA certificate"))?;
    }
    let devices = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .with_context(|| unreadable("CA certificate"))?;
    let chain = CertificateDer::pem_slice_iter(pki.server_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| unreadable("server certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .with_context(|| unreadable("server key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("could not set up TLS")?
        .with_client_cert_verifier(devices)
        .with_single_cert(chain, key)
        .context("could not set up TLS with the controller's certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().context("could not set up TLS session tickets")?;
    // One ticket per connection is enough: a device resumes once per reconnect.
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    create_private_dir(dir).with_context(|| {
        format!(
            "could not create the data directory {}: choose another with --data-dir",
            dir.display()
        )
    })?;
    let (mut pki, first_start) = Pki::load_or_create(dir, &config.tls_names)?;
    pki.device_lifetime = config.device_cert_lifetime;
    // The audit trail's own key, never the CA's (R36).
    let audit_key = Arc::new(crate::audit_key::AuditKey::load_or_create(dir)?);
    let db_path = dir.join("haven.db");
    let opened = OpenStore::open(&config.database, &db_path).await?;
    let marker = dir.join(crate::backup::POSTGRES_MARKER);
    match &config.database {
        Database::Postgres(_) => write_private(
            &marker,
            b"This controller keeps its records in PostgreSQL: back them up with pg_dump.\n",
        )
        .context("could not write the PostgreSQL marker in the data directory")?,
        Database::Sqlite => {
            let _ = std::fs::remove_file(&marker);
        }
    }
    let store = opened.store();
    // After the database made its WAL and SHM files: the keys and children's records are the
    // controller's alone, whatever modes the directory came with.
    match crate::files::tighten_data_dir(dir) {
        Ok(t) if t.is_empty() => {}
        Ok(t) => {
            tracing::warn!(files = %t.join(", "), "made the data directory's secrets owner-only")
        }
        Err(e) => anyhow::bail!(
            "could not make the data directory {} private ({e}): fix its owner and modes",
            dir.display()
        ),
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "could not listen on {}: is another controller running? choose another with --listen",
                config.listen
            )
        })?;
    let local = listener.local_addr()?;
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| default_public_url(local));
    let first_login = bootstrap_admin(
        &store,
        dir,
        &public_url,
        &pki.ca_pin,
        config.staff_token_days,
    )
    .await?;
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("could not listen for metrics on {addr}: choose another with --metrics-listen")
        })?),
        None => None,
    };
    let stop = stop_signals()?;
    let database = match &config.database {
        Database::Sqlite => db_path.display().to_string(),
        Database::Postgres(url) => without_password(url),
    };
    announce(
        dir,
        &database,
        local,
        &public_url,
        &pki,
        first_start,
        first_login.as_deref(),
    );

    let pki = Arc::new(pki);
    let registry = Arc::new(Registry::default());
    // With one database file there is one controller; replicas share PostgreSQL.
    let (cluster, arrivals) = join_cluster(&config.database).await?;
    let ctx = Arc::new(Context {
        store: store.clone(),
        registry: registry.clone(),
        pki: pki.clone(),
        public_url,
        reports: Default::default(),
        watch: Default::default(),
        not_reporting_after: config.not_reporting_after,
        started_at: now_ms(),
        acks: Default::default(),
        holidays: load_holidays(config.bank_holidays_file.as_deref())?,
        limits: Default::default(),
        sessions: Default::default(),
        staff_token_days: config.staff_token_days,
        filters: Default::default(),
        first_login_file: std::sync::Mutex::new(Some(first_login_path(dir)).filter(|p| p.exists())),
        audit_key,
        reads: Default::default(),
        cluster: cluster.clone(),
    });
    ctx.watch.share_with(cluster.clone());
    if let Some(arrivals) = arrivals {
        tokio::spawn(crate::service::cluster::serve(ctx.clone(), arrivals));
    }
    let metrics = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            println!("  metrics:             http://{addr}/metrics");
        }
        tokio::spawn(crate::metrics::serve(listener, ctx.clone()))
    });
    // A signed checkpoint at start and then on schedule (R36).
    let checkpoints = {
        let ctx = ctx.clone();
        let every = config.checkpoint_every;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // Timed work runs on one replica (`crate::cluster`).
                if !ctx.cluster.is_leader() {
                    continue;
                }
                if let Err(e) = ctx.make_checkpoint().await {
                    tracing::error!(error = %e.message(), "could not sign an audit checkpoint");
                }
            }
        })
    };
    let read_flusher = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::service::audit::FLUSH_READS_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = ctx.reads.flush(ctx.store.as_ref()).await {
                    tracing::warn!(error = %e, "could not write who read which records; will retry");
                }
            }
        })
    };
    // Attempts counted over a device's budget become one summary record a minute.
    let summaries = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::service::limits::SUMMARISE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                ctx.limits
                    .write_summaries(ctx.store.as_ref(), now_ms())
                    .await;
            }
        })
    };
    let quiet_devices = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut announced = std::collections::HashSet::new();
            let mut tick = tokio::time::interval(crate::service::violations::check_every(
                ctx.not_reporting_after,
            ));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !ctx.cluster.is_leader() {
                    announced.clear();
                    continue;
                }
                crate::service::violations::check_not_reporting(&ctx, &mut announced).await;
            }
        })
    };
    // Lockdowns whose end time passed while the controller was stopped end now; after that
    // the clock is checked every second.
    let lifter = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if !ctx.cluster.is_leader() {
                    continue;
                }
                if let Err(e) = ctx.lift_due_lockdowns().await {
                    tracing::warn!(error = %e, "could not end lockdowns due to end; will retry");
                }
            }
        })
    };
    let flusher = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::service::reports::FLUSH_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = ctx.reports.flush_if_due(ctx.store.as_ref()).await {
                    tracing::warn!(error = %e, "could not write device reports; will retry");
                }
            }
        })
    };

    let tls = tokio_rustls::TlsAcceptor::from(server_tls(&pki)?);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServiceServer<AgentApi>>().await;
    // Reflection in both versions: `v1`, and `v1alpha` for the clients that speak only that
    // (older grpcurl, grpcio-reflection, Postman, Evans), so a local authority's developer can
    // explore the API with whatever tool they have.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(haven_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .context("could not build the reflection service")?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .context("could not build the reflection service (v1alpha)")?;

    let admin = || AdminApi { ctx: ctx.clone() };
    let router = Server::builder()
        // A device needs one stream (Sync) and a member of staff a handful; more in parallel
        // on one connection is someone trying to tie the controller up.
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        // Every request runs knowing its method, so a lookup of a child knows what was read.
        .layer(crate::service::audit::MethodLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            AgentServiceServer::new(AgentApi { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(HomeServiceServer::new(admin()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(ChildServiceServer::new(admin()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(DeviceServiceServer::new(admin()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(StaffServiceServer::new(admin()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(AuditServiceServer::new(admin()).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .add_service(
            PlanServiceServer::new(PlanApi { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            RecordsServiceServer::new(RecordsApi { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ViolationServiceServer::new(ViolationApi { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            EmergencyServiceServer::new(EmergencyApi { ctx: ctx.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            haven_proto::admin::v1::filter_service_server::FilterServiceServer::new(
                crate::service::filter::FilterApi { ctx: ctx.clone() },
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            haven_proto::admin::v1::lookup_service_server::LookupServiceServer::new(
                crate::service::lookup::LookupApi { ctx: ctx.clone() },
            )
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
        );

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = {
        let registry = registry.clone();
        let ctx = ctx.clone();
        async move {
            stop.await;
            tracing::info!("shutting down: closing device streams");
            // Ending every stream first lets the graceful shutdown below finish promptly.
            registry.close_all();
            ctx.watch.close();
            let _ = stopping_tx.send(());
        }
    };
    let incoming = crate::incoming::tls(
        crate::incoming::limited(listener, config.max_connections),
        tls,
        MAX_HANDSHAKES,
        HANDSHAKE_TIMEOUT,
    );
    let server = router.serve_with_incoming_shutdown(incoming, shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result.context("the controller stopped unexpectedly")?,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => tracing::warn!("connections did not close within 10 s; stopping anyway"),
    }
    flusher.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    summaries.abort();
    ctx.limits
        .write_summaries(ctx.store.as_ref(), now_ms())
        .await;
    quiet_devices.abort();
    lifter.abort();
    if let Err(e) = ctx.reports.flush(ctx.store.as_ref()).await {
        tracing::warn!(error = %e, "could not write the last device reports");
    }
    checkpoints.abort();
    read_flusher.abort();
    // Reads are never lost on a clean stop.
    if let Err(e) = ctx.reads.flush(ctx.store.as_ref()).await {
        tracing::warn!(error = %e, "could not write the last reads of children's records");
    }
    opened.close().await;
    tracing::info!("stopped; the database is closed");
    Ok(())
}

/// The bank-holiday calendar: England and Wales from the rules, corrected from the file in
/// the format of the government's bank-holidays JSON when one is configured.
fn load_holidays(file: Option<&Path>) -> anyhow::Result<crate::domain::sanction::Holidays> {
    let calendar = crate::domain::sanction::Holidays::england_and_wales();
    let Some(path) = file else {
        return Ok(calendar);
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "could not read the bank holidays file {}: check bank_holidays_file",
            path.display()
        )
    })?;
    calendar.corrected_from_json(&text).map_err(|e| {
        anyhow::anyhow!(
            "the bank holidays file {} is not in the government's bank-holidays format ({e}): fix it or remove bank_holidays_file",
            path.display()
        )
    })
}

/// Listens for SIGTERM and Ctrl-C from the moment it is made: it is made before the
/// controller says it is listening, so a stop sent straight after that line is a clean stop,
/// not the default "terminate at once".
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("could not listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("could not listen for Ctrl-C")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

fn default_public_url(local: SocketAddr) -> String {
    if local.ip().is_unspecified() {
        let host = hostname().unwrap_or_else(|| "localhost".into());
        format!("https://{host}:{}", local.port())
    } else {
        format!("https://{local}")
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn first_login_path(dir: &Path) -> PathBuf {
    dir.join("first-login.txt")
}

/// The backend `haven serve` keeps its records in, chosen by `--database`.
enum OpenStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl OpenStore {
    async fn open(database: &Database, db_path: &Path) -> anyhow::Result<Self> {
        Ok(match database {
            Database::Sqlite => {
                OpenStore::Sqlite(Arc::new(SqliteStore::open(db_path).await.with_context(
                    || format!("could not open the database {}", db_path.display()),
                )?))
            }
            Database::Postgres(url) => OpenStore::Postgres(Arc::new(
                PgStore::connect(url).await.with_context(|| {
                    format!(
                        "could not open the PostgreSQL database {}: check the server is up and \
                         the address, user and database are right",
                        without_password(url)
                    )
                })?,
            )),
        })
    }

    fn store(&self) -> Arc<dyn Store> {
        match self {
            OpenStore::Sqlite(s) => s.clone(),
            OpenStore::Postgres(s) => s.clone(),
        }
    }

    async fn close(&self) {
        match self {
            OpenStore::Sqlite(s) => s.close().await,
            OpenStore::Postgres(s) => s.close().await,
        }
    }
}

/// A database URL as it may be printed: any password replaced.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// On the very first start there is nobody who can log in: make the first administrator and
/// return the line they use to log in.
async fn bootstrap_admin(
    store: &Arc<dyn Store>,
    dir: &Path,
    public_url: &str,
    pin: &str,
    token_days: u32,
) -> anyhow::Result<Option<String>> {
    if store.count_staff().await? > 0 {
        return Ok(None);
    }
    let (token, hint) = auth::new_token();
    // The token is pasted when `haven login` asks for it, never typed on the command line,
    // where it would stay in the shell's history.
    let line = format!("haven login {public_url} --ca-pin {pin}\n  token: {token}");
    // Kept (owner-only, beside the CA key) so a scrolled-away terminal does not lock the home
    // out; the banner says to delete it once an administrator has logged in. Written before
    // the account exists, so a failed start can never leave an administrator nobody can use.
    let file = first_login_path(dir);
    write_private(&file, format!("{line}\n").as_bytes())
        .context("could not save the first login line")?;
    if let Err(e) = store
        .add_staff(
            &Actor::system(),
            NewStaff {
                name: "First administrator",
                role: Role::Admin,
                homes: &[],
                token_hash: &auth::token_hash(&token),
                token_hint: &hint,
                token_expires_at: crate::domain::tokens::expires_at(now_ms(), token_days),
            },
            now_ms(),
        )
        .await
    {
        let _ = std::fs::remove_file(&file);
        return Err(e.into());
    }
    Ok(Some(line))
}

fn announce(
    dir: &Path,
    db: &str,
    local: SocketAddr,
    public_url: &str,
    pki: &Pki,
    first_start: bool,
    first_login: Option<&str>,
) {
    let mut out = String::new();
    if first_start {
        out.push_str("Haven controller: first start — set up a new data directory.\n");
    }
    out.push_str(&format!(
        "  data directory:      {}\n  database:            {}\n  certificate authority: {} (pin {})\n  server certificate:  {}\n",
        dir.display(),
        db,
        dir.join("ca.pem").display(),
        pki.ca_pin,
        dir.join("server.pem").display(),
    ));
    match first_login {
        Some(line) => out.push_str(&format!(
            "\nThe first administrator logs in with this command, pasting the token when asked (shown only now; also saved in {}, which is removed after the first login):\n\n  {line}\n\n",
            first_login_path(dir).display()
        )),
        None if first_login_path(dir).exists() => out.push_str(&format!(
            "  first login line:    {} (removed after the first administrator logs in)\n",
            first_login_path(dir).display()
        )),
        None => {}
    }
    out.push_str(&format!(
        "Haven controller listening on https://{local} (devices and staff use {public_url})\n"
    ));
    print!("{out}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// The other controllers sharing this one's database, and what they announce: none with the
/// SQLite file, any number on PostgreSQL (`crate::cluster`).
async fn join_cluster(
    database: &Database,
) -> anyhow::Result<(
    Arc<crate::cluster::Cluster>,
    Option<tokio::sync::mpsc::Receiver<crate::cluster::Arrival>>,
)> {
    match database {
        Database::Postgres(url) => {
            let options = url
                .parse::<sqlx::postgres::PgConnectOptions>()
                .context("the database address is not a PostgreSQL URL")?;
            let (cluster, arrivals) = crate::cluster::Cluster::postgres(options)
                .await
                .context("could not join the other controllers on this database")?;
            Ok((cluster, Some(arrivals)))
        }
        _ => Ok((Arc::new(crate::cluster::Cluster::single()), None)),
    }
}
