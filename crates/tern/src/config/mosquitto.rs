//! Mosquitto's `mosquitto.conf` format, so that an existing file runs unchanged.
//!
//! One `name value` directive per line; blank lines and lines starting with `#` are skipped.
//! Directives after a `listener` line configure that listener. The rules follow Mosquitto
//! 2.0's `conf.c` where they matter to users: booleans are `true`/`false`/`1`/`0`, every file
//! (main or included) starts in the general section, `include_dir` is only honoured in the
//! main file, and `port`/`bind_address` define one extra "default" listener.
//!
//! A directive whose feature Tern lacks is an error when ignoring it would leave the broker
//! more open than the file asks for (authentication, TLS, plugins...), and a warning otherwise.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tern_codec::{MAX_PACKET_SIZE, QoS};

use super::bridge_parse::{self, ConfBridge};
use super::duration::parse_mosquitto_duration;
use crate::tls::{CertificateIdentity, ParseVersionError, TlsConfig, TlsKey, TlsVersion};
use crate::websocket::WebSocketSettings;

use super::listener::{check_mount_point, mount_point_warning};
use super::{
    Config, ConfigError, Family, ListenAddr, ListenerConfig, ListenerSettings, LoadedFile,
    MIN_PACKET_SIZE, load_acl, relative_to, resolve_host,
};
use crate::auth::password_file::PasswordFile;
use crate::logging::{LogDest, check_timestamp_format};
use crate::proxy_protocol::{ProxyProtocol, ProxyVersions};
use crate::unix_socket::{UnixSocketConfig, check_path as check_unix_path};
use tern_core::Acl;

/// Mosquitto's default port, used by the default listener when only `bind_address` is given.
const DEFAULT_PORT: u16 = 1883;

/// Largest PUBLISH payload MQTT allows, the upper bound of `message_size_limit`.
const MAX_PAYLOAD: i64 = 268_435_455;

/// What `message_size_limit` adds to its payload limit to get a packet limit: the longest fixed
/// header (5), the longest topic (2 + 65 535) and a packet identifier (2). Every message
/// Mosquitto would accept then fits.
const MESSAGE_SIZE_HEADROOM: u32 = 5 + 2 + 65_535 + 2;

/// Parses a `mosquitto.conf` and the files it includes.
pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut reader = Reader::default();
    reader.read_file(path, text, false)?;
    reader.finish()
}

// ---------------------------------------------------------------------------------------------
// One line.

/// Where a directive was written, to report errors and warnings about it later.
#[derive(Debug, Clone)]
struct Location {
    file: PathBuf,
    line: usize,
    name: String,
}

impl Location {
    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.file, self.line, &self.name, message)
    }

    /// A warning, formatted as an error is: `file:line: `name`: message`.
    fn warning(&self, message: impl Into<String>) -> String {
        self.error(message).to_string()
    }
}

/// A directive: its name and the rest of the line.
pub(super) struct Directive<'a> {
    pub(super) file: &'a Path,
    pub(super) line: usize,
    pub(super) name: &'a str,
    /// Everything after the name, without surrounding blanks.
    pub(super) rest: &'a str,
}

impl Directive<'_> {
    pub(super) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.file, self.line, self.name, message)
    }

    pub(super) fn warning(&self, message: impl Into<String>) -> String {
        self.error(message).to_string()
    }

    fn location(&self) -> Location {
        Location {
            file: self.file.to_owned(),
            line: self.line,
            name: self.name.to_owned(),
        }
    }

    /// The one value of the directive. A trailing `# comment` is tolerated, as Mosquitto
    /// ignores anything after the value; anything else after it is an error, because it means
    /// the line does not say what its author thinks.
    pub(super) fn value(&self) -> Result<&str, ConfigError> {
        let mut tokens = self.rest.split_ascii_whitespace();
        let value = tokens.next().ok_or_else(|| self.error("missing value"))?;
        if value.starts_with('=') {
            // Most likely a TOML file with a `.conf` name.
            return Err(self.error(
                "Mosquitto directives are written `name value`, without `=` (a TOML file must \
                 be named *.toml)",
            ));
        }
        match tokens.next() {
            Some(extra) if !extra.starts_with('#') => {
                Err(self.error(format!("unexpected `{extra}` after the value")))
            }
            _ => Ok(value),
        }
    }

    /// The rest of the line, for values that may contain spaces (paths, prefixes).
    pub(super) fn text(&self) -> Result<&str, ConfigError> {
        if self.rest.is_empty() {
            Err(self.error("missing value"))
        } else {
            Ok(self.rest)
        }
    }

    pub(super) fn bool(&self) -> Result<bool, ConfigError> {
        match self.value()? {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(self.error(format!("expected true or false, got `{other}`"))),
        }
    }

    /// Any integer; what it means is up to the directive.
    pub(super) fn int(&self) -> Result<i64, ConfigError> {
        self.int_described("an integer")
    }

    /// An integer; `expected` describes the valid values, for the error message.
    fn int_described(&self, expected: &str) -> Result<i64, ConfigError> {
        let value = self.value()?;
        value.parse().map_err(|_| self.invalid(expected))
    }

    /// An integer in `lo..=hi`, converted to the field's type.
    pub(super) fn int_in<T: TryFrom<i64>>(&self, lo: i64, hi: i64) -> Result<T, ConfigError> {
        let expected = format!("an integer between {lo} and {hi}");
        let n = self.int_described(&expected)?;
        if !(lo..=hi).contains(&n) {
            return Err(self.invalid(&expected));
        }
        T::try_from(n).map_err(|_| self.invalid(&expected))
    }

    /// "expected `expected`, got `value`".
    fn invalid(&self, expected: &str) -> ConfigError {
        let value = self
            .rest
            .split_ascii_whitespace()
            .next()
            .unwrap_or_default();
        self.error(format!("expected {expected}, got `{value}`"))
    }
}

// ---------------------------------------------------------------------------------------------
// The reader's state.

/// Options that belong to one listener.
#[derive(Debug, Clone, Default)]
struct ListenerOptions {
    /// `max_connections`: `Some(None)` is an explicit "unlimited".
    max_connections: Option<(Option<usize>, Location)>,
    /// `socket_domain`.
    family: Option<(Family, Location)>,
    /// TLS directives; never inherited by other listeners.
    tls: TlsDirectives,
    /// `protocol websockets` (`None` for MQTT over TCP); never inherited: in the general
    /// section it makes the default listener a WebSocket listener, as in Mosquitto.
    websockets: Option<Location>,
    /// `mount_point`; only after a `listener` line, never inherited.
    mount_point: Option<(String, Location)>,
    /// Security directives under `per_listener_settings true`; never inherited.
    security: SecurityDirectives,
    /// `enable_proxy_protocol 1|2`; never inherited.
    proxy: Option<(ProxyVersions, Location)>,
    /// `proxy_protocol_v2_require_tls`; never inherited.
    proxy_require_tls: Option<(bool, Location)>,
}

