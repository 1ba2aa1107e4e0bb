//! Recovery: rows read from the engine become the broker's [`Snapshot`] and the writer's
//! [`Index`]. Deliveries and retained entries of one stored message share one `Arc<Message>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tern_codec::ByteString;
use tern_core::{DeliveryRecord, Message, SessionSnapshot, Snapshot};

use crate::StoreError;
use crate::codec::{self, Clocks, Damaged, IdMap};
use crate::index::{Index, Slot, key};
use crate::net::Net;

/// Collects the rows an engine reads, in this order: messages, sessions, then the rest.
pub(crate) struct Loader {
    path: PathBuf,
    clocks: Clocks,
    messages: IdMap<u64, Arc<Message>>,
    sessions: BTreeMap<ByteString, SessionSnapshot>,
    retained: Vec<Arc<Message>>,
    index: Index,
    /// Rows of clients without a session row: not part of any session, removed by the first
    /// commit (they cannot come from a correct sequence of operations).
    orphans: Vec<ByteString>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Loader {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            clocks: Clocks::read(),
            messages: IdMap::default(),
            sessions: BTreeMap::new(),
            retained: Vec::new(),
            index: Index::default(),
            orphans: Vec::new(),
        }
    }

    fn damaged(&self, what: String, e: Damaged) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: format!("{what}: {}", e.0),
        }
    }

    fn string(&self, what: &str, b: &[u8]) -> Result<ByteString, StoreError> {
        ByteString::try_from(b).map_err(|_| {
            self.damaged(
                format!("{what} {:?}", text(b)),
                Damaged("the key is not UTF-8"),
            )
        })
    }

    pub(crate) fn message(&mut self, id: u64, data: &[u8]) -> Result<(), StoreError> {
        // One allocation: the message's fields are slices of it.
        let data = bytes::Bytes::copy_from_slice(data);
        let m = codec::unseal(&[&key::message(id)], &data)
            .and_then(|b| codec::decode_message(b, &data, self.clocks))
            .map_err(|e| self.damaged(format!("message {id}"), e))?;
        let m = Arc::new(m);
        self.index.next_id = self.index.next_id.max(id + 1);
        self.index.msgs.insert(
            codec::message_ptr(&m),
            Slot {
                id,
                refs: 0,
                _pin: m.clone(),
            },
        );
        self.messages.insert(id, m);
        Ok(())
    }

    pub(crate) fn session(&mut self, client: &[u8], data: &[u8]) -> Result<(), StoreError> {
        let client_id = self.string("session", client)?;
        let rec = codec::unseal(&[b"s", client], data)
            .and_then(|b| codec::decode_session(client_id.clone(), b, self.clocks))
            .map_err(|e| self.damaged(format!("session {:?}", text(client)), e))?;
        self.index
            .clients
            .entry(client_id.clone())
            .or_default()
            .session = true;
        self.sessions.insert(
            client_id,
            SessionSnapshot {
                record: rec,
                subscriptions: Vec::new(),
                deliveries: Vec::new(),
                incoming_qos2: Vec::new(),
            },
        );
        Ok(())
    }

    fn owner(
        &mut self,
        client: &[u8],
        what: &str,
    ) -> Result<Option<(ByteString, &mut SessionSnapshot)>, StoreError> {
        let id = self.string(what, client)?;
        if !self.sessions.contains_key(&id) {
            if self.orphans.last() != Some(&id) && !self.orphans.contains(&id) {
                tracing::warn!(
                    client_id = %id,
                    "the store holds {what} rows of a client without a session; they are ignored and removed"
                );
                self.orphans.push(id.clone());
            }
            self.index.clients.entry(id).or_default();
            return Ok(None);
        }
        let s = self.sessions.get_mut(&id).expect("checked above");
        Ok(Some((id, s)))
    }

    pub(crate) fn subscription(
        &mut self,
        client: &[u8],
        filter: &[u8],
        data: &[u8],
    ) -> Result<(), StoreError> {
        let f = self.string("subscription", filter)?;
        let (options, id) = codec::unseal(&[b"u", client, filter], data)
            .and_then(codec::decode_subscription)
            .map_err(|e| {
                self.damaged(
                    format!("subscription {:?} of {:?}", text(filter), text(client)),
                    e,
                )
            })?;
        let Some((cid, s)) = self.owner(client, "subscription")? else {
            return Ok(());
        };
        s.subscriptions.push((f.clone(), options, id));
        self.index.clients.entry(cid).or_default().subs.insert(f);
        Ok(())
    }

    pub(crate) fn delivery(
        &mut self,
        client: &[u8],
        seq: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        let what = || format!("delivery {seq} of {:?}", text(client));
        let (mid, f) = codec::unseal(&[b"d", client, &key::seq(seq)], data)
            .and_then(codec::decode_delivery)
            .map_err(|e| self.damaged(what(), e))?;
        let Some(message) = self.messages.get(&mid).cloned() else {
            return Err(self.damaged(what(), Damaged("it refers to a message that is missing")));
        };
        let ptr = codec::message_ptr(&message);
        let Some((cid, s)) = self.owner(client, "delivery")? else {
            return Ok(());
        };
        s.deliveries.push(DeliveryRecord {
            client_id: cid.clone(),
            seq,
            message,
            qos: f.qos,
            retain: f.retain,
            subscription_identifiers: f.subscription_identifiers,
            shared: f.shared,
            state: f.state,
        });
        self.index
            .clients
            .entry(cid)
            .or_default()
            .deliveries
            .insert(seq, ptr);
        if let Some(slot) = self.index.msgs.get_mut(&ptr) {
            slot.refs += 1;
        }
        Ok(())
    }

    pub(crate) fn incoming(
        &mut self,
        client: &[u8],
        pid: u16,
        data: &[u8],
    ) -> Result<(), StoreError> {
        codec::unseal(&[b"i", client, &key::pid(pid)], data)
            .and_then(|b| codec::Dec::new(b).end())
            .map_err(|e| {
                self.damaged(format!("incoming packet id {pid} of {:?}", text(client)), e)
            })?;
        let Some((cid, s)) = self.owner(client, "incoming packet id")? else {
            return Ok(());
        };
        s.incoming_qos2.push(pid);
        self.index
            .clients
            .entry(cid)
            .or_default()
            .incoming
            .insert(pid);
        Ok(())
    }

    pub(crate) fn retained(&mut self, topic: &[u8], data: &[u8]) -> Result<(), StoreError> {
        let what = || format!("retained message of {:?}", text(topic));
        let mid = codec::unseal(&[b"r", topic], data)
            .and_then(codec::decode_id)
            .map_err(|e| self.damaged(what(), e))?;
        let Some(message) = self.messages.get(&mid).cloned() else {
            return Err(self.damaged(what(), Damaged("it refers to a message that is missing")));
        };
        if message.topic.as_bytes().as_ref() != topic {
            return Err(self.damaged(what(), Damaged("its message has another topic")));
        }
        let ptr = codec::message_ptr(&message);
        if let Some(slot) = self.index.msgs.get_mut(&ptr) {
            slot.refs += 1;
        }
        self.index.retained.insert(message.topic.clone(), ptr);
        self.retained.push(message);
        Ok(())
    }

    /// The snapshot, the index, and the changes the first commit must make (removing rows no
    /// session owns).
    pub(crate) fn finish(mut self) -> (Snapshot, Index, Net) {
        let mut net = Net::default();
        for id in self.orphans {
            net.apply(tern_core::StoreOp::DeleteSession { client_id: id });
        }
        net.ops = 0;
        self.index.maybe_dead = self
            .index
            .msgs
            .iter()
            .filter(|(_, s)| s.refs == 0)
            .map(|(p, _)| *p)
            .collect();
        if !self.index.maybe_dead.is_empty() {
            tracing::warn!(
                count = self.index.maybe_dead.len(),
                "the store holds messages nothing refers to; they are removed"
            );
        }
        self.index.next_id = self.index.next_id.max(1);
        let snapshot = Snapshot {
            sessions: self.sessions.into_values().collect(),
            retained: self.retained,
        };
        (snapshot, self.index, net)
    }
}
