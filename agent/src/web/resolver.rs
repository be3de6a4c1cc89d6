//! The filtering resolver: answers DNS on a local address, refuses or blocks what the rules
//! say, and forwards the rest to the configured upstreams, with an answer cache.
//!
//! Plain threads on blocking sockets rather than async tasks: the hot path is "receive,
//! decide, answer from the cache, send", and a thread per socket does that with no scheduler
//! in between. Forwarding never blocks a worker: queries go out on one upstream socket under
//! fresh ids, and one thread matches the answers and sends them to whoever asked.
//!
//! Messages are parsed and built with `hickory-proto`. The only bytes touched directly are the
//! message id (the first two bytes) and the question section of a cached answer, which is
//! replaced by the asker's own question so the letters' case matches what was asked.
//!
//! Privacy: names that resolve are never logged or reported; only blocked attempts are, and
//! only once per name per window (one page reload is not fifty violations).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use haven_proto::agent::v1::ViolationKind;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};

use super::dot::DotClient;
use super::egress::{Feed, Gated, Then};
use super::filter::{Rules, Verdict, describe};
use super::upstream::{self, Poller};
use crate::report::{Blocked, BlockedSink};

/// How long a forwarded query waits for one upstream before the next is asked; the asker
/// gets SERVFAIL only when every upstream has failed.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Queries in flight upstream at once (each holds a socket); beyond this a query is dropped
/// and the asker retries.
const MAX_IN_FLIGHT: usize = 8_192;
/// DNS-over-TCP clients served at once; more are closed as they connect (a thread each).
pub const MAX_TCP_CLIENTS: usize = 64;
/// Threads asking upstreams over TLS, and the queries that may wait for them.
const DOT_THREADS: usize = 4;
const DOT_QUEUE: usize = 4_096;
/// How often blocked threads look up to see whether they should stop.
const POLL: Duration = Duration::from_millis(100);
/// Cache bounds: entries per shard and shards.
const CACHE_SHARDS: usize = 16;
const CACHE_PER_SHARD: usize = 16_384;
/// And bytes per shard (64 MiB in all): a count alone let answers of up to 64 KiB each, from
/// an upstream a child controls, grow the cache to gigabytes (found by the fuzz harness).
const CACHE_BYTES_PER_SHARD: usize = 4 << 20;
/// Answers with no TTL to go by (an empty NXDOMAIN) are kept this long.
const DEFAULT_NEGATIVE_TTL: u32 = 30;
const MAX_TTL: u32 = 86_400;

/// How the resolver runs.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub listen: SocketAddr,
    pub upstreams: Vec<SocketAddr>,
    /// Threads answering UDP queries.
    pub workers: usize,
    /// One report per blocked name per this long.
    pub report_window: Duration,
    /// A firewall mark for the upstream socket, so nftables can let the agent's own queries
    /// out and drop everyone else's (needs root; ignored when it cannot be set).
    pub upstream_mark: Option<u32>,
    /// DNS-over-TCP clients served at once (0: [`MAX_TCP_CLIENTS`]).
    pub tcp_clients: usize,
    /// Ask the upstreams over TLS (port 853) instead of plain UDP.
    pub dot: Option<DotClient>,
    /// Feed every allowed answer's addresses to the egress sets before answering (the
    /// device's firewall then lets the child reach only those, WB1).
    pub egress: bool,
}

/// Counts for the benchmark and logs; never names.
#[derive(Debug, Default)]
pub struct Counters {
    pub queries: AtomicU64,
    pub blocked: AtomicU64,
    pub refused: AtomicU64,
    pub cache_hits: AtomicU64,
    pub forwarded: AtomicU64,
    pub upstream_failures: AtomicU64,
    /// Upstreams that failed and were followed by the next one.
    pub upstream_retries: AtomicU64,
    /// TCP clients turned away at the cap.
    pub tcp_refused: AtomicU64,
}

struct Shared {
    rules: RwLock<Arc<Rules>>,
    generation: AtomicU64,
    cache: Cache,
    reporter: Reporter,
    pending: Mutex<HashMap<u16, Pending>>,
    poller: Poller,
    mark: Option<u32>,
    tcp_clients: AtomicUsize,
    max_tcp_clients: usize,
    upstreams: Vec<SocketAddr>,
    /// With DNS over TLS: the client, and the queue of the threads that use it.
    dot: Option<DotClient>,
    dot_queue: Option<SyncSender<Outgoing>>,
    next_upstream: AtomicU64,
    stop: AtomicBool,
    counters: Counters,
    feed: Option<Feed>,
}

