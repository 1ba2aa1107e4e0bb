//! What the admin API asks of the broker and tells it to do: list sessions and their
//! connections, subscriptions, routes and retained messages; subscribe and unsubscribe on a
//! client's behalf; disconnect a client (kick) or discard its session; delete a retained
//! message; publish as the broker.
//!
//! Listings are snapshots: the registry lock is held only to copy the session handles, then each
//! session is read under its own lock, one at a time, so that a listing never holds up routing
//! or connections for longer than one session takes to read. What a connection is (address,
//! listener, protocol version...) is kept with its [`Link`](crate::session::Link) to the session
//! while it is attached, in one small allocation ([`LinkInfo`]), and nowhere in the
//! per-connection state machine.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tern_codec::{
    ByteString, ProtocolVersion, SubscriptionOptions, is_valid_topic_filter, is_valid_topic_name,
    split_shared,
};

use crate::ListenerPolicy;
use crate::broker::{Broker, Routed};
use crate::message::Message;
use crate::session::Session;

/// What the broker keeps about the connection attached to a session, for the admin API.
pub(crate) struct LinkInfo {
    pub(crate) remote_addr: Option<SocketAddr>,
    /// The listener it came through.
    pub(crate) listener: Arc<ListenerPolicy>,
    pub(crate) protocol: ProtocolVersion,
    /// The keep-alive in force, in seconds (0: none).
    pub(crate) keep_alive: u16,
    pub(crate) clean_start: bool,
    /// When it connected ([`Broker::compact_instant`]: 8 bytes rather than 16, which keeps
    /// this allocation in the next smaller size class).
    pub(crate) connected_at: u64,
    /// Set when an administrator disconnects the client: the connection sends DISCONNECT 0x98
    /// (MQTT 5) and closes, as for any server-side close (its will is published).
    pub(crate) kicked: bool,
}

/// A session, with its connection if one is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The client id.
    pub client_id: ByteString,
    /// The user name of its (last) connection.
    pub username: Option<ByteString>,
    /// The connection attached now, if any.
    pub connection: Option<ClientConnection>,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// When its last connection went away (`None` while connected).
    pub disconnected_at: Option<Instant>,
    /// Number of subscriptions.
    pub subscriptions: usize,
    /// Deliveries queued, not yet sent.
    pub queued: usize,
    /// Bytes they account for (payload and topic).
    pub queued_bytes: usize,
    /// Deliveries sent and not yet acknowledged.
    pub inflight: usize,
    /// Incoming QoS 2 messages awaiting PUBREL.
    pub awaiting_rel: usize,
    /// Whether the store keeps it.
    pub durable: bool,
    /// The mount point of the listener its (last) connection came through.
    pub mount_point: Option<ByteString>,
}

/// The connection attached to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConnection {
    /// The client's address (`None` for a Unix socket's client).
    pub remote_addr: Option<SocketAddr>,
    /// The name of the listener it came through.
    pub listener: Option<ByteString>,
    /// Its protocol version.
    pub protocol: ProtocolVersion,
    /// The keep-alive in force, in seconds (0: none).
    pub keep_alive: u16,
    /// Clean Start (3.x: Clean Session) of its CONNECT.
    pub clean_start: bool,
    /// When it connected.
    pub connected_at: Instant,
}

/// One subscription of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The session's client id.
    pub client_id: ByteString,
    /// The filter as subscribed (`$share/group/filter` for a shared subscription).
    pub filter: ByteString,
    /// The filter proper (without `$share/group/`).
    pub topic: ByteString,
    /// The share name of a shared subscription.
    pub share_group: Option<ByteString>,
    /// QoS, No Local, Retain As Published, Retain Handling.
    pub options: SubscriptionOptions,
    /// Its Subscription Identifier.
    pub identifier: Option<u32>,
}

/// A route: a filter some session subscribes to, and how many subscriptions use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The filter (shared subscriptions count under their filter proper).
    pub topic: ByteString,
    /// Subscriptions with this filter.
    pub subscribers: usize,
}

/// What [`Broker::admin_disconnect`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDisconnect {
    /// There is no such session.
    NoSession,
    /// The session has no connection; nothing was done (a kick) or the session ended (a
    /// discard).
    NotConnected,
    /// The connection was told to close; with a discard, the session ends with it.
    Disconnecting,
}

