//! Changes that undo each other inside one group are not written, and the final state is the
//! one the operations describe, whatever the grouping.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod util;

use tern_codec::QoS;
use tern_core::{DeliveryState, StoreOp};
use util::*;

#[test]
fn a_delivery_queued_sent_and_acknowledged_in_one_group_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    write(&store, vec![session("s")]);
    let before = store.stats();
    let m = message("t", "x");
    write(
        &store,
        vec![
            delivery("s", 1, &m, DeliveryState::Queued),
            delivery("s", 1, &m, DeliveryState::Sent(1)),
            delete_delivery("s", 1),
            delivery("s", 2, &m, DeliveryState::Queued),
            delivery("s", 2, &m, DeliveryState::Sent(2)),
            delivery("s", 2, &m, DeliveryState::Released(2)),
            delete_delivery("s", 2),
        ],
    );
    let after = store.stats();
    assert_eq!(after.operations - before.operations, 7);
    assert_eq!(after.commits, before.commits, "nothing to commit");
    assert_eq!(after.rows_written, before.rows_written);
    assert_eq!(after.messages, 0);
    let (store, snap) = reopen(store);
    assert!(snap.sessions[0].deliveries.is_empty());
    store.close().unwrap();
}

#[test]
fn an_acknowledgement_in_a_later_group_deletes_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let m = message("t", "x");
    write(
        &store,
        vec![
            session("s"),
            delivery("s", 1, &m, DeliveryState::Queued),
            delivery("s", 1, &m, DeliveryState::Sent(1)),
        ],
    );
    let before = store.stats();
    write(&store, vec![delete_delivery("s", 1)]);
    let after = store.stats();
    assert_eq!(after.commits, before.commits + 1);
    // The delivery and its message.
    assert_eq!(after.rows_written - before.rows_written, 2);
    let (store, snap) = reopen(store);
    assert!(snap.sessions[0].deliveries.is_empty());
    store.close().unwrap();
}

#[test]
fn a_stored_delivery_updated_then_deleted_in_one_group_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let m = message("t", "x");
    write(
        &store,
        vec![session("s"), delivery("s", 1, &m, DeliveryState::Queued)],
    );
    write(
        &store,
        vec![
            delivery("s", 1, &m, DeliveryState::Sent(9)),
            delete_delivery("s", 1),
        ],
    );
    let (store, snap) = reopen(store);
    assert!(snap.sessions[0].deliveries.is_empty());
    assert_eq!(store.stats().messages, 0);
    store.close().unwrap();
}

#[test]
fn a_delete_then_a_put_of_the_same_delivery_keeps_the_put() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let m = message("t", "x");
    write(
        &store,
        vec![session("s"), delivery("s", 1, &m, DeliveryState::Queued)],
    );
    write(
        &store,
        vec![
            delete_delivery("s", 1),
            delivery("s", 1, &m, DeliveryState::Sent(3)),
        ],
    );
    let (store, snap) = reopen(store);
    let d = &snap.sessions[0].deliveries;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].state, DeliveryState::Sent(3));
    store.close().unwrap();
}

#[test]
fn retained_set_and_cleared_in_one_group_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let before = store.stats();
    write(
        &store,
        vec![
            StoreOp::PutRetained(message("t", "x")),
            StoreOp::DeleteRetained { topic: bs("t") },
        ],
    );
    let after = store.stats();
    assert_eq!(after.commits, before.commits);
    assert_eq!(after.rows_written, before.rows_written);
    let (store, snap) = reopen(store);
    assert!(snap.retained.is_empty());
    store.close().unwrap();
}

#[test]
fn a_stored_retained_message_cleared_and_set_again_in_one_group_keeps_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    write(&store, vec![StoreOp::PutRetained(message("t", "old"))]);
    write(
        &store,
        vec![
            StoreOp::DeleteRetained { topic: bs("t") },
            StoreOp::PutRetained(message("t", "new")),
            StoreOp::PutRetained(message("u", "gone")),
            StoreOp::DeleteRetained { topic: bs("u") },
        ],
    );
    let (store, snap) = reopen(store);
    assert_eq!(snap.retained.len(), 1);
    assert_eq!(&snap.retained[0].payload[..], b"new");
    assert_eq!(store.stats().messages, 1);
    store.close().unwrap();
}

#[test]
fn a_session_created_and_deleted_in_one_group_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let before = store.stats();
    let m = message("t", "x");
    write(
        &store,
        vec![
            session("s"),
            subscribe("s", "a/#", QoS::AtLeastOnce),
            delivery("s", 1, &m, DeliveryState::Queued),
            StoreOp::AddIncomingQos2 {
                client_id: bs("s"),
                packet_id: 1,
            },
            StoreOp::DeleteSession { client_id: bs("s") },
        ],
    );
    let after = store.stats();
    assert_eq!(after.commits, before.commits);
    assert_eq!(after.rows_written, before.rows_written);
    let (store, snap) = reopen(store);
    assert!(snap.sessions.is_empty());
    store.close().unwrap();
}

