"""The message log (core/log.py): ids, epochs, cursors, retention, gaps, listeners, stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushwire.core.hub import Hub
from pushwire.core.log import (
    ALL,
    LATEST,
    Cursor,
    LogEntry,
    MessageLog,
    Retention,
    RetentionRule,
    StreamBuffer,
)
from pushwire.core.message import Message
from pushwire.core.topics import matches
from pushwire.engines.memory import MemoryEngine
from pushwire.engines.sqlite import SQLiteEngine


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_log(
    max_messages: int = 1000,
    max_age: float = 0,
    rules: list[RetentionRule] | None = None,
    clock: Clock | None = None,
) -> tuple[MessageLog, Clock]:
    clock = clock or Clock()
    return MessageLog(MemoryEngine(), Retention(max_messages, max_age), rules, clock), clock


def pub(mlog: MessageLog, clock: Clock, topic: str, payload: bytes = b"x", **kw: object) -> int:
    entry = mlog.append(Message(topic, payload, created_at=clock.now, **kw))  # type: ignore[arg-type]
    assert entry is not None
    return entry.id


def ids(mlog: MessageLog, flt: str, after: int = 0, limit: int = 1000) -> list[int]:
    return [e.id for e in mlog.read(flt, after, limit).entries]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []
        self.closed = False

    def notify(self, entry: LogEntry) -> None:
        self.seen.append(entry.id)

    def close(self) -> None:
        self.closed = True


def test_ids_increase_across_topics_and_set_log_id() -> None:
    mlog, clock = make_log()
    m = Message("a/b", b"1", created_at=clock.now)
    entry = mlog.append(m)
    assert entry is not None and entry.id == 1 and m.log_id == 1
    assert pub(mlog, clock, "c") == 2
    assert pub(mlog, clock, "a/b") == 3
    assert mlog.last_id == 3
    assert ids(mlog, "a/b") == [1, 3]
    assert ids(mlog, "#") == [1, 2, 3]


def test_dollar_topics_are_not_logged() -> None:
    mlog, _ = make_log()
    m = Message("$SYS/broker/uptime", b"1")
    assert mlog.append(m) is None
    assert m.log_id is None
    assert mlog.last_id == 0
    assert ids(mlog, "$SYS/#") == []


def test_wildcard_read_merges_topics_in_id_order_with_limit() -> None:
    mlog, clock = make_log()
    for i in range(10):
        pub(mlog, clock, f"s/{i % 3}/x")
    pub(mlog, clock, "other")
    assert ids(mlog, "s/+/x") == list(range(1, 11))
    r = mlog.read("s/#", 2, 4)
    assert [e.id for e in r.entries] == [3, 4, 5, 6]
    assert r.more and r.next_id == 6 and not r.gap
    r = mlog.read("s/#", 6, 100)
    assert [e.id for e in r.entries] == [7, 8, 9, 10]
    assert not r.more
    # nothing more for this filter: the next cursor is the log's last id (11, "other")
    assert r.next_id == 11


def test_topic_tree_matching_follows_mqtt_rules() -> None:
    mlog, clock = make_log()
    topics = ["a", "a/b", "a/b/c", "b/b", "a/c"]
    for t in topics:
        pub(mlog, clock, t)
    for flt in ["#", "a/#", "a/+", "+/b", "a/+/c", "+", "a/b/#", "x/#", "+/+/+"]:
        expected = [i + 1 for i, t in enumerate(topics) if matches(flt, t)]
        assert ids(mlog, flt) == expected, flt


def test_count_retention_evicts_and_reports_gap_only_to_cursors_behind() -> None:
    mlog, clock = make_log(max_messages=3)
    for _ in range(5):
        pub(mlog, clock, "t")
    assert mlog.topic_size("t") == 3
    r = mlog.read("t", 1, 100)
    assert r.gap and [e.id for e in r.entries] == [3, 4, 5]
    r = mlog.read("t", 2, 100)  # had 1..2: nothing after 2 is gone
    assert not r.gap and [e.id for e in r.entries] == [3, 4, 5]
    r = mlog.query("t", ALL, 100)  # "all" means whatever is kept: never a gap
    assert not r.gap and [e.id for e in r.entries] == [3, 4, 5]
    # ... not even when paging through it with the same floor
    start = mlog.resolve("t", ALL)
    r = mlog.read("t", start.after, 1, start.floor)
    assert not r.gap and [e.id for e in r.entries] == [3]
    r = mlog.read("t", r.next_id, 5, start.floor)
    assert not r.gap and [e.id for e in r.entries] == [4, 5]


def test_gap_on_wildcard_when_any_matching_topic_evicted() -> None:
    mlog, clock = make_log(rules=[RetentionRule("small/#", max_messages=1)])
    pub(mlog, clock, "big/a")  # 1
    pub(mlog, clock, "small/a")  # 2
    pub(mlog, clock, "small/a")  # 3, evicts 2
    assert mlog.read("big/#", 0, 10).gap is False
    assert mlog.read("#", 1, 10).gap is True
    assert mlog.read("#", 2, 10).gap is False


def test_age_retention_and_time_cursor() -> None:
    mlog, clock = make_log(max_age=60)
    pub(mlog, clock, "t")  # 1 at t0
    clock.now += 30
    pub(mlog, clock, "t")  # 2 at t0+30
    clock.now += 40  # message 1 is now 70 s old
    r = mlog.read("t", 0, 10)
    assert r.gap and [e.id for e in r.entries] == [2]
    # a time cursor after the evicted message: no gap
    assert mlog.query("t", Cursor("time", time=clock.now - 45), 10).gap is False
    assert [e.id for e in mlog.query("t", Cursor("time", time=clock.now - 45), 10).entries] == [2]
    # a time cursor that reaches back before the eviction: gap
    assert mlog.query("t", Cursor("time", time=clock.now - 100), 10).gap is True


def test_sweep_evicts_by_age_without_new_appends() -> None:
    mlog, clock = make_log(max_age=10)
    pub(mlog, clock, "t")
    assert mlog.size == 1
    clock.now += 11
    mlog.sweep()
    assert mlog.size == 0 and mlog.evicted_total == 1


def test_per_pattern_rules_first_match_wins() -> None:
    rules = [
        RetentionRule("chat/vip/#", max_messages=5),
        RetentionRule("chat/#", max_messages=2, max_age=30),
    ]
    mlog, _ = make_log(max_messages=100, max_age=3600, rules=rules)
    assert mlog.retention_for("chat/vip/x") == Retention(5, 3600)
    assert mlog.retention_for("chat/x") == Retention(2, 30)
    assert mlog.retention_for("news") == Retention(100, 3600)


def test_zero_retention_topic_keeps_nothing_but_wakes_listeners() -> None:
    mlog, clock = make_log(rules=[RetentionRule("live/#", max_messages=0)])
    rec = Recorder()
    mlog.listen("live/#", rec)
    pub(mlog, clock, "live/a")
    assert rec.seen == [1]
    assert mlog.size == 0
    assert mlog.read("live/#", 0, 10).gap is True


def test_epoch_mismatch_and_cursor_ahead_are_gaps_that_replay_everything() -> None:
    mlog, clock = make_log()
    pub(mlog, clock, "t")
    pub(mlog, clock, "t")
    r = mlog.query("t", Cursor.after(1, "someotherepoch"), 10)
    assert r.gap and [e.id for e in r.entries] == [1, 2]
    r = mlog.query("t", Cursor.after(99), 10)  # from a log that went further: reset
    assert r.gap and [e.id for e in r.entries] == [1, 2]
    r = mlog.query("t", Cursor.after(1, mlog.epoch), 10)
    assert not r.gap and [e.id for e in r.entries] == [2]
    r = mlog.query("t", LATEST, 10)
    assert not r.gap and r.entries == [] and r.next_id == 2


def test_expired_messages_are_skipped_on_read() -> None:
    mlog, clock = make_log()
    pub(mlog, clock, "t", expires_at=clock.now + 5)
    pub(mlog, clock, "t")
    assert ids(mlog, "t") == [1, 2]
    clock.now += 6
    r = mlog.read("t", 0, 10)
    assert [e.id for e in r.entries] == [2] and not r.gap


def test_listeners_see_matching_appends_only_until_unlisten() -> None:
    mlog, clock = make_log()
    a, b = Recorder(), Recorder()
    mlog.listen("a/+", a)
    mlog.listen("#", b)
    pub(mlog, clock, "a/1")
    pub(mlog, clock, "b/1")
    mlog.unlisten("a/+", a)
    pub(mlog, clock, "a/2")
    assert a.seen == [1]
    assert b.seen == [1, 2, 3]
    assert mlog.listener_count == 1
    mlog.close_listeners()
    assert b.closed and not a.closed


def test_hub_observer_logs_every_routed_message() -> None:
    hub = Hub(MemoryEngine())
    mlog = MessageLog(hub.engine)
    hub.add_observer(mlog.observer)
    m = Message("x/y", b"p", qos=1)
    hub.publish(m)
    assert m.log_id == 1
    assert [e.message for e in mlog.read("x/#", 0, 10).entries] == [m]


async def test_memory_store_gets_a_new_epoch_every_start() -> None:
    engine = MemoryEngine()
    first = MessageLog(engine)
    await first.restore()
    second = MessageLog(engine)
    await second.restore()
    assert first.epoch != second.epoch
    assert second.last_id == 0


async def test_sqlite_store_keeps_log_epoch_gaps_and_consumers(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    engine = SQLiteEngine(db)
    await engine.open()
    mlog = MessageLog(engine, Retention(3, 0))
    await mlog.restore()
    epoch = mlog.epoch
    for i in range(5):
        mlog.append(Message("t", b"%d" % i, properties={"content_type": "text/plain"}))
    mlog.append(Message("u", b"u"))
    c = mlog.consumer_open("c1", "t", 0)
    mlog.consumer_ack(c, 4)
    mlog.sweep()  # hand the pending trims over
    await engine.close()

    engine = SQLiteEngine(db)
    await engine.open()
    again = MessageLog(engine, Retention(3, 0))
    await again.restore()
    assert again.epoch == epoch
    assert again.last_id == 6
    r = await again.fetch("t", 0, 10)  # restored entries are on disk only: fetch reads them
    assert r.gap and [e.id for e in r.entries] == [3, 4, 5]
    assert [e.message.payload for e in r.entries] == [b"2", b"3", b"4"]
    assert r.entries[0].message.properties == {"content_type": "text/plain"}
    assert again.read("t", 2, 10).gap is False
    consumer = again.consumer("c1", "t")
    assert consumer is not None and consumer.acked == 4
    # ids go on from where they were
    entry = again.append(Message("t", b"new"))
    assert entry is not None and entry.id == 7
    await engine.close()


async def test_sqlite_store_restores_untrimmed_rows_and_trims_them(tmp_path: Path) -> None:
    """Trims are write-behind and batched: a store that still holds evicted rows (stopped
    before the trim was written) is trimmed again at start-up, with the same gap marks."""
    db = tmp_path / "p.db"
    engine = SQLiteEngine(db)
    await engine.open()
    mlog = MessageLog(engine, Retention(100, 0))
    await mlog.restore()
    for i in range(10):
        mlog.append(Message("t", b"%d" % i))
    await engine.close()
    engine = SQLiteEngine(db)
    await engine.open()
    small = MessageLog(engine, Retention(4, 0))
    await small.restore()
    r = await small.fetch("t", 0, 100)
    assert r.gap and [e.id for e in r.entries] == [7, 8, 9, 10]
    assert small.read("t", 6, 100).gap is False
    await engine.close()


async def test_stream_buffer_get_take_timeout_and_overflow() -> None:
    buf: StreamBuffer[int] = StreamBuffer(3)
    assert await buf.get(0.01) is None
    buf.push(1)
    buf.push(2)
    assert await buf.get(1) == [1, 2]
    assert buf.take() == []
    waiter = asyncio.ensure_future(buf.get(None))
    await asyncio.sleep(0)
    buf.push(3)
    assert await waiter == [3]
    for i in range(3):
        assert buf.push(i)
    assert not buf.push(99)  # the 4th item overflows: closed, never silently dropped
    assert buf.closed and buf.reason == "overflow"
    assert await buf.get(1) == []


topics_st = st.sampled_from(["a", "a/b", "a/c", "b/x", "b/y/z"])
filters_st = st.sampled_from(["#", "a/#", "a/+", "b/#", "+/x", "a", "b/+/z"])


@settings(max_examples=150, deadline=None)
@given(
    publishes=st.lists(topics_st, max_size=40),
    flt=filters_st,
    cursor=st.integers(min_value=0, max_value=45),
    keep=st.integers(min_value=1, max_value=6),
    limit=st.integers(min_value=1, max_value=50),
)
def test_read_is_exactly_the_retained_matching_suffix(
    publishes: list[str], flt: str, cursor: int, keep: int, limit: int
) -> None:
    mlog, clock = make_log(max_messages=keep)
    for t in publishes:
        pub(mlog, clock, t)
    all_ids = list(range(1, len(publishes) + 1))
    topic_of = dict(zip(all_ids, publishes, strict=True))
    kept: set[int] = set()
    for t in set(publishes):
        kept.update([i for i in all_ids if topic_of[i] == t][-keep:])
    matching = [i for i in all_ids if matches(flt, topic_of[i])]
    cursor = min(cursor, mlog.last_id)
    expected = [i for i in matching if i in kept and i > cursor]
    evicted_after = [i for i in matching if i not in kept and i > cursor]
    r = mlog.read(flt, cursor, limit)
    assert [e.id for e in r.entries] == expected[:limit]
    assert r.gap == bool(evicted_after)
    assert r.more == (len(expected) > limit)
    # paging with next_id never loses or repeats anything
    got: list[int] = []
    after = cursor
    while True:
        page = mlog.read(flt, after, limit)
        got += [e.id for e in page.entries]
        after = page.next_id
        if not page.more:
            break
    assert got == expected


@pytest.mark.parametrize("flt", ["t", "#"])
def test_latest_then_append_is_read_back(flt: str) -> None:
    mlog, clock = make_log()
    pub(mlog, clock, "t")
    start = mlog.resolve(flt, LATEST)
    pub(mlog, clock, "t")
    assert not start.gap and ids(mlog, flt, start.after) == [2]


async def test_an_entry_the_store_refuses_becomes_a_hole(tmp_path: Path) -> None:
    """A real SQLite failure (a trigger refusing one payload): the entry leaves the log, a
    read across its id reports a gap, by id and by time, and so does the log after a
    restart; a read past it does not."""
    db = tmp_path / "p.db"
    engine = SQLiteEngine(db)
    await engine.open()
    mlog = MessageLog(engine)
    await mlog.restore()
    await engine.sync()
    refuse = (
        "CREATE TRIGGER refuse BEFORE INSERT ON log WHEN NEW.payload = CAST('bad' AS BLOB) "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    await engine._call(lambda conn: conn.execute(refuse))
    for payload in (b"one", b"bad", b"three"):
        mlog.append(Message("t", payload))
    mlog.append(Message("other", b"x"))
    await engine.sync()  # the failure is reported to the log before sync returns

    r = mlog.read("t", 1, 10)
    assert r.gap and [e.message.payload for e in r.entries] == [b"three"]
    assert mlog.read("t", 2, 10).gap is False
    assert mlog.read("other", 1, 10).gap is False  # a hole is only a gap for its topic
    assert mlog.query("t", Cursor("time", time=0.0), 10).gap is True
    assert mlog.query("t", ALL, 10).gap is False  # since=all: whatever is kept
    assert mlog.size == 3 and mlog.holes_total == 1
    await engine.close()

    engine = SQLiteEngine(db)
    await engine.open()
    again = MessageLog(engine)
    await again.restore()
    assert again.last_id == 4
    r = await again.fetch("t", 1, 10)  # restored entries are on disk only: fetch reads them
    assert r.gap and [e.message.payload for e in r.entries] == [b"three"]
    assert again.read("t", 2, 10).gap is False
    entry = again.append(Message("t", b"four"))
    assert entry is not None and entry.id == 5
    await engine.close()


def test_deep_topics_are_found_without_recursion() -> None:
    """The log's topic index is walked with loops: a topic 5000 levels deep (possible when
    max_topic_levels is raised) is found by `#` and `+` filters instead of raising
    RecursionError."""
    mlog, clock = make_log()
    deep = "/".join(["d"] * 5000)
    first = pub(mlog, clock, deep)
    second = pub(mlog, clock, "d")
    assert sorted(ids(mlog, "d/#")) == [first, second]
    assert ids(mlog, "+/" + deep[2:]) == [first]
    assert ids(mlog, deep[:-1] + "+") == [first]
