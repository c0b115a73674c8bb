"""Byte bounds in memory: the message log's budget (per topic and total), the session
queues (max_queued_bytes) and the SSE/WebSocket stream buffers (bytes)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from pushwire.core.hub import Hub
from pushwire.core.log import (
    Cursor,
    LogEntry,
    MemoryBudget,
    MessageLog,
    Retention,
    StreamBuffer,
)
from pushwire.core.message import MESSAGE_OVERHEAD, Message, approx_size
from pushwire.core.session import SessionLimits, Subscription
from pushwire.core.subscription import SubscriptionOptions
from pushwire.core.sys_topics import sys_values
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.sqlite import SQLiteEngine

KB = 1024


def msg(topic: str, n: int, fill: bytes = b"x") -> Message:
    return Message(topic, fill * n)


def size_of(topic: str, n: int) -> int:
    return n + len(topic) + MESSAGE_OVERHEAD


def test_approx_size_counts_payload_topic_properties_and_overhead() -> None:
    assert approx_size(Message("ab", b"12345")) == 5 + 2 + MESSAGE_OVERHEAD
    with_props = Message("ab", b"", properties={"user_property": [("k", "vv")]})
    assert approx_size(with_props) == 2 + MESSAGE_OVERHEAD + len("user_property") + 3


def test_memory_engine_topic_budget_evicts_oldest_with_gap_and_counts() -> None:
    per = size_of("t", 10 * KB)
    mlog = MessageLog(MemoryEngine(), Retention(1000, 0), budget=MemoryBudget(3 * per, 0))
    for i in range(5):
        mlog.append(msg("t", 10 * KB, b"%d" % i))
    # bytes, not the count (1000), bound the topic: the newest 3 stay
    assert mlog.topic_memory_bytes("t") == 3 * per == mlog.memory_bytes
    assert mlog.topic_size("t") == 3 and mlog.size == 3
    assert mlog.stats.log_memory_evicted == 2 and mlog.evicted_total == 2
    r = mlog.read("t", 0, 100)
    assert r.gap and [e.id for e in r.entries] == [3, 4, 5] and not r.cold
    assert not mlog.read("t", 2, 100).gap


def test_memory_engine_total_budget_sheds_globally_oldest_first() -> None:
    per = size_of("a/0", 10 * KB)
    mlog = MessageLog(MemoryEngine(), Retention(1000, 0), budget=MemoryBudget(0, 4 * per))
    # a/0 gets ids 1 and 5, the others one each: total room for 4 entries
    for topic in ("a/0", "a/1", "a/2", "a/3", "a/0", "a/4", "a/5"):
        mlog.append(msg(topic, 10 * KB))
    assert mlog.memory_bytes == 4 * per
    # ids 1, 2, 3 (the oldest, across topics) went: a/0 keeps its newer one (id 5)
    assert [mlog.topic_size(t) for t in ("a/0", "a/1", "a/2", "a/3", "a/4", "a/5")] == [
        1,
        0,
        0,
        1,
        1,
        1,
    ]
    r = mlog.read("a/#", 0, 100)
    assert r.gap and [e.id for e in r.entries] == [4, 5, 6, 7]
    assert mlog.stats.log_memory_evicted == 3


def test_count_retention_still_applies_under_the_byte_budget() -> None:
    mlog = MessageLog(MemoryEngine(), Retention(2, 0), budget=MemoryBudget(1 << 20, 1 << 20))
    for _ in range(5):
        mlog.append(msg("t", 100))
    assert mlog.topic_size("t") == 2 and mlog.memory_bytes == 2 * size_of("t", 100)
    assert mlog.stats.log_memory_evicted == 0 and mlog.evicted_total == 3


async def test_sqlite_budget_moves_old_entries_to_disk_and_reads_them_back_without_gap(
    tmp_path: Path,
) -> None:
    engine = SQLiteEngine(tmp_path / "p.db", durable=False)
    await engine.open()
    try:
        per = size_of("s/0", 20 * KB)
        mlog = MessageLog(engine, Retention(1000, 0), budget=MemoryBudget(2 * per, 5 * per))
        await mlog.restore()
        for i in range(30):
            mlog.append(msg(f"s/{i % 3}", 20 * KB, bytes([65 + i])))
        assert mlog.memory_bytes <= 5 * per
        for t in ("s/0", "s/1", "s/2"):
            assert mlog.topic_memory_bytes(t) <= 2 * per and mlog.topic_size(t) == 10
        assert mlog.cold_count == 30 - mlog.memory_bytes // per
        assert mlog.stats.log_spilled == mlog.cold_count and mlog.stats.log_memory_evicted == 0
        # a plain read lists what is on disk; fetch brings it back: every entry, in order
        planned = mlog.read("s/#", 0, 1000)
        assert planned.cold and not planned.gap
        r = await mlog.fetch("s/#", 0, 1000)
        assert not r.gap and [e.id for e in r.entries] == list(range(1, 31))
        assert [e.message.payload[:1] for e in r.entries] == [bytes([65 + i]) for i in range(30)]
        assert mlog.stats.log_disk_reads == mlog.cold_count
        # the memory budget is not spent by reading back
        assert mlog.memory_bytes <= 5 * per
        # paging by bytes: about max_bytes per page, at least one entry, exact resume
        got: list[int] = []
        after = 0
        while True:
            page = await mlog.fetch("s/#", after, 1000, 0, 3 * per)
            assert 1 <= len(page.entries) <= 3 and not page.gap
            got += [e.id for e in page.entries]
            after = page.next_id
            if not page.more:
                break
        assert got == list(range(1, 31))
    finally:
        await engine.close()


async def test_sqlite_cold_entries_trimmed_by_retention_are_a_gap(tmp_path: Path) -> None:
    engine = SQLiteEngine(tmp_path / "p.db", durable=False)
    await engine.open()
    try:
        per = size_of("t", 1 * KB)
        mlog = MessageLog(engine, Retention(4, 0), budget=MemoryBudget(per, 0))
        await mlog.restore()
        for _ in range(6):
            mlog.append(msg("t", KB))
        mlog.sweep()
        r = await mlog.fetch("t", 0, 100)
        assert r.gap and [e.id for e in r.entries] == [3, 4, 5, 6]
        r = await mlog.fetch("t", 2, 100)
        assert not r.gap and [e.id for e in r.entries] == [3, 4, 5, 6]
    finally:
        await engine.close()


async def test_restored_log_is_on_disk_only_until_read(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    engine = SQLiteEngine(db, durable=False)
    await engine.open()
    mlog = MessageLog(engine, Retention(100, 0))
    await mlog.restore()
    for i in range(4):
        mlog.append(msg("t", 50 * KB, b"%d" % i))
    await engine.close()
    engine = SQLiteEngine(db, durable=False)
    await engine.open()
    try:
        again = MessageLog(engine, Retention(100, 0))
        await again.restore()
        assert again.memory_bytes == 0 and again.cold_count == 4 and again.size == 4
        r = await again.fetch("t", 0, 10)
        assert not r.gap and [e.message.payload[:1] for e in r.entries] == [b"0", b"1", b"2", b"3"]
    finally:
        await engine.close()


async def test_stream_buffer_overflows_on_bytes() -> None:
    buf: StreamBuffer[str] = StreamBuffer(1000, max_bytes=100)
    assert buf.push("a", 60) and buf.bytes == 60
    assert not buf.push("b", 50)  # 110 > 100: the stream is closed, not silently cut
    assert buf.closed and buf.reason == "overflow" and buf.bytes == 0
    one: StreamBuffer[str] = StreamBuffer(1000, max_bytes=100)
    assert one.push("big", 500)  # an empty buffer takes one item of any size
    assert one.take() == ["big"] and one.bytes == 0
    assert one.push("c", 90)


def _offline_session_hub(max_queued_bytes: int) -> tuple[Hub, object]:
    hub = Hub(MemoryEngine(), SessionLimits(20, 1000, max_queued_bytes))

    class _NoLink:
        receive_maximum = 65535

    session, _ = hub.connect("slow", False, 4, None, _NoLink())  # type: ignore[arg-type]
    hub.subscribe(session, Subscription("q/#", SubscriptionOptions(qos=1)))
    return hub, session


def test_session_queue_is_bounded_in_bytes_and_overflow_is_counted() -> None:
    per = size_of("q/1", 100 * KB)
    hub, session = _offline_session_hub(5 * per)
    # offline (never attached): everything queues until the byte bound
    for _ in range(20):
        hub.publish(Message("q/1", b"x" * 100 * KB, qos=1))
    assert session.queued_bytes == 5 * per and len(session.queue) == 5  # type: ignore[attr-defined]
    assert hub.stats.queued_bytes == 5 * per
    assert hub.stats.queue_overflow == 15 and hub.stats.queue_bytes_overflow == 15
    # the count bound is untouched by this: small messages still fit by count
    assert hub.stats.queue_overflow - hub.stats.queue_bytes_overflow == 0
    sys_tree = sys_values(hub)  # and $SYS says so
    assert sys_tree["$SYS/broker/messages/dropped/byte bound"] == "15"
    assert sys_tree["$SYS/broker/store/queued/bytes"] == str(5 * per)
    # a session that goes away gives its bytes back
    hub.connect("slow", True, 4, 0, type("L", (), {"receive_maximum": 65535})())
    assert hub.stats.queued_bytes == 0


def test_log_entry_size_is_what_the_budget_counts() -> None:
    m = msg("t", 123)
    assert LogEntry(1, m).size == approx_size(m)


async def test_many_cold_entries_evicted_by_count_keep_ids_and_times_in_step(
    tmp_path: Path,
) -> None:
    """The cold run drops its head lazily and compacts: ids, times and sizes stay aligned."""
    engine = SQLiteEngine(tmp_path / "p.db", durable=False)
    await engine.open()
    try:
        per = size_of("t", 100)
        mlog = MessageLog(engine, Retention(100, 0), budget=MemoryBudget(per, 0))
        await mlog.restore()
        for i in range(300):
            mlog.append(Message("t", b"%03d" % i + b"." * 97, created_at=1000.0 + i))
        assert mlog.topic_size("t") == 100 and mlog.topic_cold("t") == 99
        assert mlog.topic_memory_bytes("t") == per
        mlog.sweep()
        r = await mlog.fetch("t", 0, 1000)
        assert r.gap and [e.id for e in r.entries] == list(range(201, 301))
        assert [e.message.payload[:3] for e in r.entries] == [b"%03d" % i for i in range(200, 300)]
        # the time cursor finds the right cold entry after the compaction
        start = mlog.resolve("t", Cursor("time", time=1000.0 + 250))
        assert start.after == 250
    finally:
        await engine.close()


async def test_store_write_backlog_holds_publishers_until_half_drained(tmp_path: Path) -> None:
    """Payloads waiting for the SQLite writer are bounded: over max_pending_bytes the hub
    holds publishers (Backpressure) and lets them go once the writer caught up."""
    engine = SQLiteEngine(tmp_path / "p.db", durable=False, max_pending_bytes=100 * KB)
    await engine.open()
    hub = Hub(engine)
    mlog = MessageLog(engine, Retention(1000, 0), stats=hub.stats)
    await mlog.restore()
    hub.add_observer(mlog.observer)
    gate = threading.Event()
    # hold the writer still (the engine's test seam), so the backlog can only grow
    held = engine._call(lambda conn: gate.wait(10))
    try:
        for _ in range(3):
            hub.publish(Message("b/t", b"p" * 40 * KB))
        assert engine.pending_bytes == 120 * KB and engine.backlogged
        assert hub.store_held and hub.pressure.active and hub.stats.store_backlogged == 1
        released = asyncio.get_running_loop().create_future()
        hub.pressure.wait(lambda: released.set_result(None))
    finally:
        gate.set()
    await held
    await asyncio.wait_for(released, 10)  # the writer caught up: publishers may go on
    assert (engine.pending_bytes, hub.store_held, hub.pressure.active) == (0, False, False)
    await engine.close()


async def test_a_refused_entry_that_went_to_disk_only_becomes_a_hole(tmp_path: Path) -> None:
    """The memory budget moves an entry to disk only before the store refuses it (a real
    SQLite trigger): it leaves the cold run too (counts stay true), and reads across its id
    report a gap while the entries around it are read back from disk."""
    engine = SQLiteEngine(tmp_path / "p.db")  # durable: sync() waits for the commit
    await engine.open()
    try:
        per = size_of("t", 1 * KB)
        mlog = MessageLog(engine, Retention(1000, 0), budget=MemoryBudget(per, 0))
        await mlog.restore()
        await engine.sync()
        refuse = (
            "CREATE TRIGGER refuse BEFORE INSERT ON log WHEN substr(NEW.payload, 1, 1) = "
            "CAST('B' AS BLOB) BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        await engine._call(lambda conn: conn.execute(refuse))
        for fill in (b"A", b"B", b"C", b"D"):
            mlog.append(msg("t", 1 * KB, fill))
        # only the newest fits in memory: the refused one is on disk only (so it seemed)
        assert mlog.cold_count == 3
        await engine.sync()  # the failure reaches the log before sync returns

        assert mlog.holes_total == 1
        assert engine.pending_bytes == 0  # the refused write's bytes left the backlog too
        assert mlog.size == 3 and mlog.cold_count == 2 and mlog.topic_size("t") == 3
        r = await mlog.fetch("t", 1, 10)
        assert r.gap and [e.message.payload[:1] for e in r.entries] == [b"C", b"D"]
        past = await mlog.fetch("t", 2, 10)
        assert not past.gap and [e.id for e in past.entries] == [3, 4]
        before = await mlog.fetch("t", 0, 1)
        assert not before.gap and [e.message.payload[:1] for e in before.entries] == [b"A"]
    finally:
        await engine.close()
