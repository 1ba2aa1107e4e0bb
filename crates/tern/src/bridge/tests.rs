//! The bridge runtime against in-process brokers: a real remote broker (a `Server` on a
//! loopback port), or a scripted one that answers exactly as a test says, to see when the
//! bridge acknowledges what.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tern_client::{Client, ClientError, ConnectOptions, Event};
use tern_codec::{
    Ack, ConnAck, Decoder, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    SubscriptionOptions,
};
use tern_core::{Broker, BrokerConfig, ListenerPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Bridges;
use crate::config::{
    BridgeAddress, BridgeConfig, BridgeDirection, BridgeStart, BridgeTopic, ListenAddr,
};
use crate::server::{ListenerSpec, Server};

/// Every wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

/// A broker serving MQTT on a loopback port, in this process.
async fn broker() -> (Broker, SocketAddr) {
    let broker = Broker::new(BrokerConfig::default());
    let spec = ListenerSpec {
        bind: ListenAddr::Tcp("127.0.0.1:0".parse().expect("address")),
        max_connections: None,
        policy: ListenerPolicy::default(),
        tls: None,
        websocket: None,
        authenticator: None,
        proxy_protocol: None,
    };
    let server = Server::bind(broker.clone(), vec![spec])
        .await
        .expect("bind");
    let addr = server.local_addrs()[0];
    tokio::spawn(server.run(std::future::pending()));
    (broker, addr)
}

fn bridge(name: &str, remote: SocketAddr, topics: Vec<BridgeTopic>) -> BridgeConfig {
    BridgeConfig {
        name: name.to_owned(),
        addresses: vec![BridgeAddress {
            host: remote.ip().to_string(),
            port: remote.port(),
        }],
        round_robin: false,
        topics,
        remote_client_id: Some(format!("{name}.remote")),
        local_client_id: None,
        remote_username: None,
        remote_password: None,
        protocol: ProtocolVersion::V5,
        clean_session: false,
        local_clean_session: false,
        keep_alive: Duration::from_secs(60),
        try_private: true,
        notifications: true,
        notifications_local_only: false,
        notification_topic: None,
        start_type: BridgeStart::Automatic,
        restart_base: Duration::ZERO,
        restart_cap: Duration::from_millis(200),
        threshold: 10,
        idle_timeout: Duration::from_secs(60),
        max_queued_messages: None,
        tls: None,
    }
}

fn topic(
    pattern: &str,
    direction: BridgeDirection,
    qos: QoS,
    local: &str,
    remote: &str,
) -> BridgeTopic {
    BridgeTopic::new(pattern, direction, qos, local, remote)
}

async fn client(addr: SocketAddr, id: &str) -> Client {
    Client::connect(&ConnectOptions::to_addr(addr, id, ProtocolVersion::V5))
        .await
        .expect("connect")
}

async fn subscribe(c: &mut Client, filter: &str, qos: QoS) {
    let reasons = c
        .subscribe(&[(filter, SubscriptionOptions::with_qos(qos))], None)
        .await
        .expect("subscribe");
    assert!(!reasons[0].is_error(), "{filter}: {reasons:?}");
}

fn message(topic: &str, payload: &str, qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: None,
        properties: Default::default(),
        payload: Bytes::from(payload.to_owned()),
    }
}

/// The next message `c` receives, within [`WAIT`].
async fn next_message(c: &mut Client) -> Publish {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Message(p) = c.next_event().await.expect("event") {
                return p;
            }
        }
    })
    .await
    .expect("a message in time")
}

/// Nothing more arrives within a short quiet window.
async fn expect_no_message(c: &mut Client) {
    let quiet = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Event::Message(p) = c.next_event().await.expect("event") {
                return p;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "unexpected message: {quiet:?}");
}

/// Polls `check` until it holds, within [`WAIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(broker: &Broker, name: &str) -> Option<super::BridgeSnapshot> {
    super::snapshots(broker)
        .into_iter()
        .find(|b| b.name == name)
}

