//! Measures the store: durable delivery throughput with group commit, and recovery time.
//!
//! ```text
//! cargo run --release -p tern-store --example store_bench -- throughput [options]
//! cargo run --release -p tern-store --example store_bench -- recovery [options]
//! ```
//!
//! Options: `--durability fsync|flush`, `--payload BYTES`,
//! `--messages N`, `--inflight N` (messages waiting for durability at once),
//! `--ack same|later` (the subscriber's acknowledgement arrives in the same group as the
//! message, so the two cancel out, or only after the message is durable), `--window-us N`,
//! `--max-batch N`, `--retained N`, `--sessions N`, `--dir PATH` (default: a fresh directory
//! under the system temp dir, removed at the end; `recovery` reopens a store already there
//! instead of filling it).
//!
//! Throughput models one persistent subscriber: per message PutDelivery(Queued),
//! PutDelivery(Sent), DeleteDelivery; a message counts once its Sent state is durable.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_codec::{ByteString, PublishProperties, QoS, SubscriptionOptions};
use tern_core::{
    DeliveryRecord, DeliveryState, Durability, Message, SessionRecord, Store, StoreOp, Wake,
};
use tern_store::{DurabilityMode, StoreOptions};

struct Args {
    cmd: String,
    durability: DurabilityMode,
    payload: usize,
    messages: u64,
    inflight: usize,
    ack_same: bool,
    window_us: u64,
    max_batch: usize,
    retained: u64,
    sessions: u64,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        cmd: String::new(),
        durability: DurabilityMode::Fsync,
        payload: 64,
        messages: 200_000,
        inflight: 10_000,
        ack_same: true,
        window_us: tern_store::DEFAULT_COMMIT_WINDOW_US,
        max_batch: tern_store::DEFAULT_MAX_BATCH,
        retained: 1_000_000,
        sessions: 10_000,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    a.cmd = it.next().unwrap_or_default();
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--durability" => {
                a.durability = if v == "flush" {
                    DurabilityMode::Flush
                } else {
                    DurabilityMode::Fsync
                }
            }
            "--payload" => a.payload = v.parse().expect("--payload"),
            "--messages" => a.messages = v.parse().expect("--messages"),
            "--inflight" => a.inflight = v.parse().expect("--inflight"),
            "--ack" => a.ack_same = v == "same",
            "--window-us" => a.window_us = v.parse().expect("--window-us"),
            "--max-batch" => a.max_batch = v.parse().expect("--max-batch"),
            "--retained" => a.retained = v.parse().expect("--retained"),
            "--sessions" => a.sessions = v.parse().expect("--sessions"),
            "--dir" => a.dir = Some(PathBuf::from(v)),
            _ => panic!("unknown option {k}"),
        }
    }
    a
}

/// Wakes the driver.
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

impl Signal {
    fn wait(&self) {
        let mut f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*f {
            f = self.cv.wait(f).unwrap_or_else(|e| e.into_inner());
        }
        *f = false;
    }
}

fn message(topic: &str, payload: usize, n: u64) -> Arc<Message> {
    let mut p = vec![b'x'; payload];
    for (i, b) in n.to_le_bytes().iter().enumerate() {
        if i < p.len() {
            p[i] = *b;
        }
    }
    Arc::new(Message {
        topic: ByteString::from(topic),
        payload: Bytes::from(p),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
        publisher: Some(ByteString::from_static("publisher")),
    })
}

fn session(id: &ByteString) -> StoreOp {
    StoreOp::PutSession(Box::new(SessionRecord {
        client_id: id.clone(),
        expiry_interval: 3600,
        username: None,
        disconnected_at: None,
        will: None,
    }))
}

fn delivery(id: &ByteString, seq: u64, m: &Arc<Message>, state: DeliveryState) -> StoreOp {
    StoreOp::PutDelivery(DeliveryRecord {
        client_id: id.clone(),
        seq,
        message: m.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_identifiers: Box::new([]),
        shared: None,
        state,
    })
}

fn dir(a: &Args) -> (PathBuf, bool) {
    match &a.dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = std::env::temp_dir().join(format!("tern-store-bench-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            (d, true)
        }
    }
}

fn options(a: &Args) -> StoreOptions {
    let mut o = StoreOptions::default();
    o.durability = a.durability;
    o.commit_window = Duration::from_micros(a.window_us);
    o.max_batch = a.max_batch;
    o
}

