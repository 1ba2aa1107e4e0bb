//! Counters owned by the broker. `$SYS` topics, Prometheus and the admin API all read these, so
//! the three never disagree.
//!
//! Every counter is one relaxed atomic add where the event happens; nothing is kept per
//! connection. Gauges that the broker's own structures already know (sessions, subscriptions,
//! retained messages) are read from them ([`crate::Broker`]) rather than counted twice.
//!
//! Messages the broker publishes itself on `$SYS/...` are not client traffic: their deliveries
//! are counted in none of the message, packet, drop or byte counters (see
//! [`Metrics::bytes_sent`]), so that publishing the counters does not change them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tern_codec::{PacketType, QoS, ReasonCode};

use crate::Message;

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

/// What an access check was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclAction {
    /// PUBLISH, and the Will Topic at CONNECT (write access).
    Publish,
    /// A SUBSCRIBE filter (read access).
    Subscribe,
}

impl AclAction {
    /// Every action, in a fixed order.
    pub const ALL: [Self; 2] = [Self::Publish, Self::Subscribe];

    /// Label value used in metrics.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
        }
    }
}

/// Upper bounds (seconds) of the store commit latency buckets; a last bucket takes the rest.
pub const COMMIT_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with the fixed buckets [`COMMIT_BUCKETS`], in atomics: recording is a
/// few relaxed adds, from any thread.
#[derive(Debug, Default)]
pub struct Histogram {
    /// One per bucket of [`COMMIT_BUCKETS`], then one for everything above the last bound.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at or below each bound of [`COMMIT_BUCKETS`] (cumulative, as Prometheus
    /// wants them).
    pub cumulative: [u64; COMMIT_BUCKETS.len()],
    /// Observations in all.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = COMMIT_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The observations so far. Buckets are read before the count, so the count is never
    /// below the last cumulative bucket.
    #[must_use]
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0; COMMIT_BUCKETS.len()];
        let mut running = 0;
        for (i, slot) in cumulative.iter_mut().enumerate() {
            running += self.buckets[i].load(Ordering::Relaxed);
            *slot = running;
        }
        let above = self.buckets[COMMIT_BUCKETS.len()].load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed).max(running + above);
        #[allow(clippy::cast_precision_loss)] // nanoseconds to seconds for display
        let sum_seconds = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        HistogramSnapshot {
            cumulative,
            count,
            sum_seconds,
        }
    }
}

/// The reason codes a CONNACK may refuse a connection with (MQTT 5 Table 3-6; 3.x return codes
/// are represented by their MQTT 5 equivalents). Each has a counter, and one more counts
/// anything else.
pub const CONNACK_REFUSALS: [ReasonCode; 21] = [
    ReasonCode::UNSPECIFIED_ERROR,
    ReasonCode::MALFORMED_PACKET,
    ReasonCode::PROTOCOL_ERROR,
    ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
    ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    ReasonCode::BAD_USER_NAME_OR_PASSWORD,
    ReasonCode::NOT_AUTHORIZED,
    ReasonCode::SERVER_UNAVAILABLE,
    ReasonCode::SERVER_BUSY,
    ReasonCode::BANNED,
    ReasonCode::BAD_AUTHENTICATION_METHOD,
    ReasonCode::TOPIC_NAME_INVALID,
    ReasonCode::PACKET_TOO_LARGE,
    ReasonCode::QUOTA_EXCEEDED,
    ReasonCode::PAYLOAD_FORMAT_INVALID,
    ReasonCode::RETAIN_NOT_SUPPORTED,
    ReasonCode::QOS_NOT_SUPPORTED,
    ReasonCode::USE_ANOTHER_SERVER,
    ReasonCode::SERVER_MOVED,
    ReasonCode::CONNECTION_RATE_EXCEEDED,
];
const CONNACK_SLOTS: usize = CONNACK_REFUSALS.len() + 1;

/// The broker's counters. All are monotonic except the gauges, which say so.
#[derive(Debug, Default)]
pub struct Metrics {
    /// PUBLISH packets received from clients (all QoS; see [`Metrics::messages_received`]).
    pub publish_received: AtomicU64,
    /// PUBLISH packets sent to clients (retransmissions included; all QoS).
    pub publish_sent: AtomicU64,
    /// Payload bytes received in PUBLISH packets.
    pub publish_bytes_received: AtomicU64,
    /// Payload bytes sent in PUBLISH packets.
    pub publish_bytes_sent: AtomicU64,
    /// Messages published by clients that matched no subscription.
    pub publish_no_subscribers: AtomicU64,
    /// Connections accepted with CONNACK success.
    pub connects: AtomicU64,
    /// Gauge: connections currently attached to a session.
    pub connections: AtomicU64,
    /// The most connections attached at the same time since the start.
    pub connections_max: AtomicU64,
    /// Network connections that reached the protocol (a connection task was started).
    pub sockets_opened: AtomicU64,
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
    /// MQTT bytes read from clients, all listeners and transports (counted by the runtime).
    pub bytes_received: AtomicU64,
    /// MQTT bytes written to clients, `$SYS` deliveries included (counted by the runtime).
    bytes_written: AtomicU64,
    /// Bytes of `$SYS` deliveries encoded for clients.
    sys_bytes: AtomicU64,
    /// The highest value [`Metrics::bytes_sent`] has reported, which keeps it monotonic.
    bytes_sent_reported: AtomicU64,
    /// Store commit latency (the store's writer records it; see `tern_store`).
    pub store_commit: Arc<Histogram>,
    messages_received: [AtomicU64; 3],
    messages_sent: [AtomicU64; 3],
    packets_received: [AtomicU64; 16],
    packets_sent: [AtomicU64; 16],
    connack_refused: [AtomicU64; CONNACK_SLOTS],
    /// `[publish allow, publish deny, subscribe allow, subscribe deny]`.
    acl: [AtomicU64; 4],
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

