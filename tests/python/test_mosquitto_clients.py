"""Interoperability with Mosquitto's command-line clients: what `mosquitto_pub` sends,
`mosquitto_sub -C N -W 5` receives, in MQTT 3.1, 3.1.1 and 5.0, at QoS 0/1/2, retained or
not, with MQTT 5 properties (`-D publish ...`), one message per line (`-l`) and null
messages (`-n`) clearing a retained message.

`mosquitto_sub` runs with `-d` so that the test knows when its SUBSCRIBE has been acknowledged
(the `Subscribed (mid: ...)` line) before anything is published, and can read the QoS and
RETAIN flags of every PUBLISH it received from its `received PUBLISH (d0, q1, r0, ...)` lines.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass

import pytest

from clients import unique
from harness import Tern

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto_pub") is None or shutil.which("mosquitto_sub") is None,
    reason="mosquitto_pub/mosquitto_sub not installed "
    "(scripts/install-test-deps installs the mosquitto-clients package)",
)

VERSIONS = ["mqttv31", "mqttv311", "mqttv5"]
# How long a mosquitto client process may run.
PROCESS_TIMEOUT = 15.0
# mosquitto_sub's own limit (-W) on waiting for its messages.
SUB_WAIT = "5"

_PUBLISH_LINE = re.compile(
    r"received PUBLISH \(d(\d), q(\d), r(\d), m\d+, '(.*)', \.\.\. \((\d+) bytes\)\)"
)


@dataclass
class Received:
    """What mosquitto_sub printed for one message, with the flags of its PUBLISH."""

    line: str
    qos: int
    retain: bool
    topic: str


class MosquittoSub:
    """A `mosquitto_sub -d` process whose output is read by a thread."""

    def __init__(
        self,
        broker: Tern,
        version: str,
        topics: list[str],
        args: list[str],
        client_id: str | None = None,
    ):
        self.client_id = client_id or unique("msub")
        # stdbuf: line-buffered stdout, so that `Subscribed` is seen when it is printed.
        argv = ["stdbuf", "-oL", "mosquitto_sub", "-h", broker.host, "-p", str(broker.port)]
        argv += ["-V", version, "-i", self.client_id, "-W", SUB_WAIT, "-d", *args]
        for topic in topics:
            argv += ["-t", topic]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_subscribed(self) -> MosquittoSub:
        """Waits until the broker has acknowledged the SUBSCRIBE."""

        def subscribed() -> bool:
            return self._done or any(line.startswith("Subscribed (") for line in self.lines)

        with self._cond:
            self._cond.wait_for(subscribed, PROCESS_TIMEOUT)
            if not any(line.startswith("Subscribed (") for line in self.lines):
                self.kill()
                raise AssertionError("mosquitto_sub did not subscribe:\n" + "\n".join(self.lines))
        return self

    def finish(self) -> list[Received]:
        """Waits for mosquitto_sub to exit successfully (its -C count reached) and returns the
        messages it printed, in order."""
        try:
            status = self.proc.wait(PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        with self._cond:
            self._cond.wait_for(lambda: self._done, PROCESS_TIMEOUT)
            output = list(self.lines)
        assert status == 0, f"mosquitto_sub exited with {status}:\n" + "\n".join(output)
        return parse_received(output)

    def kill(self, signum: int = signal.SIGKILL) -> None:
        """Stops the process at once (no DISCONNECT is sent with SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(PROCESS_TIMEOUT)


def parse_received(output: list[str]) -> list[Received]:
    """Pairs each `received PUBLISH` debug line with the message line printed after it."""
    received: list[Received] = []
    flags = None
    for line in output:
        found = _PUBLISH_LINE.search(line)
        if found:
            flags = found
        elif not _is_debug(line) and flags is not None:
            received.append(
                Received(line, int(flags.group(2)), flags.group(3) == "1", flags.group(4))
            )
            flags = None
    return received


def _is_debug(line: str) -> bool:
    return line.startswith("Client ") or line.startswith("Subscribed (")


def subscribe(
    broker: Tern, version: str, topics: list[str] | str, count: int, *args: str
) -> MosquittoSub:
    """Starts `mosquitto_sub -C count ARGS` on `topics` and waits for its SUBACK."""
    topic_list = [topics] if isinstance(topics, str) else topics
    return MosquittoSub(broker, version, topic_list, ["-C", str(count), *args]).wait_subscribed()


def publish(broker: Tern, version: str, topic: str, *args: str, stdin: str | None = None) -> None:
    """Runs `mosquitto_pub -t topic ARGS` to completion and checks that it succeeded."""
    argv = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-V", version]
    argv += ["-i", unique("mpub"), "-t", topic, *args]
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}"


# --- QoS 0/1/2 in every version ---


