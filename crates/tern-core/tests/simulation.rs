//! Deterministic simulations of the broker core with a fake clock.
//!
//! These tests drive `tern_core::{Broker, Connection}` through their public API only, with
//! hand-chosen `Instant`s instead of real time, so that behaviour tied to long intervals (session
//! expiry of an hour, delayed wills, keep-alive boundaries, message expiry arithmetic) is checked
//! exactly and instantly. Packets go in as `tern_codec::Packet`s and come out as the bytes
//! `Connection::poll_transmit` appends, decoded with the project codec.

#![allow(clippy::unwrap_used, missing_docs)] // test code: failing loudly is the point

use std::sync::Arc;
use std::time::Instant;

use tern_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};
use tern_core::{Broker, BrokerConfig};

mod common;
use common::*;

// ---------------------------------------------------------------------------------------------
// Session expiry (MQTT-4.1.0-2, MQTT-3.1.2-23) and the broker's timers

#[test]
fn mqtt5_4_1_0_2_session_of_3600_s_is_discarded_exactly_at_expiry() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut c = Sim::connected(&broker, connect5("sleeper", true, Some(3600)), t0);
    c.subscribe("news", QoS::AtLeastOnce, t0);
    c.disconnect(t0);

    assert_eq!(broker.poll_timeout(), Some(t0 + secs(3600)));
    broker.handle_timeout(t0 + secs(3600) - ms(1));
    assert_eq!(
        broker.session_count(),
        1,
        "kept until the interval has passed"
    );
    assert_eq!(broker.subscription_count(), 1);
    broker.handle_timeout(t0 + secs(3600));
    assert_eq!(broker.session_count(), 0, "discarded once it has passed");
    assert_eq!(
        broker.subscription_count(),
        0,
        "its subscriptions go with it"
    );
    assert_eq!(broker.poll_timeout(), None);

    let (_c, ack) = Sim::connect(
        &broker,
        connect5("sleeper", false, Some(3600)),
        t0 + secs(3601),
    );
    assert!(!ack.session_present);
}

#[test]
fn mqtt5_3_1_2_23_session_state_is_kept_and_filled_while_disconnected() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut c = Sim::connected(&broker, connect5("sleeper", true, Some(3600)), t0);
    c.subscribe("news", QoS::AtLeastOnce, t0);
    c.disconnect(t0);

    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0 + secs(10));
    p.send(
        publish("news", b"late", QoS::AtLeastOnce, 1, None),
        t0 + secs(10),
    );
    match p.drain(t0 + secs(10)).as_slice() {
        [Packet::PubAck(a)] => {
            assert_eq!(a.reason, ReasonCode::SUCCESS, "the offline session matched")
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
    broker.handle_timeout(t0 + secs(3599));

    let now = t0 + secs(3599);
    let (mut c, ack) = Sim::connect(&broker, connect5("sleeper", false, Some(3600)), now);
    assert!(ack.session_present);
    let got = c.publishes(now);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"late");
    assert!(!got[0].dup, "queued, never sent before");
}

#[test]
fn mqtt5_4_1_0_2_reconnecting_before_expiry_leaves_a_stale_timer_harmless() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let c = Sim::connected(&broker, connect5("c", true, Some(60)), t0);
    c.disconnect(t0);
    let (c, ack) = Sim::connect(&broker, connect5("c", false, Some(60)), t0 + secs(30));
    assert!(ack.session_present);
    // The old deadline comes due while the client is connected: nothing happens.
    broker.handle_timeout(t0 + secs(60));
    assert_eq!(broker.session_count(), 1);
    // The new disconnection starts a new interval.
    c.disconnect(t0 + secs(40));
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(100)));
    broker.handle_timeout(t0 + secs(99));
    assert_eq!(broker.session_count(), 1);
    broker.handle_timeout(t0 + secs(100));
    assert_eq!(broker.session_count(), 0);
}

#[test]
fn mqtt5_s3_1_2_11_2_session_expiry_0xffffffff_never_expires() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let c = Sim::connected(&broker, connect5("forever", true, Some(u32::MAX)), t0);
    c.disconnect(t0);
    assert_eq!(broker.poll_timeout(), None, "no deadline at all");
    broker.handle_timeout(t0 + secs(10 * 365 * 86_400));
    assert_eq!(broker.session_count(), 1);
}

