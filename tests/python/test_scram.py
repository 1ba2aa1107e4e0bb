"""SCRAM-SHA-256 and SCRAM-SHA-512 enhanced authentication (MQTT 5 AUTH, RFC 5802/7677) with an
independent client: Python's `scramp` makes and checks every SCRAM message.

paho-mqtt 2.x cannot take part: it has no way to send AUTH and treats an AUTH from the server as
an unknown packet. So the exchange is carried by the few MQTT 5 packets encoded below over a
plain socket (properties are packed and unpacked with paho's `Properties`). The password file is
written by `tern passwd --scram`; its `$7$` line lets a paho client of the same user in with
user name and password for the publish/subscribe round trip.
"""

from __future__ import annotations

import base64
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from scramp import ScramClient
from scramp.utils import ScramException

from clients import TIMEOUT, Client, MQTTv5, unique
from harness import Tern, run_tern

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512"]

# Reason codes.
SUCCESS = 0x00
CONTINUE_AUTHENTICATION = 0x18
REAUTHENTICATE = 0x19
NOT_AUTHORIZED = 0x87
BAD_AUTHENTICATION_METHOD = 0x8C

# Packet types (upper nibble of the first byte).
CONNACK, PUBLISH, SUBACK, PINGRESP, DISCONNECT, AUTH = 2, 3, 9, 13, 14, 15


# ------------------------------------------------------------------------------------------------
# Minimal MQTT 5 encoding and decoding


def vbi(n: int) -> bytes:
    """A Variable Byte Integer."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    """A length-prefixed UTF-8 string."""
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + vbi(len(body)) + body


def auth_properties(packet_type: int, method: str, data: bytes | None) -> bytes:
    props = Properties(packet_type)
    props.AuthenticationMethod = method
    if data is not None:
        props.AuthenticationData = data
    return props.pack()


def connect_packet(client_id: str, method: str, data: bytes, username: str | None = None) -> bytes:
    flags = 0x02 | (0x80 if username is not None else 0)  # Clean Start, User Name
    body = utf8("MQTT") + bytes([5, flags]) + struct.pack("!H", 30)
    body += auth_properties(PacketTypes.CONNECT, method, data)
    body += utf8(client_id)
    if username is not None:
        body += utf8(username)
    return packet(0x10, body)


def auth_packet(reason: int, method: str, data: bytes) -> bytes:
    return packet(0xF0, bytes([reason]) + auth_properties(PacketTypes.AUTH, method, data))


@dataclass
class Received:
    """A packet from the server: its type, reason code (CONNACK, AUTH, DISCONNECT, SUBACK) and
    properties; `payload` and `topic` for PUBLISH."""

    kind: int
    reason: int = 0
    properties: Properties | None = None
    topic: str = ""
    payload: bytes = b""
    flags: int = 0
    raw: bytes = field(default=b"", repr=False)

    @property
    def method(self) -> str | None:
        return getattr(self.properties, "AuthenticationMethod", None)

    @property
    def data(self) -> bytes | None:
        return getattr(self.properties, "AuthenticationData", None)


class Conn:
    """One MQTT 5 connection over a socket; every read is bounded by `TIMEOUT`."""

    def __init__(self, broker: Tern):
        self.sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def next(self) -> Received | None:
        """The next packet, or None when the server closed the connection."""
        head = self._read(1)
        if head is None:
            return None
        length, shift = 0, 0
        while True:
            byte = self._read(1)
            assert byte is not None, "connection closed inside a fixed header"
            length |= (byte[0] & 0x7F) << shift
            shift += 7
            if not byte[0] & 0x80:
                break
        body = self._read(length)
        assert body is not None, "connection closed inside a packet"
        return decode(head[0], body)

    def recv(self) -> Received:
        p = self.next()
        assert p is not None, "the server closed the connection"
        return p

    def expect(self, kind: int) -> Received:
        p = self.recv()
        assert p.kind == kind, f"expected packet type {kind}, got {p}"
        return p

    def expect_closed(self) -> None:
        p = self.next()
        assert p is None, f"expected the connection to close, got {p}"


def decode(first: int, body: bytes) -> Received:
    kind = first >> 4
    if kind == CONNACK:
        props, _ = Properties(PacketTypes.CONNACK).unpack(body[2:])
        return Received(kind, body[1], props, flags=body[0], raw=body)
    if kind in (AUTH, DISCONNECT):
        if not body:
            return Received(kind, 0, None, raw=body)
        packet_type = PacketTypes.AUTH if kind == AUTH else PacketTypes.DISCONNECT
        props = Properties(packet_type).unpack(body[1:])[0] if len(body) > 1 else None
        return Received(kind, body[0], props, raw=body)
    if kind == SUBACK:
        (props_len, used) = _vbi_decode(body[2:])
        return Received(kind, body[2 + used + props_len], raw=body)
    if kind == PUBLISH:
        (topic_len,) = struct.unpack("!H", body[:2])
        topic = body[2 : 2 + topic_len].decode()
        rest = body[2 + topic_len :]
        if (first >> 1) & 3:
            rest = rest[2:]  # packet identifier
        props_len, used = _vbi_decode(rest)
        return Received(kind, 0, topic=topic, payload=rest[used + props_len :], flags=first & 0xF)
    return Received(kind, raw=body)


def _vbi_decode(data: bytes) -> tuple[int, int]:
    value, shift = 0, 0
    for i, byte in enumerate(data):
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i + 1
    raise AssertionError("truncated Variable Byte Integer")


# ------------------------------------------------------------------------------------------------
# The SCRAM exchange


def server_first_parts(message: str) -> dict[str, str]:
    return dict(attr.split("=", 1) for attr in message.split(","))


def start_login(
    conn: Conn, method: str, user: str, password: str, username_field: str | None = None
) -> tuple[ScramClient, Received]:
    """Sends CONNECT with the client-first-message; returns the client and the server's answer."""
    client = ScramClient([method], user, password)
    first = client.get_client_first().encode()
    conn.send(connect_packet(unique("scram"), method, first, username_field))
    return client, conn.recv()


