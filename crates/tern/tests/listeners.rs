//! Per-listener settings against the real server with several listeners: the protocol
//! versions each accepts, mount points (Mosquitto's `mount_point`), each listener's own password
//! file and ACL (`per_listener_settings`, and the same keys on TOML `[[listeners]]`), their
//! reload on SIGHUP, and who may take over a session across listeners.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tern_codec::{Packet, QoS, ReasonCode};

/// `path` as text for a configuration file.
fn text(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// Starts Tern on `contents` alone (its own listeners) and returns it with the addresses of
/// its `n` listeners, in the file's order.
fn start(contents: &str, extension: &str, n: usize) -> (Tern, Vec<SocketAddr>) {
    let tern = start_config_only(contents, extension);
    let addrs = tern.listening_addrs(n);
    (tern, addrs)
}

/// Connects anonymously (MQTT 5) to `addr` and asserts success.
async fn anonymous(addr: SocketAddr, id: &str) -> RawClient {
    let (c, ack) = RawClient::connect_with(addr, conn5(id, true, None)).await;
    assert_eq!(
        ack.reason,
        ReasonCode::SUCCESS,
        "CONNACK for {id} on {addr}"
    );
    c
}

/// The CONNACK reason for `connect` on `addr`; a refusal must close the connection.
async fn connack_on(addr: SocketAddr, connect: tern_codec::Connect) -> ReasonCode {
    let (mut c, ack) = RawClient::connect_with(addr, connect).await;
    if ack.reason != ReasonCode::SUCCESS {
        c.expect_closed().await;
    }
    ack.reason
}

/// The next PUBLISH as (topic, payload, retain), acknowledged.
async fn next_message(c: &mut RawClient) -> (String, String, bool) {
    let p = c.recv_publish().await;
    c.ack(&p).await;
    (
        p.topic.to_string(),
        String::from_utf8_lossy(&p.payload).into_owned(),
        p.retain,
    )
}

fn message(topic: &str, payload: &str, retain: bool) -> (String, String, bool) {
    (topic.to_owned(), payload.to_owned(), retain)
}

/// Runs `mosquitto_pub`/`mosquitto_sub` with `args` (at most 20 s).
fn mosquitto(tool: &str, args: &[&str]) -> std::process::Output {
    run_bounded(Command::new(tool).args(args), None, Duration::from_secs(20))
}

// ---- Protocol versions -------------------------------------------------------------------------

#[tokio::test]
async fn protocol_versions_are_refused_per_listener_with_the_exact_codes() {
    let (_tern, addrs) = start(
        r#"
allow_anonymous = true

[[listeners]]
address = "127.0.0.1:0"
protocol_versions = [5]

[[listeners]]
address = "127.0.0.1:0"
protocol_versions = ["3.1", "3.1.1"]

[[listeners]]
address = "127.0.0.1:0"
"#,
        "toml",
        3,
    );
    let (only5, only3, all) = (addrs[0], addrs[1], addrs[2]);
    // MQTT 3.1.1 and 3.1 on the 5.0-only listener: CONNACK return code 1, then the close.
    for version in [V311, V31] {
        let mut c = RawClient::open(only5, version).await;
        c.send(&connect(version, "old", true)).await;
        assert_eq!(
            recv_raw_frame(&mut c).await.expect("CONNACK"),
            [0x20, 0x02, 0x00, 0x01],
            "{version:?}"
        );
        c.expect_closed().await;
    }
    anonymous(only5, "new").await.disconnect().await;
    // MQTT 5 on the 3.x-only listener: CONNACK 0x84 (Unsupported Protocol Version).
    assert_eq!(
        connack_on(only3, conn5("new", true, None)).await,
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
    );
    for version in [V311, V31] {
        RawClient::connect(only3, version, "old")
            .await
            .disconnect()
            .await;
    }
    // The listener without the key accepts every version.
    for version in [V5, V311, V31] {
        RawClient::connect(all, version, "any")
            .await
            .disconnect()
            .await;
    }
    // What a real client makes of it.
    let port = only5.port().to_string();
    let out = mosquitto(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv311",
            "-t",
            "t",
            "-m",
            "x",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unacceptable protocol version"),
        "mosquitto_pub said: {stderr}"
    );
    let out = mosquitto(
        "mosquitto_pub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "-t",
            "t",
            "-m",
            "x",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- Mount points ------------------------------------------------------------------------------

/// A mosquitto.conf with a listener mounted at `tenant/` and one without mount point, both
/// open to anonymous clients.
fn mounted_conf() -> String {
    format!(
        "per_listener_settings true\n\
         listener {} 127.0.0.1\nmount_point tenant/\nallow_anonymous true\n\
         listener {} 127.0.0.1\nallow_anonymous true\n",
        common::free_port(),
        common::free_port()
    )
}

#[tokio::test]
async fn a_mount_point_prefixes_topics_in_and_strips_them_out() {
    let (_tern, addrs) = start(&mounted_conf(), "conf", 2);
    let (mounted, plain) = (addrs[0], addrs[1]);
    let mut outside = anonymous(plain, "outside").await;
    assert_eq!(
        outside.subscribe("#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    let mut inside = anonymous(mounted, "inside").await;
    assert_eq!(
        inside.subscribe("#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );

    // In: the mounted client's `a/b` is `tenant/a/b` for everyone else.
    assert_eq!(
        inside
            .publish("a/b", b"from inside", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        next_message(&mut outside).await,
        message("tenant/a/b", "from inside", false)
    );
    assert_eq!(
        next_message(&mut inside).await,
        message("a/b", "from inside", false)
    );
    // Out: `tenant/c` reaches the mounted client as `c`; `other/c` does not reach it at all.
    outside
        .publish("other/c", b"elsewhere", QoS::AtLeastOnce, false)
        .await;
    outside
        .publish("tenant/c", b"for the tenant", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        next_message(&mut inside).await,
        message("c", "for the tenant", false)
    );
    inside.expect_nothing().await;
    assert_eq!(
        next_message(&mut outside).await,
        message("other/c", "elsewhere", false)
    );
    assert_eq!(
        next_message(&mut outside).await,
        message("tenant/c", "for the tenant", false)
    );
    // Unsubscribing uses the client's names too.
    assert_eq!(inside.unsubscribe("#").await, [ReasonCode::SUCCESS]);
    outside
        .publish("tenant/d", b"after", QoS::AtLeastOnce, false)
        .await;
    inside.expect_nothing().await;

    // mosquitto_sub on the mounted listener sees the topics without the prefix.
    let port = mounted.port().to_string();
    let sub = std::thread::spawn(move || {
        mosquitto(
            "mosquitto_sub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                "sensors/#",
                "-v",
                "-C",
                "1",
                "-W",
                "10",
            ],
        )
    });
    // Publish until the subscriber has subscribed and exits with the message.
    let mut sent = 0;
    while !sub.is_finished() {
        assert!(sent < 100, "mosquitto_sub got nothing");
        outside
            .publish("tenant/sensors/t1", b"21.5", QoS::AtMostOnce, false)
            .await;
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = sub.join().expect("mosquitto_sub thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "sensors/t1 21.5\n");
}

#[tokio::test]
async fn retained_messages_shared_subscriptions_and_wills_go_through_the_mount_point() {
    let (_tern, addrs) = start(&mounted_conf(), "conf", 2);
    let (mounted, plain) = (addrs[0], addrs[1]);
    let mut outside = anonymous(plain, "outside").await;
    outside
        .publish("tenant/config", b"v1", QoS::AtLeastOnce, true)
        .await;
    let mut inside = anonymous(mounted, "inside").await;
    inside.publish("state", b"on", QoS::AtLeastOnce, true).await;

    // Retained messages, both ways, as each side names them.
    assert_eq!(
        inside.subscribe("config", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        next_message(&mut inside).await,
        message("config", "v1", true)
    );
    assert_eq!(
        outside.subscribe("tenant/state", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        next_message(&mut outside).await,
        message("tenant/state", "on", true)
    );

    // `$share/jobs/work/#` through the mount point is the group `jobs` on `tenant/work/#`:
    // a plain client in that group shares the messages with the mounted one.
    let mut worker_in = anonymous(mounted, "worker-in").await;
    let mut worker_out = anonymous(plain, "worker-out").await;
    assert_eq!(
        worker_in
            .subscribe("$share/jobs/work/#", QoS::AtLeastOnce)
            .await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        worker_out
            .subscribe("$share/jobs/tenant/work/#", QoS::AtLeastOnce)
            .await,
        [ReasonCode::GRANTED_QOS_1]
    );
    outside
        .publish("tenant/work/1", b"job 1", QoS::AtLeastOnce, false)
        .await;
    outside
        .publish("tenant/work/2", b"job 2", QoS::AtLeastOnce, false)
        .await;
    let (topic_in, job_in, _) = next_message(&mut worker_in).await;
    let (topic_out, job_out, _) = next_message(&mut worker_out).await;
    assert_eq!(topic_in, format!("work/{}", &job_in[4..]));
    assert_eq!(topic_out, format!("tenant/work/{}", &job_out[4..]));
    let mut jobs = [job_in, job_out];
    jobs.sort();
    assert_eq!(jobs, ["job 1", "job 2"]);
    worker_in.expect_nothing().await;
    worker_out.expect_nothing().await;

    // A Will from the mounted listener goes out under the mount point.
    assert_eq!(
        outside.subscribe("tenant/status/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    let mut c = conn5("dying", true, None);
    c.will = Some(will("status/dying", b"offline", QoS::AtLeastOnce, false));
    let (dying, ack) = RawClient::connect_with(mounted, c).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    drop(dying); // no DISCONNECT: the Will is published
    assert_eq!(
        next_message(&mut outside).await,
        message("tenant/status/dying", "offline", false)
    );
}

#[tokio::test]
async fn a_toml_mount_point_applies_to_mqtt_3_clients_too() {
    let (_tern, addrs) = start(
        r#"
allow_anonymous = true

[[listeners]]
address = "127.0.0.1:0"
mount_point = "site-a/"

[[listeners]]
address = "127.0.0.1:0"
"#,
        "toml",
        2,
    );
    let mut inside = RawClient::connect(addrs[0], V311, "in311").await;
    let mut outside = RawClient::connect(addrs[1], V311, "out311").await;
    assert_eq!(
        inside.subscribe("+/temp", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        outside.subscribe("#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    outside
        .publish("site-a/hall/temp", b"19", QoS::AtLeastOnce, false)
        .await;
    outside
        .publish("site-b/hall/temp", b"25", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        next_message(&mut inside).await,
        message("hall/temp", "19", false)
    );
    inside.expect_nothing().await;
    inside
        .publish("door", b"open", QoS::AtLeastOnce, false)
        .await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next_message(&mut outside).await);
    }
    assert_eq!(
        got,
        [
            message("site-a/hall/temp", "19", false),
            message("site-b/hall/temp", "25", false),
            message("site-a/door", "open", false),
        ]
    );
}

// ---- Per-listener password files and ACLs ------------------------------------------------------

/// Two listeners with their own password files (alice has another password on each) and an
/// ACL on the first only, in mosquitto.conf form; returns the directory of the files too.
fn per_listener_conf(dir: &TempDir) -> String {
    let (pw_a, pw_b, acl_a) = (
        dir.path.join("a.pw"),
        dir.path.join("b.pw"),
        dir.path.join("a.acl"),
    );
    mosquitto_password_file(&pw_a, &[("alice", "pass-a")], &[]);
    mosquitto_password_file(&pw_b, &[("alice", "pass-b")], &[]);
    std::fs::write(&acl_a, "user alice\ntopic readwrite a/#\n").expect("write ACL");
    format!(
        "per_listener_settings true\n\
         listener {} 127.0.0.1\npassword_file {}\nacl_file {}\n\
         listener {} 127.0.0.1\npassword_file {}\n",
        common::free_port(),
        text(&pw_a),
        text(&acl_a),
        common::free_port(),
        text(&pw_b),
    )
}

async fn login_on(addr: SocketAddr, id: &str, user: &str, password: &str) -> ReasonCode {
    connack_on(addr, login(V5, id, Some(user), Some(password))).await
}

async fn logged_in(addr: SocketAddr, id: &str, user: &str, password: &str) -> RawClient {
    let (c, ack) = RawClient::connect_with(addr, login(V5, id, Some(user), Some(password))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{user} on {addr}");
    c
}

#[tokio::test]
async fn each_listener_checks_its_own_password_file_and_acl() {
    let dir = TempDir::new();
    let (_tern, addrs) = start(&per_listener_conf(&dir), "conf", 2);
    let (a, b) = (addrs[0], addrs[1]);
    // Same user name, another password on each listener.
    assert_eq!(
        login_on(a, "x", "alice", "pass-b").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        login_on(b, "x", "alice", "pass-a").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // MQTT 3.1.1: return code 4.
    let refused = refused_raw_connack_on(b, login(V311, "x", Some("alice"), Some("pass-a"))).await;
    assert_eq!(refused, [0x20, 0x02, 0x00, 0x04]);
    // Anonymous clients are refused on both (`allow_anonymous` defaults to false).
    assert_eq!(
        connack_on(a, conn5("anon", true, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        connack_on(b, conn5("anon", true, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );

    // The ACL of listener A applies there only.
    let mut on_a = logged_in(a, "alice-a", "alice", "pass-a").await;
    let mut on_b = logged_in(b, "alice-b", "alice", "pass-b").await;
    assert_eq!(
        on_a.publish("b/x", b"no", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        on_a.subscribe("b/#", QoS::AtLeastOnce).await,
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        on_a.subscribe("a/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        on_b.subscribe("#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        on_b.publish("b/x", b"yes", QoS::AtLeastOnce, false).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(next_message(&mut on_b).await, message("b/x", "yes", false));
    on_b.publish("a/1", b"for both", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        next_message(&mut on_a).await,
        message("a/1", "for both", false)
    );
    assert_eq!(
        next_message(&mut on_b).await,
        message("a/1", "for both", false)
    );
    on_a.expect_nothing().await;

    // mosquitto_pub with each listener's password.
    for (addr, password, ok) in [
        (a, "pass-a", true),
        (a, "pass-b", false),
        (b, "pass-b", true),
    ] {
        let port = addr.port().to_string();
        let out = mosquitto(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-u",
                "alice",
                "-P",
                password,
                "-t",
                "a/m",
                "-m",
                "hi",
            ],
        );
        assert_eq!(
            out.status.success(),
            ok,
            "{addr} {password}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn toml_listener_keys_override_the_top_level_ones() {
    let dir = TempDir::new();
    let (pw_top, pw_a, acl_top) = (
        dir.path.join("top.pw"),
        dir.path.join("a.pw"),
        dir.path.join("top.acl"),
    );
    mosquitto_password_file(&pw_top, &[("alice", "top")], &[]);
    mosquitto_password_file(&pw_a, &[("alice", "own")], &[]);
    std::fs::write(&acl_top, "user alice\ntopic readwrite top/#\n").expect("write ACL");
    let (_tern, addrs) = start(
        &format!(
            r#"
password_file = "{}"
acl_file = "{}"

[[listeners]]
address = "127.0.0.1:0"
password_file = "{}"
allow_anonymous = true

[[listeners]]
address = "127.0.0.1:0"
"#,
            text(&pw_top),
            text(&acl_top),
            text(&pw_a),
        ),
        "toml",
        2,
    );
    let (own, inherited) = (addrs[0], addrs[1]);
    assert_eq!(
        login_on(own, "x", "alice", "top").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        login_on(inherited, "x", "alice", "own").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack_on(inherited, conn5("anon", true, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // Anonymous clients are let in where the listener says so, under the top-level ACL
    // (which grants them nothing).
    let mut anon = anonymous(own, "anon").await;
    assert_eq!(
        anon.subscribe("top/#", QoS::AtLeastOnce).await,
        [ReasonCode::NOT_AUTHORIZED]
    );
    let mut alice = logged_in(own, "alice", "alice", "own").await;
    assert_eq!(
        alice.subscribe("top/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        alice.subscribe("other/#", QoS::AtLeastOnce).await,
        [ReasonCode::NOT_AUTHORIZED]
    );
    logged_in(inherited, "alice2", "alice", "top")
        .await
        .disconnect()
        .await;
}

#[tokio::test]
async fn sighup_reloads_every_listeners_files_and_keeps_them_when_one_is_broken() {
    let dir = TempDir::new();
    let (tern, addrs) = start(&per_listener_conf(&dir), "conf", 2);
    let (a, b) = (addrs[0], addrs[1]);
    // New password on A, new ACL on A, new password on B.
    mosquitto_password_file(&dir.path.join("a.pw"), &[("alice", "new-a")], &[]);
    mosquitto_password_file(&dir.path.join("b.pw"), &[("alice", "new-b")], &[]);
    std::fs::write(dir.path.join("a.acl"), "user alice\ntopic readwrite c/#\n").expect("ACL");
    tern.sighup(1);
    assert_eq!(
        login_on(a, "x", "alice", "pass-a").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        login_on(b, "x", "alice", "pass-b").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let mut on_a = logged_in(a, "alice-a", "alice", "new-a").await;
    logged_in(b, "alice-b", "alice", "new-b")
        .await
        .disconnect()
        .await;
    assert_eq!(
        on_a.subscribe("a/#", QoS::AtLeastOnce).await,
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        on_a.subscribe("c/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    on_a.disconnect().await;
    assert!(
        tern.logs()
            .contains(&format!("reload: listener {a} uses ACL")),
        "{}",
        tern.logs()
    );

    // A broken ACL file on one listener: nothing changes anywhere (fail closed).
    mosquitto_password_file(&dir.path.join("b.pw"), &[("alice", "newer-b")], &[]);
    std::fs::write(dir.path.join("a.acl"), "topic sideways x\n").expect("ACL");
    tern.sighup(2);
    assert!(
        tern.logs()
            .contains("reload failed, keeping the previous ACL and passwords"),
        "{}",
        tern.logs()
    );
    assert!(tern.logs().contains("a.acl:1"), "{}", tern.logs());
    assert_eq!(
        login_on(b, "x", "alice", "newer-b").await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let mut on_a = logged_in(a, "alice-a", "alice", "new-a").await;
    assert_eq!(
        on_a.subscribe("c/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
}

// ---- Client ids across listeners ---------------------------------------------------------------

#[tokio::test]
async fn an_authenticated_users_session_cannot_be_taken_over_from_an_open_listener() {
    let dir = TempDir::new();
    let pw = dir.path.join("pw");
    mosquitto_password_file(&pw, &[("alice", "secret")], &[]);
    let (_tern, addrs) = start(
        &format!(
            "per_listener_settings true\n\
             listener {} 127.0.0.1\npassword_file {}\n\
             listener {} 127.0.0.1\nallow_anonymous true\n",
            common::free_port(),
            text(&pw),
            common::free_port()
        ),
        "conf",
        2,
    );
    let (checked, open) = (addrs[0], addrs[1]);
    let mut owner = logged_in(checked, "device-1", "alice", "secret").await;
    assert_eq!(
        owner.subscribe("d/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );

    // Anonymous, or claiming alice's name where nothing checks it: CONNACK 0x87 / 5.
    assert_eq!(
        connack_on(open, conn5("device-1", true, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        connack_on(open, login(V5, "device-1", Some("alice"), Some("guess"))).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let refused = refused_raw_connack_on(open, connect_packet(V311, "device-1", false)).await;
    assert_eq!(refused, [0x20, 0x02, 0x00, 0x05]);
    // The owner was not kicked: its connection works.
    assert!(owner.sync().await.is_empty());
    let mut other = anonymous(open, "other").await;
    other
        .publish("d/1", b"still yours", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(
        next_message(&mut owner).await,
        message("d/1", "still yours", false)
    );

    // Alice herself, authenticated again, takes it over.
    let (mut again, ack) = RawClient::connect_with(
        checked,
        login(V5, "device-1", Some("alice"), Some("secret")),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    owner
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
    assert!(again.sync().await.is_empty());
    // A client id used anonymously on the open listener stays free for anyone there.
    let _first = anonymous(open, "shared-id").await;
    anonymous(open, "shared-id").await.disconnect().await;
}

/// [`refused_raw_connack`] for a listener other than [`Tern::addr`].
async fn refused_raw_connack_on(addr: SocketAddr, connect: tern_codec::Connect) -> Vec<u8> {
    let mut c = RawClient::open(addr, connect.protocol).await;
    c.send(&Packet::Connect(Box::new(connect))).await;
    let raw = recv_raw_frame(&mut c).await.expect("CONNACK");
    c.expect_closed().await;
    raw
}

// ---- Configuration -----------------------------------------------------------------------------

/// Loads `contents` from a file named `name` in `dir`; the error as text, with `dir` removed.
fn load_in(dir: &TempDir, name: &str, contents: &str) -> Result<tern::config::Config, String> {
    let path = dir.path.join(name);
    std::fs::write(&path, contents).expect("write config");
    tern::config::load(&path).map_err(|e| {
        e.to_string()
            .replace(&format!("{}/", dir.path.display()), "")
    })
}

#[test]
fn listener_settings_are_read_from_both_formats() {
    let dir = TempDir::new();
    mosquitto_password_file(&dir.path.join("pw"), &[("alice", "x")], &[]);
    std::fs::write(dir.path.join("acl"), "topic read #\n").expect("ACL");
    let toml = load_in(
        &dir,
        "t.toml",
        r#"
[[listeners]]
address = "127.0.0.1:1884"
protocol_versions = [4, "5.0"]
mount_point = "tenant/"
password_file = "pw"
acl_file = "acl"
allow_anonymous = false
allow_zero_length_clientid = false
auto_id_prefix = "t-"
"#,
    )
    .expect("valid TOML");
    let conf = load_in(
        &dir,
        "m.conf",
        "per_listener_settings true\nlistener 1884 127.0.0.1\nmount_point tenant/\n\
         password_file pw\nacl_file acl\nallow_anonymous false\n\
         allow_zero_length_clientid false\nauto_id_prefix t-\n",
    )
    .expect("valid mosquitto.conf");
    for config in [&toml, &conf] {
        let s = &config.listeners[0].settings;
        assert_eq!(s.mount_point.as_deref(), Some("tenant/"));
        assert_eq!(
            s.password_file.as_ref().map(|f| f.path.clone()),
            Some(dir.path.join("pw"))
        );
        assert_eq!(
            s.acl_file.as_ref().map(|f| f.path.clone()),
            Some(dir.path.join("acl"))
        );
        assert_eq!(s.allow_anonymous, Some(false));
        assert_eq!(s.allow_zero_length_clientid, Some(false));
        assert_eq!(s.auto_id_prefix.as_deref(), Some("t-"));
        // Nothing broker-wide.
        assert!(config.password_file.is_none() && config.broker.acl.is_none());
    }
    let versions: Vec<_> = toml.listeners[0]
        .settings
        .protocol_versions
        .expect("set")
        .iter()
        .collect();
    assert_eq!(versions, [V311, V5]);
    assert_eq!(conf.listeners[0].settings.protocol_versions, None);
    // Without `per_listener_settings`, the same lines are broker-wide, as in Mosquitto.
    let global = load_in(
        &dir,
        "g.conf",
        "listener 1884\npassword_file pw\nacl_file acl\n",
    )
    .expect("valid");
    assert!(global.password_file.is_some() && global.broker.acl.is_some());
    assert!(!global.listeners[0].settings.has_own_files());
}

#[test]
fn listener_settings_errors_name_the_file_line_and_key() {
    let dir = TempDir::new();
    let toml = |body: &str| {
        load_in(
            &dir,
            "t.toml",
            &format!("[[listeners]]\naddress = \"127.0.0.1:0\"\n{body}"),
        )
        .expect_err("invalid")
    };
    assert_eq!(
        toml("protocol_versions = [5, 2]\n"),
        "t.toml:3: `listeners[0].protocol_versions[1]`: expected a protocol level (3, 4, 5) or a \
         version name (\"3.1\", \"3.1.1\", \"5\"), got 2"
    );
    assert_eq!(
        toml("protocol_versions = []\n"),
        "t.toml:3: `listeners[0].protocol_versions`: must name at least one version (leave it \
         out to accept every version)"
    );
    assert_eq!(
        toml("mount_point = \"a/#\"\n"),
        "t.toml:3: `listeners[0].mount_point`: `a/#` is not a valid topic prefix: it must not \
         contain `+`, `#` or NUL"
    );
    assert_eq!(
        toml("mount_point = \"$SYS/\"\n"),
        "t.toml:3: `listeners[0].mount_point`: `$SYS/` must not start with `$`"
    );
    assert!(
        toml("password_file = \"missing\"\n")
            .starts_with("t.toml:3: `listeners[0].password_file`: cannot read `"),
    );
    let conf = |body: &str| load_in(&dir, "m.conf", body).expect_err("invalid");
    assert_eq!(
        conf("mount_point a/\nlistener 1884\n"),
        "m.conf:1: `mount_point`: must follow the `listener` line of the listener it is meant for"
    );
    assert_eq!(
        conf("listener 1884\nmount_point a/+/b\n"),
        "m.conf:2: `mount_point`: `a/+/b` is not a valid topic prefix: it must not contain `+`, \
         `#` or NUL"
    );
    assert_eq!(
        conf("allow_anonymous true\nper_listener_settings true\nlistener 1884\n"),
        "m.conf:2: `per_listener_settings`: must come before every other security setting, as \
         in Mosquitto; `allow_anonymous` is set at m.conf:1"
    );
    assert_eq!(
        conf("per_listener_settings true\nacl_file x\nlistener 1884\n")
            .split(": cannot read")
            .next(),
        Some("m.conf:2: `acl_file`")
    );
    std::fs::write(dir.path.join("acl"), "topic read #\n").expect("ACL");
    assert_eq!(
        conf("per_listener_settings true\nacl_file acl\nlistener 1884\n"),
        "m.conf:2: `acl_file`: with `per_listener_settings true`, security settings belong to a \
         listener: move this line after the `listener` line it is meant for (or define the \
         default listener with `port`)"
    );
    assert_eq!(
        conf("per_listener_settings true\nlistener 1884\nacl_file acl\nacl_file acl\n"),
        "m.conf:4: `acl_file`: already set for this listener at m.conf:3"
    );
    // With a default listener, the general section's security settings are its own.
    let c = load_in(
        &dir,
        "d.conf",
        "per_listener_settings true\nport 1884\nacl_file acl\nlistener 1885\n",
    )
    .expect("valid");
    assert!(c.listeners[0].settings.acl_file.is_some());
    assert!(c.listeners[1].settings.acl_file.is_none());
    // A mount point without a trailing slash is allowed, with a warning.
    let c = load_in(&dir, "w.conf", "listener 1884\nmount_point tenant\n").expect("valid");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].starts_with(&format!(
        "{}:2: `mount_point`: `tenant` does not end with `/`",
        dir.path.join("w.conf").display()
    )));
}
