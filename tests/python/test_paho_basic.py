"""Interoperability with paho-mqtt in MQTT 3.1, 3.1.1 and 5.0: QoS 0/1/2 flows, retained
messages, wills, persistent sessions, and clients of different versions on the same topics.

Each test talks to its own `tern` (the `tern` fixture) through paho's threaded loop.
"""

from __future__ import annotations

import pytest

from clients import (
    MQTTv5,
    MQTTv31,
    MQTTv311,
    Client,
    connect_properties,
    publish_properties,
    unique,
    user_properties,
)

QOS_LEVELS = [0, 1, 2]


# --- helpers ---


def qos_round_trip(connect, protocol: int, qos: int, granted: int = 2):
    """Subscribes at `granted`, publishes at `qos` with the same protocol version, and returns
    the message the subscriber received."""
    topic = unique("qos") + "/t"
    sub = connect(protocol=protocol)
    codes = sub.subscribe(topic, granted)
    assert [c.value for c in codes] == [granted]
    pub = connect(protocol=protocol)
    payload = f"qos {qos} from {pub.client_id}".encode()
    pub.publish(topic, payload, qos)
    message = sub.expect_message()
    assert (message.topic, message.payload) == (topic, payload)
    return message


def sync_marker(sub: Client, pub: Client, topic: str) -> None:
    """Publishes a QoS 1 marker on `topic` and waits for `sub` to receive it as its next
    message: whatever the broker queued for `sub` before the marker has arrived by then."""
    pub.publish(topic, b"marker", 1)
    message = sub.expect_message()
    assert (message.topic, message.payload) == (topic, b"marker"), (
        f"expected the marker, got {message.topic!r}: {message.payload!r}"
    )


def check_retained_replaced(connect, protocol: int) -> None:
    """A retained message reaches a later subscriber with RETAIN 1, and a newer retained
    message replaces it."""
    topic = unique("ret") + "/t"
    pub = connect(protocol=protocol)
    pub.publish(topic, b"first", 1, retain=True)
    pub.publish(topic, b"second", 1, retain=True)
    sub = connect(protocol=protocol)
    sub.subscribe(topic, 1)
    message = sub.expect_message()
    assert (message.payload, message.retain, message.qos) == (b"second", True, 1)
    sync_marker(sub, pub, topic)


def check_empty_retained_clears(connect, protocol: int) -> None:
    """An empty retained PUBLISH reaches current subscribers and removes the retained message:
    a later subscriber gets nothing for that topic."""
    base = unique("clr")
    topic = base + "/gone"
    pub = connect(protocol=protocol)
    pub.publish(topic, b"kept for now", 1, retain=True)
    live = connect(protocol=protocol)
    live.subscribe(topic, 1)
    assert live.expect_message().payload == b"kept for now"
    pub.publish(topic, b"", 1, retain=True)
    cleared = live.expect_message()
    assert (cleared.payload, cleared.retain) == (b"", False)
    later = connect(protocol=protocol)
    later.subscribe(base + "/#", 1)
    sync_marker(later, pub, base + "/marker")


def check_will_on_abnormal_close(connect, make_client, protocol: int, retain: bool) -> None:
    """A client that disappears without DISCONNECT has its Will published (retained when
    asked)."""
    topic = unique("will") + "/status"
    watcher = connect(protocol=protocol)
    watcher.subscribe(topic, 1)
    dying = make_client(protocol=protocol).will(topic, b"gone", 1, retain).connect()
    dying.drop()
    message = watcher.expect_message()
    assert (message.topic, message.payload, message.qos, message.retain) == (
        topic,
        b"gone",
        1,
        False,
    )
    if retain:
        later = connect(protocol=protocol)
        later.subscribe(topic, 1)
        stored = later.expect_message()
        assert (stored.payload, stored.retain) == (b"gone", True)


def check_disconnect_discards_will(connect, make_client, protocol: int) -> None:
    """A client that sends DISCONNECT does not have its Will published."""
    base = unique("nowill")
    watcher = connect(protocol=protocol)
    watcher.subscribe(base + "/#", 1)
    leaving = make_client(protocol=protocol).will(base + "/status", b"gone", 1).connect()
    leaving.disconnect()
    other = connect(protocol=protocol)
    sync_marker(watcher, other, base + "/marker")
    watcher.expect_nothing()


