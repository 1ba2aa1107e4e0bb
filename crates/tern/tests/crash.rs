//! Durability of the real binary: an acknowledgement is a promise (issue 4).
//!
//! - The kill -9 harness: QoS 1 and QoS 2 streams with sequence numbers from MQTT 5 and 3.1.1
//!   publishers to persistent subscribers (some online, some offline until the end) while the
//!   broker is killed with SIGKILL at pseudo-random moments and restarted on the same data
//!   directory; every acknowledged message must arrive (QoS 2 exactly once), in order per
//!   publisher, and retained messages must be intact. The seed is printed; replay a run with
//!   `TERN_CRASH_SEED=<seed>`. Figures are printed with `--nocapture`.
//! - Store failures injected into the real binary (`TERN_STORE_FAIL_COMMITS`, read only by
//!   builds with the `fault-injection` feature, which the tests turn on): no successful
//!   acknowledgement for a write that failed.
//! - Restarts (SIGTERM and kill -9): session and message expiry keep counting while the broker
//!   is down, retained messages, subscriptions with their options and identifiers, delayed
//!   wills, incoming QoS 2 packet identifiers and outgoing in-flight messages survive.
//! - A damaged or unusable store stops start-up with a message naming the file and the
//!   problem, and is left as it was.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{
    RawClient, TIMEOUT, TempDir, TempFile, Tern, V5, V311, conn5, connect_packet,
    serve_expect_exit, will,
};
use tern_client::{Client, ClientError, ConnectOptions, Event, SessionState};
use tern_codec::{
    Ack, ByteString, Connect, Disconnect, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, SubscriptionOptions,
};

// ---------------------------------------------------------------------------------------------
// The kill -9 harness
// ---------------------------------------------------------------------------------------------

/// Offline queues without limits: a copy refused for lack of room would be a 0x97 (MQTT 5) or
/// a silent drop (3.x), which is not what this harness measures.
const HARNESS_CONFIG: &str = "[mqtt]\nmax_queued_messages = 0\nmax_queued_bytes = 0\n\n\
                              [log]\nconnection_messages = false\n";

/// Outgoing QoS 1/2 messages a harness publisher keeps in flight.
const WINDOW: usize = 16;

/// How long every phase of a harness run may take at most.
const HARNESS_LIMIT: Duration = Duration::from_secs(150);

/// xorshift64*: reproducible pseudo-random numbers from a printed seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// `TERN_CRASH_SEED` if set, else the clock.
fn seed() -> u64 {
    match std::env::var("TERN_CRASH_SEED") {
        Ok(s) => s.trim().parse().expect("TERN_CRASH_SEED is a number"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    }
}

/// How a broker run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: a crash.
    Kill9,
    /// SIGTERM: graceful shutdown.
    Term,
}

/// When and how the broker is stopped and restarted during a harness run.
#[derive(Debug, Clone)]
struct Plan {
    /// While the publishers run: how long the broker runs, how it stops, how long it stays
    /// down.
    stops: Vec<(Duration, Stop, Duration)>,
    /// Once the publishers are done and the offline subscribers are draining: after how long
    /// the broker stops, and how.
    last: (Duration, Stop, Duration),
}

impl Plan {
    fn random(rng: &mut Rng) -> Self {
        let kills = rng.range(4, 9);
        let stops = (0..kills)
            .map(|_| {
                (
                    Duration::from_millis(rng.range(50, 1500)),
                    Stop::Kill9,
                    Duration::from_millis(rng.range(0, 400)),
                )
            })
            .collect();
        let last = (
            Duration::from_millis(rng.range(20, 400)),
            Stop::Kill9,
            Duration::from_millis(rng.range(0, 200)),
        );
        Self { stops, last }
    }
}

/// The broker of a harness run, restarted on the same data directory; clients read `addr`
/// each time they (re)connect.
struct Broker {
    tern: Option<Tern>,
    addr: Arc<Mutex<SocketAddr>>,
    args: Vec<String>,
    restarts: u32,
    same_port: u32,
}

impl Broker {
    fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap()
    }

    async fn bounce(&mut self, stop: Stop, down: Duration) {
        let tern = self.tern.take().expect("broker running");
        let args = self.args.clone();
        let old = tern.addr;
        let tern = tokio::task::spawn_blocking(move || {
            let dir = match stop {
                Stop::Kill9 => tern.kill9(),
                Stop::Term => tern.stop(),
            };
            std::thread::sleep(down);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Tern::restart(dir, old, &args)
        })
        .await
        .expect("restart");
        self.restarts += 1;
        if tern.addr == old {
            self.same_port += 1;
        }
        *self.addr.lock().unwrap() = tern.addr;
        self.tern = Some(tern);
    }
}

/// Options for a persistent session (Session Expiry "never" / Clean Session 0) at `addr`.
fn persistent_options(
    addr: SocketAddr,
    client_id: &str,
    version: ProtocolVersion,
) -> ConnectOptions {
    let mut o = ConnectOptions::to_addr(addr, client_id, version);
    o.clean_start = false;
    if version.is_v5() {
        o.session_expiry = Some(u32::MAX);
    }
    o.connect_timeout = Duration::from_secs(5);
    o
}

