#!/usr/bin/env python3
"""Tern, Mosquitto and rumqttd side by side, measured by `tern bench`.

Run it through bench/compare.sh, which installs the brokers and matplotlib first. Every scenario
runs against a fresh broker process on a free loopback port, the broker pinned to one core and
the load generator to the other; the brokers' order rotates from round to round (rumqttd
always last) and the medians over the rounds are reported, with every figure also given as a ratio to Mosquitto's
from the same run. bench/README.md explains the columns and the caveats.

Outputs (under --out, default bench/results):
  compare-<UTC date>.md and latest.md   the tables, the machine, the command line
  latest.json                           the medians, machine-readable
  latest.png                            broker CPU time per delivery, per scenario and broker
  raw/<stamp>/                          one JSON per run (bench output, RSS, load), broker logs
Only a run of every scenario of the default run writes latest.* and compare-<date>.md; a run of
some other selection writes <name>-<YYYYMMDD-HHMM>.md, .json and .png instead (--name, default
"subset").

Scenarios may run the brokers with other settings than their templates (Scenario.settings, a
key of SETTINGS): the durability scenarios run Tern with persistence on, the others in memory;
the security scenarios (not part of the default run: `--scenarios security`) run TLS listeners,
a password file and an ACL file, made for the run in a temporary directory (make_security_files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Scenario:
    key: str
    title: str
    kind: str  # "throughput", "latency", "conn" or "subs"
    args: list[str]
    quick: list[str]
    # The brokers' settings variant (a key of SETTINGS): what differs from bench/<broker>'s
    # configuration template in this scenario.
    settings: str = "default"
    # The figures of the summary table, when they differ from HEADLINE[kind].
    headline: list[str] | None = None
    # Broker kinds that run this scenario (None: all) and why the others do not.
    brokers: tuple[str, ...] | None = None
    skipped_because: str | None = None
    # Part of the default run (every scenario but the security ones, which would take the full
    # run past 20 minutes; `--scenarios security` or `--scenarios all` runs them).
    in_default_run: bool = True
    # The scenario without the feature this one adds (the same flags otherwise): when both ran,
    # the results give this one's figures over the plain one's, per broker.
    plain: str | None = None

    def runs_on(self, kind: str) -> bool:
        return self.brokers is None or kind in self.brokers


@dataclass
class Settings:
    """A variant of the brokers' settings, applied to the configuration templates per run.

    `overrides` maps a broker kind to {(table, key): value}: for the TOML templates (Tern,
    rumqttd) `table` is the table's name (`"persistence"` for `[persistence]`, which is added
    when the template lacks it) and `value` a TOML value; for mosquitto.conf `table` is None and
    the line `key value` replaces the directive (or is added). `@DATA_DIR@` in a value becomes
    the run's own data directory (a TOML string), fresh for every run inside the run's
    temporary work directory and removed after the run."""

    key: str
    # What the variant changes, for the results' Markdown.
    summary: str
    overrides: dict[str, dict[tuple[str | None, str], str]]
    # Broker kinds that keep what they acknowledge on disk in this variant.
    durable: tuple[str, ...] = ()
    # Whether disk writes and fsyncs are measured (the durability variants).
    disk: bool = False


SETTINGS = {
    "default": Settings("default", "the configuration templates as they are", {}),
    "tern-fsync": Settings(
        "tern-fsync",
        "Tern durable: `[persistence] enabled = true, durability = \"fsync\"` (a PUBACK only "
        "after the fsync of the commit that holds its message), a fresh data directory per run; "
        "Mosquitto (`persistence false`) and rumqttd in memory, as in the other scenarios",
        {"tern": {("persistence", "enabled"): "true",
                  ("persistence", "durability"): '"fsync"',
                  ("persistence", "data_dir"): "@DATA_DIR@"}},
        durable=("tern",), disk=True,
    ),
    "tern-flush": Settings(
        "tern-flush",
        "Tern durable against a crash of the broker only: `[persistence] enabled = true, "
        "durability = \"flush\"` (a PUBACK after its commit is handed to the operating "
        "system, without fsync), a fresh data directory per run; Mosquitto (`persistence "
        "false`) and rumqttd in memory",
        {"tern": {("persistence", "enabled"): "true",
                  ("persistence", "durability"): '"flush"',
                  ("persistence", "data_dir"): "@DATA_DIR@"}},
        durable=("tern",), disk=True,
    ),
    # The security variants. @CERTFILE@, @KEYFILE@, @PASSWORD_FILE@ and @ACL_FILE@ become the
    # files of make_security_files (a TOML string for Tern and rumqttd, a bare path for
    # Mosquitto); both brokers get the same files.
    "tls": Settings(
        "tls",
        "a TLS listener in place of the plain one: the same server certificate and key (ECDSA "
        "P-256 by default, issued by a CA made for the run), TLS 1.3 only",
        {"tern": {("listeners", "tls"): "{ certfile = @CERTFILE@, keyfile = @KEYFILE@, "
                                         "tls_version = \"tlsv1.3\" }"},
         "mosquitto": {(None, "certfile"): "@CERTFILE@", (None, "keyfile"): "@KEYFILE@",
                       (None, "tls_version"): "tlsv1.3"},
         "rumqttd": {("v4.1.tls", "certpath"): "@CERTFILE@",
                     ("v4.1.tls", "keypath"): "@KEYFILE@"}},
    ),
    "auth": Settings(
        "auth",
        "a password file made by `mosquitto_passwd` (PBKDF2-SHA512, `$7$`, 101 iterations) "
        "with 10 users, and no anonymous access",
        {"tern": {(None, "allow_anonymous"): "false", (None, "password_file"): "@PASSWORD_FILE@"},
         "mosquitto": {(None, "allow_anonymous"): "false",
                       (None, "password_file"): "@PASSWORD_FILE@"}},
    ),
    "auth-acl": Settings(
        "auth-acl",
        "the password file of `auth`, no anonymous access, and an ACL file that grants each "
        "user its own subtree (`pattern readwrite bench/%u/#`, after two rules that do not "
        "match)",
        {"tern": {(None, "allow_anonymous"): "false", (None, "password_file"): "@PASSWORD_FILE@",
                  (None, "acl_file"): "@ACL_FILE@"},
         "mosquitto": {(None, "allow_anonymous"): "false",
                       (None, "password_file"): "@PASSWORD_FILE@",
                       (None, "acl_file"): "@ACL_FILE@"}},
    ),
}

# Placeholders of the security files (in settings and in bench flags) and what they name.
SECURITY_FILES = {"@CAFILE@": "ca.crt", "@CERTFILE@": "server.crt", "@KEYFILE@": "server.key",
                  "@PASSWORD_FILE@": "passwd", "@ACL_FILE@": "acl"}
# The users of the password file, all with the same password.
SECURITY_USERS = [f"user{i}" for i in range(10)]
SECURITY_PASSWORD = "bench-secret-1"
# The bench flags of the security scenarios.
TLS_FLAGS = ["--cafile", "@CAFILE@", "--tls-version", "tlsv1.3"]
AUTH_FLAGS = ["-u", "user%i", "--users", str(len(SECURITY_USERS)), "-P", "@PASSWORD@"]
NO_RUMQTTD_AUTH = (
    "rumqttd 0.20 has no password file (only plain-text passwords in its own configuration, "
    "which would not verify the same PBKDF2 hashes) and no ACLs"
)


SOURCES = "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4"

SCENARIOS = [
    Scenario(
        "fanin-q0", "QoS 0 fan-in 8 → 1", "throughput",
        ["fanin", "-q", "0", "--publishers", "8", "-n", "600000", "-d", "10s", "--drain", "30s"],
        ["fanin", "-q", "0", "--publishers", "8", "-n", "500", "-d", "5s", "--drain", "3s"],
    ),
    Scenario(
        "fanout-q0", "QoS 0 fan-out 1 → 100", "throughput",
        ["fanout", "-q", "0", "--subscribers", "100", "-n", "150000", "-d", "10s", "--drain", "60s"],
        ["fanout", "-q", "0", "--subscribers", "20", "-n", "200", "-d", "5s", "--drain", "3s"],
    ),
    Scenario(
        "p2p-q1", "QoS 1 point-to-point, 10 pairs, 16 in flight", "throughput",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "250000", "-d", "10s",
         "--drain", "20s"],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "300", "-d", "5s",
         "--drain", "3s"],
    ),
    Scenario(
        "p2p-q1-durable",
        "QoS 1 point-to-point, 10 pairs, 16 in flight, persistent sessions: Tern durable "
        "(fsync), Mosquitto and rumqttd in memory", "throughput",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "--persistent", "-n", "250000",
         "-d", "10s", "--drain", "20s"],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "--persistent", "-n", "300",
         "-d", "5s", "--drain", "3s"],
        settings="tern-fsync",
        headline=["cpu_us", "deliveries_s", "p50_us", "p99_us", "lost_pct"],
    ),
    Scenario(
        "p2p-q1-flush",
        "QoS 1 point-to-point, 10 pairs, 16 in flight, persistent sessions: Tern durable "
        "(flush, no fsync), Mosquitto and rumqttd in memory", "throughput",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "--persistent", "-n", "250000",
         "-d", "10s", "--drain", "20s"],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "--persistent", "-n", "300",
         "-d", "5s", "--drain", "3s"],
        settings="tern-flush",
        headline=["cpu_us", "deliveries_s", "p50_us", "p99_us", "lost_pct"],
    ),
    # Tern's default persistence (on, fsync) under traffic that has nothing to store: clean
    # sessions. It should cost what `p2p-q1` (persistence off) costs; a fix made it so.
    Scenario(
        "p2p-q1-store",
        "QoS 1 point-to-point, 10 pairs, 16 in flight, clean sessions, Tern with its default "
        "persistence on (fsync): nothing to store", "throughput",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "250000", "-d", "10s",
         "--drain", "20s"],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "300", "-d", "5s",
         "--drain", "3s"],
        settings="tern-fsync",
        brokers=("tern",),
        skipped_because="a setting of Tern's only: the others run p2p-q1",
        plain="p2p-q1",
    ),
    Scenario(
        "p2p-q2", "QoS 2 point-to-point, 10 pairs, 16 in flight", "throughput",
        ["p2p", "-q", "2", "-c", "10", "--inflight", "16", "-n", "70000", "-d", "10s",
         "--drain", "20s"],
        ["p2p", "-q", "2", "-c", "10", "--inflight", "16", "-n", "300", "-d", "5s",
         "--drain", "3s"],
    ),
    Scenario(
        "p2p-q2-if64", "QoS 2 point-to-point, 10 pairs, 64 in flight", "throughput",
        ["p2p", "-q", "2", "-c", "10", "--inflight", "64", "-n", "70000", "-d", "10s",
         "--drain", "5s"],
        ["p2p", "-q", "2", "-c", "10", "--inflight", "64", "-n", "300", "-d", "5s",
         "--drain", "2s"],
    ),
    Scenario(
        "wildcard", "QoS 0 wildcard table: 1000 × dev/<i>/+ and 20 non-matching filters each",
        "throughput",
        ["wildcard", "-q", "0", "--subscribers", "1000", "--wildcard-filters", "20",
         "--publishers", "8", "-n", "200000", "-d", "10s", "--drain", "20s"],
        ["wildcard", "-q", "0", "--subscribers", "100", "--wildcard-filters", "20",
         "--publishers", "8", "-n", "200", "-d", "5s", "--drain", "3s"],
    ),
    Scenario(
        "lat-p2p-q1", "latency: QoS 1 point-to-point at 2k msg/s (10 pairs × 200/s)", "latency",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "--rate", "200", "-n", "1000",
         "-d", "10s", "--drain", "5s"],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "--rate", "200", "-n", "60",
         "-d", "3s", "--drain", "2s"],
    ),
    Scenario(
        "lat-fanout-q0", "latency: QoS 0 fan-out 1 → 100 at 20k deliveries/s (200 msg/s)",
        "latency",
        ["fanout", "-q", "0", "--subscribers", "100", "--rate", "200", "-n", "1000", "-d", "10s",
         "--drain", "5s"],
        ["fanout", "-q", "0", "--subscribers", "100", "--rate", "200", "-n", "60", "-d", "3s",
         "--drain", "2s"],
    ),
    Scenario(
        "churn",
        "latency: QoS 1 point-to-point at 2k msg/s while 10 clients subscribe and unsubscribe",
        "latency",
        ["churn", "-q", "1", "-c", "10", "--inflight", "16", "--rate", "200", "-n", "1000",
         "-d", "10s", "--drain", "5s", "--churners", "10", "--churn-rate", "1000"],
        ["churn", "-q", "1", "-c", "10", "--inflight", "16", "--rate", "200", "-n", "60",
         "-d", "3s", "--drain", "2s", "--churners", "2", "--churn-rate", "200"],
        headline=["p50_us", "p99_us", "arrival_p50_us", "arrival_p99_us", "cpu_us",
                  "churn_ops_s", "lost_pct"],
        plain="lat-p2p-q1",
    ),
    Scenario(
        "conn-10k", "10k idle connections", "conn",
        ["conn", "-c", "10000", "--duration", "4s", "--connect-timeout", "30s",
         "--source", SOURCES],
        ["conn", "-c", "300", "--duration", "1500ms", "--source", SOURCES],
    ),
    # As many connections as the 20,000 descriptors per process allow, with room for the
    # broker's listeners, log and store and the load generator's own descriptors.
    Scenario(
        "conn-max", "19.9k idle connections (the file-descriptor limit is 20k)", "conn",
        ["conn", "-c", "19900", "--duration", "4s", "--connect-timeout", "30s",
         "--source", SOURCES],
        ["conn", "-c", "500", "--duration", "1500ms", "--source", SOURCES],
    ),
    Scenario(
        "subs-setup", "subscription set-up: 10 clients × 10k filters, 16 SUBSCRIBEs in flight",
        "subs",
        ["subscribe", "-c", "10", "--filters", "10000", "--inflight", "16"],
        ["subscribe", "-c", "3", "--filters", "200", "--inflight", "16"],
    ),
    # Security: the plain scenario's flags plus TLS, a password or an ACL.
    Scenario(
        "p2p-q1-tls", "QoS 1 point-to-point, 10 pairs, 16 in flight, over TLS 1.3", "throughput",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "250000", "-d", "10s",
         "--drain", "20s", *TLS_FLAGS],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "300", "-d", "5s",
         "--drain", "3s", *TLS_FLAGS],
        settings="tls", in_default_run=False, plain="p2p-q1",
    ),
    Scenario(
        "conn-tls", "10k idle connections over TLS 1.3", "conn",
        ["conn", "-c", "10000", "--duration", "4s", "--connect-timeout", "30s",
         "--source", SOURCES, *TLS_FLAGS],
        ["conn", "-c", "300", "--duration", "1500ms", "--source", SOURCES, *TLS_FLAGS],
        settings="tls", in_default_run=False, plain="conn-10k",
        headline=["connects_s", "connect_p99_ms", "cpu_us_conn", "rss_per_conn"],
    ),
    Scenario(
        "conn-auth", "10k idle connections with a user name and password (PBKDF2)", "conn",
        ["conn", "-c", "10000", "--duration", "4s", "--connect-timeout", "30s",
         "--source", SOURCES, *AUTH_FLAGS],
        ["conn", "-c", "300", "--duration", "1500ms", "--source", SOURCES, *AUTH_FLAGS],
        settings="auth", in_default_run=False, plain="conn-10k",
        headline=["connects_s", "connect_p99_ms", "cpu_us_conn"],
        brokers=("tern", "mosquitto"), skipped_because=NO_RUMQTTD_AUTH,
    ),
    Scenario(
        "p2p-q1-acl",
        "QoS 1 point-to-point, 10 pairs, 16 in flight, every publish and delivery checked "
        "against an ACL", "throughput",
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "250000", "-d", "10s",
         "--drain", "20s", "-t", "bench/user%i/data", "-f", "bench/user%i/data", *AUTH_FLAGS],
        ["p2p", "-q", "1", "-c", "10", "--inflight", "16", "-n", "300", "-d", "5s",
         "--drain", "3s", "-t", "bench/user%i/data", "-f", "bench/user%i/data", *AUTH_FLAGS],
        settings="auth-acl", in_default_run=False, plain="p2p-q1",
        brokers=("tern", "mosquitto"), skipped_because=NO_RUMQTTD_AUTH,
    ),
]
SCENARIO_KEYS = [s.key for s in SCENARIOS]
DEFAULT_KEYS = [s.key for s in SCENARIOS if s.in_default_run]
# Names that --scenarios accepts for several scenarios at once.
SCENARIO_GROUPS = {
    "default": DEFAULT_KEYS,
    "security": [s.key for s in SCENARIOS if s.settings in ("tls", "auth", "auth-acl")],
    "all": SCENARIO_KEYS,
}


# --------------------------------------------------------------------------------------------
# Brokers


@dataclass
class BrokerSpec:
    label: str
    kind: str  # tern, mosquitto, rumqttd
    binary: str
    # The configuration template, when it differs from bench/<name> (Tern: see tern_template).
    template: str | None = None


@dataclass
class Running:
    spec: BrokerSpec
    proc: subprocess.Popen
    port: int
    log: Path
    # The run's data directory (durable settings only), removed after the run.
    data_dir: Path | None = None
    exited_early: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG_NAMES = {"tern": "tern.toml", "mosquitto": "mosquitto.conf", "rumqttd": "rumqttd.toml"}


def tern_template(binary: str) -> tuple[str, list[str]]:
    """bench/tern.toml as this Tern build accepts it, and the optional lines it had to drop.

    Tern refuses keys it does not know; keys newer than the build (marked `# optional`) are
    dropped when `tern check-config` refuses the full file."""
    text = (BENCH_DIR / "tern.toml").read_text()
    with tempfile.TemporaryDirectory(prefix="tern-compare-check-") as tmp:
        path = Path(tmp) / "tern.toml"
        path.write_text(text.replace("@PORT@", "1883").replace("@INFLIGHT@", "20"))
        check = subprocess.run([binary, "check-config", str(path)], capture_output=True,
                               text=True, timeout=30)
    if check.returncode == 0:
        return text, []
    kept, dropped = [], []
    for line in text.splitlines(keepends=True):
        (dropped if line.rstrip().endswith("# optional") else kept).append(line)
    return "".join(kept), [l.split("#")[0].strip() for l in dropped]


def override_toml(text: str, overrides: dict[tuple[str | None, str], str], why: str) -> str:
    """Sets `key = value` in `[table]` for each override: replaces the key's line where the
    table has one, else adds it under the table's header (and the table at the end where the
    text has none). Enough for the bench's own templates, not a TOML editor."""
    lines = text.splitlines()
    for (table, key), value in overrides.items():
        line = f"{key} = {value}  # {why}"
        current, last, done = None, None, False
        for i, l in enumerate(lines):
            bare = l.split("#", 1)[0].strip()
            if bare.startswith("["):
                current = bare.strip("[] ")
                if current == table:
                    last = i
            elif current == table and bare.split("=", 1)[0].strip() == key and "=" in bare:
                lines[i] = line
                done = True
                break
            elif current == table and bare:
                last = i
        if done:
            continue
        if last is None:
            lines += ["", f"[{table}]"]
            last = len(lines) - 1
        lines.insert(last + 1, line)
    return "\n".join(lines) + "\n"


