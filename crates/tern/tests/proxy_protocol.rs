//! The PROXY protocol (v1 and v2) against the real broker, with raw test clients that send the
//! header, then MQTT (or a TLS handshake, or a WebSocket upgrade): the carried address (IPv4,
//! IPv6; `LOCAL` and `UNKNOWN` keep the socket's) is the one in the logs, the one limits per
//! address count, and the HTTP hook's `peerhost`; bad headers (garbage, truncated, oversized,
//! a version the listener does not take, none at all) close the connection without an answer
//! and leave other clients alone; `require_tls` and the SSL TLV; both configuration formats and
//! their errors.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use common::{
    StreamClient, TIMEOUT, TempDir, TempFile, Tern, V5, V311, connect, connect_packet,
    serve_config_fails, start_config_only,
};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tern_codec::{ByteString, Decoder, Packet, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

// ---------------------------------------------------------------------------------------------
// Headers

/// A version 1 header: `PROXY {rest}\r\n`.
fn v1(rest: &str) -> Vec<u8> {
    format!("PROXY {rest}\r\n").into_bytes()
}

/// A version 2 header with `command` (0 LOCAL, 1 PROXY), `family` and the block after it.
fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    h.extend_from_slice(block);
    h
}

/// A version 2 PROXY header for TCP from `source` (to a made-up destination of the same
/// family), followed by `tlvs`.
fn v2_tcp(source: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (family, mut block) = match source {
        SocketAddr::V4(s) => {
            let mut b = s.ip().octets().to_vec();
            b.extend_from_slice(&Ipv4Addr::new(10, 0, 0, 1).octets());
            (0x11, b)
        }
        SocketAddr::V6(s) => {
            let mut b = s.ip().octets().to_vec();
            b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
            (0x21, b)
        }
    };
    block.extend_from_slice(&source.port().to_be_bytes());
    block.extend_from_slice(&1883u16.to_be_bytes());
    block.extend_from_slice(tlvs);
    v2(0x1, family, &block)
}

/// An SSL TLV saying the client connected over TLS (`client` 0x01, verified), with a version
/// sub-TLV.
fn ssl_tlv() -> Vec<u8> {
    let mut value = vec![0x01, 0, 0, 0, 0, 0x21, 0x00, 0x07];
    value.extend_from_slice(b"TLSv1.3");
    let mut tlv = vec![0x20];
    tlv.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
    tlv.extend_from_slice(&value);
    tlv
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A TCP connection to `tern`'s (first) listener that has sent `header`; nothing else yet.
async fn open_with(tern: &Tern, header: &[u8]) -> StreamClient<TcpStream> {
    open_at(tern.addr, header).await
}

async fn open_at(at: SocketAddr, header: &[u8]) -> StreamClient<TcpStream> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(at))
        .await
        .expect("connect timeout")
        .expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut c = StreamClient::new(stream, V5);
    c.send_bytes(header).await;
    c
}

/// `header`, then CONNECT as `id`, then a successful CONNACK.
async fn connected_with(tern: &Tern, header: &[u8], id: &str) -> StreamClient<TcpStream> {
    let mut c = open_with(tern, header).await;
    c.send(&connect(V5, id, true)).await;
    let ack = c.connack().await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "CONNACK for {id}");
    c
}

/// A broker whose first listener (the harness's) is on 127.0.0.1 with `keys` (TOML lines of its
/// `[[listeners]]` table); `top` comes before the listeners. CONNECT and headers get 1 s.
fn start(top: &str, keys: &str) -> Tern {
    let config = format!(
        "allow_anonymous = true\n{top}\n\n[mqtt]\nconnect_timeout = \"1s\"\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n{keys}\n"
    );
    start_config_only(&config, "toml")
}

// ---------------------------------------------------------------------------------------------
// The carried address