/// Why the broker refused an administrator's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// No session has this client id.
    NoSession,
    /// A topic or filter that is not valid here; the message says why.
    Invalid(String),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSession => f.write_str("no session has this client id"),
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for AdminError {}

fn describe(broker: &Broker, session: &Session) -> Option<SessionInfo> {
    let st = session.lock();
    if st.ended {
        return None;
    }
    Some(SessionInfo {
        client_id: session.client_id.clone(),
        username: st.username.clone(),
        connection: st.link().map(|link| {
            let info = &link.info;
            ClientConnection {
                remote_addr: info.remote_addr,
                listener: info.listener.name.clone(),
                protocol: info.protocol,
                keep_alive: info.keep_alive,
                clean_start: info.clean_start,
                connected_at: broker.instant_of(info.connected_at),
            }
        }),
        expiry_interval: st.expiry_interval,
        disconnected_at: st.disconnected_at(),
        subscriptions: st.subscriptions.len(),
        queued: st.queue.len(),
        queued_bytes: st.queued_bytes,
        inflight: st.inflight.len(),
        awaiting_rel: st.incoming_qos2.len(),
        durable: st.durable,
        mount_point: st.mount_point.as_deref().cloned(),
    })
}

fn subscriptions_of(session: &Session, out: &mut Vec<SubscriptionInfo>) {
    let st = session.lock();
    if st.ended {
        return;
    }
    for (key, record) in &st.subscriptions {
        let (share_group, topic) = match split_shared(key) {
            Some(Ok((share, filter))) => (Some(ByteString::from(share)), ByteString::from(filter)),
            _ => (None, key.clone()),
        };
        out.push(SubscriptionInfo {
            client_id: session.client_id.clone(),
            filter: key.clone(),
            topic,
            share_group,
            options: record.options,
            identifier: record.identifier,
        });
    }
}

