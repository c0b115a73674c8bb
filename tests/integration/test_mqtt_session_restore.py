"""A persistent MQTT session's packet ids and QoS 2 states survive a restart on every
engine that keeps sessions (SQLite, Redis: a private redis-server): the ids moved from
core/session.py to mqtt/session.py and are journaled through the same engine port.

The hub is driven directly with a recording Link (the MQTT listener's session factory, no
sockets); each "restart" closes the engine and restores a new hub from what it wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from helpers.recording_link import RecordingLink
from helpers.redis import RedisServer
from pushwire.config import Settings
from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.sqlite import SQLiteEngine
from pushwire.mqtt.session import MqttSession
from pushwire.ports import Engine

OpenEngine = Callable[[], Awaitable[Engine]]


@pytest.fixture(params=["sqlite", "redis"])
async def open_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenEngine]:
    """Opens a new engine over the same store each call (a restart of the node)."""
    if request.param == "sqlite":

        async def open_sqlite() -> Engine:
            engine = SQLiteEngine(tmp_path / "s.db", durable=True)
            await engine.open()
            return engine

        yield open_sqlite
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    from pushwire.engines.redis import RedisEngine

    async def open_redis() -> Engine:
        # the same node id: a restarted node takes back the sessions it held
        settings = Settings(engine="redis", redis_url=redis_server.url, node_id="n1")
        engine = RedisEngine(settings)
        await engine.open()
        return engine

    yield open_redis


async def start(open_engine: OpenEngine) -> Hub:
    hub = Hub(await open_engine(), SessionLimits(max_inflight=2))
    hub.session_factory = MqttSession
    await hub.restore()
    return hub


def connect(hub: Hub, client_id: str) -> tuple[MqttSession, RecordingLink, bool]:
    link = RecordingLink()
    s, present = hub.connect(client_id, False, 4, None, link)
    assert isinstance(s, MqttSession)
    s.attach(link)
    return s, link, present


async def stop(hub: Hub, *clients: tuple[MqttSession, RecordingLink]) -> None:
    for s, link in clients:
        hub.disconnect(s, link)
    await hub.sync_future()
    await hub.engine.close()


async def test_packet_ids_and_qos2_states_survive_a_restart(open_engine: OpenEngine) -> None:
    hub = await start(open_engine)
    sub, sub_link, _ = connect(hub, "sub")
    hub.subscribe(sub, Subscription("t/#", SubscriptionOptions(qos=2)))
    pub, pub_link, _ = connect(hub, "pub")
    pub.inbound_qos2_add(41)  # PUBREC sent to the publisher, its PUBREL not yet seen
    pub.inbound_qos2_add(42)
    assert pub.inbound_qos2_release(42)
    hub.publish(Message("t/1", b"one", qos=1))
    hub.publish(Message("t/2", b"two", qos=2))
    hub.publish(Message("t/3", b"three", qos=1))  # beyond the window of 2: queued
    (_, one, _), (_, two, _) = sub_link.sent
    assert one is not None and two is not None
    assert sub.received(two)  # PUBREC: the server owes PUBREL
    await stop(hub, (sub, sub_link), (pub, pub_link))

    hub = await start(open_engine)
    sub, sub_link, present = connect(hub, "sub")
    assert present
    # the same packet ids (MQTT-4.4.0-1): the PUBLISH again with DUP, PUBREL for the one
    # the client received; then the queued one, under an id not in use
    assert sub_link.sent[0] == (b"one", one, True)
    assert sub_link.released == [two]
    assert sub.acknowledge(one)
    assert sub_link.sent[1][0] == b"three" and sub_link.sent[1][1] not in (two, None)
    assert sub.completed(two)
    pub, pub_link, _ = connect(hub, "pub")
    assert pub.inbound_qos2_seen(41) and not pub.inbound_qos2_seen(42)
    await stop(hub, (sub, sub_link), (pub, pub_link))


async def test_made_persistent_by_a_reconnect_journals_its_inbound_ids(
    open_engine: OpenEngine,
) -> None:
    """A clean session's inbound QoS 2 ids were never journaled; when a reconnect makes the
    session persistent, `journal_everything` writes them (MqttSession adds them)."""
    hub = await start(open_engine)
    link = RecordingLink()
    s, _ = hub.connect("p", False, 5, 0, link)  # MQTT 5, expiry 0: ends with the connection
    assert isinstance(s, MqttSession)
    s.attach(link)
    s.inbound_qos2_add(7)
    s.link = None  # the connection is gone without the hub knowing yet (a takeover)
    again = RecordingLink()
    s2, present = hub.connect("p", False, 5, 3600, again)  # now persistent
    assert s2 is s and present
    s.attach(again)
    await stop(hub, (s, again))

    hub = await start(open_engine)
    s, link, present = connect(hub, "p")
    assert present and s.inbound_qos2_seen(7)
    await stop(hub, (s, link))


async def test_memory_engine_session_resumes_with_the_same_packet_ids() -> None:
    hub = Hub(MemoryEngine(), SessionLimits(max_inflight=2))
    hub.session_factory = MqttSession
    s, link, _ = connect(hub, "m")
    hub.subscribe(s, Subscription("t", SubscriptionOptions(qos=2)))
    hub.publish(Message("t", b"a", qos=2))
    hub.publish(Message("t", b"b", qos=1))
    (_, a, _), (_, b, _) = link.sent
    assert a is not None and s.received(a)
    hub.disconnect(s, link)
    s, again, present = connect(hub, "m")
    assert present and again.released == [a] and again.sent == [(b"b", b, True)]
