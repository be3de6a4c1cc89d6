//! DNS-gated egress (WB1): nftables rules under which a child's account reaches only the
//! addresses the filtering resolver has just given it, and protected destinations.
//!
//! For the child's accounts (a list of uids and gids; root and system accounts are never
//! matched) every outbound packet goes through the `child` chain:
//! - DNS only to the agent's own resolver: no other resolver, on the device or off it, and no
//!   DNS over TLS/QUIC (853) or HTTP/3 and DNS over QUIC (UDP 443) to anyone;
//! - nothing else on loopback, so relays run by other accounts (proxies, local DoH servers,
//!   systemd-resolved) cannot be used to get round the filter;
//! - otherwise only addresses in the `protected4/6` sets (Childline and the other protected
//!   destinations, reachable whatever the policy) and the `allowed4/6` sets (answers to
//!   names the filter allowed), each element with a timeout from the answer's TTL.
//!
//! The resolver fills the sets ([`super::egress`]); the ruleset here only creates them, so it
//! can be loaded at boot (`haven-agent firewall`, before any network) and is default-deny until
//! the resolver answers. Loading it again keeps the sets' elements and replaces the rules in
//! one transaction, so a restarting agent never opens a gap. The rules live in their own
//! table, `inet haven_web`; nothing else of the host's firewall is touched.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::str::FromStr;

/// The firewall mark on the agent's upstream socket ("HV"), kept so the agent's own queries
/// are told apart in packet captures; the agent runs as root, which the rules never match.
pub const UPSTREAM_MARK: u32 = 0x4856;

/// The table the rules live in.
pub const TABLE: &str = "haven_web";

/// The table of earlier versions (DNS drops only), removed when the new one is loaded.
const OLD_TABLE: &str = "haven_dns";

/// The accounts filtered when none are given: every ordinary login account. Root (0), the
/// system accounts below 1000 and `nobody` (65534) are outside it.
pub const DEFAULT_CHILD_UIDS: &str = "1000-59999";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("the nft program is not installed (install the nftables package)")]
    Missing,
    #[error("nft refused the web filter's firewall rules: {0}")]
    Refused(String),
    #[error("could not run nft: {0}")]
    Run(std::io::Error),
}

/// A bad `--web-child-uids` or `--web-child-gids` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountsError {
    #[error("\"{0}\" is not an account id or range; write ids like 1000 or 1000-1999")]
    NotAnId(String),
    #[error("the range \"{0}\" runs backwards; write the smaller id first")]
    Backwards(String),
    #[error("\"{0}\" includes 0, which is root; root is never filtered, so start at 1 or above")]
    Root(String),
}

/// Account ids (uids or gids) as inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdRanges(Vec<(u32, u32)>);

impl IdRanges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `id` is one of them.
    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&id))
    }

    /// The nftables anonymous set: `{ 1000-59999, 61000 }`.
    fn nft(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        format!("{{ {} }}", parts.join(", "))
    }
}

impl std::fmt::Display for IdRanges {
    /// The form it is written in: `1000-1999,2005`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.nft();
        let inner = inner.trim_start_matches("{ ").trim_end_matches(" }");
        f.write_str(&inner.replace(", ", ","))
    }
}

impl FromStr for IdRanges {
    type Err = AccountsError;

    /// Comma-separated ids and ranges: `1000-1999,2005`. An empty text is no accounts.
    fn from_str(text: &str) -> Result<IdRanges, AccountsError> {
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((lo, hi)) => (lo.trim(), hi.trim()),
                None => (part, part),
            };
            let parse = |s: &str| {
                s.parse::<u32>()
                    .map_err(|_| AccountsError::NotAnId(part.to_string()))
            };
            let (lo, hi) = (parse(lo)?, parse(hi)?);
            if lo > hi {
                return Err(AccountsError::Backwards(part.to_string()));
            }
            if lo == 0 {
                return Err(AccountsError::Root(part.to_string()));
            }
            ranges.push((lo, hi));
        }
        Ok(IdRanges(ranges))
    }
}

/// Whose traffic is gated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildAccounts {
    pub uids: IdRanges,
    pub gids: IdRanges,
}

impl Default for ChildAccounts {
    fn default() -> ChildAccounts {
        ChildAccounts {
            uids: DEFAULT_CHILD_UIDS.parse().unwrap_or_default(),
            gids: IdRanges::default(),
        }
    }
}

