//! Reading bridges into [`BridgeConfig`]: the `[[bridges]]` tables of the TOML format, the
//! `connection` blocks of a `mosquitto.conf`, and the checks both share.
//!
//! ```toml
//! [[bridges]]
//! name = "cloud"
//! address = ["broker.example.com:8883", "backup.example.com:8883"]
//! protocol = "mqttv50"
//! topics = [
//!     "sensors/# out 1 \"\" site1/",                            # Mosquitto's `topic` syntax
//!     { pattern = "commands/#", direction = "in", qos = 1 },   # or a table
//! ]
//! tls = { cafile = "ca.pem" }
//! ```
//!
//! In a `mosquitto.conf`, a bridge's settings run from its `connection NAME` line to the next
//! `connection` line or the end of the file, as in Mosquitto 2.0: nothing else ends them (a
//! `listener` line does not, nor do global directives, which keep their global meaning), and a
//! bridge directive with no `connection` line above it in the same file is an error. Values
//! follow Mosquitto's rules, including its silent corrections (a `keepalive_interval` under 5
//! becomes 5...), which Tern makes with a warning.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use tern_codec::{ProtocolVersion, QoS, is_valid_topic_filter, is_valid_topic_name};
use toml::Spanned;

use super::bridge::{
    BridgeAddress, BridgeConfig, BridgeDirection, BridgeStart, BridgeTls, BridgeTopic,
};
use super::listener::{VersionToken, parse_protocol_version};
use super::mosquitto::Directive;
use super::toml_format::{Doc, DurationValue, Int, Table};
use super::{ConfigError, relative_to};
use crate::tls::{ParseVersionError, TlsVersion};

/// The remote port when an address has none (Mosquitto's, in both formats without TLS).
pub const DEFAULT_BRIDGE_PORT: u16 = 1883;

/// The remote port of a TOML bridge with `tls` when its address has none. (A `mosquitto.conf`
/// keeps 1883, as Mosquitto does, with a warning.)
pub const DEFAULT_BRIDGE_TLS_PORT: u16 = 8883;

/// The shortest keep-alive Mosquitto allows a bridge (it raises shorter ones to this).
const MIN_KEEP_ALIVE: u64 = 5;

/// Mosquitto's bounds on `restart_timeout`: a constant delay at most an hour, a cap at most
/// two hours.
const MAX_RESTART_CONSTANT: u64 = 3600;
const MAX_RESTART_CAP: u64 = 7200;

/// Where `bridge_tls_use_os_certs true` finds the system's CA certificates.
const SYSTEM_CA_DIR: &str = "/etc/ssl/certs";

impl BridgeConfig {
    /// A bridge named `name` with Mosquitto's defaults, and no address nor topic yet.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            addresses: Vec::new(),
            round_robin: false,
            topics: Vec::new(),
            remote_client_id: None,
            local_client_id: None,
            remote_username: None,
            remote_password: None,
            protocol: ProtocolVersion::V311,
            clean_session: false,
            local_clean_session: false,
            keep_alive: Duration::from_secs(60),
            try_private: true,
            notifications: true,
            notifications_local_only: false,
            notification_topic: None,
            start_type: BridgeStart::Automatic,
            restart_base: Duration::from_secs(5),
            restart_cap: Duration::from_secs(30),
            threshold: 10,
            idle_timeout: Duration::from_secs(60),
            max_queued_messages: None,
            tls: None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values both formats share.

/// Checks a bridge's name: it is a level of `$SYS/broker/connection/NAME/state` and part of
/// client ids, so it must be one non-empty topic level without wildcards or blanks.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name
        .chars()
        .any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "`{name}` cannot be a bridge name: it is a topic level of \
             `$SYS/broker/connection/NAME/state`, so it must not contain `/`, `+`, `#` or blanks"
        ));
    }
    Ok(())
}

/// Parses one remote address, `HOST[:PORT]`: a name or IPv4 address, an IPv6 address in
/// brackets (`[::1]:1883`), or, as Mosquitto reads it, an unbracketed IPv6 address followed by
/// its port (the last `:` starts the port). Returns the address and whether a port was given.
fn parse_address(text: &str, default_port: u16) -> Result<(BridgeAddress, bool), String> {
    let expected = || {
        format!(
            "expected HOST[:PORT] such as `broker.example.com:1883`, `10.0.0.5` or \
             `[::1]:1883`, got `{text}`"
        )
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(expected)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(expected)?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(expected());
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("expected a port between 1 and 65535 in `{text}`"))?,
        ),
    };
    let address = BridgeAddress {
        host: host.to_owned(),
        port: port.unwrap_or(default_port),
    };
    Ok((address, port.is_some()))
}

/// Parses a direction, in any letter case as Mosquitto.
fn parse_direction(text: &str) -> Result<BridgeDirection, String> {
    match text.to_ascii_lowercase().as_str() {
        "out" => Ok(BridgeDirection::Out),
        "in" => Ok(BridgeDirection::In),
        "both" => Ok(BridgeDirection::Both),
        _ => Err(format!("expected in, out or both, got `{text}`")),
    }
}

/// Parses a topic's QoS.
fn parse_qos(text: &str) -> Result<QoS, String> {
    match text {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        _ => Err(format!("expected a QoS of 0, 1 or 2, got `{text}`")),
    }
}

/// `""` is Mosquitto's placeholder for an empty pattern or prefix.
fn unquote_empty(token: &str) -> &str {
    if token == "\"\"" { "" } else { token }
}

/// Parses the value of Mosquitto's `topic` directive: `PATTERN [in|out|both [QOS
/// [LOCAL-PREFIX [REMOTE-PREFIX]]]]`, `""` standing for an empty pattern or prefix. A pattern
/// in double quotes may contain blanks. A `#` word after the pattern starts a comment.
pub(super) fn parse_topic_line(text: &str) -> Result<BridgeTopic, String> {
    let text = text.trim();
    let (pattern, rest) = match text.strip_prefix('"') {
        Some(quoted) if !quoted.starts_with('"') => {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("missing closing quote in `{text}`"))?;
            let rest = &quoted[end + 1..];
            if !rest.is_empty() && !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
                return Err(format!("unexpected `{rest}` after the quoted pattern"));
            }
            (&quoted[..end], rest)
        }
        _ => text
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((text, "")),
    };
    if pattern.is_empty() && text.is_empty() {
        return Err("missing value".to_owned());
    }
    let mut tokens = rest
        .split_ascii_whitespace()
        .take_while(|t| !t.starts_with('#'));
    let mut topic = BridgeTopic {
        pattern: unquote_empty(pattern).to_owned(),
        direction: BridgeDirection::Out,
        qos: QoS::AtMostOnce,
        local_prefix: String::new(),
        remote_prefix: String::new(),
    };
    if let Some(direction) = tokens.next() {
        topic.direction = parse_direction(direction)?;
    }
    if let Some(qos) = tokens.next() {
        topic.qos = parse_qos(qos)?;
    }
    if let Some(local) = tokens.next() {
        unquote_empty(local).clone_into(&mut topic.local_prefix);
    }
    if let Some(remote) = tokens.next() {
        unquote_empty(remote).clone_into(&mut topic.remote_prefix);
    }
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected `{extra}` after the remote prefix"));
    }
    check_topic(&topic)?;
    Ok(topic)
}

/// Checks a topic's remapping, with Mosquitto's rules: prefixes are topic names (no wildcard),
/// each prefix followed by the pattern is a valid topic filter, and an empty pattern needs both
/// prefixes, which are then whole topics.
pub(super) fn check_topic(topic: &BridgeTopic) -> Result<(), String> {
    for (which, prefix) in [
        ("local", &topic.local_prefix),
        ("remote", &topic.remote_prefix),
    ] {
        if prefix.contains(['+', '#']) {
            return Err(format!(
                "the {which} prefix `{prefix}` must not contain wildcards (`+`, `#`)"
            ));
        }
    }
    if topic.pattern.is_empty() {
        if topic.local_prefix.is_empty() || topic.remote_prefix.is_empty() {
            return Err(
                "an empty pattern (`\"\"`) needs both a local and a remote prefix, which are then \
                 the whole local and remote topics"
                    .to_owned(),
            );
        }
        return Ok(());
    }
    for (which, prefix) in [
        ("local", &topic.local_prefix),
        ("remote", &topic.remote_prefix),
    ] {
        let filter = format!("{prefix}{}", topic.pattern);
        if !is_valid_topic_filter(&filter) || filter.starts_with("$share/") {
            let what = if prefix.is_empty() {
                "the pattern".to_owned()
            } else {
                format!("the {which} prefix followed by the pattern")
            };
            return Err(format!(
                "`{filter}` ({what}) is not a valid topic filter: `+` and `#` must fill a whole \
                 level, and `#` must be the last level"
            ));
        }
    }
    Ok(())
}

/// Mosquitto's `bridge_protocol_version` names; TOML also takes the level or version number.
fn parse_protocol_name(text: &str) -> Option<ProtocolVersion> {
    match text {
        "mqttv31" => Some(ProtocolVersion::V31),
        "mqttv311" => Some(ProtocolVersion::V311),
        "mqttv50" | "mqttv5" => Some(ProtocolVersion::V5),
        _ => None,
    }
}

/// Which TLS setting of a bridge an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsField {
    Cafile,
    Capath,
    Certfile,
    Keyfile,
}

/// The error of a TLS file check, without the client library's "connection error" wrapping.
fn client_error(e: tern_client::ClientError) -> String {
    match e {
        tern_client::ClientError::Io(e) => e.to_string(),
        other => other.to_string(),
    }
}

