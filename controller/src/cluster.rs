//! Several controllers on one PostgreSQL: what one replica tells the others, and which one
//! runs the timed work.
//!
//! Every change is written to the shared database before anything is announced, so an
//! announcement is only ever a hint to *look again now*: a device that misses one still gets
//! the newest policy when it next connects (the reconnect rule, ARCHITECTURE.md). What travels
//! here is what a replica keeps in memory for its own streams — which devices it holds, their
//! acknowledgements as they arrive, the live violation feed — so that a device connected to
//! replica B hears a lockdown made through replica A at once, and `haven lockdown`'s count on A
//! covers devices on B.
//!
//! The carrier is PostgreSQL's `LISTEN/NOTIFY` on one channel per database and schema, so no
//! other server is needed. Events are batched (a few milliseconds, at most one notification's
//! payload), in the order this replica made them. A replica whose listening connection drops
//! is told to catch up (`Arrival::Resync`) because notifications sent meanwhile are lost.
//!
//! Timed work (lockdowns ending, checkpoints, quiet devices) runs on the one replica that holds
//! a session-level advisory lock: when that replica dies its session ends, PostgreSQL releases
//! the lock and another replica takes it within [`LEASE_RETRY`]. A lost lease is noticed within
//! the same time, so for at most that long two replicas may both believe they lead; the timed
//! work is safe to run twice (lifting a lifted lockdown does nothing; a second checkpoint is
//! only a checkpoint).
//!
//! With SQLite there is one controller: [`Cluster::single`] leads always and announces nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

/// How long events wait to be sent together.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// PostgreSQL refuses a notification payload of 8,000 bytes or more.
const MAX_PAYLOAD: usize = 7_000;
/// How often a replica says it is alive, and how long the others believe it after.
const ALIVE_EVERY: Duration = Duration::from_secs(5);
const ALIVE_FOR: Duration = Duration::from_secs(16);
/// How often a replica without the lease tries for it, and the leader checks it still has it.
pub const LEASE_RETRY: Duration = Duration::from_secs(2);

/// What one replica tells the others. Ids only: never a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// A new policy `version` for a home, one child of it or one device: push it to the
    /// matching devices you hold.
    Policy {
        home: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        child: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<String>,
        version: u64,
        at: i64,
    },
    /// This device was revoked: end its stream if you hold it.
    DeviceRevoked { device: String, reason: String },
    /// This member of staff lost access: end their open streams.
    StaffWithdrawn { staff: String },
    /// A category list or a home's exceptions changed: read the lists again.
    FilterLists,
    /// A device you may not hold acknowledged `version` (lockdown progress).
    Applied {
        device: String,
        version: u64,
        failed: bool,
    },
    /// A device connected to the sending replica.
    Online { device: String },
    /// A device's stream on the sending replica ended.
    Offline { device: String },
    /// One entry of the live violations feed, as the protobuf bytes of a `ViolationEvent`,
    /// base64.
    Watch { event: String },
    /// The sending replica is alive (sent every [`ALIVE_EVERY`]).
    Alive,
    /// The sending replica just started: tell it which devices you hold.
    Joined,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    events: Vec<Event>,
}

/// What the controller must act on, from the other replicas.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// Events to apply to this replica's streams and memory.
    Events(Vec<Event>),
    /// Notifications may have been lost (the listening connection dropped): compare every
    /// stream held with the database, and announce the devices held again.
    Resync,
    /// Another replica started: announce the devices held, so its counts include them.
    Joined,
}

/// Why the cluster could not be joined.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("could not reach PostgreSQL to join the other controllers: {0}")]
    Connect(String),
}

/// This replica's view of the others.
pub struct Cluster {
    /// Random per process: a replica ignores its own notifications.
    id: String,
    outbox: Option<mpsc::UnboundedSender<Event>>,
    leader: AtomicBool,
    presence: Mutex<Presence>,
}

#[derive(Default)]
struct Presence {
    /// Devices held by another replica, and which.
    devices: HashMap<String, String>,
    /// When each other replica was last heard from.
    replicas: HashMap<String, Instant>,
}

impl Presence {
    /// Whether a replica heard from lately holds `device_id`'s stream.
    fn held_elsewhere(&self, device_id: &str) -> bool {
        self.devices
            .get(device_id)
            .and_then(|replica| self.replicas.get(replica))
            .is_some_and(|heard| heard.elapsed() < ALIVE_FOR)
    }
}

