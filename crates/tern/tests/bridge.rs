//! Acceptance tests of bridges (issue 8). Tern and Debian's Mosquitto 2.0.11 each play both
//! roles, the bridging broker and the remote one, configured with mosquitto.conf `connection`
//! blocks (and once with Tern's TOML): messages at QoS 0, 1 and 2 in both directions with topic
//! remapping, the delivered QoS capped by the topic's, the retain flag kept, the bridge's state
//! on `$SYS/broker/connection/NAME/state`, no loops with `both` (MQTT 5 no-local, MQTT 3.1.1
//! `try_private`), credentials and TLS to the remote, failover between addresses, the status
//! in the admin API and Prometheus, and no loss when the remote broker is killed (`kill -9`)
//! and restarted in the middle of a stream, nor when the bridging broker is killed with
//! messages queued for a remote that is down.
//!
//! Every Mosquitto here is the real `mosquitto` binary (scripts/install-test-deps installs it),
//! started on a free loopback port with its own configuration file and killed when the test
//! ends. Bridges reconnect after 1 to 2 s (`restart_timeout 1 2`); every wait is bounded.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    QUIET, RawClient, TIMEOUT, TempDir, TempFile, Tern, V5, V311, basic_auth, conn5, free_port,
    login, mosquitto_password_file, server_certificates, start_config_only,
};
use tern_codec::{Ack, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

/// How long a bridge may take to connect, or to reconnect after its remote came back.
const BRIDGE_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Mosquitto as a peer.

/// A running Debian `mosquitto` broker on a loopback port; killed when dropped.
struct Mosquitto {
    child: Child,
    /// Its listener's port.
    port: u16,
    /// Its configuration file (in `dir`).
    conf: PathBuf,
    /// Its directory (configuration, persistence), removed when dropped.
    _dir: TempDir,
    logs: Arc<Mutex<Vec<String>>>,
}

/// The broker's executable: Debian installs it in /usr/sbin, which is not always on `PATH`.
fn mosquitto_binary() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    /// Starts `mosquitto -c FILE` with a listener on a free loopback port (anonymous clients
    /// allowed, everything logged to stderr), `listener` right after the `listener` line (TLS
    /// settings) and `body` after it (bridges, persistence...). `{dir}` in either is replaced
    /// by the broker's own temporary directory.
    fn start(listener: &str, body: &str) -> Self {
        Self::start_in(TempDir::new(), listener, body)
    }

    /// [`Mosquitto::start`] in the directory `dir` (which may already hold certificates).
    fn start_in(dir: TempDir, listener: &str, body: &str) -> Self {
        let port = free_port();
        let d = dir.path.to_str().expect("UTF-8 temp dir").to_owned();
        // `user root` keeps a broker started as root from switching to the `mosquitto` user,
        // who could not read this directory (ignored when not started as root).
        let anonymous = if body.contains("allow_anonymous") {
            ""
        } else {
            "allow_anonymous true\n"
        };
        let text = format!(
            "{anonymous}user root\nlog_dest stderr\nlog_type all\nconnection_messages true\n\
             listener {port} 127.0.0.1\n{}\n{}\n",
            listener.replace("{dir}", &d),
            body.replace("{dir}", &d)
        );
        let conf = dir.path.join("mosquitto.conf");
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let child = Self::spawn(&conf, &logs);
        let mut m = Self {
            child,
            port,
            conf,
            _dir: dir,
            logs,
        };
        m.wait_running(1);
        m
    }

    fn spawn(conf: &Path, logs: &Arc<Mutex<Vec<String>>>) -> Child {
        let mut child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mosquitto (scripts/install-test-deps installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        child
    }

    /// Waits (at most 10 s) until the broker has logged `running` `n` times in all.
    fn wait_running(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let running = self
                .logs()
                .lines()
                .filter(|l| l.contains("mosquitto version") && l.ends_with(" running"))
                .count();
            if running >= n {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                panic!("mosquitto exited with {status}: {}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto not running after 10 s: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Starts the broker again, after [`Mosquitto::kill9`], with the same configuration on the
    /// same port.
    fn restart(&mut self) {
        let started = self
            .logs()
            .lines()
            .filter(|l| l.contains("mosquitto version") && l.ends_with(" running"))
            .count();
        self.logs
            .lock()
            .unwrap()
            .push("---- killed with SIGKILL, restarting ----".to_owned());
        self.child = Self::spawn(&self.conf, &self.logs);
        self.wait_running(started + 1);
    }

    /// Kills the broker with SIGKILL: nothing is saved.
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The peer's side of the story, for the failure report.
            let logs = self.logs.lock().unwrap();
            let from = logs.len().saturating_sub(300);
            eprintln!(
                "---- the last lines Mosquitto (port {}) logged ----\n{}",
                self.port,
                logs[from..].join("\n")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations.

/// A mosquitto.conf `connection` block to `address`: `remote_clientid` is the bridge's name
/// too, so that Mosquitto's state topic (named after the remote client id) and Tern's (after
/// the connection's name) are the same; reconnection after 1 to 2 s; then `lines`.
fn connection(name: &str, address: &str, lines: &str) -> String {
    format!(
        "connection {name}\naddress {address}\nremote_clientid {name}\nrestart_timeout 1 2\n{lines}\n"
    )
}

/// Starts Tern with a mosquitto.conf holding `blocks` (its listener comes from `--listen`).
fn tern_bridge(blocks: &str) -> Tern {
    Tern::start_config(&format!("allow_anonymous true\n{blocks}"), "conf")
}

/// The default state topic of the bridge `name`.
fn state_topic(name: &str) -> String {
    format!("$SYS/broker/connection/{name}/state")
}

/// A client id no other client of these tests uses.
fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Observing a bridge from the outside.

/// Connects a new MQTT 5 client to `addr` and subscribes it to `filter` at `qos`, asserting the
/// grant.
async fn subscriber(addr: SocketAddr, filter: &str, qos: QoS) -> RawClient {
    let mut c = RawClient::connect(addr, V5, &unique("sub")).await;
    assert_eq!(
        c.subscribe(filter, qos).await,
        vec![ReasonCode(qos as u8)],
        "SUBACK for {filter} on {addr}"
    );
    c
}

/// Waits (at most [`BRIDGE_WAIT`]) until `topic` on `addr` carries `payload` (retained or
/// live), then asserts that it is the topic's retained message: a new subscriber gets it first,
/// with RETAIN set.
async fn wait_retained(addr: SocketAddr, topic: &str, payload: &str) {
    let mut c = subscriber(addr, topic, QoS::AtLeastOnce).await;
    let deadline = Instant::now() + BRIDGE_WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next(left).await {
            Ok(Some(Packet::Publish(p))) => {
                c.ack(&p).await;
                assert_eq!(p.topic, topic, "on {addr}");
                if p.payload == payload.as_bytes() {
                    break;
                }
                seen.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Ok(Some(other)) => panic!("waiting for {topic} on {addr}: got {other:?}"),
            Ok(None) => panic!("{addr} closed the connection waiting for {topic}"),
            Err(_) => panic!(
                "{topic} on {addr} never carried {payload:?} within {BRIDGE_WAIT:?}; got {seen:?}"
            ),
        }
    }
    let mut fresh = subscriber(addr, topic, QoS::AtLeastOnce).await;
    let p = fresh.recv_publish().await;
    fresh.ack(&p).await;
    assert_eq!(
        (
            p.topic.to_string(),
            String::from_utf8_lossy(&p.payload).into_owned(),
            p.retain
        ),
        (topic.to_owned(), payload.to_owned(), true),
        "the retained message of {topic} on {addr}"
    );
}

/// Waits (at most [`BRIDGE_WAIT`]) until a message published on `src` to `src_topic` arrives
/// on `dst` as `dst_topic`: QoS 0 probes are published every 250 ms until one arrives, so the
/// bridge is connected and its subscriptions on both sides are in place when this returns.
async fn wait_flow(src: SocketAddr, src_topic: &str, dst: SocketAddr, dst_topic: &str) {
    let mut sub = subscriber(dst, dst_topic, QoS::AtMostOnce).await;
    let mut publisher = RawClient::connect(src, V5, &unique("probe")).await;
    let deadline = Instant::now() + BRIDGE_WAIT;
    for n in 0.. {
        publisher
            .publish0(src_topic, format!("probe {n}").as_bytes())
            .await;
        match sub.next(Duration::from_millis(250)).await {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(p.topic, dst_topic, "probe from {src} {src_topic}");
                return;
            }
            Ok(Some(other)) => panic!("waiting for probes on {dst}: got {other:?}"),
            Ok(None) => panic!("{dst} closed the connection of the probe subscriber"),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "nothing published on {src} to {src_topic:?} reached {dst} as {dst_topic:?} \
             within {BRIDGE_WAIT:?}"
        );
    }
}

/// A received message, as compared: (topic, payload, QoS, RETAIN).
type Seen = (String, String, u8, bool);

fn seen(p: &Publish) -> Seen {
    (
        p.topic.to_string(),
        String::from_utf8_lossy(&p.payload).into_owned(),
        p.qos as u8,
        p.retain,
    )
}

/// Receives `n` PUBLISHes on `c` (acknowledging each), each within [`TIMEOUT`].
async fn receive(c: &mut RawClient, n: usize, what: &str) -> Vec<Seen> {
    let mut got = Vec::new();
    while got.len() < n {
        match c.next(TIMEOUT).await {
            Ok(Some(Packet::Publish(p))) => {
                c.ack(&p).await;
                got.push(seen(&p));
            }
            Ok(Some(other)) => panic!("{what}: expected PUBLISH, got {other:?} after {got:?}"),
            Ok(None) => panic!("{what}: connection closed after {got:?}"),
            Err(_) => panic!(
                "{what}: {} of {n} messages within {TIMEOUT:?}: {got:?}",
                got.len()
            ),
        }
    }
    got
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Publishes `{src_prefix}t/q0`, `t/q1` and `t/q2` on `src` at QoS 0, 1 and 2 (payloads named
/// after `tag`), and asserts that a QoS 2 subscriber of `{dst_prefix}t/#` on `dst` receives
/// exactly these three, remapped to `{dst_prefix}`, each at QoS min(its QoS, `cap`), RETAIN
/// clear, and nothing more. The bridge must already carry the topics (see [`wait_flow`]).
async fn check_qos_0_1_2(
    src: SocketAddr,
    src_prefix: &str,
    dst: SocketAddr,
    dst_prefix: &str,
    cap: u8,
    tag: &str,
) {
    let mut sub = subscriber(dst, &format!("{dst_prefix}t/#"), QoS::ExactlyOnce).await;
    let mut publisher = RawClient::connect(src, V5, &unique("pub")).await;
    for q in 0..=2u8 {
        let reason = publisher
            .publish(
                &format!("{src_prefix}t/q{q}"),
                format!("{tag} at QoS {q}").as_bytes(),
                qos(q),
                false,
            )
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS, "publish at QoS {q} on {src}");
    }
    let mut got = receive(&mut sub, 3, tag).await;
    got.sort();
    let expected: Vec<Seen> = (0..=2u8)
        .map(|q| {
            (
                format!("{dst_prefix}t/q{q}"),
                format!("{tag} at QoS {q}"),
                q.min(cap),
                false,
            )
        })
        .collect();
    assert_eq!(got, expected, "{tag}: what arrived on {dst}");
    sub.expect_nothing().await;
}

/// Publishes a retained QoS 1 message on `src` to `src_topic` and asserts that a subscriber
/// arriving later on `dst` gets it as a retained message on `dst_topic` (polled: a new
/// subscriber until one gets it retained, at most [`BRIDGE_WAIT`]).
async fn check_retained(src: SocketAddr, src_topic: &str, dst: SocketAddr, dst_topic: &str) {
    let mut publisher = RawClient::connect(src, V5, &unique("pub")).await;
    let payload = format!("retained from {src_topic}");
    let reason = publisher
        .publish(src_topic, payload.as_bytes(), QoS::AtLeastOnce, true)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let deadline = Instant::now() + BRIDGE_WAIT;
    loop {
        let mut sub = subscriber(dst, dst_topic, QoS::AtLeastOnce).await;
        match sub.next(QUIET).await {
            // It arrived live while this subscriber was new: the next one gets it retained.
            Ok(Some(Packet::Publish(p))) if !p.retain && p.payload == payload.as_bytes() => {
                sub.ack(&p).await;
            }
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(
                    seen(&p),
                    (dst_topic.to_owned(), payload.clone(), 1, true),
                    "the retained message on {dst}"
                );
                sub.ack(&p).await;
                return;
            }
            Ok(Some(other)) => panic!("expected the retained message, got {other:?}"),
            Ok(None) => panic!("{dst} closed the connection"),
            Err(_) => assert!(
                Instant::now() < deadline,
                "no retained message on {dst} {dst_topic} within {BRIDGE_WAIT:?}"
            ),
        }
    }
}

/// Brokers `a` and `b` are bridged with `topic loop/# both 2`: a message published on either
/// reaches a subscriber of `loop/t/#` on each broker exactly once, and nothing comes back.
async fn check_no_loop(a: SocketAddr, b: SocketAddr) {
    wait_flow(a, "loop/probe/ab", b, "loop/probe/ab").await;
    wait_flow(b, "loop/probe/ba", a, "loop/probe/ba").await;
    let mut on_a = subscriber(a, "loop/t/#", QoS::ExactlyOnce).await;
    let mut on_b = subscriber(b, "loop/t/#", QoS::ExactlyOnce).await;
    let mut pub_a = RawClient::connect(a, V5, &unique("pub-a")).await;
    let mut pub_b = RawClient::connect(b, V5, &unique("pub-b")).await;
    for (from_a, topic, q) in [
        (true, "loop/t/a", QoS::AtLeastOnce),
        (false, "loop/t/b", QoS::ExactlyOnce),
        (true, "loop/t/a0", QoS::AtMostOnce),
    ] {
        let publisher = if from_a { &mut pub_a } else { &mut pub_b };
        let payload = format!("once from {topic}");
        assert_eq!(
            publisher.publish(topic, payload.as_bytes(), q, false).await,
            ReasonCode::SUCCESS
        );
        for (name, sub) in [("a", &mut on_a), ("b", &mut on_b)] {
            let got = receive(sub, 1, &format!("{topic} on broker {name}")).await;
            assert_eq!(
                got,
                vec![(topic.to_owned(), payload.clone(), q as u8, false)],
                "on broker {name}"
            );
        }
        // A loop would bring the message back within milliseconds.
        on_a.expect_nothing().await;
        on_b.expect_nothing().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Exactly once across a crash of the remote broker.

/// A persistent MQTT 5 subscriber that keeps its QoS 2 receiver state across reconnections, as
/// a real client must: a QoS 2 message is counted when first received, and a resent PUBLISH
/// with a packet identifier still awaiting PUBREL is the same message, not a new one.
struct Collector {
    id: String,
    client: Option<RawClient>,
    /// Packet identifiers answered with PUBREC and not yet released.
    awaiting_rel: HashSet<u16>,
    /// How many times each payload was delivered.
    counts: BTreeMap<String, usize>,
}

impl Collector {
    /// Connects with a new session (expiry one hour) and subscribes to `filter` at QoS 2. (Clean
    /// Start is off, with a client id never used before: Mosquitto saves only the sessions of
    /// such connections.)
    async fn new(addr: SocketAddr, filter: &str) -> Self {
        let id = unique("collector");
        let (mut c, ack) = RawClient::connect_with(addr, conn5(&id, false, Some(3600))).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        assert_eq!(
            c.subscribe(filter, QoS::ExactlyOnce).await,
            vec![ReasonCode::GRANTED_QOS_2]
        );
        Self {
            id,
            client: Some(c),
            awaiting_rel: HashSet::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Resumes the session on `addr` (retried until the broker accepts connections, at most
    /// [`BRIDGE_WAIT`]), asserting that the session was kept.
    async fn resume(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + BRIDGE_WAIT;
        loop {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await
            {
                let mut c = RawClient::new(stream, V5);
                c.send(&Packet::Connect(Box::new(conn5(
                    &self.id,
                    false,
                    Some(3600),
                ))))
                .await;
                let ack = c.connack().await;
                assert_eq!(ack.reason, ReasonCode::SUCCESS, "resuming {}", self.id);
                assert!(ack.session_present, "the collector's session was lost");
                self.client = Some(c);
                return;
            }
            assert!(Instant::now() < deadline, "{addr} did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Distinct payloads received so far.
    fn distinct(&self) -> usize {
        self.counts.len()
    }

    /// Handles packets until `done` holds, the connection closes, or nothing arrives before
    /// `deadline`.
    async fn run(&mut self, deadline: Instant, done: impl Fn(&Self) -> bool) -> Run {
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            let c = self.client.as_mut().expect("connected");
            let packet = match c.next(left).await {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.client = None;
                    return Run::Closed;
                }
                Err(_) => return Run::TimedOut,
            };
            self.handle(packet).await;
        }
        Run::Done
    }

    /// Receives until every message of the stream numbered `strict_from` or more has
    /// arrived, resuming the session whenever the connection drops, for at most `limit`; then
    /// takes what comes within [`QUIET`] more (late duplicates, earlier messages). Missing
    /// messages are left for [`check_stream`] to report.
    async fn collect_stream(&mut self, addr: SocketAddr, limit: Duration, strict_from: usize) {
        let deadline = Instant::now() + limit;
        let complete = |c: &Self| c.missing().iter().all(|p| stream_index(p) < strict_from);
        loop {
            match self.run(deadline, complete).await {
                Run::Done => break,
                Run::Closed => self.resume(addr).await,
                Run::TimedOut => return,
            }
        }
        self.drain().await;
    }

    /// Receives until `n` distinct messages have arrived (at most 30 s).
    async fn collect_at_least(&mut self, n: usize) {
        let outcome = self
            .run(Instant::now() + Duration::from_secs(30), |c| {
                c.distinct() >= n
            })
            .await;
        assert_eq!(
            outcome,
            Run::Done,
            "collector: {} of the first {n} messages within 30 s",
            self.distinct()
        );
    }

    /// Handles whatever arrives within [`QUIET`] (late duplicates).
    async fn drain(&mut self) {
        loop {
            let c = self.client.as_mut().expect("connected");
            match c.next(QUIET).await {
                Ok(Some(p)) => self.handle(p).await,
                Ok(None) | Err(_) => return,
            }
        }
    }

    async fn handle(&mut self, packet: Packet) {
        let c = self.client.as_mut().expect("connected");
        match packet {
            Packet::Publish(p) => {
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                match (p.qos, p.packet_id) {
                    (QoS::ExactlyOnce, Some(id)) => {
                        if self.awaiting_rel.insert(id.get()) {
                            *self.counts.entry(payload).or_default() += 1;
                        }
                        c.send(&Packet::PubRec(Ack::new(id))).await;
                    }
                    (QoS::AtLeastOnce, Some(id)) => {
                        *self.counts.entry(payload).or_default() += 1;
                        c.send(&Packet::PubAck(Ack::new(id))).await;
                    }
                    _ => *self.counts.entry(payload).or_default() += 1,
                }
            }
            Packet::PubRel(a) => {
                self.awaiting_rel.remove(&a.packet_id.get());
                c.send(&Packet::PubComp(Ack::new(a.packet_id))).await;
            }
            other => panic!("collector: unexpected {other:?}"),
        }
    }

    /// The expected payloads not received.
    fn missing(&self) -> Vec<String> {
        stream_payloads()
            .into_iter()
            .filter(|p| !self.counts.contains_key(p))
            .collect()
    }
}

/// How [`Collector::run`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Run {
    Done,
    Closed,
    TimedOut,
}

/// Messages of the stream at each QoS.
const STREAM: usize = 200;

/// The payloads of the stream: `q1-N` and `q2-N`.
fn stream_payloads() -> Vec<String> {
    (0..STREAM)
        .flat_map(|i| [format!("q1-{i}"), format!("q2-{i}")])
        .collect()
}

/// Publishes messages `range` of the stream on `addr` (each acknowledged before the next),
/// `q1-N` to `{prefix}m/1` at QoS 1 and `q2-N` to `{prefix}m/2` at QoS 2, interleaved.
async fn publish_stream(
    addr: SocketAddr,
    version: ProtocolVersion,
    prefix: String,
    range: std::ops::Range<usize>,
) {
    let mut c = RawClient::connect(addr, version, &unique("stream")).await;
    for i in range {
        for (topic, payload, q) in [
            ("m/1", format!("q1-{i}"), QoS::AtLeastOnce),
            ("m/2", format!("q2-{i}"), QoS::ExactlyOnce),
        ] {
            let reason = c
                .publish(&format!("{prefix}{topic}"), payload.as_bytes(), q, false)
                .await;
            assert_eq!(reason, ReasonCode::SUCCESS, "publishing {payload}");
        }
    }
}

/// Waits (at most 60 s) for a [`publish_stream`] task.
async fn finish(publisher: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publisher finished within 60 s")
        .expect("publisher");
}

/// Payloads received more than once, with their counts.
type Counted<'a> = Vec<(&'a String, &'a usize)>;

/// The number `N` of a stream payload `qX-N`.
fn stream_index(payload: &str) -> usize {
    payload[3..].parse().expect("a stream payload")
}

/// The durability check: every QoS 1 message at least once, every QoS 2 message exactly once,
/// nothing else. Messages numbered below `strict_from` may be lost or duplicated (reported on
/// stderr, not failed): those a remote broker without durable acknowledgements (Mosquitto) may
/// lose at a crash. Duplicates of QoS 1 messages are allowed and reported.
fn check_stream(collector: &Collector, what: &str, strict_from: usize) {
    let (missing, excused): (Vec<String>, Vec<String>) = collector
        .missing()
        .into_iter()
        .partition(|p| stream_index(p) >= strict_from);
    assert!(
        missing.is_empty(),
        "{what}: {} messages lost: {missing:?} (and, excused, {excused:?})",
        missing.len()
    );
    let expected: HashSet<String> = stream_payloads().into_iter().collect();
    let unexpected: Vec<&String> = collector
        .counts
        .keys()
        .filter(|p| !expected.contains(*p))
        .collect();
    assert!(unexpected.is_empty(), "{what}: unexpected {unexpected:?}");
    let (twice_q2, twice_q2_excused): (Counted<'_>, Counted<'_>) = collector
        .counts
        .iter()
        .filter(|(p, n)| p.starts_with("q2-") && **n > 1)
        .partition(|(p, _)| stream_index(p) >= strict_from);
    assert!(
        twice_q2.is_empty(),
        "{what}: QoS 2 messages delivered more than once: {twice_q2:?}"
    );
    let twice_q1: Counted<'_> = collector
        .counts
        .iter()
        .filter(|(p, n)| p.starts_with("q1-") && **n > 1)
        .collect();
    eprintln!(
        "{what}: {} QoS 1 and {} QoS 2 messages published; QoS 1 duplicates: {} {twice_q1:?}; \
         excused (before the crash): lost {excused:?}, QoS 2 twice {twice_q2_excused:?}",
        STREAM,
        STREAM,
        twice_q1.len()
    );
}

// =============================================================================================
// Tern bridging to Tern.

#[tokio::test]
async fn tern_to_tern_out_v5_qos_0_1_2_with_prefixes_and_retain() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-out",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv50\ntopic sensors/# out 2 edge/ cloud/site1/",
    ));
    wait_flow(
        edge.addr,
        "edge/sensors/probe",
        remote.addr,
        "cloud/site1/sensors/probe",
    )
    .await;
    check_qos_0_1_2(
        edge.addr,
        "edge/sensors/",
        remote.addr,
        "cloud/site1/sensors/",
        2,
        "tern out v5",
    )
    .await;
    check_retained(
        edge.addr,
        "edge/sensors/kept",
        remote.addr,
        "cloud/site1/sensors/kept",
    )
    .await;
    // Outside the local prefix or the pattern: not carried.
    let mut sub = subscriber(remote.addr, "#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(edge.addr, V5, "not-carried").await;
    for topic in ["sensors/t/x", "edge/other/x", "cloud/site1/sensors/t/x"] {
        publisher
            .publish(topic, b"stays here", QoS::AtLeastOnce, false)
            .await;
    }
    // The retained message from check_retained comes first; nothing else.
    let got = receive(&mut sub, 1, "retained").await;
    assert_eq!(got[0].0, "cloud/site1/sensors/kept");
    sub.expect_nothing().await;
}

#[tokio::test]
async fn tern_to_tern_in_v311_qos_0_1_2_with_prefixes_and_retain() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-in",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv311\ntopic cmd/# in 2 edge/ cloud/",
    ));
    wait_flow(remote.addr, "cloud/cmd/probe", edge.addr, "edge/cmd/probe").await;
    check_qos_0_1_2(
        remote.addr,
        "cloud/cmd/",
        edge.addr,
        "edge/cmd/",
        2,
        "tern in v3.1.1",
    )
    .await;
    check_retained(remote.addr, "cloud/cmd/kept", edge.addr, "edge/cmd/kept").await;
    // `in` only: what is published locally under the prefix does not go out.
    let mut sub = subscriber(remote.addr, "cloud/#", QoS::AtLeastOnce).await;
    let _ = receive(&mut sub, 1, "retained").await;
    let mut publisher = RawClient::connect(edge.addr, V5, "local-only").await;
    publisher
        .publish("edge/cmd/t/local", b"local", QoS::AtLeastOnce, false)
        .await;
    sub.expect_nothing().await;
}

#[tokio::test]
async fn tern_topic_qos_caps_the_delivered_qos_both_ways() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-caps",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv50\n\
         topic zero/# out 0\ntopic one/# out 1\ntopic down/# in 1",
    ));
    wait_flow(edge.addr, "zero/probe", remote.addr, "zero/probe").await;
    wait_flow(edge.addr, "one/probe", remote.addr, "one/probe").await;
    wait_flow(remote.addr, "down/probe", edge.addr, "down/probe").await;
    check_qos_0_1_2(edge.addr, "zero/", remote.addr, "zero/", 0, "cap 0").await;
    check_qos_0_1_2(edge.addr, "one/", remote.addr, "one/", 1, "cap 1").await;
    check_qos_0_1_2(remote.addr, "down/", edge.addr, "down/", 1, "cap 1 in").await;
}

#[tokio::test]
async fn tern_empty_pattern_maps_one_whole_topic_to_another() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-whole",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv50\n\
         topic \"\" out 1 local/topic remote/topic\n\
         topic \"\" in 2 here/cmd there/cmd",
    ));
    wait_flow(edge.addr, "local/topic", remote.addr, "remote/topic").await;
    wait_flow(remote.addr, "there/cmd", edge.addr, "here/cmd").await;

    let mut on_remote = subscriber(remote.addr, "remote/#", QoS::ExactlyOnce).await;
    let mut on_edge = subscriber(edge.addr, "here/#", QoS::ExactlyOnce).await;
    let mut pub_edge = RawClient::connect(edge.addr, V5, "whole-edge").await;
    let mut pub_remote = RawClient::connect(remote.addr, V5, "whole-remote").await;
    pub_edge
        .publish(
            "local/topic/below",
            b"not this one",
            QoS::AtLeastOnce,
            false,
        )
        .await;
    pub_edge
        .publish("local/topic", b"whole out", QoS::AtLeastOnce, false)
        .await;
    pub_remote
        .publish("there/cmd", b"whole in", QoS::ExactlyOnce, false)
        .await;
    assert_eq!(
        receive(&mut on_remote, 1, "out").await,
        vec![("remote/topic".into(), "whole out".into(), 1, false)]
    );
    assert_eq!(
        receive(&mut on_edge, 1, "in").await,
        vec![("here/cmd".into(), "whole in".into(), 2, false)]
    );
    on_remote.expect_nothing().await;
}

