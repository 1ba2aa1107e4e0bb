//! The Prometheus endpoint (`GET /metrics` on the admin listener) of the real server, scraped with
//! a plain HTTP/1.1 request: OpenMetrics text whose values follow known traffic, the store commit
//! histogram, credentials unless `metrics_anonymous`, and the same numbers as the JSON stats.

mod common;

use std::collections::HashMap;

use common::*;
use tern_codec::{ConnectProperties, Packet, ProtocolVersion, QoS, ReasonCode};

const CONFIG: &str = "sys_interval = 0\n\
    [admin]\n\
    [[admin.api_keys]]\n\
    key = \"ops\"\n\
    secret = \"s3cret-s3cret\"\n";

/// The samples of an OpenMetrics text: `name{labels}` (labels as written) → value. Checks that
/// the text ends with `# EOF` and that every sample follows a `# TYPE` and `# HELP`.
fn samples(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "ends with # EOF: {text}");
    let mut out = HashMap::new();
    let (mut typed, mut helped) = (None::<String>, None::<String>);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed = rest.split(' ').next().map(str::to_owned);
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped = rest.split(' ').next().map(str::to_owned);
        } else if line != "# EOF" && !line.starts_with("# UNIT ") {
            let family = typed.as_deref().expect("a # TYPE before samples");
            assert_eq!(helped.as_deref(), Some(family), "# HELP for {family}");
            assert!(line.starts_with(family), "{line} belongs to {family}");
            let (series, value) = line.rsplit_once(' ').expect("name value");
            out.insert(series.to_owned(), value.parse().expect("a number"));
        }
    }
    out
}

async fn scrape(tern: &Tern, auth: Option<&str>) -> (u16, Option<String>, String) {
    let (status, headers, body) = tern.http("GET", "/metrics", auth, None).await;
    (
        status,
        header(&headers, "content-type").map(str::to_owned),
        body,
    )
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no sample {series}"))
}

