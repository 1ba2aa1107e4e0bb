//! MQTT 3.1.1 conformance, connection level: data representation (§1.5), fixed header (§2.2),
//! CONNECT (§3.1), CONNACK (§3.2), keep-alive and wills, each test named after the statement
//! of `/work/shared/spec/mqtt-v311-server-checklist.md` it checks. The real `tern` binary is
//! started for each test; malformed input is sent as raw bytes, and the 3.1.1 reaction to it is
//! a close without any answer (MQTT-4.8.0-1).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::{RawClient, Tern, V311, connect_packet, frame, lp, recv_raw_frame, v3_connect, will};
use tern_codec::{Packet, QoS, ReasonCode};

/// A 3.1.1 CONNECT with the given flags and raw payload, keep-alive 60 s.
fn connect_bytes(flags: u8, payload: &[u8]) -> Vec<u8> {
    v3_connect(b"MQTT", 4, flags, 60, payload)
}

/// Concatenates byte fields.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Opens a connection, sends `bytes` as the first thing, and asserts the server closes the
/// connection without sending anything (no CONNACK).
async fn assert_refused_silently(tern: &Tern, bytes: &[u8]) {
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(bytes).await;
    c.expect_closed().await;
}

/// Connects a 3.1.1 client, sends `bytes`, and asserts the close with nothing sent.
async fn assert_closes_connected(tern: &Tern, bytes: &[u8]) {
    let mut c = RawClient::connect(tern.addr, V311, "violator").await;
    c.send_bytes(bytes).await;
    c.expect_closed().await;
}

/// Opens a connection, sends `bytes`, and asserts the exact CONNACK bytes followed by the close.
async fn assert_connack_then_close(tern: &Tern, bytes: &[u8], connack: [u8; 4]) {
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(bytes).await;
    assert_eq!(recv_raw_frame(&mut c).await, Some(connack.to_vec()));
    assert_eq!(recv_raw_frame(&mut c).await, None, "closed after CONNACK");
}

/// A client subscribed to `filter` at QoS 2.
async fn watcher(tern: &Tern, id: &str, filter: &str) -> RawClient {
    let mut w = RawClient::connect(tern.addr, V311, id).await;
    assert_eq!(
        w.subscribe(filter, QoS::ExactlyOnce).await,
        vec![ReasonCode::GRANTED_QOS_2]
    );
    w
}

/// A 3.1.1 client with a Will (`topic`, `payload`, QoS 1, `retain`) and the given keep-alive.
async fn with_will(
    tern: &Tern,
    id: &str,
    topic: &str,
    payload: &[u8],
    retain: bool,
    keep_alive: u16,
) -> RawClient {
    let mut p = connect_packet(V311, id, true);
    p.will = Some(will(topic, payload, QoS::AtLeastOnce, retain));
    p.keep_alive = keep_alive;
    let (c, ack) = RawClient::connect_with(tern.addr, p).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c
}

/// Receives the next PUBLISH, acknowledges it and checks topic, payload and RETAIN.
async fn expect_message(c: &mut RawClient, topic: &str, payload: &[u8], retain: bool) {
    let p = c.recv_publish().await;
    assert_eq!(&p.topic[..], topic);
    assert_eq!(&p.payload[..], payload);
    assert_eq!(p.retain, retain, "RETAIN flag");
    c.ack(&p).await;
}

// ---- §1.5 Data representation ----

#[tokio::test]
async fn mqtt311_1_5_3_1_ill_formed_client_id_closes_without_connack() {
    let tern = Tern::start();
    // C3 28: a lead byte followed by a non-continuation byte.
    assert_refused_silently(&tern, &connect_bytes(0x02, &lp(&[0xC3, 0x28]))).await;
}

#[tokio::test]
async fn mqtt311_1_5_3_1_surrogate_code_point_in_topic_closes() {
    let tern = Tern::start();
    // ED A0 80 would encode U+D800, a surrogate.
    let body = cat(&[&lp(&[b'a', b'/', 0xED, 0xA0, 0x80]), b"x"]);
    assert_closes_connected(&tern, &frame(0x30, &body)).await;
}

#[tokio::test]
async fn mqtt311_1_5_3_2_nul_in_client_id_closes_without_connack() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x02, &lp(b"a\0b"))).await;
}

#[tokio::test]
async fn mqtt311_1_5_3_2_nul_in_topic_closes() {
    let tern = Tern::start();
    let body = cat(&[&lp(b"a/\0"), b"x"]);
    assert_closes_connected(&tern, &frame(0x30, &body)).await;
}

