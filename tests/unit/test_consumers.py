"""Named consumers per identity (core/consumers.py): limits, idle expiry, and the SQLite
store, including stores written before consumers had owners."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from pushwire.core.consumers import LEGACY_OWNER, ConsumerLimit, Consumers
from pushwire.core.log import MessageLog, Retention
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.sqlite import SQLiteEngine


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_owners_have_separate_consumers_of_one_name() -> None:
    consumers = Consumers(MemoryEngine())
    a = consumers.open("user:a", "w", "t/#", 5)
    b = consumers.open("user:b", "w", "t/#", 9)
    assert a is not b
    consumers.ack(b, 12)
    assert consumers.get("user:a", "w", "t/#") is a and a.acked == 5


def test_limit_per_owner_counts_only_that_owner_and_expires_idle_ones_first() -> None:
    clock = Clock()
    consumers = Consumers(MemoryEngine(), max_per_owner=2, idle_timeout=60, clock=clock)
    c1 = consumers.open("user:a", "c1", "t", 0)
    c2 = consumers.open("user:a", "c2", "t", 0)
    consumers.attach(c1)
    consumers.attach(c2)
    with pytest.raises(ConsumerLimit):
        consumers.open("user:a", "c3", "t", 0)
    consumers.open("user:b", "c3", "t", 0)  # another owner has room of its own
    consumers.detach(c2)
    clock.now += 59
    with pytest.raises(ConsumerLimit):
        consumers.open("user:a", "c3", "t", 0)
    clock.now += 1  # c2 idle for 60 s: it makes room; c1 is attached and stays
    consumers.open("user:a", "c3", "t", 0)
    assert [c.name for c in consumers.owned_by("user:a")] == ["c1", "c3"]
    assert c2.deleted


def test_expire_forgets_idle_detached_consumers_only() -> None:
    clock = Clock()
    consumers = Consumers(MemoryEngine(), idle_timeout=10, clock=clock)
    held = consumers.open("o", "held", "t", 0)
    consumers.attach(held)
    idle = consumers.open("o", "idle", "t", 0)
    clock.now += 9
    consumers.ack(idle, 3)  # use resets the idle clock
    clock.now += 9
    assert consumers.expire() == 0
    clock.now += 1
    assert consumers.expire() == 1
    assert [c.name for c in consumers.owned_by()] == ["held"]
    never = Consumers(MemoryEngine(), idle_timeout=0, clock=clock)
    never.open("o", "x", "t", 0)
    clock.now += 1e9
    assert never.expire() == 0 and len(never) == 1


async def test_sqlite_store_keeps_owners_and_forgets_deleted(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    engine = SQLiteEngine(db)
    await engine.open()
    mlog = MessageLog(engine, Retention(100, 0))
    await mlog.restore()
    mlog.append(Message("t", b"x"))
    c = mlog.consumers.open("user:a", "w", "t", 0)
    mlog.consumers.ack(c, 1)
    mlog.consumers.open("user:b", "w", "t", 0)
    mlog.consumers.open("user:b", "gone", "t", 0)
    assert [g.name for g in mlog.consumers.delete("user:b", "gone")] == ["gone"]
    await engine.close()

    engine = SQLiteEngine(db)
    await engine.open()
    again = MessageLog(engine, Retention(100, 0))
    await again.restore()
    listed = [(x.owner, x.name, x.acked) for x in again.consumers.owned_by()]
    assert listed == [("user:a", "w", 1), ("user:b", "w", 0)]
    await engine.close()


async def test_sqlite_consumers_from_before_owners_are_migrated_and_claimed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "p.db"
    engine = SQLiteEngine(db)
    await engine.open()
    mlog = MessageLog(engine, Retention(100, 0))
    await mlog.restore()
    for i in range(4):
        mlog.append(Message("t", b"%d" % i))
    await engine.close()
    # the consumer table as the previous release wrote it (keyed by name and filter only)
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        DROP TABLE log_consumers_by_owner;
        CREATE TABLE log_consumers (
            name TEXT NOT NULL, filter TEXT NOT NULL, acked INTEGER NOT NULL,
            PRIMARY KEY (name, filter)) WITHOUT ROWID;
        INSERT INTO log_consumers VALUES ('w', 't', 2), ('idle', 't', 1);
        """
    )
    conn.close()

    engine = SQLiteEngine(db)
    await engine.open()
    again = MessageLog(engine, Retention(100, 0))
    await again.restore()
    assert [(c.owner, c.name, c.acked) for c in again.consumers.owned_by()] == [
        (LEGACY_OWNER, "idle", 1),
        (LEGACY_OWNER, "w", 2),
    ]
    # the first identity to use it takes it over, with its position; nobody else gets it
    claimed = again.consumers.get("user:alice", "w", "t")
    assert claimed is not None and claimed.acked == 2 and claimed.owner == "user:alice"
    assert again.consumers.get("user:bob", "w", "t") is None
    await engine.close()

    engine = SQLiteEngine(db)
    await engine.open()
    third = MessageLog(engine, Retention(100, 0))
    await third.restore()
    assert [(c.owner, c.name, c.acked) for c in third.consumers.owned_by()] == [
        (LEGACY_OWNER, "idle", 1),
        ("user:alice", "w", 2),
    ]
    with contextlib.closing(sqlite3.connect(db)) as check:
        tables = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "log_consumers" not in tables
    await engine.close()
