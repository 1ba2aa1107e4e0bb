//! Durability through the `Store` interface, simulated: acknowledgements wait for the store,
//! failed writes are never acknowledged as kept, and a broker restored from what was committed
//! resumes every acknowledged delivery ("an acknowledgement is a promise").

#![allow(clippy::unwrap_used, missing_docs)] // test code: failing loudly is the point

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use tern_codec::{Ack, ByteString, Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use tern_core::{Broker, BrokerConfig, MemoryStore, Store, StoreOp};

fn broker_with(store: &Arc<MemoryStore>, config: BrokerConfig) -> Broker {
    let store: Arc<dyn Store> = store.clone();
    Broker::with_store(config, Some(store))
}

/// A crash: a new broker restored from what the store committed.
fn restart(store: &Arc<MemoryStore>, now: Instant) -> (Broker, Arc<MemoryStore>) {
    let snapshot = store.snapshot();
    let fresh = Arc::new(MemoryStore::auto());
    let broker = broker_with(&fresh, BrokerConfig::default());
    broker.restore(snapshot, now);
    (broker, fresh)
}

fn persistent(id: &str, clean: bool) -> Connect {
    connect5(id, clean, Some(3600))
}

fn acks(packets: &[Packet]) -> Vec<(u16, ReasonCode)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) => {
                Some((a.packet_id.get(), a.reason))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn puback_waits_until_the_delivery_to_a_persistent_session_is_committed() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
    store.commit();
    sub.subscribe("t", QoS::AtLeastOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::AtLeastOnce, 9, None), t0);
    assert!(acks(&p.drain(t0)).is_empty(), "no PUBACK before the commit");
    // The subscriber may see it at once: delivery does not wait, acknowledgement does.
    assert_eq!(sub.publishes(t0).len(), 1);
    let woken = p.waker.count();
    store.commit();
    assert!(
        p.waker.count() > woken,
        "the commit wakes the publisher's connection"
    );
    assert_eq!(acks(&p.drain(t0)), [(9, ReasonCode::SUCCESS)]);
}

#[test]
fn messages_for_clean_sessions_only_are_acknowledged_without_waiting() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, connect5("clean", true, None), t0);
    sub.subscribe("t", QoS::AtLeastOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::AtLeastOnce, 3, None), t0);
    assert_eq!(acks(&p.drain(t0)), [(3, ReasonCode::SUCCESS)]);
    assert!(
        store.ops().is_empty(),
        "nothing durable happened: {:?}",
        store.ops()
    );
}

#[test]
fn retained_message_is_acknowledged_once_stored() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    let Packet::Publish(mut m) = publish("r", b"kept", QoS::AtLeastOnce, 4, None) else {
        unreachable!()
    };
    m.retain = true;
    p.send(Packet::Publish(m), t0);
    assert!(acks(&p.drain(t0)).is_empty());
    store.commit();
    assert_eq!(
        acks(&p.drain(t0)),
        [(4, ReasonCode::NO_MATCHING_SUBSCRIBERS)]
    );
    let (restored, _) = restart(&store, t0);
    assert_eq!(restored.retained_count(), 1);
}

#[test]
fn a_failed_commit_is_never_acknowledged_as_success() {
    let t0 = Instant::now();
    for version in [ProtocolVersion::V5, ProtocolVersion::V311] {
        let store = Arc::new(MemoryStore::manual());
        let broker = broker_with(&store, BrokerConfig::default());
        let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
        sub.subscribe("t", QoS::AtLeastOnce, t0);
        store.commit();
        let mut c = connect5("pub", true, None);
        c.protocol = version;
        c.properties = Default::default();
        let mut p = Sim::connected(&broker, c, t0);
        p.send(publish("t", b"m", QoS::AtLeastOnce, 5, None), t0);
        p.send(publish("t", b"m2", QoS::ExactlyOnce, 6, None), t0);
        store.fail();
        let got = acks(&p.drain(t0));
        if version.is_v5() {
            assert_eq!(
                got,
                [
                    (5, ReasonCode::UNSPECIFIED_ERROR),
                    (6, ReasonCode::UNSPECIFIED_ERROR)
                ]
            );
        } else {
            assert!(
                got.is_empty(),
                "3.1.1: no acknowledgement, the client will resend: {got:?}"
            );
        }
        // A later, successful write is acknowledged normally; the failed QoS 2 id is free.
        p.send(publish("t", b"m3", QoS::ExactlyOnce, 6, None), t0);
        store.commit();
        assert_eq!(acks(&p.drain(t0)), [(6, ReasonCode::SUCCESS)]);
    }
}

