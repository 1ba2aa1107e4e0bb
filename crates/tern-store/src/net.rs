//! The net effect of a batch of operations: what is left to write once the changes that undo
//! each other inside the batch are gone.
//!
//! Operations are folded in sequence order into one final state per key (session, subscription,
//! delivery, incoming packet id, retained topic). A delivery put then deleted in the same batch
//! leaves only "deleted", which costs nothing when the row never reached the store; a session
//! deleted in the batch clears every earlier change of that client and marks the client
//! "cleared", so its stored rows are removed before the later changes are written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tern_codec::{ByteString, SubscriptionOptions};
use tern_core::{DeliveryRecord, Message, SessionRecord, StoreOp};

/// The final state of one client's keys in a batch.
#[derive(Debug, Default)]
pub(crate) struct ClientNet {
    /// The session was deleted in the batch: every stored row of the client goes first.
    pub(crate) cleared: bool,
    /// The session's final attributes, if put after any deletion.
    pub(crate) session: Option<SessionRecord>,
    /// Subscriptions: `Some` put, `None` deleted.
    pub(crate) subs: HashMap<ByteString, Option<(SubscriptionOptions, Option<u32>)>>,
    /// Deliveries: `Some` put, `None` deleted.
    pub(crate) deliveries: BTreeMap<u64, Option<DeliveryRecord>>,
    /// Incoming QoS 2 packet ids: `true` added, `false` removed.
    pub(crate) incoming: BTreeMap<u16, bool>,
}

/// The net effect of a sequence of operations.
#[derive(Debug, Default)]
pub(crate) struct Net {
    pub(crate) clients: HashMap<ByteString, ClientNet>,
    /// Retained topics: `Some` set, `None` cleared.
    pub(crate) retained: HashMap<ByteString, Option<Arc<Message>>>,
    /// Operations folded in.
    pub(crate) ops: u64,
}

impl Net {
    pub(crate) fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.retained.is_empty()
    }

    fn client(&mut self, id: &ByteString) -> &mut ClientNet {
        self.clients.entry(id.clone()).or_default()
    }

    /// Folds `op`, which follows every operation folded so far.
    pub(crate) fn apply(&mut self, op: StoreOp) {
        self.ops += 1;
        match op {
            StoreOp::PutSession(rec) => {
                let c = self.client(&rec.client_id);
                c.session = Some(*rec);
            }
            StoreOp::DeleteSession { client_id } => {
                let c = self.client(&client_id);
                *c = ClientNet {
                    cleared: true,
                    ..ClientNet::default()
                };
            }
            StoreOp::PutSubscription {
                client_id,
                filter,
                options,
                identifier,
            } => {
                self.client(&client_id)
                    .subs
                    .insert(filter, Some((options, identifier)));
            }
            StoreOp::DeleteSubscription { client_id, filter } => {
                self.client(&client_id).subs.insert(filter, None);
            }
            StoreOp::PutDelivery(rec) => {
                let id = rec.client_id.clone();
                self.client(&id).deliveries.insert(rec.seq, Some(rec));
            }
            StoreOp::DeleteDelivery { client_id, seq } => {
                self.client(&client_id).deliveries.insert(seq, None);
            }
            StoreOp::AddIncomingQos2 {
                client_id,
                packet_id,
            } => {
                self.client(&client_id).incoming.insert(packet_id, true);
            }
            StoreOp::RemoveIncomingQos2 {
                client_id,
                packet_id,
            } => {
                self.client(&client_id).incoming.insert(packet_id, false);
            }
            StoreOp::PutRetained(m) => {
                self.retained.insert(m.topic.clone(), Some(m));
            }
            StoreOp::DeleteRetained { topic } => {
                self.retained.insert(topic, None);
            }
        }
    }
}
