"""MQTT over a Unix domain socket with real peers: paho-mqtt's `unix` transport (MQTT 5 and
3.1.1) and Mosquitto's own `mosquitto_pub`/`mosquitto_sub --unix`. Every broker also has a TCP
listener, so each test checks that both kinds of listener share one broker; the socket file's
mode (`unix_mode`) and its removal at shutdown are checked too.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from clients import MQTTv5, MQTTv311, TIMEOUT, Client, unique
from harness import Tern


@dataclass
class UnixBroker:
    """A broker with a Unix socket listener at `path` and a TCP listener (`tern.addr`)."""

    tern: Tern
    path: Path


@pytest.fixture
def unix_broker() -> Iterator[UnixBroker]:
    # Socket paths are limited to 107 bytes: a short directory of its own, not tmp_path.
    directory = Path(tempfile.mkdtemp(prefix="tern-unix-"))
    path = directory / "tern.sock"
    config = directory / "tern.toml"
    # The Unix listener comes first in the file; TCP listeners are announced first, so the
    # harness (which takes the first `listening on` line) gets the TCP address.
    config.write_text(
        "allow_anonymous = true\n\n"
        f'[[listeners]]\naddress = "unix:{path}"\nunix_mode = "0660"\n\n'
        '[[listeners]]\naddress = "127.0.0.1:0"\n'
    )
    tern = Tern(["serve", "--config", str(config)])
    try:
        tern.wait_listening()
        assert tern.host == "127.0.0.1", tern.addr
        assert tern.wait_log(f"listening on unix:{path}"), tern.stderr()
        yield UnixBroker(tern, path)
    finally:
        tern.stop()
        shutil.rmtree(directory, ignore_errors=True)


class UnixClient(Client):
    """A `clients.Client` whose paho client connects through the broker's Unix socket."""

    def __init__(self, broker: UnixBroker, protocol: int = MQTTv5):
        super().__init__(broker.tern, unique("unix"), protocol)
        self.path = broker.path
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=None if protocol == MQTTv5 else True,
            reconnect_on_failure=False,
            transport="unix",
        )
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_ack
        self.paho.on_unsubscribe = self._on_ack

    def try_connect(self, properties=None, keepalive: int = 30):
        kwargs = {"keepalive": keepalive}
        if self.protocol == MQTTv5:
            kwargs["clean_start"] = True
        # With the unix transport, paho takes the socket's path as the host.
        self.paho.connect(str(self.path), **kwargs)
        self.paho.loop_start()
        if not self._connected.wait(TIMEOUT) or self.connack is None:
            raise AssertionError(f"{self.client_id}: no CONNACK within {TIMEOUT} s")
        return self.connack


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close_quietly()


@pytest.mark.parametrize("protocol", [MQTTv5, MQTTv311], ids=["v5", "v311"])
def test_paho_unix_and_tcp_clients_share_one_broker(
    unix_broker: UnixBroker, clients: list[Client], protocol: int
) -> None:
    topic = unique("unix-tcp")
    over_unix = UnixClient(unix_broker, protocol)
    clients.append(over_unix)
    over_unix.connect()
    over_tcp = Client(unix_broker.tern, unique("tcp"), protocol)
    clients.append(over_tcp)
    over_tcp.connect()
    assert unix_broker.tern.wait_log(
        f"client {over_unix.client_id} connected from unix:{unix_broker.path}"
    ), unix_broker.tern.stderr()

    over_unix.subscribe(f"{topic}/to-unix", qos=1)
    over_tcp.subscribe(f"{topic}/to-tcp", qos=1)
    over_tcp.publish(f"{topic}/to-unix", b"from tcp", qos=1)
    message = over_unix.expect_message()
    assert (message.topic, message.payload, message.qos) == (
        f"{topic}/to-unix",
        b"from tcp",
        1,
    )
    over_unix.publish(f"{topic}/to-tcp", b"from unix", qos=1)
    message = over_tcp.expect_message()
    assert (message.topic, message.payload) == (f"{topic}/to-tcp", b"from unix")


@pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="mosquitto_pub/mosquitto_sub not installed (scripts/install-test-deps)",
)
def test_mosquitto_clients_over_the_unix_socket(unix_broker: UnixBroker) -> None:
    topic = unique("mosq-unix")
    path = str(unix_broker.path)
    published = subprocess.run(
        ["mosquitto_pub", "--unix", path, "-t", topic, "-m", "retained over unix", "-r", "-q", "1"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert published.returncode == 0, published.stderr
    # The retained message waits for the subscriber: no race with its SUBSCRIBE.
    received = subprocess.run(
        ["mosquitto_sub", "--unix", path, "-t", topic, "-C", "1", "-W", "5", "-V", "mqttv311"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert received.returncode == 0, received.stderr
    assert received.stdout == "retained over unix\n"


def test_socket_file_mode_and_removal(unix_broker: UnixBroker) -> None:
    mode = os.stat(unix_broker.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    unix_broker.tern.stop()
    assert not unix_broker.path.exists(), "the socket file is removed at shutdown"
