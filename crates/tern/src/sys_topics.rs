//! The `$SYS/broker/...` topics, with Mosquitto's names and units, published every
//! `sys_interval` (0 disables them) from the same [`MetricsSnapshot`] as the other views.
//!
//! As in Mosquitto (`src/sys_tree.c`): every topic is retained; a value is published only when
//! it changed since the last time (uptime changes every interval); `$SYS/broker/version` is
//! published once at start; the `load/...` topics are exponentially weighted averages of
//! per-minute rates over 1, 5 and 15 minutes, updated each interval and published when they move
//! by 0.01 or more. Where Tern differs:
//!
//! - The messages go out at QoS 0 (Mosquitto uses QoS 2): a value is replaced by the next
//!   interval's anyway, and acknowledgements of the broker's own messages would count as client
//!   traffic. They are not client traffic: their deliveries count in no message, packet, drop or
//!   byte counter, so publishing the numbers does not change them (with a `$SYS` subscriber,
//!   Mosquitto's `messages/sent` and `bytes/sent` grow every interval by its own updates). They
//!   are not written to the store either (the next start publishes them again), and
//!   `retained messages/count` leaves them out.
//! - `clients/maximum` is the most clients connected at the same time (what Mosquitto's
//!   documentation says; its code counts disconnected sessions too).
//! - `messages/stored` and `store/messages/{count,bytes}` count deliveries held for sessions
//!   (queued and in flight), and their bytes (payload and topic); Mosquitto counts distinct
//!   messages in its store, retained ones included.
//! - `heap/current` and `heap/maximum` are not published: Tern uses the system allocator without
//!   tracking, so it has no honest number to give.
//!
//! Only clients granted read access on a `$SYS` topic receive it: the ACL is checked when the
//! client subscribes and again on every delivery, as for any message.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_codec::{ByteString, QoS};
use tern_core::Broker;

use crate::metrics_view::{MetricsSnapshot, mark_started, snapshot};

/// Starts the `$SYS` publisher on the current tokio runtime (nothing with `interval` 0), and
/// marks the start of the broker, from which uptime counts.
pub(crate) fn start(broker: &Broker, interval: Duration) {
    mark_started();
    if interval.is_zero() {
        tracing::debug!("sys_interval is 0: no $SYS topics");
        return;
    }
    let broker = broker.clone();
    tokio::spawn(async move {
        let mut tree = SysTree::default();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            for (topic, payload) in tree.update(&snapshot(&broker), now) {
                let _ = broker.publish_internal(
                    ByteString::from(topic),
                    Bytes::from(payload),
                    QoS::AtMostOnce,
                    true,
                    now,
                );
            }
        }
    });
}

/// Reads one counter of a snapshot.
type Counter = fn(&MetricsSnapshot) -> u64;

/// The load averages: (topic under `$SYS/broker/load/`, the counter they are the rate of).
const LOADS: [(&str, Counter); 9] = [
    ("messages/received", |s| s.packets_received_total),
    ("messages/sent", |s| s.packets_sent_total),
    ("publish/dropped", MetricsSnapshot::delivery_dropped_total),
    ("publish/received", MetricsSnapshot::messages_received_total),
    ("publish/sent", MetricsSnapshot::messages_sent_total),
    ("bytes/received", |s| s.bytes_received),
    ("bytes/sent", |s| s.bytes_sent),
    ("sockets", |s| s.sockets_opened),
    ("connections", |s| s.connects),
];

/// The windows of the load averages, in seconds, and their topic suffixes.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// What the publisher remembers between intervals.
#[derive(Default)]
struct SysTree {
    /// The last payload published on each topic.
    published: HashMap<String, String>,
    /// The load averages, once a first interval has been seen.
    loads: Option<Loads>,
}

struct Loads {
    /// When the counters were last read, and their values then.
    at: Instant,
    counters: [u64; LOADS.len()],
    /// The averages, per series and window.
    averages: [[f64; WINDOWS.len()]; LOADS.len()],
}

