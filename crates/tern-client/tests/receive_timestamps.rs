//! The kernel's receive times (`ConnectOptions::receive_timestamps`), over a real loopback TCP
//! connection to a scripted broker: each read's time falls between the peer's write and the
//! client's return.
#![cfg(target_os = "linux")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tern_client::tern_codec::{ConnAck, Decoder, Packet, ProtocolVersion, Publish, QoS};
use tern_client::{Client, ConnectOptions, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(5);
const VERSION: ProtocolVersion = ProtocolVersion::V311;

fn wall_ns() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos(),
    )
    .expect("fits")
}

async fn send(peer: &mut TcpStream, packet: Packet) {
    let mut out = BytesMut::new();
    packet.encode(VERSION, &mut out).expect("encode");
    peer.write_all(&out).await.expect("write");
}

/// Accepts one client and answers its CONNECT.
async fn accept(listener: &TcpListener) -> TcpStream {
    let (mut peer, _) = listener.accept().await.expect("accept");
    let (mut decoder, mut rbuf) = (Decoder::new(1 << 16), BytesMut::new());
    loop {
        if let Some(p) = decoder.decode(&mut rbuf).expect("decode") {
            assert!(matches!(p, Packet::Connect(_)), "{p:?}");
            break;
        }
        assert!(peer.read_buf(&mut rbuf).await.expect("read") > 0);
    }
    send(&mut peer, Packet::ConnAck(ConnAck::default())).await;
    peer
}

async fn connect(stamped: bool) -> (Client, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut options = ConnectOptions::new("127.0.0.1", addr.port(), "stamped", VERSION);
    options.keep_alive = 0;
    options.receive_timestamps = stamped;
    let (client, peer) = tokio::time::timeout(WAIT, async {
        tokio::join!(Client::connect(&options), accept(&listener))
    })
    .await
    .expect("connected in time");
    (client.expect("connected"), peer)
}

fn publish(payload: &'static [u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        properties: Default::default(),
        payload: Bytes::from_static(payload),
    })
}

/// Sends a message and reads it: the wall-clock times before the send and after the read,
/// and the receive time the client reports.
async fn round_trip(client: &mut Client, peer: &mut TcpStream) -> (u64, Option<u64>, u64) {
    let sent = wall_ns();
    send(peer, publish(b"m")).await;
    let event = tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("in time")
        .expect("no error");
    let read = wall_ns();
    assert!(
        matches!(&event, Event::Message(p) if p.payload == b"m"[..]),
        "{event:?}"
    );
    (sent, client.received_ns(), read)
}

#[tokio::test]
async fn each_read_has_the_time_its_bytes_arrived() {
    let (mut client, mut peer) = connect(true).await;
    // The kernel turns timestamping on a moment after the first socket of the system asks.
    let deadline = std::time::Instant::now() + WAIT;
    while round_trip(&mut client, &mut peer).await.1.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no receive time at all"
        );
    }
    for _ in 0..3 {
        let (sent, arrived, read) = round_trip(&mut client, &mut peer).await;
        let arrived = arrived.expect("a receive time once timestamping is on");
        assert!(
            sent <= arrived && arrived <= read,
            "{sent} ≤ {arrived} ≤ {read}"
        );
    }
}

#[tokio::test]
async fn without_the_option_there_is_no_receive_time() {
    let (mut client, mut peer) = connect(false).await;
    assert_eq!(round_trip(&mut client, &mut peer).await.1, None);
}

#[tokio::test]
async fn a_large_message_read_in_several_reads_arrives_whole() {
    // More than one read's worth (64 KiB), through the stamped reads' scratch buffer.
    static PAYLOAD: [u8; 200_000] = [7; 200_000];
    let (mut client, mut peer) = connect(true).await;
    let writer = tokio::spawn(async move {
        send(&mut peer, publish(&PAYLOAD)).await;
        peer
    });
    let event = tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("in time")
        .expect("no error");
    assert!(matches!(&event, Event::Message(p) if p.payload[..] == PAYLOAD[..]));
    let _peer = writer.await.expect("writer");
}
