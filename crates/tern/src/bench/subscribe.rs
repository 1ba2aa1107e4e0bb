//! The subscription scenarios: `subscribe` (set-up and tear-down of many subscriptions) and the
//! churners of `churn` (clients that subscribe and unsubscribe while p2p runs).
//!
//! Both pipeline SUBSCRIBE and UNSUBSCRIBE packets, `--inflight` of them per client, one filter
//! per packet, which [`tern_client::Client`] (one request at a time) cannot do; so they speak
//! MQTT themselves over plain TCP through the codec ([`Wire`]), with the CONNECT that
//! [`ConnectOptions`] builds (user name and password included).
//!
//! # `subscribe`
//!
//! `-c` clients connect; then, all at once, each sends its `--filters` filters (see
//! [`subscribe_filter`]: exact filters and wildcards under `bench/sub/<client>/`, so the
//! subscription tree grows both wide and deep), keeping `--inflight` SUBSCRIBEs in flight, and
//! times each SUBACK. Once every client has all its SUBACKs, they unsubscribe from everything the
//! same way. Each phase has its own figures, and its own broker CPU time (`--broker-pid`).
//!
//! JSON fields (`--json`), besides `scenario`, `protocol`, `qos`, `clients`,
//! `filters_per_client`, `inflight`, `connect` (`attempted`, `connected`, `failed`), `errors`,
//! `errors_by_kind`, `loadgen_cpu_s` (and its `_user_s`, `_system_s` parts) and `passed`:
//!
//! | field | meaning |
//! | --- | --- |
//! | `subscriptions` | SUBACK codes that granted a subscription |
//! | `failures` | SUBACK codes that refused one (0x80 and above) |
//! | `seconds` | first SUBSCRIBE to last SUBACK |
//! | `subscriptions_per_s` | `subscriptions` / `seconds` |
//! | `suback_latency_us` | SUBSCRIBE written to its SUBACK read, µs: `count`, `min`, `mean`, `p50`, `p90`, `p99`, `p999`, `max` |
//! | `broker_cpu_s` | the broker's CPU time over the subscribe phase (`null` without `--broker-pid`) |
//! | `broker_cpu_us_per_subscription` | `broker_cpu_s` per SUBACK code, µs |
//! | `unsubscribe_ops` | UNSUBACKs received (one filter each) |
//! | `unsubscribe_failures` | UNSUBACK codes 0x80 and above (MQTT 5; 3.1.1 has none) |
//! | `unsubscribe_seconds`, `unsubscribe_per_s`, `unsuback_latency_us`, `unsubscribe_broker_cpu_s`, `broker_cpu_us_per_unsubscription` | the same for the unsubscribe phase |
//!
//! `passed` is true when every filter was granted and every client completed both phases; the
//! run exits with status 1 otherwise (after printing the report).
//!
//! # `churn`
//!
//! Each churner first holds [`CHURN_HELD`] subscriptions; from the start of publishing on it
//! alternates UNSUBSCRIBE of its oldest filter and SUBSCRIBE of a new one, `--inflight` in
//! flight, until publishing ends. The filters ([`churn_filter`]) sit where the p2p topics
//! `bench/<i>` are routed (under `bench/<i>/`, `bench/+/` and `+/`) but match none of them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde::Serialize;
use tern_client::ConnectOptions;
use tern_client::tern_codec::{
    ByteString, Decoder, Packet, PacketId, ProtocolVersion, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::args::Plan;
use super::counting::Errors;
use super::latency::{Percentiles, histogram};
use super::payload::Clock;
use super::report::CpuTime;

/// Subscriptions each churner holds while it churns.
pub(crate) const CHURN_HELD: usize = 100;
/// How long a client may take to say goodbye at the end.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Filter number `k` of client `c` in `subscribe`: five shapes in turn, all distinct.
pub(crate) fn subscribe_filter(c: usize, k: usize) -> String {
    match k % 5 {
        0 => format!("bench/sub/{c}/{k}"),
        1 => format!("bench/sub/{c}/{k}/+"),
        2 => format!("bench/sub/{c}/+/{k}"),
        3 => format!("+/sub/{c}/{k}"),
        _ => format!("bench/sub/{c}/{k}/#"),
    }
}

/// Filter number `n` of churner `c` in `churn`, with `pairs` p2p pairs publishing on
/// `bench/<i>`: next to the routes of those topics, never matching one (each has at least
/// three levels, and none ends in `#` right under `bench/<i>`).
pub(crate) fn churn_filter(c: usize, n: usize, pairs: usize) -> String {
    let i = n % pairs.max(1);
    match n % 4 {
        0 => format!("bench/{i}/c{c}/{n}"),
        1 => format!("bench/{i}/+/c{c}-{n}"),
        2 => format!("bench/+/c{c}/{n}"),
        _ => format!("+/c{c}/{n}/#"),
    }
}

/// One MQTT connection driven by hand: packets queued, written in batches, read one by one.
struct Wire {
    stream: TcpStream,
    version: ProtocolVersion,
    decoder: Decoder,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Wire {
    /// Connects as client `id` (user name of index `index`, source address of connection `n`)
    /// and waits for a successful CONNACK, all within `--connect-timeout`. The error is the
    /// kind to count.
    async fn connect(
        plan: &Plan,
        id: String,
        n: usize,
        index: usize,
    ) -> Result<Self, &'static str> {
        match timeout(
            plan.connect_timeout,
            Self::connect_unbounded(plan, id, n, index),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err("connect_timeout"),
        }
    }

    async fn connect_unbounded(
        plan: &Plan,
        id: String,
        n: usize,
        index: usize,
    ) -> Result<Self, &'static str> {
        let addr: SocketAddr = tokio::net::lookup_host((plan.host.as_str(), plan.port))
            .await
            .map_err(|_| "connect_io")?
            .next()
            .ok_or("connect_io")?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|_| "connect_io")?;
        if !plan.sources.is_empty() {
            let source = plan.sources[n % plan.sources.len()];
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|_| "connect_io")?;
        }
        let stream = socket.connect(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "connection_refused"
            } else {
                "connect_io"
            }
        })?;
        let _ = stream.set_nodelay(true);
        let mut options = ConnectOptions::new(plan.host.clone(), plan.port, id, plan.version);
        options.username = plan.username(index);
        options.password.clone_from(&plan.password);
        options.keep_alive = plan.keep_alive;
        let mut wire = Self {
            stream,
            version: plan.version,
            decoder: Decoder::with_version(plan.version, u32::MAX),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(4096),
        };
        wire.queue(&Packet::Connect(Box::new(options.connect_packet())))
            .map_err(|_| "protocol")?;
        wire.flush().await.map_err(|_| "connect_io")?;
        match wire.read().await {
            Ok(Packet::ConnAck(ack)) if !ack.reason.is_error() => Ok(wire),
            Ok(Packet::ConnAck(_)) => Err("connack_refused"),
            Ok(_) => Err("protocol"),
            Err(kind) => Err(kind),
        }
    }

    fn queue(&mut self, packet: &Packet) -> Result<(), &'static str> {
        packet
            .encode(self.version, &mut self.wbuf)
            .map(|_| ())
            .map_err(|_| "encode")
    }

    async fn flush(&mut self) -> Result<(), &'static str> {
        if !self.wbuf.is_empty() {
            self.stream
                .write_all_buf(&mut self.wbuf)
                .await
                .map_err(|_| "io")?;
        }
        Ok(())
    }

    /// The next packet. Cancel safe: bytes read stay in the buffer.
    async fn read(&mut self) -> Result<Packet, &'static str> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.rbuf).map_err(|_| "decode")? {
                return Ok(packet);
            }
            if self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|_| "io")?
                == 0
            {
                return Err("closed_by_broker");
            }
        }
    }

    /// A packet already received, without waiting.
    fn buffered(&mut self) -> Result<Option<Packet>, &'static str> {
        self.decoder.decode(&mut self.rbuf).map_err(|_| "decode")
    }

    /// Queues SUBSCRIBE (`subscribe`) or UNSUBSCRIBE of one filter.
    fn queue_request(
        &mut self,
        id: PacketId,
        filter: &str,
        subscribe: bool,
        options: SubscriptionOptions,
    ) -> Result<(), &'static str> {
        let packet = if subscribe {
            Packet::Subscribe(Subscribe {
                packet_id: id,
                properties: SubscribeProperties::default(),
                filters: vec![(ByteString::from(filter), options)],
            })
        } else {
            Packet::Unsubscribe(Unsubscribe {
                packet_id: id,
                user_properties: Vec::new(),
                filters: vec![ByteString::from(filter)],
            })
        };
        self.queue(&packet)
    }

    /// Sends DISCONNECT and closes, within [`DISCONNECT_TIMEOUT`].
    async fn close(mut self) {
        let _ = timeout(DISCONNECT_TIMEOUT, async {
            self.queue(&Packet::Disconnect(Default::default()))?;
            self.flush().await?;
            self.stream.shutdown().await.map_err(|_| "io")
        })
        .await;
    }
}