/// Reconnects with [`Client::resume`] until the broker answers (it may be down or restarting),
/// reading the broker's current address at each attempt.
async fn reconnect(
    addr: &Mutex<SocketAddr>,
    base: &ConnectOptions,
    state: &SessionState,
    deadline: Instant,
) -> Client {
    loop {
        let at = *addr.lock().unwrap();
        let mut o = base.clone();
        o.host = at.ip().to_string();
        o.port = at.port();
        if let Ok(client) = Client::resume(&o, state.clone()).await {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "{} could not reconnect in time",
            base.client_id
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A harness publisher.
#[derive(Debug, Clone)]
struct PubSpec {
    id: usize,
    version: ProtocolVersion,
    qos: QoS,
    /// `Some(n)`: a retained stream cycling over `keep/live/0..n` instead of `crash/...`.
    retained: Option<u64>,
    /// Pause after each message (keeps the volume bounded).
    pace: Duration,
}

impl PubSpec {
    fn client_id(&self) -> String {
        format!("crash-pub-{}", self.id)
    }

    fn topic(&self, seq: u64) -> String {
        match self.retained {
            None => format!("crash/{}/{}", self.qos as u8, self.id),
            Some(n) => format!("keep/live/{}", seq % n),
        }
    }

    fn message(&self, seq: u64) -> Publish {
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retained.is_some(),
            topic: ByteString::from(self.topic(seq)),
            packet_id: None,
            properties: PublishProperties::default(),
            payload: Bytes::from(format!("{}:{}:{}", self.id, seq, "x".repeat(48))),
        }
    }
}

/// Parses a harness payload: publisher id and sequence number.
fn parse_payload(payload: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(':');
    let id = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((id, seq))
}

/// What a publisher saw.
#[derive(Debug, Default)]
struct PubReport {
    /// Sequence numbers given out (0..published).
    published: u64,
    /// Sequence numbers whose PUBACK / PUBREC said success.
    acked: BTreeSet<u64>,
    /// Sequence numbers refused with an error code.
    rejected: Vec<(u64, ReasonCode)>,
    /// Sent but never acknowledged before the end.
    unacked_at_end: Vec<u64>,
    reconnects: u32,
    /// Reconnections that found no session on the broker.
    sessions_lost: u32,
}

/// Takes the acknowledgements the client has read.
fn collect_acks(
    client: &mut Client,
    qos: QoS,
    waiting: &mut HashMap<u16, u64>,
    report: &mut PubReport,
) {
    while let Some(event) = client.take_event() {
        if let Event::Acked { packet_id, reason } = event {
            let Some(seq) = waiting.remove(&packet_id.get()) else {
                continue;
            };
            // QoS 2 completes at PUBCOMP: "Packet Identifier not found" there means the broker
            // had already released the message before a restart, after a successful PUBREC
            // (the client sends PUBREL only after one).
            let ok = !reason.is_error()
                || (qos == QoS::ExactlyOnce && reason == ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
            if ok {
                report.acked.insert(seq);
            } else {
                report.rejected.push((seq, reason));
            }
        }
    }
}

/// Publishes `0, 1, 2...` until `stop`, then waits (until `deadline`) for the messages in
/// flight; reconnects with the session state whenever the connection is lost.
async fn publish_stream(
    spec: PubSpec,
    mut client: Client,
    base: ConnectOptions,
    addr: Arc<Mutex<SocketAddr>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) -> PubReport {
    let mut report = PubReport::default();
    // Packet identifier -> sequence number of the messages the client will re-send.
    let mut waiting: HashMap<u16, u64> = HashMap::new();
    // Sequence numbers to send (again) as new messages, before any new one.
    let mut retry: VecDeque<u64> = VecDeque::new();
    let mut next = 0u64;
    client.limit_inflight(WINDOW);
    loop {
        collect_acks(&mut client, spec.qos, &mut waiting, &mut report);
        let result: Result<(), ClientError> = if stop.load(Ordering::Relaxed) && retry.is_empty() {
            if waiting.is_empty() || Instant::now() >= deadline {
                break;
            }
            tokio::time::timeout(Duration::from_millis(500), client.wait_acknowledged())
                .await
                .unwrap_or(Ok(()))
        } else {
            let seq = retry.pop_front().unwrap_or_else(|| {
                next += 1;
                next - 1
            });
            match client.send_publish(spec.message(seq)).await {
                Ok(Some(id)) => {
                    waiting.insert(id.get(), seq);
                    tokio::time::sleep(spec.pace).await;
                    Ok(())
                }
                Ok(None) => unreachable!("QoS 1/2 messages get a packet identifier"),
                Err(e) => {
                    // Not completely written: the broker cannot have it; send it again.
                    retry.push_front(seq);
                    Err(e)
                }
            }
        };
        if result.is_err() {
            collect_acks(&mut client, spec.qos, &mut waiting, &mut report);
            let state = client.session_state();
            assert_eq!(
                state.unacknowledged(),
                waiting.len(),
                "{}: the client's unacknowledged messages are the harness's",
                spec.client_id()
            );
            drop(client);
            report.reconnects += 1;
            client = reconnect(&addr, &base, &state, deadline + Duration::from_secs(30)).await;
            client.limit_inflight(WINDOW);
            if !client.connack().session_present {
                // Nothing will be re-sent: send the unacknowledged messages again as new ones.
                report.sessions_lost += 1;
                let mut lost: Vec<u64> = waiting.drain().map(|(_, seq)| seq).collect();
                lost.sort_unstable();
                for seq in lost.into_iter().rev() {
                    retry.push_front(seq);
                }
            }
        }
    }
    report.published = next;
    report.unacked_at_end = waiting.values().copied().chain(retry).collect();
    report.unacked_at_end.sort_unstable();
    report
}

/// A harness subscriber.
#[derive(Debug, Clone)]
struct SubSpec {
    name: String,
    version: ProtocolVersion,
    /// Consumes during the run; otherwise only connects again at the end.
    online: bool,
}

/// How one QoS 2 delivery arrived: connection number (reconnections before it), DUP, packet
/// identifier.
type Arrival = (u32, bool, u16);

/// What a subscriber received.
#[derive(Debug, Default)]
struct SubLog {
    /// Publisher id -> sequence numbers in arrival order, every occurrence.
    got: HashMap<usize, Vec<u64>>,
    /// QoS 2 deliveries: (publisher, seq) -> (connection number, DUP, packet identifier) of
    /// each occurrence, to explain a duplicate.
    qos2: HashMap<(usize, u64), Vec<Arrival>>,
    /// Deliveries that do not match what was published (topic, QoS, payload).
    wrong: Vec<String>,
    reconnects: u32,
    sessions_lost: u32,
}

/// The subscription of every harness subscriber.
const HARNESS_FILTER: &str = "crash/#";

fn record(log: &Mutex<SubLog>, p: &Publish, publishers: &HashMap<usize, PubSpec>) {
    let mut log = log.lock().unwrap();
    let Some((id, seq)) = parse_payload(&p.payload) else {
        log.wrong
            .push(format!("unreadable payload on {}", &*p.topic));
        return;
    };
    match publishers.get(&id) {
        Some(spec) if spec.retained.is_none() => {
            if *p.topic != *spec.topic(seq) || p.qos != spec.qos {
                log.wrong.push(format!(
                    "{id}:{seq} arrived on {} at {:?}, published on {} at {:?}",
                    &*p.topic,
                    p.qos,
                    spec.topic(seq),
                    spec.qos
                ));
            }
        }
        _ => log
            .wrong
            .push(format!("unknown publisher {id} on {}", &*p.topic)),
    }
    log.got.entry(id).or_default().push(seq);
    if p.qos == QoS::ExactlyOnce {
        let occurrence = (log.reconnects, p.dup, p.packet_id.map_or(0, PacketId::get));
        log.qos2.entry((id, seq)).or_default().push(occurrence);
    }
}

/// Receives and records until `stop`, reconnecting with the session state whenever the
/// connection is lost.
async fn consume(
    mut client: Client,
    base: ConnectOptions,
    addr: Arc<Mutex<SocketAddr>>,
    log: Arc<Mutex<SubLog>>,
    publishers: Arc<HashMap<usize, PubSpec>>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), client.next_event()).await {
            Err(_) => {}
            Ok(Ok(Event::Message(p))) => record(&log, &p, &publishers),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => {
                // Packets read together with the one that ended the connection (a
                // DISCONNECT) are still queued as events.
                while let Some(event) = client.take_event() {
                    if let Event::Message(p) = event {
                        record(&log, &p, &publishers);
                    }
                }
                let state = client.session_state();
                drop(client);
                client = reconnect(&addr, &base, &state, deadline).await;
                let present = client.connack().session_present;
                {
                    let mut l = log.lock().unwrap();
                    l.reconnects += 1;
                    l.sessions_lost += u32::from(!present);
                }
                if !present {
                    let _ = client
                        .subscribe(
                            &[(
                                HARNESS_FILTER,
                                SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                            )],
                            None,
                        )
                        .await;
                }
            }
        }
    }
}

/// Per-QoS totals of a harness run.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    published: u64,
    acked: u64,
    /// Acknowledged messages times the subscribers that must get them.
    expected: u64,
    /// Of `expected`, delivered at least once.
    delivered: u64,
    /// Of `expected`, never delivered.
    lost: u64,
    /// Deliveries of a message a subscriber had already received.
    duplicates: u64,
    /// Deliveries of messages that were never acknowledged (allowed).
    unacked_delivered: u64,
    /// First occurrences out of publication order.
    out_of_order: u64,
}

/// The clients of a harness run.
struct Cast {
    publishers: Vec<PubSpec>,
    subscribers: Vec<SubSpec>,
}

impl PubSpec {
    fn new(id: usize, version: ProtocolVersion, qos: QoS, pace_ms: u64) -> Self {
        Self {
            id,
            version,
            qos,
            retained: None,
            pace: Duration::from_millis(pace_ms),
        }
    }
}

impl SubSpec {
    fn new(name: &str, version: ProtocolVersion, online: bool) -> Self {
        Self {
            name: name.to_owned(),
            version,
            online,
        }
    }
}

impl Cast {
    /// Three QoS 1 and three QoS 2 stream publishers (MQTT 5 and 3.1.1), one retained stream,
    /// three online and two offline subscribers (MQTT 5 and 3.1.1).
    fn standard() -> Self {
        Self {
            publishers: vec![
                PubSpec::new(1, V5, QoS::AtLeastOnce, 1),
                PubSpec::new(2, V311, QoS::AtLeastOnce, 1),
                PubSpec::new(3, V5, QoS::AtLeastOnce, 2),
                PubSpec::new(4, V5, QoS::ExactlyOnce, 1),
                PubSpec::new(5, V311, QoS::ExactlyOnce, 1),
                PubSpec::new(6, V311, QoS::ExactlyOnce, 2),
                PubSpec {
                    retained: Some(4),
                    ..PubSpec::new(7, V5, QoS::AtLeastOnce, 10)
                },
            ],
            subscribers: vec![
                SubSpec::new("crash-sub-on-5a", V5, true),
                SubSpec::new("crash-sub-on-5b", V5, true),
                SubSpec::new("crash-sub-on-311", V311, true),
                SubSpec::new("crash-sub-off-5", V5, false),
                SubSpec::new("crash-sub-off-311", V311, false),
            ],
        }
    }

    /// QoS 2 only, fanned out to many persistent subscribers: each message is many store
    /// writes (one per subscriber, and the publisher's packet identifier).
    fn qos2_fanout() -> Self {
        let mut subscribers = Vec::new();
        for i in 0..12 {
            let version = if i % 2 == 0 { V5 } else { V311 };
            let online = i < 4;
            subscribers.push(SubSpec::new(&format!("crash-fan-{i}"), version, online));
        }
        Self {
            publishers: vec![
                PubSpec::new(11, V5, QoS::ExactlyOnce, 0),
                PubSpec::new(12, V311, QoS::ExactlyOnce, 0),
                PubSpec::new(13, V5, QoS::ExactlyOnce, 1),
            ],
            subscribers,
        }
    }
}

