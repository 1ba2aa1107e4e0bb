//! MQTT over WebSocket and WSS against the real broker, with tokio-tungstenite clients: MQTT
//! packets split across frames, fragmented, or batched in one frame (MQTT-6.0.0-2), text frames
//! (MQTT-6.0.0-1), subprotocol negotiation (MQTT-6.0.0-3, -4), wrong paths and plain HTTP,
//! frame size limits, the upgrade deadline, ping/pong and the close handshake both ways, WSS
//! (and its certificate reload), one broker behind TCP, WS and WSS listeners, and the
//! configuration keys in both formats.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{RawClient, TIMEOUT, TempDir, TempFile, Tern, connect, start_config_only, will};
use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tern::config::{ConfigError, load};
use tern::websocket::WebSocketSettings;
use tern_codec::{
    ByteString, Connect, Decoder, Packet, PacketId, ProtocolVersion, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V311;

// ---------------------------------------------------------------------------------------------
// Brokers and their listeners.

/// The addresses of a broker's listeners, from its `listening on ADDR[ (websockets)]` lines.
struct Listeners {
    tcp: Vec<SocketAddr>,
    ws: Vec<SocketAddr>,
}

/// Waits (at most [`TIMEOUT`]) until `tern` has logged `n` listeners, and sorts them.
fn listeners(tern: &Tern, n: usize) -> Listeners {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let logs = tern.logs();
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| !l.contains("admin API listening on"))
            .filter_map(|l| l.split("listening on ").nth(1))
            .collect();
        if lines.len() >= n {
            let mut found = Listeners {
                tcp: Vec::new(),
                ws: Vec::new(),
            };
            for line in lines {
                let mut words = line.split_whitespace();
                let addr: SocketAddr = words.next().unwrap().parse().unwrap();
                match words.next() {
                    None => found.tcp.push(addr),
                    Some("(websockets)") => found.ws.push(addr),
                    Some(other) => panic!("unexpected listener kind {other:?} in {line:?}"),
                }
            }
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} listeners: {logs}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most [`TIMEOUT`]) until `tern` has logged `text`.
async fn wait_log(tern: &Tern, text: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !tern.logs().contains(text) {
        assert!(Instant::now() < deadline, "no {text:?} in {}", tern.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broker with a plain TCP listener first (the harness reads its address) and one WebSocket
/// listener with `ws_keys` (TOML lines of its `[[listeners]]` table); `top` goes before the
/// listeners.
fn start_ws(top: &str, ws_keys: &str) -> (Tern, SocketAddr) {
    let config = format!(
        "allow_anonymous = true\n{top}\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"websockets\"\n{ws_keys}\n"
    );
    let tern = start_config_only(&config, "toml");
    let ws = listeners(&tern, 2).ws[0];
    (tern, ws)
}

// ---------------------------------------------------------------------------------------------
// Certificates for WSS.

/// A CA and a server certificate for localhost and 127.0.0.1, as files.
struct Pki {
    dir: TempDir,
    issuer: Issuer<'static, KeyPair>,
    ca: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "ws-test-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path.join("ca.crt");
        std::fs::write(&ca, cert.pem()).unwrap();
        Self {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// Writes a server certificate with Common Name `cn` to `server.crt` and `server.key`.
    fn server(&self, cn: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (crt, pem) = (
            self.dir.path.join("server.crt"),
            self.dir.path.join("server.key"),
        );
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem, key.serialize_pem()).unwrap();
        (crt, pem)
    }

    /// The `[listeners.tls]` table of a listener serving the server certificate.
    fn tls_table(&self) -> String {
        let (crt, key) = (
            self.dir.path.join("server.crt"),
            self.dir.path.join("server.key"),
        );
        format!(
            "[listeners.tls]\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
            crt.display(),
            key.display()
        )
    }
}

/// A TLS connection trusting only `ca`; returns the stream and the server's Common Name.
async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
) -> (tokio_rustls::client::TlsStream<TcpStream>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("TLS handshake within the timeout")
        .expect("TLS handshake");
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let cn =
        tern::tls::certificate_username(&cert, tern::tls::CertificateIdentity::CommonName).unwrap();
    (tls, cn)
}

// ---------------------------------------------------------------------------------------------
// A WebSocket MQTT client.

/// An MQTT client over a WebSocket made by tokio-tungstenite: each `send` is one binary
/// message; received binary messages are decoded as one byte stream.
struct WsMqtt<S> {
    ws: WebSocketStream<S>,
    buf: BytesMut,
    decoder: Decoder,
    version: ProtocolVersion,
    /// The close frame received, once one has been.
    closed: Option<Option<CloseFrame>>,
}

/// Opens a WebSocket to `ws://ADDR{path}` offering `protocols` (none: no header). The
/// handshake fails if the server answers with a subprotocol that was not offered.
async fn ws_open(
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    ws_upgrade(tcp, addr, path, protocols).await
}

/// The WebSocket upgrade of [`ws_open`] on a connected `tcp`.
async fn ws_upgrade(
    tcp: TcpStream,
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !protocols.is_empty() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    }
    let (ws, response) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
            .await
            .expect("upgrade within the timeout")?;
    if !protocols.is_empty() {
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "mqtt",
            "the chosen subprotocol"
        );
    }
    Ok(ws)
}

