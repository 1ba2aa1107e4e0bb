//! MQTT 3.1.1 conformance, sessions and connection life: CleanSession (§3.1.2.4), session state
//! (§4.1), redelivery (§4.4), message receipt (§4.5), DISCONNECT (§3.14), error handling (§4.8)
//! and conformance (§7), including interoperability with the third-party `rumqttc` client. Each
//! test is named after the statement of `/work/shared/spec/mqtt-v311-server-checklist.md` it
//! checks and runs against the real `tern` binary.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{
    RawClient, TIMEOUT, Tern, V311, connect_packet, frame, lp, pid, publish, recv_raw_frame, will,
};
use tern_codec::{Ack, Packet, Publish, QoS, ReasonCode};

/// Connects with CleanSession = 0; returns the client and Session Present.
async fn persistent(tern: &Tern, id: &str) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, id, false)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (c, ack.session_present)
}

/// A clean-session client subscribed to `filter` at QoS 2.
async fn watcher(tern: &Tern, id: &str, filter: &str) -> RawClient {
    let mut w = RawClient::connect(tern.addr, V311, id).await;
    w.subscribe(filter, QoS::ExactlyOnce).await;
    w
}

/// A clean-session client with a QoS 1 Will.
async fn with_will(tern: &Tern, id: &str, topic: &str, payload: &[u8]) -> RawClient {
    let mut p = connect_packet(V311, id, true);
    p.will = Some(will(topic, payload, QoS::AtLeastOnce, false));
    let (c, ack) = RawClient::connect_with(tern.addr, p).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

async fn recv_publishes(c: &mut RawClient, n: usize) -> Vec<Publish> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(c.recv_publish().await);
    }
    out
}

fn id_of(p: &Publish) -> u16 {
    p.packet_id.expect("packet id").get()
}

// ---- §3.1.2.4 CleanSession ----

#[tokio::test]
async fn mqtt311_3_1_2_4_persistent_session_is_resumed_and_kept_after_close() {
    let tern = Tern::start();
    let (mut c, present) = persistent(&tern, "p4").await;
    assert!(!present);
    c.subscribe("p4/t", QoS::AtLeastOnce).await;
    drop(c); // an abnormal close keeps the session too
    let (mut c, present) = persistent(&tern, "p4").await;
    assert!(present);
    // The subscription came back with the session: no new SUBSCRIBE.
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("p4/t", b"resumed", QoS::AtLeastOnce, false).await;
    let got = c.recv_publish().await;
    assert_eq!(&got.payload[..], b"resumed");
    c.ack(&got).await;
    c.disconnect().await;
    let (_c, present) = persistent(&tern, "p4").await;
    assert!(present);
}

