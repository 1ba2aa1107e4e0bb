//! The connections' deadlines (CONNECT, keep-alive, authentication expiry), on one shared
//! timer with a resolution of [`TICK`].
//!
//! Each connection used to keep a `tokio::time::Sleep` of its own: 112 bytes in every task,
//! which put an idle connection's task in the next allocation size class. Here a connection
//! registers its task's waker under the tick its deadline falls in (rounded up, so it never
//! fires early) and checks the deadline itself when woken. A deadline that moves later (each
//! packet moves the keep-alive) is not registered again: the old registration wakes the task,
//! which then registers the new one.
//!
//! The sweeper, the task that wakes the due connections, runs only while something is
//! registered: the first registration starts it, and it ends when nothing is left.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The resolution of the deadlines: a connection is woken at most this long after its
/// deadline (keep-alive is checked against 1.5 times a number of seconds).
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Something a deadline wakes: a connection's task.
pub(crate) trait Wakeable: Send + Sync + 'static {
    fn wake_up(&self);
}

/// The registered deadlines of a server's connections.
pub(crate) struct Deadlines<W: Wakeable> {
    /// Tick 0.
    epoch: Instant,
    inner: Mutex<Inner<W>>,
    /// Told when a registration comes before every other one, for the sweeper to wait less.
    earlier: Notify,
}

struct Inner<W> {
    /// The waiting connections by tick.
    due: BTreeMap<u64, Vec<Arc<W>>>,
    /// Whether a sweeper task is running.
    sweeping: bool,
}

/// A registration, to cancel it or to know when it is due: the deadline as asked for (its
/// tick follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) at: Instant,
}

impl<W: Wakeable> Default for Deadlines<W> {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                due: BTreeMap::new(),
                sweeping: false,
            }),
            earlier: Notify::new(),
        }
    }
}

