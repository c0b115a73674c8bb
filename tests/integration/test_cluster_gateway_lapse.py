"""A live home whose heartbeat lapsed (engine=redis): the device it still holds is not lost.

A device keeps one connection to one node, its home (gateway/cluster.py). Every script
that names a home checks that node's heartbeat key `node:<id>` (engines/redis/presence.py);
a home whose key lapsed counts as dead, and its devices go to whichever node needs them
(engines/redis/gateway_homes.py `home_of`, `take`). A node that is alive but slow (a loaded
event loop, a GC pause, a Redis hiccup) can lapse so while it still holds the device's
connection. The tests make the lapse happen on purpose: node a's next heartbeat write is
held, and its `node:<id>` key deleted, as its expiry would.

Two pushwire nodes run in this process (helpers/inproc.py) on a private redis-server; the
provider and the device talk to them over HTTP and MQTT on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from helpers.inproc import InProcessServer
from helpers.redis import RedisServer
from pushwire.engines.redis.presence import RedisPresence
from pushwire.gateway.model import Push

from .cluster_util import DEADLINE, wait_for
from .test_cluster_gateway_order import Homed, homed, push, start_node

__all__ = ["homed", "start_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")


class HeldBeat:
    """Holds node a's next heartbeat write until `release` (a loaded node beats late);
    `holding` is set once the hold is reached, so no earlier beat is still on its way."""

    def __init__(self, node: InProcessServer) -> None:
        assert node.server is not None and node.server.handover is not None
        self.presence = node.server.handover.presence
        self.beat = self.presence.beat
        self.holding = threading.Event()
        self._release = asyncio.Event()
        self.presence.beat = self._held  # type: ignore[method-assign]

    async def _held(self) -> bool:
        self.presence.beat = self.beat  # type: ignore[method-assign]
        self.holding.set()
        await asyncio.wait_for(self._release.wait(), DEADLINE)
        return await self.beat()

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def home_of(store: redis.Redis, device_id: str) -> str | None:
    raw = store.hget("pw:gw:home", device_id)
    return None if raw is None else text(raw)


def lapse(node: InProcessServer, store: redis.Redis) -> HeldBeat:
    """Node a's heartbeat lapses while it runs: its next beat is held and its key gone."""
    held = node.call(lambda: HeldBeat(node))
    assert held.holding.wait(DEADLINE)
    assert store.delete(f"pw:node:{node.settings.node_id}") == 1
    return held


def only_device(store: redis.Redis) -> str:
    devices = store.hkeys("pw:gw:home")
    assert len(devices) == 1, devices
    return text(devices[0])


def ids(homed: Homed, until: str) -> list[str]:
    got = homed.client.get_until(lambda m: json.loads(m.payload)["id"] == until, DEADLINE)
    return [json.loads(m.payload)["id"] for m in got]


def test_a_push_taken_by_another_node_during_the_lapse_reaches_the_device_on_the_old_home(
    homed: Homed, store: redis.Redis
) -> None:
    """While a's key is gone, a push posted to b makes b the device's home (a counts as
    dead), though the device is still connected to a. Once a beats again it must notice
    that it lost the home of a device connected to it and take it back (b lets go and
    writes out), so that push reaches the device, and later ones follow it in order.
    Before: a never noticed; b kept the device's pushes and the device, connected to a,
    got none of them (not even after reconnecting to a, which still thought itself home)."""
    a, b, key, token = homed.a, homed.b, homed.key, homed.token
    device_id = only_device(store)
    assert home_of(store, device_id) == a.settings.node_id

    held = lapse(a, store)
    during = push(b, key, token)  # acknowledged by b, which becomes the home
    assert b.server is not None
    b_delivery = b.server.gateway.delivery
    wait_for(lambda: b.call(lambda: b_delivery.here(device_id)), "node b to be the home")
    assert home_of(store, device_id) == b.settings.node_id

    a.call(held.release)
    after = push(b, key, token)
    assert ids(homed, after) == [during, after]

    def homed_on_a() -> bool:
        return home_of(store, device_id) == a.settings.node_id and a.call(
            lambda: homed.delivery.here(device_id)
        )

    wait_for(homed_on_a, "node a, which holds the connection, to be the home again")
    assert not b.call(lambda: b_delivery.here(device_id))
    # and the home keeps serving it: a push posted to a goes straight out
    last = push(a, key, token)
    assert ids(homed, last) == [last]


