//! The `[admin]` table of the TOML configuration: the admin REST API's listener and its API keys.
//!
//! ```toml
//! [admin]
//! listen = "127.0.0.1:18083"     # or "off"
//! metrics_anonymous = false      # GET /metrics without credentials
//! api_key_file = "api-keys"      # lines `key:hash`, written by `tern ctl apikey`
//! token_ttl = "1h"               # lifetime of the tokens of POST /api/v1/login
//!
//! [[admin.api_keys]]
//! key = "ops"
//! secret = "…"                   # or secret_hash = "$7$…" (a password-file hash)
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    ConfigError, LoadedFile, load_password_file, parse_duration, relative_to, resolve_host,
};
use crate::auth::password_file::PasswordFile;

/// Where the admin API listens when nothing says otherwise: loopback only, EMQX's port.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:18083";

/// How long a login token stays valid by default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The admin API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where it listens.
    pub listen: AdminListen,
    /// Whether `GET /metrics` answers without credentials.
    pub metrics_anonymous: bool,
    /// The API key file (`key:hash` lines in a password-file format), already read.
    pub api_key_file: Option<LoadedFile<PasswordFile>>,
    /// The keys of the configuration file itself (`[[admin.api_keys]]`).
    pub api_keys: Vec<ApiKeyConfig>,
    /// How long the tokens of `POST /api/v1/login` stay valid (`token_ttl`).
    pub token_ttl: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: AdminListen::Default,
            metrics_anonymous: false,
            api_key_file: None,
            api_keys: Vec::new(),
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

/// Where the admin API listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminListen {
    /// Not configured: [`DEFAULT_ADMIN_LISTEN`]; a failure to bind it is only a warning.
    #[default]
    Default,
    /// Turned off (`listen = "off"`, `--admin-listen off`).
    Off,
    /// An address chosen by the configuration or the command line; a failure to bind it stops
    /// the broker, as for an MQTT listener.
    Addr(SocketAddr),
}

impl AdminListen {
    /// Parses `HOST:PORT`, a bare port (on 127.0.0.1), or `off`.
    ///
    /// # Errors
    /// What is expected, when `text` is none of these.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::Off);
        }
        if let Ok(port) = text.parse::<u16>() {
            return Ok(Self::Addr(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Self::Addr(addr));
        }
        let expected = || {
            format!(
                "expected HOST:PORT such as `127.0.0.1:18083` or `[::1]:18083`, a port, or \
                 `off`, got `{text}`"
            )
        };
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        let port = port.parse::<u16>().map_err(|_| expected())?;
        if host.is_empty() || (host.contains(':') && !host.starts_with('[')) {
            return Err(expected());
        }
        resolve_host(host, port, None).map(Self::Addr)
    }
}

/// One `[[admin.api_keys]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyConfig {
    /// The key (the user name of HTTP Basic).
    pub key: String,
    /// Its secret.
    pub secret: ApiSecret,
}

/// An API key's secret, as the configuration gives it.
#[derive(Clone, PartialEq, Eq)]
pub enum ApiSecret {
    /// In clear (`secret`).
    Clear(String),
    /// A password-file hash (`secret_hash`: `$6$`, `$7$` or `$argon2id$`), checked when read.
    Hash(String),
}

impl fmt::Debug for ApiKeyConfig {
    /// Never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.secret {
            ApiSecret::Clear(_) => "secret",
            ApiSecret::Hash(_) => "secret_hash",
        };
        f.debug_struct("ApiKeyConfig")
            .field("key", &self.key)
            .field("secret", &kind)
            .finish()
    }
}

/// `[admin]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(super) struct RawAdmin {
    listen: Option<Spanned<String>>,
    metrics_anonymous: Option<bool>,
    api_key_file: Option<Spanned<String>>,
    api_keys: Option<Vec<Spanned<RawApiKey>>>,
    token_ttl: Option<Spanned<TtlValue>>,
}

/// `token_ttl`: whole seconds, or a string for [`parse_duration`].
struct TtlValue(String);

impl<'de> Deserialize<'de> for TtlValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: whole seconds, or a string such as \"30m\" or \"1h\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_owned())
            }
        }
        d.deserialize_any(V).map(Self)
    }
}

/// `[[admin.api_keys]]` as written.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with `key` and `secret` or `secret_hash`"
)]
struct RawApiKey {
    key: Spanned<String>,
    secret: Option<Spanned<String>>,
    secret_hash: Option<Spanned<String>>,
}

