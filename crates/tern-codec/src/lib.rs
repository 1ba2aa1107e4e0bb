//! MQTT 3.1 (`MQIsdp`, level 3), 3.1.1 (level 4) and 5.0 (level 5) control packets: the types,
//! a strict decoder and an encoder.
//!
//! This crate does no IO and keeps no connection state beyond the negotiated protocol version.
//! It is the one codec of the project: the broker, the bundled client, the load generator and
//! the tests all use it.
//!
//! Decoding is strict. Everything the specification calls a malformed packet (reserved flag bits,
//! non-minimal or over-long variable byte integers, ill-formed UTF-8 or U+0000 in strings,
//! duplicate properties, properties not allowed in a packet, wildcards in topic names, packet
//! identifier 0, truncated fields, trailing bytes) is a [`DecodeError`] that names the statement
//! it breaks and maps to the reason code the receiver should answer with
//! ([`DecodeError::reason_code`]).
//!
//! A packet whose size exceeds the decoder's maximum is rejected as soon as its fixed header has
//! been read, before the body is buffered.

mod decode;
mod encode;
mod error;
mod packet;
mod properties;
mod reason;
mod topic;
mod types;

pub use bytestring::ByteString;
pub use decode::Decoder;
pub use encode::PublishView;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PacketType, Publish, SubAck,
    Subscribe, UnsubAck, Unsubscribe,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperties, WillProperties,
};
pub use reason::ReasonCode;
pub use topic::{is_valid_topic_filter, is_valid_topic_name, split_shared};
pub use types::{PacketId, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

/// The largest value a Remaining Length (a Variable Byte Integer) can hold.
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;
/// The largest packet the protocol allows: one type byte, four length bytes and the body.
pub const MAX_PACKET_SIZE: u32 = MAX_REMAINING_LENGTH + 5;
