"""MQTT over WebSocket and WSS with real peers: paho-mqtt's websockets transport (MQTT 3.1,
3.1.1 and 5, WS and WSS), Node's MQTT.js (tests/node/mqttjs_client.mjs) over WS and WSS, and
MQTT.js's browser bundle in headless Chromium (tests/node/browser.mjs driving
tests/node/browser/index.html, served here). Every broker also has a plain TCP listener, so
each test checks that all listeners share one broker.

The Node packages are installed in tests/node/node_modules and Chromium as Debian's `chromium`,
both by scripts/install-test-deps; once installed, nothing here needs a network but loopback.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from clients import MQTTv31, MQTTv311, MQTTv5, Client, unique
from harness import REPO_ROOT, Tern
from test_tls import Pki

NODE_DIR = REPO_ROOT / "tests" / "node"
# How long a Node script may run.
NODE_TIMEOUT = 40.0
_LISTENING = re.compile(r"(?<!admin API )listening on (\S+)( \(websockets\))?")


@dataclass
class Endpoint:
    """What `clients.Client` needs of a broker: where to connect."""

    host: str
    port: int


@dataclass
class Broker:
    """A broker with a TCP listener, WebSocket listeners on `/mqtt` and `/custom`, and a WSS
    listener on `/mqtt`."""

    tern: Tern
    tcp: Endpoint
    ws: Endpoint
    ws_custom: Endpoint
    wss: Endpoint
    ca: Path


def _endpoint(addr: str) -> Endpoint:
    host, port = addr.rsplit(":", 1)
    return Endpoint(host.strip("[]"), int(port))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    pki = Pki(tmp_path, "ws-ca")
    cert, key = pki.server()
    config = tmp_path / "ws.toml"
    config.write_text(
        "allow_anonymous = true\n\n"
        '[[listeners]]\naddress = "127.0.0.1:0"\n\n'
        '[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "websockets"\n\n'
        '[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "websockets"\npath = "/custom"\n\n'
        '[[listeners]]\naddress = "127.0.0.1:0"\nprotocol = "websockets"\n'
        f'[listeners.tls]\ncertfile = "{cert}"\nkeyfile = "{key}"\n'
    )
    tern = Tern(["serve", "--config", str(config)])
    try:
        tern.wait_listening()
        deadline = time.monotonic() + 5.0
        while True:
            found = _LISTENING.findall(tern.stderr())
            if len(found) >= 4:
                break
            assert time.monotonic() < deadline, f"fewer than 4 listeners:\n{tern.stderr()}"
            time.sleep(0.02)
        kinds = [bool(ws) for _, ws in found[:4]]
        assert kinds == [False, True, True, True], tern.stderr()
        tcp, ws, ws_custom, wss = (_endpoint(addr) for addr, _ in found[:4])
        yield Broker(tern, tcp, ws, ws_custom, wss, pki.ca)
    finally:
        tern.stop()


# ---------------------------------------------------------------------------------------------
# paho-mqtt.


class WsClient(Client):
    """A `clients.Client` whose paho client uses the websockets transport (WSS with `ca`)."""

    def __init__(
        self,
        endpoint: Endpoint,
        protocol: int = MQTTv5,
        path: str = "/mqtt",
        ca: Path | None = None,
    ):
        super().__init__(endpoint, None, protocol)  # type: ignore[arg-type]
        tcp_paho = self.paho
        self.paho = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=protocol,
            clean_session=None if protocol == MQTTv5 else True,
            reconnect_on_failure=False,
            transport="websockets",
        )
        self.paho.ws_set_options(path=path)
        if ca is not None:
            self.paho.tls_set(ca_certs=str(ca))
        for callback in ("on_connect", "on_disconnect", "on_message", "on_subscribe",
                         "on_unsubscribe"):
            setattr(self.paho, callback, getattr(tcp_paho, callback))

    def _abort(self) -> None:
        """As `Client._abort`, on the TCP (or TLS) socket under paho's WebSocket wrapper."""
        wrapper = self.paho.socket()
        sock = getattr(wrapper, "_socket", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.paho.loop_stop()
        if wrapper is not None:
            wrapper.close()


@pytest.fixture
def made() -> Iterator[list[Client]]:
    """Clients to close at teardown."""
    clients: list[Client] = []
    yield clients
    for client in clients:
        client.close_quietly()


@pytest.mark.parametrize("protocol", [MQTTv31, MQTTv311, MQTTv5])
def test_paho_websockets_transport(broker: Broker, made: list[Client], protocol: int) -> None:
    sub = WsClient(broker.ws, protocol)
    made.append(sub)
    sub.connect()
    sub.subscribe("paho-ws/#", qos=1)
    pub = WsClient(broker.ws, protocol)
    made.append(pub)
    pub.connect()
    pub.publish("paho-ws/a", b"over websocket", qos=1)
    message = sub.expect_message()
    assert (message.topic, message.payload, message.qos) == ("paho-ws/a", b"over websocket", 1)
    # Published over TCP, received over WebSocket, and the other way round.
    tcp = Client(broker.tcp, protocol=protocol)  # type: ignore[arg-type]
    made.append(tcp)
    tcp.connect()
    tcp.subscribe("paho-ws/#", qos=1)
    tcp.publish("paho-ws/from-tcp", b"tcp", qos=1)
    assert sub.expect_message().payload == b"tcp"
    assert tcp.expect_message().payload == b"tcp"
    pub.publish("paho-ws/from-ws", b"ws", qos=2)
    assert tcp.expect_message().payload == b"ws"
    assert sub.expect_message().payload == b"ws"
    sub.disconnect()
    pub.disconnect()


@pytest.mark.parametrize("protocol", [MQTTv311, MQTTv5])
def test_paho_websockets_over_tls(broker: Broker, made: list[Client], protocol: int) -> None:
    sub = WsClient(broker.wss, protocol, ca=broker.ca)
    made.append(sub)
    sub.connect()
    sub.subscribe("paho-wss/#", qos=1)
    ws = WsClient(broker.ws, protocol)
    made.append(ws)
    ws.connect()
    ws.publish("paho-wss/plain", b"from ws", qos=1)
    message = sub.expect_message()
    assert (message.topic, message.payload) == ("paho-wss/plain", b"from ws")
    sub.publish("paho-wss/tls", b"from wss", qos=1)
    assert sub.expect_message().payload == b"from wss"
    sub.disconnect()


def test_paho_websockets_path(broker: Broker, made: list[Client]) -> None:
    ok = WsClient(broker.ws_custom, MQTTv5, path="/custom")
    made.append(ok)
    ok.connect()
    ok.disconnect()
    # paho's default path on a listener that serves another one: HTTP 404, no upgrade.
    wrong = WsClient(broker.ws_custom, MQTTv5)
    made.append(wrong)
    with pytest.raises(mqtt.WebsocketConnectionError):
        wrong.try_connect()
    assert broker.tern.wait_log("refused with HTTP 404")


# ---------------------------------------------------------------------------------------------
# Node: MQTT.js.


def _require_node_packages() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: run scripts/install-test-deps")
    for package in ("mqtt", "playwright-core"):
        if not (NODE_DIR / "node_modules" / package).is_dir():
            pytest.fail(
                f"tests/node/node_modules/{package} is missing: run scripts/install-test-deps "
                "(npm ci in tests/node)"
            )


class NodeScript:
    """A Node script of tests/node, its JSON lines read by a thread."""

    def __init__(self, *args: str):
        _require_node_packages()
        self.proc = subprocess.Popen(
            ["node", *args],
            cwd=NODE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict] = queue.Queue()
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            if line.startswith("{"):
                self.events.put(json.loads(line))

    def next_event(self, timeout: float = NODE_TIMEOUT) -> dict:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise AssertionError(f"no output from node within {timeout} s: {self.output()}")

    def expect(self, name: str) -> dict:
        event = self.next_event()
        assert event["event"] == name, f"expected {name!r}, got {event}: {self.output()}"
        return event

    def wait(self) -> int:
        try:
            status = self.proc.wait(NODE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"node still running after {NODE_TIMEOUT} s: {self.output()}")
        self._reader.join(5.0)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10.0)

    def output(self) -> str:
        stderr = ""
        if self.proc.poll() is not None and self.proc.stderr is not None:
            stderr = self.proc.stderr.read()
        return f"stdout: {''.join(self.stdout)!r}; stderr: {stderr!r}"


