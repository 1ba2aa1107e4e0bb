//! Property tests of the codec: arbitrary valid packets of every type survive
//! `decode(encode(p)) == p` in each protocol version, the encoder reports exactly the bytes it
//! wrote, incomplete input is never consumed, and no input at all makes the decoder panic.
//!
//! The strategies generate only what a version can carry: no properties or reason codes on
//! MQTT 3.x, the six CONNACK return codes and the SUBACK codes 0, 1, 2 and 0x80 there, valid
//! topic names, non-zero packet identifiers, no identifier (and no DUP) on QoS 0.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use tern_codec::{
    Ack, AckProperties, Auth, AuthProperties, ByteString, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, EncodeError,
    LastWill, MAX_PACKET_SIZE, MAX_REMAINING_LENGTH, Packet, PacketId, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, UnsubAck, Unsubscribe, WillProperties,
};

use ProtocolVersion::{V5, V31, V311};

// ---------------------------------------------------------------------------------------------
// Value strategies
// ---------------------------------------------------------------------------------------------

/// Any character a string may hold: everything but U+0000 (surrogates are not `char`s).
fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => any::<char>().prop_map(|c| if c == '\0' { '0' } else { c }),
    ]
}

fn text(max: usize) -> impl Strategy<Value = ByteString> {
    vec(any_char(), 0..max).prop_map(|cs| ByteString::from(cs.into_iter().collect::<String>()))
}

/// A valid topic name: at least one character, no wildcard.
fn topic_name() -> impl Strategy<Value = ByteString> {
    let c = prop_oneof![
        4 => any_char().prop_map(|c| if c == '+' || c == '#' { '_' } else { c }),
        1 => Just('/'),
    ];
    vec(c, 1..12).prop_map(|cs| ByteString::from(cs.into_iter().collect::<String>()))
}

/// Any topic filter string: the decoder leaves filter syntax to the broker.
fn topic_filter() -> impl Strategy<Value = ByteString> {
    let c = prop_oneof![
        4 => any_char(),
        1 => Just('/'),
        1 => Just('+'),
        1 => Just('#'),
    ];
    vec(c, 0..12).prop_map(|cs| ByteString::from(cs.into_iter().collect::<String>()))
}

fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| PacketId::new(v).expect("non-zero"))
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn reason(codes: &[u8]) -> impl Strategy<Value = ReasonCode> + use<> {
    select(codes.to_vec()).prop_map(ReasonCode)
}

fn user_properties() -> impl Strategy<Value = Vec<(ByteString, ByteString)>> {
    vec((text(6), text(6)), 0..3)
}

fn subscription_identifier() -> impl Strategy<Value = u32> {
    prop_oneof![1..=127u32, 1..=MAX_REMAINING_LENGTH]
}

/// Properties only MQTT 5 carries: the default value on 3.x.
fn v5_only<T: Default + Clone + std::fmt::Debug + 'static>(
    version: ProtocolVersion,
    strategy: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if version.is_v5() {
        strategy.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

// Reason code tables of MQTT 5 (Table B of the checklist).
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];
/// The MQTT 5 codes that the six MQTT 3.x CONNACK return codes map to.
const V3_CONNACK_CODES: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
const V3_SUBACK_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

// ---------------------------------------------------------------------------------------------
// Property strategies (MQTT 5)
// ---------------------------------------------------------------------------------------------

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(1..=u16::MAX),
        option::of(1..=u32::MAX),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        user_properties(),
        option::of(text(8)),
        option::of(binary(8)),
    )
        .prop_map(|(sei, rm, mps, tam, rri, rpi, user, method, data)| {
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties: user,
                // Authentication Data requires an Authentication Method.
                authentication_data: method.as_ref().and(data),
                authentication_method: method,
                bridge: false,
            }
        })
}

