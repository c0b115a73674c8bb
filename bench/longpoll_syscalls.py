"""Syscalls and user/system CPU per long-poll delivery, pushwire or nginx+nchan, measured the
same way (bench/README.md "Long-poll syscalls per delivery").

    .venv/bin/python bench/longpoll_syscalls.py pushwire|nchan [N] [M]

The server is started as `pushwire bench http` starts it (`pushwire_http_server`,
`nchan_server`). N long-poll clients (default 1,000) in this process, kept-alive, each
re-asking after every reply (pushwire: since=, nchan: If-Modified-Since/If-None-Match);
one message to warm up, then:
1. `perf trace -s` on the server's process (nginx: its worker) over an idle window, then
   over a window in which M messages (default 10) are published 0.3 s apart: the
   syscalls per delivery are (busy - idle) / (N x M), per syscall;
2. without perf, 6 x M messages 0.15 s apart: the process's user and system CPU from
   `/proc/PID/stat` (clock ticks) per delivery.
Needs `perf` (Debian: linux-perf) and the right to trace the server (root, or
perf_event_paranoid <= 1). Short and bounded: a few seconds per window, 30 s at most for
any wait. Other processes on the machine change the CPU figures, not the syscall counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from tempfile import TemporaryDirectory

from pushwire.bench.http import (
    Dialect,
    longpoll_first_request,
    longpoll_next_request,
    parse_response_head,
    publish_head,
    pushwire_http_server,
    server_listeners,
)
from pushwire.bench.nchan import HttpServer, nchan_server
from pushwire.bench.peers import raise_nofile_limit

CHANNEL = "syscalls"
WAIT_S = 30.0


class Subscriber(asyncio.Protocol):
    """One kept-alive long-poll client: re-asks after every complete response."""

    def __init__(self, dialect: Dialect, delivered: list[int]) -> None:
        self.dialect: Dialect = dialect
        self.buf = b""
        self.delivered = delivered
        self.request = longpoll_first_request(dialect, CHANNEL)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head = parse_response_head(self.buf)
            if head is None:
                return
            total = head.length + head.body_length()
            if len(self.buf) < total:
                return
            body, self.buf = self.buf[head.length : total], self.buf[total:]
            if head.status == 200 and b"MSG" in body:
                self.delivered[0] += 1
            self.request = longpoll_next_request(self.dialect, CHANNEL, head, self.request)
            assert self.transport is not None
            self.transport.write(self.request)


class Publisher(asyncio.Protocol):
    """A kept-alive publisher (its answers are not read: the subscribers count)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, dialect: Dialect, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(publish_head(dialect, CHANNEL, len(body)) + body)


@contextlib.contextmanager
def perf_trace(pids: tuple[int, ...], out: Path) -> Iterator[None]:
    """`perf trace -s` on `pids` while the block runs (the summary goes to `out`)."""
    process = subprocess.Popen(
        ["perf", "trace", "-s", "-o", str(out), "-p", ",".join(map(str, pids))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)  # attached
        yield
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def syscall_counts(summary: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in summary.read_text().splitlines():
        found = re.match(r"\s+(\w+)\s+(\d+)\s+\d+\s+[\d.]+", line)
        if found:
            counts[found.group(1)] = counts.get(found.group(1), 0) + int(found.group(2))
    return counts


def cpu_ticks(pids: tuple[int, ...]) -> tuple[int, int]:
    """User and system clock ticks of `pids` (/proc/PID/stat fields 14 and 15)."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user, system


async def _until(check: Callable[[], bool]) -> None:
    """Until `check()` holds, for `WAIT_S` seconds at most."""
    deadline = time.monotonic() + WAIT_S
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def measure(
    dialect: Dialect, server: HttpServer, pids: tuple[int, ...], n: int, m: int
) -> None:
    loop = asyncio.get_running_loop()
    delivered = [0]
    for start in range(0, n, 100):
        await asyncio.gather(
            *(
                loop.create_connection(
                    lambda: Subscriber(dialect, delivered), "127.0.0.1", server.port
                )
                for _ in range(min(100, n - start))
            )
        )
    deadline = time.monotonic() + WAIT_S
    while await loop.run_in_executor(None, server_listeners, server, dialect) < n:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"only {await loop.run_in_executor(None, server_listeners, server, dialect)} held"
            )
        await asyncio.sleep(0.2)

    async def publisher() -> Publisher:
        # a new connection per window: an idle one is closed by the keep-alive timeout
        _, pub = await loop.create_connection(Publisher, "127.0.0.1", server.port)
        return pub

    pub = await publisher()
    pub.send(dialect, b"MSG warm-up")
    await _until(lambda: delivered[0] >= n)
    await asyncio.sleep(0.5)
    window = 0.3 * m + 0.7
    with TemporaryDirectory() as tmp:
        idle_out, busy_out = Path(tmp) / "idle.txt", Path(tmp) / "busy.txt"
        with perf_trace(pids, idle_out):
            await asyncio.sleep(window)
        pub = await publisher()
        first = delivered[0]
        with perf_trace(pids, busy_out):
            began = time.monotonic()
            for k in range(m):
                pub.send(dialect, b"MSG %03d 0123456789012345678901234567890123456789" % k)
                await asyncio.sleep(0.3)
            await _until(lambda: delivered[0] - first >= n * m)
            await asyncio.sleep(max(0.0, window - (time.monotonic() - began)))
        got = delivered[0] - first
        idle, busy = syscall_counts(idle_out), syscall_counts(busy_out)
    deliveries = n * m
    print(
        f"{dialect}: N={n}, {m} messages: {got} of {deliveries} delivered; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("syscalls per delivery (busy - idle window):")
    total = 0.0
    for name in sorted(busy, key=lambda k: -busy[k]):
        per = (busy[name] - idle.get(name, 0)) / deliveries
        total += per
        if abs(per) >= 0.0005:
            print(f"  {name:20s} {per:7.3f}  (busy {busy[name]}, idle {idle.get(name, 0)})")
    print(f"  {'total':20s} {total:7.3f}")
    # CPU, without perf attached
    await asyncio.sleep(0.5)
    pub = await publisher()
    m2 = 6 * m
    first = delivered[0]
    user0, system0 = cpu_ticks(pids)
    for k in range(m2):
        pub.send(dialect, b"MSG %03d 0123456789012345678901234567890123456789" % k)
        await asyncio.sleep(0.15)
    await _until(lambda: delivered[0] - first >= n * m2)
    await asyncio.sleep(0.1)
    user1, system1 = cpu_ticks(pids)
    got = delivered[0] - first
    hz = os.sysconf("SC_CLK_TCK")
    print(
        f"CPU per delivery over {got} deliveries: user {(user1 - user0) / hz / got * 1e6:.2f} us, "
        f"system {(system1 - system0) / hz / got * 1e6:.2f} us "
        f"({user1 - user0} + {system1 - system0} ticks of {1e6 / hz:.0f} us)"
    )


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("pushwire", "nchan"):
        raise SystemExit(__doc__)
    if shutil.which("perf") is None:
        raise SystemExit("needs perf (Debian: apt-get install linux-perf)")
    dialect: Dialect = "pushwire" if sys.argv[1] == "pushwire" else "nchan"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    m = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    raise_nofile_limit()
    with TemporaryDirectory() as work:
        servers = pushwire_http_server if dialect == "pushwire" else nchan_server
        with servers(Path(work)) as server:
            # nginx: the worker does the work (the master only supervises)
            pids = server.extra_pids if dialect == "nchan" else server.pids
            asyncio.run(measure(dialect, server, pids, n, m))


if __name__ == "__main__":
    main()