#[tokio::test]
async fn v1_and_v2_headers_carry_the_client_address_into_the_logs() {
    let tern = start("", "proxy_protocol = true");
    tern.wait_log(&format!(
        "PROXY protocol on {}: every connection starts with a v1 and v2 header",
        tern.addr
    ))
    .await;
    let cases = [
        (
            "v1-tcp4",
            v1("TCP4 203.0.113.7 10.0.0.1 41000 1883"),
            "203.0.113.7:41000",
        ),
        (
            "v1-tcp6",
            v1("TCP6 2001:db8::7 2001:db8::1 41001 1883"),
            "[2001:db8::7]:41001",
        ),
        (
            "v2-tcp4",
            v2_tcp(addr("198.51.100.9:5000"), &[]),
            "198.51.100.9:5000",
        ),
        (
            "v2-tcp6",
            // With TLVs the broker skips: an authority and a NOOP.
            v2_tcp(
                addr("[2001:db8:1::9]:6000"),
                &[0x02, 0x00, 0x04, b'h', b'o', b's', b't', 0x04, 0x00, 0x00],
            ),
            "[2001:db8:1::9]:6000",
        ),
    ];
    let mut clients = Vec::new();
    for (id, header, from) in cases {
        let mut c = connected_with(&tern, &header, id).await;
        assert!(c.sync().await.is_empty());
        tern.wait_log(&format!("client {id} connected from {from} (MQTT 5.0)"))
            .await;
        clients.push(c);
    }
    // LOCAL (a proxy's health check) and UNKNOWN carry no address: the socket's stands.
    for (id, header) in [
        ("v2-local", v2(0x0, 0x00, &[])),
        ("v1-unknown", v1("UNKNOWN")),
    ] {
        let c = connected_with(&tern, &header, id).await;
        let own = c.stream.local_addr().unwrap();
        tern.wait_log(&format!("client {id} connected from {own} (MQTT 5.0)"))
            .await;
        clients.push(c);
    }
    // MQTT 3.1.1 behind a header too.
    let mut c = StreamClient::new(TcpStream::connect(tern.addr).await.unwrap(), V311);
    c.send_bytes(&v1("TCP4 192.0.2.1 10.0.0.1 1 1883")).await;
    c.send(&connect(V311, "v311", true)).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    tern.wait_log("client v311 connected from 192.0.2.1:1 (MQTT 3.1.1)")
        .await;
}

#[tokio::test]
async fn limits_per_address_count_the_carried_address() {
    let tern = start(
        "[limits]\nmax_connections_per_ip = 1",
        "proxy_protocol = true",
    );
    let header = |ip: &str| v1(&format!("TCP4 {ip} 10.0.0.1 40000 1883"));
    let mut first = connected_with(&tern, &header("203.0.113.7"), "first").await;
    // Same carried address, same socket address: over the limit, answered after the header.
    let mut second = open_with(&tern, &header("203.0.113.7")).await;
    second.send(&connect(V5, "second", true)).await;
    assert_eq!(
        second.connack().await.reason,
        ReasonCode::QUOTA_EXCEEDED,
        "the second connection from 203.0.113.7 is refused"
    );
    second.expect_closed().await;
    // Another carried address, from the same socket address: let in.
    let mut other = connected_with(&tern, &header("203.0.113.8"), "other").await;
    assert!(other.sync().await.is_empty());
    assert!(first.sync().await.is_empty());
    // The address is free again once its connection is gone (polled: the server notices the
    // close on its own time).
    first.send(&Packet::Disconnect(Default::default())).await;
    first.expect_closed().await;
    drop(first);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut again = open_with(&tern, &header("203.0.113.7")).await;
        again.send(&connect(V5, "again", true)).await;
        match again.connack().await.reason {
            ReasonCode::SUCCESS => break,
            reason => assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "203.0.113.7 still counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_http_hook_gets_the_carried_address_as_peerhost() {
    // A one-shot HTTP server that records the request body and allows the login.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let body = loop {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the hook's client closed early");
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if buf.len() >= end + 4 + len {
                    break buf[end + 4..end + 4 + len].to_vec();
                }
            };
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let answer = r#"{"result":"allow"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
        }
    });
    let config = format!(
        "allow_anonymous = false\n\n[auth.http]\nurl = \"{url}\"\ncache_ttl = 0\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n"
    );
    let tern = start_config_only(&config, "toml");
    let mut c = open_with(&tern, &v2_tcp(addr("203.0.113.44:1234"), &[])).await;
    let mut packet = connect_packet(V5, "hooked", true);
    packet.username = Some(ByteString::from("alice"));
    packet.password = Some(bytes::Bytes::from_static(b"secret"));
    c.send(&Packet::Connect(Box::new(packet))).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    let body = bodies.lock().unwrap().last().cloned().expect("a request");
    assert_eq!(body["peerhost"], "203.0.113.44");
    assert_eq!(body["username"], "alice");
}

