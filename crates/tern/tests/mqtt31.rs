//! MQTT 3.1 (`MQIsdp`, protocol level 3) compatibility, section 15 of
//! `/work/shared/spec/mqtt-v311-server-checklist.md`: the points where 3.1 differs from 3.1.1,
//! the 3.1.1 behaviour it shares, and one broker serving 3.1, 3.1.1 and 5.0 clients on the same
//! topics. Each test starts the real `tern` binary.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{
    RawClient, Tern, V5, V31, V311, connect_packet, frame, lp, pid, publish, recv_raw_frame,
    v3_connect, will,
};
use tern_codec::{Ack, ByteString, Packet, QoS, ReasonCode, SubscriptionOptions};

/// A raw 3.1 CONNECT with the given flags and payload, keep-alive 60 s.
fn connect31(flags: u8, payload: &[u8]) -> Vec<u8> {
    v3_connect(b"MQIsdp", 3, flags, 60, payload)
}

/// Connects a 3.1 client with CleanSession = 0; returns the client and the raw CONNACK.
async fn persistent31(tern: &Tern, id: &str) -> (RawClient, Vec<u8>) {
    let mut c = RawClient::open(tern.addr, V31).await;
    c.send_bytes(&connect31(0x00, &lp(id.as_bytes()))).await;
    let ack = recv_raw_frame(&mut c).await.expect("CONNACK");
    (c, ack)
}

async fn assert_connack_then_close(tern: &Tern, bytes: &[u8], connack: [u8; 4]) {
    let mut c = RawClient::open(tern.addr, V31).await;
    c.send_bytes(bytes).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(connack.to_vec()));
    assert_eq!(recv_raw_frame(&mut c).await, None, "closed after CONNACK");
}

async fn closes_after(tern: &Tern, bytes: &[u8]) {
    let mut c = RawClient::connect(tern.addr, V31, "violator31").await;
    c.send_bytes(bytes).await;
    c.expect_closed().await;
}

// ---- §3.1-name ----

#[tokio::test]
async fn mqtt31_name_mqisdp_level_3_is_accepted() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V31).await;
    c.send_bytes(&connect31(0x02, &lp(b"classic"))).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0x20, 2, 0, 0]));
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt31_name_known_name_with_unsupported_level_gets_return_code_1() {
    let tern = Tern::start();
    for level in [2u8, 4, 5, 0] {
        let bytes = v3_connect(b"MQIsdp", level, 0x02, 60, &lp(b"c"));
        assert_connack_then_close(&tern, &bytes, [0x20, 2, 0, 0x01]).await;
    }
    let bytes = v3_connect(b"MQTT", 3, 0x02, 60, &lp(b"c"));
    assert_connack_then_close(&tern, &bytes, [0x20, 2, 0, 0x01]).await;
}

#[tokio::test]
async fn mqtt31_name_mqtt_4_is_311_and_mqtt_5_is_50() {
    let tern = Tern::start();
    // 3.1.1: a two-byte CONNACK.
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&v3_connect(b"MQTT", 4, 0x02, 60, &lp(b"four")))
        .await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0x20, 2, 0, 0]));
    // 5.0: the CONNECT has a properties length; the CONNACK carries properties.
    let mut c = RawClient::open(tern.addr, V5).await;
    let payload = [&[0u8][..], &lp(b"five")].concat();
    c.send_bytes(&v3_connect(b"MQTT", 5, 0x02, 60, &payload))
        .await;
    let ack = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(ack[0], 0x20);
    assert!(ack[1] > 2, "MQTT 5 CONNACK with properties: {ack:?}");
}

#[tokio::test]
async fn mqtt31_name_unknown_name_closes_without_connack() {
    let tern = Tern::start();
    for name in [&b"MQIsdp3"[..], b"MQISDP", b"MQIs"] {
        let mut c = RawClient::open(tern.addr, V31).await;
        c.send_bytes(&v3_connect(name, 3, 0x02, 60, &lp(b"c")))
            .await;
        c.expect_closed().await;
    }
}

