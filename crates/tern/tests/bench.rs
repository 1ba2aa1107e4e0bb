//! `tern bench` against the real broker, in a short smoke mode: few clients, a few hundred
//! messages, each run bounded to a few seconds. Checks that the counting is exact (received =
//! expected, no loss and no duplicates on an unloaded broker), that `--json` has the documented
//! fields, that a dropped connection shows up as loss, and the exit statuses. The security flags:
//! `--cafile` against a TLS listener (certificates made with rcgen), `-u`/`-P` (with `%i` and
//! `--users`) against a password file made by the real `mosquitto_passwd`.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{RawClient, Tern, V5};
use serde_json::Value;
use tern_codec::QoS;

/// How long one bench run may take before the test fails (runs bound themselves much lower).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The result of one `tern bench` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "bench failed: {}", self.stderr);
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// `tern bench ARGS... --port PORT --quiet`, bounded by [`RUN_LIMIT`].
async fn bench(addr: SocketAddr, args: &[&str]) -> Run {
    bench_on_port(addr.port(), args).await
}

async fn bench_on_port(port: u16, args: &[&str]) -> Run {
    let mut full: Vec<String> = vec!["bench".into()];
    full.extend(args.iter().map(|a| (*a).to_owned()));
    full.extend(["--port".into(), port.to_string(), "--quiet".into()]);
    run_tern(full).await
}

async fn run_tern(args: Vec<String>) -> Run {
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tern bench");
    let pid = child.id();
    let waited = tokio::time::timeout(
        RUN_LIMIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(joined) => joined.expect("join").expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("tern {args:?} did not finish within {RUN_LIMIT:?}");
        }
    };
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not an unsigned integer in {v}"))
}

/// Asserts the exact accounting of a run with no loss.
fn assert_exact(v: &Value, sent: u64, expected: u64) {
    assert_eq!(u(v, "sent"), sent, "{v}");
    assert_eq!(u(v, "expected"), expected, "{v}");
    assert_eq!(u(v, "received"), expected, "{v}");
    assert_eq!(u(v, "lost"), 0, "{v}");
    assert_eq!(u(v, "duplicates"), 0, "{v}");
    assert_eq!(u(v, "out_of_order"), 0, "{v}");
    assert_eq!(u(v, "unexpected"), 0, "{v}");
    assert_eq!(u(v, "malformed"), 0, "{v}");
    assert_eq!(u(v, "errors"), 0, "{v}");
    if u(v, "qos") > 0 {
        assert_eq!(u(v, "acked"), sent, "{v}");
        assert_eq!(u(v, "unacked"), 0, "{v}");
    }
    assert_eq!(v["passed"], Value::Bool(true), "{v}");
    assert_eq!(v["hit_time_limit"], Value::Bool(false), "{v}");
    assert_eq!(u(&v["latency_us"], "count"), expected, "{v}");
    // Over plain TCP deliveries also have the kernel's receive time (all but any before the
    // kernel turned timestamping on, a moment after the first socket asked), which comes
    // before the load generator reads them (to the microsecond the two clocks are lined up to).
    if v["tls"] == Value::Bool(false) {
        let (arrival, latency) = (&v["arrival_latency_us"], &v["latency_us"]);
        assert!((1..=expected).contains(&u(arrival, "count")), "{v}");
        for key in ["min", "p50", "p99", "max"] {
            assert!(u(arrival, key) <= u(latency, key) + 1, "{key}: {v}");
        }
    }
}

/// Runs `scenario` at QoS 1 and 2 with `args` and checks received = expected exactly.
async fn exact_at_qos_1_and_2(scenario: &str, args: &[&str], sent: u64, expected: u64) {
    let tern = Tern::start();
    for qos in ["1", "2"] {
        let mut full = vec![scenario, "--qos", qos, "--json", "--drain", "5s"];
        full.extend_from_slice(args);
        let v = bench(tern.addr, &full).await.json();
        assert_eq!(v["scenario"], scenario);
        assert_exact(&v, sent, expected);
    }
}

#[tokio::test]
async fn fanin_counts_every_message_once() {
    // 3 publishers × 200 → 1 subscriber.
    exact_at_qos_1_and_2("fanin", &["-c", "3", "-n", "200"], 600, 600).await;
}

