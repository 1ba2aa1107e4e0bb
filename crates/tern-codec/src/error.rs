//! Decoding and encoding errors.

use thiserror::Error;

use crate::ReasonCode;

/// Why a packet could not be decoded. Each variant says what the receiver answers with
/// ([`DecodeError::reason_code`]); an MQTT 3.x server simply closes the connection.
///
/// The messages name the statement of the specification that was broken where one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The packet cannot be parsed (reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet parses but breaks a protocol rule (reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A topic name is not valid (reason 0x90).
    #[error("invalid topic name: {0}")]
    TopicNameInvalid(&'static str),
    /// The fixed header announces a packet above the maximum packet size (reason 0x95).
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet, fixed header included.
        size: u64,
        /// The maximum in force.
        max: u32,
    },
    /// CONNECT named a protocol this server does not speak at all: close without CONNACK
    /// (MQTT-3.1.2-1).
    #[error("unknown protocol name in CONNECT")]
    UnknownProtocolName,
    /// CONNECT named MQTT but a level this server does not support: CONNACK 0x01 (3.x) or
    /// 0x84 (5.0), then close (MQTT-3.1.2-2).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
}

impl DecodeError {
    /// The MQTT 5 reason code that reports this error to the peer.
    #[must_use]
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            Self::Protocol(_) | Self::UnknownProtocolName => ReasonCode::PROTOCOL_ERROR,
            Self::TopicNameInvalid(_) => ReasonCode::TOPIC_NAME_INVALID,
            Self::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Self::UnsupportedProtocolLevel(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The packet would exceed the protocol's largest Remaining Length.
    #[error("packet body of {0} bytes exceeds the protocol maximum")]
    PacketTooLarge(usize),
    /// A string or binary field exceeds 65,535 bytes.
    #[error("a string or binary field exceeds 65535 bytes")]
    FieldTooLong,
    /// The packet would exceed the receiver's Maximum Packet Size.
    #[error("packet of {size} bytes exceeds the receiver's maximum packet size of {max} bytes")]
    ExceedsPeerLimit {
        /// Size of the whole packet.
        size: usize,
        /// The receiver's maximum.
        max: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_specific() {
        let e = DecodeError::PacketTooLarge {
            size: 300,
            max: 256,
        };
        assert_eq!(
            e.to_string(),
            "packet of 300 bytes exceeds the maximum packet size of 256 bytes"
        );
        assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
        let e = DecodeError::Malformed("[MQTT-1.5.4-2] string contains U+0000");
        assert_eq!(
            e.to_string(),
            "malformed packet: [MQTT-1.5.4-2] string contains U+0000"
        );
        assert_eq!(e.reason_code(), ReasonCode::MALFORMED_PACKET);
    }
}