impl SysTree {
    /// The (topic, payload) pairs to publish for the reading `s` taken at `now`.
    fn update(&mut self, s: &MetricsSnapshot, now: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut value = |name: &str, payload: String| {
            let topic = format!("$SYS/broker/{name}");
            if self.published.get(&topic) != Some(&payload) {
                self.published.insert(topic.clone(), payload.clone());
                out.push((topic, payload));
            }
        };
        value("version", format!("tern version {}", s.version));
        value("uptime", format!("{} seconds", s.uptime_seconds));
        value("clients/total", s.sessions.to_string());
        value("clients/maximum", s.connections_max.to_string());
        value("clients/inactive", s.sessions_disconnected.to_string());
        value("clients/disconnected", s.sessions_disconnected.to_string());
        value("clients/active", s.connections.to_string());
        value("clients/connected", s.connections.to_string());
        value("clients/expired", s.sessions_expired.to_string());
        value("messages/stored", s.stored_messages().to_string());
        value("store/messages/count", s.stored_messages().to_string());
        value("store/messages/bytes", s.stored_bytes().to_string());
        value("subscriptions/count", s.subscriptions.to_string());
        value(
            "shared_subscriptions/count",
            s.shared_subscriptions.to_string(),
        );
        value("retained messages/count", s.retained.to_string());
        value("messages/received", s.packets_received_total.to_string());
        value("messages/sent", s.packets_sent_total.to_string());
        value(
            "publish/messages/dropped",
            s.delivery_dropped_total().to_string(),
        );
        value(
            "publish/messages/received",
            s.messages_received_total().to_string(),
        );
        value("publish/messages/sent", s.messages_sent_total().to_string());
        value(
            "publish/bytes/received",
            s.publish_bytes_received.to_string(),
        );
        value("publish/bytes/sent", s.publish_bytes_sent.to_string());
        value("bytes/received", s.bytes_received.to_string());
        value("bytes/sent", s.bytes_sent.to_string());
        out.extend(self.update_loads(s, now));
        out
    }

