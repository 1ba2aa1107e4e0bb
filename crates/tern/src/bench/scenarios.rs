//! The scenarios: who connects, subscribes to what, publishes where, and the phases of a run.
//!
//! A run goes through these phases, each bounded:
//! 1. subscribers connect (paced by `--connect-rate`) and subscribe, each within
//!    `--connect-timeout`;
//! 2. publishers connect; `--settle` passes; publishing starts for everyone at once (t0);
//! 3. each publisher sends `--count` messages or stops at t0 + `--duration`, then waits up to
//!    `--drain` for its QoS 1/2 acknowledgements;
//! 4. subscribers get up to `--drain` more to receive what the topic rules say they should;
//!    the run ends as soon as every live subscriber has it all.
//!
//! One task per client; each keeps its own counters, merged at the end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use tern_client::tern_codec::{PublishProperties, PublishView, QoS, SubscriptionOptions};
use tern_client::{Client, ClientError, ConnectOptions, Event};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::args::{Plan, Scenario};
use super::counting::{
    Delivery, DomainCounts, Errors, PublisherOutcome, Routing, SubscriberOutcome, merge_domain,
};
use super::latency::LatencySink;
use super::payload::{Clock, Header};
use super::progress::{Live, Phase};
use super::report::CpuTime;

/// How long a client may take to say goodbye at the end.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the drain checks whether everything has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// How many subscribers, spread evenly over the indices, take the kernel's receive times for
/// the arrival latency. A timed read costs the load generator about 0.5 µs more (`recvmsg`,
/// the control message, a copy), enough to slow it in a fan-out to 100, where its pace sets
/// the latency it reports; 16 give thousands of samples per second at every copy position.
const ARRIVAL_SUBSCRIBERS: usize = 16;

/// Everything a run measured, for the report.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub publishers: Vec<PublisherOutcome>,
    pub subscribers: Vec<SubscriberOutcome>,
    /// Messages each domain should have received.
    pub expected: Vec<u64>,
    /// What each domain received.
    pub domains: Vec<DomainCounts>,
    /// Publish-to-delivery latency (µs).
    pub latency: Histogram<u64>,
    /// Publish-to-arrival latency (µs): to the kernel's receive time at the subscriber.
    pub arrival_latency: Histogram<u64>,
    /// Connection set-up latency, TCP connect to CONNACK (µs).
    pub connect_latency: Histogram<u64>,
    pub connect_attempted: u64,
    pub connect_failed: u64,
    pub first_attempt_ns: u64,
    pub last_connack_ns: u64,
    /// Start of the measurement: publishing starts (conn: all connections are up).
    pub t0_ns: u64,
    pub end_ns: u64,
    /// The broker's CPU time over the measured phase (`--broker-pid`).
    pub broker_cpu_s: Option<f64>,
    /// churn: what the churners did while publishing ran.
    pub churn: Option<super::subscribe::ChurnOutcome>,
}

/// What every task of a run shares.
struct Ctx {
    plan: Plan,
    clock: Clock,
    live: Arc<Live>,
    routing: Routing,
    /// Paces connection attempts.
    next_connect: Mutex<Instant>,
    handshakes: Semaphore,
    latency: LatencySink,
    arrival_latency: LatencySink,
    connect_latency: LatencySink,
    first_attempt_ns: AtomicU64,
    last_connack_ns: AtomicU64,
    /// Cancelled when publishing starts (or the run is abandoned: see `abandoned`).
    start: CancellationToken,
    abandoned: AtomicBool,
    /// Cancelled when subscribers and held connections should stop.
    stop: CancellationToken,
    t0_ns: AtomicU64,
    /// The broker's CPU time at the start of the measured phase (`--broker-pid`).
    broker_cpu_start: std::sync::Mutex<Option<CpuTime>>,
}

