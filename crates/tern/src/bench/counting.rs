//! Exact counting: which message each receiver saw, what the topic rules say it should have
//! seen, and the errors by kind.
//!
//! Every receiving task keeps its own counters and sequence sets, without sharing anything;
//! they are merged once at the end. A *domain* is what must see each message once: one
//! subscriber, or one shared subscription group (whose consumers' sets are united).

use std::collections::{BTreeMap, VecDeque};

use tern_client::ClientError;

use super::payload::Header;

/// The largest span of sequence numbers one set tracks beyond its contiguous prefix (bits);
/// messages further ahead are counted as malformed instead of growing the set without bound.
const MAX_SPAN_BITS: u64 = 1 << 27;

/// A set of sequence numbers: every number below `base`, plus a bitmap above it. Messages that
/// arrive in order keep the bitmap to a word or two whatever the run's length.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqSet {
    base: u64,
    words: VecDeque<u64>,
}

impl SeqSet {
    /// Adds `seq`: `Some(true)` if it is new, `Some(false)` if it was there, `None` if it is
    /// too far ahead to track.
    pub(crate) fn insert(&mut self, seq: u32) -> Option<bool> {
        let seq = u64::from(seq);
        if seq < self.base {
            return Some(false);
        }
        let offset = seq - self.base;
        if offset >= MAX_SPAN_BITS {
            return None;
        }
        let word = (offset / 64) as usize;
        let bit = 1u64 << (offset % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        if self.words[word] & bit != 0 {
            return Some(false);
        }
        self.words[word] |= bit;
        while self.words.front() == Some(&u64::MAX) {
            self.words.pop_front();
            self.base += 64;
        }
        Some(true)
    }

    /// How many numbers the set holds.
    pub(crate) fn len(&self) -> u64 {
        self.base
            + self
                .words
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum::<u64>()
    }

    /// Adds every number of `other`.
    pub(crate) fn union_with(&mut self, other: &SeqSet) {
        if other.base > self.base {
            let mut merged = other.clone();
            merged.absorb_bits(self);
            *self = merged;
        } else {
            self.absorb_bits(other);
        }
    }

    /// Adds the bitmap part of `other`, whose base is not above ours.
    fn absorb_bits(&mut self, other: &SeqSet) {
        for (i, &word) in other.words.iter().enumerate() {
            let mut w = word;
            while w != 0 {
                let bit = u64::from(w.trailing_zeros());
                w &= w - 1;
                let seq = other.base + i as u64 * 64 + bit;
                if let Ok(seq) = u32::try_from(seq) {
                    let _ = self.insert(seq);
                }
            }
        }
    }
}

/// What one receiver saw from one publisher.
#[derive(Debug, Clone, Default)]
pub(crate) struct PairTracker {
    pub set: SeqSet,
    max_seen: Option<u32>,
    /// Deliveries, duplicates included.
    pub received: u64,
    /// Distinct sequence numbers.
    pub unique: u64,
    /// Deliveries of a sequence number this receiver had already seen.
    pub duplicates: u64,
    /// New sequence numbers below the highest one seen.
    pub out_of_order: u64,
}

impl PairTracker {
    /// Counts one delivery; `false` if the sequence number is beyond what can be tracked.
    pub(crate) fn mark(&mut self, seq: u32) -> bool {
        match self.set.insert(seq) {
            None => false,
            Some(new) => {
                self.received += 1;
                if new {
                    self.unique += 1;
                    match self.max_seen {
                        Some(max) if seq < max => self.out_of_order += 1,
                        _ => self.max_seen = Some(seq),
                    }
                } else {
                    self.duplicates += 1;
                }
                true
            }
        }
    }
}

/// Which receiver domain should see which message, from the topic rules of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routing {
    /// Publishers outside the run (sub): nothing is expected; whatever arrives is counted.
    External,
    /// Every domain receives every message (fanin, fanout, shared with its one group domain).
    All,
    /// Domain `i` receives the messages of publisher `i` (p2p).
    Pair,
    /// Message `k` of publisher `j` goes to domain `(j + k·publishers) mod domains` (wildcard).
    Rotate {
        /// Number of publishers.
        publishers: usize,
        /// Number of domains (subscribers).
        domains: usize,
    },
}

impl Routing {
    /// Whether `domain` should receive message `seq` of `publisher`.
    pub(crate) fn accepts(self, domain: usize, publisher: usize, seq: u32) -> bool {
        match self {
            Self::External | Self::All => true,
            Self::Pair => publisher == domain,
            Self::Rotate {
                publishers,
                domains,
            } => (publisher + seq as usize * publishers) % domains == domain,
        }
    }

