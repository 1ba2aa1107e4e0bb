//! Limits the runtime enforces around the protocol state machine: connections (in total, per
//! listener, per source address), the connect rate per source address, and the message rate
//! and bandwidth of each connection.
//!
//! # Refusing a connection
//!
//! A connection over a connection limit or the connect rate is refused, with a CONNACK where
//! that is cheap: on a plain MQTT listener (TCP or Unix socket) the refusal waits (at most [`REFUSAL_DEADLINE`]) for
//! the client's CONNECT and answers it with CONNACK 0x97 (Quota exceeded) or 0x9F (Connection
//! rate exceeded) for MQTT 5, return code 3 (Server unavailable) for MQTT 3.x, then closes. A
//! client then knows why, instead of seeing its connection reset. Refusals run in at most
//! [`REFUSAL_SLOTS`] tasks at once; beyond that, and on TLS listeners (where answering would
//! first cost a TLS handshake, the most expensive step), the connection is closed at accept
//! without a word. A flood therefore costs the broker no more than a bounded number of short
//! refusals on top of closing sockets.
//!
//! Clients of a Unix socket have no address: only the limit on all connections applies to
//! them. Behind the PROXY protocol, the address that counts is the one its header carries.
//!
//! # Memory
//!
//! Per-address state is bounded: connection counts exist only for addresses with open
//! connections, and connect-rate buckets are forgotten once full again (they would behave as new
//! ones). At most [`MAX_TRACKED_ADDRESSES`] buckets are kept; while that many addresses are
//! within their refill time, a new address is refused as over the rate (fail closed).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::{ConnAck, Decoder, Packet, ReasonCode};
use tern_core::{Broker, BrokerConfig, RateExceeded, RateLimit, TokenBucket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Refusals answered with a CONNACK at once; further refused connections are closed at accept.
pub const REFUSAL_SLOTS: usize = 64;
/// How long a refusal waits for the client's CONNECT (less if `connect_timeout` is shorter).
pub const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// Largest CONNECT a refusal reads; a larger one is closed without an answer.
const REFUSAL_MAX_PACKET: u32 = 64 * 1024;
/// How long a refusal keeps reading (and discarding) after its CONNACK, so that unread input
/// does not make the kernel reset the connection before the client has read it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);
/// The most source addresses whose connect rate is tracked at once.
pub const MAX_TRACKED_ADDRESSES: usize = 100_000;
/// Buckets are swept (full ones forgotten) when their number reaches this, or twice the number
/// left by the last sweep, whichever is more.
const SWEEP_AT_LEAST: usize = 1024;
/// At the cap, a sweep is tried at most this often, so that a flood of new addresses does not
/// make every accept walk the whole table.
const SWEEP_AT_CAP_EVERY: Duration = Duration::from_secs(1);

/// Limits on connections, enforced when they are accepted. `None` = no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once across every listener (`limits.max_connections`).
    pub max_connections: Option<usize>,
    /// Connections open at once from one source address (`limits.max_connections_per_ip`).
    pub max_connections_per_ip: Option<usize>,
    /// New connections per source address (`limits.connect_rate`, `limits.connect_burst`).
    pub connect_rate: Option<RateLimit>,
}

impl ConnectionLimits {
    fn is_unlimited(&self) -> bool {
        self.max_connections.is_none()
            && self.max_connections_per_ip.is_none()
            && self.connect_rate.is_none()
    }
}

/// The address a limit counts: an IPv4-mapped IPv6 address is its IPv4 address.
fn source(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[derive(Default)]
struct GateState {
    /// Connections open now, in total.
    total: usize,
    /// Connections open now per address (only addresses with some).
    per_ip: HashMap<IpAddr, usize>,
    /// Connect-rate buckets of addresses that connected recently.
    rates: HashMap<IpAddr, TokenBucket>,
    /// Sweep the buckets when there are this many.
    sweep_at: usize,
    /// When the buckets were last swept at the cap.
    swept_at_cap: Option<Instant>,
}

impl GateState {
    fn sweep(&mut self, now: Instant) {
        self.rates.retain(|_, bucket| !bucket.is_full(now));
        self.sweep_at = (self.rates.len() * 2).max(SWEEP_AT_LEAST);
    }

    /// Takes a connect token for `ip`; false if it has none left (or there is no room to track
    /// it).
    fn take_connect_token(&mut self, limit: &RateLimit, ip: IpAddr, now: Instant) -> bool {
        if let Some(bucket) = self.rates.get_mut(&ip) {
            return bucket.take(1, now).is_ok();
        }
        if self.rates.len() >= self.sweep_at.max(SWEEP_AT_LEAST) {
            self.sweep(now);
        }
        if self.rates.len() >= MAX_TRACKED_ADDRESSES {
            if self
                .swept_at_cap
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_AT_CAP_EVERY)
            {
                self.swept_at_cap = Some(now);
                self.sweep(now);
            }
            if self.rates.len() >= MAX_TRACKED_ADDRESSES {
                return false;
            }
        }
        let mut bucket = TokenBucket::new(limit, now);
        let taken = bucket.take(1, now).is_ok();
        self.rates.insert(ip, bucket);
        taken
    }
}