/// Reads every file of a bridge's TLS settings as the bridge will, so that a missing,
/// unreadable or unusable file stops the start with the setting that names it. The CA must be
/// set (checked by the callers, which know where to point).
fn check_tls_files(tls: &BridgeTls) -> Result<(), (TlsField, String)> {
    match (&tls.certfile, &tls.keyfile) {
        (Some(_), None) => {
            return Err((
                TlsField::Certfile,
                "needs a key file too: a client certificate is sent with its private key"
                    .to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                TlsField::Keyfile,
                "needs a certificate file too: the key is that of a client certificate".to_owned(),
            ));
        }
        _ => {}
    }
    let readable = |field: TlsField, path: &Path| -> Result<(), (TlsField, String)> {
        let result = if field == TlsField::Capath {
            std::fs::read_dir(path).map(drop)
        } else {
            std::fs::read(path).map(drop)
        };
        result.map_err(|e| (field, format!("cannot read `{}`: {e}", path.display())))
    };
    let files = [
        (TlsField::Cafile, &tls.cafile),
        (TlsField::Capath, &tls.capath),
        (TlsField::Certfile, &tls.certfile),
        (TlsField::Keyfile, &tls.keyfile),
    ];
    for (field, path) in files {
        if let Some(path) = path {
            readable(field, path)?;
        }
    }
    // The contents: CAs alone first, so that an error is put on the right setting.
    for (field, cafile, capath) in [
        (TlsField::Cafile, tls.cafile.clone(), None),
        (TlsField::Capath, None, tls.capath.clone()),
    ] {
        if cafile.is_none() && capath.is_none() {
            continue;
        }
        let files = tern_client::TlsFiles {
            cafile,
            capath,
            ..tern_client::TlsFiles::default()
        };
        files.load().map_err(|e| (field, client_error(e)))?;
    }
    if let (Some(certfile), Some(_)) = (&tls.certfile, &tls.keyfile) {
        let files = tern_client::TlsFiles {
            cafile: tls.cafile.clone(),
            capath: tls.capath.clone(),
            certfile: tls.certfile.clone(),
            keyfile: tls.keyfile.clone(),
            ..tern_client::TlsFiles::default()
        };
        files.load().map_err(|e| {
            let message = client_error(e);
            let field = if message.starts_with(&*certfile.to_string_lossy()) {
                TlsField::Certfile
            } else {
                TlsField::Keyfile
            };
            (field, message)
        })?;
    }
    Ok(())
}

/// Checks `bridge_tls_version` / `tls.tls_version`: the version to offer at least (`tlsv1.2` or
/// `tlsv1.3`), and a warning when an older one was asked for and TLS 1.2 is used instead.
fn check_tls_version(text: &str) -> Result<(String, Option<String>), String> {
    match TlsVersion::parse(text) {
        Ok(_) => Ok((text.to_owned(), None)),
        Err(e @ ParseVersionError::TooOld) => Ok((
            "tlsv1.2".to_owned(),
            Some(format!("{}; TLS 1.2 is the minimum", e.message(text))),
        )),
        Err(e) => Err(e.message(text)),
    }
}

/// A remote password without a user name is not allowed before MQTT 5 (MQTT-3.1.2-22).
const PASSWORD_WITHOUT_USERNAME: &str = "needs a remote user name too: MQTT 3.1 and 3.1.1 do not \
                                         allow a password without a user name (MQTT 5 does)";

/// The warning for `bridge_insecure true`, as Mosquitto gives one.
const INSECURE: &str = "the remote broker's certificate is not checked against its host name: \
                        anyone with a certificate from the same CA can impersonate it";

/// The warning for `threshold`/`idle_timeout` on a bridge that is not lazy.
const ONLY_LAZY: &str = "has no effect: only `lazy` bridges (`start_type lazy`) use it";

// ---------------------------------------------------------------------------------------------
// mosquitto.conf.

/// Where a directive was written.
#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    line: usize,
    key: String,
}

impl Origin {
    fn of(d: &Directive<'_>) -> Self {
        Self {
            file: d.file.to_owned(),
            line: d.line,
            key: d.name.to_owned(),
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.file, self.line, &self.key, message)
    }

    fn warning(&self, message: impl Into<String>) -> String {
        self.error(message).to_string()
    }

    fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Every bridge directive of a `mosquitto.conf` (Mosquitto 2.0's, and older aliases).
const CONF_DIRECTIVES: &[&str] = &[
    "address",
    "addresses",
    "topic",
    "cleansession",
    "local_cleansession",
    "local_clientid",
    "local_password",
    "local_username",
    "remote_clientid",
    "clientid",
    "remote_password",
    "password",
    "remote_username",
    "username",
    "keepalive_interval",
    "idle_timeout",
    "notifications",
    "notification_topic",
    "notifications_local_only",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "try_private",
];

/// Whether `name` is a directive of a bridge's block (other than `connection`).
pub(super) fn is_conf_directive(name: &str) -> bool {
    name.starts_with("bridge_") || CONF_DIRECTIVES.contains(&name)
}

/// The error for a bridge directive outside a bridge.
pub(super) const OUTSIDE_BRIDGE: &str = "must follow a `connection NAME` line: it configures the \
                                         bridge above it (in the same file), and there is none";

/// A bridge's TLS directives, each with where it was written.
#[derive(Debug, Default)]
struct ConfTls {
    cafile: Option<(PathBuf, Origin)>,
    capath: Option<(PathBuf, Origin)>,
    certfile: Option<(PathBuf, Origin)>,
    keyfile: Option<(PathBuf, Origin)>,
    insecure: Option<(bool, Origin)>,
    version: Option<(String, Origin)>,
    alpn: Option<(String, Origin)>,
    /// `bridge_tls_use_os_certs true`.
    os_certs: Option<Origin>,
    /// The first of them.
    first: Option<Origin>,
}

/// A bridge being read from a `mosquitto.conf`.
#[derive(Debug)]
pub(super) struct ConfBridge {
    config: BridgeConfig,
    /// The `connection` line.
    at: Origin,
    address: Option<Origin>,
    /// Addresses written without a port.
    portless: Vec<String>,
    local_clean_session: Option<bool>,
    local_client_id: Option<Origin>,
    password: Option<Origin>,
    threshold: Option<Origin>,
    idle_timeout: Option<Origin>,
    tls: ConfTls,
    /// A `listener` line after the `connection` line, not yet warned about.
    interrupted_by: Option<Origin>,
}

impl ConfBridge {
    /// `connection NAME`: a new bridge, refused if `others` already has one of that name.
    pub(super) fn start(d: &Directive<'_>, others: &[Self]) -> Result<Self, ConfigError> {
        let mut words = d
            .rest
            .split_ascii_whitespace()
            .take_while(|w| !w.starts_with('#'));
        let name = words.next().ok_or_else(|| d.error("missing value"))?;
        if let Some(extra) = words.next() {
            return Err(d.error(format!("unexpected `{extra}` after the bridge's name")));
        }
        check_name(name).map_err(|m| d.error(m))?;
        if let Some(first) = others.iter().find(|b| b.config.name == name) {
            return Err(d.error(format!(
                "the bridge `{name}` is already defined at {}",
                first.at.place()
            )));
        }
        Ok(Self {
            config: BridgeConfig::new(name),
            at: Origin::of(d),
            address: None,
            portless: Vec::new(),
            local_clean_session: None,
            local_client_id: None,
            password: None,
            threshold: None,
            idle_timeout: None,
            tls: ConfTls::default(),
            interrupted_by: None,
        })
    }

    /// Notes a `listener` line inside the bridge's block, to warn if bridge directives follow.
    pub(super) fn interrupt(&mut self, d: &Directive<'_>) {
        self.interrupted_by.get_or_insert_with(|| Origin::of(d));
    }

    /// Applies one bridge directive; returns a warning to report, if any.
    pub(super) fn directive(&mut self, d: &Directive<'_>) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        if let Some(listener) = self.interrupted_by.take() {
            warnings.push(d.warning(format!(
                "applies to the bridge `{}` (`connection` at {}), as in Mosquitto: the \
                 `listener` line at {} does not end the bridge's settings",
                self.config.name,
                self.at.place(),
                listener.place()
            )));
        }
        if let Some(message) = self.apply(d)? {
            warnings.push(d.warning(message));
        }
        Ok(warnings)
    }

    /// Applies one directive; `Ok(Some(message))` is a warning about it.
    fn apply(&mut self, d: &Directive<'_>) -> Result<Option<String>, ConfigError> {
        let config = &mut self.config;
        match d.name {
            "address" | "addresses" => {
                if let Some(first) = &self.address {
                    return Err(d.error(format!(
                        "the bridge's addresses are already given at {}; list them all on one \
                         line (as Mosquitto requires)",
                        first.place()
                    )));
                }
                for word in d
                    .rest
                    .split_ascii_whitespace()
                    .take_while(|w| !w.starts_with('#'))
                {
                    let (address, with_port) =
                        parse_address(word, DEFAULT_BRIDGE_PORT).map_err(|m| d.error(m))?;
                    if !with_port {
                        self.portless.push(word.to_owned());
                    }
                    config.addresses.push(address);
                }
                if config.addresses.is_empty() {
                    return Err(d.error("missing value"));
                }
                self.address = Some(Origin::of(d));
            }
            "topic" => {
                let topic = parse_topic_line(d.text()?).map_err(|m| d.error(m))?;
                config.topics.push(topic);
            }
            "round_robin" => config.round_robin = d.bool()?,
            "remote_clientid" | "clientid" => {
                config.remote_client_id = Some(d.text()?.to_owned());
            }
            "local_clientid" => {
                config.local_client_id = Some(d.text()?.to_owned());
                self.local_client_id = Some(Origin::of(d));
            }
            "remote_username" | "username" => {
                config.remote_username = Some(d.text()?.to_owned());
            }
            "remote_password" | "password" => {
                config.remote_password = Some(d.text()?.to_owned());
                self.password = Some(Origin::of(d));
            }
            "bridge_protocol_version" => {
                let value = d.value()?;
                config.protocol = parse_protocol_name(value).ok_or_else(|| {
                    d.error(format!(
                        "expected mqttv311, mqttv50 or mqttv31, got `{value}`"
                    ))
                })?;
            }
            "cleansession" => config.clean_session = d.bool()?,
            "local_cleansession" => self.local_clean_session = Some(d.bool()?),
            "keepalive_interval" => {
                let seconds = d.int()?;
                if seconds > 65535 {
                    return Err(d.error(format!("expected at most 65535 seconds, got `{seconds}`")));
                }
                match u64::try_from(seconds) {
                    Ok(s) if s >= MIN_KEEP_ALIVE => config.keep_alive = Duration::from_secs(s),
                    _ => {
                        config.keep_alive = Duration::from_secs(MIN_KEEP_ALIVE);
                        return Ok(Some(
                            "less than 5 seconds: 5 is used, as in Mosquitto".to_owned(),
                        ));
                    }
                }
            }
            "try_private" => config.try_private = d.bool()?,
            "notifications" => config.notifications = d.bool()?,
            "notifications_local_only" => config.notifications_local_only = d.bool()?,
            "notification_topic" => {
                let topic = d.text()?;
                if !is_valid_topic_name(topic) {
                    return Err(d.error(format!(
                        "`{topic}` is not a topic name: it must not contain wildcards (`+`, `#`)"
                    )));
                }
                config.notification_topic = Some(topic.to_owned());
            }
            "start_type" => {
                config.start_type = match d.value()? {
                    "automatic" => BridgeStart::Automatic,
                    "lazy" => BridgeStart::Lazy,
                    "once" => BridgeStart::Once,
                    "manual" => {
                        return Err(d.error(
                            "`manual` is not supported (nor is it by Mosquitto); use automatic, \
                             lazy or once",
                        ));
                    }
                    other => {
                        return Err(
                            d.error(format!("expected automatic, lazy or once, got `{other}`"))
                        );
                    }
                };
            }
            "restart_timeout" => return self.restart_timeout(d),
            "threshold" => {
                let n = d.int()?;
                config.threshold = usize::try_from(n).unwrap_or(0).max(1);
                self.threshold = Some(Origin::of(d));
                if n < 1 {
                    return Ok(Some("less than 1: 1 is used, as in Mosquitto".to_owned()));
                }
            }
            "idle_timeout" => {
                let n = d.int()?;
                config.idle_timeout = Duration::from_secs(u64::try_from(n).unwrap_or(0).max(1));
                self.idle_timeout = Some(Origin::of(d));
                if n < 1 {
                    return Ok(Some(
                        "less than 1 second: 1 is used, as in Mosquitto".to_owned(),
                    ));
                }
            }
            name if name.starts_with("bridge_") => return self.bridge_option(d),
            // `local_username`, `local_password`.
            _ => {
                d.text()?;
                return Ok(Some(
                    "ignored: the bridge's connection to this broker is internal and needs no \
                     credentials (it is not subject to authentication nor to the ACL)"
                        .to_owned(),
                ));
            }
        }
        Ok(None)
    }

    /// `restart_timeout CONSTANT` or `restart_timeout BASE CAP`, in seconds, with Mosquitto's
    /// bounds.
    fn restart_timeout(&mut self, d: &Directive<'_>) -> Result<Option<String>, ConfigError> {
        let mut words = d
            .rest
            .split_ascii_whitespace()
            .take_while(|w| !w.starts_with('#'));
        let number = |word: &str| -> Result<i64, ConfigError> {
            word.parse::<i64>()
                .map_err(|_| d.error(format!("expected a number of seconds, got `{word}`")))
        };
        let first = number(words.next().ok_or_else(|| d.error("missing value"))?)?;
        let cap = words.next().map(number).transpose()?;
        let extra = words.next();
        let mut notes = Vec::new();
        // As in Mosquitto, the first value is brought within 1..=3600 s, whatever follows.
        let base = u64::try_from(first.clamp(1, 3600)).unwrap_or(1);
        if first < 1 {
            notes.push("less than 1 second: 1 is used, as in Mosquitto".to_owned());
        } else if first > 3600 {
            notes.push(format!(
                "more than {MAX_RESTART_CONSTANT} seconds: {MAX_RESTART_CONSTANT} is used, as \
                 in Mosquitto"
            ));
        }
        let config = &mut self.config;
        config.restart_base = Duration::from_secs(base);
        // One value is a constant delay: base and cap equal.
        config.restart_cap = config.restart_base;
        if let Some(cap) = cap {
            if u64::try_from(cap).map_or(true, |c| c < base) {
                return Err(d.error(format!(
                    "the cap ({cap} s) is lower than the base ({base} s)"
                )));
            }
            let capped = u64::try_from(cap).unwrap_or(0).min(MAX_RESTART_CAP);
            if capped < u64::try_from(cap).unwrap_or(0) {
                notes.push(format!(
                    "a cap over {MAX_RESTART_CAP} seconds: {MAX_RESTART_CAP} is used, as in \
                     Mosquitto"
                ));
            }
            config.restart_cap = Duration::from_secs(capped);
        }
        if let Some(extra) = extra {
            number(extra)?;
            notes.push(
                "the third value (a stable-connection period) is ignored: Tern's backoff starts \
                 again from the base after every successful connection"
                    .to_owned(),
            );
        }
        Ok((!notes.is_empty()).then(|| notes.join("; ")))
    }

    /// The `bridge_*` directives.
    fn bridge_option(&mut self, d: &Directive<'_>) -> Result<Option<String>, ConfigError> {
        let path = |d: &Directive<'_>| -> Result<(PathBuf, Origin), ConfigError> {
            Ok((relative_to(d.file, Path::new(d.text()?)), Origin::of(d)))
        };
        let tls = &mut self.tls;
        let mut warning = None;
        match d.name {
            "bridge_cafile" => tls.cafile = Some(path(d)?),
            "bridge_capath" => tls.capath = Some(path(d)?),
            "bridge_certfile" => tls.certfile = Some(path(d)?),
            "bridge_keyfile" => tls.keyfile = Some(path(d)?),
            "bridge_insecure" => {
                let insecure = d.bool()?;
                if insecure {
                    warning = Some(INSECURE.to_owned());
                }
                tls.insecure = Some((insecure, Origin::of(d)));
            }
            "bridge_tls_version" => {
                let (version, note) = check_tls_version(d.value()?).map_err(|m| d.error(m))?;
                warning = note;
                tls.version = Some((version, Origin::of(d)));
            }
            "bridge_alpn" => tls.alpn = Some((d.text()?.to_owned(), Origin::of(d))),
            "bridge_tls_use_os_certs" => {
                if !d.bool()? {
                    return Ok(None);
                }
                tls.os_certs = Some(Origin::of(d));
            }
            "bridge_identity" | "bridge_psk" => {
                return Err(d.error(
                    "TLS-PSK is not supported; Tern refuses to start rather than connect to the \
                     remote broker without the encryption this file asks for",
                ));
            }
            "bridge_require_ocsp" => {
                if d.bool()? {
                    return Err(d.error(
                        "OCSP is not supported; Tern refuses to start rather than skip the \
                         revocation check this file asks for",
                    ));
                }
                return Ok(None);
            }
            "bridge_outgoing_retain" => {
                return Ok((!d.bool()?).then(|| {
                    "not supported: messages keep their retain flag when forwarded to the \
                     remote broker"
                        .to_owned()
                }));
            }
            "bridge_attempt_unsubscribe" => {
                d.bool()?;
                return Ok(Some(
                    "ignored: Tern does not send UNSUBSCRIBE for `out` topics when it connects"
                        .to_owned(),
                ));
            }
            "bridge_ciphers" | "bridge_ciphers_tls1.3" => {
                d.text()?;
                return Ok(Some(
                    "ignored: the bridge offers rustls's default cipher suites (all of them \
                     modern AEAD suites)"
                        .to_owned(),
                ));
            }
            "bridge_bind_address" => {
                d.value()?;
                return Ok(Some(
                    "ignored: the bridge connects from the address the system chooses".to_owned(),
                ));
            }
            "bridge_max_packet_size"
            | "bridge_receive_maximum"
            | "bridge_session_expiry_interval"
            | "bridge_max_topic_alias"
            | "bridge_tcp_keepalive"
            | "bridge_tcp_user_timeout"
            | "bridge_reload_type" => {
                d.text()?;
                return Ok(Some("ignored: not supported by Tern's bridges".to_owned()));
            }
            _ => return Err(d.error("unknown directive")),
        }
        tls.first.get_or_insert_with(|| Origin::of(d));
        Ok(warning)
    }

