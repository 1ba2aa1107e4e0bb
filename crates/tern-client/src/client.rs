//! The client: one connection, driven by its owner.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use tern_codec::{
    Ack, ByteString, ConnAck, Decoder, Disconnect, Packet, PacketId, ProtocolVersion, Publish,
    PublishView, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties, SubscriptionOptions,
    UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::tls::Stream;
use tokio::time::Instant;

use crate::{ClientError, ConnectOptions};

/// Write-buffer size above which [`Client::send_publish`] flushes even in batch mode.
const FLUSH_AT: usize = 64 * 1024;

/// Something the broker sent that the caller should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An application message, already acknowledged as its QoS requires, or, with
    /// [`ConnectOptions::manual_acks`], waiting for the caller's [`Client::ack`] when it is
    /// QoS 1/2.
    Message(Publish),
    /// An outgoing QoS 1/2 message is complete: PUBACK, PUBCOMP, or a failed PUBREC.
    Acked {
        /// Its packet identifier.
        packet_id: PacketId,
        /// The broker's reason code (always success on MQTT 3.x).
        reason: ReasonCode,
    },
    /// The answer to a SUBSCRIBE.
    SubAck(SubAck),
    /// The answer to an UNSUBSCRIBE.
    UnsubAck(UnsubAck),
}

/// Where an outgoing QoS 1/2 message stands: which packet it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the packets of the specification
enum Awaiting {
    PubAck,
    PubRec,
    PubComp,
}

/// What a client must remember between connections of a persistent session (MQTT §4.1): the
/// incoming QoS 2 identifiers it has answered with PUBREC, the incoming messages handed over
/// and not yet acknowledged by the caller ([`ConnectOptions::manual_acks`]), and its own
/// unacknowledged QoS 1/2 messages. Taken with [`Client::session_state`] and given back to
/// [`Client::resume`].
#[derive(Debug, Clone, Default)]
pub struct SessionState {
    incoming_qos2: HashSet<u16>,
    /// Incoming QoS 1/2 messages delivered to the caller and not yet acknowledged.
    pending_acks: HashMap<u16, QoS>,
    /// Outgoing messages in send order: the PUBLISH to re-send, or `None` once PUBREL is due.
    outgoing: Vec<(PacketId, Option<Publish>)>,
    next_packet_id: u16,
}

impl SessionState {
    /// How many outgoing QoS 1/2 messages are not yet complete.
    #[must_use]
    pub fn unacknowledged(&self) -> usize {
        self.outgoing.len()
    }

    /// The incoming QoS 1/2 messages delivered to the caller and not yet acknowledged with
    /// [`Client::ack`] ([`ConnectOptions::manual_acks`]), by packet identifier, in no order.
    #[must_use]
    pub fn pending_acks(&self) -> Vec<PacketId> {
        self.pending_acks
            .keys()
            .filter_map(|id| PacketId::new(*id))
            .collect()
    }

    /// Forgets the incoming messages the caller has not acknowledged, so that the broker's
    /// re-sends of them after [`Client::resume`] are delivered again (as new [`Event::Message`]s)
    /// instead of waiting for an [`Client::ack`] of the copy the caller had. For a caller that
    /// lost those messages; one that still holds them acknowledges them on the resumed client
    /// instead, which keeps QoS 2 exactly once.
    pub fn redeliver_pending(&mut self) {
        self.pending_acks.clear();
    }
}

