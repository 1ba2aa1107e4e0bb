#!/usr/bin/env bash
# Tern, Mosquitto and rumqttd side by side. Installs what it needs, then runs bench/compare.py.
#
#   bench/compare.sh                 # full comparison: 3 rounds, medians (about 13 minutes)
#   bench/compare.sh --scenarios p2p-q1,p2p-q1-durable --name durable
#                                    # some scenarios: writes bench/results/durable-<date>-<time>.md
#   bench/compare.sh --quick         # smoke run: 1 round, tiny counts (under a minute)
#   bench/compare.sh --aa tern       # adds a second Tern ("tern-b") to show the noise
#   bench/compare.sh --scenarios security --name security
#                                    # TLS, passwords and ACLs (not in the default run)
#   bench/compare.sh --help          # every option of compare.py
#
# Installs, each only when missing: Debian's `mosquitto` (apt-get, with sudo when not root;
# it brings mosquitto_passwd) and `openssl`,
# rumqttd into bench/.tools/rumqttd (cargo install), matplotlib into bench/.tools/venv (pip),
# and target/release/tern (cargo build --release -p tern; `--build` forces a rebuild).
# bench/README.md explains the scenarios, the columns and the caveats.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
tools="$here/.tools"
RUMQTTD_VERSION="${RUMQTTD_VERSION:-0.20.0}"

build=0
args=()
for a in "$@"; do
    case "$a" in
        --build) build=1 ;;
        *) args+=("$a") ;;
    esac
done

if [[ " $* " == *" --help "* || " $* " == *" -h "* ]]; then
    exec python3 "$here/compare.py" --help
fi

say() { printf 'compare.sh: %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Mosquitto (Debian package; its service is not needed: compare.py starts its own brokers).
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    say "installing mosquitto (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
fi
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

# openssl makes the certificates of the TLS scenarios (mosquitto_passwd, which makes their
# password file, comes with the mosquitto package).
if ! command -v openssl >/dev/null 2>&1; then
    say "installing openssl (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# taskset (util-linux) pins the broker and the load generator.
if ! command -v taskset >/dev/null 2>&1; then
    say "installing util-linux (taskset)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null
fi

# rumqttd from crates.io. `--locked` is tried first (the versions rumqttd was released with);
# with rustc 1.89 and later its locked `metrics 0.22.1` no longer compiles (E0521), so the
# fallback lets cargo take the newest semver-compatible dependencies (metrics 0.22.4).
rumqttd_bin="$tools/rumqttd/bin/rumqttd"
if [ ! -x "$rumqttd_bin" ] || ! "$rumqttd_bin" --version 2>/dev/null | grep -q "$RUMQTTD_VERSION"; then
    say "installing rumqttd $RUMQTTD_VERSION into $tools/rumqttd (cargo install; a few minutes)"
    mkdir -p "$tools"
    if ! cargo install rumqttd --version "$RUMQTTD_VERSION" --locked --root "$tools/rumqttd" \
            >"$tools/rumqttd-install.log" 2>&1; then
        say "the locked build failed (see $tools/rumqttd-install.log); retrying without --locked"
        cargo install rumqttd --version "$RUMQTTD_VERSION" --root "$tools/rumqttd" \
            >>"$tools/rumqttd-install.log" 2>&1 \
            || { say "cargo install rumqttd failed; see $tools/rumqttd-install.log"; exit 1; }
    fi
fi

# Python with matplotlib for the chart (a venv, so that the system's Python stays as it is).
python="$tools/venv/bin/python"
if [ ! -x "$python" ] || ! "$python" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib into $tools/venv (pip)"
    mkdir -p "$tools"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install -q --disable-pip-version-check matplotlib \
        || say "matplotlib could not be installed: the comparison runs without the chart"
fi

# Tern (the broker and the load generator).
tern_bin="$root/target/release/tern"
if [ "$build" -eq 1 ] || [ ! -x "$tern_bin" ]; then
    say "building target/release/tern (cargo build --release -p tern)"
    (cd "$root" && cargo build --release -p tern)
fi

# The command line as typed, quoted where needed, for the results' Markdown.
quote() {
    local a
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=,@+-]+$ ]]; then printf ' %s' "$a"
        else printf " '%s'" "${a//\'/\'\\\'\'}"; fi
    done
}

cd "$root"
exec "$python" "$here/compare.py" \
    --tern "$tern_bin" --mosquitto "$mosquitto_bin" --rumqttd "$rumqttd_bin" \
    --command-line "bench/compare.sh$(quote "$@")" \
    "${args[@]+"${args[@]}"}"
