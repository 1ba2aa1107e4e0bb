//! The client over a caller's stream, with manual acknowledgements, against a scripted broker
//! on the other end of a `tokio::io::duplex` pipe: every byte the client sends is checked.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tern_client::tern_codec::{
    Ack, ConnAck, Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode,
};
use tern_client::{Client, ConnectOptions, Event, SessionState};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const WAIT: Duration = Duration::from_secs(5);

/// The broker's end of the pipe.
struct Peer {
    io: DuplexStream,
    decoder: Decoder,
    rbuf: BytesMut,
    version: ProtocolVersion,
}

impl Peer {
    fn new(io: DuplexStream, version: ProtocolVersion) -> Self {
        Self {
            io,
            decoder: Decoder::new(1 << 20),
            rbuf: BytesMut::new(),
            version,
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.io.write_all(&out).await.expect("write");
    }

    async fn recv(&mut self) -> Packet {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.rbuf).expect("decode") {
                    return p;
                }
                let n = self.io.read_buf(&mut self.rbuf).await.expect("read");
                assert!(n > 0, "client closed the pipe");
            }
        })
        .await
        .expect("a packet from the client in time")
    }

    /// Asserts that the client sends nothing for 300 ms.
    async fn expect_nothing(&mut self) {
        if let Ok(p) = tokio::time::timeout(Duration::from_millis(300), self.recv_inner()).await {
            panic!("unexpected packet from the client: {p:?}");
        }
    }

    async fn recv_inner(&mut self) -> Packet {
        loop {
            if let Some(p) = self.decoder.decode(&mut self.rbuf).expect("decode") {
                return p;
            }
            if self.io.read_buf(&mut self.rbuf).await.expect("read") == 0 {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Reads the CONNECT and accepts it.
    async fn accept(&mut self, session_present: bool) -> Packet {
        let connect = self.recv().await;
        assert!(matches!(connect, Packet::Connect(_)), "{connect:?}");
        self.send(Packet::ConnAck(ConnAck {
            session_present,
            ..ConnAck::default()
        }))
        .await;
        connect
    }
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn publish(topic: &str, payload: &'static [u8], qos: QoS, packet_id: Option<u16>) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: packet_id.map(id),
        properties: Default::default(),
        payload: Bytes::from_static(payload),
    }
}

fn options(version: ProtocolVersion, manual_acks: bool) -> ConnectOptions {
    let mut o = ConnectOptions::new("unused", 1, "bridge-side", version);
    o.manual_acks = manual_acks;
    o.clean_start = false;
    o.keep_alive = 0;
    o
}

/// A client connected over a pipe to a scripted peer.
async fn connected(options: &ConnectOptions) -> (Client, Peer) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let mut peer = Peer::new(theirs, options.version);
    let (client, _) = tokio::join!(Client::connect_stream(ours, options), peer.accept(false));
    (client.expect("connected"), peer)
}

async fn next_message(client: &mut Client) -> Publish {
    match tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("an event in time")
        .expect("no error")
    {
        Event::Message(p) => p,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Lets the client read what the peer sent: a QoS 0 marker must be the next message.
async fn expect_next_is_marker(client: &mut Client, peer: &mut Peer) {
    peer.send(Packet::Publish(publish(
        "marker",
        b"m",
        QoS::AtMostOnce,
        None,
    )))
    .await;
    let p = next_message(client).await;
    assert_eq!(
        &p.topic[..],
        "marker",
        "delivered instead of the marker: {p:?}"
    );
    // What the client answered on the way goes out.
    client.flush().await.expect("flush");
}

#[tokio::test]
async fn connect_stream_runs_mqtt_over_the_callers_stream() {
    let o = options(ProtocolVersion::V5, false);
    let (ours, theirs) = tokio::io::duplex(4096);
    let mut peer = Peer::new(theirs, ProtocolVersion::V5);
    let (client, connect) = tokio::join!(Client::connect_stream(ours, &o), peer.accept(true));
    let mut client = client.expect("connected");
    let Packet::Connect(connect) = connect else {
        unreachable!()
    };
    assert_eq!(&connect.client_id[..], "bridge-side");
    assert!(!connect.clean_start);
    assert!(client.connack().session_present);
    // Without manual acknowledgements a QoS 1 message is acknowledged on receipt.
    peer.send(Packet::Publish(publish(
        "t",
        b"one",
        QoS::AtLeastOnce,
        Some(5),
    )))
    .await;
    assert_eq!(&next_message(&mut client).await.payload[..], b"one");
    client.flush().await.expect("flush");
    assert_eq!(peer.recv().await, Packet::PubAck(Ack::new(id(5))));
    // And the client publishes over it.
    let sent = client
        .send_publish(publish("out", b"two", QoS::AtLeastOnce, None))
        .await
        .expect("sent")
        .expect("an id");
    let Packet::Publish(p) = peer.recv().await else {
        panic!("expected PUBLISH")
    };
    assert_eq!((p.packet_id, &p.payload[..]), (Some(sent), &b"two"[..]));
}

#[tokio::test]
async fn connect_stream_times_out_without_connack() {
    let mut o = options(ProtocolVersion::V311, false);
    o.connect_timeout = Duration::from_millis(200);
    let (ours, _theirs) = tokio::io::duplex(4096);
    let err = Client::connect_stream(ours, &o)
        .await
        .err()
        .expect("no CONNACK: an error");
    assert!(
        matches!(err, tern_client::ClientError::Timeout(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn manual_ack_sends_puback_only_when_the_caller_acks() {
    let (mut client, mut peer) = connected(&options(ProtocolVersion::V5, true)).await;
    peer.send(Packet::Publish(publish(
        "t",
        b"q1",
        QoS::AtLeastOnce,
        Some(7),
    )))
    .await;
    let p = next_message(&mut client).await;
    assert_eq!(client.pending_acks(), 1);
    peer.expect_nothing().await;
    assert!(client.ack(&p).await.expect("ack"));
    assert_eq!(peer.recv().await, Packet::PubAck(Ack::new(id(7))));
    assert_eq!(client.pending_acks(), 0);
    // A second acknowledgement of the same message sends nothing.
    assert!(!client.ack(&p).await.expect("ack"));
    peer.expect_nothing().await;
    // QoS 0 has nothing to acknowledge.
    peer.send(Packet::Publish(publish("t", b"q0", QoS::AtMostOnce, None)))
        .await;
    let p = next_message(&mut client).await;
    assert!(!client.ack(&p).await.expect("ack"));
    peer.expect_nothing().await;
}

#[tokio::test]
async fn manual_ack_of_qos2_sends_pubrec_and_the_client_completes_the_flow() {
    let (mut client, mut peer) = connected(&options(ProtocolVersion::V5, true)).await;
    peer.send(Packet::Publish(publish(
        "t",
        b"q2",
        QoS::ExactlyOnce,
        Some(9),
    )))
    .await;
    let p = next_message(&mut client).await;
    peer.expect_nothing().await;
    // A re-send of a message the caller holds is not delivered twice.
    let mut dup = p.clone();
    dup.dup = true;
    peer.send(Packet::Publish(dup.clone())).await;
    expect_next_is_marker(&mut client, &mut peer).await;
    peer.expect_nothing().await;
    assert!(client.ack(&p).await.expect("ack"));
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(9))));
    // After PUBREC, a re-send is answered with PUBREC again and not delivered.
    peer.send(Packet::Publish(dup)).await;
    expect_next_is_marker(&mut client, &mut peer).await;
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(9))));
    // PUBREL is answered by the client.
    peer.send(Packet::PubRel(Ack::new(id(9)))).await;
    expect_next_is_marker(&mut client, &mut peer).await;
    assert_eq!(peer.recv().await, Packet::PubComp(Ack::new(id(9))));
    // The identifier is free again: a new message with it is delivered.
    peer.send(Packet::Publish(publish(
        "t",
        b"again",
        QoS::ExactlyOnce,
        Some(9),
    )))
    .await;
    assert_eq!(&next_message(&mut client).await.payload[..], b"again");
}

#[tokio::test]
async fn manual_acks_may_come_in_any_order() {
    let (mut client, mut peer) = connected(&options(ProtocolVersion::V311, true)).await;
    peer.send(Packet::Publish(publish(
        "t",
        b"a",
        QoS::AtLeastOnce,
        Some(1),
    )))
    .await;
    peer.send(Packet::Publish(publish(
        "t",
        b"b",
        QoS::ExactlyOnce,
        Some(2),
    )))
    .await;
    peer.send(Packet::Publish(publish(
        "t",
        b"c",
        QoS::AtLeastOnce,
        Some(3),
    )))
    .await;
    let a = next_message(&mut client).await;
    let b = next_message(&mut client).await;
    let c = next_message(&mut client).await;
    assert_eq!(client.pending_acks(), 3);
    peer.expect_nothing().await;
    client.ack(&c).await.expect("ack");
    assert_eq!(peer.recv().await, Packet::PubAck(Ack::new(id(3))));
    client.ack(&b).await.expect("ack");
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(2))));
    client.ack(&a).await.expect("ack");
    assert_eq!(peer.recv().await, Packet::PubAck(Ack::new(id(1))));
}

