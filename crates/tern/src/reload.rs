//! Reloading the security settings on SIGHUP: the ACL files and the authentication sources
//! (password files, JWT, HTTP hook) are read again from the configuration file the broker was
//! started with, the broker-wide ones and every listener's own (Mosquitto's
//! `per_listener_settings`). A configuration that does not load (a missing, empty or garbage
//! file) is logged with its file and line and changes nothing: the broker keeps the rules it
//! had, it never falls back to "allow all".

use std::path::PathBuf;
use std::sync::Arc;

use tern_core::{AclSlot, Broker};

use crate::auth::{Authenticator, SharedAuthenticator};
use crate::config::{self, Config, ConfigError, ListenAddr, ListenerConfig};

/// What a reload replaces, and where the configuration comes from.
#[derive(Clone)]
pub(crate) struct SecurityReload {
    /// The configuration file (`None`: started without one, nothing to reload).
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) broker: Broker,
    /// The broker-wide sources, used by listeners not declared in the file (`--listen`).
    pub(crate) authenticator: SharedAuthenticator,
    /// The security settings of the listeners declared in the file, in the file's order.
    pub(crate) listeners: Vec<ListenerSecurity>,
}

/// The authentication sources and access rules in force on one listener declared in the
/// configuration file: its own (`password_file`, `acl_file` on the listener) or the
/// broker-wide ones.
#[derive(Clone)]
pub(crate) struct ListenerSecurity {
    /// The listener's address, for messages.
    pub(crate) bind: ListenAddr,
    pub(crate) authenticator: SharedAuthenticator,
    pub(crate) acl: Arc<AclSlot>,
}

impl ListenerSecurity {
    /// The settings of `listener` as `config` gives them; its ACL slot is registered with
    /// `broker` (see [`Broker::listener_acl`]).
    pub(crate) fn new(config: &Config, listener: &ListenerConfig, broker: &Broker) -> Self {
        let authenticator = Authenticator::for_listener(config, listener);
        Self {
            bind: listener.bind.clone(),
            authenticator: Arc::new(arc_swap::ArcSwap::from_pointee(authenticator)),
            acl: broker.listener_acl(listener_acl(config, listener)),
        }
    }
}

/// The access rules of `listener`: its own ACL file, else the broker-wide one.
pub(crate) fn listener_acl(
    config: &Config,
    listener: &ListenerConfig,
) -> Option<Arc<tern_core::Acl>> {
    match &listener.settings.acl_file {
        Some(own) => Some(own.contents.clone()),
        None => config.broker.acl.clone(),
    }
}

impl SecurityReload {
    /// Reads the configuration again and swaps in its ACL and password files.
    pub(crate) fn reload(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.config_file else {
            return Ok(());
        };
        let config = config::load(path)?;
        swap_authenticator(
            &self.authenticator,
            Authenticator::from_config(&config),
            None,
        );
        self.broker.set_acl(config.broker.acl.clone());
        if !self.listeners.is_empty() && config.listeners.len() != self.listeners.len() {
            // Listeners are not reloaded: without the same list, which settings belong to
            // which listener is a guess.
            tracing::error!(
                "reload: the file now declares {} listeners instead of {}; listeners change at \
                 the next restart, and each keeps its previous password file and ACL",
                config.listeners.len(),
                self.listeners.len()
            );
        } else {
            for (security, listener) in self.listeners.iter().zip(&config.listeners) {
                let authenticator = Authenticator::for_listener(&config, listener);
                swap_authenticator(&security.authenticator, authenticator, Some(&security.bind));
                security.acl.set(listener_acl(&config, listener));
                if listener.settings.has_own_files() {
                    tracing::info!(
                        "reload: listener {} uses ACL {} and password file {}",
                        security.bind,
                        describe(
                            listener
                                .settings
                                .acl_file
                                .as_ref()
                                .map(|f| &f.path)
                                .or(config.acl_file.as_ref())
                        ),
                        describe(
                            listener
                                .settings
                                .password_file
                                .as_ref()
                                .or(config.password_file.as_ref())
                                .map(|f| &f.path)
                        ),
                    );
                }
            }
        }
        tracing::info!(
            "reload: ACL {} and password file {} in force",
            describe(config.acl_file.as_ref()),
            describe(config.password_file.as_ref().map(|f| &f.path)),
        );
        Ok(())
    }
}

/// Replaces the sources in `slot` with `new`, unless that would switch between no source and
/// some: whether a listener checks credentials at all is decided at start.
fn swap_authenticator(
    slot: &SharedAuthenticator,
    new: Authenticator,
    listener: Option<&ListenAddr>,
) {
    if new.is_configured() == slot.load().is_configured() {
        slot.store(Arc::new(new));
        return;
    }
    let scope = listener.map_or_else(String::new, |bind| format!(" on listener {bind}"));
    tracing::warn!(
        "reload: going from no authentication source to some (`password_file`, `[auth.jwt]`, \
         `[auth.http]`) or back{scope} takes effect at the next restart; keeping the previous \
         authentication settings"
    );
}

fn describe(path: Option<&PathBuf>) -> String {
    path.map_or_else(|| "(none)".to_owned(), |p| format!("`{}`", p.display()))
}
