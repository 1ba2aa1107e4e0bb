//! MQTT 3.1.1 conformance, subscriptions: SUBSCRIBE/SUBACK (§3.8, §3.9), UNSUBSCRIBE/UNSUBACK
//! (§3.10, §3.11), PINGREQ (§3.12) and topic names and filters (§4.7). Each test is named after
//! the statement of `/work/shared/spec/mqtt-v311-server-checklist.md` it checks and runs against
//! the real `tern` binary.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{RawClient, Tern, V311, frame, lp, pid, publish, recv_raw_frame};
use tern_codec::{
    Ack, ByteString, Packet, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, Unsubscribe,
};

const FAILURE: ReasonCode = ReasonCode(0x80);
const MARKER: &str = "$marker/x";

/// A raw SUBSCRIBE with the given fixed-header flags, id and (filter, requested QoS byte) pairs.
fn raw_subscribe(first: u8, id: u16, filters: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for (f, q) in filters {
        body.extend(lp(f));
        body.push(*q);
    }
    frame(first, &body)
}

/// A raw UNSUBSCRIBE with the given fixed-header flags, id and filters.
fn raw_unsubscribe(first: u8, id: u16, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    for f in filters {
        body.extend(lp(f));
    }
    frame(first, &body)
}

/// Sends one SUBSCRIBE with several filters and returns its SUBACK.
async fn subscribe_many(c: &mut RawClient, id: u16, filters: &[(&str, QoS)]) -> SubAck {
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: filters
            .iter()
            .map(|(f, q)| (ByteString::from(*f), SubscriptionOptions::with_qos(*q)))
            .collect(),
    }))
    .await;
    match c.recv().await {
        Packet::SubAck(a) => a,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

async fn unsubscribe_many(c: &mut RawClient, id: u16, filters: &[&str]) {
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        user_properties: Vec::new(),
        filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
    }))
    .await;
    match c.recv().await {
        Packet::UnsubAck(a) => {
            assert_eq!(a.packet_id.get(), id);
            assert!(a.reasons.is_empty(), "no payload in 3.1.1");
        }
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

async fn connected_closes_after(tern: &Tern, bytes: &[u8]) {
    let mut c = RawClient::connect(tern.addr, V311, "violator").await;
    c.send_bytes(bytes).await;
    c.expect_closed().await;
}

/// A subscriber of `filter` (QoS 1) and of the marker topic, plus a publisher: reports, for
/// each topic, whether a QoS 1 message published to it reaches the subscriber. The marker,
/// published right after each topic by the same publisher, bounds the wait.
async fn matches(tern: &Tern, filter: &str, topics: &[&str]) -> Vec<bool> {
    let mut s = RawClient::connect(tern.addr, V311, "matcher").await;
    let ack = subscribe_many(
        &mut s,
        1,
        &[(filter, QoS::AtLeastOnce), (MARKER, QoS::AtLeastOnce)],
    )
    .await;
    assert_eq!(
        ack.reasons,
        vec![ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_1],
        "filter {filter:?}"
    );
    let mut p = RawClient::connect(tern.addr, V311, "match-pub").await;
    let mut out = Vec::new();
    for topic in topics {
        p.publish(topic, b"t", QoS::AtLeastOnce, false).await;
        p.publish(MARKER, b"m", QoS::AtLeastOnce, false).await;
        let mut matched = false;
        loop {
            let got = s.recv_publish().await;
            s.ack(&got).await;
            if &got.topic[..] == MARKER && &got.payload[..] == b"m" {
                break;
            }
            assert_eq!(&got.topic[..], *topic, "topic delivered unchanged");
            assert!(!matched, "one copy only");
            matched = true;
        }
        out.push(matched);
    }
    s.disconnect().await;
    p.disconnect().await;
    out
}

// ---- §3.8 SUBSCRIBE ----

#[tokio::test]
async fn mqtt311_3_8_1_1_subscribe_flags_must_be_0010() {
    let tern = Tern::start();
    for first in [0x80u8, 0x83, 0x8A, 0x86] {
        connected_closes_after(&tern, &raw_subscribe(first, 1, &[(b"a", 0)])).await;
    }
}

#[tokio::test]
async fn mqtt311_3_8_3_1_topic_filter_must_be_valid_utf8() {
    let tern = Tern::start();
    for filter in [
        &[0xC3u8, 0x28][..],
        &[b'a', b'/', 0xFF],
        &[0xED, 0xA0, 0x80],
    ] {
        connected_closes_after(&tern, &raw_subscribe(0x82, 1, &[(filter, 0)])).await;
    }
}

#[tokio::test]
async fn mqtt311_3_8_3_2_wildcard_filters_are_supported() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let ack = subscribe_many(
        &mut c,
        3,
        &[
            ("#", QoS::AtMostOnce),
            ("+", QoS::AtLeastOnce),
            ("a/+/b/#", QoS::ExactlyOnce),
        ],
    )
    .await;
    assert_eq!(
        ack.reasons,
        vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2
        ]
    );
}

