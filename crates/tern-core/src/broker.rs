//! The shared broker state and routing.
//!
//! # Lock order
//!
//! `sessions` (registry) → `subscriptions` → `retained` → a session's own lock. A section may
//! skip levels but never takes an earlier lock while holding a later one, and no lock is held
//! while publishing a will or another message (which takes `subscriptions` and session locks).

use std::borrow::Borrow;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_codec::{ByteString, PublishProperties, QoS, RetainHandling, SubscriptionOptions};

use crate::FastSet;
use crate::acl::{Access, Acl, Identity};
use crate::message::Message;
use crate::metrics::{DropReason, Metrics, inc, is_broker_sys};
use crate::persistence::Persistence;
use crate::retained::RetainedStore;
use crate::session::{
    Awaiting, Delivery, Enqueued, Inflight, Link, Presence, QueueBudget, Registered, Session,
    SessionState, SubscriptionRecord,
};
use crate::store::{DeliveryState, Lsn, Snapshot, Store, StoreOp, WillRecord};
use crate::subscriptions::{Match, Plain, Subscriber, SubscriptionTree};
use crate::timers::Timers;
use crate::{AclSlot, BrokerConfig};

/// Wakes the task that drives a connection (or the broker's timers) when there is new work:
/// deliveries queued for its session, a takeover, or an earlier deadline.
///
/// Implementations must not block; they are called with a session lock held.
pub trait Wake: Send + Sync {
    /// Signals the task; a signal sent while the task is busy must not be lost.
    fn wake(&self);
}

/// The broker: sessions, subscriptions, retained messages, delayed wills and counters, shared
/// by every connection. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: BrokerConfig,
    /// The access rules in force: `config.acl` at start, replaced on reload. Listeners
    /// without rules of their own use these.
    acl: Arc<AclSlot>,
    /// The listeners' own rules (see [`Broker::listener_acl`]), which a session recovered
    /// from the store must satisfy too, as long as its listener is not known.
    listener_acls: RwLock<Vec<Arc<AclSlot>>>,
    /// The sessions by client id (a set keyed by each session's own id: see [`Registered`]).
    sessions: Mutex<FastSet<Registered>>,
    subscriptions: RwLock<SubscriptionTree>,
    retained: RwLock<RetainedStore>,
    timers: Mutex<Timers>,
    timer_waker: Mutex<Option<Arc<dyn Wake>>>,
    metrics: Metrics,
    generation: AtomicU64,
    id_hasher: RandomState,
    persistence: Persistence,
    queue_budget: Arc<QueueBudget>,
    /// When the broker was made: instants kept per connection are stored as an offset from
    /// it, in 8 bytes rather than an `Instant`'s 16 (see [`Broker::compact_instant`]).
    epoch: Instant,
}

/// A will to publish, with the client it is published for.
struct DueWill {
    publisher: ByteString,
    /// The user name, the client's own rules and its listener's at the time: the will needs
    /// write access to its topic when it goes out, under the rules then in force (a reload
    /// may have revoked it).
    username: Option<ByteString>,
    client_acl: Option<Arc<Acl>>,
    acl: Option<Arc<AclSlot>>,
    will: Box<WillRecord>,
}

impl DueWill {
    fn into_message(self, now: Instant) -> Arc<Message> {
        let w = *self.will;
        Arc::new(Message {
            expires_at: Message::expiry_from(w.properties.message_expiry_interval, now),
            topic: w.topic,
            payload: w.payload,
            qos: w.qos,
            retain: w.retain,
            properties: w.properties,
            publisher: Some(self.publisher),
        })
    }
}

/// What routing one message did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct Routed {
    /// How many subscriptions matched.
    pub matched: usize,
    /// The store operation the message's durability depends on (0: nothing to wait for). An
    /// acknowledgement promising the message is kept must wait for it.
    pub lsn: Lsn,
    /// A QoS 1/2 copy could not be queued for some subscriber (queue limits): MQTT 5
    /// publishers get 0x97 (Quota exceeded).
    pub quota_exceeded: bool,
    /// Some copy went into the empty queue of a connected session and woke its connection.
    pub woke: bool,
}

/// The subscriptions a message gets its plain copies through, as they were when it was
/// matched (those of one session adjacent), and how far their copies are queued: what
/// [`Broker::publish_first`] leaves to queue.
pub(crate) struct RemainingCopies {
    message: Arc<Message>,
    /// One filter's list itself, or what is left of the sorted union of several.
    subscriptions: Arc<Vec<Subscriber>>,
    /// How many of them have their copy queued.
    next: usize,
}

/// Whether a subscription takes a message: not its own publisher's with No Local
/// (MQTT-3.8.3-3).
fn takes(subscriber: &Subscriber, message: &Message) -> bool {
    !(subscriber.options.no_local
        && message.publisher.as_ref() == Some(&subscriber.session.client_id))
}

/// Whether two subscriptions are the same session's.
fn same_session(a: &Subscriber, b: &Subscriber) -> bool {
    Arc::ptr_eq(&a.session, &b.session)
}

/// Work decided under locks and carried out after they are released.
#[derive(Default)]
#[must_use]
struct Aftermath {
    wills: Vec<DueWill>,
    ended: Vec<EndedSession>,
    wake: Vec<Arc<dyn Wake>>,
}

impl Aftermath {
    /// Takes the session's will, to be published once the locks are released.
    fn take_will(&mut self, session: &Session, st: &mut SessionState) {
        let will = st.will.take();
        self.will_of(session, st, will);
    }

    fn will_of(&mut self, session: &Session, st: &SessionState, will: Option<Box<WillRecord>>) {
        if let Some(will) = will {
            self.wills.push(DueWill {
                publisher: session.client_id.clone(),
                username: st.username.clone(),
                client_acl: st.client_acl.clone(),
                acl: st.acl.clone(),
                will,
            });
        }
    }
}

struct EndedSession {
    client_id: ByteString,
    subscriptions: Vec<ByteString>,
    redeliveries: Vec<Delivery>,
}

