"""SQLiteEngine: persistence round-trips, shared message bodies, group commit, crash
durability (SIGKILL of a writer process) and the failure path of sync()."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushwire.core.message import Message, next_uid
from pushwire.core.subscription import SubscriptionOptions
from pushwire.engines.base import (
    StoredQueueEntry,
    StoredSession,
    StoredSubscription,
    WriteFailure,
)
from pushwire.engines.serialize import dump_properties, load_properties
from pushwire.engines.sqlite import SCHEMA_VERSION, SQLiteEngine, SQLiteWriteError

MakeEngine = Callable[..., Awaitable[SQLiteEngine]]

PROPS: dict[str, Any] = {
    "payload_format_indicator": 1,
    "content_type": "application/json",
    "response_topic": "replies/ä",
    "correlation_data": b"\x00\xffcorr\x80",
    "user_property": [("k", "v"), ("k", "v2"), ("ünï", "")],
    "subscription_identifier": [1, 268435455],
}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    # nested on purpose: the engine must create the parent directories
    return tmp_path / "data" / "state" / "pushwire.db"


@pytest.fixture
async def make_engine(db_path: Path) -> AsyncIterator[MakeEngine]:
    engines: list[SQLiteEngine] = []

    async def make(path: Path | None = None, **kwargs: Any) -> SQLiteEngine:
        engine = SQLiteEngine(path or db_path, **kwargs)
        await engine.open()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        with contextlib.suppress(SQLiteWriteError):  # tests that expect it assert it
            await engine.close()


def query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the database through a connection of its own (WAL allows it while open)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def execute(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


class Hold:
    """Keep the writer thread busy so that what is queued meanwhile forms one batch."""

    def __init__(self, engine: SQLiteEngine) -> None:
        self.event = threading.Event()
        self.done = engine._call(lambda conn: self.event.wait(30))

    async def release(self) -> None:
        self.event.set()
        await self.done


def msg(topic: str = "t", payload: bytes = b"p", **kwargs: Any) -> Message:
    return Message(topic, payload, **kwargs)


FAIL_QOS2 = (
    "CREATE TRIGGER boom BEFORE INSERT ON inbound_qos2 "
    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
)


# -- round trip -----------------------------------------------------------------------------


async def test_round_trip_every_field(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    m1 = msg(
        "a/b",
        b"\x00body\xff",
        qos=2,
        retain=True,
        properties=dict(PROPS),
        expires_at=4_102_444_800.25,
        created_at=1_700_000_000.125,
        origin="publisher-1",
    )
    m2 = msg("a/c", b"", qos=1)  # no properties, no expiry, no origin
    subs = [
        StoredSubscription(
            "x/+/y",
            SubscriptionOptions(qos=2, no_local=True, retain_as_published=True, retain_handling=2),
            7,
        ),
        StoredSubscription("z/#", SubscriptionOptions(qos=1, retain_handling=1), None),
    ]
    queue = [
        StoredQueueEntry(1, m1, qos=1, retain=False),
        StoredQueueEntry(2, m2, qos=1, retain=True, wire_id=10, state="sent"),
        StoredQueueEntry(5, m1, qos=2, retain=True, wire_id=65535, state="released"),
    ]
    engine.session_put("a", 5, 3600, 1234.5)
    for sub in subs:
        engine.subscription_put("a", sub)
    for entry in queue:
        engine.queue_put("a", entry)
    engine.inbound_qos2_put("a", 9)
    engine.inbound_qos2_put("a", 3)
    engine.session_put("b", 4, None, None)
    r1 = msg("r/1", b"retained", qos=1, retain=True, properties={"correlation_data": b"\x01"})
    r2 = msg("r/2", b"x", origin="o", expires_at=5e9)
    engine.retained_put(r1)
    engine.retained_put(r2)
    await engine.sync()
    await engine.close()

    again = await make_engine()
    sessions = sorted(await again.load_sessions(), key=lambda s: s.client_id)
    assert sessions == [
        StoredSession("a", 5, 3600, 1234.5, subs, queue, [3, 9]),
        StoredSession("b", 4, None, None),
    ]
    retained = await again.load_retained()
    assert retained == [r1, r2]

    # == would not catch every type slip; check the ones JSON would lose, explicitly
    loaded = sessions[0].queue[0].message
    props = loaded.properties
    assert type(props["correlation_data"]) is bytes
    assert type(props["user_property"]) is list
    assert all(type(pair) is tuple for pair in props["user_property"])
    assert type(props["subscription_identifier"]) is list
    assert type(loaded.payload) is bytes and type(loaded.retain) is bool
    opts = sessions[0].subscriptions[0].options
    assert type(opts.no_local) is bool and type(opts.retain_as_published) is bool
    assert type(sessions[0].queue[1].retain) is bool
    # as in memory: entries of the same uid share one Message object
    assert sessions[0].queue[2].message is loaded


async def test_open_is_idempotent_and_versioned(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    engine.session_put("s", 5, None, None)
    await engine.close()
    engine = await make_engine()  # second open of an existing file: schema untouched
    assert [s.client_id for s in await engine.load_sessions()] == ["s"]
    assert await engine._call(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    await engine.close()
    assert query(db_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(db_path, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]

    execute(db_path, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer = SQLiteEngine(db_path)
    with pytest.raises(RuntimeError, match="newer"):
        await newer.open()
    with pytest.raises(RuntimeError):
        newer.session_put("s", 5, None, None)


async def test_synchronous_pragma_follows_durable(make_engine: MakeEngine, tmp_path: Path) -> None:
    def synchronous(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    durable = await make_engine(tmp_path / "d.db")
    relaxed = await make_engine(tmp_path / "r.db", durable=False)
    assert durable.durable is True and relaxed.durable is False
    assert await durable._call(synchronous) == 2  # FULL
    assert await relaxed._call(synchronous) == 1  # NORMAL


async def test_not_durable_still_persists_on_close(make_engine: MakeEngine) -> None:
    engine = await make_engine(durable=False)
    engine.session_put("s", 5, None, None)
    engine.queue_put("s", StoredQueueEntry(1, msg(), 0, False))
    await engine.sync()  # returns without waiting for the commit
    await engine.close()  # but close commits
    again = await make_engine()
    (session,) = await again.load_sessions()
    assert [e.seq for e in session.queue] == [1]


async def test_loading_bumps_uid_floor(make_engine: MakeEngine) -> None:
    high = next_uid() + 1_000_000
    engine = await make_engine()
    engine.session_put("s", 5, None, None)
    engine.queue_put("s", StoredQueueEntry(1, msg(uid=high), 0, False))
    engine.retained_put(msg("r", uid=high + 5))
    await engine.close()
    again = await make_engine()
    await again.load_sessions()
    await again.load_retained()
    assert next_uid() > high + 5


# -- shared bodies, updates, deletes ---------------------------------------------------------


async def test_message_body_stored_once(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    shared = msg("fan/out", b"x" * 1000, qos=1, properties={"user_property": [("a", "b")]})
    for client in ("c1", "c2", "c3"):
        engine.session_put(client, 5, None, None)
        engine.queue_put(client, StoredQueueEntry(1, shared, 1, False))
    await engine.sync()
    assert query(db_path, "SELECT count(*) FROM messages") == [(1,)]
    assert query(db_path, "SELECT count(*) FROM queue WHERE uid = ?", shared.uid) == [(3,)]

    sessions = await engine.load_sessions()
    loaded = [s.queue[0].message for s in sessions]
    assert loaded[0] == shared and loaded[0] is loaded[1] is loaded[2]

    engine.queue_delete("c1", 1)
    engine.session_delete("c2")
    await engine.sync()
    assert query(db_path, "SELECT uid FROM messages") == [(shared.uid,)]  # c3 still has it
    engine.queue_delete("c3", 1)
    await engine.sync()
    assert query(db_path, "SELECT count(*) FROM messages") == [(0,)]


async def test_queue_put_on_existing_seq_replaces(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    old, new = msg("old"), msg("new")
    engine.session_put("s", 5, None, None)
    engine.queue_put("s", StoredQueueEntry(1, old, 0, False))
    engine.queue_put("s", StoredQueueEntry(1, new, 1, True, 4, "sent"))
    await engine.sync()
    # the upsert switched uid: the old body lost its only reference
    assert query(db_path, "SELECT uid FROM messages") == [(new.uid,)]
    (session,) = await engine.load_sessions()
    assert session.queue == [StoredQueueEntry(1, new, 1, True, 4, "sent")]


async def test_queue_update_and_delete(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    engine.session_put("s", 5, None, None)
    for seq in (1, 2, 3):
        engine.queue_put("s", StoredQueueEntry(seq, msg(str(seq)), 2, False))
    engine.queue_update("s", 1, 17, "sent")
    engine.queue_update("s", 2, 18, "sent")
    engine.queue_update("s", 2, 18, "released")
    engine.queue_update("s", 3, None, "queued")
    engine.queue_delete("s", 3)
    engine.queue_delete("s", 3)  # twice: harmless
    engine.queue_update("s", 3, 1, "sent")  # on a deleted entry: harmless
    await engine.sync()
    (session,) = await engine.load_sessions()
    assert [(e.seq, e.wire_id, e.state) for e in session.queue] == [
        (1, 17, "sent"),
        (2, 18, "released"),
    ]


async def test_session_put_keeps_children_and_delete_removes_all(
    make_engine: MakeEngine, db_path: Path
) -> None:
    engine = await make_engine()
    for client in ("gone", "kept"):
        engine.session_put(client, 5, 60, None)
        engine.subscription_put(client, StoredSubscription("a/#", SubscriptionOptions(qos=1)))
        engine.queue_put(client, StoredQueueEntry(1, msg(client), 1, False))
        engine.inbound_qos2_put(client, 5)
    engine.session_put("kept", 4, None, 99.0)  # update: children stay
    engine.subscription_put("kept", StoredSubscription("a/#", SubscriptionOptions(qos=2), 3))
    engine.subscription_put("kept", StoredSubscription("b", SubscriptionOptions()))
    engine.subscription_delete("kept", "b")
    engine.subscription_delete("kept", "nope")
    engine.inbound_qos2_put("kept", 5)  # duplicate: harmless
    engine.inbound_qos2_put("kept", 6)
    engine.inbound_qos2_delete("kept", 6)
    engine.session_delete("gone")
    engine.session_delete("gone")
    engine.session_delete("never-existed")
    await engine.sync()

    (kept,) = await engine.load_sessions()
    assert kept.client_id == "kept"
    assert (kept.protocol_level, kept.expiry_interval, kept.disconnected_at) == (4, None, 99.0)
    assert kept.subscriptions == [StoredSubscription("a/#", SubscriptionOptions(qos=2), 3)]
    assert [e.message.topic for e in kept.queue] == ["kept"]
    assert kept.inbound_qos2 == [5]
    for table in ("sessions", "subscriptions", "queue", "inbound_qos2"):
        assert query(db_path, f"SELECT count(*) FROM {table} WHERE client_id = 'gone'") == [(0,)]
    assert query(db_path, "SELECT count(*) FROM messages") == [(1,)]


async def test_retained_replace_and_delete(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    first, second, other = msg("r", b"1"), msg("r", b"2", properties=PROPS), msg("s", b"3")
    engine.retained_put(first)
    engine.retained_put(second)  # replaces first: one per topic
    engine.retained_put(other)
    engine.retained_delete("s")
    engine.retained_delete("s")
    engine.retained_delete("never")
    await engine.sync()
    assert await engine.load_retained() == [second]


async def test_invalid_state_is_refused_at_the_call(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    bogus: Any = "bogus"  # what a caller ignoring the QueueState literal could pass
    with pytest.raises(ValueError):
        engine.queue_put("s", StoredQueueEntry(1, msg(), 0, False, state=bogus))
    with pytest.raises(ValueError):
        engine.queue_update("s", 1, None, bogus)
    with pytest.raises(TypeError):
        engine.queue_put("s", StoredQueueEntry(1, msg(properties={"x": {1, 2}}), 0, False))
    await engine.sync()
    assert engine.failed_batches == 0


# -- group commit ---------------------------------------------------------------------------


async def test_group_commit_same_tick(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    engine.session_put("s", 5, None, None)
    for seq in range(500):
        engine.queue_put("s", StoredQueueEntry(seq, msg(payload=b"%d" % seq), 1, False))
    await engine.sync()
    # the writer starts on the first op while the rest is still being queued, so a few
    # batches are normal; one per write would be 501
    assert 1 <= engine.commits < 50, engine.commits
    assert query(db_path, "SELECT count(*), min(seq), max(seq) FROM queue") == [(500, 0, 499)]
    assert query(db_path, "SELECT count(*) FROM messages") == [(500,)]


async def test_group_commit_batches_exactly(make_engine: MakeEngine) -> None:
    engine = await make_engine(batch_max=100)
    hold = Hold(engine)
    for seq in range(500):
        engine.queue_put("s", StoredQueueEntry(seq, msg(), 1, False))
    waiter = asyncio.create_task(engine.sync())
    await asyncio.sleep(0)  # the task queues its marker
    await hold.release()
    await waiter
    assert engine.commits == 5  # 501 items in batches of 100; the lone marker needs none


async def test_many_syncs_share_one_commit(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    engine.session_put("s", 5, None, None)
    await engine.sync()
    before = engine.commits
    hold = Hold(engine)

    async def publish(seq: int) -> None:
        engine.queue_put("s", StoredQueueEntry(seq, msg(), 1, False))
        await engine.sync()

    tasks = [asyncio.create_task(publish(seq)) for seq in range(200)]
    await asyncio.sleep(0)
    await hold.release()
    await asyncio.gather(*tasks)
    assert engine.commits == before + 1
    # nothing written since: coalesced onto the settled marker, no new commit point
    await asyncio.gather(*(engine.sync() for _ in range(10)))
    assert engine.commits == before + 1
    (session,) = await engine.load_sessions()
    assert len(session.queue) == 200


# -- failures -------------------------------------------------------------------------------


async def test_one_failing_write_fails_alone_and_the_batch_commits(
    make_engine: MakeEngine, db_path: Path
) -> None:
    engine = await make_engine()
    reports: list[WriteFailure] = []
    engine.add_failure_listener(reports.append)
    execute(db_path, FAIL_QOS2)  # a real sqlite error, raised from inside the batch
    mark = engine.failure_mark()
    hold = Hold(engine)
    engine.session_put("s", 5, None, None)
    engine.session_put("other", 5, None, None)
    engine.inbound_qos2_put("s", 1)
    retained = msg("r")
    engine.retained_put(retained)
    waiter = asyncio.create_task(engine.sync())
    await asyncio.sleep(0)
    await hold.release()
    await waiter  # the failed write belongs to session "s": reported, not raised
    assert engine.failed_batches == 1 and engine.failed_writes == 1
    assert [(r.op, r.client_id, r.message) for r in reports] == [("inbound_qos2_put", "s", None)]
    assert not engine.write_failed(retained)
    assert engine.session_failed_since("s", mark)
    assert not engine.session_failed_since("other", mark)
    assert not engine.session_failed_since("s", engine.failure_mark())
    # only the failing write was dropped; the rest of the batch is on disk
    sessions = {s.client_id: s for s in await engine.load_sessions()}
    assert sorted(sessions) == ["other", "s"] and sessions["s"].inbound_qos2 == []
    assert [m.topic for m in await engine.load_retained()] == ["r"]

    # the writer thread lives on
    execute(db_path, "DROP TRIGGER boom")
    engine.inbound_qos2_put("s", 1)
    await engine.sync()
    sessions = {s.client_id: s for s in await engine.load_sessions()}
    assert sessions["s"].inbound_qos2 == [1]


def logged(topic: str, log_id: int, payload: bytes = b"p") -> Message:
    m = msg(topic, payload)
    m.log_id = log_id
    return m


async def test_a_message_sqlite_rejects_fails_alone_and_leaves_a_hole(
    make_engine: MakeEngine, db_path: Path
) -> None:
    engine = await make_engine()
    await engine.load_log()
    engine.log_reset("E")
    await engine.sync()
    reports: list[WriteFailure] = []
    engine.add_failure_listener(reports.append)
    hold = Hold(engine)
    good = [logged("chat/a", 1), logged("chat/b", 3)]
    # a value SQLite cannot bind (a lone surrogate has no UTF-8 form), in the middle
    bad = logged("chat/\ud800", 2)
    engine.log_append(good[0])
    engine.log_append(bad)
    engine.log_append(good[1])
    engine.queue_put("s", StoredQueueEntry(1, bad, 0, False))  # the same message, elsewhere
    waiter = asyncio.create_task(engine.sync())
    await asyncio.sleep(0)
    await hold.release()
    await waiter
    assert engine.write_failed(bad)
    assert not any(engine.write_failed(m) for m in good)
    assert sorted((r.op, r.message is bad) for r in reports) == [
        ("log_append", True),
        ("queue_put", True),
    ]
    stored = await engine.load_log()
    assert [e.id for e in stored.entries] == [1, 3]
    assert stored.holes == {"chat/\ud800": [2]}
    assert stored.last_id == 3
    # a trim past the hole forgets it (the eviction mark covers it)
    engine.log_trim("chat/\ud800", 2, 0.0)
    await engine.sync()
    assert (await engine.load_log()).holes == {}


async def test_write_failed_is_known_before_sync_returns_under_concurrency(
    make_engine: MakeEngine, db_path: Path
) -> None:
    """Many publishers, a few poison ones, sharing commits: every sync returns, and each
    publisher learns exactly whether its own message was stored."""
    engine = await make_engine()
    await engine.load_log()
    engine.log_reset("E")
    execute(
        db_path,
        "CREATE TRIGGER boom BEFORE INSERT ON log WHEN NEW.topic LIKE 'poison/%' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )

    async def publish(i: int) -> tuple[Message, bool]:
        m = logged("poison/x" if i % 7 == 0 else f"ok/{i}", i + 1)
        engine.log_append(m)
        await asyncio.sleep(0)
        await engine.sync()
        return m, engine.write_failed(m)

    results = await asyncio.gather(*(publish(i) for i in range(200)))
    for m, failed in results:
        assert failed == m.topic.startswith("poison/"), m.topic
    stored = await engine.load_log()
    assert {e.id for e in stored.entries} == {m.log_id for m, failed in results if not failed}
    # (0 stands for a missing id: no hole has it)
    assert sorted(stored.holes["poison/x"]) == sorted(m.log_id or 0 for m, f in results if f)


FAIL_CONSUMERS = (
    "CREATE TRIGGER boom BEFORE INSERT ON log_consumers_by_owner "
    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
)


async def test_a_failed_write_of_no_message_raises_in_the_next_sync_once(
    make_engine: MakeEngine, db_path: Path
) -> None:
    engine = await make_engine()
    await engine.load_log()
    execute(db_path, FAIL_CONSUMERS)
    hold = Hold(engine)
    engine.log_consumer_put("user:a", "c", "#", 1, 0.0)
    await hold.release()
    await engine._call(lambda conn: None)  # the failing batch has been applied, no waiter
    assert engine.failed_batches == 1
    with pytest.raises(SQLiteWriteError, match="injected failure") as info:
        await engine.sync()
    assert isinstance(info.value.__cause__, sqlite3.Error)
    await engine.sync()  # reported once; nothing failed since
    engine.session_put("s", 5, None, None)
    await engine.sync()
    assert engine.failed_batches == 1


async def test_close_reports_failed_final_commit(make_engine: MakeEngine, db_path: Path) -> None:
    engine = await make_engine()
    await engine.load_log()
    execute(db_path, FAIL_CONSUMERS)
    engine.log_consumer_put("user:a", "c", "#", 1, 0.0)
    with pytest.raises(SQLiteWriteError):
        await engine.close()
    assert engine._thread is None
    with pytest.raises(RuntimeError):
        engine.session_put("s", 5, None, None)


async def test_writes_outside_open_raise(db_path: Path) -> None:
    engine = SQLiteEngine(db_path)
    with pytest.raises(RuntimeError):
        engine.session_put("s", 5, None, None)
    with pytest.raises(RuntimeError):
        await engine.sync()
    await engine.open()
    engine.session_put("s", 5, None, None)
    await engine.close()
    await engine.close()  # twice: harmless
    with pytest.raises(RuntimeError):
        engine.session_put("s", 5, None, None)
    with pytest.raises(RuntimeError):
        engine.queue_delete("s", 1)
    with pytest.raises(RuntimeError):
        await engine.sync()
    with pytest.raises(RuntimeError):
        await engine.load_sessions()
    with pytest.raises(RuntimeError):
        await engine.open()


# -- crash durability -----------------------------------------------------------------------

CRASH_SCRIPT = """
import asyncio, sys
from pathlib import Path
from pushwire.core.message import Message
from pushwire.engines.base import StoredQueueEntry
from pushwire.engines.sqlite import SQLiteEngine

