//! What the store holds, as the writer knows it: which rows exist and which message each refers
//! to, with a reference count per stored message. From it and the net effect of a batch the
//! writer plans the exact rows to write ([`WriteSet`]), skipping every change that leaves the
//! store as it is, and undoes its own bookkeeping when the commit fails.
//!
//! Messages are stored once and shared: a message is known by the address of its `Arc` while the
//! index holds a clone of that `Arc` (so the address cannot be reused by another message), and
//! its row goes when the last delivery or retained entry referring to it goes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::mem;
use std::sync::Arc;

use tern_codec::ByteString;
use tern_core::Message;

use crate::codec::{self, Clocks, IdMap};
use crate::net::Net;

/// One stored message.
#[derive(Clone)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) refs: u32,
    /// Keeps the message alive, so that its address stays its identity.
    pub(crate) _pin: Arc<Message>,
}

/// The stored rows of one client.
#[derive(Default, Clone)]
pub(crate) struct ClientIdx {
    pub(crate) session: bool,
    pub(crate) subs: HashSet<ByteString>,
    /// Delivery seq → message address.
    pub(crate) deliveries: BTreeMap<u64, usize>,
    pub(crate) incoming: BTreeSet<u16>,
}

impl ClientIdx {
    fn is_empty(&self) -> bool {
        !self.session
            && self.subs.is_empty()
            && self.deliveries.is_empty()
            && self.incoming.is_empty()
    }
}

/// The writer's knowledge of the store.
#[derive(Default)]
pub(crate) struct Index {
    pub(crate) msgs: IdMap<usize, Slot>,
    pub(crate) next_id: u64,
    pub(crate) clients: HashMap<ByteString, ClientIdx>,
    pub(crate) retained: HashMap<ByteString, usize>,
    /// Messages that may have no reference left (found at load); checked by the next plan.
    pub(crate) maybe_dead: Vec<usize>,
}

/// The rows one transaction writes. Bodies are sealed (see [`codec::seal`]).
#[derive(Default, Debug)]
pub(crate) struct WriteSet {
    /// Clients whose every row (session, subscriptions, deliveries, incoming ids) goes first.
    pub(crate) cleared: Vec<ByteString>,
    pub(crate) messages_put: Vec<(u64, Vec<u8>)>,
    pub(crate) messages_del: Vec<u64>,
    pub(crate) sessions_put: Vec<(ByteString, Vec<u8>)>,
    pub(crate) subs_put: Vec<(ByteString, ByteString, Vec<u8>)>,
    pub(crate) subs_del: Vec<(ByteString, ByteString)>,
    pub(crate) deliveries_put: Vec<(ByteString, u64, Vec<u8>)>,
    pub(crate) deliveries_del: Vec<(ByteString, u64)>,
    pub(crate) incoming_put: Vec<(ByteString, u16, Vec<u8>)>,
    pub(crate) incoming_del: Vec<(ByteString, u16)>,
    pub(crate) retained_put: Vec<(ByteString, Vec<u8>)>,
    pub(crate) retained_del: Vec<ByteString>,
}

impl WriteSet {
    /// Rows written or deleted (a cleared client counts once).
    pub(crate) fn rows(&self) -> usize {
        self.cleared.len()
            + self.messages_put.len()
            + self.messages_del.len()
            + self.sessions_put.len()
            + self.subs_put.len()
            + self.subs_del.len()
            + self.deliveries_put.len()
            + self.deliveries_del.len()
            + self.incoming_put.len()
            + self.incoming_del.len()
            + self.retained_put.len()
            + self.retained_del.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows() == 0
    }
}

/// Seal keys, one tag per table.
pub(crate) mod key {
    pub(crate) fn message(id: u64) -> [u8; 9] {
        let mut k = [b'm'; 9];
        k[1..].copy_from_slice(&id.to_le_bytes());
        k
    }
    pub(crate) fn seq(seq: u64) -> [u8; 8] {
        seq.to_le_bytes()
    }
    pub(crate) fn pid(pid: u16) -> [u8; 2] {
        pid.to_le_bytes()
    }
}

/// One change to the index, recorded so that a failed commit can take it back.
enum Undo {
    Slot(usize, Option<Slot>),
    NextId(u64),
    MaybeDead(Vec<usize>),
    ClientAdded(ByteString),
    ClientRemoved(ByteString, ClientIdx),
    Session(ByteString, bool),
    Sub(ByteString, ByteString, bool),
    Delivery(ByteString, u64, Option<usize>),
    Incoming(ByteString, u16, bool),
    Retained(ByteString, Option<usize>),
}