#[tokio::test]
async fn metrics_follow_known_traffic() {
    let tern = Tern::start_config(CONFIG, "toml");
    let auth = basic_auth("ops", "s3cret-s3cret");

    // A durable MQTT 5 subscriber (its session goes through the store), and a publisher.
    let mut connect = connect_packet(ProtocolVersion::V5, "sub", true);
    connect.properties = ConnectProperties {
        session_expiry_interval: Some(300),
        ..ConnectProperties::default()
    };
    let mut sub = connected(&tern, connect).await;
    assert_eq!(
        sub.subscribe("m/#", QoS::ExactlyOnce).await,
        [ReasonCode::GRANTED_QOS_2]
    );
    let mut publisher = RawClient::connect(tern.addr, ProtocolVersion::V311, "pub").await;
    let mut payload_bytes = 0;
    for (qos, count) in [
        (QoS::AtMostOnce, 2),
        (QoS::AtLeastOnce, 3),
        (QoS::ExactlyOnce, 1),
    ] {
        for i in 0..count {
            let payload = format!("payload-{i}");
            payload_bytes += payload.len();
            publisher
                .publish("m/x", payload.as_bytes(), qos, false)
                .await;
        }
    }
    publisher
        .publish("nobody/here", b"lost", QoS::AtMostOnce, false)
        .await;
    payload_bytes += 4;
    for _ in 0..6 {
        let p = sub.recv_publish().await;
        sub.ack(&p).await;
    }
    sub.sync().await;
    publisher.sync().await;
    // A refused CONNECT: 3.1.1, no client id and no clean session.
    let refused = connect_packet(ProtocolVersion::V311, "", false);
    assert_eq!(
        connack(&tern, refused).await,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );

    let (status, content_type, body) = scrape(&tern, Some(&auth)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{content_type:?}"
    );
    let s = samples(&body);
    assert_eq!(get(&s, "tern_connections"), 2.0);
    assert_eq!(get(&s, "tern_connections_max"), 2.0);
    assert_eq!(get(&s, "tern_connections_accepted_total"), 2.0);
    assert_eq!(get(&s, "tern_sockets_opened_total"), 3.0);
    assert_eq!(get(&s, "tern_sessions"), 2.0);
    assert_eq!(get(&s, "tern_subscriptions"), 1.0);
    assert_eq!(get(&s, "tern_retained_messages"), 0.0);
    assert_eq!(get(&s, "tern_messages_received_total{qos=\"0\"}"), 3.0);
    assert_eq!(get(&s, "tern_messages_received_total{qos=\"1\"}"), 3.0);
    assert_eq!(get(&s, "tern_messages_received_total{qos=\"2\"}"), 1.0);
    assert_eq!(get(&s, "tern_messages_sent_total{qos=\"0\"}"), 2.0);
    assert_eq!(get(&s, "tern_messages_sent_total{qos=\"1\"}"), 3.0);
    assert_eq!(get(&s, "tern_messages_sent_total{qos=\"2\"}"), 1.0);
    assert_eq!(
        get(&s, "tern_messages_dropped_total{reason=\"no_subscribers\"}"),
        1.0
    );
    assert_eq!(
        get(&s, "tern_messages_dropped_total{reason=\"queue_full\"}"),
        0.0
    );
    assert_eq!(
        get(&s, "tern_publish_bytes_received_total"),
        payload_bytes as f64
    );
    assert_eq!(
        get(&s, "tern_publish_bytes_sent_total"),
        (payload_bytes - 4) as f64
    );
    assert_eq!(
        get(&s, "tern_packets_received_total{type=\"connect\"}"),
        3.0
    );
    assert_eq!(
        get(&s, "tern_packets_received_total{type=\"publish\"}"),
        7.0
    );
    // The subscriber acknowledged 3 QoS 1 and 1 QoS 2 delivery; the publisher released one.
    assert_eq!(get(&s, "tern_packets_received_total{type=\"puback\"}"), 3.0);
    assert_eq!(get(&s, "tern_packets_received_total{type=\"pubrec\"}"), 1.0);
    assert_eq!(get(&s, "tern_packets_received_total{type=\"pubrel\"}"), 1.0);
    assert_eq!(
        get(&s, "tern_packets_received_total{type=\"pubcomp\"}"),
        1.0
    );
    assert_eq!(
        get(&s, "tern_packets_received_total{type=\"pingreq\"}"),
        2.0
    );
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"connack\"}"), 3.0);
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"puback\"}"), 3.0);
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"pubrec\"}"), 1.0);
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"pubrel\"}"), 1.0);
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"pubcomp\"}"), 1.0);
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"publish\"}"), 6.0);
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"pingresp\"}"), 2.0);
    assert_eq!(
        get(
            &s,
            "tern_connack_refused_total{reason=\"client_identifier_not_valid\"}"
        ),
        1.0
    );
    assert_eq!(get(&s, "tern_auth_total{result=\"success\"}"), 2.0);
    assert_eq!(
        get(&s, "tern_acl_total{action=\"publish\",result=\"allow\"}"),
        7.0
    );
    assert_eq!(
        get(&s, "tern_acl_total{action=\"subscribe\",result=\"allow\"}"),
        1.0
    );
    assert_eq!(get(&s, "tern_inflight_messages"), 0.0);
    assert_eq!(get(&s, "tern_queued_messages"), 0.0);
    // The durable session's changes went through the store.
    let commits = get(&s, "tern_store_commit_seconds_count");
    assert!(commits >= 1.0, "store commits: {commits}");
    assert_eq!(
        get(&s, "tern_store_commit_seconds_bucket{le=\"+Inf\"}"),
        commits
    );
    assert!(get(&s, "tern_store_commit_seconds_sum") > 0.0);
    let version = format!(
        "tern_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&s, &version), 1.0);

    // Network bytes: at least every byte of the packets above went through.
    assert!(get(&s, "tern_bytes_received_total") > payload_bytes as f64);
    assert!(get(&s, "tern_bytes_sent_total") > (payload_bytes - 4) as f64);
}

