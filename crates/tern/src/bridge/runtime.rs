//! One bridge's task: connects its two clients (the remote broker, and this broker through
//! [`LocalSide`]), carries messages between them, and reconnects with backoff.
//!
//! A message is acknowledged to the side it came from only once the other side has
//! acknowledged it (QoS 1: PUBACK; QoS 2: PUBCOMP), so a connection lost at any point loses
//! nothing: the unacknowledged message is sent again by its source. The messages in flight
//! are bounded by the window each client announces (Receive Maximum [`WINDOW`]); the rest wait
//! in this broker's session queue for the bridge, or on the remote broker.
//!
//! While the remote broker is unreachable the local client stays disconnected, so what this
//! broker has for the remote side waits in the bridge's session (durably for QoS 1/2 when
//! persistence is on, within the queue limits).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tern_client::{Client, ClientError, ConnectOptions, Event, SessionState, TlsFiles, TlsOptions};
use tern_codec::{
    ByteString, LastWill, ProtocolVersion, Publish, PublishProperties, QoS, RetainHandling,
    SubscribeProperties, SubscriptionOptions,
};
use tern_core::Broker;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::local::LocalSide;
use super::status::{BridgeState, BridgeStats};
use super::topics::Routes;
use crate::config::{BridgeConfig, BridgeStart};

/// Messages in flight in each direction (the Receive Maximum both clients announce, and the
/// most each sends unacknowledged).
pub(crate) const WINDOW: u16 = 32;
/// How long a stopping bridge may take to say goodbye to both brokers.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a `lazy` bridge looks at the messages waiting for the remote side.
const LAZY_POLL: Duration = Duration::from_millis(500);
/// How long a probe of the main address (`round_robin false`) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The identities a bridge uses by default: Mosquitto's `HOSTNAME.NAME` on the remote broker,
/// `local.HOSTNAME.NAME` here.
pub(crate) fn client_ids(config: &BridgeConfig) -> (String, String) {
    let remote = config
        .remote_client_id
        .clone()
        .unwrap_or_else(|| format!("{}.{}", hostname(), config.name));
    let local = config
        .local_client_id
        .clone()
        .unwrap_or_else(|| format!("local.{remote}"));
    (local, remote)
}

/// The topic of the bridge's state notifications.
pub(crate) fn notification_topic(config: &BridgeConfig) -> String {
    config
        .notification_topic
        .clone()
        .unwrap_or_else(|| format!("$SYS/broker/connection/{}/state", config.name))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Runs the bridge `config` of `broker` until `stop` is cancelled (or, for a `once` bridge,
/// until its connection ends). `prepared` is cancelled once the bridge's session here exists
/// (or could not be made), so that the server can wait for it before serving clients.
pub(crate) async fn run(
    config: Arc<BridgeConfig>,
    broker: Broker,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
    prepared: CancellationToken,
) {
    let name = config.name.clone();
    let _prepared = prepared.clone().drop_guard();
    match Runner::new(config, broker, stats.clone(), stop) {
        Ok(mut runner) => runner.run(&prepared).await,
        Err(e) => {
            tracing::error!("bridge {name}: not started: {e}");
            stats.set_error(e);
        }
    }
    stats.set_state(BridgeState::Stopped);
}

/// Why a connection pair ended.
enum End {
    /// The bridge is stopping.
    Stop,
    /// One side failed.
    Lost(String),
    /// A `lazy` bridge had nothing to carry for `idle_timeout`.
    Idle,
    /// The main address is back (`round_robin false`).
    Switch,
}

/// A failure of one side while carrying a message.
enum Failure {
    Local(ClientError),
    Remote(ClientError),
}

/// Which way a message is carried: out from this broker to the remote one, or in.
#[derive(Debug, Clone, Copy)]
enum Way {
    Out,
    In,
}

impl Way {
    fn reverse(self) -> Self {
        match self {
            Self::Out => Self::In,
            Self::In => Self::Out,
        }
    }

    /// A failure of the side messages carried this way come from.
    fn source_failed(self, e: ClientError) -> Failure {
        match self {
            Self::Out => Failure::Local(e),
            Self::In => Failure::Remote(e),
        }
    }

    /// A failure of the side messages carried this way go to.
    fn destination_failed(self, e: ClientError) -> Failure {
        self.reverse().source_failed(e)
    }

    fn unrouted(self) -> &'static str {
        match self {
            Self::Out => "matches no outgoing topic",
            Self::In => "matches no incoming topic",
        }
    }

    fn unsendable(self) -> &'static str {
        match self {
            Self::Out => "cannot be sent to the remote",
            Self::In => "cannot be published here",
        }
    }

    fn refused(self) -> &'static str {
        match self {
            Self::Out => "refused by the remote",
            Self::In => "refused here",
        }
    }
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Self::Local(e) => format!("local side: {e}"),
            Self::Remote(e) => format!("remote broker: {e}"),
        }
    }
}