#[tokio::test]
async fn fanout_expects_each_message_at_every_subscriber() {
    // 1 publisher × 200 → 5 subscribers: 1000 deliveries.
    exact_at_qos_1_and_2("fanout", &["-c", "5", "-n", "200"], 200, 1000).await;
}

#[tokio::test]
async fn p2p_pairs_receive_only_their_publisher() {
    // 4 pairs × 150, each subscriber on its own topic.
    exact_at_qos_1_and_2("p2p", &["-c", "4", "-n", "150"], 600, 600).await;
}

#[tokio::test]
async fn shared_group_receives_each_message_once() {
    // 3 publishers × 200 → one group of 3 consumers: each message once over the group.
    exact_at_qos_1_and_2(
        "shared",
        &["-c", "3", "--subscribers", "3", "-n", "200"],
        600,
        600,
    )
    .await;
}

#[tokio::test]
async fn wildcard_table_routes_each_message_to_its_device() {
    // 3 publishers rotating over 10 devices (dev/<i>/+ and 4 non-matching filters each).
    exact_at_qos_1_and_2(
        "wildcard",
        &[
            "-c",
            "10",
            "--publishers",
            "3",
            "--wildcard-filters",
            "4",
            "-n",
            "100",
        ],
        300,
        300,
    )
    .await;
}

#[tokio::test]
async fn qos0_on_an_unloaded_broker_loses_nothing() {
    let tern = Tern::start();
    let v = bench(
        tern.addr,
        &["fanout", "-c", "3", "-n", "200", "--rate", "2000", "--json"],
    )
    .await
    .json();
    assert_exact(&v, 200, 600);
    assert_eq!(u(&v, "acked"), 0);
}