fn throughput(a: &Args) {
    let (d, remove) = dir(a);
    let (store, _) = tern_store::open(&d, options(a)).expect("open");
    let client = ByteString::from_static("subscriber");
    let l = store.submit(session(&client));
    let signal = Arc::new(Signal::default());
    store.notify(l, signal.clone());
    signal.wait();
    let before = store.stats();

    let start = Instant::now();
    let mut pending: VecDeque<(u64, u64)> = VecDeque::new();
    let mut next = 1u64;
    let mut done = 0u64;
    let mut last_lsn = 0;
    while done < a.messages {
        while next <= a.messages && pending.len() < a.inflight {
            let m = message("bench/topic", a.payload, next);
            store.submit(delivery(&client, next, &m, DeliveryState::Queued));
            let pid = (next % 65_535 + 1) as u16;
            let l = store.submit(delivery(&client, next, &m, DeliveryState::Sent(pid)));
            if a.ack_same {
                last_lsn = store.submit(StoreOp::DeleteDelivery {
                    client_id: client.clone(),
                    seq: next,
                });
            } else {
                last_lsn = l;
            }
            pending.push_back((l, next));
            next += 1;
        }
        let (front, _) = *pending.front().expect("pending");
        if store.durability(front) == Durability::Pending {
            store.notify(front, signal.clone());
            signal.wait();
        }
        while let Some(&(l, seq)) = pending.front() {
            match store.durability(l) {
                Durability::Pending => break,
                Durability::Failed => panic!("commit failed"),
                Durability::Durable => {}
            }
            pending.pop_front();
            done += 1;
            if !a.ack_same {
                last_lsn = store.submit(StoreOp::DeleteDelivery {
                    client_id: client.clone(),
                    seq,
                });
            }
        }
    }
    let durable_at = start.elapsed();
    // The acknowledgements too.
    if store.durability(last_lsn) == Durability::Pending {
        store.notify(last_lsn, signal.clone());
        signal.wait();
    }
    let all = start.elapsed();
    let s = store.stats();
    let commits = s.commits - before.commits;
    let batches = s.batches - before.batches;
    println!(
        "durability={:?} payload={} ack={} window_us={} max_batch={} messages={} inflight={}: \
         {:.0} durable msgs/s ({:.2} s; all acks durable after {:.2} s), {} groups ({:.0} ops/group), {} commits, \
         {} rows written, {:.2} rows/msg, left={} messages",
        a.durability,
        a.payload,
        if a.ack_same { "same" } else { "later" },
        a.window_us,
        a.max_batch,
        a.messages,
        a.inflight,
        a.messages as f64 / durable_at.as_secs_f64(),
        durable_at.as_secs_f64(),
        all.as_secs_f64(),
        batches,
        (s.operations - before.operations) as f64 / batches.max(1) as f64,
        commits,
        s.rows_written - before.rows_written,
        (s.rows_written - before.rows_written) as f64 / a.messages as f64,
        s.messages,
    );
    store.close().expect("close");
    drop(store);
    if remove {
        let _ = std::fs::remove_dir_all(&d);
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_size(d: &std::path::Path) -> u64 {
    std::fs::read_dir(d)
        .map(|r| {
            r.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn recovery(a: &Args) {
    let (d, remove) = dir(a);
    // A store left by an earlier run (`--dir`) is reopened as it is.
    let fill = !d.join("tern.db").exists();
    if fill {
        let mut o = options(a);
        o.max_batch = 50_000;
        let (store, _) = tern_store::open(&d, o).expect("open");
        let t = Instant::now();
        let mut last = 0;
        for i in 0..a.retained {
            let topic = format!("sensors/{}/{}/value", i / 1000, i % 1000);
            let mut m = message(&topic, a.payload, i);
            Arc::get_mut(&mut m).expect("fresh").retain = true;
            last = store.submit(StoreOp::PutRetained(m));
        }
        for s in 0..a.sessions {
            let id = ByteString::from(format!("client-{s}"));
            store.submit(session(&id));
            for f in 0..5 {
                store.submit(StoreOp::PutSubscription {
                    client_id: id.clone(),
                    filter: ByteString::from(format!("devices/{s}/{f}/#")),
                    options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
                    identifier: Some(f + 1),
                });
            }
            // 10 deliveries.
            for q in 0..10u64 {
                let m = message(&format!("devices/{s}/0/x"), a.payload, q);
                let state = if q == 0 {
                    DeliveryState::Sent(1)
                } else {
                    DeliveryState::Queued
                };
                store.submit(delivery(&id, q + 1, &m, state));
            }
            last = store.submit(StoreOp::AddIncomingQos2 {
                client_id: id.clone(),
                packet_id: 7,
            });
        }
        let signal = Arc::new(Signal::default());
        store.notify(last, signal.clone());
        signal.wait();
        println!(
            "filled {} retained + {} sessions (5 subscriptions, 10 deliveries, 1 incoming id each) in {:.1} s",
            a.retained,
            a.sessions,
            t.elapsed().as_secs_f64()
        );
        store.close().expect("close");
    }
    let size = dir_size(&d);
    let rss0 = rss_mib();
    let t = Instant::now();
    let (store, snap) = tern_store::open(&d, options(a)).expect("reopen");
    let took = t.elapsed();
    let rss1 = rss_mib();
    assert_eq!(snap.retained.len() as u64, a.retained);
    assert_eq!(snap.sessions.len() as u64, a.sessions);
    println!(
        "recovered {} retained, {} sessions ({} deliveries) in {:.2} s \
         (check + load + index), store {:.0} MiB, RSS +{:.0} MiB (snapshot and writer index)",
        snap.retained.len(),
        snap.sessions.len(),
        snap.sessions
            .iter()
            .map(|s| s.deliveries.len())
            .sum::<usize>(),
        took.as_secs_f64(),
        size as f64 / (1 << 20) as f64,
        rss1 - rss0,
    );
    drop(snap);
    store.close().expect("close");
    drop(store);
    if remove {
        let _ = std::fs::remove_dir_all(&d);
    }
}

fn main() {
    let a = args();
    match a.cmd.as_str() {
        "throughput" => throughput(&a),
        "recovery" => recovery(&a),
        _ => eprintln!("usage: store_bench throughput|recovery [options] (see the source)"),
    }
}
