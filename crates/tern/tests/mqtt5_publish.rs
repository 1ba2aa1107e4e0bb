//! MQTT 5.0 conformance of PUBLISH, PUBACK, PUBREC, PUBREL and PUBCOMP (specification §3.3 to
//! §3.7; sections 6 to 10 of `mqtt-v5-server-checklist.md`), against the real broker over
//! loopback: raw packets for exact flags, properties and reason codes, and a few exchanges with
//! the `rumqttc` client.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::{
    RawClient, TIMEOUT, Tern, V5, V311, connect_packet, frame, hex, lp, pid, publish,
    recv_raw_frame,
};
use tern_codec::{
    Ack, ByteString, ConnAck, ConnectProperties, Decoder, Packet, Publish, PublishProperties, QoS,
    ReasonCode, RetainHandling, SubscriptionOptions,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An MQTT 5 client with a clean session and no CONNECT properties.
async fn client(tern: &Tern, id: &str) -> RawClient {
    RawClient::connect(tern.addr, V5, id).await
}

/// An MQTT 5 client whose CONNECT properties are set by `f`; asserts a successful CONNACK.
async fn client_with(
    tern: &Tern,
    id: &str,
    clean_start: bool,
    f: impl FnOnce(&mut ConnectProperties),
) -> (RawClient, ConnAck) {
    let mut connect = connect_packet(V5, id, clean_start);
    f(&mut connect.properties);
    let (c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    (c, ack)
}

/// A persistent-session client (Session Expiry Interval 60 s).
async fn persistent(tern: &Tern, id: &str, clean_start: bool) -> (RawClient, ConnAck) {
    client_with(tern, id, clean_start, |p| {
        p.session_expiry_interval = Some(60)
    })
    .await
}

fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    id: u16,
    properties: PublishProperties,
) -> Packet {
    let mut p = publish(topic, payload, qos, retain, Some(pid(id)));
    p.properties = properties;
    Packet::Publish(p)
}

async fn puback(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubAck(a) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

async fn pubrec(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubRec(a) => a,
        other => panic!("expected PUBREC, got {other:?}"),
    }
}

async fn pubrel(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubRel(a) => a,
        other => panic!("expected PUBREL, got {other:?}"),
    }
}

