//! Hand-written byte vectors for every packet type in MQTT 3.1, 3.1.1 and 5.0: each valid vector
//! is decoded, compared with the expected packet and encoded back to the same bytes; each
//! malformed vector is rejected with the exact [`DecodeError`] variant and reason code.
//!
//! Test names start with the protocol version and the statement id of the specification they
//! check (see `shared/spec/README.md`); tests of codec behaviour that no statement covers have
//! plain names.
//!
//! Vectors are written with [`hex`]: hexadecimal byte pairs, `'text'` for raw UTF-8 bytes,
//! `<...>` for a group prefixed by its two-byte length and `[...]` for a group prefixed by its
//! length as a Variable Byte Integer (a property section).

use bytes::{Bytes, BytesMut};
use tern_codec::{
    Ack, AckProperties, Auth, AuthProperties, ByteString, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, EncodeError,
    LastWill, MAX_PACKET_SIZE, MAX_REMAINING_LENGTH, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, PublishView, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions, UnsubAck, Unsubscribe, WillProperties,
    is_valid_topic_filter, is_valid_topic_name, split_shared,
};

use ProtocolVersion::{V5, V31, V311};

const ALL_VERSIONS: [ProtocolVersion; 3] = [V31, V311, V5];
const V3: [ProtocolVersion; 2] = [V31, V311];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses the vector notation described in the crate documentation.
fn hex(s: &str) -> Vec<u8> {
    fn close(stack: &mut Vec<(char, Vec<u8>)>, want: char) {
        let (open, group) = stack.pop().expect("unbalanced group");
        assert_eq!(open, want, "mismatched group");
        let parent = &mut stack.last_mut().expect("unbalanced group").1;
        if want == '<' {
            let len = u16::try_from(group.len()).expect("group too long");
            parent.extend_from_slice(&len.to_be_bytes());
        } else {
            parent.extend(vbi(group.len()));
        }
        parent.extend(group);
    }
    let mut stack: Vec<(char, Vec<u8>)> = vec![(' ', Vec::new())];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '<' | '[' => stack.push((c, Vec::new())),
            '>' => close(&mut stack, '<'),
            ']' => close(&mut stack, '['),
            '\'' => {
                let text: String = chars.by_ref().take_while(|&c| c != '\'').collect();
                stack
                    .last_mut()
                    .expect("the outer group is always open")
                    .1
                    .extend_from_slice(text.as_bytes());
            }
            _ => {
                let low = chars.next().expect("odd number of hex digits");
                let pair: String = [c, low].iter().collect();
                let byte = u8::from_str_radix(&pair, 16).expect("not a hex byte");
                stack
                    .last_mut()
                    .expect("the outer group is always open")
                    .1
                    .push(byte);
            }
        }
    }
    assert_eq!(stack.len(), 1, "unclosed group in {s:?}");
    stack.pop().expect("the outer group").1
}

/// A Variable Byte Integer, minimally encoded.
fn vbi(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if v == 0 {
            return out;
        }
    }
}

/// A whole packet: the first byte, the Remaining Length computed from the body, the body.
fn pkt(first: u8, body: &str) -> Vec<u8> {
    let body = hex(body);
    let mut out = vec![first];
    out.extend(vbi(body.len()));
    out.extend(body);
    out
}

fn dec(version: ProtocolVersion) -> Decoder {
    Decoder::with_version(version, MAX_PACKET_SIZE)
}

fn server() -> Decoder {
    Decoder::new(MAX_PACKET_SIZE)
}

/// Decodes one packet that must span all of `bytes`.
fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = d.decode(&mut buf)?;
    assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
    Ok(packet.expect("the vector is a whole packet"))
}

fn decode(version: ProtocolVersion, bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode_all(&mut dec(version), bytes)
}

fn decode_server(bytes: &[u8]) -> Result<Packet, DecodeError> {
    decode_all(&mut server(), bytes)
}

fn encode(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut dst = BytesMut::new();
    let n = packet.encode(version, &mut dst).expect("encodable");
    assert_eq!(n, dst.len(), "encode reported a different length");
    dst.to_vec()
}

/// Every proper prefix of `bytes` is an incomplete packet: `Ok(None)`, nothing consumed.
#[track_caller]
fn assert_prefixes_wait(make: impl Fn() -> Decoder, bytes: &[u8]) {
    for n in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..n]);
        assert_eq!(make().decode(&mut buf), Ok(None), "prefix of {n} bytes");
        assert_eq!(buf.len(), n, "prefix of {n} bytes was consumed");
    }
}

/// A canonical vector: decodes to `expected`, encodes back to the same bytes, and every prefix
/// waits for more input.
#[track_caller]
fn vector(version: ProtocolVersion, s: &str, expected: &Packet) {
    let bytes = hex(s);
    assert_eq!(decode(version, &bytes).as_ref(), Ok(expected));
    assert_eq!(encode(expected, version), bytes);
    assert_prefixes_wait(|| dec(version), &bytes);
}

/// A canonical CONNECT vector, decoded by a fresh server decoder that learns the version.
#[track_caller]
fn connect_vector(s: &str, expected: &Connect) {
    let bytes = hex(s);
    let mut d = server();
    let got = decode_all(&mut d, &bytes);
    assert_eq!(got, Ok(Packet::Connect(Box::new(expected.clone()))));
    assert_eq!(d.version(), Some(expected.protocol));
    let packet = Packet::Connect(Box::new(expected.clone()));
    assert_eq!(encode(&packet, expected.protocol), bytes);
    assert_prefixes_wait(server, &bytes);
}

#[track_caller]
fn assert_malformed(result: Result<Packet, DecodeError>, fragment: &str) {
    match result {
        Err(e @ DecodeError::Malformed(message)) => {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
        }
        other => panic!("expected Malformed({fragment:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_protocol(result: Result<Packet, DecodeError>, fragment: &str) {
    match result {
        Err(e @ DecodeError::Protocol(message)) => {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
        }
        other => panic!("expected Protocol({fragment:?}), got {other:?}"),
    }
}

#[track_caller]
fn assert_topic_invalid(result: Result<Packet, DecodeError>, fragment: &str) {
    match result {
        Err(e @ DecodeError::TopicNameInvalid(message)) => {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
            assert_eq!(e.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
        }
        other => panic!("expected TopicNameInvalid({fragment:?}), got {other:?}"),
    }
}

const TRUNCATED: &str = "field runs past the packet";
const TRAILING: &str = "bytes left over";
const BAD_FLAGS: &str = "flag bits";
const NOT_ALLOWED: &str = "property not allowed";
const DUPLICATE: &str = "more than once";
const NOT_UTF8: &str = "MQTT-1.5.4-1";
const NUL: &str = "MQTT-1.5.4-2";
const ZERO_ID: &str = "packet identifier is 0";

fn s(v: &str) -> ByteString {
    ByteString::from(v)
}

fn b(v: &[u8]) -> Bytes {
    Bytes::copy_from_slice(v)
}

fn pid(v: u16) -> PacketId {
    PacketId::new(v).expect("non-zero packet identifier")
}

fn kv(k: &str, v: &str) -> (ByteString, ByteString) {
    (s(k), s(v))
}

fn connect(protocol: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: s(client_id),
        will: None,
        username: None,
        password: None,
    }
}

fn publish(qos: QoS, topic: &str, packet_id: Option<u16>, payload: &[u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: s(topic),
        packet_id: packet_id.map(pid),
        properties: PublishProperties::default(),
        payload: b(payload),
    }
}

/// A CONNECT body prefix (protocol name, level, flags, keep alive 60) for `version`.
fn connect_header(version: ProtocolVersion, flags: u8) -> String {
    match version {
        V31 => format!("<'MQIsdp'> 03 {flags:02x} 00 3c"),
        V311 => format!("<'MQTT'> 04 {flags:02x} 00 3c"),
        V5 => format!("<'MQTT'> 05 {flags:02x} 00 3c []"),
    }
}

// ---------------------------------------------------------------------------------------------
// Valid vectors: MQTT 3.1.1
// ---------------------------------------------------------------------------------------------

#[test]
fn vector_v311_connect_minimal() {
    connect_vector(
        "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63",
        &connect(V311, "abc"),
    );
}

#[test]
fn mqtt311_3_1_3_1_connect_with_every_payload_field_in_order() {
    // Flags 0xEC: user name, password, will retain, will QoS 1, will flag; clean session 0.
    let expected = Connect {
        clean_start: false,
        keep_alive: 10,
        will: Some(LastWill {
            topic: s("w/t"),
            payload: b(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        }),
        username: Some(s("u")),
        password: Some(b(b"pw")),
        ..connect(V311, "c1")
    };
    connect_vector(
        "10 1f 00 04 4d 51 54 54 04 ec 00 0a 00 02 63 31 00 03 77 2f 74 00 03 62 79 65 \
         00 01 75 00 02 70 77",
        &expected,
    );
}

#[test]
fn vector_v311_connack() {
    let present = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    vector(V311, "20 02 01 00", &Packet::ConnAck(present));
    let refused = ConnAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ConnAck::default()
    };
    vector(V311, "20 02 00 05", &Packet::ConnAck(refused));
}

#[test]
fn vector_v311_publish_qos0() {
    let p = publish(QoS::AtMostOnce, "a/b", None, b"hi");
    vector(V311, "30 07 00 03 61 2f 62 68 69", &Packet::Publish(p));
}

#[test]
fn vector_v311_publish_qos1_dup_retain() {
    let p = Publish {
        dup: true,
        retain: true,
        ..publish(QoS::AtLeastOnce, "a/b", Some(10), b"hi")
    };
    vector(
        V311,
        "3b 09 00 03 61 2f 62 00 0a 68 69",
        &Packet::Publish(p),
    );
}

#[test]
fn vector_v311_publish_qos2() {
    let p = publish(QoS::ExactlyOnce, "a/b", Some(0xabcd), b"hi");
    vector(
        V311,
        "34 09 00 03 61 2f 62 ab cd 68 69",
        &Packet::Publish(p),
    );
}

#[test]
fn mqtt311_s3_3_3_zero_length_payload_is_valid() {
    let p = publish(QoS::AtMostOnce, "a/b", None, b"");
    vector(V311, "30 05 00 03 61 2f 62", &Packet::Publish(p));
}

#[test]
fn vector_v311_acks() {
    let ack = Ack::new(pid(10));
    vector(V311, "40 02 00 0a", &Packet::PubAck(ack.clone()));
    vector(V311, "50 02 00 0a", &Packet::PubRec(ack.clone()));
    vector(V311, "62 02 00 0a", &Packet::PubRel(ack.clone()));
    vector(V311, "70 02 00 0a", &Packet::PubComp(ack));
}

#[test]
fn vector_v311_subscribe() {
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![
            (s("a/+"), SubscriptionOptions::with_qos(QoS::AtLeastOnce)),
            (s("#"), SubscriptionOptions::with_qos(QoS::AtMostOnce)),
        ],
    };
    vector(
        V311,
        "82 0c 00 01 00 03 61 2f 2b 01 00 01 23 00",
        &Packet::Subscribe(sub),
    );
}

#[test]
fn vector_v311_suback() {
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR,
        ],
    };
    vector(V311, "90 06 00 01 00 01 02 80", &Packet::SubAck(ack));
}

#[test]
fn vector_v311_unsubscribe() {
    let u = Unsubscribe {
        packet_id: pid(2),
        user_properties: Vec::new(),
        filters: vec![s("a/b"), s("c")],
    };
    vector(
        V311,
        "a2 0a 00 02 00 03 61 2f 62 00 01 63",
        &Packet::Unsubscribe(u),
    );
}

#[test]
fn mqtt311_s3_11_unsuback_is_packet_id_only() {
    let u = UnsubAck {
        packet_id: pid(2),
        properties: AckProperties::default(),
        reasons: Vec::new(),
    };
    vector(V311, "b0 02 00 02", &Packet::UnsubAck(u));
    assert_malformed(decode(V311, &hex("b0 03 00 02 00")), TRAILING);
}

#[test]
fn vector_v311_ping_and_disconnect() {
    vector(V311, "c0 00", &Packet::PingReq);
    vector(V311, "d0 00", &Packet::PingResp);
    vector(V311, "e0 00", &Packet::Disconnect(Disconnect::default()));
}

// ---------------------------------------------------------------------------------------------
// Valid vectors: MQTT 3.1
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt31_s3_1_name_mqisdp_level_3_connect() {
    connect_vector(
        "10 11 00 06 4d 51 49 73 64 70 03 02 00 1e 00 03 61 62 63",
        &Connect {
            keep_alive: 30,
            ..connect(V31, "abc")
        },
    );
}

#[test]
fn mqtt31_s3_1_name_protocol_name_and_level_select_the_version() {
    for (version, level) in [(V31, 3), (V311, 4), (V5, 5)] {
        let mut d = server();
        let bytes = pkt(0x10, &(connect_header(version, 0x02) + " <'a'>"));
        let Ok(Packet::Connect(c)) = decode_all(&mut d, &bytes) else {
            panic!("level {level} CONNECT rejected");
        };
        assert_eq!(c.protocol, version);
        assert_eq!(d.version(), Some(version));
        assert_eq!(version.level(), level);
    }
}

#[test]
fn vector_v31_publish_subscribe_and_acks() {
    let p = publish(QoS::AtLeastOnce, "a/b", Some(10), b"hi");
    vector(V31, "32 09 00 03 61 2f 62 00 0a 68 69", &Packet::Publish(p));
    vector(V31, "62 02 00 0a", &Packet::PubRel(Ack::new(pid(10))));
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters: vec![(s("a"), SubscriptionOptions::with_qos(QoS::ExactlyOnce))],
    };
    vector(V31, "82 06 00 01 00 01 61 02", &Packet::Subscribe(sub));
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::GRANTED_QOS_2],
    };
    vector(V31, "90 03 00 01 02", &Packet::SubAck(ack));
}

#[test]
fn mqtt31_s3_1_connack_first_byte_is_sent_as_zero() {
    let c = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    assert_eq!(encode(&Packet::ConnAck(c), V31), hex("20 02 00 00"));
    assert_eq!(
        encode(&Packet::ConnAck(ConnAck::default()), V31),
        hex("20 02 00 00")
    );
    vector(V31, "20 02 00 00", &Packet::ConnAck(ConnAck::default()));
}

#[test]
fn mqtt31_s3_1_connack_has_no_session_present_flag() {
    // The first CONNACK byte is unused in 3.1: whatever a peer puts there is not a Session
    // Present flag, so decoding and re-encoding agree.
    for first in ["01", "80", "ff"] {
        let bytes = hex(&format!("20 02 {first} 00"));
        let decoded = decode(V31, &bytes);
        assert_eq!(decoded, Ok(Packet::ConnAck(ConnAck::default())), "{first}");
        assert_eq!(encode(&decoded.unwrap(), V31), hex("20 02 00 00"));
    }
    let refused = decode(V31, &hex("20 02 01 02"));
    let expected = ConnAck {
        reason: ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        ..ConnAck::default()
    };
    assert_eq!(refused, Ok(Packet::ConnAck(expected)));
}