#[tokio::test]
async fn manual_ack_with_an_error_reason_ends_a_qos2_flow_on_mqtt5() {
    let (mut client, mut peer) = connected(&options(ProtocolVersion::V5, true)).await;
    peer.send(Packet::Publish(publish(
        "t",
        b"x",
        QoS::ExactlyOnce,
        Some(4),
    )))
    .await;
    next_message(&mut client).await;
    assert!(
        client
            .ack_with(id(4), ReasonCode::QUOTA_EXCEEDED)
            .await
            .expect("ack")
    );
    assert_eq!(
        peer.recv().await,
        Packet::PubRec(Ack {
            reason: ReasonCode::QUOTA_EXCEEDED,
            ..Ack::new(id(4))
        })
    );
    // No PUBREL comes for a failed PUBREC: the identifier may carry a new message at once.
    peer.send(Packet::Publish(publish(
        "t",
        b"new",
        QoS::ExactlyOnce,
        Some(4),
    )))
    .await;
    assert_eq!(&next_message(&mut client).await.payload[..], b"new");
}

#[tokio::test]
async fn manual_ack_reason_codes_are_not_sent_on_mqtt311() {
    let (mut client, mut peer) = connected(&options(ProtocolVersion::V311, true)).await;
    peer.send(Packet::Publish(publish(
        "t",
        b"x",
        QoS::AtLeastOnce,
        Some(4),
    )))
    .await;
    next_message(&mut client).await;
    client
        .ack_with(id(4), ReasonCode::UNSPECIFIED_ERROR)
        .await
        .expect("ack");
    // PUBACK of 3.1.1 is exactly four bytes: no reason code.
    let mut raw = [0u8; 4];
    tokio::time::timeout(WAIT, peer.io.read_exact(&mut raw))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(raw, [0x40, 0x02, 0x00, 0x04]);
}

