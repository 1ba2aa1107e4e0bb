"""`tern pub` and `tern sub` against Mosquitto's own clients, both ways (`tern pub` →
`mosquitto_sub`, `mosquitto_pub` → `tern sub`), in MQTT 3.1.1 and 5.0 (with `-D` properties),
against the real `tern` broker and against a real Mosquitto broker started on a free loopback
port. The exit statuses of refusals and timeouts are compared with Mosquitto's clients.

Subscribers run with `-d` so that a test knows when the SUBACK has arrived (the
`Subscribed (mid: ...)` line: on stdout for mosquitto_sub, on stderr for tern sub) before
anything is published. Every process and every wait is bounded.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from clients import unique
from harness import Tern, tern_binary

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="mosquitto_pub/mosquitto_sub not installed "
    "(scripts/install-test-deps installs the mosquitto-clients package)",
)

# How long any client process may run.
PROCESS_TIMEOUT = 20.0
# The subscribers' own limit (-W) on waiting for their messages.
SUB_WAIT = "10"
# How long Mosquitto may take to accept connections.
BROKER_START_TIMEOUT = 10.0

VERSIONS = ["mqttv311", "mqttv5"]
# The same -F format for both subscribers: MQTT 5 properties and the payload.
PROPERTY_FORMAT = "MSG|%t|%q|%C|%D|%F|%P|%R|%p"
PUBLISH_PROPERTIES = [
    *("-D", "publish", "content-type", "text/plain"),
    *("-D", "publish", "correlation-data", "req-42"),
    *("-D", "publish", "payload-format-indicator", "1"),
    *("-D", "publish", "user-property", "zeta", "1"),
    *("-D", "publish", "user-property", "alpha", "2"),
    *("-D", "publish", "response-topic", "replies/here"),
    *("-D", "publish", "message-expiry-interval", "120"),
]


# --- brokers ---


@dataclass
class Endpoint:
    """Where a broker listens."""

    name: str
    host: str
    port: int


class Mosquitto:
    """A `mosquitto -c CONF` process on a free loopback port."""

    def __init__(self, tmp_path: Path, allow_anonymous: bool):
        self.proc: subprocess.Popen[str] | None = None
        for attempt in range(3):
            port = free_port()
            conf = tmp_path / f"mosquitto-{port}.conf"
            conf.write_text(
                f"listener {port} 127.0.0.1\n"
                f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
                "persistence false\n"
            )
            self.proc = subprocess.Popen(
                ["mosquitto", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if wait_accepting(port, self.proc):
                self.endpoint = Endpoint("mosquitto", "127.0.0.1", port)
                return
            self.stop()
        raise AssertionError(f"mosquitto did not start after {attempt + 1} attempts")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(PROCESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(PROCESS_TIMEOUT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(port: int, proc: subprocess.Popen) -> bool:
    """Polls until something accepts TCP connections on the port (False if the process
    exited or the time ran out)."""
    deadline = time.monotonic() + BROKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture
def start_mosquitto(tmp_path: Path):
    """A factory of Mosquitto brokers (`start_mosquitto(allow_anonymous=True)`), stopped at
    teardown; skips the test when the `mosquitto` binary is absent."""
    if shutil.which("mosquitto") is None:
        pytest.skip("the mosquitto broker is not installed (Debian package `mosquitto`)")
    started: list[Mosquitto] = []

    def start(allow_anonymous: bool = True) -> Endpoint:
        broker = Mosquitto(tmp_path, allow_anonymous)
        started.append(broker)
        return broker.endpoint

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture(params=["tern", "mosquitto"])
def broker(request, start_tern, start_mosquitto) -> Endpoint:
    """The `tern` broker, then a Mosquitto broker."""
    if request.param == "tern":
        tern: Tern = start_tern()
        return Endpoint("tern", tern.host, tern.port)
    return start_mosquitto()


# --- clients ---


class Subscriber:
    """`tern sub -d` or `mosquitto_sub -d` whose output is read by threads."""

    def __init__(self, tool: str, endpoint: Endpoint, version: str, args: list[str]):
        self.tool = tool
        if tool == "tern":
            argv = [str(tern_binary()), "sub"]
        else:
            # stdbuf: line-buffered stdout, so that `Subscribed` is seen when it is printed.
            argv = ["stdbuf", "-oL", "mosquitto_sub"]
        argv += ["-h", endpoint.host, "-p", str(endpoint.port), "-V", version]
        argv += ["-i", unique("sub"), "-W", SUB_WAIT, "-d", *args]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._cond = threading.Condition()
        self._open = 2
        for pipe, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(pipe, sink), daemon=True).start()

    def _read(self, pipe, sink: list[str]) -> None:
        for line in pipe:
            with self._cond:
                sink.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def _debug(self) -> list[str]:
        return self.stderr if self.tool == "tern" else self.stdout

    def wait_subscribed(self) -> Subscriber:
        """Waits until the broker has acknowledged the SUBSCRIBE."""

        def subscribed() -> bool:
            return self._open == 0 or any(l.startswith("Subscribed (") for l in self._debug())

        with self._cond:
            self._cond.wait_for(subscribed, PROCESS_TIMEOUT)
            if not any(l.startswith("Subscribed (") for l in self._debug()):
                self.proc.kill()
                raise AssertionError(
                    f"{self.tool} sub did not subscribe:\n" + "\n".join(self.stdout + self.stderr)
                )
        return self

    def finish(self, expected_status: int = 0) -> list[str]:
        """Waits for the exit with `expected_status`; returns the message lines printed."""
        try:
            status = self.proc.wait(PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        with self._cond:
            self._cond.wait_for(lambda: self._open == 0, PROCESS_TIMEOUT)
            out, err = list(self.stdout), list(self.stderr)
        assert status == expected_status, (
            f"{self.tool} sub exited with {status}:\n" + "\n".join(out + err)
        )
        return [l for l in out if not (l.startswith("Client ") or l.startswith("Subscribed ("))]


def subscribe(tool: str, endpoint: Endpoint, version: str, topic: str, *args: str) -> Subscriber:
    return Subscriber(tool, endpoint, version, ["-t", topic, *args]).wait_subscribed()


def run_pub(
    tool: str, endpoint: Endpoint, version: str, topic: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `tern pub` or `mosquitto_pub` to completion."""
    argv = [str(tern_binary()), "pub"] if tool == "tern" else ["mosquitto_pub"]
    argv += ["-h", endpoint.host, "-p", str(endpoint.port), "-V", version]
    argv += ["-i", unique("pub"), "-t", topic, *args]
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False
    )


