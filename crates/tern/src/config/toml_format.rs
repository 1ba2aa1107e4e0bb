//! Tern's own TOML format.
//!
//! The document is deserialized into `Raw*` structs that reject unknown keys and keep the byte
//! span of every value that is validated afterwards, so that a range error can name its line.
//! Errors from the TOML parser and from serde carry a span too; the key path of that span is
//! found by walking the parsed document, because `toml::de::Error` does not expose its keys.

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tern_codec::{MAX_PACKET_SIZE, QoS};
use tern_core::{BrokerConfig, ProtocolVersions, RateExceeded, RateLimit};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::tls::{CertificateIdentity, TlsConfig, TlsKey, TlsVersion};
use crate::websocket::{WebSocketSettings, check_path};

use super::rate::{parse_count, parse_rate};
use crate::limits::ConnectionLimits;

use super::listener::{
    VersionToken, check_mount_point, mount_point_warning, parse_protocol_version,
};
use super::{
    Config, ConfigError, Durability, ListenAddr, ListenerConfig, ListenerSettings, LoadedFile,
    LogConfig, MIN_PACKET_SIZE, PersistenceConfig, load_acl, parse_duration, relative_to,
    resolve_host,
};
use crate::proxy_protocol::{ProxyProtocol, ProxyVersions};
use crate::unix_socket::{
    UnixSocketConfig, check_path as check_unix_path, parse_mode as parse_unix_mode,
};

/// Parses and validates a TOML configuration.
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let doc = Doc { path, text };
    let root = DeTable::parse(text).map_err(|e| doc.syntax_error(&e))?;
    let raw = RawConfig::deserialize(toml::de::Deserializer::from(root.clone()))
        .map_err(|e| doc.schema_error(&e, root.get_ref()))?;
    raw.into_config(&doc)
}

// ---------------------------------------------------------------------------------------------
// The schema. Field names are the TOML keys; every struct rejects keys it does not know, so that
// a misspelt option is an error instead of a silently ignored line.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    allow_anonymous: Option<bool>,
    sys_interval: Option<Spanned<DurationValue>>,
    acl_file: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    log: Option<Table<RawLog>>,
    listeners: Option<Vec<Table<RawListener>>>,
    mqtt: Option<Table<RawMqtt>>,
    persistence: Option<Table<RawPersistence>>,
    limits: Option<Table<RawLimits>>,
    auth: Option<Table<RawAuth>>,
    admin: Option<Table<super::admin::RawAdmin>>,
    bridges: Option<Vec<Spanned<Table<super::bridge_parse::RawBridge>>>>,
    pid_file: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    connection_messages: Option<bool>,
    timestamps: Option<bool>,
    timestamp_format: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    dest: Option<Spanned<OneOrMany>>,
    redact: Option<Spanned<Vec<Spanned<String>>>>,
    syslog_facility: Option<Spanned<Int>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    max_connections: Option<Spanned<Int>>,
    tls: Option<Spanned<Table<RawTls>>>,
    protocol: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    upgrade_timeout: Option<Spanned<DurationValue>>,
    protocol_versions: Option<Spanned<Vec<Spanned<VersionValue>>>>,
    mount_point: Option<Spanned<String>>,
    allow_anonymous: Option<bool>,
    password_file: Option<Spanned<String>>,
    acl_file: Option<Spanned<String>>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    unix_mode: Option<Spanned<ModeValue>>,
    proxy_protocol: Option<Spanned<ProxyValue>>,
    proxy_protocol_require_tls: Option<Spanned<bool>>,
}

/// `unix_mode`: a string of octal digits (a TOML integer would lose its octal notation).
struct ModeValue(String);

impl<'de> Deserialize<'de> for ModeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor {
            expecting: "permissions as a string of octal digits, such as \"0660\"",
        })
        .map(Self)
    }
}

/// `proxy_protocol`: `true` (either version), `false`, or a version, 1 or 2.
enum ProxyValue {
    On(bool),
    Version(i64),
}

struct ProxyVisitor;

impl Visitor<'_> for ProxyVisitor {
    type Value = ProxyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true, false, 1 or 2")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ProxyValue, E> {
        Ok(ProxyValue::On(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ProxyValue, E> {
        Ok(ProxyValue::Version(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ProxyValue, E> {
        Ok(ProxyValue::Version(i64::try_from(v).unwrap_or(i64::MAX)))
    }
}

impl<'de> Deserialize<'de> for ProxyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ProxyVisitor)
    }
}

/// An entry of `protocol_versions`: a protocol level or a version name.
struct VersionValue(Scalar);

impl<'de> Deserialize<'de> for VersionValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a protocol level (3, 4, 5) or a version name such as \"3.1.1\"";
        d.deserialize_any(ScalarVisitor {
            expecting,
            strings: true,
        })
        .map(Self)
    }
}

/// `[listeners.tls]`: the keys are Mosquitto's directive names (`ciphers_tls13` for
/// `ciphers_tls1.3`, which is not a bare TOML key).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certfile: Option<Spanned<String>>,
    keyfile: Option<Spanned<String>>,
    cafile: Option<Spanned<String>>,
    capath: Option<Spanned<String>>,
    crlfile: Option<Spanned<String>>,
    require_certificate: Option<Spanned<bool>>,
    use_identity_as_username: Option<Spanned<bool>>,
    use_subject_as_username: Option<Spanned<bool>>,
    tls_version: Option<Spanned<String>>,
    ciphers: Option<Spanned<String>>,
    ciphers_tls13: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<DurationValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqtt {
    max_packet_size: Option<Spanned<SizeValue>>,
    max_inflight_messages: Option<Spanned<Int>>,
    receive_maximum: Option<Spanned<Int>>,
    max_queued_messages: Option<Spanned<Int>>,
    max_queued_bytes: Option<Spanned<SizeValue>>,
    max_total_queued_bytes: Option<Spanned<SizeValue>>,
    queue_qos0_messages: Option<bool>,
    max_keepalive: Option<Spanned<Int>>,
    retain_available: Option<bool>,
    max_qos: Option<Spanned<Int>>,
    max_topic_alias: Option<Spanned<Int>>,
    max_topic_levels: Option<Spanned<Int>>,
    max_topic_length: Option<Spanned<Int>>,
    max_client_id_length: Option<Spanned<Int>>,
    clientid_prefixes: Option<Spanned<Vec<Spanned<String>>>>,
    max_subscriptions: Option<Spanned<Int>>,
    persistent_client_expiration: Option<Spanned<DurationValue>>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    connect_timeout: Option<Spanned<DurationValue>>,
}

/// `[limits]`: connections, connect rate, message rate and bandwidth (see `crate::limits`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<Int>>,
    max_connections_per_ip: Option<Spanned<Int>>,
    connect_rate: Option<Spanned<RateValue>>,
    connect_burst: Option<Spanned<Int>>,
    message_rate: Option<Spanned<RateValue>>,
    message_burst: Option<Spanned<Int>>,
    bandwidth: Option<Spanned<ByteRateValue>>,
    bandwidth_burst: Option<Spanned<SizeValue>>,
    rate_exceeded: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersistence {
    enabled: Option<Spanned<bool>>,
    data_dir: Option<Spanned<String>>,
    durability: Option<Spanned<String>>,
    commit_window: Option<Spanned<ShortDurationValue>>,
    max_batch: Option<Spanned<Int>>,
}

/// A TOML table deserialized into `T`. Serde's derived structs also accept arrays, matched to
/// fields by position, which would make `mqtt = [1024]` a `max_packet_size` and `[[mqtt]]` an
/// error about sizes; only tables are accepted here.
pub(super) struct Table<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TableVisitor(PhantomData)).map(Self)
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// A TOML integer. Deserialized through its own visitor so that a type error says "an integer"
/// rather than Rust's "i64".
pub(super) struct Int(pub(super) i64);