#[test]
fn mqtt31_s3_1_flags_dup_is_accepted_on_pubrel_subscribe_unsubscribe() {
    let ack = Ack::new(pid(10));
    assert_eq!(
        decode(V31, &hex("6a 02 00 0a")),
        Ok(Packet::PubRel(ack.clone()))
    );
    let sub = decode(V31, &pkt(0x8a, "00 01 <'a'> 01"));
    assert!(matches!(sub, Ok(Packet::Subscribe(ref s)) if s.filters.len() == 1));
    let unsub = decode(V31, &pkt(0xaa, "00 01 <'a'>"));
    assert!(matches!(unsub, Ok(Packet::Unsubscribe(ref u)) if u.filters == [s("a")]));
    // Only those three: DUP on a PUBACK is still a bad flag, and 3.1.1 / 5.0 reject DUP on them.
    assert_malformed(decode(V31, &hex("48 02 00 0a")), BAD_FLAGS);
    for version in [V311, V5] {
        assert_malformed(decode(version, &hex("6a 02 00 0a")), BAD_FLAGS);
    }
}

#[test]
fn mqtt31_s3_1_flags_qos3_publish_is_still_invalid() {
    assert_malformed(decode(V31, &pkt(0x36, "<'a'> 00 01")), "MQTT-3.3.1-4");
}

#[test]
fn mqtt31_s3_1_suback_refusals_use_0x80() {
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::UNSPECIFIED_ERROR],
    };
    vector(V31, "90 03 00 01 80", &Packet::SubAck(ack));
    let refused = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::NOT_AUTHORIZED],
    };
    assert_eq!(encode(&Packet::SubAck(refused), V31), hex("90 03 00 01 80"));
}

#[test]
fn mqtt31_s3_1_strings_utf8_rules_apply_to_3_1_too() {
    assert_malformed(decode(V31, &pkt(0x30, "<c3 28>")), NOT_UTF8);
    assert_malformed(decode(V31, &pkt(0x30, "<61 00 62>")), NUL);
}

// ---------------------------------------------------------------------------------------------
// Valid vectors: MQTT 5.0
// ---------------------------------------------------------------------------------------------

#[test]
fn vector_v5_connect_minimal() {
    connect_vector(
        "10 10 00 04 4d 51 54 54 05 02 00 3c 00 00 03 61 62 63",
        &connect(V5, "abc"),
    );
}

#[test]
fn mqtt5_3_1_3_1_connect_with_properties_and_will() {
    // Flags 0x96: user name, will QoS 2, will flag, clean start.
    let expected = Connect {
        properties: ConnectProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(20),
            user_properties: vec![kv("k", "v")],
            ..ConnectProperties::default()
        },
        will: Some(LastWill {
            topic: s("w"),
            payload: b(b"x"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties {
                will_delay_interval: Some(5),
                message: PublishProperties {
                    payload_format_indicator: Some(true),
                    ..PublishProperties::default()
                },
            },
        }),
        username: Some(s("u")),
        ..connect(V5, "abc")
    };
    connect_vector(
        "10 30 00 04 4d 51 54 54 05 96 00 3c \
         0f 11 00 00 00 78 21 00 14 26 00 01 6b 00 01 76 \
         00 03 61 62 63 \
         07 18 00 00 00 05 01 01 \
         00 01 77 00 01 78 00 01 75",
        &expected,
    );
}

#[test]
fn vector_v5_connect_enhanced_authentication() {
    let expected = Connect {
        properties: ConnectProperties {
            maximum_packet_size: Some(1024),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(b(b"\x00\x01")),
            ..ConnectProperties::default()
        },
        ..connect(V5, "")
    };
    connect_vector(
        "10 26 <'MQTT'> 05 02 00 3c \
         19 27 00 00 04 00 22 00 0a 19 01 17 00 15 <'SCRAM'> 16 <00 01> \
         <>",
        &expected,
    );
}

#[test]
fn vector_v5_connack() {
    vector(V5, "20 03 00 00 00", &Packet::ConnAck(ConnAck::default()));
    let refused = ConnAck {
        reason: ReasonCode::NOT_AUTHORIZED,
        ..ConnAck::default()
    };
    vector(V5, "20 03 00 87 00", &Packet::ConnAck(refused));
    let full = ConnAck {
        session_present: true,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            assigned_client_identifier: Some(s("id")),
            topic_alias_maximum: Some(10),
            ..ConnAckProperties::default()
        },
    };
    vector(
        V5,
        "20 0f 01 00 0c 24 01 25 00 12 00 02 69 64 22 00 0a",
        &Packet::ConnAck(full),
    );
}

#[test]
fn vector_v5_connack_every_property() {
    let full = ConnAck {
        session_present: false,
        reason: ReasonCode::USE_ANOTHER_SERVER,
        properties: ConnAckProperties {
            session_expiry_interval: Some(0xffff_ffff),
            receive_maximum: Some(100),
            maximum_qos: Some(QoS::AtMostOnce),
            retain_available: Some(true),
            maximum_packet_size: Some(65536),
            assigned_client_identifier: Some(s("c")),
            topic_alias_maximum: Some(5),
            reason_string: Some(s("r")),
            user_properties: vec![kv("a", "1"), kv("a", "2")],
            wildcard_subscription_available: Some(false),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some(s("ri")),
            server_reference: Some(s("h:1")),
            authentication_method: Some(s("m")),
            authentication_data: Some(b(b"d")),
        },
    };
    let props = "11 ff ff ff ff 21 00 64 24 00 25 01 27 00 01 00 00 12 <'c'> 22 00 05 \
                 1f <'r'> 26 <'a'> <'1'> 26 <'a'> <'2'> 28 00 29 01 2a 00 13 00 1e \
                 1a <'ri'> 1c <'h:1'> 15 <'m'> 16 <'d'>";
    let bytes = pkt(0x20, &format!("00 9c [{props}]"));
    assert_eq!(
        decode(V5, &bytes),
        Ok(Packet::ConnAck(full.clone())),
        "decode"
    );
    assert_eq!(encode(&Packet::ConnAck(full), V5), bytes, "encode");
}

#[test]
fn vector_v5_publish_qos0() {
    let p = publish(QoS::AtMostOnce, "a/b", None, b"hi");
    vector(V5, "30 08 00 03 61 2f 62 00 68 69", &Packet::Publish(p));
}

#[test]
fn vector_v5_publish_every_property() {
    let p = Publish {
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            response_topic: Some(s("r")),
            correlation_data: Some(b(b"c")),
            user_properties: vec![kv("k", "v")],
            subscription_identifiers: vec![5],
            content_type: Some(s("t")),
        },
        ..publish(QoS::AtLeastOnce, "a/b", Some(1), b"hi")
    };
    vector(
        V5,
        "32 29 00 03 61 2f 62 00 01 1f 01 01 02 00 00 00 3c 23 00 03 08 00 01 72 \
         09 00 01 63 26 00 01 6b 00 01 76 0b 05 03 00 01 74 68 69",
        &Packet::Publish(p),
    );
}

#[test]
fn v5_empty_topic_with_alias_decodes() {
    // An empty topic name is legal in 5.0 when a Topic Alias stands for it; whether the alias
    // is known is the receiver's business.
    let p = Publish {
        properties: PublishProperties {
            topic_alias: Some(5),
            ..PublishProperties::default()
        },
        ..publish(QoS::AtMostOnce, "", None, b"x")
    };
    vector(V5, "30 07 00 00 03 23 00 05 78", &Packet::Publish(p));
}

#[test]
fn mqtt5_s3_3_3_zero_length_payload_is_valid() {
    let p = publish(QoS::ExactlyOnce, "a", Some(7), b"");
    vector(V5, "34 06 00 01 61 00 07 00", &Packet::Publish(p));
}

#[test]
fn vector_v5_acks() {
    let ok = Ack::new(pid(10));
    vector(V5, "40 02 00 0a", &Packet::PubAck(ok.clone()));
    vector(V5, "50 02 00 0a", &Packet::PubRec(ok.clone()));
    vector(V5, "62 02 00 0a", &Packet::PubRel(ok.clone()));
    vector(V5, "70 02 00 0a", &Packet::PubComp(ok));
    let quota = Ack::with_reason(pid(10), ReasonCode::QUOTA_EXCEEDED);
    vector(V5, "40 03 00 0a 97", &Packet::PubAck(quota));
    let not_found = Ack::with_reason(pid(10), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
    vector(V5, "62 03 00 0a 92", &Packet::PubRel(not_found.clone()));
    vector(V5, "70 03 00 0a 92", &Packet::PubComp(not_found));
    let with_props = Ack {
        packet_id: pid(10),
        reason: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        properties: AckProperties {
            reason_string: Some(s("x")),
            user_properties: Vec::new(),
        },
    };
    vector(
        V5,
        "50 08 00 0a 10 04 1f 00 01 78",
        &Packet::PubRec(with_props),
    );
}

#[test]
fn vector_v5_subscribe() {
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties {
            subscription_identifier: Some(7),
            user_properties: vec![kv("k", "v")],
        },
        filters: vec![(
            s("a/#"),
            SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        )],
    };
    vector(
        V5,
        "82 12 00 01 09 0b 07 26 00 01 6b 00 01 76 00 03 61 2f 23 2e",
        &Packet::Subscribe(sub),
    );
}

#[test]
fn vector_v5_subscribe_every_option_combination() {
    for qos in 0..3u8 {
        for nl in 0..2u8 {
            for rap in 0..2u8 {
                for rh in 0..3u8 {
                    let byte = qos | nl << 2 | rap << 3 | rh << 4;
                    let bytes = pkt(0x82, &format!("00 01 [] <'a'> {byte:02x}"));
                    let Ok(Packet::Subscribe(sub)) = decode(V5, &bytes) else {
                        panic!("options {byte:#04x} rejected");
                    };
                    let options = sub.filters[0].1;
                    assert_eq!(options.qos as u8, qos);
                    assert_eq!(options.no_local, nl == 1);
                    assert_eq!(options.retain_as_published, rap == 1);
                    assert_eq!(options.retain_handling as u8, rh);
                    assert_eq!(encode(&Packet::Subscribe(sub), V5), bytes);
                }
            }
        }
    }
}

#[test]
fn vector_v5_suback() {
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        ],
    };
    vector(V5, "90 07 00 01 00 00 02 8f a2", &Packet::SubAck(ack));
}

#[test]
fn vector_v5_unsubscribe() {
    let u = Unsubscribe {
        packet_id: pid(2),
        user_properties: vec![kv("k", "v")],
        filters: vec![s("a/b"), s("c")],
    };
    vector(
        V5,
        "a2 12 00 02 07 26 00 01 6b 00 01 76 00 03 61 2f 62 00 01 63",
        &Packet::Unsubscribe(u),
    );
}

#[test]
fn vector_v5_unsuback() {
    let u = UnsubAck {
        packet_id: pid(2),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
    };
    vector(V5, "b0 05 00 02 00 00 11", &Packet::UnsubAck(u));
}

#[test]
fn vector_v5_ping() {
    vector(V5, "c0 00", &Packet::PingReq);
    vector(V5, "d0 00", &Packet::PingResp);
}

#[test]
fn vector_v5_disconnect() {
    vector(V5, "e0 00", &Packet::Disconnect(Disconnect::default()));
    let with_will = Disconnect::with_reason(ReasonCode::DISCONNECT_WITH_WILL);
    vector(V5, "e0 02 04 00", &Packet::Disconnect(with_will));
    let expiry = Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(3600),
            ..DisconnectProperties::default()
        },
    };
    vector(
        V5,
        "e0 07 00 05 11 00 00 0e 10",
        &Packet::Disconnect(expiry),
    );
    let moved = Disconnect {
        reason: ReasonCode::USE_ANOTHER_SERVER,
        properties: DisconnectProperties {
            server_reference: Some(s("host2")),
            ..DisconnectProperties::default()
        },
    };
    vector(
        V5,
        "e0 0a 9c 08 1c 00 05 68 6f 73 74 32",
        &Packet::Disconnect(moved),
    );
}

#[test]
fn vector_v5_auth() {
    let auth = Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: AuthProperties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(b(b"x")),
            reason_string: None,
            user_properties: Vec::new(),
        },
    };
    vector(
        V5,
        "f0 0e 18 0c 15 00 05 53 43 52 41 4d 16 00 01 78",
        &Packet::Auth(auth),
    );
}

// ---------------------------------------------------------------------------------------------
// Fixed header: packet types and flags
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_s2_2_1_reserved_packet_types_0_and_15_close() {
    for version in V3 {
        assert_malformed(decode(version, &hex("00 00")), "reserved packet type");
        assert_malformed(decode(version, &hex("f0 00")), "reserved packet type");
        assert_malformed(
            decode(version, &pkt(0xf0, "00 [15 <'m'>]")),
            "reserved packet type",
        );
    }
}

#[test]
fn mqtt5_s2_1_2_packet_type_0_is_malformed() {
    assert_malformed(decode(V5, &hex("00 00")), "reserved packet type");
    assert_malformed(decode(V5, &hex("00 02 00 01")), "reserved packet type");
    // Type 15 is AUTH in 5.0.
    assert!(matches!(
        decode(V5, &pkt(0xf0, "00 [15 <'m'>]")),
        Ok(Packet::Auth(_))
    ));
}

/// One valid body per packet type other than PUBLISH, with the flags it must carry.
fn typed_bodies(version: ProtocolVersion) -> Vec<(u8, u8, String)> {
    let v5 = version.is_v5();
    let props = if v5 { "[]" } else { "" };
    let mut out = vec![
        (1, 0, connect_header(version, 0x02) + " <'a'>"),
        (2, 0, format!("00 00 {props}")),
        (4, 0, "00 01".into()),
        (5, 0, "00 01".into()),
        (6, 2, "00 01".into()),
        (7, 0, "00 01".into()),
        (8, 2, format!("00 01 {props} <'a'> 00")),
        (9, 0, format!("00 01 {props} 00")),
        (10, 2, format!("00 01 {props} <'a'>")),
        (11, 0, if v5 { "00 01 [] 00" } else { "00 01" }.into()),
        (12, 0, String::new()),
        (13, 0, String::new()),
        (14, 0, String::new()),
    ];
    if v5 {
        out.push((15, 0, "00 [15 <'m'>]".into()));
    }
    out
}

/// Decodes every packet type with every flag nibble: only the table value (and, in 3.1, DUP on
/// PUBREL, SUBSCRIBE, UNSUBSCRIBE) is accepted.
fn check_fixed_header_flags(version: ProtocolVersion) {
    for (packet_type, flags, body) in typed_bodies(version) {
        for nibble in 0..16u8 {
            let bytes = pkt(packet_type << 4 | nibble, &body);
            let result = decode(version, &bytes);
            let v31_dup = version == V31 && flags == 2 && nibble == 0b1010;
            if nibble == flags || v31_dup {
                let packet = result.unwrap_or_else(|e| panic!("type {packet_type}: {e}"));
                assert_eq!(packet.packet_type() as u8, packet_type);
            } else {
                assert_malformed(result, BAD_FLAGS);
            }
        }
    }
}

#[test]
fn mqtt311_2_2_2_2_bad_flags_close() {
    check_fixed_header_flags(V311);
}

