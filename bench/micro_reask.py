"""CPU per long-poll re-ask on the owned HTTP protocol, in process, the server's side alone.

`bench/micro_longpoll.py` times the re-ask together with the client's work in the same
window (reading the cursor out of each response, formatting the next request: ~0.6 us
per waiter). Here the next requests are built before the window, so it holds only
`HttpProtocol.data_received` of each request: recognised, checked, held again (or
answered). Same set-up as micro_longpoll (the real protocol and routes on fake
transports, publishes through the hub).

    .venv/bin/python bench/micro_reask.py [N] [--filters] [--behind] [--profile]

`--filters`: one filter per connection (a per-user topic: every template has one
connection, so no two re-asks share their bytes), woken by one publish per filter.
Prints the CPU time (`time.process_time`) per re-ask, median of the last waves, and per
woken waiter of the publishes that woke them (with `--filters`, one publish per waiter:
the whole publish, hub and log append included, not only the wake).
`--behind`: a second message is published after each wake, before the re-asks (a client
that re-asks late, one message behind): the timed re-asks are answered at once with it;
then each connection re-asks with that answer's cursor (untimed) and is held again.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import statistics
import sys
import time

from micro_longpoll import FakeTransport, _cursor, hot_stack
from pushwire.core.message import Message
from pushwire.http.connection import HttpProtocol

WAVES = 12
FIRST = b"GET /v1/longpoll/%b?timeout=300 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"
NEXT = b"GET /v1/longpoll/%b?timeout=300&since=%b HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


async def run(
    n: int, filters: bool, profile: bool, behind: bool = False
) -> tuple[list[float], list[float], cProfile.Profile | None]:
    stack = hot_stack({"longpoll_max_timeout": 3600, "http_max_listeners": 10**6})
    hub, log, server = stack.hub, stack.log, stack.server
    topics = [b"bench/lat/%d" % i if filters else b"bench/lat" for i in range(n)]
    conns: list[tuple[HttpProtocol, FakeTransport, bytes]] = []
    for i, topic in enumerate(topics):
        proto = server.protocol()
        tr = FakeTransport(10000 + i % 50000)
        tr.protocol = proto
        proto.connection_made(tr)  # type: ignore[arg-type]
        proto.data_received(FIRST % topic)
        conns.append((proto, tr, topic))
    assert log.listener_count == n, log.listener_count
    reask: list[float] = []
    wake: list[float] = []
    prof = cProfile.Profile() if profile else None
    for wave in range(WAVES):
        w0 = time.process_time()
        for topic in sorted(set(topics)):
            hub.publish(Message(topic.decode(), b"PWTS payload %d" % wave))
        wake.append((time.process_time() - w0) / n)
        nexts = [NEXT % (topic, _cursor(tr.out[-1])) for _, tr, topic in conns]
        for _, tr, _ in conns:
            tr.out.clear()
        if behind:  # passes every connection between its requests
            for topic in sorted(set(topics)):
                hub.publish(Message(topic.decode(), b"PWTS later %d" % wave))
        if prof is not None and wave >= 2:
            prof.enable()
        t0 = time.process_time()
        for (proto, _, _), data in zip(conns, nexts, strict=True):
            proto.data_received(data)
        t1 = time.process_time()
        if prof is not None:
            prof.disable()
        if behind:  # each was answered at once: now the usual re-ask, held
            for proto, tr, topic in conns:
                response = tr.out[-1]
                tr.out.clear()
                proto.data_received(NEXT % (topic, _cursor(response)))
        await asyncio.sleep(0)
        assert log.listener_count == n, (wave, log.listener_count)
        reask.append((t1 - t0) / n)
    print(f"served_replayed {server.served_replayed}, served_owned {server.served_owned}")
    for proto, tr, _ in conns:
        tr.closing = True
        proto.connection_lost(None)
    return reask, wake, prof


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 10_000
    filters = "--filters" in sys.argv
    behind = "--behind" in sys.argv
    reask, wake, prof = asyncio.run(run(n, filters, "--profile" in sys.argv, behind))
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    shape = "one filter per connection" if filters else "one filter"
    if behind:
        shape += ", re-asks one message behind (answered at once)"
    print(f"N={n}, {shape}, {WAVES} waves (median of the last {WAVES - 2}), load {load}")
    median = statistics.median(reask[2:]) * 1e6
    what = "answered" if behind else "held"
    print(f"re-ask (data_received to {what}), us per waiter: {median:.2f}")
    woken = statistics.median(wake[2:]) * 1e6
    print(f"publish + wake, us per woken waiter: {woken:.2f}")
    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