#[test]
fn persistent_client_expiration_caps_a_session_that_never_expires() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig {
        persistent_client_expiration: Some(secs(3600)),
        ..BrokerConfig::default()
    });
    let c = Sim::connected(&broker, connect5("forever", true, Some(u32::MAX)), t0);
    c.disconnect(t0);
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(3600)));
    broker.handle_timeout(t0 + secs(3599));
    assert_eq!(broker.session_count(), 1);
    broker.handle_timeout(t0 + secs(3600));
    assert_eq!(broker.session_count(), 0);
}

#[test]
fn persistent_client_expiration_caps_a_longer_v5_expiry_but_not_a_shorter_one() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig {
        persistent_client_expiration: Some(secs(3600)),
        ..BrokerConfig::default()
    });
    Sim::connected(&broker, connect5("long", true, Some(7200)), t0).disconnect(t0);
    Sim::connected(&broker, connect5("short", true, Some(60)), t0).disconnect(t0);
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(60)));
    broker.handle_timeout(t0 + secs(60));
    assert_eq!(broker.session_count(), 1, "the 60 s session ends at 60 s");
    broker.handle_timeout(t0 + secs(3599));
    assert_eq!(broker.session_count(), 1);
    broker.handle_timeout(t0 + secs(3600));
    assert_eq!(
        broker.session_count(),
        0,
        "the 7200 s session is capped at 3600 s"
    );
}

#[test]
fn persistent_client_expiration_caps_mqtt311_persistent_sessions() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig {
        persistent_client_expiration: Some(secs(3600)),
        ..BrokerConfig::default()
    });
    let mut connect = connect5("old", false, None);
    connect.protocol = ProtocolVersion::V311;
    let c = Sim::connected(&broker, connect.clone(), t0);
    c.lose(t0);
    broker.handle_timeout(t0 + secs(3599));
    let (c, ack) = Sim::connect(&broker, connect.clone(), t0 + secs(3599));
    assert!(ack.session_present, "kept within the cap");
    c.lose(t0 + secs(3599));
    broker.handle_timeout(t0 + secs(3599 + 3599));
    assert_eq!(broker.session_count(), 1);
    broker.handle_timeout(t0 + secs(3599 + 3600));
    assert_eq!(broker.session_count(), 0);
    let (_c, ack) = Sim::connect(&broker, connect, t0 + secs(7200));
    assert!(!ack.session_present);
}

#[test]
fn broker_poll_timeout_reports_the_earliest_deadline_and_wakes_the_timer_task() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let timer = Arc::new(Counter::default());
    broker.set_timer_waker(timer.clone());
    assert_eq!(broker.poll_timeout(), None);

    Sim::connected(&broker, connect5("late", true, Some(500)), t0).disconnect(t0);
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(500)));
    assert_eq!(timer.count(), 1, "first deadline wakes the timer task");

    Sim::connected(&broker, connect5("later", true, Some(900)), t0).disconnect(t0);
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(500)));
    assert_eq!(timer.count(), 1, "a later deadline needs no wake-up");

    Sim::connected(&broker, connect5("soon", true, Some(100)), t0).disconnect(t0);
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(100)));
    assert_eq!(timer.count(), 2, "an earlier deadline wakes the timer task");

    broker.handle_timeout(t0 + secs(99));
    assert_eq!(broker.session_count(), 3, "nothing due yet");
    broker.handle_timeout(t0 + secs(100));
    assert_eq!(broker.session_count(), 2);
    assert_eq!(broker.poll_timeout(), Some(t0 + secs(500)));
    broker.handle_timeout(t0 + secs(1000));
    assert_eq!(
        broker.session_count(),
        0,
        "everything overdue is handled in one call"
    );
    assert_eq!(broker.poll_timeout(), None);
}

// ---------------------------------------------------------------------------------------------
// Wills and their delay (MQTT-3.1.2-8, MQTT-3.1.3-9)

#[test]
fn mqtt5_3_1_2_8_will_delay_longer_than_session_expiry_publishes_at_session_end() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "wills/#", t0);
    let mut connect = connect5("dying", true, Some(3600));
    connect.will = Some(will("wills/dying", b"gone", Some(7200)));
    Sim::connected(&broker, connect, t0).lose(t0);

    assert_eq!(broker.poll_timeout(), Some(t0 + secs(3600)));
    broker.handle_timeout(t0 + secs(3600) - ms(1));
    assert!(
        w.publishes(t0 + secs(3599)).is_empty(),
        "not before the session ends"
    );
    broker.handle_timeout(t0 + secs(3600));
    let got = w.publishes(t0 + secs(3600));
    assert_eq!(got.len(), 1, "published when the session ends");
    assert_eq!(got[0].topic, "wills/dying");
    assert_eq!(&got[0].payload[..], b"gone");
    assert_eq!(
        broker.session_count(),
        1,
        "only the watcher's session is left"
    );
}

