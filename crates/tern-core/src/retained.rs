//! Retained messages, in a trie of topic levels so that a new subscription finds its matches
//! by walking its filter rather than scanning every retained topic.

use std::sync::Arc;
use std::time::Instant;

use crate::FastMap;
use crate::Message;
use crate::topic::split_level;

#[derive(Default)]
struct Node {
    children: FastMap<Box<str>, Node>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }

    fn emit_live(&self, now: Instant, f: &mut impl FnMut(&Arc<Message>)) {
        if let Some(m) = &self.message
            && !m.is_expired(now)
        {
            f(m);
        }
    }

    fn emit_subtree(&self, now: Instant, f: &mut impl FnMut(&Arc<Message>)) {
        self.emit_live(now, f);
        for child in self.children.values() {
            child.emit_subtree(now, f);
        }
    }

    fn walk(&self, filter: &str, first: bool, now: Instant, f: &mut impl FnMut(&Arc<Message>)) {
        let (level, rest) = split_level(filter);
        // Wildcards at the first level never match `$` topics (MQTT-4.7.2-1).
        let visible = |name: &str| !(first && name.starts_with('$'));
        match level {
            "#" => {
                if !first {
                    self.emit_live(now, f);
                }
                for (name, child) in &self.children {
                    if visible(name) {
                        child.emit_subtree(now, f);
                    }
                }
            }
            "+" => {
                for (name, child) in &self.children {
                    if visible(name) {
                        child.step(rest, now, f);
                    }
                }
            }
            literal => {
                if let Some(child) = self.children.get(literal) {
                    child.step(rest, now, f);
                }
            }
        }
    }

    fn step(&self, rest: Option<&str>, now: Instant, f: &mut impl FnMut(&Arc<Message>)) {
        match rest {
            Some(rest) => self.walk(rest, false, now, f),
            None => self.emit_live(now, f),
        }
    }
}

/// Every retained message, one per topic.
#[derive(Default)]
pub(crate) struct RetainedStore {
    root: Node,
    count: usize,
    /// How many of them are in the `$SYS` tree (metrics leave those out).
    sys_count: usize,
}

impl RetainedStore {
    /// Stores `message` as the topic's retained message, or removes the topic's retained
    /// message when the payload is empty (MQTT-3.3.1-10, MQTT-3.3.1-11).
    pub(crate) fn set(&mut self, message: Arc<Message>) {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return;
        }
        let node = message
            .topic
            .split('/')
            .fold(&mut self.root, |node, level| {
                node.children.entry(level.into()).or_default()
            });
        let sys = is_sys(&message.topic);
        if node.message.replace(message).is_none() {
            self.count += 1;
            self.sys_count += usize::from(sys);
        }
    }

    /// Removes the retained message of `topic`; returns whether there was one.
    pub(crate) fn remove(&mut self, topic: &str) -> bool {
        let removed = remove_at(&mut self.root, topic);
        if removed {
            self.count -= 1;
            self.sys_count -= usize::from(is_sys(topic));
        }
        removed
    }

    /// How many retained messages are in the `$SYS` tree.
    pub(crate) fn sys_len(&self) -> usize {
        self.sys_count
    }

    /// The retained message of exactly `topic`.
    #[cfg(test)]
    pub(crate) fn get(&self, topic: &str) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref()
    }

    /// Calls `f` for every unexpired retained message whose topic matches `filter`.
    pub(crate) fn for_each_match(
        &self,
        filter: &str,
        now: Instant,
        mut f: impl FnMut(&Arc<Message>),
    ) {
        self.root.walk(filter, true, now, &mut f);
    }

    /// Number of retained messages, expired ones not yet removed included.
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

fn remove_at(node: &mut Node, topic: &str) -> bool {
    let (level, rest) = split_level(topic);
    let Some(child) = node.children.get_mut(level) else {
        return false;
    };
    let removed = match rest {
        Some(rest) => remove_at(child, rest),
        None => child.message.take().is_some(),
    };
    if child.is_empty() {
        node.children.remove(level);
    }
    removed
}

/// Whether `topic` is in the `$SYS` tree.
fn is_sys(topic: &str) -> bool {
    topic.starts_with("$SYS/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::topic_matches;
    use bytes::Bytes;
    use tern_codec::{ByteString, PublishProperties, QoS};

    fn msg(topic: &str, payload: &'static str) -> Arc<Message> {
        Arc::new(Message {
            topic: ByteString::from(topic),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: PublishProperties::default(),
            expires_at: None,
            publisher: None,
        })
    }

    fn topics(store: &RetainedStore, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.for_each_match(filter, Instant::now(), |m| out.push(m.topic.to_string()));
        out.sort();
        out
    }

    #[test]
    fn set_replace_clear() {
        let mut store = RetainedStore::default();
        store.set(msg("a/b", "1"));
        store.set(msg("a/b", "2"));
        assert_eq!(store.len(), 1);
        assert_eq!(&store.get("a/b").unwrap().payload[..], b"2");
        store.set(msg("a/b", ""));
        assert_eq!(store.len(), 0);
        assert!(store.root.is_empty());
    }

    #[test]
    fn wildcard_lookup_follows_matching_rules() {
        let mut store = RetainedStore::default();
        let all = ["a", "a/b", "a/b/c", "a/", "/x", "$SYS/up", "b/c"];
        for t in all {
            store.set(msg(t, "x"));
        }
        for filter in [
            "#", "a/#", "a/+", "+/+", "+", "$SYS/#", "+/b/#", "a/b", "/+", "+/#",
        ] {
            let mut expected: Vec<String> = all
                .iter()
                .filter(|t| topic_matches(filter, t))
                .map(|t| t.to_string())
                .collect();
            expected.sort();
            assert_eq!(topics(&store, filter), expected, "filter {filter}");
        }
    }

    #[test]
    fn expired_messages_are_not_returned() {
        let mut store = RetainedStore::default();
        let mut m = (*msg("t", "x")).clone();
        m.expires_at = Some(Instant::now());
        store.set(Arc::new(m));
        assert!(topics(&store, "t").is_empty());
    }
}
