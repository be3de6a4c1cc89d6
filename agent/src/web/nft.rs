//! Fail closed at the network level: nftables rules so that only the agent's own resolver
//! can reach DNS servers.
//!
//! The agent marks its upstream socket; every other DNS packet (UDP and TCP port 53, and 853
//! for DNS over TLS and QUIC) leaving the device is dropped, except queries to the agent's own
//! listening address. Together with the built-in DNS-over-HTTPS category this means a browser
//! or app cannot ask another resolver, and if the agent stops, names stop resolving rather
//! than going unfiltered (WB1).
//!
//! The ruleset is plain text from a pure function (tested as text); applying it runs `nft`.
//! The rules live in their own table, `inet haven_dns`, so they never touch anyone else's.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The firewall mark on the agent's upstream socket ("HV").
pub const UPSTREAM_MARK: u32 = 0x4856;

/// The table the rules live in.
pub const TABLE: &str = "haven_dns";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("the nft program is not installed (install the nftables package)")]
    Missing,
    #[error("nft refused the web filter's firewall rules: {0}")]
    Refused(String),
    #[error("could not run nft: {0}")]
    Run(std::io::Error),
}

/// The ruleset text. Applying it replaces any earlier version of the table in one
/// transaction (the `add`/`delete` pair makes deleting safe when the table is new).
pub fn ruleset(listen: SocketAddr, mark: u32) -> String {
    let (family, addr) = match listen {
        SocketAddr::V4(a) => ("ip", a.ip().to_string()),
        SocketAddr::V6(a) => ("ip6", a.ip().to_string()),
    };
    let port = listen.port();
    format!(
        "add table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority 0; policy accept;\n\
         \t\tmeta mark {mark:#x} accept comment \"the agent's own filtering resolver\"\n\
         \t\t{family} daddr {addr} udp dport {port} accept comment \"queries to the agent\"\n\
         \t\t{family} daddr {addr} tcp dport {port} accept comment \"queries to the agent\"\n\
         \t\tudp dport {{ 53, 853 }} drop comment \"DNS that would get round the filter\"\n\
         \t\ttcp dport {{ 53, 853 }} drop comment \"DNS that would get round the filter\"\n\
         \t}}\n\
         }}\n"
    )
}

/// Applies `ruleset` with `nft -f -`, optionally inside a network namespace (tests).
pub fn apply(ruleset: &str, netns: Option<&str>) -> Result<(), NftError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Command::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    let mut child = cmd
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
        stdin.write_all(ruleset.as_bytes()).map_err(NftError::Run)?;
    }
    let out = child.wait_with_output().map_err(NftError::Run)?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr);
        if text.contains("No such file") && text.contains("nft") {
            return Err(NftError::Missing);
        }
        Err(NftError::Refused(
            text.lines().next().unwrap_or("no reason given").to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // clause WB1: fail closed at the network level.
    #[test]
    fn wb1_the_ruleset_lets_only_the_agent_reach_dns() {
        let text = ruleset("127.0.0.1:53".parse().unwrap(), UPSTREAM_MARK);
        assert!(text.starts_with("add table inet haven_dns\ndelete table inet haven_dns\n"));
        assert!(text.contains("meta mark 0x4856 accept"));
        assert!(text.contains("ip daddr 127.0.0.1 udp dport 53 accept"));
        assert!(text.contains("udp dport { 53, 853 } drop"));
        assert!(text.contains("tcp dport { 53, 853 } drop"));
        let v6 = ruleset("[::1]:5353".parse().unwrap(), 7);
        assert!(v6.contains("ip6 daddr ::1 tcp dport 5353 accept"), "{v6}");
    }

    /// A network namespace made for one test and always removed, even when the test fails.
    struct Netns(String);

    impl Netns {
        fn create() -> Option<Netns> {
            let name = format!("haven-test-{}", std::process::id());
            let ok = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
            let ns = Netns(name);
            let _ = Command::new("ip")
                .args(["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"])
                .status();
            Some(ns)
        }

        /// Runs `f` on a thread that has entered the namespace; sockets it makes live there.
        fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
            let path = format!("/run/netns/{}", self.0);
            std::thread::spawn(move || {
                use std::os::fd::AsRawFd;
                let file = std::fs::File::open(&path).unwrap();
                // SAFETY: setns on this thread only, with an fd we own.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }

    /// Whether a datagram from a socket (marked or not) reaches a listener on `to`.
    fn reaches(to: &str, mark: Option<u32>) -> bool {
        use std::net::UdpSocket;
        use std::time::Duration;
        let listener = UdpSocket::bind(to).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Some(mark) = mark {
            use std::os::fd::AsRawFd;
            // SAFETY: valid fd, u32 option.
            unsafe {
                libc::setsockopt(
                    sender.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_MARK,
                    (&raw const mark).cast(),
                    4,
                )
            };
        }
        let _ = sender.send_to(b"query", to);
        let mut buf = [0u8; 16];
        listener.recv_from(&mut buf).is_ok()
    }

    // clause WB1: inside a namespace the test creates (never the host's firewall).
    #[test]
    fn wb1_in_a_namespace_only_the_agent_reaches_a_dns_server() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped wb1_in_a_namespace_only_the_agent_reaches_a_dns_server: needs root");
            return;
        }
        if Command::new("nft").arg("--version").output().is_err() {
            eprintln!(
                "skipped wb1_in_a_namespace_only_the_agent_reaches_a_dns_server: nft is not installed"
            );
            return;
        }
        let Some(ns) = Netns::create() else {
            eprintln!(
                "skipped wb1_in_a_namespace_only_the_agent_reaches_a_dns_server: cannot create a network namespace here"
            );
            return;
        };
        apply(
            &ruleset("127.0.0.1:5353".parse().unwrap(), UPSTREAM_MARK),
            Some(&ns.0),
        )
        .unwrap();
        // Applying twice replaces the table rather than failing or doubling it.
        apply(
            &ruleset("127.0.0.1:5353".parse().unwrap(), UPSTREAM_MARK),
            Some(&ns.0),
        )
        .unwrap();
        let (other, agent, marked, dot) = ns.run(|| {
            (
                reaches("127.0.0.2:53", None),
                reaches("127.0.0.1:5353", None),
                reaches("127.0.0.2:53", Some(UPSTREAM_MARK)),
                reaches("127.0.0.3:853", None),
            )
        });
        assert!(!other, "an app must not reach another resolver");
        assert!(agent, "apps reach the agent's resolver");
        assert!(marked, "the agent reaches its upstream");
        assert!(!dot, "DNS over TLS/QUIC is dropped");
    }
}
