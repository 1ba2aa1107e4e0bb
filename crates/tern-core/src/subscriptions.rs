//! The subscription index: a trie of filter levels.
//!
//! A publish walks one path per matching pattern: the literal level, `+` and `#` at each step,
//! so its cost depends on the topic's depth and the wildcards present, not on the number of
//! subscriptions. Shared subscriptions hang off the node of their filter, one group per share
//! name.

use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_codec::{ByteString, SubscriptionOptions};

use crate::FastMap;
use crate::session::Session;
use crate::topic::split_level;

/// One session's subscription as the index holds it.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) session: Arc<Session>,
    pub(crate) options: SubscriptionOptions,
    pub(crate) identifier: Option<u32>,
}

/// The members of one shared subscription (`$share/{name}/{filter}`).
pub(crate) struct SharedGroup {
    /// The full shared filter, as clients wrote it.
    pub(crate) key: ByteString,
    members: Vec<Subscriber>,
    next: AtomicUsize,
}

impl SharedGroup {
    /// Picks the member for the next message: round robin, preferring connected members so
    /// that messages do not pile up in an offline member's queue while others could take them.
    pub(crate) fn pick(&self) -> Option<&Subscriber> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| &self.members[(start + i) % n])
            .find(|m| m.session.is_online())
            .or_else(|| self.members.get(start))
    }

    /// Like [`Self::pick`], skipping one client.
    pub(crate) fn pick_other(&self, exclude: &str) -> Option<&Subscriber> {
        let n = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = || {
            (0..n)
                .map(move |i| &self.members[(start + i) % n])
                .filter(|m| *m.session.client_id != *exclude)
        };
        candidates()
            .find(|m| m.session.is_online())
            .or_else(|| candidates().next())
    }
}

/// What a topic matched.
pub(crate) enum Match<'a> {
    /// The plain subscriptions of one filter.
    Plain(&'a Plain),
    Shared(&'a SharedGroup),
}

/// The plain subscriptions of one filter, one per session.
#[derive(Default)]
pub(crate) enum Plain {
    #[default]
    None,
    /// Most filters have one subscriber: kept inline, with no list or index to allocate or
    /// to follow when matching.
    One(Subscriber),
    /// The list is shared, copy on write, with the large fan-outs still queuing their copies
    /// (`Broker::publish_first`): they keep the list itself, not a copy of it.
    Many {
        list: Arc<Vec<Subscriber>>,
        /// Where each session's subscription is in `list`.
        position: FastMap<ByteString, usize>,
    },
}

impl Plain {
    fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    /// How many sessions subscribed.
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// The subscriptions, in no particular order.
    pub(crate) fn as_slice(&self) -> &[Subscriber] {
        match self {
            Self::None => &[],
            Self::One(s) => std::slice::from_ref(s),
            Self::Many { list, .. } => list,
        }
    }

    /// The list a fan-out can keep: with several subscriptions.
    pub(crate) fn shared(&self) -> Option<&Arc<Vec<Subscriber>>> {
        match self {
            Self::Many { list, .. } => Some(list),
            _ => None,
        }
    }

    /// Adds or replaces a session's subscription; returns whether it existed.
    fn insert(&mut self, subscriber: Subscriber) -> bool {
        match self {
            Self::None => {
                *self = Self::One(subscriber);
                false
            }
            Self::One(s) if s.session.client_id == subscriber.session.client_id => {
                *s = subscriber;
                true
            }
            Self::One(s) => {
                let position = [
                    (s.session.client_id.clone(), 0),
                    (subscriber.session.client_id.clone(), 1),
                ]
                .into_iter()
                .collect();
                let list = Arc::new(vec![s.clone(), subscriber]);
                *self = Self::Many { list, position };
                false
            }
            Self::Many { list, position } => {
                let list = Arc::make_mut(list);
                match position.entry(subscriber.session.client_id.clone()) {
                    Entry::Occupied(at) => {
                        list[*at.get()] = subscriber;
                        true
                    }
                    Entry::Vacant(at) => {
                        at.insert(list.len());
                        list.push(subscriber);
                        false
                    }
                }
            }
        }
    }

    /// Removes a session's subscription; returns whether it existed.
    fn remove(&mut self, client_id: &str) -> bool {
        match self {
            Self::None => false,
            Self::One(s) => {
                let found = *s.session.client_id == *client_id;
                if found {
                    *self = Self::None;
                }
                found
            }
            Self::Many { list, position } => {
                let Some(at) = position.remove(client_id) else {
                    return false;
                };
                let list = Arc::make_mut(list);
                list.swap_remove(at);
                if let Some(moved) = list.get(at)
                    && let Some(p) = position.get_mut(&*moved.session.client_id)
                {
                    *p = at;
                }
                if let [last] = list.as_slice() {
                    *self = Self::One(last.clone());
                }
                true
            }
        }
    }
}

#[derive(Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    subscribers: Plain,
    shared: FastMap<Box<str>, SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subscribers.is_empty() && self.shared.is_empty()
    }

    /// Reports the node's subscriptions.
    fn emit<'a>(&'a self, f: &mut impl FnMut(Match<'a>)) {
        if !self.subscribers.is_empty() {
            f(Match::Plain(&self.subscribers));
        }
        for g in self.shared.values() {
            f(Match::Shared(g));
        }
    }

    fn walk<'a>(&'a self, topic: &str, first: bool, dollar: bool, f: &mut impl FnMut(Match<'a>)) {
        let (level, rest) = split_level(topic);
        let wildcards_allowed = !(first && dollar);
        if let Some(child) = self.children.get(level) {
            child.visit(rest, dollar, f);
        }
        if wildcards_allowed {
            if let Some(child) = self.children.get("+") {
                child.visit(rest, dollar, f);
            }
            if let Some(child) = self.children.get("#") {
                child.emit(f);
            }
        }
    }

    /// Called on the node reached by consuming one level; `rest` is what is left of the topic.
    fn visit<'a>(&'a self, rest: Option<&str>, dollar: bool, f: &mut impl FnMut(Match<'a>)) {
        match rest {
            Some(rest) => self.walk(rest, false, dollar, f),
            None => {
                self.emit(f);
                // `a/#` also matches `a` (MQTT §4.7.1.2).
                if let Some(hash) = self.children.get("#") {
                    hash.emit(f);
                }
            }
        }
    }
}

