//! MQTT 5.0 conformance, sections 4 and 5 of the server checklist: CONNECT (protocol name and
//! level, flags, Clean Start, the Will and its properties and delay, Keep Alive, the CONNECT
//! properties, the payload, what the server does on CONNECT) and CONNACK (flags, Session
//! Present, reason codes and the CONNACK properties with the limits they announce). Each test
//! is named after the statement it checks and talks to the real `tern` binary over loopback.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    RawClient, TIMEOUT, Tern, V5, connect_packet, frame, hex, lp, pid, publish, recv_raw_frame,
    vbi, will,
};
use tern_codec::{
    Ack, ByteString, ConnAck, Connect, Disconnect, LastWill, Packet, QoS, ReasonCode,
    SubscriptionOptions,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A raw MQTT 5 CONNECT with the given Connect Flags, raw property section and raw payload;
/// keep-alive 60.
fn raw_connect(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    raw_connect_named(b"MQTT", 5, flags, props, payload)
}

fn raw_connect_named(name: &[u8], level: u8, flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = lp(name);
    body.push(level);
    body.push(flags);
    body.extend(60u16.to_be_bytes());
    body.extend(vbi(props.len()));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// A raw CONNECT with Clean Start, the given raw properties and client id "raw".
fn raw_connect_props(props: &[u8]) -> Vec<u8> {
    raw_connect(0x02, props, &lp(b"raw"))
}

/// A connected MQTT 5 client with Clean Start and no session expiry.
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

/// A CONNECT for a session that outlives the connection by `expiry` seconds.
fn session(id: &str, clean_start: bool, expiry: u32) -> Connect {
    let mut c = connect_packet(V5, id, clean_start);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

/// A CONNECT with a Will on `topic` (payload `payload`, QoS 0) delayed by `delay` seconds.
fn with_will(mut c: Connect, topic: &str, payload: &[u8], delay: Option<u32>) -> Connect {
    let mut w = will(topic, payload, QoS::AtMostOnce, false);
    w.properties.will_delay_interval = delay;
    c.will = Some(w);
    c
}

/// Connects and asserts CONNACK 0x00; returns the client and the CONNACK.
async fn accepted(tern: &Tern, connect: Connect) -> (RawClient, ConnAck) {
    let id = connect.client_id.clone();
    let (c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    (c, ack)
}

/// Sends a CONNECT and expects CONNACK `reason` with Session Present 0, then the close.
async fn refused(tern: &Tern, connect: Connect, reason: ReasonCode) -> ConnAck {
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, reason, "CONNACK reason");
    assert!(!ack.session_present, "Session Present with a refusal");
    c.expect_closed().await;
    ack
}

/// Sends raw CONNECT bytes and expects CONNACK `reason`, then the close.
async fn refused_raw(tern: &Tern, bytes: &[u8], reason: ReasonCode) -> ConnAck {
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(bytes).await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, reason, "CONNACK reason");
    assert!(!ack.session_present, "Session Present with a refusal");
    c.expect_closed().await;
    ack
}

/// Publishes `marker` on `topic` from a fresh client and asserts that it is the next message
/// `watcher` gets, i.e. that nothing (a Will, say) reached it before.
async fn expect_marker_next(tern: &Tern, watcher: &mut RawClient, topic: &str) {
    let mut marker = client(tern, "marker").await;
    marker
        .publish(topic, b"marker", QoS::AtMostOnce, false)
        .await;
    let p = watcher.recv_publish().await;
    assert_eq!(
        &p.payload[..],
        b"marker",
        "something arrived before the marker: {p:?}"
    );
    marker.disconnect().await;
}

/// Sends DISCONNECT with `reason` and waits for the server to close the connection.
async fn disconnect_with(mut c: RawClient, reason: ReasonCode) {
    c.send(&Packet::Disconnect(Disconnect::with_reason(reason)))
        .await;
    c.expect_closed().await;
}

/// A broker started with the given `[mqtt]` settings.
fn tern_with(mqtt: &str) -> Tern {
    Tern::start_config(&format!("[mqtt]\n{mqtt}\n"), "toml")
}

// ---------------------------------------------------------------------------------------------
// §4 Connection start (§3.1.0, §3.1.4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_1_0_1_first_packet_other_than_connect_is_closed() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "watcher", "#", QoS::AtMostOnce).await;
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send(&Packet::Publish(publish(
        "first",
        b"x",
        QoS::AtMostOnce,
        false,
        None,
    )))
    .await;
    // No CONNACK was sent, so no DISCONNECT either: just the close.
    c.expect_closed().await;
    watcher.expect_nothing().await;
}

#[tokio::test]
async fn mqtt5_3_1_0_1_pingreq_before_connect_gets_no_answer() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send(&Packet::PingReq).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_3_1_0_2_second_connect_is_protocol_error() {
    let tern = Tern::start();
    let mut c = client(&tern, "twice").await;
    c.send(&common::connect(V5, "twice", true)).await;
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_s3_1_4_connection_without_connect_is_closed() {
    let tern = tern_with("connect_timeout = 1");
    let start = Instant::now();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.expect_closed().await;
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// §4 Protocol name, level, flags (§3.1.2.1–§3.1.2.9)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_1_2_1_protocol_name_other_than_mqtt_is_closed() {
    let tern = Tern::start();
    for name in [&b"MQTX"[..], b"mqtt", b"MQTT\0"] {
        let mut c = RawClient::open(tern.addr, V5).await;
        c.send_bytes(&raw_connect_named(name, 5, 0x02, &[], &lp(b"name")))
            .await;
        // Not an MQTT client: closed without a CONNACK (a CONNACK 0x84 would be allowed too).
        c.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt5_3_1_2_2_unsupported_level_gets_v3_connack_0x01() {
    let tern = Tern::start();
    for level in [0u8, 6, 0xFF] {
        let mut c = RawClient::open(tern.addr, V5).await;
        c.send_bytes(&raw_connect_named(b"MQTT", level, 0x02, &[], &lp(b"lvl")))
            .await;
        // A 3.x-style CONNACK every MQTT version can read: return code 1, then the close.
        assert_eq!(
            recv_raw_frame(&mut c).await,
            Some(hex("20 02 00 01")),
            "level {level}"
        );
        assert_eq!(recv_raw_frame(&mut c).await, None);
    }
}

#[tokio::test]
async fn mqtt5_3_1_2_2_level_5_gets_a_v5_connack() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect(0x02, &[], &lp(b"five"))).await;
    let raw = recv_raw_frame(&mut c).await.unwrap();
    // Flags 0, reason 0x00, then a property section filling the rest.
    assert_eq!(raw[..4], [0x20, raw[1], 0x00, 0x00]);
    assert_eq!(usize::from(raw[4]), raw.len() - 5);
}

#[tokio::test]
async fn mqtt5_3_1_2_3_reserved_connect_flag_is_malformed() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect(0x03, &[], &lp(b"reserved")),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_4_clean_start_discards_session() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("cs", true, 60)).await;
    c.subscribe("cs/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = client(&tern, "cs-pub").await;
    assert_eq!(
        publisher
            .publish("cs/t", b"queued", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );

    let (mut c, ack) = accepted(&tern, session("cs", true, 60)).await;
    assert!(!ack.session_present);
    // Neither the queued message nor the subscription survived.
    assert!(c.sync().await.is_empty());
    assert_eq!(
        publisher
            .publish("cs/t", b"again", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
}

#[tokio::test]
async fn mqtt5_3_1_2_5_clean_start_0_resumes_session() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("resume", true, 60)).await;
    c.subscribe("resume/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = client(&tern, "resume-pub").await;
    publisher
        .publish("resume/t", b"queued", QoS::AtLeastOnce, false)
        .await;

    let (mut c, ack) = accepted(&tern, session("resume", false, 60)).await;
    assert!(ack.session_present);
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"queued");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    c.ack(&p).await;
    // The subscription is still there.
    publisher
        .publish("resume/t", b"live", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&c.recv_publish().await.payload[..], b"live");
}

#[tokio::test]
async fn mqtt5_3_1_2_5_inflight_messages_are_resent_on_resume() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("inflight", true, 60)).await;
    c.subscribe("inflight/t", QoS::AtLeastOnce).await;
    let mut publisher = client(&tern, "inflight-pub").await;
    publisher
        .publish("inflight/t", b"unacked", QoS::AtLeastOnce, false)
        .await;
    let first = c.recv_publish().await;
    drop(c); // without acknowledging it

    let (mut c, ack) = accepted(&tern, session("inflight", false, 60)).await;
    assert!(ack.session_present);
    let again = c.recv_publish().await;
    assert!(again.dup);
    assert_eq!(again.packet_id, first.packet_id);
    assert_eq!(&again.payload[..], b"unacked");
}

#[tokio::test]
async fn mqtt5_3_1_2_6_clean_start_0_without_session_creates_one() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, session("fresh", false, 60)).await;
    assert!(!ack.session_present);
    c.subscribe("fresh/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (_c, ack) = accepted(&tern, session("fresh", false, 60)).await;
    assert!(
        ack.session_present,
        "the session created by the first connection"
    );
}