/// The subscription filters of subscriber `i`.
fn filters(plan: &Plan, i: usize) -> Vec<String> {
    let filter = plan.filter.replace("%i", &i.to_string());
    match plan.scenario {
        Scenario::Shared => vec![format!("$share/{}/{filter}", plan.group)],
        Scenario::Wildcard => {
            let mut all = vec![format!("dev/{i}/+")];
            // Filters that never match `dev/<j>/x`, half of them with a leading wildcard that
            // the broker has to explore for every message.
            all.extend((0..plan.wildcard_filters).map(|k| {
                if k % 2 == 0 {
                    format!("dev/{i}/f{k}/+")
                } else {
                    format!("+/{i}/f{k}")
                }
            }));
            all
        }
        _ => vec![filter],
    }
}

/// The receiver domains: how many, and the domain of subscriber `i`.
fn domain_count(plan: &Plan) -> usize {
    match plan.scenario {
        Scenario::Shared => 1,
        _ => plan.subscribers,
    }
}

fn domain_of(plan: &Plan, i: usize) -> usize {
    if plan.scenario == Scenario::Shared {
        0
    } else {
        i
    }
}

fn routing(plan: &Plan) -> Routing {
    match plan.scenario {
        Scenario::P2p | Scenario::Churn => Routing::Pair,
        Scenario::Wildcard => Routing::Rotate {
            publishers: plan.publishers,
            domains: plan.subscribers,
        },
        Scenario::Sub => Routing::External,
        _ => Routing::All,
    }
}

/// Where a publisher's messages go.
#[derive(Clone)]
enum Topics {
    Fixed(String),
    /// `dev/<i>/x` for every subscriber, picked by [`Routing::rotate_target`].
    Rotate(Arc<Vec<String>>),
}

/// Runs the plan to the end.
pub(crate) async fn run(plan: Plan) -> anyhow::Result<Outcome> {
    let clock = Clock::start();
    let live = Arc::new(Live::new(plan.publishers, plan.subscribers));
    let ctx = Arc::new(Ctx {
        routing: routing(&plan),
        clock,
        live: live.clone(),
        next_connect: Mutex::new(Instant::now()),
        handshakes: Semaphore::new(plan.connect_concurrency),
        latency: LatencySink::new(8),
        arrival_latency: LatencySink::new(8),
        connect_latency: LatencySink::new(8),
        first_attempt_ns: AtomicU64::new(u64::MAX),
        last_connack_ns: AtomicU64::new(0),
        start: CancellationToken::new(),
        abandoned: AtomicBool::new(false),
        stop: CancellationToken::new(),
        t0_ns: AtomicU64::new(0),
        broker_cpu_start: std::sync::Mutex::new(None),
        plan,
    });
    let progress = (!ctx.plan.quiet).then(|| {
        tokio::spawn(super::progress::report(
            live.clone(),
            clock,
            ctx.plan.scenario.name(),
            ctx.plan.connections,
        ))
    });
    let result = match ctx.plan.scenario {
        Scenario::Conn => run_conn(&ctx).await,
        _ => run_messages(&ctx).await,
    };
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
    }
    result
}

/// conn: open the connections, hold them for the duration, close them.
async fn run_conn(ctx: &Arc<Ctx>) -> anyhow::Result<Outcome> {
    let n = ctx.plan.connections;
    ctx.sample_broker_cpu();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(hold(ctx.clone(), i, Ready(ready_tx.clone()))))
        .collect();
    drop(ready_tx);
    while ready_rx.recv().await.is_some() {}
    if ctx.live.connected.load(Relaxed) == 0 {
        ctx.stop.cancel();
        let outcomes = join_all(tasks).await?;
        anyhow::bail!(
            "could not connect to {}:{}{}",
            ctx.plan.host,
            ctx.plan.port,
            error_summary(&outcomes)
        );
    }
    let broker_cpu = ctx.broker_cpu_since_sample();
    let t0 = ctx.clock.now_ns();
    ctx.t0_ns.store(t0, Relaxed);
    ctx.live.set_phase(Phase::Holding);
    tokio::time::sleep(ctx.plan.duration).await;
    ctx.live.set_phase(Phase::Closing);
    ctx.stop.cancel();
    let subscribers = join_all(tasks).await?;
    let mut outcome = finish(ctx, Vec::new(), subscribers, Vec::new(), Vec::new());
    outcome.broker_cpu_s = broker_cpu;
    Ok(outcome)
}

