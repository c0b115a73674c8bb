"""Backpressure from subscribers that keep up to the publishers that outrun them.

When a QoS 1/2 subscriber is online, reading, and acknowledging (it made progress in the
last `PROGRESS_WINDOW` seconds) but its queue is full, dropping what publishers send is
waste: the server would spend its CPU accepting messages it then throws away. Instead the
publishers pause reading until that subscriber's queue is half empty again. A subscriber
that stopped acknowledging does not count (it is handled by the queue bound and the
slow-consumer policy), and no publisher waits longer than `MAX_WAIT`, so one stuck client
can never hold the others for long.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

# a subscriber that acknowledged something this recently is "keeping up"
PROGRESS_WINDOW = 1.0
# the longest a publisher is held back for one episode, seconds
MAX_WAIT = 0.5


class Backpressure:
    def __init__(self) -> None:
        self._saturated: set[Hashable] = set()
        self._waiters: list[Callable[[], None]] = []
        self.episodes = 0  # times a subscriber started holding publishers back
        # some subscriber holds publishers back: a plain attribute, as every PUBLISH read
        # asks it (mqtt/reading.py), kept equal to bool(_saturated) by mark/relieve
        self.active = False

    def holds(self, subscriber: Hashable) -> bool:
        """Is `subscriber` one of those holding publishers back now?"""
        return subscriber in self._saturated

    def mark(self, subscriber: Hashable) -> None:
        if subscriber not in self._saturated:
            self._saturated.add(subscriber)
            self.active = True
            self.episodes += 1

    def relieve(self, subscriber: Hashable) -> None:
        if subscriber in self._saturated:
            self._saturated.discard(subscriber)
            if not self._saturated:
                self.active = False
                self.release_all()

    def wait(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the pressure is gone (or at release_all)."""
        self._waiters.append(callback)

    def release_all(self) -> None:
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()
