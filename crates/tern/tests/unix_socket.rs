//! Unix domain socket listeners against the real broker: one broker behind TCP and Unix
//! sockets (messages cross both ways), `unix_mode`, the stale socket left by a killed broker,
//! a socket in use or a file that is not a socket, removal at shutdown, limits (none per
//! address for Unix clients; the total applies), the PROXY protocol on a Unix listener,
//! `--listen unix:PATH`, both configuration formats and their errors; and, for the address
//! families of TCP listeners, `socket_domain`: an IPv6 listener is IPv6-only, so `0.0.0.0` and
//! `[::]` can share a port.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{
    RawClient, StreamClient, TIMEOUT, TempDir, TempFile, Tern, V5, V311, connect,
    serve_config_fails, start_config_only,
};
use tern::config::ListenAddr;
use tern_codec::{QoS, ReasonCode};
use tokio::net::{TcpStream, UnixStream};

/// A broker with a Unix socket listener at `path` (with `keys`, TOML lines of its table) and,
/// after it in the file, a TCP listener on 127.0.0.1 (the harness's). `top` comes first.
fn start_unix(top: &str, path: &Path, keys: &str) -> Tern {
    let config = format!(
        "allow_anonymous = true\n{top}\n\n[[listeners]]\naddress = \"unix:{}\"\n{keys}\n\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n",
        path.display()
    );
    let tern = start_config_only(&config, "toml");
    wait_unix(&tern, path);
    tern
}