    /// The topic index (`dev/<index>/x`) of message `seq` of `publisher` under [`Self::Rotate`].
    pub(crate) fn rotate_target(
        publishers: usize,
        domains: usize,
        publisher: usize,
        seq: u64,
    ) -> usize {
        ((publisher as u64 + seq * publishers as u64) % domains as u64) as usize
    }

    /// How many messages each domain should receive, given what each publisher sent and which
    /// of its messages the broker refused. Domains that are not `active` (never subscribed)
    /// expect nothing.
    pub(crate) fn expected(self, active: &[bool], publishers: &[PublisherOutcome]) -> Vec<u64> {
        let mut expected = vec![0u64; active.len()];
        match self {
            Self::External => {}
            Self::All => {
                let total: u64 = publishers.iter().map(PublisherOutcome::accepted).sum();
                for (e, &a) in expected.iter_mut().zip(active) {
                    if a {
                        *e = total;
                    }
                }
            }
            Self::Pair => {
                for p in publishers {
                    if active.get(p.index).copied().unwrap_or(false) {
                        expected[p.index] += p.accepted();
                    }
                }
            }
            Self::Rotate {
                publishers: count,
                domains,
            } => {
                for p in publishers {
                    for seq in 0..p.sent {
                        let d = Self::rotate_target(count, domains, p.index, seq);
                        if active[d] {
                            expected[d] += 1;
                        }
                    }
                    for &seq in &p.rejected {
                        let d = Self::rotate_target(count, domains, p.index, u64::from(seq));
                        if active[d] {
                            expected[d] -= 1;
                        }
                    }
                }
            }
        }
        expected
    }
}

/// Errors by kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct Errors(pub BTreeMap<&'static str, u64>);

impl Errors {
    /// Counts one error of `kind`.
    pub(crate) fn add(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    /// Adds every count of `other`.
    pub(crate) fn merge(&mut self, other: &Errors) {
        for (k, v) in &other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    /// `; errors: kind: n, ...`, or nothing when there is no error.
    pub(crate) fn summary(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let kinds: Vec<_> = self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("; errors: {}", kinds.join(", "))
    }

    /// The kind of a failed connection attempt.
    pub(crate) fn connect_kind(e: &ClientError) -> &'static str {
        match e {
            ClientError::Timeout(_) => "connect_timeout",
            ClientError::Refused(_) => "connack_refused",
            ClientError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection_refused"
            }
            ClientError::Io(io) if io.kind() == std::io::ErrorKind::AddrNotAvailable => {
                "address_not_available"
            }
            ClientError::Io(_) => "connect_io",
            ClientError::Closed(_) => "connect_closed",
            ClientError::Decode(_) | ClientError::Encode(_) | ClientError::Protocol(_) => {
                "connect_protocol"
            }
        }
    }

    /// The kind of an error on an established connection.
    pub(crate) fn session_kind(e: &ClientError) -> &'static str {
        match e {
            ClientError::Timeout(_) => "keepalive_timeout",
            ClientError::Closed(None) => "closed_by_broker",
            ClientError::Closed(Some(_)) => "disconnected_by_broker",
            ClientError::Io(_) => "io",
            ClientError::Decode(_) => "decode",
            ClientError::Encode(_) => "encode",
            ClientError::Refused(_) | ClientError::Protocol(_) => "protocol",
        }
    }
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublisherOutcome {
    pub index: usize,
    pub connected: bool,
    /// Messages handed to the connection.
    pub sent: u64,
    /// QoS 1/2 messages completed with a success reason code.
    pub acked: u64,
    /// Sequence numbers of the QoS 1/2 messages the broker refused (error reason code).
    pub rejected: Vec<u32>,
    /// When the last message was sent (run clock).
    pub last_send_ns: u64,
    /// Publishing stopped at the time limit before the count was reached.
    pub hit_time_limit: bool,
    pub errors: Errors,
}

impl PublisherOutcome {
    /// Messages the broker did not refuse.
    pub(crate) fn accepted(&self) -> u64 {
        self.sent - self.rejected.len() as u64
    }
}

/// What one subscriber (or conn client) saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct SubscriberOutcome {
    pub domain: usize,
    pub connected: bool,
    /// The subscription is in place (SUBACK with a success code for every filter of ours).
    pub subscribed: bool,
    /// Per publisher index.
    pub trackers: Vec<PairTracker>,
    /// Every PUBLISH received.
    pub received: u64,
    /// Messages from a publisher (or with a sequence number) this domain should not get.
    pub unexpected: u64,
    /// Payloads without our header, or beyond what can be tracked.
    pub malformed: u64,
    /// When the last message arrived (run clock).
    pub last_receive_ns: u64,
    pub errors: Errors,
}

