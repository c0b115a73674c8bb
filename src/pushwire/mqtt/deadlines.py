"""The CONNECT deadline of new MQTT connections on shared timers: one loop timer per slot
of `SLOT_SECONDS`, not one per connection. A connect storm's connections end long before
their deadline; making and cancelling a loop timer for each (uvloop allocates a libuv
handle per timer) was about 1 us of a connect's ~17 us of Python (bench/README.md).

A connection is in at most one slot, from `connection_made` until the slot fires or the
connection is lost (so it is never kept alive by it). The slot fires at or up to
`SLOT_SECONDS` after the deadline; the connection then runs its machine's `tick`, which
closes it if CONNECT is still missing or moves on to the keepalive check on its own timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

# how late a CONNECT deadline may fire: connections opened within one slot share a timer
SLOT_SECONDS = 0.05
_SLOTS_PER_SECOND = 1 / SLOT_SECONDS


class DeadlineOwner(Protocol):
    def connect_deadline_passed(self) -> None: ...


class ConnectDeadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, set[DeadlineOwner]] = {}
        # the slot `add` used last: the connections of a storm land in the same one for
        # 50 ms, so most adds skip the dict lookup
        self._last_key = 0
        self._last_slot: set[DeadlineOwner] = set()

    def add(self, owner: DeadlineOwner, due: float) -> int:
        """Call `owner.connect_deadline_passed()` at `due` (monotonic) or a little later;
        returns the slot to `remove` it from."""
        key = int(due * _SLOTS_PER_SECOND) + 1  # the slot ending after `due`
        if key == self._last_key:
            self._last_slot.add(owner)
            return key
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = set()
            fire: Callable[[int], None] = self._fire
            self._loop.call_later(max(0.0, key * SLOT_SECONDS - time.monotonic()), fire, key)
        slot.add(owner)
        self._last_key = key
        self._last_slot = slot
        return key

    def remove(self, owner: DeadlineOwner, key: int) -> None:
        slot = self._slots.get(key)
        if slot is not None:
            slot.discard(owner)

    def _fire(self, key: int) -> None:
        if key == self._last_key:
            # a deadline due later makes a new slot (and timer); the fired connections
            # are not kept
            self._last_key = 0
            self._last_slot = set()
        for owner in self._slots.pop(key, ()):
            owner.connect_deadline_passed()

    def __len__(self) -> int:
        """Connections waiting for a deadline (tests, metrics)."""
        return sum(len(slot) for slot in self._slots.values())
