//! Authentication against a Mosquitto password file (`password_file`), with files made by
//! Debian's `mosquitto_passwd`: CONNACK codes for every protocol version (3.1.1: 4 bad user name
//! or password, 5 not authorized; MQTT 5: 0x86, 0x87, 0x8C), anonymous access, a client id that
//! belongs to one user and cannot be taken over by another, packets pipelined behind CONNECT,
//! real clients (`mosquitto_pub`, `rumqttc`), equal cost for unknown users, and startup errors
//! that name the file.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    RawClient, TempDir, TempFile, Tern, V5, V31, V311, connack, connected, login, publish,
    refused_raw_connack, serve_config_fails,
};
use tern_codec::{ByteString, Packet, QoS, ReasonCode};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A password file written by the real `mosquitto_passwd` (`-b`, batch mode) with `users`.
struct Passwords {
    _dir: TempDir,
    path: std::path::PathBuf,
}

fn mosquitto_passwd(users: &[(&str, &str)], flags: &[&str]) -> Passwords {
    let dir = TempDir::new();
    let path = dir.path.join("passwd");
    common::mosquitto_password_file(&path, users, flags);
    Passwords { _dir: dir, path }
}

/// A broker (TOML configuration) with `passwords` and the extra TOML `extra`.
fn broker(passwords: &Passwords, extra: &str) -> Tern {
    let config = format!("password_file = \"{}\"\n{extra}", passwords.path.display());
    Tern::start_config(&config, "toml")
}

fn alice_bob() -> Passwords {
    mosquitto_passwd(&[("alice", "wonderland"), ("bob", "builder")], &[])
}

// ---------------------------------------------------------------------------------------------
// CONNACK codes

