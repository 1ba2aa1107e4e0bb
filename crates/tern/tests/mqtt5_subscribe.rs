//! MQTT 5.0 conformance of SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ/PINGRESP,
//! DISCONNECT and AUTH (specification §3.8 to §3.15; sections 11 to 17 of
//! `mqtt-v5-server-checklist.md`), against the real broker over loopback: raw packets for exact
//! flags, options and reason codes, and a few exchanges with the `rumqttc` client.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{
    QUIET, RawClient, TIMEOUT, Tern, V5, connect_packet, frame, hex, lp, pid, publish,
    recv_raw_frame, will,
};
use tern_codec::{
    Ack, ByteString, ConnAck, Connect, ConnectProperties, Decoder, Disconnect, Packet, PacketId,
    Publish, QoS, ReasonCode, RetainHandling, Subscribe, SubscribeProperties, SubscriptionOptions,
    Unsubscribe,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn client(tern: &Tern, id: &str) -> RawClient {
    RawClient::connect(tern.addr, V5, id).await
}

/// An MQTT 5 client whose CONNECT is adjusted by `f`; asserts a successful CONNACK.
async fn client_with(
    tern: &Tern,
    id: &str,
    clean_start: bool,
    f: impl FnOnce(&mut Connect),
) -> (RawClient, ConnAck) {
    let mut connect = connect_packet(V5, id, clean_start);
    f(&mut connect);
    let (c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    (c, ack)
}

fn props(f: impl FnOnce(&mut ConnectProperties)) -> impl FnOnce(&mut Connect) {
    move |c| f(&mut c.properties)
}

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::with_qos(qos)
}

fn subscribe_packet(
    id: u16,
    identifier: Option<u32>,
    filters: &[(&str, SubscriptionOptions)],
) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(id),
        properties: SubscribeProperties {
            subscription_identifier: identifier,
            ..Default::default()
        },
        filters: filters
            .iter()
            .map(|(f, o)| (ByteString::from(*f), *o))
            .collect(),
    })
}

fn unsubscribe_packet(id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(id),
        user_properties: Vec::new(),
        filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
    })
}