#[tokio::test]
async fn mqtt311_persistent_sessions_and_several_source_addresses() {
    let tern = Tern::start();
    let v = bench(
        tern.addr,
        &[
            "p2p",
            "-c",
            "3",
            "-n",
            "100",
            "-q",
            "1",
            "-V",
            "3.1.1",
            "--persistent",
            "--source",
            "127.0.0.1,127.0.0.2",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(v["protocol"], "3.1.1");
    assert_exact(&v, 300, 300);
    assert_eq!(u(&v["connect"], "connected"), 6);
}

#[tokio::test]
async fn json_has_the_documented_fields() {
    let tern = Tern::start();
    let v = bench(
        tern.addr,
        &[
            "fanin", "-c", "2", "-n", "100", "-q", "1", "-s", "64", "--json",
        ],
    )
    .await
    .json();
    for key in [
        "qos",
        "payload_size",
        "publishers",
        "subscribers",
        "connections",
        "inflight",
        "count_per_publisher",
        "sent",
        "acked",
        "rejected",
        "unacked",
        "received",
        "expected",
        "lost",
        "duplicates",
        "out_of_order",
        "unexpected",
        "malformed",
        "errors",
    ] {
        u(&v, key);
    }
    for key in [
        "duration_s",
        "sent_per_s",
        "received_per_s",
        "rate_per_publisher",
        "loadgen_cpu_s",
        "loadgen_cpu_user_s",
        "loadgen_cpu_system_s",
    ] {
        assert!(v[key].is_f64(), "`{key}` is not a number in {v}");
    }
    for key in ["count", "min", "p50", "p90", "p99", "p999", "max"] {
        u(&v["latency_us"], key);
    }
    for key in ["attempted", "connected", "failed"] {
        u(&v["connect"], key);
    }
    for key in ["per_s", "p50_ms", "p99_ms", "max_ms"] {
        assert!(v["connect"][key].is_f64(), "connect.{key} in {v}");
    }
    assert!(v["errors_by_kind"].is_object());
    assert!(v["broker_cpu_s"].is_null() && v["broker_cpu_us_per_delivery"].is_null());
    assert!(v["passed"].is_boolean() && v["hit_time_limit"].is_boolean());
    assert_eq!(
        (v["scenario"].as_str(), v["protocol"].as_str()),
        (Some("fanin"), Some("5"))
    );
    assert_eq!(
        (
            u(&v, "payload_size"),
            u(&v, "publishers"),
            u(&v, "subscribers")
        ),
        (64, 2, 1)
    );
    assert_exact(&v, 200, 200);
    let l = &v["latency_us"];
    assert!(
        u(l, "p50") <= u(l, "p99") && u(l, "p99") <= u(l, "max"),
        "{v}"
    );
    assert!(v["duration_s"].as_f64() > Some(0.0) && v["sent_per_s"].as_f64() > Some(0.0));
}

#[tokio::test]
async fn a_dropped_subscriber_shows_up_as_loss() {
    let tern = Tern::start();
    // Subscriber 0 of 2 drops its connection after exactly 50 messages: it misses 150 of the
    // 200; subscriber 1 gets all of them.
    let args = [
        "fanout",
        "-c",
        "2",
        "-n",
        "200",
        "-q",
        "1",
        "--kill-subscriber-after",
        "50",
        "--drain",
        "3s",
        "--json",
    ];
    let run = bench(tern.addr, &args).await;
    let v = run.json();
    assert_eq!(u(&v, "expected"), 400, "{v}");
    assert_eq!(u(&v, "received"), 250, "{v}");
    assert_eq!(u(&v, "lost"), 150, "{v}");
    assert_eq!(u(&v, "duplicates"), 0, "{v}");
    assert_eq!(u(&v["errors_by_kind"], "killed_by_test_hook"), 1, "{v}");
    assert_eq!(v["passed"], Value::Bool(false));

    // The same with --fail-on-loss is a failure.
    let mut failing = args.to_vec();
    failing.push("--fail-on-loss");
    let run = bench(tern.addr, &failing).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("150 lost"), "{}", run.stderr);
    let v: Value = serde_json::from_str(run.stdout.trim()).expect("JSON even when failing");
    assert_eq!(u(&v, "lost"), 150);
}

#[tokio::test]
async fn fail_on_loss_passes_a_clean_run() {
    let tern = Tern::start();
    let run = bench(
        tern.addr,
        &["p2p", "-c", "2", "-n", "100", "-q", "2", "--fail-on-loss"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("lost             0"), "{}", run.stdout);
}

#[tokio::test]
async fn conn_counts_connections_and_holds_them() {
    let tern = Tern::start();
    let v = bench(
        tern.addr,
        &[
            "conn",
            "-c",
            "30",
            "--connect-rate",
            "300",
            "--duration",
            "300ms",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(v["scenario"], "conn");
    let c = &v["connect"];
    assert_eq!(
        (u(c, "attempted"), u(c, "connected"), u(c, "failed")),
        (30, 30, 0)
    );
    assert_eq!(u(&v, "connections"), 30);
    assert_eq!(u(&v, "errors"), 0, "{v}");
    // 30 connections at 300/s take about 0.1 s: the rate cannot exceed what was asked for
    // (29 intervals of 1/300 s between the first and the last attempt).
    let per_s = c["per_s"].as_f64().unwrap_or(0.0);
    assert!(per_s > 0.0 && per_s <= 330.0, "{v}");
    assert!(
        v["duration_s"].as_f64() >= Some(0.3),
        "held for the duration: {v}"
    );
    assert!(c["p50_ms"].as_f64() <= c["max_ms"].as_f64());
}

#[tokio::test]
async fn nothing_to_connect_to_is_a_setup_failure() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for scenario in ["conn", "fanin"] {
        let run = bench(
            addr,
            &[scenario, "-c", "2", "-n", "10", "--connect-timeout", "2s"],
        )
        .await;
        assert_eq!(run.code, 1, "{scenario}: {}", run.stderr);
        assert!(run.stderr.contains("connection_refused"), "{}", run.stderr);
        assert!(run.stdout.is_empty());
    }
}

#[tokio::test]
async fn pub_counts_sent_and_acknowledged() {
    let tern = Tern::start();
    let v = bench(
        tern.addr,
        &["pub", "-c", "3", "-n", "100", "-q", "2", "--json"],
    )
    .await
    .json();
    assert_eq!((u(&v, "sent"), u(&v, "acked")), (300, 300));
    assert_eq!(
        (u(&v, "received"), u(&v, "expected"), u(&v, "lost")),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn sub_counts_what_arrives_from_elsewhere() {
    let tern = Tern::start();
    let addr = tern.addr;
    let sub = tokio::spawn(bench(
        addr,
        &[
            "sub",
            "-c",
            "2",
            "-n",
            "5",
            "--filter",
            "ext/#",
            "--duration",
            "20s",
            "--json",
        ],
    ));
    // Publish bench-format payloads until both subscribers have their 5 and the run ends.
    let mut publisher = RawClient::connect(addr, V5, "ext-pub").await;
    let mut seq = 0u32;
    while !sub.is_finished() {
        let mut payload = [0u8; 16];
        payload[4..8].copy_from_slice(&seq.to_be_bytes());
        publisher
            .publish("ext/t", &payload, QoS::AtLeastOnce, false)
            .await;
        seq += 1;
        assert!(seq < 2000, "the sub run did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = sub.await.expect("join").json();
    assert_eq!(v["scenario"], "sub");
    assert_eq!(
        u(&v, "received"),
        10,
        "each subscriber stops at --count: {v}"
    );
    assert_eq!((u(&v, "duplicates"), u(&v, "lost")), (0, 0), "{v}");
    assert_eq!(
        u(&v["latency_us"], "count"),
        0,
        "no latency across processes"
    );
}

#[tokio::test]
async fn rate_and_time_limits_bound_publishing() {
    let tern = Tern::start();
    // 50 messages at 250/s take at least 49/250 s.
    let v = bench(
        tern.addr,
        &["fanin", "-c", "1", "-n", "50", "--rate", "250", "--json"],
    )
    .await
    .json();
    assert_exact(&v, 50, 50);
    assert!(v["duration_s"].as_f64() >= Some(0.19), "{v}");
    // A count that cannot be reached in 300 ms at 100/s stops at the time limit.
    let v = bench(
        tern.addr,
        &[
            "fanin",
            "-c",
            "1",
            "-n",
            "100000",
            "--rate",
            "100",
            "--duration",
            "300ms",
            "-q",
            "1",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(v["hit_time_limit"], Value::Bool(true), "{v}");
    let sent = u(&v, "sent");
    assert!((1..=31).contains(&sent), "{v}");
    assert_eq!((u(&v, "received"), u(&v, "lost")), (sent, 0), "{v}");
}

#[tokio::test]
async fn bad_arguments_exit_2() {
    for args in [
        &["fanin", "--size", "8"][..],
        &["fanin", "--qos", "3"],
        &["nosuchscenario"],
        &["fanin", "--duration", "10x"],
        &["p2p", "--publishers", "3", "--subscribers", "4"],
        &["fanin", "-c", "0"],
        &["wildcard", "--topic", "a/b"],
        &["fanin", "--topic", "a/+"],
    ] {
        let mut full = vec!["bench".to_owned()];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        full.extend(["--port".into(), "1".into()]);
        let run = run_tern(full).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}");
        assert!(!run.stderr.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn the_time_limit_cuts_flat_out_publishing_exactly() {
    // Queues without limits, so that whatever the publishers get in before the cut arrives.
    let tern = Tern::start_config(
        "[mqtt]\nmax_queued_messages = 0\nmax_queued_bytes = 0\n",
        "toml",
    );
    for qos in ["0", "1", "2"] {
        let v = bench(
            tern.addr,
            &[
                "p2p",
                "-c",
                "2",
                "-q",
                qos,
                "-n",
                "100000000",
                "--duration",
                "300ms",
                "--drain",
                "20s",
                "--json",
            ],
        )
        .await
        .json();
        assert_eq!(v["hit_time_limit"], Value::Bool(true), "{v}");
        let sent = u(&v, "sent");
        assert!(sent > 0, "{v}");
        assert_exact_after_cut(&v, sent);
    }
}

/// [`assert_exact`] for a run cut by its time limit.
fn assert_exact_after_cut(v: &Value, sent: u64) {
    assert_eq!(u(v, "expected"), sent, "{v}");
    assert_eq!(u(v, "received"), sent, "{v}");
    assert_eq!(
        (u(v, "lost"), u(v, "duplicates"), u(v, "errors")),
        (0, 0, 0),
        "{v}"
    );
    if u(v, "qos") > 0 {
        assert_eq!((u(v, "acked"), u(v, "unacked")), (sent, 0), "{v}");
    }
}

#[tokio::test]
async fn broker_cpu_is_sampled_over_the_measured_phase() {
    let tern = Tern::start();
    let pid = tern.pid().to_string();
    let v = bench(
        tern.addr,
        &[
            "fanin",
            "-c",
            "2",
            "-n",
            "2000",
            "--broker-pid",
            &pid,
            "--json",
        ],
    )
    .await
    .json();
    let cpu = v["broker_cpu_s"].as_f64().expect("broker_cpu_s");
    assert!((0.0..60.0).contains(&cpu), "{v}");
    assert!(v["broker_cpu_us_per_delivery"].is_f64(), "{v}");
}

// ---------------------------------------------------------------------------------------------
// TLS and authentication (`--cafile`, `-u`, `-P`, `--users`).

/// A CA, a server certificate it issued for 127.0.0.1, and a password file made by
/// `mosquitto_passwd` with `user0` and `user1` (password `pw-0`), in one temporary directory.
struct Security {
    dir: common::TempDir,
}

impl Security {
    fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = common::TempDir::new();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&key, &issuer)
            .expect("server certificate");
        std::fs::write(dir.path.join("ca.crt"), ca_cert.pem()).expect("write");
        std::fs::write(dir.path.join("server.crt"), server.pem()).expect("write");
        std::fs::write(dir.path.join("server.key"), key.serialize_pem()).expect("write");
        let passwd = dir.path.join("passwd");
        for (i, user) in ["user0", "user1"].iter().enumerate() {
            let mut cmd = Command::new("mosquitto_passwd");
            if i == 0 {
                cmd.arg("-c");
            }
            let status = cmd
                .arg("-b")
                .arg(&passwd)
                .arg(user)
                .arg("pw-0")
                .status()
                .expect("run mosquitto_passwd (scripts/install-test-deps installs it)");
            assert!(status.success(), "mosquitto_passwd {user}");
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path.join(name).to_string_lossy().into_owned()
    }

    /// A broker with only a TLS listener on 127.0.0.1 and this password file; no anonymous
    /// access.
    fn tls_broker(&self) -> Tern {
        common::start_config_only(
            &format!(
                "allow_anonymous = false\npassword_file = \"{}\"\n\
                 [[listeners]]\naddress = \"127.0.0.1:0\"\n\
                 [listeners.tls]\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
                self.path("passwd"),
                self.path("server.crt"),
                self.path("server.key")
            ),
            "toml",
        )
    }

    /// A plain TCP broker with this password file; no anonymous access.
    fn plain_broker(&self) -> Tern {
        Tern::start_config(
            &format!(
                "allow_anonymous = false\npassword_file = \"{}\"\n",
                self.path("passwd")
            ),
            "toml",
        )
    }
}

#[tokio::test]
async fn cafile_and_password_over_a_tls_listener() {
    let security = Security::new();
    let tern = security.tls_broker();
    let ca = security.path("ca.crt");
    // Pair i logs in as user<i> (two pairs: user0 and user1), over TLS 1.3, at QoS 1.
    let v = bench(
        tern.addr,
        &[
            "p2p",
            "-c",
            "2",
            "-n",
            "150",
            "-q",
            "1",
            "--cafile",
            &ca,
            "--tls-version",
            "tlsv1.3",
            "-u",
            "user%i",
            "-P",
            "pw-0",
            "-V",
            "3.1.1",
            "--json",
        ],
    )
    .await
    .json();
    assert_exact(&v, 300, 300);
    assert_eq!(v["tls"], true, "{v}");
    // No kernel receive times through TLS.
    assert_eq!(u(&v["arrival_latency_us"], "count"), 0, "{v}");
    assert_eq!(v["username"], "user%i", "{v}");
    assert_eq!(
        (u(&v["connect"], "connected"), u(&v, "errors")),
        (4, 0),
        "{v}"
    );

    // The same flags in plain MQTT against the TLS port: no connection gets a CONNACK.
    let run = bench(
        tern.addr,
        &[
            "conn",
            "-c",
            "2",
            "-u",
            "user%i",
            "-P",
            "pw-0",
            "--connect-timeout",
            "2s",
            "--duration",
            "100ms",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);

    // A CA that did not issue the server's certificate: every handshake fails.
    let other = Security::new();
    let run = bench(
        tern.addr,
        &[
            "conn",
            "-c",
            "2",
            "--cafile",
            &other.path("ca.crt"),
            "-u",
            "user%i",
            "-P",
            "pw-0",
            "--connect-timeout",
            "2s",
            "--duration",
            "100ms",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("connect_io: 2"), "{}", run.stderr);
}

/// `conn -c 3` as `user%i` with `extra` flags: (connected, failed, connack_refused).
async fn conn_as_users(tern: &Tern, password: &str, extra: &[&str]) -> (u64, u64, u64) {
    let mut args = vec![
        "conn",
        "-c",
        "3",
        "-u",
        "user%i",
        "-P",
        password,
        "--duration",
        "100ms",
        "--json",
    ];
    args.extend_from_slice(extra);
    let v = bench(tern.addr, &args).await.json();
    let c = &v["connect"];
    let refused = v["errors_by_kind"]["connack_refused"].as_u64().unwrap_or(0);
    (u(c, "connected"), u(c, "failed"), refused)
}

#[tokio::test]
async fn user_names_expand_the_client_index_against_a_password_file() {
    let security = Security::new();
    let tern = security.plain_broker();
    // Clients 0, 1, 2 are user0, user1, user2: the file has no user2.
    assert_eq!(conn_as_users(&tern, "pw-0", &[]).await, (2, 1, 1));
    // --users 2: user0, user1, user0.
    assert_eq!(
        conn_as_users(&tern, "pw-0", &["--users", "2"]).await,
        (3, 0, 0)
    );
    // A wrong password: every CONNECT refused.
    let run = bench(
        tern.addr,
        &[
            "conn",
            "-c",
            "3",
            "-u",
            "user%i",
            "--users",
            "2",
            "-P",
            "nope",
            "--duration",
            "100ms",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("connack_refused: 3"), "{}", run.stderr);
}

#[tokio::test]
async fn security_flags_that_cannot_work_exit_2() {
    for (args, message) in [
        (&["conn", "--insecure"][..], "--insecure needs TLS"),
        (
            &["conn", "--tls-version", "tlsv1.3"],
            "--tls-version needs TLS",
        ),
        (
            &["conn", "--cafile", "/nonexistent/ca.crt"],
            "/nonexistent/ca.crt",
        ),
        (
            &["conn", "-u", "bench", "--users", "2"],
            "--users needs `%i`",
        ),
        (
            &["conn", "-V", "3.1.1", "-P", "secret"],
            "needs a user name",
        ),
    ] {
        let mut full = vec!["bench".to_owned()];
        full.extend(args.iter().map(|a| (*a).to_owned()));
        full.extend(["--port".into(), "1".into()]);
        let run = run_tern(full).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
}

/// `subscribe`: every filter of every client gets exactly one SUBACK, then one UNSUBACK, and
/// the figures agree with each other.
#[tokio::test]
async fn subscribe_counts_every_suback_and_unsuback() {
    let tern = Tern::start();
    let pid = tern.pid().to_string();
    for version in ["5", "3.1.1"] {
        let v = bench(
            tern.addr,
            &[
                "subscribe",
                "-c",
                "3",
                "--filters",
                "50",
                "--inflight",
                "8",
                "-V",
                version,
                "--broker-pid",
                &pid,
                "--json",
            ],
        )
        .await
        .json();
        assert_eq!(v["scenario"], "subscribe");
        assert_eq!(v["protocol"], version);
        assert_eq!(
            (
                u(&v, "clients"),
                u(&v, "filters_per_client"),
                u(&v, "inflight")
            ),
            (3, 50, 8)
        );
        assert_eq!((u(&v, "subscriptions"), u(&v, "failures")), (150, 0), "{v}");
        assert_eq!(
            (u(&v, "unsubscribe_ops"), u(&v, "unsubscribe_failures")),
            (150, 0),
            "{v}"
        );
        assert_eq!(u(&v["suback_latency_us"], "count"), 150, "{v}");
        assert_eq!(u(&v["unsuback_latency_us"], "count"), 150, "{v}");
        let c = &v["connect"];
        assert_eq!(
            (u(c, "attempted"), u(c, "connected"), u(c, "failed")),
            (3, 3, 0)
        );
        assert_eq!(u(&v, "errors"), 0, "{v}");
        assert_eq!(v["passed"], true);
        for (rate, seconds, ops) in [
            ("subscriptions_per_s", "seconds", 150.0),
            ("unsubscribe_per_s", "unsubscribe_seconds", 150.0),
        ] {
            let (rate, seconds) = (v[rate].as_f64(), v[seconds].as_f64());
            let (Some(rate), Some(seconds)) = (rate, seconds) else {
                panic!("rates and durations are numbers: {v}");
            };
            assert!(rate > 0.0, "{v}");
            // The rate is the count over the measured time (both rounded).
            if seconds >= 0.01 {
                assert!((rate * seconds - ops).abs() / ops < 0.2, "{v}");
            }
        }
        for key in [
            "broker_cpu_s",
            "broker_cpu_us_per_subscription",
            "unsubscribe_broker_cpu_s",
            "broker_cpu_us_per_unsubscription",
        ] {
            assert!(
                v[key].is_f64() || v[key].is_u64(),
                "`{key}` with --broker-pid: {v}"
            );
        }
        let l = &v["suback_latency_us"];
        assert!(
            u(l, "p50") <= u(l, "p99") && u(l, "p99") <= u(l, "max"),
            "{v}"
        );
    }
}

/// A SUBACK failure code counts as a failure and makes the run exit with status 1: the broker
/// allows 15 subscriptions per session (`max_subscriptions`), each client asks for 20.
#[tokio::test]
async fn subscribe_counts_refused_filters_and_fails() {
    let tern = Tern::start_config("[mqtt]\nmax_subscriptions = 15\n", "toml");
    let run = bench(
        tern.addr,
        &["subscribe", "-c", "2", "--filters", "20", "--json"],
    )
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("10 of 40 subscriptions refused"),
        "{}",
        run.stderr
    );
    let v: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", run.stdout));
    assert_eq!((u(&v, "subscriptions"), u(&v, "failures")), (30, 10), "{v}");
    // Unsubscribing from a filter that was refused is no error (MQTT 5: 0x11, no
    // subscription existed); every UNSUBSCRIBE is answered.
    assert_eq!(
        (u(&v, "unsubscribe_ops"), u(&v, "unsubscribe_failures")),
        (40, 0),
        "{v}"
    );
    assert_eq!(v["passed"], false);
}

/// The `churn` run of these tests: 3 QoS 1 pairs of 100 messages at 200/s and 2 churners,
/// then `extra`, with JSON output.
fn churn<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "churn",
        "-q",
        "1",
        "-c",
        "3",
        "--rate",
        "200",
        "-n",
        "100",
        "--churners",
        "2",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// `churn`: p2p QoS 1 counts exactly while the churners subscribe and unsubscribe.
#[tokio::test]
async fn churn_loses_nothing_while_filters_change() {
    let tern = Tern::start();
    let v = bench(tern.addr, &churn(&["--inflight", "8"])).await.json();
    assert_eq!(v["scenario"], "churn");
    assert_exact(&v, 300, 300);
    assert_eq!(u(&v, "churners"), 2);
    assert!(u(&v, "churn_ops") > 0, "{v}");
    assert_eq!(u(&v, "churn_failures"), 0, "{v}");
    assert!(v["churn_ops_per_s"].as_f64() > Some(0.0), "{v}");
    assert_eq!(u(&v["latency_us"], "count"), 300, "{v}");
    // Churners connect next to the three pairs.
    assert_eq!(u(&v, "connections"), 8, "{v}");
    assert_eq!(v["passed"], true);
}

/// `--churn-rate` paces each churner: two churners at 100 requests/s for at most about 1.5 s
/// of publishing (300 messages at 200/s per pair) answer far fewer than unpaced churners
/// would, and still some.
#[tokio::test]
async fn churn_rate_paces_the_churners() {
    let tern = Tern::start();
    let v = bench(tern.addr, &churn(&["--churn-rate", "100"]))
        .await
        .json();
    assert_exact(&v, 300, 300);
    let ops = u(&v, "churn_ops");
    let seconds = v["duration_s"].as_f64().expect("duration_s");
    // Two churners at 100/s, plus one request each at the start of every second's slot.
    let bound = (2.0 * 100.0 * (seconds + 1.0)).ceil() as u64;
    assert!(
        ops > 0 && ops <= bound,
        "{ops} churn ops in {seconds} s (bound {bound}): {v}"
    );
    assert_eq!(u(&v, "churn_failures"), 0, "{v}");
}

/// The subscription scenarios choose their own topics and filters.
#[tokio::test]
async fn subscribe_and_churn_refuse_fixed_topics() {
    for (args, message) in [
        (&["subscribe", "-f", "a/+"][..], "fixed topics"),
        (&["churn", "-t", "a"][..], "fixed topics"),
    ] {
        let run = bench_on_port(1, args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
}