def persistent_client(make_client, client_id: str, protocol: int) -> Client:
    """Connects `client_id` keeping its session (Clean Session 0 / Clean Start 0 with a
    one-minute Session Expiry Interval)."""
    client = make_client(client_id, protocol, clean=False)
    properties = connect_properties(SessionExpiryInterval=60) if protocol == MQTTv5 else None
    return client.connect(properties)


def check_queued_while_offline(connect, make_client, protocol: int) -> None:
    """QoS 1 messages published while a persistent session is offline are delivered, in order,
    when its client reconnects, and CONNACK says Session Present."""
    client_id = unique("persist")
    topic = unique("q") + "/t"
    first = persistent_client(make_client, client_id, protocol)
    assert not first.session_present
    first.subscribe(topic, 1)
    first.disconnect()
    pub = connect(protocol=protocol)
    payloads = [f"queued {i}".encode() for i in range(3)]
    for payload in payloads:
        pub.publish(topic, payload, 1)
    again = persistent_client(make_client, client_id, protocol)
    # MQTT 3.1's CONNACK has no Session Present flag: its first byte is always 0.
    assert again.session_present is (protocol != MQTTv31)
    received = again.expect_messages(len(payloads))
    assert [(m.topic, m.payload, m.qos) for m in received] == [(topic, p, 1) for p in payloads]


# --- QoS flows ---


@pytest.mark.parametrize("qos", QOS_LEVELS)
def mqtt5_3_3_4_1_paho_publish_flow_completes_and_is_delivered(connect, qos):
    """MQTT 5: a paho QoS 0/1/2 publish completes (PUBACK, PUBREC/PUBCOMP) and a subscriber
    granted QoS 2 receives it at the published QoS."""
    assert qos_round_trip(connect, MQTTv5, qos).qos == qos


@pytest.mark.parametrize("qos", QOS_LEVELS)
def mqtt311_3_3_4_1_paho_publish_flow_completes_and_is_delivered(connect, qos):
    """MQTT 3.1.1: a paho QoS 0/1/2 publish completes and is delivered at the published QoS."""
    assert qos_round_trip(connect, MQTTv311, qos).qos == qos


@pytest.mark.parametrize("qos", QOS_LEVELS)
def mqtt31_s3_1_same_paho_publish_flow_completes_and_is_delivered(connect, qos):
    """MQTT 3.1 (MQIsdp): a paho QoS 0/1/2 publish completes and is delivered at the
    published QoS."""
    assert qos_round_trip(connect, MQTTv31, qos).qos == qos


DOWNGRADES = [(2, 0), (2, 1), (1, 0), (0, 2), (1, 2)]


@pytest.mark.parametrize(("published", "granted"), DOWNGRADES)
def mqtt5_3_8_4_8_delivered_at_min_of_published_and_granted_qos(connect, published, granted):
    """MQTT 5: a message is delivered at the lower of its QoS and the subscription's."""
    message = qos_round_trip(connect, MQTTv5, published, granted)
    assert message.qos == min(published, granted)


@pytest.mark.parametrize(("published", "granted"), DOWNGRADES)
def mqtt311_3_8_4_6_delivered_at_min_of_published_and_granted_qos(connect, published, granted):
    """MQTT 3.1.1: a message is delivered at the lower of its QoS and the subscription's."""
    message = qos_round_trip(connect, MQTTv311, published, granted)
    assert message.qos == min(published, granted)


# --- retained messages ---


def mqtt5_3_3_1_5_retained_message_stored_and_replaced(connect):
    """MQTT 5: RETAIN 1 stores the message for later subscribers; a newer one replaces it."""
    check_retained_replaced(connect, MQTTv5)


def mqtt311_3_3_1_5_retained_message_stored_and_replaced(connect):
    """MQTT 3.1.1: RETAIN 1 stores the message for later subscribers; a newer one replaces it."""
    check_retained_replaced(connect, MQTTv311)


def mqtt31_s3_1_same_retained_message_stored_and_replaced(connect):
    """MQTT 3.1: RETAIN 1 stores the message for later subscribers; a newer one replaces it."""
    check_retained_replaced(connect, MQTTv31)