/// Receives a QoS 1 (id 3) and a QoS 2 (id 4) message without acknowledging them, and returns
/// the session state of the lost connection.
async fn lost_with_two_pending(o: &ConnectOptions) -> (SessionState, Publish, Publish) {
    let (mut client, mut peer) = connected(o).await;
    peer.send(Packet::Publish(publish(
        "t",
        b"q1",
        QoS::AtLeastOnce,
        Some(3),
    )))
    .await;
    peer.send(Packet::Publish(publish(
        "t",
        b"q2",
        QoS::ExactlyOnce,
        Some(4),
    )))
    .await;
    let q1 = next_message(&mut client).await;
    let q2 = next_message(&mut client).await;
    let state = client.session_state();
    drop(client);
    drop(peer);
    let mut pending = state.pending_acks();
    pending.sort();
    assert_eq!(pending, [id(3), id(4)]);
    (state, q1, q2)
}

async fn resumed(o: &ConnectOptions, state: SessionState, session_present: bool) -> (Client, Peer) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let mut peer = Peer::new(theirs, o.version);
    let (client, connect) = tokio::join!(
        Client::resume_stream(ours, o, state),
        peer.accept(session_present)
    );
    let Packet::Connect(connect) = connect else {
        unreachable!()
    };
    assert!(!connect.clean_start, "resume asks for the session");
    (client.expect("resumed"), peer)
}

