"""A thin synchronous wrapper around paho-mqtt 2.x for tests.

paho runs its network loop in a thread (`loop_start()`); every wait here is bounded by
`TIMEOUT` and fails the test with a message saying what did not arrive.
"""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion, MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from harness import Tern

MQTTv31 = mqtt.MQTTv31
MQTTv311 = mqtt.MQTTv311
MQTTv5 = mqtt.MQTTv5

# The longest any single wait may take.
TIMEOUT = 5.0
# How long to watch for a message that must not arrive.
QUIET = 0.3

VERSION_NAMES = {MQTTv31: "v31", MQTTv311: "v311", MQTTv5: "v5"}


def unique(prefix: str) -> str:
    """A client id or topic level that no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def publish_properties(**values: Any) -> Properties:
    """PUBLISH properties, e.g. `publish_properties(ContentType="text/plain")`."""
    return _properties(PacketTypes.PUBLISH, values)


def connect_properties(**values: Any) -> Properties:
    """CONNECT properties, e.g. `connect_properties(SessionExpiryInterval=60)`."""
    return _properties(PacketTypes.CONNECT, values)


def subscribe_properties(**values: Any) -> Properties:
    """SUBSCRIBE properties, e.g. `subscribe_properties(SubscriptionIdentifier=7)`."""
    return _properties(PacketTypes.SUBSCRIBE, values)


def will_properties(**values: Any) -> Properties:
    """Will properties, e.g. `will_properties(WillDelayInterval=1)`."""
    return _properties(PacketTypes.WILLMESSAGE, values)


def _properties(packet_type: int, values: dict[str, Any]) -> Properties:
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


def user_properties(message: MQTTMessage) -> list[tuple[str, str]]:
    """The User Properties of a received message, in the order they arrived."""
    props = message.properties
    if props is None or not hasattr(props, "UserProperty"):
        return []
    return [tuple(pair) for pair in props.UserProperty]


class Client:
    """One paho client connected to a `Tern`, with its received messages in a queue."""

    def __init__(
        self,
        broker: Tern,
        client_id: str | None = None,
        protocol: int = MQTTv5,
        clean: bool = True,
    ):
        self.broker = broker
        self.protocol = protocol
        self.client_id = client_id if client_id is not None else unique("c")
        self.clean = clean
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=None if protocol == MQTTv5 else clean,
            reconnect_on_failure=False,
        )
        self.messages: queue.Queue[MQTTMessage] = queue.Queue()
        self.connack: tuple[Any, Any, Any] | None = None
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self.disconnect_reason: Any = None
        self._acks: dict[int, list[Any]] = {}
        self._acks_cond = threading.Condition()
        self.on_message_hook = None
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_ack
        self.paho.on_unsubscribe = self._on_ack

    # --- paho callbacks (network thread) ---

    def _on_connect(self, _client, _userdata, flags, reason_code, properties) -> None:
        self.connack = (flags, reason_code, properties)
        self._connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.disconnect_reason = reason_code
        self._disconnected.set()
        self._connected.set()  # a refused CONNECT ends here too: wake the waiter

    def _on_message(self, _client, _userdata, message: MQTTMessage) -> None:
        if self.on_message_hook is not None:
            self.on_message_hook(self, message)
        self.messages.put(message)

    def _on_ack(self, _client, _userdata, mid, reason_codes, _properties) -> None:
        with self._acks_cond:
            self._acks[mid] = list(reason_codes)
            self._acks_cond.notify_all()

    # --- connection ---

    def will(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> Client:
        """Sets the Will Message sent with CONNECT; call before `connect()`."""
        self.paho.will_set(topic, payload, qos, retain, properties)
        return self

    def connect(
        self, properties: Properties | None = None, keepalive: int = 30
    ) -> Client:
        """Connects and waits for a successful CONNACK."""
        _, reason, _ = self.try_connect(properties, keepalive)
        assert not reason.is_failure, f"{self.client_id}: CONNACK {reason}"
        return self

    def try_connect(
        self, properties: Properties | None = None, keepalive: int = 30
    ) -> tuple[Any, Any, Any]:
        """Connects and returns (flags, reason code, properties) of the CONNACK."""
        kwargs: dict[str, Any] = {"keepalive": keepalive}
        if self.protocol == MQTTv5:
            kwargs["clean_start"] = self.clean
            kwargs["properties"] = properties
        self.paho.connect(self.broker.host, self.broker.port, **kwargs)
        self.paho.loop_start()
        if not self._connected.wait(TIMEOUT) or self.connack is None:
            raise AssertionError(f"{self.client_id}: no CONNACK within {TIMEOUT} s")
        return self.connack

    @property
    def session_present(self) -> bool:
        """The Session Present flag of the CONNACK."""
        assert self.connack is not None, "not connected"
        return bool(self.connack[0].session_present)

    @property
    def connack_properties(self) -> Properties | None:
        """The properties of the CONNACK (MQTT 5)."""
        assert self.connack is not None, "not connected"
        return self.connack[2]

    def disconnect(self, properties: Properties | None = None) -> None:
        """Sends DISCONNECT (reason 0x00) and waits for the connection to close."""
        self.paho.disconnect(properties=properties)
        if not self._disconnected.wait(TIMEOUT):
            raise AssertionError(f"{self.client_id}: DISCONNECT did not close the connection")
        self.paho.loop_stop()

    def drop(self) -> None:
        """Closes the TCP connection without DISCONNECT, as a crashed client would."""
        assert self.paho.socket() is not None, "not connected"
        self._abort()

    def _abort(self) -> None:
        """Shuts the socket down (FIN, no DISCONNECT), which also wakes paho's network thread
        at once, then waits for that thread to end."""
        sock = self.paho.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.paho.loop_stop()
        if sock is not None:
            sock.close()

    def wait_closed_by_server(self) -> Any:
        """Waits until the broker closes the connection; returns the reason paho reports."""
        if not self._disconnected.wait(TIMEOUT):
            raise AssertionError(f"{self.client_id}: the broker did not close the connection")
        self.paho.loop_stop()
        return self.disconnect_reason

    def close_quietly(self) -> None:
        """Test teardown: closes the connection and stops the network thread, whatever the
        state."""
        self._abort()

    # --- subscriptions ---

    def subscribe(
        self,
        topic: str,
        qos: int = 0,
        options: SubscribeOptions | None = None,
        properties: Properties | None = None,
    ) -> list[Any]:
        """Subscribes to one filter and returns the SUBACK reason codes."""
        requested = options if options is not None else qos
        return self.subscribe_many([(topic, requested)], properties)

    def subscribe_many(
        self, pairs: list[tuple[str, Any]], properties: Properties | None = None
    ) -> list[Any]:
        """Subscribes to (filter, qos or SubscribeOptions) pairs in one SUBSCRIBE."""
        result, mid = self.paho.subscribe(pairs, properties=properties)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {result}"
        return self._wait_ack(mid, "SUBACK")

    def unsubscribe(self, topic: str) -> list[Any]:
        """Unsubscribes from one filter and returns the UNSUBACK reason codes (MQTT 5)."""
        result, mid = self.paho.unsubscribe(topic)
        assert result == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe not sent: {result}"
        return self._wait_ack(mid, "UNSUBACK")

    def _wait_ack(self, mid: int, what: str) -> list[Any]:
        with self._acks_cond:
            if not self._acks_cond.wait_for(lambda: mid in self._acks, TIMEOUT):
                raise AssertionError(f"{self.client_id}: no {what} within {TIMEOUT} s")
            return self._acks.pop(mid)

    # --- publishing ---

    def publish(
        self,
        topic: str,
        payload: bytes | str | None = b"",
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo:
        """Publishes and waits until the flow is complete (sent for QoS 0, PUBACK for QoS 1,
        PUBCOMP for QoS 2)."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish not sent: {info.rc}"
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), (
            f"{self.client_id}: QoS {qos} publish to {topic!r} not acknowledged within {TIMEOUT} s"
        )
        return info

    # --- receiving ---

    def expect_message(self, timeout: float = TIMEOUT) -> MQTTMessage:
        """The next received message; fails if none arrives within `timeout`."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"{self.client_id}: no message within {timeout} s"
            ) from None

    def expect_messages(self, count: int, timeout: float = TIMEOUT) -> list[MQTTMessage]:
        """The next `count` received messages, in arrival order."""
        return [self.expect_message(timeout) for _ in range(count)]

    def expect_nothing(self, window: float = QUIET) -> None:
        """Fails if a message arrives within `window` seconds."""
        try:
            message = self.messages.get(timeout=window)
        except queue.Empty:
            return
        raise AssertionError(
            f"{self.client_id}: unexpected message on {message.topic!r}: {message.payload!r}"
        )
