//! The writer thread: group commit, durability tracking and wake-ups.
//!
//! [`Shared::submit`] appends to a queue under a short mutex and wakes the writer when the queue
//! was empty. The writer takes the whole queue (at most `max_batch` operations) as one batch: at
//! once when a commit just finished (everything that arrived during it), or, when it was idle,
//! after `commit_window` from the first operation or as soon as `max_batch` are queued. It folds
//! the batch into its net effect ([`Net`]), plans the rows ([`Index::plan`]), commits them in one
//! transaction, publishes the batch's last sequence number and wakes the waiters up to it.
//!
//! A failed commit marks the batch's sequence numbers failed; its net effect is kept and written
//! with the next batch, so that the store converges to the broker's state when writes work again.
//!
//! # Atomic groups
//!
//! A group ([`Shared::begin_atomic`]) owns every operation submitted while it is open, from any
//! thread. Groups opened by different threads overlap in time, so their operations interleave:
//! group A may submit 10..=12, group B (opened meanwhile) 13..=20 and A again 21. Cutting a
//! batch at the start of the earliest open group (13, while B is open) would commit 10..=12
//! without 21, and a crash would keep half of A. So groups that overlap in time form one *run*
//! (it begins when a group opens while none is, and ends when the last open group closes), and
//! a batch ends only outside runs: before the open run, and never inside a closed one, even
//! when `max_batch` would cut there.
//!
//! While the writer waits for an open run to end, new groups wait in `begin_atomic` until it
//! has (the *barrier*): otherwise groups that keep overlapping would hold every operation
//! back. Groups are short (one PUBLISH routed) and never wait for anything while open, so the
//! wait is short. A group opened by a thread that already has one open (nesting) never waits.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tern_core::{Durability, Lsn, StoreOp, Wake};

use crate::codec::Clocks;
use crate::index::{Index, Journal, WriteSet};
use crate::net::Net;
use crate::{StoreError, StoreStats};

/// An engine behind the writer.
pub(crate) trait Backend: Send {
    /// Writes `ws` in one transaction and commits it with the configured durability. With
    /// `fail` (fault injection), does everything but the commit and rolls back instead.
    fn apply(&mut self, ws: &WriteSet, fail: bool) -> Result<(), String>;
    /// Moves committed data into the main file and trims the log.
    fn checkpoint(&mut self) -> Result<(), String>;
    /// Last work before the engine is dropped (a checkpoint).
    fn close(&mut self) -> Result<(), String>;
}

/// Locks, ignoring poisoning: every critical section leaves its data consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

type Reply = mpsc::Sender<Result<(), StoreError>>;

struct Queue {
    ops: Vec<StoreOp>,
    /// Sequence number of `ops[0]`.
    first: Lsn,
    /// Next sequence number to give.
    next: Lsn,
    closed: bool,
    /// The writer has stopped: nothing queued now will be written.
    stopped: bool,
    /// The writer takes no batch (fault injection: gathers a batch deterministically).
    paused: bool,
    /// Checkpoint requests: answered once everything up to the number is settled.
    checkpoints: Vec<(Lsn, Reply)>,
    /// Atomic groups open now (see the module documentation).
    open_groups: usize,
    /// While `open_groups > 0`: the first sequence number of the open run. No batch may take an
    /// operation at or after it.
    run_start: Lsn,
    /// Closed runs not entirely taken yet, oldest first: `(first, end)`, `end` excluded. No
    /// batch may end strictly inside one.
    runs: VecDeque<(Lsn, Lsn)>,
    /// The writer waits for the open run to end: new groups wait until it has.
    barrier: bool,
}