#[tokio::test]
async fn tern_bridge_publishes_its_state_on_both_brokers_and_a_will_on_the_remote() {
    let remote = Tern::start();
    let remote_addr = remote.addr;
    let edge = tern_bridge(&connection(
        "edge-state",
        &remote_addr.to_string(),
        "bridge_protocol_version mqttv50\ntopic s/# out 1",
    ));
    let topic = state_topic("edge-state");
    wait_retained(edge.addr, &topic, "1").await;
    wait_retained(remote_addr, &topic, "1").await;

    // The remote crashes: the state here becomes 0, and 1 again once it is back.
    let dir = remote.kill9();
    wait_retained(edge.addr, &topic, "0").await;
    let remote = Tern::restart(dir, remote_addr, &[]);
    assert_eq!(remote.addr, remote_addr, "the remote restarted on its port");
    wait_retained(edge.addr, &topic, "1").await;
    wait_retained(remote.addr, &topic, "1").await;
    wait_flow(edge.addr, "s/probe", remote.addr, "s/probe").await;

    // The bridging broker crashes: the remote publishes the bridge's will, retained.
    let mut watcher = subscriber(remote.addr, &topic, QoS::AtLeastOnce).await;
    let got = receive(&mut watcher, 1, "retained state").await;
    assert_eq!(
        (&got[0].0, &got[0].1, got[0].3),
        (&topic, &"1".into(), true)
    );
    let _ = edge.kill9();
    let got = receive(&mut watcher, 1, "will").await;
    assert_eq!(got[0].1, "0", "the bridge's will on the remote: {got:?}");
    wait_retained(remote.addr, &topic, "0").await;
}

