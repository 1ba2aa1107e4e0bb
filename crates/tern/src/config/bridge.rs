//! Bridges to other brokers (`[[bridges]]` in TOML, `connection` blocks in mosquitto.conf): what
//! each one connects to and which topics it carries in which direction, read from either format
//! into [`BridgeConfig`].

use std::path::PathBuf;
use std::time::Duration;

/// One bridge: a client connection from this broker to a remote broker, carrying the topics of
/// its [`BridgeTopic`]s in and out.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    /// The bridge's name (`connection NAME`): its local client id is derived from it, and its
    /// state is published on `$SYS/broker/connection/NAME/state`.
    pub name: String,
    /// Remote addresses, tried in order (`address`/`addresses`, `host[:port]`), never empty.
    /// Default port 1883; 8883 for a TOML bridge with `tls` (a mosquitto.conf keeps 1883, as
    /// Mosquitto does).
    pub addresses: Vec<BridgeAddress>,
    /// With several addresses: go back to the first one when it is up again (`round_robin
    /// false`, Mosquitto's default), or stay on the one that works (`round_robin true`).
    pub round_robin: bool,
    /// The topics carried, in the file's order; never empty.
    pub topics: Vec<BridgeTopic>,
    /// The client id on the remote broker (`remote_clientid`; default `HOSTNAME.NAME`, as
    /// Mosquitto).
    pub remote_client_id: Option<String>,
    /// The client id of the bridge's session on this broker (`local_clientid`; default
    /// `local.` and the remote client id, as Mosquitto).
    pub local_client_id: Option<String>,
    /// `remote_username`.
    pub remote_username: Option<String>,
    /// `remote_password`.
    pub remote_password: Option<String>,
    /// MQTT version spoken to the remote broker (`bridge_protocol_version mqttv311|mqttv50`;
    /// mqttv31 too).
    pub protocol: tern_codec::ProtocolVersion,
    /// Clean session on the remote broker (`cleansession`, default false: the remote keeps the
    /// bridge's subscriptions and queues while it is away).
    pub clean_session: bool,
    /// Clean session of the bridge's own session on this broker (`local_cleansession`,
    /// default: the value of `clean_session`). With false, messages for the remote side are
    /// kept in this broker's session (durably when persistence is on) while the remote is down.
    pub local_clean_session: bool,
    /// `keepalive_interval` (default 60 s).
    pub keep_alive: Duration,
    /// Marks the connection as a bridge to a Mosquitto-compatible remote on MQTT 3.x
    /// (`try_private`, default true): the remote does not send back what the bridge publishes.
    pub try_private: bool,
    /// Publish the bridge's state (`notifications`, default true).
    pub notifications: bool,
    /// Publish it on this broker only (`notifications_local_only`, default false).
    pub notifications_local_only: bool,
    /// Where the state goes (`notification_topic`; default `$SYS/broker/connection/NAME/state`).
    pub notification_topic: Option<String>,
    /// When the bridge connects (`start_type`).
    pub start_type: BridgeStart,
    /// Reconnection backoff (`restart_timeout BASE CAP`; default 5 s base, 30 s cap, with
    /// jitter, as Mosquitto 2). `restart_timeout N` (one value) is Mosquitto's constant delay:
    /// then `restart_base == restart_cap`, to be waited without jitter.
    pub restart_base: Duration,
    /// The longest wait between two attempts.
    pub restart_cap: Duration,
    /// `lazy` bridges: messages waiting before connecting (`threshold`, default 10) and the idle
    /// time after which they disconnect (`idle_timeout`, default 60 s).
    pub threshold: usize,
    /// How long a `lazy` bridge stays connected with nothing to carry.
    pub idle_timeout: Duration,
    /// Largest number of messages kept for the remote side while it is down, beyond which new
    /// ones are dropped and counted (the bridge's session queue limit; default: the broker's
    /// `max_queued_messages`). `Some(0)` means no limit, as `max_queued_messages = 0` does.
    /// TOML only: Mosquitto has no such directive.
    pub max_queued_messages: Option<usize>,
    /// TLS to the remote broker (`bridge_cafile`, `bridge_capath`, `bridge_certfile`,
    /// `bridge_keyfile`, `bridge_insecure`, `bridge_tls_version`, `bridge_alpn`); `None`: plain TCP.
    pub tls: Option<BridgeTls>,
}

/// One remote address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAddress {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Which way a topic pattern is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeDirection {
    /// Local messages published to the remote broker.
    Out,
    /// Remote messages published on this broker.
    In,
    /// Both ways (loops are prevented with no-local, or `try_private` on MQTT 3.x).
    Both,
}

/// `topic PATTERN [in|out|both [QOS [LOCAL-PREFIX REMOTE-PREFIX]]]`: messages whose topic is
/// `LOCAL-PREFIX + PATTERN` here are `REMOTE-PREFIX + PATTERN` there (and back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTopic {
    /// The topic filter without prefixes (may be empty when a prefix is a whole topic, as in
    /// Mosquitto's `topic "" out 1 local/topic remote/topic`).
    pub pattern: String,
    /// Which way it is carried (default `out`).
    pub direction: BridgeDirection,
    /// The QoS of the bridge's subscription (default 0).
    pub qos: tern_codec::QoS,
    /// Prefix of the topic on this broker (default empty).
    pub local_prefix: String,
    /// Prefix of the topic on the remote broker (default empty).
    pub remote_prefix: String,
}

impl BridgeTopic {
    /// A topic carried `direction` at `qos`, `local` + pattern here being `remote` + pattern
    /// there.
    #[must_use]
    pub fn new(
        pattern: &str,
        direction: BridgeDirection,
        qos: tern_codec::QoS,
        local: &str,
        remote: &str,
    ) -> Self {
        Self {
            pattern: pattern.to_owned(),
            direction,
            qos,
            local_prefix: local.to_owned(),
            remote_prefix: remote.to_owned(),
        }
    }
}

/// When a bridge connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeStart {
    /// At start, and again whenever the connection drops (the default).
    Automatic,
    /// When `threshold` messages wait for the remote side; disconnects after `idle_timeout`.
    Lazy,
    /// At start only: not reconnected after it drops.
    Once,
}

/// TLS settings of a bridge's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    /// CA file to verify the remote broker's certificate with. At least one of `cafile` and
    /// `capath` is always set (the configuration readers refuse TLS settings without a CA, and
    /// `bridge_tls_use_os_certs true` sets `capath` to the system's CA directory), and every
    /// file named here was read and checked when the configuration was.
    pub cafile: Option<PathBuf>,
    /// A directory of CA certificates (`bridge_capath`).
    pub capath: Option<PathBuf>,
    /// Client certificate, for remotes that require one (`bridge_certfile`).
    pub certfile: Option<PathBuf>,
    /// Its private key (`bridge_keyfile`).
    pub keyfile: Option<PathBuf>,
    /// Do not check the remote's host name against its certificate (`bridge_insecure`); the
    /// chain is still verified against the CAs, as `tern_client::TlsFiles::insecure`.
    pub insecure: bool,
    /// `bridge_tls_version` (`tlsv1.2`, `tlsv1.3`, or Mosquitto's older names, which mean
    /// TLS 1.2): the lowest version offered.
    pub min_version: Option<String>,
    /// `bridge_alpn`.
    pub alpn: Option<String>,
}
