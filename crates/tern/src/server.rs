//! The server: binds the listeners, accepts connections, runs the broker's timers, and shuts
//! down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_core::{Broker, ConnectionInfo, ListenerPolicy, Wake};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection;

/// How long connections get to say goodbye at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A listener to bind.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Address to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Maximum simultaneous connections; `None` = unlimited.
    pub max_connections: Option<usize>,
    /// Settings applied to its connections.
    pub policy: ListenerPolicy,
}

/// A bound, not yet running server.
pub struct Server {
    broker: Broker,
    listeners: Vec<(TcpListener, ListenerSpec)>,
    log_connections: bool,
}

impl Server {
    /// Binds every listener for `broker`. Fails if any address cannot be bound.
    pub async fn bind(broker: Broker, specs: Vec<ListenerSpec>) -> std::io::Result<Self> {
        let mut listeners = Vec::with_capacity(specs.len());
        for spec in specs {
            let listener = TcpListener::bind(spec.bind).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", spec.bind))
            })?;
            listeners.push((listener, spec));
        }
        Ok(Self {
            broker,
            listeners,
            log_connections: true,
        })
    }

    /// Whether connections and disconnections are logged at info level (`connection_messages`,
    /// on by default as in Mosquitto).
    #[must_use]
    pub fn with_connection_messages(mut self, on: bool) -> Self {
        self.log_connections = on;
        self
    }

    /// The addresses actually bound (ports resolved).
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// The broker behind this server.
    #[must_use]
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves until `shutdown` completes, then stops accepting, tells MQTT 5 clients the server
    /// is shutting down (DISCONNECT 0x8B), and waits up to a grace period for connections to
    /// close.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let ctx = AcceptContext {
            broker: self.broker.clone(),
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            log_connections: self.log_connections,
        };
        for (listener, spec) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!("listening on {addr}");
            }
            tracker.spawn(accept_loop(listener, spec, ctx.clone()));
        }
        tracker.spawn(broker_timers(self.broker.clone(), cancel.clone()));
        shutdown.await;
        tracing::info!("shutting down");
        cancel.cancel();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
}

/// What every accept loop shares.
#[derive(Clone)]
struct AcceptContext {
    broker: Broker,
    cancel: CancellationToken,
    tracker: TaskTracker,
    log_connections: bool,
}

async fn accept_loop(listener: TcpListener, spec: ListenerSpec, ctx: AcceptContext) {
    let limit = spec.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    loop {
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %spec.bind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match &limit {
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    tracing::debug!(%peer, listener = %spec.bind, "connection limit reached");
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        let info = ConnectionInfo {
            remote_addr: Some(peer),
            policy: spec.policy.clone(),
        };
        let ctx = ctx.clone();
        ctx.tracker.clone().spawn(async move {
            // Writes are batched by the connection task; Nagle would only add latency.
            let _ = stream.set_nodelay(true);
            connection::drive(stream, ctx.broker, info, ctx.cancel, ctx.log_connections).await;
            drop(permit);
        });
    }
}

struct TimerWaker(Notify);

impl Wake for TimerWaker {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// Drives the broker's deadlines: delayed wills and session expiry.
async fn broker_timers(broker: Broker, cancel: CancellationToken) {
    let waker = Arc::new(TimerWaker(Notify::new()));
    broker.set_timer_waker(waker.clone());
    loop {
        let next = broker.poll_timeout();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = waker.0.notified() => {}
            () = sleep => broker.handle_timeout(Instant::now()),
        }
    }
}
