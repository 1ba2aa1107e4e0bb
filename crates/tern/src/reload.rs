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

// ---------------------------------------------------------------------------------------------
// Hot reload: the whole configuration file, on SIGHUP and through the admin API.

use std::collections::HashMap;
use std::time::Duration;

use tern_codec::ByteString;
use tern_core::ListenerPolicy;

use crate::limits::PublishRates;
use crate::logging::Logging;
use crate::server::{ListenerInfo, ListenerKey, ListenerSpec, Listeners, PendingListener};
use crate::tls::TlsAcceptor;

/// How long a reload waits for a removed listener's socket to close before binding another
/// listener on an address that overlaps it.
const REMOVED_SOCKET_WAIT: Duration = Duration::from_secs(5);

/// What a reload keeps from the command line: it wins over the file, as at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommandLine {
    /// `--listen` was given: the file's listeners are not used.
    pub(crate) listen: bool,
    /// `--allow-anonymous`.
    pub(crate) allow_anonymous: bool,
    /// `--data-dir` (or `TERN_DATA_DIR`), which replaces the file's data directory.
    pub(crate) data_dir: Option<PathBuf>,
    /// `--in-memory`.
    pub(crate) in_memory: bool,
}

/// Reloads the configuration file: validated whole first (the same checks as `tern
/// check-config`, then the files it names, the TLS certificates, the log files and the new
/// listeners' sockets), then applied; a configuration that fails any check changes nothing.
/// SIGHUP and the admin API's `POST /api/v1/reload` both call [`Reloader::reload`].
#[derive(Clone)]
pub(crate) struct Reloader {
    inner: Arc<ReloaderInner>,
}

struct ReloaderInner {
    config_file: Option<PathBuf>,
    command_line: CommandLine,
    broker: Broker,
    listeners: Listeners,
    logging: Option<Logging>,
    /// The broker-wide authentication sources (listeners not declared in the file).
    authenticator: SharedAuthenticator,
    /// The security slots of the listeners declared in the file.
    security: std::sync::Mutex<HashMap<ListenerKey, ListenerSecurity>>,
    /// The configuration in force; its lock serializes reloads.
    current: tokio::sync::Mutex<Config>,
    /// More to reload with the configuration (the admin API's keys): what changed.
    extra: std::sync::Mutex<Vec<ExtraReload>>,
    /// Told of every outcome.
    observers: std::sync::Mutex<Vec<ReloadObserver>>,
}

/// Something else to reload with a new configuration; returns what changed.
pub(crate) type ExtraReload = Box<dyn Fn(&Config) -> Vec<String> + Send + Sync>;

impl Reloader {
    /// A reloader for the server whose listeners are `listeners`, started with `config` (read
    /// from `config_file`). `security` holds the slots of the listeners declared in the file,
    /// in the file's order.
    pub(crate) fn new(
        config: Config,
        command_line: CommandLine,
        broker: Broker,
        listeners: Listeners,
        logging: Option<Logging>,
        authenticator: SharedAuthenticator,
        security: &[ListenerSecurity],
    ) -> Self {
        let keys = ListenerKey::of(security.iter().map(|s| &s.bind));
        let security = keys.into_iter().zip(security.iter().cloned()).collect();
        Self {
            inner: Arc::new(ReloaderInner {
                config_file: config.source.clone(),
                command_line,
                broker,
                listeners,
                logging,
                authenticator,
                security: std::sync::Mutex::new(security),
                current: tokio::sync::Mutex::new(config),
                extra: std::sync::Mutex::new(Vec::new()),
                observers: std::sync::Mutex::new(Vec::new()),
            }),
        }
    }

    /// Adds something to reload with the configuration.
    pub(crate) fn also(&self, extra: ExtraReload) {
        self.inner
            .extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(extra);
    }

    /// The listeners now serving, for the admin API.
    pub(crate) fn listeners(&self) -> Vec<ListenerInfo> {
        self.inner.listeners.infos()
    }

