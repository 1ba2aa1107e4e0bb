//! MQTT 3.1.1 conformance, messages: packet identifiers (§2.3.1), PUBLISH (§3.3), the
//! acknowledgements (§3.4–§3.7), the QoS 0/1/2 flows in both directions (§4.3), retained
//! messages and message ordering (§4.6). Each test is named after the statement of
//! `/work/shared/spec/mqtt-v311-server-checklist.md` it checks and runs against the real `tern`
//! binary.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{RawClient, Tern, V311, connect_packet, frame, lp, pid, publish, recv_raw_frame};
use tern_codec::{Ack, Packet, Publish, QoS, ReasonCode};

/// A raw PUBLISH: `flags` are the low nibble (DUP, QoS, RETAIN).
fn raw_publish(flags: u8, topic: &[u8], id: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut body = lp(topic);
    if let Some(id) = id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// A PUBLISH packet with the given id and DUP flag.
fn publish_packet(topic: &str, payload: &[u8], qos: QoS, id: u16, dup: bool) -> Packet {
    let mut p = publish(topic, payload, qos, false, Some(pid(id)));
    p.dup = dup;
    Packet::Publish(p)
}

/// A clean-session client subscribed to `filter` at `qos`.
async fn subscriber(tern: &Tern, id: &str, filter: &str, qos: QoS) -> RawClient {
    let mut c = RawClient::connect(tern.addr, V311, id).await;
    assert_eq!(c.subscribe(filter, qos).await, vec![ReasonCode(qos as u8)]);
    c
}

/// Connects with CleanSession = 0; returns the client and Session Present.
async fn persistent(tern: &Tern, id: &str) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, id, false)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (c, ack.session_present)
}

async fn expect_puback(c: &mut RawClient, id: u16) {
    match c.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id.get(), id),
        other => panic!("expected PUBACK {id}, got {other:?}"),
    }
}

async fn expect_pubrec(c: &mut RawClient, id: u16) {
    match c.recv().await {
        Packet::PubRec(a) => assert_eq!(a.packet_id.get(), id),
        other => panic!("expected PUBREC {id}, got {other:?}"),
    }
}

async fn expect_pubrel(c: &mut RawClient, id: u16) {
    match c.recv().await {
        Packet::PubRel(a) => assert_eq!(a.packet_id.get(), id),
        other => panic!("expected PUBREL {id}, got {other:?}"),
    }
}

async fn expect_pubcomp(c: &mut RawClient, id: u16) {
    match c.recv().await {
        Packet::PubComp(a) => assert_eq!(a.packet_id.get(), id),
        other => panic!("expected PUBCOMP {id}, got {other:?}"),
    }
}

/// Receives `n` PUBLISH packets without acknowledging them.
async fn recv_publishes(c: &mut RawClient, n: usize) -> Vec<Publish> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.recv_publish().await);
    }
    out
}

/// Receives `n` PUBLISH packets, acknowledging each as it comes (PUBACK, or PUBREC and then
/// PUBCOMP for the PUBREL, which may arrive between later PUBLISHes).
async fn recv_acking(c: &mut RawClient, n: usize) -> Vec<Publish> {
    let mut out = Vec::with_capacity(n);
    let mut awaiting_pubrel = 0usize;
    while out.len() < n || awaiting_pubrel > 0 {
        match c.recv().await {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => c.send(&Packet::PubAck(Ack::new(id))).await,
                    (QoS::ExactlyOnce, Some(id)) => {
                        c.send(&Packet::PubRec(Ack::new(id))).await;
                        awaiting_pubrel += 1;
                    }
                    _ => {}
                }
                out.push(p);
            }
            Packet::PubRel(a) => {
                awaiting_pubrel -= 1;
                c.send(&Packet::PubComp(Ack::new(a.packet_id))).await;
            }
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
    out
}

fn id_of(p: &Publish) -> u16 {
    p.packet_id.expect("packet id").get()
}

// ---- §2.3.1 Packet Identifier ----

