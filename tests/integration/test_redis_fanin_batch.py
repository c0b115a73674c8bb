"""engines/redis/broker.py against a real private redis-server: another node's publish
batch handed to the server's `deliver` (core/pacing.py PacedDelivery) takes the reader's
batch path (`_handle_batch`: framing, fields and the Message inline, the topic's route
looked up once for the pass-by test and the routing). It must hand the hub exactly what the
one-message-at-a-time path hands it: every field, both header forms, retained messages,
positions, re-reads and gaps, and the pass-by of messages nobody on the node routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from helpers.redis import RedisServer
from pushwire.core.hub import Hub
from pushwire.core.pacing import PacedDelivery
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.redis import keys
from pushwire.engines.redis.broker import FanoutReader
from pushwire.engines.redis.client import connect
from pushwire.engines.redis.history import PublishBatcher
from pushwire.model import Message

DEADLINE = 10.0


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    made = connect(redis_server.url, 5.0)
    yield made
    await made.aclose()


def published() -> list[Message]:
    """Messages of every shape the header carries, the JSON form (a NUL in the origin)
    among them."""
    return [
        Message("f/plain", b"a"),
        Message("f/qos", b"b \n\0 c", qos=2),
        Message("f/ret", b"kept", qos=1, retain=True),
        Message("f/props", b"d", properties={"user_property": [("k", "v")]}),
        Message("f/exp", b"e", expires_at=4_000_000_000.5, origin="pub-1"),
        Message("f/json", b"f", origin="odd\0origin"),
        Message("f/plain", b""),
    ]


async def entries_of(client: redis.asyncio.Redis, messages: list[Message]) -> Any:
    node = PublishBatcher(client, "node-a", 10_000, 5.0, lambda topic: 100, 0, 1 << 20)
    for m in messages:
        node.add(m)  # one loop turn: one batch, one fan-out entry
    await asyncio.wait_for(node.sync(), DEADLINE)
    return await client.xrange(keys.FANOUT, "-", "+")


def fields(m: Message) -> tuple[Any, ...]:
    return (
        m.log_id,
        m.topic,
        m.payload,
        m.qos,
        m.retain,
        m.properties,
        m.expires_at,
        m.created_at,
        m.origin,
    )


def recording_hub() -> tuple[Hub, list[Message]]:
    hub = Hub(MemoryEngine())
    seen: list[Message] = []

    def observe(message: Message) -> bool:
        seen.append(message)
        return False

    hub.add_observer(observe)
    return hub, seen


async def test_the_batch_path_hands_over_exactly_what_one_by_one_does(
    client: redis.asyncio.Redis,
) -> None:
    sent = published()
    entries = await entries_of(client, sent)
    # one message at a time: a plain callable
    plain: list[Message] = []
    FanoutReader(client, "node-c", 1.0).handle_entries([(keys.FANOUT, entries)], plain.append)
    # the server's deliver: the batch path, routed through a real hub
    hub, seen = recording_hub()
    paced = PacedDelivery(hub, 100_000)
    reader = FanoutReader(client, "node-c", 1.0)
    reader.pass_by = paced.pass_by
    reader.handle_entries([(keys.FANOUT, entries)], paced)
    expected = [(m.log_id, m.topic, m.payload, m.qos, m.retain) for m in sent]
    assert [fields(m)[:5] for m in seen] == expected
    assert [fields(m) for m in seen] == [fields(m) for m in plain]
    assert [fields(m) for m in seen] == [fields(m) for m in sent]
    assert all(m.uid != o.uid for m, o in zip(seen, sent, strict=True))  # decoded here
    assert reader.last_position == sent[-1].log_id and reader.missed == 0
    # the retained one reached the hub's retained tree
    kept = hub.retained.get("f/ret")
    assert kept is not None and kept.payload == b"kept"
    # read again (a re-read after a reconnection): nothing handed over twice
    reader.handle_entries([(keys.FANOUT, entries)], paced)
    assert len(seen) == len(sent)


async def test_a_jump_in_positions_is_counted_as_missed(client: redis.asyncio.Redis) -> None:
    earlier = [Message("f/early", b"%d" % i) for i in range(3)]
    await entries_of(client, earlier)
    sent = published()
    entries = await entries_of(client, sent)
    hub, seen = recording_hub()
    reader = FanoutReader(client, "node-c", 1.0)
    reader.last_position = earlier[0].log_id or 0  # the next two are gone from the stream
    reader.handle_entries([(keys.FANOUT, entries[-1:])], PacedDelivery(hub, 100_000))
    assert reader.missed == 2
    assert [m.log_id for m in seen] == [m.log_id for m in sent]


async def test_messages_nobody_routes_pass_by_and_retained_ones_do_not(
    client: redis.asyncio.Redis,
) -> None:
    sent = published()
    entries = await entries_of(client, sent)
    hub, seen = recording_hub()
    cold: list[tuple[str, int]] = []

    def sink(topic: str, position: int, created_at: float, size: int) -> bool:
        cold.append((topic, position))
        return True

    hub.cold_sink = sink
    paced = PacedDelivery(hub, 100_000)
    reader = FanoutReader(client, "node-c", 1.0)
    reader.pass_by = paced.pass_by
    reader.handle_entries([(keys.FANOUT, entries)], paced)
    # no session here: every compact, not retained message goes to the cold sink; the
    # retained one is routed (it updates the retained tree) and the JSON form is decoded
    routed = {"f/ret", "f/json"}
    assert cold == [(m.topic, m.log_id) for m in sent if m.topic not in routed]
    assert [(m.topic, m.log_id) for m in seen] == [
        (m.topic, m.log_id) for m in sent if m.topic in routed
    ]


async def test_own_batches_hand_back_the_same_objects_and_pass_by_alike(
    client: redis.asyncio.Redis,
) -> None:
    node = PublishBatcher(client, "node-a", 10_000, 5.0, lambda topic: 100, 0, 1 << 20)
    sent = published()
    for m in sent:
        node.add(m)
    await asyncio.wait_for(node.sync(), DEADLINE)
    entries = await client.xrange(keys.FANOUT, "-", "+")
    hub, seen = recording_hub()
    cold: list[tuple[str, int]] = []

    def sink(topic: str, position: int, created_at: float, size: int) -> bool:
        cold.append((topic, position))
        return True

    hub.cold_sink = sink
    paced = PacedDelivery(hub, 100_000)
    reader = FanoutReader(client, "node-a", 1.0)  # the publishing node reads its own back
    reader.own_batches = node.sent
    reader.pass_by = paced.pass_by
    reader.handle_entries([(keys.FANOUT, entries)], paced)
    assert not node.sent  # its chunk was taken, nothing decoded
    # nobody subscribes here: every message not retained is logged cold, by position
    assert cold == [(m.topic, m.log_id) for m in sent if not m.retain]
    assert [id(m) for m in seen] == [id(m) for m in sent if m.retain]
    assert reader.last_position == sent[-1].log_id and reader.missed == 0


async def test_the_routed_position_stops_before_what_waits_for_its_turn(
    client: redis.asyncio.Redis,
) -> None:
    """Past a turn's fan-out budget the paced deliver holds messages back: the position a
    session write records (and a take's replay ends at) must stay before them, or a
    session taken from this node would lose them (neither queued here nor replayed)."""
    sent = published()
    entries = await entries_of(client, sent)
    hub, seen = recording_hub()
    # budget 0 (below the setting's minimum of 1): the first message is routed and every
    # later one waits, for good, which holds still the state this test reads
    paced = PacedDelivery(hub, 0)
    reader = FanoutReader(client, "node-c", 1.0)
    reader.pass_by = paced.pass_by
    reader.first_waiting = paced.first_waiting
    reader.handle_entries([(keys.FANOUT, entries)], paced)
    assert reader.last_position == sent[-1].log_id  # all read
    waiting = paced.first_waiting()
    assert waiting is not None and len(seen) < len(sent)
    assert reader.routed_position() == waiting - 1
    assert all((m.log_id or 0) <= reader.routed_position() for m in seen)
    # without a paced deliver (nothing can wait) it is the read position
    reader.first_waiting = None
    assert reader.routed_position() == reader.last_position


async def test_an_unreadable_entry_is_skipped_and_the_next_one_is_routed(
    client: redis.asyncio.Redis,
) -> None:
    """A fan-out entry this node cannot read (here a batch whose first position is not a
    number) is logged and skipped; the reader goes on with the next entry instead of dying (every
    ack on the node waits on it), and the skipped positions count as missed."""
    earlier = [Message("f/early", b"%d" % i) for i in range(3)]
    [(bad_id, bad)] = await entries_of(client, earlier)  # the stream's first entry
    bad = {**bad, b"f": b"not-a-position"}
    sent = published()
    good = (await entries_of(client, sent))[-1]  # (the stream's entries, the first included)
    hub, seen = recording_hub()
    paced = PacedDelivery(hub, 100_000)
    reader = FanoutReader(client, "node-c", 1.0)
    reader.pass_by = paced.pass_by
    reader.last_position = earlier[0].log_id or 0  # it had read the first of them
    reader.handle_entries([(keys.FANOUT, [(bad_id, bad), good])], paced)
    assert [m.log_id for m in seen] == [m.log_id for m in sent]
    assert reader.last_position == sent[-1].log_id
    assert reader.missed == len(earlier) - 1  # a gap, reported, not a silent loss
