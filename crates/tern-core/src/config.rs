//! The limits and options the broker logic needs.

use std::sync::Arc;
use std::time::Duration;

use tern_codec::QoS;

use crate::Acl;

/// Broker-wide settings used by the protocol logic. Defaults are those of a broker with no
/// configuration file; each field names the Mosquitto directive it corresponds to, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Largest packet accepted from clients, fixed header included (`max_packet_size`).
    pub max_packet_size: u32,
    /// How many QoS 1/2 messages may be unacknowledged towards one client at once
    /// (`max_inflight_messages`); the client's Receive Maximum lowers it further.
    pub max_inflight_messages: u16,
    /// How many QoS 2 PUBLISHes a client may have awaiting PUBREL; announced as Receive Maximum.
    pub receive_maximum: u16,
    /// Messages queued per session beyond those in flight (`max_queued_messages`); 0 = no limit.
    pub max_queued_messages: usize,
    /// Payload bytes queued per session (`max_queued_bytes`); 0 = no limit.
    pub max_queued_bytes: usize,
    /// Payload bytes queued in all sessions together; 0 = no limit. A delivery that would
    /// exceed it is refused like one exceeding a session's own limits.
    pub max_total_queued_bytes: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions (`queue_qos0_messages`).
    pub queue_qos0_messages: bool,
    /// Largest Keep Alive granted (`max_keepalive`); longer or zero requests from MQTT 5
    /// clients get this value as Server Keep Alive.
    pub max_keepalive: u16,
    /// Whether retained messages are supported (`retain_available`).
    pub retain_available: bool,
    /// Highest QoS supported (`max_qos`).
    pub max_qos: QoS,
    /// How many topic aliases a client may use towards the broker (`max_topic_alias`).
    pub max_topic_alias: u16,
    /// Most levels a topic name or filter may have (EMQX's `max_topic_levels`; Mosquitto has a
    /// fixed limit of 200). Deeper topics are refused as invalid, which also bounds the work
    /// (and stack) one message or subscription can cost.
    pub max_topic_levels: usize,
    /// Longest topic name or filter, in bytes (Will Topic and shared subscriptions included).
    /// Longer ones are refused as invalid, as deeper ones are. The default, 65535, is the
    /// protocol's own limit.
    pub max_topic_length: usize,
    /// Longest client id accepted from a client, in bytes; a longer one gets CONNACK 0x85 (5.0) /
    /// 2 (3.x). The default, 65535, is the protocol's own limit.
    pub max_client_id_length: usize,
    /// When not empty, only client ids starting with one of these prefixes may connect
    /// (Mosquitto's `clientid_prefixes`); assigned ids are checked too. Others get CONNACK 0x87
    /// (5.0) / 5 (3.x).
    pub clientid_prefixes: Vec<String>,
    /// Most subscriptions one session may hold; 0 = no limit. A filter beyond it gets SUBACK
    /// 0x97 (5.0) / 0x80 (3.x); replacing an existing subscription does not count.
    pub max_subscriptions: usize,
    /// Incoming PUBLISH packets per connection (a token bucket); `None` = no limit. Enforced by
    /// the runtime before the packet reaches [`Connection`](crate::Connection).
    pub message_rate: Option<crate::RateLimit>,
    /// Bytes of incoming PUBLISH packets per connection (whole packets); `None` = no limit.
    /// Enforced by the runtime, as `message_rate`.
    pub bandwidth: Option<crate::RateLimit>,
    /// What happens to a connection over `message_rate` or `bandwidth`.
    pub rate_exceeded: crate::RateExceeded,
    /// Upper bound on how long a disconnected persistent session is kept
    /// (`persistent_client_expiration`); `None` keeps them as long as they ask.
    pub persistent_client_expiration: Option<Duration>,
    /// Whether a client may connect with an empty client id and get one assigned
    /// (`allow_zero_length_clientid`).
    pub allow_zero_length_clientid: bool,
    /// Prefix of assigned client ids (`auto_id_prefix`).
    pub auto_id_prefix: String,
    /// How long a connection may stay open without sending CONNECT.
    pub connect_timeout: Duration,
    /// Access rules (`acl_file`). `None` allows everything; with rules, a client may do only
    /// what they grant.
    pub acl: Option<Arc<Acl>>,
}

/// Per-listener settings the protocol logic needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerPolicy {
    /// Whether clients without a user name may connect (`allow_anonymous`).
    pub allow_anonymous: bool,
    /// Whether an authentication source checks credentials on this listener: CONNECTs with a
    /// user name or an Authentication Method, and AUTH packets, become
    /// [`AuthRequest`](crate::AuthRequest)s for the runtime. A client id then belongs to the
    /// user who holds its session: another user cannot take it over.
    pub authenticate: bool,
}

impl Default for ListenerPolicy {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            authenticate: false,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            max_inflight_messages: 20,
            receive_maximum: 1024,
            max_queued_messages: 1000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_total_queued_bytes: 1024 * 1024 * 1024,
            queue_qos0_messages: false,
            max_keepalive: 65535,
            retain_available: true,
            max_qos: QoS::ExactlyOnce,
            max_topic_alias: 10,
            max_topic_levels: 200,
            max_topic_length: 65535,
            max_client_id_length: 65535,
            clientid_prefixes: Vec::new(),
            max_subscriptions: 0,
            message_rate: None,
            bandwidth: None,
            rate_exceeded: crate::RateExceeded::Pause,
            persistent_client_expiration: None,
            allow_zero_length_clientid: true,
            auto_id_prefix: "auto-".to_owned(),
            connect_timeout: Duration::from_secs(10),
            acl: None,
        }
    }
}