impl SubscriberOutcome {
    /// Counts one delivery of `header` (the caller counts it in `received`).
    pub(crate) fn count(&mut self, routing: Routing, header: &Header) -> Delivery {
        let publisher = header.publisher as usize;
        if !routing.accepts(self.domain, publisher, header.seq) {
            self.unexpected += 1;
            return Delivery::Unexpected;
        }
        if publisher >= self.trackers.len() {
            if publisher >= 1 << 20 {
                self.malformed += 1;
                return Delivery::Malformed;
            }
            self.trackers
                .resize_with(publisher + 1, PairTracker::default);
        }
        let tracker = &mut self.trackers[publisher];
        let unique = tracker.unique;
        if !tracker.mark(header.seq) {
            self.malformed += 1;
            return Delivery::Malformed;
        }
        if tracker.unique > unique {
            Delivery::New
        } else {
            Delivery::Duplicate
        }
    }

    /// Distinct messages of this subscriber alone.
    pub(crate) fn unique(&self) -> u64 {
        self.trackers.iter().map(|t| t.unique).sum()
    }
}

/// How one delivery was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A message this domain should get, seen for the first time.
    New,
    /// A message seen before.
    Duplicate,
    /// From a publisher, or with a sequence number, that this domain should not get.
    Unexpected,
    /// Not one of our payloads, or beyond what can be tracked.
    Malformed,
}

/// The merged counts of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DomainCounts {
    /// Deliveries that the domain should receive, duplicates included.
    pub received: u64,
    /// Distinct messages over the domain.
    pub unique: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// Merges the subscribers of one domain: sequence sets are united per publisher, so a message
/// delivered to two consumers of a shared group counts once and the second as a duplicate.
pub(crate) fn merge_domain(members: &[&SubscriberOutcome]) -> DomainCounts {
    let mut counts = DomainCounts::default();
    for m in members {
        for t in &m.trackers {
            counts.received += t.received;
            counts.out_of_order += t.out_of_order;
        }
    }
    if let [only] = members {
        counts.unique = only.unique();
    } else {
        let publishers = members.iter().map(|m| m.trackers.len()).max().unwrap_or(0);
        for p in 0..publishers {
            let mut union = SeqSet::default();
            for m in members {
                if let Some(t) = m.trackers.get(p) {
                    union.union_with(&t.set);
                }
            }
            counts.unique += union.len();
        }
    }
    counts.duplicates = counts.received - counts.unique;
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_set_counts_in_order_and_holes() {
        let mut s = SeqSet::default();
        for i in 0..1000 {
            assert_eq!(s.insert(i), Some(true));
        }
        assert!(s.words.len() <= 1, "in-order numbers keep the bitmap small");
        assert_eq!(s.insert(5), Some(false));
        assert_eq!(s.insert(2000), Some(true));
        assert_eq!(s.insert(2000), Some(false));
        assert_eq!(s.len(), 1001);
    }

    #[test]
    fn tracker_tells_duplicates_from_reordering() {
        let mut t = PairTracker::default();
        for seq in [0, 1, 3, 2, 3, 4] {
            t.mark(seq);
        }
        assert_eq!(
            (t.received, t.unique, t.duplicates, t.out_of_order),
            (6, 5, 1, 1)
        );
    }

    #[test]
    fn shared_group_unites_its_consumers() {
        let mut a = SubscriberOutcome::default();
        let mut b = SubscriberOutcome::default();
        for seq in 0..100u32 {
            let h = Header {
                publisher: 0,
                seq,
                sent_ns: 0,
            };
            if seq % 2 == 0 { &mut a } else { &mut b }.count(Routing::All, &h);
        }
        // One message delivered to both consumers.
        b.count(
            Routing::All,
            &Header {
                publisher: 0,
                seq: 10,
                sent_ns: 0,
            },
        );
        let c = merge_domain(&[&a, &b]);
        assert_eq!((c.received, c.unique, c.duplicates), (101, 100, 1));
    }

    #[test]
    fn rotation_expectations() {
        let r = Routing::Rotate {
            publishers: 2,
            domains: 3,
        };
        let pubs = [
            PublisherOutcome {
                index: 0,
                sent: 6,
                ..Default::default()
            },
            PublisherOutcome {
                index: 1,
                sent: 3,
                rejected: vec![0],
                ..Default::default()
            },
        ];
        // Publisher 0 → 0,2,1,0,2,1; publisher 1 → 1,0,2 with seq 0 (→1) refused.
        assert_eq!(r.expected(&[true, true, true], &pubs), [3, 2, 3]);
        assert_eq!(r.expected(&[true, false, true], &pubs), [3, 0, 3]);
        assert!(r.accepts(2, 0, 1) && !r.accepts(1, 0, 1));
    }
}
