//! Every kind of operation survives a close and reopen; messages are stored once and shared;
//! times come back as instants that keep counting.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_codec::{PublishProperties, QoS, RetainHandling, SubscriptionOptions};
use tern_core::{
    DeliveryRecord, DeliveryState, Message, SessionRecord, Store, StoreOp, WillRecord,
};
use util::*;

fn full_message() -> Arc<Message> {
    Arc::new(Message {
        topic: bs("a/b"),
        payload: Bytes::from_static(b"\x00\x01payload\xff"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(true),
            message_expiry_interval: Some(60),
            topic_alias: None,
            response_topic: Some(bs("reply/here")),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![(bs("k"), bs("v")), (bs("k"), bs("v2"))],
            subscription_identifiers: vec![],
            content_type: Some(bs("text/plain")),
        },
        expires_at: Some(Instant::now() + Duration::from_secs(60)),
        publisher: Some(bs("publisher-1")),
    })
}

fn close_to(a: Instant, b: Instant) -> bool {
    let d = if a > b { a - b } else { b - a };
    d < Duration::from_secs(2)
}

fn same_message(a: &Message, b: &Message) {
    assert_eq!(a.topic, b.topic);
    assert_eq!(a.payload, b.payload);
    assert_eq!(a.qos, b.qos);
    assert_eq!(a.retain, b.retain);
    assert_eq!(a.properties, b.properties);
    assert_eq!(a.publisher, b.publisher);
    match (a.expires_at, b.expires_at) {
        (None, None) => {}
        (Some(x), Some(y)) => assert!(close_to(x, y)),
        other => panic!("expiry differs: {other:?}"),
    }
}