#[tokio::test]
async fn mqtt311_1_5_3_3_byte_order_mark_is_kept_in_topics() {
    let tern = Tern::start();
    let topic = "bom/\u{FEFF}x";
    let mut with_bom = watcher(&tern, "with-bom", topic).await;
    let mut without = watcher(&tern, "without-bom", "bom/x").await;
    let mut p = RawClient::connect(tern.addr, V311, "pub").await;
    // Raw bytes, so that the BOM is exactly EF BB BF on the wire.
    let body = cat(&[&lp(b"bom/\xEF\xBB\xBFx"), b"hi"]);
    p.send_bytes(&frame(0x30, &body)).await;
    let got = with_bom.recv_publish().await;
    assert_eq!(&got.topic.as_bytes()[..], b"bom/\xEF\xBB\xBFx");
    assert_eq!(&got.payload[..], b"hi");
    without.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_s1_5_3_control_characters_and_non_characters_are_forwarded() {
    // Documented policy: only ill-formed UTF-8 and U+0000 are refused; other control
    // characters and non-characters are accepted and forwarded unchanged.
    let tern = Tern::start();
    let topic = "ctl/\u{1}\u{1F}\u{7F}\u{9F}\u{FFFF}";
    let mut w = watcher(&tern, "w", "ctl/#").await;
    let mut p = RawClient::connect(tern.addr, V311, "ctl\u{7}pub").await;
    p.publish(topic, b"\x01", QoS::AtLeastOnce, false).await;
    let got = w.recv_publish().await;
    assert_eq!(&got.topic[..], topic);
    assert_eq!(&got.payload[..], b"\x01");
}

#[tokio::test]
async fn mqtt311_s1_5_3_string_length_past_the_packet_closes() {
    let tern = Tern::start();
    // Topic length 10, only 3 bytes follow.
    assert_closes_connected(&tern, &frame(0x30, &[0x00, 0x0A, b'a', b'b', b'c'])).await;
    // Same in CONNECT: the client id claims 200 bytes.
    assert_refused_silently(&tern, &connect_bytes(0x02, &[0x00, 200, b'a'])).await;
}

#[tokio::test]
async fn mqtt311_s1_5_2_sixteen_bit_integers_are_big_endian() {
    let tern = Tern::start();
    let mut c = RawClient::connect(tern.addr, V311, "be").await;
    // QoS 1 PUBLISH with packet id 0x0102: the PUBACK carries 01 02 in that order.
    let body = cat(&[&lp(b"be/t"), &[0x01, 0x02], b"x"]);
    c.send_bytes(&frame(0x32, &body)).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x40, 0x02, 0x01, 0x02])
    );
    // A topic length of 0x0104 (260) is read MSB first.
    let topic = vec![b'a'; 260];
    let mut w = watcher(&tern, "w", "#").await;
    let body = cat(&[&[0x01, 0x04], &topic, b"p"]);
    c.send_bytes(&frame(0x30, &body)).await;
    let got = w.recv_publish().await;
    assert_eq!(got.topic.len(), 260);
    assert_eq!(&got.payload[..], b"p");
}

// ---- §2.2 Fixed header ----

#[tokio::test]
async fn mqtt311_s2_2_1_reserved_packet_type_0_closes() {
    let tern = Tern::start();
    assert_closes_connected(&tern, &[0x00, 0x00]).await;
    assert_refused_silently(&tern, &[0x00, 0x00]).await;
}

#[tokio::test]
async fn mqtt311_s2_2_1_reserved_packet_type_15_closes() {
    let tern = Tern::start();
    assert_closes_connected(&tern, &[0xF0, 0x00]).await;
    // With what would be a valid MQTT 5 AUTH body, too.
    assert_closes_connected(&tern, &[0xF0, 0x02, 0x00, 0x00]).await;
}

#[tokio::test]
async fn mqtt311_s2_2_1_server_to_client_packets_from_a_client_close() {
    let tern = Tern::start();
    for bytes in [
        vec![0x20, 0x02, 0x00, 0x00],       // CONNACK
        vec![0x90, 0x03, 0x00, 0x01, 0x00], // SUBACK
        vec![0xB0, 0x02, 0x00, 0x01],       // UNSUBACK
        vec![0xD0, 0x00],                   // PINGRESP
    ] {
        assert_closes_connected(&tern, &bytes).await;
    }
}

#[tokio::test]
async fn mqtt311_2_2_2_1_server_packets_carry_the_table_a_flags() {
    let tern = Tern::start();
    let mut s = RawClient::open(tern.addr, V311).await;
    s.send_bytes(&connect_bytes(0x02, &lp(b"flags-sub"))).await;
    assert_eq!(recv_raw_frame(&mut s).await.unwrap()[0], 0x20, "CONNACK");
    let sub = cat(&[&[0x00, 0x07], &lp(b"f/t"), &[0x02]]);
    s.send_bytes(&frame(0x82, &sub)).await;
    assert_eq!(recv_raw_frame(&mut s).await.unwrap()[0], 0x90, "SUBACK");
    s.send_bytes(&[0xC0, 0x00]).await;
    assert_eq!(recv_raw_frame(&mut s).await.unwrap(), vec![0xD0, 0x00]);

    let mut p = RawClient::connect(tern.addr, V311, "flags-pub").await;
    let body = cat(&[&lp(b"f/t"), &[0x00, 0x05], b"q1"]);
    p.send_bytes(&frame(0x32, &body)).await;
    assert_eq!(recv_raw_frame(&mut p).await.unwrap()[0], 0x40, "PUBACK");
    let body = cat(&[&lp(b"f/t"), &[0x00, 0x06], b"q2"]);
    p.send_bytes(&frame(0x34, &body)).await;
    assert_eq!(recv_raw_frame(&mut p).await.unwrap()[0], 0x50, "PUBREC");
    p.send_bytes(&[0x62, 0x02, 0x00, 0x06]).await;
    assert_eq!(recv_raw_frame(&mut p).await.unwrap()[0], 0x70, "PUBCOMP");

    // Deliveries: QoS 1 then QoS 2, DUP 0 and RETAIN 0 on a live subscription.
    let q1 = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(q1[0], 0x32, "QoS 1 PUBLISH");
    let q1_id = [q1[7], q1[8]];
    let q2 = recv_raw_frame(&mut s).await.unwrap();
    assert_eq!(q2[0], 0x34, "QoS 2 PUBLISH");
    let q2_id = [q2[7], q2[8]];
    s.send_bytes(&[0x40, 0x02, q1_id[0], q1_id[1]]).await;
    s.send_bytes(&[0x50, 0x02, q2_id[0], q2_id[1]]).await;
    assert_eq!(
        recv_raw_frame(&mut s).await.unwrap(),
        vec![0x62, 0x02, q2_id[0], q2_id[1]],
        "PUBREL is 0110 0010"
    );
    s.send_bytes(&[0x70, 0x02, q2_id[0], q2_id[1]]).await;
    let unsub = cat(&[&[0x00, 0x08], &lp(b"f/t")]);
    s.send_bytes(&frame(0xA2, &unsub)).await;
    assert_eq!(
        recv_raw_frame(&mut s).await.unwrap(),
        vec![0xB0, 0x02, 0x00, 0x08]
    );
}