/// A running resolver; stops (and joins its threads) when dropped.
pub struct Resolver {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    local: SocketAddr,
}

impl Resolver {
    pub fn start(
        config: ResolverConfig,
        rules: Rules,
        sink: Arc<dyn BlockedSink>,
    ) -> std::io::Result<Resolver> {
        let udp = UdpSocket::bind(config.listen)?;
        let local = udp.local_addr()?;
        udp.set_read_timeout(Some(POLL))?;
        upstream::raise_file_limit();
        let dot_queue = config
            .dot
            .as_ref()
            .map(|_| std::sync::mpsc::sync_channel::<Outgoing>(DOT_QUEUE));
        let shared = Arc::new(Shared {
            rules: RwLock::new(Arc::new(rules)),
            generation: AtomicU64::new(1),
            cache: Cache::new(),
            reporter: Reporter::new(sink, config.report_window),
            pending: Mutex::new(HashMap::new()),
            poller: Poller::new()?,
            mark: config.upstream_mark,
            tcp_clients: AtomicUsize::new(0),
            max_tcp_clients: if config.tcp_clients == 0 {
                MAX_TCP_CLIENTS
            } else {
                config.tcp_clients
            },
            upstreams: config.upstreams.clone(),
            dot: config.dot.clone(),
            dot_queue: dot_queue.as_ref().map(|(tx, _)| tx.clone()),
            next_upstream: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            feed: if config.egress {
                Some(Feed::start(udp.try_clone()?, |text| {
                    super::nft::apply(text)
                })?)
            } else {
                None
            },
        });
        let mut threads = Vec::new();
        for i in 0..config.workers.max(1) {
            let (shared, udp) = (shared.clone(), udp.try_clone()?);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || udp_worker(&shared, &udp))?,
            );
        }
        {
            let (shared, udp) = (shared.clone(), udp.try_clone()?);
            threads.push(
                std::thread::Builder::new()
                    .name("dns-upstream".into())
                    .spawn(move || upstream_reader(&shared, &udp))?,
            );
        }
        if let Some((_, rx)) = dot_queue {
            let rx = Arc::new(Mutex::new(rx));
            for i in 0..DOT_THREADS {
                let (shared, udp, rx) = (shared.clone(), udp.try_clone()?, rx.clone());
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("dns-tls-{i}"))
                        .spawn(move || dot_worker(&shared, &udp, &rx))?,
                );
            }
        }
        // TCP on the same port, for answers too big for UDP; a resolver that cannot take TCP
        // still filters, so a busy port is a warning, not a failure.
        match TcpListener::bind(local) {
            Ok(listener) => {
                let shared = shared.clone();
                listener.set_nonblocking(true)?;
                threads.push(
                    std::thread::Builder::new()
                        .name("dns-tcp".into())
                        .spawn(move || tcp_acceptor(&shared, &listener))?,
                );
            }
            Err(e) => tracing::warn!("the web filter answers over UDP only: TCP {local}: {e}"),
        }
        Ok(Resolver {
            shared,
            threads,
            local,
        })
    }

    /// Where the resolver answers (the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Replaces the rules; queries after this see only the new ones.
    pub fn set_rules(&self, rules: Rules) {
        let mut guard = self.shared.rules.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(rules);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// The egress feed, when the resolver gates the child's traffic.
    pub fn feed(&self) -> Option<&Feed> {
        self.shared.feed.as_ref()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The rules a worker uses, refreshed only when the generation moves (no lock per query).
struct LocalRules {
    generation: u64,
    rules: Arc<Rules>,
}

impl LocalRules {
    fn new(shared: &Shared) -> Self {
        LocalRules {
            generation: shared.generation.load(Ordering::Acquire),
            rules: shared
                .rules
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn get(&mut self, shared: &Shared) -> &Rules {
        let now = shared.generation.load(Ordering::Acquire);
        if now != self.generation {
            *self = LocalRules::new(shared);
        }
        &self.rules
    }
}

/// What to do with one query.
enum Action {
    Reply(Vec<u8>),
    /// Reply once the answer's addresses are in the egress sets for `ttl` seconds.
    ReplyGated {
        bytes: Vec<u8>,
        gated: Arc<Gated>,
        ttl: u32,
    },
    Forward(Forward),
    Drop,
}

/// A query to send upstream.
struct Forward {
    packet: Vec<u8>,
    query: Query,
    key: Vec<u8>,
    question_len: usize,
    max_payload: u16,
    /// A protected destination: its addresses go to the sets no policy empties.
    protected: bool,
}

/// Decides what to answer to `packet`; everything the resolver does with a query goes
/// through here, for UDP and TCP alike.
fn answer(shared: &Shared, rules: &Rules, packet: &[u8]) -> Action {
    let Ok(msg) = Message::from_vec(packet) else {
        // Not DNS we can read. Answer FORMERR when there is at least a header to answer.
        if packet.len() >= 12 {
            let id = u16::from_be_bytes([packet[0], packet[1]]);
            let m = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return m.to_vec().map_or(Action::Drop, Action::Reply);
        }
        return Action::Drop;
    };
    if msg.metadata.message_type != MessageType::Query {
        return Action::Drop;
    }
    shared.counters.queries.fetch_add(1, Ordering::Relaxed);
    if msg.metadata.op_code != OpCode::Query || msg.queries.len() != 1 {
        let code = if msg.metadata.op_code == OpCode::Query {
            ResponseCode::FormErr
        } else {
            ResponseCode::NotImp
        };
        return reply(&msg, code);
    }
    let query = &msg.queries[0];
    let mut name_buf = [0u8; 256];
    let Some((name, wire_len)) = lower_name(query, &mut name_buf) else {
        return reply(&msg, ResponseCode::Refused);
    };
    match rules.decide(name) {
        Verdict::Refused => {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            reply(&msg, ResponseCode::Refused)
        }
        Verdict::Blocked { listed, category } => {
            shared.counters.blocked.fetch_add(1, Ordering::Relaxed);
            shared.reporter.report(listed, category);
            reply(&msg, ResponseCode::NXDomain)
        }
        Verdict::Allowed => {
            // The question as sent: the name (uncompressed, it is the first) plus type and class.
            let question_len = wire_len + 4;
            if packet.len() < 12 + question_len || packet[12 + wire_len - 1] != 0 {
                return reply(&msg, ResponseCode::FormErr);
            }
            let question = &packet[12..12 + question_len];
            let key: Vec<u8> = question.iter().map(u8::to_ascii_lowercase).collect();
            let max_payload = msg.edns.as_ref().map_or(512, |e| e.max_payload().max(512));
            if let Some((bytes, gated, ttl)) = shared.cache.get(&key) {
                shared.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                let bytes = personalise(bytes, msg.metadata.id, question, max_payload);
                return match (&shared.feed, gated) {
                    (Some(feed), Some(gated)) if !feed.is_fresh(&gated) => {
                        Action::ReplyGated { bytes, gated, ttl }
                    }
                    _ => Action::Reply(bytes),
                };
            }
            Action::Forward(Forward {
                packet: packet.to_vec(),
                query: query.clone(),
                key,
                question_len,
                max_payload,
                protected: shared.feed.is_some() && haven_protected::is_protected_domain(name),
            })
        }
    }
}

/// The query's name in lower case without the final dot, and its length on the wire.
fn lower_name<'b>(query: &Query, buf: &'b mut [u8; 256]) -> Option<(&'b str, usize)> {
    let mut len = 0;
    let mut wire = 1;
    for label in query.name().iter() {
        wire += label.len() + 1;
        if len + label.len() + 1 > buf.len() {
            return None;
        }
        if len > 0 {
            buf[len] = b'.';
            len += 1;
        }
        for &b in label {
            buf[len] = b.to_ascii_lowercase();
            len += 1;
        }
    }
    std::str::from_utf8(&buf[..len]).ok().map(|s| (s, wire))
}

/// An answer of our own (REFUSED, NXDOMAIN, ...) to `query`.
fn reply(query: &Message, code: ResponseCode) -> Action {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.metadata.response_code = code;
    m.queries = query.queries.clone();
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.set_edns(edns);
    }
    m.to_vec().map_or(Action::Drop, Action::Reply)
}

/// A cached or upstream answer made into the answer to one asker: their id, their question
/// (same length; only the letters' case can differ), and truncated if it is too big for them.
fn personalise(mut bytes: Vec<u8>, id: u16, question: &[u8], max_payload: u16) -> Vec<u8> {
    bytes[0..2].copy_from_slice(&id.to_be_bytes());
    if bytes.len() >= 12 + question.len() {
        bytes[12..12 + question.len()].copy_from_slice(question);
    }
    if bytes.len() > usize::from(max_payload)
        && let Ok(msg) = Message::from_vec(&bytes)
        && let Ok(short) = msg.truncate().to_vec()
    {
        return short;
    }
    bytes
}

fn udp_worker(shared: &Shared, udp: &UdpSocket) {
    let mut buf = vec![0u8; 4096];
    let mut rules = LocalRules::new(shared);
    while !shared.stop.load(Ordering::Relaxed) {
        let (n, from) = match udp.recv_from(&mut buf) {
            Ok(got) => got,
            Err(_) => continue, // a timeout (to look at `stop`) or a transient error
        };
        let action = answer(shared, rules.get(shared), &buf[..n]);
        match action {
            Action::Reply(bytes) => {
                let _ = udp.send_to(&bytes, from);
            }
            Action::ReplyGated { bytes, gated, ttl } => {
                send_gated(shared, udp, gated, ttl, bytes, from);
            }
            Action::Forward(f) => forward(shared, udp, f, from),
            Action::Drop => {}
        }
    }
}

/// A query sent upstream, waiting for its answer.
struct Pending {
    client: SocketAddr,
    client_id: u16,
    question: Vec<u8>,
    query: Query,
    key: Vec<u8>,
    max_payload: u16,
    protected: bool,
    sent: Instant,
    /// The query as sent (id aside), for the next upstream if this one fails.
    packet: Vec<u8>,
    /// The upstream asked first, and how many have been asked.
    first: usize,
    tried: usize,
    /// This query's own socket, connected to the upstream it asked.
    socket: UdpSocket,
}

/// A query on its way upstream, before it has a socket.
struct Outgoing {
    client: SocketAddr,
    client_id: u16,
    question: Vec<u8>,
    query: Query,
    key: Vec<u8>,
    max_payload: u16,
    protected: bool,
    packet: Vec<u8>,
    first: usize,
    tried: usize,
}

impl Pending {
    fn outgoing(self) -> Outgoing {
        Outgoing {
            client: self.client,
            client_id: self.client_id,
            question: self.question,
            query: self.query,
            key: self.key,
            max_payload: self.max_payload,
            protected: self.protected,
            packet: self.packet,
            first: self.first,
            tried: self.tried,
        }
    }
}

/// Sends `bytes` to `to` once `gated`'s addresses are in (at once without a feed, or when the
/// feed is swamped).
fn send_gated(
    shared: &Shared,
    udp: &UdpSocket,
    gated: Arc<Gated>,
    ttl: u32,
    bytes: Vec<u8>,
    to: SocketAddr,
) {
    let then = Then::Udp { bytes, to };
    let then = match &shared.feed {
        Some(feed) => match feed.submit(gated, ttl, then) {
            Ok(()) => return,
            Err(then) => then,
        },
        None => then,
    };
    if let Then::Udp { bytes, to } = then {
        let _ = udp.send_to(&bytes, to);
    }
}

fn forward(shared: &Shared, udp: &UdpSocket, f: Forward, from: SocketAddr) {
    let Forward {
        packet,
        query,
        key,
        question_len,
        max_payload,
        protected,
    } = f;
    let client_id = u16::from_be_bytes([packet[0], packet[1]]);
    shared.counters.forwarded.fetch_add(1, Ordering::Relaxed);
    let out = Outgoing {
        client: from,
        client_id,
        question: packet[12..12 + question_len].to_vec(),
        query,
        key,
        max_payload,
        protected,
        packet,
        first: shared.first_upstream(),
        tried: 0,
    };
    match &shared.dot_queue {
        // A full queue drops the query; the asker retries.
        Some(queue) => {
            let _ = queue.try_send(out);
        }
        None => ask_next(shared, udp, out),
    }
}

/// A thread asking upstreams over TLS for queries from the UDP workers (which never wait).
fn dot_worker(shared: &Shared, udp: &UdpSocket, queue: &Mutex<Receiver<Outgoing>>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let next = queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(POLL);
        let Ok(out) = next else { continue };
        match exchange_any(shared, &out.packet, &out.key) {
            Some(answer) => deliver(shared, udp, out, &answer),
            None => {
                shared
                    .counters
                    .upstream_failures
                    .fetch_add(1, Ordering::Relaxed);
                if let Ok(bytes) = servfail(&out.query, out.client_id) {
                    let _ = udp.send_to(&bytes, out.client);
                }
            }
        }
    }
}

/// Sends `out` to the next upstream not yet tried, from a fresh socket under a fresh random
/// id; when every upstream has been tried, the asker gets SERVFAIL.
fn ask_next(shared: &Shared, udp: &UdpSocket, mut out: Outgoing) {
    let n = shared.upstreams.len();
    while out.tried < n {
        let target = shared.upstreams[(out.first + out.tried) % n];
        out.tried += 1;
        if out.tried > 1 {
            shared
                .counters
                .upstream_retries
                .fetch_add(1, Ordering::Relaxed);
        }
        let Ok(socket) = upstream::socket_for(target, shared.mark) else {
            continue;
        };
        let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_IN_FLIGHT {
            return; // the asker retries; a flood must not exhaust the device's sockets
        }
        // A random id not in flight (with at most MAX_IN_FLIGHT of 65,536 taken, a few tries).
        let Some(id) = (0..64)
            .map(|_| rand::random::<u16>())
            .find(|id| !pending.contains_key(id))
        else {
            return;
        };
        out.packet[0..2].copy_from_slice(&id.to_be_bytes());
        if socket.send(&out.packet).is_err() || shared.poller.watch(&socket, u64::from(id)).is_err()
        {
            continue;
        }
        pending.insert(
            id,
            Pending {
                client: out.client,
                client_id: out.client_id,
                question: out.question,
                query: out.query,
                key: out.key,
                max_payload: out.max_payload,
                protected: out.protected,
                sent: Instant::now(),
                packet: out.packet,
                first: out.first,
                tried: out.tried,
                socket,
            },
        );
        return;
    }
    shared
        .counters
        .upstream_failures
        .fetch_add(1, Ordering::Relaxed);
    if let Ok(bytes) = servfail(&out.query, out.client_id) {
        let _ = udp.send_to(&bytes, out.client);
    }
}

fn servfail(query: &Query, id: u16) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut m = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(query.clone());
    m.to_vec()
}

