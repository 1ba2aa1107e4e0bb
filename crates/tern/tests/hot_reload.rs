//! Hot reload of the whole configuration file, on SIGHUP and through the admin API's
//! `POST /api/v1/reload`: listeners added and removed, a bad file refused with its location
//! while everything keeps running, ACL changes, log levels, connection limits, and systemd's
//! readiness notifications around it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use tern_codec::{QoS, ReasonCode};

const KEY: &str = "ops";
const SECRET: &str = "reload-secret";

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `tern serve --config FILE` (the file's own listeners), the file kept for rewriting.
fn serve(file: &TempFile) -> Tern {
    let path = file.path.to_str().expect("UTF-8 temp path");
    Tern::spawn_in(&["serve", "--config", path], None, TempDir::new())
}

/// Waits (at most [`TIMEOUT`]) until nothing accepts connections on `addr` any more.
async fn eventually_refused(addr: SocketAddr) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Err(_)) => return,
            _ => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{addr} still accepts connections"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn reload_api(tern: &Tern) -> (u16, String) {
    let auth = basic_auth(KEY, SECRET);
    let (status, _, body) = tern
        .http("POST", "/api/v1/reload", Some(&auth), Some("{}"))
        .await;
    (status, body)
}

fn with_key(toml: &str) -> String {
    format!("{toml}\n[[admin.api_keys]]\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n")
}

#[tokio::test]
async fn sighup_adds_a_listener_and_removes_one_whose_clients_are_disconnected() {
    let (p1, p2) = (common::free_port(), common::free_port());
    let file = TempFile::new(
        "conf",
        &format!("listener {p1} 127.0.0.1\nallow_anonymous true\n"),
    );
    let tern = serve(&file);
    assert_eq!(tern.addr, local(p1));
    let mut old = RawClient::connect(local(p1), V5, "on-old").await;

    std::fs::write(
        &file.path,
        format!("listener {p2} 127.0.0.1\nallow_anonymous true\n"),
    )
    .expect("rewrite");
    tern.sighup(1);

    // The removed listener's clients are told the server is going away (MQTT 5: 0x8B).
    old.expect_disconnect(ReasonCode::SERVER_SHUTTING_DOWN)
        .await;
    RawClient::connect(local(p2), V5, "on-new")
        .await
        .disconnect()
        .await;
    eventually_refused(local(p1)).await;
    let logs = tern.logs();
    assert!(
        logs.contains(&format!("listener 127.0.0.1:{p1} removed")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("reload: listener 127.0.0.1:{p2} added")),
        "{logs}"
    );
}

#[tokio::test]
async fn a_bad_file_is_refused_with_its_location_and_everything_keeps_running() {
    let (p1, p2) = (common::free_port(), common::free_port());
    let file = TempFile::new(
        "conf",
        &format!("listener {p1} 127.0.0.1\nallow_anonymous true\n"),
    );
    let tern = serve(&file);
    let mut kept = RawClient::connect(local(p1), V5, "kept").await;

    // A new listener and a bad value: nothing of it applies, not even the listener.
    std::fs::write(
        &file.path,
        format!(
            "listener {p1} 127.0.0.1\nallow_anonymous true\nlistener {p2} 127.0.0.1\n\
             max_inflight_messages lots\n"
        ),
    )
    .expect("rewrite");
    tern.sighup(1);
    let logs = tern.logs();
    let location = format!("{}:4: `max_inflight_messages`", file.path.display());
    assert!(logs.contains("reload failed"), "{logs}");
    assert!(logs.contains(&location), "{logs}");

    assert!(
        kept.sync().await.is_empty(),
        "the old connection still works"
    );
    RawClient::connect(local(p1), V5, "new")
        .await
        .disconnect()
        .await;
    assert!(
        tokio::net::TcpStream::connect(local(p2)).await.is_err(),
        "the listener of a refused file was opened"
    );
}

#[tokio::test]
async fn an_acl_change_applies_through_the_admin_api() {
    let dir = TempDir::new();
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "topic read a/#\n").expect("ACL");
    let file = TempFile::new(
        "toml",
        &with_key(&format!(
            "allow_anonymous = true\nacl_file = \"{}\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
            acl.display()
        )),
    );
    let tern = serve(&file);
    let mut client = RawClient::connect(tern.addr, V5, "reader").await;
    assert_eq!(
        client.subscribe("b/x", QoS::AtMostOnce).await,
        [ReasonCode::NOT_AUTHORIZED]
    );

    std::fs::write(&acl, "topic read b/#\n").expect("ACL");
    let (status, body) = reload_api(&tern).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\":true"), "{body}");
    assert_eq!(
        client.subscribe("b/x", QoS::AtMostOnce).await,
        [ReasonCode::SUCCESS]
    );

    // A broken file: 400 with its location; the rules stay.
    std::fs::write(&acl, "topic sideways b/#\n").expect("ACL");
    let (status, body) = reload_api(&tern).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(&format!("{}:1", acl.display())), "{body}");
    assert_eq!(
        client.subscribe("b/y", QoS::AtMostOnce).await,
        [ReasonCode::SUCCESS]
    );
}

