//! MQTT 5 properties: one struct per packet kind, each decoded strictly (only the properties the
//! packet allows, at most once unless repeatable) and encoded in a fixed order.

use bytes::Bytes;
use bytestring::ByteString;

use crate::decode::Reader;
use crate::encode::{Sink, put_binary, put_str, put_var_int};
use crate::{DecodeError, QoS};

/// User Properties: name/value pairs, in the order they were sent (MQTT-3.3.2-18).
pub type UserProperties = Vec<(ByteString, ByteString)>;

const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
const CONTENT_TYPE: u8 = 0x03;
const RESPONSE_TOPIC: u8 = 0x08;
const CORRELATION_DATA: u8 = 0x09;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
const SERVER_KEEP_ALIVE: u8 = 0x13;
const AUTHENTICATION_METHOD: u8 = 0x15;
const AUTHENTICATION_DATA: u8 = 0x16;
const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
const WILL_DELAY_INTERVAL: u8 = 0x18;
const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
const RESPONSE_INFORMATION: u8 = 0x1A;
const SERVER_REFERENCE: u8 = 0x1C;
const REASON_STRING: u8 = 0x1F;
const RECEIVE_MAXIMUM: u8 = 0x21;
const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
const TOPIC_ALIAS: u8 = 0x23;
const MAXIMUM_QOS: u8 = 0x24;
const RETAIN_AVAILABLE: u8 = 0x25;
const USER_PROPERTY: u8 = 0x26;
const MAXIMUM_PACKET_SIZE: u8 = 0x27;
const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

const NOT_ALLOWED: DecodeError =
    DecodeError::Malformed("[MQTT-2.2.2] property not allowed in this packet");
const DUPLICATE: DecodeError =
    DecodeError::Protocol("[MQTT-2.2.2] property appears more than once");

/// Reads a property section: the Property Length, then each property, handing its identifier
/// to `each`, which reads the value and returns `false` for a property the packet does not
/// allow. Duplicates are rejected unless the identifier is in `repeatable`.
fn read_properties(
    r: &mut Reader,
    repeatable: &[u8],
    mut each: impl FnMut(u8, &mut Reader) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.var_int()? as usize;
    if len > r.remaining() {
        return Err(DecodeError::Malformed(
            "[MQTT-2.2.2] property length exceeds the packet",
        ));
    }
    let mut props = r.split(len)?;
    let mut seen = 0u64;
    while !props.is_empty() {
        let id = props.var_int()?;
        let Ok(id) = u8::try_from(id) else {
            return Err(NOT_ALLOWED);
        };
        if id >= 64 {
            return Err(NOT_ALLOWED);
        }
        let bit = 1u64 << id;
        if seen & bit != 0 && !repeatable.contains(&id) {
            return Err(DUPLICATE);
        }
        seen |= bit;
        if !each(id, &mut props)? {
            return Err(NOT_ALLOWED);
        }
    }
    Ok(())
}

fn read_bool(r: &mut Reader, what: &'static str) -> Result<bool, DecodeError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Protocol(what)),
    }
}

fn read_user_property(r: &mut Reader, into: &mut UserProperties) -> Result<bool, DecodeError> {
    let name = r.string()?;
    let value = r.string()?;
    into.push((name, value));
    Ok(true)
}

/// A set of properties that can write itself (without the Property Length).
pub(crate) trait PropertySet {
    fn write_to<S: Sink + ?Sized>(&self, s: &mut S);
}

/// Writes a property section: the Property Length, then the properties.
pub(crate) fn write_section<S: Sink + ?Sized, P: PropertySet + ?Sized>(s: &mut S, props: &P) {
    let mut counter = crate::encode::Counter::default();
    props.write_to(&mut counter);
    put_var_int(s, counter.len() as u32);
    props.write_to(s);
}

macro_rules! property_set {
    ($($ty:ty => $write:path),* $(,)?) => {
        $(impl PropertySet for $ty {
            fn write_to<S: Sink + ?Sized>(&self, s: &mut S) {
                $write(self, s)
            }
        })*
    };
}

property_set! {
    ConnectProperties => ConnectProperties::write,
    ConnAckProperties => ConnAckProperties::write,
    PublishProperties => PublishProperties::write,
    WillProperties => WillProperties::write,
    AckProperties => AckProperties::write,
    SubscribeProperties => SubscribeProperties::write,
    DisconnectProperties => DisconnectProperties::write,
    AuthProperties => AuthProperties::write,
    UserProperties => put_user_properties,
}

fn put_u8_prop<S: Sink + ?Sized>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_u8(v);
    }
}

fn put_bool_prop<S: Sink + ?Sized>(s: &mut S, id: u8, v: Option<bool>) {
    put_u8_prop(s, id, v.map(u8::from));
}