async fn connected(broker: &Broker, name: &str) {
    eventually(&format!("bridge {name} connected"), || {
        state(broker, name).is_some_and(|s| s.connected())
    })
    .await;
}

#[tokio::test]
async fn messages_go_out_and_come_in_with_their_prefixes_at_the_qos_of_the_topic() {
    let (local, local_addr) = broker().await;
    let (_remote, remote_addr) = broker().await;
    let bridges = Bridges::new(local.clone());
    bridges.apply(&[bridge(
        "b1",
        remote_addr,
        vec![
            topic(
                "t/#",
                BridgeDirection::Out,
                QoS::AtLeastOnce,
                "edge/",
                "hq/site/",
            ),
            topic(
                "cmd/#",
                BridgeDirection::In,
                QoS::ExactlyOnce,
                "edge/",
                "hq/site/",
            ),
        ],
    )]);
    connected(&local, "b1").await;

    let mut remote_sub = client(remote_addr, "remote-sub").await;
    subscribe(&mut remote_sub, "hq/#", QoS::ExactlyOnce).await;
    let mut local_sub = client(local_addr, "local-sub").await;
    subscribe(&mut local_sub, "edge/#", QoS::ExactlyOnce).await;

    let mut local_pub = client(local_addr, "local-pub").await;
    // QoS 2 published, topic QoS 1: carried at QoS 1.
    local_pub
        .publish(message("edge/t/1", "out", QoS::ExactlyOnce))
        .await
        .expect("publish");
    let p = next_message(&mut remote_sub).await;
    assert_eq!(
        (&*p.topic, p.payload.as_ref(), p.qos),
        ("hq/site/t/1", &b"out"[..], QoS::AtLeastOnce)
    );
    // The local subscriber gets its own copy only: nothing comes back from the remote.
    let own = next_message(&mut local_sub).await;
    assert_eq!(own.topic.to_string(), "edge/t/1");

    let mut remote_pub = client(remote_addr, "remote-pub").await;
    remote_pub
        .publish(message("hq/site/cmd/go", "in", QoS::ExactlyOnce))
        .await
        .expect("publish");
    let p = next_message(&mut local_sub).await;
    assert_eq!(
        (&*p.topic, p.payload.as_ref(), p.qos),
        ("edge/cmd/go", &b"in"[..], QoS::ExactlyOnce)
    );
    // The remote subscriber has its own copy; the bridge does not send it out again.
    assert_eq!(
        next_message(&mut remote_sub).await.topic.to_string(),
        "hq/site/cmd/go"
    );
    expect_no_message(&mut remote_sub).await;
    expect_no_message(&mut local_sub).await;

    eventually("counters", || {
        state(&local, "b1").is_some_and(|s| s.forwarded_out == 1 && s.forwarded_in == 1)
    })
    .await;
    bridges.stop().await;
}

#[tokio::test]
async fn both_directions_do_not_loop_and_keep_the_retain_flag() {
    let (local, local_addr) = broker().await;
    let (_remote, remote_addr) = broker().await;
    let bridges = Bridges::new(local.clone());
    bridges.apply(&[bridge(
        "loop",
        remote_addr,
        vec![topic(
            "x/#",
            BridgeDirection::Both,
            QoS::AtLeastOnce,
            "",
            "",
        )],
    )]);
    connected(&local, "loop").await;
    let mut local_sub = client(local_addr, "ls").await;
    subscribe(&mut local_sub, "x/#", QoS::AtLeastOnce).await;
    // Retain As Published: the RETAIN flag as the bridge published it.
    let mut remote_sub = client(remote_addr, "rs").await;
    let options = SubscriptionOptions {
        retain_as_published: true,
        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
    };
    remote_sub
        .subscribe(&[("x/#", options)], None)
        .await
        .expect("subscribe");

    let mut local_pub = client(local_addr, "lp").await;
    let mut retained = message("x/r", "kept", QoS::AtLeastOnce);
    retained.retain = true;
    local_pub.publish(retained).await.expect("publish");
    let p = next_message(&mut remote_sub).await;
    assert_eq!((&*p.topic, p.retain), ("x/r", true));
    assert_eq!(next_message(&mut local_sub).await.topic.to_string(), "x/r");
    expect_no_message(&mut local_sub).await;
    expect_no_message(&mut remote_sub).await;
    // Retained on the remote broker too.
    let mut late = client(remote_addr, "late").await;
    subscribe(&mut late, "x/r", QoS::AtLeastOnce).await;
    let p = next_message(&mut late).await;
    assert_eq!((p.payload.as_ref(), p.retain), (&b"kept"[..], true));
    bridges.stop().await;
}

