//! The final report: a table for people, one JSON object for scripts.
//!
//! # JSON (`--json`)
//!
//! One object on one line of stdout. Field names are stable (the comparison script parses
//! them); fields may be added, none renamed or removed.
//!
//! | field | meaning |
//! | --- | --- |
//! | `scenario` | `conn`, `pub`, `sub`, `fanin`, `fanout`, `p2p`, `churn`, `shared`, `wildcard` (`subscribe` has a report of its own: see the `subscribe` module) |
//! | `protocol` | `"3.1"`, `"3.1.1"` or `"5"` |
//! | `tls` | every connection over TLS (`--cafile`/`--capath`) |
//! | `username` | the `--username` pattern (`%i` = client index), `null` without |
//! | `qos` | QoS of publications and subscriptions |
//! | `payload_size` | bytes per payload |
//! | `publishers`, `subscribers` | clients of each role (shared: the group's consumers) |
//! | `connections` | every connection of the run (conn: the held connections) |
//! | `rate_per_publisher` | messages/s per publisher, 0 = unthrottled |
//! | `inflight` | QoS 1/2 window per publisher |
//! | `count_per_publisher` | the `--count` limit |
//! | `duration_s` | measured period: from the start of publishing to the last send or receive, whichever is later (conn: how long the connections were held; sub: to the last receive) |
//! | `hit_time_limit` | some publisher stopped at `--duration` before `--count` |
//! | `sent` | PUBLISH packets handed to the connections |
//! | `acked` | QoS 1/2 messages completed with a success reason code (PUBACK, PUBCOMP) |
//! | `rejected` | QoS 1/2 messages refused with an error reason code (not expected anywhere) |
//! | `unacked` | QoS 1/2 messages neither acknowledged nor refused by the end |
//! | `received` | PUBLISH packets received by the subscribers, duplicates included |
//! | `expected` | deliveries the topic rules call for: fanin/fanout = accepted × subscribers, p2p = accepted of each pair, shared = accepted (once per group), wildcard = accepted (each message to one subscriber); 0 for pub, sub and conn; subscribers that failed to subscribe expect nothing |
//! | `lost` | `expected` − distinct expected messages received (per subscriber, per group for shared) |
//! | `duplicates` | deliveries of a message its subscriber (shared: its group) had already received |
//! | `out_of_order` | new messages with a sequence number below one already received from the same publisher by the same subscriber |
//! | `unexpected` | messages a subscriber should not have received (wrong publisher or topic) |
//! | `malformed` | messages without this run's 16-byte header |
//! | `errors` | connection failures and errors on established connections, all kinds |
//! | `errors_by_kind` | object: kind → count (`connection_refused`, `connect_timeout`, `connack_refused`, `connect_io`, `subscribe_refused`, `subscribe_timeout`, `closed_by_broker`, `disconnected_by_broker`, `keepalive_timeout`, `io`, `decode`, `protocol`, `killed_by_test_hook`, ...) |
//! | `sent_per_s` | `sent` / (last send − start of publishing) |
//! | `received_per_s` | `received` / (last receive − start of publishing): deliveries per second |
//! | `latency_us` | publish-to-delivery latency in µs from the payload's send time: `count`, `min`, `mean`, `p50`, `p90`, `p99`, `p999`, `max` (all 0 without samples; not measured for sub) |
//! | `arrival_latency_us` | publish-to-arrival latency in µs: from the payload's send time to the kernel's receive time of the message at the subscriber (`SO_TIMESTAMPNS`; Linux, plain TCP), so without the load generator's own wake-ups and backlog. Measured by up to 16 subscribers spread evenly over the indices (a timed read costs the load generator more). Messages decoded from one read share the time of its last segment. Same fields; all 0 where not measured |
//! | `connect` | `attempted`, `connected`, `failed`, `per_s` (connected / (last CONNACK − first attempt)), `p50_ms`, `p99_ms`, `max_ms` (TCP connect to CONNACK) |
//! | `loadgen_cpu_s` | CPU time (user + system) of this process over the whole run |
//! | `loadgen_cpu_user_s`, `loadgen_cpu_system_s` | its two parts |
//! | `broker_cpu_s` | with `--broker-pid`: the broker's CPU time (user + system, from `/proc/PID/stat`) over the measured phase, from the start of publishing to the end of the drain (conn: from the first connection attempt to the last CONNACK); `null` otherwise |
//! | `broker_cpu_us_per_delivery` | `broker_cpu_s` per received message, in µs; `null` without `--broker-pid` or deliveries |
//! | `churners` | churn: clients subscribing and unsubscribing next to the p2p pairs (0 elsewhere) |
//! | `churn_ops` | churn: SUBSCRIBE and UNSUBSCRIBE packets (one filter each) answered from the start of publishing to its end |
//! | `churn_failures` | churn: of those, answered with a failure code |
//! | `churn_ops_per_s` | churn: `churn_ops` / (last answer − start of publishing) |
//! | `passed` | the `--fail-on-loss` criteria hold: no loss at QoS ≥ 1, no duplicates at QoS 2, nothing unexpected (reported with or without the flag) |

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::args::{Plan, Scenario};
use super::latency::Percentiles;
use super::progress::human;
use super::scenarios::Outcome;

