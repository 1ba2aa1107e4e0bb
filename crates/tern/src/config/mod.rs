//! Configuration: Tern's TOML format and Mosquitto's `mosquitto.conf` format, both read into
//! [`Config`]. Every error names the file, the line and the key.

mod duration;
mod mosquitto;
mod toml_format;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tern_core::BrokerConfig;

pub use duration::parse_duration;

/// Everything `tern serve` needs, whichever format it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Network listeners. Empty means the built-in default (127.0.0.1:1883).
    pub listeners: Vec<ListenerConfig>,
    /// Protocol limits and options.
    pub broker: BrokerConfig,
    /// `allow_anonymous`, if the file set it. When unset, anonymous clients are allowed only on
    /// loopback listeners of a broker started without a configuration file.
    pub allow_anonymous: Option<bool>,
    /// How often `$SYS` topics are published; zero disables them (`sys_interval`).
    pub sys_interval: Duration,
    /// Logging.
    pub log: LogConfig,
    /// Where the configuration came from, for messages.
    pub source: Option<PathBuf>,
    /// Warnings about directives that were accepted but have no effect, each as
    /// `file:line: message`.
    pub warnings: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listeners: Vec::new(),
            broker: BrokerConfig::default(),
            allow_anonymous: None,
            sys_interval: Duration::from_secs(10),
            log: LogConfig::default(),
            source: None,
            warnings: Vec::new(),
        }
    }
}

/// One network listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address and port to bind.
    pub bind: SocketAddr,
    /// Maximum simultaneous connections on this listener; `None` = unlimited.
    pub max_connections: Option<usize>,
}

/// Logging options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    /// A `tracing` filter directive (`info`, `debug`, `tern=debug`...), if the file set one.
    pub level: Option<String>,
    /// Whether to log connections and disconnections at info level (`connection_messages`).
    pub connection_messages: Option<bool>,
    /// Whether log lines carry timestamps (`log_timestamp`).
    pub timestamps: Option<bool>,
}

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The key (directive) at fault, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tern's own TOML.
    Toml,
    /// Mosquitto's `name value` lines.
    Mosquitto,
}

/// Decides the format: by extension (`.toml`, `.conf`), else by content (TOML has `=` or
/// `[section]` lines; Mosquitto has neither).
#[must_use]
pub fn detect_format(path: &Path, text: &str) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => return Format::Toml,
        Some("conf") => return Format::Mosquitto,
        _ => {}
    }
    let toml_like = text.lines().map(str::trim).any(|l| {
        !l.starts_with('#') && (l.starts_with('[') || l.split_whitespace().nth(1) == Some("="))
            || (l.contains('=') && !l.starts_with('#') && !l.contains(' ') )
    });
    if toml_like { Format::Toml } else { Format::Mosquitto }
}

/// Reads and validates a configuration file of either format.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: None,
        key: None,
        message: format!("cannot read the file: {e}"),
    })?;
    let mut config = match detect_format(path, &text) {
        Format::Toml => toml_format::parse(path, &text)?,
        Format::Mosquitto => mosquitto::parse(path, &text)?,
    };
    config.source = Some(path.to_owned());
    Ok(config)
}
