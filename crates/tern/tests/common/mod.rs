//! Shared test harness: starts the real `tern` binary on an ephemeral loopback port and talks to
//! it with raw MQTT packets. Every wait has a timeout.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // test support: each test file uses a different part; failing loudly is the point

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tern_codec::{
    Ack, ByteString, Connect, ConnectProperties, Decoder, Disconnect, LastWill, Packet, PacketId,
    ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, Subscribe, SubscribeProperties,
    SubscriptionOptions, Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait when asserting that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// A running `tern` process; killed when dropped.
pub struct Tern {
    child: Child,
    /// The MQTT listener's address.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _config: Option<TempFile>,
    /// The data directory of this instance (persistence is on by default).
    pub data_dir: TempDir,
}

impl Tern {
    /// `tern serve --listen 127.0.0.1:0`.
    pub fn start() -> Self {
        Self::start_args(&[])
    }

    /// `tern serve --listen 127.0.0.1:0 ARGS...`.
    pub fn start_args(args: &[&str]) -> Self {
        let mut full = vec!["serve", "--listen", "127.0.0.1:0"];
        full.extend_from_slice(args);
        Self::spawn(&full, None)
    }

    /// `tern serve --config FILE --listen 127.0.0.1:0` with `contents` written to a file whose
    /// name ends in `extension` (`toml` or `conf`).
    pub fn start_config(contents: &str, extension: &str) -> Self {
        let file = TempFile::new(extension, contents);
        let path = file.path.to_string_lossy().into_owned();
        Self::spawn(
            &["serve", "--config", &path, "--listen", "127.0.0.1:0"],
            Some(file),
        )
    }

    fn spawn(args: &[&str], config: Option<TempFile>) -> Self {
        Self::spawn_in(args, config, TempDir::new())
    }

    /// Starts `tern` with `args` on the data directory `data_dir` (reused across restarts).
    pub fn spawn_in(args: &[&str], config: Option<TempFile>, data_dir: TempDir) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(with_admin_listen(args))
            .env("RUST_LOG", "info")
            .env("TERN_DATA_DIR", &data_dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tern");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1)
                    && let Ok(addr) = addr.trim().parse::<SocketAddr>()
                {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("tern did not start: {:?}", logs.lock().unwrap());
            }
        };
        Self {
            child,
            addr,
            logs,
            _config: config,
            data_dir,
        }
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tern did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory in the temporary directory, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("tern-test-data-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A file in the temporary directory, removed when dropped.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(extension: &str, contents: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tern-test-{}-{n}.{extension}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A client that speaks raw MQTT through the project codec, for exact bytes and reason codes.
pub struct RawClient<S = TcpStream> {
    pub stream: S,
    buf: BytesMut,
    decoder: Decoder,
    pub version: ProtocolVersion,
    /// Packets that arrived while [`RawClient::publish`] waited for its acknowledgement (a
    /// client may receive its own message before the PUBACK, which waits for the store).
    stashed: std::collections::VecDeque<Packet>,
}

impl RawClient<TcpStream> {
    /// Opens a TCP connection; no packet is sent yet.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self::on(stream, version)
    }

    /// A client on the connected `stream`; nothing sent yet.
    fn on(stream: TcpStream, version: ProtocolVersion) -> Self {
        stream.set_nodelay(true).unwrap();
        Self::new(stream, version)
    }

    /// Opens a connection, sends CONNECT and asserts a successful CONNACK.
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Self {
        let mut c = Self::open(addr, version).await;
        c.send(&connect(version, client_id, true)).await;
        let ack = c.connack().await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {client_id}");
        c
    }

    /// Like [`RawClient::connect`] with a CONNECT of the caller's making; returns the CONNACK.
    pub async fn connect_with(addr: SocketAddr, packet: Connect) -> (Self, tern_codec::ConnAck) {
        let mut c = Self::open(addr, packet.protocol).await;
        c.send(&Packet::Connect(Box::new(packet))).await;
        let ack = c.connack().await;
        (c, ack)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawClient<S> {
    /// A client on the connected `stream` (TLS, Unix socket...); nothing sent yet.
    pub fn new(stream: S, version: ProtocolVersion) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::with_version(version, u32::MAX),
            stashed: std::collections::VecDeque::new(),
            version,
        }
    }

    /// Sends CONNECT on `stream` and asserts a successful CONNACK.
    pub async fn connect_over(stream: S, version: ProtocolVersion, client_id: &str) -> Self {
        let mut c = Self::new(stream, version);
        c.send(&connect(version, client_id, true)).await;
        let ack = c.connack().await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {client_id}");
        c
    }

    /// Publishes at QoS 0.
    pub async fn publish0(&mut self, topic: &str, payload: &[u8]) {
        self.send(&Packet::Publish(publish(
            topic,
            payload,
            QoS::AtMostOnce,
            false,
            None,
        )))
        .await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("write timeout")
        .expect("write");
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encode");
        self.send_bytes(&out).await;
    }

    /// The next packet, or `None` if the server closed the connection.
    pub async fn next(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Packet>, tokio::time::error::Elapsed> {
        if let Some(p) = self.stashed.pop_front() {
            return Ok(Some(p));
        }
        tokio::time::timeout(wait, async {
            loop {
                if let Some(p) = self
                    .decoder
                    .decode(&mut self.buf)
                    .expect("server sent a bad packet")
                {
                    return Some(p);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// The next packet; fails on timeout or close.
    pub async fn recv(&mut self) -> Packet {
        match self.next(TIMEOUT).await {
            Ok(Some(p)) => p,
            Ok(None) => panic!("connection closed while waiting for a packet"),
            Err(_) => panic!("no packet within {TIMEOUT:?}"),
        }
    }

    pub async fn connack(&mut self) -> tern_codec::ConnAck {
        match self.recv().await {
            Packet::ConnAck(a) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts that no packet arrives for a short while (and the connection stays open).
    pub async fn expect_nothing(&mut self) {
        match self.next(QUIET).await {
            Err(_) => {}
            Ok(Some(p)) => panic!("expected nothing, got {p:?}"),
            Ok(None) => panic!("expected nothing, but the connection was closed"),
        }
    }

    /// Asserts that the server closes the connection without sending anything more.
    pub async fn expect_closed(&mut self) {
        match self.next(TIMEOUT).await {
            Ok(None) => {}
            Ok(Some(p)) => panic!("expected the connection to close, got {p:?}"),
            Err(_) => panic!("connection still open after {TIMEOUT:?}"),
        }
    }

    /// Asserts a DISCONNECT with `reason` followed by the close (MQTT 5).
    pub async fn expect_disconnect(&mut self, reason: ReasonCode) {
        match self.recv().await {
            Packet::Disconnect(d) => assert_eq!(d.reason, reason, "DISCONNECT reason"),
            other => panic!("expected DISCONNECT {reason}, got {other:?}"),
        }
        self.expect_closed().await;
    }

    /// Subscribes to one filter and returns the SUBACK codes.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        self.subscribe_with(filter, SubscriptionOptions::with_qos(qos), None)
            .await
    }

    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Vec<ReasonCode> {
        self.subscribe_filters(vec![(ByteString::from(filter), options)], identifier)
            .await
    }

    pub async fn unsubscribe(&mut self, filter: &str) -> Vec<ReasonCode> {
        let id = PacketId::new(0x4343).unwrap();
        self.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: id,
            user_properties: Vec::new(),
            filters: vec![ByteString::from(filter)],
        }))
        .await;
        match self.recv().await {
            Packet::UnsubAck(a) => {
                assert_eq!(a.packet_id, id);
                a.reasons
            }
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow; returns the PUBACK/PUBREC reason (success for QoS 0).
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> ReasonCode {
        let id = PacketId::new(0x0101).unwrap();
        self.send(&Packet::Publish(publish(
            topic,
            payload,
            qos,
            retain,
            Some(id),
        )))
        .await;
        match qos {
            QoS::AtMostOnce => ReasonCode::SUCCESS,
            QoS::AtLeastOnce => match self.recv_answer().await {
                Packet::PubAck(a) => {
                    assert_eq!(a.packet_id, id);
                    a.reason
                }
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let reason = match self.recv_answer().await {
                    Packet::PubRec(a) => {
                        assert_eq!(a.packet_id, id);
                        a.reason
                    }
                    other => panic!("expected PUBREC, got {other:?}"),
                };
                if !reason.is_error() {
                    self.send(&Packet::PubRel(Ack::new(id))).await;
                    match self.recv_answer().await {
                        Packet::PubComp(a) => assert_eq!(a.packet_id, id),
                        other => panic!("expected PUBCOMP, got {other:?}"),
                    }
                }
                reason
            }
        }
    }

    /// The next packet that is not a PUBLISH; PUBLISHes arriving first are kept for `recv`.
    async fn recv_answer(&mut self) -> Packet {
        let mut stash = Vec::new();
        let answer = loop {
            let p = match self.next(TIMEOUT).await {
                Ok(Some(p)) => p,
                Ok(None) => panic!("connection closed while waiting for an acknowledgement"),
                Err(_) => panic!("no acknowledgement within {TIMEOUT:?}"),
            };
            match p {
                Packet::Publish(_) => stash.push(p),
                other => break other,
            }
        };
        for p in stash.into_iter().rev() {
            self.stashed.push_front(p);
        }
        answer
    }

    /// Acknowledges a received PUBLISH according to its QoS.
    pub async fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(Ack::new(id))).await;
                match self.recv().await {
                    Packet::PubRel(a) => assert_eq!(a.packet_id, id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(&Packet::PubComp(Ack::new(id))).await;
            }
            _ => {}
        }
    }

    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        let _ = self.next(TIMEOUT).await;
    }

    /// Round trip with PINGREQ: everything the server sent before PINGRESP is returned.
    pub async fn sync(&mut self) -> Vec<Packet> {
        self.send(&Packet::PingReq).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                Packet::PingResp => return before,
                p => before.push(p),
            }
        }
    }
}

/// A CONNECT with the given id and clean start, keep-alive 60 s, nothing else.
pub fn connect(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Packet {
    Packet::Connect(Box::new(connect_packet(version, client_id, clean_start)))
}

pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 60,
        properties: ConnectProperties::default(),
        client_id: ByteString::from(client_id),
        will: None,
        username: None,
        password: None,
    }
}

/// A Will with the given topic, payload, QoS and retain.
pub fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: ByteString::from(topic),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: Default::default(),
    }
}