// ---------------------------------------------------------------------------------------------
// Bad headers

#[tokio::test]
async fn bad_headers_are_closed_without_an_answer_and_others_carry_on() {
    let tern = start("", "proxy_protocol = true");
    let mut bystander = connected_with(
        &tern,
        &v1("TCP4 192.0.2.10 10.0.0.1 1000 1883"),
        "bystander",
    )
    .await;
    let mut connect_bytes = BytesMut::new();
    connect(V5, "no-header", true)
        .encode(V5, &mut connect_bytes)
        .unwrap();
    let mut oversized_v1 = b"PROXY UNKNOWN ".to_vec();
    oversized_v1.extend_from_slice(&[b'x'; 110]);
    oversized_v1.extend_from_slice(b"\r\n");
    let mut wrong_version = v2_tcp(addr("192.0.2.1:1"), &[]);
    wrong_version[12] = 0x11;
    let mut oversized_v2 = v2(0x1, 0x11, &[]);
    oversized_v2[14..16].copy_from_slice(&2000u16.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "MQTT without a header",
            connect_bytes.to_vec(),
            "no PROXY header",
        ),
        (
            "garbage",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "no PROXY header",
        ),
        (
            "a v1 line over 107 bytes",
            oversized_v1,
            "a v1 header is at most 107 bytes",
        ),
        (
            "a v1 header with a bad address",
            v1("TCP4 203.0.113.300 10.0.0.1 1 1883"),
            "`203.0.113.300` is not an IPv4 address",
        ),
        (
            "a v1 header of another protocol",
            v1("UDP4 203.0.113.7 10.0.0.1 1 1883"),
            "unknown protocol `UDP4`",
        ),
        (
            "a v2 signature of version 1",
            wrong_version,
            "version 1 in a v2 signature",
        ),
        (
            "a v2 header announcing 2000 bytes",
            oversized_v2,
            "2000 bytes of addresses and TLVs",
        ),
        (
            "a v2 datagram",
            v2(0x1, 0x12, &[0; 12]),
            "a datagram connection",
        ),
        (
            "a v2 address block too short",
            v2(0x1, 0x21, &[0; 20]),
            "TCP over IPv6 needs 36 bytes",
        ),
        (
            "a v2 TLV past the end",
            v2_tcp(addr("192.0.2.1:1"), &[0x02, 0x00, 0x09, b'x']),
            "a TLV longer than the header",
        ),
    ];
    for (what, bytes, logged) in cases {
        let mut c = open_with(&tern, &bytes).await;
        c.expect_closed().await;
        tern.wait_log(logged).await;
        assert!(bystander.sync().await.is_empty(), "after {what}");
    }
    // Nothing (or half a header) within the deadline: closed then.
    for (what, bytes) in [
        ("nothing", Vec::new()),
        ("half a v1 header", b"PROXY TCP4 203.0.113.7".to_vec()),
        (
            "half a v2 header",
            v2_tcp(addr("192.0.2.1:1"), &[])[..20].to_vec(),
        ),
    ] {
        let mut c = open_with(&tern, &bytes).await;
        let started = std::time::Instant::now();
        c.expect_closed().await;
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(800),
            "{what}: closed after {:?}, before the 1 s deadline",
            started.elapsed()
        );
        assert!(bystander.sync().await.is_empty(), "after {what}");
    }
    tern.wait_log("no PROXY header within 1s; closed").await;
    // A header cut short by the client closing (logged at debug level only: health checks
    // of load balancers do that all day).
    let mut c = open_with(&tern, &v1("TCP4 203.0.113.7")[..15]).await;
    c.stream.shutdown().await.unwrap();
    c.expect_closed().await;
    assert!(bystander.sync().await.is_empty());
    assert!(!tern.logs().contains("connected from 203.0.113"));
}