#[tokio::test]
async fn mqtt311_2_3_1_1_publish_with_packet_id_0_closes() {
    let tern = Tern::start();
    for flags in [0x02, 0x04] {
        let mut c = RawClient::connect(tern.addr, V311, "zero").await;
        c.send_bytes(&raw_publish(flags, b"z/t", Some(0), b"x"))
            .await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt311_2_3_1_1_subscribe_and_unsubscribe_with_packet_id_0_close() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "zero").await;
    let body = [&[0u8, 0][..], &lp(b"a"), &[0]].concat();
    c.send_bytes(&frame(0x82, &body)).await;
    c.expect_closed().await;
    let mut c = RawClient::connect(tern.addr, V311, "zero").await;
    let body = [&[0u8, 0][..], &lp(b"a")].concat();
    c.send_bytes(&frame(0xA2, &body)).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt311_2_3_1_1_server_never_sends_packet_id_0() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "ids/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for (i, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce]
        .into_iter()
        .enumerate()
    {
        p.publish("ids/t", &[i as u8], qos, false).await;
        let frame = recv_raw_frame(&mut s).await.unwrap();
        // 3x len 00 05 "ids/t" id-msb id-lsb payload
        assert_ne!(&frame[9..11], &[0, 0], "packet id");
        let id = u16::from_be_bytes([frame[9], frame[10]]);
        if qos == QoS::AtLeastOnce {
            s.send(&Packet::PubAck(Ack::new(pid(id)))).await;
        } else {
            s.send(&Packet::PubRec(Ack::new(pid(id)))).await;
            expect_pubrel(&mut s, id).await;
            s.send(&Packet::PubComp(Ack::new(pid(id)))).await;
        }
    }
}

#[tokio::test]
async fn mqtt311_2_3_1_2_reused_in_flight_qos2_id_is_a_resend() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "reuse/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send(&publish_packet(
        "reuse/t",
        b"first",
        QoS::ExactlyOnce,
        5,
        false,
    ))
    .await;
    expect_pubrec(&mut p, 5).await;
    // The same id before PUBREL, even without DUP and with another payload: a resend.
    p.send(&publish_packet(
        "reuse/t",
        b"second",
        QoS::ExactlyOnce,
        5,
        false,
    ))
    .await;
    expect_pubrec(&mut p, 5).await;
    p.send(&Packet::PubRel(Ack::new(pid(5)))).await;
    expect_pubcomp(&mut p, 5).await;
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], b"first");
    s.ack(&got).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_2_3_1_3_resent_packets_keep_their_identifier() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "resend/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    // A QoS 1 PUBLISH and its resend (DUP 1) before reading the PUBACK: both acknowledged.
    p.send(&publish_packet(
        "resend/t",
        b"m",
        QoS::AtLeastOnce,
        9,
        false,
    ))
    .await;
    p.send(&publish_packet("resend/t", b"m", QoS::AtLeastOnce, 9, true))
        .await;
    expect_puback(&mut p, 9).await;
    expect_puback(&mut p, 9).await;
    // A re-sent SUBSCRIBE with the same identifier gets its SUBACK again.
    for _ in 0..2 {
        let body = [&[0x00u8, 0x21][..], &lp(b"other"), &[1]].concat();
        p.send_bytes(&frame(0x82, &body)).await;
    }
    for _ in 0..2 {
        match p.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(a.packet_id.get(), 0x21);
                assert_eq!(a.reasons, vec![ReasonCode::GRANTED_QOS_1]);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    // QoS 1 allows the duplicate; each copy is a complete message.
    for _ in 0..2 {
        let got = s.recv_publish().await;
        assert_eq!(&got.payload[..], b"m");
        s.ack(&got).await;
    }
    assert!(p.sync().await.is_empty(), "connection still open");
}

#[tokio::test]
async fn mqtt311_2_3_1_4_server_ids_are_unused_kept_on_resend_and_freed_by_ack() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "s4").await;
    s.subscribe("sid/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for i in 0..4u8 {
        p.publish("sid/t", &[i], QoS::AtLeastOnce, false).await;
    }
    let first = recv_publishes(&mut s, 4).await;
    let mut ids: Vec<u16> = first.iter().map(id_of).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        4,
        "distinct identifiers for unacknowledged messages"
    );
    // Acknowledge the first two, then reconnect: the other two come again with their ids.
    s.send(&Packet::PubAck(Ack::new(pid(id_of(&first[0])))))
        .await;
    s.send(&Packet::PubAck(Ack::new(pid(id_of(&first[1])))))
        .await;
    s.sync().await;
    drop(s);
    let (mut s, present) = persistent(&tern, "s4").await;
    assert!(present);
    let again = recv_publishes(&mut s, 2).await;
    assert_eq!(
        again.iter().map(id_of).collect::<Vec<_>>(),
        vec![id_of(&first[2]), id_of(&first[3])]
    );
    assert_eq!(again[0].payload, first[2].payload);
    for p in &again {
        s.ack(p).await;
    }
    s.sync().await;
    drop(s);
    let (mut s, _) = persistent(&tern, "s4").await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_2_3_1_5_qos0_publish_has_no_packet_id() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "q0/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("q0/t", b"xy", QoS::AtMostOnce, false).await;
    let frame = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(
        frame,
        vec![0x30, 0x08, 0x00, 0x04, b'q', b'0', b'/', b't', b'x', b'y']
    );
}