// ---------------------------------------------------------------------------------------------
// §4 The Will (§3.1.2.5–§3.1.2.7, §3.1.3.2–§3.1.3.4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_1_2_7_will_is_stored_and_published_whole() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w7-watch", "w7/#", QoS::ExactlyOnce).await;
    let mut connect = connect_packet(V5, "w7", true);
    let mut w = will("w7/status", b"\x00offline\xff", QoS::AtLeastOnce, false);
    w.properties.message.content_type = Some(ByteString::from("application/octet-stream"));
    connect.will = Some(w);
    let (c, _) = accepted(&tern, connect).await;
    drop(c);
    let p = watcher.recv_publish().await;
    assert_eq!(&p.topic[..], "w7/status");
    assert_eq!(&p.payload[..], b"\x00offline\xff");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/octet-stream")
    );
    watcher.ack(&p).await;
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_published_when_network_connection_drops() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8a-watch", "w8a", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(connect_packet(V5, "w8a", true), "w8a", b"w", None),
    )
    .await;
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_not_published_after_normal_disconnect() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8b-watch", "w8b", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(connect_packet(V5, "w8b", true), "w8b", b"w", None),
    )
    .await;
    disconnect_with(c, ReasonCode::NORMAL_DISCONNECTION).await;
    expect_marker_next(&tern, &mut watcher, "w8b").await;
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_published_after_disconnect_with_will_message() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8c-watch", "w8c", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(connect_packet(V5, "w8c", true), "w8c", b"w", None),
    )
    .await;
    disconnect_with(c, ReasonCode::DISCONNECT_WITH_WILL).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_published_when_server_closes_for_protocol_error() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8d-watch", "w8d", QoS::AtMostOnce).await;
    let (mut c, _) = accepted(
        &tern,
        with_will(connect_packet(V5, "w8d", true), "w8d", b"w", None),
    )
    .await;
    c.send_bytes(&hex("c0 01 00")).await; // malformed PINGREQ
    c.expect_disconnect(ReasonCode::MALFORMED_PACKET).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_waits_for_the_will_delay_interval() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8e-watch", "w8e", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("w8e", true, 60), "w8e", b"late", Some(1)),
    )
    .await;
    let dropped = Instant::now();
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"late");
    let waited = dropped.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "published after {waited:?}"
    );
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_published_when_session_ends_before_the_delay() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8f-watch", "w8f", QoS::AtMostOnce).await;
    // Will Delay 1 hour, Session Expiry 1 s: the session ends first and takes the Will out.
    let (c, _) = accepted(
        &tern,
        with_will(session("w8f", true, 1), "w8f", b"session over", Some(3600)),
    )
    .await;
    let dropped = Instant::now();
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"session over");
    assert!(dropped.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn mqtt5_3_1_2_8_will_published_at_once_when_session_expiry_is_0() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8g-watch", "w8g", QoS::AtMostOnce).await;
    // The session ends with the connection, so the Will Delay Interval does not hold it back.
    let (c, _) = accepted(
        &tern,
        with_will(connect_packet(V5, "w8g", true), "w8g", b"now", Some(3600)),
    )
    .await;
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"now");
}

#[tokio::test]
async fn mqtt5_3_1_2_8_delayed_will_published_when_clean_start_ends_the_session() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w8h-watch", "w8h", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("w8h", true, 60), "w8h", b"ended", Some(3600)),
    )
    .await;
    drop(c);
    // A new connection with Clean Start ends the old session, Will included.
    let (_c, ack) = accepted(&tern, session("w8h", true, 60)).await;
    assert!(!ack.session_present);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"ended");
}

#[tokio::test]
async fn mqtt5_3_1_2_9_will_flag_without_will_payload_is_malformed() {
    let tern = Tern::start();
    // Will Flag + Clean Start; Will Properties and Will Topic present, Will Payload missing.
    let mut payload = lp(b"w9");
    payload.push(0x00);
    payload.extend(lp(b"w9/will"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_9_will_flag_without_any_will_field_is_malformed() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &lp(b"w9b")),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_10_will_removed_once_published() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w10-watch", "w10", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("w10", true, 60), "w10", b"w", None),
    )
    .await;
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
    // The session lives on without its Will: losing the next connection publishes nothing.
    let (c, ack) = accepted(&tern, session("w10", false, 60)).await;
    assert!(ack.session_present);
    disconnect_with(c, ReasonCode::DISCONNECT_WITH_WILL).await;
    expect_marker_next(&tern, &mut watcher, "w10").await;
}

#[tokio::test]
async fn mqtt5_3_1_2_10_will_removed_by_normal_disconnect() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w10b-watch", "w10b", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("w10b", true, 60), "w10b", b"w", Some(3600)),
    )
    .await;
    disconnect_with(c, ReasonCode::NORMAL_DISCONNECTION).await;
    // Ending the session would publish a Will still stored; there is none.
    let (_c, ack) = accepted(&tern, session("w10b", true, 0)).await;
    assert!(!ack.session_present);
    expect_marker_next(&tern, &mut watcher, "w10b").await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_5_will_published_promptly_after_its_delay() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "prompt-watch", "prompt", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("prompt", true, 60), "prompt", b"w", Some(1)),
    )
    .await;
    let dropped = Instant::now();
    drop(c);
    // recv() allows 5 s: well within "promptly" for a 1 s delay.
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
    assert!(dropped.elapsed() >= Duration::from_millis(950));
}

