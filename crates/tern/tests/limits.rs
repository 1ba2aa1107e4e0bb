//! The broker's own bounds and its shutdown: per-session queue limits (`max_queued_messages`,
//! `max_queued_bytes`, `queue_qos0_messages`), `max_inflight_messages`, isolation from a slow
//! subscriber, `connect_timeout`, per-listener `max_connections`, and graceful shutdown on
//! SIGTERM.
//!
//! Every test starts the real `tern` binary and talks to it over loopback with raw packets.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{RawClient, TIMEOUT, Tern, V5, V311, conn5, publish};
use tern_codec::{Ack, Connect, Packet, Publish, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Helpers

async fn connect(tern: &Tern, packet: Connect) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect_with(tern.addr, packet).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (c, ack.session_present)
}

async fn client(tern: &Tern, id: &str) -> RawClient {
    connect(tern, conn5(id, true, None)).await.0
}

/// A broker with the given `[mqtt]` settings (anonymous clients allowed).
fn broker(mqtt: &str) -> Tern {
    Tern::start_config(&format!("allow_anonymous = true\n[mqtt]\n{mqtt}\n"), "toml")
}

/// Subscribes a persistent session to `topic` at QoS 1 and disconnects it.
async fn offline_subscriber(tern: &Tern, id: &str, topic: &str) {
    let (mut s, _) = connect(tern, conn5(id, true, Some(300))).await;
    assert_eq!(
        s.subscribe(topic, QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    s.close().await;
}

/// Resumes the session and returns everything it is sent until the connection goes quiet,
/// acknowledging QoS 1.
async fn resume_and_drain(tern: &Tern, id: &str) -> Vec<Publish> {
    let (mut s, present) = connect(tern, conn5(id, false, Some(300))).await;
    assert!(present);
    let mut got = Vec::new();
    loop {
        match s.next(Duration::from_millis(500)).await {
            Err(_) => return got,
            Ok(Some(Packet::Publish(p))) => {
                if let Some(id) = p.packet_id {
                    s.send(&Packet::PubAck(Ack::new(id))).await;
                }
                got.push(p);
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

fn payload(i: u32, len: usize) -> Vec<u8> {
    let mut p = i.to_be_bytes().to_vec();
    p.resize(len.max(4), b'.');
    p
}

fn index(p: &Publish) -> u32 {
    u32::from_be_bytes(p.payload[..4].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Session queues

#[tokio::test]
async fn max_queued_messages_bounds_the_queue_of_an_offline_session() {
    let tern = broker("max_queued_messages = 5");
    offline_subscriber(&tern, "mq-sub", "mq/t").await;
    let mut p = client(&tern, "mq-pub").await;
    for i in 0..12u32 {
        p.publish("mq/t", &payload(i, 4), QoS::AtLeastOnce, false)
            .await;
    }
    let got = resume_and_drain(&tern, "mq-sub").await;
    assert_eq!(
        got.iter().map(index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4],
        "exactly the bound, oldest kept"
    );
}

#[tokio::test]
async fn max_queued_messages_displaces_qos0_before_refusing_qos1_and_qos2() {
    let tern = broker("max_queued_messages = 5\nqueue_qos0_messages = true");
    offline_subscriber(&tern, "mq0-sub", "mq0/t").await;
    let mut p = client(&tern, "mq0-pub").await;
    for i in 0..5u32 {
        p.publish("mq0/t", &payload(i, 4), QoS::AtMostOnce, false)
            .await;
    }
    // Full of QoS 0: each QoS 1/2 message pushes out the oldest QoS 0 one.
    p.publish("mq0/t", &payload(100, 4), QoS::AtLeastOnce, false)
        .await;
    p.publish("mq0/t", &payload(101, 4), QoS::ExactlyOnce, false)
        .await;
    p.publish("mq0/t", &payload(102, 4), QoS::AtLeastOnce, false)
        .await;
    // A new QoS 0 message finds the queue full and is dropped.
    p.publish("mq0/t", &payload(5, 4), QoS::AtMostOnce, false)
        .await;
    assert!(p.sync().await.is_empty());

    let got = resume_and_drain(&tern, "mq0-sub").await;
    let seen: Vec<(u32, QoS)> = got.iter().map(|m| (index(m), m.qos)).collect();
    assert_eq!(
        seen,
        [
            (3, QoS::AtMostOnce),
            (4, QoS::AtMostOnce),
            (100, QoS::AtLeastOnce),
            (101, QoS::AtLeastOnce),
            (102, QoS::AtLeastOnce),
        ]
    );
}

#[tokio::test]
async fn max_queued_messages_refuses_qos1_when_no_qos0_is_left_to_displace() {
    let tern = broker("max_queued_messages = 3");
    offline_subscriber(&tern, "mq1-sub", "mq1/t").await;
    let mut p = client(&tern, "mq1-pub").await;
    for i in 0..6u32 {
        p.publish("mq1/t", &payload(i, 4), QoS::ExactlyOnce, false)
            .await;
    }
    let got = resume_and_drain(&tern, "mq1-sub").await;
    assert_eq!(got.iter().map(index).collect::<Vec<_>>(), [0, 1, 2]);
}

#[tokio::test]
async fn max_queued_bytes_bounds_the_queue_of_an_offline_session() {
    // Each message accounts for its topic (4 bytes) plus its payload (96 bytes) = 100 bytes.
    let tern = broker("max_queued_messages = 0\nmax_queued_bytes = 1000");
    offline_subscriber(&tern, "mqb-sub", "mqb/").await;
    let mut p = client(&tern, "mqb-pub").await;
    for i in 0..15u32 {
        p.publish("mqb/", &payload(i, 96), QoS::AtLeastOnce, false)
            .await;
    }
    let got = resume_and_drain(&tern, "mqb-sub").await;
    assert_eq!(
        got.iter().map(index).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn queue_qos0_messages_off_drops_qos0_for_offline_sessions() {
    let tern = broker("queue_qos0_messages = false");
    offline_subscriber(&tern, "q0off-sub", "q0off/t").await;
    let mut p = client(&tern, "q0off-pub").await;
    for i in 0..3u32 {
        p.publish("q0off/t", &payload(i, 4), QoS::AtMostOnce, false)
            .await;
    }
    p.publish("q0off/t", &payload(3, 4), QoS::AtLeastOnce, false)
        .await;
    let got = resume_and_drain(&tern, "q0off-sub").await;
    assert_eq!(got.iter().map(index).collect::<Vec<_>>(), [3]);
}

#[tokio::test]
async fn queue_qos0_messages_on_keeps_qos0_for_offline_sessions() {
    let tern = broker("queue_qos0_messages = true");
    offline_subscriber(&tern, "q0on-sub", "q0on/t").await;
    let mut p = client(&tern, "q0on-pub").await;
    for i in 0..3u32 {
        p.publish("q0on/t", &payload(i, 4), QoS::AtMostOnce, false)
            .await;
    }
    p.publish("q0on/t", &payload(3, 4), QoS::AtLeastOnce, false)
        .await;
    let got = resume_and_drain(&tern, "q0on-sub").await;
    let seen: Vec<(u32, QoS)> = got.iter().map(|m| (index(m), m.qos)).collect();
    assert_eq!(
        seen,
        [
            (0, QoS::AtMostOnce),
            (1, QoS::AtMostOnce),
            (2, QoS::AtMostOnce),
            (3, QoS::AtLeastOnce)
        ]
    );
}

#[tokio::test]
async fn max_inflight_messages_limits_unacknowledged_deliveries() {
    let tern = broker("max_inflight_messages = 2");
    let mut s = client(&tern, "inflight-sub").await; // Receive Maximum left at 65535
    s.subscribe("inflight/t", QoS::AtLeastOnce).await;
    let mut p = client(&tern, "inflight-pub").await;
    for i in 0..5u32 {
        p.publish("inflight/t", &payload(i, 4), QoS::AtLeastOnce, false)
            .await;
    }
    let a = s.recv_publish().await;
    let b = s.recv_publish().await;
    assert_eq!((index(&a), index(&b)), (0, 1));
    s.expect_nothing().await;
    s.send(&Packet::PubAck(Ack::new(a.packet_id.unwrap())))
        .await;
    assert_eq!(index(&s.recv_publish().await), 2);
    s.expect_nothing().await;
    s.send(&Packet::PubAck(Ack::new(b.packet_id.unwrap())))
        .await;
    assert_eq!(index(&s.recv_publish().await), 3);
}

// ---------------------------------------------------------------------------------------------
// A slow subscriber

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_does_not_hold_up_another_subscriber_of_the_same_topic() {
    const TOTAL: u32 = 20_000;
    const BATCH: u32 = 500;
    let tern = Tern::start();
    // Subscribes and then never reads again: its socket buffers fill, then its queue.
    let mut stalled = client(&tern, "slow-stalled").await;
    stalled.subscribe("slow/t", QoS::AtMostOnce).await;
    let mut reader = client(&tern, "slow-reader").await;
    reader.subscribe("slow/t", QoS::AtMostOnce).await;
    let mut p = client(&tern, "slow-pub").await;

    let started = Instant::now();
    let mut next = 0u32;
    while next < TOTAL {
        p.send_all((next..next + BATCH).map(|i| {
            Packet::Publish(publish(
                "slow/t",
                &payload(i, 1024),
                QoS::AtMostOnce,
                false,
                None,
            ))
        }))
        .await;
        for i in next..next + BATCH {
            let m = reader.recv_publish().await;
            assert_eq!(index(&m), i, "reader lost or reordered a message");
            assert_eq!(m.payload.len(), 1024);
        }
        next += BATCH;
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    // The stalled subscriber was neither disconnected nor able to block the publisher.
    assert!(p.sync().await.is_empty());
    drop(stalled);
}

// ---------------------------------------------------------------------------------------------
// Connections

#[tokio::test]
async fn connect_timeout_closes_a_connection_that_sends_nothing() {
    let tern = broker("connect_timeout = 1");
    let started = Instant::now();
    let mut silent = RawClient::open(tern.addr, V5).await;
    silent.expect_closed().await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "closed after {waited:?}");

    // A client that did send CONNECT in time is not affected by the timeout.
    let mut c = client(&tern, "ct-ok").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(c.sync().await.is_empty());
}

/// Whether a new connection to `addr` gets a successful CONNACK (false if it is closed).
async fn try_connect(addr: std::net::SocketAddr, id: &str) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut bytes = BytesMut::new();
    Packet::Connect(Box::new(conn5(id, true, None)))
        .encode(V5, &mut bytes)
        .unwrap();
    if stream.write_all(&bytes).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 4 => buf[0] == 0x20 && buf[3] == 0x00,
        _ => false,
    }
}

#[tokio::test]
async fn max_connections_limits_simultaneous_connections_per_listener() {
    let tern = common::start_config_only(
        "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\nmax_connections = 2\n",
        "toml",
    );
    let first = client(&tern, "mc-1").await;
    let _second = client(&tern, "mc-2").await;
    // The third is refused: its CONNECT is answered with CONNACK 0x97 (Quota exceeded), or
    // return code 3 (Server unavailable) in MQTT 3.1.1, and the connection is closed.
    let (mut third, ack) = RawClient::connect_with(tern.addr, conn5("mc-3", true, None)).await;
    assert_eq!(ack.reason, ReasonCode::QUOTA_EXCEEDED);
    third.expect_closed().await;
    let (mut third, ack) =
        RawClient::connect_with(tern.addr, common::connect_packet(V311, "mc-3", true)).await;
    assert_eq!(ack.reason, ReasonCode::SERVER_UNAVAILABLE);
    third.expect_closed().await;
    // One that sends nothing is closed.
    let mut silent = RawClient::open(tern.addr, V5).await;
    silent.expect_closed().await;
    assert!(!try_connect(tern.addr, "mc-3").await);

    // Once a connection has ended, its place is free again.
    first.close().await;
    let deadline = Instant::now() + TIMEOUT;
    while !try_connect(tern.addr, "mc-4").await {
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

#[tokio::test]
async fn sigterm_disconnects_v5_clients_with_0x8b_closes_v311_ones_and_exits_0() {
    let tern = Tern::start();
    let mut v5 = client(&tern, "bye-v5").await;
    let mut v311 = RawClient::connect(tern.addr, V311, "bye-v311").await;
    assert!(v5.sync().await.is_empty());

    let mut tern = tern;
    let stopping = tokio::task::spawn_blocking(move || {
        let status = tern.terminate();
        (tern, status)
    });
    v5.expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN).await;
    v311.expect_closed().await;
    drop((v5, v311));
    let (tern, status) = stopping.await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(tern.logs().contains("shutting down"), "{}", tern.logs());
}