#[tokio::test]
async fn mqtt311_2_2_2_2_invalid_fixed_header_flags_close() {
    let tern = Tern::start();
    for bytes in [
        vec![0x41, 0x02, 0x00, 0x01], // PUBACK with 0001
        vec![0x52, 0x02, 0x00, 0x01], // PUBREC with 0010
        vec![0x60, 0x02, 0x00, 0x01], // PUBREL with 0000
        vec![0x78, 0x02, 0x00, 0x01], // PUBCOMP with 1000
        vec![0xC1, 0x00],             // PINGREQ with 0001
        vec![0xE4, 0x00],             // DISCONNECT with 0100
        frame(0x80, &cat(&[&[0x00, 0x01], &lp(b"a"), &[0x00]])), // SUBSCRIBE with 0000
        frame(0xA0, &cat(&[&[0x00, 0x01], &lp(b"a")])), // UNSUBSCRIBE with 0000
    ] {
        assert_closes_connected(&tern, &bytes).await;
    }
    // CONNECT with flags 0001 as the first packet.
    let mut bad = connect_bytes(0x02, &lp(b"c"));
    bad[0] = 0x11;
    assert_refused_silently(&tern, &bad).await;
}

#[tokio::test]
async fn mqtt311_s2_2_3_fifth_remaining_length_byte_closes() {
    let tern = Tern::start();
    assert_closes_connected(&tern, &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    assert_refused_silently(&tern, &[0x10, 0x80, 0x80, 0x80, 0x80, 0x01]).await;
}

#[tokio::test]
async fn mqtt311_s2_2_3_fields_not_fitting_the_remaining_length_close() {
    let tern = Tern::start();
    // QoS 1 PUBLISH whose Remaining Length ends before the packet identifier.
    assert_closes_connected(&tern, &frame(0x32, &lp(b"ab"))).await;
    // CONNECT cut off inside the variable header.
    assert_refused_silently(&tern, &frame(0x10, &cat(&[&lp(b"MQTT"), &[4, 2]]))).await;
}

#[tokio::test]
async fn mqtt311_s2_2_3_remaining_length_of_two_and_three_bytes() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "len/#").await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for size in [200usize, 20_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let frame = frame(0x30, &cat(&[&lp(b"len/x"), &payload]));
        assert_eq!(frame[1] & 0x80, 0x80, "multi-byte remaining length");
        p.send_bytes(&frame).await;
        let got = w.recv_publish().await;
        assert_eq!(&got.payload[..], &payload[..]);
    }
}

#[tokio::test]
async fn mqtt311_s2_2_3_fixed_size_packets_with_other_lengths_close() {
    let tern = Tern::start();
    for bytes in [
        vec![0x40, 0x03, 0x00, 0x01, 0x00], // PUBACK, length 3
        vec![0x50, 0x01, 0x00],             // PUBREC, length 1
        vec![0x62, 0x03, 0x00, 0x01, 0x00], // PUBREL, length 3
        vec![0x70, 0x00],                   // PUBCOMP, length 0
        vec![0xC0, 0x01, 0x00],             // PINGREQ, length 1
        vec![0xE0, 0x01, 0x00],             // DISCONNECT, length 1
    ] {
        assert_closes_connected(&tern, &bytes).await;
    }
}

// ---- §3.1 CONNECT ----

#[tokio::test]
async fn mqtt311_3_1_0_1_first_packet_other_than_connect_closes() {
    let tern = Tern::start();
    for bytes in [
        vec![0xC0, 0x00],                               // PINGREQ
        frame(0x30, &cat(&[&lp(b"a"), b"x"])),          // PUBLISH
        frame(0x82, &cat(&[&[0, 1], &lp(b"a"), &[0]])), // SUBSCRIBE
        vec![0xE0, 0x00],                               // DISCONNECT
    ] {
        assert_refused_silently(&tern, &bytes).await;
    }
}

