//! Logging: one `tracing` subscriber whose filter and outputs can be replaced while the broker
//! runs (on reload).
//!
//! - The filter is an `EnvFilter` behind `tracing_subscriber::reload`: `--log-level` (or
//!   `TERN_LOG_LEVEL`), then `RUST_LOG`, then the file's `log.level` / `log_type`, then `info`.
//! - The output is Tern's own layer: it formats each event once (text, or one JSON object per
//!   line) and writes it to every destination: stdout, stderr, files (appended to, reopened on
//!   reload so that `logrotate` works as with Mosquitto) and syslog (`/dev/log`, RFC 3164).
//! - Redaction: client ids, user names and payloads can be replaced by a short stable hash
//!   (`redacted-1a2b3c4d`, the first 4 bytes of their SHA-256), in structured fields named
//!   `client`, `client_id`, `clientid`, `user`, `username` or `payload`, and in the messages
//!   that use [`client_id`], [`username`] and [`payload`].

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogConfig;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `TIMESTAMP LEVEL target: message key=value...`, for people.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields, for log collectors.
    Json,
}

/// Where log lines go (Mosquitto's `log_dest`, TOML `log.dest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogDest {
    /// Standard output.
    Stdout,
    /// Standard error (the default).
    Stderr,
    /// A file, appended to (created if missing).
    File(PathBuf),
    /// The local syslog daemon, through `/dev/log`.
    Syslog,
}

impl fmt::Display for LogDest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::Stderr => f.write_str("stderr"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Syslog => f.write_str("syslog"),
        }
    }
}

/// What log lines hide behind a short hash (TOML `log.redact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Redact {
    /// Client ids.
    pub client_id: bool,
    /// User names.
    pub username: bool,
    /// Message payloads.
    pub payload: bool,
}

impl Redact {
    /// Adds one item of `log.redact`: `client_id`, `username` or `payload`.
    ///
    /// # Errors
    /// Any other name, with the expected ones.
    pub fn add(&mut self, item: &str) -> Result<(), String> {
        match item {
            "client_id" => self.client_id = true,
            "username" => self.username = true,
            "payload" => self.payload = true,
            other => {
                return Err(format!(
                    "expected \"client_id\", \"username\" or \"payload\", got `{other}`"
                ));
            }
        }
        Ok(())
    }

    fn bits(self) -> u8 {
        u8::from(self.client_id) | u8::from(self.username) << 1 | u8::from(self.payload) << 2
    }
}

/// Checks a `log_timestamp_format`: a strftime format chrono understands.
///
/// # Errors
/// What is wrong with it.
pub fn check_timestamp_format(format: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if format.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err(format!(
            "`{format}` is not a valid strftime format (such as `%Y-%m-%dT%H:%M:%S`)"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redaction.

/// Which kinds of values are hidden now (bits of [`Redact::bits`]).
static REDACTION: AtomicU8 = AtomicU8::new(0);

const CLIENT_ID: u8 = 1;
const USERNAME: u8 = 2;
const PAYLOAD: u8 = 4;

fn hidden(kind: u8) -> bool {
    REDACTION.load(Ordering::Relaxed) & kind != 0
}

/// `bytes` as `redacted-` and the first 4 bytes of their SHA-256, in hex: stable across
/// restarts, so that the lines of one client can still be followed.
fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::from("redacted-");
    for b in &digest[..4] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A value for a log line, hidden behind its hash when redaction asks for it.
pub(crate) struct Shown<'a> {
    value: &'a [u8],
    hide: bool,
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.hide {
            f.write_str(&short_hash(self.value))
        } else {
            f.write_str(&String::from_utf8_lossy(self.value))
        }
    }
}

/// A client id for a log line.
pub(crate) fn client_id(id: &str) -> Shown<'_> {
    Shown {
        value: id.as_bytes(),
        hide: hidden(CLIENT_ID),
    }
}

/// A user name for a log line.
pub(crate) fn username(name: &str) -> Shown<'_> {
    Shown {
        value: name.as_bytes(),
        hide: hidden(USERNAME),
    }
}

/// A payload for a log line.
pub(crate) fn payload(bytes: &[u8]) -> Shown<'_> {
    Shown {
        value: bytes,
        hide: hidden(PAYLOAD),
    }
}

