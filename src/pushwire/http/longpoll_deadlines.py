"""The deadlines of held long-polls and of the HTTP connections' head and keep-alive
timeouts: one loop timer for all of them, not one per waiter or connection.

A uvloop timer (its `TimerHandle`, the libuv handle and their arguments) costs ~540 B of
heap per held long-poll, about a tenth of what an idle long-poll connection costs
(bench/README.md "Wake and memory of held long-polls"). Here a waiter is one entry in the
bucket of its deadline's slot (`SLOT` seconds wide, rounded up: a timeout is answered at
most one slot late, never early), and one timer per event loop fires at the earliest slot.

Deadlines are moved lazily, as the waiters' own timers were: a waiter held again with a
later deadline stays in its earlier bucket, and is filed again when that bucket comes due
(a re-ask costs one comparison); an answered waiter stays until then too, unless its client
leaves (`remove`).

An HTTP connection's one deadline (http/connection.py: the request head's timeout, then the
kept-alive idle timeout) is filed here the same way, instead of a uvloop timer per
connection: ~620 B less per idle connection, and no `TimerHandle` made and fired per
connection every few seconds of a long-poll client's cycle (each was a loop wake-up of its
own while nothing else happened).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from typing import Protocol

log = logging.getLogger(__name__)

SLOT = 0.05  # seconds per bucket: how late at most a long-poll's timeout is answered


class Expiring(Protocol):
    """A held long-poll (http/reader.py `LongPollWaiter`) or an HTTP connection's deadline
    (http/connection.py `HttpProtocol`)."""

    slot: int  # the bucket it is in (0: none)
    deadline: float

    def due(self, now: float) -> None:
        """Its bucket came due at `now` (its deadline may have moved later meanwhile)."""


class LongPollDeadlines:
    """The buckets of one event loop's held long-polls and their one timer."""

    __slots__ = ("armed", "buckets", "last", "loop", "slots", "stopped", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buckets: dict[int, dict[Expiring, None]] = {}
        self.slots: list[int] = []  # a heap of the buckets' slots
        self.timer: asyncio.TimerHandle | None = None
        self.armed = 0  # the slot the timer fires for
        self.stopped = False  # emptied and dropped: `deadlines_of` makes the loop a new one
        self.last = 0  # the slot filed last

    def add(self, waiter: Expiring, deadline: float) -> None:
        """File `waiter` under `deadline` (it is in no bucket)."""
        slot = math.ceil(deadline / SLOT)
        if slot == self.last:
            slot = self.last  # the same int object (~30 B per waiter that keeps it)
        else:
            self.last = slot
        bucket = self.buckets.get(slot)
        if bucket is None:
            bucket = self.buckets[slot] = {}
            heapq.heappush(self.slots, slot)
            if self.timer is None or slot < self.armed:
                self._arm(slot)
        bucket[waiter] = None
        waiter.slot = slot

    def remove(self, waiter: Expiring) -> None:
        """Take `waiter` out of its bucket (its client left)."""
        slot, waiter.slot = waiter.slot, 0
        bucket = self.buckets.get(slot)
        if bucket is not None:
            bucket.pop(waiter, None)
            if not bucket:
                del self.buckets[slot]  # its heap entry is dropped when it comes due
                if not self.buckets:
                    self._stop()

    def _arm(self, slot: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.armed = slot
        self.timer = self.loop.call_at(slot * SLOT, self._fire)

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.slots.clear()
        self.stopped = True
        if _per_loop.get(self.loop) is self:
            del _per_loop[self.loop]

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        slots, buckets = self.slots, self.buckets
        try:
            while slots and slots[0] * SLOT <= now:
                bucket = buckets.pop(heapq.heappop(slots), None)
                if bucket is None:
                    continue
                for waiter in bucket:
                    waiter.slot = 0
                for waiter in bucket:
                    # may file the waiter again (a later deadline): never into a due slot
                    try:
                        waiter.due(now)
                    except Exception:
                        # one failing expiry must not strand the rest of its bucket (its
                        # slots are already 0) nor leave later buckets without a timer: the
                        # head and keep-alive deadlines of connections live here too
                        log.exception("a deadline's expiry failed")
        finally:
            if not buckets:
                self._stop()
            else:
                self._arm_earliest()

    def _arm_earliest(self) -> None:
        # (a waiter filed again by `_fire` armed the timer for its own, later slot when it
        # made a new bucket: the earliest bucket left may be before it)
        slots = self.slots
        if slots and (self.timer is None or slots[0] < self.armed):
            self._arm(slots[0])


_per_loop: dict[asyncio.AbstractEventLoop, LongPollDeadlines] = {}


def deadlines() -> LongPollDeadlines:
    """The running loop's deadlines (made on first use, dropped once empty)."""
    return deadlines_of(asyncio.get_running_loop())


def deadlines_of(loop: asyncio.AbstractEventLoop) -> LongPollDeadlines:
    """`deadlines` of a known loop (`asyncio.get_running_loop` costs a getpid syscall)."""
    found = _per_loop.get(loop)
    if found is None:
        found = _per_loop[loop] = LongPollDeadlines(loop)
    return found
