//! The resolver against an upstream that misbehaves or a network that lies: random ids and
//! source ports, the next upstream when one fails, and a cap on TCP clients.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_proto::agent::v1::WebRule;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType, rdata::A};

use super::*;
use crate::report::MemorySink;

#[derive(Clone, Copy)]
enum Behaviour {
    Answer,
    ServFail,
    Silent,
}

/// (source port, id) of each query an upstream was asked.
type Seen = Arc<Mutex<Vec<(u16, u16)>>>;

/// A stand-in upstream that records each query's source port and id.
fn upstream(behaviour: Behaviour) -> (SocketAddr, Seen) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            record.lock().unwrap().push((from.port(), q.metadata.id));
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.queries = q.queries.clone();
            match behaviour {
                Behaviour::Silent => continue,
                Behaviour::ServFail => r.metadata.response_code = ResponseCode::ServFail,
                Behaviour::Answer => {
                    r.add_answer(Record::from_rdata(
                        q.queries[0].name().clone(),
                        300,
                        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                    ));
                }
            }
            let _ = socket.send_to(&r.to_vec().unwrap(), from);
        }
    });
    (addr, seen)
}

fn ask(server: SocketAddr, name: &str) -> ResponseCode {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    client.send_to(&q.to_vec().unwrap(), server).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = client.recv_from(&mut buf).expect("an answer");
    Message::from_vec(&buf[..n]).unwrap().metadata.response_code
}

fn start(upstreams: Vec<SocketAddr>, tcp_clients: usize) -> WebFilter {
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap(), upstreams);
    config.tcp_clients = tcp_clients;
    let mut web = WebFilter::start(config, Arc::new(MemorySink::default())).unwrap();
    web.apply(&DevicePolicy {
        version: 1,
        web: Some(WebRule {
            allowed: true,
            filter_profile: "strict".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    web
}

// clause WB1: an answer cannot be forged by guessing: every upstream query leaves from its
// own random port under a random id.
#[test]
fn wb1_upstream_queries_use_random_ids_and_source_ports() {
    let (up, seen) = upstream(Behaviour::Answer);
    let web = start(vec![up], 0);
    for i in 0..30 {
        assert_eq!(
            ask(web.local_addr(), &format!("n{i}.example.")),
            ResponseCode::NoError
        );
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 30);
    let ports: HashSet<u16> = seen.iter().map(|(p, _)| *p).collect();
    let ids: HashSet<u16> = seen.iter().map(|(_, id)| *id).collect();
    assert!(
        ports.len() >= 25,
        "{} source ports for 30 queries",
        ports.len()
    );
    assert!(ids.len() >= 28, "{} ids for 30 queries", ids.len());
    let steps = seen
        .windows(2)
        .filter(|w| w[1].1.wrapping_sub(w[0].1) == 1)
        .count();
    assert!(steps < 5, "ids must not count up ({steps} steps of one)");
}

// The next upstream is asked when one fails (SERVFAIL, refused or silent); the asker gets
// SERVFAIL only when every one has failed.
#[test]
fn wb1_a_failing_upstream_is_followed_by_the_next() {
    let (silent, _) = upstream(Behaviour::Silent);
    let (failing, _) = upstream(Behaviour::ServFail);
    let (good, good_seen) = upstream(Behaviour::Answer);
    // Nothing listens on a closed port: the kernel's "refused" moves on at once.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let web = start(vec![closed, failing, silent, good], 0);
    for i in 0..4 {
        // Whichever upstream comes first, the answer is the good one's.
        assert_eq!(
            ask(web.local_addr(), &format!("f{i}.example.")),
            ResponseCode::NoError
        );
    }
    assert_eq!(good_seen.lock().unwrap().len(), 4);
    let c = web.resolver().counters();
    assert!(
        c.upstream_retries
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    let all_bad = start(vec![closed, failing], 0);
    assert_eq!(
        ask(all_bad.local_addr(), "x.example."),
        ResponseCode::ServFail
    );
}

fn tcp_query(s: &mut TcpStream, name: &str) -> Option<ResponseCode> {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    let bytes = q.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).ok()?;
    s.write_all(&bytes).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; u16::from_be_bytes(len).into()];
    s.read_exact(&mut answer).ok()?;
    Some(Message::from_vec(&answer).ok()?.metadata.response_code)
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

// No thread per TCP client without bound: past the cap, new clients are closed; a place
// freed is taken again. (Blocked names, answered without an upstream.)
#[test]
fn wb1_tcp_clients_are_capped() {
    let (up, _) = upstream(Behaviour::Answer);
    let web = start(vec![up], 2);
    let addr = web.local_addr();
    let (mut a, mut b) = (tcp(addr), tcp(addr));
    assert_eq!(
        tcp_query(&mut a, "a.facebook.com."),
        Some(ResponseCode::NXDomain)
    );
    assert_eq!(
        tcp_query(&mut b, "b.facebook.com."),
        Some(ResponseCode::NXDomain)
    );
    let mut c = tcp(addr);
    assert_eq!(
        tcp_query(&mut c, "c.facebook.com."),
        None,
        "the third is closed"
    );
    drop(a);
    let mut tries = 0;
    let answered = loop {
        let mut d = tcp(addr);
        if let Some(code) = tcp_query(&mut d, "d.facebook.com.") {
            break code;
        }
        tries += 1;
        assert!(tries < 100, "a freed place is never taken again");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(answered, ResponseCode::NXDomain);
    assert!(
        web.resolver()
            .counters()
            .tcp_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(
        tcp_query(&mut b, "b2.facebook.com."),
        Some(ResponseCode::NXDomain)
    );
}

/// A DNS-over-TLS stand-in with a certificate for `dot.test`; gives its address and the
/// certificate to trust.
fn dot_upstream() -> (SocketAddr, rustls::pki_types::CertificateDer<'static>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["dot.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(tcp) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                loop {
                    let mut len = [0u8; 2];
                    if tls.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len).into()];
                    if tls.read_exact(&mut q).is_err() {
                        return;
                    }
                    let q = Message::from_vec(&q).unwrap();
                    let mut r = Message::response(q.metadata.id, OpCode::Query);
                    r.queries = q.queries.clone();
                    r.add_answer(Record::from_rdata(
                        q.queries[0].name().clone(),
                        300,
                        RData::A(A(Ipv4Addr::new(192, 0, 2, 53))),
                    ));
                    let bytes = r.to_vec().unwrap();
                    let _ = tls.write_all(&(bytes.len() as u16).to_be_bytes());
                    let _ = tls.write_all(&bytes);
                    let _ = tls.flush();
                }
            });
        }
    });
    (addr, der)
}

