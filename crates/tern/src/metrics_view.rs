//! One reading of the broker's counters and gauges, taken at one moment, that every view shows:
//! the admin API's JSON stats (`GET /api/v1/stats`, `GET /api/v1/metrics`), the dashboard's live
//! stream, the Prometheus text ([`crate::prometheus`]) and the `$SYS` topics
//! ([`crate::sys_topics`]). Because they all read a [`MetricsSnapshot`], they never disagree.
//!
//! The JSON form has EMQX-like dotted names (`connections.count`, `messages.received`, ...);
//! docs/METRICS.md lists every one.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::ser::{Serialize, SerializeMap, Serializer};
use tern_codec::{PacketType, QoS, ReasonCode};
use tern_core::{AclAction, Broker, DropReason, HistogramSnapshot};

/// The version of this build.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// When the broker started (see [`mark_started`]).
static STARTED: OnceLock<Instant> = OnceLock::new();

/// Marks the start of the broker, from which uptime counts. Later calls change nothing.
pub(crate) fn mark_started() {
    let _ = STARTED.get_or_init(Instant::now);
}

/// How long the broker has been running.
pub(crate) fn uptime() -> Duration {
    STARTED.get_or_init(Instant::now).elapsed()
}

/// The packet types a client sends, in the order the views list them.
pub(crate) const RECEIVED_TYPES: [PacketType; 11] = [
    PacketType::Connect,
    PacketType::Publish,
    PacketType::PubAck,
    PacketType::PubRec,
    PacketType::PubRel,
    PacketType::PubComp,
    PacketType::Subscribe,
    PacketType::Unsubscribe,
    PacketType::PingReq,
    PacketType::Disconnect,
    PacketType::Auth,
];

/// The packet types the broker sends, in the order the views list them.
pub(crate) const SENT_TYPES: [PacketType; 11] = [
    PacketType::ConnAck,
    PacketType::Publish,
    PacketType::PubAck,
    PacketType::PubRec,
    PacketType::PubRel,
    PacketType::PubComp,
    PacketType::SubAck,
    PacketType::UnsubAck,
    PacketType::PingResp,
    PacketType::Disconnect,
    PacketType::Auth,
];

/// The QoS levels, in label order.
pub(crate) const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

