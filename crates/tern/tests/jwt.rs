//! JWT authentication (`[auth.jwt]`) against the real broker: tokens made in the test
//! (HMAC with `jsonwebtoken`, RSA/EC signatures with the `openssl` command line on keys it
//! generates), accepted and refused tokens with their CONNACK codes (MQTT 5: 0x86; 3.1.1:
//! return code 4), algorithm confusion and `alg: none`, the `acl` claim (PUBACK / SUBACK 0x87,
//! `%c`, both it and the ACL file must allow, injection refused), the `exp` claim closing the
//! connection (MQTT 5: DISCONNECT 0xA0), tokens in the user name, claim checks, the fall-through
//! to the password file, `mosquitto_pub`, and configuration errors that name file, line and key.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use common::{
    RawClient, TempDir, TempFile, Tern, V5, V311, connack, connected, login, refused_raw_connack,
    serve_config_fails,
};
use serde_json::{Value, json};
use tern_codec::{Packet, QoS, ReasonCode};

// ---------------------------------------------------------------------------------------------
// Helpers

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// An HS256/384/512 token made with `jsonwebtoken`.
fn hmac_token(algorithm: jsonwebtoken::Algorithm, secret: &[u8], claims: &Value) -> String {
    tern::auth::jwt::install_crypto_provider();
    let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), claims, &key).unwrap()
}

fn hs256(claims: &Value) -> String {
    hmac_token(jsonwebtoken::Algorithm::HS256, SECRET.as_bytes(), claims)
}

