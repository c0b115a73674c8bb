"""engines/redis/sessions.py and presence.py against a real private redis-server.

Each store has its own connection and node id, standing for one node. What one node wrote
and synced is what another finds; the client-id lock moves by a kick the holder answers,
or without one when the holder's heartbeat has lapsed (kill -9).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio

from helpers.redis import RedisServer
from pushwire.core.message import Message
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.base import StoredQueueEntry, StoredSubscription
from pushwire.engines.redis.presence import RedisPresence
from pushwire.engines.redis.sessions import RedisSessionStore
from pushwire.model import WriteFailure

DEADLINE = 10.0


async def wait_for(cond: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[redis.asyncio.Redis]]:
    made = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(4)]
    yield made
    for c in made:
        await c.aclose()


def message(topic: str, payload: bytes, **kw: object) -> Message:
    return Message(topic, payload, **kw)  # type: ignore[arg-type]


async def test_session_written_on_one_node_is_found_on_another(
    clients: list[redis.asyncio.Redis],
) -> None:
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b")
    a.session_put("dev1", 5, 3600, 1234.5, owner="alice")
    opts = SubscriptionOptions(qos=2, no_local=True, retain_as_published=True, retain_handling=1)
    a.subscription_put("dev1", StoredSubscription("t/#", opts, 7))
    a.subscription_put("dev1", StoredSubscription("gone", SubscriptionOptions()))
    a.subscription_delete("dev1", "gone")
    m1 = message(
        "t/1",
        b"\x00one",
        qos=1,
        properties={"user_property": [("k", "v")], "correlation_data": b"\x01"},
        expires_at=9e9,
        origin="pub",
    )
    m2 = message("t/2", b"two", qos=2)
    m3 = message("t/3", b"three", qos=1)
    a.queue_put("dev1", StoredQueueEntry(1, m1, 1, False))
    a.queue_put("dev1", StoredQueueEntry(2, m2, 2, True))
    a.queue_put("dev1", StoredQueueEntry(3, m3, 1, False))
    a.queue_update("dev1", 1, 17, "sent")  # inflight, waiting for PUBACK
    a.queue_update("dev1", 2, 18, "released")  # QoS 2, PUBREL sent
    a.queue_delete("dev1", 3)
    a.inbound_qos2_put("dev1", 40)
    a.inbound_qos2_put("dev1", 41)
    a.inbound_qos2_delete("dev1", 40)
    await a.sync()

    found = await b.load_session("dev1")
    assert found is not None
    assert (found.protocol_level, found.expiry_interval, found.disconnected_at) == (5, 3600, 1234.5)
    assert found.owner == "alice"
    assert found.subscriptions == [StoredSubscription("t/#", opts, 7)]
    assert [(e.seq, e.qos, e.retain, e.wire_id, e.state) for e in found.queue] == [
        (1, 1, False, 17, "sent"),
        (2, 2, True, 18, "released"),
    ]
    assert found.queue[0].message == m1 and found.queue[1].message == m2
    assert found.inbound_qos2 == [41]

    b.session_delete("dev1")
    await b.sync()
    assert await a.load_session("dev1") is None


async def test_takeover_kick_hands_the_session_over(clients: list[redis.asyncio.Redis]) -> None:
    presence_a = RedisPresence(clients[2], "node-a", interval=0.2, timeout=30.0)
    await presence_a.beat()  # node A is alive
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b", takeover_timeout=DEADLINE)
    assert await a.try_lock("dev2") == ""
    a.session_put("dev2", 4, None, None)

    kicked: list[str] = []

    async def let_go(client_id: str) -> None:
        # what the holder does before it releases: its last writes go with the session
        kicked.append(client_id)
        a.queue_put(client_id, StoredQueueEntry(1, message("x", b"last"), 1, False))

    await a.start_kicks(let_go)
    try:
        assert await b.try_lock("dev2") is None  # a live node holds it
        assert await b.claim("dev2")
        assert kicked == ["dev2"]
        assert await b.holder("dev2") == "node-b"
        moved = await b.load_session("dev2")
        assert moved is not None and [e.message.payload for e in moved.queue] == [b"last"]
        # and back: B is no live node (no heartbeat), so A takes it without a kick
        assert await a.try_lock("dev2") == "node-b"
    finally:
        await a.close()
        await presence_a.stop()


async def test_a_dead_nodes_sessions_are_adopted(clients: list[redis.asyncio.Redis]) -> None:
    presence_a = RedisPresence(clients[2], "node-a", interval=0.1, timeout=30.0)
    await presence_a.beat()
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b", takeover_timeout=DEADLINE)
    for cid in ("held", "free"):
        a.session_put(cid, 4, None, None)
    await a.sync()
    await a.try_lock("held")
    # node B starting now adopts only what no live node holds
    assert [s.client_id for s in await b.load_sessions()] == ["free"]
    # node A's last heartbeat, then it is killed with -9: its key just expires
    await RedisPresence(clients[2], "node-a", interval=0.1, timeout=0.3).beat()
    still_a: list[bool] = []

    async def check() -> None:
        still_a.append(await presence_a.alive("node-a"))

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        await check()
        if not still_a[-1] or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not still_a[-1]
    assert await b.claim("held")  # nobody answers the kick; the lapsed heartbeat frees it
    assert sorted(s.client_id for s in await b.load_sessions()) == ["free", "held"]


async def test_refused_writes_are_reported_not_acknowledged(
    redis_server: RedisServer, clients: list[redis.asyncio.Redis]
) -> None:
    store = RedisSessionStore(clients[0], node_id="node-a")
    failures: list[WriteFailure] = []
    store.add_failure_listener(failures.append)
    store.session_put("dev3", 4, None, None)
    await store.sync()
    assert failures == []
    mark = store.failure_mark()
    redis_server.kill()
    m = message("t", b"lost?", qos=1)
    store.queue_put("dev3", StoredQueueEntry(1, m, 1, False))
    await store.sync()  # returns (refused), never hangs or raises
    assert store.write_failed(m)
    assert store.session_failed_since("dev3", mark)
    assert [(f.op, f.client_id) for f in failures] == [("queue_put", "dev3")]


async def test_presence_gives_per_node_figures_and_totals(
    clients: list[redis.asyncio.Redis],
) -> None:
    figures = {"node-a": {"clients_connected": 3.0, "messages_in": 10.0, "uptime": 5.0}}
    figures["node-b"] = {"clients_connected": 2.0, "messages_in": 1.0, "uptime": 9.0}
    a = RedisPresence(clients[0], "node-a", figures=lambda: figures["node-a"])
    b = RedisPresence(clients[1], "node-b", figures=lambda: figures["node-b"])
    await a.start()
    await b.start()
    try:
        seen = await a.cluster_figures()
        assert seen.nodes == figures
        assert seen.totals == {"clients_connected": 5.0, "messages_in": 11.0, "nodes": 2}
        await b.client_online("dev4")
        assert await a.where("dev4") == "node-b"
        await a.client_offline("dev4")  # not A's client: B keeps it
        assert await a.where("dev4") == "node-b"
        await b.stop()  # B leaves: its figures leave the totals, its clients are nowhere
        after = await a.cluster_figures()
        assert list(after.nodes) == ["node-a"] and after.totals["clients_connected"] == 3.0
        assert await a.where("dev4") is None
    finally:
        await a.stop()
        await b.stop()


async def test_a_claim_while_the_session_is_adopted_keeps_the_dead_holders_replay_point(
    clients: list[redis.asyncio.Redis],
) -> None:
    """Node B adopts a session from dead node A (its lock taken with A as predecessor), and
    the client's claim on B takes the same lock again before the adoption installed it:
    the replay must still start where A's writes were queued to, not at B's own mark
    (which B never recorded: a message acknowledged in the gap would be lost)."""
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b", takeover_timeout=DEADLINE)
    a.position = lambda: 42  # A routed the fan-out up to 42 when it last wrote
    assert await a.try_lock("gap") == ""
    a.session_put("gap", 4, None, None)
    await a.sync()
    # A has no heartbeat: dead. B's adopt loop takes the lock from it...
    assert await b.try_lock("gap", own=False, found_in="node-a") == "node-a"
    # ...and the client's CONNECT on B claims it again before the session is installed
    assert (await b.claim_connection("gap")).taken
    assert await b.replay_from("gap") == 42