impl Queue {
    /// How many queued operations a batch of at most `max` may take now: none from the open
    /// run of atomic groups on, and none of a closed run unless all of it (which may exceed
    /// `max`, by at most the run's length).
    fn takeable(&self, max: usize) -> usize {
        let first = self.first;
        let count = |to: Lsn| usize::try_from(to.saturating_sub(first)).unwrap_or(usize::MAX);
        let limit = if self.open_groups > 0 {
            count(self.run_start).min(self.ops.len())
        } else {
            self.ops.len()
        };
        if limit <= max {
            return limit;
        }
        // Would the batch end inside a closed run? Runs are disjoint and sorted.
        let end = first + max as u64;
        let i = self.runs.partition_point(|&(_, e)| e <= end);
        match self.runs.get(i) {
            Some(&(s, _)) if s < end && s > first => count(s),
            Some(&(s, e)) if s < end => count(e).min(limit),
            _ => max,
        }
    }

    /// When everything queued belongs to the open run, makes new groups wait until it ends, so
    /// that groups that keep overlapping cannot hold every operation back.
    fn raise_barrier_if_blocked(&mut self) {
        if !self.paused && self.open_groups > 0 && !self.ops.is_empty() && self.takeable(1) == 0 {
            self.barrier = true;
        }
    }

    /// Forgets the closed runs that batches have taken entirely.
    fn drop_taken_runs(&mut self) {
        while self.runs.front().is_some_and(|&(_, e)| e <= self.first) {
            self.runs.pop_front();
        }
    }
}

thread_local! {
    /// Atomic groups the current thread has open (any store): a nested group never waits at
    /// the barrier, since the group around it would never close.
    static GROUPS_OPEN_HERE: Cell<usize> = const { Cell::new(0) };
}

/// Tuning of the writer.
#[derive(Clone, Debug)]
pub(crate) struct WriterConfig {
    pub(crate) commit_window: Duration,
    /// Commit numbers (1-based, counting commits that write something) that fail.
    pub(crate) fail_commits: Vec<u64>,
}

/// State shared by the handle and the writer.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Signalled when the barrier is lifted (the open run ended).
    quiet: Condvar,
    max_batch: usize,
    /// Every operation up to this one is settled (durable or failed).
    settled: AtomicU64,
    /// The highest failed sequence number (0: none), to answer the common case without a lock.
    failed_max: AtomicU64,
    /// Failed ranges, inclusive, oldest first; adjacent ranges are merged.
    failed: Mutex<Vec<(Lsn, Lsn)>>,
    waiters: Mutex<BTreeMap<Lsn, Vec<Arc<dyn Wake>>>>,
    pub(crate) stats: Stats,
    /// Where the latency of each successful commit is recorded (the broker's metrics).
    pub(crate) commit_latency: std::sync::OnceLock<Arc<tern_core::Histogram>>,
}

/// At most this many separate failed ranges are kept; beyond, the two oldest are merged (the
/// successes between them are then reported failed: safe, as failure only withholds acks).
const MAX_FAILED_RANGES: usize = 1024;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) ops: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) failed_commits: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) messages: AtomicU64,
}

