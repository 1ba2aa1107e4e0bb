//! Bridge configuration through the real binary: `tern check-config` and `tern serve` on
//! `mosquitto.conf` `connection` blocks and TOML `[[bridges]]`, in both formats: valid files with
//! every directive, Mosquitto's corrections as warnings, and each kind of error named by its
//! file, line and key (bad direction or QoS, prefixes, missing address or topics, duplicate
//! names, bridge directives outside a bridge, TLS files that cannot be used...).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use tern_codec::{ProtocolVersion, ReasonCode};

/// `tern check-config FILE` with `text` in a file whose name ends in `extension`:
/// (success, stdout, stderr, the file).
fn check(extension: &str, text: &str) -> (bool, String, String, TempFile) {
    let file = TempFile::new(extension, text);
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_tern"))
            .arg("check-config")
            .arg(&file.path),
        None,
        Duration::from_secs(20),
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        file,
    )
}

/// `check-config` must accept `text`; returns its warnings, each without the file's path.
fn valid(extension: &str, text: &str) -> Vec<String> {
    let (ok, stdout, stderr, file) = check(extension, text);
    assert!(ok, "refused: {stderr}\n{text}");
    assert_eq!(
        stdout.trim(),
        format!("{}: configuration is valid", file.path.display())
    );
    stderr
        .lines()
        .map(|l| l.replace(&format!("{}:", file.path.display()), "FILE:"))
        .collect()
}

/// `check-config` must refuse `text` with exactly `expected` (`FILE` standing for its path).
fn refused(extension: &str, text: &str, expected: &str) {
    let (ok, _, stderr, file) = check(extension, text);
    assert!(!ok, "accepted: {text}");
    assert_eq!(
        stderr.trim(),
        format!("error: {expected}").replace("FILE", &file.path.display().to_string()),
        "{text}"
    );
}

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

#[test]
fn a_mosquitto_conf_with_two_bridges_and_every_directive_is_valid() {
    let dir = TempDir::new();
    let (ca, cert, key) = server_certificates(&dir.path);
    let text = format!(
        "\
listener 1883
allow_anonymous true

# An edge broker forwarding to the cloud over TLS, with failover.
connection cloud
addresses cloud-a.example.com:8883 cloud-b.example.com:8883
round_robin false
topic sensors/# out 1 site1/ edge/site1/
topic commands/# in 2 \"\" cloud/commands/site1/
topic \"\" both 0 local/state remote/state
remote_clientid edge-site1
local_clientid local.edge-site1
remote_username bridge
remote_password secret
bridge_protocol_version mqttv50
cleansession false
local_cleansession false
keepalive_interval 30
try_private true
notifications true
notifications_local_only false
notification_topic $SYS/broker/connection/cloud/state
start_type automatic
restart_timeout 5 60
bridge_cafile {ca}
bridge_certfile {cert}
bridge_keyfile {key}
bridge_insecure false
bridge_tls_version tlsv1.2
bridge_alpn mqtt

# A lazy bridge to a second broker, MQTT 3.1.1 with Mosquitto's private bridge bit.
connection backup
address 10.0.0.9
topic # out 0 \"\" edge/
start_type lazy
threshold 20
idle_timeout 300
restart_timeout 20
cleansession true
local_username ignored
",
        ca = p(&ca),
        cert = p(&cert),
        key = p(&key),
    );
    assert_eq!(
        valid("conf", &text),
        [
            "warning: FILE:41: `local_username`: ignored: the bridge's connection to this broker is \
          internal and needs no credentials (it is not subject to authentication nor to the ACL)"
        ]
    );
}

