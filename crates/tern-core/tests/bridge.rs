//! Bridges as clients of the broker: an MQTT 3.x CONNECT with the bridge bit (Mosquitto's
//! `try_private`) makes its subscriptions No Local and Retain As Published, and any client may
//! publish (or leave as its Will) a bridge state on `$SYS/broker/connection/+/state`, subject to
//! the access rules; the rest of `$SYS` stays closed.

#![allow(clippy::unwrap_used, missing_docs)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::*;
use tern_codec::{
    Ack, ByteString, Connect, ConnectProperties, Packet, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, Subscribe, SubscribeProperties, SubscriptionOptions,
};
use tern_core::{Acl, Broker, BrokerConfig};

/// An MQTT 3.1.1 CONNECT, with or without the bridge bit, keeping its session.
fn connect311(client_id: &str, bridge: bool) -> Connect {
    Connect {
        protocol: ProtocolVersion::V311,
        clean_start: false,
        keep_alive: 0,
        properties: ConnectProperties {
            bridge,
            ..ConnectProperties::default()
        },
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

fn connected311(broker: &Broker, client_id: &str, bridge: bool, now: Instant) -> Sim {
    let mut sim = Sim::connected(broker, connect311(client_id, bridge), now);
    sim.decoder = tern_codec::Decoder::with_version(ProtocolVersion::V311, u32::MAX);
    sim
}

fn retained(topic: &str, payload: &[u8], qos: QoS, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: true,
        topic: ByteString::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// (topic, payload, retain) of each PUBLISH.
fn seen(publishes: &[Publish]) -> Vec<(String, Vec<u8>, bool)> {
    publishes
        .iter()
        .map(|p| (p.topic.to_string(), p.payload.to_vec(), p.retain))
        .collect()
}

/// The PUBACK answering `id`, as (reason code, reason string).
fn puback(sim: &mut Sim, id: u16, now: Instant) -> (ReasonCode, Option<String>) {
    match sim.drain(now).as_slice() {
        [Packet::PubAck(a)] if a.packet_id == pid(id) => (
            a.reason,
            a.properties.reason_string.as_ref().map(ToString::to_string),
        ),
        other => panic!("expected PUBACK {id}, got {other:?}"),
    }
}

fn item(topic: &str, payload: &[u8], retain: bool) -> (String, Vec<u8>, bool) {
    (topic.to_owned(), payload.to_vec(), retain)
}

#[test]
fn mqtt5_3_8_3_3_a_mqtt311_bridge_gets_no_local_subscriptions() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut bridge = connected311(&broker, "edge-bridge", true, t0);
    bridge.subscribe("a/#", QoS::AtMostOnce, t0);
    // What the bridge publishes itself is not sent back to it (no loop between two brokers).
    bridge.send(
        publish("a/1", b"from-the-bridge", QoS::AtMostOnce, 0, None),
        t0,
    );
    assert!(bridge.drain(t0).is_empty());
    // What others publish reaches it.
    let mut other = connected311(&broker, "other", false, t0);
    other.send(
        publish("a/2", b"from-another", QoS::AtMostOnce, 0, None),
        t0,
    );
    assert_eq!(
        seen(&bridge.publishes(t0)),
        [item("a/2", b"from-another", false)]
    );
}

#[test]
fn a_mqtt311_client_without_the_bridge_bit_gets_its_own_messages() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut plain = connected311(&broker, "plain", false, t0);
    plain.subscribe("a/#", QoS::AtMostOnce, t0);
    plain.send(retained("a/1", b"mine", QoS::AtMostOnce, 0), t0);
    // Its own message comes back, and with RETAIN 0 on an established subscription
    // (MQTT 3.1.1 MQTT-3.3.1-9).
    assert_eq!(seen(&plain.publishes(t0)), [item("a/1", b"mine", false)]);
}

#[test]
fn mqtt5_3_3_1_13_a_mqtt311_bridge_gets_the_retain_flag_as_published() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut bridge = connected311(&broker, "edge-bridge", true, t0);
    bridge.subscribe("r/#", QoS::AtLeastOnce, t0);
    let mut other = connected311(&broker, "other", false, t0);
    other.send(retained("r/1", b"kept", QoS::AtMostOnce, 0), t0);
    other.send(publish("r/2", b"live", QoS::AtMostOnce, 0, None), t0);
    // The remote broker the bridge forwards to must store `r/1` as retained too.
    assert_eq!(
        seen(&bridge.publishes(t0)),
        [item("r/1", b"kept", true), item("r/2", b"live", false)]
    );
}