#[test]
fn mqtt5_3_1_2_8_will_delay_shorter_than_session_expiry_publishes_at_the_delay() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "wills/#", t0);
    let mut connect = connect5("dying", true, Some(3600));
    connect.will = Some(will("wills/dying", b"gone", Some(60)));
    Sim::connected(&broker, connect, t0).lose(t0);

    assert_eq!(broker.poll_timeout(), Some(t0 + secs(60)));
    broker.handle_timeout(t0 + secs(59));
    assert!(w.publishes(t0 + secs(59)).is_empty());
    broker.handle_timeout(t0 + secs(60));
    let got = w.publishes(t0 + secs(60));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"gone");
    assert_eq!(broker.session_count(), 2, "the session outlives its will");
}

#[test]
fn mqtt5_4_1_0_2_session_still_expires_after_its_delayed_will_was_published() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut connect = connect5("dying", true, Some(3600));
    connect.will = Some(will("wills/dying", b"gone", Some(60)));
    Sim::connected(&broker, connect, t0).lose(t0);
    broker.handle_timeout(t0 + secs(60));
    assert_eq!(broker.session_count(), 1);
    assert_eq!(
        broker.poll_timeout(),
        Some(t0 + secs(3600)),
        "the session's own end is still scheduled"
    );
    broker.handle_timeout(t0 + secs(3600));
    assert_eq!(broker.session_count(), 0);
}

#[test]
fn mqtt5_3_1_3_9_reconnecting_before_the_will_delay_cancels_the_will() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "wills/#", t0);
    let mut connect = connect5("flaky", true, Some(3600));
    connect.will = Some(will("wills/flaky", b"gone", Some(60)));
    Sim::connected(&broker, connect, t0).lose(t0);

    let (_c, ack) = Sim::connect(&broker, connect5("flaky", false, Some(3600)), t0 + secs(59));
    assert!(ack.session_present);
    broker.handle_timeout(t0 + secs(60));
    broker.handle_timeout(t0 + secs(7200));
    assert!(
        w.publishes(t0 + secs(7200)).is_empty(),
        "the will is never sent"
    );
}

#[test]
fn mqtt5_3_1_2_8_will_with_zero_session_expiry_goes_out_at_once_despite_the_delay() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "wills/#", t0);
    let mut connect = connect5("brief", true, None);
    connect.will = Some(will("wills/brief", b"gone", Some(600)));
    Sim::connected(&broker, connect, t0).lose(t0);
    let got = w.publishes(t0);
    assert_eq!(
        got.len(),
        1,
        "the session ends with the connection, so the will is due"
    );
    assert_eq!(broker.session_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Keep alive (MQTT-3.1.2-22, §3.1.2.10) and the CONNECT deadline

#[test]
fn mqtt5_3_1_2_22_keep_alive_closes_at_exactly_one_and_a_half_periods() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut connect = connect5("pinger", true, None);
    connect.keep_alive = 10;
    let mut c = Sim::connected(&broker, connect, t0);
    assert_eq!(c.conn.poll_timeout(), Some(t0 + secs(15)));

    c.conn.handle_timeout(t0 + secs(15) - ms(1));
    assert!(
        c.conn.is_connected(),
        "still open 1 ms before 1.5 x keep-alive"
    );
    assert!(c.drain(t0 + secs(15) - ms(1)).is_empty());

    c.conn.handle_timeout(t0 + secs(15));
    assert!(c.conn.is_closing(), "closed at 1.5 x keep-alive");
    match c.drain(t0 + secs(15)).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
}

#[test]
fn mqtt5_3_1_2_22_any_packet_restarts_the_keep_alive_period() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut connect = connect5("pinger", true, None);
    connect.keep_alive = 10;
    let mut c = Sim::connected(&broker, connect, t0);
    c.send(Packet::PingReq, t0 + secs(14));
    assert_eq!(c.drain(t0 + secs(14)), vec![Packet::PingResp]);
    assert_eq!(c.conn.poll_timeout(), Some(t0 + secs(29)));
    c.conn.handle_timeout(t0 + secs(29) - ms(1));
    assert!(c.conn.is_connected());
    c.conn.handle_timeout(t0 + secs(29));
    assert!(c.conn.is_closing());
}

