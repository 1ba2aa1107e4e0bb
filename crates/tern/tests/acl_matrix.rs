//! The ACL matrix: one broker with a password file made by Debian's `mosquitto_passwd`, an ACL
//! file with several users, an anonymous section (`allow_anonymous = true`), `pattern` lines
//! with `%c` and `%u`, `deny` lines and `$SYS` entries, and every identity × action
//! combination with its exact outcome:
//!
//! - identities: anonymous clients and users whose client id or user name is `#`, `+`, `a/b`,
//!   `a/+`, `x#`, empty (an assigned client id; an empty user name), 1000 characters long, and
//!   plain ones, over MQTT 5 and 3.1.1;
//! - actions: PUBLISH at QoS 0, 1 and 2 (v5 PUBACK/PUBREC 0x87; 3.1.1 acknowledged and
//!   dropped), SUBSCRIBE (v5 0x87, 3.1.1 0x80), shared subscriptions (checked with their
//!   filter), a Will at CONNECT (v5 CONNACK 0x87, 3.1.1 5), retained messages delivered on
//!   SUBSCRIBE only where the reader may read them, `$SYS`, and client-id takeover across users.
//!
//! A spy user that may read everything (`#` and `$SYS/#`) watches every case: after each case
//! the acting client (or the spy itself) publishes a marker, and what the spy received up to
//! the marker must be exactly what the ACL allowed: zero deliveries where it denies. A
//! subscriber's queue is in order, so the marker proves that a refused message was never
//! routed, without waiting for silence.
//!
//! A user name or client id containing `+`, `#` or `/` never fills a pattern level: user `a/b`
//! with `pattern readwrite devices/%u/#` gets neither `devices/a/b/...` nor `devices/a/...`,
//! client id `a/b` with `pattern write c/%c` may not write `c/a/b`.
//!
//! The last tests do a subset with real clients (`mosquitto_pub`, `mosquitto_sub`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::fmt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{RawClient, TempDir, Tern, V5, V311, pair, until_payload, will};
use tern_codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

// ---------------------------------------------------------------------------------------------
// The broker

/// Every user's password (made with `mosquitto_passwd -b`).
const PASSWORD: &str = "correct horse";

/// A user name of 1000 characters (valid in the password and the ACL file).
fn long_user() -> &'static str {
    Box::leak("u".repeat(1000).into_boxed_str())
}

/// A client id of 1000 characters.
fn long_id() -> &'static str {
    Box::leak("c".repeat(1000).into_boxed_str())
}

/// Retained messages `alice` sets before the cases run; payload `retained TOPIC`.
const RETAINED: [&str; 4] = [
    "alice/news",
    "alice/diary",
    "retained/open",
    "retained/secret",
];

/// The ACL file. Each named user may write `marker` (the end-of-case marker).
fn acl_text() -> String {
    let mut text = String::from(
        "\
# Anonymous clients (no user name)
topic read public/#
topic write public/anon
topic readwrite marker
topic read retained/#
topic deny retained/secret
topic read $SYS/broker/uptime

user alice
topic readwrite alice/#
topic write public/#
topic readwrite retained/#
topic readwrite marker

user bob
topic read #
topic deny alice/diary
topic readwrite marker

user admin
topic readwrite $SYS/#
topic readwrite marker

# The observer
user spy
topic read #
topic read $SYS/#
topic readwrite marker

# A password file line starting with `#` is a comment (in Mosquitto too): this user can never
# log in, whatever this section grants.
user #
topic readwrite #
topic readwrite $SYS/#
",
    );
    for name in ["+", "a/b", "a/+", "x#", long_user()] {
        text.push_str(&format!(
            "\nuser {name}\ntopic read public/#\ntopic readwrite marker\n"
        ));
    }
    text.push_str(
        "\n# For every client\n\
         pattern readwrite devices/%u/#\n\
         pattern write c/%c\n\
         pattern read inbox/%c/#\n",
    );
    text
}

/// The users of the password file.
fn users() -> Vec<&'static str> {
    vec![
        "alice",
        "bob",
        "admin",
        "spy",
        "#",
        "+",
        "a/b",
        "a/+",
        "x#",
        long_user(),
    ]
}

/// A broker with a password file made by `mosquitto_passwd -b` for [`users`], the ACL file
/// [`acl_text`] and anonymous access on.
struct Broker {
    tern: Tern,
    _dir: TempDir,
}