/// Packet identifiers 1, 2, ..., 65535, 1, ...: with fewer than 65535 requests in flight, an
/// identifier comes back only after its request was answered.
fn packet_id(seq: u64) -> PacketId {
    PacketId::new((seq % 65_535) as u16 + 1).unwrap_or(PacketId::MIN)
}

/// What one client measured over one phase of requests.
#[derive(Debug)]
struct PhaseResult {
    /// Answers received (one filter each).
    answered: u64,
    /// Answers with a failure code.
    failed: u64,
    first_send_ns: u64,
    last_answer_ns: u64,
    latency: Histogram<u64>,
    errors: Errors,
    /// The connection is still usable.
    alive: bool,
}

impl PhaseResult {
    fn new() -> Self {
        Self {
            answered: 0,
            failed: 0,
            first_send_ns: u64::MAX,
            last_answer_ns: 0,
            latency: histogram(),
            errors: Errors::default(),
            alive: true,
        }
    }

    fn dead(kind: &'static str) -> Self {
        let mut r = Self::new();
        r.errors.add(kind);
        r.alive = false;
        r
    }
}

/// What a run of requests is: operation `op` → (filter, subscribe?).
trait Ops: Sync {
    fn op(&self, op: u64) -> (String, bool);
}

/// Runs requests `0..count` (or until `stop` is cancelled, with `count` = `u64::MAX`),
/// `window` in flight, one per packet; each answer within `answer_timeout`. With a `rate`
/// (requests/s), request `n` is not sent before `n / rate` seconds from the start.
#[allow(clippy::too_many_arguments)]
async fn run_requests(
    wire: &mut Wire,
    ops: &dyn Ops,
    count: u64,
    window: usize,
    clock: &Clock,
    answer_timeout: Duration,
    stop: Option<&CancellationToken>,
    rate: Option<f64>,
) -> PhaseResult {
    let mut r = PhaseResult::new();
    let options = SubscriptionOptions::default();
    let mut pending: HashMap<u16, u64> = HashMap::with_capacity(window);
    let mut next: u64 = 0;
    let mut stopping = false;
    let started = tokio::time::Instant::now();
    let due = |n: u64| rate.map(|rate| started + Duration::from_secs_f64(n as f64 / rate));
    loop {
        if stop.is_some_and(CancellationToken::is_cancelled) {
            stopping = true;
        }
        while !stopping
            && pending.len() < window
            && next < count
            && due(next).is_none_or(|at| at <= tokio::time::Instant::now())
        {
            let (filter, subscribe) = ops.op(next);
            let id = packet_id(next);
            if let Err(kind) = wire.queue_request(id, &filter, subscribe, options) {
                r.errors.add(kind);
                r.alive = false;
                return r;
            }
            let now = clock.now_ns();
            r.first_send_ns = r.first_send_ns.min(now);
            pending.insert(id.get(), now);
            next += 1;
        }
        if let Err(kind) = wire.flush().await {
            r.errors.add(kind);
            r.alive = false;
            return r;
        }
        if pending.is_empty() && (stopping || next >= count) {
            return r;
        }
        // Paced: the next request's time, when the window has room for it.
        let next_due = due(next).filter(|_| !stopping && pending.len() < window && next < count);
        let stop = stop.filter(|_| !stopping);
        // `Wire::read` only consumes whole packets, so a read abandoned for another branch
        // loses nothing.
        let packet = tokio::select! {
            biased;
            read = timeout(answer_timeout, wire.read()), if !pending.is_empty() => read,
            () = tokio::time::sleep_until(next_due.unwrap_or(started)), if next_due.is_some() => {
                continue;
            }
            () = async { if let Some(stop) = stop { stop.cancelled().await } },
                if stop.is_some() => continue,
            // Not reached: with nothing pending, a request is due or the run is over.
            else => return r,
        };
        let mut packet = match packet {
            Ok(Ok(p)) => p,
            Ok(Err(kind)) => {
                r.errors.add(kind);
                r.alive = false;
                return r;
            }
            Err(_) => {
                r.errors.add("subscribe_timeout");
                r.alive = false;
                return r;
            }
        };
        let now = clock.now_ns();
        loop {
            let answer = match &packet {
                Packet::SubAck(a) => Some((a.packet_id, a.reasons.as_slice())),
                Packet::UnsubAck(a) => Some((a.packet_id, a.reasons.as_slice())),
                Packet::Disconnect(_) => {
                    r.errors.add("disconnected_by_broker");
                    r.alive = false;
                    return r;
                }
                // Nothing else is expected (no filter of these scenarios gets messages).
                _ => None,
            };
            if let Some((id, reasons)) = answer
                && let Some(sent_ns) = pending.remove(&id.get())
            {
                r.answered += 1;
                if reasons.iter().any(|c: &ReasonCode| c.is_error()) {
                    r.failed += 1;
                }
                r.last_answer_ns = now;
                let _ = r
                    .latency
                    .record((now.saturating_sub(sent_ns) / 1000).max(1));
            }
            match wire.buffered() {
                Ok(Some(p)) => packet = p,
                Ok(None) => break,
                Err(kind) => {
                    r.errors.add(kind);
                    r.alive = false;
                    return r;
                }
            }
        }
    }
}