#[test]
fn a_toml_file_with_bridges_in_both_topic_forms_is_valid() {
    let dir = TempDir::new();
    let (ca, cert, key) = server_certificates(&dir.path);
    let text = format!(
        r##"
[[listeners]]
address = "127.0.0.1:1883"

[[bridges]]
name = "cloud"
address = ["cloud-a.example.com", "cloud-b.example.com:9883"]
topics = [
    "sensors/# out 1 site1/ edge/site1/",
    {{ pattern = "commands/#", direction = "in", qos = 2, remote_prefix = "cloud/" }},
]
remote_client_id = "edge-site1"
remote_username = "bridge"
remote_password = "secret"
protocol = "5"
keep_alive = "30s"
restart_timeout = ["5s", "1m"]
max_queued_messages = 10000
tls = {{ cafile = "{ca}", certfile = "{cert}", keyfile = "{key}", tls_version = "tlsv1.2" }}

[[bridges]]
name = "backup"
address = "10.0.0.9:1883"
topics = ["# out 0 \"\" edge/"]
start_type = "lazy"
threshold = 20
idle_timeout = "5m"
"##,
        ca = p(&ca),
        cert = p(&cert),
        key = p(&key),
    );
    assert_eq!(valid("toml", &text), Vec::<String>::new());
}

#[test]
fn mosquittos_silent_corrections_and_ignored_directives_are_warnings() {
    let text = "\
connection a
address broker.example.com
topic x
keepalive_interval 1
restart_timeout 0
threshold 3
listener 1884
topic y in
bridge_attempt_unsubscribe false
";
    assert_eq!(
        valid("conf", text),
        [
            "warning: FILE:4: `keepalive_interval`: less than 5 seconds: 5 is used, as in \
             Mosquitto",
            "warning: FILE:5: `restart_timeout`: less than 1 second: 1 is used, as in Mosquitto",
            "warning: FILE:8: `topic`: applies to the bridge `a` (`connection` at FILE:1), as in \
             Mosquitto: the `listener` line at FILE:7 does not end the bridge's settings",
            "warning: FILE:9: `bridge_attempt_unsubscribe`: ignored: Tern does not send \
             UNSUBSCRIBE for `out` topics when it connects",
            "warning: FILE:6: `threshold`: has no effect: only `lazy` bridges (`start_type lazy`) \
             use it",
        ]
    );
}

#[test]
fn bad_bridge_lines_in_a_mosquitto_conf_name_the_file_line_and_directive() {
    let head = "connection cloud\naddress broker.example.com:1883\n";
    let cases = [
        (
            format!("{head}topic sensors/# sideways 1\n"),
            "FILE:3: `topic`: expected in, out or both, got `sideways`",
        ),
        (
            format!("{head}topic sensors/# out 3\n"),
            "FILE:3: `topic`: expected a QoS of 0, 1 or 2, got `3`",
        ),
        (
            format!("{head}topic sensors/# out 1 site/+/ edge/\n"),
            "FILE:3: `topic`: the local prefix `site/+/` must not contain wildcards (`+`, `#`)",
        ),
        (
            format!("{head}topic # out 1 site edge/\n"),
            "FILE:3: `topic`: `site#` (the local prefix followed by the pattern) is not a valid \
             topic filter: `+` and `#` must fill a whole level, and `#` must be the last level",
        ),
        (
            format!("{head}topic \"\" out 1 local/topic\n"),
            "FILE:3: `topic`: an empty pattern (`\"\"`) needs both a local and a remote prefix, \
             which are then the whole local and remote topics",
        ),
        (
            "connection cloud\ntopic sensors/#\n".to_owned(),
            "FILE:1: `connection`: the bridge `cloud` has no `address` line: it needs the remote \
             broker's address",
        ),
        (
            head.to_owned(),
            "FILE:1: `connection`: the bridge `cloud` has no `topic` line: it would carry nothing \
             (Mosquitto refuses it too)",
        ),
        (
            format!("{head}topic x\nconnection cloud\naddress b\ntopic y\n"),
            "FILE:4: `connection`: the bridge `cloud` is already defined at FILE:1",
        ),
        (
            "listener 1883\nbridge_cafile /etc/ssl/ca.pem\n".to_owned(),
            "FILE:2: `bridge_cafile`: must follow a `connection NAME` line: it configures the \
             bridge above it (in the same file), and there is none",
        ),
        (
            "topic sensors/# out 1\n".to_owned(),
            "FILE:1: `topic`: must follow a `connection NAME` line: it configures the bridge above \
             it (in the same file), and there is none",
        ),
        (
            format!("{head}topic x\nbridge_protocol_version mqttv5.0\n"),
            "FILE:4: `bridge_protocol_version`: expected mqttv311, mqttv50 or mqttv31, got \
             `mqttv5.0`",
        ),
        (
            format!("{head}topic x\nremote_password secret\n"),
            "FILE:4: `remote_password`: needs a remote user name too: MQTT 3.1 and 3.1.1 do not \
             allow a password without a user name (MQTT 5 does)",
        ),
        (
            format!("{head}topic x\nbridge_insecure true\n"),
            "FILE:4: `bridge_insecure`: needs `bridge_cafile` or `bridge_capath` in the same \
             bridge: without CA certificates to verify the remote broker, the bridge would not \
             use TLS",
        ),
        (
            format!("{head}topic x\nbridge_identity edge\n"),
            "FILE:4: `bridge_identity`: TLS-PSK is not supported; Tern refuses to start rather \
             than connect to the remote broker without the encryption this file asks for",
        ),
        (
            format!("{head}topic x\ntry_private maybe\n"),
            "FILE:4: `try_private`: expected true or false, got `maybe`",
        ),
    ];
    for (text, expected) in cases {
        refused("conf", &text, expected);
    }
}