fn start() -> Broker {
    let dir = TempDir::new();
    let passwd = dir.path.join("passwd");
    let users: Vec<(&str, &str)> = users().into_iter().map(|u| (u, PASSWORD)).collect();
    common::mosquitto_password_file(&passwd, &users, &[]);
    let acl = dir.path.join("acl");
    std::fs::write(&acl, acl_text()).unwrap();
    // No `$SYS` topics of the broker's own: the spy watches `$SYS/#` for what clients publish.
    let config = format!(
        "sys_interval = 0\nallow_anonymous = true\npassword_file = \"{}\"\nacl_file = \"{}\"\n",
        passwd.display(),
        acl.display()
    );
    Broker {
        tern: Tern::start_config(&config, "toml"),
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------------
// Identities, actions, cases

/// Who connects: protocol version, user name (with [`PASSWORD`]) and client id.
#[derive(Clone, Copy)]
struct Who {
    /// Short name for failure messages (ids and names may be 1000 characters long).
    label: &'static str,
    version: ProtocolVersion,
    user: Option<&'static str>,
    id: &'static str,
}

impl fmt::Debug for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.version == V5 { "v5" } else { "3.1.1" };
        write!(f, "{} ({v})", self.label)
    }
}

const fn anon(label: &'static str, version: ProtocolVersion, id: &'static str) -> Who {
    Who {
        label,
        version,
        user: None,
        id,
    }
}

const fn user(
    label: &'static str,
    version: ProtocolVersion,
    name: &'static str,
    id: &'static str,
) -> Who {
    Who {
        label,
        version,
        user: Some(name),
        id,
    }
}

/// What the client tries. Topics and filters may hold `{id}` (the client id, assigned ones
/// included) and `{user}` (the user name).
#[derive(Clone, Copy)]
enum Act {
    /// CONNECT without a Will.
    Login,
    /// PUBLISH (not retained) at this QoS.
    Pub(QoS, &'static str),
    /// PUBLISH at QoS 1 with RETAIN: must not replace what `alice` retained.
    PubRetained(&'static str),
    /// SUBSCRIBE to one filter at QoS 1.
    Sub(&'static str),
    /// CONNECT with a QoS 1 Will on this topic; when accepted, the Will is triggered and must
    /// reach the spy.
    Will(&'static str),
    /// SUBSCRIBE to `filter`; when granted, exactly the retained messages on `topics` arrive
    /// (then a live marker that `alice` publishes on `marker`).
    Retained {
        filter: &'static str,
        marker: &'static str,
        topics: &'static [&'static str],
    },
    /// Connect with the client id of `victim`, which is connected.
    TakeOver(Who),
}

impl fmt::Debug for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Login => write!(f, "CONNECT"),
            Self::Pub(qos, t) => write!(f, "PUBLISH QoS {} to {t:?}", *qos as u8),
            Self::PubRetained(t) => write!(f, "PUBLISH retained to {t:?}"),
            Self::Sub(filter) => write!(f, "SUBSCRIBE {filter:?}"),
            Self::Will(t) => write!(f, "CONNECT with a Will on {t:?}"),
            Self::Retained { filter, .. } => write!(f, "retained messages for {filter:?}"),
            Self::TakeOver(victim) => write!(f, "take over the client id of {victim:?}"),
        }
    }
}

/// The expected outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Allowed,
    Denied,
}

use Act::{Login, Pub, PubRetained, Retained, Sub, TakeOver, Will};
use Want::{Allowed, Denied};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

