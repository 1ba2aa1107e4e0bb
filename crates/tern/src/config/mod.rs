//! Configuration: Tern's TOML format and Mosquitto's `mosquitto.conf` format, both read into
//! [`Config`]. Every error names the file, the line and the key.

mod admin;
mod bridge;
mod bridge_parse;
mod duration;
mod listener;
mod mosquitto;
mod rate;
mod toml_format;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tern_core::{Acl, AclDiagnostic, BrokerConfig};

use crate::auth::password_file::PasswordFile;

pub use admin::{
    AdminConfig, AdminListen, ApiKeyConfig, ApiSecret, DEFAULT_ADMIN_LISTEN, DEFAULT_TOKEN_TTL,
};
pub use bridge::{
    BridgeAddress, BridgeConfig, BridgeDirection, BridgeStart, BridgeTls, BridgeTopic,
};
pub use bridge_parse::{DEFAULT_BRIDGE_PORT, DEFAULT_BRIDGE_TLS_PORT};
pub use duration::parse_duration;
pub use listener::ListenerSettings;

/// Smallest `max_packet_size` accepted: an MQTT 5 CONNECT with a one-character client id is
/// 16 bytes, so anything smaller would refuse nearly every client.
pub(crate) const MIN_PACKET_SIZE: u32 = 16;

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
    /// The ACL file (`acl_file`), already read into `broker.acl`; kept to name it in messages
    /// (and, later, to read it again on reload).
    pub acl_file: Option<PathBuf>,
    /// The password file (`password_file`) and its contents, read when the configuration is.
    pub password_file: Option<LoadedFile<PasswordFile>>,
    /// JWT authentication (`[auth.jwt]`), its key already read.
    pub jwt: Option<Arc<crate::auth::jwt::JwtAuth>>,
    /// The HTTP authentication hook (`[auth.http]`), its TLS files already read.
    pub http_auth: Option<Arc<crate::auth::http_hook::HttpHook>>,
    /// Logging.
    pub log: LogConfig,
    /// `pid_file` and `user`.
    pub process: ProcessConfig,
    /// Persistence: where and how durable state is kept.
    pub persistence: PersistenceConfig,
    /// Limits on connections across listeners and per source address (`[limits]`).
    pub limits: crate::limits::ConnectionLimits,
    /// The admin REST API (`[admin]`).
    pub admin: AdminConfig,
    /// Bridges to other brokers (`[[bridges]]`, mosquitto.conf `connection`).
    pub bridges: Vec<BridgeConfig>,
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
            acl_file: None,
            password_file: None,
            jwt: None,
            http_auth: None,
            log: LogConfig::default(),
            process: ProcessConfig::default(),
            persistence: PersistenceConfig::default(),
            limits: crate::limits::ConnectionLimits::default(),
            admin: AdminConfig::default(),
            bridges: Vec::new(),
            source: None,
            warnings: Vec::new(),
        }
    }
}

/// One network listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Where it listens: an address and port, or a Unix socket.
    pub bind: ListenAddr,
    /// Maximum simultaneous connections on this listener; `None` = unlimited.
    pub max_connections: Option<usize>,
    /// TLS settings: `Some` makes this a TLS listener (its files were checked when the
    /// configuration was read).
    pub tls: Option<crate::tls::TlsConfig>,
    /// WebSocket settings: `Some` makes this a WebSocket listener (`protocol websockets`),
    /// WSS with `tls`.
    pub websocket: Option<crate::websocket::WebSocketSettings>,
    /// Protocol versions, mount point, and this listener's own authentication and ACL.
    pub settings: ListenerSettings,
}

/// Where a listener listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address and port (port 0 picks a free port). An IPv6 address listens for IPv6
    /// only, as in Mosquitto: a listener on `[::]` and one on `0.0.0.0` can share a port.
    Tcp(SocketAddr),
    /// A Unix domain socket (TOML `address = "unix:PATH"`, Mosquitto `listener 0 PATH`).
    Unix(crate::unix_socket::UnixSocketConfig),
}

impl ListenAddr {
    /// The TCP port; 0 for a Unix socket.
    #[must_use]
    pub fn port(&self) -> u16 {
        match self {
            Self::Tcp(addr) => addr.port(),
            Self::Unix(_) => 0,
        }
    }