/// Who attaches to a session.
#[derive(Debug, Clone, Default)]
pub(crate) struct Owner {
    /// The user name access checks use.
    pub(crate) username: Option<ByteString>,
    /// The client's own access rules, in addition to its listener's.
    pub(crate) acl: Option<Arc<Acl>>,
    /// Whether the connection may take over only a session of the same user name: its user
    /// name was authenticated, or its listener checks credentials (an anonymous client there
    /// is "no user name", an identity too).
    pub(crate) exclusive: bool,
    /// Whether the user name was authenticated: the session may then be taken over only by
    /// the same user, authenticated, whatever listener the other client comes through.
    pub(crate) authenticated: bool,
    /// The access rules of the connection's listener (`None`: the broker's).
    pub(crate) listener_acl: Option<Arc<AclSlot>>,
    /// The mount point of the connection's listener.
    pub(crate) mount_point: Option<ByteString>,
}

/// The outcome of attaching a connection to a session.
pub(crate) struct Attached {
    pub(crate) session: Arc<Session>,
    pub(crate) session_present: bool,
    /// The client id, assigned by the broker if the client sent none.
    pub(crate) client_id: ByteString,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Broker {
    /// A broker with no sessions, subscriptions or retained messages, and no store: nothing
    /// survives the process.
    #[must_use]
    pub fn new(config: BrokerConfig) -> Self {
        Self::with_store(config, None)
    }

    /// A broker that writes its durable state through `store` (see [`crate::Store`]).
    #[must_use]
    pub fn with_store(config: BrokerConfig, store: Option<Arc<dyn Store>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sessions: Mutex::default(),
                subscriptions: RwLock::default(),
                retained: RwLock::default(),
                timers: Mutex::default(),
                timer_waker: Mutex::new(None),
                metrics: Metrics::default(),
                generation: AtomicU64::new(1),
                id_hasher: RandomState::new(),
                persistence: Persistence::new(store),
                queue_budget: Arc::new(QueueBudget::new(config.max_total_queued_bytes)),
                acl: Arc::new(AclSlot::new(config.acl.clone())),
                listener_acls: RwLock::default(),
                epoch: Instant::now(),
                config,
            }),
        }
    }

    /// `at` as nanoseconds since the broker was made (an earlier instant counts as that
    /// moment): an instant in 8 bytes, for per-connection state. Undone by
    /// [`Self::instant_of`].
    pub(crate) fn compact_instant(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant [`Self::compact_instant`] stored.
    pub(crate) fn instant_of(&self, compact: u64) -> Instant {
        self.inner.epoch + Duration::from_nanos(compact)
    }

    /// The settings in force.
    #[must_use]
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The access rules in force (`None`: everything is allowed).
    #[must_use]
    pub fn acl(&self) -> Option<Arc<Acl>> {
        self.inner.acl.get()
    }

    /// The broker's own access rules, used by listeners without rules of their own.
    pub(crate) fn acl_slot(&self) -> &Arc<AclSlot> {
        &self.inner.acl
    }

    /// Replaces the access rules (on reload). Every later check uses them, including the
    /// check on delivery to sessions that subscribed under the old rules.
    pub fn set_acl(&self, acl: Option<Arc<Acl>>) {
        self.inner.acl.set(acl);
    }

    /// A slot for the access rules of one listener (Mosquitto's `per_listener_settings`),
    /// holding `acl` for now, for [`ListenerPolicy::acl`](crate::ListenerPolicy::acl). The
    /// broker keeps track of it: a session recovered from the store, whose listener is not
    /// known until its owner reconnects, gets a delivery or publishes its will only if the
    /// broker's rules and every listener's allow it. Create the slots before the listeners
    /// accept connections.
    pub fn listener_acl(&self, acl: Option<Arc<Acl>>) -> Arc<AclSlot> {
        let slot = Arc::new(AclSlot::new(acl));
        self.inner
            .listener_acls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(slot.clone());
        slot
    }

    /// Whether the listener rules `scope` (a session's; `None` when not known) give `who`
    /// `access` to `topic`.
    fn scope_allows(
        &self,
        scope: Option<&AclSlot>,
        access: Access,
        who: Identity<'_>,
        topic: &str,
    ) -> bool {
        let allows =
            |slot: &AclSlot| slot.with(|acl| acl.is_none_or(|a| a.allows(access, who, topic)));
        match scope {
            Some(slot) => allows(slot),
            None => {
                allows(&self.inner.acl)
                    && self
                        .inner
                        .listener_acls
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .iter()
                        .all(|slot| allows(slot))
            }
        }
    }

    /// The broker's counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Number of sessions, connected or not.
    #[must_use]
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Number of subscriptions, shared memberships included.
    #[must_use]
    pub fn subscription_count(&self) -> usize {
        self.subs().len()
    }

    /// Number of shared subscription memberships.
    #[must_use]
    pub fn shared_subscription_count(&self) -> usize {
        self.subs().shared_len()
    }

    /// Payload bytes queued for delivery in all sessions together.
    #[must_use]
    pub fn queued_bytes(&self) -> usize {
        self.inner.queue_budget.used()
    }

    /// Number of retained messages.
    #[must_use]
    pub fn retained_count(&self) -> usize {
        self.retained().len()
    }

    /// Number of retained messages in the `$SYS` tree (the broker's own, which metrics leave
    /// out of the retained count).
    #[must_use]
    pub fn sys_retained_count(&self) -> usize {
        self.retained().sys_len()
    }

    /// Number of connections attached to a session.
    #[must_use]
    pub fn connected_count(&self) -> u64 {
        self.inner
            .metrics
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Number of deliveries queued (not yet sent) in all sessions together.
    #[must_use]
    pub fn queued_messages(&self) -> usize {
        self.inner.queue_budget.queued()
    }

    /// Deliveries sent and awaiting acknowledgement in all sessions together, and the bytes
    /// they account for (payload and topic, as in the queue limits).
    #[must_use]
    pub fn inflight_messages(&self) -> (usize, usize) {
        self.inner.queue_budget.inflight()
    }

    /// Sets the waker of the task that calls [`Broker::handle_timeout`]; it is woken when a
    /// deadline earlier than the previous earliest is scheduled.
    pub fn set_timer_waker(&self, waker: Arc<dyn Wake>) {
        *lock(&self.inner.timer_waker) = Some(waker);
    }

    /// The earliest time [`Broker::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        lock(&self.inner.timers).next()
    }

    /// Publishes delayed wills and ends expired sessions that are due at `now`.
    pub fn handle_timeout(&self, now: Instant) {
        let due = lock(&self.inner.timers).due(now);
        if due.is_empty() {
            return;
        }
        let mut after = Aftermath::default();
        {
            let mut sessions = lock(&self.inner.sessions);
            for id in due {
                let Some(session) = sessions.get(&*id).map(Registered::session) else {
                    continue;
                };
                let mut st = session.lock();
                let Some(since) = st.disconnected_at() else {
                    continue;
                };
                let expiry = self.session_lifetime(st.expiry_interval);
                let expired = expiry.is_some_and(|e| since + e <= now);
                let will_due = st.will.as_ref().is_some_and(|w| {
                    since + Duration::from_secs(u64::from(w.delay_interval)) <= now
                });
                if will_due || expired {
                    after.take_will(&session, &mut st);
                }
                if expired {
                    inc(&self.inner.metrics.sessions_expired, 1);
                    sessions.remove(&*id);
                    after.ended.push(self.end_locked(&session, &mut st));
                } else if will_due {
                    self.persist_session(&session, &mut st);
                    if let Some(e) = expiry {
                        // Only the earlier of will delay and expiry was scheduled at detach:
                        // the session's own end is still to come (MQTT-4.1.0-2).
                        self.schedule(since + e, id);
                    }
                }
            }
        }
        self.finish(after, now);
    }

    /// Routes a message to every matching subscription and, if it is retained, updates the
    /// retained store first.
    ///
    /// A session whose subscriptions overlap gets one copy, at the highest QoS among them and
    /// with all their subscription identifiers (MQTT-3.3.4-2, MQTT-3.3.4-4). Each shared
    /// subscription sends its own copy to one of its members.
    ///
    /// With a store, may wait until other threads' publishes have submitted their store
    /// operations (see [`Store::begin_atomic`]): call it holding no lock that another publish
    /// may need, such as one a [`Wake`] implementation takes.
    pub fn publish(&self, message: Arc<Message>, now: Instant) -> Routed {
        // Everything one message changes is committed together: a crash never keeps some of
        // its copies and not others.
        let _group = self.inner.persistence.atomic();
        self.route(message, now, usize::MAX).0
    }

    /// Like [`Self::publish`], but queues the copies of at most `first` subscribing sessions
    /// (besides those of shared subscriptions) and returns the others, for
    /// [`Self::publish_rest`] to queue later, if those first copies woke connections: they can
    /// start writing before a large fan-out has been queued in full.
    ///
    /// Copies queued in two steps are not committed together: only for a message none of
    /// whose copies is kept in the store (QoS 0, or a broker without store).
    pub(crate) fn publish_first(
        &self,
        message: Arc<Message>,
        now: Instant,
        first: usize,
    ) -> (Routed, Option<RemainingCopies>) {
        debug_assert!(message.qos == QoS::AtMostOnce || !self.inner.persistence.is_enabled());
        let _group = self.inner.persistence.atomic();
        self.route(message, now, first)
    }

    /// Queues the copies of the next `n` sessions that [`Self::publish_first`] left, adding to
    /// what it routed, and of all the others too if those woke no connection (they are busy
    /// already: waiting for them gains nothing); whether any are left.
    pub(crate) fn publish_rest(
        &self,
        rest: &mut RemainingCopies,
        n: usize,
        routed: &mut Routed,
    ) -> bool {
        let RemainingCopies {
            message,
            subscriptions,
            next,
        } = rest;
        routed.woke = false;
        self.queue_turn(subscriptions, next, message, n, routed)
    }

    /// Queues the copies of the next `n` sessions of `subscriptions` from `*next`, and of all
    /// the others too if those woke no connection: only woken connections are worth waiting
    /// for, busy ones are served at once. Whether any are left.
    fn queue_turn<S: Borrow<Subscriber>>(
        &self,
        subscriptions: &[S],
        next: &mut usize,
        message: &Arc<Message>,
        n: usize,
        routed: &mut Routed,
    ) -> bool {
        let more = self.queue_copies(subscriptions, next, message, n, routed);
        if more && !routed.woke {
            return self.queue_copies(subscriptions, next, message, usize::MAX, routed);
        }
        more
    }

    /// Queues the copies of `message` for the next `n` sessions of `subscriptions` (those of
    /// one session adjacent) from `*next`; whether any are left.
    fn queue_copies<S: Borrow<Subscriber>>(
        &self,
        subscriptions: &[S],
        next: &mut usize,
        message: &Arc<Message>,
        n: usize,
        routed: &mut Routed,
    ) -> bool {
        let left = &subscriptions[*next..];
        for same in left
            .chunk_by(|a, b| same_session(a.borrow(), b.borrow()))
            .take(n)
        {
            *next += same.len();
            // One filter's list is not filtered beforehand: each session is alone in it.
            if let [subscriber] = same
                && !takes(subscriber.borrow(), message)
            {
                continue;
            }
            let delivery = Self::copy_for(same, message, None);
            self.enqueue(&same[0].borrow().session, delivery, routed);
        }
        *next < subscriptions.len()
    }

    /// Queues the copies of the first `first` sessions of `subscriptions`, and of the others
    /// too unless those woke connections: then what is left, as `keep` makes it from the
    /// message and the number of subscriptions served.
    fn queue_first<S: Borrow<Subscriber>>(
        &self,
        subscriptions: &[S],
        message: Arc<Message>,
        first: usize,
        routed: &mut Routed,
        keep: impl FnOnce(Arc<Message>, usize) -> RemainingCopies,
    ) -> Option<RemainingCopies> {
        let mut next = 0;
        let more = self.queue_turn(subscriptions, &mut next, &message, first, routed);
        more.then(|| keep(message, next))
    }

    /// Routes `message`, queuing the copies of the first `first` sessions among those of its
    /// plain subscriptions and returning the others if those woke connections.
    fn route(
        &self,
        message: Arc<Message>,
        now: Instant,
        first: usize,
    ) -> (Routed, Option<RemainingCopies>) {
        let mut routed = Routed::default();
        // The broker's own `$SYS` messages are kept in memory only (the next start publishes
        // them again) and are not client traffic: they count in no metric.
        let sys = is_broker_sys(&message);
        if message.retain && self.inner.config.retain_available {
            let mut retained = self.retained_mut();
            let op = if message.payload.is_empty() {
                StoreOp::DeleteRetained {
                    topic: message.topic.clone(),
                }
            } else {
                StoreOp::PutRetained(message.clone())
            };
            retained.set(message.clone());
            // Submitted under the retained lock, so that the store sees the same order.
            if !sys {
                routed.lsn = self.inner.persistence.submit(op);
            }
        }
        if message.is_expired(now) {
            self.inner.metrics.record_drop(DropReason::Expired);
            return (routed, None);
        }
        let tree = self.subs();
        let mut lists: Vec<&Plain> = Vec::new();
        tree.for_each_match(&message.topic, |m| match m {
            Match::Plain(plain) => {
                routed.matched += plain.len();
                lists.push(plain);
            }
            Match::Shared(group) => {
                routed.matched += 1;
                if let Some(sub) = group.pick() {
                    self.deliver_shared(sub, &message, &group.key, &mut routed);
                }
            }
        });
        if routed.matched == 0 && !sys {
            inc(&self.inner.metrics.publish_no_subscribers, 1);
        }
        // Still under the index's lock: a publish that matched a subscription queues its first
        // copies before an unsubscribe can remove it.
        let rest = match lists.as_slice() {
            [] => None,
            // A session has one subscription per filter: through one filter, none matched
            // twice, and the copies left for later can keep the list itself.
            [one] => self.queue_first(
                one.as_slice(),
                message,
                first,
                &mut routed,
                |message, next| {
                    let subscriptions = match one.shared() {
                        Some(list) => Arc::clone(list),
                        None => Arc::new(one.as_slice().to_vec()),
                    };
                    RemainingCopies {
                        message,
                        subscriptions,
                        next,
                    }
                },
            ),
            // A session that matched through several filters gets one copy: sorted by
            // session, its subscriptions are adjacent. Only what is left is copied out.
            several => {
                let mut all: Vec<&Subscriber> = several
                    .iter()
                    .flat_map(|plain| plain.as_slice())
                    .filter(|s| takes(s, &message))
                    .collect();
                all.sort_unstable_by_key(|s| Arc::as_ptr(&s.session));
                self.queue_first(&all, message, first, &mut routed, |message, next| {
                    RemainingCopies {
                        message,
                        subscriptions: Arc::new(all[next..].iter().map(|s| (*s).clone()).collect()),
                        next: 0,
                    }
                })
            }
        };
        (routed, rest)
    }

    /// The number of subscriptions `topic` matches (a shared group counts once), found as
    /// [`Self::publish`] finds them but delivering nothing: the cost of the subscription index
    /// lookup alone, for the benchmarks.
    #[doc(hidden)]
    #[must_use]
    pub fn count_matches(&self, topic: &str) -> usize {
        let mut n = 0;
        self.subs().for_each_match(topic, |m| {
            n += match m {
                Match::Plain(plain) => plain.len(),
                Match::Shared(_) => 1,
            }
        });
        n
    }

    /// Publishes a message on behalf of the broker itself (no publisher client id).
    pub fn publish_internal(
        &self,
        topic: ByteString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        now: Instant,
    ) -> Routed {
        let message = Message {
            topic,
            payload,
            qos,
            retain,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: None,
        };
        self.publish(Arc::new(message), now)
    }

    /// Queues a copy of `message` for the member of shared subscription `key` chosen for it.
    fn deliver_shared(
        &self,
        member: &Subscriber,
        message: &Arc<Message>,
        key: &ByteString,
        routed: &mut Routed,
    ) {
        let delivery = Self::copy_for(&[member], message, Some(key));
        self.enqueue(&member.session, delivery, routed);
    }

    /// The one copy of `message` for the session of `subs` (all of the same session), merging
    /// their QoS, RETAIN and identifiers.
    fn copy_for<S: Borrow<Subscriber>>(
        subs: &[S],
        message: &Arc<Message>,
        shared: Option<&ByteString>,
    ) -> Delivery {
        let subs = || subs.iter().map(Borrow::borrow);
        let granted = subs()
            .map(|s| s.options.qos)
            .max()
            .unwrap_or(QoS::AtMostOnce);
        Delivery {
            message: message.clone(),
            qos: message.qos.min(granted),
            retain: message.retain && subs().any(|s| s.options.retain_as_published),
            subscription_identifiers: subs().filter_map(|s| s.identifier).collect(),
            shared: shared.cloned(),
            seq: 0,
        }
    }

    /// Queues a delivery for a session, if the session may read its topic (checked here, when
    /// the message is routed to the session, for every kind of delivery: routed, retained, will).
    /// A QoS 1/2 delivery to a durable session is written to the store, under the session's
    /// lock so that its later updates follow it.
    fn enqueue(&self, session: &Session, mut delivery: Delivery, routed: &mut Routed) {
        let cfg = &self.inner.config;
        // Deliveries of the broker's own `$SYS` messages are not client traffic.
        let counted = !is_broker_sys(&delivery.message);
        let record_drop = |reason| {
            if counted {
                self.inner.metrics.record_drop(reason);
            }
        };
        let mut st = session.lock();
        if st.ended {
            return;
        }
        let who = Identity {
            client_id: &session.client_id,
            username: st.username.as_deref(),
        };
        let topic = &delivery.message.topic;
        if let Some(mount_point) = &st.mount_point
            && !topic.starts_with(&***mount_point)
        {
            // Outside the listener's mount point: invisible to its clients (a subscription
            // made through another listener, or `prefix/#` matching `prefix` itself).
            record_drop(DropReason::NotAuthorized);
            return;
        }
        if !self.scope_allows(st.acl.as_deref(), Access::Read, who, topic)
            || st
                .client_acl
                .as_deref()
                .is_some_and(|acl| !acl.allows(Access::Read, who, topic))
        {
            record_drop(DropReason::NotAuthorized);
            return;
        }
        if st.link().is_none() && delivery.qos == QoS::AtMostOnce && !cfg.queue_qos0_messages {
            record_drop(DropReason::Offline);
            return;
        }
        let durable = st.durable && delivery.qos != QoS::AtMostOnce;
        let record = durable.then(|| {
            delivery.seq = st.next_seq();
            delivery.record(&session.client_id, DeliveryState::Queued)
        });
        let was_empty = st.queue.is_empty();
        match st.enqueue(delivery, cfg.max_queued_messages, cfg.max_queued_bytes) {
            Enqueued::Full => {
                record_drop(DropReason::QueueFull);
                routed.quota_exceeded = true;
                return;
            }
            Enqueued::DisplacedQos0 => record_drop(DropReason::QueueFull),
            Enqueued::Yes => {}
        }
        if let Some(record) = record {
            routed.lsn = routed
                .lsn
                .max(self.inner.persistence.submit(StoreOp::PutDelivery(record)));
        }
        // The connection drains its whole queue when woken, so only the first delivery into an
        // empty queue needs to wake it.
        if was_empty
            && !st.queue.is_empty()
            && let Some(link) = st.link()
        {
            link.waker.wake();
            routed.woke = true;
        }
    }

    /// Drops the deliveries of a session (locked) that its new mount point hides: it was
    /// resumed through a listener with another mount point than the one they were queued for.
    fn drop_outside(&self, session: &Session, st: &mut SessionState, mount_point: &str) {
        for d in st.take_outside(mount_point) {
            self.inner.metrics.record_drop(DropReason::NotAuthorized);
            if st.durable && d.seq != 0 {
                self.persist(StoreOp::DeleteDelivery {
                    client_id: session.client_id.clone(),
                    seq: d.seq,
                });
            }
        }
    }

    /// Submits a store operation (a no-op without a store); its sequence number.
    pub(crate) fn persist(&self, op: StoreOp) -> Lsn {
        self.inner.persistence.submit(op)
    }

    /// The broker's store link, for acknowledgements waiting on durability.
    pub(crate) fn persistence(&self) -> &Persistence {
        &self.inner.persistence
    }

    /// Writes a session's attributes through to the store when it has a non-zero expiry, and
    /// removes it from the store when its expiry dropped to 0. Called with the session locked.
    fn persist_session(&self, session: &Session, st: &mut SessionState) -> Lsn {
        let persistence = &self.inner.persistence;
        if !persistence.is_enabled() {
            return 0;
        }
        if st.expiry_interval == 0 {
            if !st.durable {
                return 0;
            }
            st.durable = false;
            return persistence.submit(StoreOp::DeleteSession {
                client_id: session.client_id.clone(),
            });
        }
        let mut lsn =
            persistence.submit(StoreOp::PutSession(Box::new(st.record(&session.client_id))));
        if !st.durable {
            // Becoming durable: everything the session holds goes to the store too.
            st.durable = true;
            for (filter, sub) in &st.subscriptions {
                lsn = persistence.submit(StoreOp::PutSubscription {
                    client_id: session.client_id.clone(),
                    filter: filter.clone(),
                    options: sub.options,
                    identifier: sub.identifier,
                });
            }
            let mut records = Vec::new();
            for i in 0..st.inflight.len() {
                if st.inflight[i].delivery.qos == QoS::AtMostOnce {
                    continue;
                }
                let seq = st.next_seq();
                let entry = &mut st.inflight[i];
                entry.delivery.seq = seq;
                let state = match entry.awaiting {
                    Awaiting::PubComp => DeliveryState::Released(entry.packet_id.get()),
                    _ => DeliveryState::Sent(entry.packet_id.get()),
                };
                records.push(entry.delivery.record(&session.client_id, state));
            }
            for i in 0..st.queue.len() {
                if st.queue[i].qos == QoS::AtMostOnce {
                    continue;
                }
                let seq = st.next_seq();
                st.queue[i].seq = seq;
                records.push(st.queue[i].record(&session.client_id, DeliveryState::Queued));
            }
            for record in records {
                lsn = persistence.submit(StoreOp::PutDelivery(record));
            }
            for id in st.incoming_qos2.keys() {
                lsn = persistence.submit(StoreOp::AddIncomingQos2 {
                    client_id: session.client_id.clone(),
                    packet_id: *id,
                });
            }
        }
        lsn
    }

    /// Rebuilds the sessions and retained messages a store recovered. Sessions come back
    /// disconnected; those that were connected when the broker stopped count as disconnected
    /// at `now` (their wills fall due from then). Expiry timers resume from the stored times.
    pub fn restore(&self, snapshot: Snapshot, now: Instant) {
        {
            let mut retained = self.retained_mut();
            for message in snapshot.retained {
                retained.set(message);
            }
        }
        let mut sessions = lock(&self.inner.sessions);
        let mut tree = self.subs_mut();
        for snap in snapshot.sessions {
            let record = snap.record;
            let session = Arc::new(Session::new(
                record.client_id.clone(),
                record.expiry_interval,
                self.inner.queue_budget.clone(),
            ));
            let since = record.disconnected_at.unwrap_or(now);
            {
                let mut st = session.lock();
                st.durable = true;
                st.owner_authenticated =
                    self.inner.config.recovered_owners_authenticated && record.username.is_some();
                st.username = record.username;
                st.will = record.will.map(Box::new);
                st.set_offline(since);
                for (filter, options, identifier) in snap.subscriptions {
                    let (share, plain) = split_key(&filter);
                    let sub = Subscriber {
                        session: session.clone(),
                        options,
                        identifier,
                    };
                    tree.insert(plain, share, &filter, sub);
                    st.subscriptions.insert(
                        filter,
                        SubscriptionRecord {
                            options,
                            identifier,
                        },
                    );
                }
                for d in snap.deliveries {
                    st.seen_seq(d.seq);
                    let delivery = Delivery {
                        message: d.message,
                        qos: d.qos,
                        retain: d.retain,
                        subscription_identifiers: d.subscription_identifiers,
                        shared: d.shared,
                        seq: d.seq,
                    };
                    let (packet_id, awaiting) = match d.state {
                        DeliveryState::Queued => {
                            st.restore_queued(delivery);
                            continue;
                        }
                        DeliveryState::Sent(id) if d.qos == QoS::AtLeastOnce => {
                            (id, Awaiting::PubAck)
                        }
                        DeliveryState::Sent(id) => (id, Awaiting::PubRec),
                        DeliveryState::Released(id) => (id, Awaiting::PubComp),
                    };
                    let Some(packet_id) = tern_codec::PacketId::new(packet_id) else {
                        continue;
                    };
                    // Sent by an earlier connection: re-sent with DUP on reconnection.
                    st.push_inflight(Inflight {
                        sent_by: 0,
                        packet_id,
                        delivery,
                        awaiting,
                    });
                }
                st.incoming_qos2
                    .extend(snap.incoming_qos2.into_iter().map(|id| (id, 0)));
                let mut deadline = self.session_lifetime(st.expiry_interval).map(|l| since + l);
                if let Some(w) = &st.will {
                    let at = since + Duration::from_secs(u64::from(w.delay_interval));
                    deadline = Some(deadline.map_or(at, |d| d.min(at)));
                }
                if let Some(at) = deadline {
                    self.schedule(at, record.client_id.clone());
                }
            }
            sessions.replace(Registered(session));
        }
    }

    /// A fresh connection generation, distinct from every other connection's.
    pub(crate) fn next_generation(&self) -> u64 {
        self.inner.generation.fetch_add(1, Ordering::Relaxed)
    }

    /// How long a disconnected session with this expiry interval lives, after the configured
    /// cap; `None` means forever.
    fn session_lifetime(&self, expiry_interval: u32) -> Option<Duration> {
        let requested =
            (expiry_interval != u32::MAX).then(|| Duration::from_secs(u64::from(expiry_interval)));
        match (requested, self.inner.config.persistent_client_expiration) {
            (Some(r), Some(cap)) => Some(r.min(cap)),
            (r, cap) => r.or(cap),
        }
    }

    /// A client id for a client that sent none, unused at the time of the call. Assigned before
    /// [`Broker::attach`] so that checks that depend on the id (ACL patterns with `%c`) can be
    /// made before the session is touched; the id is unguessable, so no other client can take
    /// it in between. `prefix` replaces the configured `auto_id_prefix` (a listener's own).
    pub(crate) fn fresh_client_id(&self, prefix: Option<&str>) -> ByteString {
        let sessions = lock(&self.inner.sessions);
        let prefix = prefix.unwrap_or(&self.inner.config.auto_id_prefix);
        loop {
            let n = self.inner.generation.fetch_add(1, Ordering::Relaxed);
            let id = format!("{prefix}{:016x}", self.inner.id_hasher.hash_one(n));
            if !sessions.contains(id.as_str()) {
                return ByteString::from(id);
            }
        }
    }

    /// Attaches a new connection to the session of `client_id`,
    /// taking over any connection attached to it (MQTT-3.1.4-2, MQTT-3.1.4-3) and applying
    /// Clean Start (MQTT-3.1.2-4..6). `owner` is who the connection is; the session keeps it
    /// for the access checks of its deliveries. Returns `None`, touching nothing, when the
    /// owner is exclusive and the session belongs to another user.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attach(
        &self,
        client_id: ByteString,
        owner: Owner,
        clean_start: bool,
        expiry_interval: u32,
        link: Link,
        will: Option<Box<WillRecord>>,
        now: Instant,
    ) -> Option<Attached> {
        let mut after = Aftermath::default();
        let mut replaced_live = false;
        let attached = {
            let mut sessions = lock(&self.inner.sessions);
            let existing = sessions.get(&*client_id).map(Registered::session);
            if let Some(session) = &existing {
                let st = session.lock();
                let same_user = st.username == owner.username;
                // An authenticated owner's session goes only to the same user, proved again:
                // not to a client of a listener that checks nothing, whatever it claims.
                if (owner.exclusive && !same_user)
                    || (st.owner_authenticated && !(owner.authenticated && same_user))
                {
                    return None;
                }
            }
            let resumed = existing.and_then(|session| {
                let mut st = session.lock();
                // Deadlines that passed before the timer task got to them (just after a
                // restart, say) count now: an expired session is not resumed, a will whose
                // delay passed is published.
                if let Some(since) = st.disconnected_at() {
                    let expired = self
                        .session_lifetime(st.expiry_interval)
                        .is_some_and(|l| since + l <= now);
                    let will_due = st.will.as_ref().is_some_and(|w| {
                        since + Duration::from_secs(u64::from(w.delay_interval)) <= now
                    });
                    if expired || will_due {
                        after.take_will(&session, &mut st);
                    }
                    if expired {
                        inc(&self.inner.metrics.sessions_expired, 1);
                        sessions.remove(&*client_id);
                        after.ended.push(self.end_locked(&session, &mut st));
                        return None;
                    }
                }
                if let Some(old) = st.take_link() {
                    replaced_live = true;
                    // A live connection is taken over: its will goes out now if it has no delay
                    // or if the session is about to end with it.
                    after.wake.push(old.waker);
                    if let Some(w) = st.will.take()
                        && (w.delay_interval == 0 || clean_start || st.expiry_interval == 0)
                    {
                        after.will_of(&session, &st, Some(w));
                    }
                } else if clean_start {
                    // A will still waiting for its delay goes out when the session ends.
                    after.take_will(&session, &mut st);
                }
                // A session with expiry 0 (3.x CleanSession = 1) ends with the connection just
                // taken over: it is not resumed either (MQTT-3.1.2-6).
                if clean_start || st.expiry_interval == 0 {
                    sessions.remove(&*client_id);
                    after.ended.push(self.end_locked(&session, &mut st));
                    None
                } else {
                    // Reconnected in time: a delayed will is not published (MQTT-3.1.3-9).
                    st.will = None;
                    drop(st);
                    Some(session)
                }
            });
            let session_present = resumed.is_some();
            let session = resumed.unwrap_or_else(|| {
                let s = Arc::new(Session::new(
                    client_id.clone(),
                    expiry_interval,
                    self.inner.queue_budget.clone(),
                ));
                sessions.replace(Registered(s.clone()));
                s
            });
            {
                let mut st = session.lock();
                st.presence = Presence::Online(link);
                st.expiry_interval = expiry_interval;
                st.will = will;
                st.username = owner.username;
                st.client_acl = owner.acl;
                st.owner_authenticated = owner.authenticated;
                st.acl = Some(owner.listener_acl.unwrap_or_else(|| self.inner.acl.clone()));
                if owner.mount_point.as_ref() != st.mount_point.as_deref() {
                    if let Some(mount_point) = &owner.mount_point {
                        self.drop_outside(&session, &mut st, mount_point);
                    }
                    st.mount_point = owner.mount_point.map(Box::new);
                }
                session.set_online(true);
                self.persist_session(&session, &mut st);
            }
            Attached {
                session,
                session_present,
                client_id,
            }
        };
        inc(&self.inner.metrics.connects, 1);
        if !replaced_live {
            self.inner.metrics.connection_opened();
        }
        self.finish(after, now);
        Some(attached)
    }

    /// Detaches the connection `generation` from its session when the connection ends.
    /// `publish_will` is false only after a normal DISCONNECT. Does nothing if the connection
    /// was already taken over.
    pub(crate) fn detach(
        &self,
        session: &Arc<Session>,
        generation: u64,
        publish_will: bool,
        now: Instant,
    ) {
        let mut after = Aftermath::default();
        {
            let mut sessions = lock(&self.inner.sessions);
            let mut st = session.lock();
            if !st.is_current(generation) {
                return;
            }
            st.set_offline(now);
            session.set_online(false);
            self.inner
                .metrics
                .connections
                .fetch_sub(1, Ordering::Relaxed);
            if !publish_will {
                st.will = None;
            }
            let lifetime = self.session_lifetime(st.expiry_interval);
            let ends_now = lifetime == Some(Duration::ZERO);
            let mut deadline = lifetime.map(|l| now + l);
            if let Some(w) = &st.will {
                if w.delay_interval == 0 || ends_now {
                    after.take_will(session, &mut st);
                } else {
                    let at = now + Duration::from_secs(u64::from(w.delay_interval));
                    deadline = Some(deadline.map_or(at, |d| d.min(at)));
                }
            }
            if ends_now {
                if sessions
                    .get(&*session.client_id)
                    .is_some_and(|s| Arc::ptr_eq(&s.0, session))
                {
                    sessions.remove(&*session.client_id);
                }
                after.ended.push(self.end_locked(session, &mut st));
            } else {
                self.persist_session(session, &mut st);
                if let Some(at) = deadline {
                    self.schedule(at, session.client_id.clone());
                }
            }
        }
        self.finish(after, now);
    }

    /// Changes the expiry interval of a session (MQTT 5 DISCONNECT), before [`Broker::detach`].
    pub(crate) fn set_session_expiry(&self, session: &Session, expiry_interval: u32) {
        session.lock().expiry_interval = expiry_interval;
    }

    fn schedule(&self, at: Instant, client_id: ByteString) {
        if lock(&self.inner.timers).schedule(at, client_id)
            && let Some(w) = lock(&self.inner.timer_waker).as_ref()
        {
            w.wake();
        }
    }

    /// Adds or replaces a subscription of `session`; returns whether the same filter existed.
    /// `None` if the session has ended meanwhile.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        key: &ByteString,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> Option<bool> {
        let (share, filter) = split_key(key);
        let mut tree = self.subs_mut();
        let mut st = session.lock();
        if st.ended {
            return None;
        }
        let sub = Subscriber {
            session: session.clone(),
            options,
            identifier,
        };
        let existed = tree.insert(filter, share, key, sub);
        st.subscriptions.insert(
            key.clone(),
            SubscriptionRecord {
                options,
                identifier,
            },
        );
        if st.durable {
            self.persist(StoreOp::PutSubscription {
                client_id: session.client_id.clone(),
                filter: key.clone(),
                options,
                identifier,
            });
        }
        Some(existed)
    }

    /// Removes a subscription of `session`; returns whether it existed. Leaving a shared
    /// subscription hands the session's queued deliveries from it to another member.
    pub(crate) fn unsubscribe(&self, session: &Session, key: &ByteString, now: Instant) -> bool {
        let (share, filter) = split_key(key);
        let (removed, moved) = {
            let mut tree = self.subs_mut();
            let mut st = session.lock();
            if st.subscriptions.remove(key).is_none() {
                return false;
            }
            let moved = if share.is_some() {
                st.take_queued_shared(key)
            } else {
                Vec::new()
            };
            if st.durable {
                let client_id = &session.client_id;
                self.persist(StoreOp::DeleteSubscription {
                    client_id: client_id.clone(),
                    filter: key.clone(),
                });
                for d in moved.iter().filter(|d| d.seq != 0) {
                    self.persist(StoreOp::DeleteDelivery {
                        client_id: client_id.clone(),
                        seq: d.seq,
                    });
                }
            }
            (tree.remove(filter, share, &session.client_id), moved)
        };
        self.redeliver_shared(&session.client_id, moved, now);
        removed
    }

    /// Queues the retained messages matching `filter` for `session` (MQTT-3.3.1-6), with
    /// RETAIN set (MQTT-3.3.1-8).
    pub(crate) fn send_retained(
        &self,
        session: &Session,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        now: Instant,
    ) {
        let retained = self.retained();
        retained.for_each_match(filter, now, |message| {
            let delivery = Delivery {
                message: message.clone(),
                qos: message.qos.min(options.qos),
                retain: true,
                subscription_identifiers: identifier.into_iter().collect(),
                shared: None,
                seq: 0,
            };
            self.enqueue(session, delivery, &mut Routed::default());
        });
    }

    /// Whether retained messages should be sent for a subscription that `existed` before.
    pub(crate) fn wants_retained(options: SubscriptionOptions, existed: bool) -> bool {
        match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => !existed,
            RetainHandling::DoNotSend => false,
        }
    }

    /// Carries out what was decided under the locks: wakes taken-over connections, removes
    /// ended sessions' subscriptions, re-routes their shared deliveries and publishes wills.
    fn finish(&self, after: Aftermath, now: Instant) {
        for w in after.wake {
            w.wake();
        }
        for ended in after.ended {
            {
                let mut tree = self.subs_mut();
                for key in &ended.subscriptions {
                    let (share, filter) = split_key(key);
                    tree.remove(filter, share, &ended.client_id);
                }
            }
            self.redeliver_shared(&ended.client_id, ended.redeliveries, now);
        }
        for will in after.wills {
            let who = Identity {
                client_id: &will.publisher,
                username: will.username.as_deref(),
            };
            let topic = &will.will.topic;
            if !self.scope_allows(will.acl.as_deref(), Access::Write, who, topic)
                || will
                    .client_acl
                    .as_deref()
                    .is_some_and(|acl| !acl.allows(Access::Write, who, topic))
            {
                self.inner.metrics.record_drop(DropReason::NotAuthorized);
                continue;
            }
            let _ = self.publish(will.into_message(now), now);
        }
    }

    /// Hands deliveries of a shared subscription to another member of the same group.
    fn redeliver_shared(&self, from: &str, deliveries: Vec<Delivery>, now: Instant) {
        if deliveries.is_empty() {
            return;
        }
        let tree = self.subs();
        for d in deliveries {
            let Some(key) = &d.shared else { continue };
            let (share, filter) = split_key(key);
            let Some(group) = share.and_then(|s| tree.shared_group(filter, s)) else {
                self.inner.metrics.record_drop(DropReason::QueueFull);
                continue;
            };
            if let Some(sub) = group.pick_other(from)
                && !d.message.is_expired(now)
            {
                self.deliver_shared(sub, &d.message, &group.key, &mut Routed::default());
            }
        }
    }

    /// Marks a session ended (its lock held), removes it from the store, and takes what must be
    /// cleaned up after the locks are released.
    fn end_locked(&self, session: &Session, st: &mut SessionState) -> EndedSession {
        st.ended = true;
        if let Some(link) = st.take_link() {
            link.waker.wake();
        }
        session.set_online(false);
        if st.durable {
            st.durable = false;
            self.persist(StoreOp::DeleteSession {
                client_id: session.client_id.clone(),
            });
        }
        EndedSession {
            client_id: session.client_id.clone(),
            subscriptions: std::mem::take(&mut st.subscriptions).into_keys().collect(),
            redeliveries: st.take_shared_redeliveries(),
        }
    }

    fn subs(&self) -> RwLockReadGuard<'_, SubscriptionTree> {
        self.inner
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subs_mut(&self) -> RwLockWriteGuard<'_, SubscriptionTree> {
        self.inner
            .subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn retained(&self) -> RwLockReadGuard<'_, RetainedStore> {
        self.inner
            .retained
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn retained_mut(&self) -> RwLockWriteGuard<'_, RetainedStore> {
        self.inner
            .retained
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Splits a subscription key into (share name, plain filter).
fn split_key(key: &str) -> (Option<&str>, &str) {
    match tern_codec::split_shared(key) {
        Some(Ok((share, filter))) => (Some(share), filter),
        _ => (None, key),
    }
}