#[tokio::test]
async fn a_version_pinned_listener_refuses_the_other_version() {
    let tern = start("", "proxy_protocol = 2");
    tern.wait_log("every connection starts with a v2 header")
        .await;
    let mut c = open_with(&tern, &v1("TCP4 203.0.113.7 10.0.0.1 1 1883")).await;
    c.expect_closed().await;
    tern.wait_log("PROXY protocol v1 is not accepted on this listener")
        .await;
    let mut ok = connected_with(&tern, &v2_tcp(addr("203.0.113.7:1"), &[]), "v2").await;
    assert!(ok.sync().await.is_empty());

    // mosquitto.conf: `enable_proxy_protocol 1` takes version 1 only.
    let config = format!(
        "listener {} 127.0.0.1\nallow_anonymous true\nenable_proxy_protocol 1\n",
        common::free_port()
    );
    let tern = start_config_only(&config, "conf");
    let mut c = open_with(&tern, &v2_tcp(addr("203.0.113.7:1"), &[])).await;
    c.expect_closed().await;
    tern.wait_log("PROXY protocol v2 is not accepted on this listener")
        .await;
    let mut ok = connected_with(&tern, &v1("TCP4 203.0.113.9 10.0.0.1 7 1883"), "v1").await;
    assert!(ok.sync().await.is_empty());
    tern.wait_log("client v1 connected from 203.0.113.9:7")
        .await;
}

#[tokio::test]
async fn require_tls_takes_only_headers_whose_ssl_tlv_says_tls() {
    let config = format!(
        "listener {} 127.0.0.1\nallow_anonymous true\nenable_proxy_protocol 2\n\
         proxy_protocol_v2_require_tls true\n",
        common::free_port()
    );
    let tern = start_config_only(&config, "conf");
    let mut ok = connected_with(&tern, &v2_tcp(addr("203.0.113.5:5"), &ssl_tlv()), "tls").await;
    assert!(ok.sync().await.is_empty());
    tern.wait_log("client tls connected from 203.0.113.5:5")
        .await;
    for header in [
        v2_tcp(addr("203.0.113.6:6"), &[]),
        // An SSL TLV whose client flags do not include "SSL".
        v2_tcp(addr("203.0.113.6:6"), &[0x20, 0x00, 0x05, 0x00, 0, 0, 0, 0]),
        v2(0x0, 0x00, &[]),
    ] {
        let mut c = open_with(&tern, &header).await;
        c.expect_closed().await;
    }
    tern.wait_log("does not say the client used TLS").await;
    assert!(!tern.logs().contains("203.0.113.6"));
}

// ---------------------------------------------------------------------------------------------
// In front of TLS and WebSocket