#[test]
fn mqtt31_s3_1_flags_table_flags_with_dup_allowance() {
    check_fixed_header_flags(V31);
}

#[test]
fn mqtt5_2_1_3_1_bad_flags_are_malformed() {
    check_fixed_header_flags(V5);
}

#[test]
fn mqtt311_3_6_1_1_pubrel_flags_must_be_0010() {
    assert_malformed(decode(V311, &hex("60 02 00 01")), BAD_FLAGS);
    assert_malformed(decode(V311, &hex("63 02 00 01")), BAD_FLAGS);
    assert!(decode(V311, &hex("62 02 00 01")).is_ok());
}

#[test]
fn mqtt5_3_6_1_1_pubrel_flags_must_be_0010() {
    assert_malformed(decode(V5, &hex("60 02 00 01")), BAD_FLAGS);
    assert_malformed(decode(V5, &hex("64 02 00 01")), BAD_FLAGS);
    assert!(decode(V5, &hex("62 02 00 01")).is_ok());
}

#[test]
fn mqtt311_3_8_1_1_subscribe_flags_must_be_0010() {
    assert_malformed(decode(V311, &pkt(0x80, "00 01 <'a'> 00")), BAD_FLAGS);
    assert_malformed(decode(V311, &pkt(0x8a, "00 01 <'a'> 00")), BAD_FLAGS);
}

#[test]
fn mqtt5_3_8_1_1_subscribe_flags_must_be_0010() {
    assert_malformed(decode(V5, &pkt(0x80, "00 01 [] <'a'> 00")), BAD_FLAGS);
    assert_malformed(decode(V5, &pkt(0x83, "00 01 [] <'a'> 00")), BAD_FLAGS);
}

#[test]
fn mqtt311_3_10_1_1_unsubscribe_flags_must_be_0010() {
    assert_malformed(decode(V311, &pkt(0xa0, "00 01 <'a'>")), BAD_FLAGS);
    assert_malformed(decode(V311, &pkt(0xa6, "00 01 <'a'>")), BAD_FLAGS);
}

#[test]
fn mqtt5_3_10_1_1_unsubscribe_flags_must_be_0010() {
    assert_malformed(decode(V5, &pkt(0xa0, "00 01 [] <'a'>")), BAD_FLAGS);
    assert_malformed(decode(V5, &pkt(0xab, "00 01 [] <'a'>")), BAD_FLAGS);
}

#[test]
fn mqtt311_3_14_1_1_disconnect_flags_must_be_0() {
    assert_malformed(decode(V311, &hex("e1 00")), "MQTT-3.14.1-1");
    assert_malformed(decode(V311, &hex("e8 00")), "MQTT-3.14.1-1");
}

#[test]
fn mqtt5_3_14_1_1_disconnect_flags_must_be_0() {
    assert_malformed(decode(V5, &hex("e2 00")), "MQTT-3.14.1-1");
    assert_malformed(decode(V5, &hex("e2 01 00")), "MQTT-3.14.1-1");
}

#[test]
fn mqtt5_3_15_1_1_auth_flags_must_be_0() {
    assert_malformed(decode(V5, &pkt(0xf1, "00 [15 <'m'>]")), "MQTT-3.15.1-1");
    assert_malformed(decode(V5, &pkt(0xf2, "00 [15 <'m'>]")), "MQTT-3.15.1-1");
}

#[test]
fn connect_flags_nibble_is_checked_before_and_after_the_version_is_known() {
    let body = connect_header(V311, 0x02) + " <'a'>";
    assert_malformed(decode_server(&pkt(0x11, &body)), BAD_FLAGS);
    assert_malformed(decode(V311, &pkt(0x18, &body)), BAD_FLAGS);
}

#[test]
fn mqtt5_2_1_3_1_encoder_emits_table_flags() {
    let ack = Ack::new(pid(1));
    let first_bytes = [
        (Packet::Connect(Box::new(connect(V5, "a"))), 0x10),
        (Packet::ConnAck(ConnAck::default()), 0x20),
        (Packet::PubAck(ack.clone()), 0x40),
        (Packet::PubRec(ack.clone()), 0x50),
        (Packet::PubRel(ack.clone()), 0x62),
        (Packet::PubComp(ack), 0x70),
        (
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: SubscribeProperties::default(),
                filters: vec![(s("a"), SubscriptionOptions::default())],
            }),
            0x82,
        ),
        (
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reasons: vec![ReasonCode::SUCCESS],
            }),
            0x90,
        ),
        (
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(1),
                user_properties: Vec::new(),
                filters: vec![s("a")],
            }),
            0xa2,
        ),
        (
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                properties: AckProperties::default(),
                reasons: vec![ReasonCode::SUCCESS],
            }),
            0xb0,
        ),
        (Packet::PingReq, 0xc0),
        (Packet::PingResp, 0xd0),
        (Packet::Disconnect(Disconnect::default()), 0xe0),
    ];
    for version in ALL_VERSIONS {
        for (packet, first) in &first_bytes {
            assert_eq!(
                encode(packet, version)[0],
                *first,
                "{packet:?} in {version}"
            );
        }
    }
    let auth = Packet::Auth(Auth {
        properties: AuthProperties {
            authentication_method: Some(s("m")),
            ..AuthProperties::default()
        },
        ..Auth::default()
    });
    assert_eq!(encode(&auth, V5)[0], 0xf0);
}

#[test]
fn mqtt311_2_2_2_1_publish_flags_carry_dup_qos_retain() {
    for (first, dup, qos, retain) in [
        (0x30, false, QoS::AtMostOnce, false),
        (0x31, false, QoS::AtMostOnce, true),
        (0x32, false, QoS::AtLeastOnce, false),
        (0x3a, true, QoS::AtLeastOnce, false),
        (0x35, false, QoS::ExactlyOnce, true),
        (0x3d, true, QoS::ExactlyOnce, true),
    ] {
        let id = (qos != QoS::AtMostOnce).then_some(1);
        let p = Publish {
            dup,
            retain,
            ..publish(qos, "t", id, b"")
        };
        let body = if id.is_some() { "<'t'> 00 01" } else { "<'t'>" };
        let bytes = pkt(first, body);
        assert_eq!(decode(V311, &bytes), Ok(Packet::Publish(p.clone())));
        assert_eq!(encode(&Packet::Publish(p), V311), bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Remaining Length and Variable Byte Integers
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt5_1_5_5_1_non_minimal_remaining_length_is_malformed() {
    for bytes in ["c0 80 00", "30 ff 00", "30 80 80 00", "30 80 80 80 00"] {
        assert_malformed(decode(V5, &hex(bytes)), "MQTT-1.5.5-1");
    }
}

#[test]
fn mqtt5_1_5_5_1_non_minimal_property_length_and_values_are_malformed() {
    // Property Length 0 written as 80 00.
    assert_malformed(
        decode(V5, &hex("30 07 00 01 61 80 00 78 79")),
        "MQTT-1.5.5-1",
    );
    // Subscription Identifier 1 written as 81 00.
    assert_malformed(
        decode(V5, &pkt(0x82, "00 01 03 0b 81 00 <'a'> 00")),
        "MQTT-1.5.5-1",
    );
}

#[test]
fn v311_non_minimal_remaining_length_is_rejected() {
    assert_malformed(decode(V311, &hex("c0 80 00")), "MQTT-1.5.5-1");
    assert_malformed(decode_server(&hex("10 80 00")), "MQTT-1.5.5-1");
}

#[test]
fn mqtt5_s1_5_5_fifth_length_byte_is_malformed() {
    assert_malformed(decode(V5, &hex("30 ff ff ff ff 01")), "exceeds 4 bytes");
    // Rejected as soon as the fifth byte is seen, without waiting for a terminator.
    let mut buf = BytesMut::from(&hex("30 80 80 80 80")[..]);
    assert_malformed(
        dec(V5).decode(&mut buf).map(Option::unwrap),
        "exceeds 4 bytes",
    );
    // Three continuation bytes are merely incomplete.
    let mut buf = BytesMut::from(&hex("30 80 80 80")[..]);
    assert_eq!(dec(V5).decode(&mut buf), Ok(None));
}

#[test]
fn mqtt311_s2_2_3_fifth_remaining_length_byte_closes() {
    assert_malformed(decode(V311, &hex("30 ff ff ff ff 01")), "exceeds 4 bytes");
    assert_malformed(decode_server(&hex("10 80 80 80 80 01")), "exceeds 4 bytes");
}

#[test]
fn mqtt5_1_5_5_1_encoder_writes_minimal_remaining_length() {
    // PUBLISH QoS 0 with topic "a" (3 bytes) in 3.1.1: body = 3 + payload.
    for (body_len, header) in [
        (3usize, "03"),
        (127, "7f"),
        (128, "80 01"),
        (16_383, "ff 7f"),
        (16_384, "80 80 01"),
        (2_097_151, "ff ff 7f"),
        (2_097_152, "80 80 80 01"),
    ] {
        let payload = vec![0x55; body_len - 3];
        let p = Packet::Publish(publish(QoS::AtMostOnce, "a", None, &payload));
        let bytes = encode(&p, V311);
        let header = hex(header);
        assert_eq!(bytes[0], 0x30);
        assert_eq!(&bytes[1..=header.len()], &header[..], "body of {body_len}");
        assert_eq!(bytes.len(), 1 + header.len() + body_len);
        assert_eq!(decode(V311, &bytes), Ok(p));
    }
}

#[test]
fn mqtt5_s1_5_5_largest_subscription_identifier_uses_four_bytes() {
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties {
            subscription_identifier: Some(MAX_REMAINING_LENGTH),
            user_properties: Vec::new(),
        },
        filters: vec![(s("a"), SubscriptionOptions::default())],
    };
    vector(
        V5,
        "82 0c 00 01 05 0b ff ff ff 7f 00 01 61 00",
        &Packet::Subscribe(sub),
    );
}

// ---------------------------------------------------------------------------------------------
// Maximum packet size
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt5_3_2_2_15_oversized_packet_is_rejected_from_the_fixed_header_alone() {
    // Only the five header bytes of a 256 MiB PUBLISH are available.
    let mut d = Decoder::with_version(V5, 1024);
    let mut buf = BytesMut::from(&hex("30 ff ff ff 7f")[..]);
    let e = d.decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(d.frame_len(&buf), Err(e));
    // Two header bytes are enough as soon as the length is complete.
    let mut buf = BytesMut::from(&hex("30 81 08")[..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 1028,
            max: 1024
        })
    );
}

#[test]
fn maximum_packet_size_counts_the_whole_packet() {
    let exact = hex("30 08 00 03 61 2f 62 78 79 7a");
    let mut d = Decoder::with_version(V311, 10);
    assert!(decode_all(&mut d, &exact).is_ok());
    let mut d = Decoder::with_version(V311, 9);
    assert_eq!(
        decode_all(&mut d, &exact),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    );
}

#[test]
fn maximum_packet_size_applies_before_connect() {
    let mut d = Decoder::new(64);
    let mut buf = BytesMut::from(&hex("10 ff 7f")[..]);
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 16_386,
            max: 64
        })
    );
    assert_eq!(d.version(), None);
}

#[test]
fn the_largest_possible_packet_waits_for_its_body() {
    let d = server();
    assert_eq!(d.max_packet_size(), MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&hex("10 ff ff ff 7f")[..]);
    assert_eq!(d.frame_len(&buf), Ok(Some(MAX_PACKET_SIZE as usize)));
    assert_eq!(server().decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 5);
}