/// Admits or refuses new connections against [`ConnectionLimits`]; shared by every listener.
///
/// The limits can be replaced while the server runs ([`Gate::set_limits`], on reload). New
/// values apply to the counts kept so far; a limit switched on where there was none counts the
/// connections accepted from then on (counting every connection all the time, in case a limit
/// appears, would cost each connection its place in the counts).
pub(crate) struct Gate {
    limits: arc_swap::ArcSwap<ConnectionLimits>,
    state: Mutex<GateState>,
    refusals: Arc<Semaphore>,
}

impl Gate {
    pub(crate) fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            state: Mutex::new(GateState::default()),
            refusals: Arc::new(Semaphore::new(REFUSAL_SLOTS)),
        })
    }

    /// Replaces the limits; connections admitted later are checked against `limits`.
    pub(crate) fn set_limits(&self, limits: ConnectionLimits) {
        let mut st = self.lock();
        if limits.connect_rate != self.limits.load().connect_rate {
            // Buckets of the old rate would keep its burst.
            st.rates.clear();
        }
        self.limits.store(Arc::new(limits));
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> ConnectionLimits {
        ConnectionLimits::clone(&self.limits.load())
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a new connection from `ip`, or says why it is refused: 0x97 (Quota exceeded) or
    /// 0x9F (Connection rate exceeded). The connection counts until the returned guard is
    /// dropped.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, ReasonCode> {
        let limits = self.limits.load();
        if limits.is_unlimited() {
            return Ok(Admitted {
                gate: None,
                ip: None,
            });
        }
        let ip = source(ip);
        let mut st = self.lock();
        if limits.max_connections.is_some_and(|max| st.total >= max) {
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        if let Some(max) = limits.max_connections_per_ip
            && st.per_ip.get(&ip).is_some_and(|open| *open >= max)
        {
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        // Only connections the counts let in use a token.
        if let Some(limit) = &limits.connect_rate
            && !st.take_connect_token(limit, ip, Instant::now())
        {
            return Err(ReasonCode::CONNECTION_RATE_EXCEEDED);
        }
        // The address is kept only when it is counted, so that its release matches.
        let counted_ip = limits.max_connections_per_ip.is_some().then_some(ip);
        if let Some(ip) = counted_ip {
            *st.per_ip.entry(ip).or_insert(0) += 1;
        }
        st.total += 1;
        Ok(Admitted {
            gate: Some(self.clone()),
            ip: counted_ip,
        })
    }

    /// Counts a new connection without an address (a Unix socket client): only the limit on
    /// all connections applies to it.
    pub(crate) fn admit_unaddressed(self: &Arc<Self>) -> Result<Admitted, ReasonCode> {
        let limits = self.limits.load();
        if limits.max_connections.is_none() {
            return Ok(Admitted {
                gate: None,
                ip: None,
            });
        }
        let mut st = self.lock();
        if limits.max_connections.is_some_and(|max| st.total >= max) {
            return Err(ReasonCode::QUOTA_EXCEEDED);
        }
        st.total += 1;
        Ok(Admitted {
            gate: Some(self.clone()),
            ip: None,
        })
    }

    /// Frees a connection's place; `ip` is its address if it was counted per address.
    fn release(&self, ip: Option<IpAddr>) {
        let mut st = self.lock();
        st.total = st.total.saturating_sub(1);
        if let Some(ip) = ip
            && let Some(open) = st.per_ip.get_mut(&ip)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                st.per_ip.remove(&ip);
            }
        }
    }

    /// Refuses an accepted connection with `reason`: answers its CONNECT with a CONNACK when a
    /// refusal slot is free and the listener is plain MQTT, else closes it at once.
    pub(crate) fn refuse<S>(&self, stream: S, peer: impl fmt::Display, refusal: Refusal<'_>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tracing::debug!(
            %peer,
            listener = %refusal.listener,
            reason = %refusal.reason,
            "connection refused"
        );
        if refusal.tls {
            return; // dropping the stream closes it
        }
        let Ok(slot) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        let deadline = REFUSAL_DEADLINE.min(refusal.connect_timeout);
        let reason = refusal.reason;
        let cancel = refusal.cancel.clone();
        let broker = refusal.broker.clone();
        refusal.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = answer_refused(stream, reason, deadline, &broker) => {}
            }
            drop(slot);
        });
    }
}

