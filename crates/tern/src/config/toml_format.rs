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
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tern_codec::{MAX_PACKET_SIZE, QoS};
use tern_core::BrokerConfig;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{
    Config, ConfigError, Durability, ListenerConfig, LogConfig, MIN_PACKET_SIZE, PersistenceConfig,
    load_acl, parse_duration, relative_to, resolve_host,
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
    log: Option<Table<RawLog>>,
    listeners: Option<Vec<Table<RawListener>>>,
    mqtt: Option<Table<RawMqtt>>,
    persistence: Option<Table<RawPersistence>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    connection_messages: Option<bool>,
    timestamps: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Spanned<String>,
    max_connections: Option<Spanned<Int>>,
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
    persistent_client_expiration: Option<Spanned<DurationValue>>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    connect_timeout: Option<Spanned<DurationValue>>,
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
struct Table<T>(T);

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
struct Int(i64);

/// An integer or a string, the two ways to write a duration or a size.
enum Scalar {
    Int(i64),
    Text(String),
}

/// A duration: whole seconds, or a string for [`parse_duration`].
struct DurationValue(Scalar);

/// A size: bytes, or a string with a unit for [`parse_size`].
struct SizeValue(Scalar);

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
        config.listeners = validate_listeners(doc, self.listeners.unwrap_or_default())?;
        if let Some(Table(mqtt)) = self.mqtt {
            mqtt.apply_limits(doc, &mut config.broker)?;
            mqtt.apply_options(doc, &mut config.broker)?;
        }
        if let Some(Table(persistence)) = self.persistence {
            config.persistence = persistence.validate(doc)?;
        }
        if let Some(v) = &self.acl_file {
            // Relative to the directory of this file.
            let path = relative_to(doc.path, Path::new(v.get_ref()));
            let acl = load_acl(&path, &mut config.warnings, |m| doc.error(v, "acl_file", m))?;
            config.broker.acl = Some(acl);
            config.acl_file = Some(path);
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
        if let Some(level) = &self.level {
            check_log_filter(level.get_ref()).map_err(|m| doc.error(level, "log.level", m))?;
        }
        Ok(LogConfig {
            level: self.level.map(Spanned::into_inner),
            connection_messages: self.connection_messages,
            timestamps: self.timestamps,
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
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let mut listeners = Vec::with_capacity(raw.len());
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, Table(listener)) in raw.into_iter().enumerate() {
        let key = format!("listeners[{i}].address");
        let bind = parse_address(listener.address.get_ref())
            .map_err(|m| doc.error(&listener.address, &key, m))?;
        // Port 0 asks the system for a free port: two of them never collide.
        if bind.port() != 0
            && let Some(first) = seen.insert(bind, i)
        {
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
        listeners.push(ListenerConfig {
            bind,
            max_connections,
        });
    }
    Ok(listeners)
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
        Ok(())
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
// Locating errors.

/// The document being read, to turn byte offsets into lines.
struct Doc<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Doc<'_> {
    /// The 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.line(value.span().start), key, message)
    }

    /// An integer in `lo..=hi`, converted to the field's type; `message` describes the range
    /// for a value outside it.
    fn ranged<T: TryFrom<i64>>(
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

    fn duration(&self, value: &Spanned<DurationValue>, key: &str) -> Result<Duration, ConfigError> {
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
