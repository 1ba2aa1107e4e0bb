//! The server: binds the listeners (TCP addresses and Unix sockets), accepts connections,
//! reads the PROXY protocol header where a listener expects one, runs the broker's timers, and
//! shuts down gracefully.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_codec::ReasonCode;
use tern_core::{Broker, ConnectionInfo, ListenerPolicy, Wake};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
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
            let shared = Arc::new(connection::Shared {
                broker: self.broker.clone(),
                shutdown: cancel.clone(),
                log_connections: self.log_connections,
                authenticator: spec
                    .authenticator
                    .clone()
                    .unwrap_or_else(|| self.authenticator.clone()),
                unaddressed: spec.bind.to_string().into(),
            });
            let own = Arc::new(Listener {
                policy: Arc::new(spec.policy.clone()),
                spec,
                shared,
            });
            tracker.spawn(accept_loop(bound, own, ctx.clone()));
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
    /// Connection limits across listeners and per source address.
    gate: Arc<Gate>,
}

/// A listener, as its connections share it (one `Arc` each, nothing copied per connection).
struct Listener {
    spec: ListenerSpec,
    /// `spec.policy`, which every connection's state machine refers to.
    policy: Arc<ListenerPolicy>,
    /// What the connection tasks share.
    shared: Arc<connection::Shared>,
}

impl Listener {
    /// What the state machine of a connection from `remote` starts with.
    fn info(&self, remote: Option<SocketAddr>) -> ConnectionInfo {
        ConnectionInfo {
            remote_addr: remote,
            policy: self.policy.clone(),
            certificate_username: None,
        }
    }
}

/// A connection's places under the connection limits (its listener's, the server's and its
/// source address's), held until it ends. Boxed, and `None` without limits (the default): every
/// connection's task would otherwise be that much larger.
type Places = Option<Box<(Option<OwnedSemaphorePermit>, Admitted)>>;

fn places(permit: Option<OwnedSemaphorePermit>, counted: Admitted) -> Places {
    if permit.is_none() && !counted.is_counted() {
        None
    } else {
        Some(Box::new((permit, counted)))
    }
}

/// A connection's task after its set-up (PROXY header, TLS handshake, WebSocket upgrade).
type Established = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn accept_loop(bound: Bound, own: Arc<Listener>, ctx: AcceptContext) {
    let limit = own
        .spec
        .max_connections
        .map(|n| Arc::new(Semaphore::new(n)));
    loop {
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => return,
            accepted = bound.accept() => accepted,
        };
        match accepted {
            Ok(Accepted::Tcp(stream, peer)) => {
                // Writes are batched by the connection task; Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                ctx.start(stream, Some(peer), limit.as_ref(), &own);
            }
            #[cfg(unix)]
            Ok(Accepted::Unix(stream)) => ctx.start(stream, None, limit.as_ref(), &own),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %own.spec.bind, error = %e, "accept failed");
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
        own: &Arc<Listener>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let permit = match limit.map(|sem| sem.clone().try_acquire_owned()) {
            None => None,
            Some(Ok(permit)) => Some(permit),
            Some(Err(_)) => {
                // Before a PROXY header, the next bytes are not a CONNECT to answer.
                let answer = own.spec.proxy_protocol.is_none();
                self.refuse(stream, peer, ReasonCode::QUOTA_EXCEEDED, &own.spec, answer);
                return;
            }
        };
        if let Some(proxy) = own.spec.proxy_protocol {
            let set_up = self
                .clone()
                .read_proxy_header(stream, peer, own.clone(), permit, proxy);
            self.tracker.spawn(set_up_then_run(Box::pin(set_up)));
            return;
        }
        match self.admit(peer) {
            // Each kind of listener spawns its own kind of task: a plain MQTT connection's
            // task is just the connection, without the TLS or WebSocket state it does not need.
            Ok(counted) if own.spec.tls.is_none() && own.spec.websocket.is_none() => {
                self.tracker.spawn(connection::drive(
                    stream,
                    own.info(peer),
                    own.shared.clone(),
                    places(permit, counted),
                ));
            }
            Ok(counted) => {
                self.tracker.spawn(establish(
                    stream,
                    peer,
                    own.clone(),
                    places(permit, counted),
                ));
            }
            Err(reason) => self.refuse(stream, peer, reason, &own.spec, true),
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

    /// Reads the PROXY protocol header (under the listener's first deadline), then admits the
    /// connection as coming from the address it carries: the connection to run (after its TLS
    /// handshake or WebSocket upgrade). A connection without a valid header is closed without
    /// a word.
    async fn read_proxy_header<S>(
        self,
        mut stream: S,
        peer: Option<SocketAddr>,
        own: Arc<Listener>,
        permit: Option<OwnedSemaphorePermit>,
        proxy: ProxyProtocol,
    ) -> Option<Established>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let spec = &own.spec;
        let log_connections = own.shared.log_connections;
        let deadline = spec
            .tls
            .as_ref()
            .and_then(|tls| tls.handshake_timeout())
            .or(spec.websocket.as_ref().and_then(|ws| ws.upgrade_timeout))
            .unwrap_or(self.broker.config().connect_timeout);
        let read = tokio::select! {
            () = self.cancel.cancelled() => return None,
            read = tokio::time::timeout(deadline, proxy_protocol::read_header(&mut stream, proxy)) => read,
        };
        let from = PeerName(peer, &spec.bind);
        let header = match read {
            Ok(Ok(header)) => header,
            // A connection closed before its header says nothing worth an info line: load
            // balancers' TCP health checks connect and close at once.
            Ok(Err(e @ proxy_protocol::HeaderError::Closed)) => {
                tracing::debug!("connection from {from} on {}: {e}", spec.bind);
                return None;
            }
            Ok(Err(e)) => {
                if log_connections {
                    tracing::info!("connection from {from} on {}: {e}; closed", spec.bind);
                }
                return None;
            }
            Err(_) => {
                if log_connections {
                    tracing::info!(
                        "connection from {from} on {}: no PROXY header within {deadline:?}; \
                         closed",
                        spec.bind
                    );
                }
                return None;
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
            Ok(counted) => Some(Box::pin(establish(
                stream,
                remote,
                own.clone(),
                places(permit, counted),
            ))),
            // The header is read: a plain MQTT client's CONNECT comes next, and is answered.
            Err(reason) => {
                self.refuse(stream, remote, reason, spec, true);
                None
            }
        }
    }
}

/// Runs the set-up of a connection (PROXY header, TLS handshake, WebSocket upgrade), then the
/// connection it establishes. The set-up is boxed and freed once done: its state (a TLS
/// handshake's is kilobytes) would otherwise stay in the task for the connection's whole life,
/// beside the connection's own.
async fn set_up_then_run<F>(set_up: Pin<Box<F>>)
where
    F: Future<Output = Option<Established>> + Send,
{
    let established = set_up.await;
    if let Some(connection) = established {
        connection.await;
    }
}

/// Serves one admitted connection from `remote` to its end: the TLS handshake first on a TLS
/// listener, the WebSocket upgrade on a WebSocket listener, then the MQTT connection.
fn establish<S>(
    stream: S,
    remote: Option<SocketAddr>,
    own: Arc<Listener>,
    places: Places,
) -> Established
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if own.spec.tls.is_some() {
        Box::pin(set_up_then_run(Box::pin(tls_handshake(
            stream, remote, own, places,
        ))))
    } else {
        let info = own.info(remote);
        establish_mqtt(stream, info, own, places)
    }
}

