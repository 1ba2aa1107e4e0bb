//! The wait between two connection attempts: exponential from `restart_base` to `restart_cap`
//! with full jitter (a uniform draw between nothing and the exponential bound), so that many
//! bridges cut off together do not come back together; never below [`MIN_DELAY`], so a bridge
//! never spins. `restart_timeout` with one value (base = cap) is a constant wait, as in
//! Mosquitto.

use std::time::Duration;

/// The shortest wait, whatever the draw.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(100);

/// The backoff of one bridge.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    /// Failed attempts since the last success.
    attempts: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff from `base` to `cap`, seeded from the system's random source.
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self::with_seed(base, cap, getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15))
    }

    /// The same with a chosen seed (tests).
    pub(crate) fn with_seed(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempts: 0,
            // xorshift needs a non-zero state.
            rng: seed | 1,
        }
    }

    /// A connection succeeded: the next wait starts from `base` again.
    pub(crate) fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The bound of the next wait: `base × 2^attempts`, at most `cap`.
    pub(crate) fn bound(&self) -> Duration {
        let factor = 1u32 << self.attempts.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The wait before the next attempt (counts one more failure).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let bound = self.bound();
        self.attempts = self.attempts.saturating_add(1);
        if self.base >= self.cap {
            return bound.max(MIN_DELAY);
        }
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        let drawn = if nanos == 0 {
            0
        } else {
            self.next_random() % (nanos + 1).max(1)
        };
        Duration::from_nanos(drawn).max(MIN_DELAY)
    }

    /// xorshift64*: plenty for spreading reconnections.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_bound_doubles_from_the_base_up_to_the_cap() {
        let mut b = Backoff::with_seed(S(5), S(30), 1);
        let mut bounds = Vec::new();
        for _ in 0..6 {
            bounds.push(b.bound());
            let _ = b.next_delay();
        }
        assert_eq!(bounds, vec![S(5), S(10), S(20), S(30), S(30), S(30)]);
        b.reset();
        assert_eq!(b.bound(), S(5));
    }

    #[test]
    fn every_wait_lies_between_the_floor_and_its_bound_and_they_vary() {
        for seed in 1..50 {
            let mut b = Backoff::with_seed(S(1), S(8), seed);
            let mut waits = Vec::new();
            for _ in 0..10 {
                let bound = b.bound();
                let wait = b.next_delay();
                assert!(
                    wait >= MIN_DELAY && wait <= bound,
                    "{wait:?} within {bound:?}"
                );
                waits.push(wait);
            }
            waits.dedup();
            assert!(waits.len() > 1, "jitter makes the waits differ: {waits:?}");
        }
    }

    #[test]
    fn one_value_is_a_constant_wait() {
        let mut b = Backoff::with_seed(S(3), S(3), 7);
        for _ in 0..5 {
            assert_eq!(b.next_delay(), S(3));
        }
    }

    #[test]
    fn a_zero_timeout_still_never_spins() {
        let mut b = Backoff::with_seed(Duration::ZERO, Duration::ZERO, 7);
        assert_eq!(b.next_delay(), MIN_DELAY);
        let mut b = Backoff::with_seed(Duration::ZERO, S(1), 7);
        for _ in 0..20 {
            assert!(b.next_delay() >= MIN_DELAY);
        }
    }
}
