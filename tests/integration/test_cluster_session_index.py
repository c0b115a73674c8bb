"""Adoption reads only the sessions of dead nodes (engines/redis/sessions.py holder index).

Each node keeps, in the same scripts that move a client-id lock, the set of client ids it
holds (`pw:holds:<node id>`). A running node looking for orphans every heartbeat reads the
sets of dead nodes only: with no dead node, it touches no session at all, however many
sessions the live nodes hold. Real private redis-server; Redis' own `INFO commandstats`
counts what the adoption round cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from helpers.raw import RawClient, connected_client
from helpers.redis import RedisServer
from pushwire.engines.redis.presence import RedisPresence
from pushwire.engines.redis.sessions import RedisSessionStore

from .cluster_util import StartNode, cluster_node, publish_http, wait_for

__all__ = ["cluster_node"]

DEADLINE = 10.0
HELD = 300  # sessions a live node holds


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list[redis.asyncio.Redis]]:
    made = [redis.asyncio.Redis.from_url(redis_server.url) for _ in range(4)]
    yield made
    for c in made:
        await c.aclose()


async def command_calls(client: redis.asyncio.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, from Redis itself."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def hold_sessions(store: RedisSessionStore, ids: list[str]) -> None:
    for cid in ids:
        store.session_put(cid, 4, None, None)
    await store.sync()
    for cid in ids:
        assert await store.try_lock(cid) is not None


async def lapse(client: redis.asyncio.Redis, node_id: str) -> None:
    """The node's last heartbeat had a short TTL (it was killed with -9): wait until gone."""
    await RedisPresence(client, node_id, interval=0.05, timeout=0.2).beat()
    presence = RedisPresence(client, "observer", interval=0.05, timeout=0.2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while await presence.alive(node_id):
        assert loop.time() < deadline, f"{node_id}'s heartbeat never lapsed"
        await asyncio.sleep(0.02)


async def test_an_adoption_round_with_no_dead_node_touches_no_session(
    clients: list[redis.asyncio.Redis],
) -> None:
    alive = RedisPresence(clients[2], "node-a", interval=0.1, timeout=30.0)
    await alive.beat()
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b")
    await hold_sessions(a, [f"dev-{i}" for i in range(HELD)])
    await clients[3].config_resetstat()
    assert await b.load_sessions(adopting=True) == []
    calls = await command_calls(clients[3])
    # no lock script per session, no listing of every session: what the round read does
    # not grow with the sessions live nodes hold
    session_reads = sum(
        calls.get(c, 0) for c in ("evalsha", "eval", "hkeys", "hscan", "hgetall", "smembers")
    )
    assert session_reads <= 2, calls
    assert sum(calls.values()) < 10, calls


async def test_a_dead_nodes_sessions_are_adopted_from_its_index_only(
    clients: list[redis.asyncio.Redis],
) -> None:
    alive = RedisPresence(clients[2], "node-c", interval=0.1, timeout=30.0)
    await alive.beat()
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b")
    c = RedisSessionStore(clients[2], node_id="node-c")
    dead_ones = [f"a-{i}" for i in range(5)]
    await hold_sessions(a, dead_ones)
    await hold_sessions(c, [f"c-{i}" for i in range(HELD)])
    await lapse(clients[3], "node-a")
    await clients[3].config_resetstat()
    adopted = await b.load_sessions(adopting=True)
    assert sorted(s.client_id for s in adopted) == dead_ones
    calls = await command_calls(clients[3])
    # one lock script per session of the dead node, none for the live node's 300
    assert calls.get("evalsha", 0) + calls.get("eval", 0) <= len(dead_ones) + 2, calls
    for cid in dead_ones:
        assert await b.holder(cid) == "node-b"
    # the index moved with the locks, and the dead node's emptied set is forgotten
    assert await b.held_by("node-b") == set(dead_ones)
    assert await b.held_by("node-a") == set()
    assert "node-a" not in await b.holders()
    # the next round has nothing to do
    assert await b.load_sessions(adopting=True) == []


async def test_the_index_follows_claim_hand_over_and_release(
    clients: list[redis.asyncio.Redis],
) -> None:
    alive = RedisPresence(clients[2], "node-a", interval=0.1, timeout=30.0)
    await alive.beat()
    a = RedisSessionStore(clients[0], node_id="node-a")
    b = RedisSessionStore(clients[1], node_id="node-b", takeover_timeout=DEADLINE)
    await hold_sessions(a, ["moves", "stays", "ends"])
    assert await a.held_by("node-a") == {"moves", "stays", "ends"}

    async def let_go(client_id: str) -> None:
        return None

    await a.start_kicks(let_go)
    try:
        assert await b.claim("moves")
        assert await a.held_by("node-a") == {"stays", "ends"}
        assert await a.held_by("node-b") == {"moves"}
        await a.release("ends")
        assert await a.held_by("node-a") == {"stays"}
    finally:
        await a.close()
        await alive.stop()


FAST = (
    "--cluster-heartbeat-interval",
    "0.2",
    "--cluster-node-timeout",
    "1",
    "--cluster-takeover-timeout",
    "3",
)


@pytest.mark.pushwire_only("engine=redis is pushwire's")
def test_kill_9_sessions_are_adopted_and_queued_for_by_a_live_node(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a = cluster_node(*FAST, "--node-id", "node-a")
    b = cluster_node(*FAST, "--node-id", "node-b")
    r = redis.Redis.from_url(redis_server.url)
    try:
        for cid in ("orphan-1", "orphan-2"):
            with connected_client(a.host, a.mqtt_port, cid, clean_session=False) as dev:
                dev.subscribe(1, [("o/#", 1)])
        # node B holds a session of its own: adopting A's must leave it alone
        with connected_client(b.host, b.mqtt_port, "own-b", clean_session=False) as dev:
            dev.subscribe(1, [("o/#", 1)])
        assert {_text(c) for c in r.smembers("pw:holds:node-a")} == {"orphan-1", "orphan-2"}
        a.kill()
        # nobody reconnects: node B's heartbeat round finds A dead and adopts from A's set
        wait_for(
            lambda: (
                {_text(c) for c in r.smembers("pw:holds:node-b")}
                == {"own-b", "orphan-1", "orphan-2"}
            ),
            "node B to adopt node A's sessions",
        )
        wait_for(lambda: b"node-a" not in r.smembers("pw:holders"), "node A to be forgotten")
        # published after the adoption: B queues it for the offline sessions
        assert publish_http(b, "o/1", b"queued-on-b", qos="1").status_code == 201
        for cid in ("orphan-1", "orphan-2", "own-b"):
            with RawClient(b.host, b.mqtt_port) as dev:
                ack = dev.mqtt_connect(cid, clean_session=False)
                assert ack.return_code == 0 and ack.session_present
                got = dev.recv_publish()
                assert got.payload == b"queued-on-b"
                dev.ack(got)
    finally:
        r.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