fn put_u16_prop<S: Sink + ?Sized>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_slice(&v.to_be_bytes());
    }
}

fn put_u32_prop<S: Sink + ?Sized>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.put_u8(id);
        s.put_slice(&v.to_be_bytes());
    }
}

fn put_str_prop<S: Sink + ?Sized>(s: &mut S, id: u8, v: Option<&ByteString>) {
    if let Some(v) = v {
        s.put_u8(id);
        put_str(s, v);
    }
}

fn put_bin_prop<S: Sink + ?Sized>(s: &mut S, id: u8, v: Option<&Bytes>) {
    if let Some(v) = v {
        s.put_u8(id);
        put_binary(s, v);
    }
}

fn put_user_properties<S: Sink + ?Sized>(props: &UserProperties, s: &mut S) {
    for (name, value) in props {
        s.put_u8(USER_PROPERTY);
        put_str(s, name);
        put_str(s, value);
    }
}

/// Properties of CONNECT (MQTT 5), and the bridge bit of an MQTT 3.x CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    /// Session Expiry Interval in seconds; absent means 0.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1/2 PUBLISHes the client will handle at once; absent means 65,535.
    pub receive_maximum: Option<u16>,
    /// The largest packet the client accepts.
    pub maximum_packet_size: Option<u32>,
    /// How many topic aliases the client accepts from the server; absent means 0.
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information; absent means false.
    pub request_response_information: Option<bool>,
    /// Request Problem Information; absent means true.
    pub request_problem_information: Option<bool>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Authentication Method (enhanced authentication).
    pub authentication_method: Option<ByteString>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// Not a property: the bridge bit of an MQTT 3.1/3.1.1 CONNECT, the high bit of its
    /// protocol level (0x83, 0x84), with which Mosquitto's bridges (`try_private`) tell the
    /// broker they are bridges. Kept here because MQTT 3.x CONNECT has no properties; never
    /// set by decoding an MQTT 5 CONNECT and not encoded in one.
    pub bridge: bool,
}

