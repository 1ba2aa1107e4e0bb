//! MQTT 5.0 conformance, sections 1–3 of the server checklist: data representation (UTF-8
//! strings, integers, binary data, Variable Byte Integers, string pairs), the fixed header,
//! Remaining Length and packet identifiers, and properties. Each test is named after the
//! statement it checks and talks to the real `tern` binary over loopback, with raw packets
//! where the input must be malformed.

mod common;

use std::collections::HashSet;

use bytes::Bytes;
use common::{RawClient, Tern, V5, frame, hex, lp, pid, publish, recv_raw_frame, vbi};
use tern_codec::{
    Ack, ByteString, ConnAck, Packet, PacketId, PublishProperties, QoS, ReasonCode, SubAck,
    Subscribe, SubscribeProperties, SubscriptionOptions, UnsubAck, Unsubscribe,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The body of a PUBLISH: topic bytes, packet id (QoS > 0), raw property section, payload.
fn publish_body(topic: &[u8], packet_id: Option<u16>, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = lp(topic);
    if let Some(id) = packet_id {
        body.extend(id.to_be_bytes());
    }
    body.extend(vbi(props.len()));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    body
}

/// A QoS 0 PUBLISH with raw topic bytes and raw properties.
fn raw_publish(topic: &[u8], props: &[u8], payload: &[u8]) -> Vec<u8> {
    frame(0x30, &publish_body(topic, None, props, payload))
}

/// A connected MQTT 5 client.
async fn client(tern: &Tern, id: &str) -> RawClient {
    RawClient::connect(tern.addr, V5, id).await
}

/// A connected MQTT 5 client subscribed to `filter`.
async fn subscriber(tern: &Tern, id: &str, filter: &str, qos: QoS) -> RawClient {
    let mut c = client(tern, id).await;
    let granted = c.subscribe(filter, qos).await;
    assert_eq!(granted, vec![ReasonCode(qos as u8)], "SUBACK for {filter}");
    c
}

/// Sends `bytes` on a fresh connection and expects DISCONNECT `reason` then the close.
async fn expect_rejected(tern: &Tern, bytes: &[u8], reason: ReasonCode) {
    let mut c = client(tern, "offender").await;
    c.send_bytes(bytes).await;
    c.expect_disconnect(reason).await;
}

/// Sends a raw CONNECT and expects CONNACK `reason` then the close.
async fn expect_connect_refused(tern: &Tern, connect: &[u8], reason: ReasonCode) {
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(connect).await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, reason, "CONNACK reason");
    assert!(!ack.session_present);
    c.expect_closed().await;
}

/// A raw MQTT 5 CONNECT: clean start, keep-alive 60, the given raw property section and
/// client id bytes.
fn raw_connect(props: &[u8], client_id: &[u8]) -> Vec<u8> {
    let mut body = hex("00 04 4d 51 54 54 05 02 00 3c");
    body.extend(vbi(props.len()));
    body.extend_from_slice(props);
    body.extend(lp(client_id));
    frame(0x10, &body)
}

/// Two raw frames, the acknowledgement first and the PUBLISH second, whichever came first.
async fn two_frames(c: &mut RawClient) -> (Vec<u8>, Vec<u8>) {
    let a = recv_raw_frame(c).await.expect("frame");
    let b = recv_raw_frame(c).await.expect("frame");
    if a[0] >> 4 == 3 { (b, a) } else { (a, b) }
}

/// The packet identifier of a raw QoS 1/2 PUBLISH with a one-byte Remaining Length.
fn raw_publish_id(raw: &[u8]) -> PacketId {
    let topic_len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    pid(u16::from_be_bytes([raw[4 + topic_len], raw[5 + topic_len]]))
}

