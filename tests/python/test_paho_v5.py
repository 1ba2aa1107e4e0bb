"""MQTT 5 features through paho-mqtt: properties passed through to subscribers, message
expiry, subscription identifiers, subscription options (no local, retain as published, retain
handling), shared subscriptions, topic aliases sent by paho, request/response, Will properties
and assigned client identifiers.
"""

from __future__ import annotations

import math
import queue
import time

from paho.mqtt.subscribeoptions import SubscribeOptions

from clients import (
    QUIET,
    TIMEOUT,
    Client,
    connect_properties,
    publish_properties,
    subscribe_properties,
    unique,
    user_properties,
    will_properties,
)


# --- helpers ---


def forwarded(connect, **properties) -> tuple[object, object]:
    """Publishes one QoS 1 message with the given PUBLISH properties and returns the
    properties the subscriber received, and the message."""
    topic = unique("props") + "/t"
    sub = connect()
    sub.subscribe(topic, 1)
    pub = connect()
    pub.publish(topic, b"with properties", 1, properties=publish_properties(**properties))
    message = sub.expect_message()
    assert (message.topic, message.payload) == (topic, b"with properties")
    return message.properties, message


def let_time_pass(seconds: float) -> None:
    """Lets `seconds` of wall-clock time pass. This is the quantity under test (message
    expiry is measured in seconds of waiting in the broker), not a wait for some state."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


def offline_subscriber(make_client, topic: str) -> str:
    """Creates a persistent session subscribed to `topic` at QoS 1 whose client is then
    disconnected; returns its client id."""
    client_id = unique("offline")
    client = make_client(client_id, clean=False)
    client.connect(connect_properties(SessionExpiryInterval=60))
    client.subscribe(topic, 1)
    client.disconnect()
    return client_id


def resume(make_client, client_id: str) -> Client:
    """Reconnects to the persistent session `client_id`."""
    client = make_client(client_id, clean=False)
    client.connect(connect_properties(SessionExpiryInterval=60))
    assert client.session_present
    return client


def expect_marker(sub: Client, pub: Client, topic: str) -> None:
    """Publishes a QoS 1 marker and checks that it is the next message `sub` receives."""
    pub.publish(topic, b"marker", 1)
    message = sub.expect_message()
    assert (message.topic, message.payload) == (topic, b"marker"), (
        f"expected the marker, got {message.topic!r}: {message.payload!r}"
    )


def subscription_ids(message) -> list[int]:
    """The Subscription Identifiers of a received message (empty when it has none)."""
    props = message.properties
    if props is None or not hasattr(props, "SubscriptionIdentifier"):
        return []
    return list(props.SubscriptionIdentifier)


# --- properties passed through ---


def mqtt5_3_3_2_17_user_properties_forwarded(connect):
    """Every User Property of a PUBLISH reaches the subscriber, repeated names included."""
    pairs = [("name", "first"), ("name", "second"), ("empty", "")]
    _, message = forwarded(connect, UserProperty=pairs)
    assert sorted(user_properties(message)) == sorted(pairs)


def mqtt5_3_3_2_18_user_properties_order_kept(connect):
    """User Properties reach the subscriber in the order the publisher sent them."""
    pairs = [("z", "1"), ("a", "2"), ("m", "3"), ("a", "4"), ("ünï", "cödé")]
    _, message = forwarded(connect, UserProperty=pairs)
    assert user_properties(message) == pairs


def mqtt5_3_3_2_20_content_type_forwarded(connect):
    """The Content Type reaches the subscriber unchanged."""
    props, _ = forwarded(connect, ContentType="application/json; charset=utf-8")
    assert props.ContentType == "application/json; charset=utf-8"


def mqtt5_3_3_2_15_response_topic_forwarded(connect):
    """The Response Topic reaches the subscriber unchanged."""
    props, _ = forwarded(connect, ResponseTopic="replies/for/me")
    assert props.ResponseTopic == "replies/for/me"


def mqtt5_3_3_2_16_correlation_data_forwarded(connect):
    """Correlation Data (binary, with zero bytes) reaches the subscriber unchanged."""
    data = bytes([0, 1, 2, 0xFF, 0, 0x80])
    props, _ = forwarded(connect, CorrelationData=data)
    assert props.CorrelationData == data


def mqtt5_3_3_2_4_payload_format_indicator_forwarded(connect):
    """The Payload Format Indicator reaches the subscriber unchanged."""
    props, _ = forwarded(connect, PayloadFormatIndicator=1)
    assert props.PayloadFormatIndicator == 1


def mqtt5_3_3_2_6_message_expiry_forwarded_to_live_subscriber(connect):
    """A message delivered at once carries its Message Expiry Interval (minus at most the
    second it may have waited); a message without one arrives without one."""
    props, _ = forwarded(connect, MessageExpiryInterval=60)
    assert props.MessageExpiryInterval in (59, 60)
    plain, _ = forwarded(connect, ContentType="text/plain")
    assert not hasattr(plain, "MessageExpiryInterval")


def mqtt5_3_3_2_6_message_expiry_reduced_by_time_queued(connect, make_client):
    """A message that waited in an offline session is delivered with its Message Expiry
    Interval reduced by the time it waited."""
    topic = unique("expiry") + "/t"
    client_id = offline_subscriber(make_client, topic)
    pub = connect()
    published = time.monotonic()
    pub.publish(topic, b"waits", 1, properties=publish_properties(MessageExpiryInterval=30))
    let_time_pass(1.5)
    message = resume(make_client, client_id).expect_message()
    waited = time.monotonic() - published
    assert message.payload == b"waits"
    assert 30 - math.ceil(waited) <= message.properties.MessageExpiryInterval <= 29


def mqtt5_3_3_2_5_expired_message_not_delivered(connect, make_client):
    """A message whose Message Expiry Interval passed while it was queued for an offline
    session is not delivered; a later message without expiry still is."""
    topic = unique("expired") + "/t"
    client_id = offline_subscriber(make_client, topic)
    pub = connect()
    pub.publish(topic, b"expires", 1, properties=publish_properties(MessageExpiryInterval=1))
    pub.publish(topic, b"stays", 1)
    let_time_pass(2.2)
    client = resume(make_client, client_id)
    assert client.expect_message().payload == b"stays"
    client.expect_nothing()


# --- subscription identifiers ---


def mqtt5_3_3_4_3_subscription_identifier_sent_with_message(connect):
    """A message matching a subscription made with a Subscription Identifier carries it; one
    matching a subscription without identifier carries none."""
    base = unique("sid")
    sub = connect()
    sub.subscribe(base + "/with", 1, properties=subscribe_properties(SubscriptionIdentifier=7))
    sub.subscribe(base + "/without", 1)
    pub = connect()
    pub.publish(base + "/with", b"1", 1)
    assert subscription_ids(sub.expect_message()) == [7]
    pub.publish(base + "/without", b"2", 1)
    assert subscription_ids(sub.expect_message()) == []


def mqtt5_3_3_4_4_overlapping_subscriptions_identifiers(connect):
    """A message matching two subscriptions of one session, each with its own Subscription
    Identifier, is delivered once carrying both identifiers."""
    base = unique("sid")
    sub = connect()
    sub.subscribe(base + "/a/#", 1, properties=subscribe_properties(SubscriptionIdentifier=11))
    sub.subscribe(base + "/+/b", 1, properties=subscribe_properties(SubscriptionIdentifier=22))
    pub = connect()
    pub.publish(base + "/a/b", b"both", 1)
    message = sub.expect_message()
    assert sorted(subscription_ids(message)) == [11, 22]
    expect_marker(sub, pub, base + "/a/marker")


def mqtt5_s3_8_4_resubscribe_replaces_subscription_identifier(connect):
    """Subscribing again to the same filter with another Subscription Identifier replaces
    the identifier sent with later messages."""
    topic = unique("sid") + "/t"
    sub = connect()
    sub.subscribe(topic, 1, properties=subscribe_properties(SubscriptionIdentifier=5))
    sub.subscribe(topic, 1, properties=subscribe_properties(SubscriptionIdentifier=6))
    connect().publish(topic, b"x", 1)
    assert subscription_ids(sub.expect_message()) == [6]
    sub.expect_nothing()


# --- subscription options ---


def mqtt5_3_8_3_3_no_local_not_sent_to_publisher(connect):
    """With No Local, a client's own messages are not sent back to it; other clients'
    messages on the same topic are."""
    topic = unique("nolocal") + "/t"
    me = connect()
    me.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
    me.publish(topic, b"mine", 1)
    connect().publish(topic, b"theirs", 1)
    assert me.expect_message().payload == b"theirs"
    me.expect_nothing()


def mqtt5_3_3_1_13_retain_as_published_keeps_retain_flag(connect):
    """With Retain As Published, a retained message forwarded on an established subscription
    keeps RETAIN 1; without it, RETAIN is 0 (MQTT-3.3.1-12)."""
    topic = unique("rap") + "/t"
    kept = connect()
    kept.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=True))
    cleared = connect()
    cleared.subscribe(topic, options=SubscribeOptions(qos=1, retainAsPublished=False))
    connect().publish(topic, b"r", 1, retain=True)
    assert kept.expect_message().retain is True
    assert cleared.expect_message().retain is False


def mqtt5_3_3_1_11_retain_handling_2_sends_no_retained(connect):
    """Retain Handling 2: no retained message is sent when the subscription is made."""
    topic = unique("rh2") + "/t"
    pub = connect()
    pub.publish(topic, b"stored", 1, retain=True)
    sub = connect()
    sub.subscribe(topic, options=SubscribeOptions(qos=1, retainHandling=2))
    expect_marker(sub, pub, topic)


def mqtt5_3_3_1_10_retain_handling_1_only_for_new_subscription(connect):
    """Retain Handling 1: retained messages are sent for a new subscription, not when the
    same subscription is made again."""
    topic = unique("rh1") + "/t"
    pub = connect()
    pub.publish(topic, b"stored", 1, retain=True)
    sub = connect()
    options = SubscribeOptions(qos=1, retainHandling=1)
    sub.subscribe(topic, options=options)
    assert sub.expect_message().payload == b"stored"
    sub.subscribe(topic, options=options)
    expect_marker(sub, pub, topic)


# --- shared subscriptions ---


def mqtt5_s4_8_2_each_message_goes_to_one_member(connect):
    """Messages on a shared subscription are divided between its members: each message
    reaches exactly one of them, and (round robin) both get some."""
    base = unique("share")
    members = [connect(), connect()]
    for member in members:
        assert [c.value for c in member.subscribe(f"$share/g/{base}/#", 1)] == [1]
    inbox = merged_inbox(members)
    pub = connect()
    payloads = [f"m{i}".encode() for i in range(10)]
    for payload in payloads:
        pub.publish(base + "/t", payload, 1)
    received = take(inbox, len(payloads))
    assert sorted(m.payload for _, m in received) == sorted(payloads)
    assert {c.client_id for c, _ in received} == {m.client_id for m in members}
    expect_empty(inbox)


def mqtt5_4_8_2_3_member_receives_at_its_granted_qos(connect):
    """Each member of a shared subscription receives at the QoS granted to it."""
    base = unique("shareqos")
    low, high = connect(), connect()
    assert [c.value for c in low.subscribe(f"$share/q/{base}", 0)] == [0]
    assert [c.value for c in high.subscribe(f"$share/q/{base}", 2)] == [2]
    inbox = merged_inbox([low, high])
    pub = connect()
    for i in range(6):
        pub.publish(base, f"{i}".encode(), 2)
    received = take(inbox, 6)
    assert {(c.client_id, m.qos) for c, m in received} == {(low.client_id, 0), (high.client_id, 2)}
    expect_empty(inbox)


def merged_inbox(clients: list[Client]) -> queue.Queue:
    """A queue receiving (client, message) for every message any of `clients` receives."""
    inbox: queue.Queue = queue.Queue()
    for client in clients:
        client.on_message_hook = lambda c, m: inbox.put((c, m))
    return inbox


def take(inbox: queue.Queue, count: int) -> list:
    """The next `count` entries of `inbox`, each awaited at most TIMEOUT seconds."""
    try:
        return [inbox.get(timeout=TIMEOUT) for _ in range(count)]
    except queue.Empty:
        raise AssertionError(f"fewer than {count} messages arrived") from None


def expect_empty(inbox: queue.Queue) -> None:
    """Fails if anything more arrives in `inbox` within the quiet window."""
    try:
        client, message = inbox.get(timeout=QUIET)
    except queue.Empty:
        return
    raise AssertionError(f"{client.client_id} got an extra message: {message.payload!r}")


def mqtt5_s4_8_2_shared_and_plain_subscriptions_each_get_a_copy(connect):
    """A message matching a shared subscription and a plain subscription goes to one member
    of the group and to the plain subscriber."""
    topic = unique("sharecopy") + "/t"
    member, plain = connect(), connect()
    member.subscribe(f"$share/g/{topic}", 1)
    plain.subscribe(topic, 1)
    connect().publish(topic, b"once each", 1)
    assert member.expect_message().payload == b"once each"
    assert plain.expect_message().payload == b"once each"
    member.expect_nothing()


def mqtt5_s3_3_1_3_no_retained_messages_for_shared_subscription(connect):
    """Joining a shared subscription sends no retained messages."""
    topic = unique("shareret") + "/t"
    pub = connect()
    pub.publish(topic, b"stored", 1, retain=True)
    member = connect()
    member.subscribe(f"$share/g/{topic}", 1)
    expect_marker(member, pub, topic)


# --- topic aliases sent by paho ---


def mqtt5_3_3_2_12_every_alias_up_to_maximum_accepted(connect):
    """The broker accepts every Topic Alias from 1 to the Topic Alias Maximum of its CONNACK,
    both to set an alias and to publish with an empty topic through it."""
    base = unique("alias")
    sub = connect()
    sub.subscribe(base + "/#", 1)
    pub = connect()
    maximum = pub.connack_properties.TopicAliasMaximum
    assert maximum >= 1
    for alias in range(1, maximum + 1):
        props = publish_properties(TopicAlias=alias)
        pub.publish(f"{base}/{alias}", b"set", 1, properties=props)
    for alias in range(1, maximum + 1):
        props = publish_properties(TopicAlias=alias)
        pub.publish("", f"via {alias}".encode(), 1, properties=props)
    received = sub.expect_messages(2 * maximum)
    expected = [(f"{base}/{a}", b"set") for a in range(1, maximum + 1)]
    expected += [(f"{base}/{a}", f"via {a}".encode()) for a in range(1, maximum + 1)]
    assert [(m.topic, m.payload) for m in received] == expected


def mqtt5_s3_3_4_alias_remapped_by_topic(connect):
    """An alias sent again with a topic is mapped to the new topic."""
    base = unique("remap")
    sub = connect()
    sub.subscribe(base + "/#", 1)
    pub = connect()
    alias = publish_properties(TopicAlias=1)
    pub.publish(base + "/first", b"1", 1, properties=alias)
    pub.publish(base + "/second", b"2", 1, properties=alias)
    pub.publish("", b"3", 1, properties=alias)
    topics = [(m.topic, m.payload) for m in sub.expect_messages(3)]
    assert topics == [(base + "/first", b"1"), (base + "/second", b"2"), (base + "/second", b"3")]


def mqtt5_3_2_2_17_alias_above_maximum_gets_disconnect_0x94(start_tern):
    """With `max_topic_alias = 3`, CONNACK announces 3 and alias 4 gets DISCONNECT 0x94
    (Topic Alias invalid)."""
    broker = start_tern("[mqtt]\nmax_topic_alias = 3\n")
    client = Client(broker)
    try:
        client.connect()
        assert client.connack_properties.TopicAliasMaximum == 3
        client.paho.publish("a/b", b"x", 0, properties=publish_properties(TopicAlias=4))
        reason = client.wait_closed_by_server()
        assert reason.value == 0x94
    finally:
        client.close_quietly()


# --- request / response ---


def mqtt5_s4_10_request_response_round_trip(connect):
    """A requester's Response Topic and Correlation Data reach the responder, whose reply on
    that topic with that data comes back to the requester."""
    base = unique("rr")
    responder = connect()
    responder.on_message_hook = _answer
    responder.subscribe(base + "/requests", 1)
    requester = connect()
    reply_topic = f"{base}/replies/{requester.client_id}"
    requester.subscribe(reply_topic, 1)
    for n in range(3):
        props = publish_properties(ResponseTopic=reply_topic, CorrelationData=f"id-{n}".encode())
        requester.publish(base + "/requests", f"question {n}".encode(), 1, properties=props)
    replies = requester.expect_messages(3)
    got = sorted((m.properties.CorrelationData, m.payload) for m in replies)
    assert got == [(f"id-{n}".encode(), f"answer to question {n}".encode()) for n in range(3)]


def _answer(responder: Client, request) -> None:
    """Answers a request from paho's network thread (publish without waiting for PUBACK)."""
    props = publish_properties(CorrelationData=request.properties.CorrelationData)
    responder.paho.publish(
        request.properties.ResponseTopic, b"answer to " + request.payload, 1, properties=props
    )