#[tokio::test]
async fn tern_bridge_notification_topic_and_local_only() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-notify",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv311\ntopic s/# out 1\n\
         notification_topic bridges/edge-notify/up\nnotifications_local_only true",
    ));
    wait_retained(edge.addr, "bridges/edge-notify/up", "1").await;
    wait_flow(edge.addr, "s/probe", remote.addr, "s/probe").await;
    // Nothing on the remote: neither that topic nor the default one.
    let mut on_remote = subscriber(remote.addr, "bridges/#", QoS::AtLeastOnce).await;
    on_remote.expect_nothing().await;
    let mut sys = subscriber(remote.addr, "$SYS/broker/connection/#", QoS::AtLeastOnce).await;
    sys.expect_nothing().await;
    // Nor on the default topic here.
    let mut sys_here = subscriber(edge.addr, "$SYS/broker/connection/#", QoS::AtLeastOnce).await;
    sys_here.expect_nothing().await;
}

#[tokio::test]
async fn tern_bridge_without_notifications_publishes_no_state() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-quiet",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv50\ntopic s/# out 1\nnotifications false",
    ));
    wait_flow(edge.addr, "s/probe", remote.addr, "s/probe").await;
    for addr in [edge.addr, remote.addr] {
        let mut sys = subscriber(addr, "$SYS/broker/connection/#", QoS::AtLeastOnce).await;
        sys.expect_nothing().await;
    }
}

