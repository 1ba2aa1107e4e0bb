//! `$SYS/broker/...` topics on the real server: Mosquitto's names and units, values against known
//! traffic (read with a raw client and with `mosquitto_sub`), retained values for late
//! subscribers, only for clients the ACL lets read them, and none with `sys_interval` 0.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

/// How long values may take to reach what the traffic says (a few 1 s intervals).
const SETTLE: Duration = Duration::from_secs(10);

const V311: ProtocolVersion = ProtocolVersion::V311;

/// Reads the `$SYS` PUBLISHes `c` receives until every topic of `want` has its value as its
/// latest; returns the latest value of every topic seen. Fails after [`SETTLE`], showing what
/// arrived.
async fn until_values(c: &mut RawClient, want: &[(&str, String)]) -> HashMap<String, String> {
    until_values_within(c, want, SETTLE).await
}

/// [`until_values`] with a deadline of `limit`.
async fn until_values_within(
    c: &mut RawClient,
    want: &[(&str, String)],
    limit: Duration,
) -> HashMap<String, String> {
    let deadline = Instant::now() + limit;
    let mut latest: HashMap<String, String> = HashMap::new();
    loop {
        if want
            .iter()
            .all(|(t, v)| latest.get(*t).is_some_and(|got| got == v))
        {
            return latest;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left).await {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(p.qos, QoS::AtMostOnce, "$SYS messages go out at QoS 0");
                latest.insert(
                    p.topic.to_string(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                );
            }
            Ok(Some(other)) => panic!("expected $SYS PUBLISHes, got {other:?}"),
            Ok(None) => panic!("connection closed"),
            Err(_) => {
                let mut seen: Vec<_> = latest.iter().collect();
                seen.sort();
                panic!("values not reached within {limit:?}: want {want:?}, latest {seen:#?}");
            }
        }
    }
}

fn sys(name: &str) -> String {
    format!("$SYS/broker/{name}")
}

/// The size of `packet` on the wire.
fn wire_len(packet: &Packet) -> usize {
    let mut out = BytesMut::new();
    packet.encode(V311, &mut out).expect("encode");
    out.len()
}