impl Shared {
    pub(crate) fn new(max_batch: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                ops: Vec::new(),
                first: 1,
                next: 1,
                closed: false,
                stopped: false,
                paused: false,
                checkpoints: Vec::new(),
                open_groups: 0,
                run_start: 1,
                runs: VecDeque::new(),
                barrier: false,
            }),
            ready: Condvar::new(),
            quiet: Condvar::new(),
            max_batch: max_batch.max(1),
            settled: AtomicU64::new(0),
            failed_max: AtomicU64::new(0),
            failed: Mutex::new(Vec::new()),
            waiters: Mutex::new(BTreeMap::new()),
            stats: Stats::default(),
            commit_latency: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn submit(&self, op: StoreOp) -> Lsn {
        let mut q = lock(&self.queue);
        let lsn = q.next;
        q.next += 1;
        if q.stopped {
            // Nothing will write it; everything before it is settled.
            self.fail(lsn, lsn);
            self.settle(lsn);
            return lsn;
        }
        if q.ops.is_empty() {
            q.first = lsn;
        }
        q.ops.push(op);
        let n = q.ops.len();
        drop(q);
        if n == 1 || n == self.max_batch {
            self.ready.notify_one();
        }
        lsn
    }

    /// Opens an atomic group: the operations submitted until [`Shared::end_atomic`] go to the
    /// disk in one commit, together with those of every group open at the same time. Waits
    /// while the writer waits for the open groups to close (unless this thread has a group
    /// open). Returns the first sequence number of the run it joined.
    pub(crate) fn begin_atomic(&self) -> Lsn {
        let nested = GROUPS_OPEN_HERE.with(|n| {
            let open = n.get();
            n.set(open + 1);
            open > 0
        });
        let mut q = lock(&self.queue);
        while q.barrier && !nested {
            q = self.quiet.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        if q.open_groups == 0 {
            q.run_start = q.next;
        }
        q.open_groups += 1;
        q.run_start
    }

    /// Closes an atomic group opened by [`Shared::begin_atomic`]. When it was the last one open,
    /// the run ends: its operations may be taken, and the groups waiting at the barrier open.
    pub(crate) fn end_atomic(&self, _run: Lsn) {
        GROUPS_OPEN_HERE.with(|n| n.set(n.get().saturating_sub(1)));
        let mut q = lock(&self.queue);
        if q.open_groups == 0 {
            return; // not opened here
        }
        q.open_groups -= 1;
        if q.open_groups > 0 {
            return; // the run goes on: nothing more can be taken
        }
        let (start, end) = (q.run_start, q.next);
        // Whether the run held back operations, which the writer may take now. Most runs hold
        // none (a PUBLISH with no durable recipient submits nothing), and then the writer has
        // nothing new to see: waking it anyway cost a futex call per PUBLISH, and a wake-up of
        // the writer thread.
        let held_back = end > start.max(q.first);
        if held_back {
            q.runs.push_back((start, end));
        }
        let lifted = mem::replace(&mut q.barrier, false);
        drop(q);
        if lifted {
            self.quiet.notify_all();
        }
        if held_back {
            self.ready.notify_one();
        }
    }

    pub(crate) fn durability(&self, lsn: Lsn) -> Durability {
        if lsn == 0 {
            return Durability::Durable;
        }
        if lsn > self.settled.load(Ordering::Acquire) {
            return Durability::Pending;
        }
        if lsn > self.failed_max.load(Ordering::Acquire) {
            return Durability::Durable;
        }
        let failed = lock(&self.failed);
        // Ranges are sorted and disjoint.
        let i = failed.partition_point(|&(_, end)| end < lsn);
        if failed.get(i).is_some_and(|&(start, _)| start <= lsn) {
            Durability::Failed
        } else {
            Durability::Durable
        }
    }

    pub(crate) fn notify(&self, lsn: Lsn, waker: Arc<dyn Wake>) {
        let mut w = lock(&self.waiters);
        if lsn <= self.settled.load(Ordering::Acquire) {
            drop(w);
            waker.wake();
            return;
        }
        w.entry(lsn).or_default().push(waker);
    }

    fn fail(&self, start: Lsn, end: Lsn) {
        let mut f = lock(&self.failed);
        match f.last_mut() {
            Some(last) if last.1 + 1 >= start => last.1 = last.1.max(end),
            _ => f.push((start, end)),
        }
        if f.len() > MAX_FAILED_RANGES {
            let second = f.remove(1);
            f[0].1 = second.1;
        }
        self.failed_max.fetch_max(end, Ordering::AcqRel);
    }

    fn clear_failed(&self) {
        let mut f = lock(&self.failed);
        if !f.is_empty() {
            f.clear();
            self.failed_max.store(0, Ordering::Release);
        }
    }

    fn settle(&self, upto: Lsn) {
        self.settled.fetch_max(upto, Ordering::AcqRel);
        let woken = {
            let mut w = lock(&self.waiters);
            let rest = w.split_off(&(upto + 1));
            mem::replace(&mut *w, rest)
        };
        for waker in woken.into_values().flatten() {
            waker.wake();
        }
    }

    /// Marks the writer stopped: fails what is still queued and answers the checkpoint requests.
    pub(crate) fn stop(&self) {
        let mut q = lock(&self.queue);
        q.stopped = true;
        q.closed = true;
        q.barrier = false;
        self.quiet.notify_all();
        let ops = mem::take(&mut q.ops);
        let first = q.first;
        q.first += ops.len() as u64;
        let checkpoints = mem::take(&mut q.checkpoints);
        // Failed under the queue lock, so that failed ranges stay in order with those of later
        // submits.
        let upto = q.next - 1;
        if !ops.is_empty() {
            self.fail(first, first + ops.len() as u64 - 1);
        }
        if upto > self.settled.load(Ordering::Acquire) {
            // Operations taken by a writer that panicked.
            let from = self.settled.load(Ordering::Acquire) + 1;
            self.fail(from, upto);
        }
        drop(q);
        self.settle(upto);
        for (_, reply) in checkpoints {
            let _ = reply.send(Err(StoreError::Closed));
        }
    }

    /// Asks the writer to stop once the queue is written.
    pub(crate) fn close(&self) {
        lock(&self.queue).closed = true;
        self.ready.notify_one();
    }

    /// Holds (`true`) or releases the writer.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub(crate) fn pause(&self, paused: bool) {
        lock(&self.queue).paused = paused;
        self.ready.notify_one();
    }

    pub(crate) fn request_checkpoint(&self) -> mpsc::Receiver<Result<(), StoreError>> {
        let (tx, rx) = mpsc::channel();
        let mut q = lock(&self.queue);
        if q.stopped {
            let _ = tx.send(Err(StoreError::Closed));
        } else {
            let upto = q.next - 1;
            q.checkpoints.push((upto, tx));
        }
        drop(q);
        self.ready.notify_one();
        rx
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let s = &self.stats;
        StoreStats {
            operations: s.ops.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            failed_commits: s.failed_commits.load(Ordering::Relaxed),
            rows_written: s.rows.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            settled: self.settled.load(Ordering::Acquire),
        }
    }
}