#[test]
fn mqtt5_3_1_2_22_keep_alive_timeout_publishes_the_will() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = watcher(&broker, "wills/#", t0);
    let mut connect = connect5("silent", true, None);
    connect.keep_alive = 2;
    connect.will = Some(will("wills/silent", b"timed out", None));
    let mut c = Sim::connected(&broker, connect, t0);
    c.conn.handle_timeout(t0 + ms(3000));
    assert!(c.conn.is_closing());
    let got = w.publishes(t0 + ms(3000));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"timed out");
}

#[test]
fn mqtt5_s3_1_2_10_keep_alive_zero_never_times_out() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut c = Sim::connected(&broker, connect5("idle", true, None), t0);
    assert_eq!(c.conn.poll_timeout(), None);
    c.conn.handle_timeout(t0 + secs(86_400 * 30));
    assert!(c.conn.is_connected());
    assert!(c.drain(t0 + secs(86_400 * 30)).is_empty());
}

#[test]
fn mqtt5_3_2_2_21_server_keep_alive_is_enforced_instead_of_the_clients() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig {
        max_keepalive: 20,
        ..BrokerConfig::default()
    });
    let mut connect = connect5("asks-for-more", true, None);
    connect.keep_alive = 600;
    let (mut c, ack) = Sim::connect(&broker, connect, t0);
    assert_eq!(ack.properties.server_keep_alive, Some(20));
    assert_eq!(c.conn.poll_timeout(), Some(t0 + secs(30)));
    c.conn.handle_timeout(t0 + secs(30) - ms(1));
    assert!(c.conn.is_connected());
    c.conn.handle_timeout(t0 + secs(30));
    assert!(c.conn.is_closing());
    match c.drain(t0 + secs(30)).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
}

#[test]
fn mqtt5_3_2_2_22_without_server_keep_alive_the_clients_value_is_used() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut connect = connect5("own-value", true, None);
    connect.keep_alive = 3000;
    let (mut c, ack) = Sim::connect(&broker, connect, t0);
    assert_eq!(ack.properties.server_keep_alive, None);
    c.conn.handle_timeout(t0 + secs(4500) - ms(1));
    assert!(c.conn.is_connected());
    c.conn.handle_timeout(t0 + secs(4500));
    assert!(c.conn.is_closing());
}

#[test]
fn connect_timeout_closes_a_connection_that_sends_nothing() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig {
        connect_timeout: secs(10),
        ..BrokerConfig::default()
    });
    let mut c = Sim::open(&broker, t0);
    assert_eq!(c.conn.poll_timeout(), Some(t0 + secs(10)));
    c.conn.handle_timeout(t0 + secs(10) - ms(1));
    assert!(!c.conn.is_closing());
    c.conn.handle_timeout(t0 + secs(10));
    assert!(c.conn.is_closing());
    assert!(c.drain(t0 + secs(10)).is_empty(), "closed without a word");
}

// ---------------------------------------------------------------------------------------------
// Message expiry (MQTT-3.3.2-5, MQTT-3.3.2-6, §3.3.1.3, MQTT-4.3.3-7)

/// A persistent subscriber on `topic`, disconnected at `t0`, and a message published at `t0`
/// with the given expiry.
fn offline_subscriber_with_message(broker: &Broker, t0: Instant, expiry: u32) {
    let mut s = Sim::connected(broker, connect5("sub", true, Some(u32::MAX)), t0);
    s.subscribe("t", QoS::AtLeastOnce, t0);
    s.disconnect(t0);
    let mut p = Sim::connected(broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::AtLeastOnce, 1, Some(expiry)), t0);
    let _ = p.drain(t0);
}

#[test]
fn mqtt5_3_3_2_6_forwarded_expiry_is_reduced_by_the_time_waited() {
    for (waited, expected) in [
        (ms(0), 10),
        (secs(3), 7),
        (ms(3500), 7), // 6.5 s left: rounded up, never below what is left
        (secs(9), 1),
        (ms(9999), 1),
    ] {
        let t0 = Instant::now();
        let broker = Broker::new(BrokerConfig::default());
        offline_subscriber_with_message(&broker, t0, 10);
        let now = t0 + waited;
        let mut s = Sim::connected(&broker, connect5("sub", false, Some(u32::MAX)), now);
        let got = s.publishes(now);
        assert_eq!(got.len(), 1, "after {waited:?}");
        assert_eq!(
            got[0].properties.message_expiry_interval,
            Some(expected),
            "after {waited:?}"
        );
    }
}

