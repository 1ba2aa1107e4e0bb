//! Sequence numbers, durability status, wake-ups, and failed commits.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod util;

use std::sync::Arc;

use tern_core::{DeliveryState, Durability, Store, StoreOp};
use tern_store::StoreOptions;
use util::*;

#[test]
fn sequence_numbers_increase_and_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.pause();
    let a = store.submit(session("a"));
    let b = store.submit(session("b"));
    assert!(a >= 1 && b == a + 1);
    assert_eq!(store.durability(a), Durability::Pending);
    assert_eq!(store.durability(b), Durability::Pending);
    // 0 means "nothing to wait for".
    assert_eq!(store.durability(0), Durability::Durable);
    let w = Arc::new(Waker::default());
    store.notify(b, w.clone());
    assert_eq!(w.count(), 0);
    store.resume();
    assert!(w.wait_for(1));
    assert_eq!(w.count(), 1);
    assert_eq!(store.durability(a), Durability::Durable);
    assert_eq!(store.durability(b), Durability::Durable);
    // Already settled: woken at once.
    let w2 = Arc::new(Waker::default());
    store.notify(a, w2.clone());
    assert_eq!(w2.count(), 1);
    store.close().unwrap();
}

#[test]
fn waiters_are_woken_once_their_own_operation_is_settled() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.pause();
    let first = store.submit(session("a"));
    let w1 = Arc::new(Waker::default());
    store.notify(first, w1.clone());
    store.resume();
    assert!(w1.wait_for(1));
    store.pause();
    let second = store.submit(session("b"));
    let w2 = Arc::new(Waker::default());
    store.notify(second, w2.clone());
    let w3 = Arc::new(Waker::default());
    store.notify(second, w3.clone());
    assert_eq!(w2.count(), 0);
    store.resume();
    assert!(w2.wait_for(1) && w3.wait_for(1));
    assert_eq!(w1.count(), 1, "woken once");
    store.close().unwrap();
}

fn failing(n: u64) -> StoreOptions {
    let mut o = options();
    o = o.fail_commit(n);
    o
}

#[test]
fn a_failed_commit_fails_exactly_its_group() {
    let dir = tempfile::tempdir().unwrap();
    // Commit 1 is the first group below; 2 fails.
    let (store, _) = tern_store::open(dir.path(), failing(2)).unwrap();
    let m = message("t", "x");
    let g1 = write(
        &store,
        vec![session("a"), delivery("a", 1, &m, DeliveryState::Queued)],
    );

    store.pause();
    let f1 = store.submit(delivery("a", 2, &m, DeliveryState::Queued));
    let f2 = store.submit(StoreOp::PutRetained(message("r", "retained")));
    store.resume();
    assert_eq!(settle(&store, f2), Durability::Failed);
    assert_eq!(store.durability(f1), Durability::Failed);
    assert_eq!(store.durability(g1), Durability::Durable);
    assert_eq!(store.durability(g1 - 1), Durability::Durable);

    let g3 = write(&store, vec![delivery("a", 3, &m, DeliveryState::Queued)]);
    assert_eq!(store.durability(g3), Durability::Durable);
    // The next commit wrote the failed group's changes too: durable from now on.
    assert_eq!(store.durability(f1), Durability::Durable);
    assert_eq!(store.durability(f2), Durability::Durable);
    let s = store.stats();
    assert_eq!(s.failed_commits, 1);
    // The failed group's changes were written with the next one: the store ends as the broker's
    // state is.
    let (store, snap) = reopen(store);
    let seqs: Vec<_> = snap.sessions[0].deliveries.iter().map(|d| d.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(snap.retained.len(), 1);
    store.close().unwrap();
}

#[test]
fn a_failed_group_is_retried_until_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = tern_store::open(dir.path(), failing(1).fail_commit(2)).unwrap();
    let a = submit_group(
        &store,
        vec![
            session("a"),
            subscribe("a", "x", tern_codec::QoS::AtLeastOnce),
        ],
    );
    assert_eq!(settle(&store, a), Durability::Failed);
    // Without further operations, the writer retries (commit 2 fails too, commit 3 works).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.stats().commits < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "not retried: {:?}",
            store.stats()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(store.stats().failed_commits, 2);
    assert_eq!(
        store.durability(a),
        Durability::Durable,
        "written by the retry"
    );
    let (store, snap) = reopen(store);
    assert_eq!(snap.sessions.len(), 1);
    assert_eq!(snap.sessions[0].subscriptions.len(), 1);
    store.close().unwrap();
}

#[test]
fn a_failed_commit_leaves_the_message_count_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = tern_store::open(dir.path(), failing(2)).unwrap();
    let m = message("t", "x");
    write(
        &store,
        vec![session("a"), delivery("a", 1, &m, DeliveryState::Queued)],
    );
    assert_eq!(store.stats().messages, 1);
    let f = submit_group(
        &store,
        vec![
            delete_delivery("a", 1),
            StoreOp::PutRetained(message("r", "v")),
        ],
    );
    assert_eq!(settle(&store, f), Durability::Failed);
    assert_eq!(store.stats().messages, 1);
    // The next group writes the failed one's changes too.
    write(&store, vec![session("b")]);
    assert_eq!(store.stats().messages, 1);
    let (store, snap) = reopen(store);
    assert_eq!(snap.sessions.len(), 2);
    assert!(snap.sessions.iter().all(|s| s.deliveries.is_empty()));
    assert_eq!(snap.retained.len(), 1);
    store.close().unwrap();
}