/// Every other scenario: subscribers, then publishers, publishing, drain.
async fn run_messages(ctx: &Arc<Ctx>) -> anyhow::Result<Outcome> {
    let plan = &ctx.plan;
    // Subscribers first, all subscribed before any publisher connects.
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let subscribers: Vec<_> = (0..plan.subscribers)
        .map(|i| tokio::spawn(subscriber(ctx.clone(), i, Ready(ready_tx.clone()))))
        .collect();
    drop(ready_tx);
    while ready_rx.recv().await.is_some() {}
    let subscribed = ctx
        .live
        .subscribers
        .iter()
        .filter(|s| s.subscribed.load(Relaxed))
        .count();
    if plan.subscribers > 0 && subscribed == 0 {
        return abandon(
            ctx,
            subscribers,
            Vec::new(),
            "no subscriber could subscribe",
        )
        .await;
    }

    let topics_all = (plan.scenario == Scenario::Wildcard).then(|| {
        Arc::new(
            (0..plan.subscribers)
                .map(|i| format!("dev/{i}/x"))
                .collect::<Vec<_>>(),
        )
    });
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let publishers: Vec<_> = (0..plan.publishers)
        .map(|j| {
            let topics = match &topics_all {
                Some(all) => Topics::Rotate(all.clone()),
                None => Topics::Fixed(plan.topic.replace("%i", &j.to_string())),
            };
            tokio::spawn(publisher(ctx.clone(), j, topics, Ready(ready_tx.clone())))
        })
        .collect();
    drop(ready_tx);
    while ready_rx.recv().await.is_some() {}
    let connected_publishers = ctx
        .live
        .publishers
        .iter()
        .filter(|s| s.alive.load(Relaxed))
        .count();
    if plan.publishers > 0 && connected_publishers == 0 {
        return abandon(ctx, subscribers, publishers, "no publisher could connect").await;
    }

    // churn: the churners connect and take their first subscriptions, then churn from the
    // start of publishing to its end.
    let churners = if plan.churners > 0 {
        Some(super::subscribe::Churners::start(plan, ctx.clock, ctx.start.clone()).await)
    } else {
        None
    };

    ctx.live.set_phase(Phase::Settling);
    tokio::time::sleep(plan.settle).await;
    ctx.sample_broker_cpu();
    let t0 = ctx.clock.now_ns();
    ctx.t0_ns.store(t0, Relaxed);
    ctx.live.set_phase(Phase::Publishing);
    ctx.start.cancel();

    let publishers = join_all(publishers).await?;
    let churn = match churners {
        Some(c) => Some(c.finish(t0).await),
        None => None,
    };
    ctx.live.set_phase(Phase::Draining);

    // What each domain should get, now that every publisher is done.
    let domains = domain_count(plan);
    let mut active = vec![false; domains];
    for (i, slot) in ctx.live.subscribers.iter().enumerate() {
        if slot.subscribed.load(Relaxed) {
            active[domain_of(plan, i)] = true;
        }
    }
    let expected = ctx.routing.expected(&active, &publishers);

    // Drain: until every live domain has everything, or the time is up. sub has no drain:
    // its subscribers stop by themselves at --count, or at the time limit.
    let external = ctx.routing == Routing::External;
    let limit = if external {
        ctx.clock.instant_at(t0) + plan.duration
    } else {
        Instant::now() + plan.drain
    };
    loop {
        let mut unique = vec![0u64; domains];
        let mut alive = vec![false; domains];
        for (i, slot) in ctx.live.subscribers.iter().enumerate() {
            let d = domain_of(plan, i);
            unique[d] += slot.unique.load(Relaxed);
            alive[d] |= slot.alive.load(Relaxed);
        }
        let complete = if external {
            !alive.iter().any(|&a| a)
        } else {
            (0..domains).all(|d| !alive[d] || unique[d] >= expected[d])
        };
        if complete || Instant::now() >= limit {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let broker_cpu = ctx.broker_cpu_since_sample();
    ctx.live.set_phase(Phase::Closing);
    ctx.stop.cancel();
    let subscribers = join_all(subscribers).await?;
    let counts = (0..domains)
        .map(|d| {
            let members: Vec<_> = subscribers.iter().filter(|s| s.domain == d).collect();
            merge_domain(&members)
        })
        .collect();
    let mut outcome = finish(ctx, publishers, subscribers, expected, counts);
    outcome.broker_cpu_s = broker_cpu;
    outcome.churn = churn;
    Ok(outcome)
}

/// `; errors: kind: n, ...` for the errors of `outcomes`, or nothing.
fn error_summary(outcomes: &[SubscriberOutcome]) -> String {
    let mut errors = Errors::default();
    for o in outcomes {
        errors.merge(&o.errors);
    }
    errors.summary()
}

/// Stops a run whose set-up failed, closing what did connect.
async fn abandon(
    ctx: &Arc<Ctx>,
    subscribers: Vec<JoinHandle<SubscriberOutcome>>,
    publishers: Vec<JoinHandle<PublisherOutcome>>,
    why: &str,
) -> anyhow::Result<Outcome> {
    ctx.abandoned.store(true, Relaxed);
    ctx.start.cancel();
    ctx.stop.cancel();
    let subs = join_all(subscribers).await?;
    let pubs = join_all(publishers).await?;
    let mut errors = Errors::default();
    for e in subs
        .iter()
        .map(|s| &s.errors)
        .chain(pubs.iter().map(|p| &p.errors))
    {
        errors.merge(e);
    }
    anyhow::bail!(
        "{why} ({}:{}){}",
        ctx.plan.host,
        ctx.plan.port,
        errors.summary()
    )
}

fn finish(
    ctx: &Ctx,
    publishers: Vec<PublisherOutcome>,
    subscribers: Vec<SubscriberOutcome>,
    expected: Vec<u64>,
    domains: Vec<DomainCounts>,
) -> Outcome {
    let first = ctx.first_attempt_ns.load(Relaxed);
    Outcome {
        publishers,
        subscribers,
        expected,
        domains,
        latency: ctx.latency.merged(),
        arrival_latency: ctx.arrival_latency.merged(),
        connect_latency: ctx.connect_latency.merged(),
        connect_attempted: ctx.live.connected.load(Relaxed) + ctx.live.failed.load(Relaxed),
        connect_failed: ctx.live.failed.load(Relaxed),
        first_attempt_ns: if first == u64::MAX { 0 } else { first },
        last_connack_ns: ctx.last_connack_ns.load(Relaxed),
        t0_ns: ctx.t0_ns.load(Relaxed),
        end_ns: ctx.clock.now_ns(),
        broker_cpu_s: None,
        churn: None,
    }
}

async fn join_all<T>(tasks: Vec<JoinHandle<T>>) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(
            t.await
                .map_err(|e| anyhow::anyhow!("a client task failed: {e}"))?,
        );
    }
    Ok(out)
}