# --- Will properties, assigned client identifier ---


def mqtt5_3_1_3_10_will_user_properties_in_order(connect, make_client):
    """A Will published on an abnormal close carries its User Properties in order, its
    Content Type, Response Topic and Correlation Data (§3.1.3.2.5-7)."""
    topic = unique("will5") + "/status"
    watcher = connect()
    watcher.subscribe(topic, 1)
    pairs = [("b", "1"), ("a", "2"), ("b", "3")]
    props = will_properties(
        UserProperty=pairs, ContentType="text/plain", ResponseTopic="r/t", CorrelationData=b"\0c"
    )
    dying = make_client().will(topic, b"gone", 1, properties=props).connect()
    dying.drop()
    message = watcher.expect_message()
    assert message.payload == b"gone"
    assert user_properties(message) == pairs
    got = message.properties
    assert (got.ContentType, got.ResponseTopic, got.CorrelationData) == ("text/plain", "r/t", b"\0c")


def mqtt5_3_2_2_16_empty_client_id_gets_assigned_identifier(make_client):
    """An MQTT 5 client connecting with an empty ClientID gets an Assigned Client Identifier
    in CONNACK, different for each such client."""
    ids = []
    for _ in range(2):
        client = make_client(client_id="").connect()
        ids.append(client.connack_properties.AssignedClientIdentifier)
    assert all(ids) and ids[0] != ids[1], ids
