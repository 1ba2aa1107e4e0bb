//! Handing the turn over in a large fan-out (`Connection::arm_handoff`): the first subscribers'
//! copies are queued, the rest after the runtime has let their connections run; the publisher's
//! acknowledgement follows the last copy. Simulated: the runtime's part is played by calling
//! `handle_handoff` by hand.

#![allow(clippy::unwrap_used, missing_docs)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;
use tern_codec::{Ack, Packet, QoS, ReasonCode};
use tern_core::{Broker, BrokerConfig, HANDOFF_AFTER_IDLE, MemoryStore, Store};

/// A read after an idle spell since `now` (the publisher's last packet): it arms the handoff.
fn idle(now: Instant) -> Instant {
    now + HANDOFF_AFTER_IDLE
}

/// `n` subscribers of `filter`, each with its own session, connected at `now`.
fn subscribers(broker: &Broker, n: usize, filter: &str, qos: QoS, now: Instant) -> Vec<Sim> {
    (0..n)
        .map(|i| {
            let mut s = Sim::connected(broker, connect5(&format!("sub{i}"), true, None), now);
            s.subscribe(filter, qos, now);
            s
        })
        .collect()
}

/// How many of `subs` have a copy queued (their connection was woken for it).
/// `n` subscribers of `filter` on `broker` and a publisher, in-memory broker if `broker` is None.
fn fan_out(broker: Option<Broker>, n: usize, filter: &str, qos: QoS) -> (Vec<Sim>, Sim, Instant) {
    let now = Instant::now();
    let broker = broker.unwrap_or_else(|| Broker::new(BrokerConfig::default()));
    let subs = subscribers(&broker, n, filter, qos, now);
    let publisher = Sim::connected(&broker, connect5("pub", true, None), now);
    (subs, publisher, now)
}

fn woken(subs: &[Sim], before: &[usize]) -> usize {
    subs.iter()
        .zip(before)
        .filter(|(s, b)| s.waker.count() > **b)
        .count()
}

fn wake_counts(subs: &[Sim]) -> Vec<usize> {
    subs.iter().map(|s| s.waker.count()).collect()
}

/// Nothing was handed over: every subscriber's copy was queued in one step and the QoS 1
/// PUBLISH is acknowledged at once.
fn assert_queued_at_once_and_acknowledged(
    publisher: &mut Sim,
    subs: &[Sim],
    before: &[usize],
    now: Instant,
) {
    assert!(!publisher.conn.wants_handoff());
    assert_eq!(woken(subs, before), subs.len());
    assert!(matches!(
        publisher.drain(now).as_slice(),
        [Packet::PubAck(_)]
    ));
}

#[test]
fn a_fan_out_to_20_is_queued_8_at_a_time_and_each_subscriber_gets_one_copy() {
    let (mut subs, mut publisher, now) = fan_out(None, 20, "t", QoS::AtMostOnce);
    let before = wake_counts(&subs);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"m", QoS::AtMostOnce, 0, None), now);
    assert!(publisher.conn.wants_handoff());
    assert_eq!(woken(&subs, &before), 8);
    publisher.conn.handle_handoff();
    assert!(publisher.conn.wants_handoff());
    assert_eq!(woken(&subs, &before), 16);
    publisher.conn.handle_handoff();
    assert!(!publisher.conn.wants_handoff());
    assert_eq!(woken(&subs, &before), 20);

    for s in &mut subs {
        let got = s.publishes(now);
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].payload[..], b"m");
    }
    assert!(publisher.drain(now).is_empty());
}

#[test]
fn mqtt5_3_3_4_1_puback_of_a_handed_over_publish_comes_after_its_last_copy() {
    // Without a store a QoS 1 message is handed over too: nothing of it is kept.
    let (mut subs, mut publisher, now) = fan_out(None, 12, "t", QoS::AtLeastOnce);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"m", QoS::AtLeastOnce, 5, None), now);
    assert!(publisher.conn.wants_handoff());
    assert!(
        publisher.drain(now).is_empty(),
        "PUBACK before every copy is queued"
    );
    publisher.conn.handle_handoff();
    assert!(!publisher.conn.wants_handoff());
    match publisher.drain(now).as_slice() {
        [Packet::PubAck(a)] => {
            assert_eq!(a.packet_id, pid(5));
            assert_eq!(a.reason, ReasonCode::SUCCESS);
        }
        other => panic!("expected one PUBACK, got {other:?}"),
    }
    for s in &mut subs {
        assert_eq!(s.publishes(now).len(), 1);
    }
}

#[test]
fn mqtt5_3_3_4_1_puback_of_a_publish_that_woke_its_subscriber_follows_the_handoff() {
    let (mut subs, mut publisher, now) = fan_out(None, 1, "t", QoS::AtLeastOnce);
    let before = wake_counts(&subs);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"m", QoS::AtLeastOnce, 3, None), now);
    assert_eq!(woken(&subs, &before), 1, "the copy is queued at once");
    assert!(publisher.conn.wants_handoff());
    assert!(publisher.drain(now).is_empty(), "PUBACK before the handoff");
    publisher.conn.handle_handoff();
    assert!(!publisher.conn.wants_handoff());
    assert!(
        matches!(publisher.drain(now).as_slice(), [Packet::PubAck(a)] if a.packet_id == pid(3))
    );
    assert_eq!(subs[0].publishes(now).len(), 1);

    // A subscriber already woken (its first copy not taken yet): nothing to wait for.
    publisher.send(publish("t", b"1", QoS::AtLeastOnce, 4, None), now);
    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"2", QoS::AtLeastOnce, 5, None), now);
    assert!(!publisher.conn.wants_handoff());
    assert_eq!(publisher.drain(now).len(), 2);
}