#[tokio::test]
async fn sys_topics_report_the_traffic_of_known_clients() {
    let tern = Tern::start_config("sys_interval = 1\n", "toml");
    // 3 publishers, a data subscriber and the $SYS reader: 5 CONNECTs, 2 SUBSCRIBEs.
    let mut publishers = Vec::new();
    for i in 1..=3 {
        publishers.push(RawClient::connect(tern.addr, V311, &format!("pub{i}")).await);
    }
    let mut data = RawClient::connect(tern.addr, V311, "data").await;
    assert_eq!(
        data.subscribe("data/#", QoS::AtMostOnce).await,
        [ReasonCode::SUCCESS]
    );
    let mut reader = RawClient::connect(tern.addr, V311, "reader").await;
    assert_eq!(
        reader.subscribe("$SYS/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    // 10 QoS 1 messages: 7 on data/... to the subscriber, 3 retained on keep/... to nobody.
    let mut sent_bytes = 0;
    let mut n = 0;
    for (i, p) in publishers.iter_mut().enumerate() {
        for _ in 0..[4, 3, 3][i] {
            n += 1;
            let (topic, retain) = if i == 2 {
                (format!("keep/{n}"), true)
            } else {
                (format!("data/{n}"), false)
            };
            let payload = format!("m{n:02}");
            sent_bytes += payload.len();
            assert_eq!(
                p.publish(&topic, payload.as_bytes(), QoS::AtLeastOnce, retain)
                    .await,
                ReasonCode::SUCCESS
            );
        }
    }
    for _ in 0..7 {
        let p = data.recv_publish().await;
        assert!(p.topic.starts_with("data/"));
    }
    assert_eq!(sent_bytes, 30);

    // Packets received: 5 CONNECT + 2 SUBSCRIBE + 10 PUBLISH; sent: 5 CONNACK + 2 SUBACK +
    // 10 PUBACK + 7 PUBLISH. $SYS messages themselves count in nothing.
    let want = [
        (sys("clients/connected"), "5".to_owned()),
        (sys("clients/active"), "5".to_owned()),
        (sys("clients/total"), "5".to_owned()),
        (sys("clients/maximum"), "5".to_owned()),
        (sys("clients/disconnected"), "0".to_owned()),
        (sys("clients/expired"), "0".to_owned()),
        (sys("messages/received"), "17".to_owned()),
        (sys("messages/sent"), "24".to_owned()),
        (sys("publish/messages/received"), "10".to_owned()),
        (sys("publish/messages/sent"), "7".to_owned()),
        (sys("publish/messages/dropped"), "0".to_owned()),
        (sys("publish/bytes/received"), "30".to_owned()),
        (sys("publish/bytes/sent"), "21".to_owned()),
        (sys("retained messages/count"), "3".to_owned()),
        (sys("subscriptions/count"), "2".to_owned()),
        (sys("shared_subscriptions/count"), "0".to_owned()),
        (sys("messages/stored"), "0".to_owned()),
        (sys("store/messages/count"), "0".to_owned()),
        (sys("store/messages/bytes"), "0".to_owned()),
    ];
    let want: Vec<(&str, String)> = want.iter().map(|(t, v)| (t.as_str(), v.clone())).collect();
    let latest = until_values(&mut reader, &want).await;
    let version = format!("tern version {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(latest.get(&sys("version")), Some(&version));
    let uptime = &latest[&sys("uptime")];
    assert!(
        uptime.ends_with(" seconds") && uptime.trim_end_matches(" seconds").parse::<u64>().is_ok(),
        "uptime {uptime:?}"
    );
    for series in [
        "messages/received",
        "messages/sent",
        "publish/received",
        "publish/sent",
        "publish/dropped",
        "bytes/received",
        "bytes/sent",
        "sockets",
        "connections",
    ] {
        for window in ["1min", "5min", "15min"] {
            let topic = sys(&format!("load/{series}/{window}"));
            let value = latest.get(&topic).unwrap_or_else(|| panic!("no {topic}"));
            let parsed: f64 = value.parse().unwrap_or_else(|_| panic!("{topic}: {value}"));
            assert!(parsed >= 0.0 && value.contains('.'), "{topic}: {value}");
        }
    }
    assert!(
        !latest.keys().any(|t| t.contains("/heap/")),
        "no heap topics"
    );

    // Network bytes: exactly the packets the clients sent.
    let connects: usize = ["pub1", "pub2", "pub3", "data", "reader"]
        .iter()
        .map(|id| wire_len(&connect(V311, id, true)))
        .sum();
    let subscribes = wire_len(&subscribe_packet("data/#", QoS::AtMostOnce))
        + wire_len(&subscribe_packet("$SYS/#", QoS::AtLeastOnce));
    let publishes: usize = (1..=10)
        .map(|n| {
            let topic = if n > 7 {
                format!("keep/{n}")
            } else {
                format!("data/{n}")
            };
            let id = tern_codec::PacketId::new(0x0101);
            wire_len(&Packet::Publish(publish(
                &topic,
                format!("m{n:02}").as_bytes(),
                QoS::AtLeastOnce,
                n > 7,
                id,
            )))
        })
        .sum();
    let received = connects + subscribes + publishes;
    until_values(
        &mut reader,
        &[(&sys("bytes/received"), received.to_string())],
    )
    .await;

    // Values stay put while nothing happens: only the uptime and the decaying loads move.
    only_uptime_and_loads_change(&mut reader).await;
}

/// A SUBSCRIBE as [`RawClient::subscribe`] sends it.
fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(tern_codec::Subscribe {
        packet_id: tern_codec::PacketId::new(1).expect("non-zero"),
        properties: Default::default(),
        filters: vec![(
            filter.into(),
            tern_codec::SubscriptionOptions::with_qos(qos),
        )],
    })
}

/// Once the interval under way is over, only `uptime` and `load/...` topics may be published
/// again (for two more intervals): the counters do not move because of the `$SYS` messages
/// themselves. An interval's messages start with `uptime`.
async fn only_uptime_and_loads_change(c: &mut RawClient) {
    let deadline = Instant::now() + Duration::from_millis(3500);
    let mut uptimes = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left).await {
            Err(_) => break,
            Ok(Some(Packet::Publish(p))) => {
                let topic = p.topic.to_string();
                if topic == sys("uptime") {
                    uptimes += 1;
                } else if uptimes > 0 && !topic.starts_with(&sys("load/")) {
                    panic!(
                        "{topic} changed to {:?} with no traffic",
                        String::from_utf8_lossy(&p.payload)
                    );
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(uptimes >= 2, "uptime is published every interval");
}

#[tokio::test]
async fn a_late_subscriber_gets_the_retained_values_and_mosquitto_sub_reads_them() {
    let tern = Tern::start_config("sys_interval = 1\n", "toml");
    let mut publisher = RawClient::connect(tern.addr, V311, "publisher").await;
    for (topic, payload) in [("r/a", "12345"), ("r/b", "678"), ("x", "9")] {
        publisher
            .publish(topic, payload.as_bytes(), QoS::AtMostOnce, topic != "x")
            .await;
    }
    let mut reader = RawClient::connect(tern.addr, V311, "reader").await;
    reader.subscribe("$SYS/broker/#", QoS::AtMostOnce).await;
    until_values(
        &mut reader,
        &[
            (&sys("publish/messages/received"), "3".to_owned()),
            (&sys("publish/bytes/received"), "9".to_owned()),
            (&sys("retained messages/count"), "2".to_owned()),
        ],
    )
    .await;

    // A new subscriber gets the version at once, retained.
    let mut late = RawClient::connect(tern.addr, V311, "late").await;
    late.subscribe("$SYS/broker/version", QoS::AtMostOnce).await;
    let p = late.recv_publish().await;
    assert_eq!(&p.topic[..], "$SYS/broker/version");
    assert!(p.retain, "the version is retained");
    assert_eq!(
        &p.payload[..],
        format!("tern version {}", env!("CARGO_PKG_VERSION")).as_bytes()
    );

    // mosquitto_sub sees the same values: retained, so delivered as soon as it subscribes.
    let port = tern.addr.port().to_string();
    let out = run_bounded(
        Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-v",
            "-C",
            "4",
            "-W",
            "10",
            "-t",
            "$SYS/broker/version",
            "-t",
            "$SYS/broker/publish/messages/received",
            "-t",
            "$SYS/broker/publish/bytes/received",
            "-t",
            "$SYS/broker/retained messages/count",
        ]),
        None,
        Duration::from_secs(15),
    );
    assert!(out.status.success(), "mosquitto_sub: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    let version = format!(
        "$SYS/broker/version tern version {}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        lines,
        [
            "$SYS/broker/publish/bytes/received 9",
            "$SYS/broker/publish/messages/received 3",
            "$SYS/broker/retained messages/count 2",
            version.as_str(),
        ]
    );
}

#[tokio::test]
async fn only_clients_granted_read_on_sys_receive_sys_topics() {
    let acl = TempFile::new(
        "acl",
        "user alice\ntopic read $SYS/#\ntopic readwrite t/#\n\nuser bob\ntopic readwrite t/#\n",
    );
    let config = format!("sys_interval = 1\nacl_file = \"{}\"\n", acl.path.display());
    let tern = Tern::start_config(&config, "toml");
    let login = |user: &str| {
        let mut c = connect_packet(V311, user, true);
        c.username = Some(user.into());
        c
    };
    let mut alice = connected(&tern, login("alice")).await;
    let mut bob = connected(&tern, login("bob")).await;
    assert_eq!(
        alice.subscribe("$SYS/#", QoS::AtMostOnce).await,
        [ReasonCode::SUCCESS]
    );
    // 3.1.1 has one failure code.
    assert_eq!(
        bob.subscribe("$SYS/#", QoS::AtMostOnce).await,
        [ReasonCode::UNSPECIFIED_ERROR]
    );
    assert_eq!(
        bob.subscribe("$SYS/broker/uptime", QoS::AtMostOnce).await,
        [ReasonCode::UNSPECIFIED_ERROR]
    );
    assert_eq!(
        bob.subscribe("t/#", QoS::AtMostOnce).await,
        [ReasonCode::SUCCESS]
    );
    // Alice sees the uptime change (a whole interval went by) ...
    let first = loop {
        let p = alice.recv_publish().await;
        if &p.topic[..] == "$SYS/broker/uptime" {
            break p.payload;
        }
    };
    loop {
        let p = alice.recv_publish().await;
        if &p.topic[..] == "$SYS/broker/uptime" && p.payload != first {
            break;
        }
    }
    // ... while Bob got nothing at all.
    bob.expect_nothing().await;
    drop(acl);
}

#[tokio::test]
async fn sys_interval_0_publishes_no_sys_topics() {
    let tern = Tern::start_config("sys_interval = 0\n", "toml");
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.subscribe("$SYS/#", QoS::AtMostOnce).await;
    c.expect_nothing().await;
    // Other traffic still flows.
    c.subscribe("t", QoS::AtMostOnce).await;
    c.publish("t", b"x", QoS::AtMostOnce, false).await;
    assert_eq!(&c.recv_publish().await.payload[..], b"x");
}

#[tokio::test]
async fn a_mosquitto_conf_sys_interval_is_honoured() {
    let tern = Tern::start_config("sys_interval 1\nallow_anonymous true\n", "conf");
    let mut c = RawClient::connect(tern.addr, V311, "c").await;
    c.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    // The first interval ran before the client connected; the next ones come every second
    // (the default, 10 s, would not make it in time).
    let topic = sys("clients/connected");
    until_values_within(&mut c, &[(&topic, "1".to_owned())], Duration::from_secs(3)).await;
}
