"""engines/redis/history.py + broker.py against a real private redis-server: a publish
batch is one stream entry per topic and one fan-out entry, and positions stay exact.

Two batchers with their own node ids stand for two nodes; a fan-out reader of a third
node id decodes what both published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from helpers.redis import RedisServer
from pushwire.engines.redis import keys
from pushwire.engines.redis.broker import FanoutReader
from pushwire.engines.redis.client import connect
from pushwire.engines.redis.history import PublishBatcher, RedisHistory
from pushwire.engines.redis.retained import load_retained
from pushwire.model import Message

DEADLINE = 10.0


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    made = connect(redis_server.url, 5.0)
    yield made
    await made.aclose()


def batcher(client: redis.asyncio.Redis, node: str, keep: int = 1000) -> PublishBatcher:
    return PublishBatcher(client, node, 10_000, 5.0, lambda topic: keep, 0, 1 << 20)


async def test_a_batch_is_one_entry_per_topic_and_reads_back_exactly(
    client: redis.asyncio.Redis,
) -> None:
    a = batcher(client, "node-a")
    published = [Message(f"t/{i % 3}", b"p%d \n\0" % i, qos=i % 2) for i in range(30)]
    for m in published:
        a.add(m)  # one loop turn: one batch
    await asyncio.wait_for(a.sync(), DEADLINE)
    assert [m.log_id for m in published] == list(range(1, 31))
    # one history entry per topic and one fan-out entry, not one per message
    assert [await client.xlen(keys.LOG + f"t/{t}") for t in range(3)] == [1, 1, 1]
    assert await client.xlen(keys.FANOUT) == 1
    history = RedisHistory(client, 5.0)
    # a range inside an entry whose id (its last position) lies beyond the range
    got = await history.read([("t/1", 2, 20)])
    assert [(m.log_id, m.payload) for m in got] == [
        (m.log_id, m.payload) for m in published if m.topic == "t/1" and 2 <= (m.log_id or 0) <= 20
    ]
    # start-up reads no stream: positions up to the start are scanned when asked for
    stored = await history.load("e", 30)
    assert stored.entries == [] and stored.unloaded_upto == 30
    found = await history.scan("t/#", 0, 30, 100)
    assert [(m.log_id, m.topic, m.payload) for m in found.messages] == [
        (m.log_id, m.topic, m.payload) for m in published
    ]
    assert found.evicted == {}
    # a range inside entries, one topic and a limit
    cut = await history.scan("t/+", 4, 29, 10)
    assert [m.log_id for m in cut.messages] == list(range(5, 15))
    one = await history.scan("t/2", 1, 20, 100)
    assert [m.log_id for m in one.messages] == [p for p in range(2, 21) if (p - 1) % 3 == 2]


async def test_positions_are_one_order_across_nodes_and_a_peer_decodes_them(
    client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    a, b = batcher(client, "node-a"), batcher(client, "node-b")
    sent: list[Message] = []
    for turn in range(4):
        for node in (a, b):
            for i in range(5):
                m = Message("x", b"%d" % len(sent), retain=(i == 4), origin=f"c{turn}")
                sent.append(m)
                node.add(m)
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(a.sync(), b.sync()), DEADLINE)
    positions = sorted(m.log_id or 0 for m in sent)
    assert positions == list(range(1, 41))
    reader_client = connect(redis_server.url, 5.0, blocking_reads=1.0)
    got: list[Message] = []
    peer = FanoutReader(reader_client, "node-c", 1.0)
    peer.start(0, got.append)
    try:
        await asyncio.wait_for(peer.reached(40), DEADLINE)
    finally:
        await peer.stop()
        await reader_client.aclose()
    by_position = {m.log_id: m for m in sent}
    assert [m.log_id for m in got] == list(range(1, 41))
    for m in got:
        original = by_position[m.log_id]
        assert (m.payload, m.retain) == (original.payload, original.retain)
        assert m.origin == original.origin
        assert m is not original  # decoded by the peer
    assert peer.missed == 0
    # the retained hash holds the last retained message, at its position
    (retained,) = await load_retained(client)
    last_retained = max((m for m in sent if m.retain), key=lambda m: m.log_id or 0)
    assert (retained.log_id, retained.payload) == (last_retained.log_id, last_retained.payload)


async def test_the_publishing_node_hands_out_its_own_objects(
    client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    a = batcher(client, "node-a")
    reader_client = connect(redis_server.url, 5.0, blocking_reads=1.0)
    own = FanoutReader(reader_client, "node-a", 1.0)
    own.own_batches = a.sent
    got: list[Message] = []
    own.start(0, got.append)
    published = [Message("o", b"%d" % i) for i in range(10)]
    try:
        for m in published:
            a.add(m)
        await asyncio.wait_for(a.sync(), DEADLINE)
        await asyncio.wait_for(own.reached(a.accepted_position), DEADLINE)
    finally:
        await own.stop()
        await reader_client.aclose()
    assert [id(m) for m in got] == [id(m) for m in published]
    assert not a.sent  # nothing left behind


async def test_trims_are_sent_together_and_keep_what_was_not_evicted(
    client: redis.asyncio.Redis,
) -> None:
    a = batcher(client, "node-a")
    published = [Message(f"t/{i % 4}", b"%d" % i) for i in range(40)]
    for m in published[:20]:
        a.add(m)
    await asyncio.wait_for(a.sync(), DEADLINE)
    for m in published[20:]:
        a.add(m)  # a second batch: a second entry per topic
    await asyncio.wait_for(a.sync(), DEADLINE)
    before = (await client.info("commandstats")).get("cmdstat_xtrim", {}).get("calls", 0)
    history = RedisHistory(client, 5.0)
    # the log evicts message by message: every first-batch message of every topic
    for m in published[:20]:
        history.trim(m.topic, m.log_id or 0, m.created_at)
    await asyncio.wait_for(history.drain(), DEADLINE)
    after = (await client.info("commandstats")).get("cmdstat_xtrim", {}).get("calls", 0)
    assert after - before == 4  # one per topic, not one per message
    # XTRIM is approximate (whole stream nodes): what was not evicted is all still there
    got = await history.read([(f"t/{t}", 21, 40) for t in range(4)])
    assert sorted(m.log_id or 0 for m in got) == list(range(21, 41))
    # raw replies (no decode_responses), whatever redis-py's annotation says
    evicted: bytes | None = await client.hget(keys.EVICTED, "t/3")  # type: ignore[assignment]
    assert evicted is not None and evicted.split(b" ")[0] == b"20"