/// Runs the harness: sets up the clients, stops and restarts the broker as `plan` says while
/// the publishers run, drains, checks, prints and returns the totals for QoS 1 and QoS 2.
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
async fn run_harness(label: &str, plan: Plan, cast: Cast) -> [Totals; 2] {
    let Cast {
        publishers,
        subscribers,
    } = cast;
    let limit = Instant::now() + HARNESS_LIMIT;
    let config = TempFile::new("toml", HARNESS_CONFIG);
    let args = vec![
        "--config".to_owned(),
        config.path.to_string_lossy().into_owned(),
    ];
    let first = {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend(args.iter().map(String::as_str));
        Tern::spawn_in(&full, None, TempDir::new())
    };
    let mut broker = Broker {
        addr: Arc::new(Mutex::new(first.addr)),
        tern: Some(first),
        args,
        restarts: 0,
        same_port: 0,
    };

    let by_id: Arc<HashMap<usize, PubSpec>> =
        Arc::new(publishers.iter().map(|p| (p.id, p.clone())).collect());

    // Subscribers: persistent sessions subscribed to everything the stream publishers send;
    // the offline ones leave at once.
    let mut online = Vec::new();
    for s in &subscribers {
        let base = persistent_options(broker.addr(), &s.name, s.version);
        let mut client = Client::connect(&base).await.expect("subscriber connects");
        let granted = client
            .subscribe(
                &[(
                    HARNESS_FILTER,
                    SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                )],
                None,
            )
            .await
            .expect("subscribe");
        assert_eq!(granted, [ReasonCode::GRANTED_QOS_2]);
        if s.online {
            online.push((s.clone(), client, base));
        } else {
            client.disconnect().await.expect("disconnect");
        }
    }
    let mut pub_clients = Vec::new();
    for p in &publishers {
        let base = persistent_options(broker.addr(), &p.client_id(), p.version);
        let client = Client::connect(&base).await.expect("publisher connects");
        pub_clients.push((p.clone(), client, base));
    }

    // Retained messages set before any crash. Their acknowledgements also make every session
    // and subscription above durable: the store commits in order.
    let fixed: BTreeMap<String, Vec<u8>> = (0..40)
        .map(|i| {
            (
                format!("keep/fixed/{i}"),
                format!("fixed retained {i}").into_bytes(),
            )
        })
        .collect();
    {
        let mut c = RawClient::connect(broker.addr(), V5, "crash-retain-setter").await;
        for (i, (topic, payload)) in fixed.iter().enumerate() {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            let reason = c.publish(topic, payload, qos, true).await;
            assert!(!reason.is_error(), "retained {topic}: {reason}");
        }
        c.disconnect().await;
    }

    // The run.
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let logs: HashMap<String, Arc<Mutex<SubLog>>> = subscribers
        .iter()
        .map(|s| (s.name.clone(), Arc::new(Mutex::new(SubLog::default()))))
        .collect();
    let mut consumers = Vec::new();
    for (s, client, base) in online {
        consumers.push(tokio::spawn(consume(
            client,
            base,
            broker.addr.clone(),
            logs[&s.name].clone(),
            by_id.clone(),
            stop_consuming.clone(),
            limit,
        )));
    }
    let mut producers = Vec::new();
    for (p, client, base) in pub_clients {
        producers.push(tokio::spawn(publish_stream(
            p,
            client,
            base,
            broker.addr.clone(),
            stop_publishing.clone(),
            limit,
        )));
    }
    let started = Instant::now();
    for &(run, stop, down) in &plan.stops {
        tokio::time::sleep(run).await;
        eprintln!(
            "{label}: {stop:?} at {:?}, down {down:?}",
            started.elapsed()
        );
        broker.bounce(stop, down).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_publishing.store(true, Ordering::Relaxed);
    let mut reports = Vec::new();
    for (p, task) in publishers.iter().zip(producers) {
        let report = tokio::time::timeout_at(limit.into(), task)
            .await
            .expect("publisher finishes in time")
            .expect("publisher task");
        reports.push((p.clone(), report));
    }
    let published_for = started.elapsed();

    // The offline subscribers come back; the broker stops once more while they drain.
    for s in subscribers.iter().filter(|s| !s.online) {
        let base = persistent_options(broker.addr(), &s.name, s.version);
        let client = reconnect(&broker.addr, &base, &SessionState::default(), limit).await;
        assert!(
            client.connack().session_present,
            "{}: the offline session survived",
            s.name
        );
        consumers.push(tokio::spawn(consume(
            client,
            base,
            broker.addr.clone(),
            logs[&s.name].clone(),
            by_id.clone(),
            stop_consuming.clone(),
            limit,
        )));
    }
    let (after, stop, down) = plan.last;
    tokio::time::sleep(after).await;
    eprintln!(
        "{label}: {stop:?} at {:?} while draining, down {down:?}",
        started.elapsed()
    );
    broker.bounce(stop, down).await;

    // Bounded drain: until every subscriber has every acknowledged message.
    let streams: Vec<&(PubSpec, PubReport)> = reports
        .iter()
        .filter(|(p, _)| p.retained.is_none())
        .collect();
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let complete = logs.values().all(|log| {
            let log = log.lock().unwrap();
            streams.iter().all(|(p, r)| {
                let got: HashSet<u64> = log
                    .got
                    .get(&p.id)
                    .map(|v| v.iter().copied().collect())
                    .unwrap_or_default();
                r.acked.iter().all(|s| got.contains(s))
            })
        });
        if complete || Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late duplicates would arrive now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_consuming.store(true, Ordering::Relaxed);
    for task in consumers {
        tokio::time::timeout_at(limit.into(), task)
            .await
            .expect("subscriber stops in time")
            .expect("subscriber task");
    }

    // Retained messages: the fixed ones intact, the live ones at least at their last
    // acknowledged value.
    let retained = read_retained(broker.addr(), "keep/#", &fixed, &reports).await;

    // Figures.
    let mut totals = [Totals::default(); 2];
    let mut problems = Vec::new();
    for (p, r) in &streams {
        let t = &mut totals[p.qos as usize - 1];
        t.published += r.published;
        t.acked += r.acked.len() as u64;
        if r.sessions_lost > 0 {
            problems.push(format!(
                "{}: session not present after {} of {} reconnections",
                p.client_id(),
                r.sessions_lost,
                r.reconnects
            ));
        }
        if !r.rejected.is_empty() {
            problems.push(format!("{}: refused {:?}", p.client_id(), r.rejected));
        }
    }
    for s in &subscribers {
        let log = logs[&s.name].lock().unwrap();
        if log.sessions_lost > 0 {
            problems.push(format!(
                "{}: session not present after {} of {} reconnections",
                s.name, log.sessions_lost, log.reconnects
            ));
        }
        for w in log.wrong.iter().take(5) {
            problems.push(format!("{}: {w}", s.name));
        }
        for (p, r) in &streams {
            let t = &mut totals[p.qos as usize - 1];
            let got = log.got.get(&p.id).map(Vec::as_slice).unwrap_or_default();
            let mut seen = HashSet::new();
            let mut firsts = Vec::new();
            for &seq in got {
                if seen.insert(seq) {
                    firsts.push(seq);
                } else {
                    t.duplicates += 1;
                }
                if seq >= r.published {
                    problems.push(format!("{}: {}:{seq} was never published", s.name, p.id));
                }
            }
            if p.qos == QoS::ExactlyOnce && firsts.len() < got.len() {
                let mut counted = HashSet::new();
                let twice: Vec<u64> = got
                    .iter()
                    .copied()
                    .filter(|x| !counted.insert(*x))
                    .collect();
                let how: Vec<_> = twice
                    .iter()
                    .take(5)
                    .map(|x| (x, log.qos2.get(&(p.id, *x))))
                    .collect();
                problems.push(format!(
                    "{}: from {}: QoS 2 messages delivered more than once: {:?} (connection, \
                     DUP, packet id of each: {how:?})",
                    s.name,
                    p.id,
                    &twice[..twice.len().min(10)]
                ));
            }
            let disorder = firsts.windows(2).filter(|w| w[0] > w[1]).count() as u64;
            if disorder > 0 {
                let at = firsts.windows(2).find(|w| w[0] > w[1]).unwrap_or(&[0, 0]);
                problems.push(format!(
                    "{}: from {}: {disorder} out of order (first: {} before {})",
                    s.name, p.id, at[0], at[1]
                ));
            }
            t.out_of_order += disorder;
            let missing: Vec<u64> = r
                .acked
                .iter()
                .copied()
                .filter(|x| !seen.contains(x))
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{}: from {}: {} acknowledged messages lost, first {:?}",
                    s.name,
                    p.id,
                    missing.len(),
                    &missing[..missing.len().min(10)]
                ));
            }
            t.expected += r.acked.len() as u64;
            t.lost += missing.len() as u64;
            t.delivered += r.acked.len() as u64 - missing.len() as u64;
            t.unacked_delivered += seen.iter().filter(|x| !r.acked.contains(x)).count() as u64;
        }
    }
    problems.extend(retained);

    eprintln!(
        "{label}: published for {published_for:?}; {} broker restarts ({} on the same port)",
        broker.restarts, broker.same_port
    );
    for (p, r) in &reports {
        eprintln!(
            "{label}:   {} ({:?}, QoS {}{}): published {}, acknowledged {}, refused {}, \
             unacknowledged at the end {}, reconnections {}",
            p.client_id(),
            p.version,
            p.qos as u8,
            if p.retained.is_some() {
                ", retained"
            } else {
                ""
            },
            r.published,
            r.acked.len(),
            r.rejected.len(),
            r.unacked_at_end.len(),
            r.reconnects
        );
    }
    for (qos, t) in totals.iter().enumerate() {
        eprintln!(
            "{label}: QoS {}: published {}, acknowledged {}, to deliver {} (acknowledged x \
             subscribers), delivered {}, lost {}, duplicates {}, out of order {}, \
             unacknowledged but delivered {}",
            qos + 1,
            t.published,
            t.acked,
            t.expected,
            t.delivered,
            t.lost,
            t.duplicates,
            t.out_of_order,
            t.unacked_delivered
        );
    }
    if !problems.is_empty() {
        let logs = broker.tern.as_ref().map(Tern::logs).unwrap_or_default();
        let tail: Vec<&str> = logs.lines().rev().take(30).collect();
        eprintln!(
            "{label}: broker log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    assert!(problems.is_empty(), "{label}: {problems:#?}");
    let [q1, q2] = totals;
    assert!(q1.acked + q2.acked > 0, "{label}: nothing was acknowledged");
    assert_eq!(q1.lost + q2.lost, 0, "{label}: acknowledged messages lost");
    assert_eq!(q2.duplicates, 0, "{label}: QoS 2 delivered more than once");
    assert_eq!(
        q1.out_of_order + q2.out_of_order,
        0,
        "{label}: order per publisher"
    );
    totals
}

/// Reads the retained messages under `filter` with a new client and checks them: every
/// `fixed` one exactly, and for the live retained streams at least the last acknowledged
/// value of each topic. Returns the problems found.
async fn read_retained(
    addr: SocketAddr,
    filter: &str,
    fixed: &BTreeMap<String, Vec<u8>>,
    reports: &[(PubSpec, PubReport)],
) -> Vec<String> {
    // Topic -> the lowest acceptable sequence number of the live streams.
    let mut live_min: BTreeMap<String, u64> = BTreeMap::new();
    let mut live_topics = HashSet::new();
    for (p, r) in reports.iter().filter(|(p, _)| p.retained.is_some()) {
        for seq in 0..r.published {
            live_topics.insert(p.topic(seq));
        }
        for &seq in &r.acked {
            let e = live_min.entry(p.topic(seq)).or_insert(seq);
            *e = (*e).max(seq);
        }
    }
    let mut c = RawClient::connect(addr, V5, "crash-retained-reader").await;
    assert_eq!(
        c.subscribe(filter, QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    let mut got: BTreeMap<String, Bytes> = BTreeMap::new();
    let mut problems = Vec::new();
    loop {
        let complete = fixed.keys().all(|t| got.contains_key(t))
            && live_min.keys().all(|t| got.contains_key(t));
        let wait = if complete { common::QUIET } else { TIMEOUT };
        match c.next(wait).await {
            Ok(Some(Packet::Publish(p))) => {
                c.ack(&p).await;
                if !p.retain {
                    problems.push(format!("retained {} without RETAIN", &*p.topic));
                }
                if got.insert(p.topic.to_string(), p.payload).is_some() {
                    problems.push(format!("retained {} sent twice", &*p.topic));
                }
            }
            Ok(Some(other)) => problems.push(format!("unexpected {other:?}")),
            Ok(None) => panic!("the broker closed the retained reader's connection"),
            Err(_) => break,
        }
    }
    for (topic, payload) in fixed {
        match got.get(topic) {
            Some(p) if p[..] == payload[..] => {}
            Some(p) => problems.push(format!("retained {topic}: {p:?}, set to {payload:?}")),
            None => problems.push(format!("retained {topic} lost")),
        }
    }
    for (topic, payload) in &got {
        if fixed.contains_key(topic) {
            continue;
        }
        if !live_topics.contains(topic) {
            problems.push(format!("retained {topic} was never set"));
            continue;
        }
        let seq = parse_payload(payload).map(|(_, s)| s);
        if let (Some(min), Some(seq)) = (live_min.get(topic), seq)
            && seq < *min
        {
            problems.push(format!(
                "retained {topic} went back to {seq} after {min} was acknowledged"
            ));
        }
    }
    for topic in live_min.keys() {
        if !got.contains_key(topic) {
            problems.push(format!("retained {topic} lost"));
        }
    }
    problems
}

/// MQTT-4.4.0-1, MQTT-4.3.3-10 and the durability promise, end to end: QoS 1 and QoS 2
/// streams from MQTT 5 and 3.1.1 publishers to online and offline persistent subscribers
/// while the broker is killed with SIGKILL at pseudo-random moments (at least four times)
/// and restarted on the same data directory. Every acknowledged message is delivered to
/// every subscriber (QoS 2 exactly once), first occurrences in publication order, and the
/// retained messages are intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_harness_acknowledged_messages_survive_random_crashes() {
    let seed = seed();
    eprintln!("kill -9 harness: seed {seed} (replay with TERN_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let plan = Plan::random(&mut rng);
    eprintln!("kill -9 harness: plan {plan:?}");
    run_harness(
        &format!("kill -9 harness (seed {seed})"),
        plan,
        Cast::standard(),
    )
    .await;
}

/// Graceful shutdown (SIGTERM) in the middle of the same streams loses nothing that was
/// acknowledged, and the broker exits with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_graceful_shutdown_loses_nothing_acknowledged() {
    let plan = Plan {
        stops: vec![
            (
                Duration::from_millis(800),
                Stop::Term,
                Duration::from_millis(100),
            ),
            (Duration::from_millis(600), Stop::Term, Duration::ZERO),
        ],
        last: (Duration::from_millis(100), Stop::Term, Duration::ZERO),
    };
    run_harness("SIGTERM", plan, Cast::standard()).await;
}

// ---------------------------------------------------------------------------------------------
// Restarts: what survives and what keeps counting
// ---------------------------------------------------------------------------------------------

/// Connects with `packet`, asserts success, and returns the client and Session Present.
async fn connect_ok(addr: SocketAddr, packet: Connect) -> (RawClient, bool) {
    let id = packet.client_id.to_string();
    let (c, ack) = RawClient::connect_with(addr, packet).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    (c, ack.session_present)
}

/// A CONNECT for a persistent session: MQTT 5 with Session Expiry `expiry`, 3.x with Clean
/// Session 0 (and `clean` ignored).
fn persistent(version: ProtocolVersion, id: &str, clean: bool, expiry: u32) -> Connect {
    if version.is_v5() {
        conn5(id, clean, Some(expiry))
    } else {
        connect_packet(version, id, false)
    }
}

/// Makes everything the broker has submitted to its store so far durable before the test
/// goes on: a QoS 1 retained message is acknowledged only once its write is committed, and
/// the store commits in submission order.
async fn barrier(addr: SocketAddr) {
    let mut c = RawClient::connect(addr, V5, "crash-barrier").await;
    let reason = c
        .publish("crash-barrier", b"barrier", QoS::AtLeastOnce, true)
        .await;
    assert!(!reason.is_error(), "barrier: {reason}");
    c.disconnect().await;
}

/// kill -9, then a restart on the same data directory.
fn crash(tern: Tern) -> Tern {
    let addr = tern.addr;
    Tern::restart(tern.kill9(), addr, &[])
}

/// kill -9, `down` with no broker, then a restart on the same data directory.
fn crash_for(tern: Tern, down: Duration) -> Tern {
    let addr = tern.addr;
    let dir = tern.kill9();
    std::thread::sleep(down);
    Tern::restart(dir, addr, &[])
}

/// SIGTERM, `down` with no broker, then a restart on the same data directory.
fn stop_for(tern: Tern, down: Duration) -> Tern {
    let addr = tern.addr;
    let dir = tern.stop();
    std::thread::sleep(down);
    Tern::restart(dir, addr, &[])
}

/// Publishes with the given properties and returns the PUBACK reason (QoS 1 only; the client
/// must not be subscribed to the topic).
async fn publish_with(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    retain: bool,
    properties: PublishProperties,
) -> ReasonCode {
    let id = PacketId::new(0x0202).unwrap();
    let mut p = common::publish(topic, payload, QoS::AtLeastOnce, retain, Some(id));
    p.properties = properties;
    c.send(&Packet::Publish(p)).await;
    match c.recv().await {
        Packet::PubAck(a) => {
            assert_eq!(a.packet_id, id);
            a.reason
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

fn expiring(seconds: u32) -> PublishProperties {
    PublishProperties {
        message_expiry_interval: Some(seconds),
        ..PublishProperties::default()
    }
}

/// The next PUBLISH, with a clear failure if something else comes.
async fn next_publish(c: &mut RawClient, what: &str) -> Publish {
    match c.recv().await {
        Packet::Publish(p) => p,
        other => panic!("{what}: expected PUBLISH, got {other:?}"),
    }
}

/// Acknowledges `received` (already all read): PUBACK or PUBREC for each, then PUBCOMP for
/// each PUBREL. Unlike [`RawClient::ack`], it does not expect the PUBREL before the next
/// PUBLISH, which the broker may send first.
async fn ack_all(c: &mut RawClient, received: &[Publish]) {
    let mut releases = HashSet::new();
    for p in received {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => c.send(&Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                c.send(&Packet::PubRec(Ack::new(id))).await;
                releases.insert(id);
            }
            _ => {}
        }
    }
    while !releases.is_empty() {
        match c.recv().await {
            Packet::PubRel(a) if releases.remove(&a.packet_id) => {
                c.send(&Packet::PubComp(Ack::new(a.packet_id))).await;
            }
            other => panic!("expected PUBREL for {releases:?}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn mqtt5_3_1_2_23_session_survives_kill9_with_its_queued_message() {
    let tern = Tern::start();
    let (mut s, present) = connect_ok(tern.addr, conn5("s23", true, Some(60))).await;
    assert!(!present);
    assert_eq!(
        s.subscribe("s23/t", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    s.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V5, "s23-pub").await;
    // PUBACK: the message is stored for the offline session.
    assert_eq!(
        p.publish("s23/t", b"queued", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    drop(p);

    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, conn5("s23", false, Some(60))).await;
    assert!(present, "the session survives the crash (MQTT-3.1.2-23)");
    let m = next_publish(&mut s, "queued message").await;
    assert_eq!(
        (&*m.topic, &m.payload[..], m.qos),
        ("s23/t", &b"queued"[..], QoS::AtLeastOnce)
    );
    s.ack(&m).await;
    // The subscription came back with the session.
    let mut p = RawClient::connect(tern.addr, V5, "s23-pub").await;
    assert_eq!(
        p.publish("s23/t", b"live", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    let m = next_publish(&mut s, "message after the restart").await;
    assert_eq!(&m.payload[..], b"live");
}

/// A session of 2 s is gone after the broker was stopped for 3 s: its expiry counted while
/// the broker was down (wall-clock time). A session of 60 s is still there.
#[tokio::test]
async fn mqtt5_4_1_0_2_session_expiry_keeps_counting_while_broker_is_stopped() {
    let tern = Tern::start();
    for (id, expiry) in [("exp-short", 2), ("exp-long", 60)] {
        let (mut c, _) = connect_ok(tern.addr, conn5(id, true, Some(expiry))).await;
        assert_eq!(
            c.subscribe("exp/t", QoS::AtLeastOnce).await,
            [ReasonCode::GRANTED_QOS_1]
        );
        c.disconnect().await;
    }
    let tern = stop_for(tern, Duration::from_secs(3));
    let (_c, present) = connect_ok(tern.addr, conn5("exp-short", false, Some(2))).await;
    assert!(
        !present,
        "a 2 s session is discarded after 3 s without the broker (MQTT-4.1.0-2)"
    );
    let (_c, present) = connect_ok(tern.addr, conn5("exp-long", false, Some(60))).await;
    assert!(present, "a 60 s session is kept (MQTT-3.1.2-23)");
}

/// MQTT 3.1.1: a Clean Session 0 session and its subscription survive a crash.
#[tokio::test]
async fn mqtt311_3_1_2_4_persistent_session_resumed_after_kill9() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, connect_packet(V311, "s311", false)).await;
    assert_eq!(
        s.subscribe("s311/t", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    barrier(tern.addr).await;
    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, connect_packet(V311, "s311", false)).await;
    assert!(present, "Session Present 1 after the crash");
    let mut p = RawClient::connect(tern.addr, V311, "s311-pub").await;
    p.publish("s311/t", b"after", QoS::AtLeastOnce, false).await;
    let m = next_publish(&mut s, "message on the restored subscription").await;
    assert_eq!((&*m.topic, &m.payload[..]), ("s311/t", &b"after"[..]));
}

/// MQTT 3.1.1: QoS 1 and QoS 2 messages stored for a disconnected Clean Session 0 client
/// survive a crash and arrive in order with their QoS.
#[tokio::test]
async fn mqtt311_3_1_2_5_offline_messages_survive_kill9() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, connect_packet(V311, "o311", false)).await;
    assert_eq!(
        s.subscribe("o311/#", QoS::ExactlyOnce).await,
        [ReasonCode::GRANTED_QOS_2]
    );
    s.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "o311-pub").await;
    p.publish("o311/1", b"one", QoS::AtLeastOnce, false).await;
    p.publish("o311/2", b"two", QoS::ExactlyOnce, false).await;
    drop(p);
    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, connect_packet(V311, "o311", false)).await;
    assert!(present);
    let one = next_publish(&mut s, "QoS 1 message").await;
    assert_eq!((&one.payload[..], one.qos), (&b"one"[..], QoS::AtLeastOnce));
    s.ack(&one).await;
    let two = next_publish(&mut s, "QoS 2 message").await;
    assert_eq!((&two.payload[..], two.qos), (&b"two"[..], QoS::ExactlyOnce));
    s.ack(&two).await;
    s.expect_nothing().await;
}

/// A queued message whose 2 s expiry passed while the broker was stopped for 3 s is not
/// delivered; one of 60 s is.
#[tokio::test]
async fn mqtt5_3_3_2_5_queued_message_expires_while_broker_is_stopped() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("mx5", true, Some(300))).await;
    assert_eq!(
        s.subscribe("mx5/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    s.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V5, "mx5-pub").await;
    let short = publish_with(&mut p, "mx5/short", b"short", false, expiring(2)).await;
    let long = publish_with(&mut p, "mx5/long", b"long", false, expiring(60)).await;
    assert_eq!((short, long), (ReasonCode::SUCCESS, ReasonCode::SUCCESS));
    drop(p);
    let tern = stop_for(tern, Duration::from_secs(3));
    let (mut s, present) = connect_ok(tern.addr, conn5("mx5", false, Some(300))).await;
    assert!(present);
    let m = next_publish(&mut s, "the message that has not expired").await;
    assert_eq!(
        &*m.topic, "mx5/long",
        "the expired message is not delivered (MQTT-3.3.2-5)"
    );
    s.ack(&m).await;
    s.expect_nothing().await;
}

/// The Message Expiry Interval sent on after a crash is reduced by the time the message
/// waited, the time the broker was down included.
#[tokio::test]
async fn mqtt5_3_3_2_6_expiry_interval_reduced_by_time_broker_was_down() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("mx6", true, Some(300))).await;
    assert_eq!(
        s.subscribe("mx6/t", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    s.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V5, "mx6-pub").await;
    let sent = Instant::now();
    assert_eq!(
        publish_with(&mut p, "mx6/t", b"m", false, expiring(60)).await,
        ReasonCode::SUCCESS
    );
    drop(p);
    let tern = crash_for(tern, Duration::from_secs(2));
    let (mut s, _) = connect_ok(tern.addr, conn5("mx6", false, Some(300))).await;
    let m = next_publish(&mut s, "queued message").await;
    let waited = sent.elapsed().as_secs();
    let left = m
        .properties
        .message_expiry_interval
        .expect("the Message Expiry Interval is forwarded");
    assert!(
        left <= 58 && u64::from(left) + waited + 1 >= 60,
        "60 s minus the {waited} s waited, got {left} (MQTT-3.3.2-6)"
    );
}

/// Retained messages acknowledged before a crash come back after it: the last value of each
/// topic, with its QoS; a topic whose retained message was replaced keeps the new one.
#[tokio::test]
async fn mqtt5_3_3_1_5_retained_messages_survive_kill9() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V5, "rk-pub").await;
    p.publish("rk/a", b"A", QoS::AtLeastOnce, true).await;
    p.publish("rk/b", b"B", QoS::ExactlyOnce, true).await;
    p.publish("rk/c", b"C1", QoS::AtLeastOnce, true).await;
    p.publish("rk/c", b"C2", QoS::AtLeastOnce, true).await;
    drop(p);
    let tern = crash(tern);
    let mut s = RawClient::connect(tern.addr, V5, "rk-sub").await;
    assert_eq!(
        s.subscribe("rk/#", QoS::ExactlyOnce).await,
        [ReasonCode::GRANTED_QOS_2]
    );
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next_publish(&mut s, "retained message").await);
    }
    ack_all(&mut s, &received).await;
    s.expect_nothing().await;
    assert!(received.iter().all(|m| m.retain), "sent as retained");
    let got: BTreeMap<String, (Bytes, QoS)> = received
        .into_iter()
        .map(|m| (m.topic.to_string(), (m.payload, m.qos)))
        .collect();
    let want: BTreeMap<String, (Bytes, QoS)> = [
        ("rk/a", "A", QoS::AtLeastOnce),
        ("rk/b", "B", QoS::ExactlyOnce),
        ("rk/c", "C2", QoS::AtLeastOnce),
    ]
    .into_iter()
    .map(|(t, p, q)| (t.to_owned(), (Bytes::from(p), q)))
    .collect();
    assert_eq!(got, want);
}

/// A retained message cleared (empty payload) before a crash stays cleared after it.
#[tokio::test]
async fn mqtt5_3_3_1_6_cleared_retained_message_stays_cleared_after_kill9() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V5, "rd-pub").await;
    p.publish("rd/gone", b"D", QoS::AtLeastOnce, true).await;
    p.publish("rd/gone", b"", QoS::AtLeastOnce, true).await;
    p.publish("rd/kept", b"K", QoS::AtLeastOnce, true).await;
    drop(p);
    let tern = crash(tern);
    let mut s = RawClient::connect(tern.addr, V5, "rd-sub").await;
    s.subscribe("rd/#", QoS::AtLeastOnce).await;
    let m = next_publish(&mut s, "retained message").await;
    assert_eq!((&*m.topic, &m.payload[..]), ("rd/kept", &b"K"[..]));
    s.ack(&m).await;
    s.expect_nothing().await;
}

