"""Memory byte bounds, as resident memory (RSS) of one pushwire process (issue 9, item 10).

    .venv/bin/python bench/memory_bounds.py              # SQLite store, default bounds
    .venv/bin/python bench/memory_bounds.py --memory     # --memory: evicts (gap) instead
    .venv/bin/python bench/memory_bounds.py --topics 3000 --big 300 --json

Scenarios, on one server started here on free ports:
  1. `--topics` QoS 0 publishes of 60 KB, each to its own topic, nobody subscribed: the
     message log keeps them, but at most log_memory_bytes in memory (SQLite: the rest is
     on disk only; --memory: evicted).
  2. `--big` messages of 1 MB (QoS 1) to a persistent QoS 1 subscriber that never reads:
     its session holds at most max_queued_bytes, the rest is refused and counted. The
     subscriber then goes away and its session is discarded (clean reconnect).
  3. scenario 2 again: the memory freed after 2 is reused, so RSS grows little if at all.

Prints RSS (VmRSS of the server process) after each step and the server's own figures
from /metrics. Figures only: nothing here is a pass/fail check (tests/ has those).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

MB = 1024 * 1024


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(out) + body


def connect(port: int, client_id: str, clean: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    flags = 0x02 if clean else 0
    sock.sendall(
        _packet(0x10, _str("MQTT") + bytes([4, flags]) + struct.pack("!H", 600) + _str(client_id))
    )
    _read_packet(sock)  # CONNACK
    return sock


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    first = _read_exact(sock, 1)[0]
    mult, length = 1, 0
    while True:
        b = _read_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, _read_exact(sock, length)


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 0) -> bytes:
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet(0x30 | (qos << 1), body)


def metrics(http_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def wait_for(http_port: int, name: str, value: float, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while metrics(http_port).get(name, -1) < value:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never reached {value}")
        time.sleep(0.1)


def start_server(data_dir: Path, memory: bool, extra: list[str]) -> tuple[Any, int, int]:
    cmd = [
        sys.executable,
        "-m",
        "pushwire",
        "serve",
        "--bind",
        "127.0.0.1",
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
        "--data-dir",
        str(data_dir),
        "--no-durability",
        "--sys-interval",
        "0",
        "--connection-rate-per-ip",
        "0",
        *extra,
    ]
    if memory:
        cmd.append("--memory")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    mqtt = http = 0
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while not (mqtt and http):
        line = proc.stdout.readline()
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start")
        if m := re.search(r"mqtt listening on [0-9.]+:(\d+)", line):
            mqtt = int(m.group(1))
        if m := re.search(r"http listening on [0-9.]+:(\d+)", line):
            http = int(m.group(1))
    return proc, mqtt, http


def slow_subscriber_round(mqtt: int, http: int, big: int, round_: int) -> dict[str, float]:
    sub = connect(mqtt, "never-reads", clean=False)
    sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sub.sendall(_packet(0x82, struct.pack("!H", 1) + _str("slow/t") + bytes([1])))
    _read_packet(sub)  # SUBACK, then never read again
    pub = connect(mqtt, "big-pub", clean=True)
    payload = b"y" * 1_000_000  # 1 MB: a whole MiB would not fit max_packet_size
    for i in range(big):
        pub.sendall(publish("slow/t", payload, qos=1, packet_id=i % 65000 + 1))
        _read_packet(pub)  # PUBACK
    m = metrics(http)
    sub.close()
    pub.close()
    # the same id back with a clean session: the old session and its queue are discarded
    connect(mqtt, "never-reads", clean=True).close()
    return {
        f"round{round_}_queued_mb_while_connected": m["pushwire_mqtt_queued_bytes"] / MB,
        f"round{round_}_refused_for_bytes": m['pushwire_mqtt_queue_overflow_total{bound="bytes"}'],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", action="store_true", help="run the server with --memory")
    ap.add_argument("--topics", type=int, default=3000, help="scenario 1: 60 KB publishes")
    ap.add_argument("--big", type=int, default=300, help="scenarios 2-3: 1 MB publishes")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("server_flags", nargs="*", help="more `pushwire serve` flags (after --)")
    args = ap.parse_args()
    report: dict[str, Any] = {"engine": "memory" if args.memory else "sqlite"}
    with tempfile.TemporaryDirectory(prefix="pushwire-membench-") as tmp:
        proc, mqtt, http = start_server(Path(tmp), args.memory, args.server_flags)
        try:
            report["rss_mb_start"] = rss_mb(proc.pid)
            pub = connect(mqtt, "wide-pub", clean=True)
            payload = b"x" * (60 * 1024)
            for i in range(args.topics):
                pub.sendall(publish(f"wide/{i}", payload))
            wait_for(http, "pushwire_log_appended_total", args.topics)
            pub.close()
            m = metrics(http)
            report["rss_mb_after_wide"] = rss_mb(proc.pid)
            report["log_memory_mb"] = m["pushwire_log_memory_bytes"] / MB
            report["log_disk_only"] = m["pushwire_log_disk_only_messages"]
            report["log_memory_evicted"] = m["pushwire_log_memory_evicted_total"]
            for round_ in (1, 2):
                report.update(slow_subscriber_round(mqtt, http, args.big, round_))
                deadline = time.monotonic() + 60
                while metrics(http)["pushwire_mqtt_queued_bytes"] and time.monotonic() < deadline:
                    time.sleep(0.1)  # the discarded session's bytes are given back
                report[f"rss_mb_after_slow_round{round_}"] = rss_mb(proc.pid)
            m = metrics(http)
            report["queued_mb_at_end"] = m["pushwire_mqtt_queued_bytes"] / MB
            report["store_backlogged_episodes"] = m["pushwire_store_backlogged_total"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:40} {value:.1f}" if isinstance(value, float) else f"{key:40} {value}")


if __name__ == "__main__":
    main()
