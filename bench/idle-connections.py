#!/usr/bin/env python3
"""Memory per idle MQTT connection of a running broker.

Usage: bench/idle-connections.py PORT COUNT PID

Opens COUNT MQTT 3.1.1 connections to 127.0.0.1:PORT (CONNECT, CONNACK, then idle) and prints
the broker's resident memory (from /proc/PID/status) before and after, per connection. Run it
against each broker in turn on the same machine and compare the ratios.
"""
import socket
import sys
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def connect_packet(client_id: bytes) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x00" + len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body


def main() -> None:
    port, count, pid = (int(a) for a in sys.argv[1:4])
    before = rss_kib(pid)
    sockets = []
    for i in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(connect_packet(f"idle{i}".encode()))
        sockets.append(s)
    for s in sockets:
        if s.recv(4)[:1] != b"\x20":
            raise SystemExit("no CONNACK")
    time.sleep(1)  # let the broker settle; RSS is read once, not raced against
    after = rss_kib(pid)
    per = (after - before) * 1024 / count
    print(f"{count} idle connections: RSS {before} KiB -> {after} KiB, {per:.0f} bytes each")


if __name__ == "__main__":
    main()
