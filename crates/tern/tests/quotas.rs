//! Limits and quotas, each with its reaction for MQTT 5 and MQTT 3.1.1: connections in total
//! (across listeners) and per source address, the connect rate per source address, client id
//! length and prefixes (`clientid_prefixes`, also from a mosquitto.conf), topic length, the
//! subscriptions of a session, and the message rate and bandwidth of a connection (paused
//! reading, or DISCONNECT 0x96). The configuration keys are checked too, bad values included.
//!
//! The broker tests start the real `tern` binary and talk to it over loopback with raw packets
//! (and `mosquitto_pub` for `clientid_prefixes`). Timings are only ever checked from below: a
//! limited client can never be faster than its bucket allows, however slow the machine.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{
    RawClient, TIMEOUT, TempDir, TempFile, Tern, V5, V311, conn5, connect_packet, pid, publish,
    will,
};
use tern::limits::ConnectionLimits;
use tern_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use tern_core::{RateExceeded, RateLimit};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A broker with the given TOML (anonymous clients allowed), listening on `--listen`.
fn broker(toml: &str) -> Tern {
    Tern::start_config(&format!("allow_anonymous = true\n{toml}\n"), "toml")
}

/// Opens a connection (from `source`, if given), sends a CONNECT with a clean start and returns
/// the client and the CONNACK's reason code.
async fn try_connect(
    addr: std::net::SocketAddr,
    source: Option<&str>,
    packet: tern_codec::Connect,
) -> (RawClient, ReasonCode) {
    let mut c = match source {
        Some(ip) => {
            RawClient::open_from(addr, ip.parse::<IpAddr>().unwrap(), packet.protocol).await
        }
        None => RawClient::open(addr, packet.protocol).await,
    };
    c.send(&Packet::Connect(Box::new(packet))).await;
    let reason = c.connack().await.reason;
    (c, reason)
}

/// Connects with `id`, asserts that the CONNACK carries `expected` and that the server then
/// closes the connection.
async fn refused(
    addr: std::net::SocketAddr,
    source: Option<&str>,
    packet: tern_codec::Connect,
    expected: ReasonCode,
) {
    let id = packet.client_id.clone();
    let (mut c, reason) = try_connect(addr, source, packet).await;
    assert_eq!(reason, expected, "CONNACK for {id}");
    c.expect_closed().await;
}

