//! The HTTP authentication hook (`[auth.http]`) against the real broker, with a small HTTP
//! server inside the test that answers canned JSON and records every request: allow, deny,
//! ignore (falling through to JWT and the password file), the request it receives, a hook that
//! never answers (refused within the timeout, MQTT 5: 0x88, 3.1.1: return code 3), a hook that
//! is down or answers garbage, the decision cache, `acl` rules and `expire_at` from the answer,
//! an https hook verified against a CA file, and configuration errors that name file, line and
//! key.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    TempDir, TempFile, Tern, V5, V311, connack, connected, login, refused_raw_connack,
    serve_config_fails,
};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};
use tern_codec::{Packet, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// The hook: a tiny HTTP/1.1 server

/// What the hook does with a request.
#[derive(Clone)]
enum Reply {
    /// Answers with this status and body.
    Answer(u16, String),
    /// Never answers (keeps the connection open).
    Never,
}

fn allow() -> Reply {
    Reply::Answer(200, json!({"result": "allow"}).to_string())
}

fn result(word: &str) -> Reply {
    Reply::Answer(200, json!({ "result": word }).to_string())
}

/// A request the hook received: its headers (names in lower case) and JSON body.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Value,
}

type Decide = dyn Fn(&Value) -> Reply + Send + Sync;

/// A running hook; it stops with the test's runtime.
struct Hook {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Hook {
    /// A plain http hook answering with `decide(body)`.
    async fn start(decide: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(decide, None).await
    }

    /// A hook, over TLS when `tls` is given.
    async fn start_with(
        decide: impl Fn(&Value) -> Reply + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let decide: Arc<Decide> = Arc::new(decide);
        let log = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (decide, log, tls) = (decide.clone(), log.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(stream, &*decide, &log).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve(stream, &*decide, &log).await;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, received }
    }

