"""http/longpoll_deadlines.py: one loop timer for every held long-poll's deadline; a
deadline is never answered early, a later one is followed lazily, a removed waiter is never
called, and an empty set of buckets leaves no timer behind."""

from __future__ import annotations

import asyncio

from pushwire.http import longpoll_deadlines
from pushwire.http.longpoll_deadlines import LongPollDeadlines, deadlines


class Held:
    """What the buckets need of a held long-poll (http/reader.py `LongPollWaiter`)."""

    def __init__(self, timers: LongPollDeadlines, deadline: float) -> None:
        self.timers = timers
        self.slot = 0
        self.deadline = deadline
        self.expired_at: list[float] = []

    def due(self, now: float) -> None:
        if now < self.deadline:
            self.timers.add(self, self.deadline)
        else:
            self.expired_at.append(now)


async def _until(condition: object) -> None:
    for _ in range(2000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def test_many_deadlines_share_one_timer_and_none_is_answered_early() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timers = deadlines()
        now = loop.time()
        held = [Held(timers, now + 0.02 * (i % 5)) for i in range(50)]
        for h in held:
            timers.add(h, h.deadline)
        armed = timers.timer  # a local: mypy would keep "not None" for the attribute
        assert armed is not None
        assert len(timers.buckets) <= 5
        await _until(lambda: all(h.expired_at for h in held))
        for h in held:
            assert len(h.expired_at) == 1 and h.expired_at[0] >= h.deadline
        # nothing waits: no timer left, and the loop's entry is gone
        assert timers.timer is None and loop not in longpoll_deadlines._per_loop

    asyncio.run(run())


def test_a_later_deadline_is_followed_lazily_and_a_removed_waiter_never_expires() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timers = deadlines()
        moved = Held(timers, loop.time() + 0.01)
        gone = Held(timers, loop.time() + 0.01)
        marker = Held(timers, loop.time() + 0.2)
        for h in (moved, gone, marker):
            timers.add(h, h.deadline)
        first_slot = moved.slot
        moved.deadline += 0.1  # held again with a later deadline: stays filed where it was
        timers.remove(gone)
        assert gone.slot == 0
        await _until(lambda: bool(marker.expired_at))
        assert moved.expired_at and moved.expired_at[0] >= moved.deadline
        assert moved.slot == 0 and first_slot != 0
        assert gone.expired_at == []  # removed: never called, though its slot came due

    asyncio.run(run())


def test_a_waiter_filed_again_while_a_bucket_fires_does_not_delay_the_next_bucket() -> None:
    """A waiter whose bucket comes due and who files itself again under a later deadline
    (its own new bucket) must not leave the loop's timer armed for that later slot while
    an earlier bucket waits (the next bucket's waiters would expire late)."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        timers = deadlines()
        now = loop.time()
        moved = Held(timers, now + 0.05)
        timers.add(moved, moved.deadline)
        nxt = Held(timers, now + 0.05 + 2 * longpoll_deadlines.SLOT)  # the bucket after
        timers.add(nxt, nxt.deadline)
        assert nxt.slot > moved.slot
        moved.deadline = now + 5.0  # filed again, far later, when its bucket comes due
        await _until(lambda: moved.slot > nxt.slot)  # its bucket came due
        # `nxt` still expires on time: within a slot of its deadline, not at `moved`'s
        await _until(lambda: bool(nxt.expired_at))
        assert nxt.expired_at[0] < nxt.deadline + 1.0
        timers.remove(moved)

    asyncio.run(run())


class Failing(Held):
    """An expiry that raises (a bug in one waiter's answer)."""

    def due(self, now: float) -> None:
        super().due(now)
        if self.expired_at:
            raise RuntimeError("this waiter's expiry fails")


def test_a_failing_expiry_neither_strands_its_bucket_nor_the_later_buckets() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        timers = deadlines()
        now = loop.time()
        failing = Failing(timers, now + 0.01)
        mate = Held(timers, now + 0.01)  # same bucket, after the failing one
        later = Held(timers, now + 0.3)  # a later bucket: the timer must be armed for it
        for h in (failing, mate, later):
            timers.add(h, h.deadline)
        await _until(lambda: bool(mate.expired_at) and bool(later.expired_at))
        assert failing.expired_at and mate.slot == 0 and later.slot == 0
        assert timers.timer is None and loop not in longpoll_deadlines._per_loop

    asyncio.run(run())
