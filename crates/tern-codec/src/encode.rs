//! The encoder. Every packet is written twice over the same code: once into a [`Counter`] to
//! learn its length, once into the destination buffer.

use bytes::{BufMut, BytesMut};

use crate::packet::{Ack, Packet, Publish};
use crate::properties::{PropertySet, PublishProperties, write_section};
use crate::{EncodeError, MAX_REMAINING_LENGTH, PacketId, ProtocolVersion, QoS};

/// Where encoded bytes go.
pub(crate) trait Sink {
    fn put_u8(&mut self, v: u8);
    fn put_slice(&mut self, v: &[u8]);
    /// Called for a string or binary field longer than 65,535 bytes.
    fn field_too_long(&mut self) {}

    fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }
}

/// A sink that only counts, and remembers whether a field was too long.
#[derive(Default)]
pub(crate) struct Counter {
    len: usize,
    field_too_long: bool,
}

impl Counter {
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Sink for Counter {
    fn put_u8(&mut self, _: u8) {
        self.len += 1;
    }
    fn put_slice(&mut self, v: &[u8]) {
        self.len += v.len();
    }
    fn field_too_long(&mut self) {
        self.field_too_long = true;
    }
}

impl Sink for BytesMut {
    fn put_u8(&mut self, v: u8) {
        BufMut::put_u8(self, v);
    }
    fn put_slice(&mut self, v: &[u8]) {
        self.extend_from_slice(v);
    }
}

pub(crate) fn put_var_int<S: Sink + ?Sized>(s: &mut S, mut v: u32) {
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        s.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

fn var_int_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_binary<S: Sink + ?Sized>(s: &mut S, v: &[u8]) {
    let Ok(len) = u16::try_from(v.len()) else {
        s.field_too_long();
        return;
    };
    s.put_u16(len);
    s.put_slice(v);
}

pub(crate) fn put_str<S: Sink + ?Sized>(s: &mut S, v: &str) {
    put_binary(s, v.as_bytes());
}

/// Writes one packet: fixed header from `first_byte` and the body written by `body`.
/// Fails without touching `dst` if the packet is too large for the protocol or for `limit`.
fn write_packet(
    dst: &mut BytesMut,
    first_byte: u8,
    limit: u32,
    body: impl Fn(&mut dyn Sink),
) -> Result<usize, EncodeError> {
    let mut counter = Counter::default();
    body(&mut counter);
    if counter.field_too_long {
        return Err(EncodeError::FieldTooLong);
    }
    let total = start_packet(dst, first_byte, counter.len, limit)?;
    body(dst);
    Ok(total)
}

/// Writes the fixed header of a packet whose Remaining Length is `len` and reserves room for
/// the rest; its whole size. Fails without touching `dst` if the packet is too large for the
/// protocol or for `limit`.
fn start_packet(
    dst: &mut BytesMut,
    first_byte: u8,
    len: usize,
    limit: u32,
) -> Result<usize, EncodeError> {
    if len > MAX_REMAINING_LENGTH as usize {
        return Err(EncodeError::PacketTooLarge(len));
    }
    let total = 1 + var_int_len(len) + len;
    if total > limit as usize {
        return Err(EncodeError::ExceedsPeerLimit {
            size: total,
            max: limit,
        });
    }
    dst.reserve(total);
    BufMut::put_u8(dst, first_byte);
    put_var_int(dst, len as u32);
    Ok(total)
}

/// The per-delivery parts of an outgoing PUBLISH, with the message parts borrowed, so that a
/// broker can encode one shared message for many recipients without copying it.
#[derive(Debug, Clone, Copy)]
pub struct PublishView<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag of this delivery.
    pub retain: bool,
    /// Topic name; empty when `topic_alias` refers to an alias the receiver already knows.
    pub topic: &'a str,
    /// Packet identifier, present for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// MQTT 5 Topic Alias of this delivery.
    pub topic_alias: Option<u16>,
    /// MQTT 5 Message Expiry Interval of this delivery (the remaining lifetime).
    pub message_expiry_interval: Option<u32>,
    /// MQTT 5 Subscription Identifiers of this delivery.
    pub subscription_identifiers: &'a [u32],
    /// The message's other MQTT 5 properties; its alias, expiry and identifiers are ignored.
    pub properties: &'a PublishProperties,
    /// Payload.
    pub payload: &'a [u8],
}

impl PropertySet for PublishView<'_> {
    fn write_to<S: Sink + ?Sized>(&self, s: &mut S) {
        self.properties.write_with(
            s,
            self.message_expiry_interval,
            self.topic_alias,
            self.subscription_identifiers,
        );
    }
}