@pytest.fixture
def node_scripts() -> Iterator[list[NodeScript]]:
    scripts: list[NodeScript] = []
    yield scripts
    for script in scripts:
        script.kill()


def mqttjs(scripts: list[NodeScript], url: str, *args: str) -> NodeScript:
    script = NodeScript("mqttjs_client.mjs", url, "--timeout", "20000", *args)
    scripts.append(script)
    return script


@pytest.mark.parametrize("version", ["4", "5"])
def test_mqttjs_over_websocket(broker: Broker, node_scripts: list[NodeScript],
                               version: str) -> None:
    url = f"ws://{broker.ws.host}:{broker.ws.port}/mqtt"
    topic = unique("mqttjs")
    script = mqttjs(node_scripts, url, "--version", version, "--topic", f"{topic}/#",
                    "--publish", f"{topic}/self=hello from MQTT.js", "--expect", "1")
    assert script.expect("connected") == {"event": "connected", "sessionPresent": False}
    assert script.expect("subscribed") == {"event": "subscribed", "granted": [1]}
    assert script.expect("published") == {"event": "published", "topic": f"{topic}/self"}
    received = script.expect("received")
    assert received["messages"] == [
        {"topic": f"{topic}/self", "payload": "hello from MQTT.js", "qos": 1, "retain": False}
    ]
    assert script.wait() == 0, script.output()


