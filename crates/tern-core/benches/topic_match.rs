//! Routing benchmarks, through the broker's public API.
//!
//! - `route_100k_subscriptions`: one PUBLISH matched against 100,000 subscriptions of one shape
//!   (exact, `+` or `#`) and queued to the matching session, if any.
//! - `match_1M_subscriptions`: topic matching alone (the subscription index lookup, no
//!   queueing) against 1,000,000 subscriptions of mixed shapes, reported in topics/s.
//! - `churn_1M_subscriptions`: one SUBSCRIBE + UNSUBSCRIBE pair on that index, and topic
//!   matching while another thread subscribes and unsubscribes without pause.
//!
//! Run with `cargo bench -p tern-core --bench topic_match` (add `-- 1M` for the 1M groups).
//! Under `cargo test --benches` (criterion's test mode: each benchmark runs once) the sizes are
//! 100 times smaller so that the debug build stays quick.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{
    ByteString, Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, PublishProperties,
    QoS, Subscribe, SubscribeProperties, SubscriptionOptions, Unsubscribe,
};
use tern_core::{Broker, BrokerConfig, Connection, ConnectionInfo, Message, Wake};

struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// Whether criterion runs in test mode (`cargo test --benches`, or `--test`) or only lists the
/// benchmarks: then the setup uses small sizes. Criterion measures only when given `--bench`.
fn smoke() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    !has("--bench") || has("--test") || has("--list")
}

/// The sizes: `full` when measuring, `full / 100` in smoke mode.
fn size(full: usize) -> usize {
    if smoke() { full / 100 } else { full }
}

fn packet_id(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero")
}

/// A connection of client `client_id`, connected with a clean session.
fn connect(broker: &Broker, client_id: &str, now: Instant) -> Connection {
    let waker: Arc<dyn Wake> = Arc::new(NoWake);
    let mut c = Connection::new(broker.clone(), ConnectionInfo::default(), waker, now);
    c.handle_packet(
        Packet::Connect(Box::new(Connect {
            protocol: ProtocolVersion::V311,
            clean_start: true,
            keep_alive: 0,
            properties: ConnectProperties::default(),
            client_id: ByteString::from(client_id),
            will: None,
            username: None,
            password: None,
        })),
        now,
    );
    c
}

fn subscribe(c: &mut Connection, filters: Vec<ByteString>, now: Instant) {
    c.handle_packet(
        Packet::Subscribe(Subscribe {
            packet_id: packet_id(1),
            properties: SubscribeProperties::default(),
            filters: filters
                .into_iter()
                .map(|f| (f, SubscriptionOptions::default()))
                .collect(),
        }),
        now,
    );
}

/// A broker with `n` connected sessions, session `i` subscribed to `filter(i)`.
fn broker_with(n: usize, filter: impl Fn(usize) -> String) -> (Broker, Vec<Connection>) {
    let broker = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let mut connections = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = connect(&broker, &format!("c{i}"), now);
        subscribe(&mut c, vec![ByteString::from(filter(i))], now);
        connections.push(c);
    }
    (broker, connections)
}

fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: ByteString::from(topic),
        payload: Bytes::from_static(b"0123456789abcdef"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: None,
    })
}

/// A filter shape: name, filter of session `i`, a topic matching one session, one matching none.
type Shape = (
    &'static str,
    fn(usize) -> String,
    &'static str,
    &'static str,
);

fn route_100k(c: &mut Criterion) {
    let n = size(100_000);
    let mut group = c.benchmark_group("route_100k_subscriptions");
    group.throughput(Throughput::Elements(1));
    let shapes: [Shape; 3] = [
        (
            "exact",
            |i| format!("site/{}/dev/{i}/temp", i % 100),
            "site/7/dev/507/temp",
            "site/7/dev/x/temp",
        ),
        (
            "plus",
            |i| format!("site/{}/dev/{i}/+", i % 100),
            "site/7/dev/507/temp",
            "site/7/dev/x/temp",
        ),
        (
            "hash",
            |i| format!("site/{}/dev/{i}/#", i % 100),
            "site/7/dev/507/a/b",
            "site/7/dev/x/a/b",
        ),
    ];
    for (name, filter, hit, miss) in shapes {
        let (broker, _connections) = broker_with(n, filter);
        let now = Instant::now();
        let (hit, miss) = (message(hit), message(miss));
        assert_eq!(broker.publish(hit.clone(), now).matched, 1, "{name} hit");
        assert_eq!(broker.publish(miss.clone(), now).matched, 0, "{name} miss");
        group.bench_function(BenchmarkId::new(name, "one_match"), |b| {
            b.iter(|| broker.publish(hit.clone(), now));
        });
        group.bench_function(BenchmarkId::new(name, "no_match"), |b| {
            b.iter(|| broker.publish(miss.clone(), now));
        });
    }
    group.finish();
}

/// Devices per site in the 1M index: subscription `i` is about site `i / DEVICES`, device
/// `i % DEVICES`.
const DEVICES: usize = 1000;
/// Subscriptions per session, and per SUBSCRIBE packet, in the 1M index.
const PER_SESSION: usize = 1000;
/// Topics matched per iteration of the 1M benchmarks.
const TOPICS: usize = 4096;