    /// The bridge's final settings, checked as a whole.
    fn finish(mut self, warnings: &mut Vec<String>) -> Result<BridgeConfig, ConfigError> {
        let name = self.config.name.clone();
        if self.address.is_none() {
            return Err(self.at.error(format!(
                "the bridge `{name}` has no `address` line: it needs the remote broker's address"
            )));
        }
        if self.config.topics.is_empty() {
            return Err(self.at.error(format!(
                "the bridge `{name}` has no `topic` line: it would carry nothing (Mosquitto \
                 refuses it too)"
            )));
        }
        self.config.local_clean_session = self
            .local_clean_session
            .unwrap_or(self.config.clean_session);
        if let Some(at) = &self.password
            && self.config.remote_username.is_none()
            && self.config.protocol != ProtocolVersion::V5
        {
            return Err(at.error(PASSWORD_WITHOUT_USERNAME));
        }
        if self.config.start_type != BridgeStart::Lazy {
            for at in [&self.threshold, &self.idle_timeout].into_iter().flatten() {
                warnings.push(at.warning(ONLY_LAZY));
            }
        }
        self.config.tls = self.resolve_tls(warnings)?;
        if self.config.tls.is_some()
            && let (Some(at), false) = (&self.address, self.portless.is_empty())
        {
            warnings.push(at.warning(format!(
                "`{}` has no port: {DEFAULT_BRIDGE_PORT} is used, as in Mosquitto, although the \
                 bridge uses TLS (usually on port {DEFAULT_BRIDGE_TLS_PORT})",
                self.portless.join("`, `")
            )));
        }
        Ok(self.config)
    }

    /// The TLS settings, their files checked; `None` without any TLS directive.
    fn resolve_tls(
        &mut self,
        warnings: &mut Vec<String>,
    ) -> Result<Option<BridgeTls>, ConfigError> {
        let t = &mut self.tls;
        let Some(first) = t.first.take() else {
            return Ok(None);
        };
        if let Some(at) = &t.os_certs {
            match &t.capath {
                None => t.capath = Some((PathBuf::from(SYSTEM_CA_DIR), at.clone())),
                Some((_, capath)) => warnings.push(at.warning(format!(
                    "ignored: `bridge_capath` (at {}) is set, and Tern takes one CA directory",
                    capath.place()
                ))),
            }
        }
        if t.cafile.is_none() && t.capath.is_none() {
            return Err(first.error(
                "needs `bridge_cafile` or `bridge_capath` in the same bridge: without CA \
                 certificates to verify the remote broker, the bridge would not use TLS",
            ));
        }
        let tls = BridgeTls {
            cafile: t.cafile.as_ref().map(|(p, _)| p.clone()),
            capath: t.capath.as_ref().map(|(p, _)| p.clone()),
            certfile: t.certfile.as_ref().map(|(p, _)| p.clone()),
            keyfile: t.keyfile.as_ref().map(|(p, _)| p.clone()),
            insecure: t.insecure.as_ref().is_some_and(|(v, _)| *v),
            min_version: t.version.as_ref().map(|(v, _)| v.clone()),
            alpn: t.alpn.as_ref().map(|(v, _)| v.clone()),
        };
        check_tls_files(&tls).map_err(|(field, message)| {
            let at = match field {
                TlsField::Cafile => t.cafile.as_ref(),
                TlsField::Capath => t.capath.as_ref(),
                // A certificate without its key is reported at the certificate's line.
                TlsField::Certfile => t.certfile.as_ref().or(t.keyfile.as_ref()),
                TlsField::Keyfile => t.keyfile.as_ref().or(t.certfile.as_ref()),
            };
            at.map_or(&first, |(_, at)| at).error(message)
        })?;
        Ok(Some(tls))
    }
}