// --------------------------------------------------------------------------------------------
// subscribe

struct SubscribeOps {
    client: usize,
    subscribe: bool,
}

impl Ops for SubscribeOps {
    fn op(&self, op: u64) -> (String, bool) {
        (subscribe_filter(self.client, op as usize), self.subscribe)
    }
}

/// The figures of one phase, over every client.
#[derive(Debug, Default)]
struct PhaseFigures {
    answered: u64,
    failed: u64,
    seconds: f64,
    per_s: f64,
    latency: Percentiles,
    broker_cpu_s: Option<f64>,
    cpu_us_per_op: Option<f64>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn figures(
    results: &[PhaseResult],
    broker_cpu_s: Option<f64>,
    errors: &mut Errors,
) -> PhaseFigures {
    let mut latency = histogram();
    let (mut answered, mut failed, mut first, mut last) = (0, 0, u64::MAX, 0);
    for r in results {
        answered += r.answered;
        failed += r.failed;
        first = first.min(r.first_send_ns);
        last = last.max(r.last_answer_ns);
        let _ = latency.add(&r.latency);
        errors.merge(&r.errors);
    }
    let ns = last.saturating_sub(first);
    PhaseFigures {
        answered,
        failed,
        seconds: round3(ns as f64 / 1e9),
        per_s: if ns == 0 {
            0.0
        } else {
            (answered as f64 * 1e9 / ns as f64 * 10.0).round() / 10.0
        },
        latency: Percentiles::of(&latency),
        broker_cpu_s: broker_cpu_s.map(round3),
        cpu_us_per_op: broker_cpu_s
            .filter(|_| answered > 0)
            .map(|s| round3(s * 1e6 / answered as f64)),
    }
}

/// The `connect` object of the subscribe report.
#[derive(Debug, Serialize)]
struct ConnectCounts {
    attempted: u64,
    connected: u64,
    failed: u64,
}

/// The report of `subscribe` (fields in the module documentation).
#[derive(Debug, Serialize)]
struct SubscribeReport {
    scenario: &'static str,
    protocol: &'static str,
    qos: u8,
    clients: usize,
    filters_per_client: usize,
    inflight: usize,
    subscriptions: u64,
    failures: u64,
    seconds: f64,
    subscriptions_per_s: f64,
    suback_latency_us: Percentiles,
    broker_cpu_s: Option<f64>,
    broker_cpu_us_per_subscription: Option<f64>,
    unsubscribe_ops: u64,
    unsubscribe_failures: u64,
    unsubscribe_seconds: f64,
    unsubscribe_per_s: f64,
    unsuback_latency_us: Percentiles,
    unsubscribe_broker_cpu_s: Option<f64>,
    broker_cpu_us_per_unsubscription: Option<f64>,
    connect: ConnectCounts,
    errors: u64,
    errors_by_kind: BTreeMap<&'static str, u64>,
    loadgen_cpu_s: f64,
    loadgen_cpu_user_s: f64,
    loadgen_cpu_system_s: f64,
    passed: bool,
}

fn broker_cpu(plan: &Plan) -> Option<CpuTime> {
    plan.broker_pid.and_then(CpuTime::of_pid)
}

fn broker_cpu_since(plan: &Plan, start: Option<CpuTime>) -> Option<f64> {
    Some(broker_cpu(plan)?.since(start?).total())
}

/// Runs `tern bench subscribe`: prints the report, returns the exit status.
pub(crate) fn run(plan: &Plan) -> anyhow::Result<ExitCode> {
    let cpu_before = CpuTime::now();
    let runtime = super::runtime(plan)?;
    let measured = runtime.block_on(measure(plan.clone()));
    drop(runtime);
    let cpu = CpuTime::now().since(cpu_before);
    let (subscribed, unsubscribed, connected, mut errors) = measured?;
    let clients = plan.subscribers;
    let mut all_errors = errors.clone();
    let sub = figures(&subscribed.0, subscribed.1, &mut all_errors);
    let unsub = figures(&unsubscribed.0, unsubscribed.1, &mut all_errors);
    errors = all_errors;
    let completed = subscribed.0.iter().all(|r| r.alive) && unsubscribed.0.iter().all(|r| r.alive);
    let expected = (clients * plan.filters) as u64;
    let passed = completed
        && connected == clients as u64
        && sub.failed == 0
        && sub.answered == expected
        && unsub.failed == 0
        && unsub.answered == expected;
    let report = SubscribeReport {
        scenario: "subscribe",
        protocol: plan.version_name(),
        qos: plan.qos as u8,
        clients,
        filters_per_client: plan.filters,
        inflight: plan.inflight,
        subscriptions: sub.answered - sub.failed,
        failures: sub.failed,
        seconds: sub.seconds,
        subscriptions_per_s: sub.per_s,
        suback_latency_us: sub.latency,
        broker_cpu_s: sub.broker_cpu_s,
        broker_cpu_us_per_subscription: sub.cpu_us_per_op,
        unsubscribe_ops: unsub.answered,
        unsubscribe_failures: unsub.failed,
        unsubscribe_seconds: unsub.seconds,
        unsubscribe_per_s: unsub.per_s,
        unsuback_latency_us: unsub.latency,
        unsubscribe_broker_cpu_s: unsub.broker_cpu_s,
        broker_cpu_us_per_unsubscription: unsub.cpu_us_per_op,
        connect: ConnectCounts {
            attempted: clients as u64,
            connected,
            failed: clients as u64 - connected,
        },
        errors: errors.0.values().sum(),
        errors_by_kind: errors.0,
        loadgen_cpu_s: round3(cpu.total()),
        loadgen_cpu_user_s: round3(cpu.user),
        loadgen_cpu_system_s: round3(cpu.system),
        passed,
    };
    if plan.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        print!("{}", table(&report));
    }
    if report.passed {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "tern bench: failed: {} of {expected} subscriptions refused, {} unsubscriptions \
         refused, {} client errors",
        report.failures, report.unsubscribe_failures, report.errors
    );
    Ok(ExitCode::FAILURE)
}