/// The redaction kind of a structured field, by its name.
fn field_kind(name: &str) -> u8 {
    match name {
        "client" | "client_id" | "clientid" => CLIENT_ID,
        "user" | "username" => USERNAME,
        "payload" => PAYLOAD,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Connection messages (`connection_messages`).

/// How a connection announced in the log ended, for its last line (Mosquitto's wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Not logged as connected: nothing to log at the end either.
    NotAnnounced,
    /// Connected; ended by the protocol (the client's DISCONNECT, a protocol error, a
    /// takeover, a kick): "disconnected".
    Open,
    /// The client closed the network connection without DISCONNECT.
    ClosedByClient,
    /// Reading or writing failed.
    SocketError,
    /// Keep-alive (or the authentication's validity) ran out.
    TimedOut,
    /// The server (or the client's listener) is shutting down.
    ServerShutdown,
}

impl Ending {
    /// Records how an announced connection ends; the first cause wins.
    pub(crate) fn end(&mut self, how: Self) {
        if *self == Self::Open {
            *self = how;
        }
    }
}

/// Logs a new connection: Tern's line, then Mosquitto's details (`k` keep-alive in seconds,
/// `u` the user name): `client ID connected from ADDR (MQTT 5.0), k60, u'alice'`.
pub(crate) fn log_connected(conn: &tern_core::Connection, unaddressed: &str) {
    let from = conn
        .remote_addr()
        .map_or_else(|| unaddressed.to_owned(), |p| p.to_string());
    let keep_alive = conn.keep_alive().map_or(0, |k| k.as_secs());
    match conn.username() {
        Some(user) => tracing::info!(
            "client {} connected from {from} (MQTT {}), k{keep_alive}, u'{}'",
            client_id(conn.client_id()),
            conn.version(),
            username(user)
        ),
        None => tracing::info!(
            "client {} connected from {from} (MQTT {}), k{keep_alive}",
            client_id(conn.client_id()),
            conn.version()
        ),
    }
}

/// Logs a PUBLISH received from a client, at debug level (Mosquitto's `log_type debug`):
/// `received PUBLISH from ID (q1, r0, 'topic', 5 bytes) payload=...`, the payload as text
/// (invalid UTF-8 replaced) and at most 256 bytes of it.
pub(crate) fn log_publish(client: &str, publish: &tern_codec::Publish) {
    if !tracing::enabled!(Level::DEBUG) {
        return;
    }
    let shown = &publish.payload[..publish.payload.len().min(256)];
    tracing::debug!(
        payload = %payload(shown),
        "received PUBLISH from {} (q{}, r{}, '{}', {} bytes)",
        client_id(client),
        publish.qos as u8,
        u8::from(publish.retain),
        publish.topic,
        publish.payload.len()
    );
}

/// Logs the end of a connection logged by [`log_connected`].
pub(crate) fn log_disconnected(conn: &tern_core::Connection, how: Ending) {
    let id = client_id(conn.client_id());
    match how {
        Ending::NotAnnounced => {}
        Ending::Open => tracing::info!("client {id} disconnected"),
        Ending::ClosedByClient => tracing::info!("client {id} closed its connection"),
        Ending::SocketError => tracing::info!("socket error on client {id}, disconnecting"),
        Ending::TimedOut => tracing::info!("client {id} has exceeded timeout, disconnecting"),
        Ending::ServerShutdown => tracing::info!("client {id} disconnected: server shutting down"),
    }
}

// ---------------------------------------------------------------------------------------------
// The subscriber.

/// The installed subscriber's handles: what a reload replaces.
pub(crate) struct Logging {
    filter: tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    output: Arc<ArcSwap<Output>>,
    /// The filter given by `--log-level` or `RUST_LOG`, which the file does not override.
    fixed_filter: Option<String>,
    /// The settings in force.
    current: Mutex<LogConfig>,
}

/// Installs the global subscriber for `config`. The filter comes from, in order of
/// precedence: the command line, `RUST_LOG`, the configuration, then `info`.
pub(crate) fn init(cli_level: Option<&str>, config: &LogConfig) -> anyhow::Result<Logging> {
    let fixed_filter = match (cli_level, std::env::var("RUST_LOG").ok()) {
        (Some(level), _) => Some(level.to_owned()),
        (None, Some(env)) if !env.is_empty() => Some(env),
        _ => None,
    };
    let filter_text = fixed_filter
        .clone()
        .or_else(|| config.level.clone())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&filter_text)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{filter_text}`: {e}"))?;
    let output = Output::open(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    REDACTION.store(config.redact.bits(), Ordering::Relaxed);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let output = Arc::new(ArcSwap::from_pointee(output));
    tracing_subscriber::registry()
        .with(filter)
        .with(OutputLayer {
            output: output.clone(),
        })
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    if let Some(warning) = syslog_warning(config) {
        tracing::warn!("{warning}");
    }
    Ok(Logging {
        filter: handle,
        output,
        fixed_filter,
        current: Mutex::new(config.clone()),
    })
}

/// Logging settings read and opened, ready to replace the ones in force.
pub(crate) struct PreparedLog {
    config: LogConfig,
    filter: Option<EnvFilter>,
    output: Output,
}

impl Logging {
    /// Checks `config` and opens its destinations (files are reopened even when unchanged, so
    /// that a rotated log file is replaced), without changing anything yet.
    pub(crate) fn prepare(&self, config: &LogConfig) -> Result<PreparedLog, String> {
        let filter = match (&self.fixed_filter, &config.level) {
            (Some(_), _) => None,
            (None, level) => {
                let text = level.as_deref().unwrap_or("info");
                Some(
                    EnvFilter::try_new(text)
                        .map_err(|e| format!("invalid log filter `{text}`: {e}"))?,
                )
            }
        };
        Ok(PreparedLog {
            config: config.clone(),
            filter,
            output: Output::open(config)?,
        })
    }

    /// Puts `prepared` in force; returns what changed, one line each.
    pub(crate) fn commit(&self, prepared: PreparedLog) -> Vec<String> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = current.clone();
        let new = prepared.config;
        let mut changes = Vec::new();
        if old.level != new.level {
            match (&self.fixed_filter, prepared.filter) {
                (Some(fixed), _) => changes.push(format!(
                    "log level: the file now says {}, but `{fixed}` from the command line or \
                     RUST_LOG stays in force",
                    new.level.as_deref().unwrap_or("info")
                )),
                (None, Some(filter)) => {
                    if let Err(e) = self.filter.reload(filter) {
                        tracing::error!("cannot change the log filter: {e}");
                    } else {
                        changes.push(format!(
                            "log level: {} (was {})",
                            new.level.as_deref().unwrap_or("info"),
                            old.level.as_deref().unwrap_or("info")
                        ));
                    }
                }
                (None, None) => {}
            }
        }
        self.output.store(Arc::new(prepared.output));
        if old.dest != new.dest {
            changes.push(format!("log destinations: {}", describe_dests(&new)));
        }
        if old.format != new.format
            || old.timestamps != new.timestamps
            || old.timestamp_format != new.timestamp_format
            || old.facility != new.facility
        {
            changes.push("log format and timestamps".to_owned());
        }
        if old.redact != new.redact {
            REDACTION.store(new.redact.bits(), Ordering::Relaxed);
            changes.push(format!("log redaction: {}", describe_redact(new.redact)));
        }
        if let Some(warning) = syslog_warning(&new) {
            tracing::warn!("{warning}");
        }
        *current = new;
        changes
    }
}

fn describe_dests(config: &LogConfig) -> String {
    match &config.dest {
        None => "stderr".to_owned(),
        Some(dests) if dests.is_empty() => "none".to_owned(),
        Some(dests) => dests
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn describe_redact(redact: Redact) -> String {
    let mut items = Vec::new();
    if redact.client_id {
        items.push("client_id");
    }
    if redact.username {
        items.push("username");
    }
    if redact.payload {
        items.push("payload");
    }
    if items.is_empty() {
        "nothing".to_owned()
    } else {
        items.join(", ")
    }
}

/// A warning when syslog is asked for but no syslog socket exists.
fn syslog_warning(config: &LogConfig) -> Option<String> {
    let wants = config
        .dest
        .as_ref()
        .is_some_and(|d| d.contains(&LogDest::Syslog));
    (wants && !Path::new(SYSLOG_SOCKET).exists()).then(|| {
        format!(
            "log_dest syslog: {SYSLOG_SOCKET} does not exist (no syslog daemon or journald \
             here); syslog lines are dropped until it appears"
        )
    })
}

/// The formats and destinations in force.
struct Output {
    format: LogFormat,
    timestamps: Timestamps,
    sinks: Vec<Sink>,
}

#[derive(Clone)]
enum Timestamps {
    Off,
    /// RFC 3339 in UTC, to the microsecond.
    Rfc3339,
    /// A strftime format, in local time.
    Strftime(String),
}

enum Sink {
    Stdout,
    Stderr,
    File(Mutex<std::fs::File>),
    Syslog(Syslog),
}

impl Output {
    fn open(config: &LogConfig) -> Result<Self, String> {
        let timestamps = match (config.timestamps.unwrap_or(true), &config.timestamp_format) {
            (false, _) => Timestamps::Off,
            (true, None) => Timestamps::Rfc3339,
            (true, Some(format)) => {
                check_timestamp_format(format)
                    .map_err(|e| format!("`log_timestamp_format`: {e}"))?;
                Timestamps::Strftime(format.clone())
            }
        };
        let dests = config.dest.clone().unwrap_or_else(|| vec![LogDest::Stderr]);
        let mut sinks = Vec::with_capacity(dests.len());
        for dest in dests {
            sinks.push(match dest {
                LogDest::Stdout => Sink::Stdout,
                LogDest::Stderr => Sink::Stderr,
                LogDest::File(path) => Sink::File(Mutex::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| {
                            format!(
                                "`log_dest`: cannot open the log file `{}`: {e}",
                                path.display()
                            )
                        })?,
                )),
                LogDest::Syslog => Sink::Syslog(Syslog::new(config.facility)),
            });
        }
        Ok(Self {
            format: config.format,
            timestamps,
            sinks,
        })
    }

    fn timestamp(&self) -> Option<String> {
        match &self.timestamps {
            Timestamps::Off => None,
            Timestamps::Rfc3339 => Some(
                chrono::Utc::now()
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string(),
            ),
            Timestamps::Strftime(format) => Some(chrono::Local::now().format(format).to_string()),
        }
    }

    /// The line for `event` (with its newline), with or without the timestamp.
    fn line(&self, event: &Event<'_>, fields: &Fields, timestamp: Option<&str>) -> String {
        let meta = event.metadata();
        match self.format {
            LogFormat::Text => {
                let mut line = String::with_capacity(128);
                if let Some(ts) = timestamp {
                    line.push_str(ts);
                    line.push(' ');
                }
                let _ = write!(
                    line,
                    "{:>5} {}: {}",
                    meta.level(),
                    meta.target(),
                    fields.message
                );
                for (name, value) in &fields.values {
                    let _ = write!(line, " {name}={}", value.text());
                }
                line.push('\n');
                line
            }
            LogFormat::Json => {
                let mut object = serde_json::Map::new();
                if let Some(ts) = timestamp {
                    object.insert("timestamp".to_owned(), ts.into());
                }
                object.insert("level".to_owned(), meta.level().as_str().into());
                object.insert("target".to_owned(), meta.target().into());
                object.insert("message".to_owned(), fields.message.clone().into());
                for (name, value) in &fields.values {
                    let key = if object.contains_key(*name) {
                        format!("field.{name}")
                    } else {
                        (*name).to_owned()
                    };
                    object.insert(key, value.json());
                }
                let mut line = serde_json::Value::Object(object).to_string();
                line.push('\n');
                line
            }
        }
    }
}

/// The layer that writes events: formats each once, then writes it everywhere.
struct OutputLayer {
    output: Arc<ArcSwap<Output>>,
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for OutputLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let output = self.output.load();
        if output.sinks.is_empty() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let timestamp = output.timestamp();
        let mut stamped: Option<String> = None;
        let mut plain: Option<String> = None;
        let level = *event.metadata().level();
        for sink in &output.sinks {
            match sink {
                Sink::Stdout => {
                    let line = stamped
                        .get_or_insert_with(|| output.line(event, &fields, timestamp.as_deref()));
                    let _ = std::io::stdout().lock().write_all(line.as_bytes());
                }
                Sink::Stderr => {
                    let line = stamped
                        .get_or_insert_with(|| output.line(event, &fields, timestamp.as_deref()));
                    let _ = std::io::stderr().lock().write_all(line.as_bytes());
                }
                Sink::File(file) => {
                    let line = stamped
                        .get_or_insert_with(|| output.line(event, &fields, timestamp.as_deref()));
                    let mut file = file
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let _ = file.write_all(line.as_bytes());
                }
                Sink::Syslog(syslog) => {
                    // Syslog stamps lines itself.
                    let line = plain.get_or_insert_with(|| output.line(event, &fields, None));
                    syslog.send(level, line.trim_end());
                }
            }
        }
    }
}

/// An event's message and fields, redacted as configured.
#[derive(Default)]
struct Fields {
    message: String,
    values: Vec<(&'static str, Value)>,
}

enum Value {
    Text(String),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
}

impl Value {
    fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Int(n) => n.to_string(),
            Self::Uint(n) => n.to_string(),
            Self::Float(n) => n.to_string(),
            Self::Bool(b) => b.to_string(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Self::Text(s) => s.clone().into(),
            Self::Int(n) => (*n).into(),
            Self::Uint(n) => (*n).into(),
            Self::Float(n) => (*n).into(),
            Self::Bool(b) => (*b).into(),
        }
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: Value) {
        let kind = field_kind(field.name());
        let value = if kind != 0 && hidden(kind) {
            Value::Text(short_hash(value.text().as_bytes()))
        } else {
            value
        };
        self.values.push((field.name(), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.push(field, Value::Text(format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push(field, Value::Text(value.to_owned()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, Value::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, Value::Uint(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, Value::Float(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, Value::Text(value.to_string()));
    }
}

// ---------------------------------------------------------------------------------------------
// Syslog.

/// The local syslog socket (journald and rsyslog both listen there).
const SYSLOG_SOCKET: &str = "/dev/log";

/// Lines to the local syslog daemon, RFC 3164 style (`<PRI>tern[PID]: message`), over a
/// datagram socket; a line that cannot be sent is dropped.
struct Syslog {
    /// Facility code (daemon = 3, local0..local7 = 16..23).
    facility: u8,
    #[cfg(unix)]
    socket: Mutex<Option<std::os::unix::net::UnixDatagram>>,
}

impl Syslog {
    fn new(local: Option<u8>) -> Self {
        Self {
            facility: local.map_or(3, |n| 16 + n.min(7)),
            #[cfg(unix)]
            socket: Mutex::new(None),
        }
    }

    fn severity(level: Level) -> u8 {
        match level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        }
    }

    fn datagram(&self, level: Level, message: &str) -> String {
        let priority = u16::from(self.facility) * 8 + u16::from(Self::severity(level));
        format!("<{priority}>tern[{}]: {message}", std::process::id())
    }

    #[cfg(unix)]
    fn send(&self, level: Level, message: &str) {
        let datagram = self.datagram(level, message);
        let mut socket = self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if socket.is_none() {
            *socket = std::os::unix::net::UnixDatagram::unbound().ok();
        }
        if let Some(s) = socket.as_ref()
            && s.send_to(datagram.as_bytes(), SYSLOG_SOCKET).is_err()
        {
            // Reconnected at the next line (syslog daemons restart).
            *socket = None;
        }
    }

    #[cfg(not(unix))]
    fn send(&self, level: Level, message: &str) {
        let _ = self.datagram(level, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hash_is_short_and_stable() {
        let a = short_hash(b"sensor-1");
        assert_eq!(a, short_hash(b"sensor-1"));
        assert_ne!(a, short_hash(b"sensor-2"));
        assert!(a.starts_with("redacted-"));
        assert_eq!(a.len(), "redacted-".len() + 8);
    }

    #[test]
    fn redact_items() {
        let mut r = Redact::default();
        r.add("client_id").expect("client_id");
        r.add("payload").expect("payload");
        assert_eq!(
            r,
            Redact {
                client_id: true,
                username: false,
                payload: true
            }
        );
        assert!(r.add("password").is_err_and(|e| e.contains("`password`")));
    }

    #[test]
    fn timestamp_formats() {
        assert_eq!(check_timestamp_format("%Y-%m-%dT%H:%M:%S"), Ok(()));
        assert_eq!(check_timestamp_format("%s"), Ok(()));
        assert!(check_timestamp_format("%Q").is_err());
        assert!(check_timestamp_format("").is_err());
    }

    #[test]
    fn syslog_datagrams() {
        let s = Syslog::new(None);
        assert!(
            s.datagram(Level::ERROR, "boom").starts_with("<27>tern["),
            "daemon.err = 3 * 8 + 3"
        );
        let s = Syslog::new(Some(2));
        assert!(
            s.datagram(Level::INFO, "hi").starts_with("<150>tern["),
            "local2.info"
        );
        assert!(s.datagram(Level::INFO, "hi").ends_with("]: hi"));
    }
}