/// An integer or a string, the two ways to write a duration or a size.
pub(super) enum Scalar {
    Int(i64),
    Text(String),
}

/// A duration: whole seconds, or a string for [`parse_duration`].
pub(super) struct DurationValue(pub(super) Scalar);

/// A size: bytes, or a string with a unit for [`parse_size`].
struct SizeValue(Scalar);

/// A rate of connections or messages: a whole number per second, or a string for
/// [`parse_rate`] such as `"10/s"` or `"30/m"`.
struct RateValue(Scalar);

/// A rate of bytes: a whole number of bytes per second, or a string for [`parse_rate`] with a
/// size, such as `"64KiB/s"`.
struct ByteRateValue(Scalar);

/// A short duration (`persistence.commit_window`): a string with a unit for
/// [`parse_short_duration`]. A bare integer is refused: elsewhere it means seconds, which is
/// never what a commit window should be.
struct ShortDurationValue(String);

/// Accepts an integer, and a string too when `strings` is set; `expecting` is what a type error
/// says was expected.
struct ScalarVisitor {
    expecting: &'static str,
    strings: bool,
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        i64::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        if self.strings {
            Ok(Scalar::Text(v.to_owned()))
        } else {
            Err(E::invalid_type(de::Unexpected::Str(v), &self))
        }
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(ScalarVisitor {
            expecting: "an integer",
            strings: false,
        })? {
            Scalar::Int(v) => Ok(Self(v)),
            // Not reached: the visitor refuses strings.
            Scalar::Text(_) => Err(de::Error::custom("expected an integer")),
        }
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a duration: whole seconds, or a string such as \"30s\" or \"14d\"";
        d.deserialize_any(ScalarVisitor {
            expecting,
            strings: true,
        })
        .map(Self)
    }
}

impl<'de> Deserialize<'de> for RateValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a rate: a whole number per second, or a string such as \"10/s\" or \
                         \"30/m\"";
        d.deserialize_any(ScalarVisitor {
            expecting,
            strings: true,
        })
        .map(Self)
    }
}

impl<'de> Deserialize<'de> for ByteRateValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a rate: bytes per second, or a string such as \"64KiB/s\"";
        d.deserialize_any(ScalarVisitor {
            expecting,
            strings: true,
        })
        .map(Self)
    }
}

impl<'de> Deserialize<'de> for ShortDurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor {
            expecting: "a duration with a unit, such as \"1ms\" or \"500us\"",
        })
        .map(Self)
    }
}

/// Accepts a string only; `expecting` is what a type error says was expected.
struct TextVisitor {
    expecting: &'static str,
}

impl Visitor<'_> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
}

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a size: bytes, or a string such as \"256KiB\" or \"1MiB\"";
        d.deserialize_any(ScalarVisitor {
            expecting,
            strings: true,
        })
        .map(Self)
    }
}

// ---------------------------------------------------------------------------------------------
// From the raw schema to `Config`, validating every value.

impl RawConfig {
    fn into_config(self, doc: &Doc<'_>) -> Result<Config, ConfigError> {
        let mut config = Config {
            allow_anonymous: self.allow_anonymous,
            ..Config::default()
        };
        if let Some(v) = &self.sys_interval {
            config.sys_interval = doc.duration(v, "sys_interval")?;
        }
        if let Some(Table(log)) = self.log {
            config.log = log.validate(doc)?;
        }
        if let Some(v) = &self.pid_file {
            if v.get_ref().trim().is_empty() {
                return Err(doc.error(v, "pid_file", "must not be empty"));
            }
            config.process.pid_file = Some(relative_to(doc.path, Path::new(v.get_ref())));
        }
        if let Some(v) = &self.user {
            if v.get_ref().trim().is_empty() {
                return Err(doc.error(v, "user", "must not be empty"));
            }
            config.process.user = Some(v.get_ref().clone());
        }
        config.listeners = validate_listeners(
            doc,
            self.listeners.unwrap_or_default(),
            &mut config.warnings,
        )?;
        if let Some(Table(mqtt)) = self.mqtt {
            mqtt.apply_limits(doc, &mut config.broker)?;
            mqtt.apply_options(doc, &mut config.broker)?;
        }
        if let Some(Table(persistence)) = self.persistence {
            config.persistence = persistence.validate(doc)?;
        }
        if let Some(Table(limits)) = self.limits {
            config.limits = limits.validate(doc, &mut config.broker)?;
        }
        if let Some(v) = &self.acl_file {
            // Relative to the directory of this file.
            let path = relative_to(doc.path, Path::new(v.get_ref()));
            let acl = load_acl(&path, &mut config.warnings, |m| doc.error(v, "acl_file", m))?;
            config.broker.acl = Some(acl);
            config.acl_file = Some(path);
        }
        if let Some(v) = &self.password_file {
            let path = relative_to(doc.path, Path::new(v.get_ref()));
            config.password_file = Some(super::load_password_file(&path, |m| {
                doc.error(v, "password_file", m)
            })?);
        }
        if let Some(Table(auth)) = self.auth {
            auth.validate(doc, &mut config)?;
        }
        if let Some(Table(admin)) = self.admin {
            config.admin = admin.validate(doc.path, doc.text)?;
        }
        if let Some(bridges) = self.bridges {
            config.bridges =
                super::bridge_parse::validate_toml(doc, bridges, &mut config.warnings)?;
        }
        Ok(config)
    }
}

/// The longest `persistence.commit_window`: acknowledgements wait for the commit, so a longer
/// window would only delay them.
const MAX_COMMIT_WINDOW: Duration = Duration::from_secs(1);

/// The largest `persistence.max_batch`.
const MAX_BATCH: i64 = 1_000_000;

impl RawPersistence {
    fn validate(self, doc: &Doc<'_>) -> Result<PersistenceConfig, ConfigError> {
        let mut config = PersistenceConfig::default();
        if let Some(v) = &self.enabled {
            config.enabled = *v.get_ref();
        }
        if let Some(v) = &self.data_dir {
            if v.get_ref().trim().is_empty() {
                let message = "must not be empty (leave it out for the default, `tern-data` in \
                               the working directory)";
                return Err(doc.error(v, "persistence.data_dir", message));
            }
            // Relative to the directory of this file, as `acl_file`.
            config.data_dir = relative_to(doc.path, Path::new(v.get_ref()));
        }
        if let Some(v) = &self.durability {
            let key = "persistence.durability";
            match v.get_ref().as_str() {
                "fsync" => config.durability = Durability::Fsync,
                "flush" => config.durability = Durability::Flush,
                "memory" => {
                    if self.enabled.as_ref().is_some_and(|e| *e.get_ref()) {
                        let message = "\"memory\" turns persistence off, which contradicts \
                                       `enabled = true`; keep only one of the two";
                        return Err(doc.error(v, key, message));
                    }
                    config.enabled = false;
                }
                other => {
                    let message =
                        format!("expected \"fsync\", \"flush\" or \"memory\", got `{other}`");
                    return Err(doc.error(v, key, message));
                }
            }
        }
        if let Some(v) = &self.commit_window {
            let key = "persistence.commit_window";
            let text = &v.get_ref().0;
            let window = parse_short_duration(text).map_err(|m| doc.error(v, key, m))?;
            if window > MAX_COMMIT_WINDOW {
                return Err(doc.error(v, key, format!("must be at most 1s, not {text}")));
            }
            config.commit_window = window;
        }
        if let Some(v) = &self.max_batch {
            let message = |n| format!("must be between 1 and {MAX_BATCH}, not {n}");
            config.max_batch = doc.ranged(v, "persistence.max_batch", 1, MAX_BATCH, message)?;
        }
        Ok(config)
    }
}

