//! Session state: what the broker keeps for a client id across connections (MQTT §4.1).

use std::borrow::Borrow;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tern_codec::{ByteString, PacketId, QoS, SubscriptionOptions};

use crate::Message;
use crate::broker::Wake;
use crate::store::{DeliveryRecord, DeliveryState, Lsn, SessionRecord, WillRecord};

/// The broker-wide budget of queued payload bytes, shared by every session, so that many
/// sessions each within their own limit cannot exhaust memory together.
#[derive(Debug, Default)]
pub(crate) struct QueueBudget {
    used: AtomicUsize,
    /// 0 = no limit.
    limit: usize,
    /// Deliveries queued in all sessions (metrics).
    queued: AtomicUsize,
    /// Deliveries sent and not yet acknowledged in all sessions, and their bytes (metrics).
    inflight: AtomicUsize,
    inflight_bytes: AtomicUsize,
}

impl QueueBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    fn fits(&self, bytes: usize) -> bool {
        self.limit == 0 || self.used.load(Ordering::Relaxed) + bytes <= self.limit
    }

    /// Bytes queued in all sessions.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Deliveries queued in all sessions.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Deliveries in flight (sent, not yet acknowledged) in all sessions, and their bytes.
    pub(crate) fn inflight(&self) -> (usize, usize) {
        (
            self.inflight.load(Ordering::Relaxed),
            self.inflight_bytes.load(Ordering::Relaxed),
        )
    }

    fn release_inflight(&self, count: usize, bytes: usize) {
        self.inflight.fetch_sub(count, Ordering::Relaxed);
        self.inflight_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One client id's session. The registry, the subscription index and queued deliveries refer to
/// it by `Arc`; its mutable state sits behind one short-held mutex.
pub(crate) struct Session {
    pub(crate) client_id: ByteString,
    /// Mirrors `state.link.is_some()` so that shared-subscription routing can prefer online
    /// members without taking every member's lock.
    online: AtomicBool,
    state: Mutex<SessionState>,
}

impl Session {
    pub(crate) fn new(
        client_id: ByteString,
        expiry_interval: u32,
        budget: Arc<QueueBudget>,
    ) -> Self {
        Self {
            client_id,
            online: AtomicBool::new(false),
            state: Mutex::new(SessionState::new(expiry_interval, budget)),
        }
    }

    /// Locks the state. A panic while the lock was held cannot leave the state half-updated in
    /// a way later users could not cope with, so a poisoned lock is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub(crate) fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }
}

/// A session as the registry holds it: found by its own client id, so that the registry keeps
/// 8 bytes per session rather than a second handle on the id (a 32-byte `ByteString`) beside
/// the session's.
#[derive(Clone)]
pub(crate) struct Registered(pub(crate) Arc<Session>);

impl Registered {
    pub(crate) fn session(&self) -> Arc<Session> {
        self.0.clone()
    }
}

impl PartialEq for Registered {
    fn eq(&self, other: &Self) -> bool {
        *self.0.client_id == *other.0.client_id
    }
}

impl Eq for Registered {}

impl Hash for Registered {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As the `str` it borrows as.
        str::hash(&self.0.client_id, state);
    }
}

impl Borrow<str> for Registered {
    fn borrow(&self) -> &str {
        &self.0.client_id
    }
}

/// The connection currently attached to a session.
pub(crate) struct Link {
    /// Identifies the attached connection; a connection whose generation no longer matches has
    /// been taken over.
    pub(crate) generation: u64,
    pub(crate) waker: Arc<dyn Wake>,
    /// What the connection is, for the admin API (boxed: only attached sessions pay for it).
    pub(crate) info: Box<crate::admin::LinkInfo>,
}

/// Whether a connection is attached to a session, or since when none is: one field, as the two
/// never hold at once (the session's size decides its allocation's size class; see the test
/// `a_session_stays_in_its_size_class`).
pub(crate) enum Presence {
    /// Not attached yet (a session being set up), or ended.
    Detached,
    Online(Link),
    /// Since when no connection is attached.
    Offline(Instant),
}

/// A subscription as the session remembers it (for resumption and replacement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubscriptionRecord {
    pub(crate) options: SubscriptionOptions,
    pub(crate) identifier: Option<u32>,
}