/// The broker's counters and gauges at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricsSnapshot {
    /// The version of this build.
    pub(crate) version: &'static str,
    /// Seconds since the broker started.
    pub(crate) uptime_seconds: u64,
    /// Connections attached to a session now.
    pub(crate) connections: u64,
    /// The most connections attached at the same time since the start.
    pub(crate) connections_max: u64,
    /// CONNECTs accepted (CONNACK success) since the start.
    pub(crate) connects: u64,
    /// Network connections that reached the protocol since the start.
    pub(crate) sockets_opened: u64,
    /// Sessions, connected or not.
    pub(crate) sessions: u64,
    /// Sessions without a connection (Mosquitto's `clients/disconnected`).
    pub(crate) sessions_disconnected: u64,
    /// Sessions ended by their expiry interval.
    pub(crate) sessions_expired: u64,
    /// Subscriptions, shared memberships included.
    pub(crate) subscriptions: u64,
    /// Shared subscription memberships.
    pub(crate) shared_subscriptions: u64,
    /// Retained messages, without the broker's own `$SYS` ones.
    pub(crate) retained: u64,
    /// PUBLISH messages received from clients, by QoS (index = QoS).
    pub(crate) messages_received: [u64; 3],
    /// PUBLISH messages sent to clients, by QoS of the delivery.
    pub(crate) messages_sent: [u64; 3],
    /// Payload bytes of PUBLISH messages received.
    pub(crate) publish_bytes_received: u64,
    /// Payload bytes of PUBLISH messages sent.
    pub(crate) publish_bytes_sent: u64,
    /// Deliveries dropped, by reason.
    pub(crate) dropped: [(DropReason, u64); 5],
    /// Messages published that matched no subscription.
    pub(crate) no_subscribers: u64,
    /// MQTT bytes read from clients.
    pub(crate) bytes_received: u64,
    /// MQTT bytes written to clients.
    pub(crate) bytes_sent: u64,
    /// Packets received, for each of [`RECEIVED_TYPES`].
    pub(crate) packets_received: [(PacketType, u64); 11],
    /// Packets sent, for each of [`SENT_TYPES`].
    pub(crate) packets_sent: [(PacketType, u64); 11],
    /// Packets of every type received (including types clients must not send).
    pub(crate) packets_received_total: u64,
    /// Packets of every type sent.
    pub(crate) packets_sent_total: u64,
    /// CONNACK refusals by reason code.
    pub(crate) connack_refused: Vec<(ReasonCode, u64)>,
    /// CONNACK refusals, whatever the reason.
    pub(crate) connack_refused_total: u64,
    /// Clients let in (authenticated, or anonymous where allowed).
    pub(crate) auth_success: u64,
    /// Authentications refused.
    pub(crate) auth_failure: u64,
    /// Access checks: (action, allowed, count).
    pub(crate) acl: [(AclAction, bool, u64); 4],
    /// Protocol errors that closed a connection.
    pub(crate) protocol_errors: u64,
    /// Deliveries queued (not yet sent) in all sessions.
    pub(crate) queued_messages: u64,
    /// Bytes (payload and topic) of the queued deliveries.
    pub(crate) queued_bytes: u64,
    /// Deliveries sent and awaiting acknowledgement in all sessions.
    pub(crate) inflight_messages: u64,
    /// Bytes (payload and topic) of the in-flight deliveries.
    pub(crate) inflight_bytes: u64,
    /// Latency of the store's commits.
    pub(crate) store_commit: HistogramSnapshot,
    /// The bridges to other brokers, in name order.
    pub(crate) bridges: Vec<crate::bridge::BridgeSnapshot>,
}

/// Reads every counter and gauge of `broker` now.
pub(crate) fn snapshot(broker: &Broker) -> MetricsSnapshot {
    use std::sync::atomic::Ordering::Relaxed;
    let m = broker.metrics();
    let connections = broker.connected_count();
    let sessions = broker.session_count() as u64;
    let (inflight_messages, inflight_bytes) = broker.inflight_messages();
    MetricsSnapshot {
        version: VERSION,
        uptime_seconds: uptime().as_secs(),
        connections,
        connections_max: m.connections_max.load(Relaxed).max(connections),
        connects: m.connects.load(Relaxed),
        sockets_opened: m.sockets_opened.load(Relaxed),
        sessions,
        sessions_disconnected: sessions.saturating_sub(connections),
        sessions_expired: m.sessions_expired.load(Relaxed),
        subscriptions: broker.subscription_count() as u64,
        shared_subscriptions: broker.shared_subscription_count() as u64,
        retained: broker
            .retained_count()
            .saturating_sub(broker.sys_retained_count()) as u64,
        messages_received: QOS.map(|q| m.messages_received(q)),
        messages_sent: QOS.map(|q| m.messages_sent(q)),
        publish_bytes_received: m.publish_bytes_received.load(Relaxed),
        publish_bytes_sent: m.publish_bytes_sent.load(Relaxed),
        dropped: DropReason::ALL.map(|r| (r, m.dropped(r))),
        no_subscribers: m.publish_no_subscribers.load(Relaxed),
        bytes_received: m.bytes_received.load(Relaxed),
        bytes_sent: m.bytes_sent(),
        packets_received: RECEIVED_TYPES.map(|t| (t, m.packets_received(t))),
        packets_sent: SENT_TYPES.map(|t| (t, m.packets_sent(t))),
        packets_received_total: m.packets_received_total(),
        packets_sent_total: m.packets_sent_total(),
        connack_refused: m.connack_refusals().to_vec(),
        connack_refused_total: m.connack_refused_total(),
        auth_success: m.auth_successes.load(Relaxed),
        auth_failure: m.auth_failures.load(Relaxed),
        acl: [
            (AclAction::Publish, true),
            (AclAction::Publish, false),
            (AclAction::Subscribe, true),
            (AclAction::Subscribe, false),
        ]
        .map(|(a, allowed)| (a, allowed, m.acl(a, allowed))),
        protocol_errors: m.protocol_errors.load(Relaxed),
        queued_messages: broker.queued_messages() as u64,
        queued_bytes: broker.queued_bytes() as u64,
        inflight_messages: inflight_messages as u64,
        inflight_bytes: inflight_bytes as u64,
        store_commit: m.store_commit.snapshot(),
        bridges: crate::bridge::snapshots(broker),
    }
}