#[test]
fn a_mqtt311_bridge_keeps_its_no_local_subscriptions_when_it_resumes_its_session() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut bridge = connected311(&broker, "edge-bridge", true, t0);
    bridge.subscribe("a/#", QoS::AtLeastOnce, t0);
    bridge.lose(t0);
    // Back without subscribing again: the stored subscription still skips its own messages.
    let mut bridge = connected311(&broker, "edge-bridge", true, t0);
    bridge.send(publish("a/1", b"own", QoS::AtMostOnce, 0, None), t0);
    assert!(bridge.drain(t0).is_empty());
    let mut other = connected311(&broker, "other", false, t0);
    other.send(publish("a/2", b"theirs", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(seen(&bridge.publishes(t0)), [item("a/2", b"theirs", false)]);
}

#[test]
fn a_mqtt311_bridge_may_use_shared_subscriptions() {
    // No Local is forbidden on shared subscriptions (MQTT 5 MQTT-3.8.3-4): a bridge's shared
    // subscription stays a plain one instead of failing.
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut bridge = connected311(&broker, "edge-bridge", true, t0);
    bridge.subscribe("$share/g/s/#", QoS::AtMostOnce, t0);
    bridge.send(publish("s/1", b"own", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(seen(&bridge.publishes(t0)), [item("s/1", b"own", false)]);
}

#[test]
fn a_client_may_publish_a_bridge_state_in_sys() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "$SYS/broker/connection/+/state", t0);
    let mut bridge = Sim::connected(&broker, connect5("edge", true, None), t0);
    bridge.send(
        retained(
            "$SYS/broker/connection/edge/state",
            b"1",
            QoS::AtLeastOnce,
            3,
        ),
        t0,
    );
    assert_eq!(bridge.drain(t0), [Packet::PubAck(Ack::new(pid(3)))]);
    assert_eq!(
        seen(&w.publishes(t0)),
        [item("$SYS/broker/connection/edge/state", b"1", false)]
    );
    // Retained like any message: a later subscriber is told the state.
    let mut late = Sim::connected(&broker, connect5("late", true, None), t0);
    late.subscribe("$SYS/broker/connection/#", QoS::AtMostOnce, t0);
    assert_eq!(
        seen(&late.publishes(t0)),
        [item("$SYS/broker/connection/edge/state", b"1", true)]
    );
}

#[test]
fn the_rest_of_sys_stays_closed_to_clients() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "$SYS/#", t0);
    let mut c = Sim::connected(&broker, connect5("c", true, None), t0);
    for (i, topic) in [
        "$SYS/broker/connection/a/b/state",
        "$SYS/broker/connection/edge/status",
        "$SYS/broker/connection/state",
        "$SYS/broker/clients/connected",
    ]
    .into_iter()
    .enumerate()
    {
        let id = u16::try_from(i + 1).unwrap();
        c.send(publish(topic, b"x", QoS::AtLeastOnce, id, None), t0);
        assert_eq!(
            puback(&mut c, id, t0),
            (
                ReasonCode::NOT_AUTHORIZED,
                Some("publishing to $SYS is not allowed".to_owned())
            ),
            "{topic}"
        );
    }
    assert!(w.drain(t0).is_empty());
}

#[test]
fn a_bridge_state_is_subject_to_the_access_rules() {
    let t0 = Instant::now();
    let acl = |text: &str| Some(Arc::new(Acl::parse(text).expect("valid ACL").0));
    let broker = Broker::new(BrokerConfig {
        acl: acl("topic readwrite data/#\n"),
        ..BrokerConfig::default()
    });
    let mut c = Sim::connected(&broker, connect5("edge", true, None), t0);
    c.send(
        publish(
            "$SYS/broker/connection/edge/state",
            b"1",
            QoS::AtLeastOnce,
            1,
            None,
        ),
        t0,
    );
    // Refused by the rules (not by the `$SYS` guard).
    assert_eq!(
        puback(&mut c, 1, t0),
        (
            ReasonCode::NOT_AUTHORIZED,
            Some("not authorized to publish to this topic".to_owned())
        )
    );
    // Granted write access, the same client may.
    broker.set_acl(acl(
        "topic readwrite data/#\ntopic write $SYS/broker/connection/#\n",
    ));
    c.send(
        publish(
            "$SYS/broker/connection/edge/state",
            b"1",
            QoS::AtLeastOnce,
            2,
            None,
        ),
        t0,
    );
    // Accepted (nobody listens here).
    assert_eq!(
        puback(&mut c, 2, t0),
        (ReasonCode::NO_MATCHING_SUBSCRIBERS, None)
    );
}

#[test]
fn a_bridge_state_may_be_a_will() {
    // Mosquitto's bridges leave "0" on their state topic as their Will on the remote broker.
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "$SYS/broker/connection/+/state", t0);
    let mut connect = connect311("edge-bridge", true);
    connect.will = Some(tern_codec::LastWill {
        retain: true,
        ..will("$SYS/broker/connection/edge/state", b"0", None)
    });
    let bridge = Sim::connected(&broker, connect, t0);
    bridge.lose(t0);
    assert_eq!(
        seen(&w.publishes(t0)),
        [item("$SYS/broker/connection/edge/state", b"0", false)]
    );
    // Any other Will in `$SYS` is still refused.
    let mut connect = connect5("sneaky", true, None);
    connect.will = Some(will("$SYS/broker/uptime", b"0", None));
    let (_, ack) = Sim::connect(&broker, connect, t0);
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn the_bridge_bit_is_ignored_on_mqtt5() {
    // The codec never reads one from an MQTT 5 CONNECT; a caller that sets it anyway does not
    // change MQTT 5 subscriptions, which ask for No Local themselves.
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut connect = connect5("v5", true, None);
    connect.properties.bridge = true;
    let mut c = Sim::connected(&broker, connect, t0);
    c.send(
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: SubscribeProperties::default(),
            filters: vec![(
                ByteString::from("a/#"),
                SubscriptionOptions::with_qos(QoS::AtMostOnce),
            )],
        }),
        t0,
    );
    let _ = c.drain(t0);
    c.send(publish("a/1", b"own", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(seen(&c.publishes(t0)), [item("a/1", b"own", false)]);
}
