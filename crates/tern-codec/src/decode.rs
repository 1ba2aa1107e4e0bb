//! The strict decoder.

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use crate::packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, LastWill, Packet, Publish, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};
use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, WillProperties, decode_user_properties_only,
};
use crate::reason::{
    AUTH_CODES, CONNACK_CODES, DISCONNECT_CODES, PUBACK_CODES, PUBREL_CODES, SUBACK_CODES,
    UNSUBACK_CODES,
};
use crate::{
    DecodeError, MAX_PACKET_SIZE, PacketId, ProtocolVersion, QoS, ReasonCode, RetainHandling,
    SubscriptionOptions,
};

const TRUNCATED: DecodeError = DecodeError::Malformed("[MQTT-2.1.4] field runs past the packet");
const TRAILING: DecodeError =
    DecodeError::Malformed("[MQTT-2.1.4] bytes left over after the packet");
const BAD_FLAGS: DecodeError =
    DecodeError::Malformed("[MQTT-2.2.2-2] reserved flag bits of the fixed header are wrong");

/// Cursor over one packet's body. Every read checks the remaining length first.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        match decode_var_int(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(TRUNCATED),
        }
    }

    pub(crate) fn split(&mut self, len: usize) -> Result<Reader, DecodeError> {
        if self.buf.len() < len {
            return Err(TRUNCATED);
        }
        Ok(Reader::new(self.buf.split_to(len)))
    }

    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        if self.buf.len() < len {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(len))
    }

    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(DecodeError::Malformed(
                "[MQTT-1.5.4-2] string contains U+0000",
            ));
        }
        ByteString::try_from(raw)
            .map_err(|_| DecodeError::Malformed("[MQTT-1.5.4-1] string is not well-formed UTF-8"))
    }

    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::Protocol(
            "[MQTT-2.3.1-1] packet identifier is 0",
        ))
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(TRAILING)
        }
    }
}

/// Decodes a Variable Byte Integer at the start of `buf`: `Ok(None)` when more bytes are
/// needed, the value and its length otherwise. Rejects a fifth byte and non-minimal encodings
/// (MQTT-1.5.5-1).
pub(crate) fn decode_var_int(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value = 0u32;
    for (i, &byte) in buf.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-1.5.5-1] variable byte integer is not minimally encoded",
                ));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::Malformed(
            "[MQTT-1.5.5] variable byte integer exceeds 4 bytes",
        ));
    }
    Ok(None)
}

