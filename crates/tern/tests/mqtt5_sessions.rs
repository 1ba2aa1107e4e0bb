//! MQTT 5.0 conformance, chapter 4 of the specification: sessions (§4.1), the transport (§4.2),
//! QoS delivery flows (§4.3), redelivery (§4.4), message receipt (§4.5), ordering (§4.6), flow
//! control (§4.9), request/response (§4.10), the in-scope parts of enhanced authentication
//! (§4.12), error handling (§4.13) and conformance (§7.1.1).
//!
//! Every test starts the real `tern` binary and talks to it over loopback with raw packets.
//! Topic matching and shared subscriptions (§4.7, §4.8) are in `mqtt5_shared.rs`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{RawClient, TIMEOUT, Tern, V5, V311, conn5, frame, pid, publish};
use tern_codec::{
    Ack, Auth, ByteString, Connect, Disconnect, Packet, PacketId, Publish, QoS, ReasonCode,
    SubscriptionOptions,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Connects with `packet`, asserts success and returns the client and Session Present.
async fn connect(tern: &Tern, packet: Connect) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect_with(tern.addr, packet).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (c, ack.session_present)
}

/// A clean MQTT 5 client without session expiry.
async fn client(tern: &Tern, id: &str) -> RawClient {
    connect(tern, conn5(id, true, None)).await.0
}

/// A persistent MQTT 5 client (Session Expiry Interval 60 s, clean start) subscribed to `filter`.
async fn persistent_subscriber(tern: &Tern, id: &str, filter: &str, qos: QoS) -> RawClient {
    let (mut c, _) = connect(tern, conn5(id, true, Some(60))).await;
    assert_eq!(c.subscribe(filter, qos).await, [ReasonCode(qos as u8)]);
    c
}

/// Resumes the session of `id` (Clean Start 0) and asserts that it was present.
async fn resume(tern: &Tern, id: &str) -> RawClient {
    let (c, present) = connect(tern, conn5(id, false, Some(60))).await;
    assert!(present, "session of {id} should be present");
    c
}

/// Asserts that nothing arrives for `wait` and the connection stays open.
async fn quiet_for(c: &mut RawClient, wait: Duration) {
    match c.next(wait).await {
        Err(_) => {}
        Ok(Some(p)) => panic!("expected nothing, got {p:?}"),
        Ok(None) => panic!("expected nothing, but the connection was closed"),
    }
}

/// A PUBLISH with a packet identifier (for QoS > 0) and the given DUP flag.
fn publish_id(topic: &str, payload: &[u8], qos: QoS, id: u16, dup: bool) -> Packet {
    let mut p = publish(topic, payload, qos, false, Some(pid(id)));
    p.dup = dup;
    Packet::Publish(p)
}

async fn recv_puback(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubAck(a) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn recv_pubrec(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubRec(a) => a,
        other => panic!("expected PUBREC, got {other:?}"),
    }
}

async fn recv_pubrel(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubRel(a) => a,
        other => panic!("expected PUBREL, got {other:?}"),
    }
}

async fn recv_pubcomp(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubComp(a) => a,
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

/// Receives `n` PUBLISHes without acknowledging them.
async fn recv_n(c: &mut RawClient, n: usize) -> Vec<Publish> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.recv_publish().await);
    }
    out
}

