"""Python per SSE delivery on the owned HTTP protocol, in-process (no sockets).

N SSE streams opened through the real `HttpProtocol` and the real routes of
http/streams.py on fake transports whose `write` only counts; then publishes through the
hub, as an HTTP publish would. The CPU time (`time.process_time`) of each publish divided
by N is what the 10,000-write walk costs in Python per stream, besides the kernel's write
(~4.5 us on loopback, bench/micro_stream10k.py has both).

    .venv/bin/python bench/micro_sse.py [N] [--profile]

`--src DIR` first: import pushwire from DIR (a before/after, e.g. /tmp/b-stream10k/before/src).
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from typing import Any

WAVES = 20
TOPIC = "bench/lat"
REQUEST = b"GET /v1/sse/bench/lat HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n"


class CountingTransport:
    """Enough of an asyncio transport for HttpProtocol: `write` counts."""

    __slots__ = ("closing", "n", "port", "protocol")

    def __init__(self, port: int) -> None:
        self.port = port
        self.n = 0
        self.closing = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", self.port)
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default

    def write(self, data: bytes) -> None:
        self.n += 1

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def run(n: int, profile: bool) -> tuple[list[float], cProfile.Profile | None]:
    # imported here, after `--src` put its tree first on the path
    from micro_longpoll import hot_stack
    from pushwire.core.message import Message

    stack = hot_stack({"sse_heartbeat": 3600, "http_max_listeners": 10**6})
    hub, log, server = stack.hub, stack.log, stack.server
    conns = []
    for i in range(n):
        proto = server.protocol()
        tr = CountingTransport(10000 + i % 50000)
        tr.protocol = proto
        proto.connection_made(tr)  # type: ignore[arg-type]
        proto.data_received(REQUEST)
        conns.append((proto, tr))
    for _ in range(50):
        if log.listener_count == n:
            break
        await asyncio.sleep(0)
    assert log.listener_count == n, log.listener_count
    per: list[float] = []
    prof = cProfile.Profile() if profile else None
    for wave in range(WAVES):
        before = sum(tr.n for _, tr in conns)
        if prof is not None:
            prof.enable()
        t0 = time.process_time()
        hub.publish(Message(TOPIC, b"PWTS payload %d" % wave))
        t1 = time.process_time()
        if prof is not None:
            prof.disable()
        assert sum(tr.n for _, tr in conns) - before == n
        await asyncio.sleep(0)
        per.append((t1 - t0) / n * 1e6)
    for proto, tr in conns:
        tr.closing = True
        proto.connection_lost(None)
    return per, prof


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--src"]:
        sys.path.insert(0, args[1])
        args = args[2:]
    profile = "--profile" in args
    args = [a for a in args if a != "--profile"]
    n = int(args[0]) if args else 10_000
    import uvloop

    per, prof = uvloop.run(run(n, profile))
    us = statistics.median(per)
    print(f"SSE walk, N={n}: {us:.2f} us of Python per delivery (median of {WAVES})")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
