"""core/log.py `observe_run` with the broker's positions (engine=redis): the fan-out reader
routes another node's publish batch as a run (`Hub.hold_observers(received=True)`), and
the log must come out exactly as from one `observer` call per message, cold entries (the
default `redis_log_memory` "listened") and kept ones ("routed") alike."""

from __future__ import annotations

import pytest
from test_log_observer import TOPICS, RecordingEngine, make, state

from pushwire.core.hub import Hub
from pushwire.core.log import MemoryBudget, MessageLog
from pushwire.core.message import Message
from pushwire.engines.memory import MemoryEngine


class AssigningEngine(RecordingEngine):
    assigns_positions = True  # positions come with the messages (the broker's)


def assigned_log(cold: bool) -> MessageLog:
    mlog = make(True, 3, 0.0, MemoryBudget(0, 0))
    mlog.engine = engine = AssigningEngine(True)
    mlog.assigned = True
    mlog.cold_unless_listened = cold
    assert engine is mlog.engine
    return mlog


def batch() -> list[Message]:
    out = []
    position = 10
    for i in range(40):
        position += 1 + (i % 7 == 3)  # a jump now and then: another node's positions
        topic = TOPICS[i % 3] if i % 5 else "$SYS/x"
        out.append(
            Message(topic, b"p" * (i % 4), log_id=position, created_at=1000.0 + i, uid=i + 1)
        )
    return out


@pytest.mark.parametrize("cold", [True, False])
def test_an_assigned_run_leaves_the_state_one_by_one_leaves(cold: bool) -> None:
    one, run = assigned_log(cold), assigned_log(cold)
    for m in batch():
        one.observer(m)
    run.observe_run(batch())
    assert state(run) == state(one)
    assert (run.cold_count > 0) == cold  # "listened": ids, times and sizes only
    assert run.last_id == batch()[-1].log_id


def test_a_received_run_is_held_where_a_publish_run_is_not() -> None:
    hub = Hub(MemoryEngine())
    mlog = assigned_log(True)
    hub.add_observer(mlog.observer, mlog.observe_run)
    hub.broker = object()  # type: ignore[assignment]  # engine=redis: publishes go to a broker
    assert not hub.hold_observers()  # a publish run: an ack may wait for the journal
    assert hub.hold_observers(received=True)
    sent = batch()
    for m in sent:
        hub.route_along(m, hub.route_of(m.topic))
    assert mlog.last_id == 0  # held: nothing logged yet
    hub.release_observers()
    expected = assigned_log(True)
    for m in batch():
        expected.observer(m)
    assert state(mlog) == state(expected)