def publish(
    tool: str, endpoint: Endpoint, version: str, topic: str, *args: str, stdin: str | None = None
) -> None:
    """Runs `tern pub` or `mosquitto_pub` and checks that it succeeded."""
    done = run_pub(tool, endpoint, version, topic, *args, stdin=stdin)
    assert done.returncode == 0, f"{tool} pub failed ({done.returncode}): {done.stderr}"


# The two directions: (publisher, subscriber).
DIRECTIONS = [("tern", "mosquitto"), ("mosquitto", "tern")]
DIRECTION_IDS = ["tern_pub-to-mosquitto_sub", "mosquitto_pub-to-tern_sub"]


# --- messages both ways ---


@pytest.mark.parametrize(("publisher", "subscriber"), DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_messages_at_every_qos_both_ways(broker, publisher, subscriber, version):
    """Each QoS arrives at the QoS sent, with `-v` printing `TOPIC PAYLOAD` identically."""
    topic = unique("both") + "/t"
    sub = subscribe(subscriber, broker, version, topic, "-q", "2", "-C", "3", "-F", "%t %q %p")
    for qos in ("0", "1", "2"):
        publish(publisher, broker, version, topic, "-q", qos, "-m", f"at qos {qos}")
    assert sub.finish() == [f"{topic} {q} at qos {q}" for q in ("0", "1", "2")]


@pytest.mark.parametrize(("publisher", "subscriber"), DIRECTIONS, ids=DIRECTION_IDS)
def test_mqtt5_properties_both_ways(broker, publisher, subscriber):
    """`-D publish ...` properties given to one tool are printed by the other's `-F` codes."""
    topic = unique("props") + "/t"
    sub = subscribe(subscriber, broker, "mqttv5", topic, "-q", "1", "-C", "1", "-F",
                    PROPERTY_FORMAT + "|%E")
    publish(publisher, broker, "mqttv5", topic, "-q", "1", "-m", "payload", *PUBLISH_PROPERTIES)
    [line] = sub.finish()
    head, expiry = line.rsplit("|", 1)
    assert head == f"MSG|{topic}|1|text/plain|req-42|1|zeta:1 alpha:2|replies/here|payload"
    assert expiry in ("119", "120")


@pytest.mark.parametrize(("publisher", "subscriber"), DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_lines_and_verbose_output_both_ways(broker, publisher, subscriber, version):
    """`-l` sends one message per line (an empty line: an empty message); `-v` prints the
    empty one as `TOPIC (null)` in both tools."""
    topic = unique("lines") + "/t"
    sub = subscribe(subscriber, broker, version, topic, "-q", "1", "-C", "3", "-v")
    publish(publisher, broker, version, topic, "-q", "1", "-l", stdin="first\n\nthird\n")
    assert sub.finish() == [f"{topic} first", f"{topic} (null)", f"{topic} third"]


@pytest.mark.parametrize(("publisher", "subscriber"), DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("version", VERSIONS)
def test_retained_and_null_message_both_ways(broker, publisher, subscriber, version):
    """`-r` retains (a later subscriber sees %r = 1); `-r -n` clears it (a later subscriber
    times out with status 27 and prints nothing)."""
    topic = unique("ret") + "/t"
    publish(publisher, broker, version, topic, "-r", "-q", "1", "-m", "kept")
    later = subscribe(subscriber, broker, version, topic, "-C", "1", "-F", "%r %p")
    assert later.finish() == ["1 kept"]
    publish(publisher, broker, version, topic, "-r", "-q", "1", "-n")
    cleared = Subscriber(subscriber, broker, version, ["-t", topic, "-W", "1"])
    assert cleared.finish(expected_status=27) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_tern_sub_will_reaches_mosquitto_sub(broker, version):
    """The --will-* flags of a `tern sub` killed with SIGKILL: mosquitto_sub gets the Will."""
    topic = unique("will") + "/status"
    watcher = subscribe("mosquitto", broker, version, topic, "-q", "1", "-C", "1", "-F", "%t %p %q")
    dying = subscribe(
        "tern", broker, version, unique("idle"),
        "--will-topic", topic, "--will-payload", "offline", "--will-qos", "1",
    )
    dying.proc.kill()
    dying.proc.wait(PROCESS_TIMEOUT)
    assert watcher.finish() == [f"{topic} offline 1"]


# --- exit statuses as Mosquitto's clients ---


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_refusal_exit_status_matches_mosquitto_pub(start_mosquitto, start_tern, version):
    """A broker that refuses anonymous clients: `tern pub` exits with the same status as
    mosquitto_pub (the CONNACK code: 5 on 3.1.1, 135 on 5.0) and says why in words, against
    Mosquitto and against tern."""
    tern = start_tern(config="allow_anonymous = false\n")
    brokers = [start_mosquitto(allow_anonymous=False), Endpoint("tern", tern.host, tern.port)]
    expected = {"mqttv311": (5, "Not authorized (return code 5)"),
                "mqttv5": (135, "Not authorized (0x87)")}[version]
    for endpoint in brokers:
        theirs = run_pub("mosquitto", endpoint, version, "t", "-m", "m")
        ours = run_pub("tern", endpoint, version, "t", "-m", "m")
        assert (ours.returncode, theirs.returncode) == (expected[0], expected[0]), endpoint.name
        assert ours.stderr == f"Connection error: Connection refused: {expected[1]}\n"


def test_timeout_exit_status_matches_mosquitto_sub(broker):
    """-W with nothing to receive: both subscribers exit with 27 and print `Timed out`."""
    topic = unique("idle") + "/t"
    for tool in ("tern", "mosquitto"):
        sub = Subscriber(tool, broker, "mqttv311", ["-t", topic, "-W", "1"])
        assert sub.finish(expected_status=27) == []
        assert "Timed out" in sub.stderr, (tool, sub.stderr)


def test_nothing_listening_exits_1_like_mosquitto():
    """Connection refused at the TCP level: status 1 from both tools."""
    port = free_port()
    endpoint = Endpoint("none", "127.0.0.1", port)
    for tool in ("tern", "mosquitto"):
        done = run_pub(tool, endpoint, "mqttv311", "t", "-m", "m")
        assert done.returncode == 1, (tool, done.stderr)
    done = run_pub("tern", endpoint, "mqttv311", "t", "-m", "m")
    assert done.stderr == f"Connection error: 127.0.0.1:{port}: Connection refused\n"