/// A QoS 1/2 message sent on and not acknowledged yet by its destination.
#[derive(Debug, Clone)]
struct Held {
    /// The message as its source sent it (acknowledged to the source at the end).
    source: Publish,
    /// The message as sent to the destination (sent again if the destination lost it).
    sent: Publish,
    /// Order of arrival.
    seq: u64,
}

/// The messages of one direction in flight.
#[derive(Debug, Default)]
struct Flow {
    /// By the destination's packet identifier.
    by_dest: HashMap<u16, Held>,
    /// The destination's packet identifier by the source's: a message the source sends again
    /// (after a reconnection) while it is held is not sent on twice.
    by_source: HashMap<u16, u16>,
    seq: u64,
}

impl Flow {
    fn hold(&mut self, dest: u16, source: Publish, sent: Publish) {
        if let Some(id) = source.packet_id {
            self.by_source.insert(id.get(), dest);
        }
        self.seq += 1;
        self.by_dest.insert(
            dest,
            Held {
                source,
                sent,
                seq: self.seq,
            },
        );
    }

    /// Whether a message with this source packet identifier is held already.
    fn holds_source(&self, source: Option<tern_codec::PacketId>) -> bool {
        source.is_some_and(|id| self.by_source.contains_key(&id.get()))
    }

    fn release(&mut self, dest: u16) -> Option<Held> {
        let held = self.by_dest.remove(&dest)?;
        if let Some(id) = held.source.packet_id
            && self.by_source.get(&id.get()) == Some(&dest)
        {
            self.by_source.remove(&id.get());
        }
        Some(held)
    }

    /// The source lost its session: it will not send these again, and may use their packet
    /// identifiers for new messages.
    fn source_lost(&mut self) {
        self.by_source.clear();
    }

    /// The destination lost its session: everything held must be sent again, in order.
    fn take_for_resend(&mut self) -> Vec<Held> {
        self.by_source.clear();
        let mut held: Vec<Held> = self.by_dest.drain().map(|(_, h)| h).collect();
        held.sort_by_key(|h| h.seq);
        held
    }

    fn len(&self) -> usize {
        self.by_dest.len()
    }
}

struct Runner {
    config: Arc<BridgeConfig>,
    broker: Broker,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
    routes: Routes,
    local: LocalSide,
    local_options: ConnectOptions,
    remote_options: ConnectOptions,
    notification: Option<String>,
    local_state: Option<SessionState>,
    remote_state: Option<SessionState>,
    /// Local messages carried to the remote broker.
    out: Flow,
    /// Remote messages carried here.
    inbound: Flow,
    backoff: Backoff,
    /// The address in use, or to try next.
    address: usize,
    /// Whether the local subscriptions were checked against the configuration since start.
    local_prepared: bool,
}