#[tokio::test]
async fn mqtt311_3_8_3_3_subscribe_without_filters_closes() {
    let tern = Tern::start();
    connected_closes_after(&tern, &raw_subscribe(0x82, 1, &[])).await;
}

#[tokio::test]
async fn mqtt311_3_8_3_4_requested_qos_3_or_reserved_bits_close() {
    let tern = Tern::start();
    for qos in [0x03u8, 0x04, 0x80, 0x41, 0xFF] {
        connected_closes_after(&tern, &raw_subscribe(0x82, 1, &[(b"a", qos)])).await;
    }
    // A second filter with a bad byte after a good one.
    connected_closes_after(&tern, &raw_subscribe(0x82, 1, &[(b"a", 1), (b"b", 3)])).await;
    // A filter without its QoS byte.
    let body = [&[0u8, 1][..], &lp(b"a")].concat();
    connected_closes_after(&tern, &frame(0x82, &body)).await;
}

#[tokio::test]
async fn mqtt311_3_8_4_1_every_subscribe_gets_a_suback() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let mut bytes = raw_subscribe(0x82, 1, &[(b"a", 0)]);
    bytes.extend(raw_subscribe(0x82, 2, &[(b"a/#/b", 1)])); // only an invalid filter
    bytes.extend(raw_subscribe(0x82, 3, &[(b"a", 2)])); // the same filter again
    c.send_bytes(&bytes).await;
    for (id, code) in [(1u16, 0u8), (2, 0x80), (3, 2)] {
        assert_eq!(
            recv_raw_frame(&mut c).await,
            Some(vec![0x90, 3, 0, id as u8, code])
        );
    }
}

#[tokio::test]
async fn mqtt311_3_8_4_2_suback_has_the_subscribe_packet_id() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&raw_subscribe(0x82, 0xBEEF, &[(b"x", 1)]))
        .await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x90, 3, 0xBE, 0xEF, 1])
    );
}

#[tokio::test]
async fn mqtt311_2_3_1_7_suback_and_unsuback_carry_the_request_id() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    for id in [1u16, 0x7FFF, 0xFFFF] {
        c.send_bytes(&raw_subscribe(0x82, id, &[(b"x", 0)])).await;
        let frame = recv_raw_frame(&mut c).await.unwrap();
        assert_eq!(&frame[..4], &[0x90, 3, (id >> 8) as u8, id as u8]);
        c.send_bytes(&raw_unsubscribe(0xA2, id, &[b"x"])).await;
        let frame = recv_raw_frame(&mut c).await.unwrap();
        assert_eq!(frame, vec![0xB0, 2, (id >> 8) as u8, id as u8]);
    }
}