pub fn publish(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    id: Option<PacketId>,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: ByteString::from(topic),
        packet_id: if qos == QoS::AtMostOnce { None } else { id },
        properties: PublishProperties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// Decodes a hex string such as `"10 0c 00 04"` into bytes.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

#[allow(unused_imports)]
pub use ProtocolVersion::{V5, V31, V311};

/// The next packet exactly as the server wrote it (fixed header included), for checks on bytes
/// the codec would normalise away; `None` if the server closed the connection. Fails on timeout.
pub async fn recv_raw_frame(c: &mut RawClient) -> Option<Vec<u8>> {
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(len) = c.decoder.frame_len(&c.buf).expect("bad fixed header")
                && c.buf.len() >= len
            {
                return Some(c.buf.split_to(len).to_vec());
            }
            match c.stream.read_buf(&mut c.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("no packet in time")
}

/// A Variable Byte Integer, minimally encoded.
pub fn vbi(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A raw packet: `first` byte, minimal Remaining Length, then `body` (any version, any bytes).
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(vbi(body.len()));
    out.extend_from_slice(body);
    out
}

/// A 2-byte big-endian length followed by `bytes` (an MQTT string or binary field), whatever
/// the bytes are.
pub fn lp(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A packet identifier; panics on 0.
pub fn pid(v: u16) -> PacketId {
    PacketId::new(v).unwrap()
}

/// An MQTT 5 CONNECT with the given Clean Start and Session Expiry Interval.
pub fn conn5(id: &str, clean_start: bool, expiry: Option<u32>) -> Connect {
    let mut c = connect_packet(V5, id, clean_start);
    c.properties.session_expiry_interval = expiry;
    c
}

/// A raw MQTT 3.x CONNECT: protocol name, level, connect flags, keep alive, then `payload`
/// exactly as given (client id and the flagged fields, already length-prefixed).
pub fn v3_connect(name: &[u8], level: u8, flags: u8, keep_alive: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = lp(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// `tern serve --config FILE` with no `--listen`, so the file's own `[[listeners]]` apply
/// (declare one on `127.0.0.1:0`); the address is read from the "listening on" log line.
pub fn start_config_only(contents: &str, extension: &str) -> Tern {
    let file = TempFile::new(extension, contents);
    let path = file.path.to_string_lossy().into_owned();
    Tern::spawn(&["serve", "--config", &path], Some(file))
}

// ---- Crashes and restarts on the same data directory (crash.rs) ----

impl Tern {
    /// Kills the process with SIGKILL, as a crash: nothing is flushed or closed. Returns its
    /// data directory, for [`Tern::restart`].
    pub fn kill9(mut self) -> TempDir {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
        self.take_data_dir()
    }

    /// Stops the process with SIGTERM (graceful shutdown), asserts that it exits with success,
    /// and returns its data directory, for [`Tern::restart`].
    pub fn stop(mut self) -> TempDir {
        let status = self.terminate();
        assert!(
            status.success(),
            "tern exited with {status} after SIGTERM: {}",
            self.logs()
        );
        self.take_data_dir()
    }

    fn take_data_dir(&mut self) -> TempDir {
        std::mem::replace(
            &mut self.data_dir,
            TempDir {
                path: PathBuf::new(),
            },
        )
    }

    /// Starts `tern serve --listen ADDR ARGS...` on `data_dir` again, on the same address if it
    /// can be bound, else on a new ephemeral port: clients must read [`Tern::addr`] again.
    pub fn restart(data_dir: TempDir, addr: SocketAddr, args: &[&str]) -> Tern {
        Self::restart_env(data_dir, addr, args, &[])
    }

    /// [`Tern::restart`] with extra environment variables.
    pub fn restart_env(
        data_dir: TempDir,
        addr: SocketAddr,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Tern {
        let mut dir = data_dir;
        let listens = [addr.to_string(), SocketAddr::new(addr.ip(), 0).to_string()];
        for (i, listen) in listens.iter().enumerate() {
            let mut full = vec!["serve", "--listen", listen];
            full.extend_from_slice(args);
            match Self::try_spawn_env(&full, envs, dir) {
                Ok(tern) => return tern,
                Err((back, logs)) => {
                    let port_taken = logs.contains("cannot listen on");
                    assert!(
                        port_taken && i == 0,
                        "tern did not restart on {}: {logs}",
                        back.path.display()
                    );
                    dir = back;
                }
            }
        }
        unreachable!("the second attempt listens on port 0")
    }

    /// `tern ARGS...` on `data_dir` with extra environment variables; panics if it does not
    /// start listening.
    pub fn spawn_env(args: &[&str], envs: &[(&str, &str)], data_dir: TempDir) -> Tern {
        match Self::try_spawn_env(args, envs, data_dir) {
            Ok(tern) => tern,
            Err((_, logs)) => panic!("tern did not start: {logs}"),
        }
    }

    /// Like [`Tern::spawn_in`] with extra environment variables, but hands back the data
    /// directory and the logs if the process exits (or does not listen within 20 s) instead of
    /// panicking.
    pub fn try_spawn_env(
        args: &[&str],
        envs: &[(&str, &str)],
        data_dir: TempDir,
    ) -> Result<Tern, (TempDir, String)> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
        command
            .args(with_admin_listen(args))
            .env("RUST_LOG", "info")
            .env("TERN_DATA_DIR", &data_dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start tern");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1)
                    && let Ok(addr) = addr.trim().parse::<SocketAddr>()
                {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ok(Self {
                child,
                addr,
                logs,
                _config: None,
                data_dir,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let logs = logs.lock().unwrap().join("\n");
                Err((data_dir, logs))
            }
        }
    }
}

/// Runs `tern serve --listen 127.0.0.1:0` with `TERN_DATA_DIR=data_dir` and expects it to
/// exit without listening (within 20 s); returns its exit status and everything it wrote to
/// stderr.
pub fn serve_expect_exit(data_dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    tern_expect_exit(&["serve", "--listen", "127.0.0.1:0"], data_dir)
}

// ---- Several listeners, other source addresses (quotas.rs) ----

impl RawClient<TcpStream> {
    /// Opens a TCP connection from the local address `source` (on Linux any `127.x.y.z` is a
    /// loopback address), so that the server sees another client address; no packet is sent.
    pub async fn open_from(
        addr: SocketAddr,
        source: std::net::IpAddr,
        version: ProtocolVersion,
    ) -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        Self::on(stream, version)
    }
}

impl Tern {
    /// The addresses of the first `n` "listening on" log lines, in order; waits (at most
    /// [`TIMEOUT`]) until there are that many.
    pub fn listening_addrs(&self, n: usize) -> Vec<SocketAddr> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let addrs: Vec<SocketAddr> = self
                .logs()
                .lines()
                .filter_map(|l| l.split("listening on ").nth(1))
                .filter_map(|a| a.trim().parse().ok())
                .collect();
            if addrs.len() >= n {
                return addrs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {n} listeners: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---- Commands with a deadline, refused starts, reloads (security tests) ----

/// Runs `command` to its end with `input` on its standard input (closed when `None`), standard
/// output and error captured; fails if it runs longer than `limit`.
pub fn run_bounded(
    command: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> std::process::Output {
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    if let Some(input) = input {
        let mut pipe = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut pipe, input).expect("write stdin");
    }
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap_or_default();
            panic!(
                "{command:?} still running after {limit:?}: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Runs `tern ARGS...` with `TERN_DATA_DIR=data_dir` and expects it to exit without listening
/// (within 20 s); returns its exit status and everything it wrote to stderr.
pub fn tern_expect_exit(
    args: &[&str],
    data_dir: &std::path::Path,
) -> (std::process::ExitStatus, String) {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(args)
            .env("RUST_LOG", "info")
            .env("TERN_DATA_DIR", data_dir),
        None,
        Duration::from_secs(20),
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !text.contains("listening on"),
        "tern listened before exiting: {text}"
    );
    (out.status, text)
}

/// `tern serve --config FILE ARGS...` with `contents` in a file whose name ends in `extension`,
/// on a fresh data directory, must refuse to start: it exits with failure (within 20 s) without
/// listening. Returns what it wrote to stderr, and the file (still there, for its path).
pub fn serve_config_fails(contents: &str, extension: &str, args: &[&str]) -> (String, TempFile) {
    let file = TempFile::new(extension, contents);
    let data = TempDir::new();
    let mut full = vec![
        "serve",
        "--config",
        file.path.to_str().expect("UTF-8 temp path"),
    ];
    full.extend_from_slice(args);
    let (status, stderr) = tern_expect_exit(&full, &data.path);
    assert!(
        !status.success(),
        "tern exited with success with {contents}: {stderr}"
    );
    (stderr, file)
}

impl Tern {
    /// Sends SIGHUP and waits (at most [`TIMEOUT`]) until the broker has logged the outcome of
    /// security reload number `n`, counted from its start: `reload: ACL ... in force` or
    /// `reload failed, keeping the previous ACL and passwords`. (The certificates of TLS
    /// listeners are reloaded right after, and logged on their own.)
    pub fn sighup(&self, n: usize) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success(), "kill -HUP {}", self.pid());
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let logs = self.logs();
            let done = logs.matches("reload: ACL").count()
                + logs
                    .matches("reload failed, keeping the previous ACL")
                    .count();
            if done >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reload {n} not logged: {logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ---- Password files made by Debian's `mosquitto_passwd` ----

/// Runs `mosquitto_passwd ARGS` (at most 30 s) and asserts that it succeeds.
pub fn mosquitto_passwd(args: &[&str]) {
    let out = run_bounded(
        Command::new("mosquitto_passwd").args(args),
        None,
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "mosquitto_passwd {args:?} (scripts/install-test-deps installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the password file `path` with `mosquitto_passwd -b`, one call per `(user, password)`
/// (the first with `-c`, which creates the file), each with `flags` (such as `-H sha512`) first.
pub fn mosquitto_password_file(path: &std::path::Path, users: &[(&str, &str)], flags: &[&str]) {
    let path = path.to_str().expect("UTF-8 temp path");
    for (i, (user, password)) in users.iter().enumerate() {
        let mut args = flags.to_vec();
        if i == 0 {
            args.push("-c");
        }
        args.extend(["-b", path, user, password]);
        mosquitto_passwd(&args);
    }
}

// ---- Logins ----

/// A CONNECT (clean start) with an optional user name and password.
pub fn login(
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Connect {
    let mut c = connect_packet(version, client_id, true);
    c.username = user.map(ByteString::from);
    c.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    c
}

/// Connects with `connect` and returns the CONNACK's reason code; when it is a refusal, also
/// asserts that the server then closes the connection.
pub async fn connack(tern: &Tern, connect: Connect) -> ReasonCode {
    let (mut c, ack) = RawClient::connect_with(tern.addr, connect).await;
    if ack.reason != ReasonCode::SUCCESS {
        c.expect_closed().await;
    }
    ack.reason
}

/// Connects with `connect` and asserts a successful CONNACK.
pub async fn connected(tern: &Tern, connect: Connect) -> RawClient {
    let id = connect.client_id.to_string();
    let (c, ack) = RawClient::connect_with(tern.addr, connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    c
}

/// Sends `connect` (MQTT 3.x) on a new connection and returns the CONNACK exactly as the server
/// wrote it; asserts that the server then closes the connection (a refusal).
pub async fn refused_raw_connack(tern: &Tern, connect: Connect) -> Vec<u8> {
    let mut c = RawClient::open(tern.addr, connect.protocol).await;
    c.send(&Packet::Connect(Box::new(connect))).await;
    let raw = recv_raw_frame(&mut c).await.expect("CONNACK");
    c.expect_closed().await;
    raw
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawClient<S> {
    /// One SUBSCRIBE with every filter of `filters` at `qos`; returns the SUBACK codes.
    pub async fn subscribe_many(&mut self, filters: &[&str], qos: QoS) -> Vec<ReasonCode> {
        let filters = filters
            .iter()
            .map(|f| (ByteString::from(*f), SubscriptionOptions::with_qos(qos)))
            .collect();
        self.subscribe_filters(filters, None).await
    }

    /// One SUBSCRIBE with `filters` and the Subscription Identifier `identifier`; returns the
    /// SUBACK codes (after checking its packet identifier).
    pub async fn subscribe_filters(
        &mut self,
        filters: Vec<(ByteString, SubscriptionOptions)>,
        identifier: Option<u32>,
    ) -> Vec<ReasonCode> {
        let id = PacketId::new(0x4242).unwrap();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: id,
            properties: SubscribeProperties {
                subscription_identifier: identifier,
                ..Default::default()
            },
            filters,
        }))
        .await;
        match self.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(a.packet_id, id);
                a.reasons
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends a normal DISCONNECT and waits (at most [`TIMEOUT`]) until the server has closed the
    /// connection, so that the session is detached when this returns; packets still in flight
    /// are discarded.
    pub async fn close(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        loop {
            match self.next(TIMEOUT).await {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(_) => panic!("server did not close after DISCONNECT"),
            }
        }
    }

    /// Sends `packets` in one write, so that they reach the server together.
    pub async fn send_all(&mut self, packets: impl IntoIterator<Item = Packet>) {
        let mut out = BytesMut::new();
        for packet in packets {
            packet.encode(self.version, &mut out).expect("encode");
        }
        self.send_bytes(&out).await;
    }
}

/// Receives PUBLISHes (acknowledging each) up to and including the first one with `payload`;
/// returns their (topic, payload) in order. `what` names the wait in failure messages.
pub async fn until_payload(c: &mut RawClient, payload: &str, what: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let p = match c.next(TIMEOUT).await {
            Ok(Some(Packet::Publish(p))) => p,
            Ok(Some(other)) => panic!("{what}: expected PUBLISH, got {other:?}"),
            Ok(None) => {
                panic!("{what}: connection closed while waiting for {payload:?}; got {got:?}")
            }
            Err(_) => panic!("{what}: {payload:?} not received; got {got:?}"),
        };
        c.ack(&p).await;
        let item = (
            p.topic.to_string(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        );
        let done = item.1 == payload;
        got.push(item);
        if done {
            return got;
        }
    }
}

/// A (topic, payload) pair, as [`until_payload`] returns them.
pub fn pair(topic: &str, payload: &str) -> (String, String) {
    (topic.to_owned(), payload.to_owned())
}

// ---- MQTT over any byte stream: TLS, WebSocket, Unix sockets (proxy_protocol.rs,
// unix_socket.rs) ----

/// A raw client over any byte stream (a TLS stream, a Unix socket...): [`RawClient`] itself.
pub type StreamClient<S> = RawClient<S>;

impl Tern {
    /// Waits (at most [`TIMEOUT`]) until the process has logged a line containing `text`.
    pub async fn wait_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !self.logs().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in the logs: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- The admin REST API (admin_api.rs) ----

/// `args` with `--admin-listen 127.0.0.1:0` added to a `serve` command that does not choose
/// its admin listener itself, so that parallel tests never compete for the default port.
pub fn with_admin_listen<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut full = args.to_vec();
    if args.first() == Some(&"serve") && !args.iter().any(|a| a.starts_with("--admin-listen")) {
        full.extend(["--admin-listen", "127.0.0.1:0"]);
    }
    full
}

/// An HTTP response: status, headers (names in lower case), body.
pub type HttpResponse = (u16, Vec<(String, String)>, String);

/// The value of `Authorization: Basic` for `key:secret`.
pub fn basic_auth(key: &str, secret: &str) -> String {
    use base64ct::Encoding;
    format!(
        "Basic {}",
        base64ct::Base64::encode_string(format!("{key}:{secret}").as_bytes())
    )
}

/// The value of header `name` (lower case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Tern {
    /// The admin API's address, from the `admin API listening on http://ADDR` line (waits at
    /// most [`TIMEOUT`] for it).
    pub fn admin_addr(&self) -> SocketAddr {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let found = self.logs().lines().find_map(|l| {
                l.split("admin API listening on http://")
                    .nth(1)
                    .and_then(|a| a.trim().parse().ok())
            });
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no admin API listening: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One request to the admin API: `auth` is the `Authorization` header's value (see
    /// [`basic_auth`]), `body` a JSON body.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> HttpResponse {
        http_request(self.admin_addr(), method, path, auth, body).await
    }
}

/// One HTTP/1.1 request to `addr` (`Connection: close`); the whole response.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body.as_bytes());
    }
    http_raw(addr, &bytes).await
}

/// Sends `request` as is to `addr` and reads the response until the server closes the
/// connection.
pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timeout")
        .expect("connect to the admin API");
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        // The server may answer (413) and close before it has read everything.
        let _ = stream.write_all(request).await;
        let _ = stream.read_to_end(&mut response).await;
    })
    .await
    .expect("admin API response timeout");
    parse_http_response(&response)
}

/// Parses a whole HTTP/1.1 response (a chunked body is decoded).
pub fn parse_http_response(response: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete HTTP response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if header(&headers, "transfer-encoding") == Some("chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    (status, headers, body)
}

/// A loopback port free right now, for configurations that name a port (a mosquitto.conf has
/// no port 0); the kernel gives it to nobody else until it is reused.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A CA and a server certificate for `localhost` it signed, as PEM files in `dir`:
/// (CA, certificate, key).
pub fn server_certificates(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tern-test-ca");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("parameters");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let paths = (
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write certificate");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}
