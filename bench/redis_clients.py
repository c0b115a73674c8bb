"""redis-py's `redis.asyncio` against coredis, on what the Redis engine will do most.

    .venv/bin/pip install coredis      # not a pushwire dependency; only for this comparison
    .venv/bin/python bench/redis_clients.py --ops 20000 --concurrency 1,50

Starts a private redis-server (free 127.0.0.1 port, a temporary directory, `appendonly yes`
with `--appendfsync`, default everysec so that the disk does not hide the clients'
differences) and runs, on uvloop, `--ops` XADDs with approximate MAXLEN trimming, each
awaited for its reply, from `--concurrency` tasks at a time; both clients in turn, twice,
interleaved. Reported: acknowledged XADD/s and the client process's CPU per operation
(user + system), the figure that decides how much of a pushwire worker's core the client
takes. Stops its redis-server by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

HOST = "127.0.0.1"
PAYLOAD = b"x" * 64
MAXLEN = 100_000


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.asynccontextmanager
async def xadd_op(kind: str, port: int, pool: int) -> AsyncIterator[Callable[[], Awaitable[Any]]]:
    if kind == "redis-py":
        import redis.asyncio as redis_asyncio

        client = redis_asyncio.Redis(host=HOST, port=port, max_connections=pool)
        try:
            yield lambda: client.xadd("s:redis-py", {"p": PAYLOAD}, maxlen=MAXLEN, approximate=True)
        finally:
            await client.aclose()
        return
    import coredis
    from coredis.tokens import PureToken

    other = coredis.Redis(host=HOST, port=port, max_connections=pool)
    async with other:
        yield lambda: other.xadd(
            "s:coredis",
            {"p": PAYLOAD},
            trim_strategy=PureToken.MAXLEN,
            threshold=MAXLEN,
            trim_operator=PureToken.APPROXIMATELY,
        )


async def measure(kind: str, port: int, ops: int, concurrency: int) -> tuple[float, float]:
    async with xadd_op(kind, port, concurrency) as xadd:
        for _ in range(500):  # connections open, code paths warm
            await xadd()

        async def task() -> None:
            for _ in range(ops // concurrency):
                await xadd()

        started, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(task() for _ in range(concurrency)))
        elapsed, used = time.perf_counter() - started, cpu_seconds() - cpu
    done = ops // concurrency * concurrency
    return done / elapsed, used / done * 1e6


@contextlib.contextmanager
def private_redis(appendfsync: str) -> Any:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found (Debian package redis-server)")
    with tempfile.TemporaryDirectory(prefix="pushwire-redis-") as tmp:
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen(
            [
                *(binary, "--port", str(port), "--bind", HOST, "--dir", tmp, "--save", ""),
                *("--appendonly", "yes", "--appendfsync", appendfsync),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise
                    time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description="redis.asyncio against coredis")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--appendfsync", choices=("always", "everysec"), default="everysec")
    args = parser.parse_args()
    try:
        import coredis  # noqa: F401
    except ImportError:
        sys.exit("coredis is not installed: .venv/bin/pip install coredis")
    import uvloop

    with private_redis(args.appendfsync) as port:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for round_ in (1, 2):
                for kind in ("redis-py", "coredis"):
                    rate, cpu_us = uvloop.run(measure(kind, port, args.ops, concurrency))
                    print(
                        f"concurrency {concurrency:3} round {round_} {kind:8}: "
                        f"{rate:9,.0f} XADD/s acknowledged, client CPU {cpu_us:6.1f} us/op",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