// ---------------------------------------------------------------------------------------------
// What the admin API's queries and controls (`crate::admin`) need of the broker's state.

impl Broker {
    /// Every session, connected or not (the registry lock is held only to copy the handles).
    pub(crate) fn session_handles(&self) -> Vec<Arc<Session>> {
        lock(&self.inner.sessions)
            .iter()
            .map(Registered::session)
            .collect()
    }

    /// The session of `client_id`.
    pub(crate) fn session_handle(&self, client_id: &str) -> Option<Arc<Session>> {
        lock(&self.inner.sessions)
            .get(client_id)
            .map(Registered::session)
    }

    /// Runs `f` on the retained messages (read lock held).
    pub(crate) fn with_retained<R>(&self, f: impl FnOnce(&RetainedStore) -> R) -> R {
        f(&self.retained())
    }

    /// Removes the retained message of `topic`, from the store too; whether there was one.
    pub(crate) fn remove_retained(&self, topic: &ByteString) -> bool {
        let mut retained = self.retained_mut();
        let removed = retained.remove(topic);
        // `$SYS` messages are never written (see `publish`).
        if removed && !topic.starts_with("$SYS/") {
            // Submitted under the retained lock, as `publish` does.
            self.persist(StoreOp::DeleteRetained {
                topic: topic.clone(),
            });
        }
        removed
    }

    /// See [`Broker::admin_disconnect`].
    pub(crate) fn disconnect_by_admin(
        &self,
        client_id: &str,
        discard: bool,
        now: Instant,
    ) -> crate::AdminDisconnect {
        let mut after = Aftermath::default();
        let outcome = {
            let mut sessions = lock(&self.inner.sessions);
            let Some(session) = sessions.get(client_id).map(Registered::session) else {
                return crate::AdminDisconnect::NoSession;
            };
            let mut st = session.lock();
            if let Some(link) = st.link_mut() {
                // The connection sees the flag when woken, sends DISCONNECT 0x98 and detaches
                // like any connection the server closes.
                link.info.kicked = true;
                link.waker.wake();
                if discard {
                    // Ends when the connection detaches (`detach`, expiry 0).
                    st.expiry_interval = 0;
                }
                crate::AdminDisconnect::Disconnecting
            } else {
                if discard {
                    // A will still waiting for its delay goes out as the session ends.
                    after.take_will(&session, &mut st);
                    sessions.remove(client_id);
                    after.ended.push(self.end_locked(&session, &mut st));
                }
                crate::AdminDisconnect::NotConnected
            }
        };
        self.finish(after, now);
        outcome
    }
}