#[tokio::test]
async fn mqtt311_3_1_0_2_second_connect_closes_the_connection() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "second/#").await;
    let mut c = with_will(&tern, "twice", "second/will", b"bye", false, 60).await;
    c.send_bytes(&connect_bytes(0x02, &lp(b"twice"))).await;
    c.expect_closed().await;
    // A protocol violation: the Will goes out (§3.1.2.5).
    expect_message(&mut w, "second/will", b"bye", false).await;
}

#[tokio::test]
async fn mqtt311_s3_1_4_no_connect_within_the_connect_timeout_closes() {
    let tern = Tern::start_config("[mqtt]\nconnect_timeout = 1\n", "toml");
    let started = Instant::now();
    let mut c = RawClient::open(tern.addr, V311).await;
    c.expect_closed().await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn mqtt311_3_1_2_1_unknown_protocol_name_closes_without_connack() {
    let tern = Tern::start();
    for name in [&b"MQTX"[..], b"mqtt", b"", b"MQTT\0", b"MQIsdP"] {
        assert_refused_silently(&tern, &v3_connect(name, 4, 0x02, 60, &lp(b"c"))).await;
    }
}

#[tokio::test]
async fn mqtt311_3_1_2_2_unsupported_protocol_level_gets_return_code_1() {
    let tern = Tern::start();
    // 0x84 is 3.1.1 from a bridge (Mosquitto's `try_private`): see bridge_protocol.rs.
    for level in [0u8, 1, 2, 3, 6, 0x85, 255] {
        let bytes = v3_connect(b"MQTT", level, 0x02, 60, &lp(b"c"));
        assert_connack_then_close(&tern, &bytes, [0x20, 0x02, 0x00, 0x01]).await;
    }
}

#[tokio::test]
async fn mqtt311_3_1_2_3_reserved_connect_flag_closes() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x03, &lp(b"c"))).await;
    assert_refused_silently(&tern, &connect_bytes(0x01, &lp(b"c"))).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_8_will_published_when_the_connection_drops() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let c = with_will(&tern, "dropper", "will/8", b"gone", false, 60).await;
    drop(c);
    let p = w.recv_publish().await;
    assert_eq!(&p.topic[..], "will/8");
    assert_eq!(&p.payload[..], b"gone");
    assert_eq!(p.qos, QoS::AtLeastOnce, "Will QoS");
    assert!(!p.retain);
    w.ack(&p).await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_s3_1_2_5_will_published_on_network_failure() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let mut c = with_will(&tern, "half", "will/net", b"lost", false, 60).await;
    // Half a PUBLISH, then the connection is gone.
    c.send_bytes(&[0x30, 0x10, 0x00]).await;
    drop(c);
    expect_message(&mut w, "will/net", b"lost", false).await;
}

#[tokio::test]
async fn mqtt311_s3_1_2_5_will_published_on_keep_alive_timeout() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let mut c = with_will(&tern, "sleepy", "will/ka", b"timeout", false, 1).await;
    c.expect_closed().await;
    expect_message(&mut w, "will/ka", b"timeout", false).await;
}

#[tokio::test]
async fn mqtt311_s3_1_2_5_will_published_on_protocol_error() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let mut c = with_will(&tern, "bad", "will/err", b"violation", false, 60).await;
    c.send_bytes(&frame(0x36, &cat(&[&lp(b"x"), &[0, 1]])))
        .await; // QoS 3
    c.expect_closed().await;
    expect_message(&mut w, "will/err", b"violation", false).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_9_will_flag_without_will_topic_and_message_closes() {
    let tern = Tern::start();
    // Will Flag, no Will Topic at all.
    assert_refused_silently(&tern, &connect_bytes(0x06, &lp(b"c"))).await;
    // Will Topic but no Will Message.
    let payload = cat(&[&lp(b"c"), &lp(b"w/t")]);
    assert_refused_silently(&tern, &connect_bytes(0x06, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_10_will_is_removed_once_published() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let mut p = connect_packet(V311, "w10", false);
    p.will = Some(will("will/10", b"once", QoS::AtLeastOnce, false));
    let (c, _) = RawClient::connect_with(tern.addr, p).await;
    drop(c);
    expect_message(&mut w, "will/10", b"once", false).await;
    // The session is resumed without a Will: dropping again publishes nothing.
    let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "w10", false)).await;
    assert!(ack.session_present);
    drop(c);
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_10_will_is_removed_on_disconnect() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let mut p = connect_packet(V311, "w10b", false);
    p.will = Some(will("will/10b", b"never", QoS::AtLeastOnce, false));
    let (c, _) = RawClient::connect_with(tern.addr, p).await;
    c.disconnect().await;
    let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "w10b", false)).await;
    assert!(ack.session_present);
    drop(c);
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_11_will_fields_without_will_flag_close() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x02 | 0x08, &lp(b"c"))).await; // QoS 1
    assert_refused_silently(&tern, &connect_bytes(0x02 | 0x20, &lp(b"c"))).await; // retain
    // Will Topic and Message present although the flag is 0.
    let payload = cat(&[&lp(b"c"), &lp(b"w/t"), &lp(b"m")]);
    assert_refused_silently(&tern, &connect_bytes(0x02, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_12_no_will_without_will_flag() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "#").await;
    let c = RawClient::connect(tern.addr, V311, "nowill").await;
    drop(c);
    let mut c = RawClient::connect(tern.addr, V311, "nowill2").await;
    c.send_bytes(&[0x00, 0x00]).await; // protocol error
    c.expect_closed().await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_13_will_qos_without_will_flag_closes() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x02 | 0x10, &lp(b"c"))).await; // QoS 2
}