/// Properties a PUBLISH and a Will share; `per_delivery` adds Topic Alias and Subscription
/// Identifiers, which only a PUBLISH carries.
fn message_properties(per_delivery: bool) -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(any::<u16>()),
        option::of(topic_name()),
        option::of(binary(8)),
        user_properties(),
        vec(subscription_identifier(), 0..3),
        option::of(text(8)),
    )
        .prop_map(
            move |(pfi, mei, alias, rt, cd, user, ids, ct)| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: alias.filter(|_| per_delivery),
                response_topic: rt,
                correlation_data: cd,
                user_properties: user,
                subscription_identifiers: if per_delivery { ids } else { Vec::new() },
                content_type: ct,
            },
        )
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (option::of(any::<u32>()), message_properties(false)).prop_map(|(delay, message)| {
        WillProperties {
            will_delay_interval: delay,
            message,
        }
    })
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(1..=u16::MAX),
            option::of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
            option::of(any::<bool>()),
            option::of(1..=u32::MAX),
            option::of(text(8)),
            option::of(any::<u16>()),
            option::of(text(8)),
            user_properties(),
        ),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<u16>()),
            option::of(text(8)),
            option::of(text(8)),
            option::of(text(8)),
            option::of(binary(8)),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci, tam, rs, user), (wsa, sia, ssa, ska, ri, sr, am, ad))| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: user,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        )
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(text(8)), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Packet strategies
// ---------------------------------------------------------------------------------------------

