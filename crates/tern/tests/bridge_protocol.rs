//! What the broker and the client library do for bridges, on the wire against the real server:
//! the bridge bit of an MQTT 3.x CONNECT (protocol level 0x84 / 0x83, Mosquitto's
//! `try_private`) is accepted and makes the client's subscriptions No Local and Retain As
//! Published; `$SYS/broker/connection/+/state` is open to clients (publish and Will) subject to
//! the access rules while the rest of `$SYS` stays closed; and `tern-client`'s manual
//! acknowledgements, caller's-stream constructor and bridge option work against the broker.

mod common;

use std::time::Duration;

use common::{
    RawClient, TIMEOUT, Tern, V5, V311, conn5, connect_packet, frame, lp, pid, publish,
    recv_raw_frame, v3_connect, will,
};
use tern_client::{Client, ConnectOptions, Event, SessionState};
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

/// A raw MQTT 3.x CONNECT with Clean Session 1, keep-alive 60, for `client_id`.
fn bridge_connect(name: &[u8], level: u8, client_id: &[u8]) -> Vec<u8> {
    v3_connect(name, level, 0x02, 60, &lp(client_id))
}

/// A raw SUBSCRIBE (packet id 1) of `filter` at `qos`.
fn raw_subscribe(filter: &[u8], qos: u8) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    body.extend(lp(filter));
    body.push(qos);
    frame(0x82, &body)
}

/// A raw QoS 0 PUBLISH, retained or not.
fn raw_publish0(topic: &[u8], payload: &[u8], retain: bool) -> Vec<u8> {
    let mut body = lp(topic);
    body.extend_from_slice(payload);
    frame(if retain { 0x31 } else { 0x30 }, &body)
}

/// Connects a raw MQTT 3.1.1 bridge (level 0x84) subscribed to `filter` at QoS 0.
async fn raw_bridge(tern: &Tern, client_id: &[u8], filter: &[u8]) -> RawClient {
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&bridge_connect(b"MQTT", 0x84, client_id))
        .await;
    assert_eq!(
        recv_raw_frame(&mut c).await.expect("CONNACK"),
        [0x20, 0x02, 0x00, 0x00]
    );
    c.send_bytes(&raw_subscribe(filter, 0)).await;
    assert_eq!(
        recv_raw_frame(&mut c).await.expect("SUBACK"),
        [0x90, 0x03, 0x00, 0x01, 0x00]
    );
    c
}

#[tokio::test]
async fn mqtt311_3_1_2_2_level_0x84_is_accepted_as_a_mqtt311_bridge() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&bridge_connect(b"MQTT", 0x84, b"edge")).await;
    // CONNACK of 3.1.1: accepted, no session present.
    assert_eq!(
        recv_raw_frame(&mut c).await.expect("CONNACK"),
        [0x20, 0x02, 0x00, 0x00]
    );
    // Spoken to in 3.1.1: PINGREQ, PINGRESP.
    c.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(
        recv_raw_frame(&mut c).await.expect("PINGRESP"),
        [0xD0, 0x00]
    );
}

#[tokio::test]
async fn mqtt31_level_0x83_is_accepted_as_a_mqtt31_bridge() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, common::V31).await;
    c.send_bytes(&bridge_connect(b"MQIsdp", 0x83, b"edge31"))
        .await;
    assert_eq!(
        recv_raw_frame(&mut c).await.expect("CONNACK"),
        [0x20, 0x02, 0x00, 0x00]
    );
}

#[tokio::test]
async fn mqtt311_3_1_2_2_bridge_bit_on_level_5_is_an_unsupported_level() {
    // MQTT 5 has no bridge bit: 0x85 is refused like any unknown level (return code 1).
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&bridge_connect(b"MQTT", 0x85, b"edge5")).await;
    assert_eq!(
        recv_raw_frame(&mut c).await.expect("CONNACK"),
        [0x20, 0x02, 0x00, 0x01]
    );
    c.expect_closed().await;
}

#[tokio::test]
async fn a_mqtt311_bridge_does_not_get_its_own_messages_back() {
    let tern = Tern::start();
    let mut bridge = raw_bridge(&tern, b"edge", b"loop/#").await;
    bridge
        .send_bytes(&raw_publish0(b"loop/1", b"from-the-bridge", false))
        .await;
    let mut other = RawClient::connect(tern.addr, V311, "other").await;
    other.publish0("loop/2", b"from-another").await;
    // The queue is in order: the other client's message coming first proves the bridge's own
    // was never queued for it.
    let got = recv_raw_frame(&mut bridge).await.expect("PUBLISH");
    assert_eq!(got, raw_publish0(b"loop/2", b"from-another", false));
    bridge.expect_nothing().await;
}