/// One message on its way to this session, with the parts decided per recipient.
#[derive(Clone)]
pub(crate) struct Delivery {
    pub(crate) message: Arc<Message>,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    /// Identifiers of every subscription of the session the message matched (MQTT-3.3.4-4).
    pub(crate) subscription_identifiers: Box<[u32]>,
    /// The shared subscription (`$share/group/filter`) this delivery was chosen through, so it
    /// can go to another member if this session ends before acknowledging it.
    pub(crate) shared: Option<ByteString>,
    /// Its key in the store, for a durable delivery (0 otherwise).
    pub(crate) seq: u64,
}

impl Delivery {
    /// The delivery as the store keeps it.
    pub(crate) fn record(&self, client_id: &ByteString, state: DeliveryState) -> DeliveryRecord {
        DeliveryRecord {
            client_id: client_id.clone(),
            seq: self.seq,
            message: self.message.clone(),
            qos: self.qos,
            retain: self.retain,
            subscription_identifiers: self.subscription_identifiers.clone(),
            shared: self.shared.clone(),
            state,
        }
    }
}

/// Where an outgoing QoS 1/2 delivery stands: which packet it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named after the packets of the specification
pub(crate) enum Awaiting {
    PubAck,
    PubRec,
    PubComp,
}

pub(crate) struct Inflight {
    /// The generation of the connection that last sent it; entries sent by an earlier
    /// connection are re-sent by the current one.
    pub(crate) sent_by: u64,
    pub(crate) packet_id: PacketId,
    pub(crate) delivery: Delivery,
    pub(crate) awaiting: Awaiting,
}

/// What happened to a delivery offered to a session queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enqueued {
    Yes,
    /// Taken, but an older QoS 0 message was dropped to make room.
    DisplacedQos0,
    Full,
}

pub(crate) struct SessionState {
    pub(crate) presence: Presence,
    /// Set once the session is removed from the registry; nothing is queued to it after that.
    pub(crate) ended: bool,
    /// A `BTreeMap`: 24 bytes against an empty `HashMap`'s 48 in every session (see
    /// `a_session_stays_in_its_size_class`); a session's own filters are few, and the
    /// subscription index, not this, routes messages.
    pub(crate) subscriptions: BTreeMap<ByteString, SubscriptionRecord>,
    /// Deliveries not yet sent, oldest first.
    pub(crate) queue: VecDeque<Delivery>,
    pub(crate) queued_bytes: usize,
    budget: Arc<QueueBudget>,
    /// Sent and not yet fully acknowledged, in send order.
    pub(crate) inflight: VecDeque<Inflight>,
    next_packet_id: u16,
    /// Incoming QoS 2 packet ids answered with PUBREC and awaiting PUBREL (MQTT-4.3.3-10).
    /// With the store operation its PUBREC waited for, so that a resend's PUBREC waits too.
    /// A `BTreeMap`: half the size of an empty `HashMap` in every session, and at most Receive
    /// Maximum entries.
    pub(crate) incoming_qos2: BTreeMap<u16, Lsn>,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires.
    pub(crate) expiry_interval: u32,
    /// The Will of the attached (or last) connection, until published or discarded.
    /// Boxed: most sessions have none, and it is large.
    pub(crate) will: Option<Box<WillRecord>>,
    /// The user name of the attached (or last) connection, for the read check on delivery.
    pub(crate) username: Option<ByteString>,
    /// The connection's own access rules (from its authentication), in addition to the
    /// broker's. Not persisted: after a restart only the broker's rules apply until the owner
    /// reconnects.
    pub(crate) client_acl: Option<Arc<crate::Acl>>,
    /// The access rules of the listener the attached (or last) connection came through: the
    /// broker's, or the listener's own. `None` for a session recovered from the store, whose
    /// listener is not known: every listener's rules must then allow its deliveries.
    pub(crate) acl: Option<Arc<crate::AclSlot>>,
    /// The mount point of the listener the attached (or last) connection came through. Every
    /// queued or in-flight delivery has a topic that starts with it. Boxed: most listeners
    /// have none.
    pub(crate) mount_point: Option<Box<ByteString>>,
    /// Whether the owner proved its user name: the session can then be taken over only by the
    /// same user, authenticated. For a session recovered from the store, whose owner's proof
    /// is not kept, see `BrokerConfig::recovered_owners_authenticated`.
    pub(crate) owner_authenticated: bool,
    /// Whether the store holds this session (it has a non-zero expiry and the broker has a
    /// store); its changes are then written through.
    pub(crate) durable: bool,
    /// The next delivery sequence number.
    next_seq: u64,
}

