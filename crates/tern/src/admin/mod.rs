//! The admin REST API: an HTTP/1.1 server on its own listener (default 127.0.0.1:18083) that
//! serves `/status`, `/metrics` (Prometheus), the `/api/v1/...` resources (clients, sessions,
//! subscriptions, routes, retained messages, publish, stats, listeners, configuration reload),
//! the Server-Sent Events stream of the dashboard and the dashboard itself.
//!
//! - [`server`]: the listener, its connection limit and timeouts, graceful shutdown.
//! - [`router`]: method and path to a [`router::Route`], JSON errors, paging, the body limit.
//! - [`auth`]: API keys (HTTP Basic) and the Bearer tokens of `POST /api/v1/login`.
//! - [`api`]: the endpoints.
//! - `events` and `dashboard` (engineer C): the SSE stream and the embedded dashboard assets.
//!
//! The rest of the server is reached through [`AdminHooks`] (reload, listeners, configuration
//! status), wired in `cli.rs` by [`Wiring`].

mod api;
pub(crate) mod auth;
mod dashboard;
mod events;
mod router;
mod server;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;
use tern_core::Broker;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AdminConfig, AdminListen, Config, DEFAULT_ADMIN_LISTEN, ListenAddr};
use crate::reload::SecurityReload;
use crate::server::{ListenerSpec, Server};
use crate::tls::TlsAcceptor;

pub(crate) use auth::ApiKeys;

/// The body of every response: a whole body, or a stream (Server-Sent Events).
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// A boxed future, as the hooks return them.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a reload reports: what changed (one line each), or why the new configuration was
/// refused (with its `file:line`), the running one staying in force.
pub(crate) type ReloadResult = Result<Vec<String>, String>;

/// How the admin API reaches the rest of the server. Engineer D's hot reload replaces what is
/// behind these; [`Wiring::hooks`] wires them to what exists today.
#[derive(Clone)]
pub(crate) struct AdminHooks {
    /// Reloads the configuration (`POST /api/v1/reload`).
    pub(crate) reload: Arc<dyn Fn() -> BoxFuture<ReloadResult> + Send + Sync>,
    /// The listeners now serving (`GET /api/v1/listeners`).
    pub(crate) listeners: Arc<dyn Fn() -> Vec<ListenerStatus> + Send + Sync>,
    /// The configuration file and its reload history (`GET /api/v1/config`).
    pub(crate) config: Arc<dyn Fn() -> ConfigStatus + Send + Sync>,
}

/// One listener, as `GET /api/v1/listeners` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ListenerStatus {
    /// A stable name: `tcp:ADDR`, `tls:ADDR`, `ws:ADDR`, `wss:ADDR` or `unix:PATH`.
    pub(crate) id: String,
    /// `tcp`, `tls`, `ws`, `wss` or `unix`.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// The bound address (`HOST:PORT`, the port resolved) or `unix:PATH`.
    pub(crate) bind: String,
    /// Whether it accepts connections.
    pub(crate) running: bool,
    /// Connections established through it now.
    pub(crate) connections: usize,
    /// Its connection limit, if any.
    pub(crate) max_connections: Option<usize>,
    /// Whether connections start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    /// Whether clients must authenticate (a password file, JWT or HTTP hook applies).
    pub(crate) authenticate: bool,
    /// Whether clients without credentials are let in.
    pub(crate) allow_anonymous: bool,
    /// Its mount point, if any.
    pub(crate) mount_point: Option<String>,
}

/// The configuration in force, as `GET /api/v1/config` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ConfigStatus {
    /// The configuration file, if the broker was started with one.
    pub(crate) file: Option<String>,
    /// When the configuration in force was read (RFC 3339, UTC).
    pub(crate) loaded_at: String,
    /// The last reload, if any.
    pub(crate) last_reload: Option<ReloadRecord>,
}

/// One reload and its outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ReloadRecord {
    /// When it happened (RFC 3339, UTC).
    pub(crate) at: String,
    /// Whether the new configuration is in force.
    pub(crate) ok: bool,
    /// What changed (when `ok`).
    pub(crate) changes: Vec<String>,
    /// Why it was refused (when not `ok`).
    pub(crate) error: Option<String>,
}

/// The configuration file and its reloads, kept for [`ConfigStatus`].
#[derive(Debug)]
pub(crate) struct ConfigHistory {
    file: Option<PathBuf>,
    state: Mutex<(SystemTime, Option<ReloadRecord>)>,
}