#[tokio::test]
async fn mqtt311_3_1_2_14_will_qos_3_closes() {
    let tern = Tern::start();
    let payload = cat(&[&lp(b"c"), &lp(b"w/t"), &lp(b"m")]);
    assert_refused_silently(&tern, &connect_bytes(0x02 | 0x04 | 0x18, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_15_will_retain_without_will_flag_closes() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x22, &lp(b"c"))).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_16_will_retain_0_is_published_non_retained() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let c = with_will(&tern, "nr", "will/16", b"plain", false, 60).await;
    drop(c);
    expect_message(&mut w, "will/16", b"plain", false).await;
    let mut late = watcher(&tern, "late", "will/#").await;
    late.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_2_17_will_retain_1_is_published_retained() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let c = with_will(&tern, "r", "will/17", b"kept", true, 60).await;
    drop(c);
    // An established subscription gets RETAIN 0 (MQTT-3.3.1-9)...
    expect_message(&mut w, "will/17", b"kept", false).await;
    // ...and the message is now the topic's retained message.
    let mut late = watcher(&tern, "late", "will/#").await;
    let p = late.recv_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..], p.retain, p.qos),
        ("will/17", &b"kept"[..], true, QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn mqtt311_3_1_2_18_user_name_without_its_flag_closes() {
    let tern = Tern::start();
    let payload = cat(&[&lp(b"c"), &lp(b"user")]);
    assert_refused_silently(&tern, &connect_bytes(0x02, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_19_user_name_flag_without_user_name_closes() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x82, &lp(b"c"))).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_20_password_without_its_flag_closes() {
    let tern = Tern::start();
    let payload = cat(&[&lp(b"c"), &lp(b"user"), &lp(b"secret")]);
    assert_refused_silently(&tern, &connect_bytes(0x82, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_21_password_flag_without_password_closes() {
    let tern = Tern::start();
    let payload = cat(&[&lp(b"c"), &lp(b"user")]);
    assert_refused_silently(&tern, &connect_bytes(0xC2, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_22_password_flag_without_user_name_flag_closes() {
    let tern = Tern::start();
    let payload = cat(&[&lp(b"c"), &lp(b"secret")]);
    assert_refused_silently(&tern, &connect_bytes(0x42, &payload)).await;
    // With both fields present but only the Password Flag set.
    let payload = cat(&[&lp(b"c"), &lp(b"user"), &lp(b"secret")]);
    assert_refused_silently(&tern, &connect_bytes(0x42, &payload)).await;
}

#[tokio::test]
async fn mqtt311_3_1_2_23_any_packet_within_keep_alive_keeps_the_connection() {
    let tern = Tern::start();
    let mut p = connect_packet(V311, "busy", true);
    p.keep_alive = 2;
    let (mut c, _) = RawClient::connect_with(tern.addr, p).await;
    // 4.5 s of traffic every 500 ms, well past 1.5 × 2 s: PINGREQ and PUBLISH both count.
    for i in 0..9 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if i % 2 == 0 {
            c.send(&Packet::Publish(common::publish(
                "busy/t",
                b"x",
                QoS::AtMostOnce,
                false,
                None,
            )))
            .await;
        } else {
            assert!(c.sync().await.is_empty());
        }
    }
    assert!(c.sync().await.is_empty(), "still connected");
}

#[tokio::test]
async fn mqtt311_3_1_2_24_keep_alive_expiry_closes_after_one_and_a_half_times() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "will/#").await;
    let started = Instant::now();
    let mut c = with_will(&tern, "idle", "will/24", b"expired", false, 1).await;
    c.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}, before 1.5 × Keep Alive"
    );
    expect_message(&mut w, "will/24", b"expired", false).await;
}

#[tokio::test]
async fn mqtt311_s3_1_2_10_keep_alive_0_disables_the_timeout() {
    let tern = Tern::start();
    let mut p = connect_packet(V311, "forever", true);
    p.keep_alive = 0;
    let (mut c, _) = RawClient::connect_with(tern.addr, p).await;
    // Silent for longer than 1.5 × the smallest non-zero keep-alive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(c.sync().await.is_empty(), "still connected");
}

#[tokio::test]
async fn mqtt311_3_1_3_1_payload_fields_are_read_in_order() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "order/#").await;
    // Client id, Will Topic, Will Message, User Name, Password; Will QoS 1.
    let flags = 0x80 | 0x40 | 0x08 | 0x04 | 0x02;
    let payload = cat(&[
        &lp(b"ordered"),
        &lp(b"order/will"),
        &lp(b"will-message"),
        &lp(b"user"),
        &lp(b"pass"),
    ]);
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&connect_bytes(flags, &payload)).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x20, 0x02, 0x00, 0x00])
    );
    drop(c);
    let p = w.recv_publish().await;
    assert_eq!(&p.topic[..], "order/will");
    assert_eq!(&p.payload[..], b"will-message");
    assert_eq!(p.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt311_3_1_3_2_client_id_identifies_the_session() {
    let tern = Tern::start();
    let (mut a, ack) =
        RawClient::connect_with(tern.addr, connect_packet(V311, "keyA", false)).await;
    assert!(!ack.session_present);
    a.subscribe("key/a", QoS::AtLeastOnce).await;
    a.disconnect().await;
    let (b, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "keyB", false)).await;
    assert!(!ack.session_present, "another id has no session");
    b.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("key/a", b"for A", QoS::AtLeastOnce, false).await;
    let (mut b, ack) =
        RawClient::connect_with(tern.addr, connect_packet(V311, "keyB", false)).await;
    assert!(ack.session_present);
    b.expect_nothing().await;
    let (mut a, ack) =
        RawClient::connect_with(tern.addr, connect_packet(V311, "keyA", false)).await;
    assert!(ack.session_present);
    assert_eq!(&a.recv_publish().await.payload[..], b"for A");
}

