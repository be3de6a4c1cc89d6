//! Bypass tests for DNS-gated egress (WB1), tried as a child would, inside two network
//! namespaces the test creates and removes: "home" (the device: the agent's resolver and its
//! nftables rules) and "net" (the internet: a web server, a proxy, a DoH stand-in, a UDP/443
//! server and the upstream resolver), joined by a veth pair. The child is a throwaway uid that
//! exists only on the test's threads (no account is created). Needs root and `nft`; skipped
//! otherwise. Nothing touches the host's firewall, resolver or interfaces.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use haven_proto::agent::v1::WebRule;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::report::MemorySink;

/// The child's throwaway account.
const CHILD: u32 = 61_234;
const WEB: &str = "10.203.0.2"; // allowed.example, and the upstream resolver
const PROXY: &str = "10.203.0.3";
const DOH: &str = "10.203.0.4";
const PINNED: &str = "10.203.0.6"; // what a blocked name would resolve to, or a hosts-file pin
const CHILDLINE: &str = "10.203.0.7";
const WEB6: &str = "fd00:203::2";
const PROXY6: &str = "fd00:203::3";

fn skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED {test}: needs root");
        return true;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test}: needs nft (the nftables package)");
        return true;
    }
    false
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// The two namespaces, always removed (with the veth pair and everything bound in them).
struct Lab {
    home: String,
    net: String,
    stop: Arc<AtomicBool>,
}

impl Lab {
    fn create() -> Option<Lab> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let lab = Lab {
            home: format!("haven-home-{pid}-{n}"),
            net: format!("haven-net-{pid}-{n}"),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (h, t) = (lab.home.as_str(), lab.net.as_str());
        let mut ok = ip(&["netns", "add", h]) && ip(&["netns", "add", t]);
        ok = ok
            && ip(&["-n", h, "link", "set", "lo", "up"])
            && ip(&["-n", t, "link", "set", "lo", "up"])
            && ip(&[
                "-n", h, "link", "add", "vh", "type", "veth", "peer", "name", "vn", "netns", t,
            ])
            && ip(&["-n", h, "addr", "add", "10.203.0.1/24", "dev", "vh"])
            && ip(&[
                "-n",
                h,
                "addr",
                "add",
                "fd00:203::1/64",
                "dev",
                "vh",
                "nodad",
            ])
            && ip(&["-n", h, "link", "set", "vh", "up"]);
        for a in [WEB, PROXY, DOH, "10.203.0.5", PINNED, CHILDLINE] {
            ok = ok && ip(&["-n", t, "addr", "add", &format!("{a}/24"), "dev", "vn"]);
        }
        for a in [WEB6, PROXY6] {
            ok = ok
                && ip(&[
                    "-n",
                    t,
                    "addr",
                    "add",
                    &format!("{a}/64"),
                    "dev",
                    "vn",
                    "nodad",
                ]);
        }
        ok = ok && ip(&["-n", t, "link", "set", "vn", "up"]);
        ok.then_some(lab)
    }

    /// Runs `f` on a thread inside `ns`, as root or (with `uid`) as that account only on this
    /// thread; sockets and threads it makes live in the namespace.
    fn run<T: Send + 'static>(
        ns: &str,
        uid: Option<u32>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path).unwrap();
            // SAFETY: setns on this thread only, with an fd we own.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            if let Some(uid) = uid {
                // SAFETY: the raw syscalls change this thread's credentials only (the libc
                // wrappers would change every thread's, the test runner's included).
                let rc = unsafe {
                    let g = libc::syscall(libc::SYS_setresgid, uid, uid, uid);
                    let u = libc::syscall(libc::SYS_setresuid, uid, uid, uid);
                    g | u
                };
                assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
            }
            f()
        })
        .join()
        .unwrap()
    }

    fn home<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        Lab::run(&self.home, None, f)
    }

    fn child<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        Lab::run(&self.home, Some(CHILD), f)
    }

    /// The internet side: "hello" on TCP 80, 443 (DoH) and 3128 (proxy) of every address,
    /// "pong" on UDP 443, and the upstream resolver on 10.203.0.2:53.
    fn start_internet(&self) {
        for port in [80, 443, 3128] {
            let stop = self.stop.clone();
            // Dual-stack: one socket for IPv4 and IPv6.
            let listener = Lab::run(&self.net, None, move || {
                TcpListener::bind(("::", port)).unwrap()
            });
            serve_hello(listener, stop);
        }
        let (udp, dns) = Lab::run(&self.net, None, || {
            (
                UdpSocket::bind("[::]:443").unwrap(),
                UdpSocket::bind((WEB, 53)).unwrap(),
            )
        });
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            udp.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(b"pong", from);
                }
            }
        });
        let stop = self.stop.clone();
        std::thread::spawn(move || upstream(&dns, &stop));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = ip(&["netns", "delete", &self.home]);
        let _ = ip(&["netns", "delete", &self.net]);
    }
}