#[test]
fn close_settles_everything_submitted_before_it_as_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let lsns: Vec<_> = (0..2000)
        .map(|i| store.submit(session(&format!("c{i}"))))
        .collect();
    store.close().unwrap();
    assert!(
        lsns.iter()
            .all(|&l| store.durability(l) == Durability::Durable)
    );
    let later = store.submit(session("late"));
    assert!(later > *lsns.last().unwrap());
    assert_eq!(store.durability(later), Durability::Failed);
    assert!(
        lsns.iter()
            .all(|&l| store.durability(l) == Durability::Durable)
    );
}

#[test]
fn operations_after_close_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    store.close().unwrap();
    let l = store.submit(session("late"));
    assert_eq!(store.durability(l), Durability::Failed);
    let w = Arc::new(Waker::default());
    store.notify(l, w.clone());
    assert_eq!(w.count(), 1);
    assert!(store.checkpoint().is_err());
}

#[test]
fn a_group_is_at_most_max_batch_operations() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.max_batch = 10;
    let (store, _) = tern_store::open(dir.path(), o).unwrap();
    let mut ops = vec![session("a")];
    let m = message("t", "x");
    for seq in 1..=99 {
        ops.push(delivery("a", seq, &m, DeliveryState::Queued));
    }
    let before = store.stats();
    write(&store, ops);
    let after = store.stats();
    assert_eq!(after.batches - before.batches, 10);
    assert_eq!(after.operations - before.operations, 100);
    store.close().unwrap();
}

#[test]
fn an_atomic_group_is_never_split_across_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let before = write(&store, vec![session("a")]);
    assert_eq!(settle(&store, before), Durability::Durable);
    let group = store.begin_atomic();
    let m = message("t", "x");
    let first = store.submit(delivery("a", 1, &m, DeliveryState::Queued));
    // Outside the group, submitted while it is open: waits behind it.
    let other = store.submit(session("b"));
    // Give the writer every chance to commit what it may.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(store.durability(first), Durability::Pending);
    assert_eq!(store.durability(other), Durability::Pending);
    let second = store.submit(delivery("a", 2, &m, DeliveryState::Queued));
    let commits = store.stats().commits;
    store.end_atomic(group);
    assert_eq!(settle(&store, second), Durability::Durable);
    assert_eq!(store.durability(first), Durability::Durable);
    assert_eq!(store.durability(other), Durability::Durable);
    assert_eq!(
        store.stats().commits,
        commits + 1,
        "one commit for the whole group"
    );
    store.close().unwrap();
}

/// Two publishers route at once: A's group opens, B's opens before A's closes, and A's last
/// operation (its incoming QoS 2 packet identifier, in the broker) comes after B's first. A
/// batch cut at B's start would commit A's copies without A's identifier: after a crash, A's
/// resend would be routed a second time (the kill -9 harness saw such QoS 2 duplicates).
#[test]
fn groups_that_overlap_in_time_are_committed_together() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path());
    let sessions = write(&store, vec![session("a"), session("b")]);
    assert_eq!(settle(&store, sessions), Durability::Durable);
    let m = message("t", "x");
    // The writer takes nothing until the groups overlap as described.
    store.pause();
    let a = store.begin_atomic();
    let a_copy = store.submit(delivery("a", 1, &m, DeliveryState::Queued));
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let (close_tx, close_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let (store, m) = (&store, &m);
        let other = s.spawn(move || {
            let b = store.begin_atomic();
            let b_copy = store.submit(delivery("b", 1, m, DeliveryState::Queued));
            opened_tx.send(b_copy).unwrap();
            close_rx.recv().unwrap();
            store.end_atomic(b);
        });
        let b_copy = opened_rx.recv().unwrap();
        let a_last = store.submit(StoreOp::AddIncomingQos2 {
            client_id: bs("a"),
            packet_id: 7,
        });
        assert!(a_copy < b_copy && b_copy < a_last);
        store.end_atomic(a);
        let commits = store.stats().commits;
        store.resume();
        // Give the writer every chance to commit what it may.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let while_b_is_open = store.durability(a_copy);
        close_tx.send(()).unwrap();
        other.join().unwrap();
        assert_eq!(
            while_b_is_open,
            Durability::Pending,
            "A's copy is not committed without A's last operation, which waits for B"
        );
        assert_eq!(settle(store, a_last), Durability::Durable);
        assert_eq!(store.durability(a_copy), Durability::Durable);
        assert_eq!(store.durability(b_copy), Durability::Durable);
        assert_eq!(
            store.stats().commits,
            commits + 1,
            "one commit for both groups"
        );
    });
    store.close().unwrap();
}