// ---- §3.1-clientid ----

#[tokio::test]
async fn mqtt31_clientid_empty_gets_return_code_2_even_with_clean_session() {
    let tern = Tern::start();
    for flags in [0x02u8, 0x00] {
        assert_connack_then_close(&tern, &connect31(flags, &lp(b"")), [0x20, 2, 0, 0x02]).await;
    }
}

#[tokio::test]
async fn mqtt31_clientid_longer_than_23_characters_is_accepted() {
    // Documented choice: the 23-character limit of 3.1 is not enforced.
    let tern = Tern::start();
    let long = "c".repeat(200);
    for id in [
        "abcdefghijklmnopqrstuvw",
        "abcdefghijklmnopqrstuvwx",
        long.as_str(),
    ] {
        let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V31, id, true)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "{} characters", id.len());
        c.disconnect().await;
    }
}

// ---- §3.1-connack ----

#[tokio::test]
async fn mqtt31_connack_first_byte_is_zero_even_when_the_session_is_resumed() {
    let tern = Tern::start();
    let (mut c, ack) = persistent31(&tern, "resume31").await;
    assert_eq!(ack, vec![0x20, 2, 0, 0]);
    c.subscribe("r31/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V31, "p31").await;
    p.publish("r31/t", b"stored", QoS::AtLeastOnce, false).await;
    let (mut c, ack) = persistent31(&tern, "resume31").await;
    assert_eq!(ack, vec![0x20, 2, 0, 0], "no Session Present bit in 3.1");
    // The session was resumed all the same.
    assert_eq!(&c.recv_publish().await.payload[..], b"stored");
}

#[tokio::test]
async fn mqtt31_connack_refusals_use_the_same_return_codes() {
    let tern = Tern::start();
    let payload = [&lp(b"c")[..], &lp(b"$SYS/w"), &lp(b"m")].concat();
    assert_connack_then_close(&tern, &connect31(0x06, &payload), [0x20, 2, 0, 0x05]).await;
    let closed = Tern::start_config("allow_anonymous = false\n", "toml");
    assert_connack_then_close(&closed, &connect31(0x02, &lp(b"c")), [0x20, 2, 0, 0x05]).await;
    let payload = [&lp(b"c")[..], &lp(b"user"), &lp(b"pw")].concat();
    assert_connack_then_close(&closed, &connect31(0xC2, &payload), [0x20, 2, 0, 0x04]).await;
}

// ---- §3.1-suback ----

#[tokio::test]
async fn mqtt31_suback_refused_filter_gets_0x80() {
    // Documented choice: 3.1 clients get 0x80 like 3.1.1 clients, not a close.
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V31, "c").await;
    let body = [
        &[0u8, 3][..],
        &lp(b"ok/#"),
        &[1],
        &lp(b"bad/#/x"),
        &[1],
        &lp(b""),
        &[0],
        &lp(b"ok2"),
        &[2],
    ]
    .concat();
    c.send_bytes(&frame(0x82, &body)).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x90, 6, 0, 3, 1, 0x80, 0x80, 2])
    );
    assert!(c.sync().await.is_empty(), "connection kept");
}

// ---- §3.1-flags ----

