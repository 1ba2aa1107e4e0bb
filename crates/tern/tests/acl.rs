//! Access control with Mosquitto's ACL file (`acl_file`), against the real broker over loopback
//! with raw MQTT 3.1.1, 3.1 and 5.0 clients: PUBLISH needs write access (v5 PUBACK/PUBREC 0x87,
//! 3.x acknowledged and dropped), SUBSCRIBE needs a read entry covering each filter (v5 0x87,
//! 3.x 0x80), every delivery (routed, retained, will, queued for an offline session) needs read
//! access for the receiving session, and a Will Topic needs write access at CONNECT (v5 CONNACK
//! 0x87, 3.x 5). Also: `user` sections, the anonymous section, `pattern` with `%c`/`%u`, `deny`
//! precedence, `$SYS`, and identities containing `+`, `#` or `/`. The file is loaded through the
//! TOML and the mosquitto.conf configuration; errors name the ACL file and line.
//!
//! Where a test must show that a message was *not* delivered, it publishes an allowed marker
//! message after it: the subscriber's queue is in order, so receiving the marker first proves
//! the refused message was never queued, without waiting for silence.

mod common;

use std::path::Path;

use common::{RawClient, TempFile, Tern, V5, V31, V311, connect_packet, pid, publish, will};
use tern_codec::{
    Ack, ByteString, Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A broker whose configuration (TOML) names an ACL file with `acl` as its contents.
struct Broker {
    tern: Tern,
    _acl: TempFile,
}

fn start(acl: &str) -> Broker {
    let file = TempFile::new("acl", acl);
    let config = format!("acl_file = \"{}\"\n", file.path.display());
    Broker {
        tern: Tern::start_config(&config, "toml"),
        _acl: file,
    }
}

/// Connects with a clean session and an optional user name; asserts CONNACK success.
async fn client(
    b: &Broker,
    version: ProtocolVersion,
    id: &str,
    username: Option<&str>,
) -> RawClient {
    let mut connect = connect_packet(version, id, true);
    connect.username = username.map(ByteString::from);
    let (c, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    c
}

/// Receives PUBLISHes (acknowledging them) up to and including one on `marker`; returns their
/// (topic, payload), marker included.
async fn until_marker(c: &mut RawClient, marker: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let p = c.recv_publish().await;
        c.ack(&p).await;
        let topic = p.topic.to_string();
        got.push((
            topic.clone(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        ));
        if topic == marker {
            return got;
        }
    }
}

/// Publishes at QoS 1 and returns the PUBACK.
async fn publish_qos1(c: &mut RawClient, topic: &str, payload: &[u8], retain: bool) -> Ack {
    c.send(&Packet::Publish(publish(
        topic,
        payload,
        QoS::AtLeastOnce,
        retain,
        Some(pid(0x0101)),
    )))
    .await;
    match c.recv().await {
        Packet::PubAck(a) => a,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

const OK: ReasonCode = ReasonCode::GRANTED_QOS_1;
const REFUSED_3: ReasonCode = ReasonCode::UNSPECIFIED_ERROR; // 0x80
const REFUSED_5: ReasonCode = ReasonCode::NOT_AUTHORIZED; // 0x87

/// Anonymous clients may read and write `public/#` and `marker`, read `news/#`; user `writer`
/// may write `news/#` and `secret/#`; user `reader` may read `secret/#` and `marker`.
const NEWSROOM: &str = "\
# anonymous section
topic readwrite public/#
topic read news/#
topic readwrite marker

user writer
topic write news/#
topic write secret/#
topic write marker

user reader
topic read secret/#
topic read marker
";

// ---------------------------------------------------------------------------------------------
// PUBLISH

#[tokio::test]
async fn mqtt311_3_3_5_2_publish_refused_by_acl_is_acknowledged_and_dropped() {
    let b = start(NEWSROOM);
    let mut sub = client(&b, V311, "sub", None).await;
    assert_eq!(
        sub.subscribe("news/#", QoS::ExactlyOnce).await,
        [ReasonCode::GRANTED_QOS_2]
    );
    let mut anon = client(&b, V311, "anon", None).await;
    // Anonymous clients may only read news/#: each QoS is acknowledged as if accepted.
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        assert_eq!(
            anon.publish("news/fake", b"dropped", qos, false).await,
            ReasonCode::SUCCESS,
            "{qos:?}"
        );
    }
    anon.sync().await; // the QoS 0 one went through too
    let mut writer = client(&b, V311, "w", Some("writer")).await;
    writer
        .publish("news/real", b"kept", QoS::AtLeastOnce, false)
        .await;
    let p = sub.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("news/real", &b"kept"[..]));
    // The refused client is still connected and may publish where it is allowed.
    assert_eq!(
        anon.publish("public/x", b"ok", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
}

#[tokio::test]
async fn mqtt5_s4_13_2_publish_refused_by_acl_gets_puback_0x87() {
    let b = start(NEWSROOM);
    let mut sub = client(&b, V5, "sub", None).await;
    assert_eq!(sub.subscribe("news/#", QoS::AtLeastOnce).await, [OK]);
    let mut anon = client(&b, V5, "anon", None).await;
    let ack = publish_qos1(&mut anon, "news/fake", b"dropped", false).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        ack.properties.reason_string.as_deref(),
        Some("not authorized to publish to this topic")
    );
    // QoS 0: nothing to answer; dropped.
    anon.send(&Packet::Publish(publish(
        "news/fake0",
        b"dropped",
        QoS::AtMostOnce,
        false,
        None,
    )))
    .await;
    // The connection and the session are unaffected: an allowed publish still works.
    assert_eq!(
        publish_qos1(&mut anon, "public/x", b"ok", false)
            .await
            .reason,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    let mut writer = client(&b, V5, "w", Some("writer")).await;
    assert_eq!(
        publish_qos1(&mut writer, "news/real", b"kept", false)
            .await
            .reason,
        ReasonCode::SUCCESS
    );
    let p = sub.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("news/real", &b"kept"[..]));
}

#[tokio::test]
async fn mqtt5_4_3_3_9_qos2_publish_refused_by_acl_gets_pubrec_0x87_and_its_id_is_free() {
    let b = start(NEWSROOM);
    let mut sub = client(&b, V5, "sub", None).await;
    assert_eq!(
        sub.subscribe("public/#", QoS::ExactlyOnce).await,
        [ReasonCode::GRANTED_QOS_2]
    );
    let mut anon = client(&b, V5, "anon", None).await;
    assert_eq!(
        anon.publish("news/fake", b"dropped", QoS::ExactlyOnce, false)
            .await,
        ReasonCode::NOT_AUTHORIZED
    );
    // The same Packet Identifier (0x0101) starts a new message, which is delivered.
    assert_eq!(
        anon.publish("public/x", b"new", QoS::ExactlyOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    let p = sub.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("public/x", &b"new"[..]));
}

#[tokio::test]
async fn read_only_access_does_not_allow_publishing_and_write_only_does_not_allow_subscribing() {
    let b = start("topic read ro/#\ntopic write wo/#\n");
    let mut c = client(&b, V5, "c", None).await;
    assert_eq!(
        publish_qos1(&mut c, "ro/x", b"", false).await.reason,
        REFUSED_5
    );
    assert_eq!(
        publish_qos1(&mut c, "wo/x", b"", false).await.reason,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        c.subscribe_many(&["ro/x", "wo/x"], QoS::AtLeastOnce).await,
        [OK, REFUSED_5]
    );
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE

#[tokio::test]
async fn mqtt311_3_8_4_5_each_filter_refused_by_acl_gets_0x80() {
    let b = start(NEWSROOM);
    let mut c = client(&b, V311, "c", None).await;
    let codes = c
        .subscribe_many(
            &[
                "public/#", "secret/x", "news/+", "#", "news/a/b", "marker/#",
            ],
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(codes, [OK, REFUSED_3, OK, REFUSED_3, OK, REFUSED_3]);
    let mut reader = client(&b, V311, "r", Some("reader")).await;
    let codes = reader
        .subscribe_many(&["secret/#", "public/#", "marker"], QoS::AtLeastOnce)
        .await;
    assert_eq!(codes, [OK, REFUSED_3, OK]);
}

#[tokio::test]
async fn mqtt311_3_9_3_2_acl_refusal_is_the_only_failure_code_0x80_in_the_bytes() {
    let b = start(NEWSROOM);
    let mut c = client(&b, V311, "c", None).await;
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: pid(9),
        properties: SubscribeProperties::default(),
        filters: vec![
            (
                ByteString::from("secret/x"),
                SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            ),
            (
                ByteString::from("public/x"),
                SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            ),
        ],
    }))
    .await;
    assert_eq!(
        common::recv_raw_frame(&mut c).await,
        Some(vec![0x90, 0x04, 0x00, 0x09, 0x80, 0x02])
    );
}

#[tokio::test]
async fn mqtt5_3_8_4_5_each_filter_refused_by_acl_gets_0x87() {
    let b = start(NEWSROOM);
    let mut c = client(&b, V5, "c", None).await;
    let codes = c
        .subscribe_many(
            &[
                "public/#", "secret/x", "news/+", "#", "news/a/b", "marker/#",
            ],
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(codes, [OK, REFUSED_5, OK, REFUSED_5, OK, REFUSED_5]);
}

#[tokio::test]
async fn mqtt5_3_9_3_2_refused_subscription_delivers_nothing() {
    let b = start(NEWSROOM);
    let mut c = client(&b, V5, "c", None).await;
    assert_eq!(c.subscribe("secret/x", QoS::AtLeastOnce).await, [REFUSED_5]);
    assert_eq!(c.subscribe("marker", QoS::AtLeastOnce).await, [OK]);
    let mut writer = client(&b, V5, "w", Some("writer")).await;
    writer
        .publish("secret/x", b"no", QoS::AtLeastOnce, false)
        .await;
    writer
        .publish("marker", b"end", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        until_marker(&mut c, "marker").await,
        [("marker".to_owned(), "end".to_owned())]
    );
}

#[tokio::test]
async fn mqtt31_subscribe_refused_by_acl_gets_0x80() {
    let b = start(NEWSROOM);
    let mut c = client(&b, V31, "c", None).await;
    assert_eq!(
        c.subscribe_many(&["secret/x", "public/x"], QoS::AtLeastOnce)
            .await,
        [REFUSED_3, OK]
    );
}

#[tokio::test]
async fn subscription_filters_must_be_covered_by_a_read_entry() {
    let b = start("topic read a/+/c\ntopic read d/#\ntopic deny d/private/#\n");
    let mut c = client(&b, V5, "c", None).await;
    let codes = c
        .subscribe_many(
            &[
                "a/b/c",       // matched
                "a/+/c",       // the same filter
                "a/#",         // would match a/b/x
                "a/b/+",       // would match a/b/x
                "d/#",         // covered; the deny only overlaps it
                "d/x/+/#",     // covered
                "d/private/+", // covered by the deny
                "d/private",   // `d/private/#` matches `d/private` too
                "+/b/c",       // would match x/b/c
            ],
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(
        codes,
        [
            OK, OK, REFUSED_5, REFUSED_5, OK, OK, REFUSED_5, REFUSED_5, REFUSED_5
        ]
    );
}

#[tokio::test]
async fn shared_subscriptions_are_checked_with_their_filter() {
    let b = start(NEWSROOM);
    let mut c = client(&b, V5, "c", None).await;
    let codes = c
        .subscribe_many(
            &["$share/g/public/#", "$share/g/secret/#", "$share/g/news/x"],
            QoS::AtLeastOnce,
        )
        .await;
    assert_eq!(codes, [OK, REFUSED_5, OK]);
}

// ---------------------------------------------------------------------------------------------
// Delivery

#[tokio::test]
async fn delivery_needs_read_access_for_each_subscriber() {
    let b = start(
        "topic readwrite #\ntopic deny hidden/#\n\
         user spy\ntopic read #\n\
         user boss\ntopic write #\n",
    );
    let mut anon = client(&b, V5, "anon", None).await;
    let mut spy = client(&b, V311, "spy", Some("spy")).await;
    // Both may subscribe to `#`: the deny only covers part of it.
    assert_eq!(anon.subscribe("#", QoS::AtLeastOnce).await, [OK]);
    assert_eq!(spy.subscribe("#", QoS::AtLeastOnce).await, [OK]);
    let mut boss = client(&b, V5, "boss", Some("boss")).await;
    for (topic, payload) in [("hidden/x", "h"), ("open/x", "o"), ("marker", "end")] {
        assert_eq!(
            publish_qos1(&mut boss, topic, payload.as_bytes(), false)
                .await
                .reason,
            ReasonCode::SUCCESS
        );
    }
    let pair = |t: &str, p: &str| (t.to_owned(), p.to_owned());
    assert_eq!(
        until_marker(&mut anon, "marker").await,
        [pair("open/x", "o"), pair("marker", "end")]
    );
    assert_eq!(
        until_marker(&mut spy, "marker").await,
        [
            pair("hidden/x", "h"),
            pair("open/x", "o"),
            pair("marker", "end")
        ]
    );
}

#[tokio::test]
async fn retained_message_is_not_delivered_without_read_access() {
    let b = start(
        "topic read news/#\ntopic readwrite marker\n\
         user writer\ntopic write news/#\ntopic write secret/#\n\
         user reader\ntopic read +/#\ntopic read marker\n",
    );
    let mut writer = client(&b, V5, "w", Some("writer")).await;
    publish_qos1(&mut writer, "news/a", b"n", true).await;
    publish_qos1(&mut writer, "secret/a", b"s", true).await;
    // The anonymous client may subscribe to news/# only, and gets its retained message.
    let mut anon = client(&b, V311, "anon", None).await;
    assert_eq!(
        anon.subscribe_many(&["news/#", "secret/#", "marker"], QoS::AtLeastOnce)
            .await,
        [OK, REFUSED_3, OK]
    );
    // `reader` may subscribe to `+/#`, which also matches secret/a: both retained messages
    // come (it may read secret/#).
    let mut reader = client(&b, V5, "r", Some("reader")).await;
    assert_eq!(
        reader
            .subscribe_many(&["+/#", "marker"], QoS::AtLeastOnce)
            .await,
        [OK, OK]
    );
    let mut publisher = client(&b, V5, "p", None).await;
    publish_qos1(&mut publisher, "marker", b"end", false).await;
    let got = until_marker(&mut anon, "marker").await;
    assert_eq!(
        got,
        [
            ("news/a".to_owned(), "n".to_owned()),
            ("marker".to_owned(), "end".to_owned())
        ]
    );
    let mut got = until_marker(&mut reader, "marker").await;
    got.sort();
    assert_eq!(
        got,
        [
            ("marker".to_owned(), "end".to_owned()),
            ("news/a".to_owned(), "n".to_owned()),
            ("secret/a".to_owned(), "s".to_owned()),
        ]
    );
}

#[tokio::test]
async fn retained_message_matched_by_a_wider_subscription_is_filtered_by_read_access() {
    let b = start(
        "topic readwrite #\ntopic deny private/#\n\
         user owner\ntopic readwrite #\n",
    );
    let mut owner = client(&b, V5, "owner", Some("owner")).await;
    publish_qos1(&mut owner, "private/diary", b"secret", true).await;
    publish_qos1(&mut owner, "public/board", b"hello", true).await;
    let mut anon = client(&b, V5, "anon", None).await;
    assert_eq!(anon.subscribe("#", QoS::AtLeastOnce).await, [OK]);
    publish_qos1(&mut owner, "marker", b"end", false).await;
    assert_eq!(
        until_marker(&mut anon, "marker").await,
        [
            ("public/board".to_owned(), "hello".to_owned()),
            ("marker".to_owned(), "end".to_owned())
        ]
    );
}

#[tokio::test]
async fn offline_session_queues_only_what_it_may_read() {
    let b = start(
        "topic readwrite #\ntopic deny private/#\n\
         user owner\ntopic readwrite #\n",
    );
    let connect = connect_packet(V311, "persistent", false);
    let (mut anon, ack) = RawClient::connect_with(b.tern.addr, connect.clone()).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(anon.subscribe("#", QoS::AtLeastOnce).await, [OK]);
    anon.disconnect().await;
    let mut owner = client(&b, V5, "owner", Some("owner")).await;
    publish_qos1(&mut owner, "private/x", b"p", false).await;
    publish_qos1(&mut owner, "marker", b"end", false).await;
    let (mut anon, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert!(ack.session_present);
    assert_eq!(
        until_marker(&mut anon, "marker").await,
        [("marker".to_owned(), "end".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------------
// Wills

#[tokio::test]
async fn mqtt5_3_1_4_2_will_topic_without_write_access_gets_connack_0x87() {
    let b = start(NEWSROOM);
    let mut connect = connect_packet(V5, "dying", true);
    connect.will = Some(will("news/obituary", b"bye", QoS::AtLeastOnce, false));
    let (mut c, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    c.expect_closed().await;
    // Where anonymous clients may write, the same will is accepted.
    let mut connect = connect_packet(V5, "dying", true);
    connect.will = Some(will("public/obituary", b"bye", QoS::AtLeastOnce, false));
    let (_c, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn mqtt311_s3_1_4_will_topic_without_write_access_gets_connack_5() {
    let b = start(NEWSROOM);
    let mut connect = connect_packet(V311, "dying", true);
    connect.will = Some(will("news/obituary", b"bye", QoS::AtMostOnce, false));
    let mut c = RawClient::open(b.tern.addr, V311).await;
    c.send(&Packet::Connect(Box::new(connect))).await;
    assert_eq!(
        common::recv_raw_frame(&mut c).await,
        Some(vec![0x20, 0x02, 0x00, 0x05])
    );
    c.expect_closed().await;
    // A user that may write there is accepted with the same will.
    let mut connect = connect_packet(V311, "dying", true);
    connect.will = Some(will("news/obituary", b"bye", QoS::AtMostOnce, false));
    connect.username = Some("writer".into());
    let (_c, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn refused_will_does_not_take_over_the_existing_session() {
    let b = start(NEWSROOM);
    let mut first = client(&b, V5, "same-id", None).await;
    let mut connect = connect_packet(V5, "same-id", true);
    connect.will = Some(will("secret/x", b"", QoS::AtMostOnce, false));
    let (mut second, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    second.expect_closed().await;
    // The first connection is still there and working.
    assert!(first.sync().await.is_empty());
}

#[tokio::test]
async fn will_is_delivered_only_to_sessions_that_may_read_it() {
    let b = start(
        "topic readwrite #\ntopic deny wills/#\n\
         user mortal\ntopic write wills/#\n\
         user heir\ntopic read wills/#\ntopic read marker\n",
    );
    let mut anon = client(&b, V5, "anon", None).await;
    assert_eq!(anon.subscribe("#", QoS::AtLeastOnce).await, [OK]);
    let mut heir = client(&b, V5, "heir", Some("heir")).await;
    assert_eq!(heir.subscribe("wills/#", QoS::AtLeastOnce).await, [OK]);
    assert_eq!(heir.subscribe("marker", QoS::AtLeastOnce).await, [OK]);
    let mut connect = connect_packet(V311, "mortal", true);
    connect.username = Some("mortal".into());
    connect.will = Some(will("wills/mortal", b"gone", QoS::AtLeastOnce, false));
    let (mortal, ack) = RawClient::connect_with(b.tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    drop(mortal); // connection lost: the will goes out
    let p = heir.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("wills/mortal", &b"gone"[..]));
    heir.ack(&p).await;
    // The will has been routed; `anon` (subscribed to `#`) did not get it.
    let mut publisher = client(&b, V5, "p", None).await;
    publish_qos1(&mut publisher, "marker", b"end", false).await;
    assert_eq!(
        until_marker(&mut anon, "marker").await,
        [("marker".to_owned(), "end".to_owned())]
    );
}

// ---------------------------------------------------------------------------------------------
// Sections, patterns, deny, `$` topics

#[tokio::test]
async fn user_sections_apply_by_user_name_and_the_anonymous_section_without_one() {
    let b = start(
        "topic write anon/#\n\
         user alice\ntopic write alice/#\n\
         user bob\ntopic write bob/#\n",
    );
    let cases = [
        (None, "anon/x", true),
        (None, "alice/x", false),
        (Some("alice"), "alice/x", true),
        (Some("alice"), "anon/x", false), // no anonymous rights once named
        (Some("alice"), "bob/x", false),
        (Some("bob"), "bob/x", true),
        (Some("carol"), "anon/x", false), // a user without a section has no rights
        (Some(""), "anon/x", false),      // an empty user name is a user name
    ];
    for (i, (username, topic, allowed)) in cases.into_iter().enumerate() {
        // The client id is not the user name.
        let mut c = client(&b, V5, "alice", username).await;
        let reason = publish_qos1(&mut c, topic, b"", false).await.reason;
        let expected = if allowed {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            REFUSED_5
        };
        assert_eq!(reason, expected, "case {i}: {username:?} → {topic}");
    }
}

#[tokio::test]
async fn pattern_percent_c_grants_each_client_its_own_subtree() {
    let b = start("pattern readwrite devices/%c/#\n");
    let mut d1 = client(&b, V5, "d1", None).await;
    let mut d2 = client(&b, V311, "d2", Some("anyone")).await; // patterns apply to users too
    assert_eq!(d1.subscribe("devices/d1/#", QoS::AtLeastOnce).await, [OK]);
    assert_eq!(
        d1.subscribe("devices/d2/#", QoS::AtLeastOnce).await,
        [REFUSED_5]
    );
    assert_eq!(
        d1.subscribe("devices/+/x", QoS::AtLeastOnce).await,
        [REFUSED_5]
    );
    assert_eq!(
        publish_qos1(&mut d1, "devices/d2/cmd", b"", false)
            .await
            .reason,
        REFUSED_5
    );
    assert_eq!(d2.subscribe("devices/d2/#", QoS::AtLeastOnce).await, [OK]);
    publish_qos1(&mut d2, "devices/d1/x", b"no", false).await; // dropped (3.1.1)
    publish_qos1(&mut d2, "devices/d2/x", b"mine", false).await;
    let p = d2.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("devices/d2/x", &b"mine"[..]));
    d2.ack(&p).await;
    publish_qos1(&mut d1, "devices/d1/x", b"own", false).await;
    let p = d1.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("devices/d1/x", &b"own"[..]));
}

#[tokio::test]
async fn pattern_percent_u_grants_each_user_its_own_subtree() {
    let b = start("pattern readwrite users/%u/#\npattern read shared/%u/%c\n");
    let mut alice = client(&b, V5, "phone", Some("alice")).await;
    assert_eq!(
        alice
            .subscribe_many(
                &[
                    "users/alice/#",
                    "users/bob/#",
                    "shared/alice/phone",
                    "shared/alice/tablet"
                ],
                QoS::AtLeastOnce
            )
            .await,
        [OK, REFUSED_5, OK, REFUSED_5]
    );
    // `%u` never applies to a client without a user name.
    let mut anon = client(&b, V5, "alice", None).await;
    assert_eq!(
        anon.subscribe_many(&["users/alice/#", "users//#"], QoS::AtLeastOnce)
            .await,
        [REFUSED_5, REFUSED_5]
    );
    assert_eq!(
        publish_qos1(&mut anon, "users/alice/x", b"", false)
            .await
            .reason,
        REFUSED_5
    );
}

#[tokio::test]
async fn assigned_client_id_fills_percent_c() {
    let b = start("pattern readwrite clients/%c/#\n");
    let (mut c, ack) = RawClient::connect_with(b.tern.addr, connect_packet(V5, "", true)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("assigned client id");
    assert_eq!(
        publish_qos1(&mut c, &format!("clients/{id}/status"), b"", false)
            .await
            .reason,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    assert_eq!(
        publish_qos1(&mut c, "clients/other/status", b"", false)
            .await
            .reason,
        REFUSED_5
    );
}

#[tokio::test]
async fn client_ids_with_wildcards_or_slashes_never_match_a_pattern() {
    let b = start("pattern readwrite devices/%c/#\ntopic readwrite open/#\n");
    for id in ["+", "#", "a/b", "x+", "#y"] {
        let mut c = client(&b, V5, id, None).await;
        // Neither the wildcard nor the levels the id would make are granted.
        assert_eq!(
            c.subscribe_many(
                &["devices/+/#", "devices/#", "devices/a/b/#", "open/#"],
                QoS::AtLeastOnce
            )
            .await,
            [REFUSED_5, REFUSED_5, REFUSED_5, OK],
            "client id {id:?}"
        );
        for topic in ["devices/a/b/x", "devices/x", "devices/a"] {
            assert_eq!(
                publish_qos1(&mut c, topic, b"", false).await.reason,
                REFUSED_5,
                "client id {id:?} publishing to {topic}"
            );
        }
        c.disconnect().await;
    }
    // The same pattern works for a plain id.
    let mut c = client(&b, V5, "a", None).await;
    assert_eq!(
        c.subscribe_many(&["devices/a/#"], QoS::AtLeastOnce).await,
        [OK]
    );
}

#[tokio::test]
async fn user_names_with_wildcards_or_slashes_never_match_a_pattern() {
    let b = start("pattern readwrite users/%u/#\n");
    for name in ["+", "#", "a/b", "", "a+b"] {
        let mut c = client(&b, V5, "c", Some(name)).await;
        assert_eq!(
            c.subscribe_many(
                &["users/+/#", "users/#", "users/a/b/#", "users//#"],
                QoS::AtLeastOnce
            )
            .await,
            [REFUSED_5, REFUSED_5, REFUSED_5, REFUSED_5],
            "user name {name:?}"
        );
        assert_eq!(
            publish_qos1(&mut c, "users/a/b/x", b"", false).await.reason,
            REFUSED_5,
            "user name {name:?}"
        );
        c.disconnect().await;
    }
}

#[tokio::test]
async fn client_id_starting_with_dollar_cannot_reach_dollar_topics_through_a_pattern() {
    let b = start("pattern read %c/#\n");
    let mut sys = client(&b, V5, "$SYS", None).await;
    assert_eq!(
        sys.subscribe_many(&["$SYS/#"], QoS::AtLeastOnce).await,
        [REFUSED_5]
    );
    let mut plain = client(&b, V5, "plain", None).await;
    assert_eq!(
        plain.subscribe_many(&["plain/#"], QoS::AtLeastOnce).await,
        [OK]
    );
}

#[tokio::test]
async fn deny_takes_precedence_over_every_grant() {
    let b = start(
        "topic readwrite #\ntopic deny vault/#\ntopic readwrite vault/#\n\
         pattern deny home/%c/locked\npattern readwrite home/%c/#\n",
    );
    let mut c = client(&b, V5, "me", None).await;
    for (topic, allowed) in [
        ("vault/gold", false),
        ("home/me/door", true),
        ("home/me/locked", false),
        ("home/you/locked", true), // granted by `#`; the deny is for `me`'s own topic
    ] {
        let expected = if allowed {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            REFUSED_5
        };
        assert_eq!(
            publish_qos1(&mut c, topic, b"", false).await.reason,
            expected,
            "{topic}"
        );
    }
    assert_eq!(
        c.subscribe_many(
            &["vault/x", "home/me/+", "home/me/locked", "public"],
            QoS::AtLeastOnce
        )
        .await,
        [REFUSED_5, OK, REFUSED_5, OK]
    );
}

#[tokio::test]
async fn sys_topics_are_readable_only_where_an_entry_names_them() {
    let b = start(
        "topic readwrite #\n\
         user admin\ntopic read $SYS/#\n\
         user monitor\ntopic read $SYS/broker/clients/+\n",
    );
    let mut anon = client(&b, V5, "anon", None).await;
    // `#` does not match `$SYS` topics, so it does not grant them.
    assert_eq!(
        anon.subscribe_many(
            &["#", "$SYS/#", "$SYS/broker/uptime", "+/broker/#"],
            QoS::AtLeastOnce
        )
        .await,
        [OK, REFUSED_5, REFUSED_5, OK]
    );
    let mut admin = client(&b, V5, "admin", Some("admin")).await;
    assert_eq!(
        admin
            .subscribe_many(&["$SYS/#", "$SYS/broker/+", "#"], QoS::AtLeastOnce)
            .await,
        [OK, OK, REFUSED_5]
    );
    let mut monitor = client(&b, V311, "monitor", Some("monitor")).await;
    assert_eq!(
        monitor
            .subscribe_many(
                &[
                    "$SYS/broker/clients/connected",
                    "$SYS/broker/clients/+",
                    "$SYS/#"
                ],
                QoS::AtLeastOnce
            )
            .await,
        [OK, OK, REFUSED_3]
    );
    // Publishing to $SYS stays refused, whatever the ACL grants.
    let b = start("topic readwrite $SYS/#\n");
    let mut c = client(&b, V5, "c", None).await;
    assert_eq!(
        publish_qos1(&mut c, "$SYS/broker/x", b"", false)
            .await
            .reason,
        REFUSED_5
    );
}

#[tokio::test]
async fn other_dollar_topics_need_an_entry_that_names_them() {
    let b = start("topic readwrite #\ntopic readwrite $app/#\n");
    let mut c = client(&b, V5, "c", None).await;
    assert_eq!(
        publish_qos1(&mut c, "$other/x", b"", false).await.reason,
        REFUSED_5
    );
    assert_eq!(c.subscribe("$app/+", QoS::AtLeastOnce).await, [OK]);
    publish_qos1(&mut c, "$app/x", b"yes", false).await;
    let p = c.recv_publish().await;
    assert_eq!((&*p.topic, &*p.payload), ("$app/x", &b"yes"[..]));
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[tokio::test]
async fn mosquitto_conf_acl_file_is_relative_to_the_configuration_file() {
    let acl = TempFile::new("acl", "topic read allowed/#\n");
    let name = acl
        .path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    // The configuration is written to the same (temporary) directory as the ACL file.
    let tern = Tern::start_config(&format!("acl_file {name}\n"), "conf");
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    assert_eq!(
        c.subscribe_many(&["allowed/x", "other/x"], QoS::AtLeastOnce)
            .await,
        [OK, REFUSED_3]
    );
}

/// Loads `config` (written as `config_name`) next to an ACL file called `acl.txt` holding
/// `acl`; returns the error or the warnings, with the directory removed from them.
fn load(config_name: &str, config: &str, acl: Option<&str>) -> Result<Vec<String>, String> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tern-acl-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create dir");
    if let Some(acl) = acl {
        std::fs::write(dir.join("acl.txt"), acl).expect("write ACL");
    }
    let path = dir.join(config_name);
    std::fs::write(&path, config).expect("write config");
    let relative = |s: String| s.replace(&format!("{}/", dir.display()), "");
    let result = tern::config::load(&path);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(c) => {
            assert!(c.broker.acl.is_some());
            assert_eq!(
                c.acl_file.as_deref(),
                Some(dir.join("acl.txt").as_path()),
                "the path is resolved against the configuration's directory"
            );
            Ok(c.warnings.into_iter().map(relative).collect())
        }
        Err(e) => Err(relative(e.to_string())),
    }
}

#[test]
fn acl_file_is_read_from_both_configuration_formats() {
    for (name, line) in [
        ("tern.toml", "acl_file = \"acl.txt\"\n"),
        ("mosquitto.conf", "acl_file acl.txt\n"),
    ] {
        assert_eq!(
            load(name, line, Some("topic read a\n")),
            Ok(Vec::new()),
            "{name}"
        );
    }
}

#[test]
fn acl_file_errors_name_the_acl_file_and_its_line() {
    let bad = "# comment\ntopic read ok\nuser alice\ntopic reed a/b\n";
    for (name, line) in [
        ("tern.toml", "acl_file = \"acl.txt\"\n"),
        ("mosquitto.conf", "allow_anonymous true\nacl_file acl.txt\n"),
    ] {
        assert_eq!(
            load(name, line, Some(bad)),
            Err(
                "acl.txt:4: `topic`: expected read, write, readwrite or deny before the topic \
                 filter, got `reed` (a filter containing spaces needs the access word)"
                    .to_owned()
            ),
            "{name}"
        );
    }
    let conf = "acl_file acl.txt\n";
    for (acl, error) in [
        (
            "topic read a/#/b\n",
            "acl.txt:1: `topic`: invalid topic filter `a/#/b`: `+` and `#` must fill a whole \
             level, and `#` must be the last level",
        ),
        (
            "\n\nauth alice\n",
            "acl.txt:3: `auth`: unknown ACL line: expected `topic`, `pattern` or `user`",
        ),
        ("user\n", "acl.txt:1: `user`: missing user name"),
        ("pattern\n", "acl.txt:1: `pattern`: missing topic filter"),
        (
            "# nothing\n\nuser alice\n",
            "acl.txt: the ACL file has no `topic` or `pattern` line: it would refuse everything \
             to every client, which is refused as a likely mistake",
        ),
        (
            "",
            "acl.txt: the ACL file has no `topic` or `pattern` line: it would refuse everything \
             to every client, which is refused as a likely mistake",
        ),
    ] {
        assert_eq!(
            load("mosquitto.conf", conf, Some(acl)),
            Err(error.to_owned())
        );
    }
}

#[test]
fn acl_file_that_cannot_be_read_or_is_given_twice_is_an_error() {
    let missing = load("mosquitto.conf", "\nacl_file acl.txt\n", None).expect_err("an error");
    assert!(
        missing.starts_with("mosquitto.conf:2: `acl_file`: cannot read `")
            && missing.contains("acl.txt`: "),
        "{missing}"
    );
    let missing = load("tern.toml", "acl_file = \"acl.txt\"\n", None).expect_err("an error");
    assert!(
        missing.starts_with("tern.toml:1: `acl_file`: cannot read `"),
        "{missing}"
    );
    assert_eq!(
        load(
            "mosquitto.conf",
            "acl_file acl.txt\nacl_file acl.txt\n",
            Some("topic a\n")
        ),
        Err(
            "mosquitto.conf:2: `acl_file`: already set at mosquitto.conf:1; there can be only \
             one ACL file"
                .to_owned()
        )
    );
}

#[test]
fn acl_file_warnings_name_the_acl_file_and_its_line() {
    assert_eq!(
        load(
            "tern.toml",
            "acl_file = \"acl.txt\"\n",
            Some("topic read a\ntopic deny\npattern read all/#\n")
        ),
        Ok(vec![
            "acl.txt:2: `topic`: grants read and write access to the topic `deny` itself: with \
             one word only, the word is the topic"
                .to_owned(),
            "acl.txt:3: `pattern`: the pattern `all/#` has neither %c nor %u: it applies to \
             every client alike"
                .to_owned(),
        ])
    );
}

#[test]
fn absolute_acl_file_path_is_used_as_is() {
    let acl = TempFile::new("acl", "topic a\n");
    let dir = std::env::temp_dir().join(format!("tern-acl-abs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create dir");
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("acl_file {}\n", acl.path.display())).expect("write config");
    let config = tern::config::load(&conf);
    let _ = std::fs::remove_dir_all(&dir);
    let config = config.expect("valid configuration");
    assert_eq!(config.acl_file.as_deref(), Some(Path::new(&acl.path)));
}