impl WsMqtt<TcpStream> {
    /// A WebSocket on `ws://ADDR/mqtt` offering `mqtt`; nothing sent yet.
    async fn open(addr: SocketAddr, version: ProtocolVersion) -> Self {
        Self::on(ws_open(addr, "/mqtt", "mqtt").await.unwrap(), version)
    }

    /// A connected client (CONNACK success) on `ws://ADDR/mqtt`.
    async fn connect(addr: SocketAddr, version: ProtocolVersion, id: &str) -> Self {
        let mut c = Self::open(addr, version).await;
        c.send(&connect(version, id, true)).await;
        c.connack_ok(id).await;
        c
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> WsMqtt<S> {
    fn on(ws: WebSocketStream<S>, version: ProtocolVersion) -> Self {
        Self {
            ws,
            buf: BytesMut::new(),
            decoder: Decoder::with_version(version, u32::MAX),
            version,
            closed: None,
        }
    }

    async fn send_message(&mut self, message: Message) {
        tokio::time::timeout(TIMEOUT, self.ws.send(message))
            .await
            .expect("send within the timeout")
            .expect("send");
    }

    fn encode(&self, packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            p.encode(self.version, &mut out).unwrap();
        }
        out.to_vec()
    }

    /// Sends `packet` as one binary message.
    async fn send(&mut self, packet: &Packet) {
        let bytes = self.encode(std::slice::from_ref(packet));
        self.send_message(Message::binary(bytes)).await;
    }

    /// The next packet; `None` once the server has closed the WebSocket.
    async fn next(&mut self, wait: Duration) -> Option<Packet> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(p);
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                    Some(Ok(Message::Close(frame))) => {
                        self.closed = Some(frame);
                        return None;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(other)) => panic!("the server sent {other:?}"),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("nothing from the server within {wait:?}"))
    }

    async fn recv(&mut self) -> Packet {
        self.next(TIMEOUT).await.expect("a packet, not the close")
    }

    async fn connack_ok(&mut self, id: &str) {
        match self.recv().await {
            Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::SUCCESS, "CONNACK for {id}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&subscribe(filter, qos)).await;
        match self.recv().await {
            Packet::SubAck(a) => {
                let granted = match qos {
                    QoS::AtMostOnce => ReasonCode::GRANTED_QOS_0,
                    QoS::AtLeastOnce => ReasonCode::GRANTED_QOS_1,
                    QoS::ExactlyOnce => ReasonCode::GRANTED_QOS_2,
                };
                assert_eq!(a.reasons, vec![granted]);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    async fn publish(&mut self, topic: &str, payload: &[u8]) {
        let id = PacketId::new(7).unwrap();
        let p = common::publish(topic, payload, QoS::AtLeastOnce, false, Some(id));
        self.send(&Packet::Publish(p)).await;
        loop {
            match self.recv().await {
                Packet::PubAck(a) => {
                    assert_eq!(a.packet_id, id);
                    return;
                }
                Packet::Publish(p) => self.ack(&p).await,
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }

    async fn ack(&mut self, p: &tern_codec::Publish) {
        if let (QoS::AtLeastOnce, Some(id)) = (p.qos, p.packet_id) {
            self.send(&Packet::PubAck(tern_codec::Ack::new(id))).await;
        }
    }

    /// The next PUBLISH as (topic, payload), acknowledged.
    async fn recv_message(&mut self) -> (String, Vec<u8>) {
        match self.recv().await {
            Packet::Publish(p) => {
                self.ack(&p).await;
                (p.topic.to_string(), p.payload.to_vec())
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Waits for the server's close frame (no packet before it) and returns its code; then the
    /// close handshake must end with the end of the stream.
    async fn expect_close(&mut self) -> CloseCode {
        if let Some(p) = self.next(TIMEOUT).await {
            panic!("expected the close frame, got {p:?}");
        }
        let frame = self
            .closed
            .clone()
            .expect("a close frame, not a dropped connection");
        self.expect_end().await;
        frame.map_or(CloseCode::Status, |f| f.code)
    }

    /// The stream ends (the server closed the TCP connection) within the timeout.
    async fn expect_end(&mut self) {
        let end = tokio::time::timeout(TIMEOUT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        assert!(end.is_ok(), "the server did not close the connection");
    }
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(3).unwrap(),
        properties: SubscribeProperties::default(),
        filters: vec![(ByteString::from(filter), SubscriptionOptions::with_qos(qos))],
    })
}

/// Sends raw HTTP and reads the answer to the end of its head (a 101 keeps the connection
/// open) or, for an error, to the end of the connection.
async fn http(addr: SocketAddr, request: &str) -> (String, TcpStream) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut byte).await.unwrap() == 0 {
                return;
            }
            got.push(byte[0]);
        }
        if !got.starts_with(b"HTTP/1.1 101") {
            tcp.read_to_end(&mut got).await.unwrap();
        }
    })
    .await
    .expect("an HTTP answer within the timeout");
    (String::from_utf8(got).unwrap(), tcp)
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A TCP subscriber of `filter` (MQTT 3.1.1, QoS 1).
async fn tcp_subscriber(tern: &Tern, id: &str, filter: &str) -> RawClient {
    let mut c = RawClient::connect(tern.addr, V311, id).await;
    assert_eq!(
        c.subscribe(filter, QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    c
}

async fn tcp_message(c: &mut RawClient) -> (String, Vec<u8>) {
    let p = c.recv_publish().await;
    c.ack(&p).await;
    (p.topic.to_string(), p.payload.to_vec())
}

fn msg(topic: &str, payload: &[u8]) -> (String, Vec<u8>) {
    (topic.to_owned(), payload.to_vec())
}

// ---------------------------------------------------------------------------------------------
// MQTT-6.0.0-2: packets and frames are independent.

#[tokio::test]
async fn mqtt5_6_0_0_2_packets_split_across_frames_and_batched_in_one() {
    let (tern, ws) = start_ws("", "");
    let mut c = WsMqtt::open(ws, V5).await;
    // CONNECT in three binary messages: its first byte, most of the rest, the last byte.
    let bytes = c.encode(&[connect(V5, "ws-split", true)]);
    let n = bytes.len();
    for part in [&bytes[..1], &bytes[1..n - 1], &bytes[n - 1..]] {
        c.send_message(Message::binary(part.to_vec())).await;
    }
    c.connack_ok("ws-split").await;
    // SUBSCRIBE and a PUBLISH to it, and the start of a second PUBLISH, in one message; the
    // rest of that PUBLISH in the next one.
    let first = common::publish(
        "ws/split",
        b"one",
        QoS::AtLeastOnce,
        false,
        PacketId::new(1),
    );
    let second = common::publish(
        "ws/split",
        b"two",
        QoS::AtLeastOnce,
        false,
        PacketId::new(2),
    );
    let mut batch = c.encode(&[subscribe("ws/#", QoS::AtLeastOnce), Packet::Publish(first)]);
    let second = c.encode(&[Packet::Publish(second)]);
    batch.extend_from_slice(&second[..4]);
    c.send_message(Message::binary(batch)).await;
    c.send_message(Message::binary(second[4..].to_vec())).await;
    let mut acks = Vec::new();
    let mut got = Vec::new();
    while acks.len() < 3 || got.len() < 2 {
        match c.recv().await {
            Packet::SubAck(a) => acks.push(format!("SUBACK {:?}", a.reasons)),
            Packet::PubAck(a) => acks.push(format!("PUBACK {}", a.packet_id.get())),
            Packet::Publish(p) => {
                c.ack(&p).await;
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        acks,
        [
            format!("SUBACK {:?}", [ReasonCode::GRANTED_QOS_1]),
            "PUBACK 1".to_owned(),
            "PUBACK 2".to_owned()
        ]
    );
    assert_eq!(got, ["one", "two"]);
    drop(tern);
}

#[tokio::test]
async fn mqtt311_6_0_0_2_fragmented_message_and_one_byte_frames() {
    let (_tern, ws) = start_ws("", "");
    let mut c = WsMqtt::open(ws, V311).await;
    // CONNECT as one message in three fragments (RFC 6455 continuation frames).
    let bytes = c.encode(&[connect(V311, "ws-frag", true)]);
    let fragments = [
        Frame::message(bytes[..3].to_vec(), OpCode::Data(Data::Binary), false),
        Frame::message(bytes[3..10].to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(bytes[10..].to_vec(), OpCode::Data(Data::Continue), true),
    ];
    for f in fragments {
        c.send_message(Message::Frame(f)).await;
    }
    c.connack_ok("ws-frag").await;
    // SUBSCRIBE one byte per frame.
    for byte in c.encode(&[subscribe("frag/t", QoS::AtMostOnce)]) {
        c.send_message(Message::binary(vec![byte])).await;
    }
    match c.recv().await {
        Packet::SubAck(a) => assert_eq!(a.reasons, vec![ReasonCode::GRANTED_QOS_0]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    c.publish("frag/t", b"whole").await;
    assert_eq!(c.recv_message().await, msg("frag/t", b"whole"));
}

// ---------------------------------------------------------------------------------------------
// MQTT-6.0.0-1: binary frames only.

#[tokio::test]
async fn mqtt5_6_0_0_1_text_frame_closes_with_1003_and_the_will_goes_out() {
    let (tern, ws) = start_ws("", "");
    let mut watcher = tcp_subscriber(&tern, "will-watcher", "ws/will").await;
    let mut c = WsMqtt::open(ws, V5).await;
    let mut packet: Connect = common::connect_packet(V5, "ws-text", true);
    packet.will = Some(will("ws/will", b"gone", QoS::AtLeastOnce, false));
    c.send(&Packet::Connect(Box::new(packet))).await;
    c.connack_ok("ws-text").await;
    c.send_message(Message::text("PINGREQ, as text")).await;
    assert_eq!(c.expect_close().await, CloseCode::Unsupported);
    // The connection ended without DISCONNECT: the Will is published.
    assert_eq!(tcp_message(&mut watcher).await, msg("ws/will", b"gone"));
}

#[tokio::test]
async fn mqtt311_6_0_0_1_text_frame_closes_the_connection() {
    let (_tern, ws) = start_ws("", "");
    let mut c = WsMqtt::open(ws, V311).await;
    // Even a well-formed CONNECT is refused in a text frame: nothing is answered.
    let bytes = c.encode(&[connect(V311, "ws-text-311", true)]);
    let text = String::from_utf8(bytes).unwrap();
    c.send_message(Message::text(text)).await;
    assert_eq!(c.expect_close().await, CloseCode::Unsupported);
}

#[tokio::test]
async fn websocket_unmasked_client_frame_closes_with_1002() {
    let (_tern, ws) = start_ws("", "");
    let (head, mut tcp) = http(ws, &upgrade_request("/mqtt", "")).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // A PINGREQ in an unmasked binary frame: RFC 6455 requires clients to mask.
    tcp.write_all(&[0x82, 0x02, 0xC0, 0x00]).await.unwrap();
    let mut close = [0u8; 4];
    tokio::time::timeout(TIMEOUT, tcp.read_exact(&mut close))
        .await
        .expect("a close frame within the timeout")
        .unwrap();
    // FIN + close, 2 bytes of payload: status 1002 (protocol error).
    assert_eq!(close, [0x88, 0x02, 0x03, 0xEA]);
}

// ---------------------------------------------------------------------------------------------
// MQTT-6.0.0-3 and -4: the subprotocol.

#[tokio::test]
async fn mqtt5_6_0_0_4_server_selects_mqtt() {
    let (_tern, ws) = start_ws("", "");
    // Offered with the older name first: `mqtt` is still the one chosen.
    let (head, _tcp) = http(
        ws,
        &upgrade_request("/mqtt", "Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n"),
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"),
        "{head}"
    );
    // RFC 6455's example key and its answer.
    assert!(
        head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    // tokio-tungstenite's client checks the answer too, and MQTT 5 works over it.
    let mut c = WsMqtt::connect(ws, V5, "ws-proto").await;
    c.subscribe("proto/t", QoS::AtLeastOnce).await;
    c.publish("proto/t", b"ok").await;
    assert_eq!(c.recv_message().await, msg("proto/t", b"ok"));
}

#[tokio::test]
async fn mqtt311_6_0_0_4_server_selects_mqtt_among_several_headers() {
    let (_tern, ws) = start_ws("", "");
    let extra = "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: mqtt\r\n";
    let (head, _tcp) = http(ws, &upgrade_request("/mqtt", extra)).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn websocket_mqttv31_offered_alone_is_echoed() {
    let (_tern, ws) = start_ws("", "");
    let extra = "Sec-WebSocket-Protocol: mqttv3.1\r\n";
    let (head, tcp) = http(ws, &upgrade_request("/mqtt", extra)).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: mqttv3.1\r\n"),
        "{head}"
    );
    // An MQTT 3.1 (MQIsdp) client is served over it.
    let ws = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
    let mut c = WsMqtt::on(ws, ProtocolVersion::V31);
    c.send(&connect(ProtocolVersion::V31, "ws-v31", true)).await;
    c.connack_ok("ws-v31").await;
}

#[tokio::test]
async fn mqtt5_6_0_0_3_missing_subprotocol_is_tolerated() {
    let (_tern, ws) = start_ws("", "");
    let (head, tcp) = http(ws, &upgrade_request("/mqtt", "")).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "no subprotocol was offered, none is answered: {head}"
    );
    let ws = WebSocketStream::from_raw_socket(tcp, Role::Client, None).await;
    let mut c = WsMqtt::on(ws, V5);
    c.send(&connect(V5, "ws-no-proto", true)).await;
    c.connack_ok("ws-no-proto").await;
}

#[tokio::test]
async fn mqtt311_6_0_0_3_foreign_subprotocols_are_refused_with_400() {
    let (tern, ws) = start_ws("", "");
    let extra = "Sec-WebSocket-Protocol: chat, superchat\r\n";
    let (answer, _) = http(ws, &upgrade_request("/mqtt", extra)).await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with(
            "\r\n\r\nnone of the offered subprotocols (chat, superchat) is MQTT's: offer `mqtt`\n"
        ),
        "{answer}"
    );
    // tokio-tungstenite's own client sees the refusal.
    let refused = ws_open(ws, "/mqtt", "chat").await.expect_err("refused");
    assert!(refused.to_string().contains("400"), "{refused}");
    wait_log(&tern, "refused with HTTP 400").await;
}

// ---------------------------------------------------------------------------------------------
// Paths and plain HTTP.

#[tokio::test]
async fn websocket_wrong_path_is_404_and_plain_http_is_426() {
    let (_tern, ws) = start_ws("", "path = \"/broker/mqtt\"");
    let (answer, _) = http(ws, &upgrade_request("/mqtt", "")).await;
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    assert!(
        answer.ends_with(
            "no MQTT endpoint at `/mqtt`: MQTT over WebSocket is served on `/broker/mqtt`\n"
        ),
        "{answer}"
    );
    // The configured path works, with a query string too.
    let c = ws_open(ws, "/broker/mqtt?client=1", "mqtt").await;
    assert!(c.is_ok(), "{c:?}");
    // A browser opening the address as a page.
    let (answer, _) = http(ws, "GET /broker/mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nUpgrade: websocket\r\n"), "{answer}");
    let post = upgrade_request("/broker/mqtt", "").replacen("GET", "POST", 1);
    let (answer, _) = http(ws, &post).await;
    assert!(
        answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{answer}"
    );
    // MQTT bytes sent to a WebSocket listener.
    let (answer, _) = http(ws, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\r\n\r\n").await;
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
}

// ---------------------------------------------------------------------------------------------
// Size limits.

#[tokio::test]
async fn websocket_frames_beyond_the_limit_close_with_1009() {
    // Frames may carry the maximum packet size plus 64 KiB.
    let (_tern, ws) = start_ws("[mqtt]\nmax_packet_size = 1024", "");
    let mut c = WsMqtt::connect(ws, V5, "ws-big").await;
    c.send_message(Message::binary(vec![0u8; 1024 + 64 * 1024 + 1]))
        .await;
    assert_eq!(c.expect_close().await, CloseCode::Size);
}

#[tokio::test]
async fn websocket_packets_beyond_max_packet_size_are_refused_as_over_tcp() {
    let (_tern, ws) = start_ws("[mqtt]\nmax_packet_size = 1024", "");
    let mut c = WsMqtt::connect(ws, V5, "ws-big-packet").await;
    let p = common::publish("big", &[b'x'; 2000], QoS::AtMostOnce, false, None);
    c.send(&Packet::Publish(p)).await;
    match c.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::PACKET_TOO_LARGE),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert_eq!(c.expect_close().await, CloseCode::Normal);
}

// ---------------------------------------------------------------------------------------------
// Deadlines.

/// Waits until the server closes `tcp` (end of stream or reset); returns how long it took.
async fn closed_after(mut tcp: TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    tokio::time::timeout(TIMEOUT, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closed the connection within the timeout");
    start.elapsed()
}

#[tokio::test]
async fn websocket_upgrade_deadline_closes_silent_and_slow_clients() {
    // connect_timeout is far longer than the test's timeout: only the upgrade deadline can
    // close these connections in time.
    let (tern, ws) = start_ws(
        "[mqtt]\nconnect_timeout = \"60s\"",
        "upgrade_timeout = \"1s\"",
    );
    let silent = TcpStream::connect(ws).await.unwrap();
    let mut slow = TcpStream::connect(ws).await.unwrap();
    slow.write_all(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let (silent, slow) = tokio::join!(closed_after(silent), closed_after(slow));
    assert!(silent >= Duration::from_millis(900), "{silent:?}");
    assert!(slow >= Duration::from_millis(900), "{slow:?}");
    wait_log(&tern, "not done within 1s; closed").await;
    // After the upgrade, connect_timeout applies as usual: not this deadline.
    let mut c = WsMqtt::open(ws, V5).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.send(&connect(V5, "ws-after-deadline", true)).await;
    c.connack_ok("ws-after-deadline").await;
}

#[tokio::test]
async fn websocket_upgrade_deadline_defaults_to_connect_timeout() {
    let (tern, ws) = start_ws("[mqtt]\nconnect_timeout = \"1s\"", "");
    let silent = TcpStream::connect(ws).await.unwrap();
    let took = closed_after(silent).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    wait_log(&tern, "not done within 1s; closed").await;
    // Upgraded but silent: closed after connect_timeout too, with a close frame.
    let mut c = WsMqtt::open(ws, V5).await;
    assert_eq!(c.expect_close().await, CloseCode::Normal);
}

// ---------------------------------------------------------------------------------------------
// Ping, pong and the close handshake.

#[tokio::test]
async fn websocket_ping_gets_pong_and_client_close_is_answered() {
    let (tern, ws) = start_ws("", "");
    let mut watcher = tcp_subscriber(&tern, "close-watcher", "close/will").await;
    let mut c = WsMqtt::open(ws, V311).await;
    let mut packet: Connect = common::connect_packet(V311, "ws-ping", true);
    packet.will = Some(will("close/will", b"closed", QoS::AtMostOnce, false));
    c.send(&Packet::Connect(Box::new(packet))).await;
    c.connack_ok("ws-ping").await;
    c.send_message(Message::Ping(b"tern?".to_vec().into()))
        .await;
    let pong = tokio::time::timeout(TIMEOUT, c.ws.next())
        .await
        .expect("pong within the timeout");
    assert_eq!(
        pong.unwrap().unwrap(),
        Message::Pong(b"tern?".to_vec().into())
    );
    // MQTT goes on between pings.
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Packet::PingResp);
    // The client closes the WebSocket (no DISCONNECT): the server answers the close frame and
    // closes the connection; for MQTT the connection was lost, so the Will goes out.
    c.ws.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    let reply = c.next(TIMEOUT).await;
    assert!(reply.is_none(), "{reply:?}");
    assert_eq!(
        c.closed.clone().flatten().map(|f| f.code),
        Some(CloseCode::Away)
    );
    c.expect_end().await;
    assert_eq!(
        tcp_message(&mut watcher).await,
        msg("close/will", b"closed")
    );
}

#[tokio::test]
async fn websocket_server_closes_with_1000_after_disconnect() {
    let (_tern, ws) = start_ws("", "");
    let mut c = WsMqtt::connect(ws, V5, "ws-bye").await;
    c.send(&Packet::Disconnect(tern_codec::Disconnect::default()))
        .await;
    assert_eq!(c.expect_close().await, CloseCode::Normal);
}

#[tokio::test]
async fn websocket_clients_hear_the_server_shutting_down() {
    let (tern, ws) = start_ws("", "");
    let mut c = WsMqtt::connect(ws, V5, "ws-shutdown").await;
    let status = Command::new("kill")
        .args(["-TERM", &tern.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match c.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    assert_eq!(c.expect_close().await, CloseCode::Normal);
}

// ---------------------------------------------------------------------------------------------
// Writes that fill the socket.

/// Publishes 18 MB over TCP in messages of 900 KB to `sub` (subscribed to `burst/t`), which
/// reads nothing until the last one is published: the broker's writes fill the socket, and a
/// message only partly written stays in the WebSocket (or TLS) layer. The last one must still
/// be flushed when the subscriber reads, though nothing is written after it.
async fn burst<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tern: &Tern,
    sub: &mut WsMqtt<S>,
) {
    let mut publisher = RawClient::connect(tern.addr, V311, "burst-pub").await;
    let count = 20u32;
    let payload = vec![b'p'; 900_000];
    for i in 0..count {
        let mut body = i.to_be_bytes().to_vec();
        body.extend_from_slice(&payload);
        let reason = publisher
            .publish("burst/t", &body, QoS::AtLeastOnce, false)
            .await;
        assert_eq!(reason, ReasonCode::SUCCESS);
    }
    for i in 0..count {
        let (topic, body) = sub.recv_message().await;
        assert_eq!(topic, "burst/t");
        assert_eq!(body.len(), 4 + payload.len());
        assert_eq!(u32::from_be_bytes(body[..4].try_into().unwrap()), i);
    }
}

#[tokio::test]
async fn websocket_burst_to_a_slow_reader_arrives_whole() {
    let (tern, ws) = start_ws("", "");
    // A small receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(ws).await.unwrap();
    let upgraded = ws_upgrade(tcp, ws, "/mqtt", "mqtt").await.unwrap();
    let mut sub = WsMqtt::on(upgraded, V311);
    sub.send(&connect(V311, "ws-slow", true)).await;
    sub.connack_ok("ws-slow").await;
    sub.subscribe("burst/t", QoS::AtMostOnce).await;
    burst(&tern, &mut sub).await;
}

#[tokio::test]
async fn wss_burst_to_a_slow_reader_arrives_whole() {
    let pki = Pki::new();
    pki.server("wss-burst");
    let (tern, _ws, wss) = start_all(&pki);
    let mut sub = wss_connect(wss, &pki.ca, "wss-slow").await;
    sub.subscribe("burst/t", QoS::AtMostOnce).await;
    burst(&tern, &mut sub).await;
}

// ---------------------------------------------------------------------------------------------
// WSS, and one broker behind every listener.

/// A broker with TCP, WS and WSS listeners (anonymous clients allowed).
fn start_all(pki: &Pki) -> (Tern, SocketAddr, SocketAddr) {
    let config = format!(
        "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"websockets\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"websockets\"\n{}",
        pki.tls_table()
    );
    let tern = start_config_only(&config, "toml");
    let found = listeners(&tern, 3);
    assert_eq!(found.tcp.len(), 1);
    (tern, found.ws[0], found.ws[1])
}

async fn wss_connect(
    addr: SocketAddr,
    ca: &Path,
    id: &str,
) -> WsMqtt<tokio_rustls::client::TlsStream<TcpStream>> {
    let (tls, _) = tls_connect(addr, ca).await;
    let mut request = format!("wss://localhost:{}/mqtt", addr.port())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tls))
        .await
        .expect("upgrade within the timeout")
        .expect("upgrade");
    let mut c = WsMqtt::on(ws, V5);
    c.send(&connect(V5, id, true)).await;
    c.connack_ok(id).await;
    c
}

#[tokio::test]
async fn all_listeners_share_one_broker() {
    let pki = Pki::new();
    pki.server("wss-server");
    let (tern, ws, wss) = start_all(&pki);
    let mut tcp = tcp_subscriber(&tern, "shared-tcp", "shared/#").await;
    let mut over_ws = WsMqtt::connect(ws, V311, "shared-ws").await;
    over_ws.subscribe("shared/#", QoS::AtLeastOnce).await;
    let mut over_wss = wss_connect(wss, &pki.ca, "shared-wss").await;
    over_wss.subscribe("shared/#", QoS::AtLeastOnce).await;

    // Published over TCP, received over WS and WSS (and TCP).
    let reason = tcp
        .publish("shared/from-tcp", b"tcp", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    assert_eq!(over_ws.recv_message().await, msg("shared/from-tcp", b"tcp"));
    assert_eq!(
        over_wss.recv_message().await,
        msg("shared/from-tcp", b"tcp")
    );
    assert_eq!(tcp_message(&mut tcp).await, msg("shared/from-tcp", b"tcp"));

    // Published over WS, received over TCP and WSS.
    over_ws.publish("shared/from-ws", b"ws").await;
    assert_eq!(tcp_message(&mut tcp).await, msg("shared/from-ws", b"ws"));
    assert_eq!(over_wss.recv_message().await, msg("shared/from-ws", b"ws"));
    assert_eq!(over_ws.recv_message().await, msg("shared/from-ws", b"ws"));

    // Published over WSS, received over TCP and WS.
    over_wss.publish("shared/from-wss", b"wss").await;
    assert_eq!(tcp_message(&mut tcp).await, msg("shared/from-wss", b"wss"));
    assert_eq!(over_ws.recv_message().await, msg("shared/from-wss", b"wss"));
    assert_eq!(
        over_wss.recv_message().await,
        msg("shared/from-wss", b"wss")
    );
}

#[tokio::test]
async fn wss_serves_the_listener_certificate_and_reloads_it_on_sighup() {
    let pki = Pki::new();
    pki.server("wss-first");
    let (tern, _ws, wss) = start_all(&pki);
    let logs = tern.logs();
    assert!(
        logs.contains(&format!("listening on {wss} (websockets)")),
        "{logs}"
    );
    assert!(logs.contains(&format!("TLS on {wss}: ")), "{logs}");
    let (_, cn) = tls_connect(wss, &pki.ca).await;
    assert_eq!(cn, "wss-first");
    pki.server("wss-second");
    tern.sighup(1);
    // (The reload is logged with the configured address, port 0 here.)
    wait_log(&tern, "now serving certificate `CN=wss-second`").await;
    let (_, cn) = tls_connect(wss, &pki.ca).await;
    assert_eq!(cn, "wss-second");
    let mut c = wss_connect(wss, &pki.ca, "wss-after-reload").await;
    c.subscribe("reload/t", QoS::AtLeastOnce).await;
    c.publish("reload/t", b"still mqtt").await;
    assert_eq!(c.recv_message().await, msg("reload/t", b"still mqtt"));
}

#[tokio::test]
async fn websocket_listener_log_lines() {
    let (tern, ws) = start_ws("", "path = \"/ws\"");
    let logs = tern.logs();
    assert!(
        logs.contains(&format!("WebSocket on {ws}: MQTT on path `/ws`")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("listening on {ws} (websockets)")),
        "{logs}"
    );
    // The TCP listener's line has nothing after the address.
    let tcp_line = format!("listening on {}", tern.addr);
    assert!(logs.lines().any(|l| l.ends_with(&tcp_line)), "{logs}");
}

// ---------------------------------------------------------------------------------------------
// Configuration.

fn load_text(text: &str, extension: &str) -> Result<tern::config::Config, ConfigError> {
    let file = TempFile::new(extension, text);
    load(&file.path)
}

/// `line: key: message` of a configuration error (the file name left out).
fn located(e: &ConfigError) -> String {
    format!(
        "{}: {}: {}",
        e.line.unwrap_or(0),
        e.key.clone().unwrap_or_default(),
        e.message
    )
}

#[test]
fn toml_websocket_listener_keys() {
    let config = load_text(
        "[[listeners]]\naddress = \"127.0.0.1:8083\"\nprotocol = \"websockets\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:8084\"\nprotocol = \"websockets\"\n\
         path = \"/broker\"\nupgrade_timeout = \"2s\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:1883\"\nprotocol = \"mqtt\"\n",
        "toml",
    )
    .unwrap();
    let ws: Vec<_> = config
        .listeners
        .iter()
        .map(|l| l.websocket.clone())
        .collect();
    assert_eq!(
        ws,
        [
            Some(WebSocketSettings::default()),
            Some(WebSocketSettings {
                path: Some("/broker".to_owned()),
                upgrade_timeout: Some(Duration::from_secs(2)),
            }),
            None
        ]
    );
    assert_eq!(WebSocketSettings::default().path.as_deref(), Some("/mqtt"));
}

#[test]
fn toml_websocket_key_errors() {
    let listener = |keys: &str| {
        let text = format!("[[listeners]]\naddress = \"127.0.0.1:8083\"\n{keys}\n");
        located(&load_text(&text, "toml").expect_err("invalid"))
    };
    assert_eq!(
        listener("protocol = \"ws\""),
        "3: listeners[0].protocol: expected \"mqtt\" or \"websockets\", got \"ws\""
    );
    assert_eq!(
        listener("path = \"/mqtt\""),
        "3: listeners[0].path: only WebSocket listeners take this key (add `protocol = \
         \"websockets\"`)"
    );
    assert_eq!(
        listener("protocol = \"mqtt\"\nupgrade_timeout = \"1s\""),
        "4: listeners[0].upgrade_timeout: only WebSocket listeners take this key (add \
         `protocol = \"websockets\"`)"
    );
    assert_eq!(
        listener("protocol = \"websockets\"\npath = \"mqtt\""),
        "4: listeners[0].path: must start with `/`, got `mqtt`"
    );
    assert_eq!(
        listener("protocol = \"websockets\"\npath = \"/a b\""),
        "4: listeners[0].path: must be visible ASCII characters without `?` or `#`, got ' ' in \
         `/a b`"
    );
    assert_eq!(
        listener("protocol = \"websockets\"\nupgrade_timeout = \"0s\""),
        "4: listeners[0].upgrade_timeout: must be longer than zero"
    );
}

#[test]
fn mosquitto_protocol_websockets() {
    let pki = Pki::new();
    let (crt, key) = pki.server("mosq-wss");
    let text = format!(
        "listener 1883\nprotocol mqtt\n\nlistener 8083\nprotocol websockets\n\n\
         listener 8084\nprotocol websockets\ncertfile {}\nkeyfile {}\n\n\
         listener 9001\nprotocol websockets\nprotocol mqtt\n\n\
         websockets_headers_size 4096\nwebsockets_log_level 255\nhttp_dir /var/www\n",
        crt.display(),
        key.display()
    );
    let config = load_text(&text, "conf").unwrap();
    let kinds: Vec<_> = config
        .listeners
        .iter()
        .map(|l| (l.bind.port(), l.websocket.clone(), l.tls.is_some()))
        .collect();
    // Mosquitto upgrades on any path: so do the listeners of a mosquitto.conf.
    let any = Some(WebSocketSettings::any_path());
    assert_eq!(
        kinds,
        [
            (1883, None, false),
            (8083, any.clone(), false),
            (8084, any, true),
            (9001, None, false)
        ]
    );
    let warnings: Vec<_> = config
        .warnings
        .iter()
        .map(|w| w.rsplit(".conf:").next().unwrap().to_owned())
        .collect();
    assert_eq!(
        warnings,
        [
            "16: `websockets_headers_size`: ignored: Tern accepts WebSocket upgrade requests of up \
             to 8 KiB",
            "17: `websockets_log_level`: ignored: Tern logs WebSocket upgrades with its other \
             connection messages",
            "18: `http_dir`: ignored: Tern does not serve files over HTTP",
        ]
    );
    // In the general section, `protocol websockets` makes the default listener (port 1883) a
    // WebSocket listener, as in Mosquitto; it is not inherited by `listener` lines.
    let config = load_text("protocol websockets\n\nlistener 9001\n", "conf").unwrap();
    let kinds: Vec<_> = config
        .listeners
        .iter()
        .map(|l| (l.bind.port(), l.websocket.is_some()))
        .collect();
    assert_eq!(kinds, [(1883, true), (9001, false)]);
    let err = load_text("listener 8083\nprotocol http\n", "conf").expect_err("invalid");
    assert_eq!(
        located(&err),
        "2: protocol: expected mqtt or websockets, got `http`"
    );
}

#[tokio::test]
async fn mosquitto_conf_websocket_listener_serves_any_path() {
    // Port 0 means a Unix socket in Mosquitto's syntax: take ports the system says are free.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    drop(tcp);
    let conf = format!(
        "allow_anonymous true\nlistener {tcp_port} 127.0.0.1\n\nlistener {port} 127.0.0.1\n\
         protocol websockets\n"
    );
    let tern = start_config_only(&conf, "conf");
    let ws = listeners(&tern, 2).ws[0];
    assert_eq!(ws.port(), port);
    assert!(
        tern.logs()
            .contains(&format!("WebSocket on {ws}: MQTT on every path")),
        "{}",
        tern.logs()
    );
    for path in ["/", "/mqtt", "/ws/anything"] {
        let ws = ws_open(ws, path, "mqtt").await.unwrap();
        let mut c = WsMqtt::on(ws, V311);
        c.send(&connect(V311, "mosq-any-path", true)).await;
        c.connack_ok(path).await;
    }
}