def continue_exchange(
    conn: Conn, method: str, client: ScramClient, server_first: Received
) -> Received:
    """Checks AUTH 0x18 with the server-first-message, answers with the client-final-message and
    returns what comes back."""
    assert server_first.kind == AUTH, f"expected AUTH, got {server_first}"
    assert server_first.reason == CONTINUE_AUTHENTICATION
    assert server_first.method == method  # MQTT-4.12.0-2, MQTT-4.12.0-5
    assert server_first.data is not None
    client.set_server_first(server_first.data.decode())
    conn.send(auth_packet(CONTINUE_AUTHENTICATION, method, client.get_client_final().encode()))
    return conn.recv()


def login(broker: Tern, method: str, user: str, password: str) -> tuple[Conn, Received]:
    """A complete SCRAM login; asserts success (CONNACK 0 with the method and a server-final
    message that scramp verifies) and returns the connection and the CONNACK."""
    conn = Conn(broker)
    client, first = start_login(conn, method, user, password)
    connack = continue_exchange(conn, method, client, first)
    assert connack.kind == CONNACK, f"expected CONNACK, got {connack}"
    assert connack.reason == SUCCESS
    assert connack.method == method
    assert connack.data is not None
    assert connack.data.startswith(b"v=")
    client.set_server_final(connack.data.decode())  # raises unless the server proved the key
    return conn, connack


# ------------------------------------------------------------------------------------------------
# Fixtures

USERS = {"alice": "wonder land", "bob": "b=o,b"}


@dataclass
class ScramBroker:
    broker: Tern
    password_file: Path


@pytest.fixture
def scram_broker(start_tern: Callable[..., Tern], tmp_path: Path) -> ScramBroker:
    """A broker whose password file `tern passwd --scram` wrote for USERS."""
    path = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        args = ["passwd", "--scram", *(["-c"] if i == 0 else []), "-b", str(path), user, password]
        done = run_tern(*args)
        assert done.returncode == 0, done.stderr
    text = path.read_text()
    for user in USERS:
        for method in MECHANISMS:
            assert f"{user}:{method}$4096:" in text, text
    broker = start_tern(f'password_file = "{path}"\n')
    return ScramBroker(broker, path)