/// Parses a short duration: one or more `<whole number><unit>` parts with the units `us` (or
/// `µs`, microseconds), `ms` (milliseconds) and `s` (seconds), such as `1ms`, `500us` or
/// `1ms500us`. A unit is required.
fn parse_short_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("expected a duration such as `1ms`, `500us` or `1s`, got `{text}`");
    let too_large = || format!("the duration `{text}` is too large");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut micros: u64 = 0;
    while !rest.is_empty() {
        let digits_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_len == 0 {
            return Err(invalid());
        }
        let (digits, after_number) = rest.split_at(digits_len);
        let after_number = after_number.trim_start();
        let unit_len = after_number
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let micros_per_unit: u64 = match unit {
            "us" | "µs" => 1,
            "ms" => 1000,
            "s" => 1_000_000,
            _ => return Err(invalid()),
        };
        let number = digits.parse::<u64>().map_err(|_| too_large())?;
        micros = number
            .checked_mul(micros_per_unit)
            .and_then(|part| micros.checked_add(part))
            .ok_or_else(too_large)?;
        rest = after_unit.trim_start();
    }
    Ok(Duration::from_micros(micros))
}

impl RawLog {
    fn validate(self, doc: &Doc<'_>) -> Result<LogConfig, ConfigError> {
        use crate::logging::{LogDest, LogFormat, Redact, check_timestamp_format};
        if let Some(level) = &self.level {
            check_log_filter(level.get_ref()).map_err(|m| doc.error(level, "log.level", m))?;
        }
        if let Some(v) = &self.timestamp_format {
            check_timestamp_format(v.get_ref())
                .map_err(|m| doc.error(v, "log.timestamp_format", m))?;
        }
        let format = match &self.format {
            None => LogFormat::Text,
            Some(v) => match v.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    let message = format!("expected \"text\" or \"json\", got `{other}`");
                    return Err(doc.error(v, "log.format", message));
                }
            },
        };
        let dest = match &self.dest {
            None => None,
            Some(v) => {
                let items = match v.get_ref() {
                    OneOrMany::One(one) => vec![one.clone()],
                    OneOrMany::Many(many) => many.clone(),
                };
                let mut dests = Vec::new();
                for item in items {
                    let dest = match item.as_str() {
                        "stdout" => LogDest::Stdout,
                        "stderr" => LogDest::Stderr,
                        "syslog" => LogDest::Syslog,
                        "none" => continue,
                        other => match other.strip_prefix("file:") {
                            Some(path) if !path.trim().is_empty() => {
                                LogDest::File(relative_to(doc.path, Path::new(path)))
                            }
                            _ => {
                                let message = format!(
                                    "expected \"stdout\", \"stderr\", \"syslog\", \"none\" \
                                     or \"file:PATH\", got `{other}`"
                                );
                                return Err(doc.error(v, "log.dest", message));
                            }
                        },
                    };
                    if !dests.contains(&dest) {
                        dests.push(dest);
                    }
                }
                Some(dests)
            }
        };
        let mut redact = Redact::default();
        if let Some(list) = &self.redact {
            for item in list.get_ref() {
                redact
                    .add(item.get_ref())
                    .map_err(|m| doc.error(item, "log.redact", m))?;
            }
        }
        let facility = match &self.syslog_facility {
            None => None,
            Some(v) => {
                let message = |n| format!("must be between 0 and 7 (local0 to local7), not {n}");
                Some(doc.ranged(v, "log.syslog_facility", 0, 7, message)?)
            }
        };
        Ok(LogConfig {
            level: self.level.map(Spanned::into_inner),
            connection_messages: self.connection_messages,
            timestamps: self.timestamps,
            timestamp_format: self.timestamp_format.map(Spanned::into_inner),
            format,
            dest,
            redact,
            facility,
        })
    }
}

/// Checks a `tracing` filter. `EnvFilter` alone would accept a misspelt level such as `inf` as
/// the name of a target, so a directive without `=` must be a level name.
fn check_log_filter(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let expected = "expected error, warn, info, debug, trace, off or directives such as \
                    `tern=debug`";
    if filter.trim().is_empty() {
        return Err(format!("{expected}, got an empty string"));
    }
    for directive in filter.split(',').map(str::trim) {
        let is_level = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive));
        if !is_level && !directive.contains('=') {
            return Err(format!("{expected}, got `{directive}`"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|e| format!("invalid log filter `{filter}`: {e}"))
}

fn validate_listeners(
    doc: &Doc<'_>,
    raw: Vec<Table<RawListener>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let mut listeners = Vec::with_capacity(raw.len());
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    let mut seen_unix: HashMap<PathBuf, usize> = HashMap::new();
    for (i, Table(listener)) in raw.into_iter().enumerate() {
        let key = format!("listeners[{i}].address");
        let bind = listen_address(doc, i, &listener)?;
        let first = match &bind {
            // Port 0 asks the system for a free port: two of them never collide.
            ListenAddr::Tcp(addr) if addr.port() == 0 => None,
            ListenAddr::Tcp(addr) => seen.insert(*addr, i),
            ListenAddr::Unix(unix) => seen_unix.insert(unix.path.clone(), i),
        };
        if let Some(first) = first {
            let message = format!("{bind} is already the address of `listeners[{first}]`");
            return Err(doc.error(&listener.address, &key, message));
        }
        let max_connections = match &listener.max_connections {
            None => None,
            Some(v) => {
                let key = format!("listeners[{i}].max_connections");
                let message =
                    |n| format!("must be at least 1 (leave it out for no limit), not {n}");
                Some(doc.ranged(v, &key, 1, i64::MAX, message)?)
            }
        };
        let tls = match &listener.tls {
            None => None,
            Some(table) => Some(validate_tls(doc, i, table)?),
        };
        let mut settings = validate_listener_settings(doc, i, &listener, warnings)?;
        settings.proxy_protocol = validate_proxy_protocol(doc, i, &listener)?;
        let websocket = validate_websocket(doc, i, &listener)?;
        listeners.push(ListenerConfig {
            bind,
            max_connections,
            tls,
            websocket,
            settings,
        });
    }
    Ok(listeners)
}

/// A listener's `address` (`HOST:PORT`, or `unix:PATH`, a path relative to the file's
/// directory) and, for a Unix socket, its `unix_mode`.
fn listen_address(
    doc: &Doc<'_>,
    index: usize,
    raw: &RawListener,
) -> Result<ListenAddr, ConfigError> {
    let key = |name: &str| format!("listeners[{index}].{name}");
    let text = raw.address.get_ref();
    let Some(path) = text.strip_prefix("unix:") else {
        if let Some(v) = &raw.unix_mode {
            let message = "only Unix socket listeners take this key (`address = \"unix:PATH\"`)";
            return Err(doc.error(v, &key("unix_mode"), message));
        }
        let bind = parse_address(text).map_err(|m| doc.error(&raw.address, &key("address"), m))?;
        return Ok(ListenAddr::Tcp(bind));
    };
    check_unix_path(Path::new(path)).map_err(|m| doc.error(&raw.address, &key("address"), m))?;
    let path = relative_to(doc.path, Path::new(path));
    check_unix_path(&path).map_err(|m| doc.error(&raw.address, &key("address"), m))?;
    let mode = match &raw.unix_mode {
        None => None,
        Some(v) => {
            Some(parse_unix_mode(&v.get_ref().0).map_err(|m| doc.error(v, &key("unix_mode"), m))?)
        }
    };
    Ok(ListenAddr::Unix(UnixSocketConfig { path, mode }))
}

/// A listener's `proxy_protocol` and `proxy_protocol_require_tls`.
fn validate_proxy_protocol(
    doc: &Doc<'_>,
    index: usize,
    raw: &RawListener,
) -> Result<Option<ProxyProtocol>, ConfigError> {
    let key = |name: &str| format!("listeners[{index}].{name}");
    let versions = match &raw.proxy_protocol {
        None => None,
        Some(v) => match v.get_ref() {
            ProxyValue::On(false) => None,
            ProxyValue::On(true) => Some(ProxyVersions::Both),
            ProxyValue::Version(1) => Some(ProxyVersions::V1),
            ProxyValue::Version(2) => Some(ProxyVersions::V2),
            ProxyValue::Version(n) => {
                let message = format!("expected true, false, 1 or 2, got {n}");
                return Err(doc.error(v, &key("proxy_protocol"), message));
            }
        },
    };
    let require_tls = raw
        .proxy_protocol_require_tls
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    if let Some(v) = &raw.proxy_protocol_require_tls
        && *v.get_ref()
        && !matches!(versions, Some(ProxyVersions::Both | ProxyVersions::V2))
    {
        let message = "needs `proxy_protocol = true` or `2`: only a version 2 header says whether \
                       the client used TLS";
        return Err(doc.error(v, &key("proxy_protocol_require_tls"), message));
    }
    Ok(versions.map(|versions| ProxyProtocol {
        versions,
        require_tls,
    }))
}

/// A listener's `protocol`, and for a WebSocket listener its `path` and `upgrade_timeout`.
fn validate_websocket(
    doc: &Doc<'_>,
    index: usize,
    raw: &RawListener,
) -> Result<Option<WebSocketSettings>, ConfigError> {
    let key = |name: &str| format!("listeners[{index}].{name}");
    let websocket = match &raw.protocol {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "mqtt" => false,
            "websockets" => true,
            other => {
                let message = format!("expected \"mqtt\" or \"websockets\", got \"{other}\"");
                return Err(doc.error(v, &key("protocol"), message));
            }
        },
    };
    if !websocket {
        let only = "only WebSocket listeners take this key (add `protocol = \"websockets\"`)";
        if let Some(v) = &raw.path {
            return Err(doc.error(v, &key("path"), only));
        }
        if let Some(v) = &raw.upgrade_timeout {
            return Err(doc.error(v, &key("upgrade_timeout"), only));
        }
        return Ok(None);
    }
    let mut settings = WebSocketSettings::default();
    if let Some(v) = &raw.path {
        check_path(v.get_ref()).map_err(|m| doc.error(v, &key("path"), m))?;
        settings.path = Some(v.get_ref().clone());
    }
    if let Some(v) = &raw.upgrade_timeout {
        let timeout = doc.duration(v, &key("upgrade_timeout"))?;
        if timeout.is_zero() {
            return Err(doc.error(v, &key("upgrade_timeout"), "must be longer than zero"));
        }
        settings.upgrade_timeout = Some(timeout);
    }
    Ok(Some(settings))
}