#[tokio::test]
async fn mqtt311_3_1_3_3_connect_without_client_id_closes() {
    let tern = Tern::start();
    assert_refused_silently(&tern, &connect_bytes(0x02, &[])).await;
    // One byte of a length field.
    assert_refused_silently(&tern, &connect_bytes(0x02, &[0x00])).await;
}

#[tokio::test]
async fn mqtt311_3_1_3_4_client_id_must_be_valid_utf8() {
    let tern = Tern::start();
    for bad in [
        &[0x80u8][..],
        &[0xC0, 0xAF],
        &[b'a', 0xFF],
        &[0xED, 0xBF, 0xBF],
    ] {
        assert_refused_silently(&tern, &connect_bytes(0x02, &lp(bad))).await;
    }
}

#[tokio::test]
async fn mqtt311_3_1_3_5_client_ids_of_1_to_23_alphanumerics_and_longer_are_accepted() {
    let tern = Tern::start();
    let long = "x".repeat(300);
    for id in [
        "a",
        "Z",
        "0",
        "abcdefghijklmnopqrstuvw",
        "0123456789ABCDEFGHIJKLM",
        long.as_str(),
        "with-dash_under/slash:colon é",
    ] {
        let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, id, true)).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "client id {id:?}");
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt311_3_1_3_6_zero_length_client_id_gets_a_unique_id() {
    let tern = Tern::start();
    let (mut a, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "", true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    a.subscribe("anon/a", QoS::AtMostOnce).await;
    let (mut b, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "", true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    b.subscribe("anon/b", QoS::AtMostOnce).await;
    // Two distinct sessions: neither took the other over, each gets only its own messages.
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("anon/a", b"A", QoS::AtLeastOnce, false).await;
    p.publish("anon/b", b"B", QoS::AtLeastOnce, false).await;
    assert_eq!(&a.recv_publish().await.payload[..], b"A");
    assert_eq!(&b.recv_publish().await.payload[..], b"B");
    a.expect_nothing().await;
    b.expect_nothing().await;
}

#[tokio::test]
async fn mqtt311_3_1_3_7_zero_length_client_id_needs_clean_session() {
    let tern = Tern::start();
    assert_connack_then_close(&tern, &connect_bytes(0x00, &lp(b"")), [0x20, 2, 0, 0x02]).await;
}

#[tokio::test]
async fn mqtt311_3_1_3_8_zero_length_id_with_clean_session_0_gets_return_code_2() {
    let tern = Tern::start();
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "", false)).await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    assert!(!ack.session_present);
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt311_3_1_3_9_rejected_client_id_gets_return_code_2() {
    let tern = Tern::start_config("[mqtt]\nallow_zero_length_clientid = false\n", "toml");
    assert_connack_then_close(&tern, &connect_bytes(0x02, &lp(b"")), [0x20, 2, 0, 0x02]).await;
}

#[tokio::test]
async fn mqtt311_3_1_3_10_will_topic_must_be_valid_utf8_without_wildcards() {
    let tern = Tern::start();
    for topic in [&[b'w', 0xC3][..], b"w/\0", b"w/+", b"w/#", b""] {
        let payload = cat(&[&lp(b"c"), &lp(topic), &lp(b"m")]);
        assert_refused_silently(&tern, &connect_bytes(0x06, &payload)).await;
    }
}

#[tokio::test]
async fn mqtt311_3_1_3_11_user_name_must_be_valid_utf8() {
    let tern = Tern::start();
    let payload = cat(&[&lp(b"c"), &lp(&[b'u', 0xFE])]);
    assert_refused_silently(&tern, &connect_bytes(0x82, &payload)).await;
}

#[tokio::test]
async fn mqtt311_s3_1_3_3_will_message_and_password_are_binary() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "bin/#").await;
    let message = [0x00, 0xFF, 0xC3, 0x28, 0xED, 0xA0, 0x80];
    let payload = cat(&[
        &lp(b"binary"),
        &lp(b"bin/will"),
        &lp(&message),
        &lp(b"user"),
        &lp(&[0xFF, 0x00, 0xFE]),
    ]);
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&connect_bytes(0xC0 | 0x04 | 0x02, &payload))
        .await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x20, 0x02, 0x00, 0x00])
    );
    drop(c);
    let p = w.recv_publish().await;
    assert_eq!(&p.payload[..], &message);
}