/// What [`Gate::refuse`] needs to know about the refused connection.
pub(crate) struct Refusal<'a> {
    /// The reason code of the CONNACK (MQTT 5; 3.x gets return code 3).
    pub(crate) reason: ReasonCode,
    /// Whether to close without an answer: TLS and WebSocket listeners, and PROXY protocol
    /// listeners before the header.
    pub(crate) tls: bool,
    /// The listener's address, for the log.
    pub(crate) listener: &'a dyn fmt::Display,
    /// The broker's `connect_timeout`, which bounds the wait for CONNECT too.
    pub(crate) connect_timeout: Duration,
    /// Server shutdown.
    pub(crate) cancel: &'a CancellationToken,
    /// The server's tasks, so that shutdown waits for refusals too.
    pub(crate) tracker: &'a TaskTracker,
    /// Whose counters the refusal's packets count in, as the packets of admitted connections.
    pub(crate) broker: &'a Broker,
}

/// A counted connection; dropping it frees its place.
pub(crate) struct Admitted {
    gate: Option<Arc<Gate>>,
    ip: Option<IpAddr>,
}

impl Admitted {
    /// Whether the connection counts under a limit (there is something to release).
    pub(crate) fn is_counted(&self) -> bool {
        self.gate.is_some()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(self.ip);
        }
    }
}

/// Reads the client's CONNECT (within `deadline`) and answers it with a CONNACK carrying
/// `reason`, then closes. Anything other than a CONNECT is closed without an answer.
async fn answer_refused<S>(stream: S, reason: ReasonCode, deadline: Duration, broker: &Broker)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(256);
    let mut decoder = Decoder::new(REFUSAL_MAX_PACKET);
    let version = tokio::time::timeout(deadline, async {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Packet::Connect(c))) => {
                    broker
                        .metrics()
                        .record_packet_received(tern_codec::PacketType::Connect);
                    return Some(c.protocol);
                }
                Ok(Some(_)) | Err(_) => return None,
                Ok(None) => {}
            }
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .flatten();
    let Some(version) = version else { return };
    let mut out = BytesMut::new();
    let connack = Packet::ConnAck(ConnAck {
        reason,
        ..ConnAck::default()
    });
    if connack.encode(version, &mut out).is_err() {
        return;
    }
    let metrics = broker.metrics();
    metrics.record_packet_sent(tern_codec::PacketType::ConnAck);
    metrics.record_connack_refused(reason);
    let _ = tokio::time::timeout(deadline, async {
        writer.write_all(&out).await?;
        writer.shutdown().await
    })
    .await;
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        loop {
            buf.clear();
            match reader.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Per connection: message rate and bandwidth of incoming PUBLISH packets.

/// The message rate and bandwidth buckets of one connection. Only built when a limit is set,
/// so that a broker without these limits pays one branch per packet and no clock read.
pub(crate) struct PublishLimiter {
    messages: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
    action: RateExceeded,
}

/// The message rate and bandwidth of new connections when a reload changed them from the
/// broker's configuration (`None`: the broker's configuration applies). Read once per
/// connection, when it starts; connections already open keep the limits they started with.
static PUBLISH_RATES: arc_swap::ArcSwapOption<PublishRates> =
    arc_swap::ArcSwapOption::const_empty();

/// `limits.message_rate`, `limits.bandwidth` and `limits.rate_exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishRates {
    pub(crate) message_rate: Option<RateLimit>,
    pub(crate) bandwidth: Option<RateLimit>,
    pub(crate) action: RateExceeded,
}