impl MetricsSnapshot {
    /// PUBLISH messages received, all QoS.
    pub(crate) fn messages_received_total(&self) -> u64 {
        self.messages_received.iter().sum()
    }

    /// PUBLISH messages sent, all QoS.
    pub(crate) fn messages_sent_total(&self) -> u64 {
        self.messages_sent.iter().sum()
    }

    /// Deliveries dropped, every reason (messages without subscribers not included).
    pub(crate) fn delivery_dropped_total(&self) -> u64 {
        self.dropped.iter().map(|(_, n)| n).sum()
    }

    /// Every message dropped, those without subscribers included (EMQX's `messages.dropped`).
    pub(crate) fn messages_dropped_total(&self) -> u64 {
        self.delivery_dropped_total() + self.no_subscribers
    }

    /// Access checks that ended with `allowed`, all actions.
    pub(crate) fn acl_total(&self, allowed: bool) -> u64 {
        self.acl
            .iter()
            .filter(|(_, a, _)| *a == allowed)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// Deliveries held for sessions: queued and in flight (Mosquitto's `messages/stored`).
    pub(crate) fn stored_messages(&self) -> u64 {
        self.queued_messages + self.inflight_messages
    }

    /// Bytes of the deliveries held for sessions.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.queued_bytes + self.inflight_bytes
    }