#[test]
fn qos2_acknowledgements_wait_for_the_packet_id_state() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut p = Sim::connected(&broker, persistent("pub2", true), t0);
    store.commit();
    p.send(publish("nobody", b"m", QoS::ExactlyOnce, 7, None), t0);
    assert!(
        acks(&p.drain(t0)).is_empty(),
        "PUBREC waits for the stored packet id"
    );
    store.commit();
    assert_eq!(
        acks(&p.drain(t0)),
        [(7, ReasonCode::NO_MATCHING_SUBSCRIBERS)]
    );
    p.send(Packet::PubRel(Ack::new(pid(7))), t0);
    assert!(
        acks(&p.drain(t0)).is_empty(),
        "PUBCOMP waits until the id is forgotten"
    );
    store.commit();
    assert_eq!(acks(&p.drain(t0)), [(7, ReasonCode::SUCCESS)]);
}

#[test]
fn a_durable_qos2_delivery_leaves_only_once_its_packet_id_is_stored() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
    sub.subscribe("t", QoS::ExactlyOnce, t0);
    store.commit();
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"once", QoS::ExactlyOnce, 1, None), t0);
    assert!(
        sub.publishes(t0).is_empty(),
        "held until the identifier is durable"
    );
    store.commit();
    let got = sub.publishes(t0);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"once");
}

#[test]
fn acknowledged_messages_survive_a_crash_and_are_delivered_in_order() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
    sub.subscribe("seq/#", QoS::AtLeastOnce, t0);
    sub.disconnect(t0);
    store.commit();
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    for i in 1..=5u16 {
        p.send(
            publish("seq/a", &i.to_be_bytes(), QoS::AtLeastOnce, i, None),
            t0,
        );
    }
    store.commit();
    assert_eq!(acks(&p.drain(t0)).len(), 5, "all five acknowledged");
    // Sent after the last commit: not acknowledged, may be lost.
    p.send(
        publish("seq/a", &6u16.to_be_bytes(), QoS::AtLeastOnce, 6, None),
        t0,
    );
    assert!(acks(&p.drain(t0)).is_empty());

    let t1 = t0 + Duration::from_secs(30);
    let (broker, _store) = restart(&store, t1);
    let (mut sub, ack) = Sim::connect(&broker, persistent("sub", false), t1);
    assert!(ack.session_present, "the session survived");
    let got: Vec<u16> = sub
        .publishes(t1)
        .iter()
        .map(|p| u16::from_be_bytes([p.payload[0], p.payload[1]]))
        .collect();
    assert_eq!(got, [1, 2, 3, 4, 5], "every acknowledged message, in order");
}

#[test]
fn a_delivery_in_flight_at_the_crash_is_resent_with_dup_and_its_packet_id() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
    sub.subscribe("q", QoS::ExactlyOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("q", b"x", QoS::ExactlyOnce, 1, None), t0);
    p.send(publish("q", b"y", QoS::ExactlyOnce, 2, None), t0);
    let first = sub.publishes(t0);
    assert_eq!(first.len(), 2);
    // The subscriber answers PUBREC for the first only; then the broker dies.
    sub.send(Packet::PubRec(Ack::new(first[0].packet_id.unwrap())), t0);
    assert!(matches!(sub.drain(t0).as_slice(), [Packet::PubRel(_)]));

    let (broker, _) = restart(&store, t0);
    let (mut sub, ack) = Sim::connect(&broker, persistent("sub", false), t0);
    assert!(ack.session_present);
    let out = sub.drain(t0);
    match out.as_slice() {
        [Packet::PubRel(rel), Packet::Publish(again)] => {
            assert_eq!(
                rel.packet_id,
                first[0].packet_id.unwrap(),
                "PUBREL, not the PUBLISH"
            );
            assert!(again.dup);
            assert_eq!(again.packet_id, first[1].packet_id, "original identifier");
            assert_eq!(&again.payload[..], b"y");
        }
        other => panic!("expected PUBREL then PUBLISH with DUP, got {other:?}"),
    }
}