#[test]
fn mqtt5_3_3_2_5_message_expired_while_queued_is_not_delivered() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    offline_subscriber_with_message(&broker, t0, 10);
    let now = t0 + secs(10);
    let mut s = Sim::connected(&broker, connect5("sub", false, Some(u32::MAX)), now);
    assert!(s.publishes(now).is_empty());
}

#[test]
fn mqtt5_3_3_2_6_message_without_expiry_is_forwarded_without_expiry() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut s = Sim::connected(&broker, connect5("sub", true, Some(u32::MAX)), t0);
    s.subscribe("t", QoS::AtLeastOnce, t0);
    s.disconnect(t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::AtLeastOnce, 1, None), t0);
    let now = t0 + secs(86_400 * 365);
    let mut s = Sim::connected(&broker, connect5("sub", false, Some(u32::MAX)), now);
    let got = s.publishes(now);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].properties.message_expiry_interval, None);
}

#[test]
fn mqtt5_s3_3_1_3_retained_message_expiry_counts_down_then_discards_it() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    let mut retained = publish("r", b"kept", QoS::AtMostOnce, 0, Some(100));
    if let Packet::Publish(p) = &mut retained {
        p.retain = true;
    }
    p.send(retained, t0);
    assert_eq!(broker.retained_count(), 1);

    let now = t0 + secs(40);
    let mut s = Sim::connected(&broker, connect5("early", true, None), now);
    s.subscribe("r", QoS::AtMostOnce, now);
    let got = s.publishes(now);
    assert_eq!(got.len(), 1);
    assert!(got[0].retain);
    assert_eq!(got[0].properties.message_expiry_interval, Some(60));

    let now = t0 + secs(100);
    let mut s = Sim::connected(&broker, connect5("late", true, None), now);
    s.subscribe("r", QoS::AtMostOnce, now);
    assert!(
        s.publishes(now).is_empty(),
        "expired retained message is gone"
    );
}

#[test]
fn mqtt5_4_3_3_7_qos2_delivery_sent_before_expiry_is_completed_after_it() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut s = Sim::connected(&broker, connect5("sub", true, Some(u32::MAX)), t0);
    s.subscribe("t", QoS::ExactlyOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::ExactlyOnce, 1, Some(5)), t0);
    let sent = s.publishes(t0);
    assert_eq!(sent.len(), 1);
    let id = sent[0].packet_id.unwrap();

    // The client goes away without answering and comes back long after the expiry.
    s.lose(t0 + secs(1));
    let now = t0 + secs(3600);
    let mut s = Sim::connected(&broker, connect5("sub", false, Some(u32::MAX)), now);
    let again = s.publishes(now);
    assert_eq!(again.len(), 1, "the flow is finished, not abandoned");
    assert!(again[0].dup);
    assert_eq!(again[0].packet_id, Some(id));
    s.send(Packet::PubRec(Ack::new(id)), now);
    assert_eq!(s.drain(now), vec![Packet::PubRel(Ack::new(id))]);
    s.send(Packet::PubComp(Ack::new(id)), now);
    assert!(s.drain(now).is_empty());
}

#[test]
fn mqtt5_4_3_3_13_pubrel_for_an_expired_message_is_still_completed() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::ExactlyOnce, 9, Some(1)), t0);
    assert_eq!(
        p.drain(t0),
        vec![Packet::PubRec(Ack::with_reason(
            pid(9),
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        ))]
    );
    let later = t0 + secs(600);
    p.send(Packet::PubRel(Ack::new(pid(9))), later);
    assert_eq!(p.drain(later), vec![Packet::PubComp(Ack::new(pid(9)))]);
}

// ---------------------------------------------------------------------------------------------
// Packet identifiers and retransmission (MQTT-4.3.2-1, MQTT-4.3.3-1, MQTT-4.4.0-1)