// ---- §3.1.4 Response ----

#[tokio::test]
async fn mqtt311_3_1_4_1_malformed_connect_is_closed_without_connack() {
    let tern = Tern::start();
    // Bytes left over after the last flagged field.
    let payload = cat(&[&lp(b"c"), b"\x00"]);
    assert_refused_silently(&tern, &connect_bytes(0x02, &payload)).await;
    // Keep alive cut in half.
    let body = cat(&[&lp(b"MQTT"), &[4, 2, 0]]);
    assert_refused_silently(&tern, &frame(0x10, &body)).await;
    // No protocol level at all.
    assert_refused_silently(&tern, &frame(0x10, &lp(b"MQTT"))).await;
}

#[tokio::test]
async fn mqtt311_s3_1_4_refused_authentication_gets_return_code_5_or_4() {
    let tern = Tern::start_config("allow_anonymous = false\n", "toml");
    // No user name: not authorized.
    assert_connack_then_close(
        &tern,
        &connect_bytes(0x02, &lp(b"anon")),
        [0x20, 2, 0, 0x05],
    )
    .await;
    // A user name that cannot be checked: bad user name or password.
    let payload = cat(&[&lp(b"named"), &lp(b"user"), &lp(b"pw")]);
    assert_connack_then_close(&tern, &connect_bytes(0xC2, &payload), [0x20, 2, 0, 0x04]).await;
}

#[tokio::test]
async fn mqtt311_3_1_4_2_same_client_id_closes_the_existing_connection() {
    let tern = Tern::start();
    let mut w = watcher(&tern, "w", "takeover/#").await;
    let mut first = with_will(&tern, "dup", "takeover/will", b"old", false, 60).await;
    let mut second = RawClient::connect(tern.addr, V311, "dup").await;
    // 3.1.1 has no server DISCONNECT: the old connection is just closed.
    first.expect_closed().await;
    expect_message(&mut w, "takeover/will", b"old", false).await;
    assert!(second.sync().await.is_empty(), "the new connection works");
}

#[tokio::test]
async fn mqtt311_3_1_4_3_clean_session_is_applied_after_validation() {
    let tern = Tern::start();
    let (mut c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "cs", false)).await;
    c.subscribe("cs/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("cs/t", b"queued", QoS::AtLeastOnce, false).await;
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "cs", true)).await;
    assert!(!ack.session_present);
    c.expect_nothing().await; // the queued message went with the old session
    p.publish("cs/t", b"after", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await; // and so did the subscription
}

#[tokio::test]
async fn mqtt311_3_1_4_4_connack_0_then_delivery_starts() {
    let tern = Tern::start();
    let (mut c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "d", false)).await;
    c.subscribe("d/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    p.publish("d/t", b"waiting", QoS::AtLeastOnce, false).await;
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&connect_bytes(0x00, &lp(b"d"))).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x20, 0x02, 0x01, 0x00])
    );
    let got = c.recv_publish().await;
    assert_eq!(&got.payload[..], b"waiting");
}

#[tokio::test]
async fn mqtt311_3_1_4_5_packets_after_a_refused_connect_are_not_processed() {
    let tern = Tern::start();
    let retained = frame(0x31, &cat(&[&lp(b"pipe/t"), b"must not be kept"]));
    // Refused with 0x02 (empty id, clean session 0) and with 0x01 (protocol level).
    for connect in [
        connect_bytes(0x00, &lp(b"")),
        v3_connect(b"MQTT", 3, 0x02, 60, &lp(b"c")),
    ] {
        let mut c = RawClient::open(tern.addr, V311).await;
        let mut bytes = connect;
        bytes.extend_from_slice(&retained);
        bytes.extend_from_slice(&[0xC0, 0x00]);
        c.send_bytes(&bytes).await;
        let ack = recv_raw_frame(&mut c).await.expect("CONNACK");
        assert_ne!(ack[3], 0, "refused");
        assert_eq!(recv_raw_frame(&mut c).await, None, "no PINGRESP, closed");
    }
    let mut w = watcher(&tern, "w", "pipe/#").await;
    w.expect_nothing().await;
}

// ---- §3.2 CONNACK ----

#[tokio::test]
async fn mqtt311_3_2_0_1_first_packet_from_the_server_is_connack() {
    let tern = Tern::start();
    let (mut c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "first", false)).await;
    c.subscribe("first/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = RawClient::connect(tern.addr, V311, "p").await;
    for i in 0..3u8 {
        p.publish("first/t", &[i], QoS::AtLeastOnce, false).await;
    }
    // Messages are waiting, and the CONNECT is followed at once by a PINGREQ: CONNACK first.
    let mut c = RawClient::open(tern.addr, V311).await;
    let mut bytes = connect_bytes(0x00, &lp(b"first"));
    bytes.extend_from_slice(&[0xC0, 0x00]);
    c.send_bytes(&bytes).await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[0], 0x20);
}