/// Waits (at most [`TIMEOUT`]) for the `listening on unix:PATH` line.
fn wait_unix(tern: &Tern, path: &Path) {
    let line = format!("listening on unix:{}", path.display());
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !tern.logs().contains(&line) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {line:?}: {}",
            tern.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

async fn unix_open(path: &Path) -> UnixStream {
    tokio::time::timeout(TIMEOUT, UnixStream::connect(path))
        .await
        .expect("connect timeout")
        .expect("connect")
}

async fn unix_client(path: &Path, id: &str) -> StreamClient<UnixStream> {
    StreamClient::connect_over(unix_open(path).await, V5, id).await
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------------------------
// One broker

#[tokio::test]
async fn messages_cross_between_tcp_and_unix_socket_clients() {
    let dir = TempDir::new();
    let path = dir.path.join("tern.sock");
    let tern = start_unix("", &path, "");
    // The Unix listener is first in the file, but TCP listeners are announced first: a
    // harness that takes the first `listening on` line gets an address and port.
    let logs = tern.logs();
    let tcp_line = logs.find(&format!("listening on {}", tern.addr)).unwrap();
    let unix_line = logs
        .find(&format!("listening on unix:{}", path.display()))
        .unwrap();
    assert!(tcp_line < unix_line, "{logs}");

    let mut unix_sub = unix_client(&path, "unix-sub").await;
    tern.wait_log(&format!(
        "client unix-sub connected from unix:{} (MQTT 5.0)",
        path.display()
    ))
    .await;
    assert_eq!(
        unix_sub.subscribe("to-unix/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    let mut tcp_sub = RawClient::connect(tern.addr, V311, "tcp-sub").await;
    assert_eq!(
        tcp_sub.subscribe("to-tcp/#", QoS::AtMostOnce).await,
        [ReasonCode::SUCCESS]
    );
    let mut tcp_pub = RawClient::connect(tern.addr, V5, "tcp-pub").await;
    assert_eq!(
        tcp_pub
            .publish("to-unix/a", b"over tcp", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    let p = unix_sub.recv_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("to-unix/a", &b"over tcp"[..]));
    assert_eq!(p.qos, QoS::AtLeastOnce);

    let mut unix_pub = StreamClient::new(unix_open(&path).await, V311);
    unix_pub.send(&connect(V311, "unix-pub", true)).await;
    assert_eq!(unix_pub.connack().await.reason, ReasonCode::SUCCESS);
    unix_pub.publish0("to-tcp/b", b"over unix").await;
    let p = tcp_sub.recv_publish().await;
    assert_eq!((&*p.topic, &p.payload[..]), ("to-tcp/b", &b"over unix"[..]));
}

#[tokio::test]
async fn unix_mode_sets_the_socket_file_permissions() {
    let dir = TempDir::new();
    let (private, open) = (dir.path.join("private.sock"), dir.path.join("open.sock"));
    let config = format!(
        "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
         [[listeners]]\naddress = \"unix:{}\"\nunix_mode = \"0600\"\n\n\
         [[listeners]]\naddress = \"unix:{}\"\nunix_mode = \"0666\"\n",
        private.display(),
        open.display()
    );
    let tern = start_config_only(&config, "toml");
    wait_unix(&tern, &private);
    wait_unix(&tern, &open);
    assert_eq!(mode(&private), 0o600);
    // More open than the usual umask lets a new file be: set exactly all the same.
    assert_eq!(mode(&open), 0o666);
    let mut c = unix_client(&open, "through-0666").await;
    assert!(c.sync().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The socket file's life

#[tokio::test]
async fn the_socket_file_is_removed_at_shutdown_and_a_stale_one_is_replaced() {
    let dir = TempDir::new();
    let path = dir.path.join("tern.sock");
    let tern = start_unix("", &path, "");
    assert!(path.exists());
    let _ = tern.stop();
    assert!(!path.exists(), "the socket file is removed at shutdown");

    // A broker killed with SIGKILL leaves its socket behind; the next one replaces it.
    let tern = start_unix("", &path, "");
    let _ = tern.kill9();
    let meta = std::fs::symlink_metadata(&path).expect("the killed broker's socket is left");
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()));
    let tern = start_unix("", &path, "");
    tern.wait_log(&format!(
        "removed the stale socket unix:{} (nothing listened on it)",
        path.display()
    ))
    .await;
    let mut c = unix_client(&path, "after-restart").await;
    assert!(c.sync().await.is_empty());
}

#[test]
fn a_socket_in_use_or_a_file_that_is_not_a_socket_stops_the_start() {
    let dir = TempDir::new();
    let config = |path: &Path| {
        format!(
            "allow_anonymous = true\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n\
             [[listeners]]\naddress = \"unix:{}\"\n",
            path.display()
        )
    };
    // Another process listens on the socket: it is left alone.
    let busy = dir.path.join("busy.sock");
    let other = std::os::unix::net::UnixListener::bind(&busy).unwrap();
    let (stderr, _file) = serve_config_fails(&config(&busy), "toml", &[]);
    assert!(
        stderr.contains(&format!(
            "cannot listen on unix:{}: another process accepts connections on this socket",
            busy.display()
        )),
        "{stderr}"
    );
    assert!(busy.exists());
    drop(other);
    // A regular file: never removed.
    let file = dir.path.join("file.sock");
    std::fs::write(&file, "not a socket").unwrap();
    let (stderr, _file) = serve_config_fails(&config(&file), "toml", &[]);
    assert!(
        stderr.contains(&format!(
            "cannot listen on unix:{}: the path exists and is not a socket; Tern does not \
             remove it",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");
    // A directory that does not exist.
    let nowhere = dir.path.join("missing-dir/tern.sock");
    let (stderr, _file) = serve_config_fails(&config(&nowhere), "toml", &[]);
    assert!(
        stderr.contains(&format!("cannot listen on unix:{}: ", nowhere.display())),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits and the PROXY protocol

#[tokio::test]
async fn limits_per_address_do_not_apply_to_unix_clients_but_the_total_does() {
    let dir = TempDir::new();
    let path = dir.path.join("tern.sock");
    let _tern = start_unix(
        "[limits]\nmax_connections = 3\nmax_connections_per_ip = 1\nconnect_rate = \"1/m\"",
        &path,
        "",
    );
    let mut clients = Vec::new();
    for id in ["u1", "u2", "u3"] {
        clients.push(unix_client(&path, id).await);
    }
    // The fourth is over the total: a plain MQTT listener answers with a CONNACK.
    let mut fourth = StreamClient::new(unix_open(&path).await, V5);
    fourth.send(&connect(V5, "u4", true)).await;
    assert_eq!(fourth.connack().await.reason, ReasonCode::QUOTA_EXCEEDED);
    fourth.expect_closed().await;
    for c in &mut clients {
        assert!(c.sync().await.is_empty());
    }
}

#[tokio::test]
async fn a_unix_listener_can_expect_a_proxy_header() {
    let dir = TempDir::new();
    let path = dir.path.join("proxied.sock");
    let tern = start_unix("", &path, "proxy_protocol = true");
    let mut c = StreamClient::new(unix_open(&path).await, V5);
    c.send_bytes(b"PROXY TCP4 203.0.113.9 10.0.0.1 9 1883\r\n")
        .await;
    c.send(&connect(V5, "proxied", true)).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    tern.wait_log("client proxied connected from 203.0.113.9:9")
        .await;
    // LOCAL carries no address: the client is named after the socket.
    let mut local = StreamClient::new(unix_open(&path).await, V5);
    local
        .send_bytes(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
        .await;
    local.send(&connect(V5, "local", true)).await;
    assert_eq!(local.connack().await.reason, ReasonCode::SUCCESS);
    tern.wait_log(&format!(
        "client local connected from unix:{}",
        path.display()
    ))
    .await;
    // No header: closed.
    let mut bare = StreamClient::new(unix_open(&path).await, V5);
    bare.send(&connect(V5, "bare", true)).await;
    bare.expect_closed().await;
}

#[tokio::test]
async fn listen_flag_takes_a_unix_socket() {
    let dir = TempDir::new();
    let path = dir.path.join("flag.sock");
    let listen = format!("unix:{}", path.display());
    let tern = Tern::start_args(&["--listen", &listen]);
    wait_unix(&tern, &path);
    // Like a loopback `--listen`, a Unix socket lets anonymous clients in.
    let mut c = unix_client(&path, "flagged").await;
    assert!(c.sync().await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// mosquitto.conf and configuration errors

/// `N` distinct ports the system says are free (`listener 0` is a Unix socket in a
/// mosquitto.conf).
fn free_ports<const N: usize>() -> [u16; N] {
    let probes: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| probes[i].local_addr().unwrap().port())
}

#[tokio::test]
async fn mosquitto_listener_0_is_a_unix_socket() {
    let dir = TempDir::new();
    let path = dir.path.join("mosquitto.sock");
    let [port] = free_ports();
    let config = format!(
        "listener {port} 127.0.0.1\nlistener 0 {}\nallow_anonymous true\n",
        path.display()
    );
    let tern = start_config_only(&config, "conf");
    wait_unix(&tern, &path);
    let mut c = unix_client(&path, "mosq").await;
    assert!(c.sync().await.is_empty());
}

fn load(text: &str, extension: &str) -> (tern::config::Config, TempFile) {
    let file = TempFile::new(extension, text);
    (tern::config::load(&file.path).unwrap(), file)
}

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

fn unix(config: &tern::config::Config, i: usize) -> (PathBuf, Option<u32>) {
    match &config.listeners[i].bind {
        ListenAddr::Unix(u) => (u.path.clone(), u.mode),
        other => panic!("expected a Unix socket, got {other}"),
    }
}

#[test]
fn configuration_in_both_formats() {
    // Relative paths are relative to the file's directory, as for every path in Tern's files.
    let (toml, file) = load(
        "[[listeners]]\naddress = \"unix:/run/tern/tern.sock\"\nunix_mode = \"0660\"\n\n\
         [[listeners]]\naddress = \"unix:relative.sock\"\n",
        "toml",
    );
    let dir = file.path.parent().unwrap();
    assert_eq!(
        unix(&toml, 0),
        (PathBuf::from("/run/tern/tern.sock"), Some(0o660))
    );
    assert_eq!(unix(&toml, 1), (dir.join("relative.sock"), None));
    assert_eq!(toml.listeners[0].bind.port(), 0);
    assert_eq!(
        toml.listeners[0].bind.to_string(),
        "unix:/run/tern/tern.sock"
    );

    let (conf, file) = load(
        "listener 0 /run/mosquitto/mosquitto.sock\nlistener 0 relative.sock # a comment\n\
         socket_domain ipv4\n",
        "conf",
    );
    let dir = file.path.parent().unwrap();
    assert_eq!(
        unix(&conf, 0),
        (PathBuf::from("/run/mosquitto/mosquitto.sock"), None)
    );
    assert_eq!(unix(&conf, 1), (dir.join("relative.sock"), None));
    let name = file
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        conf.warnings,
        [format!(
            "{}:3: `socket_domain`: has no effect on a Unix socket listener",
            file.path.display()
        )],
        "{name}"
    );
}

#[test]
fn configuration_errors_name_file_line_and_key() {
    let long = format!("/tmp/{}.sock", "x".repeat(110));
    let cases = [
        (
            "[[listeners]]\naddress = \"127.0.0.1:1883\"\nunix_mode = \"0600\"\n".to_owned(),
            "toml",
            ":3: `listeners[0].unix_mode`: only Unix socket listeners take this key (`address = \
             \"unix:PATH\"`)"
                .to_owned(),
        ),
        (
            "[[listeners]]\naddress = \"unix:/run/t.sock\"\nunix_mode = \"0668\"\n".to_owned(),
            "toml",
            ":3: `listeners[0].unix_mode`: expected permissions as octal digits such as \
             \"0660\" (at most \"0777\"), got \"0668\""
                .to_owned(),
        ),
        (
            "[[listeners]]\naddress = \"unix:/run/t.sock\"\nunix_mode = 660\n".to_owned(),
            "toml",
            ":3: `listeners[0].unix_mode`: expected permissions as a string of octal digits, \
             such as \"0660\", got integer `660`"
                .to_owned(),
        ),
        (
            "[[listeners]]\naddress = \"unix:\"\n".to_owned(),
            "toml",
            ":2: `listeners[0].address`: the Unix socket path is empty".to_owned(),
        ),
        (
            format!("[[listeners]]\naddress = \"unix:{long}\"\n"),
            "toml",
            format!(
                ":2: `listeners[0].address`: the Unix socket path `{long}` is 120 bytes long; \
                 the system allows at most 107"
            ),
        ),
        (
            "[[listeners]]\naddress = \"unix:/run/t.sock\"\n\n\
             [[listeners]]\naddress = \"unix:/run/t.sock\"\n"
                .to_owned(),
            "toml",
            ":5: `listeners[1].address`: unix:/run/t.sock is already the address of \
             `listeners[0]`"
                .to_owned(),
        ),
        (
            "listener 0\n".to_owned(),
            "conf",
            ":1: `listener`: port 0 makes a Unix socket listener: give the socket's path after \
             it"
            .to_owned(),
        ),
        (
            "listener 0 /run/a.sock extra\n".to_owned(),
            "conf",
            ":1: `listener`: unexpected `extra` after the address".to_owned(),
        ),
        (
            "listener 0 /run/a.sock\nlistener 0 /run/a.sock\n".to_owned(),
            "conf",
            ":2: `listener`: unix:/run/a.sock is already used by the listener at ".to_owned(),
        ),
        (
            format!("listener 0 {long}\n"),
            "conf",
            format!(
                ":1: `listener`: the Unix socket path `{long}` is 120 bytes long; the system \
                 allows at most 107"
            ),
        ),
    ];
    for (text, extension, expected) in cases {
        let got = load_error(&text, extension);
        assert!(got.starts_with(&expected), "{text}:\n{got}\n{expected}");
    }
}

// ---------------------------------------------------------------------------------------------
// socket_domain

#[tokio::test]
async fn ipv4_and_ipv6_listeners_share_a_port() {
    let [first, port] = free_ports();
    let config = format!(
        "listener {first} 127.0.0.1\nallow_anonymous true\n\
         listener {port}\nsocket_domain ipv4\nlistener {port}\nsocket_domain ipv6\n"
    );
    // Without IPV6_V6ONLY, `[::]` would take the IPv4 port too and the second bind would fail.
    let tern = start_config_only(&config, "conf");
    tern.wait_log(&format!("listening on [::]:{port}")).await;
    for at in [
        SocketAddr::from(([127, 0, 0, 1], port)),
        format!("[::1]:{port}").parse().unwrap(),
    ] {
        let stream = TcpStream::connect(at).await.unwrap();
        let mut c = StreamClient::new(stream, V5);
        c.send(&connect(V5, &format!("via-{}", at.ip()), true))
            .await;
        assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS, "{at}");
    }
    tern.wait_log("connected from 127.0.0.1:").await;
    tern.wait_log("connected from [::1]:").await;
}

#[tokio::test]
async fn socket_domain_ipv6_listens_for_ipv6_only() {
    let [first, port] = free_ports();
    let config = format!(
        "listener {first} 127.0.0.1\nallow_anonymous true\nlistener {port}\nsocket_domain ipv6\n"
    );
    let tern = start_config_only(&config, "conf");
    tern.wait_log(&format!("listening on [::]:{port}")).await;
    let at: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut c = StreamClient::new(TcpStream::connect(at).await.unwrap(), V5);
    c.send(&connect(V5, "v6", true)).await;
    assert_eq!(c.connack().await.reason, ReasonCode::SUCCESS);
    let refused = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert_eq!(
        refused.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "nothing listens on IPv4 there"
    );
    assert!(c.sync().await.is_empty());
}