#[test]
fn maximum_packet_size_is_capped_at_the_protocol_limit() {
    assert_eq!(Decoder::new(u32::MAX).max_packet_size(), MAX_PACKET_SIZE);
    let mut d = Decoder::with_version(V5, 100);
    assert_eq!(d.max_packet_size(), 100);
    d.set_max_packet_size(u32::MAX);
    assert_eq!(d.max_packet_size(), MAX_PACKET_SIZE);
    d.set_max_packet_size(4);
    let mut buf = BytesMut::from(&hex("c0 00 c0 00")[..]);
    assert_eq!(d.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(d.frame_len(&hex("40 02")), Ok(Some(4)));
    assert_eq!(
        d.frame_len(&hex("40 03")),
        Err(DecodeError::PacketTooLarge { size: 5, max: 4 })
    );
}

// ---------------------------------------------------------------------------------------------
// Strings, integers, binary data
// ---------------------------------------------------------------------------------------------

/// Ill-formed UTF-8: a lone continuation, a truncated sequence, an overlong encoding, a
/// surrogate (U+D800 as ED A0 80), a code point above U+10FFFF, a byte that never occurs.
const ILL_FORMED: [&str; 6] = [
    "c3 28",
    "61 e2 82",
    "c0 af",
    "ed a0 80",
    "f4 90 80 80",
    "ff",
];

#[test]
fn mqtt311_1_5_3_1_ill_formed_utf8_topic_closes() {
    for raw in ILL_FORMED {
        assert_malformed(decode(V311, &pkt(0x30, &format!("<{raw}>"))), NOT_UTF8);
    }
}

#[test]
fn mqtt5_1_5_4_1_ill_formed_utf8_is_malformed() {
    for raw in ILL_FORMED {
        assert_malformed(decode(V5, &pkt(0x30, &format!("<{raw}> []"))), NOT_UTF8);
    }
}

#[test]
fn mqtt5_1_5_4_1_surrogate_in_any_string_is_malformed() {
    let sur = "<ed a0 80>";
    for bytes in [
        pkt(0x10, &format!("<'MQTT'> 05 02 00 3c [] {sur}")),
        pkt(0x10, &format!("<'MQTT'> 05 82 00 3c [] <'a'> {sur}")),
        pkt(0x30, &format!("<'a'> [03 {sur}]")),
        pkt(0x82, &format!("00 01 [] {sur} 00")),
        pkt(0xa2, &format!("00 01 [] {sur}")),
        pkt(0x40, &format!("00 01 00 [1f {sur}]")),
        pkt(0xe0, &format!("00 [1c {sur}]")),
    ] {
        assert_malformed(decode(V5, &bytes), NOT_UTF8);
    }
}

#[test]
fn mqtt311_1_5_3_2_nul_in_string_closes() {
    assert_malformed(decode(V311, &pkt(0x30, "<61 00 62>")), NUL);
    assert_malformed(decode(V311, &pkt(0x82, "00 01 <00> 00")), NUL);
}

#[test]
fn mqtt5_1_5_4_2_string_with_nul_is_malformed() {
    assert_malformed(decode(V5, &pkt(0x30, "<61 00 62> []")), NUL);
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [03 <00>]")), NUL);
    assert_malformed(
        decode_server(&pkt(0x10, "<'MQTT'> 05 02 00 3c [] <00>")),
        NUL,
    );
}

#[test]
fn mqtt311_4_7_3_2_topic_and_filter_must_not_contain_nul() {
    assert_malformed(decode(V311, &pkt(0x30, "<'a/' 00>")), NUL);
    assert_malformed(decode(V311, &pkt(0xa2, "00 01 <'a/' 00>")), NUL);
}

#[test]
fn mqtt5_4_7_3_2_topic_and_filter_must_not_contain_nul() {
    assert_malformed(decode(V5, &pkt(0x30, "<'a/' 00> []")), NUL);
    assert_malformed(decode(V5, &pkt(0x82, "00 01 [] <00 '#'> 00")), NUL);
}

#[test]
fn mqtt311_1_5_3_3_bom_is_kept_in_topic() {
    let p = publish(QoS::AtMostOnce, "\u{feff}a", None, b"");
    vector(V311, "30 06 00 04 ef bb bf 61", &Packet::Publish(p.clone()));
    assert_ne!(p.topic, "a");
}

#[test]
fn mqtt5_1_5_4_3_bom_is_kept_in_topic() {
    let p = publish(QoS::AtMostOnce, "\u{feff}a/b", None, b"");
    vector(
        V5,
        "30 09 00 06 ef bb bf 61 2f 62 00",
        &Packet::Publish(p.clone()),
    );
    assert_eq!(p.topic.len(), 6);
    assert!(p.topic.starts_with('\u{feff}'));
}

#[test]
fn disallowed_code_points_are_accepted_by_the_codec() {
    // U+0001, U+007F, U+009F and U+FFFF are discouraged but not forbidden: the codec keeps them
    // and leaves any policy to the broker.
    let topic = "\u{1}\u{7f}\u{9f}\u{ffff}";
    let p = publish(QoS::AtMostOnce, topic, None, b"");
    let bytes = pkt(0x30, &format!("<'{topic}'> []"));
    assert_eq!(decode(V5, &bytes), Ok(Packet::Publish(p)));
}

#[test]
fn mqtt5_s1_5_4_string_length_past_packet_is_malformed() {
    assert_malformed(decode(V5, &hex("30 04 00 05 61 62")), TRUNCATED);
    assert_malformed(
        decode(V5, &pkt(0x40, "00 01 00 [1f 00 09 'ab']")),
        TRUNCATED,
    );
}

#[test]
fn mqtt311_s1_5_3_string_length_past_packet_closes() {
    assert_malformed(decode(V311, &hex("30 04 00 05 61 62")), TRUNCATED);
    assert_malformed(decode(V311, &hex("a2 04 00 01 00 02")), TRUNCATED);
}

#[test]
fn mqtt5_s1_5_2_truncated_integers_are_malformed() {
    // Session Expiry Interval with two of its four bytes.
    assert_malformed(
        decode_server(&pkt(0x10, "<'MQTT'> 05 02 00 3c [11 00 00] <'a'>")),
        TRUNCATED,
    );
    // Keep Alive cut short.
    assert_malformed(decode_server(&pkt(0x10, "<'MQTT'> 05 02 00")), TRUNCATED);
    // Topic Alias with one byte.
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [23 00]")), TRUNCATED);
}

#[test]
fn mqtt311_s1_5_2_integers_are_big_endian() {
    let Ok(Packet::PubAck(ack)) = decode(V311, &hex("40 02 12 34")) else {
        panic!("PUBACK rejected");
    };
    assert_eq!(ack.packet_id.get(), 0x1234);
    let Ok(Packet::Connect(c)) = decode_server(&pkt(0x10, "<'MQTT'> 04 02 01 02 <'a'>")) else {
        panic!("CONNECT rejected");
    };
    assert_eq!(c.keep_alive, 0x0102);
}

#[test]
fn mqtt5_s1_5_6_binary_data_overrun_is_malformed() {
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [09 00 05 'ab']")), TRUNCATED);
    // Will Payload length past the end.
    assert_malformed(
        decode_server(&pkt(
            0x10,
            "<'MQTT'> 05 06 00 3c [] <'a'> [] <'w'> 00 04 'x'",
        )),
        TRUNCATED,
    );
}

#[test]
fn mqtt5_1_5_7_1_user_property_strings_follow_the_string_rules() {
    assert_malformed(decode(V5, &pkt(0x40, "00 0a 00 [26 <00> <'v'>]")), NUL);
    assert_malformed(decode(V5, &pkt(0x40, "00 0a 00 [26 <'k'> <ff>]")), NOT_UTF8);
    assert_malformed(decode(V5, &pkt(0x40, "00 0a 00 [26 <'k'>]")), TRUNCATED);
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// The value bytes of a property of the given identifier, or a byte for unknown ones.
fn property_value(id: u8) -> &'static str {
    match id {
        0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => "01",
        0x02 | 0x11 | 0x18 | 0x27 => "00 00 00 01",
        0x03 | 0x08 | 0x12 | 0x15 | 0x1a | 0x1c | 0x1f => "<'a'>",
        0x09 | 0x16 => "<'d'>",
        0x0b => "01",
        0x13 | 0x21 | 0x22 | 0x23 => "00 01",
        0x26 => "<'k'> <'v'>",
        _ => "01",
    }
}

/// Which identifiers 0x00..=0x7f a packet accepts, given how to build it around one property.
fn accepted_properties(
    version_of: impl Fn(&str) -> Vec<u8>,
    decoder: impl Fn() -> Decoder,
) -> Vec<u8> {
    let mut accepted = Vec::new();
    for id in 0..0x80u8 {
        let prop = format!("{id:02x} {}", property_value(id));
        let result = decode_all(&mut decoder(), &version_of(&prop));
        match result {
            Err(e @ DecodeError::Malformed(m)) if m.contains(NOT_ALLOWED) => {
                assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
            }
            Ok(_) => accepted.push(id),
            Err(e) => panic!("property {id:#04x}: unexpected {e:?}"),
        }
    }
    accepted
}

#[test]
fn mqtt5_s2_2_2_2_only_the_properties_of_table_c_are_allowed() {
    let connect = accepted_properties(
        |p| {
            // Authentication Data needs an Authentication Method.
            let method = if p.starts_with("16") { "15 <'m'>" } else { "" };
            pkt(0x10, &format!("<'MQTT'> 05 02 00 3c [{method} {p}] <'a'>"))
        },
        server,
    );
    assert_eq!(
        connect,
        [0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27]
    );
    let will = accepted_properties(
        |p| {
            pkt(
                0x10,
                &format!("<'MQTT'> 05 06 00 3c [] <'a'> [{p}] <'w'> <>"),
            )
        },
        server,
    );
    assert_eq!(will, [0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26]);
    let connack = accepted_properties(|p| pkt(0x20, &format!("00 00 [{p}]")), || dec(V5));
    assert_eq!(
        connack,
        [
            0x11, 0x12, 0x13, 0x15, 0x16, 0x1a, 0x1c, 0x1f, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27,
            0x28, 0x29, 0x2a
        ]
    );
    let publish = accepted_properties(|p| pkt(0x30, &format!("<'a'> [{p}]")), || dec(V5));
    assert_eq!(publish, [0x01, 0x02, 0x03, 0x08, 0x09, 0x0b, 0x23, 0x26]);
    for first in [0x40, 0x50, 0x62, 0x70] {
        let ack = accepted_properties(|p| pkt(first, &format!("00 01 00 [{p}]")), || dec(V5));
        assert_eq!(ack, [0x1f, 0x26], "first byte {first:#04x}");
    }
    let subscribe =
        accepted_properties(|p| pkt(0x82, &format!("00 01 [{p}] <'a'> 00")), || dec(V5));
    assert_eq!(subscribe, [0x0b, 0x26]);
    let suback = accepted_properties(|p| pkt(0x90, &format!("00 01 [{p}] 00")), || dec(V5));
    assert_eq!(suback, [0x1f, 0x26]);
    let unsubscribe = accepted_properties(|p| pkt(0xa2, &format!("00 01 [{p}] <'a'>")), || dec(V5));
    assert_eq!(unsubscribe, [0x26]);
    let unsuback = accepted_properties(|p| pkt(0xb0, &format!("00 01 [{p}] 00")), || dec(V5));
    assert_eq!(unsuback, [0x1f, 0x26]);
    let disconnect = accepted_properties(|p| pkt(0xe0, &format!("00 [{p}]")), || dec(V5));
    assert_eq!(disconnect, [0x11, 0x1c, 0x1f, 0x26]);
    let auth = accepted_properties(
        |p| {
            let method = if p.starts_with("15") { "" } else { "15 <'m'>" };
            pkt(0xf0, &format!("18 [{method} {p}]"))
        },
        || dec(V5),
    );
    assert_eq!(auth, [0x15, 0x16, 0x1f, 0x26]);
}

#[test]
fn mqtt5_s2_2_2_2_property_not_allowed_is_malformed() {
    // Session Expiry Interval in a PUBLISH.
    assert_malformed(
        decode(V5, &pkt(0x30, "<'a'> [11 00 00 00 01]")),
        NOT_ALLOWED,
    );
    // Topic Alias in a Will.
    assert_malformed(
        decode_server(&pkt(
            0x10,
            "<'MQTT'> 05 06 00 3c [] <'a'> [23 00 01] <'w'> <>",
        )),
        NOT_ALLOWED,
    );
    // Identifier 128 (two bytes) and 0x7f.
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [80 01 00]")), NOT_ALLOWED);
    assert_malformed(decode(V5, &pkt(0x40, "00 01 00 [7f 00]")), NOT_ALLOWED);
}

#[test]
fn mqtt5_s2_2_2_1_property_length_past_packet_is_malformed() {
    assert_malformed(
        decode(V5, &hex("40 04 00 0a 00 05")),
        "property length exceeds",
    );
    assert_malformed(
        decode(V5, &hex("30 05 00 01 61 7f 00")),
        "property length exceeds",
    );
    assert_malformed(
        decode(V5, &hex("20 03 00 00 01")),
        "property length exceeds",
    );
}

#[test]
fn mqtt5_s2_2_2_1_property_value_cannot_run_past_the_property_length() {
    // Message Expiry Interval starts in the property section and would end in the payload.
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [02 00 00] 00 01")), TRUNCATED);
}

#[test]
fn mqtt5_2_2_2_1_property_length_is_always_present() {
    // CONNACK, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK and PUBLISH have no short form.
    assert_malformed(decode(V5, &hex("20 02 00 00")), TRUNCATED);
    assert_malformed(decode(V5, &hex("90 02 00 01")), TRUNCATED);
    assert_malformed(decode(V5, &hex("b0 02 00 01")), TRUNCATED);
    assert_malformed(decode(V5, &hex("30 03 00 01 61")), TRUNCATED);
    assert_malformed(decode_server(&pkt(0x10, "<'MQTT'> 05 02 00 3c")), TRUNCATED);
    // And the encoder writes a zero Property Length.
    assert_eq!(
        encode(&Packet::ConnAck(ConnAck::default()), V5),
        hex("20 03 00 00 00")
    );
    let p = Packet::Publish(publish(QoS::AtMostOnce, "a", None, b""));
    assert_eq!(encode(&p, V5), hex("30 04 00 01 61 00"));
}

#[test]
fn mqtt5_s2_2_2_2_property_order_is_not_significant() {
    let a = decode(V5, &pkt(0x30, "<'a'> [02 00 00 00 05 01 01 23 00 02]"));
    let b = decode(V5, &pkt(0x30, "<'a'> [23 00 02 01 01 02 00 00 00 05]"));
    assert!(a.is_ok());
    assert_eq!(a, b);
}

#[test]
fn mqtt5_s3_x_duplicate_property_is_protocol_error() {
    for (first, body) in [
        (0x30, "<'a'> [02 00 00 00 01 02 00 00 00 02]"),
        (0x40, "00 01 00 [1f <'a'> 1f <'b'>]"),
        (0x20, "00 00 [13 00 01 13 00 02]"),
        (0x20, "00 00 [12 <'a'> 12 <'a'>]"),
        (0xe0, "00 [1c <'a'> 1c <'b'>]"),
        (0x90, "00 01 [1f <'a'> 1f <'a'>] 00"),
    ] {
        assert_protocol(decode(V5, &pkt(first, body)), DUPLICATE);
    }
}

#[test]
fn mqtt5_s3_1_2_11_8_user_properties_may_repeat_with_the_same_name() {
    let bytes = pkt(
        0x10,
        "<'MQTT'> 05 02 00 3c [26 <'k'> <'1'> 26 <'k'> <'2'> 26 <'a'> <'3'>] <'c'>",
    );
    let Ok(Packet::Connect(c)) = decode_server(&bytes) else {
        panic!("CONNECT rejected");
    };
    assert_eq!(
        c.properties.user_properties,
        [kv("k", "1"), kv("k", "2"), kv("a", "3")]
    );
    assert_eq!(encode(&Packet::Connect(c), V5), bytes);
}

#[test]
fn publish_user_property_order_is_preserved() {
    let bytes = pkt(0x30, "<'t'> [26 <'z'> <'1'> 26 <'a'> <'2'> 26 <'z'> <'3'>]");
    let Ok(Packet::Publish(p)) = decode(V5, &bytes) else {
        panic!("PUBLISH rejected");
    };
    assert_eq!(
        p.properties.user_properties,
        [kv("z", "1"), kv("a", "2"), kv("z", "3")]
    );
    assert_eq!(encode(&Packet::Publish(p), V5), bytes);
}

#[test]
fn will_user_property_order_is_preserved() {
    let bytes = pkt(
        0x10,
        "<'MQTT'> 05 06 00 3c [] <'a'> [26 <'b'> <'1'> 26 <'a'> <'2'>] <'w'> <>",
    );
    let Ok(Packet::Connect(c)) = decode_server(&bytes) else {
        panic!("CONNECT rejected");
    };
    let will = c.will.as_ref().unwrap();
    assert_eq!(
        will.properties.message.user_properties,
        [kv("b", "1"), kv("a", "2")]
    );
    assert_eq!(encode(&Packet::Connect(c), V5), bytes);
}

#[test]
fn mqtt5_s3_8_2_1_3_subscribe_user_properties_may_repeat() {
    let bytes = pkt(0x82, "00 01 [26 <'k'> <'v'> 26 <'k'> <'v'>] <'a'> 00");
    let Ok(Packet::Subscribe(sub)) = decode(V5, &bytes) else {
        panic!("SUBSCRIBE rejected");
    };
    assert_eq!(sub.properties.user_properties, [kv("k", "v"), kv("k", "v")]);
}

#[test]
fn mqtt5_s3_10_2_1_2_unsubscribe_user_properties_may_repeat() {
    let bytes = pkt(0xa2, "00 01 [26 <'k'> <'v'> 26 <'k'> <'w'>] <'a'>");
    let Ok(Packet::Unsubscribe(u)) = decode(V5, &bytes) else {
        panic!("UNSUBSCRIBE rejected");
    };
    assert_eq!(u.user_properties, [kv("k", "v"), kv("k", "w")]);
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_3_1_0_1_first_packet_must_be_connect() {
    for bytes in [hex("c0 00"), hex("30 05 00 03 61 2f 62"), hex("e0 00")] {
        assert_protocol(decode_server(&bytes), "MQTT-3.1.0-1");
    }
}

#[test]
fn mqtt5_3_1_0_1_first_packet_must_be_connect() {
    let auth = pkt(0xf0, "18 [15 <'m'>]");
    for bytes in [hex("c0 00"), hex("20 03 00 00 00"), auth] {
        let mut d = server();
        assert_protocol(decode_all(&mut d, &bytes), "MQTT-3.1.0-1");
        assert_eq!(d.version(), None);
    }
}

#[test]
fn second_connect_is_decoded_without_changing_the_version() {
    // The broker rejects it (MQTT-3.1.0-2); the codec only has to decode it faithfully.
    let mut d = dec(V5);
    let bytes = pkt(0x10, &(connect_header(V311, 0x02) + " <'a'>"));
    assert_eq!(
        decode_all(&mut d, &bytes),
        Ok(Packet::Connect(Box::new(connect(V311, "a"))))
    );
    assert_eq!(d.version(), Some(V5));
}

#[test]
fn mqtt311_3_1_2_1_unknown_protocol_name_closes() {
    for name in ["<'MQTX'>", "<'mqtt'>", "<'MQIsdP'>", "<>", "<'MQTTT'>"] {
        let e = decode_server(&pkt(0x10, &format!("{name} 04 02 00 3c <'a'>"))).unwrap_err();
        assert_eq!(e, DecodeError::UnknownProtocolName, "{name}");
        assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
    }
}

#[test]
fn mqtt5_3_1_2_1_unknown_protocol_name_is_rejected() {
    let e = decode_server(&pkt(0x10, "<'HTTP'> 05 02 00 3c [] <'a'>")).unwrap_err();
    assert_eq!(e, DecodeError::UnknownProtocolName);
}

#[test]
fn mqtt311_3_1_2_2_unsupported_level_gets_return_code_1() {
    for level in [0u8, 1, 2, 3, 6, 0xff] {
        let e =
            decode_server(&pkt(0x10, &format!("<'MQTT'> {level:02x} 02 00 3c <'a'>"))).unwrap_err();
        assert_eq!(e, DecodeError::UnsupportedProtocolLevel(level));
        assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(e.reason_code().to_v3_connect_return_code(), 1);
    }
}

#[test]
fn mqtt311_3_1_2_2_bridge_bit_0x84_is_mqtt311_from_a_bridge() {
    // Mosquitto's bridges (`try_private`) set the high bit of the level.
    connect_vector(
        "10 0f 00 04 4d 51 54 54 84 02 00 3c 00 03 61 62 63",
        &Connect {
            properties: ConnectProperties {
                bridge: true,
                ..ConnectProperties::default()
            },
            ..connect(V311, "abc")
        },
    );
}

#[test]
fn mqtt31_s3_1_bridge_bit_0x83_is_mqtt31_from_a_bridge() {
    connect_vector(
        "10 11 00 06 4d 51 49 73 64 70 83 02 00 1e 00 03 61 62 63",
        &Connect {
            keep_alive: 30,
            properties: ConnectProperties {
                bridge: true,
                ..ConnectProperties::default()
            },
            ..connect(V31, "abc")
        },
    );
}

#[test]
fn mqtt311_3_1_2_2_bridge_bit_on_another_level_is_unsupported() {
    // 0x85: MQTT 5 has no bridge bit (bridges use No Local); 0x83 is not a level of `MQTT`.
    for (name, level) in [
        ("MQTT", 0x85u8),
        ("MQTT", 0x83),
        ("MQTT", 0x80),
        ("MQIsdp", 0x84),
    ] {
        let e = decode_server(&pkt(
            0x10,
            &format!("<'{name}'> {level:02x} 02 00 3c <'a'>"),
        ))
        .unwrap_err();
        assert_eq!(
            e,
            DecodeError::UnsupportedProtocolLevel(level),
            "{name} {level:#x}"
        );
    }
}

#[test]
fn mqtt5_connect_never_carries_the_bridge_bit() {
    // An MQTT 5 CONNECT marked as a bridge is encoded with level 5: the mark is 3.x only.
    let c = Connect {
        properties: ConnectProperties {
            bridge: true,
            ..ConnectProperties::default()
        },
        ..connect(V5, "abc")
    };
    let bytes = encode(&Packet::Connect(Box::new(c)), V5);
    assert_eq!(bytes[8], 0x05, "protocol level byte");
    let Ok(Packet::Connect(back)) = decode_server(&bytes) else {
        panic!("level 5 CONNECT rejected");
    };
    assert!(!back.properties.bridge);
}

#[test]
fn mqtt5_3_1_2_2_level_6_is_unsupported_protocol_version() {
    let e = decode_server(&pkt(0x10, "<'MQTT'> 06 02 00 3c [] <'a'>")).unwrap_err();
    assert_eq!(e, DecodeError::UnsupportedProtocolLevel(6));
    assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn mqtt31_s3_1_name_mqisdp_with_another_level_is_unsupported() {
    for level in [4u8, 5] {
        let e = decode_server(&pkt(
            0x10,
            &format!("<'MQIsdp'> {level:02x} 02 00 3c <'a'>"),
        ))
        .unwrap_err();
        assert_eq!(e, DecodeError::UnsupportedProtocolLevel(level));
        assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    }
}

#[test]
fn mqtt311_3_1_2_3_reserved_connect_flag_closes() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x03) + " <'a'>"));
    assert_malformed(decode_server(&bytes), "MQTT-3.1.2-3");
    let bytes = pkt(0x10, &(connect_header(V31, 0x01) + " <'a'>"));
    assert_malformed(decode_server(&bytes), "MQTT-3.1.2-3");
}