#[tokio::test]
async fn mqtt311_s3_8_4_retained_messages_follow_the_suback() {
    // The specification allows matching messages before the SUBACK; Tern sends the SUBACK
    // first, then the retained messages.
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("early/t", b"r", QoS::AtLeastOnce, true).await;
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&raw_subscribe(0x82, 5, &[(b"early/#", 1)]))
        .await;
    assert!(matches!(c.recv().await, Packet::SubAck(a) if a.packet_id.get() == 5));
    let got = c.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"r"[..], true));
}

#[tokio::test]
async fn mqtt311_3_8_4_3_identical_filter_replaces_the_subscription() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("same/t", b"retained", QoS::ExactlyOnce, true)
        .await;
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    assert_eq!(
        s.subscribe("same/t", QoS::AtMostOnce).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    let got = s.recv_publish().await;
    assert_eq!((got.qos, got.retain), (QoS::AtMostOnce, true));
    // Same filter, higher QoS: replaced, and the retained message comes again.
    assert_eq!(
        s.subscribe("same/t", QoS::ExactlyOnce).await,
        vec![ReasonCode::GRANTED_QOS_2]
    );
    let got = s.recv_publish().await;
    assert_eq!((got.qos, got.retain), (QoS::ExactlyOnce, true));
    s.ack(&got).await;
    // One subscription: one copy, at the new QoS.
    p.publish("same/t", b"live", QoS::ExactlyOnce, false).await;
    let got = s.recv_publish().await;
    assert_eq!(
        (&got.payload[..], got.qos),
        (&b"live"[..], QoS::ExactlyOnce)
    );
    s.ack(&got).await;
    s.expect_nothing().await;
    // Back down to QoS 1.
    assert_eq!(
        s.subscribe("same/t", QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let got = s.recv_publish().await;
    assert_eq!((got.qos, got.retain), (QoS::AtLeastOnce, true));
    s.ack(&got).await;
    p.publish("same/t", b"live2", QoS::ExactlyOnce, false).await;
    assert_eq!(s.recv_publish().await.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt311_3_8_4_3_resubscribing_does_not_interrupt_the_flow() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("flow/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    let mut bytes = Vec::new();
    for i in 1..=60u16 {
        let body = [&lp(b"flow/t")[..], &i.to_be_bytes(), &i.to_be_bytes()].concat();
        bytes.extend(frame(0x32, &body));
    }
    p.send_bytes(&bytes).await;
    // Re-subscribe while the messages are being routed.
    let resubscribe: Vec<u8> = (0..5)
        .flat_map(|n| raw_subscribe(0x82, 100 + n, &[(b"flow/t", 1)]))
        .collect();
    s.send_bytes(&resubscribe).await;
    let mut received = Vec::new();
    let mut subacks = 0;
    while received.len() < 60 || subacks < 5 {
        match s.recv().await {
            Packet::Publish(m) => {
                s.ack(&m).await;
                received.push(u16::from_be_bytes([m.payload[0], m.payload[1]]));
            }
            Packet::SubAck(_) => subacks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        received,
        (1..=60).collect::<Vec<u16>>(),
        "each message once, in order"
    );
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_8_4_4_several_filters_are_handled_in_sequence_with_one_suback() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    let ack = subscribe_many(
        &mut s,
        9,
        &[
            ("multi/a", QoS::AtMostOnce),
            ("multi/b", QoS::AtLeastOnce),
            ("multi/a", QoS::ExactlyOnce), // replaces the first within the same packet
        ],
    )
    .await;
    assert_eq!(ack.packet_id.get(), 9);
    assert_eq!(ack.reasons.len(), 3);
    assert!(s.sync().await.is_empty(), "one SUBACK only");
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("multi/a", b"a", QoS::ExactlyOnce, false).await;
    p.publish("multi/b", b"b", QoS::ExactlyOnce, false).await;
    let a = s.recv_publish().await;
    assert_eq!((&a.payload[..], a.qos), (&b"a"[..], QoS::ExactlyOnce));
    let b = s.recv_publish().await;
    assert_eq!((&b.payload[..], b.qos), (&b"b"[..], QoS::AtLeastOnce));
    s.ack(&b).await;
    s.ack(&a).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_8_4_5_one_return_code_per_filter_with_0x80_for_failures() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    let ack = subscribe_many(
        &mut s,
        2,
        &[
            ("ok/1", QoS::AtLeastOnce),
            ("bad/#/x", QoS::AtLeastOnce),
            ("", QoS::AtMostOnce),
            ("ok/2", QoS::ExactlyOnce),
        ],
    )
    .await;
    assert_eq!(
        ack.reasons,
        vec![
            ReasonCode::GRANTED_QOS_1,
            FAILURE,
            FAILURE,
            ReasonCode::GRANTED_QOS_2
        ]
    );
    // The failures did not stop the others, nor the connection.
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("ok/2", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(&s.recv_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn mqtt311_3_8_4_6_delivery_qos_is_the_minimum_of_published_and_granted() {
    let tern = Tern::start();
    let mut s0 = RawClient::connect(tern.addr, V311, "s0").await;
    s0.subscribe("min/t", QoS::AtMostOnce).await;
    let mut s1 = RawClient::connect(tern.addr, V311, "s1").await;
    s1.subscribe("min/t", QoS::AtLeastOnce).await;
    let mut s2 = RawClient::connect(tern.addr, V311, "s2").await;
    s2.subscribe("min/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for published in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        p.publish("min/t", b"x", published, false).await;
        for (s, granted) in [
            (&mut s0, QoS::AtMostOnce),
            (&mut s1, QoS::AtLeastOnce),
            (&mut s2, QoS::ExactlyOnce),
        ] {
            let got = s.recv_publish().await;
            assert_eq!(
                got.qos,
                published.min(granted),
                "published {published}, granted {granted}"
            );
            s.ack(&got).await;
        }
    }
}

#[tokio::test]
async fn mqtt311_3_8_4_6_server_may_grant_less_than_requested() {
    let tern = Tern::start_config("[mqtt]\nmax_qos = 1\n", "toml");
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    assert_eq!(
        s.subscribe("cap/t", QoS::ExactlyOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("cap/t", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(s.recv_publish().await.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt311_3_9_3_1_return_codes_follow_the_filter_order() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&raw_subscribe(
        0x82,
        0x0102,
        &[
            (b"o/2", 2),
            (b"o/#/bad", 0),
            (b"o/1", 1),
            (b"o/0", 0),
            (b"o+", 2),
        ],
    ))
    .await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x90, 7, 0x01, 0x02, 2, 0x80, 1, 0, 0x80])
    );
}

#[tokio::test]
async fn mqtt311_3_9_3_2_return_codes_are_only_0_1_2_or_0x80() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let filters: Vec<(&[u8], u8)> = vec![
        (b"a", 0),
        (b"b", 1),
        (b"c", 2),
        (b"#/x", 1),
        (b"$share/g/t", 1),
        (b"$share//t", 1),
        (b"$SYS/#", 2),
        (b"x+", 0),
    ];
    c.send_bytes(&raw_subscribe(0x82, 1, &filters)).await;
    let frame = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(frame.len(), 4 + filters.len());
    for code in &frame[4..] {
        assert!(matches!(code, 0 | 1 | 2 | 0x80), "return code {code:#04x}");
    }
    assert_eq!(&frame[4..8], &[0, 1, 2, 0x80]);
}

// ---- §3.10 UNSUBSCRIBE ----

#[tokio::test]
async fn mqtt311_3_10_1_1_unsubscribe_flags_must_be_0010() {
    let tern = Tern::start();
    for first in [0xA0u8, 0xA3, 0xAA, 0xA6] {
        connected_closes_after(&tern, &raw_unsubscribe(first, 1, &[b"a"])).await;
    }
}

#[tokio::test]
async fn mqtt311_3_10_3_1_unsubscribe_filters_must_be_valid_utf8() {
    let tern = Tern::start();
    connected_closes_after(&tern, &raw_unsubscribe(0xA2, 1, &[&[0xC0, 0x80]])).await;
    // A good filter followed by a bad one.
    connected_closes_after(&tern, &raw_unsubscribe(0xA2, 1, &[b"a", &[b'b', 0xFF]])).await;
    // A length running past the packet.
    connected_closes_after(&tern, &frame(0xA2, &[0, 1, 0, 9, b'a'])).await;
}

#[tokio::test]
async fn mqtt311_3_10_3_2_unsubscribe_without_filters_closes() {
    let tern = Tern::start();
    connected_closes_after(&tern, &raw_unsubscribe(0xA2, 1, &[])).await;
}

#[tokio::test]
async fn mqtt311_3_10_4_1_unsubscribe_compares_filters_character_by_character() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("lit/+", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    // Neither a matching topic nor a different spelling removes "lit/+".
    unsubscribe_many(&mut s, 1, &["lit/b", "lit/#", "LIT/+", "lit/+/"]).await;
    p.publish("lit/b", b"still", QoS::AtLeastOnce, false).await;
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], b"still");
    s.ack(&got).await;
    unsubscribe_many(&mut s, 2, &["lit/+"]).await;
    p.publish("lit/b", b"gone", QoS::AtLeastOnce, false).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_10_4_2_no_new_messages_after_unsubscribe() {
    let tern = Tern::start();
    let (mut s, _) =
        RawClient::connect_with(tern.addr, common::connect_packet(V311, "u2", false)).await;
    s.subscribe("u2/t", QoS::AtLeastOnce).await;
    unsubscribe_many(&mut s, 3, &["u2/t"]).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("u2/t", b"x", QoS::AtLeastOnce, false).await;
    s.expect_nothing().await;
    // Nothing is queued for the session either.
    s.disconnect().await;
    p.publish("u2/t", b"y", QoS::AtLeastOnce, false).await;
    let (mut s, ack) =
        RawClient::connect_with(tern.addr, common::connect_packet(V311, "u2", false)).await;
    assert!(ack.session_present);
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_10_4_3_started_deliveries_complete_after_unsubscribe() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("u3/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("u3/1", b"1", QoS::AtLeastOnce, false).await;
    p.publish("u3/2", b"2", QoS::ExactlyOnce, false).await;
    let m1 = s.recv_publish().await;
    let m2 = s.recv_publish().await;
    unsubscribe_many(&mut s, 4, &["u3/#"]).await;
    // The QoS 1 and QoS 2 flows still complete.
    s.send(&Packet::PubAck(Ack::new(m1.packet_id.unwrap())))
        .await;
    let id2 = m2.packet_id.unwrap();
    s.send(&Packet::PubRec(Ack::new(id2))).await;
    match s.recv().await {
        Packet::PubRel(a) => assert_eq!(a.packet_id, id2),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    s.send(&Packet::PubComp(Ack::new(id2))).await;
    assert!(s.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt311_3_10_4_4_unsuback_has_the_unsubscribe_packet_id() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.subscribe("x", QoS::AtMostOnce).await;
    c.send_bytes(&raw_unsubscribe(0xA2, 0xCAFE, &[b"x"])).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0xB0, 2, 0xCA, 0xFE])
    );
}

#[tokio::test]
async fn mqtt311_3_10_4_5_unsuback_is_sent_even_when_nothing_was_deleted() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&raw_unsubscribe(0xA2, 7, &[b"never/subscribed"]))
        .await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0xB0, 2, 0, 7]));
    // Also for a filter that is not even valid.
    c.send_bytes(&raw_unsubscribe(0xA2, 8, &[b"a/#/b"])).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0xB0, 2, 0, 8]));
}