fn tls_connector(ca: &Path) -> tokio_rustls::TlsConnector {
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
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn the_header_comes_before_the_tls_handshake() {
    let dir = TempDir::new();
    let (ca, crt, key) = common::server_certificates(&dir.path);
    let tern = start(
        "",
        &format!(
            "proxy_protocol = true\n\n[listeners.tls]\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
            crt.display(),
            key.display()
        ),
    );
    let connector = tls_connector(&ca);
    let name = ServerName::try_from("localhost").unwrap();
    let mut tcp = TcpStream::connect(tern.addr).await.unwrap();
    tcp.write_all(&v2_tcp(addr("[2001:db8::50]:4433"), &[]))
        .await
        .unwrap();
    let tls = tokio::time::timeout(TIMEOUT, connector.connect(name.clone(), tcp))
        .await
        .unwrap()
        .expect("TLS handshake after the header");
    let mut c = StreamClient::connect_over(tls, V5, "over-tls").await;
    assert!(c.sync().await.is_empty());
    tern.wait_log("client over-tls connected from [2001:db8::50]:4433")
        .await;
    // A TLS client without the header: its ClientHello is not a header, and it is closed.
    let tcp = TcpStream::connect(tern.addr).await.unwrap();
    let handshake = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .unwrap();
    assert!(handshake.is_err(), "a TLS handshake without a header fails");
    tern.wait_log("no PROXY header; closed").await;
}

#[tokio::test]
async fn the_header_comes_before_the_websocket_upgrade() {
    // The harness's listener is plain MQTT; the WebSocket one comes second.
    let tern = start(
        "",
        "\n[[listeners]]\naddress = \"127.0.0.1:0\"\nprotocol = \"websockets\"\nproxy_protocol = 1",
    );
    tern.wait_log("(websockets)").await;
    let ws_addr: SocketAddr = tern
        .logs()
        .lines()
        .find_map(|l| {
            l.split("listening on ")
                .nth(1)?
                .strip_suffix(" (websockets)")
        })
        .unwrap()
        .parse()
        .unwrap();
    let mut tcp = TcpStream::connect(ws_addr).await.unwrap();
    tcp.write_all(&v1("TCP4 198.51.100.77 10.0.0.1 8083 8083"))
        .await
        .unwrap();
    let mut request = format!("ws://{ws_addr}/mqtt")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
        .await
        .unwrap()
        .expect("upgrade after the header");
    let mut out = BytesMut::new();
    connect(V5, "over-ws", true).encode(V5, &mut out).unwrap();
    ws.send(Message::binary(out.to_vec())).await.unwrap();
    let mut decoder = Decoder::with_version(V5, u32::MAX);
    let mut buf = BytesMut::new();
    let ack = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(p) = decoder.decode(&mut buf).unwrap() {
                return p;
            }
            match ws.next().await {
                Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    match ack {
        Packet::ConnAck(a) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    tern.wait_log("client over-ws connected from 198.51.100.77:8083")
        .await;
    // An upgrade request without the header is closed, unanswered.
    let mut c = open_at(ws_addr, b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").await;
    c.expect_closed().await;
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn load_error(text: &str, extension: &str) -> String {
    let file = TempFile::new(extension, text);
    let err = tern::config::load(&file.path).expect_err("the file should be refused");
    let name = file
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    err.to_string()
        .split_once(&name)
        .map(|(_, rest)| rest.to_owned())
        .unwrap()
}

#[test]
fn configuration_in_both_formats() {
    use tern::proxy_protocol::{ProxyProtocol, ProxyVersions};
    let load = |text: &str, extension: &str| {
        let file = TempFile::new(extension, text);
        tern::config::load(&file.path).unwrap()
    };
    let proxy = |versions, require_tls| {
        Some(ProxyProtocol {
            versions,
            require_tls,
        })
    };
    let toml = load(
        "[[listeners]]\naddress = \"127.0.0.1:1883\"\nproxy_protocol = true\n\n\
         [[listeners]]\naddress = \"127.0.0.1:1884\"\nproxy_protocol = 1\n\n\
         [[listeners]]\naddress = \"127.0.0.1:1885\"\nproxy_protocol = 2\n\
         proxy_protocol_require_tls = true\n\n\
         [[listeners]]\naddress = \"127.0.0.1:1886\"\nproxy_protocol = false\n",
        "toml",
    );
    let got: Vec<_> = toml
        .listeners
        .iter()
        .map(|l| l.settings.proxy_protocol)
        .collect();
    assert_eq!(
        got,
        [
            proxy(ProxyVersions::Both, false),
            proxy(ProxyVersions::V1, false),
            proxy(ProxyVersions::V2, true),
            None
        ]
    );
    let conf = load(
        "port 1883\nenable_proxy_protocol 2\nproxy_protocol_v2_require_tls true\n\
         listener 1884\nenable_proxy_protocol 1\nlistener 1885\n",
        "conf",
    );
    let got: Vec<_> = conf
        .listeners
        .iter()
        .map(|l| l.settings.proxy_protocol)
        .collect();
    assert_eq!(
        got,
        [
            proxy(ProxyVersions::V2, true),
            proxy(ProxyVersions::V1, false),
            None
        ]
    );
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let cases = [
        (
            "[[listeners]]\naddress = \"127.0.0.1:1883\"\nproxy_protocol = 3\n",
            "toml",
            ":3: `listeners[0].proxy_protocol`: expected true, false, 1 or 2, got 3",
        ),
        (
            "[[listeners]]\naddress = \"127.0.0.1:1883\"\nproxy_protocol = \"v2\"\n",
            "toml",
            ":3: `listeners[0].proxy_protocol`: expected true, false, 1 or 2, got string \"v2\"",
        ),
        (
            "[[listeners]]\naddress = \"127.0.0.1:1883\"\nproxy_protocol = 1\n\
             proxy_protocol_require_tls = true\n",
            "toml",
            ":4: `listeners[0].proxy_protocol_require_tls`: needs `proxy_protocol = true` or \
             `2`: only a version 2 header says whether the client used TLS",
        ),
        (
            "[[listeners]]\naddress = \"127.0.0.1:1883\"\nproxy_protocol_require_tls = true\n",
            "toml",
            ":3: `listeners[0].proxy_protocol_require_tls`: needs `proxy_protocol = true` or \
             `2`: only a version 2 header says whether the client used TLS",
        ),
        (
            "listener 1883\nenable_proxy_protocol 3\n",
            "conf",
            ":2: `enable_proxy_protocol`: expected 1 or 2, got `3`",
        ),
        (
            "listener 1883\nenable_proxy_protocol true\n",
            "conf",
            ":2: `enable_proxy_protocol`: expected 1 or 2, got `true`",
        ),
        (
            "listener 1883\nenable_proxy_protocol 1\nproxy_protocol_v2_require_tls true\n",
            "conf",
            ":3: `proxy_protocol_v2_require_tls`: needs `enable_proxy_protocol 2` on the same \
             listener: only a version 2 header says whether the client used TLS",
        ),
        (
            "listener 1883\nproxy_protocol_v2_require_tls maybe\n",
            "conf",
            ":2: `proxy_protocol_v2_require_tls`: expected true or false, got `maybe`",
        ),
        (
            "enable_proxy_protocol 2\nlistener 1883\n",
            "conf",
            ":1: `enable_proxy_protocol`: must follow the `listener` line of the listener it is \
             meant for (or define the default listener with `port`)",
        ),
    ];
    for (text, extension, expected) in cases {
        assert_eq!(load_error(text, extension), expected, "{text}");
    }
}

#[test]
fn a_bad_proxy_setting_stops_the_broker_with_its_location() {
    let (stderr, file) = serve_config_fails(
        "listener 1883 127.0.0.1\nallow_anonymous true\nenable_proxy_protocol 0\n",
        "conf",
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "{}:3: `enable_proxy_protocol`: expected 1 or 2, got `0`",
            file.path.display()
        )),
        "{stderr}"
    );
}