#[tokio::test]
async fn mqtt31_flags_dup_on_pubrel_subscribe_and_unsubscribe_is_accepted() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V31, "c").await;
    // SUBSCRIBE re-sent with DUP: 1000 1010.
    let sub = [&[0u8, 4][..], &lp(b"dup31/t"), &[2]].concat();
    c.send_bytes(&frame(0x8A, &sub)).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0x90, 3, 0, 4, 2]));
    // QoS 2 PUBLISH, then PUBREL re-sent with DUP: 0110 1010.
    let publish = [&lp(b"dup31/t")[..], &[0, 5], b"x"].concat();
    c.send_bytes(&frame(0x34, &publish)).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0x50, 2, 0, 5]));
    c.send_bytes(&[0x6A, 2, 0, 5]).await;
    // The PUBCOMP and the delivery to this same client (its own subscription).
    let mut got_pubcomp = false;
    let mut got_publish = false;
    while !(got_pubcomp && got_publish) {
        match c.recv().await {
            Packet::PubComp(a) => {
                assert_eq!(a.packet_id.get(), 5);
                got_pubcomp = true;
            }
            Packet::Publish(p) => {
                assert_eq!(&p.payload[..], b"x");
                c.send(&Packet::PubRec(Ack::new(p.packet_id.unwrap())))
                    .await;
                got_publish = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // UNSUBSCRIBE re-sent with DUP: 1010 1010.
    let unsub = [&[0u8, 6][..], &lp(b"dup31/t")].concat();
    c.send_bytes(&frame(0xAA, &unsub)).await;
    loop {
        match c.recv().await {
            Packet::UnsubAck(a) => {
                assert_eq!(a.packet_id.get(), 6);
                break;
            }
            Packet::PubRel(a) => c.send(&Packet::PubComp(Ack::new(a.packet_id))).await,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn mqtt31_flags_qos_3_publish_and_other_bits_still_close() {
    let tern = Tern::start();
    closes_after(&tern, &frame(0x36, &[&lp(b"a")[..], &[0, 1]].concat())).await;
    // SUBSCRIBE without its QoS 1 bits, and with QoS 2 bits.
    let sub = [&[0u8, 1][..], &lp(b"a"), &[0]].concat();
    closes_after(&tern, &frame(0x80, &sub)).await;
    closes_after(&tern, &frame(0x84, &sub)).await;
    // PUBACK has no DUP in 3.1 either.
    closes_after(&tern, &[0x48, 2, 0, 1]).await;
}

// ---- §3.1-resubscribe ----

#[tokio::test]
async fn mqtt31_resubscribe_sends_retained_messages_again() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V31, "p").await;
    p.publish("rs31/t", b"kept", QoS::AtLeastOnce, true).await;
    let mut s = RawClient::connect(tern.addr, V31, "s").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        assert_eq!(
            s.subscribe("rs31/t", qos).await,
            vec![ReasonCode(qos as u8)]
        );
        let got = s.recv_publish().await;
        assert_eq!(
            (&got.payload[..], got.retain, got.qos),
            (&b"kept"[..], true, qos)
        );
        s.ack(&got).await;
    }
}

// ---- §3.1-strings ----

#[tokio::test]
async fn mqtt31_strings_ill_formed_utf8_and_nul_are_refused() {
    // Documented choice: the 3.1.1 string rules apply to 3.1 clients too.
    let tern = Tern::start();
    for topic in [&[b'a', 0xC3][..], b"a\0b", &[0xED, 0xB0, 0x80]] {
        closes_after(&tern, &frame(0x30, &[&lp(topic)[..], b"x"].concat())).await;
    }
    let mut c = RawClient::open(tern.addr, V31).await;
    c.send_bytes(&connect31(0x02, &lp(&[0xFF, b'c']))).await;
    c.expect_closed().await;
}

// ---- §3.1-same ----

#[tokio::test]
async fn mqtt31_same_clean_session_semantics() {
    let tern = Tern::start();
    let (mut c, _) = persistent31(&tern, "cs31").await;
    c.subscribe("cs31/t", QoS::AtLeastOnce).await;
    drop(c);
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("cs31/t", b"one", QoS::AtLeastOnce, false).await;
    let (mut c, _) = persistent31(&tern, "cs31").await;
    let got = c.recv_publish().await;
    assert_eq!(&got.payload[..], b"one");
    c.ack(&got).await;
    c.disconnect().await;
    p.publish("cs31/t", b"two", QoS::AtLeastOnce, false).await;
    // CleanSession = 1 discards it all.
    let mut c = RawClient::connect(tern.addr, V31, "cs31").await;
    c.expect_nothing().await;
    c.disconnect().await;
    let (mut c, _) = persistent31(&tern, "cs31").await;
    p.publish("cs31/t", b"three", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt31_same_will_rules() {
    let tern = Tern::start();
    let mut w = RawClient::connect(tern.addr, V311, "w").await;
    w.subscribe("w31/#", QoS::AtLeastOnce).await;
    // Published on an abnormal close, with its retain flag.
    let mut packet = connect_packet(V31, "gone31", true);
    packet.will = Some(will("w31/gone", b"bye", QoS::AtLeastOnce, true));
    let (c, _) = RawClient::connect_with(tern.addr, packet).await;
    drop(c);
    let got = w.recv_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        ("w31/gone", &b"bye"[..])
    );
    w.ack(&got).await;
    // Not published after DISCONNECT.
    let mut packet = connect_packet(V31, "polite31", true);
    packet.will = Some(will("w31/polite", b"no", QoS::AtLeastOnce, false));
    let (c, _) = RawClient::connect_with(tern.addr, packet).await;
    c.disconnect().await;
    w.expect_nothing().await;
    // The retained Will is there for later subscribers.
    let mut late = RawClient::connect(tern.addr, V31, "late").await;
    late.subscribe("w31/#", QoS::AtLeastOnce).await;
    let got = late.recv_publish().await;
    assert_eq!((&got.topic[..], got.retain), ("w31/gone", true));
}

#[tokio::test]
async fn mqtt31_same_keep_alive_expiry_closes_and_publishes_the_will() {
    let tern = Tern::start();
    let mut w = RawClient::connect(tern.addr, V31, "w").await;
    w.subscribe("ka31/#", QoS::AtLeastOnce).await;
    let started = std::time::Instant::now();
    let mut packet = connect_packet(V31, "idle31", true);
    packet.keep_alive = 1;
    packet.will = Some(will("ka31/will", b"timeout", QoS::AtMostOnce, false));
    let (mut c, _) = RawClient::connect_with(tern.addr, packet).await;
    c.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(&w.recv_publish().await.payload[..], b"timeout");
}

#[tokio::test]
async fn mqtt31_same_retained_replace_and_clear() {
    let tern = Tern::start();
    let mut p = RawClient::connect(tern.addr, V31, "p").await;
    p.publish("ret31", b"first", QoS::AtLeastOnce, true).await;
    p.publish("ret31", b"second", QoS::AtLeastOnce, true).await;
    let mut s = RawClient::connect(tern.addr, V31, "s").await;
    s.subscribe("ret31", QoS::AtLeastOnce).await;
    let got = s.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"second"[..], true));
    s.ack(&got).await;
    p.publish("ret31", b"", QoS::AtLeastOnce, true).await;
    let got = s.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b""[..], false));
    s.ack(&got).await;
    let mut late = RawClient::connect(tern.addr, V31, "late").await;
    late.subscribe("ret31", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn mqtt31_same_qos_flows_in_both_directions() {
    let tern = Tern::start();
    let mut s = RawClient::connect(tern.addr, V31, "s").await;
    s.subscribe("q31/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V31, "p").await;
    p.publish("q31/0", b"0", QoS::AtMostOnce, false).await;
    assert_eq!(
        p.publish("q31/1", b"1", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    // QoS 2 with a duplicate before PUBREL: delivered once.
    let mut m = publish("q31/2", b"2", QoS::ExactlyOnce, false, Some(pid(9)));
    p.send(&Packet::Publish(m.clone())).await;
    m.dup = true;
    p.send(&Packet::Publish(m)).await;
    for _ in 0..2 {
        assert!(matches!(p.recv().await, Packet::PubRec(a) if a.packet_id.get() == 9));
    }
    p.send(&Packet::PubRel(Ack::new(pid(9)))).await;
    assert!(matches!(p.recv().await, Packet::PubComp(a) if a.packet_id.get() == 9));
    for (payload, qos) in [
        (b"0", QoS::AtMostOnce),
        (b"1", QoS::AtLeastOnce),
        (b"2", QoS::ExactlyOnce),
    ] {
        let got = s.recv_publish().await;
        assert_eq!(
            (&got.payload[..], got.qos, got.dup),
            (&payload[..], qos, false)
        );
        s.ack(&got).await;
    }
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt31_same_redelivery_on_reconnect_with_dup() {
    let tern = Tern::start();
    let (mut c, _) = persistent31(&tern, "rd31").await;
    c.subscribe("rd31/t", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V31, "p").await;
    p.publish("rd31/t", b"a", QoS::AtLeastOnce, false).await;
    p.publish("rd31/t", b"b", QoS::ExactlyOnce, false).await;
    let a = c.recv_publish().await;
    let b = c.recv_publish().await;
    c.send(&Packet::PubRec(Ack::new(b.packet_id.unwrap())))
        .await;
    assert!(matches!(c.recv().await, Packet::PubRel(_)));
    drop(c);
    let (mut c, _) = persistent31(&tern, "rd31").await;
    let again = c.recv_publish().await;
    assert_eq!(
        (again.dup, again.packet_id, &again.payload[..]),
        (true, a.packet_id, &b"a"[..])
    );
    assert!(matches!(c.recv().await, Packet::PubRel(r) if Some(r.packet_id) == b.packet_id));
}

#[tokio::test]
async fn mqtt31_same_pingreq_and_disconnect() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V31, "c").await;
    c.send_bytes(&[0xC0, 0, 0xC0, 0]).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0xD0, 0]));
    assert_eq!(recv_raw_frame(&mut c).await, Some(vec![0xD0, 0]));
    c.send_bytes(&[0xE0, 0]).await;
    c.expect_closed().await;
}

