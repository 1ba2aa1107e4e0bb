//! The flags of `tern bench` and their validation into a [`Plan`].

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use tern_client::TlsOptions;
use tern_client::rustls::client::Resumption;
use tern_client::tern_codec::{ProtocolVersion, QoS};

use super::payload::HEADER_LEN;
use crate::tools::{TlsArgs, TlsFlagError};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Open N connections at a rate and hold them: connect rate, connect latency, failures.
    Conn,
    /// N publishers and no subscriber of ours (something else may listen).
    Pub,
    /// N subscribers counting what arrives from publishers elsewhere.
    Sub,
    /// N publishers → 1 subscriber (every subscriber receives every message).
    Fanin,
    /// 1 publisher → N subscribers (every subscriber receives every message).
    Fanout,
    /// N publisher/subscriber pairs, each pair on its own topic.
    P2p,
    /// N publishers → one `$share/<group>/…` group of M consumers; each message once per group.
    Shared,
    /// S subscribers on `dev/<i>/+` plus K non-matching wildcard filters each; P publishers
    /// rotating over the topics `dev/<i>/x`.
    Wildcard,
    /// N clients each subscribe to --filters filters (one per SUBSCRIBE, --inflight in
    /// flight), then unsubscribe from them all: set-up and tear-down rate, SUBACK latency.
    Subscribe,
    /// p2p while --churners extra clients subscribe and unsubscribe without pause, on filters
    /// shaped like the p2p topics that match none of them.
    Churn,
}

impl Scenario {
    /// The name used in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Conn => "conn",
            Self::Pub => "pub",
            Self::Sub => "sub",
            Self::Fanin => "fanin",
            Self::Fanout => "fanout",
            Self::P2p => "p2p",
            Self::Shared => "shared",
            Self::Wildcard => "wildcard",
            Self::Subscribe => "subscribe",
            Self::Churn => "churn",
        }
    }
}

