"""`$SYS/broker/...` topics read by paho-mqtt: the connected-client count follows the clients
that connect and leave, and the version is retained for late subscribers.
"""

from __future__ import annotations

import queue
import time

from clients import Client, MQTTv5, MQTTv311

SETTLE = 10.0


def wait_value(client: Client, topic: str, value: bytes, timeout: float = SETTLE) -> None:
    """Reads `client`'s messages until `topic` carries `value` (the values are published each
    `sys_interval`, retained, so a stale one may come first)."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{topic} never became {value!r}; got {seen}")
        try:
            message = client.messages.get(timeout=left)
        except queue.Empty:
            continue
        if message.topic == topic:
            seen.append(message.payload)
            if message.payload == value:
                return


def test_paho_reads_the_connected_client_count(start_tern):
    tern = start_tern(config="sys_interval = 1\n")
    reader = Client(tern, "reader", MQTTv311).connect()
    others = []
    try:
        codes = reader.subscribe("$SYS/broker/clients/connected", 0)
        assert [c.value for c in codes] == [0]
        wait_value(reader, "$SYS/broker/clients/connected", b"1")
        others = [Client(tern, f"other{i}", MQTTv5).connect() for i in range(2)]
        wait_value(reader, "$SYS/broker/clients/connected", b"3")
        others.pop().disconnect()
        wait_value(reader, "$SYS/broker/clients/connected", b"2")

        late = Client(tern, "late", MQTTv5).connect()
        others.append(late)
        late.subscribe("$SYS/broker/version", 0)
        message = late.expect_message()
        assert message.topic == "$SYS/broker/version"
        assert message.retain
        assert message.payload.startswith(b"tern version ")
    finally:
        for client in [reader, *others]:
            client.close_quietly()