// ---------------------------------------------------------------------------------------------
// §1 Data representation: UTF-8 strings (§1.5.4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_1_5_4_1_ill_formed_utf8_topic_is_malformed() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "watcher", "#", QoS::AtMostOnce).await;
    expect_rejected(
        &tern,
        &raw_publish(b"a/\xff", &[], b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
    watcher.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_1_5_4_1_surrogate_code_point_is_malformed() {
    let tern = Tern::start();
    // U+D800 encoded as if it were a character: ED A0 80.
    expect_rejected(
        &tern,
        &raw_publish(b"a/\xed\xa0\x80", &[], b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_4_1_overlong_encoding_is_malformed() {
    let tern = Tern::start();
    // '/' as the overlong two-byte sequence C0 AF.
    expect_rejected(
        &tern,
        &raw_publish(b"a\xc0\xafb", &[], b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_4_1_ill_formed_utf8_filter_is_malformed() {
    let tern = Tern::start();
    let mut body = hex("00 01 00");
    body.extend(lp(b"f/\xfe"));
    body.push(0x00);
    expect_rejected(&tern, &frame(0x82, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_1_5_4_1_ill_formed_utf8_property_string_is_malformed() {
    let tern = Tern::start();
    // Content Type (0x03) with a lone continuation byte.
    let mut props = vec![0x03];
    props.extend(lp(b"text/\x80"));
    expect_rejected(
        &tern,
        &raw_publish(b"a", &props, b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_4_1_ill_formed_utf8_client_id_gets_connack_0x81() {
    let tern = Tern::start();
    expect_connect_refused(
        &tern,
        &raw_connect(&[], b"id\xff"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_4_2_nul_in_topic_is_malformed() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "watcher", "#", QoS::AtMostOnce).await;
    expect_rejected(
        &tern,
        &raw_publish(b"a/\x00b", &[], b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
    watcher.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_1_5_4_2_nul_in_filter_is_malformed() {
    let tern = Tern::start();
    let mut c = client(&tern, "nul-filter").await;
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![(
            ByteString::from("a/\0"),
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
        )],
    }))
    .await;
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_1_5_4_2_nul_in_client_id_gets_connack_0x81() {
    let tern = Tern::start();
    expect_connect_refused(
        &tern,
        &raw_connect(&[], b"a\x00b"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_4_3_bom_topic_is_a_different_topic() {
    let tern = Tern::start();
    let bom_topic = "\u{FEFF}bom/t";
    let mut with_bom = subscriber(&tern, "with-bom", bom_topic, QoS::AtMostOnce).await;
    let mut without = subscriber(&tern, "without-bom", "bom/t", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "bom-pub").await;
    publisher
        .send_bytes(&raw_publish(b"\xef\xbb\xbfbom/t", &[], b"with"))
        .await;
    // The BOM subscriber gets it, with the three bytes still at the start of the topic.
    let raw = recv_raw_frame(&mut with_bom).await.expect("delivery");
    assert_eq!(raw, raw_publish(b"\xef\xbb\xbfbom/t", &[], b"with"));
    without.expect_nothing().await;

    publisher
        .publish("bom/t", b"without", QoS::AtMostOnce, false)
        .await;
    let p = without.recv_publish().await;
    assert_eq!(&p.topic[..], "bom/t");
    assert_eq!(&p.payload[..], b"without");
    with_bom.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_1_5_4_3_bom_in_filter_is_kept() {
    let tern = Tern::start();
    // A filter starting with a BOM does not match the same topic without it, and a wildcard
    // filter delivers the BOM topic with its BOM.
    let mut bom_filter = subscriber(&tern, "bom-filter", "\u{FEFF}x/#", QoS::AtMostOnce).await;
    let mut plain = subscriber(&tern, "plain", "+/y", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "pub").await;
    publisher.publish("x/y", b"1", QoS::AtMostOnce, false).await;
    let p = plain.recv_publish().await;
    assert_eq!(&p.topic[..], "x/y");
    bom_filter.expect_nothing().await;
    publisher
        .publish("\u{FEFF}x/y", b"2", QoS::AtMostOnce, false)
        .await;
    assert_eq!(&bom_filter.recv_publish().await.topic[..], "\u{FEFF}x/y");
    assert_eq!(&plain.recv_publish().await.topic[..], "\u{FEFF}x/y");
}

#[tokio::test]
async fn mqtt5_s1_5_4_disallowed_code_points_are_forwarded_unchanged() {
    // Tern's documented policy (docs/ARCHITECTURE.md): control characters and non-characters
    // are accepted and forwarded unchanged.
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "ctl-sub", "ctl/#", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "ctl-pub").await;
    let topic = "ctl/\u{1}\u{1f}\u{7f}\u{9f}\u{FFFF}\u{FDD0}";
    let mut p = publish(topic, b"x", QoS::AtMostOnce, false, None);
    p.properties.user_properties =
        vec![(ByteString::from("\u{7}k"), ByteString::from("v\u{FFFE}"))];
    publisher.send(&Packet::Publish(p.clone())).await;
    let got = sub.recv_publish().await;
    assert_eq!(got.topic, p.topic);
    assert_eq!(got.properties.user_properties, p.properties.user_properties);
    // The publisher was not disconnected either.
    assert!(publisher.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s1_5_4_string_length_past_the_packet_is_malformed() {
    let tern = Tern::start();
    // Topic length 16 with only two bytes left in the packet.
    expect_rejected(
        &tern,
        &hex("30 04 00 10 61 62"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s1_5_4_string_of_65535_bytes_is_accepted() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "long-sub", "#", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "long-pub").await;
    let topic = "l".repeat(65_535);
    publisher
        .publish(&topic, b"x", QoS::AtMostOnce, false)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.topic.len(), 65_535);
    assert_eq!(&p.topic[..], topic);
}

// ---------------------------------------------------------------------------------------------
// §1 Integers and binary data (§1.5.2, §1.5.3, §1.5.6)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_s1_5_2_integers_are_big_endian() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "be-sub", "be", QoS::AtLeastOnce).await;
    let mut publisher = client(&tern, "be-pub").await;
    // Packet id 0x0102 and Message Expiry Interval 0x00000102 (258 s).
    let props = hex("02 00 00 01 02");
    publisher
        .send_bytes(&frame(
            0x32,
            &publish_body(b"be", Some(0x0102), &props, b"x"),
        ))
        .await;
    let ack = recv_raw_frame(&mut publisher).await.expect("PUBACK");
    assert_eq!(ack, hex("40 02 01 02"));
    let p = sub.recv_publish().await;
    let expiry = p.properties.message_expiry_interval.expect("expiry");
    assert!((250..=258).contains(&expiry), "expiry {expiry}");
    sub.ack(&p).await;
}

#[tokio::test]
async fn mqtt5_s1_5_2_truncated_two_byte_integer_is_malformed() {
    let tern = Tern::start();
    // QoS 1 PUBLISH whose packet identifier has only one byte.
    let mut body = lp(b"t");
    body.push(0x00);
    expect_rejected(&tern, &frame(0x32, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s1_5_3_truncated_four_byte_integer_is_malformed() {
    let tern = Tern::start();
    // Message Expiry Interval with two of its four bytes inside the property section.
    expect_rejected(
        &tern,
        &raw_publish(b"t", &hex("02 00 01"), b""),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s1_5_6_binary_data_overrun_is_malformed() {
    let tern = Tern::start();
    // Correlation Data claiming 10 bytes, with 2 in the property section.
    expect_rejected(
        &tern,
        &raw_publish(b"t", &hex("09 00 0a 78 79"), b"payload"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s1_5_6_binary_data_is_forwarded_byte_for_byte() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "bin-sub", "bin/+", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "bin-pub").await;
    for data in [&b""[..], b"\x00\xff\x80\xc0\xaf", &[0xAB; 300][..]] {
        let mut p = publish("bin/x", b"p", QoS::AtMostOnce, false, None);
        p.properties.correlation_data = Some(Bytes::copy_from_slice(data));
        publisher.send(&Packet::Publish(p)).await;
        let got = sub.recv_publish().await;
        assert_eq!(got.properties.correlation_data.as_deref(), Some(data));
    }
}

// ---------------------------------------------------------------------------------------------
// §1 Variable Byte Integer (§1.5.5)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_1_5_5_1_non_minimal_remaining_length_is_malformed() {
    let tern = Tern::start();
    // PINGREQ whose Remaining Length 0 is written in two bytes.
    expect_rejected(&tern, &hex("c0 80 00"), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_1_5_5_1_non_minimal_property_length_is_malformed() {
    let tern = Tern::start();
    // PUBLISH "t" with Property Length 0 written as 80 00.
    expect_rejected(
        &tern,
        &hex("30 06 00 01 74 80 00 78"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_5_1_server_writes_minimal_remaining_lengths() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "vbi-sub", "v/t", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "vbi-pub").await;
    // Remaining Length = 2 + 3 (topic) + 1 (property length) + payload.
    for (remaining, encoded) in [
        (127usize, &[0x7F][..]),
        (128, &[0x80, 0x01][..]),
        (16_383, &[0xFF, 0x7F][..]),
        (16_384, &[0x80, 0x80, 0x01][..]),
    ] {
        let payload = vec![b'z'; remaining - 6];
        publisher
            .publish("v/t", &payload, QoS::AtMostOnce, false)
            .await;
        let raw = recv_raw_frame(&mut sub).await.expect("delivery");
        assert_eq!(raw[0], 0x30);
        assert_eq!(&raw[1..=encoded.len()], encoded, "length {remaining}");
        assert_eq!(raw.len(), 1 + encoded.len() + remaining);
    }
}

#[tokio::test]
async fn mqtt5_s1_5_5_fifth_length_byte_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &hex("c0 ff ff ff ff 01"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s1_5_5_four_byte_maximum_is_accepted() {
    let tern = Tern::start();
    // Subscription Identifier 268,435,455 = FF FF FF 7F, the largest VBI.
    let mut c = client(&tern, "vbi-max").await;
    let granted = c
        .subscribe_with(
            "max/id",
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
            Some(268_435_455),
        )
        .await;
    assert_eq!(granted, vec![ReasonCode::GRANTED_QOS_0]);
    c.publish("max/id", b"x", QoS::AtMostOnce, false).await;
    let raw = recv_raw_frame(&mut c).await.expect("delivery");
    // Topic "max/id", Property Length 5: 0B FF FF FF 7F, payload "x".
    assert_eq!(
        raw,
        hex("30 0f 00 06 6d 61 78 2f 69 64 05 0b ff ff ff 7f 78")
    );
}

// ---------------------------------------------------------------------------------------------
// §1 UTF-8 String Pair (§1.5.7)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_1_5_7_1_user_property_name_must_be_utf8() {
    let tern = Tern::start();
    let mut props = vec![0x26];
    props.extend(lp(b"n\xff"));
    props.extend(lp(b"value"));
    expect_rejected(
        &tern,
        &raw_publish(b"t", &props, b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_7_1_user_property_value_must_be_utf8() {
    let tern = Tern::start();
    let mut props = vec![0x26];
    props.extend(lp(b"name"));
    props.extend(lp(b"\xed\xbf\xbf"));
    expect_rejected(
        &tern,
        &raw_publish(b"t", &props, b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_1_5_7_1_user_property_value_must_not_contain_nul() {
    let tern = Tern::start();
    let mut p = publish("t", b"x", QoS::AtMostOnce, false, None);
    p.properties.user_properties = vec![(ByteString::from("k"), ByteString::from("a\0b"))];
    let mut c = client(&tern, "pair-nul").await;
    c.send(&Packet::Publish(p)).await;
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_1_5_7_1_connect_user_property_must_be_utf8() {
    let tern = Tern::start();
    let mut props = vec![0x26];
    props.extend(lp(b"k"));
    props.extend(lp(b"\xc3"));
    expect_connect_refused(
        &tern,
        &raw_connect(&props, b"pair-connect"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// §2 Fixed header (§2.1)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_s2_1_2_packet_type_0_is_malformed() {
    let tern = Tern::start();
    expect_rejected(&tern, &hex("00 00"), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s2_1_2_client_sending_connack_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "dir-connack").await;
    c.send(&Packet::ConnAck(ConnAck::default())).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s2_1_2_client_sending_suback_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "dir-suback").await;
    c.send(&Packet::SubAck(SubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reasons: vec![ReasonCode::GRANTED_QOS_1],
    }))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s2_1_2_client_sending_unsuback_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "dir-unsuback").await;
    c.send(&Packet::UnsubAck(UnsubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reasons: vec![ReasonCode::SUCCESS],
    }))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s2_1_2_client_sending_pingresp_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "dir-pingresp").await;
    c.send_bytes(&hex("d0 00")).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s2_1_2_wrong_direction_packet_publishes_the_will() {
    // The error path is an ordinary protocol error: the connection's Will goes out.
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "dir-watch", "dir/will", QoS::AtMostOnce).await;
    let mut connect = common::connect_packet(V5, "dir-will", true);
    connect.will = Some(common::will("dir/will", b"gone", QoS::AtMostOnce, false));
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c.send_bytes(&hex("d0 00")).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"gone");
}

#[tokio::test]
async fn mqtt5_2_1_3_1_pubrel_flags_must_be_0010() {
    let tern = Tern::start();
    expect_rejected(&tern, &hex("60 02 00 01"), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_2_1_3_1_subscribe_flags_must_be_0010() {
    let tern = Tern::start();
    // SUBSCRIBE id 1, no properties, "a" QoS 0, with flags 0000.
    expect_rejected(
        &tern,
        &hex("80 07 00 01 00 00 01 61 00"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_2_1_3_1_unsubscribe_flags_must_be_0010() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &hex("a3 06 00 01 00 00 01 61"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_2_1_3_1_puback_flags_must_be_0000() {
    let tern = Tern::start();
    expect_rejected(&tern, &hex("42 02 00 01"), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_2_1_3_1_pingreq_flags_must_be_0000() {
    let tern = Tern::start();
    expect_rejected(&tern, &hex("c1 00"), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_2_1_3_1_disconnect_flags_must_be_0000() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "flags-watch", "flags/will", QoS::AtMostOnce).await;
    let mut connect = common::connect_packet(V5, "flags-disc", true);
    connect.will = Some(common::will("flags/will", b"w", QoS::AtMostOnce, false));
    let (mut c, _) = RawClient::connect_with(tern.addr, connect).await;
    c.send_bytes(&hex("e8 00")).await;
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    // Not a normal disconnection: the Will is published.
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
}

#[tokio::test]
async fn mqtt5_2_1_3_1_connect_flags_nibble_must_be_0000() {
    let tern = Tern::start();
    let mut bytes = bytes::BytesMut::new();
    common::connect(V5, "bad-connect-flags", true)
        .encode(V5, &mut bytes)
        .unwrap();
    bytes[0] = 0x12;
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&bytes).await;
    // Nothing has been accepted yet, so no DISCONNECT: the connection is just closed.
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_2_1_3_1_server_writes_the_table_flags() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send(&common::connect(V5, "flags-out", true)).await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[0], 0x20, "CONNACK");

    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![(
            ByteString::from("fl/#"),
            SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        )],
    }))
    .await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[0], 0x90, "SUBACK");

    // QoS 1 to ourselves: PUBACK and the delivery (in either order).
    c.send(&Packet::Publish(publish(
        "fl/1",
        b"x",
        QoS::AtLeastOnce,
        false,
        Some(pid(10)),
    )))
    .await;
    let (first, delivery) = two_frames(&mut c).await;
    assert_eq!(first[0], 0x40, "PUBACK");
    assert_eq!(delivery[0], 0x32, "QoS 1 PUBLISH");
    c.send(&Packet::PubAck(Ack::new(raw_publish_id(&delivery))))
        .await;

    // QoS 2 to ourselves: PUBREC and the delivery; then our PUBREC gets PUBREL (0110 0010)
    // and our PUBREL gets PUBCOMP.
    c.send(&Packet::Publish(publish(
        "fl/2",
        b"x",
        QoS::ExactlyOnce,
        false,
        Some(pid(11)),
    )))
    .await;
    let (first, delivery) = two_frames(&mut c).await;
    assert_eq!(first[0], 0x50, "PUBREC");
    assert_eq!(delivery[0], 0x34, "QoS 2 PUBLISH");
    let id = raw_publish_id(&delivery);
    c.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[0], 0x62, "PUBREL");
    c.send(&Packet::PubRel(Ack::new(pid(11)))).await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[0], 0x70, "PUBCOMP");
    c.send(&Packet::PubComp(Ack::new(id))).await;

    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(3),
        user_properties: Vec::new(),
        filters: vec![ByteString::from("fl/#")],
    }))
    .await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[0], 0xB0, "UNSUBACK");
    c.send(&Packet::PingReq).await;
    assert_eq!(
        recv_raw_frame(&mut c).await.unwrap(),
        hex("d0 00"),
        "PINGRESP"
    );
    // A second CONNECT: DISCONNECT 0x82 with flags 0000.
    c.send(&common::connect(V5, "flags-out", true)).await;
    let disconnect = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(disconnect[0], 0xE0, "DISCONNECT");
    assert_eq!(disconnect[2], 0x82);
}

// ---------------------------------------------------------------------------------------------
// §2 Remaining Length (§2.1.4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_s2_1_4_fields_running_past_remaining_length_are_malformed() {
    let tern = Tern::start();
    // SUBSCRIBE whose Remaining Length ends before the options byte of its filter.
    expect_rejected(
        &tern,
        &hex("82 06 00 01 00 00 01 61"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_1_4_bytes_left_over_are_malformed() {
    let tern = Tern::start();
    // PINGREQ with a Remaining Length of 1.
    expect_rejected(&tern, &hex("c0 01 00"), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s2_1_4_bytes_after_ack_properties_are_malformed() {
    let tern = Tern::start();
    // PUBACK id 1, reason 0, Property Length 0, then a stray byte.
    expect_rejected(
        &tern,
        &hex("40 05 00 01 00 00 ff"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_1_4_exactly_remaining_length_bytes_are_one_packet() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "rl-sub", "rl", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "rl-pub").await;
    // One write: a PUBLISH whose payload looks like a PINGREQ, then a real PINGREQ.
    let mut bytes = raw_publish(b"rl", &[], &hex("c0 00"));
    bytes.extend(hex("c0 00"));
    publisher.send_bytes(&bytes).await;
    assert_eq!(publisher.recv().await, Packet::PingResp);
    publisher.expect_nothing().await;
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], &hex("c0 00")[..]);
}

// ---------------------------------------------------------------------------------------------
// §2 Packet identifiers (§2.2.1)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_2_2_1_2_server_writes_no_packet_id_on_qos0() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "q0-sub", "q0", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "q0-pub").await;
    // Published at QoS 1, delivered at the granted QoS 0.
    publisher
        .publish("q0", b"hi", QoS::AtLeastOnce, false)
        .await;
    let raw = recv_raw_frame(&mut sub).await.expect("delivery");
    assert_eq!(raw, hex("30 07 00 02 71 30 00 68 69"));
}

#[tokio::test]
async fn mqtt5_2_2_1_2_qos0_bytes_after_topic_are_properties() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "q0p-sub", "q0p", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "q0p-pub").await;
    // Property Length 2 (Payload Format Indicator 1), then the payload AB CD: nothing is read
    // as a packet identifier.
    publisher
        .send_bytes(&raw_publish(b"q0p", &hex("01 01"), &hex("ab cd")))
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert_eq!(&p.payload[..], &hex("ab cd")[..]);
}

#[tokio::test]
async fn mqtt5_2_2_1_3_qos1_publish_with_packet_id_0_is_protocol_error() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "id0-watch", "#", QoS::AtMostOnce).await;
    expect_rejected(
        &tern,
        &frame(0x32, &publish_body(b"t", Some(0), &[], b"x")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
    watcher.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_2_2_1_3_qos2_publish_with_packet_id_0_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &frame(0x34, &publish_body(b"t", Some(0), &[], b"x")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_2_2_1_3_subscribe_with_packet_id_0_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &hex("82 07 00 00 00 00 01 61 00"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_2_2_1_3_unsubscribe_with_packet_id_0_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &hex("a2 06 00 00 00 00 01 61"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_2_2_1_3_qos2_reusing_an_inflight_id_is_a_resend() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "resend-sub", "resend", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "resend-pub").await;
    let mut p = publish("resend", b"once", QoS::ExactlyOnce, false, Some(pid(9)));
    publisher.send(&Packet::Publish(p.clone())).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(Ack::new(pid(9))));
    p.dup = true;
    publisher.send(&Packet::Publish(p)).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(Ack::new(pid(9))));
    publisher.send(&Packet::PubRel(Ack::new(pid(9)))).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(Ack::new(pid(9))));
    assert_eq!(&sub.recv_publish().await.payload[..], b"once");
    sub.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_2_2_1_4_server_packet_ids_are_nonzero_and_unique_in_flight() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "ids-sub", "ids/#", QoS::ExactlyOnce).await;
    let mut publisher = client(&tern, "ids-pub").await;
    let qos_of = |i: usize| {
        if i.is_multiple_of(2) {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        }
    };
    for i in 0..10 {
        publisher
            .publish(&format!("ids/{i}"), b"x", qos_of(i), false)
            .await;
    }
    let mut first = Vec::new();
    for i in 0..10 {
        let p = sub.recv_publish().await;
        assert_eq!(&p.topic[..], format!("ids/{i}"));
        assert_eq!(p.qos, qos_of(i));
        first.push(p.packet_id.expect("QoS > 0 carries an id"));
    }
    assert_eq!(first.iter().collect::<HashSet<_>>().len(), 10, "{first:?}");

    // Finish the first five as far as freeing QoS 1 ids; the QoS 2 ones stay in use while
    // their PUBCOMP is outstanding.
    let mut in_use: HashSet<PacketId> = first[5..].iter().copied().collect();
    for (i, id) in first[..5].iter().enumerate() {
        if qos_of(i) == QoS::AtLeastOnce {
            sub.send(&Packet::PubAck(Ack::new(*id))).await;
        } else {
            sub.send(&Packet::PubRec(Ack::new(*id))).await;
            assert_eq!(sub.recv().await, Packet::PubRel(Ack::new(*id)));
            in_use.insert(*id);
        }
    }
    for i in 10..20 {
        publisher
            .publish(&format!("ids/{i}"), b"x", qos_of(i), false)
            .await;
    }
    for i in 10..20 {
        let p = sub.recv_publish().await;
        assert_eq!(&p.topic[..], format!("ids/{i}"));
        let id = p.packet_id.expect("id");
        assert!(in_use.insert(id), "id {id} reused while in flight");
    }
}

#[tokio::test]
async fn mqtt5_2_2_1_4_ids_in_use_are_skipped_after_wrapping() {
    // One delivery stays unacknowledged while 65,536 more go through a window of two: when the
    // identifier counter wraps, the held identifier must be skipped.
    let tern = Tern::start_config(
        "[mqtt]\nmax_queued_messages = 0\nmax_queued_bytes = 0\n",
        "toml",
    );
    let mut connect = common::connect_packet(V5, "wrap-sub", true);
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = RawClient::connect_with(tern.addr, connect).await;
    sub.subscribe("wrap", QoS::AtLeastOnce).await;
    let mut publisher = client(&tern, "wrap-pub").await;
    publisher
        .publish("wrap", b"held", QoS::AtLeastOnce, false)
        .await;
    let held = sub.recv_publish().await.packet_id.unwrap();

    const BATCH: usize = 1024;
    const N: usize = 64 * BATCH;
    let feed = tokio::spawn(async move {
        for _ in 0..N / BATCH {
            let mut batch = Vec::new();
            for i in 0..BATCH {
                let id = Some(i as u16 + 1);
                batch.extend(frame(0x32, &publish_body(b"wrap", id, &[], b"m")));
            }
            publisher.send_bytes(&batch).await;
            for _ in 0..BATCH {
                match publisher.recv().await {
                    Packet::PubAck(_) => {}
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
        }
    });
    for seen in 0..N {
        let p = sub.recv_publish().await;
        let id = p.packet_id.unwrap();
        assert_ne!(id, held, "held id {held} reused after {seen} deliveries");
        sub.send(&Packet::PubAck(Ack::new(id))).await;
    }
    feed.await.unwrap();
}

#[tokio::test]
async fn mqtt5_2_2_1_5_acks_echo_the_client_packet_id() {
    let tern = Tern::start();
    let mut c = client(&tern, "echo").await;
    let p = publish("echo/1", b"x", QoS::AtLeastOnce, false, Some(pid(0x1234)));
    c.send(&Packet::Publish(p)).await;
    match c.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(0x1234)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let p = publish("echo/2", b"x", QoS::ExactlyOnce, false, Some(pid(0xFFFF)));
    c.send(&Packet::Publish(p)).await;
    match c.recv().await {
        Packet::PubRec(a) => assert_eq!(a.packet_id, pid(0xFFFF)),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    c.send(&Packet::PubRel(Ack::new(pid(0xFFFF)))).await;
    assert_eq!(
        recv_raw_frame(&mut c).await.unwrap(),
        hex("70 02 ff ff"),
        "PUBCOMP echoes the id"
    );
}

#[tokio::test]
async fn mqtt5_2_2_1_5_server_pubrel_echoes_the_publish_id() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "echo-sub", "echo/q2", QoS::ExactlyOnce).await;
    let mut publisher = client(&tern, "echo-pub").await;
    for n in 0..3 {
        publisher
            .publish("echo/q2", &[n], QoS::ExactlyOnce, false)
            .await;
    }
    let ids: Vec<PacketId> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(sub.recv_publish().await.packet_id.unwrap());
        }
        v
    };
    // Acknowledge out of order; each PUBREL carries the id of the PUBREC it answers.
    for id in [ids[2], ids[0], ids[1]] {
        sub.send(&Packet::PubRec(Ack::new(id))).await;
        assert_eq!(sub.recv().await, Packet::PubRel(Ack::new(id)));
        sub.send(&Packet::PubComp(Ack::new(id))).await;
    }
    assert!(sub.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_2_2_1_6_suback_and_unsuback_carry_the_request_id() {
    let tern = Tern::start();
    let mut c = client(&tern, "subid").await;
    for id in [1u16, 0x7FFF, 0xFFFF] {
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            properties: Default::default(),
            filters: vec![(
                ByteString::from("s/id"),
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            )],
        }))
        .await;
        match c.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(a.packet_id, pid(id));
                assert_eq!(a.reasons, vec![ReasonCode::GRANTED_QOS_1]);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
        c.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(id ^ 0x00FF),
            user_properties: Vec::new(),
            filters: vec![ByteString::from("s/id")],
        }))
        .await;
        match c.recv().await {
            Packet::UnsubAck(a) => {
                assert_eq!(a.packet_id, pid(id ^ 0x00FF));
                assert_eq!(a.reasons, vec![ReasonCode::SUCCESS]);
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn mqtt5_s2_2_1_client_and_server_id_spaces_are_independent() {
    let tern = Tern::start();
    let mut c = subscriber(&tern, "indep", "indep/t", QoS::ExactlyOnce).await;
    // The client's QoS 2 PUBLISH id 1 is delivered back to it with the server's first id, 1.
    c.send(&Packet::Publish(publish(
        "indep/t",
        b"m",
        QoS::ExactlyOnce,
        false,
        Some(pid(1)),
    )))
    .await;
    let mut got_pubrec = false;
    let mut delivery = None;
    for _ in 0..2 {
        match c.recv().await {
            Packet::PubRec(a) => {
                assert_eq!(a, Ack::new(pid(1)));
                got_pubrec = true;
            }
            Packet::Publish(p) => delivery = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(got_pubrec);
    let delivery = delivery.expect("delivery");
    assert_eq!(delivery.packet_id, Some(pid(1)), "both directions use id 1");
    // Complete the server's delivery first, then our own publication: neither is confused
    // with the other.
    c.send(&Packet::PubRec(Ack::new(pid(1)))).await;
    assert_eq!(c.recv().await, Packet::PubRel(Ack::new(pid(1))));
    c.send(&Packet::PubRel(Ack::new(pid(1)))).await;
    assert_eq!(
        c.recv().await,
        Packet::PubComp(Ack::new(pid(1))),
        "PUBCOMP with success, not 0x92"
    );
    c.send(&Packet::PubComp(Ack::new(pid(1)))).await;
    assert!(c.sync().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// §3 Properties (§2.2.2)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_2_2_2_1_property_length_0_is_written() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send(&common::connect(V5, "plen", true)).await;
    let connack = recv_raw_frame(&mut c).await.unwrap();
    // CONNACK: flags, reason, then a Property Length matching the rest.
    assert_eq!(connack[0], 0x20);
    assert_eq!(usize::from(connack[4]), connack.len() - 5);

    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(0x4242),
        properties: Default::default(),
        filters: vec![(
            ByteString::from("plen"),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        )],
    }))
    .await;
    assert_eq!(
        recv_raw_frame(&mut c).await.unwrap(),
        hex("90 04 42 42 00 01")
    );

    // Delivery without properties: Property Length 0 before the payload.
    c.send(&Packet::Publish(publish(
        "plen",
        b"x",
        QoS::AtMostOnce,
        false,
        None,
    )))
    .await;
    assert_eq!(
        recv_raw_frame(&mut c).await.unwrap(),
        hex("30 08 00 04 70 6c 65 6e 00 78")
    );

    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(0x4343),
        user_properties: Vec::new(),
        filters: vec![ByteString::from("plen")],
    }))
    .await;
    assert_eq!(
        recv_raw_frame(&mut c).await.unwrap(),
        hex("b0 04 43 43 00 00")
    );

    // PUBACK may use the short forms: id only for success, id + reason otherwise.
    c.send(&Packet::Publish(publish(
        "plen/none",
        b"x",
        QoS::AtLeastOnce,
        false,
        Some(pid(5)),
    )))
    .await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap(), hex("40 03 00 05 10"));
}

#[tokio::test]
async fn mqtt5_2_2_2_1_disconnect_property_length_matches() {
    let tern = Tern::start();
    let mut c = client(&tern, "disc-plen").await;
    c.send_bytes(&hex("c0 01 00")).await;
    // Reason code, then either nothing more (short form) or a Property Length that accounts
    // for exactly the rest of the packet.
    let raw = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(raw[..1], [0xE0]);
    let remaining = usize::from(raw[1]);
    assert_eq!(raw.len(), 2 + remaining);
    assert_eq!(raw[2], 0x81);
    if remaining > 1 {
        assert_eq!(usize::from(raw[3]), remaining - 2, "Property Length");
    }
    assert!(recv_raw_frame(&mut c).await.is_none());
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_property_not_allowed_in_publish_is_malformed() {
    let tern = Tern::start();
    // Session Expiry Interval (0x11) belongs to CONNECT, CONNACK and DISCONNECT.
    expect_rejected(
        &tern,
        &raw_publish(b"t", &hex("11 00 00 00 0a"), b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_property_not_allowed_in_subscribe_is_malformed() {
    let tern = Tern::start();
    // Content Type (0x03) in SUBSCRIBE.
    let mut body = hex("00 01");
    let mut props = vec![0x03];
    props.extend(lp(b"text"));
    body.extend(vbi(props.len()));
    body.extend(props);
    body.extend(lp(b"a"));
    body.push(0);
    expect_rejected(&tern, &frame(0x82, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_property_not_allowed_in_connect_is_malformed() {
    let tern = Tern::start();
    // Topic Alias (0x23) in CONNECT.
    expect_connect_refused(
        &tern,
        &raw_connect(&hex("23 00 01"), b"prop-connect"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_property_not_allowed_in_ack_is_malformed() {
    let tern = Tern::start();
    // PUBACK with a Message Expiry Interval.
    expect_rejected(
        &tern,
        &hex("40 09 00 01 00 05 02 00 00 00 01"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_unknown_property_identifier_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &raw_publish(b"t", &hex("05 00"), b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_value_not_of_the_property_type_is_malformed() {
    let tern = Tern::start();
    // Content Type given a single byte instead of a length-prefixed string.
    expect_rejected(
        &tern,
        &raw_publish(b"t", &hex("03 41"), b"x"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_1_property_length_past_the_packet_is_malformed() {
    let tern = Tern::start();
    // Property Length 5 with two bytes left in the packet.
    expect_rejected(
        &tern,
        &hex("30 06 00 01 74 05 01 01"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_1_connect_property_length_past_the_packet_is_malformed() {
    let tern = Tern::start();
    // Property Length 40 in a CONNECT with far fewer bytes left.
    let mut body = hex("00 04 4d 51 54 54 05 02 00 3c 28 11 00 00 00 0a");
    body.extend(lp(b"c"));
    expect_connect_refused(&tern, &frame(0x10, &body), ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_property_order_is_not_significant() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "order-sub", "order", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "order-pub").await;
    // User Property, Content Type, User Property, Correlation Data, Response Topic,
    // Message Expiry Interval, Payload Format Indicator: the reverse of the encoder's order.
    let mut props = vec![0x26];
    props.extend(lp(b"k1"));
    props.extend(lp(b"v1"));
    props.push(0x03);
    props.extend(lp(b"text/plain"));
    props.push(0x26);
    props.extend(lp(b"k0"));
    props.extend(lp(b"v0"));
    props.push(0x09);
    props.extend(lp(b"\x01\x02"));
    props.push(0x08);
    props.extend(lp(b"reply/here"));
    props.extend(hex("02 00 00 0e 10"));
    props.extend(hex("01 01"));
    publisher
        .send_bytes(&raw_publish(b"order", &props, b"body"))
        .await;
    let p = sub.recv_publish().await;
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        p.properties.correlation_data.as_deref(),
        Some(&b"\x01\x02"[..])
    );
    assert_eq!(p.properties.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    let expiry = p.properties.message_expiry_interval.unwrap();
    assert!((3590..=3600).contains(&expiry), "{expiry}");
    assert_eq!(
        p.properties.user_properties,
        vec![
            (ByteString::from("k1"), ByteString::from("v1")),
            (ByteString::from("k0"), ByteString::from("v0")),
        ]
    );
    assert_eq!(&p.payload[..], b"body");
}

#[tokio::test]
async fn mqtt5_s2_2_2_2_connect_property_order_is_not_significant() {
    let tern = Tern::start();
    // User Property, Request Problem Information, Topic Alias Maximum, Maximum Packet Size,
    // Receive Maximum, Session Expiry Interval.
    let mut props = vec![0x26];
    props.extend(lp(b"a"));
    props.extend(lp(b"b"));
    props.extend(hex("17 01 22 00 05 27 00 01 00 00 21 00 0a 11 00 00 00 3c"));
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect(&props, b"order-connect")).await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s3_x_duplicate_publish_property_is_protocol_error() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "dup-watch", "#", QoS::AtMostOnce).await;
    let mut props = vec![0x03];
    props.extend(lp(b"a"));
    props.push(0x03);
    props.extend(lp(b"b"));
    expect_rejected(
        &tern,
        &raw_publish(b"t", &props, b"x"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
    watcher.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_x_duplicate_message_expiry_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &raw_publish(b"t", &hex("02 00 00 00 01 02 00 00 00 02"), b"x"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_x_duplicate_subscription_identifier_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        &hex("82 0b 00 01 04 0b 01 0b 02 00 01 61 00"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_x_duplicate_ack_reason_string_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x1F];
    props.extend(lp(b"r"));
    props.push(0x1F);
    props.extend(lp(b"s"));
    let mut body = hex("00 01 00");
    body.extend(vbi(props.len()));
    body.extend(props);
    expect_rejected(&tern, &frame(0x40, &body), ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_x_duplicate_connect_property_gets_connack_0x82() {
    let tern = Tern::start();
    expect_connect_refused(
        &tern,
        &raw_connect(&hex("11 00 00 00 0a 11 00 00 00 0a"), b"dup-connect"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_x_user_property_may_repeat() {
    let tern = Tern::start();
    let mut sub = subscriber(&tern, "up-sub", "up", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "up-pub").await;
    let pairs: Vec<(ByteString, ByteString)> = [("k", "1"), ("k", "2"), ("j", "3"), ("k", "1")]
        .iter()
        .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
        .collect();
    let mut p = publish("up", b"x", QoS::AtMostOnce, false, None);
    p.properties = PublishProperties {
        user_properties: pairs.clone(),
        ..Default::default()
    };
    publisher.send(&Packet::Publish(p)).await;
    assert_eq!(sub.recv_publish().await.properties.user_properties, pairs);
}

#[tokio::test]
async fn mqtt5_s3_x_server_publish_may_repeat_subscription_identifier() {
    let tern = Tern::start();
    let mut c = client(&tern, "subids").await;
    c.subscribe_with(
        "a/+",
        SubscriptionOptions::with_qos(QoS::AtMostOnce),
        Some(1),
    )
    .await;
    c.subscribe_with(
        "a/#",
        SubscriptionOptions::with_qos(QoS::AtMostOnce),
        Some(2),
    )
    .await;
    c.publish("a/b", b"x", QoS::AtMostOnce, false).await;
    let mut ids = c.recv_publish().await.properties.subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    c.expect_nothing().await;
}