def mqtt311_3_3_1_9_established_subscription_gets_retain_0(connect):
    """MQTT 3.1.1: a retained publish reaches an existing subscription with RETAIN 0, and the
    same message sent because of a new subscription has RETAIN 1 (MQTT-3.3.1-8)."""
    topic = unique("rflag") + "/t"
    live = connect(protocol=MQTTv311)
    live.subscribe(topic, 1)
    pub = connect(protocol=MQTTv311)
    pub.publish(topic, b"r", 1, retain=True)
    assert live.expect_message().retain is False
    later = connect(protocol=MQTTv311)
    later.subscribe(topic, 1)
    assert later.expect_message().retain is True


def mqtt311_3_3_1_8_new_subscription_gets_retain_1(connect):
    """MQTT 3.1.1: the retained message sent because a subscription was just made has
    RETAIN 1, whatever QoS the subscription asks for."""
    topic = unique("rnew") + "/t"
    pub = connect(protocol=MQTTv311)
    pub.publish(topic, b"stored", 2, retain=True)
    sub = connect(protocol=MQTTv311)
    sub.subscribe(topic, 0)
    message = sub.expect_message()
    assert (message.payload, message.retain, message.qos) == (b"stored", True, 0)


def mqtt5_3_3_1_6_empty_retained_payload_clears(connect):
    """MQTT 5: an empty retained message is delivered and removes the retained message."""
    check_empty_retained_clears(connect, MQTTv5)


def mqtt311_3_3_1_10_empty_retained_payload_clears(connect):
    """MQTT 3.1.1: an empty retained message is delivered with RETAIN 0 to current subscribers
    and removes the topic's retained message."""
    check_empty_retained_clears(connect, MQTTv311)


def mqtt31_s3_1_same_empty_retained_payload_clears(connect):
    """MQTT 3.1: an empty retained message removes the topic's retained message."""
    check_empty_retained_clears(connect, MQTTv31)


def mqtt311_3_3_1_12_non_retained_publish_keeps_retained_message(connect):
    """MQTT 3.1.1: a RETAIN 0 publish neither stores itself nor replaces the retained one."""
    topic = unique("keep") + "/t"
    pub = connect(protocol=MQTTv311)
    pub.publish(topic, b"retained", 1, retain=True)
    pub.publish(topic, b"not retained", 1, retain=False)
    sub = connect(protocol=MQTTv311)
    sub.subscribe(topic, 1)
    message = sub.expect_message()
    assert (message.payload, message.retain) == (b"retained", True)
    sync_marker(sub, pub, topic)


# --- wills ---


def mqtt5_3_1_2_8_will_published_on_abnormal_close(connect, make_client):
    """MQTT 5: closing the TCP connection without DISCONNECT publishes the Will."""
    check_will_on_abnormal_close(connect, make_client, MQTTv5, retain=False)


def mqtt311_3_1_2_8_will_published_on_abnormal_close(connect, make_client):
    """MQTT 3.1.1: closing the TCP connection without DISCONNECT publishes the Will."""
    check_will_on_abnormal_close(connect, make_client, MQTTv311, retain=False)


def mqtt31_s3_1_same_will_published_on_abnormal_close(connect, make_client):
    """MQTT 3.1: closing the TCP connection without DISCONNECT publishes the Will."""
    check_will_on_abnormal_close(connect, make_client, MQTTv31, retain=False)


def mqtt5_3_1_2_15_will_retain_publishes_retained(connect, make_client):
    """MQTT 5: a Will with Will Retain 1 is published as a retained message."""
    check_will_on_abnormal_close(connect, make_client, MQTTv5, retain=True)


def mqtt311_3_1_2_17_will_retain_publishes_retained(connect, make_client):
    """MQTT 3.1.1: a Will with Will Retain 1 is published as a retained message."""
    check_will_on_abnormal_close(connect, make_client, MQTTv311, retain=True)


def mqtt5_3_14_4_3_disconnect_discards_will(connect, make_client):
    """MQTT 5: DISCONNECT (reason 0x00) removes the Will without publishing it."""
    check_disconnect_discards_will(connect, make_client, MQTTv5)


def mqtt311_3_14_4_3_disconnect_discards_will(connect, make_client):
    """MQTT 3.1.1: DISCONNECT removes the Will without publishing it."""
    check_disconnect_discards_will(connect, make_client, MQTTv311)


