//! `tern pub` and `tern sub` as a user runs them: the real binary as a subprocess, against the
//! real broker (harness `Tern`), a raw client of the harness, or a scripted fake broker in this
//! file that checks the exact packets the tools send.
//!
//! `tern sub` runs with `-d` so that a test knows from its `Subscribed (mid: ...)` line on
//! stderr that the SUBACK has arrived before anything is published; every wait is bounded.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{QUIET, RawClient, TIMEOUT, TempFile, Tern, V5, V311};
use tern_codec::{
    Ack, ByteString, ConnAck, ConnAckProperties, Connect, ConnectProperties, Decoder, Disconnect,
    DisconnectProperties, LastWill, Packet, ProtocolVersion, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubAck, SubscribeProperties, SubscriptionOptions, WillProperties,
};

/// How long a `tern pub`/`tern sub` process may run before the test fails.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(20);

// --- running the tools ---

/// What a finished process left: exit status, stdout (bytes) and stderr (text).
#[derive(Debug)]
struct Done {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Done {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr without the `-d` debug lines.
    fn errors(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed ("))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[track_caller]
    fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "exit status; stderr:\n{}", self.stderr);
        self
    }
}

/// Text collected from a pipe by a thread, with a condition to wait on.
#[derive(Default)]
struct Collected {
    data: Mutex<(Vec<u8>, bool)>,
    changed: Condvar,
}

impl Collected {
    fn reader(pipe: impl Read + Send + 'static) -> Arc<Self> {
        let collected = Arc::new(Self::default());
        let sink = collected.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = [0u8; 4096];
            loop {
                let n = pipe.read(&mut buf).unwrap_or(0);
                let mut data = sink.data.lock().unwrap();
                if n == 0 {
                    data.1 = true;
                    sink.changed.notify_all();
                    return;
                }
                data.0.extend_from_slice(&buf[..n]);
                sink.changed.notify_all();
            }
        });
        collected
    }

    /// Waits until the text contains `needle` (or the pipe closes); whether it does.
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut data = self.data.lock().unwrap();
        loop {
            if String::from_utf8_lossy(&data.0).contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if data.1 || left.is_zero() {
                return false;
            }
            data = self.changed.wait_timeout(data, left).unwrap().0;
        }
    }

    fn wait_closed(&self, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut data = self.data.lock().unwrap();
        while !data.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "output pipe still open");
            data = self.changed.wait_timeout(data, left).unwrap().0;
        }
        data.0.clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap().0).into_owned()
    }
}

/// A running `tern` client process.
struct Proc {
    child: Child,
    stdout: Arc<Collected>,
    stderr: Arc<Collected>,
}