impl Shared {
    /// How answers are gated: `Some(protected)` when the egress sets are fed.
    fn gate(&self, protected: bool) -> Option<bool> {
        self.feed.as_ref().map(|_| protected)
    }

    /// The upstream to ask first: each in turn, so the load is shared.
    fn first_upstream(&self) -> usize {
        let i = self.next_upstream.fetch_add(1, Ordering::Relaxed) as usize;
        i % self.upstreams.len().max(1)
    }
}

fn upstream_reader(shared: &Shared, udp: &UdpSocket) {
    let mut buf = vec![0u8; 65_535];
    let mut tokens = Vec::new();
    let mut last_sweep = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if last_sweep.elapsed() >= POLL {
            sweep(shared, udp);
            last_sweep = Instant::now();
        }
        shared.poller.wait(POLL, &mut tokens);
        for &token in &tokens {
            let Ok(id) = u16::try_from(token) else {
                continue;
            };
            let taken = shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            let Some(p) = taken else { continue };
            match p.socket.recv(&mut buf) {
                Ok(n) => answered(shared, udp, p, &buf[..n], id),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    put_back(shared, id, p);
                }
                // Refused (nothing listening there) or unreachable: the next upstream.
                Err(_) => ask_next(shared, udp, p.outgoing()),
            }
        }
    }
}