fn serve_hello(listener: TcpListener, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"hello");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// The upstream: allowed.example and childline.org.uk have their own addresses; every other
/// name points at PINNED.
fn upstream(socket: &UdpSocket, stop: &AtomicBool) {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(q) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut r = Message::response(q.metadata.id, OpCode::Query);
        r.metadata.recursion_available = true;
        r.queries = q.queries.clone();
        if let Some(query) = q.queries.first() {
            let name = query.name().to_ascii().to_ascii_lowercase();
            let (v4, v6) = match name.trim_end_matches('.') {
                "allowed.example" => (WEB, Some(WEB6)),
                "childline.org.uk" | "www.childline.org.uk" => (CHILDLINE, None),
                _ => (PINNED, None),
            };
            let data = match query.query_type() {
                RecordType::AAAA => v6.map(|a| RData::AAAA(AAAA(a.parse().unwrap()))),
                _ => Some(RData::A(A(v4.parse().unwrap()))),
            };
            if let Some(data) = data {
                r.add_answer(Record::from_rdata(query.name().clone(), 30, data));
            }
        }
        let _ = socket.send_to(&r.to_vec().unwrap(), from);
    }
}

/// The addresses the device's resolver (127.0.0.1:53) gives for `name`, or its error code.
fn resolve(name: &str, rtype: RecordType) -> Result<Vec<IpAddr>, ResponseCode> {
    ask_dns("127.0.0.1:53".parse().unwrap(), name, rtype).unwrap_or(Err(ResponseCode::ServFail))
}

