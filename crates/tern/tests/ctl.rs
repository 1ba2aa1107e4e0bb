//! `tern ctl`: the real binary against a real `tern serve` and its admin API. Each command's
//! table and `--json` output, a kick seen by the kicked client, errors and exit statuses, and
//! API key files: a key made by `tern ctl apikey create` logs in.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tern_codec::{ProtocolVersion, QoS, ReasonCode};

const KEY: &str = "ops";
const SECRET: &str = "ctl-test-secret";

/// The configuration of a broker whose admin API knows the key `ops`.
fn config() -> String {
    format!(
        "allow_anonymous = true\n\n[[admin.api_keys]]\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n"
    )
}

/// A broker whose admin API knows the key `ops`.
fn broker() -> Tern {
    Tern::start_config(&config(), "toml")
}

/// `tern ARGS...` with no `TERN_*` variable from the caller's environment.
fn tern_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
    command
        .args(args)
        .env_remove("TERN_ADMIN_URL")
        .env_remove("TERN_API_KEY")
        .env_remove("TERN_API_SECRET");
    command
}

fn run(mut command: impl std::borrow::BorrowMut<Command>) -> Output {
    run_bounded(command.borrow_mut(), None, Duration::from_secs(30))
}

/// `tern ctl --url URL ARGS...` with the `ops` key given in the environment.
fn ctl(tern: &Tern, args: &[&str]) -> Output {
    let url = format!("http://{}", tern.admin_addr());
    let mut full = vec!["ctl", "--url", &url];
    full.extend_from_slice(args);
    run(tern_command(&full)
        .env("TERN_API_KEY", KEY)
        .env("TERN_API_SECRET", SECRET))
}