/// The ruleset text for a resolver answering on `resolver`. Safe to load again and again: the
/// sets keep their elements, the chains are flushed and refilled in the same transaction.
pub fn ruleset(resolver: SocketAddr, children: &ChildAccounts) -> String {
    let t = TABLE;
    let port = resolver.port();
    // The one thing on loopback a child may reach.
    let to_resolver = match resolver.ip() {
        ip if ip.is_unspecified() => String::new(),
        IpAddr::V4(a) => format!("ip daddr {a} "),
        IpAddr::V6(a) => format!("ip6 daddr {a} "),
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "add table inet {OLD_TABLE}\n\
         delete table inet {OLD_TABLE}\n\
         add table inet {t}\n\
         add set inet {t} allowed4 {{ type ipv4_addr; flags timeout; }}\n\
         add set inet {t} allowed6 {{ type ipv6_addr; flags timeout; }}\n\
         add set inet {t} protected4 {{ type ipv4_addr; flags timeout; }}\n\
         add set inet {t} protected6 {{ type ipv6_addr; flags timeout; }}\n\
         add chain inet {t} output {{ type filter hook output priority 0; policy accept; }}\n\
         add chain inet {t} child\n\
         add chain inet {t} refuse\n\
         flush chain inet {t} output\n\
         flush chain inet {t} child\n\
         flush chain inet {t} refuse\n"
    );
    if !children.uids.is_empty() {
        let _ = writeln!(
            s,
            "add rule inet {t} output meta skuid {} jump child comment \"the child's accounts\"",
            children.uids.nft()
        );
    }
    if !children.gids.is_empty() {
        let _ = writeln!(
            s,
            "add rule inet {t} output meta skgid {} jump child comment \"the child's groups\"",
            children.gids.nft()
        );
    }
    let _ = write!(
        s,
        "add rule inet {t} child oifname \"lo\" {to_resolver}udp dport {port} accept comment \"the agent's resolver\"\n\
         add rule inet {t} child oifname \"lo\" {to_resolver}tcp dport {port} accept comment \"the agent's resolver\"\n\
         add rule inet {t} child udp dport {{ 53, 443, 853 }} goto refuse comment \"other resolvers, DNS over TLS or QUIC, HTTP/3\"\n\
         add rule inet {t} child tcp dport {{ 53, 853 }} goto refuse comment \"other resolvers, DNS over TLS\"\n\
         add rule inet {t} child oifname \"lo\" goto refuse comment \"relays on this device: proxies, other resolvers\"\n\
         add rule inet {t} child ip daddr @protected4 accept comment \"protected destinations\"\n\
         add rule inet {t} child ip6 daddr @protected6 accept comment \"protected destinations\"\n\
         add rule inet {t} child ip daddr @allowed4 accept comment \"answers the filter allowed\"\n\
         add rule inet {t} child ip6 daddr @allowed6 accept comment \"answers the filter allowed\"\n\
         add rule inet {t} child goto refuse comment \"not resolved through the filter\"\n\
         add rule inet {t} refuse meta l4proto tcp reject with tcp reset\n\
         add rule inet {t} refuse reject with icmpx admin-prohibited\n"
    );
    s
}

/// Empties the sets of allowed answers (the web turned off, or the policy changed); the
/// protected sets stay.
pub fn flush_allowed() -> String {
    format!("flush set inet {TABLE} allowed4\nflush set inet {TABLE} allowed6\n")
}

/// One address for a set, with the seconds it stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    pub addr: IpAddr,
    pub protected: bool,
    pub timeout_secs: u32,
}

/// Adds (or refreshes) elements. Add, delete, add: an element already there gets the new
/// timeout on every kernel (older kernels ignore a second add), and the first add makes the
/// delete safe for an element that is not.
pub fn add_elements(elements: &[Element]) -> String {
    let mut by_set: [(&str, Vec<&Element>); 4] = [
        ("allowed4", Vec::new()),
        ("allowed6", Vec::new()),
        ("protected4", Vec::new()),
        ("protected6", Vec::new()),
    ];
    for e in elements {
        let i = usize::from(e.protected) * 2 + usize::from(e.addr.is_ipv6());
        by_set[i].1.push(e);
    }
    let mut s = String::new();
    for (set, list) in by_set.iter().filter(|(_, l)| !l.is_empty()) {
        let with_timeout: Vec<String> = list
            .iter()
            .map(|e| format!("{} timeout {}s", e.addr, e.timeout_secs))
            .collect();
        let bare: Vec<String> = list.iter().map(|e| e.addr.to_string()).collect();
        let (with_timeout, bare) = (with_timeout.join(", "), bare.join(", "));
        let _ = write!(
            s,
            "add element inet {TABLE} {set} {{ {with_timeout} }}\n\
             delete element inet {TABLE} {set} {{ {bare} }}\n\
             add element inet {TABLE} {set} {{ {with_timeout} }}\n"
        );
    }
    s
}