#[test]
fn every_operation_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (store, snap) = open(dir.path());
    assert!(snap.sessions.is_empty() && snap.retained.is_empty());

    let disconnected = Instant::now() - Duration::from_secs(30);
    let will = WillRecord {
        topic: bs("will/topic"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: PublishProperties {
            content_type: Some(bs("ct")),
            ..PublishProperties::default()
        },
        delay_interval: 10,
    };
    let m = full_message();
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    write(
        &store,
        vec![
            StoreOp::PutSession(Box::new(SessionRecord {
                client_id: bs("c1"),
                expiry_interval: u32::MAX,
                username: Some(bs("alice")),
                disconnected_at: Some(disconnected),
                will: Some(will.clone()),
            })),
            session("c2"),
            StoreOp::PutSubscription {
                client_id: bs("c1"),
                filter: bs("$share/g/a/#"),
                options,
                identifier: Some(42),
            },
            subscribe("c1", "x/+", QoS::AtMostOnce),
            subscribe("c1", "gone", QoS::AtMostOnce),
            StoreOp::DeleteSubscription {
                client_id: bs("c1"),
                filter: bs("gone"),
            },
            StoreOp::PutDelivery(DeliveryRecord {
                client_id: bs("c1"),
                seq: 1,
                message: m.clone(),
                qos: QoS::ExactlyOnce,
                retain: true,
                subscription_identifiers: Box::new([42, 7]),
                shared: Some(bs("$share/g/a/#")),
                state: DeliveryState::Queued,
            }),
            delivery("c1", 2, &m, DeliveryState::Sent(17)),
            delivery("c1", 3, &m, DeliveryState::Released(18)),
            delivery("c1", 4, &m, DeliveryState::Queued),
            delete_delivery("c1", 4),
            StoreOp::AddIncomingQos2 {
                client_id: bs("c1"),
                packet_id: 5,
            },
            StoreOp::AddIncomingQos2 {
                client_id: bs("c1"),
                packet_id: 6,
            },
            StoreOp::RemoveIncomingQos2 {
                client_id: bs("c1"),
                packet_id: 6,
            },
            StoreOp::PutRetained(m.clone()),
            StoreOp::PutRetained(message("r/2", "two")),
            StoreOp::PutRetained(message("r/3", "three")),
            StoreOp::DeleteRetained { topic: bs("r/3") },
        ],
    );
    // A later group updates what the first wrote.
    write(
        &store,
        vec![
            delivery("c1", 2, &m, DeliveryState::Released(17)),
            StoreOp::DeleteSession {
                client_id: bs("c2"),
            },
        ],
    );

    let (store, snap) = reopen(store);
    assert_eq!(snap.sessions.len(), 1);
    let s = &snap.sessions[0];
    assert_eq!(s.record.client_id, bs("c1"));
    assert_eq!(s.record.expiry_interval, u32::MAX);
    assert_eq!(s.record.username, Some(bs("alice")));
    assert!(close_to(s.record.disconnected_at.unwrap(), disconnected));
    assert_eq!(s.record.will, Some(will));
    let mut subs = s.subscriptions.clone();
    subs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        subs,
        vec![
            (bs("$share/g/a/#"), options, Some(42)),
            (
                bs("x/+"),
                SubscriptionOptions::with_qos(QoS::AtMostOnce),
                None
            ),
        ]
    );
    let seqs: Vec<_> = s.deliveries.iter().map(|d| (d.seq, d.state)).collect();
    assert_eq!(
        seqs,
        vec![
            (1, DeliveryState::Queued),
            (2, DeliveryState::Released(17)),
            (3, DeliveryState::Released(18)),
        ]
    );
    let d1 = &s.deliveries[0];
    assert_eq!(d1.client_id, bs("c1"));
    assert_eq!(d1.qos, QoS::ExactlyOnce);
    assert!(d1.retain);
    assert_eq!(&*d1.subscription_identifiers, &[42, 7]);
    assert_eq!(d1.shared, Some(bs("$share/g/a/#")));
    same_message(&d1.message, &m);
    assert_eq!(s.incoming_qos2, vec![5]);

    let mut topics: Vec<_> = snap.retained.iter().map(|m| m.topic.clone()).collect();
    topics.sort();
    assert_eq!(topics, vec![bs("a/b"), bs("r/2")]);
    let r = snap.retained.iter().find(|r| r.topic == bs("a/b")).unwrap();
    same_message(r, &m);
    // One stored message shared by the three deliveries and the retained entry.
    for d in &s.deliveries {
        assert!(Arc::ptr_eq(&d.message, r));
    }
    assert_eq!(store.stats().messages, 2);
    store.close().unwrap();
}

#[test]
fn a_message_row_goes_with_its_last_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let m = message("t", "shared");
    let other = message("u", "alone");
    write(
        &store,
        vec![
            session("a"),
            session("b"),
            delivery("a", 1, &m, DeliveryState::Queued),
            delivery("b", 1, &m, DeliveryState::Queued),
            delivery("b", 2, &other, DeliveryState::Queued),
            StoreOp::PutRetained(m.clone()),
        ],
    );
    assert_eq!(store.stats().messages, 2);
    // Drop references one group at a time.
    write(&store, vec![delete_delivery("a", 1)]);
    assert_eq!(store.stats().messages, 2);
    write(&store, vec![StoreOp::DeleteRetained { topic: bs("t") }]);
    assert_eq!(store.stats().messages, 2);
    let (store, snap) = reopen(store);
    assert_eq!(
        store.stats().messages,
        2,
        "b's deliveries still refer to both"
    );
    let b = snap
        .sessions
        .iter()
        .find(|s| s.record.client_id == bs("b"))
        .unwrap();
    assert_eq!(b.deliveries.len(), 2);
    assert!(snap.retained.is_empty());
    // The session goes with its deliveries: both messages go.
    write(&store, vec![StoreOp::DeleteSession { client_id: bs("b") }]);
    assert_eq!(store.stats().messages, 0);
    let (store, snap) = reopen(store);
    assert_eq!(snap.sessions.len(), 1);
    assert!(snap.sessions[0].deliveries.is_empty());
    // Reopened with nothing referring to a message: nothing to load.
    store.close().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("tern.db")).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_message_put_again_after_its_row_went_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let m = message("t", "again");
    write(
        &store,
        vec![session("a"), delivery("a", 1, &m, DeliveryState::Queued)],
    );
    write(&store, vec![delete_delivery("a", 1)]);
    write(
        &store,
        vec![
            delivery("a", 2, &m, DeliveryState::Queued),
            StoreOp::PutRetained(m.clone()),
        ],
    );
    let (store, snap) = reopen(store);
    let d = &snap.sessions[0].deliveries;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].message.payload, Bytes::from_static(b"again"));
    assert!(Arc::ptr_eq(&d[0].message, &snap.retained[0]));
    store.close().unwrap();
}