#[tokio::test]
async fn tern_bridges_with_both_do_not_loop_on_mqtt5() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-loop5",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv50\ntopic loop/# both 2",
    ));
    check_no_loop(edge.addr, remote.addr).await;
}

#[tokio::test]
async fn tern_bridges_with_both_do_not_loop_on_mqtt311_try_private() {
    let remote = Tern::start();
    let edge = tern_bridge(&connection(
        "edge-loop311",
        &remote.addr.to_string(),
        "bridge_protocol_version mqttv311\ntry_private true\ntopic loop/# both 2",
    ));
    check_no_loop(edge.addr, remote.addr).await;
}

/// A client logged in as `edge` on `addr`, subscribed to `filters` at QoS 1.
async fn logged_in_subscriber(addr: SocketAddr, filters: &[&str]) -> RawClient {
    let id = unique("watch");
    let (mut c, ack) =
        RawClient::connect_with(addr, login(V5, &id, Some("edge"), Some("s3cret"))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        c.subscribe_many(filters, QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1; filters.len()]
    );
    c
}

#[tokio::test]
async fn tern_bridge_logs_in_with_credentials_and_wrong_ones_carry_nothing() {
    let dir = TempDir::new();
    let passwords = dir.path.join("passwords");
    mosquitto_password_file(&passwords, &[("edge", "s3cret")], &[]);
    let remote = Tern::start_config(
        &format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
        "conf",
    );
    let address = remote.addr.to_string();
    let edge = tern_bridge(&format!(
        "{}{}",
        connection(
            "good-login",
            &address,
            "bridge_protocol_version mqttv50\ntopic good/# out 1\n\
             remote_username edge\nremote_password s3cret",
        ),
        connection(
            "bad-login",
            &address,
            "bridge_protocol_version mqttv311\ntopic bad/# out 1\n\
             remote_username edge\nremote_password wrong",
        )
    ));
    // wait_flow's clients are anonymous; watch the remote with credentials.
    let mut watcher = logged_in_subscriber(remote.addr, &["good/probe"]).await;
    let mut publisher = RawClient::connect(edge.addr, V5, "cred-pub").await;
    let deadline = Instant::now() + BRIDGE_WAIT;
    loop {
        publisher.publish0("good/probe", b"probe").await;
        match watcher.next(Duration::from_millis(250)).await {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(p.topic, "good/probe");
                break;
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("closed"),
            Err(_) => assert!(Instant::now() < deadline, "the bridge never logged in"),
        }
    }
    let mut watcher = logged_in_subscriber(remote.addr, &["good/t", "bad/#"]).await;
    assert_eq!(
        publisher
            .publish("good/t", b"with the password", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        receive(&mut watcher, 1, "good").await,
        vec![("good/t".into(), "with the password".into(), 1, false)]
    );
    // The bridge with the wrong password is never connected: state 0 (or none), nothing
    // carried.
    publisher
        .publish("bad/t", b"wrong password", QoS::AtLeastOnce, false)
        .await;
    watcher.expect_nothing().await;
    let mut state = subscriber(edge.addr, &state_topic("bad-login"), QoS::AtLeastOnce).await;
    match state.next(QUIET).await {
        Err(_) => {}
        Ok(Some(Packet::Publish(p))) => assert_eq!(p.payload, "0", "state of bad-login"),
        other => panic!("state of bad-login: {other:?}"),
    }
}

#[tokio::test]
async fn tern_bridge_connects_over_tls_verifying_the_remote() {
    let dir = TempDir::new();
    let (ca, cert, key) = server_certificates(&dir.path);
    // The remote: a TLS listener for the bridges, a plain one to watch from.
    let (tls_port, plain_port) = (free_port(), free_port());
    let remote = start_config_only(
        &format!(
            "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
             listener {plain_port} 127.0.0.1\n",
            cert.display(),
            key.display()
        ),
        "conf",
    );
    let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
    assert!(remote.listening_addrs(2).contains(&plain));
    // The certificate names `localhost`: by that name it verifies; by IP address only with
    // `bridge_insecure` (no host name check); by IP address without it, never.
    let ca = ca.display();
    let edge = tern_bridge(&format!(
        "{}{}{}",
        connection(
            "tls-name",
            &format!("localhost:{tls_port}"),
            &format!("bridge_protocol_version mqttv50\ntopic byname/# out 2\nbridge_cafile {ca}"),
        ),
        connection(
            "tls-insecure",
            &format!("127.0.0.1:{tls_port}"),
            &format!(
                "bridge_protocol_version mqttv311\ntopic insecure/# out 2\n\
                 bridge_cafile {ca}\nbridge_insecure true"
            ),
        ),
        connection(
            "tls-mismatch",
            &format!("127.0.0.1:{tls_port}"),
            &format!("bridge_protocol_version mqttv50\ntopic mismatch/# out 2\nbridge_cafile {ca}"),
        ),
    ));
    wait_flow(edge.addr, "byname/probe", plain, "byname/probe").await;
    wait_flow(edge.addr, "insecure/probe", plain, "insecure/probe").await;
    check_qos_0_1_2(edge.addr, "byname/", plain, "byname/", 2, "TLS by name").await;
    check_qos_0_1_2(
        edge.addr,
        "insecure/",
        plain,
        "insecure/",
        2,
        "TLS insecure",
    )
    .await;
    // The bridge whose remote does not match its certificate carries nothing.
    let mut watcher = subscriber(plain, "mismatch/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(edge.addr, V5, "tls-mismatch-pub").await;
    publisher
        .publish("mismatch/t", b"must not pass", QoS::AtLeastOnce, false)
        .await;
    watcher.expect_nothing().await;
    let mut state = subscriber(edge.addr, &state_topic("tls-mismatch"), QoS::AtLeastOnce).await;
    match state.next(QUIET).await {
        Err(_) => {}
        Ok(Some(Packet::Publish(p))) => assert_eq!(p.payload, "0", "state of tls-mismatch"),
        other => panic!("state of tls-mismatch: {other:?}"),
    }
    let logs = remote.logs();
    assert!(
        logs.contains("client tls-name connected")
            && logs.contains("client tls-insecure connected"),
        "the remote logs the bridges' connections: {logs}"
    );
    assert!(
        !logs.contains("client tls-mismatch connected"),
        "the bridge with the wrong host name must not connect: {logs}"
    );
}

#[tokio::test]
async fn tern_bridge_default_client_ids_and_state_topic() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned();
    let remote = Tern::start();
    // No remote_clientid: Mosquitto's `HOSTNAME.NAME` on the remote; the state on
    // `$SYS/broker/connection/NAME/state`. (The local client id, Mosquitto's `local.` and the
    // remote one, is checked through the admin API in
    // tern_bridge_status_in_the_admin_api_and_prometheus.)
    let edge = tern_bridge(&format!(
        "connection defaults\naddress {}\nrestart_timeout 1 2\n\
         bridge_protocol_version mqttv50\ntopic d/# out 1\n",
        remote.addr
    ));
    wait_flow(edge.addr, "d/probe", remote.addr, "d/probe").await;
    wait_retained(edge.addr, &state_topic("defaults"), "1").await;
    remote
        .wait_log(&format!("client {host}.defaults connected"))
        .await;
}

#[tokio::test]
async fn tern_bridge_fails_over_to_the_next_address() {
    let remote = Tern::start();
    let dead = free_port();
    let edge = tern_bridge(&format!(
        "connection failover\naddresses 127.0.0.1:{dead} {}\nremote_clientid failover\n\
         restart_timeout 1 2\nbridge_protocol_version mqttv50\ntopic f/# out 1\n",
        remote.addr
    ));
    wait_flow(edge.addr, "f/probe", remote.addr, "f/probe").await;
    check_qos_0_1_2(edge.addr, "f/", remote.addr, "f/", 1, "failover").await;
}

#[tokio::test]
async fn tern_bridge_in_toml() {
    let remote = Tern::start();
    let config = format!(
        "allow_anonymous = true\n\n\
         [[bridges]]\nname = \"toml-edge\"\naddresses = [\"{}\"]\nprotocol = \"mqttv50\"\n\
         remote_client_id = \"toml-edge\"\nrestart_timeout = [1, 2]\n\
         topics = [\n  \"up/# out 2 edge/ cloud/\",\n  \
         {{ pattern = \"down/#\", direction = \"in\", qos = 1, local_prefix = \"edge/\", \
         remote_prefix = \"cloud/\" }},\n]\n",
        remote.addr
    );
    let edge = Tern::start_config(&config, "toml");
    wait_flow(edge.addr, "edge/up/probe", remote.addr, "cloud/up/probe").await;
    wait_flow(
        remote.addr,
        "cloud/down/probe",
        edge.addr,
        "edge/down/probe",
    )
    .await;
    check_qos_0_1_2(
        edge.addr,
        "edge/up/",
        remote.addr,
        "cloud/up/",
        2,
        "toml out",
    )
    .await;
    check_qos_0_1_2(
        remote.addr,
        "cloud/down/",
        edge.addr,
        "edge/down/",
        1,
        "toml in",
    )
    .await;
    wait_retained(edge.addr, &state_topic("toml-edge"), "1").await;
}

/// The bridge `name` in `GET /api/v1/bridges` of `tern` (with the admin key of
/// [`tern_bridge_status_in_the_admin_api_and_prometheus`]).
async fn bridge_status(tern: &Tern, name: &str) -> serde_json::Value {
    let (status, _, body) = tern
        .http(
            "GET",
            "/api/v1/bridges",
            Some(&basic_auth("ops", "ops-secret")),
            None,
        )
        .await;
    assert_eq!(status, 200, "GET /api/v1/bridges: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {body}"))
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no bridge {name}: {body}"))
        .clone()
}