#[tokio::test]
async fn mqtt311_2_3_1_6_acknowledgements_carry_the_publish_id() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send_bytes(&raw_publish(0x02, b"ack/t", Some(0x1234), b"1"))
        .await;
    assert_eq!(
        recv_raw_frame(&mut p).await,
        Some(vec![0x40, 2, 0x12, 0x34])
    );
    p.send_bytes(&raw_publish(0x04, b"ack/t", Some(0xABCD), b"2"))
        .await;
    assert_eq!(
        recv_raw_frame(&mut p).await,
        Some(vec![0x50, 2, 0xAB, 0xCD])
    );
    p.send_bytes(&[0x62, 0x02, 0xAB, 0xCD]).await;
    assert_eq!(
        recv_raw_frame(&mut p).await,
        Some(vec![0x70, 2, 0xAB, 0xCD])
    );
    // As a sender the server's PUBREL carries the id of its PUBLISH.
    let mut s = subscriber(&tern, "s", "ack/t", QoS::ExactlyOnce).await;
    p.publish("ack/t", b"3", QoS::ExactlyOnce, false).await;
    let got = s.recv_publish().await;
    let id = id_of(&got);
    s.send(&Packet::PubRec(Ack::new(pid(id)))).await;
    assert_eq!(
        recv_raw_frame(&mut s).await,
        Some(vec![0x62, 2, (id >> 8) as u8, id as u8])
    );
}

// ---- §3.3.1 PUBLISH fixed header ----

#[tokio::test]
async fn mqtt311_3_3_1_1_redelivery_sets_dup() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "dup").await;
    s.subscribe("dup/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("dup/t", b"again", QoS::AtLeastOnce, false).await;
    let first = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(first[0], 0x32, "first delivery: DUP 0");
    drop(s);
    let (mut s, _) = persistent(&tern, "dup").await;
    let second = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(second[0], 0x3A, "redelivery: DUP 1, QoS 1");
    assert_eq!(&second[1..], &first[1..], "same id, topic and payload");
}

#[tokio::test]
async fn mqtt311_3_3_1_2_dup_on_qos0_closes() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&raw_publish(0x08, b"d/t", None, b"x")).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt311_3_3_1_2_server_never_sends_dup_on_qos0() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "d0/t", QoS::AtMostOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    // A QoS 1 resend (DUP 1) downgraded to QoS 0 for this subscriber.
    p.send_bytes(&raw_publish(0x0A, b"d0/t", Some(3), b"x"))
        .await;
    expect_puback(&mut p, 3).await;
    let frame = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(frame[0], 0x30);
}