#[tokio::test]
async fn mqtt311_s3_1_4_right_password_is_accepted_and_wrong_ones_get_return_code_4() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let ok = login(V311, "c1", Some("alice"), Some("wonderland"));
    assert_eq!(connack(&tern, ok).await, ReasonCode::SUCCESS);
    let wrong = login(V311, "c2", Some("alice"), Some("builder"));
    // Return code 4 on the wire; the codec reads it back as 0x86.
    assert_eq!(
        connack(&tern, wrong).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let unknown = login(V311, "c3", Some("mallory"), Some("wonderland"));
    assert_eq!(
        connack(&tern, unknown).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let no_password = login(V311, "c4", Some("alice"), None);
    assert_eq!(
        connack(&tern, no_password).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn mqtt311_s3_1_4_anonymous_client_gets_return_code_5_when_anonymous_access_is_off() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let raw = refused_raw_connack(&tern, login(V311, "anon", None, None)).await;
    assert_eq!(raw, vec![0x20, 0x02, 0x00, 0x05], "CONNACK return code 5");
}

#[tokio::test]
async fn mqtt311_s3_1_4_bad_password_is_return_code_4_on_the_wire() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let raw = refused_raw_connack(&tern, login(V311, "c", Some("bob"), Some("wrong"))).await;
    assert_eq!(raw, vec![0x20, 0x02, 0x00, 0x04], "CONNACK return code 4");
}

#[tokio::test]
async fn mqtt31_password_file_applies_to_mqtt_3_1_clients() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let ok = login(V31, "c1", Some("bob"), Some("builder"));
    assert_eq!(connack(&tern, ok).await, ReasonCode::SUCCESS);
    let wrong = login(V31, "c2", Some("bob"), Some("wonderland"));
    assert_eq!(
        connack(&tern, wrong).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn mqtt5_3_1_4_2_bad_user_name_or_password_is_0x86_and_anonymous_is_0x87() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let ok = login(V5, "c1", Some("alice"), Some("wonderland"));
    assert_eq!(connack(&tern, ok).await, ReasonCode::SUCCESS);
    let wrong = login(V5, "c2", Some("alice"), Some("nope"));
    assert_eq!(
        connack(&tern, wrong).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let unknown = login(V5, "c3", Some("eve"), Some("wonderland"));
    assert_eq!(
        connack(&tern, unknown).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let anonymous = login(V5, "c4", None, None);
    assert_eq!(connack(&tern, anonymous).await, ReasonCode::NOT_AUTHORIZED);
}

#[tokio::test]
async fn mqtt5_s3_1_2_9_password_without_user_name_is_legal_and_checked() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let only_password = login(V5, "c1", None, Some("wonderland"));
    assert_eq!(
        connack(&tern, only_password).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn mqtt5_4_12_0_1_unknown_authentication_method_is_0x8c() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let mut c = login(V5, "c1", Some("alice"), Some("wonderland"));
    c.properties.authentication_method = Some(ByteString::from("NO-SUCH-METHOD"));
    assert_eq!(
        connack(&tern, c).await,
        ReasonCode::BAD_AUTHENTICATION_METHOD
    );
}

#[tokio::test]
async fn mqtt5_4_12_0_6_plain_login_gets_no_authentication_method_in_connack() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let (_c, ack) =
        RawClient::connect_with(tern.addr, login(V5, "c1", Some("bob"), Some("builder"))).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
}

#[tokio::test]
async fn anonymous_clients_get_in_with_allow_anonymous_but_named_users_are_still_checked() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = true\n");
    assert_eq!(
        connack(&tern, login(V311, "anon", None, None)).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connack(&tern, login(V311, "c", Some("alice"), Some("bad"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack(&tern, login(V5, "c2", Some("alice"), Some("wonderland"))).await,
        ReasonCode::SUCCESS
    );
}

#[tokio::test]
async fn sha512_lines_from_mosquitto_passwd_are_accepted() {
    let pw = mosquitto_passwd(&[("carol", "s3cret")], &["-H", "sha512"]);
    let text = std::fs::read_to_string(&pw.path).unwrap();
    assert!(text.starts_with("carol:$6$"), "{text}");
    let tern = broker(&pw, "allow_anonymous = false\n");
    assert_eq!(
        connack(&tern, login(V311, "c", Some("carol"), Some("s3cret"))).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connack(&tern, login(V311, "c", Some("carol"), Some("s3cret!"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn mosquitto_conf_password_file_is_read() {
    let pw = alice_bob();
    let conf = format!(
        "password_file {}\nallow_anonymous false\n",
        pw.path.display()
    );
    let tern = Tern::start_config(&conf, "conf");
    assert_eq!(
        connack(&tern, login(V311, "c", Some("alice"), Some("wonderland"))).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        connack(&tern, login(V311, "c", None, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
}

// ---------------------------------------------------------------------------------------------
// Client ids belong to their user

#[tokio::test]
async fn a_client_id_held_by_one_user_cannot_be_taken_over_by_another() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let (mut alice, ack) = RawClient::connect_with(
        tern.addr,
        login(V5, "dev-1", Some("alice"), Some("wonderland")),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let bob = login(V5, "dev-1", Some("bob"), Some("builder"));
    assert_eq!(connack(&tern, bob).await, ReasonCode::NOT_AUTHORIZED);
    // The owner was not kicked.
    alice.sync().await;
    // The owner itself may take its own client id over.
    let (_again, ack) = RawClient::connect_with(
        tern.addr,
        login(V5, "dev-1", Some("alice"), Some("wonderland")),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    alice
        .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
        .await;
}

#[tokio::test]
async fn a_persistent_session_cannot_be_resumed_by_another_user() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let mut first = login(V311, "dev-2", Some("alice"), Some("wonderland"));
    first.clean_start = false;
    let (mut alice, ack) = RawClient::connect_with(tern.addr, first.clone()).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    alice.subscribe("secret/alice", QoS::AtLeastOnce).await;
    alice.disconnect().await;
    // Messages queue for Alice's session while she is away.
    let mut publisher = connected(&tern, login(V311, "pub", Some("bob"), Some("builder"))).await;
    publisher
        .publish("secret/alice", b"for alice only", QoS::AtLeastOnce, false)
        .await;
    let mut thief = login(V311, "dev-2", Some("bob"), Some("builder"));
    thief.clean_start = false;
    let (mut c, ack) = RawClient::connect_with(tern.addr, thief).await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    c.expect_closed().await;
    // Alice still finds her session and her message.
    let (mut alice, ack) = RawClient::connect_with(tern.addr, first).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert!(ack.session_present);
    let p = alice.recv_publish().await;
    assert_eq!(&p.payload[..], b"for alice only");
}

// ---------------------------------------------------------------------------------------------
// The connection while the password is checked

/// Bob subscribed to `pipelined`, then a connection whose CONNECT (alice with `password`) and a
/// QoS 0 PUBLISH of `payload` to `pipelined` go out in one write; returns Bob, the connection
/// and its CONNACK reason.
async fn publish_behind_connect(
    tern: &Tern,
    password: &str,
    payload: &[u8],
) -> (RawClient, RawClient, ReasonCode) {
    let mut sub = connected(tern, login(V311, "sub", Some("bob"), Some("builder"))).await;
    sub.subscribe("pipelined", QoS::AtMostOnce).await;
    let mut c = RawClient::open(tern.addr, V311).await;
    let connect = login(V311, "pipe", Some("alice"), Some(password));
    let publish = publish("pipelined", payload, QoS::AtMostOnce, false, None);
    c.send_all([Packet::Connect(Box::new(connect)), Packet::Publish(publish)])
        .await;
    let reason = c.connack().await.reason;
    (sub, c, reason)
}

#[tokio::test]
async fn packets_sent_right_after_connect_are_handled_once_the_client_is_in() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let (mut sub, _c, reason) =
        publish_behind_connect(&tern, "wonderland", b"right behind CONNECT").await;
    assert_eq!(reason, ReasonCode::SUCCESS);
    let p = sub.recv_publish().await;
    assert_eq!(&p.payload[..], b"right behind CONNECT");
}

#[tokio::test]
async fn packets_pipelined_behind_a_refused_connect_are_never_acted_on() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let (mut sub, mut c, reason) = publish_behind_connect(&tern, "guess", b"sneaked in").await;
    assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    c.expect_closed().await;
    sub.expect_nothing().await;
}

// ---------------------------------------------------------------------------------------------
// Real clients

#[tokio::test]
async fn mosquitto_pub_logs_in_with_user_and_password() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    let port = tern.addr.port().to_string();
    let run = |password: &str| {
        common::run_bounded(
            Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "t", "-m", "x"])
                .args(["-u", "alice", "-P", password, "-q", "1"]),
            None,
            Duration::from_secs(30),
        )
    };
    let ok = run("wonderland");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = run("looking-glass");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(
        stderr.contains("not authorised") || stderr.contains("bad user"),
        "{stderr}"
    );
}

#[tokio::test]
async fn rumqttc_v5_logs_in_with_user_and_password() {
    use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Packet as P};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    for (password, expected) in [
        ("builder", ConnectReturnCode::Success),
        ("wrong", ConnectReturnCode::BadUserNamePassword),
    ] {
        let mut options = MqttOptions::new("rumq", "127.0.0.1", tern.addr.port());
        options.set_credentials("bob", password);
        let (_client, mut events) = AsyncClient::new(options, 10);
        let code = tokio::time::timeout(common::TIMEOUT, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(P::ConnAck(ack))) => return ack.code,
                    Ok(_) => {}
                    Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => return code,
                    Err(e) => panic!("{e:?}"),
                }
            }
        })
        .await
        .expect("CONNACK in time");
        assert_eq!(code, expected, "password {password}");
    }
}

// ---------------------------------------------------------------------------------------------
// Timing: an unknown user costs what a known user with a wrong password costs

/// Median CONNACK latency of `n` refused logins.
async fn median_refusal(tern: &Tern, user: &str, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let reason = connack(
            tern,
            login(V311, &format!("t{i}"), Some(user), Some("wrong")),
        )
        .await;
        times.push(started.elapsed());
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_take_the_same_time() {
    // An iteration count high enough that hashing dominates the round trip: without the dummy
    // hash for unknown users they would be answered about 20 times faster.
    let pw = mosquitto_passwd(&[("alice", "wonderland")], &["-I", "5000"]);
    let tern = broker(&pw, "allow_anonymous = false\n");
    // Warm up (thread pool, caches), then interleave the two kinds in rounds.
    median_refusal(&tern, "alice", 3).await;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..5 {
        known.push(median_refusal(&tern, "alice", 5).await);
        unknown.push(median_refusal(&tern, "nobody-by-this-name", 5).await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[2].as_secs_f64(), unknown[2].as_secs_f64());
    let ratio = u / k;
    eprintln!("median refusal: known user {k:.6} s, unknown user {u:.6} s, ratio {ratio:.2}");
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown user {u:.6} s vs wrong password {k:.6} s"
    );
}

// ---------------------------------------------------------------------------------------------
// Fail closed

fn serve_fails(config: &str, extension: &str) -> String {
    serve_config_fails(config, extension, &["--listen", "127.0.0.1:0"]).0
}

#[test]
fn a_missing_password_file_stops_startup_naming_it() {
    let err = serve_fails("password_file = \"/nonexistent/tern-passwd\"\n", "toml");
    assert!(err.contains("/nonexistent/tern-passwd"), "{err}");
    assert!(err.contains("password_file"), "{err}");
}

#[test]
fn an_empty_password_file_stops_startup() {
    let file = TempFile::new("passwd", "");
    let err = serve_fails(&format!("password_file {}\n", file.path.display()), "conf");
    assert!(err.contains(&file.path.display().to_string()), "{err}");
}

#[test]
fn a_garbage_password_file_stops_startup_naming_the_line() {
    let file = TempFile::new(
        "passwd",
        "alice:$7$101$AAAA$BBBB\nthis is not a password line\n",
    );
    let err = serve_fails(
        &format!("password_file = \"{}\"\n", file.path.display()),
        "toml",
    );
    assert!(
        err.contains(&format!("{}:", file.path.display())),
        "names the file and line: {err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Reload (SIGHUP): new rules apply at once, bad files change nothing

#[tokio::test]
async fn a_reloaded_acl_revokes_delivery_to_a_persistent_session_already_subscribed() {
    let pw = alice_bob();
    let dir = TempDir::new();
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "user alice\ntopic read news/#\ntopic write marker\ntopic read marker\nuser bob\ntopic write news/#\ntopic write marker\n").unwrap();
    let config = format!(
        "password_file = \"{}\"\nacl_file = \"{}\"\nallow_anonymous = false\n",
        pw.path.display(),
        acl.display()
    );
    let tern = Tern::start_config(&config, "toml");
    let mut session = login(V311, "alice-dev", Some("alice"), Some("wonderland"));
    session.clean_start = false;
    let (mut alice, _) = RawClient::connect_with(tern.addr, session.clone()).await;
    assert_eq!(
        alice.subscribe("news/#", QoS::AtLeastOnce).await,
        [ReasonCode::GRANTED_QOS_1]
    );
    alice.subscribe("marker", QoS::AtLeastOnce).await;
    alice.disconnect().await;
    let mut bob = connected(&tern, login(V311, "bob", Some("bob"), Some("builder"))).await;
    bob.publish("news/1", b"before", QoS::AtLeastOnce, false)
        .await;

    // Alice loses read access to news/#.
    std::fs::write(
        &acl,
        "user alice\ntopic read marker\nuser bob\ntopic write news/#\ntopic write marker\n",
    )
    .unwrap();
    tern.sighup(1);
    bob.publish("news/2", b"after", QoS::AtLeastOnce, false)
        .await;
    bob.publish("marker", b"end", QoS::AtLeastOnce, false).await;

    let (mut alice, ack) = RawClient::connect_with(tern.addr, session).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    loop {
        let p = alice.recv_publish().await;
        alice.ack(&p).await;
        got.push(p.payload.clone());
        if &p.payload[..] == b"end" {
            break;
        }
    }
    // "before" was queued under the old rules; "after" was published once they were gone.
    assert_eq!(
        got,
        [Bytes::from_static(b"before"), Bytes::from_static(b"end")]
    );
}

#[tokio::test]
async fn a_reload_with_a_broken_acl_file_keeps_the_previous_rules() {
    let pw = alice_bob();
    let dir = TempDir::new();
    let acl = dir.path.join("acl");
    std::fs::write(&acl, "user alice\ntopic readwrite a/#\n").unwrap();
    let config = format!(
        "password_file = \"{}\"\nacl_file = \"{}\"\nallow_anonymous = false\n",
        pw.path.display(),
        acl.display()
    );
    let tern = Tern::start_config(&config, "toml");
    for (i, broken) in ["", "topic sideways a/#\n", "user\n"]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&acl, broken).unwrap();
        tern.sighup(i + 1);
        assert!(tern.logs().contains("reload failed"), "{}", tern.logs());
        let mut alice = connected(&tern, login(V5, "a", Some("alice"), Some("wonderland"))).await;
        // Still allowed where the old rules allowed, still refused elsewhere.
        assert_eq!(
            alice.subscribe("a/b", QoS::AtMostOnce).await,
            [ReasonCode::SUCCESS]
        );
        assert_eq!(
            alice.subscribe("b/c", QoS::AtMostOnce).await,
            [ReasonCode::NOT_AUTHORIZED]
        );
    }
}

#[tokio::test]
async fn a_reloaded_password_file_changes_who_gets_in() {
    let pw = alice_bob();
    let tern = broker(&pw, "allow_anonymous = false\n");
    common::mosquitto_passwd(&[
        "-b",
        pw.path.to_str().unwrap(),
        "alice",
        "through-the-looking-glass",
    ]);
    // Until the reload, the old password is the one in force.
    assert_eq!(
        connack(&tern, login(V311, "c", Some("alice"), Some("wonderland"))).await,
        ReasonCode::SUCCESS
    );
    tern.sighup(1);
    assert_eq!(
        connack(&tern, login(V311, "c", Some("alice"), Some("wonderland"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack(
            &tern,
            login(V311, "c", Some("alice"), Some("through-the-looking-glass"))
        )
        .await,
        ReasonCode::SUCCESS
    );
    // A password file made unreadable is a failed reload: the last good one stays.
    std::fs::write(&pw.path, "garbage without a colon\n").unwrap();
    tern.sighup(2);
    assert!(tern.logs().contains("reload failed"));
    // Another client id: "c" belongs to alice until her last connection's session is gone,
    // and taking it over as bob would be refused (0x87) whatever the password file says.
    assert_eq!(
        connack(&tern, login(V311, "c-bob", Some("bob"), Some("builder"))).await,
        ReasonCode::SUCCESS
    );
}
