//! The server: binds the listeners, accepts connections, runs the broker's timers, and shuts
//! down gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_core::{Broker, ConnectionInfo, ListenerPolicy, Wake};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::SharedAuthenticator;
use crate::connection;
use crate::limits::{ConnectionLimits, Gate, Refusal};
use crate::tls::TlsAcceptor;

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
    /// For a TLS listener, its acceptor (shared with the SIGHUP handler, which reloads its
    /// certificates); `None` for plain TCP.
    pub tls: Option<Arc<TlsAcceptor>>,
    /// For a WebSocket listener (WSS with `tls`), its settings; `None` for MQTT over TCP.
    pub websocket: Option<Arc<crate::websocket::WebSocketSettings>>,
    /// This listener's own authentication sources (Mosquitto's `per_listener_settings`);
    /// `None` uses the server's ([`Server::with_authenticator`]).
    pub authenticator: Option<SharedAuthenticator>,
}

/// A bound, not yet running server.
pub struct Server {
    broker: Broker,
    listeners: Vec<(TcpListener, ListenerSpec)>,
    log_connections: bool,
    authenticator: SharedAuthenticator,
    limits: ConnectionLimits,
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
            authenticator: SharedAuthenticator::default(),
            limits: ConnectionLimits::default(),
        })
    }

    /// Limits on connections across listeners and per source address (none by default).
    #[must_use]
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The authentication sources connections use; the handle lets a reload replace them.
    #[must_use]
    pub fn with_authenticator(mut self, authenticator: SharedAuthenticator) -> Self {
        self.authenticator = authenticator;
        self
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
            authenticator: self.authenticator.clone(),
            gate: Gate::new(self.limits.clone()),
        };
        for (listener, spec) in self.listeners {
            if let Ok(addr) = listener.local_addr() {
                if let Some(tls) = &spec.tls {
                    crate::tls::log_listener(addr, tls);
                }
                // Tests and scripts read the address from these exact lines.
                match &spec.websocket {
                    None => tracing::info!("listening on {addr}"),
                    Some(ws) => {
                        crate::websocket::log_listener(addr, ws);
                        tracing::info!("listening on {addr} (websockets)");
                    }
                }
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
    authenticator: SharedAuthenticator,
    /// Connection limits across listeners and per source address.
    gate: Arc<Gate>,
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
        // Over a limit, the connection is refused (see `limits` for how and why).
        let admitted = match &limit {
            Some(sem) => sem
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| tern_codec::ReasonCode::QUOTA_EXCEEDED),
            None => Ok(None),
        }
        .and_then(|permit| ctx.gate.admit(peer.ip()).map(|counted| (permit, counted)));
        let (permit, counted) = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                let refusal = Refusal {
                    reason,
                    // Only MQTT over plain TCP gets a CONNACK; TLS and WebSocket clients are
                    // closed at once.
                    tls: spec.tls.is_some() || spec.websocket.is_some(),
                    listener: spec.bind,
                    connect_timeout: ctx.broker.config().connect_timeout,
                    cancel: &ctx.cancel,
                    tracker: &ctx.tracker,
                };
                ctx.gate.refuse(stream, peer, refusal);
                continue;
            }
        };
        let ctx = ctx.clone();
        let spec = spec.clone();
        ctx.tracker.clone().spawn(async move {
            // Writes are batched by the connection task; Nagle would only add latency.
            let _ = stream.set_nodelay(true);
            serve_connection(stream, peer, &spec, ctx).await;
            drop((permit, counted));
        });
    }
}

impl AcceptContext {
    /// Runs the MQTT connection over `stream` to its end.
    async fn drive<S>(self, stream: S, info: ConnectionInfo)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        connection::drive(
            stream,
            self.broker,
            info,
            self.cancel,
            self.log_connections,
            self.authenticator,
        )
        .await;
    }

    /// Runs the MQTT connection over `stream`, or over the WebSocket it is upgraded to on a
    /// WebSocket listener.
    async fn drive_listener<S>(self, stream: S, info: ConnectionInfo, spec: &ListenerSpec)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        match &spec.websocket {
            None => self.drive(stream, info).await,
            // Boxed, as TLS: the WebSocket's state would make every plain connection's task
            // larger too.
            Some(settings) => Box::pin(self.drive_websocket(stream, info, spec, settings)).await,
        }
    }

    /// The WebSocket upgrade (under its deadline), then the MQTT connection over it.
    async fn drive_websocket<S>(
        self,
        stream: S,
        info: ConnectionInfo,
        spec: &ListenerSpec,
        settings: &crate::websocket::WebSocketSettings,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let config = self.broker.config();
        let log = self
            .log_connections
            .then(|| info.remote_addr.map(|peer| (peer, spec.bind)))
            .flatten();
        let upgraded = crate::websocket::upgrade_within(
            stream,
            settings,
            config.max_packet_size,
            config.connect_timeout,
            &self.cancel,
            log,
        )
        .await;
        if let Some(ws) = upgraded {
            self.drive(ws, info).await;
        }
    }
}

/// Serves one accepted connection to its end: the TLS handshake first on a TLS listener, the
/// WebSocket upgrade on a WebSocket listener, then the MQTT connection.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    spec: &ListenerSpec,
    mut ctx: AcceptContext,
) {
    if let Some(own) = &spec.authenticator {
        ctx.authenticator = own.clone();
    }
    let info = ConnectionInfo {
        remote_addr: Some(peer),
        policy: spec.policy.clone(),
        certificate_username: None,
    };
    match &spec.tls {
        None => ctx.drive_listener(stream, info, spec).await,
        // Boxed: a TLS session's state is kilobytes, and an unboxed branch would make every
        // plain connection's task that large too.
        Some(tls) => Box::pin(serve_tls(stream, peer, spec, ctx, info, tls)).await,
    }
}

/// The TLS handshake, then the MQTT connection over it.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    spec: &ListenerSpec,
    ctx: AcceptContext,
    mut info: ConnectionInfo,
    tls: &TlsAcceptor,
) {
    // The handshake has its own deadline, so that a client that sends nothing, or stalls
    // half-way, holds its socket and connection slot no longer than that.
    let deadline = tls
        .handshake_timeout()
        .unwrap_or(ctx.broker.config().connect_timeout);
    let handshake = tokio::select! {
        () = ctx.cancel.cancelled() => return,
        result = tokio::time::timeout(deadline, tls.accept(stream)) => result,
    };
    match handshake {
        Ok(Ok(accepted)) => {
            info.certificate_username = accepted.certificate_username;
            ctx.drive_listener(accepted.stream, info, spec).await;
        }
        Ok(Err(e)) => {
            if ctx.log_connections {
                tracing::info!("TLS handshake with {peer} on {} failed: {e}", spec.bind);
            }
        }
        Err(_) => {
            if ctx.log_connections {
                tracing::info!(
                    "TLS handshake with {peer} on {} not done within {deadline:?}; closed",
                    spec.bind
                );
            }
        }
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
