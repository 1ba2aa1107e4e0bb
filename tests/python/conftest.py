"""Fixtures: a `tern` broker started per test, and paho clients closed at teardown.

`tern` runs as `tern serve --listen 127.0.0.1:0` (a free port), optionally with a configuration
file written to the test's temporary directory; its address is read from the `listening on ADDR`
line it logs on stderr. Its admin API listens on a free port too (`--admin-listen 127.0.0.1:0`):
`Tern.admin_addr` is its `HOST:PORT`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients import Client, MQTTv5
from harness import Tern, missing_binary_message


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stops the run at once, with the reason, when there is no binary to test."""
    problem = missing_binary_message()
    if problem is not None:
        pytest.exit(problem, returncode=1)


StartTern = Callable[..., Tern]


@pytest.fixture
def start_tern(tmp_path: Path) -> Iterator[StartTern]:
    """A factory: `start_tern(config=None, suffix="toml", args=())` starts a broker on a free
    loopback port (with `config` written to a file if given) and waits until it listens.
    Every broker it started is stopped at teardown."""
    started: list[Tern] = []

    def start(config: str | None = None, suffix: str = "toml", args: tuple[str, ...] = ()) -> Tern:
        argv = ["serve"]
        if config is not None:
            path = tmp_path / f"tern-{len(started)}.{suffix}"
            path.write_text(config)
            argv += ["--config", str(path)]
        argv += ["--listen", "127.0.0.1:0", *args]
        if not any(a.startswith("--admin-listen") for a in args):
            argv += ["--admin-listen", "127.0.0.1:0"]
        broker = Tern(argv)
        started.append(broker)
        broker.wait_listening()
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def tern(start_tern: StartTern) -> Tern:
    """A broker with the default settings, listening on a free loopback port."""
    return start_tern()


MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(tern: Tern) -> Iterator[MakeClient]:
    """A factory of paho clients of the `tern` broker (not yet connected):
    `make_client(client_id=None, protocol=MQTTv5, clean=True)`. Closed at teardown."""
    made: list[Client] = []

    def make(client_id: str | None = None, protocol: int = MQTTv5, clean: bool = True) -> Client:
        client = Client(tern, client_id, protocol, clean)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close_quietly()


@pytest.fixture
def connect(make_client: MakeClient) -> MakeClient:
    """Like `make_client`, but returns the client connected."""

    def make_connected(
        client_id: str | None = None, protocol: int = MQTTv5, clean: bool = True
    ) -> Client:
        return make_client(client_id, protocol, clean).connect()

    return make_connected
