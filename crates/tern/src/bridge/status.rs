//! What each bridge shows: its state, the remote address in use, since when it is connected,
//! and its counters (broker-wide atomics, one set per bridge). The bridges of a broker are
//! kept in a process-wide registry keyed by the broker, which the views read: the metrics
//! snapshot (Prometheus, JSON stats), `GET /api/v1/bridges`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;
use tern_core::Broker;

/// Where a bridge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BridgeState {
    /// Trying to connect (or waiting before the next attempt).
    Connecting,
    /// Both sides connected; messages are carried.
    Connected,
    /// A `lazy` bridge waiting for enough messages to connect.
    Idle,
    /// Ended: a `once` bridge whose connection dropped, or a bridge being shut down.
    Stopped,
}

impl BridgeState {
    /// The state's name, as the admin API shows it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Idle => "idle",
            Self::Stopped => "stopped",
        }
    }
}

/// The live status of one bridge, shared by its task and the views.
#[derive(Debug)]
pub(crate) struct BridgeStats {
    /// The broker the bridge belongs to (the address of its metrics, stable while it lives).
    broker: usize,
    pub(crate) name: String,
    pub(crate) local_client_id: String,
    pub(crate) remote_client_id: String,
    /// Messages carried from this broker to the remote one.
    pub(crate) forwarded_out: AtomicU64,
    /// Messages carried from the remote broker to this one.
    pub(crate) forwarded_in: AtomicU64,
    /// Messages the other side refused (an error reason code), or that matched no route.
    pub(crate) dropped: AtomicU64,
    /// Connections made to the remote broker.
    pub(crate) connects: AtomicU64,
    state: Mutex<Live>,
}

#[derive(Debug, Clone)]
struct Live {
    state: BridgeState,
    address: Option<String>,
    connected_since: Option<SystemTime>,
    last_error: Option<String>,
}

/// Everything the views show of one bridge at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BridgeSnapshot {
    pub(crate) name: String,
    pub(crate) state: BridgeState,
    pub(crate) address: Option<String>,
    pub(crate) connected_since: Option<SystemTime>,
    pub(crate) last_error: Option<String>,
    pub(crate) local_client_id: String,
    pub(crate) remote_client_id: String,
    pub(crate) forwarded_out: u64,
    pub(crate) forwarded_in: u64,
    pub(crate) dropped: u64,
    pub(crate) connects: u64,
    /// Messages waiting in the bridge's session on this broker for the remote side (queued
    /// and in flight).
    pub(crate) queued: u64,
}

impl BridgeSnapshot {
    /// Whether both sides are connected.
    pub(crate) fn connected(&self) -> bool {
        self.state == BridgeState::Connected
    }
}

/// One bridge as `GET /api/v1/bridges` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct BridgeStatus {
    /// The bridge's name (`connection NAME`).
    pub(crate) name: String,
    /// `connecting`, `connected`, `idle` or `stopped`.
    pub(crate) state: &'static str,
    /// The remote address in use (`HOST:PORT`), or last tried.
    pub(crate) remote_address: Option<String>,
    /// Since when it is connected (RFC 3339, UTC).
    pub(crate) connected_since: Option<String>,
    /// Why the last connection attempt failed or the connection dropped.
    pub(crate) last_error: Option<String>,
    /// The client id of its session on this broker.
    pub(crate) local_client_id: String,
    /// Its client id on the remote broker.
    pub(crate) remote_client_id: String,
    /// Messages carried to the remote broker.
    pub(crate) messages_out: u64,
    /// Messages carried from the remote broker.
    pub(crate) messages_in: u64,
    /// Messages dropped (refused by the other side, or matching no topic of the bridge).
    pub(crate) messages_dropped: u64,
    /// Messages waiting on this broker for the remote side.
    pub(crate) queued: u64,
    /// Connections made to the remote broker since the start.
    pub(crate) connects: u64,
}