    /// Reads the configuration file again, checks all of it, and applies it: returns what
    /// changed (one line each, "needs a restart" for what cannot change while running), or why
    /// it was refused (`file:line: `key`: ...`), in which case nothing changed. Reloads run one
    /// at a time.
    pub(crate) async fn reload(&self) -> Result<Vec<String>, String> {
        let mut current = self.inner.current.lock().await;
        crate::process::notify_reloading();
        let result = self.reload_locked(&mut current).await;
        crate::process::notify_ready();
        for observer in self
            .inner
            .observers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            observer(&result);
        }
        match &result {
            Ok(changes) => {
                tracing::info!(
                    "reload: ACL {} and password file {} in force",
                    describe(current.acl_file.as_ref()),
                    describe(current.password_file.as_ref().map(|f| &f.path)),
                );
                if changes.is_empty() {
                    tracing::info!("reload: nothing else changed");
                }
                for change in changes {
                    tracing::info!("reload: {change}");
                }
            }
            Err(e) => {
                tracing::error!(
                    "reload failed, keeping the previous ACL and passwords and every other \
                     setting: {e}"
                );
                if e.contains("keyfile") || e.contains("certfile") || e.contains("tls") {
                    tracing::error!(
                        "TLS listeners: reload failed, keeping the previous certificates"
                    );
                }
            }
        }
        result
    }

    async fn reload_locked(&self, current: &mut Config) -> Result<Vec<String>, String> {
        let inner = &self.inner;
        let Some(path) = inner.config_file.clone() else {
            return Err(
                "the broker was started without a configuration file: nothing to reload".to_owned(),
            );
        };
        // 1. Read and check everything; nothing changes until all of it is good.
        let mut config = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| format!("reload failed: {e}"))?
            .map_err(|e| e.to_string())?;
        // The command line wins over the file, as at start.
        if let Some(dir) = &inner.command_line.data_dir {
            config.persistence.data_dir.clone_from(dir);
        }
        if inner.command_line.in_memory {
            config.persistence.enabled = false;
        }
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let log = match &inner.logging {
            Some(logging) => Some(logging.prepare(&config.log)?),
            None => None,
        };
        let plan = self.plan_listeners(current, &config).await?;

        // 2. Apply.
        let mut changes = Vec::new();
        if let (Some(logging), Some(log)) = (&inner.logging, log) {
            changes.extend(logging.commit(log));
        }
        swap_authenticator(
            &inner.authenticator,
            Authenticator::from_config(&config),
            None,
        );
        inner.broker.set_acl(config.broker.acl.clone());
        if current.acl_file != config.acl_file {
            changes.push(format!("acl_file: {}", describe(config.acl_file.as_ref())));
        }
        if current.password_file != config.password_file {
            changes.push(format!(
                "password_file: {}",
                describe(config.password_file.as_ref().map(|f| &f.path))
            ));
        }
        changes.extend(self.apply_listeners(plan, &config).await);
        if config.limits != inner.listeners.limits() {
            inner.listeners.set_limits(config.limits.clone());
            changes.push(format!("limits: {}", describe_limits(&config.limits)));
        }
        let rates = PublishRates::of(&config.broker);
        if rates != PublishRates::of(&current.broker) {
            crate::limits::set_publish_rates(rates);
            changes.push(
                "limits.message_rate, limits.bandwidth, limits.rate_exceeded: for connections \
                 made from now on"
                    .to_owned(),
            );
        }
        let messages = config.log.connection_messages.unwrap_or(true);
        if messages != current.log.connection_messages.unwrap_or(true) {
            inner.listeners.set_connection_messages(messages);
            changes.push(format!(
                "connection_messages: {messages} (for connections made from now on)"
            ));
        }
        changes.extend(needs_restart(current, &config));
        let extra = inner
            .extra
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for reload in extra.iter() {
            changes.extend(reload(&config));
        }
        drop(extra);
        *current = config;
        Ok(changes)
    }

    /// Works out what happens to each listener and prepares it: new listeners are bound and
    /// TLS certificates read, so that a failure refuses the reload before anything changed.
    async fn plan_listeners(&self, old: &Config, new: &Config) -> Result<ListenerPlan, String> {
        let inner = &self.inner;
        let mut plan = ListenerPlan::default();
        if inner.command_line.listen {
            if old.listeners != new.listeners {
                plan.notes.push(
                    "listeners: the file's listeners are not used (`--listen` replaces them)"
                        .to_owned(),
                );
            }
            return Ok(plan);
        }
        if new.listeners.is_empty() && !old.listeners.is_empty() {
            return Err(
                "the file no longer declares any listener; Tern would fall back to its \
                 built-in 127.0.0.1:1883 listener, which only a restart opens: declare at least \
                 one listener"
                    .to_owned(),
            );
        }
        let running = inner.listeners.keys();
        let security = inner
            .security
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if old.listeners.is_empty() {
            // The built-in listener: it stays unless the file now declares listeners.
            if new.listeners.is_empty() {
                return Ok(plan);
            }
            plan.remove.extend(running.iter().cloned());
        }
        let old_keys = ListenerKey::of(old.listeners.iter().map(|l| &l.bind));
        let new_keys = ListenerKey::of(new.listeners.iter().map(|l| &l.bind));
        for key in &running {
            if !old.listeners.is_empty() && !new_keys.contains(key) {
                plan.remove.push(key.clone());
            }
        }
        for (l, key) in new.listeners.iter().zip(new_keys) {
            let before = old_keys
                .iter()
                .position(|k| k == &key)
                .map(|i| &old.listeners[i]);
            let kept = before.is_some() && running.contains(&key);
            let slots = match security.get(&key) {
                Some(s) if kept => s.clone(),
                _ => ListenerSecurity::new(new, l, &inner.broker),
            };
            let authenticate = Authenticator::for_listener(new, l).is_configured();
            let spec = declared_spec(
                new,
                l,
                inner.command_line.allow_anonymous,
                &slots,
                authenticate,
            )?;
            if kept {
                plan.keep.push(Kept {
                    key,
                    listener: l.clone(),
                    changed: before != Some(l),
                    spec,
                    security: slots,
                });
                continue;
            }
            match PendingListener::bind(spec.clone(), key.clone()).await {
                Ok(pending) => plan.add.push((pending, key, slots)),
                Err(e) if overlaps(&l.bind, &plan.remove) => {
                    // Bound once the listener it overlaps has closed its socket.
                    tracing::debug!("{e}; binding after the removed listener is closed");
                    plan.deferred.push((spec, key, slots));
                }
                Err(e) => return Err(format!("{}: {e}", located(new, l))),
            }
        }
        Ok(plan)
    }

    /// Applies `plan`; returns what changed.
    async fn apply_listeners(&self, plan: ListenerPlan, config: &Config) -> Vec<String> {
        let inner = &self.inner;
        let mut changes = plan.notes;
        let mut security = inner
            .security
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut closing = Vec::new();
        for key in &plan.remove {
            if let Some(stopped) = inner.listeners.remove(key) {
                closing.push(stopped);
                changes.push(format!(
                    "listener {key} removed (its clients were disconnected)"
                ));
            }
            security.remove(key);
        }
        for (pending, key, slots) in plan.add {
            let name = pending_name(&pending);
            security.insert(key, slots);
            inner.listeners.add(pending);
            changes.push(format!("listener {name} added"));
        }
        if !plan.deferred.is_empty() {
            for stopped in &closing {
                let _ = tokio::time::timeout(REMOVED_SOCKET_WAIT, stopped.cancelled()).await;
            }
            for (spec, key, slots) in plan.deferred {
                let name = spec.bind.clone();
                match PendingListener::bind(spec, key.clone()).await {
                    Ok(pending) => {
                        security.insert(key, slots);
                        inner.listeners.add(pending);
                        changes.push(format!("listener {name} added"));
                    }
                    Err(e) => {
                        tracing::error!("reload: listener {name} not added: {e}");
                        changes.push(format!("listener {name} NOT added: {e}"));
                    }
                }
            }
        }
        for mut kept in plan.keep {
            let l = &kept.listener;
            // Its files are read again: the same slots, new contents (connections already
            // open use them too, as for the broker-wide files).
            let authenticator = Authenticator::for_listener(config, l);
            if authenticator.is_configured() == kept.security.authenticator.load().is_configured() {
                kept.security.authenticator.store(Arc::new(authenticator));
            } else {
                // Whether the listener checks credentials changes: new connections get new
                // sources (and a policy that says so), connections already open keep theirs.
                let slots = ListenerSecurity {
                    bind: kept.security.bind.clone(),
                    authenticator: Arc::new(arc_swap::ArcSwap::from_pointee(authenticator)),
                    acl: kept.security.acl.clone(),
                };
                kept.spec.authenticator = Some(slots.authenticator.clone());
                security.insert(kept.key.clone(), slots);
                kept.changed = true;
                changes.push(format!(
                    "listener {}: authentication sources changed (for connections made from \
                     now on)",
                    l.bind
                ));
            }
            kept.security.acl.set(listener_acl(config, l));
            if l.settings.has_own_files() {
                tracing::info!(
                    "reload: listener {} uses ACL {} and password file {}",
                    l.bind,
                    describe(
                        l.settings
                            .acl_file
                            .as_ref()
                            .map(|f| &f.path)
                            .or(config.acl_file.as_ref())
                    ),
                    describe(
                        l.settings
                            .password_file
                            .as_ref()
                            .or(config.password_file.as_ref())
                            .map(|f| &f.path)
                    ),
                );
            }
            if kept.changed {
                inner.listeners.update(&kept.key, kept.spec.clone());
                changes.push(format!(
                    "listener {}: new settings for connections made from now on",
                    l.bind
                ));
            } else if kept.spec.tls.is_some() {
                // The same settings: the certificate files may have been replaced.
                inner.listeners.update(&kept.key, kept.spec.clone());
            }
            if let Some(tls) = &kept.spec.tls {
                tracing::info!(
                    "TLS listener {}: now serving certificate {}",
                    l.bind,
                    tls.certificate_summary()
                );
            }
        }
        *inner
            .security
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = security;
        changes
    }
}