impl Runner {
    fn new(
        config: Arc<BridgeConfig>,
        broker: Broker,
        stats: Arc<BridgeStats>,
        stop: CancellationToken,
    ) -> Result<Self, String> {
        if config.addresses.is_empty() {
            return Err("no address to connect to".to_owned());
        }
        let (local_id, remote_id) = client_ids(&config);
        let local = LocalSide::new(&broker, &config.name);
        // The bridge's session here lasts as long as the bridge, unless it asks for a clean
        // one every time.
        let expiry = if config.local_clean_session {
            0
        } else {
            u32::MAX
        };
        let mut local_options = local.options(&local_id, expiry, WINDOW);
        local_options.clean_start = config.local_clean_session;
        let notification = config.notifications.then(|| notification_topic(&config));
        let remote_options = remote_options(&config, &remote_id, notification.as_deref())?;
        Ok(Self {
            routes: Routes::new(&config.topics),
            backoff: Backoff::new(config.restart_base, config.restart_cap),
            config,
            broker,
            stats,
            stop,
            local,
            local_options,
            remote_options,
            notification,
            local_state: None,
            remote_state: None,
            out: Flow::default(),
            inbound: Flow::default(),
            address: 0,
            local_prepared: false,
        })
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn address_text(&self) -> String {
        let a = &self.config.addresses[self.address];
        if a.host.contains(':') {
            format!("[{}]:{}", a.host, a.port)
        } else {
            format!("{}:{}", a.host, a.port)
        }
    }

    async fn run(&mut self, prepared: &CancellationToken) {
        self.notify_local(false);
        if !self.config.local_clean_session {
            let ok = self.prepare_local().await;
            prepared.cancel();
            if !ok {
                return;
            }
        }
        prepared.cancel();
        // Failed attempts since the last success, within one round of the addresses.
        let mut tried = 0usize;
        loop {
            if self.config.start_type == BridgeStart::Lazy && !self.wait_for_work().await {
                return;
            }
            let address = self.address_text();
            self.stats.set_connecting(Some(address.clone()));
            let stop = self.stop.clone();
            let connected = tokio::select! {
                () = stop.cancelled() => return,
                result = self.connect() => result,
            };
            let (mut local, mut remote) = match connected {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::info!("bridge {}: cannot connect to {address}: {e}", self.name());
                    self.stats.set_error(e);
                    if self.config.start_type == BridgeStart::Once {
                        return;
                    }
                    let n = self.config.addresses.len();
                    self.address = (self.address + 1) % n;
                    tried += 1;
                    // Each address of a round is tried at once; a round that failed
                    // whole waits.
                    if tried >= n {
                        tried = 0;
                        if !self.pause().await {
                            return;
                        }
                    }
                    continue;
                }
            };
            tried = 0;
            self.backoff.reset();
            let end = match self.start_link(&mut local, &mut remote).await {
                Ok(()) => self.carry(&mut local, &mut remote).await,
                Err(failure) => End::Lost(failure.describe()),
            };
            self.local_state = Some(local.session_state());
            self.remote_state = Some(remote.session_state());
            match end {
                End::Stop => {
                    self.goodbye(local, remote).await;
                    tracing::info!("bridge {}: stopped", self.name());
                    return;
                }
                End::Idle => {
                    tracing::info!(
                        "bridge {}: disconnected from {address}: idle for {:?}",
                        self.name(),
                        self.config.idle_timeout
                    );
                    self.goodbye(local, remote).await;
                    continue;
                }
                End::Switch => {
                    tracing::info!(
                        "bridge {}: the main address is back; leaving {address}",
                        self.name()
                    );
                    self.goodbye(local, remote).await;
                    self.address = 0;
                    continue;
                }
                End::Lost(why) => {
                    tracing::info!("bridge {}: disconnected from {address}: {why}", self.name());
                    self.stats.set_error(why);
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, local.disconnect()).await;
                    drop(remote);
                    self.notify_local(false);
                    if self.config.start_type == BridgeStart::Once {
                        return;
                    }
                    self.address = if self.config.round_robin {
                        (self.address + 1) % self.config.addresses.len()
                    } else {
                        0
                    };
                    if !self.pause().await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits before the next attempt; `false` if the bridge stopped meanwhile.
    async fn pause(&mut self) -> bool {
        let wait = self.backoff.next_delay();
        self.stats.set_connecting(None);
        tracing::debug!("bridge {}: next attempt in {wait:?}", self.name());
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// A `lazy` bridge: waits until `threshold` messages wait for the remote side.
    async fn wait_for_work(&mut self) -> bool {
        self.stats.set_state(BridgeState::Idle);
        loop {
            let waiting = self
                .broker
                .session(&self.local_options.client_id)
                .map_or(0, |s| s.queued + s.inflight);
            if waiting >= self.config.threshold.max(1) || self.out.len() > 0 {
                return true;
            }
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = tokio::time::sleep(LAZY_POLL) => {}
            }
        }
    }

    /// Makes the bridge's session here before the remote broker is reached, so that what is
    /// published for the remote side from now on waits in it.
    async fn prepare_local(&mut self) -> bool {
        loop {
            let stop = self.stop.clone();
            let result = tokio::select! {
                () = stop.cancelled() => return false,
                result = self.connect_local() => result,
            };
            match result {
                Ok(local) => {
                    let mut state = local.session_state();
                    // Whatever came meanwhile is delivered again next time.
                    state.redeliver_pending();
                    self.local_state = Some(state);
                    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, local.disconnect()).await;
                    return true;
                }
                Err(e) => {
                    tracing::warn!("bridge {}: cannot open its local session: {e}", self.name());
                    if !self.pause().await {
                        return false;
                    }
                }
            }
        }
    }

    /// Connects the local client and subscribes to the `out` topics (removing subscriptions
    /// of topics no longer configured, the first time).
    async fn connect_local(&mut self) -> Result<Client, String> {
        let mut state = self.local_state.clone();
        if let Some(state) = &mut state {
            // Messages received and not carried yet are delivered again; those carried
            // and awaiting the remote's acknowledgement are recognised (`Flow::by_source`).
            state.redeliver_pending();
        }
        let mut local = self
            .local
            .connect(&self.local_options, state)
            .await
            .map_err(|e| format!("local session: {e}"))?;
        self.local_state = None;
        local.limit_inflight(usize::from(WINDOW));
        if !local.connack().session_present {
            self.out.source_lost();
        }
        match self.subscribe_local(&mut local).await {
            Ok(()) => Ok(local),
            Err(e) => {
                let mut state = local.session_state();
                state.redeliver_pending();
                self.local_state = Some(state);
                Err(format!("local session: {e}"))
            }
        }
    }

    /// Subscribes to the `out` topics, the first time and whenever the session is new
    /// (removing, the first time, subscriptions of topics no longer configured).
    async fn subscribe_local(&mut self, local: &mut Client) -> Result<(), ClientError> {
        if !self.local_prepared {
            let stale: Vec<String> = self
                .broker
                .client_subscriptions(&self.local_options.client_id)
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.filter.to_string())
                .filter(|f| !self.routes.out.iter().any(|r| r.filter == *f))
                .collect();
            if !stale.is_empty() {
                let filters: Vec<&str> = stale.iter().map(String::as_str).collect();
                local.unsubscribe(&filters).await?;
            }
        }
        if !self.local_prepared || !local.connack().session_present {
            for (i, route) in self.routes.out.iter().enumerate() {
                let options = SubscriptionOptions {
                    qos: route.qos,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                };
                let properties = SubscribeProperties {
                    subscription_identifier: u32::try_from(i + 1).ok(),
                    ..SubscribeProperties::default()
                };
                let ack = local
                    .subscribe_with(&[(route.filter.as_str(), options)], properties)
                    .await?;
                if let Some(code) = ack.reasons.iter().find(|c| c.is_error()) {
                    tracing::warn!(
                        "bridge {}: local subscription to {} refused: {code}",
                        self.config.name,
                        route.filter
                    );
                }
            }
            self.local_prepared = true;
        }
        Ok(())
    }

    /// Connects to the remote broker and subscribes there, then connects the local client.
    async fn connect(&mut self) -> Result<(Client, Client), String> {
        let address = &self.config.addresses[self.address];
        let mut options = self.remote_options.clone();
        options.host.clone_from(&address.host);
        options.port = address.port;
        // The state stays until a connection takes it over: a failed attempt keeps it for
        // the next one.
        let remote = match &self.remote_state {
            Some(state) if !self.config.clean_session => {
                Client::resume(&options, state.clone()).await
            }
            _ => Client::connect(&options).await,
        };
        let mut remote = remote.map_err(|e| e.to_string())?;
        self.remote_state = None;
        remote.limit_inflight(usize::from(WINDOW));
        if !remote.connack().session_present {
            self.inbound.source_lost();
        }
        let local = match self.subscribe_remote(&mut remote).await {
            Ok(()) => self.connect_local().await,
            Err(e) => Err(e),
        };
        match local {
            Ok(local) => Ok((local, remote)),
            Err(e) => {
                // Not carried on: what the remote client kept goes to the next attempt.
                self.remote_state = Some(remote.session_state());
                Err(e)
            }
        }
    }

    async fn subscribe_remote(&self, remote: &mut Client) -> Result<(), String> {
        if self.routes.inbound.is_empty() {
            return Ok(());
        }
        let v5 = remote.version().is_v5();
        let filters: Vec<(&str, SubscriptionOptions)> = self
            .routes
            .inbound
            .iter()
            .map(|r| {
                (
                    r.filter.as_str(),
                    SubscriptionOptions {
                        qos: r.qos,
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: RetainHandling::SendAtSubscribe,
                    },
                )
            })
            .collect();
        let reasons = remote
            .subscribe(&filters, None)
            .await
            .map_err(|e| e.to_string())?;
        for (code, (filter, _)) in reasons.iter().zip(&filters) {
            if code.is_error() {
                tracing::warn!(
                    "bridge {}: remote subscription to {filter} refused: {code}",
                    self.config.name
                );
            }
        }
        Ok(())
    }

    /// Both sides are connected: publishes the state, and sends again, as new messages, what
    /// a side that lost its session had not acknowledged.
    async fn start_link(&mut self, local: &mut Client, remote: &mut Client) -> Result<(), Failure> {
        if let Some(topic) = &self.notification
            && !self.config.notifications_local_only
        {
            remote
                .send_publish(state_message(topic, true))
                .await
                .map_err(Failure::Remote)?;
        }
        let address = self.address_text();
        let present = remote.connack().session_present;
        tracing::info!(
            "bridge {}: connected to {address} as {} (MQTT {}{})",
            self.config.name,
            self.remote_options.client_id,
            version_name(remote.version()),
            if present { ", session resumed" } else { "" }
        );
        self.stats.set_connected(address);
        self.notify_local(true);
        if !present {
            for held in self.out.take_for_resend() {
                match remote.send_publish(held.sent.clone()).await {
                    Ok(Some(id)) => self.out.hold(id.get(), held.source, held.sent),
                    Ok(None) => {}
                    Err(e) => return Err(Failure::Remote(e)),
                }
            }
        }
        if !local.connack().session_present {
            for held in self.inbound.take_for_resend() {
                match local.send_publish(held.sent.clone()).await {
                    Ok(Some(id)) => self.inbound.hold(id.get(), held.source, held.sent),
                    Ok(None) => {}
                    Err(e) => return Err(Failure::Local(e)),
                }
            }
        }
        Ok(())
    }

    /// Carries messages both ways until one side fails or the bridge stops.
    async fn carry(&mut self, local: &mut Client, remote: &mut Client) -> End {
        let lazy = self.config.start_type == BridgeStart::Lazy;
        let idle = tokio::time::sleep(self.config.idle_timeout);
        tokio::pin!(idle);
        let switch = CancellationToken::new();
        let _probe = self.probe_main_address(&switch);
        loop {
            enum Step {
                Local(Result<Event, ClientError>),
                Remote(Result<Event, ClientError>),
            }
            // Not biased: a busy side must not starve the other one's acknowledgements.
            let step = tokio::select! {
                () = self.stop.cancelled() => return End::Stop,
                () = switch.cancelled() => return End::Switch,
                () = &mut idle, if lazy => {
                    if self.out.len() == 0 && self.inbound.len() == 0 {
                        return End::Idle;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + self.config.idle_timeout);
                    continue;
                }
                event = local.next_event() => Step::Local(event),
                event = remote.next_event() => Step::Remote(event),
            };
            let result = match step {
                Step::Local(Ok(event)) => self.on_event(Way::Out, event, local, remote).await,
                Step::Remote(Ok(event)) => self.on_event(Way::In, event, remote, local).await,
                Step::Local(Err(e)) => Err(Failure::Local(e)),
                Step::Remote(Err(e)) => Err(Failure::Remote(e)),
            };
            if let Err(failure) = result {
                return End::Lost(failure.describe());
            }
            if lazy {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + self.config.idle_timeout);
            }
        }
    }