/// Receives `n` PUBLISHes, completing every QoS 1 and QoS 2 flow as packets arrive (the server
/// may interleave new PUBLISHes with the PUBRELs of earlier ones).
async fn receive_acking(c: &mut RawClient, n: usize) -> Vec<Publish> {
    let mut got = Vec::with_capacity(n);
    let mut open_qos2 = 0usize;
    while got.len() < n || open_qos2 > 0 {
        match c.recv().await {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => c.send(&Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        open_qos2 += 1;
                        c.send(&Packet::PubRec(Ack::new(id))).await;
                    }
                    _ => {}
                }
                got.push(p);
            }
            Packet::PubRel(a) => {
                open_qos2 -= 1;
                c.send(&Packet::PubComp(Ack::new(a.packet_id))).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

fn index(p: &Publish) -> u32 {
    u32::from_be_bytes(p.payload[..4].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------
// §4.1 Sessions

#[tokio::test]
async fn mqtt5_s4_1_subscriptions_with_identifiers_are_session_state() {
    let tern = Tern::start();
    let (mut s, _) = connect(&tern, conn5("s41-sub", true, Some(60))).await;
    let granted = s
        .subscribe_with(
            "s41/+",
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            Some(7),
        )
        .await;
    assert_eq!(granted, [ReasonCode::GRANTED_QOS_1]);
    s.close().await;

    let mut s = resume(&tern, "s41-sub").await;
    let mut p = client(&tern, "s41-pub").await;
    assert_eq!(
        p.publish("s41/x", b"hello", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    let got = s.recv_publish().await;
    assert_eq!(got.topic, "s41/x");
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(got.properties.subscription_identifiers, [7]);
}

#[tokio::test]
async fn mqtt5_s4_1_retained_messages_survive_the_end_of_the_session() {
    let tern = Tern::start();
    let mut p = client(&tern, "s41-retainer").await;
    p.publish("s41/kept", b"still here", QoS::AtLeastOnce, true)
        .await;
    p.close().await;
    // The publisher's session (expiry 0) has ended; its retained message has not.
    let (_again, present) = connect(&tern, conn5("s41-retainer", false, None)).await;
    assert!(!present);

    let mut s = client(&tern, "s41-late").await;
    s.subscribe("s41/#", QoS::AtLeastOnce).await;
    let got = s.recv_publish().await;
    assert!(got.retain);
    assert_eq!(got.topic, "s41/kept");
    assert_eq!(&got.payload[..], b"still here");
}

#[tokio::test]
async fn mqtt5_4_1_0_1_session_state_is_kept_while_the_connection_is_open() {
    let tern = Tern::start();
    // Session Expiry Interval 1 s: it only runs once the connection has closed.
    let (mut s, _) = connect(&tern, conn5("s410-sub", true, Some(1))).await;
    s.subscribe("s410/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s410-pub").await;
    p.publish("s410/t", b"first", QoS::AtLeastOnce, false).await;
    let first = s.recv_publish().await;
    // Left unacknowledged for twice the expiry interval, with the connection open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.publish("s410/t", b"second", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        &s.recv_publish().await.payload[..],
        b"second",
        "subscription kept"
    );

    // A new connection takes the session over: it is still there, in-flight message included.
    let (mut s2, present) = connect(&tern, conn5("s410-sub", false, Some(1))).await;
    assert!(
        present,
        "session present after 2 s of a 1 s expiry, because it was connected"
    );
    let again = s2.recv_publish().await;
    assert_eq!(again.packet_id, first.packet_id);
    assert!(again.dup);
    assert_eq!(&again.payload[..], b"first");
    s.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
}

#[tokio::test]
async fn mqtt5_4_1_0_2_session_is_discarded_once_the_expiry_interval_has_passed() {
    let tern = Tern::start();
    let (mut s, _) = connect(&tern, conn5("s4102-sub", true, Some(1))).await;
    s.subscribe("s4102/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4102-pub").await;
    let before_close = Instant::now();
    s.close().await;

    // While the session exists its subscription matches; once it is discarded nothing does.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reason = p.publish("s4102/t", b"x", QoS::AtLeastOnce, false).await;
        if reason == ReasonCode::NO_MATCHING_SUBSCRIBERS {
            break;
        }
        assert_eq!(reason, ReasonCode::SUCCESS);
        assert!(Instant::now() < deadline, "session never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        before_close.elapsed() >= Duration::from_secs(1),
        "discarded before its interval had passed"
    );
    let (_s, present) = connect(&tern, conn5("s4102-sub", false, Some(1))).await;
    assert!(!present);
}

#[tokio::test]
async fn mqtt5_4_1_0_2_session_is_kept_until_the_interval_has_passed() {
    let tern = Tern::start();
    let s = persistent_subscriber(&tern, "s4102b-sub", "s4102b/t", QoS::AtLeastOnce).await;
    s.close().await;
    let mut p = client(&tern, "s4102b-pub").await;
    assert_eq!(
        p.publish("s4102b/t", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    let mut s = resume(&tern, "s4102b-sub").await;
    assert_eq!(&s.recv_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn mqtt5_4_1_0_2_zero_expiry_discards_the_session_at_close() {
    let tern = Tern::start();
    let (mut s, _) = connect(&tern, conn5("s4102c-sub", true, None)).await;
    s.subscribe("s4102c/t", QoS::AtLeastOnce).await;
    s.close().await;
    let mut p = client(&tern, "s4102c-pub").await;
    assert_eq!(
        p.publish("s4102c/t", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    let (_s, present) = connect(&tern, conn5("s4102c-sub", false, None)).await;
    assert!(!present);
}

// ---------------------------------------------------------------------------------------------
// §4.2 Transport

#[tokio::test]
async fn mqtt5_4_2_1_tcp_carries_every_packet_in_order() {
    let tern = Tern::start();
    let mut s = client(&tern, "s42-sub").await;
    s.subscribe("s42/t", QoS::AtMostOnce).await;
    let mut p = client(&tern, "s42-pub").await;
    // 500 packets in one write: the server must split the byte stream back into packets.
    p.send_all((0..500u32).map(|i| {
        Packet::Publish(publish(
            "s42/t",
            &i.to_be_bytes(),
            QoS::AtMostOnce,
            false,
            None,
        ))
    }))
    .await;
    for i in 0..500u32 {
        assert_eq!(index(&s.recv_publish().await), i);
    }
}

// ---------------------------------------------------------------------------------------------
// §4.3 QoS delivery flows

#[tokio::test]
async fn mqtt5_4_3_1_1_qos0_is_sent_with_qos0_and_dup0_and_never_acknowledged() {
    let tern = Tern::start();
    let mut s = client(&tern, "s431-sub").await;
    s.subscribe("s431/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s431-pub").await;
    p.send(&Packet::Publish(publish(
        "s431/t",
        b"m",
        QoS::AtMostOnce,
        false,
        None,
    )))
    .await;
    let got = s.recv_publish().await;
    assert_eq!(got.qos, QoS::AtMostOnce);
    assert!(!got.dup);
    assert_eq!(got.packet_id, None);
    p.expect_nothing().await; // no acknowledgement to the publisher
    s.expect_nothing().await; // and no retry towards the subscriber
}

#[tokio::test]
async fn mqtt5_4_3_2_1_each_new_qos1_message_gets_an_unused_identifier() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4321-sub").await;
    s.subscribe("s4321/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4321-pub").await;
    for i in 0..10u32 {
        p.publish("s4321/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let got = recv_n(&mut s, 10).await;
    let ids: HashSet<u16> = got.iter().map(|p| p.packet_id.unwrap().get()).collect();
    assert_eq!(
        ids.len(),
        10,
        "identifiers of unacknowledged messages are distinct"
    );
}

#[tokio::test]
async fn mqtt5_4_3_2_2_first_qos1_send_has_qos1_and_dup0() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4322-sub").await;
    s.subscribe("s4322/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4322-pub").await;
    p.publish("s4322/t", b"m", QoS::AtLeastOnce, false).await;
    let got = s.recv_publish().await;
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert!(!got.dup);
    assert!(got.packet_id.is_some());
}

#[tokio::test]
async fn mqtt5_4_3_2_3_qos1_message_is_kept_until_its_puback() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4323-sub", "s4323/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4323-pub").await;
    p.publish("s4323/t", b"m", QoS::AtLeastOnce, false).await;
    let first = s.recv_publish().await;
    s.close().await;

    let mut s = resume(&tern, "s4323-sub").await;
    let again = s.recv_publish().await;
    assert_eq!(again.packet_id, first.packet_id, "still unacknowledged");
    assert!(again.dup);
    s.send(&Packet::PubAck(Ack::new(again.packet_id.unwrap())))
        .await;
    assert!(s.sync().await.is_empty());
    s.close().await;

    let mut s = resume(&tern, "s4323-sub").await;
    assert!(
        s.sync().await.is_empty(),
        "acknowledged: nothing left to send"
    );
}

#[tokio::test]
async fn mqtt5_4_3_2_4_puback_carries_the_identifier_of_the_publish() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4324-sub").await;
    s.subscribe("s4324/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4324-pub").await;
    p.send(&publish_id(
        "s4324/t",
        b"m",
        QoS::AtLeastOnce,
        0xBEEF,
        false,
    ))
    .await;
    let ack = recv_puback(&mut p).await;
    assert_eq!(ack.packet_id, pid(0xBEEF));
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // The message was taken over: the subscriber has it.
    assert_eq!(&s.recv_publish().await.payload[..], b"m");
}

#[tokio::test]
async fn mqtt5_4_3_2_5_same_identifier_after_puback_is_a_new_message() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4325-sub").await;
    s.subscribe("s4325/t", QoS::AtMostOnce).await;
    let mut p = client(&tern, "s4325-pub").await;
    p.send(&publish_id("s4325/t", b"first", QoS::AtLeastOnce, 7, false))
        .await;
    assert_eq!(recv_puback(&mut p).await.packet_id, pid(7));
    p.send(&publish_id("s4325/t", b"second", QoS::AtLeastOnce, 7, true))
        .await;
    assert_eq!(recv_puback(&mut p).await.packet_id, pid(7));
    assert_eq!(&s.recv_publish().await.payload[..], b"first");
    assert_eq!(
        &s.recv_publish().await.payload[..],
        b"second",
        "DUP does not matter"
    );
}

#[tokio::test]
async fn mqtt5_4_3_3_1_each_new_qos2_message_gets_an_unused_identifier() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4331-sub").await;
    s.subscribe("s4331/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4331-pub").await;
    for i in 0..5u32 {
        p.publish("s4331/t", &i.to_be_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    let first = recv_n(&mut s, 5).await;
    let mut in_use: HashSet<u16> = first.iter().map(|p| p.packet_id.unwrap().get()).collect();
    assert_eq!(in_use.len(), 5);
    // One moves on to the PUBREL stage; its identifier stays in use until PUBCOMP.
    let id0 = first[0].packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::new(id0))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id0);

    for i in 5..10u32 {
        p.publish("s4331/t", &i.to_be_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    for got in recv_n(&mut s, 5).await {
        let id = got.packet_id.unwrap().get();
        assert!(in_use.insert(id), "identifier {id} reused while in use");
    }
}

#[tokio::test]
async fn mqtt5_4_3_3_2_first_qos2_send_has_qos2_and_dup0() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4332-sub").await;
    s.subscribe("s4332/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4332-pub").await;
    p.publish("s4332/t", b"m", QoS::ExactlyOnce, false).await;
    let got = s.recv_publish().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    assert!(!got.dup);
    assert!(got.packet_id.is_some());
}

#[tokio::test]
async fn mqtt5_4_3_3_3_qos2_message_is_kept_until_its_pubrec() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4333-sub", "s4333/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4333-pub").await;
    p.publish("s4333/t", b"m", QoS::ExactlyOnce, false).await;
    let first = s.recv_publish().await;
    s.expect_nothing().await;
    s.close().await;

    let mut s = resume(&tern, "s4333-sub").await;
    let again = s.recv_publish().await;
    assert_eq!(again.qos, QoS::ExactlyOnce);
    assert_eq!(again.packet_id, first.packet_id);
    assert!(again.dup);
    assert_eq!(&again.payload[..], b"m");
}

#[tokio::test]
async fn mqtt5_4_3_3_4_pubrec_is_answered_with_pubrel_of_the_same_identifier() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4334-sub").await;
    s.subscribe("s4334/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4334-pub").await;
    p.publish("s4334/t", b"m", QoS::ExactlyOnce, false).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::new(id))).await;
    let rel = recv_pubrel(&mut s).await;
    assert_eq!(rel.packet_id, id);
    assert_eq!(rel.reason, ReasonCode::SUCCESS);
    s.send(&Packet::PubComp(Ack::new(id))).await;
    assert!(s.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_4_3_3_5_pubrel_is_kept_until_its_pubcomp() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4335-sub", "s4335/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4335-pub").await;
    p.publish("s4335/t", b"m", QoS::ExactlyOnce, false).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
    s.close().await;

    let mut s = resume(&tern, "s4335-sub").await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id, "PUBREL re-sent");
    s.send(&Packet::PubComp(Ack::new(id))).await;
    assert!(s.sync().await.is_empty());
    s.close().await;

    let mut s = resume(&tern, "s4335-sub").await;
    assert!(s.sync().await.is_empty(), "completed: nothing left");
}

#[tokio::test]
async fn mqtt5_4_3_3_6_publish_is_never_resent_once_pubrel_was_sent() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4336-sub", "s4336/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4336-pub").await;
    p.publish("s4336/t", b"m", QoS::ExactlyOnce, false).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
    // A repeated PUBREC gets the PUBREL again, never the PUBLISH.
    s.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
    s.close().await;

    let mut s = resume(&tern, "s4336-sub").await;
    let sent = s.sync().await;
    assert_eq!(
        sent,
        [Packet::PubRel(Ack::new(id))],
        "only the PUBREL comes back"
    );
}

#[tokio::test]
async fn mqtt5_4_3_3_7_sent_qos2_message_is_completed_after_it_expires() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4337-sub").await;
    s.subscribe("s4337/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4337-pub").await;
    let mut m = publish("s4337/t", b"m", QoS::ExactlyOnce, false, Some(pid(1)));
    m.properties.message_expiry_interval = Some(1);
    p.send(&Packet::Publish(m)).await;
    recv_pubrec(&mut p).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    // Let the message expire before acknowledging it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.send(&Packet::PubRec(Ack::new(id))).await;
    let rel = recv_pubrel(&mut s).await;
    assert_eq!((rel.packet_id, rel.reason), (id, ReasonCode::SUCCESS));
    s.send(&Packet::PubComp(Ack::new(id))).await;
    assert!(s.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_4_3_3_7_sent_qos2_message_is_resent_after_it_expires() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4337b-sub", "s4337b/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4337b-pub").await;
    let mut m = publish("s4337b/t", b"m", QoS::ExactlyOnce, false, Some(pid(1)));
    m.properties.message_expiry_interval = Some(1);
    p.send(&Packet::Publish(m)).await;
    recv_pubrec(&mut p).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    s.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut s = resume(&tern, "s4337b-sub").await;
    let again = s.recv_publish().await;
    assert_eq!(again.packet_id, Some(id), "the started flow is finished");
    assert!(again.dup);
    s.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
}

#[tokio::test]
async fn mqtt5_4_3_3_8_pubrec_carries_the_identifier_of_the_publish() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4338-sub").await;
    s.subscribe("s4338/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4338-pub").await;
    p.send(&publish_id(
        "s4338/t",
        b"m",
        QoS::ExactlyOnce,
        0x2222,
        false,
    ))
    .await;
    let rec = recv_pubrec(&mut p).await;
    assert_eq!(
        (rec.packet_id, rec.reason),
        (pid(0x2222), ReasonCode::SUCCESS)
    );
    assert_eq!(&s.recv_publish().await.payload[..], b"m");
}

#[tokio::test]
async fn mqtt5_4_3_3_8_pubrec_reports_a_refusal_found_before_taking_ownership() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4338b-sub").await;
    // The forged topic itself: `$SYS/#` would also get the broker's own `$SYS` topics.
    s.subscribe("$SYS/forged", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4338b-pub").await;
    p.send(&publish_id(
        "$SYS/forged",
        b"m",
        QoS::ExactlyOnce,
        0x2323,
        false,
    ))
    .await;
    let rec = recv_pubrec(&mut p).await;
    assert_eq!(
        (rec.packet_id, rec.reason),
        (pid(0x2323), ReasonCode::NOT_AUTHORIZED)
    );
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_4_3_3_9_identifier_after_a_failed_pubrec_is_a_new_message() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4339-sub").await;
    s.subscribe("s4339/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4339-pub").await;
    p.send(&publish_id(
        "$SYS/x",
        b"refused",
        QoS::ExactlyOnce,
        5,
        false,
    ))
    .await;
    assert_eq!(recv_pubrec(&mut p).await.reason, ReasonCode::NOT_AUTHORIZED);
    // Same identifier, even flagged DUP: a new message, delivered.
    p.send(&publish_id("s4339/t", b"new", QoS::ExactlyOnce, 5, true))
        .await;
    let rec = recv_pubrec(&mut p).await;
    assert_eq!((rec.packet_id, rec.reason), (pid(5), ReasonCode::SUCCESS));
    p.send(&Packet::PubRel(Ack::new(pid(5)))).await;
    assert_eq!(recv_pubcomp(&mut p).await.reason, ReasonCode::SUCCESS);
    assert_eq!(&s.recv_publish().await.payload[..], b"new");
}

#[tokio::test]
async fn mqtt5_4_3_3_10_duplicate_before_pubrel_is_acknowledged_but_not_forwarded() {
    let tern = Tern::start();
    let mut s = client(&tern, "s43310-sub").await;
    s.subscribe("s43310/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s43310-pub").await;
    p.send(&publish_id("s43310/t", b"once", QoS::ExactlyOnce, 9, false))
        .await;
    assert_eq!(recv_pubrec(&mut p).await.packet_id, pid(9));
    p.send(&publish_id("s43310/t", b"once", QoS::ExactlyOnce, 9, true))
        .await;
    let rec = recv_pubrec(&mut p).await;
    assert_eq!((rec.packet_id, rec.reason), (pid(9), ReasonCode::SUCCESS));
    p.send(&Packet::PubRel(Ack::new(pid(9)))).await;
    assert_eq!(recv_pubcomp(&mut p).await.packet_id, pid(9));
    // A marker published after the duplicate shows whether a second copy went out before it.
    p.publish("s43310/t", b"marker", QoS::AtMostOnce, false)
        .await;
    let got = receive_acking(&mut s, 2).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [&b"once"[..], &b"marker"[..]]);
}

#[tokio::test]
async fn mqtt5_4_3_3_10_duplicate_after_reconnect_is_not_forwarded_again() {
    let tern = Tern::start();
    let mut s = client(&tern, "s43310b-sub").await;
    s.subscribe("s43310b/t", QoS::ExactlyOnce).await;
    let (mut p, _) = connect(&tern, conn5("s43310b-pub", true, Some(60))).await;
    p.send(&publish_id(
        "s43310b/t",
        b"once",
        QoS::ExactlyOnce,
        9,
        false,
    ))
    .await;
    assert_eq!(recv_pubrec(&mut p).await.packet_id, pid(9));
    p.close().await;
    // The received-but-not-released identifier is session state.
    let mut p = resume(&tern, "s43310b-pub").await;
    p.send(&publish_id("s43310b/t", b"once", QoS::ExactlyOnce, 9, true))
        .await;
    assert_eq!(recv_pubrec(&mut p).await.reason, ReasonCode::SUCCESS);
    p.send(&Packet::PubRel(Ack::new(pid(9)))).await;
    assert_eq!(recv_pubcomp(&mut p).await.reason, ReasonCode::SUCCESS);
    p.publish("s43310b/t", b"marker", QoS::AtMostOnce, false)
        .await;
    let got = receive_acking(&mut s, 2).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [&b"once"[..], &b"marker"[..]]);
}

