//! The control packets.

use bytes::Bytes;
use bytestring::ByteString;

use crate::properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, SubscribeProperties, UserProperties, WillProperties,
};
use crate::{PacketId, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

/// The packet type in the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the specification's names
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The lower-case name used in logs and metric labels.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::ConnAck => "connack",
            Self::Publish => "publish",
            Self::PubAck => "puback",
            Self::PubRec => "pubrec",
            Self::PubRel => "pubrel",
            Self::PubComp => "pubcomp",
            Self::Subscribe => "subscribe",
            Self::SubAck => "suback",
            Self::Unsubscribe => "unsubscribe",
            Self::UnsubAck => "unsuback",
            Self::PingReq => "pingreq",
            Self::PingResp => "pingresp",
            Self::Disconnect => "disconnect",
            Self::Auth => "auth",
        }
    }
}

/// Any MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // the specification's names
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    #[must_use]
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.x).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// MQTT 5 properties.
    pub properties: ConnectProperties,
    /// The client identifier, possibly empty.
    pub client_id: ByteString,
    /// The Will, if the Will Flag is set.
    pub will: Option<LastWill>,
    /// User Name, if its flag is set.
    pub username: Option<ByteString>,
    /// Password, if its flag is set.
    pub password: Option<Bytes>,
}

/// The Will Message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Will Topic: a valid topic name.
    pub topic: ByteString,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// MQTT 5 Will Properties.
    pub properties: WillProperties,
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session Present (always false on 3.1, which has no such flag).
    pub session_present: bool,
    /// The outcome; MQTT 3.x return codes are mapped to and from their MQTT 5 equivalent.
    pub reason: ReasonCode,
    /// MQTT 5 properties.
    pub properties: ConnAckProperties,
}

/// PUBLISH: an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this packet is a re-delivery.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic Name; empty only in MQTT 5 when a Topic Alias stands for it.
    pub topic: ByteString,
    /// Present exactly when `qos` is 1 or 2.
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties.
    pub properties: PublishProperties,
    /// The application message.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The identifier of the PUBLISH (or PUBREL) being acknowledged.
    pub packet_id: PacketId,
    /// MQTT 5 reason code; always success on MQTT 3.x.
    pub reason: ReasonCode,
    /// MQTT 5 properties.
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgement without properties.
    #[must_use]
    pub fn new(packet_id: PacketId) -> Self {
        Self::with_reason(packet_id, ReasonCode::SUCCESS)
    }

    /// An acknowledgement with the given reason code and no properties.
    #[must_use]
    pub fn with_reason(packet_id: PacketId, reason: ReasonCode) -> Self {
        Self {
            packet_id,
            reason,
            properties: AckProperties::default(),
        }
    }
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: SubscribeProperties,
    /// One or more topic filters (not yet checked for wildcard syntax) with their options.
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Identifier of the SUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// One code per filter, in order.
    pub reasons: Vec<ReasonCode>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: PacketId,
    /// MQTT 5 User Properties.
    pub user_properties: UserProperties,
    /// One or more topic filters.
    pub filters: Vec<ByteString>,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Identifier of the UNSUBSCRIBE being answered.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// MQTT 5: one code per filter, in order (empty on 3.x, which has no payload).
    pub reasons: Vec<ReasonCode>,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// MQTT 5 reason code.
    pub reason: ReasonCode,
    /// MQTT 5 properties.
    pub properties: DisconnectProperties,
}

impl Disconnect {
    /// A DISCONNECT with the given reason code and no properties.
    #[must_use]
    pub fn with_reason(reason: ReasonCode) -> Self {
        Self {
            reason,
            properties: DisconnectProperties::default(),
        }
    }
}

/// AUTH (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0x00, 0x18 (continue) or 0x19 (re-authenticate).
    pub reason: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}