type Phase = (Vec<PhaseResult>, Option<f64>);

/// Connects every client, then runs the subscribe phase and the unsubscribe phase.
async fn measure(plan: Plan) -> anyhow::Result<(Phase, Phase, u64, Errors)> {
    let clock = Clock::start();
    let plan = Arc::new(plan);
    let n = plan.subscribers;
    let starts = [CancellationToken::new(), CancellationToken::new()];
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), &'static str>>();
    let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
    let (unsub_tx, mut unsub_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(n);
    for c in 0..n {
        let plan = plan.clone();
        let starts = starts.clone();
        let (ready_tx, sub_tx, unsub_tx) = (ready_tx.clone(), sub_tx.clone(), unsub_tx.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("{}-s{c}", plan.client_id_prefix);
            let mut wire = match Wire::connect(&plan, id, c, c).await {
                Ok(w) => w,
                Err(kind) => {
                    let _ = ready_tx.send(Err(kind));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            for (phase, tx) in [(0, &sub_tx), (1, &unsub_tx)] {
                starts[phase].cancelled().await;
                let ops = SubscribeOps {
                    client: c,
                    subscribe: phase == 0,
                };
                let r = run_requests(
                    &mut wire,
                    &ops,
                    plan.filters as u64,
                    plan.inflight,
                    &clock,
                    plan.connect_timeout,
                    None,
                    None,
                )
                .await;
                let alive = r.alive;
                let _ = tx.send(r);
                if !alive {
                    if phase == 0 {
                        let _ = unsub_tx.send(PhaseResult::dead("not_run"));
                    }
                    return;
                }
            }
            wire.close().await;
        }));
    }
    drop((ready_tx, sub_tx, unsub_tx));
    let mut connected = 0u64;
    let mut errors = Errors::default();
    // Each task answers once (and keeps its sender: count, do not wait for the channel to close).
    for _ in 0..n {
        let Some(r) = ready_rx.recv().await else {
            break;
        };
        match r {
            Ok(()) => connected += 1,
            Err(kind) => errors.add(kind),
        }
    }
    if connected == 0 {
        for t in tasks {
            let _ = t.await;
        }
        anyhow::bail!(
            "could not connect to {}:{}{}",
            plan.host,
            plan.port,
            errors.summary()
        );
    }
    let mut phases = Vec::new();
    for (phase, rx) in [(0, &mut sub_rx), (1, &mut unsub_rx)] {
        let cpu = broker_cpu(&plan);
        starts[phase].cancel();
        let mut results = Vec::with_capacity(n);
        while results.len() < connected as usize {
            match rx.recv().await {
                Some(r) => results.push(r),
                None => break,
            }
        }
        phases.push((results, broker_cpu_since(&plan, cpu)));
    }
    for t in tasks {
        t.await
            .map_err(|e| anyhow::anyhow!("a client task failed: {e}"))?;
    }
    let unsub = phases.pop().unwrap_or_default();
    let sub = phases.pop().unwrap_or_default();
    Ok((sub, unsub, connected, errors))
}

