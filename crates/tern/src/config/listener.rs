//! Per-listener settings: the protocol versions a listener accepts, its mount point, its own
//! authentication and access control (Mosquitto's `per_listener_settings`), and the PROXY
//! protocol.

use tern_codec::ProtocolVersion;
use tern_core::{Acl, ProtocolVersions};

use super::LoadedFile;
use crate::auth::password_file::PasswordFile;

/// Settings of one listener beyond its address, limits and TLS. Every field left unset falls
/// back to the broker-wide setting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerSettings {
    /// The protocol versions accepted (TOML `protocol_versions`); `None`: all of them.
    pub protocol_versions: Option<ProtocolVersions>,
    /// Mosquitto's `mount_point`, already checked (see [`check_mount_point`]).
    pub mount_point: Option<String>,
    /// `allow_anonymous` for this listener.
    pub allow_anonymous: Option<bool>,
    /// The password file of this listener, read when the configuration is; it replaces the
    /// broker-wide one there.
    pub password_file: Option<LoadedFile<PasswordFile>>,
    /// The ACL file of this listener, read when the configuration is; it replaces the
    /// broker-wide one there.
    pub acl_file: Option<LoadedFile<Acl>>,
    /// `allow_zero_length_clientid` for this listener.
    pub allow_zero_length_clientid: Option<bool>,
    /// `auto_id_prefix` for this listener.
    pub auto_id_prefix: Option<String>,
    /// The PROXY protocol header its connections must start with (TOML `proxy_protocol`,
    /// Mosquitto `enable_proxy_protocol`); `None`: no header is expected.
    pub proxy_protocol: Option<crate::proxy_protocol::ProxyProtocol>,
}

impl ListenerSettings {
    /// Whether the listener has security settings of its own: a password or ACL file.
    #[must_use]
    pub fn has_own_files(&self) -> bool {
        self.password_file.is_some() || self.acl_file.is_some()
    }
}

/// Checks a mount point: a topic name (no `+` or `#`, not empty) that does not start with `$`
/// (it would put the listener's clients in the broker's `$SYS` tree, or make their topics look
/// like shared subscriptions).
pub(crate) fn check_mount_point(mount_point: &str) -> Result<(), String> {
    if mount_point.is_empty() {
        return Err("must not be empty (leave it out for no mount point)".to_owned());
    }
    if !tern_codec::is_valid_topic_name(mount_point) {
        return Err(format!(
            "`{mount_point}` is not a valid topic prefix: it must not contain `+`, `#` or NUL"
        ));
    }
    if mount_point.starts_with('$') {
        return Err(format!("`{mount_point}` must not start with `$`"));
    }
    Ok(())
}

/// A warning for a mount point without a trailing `/`: a client's filter that starts with a
/// wildcard (`#`, `+/x`) is then glued to the last level of the prefix and refused as invalid.
pub(crate) fn mount_point_warning(mount_point: &str) -> Option<String> {
    (!mount_point.ends_with('/')).then(|| {
        format!(
            "`{mount_point}` does not end with `/`: topics are glued to it (`{mount_point}x` for \
             `x`), and filters starting with `#` or `+` are refused; most setups want \
             `{mount_point}/`"
        )
    })
}

/// One entry of TOML's `protocol_versions`: the protocol level of CONNECT (3, 4 or 5) or the
/// version's name ("3.1", "3.1.1", "5" or "5.0").
pub(crate) enum VersionToken<'a> {
    /// An integer.
    Level(i64),
    /// A string.
    Name(&'a str),
}

/// Reads one entry of `protocol_versions`.
pub(crate) fn parse_protocol_version(token: VersionToken<'_>) -> Result<ProtocolVersion, String> {
    let version = match token {
        VersionToken::Level(3) => Some(ProtocolVersion::V31),
        VersionToken::Level(4) => Some(ProtocolVersion::V311),
        VersionToken::Level(5) => Some(ProtocolVersion::V5),
        VersionToken::Name("3.1") => Some(ProtocolVersion::V31),
        VersionToken::Name("3.1.1") => Some(ProtocolVersion::V311),
        VersionToken::Name("5" | "5.0") => Some(ProtocolVersion::V5),
        _ => None,
    };
    version.ok_or_else(|| {
        let got = match token {
            VersionToken::Level(n) => n.to_string(),
            VersionToken::Name(name) => format!("\"{name}\""),
        };
        format!(
            "expected a protocol level (3, 4, 5) or a version name (\"3.1\", \"3.1.1\", \"5\"), \
             got {got}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points() {
        assert_eq!(check_mount_point("tenant/"), Ok(()));
        assert_eq!(check_mount_point("a/b c/"), Ok(()));
        assert_eq!(check_mount_point("tenant"), Ok(()));
        assert!(check_mount_point("").is_err());
        assert!(check_mount_point("a/+/").is_err());
        assert!(check_mount_point("a/#").is_err());
        assert!(check_mount_point("$SYS/").is_err());
        assert!(check_mount_point("$share/g/").is_err());
        assert_eq!(mount_point_warning("tenant/"), None);
        assert!(mount_point_warning("tenant").is_some());
    }

    #[test]
    fn protocol_versions() {
        use VersionToken::{Level, Name};
        assert_eq!(parse_protocol_version(Level(3)), Ok(ProtocolVersion::V31));
        assert_eq!(parse_protocol_version(Level(4)), Ok(ProtocolVersion::V311));
        assert_eq!(parse_protocol_version(Level(5)), Ok(ProtocolVersion::V5));
        assert_eq!(
            parse_protocol_version(Name("3.1")),
            Ok(ProtocolVersion::V31)
        );
        assert_eq!(
            parse_protocol_version(Name("3.1.1")),
            Ok(ProtocolVersion::V311)
        );
        assert_eq!(parse_protocol_version(Name("5")), Ok(ProtocolVersion::V5));
        assert_eq!(parse_protocol_version(Name("5.0")), Ok(ProtocolVersion::V5));
        assert!(parse_protocol_version(Level(6)).is_err_and(|e| e.ends_with("got 6")));
        assert!(parse_protocol_version(Name("v5")).is_err_and(|e| e.ends_with("got \"v5\"")));
    }
}