impl Cluster {
    /// The only controller: leads always, announces nothing.
    pub fn single() -> Self {
        Cluster {
            id: crate::ids::new_id("replica"),
            outbox: None,
            leader: AtomicBool::new(true),
            presence: Mutex::default(),
        }
    }

    /// Whether other replicas may exist.
    pub fn is_shared(&self) -> bool {
        self.outbox.is_some()
    }

    /// Whether this replica runs the timed work now.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Tells the other replicas (in order, batched). Never waits; a no-op with one controller.
    pub fn announce(&self, event: Event) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(event);
        }
    }

    /// Whether another live replica holds this device's stream.
    pub fn online_elsewhere(&self, device_id: &str) -> bool {
        let p = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        p.held_elsewhere(device_id)
    }

    /// [`Self::online_elsewhere`] for each of `devices`, under one lock.
    pub fn online_elsewhere_of<'a>(&self, devices: impl Iterator<Item = &'a str>) -> Vec<bool> {
        let p = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        devices.map(|d| p.held_elsewhere(d)).collect()
    }

    /// Joins the replicas sharing the database `options` points at. Returns the cluster and
    /// what the controller must act on.
    pub async fn postgres(
        options: PgConnectOptions,
    ) -> Result<(std::sync::Arc<Self>, mpsc::Receiver<Arrival>), ClusterError> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone())
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        let scope = Scope::of(&pool).await?;
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        listener
            .listen(&scope.channel)
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;

        let (outbox, queued) = mpsc::unbounded_channel();
        let cluster = std::sync::Arc::new(Cluster {
            id: crate::ids::new_id("replica"),
            outbox: Some(outbox),
            leader: AtomicBool::new(false),
            presence: Mutex::default(),
        });
        let (arrivals, arrived) = mpsc::channel(1024);
        tokio::spawn(publish(
            pool.clone(),
            scope.channel.clone(),
            cluster.id.clone(),
            queued,
        ));
        tokio::spawn(listen(cluster.clone(), listener, arrivals));
        tokio::spawn(lease(cluster.clone(), options, scope.lock_key));
        {
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(ALIVE_EVERY);
                loop {
                    tick.tick().await;
                    cluster.announce(Event::Alive);
                }
            });
        }
        cluster.announce(Event::Joined);
        Ok((cluster, arrived))
    }

    /// Takes the events meant for the cluster module itself (who is alive, which devices are
    /// held where) and returns what is left for the controller.
    fn receive(&self, from: &str, events: Vec<Event>) -> Vec<Event> {
        let mut p = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        p.replicas.insert(from.to_string(), Instant::now());
        // Forget the devices of replicas gone quiet: they died, their devices reconnect.
        let gone: Vec<String> = p
            .replicas
            .iter()
            .filter(|(_, heard)| heard.elapsed() >= ALIVE_FOR)
            .map(|(r, _)| r.clone())
            .collect();
        for replica in &gone {
            p.replicas.remove(replica);
            p.devices.retain(|_, r| r != replica);
        }
        let mut rest = Vec::new();
        for event in events {
            match event {
                Event::Alive => {}
                Event::Online { device } => {
                    p.devices.insert(device, from.to_string());
                }
                Event::Offline { device } => {
                    if p.devices.get(&device).is_some_and(|r| r == from) {
                        p.devices.remove(&device);
                    }
                }
                other => rest.push(other),
            }
        }
        rest
    }

    /// A device connected here: it is no longer held by another replica.
    pub fn held_here(&self, device_id: &str) {
        let mut p = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        p.devices.remove(device_id);
        drop(p);
        self.announce(Event::Online {
            device: device_id.to_string(),
        });
    }
}

/// The notification channel and lease key of one database and schema: two deployments on one
/// PostgreSQL server (or two test schemas) never hear each other.
struct Scope {
    channel: String,
    lock_key: i64,
}

impl Scope {
    async fn of(pool: &PgPool) -> Result<Self, ClusterError> {
        let (db, schema): (String, String) =
            sqlx::query_as("SELECT current_database()::text, current_schema()::text")
                .fetch_one(pool)
                .await
                .map_err(|e| ClusterError::Connect(e.to_string()))?;
        Ok(Self::named(&db, &schema))
    }

    fn named(db: &str, schema: &str) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("haven\0{db}\0{schema}").as_bytes());
        let mut key = [0u8; 8];
        key.copy_from_slice(&digest[..8]);
        Scope {
            channel: format!("haven_{}", hex::encode(&digest[..8])),
            lock_key: i64::from_be_bytes(key),
        }
    }
}