/// The undo log of one plan.
#[derive(Default)]
pub(crate) struct Journal(Vec<Undo>);

impl Index {
    fn slot_change(&mut self, ptr: usize, j: &mut Journal, f: impl FnOnce(&mut Slot)) {
        if let Some(slot) = self.msgs.get_mut(&ptr) {
            j.0.push(Undo::Slot(ptr, Some(slot.clone())));
            f(slot);
        }
    }

    /// Takes a reference to `m`, inserting its row if the store does not hold it.
    fn reference(
        &mut self,
        m: &Arc<Message>,
        c: Clocks,
        ws: &mut WriteSet,
        j: &mut Journal,
    ) -> (usize, u64) {
        let ptr = codec::message_ptr(m);
        if let Some(slot) = self.msgs.get(&ptr) {
            let id = slot.id;
            self.slot_change(ptr, j, |s| s.refs += 1);
            return (ptr, id);
        }
        let id = self.next_id;
        j.0.push(Undo::NextId(id));
        self.next_id += 1;
        j.0.push(Undo::Slot(ptr, None));
        self.msgs.insert(
            ptr,
            Slot {
                id,
                refs: 1,
                _pin: m.clone(),
            },
        );
        let body = codec::encode_message(m, c);
        ws.messages_put
            .push((id, codec::seal(&[&key::message(id)], &body)));
        (ptr, id)
    }

    fn release(&mut self, ptr: usize, touched: &mut Vec<usize>, j: &mut Journal) {
        self.slot_change(ptr, j, |s| s.refs = s.refs.saturating_sub(1));
        touched.push(ptr);
    }

    fn client_mut(&mut self, id: &ByteString, j: &mut Journal) -> &mut ClientIdx {
        if !self.clients.contains_key(id) {
            j.0.push(Undo::ClientAdded(id.clone()));
        }
        self.clients.entry(id.clone()).or_default()
    }