/// MQTT 3.1.1: a retained message survives a crash.
#[tokio::test]
async fn mqtt311_3_3_1_5_retained_message_survives_kill9() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "rk311-pub").await;
    p.publish("rk311/t", b"kept", QoS::ExactlyOnce, true).await;
    drop(p);
    let tern = crash(tern);
    let mut s = RawClient::connect(tern.addr, V311, "rk311-sub").await;
    s.subscribe("rk311/t", QoS::ExactlyOnce).await;
    let m = next_publish(&mut s, "retained message").await;
    assert_eq!(
        (&m.payload[..], m.qos, m.retain),
        (&b"kept"[..], QoS::ExactlyOnce, true)
    );
}

/// A retained message's expiry keeps counting while the broker is stopped: 2 s is gone after
/// 3 s down, 60 s is there with a reduced interval, no expiry is there without one.
#[tokio::test]
async fn mqtt5_s3_3_1_3_retained_message_expiry_keeps_counting_while_broker_is_stopped() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V5, "rx-pub").await;
    for (topic, props) in [
        ("rx/short", expiring(2)),
        ("rx/long", expiring(60)),
        ("rx/none", PublishProperties::default()),
    ] {
        assert!(
            !publish_with(&mut p, topic, b"r", true, props)
                .await
                .is_error()
        );
    }
    drop(p);
    let tern = stop_for(tern, Duration::from_secs(3));
    let mut s = RawClient::connect(tern.addr, V5, "rx-sub").await;
    s.subscribe("rx/#", QoS::AtLeastOnce).await;
    let mut got = BTreeMap::new();
    for _ in 0..2 {
        let m = next_publish(&mut s, "retained message").await;
        s.ack(&m).await;
        got.insert(m.topic.to_string(), m.properties.message_expiry_interval);
    }
    s.expect_nothing().await;
    assert_eq!(got.keys().collect::<Vec<_>>(), ["rx/long", "rx/none"]);
    assert_eq!(got["rx/none"], None);
    let left = got["rx/long"].expect("expiry forwarded");
    assert!(left <= 57, "60 s minus at least 3 s, got {left}");
}

