//! The run's clock and the header every payload starts with.
//!
//! Publishers and subscribers live in the same process, so a send time read from one
//! monotonic clock (nanoseconds since the run's start) and carried in the payload gives the
//! publish-to-delivery latency without any clock synchronisation.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Bytes of the header: publisher index (u32), sequence number (u32), send time (u64
/// nanoseconds since the run's start), all big-endian.
pub(crate) const HEADER_LEN: usize = 16;

/// The run's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    /// The wall-clock time of the start, in nanoseconds since the Unix epoch: where the
    /// kernel's receive times (`CLOCK_REALTIME`) fall on this clock.
    wall_start_ns: u64,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn start() -> Self {
        let start = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            start,
            wall_start_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// A wall-clock time (nanoseconds since the Unix epoch) on this clock; `None` before the
    /// start. The two clocks are adjusted at the same rate, so they stay apart by the same
    /// amount unless the wall clock is stepped during the run.
    pub(crate) fn wall_to_clock_ns(&self, wall_ns: u64) -> Option<u64> {
        wall_ns.checked_sub(self.wall_start_ns)
    }

    /// Nanoseconds since the start.
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the start.
    pub(crate) fn instant_at(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start + std::time::Duration::from_nanos(ns))
    }
}

/// What a payload header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub publisher: u32,
    pub seq: u32,
    pub sent_ns: u64,
}

impl Header {
    /// Writes the header over the first [`HEADER_LEN`] bytes of `payload`.
    pub(crate) fn write(&self, payload: &mut [u8]) {
        payload[0..4].copy_from_slice(&self.publisher.to_be_bytes());
        payload[4..8].copy_from_slice(&self.seq.to_be_bytes());
        payload[8..16].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// Reads the header of a payload; `None` if it is too short to be one of ours.
    pub(crate) fn read(payload: &[u8]) -> Option<Self> {
        let publisher = u32::from_be_bytes(payload.get(0..4)?.try_into().ok()?);
        let seq = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
        let sent_ns = u64::from_be_bytes(payload.get(8..16)?.try_into().ok()?);
        Some(Self {
            publisher,
            seq,
            sent_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            publisher: 7,
            seq: 0xDEAD_BEEF,
            sent_ns: 123_456_789_012,
        };
        let mut payload = [0u8; 20];
        h.write(&mut payload);
        assert_eq!(Header::read(&payload), Some(h));
        assert_eq!(Header::read(&payload[..15]), None);
    }
}