/// The index of every subscription of every session.
#[derive(Default)]
pub(crate) struct SubscriptionTree {
    root: Node,
    count: usize,
    shared_count: usize,
}

impl SubscriptionTree {
    fn node_mut(&mut self, filter: &str) -> &mut Node {
        filter.split('/').fold(&mut self.root, |node, level| {
            node.children.entry(level.into()).or_default()
        })
    }

    /// Adds or replaces a subscription. `filter` is the plain filter; `share` the share name of a
    /// shared subscription, whose full text is `key`. Returns whether it existed before.
    pub(crate) fn insert(
        &mut self,
        filter: &str,
        share: Option<&str>,
        key: &ByteString,
        subscriber: Subscriber,
    ) -> bool {
        let node = self.node_mut(filter);
        let existed = match share {
            None => node.subscribers.insert(subscriber),
            Some(name) => {
                let group = node
                    .shared
                    .entry(name.into())
                    .or_insert_with(|| SharedGroup {
                        key: key.clone(),
                        members: Vec::new(),
                        next: AtomicUsize::new(0),
                    });
                let id = &subscriber.session.client_id;
                match group
                    .members
                    .iter_mut()
                    .find(|m| m.session.client_id == *id)
                {
                    Some(existing) => {
                        *existing = subscriber;
                        true
                    }
                    None => {
                        group.members.push(subscriber);
                        false
                    }
                }
            }
        };
        if !existed {
            self.count += 1;
            self.shared_count += usize::from(share.is_some());
        }
        existed
    }

    /// Removes one session's subscription; returns whether it existed.
    pub(crate) fn remove(&mut self, filter: &str, share: Option<&str>, client_id: &str) -> bool {
        let removed = remove_at(&mut self.root, Some(filter), share, client_id);
        if removed {
            self.count -= 1;
            self.shared_count -= usize::from(share.is_some());
        }
        removed
    }

    /// Calls `f` for the plain subscriptions of every filter matching `topic`, and for every
    /// matching shared group.
    pub(crate) fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(Match<'a>)) {
        self.root.walk(topic, true, topic.starts_with('$'), &mut f);
    }

