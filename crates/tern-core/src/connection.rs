//! The protocol state machine of one network connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::{
    Ack, ByteString, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, Packet,
    PacketId, ProtocolVersion, Publish, PublishView, QoS, ReasonCode, SubAck, Subscribe, UnsubAck,
    Unsubscribe, is_valid_topic_filter, split_shared,
};

use crate::FastMap;
use crate::acl::{Access, Identity};
use crate::auth::{AuthDecision, AuthRequest, AuthStage, Grant};
use crate::broker::{Broker, Owner, RemainingCopies, Routed, Wake};
use crate::message::Message;
use crate::metrics::{AclAction, DropReason, inc, is_broker_sys};
use crate::session::{Awaiting, Delivery, Inflight, Link, Session};
use crate::store::{DeliveryState, Durability, Lsn, StoreOp, WillRecord};
use crate::{Acl, ListenerPolicy};

/// What the runtime knows about a connection before CONNECT.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The client's address, for logs.
    pub remote_addr: Option<SocketAddr>,
    /// The settings of the listener the connection came through, shared by its connections.
    pub policy: Arc<ListenerPolicy>,
    /// The user name a TLS listener derived from the client's certificate
    /// (`use_identity_as_username`, `use_subject_as_username`). When set, it replaces the User
    /// Name of CONNECT and no password is checked: the certificate has already proved it.
    /// Boxed: most connections have none, and every connection keeps its `ConnectionInfo`.
    pub certificate_username: Option<Box<ByteString>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    /// CONNECT received; its authentication is being decided or exchanged (AUTH packets).
    Authenticating,
    Connected,
    /// Write what is pending, then close the network connection.
    Closing,
}

/// Something waiting in the control queue (short-lived; its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    Packet(Packet),
    /// A delivery encoded when it was taken from the session queue (per-delivery topic alias
    /// and expiry already decided).
    Encoded(bytes::Bytes),
}

/// Authentication under way on a connection, or the state kept to re-authenticate.
#[derive(Default)]
struct AuthExchange {
    /// Authentication Method of CONNECT (MQTT 5 enhanced authentication).
    method: Option<ByteString>,
    /// The CONNECT being authenticated, with the client id it will get.
    pending: Option<(Connect, ByteString)>,
    /// A request the runtime has not taken yet.
    request: Option<AuthRequest>,
    /// Whether a request was taken and not answered yet.
    deciding: bool,
    /// Whether a re-authentication (AUTH 0x19) is under way.
    reauthenticating: bool,
}

/// How many subscribing sessions get their copy of a large fan-out before the connection hands
/// the turn to theirs (see [`Connection::arm_handoff`]). Eight writes give the subscribers'
/// side more to do than queuing the next eight copies takes, so it never waits for them; of
/// 4, 8 and 16, 8 gave the lowest latency in fan-out to 100 at 200 messages/s.
const COPIES_PER_TURN: usize = 8;

/// How long a connection must have sent nothing for its next read to arm the handoff (see
/// [`Connection::arm_handoff`]). The handoff pays off when the cores have gone idle (at low
/// rates: 2,000 messages/s over 10 publishers is a read every 5 ms per connection); under load
/// (a read every 10-20 µs) it cost 17 % of the CPU per QoS 1 delivery and 25 % per QoS 2.
pub const HANDOFF_AFTER_IDLE: Duration = Duration::from_micros(200);

/// The reason code of a PUBLISH's acknowledgement, and why it is an error if it is one.
struct Refusal {
    reason: ReasonCode,
    why: Option<&'static str>,
}

impl Refusal {
    /// What routing the message earns its publisher.
    fn of(routed: &Routed) -> Self {
        let reason = if routed.quota_exceeded {
            // Some subscriber's queue is full: never a success code for a message that did
            // not reach everyone it should.
            ReasonCode::QUOTA_EXCEEDED
        } else if routed.matched == 0 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        Self { reason, why: None }
    }
}

/// A PUBLISH whose copies are partly queued, or whose acknowledgement waits for the copies
/// to be written first: the rest and the acknowledgement follow the handoff.
struct StagedPublish {
    /// The copies left to queue; `None` once all are.
    rest: Option<RemainingCopies>,
    routed: Routed,
    qos: QoS,
    packet_id: Option<PacketId>,
}

/// A copy of `s` in its own allocation. Strings decoded from a packet are slices of the read
/// buffer the packet came in: one kept for the life of a session would keep that whole buffer.
fn owned(s: &ByteString) -> ByteString {
    ByteString::from(&**s)
}

/// Client-sendable DISCONNECT reason codes (Table 3-10, sender C or C/S).
const CLIENT_DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
];

/// The protocol state machine of one connection, from the first byte to the close.
///
/// # Driving contract
///
/// The runtime owns the socket and the packet decoder. It
/// 1. passes every decoded packet to [`Connection::handle_packet`], a decoding failure to
///    [`Connection::handle_decode_error`], the loss of the connection to
///    [`Connection::handle_connection_lost`], a server shutdown to [`Connection::handle_shutdown`];
/// 2. calls [`Connection::handle_timeout`] once the instant from [`Connection::poll_timeout`]
///    has passed;
/// 3. after any of the above, and whenever the [`Wake`] it supplied is signalled, calls
///    [`Connection::poll_transmit`] and writes what it appended, calling it again while it
///    returns `true` and the write buffer has room;
/// 4. closes the network connection once [`Connection::is_closing`] is true and everything
///    written so far has been flushed.
///
/// Every input takes `now`; the state machine never reads a clock.
pub struct Connection {
    broker: Broker,
    info: ConnectionInfo,
    waker: Arc<dyn Wake>,
    phase: Phase,
    generation: u64,
    version: ProtocolVersion,
    /// Packets other than deliveries (and QoS 2 deliveries of durable sessions), written
    /// before any other delivery, in order; each waits for a store operation (0: none).
    control: VecDeque<(Lsn, Outgoing)>,
    /// The store operation this connection asked to be woken for.
    awaiting_lsn: Lsn,
    connect_deadline: Instant,
    last_received: Instant,
    /// The keep-alive in seconds (0: none).
    keep_alive: u16,
    session: Option<Arc<Session>>,
    client_id: ByteString,
    /// The user name access checks use (from CONNECT, the certificate or the grant).
    username: Option<ByteString>,
    /// The client's own access rules from its authentication, in addition to the broker's.
    client_acl: Option<Arc<Acl>>,
    /// When the authentication runs out (a token's expiry, say).
    auth_expires_at: Option<Instant>,
    /// Enhanced authentication in progress, or the method to re-authenticate with.
    auth: Option<Box<AuthExchange>>,
    /// Session Expiry Interval granted at CONNECT (for the DISCONNECT rule of §3.14.2.2.2).
    connect_session_expiry: u32,
    /// How many QoS 1/2 deliveries may be unacknowledged: min(client Receive Maximum, ours).
    send_window: u16,
    client_max_packet_size: u32,
    client_topic_alias_max: u16,
    /// Whether Reason Strings may go on acknowledgements (MQTT-3.1.2-29).
    request_problem_information: bool,
    /// An MQTT 3.x bridge (the bridge bit of its protocol level): its subscriptions are No
    /// Local and Retain As Published, as Mosquitto makes them, so bridged brokers do not loop.
    bridge: bool,
    /// Topic aliases in both directions, allocated once the first one is used (most
    /// connections never use any).
    aliases: Option<Box<TopicAliases>>,
    /// Whether the next PUBLISH routed may hand the turn over (see [`Connection::arm_handoff`]).
    handoff_armed: bool,
    /// The PUBLISH whose remaining copies wait for the handoff.
    staged: Option<Box<StagedPublish>>,
}

/// The Topic Aliases of a connection (MQTT 5, §3.3.2.3.4).
#[derive(Default)]
struct TopicAliases {
    /// Set by the client.
    inbound: FastMap<u16, ByteString>,
    /// Assigned by the server.
    outbound: FastMap<ByteString, u16>,
}

