//! The configuration parser, through the library's `tern::config::load`: Tern's TOML format and
//! Mosquitto's format, on fixture files and on temporary files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tern::config::{
    Config, ConfigError, DEFAULT_DATA_DIR, Durability, Format, ListenerConfig, LogConfig,
    PersistenceConfig, detect_format, load,
};
use tern::logging::LogDest;
use tern_codec::{MAX_PACKET_SIZE, QoS};

// ---------------------------------------------------------------------------------------------
// Helpers

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tern-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    /// Writes `text` to `name` (which may contain `/`) inside the directory.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    /// `text` with this directory's path removed, so that messages read `tern.toml:3: ...`.
    fn relative(&self, text: &str) -> String {
        text.replace(
            &format!("{}{}", self.0.display(), std::path::MAIN_SEPARATOR),
            "",
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `text` written to a temporary file called `name`. Errors and warnings name the file
/// relative to the temporary directory; `source` is cleared so that results compare with
/// [`expected`].
fn load_as(name: &str, text: &str) -> Result<Config, String> {
    let dir = TempDir::new();
    let path = dir.write(name, text);
    match load(&path) {
        Ok(mut config) => {
            assert_eq!(config.source.as_deref(), Some(path.as_path()));
            config.source = None;
            config.warnings = config.warnings.iter().map(|w| dir.relative(w)).collect();
            Ok(config)
        }
        Err(e) => Err(dir.relative(&e.to_string())),
    }
}

fn toml(text: &str) -> Config {
    load_as("tern.toml", text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn toml_err(text: &str) -> String {
    load_as("tern.toml", text).expect_err("the file should be rejected")
}

fn mosq(text: &str) -> Config {
    load_as("mosquitto.conf", text).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

fn mosq_err(text: &str) -> String {
    load_as("mosquitto.conf", text).expect_err("the file should be rejected")
}

/// The default configuration changed by `change`.
fn expected(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    change(&mut config);
    config
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("valid socket address")
}

fn listener(bind: &str, max_connections: Option<usize>) -> ListenerConfig {
    ListenerConfig {
        bind: addr(bind).into(),
        max_connections,
        tls: None,
        websocket: None,
        settings: Default::default(),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// `text` with the fixture directory's path removed.
fn fixture_relative(text: &str) -> String {
    text.replace(&format!("{}{}", fixture("").display(), ""), "")
}

// ---------------------------------------------------------------------------------------------
// Format detection

#[test]
fn detection_by_extension_wins_over_content() {
    assert_eq!(
        detect_format(Path::new("a.toml"), "listener 1883\n"),
        Format::Toml
    );
    assert_eq!(
        detect_format(Path::new("A.TOML"), "listener 1883\n"),
        Format::Toml
    );
    assert_eq!(
        detect_format(Path::new("a.conf"), "[mqtt]\nmax_qos = 1\n"),
        Format::Mosquitto
    );
    assert_eq!(
        detect_format(Path::new("/etc/x/B.Conf"), "a = 1\n"),
        Format::Mosquitto
    );
}

#[test]
fn detection_by_content_uses_the_first_significant_line() {
    let cases = [
        ("[mqtt]\nmax_qos = 1\n", Format::Toml),
        ("[[listeners]]\naddress = \"0.0.0.0:1883\"\n", Format::Toml),
        ("allow_anonymous = true\n", Format::Toml),
        ("allow_anonymous=true\n", Format::Toml),
        ("mqtt.max_qos = 1\n", Format::Toml),
        ("\"allow_anonymous\" = true\n", Format::Toml),
        (
            "# comment\n\n   # indented comment\n\tsys_interval = 5\n",
            Format::Toml,
        ),
        ("listener 1883\n", Format::Mosquitto),
        ("allow_anonymous true\n", Format::Mosquitto),
        ("  # comment\nmax_qos 1\nkey = value\n", Format::Mosquitto),
        // A `=` inside a Mosquitto value does not make the line TOML.
        ("plugin_opt_path a=b\n", Format::Mosquitto),
        ("auth_opt_backends files\n", Format::Mosquitto),
        ("", Format::Toml),
        ("# only comments\n", Format::Toml),
    ];
    for (text, format) in cases {
        assert_eq!(
            detect_format(Path::new("tern.cfg"), text),
            format,
            "text {text:?}"
        );
        assert_eq!(
            detect_format(Path::new("no-extension"), text),
            format,
            "text {text:?}"
        );
    }
}

#[test]
fn load_detects_the_format_of_files_without_a_known_extension() {
    let from_toml = load_as("broker.cfg", "[mqtt]\nmax_qos = 1\n").expect("valid TOML");
    assert_eq!(from_toml, expected(|c| c.broker.max_qos = QoS::AtLeastOnce));
    let from_mosquitto = load_as("broker.cfg", "max_qos 0\n").expect("valid mosquitto.conf");
    assert_eq!(
        from_mosquitto,
        expected(|c| c.broker.max_qos = QoS::AtMostOnce)
    );
}

#[test]
fn a_conf_file_is_read_as_mosquitto_even_if_it_looks_like_toml() {
    assert_eq!(
        load_as("tern.conf", "allow_anonymous = true\n"),
        Err(
            "tern.conf:1: `allow_anonymous`: Mosquitto directives are written `name value`, \
             without `=` (a TOML file must be named *.toml)"
                .to_owned()
        )
    );
}

#[test]
fn unreadable_file() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.toml");
    let err = load(&missing).expect_err("missing file");
    assert_eq!(err.file, missing);
    assert_eq!(err.line, None);
    assert_eq!(err.key, None);
    assert!(
        err.message.starts_with("cannot read the file: "),
        "{}",
        err.message
    );

    let not_utf8 = dir.0.join("latin1.conf");
    std::fs::write(&not_utf8, b"auto_id_prefix caf\xe9\n").expect("write");
    let err = load(&not_utf8).expect_err("not UTF-8");
    assert_eq!(err.line, None);
    assert!(
        err.message.starts_with("cannot read the file: "),
        "{}",
        err.message
    );
}

// ---------------------------------------------------------------------------------------------
// TOML: valid files

#[test]
fn toml_full_fixture() {
    let path = fixture("full.toml");
    let config = load(&path).expect("full.toml is valid");
    let want = expected(|c| {
        c.allow_anonymous = Some(true);
        c.sys_interval = Duration::from_secs(30);
        c.log = LogConfig {
            level: Some("info,tern=debug".to_owned()),
            connection_messages: Some(false),
            timestamps: Some(false),
            ..LogConfig::default()
        };
        c.listeners = vec![
            listener("0.0.0.0:1883", Some(10_000)),
            listener("[::1]:1884", None),
            listener("127.0.0.1:1885", Some(5)),
        ];
        let b = &mut c.broker;
        b.max_packet_size = 256 * 1024;
        b.max_inflight_messages = 10;
        b.receive_maximum = 100;
        b.max_queued_messages = 500;
        b.max_queued_bytes = 1_048_576;
        b.max_total_queued_bytes = 268_435_456;
        b.queue_qos0_messages = true;
        b.max_keepalive = 600;
        b.retain_available = false;
        b.max_qos = QoS::AtLeastOnce;
        b.max_topic_alias = 0;
        b.max_topic_levels = 64;
        b.persistent_client_expiration = Some(Duration::from_secs(14 * 86_400));
        b.allow_zero_length_clientid = false;
        b.auto_id_prefix = "tern-".to_owned();
        b.connect_timeout = Duration::from_secs(5);
        c.persistence = PersistenceConfig {
            enabled: false,
            // Relative to the directory of full.toml.
            data_dir: fixture("state"),
            durability: Durability::Flush,
            commit_window: Duration::from_millis(5),
            max_batch: 500,
        };
        c.source = Some(path.clone());
    });
    assert_eq!(config, want);
    // Every field differs from its default, so the fixture really exercises every key.
    let default = tern_core::BrokerConfig::default();
    assert_ne!(config.broker.max_packet_size, default.max_packet_size);
    assert_ne!(config.broker.connect_timeout, default.connect_timeout);
    let default = PersistenceConfig::default();
    let p = &config.persistence;
    assert_ne!(p.enabled, default.enabled);
    assert_ne!(p.data_dir, default.data_dir);
    assert_ne!(p.durability, default.durability);
    assert_ne!(p.commit_window, default.commit_window);
    assert_ne!(p.max_batch, default.max_batch);
}

#[test]
fn toml_empty_file_gives_the_defaults() {
    assert_eq!(toml(""), Config::default());
    assert_eq!(toml("# nothing but a comment\n"), Config::default());
    assert_eq!(
        toml("listeners = []\n[mqtt]\n[log]\n[persistence]\n"),
        Config::default()
    );
}

#[test]
fn toml_allow_anonymous_is_kept_only_when_set() {
    assert_eq!(
        toml("allow_anonymous = false\n").allow_anonymous,
        Some(false)
    );
    assert_eq!(toml("allow_anonymous = true\n").allow_anonymous, Some(true));
    assert_eq!(toml("sys_interval = 10\n").allow_anonymous, None);
}

#[test]
fn toml_durations_and_sizes_accept_integers_and_strings() {
    let c =
        toml("sys_interval = 0\n[mqtt]\nconnect_timeout = \"1m30s\"\nmax_packet_size = 65536\n");
    assert_eq!(c.sys_interval, Duration::ZERO);
    assert_eq!(c.broker.connect_timeout, Duration::from_secs(90));
    assert_eq!(c.broker.max_packet_size, 65_536);

    let c = toml(
        "sys_interval = \"2m\"\n[mqtt]\nmax_packet_size = \"1 MB\"\nmax_queued_bytes = \"0\"\n",
    );
    assert_eq!(c.sys_interval, Duration::from_secs(120));
    assert_eq!(c.broker.max_packet_size, 1_000_000);
    assert_eq!(c.broker.max_queued_bytes, 0);

    let c = toml("[mqtt]\nmax_packet_size = 268435460\npersistent_client_expiration = 3600\n");
    assert_eq!(c.broker.max_packet_size, MAX_PACKET_SIZE);
    assert_eq!(
        c.broker.persistent_client_expiration,
        Some(Duration::from_secs(3600))
    );
}

#[test]
fn toml_range_limits_are_inclusive() {
    let c = toml(
        "[mqtt]\nmax_packet_size = 16\nmax_inflight_messages = 65535\nreceive_maximum = 1\n\
         max_keepalive = 1\nmax_qos = 0\nmax_topic_alias = 65535\nmax_queued_messages = 0\n",
    );
    let b = &c.broker;
    assert_eq!(b.max_packet_size, 16);
    assert_eq!(b.max_inflight_messages, 65535);
    assert_eq!(b.receive_maximum, 1);
    assert_eq!(b.max_keepalive, 1);
    assert_eq!(b.max_qos, QoS::AtMostOnce);
    assert_eq!(b.max_topic_alias, 65535);
    assert_eq!(b.max_queued_messages, 0);
}

#[test]
fn toml_listener_addresses() {
    let c = toml(
        "[[listeners]]\naddress = \"[::]:1883\"\n[[listeners]]\naddress = \"LocalHost:0\"\n\
         [[listeners]]\naddress = \"127.0.0.1:0\"\n[[listeners]]\naddress = \"10.1.2.3:8883\"\n",
    );
    // Port 0 (any free port) may appear twice.
    assert_eq!(
        c.listeners,
        vec![
            listener("[::]:1883", None),
            listener("127.0.0.1:0", None),
            listener("127.0.0.1:0", None),
            listener("10.1.2.3:8883", None),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// TOML: errors

/// Every key of `[mqtt]`, in the order the error message lists them.
const MQTT_KEYS: &str = "`max_packet_size`, `max_inflight_messages`, `receive_maximum`, \
     `max_queued_messages`, `max_queued_bytes`, `max_total_queued_bytes`, `queue_qos0_messages`, \
     `max_keepalive`, `retain_available`, `max_qos`, `max_topic_alias`, `max_topic_levels`, \
     `max_topic_length`, `max_client_id_length`, `clientid_prefixes`, `max_subscriptions`, \
     `persistent_client_expiration`, `allow_zero_length_clientid`, `auto_id_prefix`, \
     `connect_timeout`";

/// Every top-level key, in the order the error message lists them.
const TOP_LEVEL_KEYS: &str = "`allow_anonymous`, `sys_interval`, `acl_file`, `password_file`, `log`, `listeners`, `mqtt`, `persistence`, `limits`, `auth`, `admin`, `bridges`, `pid_file`, `user`";

/// Every key of `[persistence]`, in the order the error message lists them.
const PERSISTENCE_KEYS: &str = "`enabled`, `data_dir`, `durability`, `commit_window`, `max_batch`";

#[test]
fn toml_unknown_keys_in_every_section() {
    assert_eq!(
        toml_err("allow_anonymous = true\nallow_anonymus = false\n"),
        format!("tern.toml:2: `allow_anonymus`: unknown key, expected one of {TOP_LEVEL_KEYS}")
    );
    assert_eq!(
        toml_err("[log]\nlevel = \"info\"\nfile = \"/var/log/tern.log\"\n"),
        "tern.toml:3: `log.file`: unknown key, expected one of `level`, `connection_messages`, \
         `timestamps`, `timestamp_format`, `format`, `dest`, `redact`, `syslog_facility`"
    );
    assert_eq!(
        toml_err(
            "[[listeners]]\naddress = \"0.0.0.0:1883\"\n\n[[listeners]]\naddress = \"0.0.0.0:1884\"\n\
             ssl = true\n"
        ),
        "tern.toml:6: `listeners[1].ssl`: unknown key, expected one of `address`, \
         `max_connections`, `tls`, `protocol`, `path`, `upgrade_timeout`, `protocol_versions`, \
         `mount_point`, `allow_anonymous`, `password_file`, `acl_file`, \
         `allow_zero_length_clientid`, `auto_id_prefix`, `unix_mode`, `proxy_protocol`, \
         `proxy_protocol_require_tls`"
    );
    assert_eq!(
        toml_err("[mqtt]\nmax_qos = 1\nmax_inflight = 20\n"),
        format!("tern.toml:3: `mqtt.max_inflight`: unknown key, expected one of {MQTT_KEYS}")
    );
    // An unknown table is an unknown key too, and dotted keys are located the same way.
    assert_eq!(
        toml_err("[tls]\ncertfile = \"x\"\n"),
        format!("tern.toml:1: `tls`: unknown key, expected one of {TOP_LEVEL_KEYS}")
    );
    assert_eq!(
        toml_err("mqtt.max_qos = 1\nmqtt.maxqos = 2\n"),
        format!("tern.toml:2: `mqtt.maxqos`: unknown key, expected one of {MQTT_KEYS}")
    );
    assert_eq!(
        toml_err("[persistence]\nenabled = true\nlocation = \"/var/lib/tern\"\n"),
        format!(
            "tern.toml:3: `persistence.location`: unknown key, expected one of {PERSISTENCE_KEYS}"
        )
    );
    assert_eq!(
        toml_err("persistence.autosave_interval = 1800\n"),
        format!(
            "tern.toml:1: `persistence.autosave_interval`: unknown key, expected one of \
             {PERSISTENCE_KEYS}"
        )
    );
}

#[test]
fn toml_unknown_key_fixture_keeps_its_structured_fields() {
    let path = fixture("bad-unknown-key.toml");
    let err = load(&path).expect_err("unknown key");
    assert_eq!(err.file, path);
    assert_eq!(err.line, Some(6));
    assert_eq!(err.key.as_deref(), Some("mqtt.max_inflight"));
    assert!(
        err.message
            .starts_with("unknown key, expected one of `max_packet_size`, ")
    );
}

#[test]
fn toml_wrong_types() {
    let cases = [
        (
            "allow_anonymous = \"yes\"\n",
            "tern.toml:1: `allow_anonymous`: expected a boolean, got string \"yes\"",
        ),
        (
            "sys_interval = true\n",
            "tern.toml:1: `sys_interval`: expected a duration: whole seconds, or a string such as \"30s\" or \"14d\", got boolean `true`",
        ),
        (
            "log = \"debug\"\n",
            "tern.toml:1: `log`: expected a table, got string \"debug\"",
        ),
        (
            "[log]\nlevel = 3\n",
            "tern.toml:2: `log.level`: expected a string, got integer `3`",
        ),
        (
            "[log]\ntimestamps = \"no\"\n",
            "tern.toml:2: `log.timestamps`: expected a boolean, got string \"no\"",
        ),
        (
            "[[listeners]]\naddress = 1883\n",
            "tern.toml:2: `listeners[0].address`: expected a string, got integer `1883`",
        ),
        (
            "[[listeners]]\naddress = \"0.0.0.0:1\"\nmax_connections = \"many\"\n",
            "tern.toml:3: `listeners[0].max_connections`: expected an integer, got string \"many\"",
        ),
        (
            "listeners = { address = \"0.0.0.0:1883\" }\n",
            "tern.toml:1: `listeners`: expected an array, got a table",
        ),
        (
            "[listeners]\naddress = \"0.0.0.0:1883\"\n",
            "tern.toml:1: `listeners`: expected an array, got a table",
        ),
        (
            "[[mqtt]]\nmax_qos = 1\n",
            "tern.toml:1: `mqtt`: expected a table, got an array",
        ),
        (
            "mqtt = [1048576]\n",
            "tern.toml:1: `mqtt`: expected a table, got an array",
        ),
        (
            "[[listeners]]\naddress = \"0.0.0.0:1883\"\n[log]\nlevel = \"info\"\n[[log.x]]\n",
            "tern.toml:5: `log.x`: unknown key, expected one of `level`, `connection_messages`, \
             `timestamps`, `timestamp_format`, `format`, `dest`, `redact`, `syslog_facility`",
        ),
        (
            "listeners = [[\"0.0.0.0:1883\"]]\n",
            "tern.toml:1: `listeners[0]`: expected a table, got an array",
        ),
        (
            "mqtt = 3\n",
            "tern.toml:1: `mqtt`: expected a table, got integer `3`",
        ),
        (
            "[mqtt]\nmax_qos = \"1\"\n",
            "tern.toml:2: `mqtt.max_qos`: expected an integer, got string \"1\"",
        ),
        (
            "[mqtt]\nmax_packet_size = 1.5\n",
            "tern.toml:2: `mqtt.max_packet_size`: expected a size: bytes, or a string such as \"256KiB\" or \"1MiB\", got floating point `1.5`",
        ),
        (
            "[mqtt]\nretain_available = 1\n",
            "tern.toml:2: `mqtt.retain_available`: expected a boolean, got integer `1`",
        ),
        (
            "[mqtt]\nauto_id_prefix = false\n",
            "tern.toml:2: `mqtt.auto_id_prefix`: expected a string, got boolean `false`",
        ),
        (
            "[mqtt]\nconnect_timeout = [10]\n",
            "tern.toml:2: `mqtt.connect_timeout`: expected a duration: whole seconds, or a string such as \"30s\" or \"14d\", got an array",
        ),
    ];
    for (text, error) in cases {
        assert_eq!(toml_err(text), error, "file {text:?}");
    }
}

#[test]
fn toml_missing_listener_address() {
    assert_eq!(
        toml_err(
            "[[listeners]]\naddress = \"0.0.0.0:1883\"\n\n[[listeners]]\nmax_connections = 3\n"
        ),
        "tern.toml:4: `listeners[1].address`: this required key is missing"
    );
}

#[test]
fn toml_out_of_range_values() {
    let cases = [
        (
            "max_packet_size = 15",
            "`mqtt.max_packet_size`: must be between 16 and 268435460 bytes, not 15",
        ),
        (
            "max_packet_size = 268435461",
            "`mqtt.max_packet_size`: must be between 16 and 268435460 bytes, not 268435461",
        ),
        (
            "max_packet_size = \"1GiB\"",
            "`mqtt.max_packet_size`: must be between 16 and 268435460 bytes, not 1073741824",
        ),
        (
            "max_packet_size = -1",
            "`mqtt.max_packet_size`: must not be negative, not -1",
        ),
        (
            "max_packet_size = \"lots\"",
            "`mqtt.max_packet_size`: expected a size such as `65536`, `256KiB`, `1MiB` or `10MB`, got `lots`",
        ),
        (
            "max_inflight_messages = 0",
            "`mqtt.max_inflight_messages`: must be between 1 and 65535, not 0",
        ),
        (
            "max_inflight_messages = 65536",
            "`mqtt.max_inflight_messages`: must be between 1 and 65535, not 65536",
        ),
        (
            "receive_maximum = 0",
            "`mqtt.receive_maximum`: must be between 1 and 65535, not 0",
        ),
        (
            "receive_maximum = 70000",
            "`mqtt.receive_maximum`: must be between 1 and 65535, not 70000",
        ),
        (
            "max_queued_messages = -1",
            "`mqtt.max_queued_messages`: must be 0 (no limit) or more, not -1",
        ),
        (
            "max_queued_bytes = -5",
            "`mqtt.max_queued_bytes`: must not be negative, not -5",
        ),
        (
            "max_keepalive = 0",
            "`mqtt.max_keepalive`: must be between 1 and 65535, not 0",
        ),
        (
            "max_keepalive = 65536",
            "`mqtt.max_keepalive`: must be between 1 and 65535, not 65536",
        ),
        ("max_qos = 3", "`mqtt.max_qos`: must be 0, 1 or 2, not 3"),
        ("max_qos = -1", "`mqtt.max_qos`: must be 0, 1 or 2, not -1"),
        (
            "max_topic_alias = 65536",
            "`mqtt.max_topic_alias`: must be between 0 and 65535, not 65536",
        ),
        (
            "max_topic_alias = -1",
            "`mqtt.max_topic_alias`: must be between 0 and 65535, not -1",
        ),
        (
            "max_topic_levels = 0",
            "`mqtt.max_topic_levels`: must be between 1 and 4096, not 0",
        ),
        (
            "connect_timeout = 0",
            "`mqtt.connect_timeout`: must be longer than zero",
        ),
        (
            "connect_timeout = \"0s\"",
            "`mqtt.connect_timeout`: must be longer than zero",
        ),
        (
            "connect_timeout = -3",
            "`mqtt.connect_timeout`: must not be negative, not -3",
        ),
        (
            "connect_timeout = \"10 seconds\"",
            "`mqtt.connect_timeout`: expected a duration such as `30s`, `5m`, `2h`, `14d`, `1w` or `1h30m`, got `10 seconds`",
        ),
        (
            "persistent_client_expiration = 0",
            "`mqtt.persistent_client_expiration`: must be longer than zero (leave it out to keep sessions as long as their clients ask)",
        ),
        (
            "persistent_client_expiration = \"1y\"",
            "`mqtt.persistent_client_expiration`: expected a duration such as `30s`, `5m`, `2h`, `14d`, `1w` or `1h30m`, got `1y`",
        ),
    ];
    for (line, error) in cases {
        // The faulty key is on line 3, after a comment line and the table header.
        assert_eq!(
            toml_err(&format!("# limits\n[mqtt]\n{line}\n")),
            format!("tern.toml:3: {error}")
        );
    }
}

#[test]
fn toml_out_of_range_top_level_and_log_values() {
    assert_eq!(
        toml_err("sys_interval = -1\n"),
        "tern.toml:1: `sys_interval`: must not be negative, not -1"
    );
    assert_eq!(
        toml_err("\nsys_interval = \"10 parsecs\"\n"),
        "tern.toml:2: `sys_interval`: expected a duration such as `30s`, `5m`, `2h`, `14d`, `1w` \
         or `1h30m`, got `10 parsecs`"
    );
    assert_eq!(
        toml_err("[log]\nlevel = \"verbose\"\n"),
        "tern.toml:2: `log.level`: expected error, warn, info, debug, trace, off or directives \
         such as `tern=debug`, got `verbose`"
    );
    assert_eq!(
        toml_err("[log]\nlevel = \"\"\n"),
        "tern.toml:2: `log.level`: expected error, warn, info, debug, trace, off or directives \
         such as `tern=debug`, got an empty string"
    );
}

#[test]
fn toml_bad_listeners() {
    assert_eq!(
        toml_err("[[listeners]]\naddress = \"0.0.0.0:1883\"\nmax_connections = 0\n"),
        "tern.toml:3: `listeners[0].max_connections`: must be at least 1 (leave it out for no \
         limit), not 0"
    );
    for bad in ["1883", "0.0.0.0", "::1:1883", "0.0.0.0:65536", ":1883"] {
        assert_eq!(
            toml_err(&format!("[[listeners]]\naddress = \"{bad}\"\n")),
            format!(
                "tern.toml:2: `listeners[0].address`: expected HOST:PORT such as \
                 `0.0.0.0:1883`, `[::]:1883` or `localhost:1883`, got `{bad}`"
            )
        );
    }
    assert_eq!(
        toml_err(
            "[[listeners]]\naddress = \"0.0.0.0:1883\"\n[[listeners]]\naddress = \"[::]:1883\"\n\
             [[listeners]]\naddress = \"0.0.0.0:1883\"\n"
        ),
        "tern.toml:6: `listeners[2].address`: 0.0.0.0:1883 is already the address of \
         `listeners[0]`"
    );
}

#[test]
fn toml_duplicate_keys() {
    assert_eq!(
        toml_err("allow_anonymous = true\nallow_anonymous = false\n"),
        "tern.toml:2: `allow_anonymous`: duplicate key"
    );
    assert_eq!(
        toml_err("[mqtt]\nmax_qos = 2\n\n# again\nmax_qos = 1\n"),
        "tern.toml:5: `mqtt.max_qos`: duplicate key"
    );
    assert_eq!(
        toml_err("[mqtt]\nmax_qos = 2\n[log]\nlevel = \"info\"\n[mqtt]\nmax_keepalive = 60\n"),
        "tern.toml:5: `mqtt`: duplicate key"
    );
    assert_eq!(
        toml_err(
            "[[listeners]]\naddress = \"0.0.0.0:1883\"\n[[listeners]]\naddress = \"[::]:1883\"\n\
             address = \"[::]:1884\"\n"
        ),
        "tern.toml:5: `listeners[1].address`: duplicate key"
    );
}

#[test]
fn toml_syntax_errors_name_the_line() {
    assert_eq!(
        toml_err("[mqtt]\nmax_qos = \n"),
        "tern.toml:2: string values must be quoted, expected literal string"
    );
    assert_eq!(
        toml_err("allow_anonymous = true\n[mqtt\n"),
        "tern.toml:2: unclosed table, expected `]`"
    );
}

// ---------------------------------------------------------------------------------------------
// TOML: [persistence]

#[test]
fn toml_persistence_defaults() {
    let want = PersistenceConfig {
        enabled: true,
        data_dir: PathBuf::from("tern-data"),
        durability: Durability::Fsync,
        commit_window: Duration::ZERO,
        max_batch: 10_000,
    };
    assert_eq!(DEFAULT_DATA_DIR, "tern-data");
    assert_eq!(PersistenceConfig::default(), want);
    assert_eq!(toml("").persistence, want);
    assert_eq!(toml("[persistence]\n").persistence, want);
    // The default data directory is relative to the working directory, not to the file.
    assert_eq!(
        toml("[mqtt]\nmax_qos = 1\n").persistence.data_dir,
        Path::new("tern-data")
    );
}

#[test]
fn toml_persistence_every_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "tern.toml",
        "[persistence]\nenabled = true\ndata_dir = \"data\"\ndurability = \"flush\"\n\
         commit_window = \"500us\"\nmax_batch = 1\n",
    );
    let config = load(&path).expect("valid");
    assert_eq!(
        config.persistence,
        PersistenceConfig {
            enabled: true,
            data_dir: dir.0.join("data"),
            durability: Durability::Flush,
            commit_window: Duration::from_micros(500),
            max_batch: 1,
        }
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn toml_persistence_data_dir_is_relative_to_the_file() {
    let dir = TempDir::new();
    let path = dir.write("etc/tern.toml", "persistence.data_dir = \"../var/tern\"\n");
    assert_eq!(
        load(&path).expect("valid").persistence.data_dir,
        dir.0.join("etc").join("../var/tern")
    );
    let path = dir.write("abs.toml", "[persistence]\ndata_dir = \"/var/lib/tern\"\n");
    assert_eq!(
        load(&path).expect("valid").persistence.data_dir,
        Path::new("/var/lib/tern")
    );
    assert_eq!(
        toml_err("[persistence]\ndata_dir = \"\"\n"),
        "tern.toml:2: `persistence.data_dir`: must not be empty (leave it out for the default, \
         `tern-data` in the working directory)"
    );
}

#[test]
fn toml_persistence_durability_modes() {
    let p = |text: &str| toml(&format!("[persistence]\n{text}\n")).persistence;
    let default = PersistenceConfig::default();
    assert_eq!(p("durability = \"fsync\""), default);
    assert_eq!(
        p("durability = \"flush\""),
        PersistenceConfig {
            durability: Durability::Flush,
            ..default.clone()
        }
    );
    // "memory" is another way to write `enabled = false`.
    let off = PersistenceConfig {
        enabled: false,
        ..default.clone()
    };
    assert_eq!(p("durability = \"memory\""), off);
    assert_eq!(p("enabled = false"), off);
    assert_eq!(p("enabled = false\ndurability = \"memory\""), off);
    // With persistence off, the other keys are checked and kept, but have no effect.
    assert_eq!(
        p("enabled = false\ndurability = \"flush\"\nmax_batch = 10"),
        PersistenceConfig {
            enabled: false,
            durability: Durability::Flush,
            max_batch: 10,
            ..default
        }
    );
}

#[test]
fn toml_persistence_memory_contradicts_enabled_true() {
    let message = "`persistence.durability`: \"memory\" turns persistence off, which contradicts \
                   `enabled = true`; keep only one of the two";
    assert_eq!(
        toml_err("[persistence]\nenabled = true\ndurability = \"memory\"\n"),
        format!("tern.toml:3: {message}")
    );
    assert_eq!(
        toml_err("[persistence]\ndurability = \"memory\"\nenabled = true\n"),
        format!("tern.toml:2: {message}")
    );
}

#[test]
fn toml_persistence_commit_window() {
    let window = |v: &str| {
        toml(&format!("[persistence]\ncommit_window = \"{v}\"\n"))
            .persistence
            .commit_window
    };
    assert_eq!(window("1ms"), Duration::from_millis(1));
    assert_eq!(window("0ms"), Duration::ZERO);
    assert_eq!(window("250us"), Duration::from_micros(250));
    assert_eq!(window("1µs"), Duration::from_micros(1));
    assert_eq!(window("2ms500us"), Duration::from_micros(2500));
    assert_eq!(window("1s"), Duration::from_secs(1));
    assert_eq!(window("1000ms"), Duration::from_secs(1));
}

#[test]
fn toml_persistence_out_of_range_and_invalid_values() {
    let cases = [
        (
            "commit_window = \"1001ms\"",
            "`persistence.commit_window`: must be at most 1s, not 1001ms",
        ),
        (
            "commit_window = \"2s\"",
            "`persistence.commit_window`: must be at most 1s, not 2s",
        ),
        (
            "commit_window = \"1m\"",
            "`persistence.commit_window`: expected a duration such as `1ms`, `500us` or `1s`, \
             got `1m`",
        ),
        (
            "commit_window = \"5\"",
            "`persistence.commit_window`: expected a duration such as `1ms`, `500us` or `1s`, \
             got `5`",
        ),
        (
            "commit_window = \"0.5ms\"",
            "`persistence.commit_window`: expected a duration such as `1ms`, `500us` or `1s`, \
             got `0.5ms`",
        ),
        (
            "commit_window = 1",
            "`persistence.commit_window`: expected a duration with a unit, such as \"1ms\" or \
             \"500us\", got integer `1`",
        ),
        (
            "max_batch = 0",
            "`persistence.max_batch`: must be between 1 and 1000000, not 0",
        ),
        (
            "max_batch = 1000001",
            "`persistence.max_batch`: must be between 1 and 1000000, not 1000001",
        ),
        (
            "max_batch = -1",
            "`persistence.max_batch`: must be between 1 and 1000000, not -1",
        ),
        (
            "max_batch = \"20000\"",
            "`persistence.max_batch`: expected an integer, got string \"20000\"",
        ),
        (
            "durability = \"sync\"",
            "`persistence.durability`: expected \"fsync\", \"flush\" or \"memory\", got `sync`",
        ),
        (
            "durability = \"FSYNC\"",
            "`persistence.durability`: expected \"fsync\", \"flush\" or \"memory\", got `FSYNC`",
        ),
        (
            "durability = true",
            "`persistence.durability`: expected a string, got boolean `true`",
        ),
        (
            "enabled = \"yes\"",
            "`persistence.enabled`: expected a boolean, got string \"yes\"",
        ),
        (
            "data_dir = 1",
            "`persistence.data_dir`: expected a string, got integer `1`",
        ),
    ];
    for (line, error) in cases {
        // The faulty key is on line 3, after a comment line and the table header.
        assert_eq!(
            toml_err(&format!("# store\n[persistence]\n{line}\n")),
            format!("tern.toml:3: {error}"),
            "line {line:?}"
        );
    }
    assert_eq!(
        toml("[persistence]\nmax_batch = 1000000\n")
            .persistence
            .max_batch,
        1_000_000
    );
}

#[test]
fn toml_persistence_table_errors() {
    assert_eq!(
        toml_err("persistence = true\n"),
        "tern.toml:1: `persistence`: expected a table, got boolean `true`"
    );
    assert_eq!(
        toml_err("[[persistence]]\nenabled = false\n"),
        "tern.toml:1: `persistence`: expected a table, got an array"
    );
    assert_eq!(
        toml_err("[persistence]\nmax_batch = 1\n\nmax_batch = 2\n"),
        "tern.toml:4: `persistence.max_batch`: duplicate key"
    );
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: fixtures

#[test]
fn mosquitto_full_fixture() {
    let path = fixture("mosquitto-full.conf");
    let config = load(&path).expect("mosquitto-full.conf is valid");
    let warning = |line: usize, name: &str, message: &str| {
        format!("{}:{line}: `{name}`: {message}", path.display())
    };
    let want = expected(|c| {
        c.allow_anonymous = Some(true);
        c.sys_interval = Duration::from_secs(60);
        c.log = LogConfig {
            level: Some("info".to_owned()),
            connection_messages: Some(true),
            timestamps: Some(false),
            timestamp_format: Some("%Y-%m-%dT%H:%M:%S".to_owned()),
            dest: Some(vec![LogDest::Stderr, LogDest::Syslog]),
            ..LogConfig::default()
        };
        c.listeners = vec![
            listener("0.0.0.0:1883", None),
            listener("[::1]:1884", Some(250)),
            listener("[::]:1885", None),
        ];
        let b = &mut c.broker;
        b.allow_zero_length_clientid = false;
        b.auto_id_prefix = "gen-".to_owned();
        b.max_inflight_messages = 40;
        b.max_keepalive = 300;
        b.max_packet_size = 2_097_152;
        b.max_queued_bytes = 0;
        b.max_queued_messages = 2000;
        b.persistent_client_expiration = Some(Duration::from_secs(60 * 86_400));
        b.queue_qos0_messages = true;
        b.retain_available = false;
        b.max_qos = QoS::AtLeastOnce;
        b.max_topic_alias = 20;
        c.persistence.enabled = false;
        c.persistence.data_dir = PathBuf::from("/var/lib/tern");
        c.source = Some(path.clone());
        c.warnings = vec![
            warning(
                49,
                "persistence_file",
                "ignored: Tern keeps its own store file, `tern.db`, in the data directory \
                 (`persistence_location`)",
            ),
            warning(
                37,
                "max_qos",
                "applies to every listener in Tern, not only to the listener above it",
            ),
            warning(
                38,
                "max_topic_alias",
                "applies to every listener in Tern, not only to the listener above it",
            ),
            warning(
                50,
                "autosave_interval",
                "ignored: persistence is off (`persistence false`)",
            ),
            warning(
                51,
                "autosave_on_changes",
                "ignored: persistence is off (`persistence false`)",
            ),
        ];
    });
    assert_eq!(config, want);
}

#[test]
fn mosquitto_distribution_fixture_with_include_dir() {
    let path = fixture("mosquitto-debian.conf");
    let config = load(&path).expect("the Debian-style file is valid");
    let warnings: Vec<String> = config
        .warnings
        .iter()
        .map(|w| fixture_relative(w))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        config.process.pid_file,
        Some(PathBuf::from("/run/mosquitto/mosquitto.pid"))
    );
    assert_eq!(
        config.log.dest,
        Some(vec![LogDest::File(PathBuf::from(
            "/var/log/mosquitto/mosquitto.log"
        ))])
    );
    // `persistence true` and `persistence_location` are Tern's own settings: durable, in
    // Debian's directory (Tern's store file, tern.db, sits next to mosquitto.db).
    assert_eq!(
        config.persistence,
        PersistenceConfig {
            data_dir: PathBuf::from("/var/lib/mosquitto"),
            ..PersistenceConfig::default()
        }
    );
    // conf.d/a.conf is read before conf.d/B.conf (Mosquitto sorts without regard to case), so
    // B.conf's prefix wins; notes.txt is not read. B.conf's max_connections, written before
    // its listener line with no default listener anywhere, is the default of the listeners
    // that set none.
    assert_eq!(config.broker.auto_id_prefix, "from-B-");
    assert_eq!(config.allow_anonymous, Some(true));
    assert_eq!(
        config.listeners,
        vec![
            listener("0.0.0.0:1883", Some(100)),
            listener("127.0.0.1:8884", Some(50))
        ]
    );
}

#[test]
fn mosquitto_error_in_an_included_file_names_that_file() {
    let err = load(&fixture("bad-include.conf")).expect_err("02-bad.conf has a bad value");
    assert_eq!(err.file, fixture("bad-include.d/02-bad.conf"));
    assert_eq!(
        fixture_relative(&err.to_string()),
        "bad-include.d/02-bad.conf:3: `max_inflight_messages`: expected an integer up to 65535 \
         (0 for no limit), got `twenty`"
    );
}

#[test]
fn mosquitto_tls_fixture_is_refused() {
    // The certificate files do not exist: a TLS listener that cannot load them stops the
    // start, naming the file and the directive (never a plain-text listener instead).
    let err = load(&fixture("bad-tls.conf")).expect_err("the certificate cannot be read");
    assert_eq!(err.line, Some(2));
    assert_eq!(err.key.as_deref(), Some("certfile"));
    assert!(
        err.message
            .starts_with("`/etc/mosquitto/certs/server.crt`: cannot read the file: "),
        "{}",
        err.message
    );
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: listeners

#[test]
fn mosquitto_listener_addresses() {
    let c = mosq(
        "listener 1883\nlistener 1884 127.0.0.1\nlistener 1885 ::\nlistener 1886 localhost\n\
         listener 1887 [::1]\nlistener 1888 # all interfaces\nlistener 1889 10.0.0.1 # LAN\n",
    );
    assert_eq!(
        c.listeners,
        vec![
            listener("0.0.0.0:1883", None),
            listener("127.0.0.1:1884", None),
            listener("[::]:1885", None),
            listener("127.0.0.1:1886", None),
            listener("[::1]:1887", None),
            listener("0.0.0.0:1888", None),
            listener("10.0.0.1:1889", None),
        ]
    );
}

#[test]
fn mosquitto_bad_listener_lines() {
    assert_eq!(
        mosq_err("listener\n"),
        "mosquitto.conf:1: `listener`: missing value"
    );
    assert_eq!(
        mosq_err("\nlistener 0\n"),
        "mosquitto.conf:2: `listener`: port 0 makes a Unix socket listener: give the socket's \
         path after it"
    );
    for port in ["65536", "-1", "mqtt", "1883.0"] {
        assert_eq!(
            mosq_err(&format!("listener {port}\n")),
            format!(
                "mosquitto.conf:1: `listener`: expected a port between 1 and 65535, got `{port}`"
            )
        );
    }
    assert_eq!(
        mosq_err("listener 1883 0.0.0.0 extra\n"),
        "mosquitto.conf:1: `listener`: unexpected `extra` after the address"
    );
}

#[test]
fn mosquitto_duplicate_listeners_are_refused() {
    assert_eq!(
        mosq_err("listener 1883\nmax_connections 5\nlistener 1883 0.0.0.0\n"),
        "mosquitto.conf:3: `listener`: 0.0.0.0:1883 is already used by the listener at \
         mosquitto.conf:1"
    );
    assert_eq!(
        mosq_err("port 1884\nlistener 1884\n"),
        "mosquitto.conf:2: `listener`: 0.0.0.0:1884 is already used by the listener at \
         mosquitto.conf:1"
    );
}

#[test]
fn mosquitto_default_listener_from_port_and_bind_address() {
    assert_eq!(
        mosq("port 1884\n").listeners,
        vec![listener("0.0.0.0:1884", None)]
    );
    assert_eq!(
        mosq("bind_address 127.0.0.1\n").listeners,
        vec![listener("127.0.0.1:1883", None)]
    );
    assert_eq!(
        mosq("bind_address ::1\nport 1999\nsocket_domain ipv6\n").listeners,
        vec![listener("[::1]:1999", None)]
    );
    // Options before the first `listener` line go to the default listener only.
    let c =
        mosq("port 1884\nmax_connections 10\nlistener 1885\nlistener 1886\nmax_connections 3\n");
    assert_eq!(
        c.listeners,
        vec![
            listener("0.0.0.0:1884", Some(10)),
            listener("0.0.0.0:1885", None),
            listener("0.0.0.0:1886", Some(3)),
        ]
    );
    for port in ["0", "65536", "x"] {
        assert_eq!(
            mosq_err(&format!("port {port}\n")),
            format!(
                "mosquitto.conf:1: `port`: expected an integer between 1 and 65535, got `{port}`"
            )
        );
    }
}

#[test]
fn mosquitto_port_given_twice_warns_and_keeps_the_last() {
    let c = mosq("port 1884\nport 1885\n");
    assert_eq!(c.listeners, vec![listener("0.0.0.0:1885", None)]);
    assert_eq!(
        c.warnings,
        [
            "mosquitto.conf:2: `port`: the default listener's port is set more than once; the last \
          one is used"
        ]
    );
}

#[test]
fn mosquitto_max_connections() {
    // -1 and 0 mean no limit, as in Mosquitto, which only enforces positive limits.
    let c = mosq(
        "listener 1883\nmax_connections -1\nlistener 1884\nmax_connections 0\nlistener 1885\nmax_connections 7\n",
    );
    assert_eq!(
        c.listeners,
        vec![
            listener("0.0.0.0:1883", None),
            listener("0.0.0.0:1884", None),
            listener("0.0.0.0:1885", Some(7)),
        ]
    );
    // Before any listener line, with no default listener: the default of every listener that
    // sets none (an explicit -1 included).
    let c = mosq(
        "max_connections 20\nlistener 1883\nlistener 1884\nmax_connections -1\nlistener 1885\nmax_connections 2\n",
    );
    assert_eq!(
        c.listeners,
        vec![
            listener("0.0.0.0:1883", Some(20)),
            listener("0.0.0.0:1884", None),
            listener("0.0.0.0:1885", Some(2)),
        ]
    );
    assert_eq!(
        mosq_err("listener 1883\nmax_connections many\n"),
        "mosquitto.conf:2: `max_connections`: expected an integer, got `many`"
    );
}

#[test]
fn mosquitto_listener_options_without_any_listener_warn() {
    let c = mosq("max_connections 20\nsocket_domain ipv4\n");
    assert!(c.listeners.is_empty());
    assert_eq!(
        c.warnings,
        [
            "mosquitto.conf:1: `max_connections`: has no effect: no listener is configured, so \
             Tern uses its built-in 127.0.0.1:1883 listener",
            "mosquitto.conf:2: `socket_domain`: has no effect: no listener is configured, so \
             Tern uses its built-in 127.0.0.1:1883 listener",
        ]
    );
}

#[test]
fn mosquitto_socket_domain() {
    let c = mosq(
        "listener 1883\nsocket_domain ipv6\nlistener 1884 localhost\nsocket_domain ipv6\nlistener 1885\nsocket_domain ipv4\n",
    );
    assert_eq!(
        c.listeners,
        vec![
            listener("[::]:1883", None),
            listener("[::1]:1884", None),
            listener("0.0.0.0:1885", None)
        ]
    );
    assert_eq!(
        mosq_err("listener 1883 ::1\nsocket_domain ipv4\n"),
        "mosquitto.conf:1: `listener`: `::1` is not an IPv4 address, as `socket_domain` requires"
    );
    // The default listener's address errors point at its bind_address line.
    assert_eq!(
        mosq_err("port 1884\nbind_address ::1\nsocket_domain ipv4\n"),
        "mosquitto.conf:2: `bind_address`: `::1` is not an IPv4 address, as `socket_domain` \
         requires"
    );
    assert_eq!(
        mosq_err("listener 1883\nsocket_domain ipx\n"),
        "mosquitto.conf:2: `socket_domain`: expected ipv4 or ipv6, got `ipx`"
    );
}

#[test]
fn mosquitto_protocol() {
    assert_eq!(
        mosq("listener 1883\nprotocol mqtt\n").listeners,
        vec![listener("0.0.0.0:1883", None)]
    );
    // WebSocket listeners: tests/websocket.rs.
    let listeners = mosq("listener 1883\nlistener 9001\nprotocol websockets\n").listeners;
    assert_eq!(listeners[0].websocket, None);
    assert!(listeners[1].websocket.is_some());
    assert_eq!(
        mosq_err("listener 1883\nprotocol mqttsn\n"),
        "mosquitto.conf:2: `protocol`: expected mqtt or websockets, got `mqttsn`"
    );
}

#[test]
fn mosquitto_per_listener_limits_warn_only_with_several_listeners() {
    let one = mosq("listener 1883\nmax_qos 1\nmax_topic_alias 5\n");
    assert_eq!(one.broker.max_qos, QoS::AtLeastOnce);
    assert_eq!(one.broker.max_topic_alias, 5);
    assert!(one.warnings.is_empty(), "{:?}", one.warnings);
    // In the general section they are broker-wide in both brokers: no warning either.
    let general = mosq("max_qos 0\nlistener 1883\nlistener 1884\n");
    assert_eq!(general.broker.max_qos, QoS::AtMostOnce);
    assert!(general.warnings.is_empty(), "{:?}", general.warnings);
    let two = mosq("listener 1883\nlistener 1884\nmaximum_qos 0\n");
    assert_eq!(two.broker.max_qos, QoS::AtMostOnce);
    assert_eq!(
        two.warnings,
        [
            "mosquitto.conf:3: `maximum_qos`: applies to every listener in Tern, not only to the \
          listener above it"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: broker options and their values

#[test]
fn mosquitto_broker_options() {
    let c = mosq(
        "allow_anonymous false\nallow_zero_length_clientid 0\nauto_id_prefix my prefix \n\
         max_inflight_messages 1\nmax_keepalive 65535\nmax_packet_size 16\nmax_queued_bytes 4096\n\
         max_queued_messages 0\nmax_qos 2\nmax_topic_alias 65535\npersistent_client_expiration 1d\n\
         queue_qos0_messages 1\nretain_available true\nsys_interval 0\nset_tcp_nodelay false\n\
         check_retain_source false\nupgrade_outgoing_qos false\nmemory_limit 0\n\
         max_inflight_bytes 0\nper_listener_settings false\npersistence false\n",
    );
    let want = expected(|c| {
        c.allow_anonymous = Some(false);
        c.sys_interval = Duration::ZERO;
        let b = &mut c.broker;
        b.allow_zero_length_clientid = false;
        b.auto_id_prefix = "my prefix".to_owned();
        b.max_inflight_messages = 1;
        b.max_keepalive = 65535;
        b.max_packet_size = 16;
        b.max_queued_bytes = 4096;
        b.max_queued_messages = 0;
        b.max_qos = QoS::ExactlyOnce;
        b.max_topic_alias = 65535;
        b.persistent_client_expiration = Some(Duration::from_secs(86_400));
        b.queue_qos0_messages = true;
        b.retain_available = true;
        c.persistence.enabled = false;
    });
    assert_eq!(c, want);
}

#[test]
fn mosquitto_no_limit_values_map_to_tern_limits() {
    let c = mosq(
        "max_packet_size 0\nmax_inflight_messages 0\nmax_queued_messages -1\nmax_queued_bytes -1\n",
    );
    assert_eq!(c.broker.max_packet_size, MAX_PACKET_SIZE);
    assert_eq!(c.broker.max_inflight_messages, 65535);
    assert_eq!(c.broker.max_queued_messages, 0);
    assert_eq!(c.broker.max_queued_bytes, 0);
    assert!(c.warnings.is_empty());
    assert_eq!(
        mosq("max_inflight_messages -1\n")
            .broker
            .max_inflight_messages,
        65535
    );
}

#[test]
fn mosquitto_max_keepalive_zero_warns() {
    let c = mosq("max_keepalive 0\n");
    assert_eq!(c.broker.max_keepalive, 65535);
    assert_eq!(
        c.warnings,
        [
            "mosquitto.conf:1: `max_keepalive`: 0 (let clients disable keep alive) is not \
          supported; using 65535"
        ]
    );
}

#[test]
fn mosquitto_persistent_client_expiration_units() {
    let expiration = |v: &str| {
        mosq(&format!("persistent_client_expiration {v}\n"))
            .broker
            .persistent_client_expiration
    };
    assert_eq!(expiration("12h"), Some(Duration::from_secs(12 * 3600)));
    assert_eq!(expiration("2w"), Some(Duration::from_secs(14 * 86_400)));
    // `m` is a month of 30 days in Mosquitto, not a minute.
    assert_eq!(expiration("1m"), Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(expiration("1y"), Some(Duration::from_secs(365 * 86_400)));
    assert_eq!(
        mosq_err("persistent_client_expiration 14\n"),
        "mosquitto.conf:1: `persistent_client_expiration`: expected a number followed by h \
         (hours), d (days), w (weeks), m (months of 30 days) or y (years of 365 days), such as \
         `1d` or `2w`, got `14`"
    );
    assert_eq!(
        mosq_err("persistent_client_expiration 0d\n"),
        "mosquitto.conf:1: `persistent_client_expiration`: must be positive, got `0d` (leave the \
         option out for no expiry)"
    );
}

#[test]
fn mosquitto_bad_values() {
    let cases = [
        (
            "allow_anonymous yes",
            "`allow_anonymous`: expected true or false, got `yes`",
        ),
        (
            "allow_anonymous True",
            "`allow_anonymous`: expected true or false, got `True`",
        ),
        ("allow_anonymous", "`allow_anonymous`: missing value"),
        (
            "allow_anonymous true false",
            "`allow_anonymous`: unexpected `false` after the value",
        ),
        (
            "retain_available 2",
            "`retain_available`: expected true or false, got `2`",
        ),
        (
            "queue_qos0_messages on",
            "`queue_qos0_messages`: expected true or false, got `on`",
        ),
        (
            "allow_zero_length_clientid no",
            "`allow_zero_length_clientid`: expected true or false, got `no`",
        ),
        (
            "set_tcp_nodelay maybe",
            "`set_tcp_nodelay`: expected true or false, got `maybe`",
        ),
        (
            "connection_messages 01",
            "`connection_messages`: expected true or false, got `01`",
        ),
        (
            "log_timestamp y",
            "`log_timestamp`: expected true or false, got `y`",
        ),
        (
            "per_listener_settings off",
            "`per_listener_settings`: expected true or false, got `off`",
        ),
        (
            "max_packet_size 15",
            "`max_packet_size`: expected 0 (no limit) or an integer between 16 and 268435460, got `15`",
        ),
        (
            "max_packet_size 268435461",
            "`max_packet_size`: expected 0 (no limit) or an integer between 16 and 268435460, got `268435461`",
        ),
        (
            "max_packet_size 1MB",
            "`max_packet_size`: expected 0 (no limit) or an integer between 16 and 268435460, got `1MB`",
        ),
        (
            "max_inflight_messages 65536",
            "`max_inflight_messages`: expected an integer up to 65535 (0 for no limit), got `65536`",
        ),
        (
            "max_queued_messages lots",
            "`max_queued_messages`: expected an integer, got `lots`",
        ),
        (
            "max_queued_bytes 1.5",
            "`max_queued_bytes`: expected an integer, got `1.5`",
        ),
        (
            "max_keepalive 65536",
            "`max_keepalive`: expected an integer between 0 and 65535, got `65536`",
        ),
        (
            "max_keepalive -1",
            "`max_keepalive`: expected an integer between 0 and 65535, got `-1`",
        ),
        (
            "max_qos 3",
            "`max_qos`: expected an integer between 0 and 2, got `3`",
        ),
        (
            "max_topic_alias 65536",
            "`max_topic_alias`: expected an integer between 0 and 65535, got `65536`",
        ),
        (
            "sys_interval 65536",
            "`sys_interval`: expected an integer between 0 and 65535, got `65536`",
        ),
        (
            "sys_interval 10s",
            "`sys_interval`: expected an integer between 0 and 65535, got `10s`",
        ),
        (
            "message_size_limit 268435456",
            "`message_size_limit`: expected an integer between 0 and 268435455, got `268435456`",
        ),
        (
            "memory_limit big",
            "`memory_limit`: expected an integer, got `big`",
        ),
        ("auto_id_prefix", "`auto_id_prefix`: missing value"),
    ];
    for (line, error) in cases {
        assert_eq!(
            mosq_err(&format!("# test\n{line}\n")),
            format!("mosquitto.conf:2: {error}")
        );
    }
}

#[test]
fn mosquitto_trailing_comments_and_blank_lines() {
    let c = mosq(
        "\n   \n# comment\n   # indented comment\nmax_qos 1 # at most once, please\n\
         \tallow_anonymous\ttrue\t\n",
    );
    assert_eq!(c.broker.max_qos, QoS::AtLeastOnce);
    assert_eq!(c.allow_anonymous, Some(true));
}

#[test]
fn mosquitto_windows_line_endings() {
    let c = mosq("listener 1883\r\nmax_connections 4\r\nauto_id_prefix win-\r\n");
    assert_eq!(c.listeners, vec![listener("0.0.0.0:1883", Some(4))]);
    assert_eq!(c.broker.auto_id_prefix, "win-");
}

#[test]
fn mosquitto_unknown_directive() {
    assert_eq!(
        mosq_err("allow_anonymous true\nmax_qoss 1\n"),
        "mosquitto.conf:2: `max_qoss`: unknown directive"
    );
    assert_eq!(
        mosq_err("listener=1883\n"),
        "mosquitto.conf:1: `listener=1883`: unknown directive"
    );
}

#[test]
fn mosquitto_message_size_limit() {
    let c = mosq("message_size_limit 1000000\n");
    assert_eq!(c.broker.max_packet_size, 1_065_544);
    assert_eq!(
        c.warnings,
        [
            "mosquitto.conf:1: `message_size_limit`: deprecated: Tern limits whole packets, so this \
          is applied as `max_packet_size 1065544` (the limit plus room for the headers and the \
          longest topic)"
        ]
    );
    // Capped at the protocol's maximum.
    assert_eq!(
        mosq("message_size_limit 268435455\n")
            .broker
            .max_packet_size,
        MAX_PACKET_SIZE
    );
    // An explicit max_packet_size wins, wherever it is.
    let c = mosq("message_size_limit 1000\nmax_packet_size 5000\n");
    assert_eq!(c.broker.max_packet_size, 5000);
    assert_eq!(
        c.warnings,
        [
            "mosquitto.conf:1: `message_size_limit`: deprecated and ignored: `max_packet_size` is \
          set too"
        ]
    );
    // 0 is "no limit": nothing to apply.
    let c = mosq("message_size_limit 0\n");
    assert_eq!(c, Config::default());
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: persistence

#[test]
fn mosquitto_persistence_is_on_without_a_persistence_line() {
    // Mosquitto's default is off; Tern is durable unless the file says `persistence false`.
    let c = mosq("listener 1883\nallow_anonymous true\n");
    assert_eq!(c.persistence, PersistenceConfig::default());
    assert!(c.persistence.enabled);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn mosquitto_persistence_and_retained_persistence() {
    let enabled = |text: &str| {
        let c = mosq(text);
        assert!(c.warnings.is_empty(), "{text:?}: {:?}", c.warnings);
        // Only `enabled` changes: the other settings keep Tern's defaults.
        assert_eq!(
            c.persistence,
            PersistenceConfig {
                enabled: c.persistence.enabled,
                ..PersistenceConfig::default()
            }
        );
        c.persistence.enabled
    };
    assert!(enabled("persistence true\n"));
    assert!(!enabled("persistence false\n"));
    assert!(enabled("persistence 1\n"));
    assert!(!enabled("persistence 0\n"));
    // Mosquitto's synonym of `persistence`.
    assert!(!enabled("retained_persistence false\n"));
    assert!(enabled("retained_persistence true\n"));
    // The last line wins, whichever of the two names it uses.
    assert!(enabled("persistence false\npersistence true\n"));
    assert!(!enabled("persistence true\nretained_persistence false\n"));
    assert_eq!(
        mosq_err("persistence yes\n"),
        "mosquitto.conf:1: `persistence`: expected true or false, got `yes`"
    );
    assert_eq!(
        mosq_err("listener 1883\nretained_persistence on\n"),
        "mosquitto.conf:2: `retained_persistence`: expected true or false, got `on`"
    );
    assert_eq!(
        mosq_err("persistence\n"),
        "mosquitto.conf:1: `persistence`: missing value"
    );
}

#[test]
fn mosquitto_persistence_location() {
    let location = |value: &str| {
        let c = mosq(&format!("persistence_location {value}\n"));
        assert!(c.warnings.is_empty(), "{value:?}: {:?}", c.warnings);
        assert!(c.persistence.enabled);
        c.persistence.data_dir
    };
    // With or without Mosquitto's trailing slash.
    assert_eq!(
        location("/var/lib/mosquitto/"),
        PathBuf::from("/var/lib/mosquitto")
    );
    assert_eq!(
        location("/var/lib/mosquitto"),
        PathBuf::from("/var/lib/mosquitto")
    );
    assert_eq!(location("/"), PathBuf::from("/"));
    // The rest of the line: a path may contain spaces.
    assert_eq!(location("/srv/my broker/"), PathBuf::from("/srv/my broker"));
    // Relative to the working directory, as in Mosquitto: not joined to the file's directory
    // (the file is in a temporary directory).
    assert_eq!(location("state/"), PathBuf::from("state"));
    assert_eq!(location("./state"), PathBuf::from("./state"));
    assert_eq!(
        mosq("persistence false\npersistence_location /data/\n").persistence,
        PersistenceConfig {
            enabled: false,
            data_dir: PathBuf::from("/data"),
            ..PersistenceConfig::default()
        }
    );
    assert_eq!(
        mosq_err("persistence true\npersistence_location\n"),
        "mosquitto.conf:2: `persistence_location`: missing value"
    );
}

#[test]
fn mosquitto_persistence_location_in_an_included_file_is_not_relative_to_it() {
    let dir = TempDir::new();
    dir.write("conf.d/store.conf", "persistence_location data/\n");
    let main = dir.write("main.conf", "include_dir conf.d\n");
    assert_eq!(
        load(&main).expect("valid").persistence.data_dir,
        PathBuf::from("data")
    );
}

#[test]
fn mosquitto_persistence_file_is_ignored_with_a_warning() {
    let c = mosq(
        "persistence true\npersistence_location /var/lib/mosquitto/\npersistence_file broker.db\n",
    );
    assert_eq!(
        c.warnings,
        [
            "mosquitto.conf:3: `persistence_file`: ignored: Tern keeps its own store file, \
             `tern.db`, in the data directory (`persistence_location`)"
        ]
    );
    assert_eq!(c.persistence.data_dir, PathBuf::from("/var/lib/mosquitto"));
    assert_eq!(
        mosq_err("persistence_file\n"),
        "mosquitto.conf:1: `persistence_file`: missing value"
    );
}

#[test]
fn mosquitto_autosave_is_meaningless_with_continuous_durability() {
    let meaningless = "ignored: meaningless with continuous durability: every acknowledged \
                       message is committed before its acknowledgement";
    let c = mosq("persistence true\nautosave_interval 1800\nautosave_on_changes true\n");
    assert_eq!(
        c.warnings,
        [
            format!("mosquitto.conf:2: `autosave_interval`: {meaningless}"),
            format!("mosquitto.conf:3: `autosave_on_changes`: {meaningless}"),
        ]
    );
    assert_eq!(c.persistence, PersistenceConfig::default());
    // Without a `persistence` line too: Tern is durable by default.
    assert_eq!(
        mosq("autosave_interval 0\n").warnings,
        [format!(
            "mosquitto.conf:1: `autosave_interval`: {meaningless}"
        )]
    );
    // With persistence off, whether `persistence false` comes before or after.
    let off = "ignored: persistence is off (`persistence false`)";
    assert_eq!(
        mosq("autosave_interval 60\npersistence false\nautosave_on_changes false\n").warnings,
        [
            format!("mosquitto.conf:1: `autosave_interval`: {off}"),
            format!("mosquitto.conf:3: `autosave_on_changes`: {off}"),
        ]
    );
    // Their values are still checked.
    assert_eq!(
        mosq_err("autosave_interval often\n"),
        "mosquitto.conf:1: `autosave_interval`: expected an integer, got `often`"
    );
    assert_eq!(
        mosq_err("autosave_on_changes maybe\n"),
        "mosquitto.conf:1: `autosave_on_changes`: expected true or false, got `maybe`"
    );
}

#[test]
fn mosquitto_queue_and_expiry_options_with_persistence() {
    // The directives the durability issue lists, together: each reaches its Tern setting.
    let c = mosq(
        "persistence true\npersistence_location /var/lib/tern/\npersistent_client_expiration 2w\n\
         max_queued_messages 5000\nmax_queued_bytes 1048576\nqueue_qos0_messages true\n",
    );
    assert_eq!(
        c,
        expected(|c| {
            c.persistence.data_dir = PathBuf::from("/var/lib/tern");
            c.broker.persistent_client_expiration = Some(Duration::from_secs(14 * 86_400));
            c.broker.max_queued_messages = 5000;
            c.broker.max_queued_bytes = 1_048_576;
            c.broker.queue_qos0_messages = true;
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: logging

#[test]
fn mosquitto_log_types_accumulate() {
    let level = |text: &str| mosq(text).log.level;
    assert_eq!(level("allow_anonymous true\n"), None);
    assert_eq!(level("log_type error\n"), Some("error".to_owned()));
    assert_eq!(
        level("log_type error\nlog_type warning\n"),
        Some("warn".to_owned())
    );
    assert_eq!(
        level("log_type warning\nlog_type notice\n"),
        Some("info".to_owned())
    );
    assert_eq!(
        level("log_type information\nlog_type error\n"),
        Some("info".to_owned())
    );
    assert_eq!(
        level("log_type subscribe\nlog_type unsubscribe\n"),
        Some("debug".to_owned())
    );
    assert_eq!(level("log_type debug\n"), Some("debug".to_owned()));
    assert_eq!(
        level("log_type all\nlog_type error\n"),
        Some("trace".to_owned())
    );
    assert_eq!(
        level("log_type debug\nlog_type none\n"),
        Some("off".to_owned())
    );
    assert_eq!(
        level("log_type none\nlog_type warning\n"),
        Some("warn".to_owned())
    );
    assert_eq!(
        level("log_type error warning # two on one line\n"),
        Some("warn".to_owned())
    );
    assert_eq!(
        mosq_err("log_type error\nlog_type verbose\n"),
        "mosquitto.conf:2: `log_type`: expected none, error, warning, notice, information, \
         debug, subscribe, unsubscribe, internal, websockets or all, got `verbose`"
    );
    assert_eq!(
        mosq_err("log_type\n"),
        "mosquitto.conf:1: `log_type`: missing value"
    );
}

#[test]
fn mosquitto_log_options() {
    let c =
        mosq("connection_messages false\nlog_timestamp true\nlog_dest stdout\nlog_dest stderr\n");
    assert_eq!(
        c.log,
        LogConfig {
            level: None,
            connection_messages: Some(false),
            timestamps: Some(true),
            dest: Some(vec![LogDest::Stdout, LogDest::Stderr]),
            ..LogConfig::default()
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    for (dest, want) in [
        (
            "file /var/log/mosquitto.log",
            vec![LogDest::File(PathBuf::from("/var/log/mosquitto.log"))],
        ),
        ("syslog", vec![LogDest::Syslog]),
        ("none", vec![]),
        (
            "stderr\nlog_dest none\nlog_dest stdout",
            vec![LogDest::Stdout],
        ),
    ] {
        let c = mosq(&format!("log_dest {dest}\n"));
        assert!(c.warnings.is_empty(), "{dest}: {:?}", c.warnings);
        assert_eq!(c.log.dest, Some(want), "{dest}");
    }
    for dest in ["topic", "dlt"] {
        let c = mosq(&format!("log_dest {dest}\n"));
        assert_eq!(c.log.dest, None, "{dest}");
        assert!(
            c.warnings[0].starts_with("mosquitto.conf:1: `log_dest`: ignored: Tern does not"),
            "{:?}",
            c.warnings
        );
    }
    assert_eq!(
        mosq_err("log_dest file\n"),
        "mosquitto.conf:1: `log_dest`: missing file name after `file`"
    );
    assert_eq!(
        mosq_err("log_dest journal\n"),
        "mosquitto.conf:1: `log_dest`: expected stdout, stderr, file PATH, syslog, topic, dlt \
         or none, got `journal`"
    );
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: what is not supported, as errors or warnings

#[test]
fn mosquitto_security_directives_are_errors() {
    let tls_engine = "TLS engines (hardware keys) are not supported; Tern refuses to start \
                      rather than run without the key this file names";
    let tls_psk = "TLS-PSK is not supported yet; Tern refuses to start rather than accept \
                   unencrypted connections where this file asks for TLS";
    let plugins = "plugins are not supported yet; Tern refuses to start rather than run without \
                   the checks the plugin would make";
    let client_ids = "not supported yet; Tern refuses to start rather than accept client ids \
                      this directive would refuse";
    let cases = [
        ("tls_engine pkcs11", tls_engine),
        ("tls_keyform engine", tls_engine),
        ("tls_engine_kpass_sha1 abcd", tls_engine),
        ("psk_file /etc/mosquitto/psk", tls_psk),
        ("psk_hint hint", tls_psk),
        ("plugin /usr/lib/mosquitto_dynamic_security.so", plugins),
        ("auth_plugin /usr/lib/auth-plug.so", plugins),
        ("global_plugin /usr/lib/p.so", plugins),
        ("plugin_opt_config_file /etc/mosquitto/dynsec.json", plugins),
        ("auth_opt_backends files", plugins),
        ("auth_plugin_deny_special_chars true", plugins),
        ("use_username_as_clientid true", client_ids),
        (
            "bind_interface eth0",
            "not supported yet; write the interface's address in `listener PORT ADDRESS` \
             instead, or Tern would listen on every interface",
        ),
    ];
    for (line, message) in cases {
        let name = line.split(' ').next().unwrap_or_default();
        assert_eq!(
            mosq_err(&format!("listener 1883\n{line}\n")),
            format!("mosquitto.conf:2: `{name}`: {message}"),
            "line {line:?}"
        );
    }
}

#[test]
fn mosquitto_bridge_directives_need_a_connection_block() {
    // The bridge directives themselves are covered by tests/bridge_config.rs.
    assert_eq!(
        mosq_err("connection cloud\n"),
        "mosquitto.conf:1: `connection`: the bridge `cloud` has no `address` line: it needs the \
         remote broker's address"
    );
    for line in [
        "address broker.example.com:1883",
        "addresses a:1883 b:1883",
        "topic sensors/# out 1",
        "remote_username bridge",
        "remote_password secret",
        "remote_clientid edge-1",
        "bridge_protocol_version mqttv311",
        "bridge_cafile /ca.pem",
        "bridge_insecure false",
        "cleansession false",
        "local_clientid local",
        "keepalive_interval 60",
        "notifications true",
        "notification_topic $SYS/x",
        "restart_timeout 5 30",
        "round_robin false",
        "start_type automatic",
        "threshold 10",
        "try_private true",
        "idle_timeout 60",
    ] {
        let name = line.split(' ').next().unwrap_or_default();
        assert_eq!(
            mosq_err(&format!("{line}\n")),
            format!(
                "mosquitto.conf:1: `{name}`: must follow a `connection NAME` line: it configures \
                 the bridge above it (in the same file), and there is none"
            ),
            "line {line:?}"
        );
    }
}

#[test]
fn mosquitto_harmless_unsupported_directives_are_warnings() {
    let cases = [
        (
            "http_dir /usr/share/mosquitto/www",
            "ignored: Tern does not serve files over HTTP",
        ),
        (
            "websockets_log_level 0",
            "ignored: Tern logs WebSocket upgrades with its other connection messages",
        ),
        (
            "websockets_headers_size 4096",
            "ignored: Tern accepts WebSocket upgrade requests of up to 8 KiB",
        ),
        (
            "dhparamfile /dh.pem",
            "ignored: Tern does not use Diffie-Hellman parameter files",
        ),
        (
            "upgrade_outgoing_qos true",
            "not supported yet; messages are delivered at the lower of the published and the \
             granted QoS",
        ),
        (
            "memory_limit 1000000",
            "not enforced yet; this limit is ignored",
        ),
        (
            "max_inflight_bytes 65536",
            "not enforced yet; only max_inflight_messages limits the messages in flight",
        ),
        (
            "allow_duplicate_messages false",
            "ignored: deprecated in Mosquitto 2",
        ),
        (
            "retry_interval 20",
            "ignored: removed from Mosquitto in version 1.6",
        ),
    ];
    for (line, message) in cases {
        let name = line.split(' ').next().unwrap_or_default();
        let c = load_as("mosquitto.conf", &format!("listener 1883\n{line}\n"))
            .unwrap_or_else(|e| panic!("{line:?} should only warn, got {e}"));
        assert_eq!(
            c.warnings,
            [format!("mosquitto.conf:2: `{name}`: {message}")],
            "line {line:?}"
        );
        assert_eq!(c.listeners, vec![listener("0.0.0.0:1883", None)]);
        assert_eq!(
            c.broker,
            tern_core::BrokerConfig::default(),
            "line {line:?}"
        );
    }
}

#[test]
fn mosquitto_accepted_directives_without_effect_do_not_warn() {
    let c = mosq(
        "set_tcp_nodelay true\ncheck_retain_source true\nper_listener_settings false\n\
         persistence true\nupgrade_outgoing_qos false\nmemory_limit 0\nmax_inflight_bytes 0\n",
    );
    assert_eq!(c, Config::default());
}

#[test]
fn mosquitto_errors_stop_at_the_first_one() {
    // The TLS error comes first, although a warning-only directive precedes it.
    let err = mosq_err("pid_file /run/m.pid\nlistener 8883\npsk_file /psk\npassword_file /p\n");
    assert!(
        err.starts_with("mosquitto.conf:3: `psk_file`: TLS-PSK is not supported yet"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Mosquitto: include_dir

#[test]
fn include_dir_reads_conf_files_in_mosquitto_order() {
    let dir = TempDir::new();
    dir.write("conf.d/B.conf", "auto_id_prefix B-\n");
    dir.write("conf.d/A.conf", "auto_id_prefix A-\nmax_qos 1\n");
    dir.write(
        "conf.d/10-first.conf",
        "auto_id_prefix 10-\nmax_qos 0\nlistener 1883\n",
    );
    dir.write("conf.d/a_.conf", "auto_id_prefix a_-\n");
    dir.write("conf.d/.conf", "this would be an error\n");
    dir.write("conf.d/z.conf.disabled", "this would be an error\n");
    dir.write("conf.d/notes.txt", "this would be an error\n");
    std::fs::create_dir_all(dir.0.join("conf.d/dir.conf")).expect("mkdir");
    // Relative to the including file's directory, not to the current directory.
    let main = dir.write("main.conf", "include_dir conf.d\n");
    let c = load(&main).expect("valid");
    // Order: 10-first, A, a_, B (a byte-wise sort would read a_.conf last).
    assert_eq!(c.broker.auto_id_prefix, "B-");
    assert_eq!(c.broker.max_qos, QoS::AtLeastOnce);
    assert_eq!(c.listeners, vec![listener("0.0.0.0:1883", None)]);
}

#[test]
fn include_dir_order_puts_upper_case_first_among_equal_names() {
    let dir = TempDir::new();
    dir.write("conf.d/x.conf", "auto_id_prefix lower-\n");
    // On a case-insensitive file system this overwrites x.conf: nothing to compare then.
    dir.write("conf.d/X.conf", "auto_id_prefix upper-\n");
    let names = std::fs::read_dir(dir.0.join("conf.d"))
        .expect("read_dir")
        .count();
    let main = dir.write(
        "main.conf",
        &format!("include_dir {}\n", dir.0.join("conf.d").display()),
    );
    let prefix = load(&main).expect("valid").broker.auto_id_prefix;
    if names == 2 {
        assert_eq!(prefix, "lower-");
    } else {
        assert_eq!(prefix, "upper-");
    }
}

#[test]
fn include_dir_sections_restart_in_each_file() {
    // As in Mosquitto, an included file starts in the general section: its max_connections
    // before any listener line is not the main file's last listener's.
    let dir = TempDir::new();
    dir.write("conf.d/limits.conf", "max_connections 9\n");
    let main = dir.write(
        "main.conf",
        "listener 1883\ninclude_dir conf.d\nlistener 1884\nmax_connections 1\n",
    );
    let c = load(&main).expect("valid");
    assert_eq!(
        c.listeners,
        vec![
            listener("0.0.0.0:1883", Some(9)),
            listener("0.0.0.0:1884", Some(1))
        ]
    );
}

#[test]
fn include_dir_errors() {
    let dir = TempDir::new();
    let main = dir.write("main.conf", "allow_anonymous true\ninclude_dir missing.d\n");
    let err = load(&main).expect_err("missing directory");
    assert_eq!(err.file, main);
    assert_eq!(err.line, Some(2));
    assert_eq!(err.key.as_deref(), Some("include_dir"));
    let missing = dir.0.join("missing.d");
    assert!(
        err.message.starts_with(&format!(
            "cannot read the directory `{}`: ",
            missing.display()
        )),
        "{}",
        err.message
    );
    assert_eq!(
        mosq_err("include_dir\n"),
        "mosquitto.conf:1: `include_dir`: missing value"
    );

    dir.write(
        "bad.d/x.conf",
        "listener 1883\n\nwebsockets_log_level 0\nmount_point a/+\n",
    );
    let main = dir.write("bad.conf", "include_dir bad.d\n");
    assert_eq!(
        dir.relative(&load(&main).expect_err("mount_point").to_string()),
        format!(
            "bad.d{}x.conf:4: `mount_point`: `a/+` is not a valid topic prefix: it must not \
             contain `+`, `#` or NUL",
            std::path::MAIN_SEPARATOR
        )
    );
}

#[test]
fn include_dir_in_an_included_file_is_ignored_with_a_warning() {
    let dir = TempDir::new();
    dir.write("conf.d/nested.conf", "include_dir deeper.d\n");
    dir.write("conf.d/deeper.d/x.conf", "this would be an error\n");
    let main = dir.write("main.conf", "include_dir conf.d\n");
    let c = load(&main).expect("valid");
    let warnings: Vec<String> = c.warnings.iter().map(|w| dir.relative(w)).collect();
    assert_eq!(
        warnings,
        [format!(
            "conf.d{}nested.conf:1: `include_dir`: ignored: only the main configuration file may \
             include others",
            std::path::MAIN_SEPARATOR
        )]
    );
}

#[test]
fn config_error_display() {
    let full = ConfigError {
        file: PathBuf::from("tern.toml"),
        line: Some(7),
        key: Some("mqtt.max_qos".to_owned()),
        message: "must be 0, 1 or 2, not 3".to_owned(),
    };
    assert_eq!(
        full.to_string(),
        "tern.toml:7: `mqtt.max_qos`: must be 0, 1 or 2, not 3"
    );
    let bare = ConfigError {
        line: None,
        key: None,
        ..full
    };
    assert_eq!(bare.to_string(), "tern.toml: must be 0, 1 or 2, not 3");
}