    /// The TCP address, if it is one.
    #[must_use]
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(addr) => Some(*addr),
            Self::Unix(_) => None,
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(addr: SocketAddr) -> Self {
        Self::Tcp(addr)
    }
}

/// `HOST:PORT`, or `unix:PATH` for a Unix socket: the form of the `listening on` log lines.
impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(unix) => write!(f, "{unix}"),
        }
    }
}

/// Where and how the broker keeps its durable state (persistent sessions, their messages,
/// retained messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistenceConfig {
    /// Whether state is kept on disk at all (TOML `enabled`, or `durability = "memory"` to turn
    /// it off; Mosquitto `persistence`); off keeps everything in memory.
    pub enabled: bool,
    /// The data directory (TOML `data_dir`, Mosquitto `persistence_location`). A relative
    /// `data_dir` is already joined to the TOML file's directory; a relative
    /// `persistence_location`, like the default [`DEFAULT_DATA_DIR`], is relative to the working
    /// directory, as in Mosquitto.
    pub data_dir: PathBuf,
    /// How far a commit goes before acknowledgements are sent.
    pub durability: Durability,
    /// How long the store gathers writes into one commit after the first.
    pub commit_window: Duration,
    /// The most writes in one commit.
    pub max_batch: usize,
}

/// The data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "tern-data";

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            durability: Durability::Fsync,
            // Measured (crates/tern-store/README.md): under load groups form by themselves from
            // what arrives during each commit; an idle window only delays lone messages.
            commit_window: Duration::ZERO,
            max_batch: 10_000,
        }
    }
}

/// What "durable" means before an acknowledgement is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written and fsynced: survives a crash of the process, the OS or the machine.
    Fsync,
    /// Written to the OS without fsync: survives a crash of the process, not of the machine.
    Flush,
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
    /// A strftime format for timestamps, in local time (`log_timestamp_format`); `None`:
    /// RFC 3339 in UTC.
    pub timestamp_format: Option<String>,
    /// Text (the default) or JSON lines (TOML `log.format`).
    pub format: crate::logging::LogFormat,
    /// Where log lines go (`log_dest`); `None`: stderr. An empty list logs nothing.
    pub dest: Option<Vec<crate::logging::LogDest>>,
    /// What log lines hide behind a short hash (TOML `log.redact`).
    pub redact: crate::logging::Redact,
    /// The syslog facility (`log_facility`: 0-7 for local0-local7); `None`: daemon.
    pub facility: Option<u8>,
}

/// Process settings: Mosquitto's `pid_file` and `user`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessConfig {
    /// Written with the process id once the listeners are bound; removed at exit.
    pub pid_file: Option<PathBuf>,
    /// The user to run as when started as root (privileges are dropped after binding).
    pub user: Option<String>,
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

impl ConfigError {
    /// An error at `line` of `file` about `key`.
    pub(crate) fn at(file: &Path, line: usize, key: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: Some(line),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// An error about the file as a whole (unreadable, not UTF-8...).
    pub(crate) fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

/// `path` as written in `file`: a relative path is relative to the directory of `file`, so that
/// the result does not depend on where Tern is started from.
pub(crate) fn relative_to(file: &Path, path: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if path.is_relative() => parent.join(path),
        _ => path.to_owned(),
    }
}

/// A file read along with the configuration: where it is and what it holds. Two are equal
/// when they name the same file.
#[derive(Debug, Clone)]
pub struct LoadedFile<T> {
    /// The file.
    pub path: PathBuf,
    /// Its parsed contents.
    pub contents: Arc<T>,
}

impl<T> PartialEq for LoadedFile<T> {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl<T> Eq for LoadedFile<T> {}

/// Reads and parses a password file (Mosquitto's format). A file that cannot be read is
/// reported by `unreadable`, located at the setting that names it; errors in its contents name
/// the password file and its line.
pub(crate) fn load_password_file(
    path: &Path,
    unreadable: impl FnOnce(String) -> ConfigError,
) -> Result<LoadedFile<PasswordFile>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| unreadable(format!("cannot read `{}`: {e}", path.display())))?;
    PasswordFile::parse(&text)
        .map(|p| LoadedFile {
            path: path.to_owned(),
            contents: Arc::new(p),
        })
        .map_err(|e| ConfigError {
            file: path.to_owned(),
            line: e.line,
            key: None,
            message: e.message,
        })
}

