//! The broker's metrics in the OpenMetrics text format (what Prometheus scrapes), served by the
//! admin API at `GET /metrics`. Every value comes from one [`MetricsSnapshot`], the same reading
//! the JSON stats and `$SYS` topics show. docs/METRICS.md lists the families with their EMQX
//! equivalents.
//!
//! Format: each family has `# TYPE` and `# HELP` (and `# UNIT` where its name ends in the
//! unit); counter samples end in `_total`; variants are labels; the text ends with `# EOF`.

use std::fmt::Write as _;

use tern_core::{Broker, COMMIT_BUCKETS};

use crate::metrics_view::{MetricsSnapshot, QOS, reason_label, snapshot};

/// The media type of [`render`]'s output.
#[allow(dead_code)] // for the admin API, which may name it
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The broker's metrics now, as OpenMetrics text ending with `# EOF`.
pub(crate) fn render(broker: &Broker) -> String {
    render_snapshot(&snapshot(broker))
}

/// Writes one family at a time.
struct Out {
    text: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Out {
    /// Starts a family: `# TYPE`, `# HELP` and, if given, `# UNIT`.
    fn family(&mut self, name: &str, kind: Kind, unit: Option<&str>, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        if let Some(unit) = unit {
            let _ = writeln!(self.text, "# UNIT {name} {unit}");
        }
        let _ = writeln!(self.text, "# HELP {name} {help}");
    }

    /// One sample: `name{labels} value`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape(val));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A gauge family with one unlabelled sample.
    fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, None, help);
        self.sample(name, &[], value);
    }

    /// A counter family with one unlabelled sample.
    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, None, help);
        self.sample(&format!("{name}_total"), &[], value);
    }

    /// A counter family with one sample per label value.
    fn counter_by<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, Kind::Counter, None, help);
        let total = format!("{name}_total");
        for (value, n) in values {
            self.sample(&total, &[(label, value)], n);
        }
    }
}

/// The `tern_bridge_*` families: one sample per bridge (label `bridge`, its name); none
/// without bridges (a family has at least one sample).
fn render_bridges(o: &mut Out, bridges: &[crate::bridge::BridgeSnapshot]) {
    if bridges.is_empty() {
        return;
    }
    o.family(
        "tern_bridge_connected",
        Kind::Gauge,
        None,
        "Whether the bridge is connected to its remote broker (1) or not (0).",
    );
    for b in bridges {
        o.sample(
            "tern_bridge_connected",
            &[("bridge", &b.name)],
            u8::from(b.connected()),
        );
    }
    o.family(
        "tern_bridge_messages_forwarded",
        Kind::Counter,
        None,
        "Messages a bridge carried, by direction: out (to the remote broker) and in (from it).",
    );
    for b in bridges {
        for (direction, n) in [("out", b.forwarded_out), ("in", b.forwarded_in)] {
            o.sample(
                "tern_bridge_messages_forwarded_total",
                &[("bridge", &b.name), ("direction", direction)],
                n,
            );
        }
    }
    o.family(
        "tern_bridge_messages_dropped",
        Kind::Counter,
        None,
        "Messages a bridge dropped: refused by the other side, or matching none of its topics.",
    );
    for b in bridges {
        o.sample(
            "tern_bridge_messages_dropped_total",
            &[("bridge", &b.name)],
            b.dropped,
        );
    }
    o.family(
        "tern_bridge_queued_messages",
        Kind::Gauge,
        None,
        "Messages waiting on this broker for a bridge's remote side (queued and in flight).",
    );
    for b in bridges {
        o.sample(
            "tern_bridge_queued_messages",
            &[("bridge", &b.name)],
            b.queued,
        );
    }
    o.family(
        "tern_bridge_connects",
        Kind::Counter,
        None,
        "Connections a bridge made to its remote broker.",
    );
    for b in bridges {
        o.sample(
            "tern_bridge_connects_total",
            &[("bridge", &b.name)],
            b.connects,
        );
    }
}