#[test]
fn bad_bridge_keys_in_toml_name_the_file_line_and_key() {
    let head = "[[bridges]]\nname = \"cloud\"\naddress = \"broker.example.com\"\n";
    let cases = [
        (
            format!("{head}topics = [\"sensors/# sideways\"]\n"),
            "FILE:4: `bridges[0].topics[0]`: expected in, out or both, got `sideways`",
        ),
        (
            format!("{head}topics = [{{ pattern = \"x\", qos = 3 }}]\n"),
            "FILE:4: `bridges[0].topics[0]`: `qos`: expected a QoS of 0, 1 or 2, got `3`",
        ),
        (
            format!(
                "{head}topics = [\n  \"x\",\n  {{ pattern = \"#\", remote_prefix = \"edge/#/\" }},\n]\n"
            ),
            "FILE:6: `bridges[0].topics[1]`: the remote prefix `edge/#/` must not contain \
             wildcards (`+`, `#`)",
        ),
        (
            format!("{head}topics = [{{ pattern = \"x\", qoss = 1 }}]\n"),
            "FILE:4: `bridges[0].topics[0].qoss`: unknown key, expected one of \
             `pattern`, `direction`, `qos`, `local_prefix`, `remote_prefix`",
        ),
        (
            "[[bridges]]\nname = \"cloud\"\ntopics = [\"x\"]\n".to_owned(),
            "FILE:1: `bridges[0].address`: this required key is missing: the remote broker's \
             address (\"HOST:PORT\", or an array of them tried in order)",
        ),
        (
            format!(
                "{head}topics = [\"x\"]\n\n[[bridges]]\nname = \"cloud\"\naddress = \"b\"\ntopics = [\"y\"]\n"
            ),
            "FILE:7: `bridges[1].name`: the bridge `cloud` is already defined as `bridges[0]`",
        ),
        (
            format!("{head}topics = [\"x\"]\ncleansession = true\n"),
            "FILE:5: `bridges[0].cleansession`: unknown key, expected one of \
             `name`, `address`, `addresses`, `round_robin`, `topics`, `remote_client_id`, \
             `local_client_id`, `remote_username`, `remote_password`, `protocol`, \
             `clean_session`, `local_clean_session`, `keep_alive`, `try_private`, \
             `notifications`, `notifications_local_only`, `notification_topic`, `start_type`, \
             `restart_timeout`, `threshold`, `idle_timeout`, `max_queued_messages`, `tls`",
        ),
        (
            format!("{head}topics = [\"x\"]\ntls = {{ insecure = true }}\n"),
            "FILE:5: `bridges[0].tls.cafile`: this required key is missing: CA certificates \
             (`cafile` or `capath`) to verify the remote broker with",
        ),
        (
            "[[bridges]]\nname = \"a/b\"\naddress = \"h\"\ntopics = [\"x\"]\n".to_owned(),
            "FILE:2: `bridges[0].name`: `a/b` cannot be a bridge name: it is a topic level of \
             `$SYS/broker/connection/NAME/state`, so it must not contain `/`, `+`, `#` or blanks",
        ),
        (
            "[[bridges]]\nname = \"a\"\naddress = \"h:0\"\ntopics = [\"x\"]\n".to_owned(),
            "FILE:3: `bridges[0].address`: expected a port between 1 and 65535 in `h:0`",
        ),
    ];
    for (text, expected) in cases {
        refused("toml", &text, expected);
    }
}