/// What a reload does to the listeners.
#[derive(Default)]
struct ListenerPlan {
    /// Listeners to remove.
    remove: Vec<ListenerKey>,
    /// New listeners, bound.
    add: Vec<(PendingListener, ListenerKey, ListenerSecurity)>,
    /// New listeners whose address overlaps one being removed: bound once it is closed.
    deferred: Vec<(ListenerSpec, ListenerKey, ListenerSecurity)>,
    /// Listeners that stay, with their settings from the new file.
    keep: Vec<Kept>,
    /// Notes for the outcome.
    notes: Vec<String>,
}

struct Kept {
    key: ListenerKey,
    listener: ListenerConfig,
    /// Whether its settings differ from the running ones.
    changed: bool,
    spec: ListenerSpec,
    security: ListenerSecurity,
}

/// Whether `addr` may collide with one of `removed` (the same port, or the same socket path).
fn overlaps(addr: &ListenAddr, removed: &[ListenerKey]) -> bool {
    removed.iter().any(|r| match (addr, &r.bind) {
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => a.port() == b.port(),
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a.path == b.path,
        _ => false,
    })
}

fn pending_name(pending: &PendingListener) -> String {
    pending.name()
}

/// Where `listener` is declared, for messages: the configuration file and the address.
fn located(config: &Config, listener: &ListenerConfig) -> String {
    match &config.source {
        Some(file) => format!("{}: listener {}", file.display(), listener.bind),
        None => format!("listener {}", listener.bind),
    }
}

