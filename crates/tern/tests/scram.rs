//! SCRAM enhanced authentication (MQTT 5 AUTH): protocol edge cases with raw packets. The
//! client side of SCRAM here is computed with Tern's own primitives, so these tests are not an
//! independent check of SCRAM itself (tests/python/test_scram.py does that with `scramp`); they
//! check what the broker does around it: methods that change, AUTH out of turn, a bad nonce,
//! SCRAM without a password file, traffic during re-authentication.

#![allow(clippy::unwrap_used)] // test code: failing loudly is the point

mod common;

use base64ct::{Base64, Encoding};
use bytes::Bytes;
use common::{RawClient, TempDir, Tern, V5, connect_packet};
use tern::auth::scram::ScramMechanism;
use tern_codec::{Auth, ByteString, Packet, QoS, ReasonCode};

const METHOD: &str = "SCRAM-SHA-256";
const MECHANISM: ScramMechanism = ScramMechanism::Sha256;

/// A broker whose password file `tern passwd --scram` wrote for alice (password "pencil").
fn broker() -> (Tern, TempDir) {
    let dir = TempDir::new();
    let path = dir.path.join("passwd");
    let out = common::run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["passwd", "--scram", "-c", "-b"])
            .arg(&path)
            .args(["alice", "pencil"]),
        None,
        common::TIMEOUT,
    );
    assert!(out.status.success(), "tern passwd: {:?}", out);
    let tern = Tern::start_config(&format!("password_file = \"{}\"\n", path.display()), "toml");
    (tern, dir)
}

fn auth(reason: ReasonCode, method: &str, data: &str) -> Packet {
    let mut a = Auth {
        reason,
        ..Auth::default()
    };
    a.properties.authentication_method = Some(ByteString::from(method));
    a.properties.authentication_data = Some(Bytes::copy_from_slice(data.as_bytes()));
    Packet::Auth(a)
}

/// The client's half of one exchange, from RFC 5802 §3.
struct ScramClient {
    password: &'static str,
    first_bare: String,
    server_first: String,
}

impl ScramClient {
    fn new(user: &str, password: &'static str) -> Self {
        Self {
            password,
            first_bare: format!("n={user},r=clientNONCE"),
            server_first: String::new(),
        }
    }

    fn first(&self) -> String {
        format!("n,,{}", self.first_bare)
    }

    /// Reads AUTH 0x18 with the server-first-message.
    fn take_server_first(&mut self, packet: Packet) {
        let Packet::Auth(a) = packet else {
            panic!("expected AUTH, got {packet:?}")
        };
        assert_eq!(a.reason, ReasonCode::CONTINUE_AUTHENTICATION);
        assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        let data = a.properties.authentication_data.expect("server-first");
        self.server_first = String::from_utf8(data.to_vec()).unwrap();
        assert!(
            self.server_first.starts_with("r=clientNONCE"),
            "{}",
            self.server_first
        );
    }

    /// The client-final-message, with `nonce` instead of the server's if given.
    fn last(&self, nonce: Option<&str>) -> String {
        let attr = |name: &str| {
            self.server_first
                .split(',')
                .find_map(|a| a.strip_prefix(name))
                .unwrap()
                .to_owned()
        };
        let salt = Base64::decode_vec(&attr("s=")).unwrap();
        let iterations = attr("i=").parse().unwrap();
        let salted = MECHANISM.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = MECHANISM.hmac(&salted, b"Client Key");
        let stored_key = MECHANISM.hash(&client_key);
        let nonce = nonce.map_or_else(|| attr("r="), str::to_owned);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{},{without_proof}", self.first_bare, self.server_first);
        let signature = MECHANISM.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", Base64::encode_string(&proof))
    }
}

/// Sends CONNECT with `client`'s first message and takes the server-first-message.
async fn begin(tern: &Tern, client: &mut ScramClient) -> RawClient {
    let mut c = connect_packet(V5, "scram", true);
    c.properties.authentication_method = Some(ByteString::from(METHOD));
    c.properties.authentication_data = Some(Bytes::from(client.first().into_bytes()));
    let mut raw = RawClient::open(tern.addr, V5).await;
    raw.send(&Packet::Connect(Box::new(c))).await;
    client.take_server_first(raw.recv().await);
    raw
}

/// A complete login as alice.
async fn login(tern: &Tern) -> RawClient {
    let mut client = ScramClient::new("alice", "pencil");
    let mut raw = begin(tern, &mut client).await;
    raw.send(&auth(
        ReasonCode::CONTINUE_AUTHENTICATION,
        METHOD,
        &client.last(None),
    ))
    .await;
    let ack = raw.connack().await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert!(
        ack.properties
            .authentication_data
            .is_some_and(|d| d.starts_with(b"v="))
    );
    raw
}