/// A listener's protocol versions, mount point and own security settings, its files read.
fn validate_listener_settings(
    doc: &Doc<'_>,
    index: usize,
    raw: &RawListener,
    warnings: &mut Vec<String>,
) -> Result<ListenerSettings, ConfigError> {
    let key = |name: &str| format!("listeners[{index}].{name}");
    let mut settings = ListenerSettings {
        allow_anonymous: raw.allow_anonymous,
        allow_zero_length_clientid: raw.allow_zero_length_clientid,
        auto_id_prefix: raw.auto_id_prefix.clone(),
        ..ListenerSettings::default()
    };
    if let Some(list) = &raw.protocol_versions {
        let mut versions = ProtocolVersions::NONE;
        for (j, entry) in list.get_ref().iter().enumerate() {
            let token = match &entry.get_ref().0 {
                Scalar::Int(n) => VersionToken::Level(*n),
                Scalar::Text(name) => VersionToken::Name(name),
            };
            let version = parse_protocol_version(token)
                .map_err(|m| doc.error(entry, &key(&format!("protocol_versions[{j}]")), m))?;
            versions = versions.with(version);
        }
        if versions.is_empty() {
            let message = "must name at least one version (leave it out to accept every version)";
            return Err(doc.error(list, &key("protocol_versions"), message));
        }
        settings.protocol_versions = Some(versions);
    }
    if let Some(v) = &raw.mount_point {
        let text = v.get_ref();
        check_mount_point(text).map_err(|m| doc.error(v, &key("mount_point"), m))?;
        if let Some(message) = mount_point_warning(text) {
            warnings.push(doc.error(v, &key("mount_point"), message).to_string());
        }
        settings.mount_point = Some(text.clone());
    }
    if let Some(v) = &raw.password_file {
        let path = relative_to(doc.path, Path::new(v.get_ref()));
        let unreadable = |m| doc.error(v, &key("password_file"), m);
        settings.password_file = Some(super::load_password_file(&path, unreadable)?);
    }
    if let Some(v) = &raw.acl_file {
        let path = relative_to(doc.path, Path::new(v.get_ref()));
        let acl = load_acl(&path, warnings, |m| doc.error(v, &key("acl_file"), m))?;
        settings.acl_file = Some(LoadedFile {
            path,
            contents: acl,
        });
    }
    Ok(settings)
}

/// Validates a listener's `tls` table and reads its files (certificates, key, CAs, CRLs), so
/// that a file that cannot be used stops the start with the key that names it.
fn validate_tls(
    doc: &Doc<'_>,
    index: usize,
    table: &Spanned<Table<RawTls>>,
) -> Result<TlsConfig, ConfigError> {
    let raw = &table.get_ref().0;
    let key = |name: &str| format!("listeners[{index}].tls.{name}");
    let path = |v: &Spanned<String>| relative_to(doc.path, Path::new(v.get_ref()));
    let (Some(certfile), Some(keyfile)) = (&raw.certfile, &raw.keyfile) else {
        let missing = if raw.certfile.is_none() {
            "certfile"
        } else {
            "keyfile"
        };
        let message = "this required key is missing: a TLS listener needs both `certfile` and \
                       `keyfile`";
        return Err(doc.error(table, &key(missing), message));
    };
    let mut tls = TlsConfig::new(path(certfile), path(keyfile));
    tls.cafile = raw.cafile.as_ref().map(path);
    tls.capath = raw.capath.as_ref().map(path);
    tls.crlfile = raw.crlfile.as_ref().map(path);
    tls.require_certificate = raw
        .require_certificate
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    let identity = raw
        .use_identity_as_username
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    let subject = raw
        .use_subject_as_username
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    if identity
        && let Some(v) = raw
            .use_subject_as_username
            .as_ref()
            .filter(|v| *v.get_ref())
    {
        let message = "contradicts `use_identity_as_username = true`: set only one";
        return Err(doc.error(v, &key("use_subject_as_username"), message));
    }
    tls.identity = if identity {
        CertificateIdentity::CommonName
    } else if subject {
        CertificateIdentity::Subject
    } else {
        CertificateIdentity::None
    };
    if let Some(v) = &raw.tls_version {
        tls.min_version = match TlsVersion::parse(v.get_ref()) {
            Ok(version) => version,
            Err(e) => return Err(doc.error(v, &key("tls_version"), e.message(v.get_ref()))),
        };
    }
    tls.ciphers = raw.ciphers.as_ref().map(|v| v.get_ref().clone());
    tls.ciphers_tls13 = raw.ciphers_tls13.as_ref().map(|v| v.get_ref().clone());
    if let Some(v) = &raw.handshake_timeout {
        let timeout = doc.duration(v, &key("handshake_timeout"))?;
        if timeout.is_zero() {
            return Err(doc.error(v, &key("handshake_timeout"), "must be longer than zero"));
        }
        tls.handshake_timeout = Some(timeout);
    }
    tls.check().map_err(|e| {
        let line = match e.key {
            TlsKey::Certfile => Some(certfile.span()),
            TlsKey::Keyfile => Some(keyfile.span()),
            TlsKey::Cafile => raw.cafile.as_ref().map(Spanned::span),
            TlsKey::Capath => raw.capath.as_ref().map(Spanned::span),
            TlsKey::Crlfile => raw.crlfile.as_ref().map(Spanned::span),
            TlsKey::RequireCertificate => raw.require_certificate.as_ref().map(Spanned::span),
            TlsKey::UseIdentityAsUsername => {
                raw.use_identity_as_username.as_ref().map(Spanned::span)
            }
            TlsKey::UseSubjectAsUsername => raw.use_subject_as_username.as_ref().map(Spanned::span),
            TlsKey::Ciphers => raw.ciphers.as_ref().map(Spanned::span),
            TlsKey::CiphersTls13 => raw.ciphers_tls13.as_ref().map(Spanned::span),
            TlsKey::TlsVersion => raw.tls_version.as_ref().map(Spanned::span),
        }
        .unwrap_or_else(|| table.span());
        ConfigError::at(
            doc.path,
            doc.line(line.start),
            &key(e.key.toml_name()),
            e.to_string(),
        )
    })?;
    Ok(tls)
}

