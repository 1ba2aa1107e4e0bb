//! Rate limits: their settings and the token bucket that enforces them.
//!
//! The bucket takes the current time as an argument, like everything in this crate; the runtime
//! decides what to do while a client waits for tokens (pause reading, or disconnect it).

use std::time::{Duration, Instant};

/// A rate limit: `amount` tokens every `per`, at most `burst` saved up while unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added every `per`; never 0 (no limit is `None` where a limit is optional).
    pub amount: u64,
    /// The period `amount` refers to; never zero.
    pub per: Duration,
    /// The most tokens the bucket holds, which is also what a client can spend at once after
    /// a quiet period; at least 1.
    pub burst: u64,
}

impl RateLimit {
    /// `amount` tokens every `per`, with a burst of one period's worth.
    #[must_use]
    pub fn new(amount: u64, per: Duration) -> Self {
        Self {
            amount,
            per,
            burst: amount.max(1),
        }
    }

    /// Tokens per second.
    #[must_use]
    pub fn per_second(&self) -> f64 {
        let secs = self.per.as_secs_f64();
        if secs > 0.0 {
            self.amount as f64 / secs
        } else {
            f64::INFINITY
        }
    }
}

/// What happens to a client that publishes faster than its message rate or bandwidth allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateExceeded {
    /// Stop reading from it until the tokens are there: TCP pushes back on the client and no
    /// message is lost.
    #[default]
    Pause,
    /// Disconnect it: MQTT 5 clients get DISCONNECT 0x96 (Message rate too high); MQTT 3.x
    /// connections are closed.
    Disconnect,
}

/// Tolerance for floating-point rounding when comparing token counts.
const EPSILON: f64 = 1e-9;

/// A token bucket: it refills continuously at the limit's rate up to its burst, and starts
/// full.
///
/// A cost larger than the burst can still be paid: it needs a full bucket and leaves a debt
/// that the refill pays back before anything else passes, so that the long-run rate holds
/// whatever the sizes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    /// Tokens at `last`; negative while a debt is being paid back.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `limit`.
    #[must_use]
    pub fn new(limit: &RateLimit, now: Instant) -> Self {
        let burst = limit.burst.max(1) as f64;
        Self {
            rate: limit.per_second(),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        if elapsed > 0.0 {
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
            self.last = now;
        }
    }

    /// `None` if `cost` can be paid at `now`, else the instant from which it can.
    pub fn ready_at(&mut self, cost: u64, now: Instant) -> Option<Instant> {
        self.refill(now);
        let need = (cost as f64).min(self.burst);
        if self.tokens + EPSILON >= need {
            return None;
        }
        let wait = (need - self.tokens) / self.rate;
        // Rounded up to the microsecond (less a rounding error), so that the bucket is ready
        // when the wait is over.
        let micros = (wait * 1e6 - 1e-3).ceil().max(1.0);
        Some(now + Duration::from_micros(micros as u64))
    }

    /// Pays `cost`, whatever the bucket holds (after [`TokenBucket::ready_at`] said it can).
    pub fn spend(&mut self, cost: u64) {
        self.tokens -= cost as f64;
    }

    /// Pays `cost` if it can be paid at `now`; else returns the instant from which it can.
    pub fn take(&mut self, cost: u64, now: Instant) -> Result<(), Instant> {
        match self.ready_at(cost, now) {
            None => {
                self.spend(cost);
                Ok(())
            }
            Some(at) => Err(at),
        }
    }

    /// Whether the bucket is full again at `now`: it then behaves exactly like a new one and
    /// can be forgotten.
    #[must_use]
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate + EPSILON >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let limit = RateLimit {
            amount: 2,
            per: Duration::from_secs(1),
            burst: 3,
        };
        let mut b = TokenBucket::new(&limit, t0);
        for _ in 0..3 {
            assert_eq!(b.take(1, t0), Ok(()));
        }
        // Empty: the next token comes after half a second.
        assert_eq!(b.take(1, t0), Err(t0 + ms(500)));
        assert_eq!(b.take(1, t0 + ms(499)), Err(t0 + ms(500)));
        assert_eq!(b.take(1, t0 + ms(500)), Ok(()));
        assert_eq!(b.take(1, t0 + ms(500)), Err(t0 + ms(1000)));
        // Never more than the burst, however long it rests.
        assert!(b.is_full(t0 + ms(2000)));
        for _ in 0..3 {
            assert_eq!(b.take(1, t0 + ms(10_000)), Ok(()));
        }
        assert!(b.take(1, t0 + ms(10_000)).is_err());
    }

    #[test]
    fn a_cost_above_the_burst_needs_a_full_bucket_and_leaves_a_debt() {
        let t0 = Instant::now();
        let limit = RateLimit {
            amount: 100,
            per: Duration::from_secs(1),
            burst: 100,
        };
        let mut b = TokenBucket::new(&limit, t0);
        assert_eq!(b.take(250, t0), Ok(()));
        // 150 owed plus 1 needed: 1.51 s.
        assert_eq!(b.take(1, t0), Err(t0 + ms(1510)));
        assert_eq!(b.take(1, t0 + ms(1510)), Ok(()));
        assert!(!b.is_full(t0 + ms(1510)));
    }

    #[test]
    fn slow_rates() {
        let t0 = Instant::now();
        let limit = RateLimit::new(2, Duration::from_secs(60));
        assert_eq!(limit.burst, 2);
        let mut b = TokenBucket::new(&limit, t0);
        assert!(b.take(1, t0).is_ok());
        assert!(b.take(1, t0).is_ok());
        assert_eq!(b.take(1, t0), Err(t0 + Duration::from_secs(30)));
        assert!(!b.is_full(t0 + Duration::from_secs(59)));
        assert!(b.is_full(t0 + Duration::from_secs(60)));
    }
}
