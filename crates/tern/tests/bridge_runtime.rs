//! Smoke test of the bridge runtime: two real `tern serve` processes, the edge one bridging to
//! the other (`out` and `in`, with prefixes) from a mosquitto.conf `connection` block; QoS 1
//! messages both ways, and the remote broker restarted once while the edge keeps publishing.
//! The full acceptance suite is tests/bridge.rs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{TIMEOUT, Tern};
use tern_client::{Client, ConnectOptions, Event};
use tern_codec::{ProtocolVersion, Publish, QoS, SubscriptionOptions};

/// How long the bridge may take to (re)connect: its backoff (`restart_timeout 1`) plus a
/// connection.
const RECONNECT: Duration = Duration::from_secs(15);

fn options(addr: SocketAddr, id: &str) -> ConnectOptions {
    ConnectOptions::to_addr(addr, id, ProtocolVersion::V5)
}

/// A persistent session (kept a day), so it collects messages while away and across restarts.
fn persistent(addr: SocketAddr, id: &str) -> ConnectOptions {
    let mut o = options(addr, id);
    o.clean_start = false;
    o.session_expiry = Some(86_400);
    o
}

async fn subscribe(c: &mut Client, filter: &str) {
    let reasons = c
        .subscribe(
            &[(filter, SubscriptionOptions::with_qos(QoS::AtLeastOnce))],
            None,
        )
        .await
        .expect("subscribe");
    assert!(!reasons[0].is_error(), "{filter}: {reasons:?}");
}

async fn publish(c: &mut Client, topic: &str, payload: &str) {
    let reason = c
        .publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: Default::default(),
            payload: Bytes::from(payload.to_owned()),
        })
        .await
        .expect("publish");
    assert!(!reason.is_error(), "{topic}: {reason}");
}

/// The next message, within `within`.
async fn next_message(c: &mut Client, within: Duration) -> Publish {
    tokio::time::timeout(within, async {
        loop {
            if let Event::Message(p) = c.next_event().await.expect("event") {
                return p;
            }
        }
    })
    .await
    .expect("a message in time")
}

/// Waits for the retained state `want` of bridge `name` on the broker at `addr`.
async fn wait_state(addr: SocketAddr, name: &str, want: &str, within: Duration) {
    let topic = format!("$SYS/broker/connection/{name}/state");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut c = Client::connect(&options(addr, "state-watch"))
            .await
            .expect("connect");
        subscribe(&mut c, &topic).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = next_message(&mut c, left.max(Duration::from_millis(1))).await;
        assert_eq!(&*p.topic, topic.as_str());
        if p.payload.as_ref() == want.as_bytes() {
            return;
        }
        // The retained value was the previous state: wait for the next one.
        let p = next_message(&mut c, left.max(Duration::from_millis(1))).await;
        if p.payload.as_ref() == want.as_bytes() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge {name} never reached state {want}"
        );
    }
}

#[tokio::test]
async fn a_mosquitto_conf_bridge_carries_qos1_both_ways_and_survives_a_remote_restart() {
    let remote = Tern::start();
    let remote_addr = remote.addr;
    let conf = format!(
        "connection hq\n\
         address {remote_addr}\n\
         bridge_protocol_version mqttv50\n\
         remote_clientid edge1\n\
         topic up/# out 1 edge/ hq/edge1/\n\
         topic down/# in 1 edge/ hq/edge1/\n\
         restart_timeout 1\n"
    );
    let edge = Tern::start_config(&conf, "conf");
    wait_state(edge.addr, "hq", "1", RECONNECT).await;
    wait_state(remote_addr, "hq", "1", TIMEOUT).await;

    // Collects what the bridge brings to the remote broker, across its restart.
    let mut collector = Client::connect(&persistent(remote_addr, "collector"))
        .await
        .expect("connect");
    subscribe(&mut collector, "hq/edge1/up/#").await;
    let mut edge_sub = Client::connect(&options(edge.addr, "edge-sub"))
        .await
        .expect("connect");
    subscribe(&mut edge_sub, "edge/down/#").await;

    // Out: edge/up/... becomes hq/edge1/up/... at QoS 1.
    let mut edge_pub = Client::connect(&options(edge.addr, "edge-pub"))
        .await
        .expect("connect");
    publish(&mut edge_pub, "edge/up/0", "m0").await;
    let p = next_message(&mut collector, TIMEOUT).await;
    assert_eq!(
        (&*p.topic, p.payload.as_ref(), p.qos),
        ("hq/edge1/up/0", &b"m0"[..], QoS::AtLeastOnce)
    );
    // In: hq/edge1/down/... becomes edge/down/... at QoS 1.
    let mut remote_pub = Client::connect(&options(remote_addr, "remote-pub"))
        .await
        .expect("connect");
    publish(&mut remote_pub, "hq/edge1/down/x", "cmd").await;
    let p = next_message(&mut edge_sub, TIMEOUT).await;
    assert_eq!(
        (&*p.topic, p.payload.as_ref(), p.qos),
        ("edge/down/x", &b"cmd"[..], QoS::AtLeastOnce)
    );
    drop(remote_pub);
    collector.disconnect().await.expect("disconnect");

    // The remote broker goes away; what the edge publishes meanwhile waits there.
    let data_dir = remote.stop();
    wait_state(edge.addr, "hq", "0", TIMEOUT).await;
    for i in 1..=20 {
        publish(&mut edge_pub, &format!("edge/up/{i}"), &format!("m{i}")).await;
    }
    let remote = Tern::restart(data_dir, remote_addr, &[]);
    assert_eq!(
        remote.addr, remote_addr,
        "the remote broker is back on its port"
    );
    wait_state(edge.addr, "hq", "1", RECONNECT).await;

    let mut collector = Client::resume(&persistent(remote_addr, "collector"), Default::default())
        .await
        .expect("reconnect");
    assert!(
        collector.connack().session_present,
        "kept across the restart"
    );
    let mut got = Vec::new();
    while got.len() < 20 {
        let p = next_message(&mut collector, RECONNECT).await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    let expected: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected, "every message, once, in order");

    // And the way in works again after the reconnection.
    let mut remote_pub = Client::connect(&options(remote_addr, "remote-pub"))
        .await
        .expect("connect");
    publish(&mut remote_pub, "hq/edge1/down/y", "again").await;
    let p = next_message(&mut edge_sub, TIMEOUT).await;
    assert_eq!(
        (&*p.topic, p.payload.as_ref()),
        ("edge/down/y", &b"again"[..])
    );
    let logs = edge.logs();
    assert_eq!(
        logs.matches("bridge hq: connected to").count(),
        2,
        "connected, then connected again: {logs}"
    );
    assert!(
        logs.contains("bridge hq: disconnected from"),
        "the disconnection is logged with its reason: {logs}"
    );
}