/// Runs `nft -f -` with `text` as one transaction, in the calling thread's network namespace
/// (tests enter one of their own before calling).
pub fn apply(text: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NftError::Missing
            } else {
                NftError::Run(e)
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(NftError::Run)?;
    }
    let out = child.wait_with_output().map_err(NftError::Run)?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        Err(NftError::Refused(
            text.lines()
                .find(|l| l.contains("Error"))
                .or_else(|| text.lines().next())
                .unwrap_or("no reason given")
                .to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // clause WB1: DNS-gated egress for the child's accounts only.
    #[test]
    fn wb1_the_ruleset_gates_only_the_childs_accounts() {
        let text = ruleset("127.0.0.1:53".parse().unwrap(), &ChildAccounts::default());
        assert!(text.starts_with("add table inet haven_dns\ndelete table inet haven_dns\n"));
        assert!(text.contains("meta skuid { 1000-59999 } jump child"));
        assert!(!text.contains("skgid"), "no groups unless given");
        assert!(text.contains("oifname \"lo\" ip daddr 127.0.0.1 udp dport 53 accept"));
        assert!(text.contains("udp dport { 53, 443, 853 } goto refuse"));
        assert!(text.contains("child ip daddr @allowed4 accept"));
        assert!(text.contains("child ip6 daddr @protected6 accept"));
        assert!(text.contains("child goto refuse"));
        // The sets are created, never flushed, by loading the rules again.
        assert!(!text.contains("flush set"));
        let v6 = ruleset(
            "[::1]:5353".parse().unwrap(),
            &ChildAccounts {
                uids: "1001,2000-2999".parse().unwrap(),
                gids: "3000".parse().unwrap(),
            },
        );
        assert!(v6.contains("ip6 daddr ::1 tcp dport 5353 accept"), "{v6}");
        assert!(
            v6.contains("meta skuid { 1001, 2000-2999 } jump child"),
            "{v6}"
        );
        assert!(v6.contains("meta skgid { 3000 } jump child"), "{v6}");
    }

    // clause WB1: root is never filtered; bad ids say what to write instead.
    #[test]
    fn wb1_account_lists_refuse_root_and_say_what_is_wrong() {
        assert_eq!(
            "0-999".parse::<IdRanges>(),
            Err(AccountsError::Root("0-999".into()))
        );
        assert_eq!(
            "2000-1000".parse::<IdRanges>(),
            Err(AccountsError::Backwards("2000-1000".into()))
        );
        assert_eq!(
            "kid".parse::<IdRanges>(),
            Err(AccountsError::NotAnId("kid".into()))
        );
        let r: IdRanges = " 1000-1999 , 2500 ".parse().unwrap();
        assert!(r.contains(1000) && r.contains(2500) && !r.contains(0) && !r.contains(2000));
        assert!("".parse::<IdRanges>().unwrap().is_empty());
    }

    #[test]
    fn wb1_elements_are_added_with_their_timeout_and_refreshed() {
        let text = add_elements(&[
            Element {
                addr: "192.0.2.1".parse().unwrap(),
                protected: false,
                timeout_secs: 300,
            },
            Element {
                addr: "2001:db8::1".parse().unwrap(),
                protected: true,
                timeout_secs: 600,
            },
        ]);
        assert!(text.contains("add element inet haven_web allowed4 { 192.0.2.1 timeout 300s }"));
        assert!(text.contains("delete element inet haven_web allowed4 { 192.0.2.1 }"));
        assert!(
            text.contains("add element inet haven_web protected6 { 2001:db8::1 timeout 600s }")
        );
        assert!(!text.contains("allowed6") && !text.contains("protected4"));
        assert_eq!(add_elements(&[]), "");
    }
}
