"""The log's listener groups (core/log.py): `unlisten_all`, how a wake's answered
long-polls leave their group at once (http/reader.py `_Walk.settle`)."""

from __future__ import annotations

from pushwire.core.log import LogEntry, MessageLog, Retention
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine


class Recorder:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def notify(self, entry: LogEntry) -> None:
        self.seen.append(entry.id)

    def close(self) -> None:
        pass


def _log() -> MessageLog:
    return MessageLog(MemoryEngine(), Retention(1000, 0))


def test_a_group_left_by_all_its_listeners_is_gone() -> None:
    """Left by all, a group stays (empty, for the filter's next listener: a per-user
    topic's long-poll re-asks right after each answer) until the sweep forgets it."""
    mlog = _log()
    group = [Recorder() for _ in range(5)]
    other = Recorder()
    for rec in group:
        mlog.listen("g/#", rec)
    mlog.listen("g/1", other)
    assert mlog.listener_count == 6
    mlog.unlisten_all("g/#", group)
    assert mlog.listener_count == 1
    assert not mlog._groups["g/#"].members
    mlog.append(Message("g/1", b"x"))
    assert [rec.seen for rec in group] == [[]] * 5 and other.seen == [1]
    # listening again takes the kept group
    kept = mlog._groups["g/#"]
    mlog.listen("g/#", group[0])
    assert mlog._groups["g/#"] is kept
    mlog.append(Message("g/1", b"y"))
    assert group[0].seen == [2] and other.seen == [1, 2]
    assert mlog.listener_count == 2
    mlog.unlisten("g/#", group[0])
    mlog.sweep()
    assert "g/#" not in mlog._groups and len(mlog._listeners) == 1
    # listening again makes the group anew
    mlog.listen("g/#", group[1])
    mlog.append(Message("g/1", b"z"))
    assert group[1].seen == [3] and other.seen == [1, 2, 3]


def test_idle_groups_are_bounded_by_the_listeners_that_held_them() -> None:
    """Many filters listened to once each: at most as many empty groups stay as there were
    listeners at most since the last sweep (at least 1024); the others go at once."""
    mlog = _log()
    recs = [Recorder() for _ in range(3000)]
    for i, rec in enumerate(recs[:2000]):
        mlog.listen(f"u/{i}", rec)
    for i, rec in enumerate(recs[:2000]):
        mlog.unlisten(f"u/{i}", rec)
    assert len(mlog._groups) == 2000 and mlog.listener_count == 0
    mlog.sweep()
    assert len(mlog._groups) == 0 and len(mlog._listeners) == 0
    # one listener at a time over 3,000 filters: 1,024 idle groups kept, no more
    for i, rec in enumerate(recs):
        mlog.listen(f"v/{i}", rec)
        mlog.unlisten(f"v/{i}", rec)
    assert len(mlog._groups) == 1024 and len(mlog._listeners) == 1024
    mlog.append(Message("v/5", b"x"))  # an empty group matched: nobody told, no error
    assert recs[5].seen == []


def test_some_listeners_leave_and_the_rest_stay_in_order() -> None:
    mlog = _log()
    recs = [Recorder() for _ in range(6)]
    for rec in recs:
        mlog.listen("s", rec)
    stranger = Recorder()  # never listened: ignored
    mlog.unlisten_all("s", [recs[1], recs[3], stranger])
    assert mlog.listener_count == 4
    assert list(mlog._groups["s"].members) == [recs[0], recs[2], recs[4], recs[5]]
    mlog.append(Message("s", b"x"))
    assert [len(rec.seen) for rec in recs] == [1, 0, 1, 0, 1, 1]
    # as many as the group holds, but not the same ones: only those leave
    mlog.unlisten_all("s", [recs[0], recs[2], recs[4], stranger])
    assert list(mlog._groups["s"].members) == [recs[5]] and mlog.listener_count == 1


def test_leaving_a_filter_nobody_listens_to_changes_nothing() -> None:
    mlog = _log()
    rec = Recorder()
    mlog.listen("a", rec)
    mlog.unlisten_all("b", [rec])
    assert mlog.listener_count == 1 and list(mlog._groups["a"].members) == [rec]