// ---- §cross-version ----

#[tokio::test]
async fn mqtt31_cross_version_all_protocols_share_topics() {
    let tern = Tern::start();
    let mut subs = Vec::new();
    for (v, id) in [(V31, "s31"), (V311, "s311"), (V5, "s5")] {
        let mut s = RawClient::connect(tern.addr, v, id).await;
        s.subscribe("x/+", QoS::AtLeastOnce).await;
        subs.push(s);
    }
    for (v, id) in [(V31, "p31"), (V311, "p311"), (V5, "p5")] {
        let mut p = RawClient::connect(tern.addr, v, id).await;
        p.publish("x/t", id.as_bytes(), QoS::AtLeastOnce, false)
            .await;
        for s in &mut subs {
            let got = s.recv_publish().await;
            assert_eq!((&got.topic[..], &got.payload[..]), ("x/t", id.as_bytes()));
            s.ack(&got).await;
        }
    }
}

#[tokio::test]
async fn mqtt31_cross_version_properties_are_dropped_and_aliases_resolved() {
    let tern = Tern::start();
    let mut s31 = RawClient::connect(tern.addr, V31, "s31").await;
    s31.subscribe("alias/t", QoS::AtLeastOnce).await;
    let mut s311 = RawClient::connect(tern.addr, V311, "s311").await;
    s311.subscribe("alias/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V5, "p5").await;
    let mut first = publish("alias/t", b"one", QoS::AtLeastOnce, false, Some(pid(1)));
    first.properties.topic_alias = Some(1);
    first.properties.user_properties = vec![(ByteString::from("k"), ByteString::from("v"))];
    first.properties.content_type = Some(ByteString::from("text/plain"));
    first.properties.response_topic = Some(ByteString::from("alias/reply"));
    first.properties.message_expiry_interval = Some(3600);
    p.send(&Packet::Publish(first)).await;
    assert!(matches!(p.recv().await, Packet::PubAck(_)));
    // Second message by alias only.
    let mut second = publish("", b"two", QoS::AtLeastOnce, false, Some(pid(2)));
    second.properties.topic_alias = Some(1);
    p.send(&Packet::Publish(second)).await;
    assert!(matches!(p.recv().await, Packet::PubAck(_)));
    for s in [&mut s31, &mut s311] {
        for payload in [&b"one"[..], b"two"] {
            // Exactly a 3.x PUBLISH: topic, packet id, payload, nothing else.
            let frame = recv_raw_frame(s).await.unwrap();
            assert_eq!(frame[0], 0x32);
            assert_eq!(&frame[2..11], &[&lp(b"alias/t")[..]].concat()[..]);
            assert_eq!(&frame[13..], payload);
            assert_eq!(usize::from(frame[1]), frame.len() - 2);
            let id = u16::from_be_bytes([frame[11], frame[12]]);
            s.send(&Packet::PubAck(Ack::new(pid(id)))).await;
        }
    }
}

#[tokio::test]
async fn mqtt31_cross_version_message_expiry_applies_to_3x_subscribers() {
    let tern = Tern::start();
    let mut subs = Vec::new();
    for (v, id) in [(V31, "e31"), (V311, "e311")] {
        let (mut s, _) = RawClient::connect_with(tern.addr, connect_packet(v, id, false)).await;
        s.subscribe("exp/t", QoS::AtLeastOnce).await;
        s.disconnect().await;
        subs.push((v, id));
    }
    let mut p = RawClient::connect(tern.addr, V5, "p5").await;
    let mut short = publish("exp/t", b"short", QoS::AtLeastOnce, false, Some(pid(1)));
    short.properties.message_expiry_interval = Some(1);
    p.send(&Packet::Publish(short)).await;
    assert!(matches!(p.recv().await, Packet::PubAck(_)));
    let mut long = publish("exp/t", b"long", QoS::AtLeastOnce, false, Some(pid(2)));
    long.properties.message_expiry_interval = Some(3600);
    p.send(&Packet::Publish(long)).await;
    assert!(matches!(p.recv().await, Packet::PubAck(_)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (v, id) in subs {
        let (mut s, ack) = RawClient::connect_with(tern.addr, connect_packet(v, id, false)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        let got = s.recv_publish().await;
        assert_eq!(
            &got.payload[..],
            b"long",
            "{v}: the expired message is not delivered"
        );
        s.ack(&got).await;
        s.expect_nothing().await;
    }
}

#[tokio::test]
async fn mqtt31_cross_version_retain_and_qos_follow_the_subscriber_protocol() {
    let tern = Tern::start();
    let mut s5 = RawClient::connect(tern.addr, V5, "s5").await;
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        retain_as_published: true,
        ..Default::default()
    };
    s5.subscribe_with("rq/t", options, None).await;
    let mut s31 = RawClient::connect(tern.addr, V31, "s31").await;
    s31.subscribe("rq/t", QoS::AtLeastOnce).await;
    let mut s311 = RawClient::connect(tern.addr, V311, "s311").await;
    s311.subscribe("rq/t", QoS::AtMostOnce).await;
    let mut p = RawClient::connect(tern.addr, V31, "p31").await;
    p.publish("rq/t", b"m", QoS::ExactlyOnce, true).await;
    let got = s5.recv_publish().await;
    assert_eq!(
        (got.retain, got.qos),
        (true, QoS::ExactlyOnce),
        "v5 Retain As Published"
    );
    let got = s31.recv_publish().await;
    assert_eq!(
        (got.retain, got.qos),
        (false, QoS::AtLeastOnce),
        "3.1: RETAIN 0, granted QoS"
    );
    let got = s311.recv_publish().await;
    assert_eq!(
        (got.retain, got.qos),
        (false, QoS::AtMostOnce),
        "3.1.1: RETAIN 0, granted QoS"
    );
}