#[tokio::test]
async fn mqtt311_3_10_4_6_several_filters_are_handled_with_one_unsuback() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    subscribe_many(
        &mut s,
        1,
        &[
            ("m/a", QoS::AtLeastOnce),
            ("m/b", QoS::AtLeastOnce),
            ("m/c", QoS::AtLeastOnce),
        ],
    )
    .await;
    s.send_bytes(&raw_unsubscribe(0xA2, 2, &[b"m/a", b"m/x", b"m/c"]))
        .await;
    assert_eq!(recv_raw_frame(&mut s).await, Some(vec![0xB0, 2, 0, 2]));
    assert!(s.sync().await.is_empty(), "one UNSUBACK only");
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for t in ["m/a", "m/b", "m/c"] {
        p.publish(t, t.as_bytes(), QoS::AtLeastOnce, false).await;
    }
    let got = s.recv_publish().await;
    assert_eq!(&got.topic[..], "m/b");
    s.ack(&got).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_s3_11_unsuback_is_flags_0000_length_2_id_only() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    subscribe_many(&mut c, 1, &[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)]).await;
    c.send_bytes(&raw_unsubscribe(0xA2, 0x0A0B, &[b"a", b"b", b"c"]))
        .await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0xB0, 0x02, 0x0A, 0x0B])
    );
}