/// Splits events into payloads PostgreSQL accepts, in order.
fn payloads(from: &str, events: Vec<Event>) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch: Vec<Event> = Vec::new();
    let mut size = 0;
    for event in events {
        let len = serde_json::to_string(&event).map(|s| s.len()).unwrap_or(0);
        if len + 64 >= MAX_PAYLOAD {
            // Cannot happen with ids and small protobuf events; never send what would be
            // refused and stall the rest.
            tracing::warn!(
                bytes = len,
                "a cluster event is too large to announce; dropped"
            );
            continue;
        }
        if size + len + 64 >= MAX_PAYLOAD && !batch.is_empty() {
            out.push(envelope(from, std::mem::take(&mut batch)));
            size = 0;
        }
        size += len + 1;
        batch.push(event);
    }
    if !batch.is_empty() {
        out.push(envelope(from, batch));
    }
    out
}

fn envelope(from: &str, events: Vec<Event>) -> String {
    serde_json::to_string(&Envelope {
        from: from.to_string(),
        events,
    })
    .unwrap_or_default()
}

async fn publish(
    pool: PgPool,
    channel: String,
    from: String,
    mut queued: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(first) = queued.recv().await {
        let mut events = vec![first];
        let until = tokio::time::Instant::now() + BATCH_WINDOW;
        while let Ok(Some(e)) = tokio::time::timeout_at(until, queued.recv()).await {
            events.push(e);
        }
        while let Ok(e) = queued.try_recv() {
            events.push(e);
        }
        for payload in payloads(&from, events) {
            // A replica that cannot announce still serves its own devices; the others catch
            // up at their devices' next connection. Retry briefly, then log.
            let mut tries = 0;
            while let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&channel)
                .bind(&payload)
                .execute(&pool)
                .await
            {
                tries += 1;
                if tries >= 5 {
                    tracing::error!(error = %e, "could not tell the other controllers of a change");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
        }
    }
}

async fn listen(
    cluster: std::sync::Arc<Cluster>,
    mut listener: PgListener,
    arrivals: mpsc::Sender<Arrival>,
) {
    loop {
        match listener.try_recv().await {
            Ok(Some(note)) => {
                let Ok(envelope) = serde_json::from_str::<Envelope>(note.payload()) else {
                    tracing::warn!("ignored a cluster notification that is not Haven's");
                    continue;
                };
                if envelope.from == cluster.id {
                    continue;
                }
                let joined = envelope.events.contains(&Event::Joined);
                let rest: Vec<Event> = cluster
                    .receive(&envelope.from, envelope.events)
                    .into_iter()
                    .filter(|e| *e != Event::Joined)
                    .collect();
                if !rest.is_empty() && arrivals.send(Arrival::Events(rest)).await.is_err() {
                    return;
                }
                if joined && arrivals.send(Arrival::Joined).await.is_err() {
                    return;
                }
            }
            Ok(None) => {
                tracing::warn!("lost the connection that hears other controllers; catching up");
                if arrivals.send(Arrival::Resync).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot hear the other controllers; trying again");
                tokio::time::sleep(LEASE_RETRY).await;
            }
        }
    }
}

/// Holds the lease while this process lives; takes it when the holder's session ends.
async fn lease(cluster: std::sync::Arc<Cluster>, options: PgConnectOptions, key: i64) {
    loop {
        if let Ok(mut conn) = PgConnection::connect_with(&options).await {
            hold(&cluster, &mut conn, key).await;
            let _ = conn.close().await;
        }
        if cluster.leader.swap(false, Ordering::SeqCst) {
            tracing::warn!("this controller no longer runs the timed work");
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

/// Returns when the connection fails.
async fn hold(cluster: &Cluster, conn: &mut PgConnection, key: i64) {
    loop {
        let held = if cluster.is_leader() {
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
        };
        match held {
            Ok(true) => {
                if !cluster.leader.swap(true, Ordering::SeqCst) {
                    tracing::info!(
                        "this controller runs the timed work (lockdown ends, checkpoints, quiet devices)"
                    );
                }
            }
            Ok(false) => {}
            Err(_) => return,
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written() {
        let events = vec![
            Event::Policy {
                home: "home_1".into(),
                child: Some("child_1".into()),
                device: None,
                version: 7,
                at: 1,
            },
            Event::Applied {
                device: "device_1".into(),
                version: 7,
                failed: false,
            },
            Event::Joined,
        ];
        let out = payloads("replica_a", events.clone());
        assert_eq!(out.len(), 1);
        let back: Envelope = serde_json::from_str(&out[0]).unwrap();
        assert_eq!(back.from, "replica_a");
        assert_eq!(back.events, events);
    }

    #[test]
    fn many_events_split_into_payloads_postgres_accepts_in_order() {
        let events: Vec<Event> = (0..2_000)
            .map(|i| Event::Applied {
                device: format!("device_{i:032}"),
                version: i,
                failed: false,
            })
            .collect();
        let out = payloads("replica_a", events.clone());
        assert!(out.len() > 1);
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() < 8_000, "{} bytes", p.len());
            back.extend(serde_json::from_str::<Envelope>(p).unwrap().events);
        }
        assert_eq!(back, events);
    }

    #[test]
    fn a_dead_replicas_devices_are_forgotten() {
        let c = Cluster::single();
        let rest = c.receive(
            "replica_b",
            vec![
                Event::Online {
                    device: "device_1".into(),
                },
                Event::FilterLists,
            ],
        );
        assert_eq!(rest, vec![Event::FilterLists]);
        assert!(c.online_elsewhere("device_1"));
        {
            let mut p = c.presence.lock().unwrap();
            let long_ago = Instant::now().checked_sub(ALIVE_FOR * 2).unwrap();
            p.replicas.insert("replica_b".into(), long_ago);
        }
        assert!(!c.online_elsewhere("device_1"));
        c.held_here("device_2");
        let rest = c.receive(
            "replica_b",
            vec![Event::Offline {
                device: "device_2".into(),
            }],
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn two_schemas_never_share_a_channel_or_lease() {
        let a = Scope::named("test", "one");
        let b = Scope::named("test", "two");
        assert_ne!(a.channel, b.channel);
        assert_ne!(a.lock_key, b.lock_key);
        assert!(
            a.channel.len() < 63,
            "PostgreSQL identifiers are at most 63 bytes"
        );
    }

    #[test]
    fn one_controller_leads_and_announces_nothing() {
        let c = Cluster::single();
        assert!(c.is_leader());
        assert!(!c.is_shared());
        c.announce(Event::FilterLists);
    }

    /// A throwaway schema on the test PostgreSQL, or `None` (the test says SKIPPED).
    async fn schema() -> Option<(PgPool, String, PgConnectOptions)> {
        let url = std::env::var("HAVEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let Ok(options) = url.parse::<PgConnectOptions>() else {
            eprintln!("SKIPPED: HAVEN_TEST_DATABASE_URL is not a PostgreSQL address");
            return None;
        };
        let admin = match PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("SKIPPED: no PostgreSQL at {url}: {e}");
                return None;
            }
        };
        let name = crate::ids::new_id("cluster_test").replace('-', "_");
        // The name is made here from an id, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .ok()?;
        let scoped = options.options([("search_path", name.as_str())]);
        Some((admin, name, scoped))
    }

    async fn eventually(mut ok: impl FnMut() -> bool) {
        for _ in 0..200 {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not within 10 s");
    }

    #[tokio::test]
    async fn a_change_announced_by_one_replica_reaches_the_other_and_one_leads() {
        let Some((admin, name, options)) = schema().await else {
            return;
        };
        let (a, mut from_a) = Cluster::postgres(options.clone()).await.unwrap();
        let (b, mut at_b) = Cluster::postgres(options).await.unwrap();
        // B's start reached A as "joined".
        let mut joined = false;
        while let Ok(Some(arrival)) =
            tokio::time::timeout(Duration::from_secs(5), from_a.recv()).await
        {
            if arrival == Arrival::Joined {
                joined = true;
                break;
            }
        }
        assert!(joined);
        a.held_here("device_1");
        let change = Event::Policy {
            home: "home_1".into(),
            child: None,
            device: None,
            version: 9,
            at: 5,
        };
        a.announce(change.clone());
        let got = loop {
            match tokio::time::timeout(Duration::from_secs(5), at_b.recv()).await {
                Ok(Some(Arrival::Events(events))) => break events,
                Ok(Some(_)) => continue,
                other => panic!("nothing arrived: {other:?}"),
            }
        };
        assert_eq!(got, vec![change]);
        assert!(b.online_elsewhere("device_1"));
        assert!(!a.online_elsewhere("device_1"));
        eventually(|| a.is_leader() != b.is_leader()).await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
            .execute(&admin)
            .await;
    }
}