    fn url(&self) -> String {
        format!("http://{}/mqtt/auth", self.addr)
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn last(&self) -> Received {
        self.received
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request")
    }
}

/// Serves HTTP/1.1 requests on one connection (keep-alive) until the client closes it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    decide: &Decide,
    log: &Mutex<Vec<Received>>,
) {
    let mut buf = Vec::new();
    loop {
        // The head.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_owned();
        let path = request_line.next().unwrap_or_default().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Value =
            serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or_default();
        buf.drain(..head_end + length);
        let reply = decide(&body);
        log.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body,
        });
        match reply {
            Reply::Never => {
                // Hold the connection without a word until the client gives up.
                let mut sink = [0u8; 64];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
            Reply::Answer(status, body) => {
                let response = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: \
                     {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Brokers and clients

/// A broker with `allow_anonymous = false`, the top-level TOML `extra`, `[auth.http]` for
/// `url` with the extra lines `http`, and the extra tables `tables`.
fn broker(url: &str, http: &str, extra: &str, tables: &str) -> Tern {
    let config = format!(
        "allow_anonymous = false\n{extra}\n[auth.http]\nurl = \"{url}\"\n{http}\n{tables}\n"
    );
    Tern::start_config(&config, "toml")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn username(body: &Value) -> &str {
    body["username"].as_str().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Decisions

#[tokio::test]
async fn allow_lets_the_client_in_and_the_hook_gets_the_credentials_and_headers() {
    let hook = Hook::start(|_| allow()).await;
    let tern = broker(
        &hook.url(),
        "headers = { X-Api-Key = \"k-123\", Authorization = \"Bearer abc\" }",
        "",
        "",
    );
    let connect = login(V5, "dev1", Some("alice"), Some("wonderland"));
    assert_eq!(connack(&tern, connect).await, ReasonCode::SUCCESS);
    let r = hook.last();
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/mqtt/auth"));
    assert_eq!(
        r.body,
        json!({"clientid": "dev1", "username": "alice", "password": "wonderland",
               "peerhost": "127.0.0.1", "protocol": "5.0"})
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-api-key"], "k-123");
    assert_eq!(r.headers["authorization"], "Bearer abc");

    let connect = login(V311, "dev2", Some("bob"), None);
    assert_eq!(connack(&tern, connect).await, ReasonCode::SUCCESS);
    let r = hook.last();
    assert_eq!(r.body["protocol"], "3.1.1");
    assert_eq!(r.body["password"], Value::Null);
}

#[tokio::test]
async fn deny_refuses_with_0x86_and_return_code_4() {
    let hook = Hook::start(|_| result("deny")).await;
    let tern = broker(&hook.url(), "", "", "");
    let connect = login(V5, "c", Some("alice"), Some("wonderland"));
    assert_eq!(
        connack(&tern, connect).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let raw = refused_raw_connack(&tern, login(V311, "c", Some("alice"), Some("wonderland"))).await;
    assert_eq!(raw, vec![0x20, 0x02, 0x00, 0x04], "CONNACK return code 4");
    // Anonymous clients never reach the hook: `allow_anonymous` decides.
    let before = hook.count();
    assert_eq!(
        connack(&tern, login(V5, "anon", None, None)).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(hook.count(), before);
}

#[tokio::test]
async fn ignore_falls_through_to_jwt_then_the_password_file_and_the_first_definite_answer_wins() {
    let dir = TempDir::new();
    let passwd = dir.path.join("passwd");
    common::mosquitto_password_file(&passwd, &[("alice", "wonderland")], &[]);
    let hook = Hook::start(|body| match username(body) {
        "hooked" => allow(),
        "blocked" | "alice-blocked" => result("deny"),
        _ => result("ignore"),
    })
    .await;
    let secret = "0123456789abcdef0123456789abcdef";
    let tern = broker(
        &hook.url(),
        "",
        &format!("password_file = \"{}\"", passwd.display()),
        &format!("[auth.jwt]\nalgorithm = \"HS256\"\nsecret = \"{secret}\""),
    );
    tern::auth::jwt::install_crypto_provider();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"exp": now() + 600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap();
    for (what, user, password, expected) in [
        ("hook allows", "hooked", "anything", ReasonCode::SUCCESS),
        (
            "hook ignores, password file",
            "alice",
            "wonderland",
            ReasonCode::SUCCESS,
        ),
        (
            "hook ignores, JWT",
            "carol",
            token.as_str(),
            ReasonCode::SUCCESS,
        ),
        (
            "hook ignores, wrong password",
            "alice",
            "looking-glass",
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            "hook ignores, unknown user",
            "dave",
            "x",
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            "hook denies a valid token",
            "blocked",
            token.as_str(),
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
    ] {
        assert_eq!(
            connack(&tern, login(V311, "c", Some(user), Some(password))).await,
            expected,
            "{what}"
        );
    }
}

#[tokio::test]
async fn ignore_with_no_other_source_is_a_refusal() {
    let hook = Hook::start(|_| result("ignore")).await;
    let tern = broker(&hook.url(), "", "", "");
    assert_eq!(
        connack(&tern, login(V5, "c", Some("alice"), Some("wonderland"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(hook.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Failing closed

#[tokio::test]
async fn a_hook_that_never_answers_refuses_within_the_timeout() {
    let hook = Hook::start(|_| Reply::Never).await;
    let tern = broker(&hook.url(), "timeout = \"1s\"\ncache_ttl = 0", "", "");
    let start = Instant::now();
    assert_eq!(
        connack(&tern, login(V5, "c", Some("alice"), Some("wonderland"))).await,
        ReasonCode::SERVER_UNAVAILABLE
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "refused after {waited:?}"
    );
    // MQTT 3.1.1: return code 3, Server unavailable.
    let raw = refused_raw_connack(&tern, login(V311, "c", Some("a"), Some("b"))).await;
    assert_eq!(raw, vec![0x20, 0x02, 0x00, 0x03], "CONNACK return code 3");
    assert!(
        tern.logs().contains("HTTP authentication hook"),
        "{}",
        tern.logs()
    );
}

#[tokio::test]
async fn a_hook_that_is_down_refuses_with_0x88() {
    // A port nothing listens on any more.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let tern = broker(&format!("http://{addr}/auth"), "timeout = \"2s\"", "", "");
    assert_eq!(
        connack(&tern, login(V5, "c", Some("alice"), Some("wonderland"))).await,
        ReasonCode::SERVER_UNAVAILABLE
    );
}

#[tokio::test]
async fn errors_and_unusable_answers_refuse_with_0x88() {
    let hook = Hook::start(|body| match username(body) {
        "e500" => Reply::Answer(500, json!({"result": "allow"}).to_string()),
        "e401" => Reply::Answer(401, String::new()),
        "e302" => Reply::Answer(302, String::new()),
        "no-json" => Reply::Answer(200, "allow".to_owned()),
        "no-result" => Reply::Answer(200, "{}".to_owned()),
        "maybe" => result("maybe"),
        "bad-acl" => Reply::Answer(
            200,
            json!({"result": "allow", "acl": {"pub": ["a\ntopic readwrite #"]}}).to_string(),
        ),
        "bad-expiry" => Reply::Answer(
            200,
            json!({"result": "allow", "expire_at": "soon"}).to_string(),
        ),
        _ => allow(),
    })
    .await;
    let tern = broker(&hook.url(), "", "", "");
    for user in [
        "e500",
        "e401",
        "e302",
        "no-json",
        "no-result",
        "maybe",
        "bad-acl",
        "bad-expiry",
    ] {
        assert_eq!(
            connack(&tern, login(V5, "c", Some(user), Some("pw"))).await,
            ReasonCode::SERVER_UNAVAILABLE,
            "{user}"
        );
    }
    // Failures are not cached: the same client is asked about again.
    let before = hook.count();
    assert_eq!(
        connack(&tern, login(V5, "c", Some("e500"), Some("pw"))).await,
        ReasonCode::SERVER_UNAVAILABLE
    );
    assert_eq!(hook.count(), before + 1);
    assert_eq!(
        connack(&tern, login(V5, "c", Some("fine"), Some("pw"))).await,
        ReasonCode::SUCCESS
    );
}

// ---------------------------------------------------------------------------------------------
// Cache

#[tokio::test]
async fn answers_are_cached_by_client_id_user_name_and_password() {
    let hook = Hook::start(|body| match username(body) {
        "mallory" => result("deny"),
        _ => allow(),
    })
    .await;
    let tern = broker(&hook.url(), "cache_ttl = \"1h\"", "", "");
    let ok = || login(V5, "c1", Some("alice"), Some("wonderland"));
    assert_eq!(connack(&tern, ok()).await, ReasonCode::SUCCESS);
    assert_eq!(hook.count(), 1);
    assert_eq!(connack(&tern, ok()).await, ReasonCode::SUCCESS);
    assert_eq!(
        hook.count(),
        1,
        "the second login is answered from the cache"
    );
    let other_password = login(V5, "c1", Some("alice"), Some("looking-glass"));
    assert_eq!(connack(&tern, other_password).await, ReasonCode::SUCCESS);
    assert_eq!(hook.count(), 2, "another password is asked about");
    let other_client = login(V5, "c2", Some("alice"), Some("wonderland"));
    assert_eq!(connack(&tern, other_client).await, ReasonCode::SUCCESS);
    assert_eq!(hook.count(), 3, "another client id is asked about");
    // Refusals are cached too.
    let denied = || login(V5, "m", Some("mallory"), Some("x"));
    assert_eq!(
        connack(&tern, denied()).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack(&tern, denied()).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(hook.count(), 4);
}

#[tokio::test]
async fn cache_ttl_zero_asks_the_hook_every_time() {
    let hook = Hook::start(|_| allow()).await;
    let tern = broker(&hook.url(), "cache_ttl = 0", "", "");
    for _ in 0..3 {
        let connect = login(V5, "c1", Some("alice"), Some("wonderland"));
        assert_eq!(connack(&tern, connect).await, ReasonCode::SUCCESS);
    }
    assert_eq!(hook.count(), 3);
}

// ---------------------------------------------------------------------------------------------
// What an allow grants

#[tokio::test]
async fn mqtt5_acl_rules_from_the_answer_are_enforced() {
    let hook = Hook::start(|_| {
        let answer = json!({"result": "allow",
                            "acl": {"pub": ["up/%c"], "sub": ["down/%c"], "all": ["chat/%u"]}});
        Reply::Answer(200, answer.to_string())
    })
    .await;
    let tern = broker(&hook.url(), "", "", "");
    let mut c = connected(&tern, login(V5, "dev1", Some("alice"), Some("pw"))).await;
    assert!(
        !c.publish("up/dev1", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert!(
        !c.publish("chat/alice", b"x", QoS::AtLeastOnce, false)
            .await
            .is_error()
    );
    assert_eq!(
        c.publish("up/dev2", b"x", QoS::AtLeastOnce, false).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        c.subscribe("down/dev1", QoS::AtLeastOnce).await,
        vec![ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        c.subscribe("down/dev2", QoS::AtLeastOnce).await,
        vec![ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        c.subscribe("up/dev1", QoS::AtLeastOnce).await,
        vec![ReasonCode::NOT_AUTHORIZED]
    );
}

#[tokio::test]
async fn mqtt5_expire_at_disconnects_the_client_with_0xa0_and_a_past_one_refuses() {
    let hook = Hook::start(|body| {
        let at = match username(body) {
            "past" => now() - 60,
            _ => now() + 3,
        };
        Reply::Answer(200, json!({"result": "allow", "expire_at": at}).to_string())
    })
    .await;
    let tern = broker(&hook.url(), "", "", "");
    assert_eq!(
        connack(&tern, login(V5, "p", Some("past"), Some("pw"))).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    let start = Instant::now();
    let mut c = connected(&tern, login(V5, "c", Some("alice"), Some("pw"))).await;
    assert!(c.sync().await.is_empty());
    let wait = Duration::from_secs(15);
    match c.next(wait).await.expect("nothing within 15 s") {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::MAXIMUM_CONNECT_TIME),
        other => panic!("expected DISCONNECT 0xA0, got {other:?}"),
    }
    assert!(c.next(wait).await.expect("not closed").is_none());
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// https

/// A CA and a certificate for 127.0.0.1 it issued; the CA certificate's path.
struct TestPki {
    _dir: TempDir,
    acceptor: tokio_rustls::TlsAcceptor,
    ca: std::path::PathBuf,
}

fn test_pki() -> TestPki {
    let dir = TempDir::new();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = dir.path.join("ca.crt");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    TestPki {
        _dir: dir,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        ca,
    }
}

#[tokio::test]
async fn an_https_hook_is_verified_against_cafile() {
    let pki = test_pki();
    let hook = Hook::start_with(|_| allow(), Some(pki.acceptor.clone())).await;
    let url = format!("https://{}/auth", hook.addr);
    let tern = broker(&url, &format!("cafile = \"{}\"", pki.ca.display()), "", "");
    assert_eq!(
        connack(&tern, login(V5, "c", Some("alice"), Some("pw"))).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(hook.count(), 1);
    // Another CA does not vouch for the hook's certificate: no request gets through.
    let other = test_pki();
    let untrusting = broker(
        &url,
        &format!("cafile = \"{}\"", other.ca.display()),
        "",
        "",
    );
    assert_eq!(
        connack(&untrusting, login(V5, "c", Some("alice"), Some("pw"))).await,
        ReasonCode::SERVER_UNAVAILABLE
    );
    assert_eq!(hook.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors stop the start and name file, line and key

/// Starts `tern serve` with the TOML `config`, which must be refused; its stderr and the
/// configuration file.
fn serve_fails(config: &str) -> (String, TempFile) {
    serve_config_fails(config, "toml", &["--listen", "127.0.0.1:0"])
}

#[test]
fn a_bad_url_stops_startup_naming_file_line_and_key() {
    for url in [
        "ftp://auth.example/",
        "auth.example/mqtt",
        "http://user:pw@host/",
    ] {
        let (err, config) = serve_fails(&format!(
            "allow_anonymous = false\n[auth.http]\nurl = \"{url}\"\n"
        ));
        assert!(
            err.contains(&format!("{}:3:", config.path.display())),
            "{err}"
        );
        assert!(err.contains("`auth.http.url`"), "{err}");
    }
    let (err, _) = serve_fails("[auth.http]\ntimeout = \"1s\"\n");
    assert!(err.contains("`auth.http.url`"), "{err}");
}

#[test]
fn a_missing_cafile_a_bad_header_or_a_zero_timeout_stops_startup() {
    let (err, config) = serve_fails(
        "[auth.http]\nurl = \"https://127.0.0.1:1/\"\ncafile = \"/nonexistent/ca.pem\"\n",
    );
    assert!(
        err.contains(&format!("{}:3:", config.path.display())),
        "{err}"
    );
    assert!(err.contains("`auth.http.cafile`"), "{err}");
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let (err, _) = serve_fails(
        "[auth.http]\nurl = \"http://127.0.0.1:1/\"\nheaders = { \"Bad Name\" = \"x\" }\n",
    );
    assert!(err.contains("`auth.http.headers.Bad Name`"), "{err}");
    let (err, _) = serve_fails("[auth.http]\nurl = \"http://127.0.0.1:1/\"\ntimeout = 0\n");
    assert!(err.contains("`auth.http.timeout`"), "{err}");
    let (err, _) =
        serve_fails("[auth.http]\nurl = \"http://127.0.0.1:1/\"\ncafile = \"/etc/hostname\"\n");
    assert!(err.contains("`auth.http.cafile`"), "{err}");
}
