//! A realistic multi-listener `mosquitto.conf`, run unchanged: plain MQTT, TLS (certificates
//! made at test time, a real `mosquitto_pub` as client), WebSockets, a Unix socket, a listener
//! from `include_dir`, password and ACL files, persistence, a log file and a PID file. Then
//! each directive Tern reads for logging and the process, and their bad values.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tern_codec::{Decoder, Packet, QoS, ReasonCode};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// CONNECT over a WebSocket (`ws://ADDR/mqtt`, subprotocol `mqtt`); returns the CONNACK.
async fn ws_connack(addr: SocketAddr, connect: tern_codec::Connect) -> tern_codec::ConnAck {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
        .await
        .expect("upgrade in time")
        .expect("upgrade");
    let mut out = BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(V311, &mut out)
        .unwrap();
    ws.send(Message::binary(out.to_vec())).await.unwrap();
    let mut buf = BytesMut::new();
    let mut decoder = Decoder::with_version(V311, u32::MAX);
    tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(Packet::ConnAck(ack)) = decoder.decode(&mut buf).unwrap() {
                return ack;
            }
            match ws.next().await {
                Some(Ok(Message::Binary(data))) => buf.extend_from_slice(&data),
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    })
    .await
    .expect("CONNACK in time")
}

#[tokio::test]
async fn a_realistic_multi_listener_mosquitto_conf_runs_unchanged() {
    let dir = TempDir::new();
    let (ca, cert, key) = common::server_certificates(&dir.path);
    let passwd = dir.path.join("passwd");
    mosquitto_password_file(&passwd, &[("alice", "secret"), ("bob", "builder")], &[]);
    let acl = dir.path.join("acl");
    std::fs::write(
        &acl,
        "# anonymous: nothing\nuser alice\ntopic readwrite home/#\nuser bob\ntopic write home/#\n",
    )
    .unwrap();
    for sub in ["log", "data", "conf.d"] {
        std::fs::create_dir(dir.path.join(sub)).unwrap();
    }
    let (plain, tls, ws, extra) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let socket = dir.path.join("mosquitto.sock");
    let pid = dir.path.join("mosquitto.pid");
    let log = dir.path.join("log/mosquitto.log");
    std::fs::write(
        dir.path.join("conf.d/10-extra.conf"),
        format!("# A snippet, as Debian's /etc/mosquitto/conf.d\nlistener {extra} 127.0.0.1\n"),
    )
    .unwrap();
    let conf = format!(
        "# Place your local configuration in /etc/mosquitto/conf.d/\n\
         pid_file {pid}\n\
         \n\
         persistence true\n\
         persistence_location {data}/\n\
         autosave_interval 1800\n\
         \n\
         log_dest file {log}\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         connection_messages true\n\
         log_timestamp true\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n\
         \n\
         include_dir {confd}\n\
         \n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         password_file {passwd}\n\
         acl_file {acl}\n\
         max_queued_messages 1000\n\
         max_inflight_messages 20\n\
         sys_interval 10\n\
         \n\
         listener {plain} 127.0.0.1\n\
         \n\
         listener {tls} 127.0.0.1\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         tls_version tlsv1.2\n\
         \n\
         listener {ws} 127.0.0.1\n\
         protocol websockets\n\
         \n\
         listener 0 {socket}\n",
        pid = p(&pid),
        data = p(&dir.path.join("data")),
        log = p(&log),
        confd = p(&dir.path.join("conf.d")),
        passwd = p(&passwd),
        acl = p(&acl),
        ca = p(&ca),
        cert = p(&cert),
        key = p(&key),
        socket = p(&socket),
    );
    let file = TempFile::new("conf", &conf);
    let mut tern = Tern::spawn_in(&["serve", "--config", &p(&file.path)], None, TempDir::new());
    let addrs = tern.listening_addrs(3);
    tern.wait_log(&format!("listening on 127.0.0.1:{ws} (websockets)"))
        .await;
    for port in [plain, tls, extra] {
        assert!(
            addrs.contains(&SocketAddr::from(([127, 0, 0, 1], port))),
            "{port} not in {addrs:?}"
        );
    }
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));

    // Plain MQTT, with the password file and the ACL.
    assert_eq!(
        connack(&tern, conn5("anonymous", true, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let (mut alice, ack) = RawClient::connect_with(
        at(plain),
        login(V311, "alice-1", Some("alice"), Some("secret")),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        alice.subscribe("home/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );

    // TLS, with Debian's mosquitto_pub as the client.
    let out = run_bounded(
        Command::new("mosquitto_pub").args([
            "-h",
            "localhost",
            "-p",
            &tls.to_string(),
            "--cafile",
            &p(&ca),
            "-u",
            "bob",
            "-P",
            "builder",
            "-q",
            "1",
            "-t",
            "home/kitchen",
            "-m",
            "over-tls",
        ]),
        None,
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "mosquitto_pub over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = alice.recv_publish().await;
    assert_eq!(&got.payload[..], b"over-tls");
    alice.ack(&got).await;

    // WebSockets.
    let ack = ws_connack(at(ws), login(V311, "ws-1", Some("alice"), Some("secret"))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);

    // The Unix socket, and the listener of the included snippet.
    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let mut unix = RawClient::new(stream, V5);
    unix.send(&Packet::Connect(Box::new(login(
        V5,
        "unix-1",
        Some("alice"),
        Some("secret"),
    ))))
    .await;
    assert_eq!(unix.connack().await.reason, ReasonCode::SUCCESS);
    let (_snippet, ack) = RawClient::connect_with(
        at(extra),
        login(V5, "extra-1", Some("bob"), Some("builder")),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);

    // The PID file and the log file.
    let written = std::fs::read_to_string(&pid).expect("the PID file");
    assert_eq!(written, format!("{}\n", tern.pid()));
    let logged = std::fs::read_to_string(&log).expect("the log file");
    assert!(
        logged.contains(&format!("listening on 127.0.0.1:{plain}")),
        "{logged}"
    );
    let first = logged.lines().next().expect("a line");
    assert!(
        chrono::NaiveDateTime::parse_from_str(&first[..19], "%Y-%m-%dT%H:%M:%S").is_ok(),
        "{first}"
    );
    // Only the directive Tern cannot honour is warned about.
    assert!(
        tern.logs().contains("`autosave_interval`"),
        "{}",
        tern.logs()
    );

    // At exit, the PID file goes.
    let status = tern.terminate();
    assert!(status.success());
    assert!(!pid.exists(), "the PID file is removed at exit");
}

/// `tern check-config FILE` with `text` in a `.conf` file: (success, stderr).
fn check(text: &str) -> (bool, String, TempFile) {
    let file = TempFile::new("conf", text);
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("check-config")
            .arg(&file.path),
        None,
        Duration::from_secs(20),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file,
    )
}

#[test]
fn bad_logging_and_process_values_name_the_file_line_and_directive() {
    let cases = [
        (
            "log_dest carrier-pigeon\n",
            ":1: `log_dest`: expected stdout, stderr, file PATH, syslog, topic, dlt or none, got `carrier-pigeon`",
        ),
        (
            "log_dest file\n",
            ":1: `log_dest`: missing file name after `file`",
        ),
        (
            "log_dest stderr loudly\n",
            ":1: `log_dest`: unexpected `loudly` after `stderr`",
        ),
        (
            "\nlog_timestamp_format %Q\n",
            ":2: `log_timestamp_format`: `%Q` is not a valid strftime format",
        ),
        (
            "log_facility 8\n",
            ":1: `log_facility`: expected an integer between 0 and 7, got `8`",
        ),
        ("user\n", ":1: `user`: missing value"),
        ("log_type loud\n", ":1: `log_type`: expected none, error"),
        (
            "connection_messages maybe\n",
            ":1: `connection_messages`: expected true or false",
        ),
        (
            "log_timestamp yes\n",
            ":1: `log_timestamp`: expected true or false",
        ),
        (
            "sys_interval -1\n",
            ":1: `sys_interval`: expected an integer between 0 and 65535",
        ),
    ];
    for (text, expected) in cases {
        let (ok, stderr, file) = check(text);
        assert!(!ok, "{text} was accepted");
        assert!(
            stderr.contains(&format!("{}{expected}", file.path.display())),
            "{text}: {stderr}"
        );
    }
}

#[test]
fn a_log_file_or_pid_file_that_cannot_be_written_stops_the_start() {
    let data = TempDir::new();
    for (line, expected) in [
        (
            "log_dest file /nonexistent-tern-dir/x.log",
            "`log_dest`: cannot open the log file `/nonexistent-tern-dir/x.log`",
        ),
        (
            "pid_file /nonexistent-tern-dir/tern.pid",
            "`pid_file`: cannot write `/nonexistent-tern-dir/tern.pid`",
        ),
    ] {
        let file = TempFile::new(
            "conf",
            &format!("{line}\nlistener 0 {}\n", p(&data.path.join("s"))),
        );
        let (status, stderr) = tern_expect_exit(&["serve", "--config", &p(&file.path)], &data.path);
        assert!(!status.success(), "{line}");
        assert!(stderr.contains(expected), "{line}: {stderr}");
    }
}

#[test]
fn logging_and_process_directives_are_accepted() {
    let dir = TempDir::new();
    let (ok, stderr, file) = check(&format!(
        "log_dest syslog\nlog_dest stdout\nlog_dest file {}/tern.log\nlog_facility 3\n\
         log_timestamp_format %s\nlog_type all\nlog_type websockets\npid_file {}/tern.pid\n\
         user nobody\nsys_interval 0\nlog_dest topic\n",
        p(&dir.path),
        p(&dir.path)
    ));
    assert!(ok, "{stderr}");
    // `topic` is the only one Tern does not do.
    assert!(
        stderr.contains(&format!(
            "{}:11: `log_dest`: ignored: Tern does not publish its log lines",
            file.path.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("log_facility"), "{stderr}");

    // A facility without syslog does nothing: a warning.
    let (ok, stderr, file) = check("log_facility 2\n");
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:1: `log_facility`: has no effect without `log_dest syslog`",
            file.path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn log_dest_none_logs_nothing() {
    // A listener already taken: the start fails after a warning about the listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = TempDir::new();
    let warning = "refuses every client";
    for (dest, logged) in [("log_dest stderr\n", true), ("log_dest none\n", false)] {
        let file = TempFile::new("conf", &format!("{dest}listener {port} 127.0.0.1\n"));
        let (status, stderr) = tern_expect_exit(&["serve", "--config", &p(&file.path)], &data.path);
        assert!(!status.success());
        // The error is not a log line: it is always there.
        assert!(stderr.contains("tern: cannot listen on"), "{stderr}");
        assert_eq!(stderr.contains(warning), logged, "{dest}: {stderr}");
    }
}

#[test]
fn daemon_mode_is_refused_with_a_reason() {
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern")).args(["-c", "/dev/null", "-d"]),
        None,
        Duration::from_secs(20),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("-d (run in the background) is not supported"),
        "{stderr}"
    );
    assert!(stderr.contains("systemd"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn user_drops_root_privileges_once_the_listeners_are_bound() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("not root: `user` cannot be tested here");
        return;
    }
    let port = common::free_port();
    let file = TempFile::new(
        "conf",
        &format!(
            "user nobody\npersistence false\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
        ),
    );
    let tern = Tern::spawn_in(&["serve", "--config", &p(&file.path)], None, TempDir::new());
    tern.wait_log("now running as `nobody`").await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", tern.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|id| id == nobody.to_string()),
        "{uid_line}"
    );
    // Still serving after dropping privileges.
    RawClient::connect(tern.addr, V5, "after-drop")
        .await
        .disconnect()
        .await;
}
