//! The admin REST API (`crates/tern/src/admin`), against the real binary: every endpoint with
//! its status codes, paging and filters, API keys and login tokens, the HTTP limits (404, 405,
//! 413, the connection limit), and what the controls do to real clients: a kick seen by rumqttc
//! (MQTT 5, DISCONNECT 0x98) and by a raw 3.1.1 client (a close, its will published), a
//! subscription made on a client's behalf, a retained message deleted (for good, across a
//! restart), a message published through the API reaching `mosquitto_sub`.

#![allow(clippy::unwrap_used)] // test helpers: failing loudly is the point

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tern_codec::{Packet, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "ops";
const SECRET: &str = "s3cret-s3cret";

/// A configuration with the API key `ops`, anonymous MQTT clients allowed.
fn keyed_config(extra: &str) -> String {
    format!(
        "allow_anonymous = true\n{extra}\n[[admin.api_keys]]\nkey = \"{KEY}\"\nsecret = \
         \"{SECRET}\"\n"
    )
}

fn keyed() -> Tern {
    Tern::start_config(&keyed_config(""), "toml")
}

fn auth() -> String {
    basic_auth(KEY, SECRET)
}

/// A request with the API key; the body parsed as JSON (`Null` when empty).
async fn call(tern: &Tern, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, _, text) = tern
        .http(method, path, Some(&auth()), body.as_deref())
        .await;
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, value)
}

async fn get(tern: &Tern, path: &str) -> (u16, Value) {
    call(tern, "GET", path, None).await
}