/// Sends SUBSCRIBE and returns the SUBACK's packet id and codes.
async fn suback(c: &mut RawClient, packet: Packet) -> (PacketId, Vec<ReasonCode>) {
    c.send(&packet).await;
    match c.recv().await {
        Packet::SubAck(a) => (a.packet_id, a.reasons),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Sends UNSUBSCRIBE and returns the UNSUBACK's packet id and codes.
async fn unsuback(c: &mut RawClient, packet: Packet) -> (PacketId, Vec<ReasonCode>) {
    c.send(&packet).await;
    match c.recv().await {
        Packet::UnsubAck(a) => (a.packet_id, a.reasons),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

/// A raw SUBSCRIBE: first byte, packet id, property bytes (< 128), entries of filter bytes and
/// options byte.
fn raw_subscribe(first: u8, id: u16, props: &[u8], entries: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    for (filter, options) in entries {
        body.extend_from_slice(&lp(filter));
        body.push(*options);
    }
    frame(first, &body)
}

/// A raw UNSUBSCRIBE: first byte, packet id, property bytes (< 128), filters.
fn raw_unsubscribe(first: u8, id: u16, props: &[u8], filters: &[&[u8]]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    for filter in filters {
        body.extend_from_slice(&lp(filter));
    }
    frame(first, &body)
}

async fn expect_rejected(tern: &Tern, id: &str, bytes: &[u8], reason: ReasonCode) {
    let mut c = client(tern, id).await;
    c.send_bytes(bytes).await;
    c.expect_disconnect(reason).await;
}

fn decode_frame(frame: &[u8]) -> Packet {
    let mut buf = BytesMut::from(frame);
    Decoder::with_version(V5, u32::MAX)
        .decode(&mut buf)
        .expect("valid packet")
        .expect("complete packet")
}

async fn publisher(tern: &Tern, id: &str) -> RawClient {
    client(tern, id).await
}

/// Publishes at QoS 1 (or as asked) and returns the PUBACK reason; QoS 0 is followed by a
/// PINGREQ round trip so that the message has been routed when this returns.
async fn send(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> ReasonCode {
    let r = c.publish(topic, payload, qos, retain).await;
    if qos == QoS::AtMostOnce {
        assert!(c.sync().await.is_empty());
    }
    r
}

/// Receives one PUBLISH and acknowledges it.
async fn take(c: &mut RawClient) -> Publish {
    let p = c.recv_publish().await;
    c.ack(&p).await;
    p
}

fn mqtt_config(body: &str) -> Tern {
    Tern::start_config(&format!("[mqtt]\n{body}\n"), "toml")
}

// ---------------------------------------------------------------------------------------------
// §3.8 SUBSCRIBE
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_8_1_1_subscribe_flags_must_be_0010() {
    let tern = Tern::start();
    for (i, first) in [0x80u8, 0x83, 0x8A, 0x86].into_iter().enumerate() {
        let bytes = raw_subscribe(first, 1, &[], &[(b"a/b", 0)]);
        expect_rejected(
            &tern,
            &format!("sf{i}"),
            &bytes,
            ReasonCode::MALFORMED_PACKET,
        )
        .await;
    }
}

#[tokio::test]
async fn mqtt5_s3_8_2_1_2_subscription_identifier_0_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_subscribe(0x82, 1, &hex("0b 00"), &[(b"a/b", 0)]);
    expect_rejected(&tern, "sid0", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_8_2_1_2_duplicate_subscription_identifier_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_subscribe(0x82, 1, &hex("0b 01 0b 02"), &[(b"a/b", 0)]);
    expect_rejected(&tern, "sid-dup", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_8_2_1_2_identifier_goes_with_every_filter_of_the_packet() {
    let tern = Tern::start();
    let mut c = client(&tern, "sidall").await;
    let (_, codes) = suback(
        &mut c,
        subscribe_packet(
            1,
            Some(300),
            &[
                ("sidall/a", opts(QoS::AtLeastOnce)),
                ("sidall/b", opts(QoS::AtLeastOnce)),
            ],
        ),
    )
    .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_1; 2]);
    let mut p = publisher(&tern, "sidall-pub").await;
    send(&mut p, "sidall/a", b"a", QoS::AtLeastOnce, false).await;
    send(&mut p, "sidall/b", b"b", QoS::AtLeastOnce, false).await;
    for _ in 0..2 {
        assert_eq!(
            take(&mut c).await.properties.subscription_identifiers,
            [300]
        );
    }
}

#[tokio::test]
async fn mqtt5_s3_8_2_1_2_absent_identifier_stores_none() {
    let tern = Tern::start();
    let mut c = client(&tern, "sidnone").await;
    c.subscribe_with("sidnone/t", opts(QoS::AtLeastOnce), Some(8))
        .await;
    // Changed by a SUBSCRIBE without identifier: the subscription now has none.
    c.subscribe_with("sidnone/t", opts(QoS::AtLeastOnce), None)
        .await;
    let mut p = publisher(&tern, "sidnone-pub").await;
    send(&mut p, "sidnone/t", b"x", QoS::AtLeastOnce, false).await;
    assert!(
        take(&mut c)
            .await
            .properties
            .subscription_identifiers
            .is_empty()
    );
}

#[tokio::test]
async fn mqtt5_s3_8_2_1_3_repeated_user_properties_are_accepted() {
    let tern = Tern::start();
    let mut c = client(&tern, "sup").await;
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(9),
        properties: SubscribeProperties {
            subscription_identifier: None,
            user_properties: vec![
                ("k".into(), "1".into()),
                ("k".into(), "2".into()),
                ("k".into(), "1".into()),
            ],
        },
        filters: vec![("sup/t".into(), opts(QoS::AtLeastOnce))],
    });
    assert_eq!(
        suback(&mut c, packet).await,
        (pid(9), vec![ReasonCode::GRANTED_QOS_1])
    );
}

#[tokio::test]
async fn mqtt5_3_8_3_1_topic_filter_must_be_well_formed_utf8() {
    let tern = Tern::start();
    let bytes = raw_subscribe(0x82, 1, &[], &[(&[b'a', 0xC3, 0x28], 0)]);
    expect_rejected(&tern, "sf-utf8", &bytes, ReasonCode::MALFORMED_PACKET).await;
    let bytes = raw_subscribe(0x82, 1, &[], &[(b"a/\0", 0)]);
    expect_rejected(&tern, "sf-nul", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_3_8_3_2_subscribe_without_filters_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "sub-empty",
        &hex("82 03 00 01 00"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_8_3_1_subscription_qos_3_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_subscribe(0x82, 1, &[], &[(b"a/b", 0x03)]);
    expect_rejected(&tern, "sub-qos3", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_8_3_1_retain_handling_3_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_subscribe(0x82, 1, &[], &[(b"a/b", 0x31)]);
    expect_rejected(&tern, "sub-rh3", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_8_3_3_no_local_skips_the_clients_own_messages() {
    let tern = Tern::start();
    let mut c = client(&tern, "nl").await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtLeastOnce)
    };
    c.subscribe_with("nl/t", no_local, None).await;
    // Accepted; 0x10 (no matching subscribers) would be as right as 0x00 here.
    let r = c.publish("nl/t", b"own", QoS::AtLeastOnce, false).await;
    assert!(
        matches!(r, ReasonCode::SUCCESS | ReasonCode::NO_MATCHING_SUBSCRIBERS),
        "{r}"
    );
    c.expect_nothing().await;
    let mut other = publisher(&tern, "nl-other").await;
    send(&mut other, "nl/t", b"theirs", QoS::AtLeastOnce, false).await;
    assert_eq!(&take(&mut c).await.payload[..], b"theirs");
}

#[tokio::test]
async fn mqtt5_3_8_3_3_no_local_applies_per_subscription() {
    let tern = Tern::start();
    let mut c = client(&tern, "nl2").await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtLeastOnce)
    };
    c.subscribe_with("nl2/t", no_local, Some(1)).await;
    c.subscribe_with("nl2/#", opts(QoS::AtLeastOnce), Some(2))
        .await;
    c.publish("nl2/t", b"own", QoS::AtLeastOnce, false).await;
    let got = take(&mut c).await;
    assert_eq!(
        got.properties.subscription_identifiers,
        [2],
        "delivered through the other subscription only"
    );
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_8_3_4_no_local_on_shared_subscription_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "nl-shared").await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtLeastOnce)
    };
    c.send(&subscribe_packet(1, None, &[("$share/g/nl/t", no_local)]))
        .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_8_3_5_reserved_subscription_option_bits_are_malformed() {
    let tern = Tern::start();
    for (i, options) in [0x40u8, 0x80, 0xC1].into_iter().enumerate() {
        let bytes = raw_subscribe(0x82, 1, &[], &[(b"a/b", options)]);
        expect_rejected(
            &tern,
            &format!("sob{i}"),
            &bytes,
            ReasonCode::MALFORMED_PACKET,
        )
        .await;
    }
}

#[tokio::test]
async fn mqtt5_3_8_4_1_every_subscribe_is_answered_with_a_suback() {
    let tern = Tern::start();
    let mut c = client(&tern, "suback").await;
    let q1 = opts(QoS::AtLeastOnce);
    for (id, filters) in [
        (1, vec![("sa/t", q1)]),
        (2, vec![("sa/#/bad", q1)]),
        (3, vec![("sa/t", q1)]),
        (4, vec![("sa/+", q1), ("$share/g/sa/t", q1), ("bad+", q1)]),
    ] {
        let (got, codes) = suback(&mut c, subscribe_packet(id, None, &filters)).await;
        assert_eq!(got, pid(id));
        assert_eq!(codes.len(), filters.len());
    }
}

#[tokio::test]
async fn mqtt5_3_8_4_2_suback_carries_the_subscribe_packet_identifier() {
    let tern = Tern::start();
    let mut c = client(&tern, "suback-id").await;
    for id in [1u16, 0x1234, 0xFFFF] {
        let (got, _) = suback(
            &mut c,
            subscribe_packet(id, None, &[("si/t", opts(QoS::AtMostOnce))]),
        )
        .await;
        assert_eq!(got, pid(id));
    }
}

#[tokio::test]
async fn mqtt5_s3_8_4_retained_messages_come_with_the_suback() {
    let tern = Tern::start();
    let mut p = publisher(&tern, "rws-pub").await;
    send(&mut p, "rws/a", b"A", QoS::AtLeastOnce, true).await;
    send(&mut p, "rws/b", b"B", QoS::AtLeastOnce, true).await;
    let mut c = client(&tern, "rws").await;
    c.send(&subscribe_packet(
        5,
        None,
        &[("rws/#", opts(QoS::AtLeastOnce))],
    ))
    .await;
    // The server may send the retained messages before or after the SUBACK.
    let mut suback_seen = false;
    let mut retained = Vec::new();
    while !suback_seen || retained.len() < 2 {
        match c.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(
                    (a.packet_id, a.reasons),
                    (pid(5), vec![ReasonCode::GRANTED_QOS_1])
                );
                suback_seen = true;
            }
            Packet::Publish(m) => {
                assert!(m.retain);
                c.ack(&m).await;
                retained.push(m.payload[0]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    retained.sort_unstable();
    assert_eq!(retained, b"AB");
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_8_4_3_identical_filter_replaces_the_subscription() {
    let tern = Tern::start();
    let mut c = client(&tern, "repl").await;
    c.subscribe_with("repl/t", opts(QoS::AtMostOnce), Some(1))
        .await;
    let codes = c
        .subscribe_with("repl/t", opts(QoS::ExactlyOnce), Some(2))
        .await;
    assert_eq!(codes, [ReasonCode::GRANTED_QOS_2]);
    let mut p = publisher(&tern, "repl-pub").await;
    send(&mut p, "repl/t", b"x", QoS::ExactlyOnce, false).await;
    let got = take(&mut c).await;
    assert_eq!(got.qos, QoS::ExactlyOnce, "the new QoS applies");
    assert_eq!(
        got.properties.subscription_identifiers,
        [2],
        "the new identifier"
    );
    c.expect_nothing().await;
    // One subscription, not two: unsubscribing once removes it.
    assert_eq!(c.unsubscribe("repl/t").await, [ReasonCode::SUCCESS]);
    assert_eq!(
        c.unsubscribe("repl/t").await,
        [ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
}

#[tokio::test]
async fn mqtt5_3_8_4_3_replacement_changes_the_options() {
    let tern = Tern::start();
    let mut c = client(&tern, "repl-o").await;
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::AtLeastOnce)
    };
    c.subscribe_with("replo/t", no_local, None).await;
    c.publish("replo/t", b"1", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
    c.subscribe_with("replo/t", opts(QoS::AtLeastOnce), None)
        .await;
    c.publish("replo/t", b"2", QoS::AtLeastOnce, false).await;
    assert_eq!(
        &take(&mut c).await.payload[..],
        b"2",
        "No Local was replaced"
    );
}

#[tokio::test]
async fn mqtt5_3_8_4_4_replacement_resends_retained_and_loses_no_message() {
    let tern = Tern::start();
    let mut p = publisher(&tern, "rpl4-pub").await;
    send(&mut p, "rpl4/r", b"R", QoS::AtLeastOnce, true).await;
    let (mut c, _) = client_with(&tern, "rpl4", true, props(|p| p.receive_maximum = Some(1))).await;
    c.subscribe("rpl4/#", QoS::AtLeastOnce).await;
    let retained = c.recv_publish().await;
    assert_eq!(&retained.payload[..], b"R");
    // Two messages wait behind the unacknowledged retained one.
    send(&mut p, "rpl4/m", b"1", QoS::AtLeastOnce, false).await;
    send(&mut p, "rpl4/m", b"2", QoS::AtLeastOnce, false).await;
    assert_eq!(
        c.subscribe("rpl4/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    c.ack(&retained).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = take(&mut c).await;
        got.push((m.payload[0], m.retain));
    }
    got.sort_unstable();
    assert_eq!(got, [(b'1', false), (b'2', false), (b'R', true)]);
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_8_4_new_filter_gets_retained_unless_retain_handling_2_or_shared() {
    let tern = Tern::start();
    let mut p = publisher(&tern, "nf-pub").await;
    send(&mut p, "nf/t", b"R", QoS::AtLeastOnce, true).await;
    let mut c = client(&tern, "nf").await;
    c.subscribe("nf/+", QoS::AtLeastOnce).await;
    assert_eq!(&take(&mut c).await.payload[..], b"R");
    let rh2 = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..opts(QoS::AtLeastOnce)
    };
    c.subscribe_with("nf/#", rh2, None).await;
    c.subscribe("$share/g/nf/t", QoS::AtLeastOnce).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_8_4_5_several_filters_act_as_several_subscribes() {
    let tern = Tern::start();
    let mut c = client(&tern, "multi").await;
    let (_, codes) = suback(
        &mut c,
        subscribe_packet(
            3,
            None,
            &[
                ("multi/a", opts(QoS::AtMostOnce)),
                ("multi/b", opts(QoS::AtLeastOnce)),
                ("multi/c", opts(QoS::ExactlyOnce)),
            ],
        ),
    )
    .await;
    assert_eq!(
        codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2
        ]
    );
    let mut p = publisher(&tern, "multi-pub").await;
    for (t, want) in [
        ("multi/a", QoS::AtMostOnce),
        ("multi/b", QoS::AtLeastOnce),
        ("multi/c", QoS::ExactlyOnce),
    ] {
        send(&mut p, t, b"x", QoS::ExactlyOnce, false).await;
        let got = take(&mut c).await;
        assert_eq!((got.topic.as_ref(), got.qos), (t, want));
    }
}

#[tokio::test]
async fn mqtt5_3_8_4_6_one_reason_code_per_filter() {
    let tern = Tern::start();
    let mut c = client(&tern, "codes").await;
    let filters: Vec<(String, SubscriptionOptions)> = (0..20)
        .map(|i| (format!("codes/{i}"), opts(QoS::AtLeastOnce)))
        .collect();
    let refs: Vec<(&str, SubscriptionOptions)> =
        filters.iter().map(|(f, o)| (f.as_str(), *o)).collect();
    let (_, codes) = suback(&mut c, subscribe_packet(1, None, &refs)).await;
    assert_eq!(codes, vec![ReasonCode::GRANTED_QOS_1; 20]);
}

#[tokio::test]
async fn mqtt5_3_8_4_7_granted_qos_may_be_lower_than_requested() {
    let tern = mqtt_config("max_qos = 1");
    let mut c = client(&tern, "grant").await;
    let (_, codes) = suback(
        &mut c,
        subscribe_packet(
            1,
            None,
            &[
                ("grant/0", opts(QoS::AtMostOnce)),
                ("grant/1", opts(QoS::AtLeastOnce)),
                ("grant/2", opts(QoS::ExactlyOnce)),
                ("grant/#/x", opts(QoS::AtLeastOnce)),
            ],
        ),
    )
    .await;
    assert_eq!(
        codes,
        [
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
        ]
    );
    let mut p = publisher(&tern, "grant-pub").await;
    send(&mut p, "grant/2", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(take(&mut c).await.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn mqtt5_3_8_4_8_delivered_at_the_lower_of_published_and_granted_qos() {
    let tern = Tern::start();
    let mut c = client(&tern, "minq").await;
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    for g in qos {
        c.subscribe(&format!("minq/{g}"), g).await;
    }
    let mut p = publisher(&tern, "minq-pub").await;
    for g in qos {
        for q in qos {
            send(&mut p, &format!("minq/{g}"), b"x", q, false).await;
            let got = take(&mut c).await;
            assert_eq!(got.qos, q.min(g), "granted {g}, published {q}");
        }
    }
}

#[tokio::test]
async fn mqtt5_s3_8_4_subscription_identifiers_follow_the_subscription() {
    let tern = Tern::start();
    let mut p = publisher(&tern, "sidst-pub").await;
    let (mut c, _) = client_with(
        &tern,
        "sidst",
        true,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    let q1 = opts(QoS::AtLeastOnce);
    let ids = |m: Publish| m.properties.subscription_identifiers;
    c.subscribe_with("sidst/t", q1, Some(5)).await;
    send(&mut p, "sidst/t", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(ids(take(&mut c).await), [5]);
    // Re-subscribed with another identifier: the new one.
    c.subscribe_with("sidst/t", q1, Some(6)).await;
    send(&mut p, "sidst/t", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(ids(take(&mut c).await), [6]);
    // Kept with the session across connections.
    c.disconnect().await;
    let (mut c, ack) = client_with(
        &tern,
        "sidst",
        false,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    assert!(ack.session_present);
    send(&mut p, "sidst/t", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(ids(take(&mut c).await), [6]);
    // Dropped by UNSUBSCRIBE: a later subscription without identifier has none.
    c.unsubscribe("sidst/t").await;
    c.subscribe_with("sidst/t", q1, None).await;
    send(&mut p, "sidst/t", b"x", QoS::AtLeastOnce, false).await;
    assert!(ids(take(&mut c).await).is_empty());
}

// ---------------------------------------------------------------------------------------------
// §3.9 SUBACK
// ---------------------------------------------------------------------------------------------

/// The raw SUBACK a client with Maximum Packet Size 20 gets for three filters.
async fn small_suback(tern: &Tern) -> Vec<u8> {
    let (mut c, _) = client_with(
        tern,
        "small-sa",
        true,
        props(|p| p.maximum_packet_size = Some(20)),
    )
    .await;
    c.send(&subscribe_packet(
        7,
        None,
        &[
            ("ss/a", opts(QoS::AtLeastOnce)),
            ("ss/#/bad", opts(QoS::AtLeastOnce)),
            ("ss/c", opts(QoS::ExactlyOnce)),
        ],
    ))
    .await;
    recv_raw_frame(&mut c).await.expect("SUBACK")
}

#[tokio::test]
async fn mqtt5_3_9_2_1_suback_fits_the_client_limit_without_reason_string() {
    let tern = Tern::start();
    let frame = small_suback(&tern).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::SubAck(a) = decode_frame(&frame) else {
        panic!("expected SUBACK")
    };
    assert_eq!(
        a.reasons,
        [
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_2
        ]
    );
    assert_eq!(a.properties.reason_string, None);
}

#[tokio::test]
async fn mqtt5_3_9_2_2_suback_fits_the_client_limit_without_user_properties() {
    let tern = Tern::start();
    let frame = small_suback(&tern).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::SubAck(a) = decode_frame(&frame) else {
        panic!("expected SUBACK")
    };
    assert!(a.properties.user_properties.is_empty());
}

#[tokio::test]
async fn mqtt5_3_9_3_1_suback_codes_follow_the_filter_order() {
    let tern = Tern::start();
    let mut c = client(&tern, "order").await;
    let (_, codes) = suback(
        &mut c,
        subscribe_packet(
            1,
            None,
            &[
                ("order/2", opts(QoS::ExactlyOnce)),
                ("order/#/x", opts(QoS::AtMostOnce)),
                ("order/0", opts(QoS::AtMostOnce)),
                ("order/1", opts(QoS::AtLeastOnce)),
                ("order+", opts(QoS::ExactlyOnce)),
            ],
        ),
    )
    .await;
    assert_eq!(
        codes,
        [
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
        ]
    );
}

#[tokio::test]
async fn mqtt5_3_9_3_2_suback_codes_are_from_the_allowed_set() {
    let tern = Tern::start();
    let mut c = client(&tern, "allowed").await;
    let q2 = opts(QoS::ExactlyOnce);
    let cases = [
        ("al/t", ReasonCode::GRANTED_QOS_2),
        ("#", ReasonCode::GRANTED_QOS_2),
        ("$share/g/al/+", ReasonCode::GRANTED_QOS_2),
        ("a/#/b", ReasonCode::TOPIC_FILTER_INVALID),
        ("a+/b", ReasonCode::TOPIC_FILTER_INVALID),
        ("$share/g", ReasonCode::TOPIC_FILTER_INVALID),
        ("$share//t", ReasonCode::TOPIC_FILTER_INVALID),
        ("$share/g+/t", ReasonCode::TOPIC_FILTER_INVALID),
    ];
    let filters: Vec<(&str, SubscriptionOptions)> = cases.iter().map(|(f, _)| (*f, q2)).collect();
    let (_, codes) = suback(&mut c, subscribe_packet(1, None, &filters)).await;
    let allowed = [
        0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
    ];
    for (code, (filter, want)) in codes.iter().zip(&cases) {
        assert!(allowed.contains(&code.0), "{filter}: {code}");
        assert_eq!(code, want, "{filter}");
    }
    assert_eq!(codes.len(), cases.len());
}

// ---------------------------------------------------------------------------------------------
// §3.10 UNSUBSCRIBE
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_10_1_1_unsubscribe_flags_must_be_0010() {
    let tern = Tern::start();
    for (i, first) in [0xA0u8, 0xA3, 0xAA].into_iter().enumerate() {
        let bytes = raw_unsubscribe(first, 1, &[], &[b"a/b"]);
        expect_rejected(
            &tern,
            &format!("uf{i}"),
            &bytes,
            ReasonCode::MALFORMED_PACKET,
        )
        .await;
    }
}

#[tokio::test]
async fn mqtt5_s3_10_2_1_2_repeated_user_properties_are_accepted() {
    let tern = Tern::start();
    let mut c = client(&tern, "uup").await;
    c.subscribe("uup/t", QoS::AtMostOnce).await;
    let packet = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(4),
        user_properties: vec![("k".into(), "1".into()), ("k".into(), "1".into())],
        filters: vec!["uup/t".into()],
    });
    assert_eq!(
        unsuback(&mut c, packet).await,
        (pid(4), vec![ReasonCode::SUCCESS])
    );
}

#[tokio::test]
async fn mqtt5_3_10_3_1_filter_must_be_well_formed_utf8() {
    let tern = Tern::start();
    let bytes = raw_unsubscribe(0xA2, 1, &[], &[&[b'a', 0xC3, 0x28]]);
    expect_rejected(&tern, "uf-utf8", &bytes, ReasonCode::MALFORMED_PACKET).await;
    let bytes = raw_unsubscribe(0xA2, 1, &[], &[b"a\0"]);
    expect_rejected(&tern, "uf-nul", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_3_10_3_2_unsubscribe_without_filters_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "unsub-empty",
        &hex("a2 03 00 01 00"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_10_4_1_filters_are_compared_character_by_character() {
    let tern = Tern::start();
    let mut c = client(&tern, "cmp").await;
    c.subscribe("cmp/+", QoS::AtLeastOnce).await;
    let (_, codes) = unsuback(
        &mut c,
        unsubscribe_packet(1, &["cmp/x", "cmp/#", "CMP/+", "cmp/+/"]),
    )
    .await;
    assert_eq!(codes, [ReasonCode::NO_SUBSCRIPTION_EXISTED; 4]);
    let mut p = publisher(&tern, "cmp-pub").await;
    send(&mut p, "cmp/x", b"still", QoS::AtLeastOnce, false).await;
    assert_eq!(&take(&mut c).await.payload[..], b"still");
    assert_eq!(c.unsubscribe("cmp/+").await, [ReasonCode::SUCCESS]);
    assert_eq!(
        send(&mut p, "cmp/x", b"gone", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_10_4_2_no_new_messages_after_unsubscribe() {
    let tern = Tern::start();
    let (mut c, _) = client_with(
        &tern,
        "stopq",
        true,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    c.subscribe("stopq/t", QoS::AtLeastOnce).await;
    c.subscribe("stopq/keep", QoS::AtLeastOnce).await;
    assert_eq!(c.unsubscribe("stopq/t").await, [ReasonCode::SUCCESS]);
    let mut p = publisher(&tern, "stopq-pub").await;
    send(&mut p, "stopq/t", b"x", QoS::AtLeastOnce, false).await;
    c.expect_nothing().await;
    // Nor while the session is offline.
    c.disconnect().await;
    send(&mut p, "stopq/t", b"y", QoS::AtLeastOnce, false).await;
    send(&mut p, "stopq/keep", b"k", QoS::AtLeastOnce, false).await;
    let (mut c, ack) = client_with(
        &tern,
        "stopq",
        false,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    assert!(ack.session_present);
    assert_eq!(&take(&mut c).await.payload[..], b"k");
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_10_4_3_deliveries_in_flight_are_completed_after_unsubscribe() {
    let tern = Tern::start();
    let mut c = client(&tern, "fin").await;
    c.subscribe("fin/1", QoS::AtLeastOnce).await;
    c.subscribe("fin/2", QoS::ExactlyOnce).await;
    let mut p = publisher(&tern, "fin-pub").await;
    send(&mut p, "fin/1", b"one", QoS::AtLeastOnce, false).await;
    send(&mut p, "fin/2", b"two", QoS::ExactlyOnce, false).await;
    let one = c.recv_publish().await;
    let two = c.recv_publish().await;
    let (_, codes) = unsuback(&mut c, unsubscribe_packet(2, &["fin/1", "fin/2"])).await;
    assert_eq!(codes, [ReasonCode::SUCCESS; 2]);
    c.send(&Packet::PubAck(Ack::new(one.packet_id.unwrap())))
        .await;
    let id = two.packet_id.unwrap();
    c.send(&Packet::PubRec(Ack::new(id))).await;
    match c.recv().await {
        Packet::PubRel(rel) => assert_eq!((rel.packet_id, rel.reason), (id, ReasonCode::SUCCESS)),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    c.send(&Packet::PubComp(Ack::new(id))).await;
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_10_4_4_unsuback_carries_the_packet_identifier() {
    let tern = Tern::start();
    let mut c = client(&tern, "uid").await;
    c.subscribe("uid/t", QoS::AtMostOnce).await;
    for id in [1u16, 0x4321, 0xFFFF] {
        let (got, _) = unsuback(&mut c, unsubscribe_packet(id, &["uid/t"])).await;
        assert_eq!(got, pid(id));
    }
}

#[tokio::test]
async fn mqtt5_3_10_4_5_unsuback_even_when_nothing_was_deleted() {
    let tern = Tern::start();
    let mut c = client(&tern, "unone").await;
    let (got, codes) = unsuback(&mut c, unsubscribe_packet(5, &["never/subscribed"])).await;
    assert_eq!(
        (got, codes),
        (pid(5), vec![ReasonCode::NO_SUBSCRIPTION_EXISTED])
    );
}

#[tokio::test]
async fn mqtt5_3_10_4_6_several_filters_one_unsuback() {
    let tern = Tern::start();
    let mut c = client(&tern, "umulti").await;
    c.subscribe("um/a", QoS::AtMostOnce).await;
    c.subscribe("um/c", QoS::AtMostOnce).await;
    let (_, codes) = unsuback(
        &mut c,
        unsubscribe_packet(6, &["um/a", "um/b", "um/c", "um/a"]),
    )
    .await;
    assert_eq!(
        codes,
        [
            ReasonCode::SUCCESS,
            ReasonCode::NO_SUBSCRIPTION_EXISTED,
            ReasonCode::SUCCESS,
            ReasonCode::NO_SUBSCRIPTION_EXISTED,
        ],
        "processed in sequence: the second um/a is already gone"
    );
    assert!(c.sync().await.is_empty(), "a single UNSUBACK");
}

#[tokio::test]
async fn mqtt5_s3_10_4_leaving_a_shared_subscription() {
    let tern = Tern::start();
    let mut a = client(&tern, "shl-a").await;
    a.subscribe("$share/g/shl/t", QoS::AtLeastOnce).await;
    let mut b = client(&tern, "shl-b").await;
    b.subscribe("$share/g/shl/t", QoS::AtLeastOnce).await;
    assert_eq!(a.unsubscribe("$share/g/shl/t").await, [ReasonCode::SUCCESS]);
    let mut p = publisher(&tern, "shl-pub").await;
    for i in 0..3u8 {
        send(&mut p, "shl/t", &[b'0' + i], QoS::AtLeastOnce, false).await;
        assert_eq!(
            take(&mut b).await.payload[0],
            b'0' + i,
            "the remaining member gets all"
        );
    }
    a.expect_nothing().await;
    assert_eq!(b.unsubscribe("$share/g/shl/t").await, [ReasonCode::SUCCESS]);
    assert_eq!(
        send(&mut p, "shl/t", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "the shared subscription is gone with its last member"
    );
}

// ---------------------------------------------------------------------------------------------
// §3.11 UNSUBACK
// ---------------------------------------------------------------------------------------------

async fn small_unsuback(tern: &Tern) -> Vec<u8> {
    let (mut c, _) = client_with(
        tern,
        "small-ua",
        true,
        props(|p| p.maximum_packet_size = Some(20)),
    )
    .await;
    c.subscribe("su/a", QoS::AtMostOnce).await;
    c.send(&unsubscribe_packet(8, &["su/a", "su/b"])).await;
    recv_raw_frame(&mut c).await.expect("UNSUBACK")
}

#[tokio::test]
async fn mqtt5_3_11_2_1_unsuback_fits_the_client_limit_without_reason_string() {
    let tern = Tern::start();
    let frame = small_unsuback(&tern).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::UnsubAck(a) = decode_frame(&frame) else {
        panic!("expected UNSUBACK")
    };
    assert_eq!(
        a.reasons,
        [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
    assert_eq!(a.properties.reason_string, None);
}

#[tokio::test]
async fn mqtt5_3_11_2_2_unsuback_fits_the_client_limit_without_user_properties() {
    let tern = Tern::start();
    let frame = small_unsuback(&tern).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::UnsubAck(a) = decode_frame(&frame) else {
        panic!("expected UNSUBACK")
    };
    assert!(a.properties.user_properties.is_empty());
}

#[tokio::test]
async fn mqtt5_3_11_3_1_unsuback_codes_follow_the_filter_order() {
    let tern = Tern::start();
    let mut c = client(&tern, "uorder").await;
    for f in ["uo/1", "uo/3", "$share/g/uo/5"] {
        c.subscribe(f, QoS::AtMostOnce).await;
    }
    let (_, codes) = unsuback(
        &mut c,
        unsubscribe_packet(
            1,
            &[
                "uo/0",
                "uo/1",
                "uo/2",
                "uo/3",
                "$share/g/uo/5",
                "$share/h/uo/5",
            ],
        ),
    )
    .await;
    let (ok, none) = (ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED);
    assert_eq!(codes, [none, ok, none, ok, ok, none]);
}

#[tokio::test]
async fn mqtt5_3_11_3_2_unsuback_codes_are_from_the_allowed_set() {
    let tern = Tern::start();
    let mut c = client(&tern, "uallowed").await;
    c.subscribe("ua/t", QoS::AtMostOnce).await;
    let filters = ["ua/t", "ua/none", "ua/#/bad", "$share/g"];
    let (_, codes) = unsuback(&mut c, unsubscribe_packet(1, &filters)).await;
    let allowed = [0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    assert_eq!(codes.len(), filters.len());
    for (code, filter) in codes.iter().zip(filters) {
        assert!(allowed.contains(&code.0), "{filter}: {code}");
    }
    assert_eq!(
        codes[..2],
        [ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
    );
}

// ---------------------------------------------------------------------------------------------
// §3.12, §3.13 PINGREQ / PINGRESP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_12_4_1_every_pingreq_gets_a_pingresp() {
    let tern = Tern::start();
    let mut c = client(&tern, "ping").await;
    c.send_bytes(&hex("c0 00 c0 00 c0 00")).await;
    for _ in 0..3 {
        let frame = recv_raw_frame(&mut c).await.expect("PINGRESP");
        assert_eq!(frame, [0xD0, 0x00], "PINGRESP is exactly 2 bytes");
    }
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_12_pingreq_with_a_body_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "ping-body",
        &hex("c0 01 00"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_12_pingreq_with_flags_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "ping-flags",
        &hex("c2 00"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_13_pingresp_from_a_client_is_protocol_error() {
    let tern = Tern::start();
    expect_rejected(&tern, "pingresp", &hex("d0 00"), ReasonCode::PROTOCOL_ERROR).await;
}

// ---------------------------------------------------------------------------------------------
// §3.14 DISCONNECT
// ---------------------------------------------------------------------------------------------

/// A client with a Will on `will/{id}` (QoS 1) and the given Session Expiry Interval.
async fn with_will(tern: &Tern, id: &str, expiry: Option<u32>) -> RawClient {
    let topic = format!("will/{id}");
    let (c, _) = client_with(tern, id, true, |c| {
        c.will = Some(will(&topic, b"gone", QoS::AtLeastOnce, false));
        c.properties.session_expiry_interval = expiry;
    })
    .await;
    c
}

async fn will_watcher(tern: &Tern, id: &str) -> RawClient {
    let mut w = client(tern, id).await;
    w.subscribe("will/#", QoS::AtLeastOnce).await;
    w
}

async fn expect_will(w: &mut RawClient, id: &str) {
    let got = take(w).await;
    assert_eq!(got.topic, format!("will/{id}"));
    assert_eq!(&got.payload[..], b"gone");
}

#[tokio::test]
async fn mqtt5_3_14_0_1_refused_connect_gets_connack_and_no_disconnect() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "authm", true);
    connect.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_3_14_0_1_malformed_connect_gets_connack_and_no_disconnect() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    // CONNECT v5 with Session Expiry Interval given twice.
    c.send_bytes(&hex(
        "10 17 00 04 4d 51 54 54 05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 00",
    ))
    .await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, ReasonCode::PROTOCOL_ERROR);
    assert!(!ack.session_present);
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_3_14_0_1_packet_before_connect_is_closed_without_disconnect() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&hex("c0 00")).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_s3_14_connection_closed_without_disconnect_publishes_the_will() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-close").await;
    let c = with_will(&tern, "close", None).await;
    drop(c);
    expect_will(&mut w, "close").await;
}

#[tokio::test]
async fn mqtt5_3_14_1_1_disconnect_flags_must_be_0() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-dflags").await;
    let mut c = with_will(&tern, "dflags", None).await;
    c.send_bytes(&hex("e2 00")).await;
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    expect_will(&mut w, "dflags").await;
}

#[tokio::test]
async fn mqtt5_s3_14_2_1_empty_disconnect_is_a_normal_disconnection() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-short0").await;
    let mut c = with_will(&tern, "short0", None).await;
    c.send_bytes(&hex("e0 00")).await;
    c.expect_closed().await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_14_2_1_reason_code_without_properties_is_accepted() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-short1").await;
    let mut c = with_will(&tern, "short1", None).await;
    c.send_bytes(&hex("e0 01 04")).await;
    c.expect_closed().await;
    expect_will(&mut w, "short1").await;
    let mut c = with_will(&tern, "short2", None).await;
    c.send_bytes(&hex("e0 01 00")).await;
    c.expect_closed().await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_14_2_1_server_only_reason_code_from_a_client_is_protocol_error() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-srvonly").await;
    for (i, code) in [0x8Bu8, 0x8E, 0x9C, 0x89].into_iter().enumerate() {
        let id = format!("srvonly{i}");
        let mut c = with_will(&tern, &id, None).await;
        c.send(&Packet::Disconnect(Disconnect::with_reason(ReasonCode(
            code,
        ))))
        .await;
        c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
        expect_will(&mut w, &id).await;
    }
}

#[tokio::test]
async fn mqtt5_3_14_2_1_client_reason_codes_are_accepted() {
    let tern = Tern::start();
    for (i, code) in [
        0x00u8, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = client(&tern, &format!("cli{i}")).await;
        c.send(&Packet::Disconnect(Disconnect::with_reason(ReasonCode(
            code,
        ))))
        .await;
        c.expect_closed().await;
    }
}

/// Connects `id` with Session Expiry Interval `connect`, sends DISCONNECT with `disconnect`,
/// and reports whether the session is still there right after.
async fn session_survives(tern: &Tern, id: &str, connect: u32, disconnect: Option<u32>) -> bool {
    let (mut c, _) = client_with(
        tern,
        id,
        true,
        props(|p| p.session_expiry_interval = Some(connect)),
    )
    .await;
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = disconnect;
    c.send(&Packet::Disconnect(d)).await;
    c.expect_closed().await;
    let (c, ack) = client_with(
        tern,
        id,
        false,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    c.disconnect().await;
    ack.session_present
}

#[tokio::test]
async fn mqtt5_s3_14_2_2_2_session_expiry_on_disconnect_replaces_the_connect_value() {
    let tern = Tern::start();
    assert!(
        session_survives(&tern, "se-keep", 60, None).await,
        "absent keeps 60"
    );
    assert!(
        !session_survives(&tern, "se-zero", 60, Some(0)).await,
        "0 ends it now"
    );
    // Raised from 1 s to 300 s: it outlives the CONNECT value.
    let (mut c, _) = client_with(
        &tern,
        "se-up",
        true,
        props(|p| p.session_expiry_interval = Some(1)),
    )
    .await;
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = Some(300);
    c.send(&Packet::Disconnect(d)).await;
    c.expect_closed().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_c, ack) = client_with(
        &tern,
        "se-up",
        false,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    assert!(ack.session_present, "the DISCONNECT value applies");
}

#[tokio::test]
async fn mqtt5_s3_14_2_2_2_duplicate_session_expiry_is_protocol_error() {
    let tern = Tern::start();
    let (mut c, _) = client_with(
        &tern,
        "se-dup",
        true,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    c.send_bytes(&hex("e0 0c 00 0a 11 00 00 00 01 11 00 00 00 02"))
        .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_14_2_2_2_nonzero_expiry_after_zero_is_protocol_error() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-se0").await;
    let mut c = with_will(&tern, "se0", None).await;
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = Some(30);
    c.send(&Packet::Disconnect(d)).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    expect_will(&mut w, "se0").await;
    // The session was not kept either.
    let (_c, ack) = client_with(&tern, "se0", false, |_| {}).await;
    assert!(!ack.session_present);
    // 0 after 0 is a valid, normal DISCONNECT: the Will is discarded.
    let mut c = with_will(&tern, "se00", None).await;
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(d)).await;
    c.expect_closed().await;
    w.expect_nothing().await;
}

/// DISCONNECT packets the server sends: for a protocol error, and to a taken-over connection.
async fn server_disconnects(tern: &Tern) -> Vec<Disconnect> {
    let mut out = Vec::new();
    let (mut c, _) = client_with(
        tern,
        "sd-1",
        true,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    c.send(&Packet::Auth(tern_codec::Auth {
        reason: ReasonCode::SUCCESS,
        properties: tern_codec::AuthProperties {
            authentication_method: Some("X".into()),
            ..Default::default()
        },
    }))
    .await;
    match c.recv().await {
        Packet::Disconnect(d) => out.push(d),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    let (mut old, _) = client_with(
        tern,
        "sd-2",
        true,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    let (_new, _) = client_with(
        tern,
        "sd-2",
        false,
        props(|p| p.session_expiry_interval = Some(60)),
    )
    .await;
    match old.recv().await {
        Packet::Disconnect(d) => {
            assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER);
            out.push(d);
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    old.expect_closed().await;
    out
}

#[tokio::test]
async fn mqtt5_3_14_2_2_server_disconnect_has_no_session_expiry_interval() {
    let tern = Tern::start();
    for d in server_disconnects(&tern).await {
        assert_eq!(d.properties.session_expiry_interval, None, "{d:?}");
    }
}

#[tokio::test]
async fn mqtt5_s3_14_2_2_5_server_reference_only_with_0x9c_or_0x9d() {
    let tern = Tern::start();
    for d in server_disconnects(&tern).await {
        assert!(d.reason != ReasonCode::USE_ANOTHER_SERVER && d.reason != ReasonCode::SERVER_MOVED);
        assert_eq!(d.properties.server_reference, None, "{d:?}");
    }
}

/// The raw DISCONNECT for a PUBLISH with a Subscription Identifier, to a client with Maximum
/// Packet Size 20, and the same DISCONNECT to a client without limit.
async fn small_disconnect(tern: &Tern) -> (Vec<u8>, Disconnect) {
    let bad = || {
        let mut p = publish("sd/t", b"x", QoS::AtMostOnce, false, None);
        p.properties.subscription_identifiers = vec![1];
        Packet::Publish(p)
    };
    let mut free = client(tern, "sdl-free").await;
    free.send(&bad()).await;
    let full = match free.recv().await {
        Packet::Disconnect(d) => d,
        other => panic!("expected DISCONNECT, got {other:?}"),
    };
    let (mut c, _) = client_with(
        tern,
        "sdl-small",
        true,
        props(|p| p.maximum_packet_size = Some(20)),
    )
    .await;
    c.send(&bad()).await;
    let frame = recv_raw_frame(&mut c).await.expect("DISCONNECT");
    c.expect_closed().await;
    (frame, full)
}

#[tokio::test]
async fn mqtt5_3_14_2_3_disconnect_reason_string_is_dropped_rather_than_exceed_the_limit() {
    let tern = Tern::start();
    let (frame, full) = small_disconnect(&tern).await;
    assert_eq!(full.reason, ReasonCode::PROTOCOL_ERROR);
    assert!(
        full.properties.reason_string.is_some(),
        "normally there is one"
    );
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::Disconnect(d) = decode_frame(&frame) else {
        panic!("expected DISCONNECT")
    };
    assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(d.properties.reason_string, None);
}

#[tokio::test]
async fn mqtt5_3_14_2_4_disconnect_user_properties_never_exceed_the_limit() {
    let tern = Tern::start();
    let (frame, _) = small_disconnect(&tern).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::Disconnect(d) = decode_frame(&frame) else {
        panic!("expected DISCONNECT")
    };
    assert!(d.properties.user_properties.is_empty());
}

#[tokio::test]
async fn mqtt5_3_14_4_1_nothing_is_sent_after_the_servers_disconnect() {
    let tern = Tern::start();
    let mut c = client(&tern, "after").await;
    c.subscribe("after/t", QoS::AtMostOnce).await;
    // A protocol error followed, in the same write, by a PINGREQ and a SUBSCRIBE.
    let mut bytes = hex("e0 01 8e");
    bytes.extend(hex("c0 00"));
    bytes.extend(raw_subscribe(0x82, 3, &[], &[(b"after/u", 0)]));
    c.send_bytes(&bytes).await;
    // Messages for its subscription keep coming around the error.
    let mut p = publisher(&tern, "after-pub").await;
    for _ in 0..5 {
        send(&mut p, "after/t", b"x", QoS::AtMostOnce, false).await;
    }
    // Deliveries may precede the DISCONNECT (they may have been routed before the bad packet
    // was read); after it there is nothing but the close: no PINGRESP, SUBACK or PUBLISH.
    loop {
        match c.recv().await {
            Packet::Publish(m) => assert_eq!(m.topic, "after/t"),
            Packet::Disconnect(d) => {
                assert_eq!(d.reason, ReasonCode::PROTOCOL_ERROR);
                break;
            }
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_3_14_4_2_server_closes_the_connection_after_its_disconnect() {
    let tern = Tern::start();
    let (mut old, _) = client_with(&tern, "close-after", true, |_| {}).await;
    let _new = client(&tern, "close-after").await;
    match old.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    // Closed by the server even though this client keeps its end open.
    old.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_3_14_4_3_normal_disconnect_discards_the_will() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-normal").await;
    let c = with_will(&tern, "normal", Some(60)).await;
    c.disconnect().await;
    w.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_14_4_3_disconnect_with_will_message_publishes_it() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-0x04").await;
    let mut c = with_will(&tern, "x04", Some(60)).await;
    c.send(&Packet::Disconnect(Disconnect::with_reason(
        ReasonCode::DISCONNECT_WITH_WILL,
    )))
    .await;
    c.expect_closed().await;
    expect_will(&mut w, "x04").await;
}

#[tokio::test]
async fn mqtt5_3_14_4_3_other_reason_codes_publish_the_will() {
    let tern = Tern::start();
    let mut w = will_watcher(&tern, "w-other").await;
    for (i, code) in [
        ReasonCode::UNSPECIFIED_ERROR,
        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
        ReasonCode::QUOTA_EXCEEDED,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("other{i}");
        let mut c = with_will(&tern, &id, None).await;
        c.send(&Packet::Disconnect(Disconnect::with_reason(code)))
            .await;
        c.expect_closed().await;
        expect_will(&mut w, &id).await;
    }
}

#[tokio::test]
async fn mqtt5_s3_14_4_server_closes_the_connection_on_disconnect_and_ignores_the_rest() {
    let tern = Tern::start();
    let mut sub = client(&tern, "rest-sub").await;
    sub.subscribe("rest/#", QoS::AtLeastOnce).await;
    let mut c = client(&tern, "rest").await;
    let mut bytes = hex("e0 00");
    let mut out = BytesMut::new();
    Packet::Publish(publish(
        "rest/t",
        b"late",
        QoS::AtLeastOnce,
        false,
        Some(pid(1)),
    ))
    .encode(V5, &mut out)
    .unwrap();
    bytes.extend_from_slice(&out);
    bytes.extend(hex("c0 00"));
    c.send_bytes(&bytes).await;
    c.expect_closed().await;
    sub.expect_nothing().await;
}

// ---------------------------------------------------------------------------------------------
// §3.15 AUTH
// ---------------------------------------------------------------------------------------------

/// A raw AUTH with reason code and properties (< 128 bytes).
fn raw_auth(first: u8, reason: u8, props: &[u8]) -> Vec<u8> {
    let mut body = vec![reason, props.len() as u8];
    body.extend_from_slice(props);
    frame(first, &body)
}

/// Authentication Method "X".
const METHOD_X: &str = "15 00 01 58";

#[tokio::test]
async fn mqtt5_s3_15_auth_without_method_in_connect_is_protocol_error() {
    let tern = Tern::start();
    for (i, reason) in [0x00u8, 0x18, 0x19].into_iter().enumerate() {
        let bytes = raw_auth(0xF0, reason, &hex(METHOD_X));
        expect_rejected(
            &tern,
            &format!("auth{i}"),
            &bytes,
            ReasonCode::PROTOCOL_ERROR,
        )
        .await;
    }
}

#[tokio::test]
async fn mqtt5_s3_15_auth_instead_of_connect_is_closed() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_auth(0xF0, 0x18, &hex(METHOD_X))).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_3_15_1_1_auth_flags_must_be_0() {
    let tern = Tern::start();
    for (i, first) in [0xF1u8, 0xF2, 0xF8].into_iter().enumerate() {
        let bytes = raw_auth(first, 0x18, &hex(METHOD_X));
        expect_rejected(
            &tern,
            &format!("af{i}"),
            &bytes,
            ReasonCode::MALFORMED_PACKET,
        )
        .await;
    }
}

#[tokio::test]
async fn mqtt5_3_15_2_1_invalid_auth_reason_code_is_malformed() {
    let tern = Tern::start();
    for (i, reason) in [0x01u8, 0x04, 0x80, 0x8C].into_iter().enumerate() {
        let bytes = raw_auth(0xF0, reason, &hex(METHOD_X));
        expect_rejected(
            &tern,
            &format!("ar{i}"),
            &bytes,
            ReasonCode::MALFORMED_PACKET,
        )
        .await;
    }
}

#[tokio::test]
async fn mqtt5_s3_15_2_1_empty_auth_is_protocol_error_without_a_method() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "auth-empty",
        &hex("f0 00"),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_15_2_2_2_auth_method_missing_or_repeated_is_protocol_error() {
    let tern = Tern::start();
    let cases = [
        ("am-none", String::from("16 00 01 00")),
        ("am-twice", format!("{METHOD_X} {METHOD_X}")),
        ("ad-twice", format!("{METHOD_X} 16 00 01 00 16 00 01 01")),
    ];
    for (id, props) in cases {
        let bytes = raw_auth(0xF0, 0x18, &hex(&props));
        expect_rejected(&tern, id, &bytes, ReasonCode::PROTOCOL_ERROR).await;
    }
}

/// A CONNECT with an Authentication Method from a client with Maximum Packet Size 16: the raw
/// answer. The server supports no method, so it never sends AUTH.
async fn answer_to_auth_connect(tern: &Tern) -> Vec<u8> {
    let mut c = RawClient::open(tern.addr, V5).await;
    let mut connect = connect_packet(V5, "am-small", true);
    connect.properties.authentication_method = Some("SCRAM-SHA-256".into());
    connect.properties.authentication_data = Some(bytes::Bytes::from_static(b"client-first"));
    connect.properties.maximum_packet_size = Some(16);
    c.send(&Packet::Connect(Box::new(connect))).await;
    let frame = recv_raw_frame(&mut c).await.expect("an answer");
    c.expect_closed().await;
    frame
}

#[tokio::test]
async fn mqtt5_3_15_2_2_no_auth_with_reason_string_beyond_the_limit() {
    let tern = Tern::start();
    let frame = answer_to_auth_connect(&tern).await;
    assert!(frame.len() <= 16, "{} bytes", frame.len());
    let Packet::ConnAck(ack) = decode_frame(&frame) else {
        panic!("expected CONNACK, not AUTH")
    };
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    assert_eq!(ack.properties.reason_string, None);
}

#[tokio::test]
async fn mqtt5_3_15_2_3_no_auth_with_user_properties_beyond_the_limit() {
    let tern = Tern::start();
    let frame = answer_to_auth_connect(&tern).await;
    assert!(frame.len() <= 16, "{} bytes", frame.len());
    let Packet::ConnAck(ack) = decode_frame(&frame) else {
        panic!("expected CONNACK, not AUTH")
    };
    assert!(ack.properties.user_properties.is_empty());
}

// ---------------------------------------------------------------------------------------------
// With a third-party client
// ---------------------------------------------------------------------------------------------

mod rumqttc_v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as RPacket, UnsubAckReason};
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    fn options(id: &str, tern: &Tern) -> MqttOptions {
        let mut o = MqttOptions::new(id, tern.addr.ip().to_string(), tern.addr.port());
        o.set_keep_alive(Duration::from_secs(5));
        o
    }

    async fn next_incoming(el: &mut EventLoop) -> RPacket {
        loop {
            let event = tokio::time::timeout(TIMEOUT, el.poll())
                .await
                .expect("timeout")
                .expect("poll");
            if let Event::Incoming(p) = event
                && !matches!(
                    p,
                    RPacket::ConnAck(_) | RPacket::PingResp(_) | RPacket::PubAck(_)
                )
            {
                return p;
            }
        }
    }

    /// Polls for `QUIET` and returns the PUBLISH payloads that arrived.
    async fn publishes_within_quiet(el: &mut EventLoop) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(event) = tokio::time::timeout_at(deadline, el.poll()).await {
            if let Event::Incoming(RPacket::Publish(p)) = event.expect("poll") {
                out.push(p.payload.to_vec());
            }
        }
        out
    }

    #[tokio::test]
    async fn mqtt5_3_8_3_3_rumqttc_no_local() {
        let tern = Tern::start();
        let (c, mut el) = AsyncClient::new(options("rq-nl", &tern), 10);
        let mut f = Filter::new("rqnl/t", RQoS::AtLeastOnce);
        f.nolocal = true;
        c.subscribe_many(vec![f]).await.unwrap();
        let RPacket::SubAck(ack) = next_incoming(&mut el).await else {
            panic!("expected SUBACK")
        };
        assert_eq!(ack.return_codes.len(), 1);
        c.publish("rqnl/t", RQoS::AtLeastOnce, false, "own")
            .await
            .unwrap();
        let mut other = publisher(&tern, "rq-nl-other").await;
        send(&mut other, "rqnl/t", b"theirs", QoS::AtLeastOnce, false).await;
        assert_eq!(publishes_within_quiet(&mut el).await, [b"theirs".to_vec()]);
    }

    #[tokio::test]
    async fn mqtt5_3_10_4_5_rumqttc_unsuback_reports_no_subscription_existed() {
        let tern = Tern::start();
        let (c, mut el) = AsyncClient::new(options("rq-un", &tern), 10);
        c.subscribe("rqun/a", RQoS::AtMostOnce).await.unwrap();
        let RPacket::SubAck(_) = next_incoming(&mut el).await else {
            panic!("expected SUBACK")
        };
        c.unsubscribe("rqun/a").await.unwrap();
        c.unsubscribe("rqun/a").await.unwrap();
        for want in [
            UnsubAckReason::Success,
            UnsubAckReason::NoSubscriptionExisted,
        ] {
            let RPacket::UnsubAck(ack) = next_incoming(&mut el).await else {
                panic!("expected UNSUBACK")
            };
            assert_eq!(ack.reasons, [want]);
        }
    }
}