impl RawAdmin {
    /// Validates the table of the file `path` whose text is `text`.
    pub(super) fn validate(self, path: &Path, text: &str) -> Result<AdminConfig, ConfigError> {
        let error = |span: std::ops::Range<usize>, key: &str, message: String| {
            ConfigError::at(path, line_of(text, span.start), key, message)
        };
        let mut config = AdminConfig {
            metrics_anonymous: self.metrics_anonymous.unwrap_or(false),
            ..AdminConfig::default()
        };
        if let Some(v) = &self.listen {
            config.listen =
                AdminListen::parse(v.get_ref()).map_err(|m| error(v.span(), "admin.listen", m))?;
        }
        if let Some(v) = &self.token_ttl {
            let ttl = parse_duration(&v.get_ref().0)
                .map_err(|m| error(v.span(), "admin.token_ttl", m))?;
            if ttl.is_zero() {
                let message = "must be longer than zero".to_owned();
                return Err(error(v.span(), "admin.token_ttl", message));
            }
            config.token_ttl = ttl;
        }
        if let Some(v) = &self.api_key_file {
            if v.get_ref().trim().is_empty() {
                let message = "must not be empty".to_owned();
                return Err(error(v.span(), "admin.api_key_file", message));
            }
            let file = relative_to(path, Path::new(v.get_ref()));
            // A key file whose last key was deleted (`tern ctl apikey delete`) holds no keys:
            // nothing is let in through it, rather than the whole configuration refused.
            let holds_no_keys = std::fs::read_to_string(&file).is_ok_and(|text| {
                text.lines()
                    .all(|l| l.trim().is_empty() || l.starts_with('#'))
            });
            if !holds_no_keys {
                config.api_key_file = Some(load_password_file(&file, |m| {
                    error(v.span(), "admin.api_key_file", m)
                })?);
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, entry) in self.api_keys.iter().flatten().enumerate() {
            let raw = entry.get_ref();
            let key_name = |name: &str| format!("admin.api_keys[{i}].{name}");
            let key = raw.key.get_ref();
            if key.is_empty() || key.contains(':') || key.chars().any(char::is_control) {
                let message = "must be a non-empty name without `:` or control characters \
                               (it is the user name of HTTP Basic)"
                    .to_owned();
                return Err(error(raw.key.span(), &key_name("key"), message));
            }
            if seen.contains(&key.as_str()) {
                let message = format!("the key `{key}` is already defined above");
                return Err(error(raw.key.span(), &key_name("key"), message));
            }
            seen.push(key);
            let secret = match (&raw.secret, &raw.secret_hash) {
                (Some(s), None) => {
                    if s.get_ref().len() < 8 {
                        let message = "must be at least 8 characters long".to_owned();
                        return Err(error(s.span(), &key_name("secret"), message));
                    }
                    ApiSecret::Clear(s.get_ref().clone())
                }
                (None, Some(h)) => {
                    PasswordFile::parse(&format!("{key}:{}", h.get_ref())).map_err(|e| {
                        error(h.span(), &key_name("secret_hash"), e.message.clone())
                    })?;
                    ApiSecret::Hash(h.get_ref().clone())
                }
                (Some(_), Some(h)) => {
                    let message = "contradicts `secret`: set only one of the two".to_owned();
                    return Err(error(h.span(), &key_name("secret_hash"), message));
                }
                (None, None) => {
                    let message =
                        "this key has no secret: set `secret` or `secret_hash`".to_owned();
                    return Err(error(entry.span(), &key_name("secret"), message));
                }
            };
            config.api_keys.push(ApiKeyConfig {
                key: key.clone(),
                secret,
            });
        }
        Ok(config)
    }
}

/// The 1-based line of a byte offset of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> Result<AdminConfig, ConfigError> {
        #[derive(Deserialize)]
        struct Root {
            admin: RawAdmin,
        }
        let root: Root = toml::from_str(text).unwrap();
        root.admin.validate(Path::new("/etc/tern.toml"), text)
    }

    #[test]
    fn listen_forms() {
        assert_eq!(AdminListen::parse("off"), Ok(AdminListen::Off));
        assert_eq!(
            AdminListen::parse("18084"),
            Ok(AdminListen::Addr("127.0.0.1:18084".parse().unwrap()))
        );
        assert_eq!(
            AdminListen::parse("[::1]:0"),
            Ok(AdminListen::Addr("[::1]:0".parse().unwrap()))
        );
        assert_eq!(
            AdminListen::parse("localhost:9"),
            Ok(AdminListen::Addr("127.0.0.1:9".parse().unwrap()))
        );
        assert!(AdminListen::parse("nowhere").is_err());
        assert!(AdminListen::parse("::1:80").is_err());
    }

    #[test]
    fn keys_and_errors_name_the_line_and_key() {
        let ok = parse(
            "[admin]\nlisten = \"off\"\nmetrics_anonymous = true\n\
             [[admin.api_keys]]\nkey = \"a\"\nsecret = \"12345678\"\n",
        )
        .unwrap();
        assert_eq!(ok.listen, AdminListen::Off);
        assert!(ok.metrics_anonymous);
        assert_eq!(ok.api_keys.len(), 1);
        assert!(!format!("{:?}", ok.api_keys[0]).contains("12345678"));

        let e = parse("[admin]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("admin.listen")));

        let e =
            parse("[admin]\n[[admin.api_keys]]\nkey = \"a\"\nsecret = \"short\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("admin.api_keys[0].secret"))
        );

        let e = parse("[admin]\n[[admin.api_keys]]\nkey = \"a\"\nsecret_hash = \"plain\"\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("admin.api_keys[0].secret_hash"))
        );

        let e = parse(
            "[admin]\n[[admin.api_keys]]\nkey = \"a\"\nsecret = \"12345678\"\n\
             [[admin.api_keys]]\nkey = \"a\"\nsecret = \"12345678\"\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(6), Some("admin.api_keys[1].key"))
        );

        let e = parse("[admin]\napi_key_file = \"/nonexistent/keys\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("admin.api_key_file"))
        );
    }
}