fn resent(p: &Publish) -> Packet {
    Packet::Publish(Publish {
        dup: true,
        ..p.clone()
    })
}

#[tokio::test]
async fn resume_stream_keeps_unacknowledged_messages_for_the_callers_ack() {
    let o = options(ProtocolVersion::V5, true);
    let (state, q1, q2) = lost_with_two_pending(&o).await;
    let (mut client, mut peer) = resumed(&o, state, true).await;
    assert_eq!(client.pending_acks(), 2);
    // The broker re-sends both (MQTT-4.4.0-1): the caller has them already.
    peer.send(resent(&q1)).await;
    peer.send(resent(&q2)).await;
    expect_next_is_marker(&mut client, &mut peer).await;
    peer.expect_nothing().await;
    // The caller acknowledges the copies it held, on the new connection.
    assert!(client.ack(&q2).await.expect("ack"));
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(4))));
    assert!(client.ack(&q1).await.expect("ack"));
    assert_eq!(peer.recv().await, Packet::PubAck(Ack::new(id(3))));
}

#[tokio::test]
async fn resume_stream_without_a_session_ignores_old_acks() {
    let o = options(ProtocolVersion::V311, true);
    let (state, q1, q2) = lost_with_two_pending(&o).await;
    let (mut client, mut peer) = resumed(&o, state, false).await;
    assert_eq!(client.pending_acks(), 0);
    assert!(!client.ack(&q1).await.expect("ack"));
    assert!(!client.ack(&q2).await.expect("ack"));
    peer.expect_nothing().await;
    // A new message under an old identifier is a new message.
    peer.send(Packet::Publish(publish(
        "t",
        b"fresh",
        QoS::ExactlyOnce,
        Some(4),
    )))
    .await;
    assert_eq!(&next_message(&mut client).await.payload[..], b"fresh");
}

#[tokio::test]
async fn redeliver_pending_delivers_the_resends_again() {
    let o = options(ProtocolVersion::V5, true);
    let (mut state, q1, q2) = lost_with_two_pending(&o).await;
    state.redeliver_pending();
    assert!(state.pending_acks().is_empty());
    let (mut client, mut peer) = resumed(&o, state, true).await;
    peer.send(resent(&q1)).await;
    peer.send(resent(&q2)).await;
    let again1 = next_message(&mut client).await;
    let again2 = next_message(&mut client).await;
    assert!(again1.dup && again2.dup);
    assert_eq!(
        (&again1.payload[..], &again2.payload[..]),
        (&b"q1"[..], &b"q2"[..])
    );
    assert!(client.ack(&again2).await.expect("ack"));
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(4))));
}