impl ListenerOptions {
    /// These options, completed by `defaults` where unset.
    fn or(&self, defaults: &Self) -> Self {
        Self {
            max_connections: self
                .max_connections
                .clone()
                .or_else(|| defaults.max_connections.clone()),
            family: self.family.clone().or_else(|| defaults.family.clone()),
            tls: self.tls.clone(),
            websockets: self.websockets.clone(),
            mount_point: self.mount_point.clone(),
            security: self.security.clone(),
            proxy: self.proxy.clone(),
            proxy_require_tls: self.proxy_require_tls.clone(),
        }
    }

    /// The PROXY protocol settings of these options: `enable_proxy_protocol`, and
    /// `proxy_protocol_v2_require_tls`, which needs version 2.
    fn proxy_protocol(&self) -> Result<Option<ProxyProtocol>, ConfigError> {
        let require_tls = match &self.proxy_require_tls {
            Some((true, at)) => {
                if !matches!(self.proxy, Some((ProxyVersions::V2, _))) {
                    return Err(at.error(
                        "needs `enable_proxy_protocol 2` on the same listener: only a version 2 \
                         header says whether the client used TLS",
                    ));
                }
                true
            }
            _ => false,
        };
        Ok(self.proxy.as_ref().map(|(versions, _)| ProxyProtocol {
            versions: *versions,
            require_tls,
        }))
    }
}

/// A listener's own security directives (`per_listener_settings true`).
#[derive(Debug, Clone, Default)]
struct SecurityDirectives {
    password_file: Option<(LoadedFile<PasswordFile>, Location)>,
    acl_file: Option<(LoadedFile<Acl>, Location)>,
    allow_anonymous: Option<bool>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    /// The first of them.
    first: Option<Location>,
}

impl SecurityDirectives {
    /// The listener's settings with these directives and `mount_point`.
    fn settings(&self, mount_point: Option<&(String, Location)>) -> ListenerSettings {
        ListenerSettings {
            protocol_versions: None,
            mount_point: mount_point.map(|(m, _)| m.clone()),
            allow_anonymous: self.allow_anonymous,
            password_file: self.password_file.as_ref().map(|(f, _)| f.clone()),
            acl_file: self.acl_file.as_ref().map(|(f, _)| f.clone()),
            allow_zero_length_clientid: self.allow_zero_length_clientid,
            auto_id_prefix: self.auto_id_prefix.clone(),
            proxy_protocol: None,
        }
    }
}

/// The security directives that `per_listener_settings true` makes per listener.
const PER_LISTENER_SECURITY: [&str; 5] = [
    "password_file",
    "acl_file",
    "allow_anonymous",
    "allow_zero_length_clientid",
    "auto_id_prefix",
];

/// A `listener` line and its options.
#[derive(Debug)]
struct Listener {
    /// 0 for a Unix socket.
    port: u16,
    host: Option<String>,
    /// `listener 0 PATH`: the socket's path, relative to the file's directory.
    unix: Option<PathBuf>,
    at: Location,
    options: ListenerOptions,
}

/// Mosquitto's legacy default listener (`port`, `bind_address`), and the listener options
/// written before any `listener` line of a file.
#[derive(Debug, Default)]
struct DefaultListener {
    port: Option<u16>,
    host: Option<String>,
    /// The `bind_address` line, else the first `port` line: the default listener exists if
    /// it is set.
    at: Option<Location>,
    options: ListenerOptions,
}

/// Which listener the directives being read apply to.
#[derive(Debug, Clone, Copy)]
enum Section {
    /// The general section: listener options go to the default listener.
    General,
    /// After a `listener` line: the index in `Reader::listeners`.
    Listener(usize),
}

/// Mosquitto's `log_type` lines, accumulated into one `tracing` level.
#[derive(Debug, Default)]
struct LogTypes {
    /// 0 = error ... 4 = trace; the most verbose type seen since the last `none`.
    most_verbose: Option<u8>,
    /// `log_type none` was seen (and nothing after it).
    none: bool,
}

impl LogTypes {
    const LEVELS: [&'static str; 5] = ["error", "warn", "info", "debug", "trace"];

    fn add(&mut self, log_type: &str) -> Result<(), String> {
        let verbosity = match log_type {
            "none" => {
                *self = Self {
                    most_verbose: None,
                    none: true,
                };
                return Ok(());
            }
            "error" => 0,
            "warning" => 1,
            "notice" | "information" => 2,
            "debug" | "subscribe" | "unsubscribe" | "internal" | "websockets" => 3,
            "all" => 4,
            other => {
                return Err(format!(
                    "expected none, error, warning, notice, information, debug, subscribe, \
                     unsubscribe, internal, websockets or all, got `{other}`"
                ));
            }
        };
        self.most_verbose = Some(self.most_verbose.map_or(verbosity, |v| v.max(verbosity)));
        self.none = false;
        Ok(())
    }

    /// The filter for `LogConfig::level`, `None` if the file has no `log_type`.
    fn level(&self) -> Option<String> {
        match self.most_verbose {
            Some(v) => Self::LEVELS.get(usize::from(v)).map(|l| (*l).to_owned()),
            None if self.none => Some("off".to_owned()),
            None => None,
        }
    }
}

#[derive(Debug, Default)]
struct Reader {
    config: Config,
    default: DefaultListener,
    listeners: Vec<Listener>,
    log_types: LogTypes,
    /// Whether `max_packet_size` was given: it wins over `message_size_limit`.
    max_packet_size_set: bool,
    /// A non-zero `message_size_limit`, applied at the end.
    message_size_limit: Option<(u32, Location)>,
    /// `max_qos`/`max_topic_alias` lines inside a listener section: listener options in
    /// Mosquitto, broker-wide in Tern. Worth a warning when there are several listeners.
    broker_wide_in_listener: Vec<Location>,
    /// The `acl_file` line, once seen.
    acl_file_at: Option<Location>,
    /// `autosave_interval`/`autosave_on_changes` lines, warned about at the end, when it is
    /// known whether persistence is on.
    autosave_at: Vec<Location>,
    /// The `per_listener_settings true` line, once seen.
    per_listener: Option<Location>,
    /// The first security directive (`password_file`, `acl_file`...), once seen:
    /// `per_listener_settings` must come before it.
    security_seen: Option<Location>,
    /// `log_dest` lines so far (`None`: none seen, stderr).
    log_dests: Option<Vec<LogDest>>,
    /// The `log_facility` line, once seen.
    log_facility_at: Option<Location>,
    /// The bridges (`connection` blocks), in the order of the files.
    bridges: Vec<ConfBridge>,
}

impl Reader {
    /// Reads one file. `included` is set for the files of an `include_dir`.
    fn read_file(&mut self, path: &Path, text: &str, included: bool) -> Result<(), ConfigError> {
        // As in Mosquitto, each file starts in the general section, included ones too.
        let mut section = Section::General;
        // Likewise, a file's bridge directives belong to its own `connection` lines.
        let mut bridge: Option<usize> = None;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = line
                .split_once(|c: char| c.is_ascii_whitespace())
                .unwrap_or((line, ""));
            let directive = Directive {
                file: path,
                line: index + 1,
                name,
                rest: rest.trim(),
            };
            self.directive(&directive, &mut section, &mut bridge, included)?;
        }
        Ok(())
    }