#[test]
fn mqtt5_3_1_2_3_reserved_connect_flag_is_malformed() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x03) + " <'a'>"));
    assert_malformed(decode_server(&bytes), "MQTT-3.1.2-3");
}

#[test]
fn mqtt311_3_1_2_13_will_qos_without_will_flag_closes() {
    for flags in [0x0a, 0x12] {
        let bytes = pkt(0x10, &(connect_header(V311, flags) + " <'a'>"));
        assert_malformed(decode_server(&bytes), "MQTT-3.1.2-11");
    }
}

#[test]
fn mqtt311_3_1_2_15_will_retain_without_will_flag_closes() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x22) + " <'a'>"));
    assert_malformed(decode_server(&bytes), "MQTT-3.1.2-11");
}

#[test]
fn mqtt311_3_1_2_11_will_fields_without_will_flag_close() {
    // Will Topic and Will Message present, Will Flag 0: they are left over.
    let bytes = pkt(0x10, &(connect_header(V311, 0x02) + " <'a'> <'w'> <'x'>"));
    assert_malformed(decode_server(&bytes), TRAILING);
}

#[test]
fn mqtt5_3_1_2_11_will_qos_without_will_flag_is_malformed() {
    for flags in [0x0a, 0x12, 0x1a] {
        let bytes = pkt(0x10, &(connect_header(V5, flags) + " <'a'>"));
        assert_malformed(decode_server(&bytes), "MQTT-3.1.2-11");
    }
}

#[test]
fn mqtt5_3_1_2_13_will_retain_without_will_flag_is_malformed() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x22) + " <'a'>"));
    assert_malformed(decode_server(&bytes), "Will Retain");
}

#[test]
fn mqtt311_3_1_2_14_will_qos_3_closes() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x1e) + " <'a'> <'w'> <>"));
    assert_malformed(decode_server(&bytes), "MQTT-3.1.2-12");
}

#[test]
fn mqtt5_3_1_2_12_will_qos_3_is_malformed() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x1e) + " <'a'> [] <'w'> <>"));
    assert_malformed(decode_server(&bytes), "MQTT-3.1.2-12");
}

#[test]
fn mqtt311_3_1_2_9_will_flag_requires_topic_and_message() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x06) + " <'a'>"));
    assert_malformed(decode_server(&bytes), TRUNCATED);
    let bytes = pkt(0x10, &(connect_header(V311, 0x06) + " <'a'> <'w'>"));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt5_3_1_2_9_will_flag_requires_properties_topic_and_payload() {
    for tail in ["", "[]", "[] <'w'>"] {
        let bytes = pkt(0x10, &(connect_header(V5, 0x06) + " <'a'> " + tail));
        assert_malformed(decode_server(&bytes), TRUNCATED);
    }
}

#[test]
fn v311_will_qos_and_retain_flags_are_decoded() {
    for (flags, qos, retain) in [
        (0x06, QoS::AtMostOnce, false),
        (0x0e, QoS::AtLeastOnce, false),
        (0x36, QoS::ExactlyOnce, true),
    ] {
        let bytes = pkt(0x10, &(connect_header(V311, flags) + " <'a'> <'w'> <'x'>"));
        let Ok(Packet::Connect(c)) = decode_server(&bytes) else {
            panic!("flags {flags:#04x} rejected");
        };
        let will = c.will.as_ref().unwrap();
        assert_eq!((will.qos, will.retain), (qos, retain));
        assert_eq!(encode(&Packet::Connect(c), V311), bytes);
    }
}

#[test]
fn mqtt311_3_1_2_22_password_without_user_name_closes() {
    for version in V3 {
        let bytes = pkt(0x10, &(connect_header(version, 0x42) + " <'a'> <'pw'>"));
        assert_malformed(decode_server(&bytes), "MQTT-3.1.2-22");
    }
}

#[test]
fn mqtt5_s3_1_2_9_password_without_user_name_is_accepted() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x42) + " <'a'> <'pw'>"));
    let expected = Connect {
        password: Some(b(b"pw")),
        ..connect(V5, "a")
    };
    connect_vector(
        &bytes
            .iter()
            .map(|b| format!("{b:02x} "))
            .collect::<String>(),
        &expected,
    );
}

#[test]
fn mqtt311_3_1_2_19_user_name_flag_requires_user_name() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x82) + " <'a'>"));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt311_3_1_2_18_user_name_without_flag_closes() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x02) + " <'a'> <'u'>"));
    assert_malformed(decode_server(&bytes), TRAILING);
}

#[test]
fn mqtt311_3_1_2_21_password_flag_requires_password() {
    let bytes = pkt(0x10, &(connect_header(V311, 0xc2) + " <'a'> <'u'>"));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt311_3_1_2_20_password_without_flag_closes() {
    let bytes = pkt(0x10, &(connect_header(V311, 0x82) + " <'a'> <'u'> <'p'>"));
    assert_malformed(decode_server(&bytes), TRAILING);
}

#[test]
fn mqtt5_3_1_2_17_user_name_flag_requires_user_name() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x82) + " <'a'>"));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt5_3_1_2_16_user_name_without_flag_is_malformed() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x02) + " <'a'> <'u'>"));
    assert_malformed(decode_server(&bytes), TRAILING);
}