#[test]
fn mqtt5_4_3_2_1_identifier_of_an_unacknowledged_qos1_message_is_never_reused() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut s = Sim::connected(&broker, connect5("sub", true, None), t0);
    s.subscribe("t", QoS::AtLeastOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);

    p.send(publish("t", b"held", QoS::AtLeastOnce, 1, None), t0);
    let _ = p.drain(t0);
    let held = s.publishes(t0);
    let held_id = held[0].packet_id.unwrap();

    // Cycle through more than the whole identifier space with the first one still in flight.
    for i in 0..70_000u32 {
        p.send(
            publish("t", &i.to_be_bytes(), QoS::AtLeastOnce, 1, None),
            t0,
        );
        let _ = p.drain(t0);
        let got = s.publishes(t0);
        assert_eq!(got.len(), 1);
        let id = got[0].packet_id.unwrap();
        assert_ne!(id, held_id, "identifier in use was reused at message {i}");
        s.send(Packet::PubAck(Ack::new(id)), t0);
    }
}

#[test]
fn mqtt5_4_3_3_1_identifier_awaiting_pubcomp_is_never_reused() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut s = Sim::connected(&broker, connect5("sub", true, None), t0);
    s.subscribe("t", QoS::ExactlyOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);

    p.send(publish("t", b"a", QoS::ExactlyOnce, 1, None), t0);
    p.send(publish("t", b"b", QoS::ExactlyOnce, 2, None), t0);
    let _ = p.drain(t0);
    let held = s.publishes(t0);
    assert_eq!(held.len(), 2);
    // One waits for PUBREC, the other for PUBCOMP.
    let waiting_pubrec = held[0].packet_id.unwrap();
    let waiting_pubcomp = held[1].packet_id.unwrap();
    s.send(Packet::PubRec(Ack::new(waiting_pubcomp)), t0);
    assert_eq!(s.drain(t0), vec![Packet::PubRel(Ack::new(waiting_pubcomp))]);

    for i in 0..70_000u32 {
        p.send(
            publish("t", &i.to_be_bytes(), QoS::AtLeastOnce, 3, None),
            t0,
        );
        let _ = p.drain(t0);
        let got = s.publishes(t0);
        assert_eq!(got.len(), 1);
        let id = got[0].packet_id.unwrap();
        assert!(
            id != waiting_pubrec && id != waiting_pubcomp,
            "identifier in use was reused at message {i}"
        );
        s.send(Packet::PubAck(Ack::new(id)), t0);
    }
}

#[test]
fn mqtt5_4_4_0_1_no_retransmission_on_a_timer_within_a_connection() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut s = Sim::connected(&broker, connect5("sub", true, None), t0);
    s.subscribe("t", QoS::ExactlyOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"a", QoS::AtLeastOnce, 1, None), t0);
    p.send(publish("t", b"b", QoS::ExactlyOnce, 2, None), t0);
    let sent = s.publishes(t0);
    assert_eq!(sent.len(), 2);
    for hours in [1, 24, 24 * 30] {
        let now = t0 + secs(3600 * hours);
        s.conn.handle_timeout(now);
        assert!(s.conn.is_connected());
        assert!(s.drain(now).is_empty(), "nothing re-sent after {hours} h");
    }
}

// ---------------------------------------------------------------------------------------------
// Wake-ups

#[test]
fn delivery_into_an_idle_connection_wakes_its_task_once_per_batch() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut s = Sim::connected(&broker, connect5("sub", true, None), t0);
    s.subscribe("t", QoS::AtMostOnce, t0);
    let before = s.waker.count();
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"1", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(s.waker.count(), before + 1, "first delivery wakes the task");
    p.send(publish("t", b"2", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(
        s.waker.count(),
        before + 1,
        "the task drains everything once woken"
    );
    assert_eq!(s.publishes(t0).len(), 2);
    p.send(publish("t", b"3", QoS::AtMostOnce, 0, None), t0);
    assert_eq!(
        s.waker.count(),
        before + 2,
        "an empty queue needs a new wake-up"
    );
}

#[test]
fn mqtt5_3_1_4_3_takeover_wakes_the_old_connection_which_sends_0x8e() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut old = Sim::connected(&broker, connect5("same", true, Some(60)), t0);
    let before = old.waker.count();
    let (_new, ack) = Sim::connect(&broker, connect5("same", false, Some(60)), t0 + secs(1));
    assert!(ack.session_present);
    assert_eq!(old.waker.count(), before + 1);
    match old.drain(t0 + secs(1)).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::SESSION_TAKEN_OVER),
        other => panic!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    assert!(old.conn.is_closing());
}