def override_conf(text: str, overrides: dict[tuple[str | None, str], str], why: str) -> str:
    """mosquitto.conf: `key value` replaces every line of the directive, or is added."""
    lines = text.splitlines()
    for (_, key), value in overrides.items():
        kept = [l for l in lines if l.split("#", 1)[0].split()[:1] != [key]]
        lines = kept + [f"# {why}", f"{key} {value}"]
    return "\n".join(lines) + "\n"


def write_config(spec: BrokerSpec, port: int, inflight: int, protocol: str, workdir: Path,
                 settings: Settings, data_dir: Path | None,
                 security: dict[str, Path] | None = None) -> Path:
    name = CONFIG_NAMES[spec.kind]
    text = spec.template if spec.template is not None else (BENCH_DIR / name).read_text()
    overrides = settings.overrides.get(spec.kind)
    if overrides:
        why = f"compare.py settings {settings.key!r}"
        text = (override_conf if spec.kind == "mosquitto" else override_toml)(text, overrides, why)
    if data_dir is not None:
        text = text.replace("@DATA_DIR@", json.dumps(str(data_dir)))
    for placeholder, path in (security or {}).items():
        text = text.replace(placeholder,
                            str(path) if spec.kind == "mosquitto" else json.dumps(str(path)))
    text = text.replace("@PORT@", str(port)).replace("@INFLIGHT@", str(inflight))
    if spec.kind == "rumqttd" and protocol == "5":
        # rumqttd serves MQTT 5 on a separate "v5" listener (its tables: [v4.1],
        # [v4.1.connections] and, over TLS, [v4.1.tls]).
        text = text.replace("[v4.1", "[v5.1").replace('name = "v4-1"', 'name = "v5-1"')
    path = workdir / f"{spec.label}-{port}-{name}"
    path.write_text(text)
    return path


