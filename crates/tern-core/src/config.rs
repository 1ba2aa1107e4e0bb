//! The limits and options the broker logic needs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tern_codec::{ByteString, ProtocolVersion, QoS};

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
    /// Whether a session recovered from the store with a user name counts as owned by that
    /// user, authenticated (the store does not keep whether its owner was authenticated). Set
    /// it when some listener checks credentials: after a restart, such a session can then be
    /// taken over only by the same user, authenticated, as before the restart.
    pub recovered_owners_authenticated: bool,
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
    /// The protocol versions accepted on this listener; a CONNECT with another one gets
    /// CONNACK 0x84 (5.0) / 1 (3.x) and the connection is closed.
    pub protocol_versions: ProtocolVersions,
    /// Mosquitto's `mount_point`: a prefix put in front of every topic name and filter a client
    /// of this listener sends (PUBLISH, Will, SUBSCRIBE, UNSUBSCRIBE; inside `$share/group/`
    /// for shared subscriptions) and removed from every topic sent to it. Messages whose topic
    /// does not start with it never reach this listener's clients. A valid topic name without
    /// wildcards that does not start with `$`; `None` (the default) costs nothing.
    pub mount_point: Option<ByteString>,
    /// This listener's own access rules (Mosquitto's `per_listener_settings`), replaced on
    /// reload through the slot. `None` uses the broker's ([`Broker::set_acl`]). A session
    /// keeps the rules of the listener it last connected through, also while disconnected.
    ///
    /// [`Broker::set_acl`]: crate::Broker::set_acl
    pub acl: Option<Arc<AclSlot>>,
    /// Overrides [`BrokerConfig::allow_zero_length_clientid`] on this listener.
    pub allow_zero_length_clientid: Option<bool>,
    /// Overrides [`BrokerConfig::auto_id_prefix`] on this listener.
    pub auto_id_prefix: Option<String>,
    /// The listener's name for operators (its address, `HOST:PORT` or `unix:PATH`), shown
    /// with its clients by the admin API; `None` when the runtime gives none.
    pub name: Option<ByteString>,
}

impl Default for ListenerPolicy {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            authenticate: false,
            protocol_versions: ProtocolVersions::ALL,
            mount_point: None,
            acl: None,
            allow_zero_length_clientid: None,
            auto_id_prefix: None,
            name: None,
        }
    }
}

/// A set of MQTT protocol versions.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolVersions(u8);

impl ProtocolVersions {
    /// MQTT 3.1, 3.1.1 and 5.0.
    pub const ALL: Self = Self(0b111);
    /// No version at all.
    pub const NONE: Self = Self(0);

    fn bit(version: ProtocolVersion) -> u8 {
        match version {
            ProtocolVersion::V31 => 1,
            ProtocolVersion::V311 => 2,
            ProtocolVersion::V5 => 4,
        }
    }

    /// This set with `version` added.
    #[must_use]
    pub const fn with(self, version: ProtocolVersion) -> Self {
        let bit = match version {
            ProtocolVersion::V31 => 1,
            ProtocolVersion::V311 => 2,
            ProtocolVersion::V5 => 4,
        };
        Self(self.0 | bit)
    }

    /// Whether `version` is in the set.
    #[must_use]
    pub fn contains(self, version: ProtocolVersion) -> bool {
        self.0 & Self::bit(version) != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The versions in the set, oldest first.
    pub fn iter(self) -> impl Iterator<Item = ProtocolVersion> {
        [
            ProtocolVersion::V31,
            ProtocolVersion::V311,
            ProtocolVersion::V5,
        ]
        .into_iter()
        .filter(move |v| self.contains(*v))
    }
}

impl Default for ProtocolVersions {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromIterator<ProtocolVersion> for ProtocolVersions {
    fn from_iter<I: IntoIterator<Item = ProtocolVersion>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl std::fmt::Debug for ProtocolVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Access rules that can be replaced while connections use them (on reload): the broker's
/// own, or one listener's. Two slots are equal only if they are the same slot.
#[derive(Default)]
pub struct AclSlot {
    rules: ArcSwapOption<Acl>,
    /// Whether `rules` holds any: read first, so that a broker without ACLs, the default,
    /// pays one relaxed load per check rather than an `ArcSwap` guard (7 % of the CPU time
    /// of QoS 0 fan-out, where every delivery is checked).
    in_force: AtomicBool,
}

impl AclSlot {
    /// A slot holding `acl` (`None`: everything is allowed).
    #[must_use]
    pub fn new(acl: Option<Arc<Acl>>) -> Self {
        Self {
            in_force: AtomicBool::new(acl.is_some()),
            rules: ArcSwapOption::new(acl),
        }
    }

    /// The rules in force.
    #[must_use]
    pub fn get(&self) -> Option<Arc<Acl>> {
        self.rules.load_full()
    }

    /// Replaces the rules; every later check uses the new ones. (A check racing with the
    /// replacement may still see the previous rules, as if it came just before.)
    pub fn set(&self, acl: Option<Arc<Acl>>) {
        let in_force = acl.is_some();
        self.rules.store(acl);
        self.in_force.store(in_force, Ordering::Release);
    }

    /// Runs `f` with the rules in force, without touching their reference count (it runs on
    /// every publish, subscribe and delivery).
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&Acl>) -> R) -> R {
        if !self.in_force.load(Ordering::Acquire) {
            return f(None);
        }
        f(self.rules.load().as_deref())
    }
}

impl PartialEq for AclSlot {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for AclSlot {}

impl std::fmt::Debug for AclSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rules = if self.rules.load().is_some() {
            "rules"
        } else {
            "none"
        };
        f.debug_tuple("AclSlot").field(&rules).finish()
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
            recovered_owners_authenticated: false,
        }
    }
}