/// Parses `HOST:PORT`: an IP address (IPv6 in brackets), `localhost`, or a name to look up.
fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = || {
        format!(
            "expected HOST:PORT such as `0.0.0.0:1883`, `[::]:1883` or `localhost:1883`, got \
             `{text}`"
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port = port.parse::<u16>().map_err(|_| expected())?;
    // An unbracketed IPv6 address is ambiguous with the port separator.
    if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
        return Err(expected());
    }
    resolve_host(host, port, None)
}

impl RawMqtt {
    /// The numeric limits.
    fn apply_limits(&self, doc: &Doc<'_>, broker: &mut BrokerConfig) -> Result<(), ConfigError> {
        let between = |lo: i64, hi: i64| move |n| format!("must be between {lo} and {hi}, not {n}");
        let not_negative = |n| format!("must be 0 (no limit) or more, not {n}");
        if let Some(v) = &self.max_packet_size {
            let key = "mqtt.max_packet_size";
            let bytes = doc.size(v, key)?;
            broker.max_packet_size = u32::try_from(bytes)
                .ok()
                .filter(|b| (MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(b))
                .ok_or_else(|| {
                    let message = format!(
                        "must be between {MIN_PACKET_SIZE} and {MAX_PACKET_SIZE} bytes, not {bytes}"
                    );
                    doc.error(v, key, message)
                })?;
        }
        if let Some(v) = &self.max_inflight_messages {
            let key = "mqtt.max_inflight_messages";
            broker.max_inflight_messages = doc.ranged(v, key, 1, 65535, between(1, 65535))?;
        }
        if let Some(v) = &self.receive_maximum {
            let key = "mqtt.receive_maximum";
            broker.receive_maximum = doc.ranged(v, key, 1, 65535, between(1, 65535))?;
        }
        if let Some(v) = &self.max_queued_messages {
            let key = "mqtt.max_queued_messages";
            broker.max_queued_messages = doc.ranged(v, key, 0, i64::MAX, not_negative)?;
        }
        if let Some(v) = &self.max_queued_bytes {
            let bytes = doc.size(v, "mqtt.max_queued_bytes")?;
            broker.max_queued_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(v) = &self.max_total_queued_bytes {
            let bytes = doc.size(v, "mqtt.max_total_queued_bytes")?;
            broker.max_total_queued_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        if let Some(v) = &self.max_keepalive {
            let key = "mqtt.max_keepalive";
            broker.max_keepalive = doc.ranged(v, key, 1, 65535, between(1, 65535))?;
        }
        if let Some(v) = &self.max_topic_alias {
            let key = "mqtt.max_topic_alias";
            broker.max_topic_alias = doc.ranged(v, key, 0, 65535, between(0, 65535))?;
        }
        if let Some(v) = &self.max_topic_levels {
            let key = "mqtt.max_topic_levels";
            broker.max_topic_levels = doc.ranged(v, key, 1, 4096, between(1, 4096))?;
        }
        if let Some(v) = &self.max_topic_length {
            let key = "mqtt.max_topic_length";
            broker.max_topic_length = doc.ranged(v, key, 1, 65535, between(1, 65535))?;
        }
        if let Some(v) = &self.max_client_id_length {
            let key = "mqtt.max_client_id_length";
            broker.max_client_id_length = doc.ranged(v, key, 1, 65535, between(1, 65535))?;
        }
        if let Some(v) = &self.max_subscriptions {
            let key = "mqtt.max_subscriptions";
            broker.max_subscriptions = doc.ranged(v, key, 0, i64::MAX, not_negative)?;
        }
        Ok(())
    }

    /// Everything that is not a numeric limit.
    fn apply_options(&self, doc: &Doc<'_>, broker: &mut BrokerConfig) -> Result<(), ConfigError> {
        if let Some(v) = &self.max_qos {
            let message = |n| format!("must be 0, 1 or 2, not {n}");
            let qos: u8 = doc.ranged(v, "mqtt.max_qos", 0, 2, message)?;
            broker.max_qos = QoS::from_u8(qos).unwrap_or(QoS::ExactlyOnce);
        }
        if let Some(v) = &self.persistent_client_expiration {
            let key = "mqtt.persistent_client_expiration";
            let expiration = doc.duration(v, key)?;
            if expiration.is_zero() {
                let message = "must be longer than zero (leave it out to keep sessions as long as \
                               their clients ask)";
                return Err(doc.error(v, key, message));
            }
            broker.persistent_client_expiration = Some(expiration);
        }
        if let Some(v) = &self.connect_timeout {
            let timeout = doc.duration(v, "mqtt.connect_timeout")?;
            if timeout.is_zero() {
                return Err(doc.error(v, "mqtt.connect_timeout", "must be longer than zero"));
            }
            broker.connect_timeout = timeout;
        }
        if let Some(v) = self.queue_qos0_messages {
            broker.queue_qos0_messages = v;
        }
        if let Some(v) = self.retain_available {
            broker.retain_available = v;
        }
        if let Some(v) = self.allow_zero_length_clientid {
            broker.allow_zero_length_clientid = v;
        }
        if let Some(v) = &self.auto_id_prefix {
            broker.auto_id_prefix.clone_from(v);
        }
        if let Some(list) = &self.clientid_prefixes {
            let key = "mqtt.clientid_prefixes";
            if list.get_ref().is_empty() {
                let message = "must not be empty: it would refuse every client id (leave it \
                               out to allow every client id)";
                return Err(doc.error(list, key, message));
            }
            for (i, prefix) in list.get_ref().iter().enumerate() {
                if prefix.get_ref().is_empty() {
                    let message = "must not be empty: it would allow every client id";
                    return Err(doc.error(prefix, &format!("{key}[{i}]"), message));
                }
            }
            broker.clientid_prefixes = list.get_ref().iter().map(|p| p.get_ref().clone()).collect();
        }
        Ok(())
    }
}

impl RawLimits {
    /// The connection limits; the message rate and bandwidth go to `broker`.
    fn validate(
        self,
        doc: &Doc<'_>,
        broker: &mut BrokerConfig,
    ) -> Result<ConnectionLimits, ConfigError> {
        let at_least_one = |n| format!("must be at least 1 (leave it out for no limit), not {n}");
        let mut limits = ConnectionLimits::default();
        if let Some(v) = &self.max_connections {
            let key = "limits.max_connections";
            limits.max_connections = Some(doc.ranged(v, key, 1, i64::MAX, at_least_one)?);
        }
        if let Some(v) = &self.max_connections_per_ip {
            let key = "limits.max_connections_per_ip";
            limits.max_connections_per_ip = Some(doc.ranged(v, key, 1, i64::MAX, at_least_one)?);
        }
        let count = |v: &Spanned<RateValue>, key: &str| doc.rate(v, &v.get_ref().0, key, false);
        let connect_rate = self
            .connect_rate
            .as_ref()
            .map(|v| count(v, "limits.connect_rate"));
        limits.connect_rate = doc.rate_limit(
            connect_rate.transpose()?,
            self.connect_burst.as_ref(),
            ("limits.connect_rate", "limits.connect_burst"),
        )?;
        let message_rate = self
            .message_rate
            .as_ref()
            .map(|v| count(v, "limits.message_rate"));
        broker.message_rate = doc.rate_limit(
            message_rate.transpose()?,
            self.message_burst.as_ref(),
            ("limits.message_rate", "limits.message_burst"),
        )?;
        let bandwidth = self
            .bandwidth
            .as_ref()
            .map(|v| doc.rate(v, &v.get_ref().0, "limits.bandwidth", true))
            .transpose()?;
        broker.bandwidth = match (bandwidth, &self.bandwidth_burst) {
            (Some((amount, per)), burst) if amount > 0 => {
                let mut limit = RateLimit::new(amount, per);
                if let Some(v) = burst {
                    let key = "limits.bandwidth_burst";
                    limit.burst = doc.size(v, key)?;
                    if limit.burst == 0 {
                        return Err(doc.error(v, key, "must be at least 1 byte"));
                    }
                }
                Some(limit)
            }
            (None, Some(v)) => {
                let message = "needs `limits.bandwidth`, the rate it is the burst of";
                return Err(doc.error(v, "limits.bandwidth_burst", message));
            }
            _ => None,
        };
        if let Some(v) = &self.rate_exceeded {
            broker.rate_exceeded = match v.get_ref().as_str() {
                "pause" => RateExceeded::Pause,
                "disconnect" => RateExceeded::Disconnect,
                other => {
                    let message = format!("expected \"pause\" or \"disconnect\", got `{other}`");
                    return Err(doc.error(v, "limits.rate_exceeded", message));
                }
            };
        }
        Ok(limits)
    }
}

/// Parses a size: a number of bytes, optionally followed by a unit, `B`, `KB`/`MB`/`GB` (powers
/// of 1000) or `KiB`/`MiB`/`GiB` (powers of 1024), in any case, with or without a space.
fn parse_size(text: &str) -> Result<u64, String> {
    let invalid =
        || format!("expected a size such as `65536`, `256KiB`, `1MiB` or `10MB`, got `{text}`");
    let trimmed = text.trim();
    let digits_len = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_len);
    if digits.is_empty() {
        return Err(invalid());
    }
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return Err(invalid()),
    };
    let too_large = || format!("the size `{text}` is too large");
    let number = digits.parse::<u64>().map_err(|_| too_large())?;
    number.checked_mul(multiplier).ok_or_else(too_large)
}

// ---------------------------------------------------------------------------------------------
// `[auth.jwt]` and `[auth.http]`: authentication sources besides `password_file`.

/// `[auth]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    jwt: Option<Spanned<Table<RawJwt>>>,
    http: Option<Spanned<Table<RawHttpHook>>>,
}