#[tokio::test]
async fn mqtt311_s3_2_2_1_connack_flags_bits_7_to_1_are_zero() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&connect_bytes(0x00, &lp(b"flags"))).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x20, 0x02, 0x00, 0x00])
    );
    c.send_bytes(&[0xE0, 0x00]).await;
    assert_eq!(recv_raw_frame(&mut c).await, None);
    let mut c = RawClient::open(tern.addr, V311).await;
    c.send_bytes(&connect_bytes(0x00, &lp(b"flags"))).await;
    assert_eq!(
        recv_raw_frame(&mut c).await,
        Some(vec![0x20, 0x02, 0x01, 0x00])
    );
}

#[tokio::test]
async fn mqtt311_3_2_2_1_clean_session_1_gets_session_present_0() {
    let tern = Tern::start();
    let (mut c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp1", false)).await;
    c.subscribe("sp1/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    // A stored session exists, but CleanSession = 1 discards it.
    let (_c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp1", true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
}

#[tokio::test]
async fn mqtt311_3_2_2_2_resumed_session_gets_session_present_1() {
    let tern = Tern::start();
    let (c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp2", false)).await;
    c.disconnect().await;
    let (c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp2", false)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present);
    // And again after a dropped (not DISCONNECTed) connection.
    drop(c);
    let (_c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp2", false)).await;
    assert!(ack.session_present);
}

#[tokio::test]
async fn mqtt311_3_2_2_3_new_persistent_session_gets_session_present_0() {
    let tern = Tern::start();
    let (_c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp3", false)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(!ack.session_present);
    // A clean-session connection leaves nothing behind either.
    let c = RawClient::connect(tern.addr, V311, "sp3b").await;
    c.disconnect().await;
    let (_c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp3b", false)).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn mqtt311_3_2_2_4_refusal_has_session_present_0() {
    let tern = Tern::start();
    let (c, _) = RawClient::connect_with(tern.addr, connect_packet(V311, "sp4", false)).await;
    c.disconnect().await;
    // A stored session exists for sp4; a CONNECT refused for its Will Topic ($SYS) must not
    // report it.
    let payload = cat(&[&lp(b"sp4"), &lp(b"$SYS/x"), &lp(b"m")]);
    assert_connack_then_close(&tern, &connect_bytes(0x04, &payload), [0x20, 2, 0, 0x05]).await;
}

#[tokio::test]
async fn mqtt311_3_2_2_5_connection_closes_after_a_refusal() {
    let tern = Tern::start();
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect_packet(V311, "", false)).await;
    assert_ne!(ack.reason, ReasonCode::SUCCESS);
    c.expect_closed().await;
    let bytes = v3_connect(b"MQTT", 7, 0x02, 60, &lp(b"c"));
    assert_connack_then_close(&tern, &bytes, [0x20, 2, 0, 0x01]).await;
}

#[tokio::test]
async fn mqtt311_3_2_2_6_connect_no_return_code_fits_is_closed_without_connack() {
    let tern = Tern::start();
    // Not MQTT at all: an HTTP request ('G' reads as a PUBACK whose Remaining Length is 'E',
    // 69). No CONNACK, just the close.
    let http =
        b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";
    assert!(http.len() >= 71);
    assert_refused_silently(&tern, http).await;
    // A CONNECT whose Will QoS is 3.
    let payload = cat(&[&lp(b"c"), &lp(b"w"), &lp(b"m")]);
    assert_refused_silently(&tern, &connect_bytes(0x1E, &payload)).await;
}

#[tokio::test]
async fn mqtt311_s3_2_2_3_refusals_use_return_codes_1_to_5_only() {
    let tern = Tern::start_config("[mqtt]\nmax_qos = 1\n", "toml");
    let cases = [
        v3_connect(b"MQTT", 9, 0x02, 60, &lp(b"c")),
        connect_bytes(0x00, &lp(b"")),
        connect_bytes(0x04, &cat(&[&lp(b"c"), &lp(b"$SYS/w"), &lp(b"m")])),
        // Will QoS 2 above the configured maximum QoS 1.
        connect_bytes(0x14, &cat(&[&lp(b"c"), &lp(b"w"), &lp(b"m")])),
    ];
    for bytes in cases {
        let mut c = RawClient::open(tern.addr, V311).await;
        c.send_bytes(&bytes).await;
        let ack = recv_raw_frame(&mut c).await.expect("CONNACK");
        assert_eq!(&ack[..3], &[0x20, 0x02, 0x00]);
        assert!((1..=5).contains(&ack[3]), "return code {}", ack[3]);
        assert_eq!(recv_raw_frame(&mut c).await, None);
    }
}

#[tokio::test]
async fn mqtt311_3_1_2_2_level_3_is_unsupported_with_the_mqtt_name() {
    // `MQTT` with level 3 is neither 3.1 (which is `MQIsdp`) nor 3.1.1.
    let tern = Tern::start();
    let bytes = v3_connect(b"MQTT", 3, 0x02, 60, &lp(b"c"));
    assert_connack_then_close(&tern, &bytes, [0x20, 0x02, 0x00, 0x01]).await;
}
