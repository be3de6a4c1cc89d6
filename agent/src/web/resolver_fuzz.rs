//! Fuzz harnesses for the resolver's DNS decoding (issue 13): every query a child's app sends
//! and every answer an upstream (or someone forging one) sends goes through `answer`, the
//! answer checks, the cache and `personalise`. Properties: no panic; a reply is always a DNS
//! message Haven can read back, under the asker's id; a header that cannot be read further
//! gets FORMERR (the clear error DNS has); what is kept stays within the cache's bounds.
//!
//! CI runs a few thousand inputs each; `HAVEN_FUZZ_CASES` runs more (see `crate::fuzzing`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use haven_proto::agent::v1::{DevicePolicy, WebRule};
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use proptest::prelude::*;

use super::*;
use crate::fuzzing::{self, CheckingSink, bytes_from};
use crate::web::Catalog;

const UPSTREAM_ID: u16 = 0x5a17;

fn rules() -> Rules {
    let policy = DevicePolicy {
        version: 4,
        web: Some(WebRule {
            allowed: true,
            filter_profile: "strict".into(),
            allowed_domains: vec!["bbc.co.uk".into()],
            blocked_domains: vec!["games.example".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    Rules::for_policy(&policy, &Catalog::built_in())
}

/// A resolver's state with no threads and no sockets but the (unused) epoll set.
fn shared() -> Shared {
    Shared {
        rules: RwLock::new(Arc::new(rules())),
        generation: AtomicU64::new(1),
        cache: Cache::new(),
        reporter: Reporter::new(Arc::new(CheckingSink), Duration::from_secs(60)),
        pending: Mutex::new(HashMap::new()),
        poller: Poller::new().expect("an epoll set"),
        mark: None,
        tcp_clients: AtomicUsize::new(0),
        max_tcp_clients: MAX_TCP_CLIENTS,
        upstreams: vec!["127.0.0.1:9".parse().expect("an address")],
        dot: None,
        dot_queue: None,
        next_upstream: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        counters: Counters::default(),
        feed: None,
    }
}

fn query(name: &str, kind: RecordType, edns: bool) -> Message {
    let mut q = Message::query();
    q.metadata.id = 0x1234;
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_str(name).expect("a name"), kind));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        q.set_edns(e);
    }
    q
}

fn query_seeds() -> Vec<Vec<u8>> {
    let mut two = query("bbc.co.uk.", RecordType::A, false);
    two.add_query(Query::query(
        Name::from_str("example.org.").expect("a name"),
        RecordType::AAAA,
    ));
    let mut notify = query("example.org.", RecordType::SOA, false);
    notify.metadata.op_code = OpCode::Notify;
    [
        query("bbc.co.uk.", RecordType::A, false),
        query("Www.BBC.co.uk.", RecordType::AAAA, true),
        query("games.example.", RecordType::A, false),
        query("dns.google.", RecordType::HTTPS, true),
        query("childline.org.uk.", RecordType::A, false),
        query(
            "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.example.org.",
            RecordType::TXT,
            false,
        ),
        query(".", RecordType::NS, false),
        two,
        notify,
    ]
    .iter()
    .map(|m| m.to_vec().expect("a query"))
    .collect()
}

/// Answers to `bbc.co.uk. A` under [`UPSTREAM_ID`].
fn answer_seeds() -> Vec<Vec<u8>> {
    let name = Name::from_str("bbc.co.uk.").expect("a name");
    let response = |code: ResponseCode| {
        let mut m = Message::response(UPSTREAM_ID, OpCode::Query);
        m.metadata.recursion_available = true;
        m.metadata.response_code = code;
        m.add_query(Query::query(name.clone(), RecordType::A));
        m
    };
    let mut a = response(ResponseCode::NoError);
    a.add_answer(Record::from_rdata(
        name.clone(),
        300,
        RData::CNAME(CNAME(Name::from_str("www.bbc.net.uk.").expect("a name"))),
    ));
    a.add_answer(Record::from_rdata(
        Name::from_str("www.bbc.net.uk.").expect("a name"),
        60,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
    ));
    a.add_answer(Record::from_rdata(
        name.clone(),
        60,
        RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
    ));
    let mut nx = response(ResponseCode::NXDomain);
    nx.add_authority(Record::from_rdata(
        Name::from_str("co.uk.").expect("a name"),
        900,
        RData::SOA(SOA::new(
            Name::from_str("ns.co.uk.").expect("a name"),
            Name::from_str("hostmaster.co.uk.").expect("a name"),
            1,
            2,
            3,
            4,
            5,
        )),
    ));
    let mut big = response(ResponseCode::NoError);
    for i in 0..60 {
        big.add_answer(Record::from_rdata(
            name.clone(),
            u32::MAX - i,
            RData::A(A(Ipv4Addr::new(192, 0, 2, i as u8))),
        ));
    }
    big.add_additional(Record::from_rdata(
        name.clone(),
        5,
        RData::TXT(TXT::new(vec!["x".repeat(250); 3])),
    ));
    [a, nx, big, response(ResponseCode::ServFail)]
        .iter()
        .map(|m| m.to_vec().expect("an answer"))
        .collect()
}

/// Tokens that matter in DNS: compression pointers, label lengths, counts, types.
const DNS_TOKENS: &[&[u8]] = &[
    &[0xc0, 0x0c],
    &[0xc0, 0x00],
    &[0xc0, 0x0e],
    &[0x3f],
    &[0x40],
    &[0xff, 0xff],
    &[0x00, 0x29],
    &[0x00, 0x01, 0x00, 0x01],
    &[0x00, 0x00, 0x00, 0x00],
    &[0x00, 0x1c],
    &[0x00, 0x05],
];

fn check_query(shared: &Shared, rules: &Rules, packet: &[u8]) -> Result<(), TestCaseError> {
    match answer(shared, rules, packet) {
        Action::Reply(bytes) => {
            prop_assert!(bytes.len() <= usize::from(u16::MAX));
            let reply = Message::from_vec(&bytes);
            prop_assert!(reply.is_ok(), "a reply Haven cannot read back");
            let reply = reply.map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(
                reply.metadata.id,
                u16::from_be_bytes([packet[0], packet[1]])
            );
            if Message::from_vec(packet).is_err() {
                prop_assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
            }
        }
        Action::ReplyGated { .. } => prop_assert!(false, "gated with no egress feed"),
        Action::Forward(f) => {
            prop_assert!(12 + f.question_len <= packet.len());
            prop_assert_eq!(
                &f.key[..],
                &packet[12..12 + f.question_len].to_ascii_lowercase()[..]
            );
            prop_assert!(f.max_payload >= 512);
        }
        Action::Drop => {}
    }
    Ok(())
}

// issue 13: the resolver never panics on a query, and answers what it can read.
#[test]
fn fuzz_dns_queries_from_the_childs_apps() {
    let shared = shared();
    let rules = rules();
    // One answer in the cache, so queries for it go through `personalise` too.
    let seed = &query_seeds()[0];
    let Action::Forward(f) = answer(&shared, &rules, seed) else {
        panic!("the seed query is forwarded");
    };
    let cached = Message::from_vec(&answer_seeds()[0]).expect("an answer");
    shared.cache.insert(f.key, cached, None);
    fuzzing::run(
        "dns queries",
        bytes_from(query_seeds(), DNS_TOKENS, 600),
        |packet| check_query(&shared, &rules, &packet),
    );
}

// issue 13: an upstream's answer (or a forged one) never panics the resolver or its cache.
#[test]
fn fuzz_dns_answers_from_upstream() {
    let shared = shared();
    let rules = rules();
    let asked = query_seeds().swap_remove(0);
    let Action::Forward(f) = answer(&shared, &rules, &asked) else {
        panic!("the seed query is forwarded");
    };
    // Half the inputs get the id and question put back, so most reach the parser rather
    // than stopping at the first check.
    let inputs = (
        bytes_from(answer_seeds(), DNS_TOKENS, 1500),
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
    );
    fuzzing::run(
        "dns answers",
        inputs,
        |(mut packet, repair, protected, max_payload)| {
            if repair && packet.len() >= 12 + f.key.len() {
                packet[0..2].copy_from_slice(&UPSTREAM_ID.to_be_bytes());
                packet[12..12 + f.key.len()].copy_from_slice(&f.key);
            }
            if !answers_question(&packet, UPSTREAM_ID, &f.key) {
                return Ok(());
            }
            let _ = upstream_failed(&packet);
            let _gated = Message::from_vec(&packet)
                .ok()
                .and_then(|msg| shared.cache.insert(f.key.clone(), msg, Some(protected)));
            let question = &asked[12..12 + f.question_len];
            let bytes = personalise(packet.clone(), 0x4321, question, max_payload.max(512));
            prop_assert_eq!(&bytes[0..2], &0x4321u16.to_be_bytes()[..]);
            prop_assert!(bytes.len() <= packet.len().max(usize::from(max_payload.max(512))));
            if let Some((cached, _, ttl)) = shared.cache.get(&f.key) {
                prop_assert!(Message::from_vec(&cached).is_ok());
                prop_assert!(ttl <= MAX_TTL);
            }
            Ok(())
        },
    );
}

// The TCP path frames queries by a two-byte length, so a reply longer than that cannot be
// sent; `reply` of any readable query stays far below it.
#[test]
fn a_reply_to_the_largest_query_fits_a_tcp_frame() {
    let shared = shared();
    let mut q = query("example.org.", RecordType::A, true);
    for i in 0..200 {
        q.add_query(Query::query(
            Name::from_str(&format!("n{i}.{}.example.org.", "x".repeat(60))).expect("a name"),
            RecordType::A,
        ));
    }
    let packet = q.to_vec().expect("a query");
    check_query(&shared, &rules(), &packet).expect("a readable reply");
}

// Found by `fuzz_dns_answers_from_upstream`: the cache was bounded only by its count of
// entries, so big answers (a child's own domain can give 64 KiB ones) for many names grew it
// to gigabytes. Now it keeps at most CACHE_SHARDS × CACHE_BYTES_PER_SHARD bytes.
#[test]
fn issue13_big_upstream_answers_cannot_grow_the_cache_without_bound() {
    let cache = Cache::new();
    let mut total = 0usize;
    for i in 0..2_500u32 {
        let name = Name::from_str(&format!("n{i}.child.example.")).expect("a name");
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::TXT));
        m.add_answer(Record::from_rdata(
            name,
            3_600,
            RData::TXT(TXT::new(vec!["x".repeat(250); 160])),
        ));
        total += m.to_vec().expect("an answer").len();
        cache.insert(format!("key{i}").into_bytes(), m, None);
    }
    assert!(total > 2 * CACHE_SHARDS * CACHE_BYTES_PER_SHARD / 2);
    assert!(
        cache.bytes() <= CACHE_SHARDS * CACHE_BYTES_PER_SHARD,
        "the cache holds {} bytes",
        cache.bytes()
    );
}