impl Connection {
    /// A connection that has just been accepted at `now`.
    pub fn new(broker: Broker, info: ConnectionInfo, waker: Arc<dyn Wake>, now: Instant) -> Self {
        let connect_deadline = now + broker.config().connect_timeout;
        let generation = broker.next_generation();
        inc(&broker.metrics().sockets_opened, 1);
        Self {
            broker,
            info,
            waker,
            phase: Phase::AwaitingConnect,
            generation,
            version: ProtocolVersion::V311,
            control: VecDeque::new(),
            awaiting_lsn: 0,
            connect_deadline,
            last_received: now,
            keep_alive: 0,
            session: None,
            client_id: ByteString::new(),
            username: None,
            client_acl: None,
            auth_expires_at: None,
            auth: None,
            connect_session_expiry: 0,
            send_window: 0,
            client_max_packet_size: u32::MAX,
            client_topic_alias_max: 0,
            request_problem_information: true,
            bridge: false,
            aliases: None,
            handoff_armed: false,
            staged: None,
        }
    }

    /// The protocol version (MQTT 3.1.1 until CONNECT says otherwise).
    #[must_use]
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client's address, as the runtime gave it in [`ConnectionInfo`].
    #[must_use]
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }

    /// The client id, once connected (assigned ids included).
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The user name access checks use (from CONNECT, the certificate or the authentication),
    /// once connected.
    #[must_use]
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The keep-alive in force (the client's, or the server's when it lowered it); `None`
    /// when keep-alive is off.
    #[must_use]
    pub fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive > 0).then(|| Duration::from_secs(u64::from(self.keep_alive)))
    }

    /// Whether CONNECT has been accepted and the connection is not closing.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// An authentication request for the runtime to decide, handed out once; the answer goes
    /// to [`Connection::handle_auth_decision`].
    pub fn poll_auth_request(&mut self) -> Option<AuthRequest> {
        let auth = self.auth.as_mut()?;
        let request = auth.request.take()?;
        auth.deciding = true;
        Some(request)
    }

    /// Whether CONNECT waits for an authentication decision. Until it comes, the runtime
    /// decodes nothing more: packets the client sent after CONNECT are handled once it is in.
    #[must_use]
    pub fn awaits_auth_decision(&self) -> bool {
        self.phase == Phase::Authenticating
            && self
                .auth
                .as_ref()
                .is_some_and(|a| a.deciding || a.request.is_some())
    }

    /// Lets the next PUBLISH hand the turn to the connections it wakes, once: the runtime calls
    /// it before handling what a read brought. A PUBLISH for many sessions then queues the
    /// copies of only the first few (where the store keeps none of them) and waits, with the
    /// rest of the input, for [`Connection::handle_handoff`]; the runtime lets the woken
    /// connections run in between. Their copies leave while the rest are queued, instead of
    /// after a whole fan-out has been queued. A QoS 1/2 PUBLISH whose copies woke a connection
    /// also waits for the handoff before its acknowledgement, so that the copy is written
    /// first. Once per read, and only after an idle spell ([`HANDOFF_AFTER_IDLE`] without a
    /// packet from this client): under load, handing over costs more than it saves.
    pub fn arm_handoff(&mut self, now: Instant) {
        self.handoff_armed =
            now.saturating_duration_since(self.last_received) >= HANDOFF_AFTER_IDLE;
    }

    /// Whether the runtime should let other tasks run, then call
    /// [`Connection::handle_handoff`], before writing or handling anything more.
    #[must_use]
    pub fn wants_handoff(&self) -> bool {
        self.staged.is_some()
    }

    /// Queues more copies of a PUBLISH after a handoff: the next few, handing over again if
    /// they woke connections, else all of them; then its acknowledgement.
    pub fn handle_handoff(&mut self) {
        self.route_staged(COPIES_PER_TURN);
    }

    /// Queues the copies of the next `n` sessions of the PUBLISH waiting for a handoff, or all
    /// of them if those woke no connection (they are busy already: waiting for them gains
    /// nothing); once none are left, its acknowledgement.
    fn route_staged(&mut self, n: usize) {
        let Some(staged) = self.staged.as_mut() else {
            return;
        };
        if let Some(rest) = staged.rest.as_mut()
            && self.broker.publish_rest(rest, n, &mut staged.routed)
        {
            return;
        }
        let Some(staged) = self.staged.take() else {
            return;
        };
        let StagedPublish {
            routed,
            qos,
            packet_id,
            ..
        } = *staged;
        if let Some(session) = self.session.clone() {
            self.acknowledge(&session, qos, packet_id, Refusal::of(&routed), routed.lsn);
        }
    }

    /// Whether the runtime should flush what has been written and close the connection.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// The instant at which [`Connection::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::AwaitingConnect | Phase::Authenticating => Some(self.connect_deadline),
            Phase::Connected => {
                let keep_alive = self.keep_alive().map(|ka| self.last_received + ka * 3 / 2);
                match (keep_alive, self.auth_expires_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Phase::Closing => None,
        }
    }

    /// Handles the passing of time: the CONNECT deadline and keep-alive (MQTT-3.1.2-24,
    /// MQTT-3.1.2-22).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::AwaitingConnect | Phase::Authenticating if now >= self.connect_deadline => {
                tracing::debug!(peer = ?self.info.remote_addr, "no CONNECT or authentication in time");
                self.phase = Phase::Closing;
            }
            Phase::Connected if self.auth_expires_at.is_some_and(|at| now >= at) => {
                self.fail(
                    ReasonCode::MAXIMUM_CONNECT_TIME,
                    "the authentication has expired",
                    now,
                );
            }
            Phase::Connected => {
                if let Some(ka) = self.keep_alive()
                    && now >= self.last_received + ka * 3 / 2
                {
                    tracing::debug!(client = %self.client_id, "keep-alive expired");
                    self.fail(
                        ReasonCode::KEEP_ALIVE_TIMEOUT,
                        "[MQTT-3.1.2-22] nothing received within 1.5 times the keep-alive",
                        now,
                    );
                }
            }
            _ => {}
        }
    }

    /// Handles a client that publishes faster than its rate limits allow, when the runtime is
    /// configured to disconnect it: MQTT 5 clients get DISCONNECT 0x96 (Message rate too high),
    /// MQTT 3.x connections are closed; the will is published.
    pub fn handle_rate_exceeded(&mut self, now: Instant) {
        self.fail(
            ReasonCode::MESSAGE_RATE_TOO_HIGH,
            "publishing faster than the message rate or bandwidth allows",
            now,
        );
    }

    /// Tells the state machine that the client has sent something the runtime holds back
    /// (reading paused by a rate limit): it counts as activity for keep-alive.
    pub fn handle_input_pending(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// Handles the loss of the network connection (EOF or IO error): the will is published.
    pub fn handle_connection_lost(&mut self, now: Instant) {
        self.detach(true, now);
        self.phase = Phase::Closing;
    }

    /// Handles server shutdown: MQTT 5 clients get DISCONNECT 0x8B (server shutting down).
    /// The will is not published: the client did nothing wrong and its session survives.
    pub fn handle_shutdown(&mut self, now: Instant) {
        if self.phase == Phase::Connected {
            self.send_disconnect(ReasonCode::SERVER_SHUTTING_DOWN, None);
            self.detach(false, now);
        }
        self.phase = Phase::Closing;
    }

    /// Handles a packet that could not be decoded: the connection is closed, with a CONNACK or
    /// DISCONNECT carrying the reason code where the protocol version allows.
    pub fn handle_decode_error(
        &mut self,
        error: DecodeError,
        version: Option<ProtocolVersion>,
        now: Instant,
    ) {
        tracing::debug!(peer = ?self.info.remote_addr, client = %self.client_id, %error, "bad packet");
        inc(&self.broker.metrics().protocol_errors, 1);
        match self.phase {
            Phase::AwaitingConnect | Phase::Authenticating => {
                match error {
                    // MQTT-3.1.2-2: 3.x-style CONNACK 0x01 is understood by every version.
                    DecodeError::UnsupportedProtocolLevel(_) => {
                        self.version = ProtocolVersion::V311;
                        self.push(Packet::ConnAck(ConnAck {
                            reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                            ..ConnAck::default()
                        }));
                    }
                    _ if version == Some(ProtocolVersion::V5) => {
                        self.version = ProtocolVersion::V5;
                        self.push(Packet::ConnAck(ConnAck {
                            reason: error.reason_code(),
                            ..ConnAck::default()
                        }));
                    }
                    // A malformed 3.x CONNECT is closed without CONNACK (MQTT-3.1.4-1).
                    _ => {}
                }
                self.phase = Phase::Closing;
            }
            Phase::Connected => self.fail(error.reason_code(), &error.to_string(), now),
            Phase::Closing => {}
        }
    }

    /// Handles one decoded packet.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        self.last_received = now;
        self.broker
            .metrics()
            .record_packet_received(packet.packet_type());
        match self.phase {
            Phase::AwaitingConnect => match packet {
                Packet::Connect(connect) => self.handle_connect(*connect, now),
                // MQTT-3.1.0-1: anything else first is closed without an answer.
                _ => self.phase = Phase::Closing,
            },
            Phase::Authenticating => self.handle_authenticating(packet),
            Phase::Connected => self.handle_connected(packet, now),
            // Nothing after DISCONNECT or an error is acted on (MQTT-3.14.4-2, MQTT-3.1.4-5).
            Phase::Closing => {}
        }
    }

    fn handle_connected(&mut self, packet: Packet, now: Instant) {
        match packet {
            Packet::Publish(p) => self.handle_publish(p, now),
            Packet::PubAck(ack) => self.handle_puback(ack.packet_id, Awaiting::PubAck),
            Packet::PubRec(ack) => self.handle_pubrec(ack),
            Packet::PubRel(ack) => self.handle_pubrel(ack.packet_id),
            Packet::PubComp(ack) => self.handle_puback(ack.packet_id, Awaiting::PubComp),
            Packet::Subscribe(s) => self.handle_subscribe(s, now),
            Packet::Unsubscribe(u) => self.handle_unsubscribe(u, now),
            Packet::PingReq => self.push(Packet::PingResp),
            Packet::Disconnect(d) => self.handle_disconnect(d, now),
            // MQTT-3.1.0-2: a second CONNECT is a protocol violation.
            Packet::Connect(_) => {
                self.fail(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.1.0-2] second CONNECT",
                    now,
                );
            }
            Packet::Auth(a) => self.handle_auth(a, now),
            // Server-to-client packets from a client (§2.1.2).
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.fail(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-2.1.2] packet type not sent by clients",
                    now,
                );
            }
        }
    }

    /// Refuses a CONNECT with a CONNACK carrying `reason`, then closes (MQTT-3.2.2-7).
    fn refuse(&mut self, reason: ReasonCode) {
        tracing::debug!(peer = ?self.info.remote_addr, %reason, "CONNECT refused");
        self.push(Packet::ConnAck(ConnAck {
            reason,
            ..ConnAck::default()
        }));
        self.phase = Phase::Closing;
    }

    fn handle_connect(&mut self, mut c: Connect, now: Instant) {
        self.version = c.protocol;
        if !self.info.policy.protocol_versions.contains(c.protocol) {
            // CONNACK 0x84, return code 1 for 3.x: what a broker without that version says.
            return self.refuse(ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
        }
        let v5 = c.protocol.is_v5();
        let cfg = self.broker.config().clone();
        if c.client_id.len() > cfg.max_client_id_length {
            return self.refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
        }
        let assigned = c.client_id.is_empty();
        let client_id = if assigned {
            let zero_length_allowed = self
                .info
                .policy
                .allow_zero_length_clientid
                .unwrap_or(cfg.allow_zero_length_clientid);
            let allowed = match c.protocol {
                // 3.1 has no assigned client ids (§3.1-clientid).
                ProtocolVersion::V31 => false,
                // MQTT-3.1.3-8: an empty id needs CleanSession = 1.
                ProtocolVersion::V311 => c.clean_start && zero_length_allowed,
                ProtocolVersion::V5 => zero_length_allowed,
            };
            if !allowed {
                return self.refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
            }
            // Assigned now: the Will's access check may depend on it (`%c`).
            self.broker
                .fresh_client_id(self.info.policy.auto_id_prefix.as_deref())
        } else {
            c.client_id.clone()
        };
        // Mosquitto's `clientid_prefixes`, checked on assigned ids too, as there.
        if !cfg.clientid_prefixes.is_empty()
            && !cfg
                .clientid_prefixes
                .iter()
                .any(|p| client_id.starts_with(p.as_str()))
        {
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        }
        if let (Some(mount_point), Some(w)) = (&self.info.policy.mount_point, &mut c.will) {
            w.topic = mounted(mount_point, &w.topic);
        }
        if let Some(w) = &c.will {
            if w.qos > cfg.max_qos {
                return self.refuse(ReasonCode::QOS_NOT_SUPPORTED); // MQTT-3.2.2-12
            }
            if w.retain && !cfg.retain_available {
                return self.refuse(ReasonCode::RETAIN_NOT_SUPPORTED); // MQTT-3.2.2-13
            }
            if is_sys_topic(&w.topic) && !is_bridge_state_topic(&w.topic) {
                return self.refuse(ReasonCode::NOT_AUTHORIZED);
            }
            if topic_levels(&w.topic) > cfg.max_topic_levels || w.topic.len() > cfg.max_topic_length
            {
                return self.refuse(ReasonCode::TOPIC_NAME_INVALID);
            }
        }

        let policy = &self.info.policy;
        let method = if v5 {
            c.properties.authentication_method.clone()
        } else {
            None
        };
        let has_credentials = c.username.is_some() || c.password.is_some();
        if method.is_none() {
            // A certificate already proved who the client is (`use_identity_as_username`).
            if let Some(name) = self.info.certificate_username.as_deref().cloned() {
                let grant = Grant {
                    username: Some(name),
                    ..Grant::default()
                };
                return self.accept_connect(c, client_id, grant, true, now);
            }
            if !has_credentials || !policy.authenticate {
                // Nothing to check credentials against: anonymous access decides, whatever
                // the client claims (Mosquitto behaves the same).
                if !policy.allow_anonymous {
                    return self.refuse(if has_credentials {
                        ReasonCode::BAD_USER_NAME_OR_PASSWORD
                    } else {
                        ReasonCode::NOT_AUTHORIZED
                    });
                }
                // Not authenticated, whatever user name the client gave.
                return self.accept_connect(c, client_id, Grant::default(), false, now);
            }
        } else if !policy.authenticate {
            // MQTT-4.12.0-1: no enhanced authentication method on this listener.
            return self.refuse(ReasonCode::BAD_AUTHENTICATION_METHOD);
        }
        let request = AuthRequest {
            stage: AuthStage::Connect,
            version: c.protocol,
            client_id: c.client_id.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            method: method.clone(),
            data: c.properties.authentication_data.clone(),
            remote_addr: self.info.remote_addr,
        };
        self.auth = Some(Box::new(AuthExchange {
            method,
            pending: Some((c, client_id)),
            request: Some(request),
            ..AuthExchange::default()
        }));
        self.phase = Phase::Authenticating;
    }

    /// Handles a packet that arrives while CONNECT is being authenticated: only AUTH, to go
    /// on with enhanced authentication, and DISCONNECT (MQTT-4.12.0-4).
    fn handle_authenticating(&mut self, packet: Packet) {
        match packet {
            Packet::Auth(a) => {
                let Some(auth) = self.auth.as_ref() else {
                    return self.refuse(ReasonCode::PROTOCOL_ERROR);
                };
                let waiting_for_client = !auth.deciding && auth.request.is_none();
                if !waiting_for_client
                    || a.reason != ReasonCode::CONTINUE_AUTHENTICATION
                    || a.properties.authentication_method != auth.method
                {
                    // MQTT-4.12.0-5: the method must stay the same.
                    return self.refuse(ReasonCode::PROTOCOL_ERROR);
                }
                let request = self.continue_request(a);
                if let Some(auth) = self.auth.as_mut() {
                    auth.request = Some(request);
                }
            }
            Packet::Disconnect(_) => self.phase = Phase::Closing,
            _ => self.refuse(ReasonCode::PROTOCOL_ERROR),
        }
    }

    /// The request for an AUTH packet that continues an exchange.
    fn continue_request(&self, a: tern_codec::Auth) -> AuthRequest {
        let stage = if a.reason == ReasonCode::REAUTHENTICATE {
            AuthStage::Reauthenticate
        } else {
            AuthStage::Continue
        };
        AuthRequest {
            stage,
            version: self.version,
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            password: None,
            method: a.properties.authentication_method,
            data: a.properties.authentication_data,
            remote_addr: self.info.remote_addr,
        }
    }

    /// Handles AUTH on an established connection: re-authentication (MQTT 5, §4.12.1).
    fn handle_auth(&mut self, a: tern_codec::Auth, now: Instant) {
        let Some(auth) = self.auth.as_ref() else {
            // MQTT-4.12.0-7: no AUTH without an Authentication Method in CONNECT.
            return self.fail(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-7] AUTH without an Authentication Method in CONNECT",
                now,
            );
        };
        let expected = if auth.reauthenticating {
            ReasonCode::CONTINUE_AUTHENTICATION
        } else {
            ReasonCode::REAUTHENTICATE
        };
        if a.properties.authentication_method != auth.method {
            return self.fail(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.1-1] re-authentication must use the Authentication Method of CONNECT",
                now,
            );
        }
        if a.reason != expected || auth.deciding || auth.request.is_some() {
            return self.fail(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH out of turn in the authentication exchange",
                now,
            );
        }
        let request = self.continue_request(a);
        if let Some(auth) = self.auth.as_mut() {
            auth.reauthenticating = true;
            auth.request = Some(request);
        }
    }

    /// Applies the runtime's decision on the request last taken from
    /// [`Connection::poll_auth_request`].
    pub fn handle_auth_decision(&mut self, decision: AuthDecision, now: Instant) {
        let Some(auth) = self.auth.as_mut() else {
            return;
        };
        auth.deciding = false;
        let method = auth.method.clone();
        match (self.phase, decision) {
            (Phase::Authenticating, AuthDecision::Allow(grant)) => {
                let Some((c, client_id)) = self.auth.as_mut().and_then(|a| a.pending.take()) else {
                    return self.refuse(ReasonCode::UNSPECIFIED_ERROR);
                };
                if method.is_none() {
                    self.auth = None;
                }
                self.accept_connect(c, client_id, grant, true, now);
            }
            (Phase::Authenticating, AuthDecision::Deny(reason)) => {
                inc(&self.broker.metrics().auth_failures, 1);
                self.refuse(reason);
            }
            (Phase::Authenticating | Phase::Connected, AuthDecision::Continue(data))
                if method.is_some() =>
            {
                self.push(Packet::Auth(auth_packet(
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    method,
                    data,
                )));
            }
            (Phase::Authenticating, AuthDecision::Continue(_)) => {
                // Only enhanced authentication can go on.
                self.refuse(ReasonCode::NOT_AUTHORIZED);
            }
            (Phase::Connected, AuthDecision::Allow(grant)) => {
                if let Some(auth) = self.auth.as_mut() {
                    auth.reauthenticating = false;
                }
                self.apply_grant_rules(&grant);
                self.push(Packet::Auth(auth_packet(
                    ReasonCode::SUCCESS,
                    method,
                    grant.data,
                )));
            }
            (Phase::Connected, deny) => {
                inc(&self.broker.metrics().auth_failures, 1);
                let reason = match deny {
                    AuthDecision::Deny(reason) => reason,
                    _ => ReasonCode::NOT_AUTHORIZED,
                };
                // MQTT-4.12.1-2: a failed re-authentication ends the connection.
                self.fail(reason, "re-authentication failed", now);
            }
            (Phase::AwaitingConnect | Phase::Closing, _) => {}
        }
    }

    /// Takes the access rules and expiry of a grant (at CONNECT or re-authentication).
    fn apply_grant_rules(&mut self, grant: &Grant) {
        self.client_acl.clone_from(&grant.acl);
        self.auth_expires_at = grant.expires_at;
        if let Some(session) = &self.session {
            session.lock().client_acl.clone_from(&grant.acl);
        }
    }

    /// Lets an authenticated (or anonymous) CONNECT in: checks what depends on who the client
    /// is, attaches the session and answers with CONNACK. `authenticated` means the user name
    /// was proved, so that the client id cannot be taken over by another user; where the
    /// listener checks credentials, "no user name" is an identity too: an anonymous client
    /// there cannot take over (or resume) a user's client id either.
    fn accept_connect(
        &mut self,
        c: Connect,
        client_id: ByteString,
        grant: Grant,
        authenticated: bool,
        now: Instant,
    ) {
        let v5 = c.protocol.is_v5();
        let cfg = self.broker.config().clone();
        let assigned = c.client_id.is_empty();
        // What the session keeps for its life gets its own small allocation: a slice of the
        // CONNECT would keep the whole read buffer it was decoded from alive.
        let client_id = owned(&client_id);
        self.username = grant.username.as_ref().or(c.username.as_ref()).map(owned);
        self.apply_grant_rules(&grant);
        if let Some(w) = &c.will {
            // The Will is published on the client's behalf: it needs write access to its topic.
            if !self.acl_allows(Access::Write, &client_id, &w.topic) {
                return self.refuse(ReasonCode::NOT_AUTHORIZED);
            }
        }
        inc(&self.broker.metrics().auth_successes, 1);

        // Keep alive: MQTT 5 clients asking for more than the cap (or none) get the cap as
        // Server Keep Alive; 3.x clients cannot be told, so they are held to the cap.
        let mut server_keep_alive = None;
        let keep_alive = if cfg.max_keepalive < u16::MAX
            && (c.keep_alive == 0 || c.keep_alive > cfg.max_keepalive)
        {
            if v5 {
                server_keep_alive = Some(cfg.max_keepalive);
                cfg.max_keepalive
            } else if c.keep_alive == 0 {
                0
            } else {
                cfg.max_keepalive
            }
        } else {
            c.keep_alive
        };
        self.keep_alive = keep_alive;

        let expiry = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        };
        self.connect_session_expiry = expiry;
        let will = c.will.map(|w| {
            Box::new(WillRecord {
                topic: owned(&w.topic),
                payload: bytes::Bytes::copy_from_slice(&w.payload),
                qos: w.qos,
                retain: w.retain,
                delay_interval: w.properties.will_delay_interval.unwrap_or(0),
                properties: w.properties.message,
            })
        });
        let link = Link {
            generation: self.generation,
            waker: self.waker.clone(),
            info: Box::new(crate::admin::LinkInfo {
                remote_addr: self.info.remote_addr,
                listener: self.info.policy.clone(),
                protocol: c.protocol,
                keep_alive,
                clean_start: c.clean_start,
                connected_at: self.broker.compact_instant(now),
                kicked: false,
            }),
        };
        let owner = Owner {
            username: self.username.clone(),
            acl: self.client_acl.clone(),
            exclusive: authenticated || self.info.policy.authenticate,
            authenticated,
            listener_acl: self.info.policy.acl.clone(),
            mount_point: self.info.policy.mount_point.clone(),
        };
        let Some(attached) =
            self.broker
                .attach(client_id, owner, c.clean_start, expiry, link, will, now)
        else {
            tracing::info!(client = %c.client_id, user = ?self.username, "client id belongs to another user");
            return self.refuse(ReasonCode::NOT_AUTHORIZED);
        };
        self.client_id = attached.client_id.clone();
        self.session = Some(attached.session);

        let client_receive_max = c.properties.receive_maximum.unwrap_or(u16::MAX);
        self.send_window = client_receive_max.min(cfg.max_inflight_messages.max(1));
        self.client_max_packet_size = c.properties.maximum_packet_size.unwrap_or(u32::MAX);
        self.client_topic_alias_max = c.properties.topic_alias_maximum.unwrap_or(0);
        self.request_problem_information = c.properties.request_problem_information.unwrap_or(true);
        self.bridge = !v5 && c.properties.bridge;

        let mut properties = ConnAckProperties::default();
        if v5 {
            properties.receive_maximum = Some(cfg.receive_maximum);
            properties.maximum_packet_size = Some(cfg.max_packet_size);
            if cfg.max_qos < QoS::ExactlyOnce {
                properties.maximum_qos = Some(cfg.max_qos);
            }
            if !cfg.retain_available {
                properties.retain_available = Some(false);
            }
            if cfg.max_topic_alias > 0 {
                properties.topic_alias_maximum = Some(cfg.max_topic_alias);
            }
            if assigned {
                properties.assigned_client_identifier = Some(self.client_id.clone());
            }
            properties.server_keep_alive = server_keep_alive;
            if let Some(auth) = &self.auth {
                properties.authentication_method.clone_from(&auth.method);
                properties.authentication_data = grant.data;
            }
            // §3.2.2.3.2: tell the client when `persistent_client_expiration` caps its value.
            if let Some(cap) = cfg.persistent_client_expiration {
                let cap = u32::try_from(cap.as_secs()).unwrap_or(u32::MAX);
                if expiry > cap {
                    properties.session_expiry_interval = Some(cap);
                }
            }
        }
        self.push(Packet::ConnAck(ConnAck {
            session_present: attached.session_present,
            reason: ReasonCode::SUCCESS,
            properties,
        }));
        self.phase = Phase::Connected;
        tracing::debug!(client = %self.client_id, version = %self.version, bridge = self.bridge, peer = ?self.info.remote_addr, "connected");
    }

    /// Ends the connection for a protocol violation: MQTT 5 clients get DISCONNECT with the
    /// reason, 3.x clients a close (MQTT-4.8.0-1, MQTT-4.13.1-1). The will is published.
    /// `why` goes to the log and, as Reason String, to MQTT 5 clients.
    fn fail(&mut self, reason: ReasonCode, why: &str, now: Instant) {
        if self.phase != Phase::Connected {
            self.phase = Phase::Closing;
            return;
        }
        tracing::debug!(client = %self.client_id, %reason, why, "closing connection");
        self.send_disconnect(reason, Some(why));
        self.detach(true, now);
        self.phase = Phase::Closing;
    }

    /// Queues a DISCONNECT for an MQTT 5 client (3.x has no server DISCONNECT). A Reason String
    /// is allowed on DISCONNECT whatever Request Problem Information says (MQTT-3.1.2-29).
    fn send_disconnect(&mut self, reason: ReasonCode, why: Option<&str>) {
        if self.version.is_v5() {
            let mut d = Disconnect::with_reason(reason);
            d.properties.reason_string = why.map(ByteString::from);
            self.push(Packet::Disconnect(d));
        }
    }

    /// Whether the access rules (the broker's and the client's own, where there are any) let
    /// this client write `topic`. A refusal is counted.
    fn acl_allows(&self, access: Access, client_id: &str, topic: &str) -> bool {
        self.acl_check(AclAction::Publish, client_id, |acl, who| {
            acl.allows(access, who, topic)
        })
    }

    /// Whether the access rules let this client subscribe to `filter`. A refusal is counted.
    fn acl_allows_subscribe(&self, filter: &str) -> bool {
        self.acl_check(AclAction::Subscribe, &self.client_id, |acl, who| {
            acl.allows_subscribe(who, filter)
        })
    }

    fn acl_check(
        &self,
        action: AclAction,
        client_id: &str,
        check: impl Fn(&Acl, Identity<'_>) -> bool,
    ) -> bool {
        let who = Identity {
            client_id,
            username: self.username.as_deref(),
        };
        let rules = match &self.info.policy.acl {
            Some(own) => own,
            None => self.broker.acl_slot(),
        };
        let allowed = rules.with(|acl| acl.is_none_or(|acl| check(acl, who)))
            && self.client_acl.as_deref().is_none_or(|acl| check(acl, who));
        self.broker.metrics().record_acl(action, allowed);
        allowed
    }

    fn detach(&mut self, publish_will: bool, now: Instant) {
        // A message the client sent before going is routed in full, as if it had been
        // handled at once.
        self.route_staged(usize::MAX);
        if let Some(session) = self.session.take() {
            self.broker
                .detach(&session, self.generation, publish_will, now);
        }
    }

    fn handle_publish(&mut self, mut p: Publish, now: Instant) {
        let cfg = self.broker.config();
        if self.version.is_v5() {
            if !p.properties.subscription_identifiers.is_empty() {
                return self.fail(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.3.4-6] PUBLISH with a Subscription Identifier",
                    now,
                );
            }
            if let Some(alias) = p.properties.topic_alias.take() {
                if alias == 0 || alias > cfg.max_topic_alias {
                    return self.fail(
                        ReasonCode::TOPIC_ALIAS_INVALID,
                        "[MQTT-3.3.2-8] Topic Alias is 0 or above the maximum",
                        now,
                    );
                }
                if p.topic.is_empty() {
                    match self.aliases.as_ref().and_then(|a| a.inbound.get(&alias)) {
                        Some(topic) => p.topic = topic.clone(),
                        None => {
                            return self.fail(
                                ReasonCode::PROTOCOL_ERROR,
                                "[MQTT-3.3.4] unknown Topic Alias with an empty topic",
                                now,
                            );
                        }
                    }
                } else {
                    self.aliases
                        .get_or_insert_default()
                        .inbound
                        .insert(alias, p.topic.clone());
                }
            } else if p.topic.is_empty() {
                return self.fail(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.3.2.1] empty topic without Topic Alias",
                    now,
                );
            }
        }
        // Aliases stand for the topic as the client writes it; the mount point goes in front
        // of it here, and every check below sees the topic as other clients will.
        if let Some(mount_point) = &self.info.policy.mount_point {
            p.topic = mounted(mount_point, &p.topic);
        }
        if topic_levels(&p.topic) > cfg.max_topic_levels {
            return self.fail(
                ReasonCode::TOPIC_NAME_INVALID,
                "topic name has more levels than max_topic_levels",
                now,
            );
        }
        if p.topic.len() > cfg.max_topic_length {
            return self.fail(
                ReasonCode::TOPIC_NAME_INVALID,
                "topic name is longer than max_topic_length",
                now,
            );
        }
        if p.qos > cfg.max_qos {
            return self.fail(
                ReasonCode::QOS_NOT_SUPPORTED,
                "[MQTT-3.2.2-11] PUBLISH above the Maximum QoS",
                now,
            );
        }
        if p.retain && !cfg.retain_available {
            return self.fail(
                ReasonCode::RETAIN_NOT_SUPPORTED,
                "[MQTT-3.2.2-14] retained messages are not available",
                now,
            );
        }
        let Some(session) = self.session.clone() else {
            return;
        };
        let metrics = self.broker.metrics();
        metrics.record_message_received(p.qos, p.payload.len());

        if let (QoS::ExactlyOnce, Some(id)) = (p.qos, p.packet_id) {
            let st = session.lock();
            if let Some(&lsn) = st.incoming_qos2.get(&id.get()) {
                // A resend before PUBREL: acknowledge again, do not deliver twice
                // (MQTT-4.3.3-10); the PUBREC still waits until the original is kept.
                drop(st);
                self.push_after(lsn, Packet::PubRec(Ack::new(id)));
                return;
            }
            if st.incoming_qos2.len() >= usize::from(cfg.receive_maximum) {
                drop(st);
                return self.fail(
                    ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                    "[MQTT-3.3.4-7] more QoS 2 PUBLISHes awaiting PUBREL than Receive Maximum",
                    now,
                );
            }
        }

        let refused = if is_sys_topic(&p.topic) && !is_bridge_state_topic(&p.topic) {
            // Clients may not publish into the broker's own tree, bar bridge states.
            metrics.record_acl(AclAction::Publish, false);
            Some("publishing to $SYS is not allowed")
        } else if !self.acl_allows(Access::Write, &self.client_id, &p.topic) {
            Some("not authorized to publish to this topic")
        } else {
            None
        };
        // The message's copies and its incoming packet identifier are committed together: a
        // crash between them would route a resend a second time.
        let _group = self.broker.persistence().atomic();
        if let Some(why) = refused {
            metrics.record_drop(DropReason::NotAuthorized);
            let refusal = Refusal {
                reason: ReasonCode::NOT_AUTHORIZED,
                why: Some(why),
            };
            return self.acknowledge(&session, p.qos, p.packet_id, refusal, 0);
        }
        let mut properties = p.properties;
        let interval = properties.message_expiry_interval.take();
        let message = Arc::new(Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            expires_at: Message::expiry_from(interval, now),
            publisher: Some(self.client_id.clone()),
        });
        // Queuing a large fan-out in steps splits the commit of its copies: not for a message
        // the store keeps.
        let routed = if std::mem::take(&mut self.handoff_armed)
            && (p.qos == QoS::AtMostOnce || !self.broker.persistence().is_enabled())
        {
            let (routed, rest) = self.broker.publish_first(message, now, COPIES_PER_TURN);
            // A QoS 1/2 message whose copies woke connections waits for them before its
            // acknowledgement too: after an idle spell the first packet written pays for
            // waking the receiving side's core, and the copy should not wait behind that.
            if rest.is_some() || (routed.woke && p.qos != QoS::AtMostOnce) {
                self.staged = Some(Box::new(StagedPublish {
                    rest,
                    routed,
                    qos: p.qos,
                    packet_id: p.packet_id,
                }));
                return;
            }
            routed
        } else {
            self.broker.publish(message, now)
        };
        self.acknowledge(
            &session,
            p.qos,
            p.packet_id,
            Refusal::of(&routed),
            routed.lsn,
        );
    }

    /// Queues the PUBACK or PUBREC of a PUBLISH (nothing for QoS 0), once store operation
    /// `lsn` is durable.
    fn acknowledge(
        &mut self,
        session: &Session,
        qos: QoS,
        packet_id: Option<PacketId>,
        refusal: Refusal,
        mut lsn: Lsn,
    ) {
        // MQTT 3.x has no negative acknowledgement: the refused message is acknowledged and
        // dropped (MQTT-3.3.5-2).
        let reason = if self.version.is_v5() {
            refusal.reason
        } else {
            ReasonCode::SUCCESS
        };
        let ack = |id| {
            let mut ack = Ack::with_reason(id, reason);
            if reason.is_error() && self.request_problem_information {
                ack.properties.reason_string = refusal
                    .why
                    .map(ByteString::from)
                    .or_else(|| reason.name().map(ByteString::from));
            }
            ack
        };
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let ack = ack(id);
                self.push_after(lsn, Packet::PubAck(ack));
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let ack = ack(id);
                if !reason.is_error() {
                    let mut st = session.lock();
                    if st.durable {
                        lsn = lsn.max(self.broker.persist(StoreOp::AddIncomingQos2 {
                            client_id: session.client_id.clone(),
                            packet_id: id.get(),
                        }));
                    }
                    st.incoming_qos2.insert(id.get(), lsn);
                }
                // PUBREC promises the message is kept (and that a resend is recognised).
                self.push_after(lsn, Packet::PubRec(ack));
            }
            _ => {}
        }
    }

    fn handle_pubrel(&mut self, id: PacketId) {
        let mut lsn = 0;
        let known = self.session.as_ref().is_some_and(|s| {
            let mut st = s.lock();
            let known = st.incoming_qos2.remove(&id.get()).is_some();
            if known && st.durable {
                lsn = self.broker.persist(StoreOp::RemoveIncomingQos2 {
                    client_id: s.client_id.clone(),
                    packet_id: id.get(),
                });
            }
            known
        });
        let reason = if known || !self.version.is_v5() {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND // MQTT-3.7.2-1
        };
        // After PUBCOMP the client may reuse the id: the store must have forgotten it first.
        self.push_after(lsn, Packet::PubComp(Ack::with_reason(id, reason)));
    }

    /// PUBACK or PUBCOMP: the delivery is complete and its identifier free again.
    fn handle_puback(&mut self, id: PacketId, awaiting: Awaiting) {
        if let Some(session) = &self.session {
            let mut st = session.lock();
            if let Some(pos) = st.inflight_position(id, awaiting)
                && let Some(done) = st.remove_inflight(pos)
            {
                self.forget_delivery(session, &done.delivery);
            }
        }
    }

    /// Removes a finished or dropped delivery from the store (session locked by the caller).
    fn forget_delivery(&self, session: &Session, delivery: &Delivery) {
        if delivery.seq != 0 {
            self.broker.persist(StoreOp::DeleteDelivery {
                client_id: session.client_id.clone(),
                seq: delivery.seq,
            });
        }
    }

    fn handle_pubrec(&mut self, ack: Ack) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut st = session.lock();
        match st.inflight_position(ack.packet_id, Awaiting::PubRec) {
            Some(pos) if ack.reason.is_error() => {
                // MQTT-4.4.0-2, MQTT-4.8.2-6: a failed PUBREC ends the delivery.
                if let Some(done) = st.remove_inflight(pos) {
                    self.forget_delivery(&session, &done.delivery);
                }
            }
            Some(pos) => {
                let entry = &mut st.inflight[pos];
                entry.awaiting = Awaiting::PubComp;
                let mut lsn = 0;
                if entry.delivery.seq != 0 {
                    let state = DeliveryState::Released(ack.packet_id.get());
                    let record = entry.delivery.record(&session.client_id, state);
                    lsn = self.broker.persist(StoreOp::PutDelivery(record));
                }
                drop(st);
                // Once PUBREL is out, a restart must re-send PUBREL, never the PUBLISH.
                self.push_after(lsn, Packet::PubRel(Ack::new(ack.packet_id)));
            }
            None => {
                let resend = st
                    .inflight_position(ack.packet_id, Awaiting::PubComp)
                    .is_some();
                drop(st);
                if resend {
                    self.push(Packet::PubRel(Ack::new(ack.packet_id)));
                } else if self.version.is_v5() {
                    self.push(Packet::PubRel(Ack::with_reason(
                        ack.packet_id,
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                    )));
                }
            }
        }
    }

    fn handle_subscribe(&mut self, s: Subscribe, now: Instant) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let cfg = self.broker.config();
        let v5 = self.version.is_v5();
        let identifier = s.properties.subscription_identifier;
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for (filter, mut options) in s.filters {
            let filter = match &self.info.policy.mount_point {
                Some(mount_point) if is_valid_topic_filter(&filter) => {
                    mounted_filter(mount_point, &filter)
                }
                _ => filter,
            };
            if !is_valid_topic_filter(&filter)
                || topic_levels(&filter) > cfg.max_topic_levels
                || filter.len() > cfg.max_topic_length
            {
                reasons.push(if v5 {
                    ReasonCode::TOPIC_FILTER_INVALID
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            let shared = split_shared(&filter).is_some();
            if shared && options.no_local {
                return self.fail(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.8.3-4] No Local on a shared subscription",
                    now,
                );
            }
            if self.bridge && !shared {
                // What Mosquitto does for a bridge of 3.x, which cannot ask for them itself:
                // its own messages are not sent back, and their retain flag is kept.
                options.no_local = true;
                options.retain_as_published = true;
            }
            if !self.acl_allows_subscribe(&filter) {
                reasons.push(if v5 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::UNSPECIFIED_ERROR // 0x80, Failure
                });
                continue;
            }
            if cfg.max_subscriptions > 0 {
                // Only this connection changes its session's subscriptions: nothing can come
                // in between this check and the subscription.
                let st = session.lock();
                let full = !st.subscriptions.contains_key(&filter)
                    && st.subscriptions.len() >= cfg.max_subscriptions;
                drop(st);
                if full {
                    reasons.push(if v5 {
                        ReasonCode::QUOTA_EXCEEDED
                    } else {
                        ReasonCode::UNSPECIFIED_ERROR // 0x80, Failure
                    });
                    continue;
                }
            }
            options.qos = options.qos.min(cfg.max_qos);
            let Some(existed) = self
                .broker
                .subscribe(&session, &filter, options, identifier)
            else {
                return;
            };
            // Shared subscriptions get no retained messages (§3.8.4).
            if !shared && Broker::wants_retained(options, existed) {
                retained.push((filter, options));
            }
            reasons.push(ReasonCode(options.qos as u8));
        }
        self.push(Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reasons,
        }));
        for (filter, options) in retained {
            self.broker
                .send_retained(&session, &filter, options, identifier, now);
        }
    }

    fn handle_unsubscribe(&mut self, u: Unsubscribe, now: Instant) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mount_point = self.info.policy.mount_point.as_ref();
        let reasons = u
            .filters
            .iter()
            .map(|filter| {
                let mounted;
                let filter = match mount_point {
                    Some(mount_point) => {
                        mounted = mounted_filter(mount_point, filter);
                        &mounted
                    }
                    None => filter,
                };
                if self.broker.unsubscribe(&session, filter, now) {
                    ReasonCode::SUCCESS
                } else {
                    ReasonCode::NO_SUBSCRIPTION_EXISTED
                }
            })
            .collect();
        let reasons = if self.version.is_v5() {
            reasons
        } else {
            Vec::new()
        };
        self.push(Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reasons,
        }));
    }

    fn handle_disconnect(&mut self, d: Disconnect, now: Instant) {
        if self.version.is_v5() {
            if !CLIENT_DISCONNECT_CODES.contains(&d.reason.0) {
                return self.fail(
                    ReasonCode::PROTOCOL_ERROR,
                    "[MQTT-3.14.2-1] DISCONNECT reason code a client may not send",
                    now,
                );
            }
            if let Some(expiry) = d.properties.session_expiry_interval {
                if self.connect_session_expiry == 0 && expiry != 0 {
                    return self.fail(ReasonCode::PROTOCOL_ERROR, "[MQTT-3.14.2.2.2] Session Expiry Interval set at DISCONNECT after 0 at CONNECT", now);
                }
                if let Some(session) = &self.session {
                    self.broker.set_session_expiry(session, expiry);
                }
            }
        }
        // Only a normal disconnection discards the will (MQTT-3.14.4-3).
        let publish_will = self.version.is_v5() && d.reason != ReasonCode::NORMAL_DISCONNECTION;
        self.detach(publish_will, now);
        self.phase = Phase::Closing;
    }

    /// Appends pending packets to `out`: control packets first, then re-sent and new
    /// deliveries while the client's window and `high_water` bytes allow. Returns whether
    /// anything was appended.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut BytesMut, high_water: usize) -> bool {
        let start = out.len();
        self.write_control(out);
        if self.phase == Phase::Connected {
            self.transmit_deliveries(now, out, high_water);
            // Deliveries that had to wait for the store joined the control queue.
            self.write_control(out);
        }
        out.len() > start
    }

    /// Queues a packet to send as soon as the packets before it are out.
    fn push(&mut self, packet: Packet) {
        self.control.push_back((0, Outgoing::Packet(packet)));
    }

    /// Queues a packet that may only leave once store operation `lsn` is durable.
    fn push_after(&mut self, lsn: Lsn, packet: Packet) {
        self.control.push_back((lsn, Outgoing::Packet(packet)));
    }

    /// Writes the control packets, in order, each once the store operation it waits for is
    /// settled. One that exceeds the client's Maximum Packet Size is sent without its Reason
    /// String and User Properties (MQTT-3.1.2-24, MQTT-3.4.2-2 and the like), or not at all if
    /// it is still too large.
    fn write_control(&mut self, out: &mut BytesMut) {
        while let Some((lsn, _)) = self.control.front() {
            let lsn = *lsn;
            let persistence = self.broker.persistence();
            let failed = match persistence.durability(lsn) {
                Durability::Durable => false,
                Durability::Failed => true,
                Durability::Pending => {
                    if self.awaiting_lsn != lsn {
                        self.awaiting_lsn = lsn;
                        persistence.notify(lsn, self.waker.clone());
                    }
                    return;
                }
            };
            let Some((_, outgoing)) = self.control.pop_front() else {
                return;
            };
            let mut packet = match outgoing {
                Outgoing::Packet(packet) => packet,
                Outgoing::Encoded(bytes) => {
                    out.extend_from_slice(&bytes);
                    continue;
                }
            };
            if failed && !self.store_failed(&mut packet) {
                continue;
            }
            if packet
                .encode_limited(self.version, self.client_max_packet_size, out)
                .is_ok()
            {
                self.count_sent(&packet);
                continue;
            }
            strip_diagnostics(&mut packet);
            match packet.encode_limited(self.version, self.client_max_packet_size, out) {
                Ok(_) => self.count_sent(&packet),
                Err(e) => tracing::debug!(client = %self.client_id, error = %e, "packet not sent"),
            }
        }
        // Drained: give the buffer back. Its smallest capacity holds four packets of a few
        // hundred bytes each, which every idle connection would otherwise keep after CONNACK.
        if self.control.capacity() > 0 {
            self.control = VecDeque::new();
        }
    }

    /// Counts a control packet written for the client (deliveries are counted where they are
    /// encoded), and a CONNACK that refuses the connection by its reason.
    fn count_sent(&self, packet: &Packet) {
        let metrics = self.broker.metrics();
        metrics.record_packet_sent(packet.packet_type());
        if let Packet::ConnAck(c) = packet
            && c.reason.is_error()
        {
            metrics.record_connack_refused(c.reason);
        }
    }

    /// Adjusts an acknowledgement whose store write failed: the message was not kept, so an
    /// MQTT 5 publisher hears 0x80 and a 3.x publisher hears nothing (it will send it again).
    /// Returns whether to send the packet. Packets that promise nothing are sent as they are.
    fn store_failed(&mut self, packet: &mut Packet) -> bool {
        tracing::warn!(client = %self.client_id, "store write failed: acknowledgement withheld");
        let is_pubrec = matches!(packet, Packet::PubRec(_));
        let (Packet::PubAck(ack) | Packet::PubRec(ack)) = packet else {
            return true;
        };
        if !self.version.is_v5() {
            // No negative acknowledgement in 3.x: the client will send it again. The store
            // retries the write, so a QoS 2 identifier is kept, and the resend is answered once
            // the original is on disk instead of being routed a second time.
            return false;
        }
        if let (true, Some(session)) = (is_pubrec, &self.session) {
            // PUBREC >= 0x80 frees the identifier (MQTT-4.3.3-9): a resend is a new message.
            // The store retries failed writes, so it must be told to forget the id too.
            let mut st = session.lock();
            if st.incoming_qos2.remove(&ack.packet_id.get()).is_some() && st.durable {
                self.broker.persist(StoreOp::RemoveIncomingQos2 {
                    client_id: session.client_id.clone(),
                    packet_id: ack.packet_id.get(),
                });
            }
        }
        ack.reason = ReasonCode::UNSPECIFIED_ERROR;
        if self.request_problem_information {
            ack.properties.reason_string = Some("the message could not be stored".into());
        }
        true
    }

    fn transmit_deliveries(&mut self, now: Instant, out: &mut BytesMut, high_water: usize) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let mut st = session.lock();
        if !st.is_current(self.generation) {
            // Taken over by a new connection, which has dealt with the will (MQTT-3.1.4-3).
            drop(st);
            self.session = None;
            self.send_disconnect(ReasonCode::SESSION_TAKEN_OVER, None);
            self.phase = Phase::Closing;
            self.write_control(out);
            return;
        }
        if st.link().is_some_and(|l| l.info.kicked) {
            // Disconnected by an administrator (`Broker::admin_disconnect`).
            drop(st);
            self.fail(
                ReasonCode::ADMINISTRATIVE_ACTION,
                "disconnected by an administrator",
                now,
            );
            self.write_control(out);
            return;
        }
        let broker = self.broker.clone();
        let metrics = broker.metrics();
        // Re-send what an earlier connection left unacknowledged (MQTT-4.4.0-1), in the
        // original order and within this client's window (MQTT-3.3.4-9).
        let generation = self.generation;
        let mut in_window = st
            .inflight
            .iter()
            .filter(|i| i.sent_by == generation)
            .count();
        for index in 0..st.inflight.len() {
            if st.inflight[index].sent_by == generation {
                continue;
            }
            if in_window >= usize::from(self.send_window) {
                return; // the rest, and new deliveries, wait for acknowledgements
            }
            let entry = &mut st.inflight[index];
            entry.sent_by = generation;
            in_window += 1;
            let (id, awaiting, delivery) =
                (entry.packet_id, entry.awaiting, entry.delivery.clone());
            if awaiting == Awaiting::PubComp {
                if Packet::PubRel(Ack::new(id))
                    .encode(self.version, out)
                    .is_ok()
                {
                    metrics.record_packet_sent(tern_codec::PacketType::PubRel);
                }
            } else if let Ok(written) = self.encode_delivery(&delivery, Some(id), true, now, out) {
                metrics.record_delivery(&delivery.message, delivery.qos, written);
            }
        }
        while out.len() < high_water {
            let Some(front) = st.queue.front() else { break };
            if front.qos != QoS::AtMostOnce && st.inflight.len() >= usize::from(self.send_window) {
                break; // MQTT-3.3.4-9: the rest waits for acknowledgements
            }
            let Some(delivery) = st.pop_queued() else {
                break;
            };
            if delivery.message.is_expired(now) {
                metrics.record_drop(DropReason::Expired); // MQTT-3.3.2-5
                self.forget_delivery(&session, &delivery);
                continue;
            }
            let packet_id = if delivery.qos == QoS::AtMostOnce {
                None
            } else {
                let Some(id) = st.allocate_packet_id() else {
                    break;
                };
                Some(id)
            };
            // A durable QoS 2 delivery leaves only once its packet identifier is stored: a
            // restart must re-send it with the same identifier, or the client would take the
            // re-sent message for a new one.
            // Behind a delivery that waits, the next ones wait too: they go out in the order
            // they were taken from the queue, which is the order a reconnection re-sends them
            // in (MQTT-4.6.0-1).
            let gated =
                (delivery.seq != 0 && delivery.qos == QoS::ExactlyOnce) || !self.control.is_empty();
            let encoded = if gated {
                let mut scratch = BytesMut::new();
                self.encode_delivery(&delivery, packet_id, false, now, &mut scratch)
                    .map(|written| (written, Some(scratch.freeze())))
            } else {
                self.encode_delivery(&delivery, packet_id, false, now, out)
                    .map(|written| (written, None))
            };
            let encoded = match encoded {
                Ok((written, encoded)) => {
                    metrics.record_delivery(&delivery.message, delivery.qos, written);
                    encoded
                }
                Err(reason) => {
                    // MQTT-3.1.2-25: too large for this client; dropped as if delivered.
                    if !is_broker_sys(&delivery.message) {
                        metrics.record_drop(reason);
                    }
                    self.forget_delivery(&session, &delivery);
                    continue;
                }
            };
            let mut lsn = 0;
            if let (Some(packet_id), true) = (packet_id, delivery.seq != 0) {
                let state = DeliveryState::Sent(packet_id.get());
                lsn = broker.persist(StoreOp::PutDelivery(
                    delivery.record(&session.client_id, state),
                ));
            }
            if let Some(bytes) = encoded {
                self.control.push_back((lsn, Outgoing::Encoded(bytes)));
            }
            let Some(packet_id) = packet_id else { continue };
            let awaiting = if delivery.qos == QoS::AtLeastOnce {
                Awaiting::PubAck
            } else {
                Awaiting::PubRec
            };
            st.push_inflight(Inflight {
                sent_by: generation,
                packet_id,
                delivery,
                awaiting,
            });
        }
    }

    /// Encodes a delivery, or says why it cannot go to this client: too large for it, or
    /// (never, as the broker keeps sessions from holding any) outside its mount point.
    fn encode_delivery(
        &mut self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Instant,
        out: &mut BytesMut,
    ) -> Result<usize, DropReason> {
        let message = &d.message;
        let v5 = self.version.is_v5();
        // The client sees topics without its listener's mount point.
        let visible: &str = match &self.info.policy.mount_point {
            None => &message.topic,
            Some(mount_point) => match message.topic.strip_prefix(&**mount_point) {
                Some(rest) if !rest.is_empty() => rest,
                _ => return Err(DropReason::NotAuthorized),
            },
        };
        let (send_topic, topic_alias, new_alias) = if v5 {
            self.outbound_alias(&message.topic)
        } else {
            (true, None, false)
        };
        let topic: &str = if send_topic { visible } else { "" };
        let view = PublishView {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            topic_alias,
            message_expiry_interval: message.remaining_expiry(now),
            subscription_identifiers: &d.subscription_identifiers,
            properties: &message.properties,
            payload: &message.payload,
        };
        let written = view
            .encode(self.version, self.client_max_packet_size, out)
            .map_err(|_| DropReason::TooLarge)?;
        if let (true, Some(alias)) = (new_alias, topic_alias) {
            self.aliases
                .get_or_insert_default()
                .outbound
                .insert(message.topic.clone(), alias);
        }
        Ok(written)
    }

    /// Topic alias for an outgoing message: (send the topic?, alias, alias is new). A known
    /// alias replaces the topic; a new one is assigned while the client's Topic Alias Maximum
    /// allows (MQTT-3.3.2-11); after that topics go without alias. None at all if the client
    /// accepts none (MQTT-3.1.2-27).
    fn outbound_alias(&self, topic: &ByteString) -> (bool, Option<u16>, bool) {
        if self.client_topic_alias_max == 0 {
            return (true, None, false);
        }
        let outbound = self.aliases.as_ref().map(|a| &a.outbound);
        if let Some(alias) = outbound.and_then(|o| o.get(topic)) {
            return (false, Some(*alias), false);
        }
        match u16::try_from(outbound.map_or(0, FastMap::len) + 1) {
            Ok(alias) if alias <= self.client_topic_alias_max => (true, Some(alias), true),
            _ => (true, None, false),
        }
    }
}