/// Splits MQTT packets out of a byte stream.
///
/// A server-side decoder starts without a protocol version and learns it from the CONNECT
/// packet (before that, only CONNECT is accepted); a client-side decoder is created with the
/// version it asked for. The maximum packet size is enforced from the fixed header alone.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Decoder {
    /// A server-side decoder that accepts packets of up to `max_packet_size` bytes.
    #[must_use]
    pub fn new(max_packet_size: u32) -> Self {
        Self {
            version: None,
            max_packet_size: max_packet_size.min(MAX_PACKET_SIZE),
        }
    }

    /// A decoder for a connection whose protocol version is already known.
    #[must_use]
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            version: Some(version),
            ..Self::new(max_packet_size)
        }
    }

    /// The protocol version, once known.
    #[must_use]
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// The maximum packet size in force.
    #[must_use]
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Changes the maximum packet size.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max.min(MAX_PACKET_SIZE);
    }

    /// How many bytes the packet at the start of `src` needs in total, once its fixed header is
    /// complete; lets the caller reserve buffer space for exactly one packet.
    pub fn frame_len(&self, src: &[u8]) -> Result<Option<usize>, DecodeError> {
        if src.len() < 2 {
            return Ok(None);
        }
        let Some((remaining, len_bytes)) = decode_var_int(&src[1..])? else {
            return Ok(None);
        };
        let size = 1 + len_bytes as u64 + u64::from(remaining);
        if size > u64::from(self.max_packet_size) {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        Ok(Some(size as usize))
    }

    /// Decodes the next packet from `src`, consuming its bytes. `Ok(None)` means the packet is
    /// not complete yet and nothing was consumed.
    ///
    /// The returned packet owns its data in one allocation of the packet's exact size, so it
    /// never pins the caller's read buffer.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        // Before CONNECT, anything else is refused from its first byte, without waiting for
        // the body it announces (an HTTP request or other stray bytes on the port).
        if self.version.is_none() && src.first().is_some_and(|&b| b >> 4 != 1) {
            return Err(DecodeError::Protocol(
                "[MQTT-3.1.0-1] first packet is not CONNECT",
            ));
        }
        let Some(size) = self.frame_len(src)? else {
            return Ok(None);
        };
        if src.len() < size {
            return Ok(None);
        }
        let header = src[0];
        let header_len = size - remaining_len_of(src, size);
        let body = Bytes::copy_from_slice(&src[header_len..size]);
        src.advance(size);
        self.decode_body(header, body).map(Some)
    }

    fn decode_body(&mut self, header: u8, body: Bytes) -> Result<Packet, DecodeError> {
        let packet_type = header >> 4;
        let flags = header & 0x0F;
        let mut r = Reader::new(body);
        let Some(version) = self.version else {
            if packet_type != 1 {
                return Err(DecodeError::Protocol(
                    "[MQTT-3.1.0-1] first packet is not CONNECT",
                ));
            }
            if flags != 0 {
                return Err(BAD_FLAGS);
            }
            return self.decode_connect(&mut r);
        };
        let v5 = version.is_v5();
        let packet = match packet_type {
            1 => {
                if flags != 0 {
                    return Err(BAD_FLAGS);
                }
                // A second CONNECT is decoded with its own version so that the state machine
                // can reject it as a protocol error; it must not change this connection's.
                let mut second = Decoder::new(self.max_packet_size);
                return second.decode_connect(&mut r);
            }
            2 => {
                check_flags(flags, 0)?;
                decode_connack(&mut r, version)?
            }
            3 => decode_publish(&mut r, flags, version)?,
            4..=7 => {
                let expected = if packet_type == 6 { 0b0010 } else { 0 };
                check_pubrel_like_flags(flags, expected, version)?;
                let ack = decode_ack(&mut r, version, packet_type)?;
                match packet_type {
                    4 => Packet::PubAck(ack),
                    5 => Packet::PubRec(ack),
                    6 => Packet::PubRel(ack),
                    _ => Packet::PubComp(ack),
                }
            }
            8 => {
                check_pubrel_like_flags(flags, 0b0010, version)?;
                decode_subscribe(&mut r, version)?
            }
            9 => {
                check_flags(flags, 0)?;
                let packet_id = r.packet_id()?;
                let properties = if v5 {
                    AckProperties::decode(&mut r)?
                } else {
                    Default::default()
                };
                let mut reasons = Vec::with_capacity(r.remaining());
                while !r.is_empty() {
                    let code = ReasonCode(r.u8()?);
                    let ok = if v5 {
                        code.allowed_in(SUBACK_CODES)
                    } else {
                        matches!(code.0, 0 | 1 | 2 | 0x80)
                    };
                    if !ok {
                        return Err(DecodeError::Malformed("[MQTT-3.9.3-2] invalid SUBACK code"));
                    }
                    reasons.push(code);
                }
                Packet::SubAck(SubAck {
                    packet_id,
                    properties,
                    reasons,
                })
            }
            10 => {
                check_pubrel_like_flags(flags, 0b0010, version)?;
                let packet_id = r.packet_id()?;
                let user_properties = if v5 {
                    decode_user_properties_only(&mut r)?
                } else {
                    Vec::new()
                };
                let mut filters = Vec::new();
                while !r.is_empty() {
                    filters.push(r.string()?);
                }
                if filters.is_empty() {
                    return Err(DecodeError::Protocol(
                        "[MQTT-3.10.3-2] UNSUBSCRIBE without filters",
                    ));
                }
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    user_properties,
                    filters,
                })
            }
            11 => {
                check_flags(flags, 0)?;
                let packet_id = r.packet_id()?;
                let mut properties = AckProperties::default();
                let mut reasons = Vec::new();
                if v5 {
                    properties = AckProperties::decode(&mut r)?;
                    while !r.is_empty() {
                        let code = ReasonCode(r.u8()?);
                        if !code.allowed_in(UNSUBACK_CODES) {
                            return Err(DecodeError::Malformed(
                                "[MQTT-3.11.3-2] invalid UNSUBACK code",
                            ));
                        }
                        reasons.push(code);
                    }
                }
                Packet::UnsubAck(UnsubAck {
                    packet_id,
                    properties,
                    reasons,
                })
            }
            12 | 13 => {
                check_flags(flags, 0)?;
                r.finish()?;
                if packet_type == 12 {
                    Packet::PingReq
                } else {
                    Packet::PingResp
                }
            }
            14 => {
                if flags != 0 {
                    return Err(DecodeError::Malformed(
                        "[MQTT-3.14.1-1] reserved flag bits of DISCONNECT are not 0",
                    ));
                }
                let mut d = Disconnect::default();
                if v5 && !r.is_empty() {
                    d.reason = ReasonCode(r.u8()?);
                    // The packet parses; an undefined code breaks a rule (checklist: 0x82).
                    if !d.reason.allowed_in(DISCONNECT_CODES) {
                        return Err(DecodeError::Protocol(
                            "[MQTT-3.14.2-1] invalid DISCONNECT reason code",
                        ));
                    }
                    if !r.is_empty() {
                        d.properties = DisconnectProperties::decode(&mut r)?;
                    }
                }
                Packet::Disconnect(d)
            }
            15 if v5 => {
                if flags != 0 {
                    return Err(DecodeError::Malformed(
                        "[MQTT-3.15.1-1] reserved flag bits of AUTH are not 0",
                    ));
                }
                let mut auth = Auth::default();
                if !r.is_empty() {
                    auth.reason = ReasonCode(r.u8()?);
                    if !auth.reason.allowed_in(AUTH_CODES) {
                        return Err(DecodeError::Malformed(
                            "[MQTT-3.15.2-1] invalid AUTH reason code",
                        ));
                    }
                    auth.properties = AuthProperties::decode(&mut r)?;
                } else {
                    // The short form has no Authentication Method, which AUTH requires.
                    return Err(DecodeError::Protocol(
                        "[MQTT-3.15.2] AUTH without Authentication Method",
                    ));
                }
                Packet::Auth(auth)
            }
            _ => return Err(DecodeError::Malformed("[MQTT-2.1.2] reserved packet type")),
        };
        r.finish()?;
        Ok(packet)
    }

    fn decode_connect(&mut self, r: &mut Reader) -> Result<Packet, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        // The high bit of a 3.x level marks a bridge (Mosquitto's `try_private`); MQTT 5
        // bridges use No Local instead, and 0x85 is no level of any version.
        let (version, bridge) = match (&name[..], level) {
            (b"MQTT", 4) => (ProtocolVersion::V311, false),
            (b"MQTT", 0x84) => (ProtocolVersion::V311, true),
            (b"MQTT", 5) => (ProtocolVersion::V5, false),
            (b"MQIsdp", 3) => (ProtocolVersion::V31, false),
            (b"MQIsdp", 0x83) => (ProtocolVersion::V31, true),
            (b"MQTT" | b"MQIsdp", _) => return Err(DecodeError::UnsupportedProtocolLevel(level)),
            _ => return Err(DecodeError::UnknownProtocolName),
        };
        // From here on errors can be reported in this version's terms.
        self.version = Some(version);
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::Malformed(
                "[MQTT-3.1.2-3] reserved CONNECT flag is set",
            ));
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & 0x20 != 0;
        let password_flag = flags & 0x40 != 0;
        let username_flag = flags & 0x80 != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            return Err(DecodeError::Malformed(
                "[MQTT-3.1.2-11] Will QoS or Will Retain set without the Will Flag",
            ));
        }
        let Some(will_qos) = QoS::from_u8(will_qos) else {
            return Err(DecodeError::Malformed("[MQTT-3.1.2-12] Will QoS is 3"));
        };
        if !version.is_v5() && password_flag && !username_flag {
            return Err(DecodeError::Malformed(
                "[MQTT-3.1.2-22] Password Flag set without User Name Flag",
            ));
        }
        let keep_alive = r.u16()?;
        let properties = if version.is_v5() {
            ConnectProperties::decode(r)?
        } else {
            ConnectProperties {
                bridge,
                ..ConnectProperties::default()
            }
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if version.is_v5() {
                WillProperties::decode(r)?
            } else {
                Default::default()
            };
            let topic = r.string()?;
            if !crate::is_valid_topic_name(&topic) {
                return Err(DecodeError::TopicNameInvalid(
                    "[MQTT-3.1.3-11] Will Topic is not a valid topic name",
                ));
            }
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if username_flag {
            Some(r.string()?)
        } else {
            None
        };
        let password = if password_flag {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Packet::Connect(Box::new(Connect {
            protocol: version,
            clean_start,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })))
    }
}

