"""The web dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
playwright-core (tests/node/dashboard.mjs) against `tern serve` with an API key and its admin API
on a free loopback port. The page signs in, sees an MQTT.js client that publishes steadily in
the clients table and a rising message rate on its chart, kicks the client (which gets
DISCONNECT 0x98), and screenshots go to target/test-artifacts/.

Chromium, Node.js and the Node packages (tests/node/node_modules) are installed by
scripts/install-test-deps; nothing here needs a network but loopback.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import REPO_ROOT
from test_websocket import NodeScript

ARTIFACTS = REPO_ROOT / "target" / "test-artifacts"
KEY = "dashboard"
SECRET = "dashboard-test-secret"


@pytest.fixture
def scripts() -> Iterator[list[NodeScript]]:
    started: list[NodeScript] = []
    yield started
    for script in started:
        script.kill()


def test_dashboard_in_chromium(start_tern, scripts: list[NodeScript]) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("chromium is not installed: run scripts/install-test-deps")
    # start_tern puts the admin API on a free loopback port (`--admin-listen 127.0.0.1:0`).
    tern = start_tern(
        'allow_anonymous = true\n\n[[admin.api_keys]]\n'
        f'key = "{KEY}"\nsecret = "{SECRET}"\n',
        "toml",
    )
    assert tern.wait_log("admin API listening on http://"), tern.stderr()
    found = re.search(r"admin API listening on (http://\S+)", tern.stderr())
    assert found, tern.stderr()
    admin_url = found.group(1)
    for old in ARTIFACTS.glob("dashboard-*.png"):
        old.unlink()

    script = NodeScript(
        "dashboard.mjs", admin_url, tern.addr, KEY, SECRET, str(ARTIFACTS), "--timeout", "20000"
    )
    scripts.append(script)

    page = script.expect("page")
    assert page["status"] == 200
    assert page["redirected"] is True
    assert page["csp"] is not None and page["csp"].startswith("default-src 'self'")
    script.expect("signed-in")

    rate = script.expect("rate")
    # No traffic at first; then the publisher sends 25 messages a second, and the page's rate
    # of messages in rises to at least 10 a second.
    assert rate["before"] == 0, rate
    assert rate["in"] >= 10, rate
    assert rate["points"] >= 3, rate
    assert rate["connections"] == "1", rate

    listed = script.expect("listed")
    assert listed["state"] == "connected"
    assert listed["rows"] == 2, listed

    escaped = script.expect("escaped")
    assert escaped == {"event": "escaped", "text": '<b id="xss">x</b>', "injected": False}

    pages = script.expect("pages")
    assert pages["route"] == ["dashboard/load", "1"], pages
    assert pages["subscription"] == ["dashboard-publisher", "dashboard/load", "0"], pages
    assert pages["payload"] == "kept <i>text</i>", pages
    assert pages["listener"] == [f"tcp:{tern.addr}", "tcp", tern.addr], pages
    assert pages["reloaded"] == "Configuration reloaded.", pages

    kicked = script.expect("kicked")
    assert kicked["reasonCode"] == 0x98, kicked
    # The table no longer shows it connected (its session ends with the connection, so the
    # row goes, unless the list was read in between).
    assert kicked["rowAfter"] in ("gone", "disconnected"), kicked
    assert kicked["notice"] == "Kicked dashboard-publisher."
    narrow = script.expect("narrow")
    assert narrow["scrollWidth"] <= narrow["width"], narrow

    done = script.expect("done")
    assert done["tokenLeft"] is None
    # Everything the page loaded came from the admin listener.
    assert done["requests"] == [admin_url], done["requests"]
    errors = [line for line in done["console"] if line.startswith(("error", "pageerror"))]
    # Chromium logs the 401 of the sign-in with the wrong secret; nothing else went wrong.
    refused = [line for line in errors if "status of 401" in line]
    assert len(refused) == 1 and len(errors) == 1, errors
    for shot in done["screenshots"]:
        data = Path(shot).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), shot
    assert sorted(Path(s).name for s in done["screenshots"]) == [
        "dashboard-clients.png",
        "dashboard-narrow.png",
        "dashboard-overview.png",
    ]
    assert script.wait() == 0, script.output()
