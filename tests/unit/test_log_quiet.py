"""`MessageLog.quiet_after`: a read known to find nothing from the filter's own topic.

A long-poll re-ask on a per-user topic comes with the cursor of its last reply, while the
log's last id has moved on with other users' topics; the re-ask holds again without
reading when the topic itself has nothing newer, no eviction and no hole past the cursor.
Whenever `quiet_after` says so, `read` must agree (nothing, no gap)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pushwire.core.log import MemoryBudget, MessageLog, Retention
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine
from pushwire.model import WriteFailure


def _log(max_messages: int = 1000, budget: MemoryBudget | None = None) -> MessageLog:
    return MessageLog(MemoryEngine(), Retention(max_messages, 0), budget=budget)


def _pub(mlog: MessageLog, topic: str, payload: bytes = b"x") -> int:
    entry = mlog.append(Message(topic, payload))
    assert entry is not None
    return entry.id


def _read_is_quiet(mlog: MessageLog, flt: str, after: int, floor: int = 0) -> bool:
    r = mlog.read(flt, after, 1000, floor)
    return not r.entries and not r.gap and not r.cold


def test_quiet_when_only_other_topics_moved_on() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/b")
    _pub(mlog, "user/c")
    assert mlog.last_id > mine
    assert mlog.quiet_after("user/a", mine)
    assert mlog.reads_spared == 1
    assert _read_is_quiet(mlog, "user/a", mine)


def test_not_quiet_when_the_topic_has_a_newer_message() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/b")
    _pub(mlog, "user/a")
    assert not mlog.quiet_after("user/a", mine)
    assert mlog.reads_spared == 0


def test_a_topic_never_published_is_quiet() -> None:
    mlog = _log()
    last = _pub(mlog, "user/b")
    assert mlog.quiet_after("user/a", 0)
    assert mlog.quiet_after("user/a", last)


def test_wildcard_filters_are_read() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    _pub(mlog, "other")
    assert not mlog.quiet_after("user/+", mine)
    assert not mlog.quiet_after("user/#", mine)


def test_evicted_newer_message_is_a_gap_not_quiet() -> None:
    """The topic's byte budget evicts the newer message itself: no entry is newer, but
    the eviction past the cursor is a gap the reader must be told of."""
    mlog = _log(budget=MemoryBudget(600, 0))
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/a", b"y" * 1000)  # over the topic's bytes: evicted at once
    _pub(mlog, "user/b")
    assert mlog.topic_size("user/a") == 0
    assert not mlog.quiet_after("user/a", mine)
    assert mlog.read("user/a", mine, 10).gap
    # the floor (evictions already reported) makes it quiet again
    assert mlog.quiet_after("user/a", mine, mlog.last_id)


def test_a_hole_past_the_cursor_is_not_quiet() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    message = Message("user/a", b"refused")
    lost = mlog.append(message)
    assert lost is not None
    _pub(mlog, "user/b")
    mlog._write_failed(WriteFailure("log_append", message, None, "refused"))
    assert not mlog.quiet_after("user/a", mine)
    assert mlog.read("user/a", mine, 10).gap
    assert mlog.quiet_after("user/a", lost.id)


def test_below_the_unloaded_start_is_read() -> None:
    mlog = _log()
    _pub(mlog, "user/b")
    mlog.unloaded_upto = mlog.last_id
    assert not mlog.quiet_after("user/a", 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c/d"]), max_size=12),
    st.integers(min_value=1, max_value=4),
    st.sampled_from(["a", "b", "c/d", "e"]),
    st.integers(min_value=0, max_value=13),
    st.integers(min_value=0, max_value=13),
)
def test_quiet_implies_the_read_finds_nothing(
    topics: list[str], keep: int, flt: str, after: int, floor: int
) -> None:
    mlog = _log(max_messages=keep)
    for topic in topics:
        _pub(mlog, topic)
    after = min(after, mlog.last_id)
    if mlog.quiet_after(flt, after, floor):
        assert _read_is_quiet(mlog, flt, after, floor)