impl PublishRates {
    /// The rates `config` sets.
    pub(crate) fn of(config: &BrokerConfig) -> Self {
        Self {
            message_rate: config.message_rate,
            bandwidth: config.bandwidth,
            action: config.rate_exceeded,
        }
    }
}

/// Replaces the message rate and bandwidth of connections that start from now on.
pub(crate) fn set_publish_rates(rates: PublishRates) {
    PUBLISH_RATES.store(Some(Arc::new(rates)));
}

impl PublishLimiter {
    /// The limiter for a new connection; `None` when neither limit is set. The limits are the
    /// broker's (`config`), unless a reload has replaced them ([`set_publish_rates`]).
    pub(crate) fn new(config: &BrokerConfig, now: Instant) -> Option<Box<Self>> {
        let rates = PUBLISH_RATES
            .load()
            .as_deref()
            .copied()
            .unwrap_or_else(|| PublishRates::of(config));
        if rates.message_rate.is_none() && rates.bandwidth.is_none() {
            return None;
        }
        Some(Box::new(Self {
            messages: rates.message_rate.map(|l| TokenBucket::new(&l, now)),
            bytes: rates.bandwidth.map(|l| TokenBucket::new(&l, now)),
            action: rates.action,
        }))
    }

    /// What to do when a PUBLISH has to wait.
    pub(crate) fn action(&self) -> RateExceeded {
        self.action
    }

    /// Pays for a PUBLISH packet of `len` bytes if both buckets allow it at `now`; else returns
    /// the instant from which they will (nothing is paid then).
    pub(crate) fn admit(&mut self, len: usize, now: Instant) -> Result<(), Instant> {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        let wait_messages = self.messages.as_mut().and_then(|b| b.ready_at(1, now));
        let wait_bytes = self.bytes.as_mut().and_then(|b| b.ready_at(len, now));
        match (wait_messages, wait_bytes) {
            (None, None) => {
                if let Some(b) = &mut self.messages {
                    b.spend(1);
                }
                if let Some(b) = &mut self.bytes {
                    b.spend(len);
                }
                Ok(())
            }
            (a, b) => Err(a.max(b).unwrap_or(now)),
        }
    }
}