#[test]
fn a_session_deleted_and_created_again_in_one_group_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let m = message("t", "old");
    let n = message("t", "new");
    write(
        &store,
        vec![
            session("s"),
            subscribe("s", "old/#", QoS::AtLeastOnce),
            delivery("s", 1, &m, DeliveryState::Sent(1)),
            delivery("s", 2, &m, DeliveryState::Queued),
            StoreOp::AddIncomingQos2 {
                client_id: bs("s"),
                packet_id: 4,
            },
        ],
    );
    // The new incarnation reuses sequence number 1.
    write(
        &store,
        vec![
            StoreOp::DeleteSession { client_id: bs("s") },
            session("s"),
            subscribe("s", "new/#", QoS::AtMostOnce),
            delivery("s", 1, &n, DeliveryState::Queued),
        ],
    );
    let (store, snap) = reopen(store);
    let s = &snap.sessions[0];
    assert_eq!(s.subscriptions.len(), 1);
    assert_eq!(s.subscriptions[0].0, bs("new/#"));
    assert_eq!(s.deliveries.len(), 1);
    assert_eq!(&s.deliveries[0].message.payload[..], b"new");
    assert!(s.incoming_qos2.is_empty());
    assert_eq!(store.stats().messages, 1);
    store.close().unwrap();
}

#[test]
fn subscriptions_and_incoming_ids_that_cancel_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    write(&store, vec![session("s")]);
    let before = store.stats();
    write(
        &store,
        vec![
            subscribe("s", "a", QoS::AtLeastOnce),
            StoreOp::DeleteSubscription {
                client_id: bs("s"),
                filter: bs("a"),
            },
            StoreOp::AddIncomingQos2 {
                client_id: bs("s"),
                packet_id: 9,
            },
            StoreOp::RemoveIncomingQos2 {
                client_id: bs("s"),
                packet_id: 9,
            },
        ],
    );
    let after = store.stats();
    assert_eq!(after.rows_written, before.rows_written);
    let (store, snap) = reopen(store);
    assert!(snap.sessions[0].subscriptions.is_empty());
    assert!(snap.sessions[0].incoming_qos2.is_empty());
    store.close().unwrap();
}

/// A long random-looking sequence, written once in one group and once operation by operation,
/// ends in the same state.
#[test]
fn grouping_does_not_change_the_result() {
    let mut ops = Vec::new();
    let msgs: Vec<_> = (0..5)
        .map(|i| message(&format!("t/{i}"), &format!("m{i}")))
        .collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..400 {
        let c = ["a", "b", "c"][(next() % 3) as usize];
        let seq = next() % 6 + 1;
        let m = &msgs[(next() % 5) as usize];
        ops.push(match next() % 12 {
            0 => session(c),
            1 => StoreOp::DeleteSession { client_id: bs(c) },
            2 => subscribe(c, &format!("f/{}", next() % 3), QoS::AtLeastOnce),
            3 => StoreOp::DeleteSubscription {
                client_id: bs(c),
                filter: bs(&format!("f/{}", next() % 3)),
            },
            4 | 5 => delivery(c, seq, m, DeliveryState::Queued),
            6 => delivery(c, seq, m, DeliveryState::Sent(seq as u16)),
            7 => delete_delivery(c, seq),
            8 => StoreOp::AddIncomingQos2 {
                client_id: bs(c),
                packet_id: (seq % 3) as u16 + 1,
            },
            9 => StoreOp::RemoveIncomingQos2 {
                client_id: bs(c),
                packet_id: (seq % 3) as u16 + 1,
            },
            10 => StoreOp::PutRetained(m.clone()),
            _ => StoreOp::DeleteRetained {
                topic: m.topic.clone(),
            },
        });
    }
    // Every client ends with a session, so that their rows are kept.
    for c in ["a", "b", "c"] {
        ops.push(session(c));
    }
    ops.push(StoreOp::AddIncomingQos2 {
        client_id: bs("a"),
        packet_id: 3,
    });

    let summarize = |snap: &tern_core::Snapshot| {
        let mut sessions: Vec<_> = snap
            .sessions
            .iter()
            .map(|s| {
                let mut subs: Vec<_> = s.subscriptions.iter().map(|x| x.0.to_string()).collect();
                subs.sort();
                let dels: Vec<_> = s
                    .deliveries
                    .iter()
                    .map(|d| (d.seq, format!("{:?}", d.state), d.message.payload.clone()))
                    .collect();
                (
                    s.record.client_id.to_string(),
                    subs,
                    dels,
                    s.incoming_qos2.clone(),
                )
            })
            .collect();
        sessions.sort();
        let mut retained: Vec<_> = snap
            .retained
            .iter()
            .map(|m| (m.topic.to_string(), m.payload.clone()))
            .collect();
        retained.sort();
        (sessions, retained)
    };

    let one = tempfile::tempdir().unwrap();
    let (store, _) = open(one.path());
    write(&store, ops.clone());
    let (store, snap_one) = reopen(store);
    store.close().unwrap();

    let each = tempfile::tempdir().unwrap();
    let (store, _) = open(each.path());
    for chunk in ops.chunks(7) {
        write(&store, chunk.to_vec());
    }
    let (store, snap_each) = reopen(store);
    let messages = store.stats().messages;
    store.close().unwrap();

    assert_eq!(summarize(&snap_one), summarize(&snap_each));
    // The sequence leaves something of every kind, so the comparison means something.
    let (sessions, retained) = summarize(&snap_each);
    assert_eq!(sessions.len(), 3);
    assert!(sessions.iter().any(|s| !s.1.is_empty()));
    assert!(sessions.iter().any(|s| !s.2.is_empty()));
    assert!(sessions.iter().any(|s| !s.3.is_empty()));
    assert!(!retained.is_empty());
    // Stored messages are exactly those still referred to.
    let mut referred: Vec<_> = snap_each
        .sessions
        .iter()
        .flat_map(|s| s.deliveries.iter().map(|d| d.message.payload.clone()))
        .chain(snap_each.retained.iter().map(|m| m.payload.clone()))
        .collect();
    referred.sort();
    referred.dedup();
    assert_eq!(messages, referred.len() as u64);
}
