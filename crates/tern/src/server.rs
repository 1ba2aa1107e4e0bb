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

use arc_swap::ArcSwap;

use crate::auth::SharedAuthenticator;
use crate::config::ListenAddr;
use crate::connection::{self, Closing};
use crate::limits::{Admitted, ConnectionLimits, Gate, Refusal};
use crate::proxy_protocol::{self, ProxyProtocol};
use crate::tls::TlsAcceptor;

/// How long connections get to say goodbye at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Connections waiting to be accepted on a TCP listener: as many as the system allows (Linux
/// caps the backlog at `net.core.somaxconn`, so that setting governs it).
const BACKLOG: i32 = 65_535;

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
    listeners: Listeners,
}

impl Server {
    /// Binds every listener for `broker`. Fails if any address cannot be bound (Unix socket
    /// files already created are removed again).
    pub async fn bind(broker: Broker, specs: Vec<ListenerSpec>) -> io::Result<Self> {
        let listeners = Listeners::new(broker.clone());
        let mut bound = Vec::with_capacity(specs.len());
        let keys = ListenerKey::of(specs.iter().map(|s| &s.bind));
        for (spec, key) in specs.into_iter().zip(keys) {
            bound.push(PendingListener::bind(spec, key).await?);
        }
        for pending in bound {
            listeners.add(pending);
        }
        Ok(Self { broker, listeners })
    }

    /// Limits on connections across listeners and per source address (none by default).
    #[must_use]
    pub fn with_connection_limits(self, limits: ConnectionLimits) -> Self {
        self.listeners.set_limits(limits);
        self
    }

    /// The authentication sources connections use; the handle lets a reload replace them.
    #[must_use]
    pub fn with_authenticator(self, authenticator: SharedAuthenticator) -> Self {
        self.listeners.set_default_authenticator(authenticator);
        self
    }

    /// Whether connections and disconnections are logged at info level (`connection_messages`,
    /// on by default as in Mosquitto).
    #[must_use]
    pub fn with_connection_messages(self, on: bool) -> Self {
        self.listeners.set_connection_messages(on);
        self
    }

    /// The TCP addresses actually bound (ports resolved); Unix sockets are not listed.
    #[must_use]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.local_addrs()
    }

    /// The broker behind this server.
    #[must_use]
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The listeners, to add, change or remove some while the server runs (on reload).
    pub(crate) fn listeners(&self) -> Listeners {
        self.listeners.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting (Unix socket files are
    /// removed), tells MQTT 5 clients the server is shutting down (DISCONNECT 0x8B), and waits
    /// up to a grace period for connections to close.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let inner = self.listeners.inner.clone();
        self.listeners.start();
        inner
            .tracker
            .spawn(broker_timers(self.broker.clone(), inner.cancel.clone()));
        shutdown.await;
        tracing::info!("shutting down");
        inner.cancel.cancel();
        inner.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The listeners of a running server.

/// The listeners of a server: bound, accepting, and replaceable while it runs. Cloning gives
/// another handle on the same listeners.
#[derive(Clone)]
pub(crate) struct Listeners {
    inner: Arc<ListenersInner>,
}

struct ListenersInner {
    broker: Broker,
    /// Server shutdown; each listener's own token is a child of it.
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Connection limits across listeners and per source address.
    gate: Arc<Gate>,
    /// The deadlines of every listener's connections, on one timer.
    deadlines: Arc<connection::Deadlines>,
    state: std::sync::Mutex<ListenersState>,
}

struct ListenersState {
    /// Whether the server runs: listeners added from now on accept at once.
    started: bool,
    log_connections: bool,
    /// The authentication sources of listeners without their own.
    authenticator: SharedAuthenticator,
    running: Vec<Running>,
}

/// Identifies a listener of the configuration across reloads: its address as configured (port
/// 0 before it is resolved), and which of the listeners configured with that address it is
/// (only port 0 can be configured more than once).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ListenerKey {
    pub(crate) bind: ListenAddr,
    pub(crate) nth: usize,
}

impl ListenerKey {
    /// The keys of listeners configured with `binds`, in order.
    pub(crate) fn of<'a>(binds: impl Iterator<Item = &'a ListenAddr>) -> Vec<Self> {
        let mut keys: Vec<Self> = Vec::new();
        for bind in binds {
            let nth = keys.iter().filter(|k| &k.bind == bind).count();
            keys.push(Self {
                bind: bind.clone(),
                nth,
            });
        }
        keys
    }
}