impl PublishView<'_> {
    fn first_byte(&self) -> u8 {
        0x30 | u8::from(self.dup && self.qos != QoS::AtMostOnce) << 3
            | (self.qos as u8) << 1
            | u8::from(self.retain)
    }

    /// Whether the PUBLISH carries any property (MQTT 5).
    fn has_properties(&self) -> bool {
        self.message_expiry_interval.is_some()
            || self.topic_alias.is_some()
            || !self.subscription_identifiers.is_empty()
            || self.properties.has_message_properties()
    }

    fn write_body<S: Sink + ?Sized>(&self, version: ProtocolVersion, s: &mut S) {
        put_str(s, self.topic);
        if self.qos != QoS::AtMostOnce {
            s.put_u16(self.packet_id.map_or(0, PacketId::get));
        }
        if version.is_v5() {
            if self.has_properties() {
                write_section(s, self);
            } else {
                s.put_u8(0);
            }
        }
        s.put_slice(self.payload);
    }

    /// Appends the PUBLISH to `dst` unless it would exceed `limit` bytes (the receiver's
    /// Maximum Packet Size). Returns the number of bytes written.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        limit: u32,
        dst: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        if version.is_v5() && self.has_properties() {
            return self.encode_measured(version, limit, dst);
        }
        // Without properties the length is a sum: no pass over the fields to measure them.
        // This is every MQTT 3 PUBLISH and most MQTT 5 ones, and it was a third of the
        // broker's instructions per delivery in fan-out.
        let Ok(topic_len) = u16::try_from(self.topic.len()) else {
            return Err(EncodeError::FieldTooLong);
        };
        let len = 2
            + usize::from(topic_len)
            + if self.qos == QoS::AtMostOnce { 0 } else { 2 }
            + usize::from(version.is_v5())
            + self.payload.len();
        let total = start_packet(dst, self.first_byte(), len, limit)?;
        self.write_body(version, dst);
        Ok(total)
    }

    /// [`Self::encode`] measuring the body with a first pass over it.
    fn encode_measured(
        &self,
        version: ProtocolVersion,
        limit: u32,
        dst: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        write_packet(dst, self.first_byte(), limit, |s| {
            self.write_body(version, s)
        })
    }
}

impl Publish {
    /// A view of this packet for encoding.
    #[must_use]
    pub fn view(&self) -> PublishView<'_> {
        PublishView {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            topic_alias: self.properties.topic_alias,
            message_expiry_interval: self.properties.message_expiry_interval,
            subscription_identifiers: &self.properties.subscription_identifiers,
            properties: &self.properties,
            payload: &self.payload,
        }
    }
}

fn write_ack<S: Sink + ?Sized>(ack: &Ack, version: ProtocolVersion, s: &mut S) {
    s.put_u16(ack.packet_id.get());
    if version.is_v5() && (ack.reason.0 != 0 || !ack.properties.is_empty()) {
        s.put_u8(ack.reason.0);
        if !ack.properties.is_empty() {
            write_section(s, &ack.properties);
        }
    }
}

impl Packet {
    /// Appends the packet to `dst` in the given protocol version. Returns the bytes written.
    pub fn encode(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        self.encode_limited(version, u32::MAX, dst)
    }

    /// Appends the packet to `dst` unless it would exceed `limit` bytes.
    pub fn encode_limited(
        &self,
        version: ProtocolVersion,
        limit: u32,
        dst: &mut BytesMut,
    ) -> Result<usize, EncodeError> {
        if let Self::Publish(p) = self {
            return p.view().encode(version, limit, dst);
        }
        write_packet(dst, self.first_byte(), limit, |s| {
            self.write_body(version, s)
        })
    }

    fn first_byte(&self) -> u8 {
        let t = self.packet_type() as u8;
        let flags = match self {
            Self::PubRel(_) | Self::Subscribe(_) | Self::Unsubscribe(_) => 0b0010,
            _ => 0,
        };
        t << 4 | flags
    }