def test_mqttjs_over_wss_shares_the_broker_with_tcp(broker: Broker, made: list[Client],
                                                      node_scripts: list[NodeScript]) -> None:
    topic = unique("mqttjs-wss")
    tcp = Client(broker.tcp, protocol=MQTTv311)  # type: ignore[arg-type]
    made.append(tcp)
    tcp.connect()
    tcp.subscribe(f"{topic}/#", qos=1)
    # MQTT.js checks the certificate against the test CA (rejectUnauthorized).
    url = f"wss://localhost:{broker.wss.port}/mqtt"
    script = mqttjs(node_scripts, url, "--ca", str(broker.ca), "--topic", f"{topic}/in",
                    "--publish", f"{topic}/out=from MQTT.js over WSS", "--expect", "1")
    script.expect("connected")
    assert script.expect("subscribed")["granted"] == [1]
    script.expect("published")
    # MQTT.js's message reached the TCP subscriber; the TCP client's reaches MQTT.js.
    message = tcp.expect_message()
    assert (message.topic, message.payload) == (f"{topic}/out", b"from MQTT.js over WSS")
    tcp.publish(f"{topic}/in", b"from paho over TCP", qos=1, retain=False)
    received = script.expect("received")
    assert received["messages"] == [
        {"topic": f"{topic}/in", "payload": "from paho over TCP", "qos": 1, "retain": False}
    ]
    assert script.wait() == 0, script.output()


# ---------------------------------------------------------------------------------------------
# A real browser.


class PageServer:
    """Serves the test page and MQTT.js's browser bundle on a loopback port, nothing else."""

    FILES = {
        "/index.html": (NODE_DIR / "browser" / "index.html", "text/html; charset=utf-8"),
        "/mqtt.min.js": (
            NODE_DIR / "node_modules" / "mqtt" / "dist" / "mqtt.min.js",
            "text/javascript; charset=utf-8",
        ),
    }

    def __init__(self) -> None:
        files = self.FILES
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                path = urlsplit(self.path).path
                requests.append(path)
                if path not in files:
                    self.send_error(404)
                    return
                file, content_type = files[path]
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5.0)


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


def test_browser_mqttjs_over_websocket(broker: Broker, made: list[Client],
                                       node_scripts: list[NodeScript],
                                       page_server: PageServer) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("chromium is not installed: run scripts/install-test-deps")
    topic = unique("browser")
    tcp = Client(broker.tcp, protocol=MQTTv5)  # type: ignore[arg-type]
    made.append(tcp)
    tcp.connect()
    tcp.subscribe(f"{topic}/#", qos=1)
    query = "&".join(
        f"{name}={quote(value, safe='')}"
        for name, value in [
            ("broker", f"ws://{broker.ws.host}:{broker.ws.port}/mqtt"),
            ("topic", f"{topic}/#"),
            ("publish", f"{topic}/echo"),
            ("payload", "hello from the browser"),
        ]
    )
    page = f"http://127.0.0.1:{page_server.port}/index.html?{query}"
    script = NodeScript("browser.mjs", page, "2", "--timeout", "20000")
    node_scripts.append(script)
    script.expect("ready")
    # The page subscribed and published over WebSocket: the TCP subscriber has its message.
    message = tcp.expect_message(timeout=10.0)
    assert (message.topic, message.payload) == (f"{topic}/echo", b"hello from the browser")
    # A message published over TCP reaches the page.
    tcp.publish(f"{topic}/tcp", b"hello from paho over TCP", qos=1)
    received = script.expect("received")
    assert received["status"] == "subscribed"
    assert sorted((m["topic"], m["payload"]) for m in received["messages"]) == [
        (f"{topic}/echo", "hello from the browser"),
        (f"{topic}/tcp", "hello from paho over TCP"),
    ]
    assert script.wait() == 0, script.output()
    # Everything the page loaded came from this server (MQTT.js's bundle included).
    assert sorted(set(page_server.requests) - {"/favicon.ico"}) == ["/index.html", "/mqtt.min.js"]
