//! The web filter (WB1, WB4): a filtering DNS resolver on the device, its lists and
//! categories, the pure decision for each name, and the firewall rules that keep other
//! resolvers out.
//!
//! - [`list`] reads domain lists and matches names by suffix in an FST.
//! - [`categories`] holds the built-in categories (social networking, DNS over HTTPS) and
//!   the home's own lists.
//! - [`filter`] decides, for the policy in force, whether a name is refused, blocked or
//!   resolved (pure).
//! - [`resolver`] answers DNS with `hickory-proto` messages and forwards allowed names.
//! - [`nft`] gates the child's traffic: only addresses the resolver gave out, protected
//!   destinations and the agent's own resolver (DNS-gated egress).
//! - [`egress`] feeds the resolver's answers into those firewall sets, off the answer path.
//!
//! [`WebFilter`] ties them together as an [`Enforcer`]: it starts with the web off (every
//! name refused) and each policy swaps the rules in one step while the resolver keeps
//! running.

pub mod categories;
pub mod dot;
pub mod egress;
pub mod filter;
pub mod list;
pub mod nft;
pub mod received;
pub mod resolver;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::enforcer::{DevicePolicy, EnforceError, Enforcer};
use crate::report::BlockedSink;

pub use categories::Catalog;
pub use filter::{Rules, Verdict};
pub use list::DomainSet;
pub use received::ReceivedLists;
pub use resolver::{Resolver, ResolverConfig};

/// Upstreams used when none is configured (Quad9, which also blocks known malware).
pub const DEFAULT_UPSTREAMS: &[&str] = &["9.9.9.9:53", "149.112.112.112:53"];
/// The same over DNS over TLS (`--dns-upstream-tls dns.quad9.net`).
pub const DEFAULT_TLS_UPSTREAMS: &[&str] = &["9.9.9.9:853", "149.112.112.112:853"];

/// How the web filter runs.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where the resolver answers (the device's resolver setting points here).
    pub listen: SocketAddr,
    /// Where allowed names are resolved.
    pub upstreams: Vec<SocketAddr>,
    /// A folder of category lists (`<category>/domains` or `<category>.txt`).
    pub lists_dir: Option<PathBuf>,
    /// Extra list files, each added to the category `blocklist` (the benchmark's list).
    pub extra_lists: Vec<PathBuf>,
    /// Threads answering UDP queries.
    pub workers: usize,
    /// DNS-over-TCP clients served at once (0: the resolver's default cap).
    pub tcp_clients: usize,
    /// Ask the upstreams over TLS (their addresses then use port 853).
    pub dot: Option<dot::DotClient>,
    /// One report per blocked name per this long.
    pub report_window: Duration,
    /// Install the nftables rules that gate the child's traffic to what the resolver allowed,
    /// and feed them (root only; off in tests, which must never touch the host's firewall).
    pub firewall: bool,
    /// The accounts whose traffic is gated.
    pub children: nft::ChildAccounts,
    /// The category lists the controller sent (kept in the state folder), on top of the
    /// built-in ones and the lists folder.
    pub received: Option<Arc<ReceivedLists>>,
}