fn start_dot(upstream: SocketAddr, client: dot::DotClient) -> WebFilter {
    let mut config = WebConfig::new("127.0.0.1:0".parse().unwrap(), vec![upstream]);
    config.dot = Some(client);
    let mut web = WebFilter::start(config, Arc::new(MemorySink::default())).unwrap();
    web.apply(&DevicePolicy {
        version: 1,
        web: Some(WebRule {
            allowed: true,
            filter_profile: "strict".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    web
}

// DNS over TLS to the upstream, as an option: answers come over TLS from an upstream whose
// certificate names the server given, and from no other.
#[test]
fn wb1_dns_over_tls_to_the_upstream_checks_its_certificate() {
    let (up, cert) = dot_upstream();
    let web = start_dot(
        up,
        dot::DotClient::with_roots("dot.test", vec![cert.clone()], "test").unwrap(),
    );
    for name in ["one.example.", "two.example.", "one.example."] {
        assert_eq!(ask(web.local_addr(), name), ResponseCode::NoError);
    }
    assert_eq!(
        ask(web.local_addr(), "www.facebook.com."),
        ResponseCode::NXDomain,
        "still filtered"
    );
    let wrong = start_dot(
        up,
        dot::DotClient::with_roots("other.test", vec![cert], "test").unwrap(),
    );
    assert_eq!(
        ask(wrong.local_addr(), "one.example."),
        ResponseCode::ServFail,
        "a certificate for another name is refused"
    );
    assert!(matches!(
        dot::DotClient::new("dot.test", std::path::Path::new("/nonexistent/roots.pem")),
        Err(dot::DotError::Read { .. })
    ));
}
