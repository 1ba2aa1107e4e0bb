//! The server: binds the listeners (TCP addresses and Unix sockets), accepts connections,
//! reads the PROXY protocol header where a listener expects one, runs the broker's timers, and
//! shuts down gracefully.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_codec::ReasonCode;
use tern_core::{Broker, ConnectionInfo, ListenerPolicy, Wake};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::SharedAuthenticator;
use crate::config::ListenAddr;
use crate::connection;
use crate::limits::{Admitted, ConnectionLimits, Gate, Refusal};
use crate::proxy_protocol::{self, ProxyProtocol};
use crate::tls::TlsAcceptor;

/// How long connections get to say goodbye at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections waiting to be accepted on a TCP listener, as tokio's own listeners.
const BACKLOG: i32 = 1024;

/// A listener to bind.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Where to listen: an address (port 0 picks a free port) or a Unix socket.
    pub bind: ListenAddr,
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
    /// The PROXY protocol header every connection must start with; `None`: no header.
    pub proxy_protocol: Option<ProxyProtocol>,
}

/// A bound, not yet running server.
pub struct Server {
    broker: Broker,
    listeners: Vec<(Bound, ListenerSpec)>,
    log_connections: bool,
    authenticator: SharedAuthenticator,
    limits: ConnectionLimits,
}

impl Server {
    /// Binds every listener for `broker`. Fails if any address cannot be bound (Unix socket
    /// files already created are removed again).
    pub async fn bind(broker: Broker, specs: Vec<ListenerSpec>) -> io::Result<Self> {
        let mut listeners = Vec::with_capacity(specs.len());
        for spec in specs {
            let bound = Bound::bind(&spec.bind).await.map_err(|e| {
                io::Error::new(e.kind(), format!("cannot listen on {}: {e}", spec.bind))
            })?;
            listeners.push((bound, spec));
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

    /// The TCP addresses actually bound (ports resolved); Unix sockets are not listed.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(bound, _)| match bound {
                Bound::Tcp(l) => l.local_addr().ok(),
                #[cfg(unix)]
                Bound::Unix(_) => None,
            })
            .collect()
    }

    /// The broker behind this server.
    #[must_use]
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Serves until `shutdown` completes, then stops accepting (Unix socket files are
    /// removed), tells MQTT 5 clients the server is shutting down (DISCONNECT 0x8B), and waits
    /// up to a grace period for connections to close.
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
        // Tests and scripts read the address from the `listening on` lines, often the first
        // one: TCP listeners are announced first, so that the first line is an address and
        // port whenever there is one.
        let (tcp, unix): (Vec<_>, Vec<_>) = self
            .listeners
            .into_iter()
            .partition(|(bound, _)| matches!(bound, Bound::Tcp(_)));
        for (bound, mut spec) in tcp.into_iter().chain(unix) {
            if let Bound::Tcp(l) = &bound
                && let Ok(addr) = l.local_addr()
            {
                spec.bind = ListenAddr::Tcp(addr);
            }
            announce(&spec);
            tracker.spawn(accept_loop(bound, spec, ctx.clone()));
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

/// Logs what a listener serves, ending with its `listening on` line.
fn announce(spec: &ListenerSpec) {
    let name = &spec.bind;
    if let Some(tls) = &spec.tls {
        crate::tls::log_listener(name, tls);
    }
    if let Some(proxy) = &spec.proxy_protocol {
        tracing::info!(
            "PROXY protocol on {name}: every connection starts with a {} header{}",
            proxy.versions,
            if proxy.require_tls {
                " saying the client used TLS"
            } else {
                ""
            }
        );
    }
    match &spec.websocket {
        None => tracing::info!("listening on {name}"),
        Some(ws) => {
            crate::websocket::log_listener(name, ws);
            tracing::info!("listening on {name} (websockets)");
        }
    }
}

/// A bound listening socket.
enum Bound {
    Tcp(TcpListener),
    /// Dropping it (when its accept loop ends) removes the socket file.
    #[cfg(unix)]
    Unix(crate::unix_socket::UnixSocketListener),
}

/// A connection just accepted.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Bound {
    async fn bind(addr: &ListenAddr) -> io::Result<Self> {
        match addr {
            ListenAddr::Tcp(addr) => bind_tcp(*addr).map(Self::Tcp),
            #[cfg(unix)]
            ListenAddr::Unix(unix) => crate::unix_socket::bind(unix).await.map(Self::Unix),
            #[cfg(not(unix))]
            ListenAddr::Unix(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "Unix sockets are not available on this system",
            )),
        }
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Self::Tcp(l) => l.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer)),
            #[cfg(unix)]
            Self::Unix(l) => l.accept().await.map(Accepted::Unix),
        }
    }
}

