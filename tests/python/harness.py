"""Starts the real `tern` binary and stops it again.

The binary is `$TERN_BIN`, or `target/debug/tern` relative to the repository root (built by
`cargo build`, which `scripts/test` runs first).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# How long `tern` may take to print `listening on ADDR`.
START_TIMEOUT = 20.0
# How long `tern` may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# MQTT listeners log `listening on ADDR`; the admin API logs `admin API listening on http://ADDR`.
_LISTENING = re.compile(r"(?<!admin API )listening on (\S+)")
_ADMIN_LISTENING = re.compile(r"admin API listening on http://(\S+)")


def tern_binary() -> Path:
    """The `tern` executable under test (not checked for existence)."""
    configured = os.environ.get("TERN_BIN")
    if configured:
        path = Path(configured)
        return path if path.is_absolute() else REPO_ROOT / path
    return REPO_ROOT / "target" / "debug" / "tern"


def missing_binary_message() -> str | None:
    """Why the binary cannot be used, or None when it can."""
    path = tern_binary()
    if not path.is_file():
        return (
            f"the tern binary {path} does not exist: run `cargo build -p tern` first "
            "(or set TERN_BIN to the binary to test)"
        )
    if not os.access(path, os.X_OK):
        return f"the tern binary {path} is not executable"
    return None


def tern_env() -> dict[str, str]:
    """The environment `tern` runs with: plain `info` logs, whatever the caller's settings."""
    env = dict(os.environ)
    env.pop("TERN_LOG_LEVEL", None)
    env["RUST_LOG"] = "info"
    env["NO_COLOR"] = "1"
    return env


def run_tern(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Runs `tern ARGS...` to completion and returns its exit status and output."""
    return subprocess.run(
        [str(tern_binary()), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=tern_env(),
        check=False,
    )


class Tern:
    """A running `tern` process whose stderr is collected by a thread.

    `start()` returns once `tern` has printed `listening on ADDR`; `addr` is then the first
    bound address.
    """

    def __init__(self, args: list[str]):
        self.args = args
        # Persistence is on by default: each instance gets its own data directory.
        self.data_dir = tempfile.mkdtemp(prefix="tern-py-data-")
        env = tern_env()
        env["TERN_DATA_DIR"] = self.data_dir
        self.proc = subprocess.Popen(
            [str(tern_binary()), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
        )
        self._lines: list[str] = []
        self._lock = threading.Condition()
        self._listening = threading.Event()
        self._ended = threading.Event()
        self.addr: str | None = None
        # The admin API's `HOST:PORT`, once logged (before the MQTT listeners).
        self.admin_addr: str | None = None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = _ANSI.sub("", raw.rstrip("\n"))
            with self._lock:
                self._lines.append(line)
                self._lock.notify_all()
            admin = _ADMIN_LISTENING.search(line)
            if admin and self.admin_addr is None:
                self.admin_addr = admin.group(1)
            found = _LISTENING.search(line)
            if found and self.addr is None:
                self.addr = found.group(1)
                self._listening.set()
        with self._lock:
            self._ended.set()
            self._lock.notify_all()
        self._listening.set()  # wake a waiter: the process will never listen now

    def wait_listening(self, timeout: float = START_TIMEOUT) -> str:
        """Waits for `listening on ADDR`; fails (and stops the process) if it does not come."""
        if not self._listening.wait(timeout) or self.addr is None:
            self.stop()
            raise AssertionError(
                f"tern {' '.join(self.args)} did not report `listening on ADDR` within "
                f"{timeout} s; exit status {self.proc.returncode}; stderr:\n{self.stderr()}"
            )
        return self.addr

    @property
    def host(self) -> str:
        """The bound host (brackets of an IPv6 address removed)."""
        assert self.addr is not None, "tern is not listening"
        return self.addr.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        """The bound port."""
        assert self.addr is not None, "tern is not listening"
        return int(self.addr.rsplit(":", 1)[1])

    def stderr(self) -> str:
        """Everything `tern` has written to stderr so far."""
        with self._lock:
            return "\n".join(self._lines)

    def wait_log(self, text: str, timeout: float = 5.0) -> bool:
        """Waits until a stderr line contains `text`; False if none did within `timeout`."""

        def seen() -> bool:
            return self._ended.is_set() or any(text in line for line in self._lines)

        with self._lock:
            self._lock.wait_for(seen, timeout)
            return any(text in line for line in self._lines)

    def signal(self, signum: int) -> None:
        """Sends a signal to the process."""
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        """Waits for the process to exit and for its stderr to be read; returns the status."""
        status = self.proc.wait(timeout)
        self._ended.wait(timeout)
        return status

    def stop(self) -> None:
        """Stops the process: SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        self._ended.wait(STOP_TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Kills the process at once (SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)