#[tokio::test]
async fn a_mqtt311_bridge_gets_the_retain_flag_as_published() {
    let tern = Tern::start();
    let mut bridge = raw_bridge(&tern, b"edge", b"r/#").await;
    let mut plain = RawClient::connect(tern.addr, V311, "plain").await;
    plain.subscribe("r/#", QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(tern.addr, V311, "publisher").await;
    publisher
        .send_bytes(&raw_publish0(b"r/1", b"kept", true))
        .await;
    // Flag kept for the bridge (so the remote broker retains it too)...
    assert_eq!(
        recv_raw_frame(&mut bridge).await.expect("PUBLISH"),
        raw_publish0(b"r/1", b"kept", true)
    );
    // ...and cleared for an ordinary 3.1.1 subscriber (MQTT-3.3.1-9).
    let p = plain.recv_publish().await;
    assert!(!p.retain);
}

#[tokio::test]
async fn a_client_may_publish_a_bridge_state_and_leave_it_as_its_will() {
    let tern = Tern::start();
    let mut watcher = RawClient::connect(tern.addr, V5, "watcher").await;
    watcher
        .subscribe("$SYS/broker/connection/+/state", QoS::AtLeastOnce)
        .await;
    // A bridge connects with "0" retained as its Will, then says "1", as Mosquitto's do.
    let mut connect = connect_packet(V311, "edge-bridge", true);
    connect.will = Some(will(
        "$SYS/broker/connection/edge/state",
        b"0",
        QoS::AtLeastOnce,
        true,
    ));
    let (mut bridge, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    bridge
        .send(&Packet::Publish(publish(
            "$SYS/broker/connection/edge/state",
            b"1",
            QoS::AtLeastOnce,
            true,
            Some(pid(1)),
        )))
        .await;
    assert!(matches!(bridge.recv().await, Packet::PubAck(_)));
    let p = watcher.recv_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        ("$SYS/broker/connection/edge/state", &b"1"[..])
    );
    watcher.ack(&p).await;
    // The bridge's connection drops: its Will says "0", retained.
    drop(bridge);
    let p = watcher.recv_publish().await;
    assert_eq!(&p.payload[..], b"0");
    watcher.ack(&p).await;
    let mut late = RawClient::connect(tern.addr, V5, "late").await;
    late.subscribe("$SYS/broker/connection/#", QoS::AtMostOnce)
        .await;
    let p = late.recv_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"0"[..], true));
}

