"""The `tern` command line: help texts, flag errors, `check-config`, start-up failures and
shutdown on signals."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from clients import Client
from harness import Tern, run_tern

VALID_TOML = """\
allow_anonymous = true

[log]
level = "info"

[[listeners]]
address = "127.0.0.1:0"

[mqtt]
max_qos = 1
max_packet_size = "256KiB"
"""

VALID_MOSQUITTO_CONF = """\
# a Mosquitto 2 configuration
listener 1883 127.0.0.1
allow_anonymous true
max_keepalive 60
max_inflight_messages 10
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """Writes `text` to `tmp_path/name` and returns the path."""
    path = tmp_path / name
    path.write_text(text)
    return path


# --- help and flags ---


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--help"], ["serve", "check-config", "--config", "--help", "--version"]),
        (["serve", "--help"], ["--config", "--listen", "--allow-anonymous", "--log-level"]),
        (["check-config", "--help"], ["<FILE>", "--help"]),
    ],
)
def test_help_exits_0_and_lists_flags(args, mentions):
    """`tern --help`, `tern serve --help` and `tern check-config --help` exit 0 and name
    their subcommands and flags."""
    done = run_tern(*args)
    assert done.returncode == 0, done.stderr
    for word in mentions:
        assert word in done.stdout, f"{word!r} missing from `tern {' '.join(args)}`"


def test_version_exits_0():
    """`tern --version` prints the program name and a version."""
    done = run_tern("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("tern ")


@pytest.mark.parametrize("args", [["--no-such-flag"], ["serve", "--no-such-flag"]])
def test_unknown_flag_is_an_error(args):
    """An unknown flag exits non-zero with an error naming it, without starting."""
    done = run_tern(*args)
    assert done.returncode != 0
    assert "error" in done.stderr
    assert "--no-such-flag" in done.stderr
    assert "listening on" not in done.stderr


def test_unknown_subcommand_is_an_error():
    """An unknown subcommand exits non-zero with an error naming it."""
    done = run_tern("frobnicate")
    assert done.returncode != 0
    assert "frobnicate" in done.stderr


# --- check-config ---


@pytest.mark.parametrize(
    ("name", "text"), [("tern.toml", VALID_TOML), ("mosquitto.conf", VALID_MOSQUITTO_CONF)]
)
def test_check_config_valid_file(tmp_path, name, text):
    """`tern check-config` on a valid TOML file and a valid mosquitto.conf exits 0 and says
    the configuration is valid."""
    path = write(tmp_path, name, text)
    done = run_tern("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "configuration is valid" in done.stdout
    assert str(path) in done.stdout


@pytest.mark.parametrize(
    ("name", "text", "line", "key"),
    [
        ("bad.toml", "[mqtt]\nmax_inflight_messages = 5\nmax_qos = 3\n", 3, "mqtt.max_qos"),
        ("typo.toml", "[mqtt]\nmax_qoss = 1\n", 2, "mqtt.max_qoss"),
        ("bad.conf", "listener 1883 127.0.0.1\nmax_qoss 1\n", 2, "max_qoss"),
        ("auth.conf", "listener 1883\nallow_anonymous false\npassword_file /p\n", 3, "password_file"),
    ],
)
def test_check_config_invalid_file_names_file_line_and_key(tmp_path, name, text, line, key):
    """`tern check-config` on an invalid file exits 1 with a message naming the file, the
    line and the key."""
    path = write(tmp_path, name, text)
    done = run_tern("check-config", str(path))
    assert done.returncode == 1
    assert f"{path}:{line}:" in done.stderr, done.stderr
    assert f"`{key}`" in done.stderr, done.stderr
    assert "configuration is valid" not in done.stdout


def test_check_config_missing_file(tmp_path):
    """`tern check-config` on a file that does not exist exits 1 and names the file."""
    path = tmp_path / "absent.toml"
    done = run_tern("check-config", str(path))
    assert done.returncode == 1
    assert str(path) in done.stderr


def test_check_config_prints_warnings_with_file_and_line(tmp_path):
    """A Mosquitto directive Tern accepts without applying is a warning naming the file and
    line; the file is still valid."""
    path = write(tmp_path, "warn.conf", "listener 1883\nallow_anonymous true\nautosave_interval 60\n")
    done = run_tern("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "configuration is valid" in done.stdout
    assert "warning" in done.stderr
    assert f"{path}:3:" in done.stderr and "`autosave_interval`" in done.stderr


# --- serve: start-up failures ---


def test_serve_with_invalid_config_exits_without_listening(tmp_path):
    """`tern serve --config bad.toml` exits non-zero with the file, line and key, and never
    listens."""
    path = write(tmp_path, "bad.toml", "[mqtt]\nmax_qos = 7\n")
    done = run_tern("serve", "--config", str(path), "--listen", "127.0.0.1:0")
    assert done.returncode != 0
    assert f"{path}:2:" in done.stderr and "`mqtt.max_qos`" in done.stderr
    assert "listening on" not in done.stderr


def test_serve_on_address_in_use_exits_with_message():
    """`tern serve --listen ADDR` on an address another socket listens on exits non-zero and
    says it cannot listen there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = "127.0.0.1:%d" % busy.getsockname()[1]
        done = run_tern("serve", "--listen", address)
    assert done.returncode != 0
    assert f"cannot listen on {address}" in done.stderr, done.stderr
    assert "listening on" not in done.stderr


def test_invalid_listen_address_is_an_error():
    """A `--listen` value that is not HOST:PORT exits non-zero and names the value."""
    done = run_tern("serve", "--listen", "not an address")
    assert done.returncode != 0
    assert "not an address" in done.stderr


# --- serve: configuration files, signals ---


def test_dash_c_runs_a_configuration_file(tmp_path):
    """`tern -c FILE` (Mosquitto's form, no subcommand) runs the broker on FILE's listeners."""
    path = write(tmp_path, "tern.toml", VALID_TOML)
    broker = Tern(["-c", str(path)])
    try:
        broker.wait_listening()
        client = Client(broker)
        client.connect()
        assert client.connack_properties.MaximumQoS == 1
        client.disconnect()
    finally:
        broker.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_with_status_0(signum):
    """SIGTERM (and SIGINT) stop the broker with exit status 0."""
    broker = Tern(["serve", "--listen", "127.0.0.1:0"])
    try:
        broker.wait_listening()
        broker.signal(signum)
        assert broker.wait_exit() == 0
        assert broker.wait_log("shutting down")
    finally:
        broker.stop()


def test_sigterm_sends_mqtt5_clients_disconnect_0x8b():
    """On SIGTERM an MQTT 5 client receives DISCONNECT 0x8B (Server shutting down) and the
    broker exits 0."""
    broker = Tern(["serve", "--listen", "127.0.0.1:0"])
    client = Client(broker)
    try:
        broker.wait_listening()
        client.connect()
        broker.signal(signal.SIGTERM)
        assert client.wait_closed_by_server().value == 0x8B
        assert broker.wait_exit() == 0
    finally:
        client.close_quietly()
        broker.stop()