#[tokio::test]
async fn the_state_is_retained_on_both_brokers_and_goes_to_0_when_the_bridge_stops() {
    let (local, local_addr) = broker().await;
    let (_remote, remote_addr) = broker().await;
    let bridges = Bridges::new(local.clone());
    bridges.apply(&[bridge(
        "st",
        remote_addr,
        vec![topic("a", BridgeDirection::Out, QoS::AtMostOnce, "", "")],
    )]);
    connected(&local, "st").await;
    let topic = "$SYS/broker/connection/st/state";
    let mut local_watch = client(local_addr, "lw").await;
    subscribe(&mut local_watch, topic, QoS::AtLeastOnce).await;
    let mut remote_watch = client(remote_addr, "rw").await;
    subscribe(&mut remote_watch, topic, QoS::AtLeastOnce).await;
    for c in [&mut local_watch, &mut remote_watch] {
        let p = next_message(c).await;
        assert_eq!(
            (&*p.topic, p.payload.as_ref(), p.retain),
            (topic, &b"1"[..], true)
        );
    }

    bridges.stop().await;
    assert_eq!(next_message(&mut local_watch).await.payload.as_ref(), b"0");
    assert_eq!(next_message(&mut remote_watch).await.payload.as_ref(), b"0");
    assert!(state(&local, "st").is_none(), "unregistered once stopped");
}