fn put_back(shared: &Shared, id: u16, p: Pending) {
    shared
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, p);
}

/// An answer on a query's own socket (only its upstream can send there). It counts only for
/// the id and question asked; a failure code sends the query on to the next upstream.
fn answered(shared: &Shared, udp: &UdpSocket, p: Pending, packet: &[u8], id: u16) {
    if !answers_question(packet, id, &p.key) {
        put_back(shared, id, p); // spoofed or stray: keep waiting for the real answer
        return;
    }
    if upstream_failed(packet) && p.tried < shared.upstreams.len() {
        ask_next(shared, udp, p.outgoing());
        return;
    }
    deliver(shared, udp, p.outgoing(), packet);
}

/// An upstream's answer to `p`: cached, made the asker's own, and sent (once its addresses are
/// in the egress sets, when they are fed).
fn deliver(shared: &Shared, udp: &UdpSocket, p: Outgoing, packet: &[u8]) {
    let gated = Message::from_vec(packet).ok().and_then(|msg| {
        shared
            .cache
            .insert(p.key.clone(), msg, shared.gate(p.protected))
    });
    let bytes = personalise(packet.to_vec(), p.client_id, &p.question, p.max_payload);
    match gated {
        Some((gated, ttl)) => send_gated(shared, udp, gated, ttl, bytes, p.client),
        None => {
            let _ = udp.send_to(&bytes, p.client);
        }
    }
}