/// Tells the coordinator that a client's set-up is over (whatever its result) when dropped.
struct Ready(mpsc::UnboundedSender<()>);

impl Drop for Ready {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Ctx {
    /// Notes the broker's CPU time now (with `--broker-pid`).
    fn sample_broker_cpu(&self) {
        let sample = self.plan.broker_pid.and_then(CpuTime::of_pid);
        *self
            .broker_cpu_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sample;
    }

    /// The broker's CPU time since [`Ctx::sample_broker_cpu`], in seconds.
    fn broker_cpu_since_sample(&self) -> Option<f64> {
        let start = (*self
            .broker_cpu_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))?;
        let now = CpuTime::of_pid(self.plan.broker_pid?)?;
        Some(now.since(start).total())
    }

    /// Waits for this connection's turn under `--connect-rate` and `--connect-concurrency`.
    async fn admit(&self) -> Option<SemaphorePermit<'_>> {
        if self.plan.connect_rate > 0.0 {
            let interval = Duration::from_secs_f64(1.0 / self.plan.connect_rate);
            let at = {
                let mut next = self.next_connect.lock().await;
                let at = (*next).max(Instant::now());
                *next = at + interval;
                at
            };
            tokio::time::sleep_until(at).await;
        }
        self.handshakes.acquire().await.ok()
    }

    /// Connects client `id`, the `n`-th connection of the run (for the source address) and
    /// number `index` of its role (for the user name); a subscriber keeps the kernel's receive
    /// times (`stamped`).
    async fn connect(
        &self,
        id: String,
        n: usize,
        index: usize,
        stamped: bool,
        errors: &mut Errors,
    ) -> Option<Client> {
        let plan = &self.plan;
        let _permit = self.admit().await;
        let mut options = ConnectOptions::new(plan.host.clone(), plan.port, id, plan.version);
        options.tls.clone_from(&plan.tls);
        options.username = plan.username(index);
        options.password.clone_from(&plan.password);
        if !plan.sources.is_empty() {
            options.local_addr = Some(plan.sources[n % plan.sources.len()]);
        }
        options.keep_alive = plan.keep_alive;
        options.clean_start = !plan.persistent;
        if plan.persistent && plan.version.is_v5() {
            options.session_expiry = Some(plan.session_expiry);
        }
        options.connect_timeout = plan.connect_timeout;
        options.receive_timestamps = stamped;
        let began = self.clock.now_ns();
        self.first_attempt_ns.fetch_min(began, Relaxed);
        match Client::connect(&options).await {
            Ok(client) => {
                let done = self.clock.now_ns();
                self.last_connack_ns.fetch_max(done, Relaxed);
                let mut recorder = self.connect_latency.recorder(n);
                recorder.record((done - began) / 1000);
                self.live.connected.fetch_add(1, Relaxed);
                self.live.connections.fetch_add(1, Relaxed);
                Some(client)
            }
            Err(e) => {
                errors.add(Errors::connect_kind(&e));
                self.live.failed.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Counts an error on an established connection.
    fn session_error(&self, errors: &mut Errors, e: &ClientError) {
        errors.add(Errors::session_kind(e));
        self.live.errors.fetch_add(1, Relaxed);
    }

    /// Closes a connection politely, within [`DISCONNECT_TIMEOUT`].
    async fn close(&self, client: Client) {
        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, client.disconnect()).await;
        self.live.connections.fetch_sub(1, Relaxed);
    }
}

/// conn: one held connection.
async fn hold(ctx: Arc<Ctx>, i: usize, ready: Ready) -> SubscriberOutcome {
    let mut out = SubscriberOutcome {
        domain: i,
        ..Default::default()
    };
    let client = ctx
        .connect(
            format!("{}-c{i}", ctx.plan.client_id_prefix),
            i,
            i,
            false,
            &mut out.errors,
        )
        .await;
    drop(ready);
    let Some(mut client) = client else {
        return out;
    };
    out.connected = true;
    loop {
        tokio::select! {
            biased;
            () = ctx.stop.cancelled() => break,
            event = client.next_event() => if let Err(e) = event {
                ctx.session_error(&mut out.errors, &e);
                ctx.live.connections.fetch_sub(1, Relaxed);
                return out;
            },
        }
    }
    ctx.close(client).await;
    out
}

/// One subscriber: connect, subscribe, count until told to stop.
async fn subscriber(ctx: Arc<Ctx>, i: usize, ready: Ready) -> SubscriberOutcome {
    let plan = &ctx.plan;
    let slot = &ctx.live.subscribers[i];
    let mut out = SubscriberOutcome {
        domain: domain_of(plan, i),
        ..Default::default()
    };
    let Some(mut client) = ctx
        .connect(
            format!("{}-s{i}", plan.client_id_prefix),
            i,
            i,
            i.is_multiple_of(plan.subscribers.div_ceil(ARRIVAL_SUBSCRIBERS).max(1)),
            &mut out.errors,
        )
        .await
    else {
        return out;
    };
    out.connected = true;
    let filters = filters(plan, i);
    let options = SubscriptionOptions::with_qos(plan.qos);
    let requested: Vec<_> = filters.iter().map(|f| (f.as_str(), options)).collect();
    match tokio::time::timeout(plan.connect_timeout, client.subscribe(&requested, None)).await {
        Ok(Ok(codes)) if codes.len() == requested.len() && codes.iter().all(|c| !c.is_error()) => {
            out.subscribed = true;
        }
        Ok(Ok(_)) => out.errors.add("subscribe_refused"),
        Ok(Err(e)) => ctx.session_error(&mut out.errors, &e),
        Err(_) => out.errors.add("subscribe_timeout"),
    }
    if !out.subscribed {
        ctx.live.errors.fetch_add(1, Relaxed);
        drop(ready);
        ctx.close(client).await;
        return out;
    }
    slot.subscribed.store(true, Relaxed);
    slot.alive.store(true, Relaxed);
    drop(ready);

    let kill_after = if i == 0 {
        plan.kill_subscriber_after
    } else {
        None
    };
    let external = ctx.routing == Routing::External;
    let mut latency = ctx.latency.recorder(i);
    let mut arrival_latency = ctx.arrival_latency.recorder(i);
    let mut unique = 0u64;
    // Waited on across the loop: made anew for each message, it cost the token's lock twice.
    let stop = ctx.stop.cancelled();
    tokio::pin!(stop);
    let killed = 'run: loop {
        let mut event = tokio::select! {
            biased;
            () = &mut stop => break 'run false,
            event = client.next_event() => event,
        };
        // Everything already decoded arrived together: one receive time for the batch, and the
        // token is looked at again only after it.
        let now = ctx.clock.now_ns();
        let arrived = client
            .received_ns()
            .and_then(|ns| ctx.clock.wall_to_clock_ns(ns));
        loop {
            match event {
                Ok(Event::Message(p)) => {
                    out.received += 1;
                    out.last_receive_ns = now;
                    match Header::read(&p.payload) {
                        None => out.malformed += 1,
                        Some(h) => {
                            let delivery = out.count(ctx.routing, &h);
                            if delivery == Delivery::New {
                                unique += 1;
                            }
                            // A send time from another process's clock means nothing here.
                            if !external && matches!(delivery, Delivery::New | Delivery::Duplicate)
                            {
                                latency.record(now.saturating_sub(h.sent_ns) / 1000);
                                if let Some(arrived) = arrived {
                                    arrival_latency
                                        .record(arrived.saturating_sub(h.sent_ns) / 1000);
                                }
                            }
                        }
                    }
                    if kill_after.is_some_and(|n| out.received >= n) {
                        out.errors.add("killed_by_test_hook");
                        break 'run true;
                    }
                    if external && out.received >= plan.count {
                        break 'run false;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    ctx.session_error(&mut out.errors, &e);
                    slot.alive.store(false, Relaxed);
                    ctx.live.connections.fetch_sub(1, Relaxed);
                    slot.received.store(out.received, Relaxed);
                    slot.unique.store(unique, Relaxed);
                    return out;
                }
            }
            match client.take_event() {
                Some(next) => event = Ok(next),
                None => break,
            }
        }
        slot.received.store(out.received, Relaxed);
        slot.unique.store(unique, Relaxed);
    };
    slot.received.store(out.received, Relaxed);
    slot.unique.store(unique, Relaxed);
    slot.alive.store(false, Relaxed);
    if killed {
        // The test hook: drop the connection without DISCONNECT.
        drop(client);
        ctx.live.connections.fetch_sub(1, Relaxed);
    } else {
        ctx.close(client).await;
    }
    out
}

/// One publisher's state while publishing.
struct Publisher {
    client: Client,
    index: usize,
    topics: Topics,
    payload: Vec<u8>,
    properties: PublishProperties,
    qos: QoS,
    /// QoS 1/2 messages in flight: packet identifier and sequence number, in sending order.
    pending: VecDeque<(u16, u32)>,
    out: PublisherOutcome,
    /// Routing parameters for [`Topics::Rotate`].
    rotate: (usize, usize),
    /// Send time of a message whose sending is under way (`send_one` not returned yet).
    sending: Option<u64>,
}

impl Publisher {
    /// Sends message number `out.sent`.
    async fn send_one(&mut self, clock: &Clock) -> Result<(), ClientError> {
        let seq = self.out.sent;
        let now = clock.now_ns();
        Header {
            publisher: self.index as u32,
            seq: seq as u32,
            sent_ns: now,
        }
        .write(&mut self.payload);
        let topic = match &self.topics {
            Topics::Fixed(t) => t.as_str(),
            Topics::Rotate(all) => {
                all[Routing::rotate_target(self.rotate.0, self.rotate.1, self.index, seq)].as_str()
            }
        };
        let view = PublishView {
            dup: false,
            qos: self.qos,
            retain: false,
            topic,
            packet_id: None,
            topic_alias: None,
            message_expiry_interval: None,
            subscription_identifiers: &[],
            properties: &self.properties,
            payload: &self.payload,
        };
        self.sending = Some(now);
        let id = self.client.send_publish_view(view).await?;
        self.sending = None;
        if let Some(id) = id {
            self.pending.push_back((id.get(), seq as u32));
        }
        self.out.sent += 1;
        self.out.last_send_ns = now;
        while let Some(event) = self.client.take_event() {
            self.on_event(event);
        }
        Ok(())
    }

    /// After the time limit cut `send_one` short: counts its message as sent if it was
    /// queued. The only wait after queueing is the flush, and before it, for QoS 1/2, the wait
    /// for room in the window; so a QoS 0 message was queued, and a QoS 1/2 message was if the
    /// client has one more message in flight than we know of.
    fn settle_interrupted_send(&mut self) {
        let Some(sent_ns) = self.sending.take() else {
            return;
        };
        while let Some(event) = self.client.take_event() {
            self.on_event(event);
        }
        let queued = self.qos == QoS::AtMostOnce || self.client.inflight() > self.pending.len();
        if queued {
            if self.qos != QoS::AtMostOnce {
                // Its packet identifier is unknown here: 0, which no acknowledgement carries,
                // stands for it (see `on_event`).
                self.pending.push_back((0, self.out.sent as u32));
            }
            self.out.sent += 1;
            self.out.last_send_ns = sent_ns;
        }
    }

    fn on_event(&mut self, event: Event) {
        if let Event::Acked { packet_id, reason } = event {
            let id = packet_id.get();
            let found = self.pending.iter().position(|&(p, _)| p == id);
            let found = found.or_else(|| self.pending.iter().position(|&(p, _)| p == 0));
            if let Some(pos) = found
                && let Some((_, seq)) = self.pending.remove(pos)
            {
                if reason.is_error() {
                    self.out.rejected.push(seq);
                } else {
                    self.out.acked += 1;
                }
            }
        }
    }
}

/// One publisher: connect, wait for the start, publish, collect acknowledgements.
async fn publisher(ctx: Arc<Ctx>, j: usize, topics: Topics, ready: Ready) -> PublisherOutcome {
    let plan = &ctx.plan;
    let slot = &ctx.live.publishers[j];
    let mut out = PublisherOutcome {
        index: j,
        ..Default::default()
    };
    let client = ctx
        .connect(
            format!("{}-p{j}", plan.client_id_prefix),
            plan.subscribers + j,
            j,
            false,
            &mut out.errors,
        )
        .await;
    let Some(mut client) = client else {
        drop(ready);
        return out;
    };
    out.connected = true;
    slot.alive.store(true, Relaxed);
    drop(ready);
    // Answer pings while the others connect.
    loop {
        tokio::select! {
            biased;
            () = ctx.start.cancelled() => break,
            event = client.next_event() => if let Err(e) = event {
                ctx.session_error(&mut out.errors, &e);
                slot.alive.store(false, Relaxed);
                ctx.live.connections.fetch_sub(1, Relaxed);
                return out;
            },
        }
    }
    if ctx.abandoned.load(Relaxed) {
        ctx.close(client).await;
        return out;
    }
    client.auto_flush = false;
    client.limit_inflight(plan.inflight);
    let mut payload = vec![b'.'; plan.size];
    payload[..super::payload::HEADER_LEN].fill(0);
    let mut p = Publisher {
        client,
        index: j,
        topics,
        payload,
        properties: PublishProperties::default(),
        qos: plan.qos,
        pending: VecDeque::new(),
        out,
        rotate: (plan.publishers, plan.subscribers),
        sending: None,
    };
    let t0 = ctx.t0_ns.load(Relaxed);
    let deadline_ns =
        t0.saturating_add(u64::try_from(plan.duration.as_nanos()).unwrap_or(u64::MAX));
    let deadline = ctx.clock.instant_at(deadline_ns);
    let clock = ctx.clock;
    // The whole publishing phase is bounded, even if the broker stops reading.
    let published = tokio::time::timeout_at(deadline, async {
        if plan.rate > 0.0 {
            // Publishers start spread over one interval, not all on the same tick.
            let interval_ns = 1e9 / plan.rate;
            let phase = (interval_ns * j as f64 / plan.publishers as f64) as u64;
            publish_paced(
                &mut p,
                &clock,
                t0 + phase,
                deadline_ns,
                plan.count,
                plan.rate,
                slot,
            )
            .await
        } else {
            publish_flat_out(&mut p, &clock, deadline_ns, plan.count, slot).await
        }
    })
    .await;
    slot.sent.store(p.out.sent, Relaxed);
    let failed = match published {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            ctx.session_error(&mut p.out.errors, &e);
            true
        }
        Err(_) => {
            p.settle_interrupted_send();
            p.out.hit_time_limit = true;
            false
        }
    };
    if p.out.sent < plan.count && !failed {
        p.out.hit_time_limit = true;
    }
    if failed {
        slot.alive.store(false, Relaxed);
        ctx.live.connections.fetch_sub(1, Relaxed);
        return p.out;
    }
    // Everything written, then the acknowledgements of what is in flight, within the drain.
    let drained = tokio::time::timeout(plan.drain, async {
        p.client.flush().await?;
        p.client.wait_acknowledged().await
    })
    .await;
    while let Some(event) = p.client.take_event() {
        p.on_event(event);
    }
    if let Ok(Err(e)) = drained {
        ctx.session_error(&mut p.out.errors, &e);
        slot.alive.store(false, Relaxed);
        ctx.live.connections.fetch_sub(1, Relaxed);
        return p.out;
    }
    slot.alive.store(false, Relaxed);
    let out = std::mem::take(&mut p.out);
    ctx.close(p.client).await;
    out
}