/// The policy of a listener declared in the file: its own settings, else the broker-wide ones.
/// `allow_anonymous` is the `--allow-anonymous` flag, which wins; `authenticate` whether an
/// authentication source applies to it.
pub(crate) fn declared_policy(
    config: &Config,
    listener: &ListenerConfig,
    allow_anonymous: bool,
    authenticate: bool,
) -> ListenerPolicy {
    let own = &listener.settings;
    ListenerPolicy {
        protocol_versions: own.protocol_versions.unwrap_or_default(),
        mount_point: own.mount_point.as_deref().map(ByteString::from),
        // Like Mosquitto 2, a listener declared in the file refuses anonymous clients unless
        // told otherwise, by its own setting or the broker-wide one.
        allow_anonymous: allow_anonymous
            || own
                .allow_anonymous
                .or(config.allow_anonymous)
                .unwrap_or(false),
        allow_zero_length_clientid: own.allow_zero_length_clientid,
        auto_id_prefix: own.auto_id_prefix.clone(),
        authenticate,
        ..ListenerPolicy::default()
    }
}

/// The spec of a listener declared in the file, with its security slots; reads its TLS files.
fn declared_spec(
    config: &Config,
    listener: &ListenerConfig,
    allow_anonymous: bool,
    security: &ListenerSecurity,
    authenticate: bool,
) -> Result<ListenerSpec, String> {
    let tls = match &listener.tls {
        None => None,
        Some(settings) => Some(Arc::new(TlsAcceptor::new(settings.clone()).map_err(
            |e| {
                format!(
                    "{}: `{}`: {e}",
                    located(config, listener),
                    e.key.mosquitto_name()
                )
            },
        )?)),
    };
    let mut policy = declared_policy(config, listener, allow_anonymous, authenticate);
    policy.acl = Some(security.acl.clone());
    if !policy.allow_anonymous && !policy.authenticate {
        tracing::warn!(
            "listener {} refuses every client: anonymous access is off and no password file \
             (or [auth.jwt], [auth.http]) is configured (set `allow_anonymous true` to let \
             clients in)",
            listener.bind
        );
    }
    Ok(ListenerSpec {
        bind: listener.bind.clone(),
        max_connections: listener.max_connections,
        policy,
        tls,
        websocket: listener.websocket.clone().map(Arc::new),
        authenticator: Some(security.authenticator.clone()),
        proxy_protocol: listener.settings.proxy_protocol,
    })
}