    fn directive(
        &mut self,
        d: &Directive<'_>,
        section: &mut Section,
        bridge: &mut Option<usize>,
        included: bool,
    ) -> Result<(), ConfigError> {
        if d.name == "include_dir" {
            return self.include_dir(d, included);
        }
        if d.name == "listener" {
            *section = Section::Listener(self.listener(d)?);
            if let Some(b) = bridge.and_then(|i| self.bridges.get_mut(i)) {
                b.interrupt(d);
            }
            return Ok(());
        }
        // A bridge's settings run from its `connection` line to the next one or the end of the
        // file; other directives among them keep their own meaning, as in Mosquitto.
        if d.name == "connection" {
            let new = ConfBridge::start(d, &self.bridges)?;
            self.bridges.push(new);
            *bridge = Some(self.bridges.len() - 1);
            return Ok(());
        }
        if bridge_parse::is_conf_directive(d.name) {
            let Some(b) = bridge.and_then(|i| self.bridges.get_mut(i)) else {
                return Err(d.error(bridge_parse::OUTSIDE_BRIDGE));
            };
            let warnings = b.directive(d)?;
            self.config.warnings.extend(warnings);
            return Ok(());
        }
        if self.listener_option(d, *section)?
            || self.tls_option(d, *section)?
            || self.security_option(d, *section)?
            || self.broker_option(d, *section)?
            || self.persistence_option(d)?
            || self.general_option(d)?
        {
            return Ok(());
        }
        match unsupported(d.name) {
            Some(Unsupported::Error(message)) => Err(d.error(message)),
            Some(Unsupported::Warning(message)) => {
                self.config.warnings.push(d.warning(message));
                Ok(())
            }
            None => Err(d.error("unknown directive")),
        }
    }

    // --- Listeners ----------------------------------------------------------------------------