impl SessionState {
    fn new(expiry_interval: u32, budget: Arc<QueueBudget>) -> Self {
        Self {
            presence: Presence::Detached,
            ended: false,
            subscriptions: BTreeMap::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            budget,
            inflight: VecDeque::new(),
            next_packet_id: 1,
            incoming_qos2: BTreeMap::new(),
            expiry_interval,
            will: None,
            durable: false,
            next_seq: 1,
            username: None,
            client_acl: None,
            acl: None,
            mount_point: None,
            owner_authenticated: false,
        }
    }

    /// A sequence number for a new durable delivery.
    pub(crate) fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Makes later sequence numbers follow `seq` (after recovery).
    pub(crate) fn seen_seq(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// The session's attributes as the store keeps them.
    pub(crate) fn record(&self, client_id: &ByteString) -> SessionRecord {
        SessionRecord {
            client_id: client_id.clone(),
            expiry_interval: self.expiry_interval,
            username: self.username.clone(),
            disconnected_at: self.disconnected_at(),
            will: self.will.as_deref().cloned(),
        }
    }

    pub(crate) fn is_current(&self, generation: u64) -> bool {
        !self.ended && self.link().is_some_and(|l| l.generation == generation)
    }

    /// The attached connection.
    pub(crate) fn link(&self) -> Option<&Link> {
        match &self.presence {
            Presence::Online(link) => Some(link),
            _ => None,
        }
    }

    pub(crate) fn link_mut(&mut self) -> Option<&mut Link> {
        match &mut self.presence {
            Presence::Online(link) => Some(link),
            _ => None,
        }
    }

    /// Detaches the attached connection, if any, without saying since when (see
    /// [`SessionState::set_offline`]).
    pub(crate) fn take_link(&mut self) -> Option<Link> {
        match std::mem::replace(&mut self.presence, Presence::Detached) {
            Presence::Online(link) => Some(link),
            other => {
                self.presence = other;
                None
            }
        }
    }

    /// When the last connection went away, while none is attached.
    pub(crate) fn disconnected_at(&self) -> Option<Instant> {
        match self.presence {
            Presence::Offline(since) => Some(since),
            _ => None,
        }
    }

    /// No connection attached since `since` (one that was is dropped).
    pub(crate) fn set_offline(&mut self, since: Instant) {
        self.presence = Presence::Offline(since);
    }

    /// Adds a delivery within the bounds. At the bound a QoS 0 delivery is refused; a QoS 1/2
    /// delivery displaces the oldest queued QoS 0 one if there is any, and is refused otherwise.
    pub(crate) fn enqueue(
        &mut self,
        delivery: Delivery,
        max_messages: usize,
        max_bytes: usize,
    ) -> Enqueued {
        let size = delivery.message.size();
        let full = |s: &Self| {
            (max_messages != 0 && s.queue.len() >= max_messages)
                || (max_bytes != 0 && s.queued_bytes + size > max_bytes)
                || !s.budget.fits(size)
        };
        let mut outcome = Enqueued::Yes;
        if full(self) {
            if delivery.qos == QoS::AtMostOnce {
                return Enqueued::Full;
            }
            let Some(pos) = self.queue.iter().position(|d| d.qos == QoS::AtMostOnce) else {
                return Enqueued::Full;
            };
            if let Some(old) = self.queue.remove(pos) {
                self.release(1, old.message.size());
            }
            if full(self) {
                return Enqueued::Full;
            }
            outcome = Enqueued::DisplacedQos0;
        }
        self.reserve(size);
        self.queue.push_back(delivery);
        outcome
    }

    /// Accounts for one more queued delivery of `bytes`.
    fn reserve(&mut self, bytes: usize) {
        self.queued_bytes += bytes;
        self.budget.used.fetch_add(bytes, Ordering::Relaxed);
        self.budget.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Accounts for `count` deliveries of `bytes` in all taken from the queue.
    fn release(&mut self, count: usize, bytes: usize) {
        self.queued_bytes -= bytes;
        self.budget.used.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.queued.fetch_sub(count, Ordering::Relaxed);
    }

    /// Adds a delivery sent and awaiting acknowledgement.
    pub(crate) fn push_inflight(&mut self, entry: Inflight) {
        self.budget.inflight.fetch_add(1, Ordering::Relaxed);
        self.budget
            .inflight_bytes
            .fetch_add(entry.delivery.message.size(), Ordering::Relaxed);
        self.inflight.push_back(entry);
    }

    /// Removes the in-flight delivery at `pos` (acknowledged, or given up).
    pub(crate) fn remove_inflight(&mut self, pos: usize) -> Option<Inflight> {
        let entry = self.inflight.remove(pos)?;
        self.budget
            .release_inflight(1, entry.delivery.message.size());
        Some(entry)
    }

    /// Puts a recovered delivery back at the end of the queue, whatever the limits.
    pub(crate) fn restore_queued(&mut self, delivery: Delivery) {
        self.reserve(delivery.message.size());
        self.queue.push_back(delivery);
    }

    pub(crate) fn pop_queued(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        self.release(1, d.message.size());
        Some(d)
    }

    /// The next packet identifier not in use by an outgoing delivery (MQTT-2.2.1-4).
    pub(crate) fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            let candidate = PacketId::new(self.next_packet_id)?;
            self.next_packet_id = candidate.next().get();
            if !self.inflight.iter().any(|i| i.packet_id == candidate) {
                return Some(candidate);
            }
        }
        None
    }