/// The `clientid`s of a list answer.
fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|c| c["clientid"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls `GET path` until `check` holds (at most [`TIMEOUT`]).
async fn until(tern: &Tern, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (status, v) = get(tern, path).await;
        if status == 200 && check(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: GET {path} is still {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn conn311(id: &str, clean: bool) -> tern_codec::Connect {
    connect_packet(V311, id, clean)
}

// ---- Authentication ----

#[tokio::test]
async fn without_any_key_only_status_answers() {
    let tern = Tern::start();
    let (status, headers, body) = tern.http("GET", "/status", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "running");
    for path in [
        "/api/v1/clients",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/stats",
    ] {
        let (status, headers, body) = tern.http("GET", path, None, None).await;
        assert_eq!(status, 401, "{path}: {body}");
        assert_eq!(
            header(&headers, "www-authenticate"),
            Some("Basic realm=\"tern\"")
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["code"], "BAD_API_KEY_OR_SECRET");
        assert!(v["message"].as_str().unwrap().contains("Basic"));
    }
    // Any credentials: there is no key to match.
    let (status, _, _) = tern
        .http(
            "GET",
            "/api/v1/clients",
            Some(&basic_auth("ops", "x")),
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        tern.logs().contains("no API key is configured")
            && tern.logs().contains("[[admin.api_keys]]"),
        "{}",
        tern.logs()
    );
}

#[tokio::test]
async fn basic_auth_with_clear_and_hashed_secrets_and_a_key_file() {
    let dir = TempDir::new();
    let key_file = dir.path.join("api-keys");
    // The key file is a password file: `key:hash`, here made by Debian's mosquitto_passwd.
    mosquitto_password_file(&key_file, &[("filed", "filed-secret")], &[]);
    let hashed = dir.path.join("hashed");
    mosquitto_password_file(&hashed, &[("hashed", "hashed-secret")], &[]);
    let line = std::fs::read_to_string(&hashed).unwrap();
    let hash = line.trim().split_once(':').unwrap().1.to_owned();
    let config = keyed_config(&format!(
        "[admin]\napi_key_file = \"{}\"\n[[admin.api_keys]]\nkey = \"hashed\"\nsecret_hash = \
         \"{hash}\"",
        key_file.display()
    ));
    let tern = Tern::start_config(&config, "toml");
    for (key, secret, expected) in [
        (KEY, SECRET, 200),
        (KEY, "wrong-secret", 401),
        ("nobody", SECRET, 401),
        ("hashed", "hashed-secret", 200),
        // Twice: the second check is answered from the cache of verified secrets.
        ("hashed", "hashed-secret", 200),
        ("hashed", "wrong", 401),
        ("filed", "filed-secret", 200),
        ("filed", SECRET, 401),
    ] {
        let (status, _, body) = tern
            .http(
                "GET",
                "/api/v1/clients",
                Some(&basic_auth(key, secret)),
                None,
            )
            .await;
        assert_eq!(status, expected, "{key}:{secret}: {body}");
    }
    for bad in ["Basic !!!", "Digest abc", "Bearer", ""] {
        let (status, _, _) = tern.http("GET", "/api/v1/clients", Some(bad), None).await;
        assert_eq!(status, 401, "{bad:?}");
    }
}

#[tokio::test]
async fn login_gives_a_bearer_token_that_expires() {
    let tern = Tern::start_config(&keyed_config("[admin]\ntoken_ttl = \"1s\""), "toml");
    let login = |key: &str, secret: &str| json!({ "key": key, "secret": secret }).to_string();
    let (status, _, body) = tern
        .http(
            "POST",
            "/api/v1/login",
            None,
            Some(&login(KEY, "wrong-secret")),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = tern
        .http("POST", "/api/v1/login", None, Some("{\"key\": 1}"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("BAD_REQUEST"), "{body}");

    let (status, _, body) = tern
        .http("POST", "/api/v1/login", None, Some(&login(KEY, SECRET)))
        .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["expires_in"], 1);
    let bearer = format!("Bearer {}", v["token"].as_str().unwrap());
    let (status, _, _) = tern
        .http("GET", "/api/v1/clients", Some(&bearer), None)
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = tern
        .http("GET", "/api/v1/clients", Some("Bearer not-a-token"), None)
        .await;
    assert_eq!(status, 401);
    // Expired after its second.
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (status, _, _) = tern
            .http("GET", "/api/v1/clients", Some(&bearer), None)
            .await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(std::time::Instant::now() < deadline, "token never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_need_a_key_unless_anonymous() {
    let tern = keyed();
    let (status, _, _) = tern.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 401);
    let (status, headers, body) = tern.http("GET", "/metrics", Some(&auth()), None).await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{headers:?}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let open = Tern::start_config(&keyed_config("[admin]\nmetrics_anonymous = true"), "toml");
    let (status, _, body) = open.http("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Only the metrics.
    let (status, _, _) = open.http("GET", "/api/v1/stats", None, None).await;
    assert_eq!(status, 401);
}

// ---- HTTP ----

#[tokio::test]
async fn unknown_paths_wrong_methods_and_large_bodies() {
    let tern = keyed();
    let (status, v) = get(&tern, "/api/v1/nothing").await;
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, v) = get(&tern, "/api/v2/clients").await;
    assert_eq!(status, 404, "{v}");
    let (status, headers, body) = tern
        .http("PUT", "/api/v1/clients/x", Some(&auth()), Some("{}"))
        .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(header(&headers, "allow"), Some("GET, DELETE"));
    assert!(body.contains("METHOD_NOT_ALLOWED"));

    // A declared length above 1 MiB is refused before the body is read.
    let addr = tern.admin_addr();
    let request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: \
         {}\r\nConnection: close\r\n\r\n",
        auth(),
        2 * 1024 * 1024
    );
    let (status, _, body) = http_raw(addr, request.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("PAYLOAD_TOO_LARGE"));
    // A chunked body that grows beyond it too.
    let chunk = vec![b'a'; 64 * 1024];
    let mut request = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nTransfer-Encoding: \
         chunked\r\nConnection: close\r\n\r\n",
        auth()
    )
    .into_bytes();
    for _ in 0..20 {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(&chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let (status, _, body) = http_raw(addr, &request).await;
    assert_eq!(status, 413, "{body}");
    // Not JSON.
    let (status, _, body) = tern
        .http("POST", "/api/v1/publish", Some(&auth()), Some("not json"))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let tern = keyed();
    let addr = tern.admin_addr();
    let mut held = Vec::new();
    for _ in 0..128 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The 129th is closed at once.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(TIMEOUT, extra.read(&mut buf))
        .await
        .expect("the connection beyond the limit stays open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // One request on a held connection is still served.
    let first = &mut held[0];
    first
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(TIMEOUT, first.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse_http_response(&response).0, 200);
    drop(held);
    until(&tern, "/api/v1/clients", "slots freed", |_| true).await;
}

#[tokio::test]
async fn the_openapi_document_lists_what_the_router_serves() {
    let tern = keyed();
    let (status, doc) = get(&tern, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 25, "{}", paths.len());
    for (path, item) in paths {
        // Path parameters get a value; the router must know the path and the method.
        let concrete = path
            .replace("{clientid}", "someone")
            .replace("{topic}", "a%2Fb")
            .replace("{path}", "index.html");
        for method in item.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            if concrete == "/api/v1/events" {
                continue; // a stream: checked below
            }
            let body = (method == "POST").then_some("{}");
            let (status, _, text) = tern.http(&method, &concrete, Some(&auth()), body).await;
            assert!(
                status != 405 && !(status == 404 && text.contains("no such endpoint")),
                "{method} {path}: {status} {text}"
            );
        }
    }
}

#[tokio::test]
async fn the_dashboard_and_the_event_stream_are_served() {
    let tern = keyed();
    let (status, headers, _) = tern.http("GET", "/", None, None).await;
    assert_eq!(status, 302);
    assert_eq!(header(&headers, "location"), Some("/dashboard/"));
    let (status, headers, body) = tern.http("GET", "/dashboard/", None, None).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
    let (status, _, _) = tern.http("GET", "/dashboard/nothing.js", None, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = tern.http("GET", "/api/v1/events", None, None).await;
    assert_eq!(status, 401);

    let mut stream = tokio::net::TcpStream::connect(tern.admin_addr())
        .await
        .unwrap();
    let request = format!(
        "GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\r\n",
        auth()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        while !String::from_utf8_lossy(&seen).contains("event: stats") {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no stats event");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
}

// ---- Clients and sessions ----

#[tokio::test]
async fn clients_are_listed_filtered_and_paged() {
    let tern = keyed();
    let a = RawClient::connect(tern.addr, V5, "alpha").await;
    let mut with_user = conn311("beta", false);
    with_user.username = Some("alice".into());
    let (_b, ack) = RawClient::connect_with(tern.addr, with_user).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let _c = RawClient::connect(tern.addr, V5, "gamma").await;
    // A disconnected session stays listed.
    let mut d = RawClient::connect_with(tern.addr, conn5("delta", true, Some(300)))
        .await
        .0;
    d.send(&Packet::Disconnect(tern_codec::Disconnect::default()))
        .await;
    d.expect_closed().await;
    let all = until(&tern, "/api/v1/clients", "delta disconnected", |v| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["clientid"] == "delta" && c["connected"] == false)
    })
    .await;
    assert_eq!(ids(&all), ["alpha", "beta", "delta", "gamma"]);
    assert_eq!(
        all["meta"],
        json!({"page": 1, "limit": 100, "count": 4, "hasnext": false})
    );
    let alpha = &all["data"][0];
    assert_eq!(alpha["conn_state"], "connected");
    assert_eq!(alpha["proto_ver"], 5);
    assert_eq!(alpha["proto_name"], "MQTT");
    assert_eq!(alpha["ip_address"], "127.0.0.1");
    assert_eq!(alpha["keepalive"], 60);
    assert_eq!(alpha["listener"], tern.addr.to_string());
    assert!(alpha["connected_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(alpha["disconnected_at"], Value::Null);
    let delta = &all["data"][2];
    assert_eq!(delta["conn_state"], "disconnected");
    assert_eq!(delta["expiry_interval"], 300);
    assert!(delta["disconnected_at"].as_str().unwrap().ends_with('Z'));

    let (_, page1) = get(&tern, "/api/v1/clients?limit=3").await;
    assert_eq!(ids(&page1), ["alpha", "beta", "delta"]);
    assert_eq!(page1["meta"]["hasnext"], true);
    let (_, page2) = get(&tern, "/api/v1/clients?limit=3&page=2").await;
    assert_eq!(ids(&page2), ["gamma"]);
    assert_eq!(
        page2["meta"],
        json!({"page": 2, "limit": 3, "count": 4, "hasnext": false})
    );
    let (_, page3) = get(&tern, "/api/v1/clients?limit=3&page=3").await;
    assert_eq!(ids(&page3), Vec::<String>::new());

    for (query, expected) in [
        ("clientid=beta", vec!["beta"]),
        ("username=alice", vec!["beta"]),
        ("like_username=lic", vec!["beta"]),
        ("like_clientid=a", vec!["alpha", "beta", "delta", "gamma"]),
        ("like_clientid=mm", vec!["gamma"]),
        ("conn_state=disconnected", vec!["delta"]),
        ("conn_state=connected&proto_ver=5", vec!["alpha", "gamma"]),
        ("proto_ver=4", vec!["beta"]),
        ("proto_ver=3.1.1", vec!["beta"]),
        ("ip_address=127.0.0.1", vec!["alpha", "beta", "gamma"]),
        ("ip_address=10.0.0.1", vec![]),
    ] {
        let (status, v) = get(&tern, &format!("/api/v1/clients?{query}")).await;
        assert_eq!(status, 200, "{query}: {v}");
        assert_eq!(ids(&v), expected, "{query}");
        assert_eq!(v["meta"]["count"], expected.len(), "{query}");
    }
    for bad in [
        "conn_state=maybe",
        "proto_ver=6",
        "ip_address=here",
        "page=0",
        "limit=0",
        "limit=10001",
        "page=x",
    ] {
        let (status, v) = get(&tern, &format!("/api/v1/clients?{bad}")).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{bad}: {v}"
        );
    }
    let (status, v) = get(&tern, "/api/v1/clients?limit=10000").await;
    assert_eq!(status, 200, "{v}");

    let (status, v) = get(&tern, "/api/v1/clients/beta").await;
    assert_eq!(status, 200);
    assert_eq!(v["username"], "alice");
    assert_eq!(v["clean_start"], false);
    assert_eq!(v["expiry_interval"], u32::MAX);
    let (status, v) = get(&tern, "/api/v1/clients/nobody").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("CLIENTID_NOT_FOUND"))
    );

    let (status, sessions) = get(&tern, "/api/v1/sessions?conn_state=disconnected").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&sessions), ["delta"]);
    assert_eq!(sessions["data"][0]["connected"], false);
    drop(a);
}

#[tokio::test]
async fn a_kicked_mqtt5_client_gets_administrative_action() {
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet as RPacket};
    use rumqttc::v5::{AsyncClient, ConnectionError, MqttOptions, StateError};
    let tern = keyed();
    let mut o = MqttOptions::new("rumq", tern.addr.ip().to_string(), tern.addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(600));
    let (_client, mut el) = AsyncClient::new(o, 10);
    loop {
        let e = tokio::time::timeout(TIMEOUT, el.poll())
            .await
            .unwrap()
            .unwrap();
        if let rumqttc::v5::Event::Incoming(RPacket::ConnAck(_)) = e {
            break;
        }
    }
    let (status, v) = call(&tern, "DELETE", "/api/v1/clients/rumq", None).await;
    assert_eq!(status, 204, "{v}");
    let error = loop {
        match tokio::time::timeout(TIMEOUT, el.poll()).await.unwrap() {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            error,
            ConnectionError::MqttState(StateError::ServerDisconnect {
                reason_code: DisconnectReasonCode::AdministrativeAction,
                ..
            })
        ),
        "{error:?}"
    );
    // The session follows its expiry: still there, disconnected.
    let (status, v) = get(&tern, "/api/v1/clients/rumq").await;
    assert_eq!(status, 200);
    assert_eq!(v["connected"], false);
    assert_eq!(v["expiry_interval"], 600);
    // Not connected any more: nothing to kick.
    let (status, v) = call(&tern, "DELETE", "/api/v1/clients/rumq", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("CLIENTID_NOT_FOUND"))
    );
    let (status, _) = call(&tern, "DELETE", "/api/v1/clients/nobody", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_kicked_mqtt311_client_is_closed_and_its_will_published() {
    let tern = keyed();
    let mut watcher = RawClient::connect(tern.addr, V311, "watcher").await;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await;
    let mut victim = conn311("victim", false);
    victim.will = Some(will("wills/victim", b"gone", QoS::AtLeastOnce, false));
    let (mut victim, ack) = RawClient::connect_with(tern.addr, victim).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let (status, v) = call(&tern, "DELETE", "/api/v1/clients/victim", None).await;
    assert_eq!(status, 204, "{v}");
    // 3.1.1 has no DISCONNECT from the server: the connection just closes.
    victim.expect_closed().await;
    let will = watcher.recv_publish().await;
    assert_eq!(
        (&*will.topic, &will.payload[..]),
        ("wills/victim", &b"gone"[..])
    );
    let (_, v) = get(&tern, "/api/v1/clients/victim").await;
    assert_eq!(v["connected"], false);
}

#[tokio::test]
async fn discarding_a_session_disconnects_its_client_and_forgets_it() {
    let tern = keyed();
    let (mut c, _) = RawClient::connect_with(tern.addr, conn5("doomed", true, Some(600))).await;
    c.subscribe("d/#", QoS::AtLeastOnce).await;
    let (status, v) = call(&tern, "DELETE", "/api/v1/sessions/doomed", None).await;
    assert_eq!(status, 204, "{v}");
    c.expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION).await;
    let (status, _) = get(&tern, "/api/v1/clients/doomed").await;
    assert_eq!(status, 404);
    let (_, subs) = get(&tern, "/api/v1/subscriptions?clientid=doomed").await;
    assert_eq!(subs["meta"]["count"], 0);
    // A session without connection is discarded at once.
    let mut d = RawClient::connect_with(tern.addr, conn5("offline", true, Some(600)))
        .await
        .0;
    d.send(&Packet::Disconnect(tern_codec::Disconnect::default()))
        .await;
    d.expect_closed().await;
    until(&tern, "/api/v1/clients/offline", "offline", |v| {
        v["connected"] == false
    })
    .await;
    let (status, _) = call(&tern, "DELETE", "/api/v1/sessions/offline", None).await;
    assert_eq!(status, 204);
    let (status, _) = get(&tern, "/api/v1/clients/offline").await;
    assert_eq!(status, 404);
    let (status, v) = call(&tern, "DELETE", "/api/v1/sessions/offline", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("CLIENTID_NOT_FOUND"))
    );
}

// ---- Subscriptions ----

#[tokio::test]
async fn subscribing_on_behalf_of_a_client_delivers_to_it() {
    let tern = keyed();
    let mut publisher = RawClient::connect(tern.addr, V5, "pub").await;
    publisher
        .publish("t/kept", b"retained", QoS::AtLeastOnce, true)
        .await;
    let mut c = RawClient::connect(tern.addr, V5, "target").await;
    let (status, v) = call(
        &tern,
        "POST",
        "/api/v1/clients/target/subscribe",
        Some(json!({"topic": "t/#", "qos": 1})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"clientid": "target", "topic": "t/#", "share_group": null, "qos": 1, "nl": 0,
               "rap": 0, "rh": 0, "subid": null})
    );
    // Retained messages as for a SUBSCRIBE (Retain Handling 0).
    let kept = c.recv_publish().await;
    assert_eq!((&*kept.topic, kept.retain), ("t/kept", true));
    c.ack(&kept).await;
    publisher
        .publish("t/new", b"hello", QoS::AtLeastOnce, false)
        .await;
    let p = c.recv_publish().await;
    assert_eq!(
        (&*p.topic, &p.payload[..], p.qos),
        ("t/new", &b"hello"[..], QoS::AtLeastOnce)
    );
    c.ack(&p).await;
    let (_, subs) = get(&tern, "/api/v1/clients/target/subscriptions").await;
    assert_eq!(subs["data"][0]["topic"], "t/#");
    assert_eq!(subs["meta"]["count"], 1);

    // Retain Handling 2: no retained message.
    let (status, _) = call(
        &tern,
        "POST",
        "/api/v1/clients/target/subscribe",
        Some(json!({"topic": "t/kept", "qos": 0, "rh": 2})),
    )
    .await;
    assert_eq!(status, 200);
    c.expect_nothing().await;

    let (status, _) = call(
        &tern,
        "POST",
        "/api/v1/clients/target/unsubscribe",
        Some(json!({"topic": "t/#"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &tern,
        "POST",
        "/api/v1/clients/target/unsubscribe",
        Some(json!({"topic": "t/kept"})),
    )
    .await;
    assert_eq!(status, 204);
    publisher
        .publish("t/after", b"x", QoS::AtLeastOnce, false)
        .await;
    c.expect_nothing().await;
    let (status, v) = call(
        &tern,
        "POST",
        "/api/v1/clients/target/unsubscribe",
        Some(json!({"topic": "t/#"})),
    )
    .await;
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));

    for (body, expected) in [
        (json!({"topic": "t/#"}), 404),
        (json!({"topic": "a/#/b", "qos": 1}), 400),
        (json!({"topic": "a", "qos": 3}), 400),
        (json!({"topic": "a", "rh": 3}), 400),
        (json!({"topic": "$share/g/a", "nl": 1}), 400),
        (json!({"topic": "a", "extra": 1}), 400),
    ] {
        let client = if expected == 404 { "nobody" } else { "target" };
        let (status, v) = call(
            &tern,
            "POST",
            &format!("/api/v1/clients/{client}/subscribe"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body}: {v}");
    }
}

#[tokio::test]
async fn subscriptions_and_routes_are_listed_with_filters() {
    let tern = keyed();
    let mut a = RawClient::connect(tern.addr, V5, "a").await;
    a.subscribe_many(&["x/+", "y/#"], QoS::AtLeastOnce).await;
    let mut b = RawClient::connect(tern.addr, V5, "b").await;
    b.subscribe("x/+", QoS::AtMostOnce).await;
    b.subscribe("$share/g/x/+", QoS::ExactlyOnce).await;
    let (_, all) = get(&tern, "/api/v1/subscriptions").await;
    let pairs: Vec<(String, String)> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["clientid"].as_str().unwrap().to_owned(),
                s["topic"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("a".to_owned(), "x/+".to_owned()),
            ("a".to_owned(), "y/#".to_owned()),
            ("b".to_owned(), "$share/g/x/+".to_owned()),
            ("b".to_owned(), "x/+".to_owned()),
        ]
    );
    let count = |v: &Value| v["meta"]["count"].as_u64().unwrap();
    for (query, expected) in [
        ("clientid=b", 2),
        ("topic=x/%2B", 3),
        ("topic=%24share/g/x/%2B", 1),
        ("qos=2", 1),
        ("qos=1", 2),
        ("share_group=g", 1),
        ("match_topic=y/z/w", 1),
        ("match_topic=x/1", 3),
        ("match_topic=z", 0),
    ] {
        let (status, v) = get(&tern, &format!("/api/v1/subscriptions?{query}")).await;
        assert_eq!(status, 200, "{query}: {v}");
        assert_eq!(count(&v), expected, "{query}: {v}");
    }
    let (status, _) = get(&tern, "/api/v1/subscriptions?match_topic=x/%2B").await;
    assert_eq!(status, 400);
    let (status, _) = get(&tern, "/api/v1/subscriptions?qos=7").await;
    assert_eq!(status, 400);
    let (_, shared) = get(&tern, "/api/v1/subscriptions?share_group=g").await;
    assert_eq!(shared["data"][0]["share_group"], "g");
    assert_eq!(shared["data"][0]["qos"], 2);

    let (_, routes) = get(&tern, "/api/v1/topics").await;
    assert_eq!(
        routes["data"],
        json!([{"topic": "x/+", "subscribers": 3}, {"topic": "y/#", "subscribers": 1}])
    );
    let (_, routes) = get(&tern, "/api/v1/topics?topic=y/%23").await;
    assert_eq!(routes["meta"]["count"], 1);
    let (_, routes) = get(&tern, "/api/v1/topics?limit=1&page=2").await;
    assert_eq!(routes["data"][0]["topic"], "y/#");
    assert_eq!(routes["meta"]["hasnext"], false);
}

// ---- Retained messages ----

#[tokio::test]
async fn retained_messages_are_browsed_read_and_deleted_for_good() {
    let tern = keyed();
    let mut p = RawClient::connect(tern.addr, V5, "pub").await;
    for (topic, payload) in [("r/a", "one"), ("r/b/c", "two"), ("other", "three")] {
        p.publish(topic, payload.as_bytes(), QoS::AtLeastOnce, true)
            .await;
    }
    let (status, v) = get(&tern, "/api/v1/mqtt/retainer/messages").await;
    assert_eq!(status, 200);
    assert_eq!(v["meta"]["count"], 3);
    assert_eq!(v["data"][0]["topic"], "other");
    assert_eq!(v["data"][0]["payload_size"], 5);
    assert_eq!(v["data"][0]["from_clientid"], "pub");
    assert!(v["data"][0].get("payload").is_none(), "{v}");
    let (_, v) = get(&tern, "/api/v1/mqtt/retainer/messages?topic=r/%23&limit=1").await;
    assert_eq!(v["data"][0]["topic"], "r/a");
    assert_eq!(
        v["meta"],
        json!({"page": 1, "limit": 1, "count": 2, "hasnext": true})
    );
    let (status, _) = get(&tern, "/api/v1/mqtt/retainer/messages?topic=r/%23/x").await;
    assert_eq!(status, 400);

    let (status, v) = get(&tern, "/api/v1/mqtt/retainer/message/r%2Fb%2Fc").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["topic"], "r/b/c");
    assert_eq!(v["payload"], "dHdv"); // base64 of "two"
    assert_eq!(v["qos"], 1);
    // Slashes need not be encoded.
    let (status, _) = get(&tern, "/api/v1/mqtt/retainer/message/r/b/c").await;
    assert_eq!(status, 200);
    let (status, v) = get(&tern, "/api/v1/mqtt/retainer/message/r%2Fnone").await;
    assert_eq!((status, v["code"].as_str()), (404, Some("NOT_FOUND")));

    let (status, _) = call(&tern, "DELETE", "/api/v1/mqtt/retainer/message/r%2Fa", None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&tern, "DELETE", "/api/v1/mqtt/retainer/message/r%2Fa", None).await;
    assert_eq!(status, 404);
    let mut s = RawClient::connect(tern.addr, V5, "late").await;
    s.subscribe("r/a", QoS::AtLeastOnce).await;
    s.expect_nothing().await;

    // Deleted in the store too: a restart does not bring it back.
    let addr = tern.addr;
    let config = TempFile::new("toml", &keyed_config(""));
    let data = tern.stop();
    let config_path = config.path.to_string_lossy().into_owned();
    let tern = Tern::restart(data, addr, &["--config", &config_path]);
    let (_, v) = get(&tern, "/api/v1/mqtt/retainer/messages").await;
    let topics: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["other", "r/b/c"]);
}