#[test]
fn mqtt5_3_1_2_19_password_flag_requires_password() {
    let bytes = pkt(0x10, &(connect_header(V5, 0xc2) + " <'a'> <'u'>"));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt5_3_1_2_18_password_without_flag_is_malformed() {
    let bytes = pkt(0x10, &(connect_header(V5, 0x82) + " <'a'> <'u'> <'p'>"));
    assert_malformed(decode_server(&bytes), TRAILING);
}

#[test]
fn mqtt311_3_1_3_3_client_id_must_be_present() {
    let bytes = pkt(0x10, &connect_header(V311, 0x02));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt5_3_1_3_3_client_id_must_be_present() {
    let bytes = pkt(0x10, &connect_header(V5, 0x02));
    assert_malformed(decode_server(&bytes), TRUNCATED);
}

#[test]
fn mqtt311_3_1_3_4_client_id_must_be_utf8() {
    assert_malformed(
        decode_server(&hex("10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 ff")),
        NOT_UTF8,
    );
}

#[test]
fn mqtt5_3_1_3_4_client_id_must_be_utf8() {
    assert_malformed(
        decode_server(&hex("10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 ff")),
        NOT_UTF8,
    );
}

#[test]
fn mqtt311_3_1_3_10_will_topic_must_be_valid() {
    let bad_utf8 = hex("10 12 00 04 4d 51 54 54 04 06 00 3c 00 01 61 00 01 ff 00 00");
    assert_malformed(decode_server(&bad_utf8), NOT_UTF8);
    let wildcard = hex("10 14 00 04 4d 51 54 54 04 06 00 3c 00 01 61 00 03 61 2f 23 00 00");
    assert_topic_invalid(decode_server(&wildcard), "MQTT-3.1.3-11");
}

#[test]
fn mqtt5_3_1_3_11_will_topic_must_be_a_valid_topic_name() {
    let wildcard = hex("10 16 00 04 4d 51 54 54 05 06 00 3c 00 00 01 61 00 00 03 61 2f 23 00 00");
    assert_topic_invalid(decode_server(&wildcard), "MQTT-3.1.3-11");
    let empty = pkt(0x10, &(connect_header(V5, 0x06) + " <'a'> [] <> <>"));
    assert_topic_invalid(decode_server(&empty), "MQTT-3.1.3-11");
    let bad_utf8 = pkt(0x10, &(connect_header(V5, 0x06) + " <'a'> [] <c3 28> <>"));
    assert_malformed(decode_server(&bad_utf8), NOT_UTF8);
}

#[test]
fn mqtt311_3_1_3_11_user_name_must_be_utf8() {
    assert_malformed(
        decode_server(&hex(
            "10 10 00 04 4d 51 54 54 04 82 00 3c 00 01 61 00 01 ff",
        )),
        NOT_UTF8,
    );
}

#[test]
fn mqtt5_3_1_3_12_user_name_must_be_utf8() {
    assert_malformed(
        decode_server(&hex(
            "10 11 00 04 4d 51 54 54 05 82 00 3c 00 00 01 61 00 01 ff",
        )),
        NOT_UTF8,
    );
}

#[test]
fn mqtt311_s3_1_3_3_will_message_and_password_are_binary() {
    let bytes = pkt(
        0x10,
        &(connect_header(V311, 0xc6) + " <'a'> <'w'> <00 ff fe> <'u'> <00 c3 28>"),
    );
    let Ok(Packet::Connect(c)) = decode_server(&bytes) else {
        panic!("CONNECT rejected");
    };
    assert_eq!(c.will.as_ref().unwrap().payload, b(&[0, 0xff, 0xfe]));
    assert_eq!(c.password, Some(b(&[0, 0xc3, 0x28])));
}

#[test]
fn mqtt5_s3_1_2_11_3_receive_maximum_zero_or_duplicate_is_protocol_error() {
    let zero = pkt(0x10, "<'MQTT'> 05 02 00 3c [21 00 00] <'a'>");
    assert_protocol(decode_server(&zero), "Receive Maximum is 0");
    let twice = pkt(0x10, "<'MQTT'> 05 02 00 3c [21 00 01 21 00 01] <'a'>");
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_4_maximum_packet_size_zero_or_duplicate_is_protocol_error() {
    let zero = pkt(0x10, "<'MQTT'> 05 02 00 3c [27 00 00 00 00] <'a'>");
    assert_protocol(decode_server(&zero), "Maximum Packet Size is 0");
    let twice = pkt(
        0x10,
        "<'MQTT'> 05 02 00 3c [27 00 00 00 09 27 00 00 00 09] <'a'>",
    );
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_2_session_expiry_duplicate_is_protocol_error() {
    let twice = pkt(
        0x10,
        "<'MQTT'> 05 02 00 3c [11 00 00 00 01 11 00 00 00 02] <'a'>",
    );
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_5_topic_alias_maximum_duplicate_is_protocol_error() {
    let twice = pkt(0x10, "<'MQTT'> 05 02 00 3c [22 00 01 22 00 01] <'a'>");
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_6_request_response_information_must_be_0_or_1() {
    let two = pkt(0x10, "<'MQTT'> 05 02 00 3c [19 02] <'a'>");
    assert_protocol(decode_server(&two), "Request Response Information");
    let twice = pkt(0x10, "<'MQTT'> 05 02 00 3c [19 01 19 01] <'a'>");
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_7_request_problem_information_must_be_0_or_1() {
    let two = pkt(0x10, "<'MQTT'> 05 02 00 3c [17 02] <'a'>");
    assert_protocol(decode_server(&two), "Request Problem Information");
    let twice = pkt(0x10, "<'MQTT'> 05 02 00 3c [17 00 17 00] <'a'>");
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_9_authentication_method_duplicate_is_protocol_error() {
    let twice = pkt(0x10, "<'MQTT'> 05 02 00 3c [15 <'m'> 15 <'m'>] <'a'>");
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_2_11_10_authentication_data_without_method_is_protocol_error() {
    let data_only = pkt(0x10, "<'MQTT'> 05 02 00 3c [16 <'d'>] <'a'>");
    assert_protocol(decode_server(&data_only), "Authentication Data without");
    let twice = pkt(
        0x10,
        "<'MQTT'> 05 02 00 3c [15 <'m'> 16 <'d'> 16 <'d'>] <'a'>",
    );
    assert_protocol(decode_server(&twice), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_3_2_2_will_delay_interval_duplicate_is_protocol_error() {
    let bytes = pkt(
        0x10,
        "<'MQTT'> 05 06 00 3c [] <'a'> [18 00 00 00 01 18 00 00 00 01] <'w'> <>",
    );
    assert_protocol(decode_server(&bytes), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_3_2_3_will_payload_format_indicator_duplicate_is_protocol_error() {
    let bytes = pkt(0x10, "<'MQTT'> 05 06 00 3c [] <'a'> [01 01 01 01] <'w'> <>");
    assert_protocol(decode_server(&bytes), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_3_2_4_will_message_expiry_duplicate_is_protocol_error() {
    let bytes = pkt(
        0x10,
        "<'MQTT'> 05 06 00 3c [] <'a'> [02 00 00 00 01 02 00 00 00 01] <'w'> <>",
    );
    assert_protocol(decode_server(&bytes), DUPLICATE);
}

#[test]
fn mqtt5_s3_1_3_2_5_will_content_type_response_topic_correlation_data_once_each() {
    for props in [
        "03 <'a'> 03 <'a'>",
        "08 <'a'> 08 <'a'>",
        "09 <'a'> 09 <'a'>",
    ] {
        let bytes = pkt(
            0x10,
            &format!("<'MQTT'> 05 06 00 3c [] <'a'> [{props}] <'w'> <>"),
        );
        assert_protocol(decode_server(&bytes), DUPLICATE);
    }
    let wildcard = pkt(0x10, "<'MQTT'> 05 06 00 3c [] <'a'> [08 <'a/+'>] <'w'> <>");
    assert_protocol(decode_server(&wildcard), "MQTT-3.3.2-14");
}

#[test]
fn mqtt5_s3_1_3_6_password_is_binary_data() {
    let bytes = pkt(0x10, &(connect_header(V5, 0xc2) + " <'a'> <'u'> <00 ff>"));
    let Ok(Packet::Connect(c)) = decode_server(&bytes) else {
        panic!("CONNECT rejected");
    };
    assert_eq!(c.password, Some(b(&[0, 0xff])));
}

#[test]
fn mqtt5_3_1_3_1_connect_fields_in_wrong_order_are_malformed() {
    // User name flag set, but the payload has the password-like binary first: 00 02 ff ff is
    // read as the user name, which is not UTF-8.
    let bytes = pkt(0x10, &(connect_header(V5, 0xc2) + " <'a'> <ff ff> <'u'>"));
    assert_malformed(decode_server(&bytes), NOT_UTF8);
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_s3_2_2_1_reserved_connack_flags_are_rejected() {
    assert_malformed(decode(V311, &hex("20 02 02 00")), "MQTT-3.2.2-1");
    assert_malformed(decode(V311, &hex("20 02 80 00")), "MQTT-3.2.2-1");
    let present = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    assert_eq!(encode(&Packet::ConnAck(present), V311), hex("20 02 01 00"));
}

#[test]
fn mqtt5_3_2_2_1_reserved_connack_flags_are_rejected() {
    assert_malformed(decode(V5, &hex("20 03 02 00 00")), "MQTT-3.2.2-1");
    assert_malformed(decode(V5, &hex("20 03 fe 00 00")), "MQTT-3.2.2-1");
    let present = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    assert_eq!(encode(&Packet::ConnAck(present), V5), hex("20 03 01 00 00"));
}

#[test]
fn mqtt311_s2_2_3_connack_remaining_length_is_2() {
    assert_malformed(decode(V311, &hex("20 03 00 00 00")), TRAILING);
    assert_malformed(decode(V311, &hex("20 01 00")), TRUNCATED);
}

#[test]
fn mqtt311_s3_2_2_3_connack_return_codes_0_to_5_and_no_others() {
    let mapped = [
        ReasonCode::SUCCESS,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        ReasonCode::SERVER_UNAVAILABLE,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ReasonCode::NOT_AUTHORIZED,
    ];
    for version in V3 {
        for code in 0..=255u8 {
            let bytes = pkt(0x20, &format!("00 {code:02x}"));
            match mapped.get(usize::from(code)) {
                Some(&reason) => {
                    let c = ConnAck {
                        reason,
                        ..ConnAck::default()
                    };
                    vector(
                        version,
                        &format!("20 02 00 {code:02x}"),
                        &Packet::ConnAck(c),
                    );
                }
                None => assert_malformed(decode(version, &bytes), "reserved CONNACK return"),
            }
        }
    }
}

#[test]
fn mqtt311_s3_2_2_3_v5_only_refusals_map_to_a_v3_return_code() {
    for (reason, code) in [
        (ReasonCode::BANNED, 5),
        (ReasonCode::BAD_AUTHENTICATION_METHOD, 5),
        (ReasonCode::SERVER_BUSY, 3),
        (ReasonCode::UNSPECIFIED_ERROR, 3),
        (ReasonCode::QUOTA_EXCEEDED, 3),
    ] {
        let c = ConnAck {
            reason,
            ..ConnAck::default()
        };
        assert_eq!(
            encode(&Packet::ConnAck(c), V311),
            [0x20, 0x02, 0x00, code],
            "{reason}"
        );
    }
}

#[test]
fn mqtt5_s3_2_2_3_4_maximum_qos_must_be_0_or_1() {
    assert!(decode(V5, &pkt(0x20, "00 00 [24 00]")).is_ok());
    assert_protocol(decode(V5, &pkt(0x20, "00 00 [24 02]")), "Maximum QoS");
}

#[test]
fn mqtt5_s3_2_2_3_3_connack_receive_maximum_and_packet_size_not_zero() {
    assert_protocol(
        decode(V5, &pkt(0x20, "00 00 [21 00 00]")),
        "Receive Maximum",
    );
    assert_protocol(
        decode(V5, &pkt(0x20, "00 00 [27 00 00 00 00]")),
        "Maximum Packet Size",
    );
}

#[test]
fn mqtt5_s3_2_2_3_5_connack_boolean_properties_must_be_0_or_1() {
    for id in ["25", "28", "29", "2a"] {
        assert_protocol(
            decode(V5, &pkt(0x20, &format!("00 00 [{id} 02]"))),
            "not 0 or 1",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_3_3_1_4_qos3_publish_closes() {
    for first in [0x36, 0x37, 0x3e, 0x3f] {
        assert_malformed(decode(V311, &pkt(first, "<'a'> 00 01")), "MQTT-3.3.1-4");
    }
}

#[test]
fn mqtt5_3_3_1_4_qos3_publish_is_malformed() {
    for first in [0x36, 0x3f] {
        assert_malformed(decode(V5, &pkt(first, "<'a'> 00 01 []")), "MQTT-3.3.1-4");
    }
}

#[test]
fn mqtt311_3_3_1_2_dup_on_qos0_closes() {
    assert_malformed(decode(V311, &pkt(0x38, "<'a'>")), "MQTT-3.3.1-2");
    assert_malformed(decode(V31, &pkt(0x39, "<'a'>")), "MQTT-3.3.1-2");
}

#[test]
fn mqtt5_3_3_1_2_dup_on_qos0_is_malformed() {
    assert_malformed(decode(V5, &pkt(0x38, "<'a'> []")), "MQTT-3.3.1-2");
}

#[test]
fn mqtt5_3_3_1_2_encoder_never_sets_dup_on_qos0() {
    let p = Publish {
        dup: true,
        ..publish(QoS::AtMostOnce, "a", None, b"")
    };
    assert_eq!(
        encode(&Packet::Publish(p.clone()), V5),
        hex("30 04 00 01 61 00")
    );
    assert_eq!(encode(&Packet::Publish(p), V311), hex("30 03 00 01 61"));
}

#[test]
fn mqtt311_3_3_2_2_wildcard_in_topic_name_closes() {
    for topic in ["a/+", "#", "a/#", "+", "a+b", "sport/tennis#"] {
        let result = decode(V311, &pkt(0x30, &format!("<'{topic}'>")));
        assert_topic_invalid(result, "MQTT-3.3.2-2");
    }
}

#[test]
fn mqtt311_4_7_1_1_wildcards_never_appear_in_a_topic_name() {
    let result = decode(V311, &pkt(0x32, "<'a/+/b'> 00 01 'x'"));
    assert_topic_invalid(result, "wildcard");
}

#[test]
fn mqtt5_3_3_2_2_wildcard_topic_name_is_topic_name_invalid() {
    for topic in ["a/+", "#", "x#"] {
        let result = decode(V5, &pkt(0x30, &format!("<'{topic}'> []")));
        assert_topic_invalid(result, "MQTT-3.3.2-2");
    }
}

#[test]
fn mqtt5_4_7_0_1_wildcards_only_in_filters() {
    assert_topic_invalid(decode(V5, &pkt(0x32, "<'+'> 00 01 []")), "wildcard");
    // The same string is fine as a filter.
    let sub = decode(V5, &pkt(0x82, "00 01 [] <'+'> 00"));
    assert!(matches!(sub, Ok(Packet::Subscribe(_))));
}

#[test]
fn mqtt311_4_7_3_1_empty_topic_name_closes() {
    for version in V3 {
        assert_topic_invalid(decode(version, &hex("30 02 00 00")), "MQTT-4.7.3-1");
        assert_topic_invalid(decode(version, &hex("32 04 00 00 00 01")), "MQTT-4.7.3-1");
    }
}

#[test]
fn mqtt311_3_3_2_1_topic_name_is_the_first_utf8_field() {
    assert_malformed(decode(V311, &pkt(0x32, "<c3> 00 01")), NOT_UTF8);
    assert_malformed(decode(V311, &hex("30 01 00")), TRUNCATED);
}

#[test]
fn mqtt5_3_3_2_1_topic_name_is_the_first_utf8_field() {
    assert_malformed(decode(V5, &pkt(0x30, "<c3> []")), NOT_UTF8);
    assert_malformed(decode(V5, &hex("30 00")), TRUNCATED);
}

#[test]
fn mqtt311_2_3_1_5_qos0_publish_has_no_packet_id() {
    // The two bytes after the topic are payload.
    let p = publish(QoS::AtMostOnce, "a", None, &[0, 0]);
    vector(V311, "30 05 00 01 61 00 00", &Packet::Publish(p));
    // An identifier on a QoS 0 packet is not written.
    let with_id = publish(QoS::AtMostOnce, "a", Some(9), b"");
    assert_eq!(
        encode(&Packet::Publish(with_id), V311),
        hex("30 03 00 01 61")
    );
}

#[test]
fn mqtt5_2_2_1_2_qos0_publish_has_no_packet_id() {
    // The byte after the topic is the Property Length, not a packet identifier.
    let p = publish(QoS::AtMostOnce, "a", None, &[0]);
    vector(V5, "30 05 00 01 61 00 00", &Packet::Publish(p));
    let with_id = publish(QoS::AtMostOnce, "a", Some(9), b"");
    assert_eq!(
        encode(&Packet::Publish(with_id), V5),
        hex("30 04 00 01 61 00")
    );
}

#[test]
fn mqtt311_s3_3_2_2_packet_id_only_for_qos_1_and_2() {
    for first in [0x32, 0x34] {
        assert_malformed(decode(V311, &pkt(first, "<'a'>")), TRUNCATED);
        assert_malformed(decode(V311, &pkt(first, "<'a'> 01")), TRUNCATED);
    }
}

#[test]
fn mqtt5_s3_3_2_2_packet_id_only_for_qos_1_and_2() {
    assert_malformed(decode(V5, &pkt(0x32, "<'a'>")), TRUNCATED);
    let Ok(Packet::Publish(p)) = decode(V5, &pkt(0x34, "<'a'> 12 34 []")) else {
        panic!("QoS 2 PUBLISH rejected");
    };
    assert_eq!(p.packet_id, Some(pid(0x1234)));
}

#[test]
fn mqtt5_3_3_2_13_response_topic_must_be_utf8() {
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [08 <ff>]")), NOT_UTF8);
}

#[test]
fn mqtt5_3_3_2_14_response_topic_with_wildcard_is_protocol_error() {
    for topic in ["#", "a/+", "a/#"] {
        let result = decode(V5, &pkt(0x30, &format!("<'a'> [08 <'{topic}'>]")));
        assert_protocol(result, "MQTT-3.3.2-14");
    }
    assert_protocol(decode(V5, &pkt(0x30, "<'a'> [08 <>]")), "MQTT-3.3.2-14");
}

#[test]
fn mqtt5_3_3_2_16_correlation_data_duplicate_is_protocol_error() {
    assert_protocol(decode(V5, &pkt(0x30, "<'a'> [09 <> 09 <>]")), DUPLICATE);
}

#[test]
fn mqtt5_3_3_2_19_content_type_must_be_utf8_and_appear_once() {
    assert_malformed(decode(V5, &pkt(0x30, "<'a'> [03 <ff>]")), NOT_UTF8);
    assert_protocol(
        decode(V5, &pkt(0x30, "<'a'> [03 <'t'> 03 <'t'>]")),
        DUPLICATE,
    );
}

#[test]
fn mqtt5_s3_3_2_3_2_payload_format_indicator_once_and_0_or_1() {
    assert_protocol(decode(V5, &pkt(0x30, "<'a'> [01 00 01 01]")), DUPLICATE);
    assert_protocol(
        decode(V5, &pkt(0x30, "<'a'> [01 02]")),
        "Payload Format Indicator",
    );
}

#[test]
fn mqtt5_s3_3_2_3_4_topic_alias_duplicate_is_protocol_error() {
    assert_protocol(
        decode(V5, &pkt(0x30, "<'a'> [23 00 01 23 00 02]")),
        DUPLICATE,
    );
}

#[test]
fn mqtt5_s3_3_2_3_8_subscription_identifier_zero_is_protocol_error() {
    assert_protocol(
        decode(V5, &pkt(0x30, "<'a'> [0b 00]")),
        "Subscription Identifier is 0",
    );
}

#[test]
fn publish_may_carry_several_subscription_identifiers() {
    let bytes = pkt(0x30, "<'a'> [0b 01 0b ff 7f 0b 01]");
    let Ok(Packet::Publish(p)) = decode(V5, &bytes) else {
        panic!("PUBLISH rejected");
    };
    assert_eq!(p.properties.subscription_identifiers, [1, 16_383, 1]);
    assert_eq!(encode(&Packet::Publish(p), V5), bytes);
}

#[test]
fn v3_publish_encoding_drops_properties() {
    let p = Publish {
        properties: PublishProperties {
            message_expiry_interval: Some(5),
            user_properties: vec![kv("k", "v")],
            ..PublishProperties::default()
        },
        ..publish(QoS::AtLeastOnce, "a", Some(1), b"x")
    };
    assert_eq!(
        encode(&Packet::Publish(p), V311),
        hex("32 06 00 01 61 00 01 78")
    );
}

#[test]
fn publish_view_writes_the_per_delivery_properties() {
    let props = PublishProperties {
        message_expiry_interval: Some(100),
        topic_alias: Some(9),
        subscription_identifiers: vec![9],
        content_type: Some(s("t")),
        ..PublishProperties::default()
    };
    let view = PublishView {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "",
        packet_id: Some(pid(3)),
        topic_alias: Some(1),
        message_expiry_interval: Some(40),
        subscription_identifiers: &[2, 3],
        properties: &props,
        payload: b"p",
    };
    let mut dst = BytesMut::new();
    let n = view.encode(V5, u32::MAX, &mut dst).unwrap();
    let expected = pkt(
        0x3b,
        "<> 00 03 [02 00 00 00 28 23 00 01 0b 02 0b 03 03 <'t'>] 'p'",
    );
    assert_eq!(n, expected.len());
    assert_eq!(dst.to_vec(), expected);
    let Ok(Packet::Publish(p)) = decode(V5, &expected) else {
        panic!("PUBLISH rejected");
    };
    assert_eq!(p.properties.subscription_identifiers, [2, 3]);
    assert_eq!(p.properties.topic_alias, Some(1));
    assert_eq!(p.properties.message_expiry_interval, Some(40));
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_s3_4_acks_have_remaining_length_2() {
    for first in [0x40, 0x50, 0x62, 0x70] {
        assert_malformed(decode(V311, &pkt(first, "00 0a 00")), TRAILING);
        assert_malformed(decode(V311, &pkt(first, "00 0a 00 00")), TRAILING);
        assert_malformed(decode(V311, &pkt(first, "00")), TRUNCATED);
        assert_malformed(decode(V31, &pkt(first, "00 0a 00")), TRAILING);
    }
}

#[test]
fn mqtt311_s3_6_pubrel_has_remaining_length_2() {
    assert_malformed(decode(V311, &hex("62 03 00 0a 00")), TRAILING);
    assert!(decode(V311, &hex("62 02 00 0a")).is_ok());
}

/// The short forms of PUBACK and friends all decode to a successful acknowledgement.
fn check_short_forms(first: u8) {
    let ok = Ack::new(pid(10));
    for body in ["00 0a", "00 0a 00", "00 0a 00 00"] {
        let packet = decode(V5, &pkt(first, body)).expect("short form accepted");
        let ack = match packet {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => a,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(ack, ok, "{first:#04x} {body}");
    }
}

#[test]
fn mqtt5_s3_4_2_1_puback_short_forms_are_accepted() {
    check_short_forms(0x40);
    let Ok(Packet::PubAck(ack)) = decode(V5, &hex("40 03 00 0a 10")) else {
        panic!("PUBACK rejected");
    };
    assert_eq!(ack.reason, ReasonCode::NO_MATCHING_SUBSCRIBERS);
    // The encoder uses the shortest form.
    assert_eq!(
        encode(&Packet::PubAck(Ack::new(pid(10))), V5),
        hex("40 02 00 0a")
    );
}

#[test]
fn mqtt5_s3_5_2_1_pubrec_short_forms_are_accepted() {
    check_short_forms(0x50);
}

#[test]
fn mqtt5_s3_6_2_1_pubrel_short_forms_are_accepted() {
    check_short_forms(0x62);
}

#[test]
fn mqtt5_s3_7_2_1_pubcomp_short_forms_are_accepted() {
    check_short_forms(0x70);
}

#[test]
fn mqtt311_s3_4_v3_acks_never_carry_reason_codes() {
    let ack = Ack {
        packet_id: pid(10),
        reason: ReasonCode::QUOTA_EXCEEDED,
        properties: AckProperties {
            reason_string: Some(s("r")),
            user_properties: Vec::new(),
        },
    };
    assert_eq!(encode(&Packet::PubAck(ack), V311), hex("40 02 00 0a"));
}

// ---------------------------------------------------------------------------------------------
// Reason codes: exactly the values of each packet's table are accepted
// ---------------------------------------------------------------------------------------------

/// The codes 0..=255 that decode when placed by `build`; every other code must be Malformed.
fn accepted_codes(
    version: ProtocolVersion,
    build: impl Fn(u8) -> Vec<u8>,
    fragment: &str,
) -> Vec<u8> {
    let mut accepted = Vec::new();
    for code in 0..=255u8 {
        match decode(version, &build(code)) {
            Ok(_) => accepted.push(code),
            result => assert_malformed(result, fragment),
        }
    }
    accepted
}

const PUBACK_TABLE: [u8; 9] = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];

#[test]
fn mqtt5_3_4_2_1_puback_reason_codes() {
    let codes = accepted_codes(V5, |c| pkt(0x40, &format!("00 01 {c:02x}")), "reason code");
    assert_eq!(codes, PUBACK_TABLE);
}

#[test]
fn mqtt5_3_5_2_1_pubrec_reason_codes() {
    let codes = accepted_codes(
        V5,
        |c| pkt(0x50, &format!("00 01 {c:02x} []")),
        "reason code",
    );
    assert_eq!(codes, PUBACK_TABLE);
}

#[test]
fn mqtt5_3_6_2_1_pubrel_reason_codes() {
    let codes = accepted_codes(V5, |c| pkt(0x62, &format!("00 01 {c:02x}")), "reason code");
    assert_eq!(codes, [0x00, 0x92]);
}

#[test]
fn mqtt5_3_7_2_1_pubcomp_reason_codes() {
    let codes = accepted_codes(V5, |c| pkt(0x70, &format!("00 01 {c:02x}")), "reason code");
    assert_eq!(codes, [0x00, 0x92]);
}

#[test]
fn mqtt5_3_2_2_8_connack_reason_codes() {
    let codes = accepted_codes(V5, |c| pkt(0x20, &format!("00 {c:02x} []")), "MQTT-3.2.2-8");
    assert_eq!(
        codes,
        [
            0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
            0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F
        ]
    );
}

#[test]
fn mqtt5_3_9_3_2_suback_reason_codes() {
    let codes = accepted_codes(
        V5,
        |c| pkt(0x90, &format!("00 01 [] 00 {c:02x}")),
        "MQTT-3.9.3-2",
    );
    assert_eq!(
        codes,
        [
            0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2
        ]
    );
}

#[test]
fn mqtt311_3_9_3_2_suback_return_codes() {
    for version in V3 {
        let codes = accepted_codes(
            version,
            |c| pkt(0x90, &format!("00 01 {c:02x}")),
            "MQTT-3.9.3-2",
        );
        assert_eq!(codes, [0x00, 0x01, 0x02, 0x80]);
    }
}

#[test]
fn v3_suback_failure_codes_are_written_as_0x80() {
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties {
            reason_string: Some(s("ignored")),
            user_properties: Vec::new(),
        },
        reasons: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::NOT_AUTHORIZED,
            ReasonCode::TOPIC_FILTER_INVALID,
        ],
    };
    assert_eq!(
        encode(&Packet::SubAck(ack), V311),
        hex("90 05 00 01 01 80 80")
    );
}

#[test]
fn mqtt5_3_11_3_2_unsuback_reason_codes() {
    let codes = accepted_codes(
        V5,
        |c| pkt(0xb0, &format!("00 01 [] {c:02x}")),
        "MQTT-3.11.3-2",
    );
    assert_eq!(codes, [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]);
}

#[test]
fn mqtt5_3_14_2_1_disconnect_reason_codes() {
    let mut codes = Vec::new();
    for c in 0..=255u8 {
        match decode(V5, &pkt(0xe0, &format!("{c:02x}"))) {
            Ok(_) => codes.push(c),
            Err(DecodeError::Protocol(m)) => assert!(m.contains("MQTT-3.14.2-1"), "{m}"),
            other => panic!("code 0x{c:02x}: expected a protocol error, got {other:?}"),
        }
    }
    let mut expected = vec![0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B];
    expected.extend([0x8D, 0x8E, 0x8F, 0x90]);
    expected.extend(0x93..=0xA2);
    assert_eq!(codes, expected);
    // 0x8C is listed in Table 2-6 but not in the DISCONNECT table (3-10).
    assert!(!codes.contains(&0x8C));
}

#[test]
fn mqtt5_3_15_2_1_auth_reason_codes() {
    let codes = accepted_codes(
        V5,
        |c| pkt(0xf0, &format!("{c:02x} [15 <'m'>]")),
        "MQTT-3.15.2-1",
    );
    assert_eq!(codes, [0x00, 0x18, 0x19]);
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_3_8_3_3_subscribe_without_filters_closes() {
    for version in V3 {
        assert_protocol(decode(version, &hex("82 02 00 01")), "MQTT-3.8.3-3");
    }
}

#[test]
fn mqtt5_3_8_3_2_subscribe_without_filters_is_protocol_error() {
    assert_protocol(
        decode(V5, &hex("82 03 00 01 00")),
        "SUBSCRIBE without filters",
    );
    let props_only = pkt(0x82, "00 01 [26 <'k'> <'v'>]");
    assert_protocol(decode(V5, &props_only), "SUBSCRIBE without filters");
}

#[test]
fn mqtt311_3_10_3_2_unsubscribe_without_filters_closes() {
    for version in V3 {
        assert_protocol(decode(version, &hex("a2 02 00 01")), "MQTT-3.10.3-2");
    }
}

#[test]
fn mqtt5_3_10_3_2_unsubscribe_without_filters_is_protocol_error() {
    assert_protocol(decode(V5, &hex("a2 03 00 01 00")), "MQTT-3.10.3-2");
}

#[test]
fn mqtt311_3_8_3_1_topic_filter_must_be_utf8() {
    assert_malformed(decode(V311, &hex("82 06 00 01 00 01 ff 00")), NOT_UTF8);
}

#[test]
fn mqtt5_3_8_3_1_topic_filter_must_be_utf8() {
    assert_malformed(decode(V5, &hex("82 07 00 01 00 00 01 ff 00")), NOT_UTF8);
}

#[test]
fn mqtt311_3_10_3_1_unsubscribe_filters_must_be_utf8() {
    assert_malformed(decode(V311, &hex("a2 05 00 01 00 01 ff")), NOT_UTF8);
    assert_malformed(
        decode(V311, &hex("a2 08 00 01 00 01 61 00 01 ff")),
        NOT_UTF8,
    );
}

#[test]
fn mqtt5_3_10_3_1_unsubscribe_filters_must_be_utf8() {
    assert_malformed(decode(V5, &hex("a2 06 00 01 00 00 01 ff")), NOT_UTF8);
}

#[test]
fn mqtt311_3_8_3_4_requested_qos_reserved_bits_close() {
    for byte in [0x03, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x05, 0xff] {
        let result = decode(V311, &pkt(0x82, &format!("00 01 <'a/b'> {byte:02x}")));
        assert_malformed(result, "MQTT-3.8.3-4");
    }
    assert_malformed(decode(V31, &pkt(0x82, "00 01 <'a'> 04")), "MQTT-3.8.3-4");
}

#[test]
fn mqtt311_3_8_3_4_filter_without_qos_byte_closes() {
    assert_malformed(decode(V311, &pkt(0x82, "00 01 <'a'>")), TRUNCATED);
    assert_malformed(decode(V311, &pkt(0x82, "00 01 <'a'> 00 <'b'>")), TRUNCATED);
}

#[test]
fn mqtt5_3_8_3_5_reserved_subscription_option_bits_are_malformed() {
    for byte in [0x40, 0x80, 0xc0, 0x41] {
        let result = decode(V5, &pkt(0x82, &format!("00 01 [] <'a/b'> {byte:02x}")));
        assert_malformed(result, "MQTT-3.8.3-5");
    }
}

#[test]
fn mqtt5_s3_8_3_1_retain_handling_3_is_protocol_error() {
    for byte in [0x30, 0x31, 0x3e] {
        let result = decode(V5, &pkt(0x82, &format!("00 01 [] <'a/b'> {byte:02x}")));
        assert_protocol(result, "Retain Handling is 3");
    }
}

#[test]
fn mqtt5_s3_8_3_1_maximum_qos_3_is_protocol_error() {
    for byte in [0x03, 0x07, 0x0f] {
        let result = decode(V5, &pkt(0x82, &format!("00 01 [] <'a/b'> {byte:02x}")));
        assert_protocol(result, "QoS 3");
    }
}

#[test]
fn mqtt5_s3_8_2_1_2_subscription_identifier_zero_or_twice_is_protocol_error() {
    assert_protocol(
        decode(V5, &pkt(0x82, "00 01 [0b 00] <'a'> 00")),
        "Subscription Identifier is 0",
    );
    assert_protocol(
        decode(V5, &pkt(0x82, "00 01 [0b 01 0b 02] <'a'> 00")),
        DUPLICATE,
    );
}

#[test]
fn v3_subscribe_encoding_drops_v5_options() {
    let sub = Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties {
            subscription_identifier: Some(3),
            user_properties: Vec::new(),
        },
        filters: vec![(
            s("a"),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::SendIfNew,
            },
        )],
    };
    assert_eq!(
        encode(&Packet::Subscribe(sub), V311),
        hex("82 06 00 01 00 01 61 01")
    );
}

#[test]
fn topic_filters_are_not_validated_by_the_decoder() {
    // Invalid filters get SUBACK 0x8F / 0x80 per filter from the broker, not a closed
    // connection, so the decoder passes them through.
    let bytes = pkt(0x82, "00 01 <'a#'> 00 <> 01");
    let Ok(Packet::Subscribe(sub)) = decode(V311, &bytes) else {
        panic!("SUBSCRIBE rejected");
    };
    assert_eq!(sub.filters.len(), 2);
    assert!(!is_valid_topic_filter(&sub.filters[0].0));
    assert!(!is_valid_topic_filter(&sub.filters[1].0));
}

#[test]
fn mqtt311_s3_11_unsuback_reasons_are_not_written_in_v3() {
    let u = UnsubAck {
        packet_id: pid(4),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
    };
    assert_eq!(encode(&Packet::UnsubAck(u), V311), hex("b0 02 00 04"));
}

// ---------------------------------------------------------------------------------------------
// Packet identifiers
// ---------------------------------------------------------------------------------------------

fn zero_id_packets(version: ProtocolVersion) -> Vec<Vec<u8>> {
    let p = if version.is_v5() { "[]" } else { "" };
    vec![
        pkt(0x32, &format!("<'a'> 00 00 {p}")),
        pkt(0x34, &format!("<'a'> 00 00 {p}")),
        pkt(0x40, "00 00"),
        pkt(0x50, "00 00"),
        pkt(0x62, "00 00"),
        pkt(0x70, "00 00"),
        pkt(0x82, &format!("00 00 {p} <'a'> 00")),
        pkt(0x90, &format!("00 00 {p} 00")),
        pkt(0xa2, &format!("00 00 {p} <'a'>")),
        pkt(0xb0, &format!("00 00 {p}")),
    ]
}

#[test]
fn mqtt311_2_3_1_1_packet_id_zero_closes() {
    for version in V3 {
        for bytes in zero_id_packets(version) {
            assert_protocol(decode(version, &bytes), ZERO_ID);
        }
    }
}

#[test]
fn mqtt5_2_2_1_3_packet_id_zero_is_protocol_error() {
    for bytes in zero_id_packets(V5) {
        assert_protocol(decode(V5, &bytes), ZERO_ID);
    }
}

#[test]
fn packet_id_next_wraps_to_1() {
    assert_eq!(PacketId::new(0), None);
    assert_eq!(pid(65_535).next(), pid(1));
    assert_eq!(pid(7).next(), pid(8));
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt5_s3_12_pingreq_and_pingresp_are_exactly_two_bytes() {
    for version in ALL_VERSIONS {
        assert_malformed(decode(version, &hex("c0 01 00")), TRAILING);
        assert_malformed(decode(version, &hex("d0 02 00 00")), TRAILING);
    }
}

#[test]
fn mqtt311_s2_2_3_fixed_size_packets_reject_other_lengths() {
    assert_malformed(decode(V311, &hex("c0 01 00")), TRAILING);
    assert_malformed(decode(V311, &hex("e0 01 00")), TRAILING);
    assert_malformed(decode(V311, &hex("40 03 00 01 00")), TRAILING);
    assert_malformed(decode(V311, &hex("b0 01 00")), TRUNCATED);
}

#[test]
fn v3_disconnect_encodes_without_reason_or_properties() {
    let d = Disconnect {
        reason: ReasonCode::SERVER_SHUTTING_DOWN,
        properties: DisconnectProperties {
            reason_string: Some(s("bye")),
            ..DisconnectProperties::default()
        },
    };
    assert_eq!(encode(&Packet::Disconnect(d), V311), hex("e0 00"));
}

#[test]
fn mqtt5_s3_14_2_1_disconnect_short_forms_are_accepted() {
    assert_eq!(
        decode(V5, &hex("e0 00")),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_eq!(
        decode(V5, &hex("e0 01 00")),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_eq!(
        decode(V5, &hex("e0 01 8e")),
        Ok(Packet::Disconnect(Disconnect::with_reason(
            ReasonCode::SESSION_TAKEN_OVER
        )))
    );
    assert_eq!(
        decode(V5, &hex("e0 02 00 00")),
        Ok(Packet::Disconnect(Disconnect::default()))
    );
    assert_eq!(
        encode(&Packet::Disconnect(Disconnect::default()), V5),
        hex("e0 00")
    );
}

#[test]
fn mqtt5_s3_14_2_2_2_disconnect_session_expiry_duplicate_is_protocol_error() {
    assert_protocol(
        decode(V5, &pkt(0xe0, "00 [11 00 00 00 01 11 00 00 00 01]")),
        DUPLICATE,
    );
}

#[test]
fn mqtt5_s3_15_2_2_2_auth_without_method_is_protocol_error() {
    assert_protocol(
        decode(V5, &hex("f0 02 18 00")),
        "without Authentication Method",
    );
    assert_protocol(
        decode(V5, &pkt(0xf0, "18 [16 <'d'>]")),
        "without Authentication Method",
    );
    assert_protocol(decode(V5, &pkt(0xf0, "18 [15 <'m'> 15 <'m'>]")), DUPLICATE);
    assert_protocol(
        decode(V5, &pkt(0xf0, "18 [15 <'m'> 16 <'d'> 16 <'d'>]")),
        DUPLICATE,
    );
}

#[test]
fn auth_with_remaining_length_0_is_rejected_for_its_missing_method() {
    // The short form would mean 0x00 with no properties, but AUTH needs an Authentication
    // Method (§3.15.2.2.2); the codec reports the missing method.
    assert_protocol(decode(V5, &hex("f0 00")), "without Authentication Method");
}

#[test]
fn auth_reason_code_without_property_length_is_malformed() {
    assert_malformed(decode(V5, &hex("f0 01 18")), TRUNCATED);
}

// ---------------------------------------------------------------------------------------------
// Streams: partial input and several packets in one buffer
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt311_6_0_0_2_every_prefix_of_a_packet_waits_for_more_bytes() {
    let connect = pkt(
        0x10,
        &(connect_header(V311, 0xc6) + " <'a'> <'w'> <'x'> <'u'> <'p'>"),
    );
    assert_prefixes_wait(server, &connect);
    let big = encode(
        &Packet::Publish(publish(QoS::AtLeastOnce, "a/b", Some(1), &[7; 300])),
        V311,
    );
    assert_eq!(&big[..3], &hex("32 b3 02"));
    assert_prefixes_wait(|| dec(V311), &big);
}

#[test]
fn mqtt5_6_0_0_2_every_prefix_of_a_packet_waits_for_more_bytes() {
    let connect = pkt(
        0x10,
        "<'MQTT'> 05 c6 00 3c [21 00 05] <'a'> [02 00 00 00 01] <'w'> <'x'> <'u'> <'p'>",
    );
    assert_prefixes_wait(server, &connect);
    let publish = pkt(0x3d, "<'a'> 00 02 [26 <'k'> <'v'>] 'payload'");
    assert_prefixes_wait(|| dec(V5), &publish);
}

#[test]
fn mqtt311_6_0_0_2_several_packets_in_one_buffer() {
    let mut stream = Vec::new();
    stream.extend(pkt(0x10, &(connect_header(V311, 0x02) + " <'abc'>")));
    stream.extend(hex("82 0c 00 01 00 03 61 2f 2b 01 00 01 23 00"));
    stream.extend(hex("32 09 00 03 61 2f 62 00 0a 68 69"));
    stream.extend(hex("c0 00"));
    stream.extend(hex("e0 00"));
    stream.extend(hex("30 07 00 03")); // the start of one more packet
    let mut buf = BytesMut::from(&stream[..]);
    let mut d = server();
    let mut types = Vec::new();
    while let Some(packet) = d.decode(&mut buf).unwrap() {
        types.push(packet.packet_type().name());
    }
    assert_eq!(
        types,
        ["connect", "subscribe", "publish", "pingreq", "disconnect"]
    );
    assert_eq!(d.version(), Some(V311));
    assert_eq!(&buf[..], &hex("30 07 00 03")[..]);
    buf.extend_from_slice(&hex("61 2f 62 68 69"));
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(Packet::Publish(publish(
            QoS::AtMostOnce,
            "a/b",
            None,
            b"hi"
        ))))
    );
    assert!(buf.is_empty());
}

#[test]
fn mqtt5_6_0_0_2_several_packets_in_one_buffer() {
    let mut stream = Vec::new();
    stream.extend(hex("10 10 00 04 4d 51 54 54 05 02 00 3c 00 00 03 61 62 63"));
    stream.extend(pkt(0x30, "<'t'> [23 00 01] 'a'"));
    stream.extend(pkt(0x30, "<> [23 00 01] 'b'"));
    stream.extend(hex("40 02 00 01"));
    stream.extend(hex("e0 01 04"));
    let mut buf = BytesMut::from(&stream[..]);
    let mut d = server();
    let mut packets = Vec::new();
    while let Some(packet) = d.decode(&mut buf).unwrap() {
        packets.push(packet);
    }
    assert!(buf.is_empty());
    assert_eq!(packets.len(), 5);
    assert!(matches!(&packets[0], Packet::Connect(c) if c.protocol == V5));
    let Packet::Publish(second) = &packets[2] else {
        panic!("not a PUBLISH: {:?}", packets[2]);
    };
    assert_eq!(second.topic, "");
    assert_eq!(second.properties.topic_alias, Some(1));
    assert_eq!(second.payload, b(b"b"));
    assert_eq!(
        packets[4],
        Packet::Disconnect(Disconnect::with_reason(ReasonCode::DISCONNECT_WITH_WILL))
    );
}

#[test]
fn decoded_packets_do_not_share_the_read_buffer() {
    let mut buf = BytesMut::from(&hex("30 07 00 03 61 2f 62 68 69 c0 00")[..]);
    let Some(Packet::Publish(p)) = dec(V311).decode(&mut buf).unwrap() else {
        panic!("PUBLISH expected");
    };
    buf.clear();
    buf.extend_from_slice(&[0xff; 16]);
    assert_eq!(p.topic, "a/b");
    assert_eq!(p.payload, b(b"hi"));
}

#[test]
fn frame_len_reports_the_whole_packet_size_once_the_header_is_complete() {
    let d = dec(V5);
    assert_eq!(d.frame_len(&[]), Ok(None));
    assert_eq!(d.frame_len(&hex("30")), Ok(None));
    assert_eq!(d.frame_len(&hex("30 80")), Ok(None));
    assert_eq!(d.frame_len(&hex("30 80 01")), Ok(Some(131)));
    assert_eq!(d.frame_len(&hex("c0 00")), Ok(Some(2)));
    assert!(matches!(
        d.frame_len(&hex("30 80 00")),
        Err(DecodeError::Malformed(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Encoder limits
// ---------------------------------------------------------------------------------------------

#[test]
fn encoder_refuses_packets_above_the_peer_maximum() {
    let p = Packet::Publish(publish(QoS::AtMostOnce, "a/b", None, b"xyz"));
    let mut dst = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        p.encode_limited(V311, 9, &mut dst),
        Err(EncodeError::ExceedsPeerLimit { size: 10, max: 9 })
    );
    assert_eq!(&dst[..], b"keep");
    assert_eq!(p.encode_limited(V311, 10, &mut dst), Ok(10));
    assert_eq!(&dst[4..], &hex("30 08 00 03 61 2f 62 78 79 7a")[..]);
    let ack = Packet::PubAck(Ack::new(pid(1)));
    assert_eq!(
        ack.encode_limited(V5, 3, &mut BytesMut::new()),
        Err(EncodeError::ExceedsPeerLimit { size: 4, max: 3 })
    );
}

#[test]
fn mqtt5_4_7_3_3_fields_longer_than_65535_bytes_are_not_encoded() {
    let topic = "a".repeat(65_536);
    let p = Packet::Publish(publish(QoS::AtMostOnce, &topic, None, b""));
    let mut dst = BytesMut::new();
    assert_eq!(p.encode(V5, &mut dst), Err(EncodeError::FieldTooLong));
    assert!(dst.is_empty());
    let longest = "a".repeat(65_535);
    let p = Packet::Publish(publish(QoS::AtMostOnce, &longest, None, b""));
    let bytes = encode(&p, V5);
    assert_eq!(decode(V5, &bytes), Ok(p));
    // A too-long property value is caught as well.
    let ack = Packet::PubAck(Ack {
        packet_id: pid(1),
        reason: ReasonCode::SUCCESS,
        properties: AckProperties {
            reason_string: Some(s(&topic)),
            user_properties: Vec::new(),
        },
    });
    assert_eq!(ack.encode(V5, &mut dst), Err(EncodeError::FieldTooLong));
    assert!(dst.is_empty());
}

#[test]
fn mqtt311_s2_2_3_packets_above_the_largest_remaining_length_are_not_encoded() {
    // The payload is never written, so this allocation is never touched.
    let payload = vec![0u8; MAX_REMAINING_LENGTH as usize];
    let view = PublishView {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a",
        packet_id: None,
        topic_alias: None,
        message_expiry_interval: None,
        subscription_identifiers: &[],
        properties: &PublishProperties::default(),
        payload: &payload,
    };
    let mut dst = BytesMut::new();
    assert_eq!(
        view.encode(V311, u32::MAX, &mut dst),
        Err(EncodeError::PacketTooLarge(
            MAX_REMAINING_LENGTH as usize + 3
        ))
    );
    assert!(dst.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Topic name and filter syntax
// ---------------------------------------------------------------------------------------------

#[test]
fn mqtt5_4_7_1_1_hash_must_be_alone_and_last() {
    for ok in ["#", "a/#", "/#", "a/b/#"] {
        assert!(is_valid_topic_filter(ok), "{ok}");
    }
    for bad in ["a#", "#/a", "a/#/b", "a/b#", "##"] {
        assert!(!is_valid_topic_filter(bad), "{bad}");
    }
}

#[test]
fn mqtt5_4_7_1_2_plus_must_fill_a_level() {
    for ok in ["+", "+/+", "/+", "a/+/b", "+/#"] {
        assert!(is_valid_topic_filter(ok), "{ok}");
    }
    for bad in ["sport+", "a/+b", "++", "a/b+/c"] {
        assert!(!is_valid_topic_filter(bad), "{bad}");
    }
}

#[test]
fn mqtt311_4_7_1_2_hash_must_be_alone_and_last() {
    assert!(is_valid_topic_filter("sport/tennis/#"));
    assert!(!is_valid_topic_filter("sport/tennis#"));
    assert!(!is_valid_topic_filter("sport/tennis/#/ranking"));
}

#[test]
fn mqtt311_4_7_1_3_plus_must_fill_a_level() {
    assert!(is_valid_topic_filter("sport/+/player1"));
    assert!(!is_valid_topic_filter("sport+"));
}

#[test]
fn mqtt311_4_7_3_1_names_and_filters_are_at_least_one_character() {
    assert!(!is_valid_topic_name(""));
    assert!(!is_valid_topic_filter(""));
    assert!(is_valid_topic_name("/"));
    assert!(is_valid_topic_filter("/"));
}

#[test]
fn mqtt5_4_7_0_1_topic_names_have_no_wildcards() {
    assert!(is_valid_topic_name("a/b c/$SYS"));
    for bad in ["+", "#", "a/+", "a/#", "a+"] {
        assert!(!is_valid_topic_name(bad), "{bad}");
    }
}

#[test]
fn mqtt5_4_8_2_1_share_name_is_at_least_one_character() {
    assert_eq!(split_shared("$share/g/a/b"), Some(Ok(("g", "a/b"))));
    assert_eq!(split_shared("$share//a"), Some(Err(())));
    assert!(!is_valid_topic_filter("$share//a"));
    assert!(!is_valid_topic_filter("$share/g"));
    assert_eq!(split_shared("$SHARE/g/a"), None);
}

#[test]
fn mqtt5_4_8_2_2_share_name_has_no_wildcards_and_is_followed_by_a_filter() {
    assert!(is_valid_topic_filter("$share/g/#"));
    assert!(is_valid_topic_filter("$share/g/+/x"));
    for bad in ["$share/g+/a", "$share/#/a", "$share/g/", "$share/g/a#"] {
        assert!(!is_valid_topic_filter(bad), "{bad}");
    }
}