    pub(crate) fn inflight_position(
        &self,
        packet_id: PacketId,
        awaiting: Awaiting,
    ) -> Option<usize> {
        self.inflight
            .iter()
            .position(|i| i.packet_id == packet_id && i.awaiting == awaiting)
    }

    /// Removes and returns the deliveries whose topic does not start with `prefix` (a mount
    /// point): queued ones, and unacknowledged ones whose PUBLISH would be sent again. Those
    /// awaiting PUBCOMP stay: only their PUBREL, which names no topic, is sent again.
    pub(crate) fn take_outside(&mut self, prefix: &str) -> Vec<Delivery> {
        let outside = |d: &Delivery| !d.message.topic.starts_with(prefix);
        let mut taken = Vec::new();
        if self.queue.iter().any(outside) {
            let (out, kept): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(outside);
            self.queue = kept.into();
            self.release(out.len(), out.iter().map(|d| d.message.size()).sum());
            taken = out;
        }
        if self
            .inflight
            .iter()
            .any(|i| i.awaiting != Awaiting::PubComp && outside(&i.delivery))
        {
            let (out, kept): (Vec<_>, Vec<_>) = self
                .inflight
                .drain(..)
                .partition(|i| i.awaiting != Awaiting::PubComp && outside(&i.delivery));
            self.inflight = kept.into();
            self.budget.release_inflight(
                out.len(),
                out.iter().map(|i| i.delivery.message.size()).sum(),
            );
            taken.extend(out.into_iter().map(|i| i.delivery));
        }
        taken
    }

    /// Removes and returns the queued (not yet sent) QoS 1/2 deliveries that came through the
    /// shared subscription `key`, so they can go to another member when this one leaves it.
    pub(crate) fn take_queued_shared(&mut self, key: &ByteString) -> Vec<Delivery> {
        let (moved, kept): (Vec<_>, Vec<_>) = self
            .queue
            .drain(..)
            .partition(|d| d.qos != QoS::AtMostOnce && d.shared.as_ref() == Some(key));
        self.queue = kept.into();
        self.release(moved.len(), moved.iter().map(|d| d.message.size()).sum());
        moved
    }

    /// Empties the queues and returns the deliveries that came through a shared subscription
    /// and may go to another member: queued QoS 1/2 ones and unacknowledged QoS 1 ones. A QoS 2
    /// message already sent must not go to anyone else (MQTT-4.8.2-5).
    pub(crate) fn take_shared_redeliveries(&mut self) -> Vec<Delivery> {
        self.budget
            .release_inflight(self.inflight.len(), self.inflight_bytes());
        self.release(self.queue.len(), self.queued_bytes);
        let inflight = self
            .inflight
            .drain(..)
            .filter(|i| i.delivery.qos == QoS::AtLeastOnce)
            .map(|i| i.delivery);
        let queued = self.queue.drain(..).filter(|d| d.qos != QoS::AtMostOnce);
        inflight
            .chain(queued)
            .filter(|d| d.shared.is_some())
            .collect()
    }

    fn inflight_bytes(&self) -> usize {
        self.inflight
            .iter()
            .map(|i| i.delivery.message.size())
            .sum()
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.queued_bytes, Ordering::Relaxed);
        self.budget
            .queued
            .fetch_sub(self.queue.len(), Ordering::Relaxed);
        self.budget
            .release_inflight(self.inflight.len(), self.inflight_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connected client keeps one session in an `Arc` (16 bytes of counts added);
    /// allocations are made in size classes 64 bytes apart here (320, 384), so a session grows
    /// the memory of every idle connection by 64 bytes as soon as it passes a class.
    #[test]
    fn a_session_stays_in_its_size_class() {
        let size = std::mem::size_of::<Session>() + 16;
        assert!(size <= 320, "a session's allocation takes {size} bytes");
    }
}