/// Flags of `tern bench`.
///
/// Every run is bounded: publishing stops after `--count` messages per publisher or after
/// `--duration`, whichever comes first, then `--drain` bounds the wait for what is in flight.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Broker port (default: 1883, or 8883 with TLS).
    #[arg(short, long)]
    pub port: Option<u16>,

    /// `--cafile`, `--capath`, `--cert`, `--key`, `--insecure` and `--tls-version`, with the
    /// meanings they have in `tern pub`: `--cafile` or `--capath` turns TLS on for every client.
    #[command(flatten)]
    pub(crate) tls: TlsArgs,

    /// User name sent by every client; `%i` is the client's index in its role, as in --topic
    /// and --filter (publisher, subscriber or connection index; modulo --users if given).
    #[arg(short = 'u', long, value_name = "NAME")]
    pub username: Option<String>,

    /// Password sent by every client (before MQTT 5 only with --username).
    #[arg(short = 'P', long, value_name = "PASSWORD")]
    pub password: Option<String>,

    /// With `%i` in --username: use N user names, client i taking index i mod N.
    #[arg(long, value_name = "N", requires = "username", value_parser = clap::value_parser!(u32).range(1..))]
    pub users: Option<u32>,

    /// Local source addresses to connect from, round robin (e.g. 127.0.0.1,127.0.0.2): each
    /// address has its own ephemeral ports.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub source: Vec<IpAddr>,

    /// The scenario's client count N: connections (conn), publishers (pub, fanin, p2p,
    /// shared), subscribers (sub, fanout, wildcard), subscribing clients (subscribe), pairs
    /// (churn).
    #[arg(short, long, value_name = "N")]
    pub clients: Option<usize>,

    /// Number of publishers (overrides the scenario's default; p2p uses --clients for both).
    #[arg(long, value_name = "N")]
    pub publishers: Option<usize>,

    /// Number of subscribers (overrides the scenario's default; for shared, the group's
    /// consumers).
    #[arg(long, value_name = "N")]
    pub subscribers: Option<usize>,

    /// Messages per publisher (for sub: messages per subscriber before it stops).
    #[arg(short = 'n', long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=u64::from(u32::MAX)))]
    pub count: u64,

    /// Hard time limit of the publishing phase (conn: how long connections are held), e.g.
    /// `10s`, `500ms`, `1m`.
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Messages per second per publisher; 0 publishes as fast as the broker takes them.
    #[arg(short, long, default_value_t = 0.0, value_parser = parse_rate)]
    pub rate: f64,

    /// New connections per second over all clients; 0 connects as fast as possible (with at
    /// most --connect-concurrency handshakes at a time).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub connect_rate: f64,

    /// Maximum number of connection handshakes in progress at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub connect_concurrency: u32,

    /// Time limit of one connection handshake (TCP and CONNACK), and of one SUBSCRIBE.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Payload size in bytes; at least 16 (publisher index, sequence number, send time).
    #[arg(short, long, default_value_t = 32, value_parser = parse_size)]
    pub size: usize,

    /// QoS of publications and subscriptions.
    #[arg(short, long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// Outgoing QoS 1/2 messages in flight per publisher; subscribe and churn: SUBSCRIBE and
    /// UNSUBSCRIBE packets in flight per client.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,

    /// Protocol version: 3.1.1 (or 311, 4) or 5.
    #[arg(short = 'V', long = "protocol", default_value = "5", value_parser = parse_version)]
    pub version: ProtocolVersion,

    /// Topic pattern of publications; `%i` is the publisher index. Default per scenario:
    /// `bench/%i` (fanout: `bench/fanout`; wildcard: fixed `dev/<i>/x`).
    #[arg(short, long, value_name = "PATTERN")]
    pub topic: Option<String>,

    /// Filter pattern of subscriptions; `%i` is the subscriber index. Default per scenario:
    /// fanin, shared `bench/+`; fanout `bench/fanout`; p2p `bench/%i`; sub `bench/#`.
    #[arg(short, long, value_name = "PATTERN")]
    pub filter: Option<String>,

    /// Shared subscription group name (shared).
    #[arg(long, default_value = "bench")]
    pub group: String,

    /// Non-matching wildcard filters per subscriber (wildcard).
    #[arg(long, default_value_t = 20)]
    pub wildcard_filters: usize,

    /// Filters per client (subscribe): one SUBSCRIBE each, a mix of exact filters and
    /// wildcards under `bench/sub/<client>/`.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub filters: u64,

    /// Clients that subscribe and unsubscribe continuously while p2p runs (churn).
    #[arg(long, default_value_t = 10)]
    pub churners: usize,

    /// SUBSCRIBE and UNSUBSCRIBE requests per second per churner (churn; default: as fast as
    /// the broker answers, within --inflight). A fixed rate puts the same churn on every broker.
    #[arg(long, value_name = "PER_S", value_parser = parse_rate)]
    pub churn_rate: Option<f64>,

    /// Keep-alive in seconds.
    #[arg(short, long, default_value_t = 60)]
    pub keep_alive: u16,

    /// Persistent sessions: Clean Start / Clean Session off, with --session-expiry on MQTT 5.
    #[arg(long)]
    pub persistent: bool,

    /// Session Expiry Interval in seconds with --persistent (MQTT 5).
    #[arg(long, default_value_t = 300)]
    pub session_expiry: u32,

    /// Client identifier prefix; clients are `<prefix>-p<i>` (publishers), `-s<i>`
    /// (subscribers), `-c<i>` (conn). Default `tern-bench-<pid>`.
    #[arg(long, value_name = "PREFIX")]
    pub client_id_prefix: Option<String>,

    /// Pause between the subscriptions being in place and publishing.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub settle: Duration,

    /// How long to wait, after publishing ends, for acknowledgements and deliveries in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,

    /// Worker threads of the load generator (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,

    /// Exit with status 1 when messages are lost (QoS 1 and 2), duplicated (QoS 2), or
    /// delivered where no subscription of the run asked for them.
    #[arg(long)]
    pub fail_on_loss: bool,

    /// Process id of the broker (on this machine): its CPU time over the measured phase is
    /// reported (publishing start to end of drain; conn: the connection phase).
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Test hook: subscriber 0 drops its connection (no DISCONNECT) after receiving N
    /// messages, to show that loss is counted.
    #[arg(long, hide = true, value_name = "N")]
    pub kill_subscriber_after: Option<u64>,
}

/// The validated run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub scenario: Scenario,
    pub host: String,
    pub port: u16,
    /// TLS for every connection (`--cafile`/`--capath`), session resumption off.
    pub tls: Option<TlsOptions>,
    /// The user name pattern (`%i` = the client's index in its role).
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// Distinct user names: `%i` is the index modulo this.
    pub users: Option<usize>,
    pub sources: Vec<IpAddr>,
    pub publishers: usize,
    pub subscribers: usize,
    /// Every connection of the run (conn: the held connections).
    pub connections: usize,
    pub count: u64,
    pub duration: Duration,
    pub rate: f64,
    pub connect_rate: f64,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub size: usize,
    pub qos: QoS,
    pub inflight: usize,
    pub version: ProtocolVersion,
    /// Publication topic pattern (`%i` = publisher index); unused by wildcard.
    pub topic: String,
    /// Subscription filter pattern (`%i` = subscriber index), without the `$share` prefix.
    pub filter: String,
    pub group: String,
    pub wildcard_filters: usize,
    /// Filters per client (subscribe).
    pub filters: usize,
    /// Subscribe/unsubscribe clients next to the p2p pairs (churn).
    pub churners: usize,
    /// Requests per second per churner (`None`: unpaced).
    pub churn_rate: Option<f64>,
    pub keep_alive: u16,
    pub persistent: bool,
    pub session_expiry: u32,
    pub client_id_prefix: String,
    pub settle: Duration,
    pub drain: Duration,
    pub threads: Option<usize>,
    pub quiet: bool,
    pub json: bool,
    pub fail_on_loss: bool,
    pub broker_pid: Option<u32>,
    pub kill_subscriber_after: Option<u64>,
}