/// Binds a TCP listener. An IPv6 address listens for IPv6 only (`IPV6_V6ONLY`), as in
/// Mosquitto and whatever the system's default: `[::]` and `0.0.0.0` can then share a port,
/// and `socket_domain ipv6` means IPv6.
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // As std and tokio do: a restarted broker can listen again while connections of the
    // previous one are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// How a connection's client is named in logs: its address, else (a Unix socket's client) the
/// listener it came through, `unix:PATH`.
#[derive(Clone, Copy)]
struct PeerName<'a>(Option<SocketAddr>, &'a ListenAddr);

impl fmt::Display for PeerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => write!(f, "{}", self.1),
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

async fn accept_loop(bound: Bound, spec: ListenerSpec, ctx: AcceptContext) {
    let spec = Arc::new(spec);
    let limit = spec.max_connections.map(|n| Arc::new(Semaphore::new(n)));
    loop {
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            accepted = bound.accept() => accepted,
        };
        match accepted {
            Ok(Accepted::Tcp(stream, peer)) => {
                // Writes are batched by the connection task; Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                ctx.start(stream, Some(peer), limit.as_ref(), &spec);
            }
            #[cfg(unix)]
            Ok(Accepted::Unix(stream)) => ctx.start(stream, None, limit.as_ref(), &spec),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %spec.bind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl AcceptContext {
    /// Admits a connection just accepted from `peer` (`None`: a Unix socket's client) and
    /// serves it in a task of its own, or refuses it (see `limits` for how and why). On a
    /// PROXY protocol listener, the limits on addresses wait for the address of the header.
    fn start<S>(
        &self,
        stream: S,
        peer: Option<SocketAddr>,
        limit: Option<&Arc<Semaphore>>,
        spec: &Arc<ListenerSpec>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let permit = match limit.map(|sem| sem.clone().try_acquire_owned()) {
            None => None,
            Some(Ok(permit)) => Some(permit),
            Some(Err(_)) => {
                // Before a PROXY header, the next bytes are not a CONNECT to answer.
                let answer = spec.proxy_protocol.is_none();
                self.refuse(stream, peer, ReasonCode::QUOTA_EXCEEDED, spec, answer);
                return;
            }
        };
        let ctx = self.clone();
        let spec = spec.clone();
        if let Some(proxy) = spec.proxy_protocol {
            self.tracker.spawn(async move {
                ctx.serve_proxied(stream, peer, &spec, proxy).await;
                drop(permit);
            });
            return;
        }
        match self.admit(peer) {
            Ok(counted) => {
                self.tracker.spawn(async move {
                    ctx.serve(stream, peer, &spec).await;
                    drop((permit, counted));
                });
            }
            Err(reason) => self.refuse(stream, peer, reason, &spec, true),
        }
    }

    /// Counts a connection from `remote` against the limits of all listeners.
    fn admit(&self, remote: Option<SocketAddr>) -> Result<Admitted, ReasonCode> {
        match remote {
            Some(addr) => self.gate.admit(addr.ip()),
            None => self.gate.admit_unaddressed(),
        }
    }

    /// Refuses a connection with `reason`: with a CONNACK if `answer` and the listener is plain
    /// MQTT, else by closing it.
    fn refuse<S>(
        &self,
        stream: S,
        remote: Option<SocketAddr>,
        reason: ReasonCode,
        spec: &ListenerSpec,
        answer: bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let refusal = Refusal {
            reason,
            // Only plain MQTT gets a CONNACK; TLS and WebSocket clients are closed at once.
            tls: !answer || spec.tls.is_some() || spec.websocket.is_some(),
            listener: &spec.bind,
            connect_timeout: self.broker.config().connect_timeout,
            cancel: &self.cancel,
            tracker: &self.tracker,
        };
        self.gate
            .refuse(stream, PeerName(remote, &spec.bind), refusal);
    }

    /// Reads the PROXY protocol header (under the listener's first deadline), then admits and
    /// serves the connection as coming from the address it carries. A connection without a
    /// valid header is closed without a word.
    async fn serve_proxied<S>(
        self,
        mut stream: S,
        peer: Option<SocketAddr>,
        spec: &ListenerSpec,
        proxy: ProxyProtocol,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let deadline = spec
            .tls
            .as_ref()
            .and_then(|tls| tls.handshake_timeout())
            .or(spec.websocket.as_ref().and_then(|ws| ws.upgrade_timeout))
            .unwrap_or(self.broker.config().connect_timeout);
        let read = tokio::select! {
            () = self.cancel.cancelled() => return,
            read = tokio::time::timeout(deadline, proxy_protocol::read_header(&mut stream, proxy)) => read,
        };
        let from = PeerName(peer, &spec.bind);
        let header = match read {
            Ok(Ok(header)) => header,
            // A connection closed before its header says nothing worth an info line: load
            // balancers' TCP health checks connect and close at once.
            Ok(Err(e @ proxy_protocol::HeaderError::Closed)) => {
                tracing::debug!("connection from {from} on {}: {e}", spec.bind);
                return;
            }
            Ok(Err(e)) => {
                if self.log_connections {
                    tracing::info!("connection from {from} on {}: {e}; closed", spec.bind);
                }
                return;
            }
            Err(_) => {
                if self.log_connections {
                    tracing::info!(
                        "connection from {from} on {}: no PROXY header within {deadline:?}; \
                         closed",
                        spec.bind
                    );
                }
                return;
            }
        };
        let remote = header.source.or(peer);
        tracing::debug!(
            proxy = %from,
            client = %PeerName(remote, &spec.bind),
            version = header.version,
            "PROXY header"
        );
        match self.admit(remote) {
            Ok(counted) => {
                self.serve(stream, remote, spec).await;
                drop(counted);
            }
            // The header is read: a plain MQTT client's CONNECT comes next, and is answered.
            Err(reason) => self.refuse(stream, remote, reason, spec, true),
        }
    }

    /// Serves one admitted connection from `remote` to its end: the TLS handshake first on a
    /// TLS listener, the WebSocket upgrade on a WebSocket listener, then the MQTT connection.
    async fn serve<S>(mut self, stream: S, remote: Option<SocketAddr>, spec: &ListenerSpec)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if let Some(own) = &spec.authenticator {
            self.authenticator = own.clone();
        }
        let info = ConnectionInfo {
            remote_addr: remote,
            policy: spec.policy.clone(),
            certificate_username: None,
        };
        match &spec.tls {
            None => self.drive_listener(stream, info, spec).await,
            // Boxed: a TLS session's state is kilobytes, and an unboxed branch would make every
            // plain connection's task that large too.
            Some(tls) => Box::pin(self.serve_tls(stream, info, spec, tls)).await,
        }
    }

    /// The TLS handshake, then the MQTT connection over it.
    async fn serve_tls<S>(
        self,
        stream: S,
        mut info: ConnectionInfo,
        spec: &ListenerSpec,
        tls: &TlsAcceptor,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The handshake has its own deadline, so that a client that sends nothing, or stalls
        // half-way, holds its socket and connection slot no longer than that.
        let deadline = tls
            .handshake_timeout()
            .unwrap_or(self.broker.config().connect_timeout);
        let handshake = tokio::select! {
            () = self.cancel.cancelled() => return,
            result = tokio::time::timeout(deadline, tls.accept(stream)) => result,
        };
        let peer = PeerName(info.remote_addr, &spec.bind);
        match handshake {
            Ok(Ok(accepted)) => {
                info.certificate_username = accepted.certificate_username;
                self.drive_listener(accepted.stream, info, spec).await;
            }
            Ok(Err(e)) => {
                if self.log_connections {
                    tracing::info!("TLS handshake with {peer} on {} failed: {e}", spec.bind);
                }
            }
            Err(_) => {
                if self.log_connections {
                    tracing::info!(
                        "TLS handshake with {peer} on {} not done within {deadline:?}; closed",
                        spec.bind
                    );
                }
            }
        }
    }

    /// Runs the MQTT connection over `stream` to its end.
    async fn drive<S>(self, stream: S, info: ConnectionInfo, spec: &ListenerSpec)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        connection::drive(
            stream,
            self.broker,
            info,
            self.cancel,
            self.log_connections,
            self.authenticator,
            &spec.bind,
        )
        .await;
    }

    /// Runs the MQTT connection over `stream`, or over the WebSocket it is upgraded to on a
    /// WebSocket listener.
    async fn drive_listener<S>(self, stream: S, info: ConnectionInfo, spec: &ListenerSpec)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match &spec.websocket {
            None => self.drive(stream, info, spec).await,
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
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self.broker.config();
        let log = self
            .log_connections
            .then_some((PeerName(info.remote_addr, &spec.bind), &spec.bind));
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
            self.drive(ws, info, spec).await;
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