/// Subscription identifiers and granted QoS are kept with a session across a crash: the
/// deliveries after the restart carry the identifier of their subscription.
#[tokio::test]
async fn mqtt5_3_3_4_3_subscription_identifiers_survive_kill9() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("sid", true, Some(300))).await;
    let one = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let two = SubscriptionOptions::with_qos(QoS::ExactlyOnce);
    assert_eq!(
        s.subscribe_with("sid/a", one, Some(7)).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        s.subscribe_with("sid/b/#", two, Some(9)).await,
        [ReasonCode::GRANTED_QOS_2]
    );
    barrier(tern.addr).await;
    let tern = crash(tern); // the subscriber is connected at the crash
    let (mut s, present) = connect_ok(tern.addr, conn5("sid", false, Some(300))).await;
    assert!(present);
    let mut p = RawClient::connect(tern.addr, V5, "sid-pub").await;
    p.publish("sid/a", b"a", QoS::ExactlyOnce, false).await;
    let m = next_publish(&mut s, "delivery on sid/a").await;
    assert_eq!(
        (
            &m.payload[..],
            m.qos,
            &m.properties.subscription_identifiers[..]
        ),
        (&b"a"[..], QoS::AtLeastOnce, &[7][..])
    );
    s.ack(&m).await;
    p.publish("sid/b/c", b"b", QoS::ExactlyOnce, false).await;
    let m = next_publish(&mut s, "delivery on sid/b/#").await;
    assert_eq!(
        (
            &m.payload[..],
            m.qos,
            &m.properties.subscription_identifiers[..]
        ),
        (&b"b"[..], QoS::ExactlyOnce, &[9][..])
    );
    s.ack(&m).await;
}