async fn pubcomp(c: &mut RawClient) -> Ack {
    match c.recv().await {
        Packet::PubComp(a) => a,
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

/// Publishes with properties and completes the QoS flow; returns the PUBACK/PUBREC reason.
/// A QoS 0 publish is followed by a PINGREQ round trip, so that the broker has routed it when
/// this returns.
async fn publish_with(
    c: &mut RawClient,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    properties: PublishProperties,
) -> ReasonCode {
    c.send(&publish_packet(
        topic, payload, qos, retain, 0x0202, properties,
    ))
    .await;
    match qos {
        QoS::AtMostOnce => {
            assert!(c.sync().await.is_empty());
            ReasonCode::SUCCESS
        }
        QoS::AtLeastOnce => {
            let a = puback(c).await;
            assert_eq!(a.packet_id, pid(0x0202));
            a.reason
        }
        QoS::ExactlyOnce => {
            let a = pubrec(c).await;
            assert_eq!(a.packet_id, pid(0x0202));
            if !a.reason.is_error() {
                c.send(&Packet::PubRel(Ack::new(pid(0x0202)))).await;
                assert_eq!(pubcomp(c).await.reason, ReasonCode::SUCCESS);
            }
            a.reason
        }
    }
}

/// A raw MQTT 5 PUBLISH: first byte, topic bytes, packet id, property bytes (< 128), payload.
fn raw_publish(
    first: u8,
    topic: &[u8],
    packet_id: Option<u16>,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = lp(topic);
    if let Some(id) = packet_id {
        body.extend_from_slice(&id.to_be_bytes());
    }
    assert!(props.len() < 128);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(first, &body)
}

/// Sends raw bytes and asserts DISCONNECT with `reason`, then the close.
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

fn props() -> PublishProperties {
    PublishProperties::default()
}

fn options(qos: QoS, f: impl FnOnce(&mut SubscriptionOptions)) -> SubscriptionOptions {
    let mut o = SubscriptionOptions::with_qos(qos);
    f(&mut o);
    o
}

fn user(pairs: &[(&str, &str)]) -> Vec<(ByteString, ByteString)> {
    pairs
        .iter()
        .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
        .collect()
}

fn mqtt_config(body: &str) -> Tern {
    Tern::start_config(&format!("[mqtt]\n{body}\n"), "toml")
}

// ---------------------------------------------------------------------------------------------
// §3.3.1 Fixed header: DUP, QoS, RETAIN
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_3_1_1_server_sets_dup_when_it_resends() {
    let tern = Tern::start();
    let (mut sub, _) = persistent(&tern, "dup-sub", true).await;
    sub.subscribe("dup/t", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "dup-pub").await;
    assert_eq!(
        publ.publish("dup/t", b"m", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    let first = sub.recv_publish().await;
    assert!(!first.dup, "first transmission carries DUP 0");
    drop(sub); // no PUBACK: the delivery stays in flight

    let (mut sub, ack) = persistent(&tern, "dup-sub", false).await;
    assert!(ack.session_present);
    let again = sub.recv_publish().await;
    assert!(again.dup, "a re-sent PUBLISH carries DUP 1");
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(again.topic, "dup/t");
    assert_eq!(&again.payload[..], b"m");
    sub.ack(&again).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_2_qos0_publish_with_dup_is_malformed() {
    let tern = Tern::start();
    // 0x38: PUBLISH, DUP 1, QoS 0.
    let bytes = raw_publish(0x38, b"a", None, &[], b"x");
    expect_rejected(&tern, "dup0", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_3_3_1_2_server_never_sends_qos0_with_dup() {
    let tern = Tern::start();
    let mut sub = client(&tern, "dup0-sub").await;
    sub.subscribe("dup0/t", QoS::AtMostOnce).await;
    let mut publ = client(&tern, "dup0-pub").await;
    let mut p = publish("dup0/t", b"x", QoS::AtLeastOnce, false, Some(pid(7)));
    p.dup = true;
    publ.send(&Packet::Publish(p)).await;
    assert_eq!(puback(&mut publ).await.reason, ReasonCode::SUCCESS);
    let frame = recv_raw_frame(&mut sub).await.expect("a PUBLISH");
    assert_eq!(frame[0], 0x30, "QoS 0 delivery with DUP 0: {frame:02x?}");
}

#[tokio::test]
async fn mqtt5_3_3_1_3_outgoing_dup_does_not_copy_incoming_dup() {
    let tern = Tern::start();
    let mut sub = client(&tern, "dup3-sub").await;
    sub.subscribe("dup3/t", QoS::ExactlyOnce).await;
    let mut publ = client(&tern, "dup3-pub").await;
    for (qos, id) in [(QoS::AtLeastOnce, 5), (QoS::ExactlyOnce, 6)] {
        let mut p = publish("dup3/t", b"x", qos, false, Some(pid(id)));
        p.dup = true;
        publ.send(&Packet::Publish(p)).await;
        if qos == QoS::AtLeastOnce {
            assert_eq!(puback(&mut publ).await.reason, ReasonCode::SUCCESS);
        } else {
            assert_eq!(pubrec(&mut publ).await.reason, ReasonCode::SUCCESS);
            publ.send(&Packet::PubRel(Ack::new(pid(id)))).await;
            pubcomp(&mut publ).await;
        }
        let frame = recv_raw_frame(&mut sub).await.expect("a PUBLISH");
        assert_eq!(
            frame[0],
            0x30 | (qos as u8) << 1,
            "first delivery has DUP 0 though the publisher set it: {frame:02x?}"
        );
        let Packet::Publish(d) = decode_frame(&frame) else {
            panic!("not a PUBLISH")
        };
        sub.ack(&d).await;
    }
}

#[tokio::test]
async fn mqtt5_3_3_1_4_qos3_publish_is_malformed() {
    let tern = Tern::start();
    // 0x36: PUBLISH, QoS bits 11.
    let bytes = raw_publish(0x36, b"a", Some(1), &[], b"x");
    expect_rejected(&tern, "qos3", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s3_3_1_2_publish_above_maximum_qos_is_0x9b() {
    let tern = mqtt_config("max_qos = 1");
    let (mut c, ack) = client_with(&tern, "maxqos", true, |_| {}).await;
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(
        c.publish("mq/t", b"ok", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    c.send(&publish_packet(
        "mq/t",
        b"x",
        QoS::ExactlyOnce,
        false,
        2,
        props(),
    ))
    .await;
    c.expect_disconnect(ReasonCode::QOS_NOT_SUPPORTED).await;
}

#[tokio::test]
async fn mqtt5_3_3_1_5_retained_message_is_stored_and_replaced() {
    let tern = Tern::start();
    let mut publ = client(&tern, "ret5-pub").await;
    publ.publish("ret5/t", b"one", QoS::AtLeastOnce, true).await;
    let mut a = client(&tern, "ret5-a").await;
    a.subscribe("ret5/t", QoS::AtLeastOnce).await;
    let got = a.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"one"[..], true));
    a.ack(&got).await;

    publ.publish("ret5/t", b"two", QoS::AtLeastOnce, true).await;
    let live = a.recv_publish().await;
    assert_eq!(&live.payload[..], b"two");
    a.ack(&live).await;

    let mut b = client(&tern, "ret5-b").await;
    b.subscribe("ret5/t", QoS::AtLeastOnce).await;
    let got = b.recv_publish().await;
    assert_eq!(&got.payload[..], b"two", "the new message replaced the old");
    assert!(got.retain);
    b.ack(&got).await;
    b.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_6_empty_retained_payload_is_delivered_and_clears() {
    let tern = Tern::start();
    let mut publ = client(&tern, "ret6-pub").await;
    publ.publish("ret6/t", b"x", QoS::AtLeastOnce, true).await;
    let mut a = client(&tern, "ret6-a").await;
    a.subscribe("ret6/t", QoS::AtLeastOnce).await;
    let got = a.recv_publish().await;
    a.ack(&got).await;

    assert_eq!(
        publ.publish("ret6/t", b"", QoS::AtLeastOnce, true).await,
        ReasonCode::SUCCESS
    );
    let cleared = a.recv_publish().await;
    assert_eq!(cleared.topic, "ret6/t");
    assert!(cleared.payload.is_empty(), "delivered normally");
    a.ack(&cleared).await;

    let mut b = client(&tern, "ret6-b").await;
    b.subscribe("ret6/t", QoS::AtLeastOnce).await;
    b.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_7_zero_byte_payload_is_never_stored() {
    let tern = Tern::start();
    let mut publ = client(&tern, "ret7-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publish_with(&mut publ, "ret7/t", b"", qos, true, props()).await;
    }
    let mut b = client(&tern, "ret7-b").await;
    b.subscribe("ret7/#", QoS::ExactlyOnce).await;
    b.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_8_non_retained_publish_leaves_retained_message_alone() {
    let tern = Tern::start();
    let mut publ = client(&tern, "ret8-pub").await;
    publ.publish("ret8/t", b"keep", QoS::AtLeastOnce, true)
        .await;
    publ.publish("ret8/t", b"transient", QoS::AtLeastOnce, false)
        .await;
    publ.publish("ret8/u", b"never", QoS::AtLeastOnce, false)
        .await;
    let mut b = client(&tern, "ret8-b").await;
    b.subscribe("ret8/#", QoS::AtLeastOnce).await;
    let got = b.recv_publish().await;
    assert_eq!(
        (got.topic.as_ref(), &got.payload[..]),
        ("ret8/t", &b"keep"[..])
    );
    b.ack(&got).await;
    b.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_3_1_3_retained_qos0_message_is_stored() {
    let tern = Tern::start();
    let mut publ = client(&tern, "rq0-pub").await;
    publish_with(&mut publ, "rq0/t", b"zero", QoS::AtMostOnce, true, props()).await;
    let mut b = client(&tern, "rq0-b").await;
    b.subscribe("rq0/t", QoS::ExactlyOnce).await;
    let got = b.recv_publish().await;
    assert_eq!(&got.payload[..], b"zero");
    assert_eq!(got.qos, QoS::AtMostOnce);
    assert!(got.retain);
}

#[tokio::test]
async fn mqtt5_s3_3_1_3_retained_message_is_discarded_when_it_expires() {
    let tern = Tern::start();
    let mut publ = client(&tern, "rexp-pub").await;
    let expiring = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..props()
    };
    publish_with(
        &mut publ,
        "rexp/long",
        b"L",
        QoS::AtLeastOnce,
        true,
        expiring(60),
    )
    .await;
    publish_with(
        &mut publ,
        "rexp/short",
        b"S",
        QoS::AtLeastOnce,
        true,
        expiring(1),
    )
    .await;
    // Wall-clock time only moves forward: after this the 1 s interval has certainly passed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut b = client(&tern, "rexp-b").await;
    b.subscribe("rexp/#", QoS::AtLeastOnce).await;
    let got = b.recv_publish().await;
    assert_eq!(got.topic, "rexp/long");
    let left = got.properties.message_expiry_interval.expect("expiry");
    assert!((50..=59).contains(&left), "remaining expiry {left}");
    b.ack(&got).await;
    b.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_3_1_3_retain_when_not_available_is_0x9a() {
    let tern = mqtt_config("retain_available = false");
    let (mut c, ack) = client_with(&tern, "noret", true, |_| {}).await;
    assert_eq!(ack.properties.retain_available, Some(false));
    c.send(&publish_packet(
        "nr/t",
        b"x",
        QoS::AtLeastOnce,
        true,
        3,
        props(),
    ))
    .await;
    c.expect_disconnect(ReasonCode::RETAIN_NOT_SUPPORTED).await;
}

async fn retained_fixture(tern: &Tern, topic: &str) {
    let mut publ = client(tern, &format!("{topic}-pub")).await;
    publ.publish(topic, b"R", QoS::AtLeastOnce, true).await;
}

#[tokio::test]
async fn mqtt5_3_3_1_9_retain_handling_0_sends_retained_on_every_subscribe() {
    let tern = Tern::start();
    retained_fixture(&tern, "rh0/t").await;
    let mut c = client(&tern, "rh0").await;
    for _ in 0..2 {
        let codes = c
            .subscribe_with(
                "rh0/t",
                SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                None,
            )
            .await;
        assert_eq!(codes, [ReasonCode::GRANTED_QOS_1]);
        let got = c.recv_publish().await;
        assert_eq!((&got.payload[..], got.retain), (&b"R"[..], true));
        c.ack(&got).await;
    }
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_10_retain_handling_1_sends_retained_only_for_a_new_subscription() {
    let tern = Tern::start();
    retained_fixture(&tern, "rh1/t").await;
    let mut c = client(&tern, "rh1").await;
    let rh1 = options(QoS::AtLeastOnce, |o| {
        o.retain_handling = RetainHandling::SendIfNew
    });
    c.subscribe_with("rh1/t", rh1, None).await;
    let got = c.recv_publish().await;
    assert_eq!((&got.payload[..], got.retain), (&b"R"[..], true));
    c.ack(&got).await;
    // The subscription exists now: subscribing again sends nothing.
    c.subscribe_with("rh1/t", rh1, None).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_11_retain_handling_2_sends_no_retained() {
    let tern = Tern::start();
    retained_fixture(&tern, "rh2/t").await;
    let mut c = client(&tern, "rh2").await;
    let rh2 = options(QoS::AtLeastOnce, |o| {
        o.retain_handling = RetainHandling::DoNotSend
    });
    assert_eq!(
        c.subscribe_with("rh2/t", rh2, None).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    c.expect_nothing().await;
    // The subscription itself works.
    let mut publ = client(&tern, "rh2-live").await;
    publ.publish("rh2/t", b"live", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"live");
}

#[tokio::test]
async fn mqtt5_s3_3_1_3_retained_sent_for_a_subscription_carry_retain_1() {
    let tern = Tern::start();
    retained_fixture(&tern, "rflag/t").await;
    let mut c = client(&tern, "rflag").await;
    // Retain As Published 0 concerns forwarded messages, not retained ones sent at subscribe.
    c.subscribe("rflag/t", QoS::AtMostOnce).await;
    let frame = recv_raw_frame(&mut c).await.expect("retained PUBLISH");
    assert_eq!(frame[0], 0x31, "QoS 0, RETAIN 1: {frame:02x?}");
}

#[tokio::test]
async fn mqtt5_s3_3_1_3_shared_subscription_gets_no_retained_messages() {
    let tern = Tern::start();
    retained_fixture(&tern, "rshare/t").await;
    let mut c = client(&tern, "rshare").await;
    assert_eq!(
        c.subscribe("$share/g/rshare/t", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_1_12_retain_as_published_0_forwards_with_retain_0() {
    let tern = Tern::start();
    let mut c = client(&tern, "rap0").await;
    c.subscribe("rap0/t", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "rap0-pub").await;
    publ.publish("rap0/t", b"x", QoS::AtLeastOnce, true).await;
    let got = c.recv_publish().await;
    assert_eq!(&got.payload[..], b"x");
    assert!(!got.retain, "forwarded with RETAIN 0");
}

#[tokio::test]
async fn mqtt5_3_3_1_13_retain_as_published_1_keeps_the_publishers_flag() {
    let tern = Tern::start();
    let mut c = client(&tern, "rap1").await;
    let rap = options(QoS::AtLeastOnce, |o| o.retain_as_published = true);
    c.subscribe_with("rap1/t", rap, None).await;
    let mut publ = client(&tern, "rap1-pub").await;
    publ.publish("rap1/t", b"kept", QoS::AtLeastOnce, true)
        .await;
    publ.publish("rap1/t", b"plain", QoS::AtLeastOnce, false)
        .await;
    let first = c.recv_publish().await;
    assert_eq!((&first.payload[..], first.retain), (&b"kept"[..], true));
    c.ack(&first).await;
    let second = c.recv_publish().await;
    assert_eq!((&second.payload[..], second.retain), (&b"plain"[..], false));
}

// ---------------------------------------------------------------------------------------------
// §3.3.2 Variable header
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_3_2_1_topic_name_must_be_well_formed_utf8() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, &[b'a', 0xC3, 0x28], None, &[], b"x");
    expect_rejected(&tern, "utf8a", &bytes, ReasonCode::MALFORMED_PACKET).await;
    let bytes = raw_publish(0x30, b"a\0b", None, &[], b"x");
    expect_rejected(&tern, "utf8b", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_2_topic_name_with_plus_is_topic_name_invalid() {
    let tern = Tern::start();
    let bytes = raw_publish(0x32, b"a/+/c", Some(1), &[], b"x");
    expect_rejected(&tern, "wild-plus", &bytes, ReasonCode::TOPIC_NAME_INVALID).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_2_topic_name_with_hash_is_topic_name_invalid() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a/#", None, &[], b"x");
    expect_rejected(&tern, "wild-hash", &bytes, ReasonCode::TOPIC_NAME_INVALID).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_3_delivered_topic_name_matches_the_filter() {
    let tern = Tern::start();
    let mut c = client(&tern, "tn3").await;
    c.subscribe("tn3/+/c", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "tn3-pub").await;
    publ.publish("tn3/b/c", b"1", QoS::AtLeastOnce, false).await;
    publ.publish("tn3/b/d", b"2", QoS::AtLeastOnce, false).await;
    let got = c.recv_publish().await;
    assert_eq!(got.topic, "tn3/b/c");
    c.ack(&got).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_3_2_1_empty_topic_without_alias_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "empty-topic").await;
    c.send(&publish_packet(
        "",
        b"x",
        QoS::AtLeastOnce,
        false,
        1,
        props(),
    ))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_3_2_2_packet_identifier_only_in_qos_1_and_2() {
    let tern = Tern::start();
    let mut c = client(&tern, "pid").await;
    c.subscribe("pi/t", QoS::ExactlyOnce).await;
    let mut publ = client(&tern, "pid-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publish_with(&mut publ, "pi/t", b"abc", qos, false, props()).await;
        let frame = recv_raw_frame(&mut c).await.expect("PUBLISH");
        let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        // topic (2 + 4), packet id, property length (1), payload (3)
        assert_eq!(frame[1] as usize, 6 + id_len + 1 + 3, "{frame:02x?}");
        assert_eq!(&frame[2..8], b"\x00\x04pi/t");
        assert_eq!(frame[8 + id_len], 0, "no properties");
        assert_eq!(&frame[9 + id_len..], b"abc");
        let Packet::Publish(d) = decode_frame(&frame) else {
            panic!("not a PUBLISH")
        };
        assert_eq!(d.packet_id.is_some(), qos != QoS::AtMostOnce);
        c.ack(&d).await;
    }
}

// ---------------------------------------------------------------------------------------------
// §3.3.2.3 PUBLISH properties
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_s3_3_2_3_2_duplicate_payload_format_indicator_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("01 01 01 00"), b"x");
    expect_rejected(&tern, "pfi-dup", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_4_payload_format_indicator_is_forwarded() {
    let tern = Tern::start();
    let mut a = client(&tern, "pfi-a").await;
    a.subscribe("pfi/t", QoS::AtLeastOnce).await;
    let mut b = client(&tern, "pfi-b").await;
    b.subscribe("pfi/#", QoS::AtMostOnce).await;
    let mut publ = client(&tern, "pfi-pub").await;
    for pfi in [Some(true), Some(false), None] {
        let p = PublishProperties {
            payload_format_indicator: pfi,
            ..props()
        };
        publish_with(&mut publ, "pfi/t", b"text", QoS::AtLeastOnce, false, p).await;
        for c in [&mut a, &mut b] {
            let got = c.recv_publish().await;
            assert_eq!(got.properties.payload_format_indicator, pfi);
            c.ack(&got).await;
        }
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_5_expired_message_is_not_delivered_to_a_returning_session() {
    let tern = Tern::start();
    let (mut sub, _) = persistent(&tern, "exp5-sub", true).await;
    sub.subscribe("exp5/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publ = client(&tern, "exp5-pub").await;
    let short = PublishProperties {
        message_expiry_interval: Some(1),
        ..props()
    };
    assert_eq!(
        publish_with(
            &mut publ,
            "exp5/t",
            b"expired",
            QoS::AtLeastOnce,
            false,
            short
        )
        .await,
        ReasonCode::SUCCESS
    );
    publ.publish("exp5/t", b"marker", QoS::AtLeastOnce, false)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (mut sub, ack) = persistent(&tern, "exp5-sub", false).await;
    assert!(ack.session_present);
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"marker", "the expired copy was deleted");
    sub.ack(&got).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_2_6_message_expiry_interval_is_reduced_by_the_wait() {
    let tern = Tern::start();
    let (mut sub, _) = persistent(&tern, "exp6-sub", true).await;
    sub.subscribe("exp6/t", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "exp6-pub").await;
    let thirty = PublishProperties {
        message_expiry_interval: Some(30),
        ..props()
    };
    // Forwarded at once: the interval is (almost) unchanged.
    publish_with(
        &mut publ,
        "exp6/t",
        b"now",
        QoS::AtLeastOnce,
        false,
        thirty.clone(),
    )
    .await;
    let got = sub.recv_publish().await;
    let left = got.properties.message_expiry_interval.expect("expiry kept");
    assert!((29..=30).contains(&left), "forwarded at once, got {left}");
    sub.ack(&got).await;
    sub.disconnect().await;

    publish_with(
        &mut publ,
        "exp6/t",
        b"later",
        QoS::AtLeastOnce,
        false,
        thirty,
    )
    .await;
    publ.publish("exp6/t", b"none", QoS::AtLeastOnce, false)
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (mut sub, _) = persistent(&tern, "exp6-sub", false).await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"later");
    let left = got.properties.message_expiry_interval.expect("expiry kept");
    assert!((1..=29).contains(&left), "30 s minus the wait, got {left}");
    sub.ack(&got).await;
    let got = sub.recv_publish().await;
    assert_eq!(&got.payload[..], b"none");
    assert_eq!(
        got.properties.message_expiry_interval, None,
        "absent stays absent"
    );
}

#[tokio::test]
async fn mqtt5_s3_3_2_3_4_duplicate_topic_alias_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("23 00 01 23 00 01"), b"x");
    expect_rejected(&tern, "alias-dup", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

fn alias(a: u16) -> PublishProperties {
    PublishProperties {
        topic_alias: Some(a),
        ..props()
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_7_inbound_aliases_do_not_survive_the_connection() {
    let tern = Tern::start();
    let mut sub = client(&tern, "ta7-sub").await;
    sub.subscribe("ta7/t", QoS::AtLeastOnce).await;
    let (mut c, _) = persistent(&tern, "ta7", true).await;
    publish_with(&mut c, "ta7/t", b"1", QoS::AtLeastOnce, false, alias(1)).await;
    publish_with(&mut c, "", b"2", QoS::AtLeastOnce, false, alias(1)).await;
    for want in [&b"1"[..], b"2"] {
        let got = sub.recv_publish().await;
        assert_eq!((got.topic.as_ref(), &got.payload[..]), ("ta7/t", want));
        sub.ack(&got).await;
    }
    c.disconnect().await;

    let (mut c, ack) = persistent(&tern, "ta7", false).await;
    assert!(
        ack.session_present,
        "the session survives, its aliases do not"
    );
    c.send(&publish_packet(
        "",
        b"3",
        QoS::AtLeastOnce,
        false,
        9,
        alias(1),
    ))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_2_7_outbound_aliases_start_empty_on_each_connection() {
    let tern = Tern::start();
    let mut publ = client(&tern, "ta7o-pub").await;
    let with_aliases = |p: &mut ConnectProperties| {
        p.session_expiry_interval = Some(60);
        p.topic_alias_maximum = Some(5);
    };
    let (mut c, _) = client_with(&tern, "ta7o", true, with_aliases).await;
    c.subscribe("ta7o/t", QoS::AtLeastOnce).await;
    for _ in 0..2 {
        publ.publish("ta7o/t", b"x", QoS::AtLeastOnce, false).await;
    }
    let first = c.recv_publish().await;
    assert_eq!(
        (first.topic.as_ref(), first.properties.topic_alias),
        ("ta7o/t", Some(1))
    );
    c.ack(&first).await;
    let second = c.recv_publish().await;
    assert_eq!(
        (second.topic.as_ref(), second.properties.topic_alias),
        ("", Some(1))
    );
    c.ack(&second).await;
    c.disconnect().await;

    let (mut c, ack) = client_with(&tern, "ta7o", false, with_aliases).await;
    assert!(ack.session_present);
    publ.publish("ta7o/t", b"y", QoS::AtLeastOnce, false).await;
    let got = c.recv_publish().await;
    assert_eq!(
        got.topic, "ta7o/t",
        "a new connection sends the topic name again"
    );
    assert_eq!(got.properties.topic_alias, Some(1));
}

#[tokio::test]
async fn mqtt5_3_3_2_8_topic_alias_0_is_topic_alias_invalid() {
    let tern = Tern::start();
    let mut c = client(&tern, "alias0").await;
    c.send(&publish_packet(
        "a/b",
        b"x",
        QoS::AtLeastOnce,
        false,
        1,
        alias(0),
    ))
    .await;
    c.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_9_topic_alias_above_server_maximum_is_topic_alias_invalid() {
    let tern = Tern::start();
    let (mut c, ack) = client_with(&tern, "alias-max", true, |_| {}).await;
    let max = ack
        .properties
        .topic_alias_maximum
        .expect("Topic Alias Maximum");
    assert_eq!(max, 10, "the default max_topic_alias");
    c.send(&publish_packet(
        "a/b",
        b"x",
        QoS::AtLeastOnce,
        false,
        1,
        alias(max + 1),
    ))
    .await;
    c.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_10_server_uses_aliases_from_1_up_to_the_client_maximum() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "ta10", true, |p| p.topic_alias_maximum = Some(3)).await;
    c.subscribe("ta10/#", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "ta10-pub").await;
    let topics = ["ta10/a", "ta10/b", "ta10/c"];
    let mut assigned = Vec::new();
    for t in topics {
        publ.publish(t, b"x", QoS::AtLeastOnce, false).await;
        let got = c.recv_publish().await;
        assert_eq!(got.topic, t);
        assigned.push(got.properties.topic_alias.expect("an alias"));
        c.ack(&got).await;
    }
    let mut sorted = assigned.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [1, 2, 3],
        "every alias of the client's range is used"
    );
    for (t, a) in topics.iter().zip(&assigned) {
        publ.publish(t, b"y", QoS::AtLeastOnce, false).await;
        let got = c.recv_publish().await;
        assert_eq!(
            (got.topic.as_ref(), got.properties.topic_alias),
            ("", Some(*a))
        );
        c.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_11_server_never_exceeds_the_client_topic_alias_maximum() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "ta11", true, |p| p.topic_alias_maximum = Some(2)).await;
    c.subscribe("ta11/#", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "ta11-pub").await;
    let topics = ["ta11/a", "ta11/b", "ta11/c", "ta11/d"];
    for round in 0..2 {
        for t in topics {
            publ.publish(t, b"x", QoS::AtLeastOnce, false).await;
            let got = c.recv_publish().await;
            if let Some(a) = got.properties.topic_alias {
                assert!((1..=2).contains(&a), "alias {a} above the client's maximum");
            }
            if round == 0 || got.properties.topic_alias.is_none() {
                assert_eq!(got.topic, t);
            } else {
                assert_eq!(got.topic, "", "known alias replaces {t}");
            }
            c.ack(&got).await;
        }
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_11_no_aliases_for_a_client_that_accepts_none() {
    let tern = Tern::start();
    let mut c = client(&tern, "ta11n").await;
    c.subscribe("ta11n/t", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "ta11n-pub").await;
    for _ in 0..3 {
        publ.publish("ta11n/t", b"x", QoS::AtLeastOnce, false).await;
        let got = c.recv_publish().await;
        assert_eq!(
            (got.topic.as_ref(), got.properties.topic_alias),
            ("ta11n/t", None)
        );
        c.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_12_server_accepts_every_alias_up_to_its_maximum() {
    let tern = Tern::start();
    let mut sub = client(&tern, "ta12-sub").await;
    sub.subscribe("ta12/#", QoS::AtLeastOnce).await;
    let (mut c, ack) = client_with(&tern, "ta12", true, |_| {}).await;
    let max = ack
        .properties
        .topic_alias_maximum
        .expect("Topic Alias Maximum");
    for a in 1..=max {
        let topic = format!("ta12/{a}");
        let r = publish_with(&mut c, &topic, b"set", QoS::AtLeastOnce, false, alias(a)).await;
        assert_eq!(r, ReasonCode::SUCCESS);
    }
    for a in 1..=max {
        let r = publish_with(&mut c, "", b"use", QoS::AtLeastOnce, false, alias(a)).await;
        assert_eq!(r, ReasonCode::SUCCESS);
    }
    for want in ["set", "use"] {
        for a in 1..=max {
            let got = sub.recv_publish().await;
            assert_eq!(got.topic, format!("ta12/{a}"));
            assert_eq!(&got.payload[..], want.as_bytes());
            assert_eq!(got.properties.topic_alias, None);
            sub.ack(&got).await;
        }
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_13_response_topic_must_be_well_formed_utf8() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("08 00 02 c3 28"), b"x");
    expect_rejected(&tern, "rt-utf8", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_14_response_topic_with_wildcard_is_protocol_error() {
    let tern = Tern::start();
    for (id, rt) in [("rt-plus", "r/+"), ("rt-hash", "r/#")] {
        let mut c = client(&tern, id).await;
        let p = PublishProperties {
            response_topic: Some(rt.into()),
            ..props()
        };
        c.send(&publish_packet("a/b", b"x", QoS::AtLeastOnce, false, 1, p))
            .await;
        c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
    }
}

/// Publishes `properties` to `topic` and returns what two subscribers received.
async fn forwarded(tern: &Tern, topic: &str, properties: PublishProperties) -> [Publish; 2] {
    let mut a = client(tern, &format!("{topic}-a")).await;
    a.subscribe(topic, QoS::AtLeastOnce).await;
    let mut b = client(tern, &format!("{topic}-b")).await;
    b.subscribe("#", QoS::ExactlyOnce).await;
    let mut publ = client(tern, &format!("{topic}-pub")).await;
    publish_with(
        &mut publ,
        topic,
        b"body",
        QoS::ExactlyOnce,
        false,
        properties,
    )
    .await;
    let ga = a.recv_publish().await;
    let gb = b.recv_publish().await;
    assert_eq!(ga.qos, QoS::AtLeastOnce);
    assert_eq!(gb.qos, QoS::ExactlyOnce);
    [ga, gb]
}

#[tokio::test]
async fn mqtt5_3_3_2_15_response_topic_is_forwarded_unchanged() {
    let tern = Tern::start();
    let p = PublishProperties {
        response_topic: Some("reply/to/ünïcode".into()),
        ..props()
    };
    for got in forwarded(&tern, "rt15", p).await {
        assert_eq!(
            got.properties.response_topic.as_deref(),
            Some("reply/to/ünïcode")
        );
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_16_correlation_data_is_forwarded_unchanged() {
    let tern = Tern::start();
    let data = Bytes::from_static(&[0, 1, 2, 0xFF, 0xFE, b'c']);
    let p = PublishProperties {
        correlation_data: Some(data.clone()),
        ..props()
    };
    for got in forwarded(&tern, "cd16", p).await {
        assert_eq!(got.properties.correlation_data.as_ref(), Some(&data));
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_16_duplicate_correlation_data_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("09 00 01 aa 09 00 01 bb"), b"x");
    expect_rejected(&tern, "cd-dup", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_17_user_properties_are_forwarded_unchanged() {
    let tern = Tern::start();
    let pairs = user(&[("k", "v"), ("k", "v"), ("k", "other"), ("", ""), ("ü", "✓")]);
    let p = PublishProperties {
        user_properties: pairs.clone(),
        ..props()
    };
    for got in forwarded(&tern, "up17", p).await {
        assert_eq!(got.properties.user_properties, pairs);
    }
}

#[tokio::test]
async fn mqtt5_3_3_2_18_user_properties_keep_their_order() {
    let tern = Tern::start();
    let pairs = user(&[("z", "1"), ("a", "2"), ("m", "3"), ("a", "4"), ("b", "5")]);
    let p = PublishProperties {
        user_properties: pairs.clone(),
        ..props()
    };
    for got in forwarded(&tern, "up18", p).await {
        let names: Vec<&str> = got
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| if k == "a" { v.as_ref() } else { k.as_ref() })
            .collect();
        assert_eq!(names, ["z", "2", "m", "4", "b"]);
        assert_eq!(got.properties.user_properties, pairs);
    }
}

#[tokio::test]
async fn mqtt5_s3_3_2_3_8_subscription_identifier_0_in_publish_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("0b 00"), b"x");
    expect_rejected(&tern, "sid0", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_19_content_type_must_be_well_formed_utf8() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("03 00 02 c3 28"), b"x");
    expect_rejected(&tern, "ct-utf8", &bytes, ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_19_duplicate_content_type_is_protocol_error() {
    let tern = Tern::start();
    let bytes = raw_publish(0x30, b"a", None, &hex("03 00 01 61 03 00 01 62"), b"x");
    expect_rejected(&tern, "ct-dup", &bytes, ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_3_2_20_content_type_is_forwarded_unchanged() {
    let tern = Tern::start();
    let p = PublishProperties {
        content_type: Some("application/json; charset=utf-8".into()),
        ..props()
    };
    for got in forwarded(&tern, "ct20", p).await {
        assert_eq!(
            got.properties.content_type.as_deref(),
            Some("application/json; charset=utf-8")
        );
    }
}

#[tokio::test]
async fn mqtt5_s3_3_2_3_every_property_forwarded_together() {
    let tern = Tern::start();
    let p = PublishProperties {
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(3600),
        response_topic: Some("all/reply".into()),
        correlation_data: Some(Bytes::from_static(b"\x00id")),
        user_properties: user(&[("b", "1"), ("a", "2")]),
        content_type: Some("text/plain".into()),
        ..props()
    };
    for got in forwarded(&tern, "allp", p.clone()).await {
        let left = got.properties.message_expiry_interval.expect("expiry");
        assert!((3595..=3600).contains(&left), "expiry {left}");
        let mut want = p.clone();
        want.message_expiry_interval = Some(left);
        assert_eq!(got.properties, want);
        assert_eq!(&got.payload[..], b"body");
    }
}

#[tokio::test]
async fn mqtt5_s3_3_3_zero_length_payload_is_valid() {
    let tern = Tern::start();
    let mut c = client(&tern, "empty-sub").await;
    c.subscribe("empty/t", QoS::ExactlyOnce).await;
    let mut publ = client(&tern, "empty-pub").await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publish_with(&mut publ, "empty/t", b"", qos, false, props()).await;
        let got = c.recv_publish().await;
        assert_eq!((got.topic.as_ref(), got.qos), ("empty/t", qos));
        assert!(got.payload.is_empty());
        c.ack(&got).await;
    }
}

// ---------------------------------------------------------------------------------------------
// §3.3.4 PUBLISH actions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_3_4_1_the_answer_depends_on_the_qos() {
    let tern = Tern::start();
    let mut c = client(&tern, "ans").await;
    c.send(&publish_packet(
        "ans/t",
        b"0",
        QoS::AtMostOnce,
        false,
        1,
        props(),
    ))
    .await;
    assert!(c.sync().await.is_empty(), "nothing answers QoS 0");
    c.send(&publish_packet(
        "ans/t",
        b"1",
        QoS::AtLeastOnce,
        false,
        11,
        props(),
    ))
    .await;
    let a = puback(&mut c).await;
    assert_eq!(a.packet_id, pid(11));
    c.send(&publish_packet(
        "ans/t",
        b"2",
        QoS::ExactlyOnce,
        false,
        12,
        props(),
    ))
    .await;
    let r = pubrec(&mut c).await;
    assert_eq!(r.packet_id, pid(12));
    c.send(&Packet::PubRel(Ack::new(pid(12)))).await;
    let done = pubcomp(&mut c).await;
    assert_eq!(
        (done.packet_id, done.reason),
        (pid(12), ReasonCode::SUCCESS)
    );
}

#[tokio::test]
async fn mqtt5_3_3_4_2_overlapping_subscriptions_deliver_at_the_highest_qos() {
    let tern = Tern::start();
    let mut c = client(&tern, "ovl").await;
    c.subscribe("ovl/#", QoS::AtMostOnce).await;
    c.subscribe("ovl/+", QoS::ExactlyOnce).await;
    c.subscribe("ovl/t", QoS::AtLeastOnce).await;
    let mut publ = client(&tern, "ovl-pub").await;
    publish_with(&mut publ, "ovl/t", b"x", QoS::ExactlyOnce, false, props()).await;
    let got = c.recv_publish().await;
    assert_eq!(got.qos, QoS::ExactlyOnce);
    c.ack(&got).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_4_3_subscription_identifier_is_included() {
    let tern = Tern::start();
    let mut c = client(&tern, "sid3").await;
    c.subscribe_with(
        "sid3/+",
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        Some(268_435_455),
    )
    .await;
    let mut publ = client(&tern, "sid3-pub").await;
    publ.publish("sid3/t", b"x", QoS::AtLeastOnce, true).await;
    let got = c.recv_publish().await;
    assert_eq!(got.properties.subscription_identifiers, [268_435_455]);
    c.ack(&got).await;
    // Retained messages sent for a new subscription carry its identifier too.
    c.subscribe_with(
        "sid3/t",
        SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        Some(77),
    )
    .await;
    let retained = c.recv_publish().await;
    assert!(retained.retain);
    assert_eq!(retained.properties.subscription_identifiers, [77]);
}

#[tokio::test]
async fn mqtt5_3_3_4_4_one_copy_carries_every_matching_identifier() {
    let tern = Tern::start();
    let mut c = client(&tern, "sid4").await;
    let q1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    c.subscribe_with("sid4/#", q1, Some(1)).await;
    c.subscribe_with("sid4/+", q1, Some(2)).await;
    c.subscribe_with("sid4/t", q1, None).await;
    c.subscribe_with("sid4/other", q1, Some(4)).await;
    let mut publ = client(&tern, "sid4-pub").await;
    publ.publish("sid4/t", b"x", QoS::AtLeastOnce, false).await;
    let got = c.recv_publish().await;
    let mut ids = got.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    c.ack(&got).await;
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_3_4_5_each_copy_carries_its_own_subscriptions_identifier() {
    let tern = Tern::start();
    let q1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let mut a = client(&tern, "sid5-a").await;
    a.subscribe_with("sid5/t", q1, Some(7)).await;
    let mut b = client(&tern, "sid5-b").await;
    b.subscribe_with("sid5/t", q1, Some(9)).await;
    let mut n = client(&tern, "sid5-n").await;
    n.subscribe_with("sid5/t", q1, None).await;
    let mut publ = client(&tern, "sid5-pub").await;
    publ.publish("sid5/t", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(
        a.recv_publish().await.properties.subscription_identifiers,
        [7]
    );
    assert_eq!(
        b.recv_publish().await.properties.subscription_identifiers,
        [9]
    );
    assert!(
        n.recv_publish()
            .await
            .properties
            .subscription_identifiers
            .is_empty()
    );
}

#[tokio::test]
async fn mqtt5_s3_3_4_shared_subscription_carries_only_the_receivers_identifiers() {
    let tern = Tern::start();
    let q1 = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
    let mut a = client(&tern, "sids-a").await;
    a.subscribe_with("$share/g/sids/t", q1, Some(11)).await;
    let mut b = client(&tern, "sids-b").await;
    b.subscribe_with("$share/g/sids/t", q1, Some(22)).await;
    let mut publ = client(&tern, "sids-pub").await;
    for _ in 0..4 {
        publ.publish("sids/t", b"x", QoS::AtLeastOnce, false).await;
    }
    // Everything was routed before the last PUBACK; collect until both members are quiet.
    let mut total = 0;
    for (c, id) in [(&mut a, 11), (&mut b, 22)] {
        while let Ok(p) = c.next(common::QUIET).await {
            let Some(Packet::Publish(p)) = p else {
                panic!("unexpected {p:?}")
            };
            assert_eq!(p.properties.subscription_identifiers, [id]);
            c.ack(&p).await;
            total += 1;
        }
    }
    assert_eq!(total, 4, "each message went to exactly one member");
}

#[tokio::test]
async fn mqtt5_3_3_4_6_client_publish_with_subscription_identifier_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "sid6").await;
    let p = PublishProperties {
        subscription_identifiers: vec![5],
        ..props()
    };
    c.send(&publish_packet(
        "sid6/t",
        b"x",
        QoS::AtLeastOnce,
        false,
        1,
        p,
    ))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_3_4_inbound_topic_alias_is_created_used_and_remapped() {
    let tern = Tern::start();
    let mut sub = client(&tern, "tam-sub").await;
    sub.subscribe("tam/#", QoS::AtLeastOnce).await;
    let mut c = client(&tern, "tam").await;
    // unknown alias + topic: create; known alias + empty topic: use; known alias + topic: remap
    let steps = [
        ("tam/one", 1),
        ("", 1),
        ("tam/two", 1),
        ("", 1),
        ("tam/three", 2),
        ("", 2),
        ("", 1),
    ];
    for (i, (topic, a)) in steps.iter().enumerate() {
        let payload = [b'0' + i as u8];
        let r = publish_with(&mut c, topic, &payload, QoS::AtLeastOnce, false, alias(*a)).await;
        assert_eq!(r, ReasonCode::SUCCESS);
    }
    let want = [
        "tam/one",
        "tam/one",
        "tam/two",
        "tam/two",
        "tam/three",
        "tam/three",
        "tam/two",
    ];
    for (i, t) in want.iter().enumerate() {
        let got = sub.recv_publish().await;
        assert_eq!((got.topic.as_ref(), got.payload[0]), (*t, b'0' + i as u8));
        sub.ack(&got).await;
    }
}

#[tokio::test]
async fn mqtt5_s3_3_4_unknown_topic_alias_with_empty_topic_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "tau").await;
    publish_with(&mut c, "tau/t", b"x", QoS::AtLeastOnce, false, alias(1)).await;
    c.send(&publish_packet(
        "",
        b"x",
        QoS::AtLeastOnce,
        false,
        2,
        alias(2),
    ))
    .await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

fn receive_max_3() -> Tern {
    mqtt_config("receive_maximum = 3")
}

/// Sends QoS 2 PUBLISHes with the given ids, each answered by PUBREC, and no PUBREL.
async fn unreleased_qos2(c: &mut RawClient, ids: std::ops::RangeInclusive<u16>) {
    for id in ids {
        c.send(&publish_packet(
            "rm/t",
            b"x",
            QoS::ExactlyOnce,
            false,
            id,
            props(),
        ))
        .await;
        let r = pubrec(c).await;
        assert_eq!(r.packet_id, pid(id));
        assert!(!r.reason.is_error());
    }
}

#[tokio::test]
async fn mqtt5_3_3_4_7_exceeding_the_server_receive_maximum_is_0x93() {
    let tern = receive_max_3();
    let (mut c, ack) = client_with(&tern, "rmx", true, |_| {}).await;
    assert_eq!(ack.properties.receive_maximum, Some(3));
    unreleased_qos2(&mut c, 1..=3).await;
    c.send(&publish_packet(
        "rm/t",
        b"x",
        QoS::ExactlyOnce,
        false,
        4,
        props(),
    ))
    .await;
    c.expect_disconnect(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
        .await;
}

#[tokio::test]
async fn mqtt5_3_3_4_7_completed_flows_free_the_receive_window() {
    let tern = receive_max_3();
    let mut c = client(&tern, "rmf").await;
    unreleased_qos2(&mut c, 1..=3).await;
    c.send(&Packet::PubRel(Ack::new(pid(2)))).await;
    assert_eq!(pubcomp(&mut c).await.packet_id, pid(2));
    unreleased_qos2(&mut c, 4..=4).await;
    assert!(c.sync().await.is_empty(), "still connected");
}

#[tokio::test]
async fn mqtt5_3_3_4_8_full_receive_window_does_not_block_other_client_packets() {
    let tern = receive_max_3();
    let mut c = client(&tern, "rmo").await;
    unreleased_qos2(&mut c, 1..=3).await;
    // The window is full; other packets are still handled.
    assert_eq!(
        c.subscribe("rmo/t", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert!(c.sync().await.is_empty());
    c.send(&Packet::PubRel(Ack::new(pid(1)))).await;
    assert_eq!(pubcomp(&mut c).await.packet_id, pid(1));
}

async fn publish_n(tern: &Tern, topic: &str, n: u8, qos: QoS) {
    let mut publ = client(tern, &format!("{topic}-pub")).await;
    for i in 0..n {
        publish_with(&mut publ, topic, &[b'0' + i], qos, false, props()).await;
    }
}

#[tokio::test]
async fn mqtt5_3_3_4_9_server_respects_the_client_receive_maximum() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "crm", true, |p| p.receive_maximum = Some(2)).await;
    c.subscribe("crm/t", QoS::AtLeastOnce).await;
    publish_n(&tern, "crm/t", 5, QoS::AtLeastOnce).await;
    let mut inflight = vec![c.recv_publish().await, c.recv_publish().await];
    c.expect_nothing().await;
    let mut seen: Vec<u8> = inflight.iter().map(|p| p.payload[0]).collect();
    while !inflight.is_empty() {
        let done = inflight.remove(0);
        c.ack(&done).await;
        if seen.len() < 5 {
            let next = c.recv_publish().await;
            seen.push(next.payload[0]);
            inflight.push(next);
        }
        if seen.len() < 5 {
            c.expect_nothing().await;
        }
    }
    assert_eq!(seen, b"01234");
}

#[tokio::test]
async fn mqtt5_3_3_4_9_qos2_deliveries_count_until_pubcomp() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "crm2", true, |p| p.receive_maximum = Some(1)).await;
    c.subscribe("crm2/t", QoS::ExactlyOnce).await;
    publish_n(&tern, "crm2/t", 2, QoS::ExactlyOnce).await;
    let first = c.recv_publish().await;
    c.send(&Packet::PubRec(Ack::new(first.packet_id.unwrap())))
        .await;
    assert_eq!(pubrel(&mut c).await.packet_id, first.packet_id.unwrap());
    c.expect_nothing().await; // still outstanding until PUBCOMP
    c.send(&Packet::PubComp(Ack::new(first.packet_id.unwrap())))
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"1");
}

#[tokio::test]
async fn mqtt5_3_3_4_9_failed_pubrec_ends_the_flow_and_frees_the_window() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "crmf", true, |p| p.receive_maximum = Some(1)).await;
    c.subscribe("crmf/t", QoS::ExactlyOnce).await;
    publish_n(&tern, "crmf/t", 2, QoS::ExactlyOnce).await;
    let first = c.recv_publish().await;
    assert_eq!(&first.payload[..], b"0");
    c.send(&Packet::PubRec(Ack::with_reason(
        first.packet_id.unwrap(),
        ReasonCode::UNSPECIFIED_ERROR,
    )))
    .await;
    // No PUBREL for the refused message; the next one comes instead.
    let next = c.recv_publish().await;
    assert_eq!(&next.payload[..], b"1");
    assert!(!next.dup);
}

#[tokio::test]
async fn mqtt5_3_3_4_10_full_window_does_not_delay_other_server_packets() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "fw", true, |p| p.receive_maximum = Some(1)).await;
    c.subscribe("fw/t", QoS::ExactlyOnce).await;
    publish_n(&tern, "fw/t", 3, QoS::ExactlyOnce).await;
    let first = c.recv_publish().await;
    let id = first.packet_id.unwrap();
    // Window full, two messages waiting: PINGRESP, SUBACK, UNSUBACK and PUBREL still go out.
    assert!(
        c.sync().await.is_empty(),
        "PINGRESP without a PUBLISH before it"
    );
    assert_eq!(
        c.subscribe("fw/other", QoS::AtMostOnce).await,
        [ReasonCode::GRANTED_QOS_0]
    );
    assert_eq!(c.unsubscribe("fw/other").await, [ReasonCode::SUCCESS]);
    c.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(pubrel(&mut c).await.packet_id, id);
    c.send(&Packet::PubComp(Ack::new(id))).await;
    assert_eq!(&c.recv_publish().await.payload[..], b"1");
}

#[tokio::test]
async fn mqtt5_s3_3_4_v311_subscriber_gets_the_message_without_properties() {
    let tern = Tern::start();
    let mut old = RawClient::connect(tern.addr, V311, "v3-sub").await;
    old.subscribe("v3p/t", QoS::AtMostOnce).await;
    let mut publ = client(&tern, "v3-pub").await;
    let p = PublishProperties {
        content_type: Some("text/plain".into()),
        user_properties: user(&[("k", "v")]),
        message_expiry_interval: Some(100),
        ..props()
    };
    publish_with(&mut publ, "v3p/t", b"hi", QoS::AtLeastOnce, false, p).await;
    let frame = recv_raw_frame(&mut old).await.expect("PUBLISH");
    assert_eq!(
        frame,
        hex("30 09 00 05 76 33 70 2f 74 68 69"),
        "topic and payload only"
    );
}

// ---------------------------------------------------------------------------------------------
// §3.4 PUBACK
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_4_2_1_invalid_puback_reason_code_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "pa-bad",
        &hex("40 03 00 01 05"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_4_2_1_every_valid_puback_reason_code_is_accepted() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "pa-ok", true, |p| p.receive_maximum = Some(1)).await;
    c.subscribe("paok/t", QoS::AtLeastOnce).await;
    let codes = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    publish_n(&tern, "paok/t", codes.len() as u8, QoS::AtLeastOnce).await;
    for (i, code) in codes.into_iter().enumerate() {
        let got = c.recv_publish().await;
        assert_eq!(got.payload[0], b'0' + i as u8);
        c.send(&Packet::PubAck(Ack::with_reason(
            got.packet_id.unwrap(),
            ReasonCode(code),
        )))
        .await;
    }
    c.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_s3_4_2_1_short_puback_is_accepted() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "pa-short", true, |p| p.receive_maximum = Some(1)).await;
    c.subscribe("pas/t", QoS::AtLeastOnce).await;
    publish_n(&tern, "pas/t", 2, QoS::AtLeastOnce).await;
    let first = c.recv_publish().await;
    let id = first.packet_id.unwrap().get().to_be_bytes();
    c.send_bytes(&[0x40, 0x02, id[0], id[1]]).await;
    assert_eq!(&c.recv_publish().await.payload[..], b"1");
}

#[tokio::test]
async fn mqtt5_s3_4_2_1_no_matching_subscribers_is_0x10() {
    let tern = Tern::start();
    let mut c = client(&tern, "nomatch").await;
    assert_eq!(
        c.publish("nobody/here", b"x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        c.publish("nobody/here", b"x", QoS::ExactlyOnce, false)
            .await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "a success variant: the QoS 2 flow continues with PUBREL/PUBCOMP"
    );
}

#[tokio::test]
async fn mqtt5_s3_4_2_1_sys_publish_is_refused_with_0x87_and_the_session_goes_on() {
    // Without the broker's own `$SYS` topics, which `$SYS/#` would receive too.
    let tern = Tern::start_config("sys_interval = 0\n", "toml");
    let mut watcher = client(&tern, "sys-watch").await;
    watcher.subscribe("$SYS/#", QoS::AtLeastOnce).await;
    let mut c = client(&tern, "sys-pub").await;
    c.send(&publish_packet(
        "$SYS/x",
        b"x",
        QoS::AtLeastOnce,
        false,
        1,
        props(),
    ))
    .await;
    let a = puback(&mut c).await;
    assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
    c.send(&publish_packet(
        "$SYS/x",
        b"x",
        QoS::ExactlyOnce,
        false,
        2,
        props(),
    ))
    .await;
    assert_eq!(pubrec(&mut c).await.reason, ReasonCode::NOT_AUTHORIZED);
    // The refused QoS 2 id is not kept: a PUBREL for it is unknown.
    c.send(&Packet::PubRel(Ack::new(pid(2)))).await;
    assert_eq!(
        pubcomp(&mut c).await.reason,
        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
    );
    watcher.expect_nothing().await;
    assert_eq!(
        c.publish("sys/ok", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS,
        "the connection and session carry on"
    );
}

/// Connects with a small Maximum Packet Size and returns the acknowledgement of a `$SYS` publish
/// at `qos` as raw bytes, together with the same acknowledgement sent to an unlimited client.
async fn refused_ack_frames(tern: &Tern, qos: QoS) -> (Vec<u8>, Packet) {
    let mut free = client(tern, &format!("free-{qos}")).await;
    free.send(&publish_packet("$SYS/big", b"x", qos, false, 1, props()))
        .await;
    let unlimited = free.recv().await;
    let (mut c, _) = client_with(tern, &format!("small-{qos}"), true, |p| {
        p.maximum_packet_size = Some(20)
    })
    .await;
    c.send(&publish_packet("$SYS/big", b"x", qos, false, 1, props()))
        .await;
    let frame = recv_raw_frame(&mut c).await.expect("acknowledgement");
    (frame, unlimited)
}

#[tokio::test]
async fn mqtt5_3_4_2_2_puback_reason_string_is_dropped_rather_than_exceed_the_limit() {
    let tern = Tern::start();
    let (frame, unlimited) = refused_ack_frames(&tern, QoS::AtLeastOnce).await;
    let Packet::PubAck(full) = unlimited else {
        panic!("expected PUBACK")
    };
    assert!(
        full.properties.reason_string.is_some(),
        "normally there is one"
    );
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::PubAck(small) = decode_frame(&frame) else {
        panic!("expected PUBACK")
    };
    assert_eq!(small.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(small.properties.reason_string, None);
}

#[tokio::test]
async fn mqtt5_3_4_2_3_puback_user_properties_never_exceed_the_limit() {
    let tern = Tern::start();
    let (frame, _) = refused_ack_frames(&tern, QoS::AtLeastOnce).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::PubAck(small) = decode_frame(&frame) else {
        panic!("expected PUBACK")
    };
    assert_eq!(small.reason, ReasonCode::NOT_AUTHORIZED);
    assert!(small.properties.user_properties.is_empty());
}

// ---------------------------------------------------------------------------------------------
// §3.5 PUBREC
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_5_2_1_invalid_pubrec_reason_code_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "pr-bad",
        &hex("50 03 00 01 92"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_5_2_1_short_pubrec_is_accepted() {
    let tern = Tern::start();
    let mut c = client(&tern, "pr-short").await;
    c.subscribe("prs/t", QoS::ExactlyOnce).await;
    publish_n(&tern, "prs/t", 1, QoS::ExactlyOnce).await;
    let got = c.recv_publish().await;
    let id = got.packet_id.unwrap();
    let b = id.get().to_be_bytes();
    c.send_bytes(&[0x50, 0x02, b[0], b[1]]).await;
    let rel = pubrel(&mut c).await;
    assert_eq!((rel.packet_id, rel.reason), (id, ReasonCode::SUCCESS));
    c.send_bytes(&[0x70, 0x02, b[0], b[1]]).await;
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_5_2_2_pubrec_reason_string_is_dropped_rather_than_exceed_the_limit() {
    let tern = Tern::start();
    let (frame, unlimited) = refused_ack_frames(&tern, QoS::ExactlyOnce).await;
    let Packet::PubRec(full) = unlimited else {
        panic!("expected PUBREC")
    };
    assert!(
        full.properties.reason_string.is_some(),
        "normally there is one"
    );
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::PubRec(small) = decode_frame(&frame) else {
        panic!("expected PUBREC")
    };
    assert_eq!(small.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(small.properties.reason_string, None);
}

#[tokio::test]
async fn mqtt5_3_5_2_3_pubrec_user_properties_never_exceed_the_limit() {
    let tern = Tern::start();
    let (frame, _) = refused_ack_frames(&tern, QoS::ExactlyOnce).await;
    assert!(frame.len() <= 20, "{} bytes", frame.len());
    let Packet::PubRec(small) = decode_frame(&frame) else {
        panic!("expected PUBREC")
    };
    assert!(small.properties.user_properties.is_empty());
}

// ---------------------------------------------------------------------------------------------
// §3.6 PUBREL
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_6_1_1_pubrel_flags_must_be_0010() {
    let tern = Tern::start();
    for (id, first) in [("prl-0", 0x60u8), ("prl-3", 0x63), ("prl-a", 0x6A)] {
        let mut c = client(&tern, id).await;
        c.send(&publish_packet(
            "prl/t",
            b"x",
            QoS::ExactlyOnce,
            false,
            1,
            props(),
        ))
        .await;
        pubrec(&mut c).await;
        c.send_bytes(&[first, 0x02, 0x00, 0x01]).await;
        c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    }
}

#[tokio::test]
async fn mqtt5_3_6_2_1_invalid_pubrel_reason_code_is_malformed() {
    let tern = Tern::start();
    let mut c = client(&tern, "prl-bad").await;
    c.send(&publish_packet(
        "prl/t",
        b"x",
        QoS::ExactlyOnce,
        false,
        1,
        props(),
    ))
    .await;
    pubrec(&mut c).await;
    c.send_bytes(&hex("62 03 00 01 10")).await;
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
}

#[tokio::test]
async fn mqtt5_s3_6_2_1_short_pubrel_is_accepted() {
    let tern = Tern::start();
    let mut sub = client(&tern, "prl-s-sub").await;
    sub.subscribe("prls/t", QoS::ExactlyOnce).await;
    let mut c = client(&tern, "prl-short").await;
    c.send(&publish_packet(
        "prls/t",
        b"x",
        QoS::ExactlyOnce,
        false,
        1,
        props(),
    ))
    .await;
    pubrec(&mut c).await;
    c.send_bytes(&hex("62 02 00 01")).await;
    let done = pubcomp(&mut c).await;
    assert_eq!((done.packet_id, done.reason), (pid(1), ReasonCode::SUCCESS));
    assert_eq!(&sub.recv_publish().await.payload[..], b"x");
}

/// A client with Maximum Packet Size 16 receiving a QoS 2 delivery: returns the raw PUBREL the
/// server sends after PUBREC, and the raw PUBREL it sends for an unknown PUBREC.
async fn small_pubrel_frames(tern: &Tern) -> (Vec<u8>, Vec<u8>) {
    let (mut c, _) = client_with(tern, "small-rel", true, |p| {
        p.maximum_packet_size = Some(16)
    })
    .await;
    c.subscribe("sr/t", QoS::ExactlyOnce).await;
    publish_n(tern, "sr/t", 1, QoS::ExactlyOnce).await;
    let got = c.recv_publish().await;
    let id = got.packet_id.expect("QoS 2 delivery");
    c.send(&Packet::PubRec(Ack::new(id))).await;
    let known = recv_raw_frame(&mut c).await.expect("PUBREL");
    let other = pid(if id.get() == 77 { 78 } else { 77 });
    c.send(&Packet::PubRec(Ack::new(other))).await;
    let unknown = recv_raw_frame(&mut c).await.expect("PUBREL");
    (known, unknown)
}

#[tokio::test]
async fn mqtt5_3_6_2_2_pubrel_fits_the_client_limit_without_reason_string() {
    let tern = Tern::start();
    let (known, unknown) = small_pubrel_frames(&tern).await;
    for frame in [&known, &unknown] {
        assert!(frame.len() <= 16);
        let Packet::PubRel(rel) = decode_frame(frame) else {
            panic!("expected PUBREL")
        };
        assert_eq!(rel.properties.reason_string, None);
    }
    let Packet::PubRel(rel) = decode_frame(&unknown) else {
        unreachable!()
    };
    assert_eq!(rel.reason, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
}

#[tokio::test]
async fn mqtt5_3_6_2_3_pubrel_fits_the_client_limit_without_user_properties() {
    let tern = Tern::start();
    let (known, unknown) = small_pubrel_frames(&tern).await;
    for frame in [&known, &unknown] {
        assert!(frame.len() <= 16);
        let Packet::PubRel(rel) = decode_frame(frame) else {
            panic!("expected PUBREL")
        };
        assert!(rel.properties.user_properties.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// §3.7 PUBCOMP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_7_2_1_pubrel_for_an_unknown_id_gets_pubcomp_0x92() {
    let tern = Tern::start();
    let mut c = client(&tern, "pc-unknown").await;
    c.send(&Packet::PubRel(Ack::new(pid(42)))).await;
    let done = pubcomp(&mut c).await;
    assert_eq!(
        (done.packet_id, done.reason),
        (pid(42), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
    );
    // A completed flow's id is unknown afterwards too.
    publish_with(&mut c, "pc/t", b"x", QoS::ExactlyOnce, false, props()).await;
    c.send(&Packet::PubRel(Ack::new(pid(0x0202)))).await;
    assert_eq!(
        pubcomp(&mut c).await.reason,
        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
    );
}

#[tokio::test]
async fn mqtt5_3_7_2_1_invalid_pubcomp_reason_code_is_malformed() {
    let tern = Tern::start();
    expect_rejected(
        &tern,
        "pc-bad",
        &hex("70 03 00 01 80"),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_7_2_1_short_pubcomp_is_accepted() {
    let tern = Tern::start();
    let (mut c, _) = client_with(&tern, "pc-short", true, |p| p.receive_maximum = Some(1)).await;
    c.subscribe("pcs/t", QoS::ExactlyOnce).await;
    publish_n(&tern, "pcs/t", 2, QoS::ExactlyOnce).await;
    let first = c.recv_publish().await;
    let id = first.packet_id.unwrap();
    c.send(&Packet::PubRec(Ack::new(id))).await;
    pubrel(&mut c).await;
    let b = id.get().to_be_bytes();
    c.send_bytes(&[0x70, 0x02, b[0], b[1]]).await;
    assert_eq!(
        &c.recv_publish().await.payload[..],
        b"1",
        "the window was freed"
    );
}

/// A client with Maximum Packet Size 16: the raw PUBCOMP of a completed flow and of an unknown
/// PUBREL.
async fn small_pubcomp_frames(tern: &Tern) -> (Vec<u8>, Vec<u8>) {
    let (mut c, _) = client_with(tern, "small-comp", true, |p| {
        p.maximum_packet_size = Some(16)
    })
    .await;
    c.send(&publish_packet(
        "sc/t",
        b"x",
        QoS::ExactlyOnce,
        false,
        1,
        props(),
    ))
    .await;
    pubrec(&mut c).await;
    c.send(&Packet::PubRel(Ack::new(pid(1)))).await;
    let known = recv_raw_frame(&mut c).await.expect("PUBCOMP");
    c.send(&Packet::PubRel(Ack::new(pid(2)))).await;
    let unknown = recv_raw_frame(&mut c).await.expect("PUBCOMP");
    (known, unknown)
}

#[tokio::test]
async fn mqtt5_3_7_2_2_pubcomp_fits_the_client_limit_without_reason_string() {
    let tern = Tern::start();
    let (known, unknown) = small_pubcomp_frames(&tern).await;
    for (frame, reason) in [
        (&known, ReasonCode::SUCCESS),
        (&unknown, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
    ] {
        assert!(frame.len() <= 16);
        let Packet::PubComp(done) = decode_frame(frame) else {
            panic!("expected PUBCOMP")
        };
        assert_eq!(done.reason, reason);
        assert_eq!(done.properties.reason_string, None);
    }
}

#[tokio::test]
async fn mqtt5_3_7_2_3_pubcomp_fits_the_client_limit_without_user_properties() {
    let tern = Tern::start();
    let (known, unknown) = small_pubcomp_frames(&tern).await;
    for frame in [&known, &unknown] {
        assert!(frame.len() <= 16);
        let Packet::PubComp(done) = decode_frame(frame) else {
            panic!("expected PUBCOMP")
        };
        assert!(done.properties.user_properties.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// With a third-party client
// ---------------------------------------------------------------------------------------------

mod rumqttc_v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet as RPacket, PublishProperties as RProps};
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
                && !matches!(p, RPacket::ConnAck(_) | RPacket::PingResp(_))
            {
                return p;
            }
        }
    }

    #[tokio::test]
    async fn mqtt5_3_3_2_18_rumqttc_user_properties_arrive_in_order() {
        let tern = Tern::start();
        let mut sub = client(&tern, "rq-sub").await;
        sub.subscribe("rq/up", QoS::AtLeastOnce).await;
        let (publ, mut el) = AsyncClient::new(options("rq-pub", &tern), 10);
        let pairs: Vec<(String, String)> = [("z", "1"), ("a", "2"), ("z", "3")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let props = RProps {
            user_properties: pairs.clone(),
            ..Default::default()
        };
        publ.publish_with_properties("rq/up", RQoS::ExactlyOnce, false, "hello", props)
            .await
            .unwrap();
        // Drive the publisher through its QoS 2 flow.
        loop {
            if let RPacket::PubComp(_) = next_incoming(&mut el).await {
                break;
            }
        }
        let got = sub.recv_publish().await;
        assert_eq!(&got.payload[..], b"hello");
        assert_eq!(
            got.properties.user_properties,
            user(&[("z", "1"), ("a", "2"), ("z", "3")])
        );
    }

    #[tokio::test]
    async fn mqtt5_3_3_1_13_rumqttc_retain_as_published() {
        let tern = Tern::start();
        let (c, mut el) = AsyncClient::new(options("rq-rap", &tern), 10);
        let mut keep = Filter::new("rq/rap/keep", RQoS::AtLeastOnce);
        keep.preserve_retain = true;
        let clear = Filter::new("rq/rap/clear", RQoS::AtLeastOnce);
        c.subscribe_many(vec![keep, clear]).await.unwrap();
        let RPacket::SubAck(_) = next_incoming(&mut el).await else {
            panic!("expected SUBACK")
        };
        let mut publ = client(&tern, "rq-rap-pub").await;
        publ.publish("rq/rap/keep", b"k", QoS::AtLeastOnce, true)
            .await;
        publ.publish("rq/rap/clear", b"c", QoS::AtLeastOnce, true)
            .await;
        for (topic, retain) in [("rq/rap/keep", true), ("rq/rap/clear", false)] {
            let RPacket::Publish(p) = next_incoming(&mut el).await else {
                panic!("expected PUBLISH")
            };
            assert_eq!(&p.topic[..], topic.as_bytes());
            assert_eq!(p.retain, retain, "{topic}");
        }
    }
}