# ------------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("method", MECHANISMS)
def mqtt5_4_12_0_5_scram_login_carries_the_method_in_auth_and_connack(
    scram_broker: ScramBroker, method: str
) -> None:
    conn, _ = login(scram_broker.broker, method, "alice", USERS["alice"])
    # The connection is usable.
    conn.send(packet(0xC0, b""))  # PINGREQ
    assert conn.expect(PINGRESP).kind == PINGRESP
    conn.send(packet(0xE0, b"\x00"))
    conn.expect_closed()
    conn.close()


@pytest.mark.parametrize("method", MECHANISMS)
def test_scram_user_name_with_escaped_characters(scram_broker: ScramBroker, method: str) -> None:
    # "b=o,b" travels as "n=b=3Do=2Cb" in the client-first-message.
    conn, _ = login(scram_broker.broker, method, "bob", USERS["bob"])
    conn.close()


@pytest.mark.parametrize("method", MECHANISMS)
def mqtt5_4_12_0_4_wrong_password_is_connack_0x87_and_close(
    scram_broker: ScramBroker, method: str
) -> None:
    conn = Conn(scram_broker.broker)
    client, first = start_login(conn, method, "alice", "wrong")
    connack = continue_exchange(conn, method, client, first)
    assert connack.kind == CONNACK
    assert connack.reason == NOT_AUTHORIZED
    assert connack.data is None
    conn.expect_closed()
    conn.close()


@pytest.mark.parametrize("method", MECHANISMS)
def mqtt5_4_12_0_4_unknown_user_looks_like_a_wrong_password(
    scram_broker: ScramBroker, method: str
) -> None:
    def server_first(user: str) -> dict[str, str]:
        conn = Conn(scram_broker.broker)
        client, first = start_login(conn, method, user, "whatever")
        assert first.kind == AUTH and first.reason == CONTINUE_AUTHENTICATION
        parts = server_first_parts(first.data.decode())
        connack = continue_exchange(conn, method, client, first)
        assert (connack.kind, connack.reason, connack.data) == (CONNACK, NOT_AUTHORIZED, None)
        conn.expect_closed()
        conn.close()
        return parts

    known = server_first("alice")
    unknown = server_first("nobody")
    again = server_first("nobody")
    other = server_first("somebody")
    # The same iteration count and salt length as a real user, and a salt that does not change
    # between attempts (a fresh random salt each time would give the unknown user away).
    assert unknown["i"] == known["i"] == "4096"
    assert len(base64.b64decode(unknown["s"])) == len(base64.b64decode(known["s"]))
    assert unknown["s"] == again["s"]
    assert unknown["s"] != other["s"]
    # A fresh server nonce every time, appended to the client's.
    assert unknown["r"] != again["r"]


def mqtt5_4_12_0_1_unknown_method_is_connack_0x8c(scram_broker: ScramBroker) -> None:
    conn = Conn(scram_broker.broker)
    client = ScramClient(["SCRAM-SHA-1"], "alice", USERS["alice"])
    conn.send(connect_packet(unique("sha1"), "SCRAM-SHA-1", client.get_client_first().encode()))
    connack = conn.expect(CONNACK)
    assert connack.reason == BAD_AUTHENTICATION_METHOD
    conn.expect_closed()
    conn.close()


@pytest.mark.parametrize("method", MECHANISMS)
def mqtt5_s4_12_1_reauthentication_on_an_open_connection(
    scram_broker: ScramBroker, method: str
) -> None:
    conn, _ = login(scram_broker.broker, method, "alice", USERS["alice"])
    for _ in range(2):
        client = ScramClient([method], "alice", USERS["alice"])
        conn.send(auth_packet(REAUTHENTICATE, method, client.get_client_first().encode()))
        done = continue_exchange(conn, method, client, conn.recv())
        assert done.kind == AUTH, f"expected AUTH, got {done}"
        assert done.reason == SUCCESS
        assert done.method == method
        assert done.data is not None
        client.set_server_final(done.data.decode())
    conn.send(packet(0xC0, b""))  # PINGREQ: still connected
    conn.expect(PINGRESP)
    conn.close()