/// Connection set-up figures.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ConnectReport {
    pub attempted: u64,
    pub connected: u64,
    pub failed: u64,
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Every figure of a run; serialised as the `--json` object (see the module documentation).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub scenario: &'static str,
    pub protocol: &'static str,
    pub tls: bool,
    pub username: Option<String>,
    pub qos: u8,
    pub payload_size: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub connections: usize,
    pub rate_per_publisher: f64,
    pub inflight: usize,
    pub count_per_publisher: u64,
    pub duration_s: f64,
    pub hit_time_limit: bool,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    pub unacked: u64,
    pub received: u64,
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    pub malformed: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    pub sent_per_s: f64,
    pub received_per_s: f64,
    pub latency_us: Percentiles,
    pub arrival_latency_us: Percentiles,
    pub connect: ConnectReport,
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_user_s: f64,
    pub loadgen_cpu_system_s: f64,
    pub broker_cpu_s: Option<f64>,
    pub broker_cpu_us_per_delivery: Option<f64>,
    pub churners: usize,
    pub churn_ops: u64,
    pub churn_failures: u64,
    pub churn_ops_per_s: f64,
    pub passed: bool,
}

/// CPU time of this process (user, system) in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    /// Reads `/proc/self/stat` (zero where it does not exist).
    pub(crate) fn now() -> Self {
        std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    /// Reads `/proc/PID/stat` of another process; `None` if it cannot be read.
    pub(crate) fn of_pid(pid: u32) -> Option<Self> {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| Self::parse(&s))
    }

    /// User plus system time.
    pub(crate) fn total(self) -> f64 {
        self.user + self.system
    }

    /// `utime` and `stime` (fields 14 and 15, in USER_HZ = 100 ticks per second on Linux).
    fn parse(stat: &str) -> Option<Self> {
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        Some(Self {
            user: utime / 100.0,
            system: stime / 100.0,
        })
    }

    /// The time spent since `earlier`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn per_s(n: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        (n as f64 * 1e9 / ns as f64 * 10.0).round() / 10.0
    }
}