#[tokio::test]
async fn mqtt311_3_1_2_5_qos1_and_qos2_messages_are_stored_while_disconnected() {
    let tern = Tern::start();
    let (mut c, _) = persistent(&tern, "p5").await;
    c.subscribe("p5/#", QoS::ExactlyOnce).await;
    c.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("p5/0", b"zero", QoS::AtMostOnce, false).await;
    p.publish("p5/1", b"one", QoS::AtLeastOnce, false).await;
    p.publish("p5/2", b"two", QoS::ExactlyOnce, false).await;
    let (mut c, present) = persistent(&tern, "p5").await;
    assert!(present);
    let m = recv_publishes(&mut c, 2).await;
    assert_eq!(
        m.iter()
            .map(|m| (&m.payload[..], m.qos, m.dup))
            .collect::<Vec<_>>(),
        vec![
            (&b"one"[..], QoS::AtLeastOnce, false),
            (&b"two"[..], QoS::ExactlyOnce, false)
        ]
    );
    // QoS 0 is not stored by default (queue_qos0_messages = false).
    c.ack(&m[0]).await;
    c.ack(&m[1]).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_5_qos0_is_stored_when_configured() {
    let tern = Tern::start_config("[mqtt]\nqueue_qos0_messages = true\n", "toml");
    let (mut c, _) = persistent(&tern, "p5q0").await;
    c.subscribe("p5q0/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("p5q0/t", b"zero", QoS::AtMostOnce, false).await;
    p.sync().await;
    let (mut c, _) = persistent(&tern, "p5q0").await;
    let got = c.recv_publish().await;
    assert_eq!((&got.payload[..], got.qos), (&b"zero"[..], QoS::AtMostOnce));
}

#[tokio::test]
async fn mqtt311_3_1_2_6_clean_session_discards_the_previous_session() {
    let tern = Tern::start();
    let (mut c, _) = persistent(&tern, "p6").await;
    c.subscribe("p6/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("p6/t", b"in flight", QoS::AtLeastOnce, false)
        .await;
    let _unacked = c.recv_publish().await;
    drop(c);
    p.publish("p6/t", b"queued", QoS::AtLeastOnce, false).await;
    // CleanSession = 1: nothing of the old session (in-flight, queued, subscriptions).
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "p6", true)).await;
    assert!(!ack.session_present);
    c.expect_nothing().await;
    p.publish("p6/t", b"after", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
    c.disconnect().await;
    // The clean session itself is not kept: a later CleanSession = 0 starts from nothing.
    let (mut c, present) = persistent(&tern, "p6").await;
    assert!(!present);
    p.publish("p6/t", b"later", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_6_clean_session_state_ends_with_the_connection() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "p6b").await;
    c.subscribe("p6b/t", QoS::AtLeastOnce).await;
    drop(c);
    let (mut c, present) = persistent(&tern, "p6b").await;
    assert!(!present);
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("p6b/t", b"x", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_7_retained_messages_outlive_the_session() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "p7").await;
    c.publish("p7/t", b"kept", QoS::AtLeastOnce, true).await;
    c.disconnect().await; // clean session ends here
    let (c, _) = persistent(&tern, "p7b").await;
    drop(c);
    let (c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "p7b", true)).await;
    drop(c);
    let mut s = RawClient::connect(tern.addr, V311, "s").await;
    s.subscribe("p7/#", QoS::AtLeastOnce).await;
    let got = s.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"kept"[..], true));
}

// ---- §4.1 Session state ----

