"""Per-delivery cost of the HTTP reader, in-process (no sockets): the Python a publish
spends per woken reader, before (a task and a queue or future per reader, each re-reading
or draining on its own) and after (http/reader.py: callbacks writing shared bytes).

    .venv/bin/python bench/micro_reader.py [N]        (default N=10000; a few seconds)

Both shapes run interleaved in one process, several rounds; the table shows the median
microseconds of CPU time (`time.process_time`) per delivery of each and their ratio. What
it leaves out is the same for both: the kernel's socket write (~10 us per delivery on
loopback) and HTTP framing. The current shapes publish through the hub, as the server
does (the hub routes, the log appends and wakes the reader groups the topic's route lists:
one routing plane, issue 8); the last row is a whole publish to a topic one reader reads.
To compare two versions, run it with PYTHONPATH at the other src/ (a version whose log
keeps its own listener trie is fed by the hub as its observer, as the server did then).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any

from pushwire.core.hub import Hub
from pushwire.core.log import LATEST, LogEntry, MessageLog, StreamBuffer
from pushwire.core.message import Message
from pushwire.core.session import Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.core.topics import SubscriptionTrie
from pushwire.engines.memory import MemoryEngine
from pushwire.http.encode import entry_json, entry_sse
from pushwire.http.reader import LongPollWaiter, StreamReader
from pushwire.http.sse import SseFormat
from pushwire.http.state import HttpStats

ROUNDS = 5
PUBLISHES = 20_000  # per round of the last row


def hub_log() -> tuple[Hub, MessageLog]:
    """A hub and the log it feeds, as the server builds them (http/app.py make_log)."""
    hub = Hub(MemoryEngine())
    try:
        log = MessageLog(hub.engine, plane=hub)
    except TypeError:  # a version whose log matches its readers in a trie of its own
        log = MessageLog(hub.engine)
    hub.add_observer(log.observer, log.observe_run)
    return hub, log


class CountingSink:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0

    def send(self, data: bytes) -> None:
        self.n += 1

    def close(self, reason: str) -> None:
        pass

    def writable(self) -> bool:
        return True

    def reply(self, body: bytes, cursor: str) -> None:
        self.n += 1

    def write_reply(self, body: bytes, cursor: str) -> None:
        self.n += 1

    def replied(self) -> None:
        pass

    def not_modified(self, cursor: str) -> None:
        pass

    def refuse(self, reason: str) -> None:
        pass


async def sse_after(n: int) -> float:
    hub, log = hub_log()
    stats = HttpStats()
    sinks = []
    for _ in range(n):
        sink = CountingSink()
        r = StreamReader(log, "t", sink, SseFormat("latest"), stats)
        r.open(LATEST)
        await r.replay(100)
        sinks.append(sink)
    t0 = time.process_time()
    hub.publish(Message("t", b"hello"))
    dt = time.process_time() - t0
    assert all(s.n == 1 for s in sinks)
    return dt / n


async def sse_before(n: int) -> float:
    """The old SSE shape: a StreamBuffer and a coroutine per stream, woken per message."""
    log = MessageLog(MemoryEngine())
    got = [0]

    class _L:
        __slots__ = ("buffer",)

        def __init__(self, b: StreamBuffer[LogEntry]) -> None:
            self.buffer = b

        def notify(self, entry: LogEntry) -> None:
            self.buffer.push(entry, entry.size)

        def close(self) -> None:
            self.buffer.close()

    async def stream(buf: StreamBuffer[LogEntry]) -> None:
        items = await buf.get(30)
        assert items
        _ = b"".join(entry_sse(e, log.epoch) for e in items if e.id > 0)
        got[0] += 1

    tasks = []
    for _ in range(n):
        b: StreamBuffer[LogEntry] = StreamBuffer(1000)
        log.listen("t", _L(b))
        tasks.append(asyncio.ensure_future(stream(b)))
    await asyncio.sleep(0)
    t0 = time.process_time()
    log.append(Message("t", b"hello"))
    await asyncio.gather(*tasks)
    dt = time.process_time() - t0
    assert got[0] == n
    return dt / n


async def lp_after(n: int) -> float:
    hub, log = hub_log()
    stats = HttpStats()
    sinks = []
    for _ in range(n):
        sink = CountingSink()
        LongPollWaiter(log, "t", sink, stats, caller=None, after=0).start(1e12)
        sinks.append(sink)
    t0 = time.process_time()
    hub.publish(Message("t", b"hello"))
    dt = time.process_time() - t0
    assert all(s.n == 1 for s in sinks)
    return dt / n


async def publish_read() -> float:
    """A whole publish (hub route, log append, the wake of its one reader), per publish:
    what the routing plane adds per message, not per reader."""
    hub, log = hub_log()
    sink = CountingSink()
    r = StreamReader(log, "t/1", sink, SseFormat("latest"), HttpStats())
    r.open(LATEST)
    await r.replay(100)
    messages = [Message("t/1", b"hello") for _ in range(PUBLISHES)]
    publish = hub.publish
    t0 = time.process_time()
    for m in messages:
        publish(m)
    dt = time.process_time() - t0
    assert sink.n == PUBLISHES
    return dt / PUBLISHES


def group_churn(topics: int = 10_000, pairs: int = 20_000) -> tuple[float, float]:
    """A filter's only reader arrives and leaves (its group joins and leaves the tree),
    with `topics` MQTT topics routed (their routes cached), per arrival + departure; then
    the CPU of one publish to each of those topics: what the churn left them to redo."""
    hub, log = hub_log()
    s, _ = hub.connect("mqtt", True, 4, 0, None)  # type: ignore[arg-type]
    hub.subscribe(s, Subscription("m/#", SubscriptionOptions()))
    names = [f"m/{i}" for i in range(topics)]
    for name in names:
        hub.route_of(name)
    reader = CountingSink()
    for i in range(pairs):  # the first group ever (an index from then on) out of the window
        log.listen(f"u/{i % 100}", reader)  # type: ignore[arg-type]
        log.unlisten(f"u/{i % 100}", reader)  # type: ignore[arg-type]
    route_of = hub.route_of
    for name in names:
        route_of(name)
    t0 = time.process_time()
    for i in range(pairs):
        log.listen(f"u/{i % 100}", reader)  # type: ignore[arg-type]
        log.unlisten(f"u/{i % 100}", reader)  # type: ignore[arg-type]
    churn = (time.process_time() - t0) / pairs
    t0 = time.process_time()
    for name in names:
        route_of(name)
    lookups = (time.process_time() - t0) / topics
    return churn, lookups


async def lp_before(n: int) -> float:
    """The old long-poll shape: a future per waiter, then each woken coroutine re-reads
    the log from its cursor and encodes its own reply body."""
    log = MessageLog(MemoryEngine())
    loop = asyncio.get_running_loop()

    class _W:
        __slots__ = ("future",)

        def __init__(self, f: asyncio.Future[None]) -> None:
            self.future = f

        def notify(self, entry: LogEntry) -> None:
            if not self.future.done():
                self.future.set_result(None)

        def close(self) -> None:
            pass

    async def wait() -> bytes:
        f: asyncio.Future[None] = loop.create_future()
        w = _W(f)
        log.listen("t", w)
        timer = loop.call_later(60, lambda: None)
        try:
            await f
        finally:
            timer.cancel()
            log.unlisten("t", w)
        result = await log.fetch("t", 0, 100)
        return (
            '{"messages":[' + ",".join(entry_json(e, log.epoch) for e in result.entries) + "]}"
        ).encode()

    tasks = [asyncio.ensure_future(wait()) for _ in range(n)]
    await asyncio.sleep(0)
    t0 = time.process_time()
    log.append(Message("t", b"hello"))
    bodies = await asyncio.gather(*tasks)
    dt = time.process_time() - t0
    assert len(bodies) == n
    return dt / n


def match_plane(n: int) -> tuple[float, float]:
    """Matching a topic against n readers of one filter: one trie key per reader (before)
    against one group per filter (after), with the trie's cache cleared each time as
    long-poll churn clears it."""
    per_reader: SubscriptionTrie[Any, None] = SubscriptionTrie()
    objs = [object() for _ in range(n)]
    for o in objs:
        per_reader.add("t", o, None)
    grouped: SubscriptionTrie[Any, None] = SubscriptionTrie()
    grouped.add("t", "the filter's group", None)
    reps = 200
    t0 = time.process_time()
    for _ in range(reps):
        per_reader._cache.clear()
        per_reader.match("t")
    before = (time.process_time() - t0) / reps
    t0 = time.process_time()
    for _ in range(reps):
        grouped._cache.clear()
        grouped.match("t")
    after = (time.process_time() - t0) / reps
    return before, after


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rows: dict[str, list[float]] = {k: [] for k in ("sse_b", "sse_a", "lp_b", "lp_a", "pub")}
    for _ in range(ROUNDS):  # interleaved: the machine's load hits both alike
        rows["sse_b"].append(await sse_before(n))
        rows["sse_a"].append(await sse_after(n))
        rows["lp_b"].append(await lp_before(n))
        rows["lp_a"].append(await lp_after(n))
        rows["pub"].append(await publish_read())
    med = {k: statistics.median(v) * 1e6 for k, v in rows.items()}
    mb, ma = match_plane(n)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"N={n}, {ROUNDS} rounds interleaved, load average {' '.join(load)}")
    print("| per delivery, us (median) | before | after | after/before |")
    print("|---|---|---|---|")
    for label, k in (("SSE wake + frame", "sse"), ("long-poll wake + body", "lp")):
        before, after = med[k + "_b"], med[k + "_a"]
        print(f"| {label} | {before:.2f} | {after:.2f} | {after / before:.2f} |")
    print(f"| match, per publish, us | {mb * 1e6:.1f} | {ma * 1e6:.2f} | {ma / mb:.4f} |")
    print(f"publish to a topic one SSE reader reads, us per publish: {med['pub']:.2f}")
    churn, lookups = group_churn()
    print(
        f"a filter's only reader arrives and leaves, us per pair: {churn * 1e6:.2f}; then"
        f" the route of each of 10,000 routed topics, us per topic: {lookups * 1e6:.3f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
