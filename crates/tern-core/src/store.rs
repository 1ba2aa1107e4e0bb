//! Durable state: what the broker asks a store to keep, and how it learns that it was kept.
//!
//! The broker describes every change to its durable state as a [`StoreOp`] and hands it to the
//! [`Store`], which gives it a sequence number ([`Lsn`]) and applies operations in that order,
//! many to one transaction (group commit). Acknowledgements that promise durability (PUBACK,
//! PUBREC, PUBCOMP) and the sends that exactly-once delivery depends on wait until the store
//! reports their sequence number [`Durability::Durable`].
//!
//! Only what must survive a crash is described: persistent sessions (Session Expiry Interval
//! above 0; clean session 0 in 3.1.x) with their subscriptions, QoS 1/2 deliveries and incoming
//! QoS 2 packet ids, their delayed wills, and retained messages.
//!
//! # Ordering
//!
//! Operations on one session are submitted while that session's lock is held, so their
//! sequence numbers follow the order of the changes they describe: a delivery is inserted
//! before it is updated or deleted.

use std::sync::Arc;
use std::time::Instant;

use tern_codec::{ByteString, QoS, SubscriptionOptions};

use crate::Message;
use crate::broker::Wake;

/// A sequence number given to each operation; 0 means "nothing to wait for".
pub type Lsn = u64;

/// Where an operation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Not committed yet.
    Pending,
    /// Committed to stable storage (or, with weaker durability settings, as far as configured).
    Durable,
    /// Its commit failed and no later commit has written it yet: whatever depends on it must
    /// not be acknowledged as kept. Stores retry, so a failed operation becomes `Durable` once
    /// a later commit succeeds.
    Failed,
}

/// Where an outgoing QoS 1/2 delivery stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Queued, not sent yet.
    Queued,
    /// Sent with this packet identifier, awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent(u16),
    /// PUBREC received and PUBREL sent, awaiting PUBCOMP.
    Released(u16),
}

/// A QoS 1/2 message on its way to one persistent session.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// The session.
    pub client_id: ByteString,
    /// Its position in the session's delivery order (unique per session).
    pub seq: u64,
    /// The message, shared with every other delivery of it.
    pub message: Arc<Message>,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag of this delivery.
    pub retain: bool,
    /// Subscription identifiers of this delivery.
    pub subscription_identifiers: Box<[u32]>,
    /// The shared subscription it came through, if any.
    pub shared: Option<ByteString>,
    /// How far it got.
    pub state: DeliveryState,
}

/// A Will waiting for its session's connection to end, or for its delay to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillRecord {
    /// Will Topic.
    pub topic: ByteString,
    /// Will Payload.
    pub payload: bytes::Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will Properties (as a message).
    pub properties: tern_codec::PublishProperties,
    /// Will Delay Interval in seconds.
    pub delay_interval: u32,
}

/// The attributes of a persistent session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Client identifier.
    pub client_id: ByteString,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry_interval: u32,
    /// User name of its last connection.
    pub username: Option<ByteString>,
    /// When its last connection ended; `None` while connected. Stores keep wall-clock time.
    pub disconnected_at: Option<Instant>,
    /// A Will waiting for its delay (only while disconnected).
    pub will: Option<WillRecord>,
}

/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum StoreOp {
    /// Creates or replaces a session's attributes (not its subscriptions or deliveries).
    /// Boxed: it is rare and large, and every operation is as large as the largest.
    PutSession(Box<SessionRecord>),
    /// Deletes a session with its subscriptions, deliveries and incoming packet ids.
    DeleteSession {
        /// Client identifier.
        client_id: ByteString,
    },
    /// Adds or replaces a subscription of a session.
    PutSubscription {
        /// Client identifier.
        client_id: ByteString,
        /// The filter as the client wrote it (`$share/...` included).
        filter: ByteString,
        /// Its options, granted QoS included.
        options: SubscriptionOptions,
        /// Its subscription identifier.
        identifier: Option<u32>,
    },
    /// Removes a subscription of a session.
    DeleteSubscription {
        /// Client identifier.
        client_id: ByteString,
        /// The filter as the client wrote it.
        filter: ByteString,
    },
    /// Adds a delivery, or records its new state.
    PutDelivery(DeliveryRecord),
    /// Removes a delivery: acknowledged, expired or dropped.
    DeleteDelivery {
        /// Client identifier.
        client_id: ByteString,
        /// The delivery's sequence number.
        seq: u64,
    },
    /// Records an incoming QoS 2 packet identifier answered with PUBREC.
    AddIncomingQos2 {
        /// Client identifier.
        client_id: ByteString,
        /// Packet identifier.
        packet_id: u16,
    },
    /// Forgets an incoming QoS 2 packet identifier (PUBREL received).
    RemoveIncomingQos2 {
        /// Client identifier.
        client_id: ByteString,
        /// Packet identifier.
        packet_id: u16,
    },
    /// Sets the retained message of its topic.
    PutRetained(Arc<Message>),
    /// Clears the retained message of a topic.
    DeleteRetained {
        /// Topic name.
        topic: ByteString,
    },
}

/// Keeps the broker's durable state. Implementations apply operations in sequence-number order
/// and report progress; they must not block the caller of [`Store::submit`].
pub trait Store: Send + Sync {
    /// Queues `op` and returns its sequence number (greater than every earlier one).
    fn submit(&self, op: StoreOp) -> Lsn;

    /// Where operation `lsn` stands.
    fn durability(&self, lsn: Lsn) -> Durability;

    /// Wakes `waker` once `lsn` is no longer [`Durability::Pending`] (at once if it is not).
    fn notify(&self, lsn: Lsn, waker: Arc<dyn Wake>);

    /// Opens an atomic group: operations submitted until [`Store::end_atomic`] (from any
    /// thread) are committed together, never split across commits, even when groups of other
    /// threads overlap it in time (their operations interleave with its own). Groups are short
    /// (one PUBLISH routed) and may nest. Returns a token for `end_atomic`.
    ///
    /// May wait until the groups other threads have open are closed (so that groups that keep
    /// overlapping cannot hold the writer back): call it holding no lock that code inside a
    /// group may take. A group nested in one the calling thread has open never waits.
    fn begin_atomic(&self) -> Lsn {
        0
    }

    /// Closes a group opened by [`Store::begin_atomic`].
    fn end_atomic(&self, group: Lsn) {
        let _ = group;
    }
}

/// A session as recovered from a store.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Its attributes.
    pub record: SessionRecord,
    /// Its subscriptions: filter, options, identifier.
    pub subscriptions: Vec<(ByteString, SubscriptionOptions, Option<u32>)>,
    /// Its deliveries in sequence order.
    pub deliveries: Vec<DeliveryRecord>,
    /// Incoming QoS 2 packet identifiers awaiting PUBREL.
    pub incoming_qos2: Vec<u16>,
}

/// Everything a store holds, for [`crate::Broker::restore`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Persistent sessions.
    pub sessions: Vec<SessionSnapshot>,
    /// Retained messages.
    pub retained: Vec<Arc<Message>>,
}