#[tokio::test]
async fn mqtt311_s4_1_incoming_qos2_awaiting_pubrel_is_session_state() {
    let tern = Tern::start();
    let mut s = watcher(&tern, "s", "st/t").await;
    let (mut p, _) = persistent(&tern, "st-pub").await;
    p.send(&Packet::Publish({
        let mut m = publish("st/t", b"once", QoS::ExactlyOnce, false, Some(pid(11)));
        m.dup = false;
        m
    }))
    .await;
    match p.recv().await {
        Packet::PubRec(a) => assert_eq!(a.packet_id.get(), 11),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    drop(p);
    // The publisher comes back and re-sends the PUBLISH: still the same message.
    let (mut p, present) = persistent(&tern, "st-pub").await;
    assert!(present);
    let mut again = publish("st/t", b"once", QoS::ExactlyOnce, false, Some(pid(11)));
    again.dup = true;
    p.send(&Packet::Publish(again)).await;
    match p.recv().await {
        Packet::PubRec(a) => assert_eq!(a.packet_id.get(), 11),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    p.send(&Packet::PubRel(Ack::new(pid(11)))).await;
    match p.recv().await {
        Packet::PubComp(a) => assert_eq!(a.packet_id.get(), 11),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let got = s.recv_publish().await;
    assert_eq!(&got.payload[..], b"once");
    s.ack(&got).await;
    s.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_4_1_0_1_session_lasts_until_a_clean_session_connect() {
    let tern = Tern::start();
    let (mut c, _) = persistent(&tern, "life").await;
    c.subscribe("life/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    for round in 0..3u8 {
        c.disconnect().await;
        p.publish("life/t", &[round], QoS::AtLeastOnce, false).await;
        let (next, present) = persistent(&tern, "life").await;
        c = next;
        assert!(present, "round {round}");
        let got = c.recv_publish().await;
        assert_eq!(&got.payload[..], &[round]);
        c.ack(&got).await;
    }
    c.disconnect().await;
    let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "life", true)).await;
    assert!(!ack.session_present);
    c.disconnect().await;
    let (_c, present) = persistent(&tern, "life").await;
    assert!(!present);
}

#[tokio::test]
async fn mqtt311_4_1_0_1_persistent_client_expiration_ends_stored_sessions() {
    // The documented administrator policy: `persistent_client_expiration`.
    let tern = Tern::start_config("[mqtt]\npersistent_client_expiration = 1\n", "toml");
    let (mut c, _) = persistent(&tern, "exp").await;
    c.subscribe("exp/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (mut c, present) = persistent(&tern, "exp").await;
    assert!(!present, "expired after 1 s offline");
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("exp/t", b"x", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_4_1_0_2_session_lasts_at_least_as_long_as_the_connection() {
    // An expiration of 1 s for offline sessions does not touch connected ones.
    let tern = Tern::start_config("[mqtt]\npersistent_client_expiration = 1\n", "toml");
    let (mut c, _) = persistent(&tern, "conn").await;
    c.subscribe("conn/t", QoS::AtLeastOnce).await;
    let mut clean = RawClient::connect(tern.addr, V311, "clean").await;
    clean.subscribe("conn/t", QoS::AtLeastOnce).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("conn/t", b"x", QoS::AtLeastOnce, false).await;
    for s in [&mut c, &mut clean] {
        let got = s.recv_publish().await;
        assert_eq!(&got.payload[..], b"x");
        s.ack(&got).await;
    }
    c.disconnect().await;
    let (_c, present) = persistent(&tern, "conn").await;
    assert!(present);
}

// ---- §4.4 Redelivery ----

#[tokio::test]
async fn mqtt311_4_4_0_1_reconnect_resends_unacknowledged_publishes_and_pubrels() {
    let tern = Tern::start();
    let (mut c, _) = persistent(&tern, "re").await;
    c.subscribe("re/#", QoS::ExactlyOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("re/1", b"q1", QoS::AtLeastOnce, false).await;
    p.publish("re/2", b"q2 unreceived", QoS::ExactlyOnce, false)
        .await;
    p.publish("re/3", b"q2 received", QoS::ExactlyOnce, false)
        .await;
    let m = recv_publishes(&mut c, 3).await;
    // Only the third gets as far as PUBREC/PUBREL.
    c.send(&Packet::PubRec(Ack::new(pid(id_of(&m[2]))))).await;
    match c.recv().await {
        Packet::PubRel(a) => assert_eq!(a.packet_id.get(), id_of(&m[2])),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(c);
    let (mut c, present) = persistent(&tern, "re").await;
    assert!(present);
    let f1 = recv_raw_frame(&mut c).await.unwrap();
    let f2 = recv_raw_frame(&mut c).await.unwrap();
    let f3 = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(f1[0], 0x3A, "QoS 1 PUBLISH with DUP");
    assert_eq!(f2[0], 0x3C, "QoS 2 PUBLISH with DUP");
    let id3 = id_of(&m[2]);
    assert_eq!(f3, vec![0x62, 2, (id3 >> 8) as u8, id3 as u8], "PUBREL");
    let ids = |f: &[u8]| {
        let at = 4 + usize::from(u16::from_be_bytes([f[2], f[3]]));
        u16::from_be_bytes([f[at], f[at + 1]])
    };
    assert_eq!(ids(&f1), id_of(&m[0]));
    assert_eq!(ids(&f2), id_of(&m[1]));
    c.send(&Packet::PubAck(Ack::new(pid(id_of(&m[0]))))).await;
    c.send(&Packet::PubRec(Ack::new(pid(id_of(&m[1]))))).await;
    c.send(&Packet::PubComp(Ack::new(pid(id3)))).await;
    match c.recv().await {
        Packet::PubRel(a) => assert_eq!(a.packet_id.get(), id_of(&m[1])),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    c.send(&Packet::PubComp(Ack::new(pid(id_of(&m[1]))))).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_s4_4_no_retransmission_within_a_live_connection() {
    let tern = Tern::start();
    let mut c = watcher(&tern, "s", "nr/t").await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("nr/t", b"1", QoS::AtLeastOnce, false).await;
    p.publish("nr/t", b"2", QoS::ExactlyOnce, false).await;
    let m = recv_publishes(&mut c, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        c.sync().await.is_empty(),
        "nothing re-sent on this connection"
    );
    c.send(&Packet::PubAck(Ack::new(pid(id_of(&m[0]))))).await;
    c.send(&Packet::PubRec(Ack::new(pid(id_of(&m[1]))))).await;
    match c.recv().await {
        Packet::PubRel(a) => assert_eq!(a.packet_id.get(), id_of(&m[1])),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.sync().await.is_empty(), "PUBREL not re-sent either");
}

// ---- §4.5 Message receipt ----

#[tokio::test]
async fn mqtt311_4_5_0_1_message_goes_to_every_matching_session() {
    let tern = Tern::start();
    let (mut offline, _) = persistent(&tern, "off").await;
    offline.subscribe("rx/+", QoS::AtLeastOnce).await;
    offline.disconnect().await;
    let mut a = watcher(&tern, "a", "rx/#").await;
    let mut b = watcher(&tern, "b", "rx/t").await;
    let mut other = watcher(&tern, "other", "nope/#").await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("rx/t", b"all", QoS::AtLeastOnce, false).await;
    for s in [&mut a, &mut b] {
        assert_eq!(&s.recv_publish().await.payload[..], b"all");
    }
    other.expect_nothing().await;
    let (mut offline, _) = persistent(&tern, "off").await;
    assert_eq!(&offline.recv_publish().await.payload[..], b"all");
}

#[tokio::test]
async fn mqtt311_4_5_0_2_acknowledgements_for_unknown_ids_are_tolerated() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.send(&Packet::PubAck(Ack::new(pid(0x7777)))).await;
    c.send(&Packet::PubComp(Ack::new(pid(0x7778)))).await;
    c.send(&Packet::PubRec(Ack::new(pid(0x7779)))).await;
    // 3.1.1 has no "not found" code: an unknown PUBREC gets nothing, an unknown PUBREL its PUBCOMP.
    c.send(&Packet::PubRel(Ack::new(pid(0x777A)))).await;
    match c.recv().await {
        Packet::PubComp(a) => assert_eq!(a.packet_id.get(), 0x777A),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    assert!(c.sync().await.is_empty(), "connection kept");
}

// ---- §3.14 DISCONNECT ----

#[tokio::test]
async fn mqtt311_3_14_1_1_disconnect_with_reserved_flags_closes_and_publishes_the_will() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "dw/#").await;
    for first in [0xE1u8, 0xE2, 0xE8] {
        let mut c = with_will(&tern, "flagged", "dw/t", &[first]).await;
        c.send_bytes(&[first, 0x00]).await;
        c.expect_closed().await;
        let got = w.recv_publish().await;
        assert_eq!(&got.payload[..], &[first]);
        w.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt311_3_14_4_1_server_closes_on_disconnect() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let sent = Instant::now();
    c.send_bytes(&[0xE0, 0x00]).await;
    // The server closes its side without waiting for the client to close first.
    c.expect_closed().await;
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn mqtt311_3_14_4_2_packets_after_disconnect_are_ignored() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "after/#").await;
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    let mut bytes = vec![0xE0, 0x00];
    bytes.extend(frame(0x31, &[&lp(b"after/t")[..], b"ghost"].concat()));
    bytes.extend(frame(
        0x32,
        &[&lp(b"after/t")[..], &[0, 1], b"ghost"].concat(),
    ));
    bytes.extend([0xC0, 0x00]);
    c.send_bytes(&bytes).await;
    c.expect_closed().await;
    w.expect_nothing().await;
    let mut late = watcher(&tern, "late", "after/#").await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_14_4_3_disconnect_discards_the_will() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "dw/#").await;
    let c = with_will(&tern, "polite", "dw/t", b"unused").await;
    c.disconnect().await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_s3_14_server_never_sends_disconnect() {
    let tern = Tern::start();
    // Session taken over.
    let mut old = RawClient::connect(tern.addr, V311, "same").await;
    let _new = RawClient::connect(tern.addr, V311, "same").await;
    old.expect_closed().await;
    // Protocol error.
    let mut c = RawClient::connect(tern.addr, V311, "bad").await;
    c.send_bytes(&[0xC0, 0x01, 0x00]).await;
    c.expect_closed().await;
    // Keep-alive timeout.
    let mut p = connect_packet(V311, "idle", true);
    p.keep_alive = 1;
    let (mut c, _) = RawClient::connect_with(tern.addr, p).await;
    c.expect_closed().await;
}

// ---- §4.8 Error handling ----

#[tokio::test]
async fn mqtt311_4_8_0_1_protocol_violation_closes_only_that_connection() {
    let tern = Tern::start();
    let (mut bad, _) = persistent(&tern, "bad").await;
    bad.subscribe("err/t", QoS::AtLeastOnce).await;
    let mut good = watcher(&tern, "good", "err/t").await;
    bad.send_bytes(&frame(0x36, &[&lp(b"err/t")[..], &[0, 1]].concat()))
        .await; // QoS 3
    bad.expect_closed().await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("err/t", b"after", QoS::AtLeastOnce, false).await;
    assert_eq!(&good.recv_publish().await.payload[..], b"after");
    // The violator's stored session survives and has the message.
    let (mut bad, present) = persistent(&tern, "bad").await;
    assert!(present);
    assert_eq!(&bad.recv_publish().await.payload[..], b"after");
}

#[tokio::test]
async fn mqtt311_4_8_0_2_packet_beyond_the_limits_closes_the_connection() {
    let tern = Tern::start_config("[mqtt]\nmax_packet_size = 1024\n", "toml");
    let mut w = watcher(&tern, "w", "big/#").await;
    let mut c = with_will(&tern, "big", "big/will", b"too large").await;
    let payload = vec![0u8; 2000];
    c.send_bytes(&frame(0x30, &[&lp(b"big/t")[..], &payload].concat()))
        .await;
    c.expect_closed().await;
    let got = w.recv_publish().await;
    assert_eq!(&got.topic[..], "big/will");
    w.ack(&got).await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_s4_8_one_clients_violation_does_not_affect_others() {
    let tern = Tern::start();
    let mut s = watcher(&tern, "s", "iso/#").await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for (i, bad) in [
        vec![0x00, 0x00],
        vec![0x38, 0x03, 0, 1, b'x'],
        vec![0xF0, 0x00],
    ]
    .into_iter()
    .enumerate()
    {
        let mut v = RawClient::connect(tern.addr, V311, &format!("v{i}")).await;
        v.subscribe("iso/#", QoS::AtLeastOnce).await;
        v.send_bytes(&bad).await;
        v.expect_closed().await;
        p.publish("iso/t", &[i as u8], QoS::ExactlyOnce, false)
            .await;
        let got = s.recv_publish().await;
        assert_eq!(&got.payload[..], &[i as u8]);
        s.ack(&got).await;
    }
}

// ---- §7 Conformance ----

#[tokio::test]
async fn mqtt311_7_1_1_1_tcp_transport_is_ordered_and_lossless() {
    let tern = Tern::start();
    let mut s = watcher(&tern, "s", "tcp/t").await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    let mut bytes = Vec::new();
    for i in 1..=300u16 {
        let payload = vec![(i % 251) as u8; usize::from(i)];
        bytes.extend(frame(
            0x32,
            &[&lp(b"tcp/t")[..], &i.to_be_bytes(), &payload].concat(),
        ));
    }
    p.send_bytes(&bytes).await;
    for i in 1..=300u16 {
        let got = s.recv_publish().await;
        assert_eq!(got.payload.len(), usize::from(i));
        assert!(got.payload.iter().all(|b| *b == (i % 251) as u8));
        s.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt311_7_1_2_1_a_byte_stream_split_anywhere_is_reassembled() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "split/#").await;
    let mut c = RawClient::open(tern.addr, V311).await;
    let mut bytes = common::v3_connect(b"MQTT", 4, 0x02, 60, &lp(b"split"));
    bytes.extend(frame(
        0x82,
        &[&[0u8, 1][..], &lp(b"split/echo"), &[1]].concat(),
    ));
    bytes.extend(frame(
        0x32,
        &[&lp(b"split/t")[..], &[0, 2], b"pieces"].concat(),
    ));
    bytes.extend([0xC0, 0x00]);
    // One byte per write.
    for b in bytes {
        c.send_bytes(&[b]).await;
    }
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    assert!(matches!(c.recv().await, Packet::SubAck(_)));
    assert!(matches!(c.recv().await, Packet::PubAck(a) if a.packet_id.get() == 2));
    assert!(matches!(c.recv().await, Packet::PingResp));
    assert_eq!(&w.recv_publish().await.payload[..], b"pieces");
}

// ---- Interoperability with rumqttc (MQTT 3.1.1) ----

fn rumqttc_options(tern: &Tern, id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, tern.addr.ip().to_string(), tern.addr.port());
    o.set_keep_alive(Duration::from_secs(5));
    o
}

async fn rumqttc_next(el: &mut rumqttc::EventLoop) -> rumqttc::Packet {
    loop {
        let event = tokio::time::timeout(TIMEOUT, el.poll())
            .await
            .expect("rumqttc timeout")
            .expect("rumqttc poll");
        if let rumqttc::Event::Incoming(p) = event {
            return p;
        }
    }
}

async fn rumqttc_connack(el: &mut rumqttc::EventLoop) -> rumqttc::ConnAck {
    match rumqttc_next(el).await {
        rumqttc::Packet::ConnAck(a) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

async fn rumqttc_publish(el: &mut rumqttc::EventLoop) -> rumqttc::Publish {
    loop {
        if let rumqttc::Packet::Publish(p) = rumqttc_next(el).await {
            return p;
        }
    }
}

#[tokio::test]
async fn mqtt311_7_0_0_2_rumqttc_persistent_session_gets_stored_messages() {
    let tern = Tern::start();
    let mut o = rumqttc_options(&tern, "rumq-persist");
    o.set_clean_session(false);
    let (client, mut el) = rumqttc::AsyncClient::new(o.clone(), 10);
    assert!(!rumqttc_connack(&mut el).await.session_present);
    client
        .subscribe("rumq/p", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    assert!(matches!(
        rumqttc_next(&mut el).await,
        rumqttc::Packet::SubAck(_)
    ));
    drop(client);
    drop(el);
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("rumq/p", b"while away", QoS::AtLeastOnce, false)
        .await;
    let (_client, mut el) = rumqttc::AsyncClient::new(o, 10);
    let ack = rumqttc_connack(&mut el).await;
    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
    assert!(ack.session_present);
    let got = rumqttc_publish(&mut el).await;
    assert_eq!(got.topic, "rumq/p");
    assert_eq!(&got.payload[..], b"while away");
    assert_eq!(got.qos, rumqttc::QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt311_3_1_2_8_rumqttc_will_is_published_when_it_vanishes() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "rumq/will").await;
    let mut o = rumqttc_options(&tern, "rumq-will");
    o.set_last_will(rumqttc::LastWill::new(
        "rumq/will",
        "vanished",
        rumqttc::QoS::AtLeastOnce,
        false,
    ));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    rumqttc_connack(&mut el).await;
    drop(client);
    drop(el); // the socket closes without DISCONNECT
    let got = w.recv_publish().await;
    assert_eq!(&got.payload[..], b"vanished");
    assert_eq!(got.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt311_3_1_2_23_rumqttc_keep_alive_pings_keep_the_connection() {
    let tern = Tern::start();
    let mut o = rumqttc_options(&tern, "rumq-ka");
    o.set_keep_alive(Duration::from_secs(1));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    rumqttc_connack(&mut el).await;
    // Drive the event loop for 4 s (> 1.5 × 1 s): rumqttc pings and the broker answers.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout_at(until, el.poll()).await {
            Err(_) => break,
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PingResp))) => pings += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("connection lost: {e}"),
        }
    }
    assert!(pings >= 2, "{pings} PINGRESPs");
    client
        .subscribe("rumq/ka", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    assert!(matches!(
        rumqttc_next(&mut el).await,
        rumqttc::Packet::SubAck(_)
    ));
}

#[tokio::test]
async fn mqtt311_3_3_1_8_rumqttc_retained_message_and_clear() {
    let tern = Tern::start();
    let (client, mut el) = rumqttc::AsyncClient::new(rumqttc_options(&tern, "rumq-ret"), 10);
    rumqttc_connack(&mut el).await;
    client
        .publish("rumq/ret", rumqttc::QoS::ExactlyOnce, true, "stored")
        .await
        .unwrap();
    // Wait for the QoS 2 flow to complete.
    loop {
        if let rumqttc::Packet::PubComp(_) = rumqttc_next(&mut el).await {
            break;
        }
    }
    let (sub, mut sub_el) = rumqttc::AsyncClient::new(rumqttc_options(&tern, "rumq-sub"), 10);
    rumqttc_connack(&mut sub_el).await;
    sub.subscribe("rumq/#", rumqttc::QoS::ExactlyOnce)
        .await
        .unwrap();
    let got = rumqttc_publish(&mut sub_el).await;
    assert!(got.retain);
    assert_eq!(&got.payload[..], b"stored");
    assert_eq!(got.qos, rumqttc::QoS::ExactlyOnce);
    // An empty retained message clears it: later subscribers get nothing.
    client
        .publish("rumq/ret", rumqttc::QoS::AtLeastOnce, true, "")
        .await
        .unwrap();
    loop {
        if let rumqttc::Packet::PubAck(_) = rumqttc_next(&mut el).await {
            break;
        }
    }
    let live = rumqttc_publish(&mut sub_el).await;
    assert!(!live.retain);
    assert!(live.payload.is_empty());
    let mut late = RawClient::connect(tern.addr, V311, "late").await;
    late.subscribe("rumq/#", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_6_clean_session_is_not_resumed_by_a_takeover() {
    let tern = Tern::start();
    let mut old = RawClient::connect(tern.addr, V311, "tk").await;
    old.subscribe("tk/t", QoS::AtLeastOnce).await;
    // Still connected: a CleanSession = 0 connection takes over, but the clean session's state
    // must not be reused.
    let (mut new, present) = persistent(&tern, "tk").await;
    assert!(!present);
    old.expect_closed().await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("tk/t", b"x", QoS::AtLeastOnce, false).await;
    new.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_4_2_takeover_of_a_persistent_session_resumes_it() {
    let tern = Tern::start();
    let (mut old, _) = persistent(&tern, "tp").await;
    old.subscribe("tp/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    p.publish("tp/t", b"unacked", QoS::AtLeastOnce, false).await;
    let first = old.recv_publish().await;
    // The old connection is still open when the new one arrives.
    let (mut new, present) = persistent(&tern, "tp").await;
    assert!(present);
    old.expect_closed().await;
    let again = new.recv_publish().await;
    assert_eq!((again.packet_id, again.dup), (first.packet_id, true));
    new.ack(&again).await;
    p.publish("tp/t", b"next", QoS::AtLeastOnce, false).await;
    assert_eq!(&new.recv_publish().await.payload[..], b"next");
}

#[tokio::test]
async fn mqtt311_4_6_0_1_resent_messages_go_before_queued_ones() {
    let tern = Tern::start_config("[mqtt]\nmax_inflight_messages = 2\n", "toml");
    let (mut s, _) = persistent(&tern, "rq").await;
    s.subscribe("rq/t", QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    for i in 1..=5u8 {
        p.publish("rq/t", &[i], QoS::AtLeastOnce, false).await;
    }
    // Two in flight, three waiting behind the window.
    let inflight = recv_publishes(&mut s, 2).await;
    s.expect_nothing().await;
    drop(s);
    let (mut s, _) = persistent(&tern, "rq").await;
    let mut order = Vec::new();
    for _ in 0..5 {
        let got = s.recv_publish().await;
        order.push((got.payload[0], got.dup));
        s.ack(&got).await;
    }
    assert_eq!(
        order,
        vec![(1, true), (2, true), (3, false), (4, false), (5, false)]
    );
    assert_eq!(inflight[0].payload[0], 1);
}