def mqtt31_s3_1_same_disconnect_discards_will(connect, make_client):
    """MQTT 3.1: DISCONNECT removes the Will without publishing it."""
    check_disconnect_discards_will(connect, make_client, MQTTv31)


# --- persistent sessions ---


def mqtt5_3_1_2_5_queued_qos1_delivered_on_resume(connect, make_client):
    """MQTT 5: with Clean Start 0 and a Session Expiry Interval, QoS 1 messages published
    while the client was away are delivered in order when it resumes its session."""
    check_queued_while_offline(connect, make_client, MQTTv5)


def mqtt311_3_1_2_5_queued_qos1_delivered_on_resume(connect, make_client):
    """MQTT 3.1.1: with Clean Session 0, QoS 1 messages published while the client was away
    are delivered in order when it reconnects (Session Present 1, MQTT-3.2.2-2)."""
    check_queued_while_offline(connect, make_client, MQTTv311)


def mqtt31_s3_1_same_queued_qos1_delivered_on_resume(connect, make_client):
    """MQTT 3.1: with Clean Session 0, QoS 1 messages published while the client was away
    are delivered in order when it reconnects."""
    check_queued_while_offline(connect, make_client, MQTTv31)


def mqtt311_3_1_2_6_clean_session_discards_queued_messages(connect, make_client):
    """MQTT 3.1.1: reconnecting with Clean Session 1 throws the stored session away: Session
    Present 0, and neither its queued messages nor its subscriptions survive."""
    client_id = unique("discard")
    topic = unique("q") + "/t"
    first = persistent_client(make_client, client_id, MQTTv311)
    first.subscribe(topic, 1)
    first.disconnect()
    pub = connect(protocol=MQTTv311)
    pub.publish(topic, b"queued", 1)
    fresh = make_client(client_id, MQTTv311, clean=True).connect()
    assert not fresh.session_present
    fresh.subscribe(unique("other"), 1)  # a round trip: queued messages would precede SUBACK
    fresh.expect_nothing()


def mqtt5_3_1_2_4_clean_start_discards_session(connect, make_client):
    """MQTT 5: Clean Start 1 discards the stored session: Session Present 0, no queued
    messages."""
    client_id = unique("discard5")
    topic = unique("q") + "/t"
    first = persistent_client(make_client, client_id, MQTTv5)
    first.subscribe(topic, 1)
    first.disconnect()
    pub = connect(protocol=MQTTv5)
    pub.publish(topic, b"queued", 1)
    fresh = make_client(client_id, MQTTv5, clean=True).connect()
    assert not fresh.session_present
    fresh.subscribe(unique("other"), 1)
    fresh.expect_nothing()


# --- several protocol versions on the same topics ---


def mqtt5_s3_3_4_properties_dropped_for_v3_subscribers(connect):
    """A message published by an MQTT 5 client with properties reaches 3.1.1 and 3.1
    subscribers with exactly its topic and payload (the properties are not encoded into
    their PUBLISH)."""
    topic = unique("cross") + "/t"
    subs = [connect(protocol=MQTTv311), connect(protocol=MQTTv31), connect(protocol=MQTTv5)]
    for sub in subs:
        sub.subscribe(topic, 2)
    pub = connect(protocol=MQTTv5)
    props = publish_properties(UserProperty=[("k", "v")], ContentType="text/plain")
    pub.publish(topic, b"to every version", 2, properties=props)
    received = [sub.expect_message() for sub in subs]
    for message in received:
        assert (message.topic, message.payload, message.qos) == (topic, b"to every version", 2)
    assert user_properties(received[2]) == [("k", "v")]


def mqtt311_s_cross_version_v3_publish_reaches_v5_subscriber(connect):
    """Messages published by 3.1 and 3.1.1 clients reach an MQTT 5 subscriber unchanged."""
    topic = unique("cross") + "/t"
    sub = connect(protocol=MQTTv5)
    sub.subscribe(topic, 1)
    connect(protocol=MQTTv311).publish(topic, b"from 3.1.1", 1)
    connect(protocol=MQTTv31).publish(topic, b"from 3.1", 1)
    payloads = sorted(m.payload for m in sub.expect_messages(2))
    assert payloads == [b"from 3.1", b"from 3.1.1"]
