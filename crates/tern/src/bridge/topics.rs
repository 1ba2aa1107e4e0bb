//! Topic remapping, as Mosquitto's `topic PATTERN DIRECTION QOS LOCAL-PREFIX REMOTE-PREFIX`:
//! a message whose topic is `LOCAL-PREFIX + rest` on this broker is `REMOTE-PREFIX + rest` on
//! the remote one, and back. The bridge subscribes to `LOCAL-PREFIX + PATTERN` here for the
//! `out` (and `both`) topics, and to `REMOTE-PREFIX + PATTERN` there for the `in` (and `both`)
//! ones. An empty pattern makes the prefixes whole topics.

use tern_codec::QoS;
use tern_core::topic_matches;

use crate::config::{BridgeDirection, BridgeTopic};

/// One subscription the bridge makes on one side, and how what it brings is renamed for the
/// other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// The filter subscribed to on the side the messages come from.
    pub(crate) filter: String,
    /// The QoS of that subscription, which caps the QoS of the messages carried.
    pub(crate) qos: QoS,
    /// The prefix removed from the topic of a message that matched.
    pub(crate) from_prefix: String,
    /// The prefix put in its place for the other side.
    pub(crate) to_prefix: String,
}

impl Route {
    /// The topic on the other side for `topic`, or `None` if `topic` does not match this
    /// route (or would map to an empty topic).
    pub(crate) fn map(&self, topic: &str) -> Option<String> {
        if !topic_matches(&self.filter, topic) {
            return None;
        }
        let rest = topic.strip_prefix(self.from_prefix.as_str())?;
        let mapped = format!("{}{rest}", self.to_prefix);
        (!mapped.is_empty()).then_some(mapped)
    }
}

/// The routes of a bridge: which subscriptions it makes on each side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Routes {
    /// Local subscriptions whose messages go to the remote broker, in the file's order.
    pub(crate) out: Vec<Route>,
    /// Remote subscriptions whose messages come to this broker, in the file's order.
    pub(crate) inbound: Vec<Route>,
}

impl Routes {
    /// The routes of `topics`.
    pub(crate) fn new(topics: &[BridgeTopic]) -> Self {
        let mut routes = Self::default();
        for t in topics {
            let local = format!("{}{}", t.local_prefix, t.pattern);
            let remote = format!("{}{}", t.remote_prefix, t.pattern);
            if matches!(t.direction, BridgeDirection::Out | BridgeDirection::Both) {
                routes.out.push(Route {
                    filter: local.clone(),
                    qos: t.qos,
                    from_prefix: t.local_prefix.clone(),
                    to_prefix: t.remote_prefix.clone(),
                });
            }
            if matches!(t.direction, BridgeDirection::In | BridgeDirection::Both) {
                routes.inbound.push(Route {
                    filter: remote,
                    qos: t.qos,
                    from_prefix: t.remote_prefix.clone(),
                    to_prefix: t.local_prefix.clone(),
                });
            }
        }
        routes
    }

    /// The remote topic of a local message, and the QoS cap of its route. `identifier` is
    /// the subscription identifier the local broker sent with it (the route's index + 1),
    /// which picks the route when several match; without one, the first route that matches.
    pub(crate) fn outgoing(&self, topic: &str, identifier: Option<u32>) -> Option<(String, QoS)> {
        pick(&self.out, topic, identifier)
    }

    /// The local topic of a remote message, and the QoS cap of its route.
    pub(crate) fn incoming(&self, topic: &str, identifier: Option<u32>) -> Option<(String, QoS)> {
        pick(&self.inbound, topic, identifier)
    }
}