fn table(r: &SubscribeReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let mut row = |name: &str, value: String| {
        let _ = writeln!(t, "  {name:<16} {value}");
    };
    row(
        "scenario",
        format!(
            "subscribe (MQTT {}, {} clients × {} filters, {} in flight per client)",
            r.protocol, r.clients, r.filters_per_client, r.inflight
        ),
    );
    let cpu = |s: Option<f64>, per: Option<f64>| match (s, per) {
        (Some(s), Some(p)) => format!(", broker CPU {s:.2} s ({p:.2} µs each)"),
        (Some(s), None) => format!(", broker CPU {s:.2} s"),
        _ => String::new(),
    };
    let l = &r.suback_latency_us;
    row(
        "subscribe",
        format!(
            "{} granted, {} refused in {:.3} s ({:.0}/s), SUBACK p50 {} µs p99 {} µs max {} µs{}",
            r.subscriptions,
            r.failures,
            r.seconds,
            r.subscriptions_per_s,
            l.p50,
            l.p99,
            l.max,
            cpu(r.broker_cpu_s, r.broker_cpu_us_per_subscription)
        ),
    );
    let l = &r.unsuback_latency_us;
    row(
        "unsubscribe",
        format!(
            "{} answered, {} refused in {:.3} s ({:.0}/s), UNSUBACK p50 {} µs p99 {} µs max {} µs{}",
            r.unsubscribe_ops,
            r.unsubscribe_failures,
            r.unsubscribe_seconds,
            r.unsubscribe_per_s,
            l.p50,
            l.p99,
            l.max,
            cpu(
                r.unsubscribe_broker_cpu_s,
                r.broker_cpu_us_per_unsubscription
            )
        ),
    );
    row(
        "connections",
        format!(
            "{}/{} connected, {} failed",
            r.connect.connected, r.connect.attempted, r.connect.failed
        ),
    );
    row(
        "errors",
        super::report::errors_cell(r.errors, &r.errors_by_kind),
    );
    row(
        "loadgen CPU",
        format!(
            "{:.2} s (user {:.2}, system {:.2})",
            r.loadgen_cpu_s, r.loadgen_cpu_user_s, r.loadgen_cpu_system_s
        ),
    );
    t
}