def test_a_push_posted_to_the_old_home_during_the_lapse_goes_after_the_one_taken_before_it(
    homed: Homed, store: redis.Redis
) -> None:
    """As above, and a's own clock says its lease ran out too (a late beat): a push posted
    to a then, though a still thinks itself home, must not go out before the older one b
    took. Before: it went out at once, and the older one after it (or never)."""
    a, b, key, token = homed.a, homed.b, homed.key, homed.token
    device_id = only_device(store)
    assert a.server is not None and a.server.handover is not None
    presence = a.server.handover.presence

    held = lapse(a, store)

    def lease_over() -> None:
        presence.lease_until = 0.0  # what a's clock finds when its beat is late

    a.call(lease_over)
    older = push(b, key, token)
    assert b.server is not None
    b_delivery = b.server.gateway.delivery
    wait_for(lambda: b.call(lambda: b_delivery.here(device_id)), "node b to be the home")
    newer = push(a, key, token)  # a still thinks itself home: admitted there, not sent
    a.call(held.release)
    assert ids(homed, newer) == [older, newer]
    marker = push(b, key, token)
    assert ids(homed, marker) == [marker]


def test_a_home_whose_lease_ran_out_sends_nothing_until_it_beats_again(
    homed: Homed, store: redis.Redis
) -> None:
    """a's beat is late and its own clock says its lease ran out: its key may have
    expired and another node may be home by now, so a sends nothing (the push waits),
    until its next beat tells it where it stands; then the push goes out. Before: a
    sent at once (a push handed out by two homes, each acting on it)."""
    a, key, token = homed.a, homed.key, homed.token
    device_id = only_device(store)
    assert a.server is not None and a.server.handover is not None
    presence = a.server.handover.presence
    delivery, homes = homed.delivery, homed.homes

    held = a.call(lambda: HeldBeat(a))
    assert held.holding.wait(DEADLINE)

    def lease_over() -> None:
        presence.lease_until = 0.0

    a.call(lease_over)
    waiting = push(a, key, token)
    seq = a.call(lambda: delivery.pushes[waiting].seq)
    # its catch-up read the pending set and tried to send (`then` runs right after)
    wait_for(lambda: a.call(lambda: homes._caught_up.get(device_id, 0) >= seq), "a's catch-up")
    assert a.call(lambda: delivery.pushes[waiting].state) == "queued"
    a.call(held.release)
    assert ids(homed, waiting) == [waiting]
    assert home_of(store, device_id) == a.settings.node_id


class HeldInboxReads:
    """Holds node a's next read of its inbox until `release`: notices wait in Redis (a
    loaded node reads its inbox late). `holding` is set once no read is under way."""

    def __init__(self, node: InProcessServer) -> None:
        assert node.server is not None and node.server.gateway.delivery.homes is not None
        self.link = node.server.gateway.delivery.homes.link
        self.read = self.link.next_notice
        self.holding = threading.Event()
        self._release = asyncio.Event()
        self.link.next_notice = self._held  # type: ignore[method-assign]

    async def _held(self, wait: float) -> tuple[str, str, str] | None:
        self.link.next_notice = self.read  # type: ignore[method-assign]
        self.holding.set()
        await asyncio.wait_for(self._release.wait(), DEADLINE)
        return await self.read(wait)

    def release(self) -> None:
        self._release.set()