impl fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bind)
    }
}

/// One listener: its socket's accept loop, and what its connections are set up with.
struct Running {
    /// Which listener of the configuration it is: what a reload matches.
    key: ListenerKey,
    /// What new connections get; replaced when its settings change.
    current: Arc<ArcSwap<Listener>>,
    /// Its `max_connections`.
    slots: Arc<Slots>,
    /// Stops its accept loop and closes its connections.
    cancel: CancellationToken,
    /// Closes its established connections once the accept loop has stopped.
    closing: Arc<Closing>,
    /// Cancelled once its socket is closed.
    stopped: CancellationToken,
    /// The socket, until the accept loop takes it.
    bound: Option<Bound>,
    /// Every `Shared` its connections may hold, to count them (see [`Running::connections`]).
    shareds: Vec<std::sync::Weak<connection::Shared>>,
    /// Every `Listener` made for it (each holds one `Arc` of its `Shared`).
    made: Vec<std::sync::Weak<Listener>>,
}

impl Running {
    /// Connections established through this listener: every `Arc<Shared>` is held by a
    /// connection task or by a `Listener`, so this costs the connections nothing.
    fn connections(&mut self) -> usize {
        self.shareds.retain(|w| w.strong_count() > 0);
        self.made.retain(|w| w.strong_count() > 0);
        let held: usize = self.shareds.iter().map(std::sync::Weak::strong_count).sum();
        held.saturating_sub(self.made.len())
    }

    fn remember(&mut self, listener: &Arc<Listener>) {
        self.made.push(Arc::downgrade(listener));
        if !self
            .shareds
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&listener.shared)))
        {
            self.shareds.push(Arc::downgrade(&listener.shared));
        }
    }
}

/// A listener bound but not serving yet: adding it to [`Listeners`] starts it. Dropping it
/// closes the socket (and removes a Unix socket's file).
pub(crate) struct PendingListener {
    spec: ListenerSpec,
    /// Which listener of the configuration it is.
    key: ListenerKey,
    bound: Bound,
}

impl PendingListener {
    /// Binds `spec`'s address, for the listener of the configuration `key` names.
    pub(crate) async fn bind(mut spec: ListenerSpec, key: ListenerKey) -> io::Result<Self> {
        let bound = Bound::bind(&spec.bind).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", spec.bind))
        })?;
        if let Bound::Tcp(l) = &bound
            && let Ok(addr) = l.local_addr()
        {
            spec.bind = ListenAddr::Tcp(addr);
        }
        Ok(Self { spec, key, bound })
    }

    /// The address bound, for messages.
    pub(crate) fn name(&self) -> String {
        self.spec.bind.to_string()
    }
}

/// What the admin API shows of a listener.
#[derive(Debug, Clone)]
pub(crate) struct ListenerInfo {
    /// The address bound (the port resolved), or the Unix socket.
    pub(crate) bound: ListenAddr,
    /// `tcp`, `tls`, `ws`, `wss` or `unix` (`unix` also for WebSocket over a Unix socket).
    pub(crate) kind: &'static str,
    /// Whether connections start with a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    /// Connections established now.
    pub(crate) connections: usize,
    /// Its connection limit, if any.
    pub(crate) max_connections: Option<usize>,
    /// The settings new connections get.
    pub(crate) policy: Arc<ListenerPolicy>,
}