/// Replaces `{id}` and `{user}`.
fn fill(text: &str, id: &str, who: &Who) -> String {
    text.replace("{id}", id)
        .replace("{user}", who.user.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// The runner

/// The broker, the spy (user `spy`, subscribed to `#` and `$SYS/#`) and `alice`'s long-lived
/// connection that set the retained messages and publishes markers for readers.
struct Matrix {
    b: Broker,
    spy: RawClient,
    setter: RawClient,
}

fn login_packet(who: &Who, id: &str) -> Connect {
    common::login(who.version, id, who.user, who.user.map(|_| PASSWORD))
}

/// The client id the broker uses: the assigned one for an empty id.
fn client_id(who: &Who, ack: &tern_codec::ConnAck) -> String {
    if who.id.is_empty() {
        ack.properties
            .assigned_client_identifier
            .as_deref()
            .expect("assigned client id")
            .to_owned()
    } else {
        who.id.to_owned()
    }
}

impl Matrix {
    async fn start() -> Self {
        let b = start();
        let spy_who = user("spy", V5, "spy", "spy");
        let (mut spy, ack) =
            RawClient::connect_with(b.tern.addr, login_packet(&spy_who, "spy")).await;
        assert_eq!(
            ack.reason,
            ReasonCode::SUCCESS,
            "spy login: {}",
            b.tern.logs()
        );
        assert_eq!(spy.subscribe("#", Q1).await, [ReasonCode::GRANTED_QOS_1]);
        assert_eq!(
            spy.subscribe("$SYS/#", Q1).await,
            [ReasonCode::GRANTED_QOS_1]
        );
        let alice = user("alice", V5, "alice", "setter");
        let (mut setter, ack) =
            RawClient::connect_with(b.tern.addr, login_packet(&alice, "setter")).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS);
        let mut expected = Vec::new();
        for topic in RETAINED {
            let payload = format!("retained {topic}");
            assert_eq!(
                setter.publish(topic, payload.as_bytes(), Q1, true).await,
                ReasonCode::SUCCESS,
                "alice retains {topic}"
            );
            expected.push(pair(topic, &payload));
        }
        setter.publish("marker", b"setup", Q1, false).await;
        expected.push(pair("marker", "setup"));
        assert_eq!(until_payload(&mut spy, "setup", "setup").await, expected);
        Self { b, spy, setter }
    }

    /// Connects `who` with client id `id` and an optional Will; returns the CONNACK.
    async fn connect(
        &self,
        who: &Who,
        id: &str,
        will_topic: Option<(&str, &str)>,
    ) -> (RawClient, tern_codec::ConnAck) {
        let mut packet = login_packet(who, id);
        packet.will = will_topic.map(|(topic, payload)| will(topic, payload.as_bytes(), Q1, false));
        RawClient::connect_with(self.b.tern.addr, packet).await
    }

    /// Connects `who` with its own client id and asserts success; returns the client and the
    /// client id in use.
    async fn login(&self, who: &Who, case: &str) -> (RawClient, String) {
        let (c, ack) = self.connect(who, who.id, None).await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "{case}: CONNACK");
        let id = client_id(who, &ack);
        (c, id)
    }

    /// The spy publishes a marker; it must be the only thing the spy receives (plus `also`,
    /// in any order).
    async fn spy_check(&mut self, case: &str, also: Vec<(String, String)>) {
        let marker = format!("after {case}");
        self.spy
            .publish("marker", marker.as_bytes(), Q1, false)
            .await;
        let mut got = until_payload(&mut self.spy, &marker, case).await;
        got.pop();
        let mut want = also;
        got.sort();
        want.sort();
        assert_eq!(got, want, "{case}: what the spy received");
    }

    async fn run(&mut self, n: usize, who: Who, act: Act, want: Want) {
        let case = format!("case {n}: {who:?} {act:?} should be {want:?}");
        let v5 = who.version == V5;
        let refused = if v5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::UNSPECIFIED_ERROR // SUBACK 0x80
        };
        let mut spy_also = Vec::new();
        match act {
            Login => {
                let (mut c, ack) = self.connect(&who, who.id, None).await;
                if want == Allowed {
                    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{case}");
                    if v5 && who.id.is_empty() {
                        assert!(
                            ack.properties.assigned_client_identifier.is_some(),
                            "{case}"
                        );
                    }
                    c.disconnect().await;
                } else {
                    // v5 0x86, 3.1.1 return code 4 (read back as 0x86).
                    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD, "{case}");
                    c.expect_closed().await;
                }
            }
            Pub(..) | PubRetained(_) => {
                let (qos, topic, retain) = match act {
                    Pub(qos, topic) => (qos, topic, false),
                    PubRetained(topic) => (Q1, topic, true),
                    _ => unreachable!(),
                };
                let (mut c, id) = self.login(&who, &case).await;
                let topic = fill(topic, &id, &who);
                let payload = format!("case {n}");
                let reason = c.publish(&topic, payload.as_bytes(), qos, retain).await;
                let expected = if want == Denied && v5 && qos != Q0 {
                    ReasonCode::NOT_AUTHORIZED
                } else {
                    ReasonCode::SUCCESS
                };
                assert_eq!(reason, expected, "{case}: PUBACK/PUBREC");
                // The same client's marker proves the order.
                let marker = format!("case {n} marker");
                assert_eq!(
                    c.publish("marker", marker.as_bytes(), Q1, false).await,
                    ReasonCode::SUCCESS,
                    "{case}: marker"
                );
                let mut want_seen = Vec::new();
                if want == Allowed {
                    want_seen.push(pair(&topic, &payload));
                }
                want_seen.push(pair("marker", &marker));
                assert_eq!(
                    until_payload(&mut self.spy, &marker, &case).await,
                    want_seen,
                    "{case}: what the spy received"
                );
                c.disconnect().await;
            }
            Sub(filter) => {
                let (mut c, id) = self.login(&who, &case).await;
                let filter = fill(filter, &id, &who);
                let expected = if want == Allowed {
                    ReasonCode::GRANTED_QOS_1
                } else {
                    refused
                };
                assert_eq!(c.subscribe(&filter, Q1).await, [expected], "{case}: SUBACK");
                c.disconnect().await;
            }
            Will(topic) => {
                let topic = fill(topic, who.id, &who);
                let payload = format!("case {n} will");
                let (mut c, ack) = self.connect(&who, who.id, Some((&topic, &payload))).await;
                if want == Allowed {
                    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{case}: CONNACK");
                    // Make the Will go out, and wait for the spy to get it.
                    if v5 {
                        c.send(&Packet::Disconnect(Disconnect::with_reason(
                            ReasonCode::DISCONNECT_WITH_WILL,
                        )))
                        .await;
                        c.expect_closed().await;
                    } else {
                        drop(c); // connection lost
                    }
                    assert_eq!(
                        until_payload(&mut self.spy, &payload, &case).await,
                        [pair(&topic, &payload)],
                        "{case}: the Will reaches the spy"
                    );
                } else {
                    // v5 0x87, 3.1.1 return code 5 (read back as 0x87).
                    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{case}: CONNACK");
                    c.expect_closed().await;
                }
            }
            Retained {
                filter,
                marker,
                topics,
            } => {
                let (mut c, _) = self.login(&who, &case).await;
                if want == Denied {
                    assert!(
                        topics.is_empty(),
                        "{case}: a refused SUBSCRIBE gets nothing"
                    );
                    assert_eq!(c.subscribe(filter, Q1).await, [refused], "{case}: SUBACK");
                    c.disconnect().await;
                } else {
                    assert_eq!(
                        c.subscribe(filter, Q1).await,
                        [ReasonCode::GRANTED_QOS_1],
                        "{case}: SUBACK"
                    );
                    let live = format!("case {n} live");
                    self.setter
                        .publish(marker, live.as_bytes(), Q1, false)
                        .await;
                    spy_also.push(pair(marker, &live));
                    let mut got = until_payload(&mut c, &live, &case).await;
                    got.pop();
                    got.sort();
                    let mut expected: Vec<_> = topics
                        .iter()
                        .map(|t| pair(t, &format!("retained {t}")))
                        .collect();
                    expected.sort();
                    assert_eq!(got, expected, "{case}: retained messages delivered");
                    c.disconnect().await;
                }
            }
            TakeOver(victim) => {
                let (mut owner, ack) = self.connect(&victim, victim.id, None).await;
                assert_eq!(
                    ack.reason,
                    ReasonCode::SUCCESS,
                    "{case}: the owner connects"
                );
                let id = client_id(&victim, &ack);
                let (mut thief, ack) = self.connect(&who, &id, None).await;
                if want == Allowed {
                    assert_eq!(ack.reason, ReasonCode::SUCCESS, "{case}: CONNACK");
                    if victim.version == V5 {
                        owner
                            .expect_disconnect(ReasonCode::SESSION_TAKEN_OVER)
                            .await;
                    } else {
                        owner.expect_closed().await;
                    }
                    thief.disconnect().await;
                } else {
                    // v5 0x87, 3.1.1 return code 5.
                    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{case}: CONNACK");
                    thief.expect_closed().await;
                    // The owner was not kicked.
                    assert!(
                        owner.sync().await.is_empty(),
                        "{case}: the owner is still there"
                    );
                    owner.disconnect().await;
                }
            }
        }
        self.spy_check(&case, spy_also).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The matrix