/// A token with any header, signed with HMAC-SHA-256 and [`SECRET`] (made by hand, so that
/// headers `jsonwebtoken` would not write can be tried).
fn hs256_with_header(header: &Value, claims: &Value) -> String {
    use hmac::Mac;
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

/// A key pair made by `openssl genpkey`, the public half by `openssl pkey -pubout`.
struct KeyPair {
    _dir: TempDir,
    private: PathBuf,
    public: PathBuf,
}

fn openssl(args: &[&str]) {
    let out = common::run_bounded(
        Command::new("openssl").args(args),
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key_pair(kind: &str) -> KeyPair {
    let dir = TempDir::new();
    let private = dir.path.join("private.pem");
    let public = dir.path.join("public.pem");
    let private_str = private.to_str().unwrap();
    match kind {
        "rsa" => openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            private_str,
        ]),
        curve => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            private_str,
        ]),
    }
    openssl(&[
        "pkey",
        "-in",
        private_str,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    KeyPair {
        _dir: dir,
        private,
        public,
    }
}

/// An ECDSA signature as OpenSSL writes it (DER `SEQUENCE { r, s }`) in the fixed-size
/// `r || s` form JWS uses.
fn der_to_raw(der: &[u8], size: usize) -> Vec<u8> {
    let mut i = 2;
    if der[1] & 0x80 != 0 {
        i += usize::from(der[1] & 0x7f);
    }
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER expected in {der:?}");
        let len = usize::from(der[i + 1]);
        let mut int = &der[i + 2..i + 2 + len];
        while int.len() > size && int[0] == 0 {
            int = &int[1..];
        }
        out.extend(std::iter::repeat_n(0, size - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

/// A token signed by `openssl dgst` with `keys.private`: RS*, PS* or ES*.
fn openssl_token(alg: &str, keys: &KeyPair, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let digest = format!("-sha{}", &alg[2..]);
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", &digest, "-sign"]).arg(&keys.private);
    if alg.starts_with("PS") {
        cmd.args([
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ]);
    }
    let out = common::run_bounded(&mut cmd, Some(input.as_bytes()), Duration::from_secs(60));
    assert!(
        out.status.success(),
        "openssl dgst: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signature = match alg {
        "ES256" => der_to_raw(&out.stdout, 32),
        "ES384" => der_to_raw(&out.stdout, 48),
        _ => out.stdout,
    };
    format!("{input}.{}", b64(&signature))
}

/// A broker with `allow_anonymous = false`, the top-level TOML `extra` and `[auth.jwt]` made of
/// `jwt` (one `key = value` per line).
fn broker(jwt: &str, extra: &str) -> Tern {
    let config = format!("allow_anonymous = false\n{extra}\n[auth.jwt]\n{jwt}\n");
    Tern::start_config(&config, "toml")
}

fn hs256_broker(extra_jwt: &str, extra: &str) -> Tern {
    broker(
        &format!("algorithm = \"HS256\"\nsecret = \"{SECRET}\"\n{extra_jwt}"),
        extra,
    )
}

fn valid_claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600})
}

// ---------------------------------------------------------------------------------------------
// Accepted and refused tokens

#[tokio::test]
async fn valid_hs256_token_in_the_password_lets_mqtt5_and_mqtt311_clients_in() {
    let tern = hs256_broker("", "");
    let token = hs256(&valid_claims());
    let v5 = login(V5, "c5", None, Some(&token));
    assert_eq!(connack(&tern, v5).await, ReasonCode::SUCCESS);
    let by_hand = hs256_with_header(&json!({"alg": "HS256", "typ": "JWT"}), &valid_claims());
    let v5 = login(V5, "c5", None, Some(&by_hand));
    assert_eq!(connack(&tern, v5).await, ReasonCode::SUCCESS);
    // 3.1.1 needs a User Name with a Password (MQTT-3.1.2-22).
    let v311 = login(V311, "c311", Some("alice"), Some(&token));
    let mut c = connected(&tern, v311).await;
    assert!(c.sync().await.is_empty());
}

#[tokio::test]
async fn mqtt5_bad_tokens_get_0x86() {
    let tern = hs256_broker("", "");
    let wrong_secret = hmac_token(
        jsonwebtoken::Algorithm::HS256,
        b"another secret, 32 bytes long...",
        &valid_claims(),
    );
    let expired = hs256(&json!({"sub": "alice", "exp": now() - 120}));
    let without_exp = hs256(&json!({"sub": "alice"}));
    let not_yet = hs256(&json!({"sub": "alice", "exp": now() + 600, "nbf": now() + 300}));
    let exp_as_text = hs256(&json!({"sub": "alice", "exp": "tomorrow"}));
    let hs512 = hmac_token(
        jsonwebtoken::Algorithm::HS512,
        SECRET.as_bytes(),
        &valid_claims(),
    );
    let mut tampered = hs256(&valid_claims());
    let payload = b64(json!({"sub": "root", "exp": now() + 600})
        .to_string()
        .as_bytes());
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    for (what, token) in [
        ("wrong secret", wrong_secret),
        ("expired", expired),
        ("no exp", without_exp),
        ("nbf ahead", not_yet),
        ("exp not a number", exp_as_text),
        ("HS512 when HS256 is configured", hs512),
        ("payload changed", tampered),
        (
            "a critical header extension Tern does not know",
            hs256_with_header(
                &json!({"alg": "HS256", "crit": ["urn:example:must-understand"],
                        "urn:example:must-understand": true}),
                &valid_claims(),
            ),
        ),
    ] {
        let connect = login(V5, "c", Some("alice"), Some(&token));
        assert_eq!(
            connack(&tern, connect).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{what}"
        );
    }
}

#[tokio::test]
async fn mqtt311_expired_token_gets_return_code_4_on_the_wire() {
    let tern = hs256_broker("", "");
    let expired = hs256(&json!({"sub": "alice", "exp": now() - 120}));
    let raw = refused_raw_connack(&tern, login(V311, "c", Some("alice"), Some(&expired))).await;
    assert_eq!(raw, vec![0x20, 0x02, 0x00, 0x04], "CONNACK return code 4");
}

#[tokio::test]
async fn unsigned_alg_none_token_is_refused() {
    let tern = hs256_broker("", "");
    let claims = b64(valid_claims().to_string().as_bytes());
    for header in [json!({"alg": "none", "typ": "JWT"}), json!({"alg": "None"})] {
        let head = b64(header.to_string().as_bytes());
        for token in [format!("{head}.{claims}."), format!("{head}.{claims}.c2ln")] {
            let connect = login(V5, "c", Some("alice"), Some(&token));
            assert_eq!(
                connack(&tern, connect).await,
                ReasonCode::BAD_USER_NAME_OR_PASSWORD,
                "{header}"
            );
        }
    }
}

#[tokio::test]
async fn rs256_tokens_from_openssl_are_accepted_and_algorithm_confusion_is_refused() {
    let keys = key_pair("rsa");
    let other = key_pair("rsa");
    let tern = broker(
        &format!(
            "algorithm = \"RS256\"\npublic_key_file = \"{}\"",
            keys.public.display()
        ),
        "",
    );
    let good = openssl_token("RS256", &keys, &valid_claims());
    assert_eq!(
        connack(&tern, login(V5, "c", None, Some(&good))).await,
        ReasonCode::SUCCESS
    );
    // The classic confusion: HS256 "signed" with the public key file as the HMAC secret.
    let public_pem = std::fs::read(&keys.public).unwrap();
    let confused = hmac_token(jsonwebtoken::Algorithm::HS256, &public_pem, &valid_claims());
    let wrong_key = openssl_token("RS256", &other, &valid_claims());
    let ps256 = openssl_token("PS256", &keys, &valid_claims());
    let plain_hs256 = hs256(&valid_claims());
    for (what, token) in [
        ("HS256 with the public key as secret", confused),
        ("HS256", plain_hs256),
        ("RS256 from another key", wrong_key),
        ("PS256 when RS256 is configured", ps256),
    ] {
        assert_eq!(
            connack(&tern, login(V5, "c", None, Some(&token))).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{what}"
        );
    }
}

#[tokio::test]
async fn ps256_and_es256_tokens_from_openssl_are_accepted() {
    let rsa = key_pair("rsa");
    let ec = key_pair("P-256");
    let other_ec = key_pair("P-256");
    let ps = broker(
        &format!(
            "algorithm = \"PS256\"\npublic_key_file = \"{}\"",
            rsa.public.display()
        ),
        "",
    );
    let es = broker(
        &format!(
            "algorithm = \"ES256\"\npublic_key_file = \"{}\"",
            ec.public.display()
        ),
        "",
    );
    let token = openssl_token("PS256", &rsa, &valid_claims());
    assert_eq!(
        connack(&ps, login(V5, "c", None, Some(&token))).await,
        ReasonCode::SUCCESS
    );
    let token = openssl_token("ES256", &ec, &valid_claims());
    assert_eq!(
        connack(&es, login(V5, "c", None, Some(&token))).await,
        ReasonCode::SUCCESS
    );
    let forged = openssl_token("ES256", &other_ec, &valid_claims());
    assert_eq!(
        connack(&es, login(V5, "c", None, Some(&forged))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let rs = openssl_token("RS256", &rsa, &valid_claims());
    assert_eq!(
        connack(&es, login(V5, "c", None, Some(&rs))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn without_require_exp_a_token_may_have_no_exp_but_an_expired_one_is_still_refused() {
    let tern = hs256_broker("require_exp = false", "");
    let no_exp = hs256(&json!({"sub": "alice"}));
    assert_eq!(
        connack(&tern, login(V5, "c", None, Some(&no_exp))).await,
        ReasonCode::SUCCESS
    );
    let expired = hs256(&json!({"exp": now() - 120}));
    assert_eq!(
        connack(&tern, login(V5, "c", None, Some(&expired))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn issuer_audience_and_verify_claims_are_checked() {
    let tern = hs256_broker(
        "issuer = \"https://issuer.example\"\naudience = [\"tern\", \"mqtt\"]\n\
         verify_claims = { sub = \"%u\", device = \"%c\" }",
        "",
    );
    let claims = |iss: &str, aud: Value, sub: &str, device: &str| {
        let exp = now() + 600;
        json!({"iss": iss, "aud": aud, "sub": sub, "device": device, "exp": exp})
    };
    let good = hs256(&claims(
        "https://issuer.example",
        json!("tern"),
        "alice",
        "d1",
    ));
    assert_eq!(
        connack(&tern, login(V5, "d1", Some("alice"), Some(&good))).await,
        ReasonCode::SUCCESS
    );
    let in_list = hs256(&claims(
        "https://issuer.example",
        json!(["other", "mqtt"]),
        "alice",
        "d1",
    ));
    assert_eq!(
        connack(&tern, login(V5, "d1", Some("alice"), Some(&in_list))).await,
        ReasonCode::SUCCESS
    );
    for (what, user, id, token) in [
        ("another user name", "bob", "d1", good.clone()),
        ("another client id", "alice", "d2", good.clone()),
        (
            "another issuer",
            "alice",
            "d1",
            hs256(&claims(
                "https://evil.example",
                json!("tern"),
                "alice",
                "d1",
            )),
        ),
        (
            "another audience",
            "alice",
            "d1",
            hs256(&claims(
                "https://issuer.example",
                json!("web"),
                "alice",
                "d1",
            )),
        ),
        (
            "no iss",
            "alice",
            "d1",
            hs256(&json!({"aud": "tern", "sub": "alice", "device": "d1", "exp": now() + 600})),
        ),
    ] {
        assert_eq!(
            connack(&tern, login(V5, id, Some(user), Some(&token))).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_token_with_an_audience_is_refused_when_no_audience_is_configured() {
    let tern = hs256_broker("", "");
    let token = hs256(&json!({"aud": "web", "exp": now() + 600}));
    assert_eq!(
        connack(&tern, login(V5, "c", None, Some(&token))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

// ---------------------------------------------------------------------------------------------
// Rules from the `acl` claim

#[tokio::test]
async fn mqtt5_acl_claim_restricts_publish_and_subscribe_with_client_id_patterns() {
    let tern = hs256_broker("", "");
    let acl = json!({"pub": ["up/%c", "shared/+/in"], "sub": ["down/%c/#"], "all": ["chat"]});
    let token = hs256(&json!({"exp": now() + 600, "acl": acl}));
    let mut dev = connected(&tern, login(V5, "dev1", Some("alice"), Some(&token))).await;
    assert!(
        !dev.publish("up/dev1", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert!(
        !dev.publish("shared/7/in", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert!(
        !dev.publish("chat", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert_eq!(
        dev.publish("up/dev2", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        dev.publish("down/dev1/cmd", b"x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        dev.subscribe("down/dev1/#", QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        dev.subscribe("down/#", QoS::AtLeastOnce).await,
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        dev.subscribe("up/dev1", QoS::AtLeastOnce).await,
        vec![ReasonCode::NOT_AUTHORIZED]
    );

    // A second client may publish to dev1's command topic; dev1 receives it.
    let ops_token = hs256(&json!({"exp": now() + 600, "acl": {"pub": ["down/+/cmd"]}}));
    let mut ops = connected(&tern, login(V5, "ops", Some("ops"), Some(&ops_token))).await;
    assert!(
        !ops.publish("down/dev1/cmd", b"reboot", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    let p = dev.recv_publish().await;
    assert_eq!(
        (&*p.topic, &p.payload[..]),
        ("down/dev1/cmd", &b"reboot"[..])
    );
}

#[tokio::test]
async fn acl_claim_and_acl_file_must_both_allow() {
    let dir = TempDir::new();
    let acl_file = dir.path.join("acl");
    std::fs::write(
        &acl_file,
        "pattern readwrite up/%c\npattern readwrite open/#\n",
    )
    .unwrap();
    let tern = hs256_broker("", &format!("acl_file = \"{}\"", acl_file.display()));
    let token = hs256(&json!({"exp": now() + 600, "acl": {"pub": ["up/%c", "elsewhere"]}}));
    let mut c = connected(&tern, login(V5, "dev1", Some("alice"), Some(&token))).await;
    assert!(
        !c.publish("up/dev1", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    // The token allows it, the ACL file does not.
    assert_eq!(
        c.publish("elsewhere", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // The ACL file allows it, the token does not.
    assert_eq!(
        c.publish("open/x", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // Without an `acl` claim, the ACL file alone decides.
    let plain = hs256(&json!({"exp": now() + 600}));
    let mut p = connected(&tern, login(V5, "dev2", Some("alice"), Some(&plain))).await;
    assert!(
        !p.publish("open/x", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert_eq!(
        p.publish("elsewhere", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
}

#[tokio::test]
async fn mqtt311_acl_claim_refuses_subscriptions_with_0x80() {
    let tern = hs256_broker("", "");
    let token = hs256(&json!({"exp": now() + 600, "acl": {"sub": ["news/#"]}}));
    let mut c = connected(&tern, login(V311, "reader", Some("alice"), Some(&token))).await;
    assert_eq!(
        c.subscribe("news/#", QoS::AtMostOnce).await,
        vec![ReasonCode::GRANTED_QOS_0]
    );
    // MQTT 3.1.1 has one failure code; the codec reads 0x80 back as UNSPECIFIED_ERROR.
    assert_eq!(
        c.subscribe("sports/#", QoS::AtMostOnce).await,
        vec![ReasonCode::UNSPECIFIED_ERROR]
    );
}

#[tokio::test]
async fn acl_claims_that_could_inject_rules_or_are_malformed_refuse_the_token() {
    let tern = hs256_broker("", "");
    for acl in [
        json!({"pub": ["a\ntopic readwrite #"]}),
        json!({"pub": ["a\r\npattern readwrite #"]}),
        json!({"sub": ["ok", "x\u{0}y"]}),
        json!({"sub": [" #"]}),
        json!({"all": ["a/#/b"]}),
        json!({"all": ["a+"]}),
        json!({"pub": "up/#"}),
        json!({"publish": ["up/#"]}),
        json!(["up/#"]),
    ] {
        let token = hs256(&json!({"exp": now() + 600, "acl": acl}));
        assert_eq!(
            connack(&tern, login(V5, "c", Some("alice"), Some(&token))).await,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{acl}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Expiry

/// Waits (up to 15 s) for what the broker sends next: `Some(packet)` or `None` when it closes.
async fn next_within_15s(c: &mut RawClient) -> Option<Packet> {
    c.next(Duration::from_secs(15))
        .await
        .expect("nothing from the broker within 15 s")
}

#[tokio::test]
async fn mqtt5_token_expiry_disconnects_the_client_with_0xa0() {
    let tern = hs256_broker("leeway = 0", "");
    let token = hs256(&json!({"exp": now() + 3}));
    let start = Instant::now();
    let mut c = connected(&tern, login(V5, "c", Some("alice"), Some(&token))).await;
    assert!(c.sync().await.is_empty(), "the connection works before exp");
    match next_within_15s(&mut c).await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::MAXIMUM_CONNECT_TIME),
        other => panic!("expected DISCONNECT 0xA0, got {other:?}"),
    }
    assert!(
        next_within_15s(&mut c).await.is_none(),
        "closed after DISCONNECT"
    );
    // `exp` was at least two whole seconds ahead.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn mqtt311_token_expiry_closes_the_connection() {
    let tern = hs256_broker("leeway = 0", "");
    let token = hs256(&json!({"exp": now() + 3}));
    let start = Instant::now();
    let mut c = connected(&tern, login(V311, "c", Some("alice"), Some(&token))).await;
    assert!(c.sync().await.is_empty());
    assert!(
        next_within_15s(&mut c).await.is_none(),
        "closed without a packet"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Where the token is, and the other sources

#[tokio::test]
async fn a_token_in_the_user_name_names_the_client_by_its_sub_claim() {
    let dir = TempDir::new();
    let acl_file = dir.path.join("acl");
    std::fs::write(&acl_file, "user alice\ntopic readwrite alice/#\n").unwrap();
    let tern = hs256_broker(
        "from = \"username\"",
        &format!("acl_file = \"{}\"", acl_file.display()),
    );
    let token = hs256(&valid_claims());
    let mut c = connected(&tern, login(V5, "c", Some(&token), None)).await;
    assert!(
        !c.publish("alice/x", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert_eq!(
        c.publish("bob/x", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    // Without `sub` there is no one to name.
    let anonymous = hs256(&json!({"exp": now() + 600}));
    assert_eq!(
        connack(&tern, login(V5, "c2", Some(&anonymous), None)).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // A token in the Password is not looked at.
    assert_eq!(
        connack(&tern, login(V5, "c3", Some("alice"), Some(&token))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
}

#[tokio::test]
async fn passwords_that_are_not_tokens_fall_through_to_the_password_file() {
    let dir = TempDir::new();
    let passwd = dir.path.join("passwd");
    common::mosquitto_password_file(&passwd, &[("alice", "wonderland")], &[]);
    let tern = hs256_broker("", &format!("password_file = \"{}\"", passwd.display()));
    let token = hs256(&valid_claims());
    let bad_token = hs256(&json!({"exp": now() - 120}));
    for (what, password, expected) in [
        ("password", "wonderland", ReasonCode::SUCCESS),
        ("token", token.as_str(), ReasonCode::SUCCESS),
        (
            "wrong password",
            "looking-glass",
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            "expired token",
            bad_token.as_str(),
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
    ] {
        assert_eq!(
            connack(&tern, login(V311, "c", Some("alice"), Some(password))).await,
            expected,
            "{what}"
        );
    }
    // Without a password file, a password that is not a token has nowhere to go.
    let jwt_only = hs256_broker("", "");
    assert_eq!(
        connack(
            &jwt_only,
            login(V311, "c", Some("alice"), Some("wonderland"))
        )
        .await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // Anonymous clients are still decided by `allow_anonymous`.
    assert_eq!(
        connack(&jwt_only, login(V5, "anon", None, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
}

#[tokio::test]
async fn mosquitto_pub_logs_in_with_a_token() {
    let tern = hs256_broker("", "");
    let port = tern.addr.port().to_string();
    let run = |token: &str| {
        common::run_bounded(
            Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "t", "-m", "x"])
                .args(["-V", "mqttv5", "-u", "alice", "-P", token, "-q", "1"]),
            None,
            Duration::from_secs(30),
        )
    };
    let ok = run(&hs256(&valid_claims()));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = run(&hs256(&json!({"exp": now() - 120})));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(stderr.contains("bad user name or password"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// Configuration errors stop the start and name file, line and key

/// Starts `tern serve` with the TOML `config`, which must be refused; its stderr and the
/// configuration file.
fn serve_fails(config: &str) -> (String, TempFile) {
    serve_config_fails(config, "toml", &["--listen", "127.0.0.1:0"])
}

#[test]
fn a_missing_public_key_file_stops_startup_naming_file_line_and_key() {
    let (err, config) = serve_fails(
        "allow_anonymous = false\n\n[auth.jwt]\nalgorithm = \"RS256\"\n\
         public_key_file = \"/nonexistent/jwt.pem\"\n",
    );
    assert!(
        err.contains(&format!("{}:5:", config.path.display())),
        "names the file and line: {err}"
    );
    assert!(err.contains("`auth.jwt.public_key_file`"), "{err}");
    assert!(err.contains("/nonexistent/jwt.pem"), "{err}");
}

#[test]
fn a_bad_algorithm_name_stops_startup() {
    let (err, config) = serve_fails("[auth.jwt]\nalgorithm = \"none\"\nsecret = \"s\"\n");
    assert!(
        err.contains(&format!("{}:2:", config.path.display())),
        "{err}"
    );
    assert!(err.contains("`auth.jwt.algorithm`"), "{err}");
    assert!(err.contains("`none`"), "{err}");
}

#[test]
fn a_private_key_or_a_key_of_the_wrong_kind_stops_startup() {
    let rsa = key_pair("rsa");
    let (err, _) = serve_fails(&format!(
        "[auth.jwt]\nalgorithm = \"RS256\"\npublic_key_file = \"{}\"\n",
        rsa.private.display()
    ));
    assert!(err.contains("private key"), "{err}");
    let (err, _) = serve_fails(&format!(
        "[auth.jwt]\nalgorithm = \"ES256\"\npublic_key_file = \"{}\"\n",
        rsa.public.display()
    ));
    assert!(err.contains("`auth.jwt.public_key_file`"), "{err}");
    assert!(err.contains("not an EC key"), "{err}");
    let p384 = key_pair("P-384");
    let (err, _) = serve_fails(&format!(
        "[auth.jwt]\nalgorithm = \"ES256\"\npublic_key_file = \"{}\"\n",
        p384.public.display()
    ));
    assert!(err.contains("P-256"), "{err}");
}

#[test]
fn a_secret_for_a_public_key_algorithm_or_two_key_sources_stop_startup() {
    let (err, config) = serve_fails("[auth.jwt]\nalgorithm = \"RS256\"\nsecret = \"s\"\n");
    assert!(
        err.contains(&format!("{}:3:", config.path.display())),
        "{err}"
    );
    assert!(err.contains("`auth.jwt.secret`"), "{err}");
    let (err, _) = serve_fails(
        "[auth.jwt]\nalgorithm = \"HS256\"\nsecret = \"s\"\nsecret_file = \"/etc/hostname\"\n",
    );
    assert!(err.contains("`auth.jwt.secret_file`"), "{err}");
    let (err, _) = serve_fails("[auth.jwt]\nalgorithm = \"HS256\"\n");
    assert!(err.contains("`auth.jwt.secret`"), "{err}");
    let (err, _) =
        serve_fails("[auth.jwt]\nalgorithm = \"HS256\"\nsecret = \"s\"\nfrom = \"header\"\n");
    assert!(err.contains("`auth.jwt.from`"), "{err}");
}

#[tokio::test]
async fn a_secret_file_is_read_without_its_final_line_break() {
    let file = TempFile::new("secret", &format!("{SECRET}\n"));
    let tern = broker(
        &format!(
            "algorithm = \"HS256\"\nsecret_file = \"{}\"",
            file.path.display()
        ),
        "",
    );
    let token = hs256(&valid_claims());
    assert_eq!(
        connack(&tern, login(V5, "c", None, Some(&token))).await,
        ReasonCode::SUCCESS
    );
}