#[tokio::test]
async fn the_json_stats_show_the_same_numbers() {
    let tern = Tern::start_config(CONFIG, "toml");
    let auth = basic_auth("ops", "s3cret-s3cret");
    let mut c = RawClient::connect(tern.addr, ProtocolVersion::V311, "c").await;
    c.subscribe("a", QoS::AtLeastOnce).await;
    c.publish("a", b"hello", QoS::AtLeastOnce, true).await;
    let p = c.recv_publish().await;
    c.ack(&p).await;
    c.sync().await;

    let (status, _, body) = tern.http("GET", "/api/v1/stats", Some(&auth), None).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let (_, _, text) = scrape(&tern, Some(&auth)).await;
    let s = samples(&text);
    let pairs = [
        ("connections.count", "tern_connections"),
        ("sessions.count", "tern_sessions"),
        ("subscriptions.count", "tern_subscriptions"),
        ("retained.count", "tern_retained_messages"),
        (
            "messages.qos1.received",
            "tern_messages_received_total{qos=\"1\"}",
        ),
        ("messages.qos1.sent", "tern_messages_sent_total{qos=\"1\"}"),
        (
            "packets.publish.received",
            "tern_packets_received_total{type=\"publish\"}",
        ),
        (
            "packets.puback.received",
            "tern_packets_received_total{type=\"puback\"}",
        ),
        ("bytes.received", "tern_bytes_received_total"),
        (
            "authentication.success",
            "tern_auth_total{result=\"success\"}",
        ),
    ];
    for (name, series) in pairs {
        assert_eq!(
            json[name].as_f64(),
            Some(get(&s, series)),
            "{name} against {series}"
        );
    }
    assert_eq!(json["messages.received"], 1);
    assert_eq!(json["messages.sent"], 1);
    assert_eq!(json["retained.count"], 1);
    assert_eq!(json["messages.bytes.received"], 5);
}

#[tokio::test]
async fn metrics_need_credentials_unless_anonymous_scrapes_are_allowed() {
    let tern = Tern::start_config(CONFIG, "toml");
    let (status, _, _) = scrape(&tern, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = scrape(&tern, Some(&basic_auth("ops", "wrong-secret"))).await;
    assert_eq!(status, 401);

    let open = Tern::start_config(
        "[admin]\nmetrics_anonymous = true\n[[admin.api_keys]]\nkey = \"ops\"\nsecret = \"s3cret-s3cret\"\n",
        "toml",
    );
    let (status, _, body) = scrape(&open, None).await;
    assert_eq!(status, 200);
    let s = samples(&body);
    assert_eq!(get(&s, "tern_connections"), 0.0);
}

/// A connection refused by `[limits]` at accept (before the protocol state machine) counts like
/// any other refusal: its CONNECT, its CONNACK and the CONNACK's reason.
#[tokio::test]
async fn connections_refused_by_limits_are_counted() {
    let tern = Tern::start_config(
        &format!("{CONFIG}\n[limits]\nmax_connections_per_ip = 1\n"),
        "toml",
    );
    let auth = basic_auth("ops", "s3cret-s3cret");
    let _first = RawClient::connect(tern.addr, ProtocolVersion::V5, "first").await;
    let mut second = RawClient::open(tern.addr, ProtocolVersion::V5).await;
    second
        .send(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            "second",
            true,
        ))))
        .await;
    match second.recv().await {
        Packet::ConnAck(c) => assert_eq!(c.reason, ReasonCode::QUOTA_EXCEEDED),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let (status, _, body) = scrape(&tern, Some(&auth)).await;
    assert_eq!(status, 200);
    let s = samples(&body);
    assert_eq!(
        get(&s, "tern_connack_refused_total{reason=\"quota_exceeded\"}"),
        1.0
    );
    assert_eq!(
        get(&s, "tern_packets_received_total{type=\"connect\"}"),
        2.0
    );
    assert_eq!(get(&s, "tern_packets_sent_total{type=\"connack\"}"), 2.0);
}
