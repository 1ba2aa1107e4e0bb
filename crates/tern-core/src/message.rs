//! An application message on its way through the broker.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_codec::{ByteString, PublishProperties, QoS};

/// One published message, shared (behind an `Arc`) by every session it is routed to.
///
/// Only the per-delivery parts (packet id, QoS, RETAIN, DUP, topic alias, subscription
/// identifier, remaining expiry) are decided per recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name.
    pub topic: ByteString,
    /// Payload.
    pub payload: Bytes,
    /// QoS the message was published with.
    pub qos: QoS,
    /// RETAIN flag the publisher set.
    pub retain: bool,
    /// Properties forwarded unchanged: payload format, content type, response topic,
    /// correlation data, user properties. Alias, expiry and identifiers are per delivery.
    pub properties: PublishProperties,
    /// When the message expires (from its Message Expiry Interval).
    pub expires_at: Option<Instant>,
    /// Client id of the publisher, for No Local; `None` for messages the broker made.
    pub publisher: Option<ByteString>,
}

impl Message {
    /// Whether the message has expired at `now`.
    #[must_use]
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The Message Expiry Interval to send at `now`: the original minus the time waited
    /// (MQTT-3.3.2-6), rounded up, and never 0: a delivery re-sent after its message expired
    /// must still be completed (MQTT-4.3.3-7), and 0 would tell the client to drop it.
    #[must_use]
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        let left = self.expires_at?.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX).max(1))
    }

    /// The expiry instant for an interval given at `now`.
    #[must_use]
    pub fn expiry_from(interval: Option<u32>, now: Instant) -> Option<Instant> {
        interval.map(|secs| now + Duration::from_secs(u64::from(secs)))
    }

    /// Bytes this message accounts for in queue limits.
    #[must_use]
    pub fn size(&self) -> usize {
        self.payload.len() + self.topic.len()
    }
}
