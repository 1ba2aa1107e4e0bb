//! What to connect to and how.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use tern_codec::{ByteString, Connect, ConnectProperties, LastWill, ProtocolVersion};

use crate::TlsOptions;

/// Everything [`crate::Client::connect`] needs.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Local address to connect from (several 127.0.0.x addresses get past one address's
    /// ephemeral ports).
    pub local_addr: Option<IpAddr>,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Client identifier; empty asks the broker to assign one.
    pub client_id: String,
    /// Clean Start (5.0) / Clean Session (3.x).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// MQTT 5 Session Expiry Interval.
    pub session_expiry: Option<u32>,
    /// MQTT 5 Receive Maximum announced to the broker.
    pub receive_maximum: Option<u16>,
    /// MQTT 5 Maximum Packet Size announced to the broker.
    pub maximum_packet_size: Option<u32>,
    /// MQTT 5 Topic Alias Maximum announced to the broker (the client resolves incoming
    /// aliases).
    pub topic_alias_maximum: Option<u16>,
    /// MQTT 5 Request Response Information.
    pub request_response_information: Option<bool>,
    /// MQTT 5 Request Problem Information.
    pub request_problem_information: Option<bool>,
    /// User Name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<Bytes>,
    /// Will.
    pub will: Option<LastWill>,
    /// MQTT 5 User Properties of CONNECT.
    pub user_properties: Vec<(String, String)>,
    /// How long to wait for the TCP connection, the TLS handshake and the CONNACK.
    pub connect_timeout: Duration,
    /// TLS over the TCP connection; `None` for plain MQTT.
    pub tls: Option<TlsOptions>,
    /// Leave the acknowledgement of incoming QoS 1/2 messages to the caller: no PUBACK or
    /// PUBREC goes out until [`crate::Client::ack`] is called for the message (a bridge
    /// acknowledges a message once the other side has it). Off by default: the client
    /// acknowledges on receipt.
    pub manual_acks: bool,
    /// Announce a bridge: the bridge bit (0x80) of the MQTT 3.1/3.1.1 protocol level, as
    /// Mosquitto's `try_private` does, which Tern and Mosquitto answer by not sending back the
    /// bridge's own messages and keeping their retain flag. Ignored for MQTT 5 (a bridge
    /// subscribes with No Local and Retain As Published instead). A broker that does not know
    /// the bit refuses the connection with an unsupported protocol version.
    pub bridge: bool,
    /// Keep the kernel's receive time of what the client reads ([`crate::Client::received_ns`]):
    /// when a message reached the machine, however long this process took to get to it. Plain
    /// TCP on Linux only: elsewhere, and over TLS, there is no receive time.
    pub receive_timestamps: bool,
}

impl ConnectOptions {
    /// Options for `host:port` with the given client id and version, clean start, keep-alive
    /// 60 s and a 10 s connect timeout.
    #[must_use]
    pub fn new(
        host: impl Into<String>,
        port: u16,
        client_id: impl Into<String>,
        version: ProtocolVersion,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            local_addr: None,
            version,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            session_expiry: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            request_response_information: None,
            request_problem_information: None,
            username: None,
            password: None,
            will: None,
            user_properties: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            tls: None,
            manual_acks: false,
            bridge: false,
            receive_timestamps: false,
        }
    }

    /// Options for a socket address.
    #[must_use]
    pub fn to_addr(
        addr: SocketAddr,
        client_id: impl Into<String>,
        version: ProtocolVersion,
    ) -> Self {
        Self::new(addr.ip().to_string(), addr.port(), client_id, version)
    }

    /// The CONNECT packet these options describe.
    #[must_use]
    pub fn connect_packet(&self) -> Connect {
        let v5 = self.version.is_v5();
        let properties = if v5 {
            ConnectProperties {
                session_expiry_interval: self.session_expiry,
                receive_maximum: self.receive_maximum,
                maximum_packet_size: self.maximum_packet_size,
                topic_alias_maximum: self.topic_alias_maximum,
                request_response_information: self.request_response_information,
                request_problem_information: self.request_problem_information,
                user_properties: self
                    .user_properties
                    .iter()
                    .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
                    .collect(),
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties {
                bridge: self.bridge,
                ..ConnectProperties::default()
            }
        };
        let mut will = self.will.clone();
        if !v5 && let Some(w) = &mut will {
            w.properties = Default::default();
        }
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive: self.keep_alive,
            properties,
            client_id: ByteString::from(self.client_id.as_str()),
            will,
            username: self.username.as_deref().map(ByteString::from),
            password: self.password.clone(),
        }
    }
}