/// One MQTT connection.
pub struct Client {
    stream: Stream,
    version: ProtocolVersion,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Flush after every call that queues a packet (the default), or only when asked or when
    /// the buffer is large (for load generation).
    pub auto_flush: bool,
    next_packet_id: u16,
    inflight: HashMap<u16, Awaiting>,
    /// Outgoing QoS 1/2 messages sent with [`Client::send_publish`], in send order, kept for
    /// re-sending after a reconnection.
    unacked: Vec<(PacketId, Publish)>,
    /// The broker's Receive Maximum.
    send_window: usize,
    /// The broker's Maximum Packet Size.
    max_packet_size: u32,
    incoming_qos2: HashSet<u16>,
    /// Whether incoming QoS 1/2 messages wait for [`Client::ack`].
    manual_acks: bool,
    /// Incoming QoS 1/2 messages delivered and not yet acknowledged by the caller.
    pending_acks: HashMap<u16, QoS>,
    inbound_aliases: HashMap<u16, ByteString>,
    events: VecDeque<Event>,
    /// An error met while events were still queued, returned once they are taken.
    failed: Option<ClientError>,
    keep_alive: Option<Duration>,
    last_sent: Instant,
    ping_outstanding: bool,
    /// Fires when a PINGREQ may be due: kept from one wait to the next (a timer made for every
    /// wait cost more than reading a message), and moved on, when it fires early, to the
    /// keep-alive after the last send.
    ping_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    connack: ConnAck,
}

impl Client {
    /// Connects, sends CONNECT and waits for a successful CONNACK.
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClientError> {
        let timeout = options.connect_timeout;
        tokio::time::timeout(timeout, Self::connect_inner(options))
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn connect_inner(options: &ConnectOptions) -> Result<Self, ClientError> {
        let tcp = open(options).await?;
        tcp.set_nodelay(true)?;
        let stream = match &options.tls {
            #[cfg(target_os = "linux")]
            None if options.receive_timestamps => {
                Stream::Stamped(Box::new(crate::stamped::StampedTcp::new(tcp)?))
            }
            None => Stream::Tcp(tcp),
            Some(tls) => Stream::tls(tcp, tls, &options.host).await?,
        };
        Self::handshake(stream, options).await
    }

    /// Sends CONNECT over an already connected stream (an in-process pipe such as
    /// [`tokio::io::duplex`], a Unix socket, a stream the caller secured itself...) and waits
    /// for a successful CONNACK, within [`ConnectOptions::connect_timeout`]. The host, port,
    /// local address and TLS settings of `options` are not used.
    pub async fn connect_stream<S>(stream: S, options: &ConnectOptions) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let timeout = options.connect_timeout;
        tokio::time::timeout(
            timeout,
            Self::handshake(Stream::Other(Box::new(stream)), options),
        )
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
    }

    async fn handshake(stream: Stream, options: &ConnectOptions) -> Result<Self, ClientError> {
        let mut client = Self {
            stream,
            version: options.version,
            decoder: Decoder::with_version(options.version, tern_codec::MAX_PACKET_SIZE),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(4096),
            auto_flush: true,
            next_packet_id: 1,
            inflight: HashMap::new(),
            unacked: Vec::new(),
            send_window: usize::from(u16::MAX),
            max_packet_size: u32::MAX,
            incoming_qos2: HashSet::new(),
            manual_acks: options.manual_acks,
            pending_acks: HashMap::new(),
            inbound_aliases: HashMap::new(),
            events: VecDeque::new(),
            failed: None,
            keep_alive: None,
            last_sent: Instant::now(),
            ping_timer: None,
            ping_outstanding: false,
            connack: ConnAck::default(),
        };
        client.queue(&Packet::Connect(Box::new(options.connect_packet())))?;
        client.flush().await?;
        let connack = match client.read_packet().await? {
            Packet::ConnAck(ack) => ack,
            _ => return Err(ClientError::Protocol("expected CONNACK")),
        };
        if connack.reason.is_error() {
            return Err(ClientError::Refused(connack.reason));
        }
        let p = &connack.properties;
        if let Some(max) = p.receive_maximum {
            client.send_window = usize::from(max);
        }
        client.max_packet_size = p.maximum_packet_size.unwrap_or(u32::MAX);
        let keep_alive = p.server_keep_alive.unwrap_or(options.keep_alive);
        client.keep_alive = (keep_alive > 0).then(|| Duration::from_secs(u64::from(keep_alive)));
        client.connack = connack;
        Ok(client)
    }

