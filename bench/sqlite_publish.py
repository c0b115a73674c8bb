"""Raw HTTP publishes per second on the SQLite store (no `--memory`): a `pushwire serve`
with a fresh data dir, C keep-alive connections from this process, each with one 64-byte
`POST /v1/publish/bench/pub` in flight, for D seconds; only 201s count (a 201 on SQLite
means the message is on disk: the reply waits for the commit).

    .venv/bin/python bench/sqlite_publish.py [C] [D]        (default 16 connections, 3 s)

`pushwire bench http` runs pushwire with `--memory` only (nchan keeps its messages in
memory too); this is the figure issue 10 asks for beside it. The server's CPU (utime +
stime from /proc, its SQLite writer thread included) is printed per publish. To compare
two versions, run it with PYTHONPATH pointing at the other tree's src/, interleaved.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

BODY = b"PWTS0" + b"x" * 59
REQUEST = (
    b"POST /v1/publish/bench/pub HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
)
ENV = {
    "PUSHWIRE_CONNECTION_RATE_PER_IP": "0",
    "PUSHWIRE_MAX_CONNECTIONS_PER_IP": "0",
    "PUSHWIRE_PUBLISH_RATE_PER_CLIENT": "0",
}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Publisher(asyncio.Protocol):
    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(REQUEST)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        # one reply per read here (one request in flight); count the 201s
        self.counts[0] += data.count(b"HTTP/1.1 201 ")
        self.counts[1] += data.count(b"HTTP/1.1 ")
        assert self.transport is not None
        self.transport.write(REQUEST)


async def load(port: int, connections: int, seconds: float, pid: int) -> None:
    loop = asyncio.get_running_loop()
    counts = [0, 0]
    transports = []
    for _ in range(connections):
        transport, _ = await loop.create_connection(lambda: Publisher(counts), "127.0.0.1", port)
        transports.append(transport)
    await asyncio.sleep(1.0)  # warm-up
    created, replies, cpu, start = counts[0], counts[1], cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    created, replies = counts[0] - created, counts[1] - replies
    cpu = cpu_seconds(pid) - cpu
    for transport in transports:
        transport.close()
    print(
        f"sqlite: {created / elapsed:,.0f} 201s/s ({replies - created} other replies), "
        f"server CPU {cpu / elapsed:.0%} of a core, {cpu / max(created, 1) * 1e6:.0f} us "
        f"per publish; load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    connections = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    with tempfile.TemporaryDirectory() as data_dir:
        argv = [sys.executable, "-m", "pushwire", "serve", "--bind", "127.0.0.1"]
        argv += ["--mqtt-port", "0", "--http-port", "0", "--sys-interval", "0"]
        argv += ["--data-dir", data_dir]
        server = subprocess.Popen(
            argv,
            env=os.environ | ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            port = 0
            deadline = time.monotonic() + 30
            assert server.stdout is not None
            while not port and time.monotonic() < deadline:
                line = server.stdout.readline()
                found = re.search(r"http listening on [\d.]+:(\d+)", line)
                if found:
                    port = int(found.group(1))
                elif not line and server.poll() is not None:
                    break
            if not port:
                raise SystemExit("the server did not start")
            asyncio.run(load(port, connections, seconds, server.pid))
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
