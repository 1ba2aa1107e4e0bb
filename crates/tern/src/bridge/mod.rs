//! Bridges: client connections from this broker to other brokers, carrying topics in and out
//! with Mosquitto's semantics (`connection` blocks, `[[bridges]]`).
//!
//! Each bridge is one task ([`runtime`]) with two clients of the project's own client library:
//! one to the remote broker (TCP or TLS, MQTT 3.1.1 or 5), one to this broker through an
//! in-process pipe driven by the same connection code as any client ([`local`]). Messages are
//! acknowledged to the side they came from only once the other side has them, a window of
//! them in flight; topics are renamed by their prefixes ([`topics`]); connections are retried
//! with exponential backoff and jitter ([`backoff`]); the state of each bridge is shown by the
//! metrics, the admin API and a retained `$SYS/broker/connection/NAME/state` message
//! ([`status`]).
//!
//! A reload restarts the bridges whose settings changed (their sessions are kept, so nothing
//! waiting for the remote side is lost), starts new ones and stops removed ones.

mod backoff;
mod local;
mod runtime;
pub(crate) mod status;
#[cfg(test)]
mod tests;
mod topics;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tern_core::Broker;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{BridgeConfig, Config};
use status::BridgeStats;

pub(crate) use status::{BridgeSnapshot, snapshots, statuses};

/// How long the bridges get to disconnect at shutdown (and an old bridge on reload before its
/// replacement starts).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running bridges of a broker.
#[derive(Clone)]
pub(crate) struct Bridges {
    inner: Arc<Inner>,
}

struct Inner {
    broker: Broker,
    running: Mutex<HashMap<String, Running>>,
}

struct Running {
    config: BridgeConfig,
    stop: CancellationToken,
    /// Cancelled once the bridge's local session exists (see [`Bridges::prepared`]).
    prepared: CancellationToken,
    task: JoinHandle<()>,
}

/// Starts the bridges of `config` on `server`'s broker, and has `reloader` apply the bridges
/// of every reloaded configuration.
pub(crate) fn start(
    server: &crate::server::Server,
    config: &Config,
    reloader: &crate::reload::Reloader,
) -> Bridges {
    let bridges = Bridges::new(server.broker().clone());
    let _ = bridges.apply(&config.bridges);
    let reloaded = bridges.clone();
    reloader.also(Box::new(move |config| reloaded.apply(&config.bridges)));
    bridges
}

impl Bridges {
    /// No bridges yet, for `broker`.
    pub(crate) fn new(broker: Broker) -> Self {
        Self {
            inner: Arc::new(Inner {
                broker,
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.inner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the running bridges those of `configs`: starts new ones, restarts changed ones
    /// (the old one disconnects first; the sessions are kept), stops removed ones. Returns
    /// what changed, one line each.
    pub(crate) fn apply(&self, configs: &[BridgeConfig]) -> Vec<String> {
        let mut changes = Vec::new();
        let mut running = self.running();
        let removed: Vec<String> = running
            .keys()
            .filter(|name| !configs.iter().any(|c| &c.name == *name))
            .cloned()
            .collect();
        for name in removed {
            if let Some(old) = running.remove(&name) {
                old.stop.cancel();
                changes.push(format!("bridge {name}: stopped (removed from the file)"));
            }
        }
        for config in configs {
            let previous = match running.get(&config.name) {
                Some(r) if r.config == *config => continue,
                Some(_) => {
                    changes.push(format!(
                        "bridge {}: restarted with its new settings",
                        config.name
                    ));
                    running.remove(&config.name)
                }
                None => None,
            };
            if previous.is_none() {
                tracing::info!("bridge {}: starting", config.name);
            }
            let started = self.spawn(config.clone(), previous);
            running.insert(config.name.clone(), started);
        }
        changes
    }

    /// Starts bridge `config`, once `previous` (the bridge it replaces) has stopped.
    fn spawn(&self, config: BridgeConfig, previous: Option<Running>) -> Running {
        let stop = CancellationToken::new();
        let broker = self.inner.broker.clone();
        let (local_id, remote_id) = runtime::client_ids(&config);
        let shared = Arc::new(config.clone());
        let token = stop.clone();
        let prepared = CancellationToken::new();
        let signal = prepared.clone();
        let task = tokio::spawn(async move {
            if let Some(previous) = previous {
                previous.stop.cancel();
                if tokio::time::timeout(STOP_TIMEOUT, previous.task)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "bridge {}: the previous connection did not stop in time",
                        shared.name
                    );
                }
            }
            let stats = BridgeStats::register(&broker, &shared.name, &local_id, &remote_id);
            runtime::run(shared, broker, stats.clone(), token, signal).await;
            stats.unregister();
        });
        Running {
            config,
            stop,
            prepared,
            task,
        }
    }

    /// Waits (at most `within`) until every bridge has its session on this broker, with its
    /// subscriptions: the server serves clients only then, so that nothing published for a
    /// remote side at start-up finds no subscriber (Mosquitto subscribes its bridges before
    /// serving too).
    pub(crate) async fn prepared(&self, within: Duration) {
        let waits: Vec<CancellationToken> = self
            .running()
            .values()
            .map(|r| r.prepared.clone())
            .collect();
        let all = async {
            for wait in waits {
                wait.cancelled().await;
            }
        };
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("bridges: local sessions not ready within {within:?}; serving anyway");
        }
    }

    /// Stops every bridge: each sends its state and DISCONNECT to the remote broker and
    /// disconnects from this one (keeping its session), within a bounded time.
    pub(crate) async fn stop(&self) {
        let stopping: Vec<Running> = self.running().drain().map(|(_, r)| r).collect();
        for r in &stopping {
            r.stop.cancel();
        }
        for r in stopping {
            let abort = r.task.abort_handle();
            if tokio::time::timeout(STOP_TIMEOUT, r.task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// A future that completes when `shutdown` does, once the bridges have stopped.
    pub(crate) async fn until<F: Future<Output = ()>>(self, shutdown: F) {
        shutdown.await;
        self.stop().await;
    }
}

/// Two bridges in chosen states, for the tests of the views.
#[cfg(test)]
pub(crate) fn testing_snapshots() -> Vec<BridgeSnapshot> {
    use status::BridgeState;
    let bridge = |name: &str, state, out, inbound, dropped, queued, connects| BridgeSnapshot {
        name: name.to_owned(),
        state,
        address: Some("127.0.0.1:1883".to_owned()),
        connected_since: None,
        last_error: None,
        local_client_id: format!("local.{name}"),
        remote_client_id: name.to_owned(),
        forwarded_out: out,
        forwarded_in: inbound,
        dropped,
        connects,
        queued,
    };
    vec![
        bridge("down", BridgeState::Connecting, 0, 0, 0, 42, 0),
        bridge("up", BridgeState::Connected, 7, 3, 1, 0, 2),
    ]
}