    /// Every value as (dotted name, value), in the order of the JSON object.
    pub(crate) fn entries(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = Vec::with_capacity(128);
        let mut put = |name: &str, value: u64| out.push((name.to_owned(), Value::Int(value)));
        put("uptime", self.uptime_seconds);
        put("connections.count", self.connections);
        put("connections.max", self.connections_max);
        put("client.connected", self.connects);
        put("sockets.opened", self.sockets_opened);
        put("sessions.count", self.sessions);
        put("sessions.disconnected", self.sessions_disconnected);
        put("sessions.expired", self.sessions_expired);
        put("subscriptions.count", self.subscriptions);
        put("subscriptions.shared.count", self.shared_subscriptions);
        put("retained.count", self.retained);
        put("messages.received", self.messages_received_total());
        put("messages.sent", self.messages_sent_total());
        for (i, q) in QOS.iter().enumerate() {
            let q = *q as u8;
            put(
                &format!("messages.qos{q}.received"),
                self.messages_received[i],
            );
            put(&format!("messages.qos{q}.sent"), self.messages_sent[i]);
        }
        put("messages.bytes.received", self.publish_bytes_received);
        put("messages.bytes.sent", self.publish_bytes_sent);
        put("messages.dropped", self.messages_dropped_total());
        put("messages.dropped.no_subscribers", self.no_subscribers);
        put("delivery.dropped", self.delivery_dropped_total());
        for (reason, n) in &self.dropped {
            put(&format!("delivery.dropped.{}", reason.label()), *n);
        }
        put("messages.queued", self.queued_messages);
        put("messages.queued.bytes", self.queued_bytes);
        put("messages.inflight", self.inflight_messages);
        put("messages.inflight.bytes", self.inflight_bytes);
        put("bytes.received", self.bytes_received);
        put("bytes.sent", self.bytes_sent);
        put("packets.received", self.packets_received_total);
        put("packets.sent", self.packets_sent_total);
        for (t, n) in &self.packets_received {
            put(&format!("packets.{}.received", t.name()), *n);
        }
        for (t, n) in &self.packets_sent {
            put(&format!("packets.{}.sent", t.name()), *n);
        }
        put("packets.connack.refused", self.connack_refused_total);
        for (code, n) in &self.connack_refused {
            put(
                &format!("packets.connack.refused.{}", reason_label(*code)),
                *n,
            );
        }
        put("authentication.success", self.auth_success);
        put("authentication.failure", self.auth_failure);
        put("authorization.allow", self.acl_total(true));
        put("authorization.deny", self.acl_total(false));
        for (action, allowed, n) in &self.acl {
            let result = if *allowed { "allow" } else { "deny" };
            put(&format!("authorization.{}.{result}", action.label()), *n);
        }
        put("protocol.errors", self.protocol_errors);
        put("bridges.count", self.bridges.len() as u64);
        put(
            "bridges.connected",
            self.bridges.iter().filter(|b| b.connected()).count() as u64,
        );
        put(
            "bridges.messages.out",
            self.bridges.iter().map(|b| b.forwarded_out).sum(),
        );
        put(
            "bridges.messages.in",
            self.bridges.iter().map(|b| b.forwarded_in).sum(),
        );
        put(
            "bridges.messages.dropped",
            self.bridges.iter().map(|b| b.dropped).sum(),
        );
        put("store.commit.count", self.store_commit.count);
        out.push((
            "store.commit.seconds.sum".to_owned(),
            Value::Float(self.store_commit.sum_seconds),
        ));
        out.push(("version".to_owned(), Value::Text(self.version)));
        out
    }
}

/// One value of the JSON form.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
    Text(&'static str),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(n) => serializer.serialize_u64(*n),
            Self::Float(x) => serializer.serialize_f64(*x),
            Self::Text(t) => serializer.serialize_str(t),
        }
    }
}

/// A JSON object with dotted names: `{"connections.count": 3, "messages.received": 10, ...}`.
impl Serialize for MetricsSnapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let entries = self.entries();
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (name, value) in &entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A reason code as a metric label: its specification name in snake case
/// (`Not authorized` → `not_authorized`), or its value in hex for a code without a name.
pub(crate) fn reason_label(code: ReasonCode) -> String {
    let Some(name) = code.name() else {
        return format!("0x{:02x}", code.0);
    };
    let mut label = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.ends_with('_') {
            label.push('_');
        }
    }
    label.trim_end_matches('_').to_owned()
}