#[tokio::test]
async fn mqtt311_3_3_1_3_outgoing_dup_does_not_copy_the_incoming_dup() {
    let tern = Tern::start();
    let mut s1 = subscriber(&tern, "s1", "d3/t", QoS::AtLeastOnce).await;
    let mut s2 = subscriber(&tern, "s2", "d3/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send_bytes(&raw_publish(0x0A, b"d3/t", Some(4), b"a"))
        .await; // QoS 1, DUP 1
    expect_puback(&mut p, 4).await;
    p.send_bytes(&raw_publish(0x0C, b"d3/t", Some(5), b"b"))
        .await; // QoS 2, DUP 1
    expect_pubrec(&mut p, 5).await;
    p.send(&Packet::PubRel(Ack::new(pid(5)))).await;
    expect_pubcomp(&mut p, 5).await;
    assert_eq!(recv_raw_frame(&mut s1).await.unwrap()[0], 0x32);
    assert_eq!(recv_raw_frame(&mut s1).await.unwrap()[0], 0x32);
    assert_eq!(recv_raw_frame(&mut s2).await.unwrap()[0], 0x32);
    assert_eq!(recv_raw_frame(&mut s2).await.unwrap()[0], 0x34);
}

#[tokio::test]
async fn mqtt311_3_3_1_4_qos_3_closes() {
    let tern = Tern::start();
    for flags in [0x06, 0x07, 0x0E] {
        let mut c = RawClient::connect(tern.addr, V311, "c").await;
        c.send_bytes(&raw_publish(flags, b"q3/t", Some(1), b"x"))
            .await;
        c.expect_closed().await;
    }
}

// ---- Retained messages ----

#[tokio::test]
async fn mqtt311_3_3_1_5_retained_message_is_stored_with_its_qos() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("ret/5", b"v1", QoS::AtLeastOnce, true).await;
    p.publish("ret/5", b"v2", QoS::ExactlyOnce, true).await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("ret/5", QoS::ExactlyOnce).await;
    let got = s.recv_publish().await;
    assert_eq!(
        (&got.payload[..], got.qos, got.retain),
        (&b"v2"[..], QoS::ExactlyOnce, true)
    );
    s.ack(&got).await;
    s.expect_nothing().await;
    // A QoS 1 subscription gets it at QoS 1.
    let mut s1 = RawClient::connect(tern.addr, V311, "s1").await;
    s1.subscribe("ret/5", QoS::AtLeastOnce).await;
    assert_eq!(s1.recv_publish().await.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt311_3_3_1_6_new_subscription_gets_every_matching_retained_message() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for topic in ["r6/a", "r6/b", "r6/c/d", "other/a"] {
        p.publish(topic, topic.as_bytes(), QoS::AtLeastOnce, true)
            .await;
    }
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("r6/+", QoS::AtLeastOnce).await;
    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        let m = s.recv_publish().await;
        assert!(m.retain);
        got.push(m.topic.to_string());
        s.ack(&m).await;
    }
    got.sort();
    assert_eq!(got, vec!["r6/a", "r6/b"]);
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_3_1_7_retained_qos0_replaces_the_previous_retained_message() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("r7", b"old", QoS::AtLeastOnce, true).await;
    p.publish("r7", b"new", QoS::AtMostOnce, true).await;
    p.sync().await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("r7", QoS::ExactlyOnce).await;
    let got = s.recv_publish().await;
    assert_eq!(
        (&got.payload[..], got.qos, got.retain),
        (&b"new"[..], QoS::AtMostOnce, true)
    );
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_3_1_8_messages_sent_for_a_new_subscription_have_retain_1() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("r8/t", b"r", QoS::AtMostOnce, true).await;
    p.sync().await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("r8/#", QoS::AtMostOnce).await;
    let frame = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(frame[0], 0x31, "QoS 0, RETAIN 1");
}

#[tokio::test]
async fn mqtt311_3_3_1_9_established_subscription_gets_retain_0() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "r9/#", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("r9/t", b"live", QoS::AtLeastOnce, true).await;
    let frame = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(
        frame[0], 0x32,
        "QoS 1, RETAIN 0 although the publisher set it"
    );
}

#[tokio::test]
async fn mqtt311_3_3_1_10_empty_retained_message_is_delivered_and_clears_the_topic() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("r10", b"x", QoS::AtLeastOnce, true).await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("r10", QoS::AtLeastOnce).await;
    let got = s.recv_publish().await;
    assert!(got.retain);
    s.ack(&got).await;
    p.publish("r10", b"", QoS::AtLeastOnce, true).await;
    let got = s.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b""[..], false));
    s.ack(&got).await;
    let mut late = RawClient::connect(tern.addr, V311, "late").await;
    late.subscribe("r10", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_3_1_11_empty_payload_is_never_stored_as_retained() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        p.publish("r11", b"", qos, true).await;
    }
    p.sync().await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("r11", QoS::ExactlyOnce).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_3_1_12_non_retained_publish_leaves_the_retained_message() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("r12", b"keep", QoS::AtLeastOnce, true).await;
    p.publish("r12", b"transient", QoS::AtLeastOnce, false)
        .await;
    p.publish("r12", b"", QoS::AtLeastOnce, false).await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("r12", QoS::AtLeastOnce).await;
    let got = s.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"keep"[..], true));
    s.ack(&got).await;
    s.expect_nothing().await;
    // A non-retained message on a topic without one does not create one.
    p.publish("r12b", b"transient", QoS::AtLeastOnce, false)
        .await;
    s.subscribe("r12b", QoS::AtLeastOnce).await;
    s.expect_nothing().await;
}

// ---- §3.3.2 Topic Name, §3.3.3 payload ----

