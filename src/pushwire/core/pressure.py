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
        self._full: set[Hashable] = set()  # of those, the ones whose queue is at its bound
        self._waiters: list[Callable[[], None]] = []
        self.episodes = 0  # times a subscriber started holding publishers back
        # some subscriber holds publishers back: a plain attribute, as every PUBLISH read
        # asks it (mqtt/reading.py), kept equal to bool(_saturated) by mark/relieve
        self.active = False
        # some queue is at its bound, not only past the early threshold: a publisher is
        # then held right after the packet that found it so (no burst, mqtt/hub_calls.py),
        # as what the publishers still send may overfill it by one more bound only.
        # Kept equal to bool(_full) by mark/relieve.
        self.at_bound = False

    def holds(self, subscriber: Hashable) -> bool:
        """Is `subscriber` one of those holding publishers back now?"""
        return subscriber in self._saturated

    def mark(self, subscriber: Hashable, at_bound: bool = False) -> None:
        """`subscriber` holds publishers back; `at_bound`: its queue is at its bound (not
        only past the early threshold), until it is relieved."""
        if subscriber not in self._saturated:
            self._saturated.add(subscriber)
            self.active = True
            self.episodes += 1
        if at_bound:
            self._full.add(subscriber)
            self.at_bound = True

    def relieve(self, subscriber: Hashable) -> None:
        if subscriber in self._saturated:
            self._saturated.discard(subscriber)
            self._full.discard(subscriber)
            self.at_bound = bool(self._full)
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