// ---- §3.12 PINGREQ ----

#[tokio::test]
async fn mqtt311_3_12_4_1_every_pingreq_gets_a_pingresp() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&[0xC0, 0x00].repeat(5)).await;
    for _ in 0..5 {
        assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0xD0, 0x00]));
    }
    c.expect_nothing().await;
}

// ---- §4.7 Topic names and filters ----

#[tokio::test]
async fn mqtt311_4_7_1_1_wildcards_in_a_topic_name_close() {
    let tern = Tern::start();
    for topic in [&b"a/+/b"[..], b"#", b"a/b#"] {
        let body = [&lp(topic)[..], b"x"].concat();
        connected_closes_after(&tern, &frame(0x30, &body)).await;
    }
}

#[tokio::test]
async fn mqtt311_s4_7_1_1_empty_levels_are_real_levels() {
    let tern = Tern::start();
    assert_eq!(
        matches(&tern, "a//b", &["a//b", "a/b", "a///b"]).await,
        vec![true, false, false]
    );
    assert_eq!(
        matches(&tern, "/a", &["/a", "a", "//a"]).await,
        vec![true, false, false]
    );
    assert_eq!(matches(&tern, "a/", &["a/", "a"]).await, vec![true, false]);
}

#[tokio::test]
async fn mqtt311_4_7_1_2_misplaced_hash_gets_0x80() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let ack = subscribe_many(
        &mut c,
        1,
        &[
            ("a/#/b", QoS::AtMostOnce),
            ("a#", QoS::AtMostOnce),
            ("#/a", QoS::AtMostOnce),
            ("a/b#", QoS::AtMostOnce),
            ("##", QoS::AtMostOnce),
            ("a/#", QoS::AtMostOnce),
            ("#", QoS::AtMostOnce),
        ],
    )
    .await;
    assert_eq!(
        ack.reasons,
        vec![
            FAILURE,
            FAILURE,
            FAILURE,
            FAILURE,
            FAILURE,
            ReasonCode(0),
            ReasonCode(0)
        ]
    );
    assert!(c.sync().await.is_empty(), "connection kept");
}

