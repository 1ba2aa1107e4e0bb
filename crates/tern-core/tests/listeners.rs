//! Per-listener settings in the core: protocol versions, mount points, each listener's own
//! access rules (also for sessions recovered from the store), and who may take over a session
//! whose owner was authenticated.

#![allow(clippy::unwrap_used, missing_docs)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::*;
use tern_codec::{
    ByteString, Packet, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, Unsubscribe,
};
use tern_core::{
    Acl, AuthDecision, Broker, BrokerConfig, ConnectionInfo, Grant, ListenerPolicy, MemoryStore,
    ProtocolVersions, Store,
};

fn listener(policy: ListenerPolicy) -> ConnectionInfo {
    ConnectionInfo {
        policy: policy.into(),
        ..ConnectionInfo::default()
    }
}

fn mounted(mount_point: &str) -> ConnectionInfo {
    listener(ListenerPolicy {
        mount_point: Some(ByteString::from(mount_point)),
        ..ListenerPolicy::default()
    })
}

/// Connects through the listener `info` and returns the connection and its CONNACK.
fn connect_via(
    broker: &Broker,
    info: &ConnectionInfo,
    connect: tern_codec::Connect,
    now: Instant,
) -> (Sim, tern_codec::ConnAck) {
    let mut sim = Sim::open_with(broker, info, now);
    sim.decoder = tern_codec::Decoder::with_version(connect.protocol, u32::MAX);
    sim.send(Packet::Connect(Box::new(connect)), now);
    if let Some(request) = sim.conn.poll_auth_request() {
        // The listener checks credentials: this test's source says yes to everyone.
        let grant = Grant {
            username: request.username.clone(),
            ..Grant::default()
        };
        sim.conn
            .handle_auth_decision(AuthDecision::Allow(grant), now);
    }
    let mut out = sim.drain(now);
    assert!(!out.is_empty(), "no CONNACK");
    match out.remove(0) {
        Packet::ConnAck(ack) => {
            sim.pending = out;
            (sim, ack)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn connected_via(
    broker: &Broker,
    info: &ConnectionInfo,
    connect: tern_codec::Connect,
    now: Instant,
) -> Sim {
    let (sim, ack) = connect_via(broker, info, connect, now);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    sim
}

fn topics(publishes: &[Publish]) -> Vec<(String, String)> {
    publishes
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect()
}

fn pair(topic: &str, payload: &str) -> (String, String) {
    (topic.to_owned(), payload.to_owned())
}

fn acl(text: &str) -> Option<Arc<Acl>> {
    Some(Arc::new(Acl::parse(text).expect("valid ACL").0))
}

#[test]
fn a_version_the_listener_does_not_accept_gets_unsupported_protocol_version() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let only_v5 = listener(ListenerPolicy {
        protocol_versions: ProtocolVersions::NONE.with(ProtocolVersion::V5),
        ..ListenerPolicy::default()
    });
    let (mut sim, ack) = connect_via(&broker, &only_v5, connect5("a", true, None), t0);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    sim.subscribe("x", QoS::AtMostOnce, t0);
    for version in [ProtocolVersion::V311, ProtocolVersion::V31] {
        let mut c = connect5("b", true, None);
        c.protocol = version;
        c.properties = Default::default();
        let (sim, ack) = connect_via(&broker, &only_v5, c, t0);
        // Decoded from 3.x return code 1.
        assert_eq!(ack.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        assert!(sim.conn.is_closing());
    }
    let only_311 = listener(ListenerPolicy {
        protocol_versions: ProtocolVersions::NONE.with(ProtocolVersion::V311),
        ..ListenerPolicy::default()
    });
    let (sim, ack) = connect_via(&broker, &only_311, connect5("c", true, None), t0);
    assert_eq!(ack.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert!(sim.conn.is_closing());
    assert_eq!(broker.session_count(), 1, "refused clients get no session");
}

#[test]
fn a_mount_point_prefixes_what_comes_in_and_strips_what_goes_out() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut outside = watcher(&broker, "#", t0);
    let mut inside = connected_via(&broker, &mounted("t/"), connect5("in", true, None), t0);
    inside.subscribe("#", QoS::AtLeastOnce, t0);
    inside.subscribe("a/+", QoS::AtLeastOnce, t0);

    inside.send(publish("a/b", b"from inside", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(
        topics(&outside.publishes(t0)),
        [pair("t/a/b", "from inside")]
    );
    assert_eq!(topics(&inside.publishes(t0)), [pair("a/b", "from inside")]);

    let mut other = Sim::connected(&broker, connect5("other", true, None), t0);
    other.send(
        publish("t/x", b"in the mount", QoS::AtMostOnce, 0, None),
        t0,
    );
    other.send(publish("u/x", b"elsewhere", QoS::AtMostOnce, 0, None), t0);
    other.send(
        publish("t", b"the prefix itself", QoS::AtMostOnce, 0, None),
        t0,
    );
    assert_eq!(topics(&inside.publishes(t0)), [pair("x", "in the mount")]);
    assert_eq!(outside.publishes(t0).len(), 3);

    // Unsubscribing uses the client's names too.
    inside.send(
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(9),
            user_properties: Vec::new(),
            filters: vec![ByteString::from("#")],
        }),
        t0,
    );
    match inside.drain(t0).as_slice() {
        [Packet::UnsubAck(a)] => assert_eq!(a.reasons, [ReasonCode::SUCCESS]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    other.send(publish("t/x", b"after", QoS::AtMostOnce, 0, None), t0);
    assert!(inside.publishes(t0).is_empty());
}

#[test]
fn shared_subscriptions_retained_messages_and_wills_go_through_the_mount_point() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut outside = watcher(&broker, "#", t0);
    let mut publisher = Sim::connected(&broker, connect5("pub", true, None), t0);
    let mut retained = match publish("t/r", b"kept", QoS::AtMostOnce, 0, None) {
        Packet::Publish(p) => p,
        _ => unreachable!(),
    };
    retained.retain = true;
    publisher.send(Packet::Publish(retained), t0);
    let _ = outside.publishes(t0);

    let mut member = connected_via(&broker, &mounted("t/"), connect5("m", true, None), t0);
    member.subscribe("$share/g/s/#", QoS::AtMostOnce, t0);
    member.subscribe("r", QoS::AtMostOnce, t0);
    let got = topics(&member.publishes(t0));
    assert_eq!(got, [pair("r", "kept")]);
    publisher.send(publish("t/s/1", b"shared", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(topics(&member.publishes(t0)), [pair("s/1", "shared")]);
    // The group's filter is under the mount point: an outside member of `$share/g/s/#` is in
    // another group's filter.
    publisher.send(publish("s/1", b"not mounted", QoS::AtMostOnce, 0, None), t0);
    assert!(member.publishes(t0).is_empty());

    let mut c = connect5("w", true, None);
    c.will = Some(will("gone", b"bye", None));
    let w = connected_via(&broker, &mounted("t/"), c, t0);
    let _ = outside.publishes(t0);
    w.lose(t0);
    assert_eq!(topics(&outside.publishes(t0)), [pair("t/gone", "bye")]);
}

#[test]
fn topic_aliases_use_the_names_the_client_sees() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut outside = watcher(&broker, "#", t0);
    let mut c = connect5("alias", true, None);
    c.properties.topic_alias_maximum = Some(5);
    let mut inside = connected_via(&broker, &mounted("t/"), c, t0);
    inside.subscribe("a", QoS::AtMostOnce, t0);
    let aliased = |topic: &str, payload: &[u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteString::from(topic),
            packet_id: None,
            properties: PublishProperties {
                topic_alias: Some(1),
                ..PublishProperties::default()
            },
            payload: Bytes::copy_from_slice(payload),
        })
    };
    inside.send(aliased("a", b"1"), t0);
    inside.send(aliased("", b"2"), t0);
    assert_eq!(
        topics(&outside.publishes(t0)),
        [pair("t/a", "1"), pair("t/a", "2")]
    );
    let out = inside.publishes(t0);
    // The first delivery names the topic as the client knows it, with a new alias; the second
    // uses the alias alone.
    assert_eq!(out[0].topic, "a");
    assert_eq!(out[0].properties.topic_alias, Some(1));
    assert_eq!(out[1].topic, "");
    assert_eq!(out[1].properties.topic_alias, Some(1));
}

#[test]
fn a_filter_glued_to_a_mount_point_without_slash_is_invalid() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut inside = connected_via(&broker, &mounted("t"), connect5("glued", true, None), t0);
    inside.send(
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            properties: SubscribeProperties::default(),
            filters: ["#", "+/x", "/x"]
                .iter()
                .map(|f| {
                    (
                        ByteString::from(*f),
                        SubscriptionOptions::with_qos(QoS::AtMostOnce),
                    )
                })
                .collect(),
        }),
        t0,
    );
    match inside.drain(t0).as_slice() {
        [Packet::SubAck(a)] => assert_eq!(
            a.reasons,
            [
                ReasonCode::TOPIC_FILTER_INVALID,
                ReasonCode::TOPIC_FILTER_INVALID,
                ReasonCode::SUCCESS
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn resuming_through_another_mount_point_drops_what_the_new_one_hides() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let roamer = |clean| {
        let mut c = connect5("roamer", clean, Some(600));
        c.properties.receive_maximum = Some(1);
        c
    };
    let mut session = connected_via(&broker, &mounted("a/"), roamer(true), t0);
    session.subscribe("#", QoS::AtLeastOnce, t0);
    let mut publisher = Sim::connected(&broker, connect5("pub", true, None), t0);
    publisher.send(
        publish("a/0", b"unacknowledged", QoS::AtLeastOnce, 1, None),
        t0,
    );
    let _ = publisher.drain(t0);
    assert_eq!(
        topics(&session.publishes(t0)),
        [pair("0", "unacknowledged")]
    );
    session.disconnect(t0);
    publisher.send(publish("a/1", b"queued", QoS::AtLeastOnce, 2, None), t0);
    let _ = publisher.drain(t0);

    // Through listener `b/`: neither the unacknowledged `a/0` nor the queued `a/1` is sent
    // again, nor do they hold the client's window of one; the subscription `a/#` stays but
    // delivers nothing there.
    let (mut b, ack) = connect_via(&broker, &mounted("b/"), roamer(false), t0);
    assert!(ack.session_present);
    assert!(b.publishes(t0).is_empty());
    b.subscribe("x", QoS::AtLeastOnce, t0);
    publisher.send(publish("a/2", b"still a", QoS::AtLeastOnce, 3, None), t0);
    publisher.send(publish("b/x", b"for b", QoS::AtLeastOnce, 4, None), t0);
    let _ = publisher.drain(t0);
    let got = b.publishes(t0);
    assert_eq!(topics(&got), [pair("x", "for b")]);
    assert!(!got[0].dup);
    b.disconnect(t0);

    // Back through `a/`: nothing from before comes back; the subscription works again.
    let (mut a, ack) = connect_via(&broker, &mounted("a/"), roamer(false), t0);
    assert!(ack.session_present);
    assert!(a.publishes(t0).is_empty());
    publisher.send(publish("a/3", b"again", QoS::AtLeastOnce, 5, None), t0);
    let _ = publisher.drain(t0);
    assert_eq!(topics(&a.publishes(t0)), [pair("3", "again")]);
}

#[test]
fn each_listener_applies_its_own_rules_and_a_reload_replaces_them() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig {
        acl: acl("topic readwrite #\n"),
        ..BrokerConfig::default()
    });
    let strict = broker.listener_acl(acl("topic read public/#\n"));
    let via_strict = listener(ListenerPolicy {
        acl: Some(strict.clone()),
        ..ListenerPolicy::default()
    });
    let mut reader = connected_via(&broker, &via_strict, connect5("r", true, Some(600)), t0);
    reader.subscribe("public/#", QoS::AtLeastOnce, t0);
    // Subscribing is checked against the listener's rules, not the broker's.
    reader.send(
        Packet::Subscribe(Subscribe {
            packet_id: pid(5),
            properties: SubscribeProperties::default(),
            filters: vec![(
                ByteString::from("private/#"),
                SubscriptionOptions::with_qos(QoS::AtMostOnce),
            )],
        }),
        t0,
    );
    match reader.drain(t0).as_slice() {
        [Packet::SubAck(a)] => assert_eq!(a.reasons, [ReasonCode::NOT_AUTHORIZED]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    reader.send(publish("public/x", b"no", QoS::AtLeastOnce, 1, None), t0);
    match reader.drain(t0).as_slice() {
        [Packet::PubAck(a)] => assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let mut writer = Sim::connected(&broker, connect5("w", true, None), t0);
    writer.send(publish("public/1", b"one", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(topics(&reader.publishes(t0)), [pair("public/1", "one")]);

    // The listener's rules change (reload): deliveries to its session follow, also while it
    // is offline.
    reader.disconnect(t0);
    strict.set(acl("topic read nothing\n"));
    writer.send(publish("public/2", b"two", QoS::AtLeastOnce, 2, None), t0);
    let _ = writer.drain(t0);
    let mut back = connected_via(&broker, &via_strict, connect5("r", false, Some(600)), t0);
    assert!(back.publishes(t0).is_empty());
    strict.set(acl("topic read public/#\n"));
    writer.send(publish("public/3", b"three", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(topics(&back.publishes(t0)), [pair("public/3", "three")]);
}

#[test]
fn a_recovered_session_needs_every_listeners_rules_until_its_owner_is_back() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let dyn_store: Arc<dyn Store> = store.clone();
    let broker = Broker::with_store(BrokerConfig::default(), Some(dyn_store));
    let mut s = Sim::connected(&broker, connect5("kept", true, Some(3600)), t0);
    s.subscribe("#", QoS::AtLeastOnce, t0);
    s.disconnect(t0);

    let fresh: Arc<dyn Store> = Arc::new(MemoryStore::auto());
    let restarted = Broker::with_store(BrokerConfig::default(), Some(fresh));
    restarted.restore(store.snapshot(), t0);
    let open = restarted.listener_acl(None);
    let strict = restarted.listener_acl(acl("topic read ok/#\n"));
    let mut writer = Sim::connected(&restarted, connect5("w", true, None), t0);
    writer.send(
        publish("ok/1", b"allowed by both", QoS::AtLeastOnce, 1, None),
        t0,
    );
    writer.send(
        publish("no/1", b"refused by one", QoS::AtLeastOnce, 2, None),
        t0,
    );
    let _ = writer.drain(t0);
    let via_open = listener(ListenerPolicy {
        acl: Some(open),
        ..ListenerPolicy::default()
    });
    let mut back = connected_via(
        &restarted,
        &via_open,
        connect5("kept", false, Some(3600)),
        t0,
    );
    assert_eq!(
        topics(&back.publishes(t0)),
        [pair("ok/1", "allowed by both")]
    );
    // Back through the open listener, its rules alone apply.
    writer.send(
        publish("no/2", b"now allowed", QoS::AtLeastOnce, 3, None),
        t0,
    );
    let _ = writer.drain(t0);
    assert_eq!(topics(&back.publishes(t0)), [pair("no/2", "now allowed")]);
    drop(strict);
}

fn login(id: &str, user: Option<&str>) -> tern_codec::Connect {
    let mut c = connect5(id, true, None);
    c.username = user.map(ByteString::from);
    c.password = user.map(|_| Bytes::from_static(b"pw"));
    c
}

#[test]
fn an_authenticated_owners_session_goes_only_to_the_same_user_authenticated() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let checking = listener(ListenerPolicy {
        allow_anonymous: false,
        authenticate: true,
        ..ListenerPolicy::default()
    });
    let open = listener(ListenerPolicy::default());
    let mut owner = connected_via(&broker, &checking, login("dev", Some("alice")), t0);

    // A listener without authentication: no one, whatever user name it claims.
    for user in [None, Some("alice"), Some("bob")] {
        let (sim, ack) = connect_via(&broker, &open, login("dev", user), t0);
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{user:?}");
        assert!(sim.conn.is_closing());
    }
    // The owner was not kicked.
    owner.send(Packet::PingReq, t0);
    assert!(matches!(owner.drain(t0).as_slice(), [Packet::PingResp]));
    // Another authenticated user neither.
    let (_, ack) = connect_via(&broker, &checking, login("dev", Some("bob")), t0);
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    // The same user, authenticated again, takes it over.
    let (_, ack) = connect_via(&broker, &checking, login("dev", Some("alice")), t0);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    match owner.drain(t0).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }

    // A session of an unauthenticated owner can still be taken over from an open listener.
    let _first = connected_via(&broker, &open, login("free", Some("carol")), t0);
    let (_, ack) = connect_via(&broker, &open, login("free", None), t0);
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}

#[test]
fn after_a_restart_a_users_session_stays_the_users_when_credentials_are_checked() {
    let t0 = Instant::now();
    let open = listener(ListenerPolicy::default());
    for checked in [true, false] {
        let store = Arc::new(MemoryStore::auto());
        let dyn_store: Arc<dyn Store> = store.clone();
        let broker = Broker::with_store(BrokerConfig::default(), Some(dyn_store));
        let mut c = login("dev", Some("alice"));
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(3600);
        let owner = connected_via(&broker, &open, c, t0);
        owner.disconnect(t0);

        let fresh: Arc<dyn Store> = Arc::new(MemoryStore::auto());
        let config = BrokerConfig {
            recovered_owners_authenticated: checked,
            ..BrokerConfig::default()
        };
        let restarted = Broker::with_store(config, Some(fresh));
        restarted.restore(store.snapshot(), t0);
        let (_, ack) = connect_via(&restarted, &open, login("dev", None), t0);
        let expected = if checked {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        assert_eq!(ack.reason, expected, "credentials checked: {checked}");
    }
}

#[test]
fn dollar_topics_are_mounted_too_as_in_mosquitto() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut outside = watcher(&broker, "t/#", t0);
    let mut inside = connected_via(&broker, &mounted("t/"), connect5("in", true, None), t0);
    inside.subscribe("$SYS/#", QoS::AtMostOnce, t0);
    let _ = broker.publish_internal(
        ByteString::from("$SYS/broker/uptime"),
        Bytes::from_static(b"1 seconds"),
        QoS::AtMostOnce,
        false,
        t0,
    );
    assert!(
        inside.publishes(t0).is_empty(),
        "the broker's $SYS is not under t/"
    );
    // Publishing to `$SYS/x` through the mount point is an ordinary `t/$SYS/x`.
    inside.send(publish("$SYS/x", b"mine", QoS::AtLeastOnce, 1, None), t0);
    let out = inside.drain(t0);
    assert!(
        out.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.reason == ReasonCode::SUCCESS)),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|p| matches!(p, Packet::Publish(p) if p.topic == "$SYS/x")),
        "{out:?}"
    );
    assert_eq!(topics(&outside.publishes(t0)), [pair("t/$SYS/x", "mine")]);
}

#[test]
fn client_id_options_can_differ_per_listener() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let prefixed = listener(ListenerPolicy {
        auto_id_prefix: Some("edge-".to_owned()),
        ..ListenerPolicy::default()
    });
    let strict = listener(ListenerPolicy {
        allow_zero_length_clientid: Some(false),
        ..ListenerPolicy::default()
    });
    let (_a, ack) = connect_via(&broker, &prefixed, connect5("", true, None), t0);
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(id.starts_with("edge-"), "{id}");
    let (_b, ack) = connect_via(&broker, &strict, connect5("", true, None), t0);
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    let (_c, ack) = connect_via(
        &broker,
        &listener(ListenerPolicy::default()),
        connect5("", true, None),
        t0,
    );
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    assert!(id.starts_with("auto-"), "{id}");
}