    /// Connects with Clean Start off and, if the broker still has the session, carries on
    /// from `state`: incoming QoS 2 identifiers are still recognised, and unacknowledged
    /// messages are re-sent with DUP and their identifiers, PUBREL where PUBREC came
    /// (MQTT-4.4.0-1). Without a session on the broker the state is dropped (MQTT-3.2.2-5).
    ///
    /// With [`ConnectOptions::manual_acks`], the messages the caller received and had not
    /// acknowledged ([`SessionState::pending_acks`]) are acknowledged on the new client with
    /// [`Client::ack`]; the broker's re-sends of them are not delivered a second time (see
    /// [`SessionState::redeliver_pending`] for a caller that lost them). Without a session on
    /// the broker, such acknowledgements are ignored.
    pub async fn resume(
        options: &ConnectOptions,
        state: SessionState,
    ) -> Result<Self, ClientError> {
        let mut options = options.clone();
        options.clean_start = false;
        Self::connect(&options).await?.carry_on(state).await
    }

    /// [`Client::resume`] over an already connected stream (see [`Client::connect_stream`]).
    pub async fn resume_stream<S>(
        stream: S,
        options: &ConnectOptions,
        state: SessionState,
    ) -> Result<Self, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut options = options.clone();
        options.clean_start = false;
        Self::connect_stream(stream, &options)
            .await?
            .carry_on(state)
            .await
    }

    /// Takes over `state` when the broker kept the session.
    async fn carry_on(self, state: SessionState) -> Result<Self, ClientError> {
        let mut client = self;
        if !client.connack.session_present {
            return Ok(client);
        }
        client.incoming_qos2 = state.incoming_qos2;
        client.pending_acks = state.pending_acks;
        client.next_packet_id = state.next_packet_id.max(1);
        for (id, publish) in state.outgoing {
            match publish {
                Some(mut publish) => {
                    publish.dup = true;
                    publish.packet_id = Some(id);
                    let awaiting = if publish.qos == QoS::AtLeastOnce {
                        Awaiting::PubAck
                    } else {
                        Awaiting::PubRec
                    };
                    client.inflight.insert(id.get(), awaiting);
                    client.queue(&Packet::Publish(publish.clone()))?;
                    client.unacked.push((id, publish));
                }
                None => {
                    client.inflight.insert(id.get(), Awaiting::PubComp);
                    client.queue(&Packet::PubRel(Ack::new(id)))?;
                }
            }
        }
        client.flush().await?;
        Ok(client)
    }

    /// What to carry over to the next connection of this session (see [`Client::resume`]).
    /// Messages sent with [`Client::send_publish_view`] are not kept and cannot be re-sent.
    #[must_use]
    pub fn session_state(&self) -> SessionState {
        let mut outgoing: Vec<(PacketId, Option<Publish>)> = self
            .unacked
            .iter()
            .filter(|(id, _)| self.inflight.get(&id.get()) != Some(&Awaiting::PubComp))
            .map(|(id, p)| (*id, Some(p.clone())))
            .collect();
        outgoing.extend(
            self.inflight
                .iter()
                .filter(|(_, a)| **a == Awaiting::PubComp)
                .filter_map(|(id, _)| PacketId::new(*id).map(|id| (id, None))),
        );
        SessionState {
            incoming_qos2: self.incoming_qos2.clone(),
            pending_acks: self.pending_acks.clone(),
            outgoing,
            next_packet_id: self.next_packet_id,
        }
    }

    /// When the last bytes read reached this machine, in nanoseconds since the Unix epoch, as
    /// the kernel saw them arrive (`CLOCK_REALTIME`): with
    /// [`ConnectOptions::receive_timestamps`], else `None`. Packets decoded from one read share
    /// the time of its last segment. `None` also for the first reads on a system where no
    /// socket asked for receive times before: the kernel turns them on a moment later.
    #[must_use]
    pub fn received_ns(&self) -> Option<u64> {
        match &self.stream {
            #[cfg(target_os = "linux")]
            Stream::Stamped(s) => s.received_ns(),
            _ => None,
        }
    }

    /// The CONNACK the broker accepted the connection with.
    #[must_use]
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// The protocol version in use.
    #[must_use]
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// How many outgoing QoS 1/2 messages are not yet acknowledged.
    #[must_use]
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Limits outgoing QoS 1/2 messages in flight below the broker's Receive Maximum.
    pub fn limit_inflight(&mut self, max: usize) {
        self.send_window = self.send_window.min(max.max(1));
    }

    /// Sends a PUBLISH, waiting first for room in the in-flight window if it is QoS 1/2.
    /// Returns the packet identifier given to it (QoS 1/2), whose completion is reported by an
    /// [`Event::Acked`].
    pub async fn send_publish(
        &mut self,
        publish: Publish,
    ) -> Result<Option<PacketId>, ClientError> {
        let id = self.send_publish_view(publish.view()).await?;
        if let Some(id) = id {
            self.unacked.push((
                id,
                Publish {
                    packet_id: Some(id),
                    ..publish
                },
            ));
        }
        Ok(id)
    }

    /// Like [`Client::send_publish`] for a borrowed message: the topic and payload are encoded
    /// straight into the write buffer, so a load generator allocates nothing per message. The
    /// view's packet identifier is ignored (the client allocates one for QoS 1/2).
    pub async fn send_publish_view(
        &mut self,
        mut view: PublishView<'_>,
    ) -> Result<Option<PacketId>, ClientError> {
        let packet_id = if view.qos == QoS::AtMostOnce {
            None
        } else {
            while self.inflight.len() >= self.send_window {
                self.flush().await?;
                self.pump().await?;
            }
            Some(self.allocate_packet_id())
        };
        view.packet_id = packet_id;
        view.encode(self.version, self.max_packet_size, &mut self.wbuf)?;
        if let Some(id) = packet_id {
            let awaiting = if view.qos == QoS::AtLeastOnce {
                Awaiting::PubAck
            } else {
                Awaiting::PubRec
            };
            self.inflight.insert(id.get(), awaiting);
        }
        if self.auto_flush || self.wbuf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(packet_id)
    }

    /// Publishes and waits until the QoS flow is complete; returns the broker's reason code
    /// (success for QoS 0 once written).
    pub async fn publish(&mut self, publish: Publish) -> Result<ReasonCode, ClientError> {
        let Some(id) = self.send_publish(publish).await? else {
            self.flush().await?;
            return Ok(ReasonCode::SUCCESS);
        };
        self.flush().await?;
        loop {
            if let Some(pos) = self
                .events
                .iter()
                .position(|e| matches!(e, Event::Acked { packet_id, .. } if *packet_id == id))
                && let Some(Event::Acked { reason, .. }) = self.events.remove(pos)
            {
                return Ok(reason);
            }
            self.pump().await?;
        }
    }

    /// Subscribes to `filters` and waits for the SUBACK; returns its reason codes in order.
    pub async fn subscribe(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
        identifier: Option<u32>,
    ) -> Result<Vec<ReasonCode>, ClientError> {
        let properties = SubscribeProperties {
            subscription_identifier: identifier,
            ..Default::default()
        };
        Ok(self.subscribe_with(filters, properties).await?.reasons)
    }

    /// Subscribes to `filters` with the given SUBSCRIBE properties (MQTT 5; ignored on 3.x) and
    /// waits for the SUBACK, returned whole: its packet identifier, reason codes in order and
    /// properties.
    pub async fn subscribe_with(
        &mut self,
        filters: &[(&str, SubscriptionOptions)],
        properties: SubscribeProperties,
    ) -> Result<SubAck, ClientError> {
        let packet_id = self.allocate_packet_id();
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id,
            properties,
            filters: filters
                .iter()
                .map(|(f, o)| (ByteString::from(*f), *o))
                .collect(),
        }))?;
        self.flush().await?;
        loop {
            let found = self
                .events
                .iter()
                .position(|e| matches!(e, Event::SubAck(a) if a.packet_id == packet_id));
            if let Some(Event::SubAck(ack)) = found.and_then(|pos| self.events.remove(pos)) {
                return Ok(ack);
            }
            self.pump().await?;
        }
    }

    /// Unsubscribes and waits for the UNSUBACK; returns its reason codes (empty on 3.x).
    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Result<Vec<ReasonCode>, ClientError> {
        let packet_id = self.allocate_packet_id();
        self.queue(&Packet::Unsubscribe(Unsubscribe {
            packet_id,
            user_properties: Vec::new(),
            filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
        }))?;
        self.flush().await?;
        loop {
            let found = self
                .events
                .iter()
                .position(|e| matches!(e, Event::UnsubAck(a) if a.packet_id == packet_id));
            if let Some(Event::UnsubAck(ack)) = found.and_then(|pos| self.events.remove(pos)) {
                return Ok(ack.reasons);
            }
            self.pump().await?;
        }
    }

    /// The next event, sending PINGREQ when the keep-alive requires it.
    ///
    /// Events received before the connection failed are returned before the error, so a
    /// caller that stops at the first error loses nothing the broker delivered.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            if let Some(error) = self.failed.take() {
                return Err(error);
            }
            let result = match self.flush().await {
                Ok(()) => self.pump().await,
                Err(e) => Err(e),
            };
            if let Err(error) = result {
                if self.events.is_empty() {
                    return Err(error);
                }
                self.failed = Some(error);
            }
        }
    }

    /// The next event already received, without waiting or any I/O: lets a caller that is
    /// busy sending collect the acknowledgements that [`Client::send_publish`] read while it
    /// waited for room in the in-flight window.
    pub fn take_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Acknowledges a message received with [`ConnectOptions::manual_acks`]: PUBACK for QoS 1,
    /// PUBREC for QoS 2 (the PUBREL that follows is answered by the client). Returns `false`,
    /// sending nothing, when there is nothing to acknowledge under its packet identifier: a
    /// QoS 0 message, one acknowledged already, or one of a session the broker did not keep.
    /// Acknowledgements may be given in any order. Written at once unless
    /// [`Client::auto_flush`] is off.
    pub async fn ack(&mut self, publish: &Publish) -> Result<bool, ClientError> {
        match publish.packet_id {
            Some(id) if publish.qos != QoS::AtMostOnce => {
                self.ack_with(id, ReasonCode::SUCCESS).await
            }
            _ => Ok(false),
        }
    }

    /// Like [`Client::ack`] by packet identifier, with a reason code for MQTT 5 (dropped on
    /// 3.x). A QoS 2 message acknowledged with an error code (0x80 and above) ends there: the
    /// broker sends no PUBREL for it (MQTT 5 only).
    pub async fn ack_with(
        &mut self,
        packet_id: PacketId,
        reason: ReasonCode,
    ) -> Result<bool, ClientError> {
        let Some(qos) = self.pending_acks.remove(&packet_id.get()) else {
            return Ok(false);
        };
        let ack = Ack {
            reason: if self.version.is_v5() {
                reason
            } else {
                ReasonCode::SUCCESS
            },
            ..Ack::new(packet_id)
        };
        if qos == QoS::AtLeastOnce {
            self.queue(&Packet::PubAck(ack))?;
        } else {
            if !ack.reason.is_error() {
                self.incoming_qos2.insert(packet_id.get());
            }
            self.queue(&Packet::PubRec(ack))?;
        }
        if self.auto_flush || self.wbuf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(true)
    }

    /// How many incoming QoS 1/2 messages were delivered and wait for [`Client::ack`].
    #[must_use]
    pub fn pending_acks(&self) -> usize {
        self.pending_acks.len()
    }

    /// Waits until every outgoing QoS 1/2 message is acknowledged, keeping the other events.
    pub async fn wait_acknowledged(&mut self) -> Result<(), ClientError> {
        self.flush().await?;
        while !self.inflight.is_empty() {
            self.pump().await?;
        }
        Ok(())
    }

    /// Sends DISCONNECT (normal disconnection) and closes the connection.
    pub async fn disconnect(self) -> Result<(), ClientError> {
        self.disconnect_with(Disconnect::default()).await
    }

    /// Sends the given DISCONNECT and closes the connection.
    pub async fn disconnect_with(mut self, disconnect: Disconnect) -> Result<(), ClientError> {
        self.queue(&Packet::Disconnect(disconnect))?;
        self.flush().await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all_buf(&mut self.wbuf).await?;
            if !matches!(self.stream, Stream::Tcp(_)) {
                // TLS may keep encrypted records buffered when the socket was full; a
                // caller's stream may buffer too.
                self.stream.flush().await?;
            }
            self.last_sent = Instant::now();
        }
        Ok(())
    }

    fn queue(&mut self, packet: &Packet) -> Result<(), ClientError> {
        packet.encode_limited(self.version, self.max_packet_size, &mut self.wbuf)?;
        Ok(())
    }

    fn allocate_packet_id(&mut self) -> PacketId {
        loop {
            let id = PacketId::new(self.next_packet_id).unwrap_or(PacketId::MIN);
            self.next_packet_id = id.next().get();
            if !self.inflight.contains_key(&id.get()) {
                return id;
            }
        }
    }

    /// Reads at least one packet and handles it, with every other complete packet already
    /// buffered (so that the acknowledgements they call for go out in one write), or sends a
    /// PINGREQ when the keep-alive is due.
    async fn pump(&mut self) -> Result<(), ClientError> {
        // Answers queued by the last packet (PUBREL, PUBACK...) go out before waiting.
        self.flush().await?;
        loop {
            if self.handle_buffered()? {
                return Ok(());
            }
            let Some(keep_alive) = self.keep_alive else {
                if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                    return Err(ClientError::Closed(None));
                }
                continue;
            };
            let due = self.last_sent + keep_alive;
            let timer = self
                .ping_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            tokio::select! {
                read = self.stream.read_buf(&mut self.rbuf) => {
                    if read? == 0 {
                        return Err(ClientError::Closed(None));
                    }
                }
                () = timer.as_mut() => {
                    if Instant::now() < due {
                        // Something was sent since the timer was set.
                        timer.as_mut().reset(due);
                        continue;
                    }
                    if self.ping_outstanding {
                        return Err(ClientError::Timeout(keep_alive));
                    }
                    self.ping_outstanding = true;
                    self.queue(&Packet::PingReq)?;
                    self.flush().await?;
                    let next = self.last_sent + keep_alive;
                    if let Some(timer) = &mut self.ping_timer {
                        timer.as_mut().reset(next);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Handles every complete packet in the read buffer; `false` if there was none.
    fn handle_buffered(&mut self) -> Result<bool, ClientError> {
        let mut any = false;
        while let Some(packet) = self.decoder.decode(&mut self.rbuf)? {
            any = true;
            self.handle(packet)?;
        }
        Ok(any)
    }

    /// Reads one packet. Cancel safe: bytes read stay in the buffer.
    async fn read_packet(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(packet);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ClientError::Closed(None));
            }
        }
    }

    fn handle(&mut self, packet: Packet) -> Result<(), ClientError> {
        match packet {
            Packet::Publish(p) => self.handle_publish(p)?,
            Packet::PubAck(a) => self.complete(a.packet_id, Awaiting::PubAck, a.reason),
            Packet::PubRec(a) => {
                if self.inflight.get(&a.packet_id.get()) == Some(&Awaiting::PubRec) {
                    if a.reason.is_error() {
                        self.complete(a.packet_id, Awaiting::PubRec, a.reason);
                    } else {
                        self.inflight.insert(a.packet_id.get(), Awaiting::PubComp);
                        self.queue(&Packet::PubRel(Ack::new(a.packet_id)))?;
                    }
                }
            }
            Packet::PubComp(a) => self.complete(a.packet_id, Awaiting::PubComp, a.reason),
            Packet::PubRel(a) => {
                self.incoming_qos2.remove(&a.packet_id.get());
                self.queue(&Packet::PubComp(Ack::new(a.packet_id)))?;
            }
            Packet::SubAck(a) => self.events.push_back(Event::SubAck(a)),
            Packet::UnsubAck(a) => self.events.push_back(Event::UnsubAck(a)),
            Packet::PingResp => self.ping_outstanding = false,
            Packet::Disconnect(d) => return Err(ClientError::Closed(Some(d.reason))),
            _ => return Err(ClientError::Protocol("unexpected packet from the broker")),
        }
        Ok(())
    }

    fn complete(&mut self, packet_id: PacketId, awaiting: Awaiting, reason: ReasonCode) {
        if self.inflight.get(&packet_id.get()) == Some(&awaiting) {
            self.inflight.remove(&packet_id.get());
            self.unacked.retain(|(id, _)| *id != packet_id);
            self.events.push_back(Event::Acked { packet_id, reason });
        }
    }

    fn handle_publish(&mut self, mut p: Publish) -> Result<(), ClientError> {
        if let Some(alias) = p.properties.topic_alias {
            if p.topic.is_empty() {
                p.topic = self
                    .inbound_aliases
                    .get(&alias)
                    .cloned()
                    .ok_or(ClientError::Protocol("unknown topic alias from the broker"))?;
            } else {
                self.inbound_aliases.insert(alias, p.topic.clone());
            }
        }
        match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) | (_, None) => {}
            (qos, Some(id)) => {
                if qos == QoS::ExactlyOnce && self.incoming_qos2.contains(&id.get()) {
                    // A resend before PUBREL, answered already: delivered already.
                    return self.queue(&Packet::PubRec(Ack::new(id)));
                }
                if self.manual_acks {
                    // The broker uses an identifier again only once it is acknowledged: this
                    // is a resend (after a reconnection) of a message the caller holds, which
                    // its acknowledgement will answer.
                    if self.pending_acks.contains_key(&id.get()) {
                        return Ok(());
                    }
                    self.pending_acks.insert(id.get(), qos);
                } else if qos == QoS::AtLeastOnce {
                    self.queue(&Packet::PubAck(Ack::new(id)))?;
                } else {
                    self.queue(&Packet::PubRec(Ack::new(id)))?;
                    self.incoming_qos2.insert(id.get());
                }
            }
        }
        self.events.push_back(Event::Message(p));
        Ok(())
    }
}