impl WebConfig {
    pub fn new(listen: SocketAddr, upstreams: Vec<SocketAddr>) -> WebConfig {
        WebConfig {
            listen,
            upstreams,
            lists_dir: None,
            extra_lists: Vec::new(),
            workers: 1,
            tcp_clients: 0,
            dot: None,
            report_window: Duration::from_secs(60),
            firewall: false,
            children: nft::ChildAccounts::default(),
            received: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    List(#[from] list::ListError),
    #[error(
        "could not bind {addr} ({source}); choose another --dns-listen address, or run as root for port 53"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the web filter has no upstream resolver; give one with --dns-upstream")]
    NoUpstream,
    #[error(transparent)]
    Firewall(#[from] nft::NftError),
}

/// Whether the web filter is doing its job, for staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebHealth {
    pub running: bool,
    /// One line for staff: what is wrong, or what is in force.
    pub detail: String,
}

/// The web filter as an enforcer.
pub struct WebFilter {
    /// The built-in categories and the lists folder: what the device has without the
    /// controller's lists.
    base: Catalog,
    received: Option<Arc<ReceivedLists>>,
    /// `base` with the received lists: what rules are built from.
    catalog: Catalog,
    /// The policy last applied, applied again when the lists change.
    last_policy: Option<DevicePolicy>,
    /// Categories the policy names that this device has no list for yet: the web stays off
    /// until they arrive (fail closed), and staff are told.
    waiting: Vec<String>,
    resolver: Resolver,
    /// What the web part of the last policy was, so a change empties the allowed sets.
    last_web: Option<String>,
}

impl WebFilter {
    /// Loads the lists and starts the resolver with the web off; `apply` then puts a policy
    /// in force.
    pub fn start(config: WebConfig, sink: Arc<dyn BlockedSink>) -> Result<WebFilter, WebError> {
        // clause WB1: the rules go in before anything that can fail, and stay if it does: a
        // resolver that cannot start leaves the child's traffic default-deny, not open. Loaded
        // on a thread of its own while the lists load, and waited for before the resolver
        // answers, so it costs no start-up time.
        let firewall = config.firewall.then(|| {
            let text = nft::ruleset(config.listen, &config.children);
            std::thread::Builder::new()
                .name("web-firewall".into())
                .spawn(move || nft::apply(&text))
        });
        let catalog = load_catalog(&config);
        match firewall {
            Some(Ok(thread)) => thread
                .join()
                .map_err(|_| nft::NftError::Refused("the firewall thread stopped".into()))??,
            Some(Err(_)) => nft::apply(&nft::ruleset(config.listen, &config.children))?,
            None => {}
        }
        let base = catalog?;
        let catalog = with_received(&base, config.received.as_deref());
        if config.upstreams.is_empty() {
            return Err(WebError::NoUpstream);
        }
        let resolver = Resolver::start(
            ResolverConfig {
                listen: config.listen,
                upstreams: config.upstreams.clone(),
                workers: config.workers,
                report_window: config.report_window,
                upstream_mark: config.firewall.then_some(nft::UPSTREAM_MARK),
                tcp_clients: config.tcp_clients,
                dot: config.dot.clone(),
                egress: config.firewall,
            },
            Rules::web_off(&catalog),
            sink,
        )
        .map_err(|source| WebError::Listen {
            addr: config.listen,
            source,
        })?;
        Ok(WebFilter {
            base,
            received: config.received.clone(),
            catalog,
            resolver,
            last_web: None,
            last_policy: None,
            waiting: Vec::new(),
        })
    }

    /// Whether the filter runs, and with the firewall in step; one line for staff.
    pub fn web_health(&self) -> WebHealth {
        match self.resolver.feed().and_then(egress::Feed::problem) {
            Some(problem) => WebHealth {
                running: true,
                detail: format!(
                    "web filter running, weakened: the firewall could not be updated ({problem}); sites may not open"
                ),
            },
            None => WebHealth {
                running: true,
                detail: format!("web filter running on {}", self.local_addr()),
            },
        }
    }

    /// Where the resolver answers.
    pub fn local_addr(&self) -> SocketAddr {
        self.resolver.local_addr()
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

impl Enforcer for WebFilter {
    fn name(&self) -> &'static str {
        "web"
    }

    /// Armed while the resolver answers and the firewall takes its updates; weakened (with the
    /// reason) when the firewall could not be updated.
    fn health(&self) -> Vec<crate::enforcer::GuardHealth> {
        use crate::enforcer::{GuardHealth, GuardState};
        let h = self.web_health();
        let state = if !h.running {
            GuardState::Failed(h.detail)
        } else if !self.waiting.is_empty() {
            GuardState::Weakened(format!(
                "waiting for the filter lists for: {}; the web stays off until they arrive",
                self.waiting.join(", ")
            ))
        } else if h.detail.contains("weakened") {
            GuardState::Weakened(h.detail)
        } else {
            GuardState::Armed
        };
        vec![GuardHealth::new("web", state)]
    }

    /// Builds the new rules here, on the caller's thread, and swaps them in whole: queries
    /// never see half a policy. A category the device has no list for is reported (the rest
    /// is still enforced).
    fn apply(&mut self, policy: &DevicePolicy) -> Result<(), EnforceError> {
        self.last_policy = Some(policy.clone());
        let mut rules = Rules::for_policy(policy, &self.catalog);
        // clause WB1, WB4: a category the policy blocks with no list here yet (the controller
        // is still sending it) must not look blocked while it is not: the web stays off until
        // the list arrives, and the guard says so to staff.
        self.waiting = std::mem::take(&mut rules.missing_categories);
        if !self.waiting.is_empty() && rules.web_on() {
            tracing::warn!(
                "web filter: no list yet for {}; the web stays off until it arrives",
                self.waiting.join(", ")
            );
            rules = Rules::web_off(&self.catalog);
            rules.summary = format!(
                "web off until the filter lists arrive for: {}",
                self.waiting.join(", ")
            );
        }
        tracing::info!("web filter: {}", rules.summary);
        // clause WB1: addresses opened under the old rules close when the web part of the
        // policy changes (turned off, a site blocked), not when their TTL runs out.
        let web = format!(
            "{}|{:?}",
            rules.web_on(),
            policy.web.as_ref().map(prost::Message::encode_to_vec)
        );
        self.resolver.set_rules(rules);
        if self.last_web.as_ref() != Some(&web) {
            if let Some(feed) = self.resolver.feed() {
                feed.flush_allowed();
            }
            self.last_web = Some(web);
        }
        Ok(())
    }

    /// Takes up the lists the controller sent and applies the policy in force again.
    fn lists_changed(&mut self) {
        self.catalog = with_received(&self.base, self.received.as_deref());
        if let Some(policy) = self.last_policy.clone() {
            let _ = self.apply(&policy);
        }
    }
}

/// `base` with the lists the controller sent.
fn with_received(base: &Catalog, received: Option<&ReceivedLists>) -> Catalog {
    let mut catalog = base.clone();
    for (category, set) in received.map(ReceivedLists::sets).unwrap_or_default() {
        catalog.add_received(&category, set);
    }
    catalog
}

/// The built-in categories, the lists folder and the extra lists of `config`.
fn load_catalog(config: &WebConfig) -> Result<Catalog, WebError> {
    let mut catalog = match &config.lists_dir {
        Some(dir) => {
            let (catalog, imported) = Catalog::load(dir)?;
            for i in imported {
                tracing::info!(
                    "web filter: {} names for {} from {} ({} lines skipped)",
                    i.stats.domains,
                    i.category,
                    i.path,
                    i.stats.skipped
                );
            }
            catalog
        }
        None => Catalog::built_in(),
    };
    for path in &config.extra_lists {
        let (set, stats) = DomainSet::load(path)?;
        tracing::info!(
            "web filter: {} names from {} ({} lines skipped)",
            stats.domains,
            path.display(),
            stats.skipped
        );
        catalog.extend("blocklist", set);
    }
    Ok(catalog)
}

/// Stands in for a web filter that could not start (its address taken, say): the agent keeps
/// running its other guards, and every policy is reported as not enforced for the web, so
/// staff see it. Names still do not resolve through the agent, and with `--dns-firewall`
/// nothing else resolves them either (fail closed).
#[derive(Debug)]
pub struct NotRunning {
    pub reason: String,
}

impl NotRunning {
    /// "web filter not running: could not bind 127.0.0.1:53 (…)".
    pub fn web_health(&self) -> WebHealth {
        WebHealth {
            running: false,
            detail: format!("web filter not running: {}", self.reason),
        }
    }
}

impl Enforcer for NotRunning {
    fn name(&self) -> &'static str {
        "web"
    }

    /// D1, D5: staff see "web filter not running: …", never a device that only says it filters.
    fn health(&self) -> Vec<crate::enforcer::GuardHealth> {
        vec![crate::enforcer::GuardHealth::new(
            "web",
            crate::enforcer::GuardState::Failed(self.web_health().detail),
        )]
    }

    fn apply(&mut self, _policy: &DevicePolicy) -> Result<(), EnforceError> {
        Err(EnforceError::new(
            "web",
            format!("the web filter is not running ({})", self.reason),
        ))
    }
}

/// Starts the web filter, or, when it cannot start, a [`NotRunning`] stand-in that says why
/// in every policy acknowledgement.
pub fn start_or_report(config: WebConfig, sink: Arc<dyn BlockedSink>) -> Box<dyn Enforcer> {
    match WebFilter::start(config, sink) {
        Ok(filter) => Box::new(filter),
        Err(e) => {
            tracing::error!("{e}");
            Box::new(NotRunning {
                reason: e.to_string(),
            })
        }
    }
}

/// Counts blocked attempts and keeps nothing (the `dns-filter` benchmark command).
#[derive(Debug, Default)]
pub struct CountingSink(pub std::sync::atomic::AtomicU64);

impl BlockedSink for CountingSink {
    fn blocked(&self, _record: crate::report::Blocked) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod egress_tests;
#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod tests;