impl ConnectProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| {
            match id {
                SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
                RECEIVE_MAXIMUM => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol(
                            "[MQTT-3.1.2-11] Receive Maximum is 0",
                        ));
                    }
                    p.receive_maximum = Some(v);
                }
                MAXIMUM_PACKET_SIZE => {
                    let v = r.u32()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol(
                            "[MQTT-3.1.2-11] Maximum Packet Size is 0",
                        ));
                    }
                    p.maximum_packet_size = Some(v);
                }
                TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16()?),
                REQUEST_RESPONSE_INFORMATION => {
                    p.request_response_information =
                        Some(read_bool(r, "Request Response Information is not 0 or 1")?);
                }
                REQUEST_PROBLEM_INFORMATION => {
                    p.request_problem_information =
                        Some(read_bool(r, "Request Problem Information is not 0 or 1")?);
                }
                USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
                AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
                AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "[MQTT-3.1.2-11] Authentication Data without Authentication Method",
            ));
        }
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        put_u32_prop(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16_prop(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u32_prop(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_u16_prop(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_bool_prop(
            s,
            REQUEST_RESPONSE_INFORMATION,
            self.request_response_information,
        );
        put_bool_prop(
            s,
            REQUEST_PROBLEM_INFORMATION,
            self.request_problem_information,
        );
        put_user_properties(&self.user_properties, s);
        put_str_prop(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(s, AUTHENTICATION_DATA, self.authentication_data.as_ref());
    }
}

/// Properties of CONNACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[allow(missing_docs)] // each field is the property of the same name
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<u16>,
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

impl ConnAckProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| {
            match id {
                SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
                RECEIVE_MAXIMUM => match r.u16()? {
                    0 => return Err(DecodeError::Protocol("Receive Maximum is 0")),
                    v => p.receive_maximum = Some(v),
                },
                MAXIMUM_QOS => {
                    p.maximum_qos = Some(match r.u8()? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => return Err(DecodeError::Protocol("Maximum QoS is not 0 or 1")),
                    });
                }
                RETAIN_AVAILABLE => {
                    p.retain_available = Some(read_bool(r, "Retain Available is not 0 or 1")?);
                }
                MAXIMUM_PACKET_SIZE => match r.u32()? {
                    0 => return Err(DecodeError::Protocol("Maximum Packet Size is 0")),
                    v => p.maximum_packet_size = Some(v),
                },
                ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(r.string()?),
                TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16()?),
                REASON_STRING => p.reason_string = Some(r.string()?),
                USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
                WILDCARD_SUBSCRIPTION_AVAILABLE => {
                    p.wildcard_subscription_available = Some(read_bool(
                        r,
                        "Wildcard Subscription Available is not 0 or 1",
                    )?);
                }
                SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                    p.subscription_identifiers_available = Some(read_bool(
                        r,
                        "Subscription Identifier Available is not 0 or 1",
                    )?);
                }
                SHARED_SUBSCRIPTION_AVAILABLE => {
                    p.shared_subscription_available =
                        Some(read_bool(r, "Shared Subscription Available is not 0 or 1")?);
                }
                SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16()?),
                RESPONSE_INFORMATION => p.response_information = Some(r.string()?),
                SERVER_REFERENCE => p.server_reference = Some(r.string()?),
                AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
                AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        put_u32_prop(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_u16_prop(s, RECEIVE_MAXIMUM, self.receive_maximum);
        put_u8_prop(s, MAXIMUM_QOS, self.maximum_qos.map(|q| q as u8));
        put_bool_prop(s, RETAIN_AVAILABLE, self.retain_available);
        put_u32_prop(s, MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        put_str_prop(
            s,
            ASSIGNED_CLIENT_IDENTIFIER,
            self.assigned_client_identifier.as_ref(),
        );
        put_u16_prop(s, TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        put_str_prop(s, REASON_STRING, self.reason_string.as_ref());
        put_user_properties(&self.user_properties, s);
        put_bool_prop(
            s,
            WILDCARD_SUBSCRIPTION_AVAILABLE,
            self.wildcard_subscription_available,
        );
        put_bool_prop(
            s,
            SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            self.subscription_identifiers_available,
        );
        put_bool_prop(
            s,
            SHARED_SUBSCRIPTION_AVAILABLE,
            self.shared_subscription_available,
        );
        put_u16_prop(s, SERVER_KEEP_ALIVE, self.server_keep_alive);
        put_str_prop(s, RESPONSE_INFORMATION, self.response_information.as_ref());
        put_str_prop(s, SERVER_REFERENCE, self.server_reference.as_ref());
        put_str_prop(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(s, AUTHENTICATION_DATA, self.authentication_data.as_ref());
    }
}

/// Properties of PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    /// Payload Format Indicator: `Some(true)` means UTF-8 text.
    pub payload_format_indicator: Option<bool>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias (validated against the maximum by the receiver, 0 included).
    pub topic_alias: Option<u16>,
    /// Response Topic: a topic name without wildcards.
    pub response_topic: Option<ByteString>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties in order.
    pub user_properties: UserProperties,
    /// Subscription Identifiers (server to client only; may repeat).
    pub subscription_identifiers: Vec<u32>,
    /// Content Type.
    pub content_type: Option<ByteString>,
}

/// Decodes the properties a PUBLISH shares with the Will; `Ok(false)` for any other id.
fn read_message_property(
    p: &mut PublishProperties,
    id: u8,
    r: &mut Reader,
) -> Result<bool, DecodeError> {
    match id {
        PAYLOAD_FORMAT_INDICATOR => {
            p.payload_format_indicator =
                Some(read_bool(r, "Payload Format Indicator is not 0 or 1")?);
        }
        MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32()?),
        CONTENT_TYPE => p.content_type = Some(r.string()?),
        RESPONSE_TOPIC => {
            let topic = r.string()?;
            if !crate::is_valid_topic_name(&topic) {
                return Err(DecodeError::Protocol(
                    "[MQTT-3.3.2-14] Response Topic is not a valid topic name",
                ));
            }
            p.response_topic = Some(topic);
        }
        CORRELATION_DATA => p.correlation_data = Some(r.binary()?),
        USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
        _ => return Ok(false),
    }
    Ok(true)
}

impl PublishProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(
            r,
            &[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER],
            |id, r| match id {
                TOPIC_ALIAS => {
                    p.topic_alias = Some(r.u16()?);
                    Ok(true)
                }
                SUBSCRIPTION_IDENTIFIER => {
                    let v = r.var_int()?;
                    if v == 0 {
                        return Err(DecodeError::Protocol("Subscription Identifier is 0"));
                    }
                    p.subscription_identifiers.push(v);
                    Ok(true)
                }
                _ => read_message_property(&mut p, id, r),
            },
        )?;
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        self.write_with(
            s,
            self.message_expiry_interval,
            self.topic_alias,
            &self.subscription_identifiers,
        );
    }

    /// Whether a property other than the per-delivery ones (expiry, alias, identifiers) is
    /// set: those [`Self::write_with`] writes from `self`.
    pub(crate) fn has_message_properties(&self) -> bool {
        self.payload_format_indicator.is_some()
            || self.response_topic.is_some()
            || self.correlation_data.is_some()
            || !self.user_properties.is_empty()
            || self.content_type.is_some()
    }

    /// Writes these properties with the per-delivery ones replaced.
    pub(crate) fn write_with<S: Sink + ?Sized>(
        &self,
        s: &mut S,
        message_expiry_interval: Option<u32>,
        topic_alias: Option<u16>,
        subscription_identifiers: &[u32],
    ) {
        put_bool_prop(s, PAYLOAD_FORMAT_INDICATOR, self.payload_format_indicator);
        put_u32_prop(s, MESSAGE_EXPIRY_INTERVAL, message_expiry_interval);
        put_u16_prop(s, TOPIC_ALIAS, topic_alias);
        put_str_prop(s, RESPONSE_TOPIC, self.response_topic.as_ref());
        put_bin_prop(s, CORRELATION_DATA, self.correlation_data.as_ref());
        put_user_properties(&self.user_properties, s);
        for id in subscription_identifiers {
            s.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_var_int(s, *id);
        }
        put_str_prop(s, CONTENT_TYPE, self.content_type.as_ref());
    }

    /// Whether no property is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Will Properties of CONNECT: the message properties of the Will plus its delay.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    /// Will Delay Interval in seconds; absent means 0.
    pub will_delay_interval: Option<u32>,
    /// The properties the Will is published with (never a Topic Alias or Subscription
    /// Identifier).
    pub message: PublishProperties,
}