/// The length of the PUBLISH packet at the start of `buf`, if one is there whole.
pub(crate) fn whole_publish_len(decoder: &Decoder, buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    if first >> 4 != 3 {
        return None;
    }
    match decoder.frame_len(buf) {
        Ok(Some(len)) if buf.len() >= len => Some(len),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn per_ip_and_total_counts_are_released() {
        let gate = Gate::new(ConnectionLimits {
            max_connections: Some(3),
            max_connections_per_ip: Some(2),
            connect_rate: None,
        });
        let a1 = gate.admit(ip(1)).expect("first");
        let a2 = gate.admit(ip(1)).expect("second");
        assert_eq!(gate.admit(ip(1)).err(), Some(ReasonCode::QUOTA_EXCEEDED));
        let b1 = gate.admit(ip(2)).expect("other address");
        assert_eq!(gate.admit(ip(3)).err(), Some(ReasonCode::QUOTA_EXCEEDED));
        drop(a1);
        let a3 = gate.admit(ip(1)).expect("freed");
        drop((a2, a3, b1));
        let st = gate.lock();
        assert_eq!(st.total, 0);
        assert!(st.per_ip.is_empty(), "no entry left for closed connections");
    }

    #[test]
    fn a_connection_refused_by_a_count_uses_no_connect_token() {
        let gate = Gate::new(ConnectionLimits {
            max_connections_per_ip: Some(1),
            connect_rate: Some(RateLimit {
                amount: 1,
                per: Duration::from_secs(3600),
                burst: 2,
            }),
            ..ConnectionLimits::default()
        });
        let first = gate.admit(ip(1)).expect("first token");
        assert_eq!(gate.admit(ip(1)).err(), Some(ReasonCode::QUOTA_EXCEEDED));
        drop(first);
        let second = gate.admit(ip(1)).expect("second token");
        drop(second);
        assert_eq!(
            gate.admit(ip(1)).err(),
            Some(ReasonCode::CONNECTION_RATE_EXCEEDED)
        );
    }

    #[test]
    fn connections_without_address_count_only_in_the_total() {
        let gate = Gate::new(ConnectionLimits {
            max_connections: Some(2),
            max_connections_per_ip: Some(1),
            connect_rate: Some(RateLimit {
                amount: 1,
                per: Duration::from_secs(3600),
                burst: 1,
            }),
        });
        let local = gate.admit_unaddressed().expect("first");
        let remote = gate.admit(ip(1)).expect("an address counts apart");
        assert_eq!(
            gate.admit_unaddressed().err(),
            Some(ReasonCode::QUOTA_EXCEEDED)
        );
        drop(local);
        // No per-address count or connect rate applies to them.
        let again = gate.admit_unaddressed().expect("freed");
        drop((again, remote));
        let st = gate.lock();
        assert_eq!(st.total, 0);
        assert!(st.per_ip.is_empty());
        drop(st);
        let unlimited = Gate::new(ConnectionLimits::default());
        let _many: Vec<_> = (0..3)
            .map(|_| unlimited.admit_unaddressed().expect("no limit"))
            .collect();
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let gate = Gate::new(ConnectionLimits {
            max_connections_per_ip: Some(1),
            ..ConnectionLimits::default()
        });
        let _a = gate.admit("127.0.0.1".parse().expect("ip")).expect("first");
        assert_eq!(
            gate.admit("::ffff:127.0.0.1".parse().expect("ip")).err(),
            Some(ReasonCode::QUOTA_EXCEEDED)
        );
    }

    #[test]
    fn connect_rate_buckets_are_bounded_and_forgotten_once_full() {
        let limit = RateLimit {
            amount: 1,
            per: Duration::from_secs(1),
            burst: 1,
        };
        let t0 = Instant::now();
        let mut st = GateState::default();
        assert!(st.take_connect_token(&limit, ip(1), t0));
        assert!(!st.take_connect_token(&limit, ip(1), t0));
        for n in 2..5000 {
            assert!(st.take_connect_token(&limit, ip(n), t0));
        }
        assert!(st.rates.len() <= 5000);
        // A second later every bucket is full again: the next sweep forgets them all.
        let later = t0 + Duration::from_secs(1);
        st.sweep(later);
        assert!(st.rates.is_empty());
        assert!(st.take_connect_token(&limit, ip(1), later));
    }

    #[test]
    fn connect_rate_table_is_capped() {
        let limit = RateLimit {
            amount: 1,
            per: Duration::from_secs(3600),
            burst: 1,
        };
        let t0 = Instant::now();
        let mut st = GateState::default();
        for n in 0..MAX_TRACKED_ADDRESSES as u32 {
            assert!(st.take_connect_token(&limit, ip(n), t0));
        }
        // Full of addresses still within their refill time: new ones are refused.
        assert!(!st.take_connect_token(&limit, ip(u32::MAX), t0));
        assert_eq!(st.rates.len(), MAX_TRACKED_ADDRESSES);
    }

    #[test]
    fn publish_limiter_pays_both_buckets_or_neither() {
        let t0 = Instant::now();
        let config = BrokerConfig {
            message_rate: Some(RateLimit {
                amount: 10,
                per: Duration::from_secs(1),
                burst: 2,
            }),
            bandwidth: Some(RateLimit {
                amount: 100,
                per: Duration::from_secs(1),
                burst: 100,
            }),
            ..BrokerConfig::default()
        };
        let mut l = PublishLimiter::new(&config, t0).expect("limits set");
        assert_eq!(l.admit(60, t0), Ok(()));
        // Bytes short (40 left, 60 needed): 0.2 s; messages would pass.
        assert_eq!(l.admit(60, t0), Err(t0 + Duration::from_millis(200)));
        assert_eq!(l.admit(10, t0), Ok(()));
        // Messages short now (burst 2 spent): 0.1 s.
        assert_eq!(l.admit(10, t0), Err(t0 + Duration::from_millis(100)));
        assert!(PublishLimiter::new(&BrokerConfig::default(), t0).is_none());
    }

    #[test]
    fn whole_publish_len_needs_a_whole_publish() {
        let decoder = Decoder::new(1024);
        assert_eq!(
            whole_publish_len(&decoder, &[0x30, 0x03, 0, 1, b'a']),
            Some(5)
        );
        assert_eq!(whole_publish_len(&decoder, &[0x32, 0x05, 0, 1, b'a']), None);
        assert_eq!(whole_publish_len(&decoder, &[0xC0, 0x00]), None);
        assert_eq!(whole_publish_len(&decoder, &[]), None);
    }
}