    /// While connected to a secondary address with `round_robin false`, tries the main one
    /// now and then, and cancels `switch` once it answers. The task ends with the guard.
    fn probe_main_address(&self, switch: &CancellationToken) -> Option<AbortOnDrop> {
        if self.config.round_robin || self.address == 0 {
            return None;
        }
        let main = self.config.addresses[0].clone();
        let every = self.config.restart_cap.max(Duration::from_secs(1));
        let switch = switch.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let attempt = tokio::net::TcpStream::connect((main.host.as_str(), main.port));
                if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
                    switch.cancel();
                    return;
                }
            }
        });
        Some(AbortOnDrop(task))
    }

    /// Handles an event of the `from` side of `way`: a message is carried to the `to` side
    /// (and acknowledged to `from` once `to` has it); an acknowledgement from `from` completes
    /// a message carried the other way, which is then acknowledged to its own source.
    async fn on_event(
        &mut self,
        way: Way,
        event: Event,
        from: &mut Client,
        to: &mut Client,
    ) -> Result<(), Failure> {
        match event {
            Event::Message(p) => {
                if self.flow(way).holds_source(p.packet_id) {
                    return Ok(()); // sent again by its source; already on its way
                }
                let identifier = p.properties.subscription_identifiers.first().copied();
                let route = match way {
                    Way::Out => self.routes.outgoing(&p.topic, identifier),
                    Way::In => self.routes.incoming(&p.topic, identifier),
                };
                let Some((topic, cap)) = route else {
                    self.drop_message(&p, way.unrouted());
                    from.ack(&p).await.map_err(|e| way.source_failed(e))?;
                    return Ok(());
                };
                let sent = carried(&p, topic, cap);
                match to.send_publish(sent.clone()).await {
                    Ok(Some(id)) => self.flow(way).hold(id.get(), p, sent),
                    Ok(None) => {
                        self.forwarded(way).fetch_add(1, Relaxed);
                        from.ack(&p).await.map_err(|e| way.source_failed(e))?;
                    }
                    Err(ClientError::Encode(e)) => {
                        self.drop_message(&p, &format!("{}: {e}", way.unsendable()));
                        from.ack(&p).await.map_err(|e| way.source_failed(e))?;
                    }
                    Err(e) => return Err(way.destination_failed(e)),
                }
            }
            Event::Acked { packet_id, reason } => {
                // `from` acknowledged a message carried to it, the other way.
                let back = way.reverse();
                if let Some(held) = self.flow(back).release(packet_id.get()) {
                    if reason.is_error() {
                        let why = format!("{}: {reason}", back.refused());
                        self.drop_message(&held.sent, &why);
                    } else {
                        self.forwarded(back).fetch_add(1, Relaxed);
                    }
                    to.ack(&held.source)
                        .await
                        .map_err(|e| way.destination_failed(e))?;
                }
            }
            Event::SubAck(_) | Event::UnsubAck(_) => {}
        }
        Ok(())
    }

    /// The messages carried `way`.
    fn flow(&mut self, way: Way) -> &mut Flow {
        match way {
            Way::Out => &mut self.out,
            Way::In => &mut self.inbound,
        }
    }

    /// The count of messages carried `way`.
    fn forwarded(&self, way: Way) -> &std::sync::atomic::AtomicU64 {
        match way {
            Way::Out => &self.stats.forwarded_out,
            Way::In => &self.stats.forwarded_in,
        }
    }

    fn drop_message(&self, p: &Publish, why: &str) {
        self.stats.dropped.fetch_add(1, Relaxed);
        tracing::debug!(
            "bridge {}: message on {} dropped: {why}",
            self.config.name,
            p.topic
        );
    }

    /// Ends a connection pair cleanly: the state "0" on the remote broker (the will goes only
    /// with an unexpected end), DISCONNECT to both; the local session is kept.
    async fn goodbye(&mut self, mut local: Client, mut remote: Client) {
        let notification = self
            .notification
            .clone()
            .filter(|_| !self.config.notifications_local_only);
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            if let Some(topic) = notification
                && let Ok(Some(id)) = remote.send_publish(state_message(&topic, false)).await
            {
                // Its acknowledgement, so that DISCONNECT does not overtake it on a broker
                // that handles them in order anyway, but bounded.
                while let Ok(event) = remote.next_event().await {
                    if matches!(event, Event::Acked { packet_id, .. } if packet_id == id) {
                        break;
                    }
                }
            }
            let _ = remote.disconnect().await;
        })
        .await;
        let _ = local.flush().await;
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, local.disconnect()).await;
        self.notify_local(false);
        self.stats.set_state(BridgeState::Connecting);
    }

    /// Publishes the bridge's state on this broker (retained).
    fn notify_local(&self, connected: bool) {
        if let Some(topic) = &self.notification {
            let _ = self.broker.publish_internal(
                ByteString::from(topic.as_str()),
                Bytes::from_static(if connected { b"1" } else { b"0" }),
                QoS::AtLeastOnce,
                true,
                std::time::Instant::now(),
            );
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The message `p` as carried to the other side on `topic`: QoS at most `cap`, RETAIN kept,
/// the MQTT 5 properties of the message kept (not those of its delivery: topic alias,
/// subscription identifiers).
fn carried(p: &Publish, topic: String, cap: QoS) -> Publish {
    Publish {
        dup: false,
        qos: p.qos.min(cap),
        retain: p.retain,
        topic: ByteString::from(topic),
        packet_id: None,
        properties: PublishProperties {
            topic_alias: None,
            subscription_identifiers: Vec::new(),
            ..p.properties.clone()
        },
        payload: p.payload.clone(),
    }
}

/// The retained state message: "1" connected, "0" not.
fn state_message(topic: &str, connected: bool) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: ByteString::from(topic),
        packet_id: None,
        properties: PublishProperties::default(),
        payload: Bytes::from_static(if connected { b"1" } else { b"0" }),
    }
}