/// Connects until the CONNACK is a success, for at most [`TIMEOUT`]: a place that was freed
/// (or a token that was refilled) becomes usable.
async fn connect_eventually(addr: std::net::SocketAddr, id: &str) -> RawClient {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (c, reason) = try_connect(addr, None, conn5(id, true, None)).await;
        if reason == ReasonCode::SUCCESS {
            return c;
        }
        assert!(Instant::now() < deadline, "still refused: {reason}");
        drop(c);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` PUBLISH packets on `topic` (QoS 1, ids from 1, payload: the index then `len - 1`
/// dots), encoded back to back.
fn publishes(version: ProtocolVersion, topic: &str, count: u16, len: usize) -> BytesMut {
    let mut bytes = BytesMut::new();
    for i in 1..=count {
        Packet::Publish(publish(
            topic,
            &payload(i, len),
            QoS::AtLeastOnce,
            false,
            Some(pid(i)),
        ))
        .encode(version, &mut bytes)
        .unwrap();
    }
    bytes
}

fn payload(i: u16, len: usize) -> Vec<u8> {
    let mut p = i.to_be_bytes().to_vec();
    p.resize(len.max(2), b'.');
    p
}

/// Receives `count` messages in order (payloads checked), acknowledging them.
async fn receive_in_order(s: &mut RawClient, count: u16, len: usize) {
    for i in 1..=count {
        let m = s.recv_publish().await;
        assert_eq!(m.payload.as_ref(), payload(i, len), "message {i}");
        s.ack(&m).await;
    }
}

/// Receives the acknowledgements of `count` QoS 1 PUBLISHes, ids 1, 2, ...
async fn expect_pubacks(c: &mut RawClient, count: u16) {
    for i in 1..=count {
        match c.recv().await {
            Packet::PubAck(a) => {
                assert_eq!(a.packet_id, pid(i));
                assert!(!a.reason.is_error(), "PUBACK {i}: {}", a.reason);
            }
            other => panic!("expected PUBACK {i}, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections in total, per source address, and the connect rate

#[tokio::test]
async fn max_connections_per_ip_refuses_with_quota_exceeded() {
    let tern = broker("[limits]\nmax_connections_per_ip = 2");
    let first = RawClient::connect(tern.addr, V5, "perip-1").await;
    let _second = RawClient::connect(tern.addr, V311, "perip-2").await;
    refused(
        tern.addr,
        None,
        conn5("perip-3", true, None),
        ReasonCode::QUOTA_EXCEEDED,
    )
    .await;
    // MQTT 3.1.1: return code 3, Server unavailable.
    refused(
        tern.addr,
        None,
        connect_packet(V311, "perip-4", true),
        ReasonCode::SERVER_UNAVAILABLE,
    )
    .await;
    // Another source address has its own count.
    let (_other, reason) =
        try_connect(tern.addr, Some("127.0.0.2"), conn5("perip-5", true, None)).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    // A closed connection frees its place.
    first.close().await;
    connect_eventually(tern.addr, "perip-6").await;
}

#[tokio::test]
async fn global_max_connections_counts_every_listener() {
    let tern = common::start_config_only(
        "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n\n[limits]\nmax_connections = 2\n",
        "toml",
    );
    let addrs = tern.listening_addrs(2);
    let (a, b) = (addrs[0], addrs[1]);
    assert_ne!(a, b);
    let first = RawClient::connect(a, V5, "global-1").await;
    let _second = RawClient::connect(b, V5, "global-2").await;
    refused(
        b,
        None,
        conn5("global-3", true, None),
        ReasonCode::QUOTA_EXCEEDED,
    )
    .await;
    refused(
        a,
        None,
        connect_packet(V311, "global-4", true),
        ReasonCode::SERVER_UNAVAILABLE,
    )
    .await;
    // Other source addresses count too: the limit is the broker's.
    refused(
        a,
        Some("127.0.0.2"),
        conn5("global-5", true, None),
        ReasonCode::QUOTA_EXCEEDED,
    )
    .await;
    first.close().await;
    connect_eventually(b, "global-6").await;
}

#[tokio::test]
async fn connect_rate_per_ip_refuses_with_connection_rate_exceeded() {
    // Two connections a minute, a burst of two: the third in a row is over the rate.
    let tern = broker("[limits]\nconnect_rate = \"2/m\"");
    RawClient::connect(tern.addr, V5, "rate-1")
        .await
        .close()
        .await;
    RawClient::connect(tern.addr, V311, "rate-2")
        .await
        .close()
        .await;
    refused(
        tern.addr,
        None,
        conn5("rate-3", true, None),
        ReasonCode::CONNECTION_RATE_EXCEEDED,
    )
    .await;
    refused(
        tern.addr,
        None,
        connect_packet(V311, "rate-4", true),
        ReasonCode::SERVER_UNAVAILABLE,
    )
    .await;
    // Another source address has its own bucket.
    let (_other, reason) =
        try_connect(tern.addr, Some("127.0.0.3"), conn5("rate-5", true, None)).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
}

#[tokio::test]
async fn connect_rate_lets_a_connection_in_once_the_bucket_has_refilled() {
    let tern = broker("[limits]\nconnect_rate = 1\nconnect_burst = 1");
    let started = Instant::now();
    RawClient::connect(tern.addr, V5, "refill-1")
        .await
        .close()
        .await;
    // Refused attempts cost nothing; the next token comes one second after the first.
    connect_eventually(tern.addr, "refill-2").await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "second connection after {waited:?}"
    );
}

/// Whether the server closes `stream` (EOF or reset) within [`TIMEOUT`], reading whatever it
/// sends; returns the bytes read before the close.
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> Option<usize> {
    use tokio::io::AsyncReadExt;
    let mut total = 0;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn over_a_limit_a_tls_listener_closes_at_accept_without_a_handshake() {
    let dir = TempDir::new();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (certfile, keyfile) = (dir.path.join("server.crt"), dir.path.join("server.key"));
    std::fs::write(&certfile, cert.pem()).unwrap();
    std::fs::write(&keyfile, key.serialize_pem()).unwrap();
    let tern = common::start_config_only(
        &format!(
            "allow_anonymous = true
[limits]
max_connections_per_ip = 1

             [[listeners]]
address = \"127.0.0.1:0\"
[listeners.tls]
certfile = {:?}
             keyfile = {:?}
handshake_timeout = 60
",
            certfile.display().to_string(),
            keyfile.display().to_string()
        ),
        "toml",
    );
    // The first connection takes the address's only place while its handshake is awaited.
    let first = tokio::net::TcpStream::connect(tern.addr).await.unwrap();
    // The second is closed at once, long before the handshake deadline, without a byte.
    let mut second = tokio::net::TcpStream::connect(tern.addr).await.unwrap();
    assert_eq!(closed_by_server(&mut second).await, Some(0));
    // Once the first has gone, a connection is left open to do its handshake.
    drop(first);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut next = tokio::net::TcpStream::connect(tern.addr).await.unwrap();
        let mut byte = [0u8; 1];
        let quiet = tokio::time::timeout(common::QUIET, async {
            use tokio::io::AsyncReadExt;
            next.read(&mut byte).await
        })
        .await;
        if quiet.is_err() {
            break; // still open, waiting for a ClientHello
        }
        assert!(Instant::now() < deadline, "the place was never freed");
    }
}

// ---------------------------------------------------------------------------------------------
// Client ids

#[tokio::test]
async fn max_client_id_length_refuses_longer_ids() {
    let tern = broker("[mqtt]\nmax_client_id_length = 8");
    RawClient::connect(tern.addr, V5, "12345678").await;
    RawClient::connect(tern.addr, V311, "abcdefgh").await;
    refused(
        tern.addr,
        None,
        conn5("123456789", true, None),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    )
    .await;
    // MQTT 3.1.1: return code 2, Identifier rejected.
    refused(
        tern.addr,
        None,
        connect_packet(V311, "abcdefghi", true),
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
    )
    .await;
}

#[tokio::test]
async fn clientid_prefixes_refuse_other_ids_as_not_authorized() {
    let tern = broker("[mqtt]\nclientid_prefixes = [\"sensor-\", \"dev-\"]");
    RawClient::connect(tern.addr, V5, "sensor-1").await;
    RawClient::connect(tern.addr, V311, "dev-1").await;
    refused(
        tern.addr,
        None,
        conn5("other", true, None),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    // MQTT 3.1.1: return code 5, Not authorized.
    refused(
        tern.addr,
        None,
        connect_packet(V311, "sensor", true),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    // An assigned id (`auto-...`) is checked too.
    refused(
        tern.addr,
        None,
        conn5("", true, None),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn clientid_prefixes_from_a_mosquitto_conf_with_mosquitto_pub() {
    let tern = Tern::start_config(
        "allow_anonymous true\nclientid_prefixes sensor-\nauto_id_prefix sensor-auto-\n",
        "conf",
    );
    RawClient::connect(tern.addr, V5, "sensor-7").await;
    refused(
        tern.addr,
        None,
        conn5("actuator-7", true, None),
        ReasonCode::NOT_AUTHORIZED,
    )
    .await;
    // An assigned id gets the prefix from `auto_id_prefix`, so it is allowed.
    let (c, ack) = RawClient::connect_with(tern.addr, conn5("", true, None)).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let assigned = ack.properties.assigned_client_identifier.unwrap();
    assert!(assigned.starts_with("sensor-auto-"), "{assigned}");
    drop(c);

    // A real client: mosquitto_pub reports the refusal and fails.
    let port = tern.addr.port().to_string();
    let run = |id: &'static str| {
        let port = port.clone();
        tokio::task::spawn_blocking(move || {
            common::run_bounded(
                std::process::Command::new("mosquitto_pub").args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-i",
                    id,
                    "-t",
                    "t",
                    "-m",
                    "x",
                ]),
                None,
                TIMEOUT,
            )
        })
    };
    let refused_pub = run("actuator-8").await.unwrap();
    assert!(!refused_pub.status.success());
    let stderr = String::from_utf8_lossy(&refused_pub.stderr);
    assert!(stderr.contains("not authorised"), "{stderr}");
    let accepted_pub = run("sensor-8").await.unwrap();
    assert!(
        accepted_pub.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted_pub.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Topic length

/// Ten bytes: the longest topic `max_topic_length = 10` allows.
const TEN: &str = "0123456789";
/// Eleven bytes.
const ELEVEN: &str = "0123456789a";

#[tokio::test]
async fn max_topic_length_closes_a_v5_publisher_with_topic_name_invalid() {
    let tern = broker("[mqtt]\nmax_topic_length = 10");
    let mut c = RawClient::connect(tern.addr, V5, "tl-pub5").await;
    assert_eq!(
        c.publish(TEN, b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    c.send(&Packet::Publish(publish(
        ELEVEN,
        b"x",
        QoS::AtLeastOnce,
        false,
        Some(pid(2)),
    )))
    .await;
    c.expect_disconnect(ReasonCode::TOPIC_NAME_INVALID).await;
}

#[tokio::test]
async fn max_topic_length_closes_a_v311_publisher() {
    let tern = broker("[mqtt]\nmax_topic_length = 10");
    let mut c = RawClient::connect(tern.addr, V311, "tl-pub3").await;
    assert_eq!(
        c.publish(TEN, b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    c.send(&Packet::Publish(publish(
        ELEVEN,
        b"x",
        QoS::AtMostOnce,
        false,
        None,
    )))
    .await;
    c.expect_closed().await;
}

#[tokio::test]
async fn max_topic_length_refuses_longer_filters_in_suback() {
    let tern = broker("[mqtt]\nmax_topic_length = 10");
    let mut c5 = RawClient::connect(tern.addr, V5, "tl-sub5").await;
    assert_eq!(
        c5.subscribe_many(
            &[TEN, ELEVEN, "$share/g/ab", "12345678/#"],
            QoS::AtLeastOnce
        )
        .await,
        [
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::GRANTED_QOS_1,
        ]
    );
    let mut c3 = RawClient::connect(tern.addr, V311, "tl-sub3").await;
    assert_eq!(
        c3.subscribe_many(&[ELEVEN, TEN], QoS::AtLeastOnce).await,
        [ReasonCode::UNSPECIFIED_ERROR, ReasonCode::GRANTED_QOS_1]
    );
    // The connections stay open.
    assert!(c5.sync().await.is_empty());
    assert!(c3.sync().await.is_empty());
}

#[tokio::test]
async fn max_topic_length_refuses_a_longer_will_topic() {
    let tern = broker("[mqtt]\nmax_topic_length = 10");
    let mut ok = conn5("tl-will-ok", true, None);
    ok.will = Some(will(TEN, b"bye", QoS::AtMostOnce, false));
    let (_c, reason) = try_connect(tern.addr, None, ok).await;
    assert_eq!(reason, ReasonCode::SUCCESS);

    let mut long5 = conn5("tl-will5", true, None);
    long5.will = Some(will(ELEVEN, b"bye", QoS::AtMostOnce, false));
    refused(tern.addr, None, long5, ReasonCode::TOPIC_NAME_INVALID).await;
    let mut long3 = connect_packet(V311, "tl-will3", true);
    long3.will = Some(will(ELEVEN, b"bye", QoS::AtMostOnce, false));
    refused(tern.addr, None, long3, ReasonCode::SERVER_UNAVAILABLE).await;
}

// ---------------------------------------------------------------------------------------------
// Subscriptions per session

#[tokio::test]
async fn max_subscriptions_refuses_filters_beyond_the_limit_with_quota_exceeded() {
    let tern = broker("[mqtt]\nmax_subscriptions = 2");
    let mut s = RawClient::connect(tern.addr, V5, "ms-5").await;
    assert_eq!(
        s.subscribe_many(&["ms/a", "ms/b", "ms/c"], QoS::AtLeastOnce)
            .await,
        [
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::QUOTA_EXCEEDED
        ]
    );
    // Replacing a subscription does not count twice.
    assert_eq!(
        s.subscribe("ms/a", QoS::AtMostOnce).await,
        [ReasonCode::GRANTED_QOS_0]
    );
    assert_eq!(
        s.subscribe("ms/d", QoS::AtMostOnce).await,
        [ReasonCode::QUOTA_EXCEEDED]
    );
    // The refused filter is not subscribed.
    let mut p = RawClient::connect(tern.addr, V5, "ms-pub").await;
    p.publish("ms/c", b"c", QoS::AtMostOnce, false).await;
    p.publish("ms/b", b"b", QoS::AtMostOnce, false).await;
    assert_eq!(s.recv_publish().await.payload.as_ref(), b"b");
    s.expect_nothing().await;
    // Unsubscribing frees a place.
    assert_eq!(s.unsubscribe("ms/a").await, [ReasonCode::SUCCESS]);
    assert_eq!(
        s.subscribe("ms/d", QoS::AtMostOnce).await,
        [ReasonCode::GRANTED_QOS_0]
    );
}

#[tokio::test]
async fn max_subscriptions_refuses_with_0x80_in_v311() {
    let tern = broker("[mqtt]\nmax_subscriptions = 1");
    let mut s = RawClient::connect(tern.addr, V311, "ms-3").await;
    assert_eq!(
        s.subscribe_many(&["ms3/a", "ms3/b"], QoS::AtLeastOnce)
            .await,
        [ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR]
    );
    assert!(s.sync().await.is_empty());
}

#[tokio::test]
async fn max_subscriptions_counts_the_subscriptions_of_a_resumed_session() {
    let config = TempFile::new(
        "toml",
        "allow_anonymous = true\n[mqtt]\nmax_subscriptions = 2\n",
    );
    let path = config.path.to_string_lossy().into_owned();
    let tern = Tern::spawn_in(
        &["serve", "--config", &path, "--listen", "127.0.0.1:0"],
        None,
        TempDir::new(),
    );
    let (mut s, _) = RawClient::connect_with(tern.addr, conn5("ms-keep", true, Some(600))).await;
    assert_eq!(
        s.subscribe_many(&["keep/a", "keep/b"], QoS::AtLeastOnce)
            .await,
        [ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_1]
    );
    s.close().await;

    // Resumed: its two subscriptions count.
    let (mut s, ack) = RawClient::connect_with(tern.addr, conn5("ms-keep", false, Some(600))).await;
    assert!(ack.session_present);
    assert_eq!(
        s.subscribe_many(&["keep/c", "keep/b"], QoS::AtLeastOnce)
            .await,
        [ReasonCode::QUOTA_EXCEEDED, ReasonCode::GRANTED_QOS_1]
    );
    s.close().await;

    // Restored from the store after a restart: still counted.
    let addr = tern.addr;
    let data = tern.stop();
    let tern = Tern::restart(data, addr, &["--config", &path]);
    let (mut s, ack) = RawClient::connect_with(tern.addr, conn5("ms-keep", false, Some(600))).await;
    assert!(ack.session_present);
    assert_eq!(
        s.subscribe_many(&["keep/c"], QoS::AtLeastOnce).await,
        [ReasonCode::QUOTA_EXCEEDED]
    );
    drop(config);
}

// ---------------------------------------------------------------------------------------------
// Message rate and bandwidth

/// Publishes `count` QoS 1 messages of `len` payload bytes in one write and checks that a
/// subscriber gets every one of them in order and the publisher every PUBACK; returns how long
/// that took from just before the write.
async fn publish_burst(
    tern: &Tern,
    version: ProtocolVersion,
    topic: &str,
    count: u16,
    len: usize,
) -> Duration {
    let mut s = RawClient::connect(tern.addr, V5, &format!("{topic}-sub")).await;
    s.subscribe(topic, QoS::AtLeastOnce).await;
    let mut p = RawClient::connect(tern.addr, version, &format!("{topic}-pub")).await;
    let bytes = publishes(version, topic, count, len);
    let started = Instant::now();
    p.send_bytes(&bytes).await;
    receive_in_order(&mut s, count, len).await;
    let took = started.elapsed();
    expect_pubacks(&mut p, count).await;
    assert!(p.sync().await.is_empty());
    took
}

#[tokio::test]
async fn message_rate_pauses_reading_and_loses_nothing_v5() {
    // 5 a second, a burst of 5: 15 messages need at least 2 s.
    let tern = broker("[limits]\nmessage_rate = 5\nmessage_burst = 5");
    let took = publish_burst(&tern, V5, "mr5", 15, 16).await;
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test]
async fn message_rate_pauses_reading_and_loses_nothing_v311() {
    // 5 a second, a burst of 5 (the default for 5/s): 10 messages need at least 1 s.
    let tern = broker("[limits]\nmessage_rate = \"5/s\"");
    let took = publish_burst(&tern, V311, "mr3", 10, 16).await;
    assert!(took >= Duration::from_millis(750), "took {took:?}");
}

#[tokio::test]
async fn bandwidth_pauses_reading_and_loses_nothing() {
    // 1000 bytes a second, a burst of 1000: 10 packets of 302 bytes need at least 2 s.
    let tern = broker("[limits]\nbandwidth = \"1KB/s\"\nbandwidth_burst = 1000");
    let took = publish_burst(&tern, V5, "bw/t", 10, 290).await;
    assert!(took >= Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test]
async fn a_paused_client_is_not_closed_for_keep_alive() {
    // One message every 2 s while the client's keep-alive is 1 s (closed after 1.5 s of
    // silence): the messages held back count as traffic.
    let tern = broker("[limits]\nmessage_rate = \"30/m\"\nmessage_burst = 1");
    let mut s = RawClient::connect(tern.addr, V5, "ka-sub").await;
    s.subscribe("ka/t", QoS::AtLeastOnce).await;
    let mut packet = conn5("ka-pub", true, None);
    packet.keep_alive = 1;
    let (mut p, reason) = try_connect(tern.addr, None, packet).await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let started = Instant::now();
    p.send_bytes(&publishes(V5, "ka/t", 3, 8)).await;
    receive_in_order(&mut s, 3, 8).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(3500), "took {took:?}");
    expect_pubacks(&mut p, 3).await;
    assert!(p.sync().await.is_empty());
}

/// Sends 3 QoS 0 messages at once where the rate allows 2, in `rate_exceeded = "disconnect"`
/// mode; checks that the subscriber got exactly the first two and returns the broker and the
/// publisher.
async fn over_the_rate(version: ProtocolVersion, id: &str) -> (Tern, RawClient) {
    let tern = broker(
        "[limits]\nmessage_rate = \"1/m\"\nmessage_burst = 2\nrate_exceeded = \"disconnect\"",
    );
    let mut s = RawClient::connect(tern.addr, V5, &format!("{id}-sub")).await;
    s.subscribe("over/t", QoS::AtMostOnce).await;
    let mut p = RawClient::connect(tern.addr, version, id).await;
    p.send_all((1..=3u16).map(|i| {
        Packet::Publish(publish(
            "over/t",
            &payload(i, 4),
            QoS::AtMostOnce,
            false,
            None,
        ))
    }))
    .await;
    for i in 1..=2u16 {
        let m: Publish = s.recv_publish().await;
        assert_eq!(m.payload.as_ref(), payload(i, 4));
    }
    s.expect_nothing().await;
    (tern, p)
}

#[tokio::test]
async fn message_rate_disconnect_mode_sends_0x96_to_v5_clients() {
    let (_tern, mut p) = over_the_rate(V5, "over5").await;
    p.expect_disconnect(ReasonCode::MESSAGE_RATE_TOO_HIGH).await;
}

#[tokio::test]
async fn message_rate_disconnect_mode_closes_v311_clients() {
    let (_tern, mut p) = over_the_rate(V311, "over3").await;
    p.expect_closed().await;
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// Loads `text` from a temporary file with `extension`; an error is returned as text with the
/// file's path replaced by `FILE`.
fn load(text: &str, extension: &str) -> Result<tern::config::Config, String> {
    let file = TempFile::new(extension, text);
    tern::config::load(&file.path).map_err(|e| {
        e.to_string()
            .replace(&file.path.display().to_string(), "FILE")
    })
}

fn load_err(text: &str, extension: &str) -> String {
    load(text, extension).expect_err("the file should be rejected")
}

#[test]
fn toml_limits_are_read() {
    let config = load(
        "[mqtt]\nmax_topic_length = 1024\nmax_client_id_length = 64\n\
         clientid_prefixes = [\"a-\", \"b-\"]\nmax_subscriptions = 100\n\n\
         [limits]\nmax_connections = 1000\nmax_connections_per_ip = 10\n\
         connect_rate = \"30/m\"\nmessage_rate = 100\nmessage_burst = 200\n\
         bandwidth = \"64KiB/s\"\nrate_exceeded = \"disconnect\"\n",
        "toml",
    )
    .unwrap();
    let b = &config.broker;
    assert_eq!(b.max_topic_length, 1024);
    assert_eq!(b.max_client_id_length, 64);
    assert_eq!(b.clientid_prefixes, ["a-", "b-"]);
    assert_eq!(b.max_subscriptions, 100);
    assert_eq!(
        config.limits,
        ConnectionLimits {
            max_connections: Some(1000),
            max_connections_per_ip: Some(10),
            connect_rate: Some(RateLimit {
                amount: 30,
                per: Duration::from_secs(60),
                burst: 30
            }),
        }
    );
    assert_eq!(
        b.message_rate,
        Some(RateLimit {
            amount: 100,
            per: Duration::from_secs(1),
            burst: 200
        })
    );
    assert_eq!(
        b.bandwidth,
        Some(RateLimit {
            amount: 65536,
            per: Duration::from_secs(1),
            burst: 65536
        })
    );
    assert_eq!(b.rate_exceeded, RateExceeded::Disconnect);
}

#[test]
fn toml_limits_default_to_none_and_zero_rates_mean_no_limit() {
    let config = load("", "toml").unwrap();
    assert_eq!(config.limits, ConnectionLimits::default());
    let b = &config.broker;
    assert_eq!(
        (
            b.max_topic_length,
            b.max_client_id_length,
            b.max_subscriptions
        ),
        (65535, 65535, 0)
    );
    assert!(b.clientid_prefixes.is_empty());
    assert_eq!((b.message_rate, b.bandwidth), (None, None));
    assert_eq!(b.rate_exceeded, RateExceeded::Pause);

    let config = load(
        "[limits]\nconnect_rate = 0\nmessage_rate = \"0/s\"\nbandwidth = 0\n",
        "toml",
    )
    .unwrap();
    assert_eq!(config.limits.connect_rate, None);
    assert_eq!(
        (config.broker.message_rate, config.broker.bandwidth),
        (None, None)
    );
}

#[test]
fn toml_bad_limit_values_name_the_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[limits]\nmax_connections = 0",
            "FILE:2: `limits.max_connections`: must be at least 1 (leave it out for no limit), \
             not 0",
        ),
        (
            "[limits]\nmax_connections_per_ip = -3",
            "FILE:2: `limits.max_connections_per_ip`: must be at least 1 (leave it out for no \
             limit), not -3",
        ),
        (
            "[limits]\nmax_connections = \"ten\"",
            "FILE:2: `limits.max_connections`: expected an integer, got string \"ten\"",
        ),
        (
            "[limits]\nconnect_rate = -5",
            "FILE:2: `limits.connect_rate`: must not be negative, not -5",
        ),
        (
            "[limits]\nconnect_rate = \"ten/s\"",
            "FILE:2: `limits.connect_rate`: expected a whole number, got `ten`",
        ),
        (
            "[limits]\nconnect_rate = \"10/d\"",
            "FILE:2: `limits.connect_rate`: expected a rate such as `10/s` or `30/m`: an \
             amount, `/`, then `s`, `m` or `h`, got `10/d`",
        ),
        (
            "[limits]\nconnect_rate = 1\nconnect_burst = 0",
            "FILE:3: `limits.connect_burst`: must be at least 1, not 0",
        ),
        (
            "[limits]\nconnect_burst = 5",
            "FILE:2: `limits.connect_burst`: needs `limits.connect_rate`, the rate it is the \
             burst of",
        ),
        (
            "[limits]\nmessage_rate = 1.5",
            "FILE:2: `limits.message_rate`: expected a rate: a whole number per second, or a \
             string such as \"10/s\" or \"30/m\", got floating point `1.5`",
        ),
        (
            "[limits]\nmessage_rate = 10\nmessage_burst = -1",
            "FILE:3: `limits.message_burst`: must be at least 1, not -1",
        ),
        (
            "[limits]\nbandwidth = \"64KiB\"",
            "FILE:2: `limits.bandwidth`: expected a rate such as `64KiB/s`: an amount, `/`, \
             then `s`, `m` or `h`, got `64KiB`",
        ),
        (
            "[limits]\nbandwidth = \"lots/s\"",
            "FILE:2: `limits.bandwidth`: expected a size such as `65536`, `256KiB`, `1MiB` or \
             `10MB`, got `lots`",
        ),
        (
            "[limits]\nbandwidth = 1000\nbandwidth_burst = 0",
            "FILE:3: `limits.bandwidth_burst`: must be at least 1 byte",
        ),
        (
            "[limits]\nbandwidth_burst = \"1MiB\"",
            "FILE:2: `limits.bandwidth_burst`: needs `limits.bandwidth`, the rate it is the \
             burst of",
        ),
        (
            "[limits]\nrate_exceeded = \"drop\"",
            "FILE:2: `limits.rate_exceeded`: expected \"pause\" or \"disconnect\", got `drop`",
        ),
        (
            "[mqtt]\nmax_topic_length = 0",
            "FILE:2: `mqtt.max_topic_length`: must be between 1 and 65535, not 0",
        ),
        (
            "[mqtt]\nmax_topic_length = 65536",
            "FILE:2: `mqtt.max_topic_length`: must be between 1 and 65535, not 65536",
        ),
        (
            "[mqtt]\nmax_client_id_length = 0",
            "FILE:2: `mqtt.max_client_id_length`: must be between 1 and 65535, not 0",
        ),
        (
            "[mqtt]\nmax_subscriptions = -1",
            "FILE:2: `mqtt.max_subscriptions`: must be 0 (no limit) or more, not -1",
        ),
        (
            "[mqtt]\nclientid_prefixes = []",
            "FILE:2: `mqtt.clientid_prefixes`: must not be empty: it would refuse every client \
             id (leave it out to allow every client id)",
        ),
        (
            "[mqtt]\nclientid_prefixes = [\n  \"a-\",\n  \"\",\n]",
            "FILE:4: `mqtt.clientid_prefixes[1]`: must not be empty: it would allow every \
             client id",
        ),
        (
            "[mqtt]\nclientid_prefixes = \"a-\"",
            "FILE:2: `mqtt.clientid_prefixes`: expected an array, got string \"a-\"",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(load_err(text, "toml"), *expected, "file {text:?}");
    }
    assert!(
        load_err("[limits]\nmax_conections = 1", "toml").starts_with(
            "FILE:2: `limits.max_conections`: unknown key, expected one of `max_connections`, \
             `max_connections_per_ip`, `connect_rate`, `connect_burst`, `message_rate`, \
             `message_burst`, `bandwidth`, `bandwidth_burst`, `rate_exceeded`"
        )
    );
}

#[test]
fn mosquitto_clientid_prefixes() {
    let config = load("clientid_prefixes   secure- \n", "conf").unwrap();
    assert_eq!(config.broker.clientid_prefixes, ["secure-"]);
    assert_eq!(
        load_err("clientid_prefixes\n", "conf"),
        "FILE:1: `clientid_prefixes`: missing value"
    );
    assert_eq!(
        load_err("clientid_prefixes a-\nclientid_prefixes b-\n", "conf"),
        "FILE:2: `clientid_prefixes`: already set to `a-`; Mosquitto allows only one prefix"
    );
}

#[test]
fn the_example_limits_of_the_documentation_are_valid() {
    // The `[limits]` example of docs/CONFIGURATION.md, kept in step with it.
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CONFIGURATION.md"),
    )
    .unwrap();
    let start = doc.find("```toml\n[limits]").expect("a [limits] example");
    let block = &doc[start + "```toml\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let config = load(block, "toml").unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(config.limits, ConnectionLimits::default());
}