/// Runs `tern ctl ARGS...`, asserts success, returns stdout.
fn ctl_ok(tern: &Tern, args: &[&str]) -> String {
    let out = ctl(tern, args);
    assert!(
        out.status.success(),
        "tern ctl {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `tern ctl --json ARGS...`, asserts success, returns the parsed output.
fn ctl_json(tern: &Tern, args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let text = ctl_ok(tern, &full);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Runs `tern ctl ARGS...`, asserts exit status `code`, returns stderr.
fn ctl_fails(tern: &Tern, args: &[&str], code: i32) -> String {
    let out = ctl(tern, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "tern ctl {args:?}: stdout {}; stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).expect("UTF-8 output")
}

/// The `data` of a list answer.
fn data(value: &Value) -> &Vec<Value> {
    value["data"].as_array().expect("a list answer")
}

/// The lines of a table, split into cells (two or more spaces apart).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The row of `rows` whose first cell is `first`.
fn row<'a>(rows: &'a [Vec<String>], first: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r.first().map(String::as_str) == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in {rows:?}"))
}

/// The value of a column, by its heading, in a row of a table whose first line is headings.
fn column<'a>(rows: &'a [Vec<String>], row_first: &str, heading: &str) -> &'a str {
    let position = rows[0]
        .iter()
        .position(|h| h == heading)
        .unwrap_or_else(|| panic!("no column {heading:?} in {:?}", rows[0]));
    &row(rows, row_first)[position]
}

#[tokio::test]
async fn clients_list_show_and_kick() {
    let tern = broker();
    let mut five = RawClient::connect(tern.addr, ProtocolVersion::V5, "ctl-five").await;
    let _three = RawClient::connect(tern.addr, ProtocolVersion::V311, "ctl-three").await;

    let rows = table(&ctl_ok(&tern, &["clients"]));
    assert_eq!(rows[0][0], "CLIENT ID");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(column(&rows, "ctl-five", "CONNECTED"), "yes");
    assert_eq!(column(&rows, "ctl-three", "CONNECTED"), "yes");

    let all = ctl_json(&tern, &["clients"]);
    assert_eq!(all["meta"]["count"], 2);
    let mut ids: Vec<&str> = data(&all)
        .iter()
        .map(|c| c["clientid"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ctl-five", "ctl-three"]);
    let one = ctl_json(&tern, &["clients", "list", "--clientid", "ctl-five"]);
    assert_eq!(data(&one).len(), 1);
    assert_eq!(data(&one)[0]["clientid"], "ctl-five");
    assert_eq!(data(&one)[0]["connected"], true);
    // Paging: one per page, the table says where the next page is.
    let paged = ctl_ok(&tern, &["clients", "--limit", "1"]);
    assert!(
        paged.ends_with("page 1; 2 clients in all; next: --page 2\n"),
        "{paged}"
    );
    assert_eq!(
        data(&ctl_json(
            &tern,
            &["clients", "--limit", "1", "--page", "2"]
        ))
        .len(),
        1
    );

    let shown = ctl_ok(&tern, &["clients", "show", "ctl-five"]);
    assert!(
        shown
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["clientid", "ctl-five"]),
        "{shown}"
    );
    assert_eq!(
        ctl_json(&tern, &["clients", "show", "ctl-five"])["clientid"],
        "ctl-five"
    );

    assert_eq!(
        ctl_ok(&tern, &["clients", "kick", "ctl-five"]),
        "kicked ctl-five\n"
    );
    five.expect_disconnect(ReasonCode::ADMINISTRATIVE_ACTION)
        .await;
    let stderr = ctl_fails(&tern, &["clients", "kick", "nobody"], 1);
    assert!(stderr.contains("HTTP 404"), "{stderr}");
    let connected = ctl_json(&tern, &["clients", "--connected"]);
    let ids: Vec<&str> = data(&connected)
        .iter()
        .map(|c| c["clientid"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ctl-three"]);
}

#[tokio::test]
async fn subscribe_publish_topics_and_unsubscribe() {
    let tern = broker();
    let mut c = RawClient::connect(tern.addr, ProtocolVersion::V5, "ctl-sub").await;

    assert_eq!(
        ctl_ok(&tern, &["subscribe", "ctl-sub", "ctl/+", "-q", "1"]),
        "subscribed ctl-sub to ctl/+ (QoS 1)\n"
    );
    let subs = ctl_json(&tern, &["subscriptions", "--client", "ctl-sub"]);
    assert_eq!(data(&subs).len(), 1, "{subs}");
    assert_eq!(data(&subs)[0]["topic"], "ctl/+");
    assert_eq!(data(&subs)[0]["qos"], 1);
    let rows = table(&ctl_ok(&tern, &["subscriptions"]));
    assert_eq!(column(&rows, "ctl-sub", "TOPIC"), "ctl/+");
    assert_eq!(column(&rows, "ctl-sub", "QOS"), "1");

    let routes = table(&ctl_ok(&tern, &["topics"]));
    assert_eq!(routes[0][0], "TOPIC");
    assert_eq!(row(&routes, "ctl/+").len(), routes[0].len(), "{routes:?}");
    let routes = ctl_json(&tern, &["topics"]);
    assert_eq!(data(&routes)[0]["topic"], "ctl/+");

    assert_eq!(
        ctl_ok(&tern, &["publish", "ctl/x", "hello from ctl", "-q", "1"]),
        "published 14 bytes to ctl/x\n"
    );
    let p = c.recv_publish().await;
    assert_eq!(
        (p.topic.as_ref(), p.payload.as_ref(), p.qos),
        ("ctl/x", &b"hello from ctl"[..], QoS::AtLeastOnce)
    );
    c.ack(&p).await;

    assert_eq!(
        ctl_ok(&tern, &["unsubscribe", "ctl-sub", "ctl/+"]),
        "unsubscribed ctl-sub from ctl/+\n"
    );
    assert_eq!(
        ctl_ok(&tern, &["subscriptions", "--client", "ctl-sub"]),
        "no subscriptions\n"
    );
    ctl_ok(&tern, &["publish", "ctl/x", "not for you"]);
    c.expect_nothing().await;
}

#[tokio::test]
async fn retained_list_show_and_delete() {
    let tern = broker();
    assert_eq!(
        ctl_ok(
            &tern,
            &["publish", "ctl/kept", "kept text", "-r", "-q", "1"]
        ),
        "published 9 bytes to ctl/kept (retained)\n"
    );
    let list = ctl_json(&tern, &["retained", "--topic", "ctl/#"]);
    assert_eq!(data(&list).len(), 1, "{list}");
    assert_eq!(data(&list)[0]["topic"], "ctl/kept");
    let rows = table(&ctl_ok(&tern, &["retained", "list"]));
    assert_eq!(rows[0][0], "TOPIC");
    assert_eq!(column(&rows, "ctl/kept", "QOS"), "1");

    let shown = ctl_ok(&tern, &["retained", "show", "ctl/kept"]);
    assert!(shown.ends_with("payload:\nkept text\n"), "{shown}");
    let json = ctl_json(&tern, &["retained", "show", "ctl/kept"]);
    assert_eq!(json["payload"], "a2VwdCB0ZXh0"); // base64 of "kept text"

    // A subscriber gets it, as retained.
    let mut c = RawClient::connect(tern.addr, ProtocolVersion::V5, "ctl-ret").await;
    c.subscribe("ctl/#", QoS::AtMostOnce).await;
    let p = c.recv_publish().await;
    assert!(p.retain);
    assert_eq!(p.payload.as_ref(), b"kept text");

    assert_eq!(
        ctl_ok(&tern, &["retained", "delete", "ctl/kept"]),
        "deleted the retained message of ctl/kept\n"
    );
    assert_eq!(ctl_ok(&tern, &["retained"]), "no retained messages\n");
    let stderr = ctl_fails(&tern, &["retained", "show", "ctl/kept"], 1);
    assert!(stderr.contains("HTTP 404"), "{stderr}");
}

#[tokio::test]
async fn sessions_list_and_discard() {
    let tern = broker();
    let mut connect = connect_packet(ProtocolVersion::V5, "ctl-kept", false);
    connect.properties.session_expiry_interval = Some(3600);
    let c = connected(&tern, connect).await;
    c.close().await;

    let rows = table(&ctl_ok(&tern, &["sessions"]));
    assert_eq!(rows[0][0], "CLIENT ID");
    assert_eq!(column(&rows, "ctl-kept", "CONNECTED"), "no");
    let sessions = ctl_json(&tern, &["sessions", "list"]);
    assert_eq!(data(&sessions).len(), 1);
    assert_eq!(data(&sessions)[0]["clientid"], "ctl-kept");

    assert_eq!(
        ctl_ok(&tern, &["sessions", "discard", "ctl-kept"]),
        "discarded the session of ctl-kept\n"
    );
    assert_eq!(ctl_ok(&tern, &["sessions"]), "no sessions\n");
    // The client comes back to no session.
    let (_c, ack) = RawClient::connect_with(
        tern.addr,
        connect_packet(ProtocolVersion::V5, "ctl-kept", false),
    )
    .await;
    assert!(!ack.session_present);
}

#[tokio::test]
async fn stats_listeners_status_and_reload() {
    let file = TempFile::new("toml", &config());
    let path = file.path.to_str().unwrap();
    let tern = Tern::spawn_in(
        &["serve", "--config", path, "--listen", "127.0.0.1:0"],
        None,
        TempDir::new(),
    );
    let _c = RawClient::connect(tern.addr, ProtocolVersion::V5, "ctl-stats").await;

    let stats = ctl_json(&tern, &["stats"]);
    assert_eq!(stats["connections.count"], 1, "{stats}");
    let text = ctl_ok(&tern, &["stats"]);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["connections.count", "1"]),
        "{text}"
    );

    let listeners = ctl_json(&tern, &["listeners"]);
    let listeners = listeners
        .as_array()
        .or_else(|| listeners["data"].as_array())
        .expect("a list of listeners");
    let tcp = format!("tcp:{}", tern.addr);
    assert!(
        listeners.iter().any(|l| l["id"] == tcp.as_str()),
        "{listeners:?}"
    );
    let rows = table(&ctl_ok(&tern, &["listeners"]));
    assert_eq!(column(&rows, &tcp, "TYPE"), "tcp");

    // /status needs no key.
    let url = format!("http://{}", tern.admin_addr());
    let out = run(tern_command(&["ctl", "--url", &url, "status"]));
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["status", "running"]),
        "{text}"
    );

    let text = ctl_ok(&tern, &["reload"]);
    assert!(text.starts_with("reloaded:"), "{text}");
    let json = ctl_json(&tern, &["reload"]);
    assert_eq!(json["ok"], true, "{json}");
    // A configuration that no longer loads: refused, in words, exit 1.
    std::fs::write(&file.path, "allow_anonymous = maybe\n").unwrap();
    let stderr = ctl_fails(&tern, &["reload"], 1);
    assert!(stderr.contains("(CONFIG_INVALID, HTTP 400)"), "{stderr}");
    assert!(stderr.contains(&format!("{path}:1")), "{stderr}");
}