fn ask_dns(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Option<Result<Vec<IpAddr>, ResponseCode>> {
    let client = UdpSocket::bind("0.0.0.0:0").ok()?;
    client.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_str(name).ok()?, rtype));
    client.send_to(&q.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = client.recv_from(&mut buf).ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    if r.metadata.response_code != ResponseCode::NoError {
        return Some(Err(r.metadata.response_code));
    }
    Some(Ok(r
        .answers
        .iter()
        .filter_map(|a| match &a.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()))
}

/// Whether a TCP connection to `addr` gets the server's "hello".
fn hello(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"hello"
}

/// Whether a datagram to `addr` is answered.
fn pong(addr: SocketAddr) -> bool {
    let Ok(s) = UdpSocket::bind(if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.send_to(b"ping", addr);
    let mut buf = [0u8; 8];
    s.recv_from(&mut buf).is_ok()
}

fn at(addr: &str, port: u16) -> SocketAddr {
    SocketAddr::new(addr.parse().unwrap(), port)
}

fn policy(web: WebRule) -> DevicePolicy {
    DevicePolicy {
        version: 1,
        web: Some(web),
        ..Default::default()
    }
}

fn filtered() -> DevicePolicy {
    policy(WebRule {
        allowed: true,
        filter_profile: "strict".into(),
        ..Default::default()
    })
}

fn config() -> WebConfig {
    let mut config = WebConfig::new("127.0.0.1:53".parse().unwrap(), vec![at(WEB, 53)]);
    config.firewall = true;
    config.children = nft::ChildAccounts {
        uids: CHILD.to_string().parse().unwrap(),
        gids: nft::IdRanges::default(),
    };
    config
}

// clause WB1: no route around the filter. Every way a child would try: an IP-literal URL,
// a proxy by IP, DoH to an IP, UDP/443, a name pinned to a fixed address, another resolver, a
// relay on loopback; only what the filter resolved opens, and root is untouched.
#[test]
fn wb1_a_childs_traffic_reaches_only_what_the_filter_resolved() {
    let test = "wb1_a_childs_traffic_reaches_only_what_the_filter_resolved";
    if skip(test) {
        return;
    }
    let Some(lab) = Lab::create() else {
        eprintln!("SKIPPED {test}: cannot create network namespaces here");
        return;
    };
    lab.start_internet();
    let mut filter = lab.home(|| {
        let sink: Arc<dyn crate::report::BlockedSink> = Arc::new(MemorySink::default());
        WebFilter::start(config(), sink).unwrap()
    });
    // Another account's relay on the device (a proxy, a local DoH server).
    let relay = lab.home(|| TcpListener::bind("127.0.0.1:8080").unwrap());
    serve_hello(relay, lab.stop.clone());
    filter.apply(&filtered()).unwrap();

    let (allowed4, allowed6, works4, works6) = lab.child(|| {
        (
            resolve("allowed.example", RecordType::A),
            resolve("allowed.example", RecordType::AAAA),
            hello(at(WEB, 80)),
            hello(at(WEB6, 80)),
        )
    });
    assert_eq!(allowed4, Ok(vec![IpAddr::V4(WEB.parse().unwrap())]));
    assert_eq!(allowed6, Ok(vec![IpAddr::V6(WEB6.parse().unwrap())]));
    assert!(works4, "a name the filter allowed opens (IPv4)");
    assert!(works6, "a name the filter allowed opens (IPv6)");

    let tried = lab.child(|| {
        [
            ("IP-literal URL", hello(at("10.203.0.5", 80))),
            ("proxy by IP", hello(at(PROXY, 3128))),
            ("proxy by IPv6", hello(at(PROXY6, 3128))),
            ("DoH to an IP", hello(at(DOH, 443))),
            ("UDP/443 to an allowed address", pong(at(WEB, 443))),
            (
                "another resolver on an allowed address",
                ask_dns(at(WEB, 53), "anything.example", RecordType::A).is_some(),
            ),
            ("a name pinned to a fixed address", hello(at(PINNED, 80))),
            ("a relay on loopback", hello(at("127.0.0.1", 8080))),
        ]
    });
    for (what, reached) in tried {
        assert!(!reached, "{what} must be refused for the child");
    }
    // A blocked name answers NXDOMAIN and its address stays shut.
    let (blocked, reached) = lab.child(|| {
        (
            resolve("www.facebook.com", RecordType::A),
            hello(at(PINNED, 80)),
        )
    });
    assert_eq!(blocked, Err(ResponseCode::NXDomain));
    assert!(!reached);

    let root = lab.home(|| {
        [
            hello(at(PROXY, 3128)),
            hello(at(DOH, 443)),
            pong(at(WEB, 443)),
            ask_dns(at(WEB, 53), "anything.example", RecordType::A).is_some(),
            hello(at("127.0.0.1", 8080)),
        ]
    });
    assert_eq!(root, [true; 5], "root's traffic is untouched");

    // clause WB1: with the web off, only protected destinations.
    filter.apply(&policy(WebRule::default())).unwrap();
    let (refused, shut, childline, opens) = lab.child(|| {
        (
            resolve("allowed.example", RecordType::A),
            hello(at(WEB, 80)),
            resolve("www.childline.org.uk", RecordType::A),
            hello(at(CHILDLINE, 80)),
        )
    });
    assert_eq!(refused, Err(ResponseCode::Refused));
    assert!(!shut, "with the web off, an address opened before is shut");
    assert_eq!(childline, Ok(vec![IpAddr::V4(CHILDLINE.parse().unwrap())]));
    assert!(opens, "a protected destination opens with the web off");
    assert!(filter.web_health().running);
    drop(filter);
}

// clause WB1: the rules go in before the resolver starts and stay when it cannot.
#[test]
fn wb1_a_resolver_that_cannot_start_leaves_the_child_default_deny() {
    let test = "wb1_a_resolver_that_cannot_start_leaves_the_child_default_deny";
    if skip(test) {
        return;
    }
    let Some(lab) = Lab::create() else {
        eprintln!("SKIPPED {test}: cannot create network namespaces here");
        return;
    };
    lab.start_internet();
    // Something else holds the resolver's address.
    let squatter = lab.home(|| UdpSocket::bind("127.0.0.1:53").unwrap());
    let enforcer = lab.home(|| {
        let sink: Arc<dyn crate::report::BlockedSink> = Arc::new(MemorySink::default());
        match WebFilter::start(config(), sink) {
            Ok(_) => None,
            Err(e) => Some(NotRunning {
                reason: e.to_string(),
            }),
        }
    });
    let not_running = enforcer.expect("the resolver cannot bind a taken address");
    let health = not_running.web_health();
    assert!(!health.running);
    assert!(
        health
            .detail
            .starts_with("web filter not running: could not bind 127.0.0.1:53 ("),
        "{}",
        health.detail
    );
    // clause D1, D5: the controller hears it as a failed guard, with the same words.
    let reported = crate::enforcer::Enforcer::health(&not_running);
    assert!(
        matches!(&reported[0].state, crate::enforcer::GuardState::Failed(d) if d == &health.detail),
        "{reported:?}"
    );
    let (child, root) = (
        lab.child(|| [hello(at(WEB, 80)), hello(at(PROXY, 3128))]),
        lab.home(|| hello(at(WEB, 80))),
    );
    assert_eq!(child, [false, false], "the child reaches nothing");
    assert!(root, "root's traffic is untouched");
    drop(squatter);
}

// clause WB1: the boot-time rules (`haven-agent firewall`) deny the child everything.
#[test]
fn wb1_the_boot_firewall_denies_the_child_until_the_filter_answers() {
    let test = "wb1_the_boot_firewall_denies_the_child_until_the_filter_answers";
    if skip(test) {
        return;
    }
    let Some(lab) = Lab::create() else {
        eprintln!("SKIPPED {test}: cannot create network namespaces here");
        return;
    };
    lab.start_internet();
    let children = config().children;
    lab.home(move || {
        let text = nft::ruleset("127.0.0.1:53".parse().unwrap(), &children);
        nft::apply(&text).unwrap();
        // Loading it again (the agent starting after the boot unit) is not an error.
        nft::apply(&text).unwrap();
    });
    assert!(!lab.child(|| hello(at(WEB, 80))));
    assert!(lab.home(|| hello(at(WEB, 80))));
}