/// Length of the body of a complete frame of `size` bytes at the start of `src`.
fn remaining_len_of(src: &[u8], size: usize) -> usize {
    let len_bytes = src[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    size - 1 - len_bytes
}

fn check_flags(flags: u8, expected: u8) -> Result<(), DecodeError> {
    if flags == expected {
        Ok(())
    } else {
        Err(BAD_FLAGS)
    }
}

/// PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0010. MQTT 3.1 also lets them carry DUP on a
/// retransmission (§3.1-flags).
fn check_pubrel_like_flags(
    flags: u8,
    expected: u8,
    version: ProtocolVersion,
) -> Result<(), DecodeError> {
    if flags == expected
        || (version == ProtocolVersion::V31 && expected != 0 && flags == expected | 0x08)
    {
        Ok(())
    } else {
        Err(BAD_FLAGS)
    }
}

fn decode_connack(r: &mut Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let ack_flags = r.u8()?;
    // MQTT 3.1 does not use this byte at all: it carries no Session Present flag.
    let ack_flags = if version == ProtocolVersion::V31 {
        0
    } else {
        ack_flags
    };
    if ack_flags & 0xFE != 0 {
        return Err(DecodeError::Malformed(
            "[MQTT-3.2.2-1] reserved CONNACK flags are set",
        ));
    }
    let code = r.u8()?;
    let mut connack = ConnAck {
        session_present: ack_flags & 1 != 0,
        ..Default::default()
    };
    if version.is_v5() {
        connack.reason = ReasonCode(code);
        if !connack.reason.allowed_in(CONNACK_CODES) {
            return Err(DecodeError::Malformed(
                "[MQTT-3.2.2-8] invalid CONNACK reason code",
            ));
        }
        connack.properties = ConnAckProperties::decode(r)?;
    } else {
        connack.reason = ReasonCode::from_v3_connect_return_code(code).ok_or(
            DecodeError::Malformed("[MQTT-3.2.2-6] reserved CONNACK return code"),
        )?;
    }
    Ok(Packet::ConnAck(connack))
}

fn decode_publish(
    r: &mut Reader,
    flags: u8,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let dup = flags & 0x08 != 0;
    let retain = flags & 0x01 != 0;
    let Some(qos) = QoS::from_u8((flags >> 1) & 0x03) else {
        return Err(DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH with QoS 3"));
    };
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::Malformed(
            "[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH",
        ));
    }
    let topic = r.string()?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::TopicNameInvalid(
            "[MQTT-3.3.2-2] topic name contains a wildcard",
        ));
    }
    if topic.is_empty() && !version.is_v5() {
        return Err(DecodeError::TopicNameInvalid(
            "[MQTT-4.7.3-1] topic name is empty",
        ));
    }
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.packet_id()?)
    };
    let properties = if version.is_v5() {
        PublishProperties::decode(r)?
    } else {
        Default::default()
    };
    let payload = r.rest();
    Ok(Packet::Publish(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload,
    }))
}

