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
                stack.last_mut().unwrap().1.extend_from_slice(text.as_bytes());
            }
            _ => {
                let low = chars.next().expect("odd number of hex digits");
                let pair: String = [c, low].iter().collect();
                let byte = u8::from_str_radix(&pair, 16).expect("not a hex byte");
                stack.last_mut().unwrap().1.push(byte);
            }
        }
    }
    assert_eq!(stack.len(), 1, "unclosed group in {s:?}");
    stack.pop().unwrap().1
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
    PacketId::new(v).unwrap()
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
    vector(V311, "3b 09 00 03 61 2f 62 00 0a 68 69", &Packet::Publish(p));
}

#[test]
fn vector_v311_publish_qos2() {
    let p = publish(QoS::ExactlyOnce, "a/b", Some(0xabcd), b"hi");
    vector(V311, "34 09 00 03 61 2f 62 ab cd 68 69", &Packet::Publish(p));
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
        let bytes = pkt(0x10, &connect_header(version, 0x02) + " <'a'>");
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
fn mqtt31_s3_1_suback_failure_code_is_decoded() {
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reasons: vec![ReasonCode::UNSPECIFIED_ERROR],
    };
    vector(V31, "90 03 00 01 80", &Packet::SubAck(ack));
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
fn mqtt5_s3_3_2_1_empty_topic_with_alias_decodes() {
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
    vector(V5, "e0 01 04", &Packet::Disconnect(with_will));
    let expiry = Disconnect {
        reason: ReasonCode::NORMAL_DISCONNECTION,
        properties: DisconnectProperties {
            session_expiry_interval: Some(3600),
            ..DisconnectProperties::default()
        },
    };
    vector(V5, "e0 07 00 05 11 00 00 0e 10", &Packet::Disconnect(expiry));
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