#[tokio::test]
async fn mqtt311_3_3_2_1_topic_name_must_be_valid_utf8() {
    let tern = Tern::start();
    for topic in [
        &[0xFFu8][..],
        &[b'a', 0xC3],
        &[0xF8, 0x88, 0x80, 0x80, 0x80],
    ] {
        let mut c = RawClient::connect(tern.addr, V311, "c").await;
        c.send_bytes(&raw_publish(0x00, topic, None, b"x")).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt311_3_3_2_2_wildcards_in_topic_name_close() {
    let tern = Tern::start();
    for topic in [&b"a/+"[..], b"a/#", b"+", b"#", b"a+b"] {
        let mut c = RawClient::connect(tern.addr, V311, "c").await;
        c.send_bytes(&raw_publish(0x02, topic, Some(1), b"x")).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt311_3_3_2_3_topic_name_sent_matches_the_subscription() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "sport/+/player1/#", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for topic in ["sport/tennis/player1", "sport/golf/player1/score/x"] {
        p.publish(topic, b"x", QoS::AtLeastOnce, false).await;
        let got = s.recv_publish().await;
        assert_eq!(&got.topic[..], topic);
        s.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt311_s3_3_2_2_packet_id_only_for_qos_1_and_2() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "pid/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    // QoS 0: the two bytes after the topic are payload, not a packet identifier.
    p.send_bytes(&raw_publish(0x00, b"pid/t", None, &[0x00, 0x07, b'z']))
        .await;
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], &[0x00, 0x07, b'z']);
    assert_eq!(got.packet_id, None);
    // QoS 1: they are the identifier.
    p.send_bytes(&raw_publish(0x02, b"pid/t", Some(7), b"z"))
        .await;
    expect_puback(&mut p, 7).await;
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], b"z");
    assert!(got.packet_id.is_some());
}

#[tokio::test]
async fn mqtt311_s3_3_3_zero_length_payload_is_valid() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "empty/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        p.publish("empty/t", b"", qos, false).await;
        let got = s.recv_publish().await;
        assert!(got.payload.is_empty());
        assert_eq!(got.qos, qos);
        s.ack(&got).await;
    }
}

// ---- §3.3.4, §3.3.5 ----

#[tokio::test]
async fn mqtt311_3_3_4_1_response_depends_on_the_qos() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send_bytes(&raw_publish(0x00, b"resp/t", None, b"0"))
        .await;
    p.expect_nothing().await;
    p.send_bytes(&raw_publish(0x02, b"resp/t", Some(0x11), b"1"))
        .await;
    assert_eq!(recv_raw_frame(&mut p).await, Some(vec![0x40, 2, 0, 0x11]));
    p.send_bytes(&raw_publish(0x04, b"resp/t", Some(0x22), b"2"))
        .await;
    assert_eq!(recv_raw_frame(&mut p).await, Some(vec![0x50, 2, 0, 0x22]));
    p.send_bytes(&[0x62, 2, 0, 0x22]).await;
    assert_eq!(recv_raw_frame(&mut p).await, Some(vec![0x70, 2, 0, 0x22]));
}