#[tokio::test]
async fn mqtt311_s4_7_1_2_hash_matches_the_parent_level_and_everything_below() {
    let tern = Tern::start();
    assert_eq!(
        matches(
            &tern,
            "sport/#",
            &["sport", "sport/", "sport/a/b/c", "sports", "x/sport"]
        )
        .await,
        vec![true, true, true, false, false]
    );
    assert_eq!(
        matches(&tern, "#", &["a", "/", "a/b/c", "$dollar/x"]).await,
        vec![true, true, true, false]
    );
}

#[tokio::test]
async fn mqtt311_4_7_1_3_plus_must_fill_a_whole_level() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let ack = subscribe_many(
        &mut c,
        1,
        &[
            ("a+", QoS::AtMostOnce),
            ("+a", QoS::AtMostOnce),
            ("a/+b", QoS::AtMostOnce),
            ("++", QoS::AtMostOnce),
            ("+/+", QoS::AtMostOnce),
            ("+", QoS::AtMostOnce),
            ("a/+/#", QoS::AtMostOnce),
        ],
    )
    .await;
    assert_eq!(
        ack.reasons,
        vec![
            FAILURE,
            FAILURE,
            FAILURE,
            FAILURE,
            ReasonCode(0),
            ReasonCode(0),
            ReasonCode(0)
        ]
    );
    assert!(c.sync().await.is_empty(), "connection kept");
}