impl Report {
    /// Sums up a run.
    pub(crate) fn new(plan: &Plan, o: &Outcome, cpu: CpuTime) -> Self {
        let sent: u64 = o.publishers.iter().map(|p| p.sent).sum();
        let acked: u64 = o.publishers.iter().map(|p| p.acked).sum();
        let rejected: u64 = o.publishers.iter().map(|p| p.rejected.len() as u64).sum();
        let unacked = if plan.qos as u8 == 0 {
            0
        } else {
            sent - acked - rejected
        };
        let received: u64 = o.subscribers.iter().map(|s| s.received).sum();
        let expected: u64 = o.expected.iter().sum();
        let lost: u64 = o
            .expected
            .iter()
            .zip(&o.domains)
            .map(|(e, d)| e.saturating_sub(d.unique))
            .sum();
        let duplicates: u64 = o.domains.iter().map(|d| d.duplicates).sum();
        let out_of_order: u64 = o.domains.iter().map(|d| d.out_of_order).sum();
        let unexpected: u64 = o.subscribers.iter().map(|s| s.unexpected).sum();
        let malformed: u64 = o.subscribers.iter().map(|s| s.malformed).sum();
        let mut errors_by_kind = BTreeMap::new();
        for e in o
            .publishers
            .iter()
            .map(|p| &p.errors)
            .chain(o.subscribers.iter().map(|s| &s.errors))
            .chain(o.churn.iter().map(|c| &c.errors))
        {
            for (k, v) in &e.0 {
                *errors_by_kind.entry(*k).or_default() += v;
            }
        }
        let errors = errors_by_kind.values().sum();
        let last_send = o
            .publishers
            .iter()
            .map(|p| p.last_send_ns)
            .max()
            .unwrap_or(0);
        let last_receive = o
            .subscribers
            .iter()
            .map(|s| s.last_receive_ns)
            .max()
            .unwrap_or(0);
        let t0 = o.t0_ns;
        let measured_ns = if plan.scenario == Scenario::Conn {
            o.end_ns.saturating_sub(t0)
        } else {
            last_send.max(last_receive).saturating_sub(t0)
        };
        let connected = o.connect_attempted - o.connect_failed;
        let c = Percentiles::of(&o.connect_latency);
        let ms = |us: u64| round3(us as f64 / 1000.0);
        let qos = plan.qos as u8;
        let passed = (qos == 0 || lost == 0) && (qos < 2 || duplicates == 0) && unexpected == 0;
        Self {
            scenario: plan.scenario.name(),
            protocol: plan.version_name(),
            tls: plan.tls.is_some(),
            username: plan.username.clone(),
            qos,
            payload_size: plan.size,
            publishers: plan.publishers,
            subscribers: plan.subscribers,
            connections: plan.connections,
            rate_per_publisher: plan.rate,
            inflight: plan.inflight,
            count_per_publisher: plan.count,
            duration_s: round3(measured_ns as f64 / 1e9),
            hit_time_limit: o.publishers.iter().any(|p| p.hit_time_limit),
            sent,
            acked,
            rejected,
            unacked,
            received,
            expected,
            lost,
            duplicates,
            out_of_order,
            unexpected,
            malformed,
            errors,
            errors_by_kind,
            sent_per_s: per_s(sent, last_send.saturating_sub(t0)),
            received_per_s: per_s(received, last_receive.saturating_sub(t0)),
            latency_us: Percentiles::of(&o.latency),
            arrival_latency_us: Percentiles::of(&o.arrival_latency),
            connect: ConnectReport {
                attempted: o.connect_attempted,
                connected,
                failed: o.connect_failed,
                per_s: per_s(
                    connected,
                    o.last_connack_ns.saturating_sub(o.first_attempt_ns),
                ),
                p50_ms: ms(c.p50),
                p99_ms: ms(c.p99),
                max_ms: ms(c.max),
            },
            loadgen_cpu_s: round3(cpu.user + cpu.system),
            loadgen_cpu_user_s: round3(cpu.user),
            loadgen_cpu_system_s: round3(cpu.system),
            broker_cpu_s: o.broker_cpu_s.map(round3),
            broker_cpu_us_per_delivery: o
                .broker_cpu_s
                .filter(|_| received > 0)
                .map(|s| round3(s * 1e6 / received as f64)),
            churners: o.churn.as_ref().map_or(0, |c| c.churners),
            churn_ops: o.churn.as_ref().map_or(0, |c| c.ops),
            churn_failures: o.churn.as_ref().map_or(0, |c| c.failures),
            churn_ops_per_s: o.churn.as_ref().map_or(0.0, |c| {
                if c.seconds > 0.0 {
                    (c.ops as f64 / c.seconds * 10.0).round() / 10.0
                } else {
                    0.0
                }
            }),
            passed,
        }
    }