class HeldTakes:
    """Holds node b's dead-home takes (on its store thread) until `release`."""

    def __init__(self, node: InProcessServer) -> None:
        assert node.server is not None and node.server.gateway.delivery.homes is not None
        self.homes = node.server.gateway.delivery.homes
        self.take = self.homes.link.take
        self.holding = threading.Event()
        self._release = threading.Event()
        self.homes.link.take = self._held  # type: ignore[method-assign]

    def _held(self, device_id: str, dead: str) -> bool:
        self.holding.set()
        self._release.wait(DEADLINE)
        return self.take(device_id, dead)

    def release(self) -> None:
        self._release.set()


def test_a_notice_dropped_with_the_inbox_of_a_home_that_looked_dead_is_caught_up(
    homed: Homed, store: redis.Redis
) -> None:
    """A push posted to b waits in a's inbox (a reads it late) when a's heartbeat lapses;
    b's dead-home check drops a's inbox (what a dead node left there is in the pending
    sets) but a beats again before b's take, so a stays the home. The push must still
    reach the device: after a lapse a reads the pending sets of its devices again.
    Before: it waited on a, unsent, until some later push or reconnect of the device."""
    a, b, key, token = homed.a, homed.b, homed.key, homed.token
    device_id = only_device(store)
    assert b.server is not None and b.server.gateway.delivery.homes is not None
    b_homes = b.server.gateway.delivery.homes

    reads = a.call(lambda: HeldInboxReads(a))
    assert reads.holding.wait(DEADLINE)
    waiting = push(b, key, token)
    inbox = f"pw:gw:inbox:{a.settings.node_id}"
    assert store.llen(inbox) == 1

    takes = HeldTakes(b)  # before the lapse: b's own periodic check must not take first
    held = lapse(a, store)
    b.call(lambda: b_homes._spawn(b_homes._adopt_orphans()))  # b's dead-home check, now
    assert takes.holding.wait(DEADLINE)
    assert store.llen(inbox) == 0  # dropped with the inbox of a node that looked dead
    a.call(held.release)
    wait_for(lambda: store.exists(f"pw:node:{a.settings.node_id}"), "node a to beat again")
    takes.release()  # too late: a is alive again, b takes nothing
    a.call(reads.release)
    assert ids(homed, waiting) == [waiting]
    assert home_of(store, device_id) == a.settings.node_id
    marker = push(b, key, token)
    assert ids(homed, marker) == [marker]


class HeldReply(HeldBeat):
    """Node a's next heartbeat is sent with its lease about to run out, and its reply (the
    key still there) read late, after the lease ran out (a loaded loop reads it late):
    `holding` is set once Redis has answered and the reply waits."""

    async def _held(self) -> bool:
        presence = self.presence
        presence.beat = self.beat  # type: ignore[method-assign]
        client, pipeline = presence.client, presence.client.pipeline

        def held_pipeline(*args: Any, **kw: Any) -> Any:
            pipe = pipeline(*args, **kw)
            execute = pipe.execute

            async def late_execute(*a: Any, **k: Any) -> Any:
                reply = await execute(*a, **k)  # Redis answered: the key existed
                self.holding.set()
                await asyncio.wait_for(self._release.wait(), DEADLINE)
                return reply

            pipe.execute = late_execute  # type: ignore[method-assign]
            return pipe

        client.pipeline = held_pipeline  # type: ignore[method-assign]
        # sent while the lease still holds, for a few more milliseconds
        presence.lease_until = time.monotonic() + 0.05
        try:
            return await self.beat()
        finally:
            client.pipeline = pipeline  # type: ignore[method-assign]


def queued_and_read(homed: Homed, push_id: str) -> bool:
    """The push waits on a, and its catch-up read is done (its flush found sending held)."""

    def look() -> bool:
        p = homed.delivery.pushes.get(push_id)
        return (
            p is not None
            and p.state == "queued"
            and homed.homes._caught_up.get(p.device_id, 0) >= p.seq
        )

    return bool(homed.a.call(look))