/// Whether `packet` is an answer to the query sent under `id` asking `key` (the question as
/// sent, in lower case): anything else is spoofed or stray, and never read further.
fn answers_question(packet: &[u8], id: u16, key: &[u8]) -> bool {
    packet.len() >= 12 + key.len()
        && u16::from_be_bytes([packet[0], packet[1]]) == id
        && packet[12..12 + key.len()].eq_ignore_ascii_case(key)
}

/// Whether an upstream's answer (at least a header) says it could not answer: SERVFAIL or
/// REFUSED mean "ask someone else", NXDOMAIN and the rest are answers.
fn upstream_failed(packet: &[u8]) -> bool {
    let code = packet.get(3).map_or(0, |b| b & 0x0f);
    code == ResponseCode::ServFail.low() || code == ResponseCode::Refused.low()
}

/// Sends queries whose upstream has not answered in time on to the next one.
fn sweep(shared: &Shared, udp: &UdpSocket) {
    let expired: Vec<Pending> = {
        let mut map = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
        let old: Vec<u16> = map
            .iter()
            .filter(|(_, p)| p.sent.elapsed() > UPSTREAM_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        old.iter().filter_map(|id| map.remove(id)).collect()
    };
    for p in expired {
        ask_next(shared, udp, p.outgoing());
    }
}

fn tcp_acceptor(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // A thread per client, but never more than the cap: further clients are
                // closed at once (they retry, or use UDP) rather than exhausting the device.
                if shared.tcp_clients.fetch_add(1, Ordering::AcqRel) >= shared.max_tcp_clients {
                    shared.tcp_clients.fetch_sub(1, Ordering::AcqRel);
                    shared.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                    continue;
                }
                let shared2 = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("dns-tcp-conn".into())
                    .spawn(move || {
                        tcp_connection(&shared2, stream);
                        shared2.tcp_clients.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    shared.tcp_clients.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One TCP client: length-prefixed queries, answered in order; forwarding is done in line,
/// since TCP is the rare path.
fn tcp_connection(shared: &Shared, mut stream: TcpStream) {
    use std::io::{Read, Write};
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut rules = LocalRules::new(shared);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let mut len = [0u8; 2];
        if stream.read_exact(&mut len).is_err() {
            return;
        }
        let mut packet = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if stream.read_exact(&mut packet).is_err() {
            return;
        }
        let bytes = match answer(shared, rules.get(shared), &packet) {
            Action::Reply(b) => b,
            Action::ReplyGated { bytes, gated, ttl } => wait_gated(shared, gated, ttl, bytes),
            Action::Drop => return,
            Action::Forward(f) => match forward_blocking(shared, &f) {
                Some(upstream_answer) => {
                    let gated = Message::from_vec(&upstream_answer).ok().and_then(|msg| {
                        shared
                            .cache
                            .insert(f.key.clone(), msg, shared.gate(f.protected))
                    });
                    let id = u16::from_be_bytes([packet[0], packet[1]]);
                    let bytes = personalise(
                        upstream_answer,
                        id,
                        &packet[12..12 + f.question_len],
                        u16::MAX,
                    );
                    match gated {
                        Some((gated, ttl)) => wait_gated(shared, gated, ttl, bytes),
                        None => bytes,
                    }
                }
                None => match servfail(&f.query, u16::from_be_bytes([packet[0], packet[1]])) {
                    Ok(b) => b,
                    Err(_) => return,
                },
            },
        };
        let Ok(len) = u16::try_from(bytes.len()) else {
            return;
        };
        if stream.write_all(&len.to_be_bytes()).is_err() || stream.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// Waits (on a TCP connection's own thread) until `gated`'s addresses are in, then gives
/// `bytes` back to send.
fn wait_gated(shared: &Shared, gated: Arc<Gated>, ttl: u32, bytes: Vec<u8>) -> Vec<u8> {
    if let Some(feed) = &shared.feed {
        let (tx, rx) = std::sync::mpsc::channel();
        if feed.submit(gated, ttl, Then::Wake(tx)).is_ok() {
            let _ = rx.recv_timeout(UPSTREAM_TIMEOUT);
        }
    }
    bytes
}

/// Asks the upstreams over TCP in turn, under a random id, until one answers (for the TCP
/// path only).
fn forward_blocking(shared: &Shared, f: &Forward) -> Option<Vec<u8>> {
    exchange_any(shared, &f.packet, &f.key)
}

/// Asks the upstreams in turn over a stream (TCP, or TLS when configured), under a random id,
/// until one answers the question asked.
fn exchange_any(shared: &Shared, query: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let n = shared.upstreams.len();
    let first = shared.first_upstream();
    for i in 0..n {
        let target = shared.upstreams[(first + i) % n];
        let mut packet = query.to_vec();
        let id: u16 = rand::random();
        packet[0..2].copy_from_slice(&id.to_be_bytes());
        let answer = match &shared.dot {
            Some(dot) => dot.exchange(target, &packet, shared.mark, UPSTREAM_TIMEOUT),
            None => ask_tcp(target, &packet, shared.mark),
        };
        // Only the answer to the id and question asked counts; a failure code is the last
        // upstream's answer, or a reason to ask the next.
        if let Some(answer) = answer
            && answers_question(&answer, id, key)
            && (!upstream_failed(&answer) || i + 1 == n)
        {
            return Some(answer);
        }
        shared
            .counters
            .upstream_retries
            .fetch_add(1, Ordering::Relaxed);
    }
    None
}

fn ask_tcp(target: SocketAddr, packet: &[u8], mark: Option<u32>) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&target, UPSTREAM_TIMEOUT).ok()?;
    if let Some(mark) = mark {
        upstream::set_mark(&s, mark);
    }
    s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).ok()?;
    let len = u16::try_from(packet.len()).ok()?;
    s.write_all(&len.to_be_bytes()).ok()?;
    s.write_all(packet).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut answer).ok()?;
    Some(answer)
}

/// Upstream answers by question, kept for their TTL and served with the TTL counted down.
struct Cache {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
}

/// Bytes only (a parsed `Message` is many times bigger): the answer as stored, and as served
/// `age` seconds later.
struct Entry {
    original: Box<[u8]>,
    stored: Instant,
    expires: Instant,
    bytes: Vec<u8>,
    age: u64,
    /// The answer's addresses, when the egress sets are fed.
    gated: Option<Arc<Gated>>,
}

/// One shard of the cache, and the bytes its entries hold.
#[derive(Default)]
struct Shard {
    entries: HashMap<Vec<u8>, Entry>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes = self.bytes.saturating_sub(e.size(key));
        }
    }
}