impl Proc {
    fn spawn(args: &[&str], stdin: &[u8]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tern");
        let mut input = child.stdin.take().unwrap();
        let bytes = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
        let stdout = Collected::reader(child.stdout.take().unwrap());
        let stderr = Collected::reader(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until stderr contains `needle`; fails (with the output) if it does not come.
    #[track_caller]
    fn wait_stderr(&mut self, needle: &str) {
        if !self.stderr.wait_for(needle, PROCESS_TIMEOUT) {
            let _ = self.child.kill();
            panic!(
                "no `{needle}` on stderr; stderr:\n{}\nstdout:\n{}",
                self.stderr.text(),
                self.stdout.text()
            );
        }
    }

    /// Waits (bounded) for the process to exit.
    fn finish(mut self) -> Done {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "tern did not exit in time; stderr:\n{}\nstdout:\n{}",
                    self.stderr.text(),
                    self.stdout.text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Done {
            code: status.code(),
            stdout: self.stdout.wait_closed(TIMEOUT),
            stderr: String::from_utf8_lossy(&self.stderr.wait_closed(TIMEOUT)).into_owned(),
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tern ARGS` to completion with `stdin`.
fn run(args: &[&str], stdin: &[u8]) -> Done {
    Proc::spawn(args, stdin).finish()
}

fn with_broker<'a>(tool: &'a str, port: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec![tool, "-h", "127.0.0.1", "-p", port];
    full.extend_from_slice(args);
    full
}

/// `tern pub -h 127.0.0.1 -p PORT ARGS` to completion.
fn tern_pub(tern: &Tern, args: &[&str]) -> Done {
    tern_pub_stdin(tern, args, b"")
}

fn tern_pub_stdin(tern: &Tern, args: &[&str], stdin: &[u8]) -> Done {
    let port = tern.addr.port().to_string();
    run(&with_broker("pub", &port, args), stdin)
}

/// `tern sub -d -h 127.0.0.1 -p PORT ARGS`, once its SUBACK has arrived.
fn tern_sub(tern: &Tern, args: &[&str]) -> Proc {
    let mut sub = tern_sub_started(tern, args);
    sub.wait_stderr("Subscribed (mid: ");
    sub
}

/// `tern sub -d -h 127.0.0.1 -p PORT ARGS`, just started.
fn tern_sub_started(tern: &Tern, args: &[&str]) -> Proc {
    let port = tern.addr.port().to_string();
    let mut full = with_broker("sub", &port, &["-d"]);
    full.extend_from_slice(args);
    Proc::spawn(&full, b"")
}

fn lines(items: &[&str]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

// --- a scripted broker that shows the exact packets ---

struct FakeBroker {
    listener: TcpListener,
}

/// One connection to the fake broker.
struct FakeConn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    version: ProtocolVersion,
    peer: SocketAddr,
}

impl FakeBroker {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self { listener }
    }

    fn port(&self) -> String {
        self.listener.local_addr().unwrap().port().to_string()
    }

    /// Accepts the next connection and reads its CONNECT.
    fn accept(&self) -> (FakeConn, Connect) {
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        let (stream, peer) = loop {
            match self.listener.accept() {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "no connection to the fake broker"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        let mut conn = FakeConn {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(u32::MAX),
            version: V311,
            peer,
        };
        match conn.recv(TIMEOUT) {
            Some(Packet::Connect(c)) => {
                conn.version = c.protocol;
                (conn, *c)
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }
}

impl FakeConn {
    /// The next packet; `None` when the client closed the connection or nothing came in
    /// `wait`.
    fn recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = self.decoder.decode(&mut self.buf).expect("bad packet") {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    #[track_caller]
    fn expect(&mut self) -> Packet {
        self.recv(TIMEOUT).expect("a packet from the tool")
    }

    fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    fn connack(&mut self, reason: ReasonCode) {
        self.send(&Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties::default(),
        }));
    }
}

fn user(pairs: &[(&str, &str)]) -> Vec<(ByteString, ByteString)> {
    pairs
        .iter()
        .map(|(k, v)| (ByteString::from(*k), ByteString::from(*v)))
        .collect()
}

// --- publish and subscribe in every version and QoS ---

fn check_versions_and_qos(version: &str) {
    let tern = Tern::start();
    let topic = format!("v{version}/t");
    let sub = tern_sub(
        &tern,
        &[
            "-V",
            version,
            "-q",
            "2",
            "-t",
            &topic,
            "-C",
            "3",
            "-F",
            "%t|%p|%q|%r",
        ],
    );
    for qos in ["0", "1", "2"] {
        let message = format!("hello at qos {qos}");
        tern_pub(
            &tern,
            &["-V", version, "-q", qos, "-t", &topic, "-m", &message],
        )
        .assert_ok();
    }
    let done = sub.finish();
    done.assert_ok();
    assert_eq!(
        done.stdout(),
        lines(&[
            &format!("{topic}|hello at qos 0|0|0"),
            &format!("{topic}|hello at qos 1|1|0"),
            &format!("{topic}|hello at qos 2|2|0"),
        ])
    );
}

#[test]
fn pub_to_sub_mqtt31_at_every_qos() {
    check_versions_and_qos("31");
}

#[test]
fn pub_to_sub_mqtt311_at_every_qos() {
    check_versions_and_qos("mqttv311");
}

#[test]
fn pub_to_sub_mqtt5_at_every_qos() {
    check_versions_and_qos("5");
}

#[test]
fn sub_qos_caps_the_delivery_qos() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-q", "1", "-t", "cap/t", "-C", "1", "-F", "%q %p"]);
    tern_pub(&tern, &["-q", "2", "-t", "cap/t", "-m", "two"]).assert_ok();
    assert_eq!(sub.finish().assert_ok().stdout(), "1 two\n");
}

// --- output: plain, -v, -N, -F ---

#[test]
fn sub_prints_payloads_and_topics_with_v() {
    let tern = Tern::start();
    let plain = tern_sub(&tern, &["-t", "out/#", "-C", "3"]);
    let verbose = tern_sub(&tern, &["-t", "out/#", "-C", "3", "-v"]);
    tern_pub(&tern, &["-t", "out/a", "-m", "first"]).assert_ok();
    tern_pub(&tern, &["-t", "out/b", "-n"]).assert_ok();
    tern_pub(&tern, &["-t", "out/c", "-m", "with space"]).assert_ok();
    // As mosquitto_sub: an empty payload prints nothing without -v, `TOPIC (null)` with it.
    assert_eq!(plain.finish().assert_ok().stdout(), "first\nwith space\n");
    assert_eq!(
        verbose.finish().assert_ok().stdout(),
        "out/a first\nout/b (null)\nout/c with space\n"
    );
}

#[test]
fn sub_n_prints_no_newlines() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-t", "eol/#", "-C", "2", "-N"]);
    let verbose = tern_sub(&tern, &["-t", "eol/#", "-C", "2", "-N", "-v"]);
    tern_pub(&tern, &["-t", "eol/a", "-m", "ab"]).assert_ok();
    tern_pub(&tern, &["-t", "eol/b", "-m", "cd"]).assert_ok();
    assert_eq!(sub.finish().assert_ok().stdout(), "abcd");
    assert_eq!(verbose.finish().assert_ok().stdout(), "eol/a abeol/b cd");
}

#[test]
fn sub_format_codes() {
    let tern = Tern::start();
    let sub = tern_sub(
        &tern,
        &[
            "-q",
            "1",
            "-t",
            "fmt/#",
            "-C",
            "1",
            "-F",
            "%%|%t|%p|%q|%r|%l|%m|%x|%X|\\t|[%6t|%-6t|%04l|%.2p]",
        ],
    );
    let payload = "Hi\u{e9}";
    tern_pub(&tern, &["-q", "1", "-t", "fmt/a", "-m", payload]).assert_ok();
    assert_eq!(
        sub.finish().assert_ok().stdout(),
        "%|fmt/a|Hi\u{e9}|1|0|4|1|4869c3a9|4869C3A9|\t|[ fmt/a|fmt/a |0004|Hi]\n"
    );
}

#[test]
fn sub_format_json_and_times() {
    let tern = Tern::start();
    let sub = tern_sub(
        &tern,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "js/#",
            "-C",
            "1",
            "-F",
            "%j\\n%I\\n%U\\n@Y",
        ],
    );
    tern_pub(
        &tern,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "js/a",
            "-m",
            "say \"hi\"",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    )
    .assert_ok();
    let out = sub.finish().assert_ok().stdout();
    let [json, iso, unix, year, ""] = out.split('\n').collect::<Vec<_>>()[..] else {
        panic!("unexpected output {out:?}");
    };
    let rest = json
        .strip_prefix("{\"tst\":\"")
        .and_then(|s| s.split_once("Z+0000\","))
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no timestamp in {json}"));
    assert_eq!(
        rest,
        "\"topic\":\"js/a\",\"qos\":1,\"retain\":0,\"payloadlen\":8,\"mid\":1,\
         \"properties\":{\"user-properties\":{\"k\":\"v\"},\"content-type\":\"text/plain\"},\
         \"payload\":\"say \\\"hi\\\"\"}"
    );
    // 2024-05-01T12:34:56+0000
    assert_eq!(iso.len(), 24, "{iso}");
    assert!(
        iso.ends_with("+0000") && iso.as_bytes()[10] == b'T',
        "{iso}"
    );
    let (secs, nanos) = unix.split_once('.').unwrap();
    assert!(secs.parse::<u64>().unwrap() > 1_700_000_000, "{unix}");
    assert_eq!(nanos.len(), 9);
    assert_eq!(year, &iso[..4]);
}

// --- -C, -W, -R, --retained-only, -T, -E, several -t ---

#[test]
fn sub_c_exits_after_count_messages() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-t", "count/t", "-C", "2"]);
    tern_pub_stdin(&tern, &["-t", "count/t", "-l", "-q", "1"], b"1\n2\n3\n").assert_ok();
    let done = sub.finish();
    done.assert_ok();
    assert_eq!(done.stdout(), "1\n2\n");
    assert!(
        done.stderr.contains("sending DISCONNECT"),
        "{}",
        done.stderr
    );
}

#[test]
fn sub_w_times_out_with_status_27() {
    let tern = Tern::start();
    let started = Instant::now();
    let done = tern_sub_started(&tern, &["-t", "quiet/t", "-W", "1"]).finish();
    assert_eq!(done.code, Some(27), "{}", done.stderr);
    assert_eq!(done.errors(), "Timed out\n");
    assert!(done.stdout.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn sub_w_with_messages_arriving_in_time_exits_0() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-t", "intime/t", "-W", "15", "-C", "1"]);
    tern_pub(&tern, &["-t", "intime/t", "-m", "ok"]).assert_ok();
    assert_eq!(sub.finish().assert_ok().stdout(), "ok\n");
}

#[test]
fn sub_k_keeps_the_connection_alive_with_pings() {
    // Keep alive 1 s: without PINGREQ the broker would close the connection after 1.5 s, and
    // `tern sub` would exit 1 (connection lost) instead of 27 (-W).
    let tern = Tern::start();
    let done = tern_sub_started(&tern, &["-t", "ka/t", "-k", "1", "-W", "4"]).finish();
    assert_eq!(done.code, Some(27), "{}", done.stderr);
    assert_eq!(done.errors(), "Timed out\n");
}

#[test]
fn sub_r_skips_stale_retained_messages() {
    let tern = Tern::start();
    tern_pub(
        &tern,
        &["-t", "stale/old", "-m", "retained", "-r", "-q", "1"],
    )
    .assert_ok();
    let sub = tern_sub(&tern, &["-t", "stale/#", "-R", "-v", "-C", "1"]);
    tern_pub(&tern, &["-t", "stale/new", "-m", "live"]).assert_ok();
    let done = sub.finish();
    assert_eq!(done.assert_ok().stdout(), "stale/new live\n");
    assert!(
        done.stderr
            .contains("received PUBLISH (d0, q0, r1, m0, 'stale/old'"),
        "the retained message did arrive: {}",
        done.stderr
    );
}

#[test]
fn sub_retained_only_exits_at_the_first_live_message() {
    let tern = Tern::start();
    tern_pub(&tern, &["-t", "ro/a", "-m", "one", "-r"]).assert_ok();
    tern_pub(&tern, &["-t", "ro/b", "-m", "two", "-r"]).assert_ok();
    let sub = tern_sub(&tern, &["-t", "ro/#", "--retained-only", "-v"]);
    tern_pub(&tern, &["-t", "ro/c", "-m", "live"]).assert_ok();
    let mut out: Vec<String> = sub
        .finish()
        .assert_ok()
        .stdout()
        .lines()
        .map(str::to_owned)
        .collect();
    out.sort();
    assert_eq!(out, ["ro/a one", "ro/b two"]);
}

#[test]
fn sub_t_filters_out_and_several_topics() {
    let tern = Tern::start();
    let sub = tern_sub(
        &tern,
        &[
            "-t",
            "multi/#",
            "-t",
            "other/x",
            "-T",
            "multi/skip/#",
            "-v",
            "-C",
            "2",
        ],
    );
    tern_pub(&tern, &["-t", "multi/skip/a", "-m", "hidden"]).assert_ok();
    tern_pub(&tern, &["-t", "multi/skip", "-m", "hidden too"]).assert_ok();
    tern_pub(&tern, &["-t", "multi/keep", "-m", "shown"]).assert_ok();
    tern_pub(&tern, &["-t", "other/x", "-m", "also shown"]).assert_ok();
    assert_eq!(
        sub.finish().assert_ok().stdout(),
        "multi/keep shown\nother/x also shown\n"
    );
}

// --- pub message sources: -m, -f, -l, -s, -n, --repeat ---

#[test]
fn pub_l_sends_one_message_per_line() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-t", "lines/t", "-v", "-C", "4", "-q", "1"]);
    tern_pub_stdin(
        &tern,
        &["-t", "lines/t", "-l", "-q", "1"],
        b"one\n\nthree\r\nfour",
    )
    .assert_ok();
    // An empty line is a zero-length message; only `\n` ends a line.
    assert_eq!(
        sub.finish().assert_ok().stdout(),
        "lines/t one\nlines/t (null)\nlines/t three\r\nlines/t four\n"
    );
}

#[test]
fn pub_f_sends_a_file_byte_for_byte() {
    let tern = Tern::start();
    let file = TempFile::new("bin", "");
    let content: Vec<u8> = vec![0, 1, 2, 0xFF, b'\n', b'x'];
    std::fs::write(&file.path, &content).unwrap();
    let sub = tern_sub(&tern, &["-t", "file/t", "-C", "1", "-F", "%l %x"]);
    let path = file.path.to_string_lossy().into_owned();
    tern_pub(&tern, &["-t", "file/t", "-f", &path]).assert_ok();
    assert_eq!(sub.finish().assert_ok().stdout(), "6 000102ff0a78\n");
}

#[test]
fn pub_f_unreadable_file_fails() {
    let tern = Tern::start();
    let done = tern_pub(
        &tern,
        &["-t", "file/t", "-f", "/nonexistent/tern-test-file"],
    );
    assert_eq!(done.code, Some(1));
    assert!(
        done.stderr
            .starts_with("Error: cannot read /nonexistent/tern-test-file: "),
        "{}",
        done.stderr
    );
}

#[test]
fn pub_s_sends_all_of_stdin_as_one_message() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-t", "stdin/t", "-C", "1", "-F", "%l|%p"]);
    tern_pub_stdin(&tern, &["-t", "stdin/t", "-s"], b"line 1\nline 2\n").assert_ok();
    assert_eq!(sub.finish().assert_ok().stdout(), "14|line 1\nline 2\n\n");
}

#[test]
fn pub_repeat_sends_the_message_n_times() {
    let tern = Tern::start();
    let sub = tern_sub(&tern, &["-t", "rep/t", "-C", "3", "-F", "%m %p", "-q", "1"]);
    tern_pub(
        &tern,
        &[
            "-t",
            "rep/t",
            "-m",
            "again",
            "-q",
            "1",
            "--repeat",
            "3",
            "--repeat-delay",
            "0.05",
        ],
    )
    .assert_ok();
    assert_eq!(
        sub.finish().assert_ok().stdout(),
        "1 again\n2 again\n3 again\n"
    );
}

#[test]
fn pub_r_retains_and_n_clears() {
    let tern = Tern::start();
    for version in ["311", "5"] {
        let topic = format!("keep{version}/t");
        tern_pub(
            &tern,
            &["-V", version, "-t", &topic, "-m", "kept", "-r", "-q", "1"],
        )
        .assert_ok();
        let later = tern_sub(
            &tern,
            &["-V", version, "-t", &topic, "-C", "1", "-F", "%r %p"],
        );
        assert_eq!(later.finish().assert_ok().stdout(), "1 kept\n");
        tern_pub(&tern, &["-V", version, "-t", &topic, "-n", "-r", "-q", "1"]).assert_ok();
        let done = tern_sub_started(&tern, &["-V", version, "-t", &topic, "-W", "1"]).finish();
        assert_eq!(
            done.code,
            Some(27),
            "nothing retained any more: {}",
            done.stderr
        );
        assert!(done.stdout.is_empty());
    }
}

// --- MQTT 5 properties ---

#[tokio::test]
async fn pub_d_publish_properties_arrive_at_a_raw_subscriber() {
    let tern = Tern::start();
    let mut raw = RawClient::connect(tern.addr, V5, "props-raw").await;
    raw.subscribe("props/t", QoS::AtLeastOnce).await;
    tern_pub(
        &tern,
        &[
            "-V",
            "5",
            "-q",
            "1",
            "-t",
            "props/t",
            "-m",
            "payload",
            "-D",
            "publish",
            "user-property",
            "zeta",
            "1",
            "-D",
            "publish",
            "user-property",
            "alpha",
            "2",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "replies/here",
            "-D",
            "publish",
            "correlation-data",
            "req-42",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "message-expiry-interval",
            "120",
        ],
    )
    .assert_ok();
    let mut p = raw.recv_publish().await;
    let expiry = p.properties.message_expiry_interval.take();
    assert!(matches!(expiry, Some(119 | 120)), "{expiry:?}");
    assert_eq!(
        p.properties,
        PublishProperties {
            payload_format_indicator: Some(true),
            response_topic: Some("replies/here".into()),
            correlation_data: Some(Bytes::from_static(b"req-42")),
            user_properties: user(&[("zeta", "1"), ("alpha", "2")]),
            content_type: Some("text/plain".into()),
            ..Default::default()
        }
    );
    assert_eq!(&p.payload[..], b"payload");
}

#[test]
fn sub_f_prints_mqtt5_property_codes() {
    let tern = Tern::start();
    let sub = tern_sub(
        &tern,
        &[
            "-V",
            "5",
            "-t",
            "pf/t",
            "-C",
            "1",
            "-F",
            "%C|%D|%E|%F|%P|%R|%S|%A|%p",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
        ],
    );
    tern_pub(
        &tern,
        &[
            "-V",
            "5",
            "-t",
            "pf/t",
            "-m",
            "body",
            "-D",
            "publish",
            "content-type",
            "ct",
            "-D",
            "publish",
            "correlation-data",
            "cd",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "user-property",
            "a",
            "1",
            "-D",
            "publish",
            "user-property",
            "b",
            "2",
            "-D",
            "publish",
            "response-topic",
            "rt",
        ],
    )
    .assert_ok();
    assert_eq!(
        sub.finish().assert_ok().stdout(),
        "ct|cd||1|a:1 b:2|rt|42||body\n"
    );
}

#[test]
fn topic_aliases_both_ways() {
    // `tern pub -D publish topic-alias 1 --repeat 2` sends the topic once and then only the
    // alias; `tern sub -D connect topic-alias-maximum 5` resolves the broker's aliases.
    let tern = Tern::start();
    let sub = tern_sub(
        &tern,
        &[
            "-V",
            "5",
            "-t",
            "alias/t",
            "-C",
            "2",
            "-F",
            "%t|%A|%p",
            "-D",
            "connect",
            "topic-alias-maximum",
            "5",
        ],
    );
    tern_pub(
        &tern,
        &[
            "-V",
            "5",
            "-t",
            "alias/t",
            "-m",
            "m",
            "--repeat",
            "2",
            "-D",
            "publish",
            "topic-alias",
            "1",
        ],
    )
    .assert_ok();
    assert_eq!(
        sub.finish().assert_ok().stdout(),
        "alias/t|1|m\nalias/t|1|m\n"
    );

    let fake = FakeBroker::start();
    let tool = Proc::spawn(
        &[
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &fake.port(),
            "-V",
            "5",
            "-t",
            "a/t",
            "-m",
            "x",
            "--repeat",
            "2",
            "-D",
            "publish",
            "topic-alias",
            "3",
        ],
        b"",
    );
    let (mut conn, _) = fake.accept();
    conn.connack(ReasonCode::SUCCESS);
    for topic in ["a/t", ""] {
        match conn.expect() {
            Packet::Publish(p) => {
                assert_eq!((&p.topic[..], p.properties.topic_alias), (topic, Some(3)));
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    tool.finish().assert_ok();
}

#[test]
fn pub_sends_exactly_the_connect_publish_and_disconnect_asked_for() {
    let fake = FakeBroker::start();
    let tool = Proc::spawn(
        &[
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &fake.port(),
            "-V",
            "mqttv5",
            "-i",
            "given-id",
            "-k",
            "17",
            "-c",
            "-x",
            "30",
            "-u",
            "user",
            "-P",
            "secret",
            "--will-topic",
            "will/t",
            "--will-payload",
            "bye",
            "--will-qos",
            "2",
            "--will-retain",
            "-D",
            "connect",
            "receive-maximum",
            "9",
            "-D",
            "connect",
            "user-property",
            "cu",
            "1",
            "-D",
            "connect",
            "maximum-packet-size",
            "5000",
            "-D",
            "connect",
            "topic-alias-maximum",
            "3",
            "-D",
            "connect",
            "request-problem-information",
            "0",
            "-D",
            "connect",
            "request-response-information",
            "1",
            "-D",
            "will",
            "will-delay-interval",
            "4",
            "-D",
            "will",
            "content-type",
            "wct",
            "-D",
            "will",
            "user-property",
            "wu",
            "2",
            "-D",
            "will",
            "message-expiry-interval",
            "50",
            "-D",
            "will",
            "response-topic",
            "will/r",
            "-D",
            "will",
            "correlation-data",
            "wcd",
            "-D",
            "will",
            "payload-format-indicator",
            "1",
            "-D",
            "disconnect",
            "user-property",
            "du",
            "3",
            "-D",
            "disconnect",
            "reason-string",
            "done",
            "-D",
            "disconnect",
            "session-expiry-interval",
            "10",
            "-t",
            "p/t",
            "-m",
            "body",
            "-q",
            "1",
            "-r",
            "-D",
            "publish",
            "content-type",
            "pct",
        ],
        b"",
    );
    let (mut conn, connect) = fake.accept();
    assert_eq!(
        connect,
        Connect {
            protocol: V5,
            clean_start: false,
            keep_alive: 17,
            properties: ConnectProperties {
                session_expiry_interval: Some(30),
                receive_maximum: Some(9),
                maximum_packet_size: Some(5000),
                topic_alias_maximum: Some(3),
                request_response_information: Some(true),
                request_problem_information: Some(false),
                user_properties: user(&[("cu", "1")]),
                ..Default::default()
            },
            client_id: "given-id".into(),
            will: Some(LastWill {
                topic: "will/t".into(),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: WillProperties {
                    will_delay_interval: Some(4),
                    message: PublishProperties {
                        payload_format_indicator: Some(true),
                        message_expiry_interval: Some(50),
                        response_topic: Some("will/r".into()),
                        correlation_data: Some(Bytes::from_static(b"wcd")),
                        user_properties: user(&[("wu", "2")]),
                        content_type: Some("wct".into()),
                        ..Default::default()
                    },
                },
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"secret")),
        }
    );
    conn.connack(ReasonCode::SUCCESS);
    let publish = match conn.expect() {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    assert_eq!(
        (
            &publish.topic[..],
            &publish.payload[..],
            publish.qos,
            publish.retain,
            publish.dup
        ),
        ("p/t", &b"body"[..], QoS::AtLeastOnce, true, false)
    );
    assert_eq!(publish.properties.content_type.as_deref(), Some("pct"));
    let id = publish.packet_id.unwrap();
    conn.send(&Packet::PubAck(Ack::new(id)));
    assert_eq!(
        conn.expect(),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            properties: DisconnectProperties {
                session_expiry_interval: Some(10),
                reason_string: Some("done".into()),
                user_properties: user(&[("du", "3")]),
                server_reference: None,
            },
        })
    );
    tool.finish().assert_ok();
}

#[test]
fn mqtt3_connect_carries_no_properties_and_default_ids() {
    // -D and -x are ignored before MQTT 5 (with a warning); the default client id is
    // `tern-pub-` and 12 hexadecimal digits, -I gives the prefix and the process id.
    let fake = FakeBroker::start();
    let tool = Proc::spawn(
        &[
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &fake.port(),
            "-x",
            "30",
            "-D",
            "connect",
            "user-property",
            "a",
            "b",
            "-t",
            "t",
            "-m",
            "m",
        ],
        b"",
    );
    let (mut conn, connect) = fake.accept();
    assert_eq!(
        (connect.protocol, connect.clean_start, connect.keep_alive),
        (V311, true, 60)
    );
    assert_eq!(connect.properties, ConnectProperties::default());
    let id = connect.client_id.to_string();
    let suffix = id
        .strip_prefix("tern-pub-")
        .unwrap_or_else(|| panic!("{id}"));
    assert!(
        suffix.len() == 12 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    conn.connack(ReasonCode::SUCCESS);
    assert!(matches!(conn.expect(), Packet::Publish(_)));
    let done = tool.finish();
    done.assert_ok();
    assert_eq!(
        done.stderr,
        "Warning: -D properties are ignored with MQTT 3.1.1\n"
    );

    let tool = Proc::spawn(
        &[
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            &fake.port(),
            "-V",
            "31",
            "-I",
            "pfx-",
            "-t",
            "t",
        ],
        b"",
    );
    let pid = tool.child.id();
    let (mut conn, connect) = fake.accept();
    assert_eq!(connect.protocol, tern_codec::ProtocolVersion::V31);
    assert_eq!(connect.client_id.to_string(), format!("pfx-{pid}"));
    conn.connack(ReasonCode::SUCCESS);
    drop(conn);
    let done = tool.finish();
    assert_eq!(done.code, Some(1));

    let tool = Proc::spawn(
        &["sub", "-h", "127.0.0.1", "-p", &fake.port(), "-t", "t"],
        b"",
    );
    let (_conn, connect) = fake.accept();
    assert!(
        connect.client_id.starts_with("tern-sub-"),
        "{}",
        connect.client_id
    );
    drop(tool);
}

#[test]
fn sub_sends_exactly_the_subscribe_asked_for() {
    let fake = FakeBroker::start();
    let tool = Proc::spawn(
        &[
            "sub",
            "-h",
            "127.0.0.1",
            "-p",
            &fake.port(),
            "-V",
            "5",
            "-t",
            "a",
            "-t",
            "b/+",
            "-q",
            "1",
            "--retain-as-published",
            "-E",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
            "-D",
            "subscribe",
            "user-property",
            "su",
            "v",
        ],
        b"",
    );
    let (mut conn, _) = fake.accept();
    conn.connack(ReasonCode::SUCCESS);
    let subscribe = match conn.expect() {
        Packet::Subscribe(s) => s,
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    };
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: true,
        retain_handling: RetainHandling::SendAtSubscribe,
    };
    assert_eq!(
        subscribe.filters,
        [("a".into(), options), ("b/+".into(), options)]
    );
    assert_eq!(
        subscribe.properties,
        SubscribeProperties {
            subscription_identifier: Some(42),
            user_properties: user(&[("su", "v")]),
        }
    );
    conn.send(&Packet::SubAck(SubAck {
        packet_id: subscribe.packet_id,
        properties: Default::default(),
        reasons: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::GRANTED_QOS_1],
    }));
    assert!(matches!(conn.expect(), Packet::Disconnect(_)));
    tool.finish().assert_ok();
}

#[test]
fn pub_a_binds_the_local_address_and_m_limits_the_inflight_window() {
    let fake = FakeBroker::start();
    let tool = Proc::spawn(
        &[
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &fake.port(),
            "-A",
            "127.0.0.2",
            "-q",
            "1",
            "-M",
            "2",
            "--repeat",
            "4",
            "-t",
            "t",
            "-m",
            "m",
        ],
        b"",
    );
    let (mut conn, _) = fake.accept();
    assert_eq!(conn.peer.ip().to_string(), "127.0.0.2");
    conn.connack(ReasonCode::SUCCESS);
    let mut ids = Vec::new();
    for _ in 0..2 {
        match conn.expect() {
            Packet::Publish(p) => ids.push(p.packet_id.unwrap()),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    assert_eq!(conn.recv(QUIET), None, "a third message before any PUBACK");
    conn.send(&Packet::PubAck(Ack::new(ids[0])));
    match conn.expect() {
        Packet::Publish(p) => ids.push(p.packet_id.unwrap()),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert_eq!(
        conn.recv(QUIET),
        None,
        "a fourth message with two in flight"
    );
    for id in &ids[1..] {
        conn.send(&Packet::PubAck(Ack::new(*id)));
    }
    match conn.expect() {
        Packet::Publish(p) => conn.send(&Packet::PubAck(Ack::new(p.packet_id.unwrap()))),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
    assert!(matches!(conn.expect(), Packet::Disconnect(_)));
    tool.finish().assert_ok();
}

// --- wills, persistent sessions ---

#[test]
fn will_flags_publish_the_will_of_a_killed_sub() {
    for version in ["311", "5"] {
        let tern = Tern::start();
        let watcher = tern_sub(
            &tern,
            &[
                "-V",
                version,
                "-t",
                "status/#",
                "-C",
                "1",
                "-F",
                "%t %p %q %r",
                "-q",
                "2",
            ],
        );
        let mut dying = tern_sub(
            &tern,
            &[
                "-V",
                version,
                "-t",
                "idle/t",
                "--will-topic",
                "status/dying",
                "--will-payload",
                "offline",
                "--will-qos",
                "1",
                "--will-retain",
            ],
        );
        dying.child.kill().unwrap();
        assert_eq!(
            watcher.finish().assert_ok().stdout(),
            "status/dying offline 1 0\n"
        );
        // --will-retain: a later subscriber gets it as a retained message.
        let later = tern_sub(
            &tern,
            &["-V", version, "-t", "status/#", "-C", "1", "-F", "%t %p %r"],
        );
        assert_eq!(
            later.finish().assert_ok().stdout(),
            "status/dying offline 1\n"
        );
    }
}

#[tokio::test]
async fn sigint_and_sigterm_stop_sub_cleanly_without_its_will() {
    let tern = Tern::start();
    let mut watcher = RawClient::connect(tern.addr, V311, "will-watch").await;
    watcher.subscribe("gone/#", QoS::AtMostOnce).await;
    for signal in ["INT", "TERM"] {
        let sub = tern_sub(
            &tern,
            &["-t", "x", "--will-topic", "gone/t", "--will-payload", "w"],
        );
        sub.signal(signal);
        let done = sub.finish();
        assert_eq!(done.code, Some(0), "SIG{signal}: {}", done.stderr);
        assert!(
            done.stderr.contains("sending DISCONNECT"),
            "{}",
            done.stderr
        );
        assert_eq!(done.errors(), "");
    }
    watcher.expect_nothing().await;
}

fn check_persistent_session(version: &str) {
    let tern = Tern::start();
    let id = format!("persist-{version}");
    let keep = ["-V", version, "-c", "-i", &id, "-q", "1", "-t", "queued/t"];
    let mut args = keep.to_vec();
    args.push("-E");
    let done = tern_sub_started(&tern, &args).finish();
    assert_eq!(done.assert_ok().stdout(), "");
    tern_pub_stdin(
        &tern,
        &["-V", version, "-q", "1", "-t", "queued/t", "-l"],
        b"q1\nq2\nq3\n",
    )
    .assert_ok();
    let mut args = keep.to_vec();
    args.extend(["-C", "3", "-v"]);
    let done = tern_sub_started(&tern, &args).finish();
    assert_eq!(
        done.assert_ok().stdout(),
        "queued/t q1\nqueued/t q2\nqueued/t q3\n"
    );
    assert!(
        done.stderr
            .contains("received CONNACK (0, session present)"),
        "{}",
        done.stderr
    );
}

#[test]
fn sub_c_persistent_session_receives_queued_messages_mqtt311() {
    check_persistent_session("311");
}

#[test]
fn sub_c_persistent_session_receives_queued_messages_mqtt5() {
    check_persistent_session("5");
}

#[test]
fn sub_x_zero_ends_the_mqtt5_session_at_disconnect() {
    let tern = Tern::start();
    let keep = [
        "-V", "5", "-c", "-x", "0", "-i", "short", "-q", "1", "-t", "gone/t",
    ];
    let mut args = keep.to_vec();
    args.push("-E");
    tern_sub_started(&tern, &args).finish().assert_ok();
    tern_pub(&tern, &["-q", "1", "-t", "gone/t", "-m", "lost"]).assert_ok();
    let mut args = keep.to_vec();
    args.extend(["-W", "1"]);
    let done = tern_sub_started(&tern, &args).finish();
    assert_eq!(done.code, Some(27), "{}", done.stderr);
    assert!(done.stdout.is_empty());
    assert!(
        done.stderr.contains("received CONNACK (0)\n"),
        "{}",
        done.stderr
    );
}

#[test]
fn sub_u_unsubscribes_a_persistent_session() {
    let tern = Tern::start();
    let base = ["-c", "-i", "unsub", "-q", "1"];
    let mut first = base.to_vec();
    first.extend(["-t", "u/a", "-E"]);
    tern_sub_started(&tern, &first).finish().assert_ok();
    let mut second = base.to_vec();
    second.extend(["-t", "u/b", "-U", "u/a", "-E"]);
    let done = tern_sub_started(&tern, &second).finish();
    done.assert_ok();
    assert!(done.stderr.contains("received UNSUBACK"), "{}", done.stderr);
    tern_pub(&tern, &["-q", "1", "-t", "u/a", "-m", "not any more"]).assert_ok();
    tern_pub(&tern, &["-q", "1", "-t", "u/b", "-m", "still"]).assert_ok();
    let mut third = base.to_vec();
    third.extend(["-t", "u/b", "-C", "1", "-v"]);
    assert_eq!(
        tern_sub_started(&tern, &third)
            .finish()
            .assert_ok()
            .stdout(),
        "u/b still\n"
    );
}

// --- failures: refusal, nothing listening, lost connection, refused messages ---

#[test]
fn refused_connection_exits_with_the_connack_code_in_words() {
    let tern = Tern::start_config("allow_anonymous = false\n", "toml");
    let cases: [(&[&str], i32, &str); 5] = [
        (&["-V", "311"], 5, "Not authorized (return code 5)"),
        (&["-V", "31"], 5, "Not authorized (return code 5)"),
        (&["-V", "5"], 135, "Not authorized (0x87)"),
        (
            &["-V", "5", "-u", "u", "-P", "p"],
            134,
            "Bad User Name or Password (0x86)",
        ),
        (
            &["-V", "311", "-u", "u", "-P", "p"],
            4,
            "Bad User Name or Password (return code 4)",
        ),
    ];
    for (args, code, words) in cases {
        let mut full = args.to_vec();
        full.extend(["-t", "t", "-m", "m"]);
        let done = tern_pub(&tern, &full);
        assert_eq!(done.code, Some(code), "{args:?}: {}", done.stderr);
        assert_eq!(
            done.stderr,
            format!("Connection error: Connection refused: {words}\n")
        );
        let mut full = args.to_vec();
        full.extend(["-t", "t"]);
        let done = tern_sub_started(&tern, &full).finish();
        assert_eq!(done.code, Some(code), "{args:?}: {}", done.stderr);
        assert_eq!(
            done.errors(),
            format!("Connection error: Connection refused: {words}\n")
        );
    }
    let done = tern_pub(&tern, &["-V", "5", "-t", "t", "-m", "m", "--quiet"]);
    assert_eq!((done.code, done.stderr.as_str()), (Some(135), ""));
}

#[test]
fn refusal_codes_from_a_broker_are_named() {
    let fake = FakeBroker::start();
    for (version, code, status, words) in [
        ("5", ReasonCode::SERVER_BUSY, 137, "Server busy (0x89)"),
        ("5", ReasonCode::BANNED, 138, "Banned (0x8A)"),
        (
            "311",
            ReasonCode::SERVER_UNAVAILABLE,
            3,
            "Server unavailable (return code 3)",
        ),
    ] {
        let tool = Proc::spawn(
            &[
                "pub",
                "-h",
                "127.0.0.1",
                "-p",
                &fake.port(),
                "-V",
                version,
                "-t",
                "t",
                "-m",
                "m",
            ],
            b"",
        );
        let (mut conn, _) = fake.accept();
        conn.connack(code);
        let done = tool.finish();
        assert_eq!(done.code, Some(status));
        assert_eq!(
            done.stderr,
            format!("Connection error: Connection refused: {words}\n")
        );
    }
}

#[test]
fn nothing_listening_exits_1() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    for tool in ["pub", "sub"] {
        let mut args = with_broker(tool, &port, &["-t", "t"]);
        if tool == "pub" {
            args.extend(["-m", "m"]);
        }
        let done = run(&args, b"");
        assert_eq!(done.code, Some(1), "{}", done.stderr);
        assert_eq!(
            done.stderr,
            format!("Connection error: 127.0.0.1:{port}: Connection refused\n")
        );
    }
}

#[tokio::test]
async fn lost_connection_exits_1_with_the_reason() {
    let mut tern = Tern::start();
    // Taken over by another client with the same id: DISCONNECT 0x8E (MQTT 5).
    let sub = tern_sub(&tern, &["-V", "5", "-i", "twin", "-t", "t"]);
    let _twin = RawClient::connect(tern.addr, V5, "twin").await;
    let done = sub.finish();
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.errors(),
        "Connection lost: disconnected by the broker: Session taken over (0x8E)\n"
    );
    // The broker stops: MQTT 5 gets DISCONNECT 0x8B, MQTT 3.1.1 a closed connection.
    let v5 = tern_sub(&tern, &["-V", "5", "-t", "t"]);
    let v311 = tern_sub(&tern, &["-V", "311", "-t", "t"]);
    tern.terminate();
    let done = v5.finish();
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.errors(),
        "Connection lost: disconnected by the broker: Server shutting down (0x8B)\n"
    );
    let done = v311.finish();
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.errors(),
        "Connection lost: connection closed by the broker\n"
    );
}

#[test]
fn refused_publish_is_reported_in_words() {
    let tern = Tern::start();
    let done = tern_pub(&tern, &["-V", "5", "-q", "1", "-t", "$SYS/x", "-m", "m"]);
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.stderr,
        "Publish 1 on '$SYS/x' refused: Not authorized (0x87)\n"
    );
    // A QoS above the broker's maximum: the broker disconnects with 0x9B.
    let limited = Tern::start_config("[mqtt]\nmax_qos = 1\n", "toml");
    let done = tern_pub(&limited, &["-V", "5", "-q", "2", "-t", "t", "-m", "m"]);
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.stderr,
        "Connection lost: disconnected by the broker: QoS not supported (0x9B)\n"
    );
}

#[test]
fn refused_subscription_is_reported_in_words() {
    let tern = Tern::start_config("[mqtt]\nmax_topic_levels = 2\n", "toml");
    let done = tern_sub_started(&tern, &["-V", "5", "-t", "a/b/c"]).finish();
    assert_eq!(done.code, Some(1));
    assert_eq!(
        done.errors(),
        "Subscription to 'a/b/c' refused: Topic Filter invalid (0x8F)\n\
         All subscription requests were denied.\n"
    );
    // One refused of two: the other one works.
    let sub = tern_sub(&tern, &["-V", "311", "-t", "a/b/c", "-t", "a/b", "-C", "1"]);
    tern_pub(&tern, &["-t", "a/b", "-m", "ok"]).assert_ok();
    let done = sub.finish();
    assert_eq!(done.assert_ok().stdout(), "ok\n");
    assert_eq!(
        done.errors(),
        "Subscription to 'a/b/c' refused: Failure (0x80)\n"
    );
}

// --- usage ---

#[test]
fn bad_usage_exits_2() {
    let cases: [(&[&str], &str); 12] = [
        (&["pub", "-m", "x"], "--topic"),
        (&["pub", "-t", "t"], "--message"),
        (&["pub", "-t", "t", "-m", "x", "-n"], "cannot be used with"),
        (
            &["pub", "-t", "t", "-m", "x", "-q", "3"],
            "expected 0, 1 or 2",
        ),
        (
            &["pub", "-t", "t", "-m", "x", "-V", "4"],
            "expected 5, 311 or 31",
        ),
        (
            &["pub", "-t", "a/#", "-m", "x"],
            "invalid publish topic 'a/#'",
        ),
        (
            &["pub", "-t", "t", "-m", "x", "-c"],
            "needs a client id (-i)",
        ),
        (
            &[
                "pub", "-t", "t", "-m", "x", "-V", "5", "-D", "publish", "nope", "1",
            ],
            "invalid property name 'nope'",
        ),
        (
            &[
                "pub",
                "-t",
                "t",
                "-m",
                "x",
                "-V",
                "5",
                "-D",
                "connect",
                "topic-alias",
                "1",
            ],
            "topic-alias property not allowed for connect",
        ),
        (
            &["pub", "-t", "t", "-m", "x", "--will-qos", "1"],
            "--will-topic",
        ),
        (&["sub"], "--topic"),
        (
            &["sub", "-t", "a/#/b"],
            "invalid subscription topic 'a/#/b'",
        ),
    ];
    for (args, mentions) in cases {
        let done = run(args, b"");
        assert_eq!(done.code, Some(2), "{args:?}: {}", done.stderr);
        assert!(done.stderr.contains(mentions), "{args:?}: {}", done.stderr);
        assert!(done.stdout.is_empty());
    }
}

#[test]
fn help_is_long_only_because_h_is_the_host() {
    for tool in ["pub", "sub"] {
        let done = run(&[tool, "--help"], b"");
        done.assert_ok();
        let help = done.stdout();
        for flag in [
            "-h, --host",
            "-p, --port",
            "-t, --topic",
            "-V, --protocol-version",
            "-D, --property",
            "--help",
        ] {
            assert!(help.contains(flag), "{tool} --help lacks {flag}:\n{help}");
        }
        // `-h` takes a value: the host.
        let done = run(&[tool, "-h"], b"");
        assert_eq!(done.code, Some(2));
        assert!(
            done.stderr
                .contains("a value is required for '--host <HOST>'"),
            "{}",
            done.stderr
        );
    }
}