fn version_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V31 => "3.1",
        ProtocolVersion::V311 => "3.1.1",
        ProtocolVersion::V5 => "5",
    }
}

/// The options of the connection to the remote broker (host and port filled per address).
fn remote_options(
    config: &BridgeConfig,
    client_id: &str,
    notification: Option<&str>,
) -> Result<ConnectOptions, String> {
    let mut o = ConnectOptions::new("", 0, client_id, config.protocol);
    o.clean_start = config.clean_session;
    o.keep_alive = u16::try_from(config.keep_alive.as_secs()).unwrap_or(u16::MAX);
    o.username.clone_from(&config.remote_username);
    o.password = config
        .remote_password
        .as_ref()
        .map(|p| Bytes::from(p.clone().into_bytes()));
    o.manual_acks = true;
    // MQTT 3.x: announce a bridge (Mosquitto's `try_private`), so that the remote broker does
    // not send back what the bridge publishes there.
    o.bridge = config.try_private && !config.protocol.is_v5();
    if config.protocol.is_v5() {
        o.receive_maximum = Some(WINDOW);
        // The remote keeps the bridge's session as long as it can, unless it is clean.
        o.session_expiry = (!config.clean_session).then_some(u32::MAX);
    }
    if let Some(topic) = notification
        && !config.notifications_local_only
    {
        o.will = Some(LastWill {
            topic: ByteString::from(topic),
            payload: Bytes::from_static(b"0"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: tern_codec::WillProperties::default(),
        });
    }
    o.tls = match &config.tls {
        None => None,
        Some(tls) => Some(tls_options(tls)?),
    };
    Ok(o)
}

fn tls_options(tls: &crate::config::BridgeTls) -> Result<TlsOptions, String> {
    let min_version = match tls.min_version.as_deref() {
        Some("tlsv1.3") => tern_client::MinTlsVersion::Tls13,
        _ => tern_client::MinTlsVersion::Tls12,
    };
    let files = TlsFiles {
        cafile: tls.cafile.clone(),
        capath: tls.capath.clone(),
        certfile: tls.certfile.clone(),
        keyfile: tls.keyfile.clone(),
        insecure: tls.insecure,
        min_version,
    };
    let mut options = files.load().map_err(|e| format!("TLS: {e}"))?;
    if let Some(alpn) = &tls.alpn {
        let mut config = (*options.config).clone();
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
        options.config = Arc::new(config);
    }
    Ok(options)
}