fn pick(routes: &[Route], topic: &str, identifier: Option<u32>) -> Option<(String, QoS)> {
    let chosen = identifier
        .and_then(|id| usize::try_from(id).ok()?.checked_sub(1))
        .and_then(|i| routes.get(i))
        .and_then(|r| r.map(topic).map(|t| (t, r.qos)));
    chosen.or_else(|| routes.iter().find_map(|r| r.map(topic).map(|t| (t, r.qos))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(pattern: &str, direction: BridgeDirection, local: &str, remote: &str) -> BridgeTopic {
        BridgeTopic::new(pattern, direction, QoS::AtLeastOnce, local, remote)
    }

    #[test]
    fn without_prefixes_topics_are_carried_unchanged() {
        let routes = Routes::new(&[topic("sensors/#", BridgeDirection::Both, "", "")]);
        assert_eq!(routes.out[0].filter, "sensors/#");
        assert_eq!(routes.inbound[0].filter, "sensors/#");
        assert_eq!(
            routes.outgoing("sensors/a/t", None),
            Some(("sensors/a/t".to_owned(), QoS::AtLeastOnce))
        );
        assert_eq!(
            routes.incoming("sensors/b", None),
            Some(("sensors/b".to_owned(), QoS::AtLeastOnce))
        );
        assert_eq!(routes.outgoing("other/x", None), None);
    }

    #[test]
    fn prefixes_are_swapped_in_both_directions() {
        let routes = Routes::new(&[topic("t/#", BridgeDirection::Both, "edge/", "hq/site1/")]);
        assert_eq!(routes.out[0].filter, "edge/t/#");
        assert_eq!(routes.inbound[0].filter, "hq/site1/t/#");
        assert_eq!(
            routes.outgoing("edge/t/1", None).map(|r| r.0),
            Some("hq/site1/t/1".to_owned())
        );
        assert_eq!(
            routes.incoming("hq/site1/t/2", None).map(|r| r.0),
            Some("edge/t/2".to_owned())
        );
        // Without its prefix a topic does not match the route.
        assert_eq!(routes.outgoing("t/1", None), None);
        assert_eq!(routes.incoming("t/2", None), None);
    }

    #[test]
    fn an_empty_pattern_makes_the_prefixes_whole_topics() {
        let routes = Routes::new(&[topic(
            "",
            BridgeDirection::Out,
            "local/topic",
            "remote/topic",
        )]);
        assert_eq!(routes.out[0].filter, "local/topic");
        assert!(routes.inbound.is_empty());
        assert_eq!(
            routes.outgoing("local/topic", None).map(|r| r.0),
            Some("remote/topic".to_owned())
        );
        assert_eq!(routes.outgoing("local/topic/x", None), None);
    }

    #[test]
    fn directions_choose_the_side_subscribed_to() {
        let routes = Routes::new(&[
            topic("a/#", BridgeDirection::Out, "", ""),
            topic("b/#", BridgeDirection::In, "", ""),
        ]);
        assert_eq!(routes.out.len(), 1);
        assert_eq!(routes.inbound.len(), 1);
        assert_eq!(routes.outgoing("b/1", None), None);
        assert_eq!(routes.incoming("a/1", None), None);
    }

    #[test]
    fn the_subscription_identifier_picks_among_overlapping_routes() {
        let mut t2 = topic("#", BridgeDirection::Out, "x/", "second/");
        t2.qos = QoS::ExactlyOnce;
        let routes = Routes::new(&[topic("#", BridgeDirection::Out, "x/", "first/"), t2]);
        assert_eq!(
            routes.outgoing("x/y", Some(2)),
            Some(("second/y".to_owned(), QoS::ExactlyOnce))
        );
        assert_eq!(
            routes.outgoing("x/y", Some(1)).map(|r| r.0),
            Some("first/y".to_owned())
        );
        // No identifier, or one that does not fit: the first route that matches.
        assert_eq!(
            routes.outgoing("x/y", None).map(|r| r.0),
            Some("first/y".to_owned())
        );
        assert_eq!(
            routes.outgoing("x/y", Some(9)).map(|r| r.0),
            Some("first/y".to_owned())
        );
    }

    #[test]
    fn wildcards_do_not_reach_dollar_topics() {
        let routes = Routes::new(&[topic("#", BridgeDirection::Both, "", "")]);
        assert_eq!(routes.outgoing("$SYS/broker/uptime", None), None);
    }
}
