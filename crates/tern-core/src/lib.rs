//! The broker's logic, with no sockets, no clock and no async runtime.
//!
//! [`Broker`] owns the shared state: the session registry, the subscription index, retained
//! messages, delayed wills and the counters. [`Connection`] is the protocol state machine of one
//! network connection; the runtime feeds it decoded packets and the current time and drains the
//! bytes it wants to send and the next deadline it needs (see its driving contract).
//!
//! Nothing here blocks on IO. Locks are `std::sync` locks held for short sections, never across
//! anything that waits; lock order is always subscription index → session (see `broker`).

mod acl;
mod admin;
mod auth;
mod broker;
mod config;
mod connection;
mod memory_store;
mod message;
mod metrics;
mod persistence;
mod rate;
mod retained;
mod session;
mod store;
mod subscriptions;
mod timers;
mod topic;

/// The maps keyed by what clients choose (topic levels, client ids, user names, aliases), on
/// the paths every message or connection takes: a randomly seeded fast hasher rather than
/// SipHash, which cost 11 % of the instructions of routing in the profile (docs/PERFORMANCE.md).
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set with the same hasher as [`FastMap`].
type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

pub use acl::{Access, Acl, AclDiagnostic, Identity};
pub use admin::{
    AdminDisconnect, AdminError, ClientConnection, RouteInfo, SessionInfo, SubscriptionInfo,
};
pub use auth::{AuthDecision, AuthRequest, AuthStage, Grant};
pub use broker::{Broker, Routed, Wake};
pub use config::{AclSlot, BrokerConfig, ListenerPolicy, ProtocolVersions};
pub use connection::{Connection, ConnectionInfo, HANDOFF_AFTER_IDLE};
pub use memory_store::MemoryStore;
pub use message::Message;
pub use metrics::{
    AclAction, COMMIT_BUCKETS, CONNACK_REFUSALS, DropReason, Histogram, HistogramSnapshot, Metrics,
};
pub use rate::{RateExceeded, RateLimit, TokenBucket};
pub use store::{
    DeliveryRecord, DeliveryState, Durability, Lsn, SessionRecord, SessionSnapshot, Snapshot,
    Store, StoreOp, WillRecord,
};
pub use topic::topic_matches;
