//! Logging: JSON lines, redaction of client ids and payloads, connection and disconnection
//! lines in Mosquitto's manner, log files (reopened on reload, for logrotate), timestamps.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tern_codec::{Packet, ReasonCode};

/// A `tern serve --config FILE` run by hand, for log formats the harness cannot read
/// (`listening on` is no longer at the end of a line in JSON); killed when dropped.
struct Raw {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _data: TempDir,
}

impl Raw {
    fn start(config: &TempFile, rust_log: &str) -> Self {
        let data = TempDir::new();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
            .args(["serve", "--admin-listen", "off", "--config"])
            .arg(&config.path)
            .env("RUST_LOG", rust_log)
            .env("TERN_DATA_DIR", &data.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tern");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            _data: data,
        }
    }

    /// The first line for which `find` gives something (waits at most [`TIMEOUT`]).
    fn wait<T>(&self, what: &str, find: impl Fn(&str) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(found) = self.lines.lock().unwrap().iter().find_map(|l| find(l)) {
                return found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} in {:?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> Option<serde_json::Value> {
    serde_json::from_str(line).ok()
}

#[tokio::test]
async fn json_lines_parse_with_their_fields() {
    let config = TempFile::new(
        "toml",
        "allow_anonymous = true\n[log]\nformat = \"json\"\n[[listeners]]\naddress = \"127.0.0.1:0\"\n",
    );
    let tern = Raw::start(&config, "info");
    let addr: SocketAddr = tern.wait("a listening line", |l| {
        let v = json(l)?;
        v["message"]
            .as_str()?
            .strip_prefix("listening on ")?
            .parse()
            .ok()
    });
    RawClient::connect(addr, V5, "json-client")
        .await
        .disconnect()
        .await;
    let line = tern.wait("the connection line", |l| {
        json(l).filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("client json-client connected from"))
        })
    });
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "tern::logging");
    let stamp = line["timestamp"].as_str().expect("a timestamp");
    assert!(
        stamp.len() == "2025-01-01T00:00:00.000000Z".len() && stamp.ends_with('Z'),
        "{stamp}"
    );
    // Every line is JSON.
    for l in tern.text().lines() {
        assert!(json(l).is_some(), "not JSON: {l}");
    }
}

#[tokio::test]
async fn redaction_hides_client_ids_and_payloads() {
    use sha2::Digest;
    let config = TempFile::new(
        "toml",
        "allow_anonymous = true\n[log]\nredact = [\"client_id\", \"payload\"]\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n",
    );
    let tern = Raw::start(&config, "debug");
    let addr: SocketAddr = tern.wait("a listening line", |l| {
        l.split("listening on ").nth(1)?.trim().parse().ok()
    });
    let mut c = RawClient::connect(addr, V5, "secret-device").await;
    c.publish0("sensors/t", b"top-secret-payload").await;
    assert!(c.sync().await.is_empty());
    c.disconnect().await;
    let digest = sha2::Sha256::digest(b"secret-device");
    let hashed = format!(
        "redacted-{:02x}{:02x}{:02x}{:02x}",
        digest[0], digest[1], digest[2], digest[3]
    );
    tern.wait("the redacted disconnection line", |l| {
        l.contains(&format!("client {hashed} disconnected"))
            .then_some(())
    });
    let text = tern.text();
    assert!(
        text.contains(&format!(
            "received PUBLISH from {hashed} (q0, r0, 'sensors/t', 18 bytes)"
        )),
        "{text}"
    );
    assert!(!text.contains("secret-device"), "{text}");
    assert!(!text.contains("top-secret-payload"), "{text}");
}

#[tokio::test]
async fn connection_lines_say_how_each_connection_ended() {
    let tern = Tern::start_config("allow_anonymous = true\n", "toml");
    // A clean DISCONNECT.
    let mut named = connect_packet(V311, "polite", true);
    named.username = Some("alice".into());
    let (c, ack) = RawClient::connect_with(tern.addr, named).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    c.close().await;
    tern.wait_log("client polite connected from 127.0.0.1:")
        .await;
    tern.wait_log("(MQTT 3.1.1), k60, u'alice'").await;
    tern.wait_log("client polite disconnected").await;

    // The socket closed without DISCONNECT.
    let c = RawClient::connect(tern.addr, V5, "abrupt").await;
    drop(c);
    tern.wait_log("client abrupt closed its connection").await;

    // Keep-alive 1 s, then silence: closed after 1.5 s.
    let mut quiet = connect_packet(V5, "sleepy", true);
    quiet.keep_alive = 1;
    let (mut c, ack) = RawClient::connect_with(tern.addr, quiet).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    match c.recv().await {
        Packet::Disconnect(d) => assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
    tern.wait_log("client sleepy has exceeded timeout, disconnecting")
        .await;
}

#[tokio::test]
async fn a_log_file_gets_the_lines_and_is_reopened_on_reload() {
    let dir = TempDir::new();
    let log = dir.path.join("tern.log");
    let config = TempFile::new(
        "toml",
        &format!(
            "allow_anonymous = true\n[log]\ndest = [\"stderr\", \"file:{}\"]\n\
             timestamp_format = \"%Y-%m-%d %H:%M:%S\"\n",
            log.display()
        ),
    );
    let path = config.path.to_str().expect("UTF-8 temp path");
    let tern = Tern::spawn_in(
        &["serve", "--config", path, "--listen", "127.0.0.1:0"],
        None,
        TempDir::new(),
    );
    let text = std::fs::read_to_string(&log).expect("the log file");
    let listening = text
        .lines()
        .find(|l| l.contains("listening on"))
        .unwrap_or_else(|| panic!("{text}"));
    // `2025-01-31 12:00:00  INFO tern::server: listening on ...`
    let stamp = &listening[..19];
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{listening}"
    );

    // logrotate moves the file away, then SIGHUP: a new file.
    std::fs::rename(&log, dir.path.join("tern.log.1")).expect("rotate");
    tern.sighup(1);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let fresh = std::fs::read_to_string(&log).unwrap_or_default();
        if fresh.contains("reload: ACL") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{fresh}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn timestamps_can_be_turned_off() {
    let tern = Tern::start_config("[log]\ntimestamps = false\n", "toml");
    let logs = tern.logs();
    let first = logs.lines().next().expect("a line");
    assert!(
        first.starts_with(" INFO ") || first.starts_with(" WARN "),
        "{first}"
    );
}

#[test]
fn bad_log_settings_name_the_file_line_and_key() {
    let cases = [
        (
            "[log]\nformat = \"xml\"\n",
            "toml",
            ":2: `log.format`: expected \"text\" or \"json\"",
        ),
        (
            "[log]\nredact = [\"password\"]\n",
            "toml",
            ":2: `log.redact`: expected \"client_id\", \"username\" or \"payload\"",
        ),
        (
            "[log]\ndest = \"file:\"\n",
            "toml",
            ":2: `log.dest`: expected",
        ),
        (
            "[log]\ntimestamp_format = \"%Q\"\n",
            "toml",
            ":2: `log.timestamp_format`: `%Q` is not a valid strftime format",
        ),
        (
            "[log]\nsyslog_facility = 8\n",
            "toml",
            ":2: `log.syslog_facility`: must be between 0 and 7",
        ),
    ];
    for (text, extension, expected) in cases {
        let file = TempFile::new(extension, text);
        let out = run_bounded(
            Command::new(env!("CARGO_BIN_EXE_tern"))
                .arg("check-config")
                .arg(&file.path),
            None,
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(
            stderr.contains(&format!("{}{expected}", file.path.display())),
            "{text}: {stderr}"
        );
    }
}