/// Settings that only a restart changes, each as a "needs a restart" line.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    let mut note = |what: &str| notes.push(format!("{what}: changed in the file; needs a restart"));
    if old.persistence != new.persistence {
        note("persistence (data directory, durability, store)");
    }
    let mut old_broker = old.broker.clone();
    let mut new_broker = new.broker.clone();
    // Reloaded, or not broker settings at all.
    for b in [&mut old_broker, &mut new_broker] {
        b.acl = None;
        b.message_rate = None;
        b.bandwidth = None;
        b.rate_exceeded = tern_core::RateExceeded::default();
        b.recovered_owners_authenticated = false;
    }
    if old_broker != new_broker {
        note("protocol limits and options ([mqtt]: max_packet_size, queues, keep alive...)");
    }
    if old.process != new.process {
        note("pid_file, user");
    }
    if old.sys_interval != new.sys_interval {
        note("sys_interval");
    }
    notes
}

fn describe_limits(limits: &crate::limits::ConnectionLimits) -> String {
    let count = |n: Option<usize>| n.map_or_else(|| "none".to_owned(), |n| n.to_string());
    format!(
        "max_connections {}, max_connections_per_ip {}, connect_rate {}",
        count(limits.max_connections),
        count(limits.max_connections_per_ip),
        if limits.connect_rate.is_some() {
            "set"
        } else {
            "none"
        }
    )
}

