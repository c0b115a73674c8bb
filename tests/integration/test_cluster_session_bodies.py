"""A message queued for many offline sessions is stored once (engines/redis/sessions.py).

Queue entries of a message with a position refer to one shared body (`pw:bodies`), with a
count of the entries that refer to it (`pw:refs`) kept by the same scripts that write the
entries: the body goes when the last entry does. Real private redis-server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from helpers.redis import RedisServer
from pushwire.core.message import Message
from pushwire.engines.base import StoredQueueEntry
from pushwire.engines.redis.sessions import RedisSessionStore

SESSIONS = 20
PAYLOAD = bytes(range(256)) * 40  # 10 KiB


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[redis.asyncio.Redis]]:
    made = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(2)]
    yield made
    for c in made:
        await c.aclose()


async def stored_bytes(client: redis.asyncio.Redis) -> int:
    """Bytes of every queue entry and shared body in Redis."""
    total = 0
    async for key in client.scan_iter(match="pw:qe:*"):
        total += sum(len(v) for v in await client.hvals(key))
    total += sum(len(v) for v in await client.hvals("pw:bodies"))
    return total


async def test_a_message_queued_for_many_sessions_is_stored_once(
    clients: list[redis.asyncio.Redis],
) -> None:
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b")
    m = Message(
        "t/big",
        PAYLOAD,
        qos=1,
        properties={"user_property": [("k", "v")]},
        expires_at=9e9,
        origin="pub",
    )
    m.log_id = 77  # a position: it came through the fan-out
    local = Message("$SYS/broker/uptime", b"12", qos=0)  # no position: kept inline
    ids = [f"dev-{i}" for i in range(SESSIONS)]
    for cid in ids:
        a.session_put(cid, 4, None, None)
        a.queue_put(cid, StoredQueueEntry(1, m, 1, False))
    a.queue_put(ids[0], StoredQueueEntry(2, local, 0, False))
    a.queue_put(ids[0], StoredQueueEntry(1, m, 1, False, 5, "sent"))  # rewritten: one ref
    await a.sync()
    assert await stored_bytes(clients[0]) < 2 * len(PAYLOAD)

    found = await b.load_session(ids[0])
    assert found is not None
    [first, second] = found.queue
    assert (first.seq, first.wire_id, first.state, second.seq) == (1, 5, "sent", 2)
    got = first.message
    assert (got.topic, got.payload, got.qos, got.properties, got.expires_at, got.origin) == (
        m.topic,
        m.payload,
        m.qos,
        m.properties,
        m.expires_at,
        m.origin,
    )
    assert got.log_id == 77 and second.message.payload == b"12"

    # the body lives while any queue refers to it
    for cid in ids[1:]:
        a.queue_delete(cid, 1)
    await a.sync()
    assert int(await clients[0].hget("pw:refs", "77") or 0) == 1
    assert await clients[0].hexists("pw:bodies", "77")
    a.session_delete(ids[0])
    await a.sync()
    assert await clients[0].hlen("pw:bodies") == 0 and await clients[0].hlen("pw:refs") == 0
    assert await b.load_session(ids[0]) is None
