//! Feeds the egress sets (see [`super::nft`]) from the resolver's answers, off the answer path.
//!
//! Each answer that carries addresses is a [`Gated`] value shared with the answer cache. When
//! its addresses are known to be in the sets for a while yet, the answer goes straight out;
//! otherwise the worker hands the answer to the one writer thread, which adds the addresses in
//! a batch (one `nft -f -` transaction for everything that arrived meanwhile) and only then
//! sends the answer: a child's browser never gets an address before the firewall lets it
//! connect to it. So the cost of the firewall falls on the first answer for a name and then
//! once per refresh, never on the cache hits in between.
//!
//! Every element's timeout comes from the answer's TTL, kept between [`TTL_FLOOR`] and
//! [`TTL_CEILING`]: short TTLs would break connections that outlive them, long ones would
//! keep an address open long after the name stopped pointing at it. Answers for the name
//! again (cache hits included) refresh the timeout once the element is within
//! [`REFRESH_MARGIN`] of expiring.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::RData;

use super::nft::{self, Element};

/// Shortest time an address stays open after an answer.
pub const TTL_FLOOR: u32 = 300;
/// Longest time an address stays open after an answer.
pub const TTL_CEILING: u32 = 3_600;
/// An answer whose addresses expire sooner than this is fed again.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Answers waiting for the writer; beyond this they go out at once (and the child's
/// connection may be refused: the firewall fails closed, never open).
const QUEUE: usize = 4_096;
/// Most addresses in one transaction.
const BATCH: usize = 4_096;
const POLL: Duration = Duration::from_millis(100);

/// The addresses of one answer and how long the firewall is known to let them through.
#[derive(Debug)]
pub struct Gated {
    addrs: Box<[IpAddr]>,
    protected: bool,
    /// Milliseconds since the feed started until which every address is in its set.
    until_ms: AtomicU64,
    /// The flush generation `until_ms` belongs to; a flush makes every stamp stale.
    epoch: AtomicU64,
}

impl Gated {
    /// The A and AAAA addresses in `msg`'s answers, if any. `protected` answers go to the
    /// protected sets, which a policy change never empties.
    pub fn from_answer(msg: &Message, protected: bool) -> Option<Arc<Gated>> {
        let addrs: Vec<IpAddr> = msg
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        (!addrs.is_empty()).then(|| Gated::new(addrs, protected))
    }

    /// Addresses not taken from an answer (benchmarks, tests).
    pub fn new(addrs: Vec<IpAddr>, protected: bool) -> Arc<Gated> {
        Arc::new(Gated {
            addrs: addrs.into_boxed_slice(),
            protected,
            until_ms: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
        })
    }

    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }
}

/// What to do once the addresses are in.
pub enum Then {
    /// Send this answer over UDP.
    Udp { bytes: Vec<u8>, to: SocketAddr },
    /// Wake the TCP connection waiting to send its answer.
    Wake(Sender<()>),
}

struct Job {
    gated: Arc<Gated>,
    ttl: u32,
    then: Then,
}

enum Msg {
    Job(Job),
    /// Empty the allowed sets, then wake the caller.
    Flush(Sender<()>),
}

/// Counts for the benchmark; never addresses.
#[derive(Debug, Default)]
pub struct FeedCounters {
    /// `nft` transactions run.
    pub batches: AtomicU64,
    /// Addresses written (added or refreshed).
    pub written: AtomicU64,
    /// Nanoseconds spent in `nft`.
    pub nft_nanos: AtomicU64,
    /// Answers sent without waiting because the queue was full.
    pub overflow: AtomicU64,
}

/// What is in the sets: (address, protected) → until (ms since the feed started). Written by
/// the writer after each transaction; read by the answer path, so a new name on an address
/// already in (a CDN, say) answers at once instead of waiting for the writer.
struct Present {
    shards: Vec<Mutex<HashMap<(IpAddr, bool), u64>>>,
}

impl Present {
    const SHARDS: usize = 16;