#[test]
fn incoming_qos2_ids_survive_so_a_resend_is_not_delivered_twice() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut watcher = Sim::connected(&broker, persistent("w", true), t0);
    watcher.subscribe("d", QoS::AtLeastOnce, t0);
    watcher.disconnect(t0);
    let mut p = Sim::connected(&broker, persistent("p", true), t0);
    p.send(publish("d", b"once", QoS::ExactlyOnce, 42, None), t0);
    assert_eq!(acks(&p.drain(t0)), [(42, ReasonCode::SUCCESS)]);

    let (broker, _) = restart(&store, t0);
    let (mut p, ack) = Sim::connect(&broker, persistent("p", false), t0);
    assert!(ack.session_present);
    let Packet::Publish(mut again) = publish("d", b"once", QoS::ExactlyOnce, 42, None) else {
        unreachable!()
    };
    again.dup = true;
    p.send(Packet::Publish(again), t0);
    assert_eq!(
        acks(&p.drain(t0)),
        [(42, ReasonCode::SUCCESS)],
        "PUBREC again"
    );
    p.send(Packet::PubRel(Ack::new(pid(42))), t0);
    assert_eq!(acks(&p.drain(t0)), [(42, ReasonCode::SUCCESS)], "PUBCOMP");
    let (mut w, _) = Sim::connect(&broker, persistent("w", false), t0);
    assert_eq!(w.publishes(t0).len(), 1, "delivered exactly once");
}

#[test]
fn session_expiry_keeps_counting_across_a_restart() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut c = Sim::connected(&broker, connect5("short", true, Some(60)), t0);
    c.subscribe("x", QoS::AtLeastOnce, t0);
    c.disconnect(t0);
    // Restored 50 s later (the store keeps the disconnection time).
    let (broker, _) = restart(&store, t0);
    assert_eq!(broker.session_count(), 1);
    assert_eq!(broker.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    broker.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(broker.session_count(), 0);
}

#[test]
fn a_client_connected_at_the_crash_has_its_will_published_after_restart() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut c = persistent("dies", true);
    c.will = Some(will("obituary", b"gone", None));
    let _alive = Sim::connected(&broker, c, t0);

    let t1 = t0 + Duration::from_secs(5);
    let (broker, _) = restart(&store, t1);
    let mut w = Sim::connected(&broker, connect5("watcher", true, None), t1);
    w.subscribe("obituary", QoS::AtLeastOnce, t1);
    broker.handle_timeout(t1);
    let got = w.publishes(t1);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"gone");
}

#[test]
fn a_full_offline_queue_answers_quota_exceeded_not_success() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let config = BrokerConfig {
        max_queued_messages: 2,
        ..BrokerConfig::default()
    };
    let broker = broker_with(&store, config);
    let mut sub = Sim::connected(&broker, persistent("slow", true), t0);
    sub.subscribe("q", QoS::AtLeastOnce, t0);
    sub.disconnect(t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    for i in 1..=3 {
        p.send(publish("q", b"m", QoS::AtLeastOnce, i, None), t0);
    }
    assert_eq!(
        acks(&p.drain(t0)),
        [
            (1, ReasonCode::SUCCESS),
            (2, ReasonCode::SUCCESS),
            (3, ReasonCode::QUOTA_EXCEEDED)
        ]
    );
}

#[test]
fn acknowledged_deliveries_leave_the_store() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
    sub.subscribe("t", QoS::AtLeastOnce, t0);
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"m", QoS::AtLeastOnce, 1, None), t0);
    let got = sub.publishes(t0);
    sub.send(Packet::PubAck(Ack::new(got[0].packet_id.unwrap())), t0);
    let _ = sub.drain(t0);
    let snapshot = store.snapshot();
    assert_eq!(snapshot.sessions.len(), 1);
    assert!(
        snapshot.sessions[0].deliveries.is_empty(),
        "acknowledged: nothing left to resend"
    );
    assert!(
        store
            .ops()
            .iter()
            .any(|op| matches!(op, StoreOp::DeleteDelivery { .. }))
    );
    let _ = ByteString::new();
    let _ = Bytes::new();
}