#[tokio::test]
async fn mqtt311_s4_7_1_3_plus_matches_exactly_one_level() {
    let tern = Tern::start();
    assert_eq!(
        matches(
            &tern,
            "sport/+",
            &["sport/", "sport", "sport/a", "sport/a/b"]
        )
        .await,
        vec![true, false, true, false]
    );
    assert_eq!(matches(&tern, "+/+", &["/finance"]).await, vec![true]);
    assert_eq!(matches(&tern, "/+", &["/finance"]).await, vec![true]);
    assert_eq!(
        matches(&tern, "+", &["/finance", "finance"]).await,
        vec![false, true]
    );
    assert_eq!(
        matches(&tern, "a/+/c", &["a/b/c", "a//c", "a/b/d"]).await,
        vec![true, true, false]
    );
}

#[tokio::test]
async fn mqtt311_4_7_2_1_leading_wildcards_do_not_match_dollar_topics() {
    let tern = Tern::start();
    let topics = ["$dollar/x", "$SYS", "x/$dollar"];
    assert_eq!(matches(&tern, "#", &topics).await, vec![false, false, true]);
    assert_eq!(
        matches(&tern, "+/x", &topics).await,
        vec![false, false, false]
    );
    assert_eq!(
        matches(&tern, "+/#", &topics).await,
        vec![false, false, true]
    );
    assert_eq!(
        matches(&tern, "$dollar/#", &topics).await,
        vec![true, false, false]
    );
    assert_eq!(
        matches(&tern, "$dollar/+", &topics).await,
        vec![true, false, false]
    );
}

#[tokio::test]
async fn mqtt311_s4_7_2_clients_cannot_publish_into_sys() {
    // Without the broker's own `$SYS` topics, which `$SYS/#` would receive too.
    let tern = Tern::start_config("sys_interval = 0\n", "toml");
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("$SYS/#", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("$SYS/broker/fake", b"x", QoS::AtLeastOnce, false)
        .await;
    p.publish("$SYS", b"x", QoS::AtLeastOnce, false).await;
    s.expect_nothing().await;
    // Other `$` topics are ordinary (documented decision).
    s.subscribe("$app/#", QoS::AtLeastOnce).await;
    p.publish("$app/x", b"y", QoS::AtLeastOnce, false).await;
    assert_eq!(&s.recv_publish().await.topic[..], "$app/x");
}

#[tokio::test]
async fn mqtt311_4_7_3_1_empty_filter_gets_0x80_and_empty_topic_closes() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send_bytes(&raw_subscribe(0x82, 1, &[(b"", 1)])).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x90, 3, 0, 1, 0x80])
    );
    let body = [&lp(b"")[..], b"x"].concat();
    c.send_bytes(&frame(0x30, &body)).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt311_s4_7_3_matching_is_case_sensitive_and_spaces_are_ordinary() {
    let tern = Tern::start();
    assert_eq!(
        matches(&tern, "ACCOUNTS", &["ACCOUNTS", "Accounts", "accounts"]).await,
        vec![true, false, false]
    );
    assert_eq!(
        matches(
            &tern,
            "Accounts payable/+",
            &[
                "Accounts payable/x",
                "Accountspayable/x",
                " Accounts payable/x"
            ]
        )
        .await,
        vec![true, false, false]
    );
    assert_eq!(matches(&tern, "/", &["/", "//"]).await, vec![true, false]);
    assert_eq!(matches(&tern, "+/+", &["/"]).await, vec![true]);
}