#[tokio::test]
async fn mqtt311_3_3_5_1_overlapping_subscriptions_get_the_highest_qos() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("ov/#", QoS::AtMostOnce).await;
    s.subscribe("ov/+", QoS::ExactlyOnce).await;
    s.subscribe("ov/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("ov/t", b"x", QoS::ExactlyOnce, false).await;
    let got = s.recv_publish().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    s.ack(&got).await;
    // Tern sends one copy per client (the specification allows either).
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_3_5_2_unauthorized_publish_is_acknowledged_and_dropped() {
    // Without the broker's own `$SYS` topics, which `$SYS/#` would receive too.
    let tern = Tern::start_config("sys_interval = 0\n", "toml");
    let mut s = subscriber(&tern, "s", "$SYS/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send_bytes(&raw_publish(0x01, b"$SYS/x", None, b"0"))
        .await;
    p.send_bytes(&raw_publish(0x03, b"$SYS/x", Some(1), b"1"))
        .await;
    assert_eq!(recv_raw_frame(&mut p).await, Some(vec![0x40, 2, 0, 1]));
    p.send_bytes(&raw_publish(0x05, b"$SYS/broker/y", Some(2), b"2"))
        .await;
    assert_eq!(recv_raw_frame(&mut p).await, Some(vec![0x50, 2, 0, 2]));
    p.send_bytes(&[0x62, 2, 0, 2]).await;
    assert_eq!(recv_raw_frame(&mut p).await, Some(vec![0x70, 2, 0, 2]));
    s.expect_nothing().await;
    // Nothing was retained either, and the publisher is still connected.
    let mut late = subscriber(&tern, "late", "$SYS/#", QoS::ExactlyOnce).await;
    late.expect_nothing().await;
    assert!(p.sync().await.is_empty());
}

// ---- §3.4–§3.7 acknowledgements ----

#[tokio::test]
async fn mqtt311_s3_4_acknowledgements_in_another_form_close() {
    let tern = Tern::start();
    for bytes in [
        vec![0x42, 0x02, 0x00, 0x01],             // PUBACK, flags 0010
        vec![0x40, 0x04, 0x00, 0x01, 0x00, 0x00], // PUBACK, v5-style reason and properties
        vec![0x50, 0x03, 0x00, 0x01, 0x00],       // PUBREC with a reason code
        vec![0x71, 0x02, 0x00, 0x01],             // PUBCOMP, flags 0001
        vec![0x70, 0x01, 0x01],                   // PUBCOMP, length 1
    ] {
        let mut c = RawClient::connect(tern.addr, V311, "c").await;
        c.send_bytes(&bytes).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt311_s3_4_4_acknowledgements_drive_the_server_flows() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "acks").await;
    s.subscribe("acks/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("acks/1", b"1", QoS::AtLeastOnce, false).await;
    p.publish("acks/2", b"2", QoS::ExactlyOnce, false).await;
    let m = recv_publishes(&mut s, 2).await;
    s.send(&Packet::PubAck(Ack::new(pid(id_of(&m[0]))))).await; // QoS 1 done
    s.send(&Packet::PubRec(Ack::new(pid(id_of(&m[1]))))).await;
    expect_pubrel(&mut s, id_of(&m[1])).await;
    s.send(&Packet::PubComp(Ack::new(pid(id_of(&m[1]))))).await; // QoS 2 done
    s.sync().await;
    drop(s);
    // Both deliveries are complete: nothing is re-sent.
    let (mut s, present) = persistent(&tern, "acks").await;
    assert!(present);
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_6_1_1_pubrel_flags_must_be_0010() {
    let tern = Tern::start();
    for first in [0x60u8, 0x63, 0x6A, 0x64] {
        let mut c = RawClient::connect(tern.addr, V311, "c").await;
        c.send_bytes(&raw_publish(0x04, b"rel/t", Some(1), b"x"))
            .await;
        expect_pubrec(&mut c, 1).await;
        c.send_bytes(&[first, 0x02, 0x00, 0x01]).await;
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt311_s3_6_pubrel_is_id_only_and_answers_the_pubrec() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "rel6/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("rel6/t", b"a", QoS::ExactlyOnce, false).await;
    p.publish("rel6/t", b"b", QoS::ExactlyOnce, false).await;
    let m = recv_publishes(&mut s, 2).await;
    // Acknowledge the second one first: the PUBREL carries that PUBREC's id.
    for p in m.iter().rev() {
        let id = id_of(p);
        s.send(&Packet::PubRec(Ack::new(pid(id)))).await;
        assert_eq!(
            recv_raw_frame(&mut s).await,
            Some(vec![0x62, 2, (id >> 8) as u8, id as u8])
        );
        s.send(&Packet::PubComp(Ack::new(pid(id)))).await;
    }
}

// ---- §4.3 QoS flows ----

#[tokio::test]
async fn mqtt311_4_3_1_1_qos0_is_sent_once_without_dup_or_retry() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "q0").await;
    s.subscribe("f0/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("f0/t", b"once", QoS::AtMostOnce, false).await;
    let frame = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(frame[0], 0x30, "QoS 0, DUP 0");
    // No acknowledgement is expected and nothing is re-sent, not even on reconnect.
    s.expect_nothing().await;
    drop(s);
    let (mut s, present) = persistent(&tern, "q0").await;
    assert!(present);
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_4_3_2_1_qos1_sender_uses_new_ids_and_dup_0_until_puback() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "q1").await;
    s.subscribe("f1/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("f1/t", b"a", QoS::AtLeastOnce, false).await;
    p.publish("f1/t", b"b", QoS::AtLeastOnce, false).await;
    let m = recv_publishes(&mut s, 2).await;
    for x in &m {
        assert_eq!((x.qos, x.dup), (QoS::AtLeastOnce, false));
    }
    assert_ne!(id_of(&m[0]), id_of(&m[1]));
    // Only "a" is acknowledged: "b" is still unacknowledged and comes back.
    s.send(&Packet::PubAck(Ack::new(pid(id_of(&m[0]))))).await;
    s.sync().await;
    drop(s);
    let (mut s, _) = persistent(&tern, "q1").await;
    let again = s.recv_publish().await;
    assert_eq!((&again.payload[..], again.dup), (&b"b"[..], true));
    assert_eq!(id_of(&again), id_of(&m[1]));
    s.ack(&again).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_4_3_2_2_qos1_receiver_acks_and_then_treats_the_id_as_new() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "f12/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send(&publish_packet(
        "f12/t",
        b"first",
        QoS::AtLeastOnce,
        7,
        false,
    ))
    .await;
    expect_puback(&mut p, 7).await;
    // After the PUBACK the same id starts a new message, whatever its DUP flag.
    p.send(&publish_packet(
        "f12/t",
        b"second",
        QoS::AtLeastOnce,
        7,
        true,
    ))
    .await;
    expect_puback(&mut p, 7).await;
    for expected in [&b"first"[..], b"second"] {
        let got = s.recv_publish().await;
        assert_eq!(&got.payload[..], expected);
        s.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt311_4_3_3_1_qos2_sender_flow_and_no_publish_after_pubrel() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "q2").await;
    s.subscribe("f2/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("f2/t", b"x", QoS::ExactlyOnce, false).await;
    let m = s.recv_publish().await;
    assert_eq!((m.qos, m.dup), (QoS::ExactlyOnce, false));
    let id = id_of(&m);
    s.send(&Packet::PubRec(Ack::new(pid(id)))).await;
    expect_pubrel(&mut s, id).await;
    // Gone before PUBCOMP: on reconnect only the PUBREL comes back, never the PUBLISH.
    drop(s);
    let (mut s, _) = persistent(&tern, "q2").await;
    expect_pubrel(&mut s, id).await;
    s.send(&Packet::PubComp(Ack::new(pid(id)))).await;
    s.expect_nothing().await;
    drop(s);
    let (mut s, _) = persistent(&tern, "q2").await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_4_3_3_2_qos2_duplicate_before_pubrel_is_not_delivered_twice() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "f22/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.send(&publish_packet("f22/t", b"one", QoS::ExactlyOnce, 3, false))
        .await;
    expect_pubrec(&mut p, 3).await;
    p.send(&publish_packet("f22/t", b"one", QoS::ExactlyOnce, 3, true))
        .await;
    expect_pubrec(&mut p, 3).await;
    p.send(&Packet::PubRel(Ack::new(pid(3)))).await;
    expect_pubcomp(&mut p, 3).await;
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], b"one");
    s.ack(&got).await;
    s.expect_nothing().await;
    // After PUBCOMP the id starts a new message.
    p.send(&publish_packet("f22/t", b"two", QoS::ExactlyOnce, 3, false))
        .await;
    expect_pubrec(&mut p, 3).await;
    p.send(&Packet::PubRel(Ack::new(pid(3)))).await;
    expect_pubcomp(&mut p, 3).await;
    assert_eq!(&s.recv_publish().await.payload[..], b"two");
}

// ---- §4.6 Ordering ----

#[tokio::test]
async fn mqtt311_4_6_0_1_resent_publishes_keep_their_original_order() {
    let tern = Tern::start();
    let (mut s, _) = persistent(&tern, "o1").await;
    s.subscribe("o1/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for i in 0..6u8 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        p.publish("o1/t", &[i], qos, false).await;
    }
    let first = recv_publishes(&mut s, 6).await;
    drop(s);
    let (mut s, _) = persistent(&tern, "o1").await;
    let again = recv_publishes(&mut s, 6).await;
    for (a, b) in first.iter().zip(&again) {
        assert_eq!((id_of(a), &a.payload, a.qos), (id_of(b), &b.payload, b.qos));
        assert!(b.dup);
    }
}

#[tokio::test]
async fn mqtt311_4_6_0_2_pubacks_follow_the_order_of_the_publishes() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    let ids = [40u16, 7, 300, 1, 65535, 12];
    let mut bytes = Vec::new();
    for id in ids {
        bytes.extend(raw_publish(0x02, b"o2/t", Some(id), b"x"));
    }
    p.send_bytes(&bytes).await;
    for id in ids {
        expect_puback(&mut p, id).await;
    }
}

