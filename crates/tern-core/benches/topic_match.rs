//! Routing cost with 100,000 subscriptions: one PUBLISH matched against the subscription trie
//! (and queued to the matching session, if any), through the broker's public API.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{
    ByteString, Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, PublishProperties,
    QoS, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use tern_core::{Broker, BrokerConfig, Connection, ConnectionInfo, Message, Wake};

struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

/// A broker with `n` connected sessions, session `i` subscribed to `filter(i)`.
fn broker_with(n: usize, filter: impl Fn(usize) -> String) -> (Broker, Vec<Connection>) {
    let broker = Broker::new(BrokerConfig::default());
    let now = Instant::now();
    let waker: Arc<dyn Wake> = Arc::new(NoWake);
    let mut connections = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Connection::new(
            broker.clone(),
            ConnectionInfo::default(),
            waker.clone(),
            now,
        );
        c.handle_packet(
            Packet::Connect(Box::new(Connect {
                protocol: ProtocolVersion::V311,
                clean_start: true,
                keep_alive: 0,
                properties: ConnectProperties::default(),
                client_id: ByteString::from(format!("c{i}")),
                will: None,
                username: None,
                password: None,
            })),
            now,
        );
        c.handle_packet(
            Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(1).expect("non-zero"),
                properties: SubscribeProperties::default(),
                filters: vec![(ByteString::from(filter(i)), SubscriptionOptions::default())],
            }),
            now,
        );
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

fn bench(c: &mut Criterion) {
    const N: usize = 100_000;
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
        let (broker, _connections) = broker_with(N, filter);
        let now = Instant::now();
        let (hit, miss) = (message(hit), message(miss));
        group.bench_function(BenchmarkId::new(name, "one_match"), |b| {
            b.iter(|| broker.publish(hit.clone(), now));
        });
        group.bench_function(BenchmarkId::new(name, "no_match"), |b| {
            b.iter(|| broker.publish(miss.clone(), now));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
