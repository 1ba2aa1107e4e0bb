//! Reloading the security settings on SIGHUP: the ACL file and the authentication sources
//! (password file, JWT, HTTP hook) are read again from the configuration file the broker was
//! started with. A configuration that does
//! not load (a missing, empty or garbage file) is logged with its file and line and changes
//! nothing: the broker keeps the rules it had, it never falls back to "allow all".

use std::path::PathBuf;
use std::sync::Arc;

use tern_core::Broker;

use crate::auth::{Authenticator, SharedAuthenticator};
use crate::config::{self, ConfigError};

/// What a reload replaces, and where the configuration comes from.
#[derive(Clone)]
pub(crate) struct SecurityReload {
    /// The configuration file (`None`: started without one, nothing to reload).
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) broker: Broker,
    pub(crate) authenticator: SharedAuthenticator,
}

impl SecurityReload {
    /// Reads the configuration again and swaps in its ACL and password file.
    pub(crate) fn reload(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.config_file else {
            return Ok(());
        };
        let config = config::load(path)?;
        let had_passwords = self.authenticator.load().is_configured();
        let authenticator = Authenticator::from_config(&config);
        if authenticator.is_configured() != had_passwords {
            // Whether listeners check credentials at all is decided at start.
            tracing::warn!(
                "reload: going from no authentication source to some (`password_file`, \
                 `[auth.jwt]`, `[auth.http]`) or back takes effect at the next restart; keeping \
                 the previous authentication settings"
            );
        } else {
            self.authenticator.store(Arc::new(authenticator));
        }
        self.broker.set_acl(config.broker.acl.clone());
        tracing::info!(
            "reload: ACL {} and password file {} in force",
            describe(config.acl_file.as_ref()),
            describe(config.password_file.as_ref().map(|f| &f.path)),
        );
        Ok(())
    }
}

fn describe(path: Option<&PathBuf>) -> String {
    path.map_or_else(|| "(none)".to_owned(), |p| format!("`{}`", p.display()))
}