    /// Messages dropped for any reason so far (messages without subscribers are not drops
    /// here: see [`Metrics::publish_no_subscribers`]).
    #[must_use]
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Counts one packet received from a client.
    pub fn record_packet_received(&self, kind: PacketType) {
        self.packets_received[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one packet sent to a client.
    pub fn record_packet_sent(&self, kind: PacketType) {
        self.packets_sent[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Packets of type `kind` received so far.
    #[must_use]
    pub fn packets_received(&self, kind: PacketType) -> u64 {
        self.packets_received[kind as usize].load(Ordering::Relaxed)
    }

    /// Packets of type `kind` sent so far.
    #[must_use]
    pub fn packets_sent(&self, kind: PacketType) -> u64 {
        self.packets_sent[kind as usize].load(Ordering::Relaxed)
    }

    /// Packets of every type received so far.
    #[must_use]
    pub fn packets_received_total(&self) -> u64 {
        self.packets_received
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Packets of every type sent so far.
    #[must_use]
    pub fn packets_sent_total(&self) -> u64 {
        self.packets_sent
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a PUBLISH accepted from a client.
    pub(crate) fn record_message_received(&self, qos: QoS, payload: usize) {
        inc(&self.publish_received, 1);
        inc(&self.messages_received[qos as usize], 1);
        inc(&self.publish_bytes_received, payload as u64);
    }

    /// Counts a PUBLISH encoded for a client (`written` bytes): client traffic, or for a
    /// `$SYS` message of the broker's, only its bytes (see [`Metrics::bytes_sent`]).
    pub(crate) fn record_delivery(&self, message: &Message, qos: QoS, written: usize) {
        if is_broker_sys(message) {
            inc(&self.sys_bytes, written as u64);
            return;
        }
        inc(&self.publish_sent, 1);
        inc(&self.messages_sent[qos as usize], 1);
        inc(&self.publish_bytes_sent, message.payload.len() as u64);
        self.record_packet_sent(PacketType::Publish);
    }

    /// PUBLISH messages received with `qos`.
    #[must_use]
    pub fn messages_received(&self, qos: QoS) -> u64 {
        self.messages_received[qos as usize].load(Ordering::Relaxed)
    }

    /// PUBLISH messages sent with `qos` (the QoS of the delivery).
    #[must_use]
    pub fn messages_sent(&self, qos: QoS) -> u64 {
        self.messages_sent[qos as usize].load(Ordering::Relaxed)
    }

    /// Counts a CONNACK that refused a connection.
    pub fn record_connack_refused(&self, reason: ReasonCode) {
        inc(&self.connack_refused[connack_slot(reason)], 1);
    }

    /// CONNACK refusals so far for each code of [`CONNACK_REFUSALS`], in that order (other
    /// codes only count in [`Metrics::connack_refused_total`]).
    #[must_use]
    pub fn connack_refusals(&self) -> [(ReasonCode, u64); CONNACK_REFUSALS.len()] {
        std::array::from_fn(|i| {
            (
                CONNACK_REFUSALS[i],
                self.connack_refused[i].load(Ordering::Relaxed),
            )
        })
    }

    /// Every CONNACK refusal so far, whatever the reason.
    #[must_use]
    pub fn connack_refused_total(&self) -> u64 {
        self.connack_refused
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts the result of an access check.
    pub fn record_acl(&self, action: AclAction, allowed: bool) {
        inc(&self.acl[acl_slot(action, allowed)], 1);
        if !allowed {
            inc(&self.acl_denials, 1);
        }
    }

    /// Access checks for `action` that ended with `allowed`.
    #[must_use]
    pub fn acl(&self, action: AclAction, allowed: bool) -> u64 {
        self.acl[acl_slot(action, allowed)].load(Ordering::Relaxed)
    }

    /// Counts a connection attached to a session (the gauge and its high-water mark).
    pub(crate) fn connection_opened(&self) {
        let now = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.connections_max.fetch_max(now, Ordering::Relaxed);
    }

    /// Counts MQTT bytes read from a client.
    pub fn add_bytes_received(&self, n: usize) {
        inc(&self.bytes_received, n as u64);
    }

    /// Counts MQTT bytes written to a client.
    pub fn add_bytes_written(&self, n: usize) {
        inc(&self.bytes_written, n as u64);
    }

    /// MQTT bytes sent to clients, without the broker's own `$SYS` messages. Those are counted
    /// when encoded and the bytes when written, so the difference may dip while one is on its
    /// way out: the value reported never goes down, and never counts a `$SYS` byte.
    #[must_use]
    pub fn bytes_sent(&self) -> u64 {
        let written = self.bytes_written.load(Ordering::Relaxed);
        let sys = self.sys_bytes.load(Ordering::Relaxed);
        let value = written.saturating_sub(sys);
        self.bytes_sent_reported
            .fetch_max(value, Ordering::Relaxed)
            .max(value)
    }

    /// MQTT bytes written to clients, `$SYS` messages included.
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.load(Ordering::Relaxed)
    }
}

fn connack_slot(reason: ReasonCode) -> usize {
    CONNACK_REFUSALS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(CONNACK_SLOTS - 1)
}

fn acl_slot(action: AclAction, allowed: bool) -> usize {
    (action as usize) * 2 + usize::from(!allowed)
}

/// Whether `message` is one the broker published itself in its `$SYS` tree (not client
/// traffic: see the module documentation).
pub(crate) fn is_broker_sys(message: &Message) -> bool {
    message.publisher.is_none() && message.topic.starts_with("$SYS/")
}

/// Shorthand for a relaxed increment.
pub(crate) fn inc(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50)); // first bucket
        h.observe(Duration::from_micros(100)); // exactly on the first bound
        h.observe(Duration::from_millis(3)); // 0.005
        h.observe(Duration::from_secs(10)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 2);
        assert_eq!(s.cumulative[4], 2, "0.0025 bucket");
        assert_eq!(s.cumulative[5], 3, "0.005 bucket");
        assert_eq!(s.cumulative[COMMIT_BUCKETS.len() - 1], 3);
        assert_eq!(s.count, 4);
        assert!((s.sum_seconds - 10.00315).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn connack_refusals_are_counted_by_reason() {
        let m = Metrics::default();
        m.record_connack_refused(ReasonCode::NOT_AUTHORIZED);
        m.record_connack_refused(ReasonCode::NOT_AUTHORIZED);
        m.record_connack_refused(ReasonCode::CONNECTION_RATE_EXCEEDED);
        m.record_connack_refused(ReasonCode(0x05)); // not a refusal code: "other"
        let counted: Vec<_> = m
            .connack_refusals()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        assert_eq!(
            counted,
            vec![
                (ReasonCode::NOT_AUTHORIZED, 2),
                (ReasonCode::CONNECTION_RATE_EXCEEDED, 1)
            ]
        );
        assert_eq!(m.connack_refused_total(), 4);
    }

    #[test]
    fn bytes_sent_leaves_out_sys_bytes_and_never_goes_down() {
        let m = Metrics::default();
        m.add_bytes_written(100);
        assert_eq!(m.bytes_sent(), 100);
        let sys = Message {
            topic: "$SYS/broker/uptime".into(),
            payload: bytes::Bytes::from_static(b"1 seconds"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: tern_codec::PublishProperties::default(),
            expires_at: None,
            publisher: None,
        };
        // Encoded but not written yet: the difference dips, the value reported does not.
        m.record_delivery(&sys, QoS::AtMostOnce, 30);
        assert_eq!(m.bytes_sent(), 100);
        m.add_bytes_written(30);
        assert_eq!(m.bytes_sent(), 100);
        m.add_bytes_written(5);
        assert_eq!(m.bytes_sent(), 105);
        assert_eq!(
            m.publish_sent.load(Ordering::Relaxed),
            0,
            "$SYS is not traffic"
        );
        assert_eq!(m.packets_sent_total(), 0);
    }

    #[test]
    fn the_connection_high_water_mark_follows_the_gauge() {
        let m = Metrics::default();
        m.connection_opened();
        m.connection_opened();
        m.connections.fetch_sub(1, Ordering::Relaxed);
        m.connection_opened();
        assert_eq!(m.connections.load(Ordering::Relaxed), 2);
        assert_eq!(m.connections_max.load(Ordering::Relaxed), 2);
        m.connection_opened();
        assert_eq!(m.connections_max.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn acl_results_are_counted_by_action_and_result() {
        let m = Metrics::default();
        m.record_acl(AclAction::Publish, true);
        m.record_acl(AclAction::Subscribe, false);
        m.record_acl(AclAction::Subscribe, false);
        assert_eq!(m.acl(AclAction::Publish, true), 1);
        assert_eq!(m.acl(AclAction::Publish, false), 0);
        assert_eq!(m.acl(AclAction::Subscribe, false), 2);
        assert_eq!(m.acl_denials.load(Ordering::Relaxed), 2);
    }
}