    fn new() -> Present {
        Present {
            shards: (0..Self::SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }

    fn shard(
        &self,
        key: &(IpAddr, bool),
    ) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, bool), u64>> {
        let h = match key.0 {
            IpAddr::V4(a) => u32::from(a) as usize,
            IpAddr::V6(a) => (u128::from(a) as usize) ^ ((u128::from(a) >> 64) as usize),
        };
        self.shards[h % Self::SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &(IpAddr, bool)) -> u64 {
        self.shard(key).get(key).copied().unwrap_or(0)
    }

    fn insert(&self, key: (IpAddr, bool), until: u64) {
        self.shard(&key).insert(key, until);
    }

    /// Forgets the allowed addresses (a flush); or, with `expired_before`, the expired ones.
    fn forget(&self, allowed: bool, expired_before: Option<u64>) {
        for shard in &self.shards {
            let mut m = shard.lock().unwrap_or_else(|p| p.into_inner());
            m.retain(|(_, protected), until| {
                (*protected || !allowed) && expired_before.is_none_or(|t| *until > t)
            });
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// The handle the resolver's threads use.
pub struct Feed {
    tx: SyncSender<Msg>,
    present: Arc<Present>,
    start: Instant,
    epoch: AtomicU64,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    problem: Arc<Mutex<Option<String>>>,
    pub counters: Arc<FeedCounters>,
}

impl Feed {
    /// Starts the writer. `udp` is the resolver's listening socket, for answers sent after
    /// their addresses are in; `write` applies one nftables batch (`nft::apply` on a device,
    /// a recorder in tests).
    pub fn start(
        udp: UdpSocket,
        write: impl FnMut(&str) -> Result<(), nft::NftError> + Send + 'static,
    ) -> std::io::Result<Feed> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let problem = Arc::new(Mutex::new(None));
        let counters = Arc::new(FeedCounters::default());
        let start = Instant::now();
        let present = Arc::new(Present::new());
        let writer = Writer {
            rx,
            udp,
            start,
            write: Box::new(write),
            present: present.clone(),
            epoch: 0,
            stop: stop.clone(),
            problem: problem.clone(),
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("dns-egress".into())
            .spawn(move || writer.run())?;
        Ok(Feed {
            tx,
            present,
            start,
            epoch: AtomicU64::new(0),
            stop,
            thread: Mutex::new(Some(thread)),
            problem,
            counters,
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether `gated`'s addresses are in their sets for a while yet (the answer may go out
    /// now). First its own stamp; failing that, what the writer last put in (and the stamp is
    /// brought up to date), so only answers with an address not in go to the writer.
    pub fn is_fresh(&self, gated: &Gated) -> bool {
        let margin = u64::try_from(REFRESH_MARGIN.as_millis()).unwrap_or(u64::MAX);
        let need = self.now_ms().saturating_add(margin);
        let epoch = self.epoch.load(Ordering::Acquire);
        if gated.epoch.load(Ordering::Acquire) == epoch
            && gated.until_ms.load(Ordering::Acquire) > need
        {
            return true;
        }
        let mut until = u64::MAX;
        for &addr in gated.addrs.iter() {
            let known = self.present.get(&(addr, gated.protected));
            if known <= need {
                return false;
            }
            until = until.min(known);
        }
        gated.until_ms.store(until, Ordering::Release);
        gated.epoch.store(epoch, Ordering::Release);
        true
    }

    /// Adds `gated`'s addresses for `ttl` seconds (kept within the floor and ceiling), then
    /// does `then`. If the writer is swamped or gone, `then` is handed back to do at once.
    pub fn submit(&self, gated: Arc<Gated>, ttl: u32, then: Then) -> Result<(), Then> {
        match self.tx.try_send(Msg::Job(Job { gated, ttl, then })) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Msg::Job(j)) | TrySendError::Disconnected(Msg::Job(j))) => {
                self.counters.overflow.fetch_add(1, Ordering::Relaxed);
                Err(j.then)
            }
            Err(_) => Ok(()),
        }
    }

    /// Empties the allowed sets and returns once they are empty (or after a few seconds if
    /// the firewall does not answer): from now on no answer counts as fed until it is fed
    /// again. Blocking on purpose: a flush must never be lost, and it is rare (a policy change).
    pub fn flush_allowed(&self) {
        // Forgotten before the epoch moves, so no answer is stamped fresh under the new
        // epoch from what was in before the flush.
        self.present.forget(true, None);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Why the firewall could not be updated lately, if it could not.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

type WriteFn = Box<dyn FnMut(&str) -> Result<(), nft::NftError> + Send>;

struct Writer {
    rx: Receiver<Msg>,
    udp: UdpSocket,
    start: Instant,
    write: WriteFn,
    /// What the writer last put in each set (shared with the answer path).
    present: Arc<Present>,
    epoch: u64,
    stop: Arc<AtomicBool>,
    problem: Arc<Mutex<Option<String>>>,
    counters: Arc<FeedCounters>,
}

impl Writer {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let first = match self.rx.recv_timeout(POLL) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut jobs = Vec::new();
            let mut flushes = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    Msg::Job(j) => jobs.push(j),
                    Msg::Flush(done) => flushes.push(done),
                }
                if jobs.len() < BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            self.batch(flushes.len() as u64, jobs);
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    /// One transaction: the flushes asked for (one is enough) first, then every address not already in for
    /// long enough; then the answers go out.
    fn batch(&mut self, flushes: u64, jobs: Vec<Job>) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let margin = u64::try_from(REFRESH_MARGIN.as_millis()).unwrap_or(u64::MAX);
        let mut text = String::new();
        if flushes > 0 {
            text.push_str(&nft::flush_allowed());
            self.present.forget(true, None);
            // In step with the feed's count, which moved once per flush asked for.
            self.epoch += flushes;
        }
        let mut elements = Vec::new();
        let mut wanted: HashMap<(IpAddr, bool), u32> = HashMap::new();
        for job in &jobs {
            let secs = job.ttl.clamp(TTL_FLOOR, TTL_CEILING);
            for &addr in job.gated.addrs.iter() {
                let key = (addr, job.gated.protected);
                let until = now + u64::from(secs) * 1000;
                let known = self.present.get(&key);
                // Never shorten an element another answer put in for longer.
                if known > now + margin && known + margin >= until {
                    continue;
                }
                let w = wanted.entry(key).or_insert(0);
                *w = (*w).max(secs);
            }
        }
        for (&(addr, protected), &secs) in &wanted {
            elements.push(Element {
                addr,
                protected,
                timeout_secs: secs,
            });
        }
        text.push_str(&nft::add_elements(&elements));
        let ok = text.is_empty() || {
            let started = Instant::now();
            let result = (self.write)(&text);
            self.counters.nft_nanos.fetch_add(
                u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            self.counters.batches.fetch_add(1, Ordering::Relaxed);
            let mut problem = self.problem.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => {
                    *problem = None;
                    true
                }
                Err(e) => {
                    tracing::error!("web filter: {e}");
                    *problem = Some(e.to_string());
                    false
                }
            }
        };
        if ok {
            self.counters
                .written
                .fetch_add(elements.len() as u64, Ordering::Relaxed);
            for e in &elements {
                self.present.insert(
                    (e.addr, e.protected),
                    now + u64::from(e.timeout_secs) * 1000,
                );
            }
            if self.present.len() > 1_000_000 {
                self.present.forget(false, Some(now));
            }
        }
        for job in jobs {
            if ok {
                // Stamped with the earliest expiry among its addresses.
                let until = job
                    .gated
                    .addrs
                    .iter()
                    .map(|&a| self.present.get(&(a, job.gated.protected)))
                    .min()
                    .unwrap_or(0);
                job.gated.until_ms.store(until, Ordering::Release);
                job.gated.epoch.store(self.epoch, Ordering::Release);
            }
            // Sent either way: when the firewall could not be updated the connection is
            // refused (fail closed) and health says why, but the name still answers.
            match job.then {
                Then::Udp { bytes, to } => {
                    let _ = self.udp.send_to(&bytes, to);
                }
                Then::Wake(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn gated(addrs: &[&str], protected: bool) -> Arc<Gated> {
        Gated::new(
            addrs.iter().map(|a| a.parse().unwrap()).collect(),
            protected,
        )
    }

    /// A feed whose "firewall" records each transaction.
    fn feed() -> (Feed, Arc<Mutex<Vec<String>>>, UdpSocket) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let w = written.clone();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let feed = Feed::start(udp.try_clone().unwrap(), move |text| {
            w.lock().unwrap().push(text.to_string());
            Ok(())
        })
        .unwrap();
        (feed, written, udp)
    }

    fn wait(feed: &Feed, g: Arc<Gated>, ttl: u32) {
        let (tx, rx) = channel();
        assert!(feed.submit(g, ttl, Then::Wake(tx)).is_ok());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    // clause WB1: an answer is fed once, then served from the cache without the firewall
    // until it nears expiry; the timeout stays within the floor and ceiling.
    #[test]
    fn wb1_an_answer_is_fed_once_with_a_bounded_timeout_then_is_fresh() {
        let (feed, written, _udp) = feed();
        let g = gated(&["192.0.2.1", "2001:db8::1"], false);
        assert!(!feed.is_fresh(&g), "nothing is in before it is fed");
        wait(&feed, g.clone(), 5);
        assert!(feed.is_fresh(&g));
        {
            let w = written.lock().unwrap();
            assert_eq!(w.len(), 1);
            assert!(
                w[0].contains("allowed4 { 192.0.2.1 timeout 300s }"),
                "{}",
                w[0]
            );
            assert!(
                w[0].contains("allowed6 { 2001:db8::1 timeout 300s }"),
                "{}",
                w[0]
            );
        }
        // The same address from another name, already in for long enough: nothing written.
        let other = gated(&["192.0.2.1"], false);
        wait(&feed, other.clone(), 300);
        assert!(feed.is_fresh(&other));
        assert_eq!(written.lock().unwrap().len(), 1);
        // A week-long TTL is cut to the ceiling.
        wait(&feed, gated(&["192.0.2.9"], true), 604_800);
        assert!(written.lock().unwrap()[1].contains("protected4 { 192.0.2.9 timeout 3600s }"));
    }

    // clause WB1: a new name on an address already in answers at once, without the writer.
    #[test]
    fn wb1_a_new_answer_on_an_address_already_in_needs_no_write() {
        let (feed, written, _udp) = feed();
        wait(&feed, gated(&["192.0.2.1"], false), 300);
        let other = gated(&["192.0.2.1"], false);
        assert!(feed.is_fresh(&other), "already in: no trip to the writer");
        assert!(!feed.is_fresh(&gated(&["192.0.2.1", "192.0.2.2"], false)));
        assert!(
            !feed.is_fresh(&gated(&["192.0.2.1"], true)),
            "not in the protected set"
        );
        feed.flush_allowed();
        assert!(!feed.is_fresh(&other), "stale after a flush");
        assert_eq!(written.lock().unwrap().len(), 2);
    }

    // clause WB1: a policy change empties the allowed sets and makes every answer stale.
    #[test]
    fn wb1_a_flush_empties_the_allowed_sets_and_answers_are_fed_again() {
        let (feed, written, _udp) = feed();
        let g = gated(&["192.0.2.1"], false);
        let p = gated(&["192.0.2.7"], true);
        wait(&feed, g.clone(), 300);
        wait(&feed, p.clone(), 300);
        feed.flush_allowed();
        assert!(!feed.is_fresh(&g));
        assert!(written.lock().unwrap()[2].contains("flush set inet haven_web allowed4"));
        wait(&feed, g.clone(), 300);
        wait(&feed, p.clone(), 300);
        let w = written.lock().unwrap();
        assert!(
            w[3].contains("allowed4 { 192.0.2.1"),
            "fed again after the flush"
        );
        assert_eq!(w.len(), 4, "the protected address was never flushed: {w:?}");
        assert!(feed.is_fresh(&g) && feed.is_fresh(&p));
    }

    // clause WB1: when nft fails the answer still goes out (the connection is refused: closed,
    // not open) and the problem is there for staff.
    #[test]
    fn wb1_a_firewall_that_cannot_be_updated_is_reported() {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let feed = Feed::start(udp.try_clone().unwrap(), |_| {
            Err(nft::NftError::Refused("no such table".into()))
        })
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let g = gated(&["192.0.2.1"], false);
        let then = Then::Udp {
            bytes: b"answer".to_vec(),
            to: client.local_addr().unwrap(),
        };
        assert!(feed.submit(g.clone(), 300, then).is_ok());
        let mut buf = [0u8; 16];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"answer");
        assert!(!feed.is_fresh(&g));
        assert!(feed.problem().unwrap().contains("no such table"));
    }
}
