"""The shared CONNECT-deadline timers (mqtt/deadlines.py): connections opened within one
slot share its timer; each is told once its deadline passed, unless it left first; a
fired slot keeps none of them."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from pushwire.mqtt.deadlines import SLOT_SECONDS, ConnectDeadlines


class Owner:
    def __init__(self, fired: list[Owner]) -> None:
        self.fired = fired

    def connect_deadline_passed(self) -> None:
        self.fired.append(self)


async def _until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


def test_owners_in_one_slot_fire_together_and_a_removed_one_does_not() -> None:
    async def run() -> None:
        fired: list[Owner] = []
        deadlines = ConnectDeadlines(asyncio.get_running_loop())
        due = time.monotonic() + SLOT_SECONDS
        owners = [Owner(fired) for _ in range(5)]
        keys = [deadlines.add(owner, due) for owner in owners]
        assert len(set(keys)) == 1 and len(deadlines) == 5
        deadlines.remove(owners[2], keys[2])
        await _until(lambda: len(fired) == 4)
        assert sorted(map(id, fired)) == sorted(id(o) for i, o in enumerate(owners) if i != 2)
        assert time.monotonic() >= due  # never before its deadline
        assert len(deadlines) == 0

    asyncio.run(run())


def test_after_a_slot_fired_the_same_deadline_window_starts_a_new_timer() -> None:
    async def run() -> None:
        fired: list[Owner] = []
        deadlines = ConnectDeadlines(asyncio.get_running_loop())
        first = Owner(fired)
        deadlines.add(first, time.monotonic())
        await _until(lambda: fired == [first])
        # the slot `add` used last has fired: a later deadline must get a timer of its own
        second = Owner(fired)
        deadlines.add(second, time.monotonic() + SLOT_SECONDS)
        await _until(lambda: len(fired) == 2)
        assert fired == [first, second]

    asyncio.run(run())


def test_a_fired_slot_keeps_no_connection_alive() -> None:
    async def run() -> tuple[weakref.ref[Owner], ConnectDeadlines]:
        fired: list[Owner] = []
        deadlines = ConnectDeadlines(asyncio.get_running_loop())
        owner = Owner(fired)
        deadlines.add(owner, time.monotonic())
        await _until(lambda: fired == [owner])
        fired.clear()
        # the deadlines object lives on (as the broker's does); the owner must not
        return weakref.ref(owner), deadlines

    ref, deadlines = asyncio.run(run())
    gc.collect()
    assert ref() is None
    assert len(deadlines) == 0