/// Removes the Reason String and User Properties, which a sender must omit rather than exceed
/// the receiver's Maximum Packet Size.
fn strip_diagnostics(packet: &mut Packet) {
    match packet {
        Packet::ConnAck(p) => {
            p.properties.reason_string = None;
            p.properties.user_properties.clear();
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.properties = Default::default();
        }
        Packet::SubAck(a) => a.properties = Default::default(),
        Packet::UnsubAck(a) => a.properties = Default::default(),
        Packet::Disconnect(d) => {
            d.properties.reason_string = None;
            d.properties.user_properties.clear();
        }
        _ => {}
    }
}

/// Number of levels of a topic name or filter (`a/b` has 2, `/` has 2).
fn topic_levels(topic: &str) -> usize {
    topic.bytes().filter(|b| *b == b'/').count() + 1
}

/// `topic` (a topic name or a plain filter) under `mount_point`.
fn mounted(mount_point: &str, topic: &str) -> ByteString {
    let mut full = String::with_capacity(mount_point.len() + topic.len());
    full.push_str(mount_point);
    full.push_str(topic);
    ByteString::from(full)
}

/// A valid subscription filter under `mount_point`: the mount point goes in front of the
/// filter proper of a shared subscription (`$share/g/f` → `$share/g/<mount point>f`). The
/// result may be invalid (a mount point without a trailing `/` followed by `#` or `+`): the
/// caller checks it as it checks any filter.
fn mounted_filter(mount_point: &str, filter: &str) -> ByteString {
    match split_shared(filter) {
        Some(Ok((share, inner))) => {
            ByteString::from(format!("$share/{share}/{mount_point}{inner}"))
        }
        _ => mounted(mount_point, filter),
    }
}

/// Whether `topic` is in the broker's own `$SYS` tree.
fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Whether `topic` matches `$SYS/broker/connection/+/state`: where bridges publish their
/// connection state (and set it as their Will), the one place of `$SYS` clients may write,
/// subject to the access rules like any topic (as in Mosquitto).
fn is_bridge_state_topic(topic: &str) -> bool {
    topic
        .strip_prefix("$SYS/broker/connection/")
        .and_then(|rest| rest.strip_suffix("/state"))
        .is_some_and(|name| !name.contains('/'))
}

/// An AUTH packet of the enhanced authentication exchange.
fn auth_packet(
    reason: ReasonCode,
    method: Option<ByteString>,
    data: Option<bytes::Bytes>,
) -> tern_codec::Auth {
    let mut a = tern_codec::Auth {
        reason,
        ..tern_codec::Auth::default()
    };
    a.properties.authentication_method = method;
    a.properties.authentication_data = data;
    a
}
