//! Criterion benchmarks of the store's commit path: a persistent subscriber's QoS 1 messages,
//! written with group commit, in both durability modes (`fsync`: WAL with `synchronous=FULL`;
//! `flush`: `synchronous=NORMAL`), reported in messages per second.
//!
//! - `store_qos1/insert_then_delete/<mode>/<n>`: `n` deliveries inserted in one group and waited
//!   for until durable, then their `n` acknowledgements (deletes) likewise: two commits that
//!   write rows, the cost of messages acknowledged after they were made durable.
//! - `store_qos1/insert_and_delete/<mode>/<n>`: each delivery and its acknowledgement in the
//!   same group, which cancel out: the group commits without writing the messages.
//!
//! Each group is formed exactly (the writer is held while it is submitted, with the hook the
//! tests use), so a figure is the cost of one group of that size.
//!
//! Run with `cargo bench -p tern-store --bench store`. The store lives in a fresh directory
//! under the system temp dir (`TMPDIR`), so the figures are those of that file system. Under
//! `cargo test --benches` (criterion's test mode: each benchmark runs once) only small groups
//! run. The `store_bench` example measures sustained throughput and recovery time.

use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{ByteString, PublishProperties, QoS};
use tern_core::{
    DeliveryRecord, DeliveryState, Durability, Lsn, Message, SessionRecord, Store, StoreOp, Wake,
};
use tern_store::{DiskStore, DurabilityMode, StoreOptions};

/// Whether criterion runs in test mode (`cargo test --benches`, or `--test`) or only lists the
/// benchmarks; criterion measures only when given `--bench`.
fn smoke() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    !has("--bench") || has("--test") || has("--list")
}

/// Wakes the benchmark when a commit is durable.
#[derive(Default)]
struct Signal {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake for Signal {
    fn wake(&self) {
        *self.flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }
}

/// Waits until `lsn` is durable; panics if its commit failed.
fn wait_durable(store: &DiskStore, lsn: Lsn, signal: &Arc<Signal>) {
    loop {
        match store.durability(lsn) {
            Durability::Durable => return,
            Durability::Failed => panic!("commit failed"),
            Durability::Pending => {}
        }
        store.notify(lsn, signal.clone());
        let mut f = signal.flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*f {
            f = signal.cv.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f = false;
    }
}

/// One persistent subscriber's store.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<DiskStore>,
    client: ByteString,
    message: Arc<Message>,
    signal: Arc<Signal>,
    /// The next delivery sequence number.
    seq: u64,
}

impl Fixture {
    fn new(durability: DurabilityMode) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tern-store-bench")
            .tempdir()
            .expect("temp dir");
        let mut options = StoreOptions::default();
        options.durability = durability;
        let (store, _) = tern_store::open(dir.path(), options).expect("open the store");
        let client = ByteString::from_static("subscriber");
        let signal = Arc::new(Signal::default());
        let lsn = store.submit(StoreOp::PutSession(Box::new(SessionRecord {
            client_id: client.clone(),
            expiry_interval: 3600,
            username: None,
            disconnected_at: None,
            will: None,
        })));
        wait_durable(&store, lsn, &signal);
        let message = Arc::new(Message {
            topic: ByteString::from_static("sensors/building-1/floor-3/temperature"),
            payload: Bytes::from(vec![0xa5; 64]),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: Some(ByteString::from_static("publisher")),
        });
        Self {
            _dir: dir,
            store,
            client,
            message,
            signal,
            seq: 0,
        }
    }

    fn insert(&self, seq: u64) -> Lsn {
        self.store.submit(StoreOp::PutDelivery(DeliveryRecord {
            client_id: self.client.clone(),
            seq,
            message: self.message.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_identifiers: Box::new([]),
            shared: None,
            state: DeliveryState::Queued,
        }))
    }

    fn delete(&self, seq: u64) -> Lsn {
        self.store.submit(StoreOp::DeleteDelivery {
            client_id: self.client.clone(),
            seq,
        })
    }

    /// `n` inserts in one group, durable, then `n` deletes in one group, durable.
    fn insert_then_delete(&mut self, n: u64) {
        let first = self.seq + 1;
        self.seq += n;
        let mut lsn = 0;
        self.store.pause();
        for seq in first..=self.seq {
            lsn = self.insert(seq);
        }
        self.store.resume();
        wait_durable(&self.store, lsn, &self.signal);
        self.store.pause();
        for seq in first..=self.seq {
            lsn = self.delete(seq);
        }
        self.store.resume();
        wait_durable(&self.store, lsn, &self.signal);
    }

    /// `n` inserts and their deletes in one group, durable.
    fn insert_and_delete(&mut self, n: u64) {
        let first = self.seq + 1;
        self.seq += n;
        let mut lsn = 0;
        self.store.pause();
        for seq in first..=self.seq {
            self.insert(seq);
            lsn = self.delete(seq);
        }
        self.store.resume();
        wait_durable(&self.store, lsn, &self.signal);
    }

    /// The store holds no delivery and wrote what it should.
    fn check(&self) {
        let stats = self.store.stats();
        assert_eq!(stats.failed_commits, 0);
        assert_eq!(stats.messages, 0, "deliveries left in the store");
        self.store.close().expect("close the store");
    }
}

fn bench(c: &mut Criterion) {
    let sizes: &[u64] = if smoke() { &[1, 10] } else { &[1, 100, 1000] };
    let mut group = c.benchmark_group("store_qos1");
    for (mode_name, mode) in [
        ("fsync", DurabilityMode::Fsync),
        ("flush", DurabilityMode::Flush),
    ] {
        for &n in sizes {
            group.throughput(Throughput::Elements(n));
            let mut f = Fixture::new(mode);
            let rows_before = f.store.stats().rows_written;
            group.bench_function(
                BenchmarkId::new(format!("insert_then_delete/{mode_name}"), n),
                |b| b.iter(|| f.insert_then_delete(n)),
            );
            // Each message was written and then deleted.
            assert!(f.store.stats().rows_written - rows_before >= 2 * f.seq);
            f.check();

            let mut f = Fixture::new(mode);
            let rows_before = f.store.stats().rows_written;
            group.bench_function(
                BenchmarkId::new(format!("insert_and_delete/{mode_name}"), n),
                |b| b.iter(|| f.insert_and_delete(n)),
            );
            // Each message cancelled out with its acknowledgement.
            assert_eq!(f.store.stats().rows_written, rows_before);
            f.check();
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