/// No Local survives a crash: the subscriber's own message is not sent back to it.
#[tokio::test]
async fn mqtt5_3_8_3_3_no_local_survives_kill9() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("nl", true, Some(300))).await;
    let options = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    assert_eq!(
        s.subscribe_with("nl/t", options, None).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    barrier(tern.addr).await;
    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, conn5("nl", false, Some(300))).await;
    assert!(present);
    let own = s.publish("nl/t", b"own", QoS::AtLeastOnce, false).await;
    assert!(!own.is_error(), "{own}");
    let mut p = RawClient::connect(tern.addr, V5, "nl-pub").await;
    p.publish("nl/t", b"other", QoS::AtLeastOnce, false).await;
    let m = next_publish(&mut s, "message of another client").await;
    assert_eq!(
        &m.payload[..],
        b"other",
        "its own message was not delivered"
    );
}

/// Retain As Published survives a graceful restart: RETAIN is kept on forwarded messages of
/// that subscription only.
#[tokio::test]
async fn mqtt5_3_3_1_13_retain_as_published_survives_restart() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("rap", true, Some(300))).await;
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    s.subscribe_with("rap/kept", rap, None).await;
    s.subscribe("rap/plain", QoS::AtLeastOnce).await;
    drop(s);
    let tern = stop_for(tern, Duration::ZERO);
    let (mut s, present) = connect_ok(tern.addr, conn5("rap", false, Some(300))).await;
    assert!(present);
    let mut p = RawClient::connect(tern.addr, V5, "rap-pub").await;
    p.publish("rap/kept", b"1", QoS::AtLeastOnce, true).await;
    let m = next_publish(&mut s, "retain as published").await;
    assert!(m.retain, "RETAIN kept (MQTT-3.3.1-13)");
    s.ack(&m).await;
    p.publish("rap/plain", b"2", QoS::AtLeastOnce, true).await;
    let m = next_publish(&mut s, "plain subscription").await;
    assert!(
        !m.retain,
        "RETAIN cleared without the option (MQTT-3.3.1-12)"
    );
}

/// A client with a Will Delay of 2 s leaves (DISCONNECT 0x04); the broker crashes before the
/// delay is over; after the restart the Will is published, not before 2 s after the
/// disconnection.
#[tokio::test]
async fn mqtt5_3_1_2_8_delayed_will_published_after_kill9() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("w8-sub", true, Some(300))).await;
    s.subscribe("w8/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut packet = conn5("w8", true, Some(300));
    let mut w = will("w8/t", b"gone", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(2);
    packet.will = Some(w);
    let (mut c, _) = connect_ok(tern.addr, packet).await;
    let left = Instant::now();
    c.send(&Packet::Disconnect(Disconnect::with_reason(
        ReasonCode::DISCONNECT_WITH_WILL,
    )))
    .await;
    c.expect_closed().await;
    barrier(tern.addr).await;
    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, conn5("w8-sub", false, Some(300))).await;
    assert!(present);
    let m = next_publish(&mut s, "the Will").await;
    assert_eq!((&*m.topic, &m.payload[..]), ("w8/t", &b"gone"[..]));
    assert!(
        left.elapsed() >= Duration::from_secs(2),
        "published {:?} after the disconnection, before its 2 s delay",
        left.elapsed()
    );
}

