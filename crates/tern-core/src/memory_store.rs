//! A store that keeps its operations in memory, for tests: commits and failures happen when
//! the test says so, and [`MemoryStore::snapshot`] replays what was committed, as a store
//! would recover it after a crash.
//!
//! Like the disk store, a failed commit's operations are [`Durability::Failed`] until the next
//! successful commit writes them too: the store's contents converge with the broker's memory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tern_codec::ByteString;

use crate::Message;
use crate::broker::Wake;
use crate::store::{
    DeliveryRecord, Durability, Lsn, SessionRecord, SessionSnapshot, Snapshot, Store, StoreOp,
};

#[derive(Default)]
struct State {
    ops: Vec<StoreOp>,
    /// Highest settled sequence number (committed or failed).
    settled: Lsn,
    /// Highest sequence number a successful commit covered (failed ones before it included).
    written: Lsn,
    waiters: Vec<(Lsn, Arc<dyn Wake>)>,
    auto_commit: bool,
}

/// An in-memory [`Store`] whose commits are driven by the caller.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// A store that commits only when [`MemoryStore::commit`] is called.
    #[must_use]
    pub fn manual() -> Self {
        Self::default()
    }

    /// A store where every operation is durable as soon as it is submitted.
    #[must_use]
    pub fn auto() -> Self {
        let store = Self::default();
        store.lock().auto_commit = true;
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits everything submitted so far; returns the highest sequence number committed.
    pub fn commit(&self) -> Lsn {
        self.settle(false)
    }

    /// Fails everything submitted and not yet settled, as a failed transaction would.
    pub fn fail(&self) -> Lsn {
        self.settle(true)
    }

    fn settle(&self, failed: bool) -> Lsn {
        let wake = {
            let mut st = self.lock();
            let last = st.ops.len() as Lsn;
            st.settled = last;
            if !failed {
                st.written = last;
            }
            let (due, waiting): (Vec<_>, Vec<_>) =
                st.waiters.drain(..).partition(|(l, _)| *l <= last);
            st.waiters = waiting;
            due
        };
        for (_, w) in &wake {
            w.wake();
        }
        self.lock().settled
    }

    /// Every operation submitted so far, in order.
    #[must_use]
    pub fn ops(&self) -> Vec<StoreOp> {
        self.lock().ops.clone()
    }

    /// What a store would recover: every operation up to the last successful commit
    /// (operations of a failed commit before it included, since it wrote them), replayed.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        replay(
            st.ops
                .iter()
                .take(usize::try_from(st.written).unwrap_or(usize::MAX)),
        )
    }
}

impl Store for MemoryStore {
    fn submit(&self, op: StoreOp) -> Lsn {
        let mut st = self.lock();
        st.ops.push(op);
        let lsn = st.ops.len() as Lsn;
        if st.auto_commit {
            st.settled = lsn;
            st.written = lsn;
        }
        lsn
    }

    fn durability(&self, lsn: Lsn) -> Durability {
        let st = self.lock();
        if lsn > st.settled {
            Durability::Pending
        } else if lsn <= st.written {
            // A later successful commit wrote what an earlier failed one could not.
            Durability::Durable
        } else {
            Durability::Failed
        }
    }

    fn notify(&self, lsn: Lsn, waker: Arc<dyn Wake>) {
        let mut st = self.lock();
        if lsn <= st.settled {
            drop(st);
            waker.wake();
        } else {
            st.waiters.push((lsn, waker));
        }
    }
}

#[derive(Default)]
struct SessionRows {
    record: Option<SessionRecord>,
    subscriptions: BTreeMap<ByteString, (tern_codec::SubscriptionOptions, Option<u32>)>,
    deliveries: BTreeMap<u64, DeliveryRecord>,
    incoming: std::collections::BTreeSet<u16>,
}

/// Applies operations in order, as a store's tables would, and returns what they hold.
fn replay<'a>(ops: impl Iterator<Item = &'a StoreOp>) -> Snapshot {
    let mut sessions: BTreeMap<ByteString, SessionRows> = BTreeMap::new();
    let mut retained: BTreeMap<ByteString, Arc<Message>> = BTreeMap::new();
    for op in ops {
        match op.clone() {
            StoreOp::PutSession(record) => {
                let id = record.client_id.clone();
                sessions.entry(id).or_default().record = Some(*record);
            }
            StoreOp::DeleteSession { client_id } => {
                sessions.remove(&client_id);
            }
            StoreOp::PutSubscription {
                client_id,
                filter,
                options,
                identifier,
            } => {
                sessions
                    .entry(client_id)
                    .or_default()
                    .subscriptions
                    .insert(filter, (options, identifier));
            }
            StoreOp::DeleteSubscription { client_id, filter } => {
                if let Some(s) = sessions.get_mut(&client_id) {
                    s.subscriptions.remove(&filter);
                }
            }
            StoreOp::PutDelivery(d) => {
                sessions
                    .entry(d.client_id.clone())
                    .or_default()
                    .deliveries
                    .insert(d.seq, d);
            }
            StoreOp::DeleteDelivery { client_id, seq } => {
                if let Some(s) = sessions.get_mut(&client_id) {
                    s.deliveries.remove(&seq);
                }
            }
            StoreOp::AddIncomingQos2 {
                client_id,
                packet_id,
            } => {
                sessions
                    .entry(client_id)
                    .or_default()
                    .incoming
                    .insert(packet_id);
            }
            StoreOp::RemoveIncomingQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(s) = sessions.get_mut(&client_id) {
                    s.incoming.remove(&packet_id);
                }
            }
            StoreOp::PutRetained(message) => {
                retained.insert(message.topic.clone(), message);
            }
            StoreOp::DeleteRetained { topic } => {
                retained.remove(&topic);
            }
        }
    }
    Snapshot {
        // Rows of a session whose record never made it (it was deleted, or only its children
        // were written) are dropped, as a store with foreign keys would.
        sessions: sessions
            .into_values()
            .filter_map(|rows| {
                Some(SessionSnapshot {
                    record: rows.record?,
                    subscriptions: rows
                        .subscriptions
                        .into_iter()
                        .map(|(f, (o, i))| (f, o, i))
                        .collect(),
                    deliveries: rows.deliveries.into_values().collect(),
                    incoming_qos2: rows.incoming.into_iter().collect(),
                })
            })
            .collect(),
        retained: retained.into_values().collect(),
    }
}