// --------------------------------------------------------------------------------------------
// churn

struct ChurnOps {
    churner: usize,
    pairs: usize,
}

impl Ops for ChurnOps {
    /// After the [`CHURN_HELD`] initial subscriptions: UNSUBSCRIBE the oldest, SUBSCRIBE a
    /// new one, and so on.
    fn op(&self, op: u64) -> (String, bool) {
        let m = op as usize;
        if m.is_multiple_of(2) {
            (churn_filter(self.churner, m / 2, self.pairs), false)
        } else {
            (
                churn_filter(self.churner, CHURN_HELD + m / 2, self.pairs),
                true,
            )
        }
    }
}

struct HeldOps {
    churner: usize,
    pairs: usize,
}

impl Ops for HeldOps {
    fn op(&self, op: u64) -> (String, bool) {
        (churn_filter(self.churner, op as usize, self.pairs), true)
    }
}

/// What the churners did while publishing ran.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChurnOutcome {
    pub churners: usize,
    /// SUBSCRIBE and UNSUBSCRIBE answered during the measurement.
    pub ops: u64,
    /// Of which refused.
    pub failures: u64,
    /// From the start of publishing to the last answer.
    pub seconds: f64,
    pub errors: Errors,
}

/// The churners of a run: connected and holding their first subscriptions once
/// [`Churners::start`] returns; they churn from `start` (the start of publishing) until
/// `stop`.
pub(crate) struct Churners {
    tasks: Vec<tokio::task::JoinHandle<PhaseResult>>,
    errors: Errors,
    stop: CancellationToken,
}

