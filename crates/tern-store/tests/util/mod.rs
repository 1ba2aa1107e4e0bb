//! Helpers shared by the store's tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)] // test support: failing loudly is the point

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_codec::{ByteString, PublishProperties, QoS, SubscriptionOptions};
use tern_core::{
    DeliveryRecord, DeliveryState, Durability, Lsn, Message, SessionRecord, Snapshot, Store,
    StoreOp, Wake,
};
use tern_store::{DiskStore, StoreOptions};

/// Counts wake-ups.
#[derive(Default)]
pub struct Waker {
    count: Mutex<u32>,
    cv: Condvar,
}

impl Wake for Waker {
    fn wake(&self) {
        *self.count.lock().unwrap() += 1;
        self.cv.notify_all();
    }
}

impl Waker {
    pub fn count(&self) -> u32 {
        *self.count.lock().unwrap()
    }

    /// Waits (at most 10 s) for at least `n` wake-ups.
    pub fn wait_for(&self, n: u32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = self.count.lock().unwrap();
        while *c < n {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            c = self.cv.wait_timeout(c, deadline - now).unwrap().0;
        }
        true
    }
}

/// Waits (at most 10 s) until `lsn` is settled; returns its status.
pub fn settle(store: &DiskStore, lsn: Lsn) -> Durability {
    let w = Arc::new(Waker::default());
    store.notify(lsn, w.clone());
    assert!(w.wait_for(1), "operation {lsn} not settled within 10 s");
    store.durability(lsn)
}

pub fn options() -> StoreOptions {
    let mut o = StoreOptions::default();
    o.commit_window = Duration::ZERO;
    o
}

pub fn open(dir: &Path) -> (Arc<DiskStore>, Snapshot) {
    tern_store::open(dir, options()).expect("open")
}

pub fn reopen(store: Arc<DiskStore>) -> (Arc<DiskStore>, Snapshot) {
    let dir = store.dir().to_owned();
    store.close().expect("close");
    drop(store);
    open(&dir)
}

pub fn bs(s: &str) -> ByteString {
    ByteString::from(s)
}

pub fn message(topic: &str, payload: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: bs(topic),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: Some(bs("pub")),
    })
}

pub fn session(id: &str) -> StoreOp {
    StoreOp::PutSession(Box::new(SessionRecord {
        client_id: bs(id),
        expiry_interval: 3600,
        username: None,
        disconnected_at: None,
        will: None,
    }))
}

pub fn delivery(id: &str, seq: u64, m: &Arc<Message>, state: DeliveryState) -> StoreOp {
    StoreOp::PutDelivery(DeliveryRecord {
        client_id: bs(id),
        seq,
        message: m.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_identifiers: Box::new([]),
        shared: None,
        state,
    })
}

pub fn delete_delivery(id: &str, seq: u64) -> StoreOp {
    StoreOp::DeleteDelivery {
        client_id: bs(id),
        seq,
    }
}

pub fn subscribe(id: &str, filter: &str, qos: QoS) -> StoreOp {
    StoreOp::PutSubscription {
        client_id: bs(id),
        filter: bs(filter),
        options: SubscriptionOptions::with_qos(qos),
        identifier: None,
    }
}

/// Submits `ops` as one group: the writer is held while they are queued.
pub fn submit_group(store: &DiskStore, ops: Vec<StoreOp>) -> Lsn {
    store.pause();
    let mut last = 0;
    for op in ops {
        last = store.submit(op);
    }
    store.resume();
    last
}

/// Submits `ops` and waits until the last is settled; asserts it is durable.
pub fn write(store: &DiskStore, ops: Vec<StoreOp>) -> Lsn {
    let last = submit_group(store, ops);
    assert_eq!(settle(store, last), Durability::Durable);
    last
}

/// Whether this process ignores file permissions (root).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
