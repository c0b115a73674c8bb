"""CPU per message of the message log's hub observer alone (`MessageLog.observer`, what
every routed message pays), in-process: the memory engine, topics at their count bound (the
steady state of a busy topic), no live reader, messages built beforehand.

    .venv/bin/python bench/micro_log_append.py [N] [--topics T] [--run R] [--profile]

Default N=300000 appends spread over T=1 topics (the QoS 1 bench's shape; with 8, the
fan-in's, each topic gets stretches of 64 in a row, as one publisher's read would).
`--run R`: hand them to `MessageLog.observe_run` R at a time, as `Hub.release_observers`
does for one read's run (a version without it: one `observer` call each). Prints process
CPU µs per append. To compare two versions, run it with
PYTHONPATH at the other src/ (and this file from either tree).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time

from pushwire.core.log import MessageLog, Retention
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine

RETAIN = 1000  # the default count bound (`log_max_messages`)


def measure(n: int, topics: int, run: int, profile: cProfile.Profile | None) -> float:
    mlog = MessageLog(MemoryEngine(), Retention(max_messages=RETAIN, max_age=3600.0))
    names = [f"bench/fanin/{i:03d}" for i in range(topics)]
    now = time.time()
    for i in range(2 * RETAIN * topics):  # every topic at its count bound
        mlog.observer(Message(names[i % topics], bytes(64), 1, False, {}, None, now))
    messages = [
        Message(names[i // 64 % topics], bytes(64), 1, False, {}, None, now) for i in range(n)
    ]
    observe = mlog.observer
    observe_run = getattr(mlog, "observe_run", None)
    runs = [messages[i : i + run] for i in range(0, n, run)] if run else []
    gc.collect()
    gc.freeze()
    if profile is not None:
        profile.enable()
    start = time.process_time()
    if runs and observe_run is not None:
        for chunk in runs:
            observe_run(chunk)
    else:
        for m in messages:
            observe(m)
    total = time.process_time() - start
    if profile is not None:
        profile.disable()
    assert mlog.last_id == 2 * RETAIN * topics + n
    return total / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=300_000)
    parser.add_argument("--topics", type=int, default=1)
    parser.add_argument("--run", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    us = measure(args.n, args.topics, args.run, profile)
    how = f"observe_run of {args.run}" if args.run else "observer"
    print(f"{us:.3f} us of CPU per log append ({how}; {args.topics} topics, n={args.n})")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