impl Entry {
    /// What the entry holds, as counted against [`CACHE_BYTES_PER_SHARD`] (the served copy
    /// is re-encoded from the original with the same length).
    fn size(&self, key: &[u8]) -> usize {
        key.len() + 2 * self.original.len() + std::mem::size_of::<Entry>()
    }
}

impl Cache {
    /// The bytes all the shards hold, as counted.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).bytes)
            .sum()
    }

    fn new() -> Cache {
        Cache {
            shards: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % CACHE_SHARDS]
    }

    /// The answer, its addresses (when gated) and the seconds it has left.
    fn get(&self, key: &[u8]) -> Option<(Vec<u8>, Option<Arc<Gated>>, u32)> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let entry = shard.entries.get_mut(key)?;
        if now >= entry.expires {
            shard.remove(key);
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs();
        if age != entry.age {
            // Count the TTLs down, at most once a second per entry.
            let mut msg = Message::from_vec(&entry.original).ok()?;
            let age32 = u32::try_from(age).unwrap_or(u32::MAX);
            for r in msg
                .answers
                .iter_mut()
                .chain(msg.authorities.iter_mut())
                .chain(msg.additionals.iter_mut())
            {
                r.ttl = r.ttl.saturating_sub(age32);
            }
            entry.bytes = msg.to_vec().ok()?;
            entry.bytes.shrink_to_fit();
            entry.age = age;
        }
        let left = u32::try_from(entry.expires.duration_since(now).as_secs()).unwrap_or(MAX_TTL);
        Some((entry.bytes.clone(), entry.gated.clone(), left))
    }

    /// Keeps a NOERROR or NXDOMAIN answer for its smallest TTL; nothing else is kept. With
    /// `gate` (`Some(protected)`), gives back the answer's addresses and TTL to feed the egress
    /// sets, whether or not it was kept (an answer with TTL 0 must still open its address).
    fn insert(
        &self,
        key: Vec<u8>,
        mut msg: Message,
        gate: Option<bool>,
    ) -> Option<(Arc<Gated>, u32)> {
        let gated = gate.and_then(|protected| Gated::from_answer(&msg, protected));
        let address_ttl = msg.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
        let fed = gated.clone().map(|g| (g, address_ttl));
        let code = msg.metadata.response_code;
        if msg.metadata.truncation
            || !(code == ResponseCode::NoError || code == ResponseCode::NXDomain)
        {
            return fed;
        }
        let ttl = msg
            .answers
            .iter()
            .chain(msg.authorities.iter())
            .map(|r| r.ttl)
            .min()
            .unwrap_or(DEFAULT_NEGATIVE_TTL)
            .min(MAX_TTL);
        if ttl == 0 {
            return fed;
        }
        msg.metadata.id = 0;
        let Ok(mut bytes) = msg.to_vec() else {
            return fed;
        };
        // `to_vec` reserves 512 bytes; tens of thousands of entries make that count.
        bytes.shrink_to_fit();
        let now = Instant::now();
        let entry = Entry {
            original: bytes.clone().into_boxed_slice(),
            stored: now,
            expires: now + Duration::from_secs(u64::from(ttl)),
            bytes,
            age: 0,
            gated,
        };
        let mut shard = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        shard.remove(&key);
        let size = entry.size(&key);
        if shard.entries.len() >= CACHE_PER_SHARD || shard.bytes + size > CACHE_BYTES_PER_SHARD {
            shard.entries.retain(|_, e| e.expires > now);
            shard.bytes = shard.entries.iter().map(|(k, e)| e.size(k)).sum();
            if shard.entries.len() >= CACHE_PER_SHARD || shard.bytes + size > CACHE_BYTES_PER_SHARD
            {
                // simple and bounded; the next queries refill it
                shard.entries.clear();
                shard.bytes = 0;
            }
        }
        shard.bytes += size;
        shard.entries.insert(key, entry);
        fed
    }
}

/// Reports blocked names, at most once per name per window.
struct Reporter {
    sink: Arc<dyn BlockedSink>,
    window: Duration,
    last: Mutex<HashMap<String, Instant>>,
}

impl Reporter {
    fn new(sink: Arc<dyn BlockedSink>, window: Duration) -> Reporter {
        Reporter {
            sink,
            window,
            last: Mutex::new(HashMap::new()),
        }
    }

    fn report(&self, listed: &str, category: Option<&str>) {
        let now = Instant::now();
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = last.get(listed)
                && now.duration_since(*t) < self.window
            {
                return;
            }
            if last.len() >= 100_000 {
                last.retain(|_, t| now.duration_since(*t) < self.window);
            }
            last.insert(listed.to_ascii_lowercase(), now);
        }
        self.sink.blocked(Blocked::now(
            ViolationKind::WebBlocked,
            listed.to_ascii_lowercase(),
            describe(category),
        ));
    }
}

#[cfg(test)]
#[path = "resolver_fuzz.rs"]
mod fuzz;