impl From<&BridgeSnapshot> for BridgeStatus {
    fn from(s: &BridgeSnapshot) -> Self {
        Self {
            name: s.name.clone(),
            state: s.state.name(),
            remote_address: s.address.clone(),
            connected_since: s.connected_since.map(crate::admin::rfc3339),
            last_error: s.last_error.clone(),
            local_client_id: s.local_client_id.clone(),
            remote_client_id: s.remote_client_id.clone(),
            messages_out: s.forwarded_out,
            messages_in: s.forwarded_in,
            messages_dropped: s.dropped,
            queued: s.queued,
            connects: s.connects,
        }
    }
}

/// The identity of a broker in the registry.
fn broker_key(broker: &Broker) -> usize {
    std::ptr::from_ref(broker.metrics()) as usize
}

/// Every running bridge of the process.
static REGISTRY: Mutex<Vec<Arc<BridgeStats>>> = Mutex::new(Vec::new());

impl BridgeStats {
    /// Registers a new bridge of `broker`; [`BridgeStats::unregister`] takes it out again.
    pub(crate) fn register(
        broker: &Broker,
        name: &str,
        local_client_id: &str,
        remote_client_id: &str,
    ) -> Arc<Self> {
        let stats = Arc::new(Self {
            broker: broker_key(broker),
            name: name.to_owned(),
            local_client_id: local_client_id.to_owned(),
            remote_client_id: remote_client_id.to_owned(),
            forwarded_out: AtomicU64::new(0),
            forwarded_in: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            state: Mutex::new(Live {
                state: BridgeState::Connecting,
                address: None,
                connected_since: None,
                last_error: None,
            }),
        });
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry.push(stats.clone());
        // Bridges of one broker in name order.
        registry.sort_by(|a, b| (a.broker, &a.name).cmp(&(b.broker, &b.name)));
        stats
    }

    /// Takes this bridge out of the registry.
    pub(crate) fn unregister(self: &Arc<Self>) {
        REGISTRY
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| !Arc::ptr_eq(s, self));
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Trying `address`.
    pub(crate) fn set_connecting(&self, address: Option<String>) {
        let mut live = self.live();
        live.state = BridgeState::Connecting;
        if address.is_some() {
            live.address = address;
        }
        live.connected_since = None;
    }

    /// Connected to `address`.
    pub(crate) fn set_connected(&self, address: String) {
        self.connects.fetch_add(1, Relaxed);
        let mut live = self.live();
        live.state = BridgeState::Connected;
        live.address = Some(address);
        live.connected_since = Some(SystemTime::now());
        live.last_error = None;
    }

    /// In another state than connected.
    pub(crate) fn set_state(&self, state: BridgeState) {
        let mut live = self.live();
        live.state = state;
        if state != BridgeState::Connected {
            live.connected_since = None;
        }
    }

    /// Why the last attempt failed, or the connection dropped.
    pub(crate) fn set_error(&self, error: String) {
        self.live().last_error = Some(error);
    }

    fn snapshot(&self, broker: &Broker) -> BridgeSnapshot {
        let live = self.live().clone();
        let queued = broker.session(&self.local_client_id).map_or(0, |s| {
            u64::try_from(s.queued + s.inflight).unwrap_or(u64::MAX)
        });
        BridgeSnapshot {
            name: self.name.clone(),
            state: live.state,
            address: live.address,
            connected_since: live.connected_since,
            last_error: live.last_error,
            local_client_id: self.local_client_id.clone(),
            remote_client_id: self.remote_client_id.clone(),
            forwarded_out: self.forwarded_out.load(Relaxed),
            forwarded_in: self.forwarded_in.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            connects: self.connects.load(Relaxed),
            queued,
        }
    }
}

/// The bridges of `broker` now, in name order.
pub(crate) fn snapshots(broker: &Broker) -> Vec<BridgeSnapshot> {
    let key = broker_key(broker);
    let bridges: Vec<Arc<BridgeStats>> = REGISTRY
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|s| s.broker == key)
        .cloned()
        .collect();
    bridges.iter().map(|s| s.snapshot(broker)).collect()
}

/// The bridges of `broker` as `GET /api/v1/bridges` lists them.
pub(crate) fn statuses(broker: &Broker) -> Vec<BridgeStatus> {
    snapshots(broker).iter().map(BridgeStatus::from).collect()
}