impl Plan {
    /// Applies the scenario's defaults and checks the combination of flags.
    pub(crate) fn from_args(a: BenchArgs) -> Result<Self, String> {
        use Scenario::*;
        let n = a.clients;
        let (publishers, subscribers) = match a.scenario {
            Conn => (0, 0),
            Subscribe => (0, n.or(a.subscribers).unwrap_or(10)),
            Pub => (a.publishers.or(n).unwrap_or(1), 0),
            Sub => (0, a.subscribers.or(n).unwrap_or(1)),
            Fanin => (a.publishers.or(n).unwrap_or(8), a.subscribers.unwrap_or(1)),
            Fanout => (
                a.publishers.unwrap_or(1),
                a.subscribers.or(n).unwrap_or(100),
            ),
            P2p | Churn => {
                let pairs = n.or(a.publishers).or(a.subscribers).unwrap_or(10);
                if a.publishers.is_some_and(|p| p != pairs)
                    || a.subscribers.is_some_and(|s| s != pairs)
                {
                    return Err(
                        "p2p runs pairs: --publishers and --subscribers must be equal \
                                (use --clients N)"
                            .into(),
                    );
                }
                (pairs, pairs)
            }
            Shared => (a.publishers.or(n).unwrap_or(4), a.subscribers.unwrap_or(4)),
            Wildcard => (
                a.publishers.unwrap_or(8),
                a.subscribers.or(n).unwrap_or(1000),
            ),
        };
        let churners = if a.scenario == Churn { a.churners } else { 0 };
        let connections = if a.scenario == Conn {
            n.unwrap_or(100)
        } else {
            publishers + subscribers + churners
        };
        if connections == 0 {
            return Err("nothing to run: the client count is 0".into());
        }
        if !matches!(a.scenario, Conn | Sub | Subscribe) && publishers == 0 {
            return Err(format!(
                "{} needs at least one publisher",
                a.scenario.name()
            ));
        }
        if !matches!(a.scenario, Conn | Pub) && subscribers == 0 {
            return Err(format!(
                "{} needs at least one subscriber",
                a.scenario.name()
            ));
        }
        let (default_topic, default_filter) = match a.scenario {
            Fanout => ("bench/fanout", "bench/fanout"),
            P2p | Churn => ("bench/%i", "bench/%i"),
            Sub => ("bench/%i", "bench/#"),
            _ => ("bench/%i", "bench/+"),
        };
        if a.scenario == Wildcard && (a.topic.is_some() || a.filter.is_some()) {
            return Err("wildcard uses fixed topics (dev/<i>/x) and filters (dev/<i>/+)".into());
        }
        if matches!(a.scenario, Subscribe | Churn) && (a.topic.is_some() || a.filter.is_some()) {
            return Err(format!(
                "{} uses fixed topics and filters (see `tern bench --help`)",
                a.scenario.name()
            ));
        }
        let topic = a.topic.unwrap_or_else(|| default_topic.to_owned());
        let filter = a.filter.unwrap_or_else(|| default_filter.to_owned());
        if topic.contains(['+', '#']) {
            return Err(format!("--topic `{topic}` contains a wildcard"));
        }
        if a.scenario == Shared && (a.group.is_empty() || a.group.contains(['/', '+', '#'])) {
            return Err(format!("invalid shared subscription group `{}`", a.group));
        }
        if a.kill_subscriber_after.is_some() && subscribers == 0 {
            return Err("--kill-subscriber-after needs a subscriber".into());
        }
        if a.source
            .iter()
            .any(|s| s.is_ipv4() != a.source[0].is_ipv4())
        {
            return Err("--source mixes IPv4 and IPv6 addresses".into());
        }
        if a.password.is_some() && a.username.is_none() && !a.version.is_v5() {
            return Err(
                "a password (--password) needs a user name (--username) before MQTT 5".into(),
            );
        }
        if a.users.is_some() && !a.username.as_deref().is_some_and(|u| u.contains("%i")) {
            return Err("--users needs `%i` in --username".into());
        }
        let tls = tls_options(&a.tls)?;
        if tls.is_some() && matches!(a.scenario, Subscribe | Churn) {
            return Err(format!(
                "{} runs over plain TCP only: no --cafile or --capath",
                a.scenario.name()
            ));
        }
        Ok(Self {
            scenario: a.scenario,
            host: a.host,
            port: a.port.unwrap_or(if tls.is_some() { 8883 } else { 1883 }),
            tls,
            username: a.username,
            password: a.password.map(Bytes::from),
            users: a.users.map(|n| n as usize),
            sources: a.source,
            publishers,
            subscribers,
            connections,
            count: a.count,
            duration: a.duration,
            rate: a.rate,
            connect_rate: a.connect_rate,
            connect_concurrency: a.connect_concurrency as usize,
            connect_timeout: a.connect_timeout,
            size: a.size,
            qos: QoS::from_u8(a.qos).unwrap_or(QoS::AtMostOnce),
            inflight: usize::from(a.inflight),
            version: a.version,
            topic,
            filter,
            group: a.group,
            wildcard_filters: a.wildcard_filters,
            filters: usize::try_from(a.filters).unwrap_or(usize::MAX),
            churners,
            churn_rate: a.churn_rate.filter(|r| *r > 0.0),
            keep_alive: a.keep_alive,
            persistent: a.persistent,
            session_expiry: a.session_expiry,
            client_id_prefix: a
                .client_id_prefix
                .unwrap_or_else(|| format!("tern-bench-{}", std::process::id())),
            settle: a.settle,
            drain: a.drain,
            threads: a.threads.map(usize::from),
            quiet: a.quiet,
            json: a.json,
            fail_on_loss: a.fail_on_loss,
            broker_pid: a.broker_pid,
            kill_subscriber_after: a.kill_subscriber_after,
        })
    }

