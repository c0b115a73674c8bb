"""CPU per long-poll delivery cycle on the owned HTTP protocol, in-process (no sockets).

One cycle is what the server does per waiter and message: the publish wakes the held
long-poll and its response is written, then the client's next request (with the cursor of
that response) is parsed, authenticated, checked and held again. N connections of the real
`HttpProtocol` (http/connection.py, with the real routes of http/streams.py) on fake
transports that only keep what is written; the publish goes through the hub, as an HTTP
publish would (its own cost is once per wave, not per waiter).

    .venv/bin/python bench/micro_longpoll.py [N] [--profile]

Prints the CPU time (`time.process_time`) per waiter of the wake (publish + every
response written) and of the re-ask (every next request parsed and held), medians over
several waves. The wake is split in its walk (the publish up to the last response written:
what the last client waits for) and its settling (the answered waiters' bookkeeping after
the writes, `MessageLog._settle`). `--profile`: cProfile over the waves, the top functions
by own time.
What it leaves out: the kernel's socket reads and writes (~10 us per delivery on loopback).
"""

from __future__ import annotations

import asyncio
import cProfile
import dataclasses
import gc
import pstats
import statistics
import sys
import time
from typing import Any

from pushwire.config import Settings
from pushwire.core.hub import Hub
from pushwire.core.log import MessageLog
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine
from pushwire.http.connection import HttpProtocol
from pushwire.http.endpoints import hot_routes
from pushwire.http.server import HttpServer
from pushwire.http.state import HttpState

WAVES = 12
TOPIC = "bench/lat"
FIRST = b"GET /v1/longpoll/bench/lat?timeout=300 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
NEXT = b"GET /v1/longpoll/bench/lat?timeout=300&since=%b HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


class FakeTransport:
    """Enough of an asyncio transport for HttpProtocol: keeps what is written."""

    __slots__ = ("closing", "out", "port", "protocol")

    def __init__(self, port: int) -> None:
        self.port = port
        self.out: list[bytes] = []
        self.closing = False
        self.protocol: Any = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("127.0.0.1", self.port)
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default

    def write(self, data: bytes) -> None:
        self.out.append(data)

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

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def get_protocol(self) -> Any:
        return self.protocol

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


async def _noapp(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request of this bench goes to the ASGI app")


@dataclasses.dataclass
class HotStack:
    """The owned HTTP protocol's hot paths over an in-memory hub and log, wired as
    `pushwire serve --memory` wires them (no per-address admission): what every HTTP micro
    bench drives."""

    hub: Hub
    log: MessageLog
    state: HttpState
    server: HttpServer


def hot_stack(settings: dict[str, Any]) -> HotStack:
    hub = Hub(MemoryEngine())
    log = MessageLog(hub.engine)
    hub.add_observer(log.observer)
    state = HttpState(hub, log, Settings.model_validate(settings))
    server = HttpServer(
        _noapp,
        hot_routes(state),
        admission=None,
        head_timeout=10,
        max_request_line=8192,
        max_head=65536,
    )
    return HotStack(hub, log, state, server)


def _cursor(response: bytes) -> bytes:
    start = response.lower().index(b"pushwire-cursor: ") + len(b"pushwire-cursor: ")
    return response[start : response.index(b"\r\n", start)]


class SettleTime:
    """CPU time in the log's settling of a wake (`MessageLog._settle`, after the walk)."""

    def __init__(self, log: MessageLog) -> None:
        self.settle = log._settle
        self.total = 0.0

    def __call__(self) -> None:
        t = time.process_time()
        self.settle()
        self.total += time.process_time() - t


async def run(
    n: int, profile: bool
) -> tuple[list[float], list[float], list[float], cProfile.Profile | None]:
    stack = hot_stack({"longpoll_max_timeout": 3600, "http_max_listeners": 10**6})
    hub, log, server = stack.hub, stack.log, stack.server
    conns: list[tuple[HttpProtocol, FakeTransport]] = []
    for i in range(n):
        proto = server.protocol()
        tr = FakeTransport(10000 + i % 50000)
        tr.protocol = proto
        proto.connection_made(tr)  # type: ignore[arg-type]
        proto.data_received(FIRST)
        conns.append((proto, tr))
    assert log.listener_count == n, log.listener_count
    settling = SettleTime(log)
    log._settle = settling  # type: ignore[method-assign]
    wake: list[float] = []
    settle: list[float] = []
    reask: list[float] = []
    prof = cProfile.Profile() if profile else None
    for wave in range(WAVES):
        if prof is not None:
            prof.enable()
        settling.total = 0.0
        t0 = time.process_time()
        hub.publish(Message(TOPIC, b"PWTS payload %d" % wave))
        t1 = time.process_time()
        for proto, tr in conns:
            response = tr.out[-1]
            tr.out.clear()
            proto.data_received(NEXT % _cursor(response))
        t2 = time.process_time()
        if prof is not None:
            prof.disable()
        await asyncio.sleep(0)  # what was deferred to the next loop turn, if anything
        assert log.listener_count == n, (wave, log.listener_count)
        wake.append((t1 - t0) / n)
        settle.append(settling.total / n)
        reask.append((t2 - t1) / n)
    for proto, tr in conns:
        tr.closing = True
        proto.connection_lost(None)
    return wake, settle, reask, prof


class GcTime:
    """CPU spent in the cyclic garbage collector (gc.callbacks), per generation."""

    def __init__(self) -> None:
        self.total = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.process_time()
        else:
            self.total[info["generation"]] += time.process_time() - self._t
            self.count[info["generation"]] += 1


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 10_000
    profile = "--profile" in sys.argv
    gct = GcTime()
    gc.callbacks.append(gct)
    wake, settle, reask, prof = asyncio.run(run(n, profile))
    gc.callbacks.remove(gct)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    w = statistics.median(wake[2:]) * 1e6
    r = statistics.median(reask[2:]) * 1e6
    walked = statistics.median([w - s for w, s in zip(wake[2:], settle[2:], strict=True)]) * 1e6
    print(f"N={n}, {WAVES} waves (median of the last {WAVES - 2}), load average {load}")
    print(f"wake (publish + response written), us per waiter: {w:.2f}")
    print(f"  of which the walk (up to the last write): {walked:.2f}, settling: {w - walked:.2f}")
    print(f"re-ask (next request parsed, checked, held), us per waiter: {r:.2f}")
    print(f"cycle, us per delivery: {w + r:.2f}")
    print(
        "cyclic GC over the whole run (set-up included): "
        + ", ".join(
            f"gen{g} {c} runs {t:.3f} s"
            for g, (c, t) in enumerate(zip(gct.count, gct.total, strict=True))
        )
    )
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