fn will(version: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    (
        topic_name(),
        binary(16),
        qos(),
        any::<bool>(),
        v5_only(version, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        v5_only(version, connect_properties()),
        text(24),
        option::of(will(version)),
        option::of(text(8)),
        option::of(binary(8)),
        any::<bool>(),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                mut properties,
                client_id,
                will,
                username,
                password,
                bridge,
            )| {
                // MQTT 3.x forbids a password without a user name (MQTT-3.1.2-22).
                let password = password.filter(|_| version.is_v5() || username.is_some());
                // The bridge bit of the protocol level exists in 3.x only.
                properties.bridge = bridge && !version.is_v5();
                Packet::Connect(Box::new(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if version.is_v5() {
        CONNACK_CODES
    } else {
        V3_CONNACK_CODES
    };
    (
        any::<bool>(),
        reason(codes),
        v5_only(version, connack_properties()),
    )
        .prop_map(move |(session_present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                // 3.1 has no Session Present flag.
                session_present: session_present && version != V31,
                reason,
                properties,
            })
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let topic = if version.is_v5() {
        // An empty topic stands for a Topic Alias in 5.0.
        prop_oneof![4 => topic_name(), 1 => Just(ByteString::new())].boxed()
    } else {
        topic_name().boxed()
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic,
        packet_id(),
        v5_only(version, message_properties(true)),
        binary(64),
    )
        .prop_map(|(qos, dup, retain, topic, id, properties, payload)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: (!qos0).then_some(id),
                properties,
                payload,
            })
        })
}

fn ack(version: ProtocolVersion, kind: fn(Ack) -> Packet, codes: &[u8]) -> BoxedStrategy<Packet> {
    let reason = if version.is_v5() {
        reason(codes).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    };
    (packet_id(), reason, v5_only(version, ack_properties()))
        .prop_map(move |(packet_id, reason, properties)| {
            kind(Ack {
                packet_id,
                reason,
                properties,
            })
        })
        .boxed()
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    if !version.is_v5() {
        return qos().prop_map(SubscriptionOptions::with_qos).boxed();
    }
    let retain_handling = prop_oneof![
        Just(RetainHandling::SendAtSubscribe),
        Just(RetainHandling::SendIfNew),
        Just(RetainHandling::DoNotSend),
    ];
    (qos(), any::<bool>(), any::<bool>(), retain_handling)
        .prop_map(
            |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                qos,
                no_local,
                retain_as_published,
                retain_handling,
            },
        )
        .boxed()
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties = (option::of(subscription_identifier()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    );
    (
        packet_id(),
        v5_only(version, properties),
        vec((topic_filter(), subscription_options(version)), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if version.is_v5() {
        SUBACK_CODES
    } else {
        V3_SUBACK_CODES
    };
    (
        packet_id(),
        v5_only(version, ack_properties()),
        vec(reason(codes), 1..5),
    )
        .prop_map(|(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        v5_only(version, user_properties()),
        vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, user_properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                user_properties,
                filters,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        packet_id(),
        v5_only(version, ack_properties()),
        v5_only(version, vec(reason(UNSUBACK_CODES), 1..5)),
    )
        .prop_map(|(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reasons,
            })
        })
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let properties = (
        option::of(any::<u32>()),
        option::of(text(8)),
        user_properties(),
        option::of(text(8)),
    )
        .prop_map(|(sei, rs, user, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: user,
            server_reference: sr,
        });
    v5_only(version, (reason(DISCONNECT_CODES), properties))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    let properties = (
        text(8),
        option::of(binary(8)),
        option::of(text(8)),
        user_properties(),
    )
        .prop_map(|(method, data, rs, user)| AuthProperties {
            authentication_method: Some(method),
            authentication_data: data,
            reason_string: rs,
            user_properties: user,
        });
    (reason(AUTH_CODES), properties)
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any packet `version` can carry.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut arms = vec![
        connect(version).boxed(),
        connack(version).boxed(),
        publish(version).boxed(),
        ack(version, Packet::PubAck, PUBACK_CODES),
        ack(version, Packet::PubRec, PUBACK_CODES),
        ack(version, Packet::PubRel, PUBREL_CODES),
        ack(version, Packet::PubComp, PUBREL_CODES),
        subscribe(version).boxed(),
        suback(version).boxed(),
        unsubscribe(version).boxed(),
        unsuback(version).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version).boxed(),
    ];
    if version.is_v5() {
        arms.push(auth().boxed());
    }
    Union::new(arms).boxed()
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// The decoder a connection would use for `packet`: a fresh server decoder for CONNECT.
fn decoder_for(packet: &Packet, version: ProtocolVersion) -> Decoder {
    match packet {
        Packet::Connect(_) => Decoder::new(MAX_PACKET_SIZE),
        _ => Decoder::with_version(version, MAX_PACKET_SIZE),
    }
}

fn encode(packet: &Packet, version: ProtocolVersion) -> Result<Vec<u8>, TestCaseError> {
    // Encoding appends: bytes already in the buffer stay and are not counted.
    let mut dst = BytesMut::from(&b"prefix"[..]);
    let n = packet
        .encode(version, &mut dst)
        .map_err(|e| TestCaseError::fail(format!("encode failed: {e}")))?;
    prop_assert_eq!(&dst[..6], b"prefix");
    prop_assert_eq!(
        n,
        dst.len() - 6,
        "reported length differs from bytes written"
    );
    Ok(dst[6..].to_vec())
}

fn check_round_trip(version: ProtocolVersion, packet: &Packet) -> Result<(), TestCaseError> {
    let bytes = encode(packet, version)?;
    let mut d = decoder_for(packet, version);
    prop_assert_eq!(d.frame_len(&bytes), Ok(Some(bytes.len())));

    // Every proper prefix is incomplete and left untouched.
    for n in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..n]);
        prop_assert_eq!(decoder_for(packet, version).decode(&mut buf), Ok(None));
        prop_assert_eq!(buf.len(), n);
    }

    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = d.decode(&mut buf);
    prop_assert_eq!(decoded.as_ref(), Ok(&Some(packet.clone())));
    prop_assert!(buf.is_empty());
    prop_assert_eq!(d.version(), Some(version));

    // The peer's limit is the exact size: one byte less is refused without writing anything.
    let mut dst = BytesMut::new();
    let limit = u32::try_from(bytes.len()).expect("test packets are small");
    prop_assert_eq!(
        packet.encode_limited(version, limit - 1, &mut dst),
        Err(EncodeError::ExceedsPeerLimit {
            size: bytes.len(),
            max: limit - 1
        })
    );
    prop_assert!(dst.is_empty());
    prop_assert_eq!(
        packet.encode_limited(version, limit, &mut dst),
        Ok(bytes.len())
    );
    prop_assert_eq!(&dst[..], &bytes[..]);
    Ok(())
}