fn decode_ack(
    r: &mut Reader,
    version: ProtocolVersion,
    packet_type: u8,
) -> Result<Ack, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut ack = Ack::new(packet_id);
    if version.is_v5() && !r.is_empty() {
        ack.reason = ReasonCode(r.u8()?);
        let allowed = if packet_type <= 5 {
            PUBACK_CODES
        } else {
            PUBREL_CODES
        };
        if !ack.reason.allowed_in(allowed) {
            return Err(DecodeError::Malformed(
                "[MQTT-3.4.2-1] invalid acknowledgement reason code",
            ));
        }
        if !r.is_empty() {
            ack.properties = AckProperties::decode(r)?;
        }
    }
    Ok(ack)
}

fn decode_subscribe(r: &mut Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet_id = r.packet_id()?;
    let v5 = version.is_v5();
    let properties = if v5 {
        SubscribeProperties::decode(r)?
    } else {
        Default::default()
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let byte = r.u8()?;
        let options = if v5 {
            if byte & 0xC0 != 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-3.8.3-5] reserved subscription option bits are set",
                ));
            }
            let Some(qos) = QoS::from_u8(byte & 0x03) else {
                return Err(DecodeError::Protocol(
                    "[MQTT-3.8.3] subscription with QoS 3",
                ));
            };
            let retain_handling = match (byte >> 4) & 0x03 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => return Err(DecodeError::Protocol("[MQTT-3.8.3] Retain Handling is 3")),
            };
            SubscriptionOptions {
                qos,
                no_local: byte & 0x04 != 0,
                retain_as_published: byte & 0x08 != 0,
                retain_handling,
            }
        } else {
            match QoS::from_u8(byte) {
                Some(qos) => SubscriptionOptions::with_qos(qos),
                None => {
                    return Err(DecodeError::Malformed(
                        "[MQTT-3.8.3-4] requested QoS byte has reserved bits set or is 3",
                    ));
                }
            }
        };
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::Protocol(
            "[MQTT-3.8.3-3] SUBSCRIBE without filters",
        ));
    }
    Ok(Packet::Subscribe(Subscribe {
        packet_id,
        properties,
        filters,
    }))
}