/// `[auth.jwt]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    algorithm: Spanned<String>,
    secret: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    public_key_file: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    require_exp: Option<bool>,
    leeway: Option<Spanned<DurationValue>>,
    issuer: Option<Spanned<OneOrMany>>,
    audience: Option<Spanned<OneOrMany>>,
    verify_claims: Option<Spanned<StringTable>>,
}

/// `[auth.http]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpHook {
    url: Spanned<String>,
    timeout: Option<Spanned<DurationValue>>,
    headers: Option<Spanned<StringTable>>,
    cache_ttl: Option<Spanned<DurationValue>>,
    cache_size: Option<Spanned<Int>>,
    cafile: Option<Spanned<String>>,
    capath: Option<Spanned<String>>,
    certfile: Option<Spanned<String>>,
    keyfile: Option<Spanned<String>>,
}

/// A table of strings, each with its place in the file.
type StringTable = Table<std::collections::BTreeMap<String, Spanned<String>>>;

/// A string, or an array of strings.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string or an array of strings")]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl RawAuth {
    fn validate(self, doc: &Doc<'_>, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(table) = &self.jwt {
            config.jwt = Some(std::sync::Arc::new(validate_jwt(
                doc,
                table,
                &mut config.warnings,
            )?));
        }
        if let Some(table) = &self.http {
            config.http_auth = Some(std::sync::Arc::new(validate_http_hook(doc, table)?));
        }
        Ok(())
    }
}

fn validate_jwt(
    doc: &Doc<'_>,
    table: &Spanned<Table<RawJwt>>,
    warnings: &mut Vec<String>,
) -> Result<crate::auth::jwt::JwtAuth, ConfigError> {
    use crate::auth::jwt::{JwtAuth, JwtKeySource, JwtSettings, TokenField, parse_algorithm};
    let raw = &table.get_ref().0;
    let key = |name: &str| format!("auth.jwt.{name}");
    let path = |v: &Spanned<String>| relative_to(doc.path, Path::new(v.get_ref()));
    let algorithm = parse_algorithm(raw.algorithm.get_ref())
        .map_err(|m| doc.error(&raw.algorithm, &key("algorithm"), m))?;
    let sources = [
        ("secret", &raw.secret),
        ("secret_file", &raw.secret_file),
        ("public_key_file", &raw.public_key_file),
    ];
    let mut given = sources
        .iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (*n, v)));
    let source = match (given.next(), given.next()) {
        (None, _) => {
            let (missing, message) = if algorithm.family() == jsonwebtoken::AlgorithmFamily::Hmac {
                (
                    "secret",
                    "this required key is missing: set `secret` or `secret_file`",
                )
            } else {
                ("public_key_file", "this required key is missing")
            };
            return Err(doc.error(table, &key(missing), message));
        }
        (Some((first, _)), Some((second, v))) => {
            let message = format!("contradicts `{first}`: set only one key source");
            return Err(doc.error(v, &key(second), message));
        }
        (Some(("secret", v)), None) => JwtKeySource::Secret(v.get_ref().as_bytes().to_vec()),
        (Some(("secret_file", v)), None) => JwtKeySource::SecretFile(path(v)),
        (Some((_, v)), None) => JwtKeySource::PublicKeyFile(path(v)),
    };
    let mut settings = JwtSettings::new(algorithm, source);
    if let Some(v) = &raw.from {
        settings.from = match v.get_ref().as_str() {
            "password" => TokenField::Password,
            "username" => TokenField::Username,
            other => {
                let message = format!("expected \"password\" or \"username\", got `{other}`");
                return Err(doc.error(v, &key("from"), message));
            }
        };
    }
    if let Some(v) = raw.require_exp {
        settings.require_exp = v;
    }
    if let Some(v) = &raw.leeway {
        settings.leeway = doc.duration(v, &key("leeway"))?;
    }
    let strings = |v: &Spanned<OneOrMany>, name: &str| -> Result<Vec<String>, ConfigError> {
        let list = match v.get_ref() {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(list) => list.clone(),
        };
        if list.is_empty() || list.iter().any(String::is_empty) {
            let message = "must name at least one value, and no empty string";
            return Err(doc.error(v, &key(name), message));
        }
        Ok(list)
    };
    if let Some(v) = &raw.issuer {
        settings.issuers = strings(v, "issuer")?;
    }
    if let Some(v) = &raw.audience {
        settings.audiences = strings(v, "audience")?;
    }
    if let Some(v) = &raw.verify_claims {
        settings.verify_claims = v
            .get_ref()
            .0
            .iter()
            .map(|(claim, template)| (claim.clone(), template.get_ref().clone()))
            .collect();
    }
    let auth = JwtAuth::new(settings).map_err(|e| {
        let span = match e.key.as_str() {
            "algorithm" => Some(raw.algorithm.span()),
            "secret" => raw.secret.as_ref().map(Spanned::span),
            "secret_file" => raw.secret_file.as_ref().map(Spanned::span),
            "public_key_file" => raw.public_key_file.as_ref().map(Spanned::span),
            other => other.strip_prefix("verify_claims.").and_then(|claim| {
                let claims = raw.verify_claims.as_ref()?;
                Some(
                    claims
                        .get_ref()
                        .0
                        .get(claim)
                        .map_or(claims.span(), Spanned::span),
                )
            }),
        }
        .unwrap_or_else(|| table.span());
        ConfigError::at(doc.path, doc.line(span.start), &key(&e.key), e.message)
    })?;
    for (name, message) in auth.warnings() {
        let span = raw
            .secret
            .as_ref()
            .or(raw.secret_file.as_ref())
            .map_or_else(|| table.span(), Spanned::span);
        let located = ConfigError::at(doc.path, doc.line(span.start), &key(name), message.clone());
        warnings.push(located.to_string());
    }
    Ok(auth)
}