/// Publishes as fast as the connection takes it, flushing in large batches.
async fn publish_flat_out(
    p: &mut Publisher,
    clock: &Clock,
    deadline_ns: u64,
    count: u64,
    slot: &super::progress::Slot,
) -> Result<(), ClientError> {
    while p.out.sent < count {
        if clock.now_ns() >= deadline_ns {
            break;
        }
        p.send_one(clock).await?;
        slot.sent.store(p.out.sent, Relaxed);
    }
    p.client.flush().await
}

/// Publishes `rate` messages per second on a fixed schedule from `t0` (catching up in a batch
/// after a late wake-up), answering the broker in between.
async fn publish_paced(
    p: &mut Publisher,
    clock: &Clock,
    t0: u64,
    deadline_ns: u64,
    count: u64,
    rate: f64,
    slot: &super::progress::Slot,
) -> Result<(), ClientError> {
    let interval_ns = 1e9 / rate;
    let mut next = clock.instant_at(t0);
    while p.out.sent < count {
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(next) => break,
                event = p.client.next_event() => p.on_event(event?),
            }
        }
        let now = clock.now_ns();
        if now >= deadline_ns {
            break;
        }
        let due = ((now.saturating_sub(t0) as f64 / interval_ns) as u64 + 1).min(count);
        while p.out.sent < due {
            p.send_one(clock).await?;
        }
        p.client.flush().await?;
        slot.sent.store(p.out.sent, Relaxed);
        next = clock.instant_at(t0 + (p.out.sent as f64 * interval_ns) as u64);
    }
    Ok(())
}