#[tokio::test]
async fn mqtt5_4_12_0_5_auth_with_another_method_during_connect_is_0x82() {
    let (tern, _dir) = broker();
    let mut client = ScramClient::new("alice", "pencil");
    let mut raw = begin(&tern, &mut client).await;
    raw.send(&auth(
        ReasonCode::CONTINUE_AUTHENTICATION,
        "SCRAM-SHA-512",
        &client.last(None),
    ))
    .await;
    assert_eq!(raw.connack().await.reason, ReasonCode::PROTOCOL_ERROR);
    raw.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_4_12_0_3_auth_before_connack_other_than_0x18_is_0x82() {
    let (tern, _dir) = broker();
    for reason in [ReasonCode::REAUTHENTICATE, ReasonCode::SUCCESS] {
        let mut client = ScramClient::new("alice", "pencil");
        let mut raw = begin(&tern, &mut client).await;
        raw.send(&auth(reason, METHOD, &client.last(None))).await;
        let ack = raw.connack().await;
        assert_eq!(ack.reason, ReasonCode::PROTOCOL_ERROR, "AUTH {reason}");
        raw.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt5_4_12_0_4_client_final_with_a_bad_nonce_is_0x87() {
    let (tern, _dir) = broker();
    let mut client = ScramClient::new("alice", "pencil");
    let mut raw = begin(&tern, &mut client).await;
    // The right password, but a nonce the server did not send (a replayed exchange).
    let last = client.last(Some("clientNONCEnotTheServers"));
    raw.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, &last))
        .await;
    let ack = raw.connack().await;
    assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(ack.properties.authentication_data, None);
    raw.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_4_12_0_4_malformed_client_first_is_0x87_without_an_auth() {
    let (tern, _dir) = broker();
    for first in [
        "p=tls-unique,,n=alice,r=abc", // channel binding: not offered
        "n,a=bob,n=alice,r=abc",       // another authorization identity
        "n,,n=alice",                  // no nonce
        "",                            // nothing
    ] {
        let mut c = connect_packet(V5, "scram", true);
        c.properties.authentication_method = Some(ByteString::from(METHOD));
        c.properties.authentication_data = Some(Bytes::copy_from_slice(first.as_bytes()));
        let (mut raw, ack) = RawClient::connect_with(tern.addr, c).await;
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{first:?}");
        raw.expect_closed().await;
    }
}

#[tokio::test]
async fn mqtt5_4_12_0_1_scram_without_a_password_file_is_0x8c() {
    let tern = Tern::start();
    let mut c = connect_packet(V5, "scram", true);
    c.properties.authentication_method = Some(ByteString::from(METHOD));
    c.properties.authentication_data = Some(Bytes::from_static(b"n,,n=alice,r=abc"));
    let (mut raw, ack) = RawClient::connect_with(tern.addr, c).await;
    assert_eq!(ack.reason, ReasonCode::BAD_AUTHENTICATION_METHOD);
    raw.expect_closed().await;
}

#[tokio::test]
async fn mqtt5_4_12_1_1_reauthentication_with_another_method_is_disconnect_0x82() {
    let (tern, _dir) = broker();
    let mut raw = login(&tern).await;
    let client = ScramClient::new("alice", "pencil");
    raw.send(&auth(
        ReasonCode::REAUTHENTICATE,
        "SCRAM-SHA-512",
        &client.first(),
    ))
    .await;
    raw.expect_disconnect(ReasonCode::PROTOCOL_ERROR).await;
}

#[tokio::test]
async fn mqtt5_4_12_1_2_reauthentication_with_a_bad_nonce_is_disconnect_0x87() {
    let (tern, _dir) = broker();
    let mut raw = login(&tern).await;
    let mut client = ScramClient::new("alice", "pencil");
    raw.send(&auth(ReasonCode::REAUTHENTICATE, METHOD, &client.first()))
        .await;
    client.take_server_first(raw.recv().await);
    let last = client.last(Some("clientNONCE"));
    raw.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, METHOD, &last))
        .await;
    raw.expect_disconnect(ReasonCode::NOT_AUTHORIZED).await;
}

#[tokio::test]
async fn mqtt5_s4_12_1_traffic_goes_on_during_reauthentication() {
    let (tern, _dir) = broker();
    let mut raw = login(&tern).await;
    assert_eq!(
        raw.subscribe("scram/reauth", QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    let mut client = ScramClient::new("alice", "pencil");
    raw.send(&auth(ReasonCode::REAUTHENTICATE, METHOD, &client.first()))
        .await;
    client.take_server_first(raw.recv().await);
    // Between the server-first and the client-final message, the connection still works
    // under the previous authentication.
    assert_eq!(
        raw.publish("scram/reauth", b"meanwhile", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::SUCCESS
    );
    let p = raw.recv_publish().await;
    assert_eq!(&p.payload[..], b"meanwhile");
    raw.ack(&p).await;
    raw.send(&auth(
        ReasonCode::CONTINUE_AUTHENTICATION,
        METHOD,
        &client.last(None),
    ))
    .await;
    match raw.recv().await {
        Packet::Auth(a) => {
            assert_eq!(a.reason, ReasonCode::SUCCESS);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
            assert!(
                a.properties
                    .authentication_data
                    .is_some_and(|d| d.starts_with(b"v="))
            );
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    raw.expect_nothing().await;
}