impl ConfigHistory {
    /// The history of a configuration read from `file` now.
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Self {
            file,
            state: Mutex::new((SystemTime::now(), None)),
        }
    }

    /// Records a reload and its outcome.
    pub(crate) fn record(&self, result: &ReloadResult) {
        let now = SystemTime::now();
        let record = ReloadRecord {
            at: rfc3339(now),
            ok: result.is_ok(),
            changes: result.clone().unwrap_or_default(),
            error: result.as_ref().err().cloned(),
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if result.is_ok() {
            state.0 = now;
        }
        state.1 = Some(record);
    }

    /// The status now.
    pub(crate) fn status(&self) -> ConfigStatus {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ConfigStatus {
            file: self.file.as_ref().map(|p| p.display().to_string()),
            loaded_at: rfc3339(state.0),
            last_reload: state.1.clone(),
        }
    }
}

/// What the admin server shares with its connections.
pub(crate) struct AdminState {
    pub(crate) broker: Broker,
    pub(crate) keys: ApiKeys,
    pub(crate) hooks: AdminHooks,
    /// Whether `GET /metrics` answers without credentials.
    pub(crate) metrics_anonymous: bool,
    /// Cancelled when the broker shuts down (ends SSE streams).
    pub(crate) shutdown: CancellationToken,
    /// When the admin server started, for `/status`.
    pub(crate) started: std::time::Instant,
}

/// The running admin server (or none, when turned off or its default address was taken).
pub(crate) struct Admin {
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Admin {
    /// A future that completes when `shutdown` does, after which the admin server stops:
    /// no more connections, open ones finish their request and close, SSE streams end.
    pub(crate) async fn until<F: Future<Output = ()>>(self, shutdown: F) {
        shutdown.await;
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.tracker.wait()).await;
    }
}

/// What `tern serve` hands the admin API: gathered before the listeners are bound, started
/// once they are (see `cli.rs`).
pub(crate) struct Wiring {
    security: SecurityReload,
    tls: Vec<(ListenAddr, Arc<TlsAcceptor>)>,
    listeners: Vec<ListenerSpec>,
    history: Arc<ConfigHistory>,
    keys: ApiKeys,
    /// The hot reload (engineer D's); when set, the hooks are its.
    reloader: Option<crate::reload::Reloader>,
}

impl Wiring {
    /// Makes `reloader` the one behind the hooks: reload, listeners, configuration history.
    pub(crate) fn with_reloader(mut self, reloader: crate::reload::Reloader) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Gathers what the hooks need: the security settings that a reload replaces, the TLS
    /// acceptors whose certificates it reloads, and the listeners about to be bound.
    pub(crate) fn new(
        config: &Config,
        security: &SecurityReload,
        listeners: &[ListenerSpec],
    ) -> Self {
        Self {
            security: security.clone(),
            tls: listeners
                .iter()
                .filter_map(|l| l.tls.as_ref().map(|t| (l.bind.clone(), t.clone())))
                .collect(),
            listeners: listeners.to_vec(),
            history: Arc::new(ConfigHistory::new(security.config_file.clone())),
            keys: ApiKeys::from_config(&config.admin),
            reloader: None,
        }
    }

    /// The hooks of today's server: reload = the ACL and password files, the API keys and the
    /// TLS certificates (what SIGHUP reloads); listeners = those bound at start.
    pub(crate) fn hooks(&self, server: &Server) -> AdminHooks {
        if let Some(reloader) = &self.reloader {
            return reloader.admin_hooks(self.keys.clone(), self.history.clone());
        }
        let statuses = listener_statuses(&self.listeners, &server.local_addrs());
        let security = self.security.clone();
        let tls = self.tls.clone();
        let keys = self.keys.clone();
        let history = self.history.clone();
        let reload_history = self.history.clone();
        AdminHooks {
            reload: Arc::new(move || {
                let security = security.clone();
                let tls = tls.clone();
                let keys = keys.clone();
                let history = reload_history.clone();
                Box::pin(async move {
                    let result =
                        tokio::task::spawn_blocking(move || reload_today(&security, &tls, &keys))
                            .await
                            .unwrap_or_else(|e| Err(format!("reload failed: {e}")));
                    history.record(&result);
                    result
                })
            }),
            listeners: Arc::new(move || statuses.clone()),
            config: Arc::new(move || history.status()),
        }
    }

