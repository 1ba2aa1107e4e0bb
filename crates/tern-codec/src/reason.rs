//! MQTT 5 reason codes (and the MQTT 3.x return codes they map to).

use std::fmt;

/// A reason code as carried by CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
/// DISCONNECT and AUTH. Values below 0x80 report success, 0x80 and above failure.
///
/// MQTT 3.x CONNACK return codes and SUBACK codes are represented by their MQTT 5 equivalent and
/// translated by the encoder and decoder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ReasonCode(pub u8);

macro_rules! reason_codes {
    ($($name:ident = $value:literal, $text:literal;)*) => {
        impl ReasonCode {
            $(
                #[doc = $text]
                pub const $name: Self = Self($value);
            )*

            /// The specification's name for this code, given the packet type it appears in
            /// (0x00 has several names), or `None` for a value the specification does not define.
            #[must_use]
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

reason_codes! {
    SUCCESS = 0x00, "Success";
    GRANTED_QOS_1 = 0x01, "Granted QoS 1";
    GRANTED_QOS_2 = 0x02, "Granted QoS 2";
    DISCONNECT_WITH_WILL = 0x04, "Disconnect with Will Message";
    NO_MATCHING_SUBSCRIBERS = 0x10, "No matching subscribers";
    NO_SUBSCRIPTION_EXISTED = 0x11, "No subscription existed";
    CONTINUE_AUTHENTICATION = 0x18, "Continue authentication";
    REAUTHENTICATE = 0x19, "Re-authenticate";
    UNSPECIFIED_ERROR = 0x80, "Unspecified error";
    MALFORMED_PACKET = 0x81, "Malformed Packet";
    PROTOCOL_ERROR = 0x82, "Protocol Error";
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83, "Implementation specific error";
    UNSUPPORTED_PROTOCOL_VERSION = 0x84, "Unsupported Protocol Version";
    CLIENT_IDENTIFIER_NOT_VALID = 0x85, "Client Identifier not valid";
    BAD_USER_NAME_OR_PASSWORD = 0x86, "Bad User Name or Password";
    NOT_AUTHORIZED = 0x87, "Not authorized";
    SERVER_UNAVAILABLE = 0x88, "Server unavailable";
    SERVER_BUSY = 0x89, "Server busy";
    BANNED = 0x8A, "Banned";
    SERVER_SHUTTING_DOWN = 0x8B, "Server shutting down";
    BAD_AUTHENTICATION_METHOD = 0x8C, "Bad authentication method";
    KEEP_ALIVE_TIMEOUT = 0x8D, "Keep Alive timeout";
    SESSION_TAKEN_OVER = 0x8E, "Session taken over";
    TOPIC_FILTER_INVALID = 0x8F, "Topic Filter invalid";
    TOPIC_NAME_INVALID = 0x90, "Topic Name invalid";
    PACKET_IDENTIFIER_IN_USE = 0x91, "Packet Identifier in use";
    PACKET_IDENTIFIER_NOT_FOUND = 0x92, "Packet Identifier not found";
    RECEIVE_MAXIMUM_EXCEEDED = 0x93, "Receive Maximum exceeded";
    TOPIC_ALIAS_INVALID = 0x94, "Topic Alias invalid";
    PACKET_TOO_LARGE = 0x95, "Packet too large";
    MESSAGE_RATE_TOO_HIGH = 0x96, "Message rate too high";
    QUOTA_EXCEEDED = 0x97, "Quota exceeded";
    ADMINISTRATIVE_ACTION = 0x98, "Administrative action";
    PAYLOAD_FORMAT_INVALID = 0x99, "Payload format invalid";
    RETAIN_NOT_SUPPORTED = 0x9A, "Retain not supported";
    QOS_NOT_SUPPORTED = 0x9B, "QoS not supported";
    USE_ANOTHER_SERVER = 0x9C, "Use another server";
    SERVER_MOVED = 0x9D, "Server moved";
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E, "Shared Subscriptions not supported";
    CONNECTION_RATE_EXCEEDED = 0x9F, "Connection rate exceeded";
    MAXIMUM_CONNECT_TIME = 0xA0, "Maximum connect time";
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1, "Subscription Identifiers not supported";
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2, "Wildcard Subscriptions not supported";
}

impl ReasonCode {
    /// Normal disconnection: the DISCONNECT name of 0x00.
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    /// Granted QoS 0: the SUBACK name of 0x00.
    pub const GRANTED_QOS_0: Self = Self(0x00);

    /// Whether the code reports a failure (0x80 and above).
    #[must_use]
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The MQTT 3.x CONNACK return code that carries the same meaning.
    #[must_use]
    pub fn to_v3_connect_return_code(self) -> u8 {
        match self {
            Self::SUCCESS => 0,
            Self::UNSUPPORTED_PROTOCOL_VERSION => 1,
            Self::CLIENT_IDENTIFIER_NOT_VALID => 2,
            Self::BAD_USER_NAME_OR_PASSWORD => 4,
            Self::NOT_AUTHORIZED | Self::BANNED | Self::BAD_AUTHENTICATION_METHOD => 5,
            _ => 3,
        }
    }

    /// The MQTT 5 code for an MQTT 3.x CONNACK return code; `None` for reserved values.
    #[must_use]
    pub fn from_v3_connect_return_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::SUCCESS,
            1 => Self::UNSUPPORTED_PROTOCOL_VERSION,
            2 => Self::CLIENT_IDENTIFIER_NOT_VALID,
            3 => Self::SERVER_UNAVAILABLE,
            4 => Self::BAD_USER_NAME_OR_PASSWORD,
            5 => Self::NOT_AUTHORIZED,
            _ => return None,
        })
    }

    /// MQTT 3.x SUBACK codes are the granted QoS or 0x80 for any failure.
    #[must_use]
    pub fn to_v3_suback_code(self) -> u8 {
        if self.is_error() { 0x80 } else { self.0 }
    }

    pub(crate) fn allowed_in(self, set: &[u8]) -> bool {
        set.contains(&self.0)
    }
}

/// Codes a CONNACK may carry (Table 3-1).
pub(crate) const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// Codes a PUBACK or PUBREC may carry (MQTT-3.4.2-1, MQTT-3.5.2-1).
pub(crate) const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
/// Codes a PUBREL or PUBCOMP may carry (MQTT-3.6.2-1, MQTT-3.7.2-1).
pub(crate) const PUBREL_CODES: &[u8] = &[0x00, 0x92];
/// Codes a SUBACK may carry (MQTT-3.9.3-2).
pub(crate) const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// Codes an UNSUBACK may carry (MQTT-3.11.3-2).
pub(crate) const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
/// Codes a DISCONNECT may carry (MQTT-3.14.2-1), from either side.
pub(crate) const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
/// Codes an AUTH may carry (MQTT-3.15.2-1).
pub(crate) const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:02X})", self.0),
            None => write!(f, "unknown reason code 0x{:02X}", self.0),
        }
    }
}

impl fmt::Debug for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReasonCode(0x{:02X})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_code_in_words() {
        assert_eq!(
            ReasonCode::NOT_AUTHORIZED.to_string(),
            "Not authorized (0x87)"
        );
        assert_eq!(ReasonCode(0x7F).to_string(), "unknown reason code 0x7F");
    }

    #[test]
    fn v3_connect_codes_round_trip() {
        for code in 0..=5 {
            let v5 = ReasonCode::from_v3_connect_return_code(code).unwrap();
            assert_eq!(v5.to_v3_connect_return_code(), code);
        }
        assert_eq!(ReasonCode::from_v3_connect_return_code(6), None);
    }
}
