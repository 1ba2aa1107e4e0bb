//! Shared harness for the core's simulation tests: connections driven through the public API
//! with hand-chosen instants, their output decoded with the project codec.

#![allow(dead_code, unreachable_pub)] // each test file uses a different part

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tern_codec::{
    ByteString, ConnAck, Connect, ConnectProperties, Decoder, Disconnect, LastWill, Packet,
    PacketId, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, WillProperties,
};
use tern_core::{Broker, Connection, ConnectionInfo, Wake};

/// A `Wake` that counts how often it was signalled.
#[derive(Default)]
pub struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// One simulated network connection: the state machine plus a client-side decoder.
pub struct Sim {
    pub conn: Connection,
    pub decoder: Decoder,
    pub waker: Arc<Counter>,
    /// Packets decoded but not yet looked at (those that came with a CONNACK or SUBACK).
    pub pending: Vec<Packet>,
}

impl Sim {
    /// A connection accepted at `now`; nothing sent yet.
    pub fn open(broker: &Broker, now: Instant) -> Self {
        Self::open_with(broker, &ConnectionInfo::default(), now)
    }

    /// A connection accepted at `now` on a listener described by `info`; nothing sent yet.
    pub fn open_with(broker: &Broker, info: &ConnectionInfo, now: Instant) -> Self {
        let waker = Arc::new(Counter::default());
        let conn = Connection::new(broker.clone(), info.clone(), waker.clone(), now);
        Self {
            conn,
            decoder: Decoder::with_version(ProtocolVersion::V5, u32::MAX),
            waker,
            pending: Vec::new(),
        }
    }

    /// Opens a connection, sends `connect` at `now` and returns the CONNACK.
    pub fn connect(broker: &Broker, connect: Connect, now: Instant) -> (Self, ConnAck) {
        let mut sim = Self::open(broker, now);
        sim.decoder = Decoder::with_version(connect.protocol, u32::MAX);
        sim.send(Packet::Connect(Box::new(connect)), now);
        let mut out = sim.drain(now);
        assert!(!out.is_empty(), "no CONNACK");
        match out.remove(0) {
            Packet::ConnAck(ack) => {
                sim.pending = out;
                (sim, ack)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects and asserts success.
    pub fn connected(broker: &Broker, connect: Connect, now: Instant) -> Self {
        let (sim, ack) = Self::connect(broker, connect, now);
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        sim
    }

    pub fn send(&mut self, packet: Packet, now: Instant) {
        self.conn.handle_packet(packet, now);
    }

    /// Everything the connection wants to send at `now` (after what is pending), decoded.
    pub fn drain(&mut self, now: Instant) -> Vec<Packet> {
        let mut out = BytesMut::new();
        while self.conn.poll_transmit(now, &mut out, usize::MAX) {}
        let mut packets = std::mem::take(&mut self.pending);
        while let Some(p) = self.decoder.decode(&mut out).expect("valid packet") {
            packets.push(p);
        }
        assert!(out.is_empty(), "trailing bytes");
        packets
    }

    pub fn publishes(&mut self, now: Instant) -> Vec<Publish> {
        self.drain(now)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => p,
                other => panic!("expected PUBLISH, got {other:?}"),
            })
            .collect()
    }

    pub fn subscribe(&mut self, filter: &str, qos: QoS, now: Instant) {
        self.send(
            Packet::Subscribe(Subscribe {
                packet_id: pid(77),
                properties: SubscribeProperties::default(),
                filters: vec![(ByteString::from(filter), SubscriptionOptions::with_qos(qos))],
            }),
            now,
        );
        let mut out = self.drain(now);
        assert!(!out.is_empty(), "no SUBACK");
        match out.remove(0) {
            Packet::SubAck(a) => assert!(!a.reasons[0].is_error(), "SUBACK {:?}", a.reasons),
            other => panic!("expected SUBACK, got {other:?}"),
        }
        self.pending = out;
    }

    /// Sends a normal DISCONNECT at `now`.
    pub fn disconnect(mut self, now: Instant) {
        self.send(Packet::Disconnect(Disconnect::default()), now);
        let _ = self.drain(now);
        assert!(self.conn.is_closing());
    }

    /// The network connection fails at `now` (no DISCONNECT): the will applies.
    pub fn lose(mut self, now: Instant) {
        self.conn.handle_connection_lost(now);
    }
}

pub fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

/// An MQTT 5 CONNECT with the given id, Clean Start and Session Expiry Interval, keep-alive 0.
pub fn connect5(client_id: &str, clean_start: bool, expiry: Option<u32>) -> Connect {
    Connect {
        protocol: ProtocolVersion::V5,
        clean_start,
        keep_alive: 0,
        properties: ConnectProperties {
            session_expiry_interval: expiry,
            ..ConnectProperties::default()
        },
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

pub fn will(topic: &str, payload: &[u8], delay: Option<u32>) -> LastWill {
    LastWill {
        topic: ByteString::from(topic),
        payload: Bytes::copy_from_slice(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: delay,
            ..WillProperties::default()
        },
    }
}

pub fn publish(topic: &str, payload: &[u8], qos: QoS, id: u16, expiry: Option<u32>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from(topic),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        properties: PublishProperties {
            message_expiry_interval: expiry,
            ..PublishProperties::default()
        },
        payload: Bytes::copy_from_slice(payload),
    })
}

/// A subscriber on `filter`, connected with Clean Start and no session expiry.
pub fn watcher(broker: &Broker, filter: &str, now: Instant) -> Sim {
    let mut w = Sim::connected(broker, connect5("watcher", true, None), now);
    w.subscribe(filter, QoS::AtLeastOnce, now);
    w
}