def check_pub_to_sub(tern: Tern, version: str, qos: int) -> None:
    """mosquitto_sub -v (subscribed at QoS 2) prints exactly what mosquitto_pub -q QOS sent,
    delivered at that QoS."""
    topic = unique("mq") + "/t"
    sub = subscribe(tern, version, topic, 1, "-q", "2", "-v")
    publish(tern, version, topic, "-q", str(qos), "-m", f"hello at qos {qos}")
    [message] = sub.finish()
    assert (message.line, message.qos, message.retain) == (f"{topic} hello at qos {qos}", qos, False)


@pytest.mark.parametrize("qos", [0, 1, 2])
def mqtt31_s3_1_same_mosquitto_pub_to_sub(tern, qos):
    """MQTT 3.1: mosquitto_pub -q QOS to mosquitto_sub."""
    check_pub_to_sub(tern, "mqttv31", qos)


@pytest.mark.parametrize("qos", [0, 1, 2])
def mqtt311_3_3_4_1_mosquitto_pub_to_sub(tern, qos):
    """MQTT 3.1.1: mosquitto_pub -q QOS to mosquitto_sub."""
    check_pub_to_sub(tern, "mqttv311", qos)


@pytest.mark.parametrize("qos", [0, 1, 2])
def mqtt5_3_3_4_1_mosquitto_pub_to_sub(tern, qos):
    """MQTT 5: mosquitto_pub -q QOS to mosquitto_sub."""
    check_pub_to_sub(tern, "mqttv5", qos)


@pytest.mark.parametrize(("pub_version", "sub_version"), [
    ("mqttv31", "mqttv5"),
    ("mqttv5", "mqttv31"),
    ("mqttv311", "mqttv5"),
    ("mqttv5", "mqttv311"),
])
def test_mosquitto_cross_version(tern, pub_version, sub_version):
    """A message published in one protocol version reaches a subscriber of another."""
    topic = unique("cross") + "/t"
    sub = subscribe(tern, sub_version, topic, 1, "-q", "1", "-v")
    publish(tern, pub_version, topic, "-q", "1", "-m", "across versions")
    [message] = sub.finish()
    assert (message.line, message.qos) == (f"{topic} across versions", 1)


def mqtt311_3_8_4_6_mosquitto_sub_granted_lower_qos(tern):
    """A QoS 2 message reaches a QoS 1 subscription at QoS 1."""
    topic = unique("down") + "/t"
    sub = subscribe(tern, "mqttv311", topic, 1, "-q", "1", "-v")
    publish(tern, "mqttv311", topic, "-q", "2", "-m", "downgraded")
    [message] = sub.finish()
    assert (message.line, message.qos) == (f"{topic} downgraded", 1)