/// The bridges of a `mosquitto.conf`, each checked as a whole, then against each other.
pub(super) fn finish_conf(
    bridges: Vec<ConfBridge>,
    warnings: &mut Vec<String>,
) -> Result<Vec<BridgeConfig>, ConfigError> {
    let mut ids: HashMap<String, Origin> = HashMap::new();
    let mut done = Vec::with_capacity(bridges.len());
    for bridge in bridges {
        if let (Some(id), Some(at)) = (&bridge.config.local_client_id, &bridge.local_client_id) {
            if let Some(first) = ids.get(id) {
                return Err(at.error(format!(
                    "`{id}` is already the local client id of another bridge (at {}): two \
                     bridges would take each other's session over",
                    first.place()
                )));
            }
            ids.insert(id.clone(), at.clone());
        }
        done.push(bridge.finish(warnings)?);
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------------
// TOML.

/// `[[bridges]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawBridge {
    name: Spanned<String>,
    address: Option<Spanned<AddressList>>,
    addresses: Option<Spanned<AddressList>>,
    round_robin: Option<bool>,
    topics: Option<Spanned<Vec<Spanned<RawTopic>>>>,
    remote_client_id: Option<Spanned<String>>,
    local_client_id: Option<Spanned<String>>,
    remote_username: Option<Spanned<String>>,
    remote_password: Option<Spanned<String>>,
    protocol: Option<Spanned<ProtocolValue>>,
    clean_session: Option<bool>,
    local_clean_session: Option<bool>,
    keep_alive: Option<Spanned<DurationValue>>,
    try_private: Option<bool>,
    notifications: Option<bool>,
    notifications_local_only: Option<bool>,
    notification_topic: Option<Spanned<String>>,
    start_type: Option<Spanned<String>>,
    restart_timeout: Option<Spanned<RestartValue>>,
    threshold: Option<Spanned<Int>>,
    idle_timeout: Option<Spanned<DurationValue>>,
    max_queued_messages: Option<Spanned<Int>>,
    tls: Option<Spanned<Table<RawBridgeTls>>>,
}

/// `[bridges.tls]`: Mosquitto's `bridge_*` TLS directives without the prefix.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBridgeTls {
    cafile: Option<Spanned<String>>,
    capath: Option<Spanned<String>>,
    certfile: Option<Spanned<String>>,
    keyfile: Option<Spanned<String>>,
    insecure: Option<Spanned<bool>>,
    tls_version: Option<Spanned<String>>,
    alpn: Option<Spanned<String>>,
}

/// `address`: one `HOST:PORT` string or an array of them.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a string such as \"broker.example.com:1883\", or an array of them"
)]
enum AddressList {
    One(String),
    Many(Vec<String>),
}

/// `protocol`: Mosquitto's name (`"mqttv311"`), a version (`"3.1.1"`, `"5"`) or a level (4, 5).
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a protocol version: \"mqttv311\", \"mqttv50\", \"mqttv31\", \"3.1.1\", \"5\", 4 \
                 or 5"
)]
enum ProtocolValue {
    Level(i64),
    Name(String),
}

/// An entry of `topics`: a string in Mosquitto's `topic` syntax, or a table.
enum RawTopic {
    Line(String),
    Table(RawTopicTable),
}

/// A topic as a table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopicTable {
    pattern: String,
    direction: Option<String>,
    qos: Option<Int>,
    local_prefix: Option<String>,
    remote_prefix: Option<String>,
}