impl Broker {
    /// Every session, connected or not, sorted by client id.
    #[must_use]
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self
            .session_handles()
            .iter()
            .filter_map(|s| describe(self, s))
            .collect();
        all.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
        all
    }

    /// The session of `client_id`.
    #[must_use]
    pub fn session(&self, client_id: &str) -> Option<SessionInfo> {
        describe(self, &*self.session_handle(client_id)?)
    }

    /// The subscriptions of `client_id`'s session, sorted by filter; `None` if there is no
    /// such session.
    #[must_use]
    pub fn client_subscriptions(&self, client_id: &str) -> Option<Vec<SubscriptionInfo>> {
        let session = self.session_handle(client_id)?;
        let mut out = Vec::new();
        subscriptions_of(&session, &mut out);
        out.sort_unstable_by(|a, b| a.filter.cmp(&b.filter));
        Some(out)
    }

    /// Every subscription of every session, sorted by client id, then filter.
    #[must_use]
    pub fn all_subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut out = Vec::new();
        for session in self.session_handles() {
            subscriptions_of(&session, &mut out);
        }
        out.sort_unstable_by(|a, b| (&a.client_id, &a.filter).cmp(&(&b.client_id, &b.filter)));
        out
    }

    /// The routes: every filter subscribed to, with the number of subscriptions using it,
    /// sorted by filter.
    #[must_use]
    pub fn routes(&self) -> Vec<RouteInfo> {
        let mut counts: BTreeMap<ByteString, usize> = BTreeMap::new();
        for sub in self.all_subscriptions() {
            *counts.entry(sub.topic).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(topic, subscribers)| RouteInfo { topic, subscribers })
            .collect()
    }

    /// Checks a filter an administrator gives as the broker would check it in a SUBSCRIBE.
    fn check_filter(&self, filter: &str) -> Result<(), AdminError> {
        let cfg = self.config();
        if !is_valid_topic_filter(filter) {
            return Err(AdminError::Invalid(format!(
                "`{filter}` is not a valid topic filter"
            )));
        }
        if filter.split('/').count() > cfg.max_topic_levels || filter.len() > cfg.max_topic_length {
            return Err(AdminError::Invalid(format!(
                "`{filter}` is longer than max_topic_levels or max_topic_length allow"
            )));
        }
        Ok(())
    }

    /// Subscribes `client_id`'s session to `filter` as a SUBSCRIBE from its client would
    /// (QoS capped by `max_qos`; retained messages sent as its Retain Handling says, none for
    /// a shared subscription; written to the store when the session is durable). No access
    /// rule is checked: an administrator may; the read check on every delivery still applies.
    /// The filter is as the broker sees topics, a listener's mount point included. Returns
    /// whether the session already had this filter.
    ///
    /// # Errors
    /// No such session, an invalid filter, No Local on a shared subscription, or the
    /// session's `max_subscriptions` reached.
    pub fn admin_subscribe(
        &self,
        client_id: &str,
        filter: &str,
        mut options: SubscriptionOptions,
        now: Instant,
    ) -> Result<bool, AdminError> {
        self.check_filter(filter)?;
        let shared = split_shared(filter).is_some();
        if shared && options.no_local {
            return Err(AdminError::Invalid(
                "No Local is not allowed on a shared subscription".to_owned(),
            ));
        }
        let session = self
            .session_handle(client_id)
            .ok_or(AdminError::NoSession)?;
        let key = ByteString::from(filter);
        let cfg = self.config();
        if cfg.max_subscriptions > 0 {
            let st = session.lock();
            if !st.subscriptions.contains_key(&key)
                && st.subscriptions.len() >= cfg.max_subscriptions
            {
                return Err(AdminError::Invalid(format!(
                    "the session already has max_subscriptions ({}) subscriptions",
                    cfg.max_subscriptions
                )));
            }
        }
        options.qos = options.qos.min(cfg.max_qos);
        let existed = self
            .subscribe(&session, &key, options, None)
            .ok_or(AdminError::NoSession)?;
        if !shared && Broker::wants_retained(options, existed) {
            self.send_retained(&session, filter, options, None, now);
        }
        Ok(existed)
    }

    /// Removes the subscription `filter` of `client_id`'s session, as an UNSUBSCRIBE would;
    /// returns whether it existed.
    ///
    /// # Errors
    /// No such session.
    pub fn admin_unsubscribe(
        &self,
        client_id: &str,
        filter: &str,
        now: Instant,
    ) -> Result<bool, AdminError> {
        let session = self
            .session_handle(client_id)
            .ok_or(AdminError::NoSession)?;
        Ok(self.unsubscribe(&session, &ByteString::from(filter), now))
    }

    /// Disconnects the client of `client_id` as an administrator (a kick): an MQTT 5 client
    /// gets DISCONNECT 0x98 (Administrative action), a 3.x client's connection is closed; its
    /// will is published as for any close by the server. With `discard`, its session ends
    /// too: at once if no connection is attached, else when the connection has closed (its
    /// expiry is set to 0); without, the session then follows its expiry interval.
    pub fn admin_disconnect(
        &self,
        client_id: &str,
        discard: bool,
        now: Instant,
    ) -> AdminDisconnect {
        self.disconnect_by_admin(client_id, discard, now)
    }

    /// The retained messages whose topic matches `filter`, sorted by topic (expired ones
    /// left out).
    ///
    /// # Errors
    /// An invalid or shared filter.
    pub fn retained_messages(
        &self,
        filter: &str,
        now: Instant,
    ) -> Result<Vec<Arc<Message>>, AdminError> {
        self.check_filter(filter)?;
        if split_shared(filter).is_some() {
            return Err(AdminError::Invalid(
                "a shared subscription filter does not select retained messages".to_owned(),
            ));
        }
        let mut out = Vec::new();
        self.with_retained(|r| r.for_each_match(filter, now, |m| out.push(m.clone())));
        out.sort_unstable_by(|a, b| a.topic.cmp(&b.topic));
        Ok(out)
    }

    /// The retained message of exactly `topic`, unless expired.
    #[must_use]
    pub fn retained_message(&self, topic: &str, now: Instant) -> Option<Arc<Message>> {
        if !is_valid_topic_name(topic) {
            return None;
        }
        let mut found = None;
        // A topic name is a filter without wildcards that matches only itself.
        self.with_retained(|r| r.for_each_match(topic, now, |m| found = Some(m.clone())));
        found
    }

    /// Deletes the retained message of `topic` (from the store too); whether there was one.
    pub fn delete_retained(&self, topic: &str) -> bool {
        is_valid_topic_name(topic) && self.remove_retained(&ByteString::from(topic))
    }

    /// Publishes `message` as the broker (no publisher client id), after the checks a PUBLISH
    /// from a client gets: a valid topic name outside `$SYS`, its length and levels, the
    /// maximum QoS, retained messages available.
    ///
    /// # Errors
    /// What is wrong with the message.
    pub fn admin_publish(&self, mut message: Message, now: Instant) -> Result<Routed, AdminError> {
        let cfg = self.config();
        let topic = &message.topic;
        if !is_valid_topic_name(topic) {
            return Err(AdminError::Invalid(format!(
                "`{topic}` is not a valid topic name"
            )));
        }
        if topic.starts_with('$') {
            return Err(AdminError::Invalid(format!(
                "`{topic}`: topics starting with `$` are the broker's own"
            )));
        }
        if topic.split('/').count() > cfg.max_topic_levels || topic.len() > cfg.max_topic_length {
            return Err(AdminError::Invalid(format!(
                "`{topic}` is longer than max_topic_levels or max_topic_length allow"
            )));
        }
        if message.qos > cfg.max_qos {
            return Err(AdminError::Invalid(format!(
                "QoS {} is above the broker's maximum QoS {}",
                message.qos as u8, cfg.max_qos as u8
            )));
        }
        if message.retain && !cfg.retain_available {
            return Err(AdminError::Invalid(
                "retained messages are not available (retain_available = false)".to_owned(),
            ));
        }
        message.publisher = None;
        Ok(self.publish(Arc::new(message), now))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{BrokerConfig, Connection, ConnectionInfo, Wake};
    use bytes::{Bytes, BytesMut};
    use tern_codec::QoS;
    use tern_codec::{
        Connect, ConnectProperties, Decoder, Packet, PacketId, PublishProperties, ReasonCode,
        RetainHandling, Subscribe, SubscribeProperties,
    };

    fn connect_packet(version: ProtocolVersion, id: &str, expiry: Option<u32>) -> Connect {
        Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 30,
            properties: ConnectProperties {
                session_expiry_interval: expiry,
                ..ConnectProperties::default()
            },
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    struct Nop;
    impl Wake for Nop {
        fn wake(&self) {}
    }

    fn connect(broker: &Broker, id: &str, version: ProtocolVersion, now: Instant) -> Connection {
        let info = ConnectionInfo {
            remote_addr: Some("127.0.0.1:5000".parse().unwrap()),
            policy: Arc::new(ListenerPolicy {
                name: Some("127.0.0.1:1883".into()),
                ..ListenerPolicy::default()
            }),
            certificate_username: None,
        };
        let mut c = Connection::new(broker.clone(), info, Arc::new(Nop), now);
        let connect = connect_packet(version, id, None);
        c.handle_packet(Packet::Connect(Box::new(connect)), now);
        assert!(c.is_connected());
        c
    }

    fn drain(c: &mut Connection, version: ProtocolVersion, now: Instant) -> Vec<Packet> {
        let mut out = BytesMut::new();
        while c.poll_transmit(now, &mut out, 1 << 20) {}
        let mut decoder = Decoder::with_version(version, u32::MAX);
        let mut packets = Vec::new();
        while let Some(p) = decoder.decode(&mut out).unwrap() {
            packets.push(p);
        }
        packets
    }

    fn message(topic: &str, payload: &'static str, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: Some("someone".into()),
        }
    }

    #[test]
    fn the_state_machine_stays_the_same_size() {
        // Connection info for the admin API lives with the session's link (boxed), not in the
        // state machine: 328 bytes before the admin API and after.
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 336, "Connection is {size} bytes");
        assert_eq!(std::mem::size_of::<crate::session::Link>(), 32);
    }

    #[test]
    fn what_an_idle_connection_keeps_stays_small() {
        // 56 bytes requested keeps the box in a 64-byte allocator chunk (an `Instant` for
        // `connected_at` made it 64, in 80).
        let link_info = std::mem::size_of::<LinkInfo>();
        assert!(link_info <= 56, "LinkInfo is {link_info} bytes");
        // The registry holds a pointer per session, not a copy of its client id too.
        assert_eq!(std::mem::size_of::<crate::session::Registered>(), 8);
    }

    #[test]
    fn connected_at_is_kept_exactly() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now() + std::time::Duration::from_nanos(123_456_789);
        let _c = connect(&broker, "a", ProtocolVersion::V5, now);
        let conn = broker.session("a").unwrap().connection.unwrap();
        assert_eq!(conn.connected_at, now);
    }

    #[test]
    fn the_session_does_not_keep_the_connect_buffer_alive() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now();
        // As the decoder hands them over: slices of the buffer the packet was read into.
        let buffer = Bytes::from(b"client-1user-1will/topicwill payload".to_vec());
        let inside = |p: *const u8| buffer.as_ptr_range().contains(&p);
        let mut connect = connect_packet(ProtocolVersion::V311, "", None);
        connect.clean_start = false;
        connect.client_id = ByteString::try_from(buffer.slice(0..8)).unwrap();
        connect.username = Some(ByteString::try_from(buffer.slice(8..14)).unwrap());
        connect.will = Some(tern_codec::LastWill {
            topic: ByteString::try_from(buffer.slice(14..24)).unwrap(),
            payload: buffer.slice(24..),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: tern_codec::WillProperties::default(),
        });
        let mut c = Connection::new(
            broker.clone(),
            ConnectionInfo::default(),
            Arc::new(Nop),
            now,
        );
        c.handle_packet(Packet::Connect(Box::new(connect)), now);
        assert!(c.is_connected());
        assert_eq!(c.client_id(), "client-1");
        assert!(!inside(c.client_id().as_ptr()));
        assert!(!inside(c.username().unwrap().as_ptr()));
        let session = broker.session_handle("client-1").unwrap();
        assert!(!inside(session.client_id.as_ptr()));
        let st = session.lock();
        assert_eq!(st.username.as_deref(), Some("user-1"));
        assert!(!inside(st.username.as_ref().unwrap().as_ptr()));
        let will = st.will.as_ref().unwrap();
        assert_eq!(&*will.topic, "will/topic");
        assert_eq!(&will.payload[..], b"will payload");
        assert!(!inside(will.topic.as_ptr()));
        assert!(!inside(will.payload.as_ptr()));
        drop(st);
        // Nothing else holds a handle on the buffer: the connection and the session let go.
        assert!(buffer.is_unique());
    }

    #[test]
    fn sessions_show_their_connection_and_counts() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now();
        let mut a = connect(&broker, "a", ProtocolVersion::V5, now);
        let _ = drain(&mut a, ProtocolVersion::V5, now);
        let sub = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: SubscribeProperties::default(),
            filters: vec![
                (
                    "x/+".into(),
                    SubscriptionOptions::with_qos(QoS::AtLeastOnce),
                ),
                (
                    "$share/g/y".into(),
                    SubscriptionOptions::with_qos(QoS::AtMostOnce),
                ),
            ],
        };
        a.handle_packet(Packet::Subscribe(sub), now);
        let _ = connect(&broker, "b", ProtocolVersion::V311, now);

        let all = broker.sessions();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].client_id, "a");
        assert_eq!(all[0].subscriptions, 2);
        let conn = all[0].connection.clone().unwrap();
        assert_eq!(conn.protocol, ProtocolVersion::V5);
        assert_eq!(conn.keep_alive, 30);
        assert_eq!(conn.listener.as_deref(), Some("127.0.0.1:1883"));
        assert_eq!(conn.remote_addr, Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(all[1].client_id, "b");

        let subs = broker.client_subscriptions("a").unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].filter, "$share/g/y");
        assert_eq!(subs[0].share_group.as_deref(), Some("g"));
        assert_eq!(subs[0].topic, "y");
        assert!(broker.client_subscriptions("nobody").is_none());
        let routes = broker.routes();
        assert_eq!(
            routes,
            vec![
                RouteInfo {
                    topic: "x/+".into(),
                    subscribers: 1
                },
                RouteInfo {
                    topic: "y".into(),
                    subscribers: 1
                }
            ]
        );
    }

    #[test]
    fn kick_sends_administrative_action_and_the_session_stays() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now();
        let connect5 = connect_packet(ProtocolVersion::V5, "k", Some(60));
        let mut c = Connection::new(
            broker.clone(),
            ConnectionInfo::default(),
            Arc::new(Nop),
            now,
        );
        c.handle_packet(Packet::Connect(Box::new(connect5)), now);
        let _ = drain(&mut c, ProtocolVersion::V5, now);

        assert_eq!(
            broker.admin_disconnect("nobody", false, now),
            AdminDisconnect::NoSession
        );
        assert_eq!(
            broker.admin_disconnect("k", false, now),
            AdminDisconnect::Disconnecting
        );
        let packets = drain(&mut c, ProtocolVersion::V5, now);
        assert!(
            matches!(&packets[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::ADMINISTRATIVE_ACTION),
            "{packets:?}"
        );
        assert!(c.is_closing());
        let s = broker.session("k").unwrap();
        assert!(s.connection.is_none());
        assert_eq!(broker.connected_count(), 0);
        // Not connected any more: a kick does nothing, a discard ends the session.
        assert_eq!(
            broker.admin_disconnect("k", false, now),
            AdminDisconnect::NotConnected
        );
        assert_eq!(
            broker.admin_disconnect("k", true, now),
            AdminDisconnect::NotConnected
        );
        assert!(broker.session("k").is_none());
    }

    #[test]
    fn discarding_a_connected_session_ends_it_with_the_connection() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now();
        let mut c = connect(&broker, "d", ProtocolVersion::V311, now);
        let _ = drain(&mut c, ProtocolVersion::V311, now);
        assert_eq!(
            broker.admin_disconnect("d", true, now),
            AdminDisconnect::Disconnecting
        );
        // 3.x: no DISCONNECT from the server, the connection just closes.
        assert!(drain(&mut c, ProtocolVersion::V311, now).is_empty());
        assert!(c.is_closing());
        assert!(broker.session("d").is_none());
    }

    #[test]
    fn subscribe_on_behalf_delivers_retained_and_new_messages() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now();
        let _ = broker
            .admin_publish(message("r/1", "kept", true), now)
            .unwrap();
        let mut c = connect(&broker, "s", ProtocolVersion::V5, now);
        let _ = drain(&mut c, ProtocolVersion::V5, now);
        let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
        assert_eq!(broker.admin_subscribe("s", "r/#", options, now), Ok(false));
        let packets = drain(&mut c, ProtocolVersion::V5, now);
        assert!(
            matches!(&packets[..], [Packet::Publish(p)] if p.topic == "r/1" && p.retain),
            "{packets:?}"
        );
        // Retain Handling 2: no retained messages.
        let mut no_retained = options;
        no_retained.retain_handling = RetainHandling::DoNotSend;
        assert_eq!(
            broker.admin_subscribe("s", "r/1", no_retained, now),
            Ok(false)
        );
        assert!(drain(&mut c, ProtocolVersion::V5, now).is_empty());
        assert_eq!(
            broker.admin_subscribe("nobody", "r/#", options, now),
            Err(AdminError::NoSession)
        );
        assert!(matches!(
            broker.admin_subscribe("s", "r/#/x", options, now),
            Err(AdminError::Invalid(_))
        ));
        assert_eq!(broker.admin_unsubscribe("s", "r/1", now), Ok(true));
        assert_eq!(broker.admin_unsubscribe("s", "r/1", now), Ok(false));
    }

    #[test]
    fn retained_browse_read_delete() {
        let broker = Broker::new(BrokerConfig::default());
        let now = Instant::now();
        for t in ["a/1", "a/2", "b"] {
            let _ = broker.admin_publish(message(t, "x", true), now).unwrap();
        }
        let topics = |f: &str| -> Vec<String> {
            broker
                .retained_messages(f, now)
                .unwrap()
                .iter()
                .map(|m| m.topic.to_string())
                .collect()
        };
        assert_eq!(topics("#"), ["a/1", "a/2", "b"]);
        assert_eq!(topics("a/+"), ["a/1", "a/2"]);
        assert!(broker.retained_messages("a/#/b", now).is_err());
        assert!(broker.retained_messages("$share/g/a", now).is_err());
        let m = broker.retained_message("a/1", now).unwrap();
        assert_eq!(m.publisher, None);
        assert!(broker.retained_message("a/+", now).is_none());
        assert!(broker.delete_retained("a/1"));
        assert!(!broker.delete_retained("a/1"));
        assert!(broker.retained_message("a/1", now).is_none());
        assert_eq!(topics("#"), ["a/2", "b"]);
        assert!(
            broker
                .admin_publish(message("$SYS/x", "x", false), now)
                .is_err()
        );
        assert!(
            broker
                .admin_publish(message("a/+", "x", false), now)
                .is_err()
        );
    }
}