/// Escapes a label value (backslash, double quote, line feed).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as OpenMetrics writes it (`1.0`, not `1`).
fn float(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// Renders a snapshot (separate from [`render`] for the tests).
pub(crate) fn render_snapshot(s: &MetricsSnapshot) -> String {
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
    };
    o.family(
        "tern_build_info",
        Kind::Gauge,
        None,
        "The version of the running broker (the value is always 1).",
    );
    o.sample("tern_build_info", &[("version", s.version)], 1);
    o.family(
        "tern_uptime_seconds",
        Kind::Gauge,
        Some("seconds"),
        "Seconds since the broker started.",
    );
    o.sample("tern_uptime_seconds", &[], s.uptime_seconds);

    o.gauge(
        "tern_connections",
        "Client connections attached to a session.",
        s.connections,
    );
    o.gauge(
        "tern_connections_max",
        "The most client connections attached at the same time since the start.",
        s.connections_max,
    );
    o.counter(
        "tern_connections_accepted",
        "CONNECTs accepted with CONNACK success.",
        s.connects,
    );
    o.counter(
        "tern_sockets_opened",
        "Network connections that reached the MQTT protocol (after TLS, WebSocket and PROXY \
         handshakes).",
        s.sockets_opened,
    );
    let refused: Vec<(String, u64)> = s
        .connack_refused
        .iter()
        .map(|(code, n)| (reason_label(*code), *n))
        .collect();
    o.counter_by(
        "tern_connack_refused",
        "CONNACKs that refused a connection, by reason code.",
        "reason",
        refused.iter().map(|(r, n)| (r.as_str(), *n)),
    );
    o.gauge("tern_sessions", "Sessions, connected or not.", s.sessions);
    o.gauge(
        "tern_sessions_disconnected",
        "Sessions kept without a connection.",
        s.sessions_disconnected,
    );
    o.counter(
        "tern_sessions_expired",
        "Sessions ended because their expiry interval passed.",
        s.sessions_expired,
    );
    o.gauge(
        "tern_subscriptions",
        "Subscriptions, shared subscription memberships included.",
        s.subscriptions,
    );
    o.gauge(
        "tern_shared_subscriptions",
        "Shared subscription memberships.",
        s.shared_subscriptions,
    );
    o.gauge(
        "tern_retained_messages",
        "Retained messages (not counting the broker's own $SYS topics).",
        s.retained,
    );

    let qos_labels = QOS.map(|q| (q as u8).to_string());
    o.counter_by(
        "tern_messages_received",
        "PUBLISH messages received from clients, by QoS.",
        "qos",
        qos_labels
            .iter()
            .zip(s.messages_received)
            .map(|(q, n)| (q.as_str(), n)),
    );
    o.counter_by(
        "tern_messages_sent",
        "PUBLISH messages sent to clients, by the QoS of the delivery (re-sent ones included).",
        "qos",
        qos_labels
            .iter()
            .zip(s.messages_sent)
            .map(|(q, n)| (q.as_str(), n)),
    );
    o.counter_by(
        "tern_messages_dropped",
        "Messages dropped, by reason: no_subscribers for a published message that matched no \
         subscription, the others for one delivery to one session.",
        "reason",
        std::iter::once(("no_subscribers", s.no_subscribers))
            .chain(s.dropped.iter().map(|(r, n)| (r.label(), *n))),
    );
    o.counter(
        "tern_publish_bytes_received",
        "Payload bytes of PUBLISH messages received from clients.",
        s.publish_bytes_received,
    );
    o.counter(
        "tern_publish_bytes_sent",
        "Payload bytes of PUBLISH messages sent to clients.",
        s.publish_bytes_sent,
    );
    o.counter(
        "tern_bytes_received",
        "MQTT bytes read from clients, all listeners and transports.",
        s.bytes_received,
    );
    o.counter(
        "tern_bytes_sent",
        "MQTT bytes written to clients, all listeners and transports ($SYS messages not \
         counted).",
        s.bytes_sent,
    );
    o.counter_by(
        "tern_packets_received",
        "MQTT packets received from clients, by type.",
        "type",
        s.packets_received.iter().map(|(t, n)| (t.name(), *n)),
    );
    o.counter_by(
        "tern_packets_sent",
        "MQTT packets sent to clients, by type ($SYS messages not counted).",
        "type",
        s.packets_sent.iter().map(|(t, n)| (t.name(), *n)),
    );
    o.counter_by(
        "tern_auth",
        "Connection authentications, by result (success includes anonymous clients let in).",
        "result",
        [("success", s.auth_success), ("failure", s.auth_failure)],
    );
    o.family(
        "tern_acl",
        Kind::Counter,
        None,
        "Access checks on PUBLISH (and Will) topics and SUBSCRIBE filters, by action and result.",
    );
    for (action, allowed, n) in &s.acl {
        let result = if *allowed { "allow" } else { "deny" };
        o.sample(
            "tern_acl_total",
            &[("action", action.label()), ("result", result)],
            n,
        );
    }
    o.counter(
        "tern_protocol_errors",
        "Protocol errors that closed a connection.",
        s.protocol_errors,
    );
    o.gauge(
        "tern_queued_messages",
        "Deliveries queued for sessions and not sent yet.",
        s.queued_messages,
    );
    o.gauge(
        "tern_queued_bytes",
        "Bytes (payload and topic) of the queued deliveries.",
        s.queued_bytes,
    );
    o.gauge(
        "tern_inflight_messages",
        "Deliveries sent and awaiting acknowledgement.",
        s.inflight_messages,
    );
    o.gauge(
        "tern_inflight_bytes",
        "Bytes (payload and topic) of the deliveries awaiting acknowledgement.",
        s.inflight_bytes,
    );

    render_bridges(&mut o, &s.bridges);

    let h = &s.store_commit;
    o.family(
        "tern_store_commit_seconds",
        Kind::Histogram,
        Some("seconds"),
        "Time the store takes to commit a group of changes (transaction and fsync).",
    );
    for (bound, n) in COMMIT_BUCKETS.iter().zip(h.cumulative) {
        o.sample(
            "tern_store_commit_seconds_bucket",
            &[("le", &float(*bound))],
            n,
        );
    }
    o.sample(
        "tern_store_commit_seconds_bucket",
        &[("le", "+Inf")],
        h.count,
    );
    o.sample("tern_store_commit_seconds_count", &[], h.count);
    o.sample("tern_store_commit_seconds_sum", &[], float(h.sum_seconds));

    o.text.push_str("# EOF\n");
    o.text
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::time::{Duration, Instant};

    use tern_codec::QoS;

    use super::*;
    use crate::metrics_view::testing::{Harness, drain, publish, subscribe};

    /// One sample as parsed back: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// A family as parsed back from the text.
    #[derive(Debug, Default)]
    struct Family {
        kind: String,
        help: bool,
        samples: Vec<Sample>,
    }

    fn legal_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses OpenMetrics text strictly enough to catch what Prometheus would reject: every
    /// sample belongs to the family declared just before it, with a suffix its type allows.
    fn parse(text: &str) -> Vec<(String, Family)> {
        assert!(text.ends_with("# EOF\n"), "ends with # EOF");
        let body = &text[..text.len() - "# EOF\n".len()];
        assert!(!body.contains("# EOF"), "# EOF only at the end");
        let mut families: Vec<(String, Family)> = Vec::new();
        for line in body.lines() {
            assert!(!line.is_empty(), "no blank lines");
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let (keyword, name, value) = (
                    parts.next().expect("keyword"),
                    parts.next().expect("name"),
                    parts.next().expect("value"),
                );
                assert!(legal_name(name), "family name {name}");
                if keyword == "TYPE" {
                    assert!(
                        families.iter().all(|(n, _)| n != name),
                        "family {name} declared twice"
                    );
                    assert!(
                        ["counter", "gauge", "histogram"].contains(&value),
                        "type {value}"
                    );
                    families.push((
                        name.to_owned(),
                        Family {
                            kind: value.to_owned(),
                            ..Family::default()
                        },
                    ));
                    continue;
                }
                let (current, family) = families.last_mut().expect("TYPE first");
                assert_eq!(current, name, "metadata of the current family");
                match keyword {
                    "HELP" => family.help = !value.is_empty(),
                    "UNIT" => assert!(name.ends_with(&format!("_{value}")), "unit suffix"),
                    other => panic!("unknown metadata {other}"),
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let value: f64 = value.parse().expect("numeric value");
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split(',')
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            assert!(legal_name(k), "label name {k}");
                            let v = v
                                .strip_prefix('"')
                                .and_then(|v| v.strip_suffix('"'))
                                .expect("quoted label value");
                            (k.to_owned(), v.to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            let (family_name, family) = families.last_mut().expect("a family first");
            let suffixes: &[&str] = match family.kind.as_str() {
                "counter" => &["_total"],
                "gauge" => &[""],
                _ => &["_bucket", "_count", "_sum"],
            };
            assert!(
                suffixes.iter().any(|s| name == format!("{family_name}{s}")),
                "sample {name} in family {family_name} ({})",
                family.kind
            );
            family.samples.push((name.to_owned(), labels, value));
        }
        families
    }

    fn value(families: &[(String, Family)], name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: HashSet<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        families
            .iter()
            .flat_map(|(_, f)| &f.samples)
            .find(|(n, l, _)| n == name && l.iter().cloned().collect::<HashSet<_>>() == wanted)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
    }

    #[test]
    fn bridges_have_their_state_and_counters_by_name() {
        let h = Harness::new();
        let mut s = crate::metrics_view::snapshot(&h.broker);
        s.bridges = crate::bridge::testing_snapshots();
        let text = render_snapshot(&s);
        let families = parse(&text);
        assert_eq!(
            value(&families, "tern_bridge_connected", &[("bridge", "up")]),
            1.0
        );
        assert_eq!(
            value(&families, "tern_bridge_connected", &[("bridge", "down")]),
            0.0
        );
        let out = [("bridge", "up"), ("direction", "out")];
        let inbound = [("bridge", "up"), ("direction", "in")];
        assert_eq!(
            value(&families, "tern_bridge_messages_forwarded_total", &out),
            7.0
        );
        assert_eq!(
            value(&families, "tern_bridge_messages_forwarded_total", &inbound),
            3.0
        );
        assert_eq!(
            value(
                &families,
                "tern_bridge_messages_dropped_total",
                &[("bridge", "up")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &families,
                "tern_bridge_queued_messages",
                &[("bridge", "down")]
            ),
            42.0
        );
        assert_eq!(
            value(&families, "tern_bridge_connects_total", &[("bridge", "up")]),
            2.0
        );
        let entries = s.entries();
        let get = |name: &str| {
            entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        use crate::metrics_view::Value;
        assert_eq!(get("bridges.count"), Some(Value::Int(2)));
        assert_eq!(get("bridges.connected"), Some(Value::Int(1)));
        assert_eq!(get("bridges.messages.out"), Some(Value::Int(7)));
    }

    #[test]
    fn the_text_is_valid_openmetrics_with_type_and_help_for_every_family() {
        let h = Harness::new();
        h.broker
            .metrics()
            .store_commit
            .observe(Duration::from_micros(300));
        h.broker
            .metrics()
            .store_commit
            .observe(Duration::from_secs(5));
        let text = render(&h.broker);
        let families = parse(&text);
        assert!(families.len() >= 30, "{} families", families.len());
        for (name, family) in &families {
            assert!(name.starts_with("tern_"), "{name}");
            assert!(family.help, "{name} has HELP");
            assert!(!family.samples.is_empty(), "{name} has samples");
            assert!(
                !name.ends_with("_total"),
                "family names have no _total: {name}"
            );
            if family.kind == "counter" {
                let mut seen = HashSet::new();
                for (_, labels, _) in &family.samples {
                    assert!(seen.insert(labels.clone()), "{name}: duplicate series");
                }
            }
        }
        let kinds: HashMap<&str, &str> = families
            .iter()
            .map(|(n, f)| (n.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(kinds["tern_connections"], "gauge");
        assert_eq!(kinds["tern_messages_received"], "counter");
        assert_eq!(kinds["tern_store_commit_seconds"], "histogram");
        assert!(text.contains("# UNIT tern_store_commit_seconds seconds\n"));
        // The histogram: cumulative buckets ending at +Inf = count.
        assert_eq!(
            value(
                &families,
                "tern_store_commit_seconds_bucket",
                &[("le", "0.00025")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &families,
                "tern_store_commit_seconds_bucket",
                &[("le", "0.0005")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &families,
                "tern_store_commit_seconds_bucket",
                &[("le", "2.5")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &families,
                "tern_store_commit_seconds_bucket",
                &[("le", "+Inf")]
            ),
            2.0
        );
        assert_eq!(
            value(&families, "tern_store_commit_seconds_count", &[]),
            2.0
        );
        assert!((value(&families, "tern_store_commit_seconds_sum", &[]) - 5.0003).abs() < 1e-9);
        assert_eq!(
            value(
                &families,
                "tern_build_info",
                &[("version", crate::metrics_view::VERSION)]
            ),
            1.0
        );
    }

    #[test]
    fn the_values_follow_the_traffic_of_in_process_connections() {
        let h = Harness::new();
        let mut sub = h.connect("sub");
        sub.handle_packet(subscribe("t/#", QoS::ExactlyOnce), Instant::now());
        sub.handle_packet(subscribe("$share/g/t/#", QoS::AtMostOnce), Instant::now());
        drain(&mut sub);
        let mut publisher = h.connect("pub");
        let now = Instant::now();
        publisher.handle_packet(publish("t/a", b"12", QoS::ExactlyOnce, false), now);
        publisher.handle_packet(publish("t/b", b"345", QoS::AtLeastOnce, true), now);
        publisher.handle_packet(publish("$SYS/x", b"6", QoS::AtMostOnce, false), now);
        publisher.handle_packet(publish("nobody", b"7", QoS::AtMostOnce, false), now);
        drain(&mut publisher);
        drain(&mut sub);

        let f = parse(&render(&h.broker));
        let v = |name: &str, labels: &[(&str, &str)]| value(&f, name, labels);
        assert_eq!(v("tern_connections", &[]), 2.0);
        assert_eq!(v("tern_sessions", &[]), 2.0);
        assert_eq!(v("tern_subscriptions", &[]), 2.0);
        assert_eq!(v("tern_shared_subscriptions", &[]), 1.0);
        assert_eq!(v("tern_retained_messages", &[]), 1.0);
        assert_eq!(v("tern_messages_received_total", &[("qos", "0")]), 2.0);
        assert_eq!(v("tern_messages_received_total", &[("qos", "1")]), 1.0);
        assert_eq!(v("tern_messages_received_total", &[("qos", "2")]), 1.0);
        // Each matching subscription gets its copy: t/# (QoS 2, 1) and the shared one (QoS 0).
        assert_eq!(v("tern_messages_sent_total", &[("qos", "0")]), 2.0);
        assert_eq!(v("tern_messages_sent_total", &[("qos", "1")]), 1.0);
        assert_eq!(v("tern_messages_sent_total", &[("qos", "2")]), 1.0);
        assert_eq!(
            v(
                "tern_messages_dropped_total",
                &[("reason", "no_subscribers")]
            ),
            1.0
        );
        assert_eq!(
            v(
                "tern_messages_dropped_total",
                &[("reason", "not_authorized")]
            ),
            1.0,
            "the PUBLISH to $SYS"
        );
        assert_eq!(
            v(
                "tern_acl_total",
                &[("action", "publish"), ("result", "deny")]
            ),
            1.0
        );
        assert_eq!(
            v(
                "tern_acl_total",
                &[("action", "publish"), ("result", "allow")]
            ),
            3.0
        );
        assert_eq!(
            v(
                "tern_acl_total",
                &[("action", "subscribe"), ("result", "allow")]
            ),
            2.0
        );
        assert_eq!(
            v("tern_packets_received_total", &[("type", "publish")]),
            4.0
        );
        assert_eq!(
            v("tern_packets_received_total", &[("type", "subscribe")]),
            2.0
        );
        assert_eq!(v("tern_packets_sent_total", &[("type", "pubrec")]), 1.0);
        assert_eq!(v("tern_packets_sent_total", &[("type", "puback")]), 1.0);
        assert_eq!(v("tern_packets_sent_total", &[("type", "publish")]), 4.0);
        assert_eq!(v("tern_publish_bytes_received_total", &[]), 7.0);
        assert_eq!(
            v("tern_publish_bytes_sent_total", &[]),
            2.0 + 3.0 + 2.0 + 3.0
        );
        assert_eq!(v("tern_auth_total", &[("result", "success")]), 2.0);
        assert_eq!(
            v("tern_inflight_messages", &[]),
            2.0,
            "QoS 1 and 2 unacknowledged"
        );
        assert_eq!(v("tern_queued_messages", &[]), 0.0);
    }

    #[test]
    fn a_refused_connack_is_counted_by_reason() {
        let h = Harness::new();
        let mut c = tern_core::Connection::new(
            h.broker.clone(),
            tern_core::ConnectionInfo {
                policy: std::sync::Arc::new(tern_core::ListenerPolicy {
                    allow_anonymous: false,
                    ..tern_core::ListenerPolicy::default()
                }),
                ..tern_core::ConnectionInfo::default()
            },
            std::sync::Arc::new(NoWake),
            Instant::now(),
        );
        c.handle_packet(
            tern_codec::Packet::Connect(Box::new(tern_codec::Connect {
                protocol: tern_codec::ProtocolVersion::V5,
                clean_start: true,
                keep_alive: 0,
                properties: Default::default(),
                client_id: "x".into(),
                will: None,
                username: None,
                password: None,
            })),
            Instant::now(),
        );
        drain(&mut c);
        let f = parse(&render(&h.broker));
        assert_eq!(
            value(
                &f,
                "tern_connack_refused_total",
                &[("reason", "not_authorized")]
            ),
            1.0
        );
        assert_eq!(
            value(&f, "tern_packets_sent_total", &[("type", "connack")]),
            1.0
        );
        assert_eq!(value(&f, "tern_connections", &[]), 0.0);
    }

    struct NoWake;
    impl tern_core::Wake for NoWake {
        fn wake(&self) {}
    }

    #[test]
    fn label_values_are_escaped_and_floats_canonical() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.00025), "0.00025");
    }
}
