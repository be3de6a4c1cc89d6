//! The web filter end to end inside one process: a real resolver on loopback, a stand-in
//! upstream, and DNS messages built with hickory-proto.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use haven_proto::agent::v1::{ViolationKind, WebRule};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

use super::*;
use crate::report::MemorySink;

/// Answers every A query with 192.0.2.1 (TTL 300) and counts what it was asked.
struct Upstream {
    addr: SocketAddr,
    asked: Arc<AtomicUsize>,
}

fn upstream() -> Upstream {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.recursion_available = true;
            r.queries = q.queries.clone();
            let name = q.queries[0].name().clone();
            r.add_answer(Record::from_rdata(
                name,
                300,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
            ));
            let _ = socket.send_to(&r.to_vec().unwrap(), from);
        }
    });
    Upstream { addr, asked }
}

fn ask(server: SocketAddr, name: &str) -> Message {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    client.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = client.recv_from(&mut buf).expect("an answer within 5 s");
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id, "the asker's id comes back");
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert_eq!(
        r.queries[0].name().to_string(),
        q.queries[0].name().to_string()
    );
    r
}

fn filtered(allowed: &[&str]) -> DevicePolicy {
    DevicePolicy {
        version: 4,
        web: Some(WebRule {
            allowed: true,
            filter_profile: "strict".into(),
            allowed_domains: allowed.iter().map(|s| s.to_string()).collect(),
            blocked_domains: vec!["games.example".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn start(up: &Upstream) -> (WebFilter, Arc<MemorySink>) {
    let sink = Arc::new(MemorySink::default());
    let config = WebConfig::new("127.0.0.1:0".parse().unwrap(), vec![up.addr]);
    (WebFilter::start(config, sink.clone()).unwrap(), sink)
}

// clause WB1: fail closed until a policy allows the web, and again when it is withdrawn.
#[test]
fn wb1_every_name_is_refused_while_the_web_is_off() {
    let up = upstream();
    let (mut web, sink) = start(&up);
    let addr = web.local_addr();
    assert_eq!(
        ask(addr, "bbc.co.uk.").metadata.response_code,
        ResponseCode::Refused
    );
    web.apply(&filtered(&[])).unwrap();
    assert_eq!(
        ask(addr, "bbc.co.uk.").metadata.response_code,
        ResponseCode::NoError
    );
    web.apply(&crate::core::safe_default()).unwrap();
    assert_eq!(
        ask(addr, "bbc.co.uk.").metadata.response_code,
        ResponseCode::Refused
    );
    assert!(
        sink.take().is_empty(),
        "refusals while the web is off are not violations"
    );
}

// clause WB1, WB4, D5 (reporting): blocked names get NXDOMAIN and one aggregated report;
// allowed names are answered by the upstream, cached, and never reported.
#[test]
fn wb4_blocked_names_get_nxdomain_and_are_reported_once() {
    let up = upstream();
    let (mut web, sink) = start(&up);
    let addr = web.local_addr();
    web.apply(&filtered(&["instagram.com"])).unwrap();

    for name in ["facebook.com.", "M.Facebook.com.", "www.facebook.com."] {
        assert_eq!(
            ask(addr, name).metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    assert_eq!(
        ask(addr, "dns.google.").metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(addr, "play.games.example.").metadata.response_code,
        ResponseCode::NXDomain
    );

    let allowed = ask(addr, "www.instagram.com.");
    assert_eq!(allowed.metadata.response_code, ResponseCode::NoError);
    assert_eq!(allowed.answers.len(), 1);
    let r = ask(addr, "Example.ORG.");
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(192, 0, 2, 1))));
    let before = up.asked.load(Ordering::SeqCst);
    let again = ask(addr, "example.org.");
    assert_eq!(again.answers.len(), 1);
    assert!(again.answers[0].ttl <= 300);
    assert_eq!(
        up.asked.load(Ordering::SeqCst),
        before,
        "the second answer came from the cache"
    );

    let reports = sink.take();
    let subjects: Vec<&str> = reports.iter().map(|b| b.subject.as_str()).collect();
    assert_eq!(subjects, ["facebook.com", "dns.google", "games.example"]);
    assert!(reports.iter().all(|b| b.kind == ViolationKind::WebBlocked));
    assert_eq!(reports[0].detail, "tried to visit a social networking site");
}

// clause WB1: TCP is filtered the same way.
#[test]
fn wb1_queries_over_tcp_are_filtered_too() {
    use std::io::{Read, Write};
    let up = upstream();
    let (mut web, _sink) = start(&up);
    web.apply(&filtered(&[])).unwrap();
    let mut s = std::net::TcpStream::connect(web.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_str("tiktok.com.").unwrap(),
        RecordType::A,
    ));
    let bytes = q.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut answer = vec![0u8; u16::from_be_bytes(len).into()];
    s.read_exact(&mut answer).unwrap();
    let r = Message::from_vec(&answer).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn garbage_gets_no_crash_and_a_formerr_when_there_is_a_header() {
    let up = upstream();
    let (web, _sink) = start(&up);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .send_to(b"\x12\x34garbage-garbage", web.local_addr())
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // Still answering afterwards.
    assert_eq!(
        ask(web.local_addr(), "a.example.").metadata.response_code,
        ResponseCode::Refused
    );
}

#[test]
fn no_upstream_is_a_plain_error() {
    let e = WebFilter::start(
        WebConfig::new("127.0.0.1:0".parse().unwrap(), vec![]),
        Arc::new(MemorySink::default()),
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("--dns-upstream"), "{e}");
}

// clause WB1: a filter that cannot start never means unfiltered web; staff are told.
#[test]
fn wb1_a_filter_that_cannot_start_reports_every_policy_as_not_enforced() {
    let up = upstream();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = WebConfig::new(taken.local_addr().unwrap(), vec![up.addr]);
    let mut web = start_or_report(config, Arc::new(MemorySink::default()));
    let e = web.apply(&filtered(&[])).unwrap_err();
    assert_eq!(e.area, "web");
    assert!(e.reason.contains("not running"), "{e}");
}
