"""When the gateway's sweeper (gateway/delivery.py `_sweeper`) wakes next.

It used to wake every 0.25 s, idle or not (4 of the ~5 wake-ups a second of an idle
server). Now it sleeps until the next thing due (a waiting push's expiry, a final record
to forget, the content clean-up's turn (every minute), or last-seen times waiting to be written),
and whatever becomes due sooner meanwhile wakes it (`due`). Its batching is kept: it never
runs more often than once per `step` seconds, so a reconnect storm's last-seen times are
still written together.
"""

from __future__ import annotations

import asyncio
import math


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SweepTimer:
    """The sweeper's sleep: until a time on the gateway's clock, or sooner by `due`."""

    __slots__ = ("at", "step", "wake")

    def __init__(self, step: float) -> None:
        self.step = step  # the shortest pause between two sweeps (seconds)
        self.at = -math.inf  # the gateway-clock time the sleeping sweeper wakes at
        self.wake: asyncio.Future[None] | None = None  # set while it sleeps

    def due(self, when: float) -> None:
        """Something is due at `when` (the gateway's clock): wake the sweeper if it
        sleeps past that (it still keeps its `step` after the previous sweep)."""
        if when < self.at:
            wake = self.wake
            self.at = -math.inf  # awake: further calls have nothing to do
            if wake is not None:
                _resolve(wake)

    async def sleep(self, now: float, until: float) -> None:
        """Sleep from `now` until `until` (the gateway's clock), at least `step` seconds,
        or until `due` names something sooner (then still at least `step`)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        delay = max(until - now, self.step)
        wake = self.wake = loop.create_future()
        self.at = now + delay
        handle = loop.call_later(delay, _resolve, wake)
        try:
            await wake
        finally:
            handle.cancel()
            self.wake = None
            self.at = -math.inf
        rest = self.step - (loop.time() - start)
        if rest > 0:
            await asyncio.sleep(rest)  # woken early: the batching grain is kept