    /// The shared group for a full `$share/...` key, if it exists.
    pub(crate) fn shared_group(&self, filter: &str, share: &str) -> Option<&SharedGroup> {
        let mut node = &self.root;
        for level in filter.split('/') {
            node = node.children.get(level)?;
        }
        node.shared.get(share)
    }

    /// Number of subscriptions (shared memberships included).
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Number of shared subscription memberships.
    pub(crate) fn shared_len(&self) -> usize {
        self.shared_count
    }
}

/// Removes a subscription below `node` and prunes nodes left empty.
fn remove_at(node: &mut Node, filter: Option<&str>, share: Option<&str>, client_id: &str) -> bool {
    let Some(filter) = filter else {
        return match share {
            None => node.subscribers.remove(client_id),
            Some(name) => {
                let Some(group) = node.shared.get_mut(name) else {
                    return false;
                };
                let before = group.members.len();
                group.members.retain(|m| *m.session.client_id != *client_id);
                let removed = group.members.len() != before;
                if group.members.is_empty() {
                    node.shared.remove(name);
                }
                removed
            }
        };
    };
    let (level, rest) = split_level(filter);
    let Some(child) = node.children.get_mut(level) else {
        return false;
    };
    let removed = remove_at(child, rest, share, client_id);
    if child.is_empty() {
        node.children.remove(level);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::topic_matches;
    use proptest::prelude::*;

    fn subscriber(id: &str) -> Subscriber {
        Subscriber {
            session: Arc::new(Session::new(ByteString::from(id), 0, Default::default())),
            options: SubscriptionOptions::default(),
            identifier: None,
        }
    }

    fn matched(tree: &SubscriptionTree, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |m| match m {
            Match::Plain(plain) => out.extend(
                plain
                    .as_slice()
                    .iter()
                    .map(|s| s.session.client_id.to_string()),
            ),
            Match::Shared(g) => out.push(g.key.to_string()),
        });
        out.sort();
        out
    }

    #[test]
    fn insert_match_remove_prunes() {
        let mut tree = SubscriptionTree::default();
        let key = ByteString::new();
        assert!(!tree.insert("a/+/c", None, &key, subscriber("x")));
        assert!(tree.insert("a/+/c", None, &key, subscriber("x")));
        tree.insert("a/#", None, &key, subscriber("y"));
        tree.insert("#", None, &key, subscriber("z"));
        assert_eq!(matched(&tree, "a/b/c"), ["x", "y", "z"]);
        assert_eq!(matched(&tree, "a"), ["y", "z"]);
        assert_eq!(matched(&tree, "$SYS/a"), Vec::<String>::new());
        assert_eq!(tree.len(), 3);
        assert!(tree.remove("a/+/c", None, "x"));
        assert!(!tree.remove("a/+/c", None, "x"));
        assert!(tree.remove("a/#", None, "y"));
        assert!(tree.remove("#", None, "z"));
        assert!(tree.root.is_empty());
        assert_eq!(tree.len(), 0);
    }

    #[test]
    fn shared_groups_match_once_per_group() {
        let mut tree = SubscriptionTree::default();
        let key = ByteString::from("$share/g/t/#");
        tree.insert("t/#", Some("g"), &key, subscriber("a"));
        tree.insert("t/#", Some("g"), &key, subscriber("b"));
        assert_eq!(matched(&tree, "t/1"), ["$share/g/t/#"]);
        assert_eq!(tree.shared_len(), 2);
        let group = tree.shared_group("t/#", "g").unwrap();
        let first = group.pick().unwrap().session.client_id.clone();
        let second = group.pick().unwrap().session.client_id.clone();
        assert_ne!(first, second, "round robin alternates");
        assert_eq!(&*group.pick_other("a").unwrap().session.client_id, "b");
        tree.remove("t/#", Some("g"), "a");
        tree.remove("t/#", Some("g"), "b");
        assert!(tree.root.is_empty());
    }

    /// The list a fan-out keeps while queuing its copies.
    fn plain_list(tree: &SubscriptionTree, topic: &str) -> Arc<Vec<Subscriber>> {
        let mut list = None;
        tree.for_each_match(topic, |m| {
            if let Match::Plain(p) = m {
                list = p.shared().cloned();
            }
        });
        list.unwrap()
    }

    fn ids(list: &[Subscriber]) -> Vec<String> {
        let mut ids: Vec<String> = list
            .iter()
            .map(|s| s.session.client_id.to_string())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_kept_list_is_not_changed_by_later_subscriptions() {
        let mut tree = SubscriptionTree::default();
        let key = ByteString::new();
        for id in ["a", "b", "c", "d"] {
            tree.insert("t", None, &key, subscriber(id));
        }
        let kept = plain_list(&tree, "t");
        assert!(tree.remove("t", None, "a"));
        tree.insert("t", None, &key, subscriber("e"));
        assert_eq!(ids(&kept), ["a", "b", "c", "d"]);
        assert_eq!(matched(&tree, "t"), ["b", "c", "d", "e"]);
        drop(kept);
        // Without a kept list, changes are made in place.
        let before = Arc::as_ptr(&plain_list(&tree, "t"));
        assert!(tree.remove("t", None, "c"));
        assert_eq!(Arc::as_ptr(&plain_list(&tree, "t")), before);
        assert_eq!(matched(&tree, "t"), ["b", "d", "e"]);
    }

    #[test]
    fn a_single_subscription_is_held_inline_and_a_second_makes_a_list() {
        let mut tree = SubscriptionTree::default();
        let key = ByteString::new();
        let kind = |tree: &SubscriptionTree| {
            let mut kind = "none";
            tree.for_each_match("t", |m| {
                if let Match::Plain(p) = m {
                    kind = if p.shared().is_some() { "list" } else { "one" };
                }
            });
            kind
        };
        tree.insert("t", None, &key, subscriber("x"));
        assert_eq!(
            (kind(&tree), matched(&tree, "t")),
            ("one", vec!["x".to_owned()])
        );
        assert!(tree.insert("t", None, &key, subscriber("x")), "replaced");
        tree.insert("t", None, &key, subscriber("y"));
        assert_eq!(kind(&tree), "list");
        assert!(tree.remove("t", None, "x"));
        assert_eq!(
            (kind(&tree), matched(&tree, "t")),
            ("one", vec!["y".to_owned()])
        );
        assert!(!tree.remove("t", None, "x"));
        assert!(tree.remove("t", None, "y"));
        assert!(tree.root.is_empty());
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just(String::new()),
            Just("$x".to_owned())
        ]
    }

    fn filter_level() -> impl Strategy<Value = String> {
        prop_oneof![level(), Just("+".to_owned())]
    }

    proptest! {
        /// Subscribing and unsubscribing sessions on one filter in any order leaves exactly the
        /// subscribed ones, each once.
        #[test]
        fn one_filter_keeps_each_subscribed_session_once(
            ops in prop::collection::vec((0u8..6, any::<bool>()), 1..60),
        ) {
            let mut tree = SubscriptionTree::default();
            let mut model = std::collections::BTreeSet::new();
            for (id, subscribe) in ops {
                let id = id.to_string();
                if subscribe {
                    let existed = tree.insert("t", None, &ByteString::new(), subscriber(&id));
                    prop_assert_eq!(existed, !model.insert(id));
                } else {
                    prop_assert_eq!(tree.remove("t", None, &id), model.remove(&id));
                }
                let expected: Vec<String> = model.iter().cloned().collect();
                prop_assert_eq!(matched(&tree, "t"), expected);
                prop_assert_eq!(tree.len(), model.len());
            }
        }
    }

    proptest! {
        /// The trie agrees with the straightforward matcher on every filter and topic.
        #[test]
        fn trie_agrees_with_naive_matcher(
            filters in prop::collection::vec(
                (prop::collection::vec(filter_level(), 1..4), any::<bool>()), 1..20),
            topics in prop::collection::vec(prop::collection::vec(level(), 1..5), 1..20),
        ) {
            let mut tree = SubscriptionTree::default();
            let mut plain = Vec::new();
            for (i, (levels, hash)) in filters.iter().enumerate() {
                let mut f = levels.join("/");
                if *hash { f.push_str("/#"); }
                tree.insert(&f, None, &ByteString::new(), subscriber(&i.to_string()));
                plain.push((i.to_string(), f));
            }
            for t in topics {
                let topic = t.join("/");
                let mut expected: Vec<String> = plain.iter()
                    .filter(|(_, f)| topic_matches(f, &topic))
                    .map(|(i, _)| i.clone()).collect();
                expected.sort();
                prop_assert_eq!(matched(&tree, &topic), expected, "topic {}", topic);
            }
        }
    }
}