#[test]
fn the_global_queue_budget_bounds_all_sessions_together() {
    let t0 = Instant::now();
    // Each message counts topic + payload = 1 + 9 = 10 bytes; room for three in all.
    let config = BrokerConfig {
        max_total_queued_bytes: 30,
        ..BrokerConfig::default()
    };
    let broker = Broker::new(config);
    for id in ["a", "b"] {
        let mut s = Sim::connected(&broker, connect5(id, true, Some(60)), t0);
        s.subscribe("t", QoS::AtLeastOnce, t0);
        s.disconnect(t0);
    }
    let mut p = Sim::connected(&broker, connect5("pub", true, None), t0);
    p.send(publish("t", b"123456789", QoS::AtLeastOnce, 1, None), t0);
    assert_eq!(acks(&p.drain(t0)), [(1, ReasonCode::SUCCESS)]);
    assert_eq!(broker.queued_bytes(), 20);
    p.send(publish("t", b"123456789", QoS::AtLeastOnce, 2, None), t0);
    assert_eq!(
        acks(&p.drain(t0)),
        [(2, ReasonCode::QUOTA_EXCEEDED)],
        "one copy did not fit"
    );
    assert_eq!(broker.queued_bytes(), 30);
    // Draining the sessions gives the budget back; which one got the second copy depends on
    // routing order, but one of them did.
    let mut counts = Vec::new();
    for id in ["a", "b"] {
        let (mut s, _) = Sim::connect(&broker, connect5(id, false, Some(60)), t0);
        counts.push(s.publishes(t0).len());
    }
    counts.sort_unstable();
    assert_eq!(counts, [1, 2]);
    assert_eq!(broker.queued_bytes(), 0);
}

#[test]
fn mqtt5_4_1_0_2_an_expired_session_is_not_resumed_before_the_timer_runs() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::auto());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut c = Sim::connected(&broker, connect5("short", true, Some(60)), t0);
    c.subscribe("x", QoS::AtLeastOnce, t0);
    c.disconnect(t0);
    let (broker, _) = restart(&store, t0);
    // The client is back before the broker's timer task has looked at the session.
    let later = t0 + Duration::from_secs(61);
    let (_c, ack) = Sim::connect(&broker, connect5("short", false, Some(60)), later);
    assert!(!ack.session_present, "the session expired at t0 + 60 s");
}

#[test]
fn mqtt5_3_1_2_8_a_will_past_its_delay_goes_out_when_the_client_returns_first() {
    let t0 = Instant::now();
    let broker = Broker::new(BrokerConfig::default());
    let mut w = Sim::connected(&broker, connect5("watcher", true, None), t0);
    w.subscribe("obit", QoS::AtLeastOnce, t0);
    let mut c = connect5("late", true, Some(60));
    c.will = Some(will("obit", b"bye", Some(5)));
    Sim::connected(&broker, c, t0).lose(t0);
    // Back after the delay, but before the timer task ran: the will was due.
    let later = t0 + Duration::from_secs(6);
    let (_c, ack) = Sim::connect(&broker, connect5("late", false, Some(60)), later);
    assert!(ack.session_present);
    let got = w.publishes(later);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"bye");
}

#[test]
fn mqtt311_4_3_3_2_after_a_failed_write_a_qos2_resend_is_not_routed_twice() {
    let t0 = Instant::now();
    let store = Arc::new(MemoryStore::manual());
    let broker = broker_with(&store, BrokerConfig::default());
    let mut sub = Sim::connected(&broker, persistent("sub", true), t0);
    sub.subscribe("t", QoS::ExactlyOnce, t0);
    store.commit();
    let mut c = connect5("pub311", true, None);
    c.protocol = ProtocolVersion::V311;
    c.properties = Default::default();
    let mut p = Sim::connected(&broker, c, t0);
    p.send(publish("t", b"once", QoS::ExactlyOnce, 6, None), t0);
    store.fail();
    assert!(
        acks(&p.drain(t0)).is_empty(),
        "3.1.1: no PUBREC for a failed write"
    );
    // The store retries; the client sends the message again.
    store.commit();
    let Packet::Publish(mut again) = publish("t", b"once", QoS::ExactlyOnce, 6, None) else {
        unreachable!()
    };
    again.dup = true;
    p.send(Packet::Publish(again), t0);
    store.commit();
    assert_eq!(acks(&p.drain(t0)), [(6, ReasonCode::SUCCESS)], "PUBREC now");
    // The QoS 2 delivery waits for its packet identifier to be stored.
    let mut got = sub.drain(t0);
    store.commit();
    got.extend(sub.drain(t0));
    got.retain(|p| matches!(p, Packet::Publish(_)));
    assert_eq!(got.len(), 1, "routed once: {got:?}");
}