impl Churners {
    pub(crate) async fn start(plan: &Plan, clock: Clock, go: CancellationToken) -> Self {
        let plan = Arc::new(plan.clone());
        let stop = CancellationToken::new();
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), &'static str>>();
        let pairs = plan.publishers;
        let tasks = (0..plan.churners)
            .map(|c| {
                let (plan, go, stop, ready_tx) =
                    (plan.clone(), go.clone(), stop.clone(), ready_tx.clone());
                tokio::spawn(async move {
                    let id = format!("{}-x{c}", plan.client_id_prefix);
                    let n = plan.publishers + plan.subscribers + c;
                    let mut wire = match Wire::connect(&plan, id, n, c).await {
                        Ok(w) => w,
                        Err(kind) => {
                            let _ = ready_tx.send(Err(kind));
                            return PhaseResult::dead(kind);
                        }
                    };
                    let held = run_requests(
                        &mut wire,
                        &HeldOps { churner: c, pairs },
                        CHURN_HELD as u64,
                        plan.inflight,
                        &clock,
                        plan.connect_timeout,
                        None,
                        None,
                    )
                    .await;
                    if !held.alive || held.failed > 0 {
                        let _ = ready_tx.send(Err("subscribe_refused"));
                        return held;
                    }
                    let _ = ready_tx.send(Ok(()));
                    drop(ready_tx);
                    go.cancelled().await;
                    let r = run_requests(
                        &mut wire,
                        &ChurnOps { churner: c, pairs },
                        u64::MAX,
                        plan.inflight,
                        &clock,
                        plan.connect_timeout,
                        Some(&stop),
                        plan.churn_rate,
                    )
                    .await;
                    if r.alive {
                        wire.close().await;
                    }
                    r
                })
            })
            .collect();
        drop(ready_tx);
        let mut errors = Errors::default();
        while let Some(r) = ready_rx.recv().await {
            match r {
                Ok(()) => {}
                Err(kind) => errors.add(kind),
            }
        }
        Self {
            tasks,
            errors,
            stop,
        }
    }

    /// Stops churning and sums up; `t0_ns` is the start of publishing.
    pub(crate) async fn finish(self, t0_ns: u64) -> ChurnOutcome {
        self.stop.cancel();
        let mut out = ChurnOutcome {
            churners: self.tasks.len(),
            errors: self.errors,
            ..Default::default()
        };
        let mut last = t0_ns;
        for t in self.tasks {
            match t.await {
                Ok(r) => {
                    if r.first_send_ns >= t0_ns && r.first_send_ns != u64::MAX {
                        out.ops += r.answered;
                        out.failures += r.failed;
                        last = last.max(r.last_answer_ns);
                    }
                    out.errors.merge(&r.errors);
                }
                Err(_) => out.errors.add("task_failed"),
            }
        }
        out.seconds = round3(last.saturating_sub(t0_ns) as f64 / 1e9);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_filters_are_distinct_and_valid() {
        let all: std::collections::HashSet<_> = (0..50).map(|k| subscribe_filter(3, k)).collect();
        assert_eq!(all.len(), 50);
        assert!(
            all.iter()
                .all(|f| tern_client::tern_codec::is_valid_topic_filter(f))
        );
    }

    #[test]
    fn churn_filters_never_match_the_p2p_topics() {
        for n in 0..200 {
            let f = churn_filter(1, n, 10);
            assert!(tern_client::tern_codec::is_valid_topic_filter(&f), "{f}");
            let levels: Vec<_> = f.split('/').collect();
            // Every filter has at least three levels and none is `#` at level two.
            assert!(levels.len() >= 3, "{f}");
            assert_ne!(levels[1], "#", "{f}");
        }
        // Each UNSUBSCRIBE names the oldest filter, each SUBSCRIBE a new one.
        let ops = ChurnOps {
            churner: 0,
            pairs: 10,
        };
        assert_eq!(ops.op(0), (churn_filter(0, 0, 10), false));
        assert_eq!(ops.op(1), (churn_filter(0, CHURN_HELD, 10), true));
        assert_eq!(ops.op(2), (churn_filter(0, 1, 10), false));
    }
}