/// In-process brokers and connections for the unit tests of the views.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::BytesMut;
    use tern_codec::{Connect, Packet, PacketId, ProtocolVersion, Publish, QoS};
    use tern_core::{Broker, BrokerConfig, Connection, ConnectionInfo, ListenerPolicy, Wake};

    struct NoWake;
    impl Wake for NoWake {
        fn wake(&self) {}
    }

    /// A broker with anonymous access, and connections driven on it in-process.
    pub(crate) struct Harness {
        pub(crate) broker: Broker,
        info: ConnectionInfo,
    }

    impl Harness {
        pub(crate) fn new() -> Self {
            let policy = ListenerPolicy {
                allow_anonymous: true,
                ..ListenerPolicy::default()
            };
            Self {
                broker: Broker::new(BrokerConfig::default()),
                info: ConnectionInfo {
                    policy: Arc::new(policy),
                    ..ConnectionInfo::default()
                },
            }
        }

        /// A connected MQTT 3.1.1 client.
        pub(crate) fn connect(&self, client_id: &str) -> Connection {
            let now = Instant::now();
            let mut c = Connection::new(
                self.broker.clone(),
                self.info.clone(),
                Arc::new(NoWake),
                now,
            );
            c.handle_packet(
                Packet::Connect(Box::new(Connect {
                    protocol: ProtocolVersion::V311,
                    clean_start: true,
                    keep_alive: 60,
                    properties: Default::default(),
                    client_id: client_id.into(),
                    will: None,
                    username: None,
                    password: None,
                })),
                now,
            );
            drain(&mut c);
            assert!(c.is_connected(), "{client_id} connected");
            c
        }
    }

    /// Everything the connection has to send.
    pub(crate) fn drain(c: &mut Connection) -> BytesMut {
        let mut out = BytesMut::new();
        while c.poll_transmit(Instant::now(), &mut out, usize::MAX) {}
        out
    }

    /// A PUBLISH (packet identifier 7 for QoS 1/2).
    pub(crate) fn publish(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.into(),
            packet_id: (qos != QoS::AtMostOnce).then(|| PacketId::new(7).expect("non-zero")),
            properties: Default::default(),
            payload: bytes::Bytes::from_static(payload),
        })
    }

    /// A SUBSCRIBE to one filter.
    pub(crate) fn subscribe(filter: &str, qos: QoS) -> Packet {
        Packet::Subscribe(tern_codec::Subscribe {
            packet_id: PacketId::new(1).expect("non-zero"),
            properties: Default::default(),
            filters: vec![(
                filter.into(),
                tern_codec::SubscriptionOptions::with_qos(qos),
            )],
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tern_codec::{Ack, Packet, PacketId};

    use super::testing::{Harness, drain, publish, subscribe};
    use super::*;

    #[test]
    fn a_snapshot_counts_the_traffic_of_in_process_connections() {
        let h = Harness::new();
        let mut sub = h.connect("sub");
        sub.handle_packet(subscribe("t/#", QoS::AtLeastOnce), Instant::now());
        drain(&mut sub);
        let mut publisher = h.connect("pub");
        let now = Instant::now();
        publisher.handle_packet(publish("t/1", b"hello", QoS::AtLeastOnce, false), now);
        publisher.handle_packet(publish("t/2", b"abc", QoS::AtMostOnce, true), now);
        publisher.handle_packet(publish("other", b"x", QoS::AtMostOnce, false), now);
        drain(&mut publisher);

        let before_send = snapshot(&h.broker);
        assert_eq!(before_send.queued_messages, 2, "queued for `sub`");
        assert_eq!(before_send.queued_bytes, (3 + 5) + (3 + 3));
        drain(&mut sub);
        let s = snapshot(&h.broker);
        assert_eq!(s.connections, 2);
        assert_eq!(s.connections_max, 2);
        assert_eq!(s.connects, 2);
        assert_eq!(s.sockets_opened, 2);
        assert_eq!(s.sessions, 2);
        assert_eq!(s.sessions_disconnected, 0);
        assert_eq!(s.subscriptions, 1);
        assert_eq!(s.retained, 1);
        assert_eq!(s.messages_received, [2, 1, 0]);
        assert_eq!(s.messages_sent, [1, 1, 0]);
        assert_eq!(s.publish_bytes_received, 5 + 3 + 1);
        assert_eq!(s.publish_bytes_sent, 5 + 3);
        assert_eq!(s.no_subscribers, 1);
        assert_eq!(s.messages_dropped_total(), 1);
        assert_eq!(s.queued_messages, 0);
        assert_eq!(s.inflight_messages, 1, "the QoS 1 copy awaits its PUBACK");
        assert_eq!(s.inflight_bytes, 3 + 5);
        let count =
            |list: &[(PacketType, u64)], t| list.iter().find(|(k, _)| *k == t).map(|(_, n)| *n);
        assert_eq!(count(&s.packets_received, PacketType::Connect), Some(2));
        assert_eq!(count(&s.packets_received, PacketType::Publish), Some(3));
        assert_eq!(count(&s.packets_received, PacketType::Subscribe), Some(1));
        assert_eq!(s.packets_received_total, 6);
        assert_eq!(count(&s.packets_sent, PacketType::ConnAck), Some(2));
        assert_eq!(count(&s.packets_sent, PacketType::SubAck), Some(1));
        assert_eq!(count(&s.packets_sent, PacketType::PubAck), Some(1));
        assert_eq!(count(&s.packets_sent, PacketType::Publish), Some(2));
        assert_eq!(s.packets_sent_total, 6);
        assert_eq!(s.auth_success, 2);
        assert_eq!(
            s.acl_total(true),
            4,
            "3 publishes and 1 subscription allowed"
        );

        // The PUBACK completes the delivery; the session's end releases the rest.
        let first = PacketId::new(1).expect("non-zero");
        sub.handle_packet(Packet::PubAck(Ack::new(first)), Instant::now());
        assert_eq!(snapshot(&h.broker).inflight_messages, 0);
        assert_eq!(snapshot(&h.broker).inflight_bytes, 0);
    }

    #[test]
    fn the_gauges_of_held_deliveries_fall_back_to_zero_when_sessions_end() {
        let h = Harness::new();
        let mut sub = h.connect("sub");
        sub.handle_packet(subscribe("t", QoS::AtLeastOnce), Instant::now());
        drain(&mut sub);
        let mut publisher = h.connect("pub");
        for _ in 0..3 {
            publisher.handle_packet(
                publish("t", b"abcd", QoS::AtLeastOnce, false),
                Instant::now(),
            );
        }
        assert_eq!(snapshot(&h.broker).queued_messages, 3);
        drain(&mut sub);
        let s = snapshot(&h.broker);
        assert_eq!((s.queued_messages, s.inflight_messages), (0, 3));
        assert_eq!(s.stored_messages(), 3);
        assert_eq!(s.stored_bytes(), 3 * (1 + 4));
        // Clean session: the session ends with its connection.
        sub.handle_connection_lost(Instant::now());
        let s = snapshot(&h.broker);
        assert_eq!((s.stored_messages(), s.stored_bytes()), (0, 0));
        assert_eq!((s.connections, s.sessions), (1, 1));
    }

    #[test]
    fn the_json_form_has_dotted_names() {
        let h = Harness::new();
        let mut c = h.connect("c");
        c.handle_packet(
            publish("a/b", b"12345", QoS::AtMostOnce, false),
            Instant::now(),
        );
        let json = serde_json::to_value(snapshot(&h.broker)).expect("JSON");
        assert_eq!(json["connections.count"], 1);
        assert_eq!(json["messages.received"], 1);
        assert_eq!(json["messages.qos0.received"], 1);
        assert_eq!(json["messages.dropped"], 1);
        assert_eq!(json["messages.dropped.no_subscribers"], 1);
        assert_eq!(json["messages.bytes.received"], 5);
        assert_eq!(json["packets.publish.received"], 1);
        assert_eq!(json["packets.connack.sent"], 1);
        assert_eq!(json["authentication.success"], 1);
        assert_eq!(json["authorization.publish.allow"], 1);
        assert_eq!(json["version"], VERSION);
        assert!(json["uptime"].is_u64());
        assert_eq!(json["packets.connack.refused.not_authorized"], 0);
    }

    #[test]
    fn reason_labels_are_snake_case() {
        assert_eq!(reason_label(ReasonCode::NOT_AUTHORIZED), "not_authorized");
        assert_eq!(
            reason_label(ReasonCode::BAD_USER_NAME_OR_PASSWORD),
            "bad_user_name_or_password"
        );
        assert_eq!(
            reason_label(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
            "client_identifier_not_valid"
        );
        assert_eq!(reason_label(ReasonCode(0xFE)), "0xfe");
    }
}