#[tokio::test]
async fn mqtt5_3_1_2_11_will_qos_without_will_flag_is_malformed() {
    let tern = Tern::start();
    // Will QoS 1 (bit 3), no Will Flag.
    refused_raw(
        &tern,
        &raw_connect(0x0A, &[], &lp(b"w11")),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_12_will_qos_3_is_malformed() {
    let tern = Tern::start();
    let mut payload = lp(b"w12");
    payload.push(0x00);
    payload.extend(lp(b"w12/will"));
    payload.extend(lp(b"x"));
    refused_raw(
        &tern,
        &raw_connect(0x1E, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_12_will_qos_0_1_2_are_accepted() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "w12-watch", "w12/#", QoS::ExactlyOnce).await;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let mut connect = connect_packet(V5, &format!("w12-{qos}"), true);
        connect.will = Some(will(&format!("w12/{qos}"), b"w", qos, false));
        let (c, _) = accepted(&tern, connect).await;
        drop(c);
        let p = watcher.recv_publish().await;
        assert_eq!(&p.topic[..], format!("w12/{qos}"));
        assert_eq!(p.qos, qos);
        watcher.ack(&p).await;
    }
}

#[tokio::test]
async fn mqtt5_3_1_2_13_will_retain_without_will_flag_is_malformed() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect(0x22, &[], &lp(b"w13")),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_14_will_retain_0_is_not_retained() {
    let tern = Tern::start();
    let mut watcher = client(&tern, "w14-watch").await;
    let options = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };
    watcher.subscribe_with("w14", options, None).await;
    let mut connect = connect_packet(V5, "w14", true);
    connect.will = Some(will("w14", b"w", QoS::AtMostOnce, false));
    let (c, _) = accepted(&tern, connect).await;
    drop(c);
    let p = watcher.recv_publish().await;
    assert!(!p.retain, "Will Retain 0 arrives with RETAIN 0");
    // Nothing was retained for later subscribers.
    let mut late = client(&tern, "w14-late").await;
    late.subscribe("w14", QoS::AtMostOnce).await;
    assert!(late.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_1_2_15_will_retain_1_is_retained() {
    let tern = Tern::start();
    let mut watcher = client(&tern, "w15-watch").await;
    let options = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };
    watcher.subscribe_with("w15", options, None).await;
    let mut connect = connect_packet(V5, "w15", true);
    connect.will = Some(will("w15", b"retained will", QoS::AtMostOnce, true));
    let (c, _) = accepted(&tern, connect).await;
    drop(c);
    assert!(watcher.recv_publish().await.retain);
    let mut late = client(&tern, "w15-late").await;
    late.subscribe("w15", QoS::AtMostOnce).await;
    let p = late.recv_publish().await;
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"retained will");
}

#[tokio::test]
async fn mqtt5_3_1_2_16_user_name_without_its_flag_is_malformed() {
    let tern = Tern::start();
    let mut payload = lp(b"u16");
    payload.extend(lp(b"user"));
    refused_raw(
        &tern,
        &raw_connect(0x02, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_17_user_name_flag_without_user_name_is_malformed() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect(0x82, &[], &lp(b"u17")),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_18_password_without_its_flag_is_malformed() {
    let tern = Tern::start();
    let mut payload = lp(b"p18");
    payload.extend(lp(b"user"));
    payload.extend(lp(b"secret"));
    refused_raw(
        &tern,
        &raw_connect(0x82, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_19_password_flag_without_password_is_malformed() {
    let tern = Tern::start();
    let mut payload = lp(b"p19");
    payload.extend(lp(b"user"));
    refused_raw(
        &tern,
        &raw_connect(0xC2, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_19_user_name_and_password_are_accepted() {
    let tern = Tern::start();
    let mut payload = lp(b"p19b");
    payload.extend(lp(b"user"));
    payload.extend(lp(b"secret"));
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect(0xC2, &[], &payload)).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn mqtt5_s3_1_2_9_password_without_user_name_is_accepted() {
    let tern = Tern::start();
    let mut payload = lp(b"pw-only");
    payload.extend(lp(b"secret"));
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect(0x42, &[], &payload)).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    assert!(c.sync().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// §4 Keep Alive (§3.1.2.10)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_1_2_20_pingreq_keeps_an_idle_connection_alive() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "ka20", true);
    connect.keep_alive = 2;
    let (mut c, ack) = accepted(&tern, connect).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    // Well past 1.5 × 2 s, with a PINGREQ every half second.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(c.sync().await.is_empty());
    }
}

#[tokio::test]
async fn mqtt5_3_1_2_20_any_packet_counts_as_activity() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "ka20b", true);
    connect.keep_alive = 2;
    let (mut c, _) = accepted(&tern, connect).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.publish("ka20b", b"x", QoS::AtLeastOnce, false).await;
    }
}

#[tokio::test]
async fn mqtt5_3_1_2_21_server_keep_alive_replaces_the_clients() {
    let tern = tern_with("max_keepalive = 1");
    let start = Instant::now();
    let (mut c, ack) = accepted(&tern, connect_packet(V5, "ka21", true)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    // The client asked for 60 s; the server holds it to 1 s.
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    assert!(start.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test]
async fn mqtt5_3_1_2_22_keep_alive_expiry_closes_and_publishes_the_will() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "ka22-watch", "ka22", QoS::AtMostOnce).await;
    let mut connect = with_will(connect_packet(V5, "ka22", true), "ka22", b"timed out", None);
    connect.keep_alive = 1;
    let start = Instant::now();
    let (mut c, ack) = accepted(&tern, connect).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(1400),
        "closed after {waited:?}"
    );
    assert_eq!(&watcher.recv_publish().await.payload[..], b"timed out");
}

#[tokio::test]
async fn mqtt5_s3_1_2_10_keep_alive_0_disables_the_timeout() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "ka0", true);
    connect.keep_alive = 0;
    let (mut c, ack) = accepted(&tern, connect).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    // Idle for longer than any keep-alive the tests use elsewhere.
    assert!(
        c.next(Duration::from_secs(3)).await.is_err(),
        "server sent or closed"
    );
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s3_1_2_10_keep_alive_0_with_server_keep_alive_is_enforced() {
    let tern = tern_with("max_keepalive = 1");
    let mut connect = connect_packet(V5, "ka0s", true);
    connect.keep_alive = 0;
    let (mut c, ack) = accepted(&tern, connect).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
}

// ---------------------------------------------------------------------------------------------
// §4 CONNECT properties (§3.1.2.11)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_s3_1_2_11_2_absent_session_expiry_ends_session_with_connection() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, connect_packet(V5, "sei0", false)).await;
    c.subscribe("sei0", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (_c, ack) = accepted(&tern, connect_packet(V5, "sei0", false)).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_2_session_expiry_max_never_expires() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, session("seimax", true, u32::MAX)).await;
    assert_eq!(ack.properties.session_expiry_interval, None);
    c.subscribe("seimax", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let (_c, ack) = accepted(&tern, session("seimax", false, u32::MAX)).await;
    assert!(ack.session_present);
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_2_duplicate_session_expiry_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("11 00 00 00 01 11 00 00 00 02")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_23_session_kept_after_close_for_its_interval() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("sei23", true, 60)).await;
    c.subscribe("sei23", QoS::AtLeastOnce).await;
    drop(c);
    let mut publisher = client(&tern, "sei23-pub").await;
    // The subscription outlives the connection.
    assert_eq!(
        publisher
            .publish("sei23", b"kept", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    let (mut c, ack) = accepted(&tern, session("sei23", false, 60)).await;
    assert!(ack.session_present);
    assert_eq!(&c.recv_publish().await.payload[..], b"kept");
}

#[tokio::test]
async fn mqtt5_3_1_2_23_session_discarded_when_interval_ends() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "sei23b-watch", "sei23b/will", QoS::AtMostOnce).await;
    // The Will (delay 1 hour) goes out exactly when the 1 s session ends: a clock to wait on.
    let (mut c, _) = accepted(
        &tern,
        with_will(
            session("sei23b", true, 1),
            "sei23b/will",
            b"ended",
            Some(3600),
        ),
    )
    .await;
    c.subscribe("sei23b/t", QoS::AtLeastOnce).await;
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"ended");
    let (_c, ack) = accepted(&tern, session("sei23b", false, 60)).await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_3_receive_maximum_0_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("21 00 00")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_3_duplicate_receive_maximum_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("21 00 05 21 00 05")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_3_receive_maximum_limits_unacknowledged_deliveries() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "rm", true);
    connect.properties.receive_maximum = Some(2);
    let (mut c, _) = accepted(&tern, connect).await;
    c.subscribe("rm", QoS::AtLeastOnce).await;
    let mut publisher = client(&tern, "rm-pub").await;
    for n in 0..4u8 {
        publisher.publish("rm", &[n], QoS::AtLeastOnce, false).await;
    }
    let a = c.recv_publish().await;
    let b = c.recv_publish().await;
    assert_eq!((a.payload[0], b.payload[0]), (0, 1));
    c.expect_nothing().await;
    c.ack(&a).await;
    let third = c.recv_publish().await;
    assert_eq!(third.payload[0], 2);
    c.expect_nothing().await;
    c.ack(&b).await;
    assert_eq!(c.recv_publish().await.payload[0], 3);
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_3_receive_maximum_applies_to_this_connection_only() {
    let tern = Tern::start();
    let mut connect = session("rm1", true, 60);
    connect.properties.receive_maximum = Some(1);
    let (mut c, _) = accepted(&tern, connect).await;
    c.subscribe("rm1", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = client(&tern, "rm1-pub").await;
    for n in 0..3u8 {
        publisher
            .publish("rm1", &[n], QoS::AtLeastOnce, false)
            .await;
    }
    // Resumed without Receive Maximum (65,535): all three come at once.
    let (mut c, ack) = accepted(&tern, session("rm1", false, 60)).await;
    assert!(ack.session_present);
    for n in 0..3u8 {
        assert_eq!(c.recv_publish().await.payload[0], n);
    }
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_4_maximum_packet_size_0_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("27 00 00 00 00")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_4_duplicate_maximum_packet_size_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("27 00 00 10 00 27 00 00 10 00")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_24_no_packet_larger_than_the_clients_maximum() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "mps", true);
    connect.properties.maximum_packet_size = Some(64);
    let (mut c, _) = accepted(&tern, connect).await;
    c.subscribe("mps/#", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "mps-pub").await;
    // "mps/t": 2 + 5 + 1 + payload + 2 bytes of header: 54 payload bytes make 64 exactly.
    for size in [100usize, 55, 54, 10] {
        publisher
            .publish("mps/t", &vec![b'x'; size], QoS::AtMostOnce, false)
            .await;
    }
    let first = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(first.len(), 64);
    let second = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(second.len(), 20);
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_1_2_25_too_large_publish_is_dropped_as_if_delivered() {
    let tern = Tern::start();
    let mut connect = session("drop25", true, 60);
    connect.properties.maximum_packet_size = Some(64);
    let (mut c, _) = accepted(&tern, connect.clone()).await;
    c.subscribe("d25", QoS::AtLeastOnce).await;
    let mut publisher = client(&tern, "drop25-pub").await;
    publisher
        .publish("d25", &[b'B'; 200], QoS::AtLeastOnce, false)
        .await;
    publisher
        .publish("d25", b"small", QoS::AtLeastOnce, false)
        .await;
    let p = c.recv_publish().await;
    assert_eq!(&p.payload[..], b"small");
    c.ack(&p).await;
    // Not disconnected, and nothing left to re-send when the session resumes.
    assert!(c.sync().await.is_empty());
    c.disconnect().await;
    connect.clean_start = false;
    let (mut c, ack) = accepted(&tern, connect).await;
    assert!(ack.session_present);
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_5_duplicate_topic_alias_maximum_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("22 00 05 22 00 05")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_26_no_topic_alias_above_the_clients_maximum() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "tam", true);
    connect.properties.topic_alias_maximum = Some(2);
    let (mut c, _) = accepted(&tern, connect).await;
    c.subscribe("tam/#", QoS::AtMostOnce).await;
    let mut publisher = client(&tern, "tam-pub").await;
    let topics = [
        "tam/1", "tam/2", "tam/3", "tam/1", "tam/2", "tam/3", "tam/1",
    ];
    for t in topics {
        publisher
            .publish(t, t.as_bytes(), QoS::AtMostOnce, false)
            .await;
    }
    let mut aliases: HashMap<u16, String> = HashMap::new();
    let mut replaced = 0;
    for expected in topics {
        let p = c.recv_publish().await;
        let topic = match p.properties.topic_alias {
            Some(alias) => {
                assert!(
                    (1..=2).contains(&alias),
                    "alias {alias} above the maximum 2"
                );
                if p.topic.is_empty() {
                    replaced += 1;
                    aliases[&alias].clone()
                } else {
                    aliases.insert(alias, p.topic.to_string());
                    p.topic.to_string()
                }
            }
            None => p.topic.to_string(),
        };
        assert_eq!(topic, expected);
        assert_eq!(&p.payload[..], expected.as_bytes());
    }
    assert!(replaced > 0, "aliases were allowed but never used");
}

#[tokio::test]
async fn mqtt5_3_1_2_27_no_topic_alias_when_maximum_is_absent_or_0() {
    let tern = Tern::start();
    for maximum in [None, Some(0)] {
        let mut connect = connect_packet(V5, "tam0", true);
        connect.properties.topic_alias_maximum = maximum;
        let (mut c, _) = accepted(&tern, connect).await;
        c.subscribe("tam0", QoS::AtMostOnce).await;
        for _ in 0..3 {
            c.publish("tam0", b"x", QoS::AtMostOnce, false).await;
            let p = c.recv_publish().await;
            assert_eq!(&p.topic[..], "tam0");
            assert_eq!(p.properties.topic_alias, None);
        }
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_6_request_response_information_2_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("19 02")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_6_duplicate_request_response_information_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("19 01 19 01")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_28_no_response_information_unless_requested() {
    let tern = Tern::start();
    for request in [None, Some(false)] {
        let mut connect = connect_packet(V5, "rri", true);
        connect.properties.request_response_information = request;
        let (c, ack) = accepted(&tern, connect).await;
        assert_eq!(ack.properties.response_information, None);
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_7_request_problem_information_2_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("17 02")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_7_duplicate_request_problem_information_is_protocol_error() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect_props(&hex("17 00 17 00")),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

/// Collects the acknowledgements of a refused QoS 1 and QoS 2 PUBLISH, a refused SUBSCRIBE and
/// an unknown PUBREL.
async fn refusal_acks(c: &mut RawClient) -> Vec<Packet> {
    let mut out = Vec::new();
    c.send(&Packet::Publish(publish(
        "$SYS/x",
        b"x",
        QoS::AtLeastOnce,
        false,
        Some(pid(1)),
    )))
    .await;
    out.push(c.recv().await);
    c.send(&Packet::Publish(publish(
        "$SYS/x",
        b"x",
        QoS::ExactlyOnce,
        false,
        Some(pid(2)),
    )))
    .await;
    out.push(c.recv().await);
    let invalid = SubscriptionOptions::with_qos(QoS::AtMostOnce);
    let reasons = c.subscribe_with("bad/#/filter", invalid, None).await;
    assert_eq!(reasons, vec![ReasonCode::TOPIC_FILTER_INVALID]);
    c.send(&Packet::PubRel(Ack::new(pid(77)))).await;
    out.push(c.recv().await);
    out
}

#[tokio::test]
async fn mqtt5_3_1_2_29_no_reason_string_on_acks_when_problem_information_is_0() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "rpi0", true);
    connect.properties.request_problem_information = Some(false);
    let (mut c, _) = accepted(&tern, connect).await;
    let acks = refusal_acks(&mut c).await;
    for ack in &acks {
        match ack {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => {
                assert!(a.reason.is_error(), "{ack:?}");
                assert!(a.properties.is_empty(), "diagnostics sent anyway: {ack:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Raw SUBACK for an invalid filter: no properties at all.
    c.send_bytes(&hex("82 0b 00 09 00 00 05 61 2f 23 2f 62 00"))
        .await;
    assert_eq!(
        recv_raw_frame(&mut c).await.unwrap(),
        hex("90 04 00 09 00 8f")
    );
}

#[tokio::test]
async fn mqtt5_3_1_2_29_problem_information_default_allows_reason_strings() {
    // The counterpart of the test above: by default a refused PUBLISH is explained, so the
    // absence above is the client's request being honoured.
    let tern = Tern::start();
    let mut c = client(&tern, "rpi1").await;
    let acks = refusal_acks(&mut c).await;
    match &acks[0] {
        Packet::PubAck(a) => {
            assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
            assert!(a.properties.reason_string.is_some());
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_8_connect_user_properties_may_repeat() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "cup", true);
    connect.properties.user_properties = [("k", "1"), ("k", "1"), ("k", "2"), ("", "")]
        .iter()
        .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
        .collect();
    let (mut c, _) = accepted(&tern, connect).await;
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_9_authentication_method_gets_connack_0x8c() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "auth", true);
    connect.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-1"));
    connect.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    refused(&tern, connect, ReasonCode::BAD_AUTHENTICATION_METHOD).await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_9_duplicate_authentication_method_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x15];
    props.extend(lp(b"A"));
    props.push(0x15);
    props.extend(lp(b"B"));
    refused_raw(
        &tern,
        &raw_connect_props(&props),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_2_30_packets_after_authentication_method_are_not_acted_on() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "a30-watch", "a30", QoS::AtMostOnce).await;
    let mut connect = connect_packet(V5, "a30", true);
    connect.properties.authentication_method = Some(ByteString::from("SCRAM-SHA-1"));
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(V5, &mut bytes)
        .unwrap();
    Packet::Publish(publish("a30", b"early", QoS::AtMostOnce, true, None))
        .encode(V5, &mut bytes)
        .unwrap();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&bytes).await;
    assert_eq!(
        c.connack().await.reason,
        ReasonCode::BAD_AUTHENTICATION_METHOD
    );
    c.expect_closed().await;
    // Neither delivered nor retained.
    expect_marker_next(&tern, &mut watcher, "a30").await;
    let mut late = client(&tern, "a30-late").await;
    late.subscribe("a30", QoS::AtMostOnce).await;
    assert!(late.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_10_authentication_data_without_method_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x16];
    props.extend(lp(b"data"));
    refused_raw(
        &tern,
        &raw_connect_props(&props),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_2_11_10_duplicate_authentication_data_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x15];
    props.extend(lp(b"M"));
    props.push(0x16);
    props.extend(lp(b"1"));
    props.push(0x16);
    props.extend(lp(b"2"));
    refused_raw(
        &tern,
        &raw_connect_props(&props),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// §4 Payload (§3.1.3)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_1_3_1_all_payload_fields_in_order_are_accepted() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "p1-watch", "p1/will", QoS::AtMostOnce).await;
    // Client id, Will Properties, Will Topic, Will Payload, User Name, Password.
    let mut payload = lp(b"p1");
    payload.extend(hex("05 18 00 00 00 00"));
    payload.extend(lp(b"p1/will"));
    payload.extend(lp(b"will payload"));
    payload.extend(lp(b"user"));
    payload.extend(lp(b"pass"));
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect(0xC6, &[], &payload)).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"will payload");
}

#[tokio::test]
async fn mqtt5_3_1_3_1_payload_fields_out_of_order_are_malformed() {
    let tern = Tern::start();
    // User Name before the Will fields.
    let mut payload = lp(b"p1b");
    payload.extend(lp(b"u"));
    payload.push(0x00);
    payload.extend(lp(b"p1b/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x86, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_3_2_client_id_is_the_session_key() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("key-a", true, 60)).await;
    c.subscribe("key", QoS::AtLeastOnce).await;
    c.disconnect().await;
    for other in ["key-b", "KEY-A", "key-a "] {
        let (c, ack) = accepted(&tern, session(other, false, 0)).await;
        assert!(!ack.session_present, "{other:?} found key-a's session");
        c.disconnect().await;
    }
    let (_c, ack) = accepted(&tern, session("key-a", false, 60)).await;
    assert!(ack.session_present);
}

#[tokio::test]
async fn mqtt5_3_1_3_3_missing_client_id_is_malformed() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect(0x02, &[], &[]),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_3_4_client_id_must_be_utf8() {
    let tern = Tern::start();
    refused_raw(
        &tern,
        &raw_connect(0x02, &[], &lp(b"id-\xed\xa0\x80")),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_3_5_client_id_of_23_alphanumerics_is_accepted() {
    let tern = Tern::start();
    for id in ["0123456789abcdefABCDEFz", "a", "Z9"] {
        let (c, _) = accepted(&tern, connect_packet(V5, id, true)).await;
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt5_3_1_3_5_longer_client_ids_and_other_characters_are_accepted() {
    let tern = Tern::start();
    let long = "x".repeat(1000);
    for id in [long.as_str(), "with space/slash+plus#hash", "é-ü-\u{1F600}"] {
        let (c, _) = accepted(&tern, connect_packet(V5, id, true)).await;
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt5_3_1_3_6_assigned_client_ids_are_unique() {
    let tern = Tern::start();
    let mut ids = HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let (c, ack) = accepted(&tern, connect_packet(V5, "", true)).await;
        let id = ack
            .properties
            .assigned_client_identifier
            .expect("Assigned Client Identifier");
        assert!(!id.is_empty());
        assert!(ids.insert(id.to_string()), "{id} assigned twice");
        clients.push(c);
    }
}

#[tokio::test]
async fn mqtt5_3_1_3_7_assigned_client_id_is_used_for_the_session() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, session("", true, 60)).await;
    let id = ack.properties.assigned_client_identifier.expect("assigned");
    c.subscribe("assigned", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = client(&tern, "assigned-pub").await;
    publisher
        .publish("assigned", b"for you", QoS::AtLeastOnce, false)
        .await;
    let (mut c, ack) = accepted(&tern, session(&id, false, 60)).await;
    assert!(ack.session_present);
    assert_eq!(ack.properties.assigned_client_identifier, None);
    assert_eq!(&c.recv_publish().await.payload[..], b"for you");
}

#[tokio::test]
async fn mqtt5_3_1_3_8_refused_client_id_gets_connack_0x85() {
    let tern = tern_with("allow_zero_length_clientid = false");
    refused(
        &tern,
        connect_packet(V5, "", true),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_2_absent_will_delay_means_no_delay() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "wd0-watch", "wd0", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("wd0", true, 60), "wd0", b"w", None),
    )
    .await;
    let dropped = Instant::now();
    drop(c);
    assert_eq!(&watcher.recv_publish().await.payload[..], b"w");
    // The session lives on for 60 s; only an absent delay lets the Will out this early.
    assert!(
        dropped.elapsed() < Duration::from_secs(3),
        "{:?}",
        dropped.elapsed()
    );
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_2_duplicate_will_delay_is_protocol_error() {
    let tern = Tern::start();
    let mut payload = lp(b"wd2");
    payload.extend(hex("0a 18 00 00 00 01 18 00 00 00 01"));
    payload.extend(lp(b"wd2/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_3_9_reconnect_within_will_delay_cancels_the_will() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "wd9-watch", "wd9", QoS::AtMostOnce).await;
    let (c, _) = accepted(
        &tern,
        with_will(session("wd9", true, 60), "wd9", b"first", Some(2)),
    )
    .await;
    // Not a normal disconnection: the Will stays armed for 2 s.
    disconnect_with(c, ReasonCode::DISCONNECT_WITH_WILL).await;
    let (c, ack) = accepted(&tern, session("wd9", false, 60)).await;
    assert!(ack.session_present);
    // Well past the 2 s delay: nothing.
    assert!(
        watcher.next(Duration::from_secs(3)).await.is_err(),
        "the Will was published"
    );
    c.disconnect().await;
    expect_marker_next(&tern, &mut watcher, "wd9").await;
}

/// Connects `id` with `will`, drops the connection and returns what `topic`'s subscriber got.
async fn published_will(tern: &Tern, id: &str, will: LastWill) -> tern_codec::Publish {
    let mut watcher = subscriber(tern, &format!("{id}-watch"), &will.topic, QoS::AtLeastOnce).await;
    let mut connect = connect_packet(V5, id, true);
    connect.will = Some(will);
    let (c, _) = accepted(tern, connect).await;
    drop(c);
    let p = watcher.recv_publish().await;
    watcher.ack(&p).await;
    p
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_3_will_payload_format_indicator_is_forwarded() {
    let tern = Tern::start();
    let mut w = will("pfi", "héllo".as_bytes(), QoS::AtMostOnce, false);
    w.properties.message.payload_format_indicator = Some(true);
    let p = published_will(&tern, "pfi", w).await;
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert_eq!(&p.payload[..], "héllo".as_bytes());
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_3_duplicate_will_payload_format_indicator_is_protocol_error() {
    let tern = Tern::start();
    let mut payload = lp(b"pfi2");
    payload.extend(hex("04 01 01 01 01"));
    payload.extend(lp(b"pfi2/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_4_will_message_expiry_is_forwarded() {
    let tern = Tern::start();
    let mut w = will("wexp", b"w", QoS::AtMostOnce, false);
    w.properties.message.message_expiry_interval = Some(100);
    let p = published_will(&tern, "wexp", w).await;
    let expiry = p.properties.message_expiry_interval.expect("expiry");
    assert!((95..=100).contains(&expiry), "{expiry}");
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_4_duplicate_will_message_expiry_is_protocol_error() {
    let tern = Tern::start();
    let mut payload = lp(b"wexp2");
    payload.extend(hex("0a 02 00 00 00 01 02 00 00 00 01"));
    payload.extend(lp(b"wexp2/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_5_will_content_type_is_forwarded() {
    let tern = Tern::start();
    let mut w = will("wct", b"{}", QoS::AtMostOnce, false);
    w.properties.message.content_type = Some(ByteString::from("application/json"));
    let p = published_will(&tern, "wct", w).await;
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/json")
    );
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_5_duplicate_will_content_type_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x03];
    props.extend(lp(b"a"));
    props.push(0x03);
    props.extend(lp(b"b"));
    let mut payload = lp(b"wct2");
    payload.extend(vbi(props.len()));
    payload.extend(props);
    payload.extend(lp(b"wct2/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_6_will_response_topic_is_forwarded() {
    let tern = Tern::start();
    let mut w = will("wrt", b"w", QoS::AtMostOnce, false);
    w.properties.message.response_topic = Some(ByteString::from("replies/wrt"));
    let p = published_will(&tern, "wrt", w).await;
    assert_eq!(p.properties.response_topic.as_deref(), Some("replies/wrt"));
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_6_duplicate_will_response_topic_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x08];
    props.extend(lp(b"r/a"));
    props.push(0x08);
    props.extend(lp(b"r/b"));
    let mut payload = lp(b"wrt2");
    payload.extend(vbi(props.len()));
    payload.extend(props);
    payload.extend(lp(b"wrt2/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_7_will_correlation_data_is_forwarded() {
    let tern = Tern::start();
    let mut w = will("wcd", b"w", QoS::AtMostOnce, false);
    w.properties.message.correlation_data = Some(Bytes::from_static(b"\x00\x01\xfe\xff"));
    let p = published_will(&tern, "wcd", w).await;
    assert_eq!(
        p.properties.correlation_data.as_deref(),
        Some(&b"\x00\x01\xfe\xff"[..])
    );
}

#[tokio::test]
async fn mqtt5_s3_1_3_2_7_duplicate_will_correlation_data_is_protocol_error() {
    let tern = Tern::start();
    let mut props = vec![0x09];
    props.extend(lp(b"1"));
    props.push(0x09);
    props.extend(lp(b"2"));
    let mut payload = lp(b"wcd2");
    payload.extend(vbi(props.len()));
    payload.extend(props);
    payload.extend(lp(b"wcd2/will"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_3_10_will_user_properties_keep_their_order() {
    let tern = Tern::start();
    let pairs: Vec<(ByteString, ByteString)> =
        [("z", "1"), ("a", "2"), ("z", "3"), ("m", ""), ("a", "2")]
            .iter()
            .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
            .collect();
    let mut w = will("wup", b"w", QoS::AtMostOnce, false);
    w.properties.message.user_properties = pairs.clone();
    let p = published_will(&tern, "wup", w).await;
    assert_eq!(p.properties.user_properties, pairs);
}

#[tokio::test]
async fn mqtt5_3_1_3_11_will_topic_must_be_utf8() {
    let tern = Tern::start();
    let mut payload = lp(b"wt11");
    payload.push(0x00);
    payload.extend(lp(b"will/\xff"));
    payload.extend(lp(b"w"));
    refused_raw(
        &tern,
        &raw_connect(0x06, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_3_11_will_topic_with_wildcard_gets_connack_0x90() {
    let tern = Tern::start();
    for topic in ["will/+", "will/#", ""] {
        let mut connect = connect_packet(V5, "wt11b", true);
        connect.will = Some(will(topic, b"w", QoS::AtMostOnce, false));
        refused(&tern, connect, ReasonCode::TOPIC_NAME_INVALID).await;
    }
}

#[tokio::test]
async fn mqtt5_3_1_3_12_user_name_must_be_utf8() {
    let tern = Tern::start();
    let mut payload = lp(b"un12");
    payload.extend(lp(b"user\xc3\x28"));
    refused_raw(
        &tern,
        &raw_connect(0x82, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_s3_1_3_6_password_is_binary_data() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "pw-bin", true);
    connect.username = Some(ByteString::from("user"));
    connect.password = Some(Bytes::from_static(b"\x00\xff\xfe\xc0\xaf\xed\xa0\x80"));
    let (mut c, _) = accepted(&tern, connect).await;
    assert!(c.sync().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// §4 CONNECT actions (§3.1.4)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_1_4_1_connect_not_matching_the_format_is_closed() {
    let tern = Tern::start();
    // A well-formed CONNECT followed by a stray byte inside the Remaining Length.
    let mut payload = lp(b"fmt");
    payload.push(0x00);
    refused_raw(
        &tern,
        &raw_connect(0x02, &[], &payload),
        ReasonCode::MALFORMED_PACKET,
    )
    .await;
}

#[tokio::test]
async fn mqtt5_3_1_4_2_failed_authorization_closes_the_connection() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "sys-will", true);
    connect.will = Some(will("$SYS/broker/fake", b"w", QoS::AtMostOnce, false));
    refused(&tern, connect, ReasonCode::NOT_AUTHORIZED).await;
}

#[tokio::test]
async fn mqtt5_3_1_4_3_takeover_sends_0x8e_to_the_old_connection() {
    let tern = Tern::start();
    let mut old = client(&tern, "taken").await;
    let (mut new, ack) = accepted(&tern, connect_packet(V5, "taken", true)).await;
    assert!(!ack.session_present);
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    assert!(new.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_1_4_3_takeover_keeps_the_session_for_clean_start_0() {
    let tern = Tern::start();
    let (mut old, _) = accepted(&tern, session("taken2", true, 60)).await;
    old.subscribe("taken2", QoS::AtLeastOnce).await;
    let (mut new, ack) = accepted(&tern, session("taken2", false, 60)).await;
    assert!(ack.session_present);
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    new.publish("taken2", b"still subscribed", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(&new.recv_publish().await.payload[..], b"still subscribed");
}

#[tokio::test]
async fn mqtt5_3_1_4_3_takeover_publishes_will_without_delay() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "tw-watch", "tw", QoS::AtMostOnce).await;
    let (mut old, _) = accepted(
        &tern,
        with_will(session("tw", true, 60), "tw", b"old will", None),
    )
    .await;
    let (_new, _) = accepted(&tern, session("tw", false, 60)).await;
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"old will");
}

#[tokio::test]
async fn mqtt5_3_1_4_3_takeover_cancels_delayed_will_when_session_continues() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "twd-watch", "twd", QoS::AtMostOnce).await;
    let (mut old, _) = accepted(
        &tern,
        with_will(session("twd", true, 60), "twd", b"old will", Some(1)),
    )
    .await;
    let (new, _) = accepted(&tern, session("twd", false, 60)).await;
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    assert!(
        watcher.next(Duration::from_secs(2)).await.is_err(),
        "the old Will was published"
    );
    new.disconnect().await;
    expect_marker_next(&tern, &mut watcher, "twd").await;
}

#[tokio::test]
async fn mqtt5_3_1_4_3_takeover_with_clean_start_publishes_delayed_will() {
    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "twc-watch", "twc", QoS::AtMostOnce).await;
    let (mut old, _) = accepted(
        &tern,
        with_will(session("twc", true, 60), "twc", b"old will", Some(3600)),
    )
    .await;
    let (_new, ack) = accepted(&tern, session("twc", true, 60)).await;
    assert!(!ack.session_present);
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    assert_eq!(&watcher.recv_publish().await.payload[..], b"old will");
}

#[tokio::test]
async fn mqtt5_3_1_4_3_rumqttc_client_takes_over_a_live_session() {
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::mqttbytes::v5::Packet as RPacket;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let tern = Tern::start();
    let (mut old, _) = accepted(&tern, session("rq-taken", true, 60)).await;
    old.subscribe("rq/t", QoS::AtLeastOnce).await;

    let mut options = MqttOptions::new("rq-taken", tern.addr.ip().to_string(), tern.addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(60));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    loop {
        let event = tokio::time::timeout(TIMEOUT, eventloop.poll())
            .await
            .expect("timeout")
            .expect("poll");
        if let Event::Incoming(RPacket::ConnAck(ack)) = event {
            assert!(ack.session_present, "the live session was not handed over");
            break;
        }
    }
    old.expect_disconnect(ReasonCode::SESSION_TAKEN_OVER).await;
    // The subscription made by the old connection now delivers to rumqttc.
    client
        .publish("rq/t", RQoS::AtLeastOnce, false, "inherited")
        .await
        .unwrap();
    loop {
        let event = tokio::time::timeout(TIMEOUT, eventloop.poll())
            .await
            .expect("timeout")
            .expect("poll");
        if let Event::Incoming(RPacket::Publish(p)) = event {
            assert_eq!(&p.topic[..], b"rq/t");
            assert_eq!(&p.payload[..], b"inherited");
            break;
        }
    }
}

#[tokio::test]
async fn mqtt5_3_1_4_4_clean_start_drops_inflight_messages() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("cs4", true, 60)).await;
    c.subscribe("cs4", QoS::AtLeastOnce).await;
    let mut publisher = client(&tern, "cs4-pub").await;
    publisher
        .publish("cs4", b"unacked", QoS::AtLeastOnce, false)
        .await;
    let _ = c.recv_publish().await;
    drop(c);
    let (mut c, ack) = accepted(&tern, session("cs4", true, 60)).await;
    assert!(!ack.session_present);
    assert!(c.sync().await.is_empty(), "old in-flight message re-sent");
}

#[tokio::test]
async fn mqtt5_3_1_4_5_connack_success_comes_before_deliveries() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("first-connack", true, 60)).await;
    c.subscribe("fc", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = client(&tern, "fc-pub").await;
    for n in 0..3u8 {
        publisher.publish("fc", &[n], QoS::AtLeastOnce, false).await;
    }
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send(&Packet::Connect(Box::new(session(
        "first-connack",
        false,
        60,
    ))))
    .await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present);
    for n in 0..3u8 {
        assert_eq!(c.recv_publish().await.payload[..], [n]);
    }
}

#[tokio::test]
async fn mqtt5_3_1_4_6_packets_after_a_refused_connect_are_ignored() {
    let tern = tern_with("allow_zero_length_clientid = false");
    let mut watcher = subscriber(&tern, "pipe-watch", "pipe/#", QoS::AtMostOnce).await;
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(V5, "", true)))
        .encode(V5, &mut bytes)
        .unwrap();
    Packet::Publish(publish("pipe/retained", b"x", QoS::AtMostOnce, true, None))
        .encode(V5, &mut bytes)
        .unwrap();
    Packet::Subscribe(tern_codec::Subscribe {
        packet_id: pid(1),
        properties: Default::default(),
        filters: vec![(
            ByteString::from("pipe/#"),
            SubscriptionOptions::with_qos(QoS::AtMostOnce),
        )],
    })
    .encode(V5, &mut bytes)
    .unwrap();
    bytes.extend_from_slice(&hex("c0 00"));
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&bytes).await;
    assert_eq!(
        c.connack().await.reason,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    // No SUBACK, no PINGRESP: just the close.
    c.expect_closed().await;
    expect_marker_next(&tern, &mut watcher, "pipe/m").await;
    let mut late = client(&tern, "pipe-late").await;
    late.subscribe("pipe/#", QoS::AtMostOnce).await;
    assert!(
        late.sync().await.is_empty(),
        "the pipelined PUBLISH was retained"
    );
}

// ---------------------------------------------------------------------------------------------
// §5 CONNACK (§3.2)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn mqtt5_3_2_0_1_connack_is_the_first_packet_sent() {
    let tern = Tern::start();
    let (mut c, _) = accepted(&tern, session("cfirst", true, 60)).await;
    c.subscribe("cfirst", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut publisher = client(&tern, "cfirst-pub").await;
    publisher
        .publish("cfirst", b"queued", QoS::AtLeastOnce, false)
        .await;
    // CONNECT and PINGREQ in one write, with a message waiting: CONNACK still comes first.
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(session("cfirst", false, 60)))
        .encode(V5, &mut bytes)
        .unwrap();
    bytes.extend_from_slice(&hex("c0 00"));
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&bytes).await;
    match c.recv().await {
        Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK first, got {other:?}"),
    }
    let mut rest = [c.recv().await, c.recv().await];
    rest.sort_by_key(|p| p.packet_type() as u8);
    assert!(matches!(rest[0], Packet::Publish(_)));
    assert_eq!(rest[1], Packet::PingResp);
}

#[tokio::test]
async fn mqtt5_3_2_0_1_refused_connection_gets_only_the_connack() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect_props(&hex("21 00 00"))).await;
    let raw = recv_raw_frame(&mut c).await.unwrap();
    assert_eq!(raw[0], 0x20);
    assert_eq!(raw[3], 0x82);
    assert_eq!(
        recv_raw_frame(&mut c).await,
        None,
        "nothing after the refusal"
    );
}

#[tokio::test]
async fn mqtt5_3_2_0_2_only_one_connack_per_connection() {
    let tern = Tern::start();
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(V5, "one-connack", true)))
        .encode(V5, &mut bytes)
        .unwrap();
    Packet::Connect(Box::new(connect_packet(V5, "one-connack", true)))
        .encode(V5, &mut bytes)
        .unwrap();
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&bytes).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    c.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_1_connack_reserved_flags_are_0() {
    let tern = Tern::start();
    let (c, _) = accepted(&tern, session("flags", true, 60)).await;
    c.disconnect().await;
    for (connect, expected) in [
        (session("flags", false, 60), 0x01u8),
        (session("flags", true, 60), 0x00),
    ] {
        let mut c = RawClient::open(tern.addr, V5).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        let raw = recv_raw_frame(&mut c).await.unwrap();
        assert_eq!(raw[2], expected, "Connect Acknowledge Flags");
        c.disconnect().await;
    }
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send_bytes(&raw_connect_props(&hex("21 00 00"))).await;
    assert_eq!(recv_raw_frame(&mut c).await.unwrap()[2], 0x00);
}

#[tokio::test]
async fn mqtt5_3_2_2_2_clean_start_gets_session_present_0() {
    let tern = Tern::start();
    let (c, _) = accepted(&tern, session("sp2", true, 60)).await;
    c.disconnect().await;
    let (_c, ack) = accepted(&tern, session("sp2", true, 60)).await;
    assert!(
        !ack.session_present,
        "an old session existed, but Clean Start discards it"
    );
}

#[tokio::test]
async fn mqtt5_3_2_2_3_session_present_tells_whether_a_session_existed() {
    let tern = Tern::start();
    let (c, ack) = accepted(&tern, session("sp3", false, 60)).await;
    assert!(!ack.session_present);
    c.disconnect().await;
    let (_c, ack) = accepted(&tern, session("sp3", false, 60)).await;
    assert!(ack.session_present);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn mqtt5_3_2_2_4_client_closing_after_unexpected_session_present_is_tolerated() {
    let tern = Tern::start();
    let (c, _) = accepted(&tern, session("sp4", true, 60)).await;
    c.disconnect().await;
    // A client without state sees Session Present 1 and closes the connection at once.
    let (c, ack) = accepted(&tern, session("sp4", false, 60)).await;
    assert!(ack.session_present);
    drop(c);
    // It comes back with Clean Start, as it should; the server carries on normally.
    let (mut c, ack) = accepted(&tern, session("sp4", true, 60)).await;
    assert!(!ack.session_present);
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_2_2_5_stale_client_state_after_session_present_0_is_tolerated() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, session("sp5", false, 60)).await;
    assert!(!ack.session_present);
    // A client that kept a QoS 2 exchange from a session the server no longer has.
    c.send(&Packet::PubRel(Ack::new(pid(42)))).await;
    assert_eq!(
        c.recv().await,
        Packet::PubComp(Ack::with_reason(
            pid(42),
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        ))
    );
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_3_2_2_6_refusal_has_session_present_0() {
    let tern = tern_with("max_qos = 1");
    let (c, _) = accepted(&tern, session("sp6", true, 60)).await;
    c.disconnect().await;
    let mut connect = session("sp6", false, 60);
    connect.will = Some(will("sp6/will", b"w", QoS::ExactlyOnce, false));
    // refused() asserts Session Present 0 although a session exists.
    refused(&tern, connect, ReasonCode::QOS_NOT_SUPPORTED).await;
    let mut connect = session("sp6", false, 60);
    connect.properties.authentication_method = Some(ByteString::from("X"));
    refused(&tern, connect, ReasonCode::BAD_AUTHENTICATION_METHOD).await;
    // The session itself was not touched by the refusals.
    let (_c, ack) = accepted(&tern, session("sp6", false, 60)).await;
    assert!(ack.session_present);
}

#[tokio::test]
async fn mqtt5_3_2_2_7_connection_closed_after_refusal() {
    let tern = Tern::start();
    let mut c = RawClient::open(tern.addr, V5).await;
    let mut bytes = raw_connect_props(&hex("27 00 00 00 00"));
    bytes.extend(hex("c0 00"));
    c.send_bytes(&bytes).await;
    assert_eq!(c.connack().await.reason, ReasonCode::PROTOCOL_ERROR);
    c.expect_closed().await;
}

/// CONNACK reason codes allowed by Table 3-1.
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

#[tokio::test]
async fn mqtt5_3_2_2_8_connack_reason_codes_come_from_the_table() {
    let tern =
        tern_with("max_qos = 1\nretain_available = false\nallow_zero_length_clientid = false");
    let mut codes = Vec::new();
    let mut w = connect_packet(V5, "rc", true);
    w.will = Some(will("rc", b"w", QoS::ExactlyOnce, false));
    codes.push(
        refused(&tern, w, ReasonCode::QOS_NOT_SUPPORTED)
            .await
            .reason,
    );
    let mut w = connect_packet(V5, "rc", true);
    w.will = Some(will("rc", b"w", QoS::AtMostOnce, true));
    codes.push(
        refused(&tern, w, ReasonCode::RETAIN_NOT_SUPPORTED)
            .await
            .reason,
    );
    let mut w = connect_packet(V5, "rc", true);
    w.will = Some(will("rc/#", b"w", QoS::AtMostOnce, false));
    codes.push(
        refused(&tern, w, ReasonCode::TOPIC_NAME_INVALID)
            .await
            .reason,
    );
    codes.push(
        refused(
            &tern,
            connect_packet(V5, "", true),
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        )
        .await
        .reason,
    );
    codes.push(
        refused_raw(
            &tern,
            &raw_connect(0x03, &[], &lp(b"rc")),
            ReasonCode::MALFORMED_PACKET,
        )
        .await
        .reason,
    );
    codes.push(
        refused_raw(
            &tern,
            &raw_connect_props(&hex("17 05")),
            ReasonCode::PROTOCOL_ERROR,
        )
        .await
        .reason,
    );
    let (_c, ok) = accepted(&tern, connect_packet(V5, "rc", true)).await;
    codes.push(ok.reason);
    for code in codes {
        assert!(
            CONNACK_CODES.contains(&code.0),
            "{code:?} is not a CONNACK code"
        );
    }
}

#[tokio::test]
async fn mqtt5_s3_2_2_2_well_formed_connect_refused_with_a_fitting_code() {
    let tern = tern_with("retain_available = false");
    let mut connect = connect_packet(V5, "fit", true);
    connect.will = Some(will("fit", b"w", QoS::AtMostOnce, true));
    refused(&tern, connect, ReasonCode::RETAIN_NOT_SUPPORTED).await;
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_2_session_expiry_absent_when_the_clients_value_is_used() {
    let tern = Tern::start();
    for expiry in [None, Some(0), Some(60), Some(u32::MAX)] {
        let mut connect = connect_packet(V5, "sei-ack", true);
        connect.properties.session_expiry_interval = expiry;
        let (c, ack) = accepted(&tern, connect).await;
        assert_eq!(
            ack.properties.session_expiry_interval, None,
            "for {expiry:?}"
        );
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_2_session_expiry_sent_when_the_server_caps_it() {
    let tern = tern_with("persistent_client_expiration = \"1h\"");
    let (_c, ack) = accepted(&tern, session("sei-cap", true, u32::MAX)).await;
    assert_eq!(ack.properties.session_expiry_interval, Some(3600));
    let (_c, ack) = accepted(&tern, session("sei-nocap", true, 60)).await;
    assert_eq!(ack.properties.session_expiry_interval, None);
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_3_receive_maximum_is_announced() {
    let tern = Tern::start();
    let (_c, ack) = accepted(&tern, connect_packet(V5, "rm-ack", true)).await;
    assert_eq!(ack.properties.receive_maximum, Some(1024));
    let tern = tern_with("receive_maximum = 3");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "rm-ack", true)).await;
    assert_eq!(ack.properties.receive_maximum, Some(3));
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_4_maximum_qos_absent_when_qos_2_is_supported() {
    let tern = Tern::start();
    let (_c, ack) = accepted(&tern, connect_packet(V5, "mq", true)).await;
    assert_eq!(ack.properties.maximum_qos, None);
    let tern = tern_with("max_qos = 0");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "mq", true)).await;
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtMostOnce));
}

#[tokio::test]
async fn mqtt5_3_2_2_9_maximum_qos_1_is_announced() {
    let tern = tern_with("max_qos = 1");
    let mut c = RawClient::open(tern.addr, V5).await;
    c.send(&common::connect(V5, "mq1", true)).await;
    let raw = recv_raw_frame(&mut c).await.unwrap();
    // Maximum QoS (0x24) with value 1 among the properties.
    assert!(raw[5..].windows(2).any(|w| w == [0x24, 0x01]), "{raw:02x?}");
}

#[tokio::test]
async fn mqtt5_3_2_2_10_subscribe_above_maximum_qos_is_granted_the_maximum() {
    let tern = tern_with("max_qos = 1");
    let mut c = client(&tern, "mq10").await;
    assert_eq!(
        c.subscribe("mq10/2", QoS::ExactlyOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        c.subscribe("mq10/1", QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        c.subscribe("mq10/0", QoS::AtMostOnce).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    c.publish("mq10/2", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(c.recv_publish().await.qos, QoS::AtLeastOnce);
    let tern = tern_with("max_qos = 0");
    let mut c = client(&tern, "mq10-0").await;
    assert_eq!(
        c.subscribe("mq10", QoS::ExactlyOnce).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
}

#[tokio::test]
async fn mqtt5_3_2_2_10_rumqttc_subscription_at_qos_2_is_granted_qos_1() {
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::mqttbytes::v5::{Packet as RPacket, SubscribeReasonCode};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let tern = tern_with("max_qos = 1");
    let mut options = MqttOptions::new("rumqttc-mq", tern.addr.ip().to_string(), tern.addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe("rq/+", RQoS::ExactlyOnce).await.unwrap();
    loop {
        let event = tokio::time::timeout(TIMEOUT, eventloop.poll())
            .await
            .expect("timeout")
            .expect("poll");
        match event {
            Event::Incoming(RPacket::ConnAck(ack)) => {
                let props = ack.properties.expect("CONNACK properties");
                assert_eq!(props.max_qos, Some(1));
            }
            Event::Incoming(RPacket::SubAck(ack)) => {
                assert_eq!(
                    ack.return_codes,
                    vec![SubscribeReasonCode::Success(RQoS::AtLeastOnce)]
                );
                break;
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn mqtt5_3_2_2_11_publish_above_maximum_qos_gets_disconnect_0x9b() {
    let tern = tern_with("max_qos = 1");
    let mut watcher = subscriber(&tern, "mq11-watch", "mq11", QoS::AtLeastOnce).await;
    let mut c = client(&tern, "mq11").await;
    c.send(&Packet::Publish(publish(
        "mq11",
        b"x",
        QoS::ExactlyOnce,
        false,
        Some(pid(1)),
    )))
    .await;
    c.expect_disconnect(ReasonCode::QOS_NOT_SUPPORTED).await;
    expect_marker_next(&tern, &mut watcher, "mq11").await;

    let tern = tern_with("max_qos = 0");
    let mut c = client(&tern, "mq11-0").await;
    c.send(&Packet::Publish(publish(
        "mq11",
        b"x",
        QoS::AtLeastOnce,
        false,
        Some(pid(1)),
    )))
    .await;
    c.expect_disconnect(ReasonCode::QOS_NOT_SUPPORTED).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_12_will_qos_above_maximum_gets_connack_0x9b() {
    let tern = tern_with("max_qos = 1");
    let mut connect = connect_packet(V5, "mq12", true);
    connect.will = Some(will("mq12", b"w", QoS::ExactlyOnce, false));
    refused(&tern, connect, ReasonCode::QOS_NOT_SUPPORTED).await;
    // Will QoS 1 is within the maximum.
    let mut connect = connect_packet(V5, "mq12", true);
    connect.will = Some(will("mq12", b"w", QoS::AtLeastOnce, false));
    accepted(&tern, connect).await;
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_5_retain_available_0_is_announced() {
    let tern = Tern::start();
    let (_c, ack) = accepted(&tern, connect_packet(V5, "ra", true)).await;
    assert_eq!(ack.properties.retain_available, None);
    let tern = tern_with("retain_available = false");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "ra", true)).await;
    assert_eq!(ack.properties.retain_available, Some(false));
}

#[tokio::test]
async fn mqtt5_3_2_2_13_will_retain_without_retain_support_gets_connack_0x9a() {
    let tern = tern_with("retain_available = false");
    let mut connect = connect_packet(V5, "ra13", true);
    connect.will = Some(will("ra13", b"w", QoS::AtMostOnce, true));
    refused(&tern, connect, ReasonCode::RETAIN_NOT_SUPPORTED).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_14_publish_retain_without_retain_support_gets_disconnect_0x9a() {
    let tern = tern_with("retain_available = false");
    let mut watcher = subscriber(&tern, "ra14-watch", "ra14", QoS::AtMostOnce).await;
    let mut c = client(&tern, "ra14").await;
    c.send(&Packet::Publish(publish(
        "ra14",
        b"x",
        QoS::AtMostOnce,
        true,
        None,
    )))
    .await;
    c.expect_disconnect(ReasonCode::RETAIN_NOT_SUPPORTED).await;
    expect_marker_next(&tern, &mut watcher, "ra14").await;
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_6_maximum_packet_size_is_announced() {
    let tern = Tern::start();
    let (_c, ack) = accepted(&tern, connect_packet(V5, "mps-ack", true)).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(1_048_576));
    let tern = tern_with("max_packet_size = 2048");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "mps-ack", true)).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(2048));
}

#[tokio::test]
async fn mqtt5_3_2_2_15_packet_above_maximum_packet_size_gets_disconnect_0x95() {
    let tern = tern_with("max_packet_size = 256");
    let mut watcher = subscriber(&tern, "mps15-watch", "mps15", QoS::AtMostOnce).await;
    let mut c = client(&tern, "mps15").await;
    // "mps15": 2 + 5 + 1 + payload + 3 header bytes; 245 bytes of payload make 256 exactly.
    c.publish("mps15", &[b'a'; 245], QoS::AtMostOnce, false)
        .await;
    assert_eq!(watcher.recv_publish().await.payload.len(), 245);
    c.publish("mps15", &[b'b'; 246], QoS::AtMostOnce, false)
        .await;
    c.expect_disconnect(ReasonCode::PACKET_TOO_LARGE).await;
    expect_marker_next(&tern, &mut watcher, "mps15").await;
}

#[tokio::test]
async fn mqtt5_3_2_2_15_hard_limit_applies_by_default() {
    let tern = Tern::start();
    let mut c = client(&tern, "mps-hard").await;
    // Only the fixed header of a 2 MiB PUBLISH: refused before the body arrives.
    let mut bytes = vec![0x30];
    bytes.extend(vbi(2 * 1024 * 1024));
    bytes.extend(lp(b"t"));
    c.send_bytes(&bytes).await;
    c.expect_disconnect(ReasonCode::PACKET_TOO_LARGE).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_16_assigned_client_id_is_returned_and_unused() {
    let tern = Tern::start();
    let (_existing, _) = accepted(&tern, session("auto-0000000000000000", true, 60)).await;
    let mut seen = HashSet::new();
    let mut keep = Vec::new();
    for _ in 0..10 {
        let (c, ack) = accepted(&tern, connect_packet(V5, "", true)).await;
        let id = ack.properties.assigned_client_identifier.expect("assigned");
        assert_ne!(&id[..], "auto-0000000000000000");
        assert!(seen.insert(id.to_string()));
        keep.push(c);
    }
    // A client id the client chose itself is not echoed.
    let (_c, ack) = accepted(&tern, connect_packet(V5, "chosen", true)).await;
    assert_eq!(ack.properties.assigned_client_identifier, None);
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_8_topic_alias_maximum_is_announced() {
    let tern = Tern::start();
    let (_c, ack) = accepted(&tern, connect_packet(V5, "tam-ack", true)).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(10));
    let tern = tern_with("max_topic_alias = 3");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "tam-ack", true)).await;
    assert_eq!(ack.properties.topic_alias_maximum, Some(3));
    let tern = tern_with("max_topic_alias = 0");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "tam-ack", true)).await;
    assert_eq!(ack.properties.topic_alias_maximum, None);
}

fn aliased(topic: &str, alias: u16) -> Packet {
    let mut p = publish(topic, b"x", QoS::AtMostOnce, false, None);
    p.properties.topic_alias = Some(alias);
    Packet::Publish(p)
}

#[tokio::test]
async fn mqtt5_3_2_2_17_topic_alias_above_the_maximum_gets_disconnect_0x94() {
    let tern = tern_with("max_topic_alias = 3");
    let mut sub = subscriber(&tern, "ta17-sub", "ta17", QoS::AtMostOnce).await;
    let mut c = client(&tern, "ta17").await;
    c.send(&aliased("ta17", 3)).await;
    c.send(&aliased("", 3)).await;
    assert_eq!(&sub.recv_publish().await.topic[..], "ta17");
    assert_eq!(&sub.recv_publish().await.topic[..], "ta17");
    c.send(&aliased("ta17", 4)).await;
    c.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
    expect_marker_next(&tern, &mut sub, "ta17").await;
}

#[tokio::test]
async fn mqtt5_3_2_2_17_topic_alias_0_gets_disconnect_0x94() {
    let tern = Tern::start();
    let mut c = client(&tern, "ta0").await;
    c.send(&aliased("ta0", 0)).await;
    c.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_18_any_topic_alias_when_maximum_is_0_gets_disconnect_0x94() {
    let tern = tern_with("max_topic_alias = 0");
    let mut c = client(&tern, "ta18").await;
    c.send(&aliased("ta18", 1)).await;
    c.expect_disconnect(ReasonCode::TOPIC_ALIAS_INVALID).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_19_connack_fits_a_small_client_maximum() {
    let tern = Tern::start();
    for maximum in [16u32, 20, 64] {
        let mut connect = connect_packet(V5, "small-mps", true);
        connect.properties.maximum_packet_size = Some(maximum);
        let mut c = RawClient::open(tern.addr, V5).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        let raw = recv_raw_frame(&mut c).await.expect("CONNACK");
        assert!(raw.len() <= maximum as usize, "{} > {maximum}", raw.len());
        c.disconnect().await;
    }
}

#[tokio::test]
async fn mqtt5_3_2_2_19_no_reason_string_beyond_the_clients_maximum() {
    // The DISCONNECT after an error carries a Reason String; a client with a small Maximum
    // Packet Size gets the DISCONNECT without it rather than no DISCONNECT.
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "small-disc", true);
    connect.properties.maximum_packet_size = Some(16);
    let (mut c, _) = accepted(&tern, connect).await;
    c.send_bytes(&hex("c0 01 00")).await;
    let raw = recv_raw_frame(&mut c).await.expect("DISCONNECT");
    assert!(raw.len() <= 16, "{raw:02x?}");
    assert_eq!(raw[..3], [0xE0, raw[1], 0x81]);
}

#[tokio::test]
async fn mqtt5_3_2_2_20_no_user_properties_beyond_the_clients_maximum() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "small-up", true);
    connect.properties.maximum_packet_size = Some(20);
    let (mut c, ack) = accepted(&tern, connect).await;
    assert!(ack.properties.user_properties.is_empty());
    assert_eq!(ack.properties.reason_string, None);
    // A refused PUBLISH: its PUBACK fits only without diagnostics.
    c.send(&Packet::Publish(publish(
        "$SYS/x",
        b"x",
        QoS::AtLeastOnce,
        false,
        Some(pid(3)),
    )))
    .await;
    match c.recv().await {
        Packet::PubAck(a) => {
            assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
            assert!(a.properties.is_empty());
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_11_wildcard_subscriptions_are_available() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, connect_packet(V5, "wild", true)).await;
    assert_ne!(ack.properties.wildcard_subscription_available, Some(false));
    assert_eq!(
        c.subscribe("w/+/x/#", QoS::AtMostOnce).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    c.publish("w/a/x/b", b"x", QoS::AtMostOnce, false).await;
    assert_eq!(&c.recv_publish().await.topic[..], "w/a/x/b");
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_12_subscription_identifiers_are_available() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, connect_packet(V5, "sid", true)).await;
    assert_ne!(
        ack.properties.subscription_identifiers_available,
        Some(false)
    );
    c.subscribe_with(
        "sid",
        SubscriptionOptions::with_qos(QoS::AtMostOnce),
        Some(7),
    )
    .await;
    c.publish("sid", b"x", QoS::AtMostOnce, false).await;
    assert_eq!(
        c.recv_publish().await.properties.subscription_identifiers,
        vec![7]
    );
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_13_shared_subscriptions_are_available() {
    let tern = Tern::start();
    let (mut c, ack) = accepted(&tern, connect_packet(V5, "shared", true)).await;
    assert_ne!(ack.properties.shared_subscription_available, Some(false));
    assert_eq!(
        c.subscribe("$share/g/sh", QoS::AtMostOnce).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    c.publish("sh", b"x", QoS::AtMostOnce, false).await;
    assert_eq!(&c.recv_publish().await.topic[..], "sh");
}

#[tokio::test]
async fn mqtt5_3_2_2_21_server_keep_alive_is_what_the_server_enforces() {
    let tern = tern_with("max_keepalive = 1");
    let mut connect = connect_packet(V5, "ska", true);
    connect.keep_alive = 30;
    let (mut c, ack) = accepted(&tern, connect).await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    // A client using the Server Keep Alive (pinging every 0.3 s) stays connected...
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c.sync().await.is_empty());
    }
    // ...one going by its own 30 s does not.
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
}

#[tokio::test]
async fn mqtt5_3_2_2_22_without_server_keep_alive_the_clients_value_is_used() {
    let tern = tern_with("max_keepalive = 10");
    let mut connect = connect_packet(V5, "cka", true);
    connect.keep_alive = 1;
    let start = Instant::now();
    let (mut c, ack) = accepted(&tern, connect).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    c.expect_disconnect(ReasonCode::KEEP_ALIVE_TIMEOUT).await;
    assert!(start.elapsed() >= Duration::from_millis(1400));
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_15_response_information_is_optional() {
    let tern = Tern::start();
    let mut connect = connect_packet(V5, "rri1", true);
    connect.properties.request_response_information = Some(true);
    let (mut c, ack) = accepted(&tern, connect).await;
    if let Some(info) = &ack.properties.response_information {
        assert!(!info.is_empty());
    }
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_16_no_server_reference_without_redirection() {
    let tern = tern_with("max_qos = 1");
    let (_c, ack) = accepted(&tern, connect_packet(V5, "sref", true)).await;
    assert_eq!(ack.properties.server_reference, None);
    let mut connect = connect_packet(V5, "sref2", true);
    connect.will = Some(will("sref", b"w", QoS::ExactlyOnce, false));
    let ack = refused(&tern, connect, ReasonCode::QOS_NOT_SUPPORTED).await;
    assert_eq!(ack.properties.server_reference, None);
}

#[tokio::test]
async fn mqtt5_s3_2_2_3_17_no_authentication_method_without_enhanced_authentication() {
    let tern = Tern::start();
    let (_c, ack) = accepted(&tern, connect_packet(V5, "noauth", true)).await;
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
    let mut connect = connect_packet(V5, "noauth2", true);
    connect.properties.authentication_method = Some(ByteString::from("X"));
    let ack = refused(&tern, connect, ReasonCode::BAD_AUTHENTICATION_METHOD).await;
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
}

#[tokio::test]
async fn mqtt5_3_1_3_10_rumqttc_will_properties_are_forwarded_in_order() {
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::mqttbytes::v5::{LastWill as RWill, LastWillProperties, Packet as RPacket};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let tern = Tern::start();
    let mut watcher = subscriber(&tern, "rw-watch", "rw/will", QoS::AtLeastOnce).await;
    let mut options =
        MqttOptions::new("rumqttc-will", tern.addr.ip().to_string(), tern.addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let properties = LastWillProperties {
        delay_interval: None,
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(300),
        content_type: Some("text/plain".into()),
        response_topic: Some("rw/reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr-1")),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("b".into(), "3".into()),
        ],
    };
    options.set_last_will(RWill::new(
        "rw/will",
        "gone",
        RQoS::AtLeastOnce,
        false,
        Some(properties),
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    loop {
        let event = tokio::time::timeout(TIMEOUT, eventloop.poll())
            .await
            .expect("timeout")
            .expect("poll");
        if let Event::Incoming(RPacket::ConnAck(_)) = event {
            break;
        }
    }
    // Losing the network connection (no DISCONNECT) publishes the Will.
    drop(eventloop);
    drop(client);
    let p = watcher.recv_publish().await;
    assert_eq!(&p.payload[..], b"gone");
    assert_eq!(p.qos, QoS::AtLeastOnce);
    assert_eq!(p.properties.payload_format_indicator, Some(true));
    assert!((295..=300).contains(&p.properties.message_expiry_interval.unwrap()));
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.response_topic.as_deref(), Some("rw/reply"));
    assert_eq!(
        p.properties.correlation_data.as_deref(),
        Some(&b"corr-1"[..])
    );
    let pairs: Vec<(&str, &str)> = p
        .properties
        .user_properties
        .iter()
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    assert_eq!(pairs, vec![("b", "2"), ("a", "1"), ("b", "3")]);
    watcher.ack(&p).await;
}