/// Decodes `data` until the decoder needs more bytes or fails. Each decoded packet must account
/// for exactly its frame, and must re-encode (in the decoder's version) to bytes that decode to
/// the same packet. Returns the number of packets and the final result.
fn drain(mut d: Decoder, data: &[u8]) -> Result<(usize, Option<DecodeError>), TestCaseError> {
    let mut buf = BytesMut::from(data);
    let mut count = 0;
    loop {
        let before = buf.len();
        let frame = d.frame_len(&buf);
        match d.decode(&mut buf) {
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "Ok(None) consumed input");
                return Ok((count, None));
            }
            Err(e) => {
                // Errors found in the fixed header consume nothing; later ones the whole frame.
                prop_assert!(buf.len() == before || Ok(Some(before - buf.len())) == frame);
                return Ok((count, Some(e)));
            }
            Ok(Some(packet)) => {
                count += 1;
                prop_assert_eq!(Ok(Some(before - buf.len())), frame);
                let version = d.version().expect("a decoded packet fixes the version");
                let bytes = encode(&packet, version)?;
                let mut again = Decoder::with_version(version, MAX_PACKET_SIZE);
                let mut re = BytesMut::from(&bytes[..]);
                prop_assert_eq!(again.decode(&mut re), Ok(Some(packet)));
                prop_assert!(re.is_empty());
            }
        }
    }
}

fn all_decoders() -> [Decoder; 4] {
    [
        Decoder::new(MAX_PACKET_SIZE),
        Decoder::with_version(V31, MAX_PACKET_SIZE),
        Decoder::with_version(V311, MAX_PACKET_SIZE),
        Decoder::with_version(V5, MAX_PACKET_SIZE),
    ]
}

/// A packet-shaped input: any first byte, a correct Remaining Length, any body.
fn framed_garbage() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), vec(any::<u8>(), 0..96)).prop_map(|(first, body)| {
        let mut out = vec![first];
        let mut len = body.len();
        loop {
            let byte = (len % 128) as u8;
            len /= 128;
            out.push(if len > 0 { byte | 0x80 } else { byte });
            if len == 0 {
                break;
            }
        }
        out.extend(body);
        out
    })
}

/// A valid packet of `version`, encoded, with a few bytes overwritten and possibly cut short.
fn mutated(version: ProtocolVersion) -> impl Strategy<Value = Vec<u8>> {
    (
        packet(version),
        vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(packet, edits, cut, truncate)| {
            let mut bytes = BytesMut::new();
            packet
                .encode(version, &mut bytes)
                .expect("generated packets encode");
            let mut bytes = bytes.to_vec();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v31_packets_round_trip(p in packet(V31)) {
        check_round_trip(V31, &p)?;
    }

    #[test]
    fn v311_packets_round_trip(p in packet(V311)) {
        check_round_trip(V311, &p)?;
    }

    #[test]
    fn v5_packets_round_trip(p in packet(V5)) {
        check_round_trip(V5, &p)?;
    }

    #[test]
    fn mqtt5_6_0_0_2_packets_back_to_back_decode_in_order(
        (version, packets) in select(vec![V31, V311, V5])
            .prop_flat_map(|v| (Just(v), vec(packet(v), 1..6)))
    ) {
        let mut stream = Vec::new();
        for p in &packets {
            stream.extend(encode(p, version)?);
        }
        let mut buf = BytesMut::from(&stream[..]);
        let mut d = Decoder::with_version(version, MAX_PACKET_SIZE);
        for p in &packets {
            prop_assert_eq!(d.decode(&mut buf), Ok(Some(p.clone())));
        }
        prop_assert_eq!(d.decode(&mut buf), Ok(None));
        prop_assert!(buf.is_empty());
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn mqtt5_s4_13_decoder_never_panics_on_arbitrary_bytes(data in vec(any::<u8>(), 0..256)) {
        for d in all_decoders() {
            let (count, _) = drain(d, &data)?;
            prop_assert!(count <= data.len() / 2);
        }
    }

    #[test]
    fn mqtt5_s4_13_decoder_never_panics_on_packet_shaped_garbage(data in framed_garbage()) {
        for d in all_decoders() {
            let (count, error) = drain(d, &data)?;
            // One frame: either it decoded or it was rejected, never left waiting.
            prop_assert_eq!(count + usize::from(error.is_some()), 1);
        }
    }

    #[test]
    fn mqtt5_s4_13_decoder_never_panics_on_mutated_packets(
        v31 in mutated(V31),
        v311 in mutated(V311),
        v5 in mutated(V5),
    ) {
        for (version, data) in [(V31, &v31), (V311, &v311), (V5, &v5)] {
            drain(Decoder::with_version(version, MAX_PACKET_SIZE), data)?;
            drain(Decoder::new(MAX_PACKET_SIZE), data)?;
            // A small limit exercises the size check on the same inputs.
            drain(Decoder::with_version(version, 16), data)?;
        }
    }
}