/// Polls (at most [`BRIDGE_WAIT`]) the admin API until the bridge `name` satisfies `done`;
/// returns that status.
async fn wait_status(
    tern: &Tern,
    name: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + BRIDGE_WAIT;
    loop {
        let b = bridge_status(tern, name).await;
        if done(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "bridge {name} never {what} within {BRIDGE_WAIT:?}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tern_bridge_status_in_the_admin_api_and_prometheus() {
    let remote = Tern::start();
    let config = format!(
        "allow_anonymous = true\n\n[admin]\nmetrics_anonymous = true\n\n\
         [[admin.api_keys]]\nkey = \"ops\"\nsecret = \"ops-secret\"\n\n\
         [[bridges]]\nname = \"status-edge\"\naddress = \"{}\"\nprotocol = \"mqttv311\"\n\
         remote_client_id = \"status-edge\"\nrestart_timeout = [1, 2]\n\
         topics = [\"up/# out 1\", \"down/# in 1\"]\n",
        remote.addr
    );
    let edge = Tern::start_config(&config, "toml");
    wait_flow(edge.addr, "up/probe", remote.addr, "up/probe").await;
    wait_flow(remote.addr, "down/probe", edge.addr, "down/probe").await;
    let before = wait_status(&edge, "status-edge", "connected", |b| {
        b["state"] == "connected"
    })
    .await;
    assert_eq!(
        before["remote_address"],
        remote.addr.to_string(),
        "{before}"
    );
    assert!(before["connected_since"].is_string(), "{before}");
    assert_eq!(before["remote_client_id"], "status-edge", "{before}");
    assert_eq!(
        before["local_client_id"], "local.status-edge",
        "Mosquitto's default local client id, `local.` and the remote one: {before}"
    );
    let (out0, in0) = (
        before["messages_out"].as_u64().expect("messages_out"),
        before["messages_in"].as_u64().expect("messages_in"),
    );
    assert!(out0 >= 1 && in0 >= 1, "the probes were counted: {before}");

    // 3 messages out, 2 in, all acknowledged end to end.
    let mut on_remote = subscriber(remote.addr, "up/t/#", QoS::AtLeastOnce).await;
    let mut on_edge = subscriber(edge.addr, "down/t/#", QoS::AtLeastOnce).await;
    let mut pub_edge = RawClient::connect(edge.addr, V5, "status-pub-edge").await;
    let mut pub_remote = RawClient::connect(remote.addr, V5, "status-pub-remote").await;
    for i in 0..3 {
        pub_edge
            .publish(&format!("up/t/{i}"), b"out", QoS::AtLeastOnce, false)
            .await;
    }
    for i in 0..2 {
        pub_remote
            .publish(&format!("down/t/{i}"), b"in", QoS::AtLeastOnce, false)
            .await;
    }
    receive(&mut on_remote, 3, "out").await;
    receive(&mut on_edge, 2, "in").await;
    let after = wait_status(&edge, "status-edge", "counted 3 out and 2 in", |b| {
        b["messages_out"] == out0 + 3 && b["messages_in"] == in0 + 2
    })
    .await;
    assert_eq!(after["queued"], 0, "{after}");
    let (status, _, metrics) = edge.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    for line in [
        "tern_bridge_connected{bridge=\"status-edge\"} 1".to_owned(),
        format!(
            "tern_bridge_messages_forwarded_total{{bridge=\"status-edge\",direction=\"out\"}} {}",
            out0 + 3
        ),
        format!(
            "tern_bridge_messages_forwarded_total{{bridge=\"status-edge\",direction=\"in\"}} {}",
            in0 + 2
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in the metrics:\n{metrics}"
        );
    }

    // The remote goes away: the bridge is no longer connected, everywhere.
    let _ = remote.kill9();
    wait_status(&edge, "status-edge", "disconnected", |b| {
        b["state"] != "connected"
    })
    .await;
    wait_retained(edge.addr, &state_topic("status-edge"), "0").await;
    let (_, _, metrics) = edge.http("GET", "/metrics", None, None).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "tern_bridge_connected{bridge=\"status-edge\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn tern_to_tern_stream_survives_kill_9_of_the_remote() {
    let remote = Tern::start();
    let remote_addr = remote.addr;
    let edge = tern_bridge(&connection(
        "edge-crash",
        &remote_addr.to_string(),
        "bridge_protocol_version mqttv50\ncleansession false\ntopic stream/# out 2",
    ));
    wait_flow(edge.addr, "stream/probe", remote_addr, "stream/probe").await;
    let mut collector = Collector::new(remote_addr, "stream/m/#").await;
    let half = STREAM / 2;
    let publisher = tokio::spawn(publish_stream(edge.addr, V5, "stream/".into(), 0..half));
    // Kill the remote in the middle of the first half.
    collector.collect_at_least(60).await;
    let dir = remote.kill9();
    finish(publisher).await;
    // The second half waits on the edge while the remote is down.
    publish_stream(edge.addr, V5, "stream/".into(), half..STREAM).await;
    let remote = Tern::restart(dir, remote_addr, &[]);
    assert_eq!(remote.addr, remote_addr, "the remote restarted on its port");
    collector.client = None;
    collector.resume(remote_addr).await;
    collector
        .collect_stream(remote_addr, Duration::from_secs(60), 0)
        .await;
    check_stream(&collector, "Tern -> Tern, remote killed", 0);
    drop(edge);
}

/// Starts Tern on `data_dir` with the mosquitto.conf `config` (kept by the caller, so that a
/// restart can read it again), listening on an ephemeral port.
fn tern_with_config(config: &TempFile, data_dir: TempDir) -> Tern {
    let path = config.path.to_str().expect("UTF-8 temp path");
    Tern::spawn_in(
        &["serve", "--config", path, "--listen", "127.0.0.1:0"],
        None,
        data_dir,
    )
}

/// A remote Tern on the fixed loopback `port` (a bridge's configuration names it before the
/// remote runs).
fn tern_on_port(port: u16) -> Tern {
    let listen = format!("127.0.0.1:{port}");
    Tern::spawn_in(&["serve", "--listen", &listen], None, TempDir::new())
}

#[tokio::test]
async fn tern_bridge_queue_survives_kill_9_of_the_bridging_broker() {
    let port = free_port();
    let remote = tern_on_port(port);
    let remote_addr = remote.addr;
    assert_eq!(remote_addr.port(), port);
    let mut collector = Collector::new(remote_addr, "stream/m/#").await;
    let config = TempFile::new(
        "conf",
        &format!(
            "allow_anonymous true\n{}",
            connection(
                "edge-queue",
                &remote_addr.to_string(),
                "bridge_protocol_version mqttv311\ncleansession false\ntopic stream/# out 2",
            )
        ),
    );
    let edge = tern_with_config(&config, TempDir::new());
    let edge_addr = edge.addr;
    wait_flow(edge_addr, "stream/probe", remote_addr, "stream/probe").await;

    // The remote goes away; everything published meanwhile waits in the edge's store.
    let remote_dir = remote.stop();
    wait_retained(edge_addr, &state_topic("edge-queue"), "0").await;
    publish_stream(edge_addr, V5, "stream/".into(), 0..STREAM).await;
    // The edge crashes with all of it queued, and comes back.
    let edge_dir = edge.kill9();
    let path = config.path.to_str().expect("UTF-8 temp path");
    let edge = Tern::restart(edge_dir, edge_addr, &["--config", path]);
    let remote = Tern::restart(remote_dir, remote_addr, &[]);
    assert_eq!(remote.addr, remote_addr, "the remote restarted on its port");
    collector.client = None;
    collector.resume(remote_addr).await;
    collector
        .collect_stream(remote_addr, Duration::from_secs(60), 0)
        .await;
    check_stream(&collector, "queued on a Tern bridge killed with kill -9", 0);
    drop(edge);
}

#[tokio::test]
async fn tern_bridge_queues_what_is_published_before_the_remote_was_ever_reachable() {
    // The remote exists only to hold the collector's session, then stops before the edge
    // starts: the edge's bridge has never connected when the messages are published (Mosquitto
    // queues them too: its bridge subscribes locally at start).
    let port = free_port();
    let remote = tern_on_port(port);
    let remote_addr = remote.addr;
    let mut collector = Collector::new(remote_addr, "early/m/#").await;
    let remote_dir = remote.stop();
    let edge = tern_bridge(&connection(
        "edge-early",
        &remote_addr.to_string(),
        "bridge_protocol_version mqttv50\ntopic early/# out 2",
    ));
    let mut publisher = RawClient::connect(edge.addr, V5, "early-pub").await;
    // The broker serves clients only once its bridges' sessions here exist (as Mosquitto, which
    // subscribes its bridges before serving): the very first message already has a subscriber.
    assert_eq!(
        publisher
            .publish("early/probe", b"probe", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS,
        "the first message after start-up found no subscriber"
    );
    for i in 0..10 {
        for q in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let payload = format!("q{}-{i}", q as u8);
            assert_eq!(
                publisher
                    .publish(
                        &format!("early/m/{}", q as u8),
                        payload.as_bytes(),
                        q,
                        false
                    )
                    .await,
                ReasonCode::SUCCESS,
                "publishing {payload} before the bridge ever connected"
            );
        }
    }
    let _remote = Tern::restart(remote_dir, remote_addr, &[]);
    collector.client = None;
    collector.resume(remote_addr).await;
    let outcome = collector
        .run(Instant::now() + BRIDGE_WAIT, |c| c.distinct() >= 20)
        .await;
    let mut got: Vec<&String> = collector.counts.keys().collect();
    got.sort();
    assert_eq!(
        outcome,
        Run::Done,
        "messages published before the bridge ever connected: got {got:?}"
    );
    collector.drain().await;
    assert!(
        collector.counts.values().all(|n| *n == 1),
        "each exactly once: {:?}",
        collector.counts
    );
}

// =============================================================================================
// Tern bridging to Mosquitto.

/// Tern bridges `up/#` out and `down/#` in to a Mosquitto broker, with prefixes, over
/// `version` (mqttv311 or mqttv50): QoS 0, 1, 2 both ways, retained messages both ways.
async fn tern_to_mosquitto(name: &str, version: &str) {
    let mosquitto = Mosquitto::start("", "");
    let edge = tern_bridge(&connection(
        name,
        &mosquitto.addr().to_string(),
        &format!(
            "bridge_protocol_version {version}\n\
             topic up/# out 2 edge/ site/\ntopic down/# in 2 edge/ site/"
        ),
    ));
    let m = mosquitto.addr();
    wait_flow(edge.addr, "edge/up/probe", m, "site/up/probe").await;
    wait_flow(m, "site/down/probe", edge.addr, "edge/down/probe").await;
    check_qos_0_1_2(edge.addr, "edge/up/", m, "site/up/", 2, version).await;
    check_qos_0_1_2(m, "site/down/", edge.addr, "edge/down/", 2, version).await;
    check_retained(edge.addr, "edge/up/kept", m, "site/up/kept").await;
    check_retained(m, "site/down/kept", edge.addr, "edge/down/kept").await;
    // The bridge's state here, and on Mosquitto.
    wait_retained(edge.addr, &state_topic(name), "1").await;
    wait_retained(m, &state_topic(name), "1").await;
}

/// MQTT-7.0.0-1: a server that opens connections to other servers conforms as a client on them:
/// Mosquitto, a strict peer, carries Tern's bridge traffic at every QoS both ways.
#[tokio::test]
async fn mqtt311_7_0_0_1_tern_bridge_to_mosquitto_v311_both_directions_qos_0_1_2() {
    tern_to_mosquitto("tern-mosq-311", "mqttv311").await;
}

#[tokio::test]
async fn tern_to_mosquitto_v5_both_directions_qos_0_1_2() {
    tern_to_mosquitto("tern-mosq-5", "mqttv50").await;
}

#[tokio::test]
async fn tern_to_mosquitto_marks_itself_a_bridge_with_try_private() {
    let mosquitto = Mosquitto::start("", "");
    let _edge = tern_bridge(&connection(
        "tern-private",
        &mosquitto.addr().to_string(),
        "bridge_protocol_version mqttv311\ntry_private true\ntopic p/# out 1",
    ));
    wait_retained(mosquitto.addr(), &state_topic("tern-private"), "1").await;
    let logs = mosquitto.logs();
    assert!(
        logs.contains("New bridge connected") && logs.contains("as tern-private"),
        "Mosquitto sees a bridge (protocol level 0x84): {logs}"
    );
}

#[tokio::test]
async fn tern_to_mosquitto_both_does_not_loop_on_mqtt311_try_private() {
    let mosquitto = Mosquitto::start("", "");
    let edge = tern_bridge(&connection(
        "tern-mosq-loop311",
        &mosquitto.addr().to_string(),
        "bridge_protocol_version mqttv311\ntry_private true\ntopic loop/# both 2",
    ));
    check_no_loop(edge.addr, mosquitto.addr()).await;
}

#[tokio::test]
async fn tern_to_mosquitto_both_does_not_loop_on_mqtt5() {
    let mosquitto = Mosquitto::start("", "");
    let edge = tern_bridge(&connection(
        "tern-mosq-loop5",
        &mosquitto.addr().to_string(),
        "bridge_protocol_version mqttv50\ntopic loop/# both 2",
    ));
    check_no_loop(edge.addr, mosquitto.addr()).await;
}

#[tokio::test]
async fn tern_to_mosquitto_over_tls_with_credentials() {
    let dir = TempDir::new();
    let (ca, cert, key) = server_certificates(&dir.path);
    let passwords = dir.path.join("passwords");
    mosquitto_password_file(&passwords, &[("edge", "s3cret"), ("watch", "w")], &[]);
    // A second, plain listener to watch from.
    let plain = free_port();
    let mosquitto = Mosquitto::start(
        &format!(
            "certfile {}\nkeyfile {}\nlistener {plain} 127.0.0.1",
            cert.display(),
            key.display()
        ),
        &format!(
            "password_file {}\nallow_anonymous false",
            passwords.display()
        ),
    );
    let watch_addr = SocketAddr::from(([127, 0, 0, 1], plain));
    let edge = tern_bridge(&connection(
        "tern-mosq-tls",
        &format!("localhost:{}", mosquitto.port),
        &format!(
            "bridge_protocol_version mqttv311\ntopic secure/# out 2\ntopic back/# in 2\n\
             bridge_cafile {}\nremote_username edge\nremote_password s3cret",
            ca.display()
        ),
    ));
    // Wait for the bridge's state on Mosquitto, read as `watch` on the plain listener.
    let (mut watcher, ack) =
        RawClient::connect_with(watch_addr, login(V5, "watcher", Some("watch"), Some("w"))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{}", mosquitto.logs());
    assert_eq!(
        watcher.subscribe("#", QoS::ExactlyOnce).await,
        vec![ReasonCode::GRANTED_QOS_2]
    );
    let mut publisher = RawClient::connect(edge.addr, V5, "tls-pub").await;
    let deadline = Instant::now() + BRIDGE_WAIT;
    loop {
        publisher.publish0("secure/probe", b"probe").await;
        match watcher.next(Duration::from_millis(250)).await {
            Ok(Some(Packet::Publish(p))) if p.topic == "secure/probe" => break,
            Ok(Some(Packet::Publish(_))) => {}
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("closed"),
            Err(_) => assert!(
                Instant::now() < deadline,
                "the bridge never reached Mosquitto over TLS: {}",
                mosquitto.logs()
            ),
        }
    }
    drop(watcher);
    let (mut watcher, _) =
        RawClient::connect_with(watch_addr, login(V5, "watcher2", Some("watch"), Some("w"))).await;
    watcher.subscribe("secure/t/#", QoS::ExactlyOnce).await;
    for q in 0..=2u8 {
        publisher
            .publish(&format!("secure/t/{q}"), b"over tls", qos(q), false)
            .await;
    }
    let mut got = receive(&mut watcher, 3, "over TLS").await;
    got.sort();
    assert_eq!(
        got,
        (0..=2u8)
            .map(|q| (format!("secure/t/{q}"), "over tls".to_owned(), q, false))
            .collect::<Vec<_>>()
    );
    let logs = mosquitto.logs();
    assert!(
        logs.contains(&format!("on port {}", mosquitto.port)) && logs.contains("u'edge'"),
        "Mosquitto logs the bridge's TLS connection as user edge: {logs}"
    );
}

#[tokio::test]
async fn tern_to_mosquitto_stream_survives_kill_9_of_mosquitto() {
    // Mosquitto writes its database after every change here, but it acknowledges (PUBACK,
    // PUBREC) before saving and routes a QoS 2 message only at PUBREL: what the bridge had in
    // flight at the kill may be lost or doubled by Mosquitto itself. So the first half (in
    // flight at the kill) is reported, not failed; the second half, published while
    // Mosquitto is down, waits on Tern and must all arrive, QoS 2 exactly once.
    let mut mosquitto = Mosquitto::start(
        "",
        "persistence true\npersistence_location {dir}/\nautosave_interval 1\n\
         autosave_on_changes true",
    );
    let m = mosquitto.addr();
    let edge = tern_bridge(&connection(
        "tern-mosq-crash",
        &m.to_string(),
        "bridge_protocol_version mqttv50\ncleansession false\ntopic stream/# out 2",
    ));
    wait_flow(edge.addr, "stream/probe", m, "stream/probe").await;
    let mut collector = Collector::new(m, "stream/m/#").await;
    let half = STREAM / 2;
    let publisher = tokio::spawn(publish_stream(edge.addr, V5, "stream/".into(), 0..half));
    collector.collect_at_least(60).await;
    mosquitto.kill9();
    finish(publisher).await;
    publish_stream(edge.addr, V5, "stream/".into(), half..STREAM).await;
    mosquitto.restart();
    collector.client = None;
    collector.resume(m).await;
    collector
        .collect_stream(m, Duration::from_secs(60), half)
        .await;
    check_stream(&collector, "Tern -> Mosquitto, Mosquitto killed", half);
}

// =============================================================================================
// Mosquitto bridging to Tern.

/// A Mosquitto broker bridging `up/#` out and `down/#` in to Tern over `version`, with
/// prefixes (and `lines`).
fn mosquitto_bridge(name: &str, remote: SocketAddr, lines: &str) -> Mosquitto {
    Mosquitto::start("", &connection(name, &remote.to_string(), lines))
}

async fn mosquitto_to_tern(name: &str, version: &str) {
    let tern = Tern::start();
    let mosquitto = mosquitto_bridge(
        name,
        tern.addr,
        &format!(
            "bridge_protocol_version {version}\ntry_private true\n\
             topic up/# out 2 edge/ site/\ntopic down/# in 2 edge/ site/"
        ),
    );
    let m = mosquitto.addr();
    wait_flow(m, "edge/up/probe", tern.addr, "site/up/probe").await;
    wait_flow(tern.addr, "site/down/probe", m, "edge/down/probe").await;
    check_qos_0_1_2(m, "edge/up/", tern.addr, "site/up/", 2, version).await;
    check_qos_0_1_2(tern.addr, "site/down/", m, "edge/down/", 2, version).await;
    check_retained(m, "edge/up/kept", tern.addr, "site/up/kept").await;
    check_retained(tern.addr, "site/down/kept", m, "edge/down/kept").await;
    // Mosquitto's notification, published on Tern ($SYS/broker/connection/+/state is open to
    // bridges), retained.
    wait_retained(tern.addr, &state_topic(name), "1").await;
}

#[tokio::test]
async fn mosquitto_to_tern_v311_try_private_both_directions_qos_0_1_2() {
    mosquitto_to_tern("mosq-tern-311", "mqttv311").await;
}

#[tokio::test]
async fn mosquitto_to_tern_v5_both_directions_qos_0_1_2() {
    mosquitto_to_tern("mosq-tern-5", "mqttv50").await;
}

#[tokio::test]
async fn mosquitto_to_tern_both_does_not_loop_on_mqtt311_try_private() {
    let tern = Tern::start();
    let mosquitto = mosquitto_bridge(
        "mosq-tern-loop311",
        tern.addr,
        "bridge_protocol_version mqttv311\ntry_private true\ntopic loop/# both 2",
    );
    check_no_loop(mosquitto.addr(), tern.addr).await;
}

#[tokio::test]
async fn mosquitto_to_tern_both_does_not_loop_on_mqtt5() {
    let tern = Tern::start();
    let mosquitto = mosquitto_bridge(
        "mosq-tern-loop5",
        tern.addr,
        "bridge_protocol_version mqttv50\ntopic loop/# both 2",
    );
    check_no_loop(mosquitto.addr(), tern.addr).await;
}

#[tokio::test]
async fn mosquitto_to_tern_over_tls_with_credentials() {
    let dir = TempDir::new();
    let (ca, cert, key) = server_certificates(&dir.path);
    let passwords = dir.path.join("passwords");
    mosquitto_password_file(&passwords, &[("edge", "s3cret")], &[]);
    // Tern: a TLS listener for the bridge, a plain one to watch from; no anonymous clients.
    let (tls_port, plain_port) = (free_port(), free_port());
    let tern = start_config_only(
        &format!(
            "allow_anonymous false\npassword_file {}\n\
             listener {tls_port} 127.0.0.1\ncertfile {}\nkeyfile {}\n\
             listener {plain_port} 127.0.0.1\n",
            passwords.display(),
            cert.display(),
            key.display()
        ),
        "conf",
    );
    let plain = SocketAddr::from(([127, 0, 0, 1], plain_port));
    assert!(tern.listening_addrs(2).contains(&plain));
    let mosquitto = Mosquitto::start(
        "",
        &connection(
            "mosq-tern-tls",
            &format!("localhost:{tls_port}"),
            &format!(
                "bridge_protocol_version mqttv311\ntry_private true\ntopic secure/# both 2\n\
                 bridge_cafile {}\nremote_username edge\nremote_password s3cret",
                ca.display()
            ),
        ),
    );
    let m = mosquitto.addr();
    let mut watcher = logged_in_subscriber(plain, &["secure/#"]).await;
    let mut publisher = RawClient::connect(m, V5, "mosq-tls-pub").await;
    let deadline = Instant::now() + BRIDGE_WAIT;
    loop {
        publisher.publish0("secure/probe", b"probe").await;
        match watcher.next(Duration::from_millis(250)).await {
            Ok(Some(Packet::Publish(p))) => {
                assert_eq!(p.topic, "secure/probe");
                break;
            }
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) => panic!("closed"),
            Err(_) => assert!(
                Instant::now() < deadline,
                "Mosquitto's bridge never reached Tern over TLS: {}\n{}",
                mosquitto.logs(),
                tern.logs()
            ),
        }
    }
    let mut watcher = logged_in_subscriber(plain, &["secure/t/#"]).await;
    for q in 0..=2u8 {
        publisher
            .publish(&format!("secure/t/{q}"), b"over tls", qos(q), false)
            .await;
    }
    let mut got = receive(&mut watcher, 3, "over TLS").await;
    got.sort();
    assert_eq!(
        got,
        (0..=2u8)
            .map(|q| (
                format!("secure/t/{q}"),
                "over tls".to_owned(),
                q.min(1),
                false
            ))
            .collect::<Vec<_>>()
    );
    tern.wait_log("client mosq-tern-tls connected").await;
    assert!(
        tern.logs().contains("u'edge'"),
        "Tern logs the bridge's login: {}",
        tern.logs()
    );
}

#[tokio::test]
async fn mosquitto_bridge_will_on_tern_when_mosquitto_is_killed() {
    let tern = Tern::start();
    let mut mosquitto = mosquitto_bridge(
        "mosq-will",
        tern.addr,
        "bridge_protocol_version mqttv311\ntopic w/# out 1",
    );
    let topic = state_topic("mosq-will");
    wait_retained(tern.addr, &topic, "1").await;
    let mut watcher = subscriber(tern.addr, &topic, QoS::AtLeastOnce).await;
    let got = receive(&mut watcher, 1, "retained state").await;
    assert_eq!(
        (&got[0].0, &got[0].1, got[0].3),
        (&topic, &"1".into(), true)
    );
    mosquitto.kill9();
    let got = receive(&mut watcher, 1, "will").await;
    assert_eq!(got[0].1, "0", "Mosquitto's will on Tern: {got:?}");
    wait_retained(tern.addr, &topic, "0").await;
}

#[tokio::test]
async fn mosquitto_to_tern_stream_survives_kill_9_of_tern() {
    let tern = Tern::start();
    let tern_addr = tern.addr;
    let mosquitto = mosquitto_bridge(
        "mosq-tern-crash",
        tern_addr,
        "bridge_protocol_version mqttv311\ntry_private true\ncleansession false\n\
         topic stream/# out 2",
    );
    let m = mosquitto.addr();
    wait_flow(m, "stream/probe", tern_addr, "stream/probe").await;
    let mut collector = Collector::new(tern_addr, "stream/m/#").await;
    let half = STREAM / 2;
    let publisher = tokio::spawn(publish_stream(m, V311, "stream/".into(), 0..half));
    collector.collect_at_least(60).await;
    let dir = tern.kill9();
    finish(publisher).await;
    publish_stream(m, V311, "stream/".into(), half..STREAM).await;
    let tern = Tern::restart(dir, tern_addr, &[]);
    assert_eq!(tern.addr, tern_addr, "Tern restarted on its port");
    collector.client = None;
    collector.resume(tern_addr).await;
    collector
        .collect_stream(tern_addr, Duration::from_secs(60), 0)
        .await;
    check_stream(&collector, "Mosquitto -> Tern, Tern killed", 0);
    drop(mosquitto);
}