impl<'de> Deserialize<'de> for RawTopic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTopic;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a topic: a string such as \"sensors/# out 1\" (Mosquitto's `topic` syntax) \
                     or a table with `pattern`",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTopic, E> {
                Ok(RawTopic::Line(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawTopic, A::Error> {
                RawTopicTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawTopic::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// `restart_timeout`: one duration (a constant delay) or `[BASE, CAP]`.
struct RestartValue {
    base: String,
    cap: Option<String>,
}

/// A duration written as an integer (seconds) or a string, kept as text for
/// [`super::parse_duration`].
struct DurationText(String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: whole seconds, or a string such as \"30s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
        }
        d.deserialize_any(V).map(Self)
    }
}

struct RestartVisitor;

impl<'de> Visitor<'de> for RestartVisitor {
    type Value = RestartValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration (a constant delay), or an array [BASE, CAP] of two durations: whole \
             seconds, or strings such as \"5s\"",
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RestartValue, E> {
        Ok(RestartValue {
            base: v.to_string(),
            cap: None,
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RestartValue, E> {
        Ok(RestartValue {
            base: v.to_string(),
            cap: None,
        })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RestartValue, E> {
        Ok(RestartValue {
            base: v.to_owned(),
            cap: None,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<RestartValue, A::Error> {
        let pair = "an array of exactly two durations, [BASE, CAP]";
        let base: DurationText = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &pair))?;
        let cap: DurationText = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &pair))?;
        if seq.next_element::<DurationText>()?.is_some() {
            return Err(de::Error::invalid_length(3, &pair));
        }
        Ok(RestartValue {
            base: base.0,
            cap: Some(cap.0),
        })
    }
}

impl<'de> Deserialize<'de> for RestartValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RestartVisitor)
    }
}

/// Validates the `[[bridges]]` of a TOML file and reads their TLS files.
pub(super) fn validate_toml(
    doc: &Doc<'_>,
    raw: Vec<Spanned<Table<RawBridge>>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<BridgeConfig>, ConfigError> {
    let mut bridges: Vec<BridgeConfig> = Vec::with_capacity(raw.len());
    let mut local_ids: HashMap<String, usize> = HashMap::new();
    for (i, entry) in raw.iter().enumerate() {
        let bridge = validate_one(doc, i, entry, warnings)?;
        let raw = &entry.get_ref().0;
        if let Some(j) = bridges.iter().position(|b| b.name == bridge.name) {
            let message = format!(
                "the bridge `{}` is already defined as `bridges[{j}]`",
                bridge.name
            );
            return Err(doc.error(&raw.name, &format!("bridges[{i}].name"), message));
        }
        if let (Some(id), Some(v)) = (&bridge.local_client_id, &raw.local_client_id) {
            if let Some(j) = local_ids.get(id) {
                let message = format!(
                    "`{id}` is already the local client id of `bridges[{j}]`: two bridges would \
                     take each other's session over"
                );
                return Err(doc.error(v, &format!("bridges[{i}].local_client_id"), message));
            }
            local_ids.insert(id.clone(), i);
        }
        bridges.push(bridge);
    }
    Ok(bridges)
}

/// Validates `bridges[index]`.
fn validate_one(
    doc: &Doc<'_>,
    index: usize,
    entry: &Spanned<Table<RawBridge>>,
    warnings: &mut Vec<String>,
) -> Result<BridgeConfig, ConfigError> {
    let raw = &entry.get_ref().0;
    let key = |name: &str| format!("bridges[{index}].{name}");
    let name = raw.name.get_ref();
    check_name(name).map_err(|m| doc.error(&raw.name, &key("name"), m))?;
    let mut bridge = BridgeConfig::new(name.clone());
    if let Some(table) = &raw.tls {
        bridge.tls = Some(validate_tls(doc, index, table, warnings)?);
    }
    let default_port = if bridge.tls.is_some() {
        DEFAULT_BRIDGE_TLS_PORT
    } else {
        DEFAULT_BRIDGE_PORT
    };
    let (list, list_key) = match (&raw.address, &raw.addresses) {
        (Some(_), Some(v)) => {
            let message = "contradicts `address`: give the addresses in one of the two keys";
            return Err(doc.error(v, &key("addresses"), message));
        }
        (Some(v), None) => (v, key("address")),
        (None, Some(v)) => (v, key("addresses")),
        (None, None) => {
            let message = "this required key is missing: the remote broker's address \
                           (\"HOST:PORT\", or an array of them tried in order)";
            return Err(doc.error(entry, &key("address"), message));
        }
    };
    let texts = match list.get_ref() {
        AddressList::One(one) => std::slice::from_ref(one),
        AddressList::Many(many) => many.as_slice(),
    };
    if texts.is_empty() {
        return Err(doc.error(list, &list_key, "must name at least one address"));
    }
    for text in texts {
        let (address, _) =
            parse_address(text, default_port).map_err(|m| doc.error(list, &list_key, m))?;
        bridge.addresses.push(address);
    }
    bridge.round_robin = raw.round_robin.unwrap_or(false);
    validate_topics(doc, index, entry, &mut bridge)?;
    let non_empty = |v: &Spanned<String>, name: &str| -> Result<String, ConfigError> {
        if v.get_ref().is_empty() {
            return Err(doc.error(v, &key(name), "must not be empty"));
        }
        Ok(v.get_ref().clone())
    };
    if let Some(v) = &raw.remote_client_id {
        bridge.remote_client_id = Some(non_empty(v, "remote_client_id")?);
    }
    if let Some(v) = &raw.local_client_id {
        bridge.local_client_id = Some(non_empty(v, "local_client_id")?);
    }
    bridge.remote_username = raw.remote_username.as_ref().map(|v| v.get_ref().clone());
    bridge.remote_password = raw.remote_password.as_ref().map(|v| v.get_ref().clone());
    if let Some(v) = &raw.protocol {
        bridge.protocol = match v.get_ref() {
            ProtocolValue::Level(n) => parse_protocol_version(VersionToken::Level(*n)),
            ProtocolValue::Name(name) => parse_protocol_name(name)
                .map_or_else(|| parse_protocol_version(VersionToken::Name(name)), Ok),
        }
        .map_err(|_| {
            let message = "expected \"mqttv311\", \"mqttv50\", \"mqttv31\", \"3.1.1\", \"5\", \
                           \"3.1\", 4, 5 or 3";
            doc.error(v, &key("protocol"), message)
        })?;
    }
    if let Some(v) = &raw.remote_password
        && raw.remote_username.is_none()
        && bridge.protocol != ProtocolVersion::V5
    {
        return Err(doc.error(v, &key("remote_password"), PASSWORD_WITHOUT_USERNAME));
    }
    bridge.clean_session = raw.clean_session.unwrap_or(false);
    bridge.local_clean_session = raw.local_clean_session.unwrap_or(bridge.clean_session);
    if let Some(v) = &raw.keep_alive {
        let keep_alive = doc.duration(v, &key("keep_alive"))?;
        if !(MIN_KEEP_ALIVE..=65535).contains(&keep_alive.as_secs()) {
            let message = format!(
                "must be between 5s and 65535s (18h12m15s), not {}s",
                keep_alive.as_secs()
            );
            return Err(doc.error(v, &key("keep_alive"), message));
        }
        bridge.keep_alive = keep_alive;
    }
    bridge.try_private = raw.try_private.unwrap_or(true);
    bridge.notifications = raw.notifications.unwrap_or(true);
    bridge.notifications_local_only = raw.notifications_local_only.unwrap_or(false);
    if let Some(v) = &raw.notification_topic {
        if !is_valid_topic_name(v.get_ref()) {
            let message = format!(
                "`{}` is not a topic name: it must not be empty nor contain wildcards (`+`, `#`)",
                v.get_ref()
            );
            return Err(doc.error(v, &key("notification_topic"), message));
        }
        bridge.notification_topic = Some(v.get_ref().clone());
    }
    if let Some(v) = &raw.start_type {
        bridge.start_type = match v.get_ref().as_str() {
            "automatic" => BridgeStart::Automatic,
            "lazy" => BridgeStart::Lazy,
            "once" => BridgeStart::Once,
            other => {
                let message =
                    format!("expected \"automatic\", \"lazy\" or \"once\", got `{other}`");
                return Err(doc.error(v, &key("start_type"), message));
            }
        };
    }
    if let Some(v) = &raw.restart_timeout {
        let (base, cap) =
            restart_timeout(v.get_ref()).map_err(|m| doc.error(v, &key("restart_timeout"), m))?;
        bridge.restart_base = base;
        bridge.restart_cap = cap;
    }
    let lazy = bridge.start_type == BridgeStart::Lazy;
    if let Some(v) = &raw.threshold {
        let message = |n| format!("must be at least 1, not {n}");
        bridge.threshold = doc.ranged(v, &key("threshold"), 1, i64::MAX, message)?;
        if !lazy {
            warnings.push(doc.error(v, &key("threshold"), ONLY_LAZY).to_string());
        }
    }
    if let Some(v) = &raw.idle_timeout {
        let timeout = doc.duration(v, &key("idle_timeout"))?;
        if timeout.is_zero() {
            return Err(doc.error(v, &key("idle_timeout"), "must be longer than zero"));
        }
        bridge.idle_timeout = timeout;
        if !lazy {
            warnings.push(doc.error(v, &key("idle_timeout"), ONLY_LAZY).to_string());
        }
    }
    if let Some(v) = &raw.max_queued_messages {
        let message = |n| format!("must be 0 (no limit) or more, not {n}");
        bridge.max_queued_messages =
            Some(doc.ranged(v, &key("max_queued_messages"), 0, i64::MAX, message)?);
    }
    Ok(bridge)
}

/// `restart_timeout` as base and cap: one duration is a constant delay (both equal).
fn restart_timeout(value: &RestartValue) -> Result<(Duration, Duration), String> {
    let base = super::parse_duration(&value.base)?;
    if base.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    let Some(cap) = &value.cap else {
        if base.as_secs() > MAX_RESTART_CONSTANT {
            return Err(format!(
                "a constant delay must be at most {MAX_RESTART_CONSTANT}s (1h), not {}s",
                base.as_secs()
            ));
        }
        return Ok((base, base));
    };
    let cap = super::parse_duration(cap)?;
    if cap < base {
        return Err(format!(
            "the cap ({}s) is lower than the base ({}s)",
            cap.as_secs(),
            base.as_secs()
        ));
    }
    if cap.as_secs() > MAX_RESTART_CAP {
        return Err(format!(
            "the cap must be at most {MAX_RESTART_CAP}s (2h), not {}s",
            cap.as_secs()
        ));
    }
    Ok((base, cap))
}

/// `bridges[index].topics`.
fn validate_topics(
    doc: &Doc<'_>,
    index: usize,
    entry: &Spanned<Table<RawBridge>>,
    bridge: &mut BridgeConfig,
) -> Result<(), ConfigError> {
    let raw = &entry.get_ref().0;
    let Some(list) = &raw.topics else {
        let message = "this required key is missing: the topics the bridge carries, such as \
                       [\"sensors/# out 1\"]";
        return Err(doc.error(entry, &format!("bridges[{index}].topics"), message));
    };
    if list.get_ref().is_empty() {
        let message = "must name at least one topic: the bridge would carry nothing";
        return Err(doc.error(list, &format!("bridges[{index}].topics"), message));
    }
    for (j, item) in list.get_ref().iter().enumerate() {
        let key = format!("bridges[{index}].topics[{j}]");
        let topic = match item.get_ref() {
            RawTopic::Line(line) => parse_topic_line(line),
            RawTopic::Table(t) => topic_from_table(t),
        }
        .map_err(|m| doc.error(item, &key, m))?;
        bridge.topics.push(topic);
    }
    Ok(())
}

/// A topic given as a table.
fn topic_from_table(t: &RawTopicTable) -> Result<BridgeTopic, String> {
    let topic = BridgeTopic {
        pattern: t.pattern.clone(),
        direction: match &t.direction {
            Some(d) => parse_direction(d).map_err(|m| format!("`direction`: {m}"))?,
            None => BridgeDirection::Out,
        },
        qos: match &t.qos {
            Some(Int(n)) => parse_qos(&n.to_string()).map_err(|m| format!("`qos`: {m}"))?,
            None => QoS::AtMostOnce,
        },
        local_prefix: t.local_prefix.clone().unwrap_or_default(),
        remote_prefix: t.remote_prefix.clone().unwrap_or_default(),
    };
    check_topic(&topic)?;
    Ok(topic)
}

/// `bridges[index].tls`, its files read.
fn validate_tls(
    doc: &Doc<'_>,
    index: usize,
    table: &Spanned<Table<RawBridgeTls>>,
    warnings: &mut Vec<String>,
) -> Result<BridgeTls, ConfigError> {
    let raw = &table.get_ref().0;
    let key = |name: &str| format!("bridges[{index}].tls.{name}");
    let path = |v: &Spanned<String>| relative_to(doc.path, Path::new(v.get_ref()));
    if raw.cafile.is_none() && raw.capath.is_none() {
        let message = "this required key is missing: CA certificates (`cafile` or `capath`) to \
                       verify the remote broker with";
        return Err(doc.error(table, &key("cafile"), message));
    }
    let mut tls = BridgeTls {
        cafile: raw.cafile.as_ref().map(path),
        capath: raw.capath.as_ref().map(path),
        certfile: raw.certfile.as_ref().map(path),
        keyfile: raw.keyfile.as_ref().map(path),
        insecure: raw.insecure.as_ref().is_some_and(|v| *v.get_ref()),
        min_version: None,
        alpn: None,
    };
    if let Some(v) = &raw.insecure
        && *v.get_ref()
    {
        warnings.push(doc.error(v, &key("insecure"), INSECURE).to_string());
    }
    if let Some(v) = &raw.tls_version {
        let (version, note) =
            check_tls_version(v.get_ref()).map_err(|m| doc.error(v, &key("tls_version"), m))?;
        if let Some(message) = note {
            warnings.push(doc.error(v, &key("tls_version"), message).to_string());
        }
        tls.min_version = Some(version);
    }
    if let Some(v) = &raw.alpn {
        if v.get_ref().is_empty() {
            return Err(doc.error(v, &key("alpn"), "must not be empty"));
        }
        tls.alpn = Some(v.get_ref().clone());
    }
    check_tls_files(&tls).map_err(|(field, message)| {
        let (name, value) = match field {
            TlsField::Cafile => ("cafile", raw.cafile.as_ref()),
            TlsField::Capath => ("capath", raw.capath.as_ref()),
            TlsField::Certfile => ("certfile", raw.certfile.as_ref().or(raw.keyfile.as_ref())),
            TlsField::Keyfile => ("keyfile", raw.keyfile.as_ref().or(raw.certfile.as_ref())),
        };
        let line = value.map_or(table.span().start, |v| v.span().start);
        ConfigError::at(doc.path, doc.line(line), &key(name), message)
    })?;
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> BridgeTopic {
        parse_topic_line(text).unwrap_or_else(|e| panic!("`{text}`: {e}"))
    }

    fn t(
        pattern: &str,
        direction: BridgeDirection,
        qos: QoS,
        local: &str,
        remote: &str,
    ) -> BridgeTopic {
        BridgeTopic::new(pattern, direction, qos, local, remote)
    }

    use BridgeDirection::{Both, In, Out};
    use QoS::{AtLeastOnce, AtMostOnce, ExactlyOnce};

    #[test]
    fn topic_lines_follow_mosquittos_syntax() {
        assert_eq!(topic("sensors/#"), t("sensors/#", Out, AtMostOnce, "", ""));
        assert_eq!(
            topic("sensors/# in"),
            t("sensors/#", In, AtMostOnce, "", "")
        );
        assert_eq!(topic("a/+/b BOTH 2"), t("a/+/b", Both, ExactlyOnce, "", ""));
        assert_eq!(
            topic("# both 2 local/topic/ remote/topic/"),
            t("#", Both, ExactlyOnce, "local/topic/", "remote/topic/")
        );
        // The man page's example: a remote `$SYS` topic brought in under a local prefix.
        assert_eq!(
            topic("clients/total in 0 test/mosquitto/org/ $SYS/broker/"),
            t(
                "clients/total",
                In,
                AtMostOnce,
                "test/mosquitto/org/",
                "$SYS/broker/"
            )
        );
        assert_eq!(
            topic("\"\" out 1 local/topic remote/topic"),
            t("", Out, AtLeastOnce, "local/topic", "remote/topic")
        );
        assert_eq!(topic("x out 1 \"\" R/"), t("x", Out, AtLeastOnce, "", "R/"));
        assert_eq!(topic("x out 1 L/ \"\""), t("x", Out, AtLeastOnce, "L/", ""));
        assert_eq!(topic("x out 1 L/"), t("x", Out, AtLeastOnce, "L/", ""));
        assert_eq!(
            topic("\"my topic/#\" in 1"),
            t("my topic/#", In, AtLeastOnce, "", "")
        );
        assert_eq!(
            topic("x out 1 # a comment"),
            t("x", Out, AtLeastOnce, "", "")
        );
    }

    #[test]
    fn bad_topic_lines_say_what_is_wrong() {
        let cases = [
            ("x sideways", "expected in, out or both, got `sideways`"),
            ("x out 3", "expected a QoS of 0, 1 or 2, got `3`"),
            ("x out one", "expected a QoS of 0, 1 or 2, got `one`"),
            (
                "x out 1 L/ R/ extra",
                "unexpected `extra` after the remote prefix",
            ),
            ("\"x out 1", "missing closing quote in `\"x out 1`"),
            (
                "\"\" out 1 local/topic",
                "an empty pattern (`\"\"`) needs both a local and a remote prefix, which are \
                 then the whole local and remote topics",
            ),
            (
                "\"\" in",
                "an empty pattern (`\"\"`) needs both a local and a remote prefix, which are then the whole local and remote topics",
            ),
            (
                "x out 0 a/+/ R/",
                "the local prefix `a/+/` must not contain wildcards (`+`, `#`)",
            ),
            (
                "x out 0 L/ r/#",
                "the remote prefix `r/#` must not contain wildcards (`+`, `#`)",
            ),
            (
                "# out 0 site",
                "`site#` (the local prefix followed by the pattern) is not a valid topic filter: \
                 `+` and `#` must fill a whole level, and `#` must be the last level",
            ),
            (
                "a/#/b",
                "`a/#/b` (the pattern) is not a valid topic filter: `+` and `#` must fill a whole \
                 level, and `#` must be the last level",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(parse_topic_line(line), Err(message.to_owned()), "`{line}`");
        }
    }

    #[test]
    fn addresses_take_an_optional_port() {
        let a = |host: &str, port| BridgeAddress {
            host: host.to_owned(),
            port,
        };
        let ok = |text: &str| parse_address(text, 1883).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok("broker.example.com"),
            (a("broker.example.com", 1883), false)
        );
        assert_eq!(ok("broker:1884"), (a("broker", 1884), true));
        assert_eq!(ok("10.0.0.5:65535"), (a("10.0.0.5", 65535), true));
        assert_eq!(ok("[::1]:8883"), (a("::1", 8883), true));
        assert_eq!(ok("[::1]"), (a("::1", 1883), false));
        // Mosquitto's unbracketed IPv6 form: the port is required and follows the last colon.
        assert_eq!(ok("fe80::1:1883"), (a("fe80::1", 1883), true));
        assert_eq!(parse_address("broker", 8883).map(|r| r.0.port), Ok(8883));
        for bad in [
            "",
            ":1883",
            "[::1",
            "[::1]1883",
            "mqtt://broker:1883",
            "a b",
        ] {
            assert!(
                parse_address(bad, 1883).is_err_and(|e| e.starts_with("expected HOST[:PORT]")),
                "`{bad}`"
            );
        }
        for bad in ["broker:0", "broker:65536", "broker:x", "broker:"] {
            assert_eq!(
                parse_address(bad, 1883),
                Err(format!("expected a port between 1 and 65535 in `{bad}`")),
            );
        }
    }

    #[test]
    fn names_are_one_topic_level() {
        assert_eq!(check_name("edge-1.cloud_2"), Ok(()));
        assert_eq!(check_name(""), Err("must not be empty".to_owned()));
        for bad in ["a/b", "a+", "#", "a b", "a\tb"] {
            assert!(check_name(bad).is_err(), "`{bad}`");
        }
    }

    #[test]
    fn protocol_names_are_mosquittos() {
        assert_eq!(parse_protocol_name("mqttv311"), Some(ProtocolVersion::V311));
        assert_eq!(parse_protocol_name("mqttv50"), Some(ProtocolVersion::V5));
        assert_eq!(parse_protocol_name("mqttv31"), Some(ProtocolVersion::V31));
        assert_eq!(parse_protocol_name("mqttv4"), None);
    }

    // --- Whole files --------------------------------------------------------------------------

    /// A directory of its own, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!(
                "tern-bridge-parse-{tag}-{}-{n}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Reads `text` as the file `name` of a fresh directory; messages name the file alone.
    fn load(name: &str, text: &str) -> Result<super::super::Config, String> {
        let dir = Dir::new("load");
        let path = dir.0.join(name);
        std::fs::write(&path, text).expect("write");
        let strip = |s: String| s.replace(&format!("{}/", dir.0.display()), "");
        match super::super::load(&path) {
            Ok(mut c) => {
                c.warnings = c.warnings.into_iter().map(strip).collect();
                Ok(c)
            }
            Err(e) => Err(strip(e.to_string())),
        }
    }

    fn conf(text: &str) -> super::super::Config {
        load("mosquitto.conf", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn conf_err(text: &str) -> String {
        load("mosquitto.conf", text).expect_err("should be refused")
    }

    fn toml(text: &str) -> super::super::Config {
        load("tern.toml", text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn toml_err(text: &str) -> String {
        load("tern.toml", text).expect_err("should be refused")
    }

    #[test]
    fn a_minimal_bridge_gets_mosquittos_defaults_in_both_formats() {
        let mut expected = BridgeConfig::new("cloud");
        expected.addresses = vec![BridgeAddress {
            host: "broker.example.com".to_owned(),
            port: 1883,
        }];
        expected.topics = vec![t("sensors/#", Out, AtMostOnce, "", "")];
        let c = conf("connection cloud\naddress broker.example.com\ntopic sensors/#\n");
        assert_eq!(c.bridges, vec![expected.clone()]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = toml(
            "[[bridges]]\nname = \"cloud\"\naddress = \"broker.example.com\"\ntopics = \
             [\"sensors/#\"]\n",
        );
        assert_eq!(c.bridges, vec![expected]);
        // Mosquitto's defaults, spelt out.
        let d = BridgeConfig::new("x");
        assert_eq!(d.protocol, ProtocolVersion::V311);
        assert!(!d.clean_session && !d.local_clean_session && !d.round_robin);
        assert!(d.try_private && d.notifications && !d.notifications_local_only);
        assert_eq!(d.keep_alive, Duration::from_secs(60));
        assert_eq!(d.start_type, BridgeStart::Automatic);
        assert_eq!(
            (d.restart_base, d.restart_cap),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        assert_eq!((d.threshold, d.idle_timeout), (10, Duration::from_secs(60)));
    }

    /// Every directive Tern reads, with a value other than its default.
    const FULL_CONF: &str = "\
connection edge
addresses primary.example.com:1884 [::1]:1885 backup.example.com
round_robin true
topic sensors/# out 1 site1/ edge/site1/
topic commands/# in 2 \"\" cloud/
topic \"\" both 0 local/state remote/state
remote_clientid edge-1
local_clientid local-edge-1
remote_username bridge user
remote_password s3cret pass
bridge_protocol_version mqttv50
cleansession true
local_cleansession false
keepalive_interval 30
try_private false
notifications false
notifications_local_only true
notification_topic edge/state
start_type lazy
restart_timeout 2 60
threshold 50
idle_timeout 120
";

    /// The bridge of [`FULL_CONF`] and [`FULL_TOML`].
    fn full() -> BridgeConfig {
        let a = |host: &str, port| BridgeAddress {
            host: host.to_owned(),
            port,
        };
        BridgeConfig {
            name: "edge".to_owned(),
            addresses: vec![
                a("primary.example.com", 1884),
                a("::1", 1885),
                a("backup.example.com", 1883),
            ],
            round_robin: true,
            topics: vec![
                t("sensors/#", Out, AtLeastOnce, "site1/", "edge/site1/"),
                t("commands/#", In, ExactlyOnce, "", "cloud/"),
                t("", Both, AtMostOnce, "local/state", "remote/state"),
            ],
            remote_client_id: Some("edge-1".to_owned()),
            local_client_id: Some("local-edge-1".to_owned()),
            remote_username: Some("bridge user".to_owned()),
            remote_password: Some("s3cret pass".to_owned()),
            protocol: ProtocolVersion::V5,
            clean_session: true,
            local_clean_session: false,
            keep_alive: Duration::from_secs(30),
            try_private: false,
            notifications: false,
            notifications_local_only: true,
            notification_topic: Some("edge/state".to_owned()),
            start_type: BridgeStart::Lazy,
            restart_base: Duration::from_secs(2),
            restart_cap: Duration::from_secs(60),
            threshold: 50,
            idle_timeout: Duration::from_secs(120),
            max_queued_messages: None,
            tls: None,
        }
    }

    const FULL_TOML: &str = r#"
[[bridges]]
name = "edge"
addresses = ["primary.example.com:1884", "[::1]:1885", "backup.example.com"]
round_robin = true
topics = [
    "sensors/# out 1 site1/ edge/site1/",
    { pattern = "commands/#", direction = "in", qos = 2, remote_prefix = "cloud/" },
    { pattern = "", direction = "both", local_prefix = "local/state", remote_prefix = "remote/state" },
]
remote_client_id = "edge-1"
local_client_id = "local-edge-1"
remote_username = "bridge user"
remote_password = "s3cret pass"
protocol = "mqttv50"
clean_session = true
local_clean_session = false
keep_alive = "30s"
try_private = false
notifications = false
notifications_local_only = true
notification_topic = "edge/state"
start_type = "lazy"
restart_timeout = ["2s", 60]
threshold = 50
idle_timeout = "2m"
max_queued_messages = 500
"#;

    #[test]
    fn every_directive_is_read_in_both_formats() {
        let c = conf(FULL_CONF);
        assert_eq!(c.bridges, vec![full()]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = toml(FULL_TOML);
        let mut expected = full();
        expected.max_queued_messages = Some(500);
        assert_eq!(c.bridges, vec![expected]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn aliases_and_local_clean_session_default() {
        let c = conf(
            "connection a\naddress h\ntopic x\nclientid rid\nusername u\npassword p\n\
             cleansession true\n",
        );
        let b = &c.bridges[0];
        assert_eq!(b.remote_client_id.as_deref(), Some("rid"));
        assert_eq!(b.remote_username.as_deref(), Some("u"));
        assert_eq!(b.remote_password.as_deref(), Some("p"));
        // `local_cleansession` defaults to `cleansession`.
        assert!(b.clean_session && b.local_clean_session);
        let c = toml(
            "[[bridges]]\nname = \"a\"\naddress = \"h\"\ntopics = [\"x\"]\nclean_session = true\n\
             protocol = 5\n",
        );
        assert!(c.bridges[0].local_clean_session);
        assert_eq!(c.bridges[0].protocol, ProtocolVersion::V5);
    }

    #[test]
    fn restart_timeout_is_a_constant_or_a_base_and_cap() {
        let restart = |line: &str| {
            let c = conf(&format!("connection a\naddress h\ntopic x\n{line}\n"));
            let b = &c.bridges[0];
            (
                b.restart_base.as_secs(),
                b.restart_cap.as_secs(),
                c.warnings,
            )
        };
        assert_eq!(restart("restart_timeout 20"), (20, 20, vec![]));
        assert_eq!(restart("restart_timeout 10 30"), (10, 30, vec![]));
        assert_eq!(
            restart("restart_timeout 0"),
            (
                1,
                1,
                vec![
                    "mosquitto.conf:4: `restart_timeout`: less than 1 second: 1 is used, as in \
                      Mosquitto"
                        .to_owned()
                ]
            )
        );
        assert_eq!(
            restart("restart_timeout 5000").0,
            3600,
            "a constant delay is at most an hour"
        );
        assert_eq!(
            restart("restart_timeout 5 9000").1,
            7200,
            "the cap is at most 2 h"
        );
        assert_eq!(
            conf_err("connection a\naddress h\ntopic x\nrestart_timeout 30 10\n"),
            "mosquitto.conf:4: `restart_timeout`: the cap (10 s) is lower than the base (30 s)"
        );
        assert_eq!(
            conf_err("connection a\naddress h\ntopic x\nrestart_timeout soon\n"),
            "mosquitto.conf:4: `restart_timeout`: expected a number of seconds, got `soon`"
        );
        let toml_restart = |value: &str| {
            load(
                "tern.toml",
                &format!(
                    "[[bridges]]\nname = \"a\"\naddress = \"h\"\ntopics = [\"x\"]\n\
                     restart_timeout = {value}\n"
                ),
            )
            .map(|c| {
                (
                    c.bridges[0].restart_base.as_secs(),
                    c.bridges[0].restart_cap.as_secs(),
                )
            })
        };
        assert_eq!(toml_restart("20"), Ok((20, 20)));
        assert_eq!(toml_restart("[\"5s\", \"1m\"]"), Ok((5, 60)));
        assert_eq!(
            toml_restart("[60, 10]"),
            Err(
                "tern.toml:5: `bridges[0].restart_timeout`: the cap (10s) is lower than the base \
                 (60s)"
                    .to_owned()
            )
        );
        assert_eq!(
            toml_restart("[\"5s\", \"3h\"]"),
            Err(
                "tern.toml:5: `bridges[0].restart_timeout`: the cap must be at most 7200s (2h), \
                 not 10800s"
                    .to_owned()
            )
        );
        assert!(toml_restart("[1, 2, 3]").is_err());
    }

    #[test]
    fn mosquittos_silent_corrections_are_warnings() {
        let c = conf(
            "connection a\naddress h\ntopic x\nkeepalive_interval 2\nstart_type lazy\n\
             threshold 0\nidle_timeout 0\n",
        );
        let b = &c.bridges[0];
        assert_eq!(b.keep_alive, Duration::from_secs(5));
        assert_eq!((b.threshold, b.idle_timeout), (1, Duration::from_secs(1)));
        assert_eq!(
            c.warnings,
            [
                "mosquitto.conf:4: `keepalive_interval`: less than 5 seconds: 5 is used, as in \
                 Mosquitto",
                "mosquitto.conf:6: `threshold`: less than 1: 1 is used, as in Mosquitto",
                "mosquitto.conf:7: `idle_timeout`: less than 1 second: 1 is used, as in Mosquitto",
            ]
        );
        assert_eq!(
            conf_err("connection a\naddress h\ntopic x\nkeepalive_interval 70000\n"),
            "mosquitto.conf:4: `keepalive_interval`: expected at most 65535 seconds, got `70000`"
        );
    }

    #[test]
    fn lazy_settings_on_other_bridges_are_warnings() {
        let c = conf("connection a\naddress h\ntopic x\nthreshold 5\nidle_timeout 9\n");
        assert_eq!(
            c.warnings,
            [
                format!("mosquitto.conf:4: `threshold`: {ONLY_LAZY}"),
                format!("mosquitto.conf:5: `idle_timeout`: {ONLY_LAZY}"),
            ]
        );
        let c =
            toml("[[bridges]]\nname = \"a\"\naddress = \"h\"\ntopics = [\"x\"]\nthreshold = 5\n");
        assert_eq!(
            c.warnings,
            [format!("tern.toml:5: `bridges[0].threshold`: {ONLY_LAZY}")]
        );
    }

    #[test]
    fn a_bridge_block_runs_to_the_next_connection_line_or_the_end_of_the_file() {
        let c = conf(
            "connection a\naddress ha\ntopic x\nmax_queued_messages 7\nconnection b\naddress hb\n\
             topic y in\n",
        );
        assert_eq!(c.bridges.len(), 2);
        assert_eq!(c.bridges[0].topics, vec![t("x", Out, AtMostOnce, "", "")]);
        assert_eq!(c.bridges[1].topics, vec![t("y", In, AtMostOnce, "", "")]);
        // A global directive inside a block keeps its global meaning.
        assert_eq!(c.broker.max_queued_messages, 7);
        // A `listener` line does not end it, as in Mosquitto; Tern says so.
        let c = conf("connection a\naddress h\nlistener 1884\ntopic x\ntopic y\n");
        assert_eq!(c.bridges[0].topics.len(), 2);
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(
            c.warnings,
            [
                "mosquitto.conf:4: `topic`: applies to the bridge `a` (`connection` at \
              mosquitto.conf:1), as in Mosquitto: the `listener` line at mosquitto.conf:3 does \
              not end the bridge's settings"
            ]
        );
    }

    #[test]
    fn bridge_directives_outside_a_bridge_are_errors() {
        for line in [
            "address broker:1883",
            "topic x out 1",
            "remote_clientid r",
            "bridge_cafile ca.pem",
            "bridge_protocol_version mqttv50",
            "try_private false",
            "local_username u",
        ] {
            let name = line.split(' ').next().unwrap_or_default();
            assert_eq!(
                conf_err(&format!("listener 1883\n{line}\n")),
                format!("mosquitto.conf:2: `{name}`: {OUTSIDE_BRIDGE}")
            );
        }
    }

    #[test]
    fn an_included_file_starts_outside_any_bridge() {
        let dir = Dir::new("include");
        std::fs::create_dir_all(dir.0.join("conf.d")).expect("mkdir");
        std::fs::write(dir.0.join("conf.d/b.conf"), "topic more/#\n").expect("write");
        let main = dir.0.join("mosquitto.conf");
        std::fs::write(
            &main,
            "connection a\naddress h\ntopic x\ninclude_dir conf.d\ntopic y\n",
        )
        .expect("write");
        let e = super::super::load(&main).expect_err("refused").to_string();
        let e = e.replace(&format!("{}/", dir.0.display()), "");
        assert_eq!(e, format!("conf.d/b.conf:1: `topic`: {OUTSIDE_BRIDGE}"));
        // After the include, the main file's bridge goes on.
        std::fs::write(
            dir.0.join("conf.d/b.conf"),
            "connection b\naddress hb\ntopic z\n",
        )
        .expect("write");
        let c = super::super::load(&main).expect("valid");
        let names: Vec<_> = c
            .bridges
            .iter()
            .map(|b| (b.name.as_str(), b.topics.len()))
            .collect();
        assert_eq!(names, [("a", 2), ("b", 1)]);
    }

    #[test]
    fn conf_errors_name_the_line_and_directive() {
        let cases = [
            (
                "connection\n",
                "mosquitto.conf:1: `connection`: missing value",
            ),
            (
                "connection a b\n",
                "mosquitto.conf:1: `connection`: unexpected `b` after the bridge's name",
            ),
            (
                "connection a/b\n",
                "mosquitto.conf:1: `connection`: `a/b` cannot be a bridge name: it is a topic \
                 level of `$SYS/broker/connection/NAME/state`, so it must not contain `/`, `+`, \
                 `#` or blanks",
            ),
            (
                "connection a\ntopic x\n",
                "mosquitto.conf:1: `connection`: the bridge `a` has no `address` line: it needs \
                 the remote broker's address",
            ),
            (
                "connection a\naddress h\n",
                "mosquitto.conf:1: `connection`: the bridge `a` has no `topic` line: it would \
                 carry nothing (Mosquitto refuses it too)",
            ),
            (
                "connection a\naddress h\ntopic x\nconnection a\n",
                "mosquitto.conf:4: `connection`: the bridge `a` is already defined at \
                 mosquitto.conf:1",
            ),
            (
                "connection a\naddress h\naddress g\n",
                "mosquitto.conf:3: `address`: the bridge's addresses are already given at \
                 mosquitto.conf:2; list them all on one line (as Mosquitto requires)",
            ),
            (
                "connection a\naddress\n",
                "mosquitto.conf:2: `address`: missing value",
            ),
            (
                "connection a\naddress h:99999\n",
                "mosquitto.conf:2: `address`: expected a port between 1 and 65535 in `h:99999`",
            ),
            (
                "connection a\naddress h\ntopic x up\n",
                "mosquitto.conf:3: `topic`: expected in, out or both, got `up`",
            ),
            (
                "connection a\naddress h\ntopic x out 5\n",
                "mosquitto.conf:3: `topic`: expected a QoS of 0, 1 or 2, got `5`",
            ),
            (
                "connection a\naddress h\ntopic x\nbridge_protocol_version 5\n",
                "mosquitto.conf:4: `bridge_protocol_version`: expected mqttv311, mqttv50 or \
                 mqttv31, got `5`",
            ),
            (
                "connection a\naddress h\ntopic x\ncleansession yes\n",
                "mosquitto.conf:4: `cleansession`: expected true or false, got `yes`",
            ),
            (
                "connection a\naddress h\ntopic x\nstart_type manual\n",
                "mosquitto.conf:4: `start_type`: `manual` is not supported (nor is it by \
                 Mosquitto); use automatic, lazy or once",
            ),
            (
                "connection a\naddress h\ntopic x\nstart_type sometimes\n",
                "mosquitto.conf:4: `start_type`: expected automatic, lazy or once, got \
                 `sometimes`",
            ),
            (
                "connection a\naddress h\ntopic x\nnotification_topic a/#\n",
                "mosquitto.conf:4: `notification_topic`: `a/#` is not a topic name: it must not \
                 contain wildcards (`+`, `#`)",
            ),
            (
                "connection a\naddress h\ntopic x\nremote_password p\n",
                "mosquitto.conf:4: `remote_password`: needs a remote user name too: MQTT 3.1 \
                 and 3.1.1 do not allow a password without a user name (MQTT 5 does)",
            ),
            (
                "connection a\naddress h\ntopic x\nlocal_clientid same\nconnection b\naddress \
                 h\ntopic x\nlocal_clientid same\n",
                "mosquitto.conf:8: `local_clientid`: `same` is already the local client id of \
                 another bridge (at mosquitto.conf:4): two bridges would take each other's \
                 session over",
            ),
            (
                "connection a\naddress h\ntopic x\nbridge_psk 00ff\n",
                "mosquitto.conf:4: `bridge_psk`: TLS-PSK is not supported; Tern refuses to start \
                 rather than connect to the remote broker without the encryption this file asks \
                 for",
            ),
            (
                "connection a\naddress h\ntopic x\nbridge_require_ocsp true\n",
                "mosquitto.conf:4: `bridge_require_ocsp`: OCSP is not supported; Tern refuses to \
                 start rather than skip the revocation check this file asks for",
            ),
            (
                "connection a\naddress h\ntopic x\nbridge_insecure false\n",
                "mosquitto.conf:4: `bridge_insecure`: needs `bridge_cafile` or `bridge_capath` \
                 in the same bridge: without CA certificates to verify the remote broker, the \
                 bridge would not use TLS",
            ),
            (
                "connection a\naddress h\ntopic x\nbridge_frobnicate 1\n",
                "mosquitto.conf:4: `bridge_frobnicate`: unknown directive",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(conf_err(text), message, "{text}");
        }
        // MQTT 5 allows a password alone.
        let c = conf(
            "connection a\naddress h\ntopic x\nbridge_protocol_version mqttv50\nremote_password p\n",
        );
        assert_eq!(c.bridges[0].remote_password.as_deref(), Some("p"));
    }

    #[test]
    fn harmless_unsupported_bridge_directives_are_warnings() {
        let c = conf(
            "connection a\naddress h\ntopic x\nlocal_username u\nlocal_password p\n\
             bridge_attempt_unsubscribe false\nbridge_outgoing_retain false\n\
             bridge_outgoing_retain true\nbridge_bind_address 10.0.0.1\nbridge_max_packet_size 0\n\
             bridge_require_ocsp false\n",
        );
        let keys: Vec<&str> = c
            .warnings
            .iter()
            .map(|w| w.split('`').nth(1).unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "local_username",
                "local_password",
                "bridge_attempt_unsubscribe",
                "bridge_outgoing_retain",
                "bridge_bind_address",
                "bridge_max_packet_size",
            ]
        );
        assert!(
            c.warnings[3].starts_with("mosquitto.conf:7: "),
            "{}",
            c.warnings[3]
        );
    }

    #[test]
    fn tls_files_are_checked_when_the_file_is_read() {
        let dir = Dir::new("tls");
        let missing = dir.0.join("missing.pem");
        let text = format!(
            "connection a\naddress h:8883\ntopic x\nbridge_cafile {}\n",
            missing.display()
        );
        let e = conf_err(&text);
        assert!(
            e.starts_with(&format!(
                "mosquitto.conf:4: `bridge_cafile`: cannot read `{}`: ",
                missing.display()
            )),
            "{e}"
        );
        let toml_text = format!(
            "[[bridges]]\nname = \"a\"\naddress = \"h\"\ntopics = [\"x\"]\n\
             tls = {{ capath = \"{}\" }}\n",
            missing.display()
        );
        let e = toml_err(&toml_text);
        assert!(
            e.starts_with("tern.toml:5: `bridges[0].tls.capath`: cannot read"),
            "{e}"
        );
        let e = toml_err(
            "[[bridges]]\nname = \"a\"\naddress = \"h\"\ntopics = [\"x\"]\n\
             tls = { insecure = true }\n",
        );
        assert_eq!(
            e,
            "tern.toml:5: `bridges[0].tls.cafile`: this required key is missing: CA certificates \
             (`cafile` or `capath`) to verify the remote broker with"
        );
    }

    #[test]
    fn toml_errors_name_the_line_and_key() {
        let bridge = |extra: &str| format!("[[bridges]]\nname = \"a\"\n{extra}");
        let cases = [
            (
                "[[bridges]]\naddress = \"h\"\ntopics = [\"x\"]\n".to_owned(),
                "tern.toml:1: `bridges[0].name`: this required key is missing",
            ),
            (
                bridge("topics = [\"x\"]\n"),
                "tern.toml:1: `bridges[0].address`: this required key is missing: the remote \
                 broker's address (\"HOST:PORT\", or an array of them tried in order)",
            ),
            (
                bridge("address = \"h\"\naddresses = [\"g\"]\ntopics = [\"x\"]\n"),
                "tern.toml:4: `bridges[0].addresses`: contradicts `address`: give the addresses \
                 in one of the two keys",
            ),
            (
                bridge("address = []\ntopics = [\"x\"]\n"),
                "tern.toml:3: `bridges[0].address`: must name at least one address",
            ),
            (
                bridge("address = \"h\"\n"),
                "tern.toml:1: `bridges[0].topics`: this required key is missing: the topics the \
                 bridge carries, such as [\"sensors/# out 1\"]",
            ),
            (
                bridge("address = \"h\"\ntopics = []\n"),
                "tern.toml:4: `bridges[0].topics`: must name at least one topic: the bridge \
                 would carry nothing",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\",\n  \"y out 7\"]\n"),
                "tern.toml:5: `bridges[0].topics[1]`: expected a QoS of 0, 1 or 2, got `7`",
            ),
            (
                bridge("address = \"h\"\ntopics = [{ pattern = \"x\", direction = \"up\" }]\n"),
                "tern.toml:4: `bridges[0].topics[0]`: `direction`: expected in, out or both, got \
                 `up`",
            ),
            (
                bridge("address = \"h\"\ntopics = [{ pattern = \"x\", qos = 3 }]\n"),
                "tern.toml:4: `bridges[0].topics[0]`: `qos`: expected a QoS of 0, 1 or 2, got `3`",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\"]\nprotocol = \"mqttv4\"\n"),
                "tern.toml:5: `bridges[0].protocol`: expected \"mqttv311\", \"mqttv50\", \
                 \"mqttv31\", \"3.1.1\", \"5\", \"3.1\", 4, 5 or 3",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\"]\nkeep_alive = 2\n"),
                "tern.toml:5: `bridges[0].keep_alive`: must be between 5s and 65535s \
                 (18h12m15s), not 2s",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\"]\nstart_type = \"manual\"\n"),
                "tern.toml:5: `bridges[0].start_type`: expected \"automatic\", \"lazy\" or \
                 \"once\", got `manual`",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\"]\nremote_password = \"p\"\n"),
                "tern.toml:5: `bridges[0].remote_password`: needs a remote user name too: MQTT \
                 3.1 and 3.1.1 do not allow a password without a user name (MQTT 5 does)",
            ),
            (
                bridge(
                    "address = \"h\"\ntopics = [\"x\"]\n\n[[bridges]]\nname = \"a\"\naddress \
                        = \"g\"\ntopics = [\"y\"]\n",
                ),
                "tern.toml:7: `bridges[1].name`: the bridge `a` is already defined as \
                 `bridges[0]`",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\"]\nthreshold = 0\n"),
                "tern.toml:5: `bridges[0].threshold`: must be at least 1, not 0",
            ),
            (
                bridge("address = \"h\"\ntopics = [\"x\"]\nmax_queued_messages = -1\n"),
                "tern.toml:5: `bridges[0].max_queued_messages`: must be 0 (no limit) or more, \
                 not -1",
            ),
        ];
        for (text, message) in cases {
            assert_eq!(toml_err(&text), message, "{text}");
        }
    }

    #[test]
    fn a_toml_bridge_with_tls_defaults_to_port_8883() {
        let dir = Dir::new("port");
        let ca = dir.0.join("ca.pem");
        write_ca(&ca);
        let c = toml(&format!(
            "[[bridges]]\nname = \"a\"\naddress = [\"h\", \"g:9999\"]\ntopics = [\"x\"]\n\
             tls = {{ cafile = \"{}\", insecure = true, tls_version = \"tlsv1.3\", alpn = \"mqtt\" }}\n",
            ca.display()
        ));
        let b = &c.bridges[0];
        let ports: Vec<u16> = b.addresses.iter().map(|a| a.port).collect();
        assert_eq!(ports, [8883, 9999]);
        assert_eq!(
            b.tls,
            Some(BridgeTls {
                cafile: Some(ca.clone()),
                capath: None,
                certfile: None,
                keyfile: None,
                insecure: true,
                min_version: Some("tlsv1.3".to_owned()),
                alpn: Some("mqtt".to_owned()),
            })
        );
        // mosquitto.conf keeps Mosquitto's 1883, and says so.
        let c = conf(&format!(
            "connection a\naddress h\ntopic x\nbridge_cafile {}\n",
            ca.display()
        ));
        assert_eq!(c.bridges[0].addresses[0].port, 1883);
        assert_eq!(
            c.warnings,
            [
                "mosquitto.conf:2: `address`: `h` has no port: 1883 is used, as in Mosquitto, \
              although the bridge uses TLS (usually on port 8883)"
            ]
        );
    }

    #[test]
    fn old_tls_versions_mean_tls_1_2_with_a_warning() {
        let dir = Dir::new("version");
        let ca = dir.0.join("ca.pem");
        write_ca(&ca);
        let c = conf(&format!(
            "connection a\naddress h:8883\ntopic x\nbridge_cafile {}\nbridge_tls_version tlsv1.1\n\
             bridge_insecure true\n",
            ca.display()
        ));
        let tls = c.bridges[0].tls.as_ref().expect("TLS");
        assert_eq!(tls.min_version.as_deref(), Some("tlsv1.2"));
        assert!(tls.insecure);
        assert_eq!(
            c.warnings,
            [
                "mosquitto.conf:5: `bridge_tls_version`: `tlsv1.1` is older than any version \
                 Tern speaks: clients need TLS 1.2 or 1.3; TLS 1.2 is the minimum"
                    .to_owned(),
                format!("mosquitto.conf:6: `bridge_insecure`: {INSECURE}"),
            ]
        );
        let e = conf_err(&format!(
            "connection a\naddress h:8883\ntopic x\nbridge_cafile {}\nbridge_tls_version ssl3\n",
            ca.display()
        ));
        assert_eq!(
            e,
            "mosquitto.conf:5: `bridge_tls_version`: expected tlsv1.2 or tlsv1.3, got `ssl3`"
        );
    }

    /// Writes a self-signed CA certificate to `path`.
    fn write_ca(path: &Path) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("certificate");
        std::fs::write(path, cert.pem()).expect("write");
    }
}