    /// Plans the rows for `net`, updating the index as if they were committed; `j` records how to
    /// take that back.
    pub(crate) fn plan(&mut self, net: &Net, c: Clocks, j: &mut Journal) -> WriteSet {
        let mut ws = WriteSet::default();
        let first_new_id = self.next_id;
        let mut touched = mem::take(&mut self.maybe_dead);
        if !touched.is_empty() {
            j.0.push(Undo::MaybeDead(touched.clone()));
        }

        for (client, cn) in &net.clients {
            let cb = client.as_bytes().as_ref();
            if cn.cleared
                && let Some(old) = self.clients.remove(client)
            {
                for &ptr in old.deliveries.values() {
                    self.release(ptr, &mut touched, j);
                }
                j.0.push(Undo::ClientRemoved(client.clone(), old));
                ws.cleared.push(client.clone());
            }
            if let Some(rec) = &cn.session {
                let body = codec::encode_session(rec, c);
                ws.sessions_put
                    .push((client.clone(), codec::seal(&[b"s", cb], &body)));
                let idx = self.client_mut(client, j);
                let old = mem::replace(&mut idx.session, true);
                j.0.push(Undo::Session(client.clone(), old));
            }
            for (filter, v) in &cn.subs {
                let fb = filter.as_bytes().as_ref();
                match v {
                    Some((options, id)) => {
                        let body = codec::encode_subscription(options, *id);
                        ws.subs_put.push((
                            client.clone(),
                            filter.clone(),
                            codec::seal(&[b"u", cb, fb], &body),
                        ));
                        let old = !self.client_mut(client, j).subs.insert(filter.clone());
                        j.0.push(Undo::Sub(client.clone(), filter.clone(), old));
                    }
                    None => {
                        if let Some(idx) = self.clients.get_mut(client)
                            && idx.subs.remove(filter)
                        {
                            ws.subs_del.push((client.clone(), filter.clone()));
                            j.0.push(Undo::Sub(client.clone(), filter.clone(), true));
                        }
                    }
                }
            }
            for (&seq, v) in &cn.deliveries {
                match v {
                    Some(rec) => {
                        let (ptr, id) = self.reference(&rec.message, c, &mut ws, j);
                        let body = codec::encode_delivery(rec, id);
                        ws.deliveries_put.push((
                            client.clone(),
                            seq,
                            codec::seal(&[b"d", cb, &key::seq(seq)], &body),
                        ));
                        let old = self.client_mut(client, j).deliveries.insert(seq, ptr);
                        j.0.push(Undo::Delivery(client.clone(), seq, old));
                        if let Some(old) = old {
                            self.release(old, &mut touched, j);
                        }
                    }
                    None => {
                        let old = self
                            .clients
                            .get_mut(client)
                            .and_then(|idx| idx.deliveries.remove(&seq));
                        if let Some(old) = old {
                            ws.deliveries_del.push((client.clone(), seq));
                            j.0.push(Undo::Delivery(client.clone(), seq, Some(old)));
                            self.release(old, &mut touched, j);
                        }
                    }
                }
            }
            for (&pid, &add) in &cn.incoming {
                if add {
                    ws.incoming_put.push((
                        client.clone(),
                        pid,
                        codec::seal(&[b"i", cb, &key::pid(pid)], &[]),
                    ));
                    let old = !self.client_mut(client, j).incoming.insert(pid);
                    j.0.push(Undo::Incoming(client.clone(), pid, old));
                } else if let Some(idx) = self.clients.get_mut(client)
                    && idx.incoming.remove(&pid)
                {
                    ws.incoming_del.push((client.clone(), pid));
                    j.0.push(Undo::Incoming(client.clone(), pid, true));
                }
            }
            if self.clients.get(client).is_some_and(ClientIdx::is_empty)
                && let Some(old) = self.clients.remove(client)
            {
                j.0.push(Undo::ClientRemoved(client.clone(), old));
            }
        }

        for (topic, v) in &net.retained {
            let tb = topic.as_bytes().as_ref();
            let old = match v {
                Some(m) => {
                    let (ptr, id) = self.reference(m, c, &mut ws, j);
                    ws.retained_put.push((
                        topic.clone(),
                        codec::seal(&[b"r", tb], &codec::encode_id(id)),
                    ));
                    self.retained.insert(topic.clone(), ptr)
                }
                None => {
                    let old = self.retained.remove(topic);
                    if old.is_some() {
                        ws.retained_del.push(topic.clone());
                    }
                    old
                }
            };
            if v.is_some() || old.is_some() {
                j.0.push(Undo::Retained(topic.clone(), old));
            }
            if let Some(old) = old {
                self.release(old, &mut touched, j);
            }
        }

        touched.sort_unstable();
        touched.dedup();
        for ptr in touched {
            if self.msgs.get(&ptr).is_some_and(|s| s.refs == 0) {
                let slot = self.msgs.remove(&ptr).expect("checked above");
                let id = slot.id;
                j.0.push(Undo::Slot(ptr, Some(slot)));
                if id >= first_new_id {
                    ws.messages_put.retain(|(i, _)| *i != id);
                } else {
                    ws.messages_del.push(id);
                }
            }
        }
        ws
    }

    /// Takes back the changes recorded in `j`.
    pub(crate) fn undo(&mut self, j: Journal) {
        for u in j.0.into_iter().rev() {
            match u {
                Undo::Slot(ptr, old) => match old {
                    Some(s) => {
                        self.msgs.insert(ptr, s);
                    }
                    None => {
                        self.msgs.remove(&ptr);
                    }
                },
                Undo::NextId(id) => self.next_id = id,
                Undo::MaybeDead(v) => self.maybe_dead = v,
                Undo::ClientAdded(c) => {
                    self.clients.remove(&c);
                }
                Undo::ClientRemoved(c, idx) => {
                    self.clients.insert(c, idx);
                }
                Undo::Session(c, old) => {
                    if let Some(idx) = self.clients.get_mut(&c) {
                        idx.session = old;
                    }
                }
                Undo::Sub(c, f, old) => {
                    if let Some(idx) = self.clients.get_mut(&c) {
                        if old {
                            idx.subs.insert(f);
                        } else {
                            idx.subs.remove(&f);
                        }
                    }
                }
                Undo::Delivery(c, seq, old) => {
                    if let Some(idx) = self.clients.get_mut(&c) {
                        match old {
                            Some(p) => idx.deliveries.insert(seq, p),
                            None => idx.deliveries.remove(&seq),
                        };
                    }
                }
                Undo::Incoming(c, pid, old) => {
                    if let Some(idx) = self.clients.get_mut(&c) {
                        if old {
                            idx.incoming.insert(pid);
                        } else {
                            idx.incoming.remove(&pid);
                        }
                    }
                }
                Undo::Retained(t, old) => {
                    match old {
                        Some(p) => self.retained.insert(t, p),
                        None => self.retained.remove(&t),
                    };
                }
            }
        }
    }

    /// Messages held (for statistics).
    pub(crate) fn message_count(&self) -> usize {
        self.msgs.len()
    }
}