#[tokio::test]
async fn the_log_level_changes_on_reload() {
    let file = TempFile::new(
        "toml",
        &with_key(
            "allow_anonymous = true\n[log]\nlevel = \"info\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
        ),
    );
    let path = file.path.to_str().expect("UTF-8 temp path");
    // No RUST_LOG: the file decides the level.
    let tern = Tern::spawn_env(
        &["serve", "--config", path],
        &[("RUST_LOG", "")],
        TempDir::new(),
    );
    RawClient::connect(tern.addr, V5, "before")
        .await
        .disconnect()
        .await;
    tern.wait_log("client before connected from").await;

    let quiet = with_key(
        "allow_anonymous = true\n[log]\nlevel = \"warn\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
    );
    std::fs::write(&file.path, quiet).expect("rewrite");
    let (status, body) = reload_api(&tern).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("log level: warn (was info)"), "{body}");
    RawClient::connect(tern.addr, V5, "hidden")
        .await
        .disconnect()
        .await;

    std::fs::write(
        &file.path,
        with_key("allow_anonymous = true\n[log]\nlevel = \"info\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n"),
    )
    .expect("rewrite");
    let (status, body) = reload_api(&tern).await;
    assert_eq!(status, 200, "{body}");
    RawClient::connect(tern.addr, V5, "shown")
        .await
        .disconnect()
        .await;
    // Lines come in order: once "shown" is there, "hidden" would be too.
    tern.wait_log("client shown connected from").await;
    assert!(!tern.logs().contains("client hidden"), "{}", tern.logs());
}

#[tokio::test]
async fn a_new_max_connections_counts_the_open_connections_and_the_listeners_show_them() {
    let config = |max: u32, packet: &str| {
        with_key(&format!(
            "allow_anonymous = true\n[mqtt]\nmax_packet_size = \"{packet}\"\n\
             [[listeners]]\naddress = \"127.0.0.1:0\"\nmax_connections = {max}\n"
        ))
    };
    let file = TempFile::new("toml", &config(1, "1MiB"));
    let tern = serve(&file);
    let _first = RawClient::connect(tern.addr, V5, "first").await;
    assert_eq!(
        connack(&tern, conn5("second", true, None)).await,
        ReasonCode::QUOTA_EXCEEDED
    );

    std::fs::write(&file.path, config(2, "2MiB")).expect("rewrite");
    let (status, body) = reload_api(&tern).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("new settings for connections made from now on"),
        "{body}"
    );
    // What only a restart changes is said so, and left as it is; nothing else is.
    assert!(
        body.contains("protocol limits and options ([mqtt]: max_packet_size"),
        "{body}"
    );
    assert_eq!(body.matches("needs a restart").count(), 1, "{body}");
    let _second = RawClient::connect(tern.addr, V5, "second").await;
    assert_eq!(
        connack(&tern, conn5("third", true, None)).await,
        ReasonCode::QUOTA_EXCEEDED
    );

    let auth = basic_auth(KEY, SECRET);
    let (status, _, body) = tern
        .http("GET", "/api/v1/listeners", Some(&auth), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"connections\":2"), "{body}");
    assert!(body.contains("\"max_connections\":2"), "{body}");
    assert!(body.contains("\"type\":\"tcp\""), "{body}");
}

#[tokio::test]
async fn a_reload_without_a_configuration_file_is_refused() {
    let tern = Tern::start_args(&[]);
    tern.sighup(1);
    assert!(
        tern.logs()
            .contains("the broker was started without a configuration file"),
        "{}",
        tern.logs()
    );
    RawClient::connect(tern.addr, V5, "still")
        .await
        .disconnect()
        .await;
}

#[cfg(unix)]
#[tokio::test]
async fn systemd_is_told_ready_and_reloading() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new();
    let socket_path = dir.path.join("notify");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let recv = |socket: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let port = common::free_port();
    let file = TempFile::new(
        "conf",
        &format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    );
    let path = file.path.to_str().expect("UTF-8 temp path");
    let tern = Tern::spawn_env(
        &["serve", "--config", path],
        &[("NOTIFY_SOCKET", &p(&socket_path))],
        TempDir::new(),
    );
    assert_eq!(recv(&socket), "READY=1\n");
    tern.sighup(1);
    let reloading = recv(&socket);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(recv(&socket), "READY=1\n");
}

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}