    /// Starts the admin server for `server`'s broker where `flag` (`--admin-listen`) or the
    /// configuration says. A configured address that cannot be bound is an error; the default
    /// one, a warning (the broker serves MQTT without its admin API).
    pub(crate) async fn start(
        self,
        config: &AdminConfig,
        flag: Option<&str>,
        server: &Server,
    ) -> anyhow::Result<Admin> {
        let listen = match flag {
            Some(text) => AdminListen::parse(text)
                .map_err(|e| anyhow::anyhow!("invalid --admin-listen: {e}"))?,
            None => config.listen,
        };
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let admin = Admin {
            cancel: cancel.clone(),
            tracker: tracker.clone(),
        };
        let (addr, explicit) = match listen {
            AdminListen::Off => {
                tracing::info!("admin API turned off");
                return Ok(admin);
            }
            AdminListen::Default => match DEFAULT_ADMIN_LISTEN.parse() {
                Ok(addr) => (addr, false),
                Err(_) => return Ok(admin),
            },
            AdminListen::Addr(addr) => (addr, true),
        };
        let listener = match server::bind(addr) {
            Ok(listener) => listener,
            Err(e) if explicit => {
                anyhow::bail!("cannot listen on {addr} for the admin API: {e}");
            }
            Err(e) => {
                tracing::warn!(
                    "admin API not started: cannot listen on {addr}: {e} (set `[admin] listen` \
                     or `--admin-listen ADDR|off`)"
                );
                return Ok(admin);
            }
        };
        let hooks = self.hooks(server);
        if self.keys.is_empty() {
            tracing::warn!(
                "admin API: no API key is configured, so every endpoint but /status answers 401; \
                 create one with `tern ctl apikey create NAME --file FILE` and name FILE in \
                 `[admin] api_key_file`, or add `[[admin.api_keys]]` with `key` and `secret` to \
                 the configuration file"
            );
        }
        let state = Arc::new(AdminState {
            broker: server.broker().clone(),
            keys: self.keys,
            hooks,
            metrics_anonymous: config.metrics_anonymous,
            shutdown: cancel.clone(),
            started: std::time::Instant::now(),
        });
        let local = listener.local_addr()?;
        tracing::info!("admin API listening on http://{local}");
        tracker.spawn(server::serve(listener, state, cancel, tracker.clone()));
        Ok(admin)
    }
}

/// Today's reload: the configuration file's ACL and password files, the API keys, then every
/// TLS listener's certificates.
fn reload_today(
    security: &SecurityReload,
    tls: &[(ListenAddr, Arc<TlsAcceptor>)],
    keys: &ApiKeys,
) -> ReloadResult {
    let Some(file) = &security.config_file else {
        return Err(
            "the broker was started without a configuration file: nothing to reload".to_owned(),
        );
    };
    // Validated first: a file that does not load changes nothing.
    let config = crate::config::load(file).map_err(|e| e.to_string())?;
    security.reload().map_err(|e| e.to_string())?;
    let mut changes = vec![format!(
        "ACL and password files reloaded from {}",
        file.display()
    )];
    changes.push(format!(
        "{} API key(s) in force",
        keys.reload(&config.admin)
    ));
    for (bind, acceptor) in tls {
        match acceptor.reload() {
            Ok(summary) => changes.push(format!("TLS listener {bind}: certificate {summary}")),
            Err(e) => {
                return Err(format!(
                    "TLS listener {bind}: `{}`: {e}; keeping its previous certificates",
                    e.key.mosquitto_name()
                ));
            }
        }
    }
    tracing::info!("reload through the admin API: {}", changes.join("; "));
    Ok(changes)
}

/// The status of the listeners `specs`, with the TCP addresses actually bound (`bound`, in the
/// order of the TCP listeners of `specs`).
fn listener_statuses(
    specs: &[ListenerSpec],
    bound: &[std::net::SocketAddr],
) -> Vec<ListenerStatus> {
    let mut tcp = bound.iter();
    specs
        .iter()
        .map(|spec| {
            let bind = match &spec.bind {
                ListenAddr::Tcp(addr) => tcp.next().copied().unwrap_or(*addr).to_string(),
                unix @ ListenAddr::Unix(_) => unix.to_string(),
            };
            let kind = match (&spec.bind, spec.tls.is_some(), spec.websocket.is_some()) {
                (ListenAddr::Unix(_), _, false) => "unix",
                (_, false, false) => "tcp",
                (_, true, false) => "tls",
                (_, false, true) => "ws",
                (_, true, true) => "wss",
            };
            let id = if kind == "unix" {
                bind.clone()
            } else {
                format!("{kind}:{bind}")
            };
            ListenerStatus {
                id,
                kind,
                bind,
                running: true,
                connections: 0,
                max_connections: spec.max_connections,
                proxy_protocol: spec.proxy_protocol.is_some(),
                authenticate: spec.policy.authenticate,
                allow_anonymous: spec.policy.allow_anonymous,
                mount_point: spec.policy.mount_point.as_ref().map(ToString::to_string),
            }
        })
        .collect()
}

/// `time` as RFC 3339 in UTC, to the second (`1970-01-01T00:00:00Z`).
pub(crate) fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days.cast_signed() + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let at = |secs| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
