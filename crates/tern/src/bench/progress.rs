//! Live counters for the progress line and for knowing when the drain is complete.
//!
//! Each task owns one cache-line-sized slot and stores its own running totals there (plain
//! stores, no contended read-modify-write); the reader sums the slots. The exact figures of the
//! report come from the tasks' own counters, merged at the end, not from these.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::payload::Clock;

/// One task's live counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Slot {
    /// Messages sent (publishers).
    pub sent: AtomicU64,
    /// Messages received (subscribers).
    pub received: AtomicU64,
    /// Distinct messages received that the subscriber's domain should get.
    pub unique: AtomicU64,
    /// The subscription is in place (set once).
    pub subscribed: AtomicBool,
    /// The connection is up.
    pub alive: AtomicBool,
}

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    Connecting = 0,
    Settling = 1,
    Publishing = 2,
    Draining = 3,
    Holding = 4,
    Closing = 5,
}

impl Phase {
    fn name(v: u8) -> &'static str {
        match v {
            0 => "connecting",
            1 => "settling",
            2 => "publishing",
            3 => "draining",
            4 => "holding",
            _ => "closing",
        }
    }
}

/// The live state of a run.
#[derive(Debug)]
pub(crate) struct Live {
    pub publishers: Box<[Slot]>,
    pub subscribers: Box<[Slot]>,
    /// Connections currently open.
    pub connections: AtomicU64,
    /// Connections that reached CONNACK.
    pub connected: AtomicU64,
    /// Connection attempts that failed.
    pub failed: AtomicU64,
    /// Errors of every kind.
    pub errors: AtomicU64,
    phase: AtomicU8,
}

impl Live {
    /// Slots for `publishers` and `subscribers` tasks.
    pub(crate) fn new(publishers: usize, subscribers: usize) -> Self {
        Self {
            publishers: (0..publishers).map(|_| Slot::default()).collect(),
            subscribers: (0..subscribers).map(|_| Slot::default()).collect(),
            connections: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Connecting as u8),
        }
    }

    /// Enters `phase`.
    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }

    fn sent(&self) -> u64 {
        self.publishers.iter().map(|s| s.sent.load(Relaxed)).sum()
    }

    fn received(&self) -> u64 {
        self.subscribers
            .iter()
            .map(|s| s.received.load(Relaxed))
            .sum()
    }
}

/// Prints the progress line once per second on stderr until the task is aborted: with `\r`
/// on a terminal, as plain lines otherwise.
pub(crate) async fn report(
    live: std::sync::Arc<Live>,
    clock: Clock,
    scenario: &'static str,
    total_connections: usize,
) {
    let tty = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut last_sent, mut last_received, mut last_ns) = (0u64, 0u64, clock.now_ns());
    let mut guard = NewlineOnDrop {
        tty,
        printed: false,
    };
    loop {
        ticker.tick().await;
        let now = clock.now_ns();
        let (sent, received) = (live.sent(), live.received());
        let secs = (now - last_ns) as f64 / 1e9;
        let line = format!(
            "tern bench {scenario} {:>6.1}s {:<10} sent {:>9}/s ({}) recv {:>9}/s ({}) conns {}/{} errors {}",
            now as f64 / 1e9,
            Phase::name(live.phase.load(Relaxed)),
            rate(sent - last_sent, secs),
            human(sent),
            rate(received - last_received, secs),
            human(received),
            live.connections.load(Relaxed),
            total_connections,
            live.errors.load(Relaxed) + live.failed.load(Relaxed),
        );
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        guard.printed = true;
        (last_sent, last_received, last_ns) = (sent, received, now);
    }
}

/// Ends the `\r` line when the progress task stops.
struct NewlineOnDrop {
    tty: bool,
    printed: bool,
}

impl Drop for NewlineOnDrop {
    fn drop(&mut self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
}

fn rate(delta: u64, secs: f64) -> u64 {
    if secs > 0.0 {
        (delta as f64 / secs).round() as u64
    } else {
        0
    }
}

/// 1234567 → `1.23M`.
pub(crate) fn human(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}