async fn open(options: &ConnectOptions) -> Result<TcpStream, ClientError> {
    let addrs = tokio::net::lookup_host((options.host.as_str(), options.port)).await?;
    let mut last = None;
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(local) = options.local_addr {
            // Let connect() pick the port, per destination, rather than bind() reserve one
            // for all of them (best effort: without it the bind still works).
            #[cfg(target_os = "linux")]
            let _ = nix::sys::socket::setsockopt(
                &socket,
                nix::sys::socket::sockopt::IpBindAddressNoPort,
                &true,
            );
            socket.bind(std::net::SocketAddr::new(local, 0))?;
        }
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || {
            ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "host not found",
            ))
        },
        ClientError::Io,
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use nix::sys::socket::{getsockopt, sockopt::IpBindAddressNoPort};
    use tern_codec::ProtocolVersion;

    use super::*;

    #[tokio::test]
    async fn a_source_bound_socket_leaves_the_port_to_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut options = ConnectOptions::new("127.0.0.1", port, "c", ProtocolVersion::V311);
        options.local_addr = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        let stream = open(&options).await.unwrap();
        assert_eq!(
            stream.local_addr().unwrap().ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert!(getsockopt(&stream, IpBindAddressNoPort).unwrap());
        // Without a source address there is no bind, and the option stays off.
        options.local_addr = None;
        let stream = open(&options).await.unwrap();
        assert!(!getsockopt(&stream, IpBindAddressNoPort).unwrap());
    }
}