@pytest.mark.parametrize("method", MECHANISMS)
def mqtt5_4_12_1_2_failed_reauthentication_is_disconnect_0x87(
    scram_broker: ScramBroker, method: str
) -> None:
    conn, _ = login(scram_broker.broker, method, "alice", USERS["alice"])
    client = ScramClient([method], "alice", "not the password")
    conn.send(auth_packet(REAUTHENTICATE, method, client.get_client_first().encode()))
    disconnect = continue_exchange(conn, method, client, conn.recv())
    assert disconnect.kind == DISCONNECT, f"expected DISCONNECT, got {disconnect}"
    assert disconnect.reason == NOT_AUTHORIZED
    conn.expect_closed()
    conn.close()


def mqtt5_4_12_1_2_reauthentication_as_another_user_is_disconnect_0x87(
    scram_broker: ScramBroker,
) -> None:
    method = "SCRAM-SHA-256"
    conn, _ = login(scram_broker.broker, method, "alice", USERS["alice"])
    # Bob's right password does not turn Alice's connection into Bob's.
    client = ScramClient([method], "bob", USERS["bob"])
    conn.send(auth_packet(REAUTHENTICATE, method, client.get_client_first().encode()))
    disconnect = conn.recv()
    assert disconnect.kind == DISCONNECT, f"expected DISCONNECT, got {disconnect}"
    assert disconnect.reason == NOT_AUTHORIZED
    conn.expect_closed()
    conn.close()


def test_scramp_refuses_a_forged_server_final_so_the_check_in_login_is_real(
    scram_broker: ScramBroker,
) -> None:
    conn = Conn(scram_broker.broker)
    client, first = start_login(conn, "SCRAM-SHA-256", "alice", USERS["alice"])
    connack = continue_exchange(conn, "SCRAM-SHA-256", client, first)
    assert connack.reason == SUCCESS
    forged = "v=" + base64.b64encode(bytes(32)).decode()
    assert connack.data is not None and connack.data.decode() != forged
    with pytest.raises(ScramException):
        client.set_server_final(forged)
    conn.close()


def test_connect_user_name_must_be_the_scram_user(scram_broker: ScramBroker) -> None:
    method = "SCRAM-SHA-512"
    conn = Conn(scram_broker.broker)
    _, answer = start_login(conn, method, "alice", USERS["alice"], username_field="bob")
    assert (answer.kind, answer.reason) == (CONNACK, NOT_AUTHORIZED)
    conn.expect_closed()
    conn.close()
    conn = Conn(scram_broker.broker)
    client, first = start_login(conn, method, "alice", USERS["alice"], username_field="alice")
    assert continue_exchange(conn, method, client, first).reason == SUCCESS
    conn.close()


@pytest.mark.parametrize("method", MECHANISMS)
def test_publish_subscribe_round_trip_after_scram_login(
    scram_broker: ScramBroker, method: str
) -> None:
    broker = scram_broker.broker
    topic = unique("scram/topic")
    conn, _ = login(broker, method, "alice", USERS["alice"])
    # SUBSCRIBE (packet id 1, no properties, QoS 0).
    conn.send(packet(0x82, struct.pack("!H", 1) + b"\x00" + utf8(topic) + b"\x00"))
    assert conn.expect(SUBACK).reason == 0

    # A paho client of the same user logs in with the password line and publishes.
    paho = Client(broker, protocol=MQTTv5)
    paho.paho.username_pw_set("alice", USERS["alice"])
    try:
        paho.connect()
        paho.subscribe(topic + "/back", 0)
        paho.publish(topic, b"from paho", qos=1)
        received = conn.expect(PUBLISH)
        assert (received.topic, received.payload) == (topic, b"from paho")

        # And the SCRAM client publishes back (QoS 0, no properties).
        conn.send(packet(0x30, utf8(topic + "/back") + b"\x00" + b"from scram"))
        message = paho.expect_message()
        assert (message.topic, message.payload) == (topic + "/back", b"from scram")
    finally:
        paho.close_quietly()
        conn.close()