fn validate_http_hook(
    doc: &Doc<'_>,
    table: &Spanned<Table<RawHttpHook>>,
) -> Result<crate::auth::http_hook::HttpHook, ConfigError> {
    use crate::auth::http_hook::{HttpHook, HttpHookSettings};
    let raw = &table.get_ref().0;
    let key = |name: &str| format!("auth.http.{name}");
    let path = |v: &Option<Spanned<String>>| {
        v.as_ref()
            .map(|v| relative_to(doc.path, Path::new(v.get_ref())))
    };
    let mut settings = HttpHookSettings::new(raw.url.get_ref().clone());
    if let Some(v) = &raw.timeout {
        // Whole seconds or a duration; milliseconds too (`500ms`), as hooks answer fast.
        settings.timeout = match v.get_ref() {
            DurationValue(Scalar::Text(text)) if text.trim_end().ends_with("ms") => {
                parse_short_duration(text).map_err(|m| doc.error(v, &key("timeout"), m))?
            }
            _ => doc.duration(v, &key("timeout"))?,
        };
    }
    if let Some(v) = &raw.cache_ttl {
        settings.cache_ttl = doc.duration(v, &key("cache_ttl"))?;
    }
    if let Some(v) = &raw.cache_size {
        let message = |n| format!("must be 0 (no cache) or more, not {n}");
        settings.cache_size = doc.ranged(v, &key("cache_size"), 0, i64::from(u32::MAX), message)?;
    }
    if let Some(v) = &raw.headers {
        settings.headers = v
            .get_ref()
            .0
            .iter()
            .map(|(name, value)| (name.clone(), value.get_ref().clone()))
            .collect();
    }
    settings.cafile = path(&raw.cafile);
    settings.capath = path(&raw.capath);
    settings.certfile = path(&raw.certfile);
    settings.keyfile = path(&raw.keyfile);
    HttpHook::new(settings).map_err(|e| {
        let span = match e.key.as_str() {
            "url" => Some(raw.url.span()),
            "timeout" => raw.timeout.as_ref().map(Spanned::span),
            "cafile" => raw.cafile.as_ref().map(Spanned::span),
            "capath" => raw.capath.as_ref().map(Spanned::span),
            "certfile" => raw.certfile.as_ref().map(Spanned::span),
            "keyfile" => raw.keyfile.as_ref().map(Spanned::span),
            other => other.strip_prefix("headers.").and_then(|name| {
                let headers = raw.headers.as_ref()?;
                Some(
                    headers
                        .get_ref()
                        .0
                        .get(name)
                        .map_or(headers.span(), Spanned::span),
                )
            }),
        }
        .unwrap_or_else(|| table.span());
        ConfigError::at(doc.path, doc.line(span.start), &key(&e.key), e.message)
    })
}

// ---------------------------------------------------------------------------------------------
// Locating errors.

/// The document being read, to turn byte offsets into lines.
pub(super) struct Doc<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Doc<'_> {
    /// The 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    pub(super) fn error<T>(
        &self,
        value: &Spanned<T>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::at(self.path, self.line(value.span().start), key, message)
    }

    /// An integer in `lo..=hi`, converted to the field's type; `message` describes the range
    /// for a value outside it.
    pub(super) fn ranged<T: TryFrom<i64>>(
        &self,
        value: &Spanned<Int>,
        key: &str,
        lo: i64,
        hi: i64,
        message: impl Fn(i64) -> String,
    ) -> Result<T, ConfigError> {
        let n = value.get_ref().0;
        if !(lo..=hi).contains(&n) {
            return Err(self.error(value, key, message(n)));
        }
        T::try_from(n).map_err(|_| self.error(value, key, message(n)))
    }

    /// A rate: an integer per second, or a string for [`parse_rate`] (of bytes when `bytes`).
    fn rate<T>(
        &self,
        value: &Spanned<T>,
        scalar: &Scalar,
        key: &str,
        bytes: bool,
    ) -> Result<(u64, Duration), ConfigError> {
        match scalar {
            Scalar::Int(n) => u64::try_from(*n)
                .map(|n| (n, Duration::from_secs(1)))
                .map_err(|_| self.error(value, key, format!("must not be negative, not {n}"))),
            Scalar::Text(text) if bytes => {
                parse_rate(text, parse_size, "`64KiB/s`").map_err(|m| self.error(value, key, m))
            }
            Scalar::Text(text) => parse_rate(text, parse_count, "`10/s` or `30/m`")
                .map_err(|m| self.error(value, key, m)),
        }
    }

    /// A rate limit of connections or messages from its rate (`None` if absent, a rate of 0
    /// means no limit) and its burst (one period's worth by default). `keys` names the two.
    fn rate_limit(
        &self,
        rate: Option<(u64, Duration)>,
        burst: Option<&Spanned<Int>>,
        keys: (&str, &str),
    ) -> Result<Option<RateLimit>, ConfigError> {
        let (rate_key, burst_key) = keys;
        let limit = match rate {
            Some((amount, per)) if amount > 0 => RateLimit::new(amount, per),
            Some(_) => return Ok(None),
            None => {
                if let Some(v) = burst {
                    let message = format!("needs `{rate_key}`, the rate it is the burst of");
                    return Err(self.error(v, burst_key, message));
                }
                return Ok(None);
            }
        };
        let burst = match burst {
            Some(v) => {
                let message = |n| format!("must be at least 1, not {n}");
                self.ranged(v, burst_key, 1, i64::MAX, message)?
            }
            None => limit.burst,
        };
        Ok(Some(RateLimit { burst, ..limit }))
    }

    pub(super) fn duration(
        &self,
        value: &Spanned<DurationValue>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        match &value.get_ref().0 {
            Scalar::Int(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| self.error(value, key, format!("must not be negative, not {n}"))),
            Scalar::Text(text) => parse_duration(text).map_err(|m| self.error(value, key, m)),
        }
    }

    /// A size in bytes, from an integer or a string with a unit.
    fn size(&self, value: &Spanned<SizeValue>, key: &str) -> Result<u64, ConfigError> {
        match &value.get_ref().0 {
            Scalar::Int(n) => u64::try_from(*n)
                .map_err(|_| self.error(value, key, format!("must not be negative, not {n}"))),
            Scalar::Text(text) => parse_size(text).map_err(|m| self.error(value, key, m)),
        }
    }

    /// An error of the TOML parser: bad syntax, or a key defined twice.
    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span();
        let key = match &span {
            Some(span) if error.message() == "duplicate key" => self.duplicate_key_path(span),
            _ => None,
        };
        ConfigError {
            file: self.path.to_owned(),
            line: span.map(|s| self.line(s.start)),
            key,
            message: error.message().to_owned(),
        }
    }

    /// The dotted path of the duplicate key at `span`. The document did not parse, so there is
    /// no tree to walk: the path is rebuilt from the text, with the last table header before
    /// the key (or the header itself, when a table is defined twice).
    fn duplicate_key_path(&self, span: &std::ops::Range<usize>) -> Option<String> {
        let name = self.text.get(span.clone())?.trim();
        let line_start = self
            .text
            .get(..span.start)?
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let this_line = self.text[line_start..]
            .lines()
            .next()
            .unwrap_or_default()
            .trim();
        if this_line.starts_with('[') {
            return Some(header_name(this_line));
        }
        let before = &self.text[..line_start];
        let Some(header) = before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
        else {
            return Some(name.to_owned());
        };
        let table = header_name(header);
        if header.starts_with("[[") {
            // An array of tables: name the entry, as the other errors do.
            let index = before
                .lines()
                .map(str::trim)
                .filter(|l| *l == header)
                .count()
                .saturating_sub(1);
            return Some(format!("{table}[{index}].{name}"));
        }
        Some(format!("{table}.{name}"))
    }

    /// An error from deserializing the parsed document: unknown key, missing key, wrong type.
    fn schema_error(&self, error: &toml::de::Error, root: &DeTable<'_>) -> ConfigError {
        let span = error.span();
        let message = error.message();
        let of_array = message.starts_with("invalid type: sequence");
        let mut key = span
            .as_ref()
            .and_then(|s| key_path_at(root, s.start, of_array));
        let message = if let Some(rest) = message.strip_prefix("unknown field `") {
            // "unknown field `x`, expected one of ..." where `x` is already the key.
            let after_name = rest.split_once('`').map_or("", |(_, after)| after);
            format!("unknown key{after_name}")
        } else if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.trim_end_matches('`');
            key = Some(match key {
                Some(table) => format!("{table}.{field}"),
                None => field.to_owned(),
            });
            "this required key is missing".to_owned()
        } else {
            expected_first(message)
        };
        ConfigError {
            file: self.path.to_owned(),
            line: span.map(|s| self.line(s.start)),
            key,
            message,
        }
    }
}

