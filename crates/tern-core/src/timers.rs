//! Deadlines of disconnected sessions: delayed wills and session expiry.
//!
//! A timer only says "look at this session again at this time"; the session's own state
//! decides what is due, so stale timers (the client came back) cost one lookup and no
//! bookkeeping to cancel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use tern_codec::ByteString;

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, ByteString)>>,
}

impl Timers {
    /// Schedules a look at `client_id`; returns whether this is now the earliest deadline.
    pub(crate) fn schedule(&mut self, at: Instant, client_id: ByteString) -> bool {
        let earliest = self.next().is_none_or(|next| at < next);
        self.heap.push(Reverse((at, client_id)));
        earliest
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns every client id due at `now`.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<ByteString> {
        let mut out = Vec::new();
        while self.heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse((_, id))) = self.heap.pop() {
                out.push(id);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_returns_only_elapsed_in_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        assert!(timers.schedule(t0 + Duration::from_secs(5), "b".into()));
        assert!(timers.schedule(t0 + Duration::from_secs(1), "a".into()));
        assert!(!timers.schedule(t0 + Duration::from_secs(9), "c".into()));
        assert_eq!(timers.due(t0 + Duration::from_secs(5)), ["a", "b"]);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(9)));
    }
}