def entry(seq):
    message = Message("crash/t", b"%d" % seq, qos=1,
                      properties={"correlation_data": seq.to_bytes(4, "big")})
    return StoredQueueEntry(seq, message, 1, False)

async def main():
    engine = SQLiteEngine(Path(sys.argv[1]))
    await engine.open()
    n = int(sys.argv[2])
    engine.session_put("crash", 5, None, None)
    # all in one tick: the writer has a backlog when sync() is called, so a sync() that
    # returned before the commit would be caught by the kill below
    for seq in range(n):
        engine.queue_put("crash", entry(seq))
    await engine.sync()
    print("synced", flush=True)
    seq = n
    while True:  # keep writing, never syncing, so the kill lands mid-activity
        engine.queue_put("crash", entry(seq))
        seq += 1
        if seq % 100 == 0:
            await asyncio.sleep(0.001)

asyncio.run(main())
"""


async def test_synced_writes_survive_sigkill(make_engine: MakeEngine, db_path: Path) -> None:
    n = 2000
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH_SCRIPT,
        str(db_path),
        str(n),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line != b"synced\n":
            assert proc.stderr is not None
            await proc.wait()
            pytest.fail(f"child did not sync: {line!r}\n{(await proc.stderr.read()).decode()}")
        # at once: the child is still queueing unsynced writes, and any delay here would
        # give a non-waiting sync() time to commit anyway
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert query(db_path, "PRAGMA integrity_check") == [("ok",)]
    engine = await make_engine()
    (session,) = await engine.load_sessions()
    seqs = [e.seq for e in session.queue]
    # batches commit atomically and in order: what survives is a prefix of the writes,
    # at least everything acknowledged by sync()
    assert len(seqs) >= n
    assert seqs == list(range(len(seqs)))
    for e in session.queue:
        assert e.message.payload == b"%d" % e.seq
        assert e.message.properties == {"correlation_data": e.seq.to_bytes(4, "big")}


# -- properties serializer ------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equality that also tells tuple from list, bool from int, bytes from str."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=16,
)


@given(st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_properties_round_trip_exact_types(props: dict[str, Any]) -> None:
    text = dump_properties(props)
    assert same(load_properties(text), props)
    assert same(load_properties(text.encode()), props)


def test_properties_mqtt5_and_tag_lookalikes() -> None:
    props = dict(PROPS)
    props["$b"] = {"$b": "AA==", "$t": ["not", "a", "tuple"]}  # user data that looks tagged
    assert same(load_properties(dump_properties(props)), props)
    assert dump_properties({}) == "{}" and load_properties("{}") == {}


@pytest.mark.parametrize(
    "props", [{"x": {1, 2}}, {"x": object()}, {"x": {1: "int key"}}, {1: "int name"}]
)
def test_properties_refuse_lossy_values(props: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        dump_properties(props)


def test_properties_refuse_malformed_input() -> None:
    with pytest.raises(ValueError):
        load_properties('{"x": {"$zz": 1}}')
    with pytest.raises(ValueError):
        load_properties("[1, 2]")