def broker_command(spec: BrokerSpec, config: Path) -> list[str]:
    if spec.kind == "tern":
        return [spec.binary, "serve", "--config", str(config)]
    if spec.kind == "mosquitto":
        return [spec.binary, "-c", str(config)]
    return [spec.binary, "-q", "-c", str(config)]


def make_security_files(key_type: str) -> Path:
    """The files of the security scenarios, in a new directory: a CA (`ca.crt`), a server
    certificate it issued for 127.0.0.1 and localhost (`server.crt`, `server.key`; ECDSA P-256
    or RSA 2048 after `key_type`) made with `openssl`; a password file (`passwd`) made with
    `mosquitto_passwd` (its default hash, `$7$`: PBKDF2-SHA512) for SECURITY_USERS; an ACL file
    (`acl`). Mosquitto, started as root, drops to its own user before it reads the password and
    ACL files, so the directory and files are readable by everyone (nothing in them is secret:
    they exist for one comparison)."""
    d = Path(tempfile.mkdtemp(prefix="tern-compare-security-"))

    def run(*cmd: str) -> None:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=d)
        if p.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")

    key = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if key_type == "ec"
           else ["-newkey", "rsa:2048"])
    run("openssl", "req", "-x509", *key, "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "7", "-subj", "/CN=tern-bench-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", *key, "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (d / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature" + (",keyEncipherment" if key_type == "rsa" else "")
        + "\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "7", "-out", "server.crt", "-extfile", "server.ext")
    for i, user in enumerate(SECURITY_USERS):
        run("mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", "passwd", user,
            SECURITY_PASSWORD)
    (d / "acl").write_text(
        "# compare.py: every user reads and writes its own subtree, nothing else. The first two\n"
        "# rules match no bench topic: each check walks past them to the last one.\n"
        "pattern write clients/%c/status\n"
        "topic read broadcast/#\n"
        "pattern readwrite bench/%u/#\n")
    d.chmod(0o755)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def pin(core: int | None, cmd: list[str]) -> list[str]:
    return cmd if core is None else ["taskset", "-c", str(core), *cmd]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def uses_data_dir(spec: BrokerSpec, settings: Settings) -> bool:
    return any("@DATA_DIR@" in v for v in settings.overrides.get(spec.kind, {}).values())


def start_broker(spec: BrokerSpec, opts, workdir: Path, logdir: Path, tag: str,
                 settings: Settings) -> Running:
    port = free_port()
    # A fresh data directory per run (the broker creates it), so that no run recovers or
    # appends to what an earlier run stored.
    data_dir = workdir / f"{tag}.data" if uses_data_dir(spec, settings) else None
    if data_dir is not None:
        shutil.rmtree(data_dir, ignore_errors=True)
    config = write_config(spec, port, opts.inflight_window, opts.protocol, workdir, settings,
                          data_dir, opts.security)
    log = logdir / f"{tag}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            pin(opts.broker_core, broker_command(spec, config)),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
            start_new_session=True, preexec_fn=raise_fd_limit,
        )
    running = Running(spec, proc, port, log, data_dir)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{spec.label} exited at start-up (status {proc.returncode}); see {log}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(
                f"{spec.label} did not listen on port {port} within 20 s; see {log}"
            )
        time.sleep(0.2)  # let the probe connection's close settle before the baseline readings
    except BaseException:
        stop_broker(running)
        raise
    return running


def stop_broker(b: Running) -> None:
    try:
        if b.proc.poll() is not None:
            b.exited_early = True
            return
        b.proc.send_signal(signal.SIGTERM)
        try:
            b.proc.wait(10)
        except subprocess.TimeoutExpired:
            b.proc.kill()
            b.proc.wait(10)
    finally:
        if b.data_dir is not None:
            shutil.rmtree(b.data_dir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# /proc readings


def proc_cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def io_write_bytes(pid: int) -> int | None:
    """Bytes the process caused to be written to storage (`write_bytes` of /proc/PID/io)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


# fsync(2) and fdatasync(2) calls, counted by the kernel's syscall tracepoints through
# `perf stat` (no ptrace: the broker runs at full speed).
FSYNC_EVENTS = ["syscalls:sys_enter_fsync", "syscalls:sys_enter_fdatasync"]


def fsync_counter_problem() -> str | None:
    """Why fsync calls cannot be counted on this machine (None: they can)."""
    perf = shutil.which("perf")
    if perf is None:
        return "`perf` is not installed"
    try:
        p = subprocess.run([perf, "stat", "-x", ",", "-e", ",".join(FSYNC_EVENTS), "--", "true"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`perf stat` failed: {e}"
    counts = parse_perf_counts(p.stderr)
    if p.returncode != 0 or len(counts) != len(FSYNC_EVENTS) or None in counts.values():
        tail = p.stderr.strip().splitlines()[-1:] or ["?"]
        return f"`perf stat -e {FSYNC_EVENTS[0]}` does not count here ({tail[0]})"
    return None


def parse_perf_counts(text: str) -> dict[str, int | None]:
    """`perf stat -x ,` output: event -> count (None: not counted)."""
    counts: dict[str, int | None] = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[2] in FSYNC_EVENTS:
            counts[fields[2]] = int(fields[0]) if fields[0].isdigit() else None
    return counts


def start_fsync_counter(pid: int, out: Path) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(
            ["perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(FSYNC_EVENTS),
             "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
    except OSError:
        return None


def stop_fsync_counter(proc: subprocess.Popen | None, out: Path) -> int | None:
    """Stops the counter (SIGINT: perf prints its counts) and returns the fsync calls."""
    if proc is None:
        return None
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    try:
        counts = parse_perf_counts(out.read_text())
    except OSError:
        return None
    if len(counts) != len(FSYNC_EVENTS) or None in counts.values():
        return None
    return sum(counts.values())


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_busy_s() -> dict[str, float]:
    """Busy time (everything but idle and iowait) of each CPU, in seconds."""
    busy = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            v = [int(x) for x in vals]
            busy[name] = (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    return busy


# --------------------------------------------------------------------------------------------
# One run


def bench_command(opts, scenario: Scenario, port: int, pid: int) -> list[str]:
    args = scenario.quick if opts.quick else scenario.args
    args = [fill_security(a, opts.security) for a in args]
    cmd = [opts.bench, "bench", *args, "-p", str(port), "-V", opts.protocol, "--quiet",
           "--json", "--broker-pid", str(pid)]
    if opts.loadgen_core is not None:
        cmd += ["--threads", "1"]
    return pin(opts.loadgen_core, cmd)


def fill_security(arg: str, files: dict[str, Path] | None) -> str:
    """A bench flag with the security placeholders (files, the password) filled in."""
    arg = arg.replace("@PASSWORD@", SECURITY_PASSWORD)
    for placeholder, path in (files or {}).items():
        arg = arg.replace(placeholder, str(path))
    return arg


def bench_timeout(cmd: list[str]) -> float:
    """Wall-clock bound of one bench run: its own bounds plus set-up, with room to spare."""
    from_flags = 0.0
    for flag in ("-d", "--duration", "--drain", "--connect-timeout"):
        if flag in cmd:
            from_flags += parse_seconds(cmd[cmd.index(flag) + 1])
    return from_flags + 120


def parse_seconds(text: str) -> float:
    for unit, mult in (("ms", 1e-3), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * mult
    return float(text)


def run_one(opts, scenario: Scenario, spec: BrokerSpec, rnd: int, workdir: Path,
            rawdir: Path) -> dict:
    tag = f"r{rnd}-{scenario.key}-{spec.label}"
    settings = SETTINGS[scenario.settings]
    record: dict = {"round": rnd, "scenario": scenario.key, "broker": spec.label,
                    "kind": spec.kind, "settings": settings.key,
                    "durable": spec.kind in settings.durable, "ok": False}
    try:
        b = start_broker(spec, opts, workdir, rawdir, tag, settings)
    except RuntimeError as e:
        record["error"] = str(e)
        return record
    pid = b.proc.pid
    fsyncs = None
    try:
        cmd = bench_command(opts, scenario, b.port, pid)
        record["bench_command"] = shlex.join(cmd)
        record["port"] = b.port
        if b.data_dir is not None:
            record["data_dir"] = str(b.data_dir)
        rss_before = rss_kib(pid)
        fds_before = fd_count(pid)
        # Disk writes and fsync calls in the durability scenarios: for every broker, so that
        # the in-memory ones show 0.
        io_before = io_write_bytes(pid) if settings.disk else None
        if settings.disk and opts.count_fsyncs:
            fsyncs = start_fsync_counter(pid, rawdir / f"{tag}.fsyncs.csv")
            time.sleep(0.2)  # perf attaches to the broker's threads
        busy_before = cpu_busy_s()
        broker_cpu_before = proc_cpu_s(pid)
        t0 = time.monotonic()
        rss_loaded = None
        out_path = rawdir / f"{tag}.bench.out"
        err_path = rawdir / f"{tag}.bench.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            bench = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                     preexec_fn=raise_fd_limit)
            limit = t0 + bench_timeout(cmd)
            try:
                if scenario.kind == "conn":
                    # Wait until the broker holds every connection (one descriptor each), let
                    # it settle, and read its resident memory while the connections are held.
                    want = fds_before + connection_count(cmd)
                    reached = None
                    while bench.poll() is None and time.monotonic() < limit:
                        now = time.monotonic()
                        if reached is None and fd_count(pid) >= want:
                            reached = now
                        if reached is not None and now - reached >= 1.0:
                            rss_loaded = rss_kib(pid)
                            record["fds_loaded"] = fd_count(pid)
                            break
                        time.sleep(0.05)
                bench.wait(max(1.0, limit - time.monotonic()))
            except subprocess.TimeoutExpired:
                bench.kill()
                bench.wait()
                record["error"] = f"bench killed after {bench_timeout(cmd):.0f} s"
            except BaseException:
                bench.kill()
                bench.wait()
                raise
        wall = time.monotonic() - t0
        busy_after = cpu_busy_s()
        broker_cpu_after = proc_cpu_s(pid)
        if io_before is not None:
            io_after = io_write_bytes(pid)
            if io_after is not None:
                record["disk_write_bytes"] = io_after - io_before
        if fsyncs is not None:
            record["fsyncs"] = stop_fsync_counter(fsyncs, rawdir / f"{tag}.fsyncs.csv")
            fsyncs = None
        record["wall_s"] = round(wall, 3)
        record["bench_status"] = bench.returncode
        text = out_path.read_text(errors="replace").strip().splitlines()
        report = None
        for line in reversed(text):
            if line.startswith("{"):
                try:
                    report = json.loads(line)
                except json.JSONDecodeError:
                    pass
                break
        record["bench"] = report
        if report is None and "error" not in record:
            tail = err_path.read_text(errors="replace").strip()[-500:]
            record["error"] = f"no JSON from tern bench (status {bench.returncode}): {tail}"
        # Load on each core that was neither the broker nor the load generator.
        if broker_cpu_before is not None and broker_cpu_after is not None and report:
            broker_total = broker_cpu_after - broker_cpu_before
            loadgen = report.get("loadgen_cpu_s", 0.0)
            other = {}
            for cpu, after in busy_after.items():
                used = after - busy_before.get(cpu, after)
                if opts.broker_core is not None and cpu == f"cpu{opts.broker_core}":
                    used -= broker_total
                if opts.loadgen_core is not None and cpu == f"cpu{opts.loadgen_core}":
                    used -= loadgen
                other[cpu] = round(max(0.0, used) / wall * 100, 1) if wall > 0 else 0.0
            record["other_load_pct"] = other
        if rss_before is not None and rss_loaded is not None and report:
            connected = report["connect"]["connected"]
            record["rss_before_kib"] = rss_before
            record["rss_loaded_kib"] = rss_loaded
            if connected:
                record["rss_per_connection_b"] = round(
                    (rss_loaded - rss_before) * 1024 / connected, 1
                )
        if report and "error" not in record:
            record["ok"] = True
    finally:
        if fsyncs is not None:
            stop_fsync_counter(fsyncs, rawdir / f"{tag}.fsyncs.csv")
        stop_broker(b)
        if b.exited_early:
            record["ok"] = False
            record["broker_crashed"] = True
            record["error"] = (
                f"{spec.label} exited during the run (status {b.proc.returncode}); see {b.log}"
            )
        record["broker_status"] = b.proc.returncode
    (rawdir / f"{tag}.json").write_text(json.dumps(record, indent=1))
    return record


def connection_count(cmd: list[str]) -> int:
    """The bench's `-c N` (not taskset's `-c CORE` in front of it)."""
    args = cmd[cmd.index("bench") + 1:]
    return int(args[args.index("-c") + 1])


# --------------------------------------------------------------------------------------------
# Figures


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    lower_is_better: bool
    kinds: tuple[str, ...]
    digits: int = 2
    # Only in scenarios whose settings measure the disk (the durability figures).
    settings_only: bool = False
    # Only in the details of scenarios where some broker has it (churn's rate, not in the
    # other latency scenarios).
    when_present: bool = False


FIGURES = [
    Figure("cpu_us", "broker CPU per delivery", "µs", True, ("throughput", "latency")),
    Figure("deliveries_s", "deliveries/s", "/s", False, ("throughput", "latency"), 0),
    Figure("broker_util", "broker CPU use", "%", False, ("throughput", "latency"), 0),
    Figure("lost_pct", "lost", "%", True, ("throughput", "latency"), 3),
    Figure("duplicates", "duplicates", "", True, ("throughput", "latency"), 0),
    Figure("p50_us", "latency p50", "µs", True, ("throughput", "latency"), 0),
    Figure("p99_us", "latency p99", "µs", True, ("throughput", "latency"), 0),
    # To the kernel's receive time at the subscriber: the broker's part of the latency,
    # without the load generator's wake-ups and backlog (plain TCP on Linux).
    Figure("arrival_p50_us", "arrival p50", "µs", True, ("throughput", "latency"), 0,
           when_present=True),
    Figure("arrival_p99_us", "arrival p99", "µs", True, ("throughput", "latency"), 0,
           when_present=True),
    Figure("loadgen_us", "load generator CPU per delivery", "µs", True,
           ("throughput", "latency")),
    Figure("fsyncs_s", "broker fsyncs/s", "/s", True, ("throughput", "latency"), 0,
           settings_only=True),
    Figure("per_fsync", "deliveries per fsync", "", False, ("throughput", "latency"), 0,
           settings_only=True),
    Figure("disk_b", "broker disk writes per delivery", "B", True, ("throughput", "latency"),
           0, settings_only=True),
    Figure("rss_per_conn", "broker RSS per idle connection", "B", True, ("conn",), 0),
    Figure("connects_s", "connects/s", "/s", False, ("conn",), 0),
    Figure("connect_p99_ms", "connect p99", "ms", True, ("conn",), 2),
    Figure("cpu_us_conn", "broker CPU per connect", "µs", True, ("conn",), 1),
    Figure("connect_failed", "failed connects", "", True, ("conn",), 0),
    Figure("loadgen_s", "load generator CPU", "s", True, ("conn",), 2),
    Figure("churn_ops_s", "churn subscribe/unsubscribe/s", "/s", False, ("latency",), 0,
           when_present=True),
    Figure("subs_s", "subscriptions/s", "/s", False, ("subs",), 0),
    Figure("suback_p50_us", "SUBACK p50", "µs", True, ("subs",), 0),
    Figure("suback_p99_us", "SUBACK p99", "µs", True, ("subs",), 0),
    Figure("cpu_us_sub", "broker CPU per subscription", "µs", True, ("subs",), 2),
    Figure("unsubs_s", "unsubscriptions/s", "/s", False, ("subs",), 0),
    Figure("unsuback_p99_us", "UNSUBACK p99", "µs", True, ("subs",), 0),
    Figure("cpu_us_unsub", "broker CPU per unsubscription", "µs", True, ("subs",), 2),
    Figure("sub_failed", "refused (un)subscriptions", "", True, ("subs",), 0),
    Figure("loadgen_us_sub", "load generator CPU per subscription", "µs", True, ("subs",), 2),
]
FIG = {f.key: f for f in FIGURES}


def figures_of(record: dict) -> dict[str, float]:
    r = record["bench"]
    out: dict[str, float] = {}
    if r["scenario"] == "subscribe":
        out["subs_s"] = r["subscriptions_per_s"]
        out["suback_p50_us"] = r["suback_latency_us"]["p50"]
        out["suback_p99_us"] = r["suback_latency_us"]["p99"]
        if r.get("broker_cpu_us_per_subscription") is not None:
            out["cpu_us_sub"] = r["broker_cpu_us_per_subscription"]
        out["unsubs_s"] = r["unsubscribe_per_s"]
        out["unsuback_p99_us"] = r["unsuback_latency_us"]["p99"]
        if r.get("broker_cpu_us_per_unsubscription") is not None:
            out["cpu_us_unsub"] = r["broker_cpu_us_per_unsubscription"]
        out["sub_failed"] = r["failures"] + r["unsubscribe_failures"]
        ops = r["subscriptions"] + r["failures"] + r["unsubscribe_ops"]
        if ops:
            out["loadgen_us_sub"] = r["loadgen_cpu_s"] * 1e6 / ops
        return out
    if r["scenario"] == "conn":
        c = r["connect"]
        if "rss_per_connection_b" in record:
            out["rss_per_conn"] = record["rss_per_connection_b"]
        out["connects_s"] = c["per_s"]
        out["connect_p99_ms"] = c["p99_ms"]
        out["connect_failed"] = c["failed"]
        if r.get("broker_cpu_s") is not None and c["connected"]:
            out["cpu_us_conn"] = r["broker_cpu_s"] * 1e6 / c["connected"]
        out["loadgen_s"] = r["loadgen_cpu_s"]
        return out
    received = r["received"]
    if r.get("broker_cpu_us_per_delivery") is not None:
        out["cpu_us"] = r["broker_cpu_us_per_delivery"]
    out["deliveries_s"] = r["received_per_s"]
    if r.get("broker_cpu_s") is not None and r["duration_s"] > 0:
        out["broker_util"] = min(100.0, r["broker_cpu_s"] / r["duration_s"] * 100)
    out["lost_pct"] = r["lost"] * 100 / r["expected"] if r["expected"] else 0.0
    out["duplicates"] = r["duplicates"]
    lat = r["latency_us"]
    if lat["count"]:
        out["p50_us"] = lat["p50"]
        out["p99_us"] = lat["p99"]
    arrival = r.get("arrival_latency_us")
    if arrival and arrival["count"]:
        out["arrival_p50_us"] = arrival["p50"]
        out["arrival_p99_us"] = arrival["p99"]
    if received:
        out["loadgen_us"] = r["loadgen_cpu_s"] * 1e6 / received
    if r.get("churners"):
        out["churn_ops_s"] = r["churn_ops_per_s"]
    # fsyncs and disk writes are counted from the broker's start of the bench to its end
    # (connections included), a little longer than the bench's own measured phase.
    fsyncs = record.get("fsyncs")
    if fsyncs is not None and r["duration_s"] > 0:
        out["fsyncs_s"] = fsyncs / r["duration_s"]
        if fsyncs:
            out["per_fsync"] = received / fsyncs
    if record.get("disk_write_bytes") is not None and received:
        out["disk_b"] = record["disk_write_bytes"] / received
    return out


def drain_cut(record: dict) -> bool:
    """Whether messages were lost while deliveries were still arriving when the drain ended:
    then the 'lost' count includes the broker's backlog, not only dropped messages."""
    r = record.get("bench") or {}
    if not r.get("lost") or not r.get("sent_per_s"):
        return False
    cmd = shlex.split(record.get("bench_command", ""))
    drain = parse_seconds(cmd[cmd.index("--drain") + 1]) if "--drain" in cmd else 5.0
    last_send = r["sent"] / r["sent_per_s"]
    return r["duration_s"] >= last_send + drain - 1.0


def summarise(records: list[dict], labels: list[str]) -> dict:
    """scenario -> broker -> {figure: {median, min, max, n}} plus run counts and failures."""
    summary: dict = {}
    for s in SCENARIOS:
        per: dict = {}
        for label in labels:
            runs = [r for r in records if r["scenario"] == s.key and r["broker"] == label]
            good = [r for r in runs if r["ok"]]
            values: dict[str, list[float]] = {}
            for r in good:
                for k, v in figures_of(r).items():
                    values.setdefault(k, []).append(v)
            other = [max(r.get("other_load_pct", {}).values(), default=0.0) for r in good]
            if not runs and not s.runs_on(kind_of(label)):
                per[label] = {"runs": 0, "ok": 0, "skipped": s.skipped_because or "not run",
                              "figures": {}}
                continue
            per[label] = {
                "runs": len(runs),
                "ok": len(good),
                "durable": any(r.get("durable") for r in runs),
                "failures": [r.get("error", "?") for r in runs if not r["ok"]],
                "crashes": sum(1 for r in runs if r.get("broker_crashed")),
                "errors": sum(r["bench"]["errors"] for r in good),
                "errors_by_kind": merged_errors(good),
                "drain_cut": sum(1 for r in good if drain_cut(r)),
                "lost_total": sum(r["bench"].get("lost", 0) for r in good),
                "other_load_pct_max": max(other, default=0.0),
                "figures": {
                    k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
                    for k, v in values.items()
                },
            }
        if any(per[l]["runs"] for l in labels):
            summary[s.key] = per
    return summary


def kind_of(label: str) -> str:
    """The broker kind of a label (`tern-b`, the A/A twin, is a tern)."""
    return label[:-2] if label.endswith("-b") else label


def merged_errors(runs: list[dict]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in runs:
        for k, v in r["bench"].get("errors_by_kind", {}).items():
            kinds[k] = kinds.get(k, 0) + v
    return kinds


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}".replace(",", " ")
    if abs(value) >= 100:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "–"
    if b == 0:
        return "–" if a == 0 else "∞"
    r = a / b
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def median_of(summary, scenario, label, key):
    f = summary[scenario][label]["figures"].get(key)
    return None if f is None else f["median"]


HEADLINE = {
    "throughput": ["cpu_us", "deliveries_s", "lost_pct"],
    "latency": ["p50_us", "p99_us", "arrival_p50_us", "arrival_p99_us", "cpu_us", "lost_pct"],
    "conn": ["rss_per_conn", "connects_s", "connect_p99_ms"],
    "subs": ["subs_s", "suback_p99_us", "cpu_us_sub", "unsubs_s"],
}


def ratio_pairs(labels: list[str], aa: str | None) -> list[tuple[str, str]]:
    """Which ratios the summary shows: Tern against each reference broker, rumqttd against
    Mosquitto, and the A/A pair (the second instance over the first)."""
    refs = [l for l in ("mosquitto", "rumqttd") if l in labels]
    own = [l for l in labels if l not in refs and not (aa and l == f"{aa}-b")]
    pairs = [(a, r) for a in own for r in refs]
    if "mosquitto" in labels and "rumqttd" in labels:
        pairs.append(("rumqttd", "mosquitto"))
    if aa and f"{aa}-b" in labels:
        pairs.append((f"{aa}-b", aa))
    if not pairs:
        pairs = [(l, labels[0]) for l in labels[1:]]
    return pairs


def headline_table(summary: dict, labels: list[str], pairs: list[tuple[str, str]]) -> list[str]:
    """The short table: the figures that matter per scenario, with ratios."""
    head = ["scenario", "figure", *labels]
    head += [f"{a} ÷ {b}" for a, b in pairs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in SCENARIOS:
        if s.key not in summary:
            continue
        first = True
        for key in s.headline or HEADLINE[s.kind]:
            f = FIG[key]
            vals = {l: median_of(summary, s.key, l, key) for l in labels}
            if key == "lost_pct" and not any(vals.values()):
                continue
            if f.when_present and all(v is None for v in vals.values()):
                continue
            name = f"{f.label} ({f.unit}, {'lower' if f.lower_is_better else 'higher'} is better)" \
                if f.unit else f.label
            row = [s.title if first else "", name]
            row += ["not run" if summary[s.key][l].get("skipped") else fmt(vals[l], f.digits)
                    for l in labels]
            row += [ratio(vals[a], vals[b]) for a, b in pairs]
            lines.append("| " + " | ".join(row) + " |")
            first = False
    return lines


# The figures of the detailed tables that get a column of ratios to the baseline broker.
RATIO_COLUMNS = ("cpu_us", "deliveries_s", "p99_us", "rss_per_conn", "connects_s",
                 "connect_p99_ms", "subs_s", "suback_p99_us", "cpu_us_sub", "unsubs_s")


def detail_tables(summary: dict, labels: list[str], baseline: str | None) -> list[str]:
    out = []
    for s in SCENARIOS:
        if s.key not in summary:
            continue
        figs = [f for f in FIGURES
                if s.kind in f.kinds and (not f.settings_only or SETTINGS[s.settings].disk)
                and (not f.when_present
                     or any(f.key in summary[s.key][l]["figures"] for l in labels))]
        head = ["broker", "runs"]
        for f in figs:
            head.append(f"{f.label} ({f.unit})" if f.unit else f.label)
            if baseline and f.key in RATIO_COLUMNS:
                head.append(f"÷ {baseline}")
        head.append("other load %")
        out.append(f"### {s.title} (`{s.key}`)")
        out.append("")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for l in labels:
            p = summary[s.key][l]
            if p.get("skipped"):
                continue
            row = [f"{l} (durable)" if p.get("durable") else l, f"{p['ok']}/{p['runs']}"]
            for f in figs:
                st = p["figures"].get(f.key)
                if st is None:
                    cell = "–"
                elif st["n"] > 1 and f.key in ("cpu_us", "deliveries_s", "lost_pct",
                                               "rss_per_conn", "connects_s", "p99_us",
                                               "subs_s", "cpu_us_sub", "suback_p99_us"):
                    cell = (f"{fmt(st['median'], f.digits)} "
                            f"({fmt(st['min'], f.digits)}–{fmt(st['max'], f.digits)})")
                else:
                    cell = fmt(st["median"], f.digits)
                row.append(cell)
                if baseline and f.key in RATIO_COLUMNS:
                    row.append(ratio(median_of(summary, s.key, l, f.key),
                                     median_of(summary, s.key, baseline, f.key)))
            row.append(fmt(p["other_load_pct_max"], 0))
            out.append("| " + " | ".join(row) + " |")
        notes = []
        for l in labels:
            p = summary[s.key][l]
            if p.get("skipped"):
                notes.append(f"{l}: not run: {p['skipped']}.")
                continue
            if p["crashes"]:
                notes.append(f"**{l} exited during {p['crashes']} run(s).**")
            for e in dict.fromkeys(p["failures"]):
                notes.append(f"{l}: failed run: {e}")
            if p.get("drain_cut"):
                notes.append(f"{l}: in {p['drain_cut']} run(s) deliveries were still arriving "
                             f"when the drain ended: its \"lost\" includes messages the broker "
                             f"still held (a backlog), not only dropped ones.")
            if p["errors"]:
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(p["errors_by_kind"].items()))
                notes.append(f"{l}: {p['errors']} client errors over its {p['ok']} runs "
                             f"({kinds}; see the raw JSON).")
        if notes:
            out.append("")
            out.extend(f"- {n}" for n in notes)
        out.append("")
    return out


# --------------------------------------------------------------------------------------------
# Machine, versions, chart


def machine() -> dict:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    osname = "?"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    virt = []
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Hypervisor vendor:"):
                virt.append(f"{line.split(':', 1)[1].strip()} virtual machine")
    except OSError:
        pass
    if Path("/.dockerenv").exists():
        virt.append("in a container")
    # The file system of the temporary directory, where durable runs keep their data: on
    # tmpfs an fsync would cost nothing.
    tmp = tempfile.gettempdir()
    try:
        fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", tmp],
                            capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        fs = []
    tmp_fs = f"{tmp} on {fs[0]} ({fs[1]}, {fs[2]})" if len(fs) >= 3 else f"{tmp} (file system ?)"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "os": osname,
        "virtualisation": ", ".join(virt) or None,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "tmp_fs": tmp_fs,
    }


