//! Counters owned by the broker. `$SYS` topics, Prometheus and the admin API all read these, so
//! the three never disagree.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a message was not delivered to a subscriber (or not accepted from a publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The session's queue was full (messages or bytes).
    QueueFull,
    /// The packet was larger than the client's Maximum Packet Size.
    TooLarge,
    /// The message expired before delivery started.
    Expired,
    /// QoS 0 message for an offline session that does not queue QoS 0.
    Offline,
    /// An access rule refused it: the publisher may not publish there (e.g. `$SYS/...`), or
    /// the receiving session may no longer read it.
    NotAuthorized,
}

impl DropReason {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::QueueFull,
        Self::TooLarge,
        Self::Expired,
        Self::Offline,
        Self::NotAuthorized,
    ];

    /// Label value used in metrics.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::TooLarge => "too_large",
            Self::Expired => "expired",
            Self::Offline => "offline",
            Self::NotAuthorized => "not_authorized",
        }
    }
}

/// The broker's counters. All are monotonic except the gauges, which say so.
#[derive(Debug, Default)]
pub struct Metrics {
    /// PUBLISH packets received from clients.
    pub publish_received: AtomicU64,
    /// PUBLISH packets sent to clients (retransmissions included).
    pub publish_sent: AtomicU64,
    /// Payload bytes received in PUBLISH packets.
    pub publish_bytes_received: AtomicU64,
    /// Payload bytes sent in PUBLISH packets.
    pub publish_bytes_sent: AtomicU64,
    /// Messages published that matched no subscription.
    pub publish_no_subscribers: AtomicU64,
    /// Connections accepted with CONNACK success.
    pub connects: AtomicU64,
    /// Gauge: connections currently attached to a session.
    pub connections: AtomicU64,
    /// Sessions that ended because their expiry interval passed.
    pub sessions_expired: AtomicU64,
    /// Protocol errors that closed a connection.
    pub protocol_errors: AtomicU64,
    /// Clients let in: authenticated, or anonymous where that is allowed.
    pub auth_successes: AtomicU64,
    /// Authentications refused by an authentication source (at CONNECT or re-authentication).
    pub auth_failures: AtomicU64,
    /// Actions an access rule refused (publish, subscribe, will).
    pub acl_denials: AtomicU64,
    dropped: [AtomicU64; 5],
}

impl Metrics {
    /// Counts one dropped message.
    pub fn record_drop(&self, reason: DropReason) {
        self.dropped[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Messages dropped for `reason` so far.
    #[must_use]
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }

    /// Messages dropped for any reason so far.
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Shorthand for a relaxed increment.
pub(crate) fn inc(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}