/// The same client connecting again after a restart, before the Will Delay is over, cancels
/// the Will.
#[tokio::test]
async fn mqtt5_3_1_3_9_reconnect_after_kill9_cancels_delayed_will() {
    let tern = Tern::start();
    let mut packet = conn5("w9", true, Some(300));
    let mut w = will("w9/t", b"gone", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(3);
    packet.will = Some(w);
    let (mut c, _) = connect_ok(tern.addr, packet).await;
    let left = Instant::now();
    c.send(&Packet::Disconnect(Disconnect::with_reason(
        ReasonCode::DISCONNECT_WITH_WILL,
    )))
    .await;
    c.expect_closed().await;
    barrier(tern.addr).await;
    let tern = crash(tern);
    let mut s = RawClient::connect(tern.addr, V5, "w9-sub").await;
    s.subscribe("w9/t", QoS::AtLeastOnce).await;
    let (_c, present) = connect_ok(tern.addr, conn5("w9", false, Some(300))).await;
    assert!(present);
    assert!(
        left.elapsed() < Duration::from_secs(3),
        "too slow to test: reconnected {:?} after leaving",
        left.elapsed()
    );
    match s.next(Duration::from_secs(4)).await {
        Err(_) => {}
        Ok(p) => panic!("the Will must not be published (MQTT-3.1.3-9), got {p:?}"),
    }
}

/// The Will of a client still connected when the broker crashed is published after the
/// restart (the broker may defer it to the restart, §3.1.2.5).
#[tokio::test]
async fn mqtt5_s3_1_2_5_will_of_client_connected_at_crash_published_after_restart() {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("wc-sub", true, Some(300))).await;
    s.subscribe("wc/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut packet = conn5("wc", true, Some(300));
    packet.will = Some(will("wc/t", b"crashed", QoS::AtLeastOnce, false));
    let (_c, _) = connect_ok(tern.addr, packet).await;
    barrier(tern.addr).await;
    let tern = crash(tern);
    let (mut s, _) = connect_ok(tern.addr, conn5("wc-sub", false, Some(300))).await;
    let m = next_publish(&mut s, "the Will").await;
    assert_eq!((&*m.topic, &m.payload[..]), ("wc/t", &b"crashed"[..]));
}

/// A QoS 2 message received (PUBREC sent) before a crash, re-sent by its publisher after the
/// restart with the same Packet Identifier, is acknowledged again and not forwarded again; the
/// identifier is still known at PUBREL.
async fn qos2_resend_after_kill9_not_forwarded_twice(version: ProtocolVersion) {
    let tern = Tern::start();
    let sub_id = format!("q2s-{version:?}");
    let pub_id = format!("q2p-{version:?}");
    let (mut s, _) = connect_ok(tern.addr, persistent(version, &sub_id, true, 300)).await;
    // QoS 0: nothing of the delivery itself is stored, so a second copy could only come from
    // the publisher's re-send.
    s.subscribe("q2/t", QoS::AtMostOnce).await;
    let (mut p, _) = connect_ok(tern.addr, persistent(version, &pub_id, true, 300)).await;
    let id = PacketId::new(7).unwrap();
    p.send(&Packet::Publish(common::publish(
        "q2/t",
        b"once",
        QoS::ExactlyOnce,
        false,
        Some(id),
    )))
    .await;
    match p.recv().await {
        Packet::PubRec(a) => assert_eq!((a.packet_id, a.reason), (id, ReasonCode::SUCCESS)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    assert_eq!(
        &next_publish(&mut s, "first copy").await.payload[..],
        b"once"
    );

    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, persistent(version, &sub_id, false, 300)).await;
    assert!(present);
    let (mut p, present) = connect_ok(tern.addr, persistent(version, &pub_id, false, 300)).await;
    assert!(present);
    let mut again = common::publish("q2/t", b"once", QoS::ExactlyOnce, false, Some(id));
    again.dup = true;
    p.send(&Packet::Publish(again)).await;
    match p.recv().await {
        Packet::PubRec(a) => assert_eq!((a.packet_id, a.reason), (id, ReasonCode::SUCCESS)),
        other => panic!("expected PUBREC again, got {other:?}"),
    }
    s.expect_nothing().await;
    p.send(&Packet::PubRel(Ack::new(id))).await;
    match p.recv().await {
        Packet::PubComp(a) => assert_eq!(
            (a.packet_id, a.reason),
            (id, ReasonCode::SUCCESS),
            "the identifier survived the crash"
        ),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // After PUBCOMP the identifier starts a new message, which is forwarded.
    p.publish("q2/t", b"next", QoS::ExactlyOnce, false).await;
    assert_eq!(
        &next_publish(&mut s, "next message").await.payload[..],
        b"next"
    );
}

#[tokio::test]
async fn mqtt5_4_3_3_10_qos2_resend_after_kill9_not_forwarded_twice() {
    qos2_resend_after_kill9_not_forwarded_twice(V5).await;
}

#[tokio::test]
async fn mqtt311_4_3_3_2_qos2_resend_after_kill9_not_forwarded_twice() {
    qos2_resend_after_kill9_not_forwarded_twice(V311).await;
}

/// Deliveries sent but not acknowledged before a crash are re-sent on reconnection with DUP 1,
/// their original Packet Identifiers, in order.
async fn unacknowledged_resent_with_dup_after_kill9(version: ProtocolVersion) {
    let tern = Tern::start();
    let sub_id = format!("rd-{version:?}");
    let (mut s, _) = connect_ok(tern.addr, persistent(version, &sub_id, true, 300)).await;
    s.subscribe("rd/1", QoS::AtLeastOnce).await;
    s.subscribe("rd/2", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, version, "rd-pub").await;
    p.publish("rd/1", b"one", QoS::AtLeastOnce, false).await;
    p.publish("rd/2", b"two", QoS::ExactlyOnce, false).await;
    let first = next_publish(&mut s, "QoS 1 delivery").await;
    let second = next_publish(&mut s, "QoS 2 delivery").await;
    assert!(!first.dup && !second.dup);
    // Not acknowledged; make sure the broker's record of the sends is durable.
    barrier(tern.addr).await;

    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, persistent(version, &sub_id, false, 300)).await;
    assert!(present);
    for original in [&first, &second] {
        let m = next_publish(&mut s, "re-sent delivery").await;
        assert!(m.dup, "re-sent with DUP 1 (MQTT-4.4.0-1)");
        assert_eq!(
            (m.packet_id, &m.payload, m.qos),
            (original.packet_id, &original.payload, original.qos),
            "original identifier, payload and QoS, in order"
        );
        s.ack(&m).await;
    }
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_4_4_0_1_unacknowledged_publish_resent_with_dup_after_kill9() {
    unacknowledged_resent_with_dup_after_kill9(V5).await;
}

#[tokio::test]
async fn mqtt311_4_4_0_1_unacknowledged_publish_resent_with_dup_after_kill9() {
    unacknowledged_resent_with_dup_after_kill9(V311).await;
}

/// A PUBREL sent before a crash (the subscriber answered PUBREC but not PUBCOMP) is re-sent
/// after the restart with the same identifier, and the PUBLISH is not.
async fn pubrel_resent_after_kill9(version: ProtocolVersion) {
    let tern = Tern::start();
    let sub_id = format!("pr-{version:?}");
    let (mut s, _) = connect_ok(tern.addr, persistent(version, &sub_id, true, 300)).await;
    s.subscribe("pr/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, version, "pr-pub").await;
    p.publish("pr/t", b"m", QoS::ExactlyOnce, false).await;
    let m = next_publish(&mut s, "QoS 2 delivery").await;
    let id = m.packet_id.expect("QoS 2 has an identifier");
    s.send(&Packet::PubRec(Ack::new(id))).await;
    match s.recv().await {
        // PUBREL leaves only once the "released" state is durable.
        Packet::PubRel(a) => assert_eq!(a.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    let tern = crash(tern);
    let (mut s, present) = connect_ok(tern.addr, persistent(version, &sub_id, false, 300)).await;
    assert!(present);
    match s.recv().await {
        Packet::PubRel(a) => assert_eq!(a.packet_id, id, "PUBREL re-sent (MQTT-4.4.0-1)"),
        other => panic!("expected the PUBREL again, got {other:?}"),
    }
    s.send(&Packet::PubComp(Ack::new(id))).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_4_4_0_1_pubrel_resent_after_kill9() {
    pubrel_resent_after_kill9(V5).await;
}

#[tokio::test]
async fn mqtt311_4_4_0_1_pubrel_resent_after_kill9() {
    pubrel_resent_after_kill9(V311).await;
}

// ---------------------------------------------------------------------------------------------
// Store failures: no successful acknowledgement for a failed write
// ---------------------------------------------------------------------------------------------

/// `tern serve` on a new data directory whose store fails the given commits (1-based, counting
/// the commits that write something). Clients with Clean Start 1 and no Session Expiry write
/// nothing, so with only such clients the commits are the retained messages, in order.
fn start_failing(commits: &str) -> Tern {
    Tern::spawn_env(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TERN_STORE_FAIL_COMMITS", commits)],
        TempDir::new(),
    )
}

/// Sends a QoS 1/2 PUBLISH with identifier `id` and returns the first answer to it.
async fn send_and_answer(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    id: u16,
) -> Packet {
    let id = PacketId::new(id).unwrap();
    c.send(&Packet::Publish(common::publish(
        topic,
        payload,
        qos,
        retain,
        Some(id),
    )))
    .await;
    c.recv().await
}

/// MQTT 5: a QoS 1 message whose store write failed gets PUBACK 0x80 with a Reason String;
/// the writes before and after it succeed and are acknowledged with success.
#[tokio::test]
async fn store_commit_failure_mqtt5_puback_is_0x80_and_later_writes_succeed() {
    let tern = start_failing("2");
    let mut p = RawClient::connect(tern.addr, V5, "fi5").await;
    let mut answers = Vec::new();
    for (i, topic) in ["fi5/a", "fi5/b", "fi5/c"].into_iter().enumerate() {
        let id = i as u16 + 1;
        match send_and_answer(&mut p, topic, b"v", QoS::AtLeastOnce, true, id).await {
            Packet::PubAck(a) => {
                assert_eq!(a.packet_id.get(), id);
                answers.push((a.reason, a.properties.reason_string));
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert!(
        !answers[0].0.is_error(),
        "commit 1 succeeded: {:?}",
        answers[0]
    );
    assert_eq!(
        answers[1].0,
        ReasonCode::UNSPECIFIED_ERROR,
        "commit 2 failed"
    );
    let why = answers[1].1.as_deref().unwrap_or_default();
    assert!(
        why.contains("could not be stored"),
        "reason string: {why:?}"
    );
    assert!(
        !answers[2].0.is_error(),
        "commit 3 succeeded: {:?}",
        answers[2]
    );
    assert!(
        tern.logs().contains("could not commit"),
        "the failure is logged: {}",
        tern.logs()
    );
}

/// MQTT 5 QoS 2: PUBREC 0x80 ends the exchange; the same Packet Identifier then starts a new
/// message (MQTT-4.3.3-9), which is stored and acknowledged with success.
#[tokio::test]
async fn mqtt5_4_3_3_9_identifier_after_failed_store_pubrec_is_a_new_message() {
    let tern = start_failing("1");
    let mut s = RawClient::connect(tern.addr, V5, "fi9-sub").await;
    s.subscribe("fi9/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V5, "fi9").await;
    match send_and_answer(&mut p, "fi9/t", b"first", QoS::ExactlyOnce, true, 9).await {
        Packet::PubRec(a) => assert_eq!(
            (a.packet_id.get(), a.reason),
            (9, ReasonCode::UNSPECIFIED_ERROR)
        ),
        other => panic!("expected PUBREC 0x80, got {other:?}"),
    }
    match send_and_answer(&mut p, "fi9/t", b"second", QoS::ExactlyOnce, true, 9).await {
        Packet::PubRec(a) => assert_eq!((a.packet_id.get(), a.reason), (9, ReasonCode::SUCCESS)),
        other => panic!("expected PUBREC 0x00 for the new message, got {other:?}"),
    }
    p.send(&Packet::PubRel(Ack::new(PacketId::new(9).unwrap())))
        .await;
    match p.recv().await {
        Packet::PubComp(a) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    // The subscriber gets the second message (whatever became of the first).
    let mut received = Vec::new();
    while received
        .last()
        .is_none_or(|m: &Publish| &m.payload[..] != b"second")
    {
        received.push(next_publish(&mut s, "delivery").await);
    }
    ack_all(&mut s, &received).await;
}

/// MQTT 3.1.1 has no negative acknowledgement: a QoS 1 or QoS 2 message whose store write
/// failed gets no PUBACK / PUBREC (the client will send it again), the connection stays open,
/// and later writes are acknowledged. (The store retries a failed group with its next
/// commit, so only commit 2 is made to fail and every later one succeeds.)
async fn mqtt311_failed_write_gets_no_ack(qos: QoS) {
    let tern = start_failing("2");
    let mut p = RawClient::connect(tern.addr, V311, "fi311").await;
    let expect_ack = |packet: Packet, id: u16| match packet {
        Packet::PubAck(a) | Packet::PubRec(a) => assert_eq!(a.packet_id.get(), id),
        other => panic!("expected the acknowledgement of {id}, got {other:?}"),
    };
    // Commit 1: acknowledged.
    expect_ack(
        send_and_answer(&mut p, "fi311/a", b"v", qos, true, 1).await,
        1,
    );
    // Commit 2 fails: no PUBACK / PUBREC.
    p.send(&Packet::Publish(common::publish(
        "fi311/b",
        b"v",
        qos,
        true,
        Some(PacketId::new(2).unwrap()),
    )))
    .await;
    p.expect_nothing().await;
    // Later commits: the next answer is this one's, never a late one for 2.
    expect_ack(
        send_and_answer(&mut p, "fi311/c", b"v", qos, true, 3).await,
        3,
    );
}

#[tokio::test]
async fn store_commit_failure_mqtt311_qos1_gets_no_puback_and_later_writes_succeed() {
    mqtt311_failed_write_gets_no_ack(QoS::AtLeastOnce).await;
}

#[tokio::test]
async fn store_commit_failure_mqtt311_qos2_gets_no_pubrec_and_later_writes_succeed() {
    mqtt311_failed_write_gets_no_ack(QoS::ExactlyOnce).await;
}

/// The write that fails is a delivery to a persistent (offline) subscriber: the publisher
/// gets no successful acknowledgement for it, and the next message is acknowledged. The
/// store is prepared by a first broker without failures, so that the first commit of the
/// second one is the first publication.
async fn failed_delivery_write_is_not_acknowledged(version: ProtocolVersion) {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("fid-sub", true, Some(300))).await;
    s.subscribe("fid/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let addr = tern.addr;
    let dir = tern.stop();
    let tern = Tern::restart_env(dir, addr, &[], &[("TERN_STORE_FAIL_COMMITS", "1")]);
    let mut p = RawClient::connect(tern.addr, version, "fid-pub").await;
    match (
        version.is_v5(),
        send_and_answer_or_nothing(&mut p, "fid/t", b"first", 1).await,
    ) {
        (true, Some(Packet::PubAck(a))) => {
            assert_eq!(
                (a.packet_id.get(), a.reason),
                (1, ReasonCode::UNSPECIFIED_ERROR)
            );
        }
        (false, None) => {}
        (_, other) => panic!("no successful PUBACK for a failed write, got {other:?}"),
    }
    match send_and_answer_or_nothing(&mut p, "fid/t", b"second", 2).await {
        Some(Packet::PubAck(a)) => {
            assert_eq!((a.packet_id.get(), a.reason), (2, ReasonCode::SUCCESS));
        }
        other => panic!("expected PUBACK 2, got {other:?}"),
    }
}

/// Sends a QoS 1 PUBLISH and returns its answer, or `None` if nothing comes for a while.
async fn send_and_answer_or_nothing(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    id: u16,
) -> Option<Packet> {
    let id = PacketId::new(id).unwrap();
    c.send(&Packet::Publish(common::publish(
        topic,
        payload,
        QoS::AtLeastOnce,
        false,
        Some(id),
    )))
    .await;
    match c.next(common::QUIET).await {
        Ok(Some(p)) => Some(p),
        Ok(None) => panic!("connection closed"),
        Err(_) => None,
    }
}

#[tokio::test]
async fn store_commit_failure_for_persistent_subscriber_mqtt5_gets_0x80() {
    failed_delivery_write_is_not_acknowledged(V5).await;
}

#[tokio::test]
async fn store_commit_failure_for_persistent_subscriber_mqtt311_gets_no_puback() {
    failed_delivery_write_is_not_acknowledged(V311).await;
}

// ---------------------------------------------------------------------------------------------
// A damaged or unusable store stops start-up and is kept as it is
// ---------------------------------------------------------------------------------------------

/// The store file in a data directory.
fn store_file(dir: &TempDir) -> std::path::PathBuf {
    dir.path.join("tern.db")
}

/// A data directory holding a store with a persistent session and a retained message,
/// closed gracefully (everything in the main file).
async fn make_store() -> TempDir {
    let tern = Tern::start();
    let (mut s, _) = connect_ok(tern.addr, conn5("cs-sub", true, Some(300))).await;
    s.subscribe("cs/t", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V5, "cs-pub").await;
    p.publish("cs/t", b"kept", QoS::AtLeastOnce, true).await;
    drop(p);
    let dir = tern.stop();
    assert!(
        store_file(&dir).is_file(),
        "the store is {}",
        store_file(&dir).display()
    );
    dir
}

/// Damages the store with `damage`, starts `tern serve` on it and checks: non-zero exit, a
/// message naming the file and containing every `words`, and the file left as it was.
async fn refused(damage: impl FnOnce(&Path), words: &[&str]) -> String {
    let dir = make_store().await;
    let file = store_file(&dir);
    damage(&file);
    let before = std::fs::read(&file).expect("read the store");
    let (status, text) = serve_expect_exit(&dir.path);
    assert!(!status.success(), "tern must not start: {text}");
    assert!(
        text.contains(&*file.to_string_lossy()),
        "the message names {}: {text}",
        file.display()
    );
    for w in words {
        assert!(text.contains(w), "the message says {w:?}: {text}");
    }
    assert_eq!(
        std::fs::read(&file).expect("read the store again"),
        before,
        "the store is left as it was"
    );
    text
}

fn write_at(file: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open the store");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("write");
}

fn truncate(file: &Path, len: impl FnOnce(u64) -> u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open the store");
    let size = f.metadata().expect("size").len();
    f.set_len(len(size)).expect("truncate");
}

#[tokio::test]
async fn corrupt_store_truncated_file_stops_startup_and_is_kept() {
    refused(
        |f| truncate(f, |n| n - 1000),
        &["damaged", "truncated", "backup"],
    )
    .await;
}

#[tokio::test]
async fn corrupt_store_truncated_to_whole_pages_stops_startup_and_is_kept() {
    refused(|f| truncate(f, |n| n - 4096), &["damaged", "truncated"]).await;
}

#[tokio::test]
async fn corrupt_store_empty_file_stops_startup_and_is_kept() {
    refused(|f| truncate(f, |_| 0), &["damaged", "empty"]).await;
}

#[tokio::test]
async fn corrupt_store_garbage_header_stops_startup_and_is_kept() {
    refused(
        |f| write_at(f, 0, &[0xAB; 100]),
        &["not a Tern store", "SQLite header"],
    )
    .await;
}

#[tokio::test]
async fn corrupt_store_garbage_page_stops_startup_and_is_kept() {
    refused(
        |f| write_at(f, 2 * 4096, &[0xAB; 4096]),
        &["damaged", "backup"],
    )
    .await;
}

/// A stored value whose bytes changed (here a retained message's payload, flipped in place:
/// the file stays a valid database) fails its checksum.
#[tokio::test]
async fn corrupt_store_bad_value_checksum_stops_startup_and_is_kept() {
    refused(
        |f| {
            let bytes = std::fs::read(f).expect("read the store");
            let at = bytes
                .windows(4)
                .position(|w| w == b"kept")
                .expect("the retained payload is in the file");
            write_at(f, at as u64, b"KEPT");
        },
        &["damaged", "checksum"],
    )
    .await;
}

/// `PRAGMA user_version` (header offset 60) is the format version.
#[tokio::test]
async fn store_from_newer_format_version_stops_startup_and_is_kept() {
    refused(
        |f| write_at(f, 60, &2u32.to_be_bytes()),
        &["format version 2", "newer"],
    )
    .await;
}

/// `PRAGMA application_id` (header offset 68) marks a Tern store.
#[tokio::test]
async fn foreign_sqlite_database_stops_startup_and_is_kept() {
    refused(
        |f| write_at(f, 68, &0u32.to_be_bytes()),
        &["not a Tern store"],
    )
    .await;
}

/// A data directory that is a file: start-up stops, naming it, and the file is untouched.
#[tokio::test]
async fn data_dir_that_is_a_file_stops_startup_and_is_kept() {
    let file = TempFile::new("data", "not a directory");
    let (status, text) = serve_expect_exit(&file.path);
    assert!(!status.success(), "{text}");
    assert!(text.contains(&*file.path.to_string_lossy()), "{text}");
    assert!(text.contains("data directory"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&file.path).expect("read"),
        "not a directory"
    );
}

/// A store the broker may not write: start-up stops with a permission message, and the file
/// is untouched. (Skipped when running as root, which may write anyway.)
#[tokio::test]
async fn unwritable_store_stops_startup_and_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = make_store().await;
    let file = store_file(&dir);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    if std::fs::OpenOptions::new().write(true).open(&file).is_ok() {
        eprintln!("skipped: this user may write a read-only file (root)");
        return;
    }
    let before = std::fs::read(&file).expect("read");
    let (status, text) = serve_expect_exit(&dir.path);
    assert!(!status.success(), "{text}");
    assert!(text.contains(&*file.to_string_lossy()), "{text}");
    assert!(
        text.contains("permission denied") || text.contains("read-only"),
        "{text}"
    );
    assert_eq!(std::fs::read(&file).expect("read"), before);
}

/// A second broker on the data directory of a running one stops at start-up; the first goes
/// on working.
#[tokio::test]
async fn second_broker_on_same_data_dir_stops_startup() {
    let tern = Tern::start();
    let (status, text) = serve_expect_exit(&tern.data_dir.path);
    assert!(!status.success(), "{text}");
    assert!(text.contains("in use by another process"), "{text}");
    let mut p = RawClient::connect(tern.addr, V5, "still-there").await;
    let reason = p.publish("busy/t", b"v", QoS::AtLeastOnce, true).await;
    assert!(!reason.is_error(), "{reason}");
}

/// MQTT-4.3.3-10 under crashes: QoS 2 streams fanned out to twelve persistent subscribers,
/// the broker killed with SIGKILL many times at short pseudo-random intervals. A message
/// whose delivery was stored must not be delivered a second time when its publisher, which
/// got no PUBREC, sends it again after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_4_3_3_10_kill9_during_qos2_fanout_never_duplicates() {
    let seed = seed();
    eprintln!("QoS 2 fan-out: seed {seed} (replay with TERN_CRASH_SEED={seed})");
    let mut rng = Rng::new(seed);
    let stops = (0..10)
        .map(|_| {
            (
                Duration::from_millis(rng.range(100, 500)),
                Stop::Kill9,
                Duration::from_millis(rng.range(0, 100)),
            )
        })
        .collect();
    let plan = Plan {
        stops,
        last: (
            Duration::from_millis(rng.range(20, 300)),
            Stop::Kill9,
            Duration::ZERO,
        ),
    };
    run_harness(
        &format!("QoS 2 fan-out (seed {seed})"),
        plan,
        Cast::qos2_fanout(),
    )
    .await;
}