    /// The JSON object.
    pub(crate) fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The summary table.
    pub(crate) fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |name: &str, value: String| {
            let _ = writeln!(t, "  {name:<16} {value}");
        };
        let mut security = String::new();
        if self.tls {
            security.push_str(" over TLS");
        }
        if let Some(user) = &self.username {
            let _ = write!(security, " as user {user}");
        }
        row(
            "scenario",
            format!(
                "{} (MQTT {}{security}, QoS {}, {} B payload, {} publishers, {} subscribers, {} connections)",
                self.scenario,
                self.protocol,
                self.qos,
                self.payload_size,
                self.publishers,
                self.subscribers,
                self.connections
            ),
        );
        let limit = if self.hit_time_limit {
            " (stopped at the time limit)"
        } else {
            ""
        };
        row("duration", format!("{:.3} s{limit}", self.duration_s));
        if self.scenario != "conn" {
            row(
                "sent",
                format!("{} ({}/s)", self.sent, human(self.sent_per_s as u64)),
            );
            if self.qos > 0 {
                row(
                    "acknowledged",
                    format!(
                        "{} (rejected {}, unacknowledged {})",
                        self.acked, self.rejected, self.unacked
                    ),
                );
            }
            row(
                "received",
                format!(
                    "{} ({}/s)",
                    self.received,
                    human(self.received_per_s as u64)
                ),
            );
            row("expected", self.expected.to_string());
            row(
                "lost",
                format!(
                    "{}{}",
                    self.lost,
                    if self.expected > 0 {
                        format!(
                            " ({:.3} %)",
                            self.lost as f64 * 100.0 / self.expected as f64
                        )
                    } else {
                        String::new()
                    }
                ),
            );
            row(
                "duplicates",
                format!(
                    "{}, out of order {}, unexpected {}, malformed {}",
                    self.duplicates, self.out_of_order, self.unexpected, self.malformed
                ),
            );
            for (name, l) in [
                ("latency µs", &self.latency_us),
                ("arrival µs", &self.arrival_latency_us),
            ] {
                if l.count > 0 || name == "latency µs" {
                    row(
                        name,
                        format!(
                            "p50 {} p90 {} p99 {} p99.9 {} max {} ({} samples)",
                            l.p50, l.p90, l.p99, l.p999, l.max, l.count
                        ),
                    );
                }
            }
        }
        if self.churners > 0 {
            row(
                "churn",
                format!(
                    "{} clients: {} subscribe/unsubscribe answered ({:.0}/s), {} refused",
                    self.churners, self.churn_ops, self.churn_ops_per_s, self.churn_failures
                ),
            );
        }
        let c = &self.connect;
        row(
            "connections",
            format!(
                "{}/{} connected, {} failed, {:.0}/s, p50 {} ms p99 {} ms max {} ms",
                c.connected, c.attempted, c.failed, c.per_s, c.p50_ms, c.p99_ms, c.max_ms
            ),
        );
        row("errors", errors_cell(self.errors, &self.errors_by_kind));
        if let (Some(cpu), per) = (self.broker_cpu_s, self.broker_cpu_us_per_delivery) {
            row(
                "broker CPU",
                format!(
                    "{cpu:.2} s{}",
                    per.map(|p| format!(" ({p:.2} µs per delivery)"))
                        .unwrap_or_default()
                ),
            );
        }
        row(
            "loadgen CPU",
            format!(
                "{:.2} s (user {:.2}, system {:.2})",
                self.loadgen_cpu_s, self.loadgen_cpu_user_s, self.loadgen_cpu_system_s
            ),
        );
        t
    }
}

/// The "errors" cell of a table: the total and its kinds.
pub(crate) fn errors_cell(total: u64, by_kind: &BTreeMap<&'static str, u64>) -> String {
    if by_kind.is_empty() {
        return "0".to_owned();
    }
    let kinds: Vec<_> = by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total} ({})", kinds.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields() {
        let stat = "1234 (tern (bench) x) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 4";
        let cpu = CpuTime::parse(stat).unwrap_or_default();
        assert_eq!((cpu.user, cpu.system), (2.5, 0.75));
    }
}
