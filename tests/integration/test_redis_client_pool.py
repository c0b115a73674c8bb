"""engines/redis/client.py against a real private redis-server: a burst of concurrent
commands (a connect storm claiming client ids) waits for a pooled connection instead of
failing with "Too many connections" (which refused CONNECTs with CONNACK 3)."""

from __future__ import annotations

import asyncio

from helpers.redis import RedisServer
from pushwire.engines.redis.client import connect


async def test_a_burst_beyond_the_pool_waits_for_connections(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, 5.0, max_connections=8)
    try:
        # blocking pops hold their connection for a while, so the burst overlaps for sure
        answers = await asyncio.gather(*(client.blpop(["pw:test:none"], 0.05) for _ in range(150)))
        assert answers == [None] * 150
        assert await client.ping()
    finally:
        await client.aclose()