#[tokio::test]
async fn errors_in_words_and_exit_statuses() {
    let tern = broker();
    let url = format!("http://{}", tern.admin_addr());

    // No key: 401, exit 2, and how to make one.
    let out = run(tern_command(&["ctl", "--url", &url, "clients"]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("tern ctl: not authorized: "), "{stderr}");
    assert!(
        stderr.contains("tern ctl apikey create NAME --file FILE"),
        "{stderr}"
    );

    // A wrong secret, in the flags this time.
    let out = run(tern_command(&[
        "ctl", "--url", &url, "--key", KEY, "--secret", "wrong", "stats",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not authorized"), "{stderr}");
    assert!(stderr.contains("check the key and secret"), "{stderr}");

    // An API refusal: its message and code, exit 1.
    let stderr = ctl_fails(&tern, &["clients", "show", "nobody"], 1);
    assert!(stderr.starts_with("tern ctl: "), "{stderr}");
    assert!(
        stderr.contains("(CLIENTID_NOT_FOUND, HTTP 404)"),
        "{stderr}"
    );
    let stderr = ctl_fails(&tern, &["subscribe", "ctl-none", "bad/#/filter"], 1);
    assert!(stderr.contains("HTTP 4"), "{stderr}");

    // Nothing listening: exit 1, with the URL.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let nobody = format!("http://{closed}");
    let out = run(tern_command(&[
        "ctl", "--url", &nobody, "--key", "k", "--secret", "s", "stats",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach the admin API at {nobody}")),
        "{stderr}"
    );

    // Bad command lines: exit 2 with what is wrong.
    for (args, expected) in [
        (
            &["ctl", "--url", "ftp://x", "stats"][..],
            "invalid --url `ftp://x`",
        ),
        (&["ctl", "--key", "k", "stats"], "--key needs --secret"),
        (&["ctl", "subscribe", "c", "t", "-q", "3"], "-q"),
        (&["ctl", "apikey", "create", "bad name"], "invalid key name"),
    ] {
        let out = run(tern_command(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The `key:` and `secret:` lines that `apikey create` prints.
fn created_key(stdout: &str) -> (String, String) {
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    (field("key:"), field("secret:"))
}

#[tokio::test]
async fn apikey_file_round_trip() {
    let dir = TempDir::new();
    let file = dir.path.join("api-keys");
    let path = file.to_str().unwrap();

    let out = run(tern_command(&[
        "ctl", "apikey", "create", "ci", "--file", path,
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (key, secret) = created_key(&String::from_utf8(out.stdout).unwrap());
    assert!(key.starts_with("ci."), "{key}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(&format!("{key}:$7$")), "{text}");
    assert!(!text.contains(&secret), "the file holds the secret itself");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second key; the first name cannot be taken again.
    let out = run(tern_command(&[
        "ctl", "apikey", "create", "backup", "--file", path,
    ]));
    assert!(out.status.success());
    let (backup, _) = created_key(&String::from_utf8(out.stdout).unwrap());
    let out = run(tern_command(&[
        "ctl", "apikey", "create", "ci", "--file", path,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a key named `ci`"));

    let out = run(tern_command(&["ctl", "apikey", "list", "--file", path]));
    let listed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table(&listed),
        vec![
            vec!["NAME".to_owned(), "KEY".to_owned(), "HASH".to_owned()],
            vec!["ci".to_owned(), key.clone(), "sha512-pbkdf2".to_owned()],
            vec![
                "backup".to_owned(),
                backup.clone(),
                "sha512-pbkdf2".to_owned()
            ],
        ]
    );

    // The broker reads the file: the new key works with tern ctl and logs in.
    let tern = Tern::start_config(
        &format!("allow_anonymous = true\n\n[admin]\napi_key_file = \"{path}\"\n"),
        "toml",
    );
    let url = format!("http://{}", tern.admin_addr());
    let out = run(tern_command(&["ctl", "--url", &url, "--json", "clients"])
        .env("TERN_API_KEY", &key)
        .env("TERN_API_SECRET", &secret));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let clients: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(clients["meta"]["count"], 0);
    let login = format!("{{\"key\":\"{key}\",\"secret\":\"{secret}\"}}");
    let (status, _, body) = tern.http("POST", "/api/v1/login", None, Some(&login)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"token\""), "{body}");

    // Deleted by name: only the other key is left.
    let out = run(tern_command(&[
        "ctl", "apikey", "delete", "ci", "--file", path,
    ]));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("deleted {key}\n")
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with(&format!("{backup}:$7$")) && !text.contains(&key),
        "{text}"
    );
    let out = run(tern_command(&[
        "ctl", "apikey", "delete", "ci", "--file", path,
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no key named `ci`"));

    // The last key deleted: a configuration naming the file still loads (no key lets anyone
    // in), rather than being refused for an empty password file.
    let out = run(tern_command(&[
        "ctl", "apikey", "delete", "backup", "--file", path,
    ]));
    assert!(out.status.success());
    let config = dir.path.join("tern.toml");
    std::fs::write(
        &config,
        format!("[admin]\napi_key_file = {:?}\n", file.to_str().unwrap()),
    )
    .unwrap();
    let out = run(tern_command(&["check-config", config.to_str().unwrap()]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn apikey_without_a_file_prints_a_config_table_that_works() {
    let out = run(tern_command(&["ctl", "apikey", "create", "toml-key"]));
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (key, secret) = created_key(&stdout);
    let table = &stdout[stdout.find("[[admin.api_keys]]").expect("a TOML table")..];
    assert!(
        table.contains(&format!("key = \"{key}\"\nsecret_hash = \"$7$")),
        "{table}"
    );
    let tern = Tern::start_config(&format!("allow_anonymous = true\n\n{table}"), "toml");
    let url = format!("http://{}", tern.admin_addr());
    let out = run(tern_command(&[
        "ctl", "--url", &url, "--key", &key, "--secret", &secret, "stats",
    ]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Wrong secret for that key: refused.
    let (status, _, _) = tern
        .http(
            "GET",
            "/api/v1/stats",
            Some(&basic_auth(&key, "nope")),
            None,
        )
        .await;
    assert_eq!(status, 401);
}