impl WillProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| match id {
            WILL_DELAY_INTERVAL => {
                p.will_delay_interval = Some(r.u32()?);
                Ok(true)
            }
            _ => read_message_property(&mut p.message, id, r),
        })?;
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        put_u32_prop(s, WILL_DELAY_INTERVAL, self.will_delay_interval);
        self.message.write(s);
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    /// Reason String, for humans.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl AckProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| {
            match id {
                REASON_STRING => p.reason_string = Some(r.string()?),
                USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        put_str_prop(s, REASON_STRING, self.reason_string.as_ref());
        put_user_properties(&self.user_properties, s);
    }

    /// Whether no property is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

/// Properties of SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// Subscription Identifier, 1..268,435,455.
    pub subscription_identifier: Option<u32>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl SubscribeProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| {
            match id {
                SUBSCRIPTION_IDENTIFIER => match r.var_int()? {
                    0 => return Err(DecodeError::Protocol("Subscription Identifier is 0")),
                    v => p.subscription_identifier = Some(v),
                },
                USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        if let Some(id) = self.subscription_identifier {
            s.put_u8(SUBSCRIPTION_IDENTIFIER);
            put_var_int(s, id);
        }
        put_user_properties(&self.user_properties, s);
    }
}

/// Reads the properties of UNSUBSCRIBE: User Properties only.
pub(crate) fn decode_user_properties_only(r: &mut Reader) -> Result<UserProperties, DecodeError> {
    let mut props = UserProperties::new();
    read_properties(r, &[USER_PROPERTY], |id, r| match id {
        USER_PROPERTY => read_user_property(r, &mut props),
        _ => Ok(false),
    })?;
    Ok(props)
}

/// Properties of DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    /// Session Expiry Interval (client to server only, MQTT-3.14.2-2).
    pub session_expiry_interval: Option<u32>,
    /// Reason String.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Server Reference (with 0x9C / 0x9D).
    pub server_reference: Option<ByteString>,
}

impl DisconnectProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| {
            match id {
                SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
                REASON_STRING => p.reason_string = Some(r.string()?),
                USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
                SERVER_REFERENCE => p.server_reference = Some(r.string()?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        put_u32_prop(s, SESSION_EXPIRY_INTERVAL, self.session_expiry_interval);
        put_str_prop(s, REASON_STRING, self.reason_string.as_ref());
        put_user_properties(&self.user_properties, s);
        put_str_prop(s, SERVER_REFERENCE, self.server_reference.as_ref());
    }

    /// Whether no property is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Properties of AUTH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    /// Authentication Method (required in AUTH).
    pub authentication_method: Option<ByteString>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// Reason String.
    pub reason_string: Option<ByteString>,
    /// User Properties.
    pub user_properties: UserProperties,
}

impl AuthProperties {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = Self::default();
        read_properties(r, &[USER_PROPERTY], |id, r| {
            match id {
                AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
                AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
                REASON_STRING => p.reason_string = Some(r.string()?),
                USER_PROPERTY => return read_user_property(r, &mut p.user_properties),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if p.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "[MQTT-3.15.2] AUTH without Authentication Method",
            ));
        }
        Ok(p)
    }

    pub(crate) fn write<S: Sink + ?Sized>(&self, s: &mut S) {
        put_str_prop(
            s,
            AUTHENTICATION_METHOD,
            self.authentication_method.as_ref(),
        );
        put_bin_prop(s, AUTHENTICATION_DATA, self.authentication_data.as_ref());
        put_str_prop(s, REASON_STRING, self.reason_string.as_ref());
        put_user_properties(&self.user_properties, s);
    }
}