#[tokio::test]
async fn mqtt5_4_3_3_11_every_pubrel_is_answered_with_pubcomp_of_its_identifier() {
    let tern = Tern::start();
    let mut p = client(&tern, "s43311-pub").await;
    p.send(&publish_id(
        "s43311/t",
        b"m",
        QoS::ExactlyOnce,
        0x3131,
        false,
    ))
    .await;
    recv_pubrec(&mut p).await;
    p.send(&Packet::PubRel(Ack::new(pid(0x3131)))).await;
    let comp = recv_pubcomp(&mut p).await;
    assert_eq!(
        (comp.packet_id, comp.reason),
        (pid(0x3131), ReasonCode::SUCCESS)
    );
    // Even a PUBREL for an identifier the server does not know gets a PUBCOMP.
    p.send(&Packet::PubRel(Ack::new(pid(0x3232)))).await;
    let comp = recv_pubcomp(&mut p).await;
    assert_eq!(
        (comp.packet_id, comp.reason),
        (pid(0x3232), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
}

#[tokio::test]
async fn mqtt5_4_3_3_12_same_identifier_after_pubcomp_is_a_new_message() {
    let tern = Tern::start();
    let mut s = client(&tern, "s43312-sub").await;
    s.subscribe("s43312/t", QoS::AtMostOnce).await;
    let mut p = client(&tern, "s43312-pub").await;
    for (payload, dup) in [(&b"first"[..], false), (&b"second"[..], true)] {
        p.send(&publish_id("s43312/t", payload, QoS::ExactlyOnce, 3, dup))
            .await;
        assert_eq!(recv_pubrec(&mut p).await.reason, ReasonCode::SUCCESS);
        p.send(&Packet::PubRel(Ack::new(pid(3)))).await;
        assert_eq!(recv_pubcomp(&mut p).await.packet_id, pid(3));
    }
    assert_eq!(&s.recv_publish().await.payload[..], b"first");
    assert_eq!(&s.recv_publish().await.payload[..], b"second");
}

#[tokio::test]
async fn mqtt5_4_3_3_13_expired_message_still_completes_pubrec_pubrel_pubcomp() {
    let tern = Tern::start();
    let mut p = client(&tern, "s43313-pub").await;
    let mut m = publish("s43313/t", b"m", QoS::ExactlyOnce, false, Some(pid(0x1313)));
    m.properties.message_expiry_interval = Some(1);
    p.send(&Packet::Publish(m)).await;
    assert_eq!(recv_pubrec(&mut p).await.packet_id, pid(0x1313));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.send(&Packet::PubRel(Ack::new(pid(0x1313)))).await;
    let comp = recv_pubcomp(&mut p).await;
    assert_eq!(
        (comp.packet_id, comp.reason),
        (pid(0x1313), ReasonCode::SUCCESS)
    );
}

// ---------------------------------------------------------------------------------------------
// §4.4 Redelivery

#[tokio::test]
async fn mqtt5_4_4_0_1_unacknowledged_packets_are_resent_on_resume_with_original_ids() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4401-sub", "s4401/#", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4401-pub").await;
    p.publish("s4401/a", b"one", QoS::AtLeastOnce, false).await;
    p.publish("s4401/b", b"two", QoS::ExactlyOnce, false).await;
    p.publish("s4401/c", b"three", QoS::ExactlyOnce, false)
        .await;
    let sent = recv_n(&mut s, 3).await;
    let ids: Vec<PacketId> = sent.iter().map(|p| p.packet_id.unwrap()).collect();
    s.send(&Packet::PubRec(Ack::new(ids[2]))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, ids[2]);
    s.close().await;

    let mut s = resume(&tern, "s4401-sub").await;
    let resent = s.sync().await;
    assert_eq!(resent.len(), 3, "{resent:?}");
    for (i, (topic, payload, qos)) in [
        ("s4401/a", &b"one"[..], QoS::AtLeastOnce),
        ("s4401/b", &b"two"[..], QoS::ExactlyOnce),
    ]
    .into_iter()
    .enumerate()
    {
        match &resent[i] {
            Packet::Publish(p) => {
                assert!(p.dup, "DUP set on re-delivery");
                assert_eq!(p.packet_id, Some(ids[i]), "original identifier");
                assert_eq!((&p.topic[..], &p.payload[..], p.qos), (topic, payload, qos));
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert_eq!(resent[2], Packet::PubRel(Ack::new(ids[2])));
}

#[tokio::test]
async fn mqtt5_4_4_0_1_no_timer_based_retry_within_a_connection() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4401b-sub").await;
    s.subscribe("s4401b/#", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4401b-pub").await;
    p.publish("s4401b/a", b"one", QoS::AtLeastOnce, false).await;
    p.publish("s4401b/b", b"two", QoS::ExactlyOnce, false).await;
    p.publish("s4401b/c", b"three", QoS::ExactlyOnce, false)
        .await;
    let sent = recv_n(&mut s, 3).await;
    s.send(&Packet::PubRec(Ack::new(sent[2].packet_id.unwrap())))
        .await;
    recv_pubrel(&mut s).await;
    // Nothing is acknowledged further; the server must not retry on its own.
    quiet_for(&mut s, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn mqtt5_4_4_0_1_clean_start_resends_nothing() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4401c-sub", "s4401c/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4401c-pub").await;
    p.publish("s4401c/t", b"m", QoS::AtLeastOnce, false).await;
    s.recv_publish().await;
    s.close().await;
    let (mut s, present) = connect(&tern, conn5("s4401c-sub", true, Some(60))).await;
    assert!(!present);
    assert!(s.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_4_4_0_2_puback_with_an_error_code_ends_the_delivery() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4402-sub", "s4402/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4402-pub").await;
    p.publish("s4402/t", b"m", QoS::AtLeastOnce, false).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    s.send(&Packet::PubAck(Ack::with_reason(
        id,
        ReasonCode::UNSPECIFIED_ERROR,
    )))
    .await;
    assert!(s.sync().await.is_empty());
    s.close().await;
    let mut s = resume(&tern, "s4402-sub").await;
    assert!(s.sync().await.is_empty(), "not re-sent");
}

#[tokio::test]
async fn mqtt5_4_4_0_2_pubrec_with_an_error_code_ends_the_delivery() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4402b-sub", "s4402b/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4402b-pub").await;
    p.publish("s4402b/t", b"m", QoS::ExactlyOnce, false).await;
    let id = s.recv_publish().await.packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::with_reason(
        id,
        ReasonCode::QUOTA_EXCEEDED,
    )))
    .await;
    assert!(s.sync().await.is_empty(), "no PUBREL after a failed PUBREC");
    s.close().await;
    let mut s = resume(&tern, "s4402b-sub").await;
    assert!(s.sync().await.is_empty(), "not re-sent");
}

// ---------------------------------------------------------------------------------------------
// §4.5 Message receipt

#[tokio::test]
async fn mqtt5_4_5_0_1_message_goes_to_every_matching_session_even_disconnected_ones() {
    let tern = Tern::start();
    let mut online = client(&tern, "s4501-online").await;
    online.subscribe("s4501/+", QoS::AtLeastOnce).await;
    let offline = persistent_subscriber(&tern, "s4501-offline", "s4501/#", QoS::AtLeastOnce).await;
    offline.close().await;
    let other = persistent_subscriber(&tern, "s4501-other", "elsewhere/#", QoS::AtLeastOnce).await;
    other.close().await;

    let mut p = client(&tern, "s4501-pub").await;
    p.publish("s4501/t", b"m", QoS::AtLeastOnce, false).await;
    assert_eq!(&online.recv_publish().await.payload[..], b"m");

    let mut offline = resume(&tern, "s4501-offline").await;
    let got = offline.recv_publish().await;
    assert_eq!(&got.payload[..], b"m");
    assert!(!got.dup, "queued, not sent before");
    let mut other = resume(&tern, "s4501-other").await;
    assert!(
        other.sync().await.is_empty(),
        "non-matching session gets nothing"
    );
}

#[tokio::test]
async fn mqtt5_4_5_0_2_client_that_never_acknowledges_is_tolerated() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4502-sub").await;
    s.subscribe("s4502/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4502-pub").await;
    for i in 0..3u32 {
        p.publish("s4502/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    recv_n(&mut s, 3).await;
    // No acknowledgements at all: the server keeps the connection and keeps serving it.
    assert!(s.sync().await.is_empty());
    p.publish("s4502/t", &3u32.to_be_bytes(), QoS::AtMostOnce, false)
        .await;
    assert_eq!(index(&s.recv_publish().await), 3);
}

// ---------------------------------------------------------------------------------------------
// §4.6 Ordering

#[tokio::test]
async fn mqtt5_4_6_0_1_resent_publishes_keep_their_original_order() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4601-sub", "s4601/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4601-pub").await;
    for i in 0..10u32 {
        p.publish("s4601/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let first = recv_n(&mut s, 10).await;
    s.close().await;
    let mut s = resume(&tern, "s4601-sub").await;
    let again = recv_n(&mut s, 10).await;
    for (i, (a, b)) in first.iter().zip(&again).enumerate() {
        assert_eq!(index(b), i as u32, "order");
        assert_eq!(a.packet_id, b.packet_id);
        assert!(b.dup);
    }
}

#[tokio::test]
async fn mqtt5_4_6_0_2_pubacks_follow_the_order_of_the_publishes() {
    let tern = Tern::start();
    let mut p = client(&tern, "s4602-pub").await;
    let mut bytes = BytesMut::new();
    for id in 100..120u16 {
        publish_id("s4602/t", b"m", QoS::AtLeastOnce, id, false)
            .encode(V5, &mut bytes)
            .unwrap();
    }
    p.send_bytes(&bytes).await;
    for id in 100..120u16 {
        assert_eq!(recv_puback(&mut p).await.packet_id, pid(id));
    }
}

#[tokio::test]
async fn mqtt5_4_6_0_2_pubacks_out_of_order_from_the_client_are_tolerated() {
    let tern = Tern::start();
    let mut s = persistent_subscriber(&tern, "s4602b-sub", "s4602b/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4602b-pub").await;
    for i in 0..3u32 {
        p.publish("s4602b/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let got = recv_n(&mut s, 3).await;
    for m in got.iter().rev() {
        s.send(&Packet::PubAck(Ack::new(m.packet_id.unwrap())))
            .await;
    }
    assert!(s.sync().await.is_empty());
    s.close().await;
    let mut s = resume(&tern, "s4602b-sub").await;
    assert!(s.sync().await.is_empty(), "all three acknowledged");
}

#[tokio::test]
async fn mqtt5_4_6_0_3_pubrecs_follow_the_order_of_the_publishes() {
    let tern = Tern::start();
    let mut p = client(&tern, "s4603-pub").await;
    let mut bytes = BytesMut::new();
    for id in 200..220u16 {
        publish_id("s4603/t", b"m", QoS::ExactlyOnce, id, false)
            .encode(V5, &mut bytes)
            .unwrap();
    }
    p.send_bytes(&bytes).await;
    for id in 200..220u16 {
        assert_eq!(recv_pubrec(&mut p).await.packet_id, pid(id));
    }
}

#[tokio::test]
async fn mqtt5_4_6_0_3_pubrecs_out_of_order_from_the_client_are_tolerated() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4603b-sub").await;
    s.subscribe("s4603b/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4603b-pub").await;
    for i in 0..3u32 {
        p.publish("s4603b/t", &i.to_be_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    let got = recv_n(&mut s, 3).await;
    for m in got.iter().rev() {
        let id = m.packet_id.unwrap();
        s.send(&Packet::PubRec(Ack::new(id))).await;
        assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
        s.send(&Packet::PubComp(Ack::new(id))).await;
    }
    assert!(s.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_4_6_0_4_pubrels_follow_the_order_of_the_pubrecs() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4604-sub").await;
    s.subscribe("s4604/t", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4604-pub").await;
    for i in 0..3u32 {
        p.publish("s4604/t", &i.to_be_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    let got = recv_n(&mut s, 3).await;
    let ids: Vec<PacketId> = got.iter().map(|p| p.packet_id.unwrap()).collect();
    let order = [ids[2], ids[0], ids[1]];
    let mut bytes = BytesMut::new();
    for id in order {
        Packet::PubRec(Ack::new(id)).encode(V5, &mut bytes).unwrap();
    }
    s.send_bytes(&bytes).await;
    for id in order {
        assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
    }
}

#[tokio::test]
async fn mqtt5_4_6_0_5_one_publishers_messages_arrive_in_order_through_a_small_window() {
    let tern = Tern::start();
    let mut sub = conn5("s4605-sub", true, None);
    sub.properties.receive_maximum = Some(5);
    let (mut s, _) = connect(&tern, sub).await;
    s.subscribe("s4605/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "s4605-pub").await;
    let mut bytes = BytesMut::new();
    for i in 0..300u32 {
        let id = u16::try_from(i + 1).unwrap();
        Packet::Publish(publish(
            "s4605/t",
            &i.to_be_bytes(),
            QoS::AtLeastOnce,
            false,
            Some(pid(id)),
        ))
        .encode(V5, &mut bytes)
        .unwrap();
    }
    p.send_bytes(&bytes).await;
    let got = receive_acking(&mut s, 300).await;
    let order: Vec<u32> = got.iter().map(index).collect();
    assert_eq!(order, (0..300).collect::<Vec<_>>());
    for _ in 0..300 {
        recv_puback(&mut p).await;
    }
}

#[tokio::test]
async fn mqtt5_4_6_0_6_every_topic_is_ordered_by_default() {
    let tern = Tern::start();
    let mut s = client(&tern, "s4606-sub").await;
    s.subscribe("s4606/#", QoS::ExactlyOnce).await;
    let mut p = client(&tern, "s4606-pub").await;
    let mut bytes = BytesMut::new();
    for i in 0..100u32 {
        let topic = format!("s4606/{}", i % 4);
        let id = u16::try_from(i + 1).unwrap();
        Packet::Publish(publish(
            &topic,
            &i.to_be_bytes(),
            QoS::ExactlyOnce,
            false,
            Some(pid(id)),
        ))
        .encode(V5, &mut bytes)
        .unwrap();
    }
    p.send_bytes(&bytes).await;
    let got = receive_acking(&mut s, 100).await;
    for t in 0..4u32 {
        let topic = format!("s4606/{t}");
        let on_topic: Vec<u32> = got.iter().filter(|m| m.topic == topic).map(index).collect();
        let expected: Vec<u32> = (0..100).filter(|i| i % 4 == t).collect();
        assert_eq!(on_topic, expected, "order on {topic}");
    }
    for _ in 0..100 {
        let rec = recv_pubrec(&mut p).await;
        p.send(&Packet::PubRel(Ack::new(rec.packet_id))).await;
    }
}

// ---------------------------------------------------------------------------------------------
// §4.9 Flow control

/// A subscriber on `filter` with the given Receive Maximum.
async fn windowed_subscriber(
    tern: &Tern,
    id: &str,
    filter: &str,
    qos: QoS,
    receive_maximum: u16,
    expiry: Option<u32>,
) -> RawClient {
    let mut c = conn5(id, true, expiry);
    c.properties.receive_maximum = Some(receive_maximum);
    let (mut s, _) = connect(tern, c).await;
    s.subscribe(filter, qos).await;
    s
}

#[tokio::test]
async fn mqtt5_4_9_0_1_send_quota_starts_at_the_clients_receive_maximum() {
    let tern = Tern::start();
    let mut s = windowed_subscriber(&tern, "s4901-sub", "s4901/t", QoS::AtLeastOnce, 3, None).await;
    let mut p = client(&tern, "s4901-pub").await;
    for i in 0..6u32 {
        p.publish("s4901/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let got = recv_n(&mut s, 3).await;
    assert_eq!(got.iter().map(index).collect::<Vec<_>>(), [0, 1, 2]);
    s.expect_nothing().await;
    s.send(&Packet::PubAck(Ack::new(got[0].packet_id.unwrap())))
        .await;
    assert_eq!(index(&s.recv_publish().await), 3);
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_4_9_0_2_no_qos2_publish_while_the_quota_is_used_up() {
    let tern = Tern::start();
    let mut s = windowed_subscriber(&tern, "s4902-sub", "s4902/t", QoS::ExactlyOnce, 2, None).await;
    let mut p = client(&tern, "s4902-pub").await;
    for i in 0..4u32 {
        p.publish("s4902/t", &i.to_be_bytes(), QoS::ExactlyOnce, false)
            .await;
    }
    let got = recv_n(&mut s, 2).await;
    s.expect_nothing().await;
    // PUBREC does not return quota; PUBCOMP does.
    let id = got[0].packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(recv_pubrel(&mut s).await.packet_id, id);
    s.expect_nothing().await;
    s.send(&Packet::PubComp(Ack::new(id))).await;
    assert_eq!(index(&s.recv_publish().await), 2);
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_4_9_0_3_other_packets_are_handled_while_the_quota_is_zero() {
    let tern = Tern::start();
    let mut s = windowed_subscriber(&tern, "s4903-sub", "s4903/t", QoS::AtLeastOnce, 1, None).await;
    let mut p = client(&tern, "s4903-pub").await;
    p.publish("s4903/t", &0u32.to_be_bytes(), QoS::AtLeastOnce, false)
        .await;
    p.publish("s4903/t", &1u32.to_be_bytes(), QoS::AtLeastOnce, false)
        .await;
    let first = s.recv_publish().await;
    // Quota 0: the second message waits, everything else is answered.
    assert!(s.sync().await.is_empty());
    assert_eq!(
        s.subscribe("s4903/other", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    s.send(&publish_id(
        "s4903/elsewhere",
        b"x",
        QoS::AtLeastOnce,
        42,
        false,
    ))
    .await;
    assert_eq!(recv_puback(&mut s).await.packet_id, pid(42));
    assert_eq!(s.unsubscribe("s4903/other").await, [ReasonCode::SUCCESS]);
    s.send(&Packet::PubAck(Ack::new(first.packet_id.unwrap())))
        .await;
    assert_eq!(index(&s.recv_publish().await), 1);
}

#[tokio::test]
async fn mqtt5_s4_9_error_acknowledgements_return_quota() {
    let tern = Tern::start();
    let mut s = windowed_subscriber(&tern, "s49-sub", "s49/+", QoS::ExactlyOnce, 1, None).await;
    let mut p = client(&tern, "s49-pub").await;
    p.publish("s49/a", &0u32.to_be_bytes(), QoS::AtLeastOnce, false)
        .await;
    p.publish("s49/b", &1u32.to_be_bytes(), QoS::ExactlyOnce, false)
        .await;
    p.publish("s49/c", &2u32.to_be_bytes(), QoS::ExactlyOnce, false)
        .await;
    let m = s.recv_publish().await;
    s.send(&Packet::PubAck(Ack::with_reason(
        m.packet_id.unwrap(),
        ReasonCode::UNSPECIFIED_ERROR,
    )))
    .await;
    let m = s.recv_publish().await;
    assert_eq!(index(&m), 1, "PUBACK 0x80 returned the quota");
    s.send(&Packet::PubRec(Ack::with_reason(
        m.packet_id.unwrap(),
        ReasonCode::UNSPECIFIED_ERROR,
    )))
    .await;
    assert_eq!(
        index(&s.recv_publish().await),
        2,
        "PUBREC 0x80 returned the quota"
    );
}

#[tokio::test]
async fn mqtt5_s4_9_quota_is_reset_on_each_new_connection() {
    let tern = Tern::start();
    let mut s =
        windowed_subscriber(&tern, "s49b-sub", "s49b/t", QoS::AtLeastOnce, 1, Some(60)).await;
    let mut p = client(&tern, "s49b-pub").await;
    for i in 0..4u32 {
        p.publish("s49b/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    let first = s.recv_publish().await;
    s.expect_nothing().await;
    s.close().await;

    let mut c = conn5("s49b-sub", false, Some(60));
    c.properties.receive_maximum = Some(3);
    let (mut s, present) = connect(&tern, c).await;
    assert!(present);
    let got = recv_n(&mut s, 3).await;
    assert_eq!(got[0].packet_id, first.packet_id);
    assert!(got[0].dup);
    assert_eq!(got.iter().map(index).collect::<Vec<_>>(), [0, 1, 2]);
    s.expect_nothing().await;
}

// ---------------------------------------------------------------------------------------------
// §4.10 Request / response

#[tokio::test]
async fn mqtt5_s4_10_response_topic_and_correlation_data_are_forwarded_untouched() {
    let tern = Tern::start();
    let mut responder = client(&tern, "s410-responder").await;
    responder.subscribe("s410/req", QoS::AtLeastOnce).await;
    let mut requester = client(&tern, "s410-requester").await;
    requester.subscribe("s410/resp/me", QoS::AtLeastOnce).await;

    let correlation = Bytes::from_static(&[0, 255, 1, 0x80]);
    let mut req = publish(
        "s410/req",
        b"what time?",
        QoS::AtLeastOnce,
        false,
        Some(pid(1)),
    );
    req.properties.response_topic = Some(ByteString::from("s410/resp/me"));
    req.properties.correlation_data = Some(correlation.clone());
    req.properties.user_properties = vec![(ByteString::from("k"), ByteString::from("v"))];
    requester.send(&Packet::Publish(req)).await;
    recv_puback(&mut requester).await;

    let got = responder.recv_publish().await;
    responder.ack(&got).await;
    assert_eq!(
        got.properties.response_topic.as_deref(),
        Some("s410/resp/me")
    );
    assert_eq!(got.properties.correlation_data, Some(correlation.clone()));
    assert_eq!(
        got.properties.user_properties,
        [(ByteString::from("k"), ByteString::from("v"))]
    );

    let mut resp = publish(
        got.properties.response_topic.as_deref().unwrap(),
        b"noon",
        QoS::AtLeastOnce,
        false,
        Some(pid(2)),
    );
    resp.properties.correlation_data = got.properties.correlation_data.clone();
    responder.send(&Packet::Publish(resp)).await;
    recv_puback(&mut responder).await;
    let answer = requester.recv_publish().await;
    assert_eq!(&answer.payload[..], b"noon");
    assert_eq!(answer.properties.correlation_data, Some(correlation));
}

#[tokio::test]
async fn mqtt5_s4_10_2_response_information_only_when_requested() {
    let tern = Tern::start();
    let (_c, ack) = RawClient::connect_with(tern.addr, conn5("s4102r-a", true, None)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.response_information, None);

    let mut c = conn5("s4102r-b", true, None);
    c.properties.request_response_information = Some(false);
    let (_c, ack) = RawClient::connect_with(tern.addr, c).await;
    assert_eq!(ack.properties.response_information, None);

    // Asking is allowed; the server may or may not answer with a topic.
    let mut c = conn5("s4102r-c", true, None);
    c.properties.request_response_information = Some(true);
    let (_c, ack) = RawClient::connect_with(tern.addr, c).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    if let Some(info) = ack.properties.response_information {
        assert!(!info.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// §4.12 Enhanced authentication (what applies without any method)

#[tokio::test]
async fn mqtt5_4_12_0_1_unsupported_authentication_method_is_refused_with_0x8c() {
    let tern = Tern::start();
    let mut c = conn5("s4120-1", true, None);
    c.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-256"));
    c.properties.authentication_data = Some(Bytes::from_static(b"n,,n=user,r=abc"));
    let (mut client, ack) = RawClient::connect_with(tern.addr, c).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert!(!ack.session_present);
    client.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_4_12_0_6_no_auth_packet_and_no_method_without_one_in_connect() {
    let tern = Tern::start();
    let (mut c, ack) = RawClient::connect_with(tern.addr, conn5("s4120-6", true, None)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
    c.subscribe("s4120-6/t", QoS::AtMostOnce).await;
    let seen = c.sync().await;
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::Auth(_))),
        "no AUTH: {seen:?}"
    );
}

#[tokio::test]
async fn mqtt5_4_12_0_7_auth_without_method_in_connect_is_a_protocol_error() {
    let tern = Tern::start();
    for (id, reason) in [
        ("s4120-7a", ReasonCode::REAUTHENTICATE),
        ("s4120-7b", ReasonCode::CONTINUE_AUTHENTICATION),
    ] {
        let mut c = client(&tern, id).await;
        let mut auth = Auth {
            reason,
            ..Auth::default()
        };
        auth.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-256"));
        c.send(&Packet::Auth(auth)).await;
        c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    }
}

// ---------------------------------------------------------------------------------------------
// §4.13 Error handling

/// A subscriber and a publisher that keep exchanging messages while other clients misbehave.
async fn bystanders(tern: &Tern, tag: &str) -> (RawClient, RawClient) {
    let mut s = client(tern, &format!("{tag}-sub")).await;
    s.subscribe(&format!("{tag}/t"), QoS::AtLeastOnce).await;
    let p = client(tern, &format!("{tag}-pub")).await;
    (s, p)
}

async fn bystanders_still_work(s: &mut RawClient, p: &mut RawClient, tag: &str) {
    let topic = format!("{tag}/t");
    assert_eq!(
        p.publish(&topic, b"still fine", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], b"still fine");
    s.ack(&got).await;
}

#[tokio::test]
async fn mqtt5_4_13_1_1_malformed_packet_gets_disconnect_0x81_and_others_carry_on() {
    let tern = Tern::start();
    let (mut s, mut p) = bystanders(&tern, "s41311a").await;
    let mut bad = client(&tern, "s41311a-bad").await;
    // PUBLISH with QoS 3.
    bad.send_bytes(&frame(0x36, &[0, 1, b'x', 0, 1, 0])).await;
    bad.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    bystanders_still_work(&mut s, &mut p, "s41311a").await;
}

#[tokio::test]
async fn mqtt5_4_13_1_1_protocol_error_gets_disconnect_0x82() {
    let tern = Tern::start();
    let (mut s, mut p) = bystanders(&tern, "s41311b").await;
    let mut bad = client(&tern, "s41311b-bad").await;
    bad.send(&Packet::Connect(Box::new(conn5("s41311b-bad", true, None))))
        .await;
    bad.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    bystanders_still_work(&mut s, &mut p, "s41311b").await;
}

#[tokio::test]
async fn mqtt5_4_13_1_1_a_more_specific_code_is_used_where_one_applies() {
    let tern = Tern::start();
    let mut bad = client(&tern, "s41311c-bad").await;
    let mut m = publish("s41311c/t", b"m", QoS::AtMostOnce, false, None);
    m.properties.topic_alias = Some(u16::MAX); // above the server's Topic Alias Maximum
    bad.send(&Packet::Publish(m)).await;
    bad.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;

    let mut bad = client(&tern, "s41311c-bad2").await;
    bad.send(&Packet::Publish(publish(
        "s41311c/+",
        b"m",
        QoS::AtMostOnce,
        false,
        None,
    )))
    .await;
    bad.expect_disconnect(ReasonCode::TOPIC_NAME_INVALID).await;
}

#[tokio::test]
async fn mqtt5_4_13_1_1_malformed_connect_is_refused_with_connack_0x81() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    // CONNECT flags with the reserved bit set; properties length 0; client id "x".
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x03, 0, 60, 0];
    body.extend_from_slice(&[0, 1, b'x']);
    c.send_bytes(&frame(0x10, &body)).await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, ReasonCode::MALFORMED_PACKET);
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_s4_13_2_per_packet_failures_are_reported_in_acks_without_closing() {
    let tern = Tern::start();
    let mut c = client(&tern, "s4132-c").await;
    c.send(&Packet::Subscribe(tern_codec::Subscribe {
        packet_id: pid(10),
        properties: Default::default(),
        filters: vec![
            (
                ByteString::from("s4132/#/bad"),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            ),
            (
                ByteString::from("s4132/ok"),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            ),
        ],
    }))
    .await;
    match c.recv().await {
        Packet::SubAck(a) => assert_eq!(
            a.reasons,
            [ReasonCode::TOPIC_FILTER_INVALID, ReasonCode::GRANTED_QOS_1]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    assert_eq!(
        c.publish("$SYS/forged", b"x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NOT_AUTHORIZED
    );
    // The connection and the valid subscription carry on.
    let mut p = client(&tern, "s4132-p").await;
    p.publish("s4132/ok", b"fine", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"fine");
}

#[tokio::test]
async fn mqtt5_4_13_2_1_connack_with_an_error_closes_the_connection() {
    let tern = Tern::start_config(
        "allow_anonymous = true\n[mqtt]\nallow_zero_length_clientid = false\n",
        "toml",
    );
    let (mut c, ack) = RawClient::connect_with(tern.addr, conn5("", true, None)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_4_13_2_1_disconnect_with_an_error_closes_the_connection() {
    let tern = Tern::start();
    let mut c = conn5("s41321-idle", true, None);
    c.keep_alive = 1;
    let (mut c, _) = connect(&tern, c).await;
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
}

#[tokio::test]
async fn mqtt5_s4_13_a_misbehaving_client_does_not_harm_others() {
    let tern = Tern::start();
    let (mut s, mut p) = bystanders(&tern, "s413").await;
    let junk: [&[u8]; 5] = [
        &[0xFF; 64],                                 // reserved packet type 15 flags
        &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],       // over-long remaining length
        &[0x10, 0x7F, 0x00, 0x04, b'M', b'Q'],       // truncated CONNECT, then silence
        &[0x82, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], // SUBSCRIBE before CONNECT
        &[0x10, 0x00],                               // empty CONNECT
    ];
    let mut bad = Vec::new();
    for bytes in junk {
        let mut c = RawClient::open(tern.addr, V5).await;
        c.send_bytes(bytes).await;
        bad.push(c);
    }
    let mut v3 = RawClient::connect(tern.addr, V311, "s413-v3").await;
    v3.send_bytes(&[0x62, 0x02, 0x00, 0x00]).await; // PUBREL with identifier 0
    bystanders_still_work(&mut s, &mut p, "s413").await;
    // The broker still accepts newcomers.
    let mut late = client(&tern, "s413-late").await;
    assert!(late.sync().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// §7.1.1 Conformance

#[tokio::test]
async fn mqtt5_s7_1_1_every_packet_the_server_sends_is_well_formed() {
    let tern = Tern::start();
    // The harness decodes everything strictly and fails on any malformed packet; drive a mix
    // of features through it, topic aliases towards the client included.
    let mut c = conn5("s711-sub", true, Some(60));
    c.properties.topic_alias_maximum = Some(2);
    c.properties.maximum_packet_size = Some(4096);
    let (mut s, _) = connect(&tern, c).await;
    s.subscribe_with(
        "s711/#",
        SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        Some(99),
    )
    .await;
    let mut p = client(&tern, "s711-pub").await;
    p.publish("s711/retained", b"r", QoS::AtLeastOnce, true)
        .await;
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .cycle()
        .take(12)
        .enumerate()
    {
        let topic = format!("s711/{}", i % 3);
        let mut m = publish(&topic, &(i as u32).to_be_bytes(), qos, false, Some(pid(1)));
        m.properties.message_expiry_interval = Some(300);
        m.properties.content_type = Some(ByteString::from("application/octet-stream"));
        p.send(&Packet::Publish(m)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                recv_puback(&mut p).await;
            }
            QoS::ExactlyOnce => {
                recv_pubrec(&mut p).await;
                p.send(&Packet::PubRel(Ack::new(pid(1)))).await;
                recv_pubcomp(&mut p).await;
            }
        }
    }
    let got = receive_acking(&mut s, 13).await;
    let mut aliases = std::collections::HashMap::new();
    for m in &got {
        assert_eq!(m.properties.subscription_identifiers, [99]);
        if let Some(alias) = m.properties.topic_alias {
            assert!(
                (1..=2).contains(&alias),
                "alias within the client's maximum"
            );
            if m.topic.is_empty() {
                assert!(aliases.contains_key(&alias), "alias used before it was set");
            } else {
                aliases.insert(alias, m.topic.clone());
            }
        } else {
            assert!(!m.topic.is_empty());
        }
    }
    s.unsubscribe("s711/#").await;
    assert!(s.sync().await.is_empty());
    s.send(&Packet::Disconnect(Disconnect::default())).await;
    s.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_s4_9_resent_messages_respect_the_new_receive_maximum() {
    let tern = Tern::start();
    let mut s =
        windowed_subscriber(&tern, "s49c-sub", "s49c/t", QoS::AtLeastOnce, 5, Some(60)).await;
    let mut p = client(&tern, "s49c-pub").await;
    for i in 0..5u32 {
        p.publish("s49c/t", &i.to_be_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    recv_n(&mut s, 5).await;
    s.close().await;

    let mut c = conn5("s49c-sub", false, Some(60));
    c.properties.receive_maximum = Some(2);
    let (mut s, present) = connect(&tern, c).await;
    assert!(present);
    let got = recv_n(&mut s, 2).await;
    s.expect_nothing().await;
    assert_eq!(got.iter().map(index).collect::<Vec<_>>(), [0, 1]);
}