#[test]
fn a_qos0_message_to_one_subscriber_has_nothing_to_hand_over() {
    let (mut subs, mut publisher, now) = fan_out(None, 1, "t", QoS::AtMostOnce);
    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"m", QoS::AtMostOnce, 0, None), now);
    assert!(!publisher.conn.wants_handoff());
    assert_eq!(subs[0].publishes(now).len(), 1);
}

#[test]
fn a_qos1_message_the_store_keeps_is_queued_for_everyone_at_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::auto());
    let broker = Broker::with_store(BrokerConfig::default(), Some(store));
    let (subs, mut publisher, now) = fan_out(Some(broker), 12, "t", QoS::AtLeastOnce);
    let before = wake_counts(&subs);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"m", QoS::AtLeastOnce, 5, None), now);
    assert_queued_at_once_and_acknowledged(&mut publisher, &subs, &before, now);
}

#[test]
fn mqtt5_4_6_0_6_only_the_first_publish_after_arming_is_handed_over_and_order_holds() {
    let (mut subs, mut publisher, now) = fan_out(None, 12, "t", QoS::AtMostOnce);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"1", QoS::AtMostOnce, 0, None), now);
    assert!(publisher.conn.wants_handoff());
    publisher.conn.handle_handoff();
    assert!(!publisher.conn.wants_handoff());
    // The next message of the same read: every copy at once.
    publisher.send(publish("t", b"2", QoS::AtMostOnce, 0, None), now);
    assert!(!publisher.conn.wants_handoff());

    for s in &mut subs {
        let payloads: Vec<_> = s.publishes(now).iter().map(|p| p.payload.clone()).collect();
        assert_eq!(payloads, [&b"1"[..], &b"2"[..]], "in publishing order");
    }
}

#[test]
fn subscribers_already_busy_get_their_copies_without_a_handoff() {
    let (mut subs, mut publisher, now) = fan_out(None, 12, "t", QoS::AtMostOnce);
    // A first message nobody has taken yet: every connection has been woken already.
    publisher.send(publish("t", b"1", QoS::AtMostOnce, 0, None), now);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"2", QoS::AtMostOnce, 0, None), now);
    assert!(!publisher.conn.wants_handoff());
    for s in &mut subs {
        assert_eq!(s.publishes(now).len(), 2);
    }
}

#[test]
fn a_publisher_lost_before_its_handoff_still_reaches_every_subscriber() {
    let (mut subs, mut publisher, now) = fan_out(None, 20, "t", QoS::AtMostOnce);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("t", b"m", QoS::AtMostOnce, 0, None), now);
    assert!(publisher.conn.wants_handoff());
    publisher.lose(now);
    for s in &mut subs {
        assert_eq!(s.publishes(now).len(), 1);
    }
}

/// Under load (a read soon after the client's last packet) the handoff costs more than it
/// saves: the whole fan-out is queued at once, and a QoS 1 PUBLISH is acknowledged at once.
#[test]
fn a_read_soon_after_the_last_packet_hands_nothing_over() {
    let (mut subs, mut publisher, now) = fan_out(None, 20, "t", QoS::AtLeastOnce);
    let before = wake_counts(&subs);
    let soon = now + HANDOFF_AFTER_IDLE / 2;

    publisher.conn.arm_handoff(soon);
    publisher.send(publish("t", b"m", QoS::AtLeastOnce, 3, None), soon);
    assert_queued_at_once_and_acknowledged(&mut publisher, &subs, &before, soon);

    // After an idle spell (the subscribers have taken their copies) the next read arms it
    // again.
    for s in &mut subs {
        assert_eq!(s.publishes(soon).len(), 1);
    }
    let later = soon + HANDOFF_AFTER_IDLE;
    publisher.conn.arm_handoff(later);
    publisher.send(publish("t", b"n", QoS::AtLeastOnce, 4, None), later);
    assert!(publisher.conn.wants_handoff());
}

#[test]
fn mqtt5_3_3_4_2_overlapping_subscriptions_in_a_handed_over_fan_out_give_one_copy() {
    let now = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut subs = subscribers(&broker, 12, "a/b", QoS::AtMostOnce, now);
    // Every subscriber also matches through a wildcard, at a higher QoS.
    for s in &mut subs {
        s.subscribe("a/+", QoS::AtLeastOnce, now);
    }
    let mut publisher = Sim::connected(&broker, connect5("pub", true, None), now);

    publisher.conn.arm_handoff(idle(now));
    publisher.send(publish("a/b", b"m", QoS::AtLeastOnce, 9, None), now);
    while publisher.conn.wants_handoff() {
        publisher.conn.handle_handoff();
    }
    for s in &mut subs {
        let got = s.publishes(now);
        assert_eq!(got.len(), 1, "one copy per session");
        assert_eq!(got[0].qos, QoS::AtLeastOnce, "the higher QoS of the two");
        s.send(Packet::PubAck(Ack::new(got[0].packet_id.unwrap())), now);
    }
    assert!(matches!(
        publisher.drain(now).as_slice(),
        [Packet::PubAck(_)]
    ));
}