    /// The user name of the client with index `index` in its role, if any.
    pub(crate) fn username(&self, index: usize) -> Option<String> {
        let pattern = self.username.as_deref()?;
        let index = self.users.map_or(index, |n| index % n);
        Some(pattern.replace("%i", &index.to_string()))
    }

    /// The protocol version as reports write it.
    pub(crate) fn version_name(&self) -> &'static str {
        match self.version {
            ProtocolVersion::V31 => "3.1",
            ProtocolVersion::V311 => "3.1.1",
            ProtocolVersion::V5 => "5",
        }
    }
}

/// The TLS options of the flags, with session resumption off: every connection of a run makes
/// a full handshake, so that connection figures do not depend on how many tickets the broker
/// issued to earlier connections.
fn tls_options(flags: &TlsArgs) -> Result<Option<TlsOptions>, String> {
    let tls = flags.options().map_err(|e: TlsFlagError| e.to_string())?;
    Ok(tls.map(|mut tls| {
        let mut config = (*tls.config).clone();
        config.resumption = Resumption::disabled();
        tls.config = std::sync::Arc::new(config);
        tls
    }))
}

/// Parses `500ms`, `2s`, `1.5s`, `1m`, `1h`, or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as `10s`, `500ms` or `1m`, got `{text}`"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit `{other}` in `{text}`")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration `{text}` is out of range"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "expected a rate per second (0 or more), got `{text}`"
        )),
    }
}

fn parse_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a payload size in bytes, got `{text}`"))?;
    if size < HEADER_LEN {
        return Err(format!(
            "the payload carries a {HEADER_LEN}-byte header (publisher, sequence, time): \
             --size must be at least {HEADER_LEN}"
        ));
    }
    if size > 256 * 1024 * 1024 {
        return Err("--size is larger than MQTT allows".into());
    }
    Ok(size)
}

fn parse_version(text: &str) -> Result<ProtocolVersion, String> {
    match text.trim() {
        "5" | "5.0" | "v5" => Ok(ProtocolVersion::V5),
        "3.1.1" | "311" | "4" | "v311" => Ok(ProtocolVersion::V311),
        "3.1" | "31" | "3" => Ok(ProtocolVersion::V31),
        other => Err(format!(
            "unknown protocol version `{other}` (3.1, 3.1.1 or 5)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
    }

    /// The plan of `tern bench ARGS...`.
    fn plan(args: &[&str]) -> Result<Plan, String> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Plan::from_args(cli.bench)
    }

    #[test]
    fn user_names_expand_the_index() {
        let p = plan(&["conn", "-u", "user%i", "-P", "pw"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.username(12).as_deref(), Some("user12"));
        assert_eq!(p.password.as_deref(), Some(&b"pw"[..]));
        assert_eq!((p.port, p.tls.is_none()), (1883, true));
        let p = plan(&["conn", "-u", "u%i-%i", "--users", "3"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.username(4).as_deref(), Some("u1-1"));
        let p = plan(&["conn"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.username(0), None);
        assert!(plan(&["conn", "-u", "fixed", "--users", "2"]).is_err());
        assert!(plan(&["conn", "--users", "2"]).is_err());
    }

    #[test]
    fn sizes_and_versions() {
        assert!(parse_size("15").is_err());
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_version("311"), Ok(ProtocolVersion::V311));
        assert!(parse_version("6").is_err());
    }
}
