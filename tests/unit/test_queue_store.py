"""A persistent session's queue on the SQLite store: a window in memory, the rest on disk,
read back in order as it drains; bounds, overflow bits and the owner across a restart.
Driven through the hub with a recording link (no sockets) on a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.core.session import REFUSED, TAKEN, Delivery, Session, SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.sqlite import SQLiteEngine
from pushwire.mqtt.session import MqttSession


class RecordingLink:
    """A connection that takes everything and records (topic, payload, qos, retain,
    packet id, dup) per PUBLISH."""

    receive_maximum = 65535

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool, int | None, bool]] = []
        self.taken_over = False

    def writable(self) -> bool:
        return True

    def send_message(self, d: Delivery, dup: bool, wire_cache: dict[Any, Any] | None) -> None:
        self.sent.append((d.message.topic, d.message.payload, d.qos, d.retain, d.wire_id, dup))

    def send_window(self, deliveries: list[Delivery]) -> None:
        for d in deliveries:
            self.send_message(d, False, None)

    def send_release(self, packet_id: int) -> None:
        return None

    def close_taken_over(self) -> None:
        self.taken_over = True


def sub(flt: str, qos: int) -> Subscription:
    return Subscription(flt, SubscriptionOptions(qos=qos))


def limits(**kw: int) -> SessionLimits:
    base = SessionLimits(max_inflight=5, queue_memory_window=10)
    for key, value in kw.items():
        setattr(base, key, value)
    return base


async def open_hub(path: Path, lim: SessionLimits) -> Hub:
    engine = SQLiteEngine(path, durable=False)
    await engine.open()
    hub = Hub(engine, lim)
    hub.session_factory = MqttSession  # packet ids and PUBACK, as the MQTT listener sets
    await hub.restore()
    return hub


async def until(check: Callable[[], bool], rounds: int = 2000) -> None:
    """Let the loop run (the store's reads resolve on it) until `check` holds."""
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def offline_session(hub: Hub, client_id: str = "phone") -> Session:
    link = RecordingLink()
    s, _ = hub.connect(client_id, True, 5, None, link, owner="alice")
    s.attach(link)
    hub.subscribe(s, sub("t", qos=1))
    hub.disconnect(s, link)
    return s


async def drain(hub: Hub, client_id: str, expect: int) -> list[bytes]:
    """Reconnect and acknowledge everything as it comes; the payloads in delivery order."""
    link = RecordingLink()
    s, present = hub.connect(client_id, False, 5, None, link, owner="alice")
    assert present and isinstance(s, MqttSession)
    s.attach(link)
    acked = 0

    def ack_all() -> bool:
        nonlocal acked
        while acked < len(link.sent):
            pid = link.sent[acked][4]
            assert pid is not None
            s.acknowledge(pid)
            acked += 1
        return acked >= expect

    await until(ack_all)
    return [p for _, p, *_ in link.sent]


async def test_queue_beyond_the_window_waits_in_the_store_and_comes_back_in_order(
    tmp_path: Path,
) -> None:
    hub = await open_hub(tmp_path / "q.db", limits())
    s = offline_session(hub)
    for i in range(100):
        hub.publish(Message("t", b"%03d" % i, qos=1))
    assert len(s.queue) == 10 and s.stored_count == 90  # memory holds the window only
    assert s.waiting == 100
    got = await drain(hub, "phone", 100)
    assert got == [b"%03d" % i for i in range(100)]
    assert s.stored_count == 0 and not s.queue and not s.inflight
    await hub.engine.close()


async def test_messages_offered_while_a_read_is_pending_stay_behind_it(tmp_path: Path) -> None:
    hub = await open_hub(tmp_path / "q.db", limits())
    offline_session(hub)
    for i in range(30):
        hub.publish(Message("t", b"%03d" % i, qos=1))
    link = RecordingLink()
    s2, _ = hub.connect("phone", False, 5, None, link, owner="alice")
    assert isinstance(s2, MqttSession)
    s2.attach(link)  # sends 5, queue 5 left: a read from the store starts
    assert len(link.sent) == 5 and len(s2.queue) == 5 and s2.stored_count == 20
    for i in range(30, 40):  # before the read resolves: into the store, behind the rest
        hub.publish(Message("t", b"%03d" % i, qos=1))
    assert s2.stored_count == 30 and len(s2.queue) == 5
    acked = 0

    def ack_all() -> bool:
        nonlocal acked
        while acked < len(link.sent):
            pid = link.sent[acked][4]
            assert pid is not None
            s2.acknowledge(pid)
            acked += 1
        return acked >= 40

    await until(ack_all)
    assert [p for _, p, *_ in link.sent] == [b"%03d" % i for i in range(40)]
    await hub.engine.close()


async def test_restart_loads_the_window_and_leaves_the_rest_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    hub = await open_hub(path, limits())
    offline_session(hub)
    for i in range(50):
        hub.publish(Message("t", b"%03d" % i, qos=1))
    await hub.engine.close()

    hub = await open_hub(path, limits())
    s = hub.sessions["phone"]
    assert len(s.queue) == 10 and s.stored_count == 40 and s.stored_bytes > 0
    assert s.owner == "alice"  # who owns it survives the restart
    hub.publish(Message("t", b"050", qos=1))  # behind the stored ones
    got = await drain(hub, "phone", 51)
    assert got == [b"%03d" % i for i in range(51)]
    await hub.engine.close()


async def test_bounds_by_count_and_bytes_refuse_and_count_per_session(tmp_path: Path) -> None:
    hub = await open_hub(tmp_path / "q.db", limits(max_persistent_queued_messages=20))
    s = offline_session(hub)
    results = [s.offer(Message("t", b"x", qos=1), 1, False, [], None) for _ in range(25)]
    assert all(r & TAKEN for r in results[:20])
    assert results[20:] == [REFUSED] * 5
    assert s.overflowed == 5 and hub.stats.queue_overflow == 5
    # every matching session refused it: the hub says so (MQTT 5: 0x97)
    hub.publish(Message("t", b"y", qos=1))
    refused_by_all = hub.quota_exceeded  # a local: mypy would keep True for the attribute
    assert refused_by_all
    hub.publish(Message("elsewhere", b"y", qos=1))
    assert not hub.quota_exceeded
    await hub.engine.close()

    hub = await open_hub(
        tmp_path / "b.db", limits(max_persistent_queued_bytes=10_000, queue_memory_window=2)
    )
    s = offline_session(hub)
    taken = sum(
        bool(s.offer(Message("t", b"z" * 1000, qos=1), 1, False, [], None) & TAKEN)
        for _ in range(20)
    )
    assert 5 <= taken < 20 and hub.stats.queue_bytes_overflow == 20 - taken
    await hub.engine.close()


async def test_takeover_making_a_session_persistent_journals_its_subscriptions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    hub = await open_hub(path, limits())
    a = RecordingLink()
    s, _ = hub.connect("dev", True, 4, 0, a, owner="alice")  # clean: nothing journaled
    s.attach(a)
    hub.subscribe(s, sub("t", qos=1))
    b = RecordingLink()
    s2, present = hub.connect("dev", False, 4, None, b, owner="alice")
    assert present and s2 is s and a.taken_over
    await hub.engine.close()

    hub = await open_hub(path, limits())
    assert list(hub.sessions["dev"].subscriptions) == ["t"]
    await hub.engine.close()


async def test_session_whose_expiry_drops_to_0_at_disconnect_leaves_the_store(
    tmp_path: Path,
) -> None:
    """MQTT 5 DISCONNECT with session expiry 0 ends a persistent session with the
    connection: its stored row goes too, or a restart would bring it back."""
    path = tmp_path / "q.db"
    hub = await open_hub(path, limits())
    link = RecordingLink()
    s, _ = hub.connect("gone", True, 5, 3600, link, owner="alice")
    s.attach(link)
    hub.subscribe(s, sub("t", qos=1))
    s.expiry_interval = 0  # what the protocol does for DISCONNECT's session expiry 0
    hub.disconnect(s, link)
    assert "gone" not in hub.sessions
    await hub.engine.close()

    hub = await open_hub(path, limits())
    assert "gone" not in hub.sessions
    await hub.engine.close()


async def test_store_from_before_owners_gets_the_column(tmp_path: Path) -> None:
    """A store written before sessions recorded their owner opens; its sessions have no
    owner (the next connection takes them, as before) and new rows record one."""
    path = tmp_path / "old.db"
    engine = SQLiteEngine(path, durable=False)
    await engine.open()
    engine.session_put("old", 4, None, None)
    await engine.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("ALTER TABLE sessions DROP COLUMN owner")
        conn.commit()

    engine = SQLiteEngine(path, durable=False)
    await engine.open()
    (old,) = await engine.load_sessions()
    assert old.client_id == "old" and old.owner is None
    engine.session_put("new", 4, None, None, "bob")
    owners = {s.client_id: s.owner for s in await engine.load_sessions()}
    assert owners == {"old": None, "new": "bob"}
    await engine.close()