/// The MQTT connection over `stream`, or over the WebSocket it is upgraded to on a WebSocket
/// listener.
fn establish_mqtt<S>(
    stream: S,
    info: ConnectionInfo,
    own: Arc<Listener>,
    places: Places,
) -> Established
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if own.spec.websocket.is_some() {
        Box::pin(set_up_then_run(Box::pin(upgrade_websocket(
            stream, info, own, places,
        ))))
    } else {
        let shared = own.shared.clone();
        Box::pin(connection::drive(stream, info, shared, places))
    }
}

/// The WebSocket upgrade (under its deadline); then the MQTT connection over it, to run.
async fn upgrade_websocket<S>(
    stream: S,
    info: ConnectionInfo,
    own: Arc<Listener>,
    places: Places,
) -> Option<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = own.spec.websocket.as_ref()?;
    let shared = &own.shared;
    let config = shared.broker.config();
    let log = shared
        .log_connections
        .then_some((PeerName(info.remote_addr, &own.spec.bind), &own.spec.bind));
    let ws = crate::websocket::upgrade_within(
        stream,
        settings,
        config.max_packet_size,
        config.connect_timeout,
        &shared.shutdown,
        log,
    )
    .await?;
    Some(Box::pin(connection::drive(
        ws,
        info,
        shared.clone(),
        places,
    )))
}

/// The TLS handshake (under its deadline); then the connection over it (MQTT, or the
/// WebSocket upgrade), to run.
async fn tls_handshake<S>(
    stream: S,
    remote: Option<SocketAddr>,
    own: Arc<Listener>,
    places: Places,
) -> Option<Established>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tls = own.spec.tls.as_ref()?;
    let shared = &own.shared;
    // The handshake has its own deadline, so that a client that sends nothing, or stalls
    // half-way, holds its socket and connection slot no longer than that.
    let deadline = tls
        .handshake_timeout()
        .unwrap_or(shared.broker.config().connect_timeout);
    let handshake = tokio::select! {
        () = shared.shutdown.cancelled() => return None,
        result = tokio::time::timeout(deadline, tls.accept(stream)) => result,
    };
    let peer = PeerName(remote, &own.spec.bind);
    match handshake {
        Ok(Ok(accepted)) => {
            let mut info = own.info(remote);
            info.certificate_username = accepted.certificate_username;
            Some(establish_mqtt(accepted.stream, info, own.clone(), places))
        }
        Ok(Err(e)) => {
            if shared.log_connections {
                tracing::info!("TLS handshake with {peer} on {} failed: {e}", own.spec.bind);
            }
            None
        }
        Err(_) => {
            if shared.log_connections {
                tracing::info!(
                    "TLS handshake with {peer} on {} not done within {deadline:?}; closed",
                    own.spec.bind
                );
            }
            None
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