#[tokio::test]
async fn automatic_acks_answer_resends_as_before() {
    // Without manual acks, a QoS 2 re-send before PUBREL is answered and not delivered twice.
    let (mut client, mut peer) = connected(&options(ProtocolVersion::V5, false)).await;
    let p = publish("t", b"x", QoS::ExactlyOnce, Some(6));
    peer.send(Packet::Publish(p.clone())).await;
    next_message(&mut client).await;
    client.flush().await.expect("flush");
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(6))));
    peer.send(resent(&p)).await;
    expect_next_is_marker(&mut client, &mut peer).await;
    assert_eq!(peer.recv().await, Packet::PubRec(Ack::new(id(6))));
}

#[tokio::test]
async fn bridge_option_sets_the_high_bit_of_the_3x_protocol_level() {
    for (version, name, level) in [
        (ProtocolVersion::V311, &b"MQTT"[..], 0x84u8),
        (ProtocolVersion::V31, b"MQIsdp", 0x83),
        (ProtocolVersion::V5, b"MQTT", 0x05),
    ] {
        let mut o = options(version, false);
        o.bridge = true;
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let connecting = tokio::spawn({
            let o = o.clone();
            async move { Client::connect_stream(ours, &o).await.map(|_| ()) }
        });
        // Fixed header (2 bytes), name length, name, level.
        let mut head = vec![0u8; 2 + 2 + name.len() + 1];
        tokio::time::timeout(WAIT, theirs.read_exact(&mut head))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&head[4..4 + name.len()], name, "{version}");
        assert_eq!(head[4 + name.len()], level, "{version}");
        drop(theirs);
        assert!(connecting.await.expect("joined").is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Keep-alive, on a paused clock: the test's peer answers (or not) and time jumps ahead.

/// The next packet the client sends, however long it takes (the clock is paused: it jumps).
async fn next_sent(client: &mut Client, peer: &mut Peer) -> Packet {
    tokio::select! {
        event = client.next_event() => panic!("unexpected event: {event:?}"),
        packet = peer.recv_inner() => packet,
    }
}

/// A client with a keep-alive of 10 s, connected at the returned instant.
async fn keeping_alive(version: ProtocolVersion) -> (Client, Peer, tokio::time::Instant) {
    let mut o = options(version, false);
    o.keep_alive = 10;
    let (client, peer) = connected(&o).await;
    (client, peer, tokio::time::Instant::now())
}

/// The client's next packet is a PINGREQ, `secs` after `start`.
async fn expect_ping_at(
    client: &mut Client,
    peer: &mut Peer,
    start: tokio::time::Instant,
    secs: u64,
) {
    let packet = next_sent(client, peer).await;
    assert!(matches!(packet, Packet::PingReq), "{packet:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(secs));
}

#[tokio::test(start_paused = true)]
async fn mqtt5_3_1_2_20_an_idle_client_pings_once_per_keep_alive_and_a_send_postpones_it() {
    let (mut client, mut peer, start) = keeping_alive(ProtocolVersion::V5).await;
    expect_ping_at(&mut client, &mut peer, start, 10).await;
    peer.send(Packet::PingResp).await;
    expect_ping_at(&mut client, &mut peer, start, 20).await;
    peer.send(Packet::PingResp).await;

    // A message sent at 25 s: the next PINGREQ is due 10 s after it, not at 30 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    client
        .send_publish(publish("t", b"x", QoS::AtMostOnce, None))
        .await
        .expect("publish");
    let packet = next_sent(&mut client, &mut peer).await;
    assert!(matches!(packet, Packet::Publish(_)), "{packet:?}");
    expect_ping_at(&mut client, &mut peer, start, 35).await;
}

#[tokio::test(start_paused = true)]
async fn a_client_whose_pingreq_goes_unanswered_fails_after_another_keep_alive() {
    let (mut client, mut peer, start) = keeping_alive(ProtocolVersion::V311).await;
    expect_ping_at(&mut client, &mut peer, start, 10).await;
    let error = client.next_event().await.expect_err("no PINGRESP");
    assert!(
        matches!(error, tern_client::ClientError::Timeout(d) if d == Duration::from_secs(10)),
        "{error:?}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(20));
}