#[tokio::test]
async fn mqtt311_4_7_3_2_nul_in_topic_filters_closes() {
    let tern = Tern::start();
    connected_closes_after(&tern, &raw_subscribe(0x82, 1, &[(b"a/\0", 0)])).await;
    connected_closes_after(&tern, &raw_unsubscribe(0xA2, 1, &[b"\0"])).await;
}

#[tokio::test]
async fn mqtt311_4_7_3_3_names_and_filters_up_to_65535_bytes() {
    let tern = Tern::start();
    // 199 levels, then one long level (200 in all, the default max_topic_levels): 65,535 bytes.
    let prefix = "l/".repeat(199);
    let long = prefix.clone() + &"x".repeat(65_535 - prefix.len());
    assert_eq!(long.len(), 65_535);
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    assert_eq!(
        s.subscribe(&long, QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let wildcard = prefix + "+";
    assert_eq!(
        s.subscribe(&wildcard, QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish(&long, b"long", QoS::AtLeastOnce, true).await;
    let got = s.recv_publish().await;
    assert_eq!(&got.topic[..], long.as_str());
    s.ack(&got).await;
    s.expect_nothing().await;
    // Retained, too.
    let mut late = RawClient::connect(tern.addr, V311, "late").await;
    late.subscribe("l/#", QoS::AtLeastOnce).await;
    assert_eq!(late.recv_publish().await.topic.len(), 65_535);
}

/// Topics deeper than `max_topic_levels` (200 by default, Mosquitto's fixed limit) are refused:
/// the filter with SUBACK 0x80, the topic name by closing the connection. This bounds the
/// work one client can cause; a 65,535-byte topic of 32,768 levels must not harm the broker.
#[tokio::test]
async fn topics_deeper_than_max_topic_levels_are_refused_without_harm() {
    let tern = Tern::start();
    let deep = vec!["l"; 32_768].join("/");
    assert_eq!(deep.len(), 65_535);
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    assert_eq!(
        s.subscribe(&deep, QoS::AtLeastOnce).await,
        vec![ReasonCode::UNSPECIFIED_ERROR]
    );
    let at_limit = vec!["l"; 200].join("/");
    assert_eq!(
        s.subscribe(&at_limit, QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );

    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish(&at_limit, b"200 levels", QoS::AtLeastOnce, true)
        .await;
    assert_eq!(&s.recv_publish().await.payload[..], b"200 levels");
    p.send(&Packet::Publish(publish(
        &deep,
        b"deep",
        QoS::AtMostOnce,
        true,
        None,
    )))
    .await;
    p.expect_closed().await;

    // The broker is still there, and the deep message went nowhere.
    let mut late = RawClient::connect(tern.addr, V311, "late").await;
    late.subscribe("#", QoS::AtLeastOnce).await;
    assert_eq!(&late.recv_publish().await.payload[..], b"200 levels");
    late.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_4_7_3_4_matching_does_not_normalise() {
    let tern = Tern::start();
    let composed = "caf\u{E9}"; // é as one code point (NFC)
    let decomposed = "cafe\u{301}"; // e + combining acute (NFD)
    assert_eq!(
        matches(&tern, composed, &[composed, decomposed]).await,
        vec![true, false]
    );
    assert_eq!(
        matches(&tern, decomposed, &[composed, decomposed]).await,
        vec![false, true]
    );
    // A non-character and a replacement character are kept as they are.
    assert_eq!(
        matches(&tern, "n/\u{FFFE}", &["n/\u{FFFE}", "n/\u{FFFD}"]).await,
        vec![true, false]
    );
}