    fn write_body(&self, version: ProtocolVersion, s: &mut dyn Sink) {
        let v5 = version.is_v5();
        match self {
            Self::Connect(c) => {
                put_str(s, c.protocol.protocol_name());
                let bridge = c.properties.bridge && !c.protocol.is_v5();
                s.put_u8(c.protocol.level() | if bridge { 0x80 } else { 0 });
                let mut flags = u8::from(c.clean_start) << 1;
                if let Some(w) = &c.will {
                    flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
                }
                flags |= u8::from(c.password.is_some()) << 6 | u8::from(c.username.is_some()) << 7;
                s.put_u8(flags);
                s.put_u16(c.keep_alive);
                if c.protocol.is_v5() {
                    write_section(s, &c.properties);
                }
                put_str(s, &c.client_id);
                if let Some(w) = &c.will {
                    if c.protocol.is_v5() {
                        write_section(s, &w.properties);
                    }
                    put_str(s, &w.topic);
                    put_binary(s, &w.payload);
                }
                if let Some(u) = &c.username {
                    put_str(s, u);
                }
                if let Some(p) = &c.password {
                    put_binary(s, p);
                }
            }
            Self::ConnAck(c) => {
                let session_present = c.session_present && version != ProtocolVersion::V31;
                s.put_u8(u8::from(session_present));
                if v5 {
                    s.put_u8(c.reason.0);
                    write_section(s, &c.properties);
                } else {
                    s.put_u8(c.reason.to_v3_connect_return_code());
                }
            }
            Self::Publish(p) => p.view().write_body(version, s),
            Self::PubAck(a) | Self::PubRec(a) | Self::PubRel(a) | Self::PubComp(a) => {
                write_ack(a, version, s);
            }
            Self::Subscribe(sub) => {
                s.put_u16(sub.packet_id.get());
                if v5 {
                    write_section(s, &sub.properties);
                }
                for (filter, options) in &sub.filters {
                    put_str(s, filter);
                    s.put_u8(if v5 {
                        options.to_byte()
                    } else {
                        options.qos as u8
                    });
                }
            }
            Self::SubAck(ack) => {
                s.put_u16(ack.packet_id.get());
                if v5 {
                    write_section(s, &ack.properties);
                }
                for code in &ack.reasons {
                    s.put_u8(if v5 { code.0 } else { code.to_v3_suback_code() });
                }
            }
            Self::Unsubscribe(u) => {
                s.put_u16(u.packet_id.get());
                if v5 {
                    write_section(s, &u.user_properties);
                }
                for filter in &u.filters {
                    put_str(s, filter);
                }
            }
            Self::UnsubAck(ack) => {
                s.put_u16(ack.packet_id.get());
                if v5 {
                    write_section(s, &ack.properties);
                    for code in &ack.reasons {
                        s.put_u8(code.0);
                    }
                }
            }
            Self::PingReq | Self::PingResp => {}
            Self::Disconnect(d) => {
                // With a reason code, the Property Length is written even when zero: the short
                // form is legal, but some clients (rumqttc 0.25) cannot read it.
                if v5 && (d.reason.0 != 0 || !d.properties.is_empty()) {
                    s.put_u8(d.reason.0);
                    write_section(s, &d.properties);
                }
            }
            Self::Auth(a) => {
                s.put_u8(a.reason.0);
                write_section(s, &a.properties);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;
    use crate::{ByteString, PublishProperties};

    fn encoded(
        result: Result<usize, EncodeError>,
        out: BytesMut,
    ) -> Result<(usize, BytesMut), EncodeError> {
        result.map(|n| (n, out))
    }

    proptest! {
        /// The summed length (PUBLISH without properties) writes exactly what measuring the
        /// body first writes, and fails the same way.
        #[test]
        fn publish_encoding_without_a_measuring_pass_writes_the_same_bytes(
            v5 in any::<bool>(),
            qos in 0u8..3,
            dup in any::<bool>(),
            retain in any::<bool>(),
            topic_len in prop_oneof![0usize..40, Just(65_535usize), Just(65_536usize)],
            payload_len in prop_oneof![0usize..300, Just(20_000usize)],
            expiry in proptest::option::of(any::<u32>()),
            alias in proptest::option::of(1u16..10),
            ids in proptest::collection::vec(1u32..300_000, 0..3),
            content_type in proptest::option::of("[a-z/]{0,12}"),
            user in proptest::collection::vec(("[a-z]{1,5}", "[a-z]{0,5}"), 0..2),
            limit in prop_oneof![Just(u32::MAX), 10u32..400],
        ) {
            let version = if v5 { ProtocolVersion::V5 } else { ProtocolVersion::V311 };
            let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(qos)];
            let topic = "t".repeat(topic_len);
            let payload = Bytes::from(vec![7u8; payload_len]);
            let properties = PublishProperties {
                content_type: content_type.map(ByteString::from),
                user_properties: user
                    .into_iter()
                    .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
                    .collect(),
                ..PublishProperties::default()
            };
            let view = PublishView {
                dup,
                qos,
                retain,
                topic: &topic,
                packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(9).unwrap()),
                topic_alias: alias,
                message_expiry_interval: expiry,
                subscription_identifiers: &ids,
                properties: &properties,
                payload: &payload,
            };
            let mut fast = BytesMut::from(&b"prefix"[..]);
            let fast_result = view.encode(version, limit, &mut fast);
            let mut measured = BytesMut::from(&b"prefix"[..]);
            let measured_result = view.encode_measured(version, limit, &mut measured);
            prop_assert_eq!(encoded(fast_result, fast), encoded(measured_result, measured));
        }
    }
}