#[tokio::test]
async fn the_rest_of_sys_stays_closed_to_clients() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V5, "c").await;
    for topic in [
        "$SYS/broker/uptime",
        "$SYS/broker/connection/a/b/state",
        "$SYS/broker/connection/edge/other",
    ] {
        c.send(&Packet::Publish(publish(
            topic,
            b"x",
            QoS::AtLeastOnce,
            false,
            Some(pid(1)),
        )))
        .await;
        match c.recv().await {
            Packet::PubAck(a) => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED, "{topic}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    // And a Will elsewhere in `$SYS` is refused at CONNECT.
    let mut connect = conn5("sneaky", true, None);
    connect.will = Some(will("$SYS/broker/uptime", b"0", QoS::AtMostOnce, false));
    let (_, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
}

#[tokio::test]
async fn a_bridge_state_needs_write_access_under_an_acl_file() {
    for (rules, expected) in [
        ("topic readwrite data/#\n", ReasonCode::NOT_AUTHORIZED),
        (
            "topic readwrite data/#\ntopic write $SYS/broker/connection/#\n",
            ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ),
    ] {
        let acl = common::TempFile::new("acl", rules);
        let tern = Tern::start_config(&format!("acl_file = \"{}\"\n", acl.path.display()), "toml");
        let mut c = RawClient::connect(tern.addr, V5, "edge").await;
        c.send(&Packet::Publish(publish(
            "$SYS/broker/connection/edge/state",
            b"1",
            QoS::AtLeastOnce,
            true,
            Some(pid(1)),
        )))
        .await;
        match c.recv().await {
            Packet::PubAck(a) => assert_eq!(a.reason, expected, "{rules}"),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// tern-client against the broker

async fn next_message(c: &mut Client) -> tern_codec::Publish {
    loop {
        let event = tokio::time::timeout(TIMEOUT, c.next_event())
            .await
            .expect("an event in time")
            .expect("no error");
        if let Event::Message(p) = event {
            return p;
        }
    }
}

/// Nothing but PINGs for 300 ms.
async fn expect_no_event(c: &mut Client) {
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(300), c.next_event()).await {
        panic!("expected nothing, got {event:?}");
    }
}

/// A SUBSCRIBE answered: the broker has read everything the client sent before it.
async fn round_trip(c: &mut Client) {
    c.subscribe(
        &[(
            "sync/round-trip",
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
        )],
        None,
    )
    .await
    .expect("subscribe");
}

fn manual(tern: &Tern, id: &str, version: ProtocolVersion) -> ConnectOptions {
    let mut o = ConnectOptions::to_addr(tern.addr, id, version);
    o.manual_acks = true;
    o.clean_start = false;
    o.session_expiry = Some(600);
    o
}

#[tokio::test]
async fn client_manual_acks_hold_messages_until_the_caller_acks_across_reconnections() {
    let tern = Tern::start();
    let o = manual(&tern, "manual", V5);
    let mut sub = Client::connect(&o).await.expect("connect");
    sub.subscribe(
        &[("m/#", SubscriptionOptions::with_qos(QoS::ExactlyOnce))],
        None,
    )
    .await
    .expect("subscribe");
    let mut publisher = RawClient::connect(tern.addr, V5, "publisher").await;
    publisher
        .publish("m/1", b"one", QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("m/2", b"two", QoS::ExactlyOnce, false)
        .await;
    let one = next_message(&mut sub).await;
    let two = next_message(&mut sub).await;
    assert_eq!(
        (&one.payload[..], &two.payload[..]),
        (&b"one"[..], &b"two"[..])
    );
    // Not acknowledged: the connection is lost and the broker still has both in flight.
    let state: SessionState = sub.session_state();
    drop(sub);
    let mut sub = Client::resume(&o, state).await.expect("resume");
    assert!(sub.connack().session_present);
    // The broker re-sends both (DUP); the client keeps them for the copies the caller holds.
    expect_no_event(&mut sub).await;
    assert_eq!(sub.pending_acks(), 2);
    assert!(sub.ack(&one).await.expect("ack"));
    assert!(sub.ack(&two).await.expect("ack"));
    publisher
        .publish("m/3", b"marker", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&next_message(&mut sub).await.payload[..], b"marker");
    round_trip(&mut sub).await;
    let state = sub.session_state();
    drop(sub);
    // Acknowledged on the resumed connection: neither message is sent again on the next one
    // (a PUBREL of the QoS 2 one may be, if it crossed the close).
    let mut raw = RawClient::connect_with(tern.addr, conn5("manual", false, Some(600)))
        .await
        .0;
    while let Ok(Some(p)) = raw.next(common::QUIET).await {
        assert!(
            matches!(&p, Packet::PubRel(a) if a.packet_id == two.packet_id.expect("QoS 2")),
            "sent again: {p:?}"
        );
    }
    assert!(state.pending_acks().is_empty());
}

#[tokio::test]
async fn client_without_manual_acks_acknowledges_on_receipt() {
    let tern = Tern::start();
    let mut o = manual(&tern, "auto", V311);
    o.manual_acks = false;
    let mut sub = Client::connect(&o).await.expect("connect");
    sub.subscribe(
        &[("m/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))],
        None,
    )
    .await
    .expect("subscribe");
    let mut publisher = RawClient::connect(tern.addr, V311, "publisher").await;
    publisher
        .publish("m/1", b"one", QoS::AtLeastOnce, false)
        .await;
    let one = next_message(&mut sub).await;
    sub.flush().await.expect("flush");
    assert!(
        !sub.ack(&one).await.expect("ack"),
        "nothing left to acknowledge"
    );
    round_trip(&mut sub).await;
    // The PUBACK went out: the message is not sent again after a reconnection.
    sub.disconnect().await.expect("disconnect");
    let mut raw = RawClient::connect_with(tern.addr, connect_packet(V311, "auto", false))
        .await
        .0;
    raw.expect_nothing().await;
}

#[tokio::test]
async fn client_over_a_callers_stream_as_a_mqtt311_bridge() {
    let tern = Tern::start();
    let stream = tokio::net::TcpStream::connect(tern.addr)
        .await
        .expect("connect");
    let mut o = ConnectOptions::new("ignored-host", 1, "edge-bridge", V311);
    o.bridge = true;
    let mut bridge = Client::connect_stream(stream, &o).await.expect("connect");
    bridge
        .subscribe(
            &[("b/#", SubscriptionOptions::with_qos(QoS::AtLeastOnce))],
            None,
        )
        .await
        .expect("subscribe");
    // Its own message does not come back; another client's does, retain flag kept.
    bridge
        .publish(publish_of("b/own", b"own", QoS::AtLeastOnce))
        .await
        .expect("publish");
    let mut other = RawClient::connect(tern.addr, V311, "other").await;
    other
        .publish("b/theirs", b"theirs", QoS::AtLeastOnce, true)
        .await;
    let p = next_message(&mut bridge).await;
    assert_eq!(
        (&p.topic[..], &p.payload[..], p.retain),
        ("b/theirs", &b"theirs"[..], true)
    );
    expect_no_event(&mut bridge).await;
    // The same without the bridge bit: the client's own message comes back.
    let stream = tokio::net::TcpStream::connect(tern.addr)
        .await
        .expect("connect");
    let mut o = ConnectOptions::new("ignored-host", 1, "plain", V311);
    o.bridge = false;
    let mut plain = Client::connect_stream(stream, &o).await.expect("connect");
    plain
        .subscribe(
            &[("p/#", SubscriptionOptions::with_qos(QoS::AtMostOnce))],
            None,
        )
        .await
        .expect("subscribe");
    plain
        .publish(publish_of("p/own", b"own", QoS::AtMostOnce))
        .await
        .expect("publish");
    assert_eq!(&next_message(&mut plain).await.topic[..], "p/own");
}

/// A PUBLISH for `tern_client::Client::publish` (no retain, no properties).
fn publish_of(topic: &str, payload: &'static [u8], qos: QoS) -> tern_codec::Publish {
    tern_codec::Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties: Default::default(),
        payload: bytes::Bytes::from_static(payload),
    }
}
