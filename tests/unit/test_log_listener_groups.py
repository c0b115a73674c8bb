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
    mlog = _log()
    group = [Recorder() for _ in range(5)]
    other = Recorder()
    for rec in group:
        mlog.listen("g/#", rec)
    mlog.listen("g/1", other)
    assert mlog.listener_count == 6
    mlog.unlisten_all("g/#", group)
    assert mlog.listener_count == 1
    assert "g/#" not in mlog._groups
    mlog.append(Message("g/1", b"x"))
    assert [rec.seen for rec in group] == [[]] * 5 and other.seen == [1]
    # listening again makes the group anew
    mlog.listen("g/#", group[0])
    mlog.append(Message("g/1", b"y"))
    assert group[0].seen == [2] and other.seen == [1, 2]
    assert mlog.listener_count == 2


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