def test_a_beat_whose_reply_comes_after_the_lease_ran_out_is_a_lapse_and_what_waited_goes(
    homed: Homed,
) -> None:
    """A beat sent just before a's lease ran out, its reply read after: meanwhile a held
    its sends (it could not know it was still alive). The reply must count as a lapse, so
    that a looks again and sends what waited. Before: the beat counted as held (it was
    sent in time), nothing flushed the device, and the push waited until something else
    happened to the device."""
    a, key, token = homed.a, homed.key, homed.token
    assert a.server is not None and a.server.handover is not None
    presence = a.server.handover.presence
    reply = a.call(lambda: HeldReply(a))
    assert reply.holding.wait(DEADLINE)
    wait_for(lambda: not a.call(presence.holds_lease), "a's lease to run out")
    waiting = push(a, key, token)
    wait_for(lambda: queued_and_read(homed, waiting), "the push to wait, held, on a")
    lapses = a.call(lambda: presence.lapses)
    a.call(reply.release)
    assert ids(homed, waiting) == [waiting]
    assert a.call(lambda: presence.lapses) == lapses + 1


def test_a_recovery_whose_step_fails_after_its_look_tries_again_and_sends_what_waited(
    homed: Homed,
) -> None:
    """a's lease ran out (its next beat held); a push posted to a waits. The beat comes,
    the recovery looks at its devices, then its read of pending pushes fails once (a Redis
    hiccup, the usual cause of a lapse). It must try again and send. Before: the recovery
    ended at the error, and the push waited until something else happened to the device."""
    a, key, token = homed.a, homed.key, homed.token
    assert a.server is not None and a.server.handover is not None
    presence, homes = a.server.handover.presence, homed.homes
    held = a.call(lambda: HeldBeat(a))
    assert held.holding.wait(DEADLINE)
    a.call(lambda: setattr(presence, "lease_until", 0.0))  # the lease ran out meanwhile
    waiting = push(a, key, token)
    wait_for(lambda: queued_and_read(homed, waiting), "the push to wait, held, on a")
    get_pushes = homes.link.get_pushes
    failed = threading.Event()

    def fails_once(push_ids: list[str]) -> list[Push]:
        homes.link.get_pushes = get_pushes  # type: ignore[method-assign]
        failed.set()
        raise redis.ConnectionError("a hiccup")

    homes.link.get_pushes = fails_once  # type: ignore[method-assign]
    a.call(held.release)
    assert ids(homed, waiting) == [waiting]
    assert failed.is_set()
    wait_for(lambda: a.call(lambda: homes.recoveries) == 1, "the recovery to be counted")


def test_a_beat_tells_whether_the_heartbeat_had_lapsed(redis_server: RedisServer) -> None:
    """RedisPresence.beat is False when the key was gone or the lease had run out, and
    the heartbeat loop then calls its lapse listeners (gateway/cluster.py follows them)."""

    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        presence = RedisPresence(client, "node-x", interval=0.05, timeout=30.0)
        try:
            assert not await presence.beat()  # the first: nothing held before
            assert await presence.beat()
            assert presence.holds_lease()
            await client.delete("pw:node:node-x")
            assert not await presence.beat()  # the key had expired (deleted here)
            assert await presence.beat()
            presence.lease_until = 0.0  # this beat comes after the lease ran out
            assert not presence.holds_lease()
            assert not await presence.beat()
            assert presence.holds_lease()

            lapsed = asyncio.Event()
            presence.on_lapse(lapsed.set)
            await presence.start()
            assert presence.lapses == 0
            await client.delete("pw:node:node-x")
            await asyncio.wait_for(lapsed.wait(), DEADLINE)
            assert presence.lapses == 1
        finally:
            await presence.stop()
            await client.aclose()

    asyncio.run(run())