    /// `listener PORT [ADDRESS]`; returns the new listener's index.
    fn listener(&mut self, d: &Directive<'_>) -> Result<usize, ConfigError> {
        let mut tokens = d
            .rest
            .split_ascii_whitespace()
            .take_while(|t| !t.starts_with('#'));
        let port = tokens.next().ok_or_else(|| d.error("missing value"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .ok_or_else(|| d.error(format!("expected a port between 1 and 65535, got `{port}`")))?;
        let host = tokens.next();
        let unix = if port == 0 {
            // As in Mosquitto: port 0 and a path make a Unix socket listener.
            let path = host.ok_or_else(|| {
                d.error("port 0 makes a Unix socket listener: give the socket's path after it")
            })?;
            let path = relative_to(d.file, Path::new(path));
            check_unix_path(&path).map_err(|m| d.error(m))?;
            Some(path)
        } else {
            None
        };
        if let Some(extra) = tokens.next() {
            return Err(d.error(format!("unexpected `{extra}` after the address")));
        }
        self.listeners.push(Listener {
            port,
            host: host.map(str::to_owned),
            unix,
            at: d.location(),
            options: ListenerOptions::default(),
        });
        Ok(self.listeners.len() - 1)
    }

    /// Directives that configure a listener; `false` if `d` is not one of them.
    fn listener_option(
        &mut self,
        d: &Directive<'_>,
        section: Section,
    ) -> Result<bool, ConfigError> {
        match d.name {
            "port" => {
                let port = d.int_in(1, 65535)?;
                if self.default.port.replace(port).is_some() {
                    let message =
                        "the default listener's port is set more than once; the last one is used";
                    self.config.warnings.push(d.warning(message));
                }
                self.default.at.get_or_insert_with(|| d.location());
            }
            "bind_address" => {
                self.default.host = Some(d.value()?.to_owned());
                // Errors about the default listener's address are best shown here.
                self.default.at = Some(d.location());
            }
            "max_connections" => {
                // Mosquitto only enforces positive limits: 0 and negative values mean none.
                let n = d.int()?;
                let limit = usize::try_from(n).ok().filter(|n| *n > 0);
                self.options(section).max_connections = Some((limit, d.location()));
            }
            "socket_domain" => {
                let family = match d.value()? {
                    "ipv4" => Family::V4,
                    "ipv6" => Family::V6,
                    other => return Err(d.error(format!("expected ipv4 or ipv6, got `{other}`"))),
                };
                self.options(section).family = Some((family, d.location()));
            }
            "mount_point" => {
                // As in Mosquitto: only for a listener declared above.
                if matches!(section, Section::General) {
                    return Err(
                        d.error("must follow the `listener` line of the listener it is meant for")
                    );
                }
                let mount_point = d.text()?;
                check_mount_point(mount_point).map_err(|m| d.error(m))?;
                if let Some(message) = mount_point_warning(mount_point) {
                    self.config.warnings.push(d.warning(message));
                }
                self.options(section).mount_point = Some((mount_point.to_owned(), d.location()));
            }
            "enable_proxy_protocol" => {
                let versions = match d.value()? {
                    "1" => ProxyVersions::V1,
                    "2" => ProxyVersions::V2,
                    other => return Err(d.error(format!("expected 1 or 2, got `{other}`"))),
                };
                self.options(section).proxy = Some((versions, d.location()));
            }
            "proxy_protocol_v2_require_tls" => {
                let on = d.bool()?;
                self.options(section).proxy_require_tls = Some((on, d.location()));
            }
            "protocol" => {
                let websockets = match d.value()? {
                    "mqtt" => false,
                    "websockets" => true,
                    other => {
                        return Err(d.error(format!("expected mqtt or websockets, got `{other}`")));
                    }
                };
                self.options(section).websockets = websockets.then(|| d.location());
                if websockets && matches!(section, Section::General) {
                    // As in Mosquitto, it makes the default listener exist.
                    self.default.at.get_or_insert_with(|| d.location());
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn options(&mut self, section: Section) -> &mut ListenerOptions {
        match section {
            Section::Listener(i) if i < self.listeners.len() => &mut self.listeners[i].options,
            _ => &mut self.default.options,
        }
    }

    // --- Per-listener security -----------------------------------------------------------------

    /// `per_listener_settings`, and under `per_listener_settings true` the security directives
    /// it makes per listener; `false` if `d` is not one of them, or is global.
    fn security_option(
        &mut self,
        d: &Directive<'_>,
        section: Section,
    ) -> Result<bool, ConfigError> {
        if d.name == "per_listener_settings" {
            let on = d.bool()?;
            if let Some(first) = &self.per_listener {
                return Err(d.error(format!(
                    "already set to true at {}:{}",
                    first.file.display(),
                    first.line
                )));
            }
            if on {
                // Mosquitto's rule: what came before would be global.
                if let Some(first) = &self.security_seen {
                    return Err(d.error(format!(
                        "must come before every other security setting, as in Mosquitto; `{}` \
                         is set at {}:{}",
                        first.name,
                        first.file.display(),
                        first.line
                    )));
                }
                self.per_listener = Some(d.location());
            }
            return Ok(true);
        }
        if !PER_LISTENER_SECURITY.contains(&d.name) {
            return Ok(false);
        }
        self.security_seen.get_or_insert_with(|| d.location());
        if self.per_listener.is_none() {
            return Ok(false);
        }
        let mut warnings = Vec::new();
        let security = &mut self.options(section).security;
        let duplicate = |first: &Location| {
            d.error(format!(
                "already set for this listener at {}:{}",
                first.file.display(),
                first.line
            ))
        };
        match d.name {
            "password_file" => {
                if let Some((_, first)) = &security.password_file {
                    return Err(duplicate(first));
                }
                let path = relative_to(d.file, Path::new(d.text()?));
                let file = super::load_password_file(&path, |m| d.error(m))?;
                security.password_file = Some((file, d.location()));
            }
            "acl_file" => {
                if let Some((_, first)) = &security.acl_file {
                    return Err(duplicate(first));
                }
                let path = relative_to(d.file, Path::new(d.text()?));
                let acl = load_acl(&path, &mut warnings, |m| d.error(m))?;
                let file = LoadedFile {
                    path,
                    contents: acl,
                };
                security.acl_file = Some((file, d.location()));
            }
            "allow_anonymous" => security.allow_anonymous = Some(d.bool()?),
            "allow_zero_length_clientid" => security.allow_zero_length_clientid = Some(d.bool()?),
            _ => security.auto_id_prefix = Some(d.text()?.to_owned()),
        }
        security.first.get_or_insert_with(|| d.location());
        self.config.warnings.append(&mut warnings);
        Ok(true)
    }

    // --- Broker limits and options --------------------------------------------------------------

    /// Directives that fill `BrokerConfig`; `false` if `d` is not one of them.
    fn broker_option(&mut self, d: &Directive<'_>, section: Section) -> Result<bool, ConfigError> {
        if self.broker_limit(d)? {
            return Ok(true);
        }
        let broker = &mut self.config.broker;
        match d.name {
            "max_qos" | "maximum_qos" => {
                let qos: u8 = d.int_in(0, 2)?;
                broker.max_qos = QoS::from_u8(qos).unwrap_or(QoS::ExactlyOnce);
                self.note_broker_wide(d, section);
            }
            "max_topic_alias" => {
                broker.max_topic_alias = d.int_in(0, 65535)?;
                self.note_broker_wide(d, section);
            }
            "persistent_client_expiration" => {
                let expiration = parse_mosquitto_duration(d.value()?).map_err(|m| d.error(m))?;
                broker.persistent_client_expiration = Some(expiration);
            }
            "retain_available" => broker.retain_available = d.bool()?,
            "queue_qos0_messages" => broker.queue_qos0_messages = d.bool()?,
            "allow_zero_length_clientid" => broker.allow_zero_length_clientid = d.bool()?,
            "auto_id_prefix" => broker.auto_id_prefix = d.text()?.to_owned(),
            // One prefix, the rest of the line; a second line is an error, as in Mosquitto.
            "clientid_prefixes" => {
                let prefix = d.text()?.to_owned();
                if let Some(first) = broker.clientid_prefixes.first() {
                    return Err(d.error(format!(
                        "already set to `{first}`; Mosquitto allows only one prefix"
                    )));
                }
                broker.clientid_prefixes = vec![prefix];
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The numeric limits of `BrokerConfig`; `false` if `d` is not one of them.
    fn broker_limit(&mut self, d: &Directive<'_>) -> Result<bool, ConfigError> {
        let broker = &mut self.config.broker;
        match d.name {
            "max_packet_size" => {
                let expected = format!(
                    "0 (no limit) or an integer between {MIN_PACKET_SIZE} and {MAX_PACKET_SIZE}"
                );
                let n = d.int_described(&expected)?;
                // 0 is Mosquitto's documented "no limit" (its default).
                broker.max_packet_size = match n {
                    0 => MAX_PACKET_SIZE,
                    _ => u32::try_from(n)
                        .ok()
                        .filter(|size| (MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(size))
                        .ok_or_else(|| d.invalid(&expected))?,
                };
                self.max_packet_size_set = true;
            }
            "message_size_limit" => {
                let limit: u32 = d.int_in(0, MAX_PAYLOAD)?;
                self.message_size_limit = (limit > 0).then(|| (limit, d.location()));
            }
            "max_inflight_messages" => {
                // Mosquitto reads 0 and negative values as "no limit": the protocol's maximum.
                let expected = "an integer up to 65535 (0 for no limit)";
                let n = d.int_described(expected)?;
                if n > 65535 {
                    return Err(d.invalid(expected));
                }
                broker.max_inflight_messages =
                    u16::try_from(n).ok().filter(|n| *n > 0).unwrap_or(u16::MAX);
            }
            // 0 means no limit in both brokers; Mosquitto reads negative values so too.
            "max_queued_messages" => {
                broker.max_queued_messages = usize::try_from(d.int()?).unwrap_or(0);
            }
            "max_queued_bytes" => broker.max_queued_bytes = usize::try_from(d.int()?).unwrap_or(0),
            "max_keepalive" => {
                let keepalive: u16 = d.int_in(0, 65535)?;
                broker.max_keepalive = keepalive;
                if keepalive == 0 {
                    broker.max_keepalive = u16::MAX;
                    let message =
                        "0 (let clients disable keep alive) is not supported; using 65535";
                    self.config.warnings.push(d.warning(message));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Remembers a listener option of Mosquitto that Tern applies to the whole broker.
    fn note_broker_wide(&mut self, d: &Directive<'_>, section: Section) {
        if matches!(section, Section::Listener(_)) {
            self.broker_wide_in_listener.push(d.location());
        }
    }

    // --- Persistence ----------------------------------------------------------------------------

    /// Persistence directives; `false` if `d` is not one of them. Tern is durable by default:
    /// a file without `persistence` keeps it on.
    fn persistence_option(&mut self, d: &Directive<'_>) -> Result<bool, ConfigError> {
        let persistence = &mut self.config.persistence;
        match d.name {
            // `retained_persistence` is a synonym of `persistence` in Mosquitto (both set the same
            // option there): it covers sessions too, not only retained messages.
            "persistence" | "retained_persistence" => persistence.enabled = d.bool()?,
            "persistence_location" => persistence.data_dir = data_dir(d.text()?),
            "persistence_file" => {
                d.text()?;
                let message = "ignored: Tern keeps its own store file, `tern.db`, in the data \
                               directory (`persistence_location`)";
                self.config.warnings.push(d.warning(message));
            }
            // Warned about at the end, when it is known whether persistence is on.
            "autosave_interval" => {
                d.int()?;
                self.autosave_at.push(d.location());
            }
            "autosave_on_changes" => {
                d.bool()?;
                self.autosave_at.push(d.location());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    // --- Everything else that Tern supports or deliberately ignores -----------------------------

    /// General directives; `false` if `d` is not one of them.
    fn general_option(&mut self, d: &Directive<'_>) -> Result<bool, ConfigError> {
        let warning = match d.name {
            "allow_anonymous" => {
                self.config.allow_anonymous = Some(d.bool()?);
                None
            }
            "sys_interval" => {
                self.config.sys_interval = Duration::from_secs(d.int_in(0, 65535)?);
                None
            }
            "connection_messages" => {
                self.config.log.connection_messages = Some(d.bool()?);
                None
            }
            "log_timestamp" => {
                self.config.log.timestamps = Some(d.bool()?);
                None
            }
            "log_type" => {
                for log_type in d
                    .text()?
                    .split_ascii_whitespace()
                    .take_while(|t| !t.starts_with('#'))
                {
                    self.log_types.add(log_type).map_err(|m| d.error(m))?;
                }
                None
            }
            "log_dest" => self.log_dest(d)?,
            "log_timestamp_format" => {
                let format = d.text()?;
                check_timestamp_format(format).map_err(|m| d.error(m))?;
                self.config.log.timestamp_format = Some(format.to_owned());
                None
            }
            "log_facility" => {
                self.config.log.facility = Some(d.int_in(0, 7)?);
                self.log_facility_at = Some(d.location());
                None
            }
            "pid_file" => {
                // Written at start, after the listeners are bound: a directory that does not
                // exist is an error then (not now: `check-config` runs on other machines too).
                let path = relative_to(d.file, Path::new(d.text()?));
                self.config.process.pid_file = Some(path);
                None
            }
            "user" => {
                self.config.process.user = Some(d.value()?.to_owned());
                None
            }
            "password_file" => {
                self.password_file(d)?;
                None
            }
            "acl_file" => {
                self.acl_file(d)?;
                None
            }
            // Tern always sets TCP_NODELAY.
            "set_tcp_nodelay" => d.bool().map(|_| None)?,
            // The publisher's write access is checked when it publishes; every delivery of a
            // retained message checks the receiver's read access under the rules in force.
            "check_retain_source" => d.bool().map(|_| None)?,
            "upgrade_outgoing_qos" => d.bool()?.then_some(
                "not supported yet; messages are delivered at the lower of the published and the \
                 granted QoS",
            ),
            "memory_limit" => (d.int()? > 0).then_some("not enforced yet; this limit is ignored"),
            "max_inflight_bytes" => (d.int()? > 0).then_some(
                "not enforced yet; only max_inflight_messages limits the messages in flight",
            ),
            _ => return Ok(false),
        };
        if let Some(message) = warning {
            self.config.warnings.push(d.warning(message));
        }
        Ok(true)
    }

    /// `acl_file PATH`: reads and parses the ACL file now, so that its errors stop the start.
    /// A relative path is relative to the directory of the file that names it (Mosquitto: to
    /// the current directory). Only one `acl_file` is allowed, as in Mosquitto.
    fn acl_file(&mut self, d: &Directive<'_>) -> Result<(), ConfigError> {
        if let Some(first) = &self.acl_file_at {
            return Err(d.error(format!(
                "already set at {}:{}; there can be only one ACL file",
                first.file.display(),
                first.line
            )));
        }
        let path = relative_to(d.file, Path::new(d.text()?));
        let acl = load_acl(&path, &mut self.config.warnings, |m| d.error(m))?;
        self.config.broker.acl = Some(acl);
        self.config.acl_file = Some(path);
        self.acl_file_at = Some(d.location());
        Ok(())
    }

    /// `password_file PATH`: reads and parses the password file now, so that its errors stop
    /// the start. Relative paths as for `acl_file`; only one is allowed.
    fn password_file(&mut self, d: &Directive<'_>) -> Result<(), ConfigError> {
        if let Some(first) = &self.config.password_file {
            return Err(d.error(format!(
                "already set to `{}`; there can be only one password file",
                first.path.display()
            )));
        }
        let path = relative_to(d.file, Path::new(d.text()?));
        self.config.password_file = Some(super::load_password_file(&path, |m| d.error(m))?);
        Ok(())
    }

    /// `include_dir DIR`: reads `DIR/*.conf` in Mosquitto's order. A relative `DIR` is relative
    /// to the directory of the file that names it, so that the result does not depend on where
    /// Tern is started from.
    fn include_dir(&mut self, d: &Directive<'_>, included: bool) -> Result<(), ConfigError> {
        if included {
            // Mosquitto silently skips it: only the main file may include.
            let message = "ignored: only the main configuration file may include others";
            self.config.warnings.push(d.warning(message));
            return Ok(());
        }
        let dir = relative_to(d.file, Path::new(d.text()?));
        let files = conf_files(&dir).map_err(|e| {
            d.error(format!(
                "cannot read the directory `{}`: {e}",
                dir.display()
            ))
        })?;
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                ConfigError::whole_file(&file, format!("cannot read the file: {e}"))
            })?;
            self.read_file(&file, &text, true)?;
        }
        Ok(())
    }

    // --- The end ------------------------------------------------------------------------------

    fn finish(mut self) -> Result<Config, ConfigError> {
        self.warn_general_tls();
        self.config.listeners = self.resolve_listeners()?;
        if self.config.listeners.len() > 1 {
            for at in &self.broker_wide_in_listener {
                let message =
                    "applies to every listener in Tern, not only to the listener above it";
                self.config.warnings.push(at.warning(message));
            }
        }
        self.apply_message_size_limit();
        self.warn_autosave();
        let bridges = std::mem::take(&mut self.bridges);
        self.config.bridges = bridge_parse::finish_conf(bridges, &mut self.config.warnings)?;
        self.config.log.level = self.log_types.level();
        self.config.log.dest = self.log_dests.take();
        if let Some(at) = &self.log_facility_at {
            let syslog = self
                .config
                .log
                .dest
                .as_ref()
                .is_some_and(|d| d.contains(&LogDest::Syslog));
            if !syslog {
                let message = "has no effect without `log_dest syslog`";
                self.config.warnings.push(at.warning(message));
            }
        }
        Ok(self.config)
    }

    /// `autosave_*` lines: Mosquitto writes its state every so often; Tern commits it before
    /// acknowledging it, so there is nothing to schedule.
    fn warn_autosave(&mut self) {
        let message = if self.config.persistence.enabled {
            "ignored: meaningless with continuous durability: every acknowledged message is \
             committed before its acknowledgement"
        } else {
            "ignored: persistence is off (`persistence false`)"
        };
        for at in self.autosave_at.drain(..) {
            self.config.warnings.push(at.warning(message));
        }
    }

    /// The default listener (if `port` or `bind_address` defines it) then the `listener`
    /// lines, each resolved to an address, refusing two listeners on the same address.
    fn resolve_listeners(&mut self) -> Result<Vec<ListenerConfig>, ConfigError> {
        let mut specs = Vec::new();
        let general = self.default.options.clone();
        let has_default = self.default.at.is_some();
        if let Some(at) = self.default.at.take() {
            let port = self.default.port.unwrap_or(DEFAULT_PORT);
            specs.push((port, self.default.host.take(), None, at, general.clone()));
        }
        if !has_default && let Some(first) = &general.security.first {
            // Mosquitto would open a default listener on port 1883 for some of them and
            // ignore the others; neither is what the author of the file meant.
            return Err(first.error(
                "with `per_listener_settings true`, security settings belong to a listener: \
                 move this line after the `listener` line it is meant for (or define the \
                 default listener with `port`)",
            ));
        }
        let general_proxy = (general.proxy.as_ref().map(|(_, at)| at))
            .or(general.proxy_require_tls.as_ref().map(|(_, at)| at));
        if !has_default && let Some(at) = general_proxy {
            // Applied to every listener, it would make each of them expect a header.
            return Err(at.error(
                "must follow the `listener` line of the listener it is meant for (or define the \
                 default listener with `port`)",
            ));
        }
        for l in self.listeners.drain(..) {
            if l.unix.is_some()
                && let Some((_, at)) = &l.options.family
            {
                let message = "has no effect on a Unix socket listener";
                self.config.warnings.push(at.warning(message));
            }
            // Without a default listener, options written before the first `listener` line
            // would be lost; Tern makes them the defaults of every listener instead (except
            // security settings, refused above, TLS settings and the mount point).
            let options = if has_default {
                l.options
            } else {
                l.options.or(&general)
            };
            specs.push((l.port, l.host, l.unix, l.at, options));
        }
        if specs.is_empty() {
            self.warn_unused_general_options(&general);
        }
        let mut seen: HashMap<ListenAddr, Location> = HashMap::new();
        let mut listeners = Vec::with_capacity(specs.len());
        for (port, host, unix, at, options) in specs {
            let family = options.family.as_ref().map(|(f, _)| *f);
            let bind = match (unix, host) {
                (Some(path), _) => ListenAddr::Unix(UnixSocketConfig { path, mode: None }),
                (None, Some(host)) => {
                    ListenAddr::Tcp(resolve_host(&host, port, family).map_err(|m| at.error(m))?)
                }
                (None, None) => ListenAddr::Tcp(SocketAddr::new(unspecified(family), port)),
            };
            if let Some(first) = seen.get(&bind) {
                let message = format!(
                    "{bind} is already used by the listener at {}:{}",
                    first.file.display(),
                    first.line
                );
                return Err(at.error(message));
            }
            let tls = options.tls.resolve(&at, &mut self.config.warnings)?;
            seen.insert(bind.clone(), at);
            let mut settings = options.security.settings(options.mount_point.as_ref());
            settings.proxy_protocol = options.proxy_protocol()?;
            let max_connections = options.max_connections.and_then(|(limit, _)| limit);
            // Mosquitto upgrades on every path: so does a listener of a mosquitto.conf.
            let websocket = options
                .websockets
                .as_ref()
                .map(|_| WebSocketSettings::any_path());
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

    /// Listener options with no listener to apply to: Tern then runs its built-in loopback
    /// listener, which they do not configure.
    fn warn_unused_general_options(&mut self, general: &ListenerOptions) {
        let message = "has no effect: no listener is configured, so Tern uses its built-in \
                       127.0.0.1:1883 listener";
        if let Some((_, at)) = &general.max_connections {
            self.config.warnings.push(at.warning(message));
        }
        if let Some((_, at)) = &general.family {
            self.config.warnings.push(at.warning(message));
        }
    }

    fn apply_message_size_limit(&mut self) {
        let Some((limit, at)) = self.message_size_limit.take() else {
            return;
        };
        let message = if self.max_packet_size_set {
            "deprecated and ignored: `max_packet_size` is set too".to_owned()
        } else {
            let size = limit
                .saturating_add(MESSAGE_SIZE_HEADROOM)
                .min(MAX_PACKET_SIZE);
            self.config.broker.max_packet_size = size;
            format!(
                "deprecated: Tern limits whole packets, so this is applied as `max_packet_size \
                 {size}` (the limit plus room for the headers and the longest topic)"
            )
        };
        self.config.warnings.push(at.warning(message));
    }
}

/// The address that listens on every interface of `family`. Mosquitto opens one socket per
/// family for a `listener` without address; Tern opens one socket, IPv4 unless
/// `socket_domain ipv6` asks otherwise.
fn unspecified(family: Option<Family>) -> IpAddr {
    match family {
        Some(Family::V6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// `persistence_location DIR`: Mosquitto glues the file name to it, so it needs a trailing
/// slash there; Tern accepts it with or without. A relative path is relative to the working
/// directory, as in Mosquitto.
fn data_dir(text: &str) -> PathBuf {
    let trimmed = text.trim_end_matches('/');
    PathBuf::from(if trimmed.is_empty() { "/" } else { trimmed })
}

impl Reader {
    /// `log_dest stdout|stderr|file PATH|syslog|topic|dlt|none`: the destinations add up, as
    /// in Mosquitto; `none` drops those given so far. `topic` and `dlt` are accepted with a
    /// warning.
    fn log_dest(&mut self, d: &Directive<'_>) -> Result<Option<&'static str>, ConfigError> {
        let text = d.text()?;
        let (kind, rest) = text
            .split_once(|c: char| c.is_ascii_whitespace())
            .map_or((text, ""), |(k, r)| (k, r.trim()));
        let dest = match kind {
            "stdout" => LogDest::Stdout,
            "stderr" => LogDest::Stderr,
            "syslog" => LogDest::Syslog,
            "file" => {
                if rest.is_empty() {
                    return Err(d.error("missing file name after `file`"));
                }
                // Opened at start (and on reload); an error then names the file.
                LogDest::File(relative_to(d.file, Path::new(rest)))
            }
            "none" => {
                self.log_dests = Some(Vec::new());
                return Ok(None);
            }
            "topic" => {
                return Ok(Some(
                    "ignored: Tern does not publish its log lines on `$SYS/broker/log/#`; use \
                     another destination (or the admin API's event stream)",
                ));
            }
            "dlt" => return Ok(Some("ignored: Tern does not log to DLT")),
            other => {
                return Err(d.error(format!(
                    "expected stdout, stderr, file PATH, syslog, topic, dlt or none, got `{other}`"
                )));
            }
        };
        if !matches!(dest, LogDest::File(_)) && !rest.is_empty() && !rest.starts_with('#') {
            return Err(d.error(format!("unexpected `{rest}` after `{kind}`")));
        }
        let dests = self.log_dests.get_or_insert_with(Vec::new);
        if !dests.contains(&dest) {
            dests.push(dest);
        }
        Ok(None)
    }
}

/// The `*.conf` files of `dir`, in Mosquitto's order: case-insensitive, then upper case first
/// among names that differ only in case. A file named just `.conf` is skipped, as there.
fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_conf = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.len() > ".conf".len() && n.ends_with(".conf"));
        if is_conf && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| mosquitto_order(a, b));
    Ok(files)
}

fn mosquitto_order(a: &Path, b: &Path) -> Ordering {
    let key = |p: &Path| -> Vec<(u8, u8)> {
        let name = p
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .unwrap_or_default();
        name.into_iter()
            .map(|c| (c.to_ascii_uppercase(), c))
            .collect()
    };
    key(a).cmp(&key(b))
}

// ---------------------------------------------------------------------------------------------
// TLS.

/// A listener's TLS directives, each with where it was written.
#[derive(Debug, Clone, Default)]
struct TlsDirectives {
    certfile: Option<(PathBuf, Location)>,
    keyfile: Option<(PathBuf, Location)>,
    cafile: Option<(PathBuf, Location)>,
    capath: Option<(PathBuf, Location)>,
    crlfile: Option<(PathBuf, Location)>,
    require_certificate: Option<(bool, Location)>,
    use_identity_as_username: Option<(bool, Location)>,
    use_subject_as_username: Option<(bool, Location)>,
    tls_version: Option<(TlsVersion, Location)>,
    ciphers: Option<(String, Location)>,
    ciphers_tls13: Option<(String, Location)>,
    handshake_timeout: Option<(Duration, Location)>,
    /// The first TLS directive of the listener.
    first: Option<Location>,
}

impl Reader {
    /// TLS directives, which configure the listener above them (or the default listener);
    /// `false` if `d` is not one of them.
    fn tls_option(&mut self, d: &Directive<'_>, section: Section) -> Result<bool, ConfigError> {
        let path = |d: &Directive<'_>| -> Result<(PathBuf, Location), ConfigError> {
            Ok((relative_to(d.file, Path::new(d.text()?)), d.location()))
        };
        let mut warning = None;
        let tls = &mut self.options(section).tls;
        match d.name {
            "certfile" => tls.certfile = Some(path(d)?),
            "keyfile" => tls.keyfile = Some(path(d)?),
            "cafile" => tls.cafile = Some(path(d)?),
            "capath" => tls.capath = Some(path(d)?),
            "crlfile" => tls.crlfile = Some(path(d)?),
            "require_certificate" => tls.require_certificate = Some((d.bool()?, d.location())),
            "use_identity_as_username" => {
                tls.use_identity_as_username = Some((d.bool()?, d.location()));
            }
            "use_subject_as_username" => {
                tls.use_subject_as_username = Some((d.bool()?, d.location()));
            }
            "tls_version" => {
                let value = d.value()?;
                let version = match TlsVersion::parse(value) {
                    Ok(v) => v,
                    Err(e @ ParseVersionError::TooOld) => {
                        warning = Some(format!("{}; TLS 1.2 is the minimum", e.message(value)));
                        TlsVersion::Tls12
                    }
                    Err(e) => return Err(d.error(e.message(value))),
                };
                tls.tls_version = Some((version, d.location()));
            }
            "ciphers" => tls.ciphers = Some((d.text()?.to_owned(), d.location())),
            "ciphers_tls1.3" => tls.ciphers_tls13 = Some((d.text()?.to_owned(), d.location())),
            // Tern's own: Mosquitto has no handshake deadline.
            "tls_handshake_timeout" => {
                let seconds: u64 = d.int_in(1, 3600)?;
                tls.handshake_timeout = Some((Duration::from_secs(seconds), d.location()));
            }
            "tls_keyform" => match d.value()? {
                "pem" => return Ok(true),
                "engine" => return Err(d.error(TLS_ENGINE)),
                other => return Err(d.error(format!("expected pem or engine, got `{other}`"))),
            },
            _ => return Ok(false),
        }
        tls.first.get_or_insert_with(|| d.location());
        if let Some(message) = warning {
            self.config.warnings.push(d.warning(message));
        }
        if matches!(section, Section::General) {
            // As in Mosquitto, TLS settings in the general section make the default listener
            // (port 1883 unless `port` says otherwise) exist.
            self.default.at.get_or_insert_with(|| d.location());
        }
        Ok(true)
    }
}

impl Reader {
    /// TLS directives of the general section configure the default listener, as in Mosquitto,
    /// not the `listener` lines: worth a warning when there are such lines.
    fn warn_general_tls(&mut self) {
        if let Some(first) = &self.default.options.tls.first
            && !self.listeners.is_empty()
        {
            let port = self.default.port.unwrap_or(DEFAULT_PORT);
            let message = format!(
                "TLS settings before any `listener` line configure the default listener (port \
                 {port}), as in Mosquitto, not the `listener` lines; move them after the \
                 `listener` line they are meant for"
            );
            self.config.warnings.push(first.warning(message));
        }
    }
}

impl TlsDirectives {
    /// The listener's TLS settings, with every file read and checked; `None` for a plain
    /// listener. `at` is the listener's own line.
    fn resolve(
        &self,
        at: &Location,
        warnings: &mut Vec<String>,
    ) -> Result<Option<TlsConfig>, ConfigError> {
        let Some(first) = &self.first else {
            return Ok(None);
        };
        let (certfile, keyfile) = match (&self.certfile, &self.keyfile) {
            (Some((c, _)), Some((k, _))) => (c.clone(), k.clone()),
            (Some((_, loc)), None) => {
                return Err(loc.error(
                    "`keyfile` is missing: a TLS listener needs both `certfile` and `keyfile`",
                ));
            }
            (None, Some((_, loc))) => {
                return Err(loc.error(
                    "`certfile` is missing: a TLS listener needs both `certfile` and `keyfile`",
                ));
            }
            (None, None) => {
                return Err(first.error(
                    "needs `certfile` and `keyfile` on the same listener: without them the \
                     listener would not use TLS",
                ));
            }
        };
        let mut tls = TlsConfig::new(certfile, keyfile);
        tls.cafile = self.cafile.as_ref().map(|(p, _)| p.clone());
        tls.capath = self.capath.as_ref().map(|(p, _)| p.clone());
        tls.crlfile = self.crlfile.as_ref().map(|(p, _)| p.clone());
        tls.require_certificate = self.require_certificate.as_ref().is_some_and(|(v, _)| *v);
        let identity = self
            .use_identity_as_username
            .as_ref()
            .is_some_and(|(v, _)| *v);
        let subject = self.use_subject_as_username.as_ref().filter(|(v, _)| *v);
        if identity && let Some((_, loc)) = subject {
            let message = "ignored: `use_identity_as_username` is set too and wins, as in \
                           Mosquitto";
            warnings.push(loc.warning(message));
        }
        tls.identity = if identity {
            CertificateIdentity::CommonName
        } else if subject.is_some() {
            CertificateIdentity::Subject
        } else {
            CertificateIdentity::None
        };
        if let Some((v, _)) = &self.tls_version {
            tls.min_version = *v;
        }
        tls.ciphers = self.ciphers.as_ref().map(|(v, _)| v.clone());
        tls.ciphers_tls13 = self.ciphers_tls13.as_ref().map(|(v, _)| v.clone());
        tls.handshake_timeout = self.handshake_timeout.as_ref().map(|(v, _)| *v);
        tls.check().map_err(|e| {
            let loc = match e.key {
                TlsKey::Certfile => self.certfile.as_ref().map(|(_, l)| l),
                TlsKey::Keyfile => self.keyfile.as_ref().map(|(_, l)| l),
                TlsKey::Cafile => self.cafile.as_ref().map(|(_, l)| l),
                TlsKey::Capath => self.capath.as_ref().map(|(_, l)| l),
                TlsKey::Crlfile => self.crlfile.as_ref().map(|(_, l)| l),
                TlsKey::RequireCertificate => self.require_certificate.as_ref().map(|(_, l)| l),
                TlsKey::UseIdentityAsUsername => {
                    self.use_identity_as_username.as_ref().map(|(_, l)| l)
                }
                TlsKey::UseSubjectAsUsername => {
                    self.use_subject_as_username.as_ref().map(|(_, l)| l)
                }
                TlsKey::Ciphers => self.ciphers.as_ref().map(|(_, l)| l),
                TlsKey::CiphersTls13 => self.ciphers_tls13.as_ref().map(|(_, l)| l),
                TlsKey::TlsVersion => self.tls_version.as_ref().map(|(_, l)| l),
            };
            loc.unwrap_or(at).error(e.to_string())
        })?;
        Ok(Some(tls))
    }
}

// ---------------------------------------------------------------------------------------------
// Directives Tern does not implement.

enum Unsupported {
    /// Ignoring the directive would make the broker more open than the file asks for.
    Error(&'static str),
    /// The directive can be ignored safely; the message says what happens instead.
    Warning(&'static str),
}

const TLS_PSK: &str = "TLS-PSK is not supported yet; Tern refuses to start rather than accept \
                       unencrypted connections where this file asks for TLS";
const TLS_ENGINE: &str = "TLS engines (hardware keys) are not supported; Tern refuses to start \
                          rather than run without the key this file names";
const PLUGINS: &str = "plugins are not supported yet; Tern refuses to start rather than run \
                       without the checks the plugin would make";
const CLIENT_IDS: &str = "not supported yet; Tern refuses to start rather than accept client \
                          ids this directive would refuse";

fn unsupported(name: &str) -> Option<Unsupported> {
    use Unsupported::{Error, Warning};
    let status = match name {
        "tls_engine" | "tls_engine_kpass_sha1" => Error(TLS_ENGINE),
        "psk_file" | "psk_hint" => Error(TLS_PSK),
        "plugin" | "auth_plugin" | "global_plugin" | "auth_plugin_deny_special_chars" => {
            Error(PLUGINS)
        }
        n if n.starts_with("plugin_opt_") || n.starts_with("auth_opt_") => Error(PLUGINS),
        "use_username_as_clientid" => Error(CLIENT_IDS),
        "bind_interface" => Error(
            "not supported yet; write the interface's address in `listener PORT ADDRESS` \
             instead, or Tern would listen on every interface",
        ),
        "http_dir" => Warning("ignored: Tern does not serve files over HTTP"),
        "websockets_log_level" => {
            Warning("ignored: Tern logs WebSocket upgrades with its other connection messages")
        }
        "websockets_headers_size" => {
            Warning("ignored: Tern accepts WebSocket upgrade requests of up to 8 KiB")
        }
        "dhparamfile" => Warning("ignored: Tern does not use Diffie-Hellman parameter files"),
        "allow_duplicate_messages" => Warning("ignored: deprecated in Mosquitto 2"),
        "retry_interval" => Warning("ignored: removed from Mosquitto in version 1.6"),
        _ => return None,
    };
    Some(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_order_is_mosquittos() {
        let mut names = vec![
            "b.conf", "B.conf", "a.conf", "A2.conf", "10.conf", "9.conf", "a_b.conf",
        ];
        names.sort_by(|a, b| mosquitto_order(Path::new(a), Path::new(b)));
        // Digits sort before letters, '_' (0x5F) after upper-cased letters, and of two names
        // equal but for case the upper-case one comes first.
        assert_eq!(
            names,
            [
                "10.conf", "9.conf", "A2.conf", "a.conf", "a_b.conf", "B.conf", "b.conf"
            ]
        );
    }

    #[test]
    fn log_types_keep_the_most_verbose() {
        let level = |types: &[&str]| {
            let mut acc = LogTypes::default();
            for t in types {
                acc.add(t).expect("valid type");
            }
            acc.level()
        };
        assert_eq!(level(&[]), None);
        assert_eq!(level(&["error"]), Some("error".to_owned()));
        assert_eq!(level(&["error", "warning"]), Some("warn".to_owned()));
        assert_eq!(level(&["notice"]), Some("info".to_owned()));
        assert_eq!(level(&["information", "error"]), Some("info".to_owned()));
        assert_eq!(level(&["subscribe"]), Some("debug".to_owned()));
        assert_eq!(level(&["debug", "all"]), Some("trace".to_owned()));
        assert_eq!(level(&["debug", "none"]), Some("off".to_owned()));
        assert_eq!(level(&["none", "warning"]), Some("warn".to_owned()));
    }
}