/// The writer's own state.
pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) backend: Box<dyn Backend>,
    pub(crate) index: Index,
    /// The net effect not written yet (of a failed batch, or found at load).
    pub(crate) carry: Net,
    pub(crate) config: WriterConfig,
    pub(crate) commits: u64,
    pub(crate) path: std::path::PathBuf,
}

impl Writer {
    /// Runs until closed; returns an error if something could not be written at the end.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        let shared = self.shared.clone();
        let mut busy = !self.carry.is_empty();
        let mut failures = 0u32;
        loop {
            let (ops, first, checkpoints) = {
                let mut q = lock(&shared.queue);
                while (q.takeable(usize::MAX) == 0
                    && !q.closed
                    && q.checkpoints.is_empty()
                    && !busy)
                    || (q.paused && !q.closed)
                {
                    q.raise_barrier_if_blocked();
                    q = shared.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
                q.raise_barrier_if_blocked();
                if !busy && !q.ops.is_empty() && !self.config.commit_window.is_zero() {
                    // Idle before: hold the batch open for the window.
                    let deadline = Instant::now() + self.config.commit_window;
                    while q.takeable(usize::MAX) < shared.max_batch && !q.closed {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        q = shared
                            .ready
                            .wait_timeout(q, deadline - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
                let first = q.first;
                let take = q.takeable(shared.max_batch);
                let ops = if take == q.ops.len() {
                    mem::take(&mut q.ops)
                } else {
                    q.ops.drain(..take).collect()
                };
                q.first += ops.len() as u64;
                q.drop_taken_runs();
                let settled_after = first + ops.len() as u64 - 1;
                let ready = q
                    .checkpoints
                    .iter()
                    .filter(|(upto, _)| *upto <= settled_after)
                    .count();
                let checkpoints: Vec<_> = if ready > 0 {
                    let (now, later) = mem::take(&mut q.checkpoints)
                        .into_iter()
                        .partition(|(upto, _)| *upto <= settled_after);
                    q.checkpoints = later;
                    now
                } else {
                    Vec::new()
                };
                if ops.is_empty() && q.closed && checkpoints.is_empty() && self.carry.is_empty() {
                    break;
                }
                (ops, first, checkpoints)
            };

            busy = false;
            if !ops.is_empty() || !self.carry.is_empty() {
                let ok = self.write(ops, first);
                busy = true;
                if ok {
                    failures = 0;
                } else {
                    failures += 1;
                    // Back off while writes fail (disk full): 5 ms doubling to 250 ms.
                    let pause = Duration::from_millis(5u64 << failures.min(6))
                        .min(Duration::from_millis(250));
                    std::thread::sleep(pause);
                    if lock(&shared.queue).closed && failures >= 3 {
                        // Closing with a store that does not take writes: give up.
                        break;
                    }
                }
            }
            for (_, reply) in checkpoints {
                let r = self
                    .backend
                    .checkpoint()
                    .map_err(|detail| StoreError::Write {
                        path: self.path.clone(),
                        detail,
                    });
                let _ = reply.send(r);
            }
        }
        shared.stop();
        let unsaved = self.carry.ops;
        let closed = self.backend.close();
        if !self.carry.is_empty() {
            return Err(StoreError::Write {
                path: self.path.clone(),
                detail: format!("{unsaved} changes could not be written before shutdown"),
            });
        }
        closed.map_err(|detail| StoreError::Write {
            path: self.path.clone(),
            detail,
        })
    }

    /// Writes one batch; `false` if the commit failed.
    fn write(&mut self, ops: Vec<StoreOp>, first: Lsn) -> bool {
        let shared = self.shared.clone();
        let n = ops.len() as u64;
        let last = first + n - 1;
        for op in ops {
            self.carry.apply(op);
        }
        shared.stats.ops.fetch_add(n, Ordering::Relaxed);
        shared.stats.batches.fetch_add(1, Ordering::Relaxed);
        let mut journal = Journal::default();
        let ws = self.index.plan(&self.carry, Clocks::read(), &mut journal);
        let result = if ws.is_empty() {
            Ok(())
        } else {
            self.commits += 1;
            let fail = self.config.fail_commits.contains(&self.commits);
            let started = Instant::now();
            let result = self.backend.apply(&ws, fail);
            if let (Ok(()), Some(h)) = (&result, shared.commit_latency.get()) {
                h.observe(started.elapsed());
            }
            result
        };
        let ok = match result {
            Ok(()) => {
                if !ws.is_empty() {
                    shared.stats.commits.fetch_add(1, Ordering::Relaxed);
                    shared
                        .stats
                        .rows
                        .fetch_add(ws.rows() as u64, Ordering::Relaxed);
                }
                shared
                    .stats
                    .messages
                    .store(self.index.message_count() as u64, Ordering::Relaxed);
                self.carry = Net::default();
                // A failed batch's changes were carried into this one: they are on disk now.
                shared.clear_failed();
                true
            }
            Err(detail) => {
                shared.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %self.path.display(),
                    first,
                    last,
                    "the store could not commit {n} operations: {detail}; they are reported failed and retried with the next batch"
                );
                self.index.undo(journal);
                if n > 0 {
                    shared.fail(first, last);
                }
                false
            }
        };
        if n > 0 {
            shared.settle(last);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn op() -> StoreOp {
        StoreOp::DeleteSession {
            client_id: "c".into(),
        }
    }

    fn takeable(shared: &Shared, max: usize) -> usize {
        lock(&shared.queue).takeable(max)
    }

    /// Takes `n` operations as the writer does.
    fn take(shared: &Shared, n: usize) {
        let mut q = lock(&shared.queue);
        q.ops.drain(..n);
        q.first += n as u64;
        q.drop_taken_runs();
    }

    /// The interleaving of the kill -9 harness's failure: publisher A routes its message, B
    /// starts routing another, A stores its incoming packet identifier and closes its group
    /// while B's is still open. Cutting the batch at B's start committed A's copies without
    /// A's identifier; after a crash A's resend was routed a second time.
    #[test]
    fn groups_that_overlap_are_never_split() {
        let shared = Shared::new(10_000);
        let before = shared.submit(op());
        let a = shared.begin_atomic();
        let a_copy_1 = shared.submit(op());
        let a_copy_2 = shared.submit(op());
        // Another thread opens B meanwhile (the thread does not matter here).
        let b = shared.begin_atomic();
        let b_copy = shared.submit(op());
        let a_incoming = shared.submit(op());
        shared.end_atomic(a);
        assert!(before < a_copy_1 && a_copy_1 < a_copy_2 && a_copy_2 < b_copy);
        assert!(b_copy < a_incoming);
        assert_eq!(
            takeable(&shared, usize::MAX),
            1,
            "only what precedes both groups: A's copies must wait for A's identifier, which \
             waits for B"
        );
        shared.end_atomic(b);
        assert_eq!(takeable(&shared, usize::MAX), 5, "both groups, whole");
    }

    #[test]
    fn the_open_group_holds_back_what_follows_it() {
        let shared = Shared::new(10_000);
        shared.submit(op());
        let g = shared.begin_atomic();
        shared.submit(op());
        assert_eq!(takeable(&shared, usize::MAX), 1);
        shared.end_atomic(g);
        shared.submit(op());
        assert_eq!(takeable(&shared, usize::MAX), 3);
    }

    #[test]
    fn max_batch_never_ends_a_batch_inside_a_group() {
        let shared = Shared::new(2);
        shared.submit(op());
        let g = shared.begin_atomic();
        for _ in 0..3 {
            shared.submit(op());
        }
        shared.end_atomic(g);
        shared.submit(op());
        shared.submit(op());
        assert_eq!(takeable(&shared, 2), 1, "the batch ends before the group");
        take(&shared, 1);
        assert_eq!(takeable(&shared, 2), 3, "the whole group, above max_batch");
        take(&shared, 3);
        assert_eq!(takeable(&shared, 2), 2, "max_batch again");
        assert!(
            lock(&shared.queue).runs.is_empty(),
            "taken runs are forgotten"
        );
    }

    #[test]
    fn a_new_group_waits_while_the_writer_waits_for_the_open_ones() {
        let shared = Arc::new(Shared::new(10_000));
        let g = shared.begin_atomic();
        shared.submit(op());
        lock(&shared.queue).raise_barrier_if_blocked();
        assert!(
            lock(&shared.queue).barrier,
            "everything queued is in the open group"
        );
        // A group nested in one this thread has open does not wait.
        let nested = shared.begin_atomic();
        shared.end_atomic(nested);
        let opened = Arc::new(AtomicBool::new(false));
        let other = {
            let (shared, opened) = (shared.clone(), opened.clone());
            std::thread::spawn(move || {
                let g = shared.begin_atomic();
                opened.store(true, Ordering::SeqCst);
                shared.submit(op());
                shared.end_atomic(g);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !opened.load(Ordering::SeqCst),
            "a new group waits at the barrier"
        );
        assert_eq!(takeable(&shared, usize::MAX), 0);
        shared.end_atomic(g);
        other.join().unwrap();
        assert!(opened.load(Ordering::SeqCst));
        assert!(!lock(&shared.queue).barrier);
        assert_eq!(takeable(&shared, usize::MAX), 2);
    }
}