# --- retained messages, null messages ---


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_retained_message_to_later_subscriber(tern, version):
    """mosquitto_pub -r stores a retained message that a later mosquitto_sub receives with
    RETAIN 1 (MQTT-3.3.1-5/-6/-8 in 3.1.1, MQTT-3.3.1-5/-9 in 5.0)."""
    topic = unique("ret") + "/t"
    publish(tern, version, topic, "-r", "-q", "1", "-m", "retained value")
    sub = subscribe(tern, version, topic, 1, "-q", "1", "-v")
    [message] = sub.finish()
    assert (message.line, message.retain, message.qos) == (f"{topic} retained value", True, 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_null_message_clears_retained(tern, version):
    """mosquitto_pub -r -n removes the retained message: a later subscriber to the parent
    filter gets the other topic's retained message and then the live marker, nothing else
    (MQTT-3.3.1-10 in 3.1.1, MQTT-3.3.1-6 in 5.0)."""
    base = unique("null")
    publish(tern, version, base + "/cleared", "-r", "-q", "1", "-m", "to be cleared")
    publish(tern, version, base + "/kept", "-r", "-q", "1", "-m", "still here")
    publish(tern, version, base + "/cleared", "-r", "-q", "1", "-n")
    sub = subscribe(tern, version, base + "/#", 2, "-q", "1", "-v")
    publish(tern, version, base + "/marker", "-q", "1", "-m", "live")
    lines = [(m.line, m.retain) for m in sub.finish()]
    assert lines == [(f"{base}/kept still here", True), (f"{base}/marker live", False)]


def mqtt5_3_3_1_6_mosquitto_null_retained_delivered_to_current_subscriber(tern):
    """The null retained message itself reaches a current subscriber, with an empty payload."""
    topic = unique("null") + "/t"
    publish(tern, "mqttv5", topic, "-r", "-q", "1", "-m", "value")
    sub = subscribe(tern, "mqttv5", topic, 2, "-q", "1", "-v")
    publish(tern, "mqttv5", topic, "-r", "-q", "1", "-n")
    first, second = sub.finish()
    assert (first.line, first.retain) == (f"{topic} value", True)
    # mosquitto_sub -v prints an empty payload as "(null)".
    assert (second.line, second.retain) == (f"{topic} (null)", False)


# --- -l: one message per line ---


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_pub_lines_arrive_in_order(tern, version):
    """mosquitto_pub -l sends each line of its input as a message; they arrive in order
    (MQTT-4.6.0-6: an ordered topic keeps one publisher's order)."""
    topic = unique("lines") + "/t"
    lines = [f"line {i}" for i in range(10)]
    sub = subscribe(tern, version, topic, len(lines), "-q", "2", "-v")
    publish(tern, version, topic, "-q", "1", "-l", stdin="\n".join(lines) + "\n")
    received = sub.finish()
    assert [m.line for m in received] == [f"{topic} {line}" for line in lines]


# --- MQTT 5 properties from mosquitto_pub -D ---

PROPERTY_FORMAT = "MSG|%t|%C|%D|%E|%F|%P|%R|%p"


def publish_with_properties(tern: Tern, topic: str, *properties: str) -> str:
    """Publishes `payload` with `-D publish ...` properties; returns what mosquitto_sub -F
    printed for it (`MSG|topic|content type|correlation|expiry|format|user props|response
    topic|payload`)."""
    sub = subscribe(tern, "mqttv5", topic, 1, "-q", "1", "-F", PROPERTY_FORMAT)
    publish(tern, "mqttv5", topic, "-q", "1", "-m", "payload", *properties)
    [message] = sub.finish()
    return message.line


def mqtt5_3_3_2_18_mosquitto_user_properties_in_order(tern):
    """User properties given with -D publish user-property arrive in the order given."""
    topic = unique("up") + "/t"
    line = publish_with_properties(
        tern,
        topic,
        *("-D", "publish", "user-property", "zeta", "1"),
        *("-D", "publish", "user-property", "alpha", "2"),
        *("-D", "publish", "user-property", "zeta", "3"),
    )
    assert line == f"MSG|{topic}|||||zeta:1 alpha:2 zeta:3||payload"


def mqtt5_3_3_2_20_mosquitto_content_type_and_others_forwarded(tern):
    """Content type, correlation data, response topic, payload format indicator and message
    expiry interval given with -D publish reach mosquitto_sub (MQTT-3.3.2-4/-6/-15/-16)."""
    topic = unique("props") + "/t"
    line = publish_with_properties(
        tern,
        topic,
        *("-D", "publish", "content-type", "text/plain"),
        *("-D", "publish", "correlation-data", "req-42"),
        *("-D", "publish", "response-topic", "replies/here"),
        *("-D", "publish", "payload-format-indicator", "1"),
        *("-D", "publish", "message-expiry-interval", "120"),
    )
    fields = line.split("|")
    assert fields[:5] == ["MSG", topic, "text/plain", "req-42", fields[4]]
    assert int(fields[4]) in (119, 120)
    assert fields[5:] == ["1", "", "replies/here", "payload"]


def mqtt5_s3_3_4_mosquitto_v311_subscriber_gets_plain_payload(tern):
    """A message published with MQTT 5 properties reaches a 3.1.1 mosquitto_sub with exactly
    its payload (the properties are dropped, not mixed into the payload)."""
    topic = unique("drop") + "/t"
    sub = subscribe(tern, "mqttv311", topic, 1, "-q", "1", "-v")
    publish(
        tern, "mqttv5", topic, "-q", "1", "-m", "plain",
        *("-D", "publish", "user-property", "k", "v"),
        *("-D", "publish", "content-type", "text/plain"),
    )
    [message] = sub.finish()
    assert message.line == f"{topic} plain"


# --- wills and persistent sessions ---


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_will_on_killed_client(tern, version):
    """A mosquitto_sub killed with SIGKILL (no DISCONNECT) has its --will-topic published
    (MQTT-3.1.2-8 in 3.1.1 and 5.0)."""
    topic = unique("will") + "/status"
    watcher = subscribe(tern, version, topic, 1, "-q", "1", "-v")
    dying = subscribe(
        tern, version, unique("idle"), 1,
        "--will-topic", topic, "--will-payload", "offline", "--will-qos", "1",
    )
    dying.kill()
    [message] = watcher.finish()
    assert (message.line, message.qos) == (f"{topic} offline", 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_mosquitto_persistent_session_gets_queued_messages(tern, version):
    """mosquitto_sub -c subscribes and leaves (-E); the QoS 1 messages published meanwhile are
    delivered in order when it comes back with the same client id (MQTT-3.1.2-5)."""
    topic = unique("persist") + "/t"
    client_id = unique("msub")
    keep = ["-c", "-q", "1", "-v"]
    leave = MosquittoSub(tern, version, [topic], [*keep, "-E"], client_id)
    assert leave.finish() == []
    for i in range(3):
        publish(tern, version, topic, "-q", "1", "-m", f"queued {i}")
    back = MosquittoSub(tern, version, [topic], [*keep, "-C", "3"], client_id)
    received = [(m.line, m.qos) for m in back.finish()]
    assert received == [(f"{topic} queued {i}", 1) for i in range(3)]