// ---- Publish ----

#[tokio::test]
async fn a_message_published_through_the_api_reaches_mosquitto_sub() {
    let tern = keyed();
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &tern.addr.port().to_string()])
        .args(["-i", "msub", "-t", "api/#", "-v", "-C", "2", "-W", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run mosquitto_sub");
    until(
        &tern,
        "/api/v1/subscriptions?clientid=msub",
        "mosquitto_sub",
        |v| v["meta"]["count"] == 1,
    )
    .await;
    let (status, v) = call(
        &tern,
        "POST",
        "/api/v1/publish",
        Some(json!({"topic": "api/plain", "payload": "hello there", "qos": 1})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["matched"], 1);
    let (status, v) = call(
        &tern,
        "POST",
        "/api/v1/publish",
        Some(
            json!({"topic": "api/b64", "payload": "AAEC", "payload_encoding": "base64",
                    "properties": {"content_type": "application/octet-stream",
                                   "user_properties": [["k", "v"]]}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let stdout = sub.stdout.take().unwrap();
    let lines: Vec<Vec<u8>> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .split(b'\n')
            .map_while(Result::ok)
            .collect()
    })
    .await
    .unwrap();
    let status = sub.wait().unwrap();
    assert!(status.success(), "mosquitto_sub: {status}");
    assert_eq!(lines[0], b"api/plain hello there");
    assert_eq!(lines[1], b"api/b64 \x00\x01\x02");

    // Retained, then read back.
    let (status, _) = call(
        &tern,
        "POST",
        "/api/v1/publish",
        Some(json!({"topic": "api/kept", "payload": "k", "retain": true})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = get(&tern, "/api/v1/mqtt/retainer/message/api%2Fkept").await;
    assert_eq!(status, 200);
    assert_eq!(v["payload"], "aw==");
    assert_eq!(v["from_clientid"], Value::Null);

    for body in [
        json!({"topic": "$SYS/x", "payload": "x"}),
        json!({"topic": "a/+", "payload": "x"}),
        json!({"topic": "a", "payload": "!!", "payload_encoding": "base64"}),
        json!({"topic": "a", "payload": "x", "payload_encoding": "hex"}),
        json!({"topic": "a", "qos": 3}),
        json!({"payload": "no topic"}),
        json!({"topic": "a", "properties": {"unknown": 1}}),
    ] {
        let (status, v) = call(&tern, "POST", "/api/v1/publish", Some(body.clone())).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{body}: {v}"
        );
    }
}

// ---- Stats, listeners, configuration ----

#[tokio::test]
async fn stats_listeners_and_config() {
    let tern = keyed();
    let _a = RawClient::connect(tern.addr, V5, "one").await;
    let _b = RawClient::connect(tern.addr, V311, "two").await;
    for path in ["/api/v1/stats", "/api/v1/metrics"] {
        let (status, v) = get(&tern, path).await;
        assert_eq!(status, 200);
        assert_eq!(v["connections.count"], 2, "{path}: {v}");
    }
    let (_, v) = get(&tern, "/api/v1/listeners").await;
    assert_eq!(v["meta"]["count"], 1);
    let listener = &v["data"][0];
    assert_eq!(listener["bind"], tern.addr.to_string());
    assert_eq!(listener["type"], "tcp");
    assert_eq!(listener["running"], true);
    let (_, v) = get(&tern, "/api/v1/config").await;
    assert!(v["file"].as_str().unwrap().ends_with(".toml"), "{v}");
    assert!(v["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["last_reload"], Value::Null);
}

#[tokio::test]
async fn reload_through_the_api_takes_new_keys_and_refuses_bad_files() {
    let config = TempFile::new("toml", &keyed_config(""));
    let config_path = config.path.to_string_lossy().into_owned();
    let tern = Tern::start_args(&["--config", &config_path]);
    let (status, v) = call(&tern, "POST", "/api/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert!(!v["changes"].as_array().unwrap().is_empty());

    // A second key, in force after the reload.
    std::fs::write(
        &config.path,
        keyed_config("[[admin.api_keys]]\nkey = \"second\"\nsecret = \"second-secret\""),
    )
    .unwrap();
    let second = basic_auth("second", "second-secret");
    let (status, _, _) = tern
        .http("GET", "/api/v1/clients", Some(&second), None)
        .await;
    assert_eq!(status, 401);
    let (status, v) = call(&tern, "POST", "/api/v1/reload", None).await;
    assert_eq!(status, 200, "{v}");
    let (status, _, _) = tern
        .http("GET", "/api/v1/clients", Some(&second), None)
        .await;
    assert_eq!(status, 200);

    // A file that does not validate: refused with its line, the running configuration stays.
    std::fs::write(&config.path, keyed_config("[admin]\nlisten = \"nowhere\"")).unwrap();
    let (status, v) = call(&tern, "POST", "/api/v1/reload", None).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("CONFIG_INVALID")),
        "{v}"
    );
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{config_path}:3")) && message.contains("admin.listen"),
        "{message}"
    );
    let (status, _, _) = tern
        .http("GET", "/api/v1/clients", Some(&second), None)
        .await;
    assert_eq!(status, 200);
    let (_, v) = get(&tern, "/api/v1/config").await;
    assert_eq!(v["last_reload"]["ok"], false);
    assert!(
        v["last_reload"]["error"]
            .as_str()
            .unwrap()
            .contains("admin.listen")
    );
}

// ---- The admin listener ----

#[tokio::test]
async fn the_admin_listener_can_be_turned_off_or_moved() {
    let off = Tern::start_args(&["--admin-listen", "off"]);
    off.wait_log("admin API turned off").await;
    assert!(
        !off.logs().contains("admin API listening"),
        "{}",
        off.logs()
    );

    // From the configuration file, when the command line says nothing.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let file = TempFile::new(
        "toml",
        &keyed_config(&format!("[admin]\nlisten = \"127.0.0.1:{port}\"")),
    );
    let path = file.path.to_string_lossy().into_owned();
    let (child, logs) = spawn_watched(&["serve", "--config", &path, "--listen", "127.0.0.1:0"]);
    let _kill = KillOnDrop(child);
    assert!(
        logs.contains(&format!("admin API listening on http://127.0.0.1:{port}")),
        "{logs}"
    );

    // An explicit address that is taken stops the broker.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = TempDir::new();
    let (status, stderr) = tern_expect_exit(
        &["serve", "--listen", "127.0.0.1:0", "--admin-listen", &addr],
        &data.path,
    );
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot listen on {addr} for the admin API")),
        "{stderr}"
    );
    let (status, stderr) = tern_expect_exit(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "nowhere",
        ],
        &data.path,
    );
    assert!(!status.success());
    assert!(stderr.contains("invalid --admin-listen"), "{stderr}");
}

#[tokio::test]
async fn a_taken_default_admin_port_is_only_a_warning() {
    // Hold 127.0.0.1:18083 (unless something else already does: the same for this test).
    let _held = std::net::TcpListener::bind("127.0.0.1:18083");
    let (child, logs) = spawn_watched(&["serve", "--listen", "127.0.0.1:0"]);
    let _kill = KillOnDrop(child);
    // MQTT is served all the same.
    assert!(logs.contains("admin API not started"), "{logs}");
    assert!(logs.contains("127.0.0.1:18083"), "{logs}");
}

#[tokio::test]
async fn bad_admin_settings_name_the_file_line_and_key() {
    for (table, key, line) in [
        ("[admin]\nlisten = \"nowhere\"", "admin.listen", 2),
        (
            "[admin]\nmetrics_anonymous = \"yes\"",
            "admin.metrics_anonymous",
            2,
        ),
        (
            "[admin]\napi_key_file = \"/nonexistent/keys\"",
            "admin.api_key_file",
            2,
        ),
        ("[admin]\ntoken_ttl = \"0s\"", "admin.token_ttl", 2),
        ("[admin]\nunknown = 1", "admin.unknown", 2),
        (
            "[[admin.api_keys]]\nkey = \"k\"\nsecret = \"short\"",
            "admin.api_keys[0].secret",
            3,
        ),
        (
            "[[admin.api_keys]]\nkey = \"k\"\nsecret_hash = \"not-a-hash\"",
            "admin.api_keys[0].secret_hash",
            3,
        ),
    ] {
        let (stderr, file) = serve_config_fails(table, "toml", &["--listen", "127.0.0.1:0"]);
        let located = format!("{}:{line}", file.path.display());
        assert!(
            stderr.contains(&located) && stderr.contains(key),
            "{table}: expected {located} and {key} in {stderr}"
        );
    }
}

/// Starts `tern ARGS...` without the harness's `--admin-listen`, and returns it with what it
/// logged up to its MQTT `listening on` line (at most 20 s).
fn spawn_watched(args: &[&str]) -> (std::process::Child, String) {
    let data = TempDir::new();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("TERN_DATA_DIR", &data.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tern");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _data = data;
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("listening on") && !line.contains("admin API") {
                let _ = tx.send(seen.clone());
            }
        }
        let _ = tx.send(seen);
    });
    let logs = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tern did not start");
    (child, logs)
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