/// SIGHUP, listened to from the moment it is installed (before the listeners are bound, so
/// that an early SIGHUP never kills the broker); [`start`] handles them.
pub(crate) struct Hangups {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

/// Installs the SIGHUP handler.
pub(crate) fn hangups() -> std::io::Result<Hangups> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Hangups {
            signal: signal(SignalKind::hangup())?,
        })
    }
    #[cfg(not(unix))]
    Ok(Hangups {})
}

/// What `tern serve` holds while it runs: the reloader, and the PID file (removed when
/// dropped).
pub(crate) struct Running {
    pub(crate) reloader: Reloader,
    _pid_file: Option<crate::process::PidFile>,
}

/// Once the listeners are bound: makes the [`Reloader`] and reloads on every SIGHUP, writes
/// the PID file, then drops root privileges (`user`).
pub(crate) fn start(
    server: &crate::server::Server,
    config: &Config,
    command_line: CommandLine,
    logging: Option<Logging>,
    authenticator: SharedAuthenticator,
    security: &[ListenerSecurity],
    hangups: Hangups,
) -> anyhow::Result<Running> {
    let reloader = Reloader::new(
        config.clone(),
        command_line,
        server.broker().clone(),
        server.listeners(),
        logging,
        authenticator,
        security,
    );
    #[cfg(unix)]
    {
        let mut hangups = hangups;
        let reloader = reloader.clone();
        tokio::spawn(async move {
            while hangups.signal.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading");
                let _ = reloader.reload().await;
            }
        });
    }
    #[cfg(not(unix))]
    let _ = hangups;
    let pid_file = match &config.process.pid_file {
        Some(path) => Some(crate::process::PidFile::write(path)?),
        None => None,
    };
    crate::process::drop_privileges(config.process.user.as_deref())?;
    Ok(Running {
        reloader,
        _pid_file: pid_file,
    })
}

/// Something told of every reload's outcome (the admin API's configuration history).
pub(crate) type ReloadObserver = Box<dyn Fn(&Result<Vec<String>, String>) + Send + Sync>;

impl Reloader {
    /// Tells `observer` the outcome of every reload, whether SIGHUP or the admin API asked.
    pub(crate) fn observe(&self, observer: ReloadObserver) {
        self.inner
            .observers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(observer);
    }

    /// The admin API's hooks: `POST /api/v1/reload` is [`Reloader::reload`] (which also reloads
    /// the API keys), `GET /api/v1/listeners` the listeners now serving, `GET /api/v1/config`
    /// the configuration history, which records every reload.
    pub(crate) fn admin_hooks(
        &self,
        keys: crate::admin::ApiKeys,
        history: Arc<crate::admin::ConfigHistory>,
    ) -> crate::admin::AdminHooks {
        self.also(Box::new(move |config| {
            vec![format!(
                "{} API key(s) in force",
                keys.reload(&config.admin)
            )]
        }));
        let recorder = history.clone();
        self.observe(Box::new(move |result| recorder.record(result)));
        let reloader = self.clone();
        let listing = self.clone();
        crate::admin::AdminHooks {
            reload: Arc::new(move || {
                let reloader = reloader.clone();
                Box::pin(async move { reloader.reload().await })
            }),
            listeners: Arc::new(move || {
                listing
                    .listeners()
                    .into_iter()
                    .map(admin_listener_status)
                    .collect()
            }),
            config: Arc::new(move || history.status()),
        }
    }
}

/// A listener as the admin API lists it.
fn admin_listener_status(info: ListenerInfo) -> crate::admin::ListenerStatus {
    let bind = info.bound.to_string();
    let id = if info.kind == "unix" {
        bind.clone()
    } else {
        format!("{}:{bind}", info.kind)
    };
    crate::admin::ListenerStatus {
        id,
        kind: info.kind,
        bind,
        running: true,
        connections: info.connections,
        max_connections: info.max_connections,
        proxy_protocol: info.proxy_protocol,
        authenticate: info.policy.authenticate,
        allow_anonymous: info.policy.allow_anonymous,
        mount_point: info.policy.mount_point.as_ref().map(ToString::to_string),
    }
}