#[tokio::test]
async fn messages_wait_in_the_local_session_while_the_remote_is_down_then_all_arrive() {
    let (local, local_addr) = broker().await;
    // A port with nothing on it yet.
    let reserved = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let remote_addr = reserved.local_addr().expect("address");
    drop(reserved);
    let bridges = Bridges::new(local.clone());
    let config = bridge(
        "q",
        remote_addr,
        vec![topic("q/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    bridges.apply(std::slice::from_ref(&config));
    let local_id = super::runtime::client_ids(&config).0;
    eventually("the bridge's session", || {
        local.session(&local_id).is_some()
    })
    .await;

    let mut publisher = client(local_addr, "p").await;
    for i in 0..50 {
        publisher
            .publish(message(&format!("q/{i}"), &i.to_string(), QoS::AtLeastOnce))
            .await
            .expect("publish");
    }
    let queued = state(&local, "q").expect("registered").queued;
    assert_eq!(queued, 50, "every message waits for the remote side");
    assert!(!state(&local, "q").expect("registered").connected());

    // The remote broker comes up on that port.
    let broker_remote = Broker::new(BrokerConfig::default());
    let spec = ListenerSpec {
        bind: ListenAddr::Tcp(remote_addr),
        max_connections: None,
        policy: ListenerPolicy::default(),
        tls: None,
        websocket: None,
        authenticator: None,
        proxy_protocol: None,
    };
    // Subscribed before the bridge gets there: a persistent session made in-process.
    let server = Server::bind(broker_remote.clone(), vec![spec])
        .await
        .expect("bind");
    let mut sub = {
        let mut o = ConnectOptions::to_addr(remote_addr, "sub", ProtocolVersion::V5);
        o.clean_start = true;
        tokio::spawn(server.run(std::future::pending()));
        let mut c = Client::connect(&o).await.expect("connect");
        subscribe(&mut c, "q/#", QoS::AtLeastOnce).await;
        c
    };
    let mut got: Vec<String> = Vec::new();
    while got.len() < 50 {
        let p = next_message(&mut sub).await;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(got, expected, "all of them, in order");
    eventually("the queue drained", || {
        state(&local, "q").is_some_and(|s| s.queued == 0 && s.forwarded_out == 50)
    })
    .await;
    bridges.stop().await;
}

#[tokio::test]
async fn the_bridges_client_id_cannot_be_taken_by_a_network_client() {
    let (local, local_addr) = broker().await;
    let (_remote, remote_addr) = broker().await;
    let bridges = Bridges::new(local.clone());
    let config = bridge(
        "own",
        remote_addr,
        vec![topic("o/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    bridges.apply(std::slice::from_ref(&config));
    connected(&local, "own").await;
    let local_id = super::runtime::client_ids(&config).0;
    let intruder = Client::connect(&ConnectOptions::to_addr(
        local_addr,
        local_id.as_str(),
        ProtocolVersion::V5,
    ))
    .await;
    assert!(
        matches!(
            intruder,
            Err(ClientError::Refused(ReasonCode::NOT_AUTHORIZED))
        ),
        "{:?}",
        intruder.err()
    );
    // The bridge still carries messages.
    let mut remote_sub = client(remote_addr, "rs").await;
    subscribe(&mut remote_sub, "o/#", QoS::AtLeastOnce).await;
    let mut p = client(local_addr, "p").await;
    p.publish(message("o/1", "still", QoS::AtLeastOnce))
        .await
        .expect("publish");
    assert_eq!(
        next_message(&mut remote_sub).await.payload.as_ref(),
        b"still"
    );
    assert!(state(&local, "own").expect("registered").connected());
    bridges.stop().await;
}

// ---------------------------------------------------------------------------------------------
// A scripted remote broker.

/// One connection to the scripted remote broker.
struct Remote {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Remote {
    /// Accepts the bridge's connection and answers its CONNECT and SUBSCRIBE (if any).
    async fn accept(listener: &TcpListener, session_present: bool) -> Self {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the bridge connects in time")
            .expect("accept");
        let mut remote = Self {
            stream,
            decoder: Decoder::new(1 << 20),
            buf: BytesMut::new(),
        };
        let Packet::Connect(connect) = remote.recv().await else {
            panic!("expected CONNECT");
        };
        assert_eq!(connect.protocol, ProtocolVersion::V5);
        remote
            .send(&Packet::ConnAck(ConnAck {
                session_present,
                ..ConnAck::default()
            }))
            .await;
        remote
    }

    async fn recv(&mut self) -> Packet {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).expect("decode") {
                    return p;
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "the bridge closed the connection");
            }
        })
        .await
        .expect("a packet in time")
    }

    /// The next PUBLISH, skipping the bridge's state notifications.
    async fn recv_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Packet::Publish(p) if p.topic.starts_with("$SYS/") => {
                    if let Some(id) = p.packet_id {
                        self.send(&Packet::PubAck(Ack::new(id))).await;
                    }
                }
                Packet::Publish(p) => return p,
                Packet::Subscribe(s) => {
                    let reasons = s.filters.iter().map(|_| ReasonCode::SUCCESS).collect();
                    self.send(&Packet::SubAck(SubAck {
                        packet_id: s.packet_id,
                        properties: Default::default(),
                        reasons,
                    }))
                    .await;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V5, &mut out)
            .expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }
}

fn local_inflight(broker: &Broker, local_id: &str) -> usize {
    broker.session(local_id).map_or(0, |s| s.inflight)
}

/// A broker bridging `a/#` out at QoS 2 to a raw remote this test plays, connected.
struct RawRemote {
    local: Broker,
    local_addr: SocketAddr,
    /// The bridge's client id on the local broker.
    local_id: String,
    bridges: Bridges,
    listener: TcpListener,
    remote: Remote,
}

impl RawRemote {
    async fn bridge(name: &str) -> Self {
        let (local, local_addr) = broker().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let config = bridge(
            name,
            listener.local_addr().expect("address"),
            vec![topic("a/#", BridgeDirection::Out, QoS::ExactlyOnce, "", "")],
        );
        let local_id = super::runtime::client_ids(&config).0;
        let bridges = Bridges::new(local.clone());
        bridges.apply(std::slice::from_ref(&config));
        let remote = Remote::accept(&listener, false).await;
        connected(&local, name).await;
        Self {
            local,
            local_addr,
            local_id,
            bridges,
            listener,
            remote,
        }
    }
}

#[tokio::test]
async fn a_local_message_is_acknowledged_only_once_the_remote_acknowledged_it() {
    let RawRemote {
        local,
        local_addr,
        local_id,
        bridges,
        listener: _listener,
        mut remote,
    } = RawRemote::bridge("ack").await;

    let mut p = client(local_addr, "p").await;
    p.publish(message("a/1", "one", QoS::AtLeastOnce))
        .await
        .expect("publish");
    let got = remote.recv_publish().await;
    assert_eq!(
        (&*got.topic, got.qos, got.dup),
        ("a/1", QoS::AtLeastOnce, false)
    );
    // Not acknowledged by the remote: still in flight in the bridge's session here.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(local_inflight(&local, &local_id), 1);
    remote
        .send(&Packet::PubAck(Ack::new(got.packet_id.expect("id"))))
        .await;
    eventually("acknowledged locally", || {
        local.session(&local_id).is_some_and(|s| s.inflight == 0)
    })
    .await;

    // QoS 2: the bridge answers PUBREC here only after the remote's PUBCOMP.
    p.send_publish(message("a/2", "two", QoS::ExactlyOnce))
        .await
        .expect("publish");
    let got = remote.recv_publish().await;
    let id = got.packet_id.expect("id");
    assert_eq!(got.qos, QoS::ExactlyOnce);
    remote.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(remote.recv().await, Packet::PubRel(Ack::new(id)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        local_inflight(&local, &local_id),
        1,
        "PUBREC awaits the PUBCOMP"
    );
    remote.send(&Packet::PubComp(Ack::new(id))).await;
    eventually("completed locally", || {
        local.session(&local_id).is_some_and(|s| s.inflight == 0)
    })
    .await;
    bridges.stop().await;
}

#[tokio::test]
async fn what_the_remote_did_not_acknowledge_is_sent_again_after_a_reconnection() {
    let RawRemote {
        local,
        local_addr,
        local_id,
        bridges,
        listener,
        mut remote,
    } = RawRemote::bridge("again").await;
    let mut p = client(local_addr, "p").await;
    p.publish(message("a/1", "one", QoS::AtLeastOnce))
        .await
        .expect("publish");
    p.publish(message("a/2", "two", QoS::ExactlyOnce))
        .await
        .expect("publish");
    let first = remote.recv_publish().await;
    let second = remote.recv_publish().await;
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"one"[..], &b"two"[..])
    );
    // Gone without acknowledging, and unreachable for a while.
    let port = listener.local_addr().expect("address");
    drop(remote);
    drop(listener);
    eventually("an attempt refused", || {
        state(&local, "again")
            .and_then(|s| s.last_error)
            .is_some_and(|e| e.starts_with("connection error"))
    })
    .await;
    let listener = TcpListener::bind(port).await.expect("the same port again");

    // It kept the session: the same messages again, with DUP and their identifiers.
    let mut remote = Remote::accept(&listener, true).await;
    let again = [remote.recv_publish().await, remote.recv_publish().await];
    assert_eq!(
        again
            .iter()
            .map(|p| (p.packet_id, p.dup))
            .collect::<Vec<_>>(),
        vec![(first.packet_id, true), (second.packet_id, true)]
    );
    assert_eq!(local_inflight(&local, &local_id), 2);
    drop(remote);

    // It lost the session: sent again as new messages.
    let mut remote = Remote::accept(&listener, false).await;
    let fresh = [remote.recv_publish().await, remote.recv_publish().await];
    assert_eq!(
        fresh
            .iter()
            .map(|p| (p.payload.as_ref(), p.dup))
            .collect::<Vec<_>>(),
        vec![(&b"one"[..], false), (&b"two"[..], false)]
    );
    remote
        .send(&Packet::PubAck(Ack::new(fresh[0].packet_id.expect("id"))))
        .await;
    let id = fresh[1].packet_id.expect("id");
    remote.send(&Packet::PubRec(Ack::new(id))).await;
    assert_eq!(remote.recv().await, Packet::PubRel(Ack::new(id)));
    remote.send(&Packet::PubComp(Ack::new(id))).await;
    eventually("both acknowledged locally", || {
        local
            .session(&local_id)
            .is_some_and(|s| s.inflight == 0 && s.queued == 0)
    })
    .await;
    assert_eq!(state(&local, "again").expect("registered").forwarded_out, 2);
    bridges.stop().await;
}

#[tokio::test]
async fn stopping_sends_the_state_then_disconnect_to_the_remote() {
    let (local, _) = broker().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = bridge("bye", listener.local_addr().expect("address"), vec![]);
    let bridges = Bridges::new(local.clone());
    bridges.apply(std::slice::from_ref(&config));
    let mut remote = Remote::accept(&listener, false).await;
    let Packet::Publish(up) = remote.recv().await else {
        panic!("expected the state")
    };
    assert_eq!(
        (&*up.topic, up.payload.as_ref(), up.retain),
        ("$SYS/broker/connection/bye/state", &b"1"[..], true)
    );
    remote
        .send(&Packet::PubAck(Ack::new(up.packet_id.expect("id"))))
        .await;
    connected(&local, "bye").await;
    let stopping = tokio::spawn({
        let bridges = bridges.clone();
        async move { bridges.stop().await }
    });
    let Packet::Publish(down) = remote.recv().await else {
        panic!("expected the state")
    };
    assert_eq!(down.payload.as_ref(), b"0");
    remote
        .send(&Packet::PubAck(Ack::new(down.packet_id.expect("id"))))
        .await;
    assert!(
        matches!(remote.recv().await, Packet::Disconnect(d) if d.reason == ReasonCode::SUCCESS)
    );
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stopped in time")
        .expect("stop");
}

#[tokio::test]
async fn a_reload_restarts_a_changed_bridge_starts_new_ones_and_stops_removed_ones() {
    let (local, local_addr) = broker().await;
    let (_remote, remote_addr) = broker().await;
    let bridges = Bridges::new(local.clone());
    let a = bridge(
        "a",
        remote_addr,
        vec![topic("a/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    assert!(bridges.apply(std::slice::from_ref(&a)).is_empty());
    connected(&local, "a").await;
    assert!(
        bridges.apply(std::slice::from_ref(&a)).is_empty(),
        "unchanged: untouched"
    );
    assert_eq!(state(&local, "a").expect("registered").connects, 1);

    // New topics for `a`, a new bridge `b`.
    let a2 = bridge(
        "a",
        remote_addr,
        vec![topic(
            "a2/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            "",
            "",
        )],
    );
    let b = bridge("b", remote_addr, vec![]);
    let changes = bridges.apply(&[a2.clone(), b]);
    assert_eq!(
        changes,
        vec!["bridge a: restarted with its new settings".to_owned()]
    );
    connected(&local, "b").await;
    connected(&local, "a").await;
    let mut remote_sub = client(remote_addr, "rs").await;
    subscribe(&mut remote_sub, "#", QoS::AtLeastOnce).await;
    let mut p = client(local_addr, "p").await;
    p.publish(message("a/old", "x", QoS::AtLeastOnce))
        .await
        .expect("publish");
    p.publish(message("a2/new", "y", QoS::AtLeastOnce))
        .await
        .expect("publish");
    let got = next_message(&mut remote_sub).await;
    assert_eq!(&*got.topic, "a2/new", "the old topic is no longer carried");

    let changes = bridges.apply(std::slice::from_ref(&a2));
    assert_eq!(
        changes,
        vec!["bridge b: stopped (removed from the file)".to_owned()]
    );
    eventually("b unregistered", || state(&local, "b").is_none()).await;
    bridges.stop().await;
}