#[test]
fn bridge_tls_files_that_cannot_be_used_are_refused_at_their_line() {
    let dir = TempDir::new();
    let (ca, cert, key) = server_certificates(&dir.path);
    let other = dir.path.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, _, other_key) = server_certificates(&other);
    let missing = dir.path.join("missing.pem");
    let garbage = dir.path.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let head = "connection cloud\naddress broker.example.com:8883\ntopic x\n";

    // Unreadable.
    let (ok, _, stderr, file) = check("conf", &format!("{head}bridge_cafile {}\n", p(&missing)));
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:4: `bridge_cafile`: cannot read `{}`: No such file or directory",
            file.path.display(),
            missing.display()
        )),
        "{stderr}"
    );
    // Not a certificate.
    let (ok, _, stderr, file) = check("conf", &format!("{head}bridge_cafile {}\n", p(&garbage)));
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:4: `bridge_cafile`: {}: ",
            file.path.display(),
            garbage.display()
        )),
        "{stderr}"
    );
    // A certificate without its key, then with another certificate's key.
    refused(
        "conf",
        &format!(
            "{head}bridge_cafile {}\nbridge_certfile {}\n",
            p(&ca),
            p(&cert)
        ),
        "FILE:5: `bridge_certfile`: needs a key file too: a client certificate is sent with its \
         private key",
    );
    let (ok, _, stderr, file) = check(
        "conf",
        &format!(
            "{head}bridge_cafile {}\nbridge_certfile {}\nbridge_keyfile {}\n",
            p(&ca),
            p(&cert),
            p(&other_key)
        ),
    );
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:6: `bridge_keyfile`: {}: unusable with `{}`",
            file.path.display(),
            other_key.display(),
            cert.display()
        )),
        "{stderr}"
    );
    // The same in TOML, at the key's line.
    let (ok, _, stderr, file) = check(
        "toml",
        &format!(
            "[[bridges]]\nname = \"a\"\naddress = \"h\"\ntopics = [\"x\"]\n\n[bridges.tls]\n\
             cafile = \"{}\"\ncertfile = \"{}\"\nkeyfile = \"{}\"\n",
            p(&ca),
            p(&cert),
            p(&missing)
        ),
    );
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:9: `bridges[0].tls.keyfile`: cannot read `{}`: No such file or directory",
            file.path.display(),
            missing.display()
        )),
        "{stderr}"
    );
    // And a good set is accepted.
    assert_eq!(
        valid(
            "conf",
            &format!(
                "{head}bridge_cafile {}\nbridge_certfile {}\nbridge_keyfile {}\n",
                p(&ca),
                p(&cert),
                p(&key)
            )
        ),
        Vec::<String>::new()
    );
}

#[test]
fn tern_serve_refuses_to_start_on_a_bad_bridge() {
    let (stderr, file) = serve_config_fails(
        "listener 1883\nconnection cloud\naddress broker.example.com\ntopic x out 7\n",
        "conf",
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "{}:4: `topic`: expected a QoS of 0, 1 or 2, got `7`",
            file.path.display()
        )),
        "{stderr}"
    );
    let (stderr, file) = serve_config_fails(
        "[[bridges]]\nname = \"cloud\"\naddress = \"broker.example.com\"\n",
        "toml",
        &[],
    );
    assert!(
        stderr.contains(&format!(
            "{}:1: `bridges[0].topics`: this required key is missing",
            file.path.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_broker_with_a_bridge_to_an_unreachable_remote_serves_its_clients() {
    // Nothing listens on the remote port: the bridge keeps retrying, the broker works.
    let port = free_port();
    let tern = Tern::start_config(
        &format!(
            "allow_anonymous true\nconnection cloud\naddress 127.0.0.1:{port}\n\
             topic sensors/# out 1\nrestart_timeout 1 2\n"
        ),
        "conf",
    );
    let (_client, ack) = RawClient::connect_with(
        tern.addr,
        connect_packet(ProtocolVersion::V5, "edge-client", true),
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
}
