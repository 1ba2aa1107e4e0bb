//! The broker's side of durability: the store it writes through, if any, and what a set of
//! changes waits for.

use std::sync::Arc;

use crate::broker::Wake;
use crate::store::{Durability, Lsn, Store, StoreOp};

/// The store the broker writes through. Without one (in-memory mode) every operation is
/// dropped and everything counts as durable at once.
#[derive(Clone, Default)]
pub(crate) struct Persistence {
    store: Option<Arc<dyn Store>>,
}

impl Persistence {
    pub(crate) fn new(store: Option<Arc<dyn Store>>) -> Self {
        Self { store }
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.store.is_some()
    }

    /// Submits `op`; its sequence number, or 0 without a store.
    pub(crate) fn submit(&self, op: StoreOp) -> Lsn {
        self.store.as_ref().map_or(0, |s| s.submit(op))
    }

    /// Where `lsn` stands; 0 is always durable.
    pub(crate) fn durability(&self, lsn: Lsn) -> Durability {
        match &self.store {
            Some(store) if lsn > 0 => store.durability(lsn),
            _ => Durability::Durable,
        }
    }

    /// Opens an atomic group, closed when the guard is dropped: everything submitted until
    /// then is committed together.
    pub(crate) fn atomic(&self) -> AtomicGuard {
        let group = self.store.as_ref().map_or(0, |s| s.begin_atomic());
        AtomicGuard {
            store: self.store.clone(),
            group,
        }
    }

    /// Wakes `waker` once `lsn` is settled.
    pub(crate) fn notify(&self, lsn: Lsn, waker: Arc<dyn Wake>) {
        match &self.store {
            Some(store) if lsn > 0 => store.notify(lsn, waker),
            _ => waker.wake(),
        }
    }
}

/// An open atomic group of store operations; dropping it closes the group.
#[must_use]
pub(crate) struct AtomicGuard {
    store: Option<Arc<dyn Store>>,
    group: Lsn,
}

impl Drop for AtomicGuard {
    fn drop(&mut self) {
        if let Some(store) = &self.store {
            store.end_atomic(self.group);
        }
    }
}