impl<W: Wakeable> Deadlines<W> {
    fn lock(&self) -> MutexGuard<'_, Inner<W>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first tick at or after `at`.
    fn tick_at_or_after(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch);
        let tick = TICK.as_nanos();
        u64::try_from(since.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX)
    }

    /// The last tick at or before `now`.
    fn tick_at_or_before(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos() / TICK.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant_of(&self, tick: u64) -> Instant {
        let nanos = u64::try_from(TICK.as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(tick);
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Wakes `waker` once `at` has passed (within [`TICK`]). Must be called on a tokio
    /// runtime: the first registration starts the sweeper there.
    pub(crate) fn register(self: &Arc<Self>, at: Instant, waker: &Arc<W>) -> Registration {
        let tick = self.tick_at_or_after(at);
        let mut inner = self.lock();
        let first = inner.due.first_key_value().is_none_or(|(t, _)| tick < *t);
        inner.due.entry(tick).or_default().push(waker.clone());
        if !inner.sweeping {
            inner.sweeping = true;
            tokio::spawn(self.clone().sweep());
        } else if first {
            self.earlier.notify_one();
        }
        Registration { at }
    }

    /// Withdraws a registration that has not fired (one that has is ignored).
    pub(crate) fn cancel(&self, registration: Registration, waker: &Arc<W>) {
        let tick = self.tick_at_or_after(registration.at);
        let mut inner = self.lock();
        if let Some(waiting) = inner.due.get_mut(&tick) {
            if let Some(i) = waiting.iter().position(|w| Arc::ptr_eq(w, waker)) {
                waiting.swap_remove(i);
            }
            if waiting.is_empty() {
                inner.due.remove(&tick);
            }
        }
    }

    /// Wakes what is due, then waits for the next tick that has something, until nothing is
    /// left.
    async fn sweep(self: Arc<Self>) {
        loop {
            let (due, next) = {
                let mut inner = self.lock();
                let now = self.tick_at_or_before(Instant::now());
                let later = inner.due.split_off(&now.saturating_add(1));
                let due = std::mem::replace(&mut inner.due, later);
                let next = inner.due.first_key_value().map(|(t, _)| *t);
                if next.is_none() {
                    inner.sweeping = false;
                }
                (due, next)
            };
            for waker in due.into_values().flatten() {
                waker.wake_up();
            }
            let Some(next) = next else {
                return;
            };
            tokio::select! {
                biased;
                () = self.earlier.notified() => {}
                () = tokio::time::sleep_until(self.instant_of(next).into()) => {}
            }
        }
    }

    /// How many registrations wait (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().due.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Bounds every wait of the tests.
    const WAIT: Duration = Duration::from_secs(10);

    #[derive(Default)]
    struct Counter {
        wakes: AtomicUsize,
        notify: Notify,
    }

    impl Wakeable for Counter {
        fn wake_up(&self) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    async fn woken(counter: &Counter) {
        tokio::time::timeout(WAIT, counter.notify.notified())
            .await
            .expect("woken in time");
    }

    #[tokio::test]
    async fn a_deadline_wakes_its_connection_after_it_has_passed_not_before() {
        let deadlines = Arc::new(Deadlines::default());
        let counter = Arc::new(Counter::default());
        let at = Instant::now() + Duration::from_millis(150);
        let registration = deadlines.register(at, &counter);
        assert_eq!(registration.at, at);
        woken(&counter).await;
        let late = Instant::now().saturating_duration_since(at);
        assert!(Instant::now() >= at, "woken before the deadline");
        assert!(late < WAIT, "woken {late:?} late");
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 1);
        assert_eq!(deadlines.waiting(), 0);
    }

    #[tokio::test]
    async fn an_earlier_registration_is_not_kept_waiting_by_a_later_one() {
        let deadlines = Arc::new(Deadlines::default());
        let late = Arc::new(Counter::default());
        let soon = Arc::new(Counter::default());
        deadlines.register(Instant::now() + Duration::from_secs(3600), &late);
        // The sweeper now waits for the hour; this one must wake it up sooner.
        tokio::task::yield_now().await;
        let at = Instant::now() + Duration::from_millis(50);
        deadlines.register(at, &soon);
        woken(&soon).await;
        assert!(Instant::now() >= at);
        assert_eq!(late.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(deadlines.waiting(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_registration_does_not_wake_and_is_not_kept() {
        let deadlines = Arc::new(Deadlines::default());
        let cancelled = Arc::new(Counter::default());
        let kept = Arc::new(Counter::default());
        let at = Instant::now() + Duration::from_millis(50);
        let registration = deadlines.register(at, &cancelled);
        deadlines.register(at, &kept);
        deadlines.cancel(registration, &cancelled);
        assert_eq!(deadlines.waiting(), 1);
        woken(&kept).await;
        assert_eq!(cancelled.wakes.load(Ordering::SeqCst), 0);
        // Cancelling one that has fired changes nothing.
        deadlines.cancel(registration, &cancelled);
        assert_eq!(deadlines.waiting(), 0);
    }

    #[tokio::test]
    async fn the_sweeper_stops_when_nothing_is_left_and_starts_again() {
        let deadlines = Arc::new(Deadlines::default());
        let counter = Arc::new(Counter::default());
        deadlines.register(Instant::now(), &counter);
        woken(&counter).await;
        // The sweeper holds the deadlines while it runs: once it has stopped, this is the
        // only reference left.
        tokio::time::timeout(WAIT, async {
            while Arc::strong_count(&deadlines) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the sweeper stops");
        deadlines.register(Instant::now() + Duration::from_millis(10), &counter);
        woken(&counter).await;
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn ticks_round_a_deadline_up_and_the_present_down() {
        let deadlines: Deadlines<Counter> = Deadlines::default();
        let e = deadlines.epoch;
        assert_eq!(deadlines.tick_at_or_after(e), 0);
        assert_eq!(deadlines.tick_at_or_after(e + Duration::from_millis(1)), 1);
        assert_eq!(deadlines.tick_at_or_after(e + TICK), 1);
        assert_eq!(
            deadlines.tick_at_or_before(e + TICK * 2 - Duration::from_nanos(1)),
            1
        );
        assert_eq!(deadlines.instant_of(3), e + TICK * 3);
        // A deadline before the first tick is due at once.
        if let Some(past) = e.checked_sub(Duration::from_secs(1)) {
            assert_eq!(deadlines.tick_at_or_after(past), 0);
        }
    }
}