impl Listeners {
    fn new(broker: Broker) -> Self {
        Self {
            inner: Arc::new(ListenersInner {
                broker,
                cancel: CancellationToken::new(),
                tracker: TaskTracker::new(),
                gate: Gate::new(ConnectionLimits::default()),
                deadlines: Arc::default(),
                state: std::sync::Mutex::new(ListenersState {
                    started: false,
                    log_connections: true,
                    authenticator: SharedAuthenticator::default(),
                    running: Vec::new(),
                }),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ListenersState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The connection limits across listeners.
    pub(crate) fn set_limits(&self, limits: ConnectionLimits) {
        self.inner.gate.set_limits(limits);
    }

    /// The connection limits in force.
    pub(crate) fn limits(&self) -> ConnectionLimits {
        self.inner.gate.limits()
    }

    fn set_default_authenticator(&self, authenticator: SharedAuthenticator) {
        let mut state = self.lock();
        state.authenticator = authenticator;
        let ListenersState {
            running,
            authenticator,
            log_connections,
            ..
        } = &mut *state;
        for r in running.iter_mut() {
            let old = r.current.load_full();
            if old.spec.authenticator.is_none() {
                let new = self.inner.listener(
                    old.spec.clone(),
                    &r.cancel,
                    &r.closing,
                    *log_connections,
                    authenticator,
                );
                r.remember(&new);
                r.current.store(new);
            }
        }
    }

    /// Whether connections and disconnections are logged; listeners' new connections follow.
    pub(crate) fn set_connection_messages(&self, on: bool) {
        let mut state = self.lock();
        if state.log_connections == on {
            return;
        }
        state.log_connections = on;
        let ListenersState {
            running,
            authenticator,
            ..
        } = &mut *state;
        for r in running.iter_mut() {
            let old = r.current.load_full();
            let new =
                self.inner
                    .listener(old.spec.clone(), &r.cancel, &r.closing, on, authenticator);
            r.remember(&new);
            r.current.store(new);
        }
    }

    /// Adds a bound listener; it accepts connections at once if the server runs.
    pub(crate) fn add(&self, pending: PendingListener) {
        let mut state = self.lock();
        let cancel = self.inner.cancel.child_token();
        let closing = Arc::new(Closing::default());
        let listener = self.inner.listener(
            pending.spec,
            &cancel,
            &closing,
            state.log_connections,
            &state.authenticator,
        );
        let mut running = Running {
            key: pending.key,
            slots: Arc::new(Slots::new(listener.spec.max_connections)),
            current: Arc::new(ArcSwap::new(listener.clone())),
            cancel,
            closing,
            stopped: CancellationToken::new(),
            bound: Some(pending.bound),
            shareds: Vec::new(),
            made: Vec::new(),
        };
        running.remember(&listener);
        if state.started {
            self.inner.start(&mut running);
        }
        state.running.push(running);
    }

    /// Starts every listener: TCP listeners first, so that the first `listening on` line is an
    /// address and port whenever there is one (tests and scripts read it).
    fn start(&self) {
        let mut state = self.lock();
        state.started = true;
        let mut order: Vec<usize> = (0..state.running.len()).collect();
        order.sort_by_key(|i| !matches!(state.running[*i].key.bind, ListenAddr::Tcp(_)));
        for i in order {
            self.inner.start(&mut state.running[i]);
        }
    }

    /// Removes the listener configured as `key`: it stops accepting at once, and its
    /// connections are closed as at shutdown (MQTT 5 clients get DISCONNECT 0x8B). Returns a
    /// token cancelled once its socket is closed, if there was one.
    pub(crate) fn remove(&self, key: &ListenerKey) -> Option<CancellationToken> {
        let mut state = self.lock();
        let i = state.running.iter().position(|r| &r.key == key)?;
        let mut running = state.running.remove(i);
        running.cancel.cancel();
        if running.bound.take().is_some() {
            // Never started: the socket is closed now.
            running.stopped.cancel();
        }
        tracing::info!("listener {} removed", running.current.load().spec.bind);
        Some(running.stopped)
    }

    /// Gives the listener configured as `key` new settings (`spec`'s; its address is kept):
    /// connections accepted from now on get them, established ones keep theirs. A changed
    /// `max_connections` counts the established connections too.
    pub(crate) fn update(&self, key: &ListenerKey, mut spec: ListenerSpec) -> bool {
        let mut state = self.lock();
        let ListenersState {
            running,
            authenticator,
            log_connections,
            ..
        } = &mut *state;
        let Some(r) = running.iter_mut().find(|r| &r.key == key) else {
            return false;
        };
        let old = r.current.load_full();
        spec.bind = old.spec.bind.clone();
        r.slots.resize(spec.max_connections);
        let new = self
            .inner
            .listener(spec, &r.cancel, &r.closing, *log_connections, authenticator);
        r.remember(&new);
        r.current.store(new);
        true
    }

    /// Which listeners of the configuration are running.
    pub(crate) fn keys(&self) -> Vec<ListenerKey> {
        self.lock().running.iter().map(|r| r.key.clone()).collect()
    }

    /// The TCP addresses actually bound, in the order the listeners were added.
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.lock()
            .running
            .iter()
            .filter_map(|r| r.current.load().spec.bind.tcp())
            .collect()
    }

    /// What each listener is and does now.
    pub(crate) fn infos(&self) -> Vec<ListenerInfo> {
        let mut state = self.lock();
        state
            .running
            .iter_mut()
            .map(|r| {
                let connections = r.connections();
                let current = r.current.load();
                let spec = &current.spec;
                let kind = match (&spec.bind, spec.tls.is_some(), spec.websocket.is_some()) {
                    (ListenAddr::Unix(_), _, _) => "unix",
                    (_, false, false) => "tcp",
                    (_, true, false) => "tls",
                    (_, false, true) => "ws",
                    (_, true, true) => "wss",
                };
                ListenerInfo {
                    bound: spec.bind.clone(),
                    kind,
                    proxy_protocol: spec.proxy_protocol.is_some(),
                    connections,
                    max_connections: r.slots.max(),
                    policy: current.policy.clone(),
                }
            })
            .collect()
    }
}

impl ListenersInner {
    /// What the connections of a listener with `spec` share.
    fn listener(
        &self,
        spec: ListenerSpec,
        cancel: &CancellationToken,
        closing: &Arc<Closing>,
        log_connections: bool,
        authenticator: &SharedAuthenticator,
    ) -> Arc<Listener> {
        let shared = Arc::new(connection::Shared {
            broker: self.broker.clone(),
            shutdown: cancel.clone(),
            closing: closing.clone(),
            deadlines: self.deadlines.clone(),
            log_connections,
            authenticator: spec
                .authenticator
                .clone()
                .unwrap_or_else(|| authenticator.clone()),
            unaddressed: spec.bind.to_string().into(),
        });
        Arc::new(Listener {
            policy: Arc::new(ListenerPolicy {
                // The admin API shows it with the listener's clients.
                name: Some(spec.bind.to_string().into()),
                ..spec.policy.clone()
            }),
            spec,
            shared,
        })
    }

    /// Announces `running` and starts its accept loop.
    fn start(&self, running: &mut Running) {
        let Some(bound) = running.bound.take() else {
            return;
        };
        announce(&running.current.load().spec);
        let ctx = AcceptContext {
            broker: self.broker.clone(),
            cancel: running.cancel.clone(),
            tracker: self.tracker.clone(),
            gate: self.gate.clone(),
        };
        self.tracker.spawn(accept_loop(
            bound,
            running.current.clone(),
            running.slots.clone(),
            ctx,
            running.stopped.clone(),
            running.closing.clone(),
        ));
    }
}

/// A listener's `max_connections`: a semaphore whose size can change while connections hold
/// permits. A smaller limit is a debt paid with permits as they come back.
struct Slots {
    state: std::sync::Mutex<SlotsState>,
}

struct SlotsState {
    max: Option<usize>,
    semaphore: Option<Arc<Semaphore>>,
    /// Permits still to be taken out of the semaphore after the limit was lowered.
    debt: usize,
}

impl Slots {
    fn new(max: Option<usize>) -> Self {
        Self {
            state: std::sync::Mutex::new(SlotsState {
                max,
                semaphore: max.map(|n| Arc::new(Semaphore::new(n))),
                debt: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotsState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn max(&self) -> Option<usize> {
        self.lock().max
    }

    /// A place for a new connection: `Ok(None)` without a limit, `Err` when full.
    fn try_acquire(&self) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let mut st = self.lock();
        let Some(semaphore) = st.semaphore.clone() else {
            return Ok(None);
        };
        if st.debt > 0 {
            st.debt -= semaphore.forget_permits(st.debt);
        }
        semaphore.try_acquire_owned().map(Some).map_err(drop)
    }

    /// Changes the limit. A limit where there was none counts the connections accepted from
    /// now on.
    fn resize(&self, max: Option<usize>) {
        let mut st = self.lock();
        match (st.max, max) {
            (Some(old), Some(new)) if new > old => {
                let mut more = new - old;
                let paid = more.min(st.debt);
                st.debt -= paid;
                more -= paid;
                if let Some(s) = &st.semaphore {
                    s.add_permits(more);
                }
            }
            (Some(old), Some(new)) if new < old => {
                st.debt += old - new;
                if let Some(s) = st.semaphore.clone() {
                    st.debt -= s.forget_permits(st.debt);
                }
            }
            (Some(_), Some(_)) => {}
            (_, None) => {
                st.semaphore = None;
                st.debt = 0;
            }
            (None, Some(new)) => {
                st.semaphore = Some(Arc::new(Semaphore::new(new)));
                st.debt = 0;
            }
        }
        st.max = max;
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
            ListenAddr::Tcp(addr) => bind_tcp(*addr, BACKLOG).map(Self::Tcp),
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
pub(crate) fn bind_tcp(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
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
    socket.listen(backlog)?;
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

/// Accepts connections on `bound` until the listener is removed or the server stops; each gets
/// the listener's settings of the moment (`current`).
async fn accept_loop(
    bound: Bound,
    current: Arc<ArcSwap<Listener>>,
    slots: Arc<Slots>,
    ctx: AcceptContext,
    stopped: CancellationToken,
    closing: Arc<Closing>,
) {
    loop {
        let accepted = tokio::select! {
            () = ctx.cancel.cancelled() => break,
            accepted = bound.accept() => accepted,
        };
        let own = current.load_full();
        match accepted {
            Ok(Accepted::Tcp(stream, peer)) => {
                // Writes are batched by the connection task; Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                ctx.start(stream, Some(peer), &slots, &own);
            }
            #[cfg(unix)]
            Ok(Accepted::Unix(stream)) => ctx.start(stream, None, &slots, &own),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = %own.spec.bind, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The socket is closed (a Unix socket's file removed) before anyone is told.
    drop(bound);
    stopped.cancel();
    closing.close();
}

impl AcceptContext {
    /// Admits a connection just accepted from `peer` (`None`: a Unix socket's client) and
    /// serves it in a task of its own, or refuses it (see `limits` for how and why). On a
    /// PROXY protocol listener, the limits on addresses wait for the address of the header.
    fn start<S>(&self, stream: S, peer: Option<SocketAddr>, slots: &Slots, own: &Arc<Listener>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let permit = match slots.try_acquire() {
            Ok(permit) => permit,
            Err(()) => {
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
            broker: &self.broker,
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
            info.certificate_username = accepted.certificate_username.map(Box::new);
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