/// Reads and parses an ACL file (Mosquitto's `acl_file` format). A file that cannot be read is
/// reported by `unreadable`, located at the setting that names it; errors and warnings about its
/// contents name the ACL file and its line. Warnings are appended to `warnings`.
pub(crate) fn load_acl(
    path: &Path,
    warnings: &mut Vec<String>,
    unreadable: impl FnOnce(String) -> ConfigError,
) -> Result<Arc<Acl>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| unreadable(format!("cannot read `{}`: {e}", path.display())))?;
    let located = |d: AclDiagnostic| ConfigError {
        file: path.to_owned(),
        line: d.line,
        key: d.keyword,
        message: d.message,
    };
    let (acl, notes) = Acl::parse(&text).map_err(located)?;
    warnings.extend(notes.into_iter().map(|d| located(d).to_string()));
    Ok(Arc::new(acl))
}

/// An IP address family, for `socket_domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn matches(self, ip: IpAddr) -> bool {
        match self {
            Self::V4 => ip.is_ipv4(),
            Self::V6 => ip.is_ipv6(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        }
    }
}

/// Turns a listener's host (an IP address, `localhost`, or a name to look up) and port into the
/// address to bind. `family` restricts the result to IPv4 or IPv6; without it an IPv4 address
/// is preferred, because binding the first result of a lookup that also returned `::1` would
/// surprise clients that connect to `127.0.0.1`.
pub(crate) fn resolve_host(
    host: &str,
    port: u16,
    family: Option<Family>,
) -> Result<SocketAddr, String> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match family {
            Some(f) if !f.matches(ip) => Err(format!(
                "`{host}` is not an {} address, as `socket_domain` requires",
                f.name()
            )),
            _ => Ok(SocketAddr::new(ip, port)),
        };
    }
    // Looked up without the resolver so that it means loopback on every machine, whatever
    // /etc/hosts lists first.
    if bare.eq_ignore_ascii_case("localhost") {
        let ip = match family {
            Some(Family::V6) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        return Ok(SocketAddr::new(ip, port));
    }
    let found: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    if let Some(addr) = found
        .iter()
        .find(|a| family.unwrap_or(Family::V4).matches(a.ip()))
    {
        return Ok(*addr);
    }
    match family {
        Some(f) => Err(format!("`{host}` has no {} address", f.name())),
        None => found
            .first()
            .copied()
            .ok_or_else(|| format!("`{host}` resolves to no address")),
    }
}

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tern's own TOML.
    Toml,
    /// Mosquitto's `name value` lines.
    Mosquitto,
}

/// Decides the format: by extension (`.toml` is TOML, `.conf` is Mosquitto, in any case), else by
/// content: the first line that is neither blank nor a comment decides. A TOML document starts
/// with a `[table]` header or a `key = value` pair (possibly dotted or quoted); a Mosquitto file
/// starts with a `name value` directive, where the name is followed by a space, never by `=`.
/// A file with no such line (empty, or only comments) is read as TOML: both formats give the
/// defaults for it.
#[must_use]
pub fn detect_format(path: &Path, text: &str) -> Format {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    if extension.eq_ignore_ascii_case("toml") {
        return Format::Toml;
    }
    if extension.eq_ignore_ascii_case("conf") {
        return Format::Mosquitto;
    }
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        None => Format::Toml,
        Some(line) if line.starts_with(['[', '"', '\'']) => Format::Toml,
        Some(line) => {
            let after_key = line
                .trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if after_key.trim_start().starts_with(['=', '.']) {
                Format::Toml
            } else {
                Format::Mosquitto
            }
        }
    }
}

/// Reads and validates a configuration file of either format.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole_file(path, format!("cannot read the file: {e}")))?;
    let mut config = match detect_format(path, &text) {
        Format::Toml => toml_format::parse(path, &text)?,
        Format::Mosquitto => mosquitto::parse(path, &text)?,
    };
    config.source = Some(path.to_owned());
    Ok(config)
}