#[tokio::test]
async fn acl_matrix_every_identity_and_action_gets_its_exact_outcome() {
    // Anonymous clients.
    let a_plain = anon("anonymous plain", V5, "plain");
    let a_plain3 = anon("anonymous plain", V311, "plain3");
    let a_hash = anon("anonymous id #", V5, "#");
    let a_plus = anon("anonymous id +", V311, "+");
    let a_slash = anon("anonymous id a/b", V5, "a/b");
    let a_slash_plus = anon("anonymous id a/+", V5, "a/+");
    let a_empty = anon("anonymous empty id", V5, "");
    let a_long = anon("anonymous 1000-character id", V311, long_id());
    // Users.
    let alice = user("alice", V5, "alice", "alice-1");
    let alice_slash = user("alice id a/b", V5, "alice", "a/b");
    let bob = user("bob", V311, "bob", "bob-1");
    let admin = user("admin", V5, "admin", "admin-1");
    let u_plus = user("user +", V311, "+", "u-plus");
    let u_slash = user("user a/b", V5, "a/b", "u-slash");
    let u_slash_plus = user("user a/+", V5, "a/+", "u-aplus");
    let u_xhash = user("user x#", V311, "x#", "u-xhash");
    let u_long = user("1000-character user", V5, long_user(), "u-long");
    let u_long3 = user("1000-character user", V311, long_user(), "u-long3");
    let u_hash = user("user #", V5, "#", "u-hash");
    let u_hash3 = user("user #", V311, "#", "u-hash3");
    let u_empty = user("empty user name", V5, "", "u-empty");
    let u_empty3 = user("empty user name", V311, "", "u-empty3");

    let cases: Vec<(Who, Act, Want)> = vec![
        // ---- Anonymous, plain client id: the anonymous section and the %c patterns.
        (a_plain, Login, Allowed),
        (a_plain, Pub(Q0, "public/anon"), Allowed),
        (a_plain, Pub(Q1, "public/anon"), Allowed),
        (a_plain, Pub(Q2, "public/anon"), Allowed),
        (a_plain, Pub(Q0, "public/other"), Denied), // read only
        (a_plain, Pub(Q1, "public/other"), Denied),
        (a_plain, Pub(Q2, "public/other"), Denied),
        (a_plain, Pub(Q1, "c/{id}"), Allowed), // pattern write c/%c
        (a_plain, Pub(Q1, "c/other"), Denied),
        (a_plain, Pub(Q1, "devices/plain/x"), Denied), // %u needs a user name
        (a_plain, Pub(Q1, "alice/x"), Denied),
        (a_plain, PubRetained("retained/open"), Denied), // alice's retained message stays
        (a_plain, Pub(Q1, "$SYS/broker/uptime"), Denied),
        (a_plain, Sub("public/#"), Allowed),
        (a_plain, Sub("public/anon"), Allowed),
        (a_plain, Sub("#"), Denied),
        (a_plain, Sub("+/#"), Denied),
        (a_plain, Sub("inbox/{id}/#"), Allowed), // pattern read inbox/%c/#
        (a_plain, Sub("inbox/+/#"), Denied),
        (a_plain, Sub("inbox/other/#"), Denied),
        (a_plain, Sub("retained/secret"), Denied), // covered by the deny
        (a_plain, Sub("retained/+"), Allowed),     // the deny only overlaps it
        (a_plain, Sub("$SYS/broker/uptime"), Allowed),
        (a_plain, Sub("$SYS/#"), Denied),
        (a_plain, Sub("$SYS/broker/+"), Denied),
        (a_plain, Sub("+/broker/uptime"), Denied), // `+` never matches `$SYS`
        (a_plain, Sub("$share/g/public/#"), Allowed),
        (a_plain, Sub("$share/g/retained/secret"), Denied),
        (a_plain, Sub("$share/g/#"), Denied),
        (a_plain, Sub("$share/g/inbox/{id}/#"), Allowed),
        (a_plain, Will("public/anon"), Allowed),
        (a_plain, Will("c/{id}"), Allowed),
        (a_plain, Will("public/other"), Denied),
        (a_plain, Will("alice/will"), Denied),
        (a_plain, Will("$SYS/broker/will"), Denied),
        (
            a_plain,
            Retained {
                filter: "retained/#",
                marker: "retained/live",
                topics: &["retained/open"], // not retained/secret
            },
            Allowed,
        ),
        (
            a_plain,
            Retained {
                filter: "alice/#",
                marker: "alice/live",
                topics: &[],
            },
            Denied,
        ),
        // ---- Anonymous over 3.1.1: refusals are acknowledged (PUBACK/PUBREC) or 0x80 / 5.
        (a_plain3, Pub(Q0, "public/other"), Denied),
        (a_plain3, Pub(Q1, "public/other"), Denied),
        (a_plain3, Pub(Q2, "public/other"), Denied),
        (a_plain3, Pub(Q1, "public/anon"), Allowed),
        (a_plain3, Pub(Q2, "c/{id}"), Allowed),
        (a_plain3, PubRetained("retained/secret"), Denied),
        (a_plain3, Sub("public/#"), Allowed),
        (a_plain3, Sub("#"), Denied),
        (a_plain3, Sub("$SYS/#"), Denied),
        (a_plain3, Sub("$share/g/retained/secret"), Denied),
        (a_plain3, Will("public/anon"), Allowed),
        (a_plain3, Will("public/other"), Denied),
        (
            a_plain3,
            Retained {
                filter: "retained/+",
                marker: "retained/live",
                topics: &["retained/open"],
            },
            Allowed,
        ),
        // ---- Anonymous, client id `#`: no pattern with %c applies; topic entries still do.
        (a_hash, Login, Allowed),
        (a_hash, Pub(Q1, "public/anon"), Allowed),
        (a_hash, Pub(Q1, "c/x"), Denied),
        (a_hash, Pub(Q0, "c/x"), Denied),
        (a_hash, Sub("inbox/#"), Denied),
        (a_hash, Sub("inbox/+/#"), Denied),
        (a_hash, Sub("inbox/x/y"), Denied),
        (a_hash, Sub("$share/g/inbox/#"), Denied),
        (a_hash, Sub("public/#"), Allowed),
        (a_hash, Will("c/x"), Denied),
        // ---- Anonymous, client id `+`.
        (a_plus, Pub(Q1, "c/x"), Denied),
        (a_plus, Pub(Q2, "c/x"), Denied),
        (a_plus, Sub("inbox/+/#"), Denied),
        (a_plus, Sub("inbox/+"), Denied),
        (a_plus, Sub("inbox/x/#"), Denied),
        (a_plus, Pub(Q1, "public/anon"), Allowed),
        (a_plus, Will("c/x"), Denied),
        // ---- Anonymous, client id `a/b`: `c/%c` must not become `c/a/b`.
        (a_slash, Pub(Q0, "c/a/b"), Denied),
        (a_slash, Pub(Q1, "c/a/b"), Denied),
        (a_slash, Pub(Q2, "c/a/b"), Denied),
        (a_slash, Pub(Q1, "c/a"), Denied),
        (a_slash, Sub("inbox/a/b/#"), Denied),
        (a_slash, Sub("inbox/a/#"), Denied),
        (a_slash, Sub("$share/g/inbox/a/b/#"), Denied),
        (a_slash, Will("c/a/b"), Denied),
        (a_slash, Pub(Q1, "public/anon"), Allowed),
        // ---- Anonymous, client id `a/+`.
        (a_slash_plus, Pub(Q1, "c/a/x"), Denied),
        (a_slash_plus, Pub(Q1, "c/a"), Denied),
        (a_slash_plus, Sub("inbox/a/+/#"), Denied),
        (a_slash_plus, Sub("inbox/a/x/#"), Denied),
        (a_slash_plus, Sub("inbox/a/#"), Denied),
        // ---- Anonymous, empty client id: the assigned id fills %c.
        (a_empty, Login, Allowed),
        (a_empty, Pub(Q1, "c/{id}"), Allowed),
        (a_empty, Pub(Q1, "c/"), Denied),
        (a_empty, Sub("inbox/{id}/#"), Allowed),
        (a_empty, Sub("inbox/+/#"), Denied),
        (a_empty, Sub("inbox//#"), Denied),
        (a_empty, Will("public/anon"), Allowed),
        (a_empty, Will("c/"), Denied),
        // ---- Anonymous, 1000-character client id: a safe value, %c works.
        (a_long, Pub(Q1, "c/{id}"), Allowed),
        (a_long, Pub(Q1, "c/other"), Denied),
        (a_long, Sub("inbox/{id}/#"), Allowed),
        (a_long, Sub("inbox/+/#"), Denied),
        (a_long, Will("c/{id}"), Allowed),
        // ---- alice: her section, %u and %c patterns, no anonymous rights.
        (alice, Login, Allowed),
        (alice, Pub(Q0, "alice/x"), Allowed),
        (alice, Pub(Q1, "alice/x"), Allowed),
        (alice, Pub(Q2, "alice/x"), Allowed),
        (alice, Pub(Q1, "public/x"), Allowed),
        (alice, Pub(Q1, "devices/alice/x"), Allowed), // pattern readwrite devices/%u/#
        (alice, Pub(Q1, "c/{id}"), Allowed),
        (alice, Pub(Q0, "bob/x"), Denied),
        (alice, Pub(Q1, "bob/x"), Denied),
        (alice, Pub(Q2, "devices/bob/x"), Denied),
        (alice, Pub(Q1, "$SYS/broker/x"), Denied),
        (alice, Sub("alice/#"), Allowed),
        (alice, Sub("devices/alice/#"), Allowed),
        (alice, Sub("inbox/{id}/+"), Allowed),
        (alice, Sub("public/#"), Denied), // write only
        (alice, Sub("#"), Denied),
        (alice, Sub("devices/+/#"), Denied),
        (alice, Sub("$SYS/#"), Denied),
        (alice, Sub("$SYS/broker/uptime"), Denied), // anonymous rights are not hers
        (alice, Sub("$share/g/alice/#"), Allowed),
        (alice, Sub("$share/g/devices/alice/#"), Allowed),
        (alice, Sub("$share/g/#"), Denied),
        (alice, Sub("$share/g/devices/bob/#"), Denied),
        (alice, Will("alice/will"), Allowed),
        (alice, Will("devices/alice/will"), Allowed),
        (alice, Will("bob/will"), Denied),
        (alice, Will("$SYS/will"), Denied),
        (
            alice,
            Retained {
                filter: "alice/#",
                marker: "alice/live",
                topics: &["alice/diary", "alice/news"],
            },
            Allowed,
        ),
        // ---- alice with client id `a/b`: %u still applies, %c does not.
        (alice_slash, Pub(Q1, "devices/alice/x"), Allowed),
        (alice_slash, Pub(Q1, "c/a/b"), Denied),
        (alice_slash, Sub("inbox/a/b/#"), Denied),
        // ---- bob (3.1.1): reads `#` except alice/diary, writes nothing but marker and %u.
        (bob, Sub("#"), Allowed), // the deny only overlaps it
        (bob, Sub("alice/+"), Allowed),
        (bob, Sub("alice/diary"), Denied),
        (bob, Sub("$SYS/#"), Denied), // `#` does not grant `$SYS`
        (bob, Sub("$SYS/broker/uptime"), Denied),
        (bob, Sub("$share/g/#"), Allowed),
        (bob, Sub("$share/g/alice/diary"), Denied),
        (bob, Pub(Q0, "alice/x"), Denied),
        (bob, Pub(Q1, "alice/x"), Denied),
        (bob, Pub(Q2, "alice/x"), Denied),
        (bob, Pub(Q1, "devices/bob/x"), Allowed),
        (bob, PubRetained("alice/news"), Denied),
        (bob, Will("alice/will"), Denied),
        (bob, Will("devices/bob/will"), Allowed),
        (
            bob,
            Retained {
                filter: "#",
                marker: "marker",
                topics: &["alice/news", "retained/open", "retained/secret"], // not alice/diary
            },
            Allowed,
        ),
        (
            bob,
            Retained {
                filter: "alice/+",
                marker: "alice/live",
                topics: &["alice/news"],
            },
            Allowed,
        ),
        // ---- admin: `$SYS` readable; publishing there is refused whatever the ACL says.
        (admin, Sub("$SYS/#"), Allowed),
        (admin, Sub("$SYS/broker/+"), Allowed),
        (admin, Sub("$share/g/$SYS/#"), Allowed),
        (admin, Sub("#"), Denied),
        (admin, Pub(Q0, "$SYS/broker/x"), Denied),
        (admin, Pub(Q1, "$SYS/broker/x"), Denied),
        (admin, Will("$SYS/broker/x"), Denied),
        // ---- user `+` (3.1.1): %u never becomes a wildcard.
        (u_plus, Login, Allowed),
        (u_plus, Sub("devices/+/#"), Denied),
        (u_plus, Sub("devices/#"), Denied),
        (u_plus, Sub("devices/x"), Denied),
        (u_plus, Pub(Q0, "devices/x"), Denied),
        (u_plus, Pub(Q1, "devices/x/y"), Denied),
        (u_plus, Sub("public/#"), Allowed),
        (u_plus, Will("devices/x"), Denied),
        // ---- user `a/b`: devices/%u/# must not give devices/a/b/... nor devices/a/...
        (u_slash, Pub(Q0, "devices/a/b/x"), Denied),
        (u_slash, Pub(Q1, "devices/a/b/x"), Denied),
        (u_slash, Pub(Q2, "devices/a/b"), Denied),
        (u_slash, Pub(Q1, "devices/a/x"), Denied),
        (u_slash, Sub("devices/a/b/#"), Denied),
        (u_slash, Sub("devices/a/#"), Denied),
        (u_slash, Sub("$share/g/devices/a/b/#"), Denied),
        (u_slash, Will("devices/a/b/x"), Denied),
        (u_slash, Sub("public/#"), Allowed),
        // ---- user `a/+`.
        (u_slash_plus, Sub("devices/a/+/#"), Denied),
        (u_slash_plus, Sub("devices/a/+"), Denied),
        (u_slash_plus, Pub(Q1, "devices/a/x"), Denied),
        (u_slash_plus, Pub(Q1, "devices/a/x/y"), Denied),
        // ---- user `x#` (3.1.1).
        (u_xhash, Login, Allowed),
        (u_xhash, Sub("devices/#"), Denied),
        (u_xhash, Sub("devices/+"), Denied),
        (u_xhash, Pub(Q1, "devices/x"), Denied),
        (u_xhash, Sub("public/#"), Allowed),
        // ---- 1000-character user name: a safe value, %u works.
        (u_long, Login, Allowed),
        (u_long, Pub(Q1, "devices/{user}/x"), Allowed),
        (u_long, Pub(Q1, "devices/other/x"), Denied),
        (u_long, Sub("devices/{user}/#"), Allowed),
        (u_long, Sub("devices/+/#"), Denied),
        (u_long, Will("devices/{user}/will"), Allowed),
        (u_long3, Pub(Q2, "devices/{user}/y"), Allowed),
        (u_long3, Sub("public/#"), Allowed),
        // ---- Users who cannot log in: `#` (its password line is a comment) and "".
        (u_hash, Login, Denied),
        (u_hash3, Login, Denied),
        (u_empty, Login, Denied),
        (u_empty3, Login, Denied),
        // ---- Client-id takeover across users.
        (bob, TakeOver(alice), Denied),
        (u_long, TakeOver(alice), Denied),
        (u_slash, TakeOver(a_slash), Denied), // an anonymous client's id
        (alice, TakeOver(a_plain), Denied),
        (alice, TakeOver(u_long3), Denied),
        (u_plus, TakeOver(u_slash_plus), Denied),
        (a_plain, TakeOver(alice), Denied), // no user name is not a user's name
        (a_plain3, TakeOver(bob), Denied),
        (bob, TakeOver(a_long), Denied),
        (alice, TakeOver(alice), Allowed), // the same user
        (alice_slash, TakeOver(alice), Allowed),
        (a_plain3, TakeOver(a_plain), Allowed), // anonymous ids belong to no user
        (a_plain, TakeOver(a_long), Allowed),
        (a_plain, TakeOver(a_empty), Allowed),
    ];

    let mut m = Matrix::start().await;
    for (n, (who, act, want)) in cases.into_iter().enumerate() {
        m.run(n, who, act, want).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A subset with real clients

/// Runs a Mosquitto client tool against the broker with `args`; `user` logs in with
/// [`PASSWORD`].
fn mosquitto(tool: &str, b: &Broker, version: &str, user: Option<&str>, args: &[&str]) -> Output {
    let port = b.tern.addr.port().to_string();
    let mut cmd = Command::new(tool);
    cmd.args(["-h", "127.0.0.1", "-p", &port, "-V", version]);
    if let Some(name) = user {
        cmd.args(["-u", name, "-P", PASSWORD]);
    }
    common::run_bounded(cmd.args(args), None, Duration::from_secs(30))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn acl_matrix_with_mosquitto_pub_and_mosquitto_sub() {
    let mut m = Matrix::start().await;
    let b = &m.b;

    // PUBLISH: refused ones never reach the spy.
    let out = mosquitto(
        "mosquitto_pub",
        b,
        "5",
        Some("a/b"),
        &["-q", "1", "-t", "devices/a/b/x", "-m", "leak"],
    );
    assert!(
        stderr(&out).contains("Publish 1 failed: Not authorized"),
        "user a/b, v5: {}",
        stderr(&out)
    );
    let out = mosquitto(
        "mosquitto_pub",
        b,
        "5",
        Some("+"),
        &["-q", "2", "-t", "devices/x/y", "-m", "leak"],
    );
    assert!(
        stderr(&out).contains("Not authorized"),
        "user +, v5: {}",
        stderr(&out)
    );
    let out = mosquitto(
        "mosquitto_pub",
        b,
        "mqttv311",
        Some("a/+"),
        &["-q", "1", "-t", "devices/a/x", "-m", "leak"],
    );
    assert!(
        out.status.success(),
        "3.1.1 refusals are acknowledged: {}",
        stderr(&out)
    );
    let out = mosquitto(
        "mosquitto_pub",
        b,
        "mqttv311",
        None,
        &["-i", "a/b", "-t", "c/a/b", "-m", "leak"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = mosquitto(
        "mosquitto_pub",
        b,
        "5",
        Some("admin"),
        &["-q", "1", "-t", "$SYS/broker/x", "-m", "leak"],
    );
    assert!(
        stderr(&out).contains("Not authorized"),
        "admin to $SYS: {}",
        stderr(&out)
    );
    m.spy_check("mosquitto_pub refusals", Vec::new()).await;
    // Allowed ones do.
    let long = long_user();
    let topic = format!("devices/{long}/x");
    for (user, topic) in [("alice", "devices/alice/x"), (long, &*topic)] {
        let out = mosquitto(
            "mosquitto_pub",
            &m.b,
            "5",
            Some(user),
            &["-q", "1", "-t", topic, "-m", "ok"],
        );
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{user:.10}: {}",
            stderr(&out)
        );
    }
    m.spy_check(
        "mosquitto_pub grants",
        vec![pair("devices/alice/x", "ok"), pair(&topic, "ok")],
    )
    .await;
    let b = &m.b;

    // SUBSCRIBE (`-E`: exit once the SUBACK is in).
    let denied = "All subscription requests were denied";
    for (version, user, filter, allowed) in [
        ("5", Some("+"), "devices/+/#", false),
        ("mqttv311", Some("a/b"), "devices/a/b/#", false),
        ("5", Some("a/+"), "$share/g/devices/a/+/#", false),
        ("5", None, "$SYS/#", false),
        ("mqttv311", Some("bob"), "$SYS/#", false),
        ("5", Some("alice"), "#", false),
        ("5", Some("admin"), "$SYS/#", true),
        ("mqttv311", Some("bob"), "#", true),
        ("5", None, "$SYS/broker/uptime", true),
    ] {
        let out = mosquitto(
            "mosquitto_sub",
            b,
            version,
            user,
            &["-t", filter, "-E", "-W", "5"],
        );
        let err = stderr(&out);
        assert_eq!(
            !err.contains(denied),
            allowed,
            "{user:?} {filter} ({version}): {err}"
        );
        if allowed {
            assert!(out.status.success(), "{user:?} {filter} ({version}): {err}");
        }
    }

    // A Will the user may not write is refused at CONNECT.
    let will = [
        "--will-topic",
        "alice/will",
        "--will-payload",
        "w",
        "-t",
        "marker",
        "-m",
        "x",
    ];
    let out = mosquitto("mosquitto_pub", b, "mqttv311", Some("bob"), &will);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Connection Refused: not authorised"),
        "{}",
        stderr(&out)
    );
    let out = mosquitto("mosquitto_pub", b, "5", Some("bob"), &will);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Not authorized"), "{}", stderr(&out));
    m.spy_check("mosquitto_pub wills", Vec::new()).await;

    // Retained messages: bob reads `#` but not alice/diary (`--retained-only` exits at the
    // first live message, which alice sends until it has).
    let port = m.b.tern.addr.port().to_string();
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-u", "bob", "-P", PASSWORD])
        .args(["-t", "#", "-v", "--retained-only", "-W", "10"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mosquitto_sub");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut live = Vec::new();
    while sub.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "mosquitto_sub did not exit");
        let payload = format!("live {}", live.len());
        m.setter
            .publish("alice/live", payload.as_bytes(), Q1, false)
            .await;
        live.push(pair("alice/live", &payload));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = sub.wait_with_output().unwrap();
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "alice/news retained alice/news",
            "retained/open retained retained/open",
            "retained/secret retained retained/secret"
        ],
        "{}",
        stderr(&out)
    );
    m.spy_check("mosquitto_sub retained", live).await;
}