#[tokio::test]
async fn mqtt311_4_6_0_3_pubrecs_follow_the_order_of_the_publishes() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    let ids = [9u16, 2, 500, 33];
    let mut bytes = Vec::new();
    for id in ids {
        bytes.extend(raw_publish(0x04, b"o3/t", Some(id), b"x"));
    }
    p.send_bytes(&bytes).await;
    for id in ids {
        expect_pubrec(&mut p, id).await;
    }
    // PUBCOMPs follow the order of the PUBRELs.
    let mut bytes = Vec::new();
    for id in ids.iter().rev() {
        bytes.extend([0x62, 2, (id >> 8) as u8, *id as u8]);
    }
    p.send_bytes(&bytes).await;
    for id in ids.iter().rev() {
        expect_pubcomp(&mut p, *id).await;
    }
}

#[tokio::test]
async fn mqtt311_4_6_0_4_pubrels_follow_the_order_of_the_pubrecs() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "o4/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for i in 0..3u8 {
        p.publish("o4/t", &[i], QoS::ExactlyOnce, false).await;
    }
    let m = recv_publishes(&mut s, 3).await;
    let order = [id_of(&m[2]), id_of(&m[0]), id_of(&m[1])];
    let mut bytes = Vec::new();
    for id in order {
        bytes.extend([0x50, 2, (id >> 8) as u8, id as u8]);
    }
    s.send_bytes(&bytes).await;
    for id in order {
        expect_pubrel(&mut s, id).await;
    }
}

