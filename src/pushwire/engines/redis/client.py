"""Connections to Redis: one for commands, one for the fan-out reader's blocking reads.

redis-py reconnects by itself on the next command after a connection broke (retried once
on a fresh connection), so a command
either gets an answer or raises (`UNAVAILABLE`) within `timeout` seconds; the callers turn
that into a refusal (never an acknowledgement). `Backoff` spaces the retries of the loops
that run on their own (the fan-out reader).
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

# what a command raises while Redis is unreachable, restarting (loading its AOF), or slow
UNAVAILABLE: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# what each new connection tells Redis (CLIENT SETINFO), made once: by default redis-py
# looks its own version up in the installed package metadata for every new connection
# (files read from disk: ~5% of a worker's CPU while a burst of CONNECTs grew the pools)
DRIVER = DriverInfo(lib_version=redis.__version__)


def connect(
    url: str, timeout: float, *, blocking_reads: float = 0.0, max_connections: int = 64
) -> aioredis.Redis:
    """A client for `url`. `blocking_reads`: seconds a blocking read may wait for data
    (XREAD BLOCK), added to the socket timeout so an idle read is not a failure.

    At most `max_connections` connections; a command beyond them waits (up to `timeout`)
    for one to come free. redis-py's default pool instead fails the command ("Too many
    connections") past 100: a burst of CONNECTs claiming their client ids refused some."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout + blocking_reads,
        socket_connect_timeout=timeout,
        health_check_interval=0,
        # a pooled connection that died with a Redis restart fails its next command: one
        # retry on a fresh connection (a command whose answer was lost may run twice, so a
        # publish is at least once, never lost)
        retry=Retry(NoBackoff(), 1, (RedisConnectionError,)),
        decode_responses=False,
        driver_info=DRIVER,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


class Backoff:
    """Exponential pause between attempts: `first` doubling up to `longest`."""

    def __init__(self, longest: float, first: float = 0.05) -> None:
        self.first = first
        self.longest = longest
        self.next = first

    def reset(self) -> None:
        self.next = self.first

    async def wait(self) -> None:
        delay = self.next
        self.next = min(self.longest, delay * 2)
        await asyncio.sleep(delay)