#[test]
fn retained_replacement_releases_the_old_message() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    write(&store, vec![StoreOp::PutRetained(message("t", "one"))]);
    write(&store, vec![StoreOp::PutRetained(message("t", "two"))]);
    assert_eq!(store.stats().messages, 1);
    let (store, snap) = reopen(store);
    assert_eq!(snap.retained.len(), 1);
    assert_eq!(snap.retained[0].payload, Bytes::from_static(b"two"));
    store.close().unwrap();
}

#[test]
fn expiry_keeps_counting_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let now = Instant::now();
    let mut m = message("t", "expiring");
    Arc::get_mut(&mut m).unwrap().expires_at = Some(now + Duration::from_secs(100));
    let mut past = message("p", "expired");
    Arc::get_mut(&mut past).unwrap().expires_at = Some(now - Duration::from_secs(5));
    write(
        &store,
        vec![
            StoreOp::PutSession(Box::new(SessionRecord {
                client_id: bs("c"),
                expiry_interval: 60,
                username: None,
                disconnected_at: Some(now - Duration::from_secs(40)),
                will: None,
            })),
            StoreOp::PutRetained(m),
            StoreOp::PutRetained(past),
        ],
    );
    store.close().unwrap();
    drop(store);
    let (store, snap) = open(dir.path());
    let later = Instant::now();
    let elapsed = later - now;
    let r = snap.retained.iter().find(|r| r.topic == bs("t")).unwrap();
    // Stored as wall-clock time: about 100 s after `now`, whatever happened since.
    let left = r.expires_at.unwrap().saturating_duration_since(later);
    assert!(
        left <= Duration::from_secs(100) - elapsed + Duration::from_millis(50),
        "{left:?}"
    );
    assert!(left >= Duration::from_secs(98) - elapsed, "{left:?}");
    let p = snap.retained.iter().find(|r| r.topic == bs("p")).unwrap();
    assert!(p.is_expired(later));
    let since = later - snap.sessions[0].record.disconnected_at.unwrap();
    assert!(
        since >= Duration::from_secs(40) && since < Duration::from_secs(42),
        "{since:?}"
    );
    store.close().unwrap();
}

#[test]
fn the_data_directory_and_file_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = open(&data);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("tern.db")), 0o600);
    write(&store, vec![session("a")]);
    assert_eq!(mode(&data.join("tern.db-wal")), 0o600);
    store.close().unwrap();
}

#[test]
fn close_writes_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.submit(session("a"));
    for seq in 1..=5000 {
        store.submit(delivery(
            "a",
            seq,
            &message("t", "x"),
            DeliveryState::Queued,
        ));
    }
    let (store, snap) = reopen(store);
    assert_eq!(snap.sessions[0].deliveries.len(), 5000);
    assert!(
        snap.sessions[0]
            .deliveries
            .windows(2)
            .all(|w| w[0].seq < w[1].seq)
    );
    store.close().unwrap();
}

#[test]
fn checkpoint_trims_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    for i in 0..200 {
        store.submit(StoreOp::PutRetained(message(&format!("t/{i}"), "payload")));
    }
    store.checkpoint().unwrap();
    let wal = std::fs::metadata(dir.path().join("tern.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0);
    let (store, snap) = reopen(store);
    assert_eq!(snap.retained.len(), 200);
    store.close().unwrap();
}