    /// The load averages that moved by 0.01 or more (all of them, at 0.00, the first time).
    fn update_loads(&mut self, s: &MetricsSnapshot, now: Instant) -> Vec<(String, String)> {
        let counters = LOADS.map(|(_, read)| read(s));
        let topic = |series: &str, window: &str| format!("$SYS/broker/load/{series}/{window}");
        let mut out = Vec::new();
        let Some(loads) = &mut self.loads else {
            for (series, _) in LOADS {
                for (_, window) in WINDOWS {
                    out.push((topic(series, window), "0.00".to_owned()));
                }
            }
            self.loads = Some(Loads {
                at: now,
                counters,
                averages: [[0.0; WINDOWS.len()]; LOADS.len()],
            });
            return out;
        };
        let elapsed = now.saturating_duration_since(loads.at).as_secs_f64();
        if elapsed <= 0.0 {
            return out;
        }
        for (i, (series, _)) in LOADS.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)] // a rate for display
            let per_minute = counters[i].saturating_sub(loads.counters[i]) as f64 * 60.0 / elapsed;
            for (j, (seconds, window)) in WINDOWS.iter().enumerate() {
                let current = loads.averages[i][j];
                let exponent = (-elapsed / seconds).exp();
                let next = per_minute + exponent * (current - per_minute);
                if (next - current).abs() >= 0.01 {
                    out.push((topic(series, window), format!("{next:.2}")));
                }
                loads.averages[i][j] = next;
            }
        }
        loads.at = now;
        loads.counters = counters;
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tern_codec::{Packet, Publish};

    use super::*;
    use crate::metrics_view::testing::{Harness, drain, publish, subscribe};

    fn find<'a>(out: &'a [(String, String)], topic: &str) -> Option<&'a str> {
        out.iter()
            .find(|(t, _)| t == topic)
            .map(|(_, p)| p.as_str())
    }

    #[test]
    fn the_first_interval_publishes_everything_then_only_what_changed() {
        let h = Harness::new();
        let mut c = h.connect("c");
        c.handle_packet(publish("a", b"xyz", QoS::AtMostOnce, true), Instant::now());
        let mut tree = SysTree::default();
        let t0 = Instant::now();
        let mut s = snapshot(&h.broker);
        let first = tree.update(&s, t0);
        let v = crate::metrics_view::VERSION;
        assert_eq!(
            find(&first, "$SYS/broker/version"),
            Some(format!("tern version {v}").as_str())
        );
        assert_eq!(find(&first, "$SYS/broker/clients/connected"), Some("1"));
        assert_eq!(find(&first, "$SYS/broker/clients/active"), Some("1"));
        assert_eq!(find(&first, "$SYS/broker/clients/disconnected"), Some("0"));
        assert_eq!(find(&first, "$SYS/broker/clients/total"), Some("1"));
        assert_eq!(find(&first, "$SYS/broker/clients/maximum"), Some("1"));
        assert_eq!(find(&first, "$SYS/broker/messages/received"), Some("2"));
        assert_eq!(find(&first, "$SYS/broker/messages/sent"), Some("1"));
        assert_eq!(
            find(&first, "$SYS/broker/publish/messages/received"),
            Some("1")
        );
        assert_eq!(
            find(&first, "$SYS/broker/publish/bytes/received"),
            Some("3")
        );
        assert_eq!(
            find(&first, "$SYS/broker/retained messages/count"),
            Some("1")
        );
        assert_eq!(
            find(&first, "$SYS/broker/load/connections/1min"),
            Some("0.00")
        );
        assert_eq!(
            find(&first, "$SYS/broker/load/bytes/sent/15min"),
            Some("0.00")
        );
        assert!(first.iter().all(|(t, _)| !t.contains("heap")));
        assert_eq!(first.len(), 24 + 27);

        // Nothing happened: only the uptime may change.
        s.uptime_seconds += 10;
        let second = tree.update(&s, t0 + Duration::from_secs(10));
        assert_eq!(
            second,
            vec![(
                "$SYS/broker/uptime".to_owned(),
                format!("{} seconds", s.uptime_seconds)
            )]
        );
    }

    #[test]
    fn load_averages_are_exponentially_weighted_per_minute_rates() {
        let h = Harness::new();
        let mut tree = SysTree::default();
        let t0 = Instant::now();
        let mut s = snapshot(&h.broker);
        let _ = tree.update(&s, t0);
        // 60 PUBLISH received in 60 s: a rate of 60 per minute.
        s.messages_received[1] += 60;
        let out = tree.update(&s, t0 + Duration::from_secs(60));
        let one = 60.0 * (1.0 - (-1.0f64).exp());
        let five = 60.0 * (1.0 - (-60.0f64 / 300.0).exp());
        assert_eq!(
            find(&out, "$SYS/broker/load/publish/received/1min"),
            Some(format!("{one:.2}").as_str())
        );
        assert_eq!(
            find(&out, "$SYS/broker/load/publish/received/5min"),
            Some(format!("{five:.2}").as_str())
        );
        assert_eq!(find(&out, "$SYS/broker/load/publish/sent/1min"), None);
        assert_eq!(
            find(&out, "$SYS/broker/publish/messages/received"),
            Some("60")
        );
        // Then nothing for a minute: the averages decay.
        let out = tree.update(&s, t0 + Duration::from_secs(120));
        let decayed = one * (-1.0f64).exp();
        assert_eq!(
            find(&out, "$SYS/broker/load/publish/received/1min"),
            Some(format!("{decayed:.2}").as_str())
        );
    }

    #[test]
    fn sys_messages_reach_subscribers_without_counting_as_traffic() {
        let h = Harness::new();
        let mut sub = h.connect("sub");
        sub.handle_packet(subscribe("$SYS/#", QoS::AtLeastOnce), Instant::now());
        drain(&mut sub);
        let before = snapshot(&h.broker);
        let mut tree = SysTree::default();
        let now = Instant::now();
        let out = tree.update(&before, now);
        for (topic, payload) in &out {
            let _ = h.broker.publish_internal(
                ByteString::from(topic.as_str()),
                Bytes::from(payload.clone()),
                QoS::AtMostOnce,
                true,
                now,
            );
        }
        let mut wire = drain(&mut sub);
        let mut decoder =
            tern_codec::Decoder::with_version(tern_codec::ProtocolVersion::V311, 1 << 20);
        let mut received: Vec<Publish> = Vec::new();
        while let Ok(Some(p)) = decoder.decode(&mut wire) {
            if let Packet::Publish(p) = p {
                received.push(p);
            }
        }
        assert_eq!(received.len(), out.len());
        assert!(received.iter().all(|p| p.qos == QoS::AtMostOnce));
        let after = snapshot(&h.broker);
        assert_eq!(after.messages_sent, before.messages_sent);
        assert_eq!(after.packets_sent_total, before.packets_sent_total);
        assert_eq!(after.publish_bytes_sent, before.publish_bytes_sent);
        assert_eq!(after.no_subscribers, 0);
        assert_eq!(after.retained, 0, "$SYS retained messages are left out");
        assert_eq!(h.broker.sys_retained_count(), out.len());
        assert_eq!(h.broker.metrics().publish_sent.load(Ordering::Relaxed), 0);
        // Nobody subscribed: still no drop counted.
        drop(sub);
        let lonely = Harness::new();
        let _ = lonely.broker.publish_internal(
            ByteString::from("$SYS/broker/uptime"),
            Bytes::from_static(b"1 seconds"),
            QoS::AtMostOnce,
            true,
            now,
        );
        assert_eq!(snapshot(&lonely.broker).no_subscribers, 0);
    }
}
