"""`MessageLog.only_after`: the one entry a read would return, found without the read.

A long-poll client that re-asks after a message passed it (one message behind) is answered
with that message's cached response (http/streams.py `_ReaskLane._take`). Whenever
`only_after` names an entry, `read` must return exactly that entry, no gap, nothing more,
and the log's last id as its next id (the reply's cursor)."""

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


def test_the_one_newer_entry_of_the_topic() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    newer = _pub(mlog, "user/a")
    entry = mlog.only_after("user/a", mine)
    assert entry is not None and entry.id == newer
    read = mlog.read("user/a", mine, 10)
    assert read.entries == [entry] and not read.gap and read.next_id == newer


def test_none_when_two_are_newer_or_none_is() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    assert mlog.only_after("user/a", mine) is None
    _pub(mlog, "user/a")
    _pub(mlog, "user/a")
    assert mlog.only_after("user/a", mine) is None


def test_none_when_another_topic_is_the_logs_newest() -> None:
    """The read's next id would be the other topic's: not the entry's own cursor."""
    mlog = _log()
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/a")
    _pub(mlog, "user/b")
    assert mlog.only_after("user/a", mine) is None


def test_wildcard_filters_and_unknown_topics_are_read() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/a")
    assert mlog.only_after("user/+", mine) is None
    assert mlog.only_after("user/#", mine) is None
    assert mlog.only_after("user/z", mine) is None


def test_an_eviction_past_the_cursor_is_read() -> None:
    mlog = _log(max_messages=1)
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/a")
    _pub(mlog, "user/a")  # the one after `mine` is evicted: a gap
    assert mlog.only_after("user/a", mine) is None
    assert mlog.read("user/a", mine, 10).gap


def test_a_hole_past_the_cursor_is_read() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    message = Message("user/a", b"refused")
    assert mlog.append(message) is not None
    _pub(mlog, "user/a")
    mlog._write_failed(WriteFailure("log_append", message, None, "refused"))
    assert mlog.only_after("user/a", mine) is None
    assert mlog.read("user/a", mine, 10).gap


def test_below_the_unloaded_start_is_read() -> None:
    mlog = _log()
    mine = _pub(mlog, "user/a")
    _pub(mlog, "user/a")
    mlog.unloaded_upto = mlog.last_id
    assert mlog.only_after("user/a", mine) is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c/d"]), max_size=12),
    st.integers(min_value=1, max_value=4),
    st.sampled_from(["a", "b", "c/d", "e", "c/+"]),
    st.integers(min_value=0, max_value=13),
)
def test_only_after_agrees_with_the_read(
    topics: list[str], keep: int, flt: str, after: int
) -> None:
    mlog = _log(max_messages=keep)
    for topic in topics:
        _pub(mlog, topic)
    after = min(after, mlog.last_id)
    entry = mlog.only_after(flt, after)
    if entry is not None:
        read = mlog.read(flt, after, 1000)
        assert read.entries == [entry]
        assert not read.gap and not read.more and not read.cold
        assert read.next_id == entry.id == mlog.last_id