/// Subscription `i` of the mixed index: by `i % 10`, 70 % exact (`site/<a>/dev/<b>/temp`),
/// 20 % single-level wildcard (`site/<a>/+/<b>/temp`), 10 % multi-level wildcard
/// (`site/<a>/dev/<b>/#`). Every filter is distinct, so each `.../temp` topic matches exactly
/// one subscription, whatever its shape, while the walk still has to try the `+` branch present
/// under every site.
fn mixed_filter(i: usize) -> String {
    let (a, b) = (i / DEVICES, i % DEVICES);
    match i % 10 {
        0..=6 => format!("site/{a}/dev/{b}/temp"),
        7 | 8 => format!("site/{a}/+/{b}/temp"),
        _ => format!("site/{a}/dev/{b}/#"),
    }
}

/// A broker holding `n` mixed subscriptions (see [`mixed_filter`]), `PER_SESSION` per session.
fn mixed_index(n: usize) -> (Broker, Vec<Connection>) {
    let broker = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let sessions = n.div_ceil(PER_SESSION);
    let mut connections = Vec::with_capacity(sessions);
    for s in 0..sessions {
        let mut c = connect(&broker, &format!("s{s}"), now);
        let range = s * PER_SESSION..((s + 1) * PER_SESSION).min(n);
        subscribe(
            &mut c,
            range.map(|i| ByteString::from(mixed_filter(i))).collect(),
            now,
        );
        connections.push(c);
    }
    (broker, connections)
}

/// `TOPICS` topics spread pseudo-randomly over the index (so that the walk misses the caches as
/// a real load would), with the number of subscriptions they match: 7 in 8 are
/// `site/<a>/dev/<b>/temp` (one match each), 1 in 8 `site/<a>/dev/<b>/humidity` (matched only by
/// the multi-level wildcard of that device, if it has one).
fn mixed_topics(n: usize) -> (Vec<String>, usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut expected = 0;
    let topics = (0..TOPICS)
        .map(|k| {
            // A 64-bit linear congruential generator (Knuth's MMIX constants).
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let i = (x >> 33) as usize % n;
            let (a, b) = (i / DEVICES, i % DEVICES);
            if k % 8 == 7 {
                expected += usize::from(i % 10 == 9);
                format!("site/{a}/dev/{b}/humidity")
            } else {
                expected += 1;
                format!("site/{a}/dev/{b}/temp")
            }
        })
        .collect();
    (topics, expected)
}

fn match_all(broker: &Broker, topics: &[String]) -> usize {
    topics.iter().map(|t| broker.count_matches(t)).sum()
}

/// Subscribes to and unsubscribes from a fresh filter (`site/<a>/dev/<b>/churn`), and discards
/// the acknowledgements.
fn churn_once(c: &mut Connection, k: usize, n: usize, out: &mut BytesMut, now: Instant) {
    let i = k % n;
    let filter = ByteString::from(format!("site/{}/dev/{}/churn", i / DEVICES, i % DEVICES));
    subscribe(c, vec![filter.clone()], now);
    c.handle_packet(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: packet_id(2),
            user_properties: Default::default(),
            filters: vec![filter],
        }),
        now,
    );
    c.poll_transmit(now, out, usize::MAX);
    out.clear();
}

fn match_1m(c: &mut Criterion) {
    let n = size(1_000_000);
    let (broker, _connections) = mixed_index(n);
    let (topics, expected) = mixed_topics(n);
    // The index holds what it should: every topic matches exactly what the filters promise.
    assert_eq!(match_all(&broker, &topics), expected);
    assert_eq!(broker.count_matches("site/0/dev/0/temp"), 1);
    assert_eq!(broker.count_matches("site/0/dev/9/humidity"), 1);
    assert_eq!(broker.count_matches("site/0/x/7/temp"), 1);
    assert_eq!(broker.count_matches("site/0/x/0/temp"), 0);

    let mut group = c.benchmark_group("match_1M_subscriptions");
    group.throughput(Throughput::Elements(TOPICS as u64));
    group.bench_function("mixed", |b| {
        b.iter(|| black_box(match_all(&broker, black_box(&topics))));
    });
    group.finish();

    let mut group = c.benchmark_group("churn_1M_subscriptions");
    let now = Instant::now();
    let mut churner = connect(&broker, "churner", now);
    let mut out = BytesMut::new();
    let mut k = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("subscribe_unsubscribe", |b| {
        b.iter(|| {
            k += 1;
            churn_once(&mut churner, k, n, &mut out, now);
        });
    });
    assert_eq!(
        match_all(&broker, &topics),
        expected,
        "churn left the index changed"
    );

    // Matching while another thread subscribes and unsubscribes as fast as it can: compare with
    // `match_1M_subscriptions/mixed` to see what the writers cost the readers.
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let thread = {
        let (stop, churned) = (stop.clone(), churned.clone());
        std::thread::spawn(move || {
            let mut out = BytesMut::new();
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                churn_once(&mut churner, k, n, &mut out, Instant::now());
                churned.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The churner has started before the measurement.
    let started = Instant::now();
    while churned.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the churner never ran"
        );
        std::thread::yield_now();
    }
    group.throughput(Throughput::Elements(TOPICS as u64));
    let during = Instant::now();
    let before = churned.load(Ordering::Relaxed);
    group.bench_function("match_while_churning", |b| {
        b.iter(|| black_box(match_all(&broker, black_box(&topics))));
    });
    let pairs = churned.load(Ordering::Relaxed) - before;
    let secs = during.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    thread.join().expect("churner thread");
    group.finish();
    if !smoke() {
        println!(
            "churn_1M_subscriptions/match_while_churning: the other thread made {pairs} \
             subscribe+unsubscribe pairs meanwhile ({:.0}/s)",
            pairs as f64 / secs
        );
    }
    assert_eq!(
        match_all(&broker, &topics),
        expected,
        "churn left the index changed"
    );
}

criterion_group!(benches, route_100k, match_1m);
criterion_main!(benches);