/// Rewrites serde's "invalid type: integer `1`, expected a boolean" as "expected a boolean, got
/// integer `1`", the order every other message of the configuration uses, and names serde's
/// maps and sequences as TOML does: tables and arrays.
fn expected_first(message: &str) -> String {
    let body = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((found, expected)) = body.and_then(|b| b.split_once(", expected ")) else {
        return message.to_owned();
    };
    let found = match found {
        "map" => "a table",
        "sequence" => "an array",
        other => other,
    };
    let expected = if expected == "a sequence" {
        "an array"
    } else {
        expected
    };
    format!("expected {expected}, got {found}")
}

/// `[a.b]`, `[[a.b]]` → `a.b`.
fn header_name(line: &str) -> String {
    let inner = line.trim_start_matches('[');
    inner
        .split(']')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The path (`mqtt.max_qos`, `listeners[1].address`) of the key or value at byte `offset`.
/// The first entry of an array of tables has the span of the whole array (both are its first
/// `[[header]]`), so `of_array` says which of the two the error is about.
fn key_path_at(root: &DeTable<'_>, offset: usize, of_array: bool) -> Option<String> {
    let finder = PathFinder { offset, of_array };
    let mut path = Vec::new();
    finder.in_table(root, &mut path).then(|| path.concat())
}

/// A depth-first search for the key or value at `offset`, building its path.
struct PathFinder {
    offset: usize,
    of_array: bool,
}

impl PathFinder {
    fn in_table(&self, table: &DeTable<'_>, path: &mut Vec<String>) -> bool {
        for (key, value) in table.iter() {
            let segment = if path.is_empty() {
                key.get_ref().to_string()
            } else {
                format!(".{}", key.get_ref())
            };
            path.push(segment);
            if spans(key.span(), self.offset) || self.in_value(value, path) {
                return true;
            }
            path.pop();
        }
        false
    }

    fn in_value(&self, value: &Spanned<DeValue<'_>>, path: &mut Vec<String>) -> bool {
        let is_array = matches!(value.get_ref(), DeValue::Array(_));
        let here = spans(value.span(), self.offset) && (is_array || !self.of_array);
        let found_inside = match value.get_ref() {
            DeValue::Table(table) => self.in_table(table, path),
            DeValue::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(format!("[{i}]"));
                let found = self.in_value(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        };
        // Children first: a table's span (its header) does not cover the keys below it, and a
        // nested key is a better answer than its table.
        found_inside || here
    }
}

/// Whether `span` covers `offset`; an empty span covers its start.
fn spans(span: std::ops::Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("256 kib"), Ok(256 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        let invalid = |t: &str| {
            Err(format!(
                "expected a size such as `65536`, `256KiB`, `1MiB` or `10MB`, got `{t}`"
            ))
        };
        for text in ["", "MiB", "1.5MiB", "1 TB", "-1", "1K", "ten"] {
            assert_eq!(parse_size(text), invalid(text), "input {text:?}");
        }
        assert_eq!(
            parse_size("99999999999GiB"),
            Err("the size `99999999999GiB` is too large".to_owned())
        );
    }

    #[test]
    fn short_durations() {
        let us = |n| Ok(Duration::from_micros(n));
        assert_eq!(parse_short_duration("1ms"), us(1000));
        assert_eq!(parse_short_duration("500us"), us(500));
        assert_eq!(parse_short_duration("500µs"), us(500));
        assert_eq!(parse_short_duration("1s"), us(1_000_000));
        assert_eq!(parse_short_duration("1ms500us"), us(1500));
        assert_eq!(parse_short_duration(" 2 ms 5 us "), us(2005));
        assert_eq!(parse_short_duration("0ms"), us(0));
        let invalid = |t: &str| {
            Err(format!(
                "expected a duration such as `1ms`, `500us` or `1s`, got `{t}`"
            ))
        };
        for text in [
            "", " ", "1", "10", "ms", "1.5ms", "-1ms", "1m", "1MS", "1ns", "1ms2",
        ] {
            assert_eq!(parse_short_duration(text), invalid(text), "input {text:?}");
        }
        assert_eq!(
            parse_short_duration("99999999999999999999us"),
            Err("the duration `99999999999999999999us` is too large".to_owned())
        );
        assert_eq!(
            parse_short_duration("18446744073709551s"),
            Err("the duration `18446744073709551s` is too large".to_owned())
        );
    }

    #[test]
    fn serde_messages_are_reordered() {
        assert_eq!(
            expected_first("invalid type: integer `1`, expected a boolean"),
            "expected a boolean, got integer `1`"
        );
        assert_eq!(
            expected_first("invalid type: map, expected a sequence"),
            "expected an array, got a table"
        );
        assert_eq!(
            expected_first("invalid type: sequence, expected a table"),
            "expected a table, got an array"
        );
        assert_eq!(expected_first("something else"), "something else");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("0.0.0.0:1883"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 1883)))
        );
        assert_eq!(
            parse_address("[::1]:8883"),
            "[::1]:8883"
                .parse::<SocketAddr>()
                .map_err(|_| String::new())
        );
        assert_eq!(
            parse_address("localhost:1884"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 1884)))
        );
        assert_eq!(
            parse_address("LOCALHOST:0"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        for text in [
            "1883",
            "::1:1883",
            ":1883",
            "0.0.0.0",
            "0.0.0.0:65536",
            "0.0.0.0:x",
        ] {
            assert_eq!(
                parse_address(text),
                Err(format!(
                    "expected HOST:PORT such as `0.0.0.0:1883`, `[::]:1883` or `localhost:1883`, \
                     got `{text}`"
                )),
                "input {text:?}"
            );
        }
    }

    #[test]
    fn log_filters() {
        assert_eq!(check_log_filter("info"), Ok(()));
        assert_eq!(check_log_filter("WARN"), Ok(()));
        assert_eq!(check_log_filter("info,tern=debug"), Ok(()));
        assert_eq!(check_log_filter("off"), Ok(()));
        let expected = "expected error, warn, info, debug, trace, off or directives such as \
                        `tern=debug`";
        assert_eq!(
            check_log_filter("inf"),
            Err(format!("{expected}, got `inf`"))
        );
        assert_eq!(
            check_log_filter("info,verbose"),
            Err(format!("{expected}, got `verbose`"))
        );
        assert_eq!(
            check_log_filter(" "),
            Err(format!("{expected}, got an empty string"))
        );
        assert!(
            check_log_filter("tern=loud")
                .is_err_and(|e| e.starts_with("invalid log filter `tern=loud`: ")),
        );
    }
}