def first_line(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (p.stdout + p.stderr).strip().splitlines()
    return text[0] if text else "?"


def versions(specs: list[BrokerSpec], bench: str) -> dict:
    out = {}
    for s in specs:
        if s.kind == "tern":
            v = first_line([s.binary, "--version"])
            commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                    "crates"], capture_output=True, text=True).stdout.strip()
            built = dt.datetime.fromtimestamp(os.path.getmtime(s.binary), dt.timezone.utc)
            digest = hashlib.sha256(Path(s.binary).read_bytes()).hexdigest()[:12]
            v += f" (git {commit or '?'}{' + uncommitted changes' if dirty else ''}, " \
                 f"built {built:%Y-%m-%d %H:%M} UTC, binary sha256 {digest})"
        elif s.kind == "mosquitto":
            v = first_line([s.binary, "-h"])
        else:
            v = first_line([s.binary, "--version"])
        out[s.label] = v
    out["load generator"] = first_line([bench, "--version"]) + " (`tern bench`)"
    return out


def chart(summary: dict, labels: list[str], path: Path, title: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    # Scenarios that deliver messages (conn and subs have no CPU per delivery).
    keys = [s for s in SCENARIOS if s.key in summary and s.kind in ("throughput", "latency")]
    if not keys:
        return "no message scenario: no chart"
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / len(labels)
    palette = {"tern": "#2a9d8f", "tern-b": "#8fd3c9", "mosquitto": "#264653",
               "mosquitto-b": "#7a97a6", "rumqttd": "#e9c46a", "rumqttd-b": "#f4e1a8"}
    colours = [palette.get(l, "#8d99ae") for l in labels]
    for i, label in enumerate(labels):
        xs, ys, lost = [], [], []
        for j, s in enumerate(keys):
            v = median_of(summary, s.key, label, "cpu_us")
            if v is not None and v > 0:
                xs.append(j + (i - (len(labels) - 1) / 2) * width)
                ys.append(v)
                lost.append((median_of(summary, s.key, label, "lost_pct") or 0) > 0)
            else:
                # No figure: nothing was delivered (or the run failed), or the broker did not
                # run this scenario.
                text = "not\nrun" if summary[s.key][label].get("skipped") else "none\ndelivered"
                ax.annotate(text, (j + (i - (len(labels) - 1) / 2) * width, 0),
                            xycoords=("data", "axes fraction"), xytext=(0, 4),
                            textcoords="offset points", ha="center", va="bottom", fontsize=6,
                            color=colours[i])
        bars = ax.bar(xs, ys, width, label=label, color=colours[i])
        for bar, y, l in zip(bars, ys, lost):
            ax.annotate(f"{y:.2f}" if y < 10 else f"{y:.0f}", (bar.get_x() + bar.get_width() / 2, y),
                        ha="center", va="bottom", fontsize=7)
            if l:
                bar.set_hatch("//")
    ax.set_yscale("log")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([s.key + (f"\n(durable: {', '.join(SETTINGS[s.settings].durable)})"
                                 if SETTINGS[s.settings].durable else "") for s in keys],
                       rotation=15)
    ax.set_ylabel("broker CPU µs per delivery (log scale, lower is better)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.text(0.01, 0.01, "hatched: messages were lost in that configuration; medians over the rounds",
             fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(
        description="Tern, Mosquitto and rumqttd side by side (run through bench/compare.sh).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--brokers", default="tern,mosquitto,rumqttd",
                   help="comma-separated brokers: tern, mosquitto, rumqttd (default: all three)")
    p.add_argument("--aa", metavar="BROKER",
                   help="A/A check: add a second instance of BROKER, labelled BROKER-b, that "
                        "runs the same binary and settings; the two differ only by noise")
    p.add_argument("--scenarios", default="default",
                   help="comma-separated scenarios or groups. Scenarios: "
                        + ", ".join(SCENARIO_KEYS) + ". Groups: default (every scenario but "
                        "the security ones; the default), security ("
                        + ", ".join(SCENARIO_GROUPS["security"]) + "), all")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode: 1 round, tiny counts (checks that everything works)")
    p.add_argument("--protocol", default="3.1.1", choices=["3.1.1", "5"],
                   help="MQTT version of every client (default 3.1.1, the version all three "
                        "brokers implement fully)")
    p.add_argument("--inflight-window", type=int, default=20,
                   help="outgoing QoS 1/2 window per client of Tern and Mosquitto (both "
                        "default to 20; rumqttd's is fixed at 100)")
    p.add_argument("--broker-core", type=int, default=0)
    p.add_argument("--loadgen-core", type=int, default=1)
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--tern", default=str(ROOT / "target/release/tern"))
    p.add_argument("--bench", help="tern binary that runs the load (default: --tern)")
    p.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    p.add_argument("--rumqttd", default=str(BENCH_DIR / ".tools/rumqttd/bin/rumqttd"))
    p.add_argument("--out", help="where the results go (default bench/results; with --quick "
                                 "bench/results/raw/quick, so that a smoke run does not replace "
                                 "the latest full results)")
    p.add_argument("--name", default=None,
                   help="results file name of a run that leaves out scenarios: "
                        "<out>/<NAME>-<date>-<time>.md, .json and .png (default: subset). Only a "
                        "run of every scenario replaces latest.md, latest.json and latest.png")
    p.add_argument("--tls-key", choices=["ec", "rsa"], default="ec",
                   help="key of the server certificate in the TLS scenarios: ECDSA P-256 "
                        "(default) or RSA 2048")
    p.add_argument("--no-fsync-count", dest="count_fsyncs", action="store_false",
                   help="do not count the brokers' fsync calls (with perf) in the durability "
                        "scenarios")
    p.add_argument("--note", action="append", default=[],
                   help="a line added to the Markdown's notes (repeatable)")
    p.add_argument("--rereport", metavar="RAWDIR",
                   help="run nothing: rebuild the tables, Markdown and chart from a previous "
                        "run's raw directory (bench/results/raw/<stamp>)")
    p.add_argument("--command-line", default=None, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.quick and "--rounds" not in " ".join(argv):
        opts.rounds = 1
    if opts.no_pin:
        opts.broker_core = opts.loadgen_core = None
    opts.bench = opts.bench or opts.tern
    if opts.out is None:
        opts.out = str(BENCH_DIR / "results" / "raw" / "quick") if opts.quick \
            else str(BENCH_DIR / "results")
    return opts


class Interrupted(Exception):
    pass


def on_signal(signum, _frame):
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    if opts.rereport:
        raw = Path(opts.rereport).resolve()
        meta = json.loads((raw / "meta.json").read_text())
        meta["raw"] = str(raw)
        return report(meta, json.loads((raw / "records.json").read_text()), Path(opts.out))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    binaries = {"tern": opts.tern, "mosquitto": opts.mosquitto, "rumqttd": opts.rumqttd}
    specs = []
    for name in [b.strip() for b in opts.brokers.split(",") if b.strip()]:
        if name not in binaries:
            print(f"compare: unknown broker {name!r}", file=sys.stderr)
            return 2
        specs.append(BrokerSpec(name, name, binaries[name]))
    if opts.aa:
        if opts.aa not in binaries:
            print(f"compare: unknown broker {opts.aa!r}", file=sys.stderr)
            return 2
        if opts.aa not in [s.label for s in specs]:
            specs.insert(0, BrokerSpec(opts.aa, opts.aa, binaries[opts.aa]))
        specs.insert([s.label for s in specs].index(opts.aa) + 1,
                     BrokerSpec(f"{opts.aa}-b", opts.aa, binaries[opts.aa]))
    for s in specs + [BrokerSpec("bench", "tern", opts.bench)]:
        if not os.access(s.binary, os.X_OK):
            print(f"compare: {s.label}: {s.binary} is not an executable", file=sys.stderr)
            return 2
    wanted = []
    for k in (k.strip() for k in opts.scenarios.split(",")):
        wanted += SCENARIO_GROUPS.get(k, [k] if k else [])
    unknown = [k for k in wanted if k not in SCENARIO_KEYS]
    if unknown:
        print(f"compare: unknown scenario(s) {unknown}; known: {SCENARIO_KEYS}; groups: "
              f"{list(SCENARIO_GROUPS)}", file=sys.stderr)
        return 2
    scenarios = [s for s in SCENARIOS if s.key in wanted]
    opts.fsync_counter_problem = None
    if any(SETTINGS[s.settings].disk for s in scenarios):
        opts.fsync_counter_problem = (fsync_counter_problem() if opts.count_fsyncs
                                      else "turned off (--no-fsync-count)")
        if opts.fsync_counter_problem:
            opts.count_fsyncs = False
            print(f"compare: fsyncs not counted: {opts.fsync_counter_problem}", file=sys.stderr)

    raise_fd_limit()
    # Run a private copy of the tern binary: target/release/tern may be rebuilt (by someone
    # else's cargo build) while the comparison runs, and every run must use the same binary.
    snapshot = Path(tempfile.mkdtemp(prefix="tern-compare-bin-"))
    copies: dict[str, str] = {}
    for s in specs + [BrokerSpec("bench", "tern", opts.bench)]:
        if s.kind == "tern":
            if s.binary not in copies:
                copies[s.binary] = str(snapshot / f"tern-{len(copies)}")
                shutil.copy2(s.binary, copies[s.binary])
            if s.label == "bench":
                opts.bench = copies[s.binary]
            else:
                s.binary = copies[s.binary]
    for s in specs:
        if s.kind == "tern":
            s.template, dropped = tern_template(s.binary)
            if dropped:
                opts.note.append(
                    f"This Tern build does not know some settings of bench/tern.toml; run "
                    f"without: {'; '.join(dropped)}."
                )
                print(f"compare: {s.label}: this build refuses the optional settings "
                      f"{dropped}; running without them", file=sys.stderr)
    opts.security = None
    try:
        if any(s.key in SCENARIO_GROUPS["security"] for s in scenarios):
            try:
                sec = make_security_files(opts.tls_key)
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"compare: cannot make the security files: {e}", file=sys.stderr)
                return 1
            opts.security = {p: sec / name for p, name in SECURITY_FILES.items()}
        return compare(opts, specs, scenarios, argv)
    except (Interrupted, KeyboardInterrupt) as e:
        print(f"compare: interrupted ({e or 'SIGINT'}); brokers stopped, nothing written",
              file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
        if opts.security:
            shutil.rmtree(opts.security["@CAFILE@"].parent, ignore_errors=True)


def compare(opts, specs: list[BrokerSpec], scenarios: list[Scenario], argv: list[str]) -> int:
    labels = [s.label for s in specs]
    out = Path(opts.out)
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S") + ("-quick" if opts.quick else "")
    rawdir = (out / "raw" / stamp).resolve()
    rawdir.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": opts.command_line or shlex.join(["bench/compare.py", *argv]),
        "started": started.isoformat(),
        "machine": machine(),
        "versions": versions(specs, opts.bench),
        "labels": labels,
        "aa": opts.aa,
        "scenarios": [s.key for s in scenarios],
        "full": all(s.key in [x.key for x in scenarios] for s in SCENARIOS if s.in_default_run),
        "name": opts.name,
        "scenario_args": {s.key: s.quick if opts.quick else s.args for s in scenarios},
        "scenario_settings": {s.key: s.settings for s in scenarios},
        "fsync_counter_problem": opts.fsync_counter_problem,
        "rounds": opts.rounds,
        "quick": opts.quick,
        "protocol": opts.protocol,
        "inflight_window": opts.inflight_window,
        "broker_core": opts.broker_core,
        "loadgen_core": opts.loadgen_core,
        "notes": opts.note,
        "raw": str(rawdir),
    }
    if opts.security:
        meta["security"] = {
            "key_type": opts.tls_key,
            "openssl": first_line(["openssl", "version"]).split(" (")[0],
            "acl": opts.security["@ACL_FILE@"].read_text(),
        }

    print(f"compare: {len(scenarios)} scenarios × {len(specs)} brokers × {opts.rounds} rounds; "
          f"raw results in {rawdir}", flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="tern-compare-") as tmp:
        workdir = Path(tmp)
        for rnd in range(opts.rounds):
            order = round_order(specs, rnd)
            for sc in scenarios:
                for spec in order:
                    if not sc.runs_on(spec.kind):
                        continue
                    t = time.monotonic()
                    rec = run_one(opts, sc, spec, rnd + 1, workdir, rawdir)
                    records.append(rec)
                    print(f"  round {rnd + 1} {sc.key:<14} {spec.label:<10} "
                          f"{time.monotonic() - t:5.1f} s  {one_line(rec)}", flush=True)
    meta["finished"] = dt.datetime.now(dt.timezone.utc).isoformat()
    meta["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    (rawdir / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
    (rawdir / "records.json").write_text(json.dumps(records, indent=1))
    return report(meta, records, out)


def round_order(specs: list[BrokerSpec], rnd: int) -> list[BrokerSpec]:
    """The brokers' order in round `rnd` (from 0): the others rotate, rumqttd runs last.

    A run right after rumqttd's idle-connection runs (900 MB at 19,900 connections) connected
    5-15 % slower, whichever broker it measured; with four brokers rotated over three rounds,
    one broker was that run in every round. With rumqttd last, the broker that follows it
    (the first of the next scenario) changes from round to round.
    """
    last = [s for s in specs if s.kind == "rumqttd"]
    rest = [s for s in specs if s.kind != "rumqttd"]
    k = rnd % len(rest) if rest else 0
    return rest[k:] + rest[:k] + last


def one_line(rec: dict) -> str:
    status = "ok" if rec["ok"] else f"FAILED: {rec.get('error')}"
    if not rec.get("bench"):
        return status
    f = figures_of(rec)
    if rec["bench"]["scenario"] == "conn":
        brief = (f"{fmt(f.get('rss_per_conn'), 0)} B/conn, {fmt(f.get('connects_s'), 0)} conn/s, "
                 f"p99 {fmt(f.get('connect_p99_ms'), 2)} ms")
    elif rec["bench"]["scenario"] == "subscribe":
        brief = (f"{fmt(f.get('subs_s'), 0)} subs/s, SUBACK p99 "
                 f"{fmt(f.get('suback_p99_us'), 0)} µs, {fmt(f.get('cpu_us_sub'), 2)} µs/sub, "
                 f"{fmt(f.get('unsubs_s'), 0)} unsubs/s, refused {fmt(f.get('sub_failed'), 0)}")
    else:
        brief = (f"{fmt(f.get('cpu_us'), 2)} µs/delivery, {fmt(f.get('deliveries_s'), 0)}/s, "
                 f"lost {fmt(f.get('lost_pct'), 3)} %, p50/p99 {fmt(f.get('p50_us'), 0)}/"
                 f"{fmt(f.get('p99_us'), 0)} µs")
        if "fsyncs_s" in f or "disk_b" in f:
            brief += (f", {fmt(f.get('fsyncs_s'), 0)} fsyncs/s, "
                      f"{fmt(f.get('disk_b'), 0)} B written/delivery")
        if "churn_ops_s" in f:
            brief += f", churn {fmt(f.get('churn_ops_s'), 0)} (un)subscribes/s"
    return f"{brief}  {status}"


# The figures of "What the feature costs", per scenario kind.
COST_FIGURES = {
    "throughput": ["cpu_us", "deliveries_s", "p99_us"],
    "latency": ["cpu_us", "p50_us", "p99_us"],
    "conn": ["cpu_us_conn", "connects_s", "connect_p99_ms", "rss_per_conn"],
    "subs": ["cpu_us_sub", "subs_s", "suback_p99_us", "unsubs_s"],
}


def cost_table(summary: dict, labels: list[str]) -> list[str]:
    """Each scenario with a `plain` counterpart in the same run: its medians over the plain
    scenario's, per broker."""
    rows = []
    for s in SCENARIOS:
        if s.plain is None or s.key not in summary or s.plain not in summary:
            continue
        first = True
        for key in COST_FIGURES[s.kind]:
            f = FIG[key]
            row = [f"`{s.key}` ÷ `{s.plain}`" if first else "", f.label]
            for l in labels:
                if summary[s.key][l].get("skipped"):
                    row.append("not run")
                else:
                    row.append(ratio(median_of(summary, s.key, l, key),
                                     median_of(summary, s.plain, l, key)))
            rows.append("| " + " | ".join(row) + " |")
            first = False
    if not rows:
        return []
    head = ["scenario ÷ plain", "figure", *labels]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows]


def security_notes(security: dict, keys: list[str], labels: list[str]) -> list[str]:
    """The Markdown lines that say how the security scenarios `keys` were set up."""
    key = "ECDSA P-256" if security.get("key_type") == "ec" else "RSA 2048"
    acl = "; ".join(l for l in security.get("acl", "").splitlines() if not l.startswith("#"))
    settings = {s.settings for s in SCENARIOS if s.key in keys}
    notes = []
    if "tls" in settings:
        notes += [
            f"TLS: a CA and a server certificate it issued for `127.0.0.1` and `localhost`, "
            f"{key} keys, made for the run with `openssl` ({security.get('openssl', '?')}); "
            f"the same files for every broker. The brokers accept TLS 1.3 only (Tern "
            f"`tls_version = \"tlsv1.3\"`, Mosquitto `tls_version tlsv1.3`"
            + ("; rumqttd cannot be restricted, but the clients offer TLS 1.3 only" if
               "rumqttd" in labels else "")
            + "), and `tern bench --tls-version tlsv1.3` offers only TLS 1.3. Cipher suites and "
            "key exchange are each side's defaults: the client (rustls) prefers "
            "TLS_AES_256_GCM_SHA384 and X25519. `tern bench` verifies the server's chain and "
            "name, and makes a full handshake on every connection (no session resumption), so "
            "connects/s over TLS is the rate of full handshakes.",
        ]
        if "rumqttd" in labels:
            notes.append("rumqttd: its own TLS settings, `[v4.1.tls] certpath` and `keypath` "
                         "(no client certificates).")
    if settings & {"auth", "auth-acl"}:
        notes.append(
            f"Passwords: one file made by Mosquitto's `mosquitto_passwd -b` (its default hash, "
            f"`$7$`: PBKDF2-SHA512, 101 iterations) with {len(SECURITY_USERS)} users "
            f"`user0`…`user{len(SECURITY_USERS) - 1}` and the same password; "
            f"`allow_anonymous false`. Client i logs in as `user<i mod {len(SECURITY_USERS)}>` "
            f"(`tern bench -u 'user%i' --users {len(SECURITY_USERS)} -P ...`).")
    if "auth-acl" in settings:
        notes.append(
            f"ACL (`p2p-q1-acl`): `{acl}`. Pair i publishes and subscribes on "
            f"`bench/user<i>/data` as `user<i>`, so every PUBLISH is checked for write and every "
            f"delivery for read, past two rules that do not match to the one that does.")
    if settings & {"auth", "auth-acl"} and "rumqttd" in labels:
        notes.append(f"rumqttd does not run `conn-auth` and `p2p-q1-acl`: {NO_RUMQTTD_AUTH}.")
    return notes


def report(meta: dict, records: list[dict], out: Path) -> int:
    """Tables, Markdown, JSON and chart from the runs' records (also used by --rereport)."""
    labels = meta["labels"]
    baseline = "mosquitto" if "mosquitto" in labels else labels[0]
    scenarios = [s for s in SCENARIOS if s.key in meta["scenarios"]]
    started = dt.datetime.fromisoformat(meta["started"])
    finished = dt.datetime.fromisoformat(meta["finished"])
    host, vers, quick = meta["machine"], meta["versions"], meta["quick"]
    elapsed = int((finished - started).total_seconds())

    # The settings variant of each scenario as it ran (runs older than the variants: default).
    settings_of = {s.key: meta.get("scenario_settings", {}).get(s.key, "default")
                   for s in scenarios}
    variants = {k: [s.key for s in scenarios if settings_of[s.key] == k]
                for k in dict.fromkeys(settings_of.values()) if k != "default"}
    # The durability variants (those that measure the disk; unknown keys: older runs, which
    # had only those).
    disk_variants = {k: keys for k, keys in variants.items()
                     if k not in SETTINGS or SETTINGS[k].disk}

    summary = summarise(records, labels)
    headline = headline_table(summary, labels, ratio_pairs(labels, meta["aa"]))
    details = detail_tables(summary, labels, baseline)
    costs = cost_table(summary, labels)
    durable_note = []
    for key, keys in variants.items():
        v = SETTINGS.get(key)
        if key not in disk_variants:
            durable_note.append(f"- {', '.join(f'`{k}`' for k in keys)}: {v.summary}.")
            continue
        kinds = ", ".join(v.durable) if v and v.durable else "none"
        durable_note.append(
            f"- {', '.join(f'`{k}`' for k in keys)}: {v.summary if v else key}. Durable: "
            f"{kinds}. Every client has a persistent session (`--persistent`: clean session 0; "
            f"on MQTT 5 clean start 0 and a session expiry of 300 s)."
        )
    if any("tern" in (SETTINGS[k].durable if k in SETTINGS else ()) for k in variants):
        durable_note.append(
            "- A durable Tern's broker CPU per delivery includes its store: the SQLite writer "
            "thread runs in the broker's process (pinned to the same core) and is counted with "
            "it. The fsync wait itself costs no CPU; it shows in deliveries/s (publishers wait "
            "for PUBACKs, which wait for the commit), not in latency: the latency is "
            "publish-to-delivery, and Tern delivers to a connected subscriber without waiting "
            "for the commit (`tern bench` does not measure PUBACK latency)."
        )

    md = [f"# Broker comparison, {started:%Y-%m-%d %H:%M} UTC" + (" (quick smoke run)" if quick else ""),
          "",
          f"Command: `{meta['command']}`",
          "",
          f"{meta['rounds']} round(s), {elapsed // 60} min {elapsed % 60} s in all; MQTT "
          f"{meta['protocol']} clients; broker pinned to core {meta['broker_core']}, load "
          f"generator to core {meta['loadgen_core']} (`taskset`); a fresh broker per run; the "
          f"brokers' order rotates each round, rumqttd last; medians over the rounds (min–max "
          f"in the detailed tables). bench/README.md explains every column.",
          "",
          "## Machine",
          "",
          f"- CPU: {host['cpu']}, {host['cores']} cores"
          + (f" ({host['virtualisation']})" if host.get("virtualisation") else "")
          + f"; memory {host['memory']}",
          f"- Kernel: Linux {host['kernel']} ({host['os']}); file-descriptor limit {host['fd_limit']}",
          f"- Load average at start {' '.join(host['loadavg_start'])}, at end "
          f"{' '.join(host['loadavg_end'])} (1, 5, 15 min). The machine is shared: other work "
          f"(compilers) may run on the same cores; the \"other load\" column gives, per run, the "
          f"busiest core's CPU use by anything but the broker and the load generator.",
          ]
    if disk_variants and host.get("tmp_fs"):
        md.append(f"- Data directories of the durable runs (inside the run's temporary "
                  f"directory): {host['tmp_fs']}")
    for label, v in vers.items():
        md.append(f"- {label}: {v}")
    md += ["", "## Summary", "",
           "Medians; ratios are one broker's median over another's (for \"lower is better\" "
           "figures, below 1× is better). Broker CPU per delivery is the broker's user + system "
           "time over the measured phase divided by the messages delivered. Latency is from "
           "the publisher's send to the subscriber's read in the load generator; arrival is to "
           "the kernel's receive time of the message at the subscriber (`SO_TIMESTAMPNS`), "
           "without the load generator's own wake-up and backlog."
           + (f" `{meta['aa']}-b` is a second instance of `{meta['aa']}` (same binary, same "
              f"settings): `{meta['aa']}-b ÷ {meta['aa']}` shows the noise." if meta["aa"] else ""),
           ""]
    md += headline
    if durable_note:
        md += ["", "Scenarios with other settings than the rest (see Settings below):", ""]
        md += durable_note
    if costs:
        md += ["", "## What the feature costs", "",
               "Each scenario over the same scenario without the feature (`plain`), from this "
               "run, per broker: the ratio of the medians (for CPU and latency, above 1× is the "
               "cost; for rates, below 1×).", ""]
        md += costs
    security = meta.get("security")
    if security:
        md += ["", "## Security scenarios", ""]
        md += [f"- {line}" for line in
               security_notes(security, [s.key for s in scenarios], labels)]
    md += ["", "## Details", ""]
    md += details
    w = meta["inflight_window"]
    md += ["## Settings", "",
           f"- Tern: `bench/tern.toml` (in memory only: `[persistence] enabled = false` where "
           f"the build has persistence"
           + (", except in the scenarios named below" if disk_variants else "")
           + f"; max_inflight_messages {w}; max_queued_messages, "
           f"max_queued_bytes and max_total_queued_bytes 0 = unlimited; warn-level logging).",
           f"- Mosquitto: `bench/mosquitto.conf` (persistence false, max_inflight_messages {w}, "
           f"max_queued_messages 0 and max_queued_bytes 0 = unlimited, set_tcp_nodelay true as "
           f"Tern does).",
           "- rumqttd: `bench/rumqttd.toml` (max_connections 20010, next_connection_delay_ms 0, "
           "dynamic_filters true; its outgoing QoS 1/2 window is fixed at 100 and it does not set "
           "TCP_NODELAY).",
           "- Scenario flags (`tern bench ...`, plus `-p PORT -V VERSION --quiet --json "
           "--broker-pid PID --threads 1`):", ""]
    ran = meta.get("scenario_args", {})
    for s in scenarios:
        md.append(f"  - `{s.key}`: `{shlex.join(ran.get(s.key) or (s.quick if quick else s.args))}`")
    if meta.get("security"):
        md += ["", "  `@CAFILE@` is the CA certificate of the run's security files and "
                   "`@PASSWORD@` the users' password (see Security scenarios above)."]
    for key, keys in variants.items():
        v = SETTINGS.get(key)
        if v is None:
            continue
        md += ["", f"- Settings `{key}` ({', '.join(f'`{k}`' for k in keys)}): {v.summary}. "
                   f"Set over the templates by compare.py:"]
        for kind, overrides in v.overrides.items():
            for (table, k), value in overrides.items():
                shown = value.replace("@DATA_DIR@", '"<run dir>/<run>.data"')
                for placeholder, name in SECURITY_FILES.items():
                    shown = shown.replace(placeholder, f"<security dir>/{name}")
                if table is not None:
                    md.append(f"  - {kind}: `[{table}] {k} = {shown}`")
                elif kind == "mosquitto":
                    md.append(f"  - {kind}: `{k} {shown}`")
                else:
                    md.append(f"  - {kind}: `{k} = {shown}`")
    if disk_variants:
        problem = meta.get("fsync_counter_problem")
        md += ["", "- Disk writes per delivery: `write_bytes` of `/proc/PID/io` over the bench "
                   "run (connections included) ÷ deliveries. "
               + ("fsyncs: `fsync` and `fdatasync` calls of the broker's threads, counted by "
                  "`perf stat -e " + ",".join(FSYNC_EVENTS) + " -p PID` (kernel tracepoints, "
                  "no ptrace) over the bench run; fsyncs/s divides them by the bench's measured "
                  "duration."
                  if not problem else f"fsyncs were not counted: {problem}.")]
    if meta["notes"]:
        md += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"]]
    md.append("")

    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(md)
    # A full run (every scenario) replaces latest.* and keeps a dated copy; a subset run writes
    # its own files, so that it never replaces the latest full tables.
    suffix = "-quick" if quick else ""
    if is_full(meta):
        stem = "latest"
        (out / f"compare-{started:%Y-%m-%d}{suffix}.md").write_text(text)
    else:
        stem = f"{meta.get('name') or 'subset'}-{started:%Y%m%d-%H%M}{suffix}"
    raw = Path(meta["raw"])
    md_path, json_path, png_path = (out / f"{stem}.{ext}" for ext in ("md", "json", "png"))
    md_path.write_text(text)
    json_path.write_text(json.dumps(
        {**{k: v for k, v in meta.items() if k != "raw"},
         "raw": str(raw.relative_to(out.resolve())) if raw.is_relative_to(out.resolve()) else str(raw),
         "summary": summary}, indent=1, ensure_ascii=False))
    problem = chart(summary, labels, png_path,
                    f"Broker CPU per delivery — {host['cpu']}, {host['cores']} cores, "
                    f"{started:%Y-%m-%d}, {meta['rounds']} round(s)"
                    + (" (quick smoke run)" if quick else ""))

    print()
    print("\n".join(headline))
    print()
    print(f"written: {md_path}, {json_path}"
          + ("" if problem else f", {png_path}") + f", raw runs in {raw}")
    if problem:
        print(f"compare: {problem}", file=sys.stderr)
    failed = [r for r in records if not r["ok"]]
    if failed:
        print(f"compare: {len(failed)} of {len(records)} runs failed (see the Markdown)",
              file=sys.stderr)
    return 1 if failed and len(failed) == len(records) else 0


def is_full(meta: dict) -> bool:
    """Whether a run covered every scenario (then it is "the latest" results). Runs made
    before the settings variants existed count as full when they had every default-settings
    scenario."""
    if "full" in meta:
        return meta["full"]
    return all(s.key in meta["scenarios"] for s in SCENARIOS
               if s.settings == "default" and s.in_default_run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