#[tokio::test]
async fn mqtt311_4_6_0_5_topics_are_ordered_by_default() {
    let tern = Tern::start();
    let mut s = subscriber(&tern, "s", "o5/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    // 60 messages with QoS 0, 1 and 2 interleaved, sent back to back.
    let mut bytes = Vec::new();
    for i in 0..60u16 {
        let (flags, id) = match i % 3 {
            0 => (0x00, None),
            1 => (0x02, Some(i + 1)),
            _ => (0x04, Some(i + 1)),
        };
        bytes.extend(raw_publish(flags, b"o5/t", id, &i.to_be_bytes()));
    }
    p.send_bytes(&bytes).await;
    let mut seen: [Vec<u16>; 3] = Default::default();
    for got in recv_acking(&mut s, 60).await {
        let n = u16::from_be_bytes([got.payload[0], got.payload[1]]);
        assert_eq!(got.qos as u16, n % 3);
        seen[usize::from(n % 3)].push(n);
    }
    for (q, list) in seen.iter().enumerate() {
        let expected: Vec<u16> = (0..60).filter(|n| usize::from(n % 3) == q).collect();
        assert_eq!(list, &expected, "QoS {q} messages in order");
    }
}

#[tokio::test]
async fn mqtt311_4_6_0_6_each_subscriber_gets_a_publishers_messages_in_order() {
    let tern = Tern::start();
    let mut s1 = subscriber(&tern, "s1", "o6/t", QoS::AtLeastOnce).await;
    let mut s2 = subscriber(&tern, "s2", "o6/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    let mut bytes = Vec::new();
    for i in 1..=40u16 {
        bytes.extend(raw_publish(0x04, b"o6/t", Some(i), &i.to_be_bytes()));
    }
    p.send_bytes(&bytes).await;
    for i in 1..=40u16 {
        expect_pubrec(&mut p, i).await;
    }
    for i in 1..=40u16 {
        p.send(&Packet::PubRel(Ack::new(pid(i)))).await;
    }
    for i in 1..=40u16 {
        expect_pubcomp(&mut p, i).await;
    }
    for s in [&mut s1, &mut s2] {
        let got = recv_acking(s, 40).await;
        for (i, m) in (1..=40u16).zip(&got) {
            assert_eq!(&m.payload[..], &i.to_be_bytes());
        }
    }
}

/// A fan-out larger than one turn of queuing (the publisher's connection hands over to its
/// subscribers' after the first few copies): every subscriber still gets every message of a
/// pipelined burst, in order, and the publisher's PUBACKs follow in order too.
async fn large_fan_out_keeps_order(tern: &Tern, qos: QoS) {
    let mut subs = Vec::new();
    for i in 0..20 {
        subs.push(subscriber(tern, &format!("s{i}"), "o7/t", qos).await);
    }
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    // 30 messages in one write, then a 31st: what comes before the 31st is checked exactly.
    let mut bytes = Vec::new();
    for i in 1..=30u16 {
        let id = (qos != QoS::AtMostOnce).then_some(i);
        bytes.extend(raw_publish((qos as u8) << 1, b"o7/t", id, &i.to_be_bytes()));
    }
    p.send_bytes(&bytes).await;
    if qos == QoS::AtLeastOnce {
        for i in 1..=30u16 {
            expect_puback(&mut p, i).await;
        }
    }
    let id = (qos != QoS::AtMostOnce).then_some(31);
    p.send_bytes(&raw_publish(
        (qos as u8) << 1,
        b"o7/t",
        id,
        &31u16.to_be_bytes(),
    ))
    .await;
    for s in &mut subs {
        let got = recv_acking(s, 31).await;
        let payloads: Vec<u16> = got
            .iter()
            .map(|m| u16::from_be_bytes([m.payload[0], m.payload[1]]))
            .collect();
        assert_eq!(payloads, (1..=31).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn mqtt311_4_6_0_6_a_fan_out_to_20_keeps_each_subscribers_order() {
    let tern = Tern::start();
    large_fan_out_keeps_order(&tern, QoS::AtMostOnce).await;
}

#[tokio::test]
async fn mqtt311_4_6_0_2_a_fan_out_to_20_without_store_acknowledges_in_order() {
    // Without a store QoS 1 copies are queued in turns too, each PUBACK after the last copy.
    let tern = Tern::start_args(&["--in-memory"]);
    large_fan_out_keeps_order(&tern, QoS::AtLeastOnce).await;
}
