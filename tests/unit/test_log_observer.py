"""The message log's per-message fast path (`MessageLog.observer`) and its run form
(`MessageLog.observe_run`, fed by `Hub.hold_observers`/`release_observers`) leave exactly
the state `append` leaves, one message at a time: ids, entries, sizes, eviction and trim
marks, counters, cold runs, the byte budgets, and what the engine was told."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushwire.core.hub import Hub
from pushwire.core.log import LogEntry, MemoryBudget, MessageLog, Retention, RetentionRule
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine

TOPICS = ["t/a", "t/b", "keep/none"]


class RecordingEngine(MemoryEngine):
    """The memory engine, telling what the log asked of it; `keeps_log` True makes the
    log spill over its budget to cold entries (as with SQLite) instead of evicting."""

    def __init__(self, keeps_log: bool) -> None:
        super().__init__()
        self.keeps_log = keeps_log
        self.calls: list[tuple[Any, ...]] = []

    def log_append(self, message: Message) -> None:
        self.calls.append(("append", message.log_id))

    def log_trim(self, topic: str, upto_id: int, upto_time: float) -> None:
        self.calls.append(("trim", topic, upto_id, upto_time))


class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def notify(self, entry: LogEntry) -> None:
        self.seen.append(entry.id)

    def close(self) -> None:
        pass


def make(keeps_log: bool, max_messages: int, max_age: float, budget: MemoryBudget) -> MessageLog:
    return MessageLog(
        RecordingEngine(keeps_log),
        Retention(max_messages, max_age),
        [RetentionRule("keep/#", max_messages=0)],
        budget=budget,
    )


def state(mlog: MessageLog) -> Any:
    topics = {}
    for topic in TOPICS:
        t = mlog._topics.by_topic.get(topic)
        if t is None:
            continue
        topics[topic] = (
            [(e.id, e.size, e.message.uid) for e in t.entries],
            list(t.cold.ids[t.cold.head :]),
            list(t.cold.sizes[t.cold.head :]),
            t.hot_bytes,
            t.evicted_upto,
            t.evicted_time,
            t.trimmed_upto,
            t.in_heap,
        )
    engine = mlog.engine
    assert isinstance(engine, RecordingEngine)
    return (
        mlog.last_id,
        mlog.size,
        mlog.memory_bytes,
        mlog.cold_count,
        mlog.appended_total,
        mlog.evicted_total,
        mlog.stats.log_spilled,
        mlog.stats.log_memory_evicted,
        topics,
        engine.calls,
        sorted((key, t.topic) for key, t in mlog._oldest),  # the budget's heap
    )


def messages(spec: list[tuple[int, int, int, bool, float]], start: float) -> list[Message]:
    """Blocks of `count` messages in a row to one topic (one publisher's read), the same
    payload size, properties or not, each `step` seconds after the one before."""
    out: list[Message] = []
    now = start
    for topic, count, size, props, step in spec:
        for _ in range(count):
            now += step
            out.append(
                Message(
                    TOPICS[topic],
                    b"p" * size,
                    1,
                    False,
                    {"content_type": "text/plain"} if props else {},
                    None,
                    now,
                    len(out) + 1,
                )
            )
    return out


published = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 2]),
        st.integers(1, 40),
        st.sampled_from([0, 10, 64, 64, 400]),
        st.booleans(),
        st.sampled_from([0.0, 0.0, 0.0, 0.5, 7.0]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    spec=published,
    keeps_log=st.booleans(),
    max_messages=st.sampled_from([1, 2, 5, 12, 40]),
    max_age=st.sampled_from([0.0, 5.0, 30.0]),
    topic_bytes=st.sampled_from([0, 0, 900, 5000, 20000]),
    total_bytes=st.sampled_from([0, 0, 1500, 30000]),
    cuts=st.lists(st.integers(0, 480), max_size=8),
)
def test_observer_and_observe_run_leave_what_append_leaves(
    spec: list[tuple[int, int, int, bool, float]],
    keeps_log: bool,
    max_messages: int,
    max_age: float,
    topic_bytes: int,
    total_bytes: int,
    cuts: list[int],
) -> None:
    assert_same(
        spec, keeps_log, max_messages, max_age, MemoryBudget(topic_bytes, total_bytes), cuts
    )


@pytest.mark.parametrize("keeps_log", [False, True])
@pytest.mark.parametrize(
    ("spec", "max_age", "budget"),
    [
        # long stretches of one topic at its bound: trims every 10, nothing else
        (
            [(0, 150, 64, False, 0.0), (1, 150, 64, False, 0.0), (0, 300, 64, False, 0.0)],
            0.0,
            MemoryBudget(),
        ),
        # the age bound reached in the middle of a stretch
        (
            [(0, 120, 64, False, 0.0), (0, 50, 64, False, 0.1), (0, 100, 64, True, 3.0)],
            20.0,
            MemoryBudget(),
        ),
        # bigger payloads cross the topic's and then the log's byte budget mid-stretch
        (
            [
                (0, 120, 64, False, 0.0),
                (0, 60, 600, False, 0.0),
                (1, 120, 64, False, 0.0),
                (1, 80, 900, True, 0.0),
            ],
            0.0,
            MemoryBudget(60_000, 110_000),
        ),
    ],
)
def test_long_stretches_cross_every_bound_as_one_by_one(
    spec: list[tuple[int, int, int, bool, float]],
    max_age: float,
    budget: MemoryBudget,
    keeps_log: bool,
) -> None:
    assert_same(spec, keeps_log, 100, max_age, budget, [33, 100, 101, 250, 400, 560])


def assert_same(
    spec: list[tuple[int, int, int, bool, float]],
    keeps_log: bool,
    max_messages: int,
    max_age: float,
    budget: MemoryBudget,
    cuts: list[int],
) -> None:
    one_by_one = make(keeps_log, max_messages, max_age, budget)
    observed = make(keeps_log, max_messages, max_age, budget)
    in_runs = make(keeps_log, max_messages, max_age, budget)
    start = 1_000_000.0
    journaled = []
    for m in messages(spec, start):
        entry = one_by_one.append(m)
        journaled.append(entry is not None and m.topic != "keep/none")
    as_observed = messages(spec, start)
    assert [observed.observer(m) for m in as_observed] == journaled
    # the same messages in runs cut anywhere (one read's run of publishes)
    run_messages = messages(spec, start)
    bounds = sorted({0, len(run_messages), *(c for c in cuts if c < len(run_messages))})
    for low, high in itertools.pairwise(bounds):
        in_runs.observe_run(run_messages[low:high])
    expected = state(one_by_one)
    assert state(observed) == expected
    assert state(in_runs) == expected
    assert [m.log_id for m in as_observed] == [m.log_id for m in run_messages]
    for flt in ("#", "t/a"):
        want = one_by_one.read(flt, 0, 1000)
        for other in (observed, in_runs):
            got = other.read(flt, 0, 1000)
            assert [e.id for e in got.entries] == [e.id for e in want.entries]
            assert (got.gap, got.next_id, got.cold) == (want.gap, want.next_id, want.cold)


def test_a_run_tells_a_live_reader_of_each_message_in_order() -> None:
    mlog = make(False, 3, 0.0, MemoryBudget())
    for _ in range(5):
        mlog.observer(Message("t/a", b"x"))  # the topic at its bound: the steady state
    reader = Recorder()
    mlog.listen("t/#", reader)
    mlog.observe_run([Message("t/a", b"y") for _ in range(4)])
    assert reader.seen == [6, 7, 8, 9]
    assert [e.id for e in mlog.read("t/a", 0, 10).entries] == [7, 8, 9]


def test_an_engine_that_keeps_no_log_is_not_written_to() -> None:
    # the memory engine: the log's memory is all there is, so each append skips the call
    mlog = make(False, 2, 0.0, MemoryBudget())
    mlog.observer(Message("t/a", b"x"))
    mlog.observe_run([Message("t/a", b"x") for _ in range(5)])
    mlog.append(Message("t/b", b"x"))
    engine = mlog.engine
    assert isinstance(engine, RecordingEngine)
    assert [c for c in engine.calls if c[0] == "append"] == []
    assert mlog.last_id == 7


def test_held_observers_see_the_run_at_release_in_order() -> None:
    hub = Hub(MemoryEngine())
    mlog = MessageLog(hub.engine, Retention(4, 0))
    seen: list[str] = []
    hub.add_observer(mlog.observer, mlog.observe_run)

    def note(m: Message) -> bool:
        seen.append(m.topic)
        return False

    hub.add_observer(note)  # no run form
    for _ in range(6):
        hub.publish(Message("t/a", b"x"))  # at its bound
    assert hub.hold_observers()
    assert not hub.hold_observers()  # held already: only the first caller releases
    sent = [Message("t/a" if i % 3 else "t/b", b"y") for i in range(7)]
    for m in sent:
        assert hub.route_along(m, hub.route_of(m.topic)) is False  # nothing journaled yet
    assert mlog.last_id == 6 and all(m.log_id is None for m in sent)
    hub.release_observers()
    assert [m.log_id for m in sent] == list(range(7, 14))
    assert seen == ["t/a"] * 6 + [m.topic for m in sent]
    assert [e.id for e in mlog.read("t/a", 0, 10).entries] == [8, 9, 11, 12]
    # one by one again
    last = Message("t/a", b"z")
    hub.publish(last)
    assert last.log_id == 14 and seen[-1] == "t/a"
    hub.release_observers()  # nothing held: nothing happens
    assert mlog.last_id == 14


class DurableEngine(MemoryEngine):
    durable = True  # an ack waits for what the observers journal


def test_observers_are_not_held_where_an_ack_waits_for_the_journal() -> None:
    hub = Hub(DurableEngine())
    mlog = MessageLog(hub.engine)
    hub.add_observer(mlog.observer, mlog.observe_run)
    assert not hub.hold_observers()
    m = Message("t/a", b"x")
    hub.route_along(m, hub.route_of(m.topic))
    assert m.log_id == 1  # logged at once, as without a hold
    hub.release_observers()
    assert mlog.last_id == 1
