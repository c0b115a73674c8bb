"""The MQTT bytes one event-loop turn decodes, across all connections
(`mqtt_read_bytes_per_turn`).

uvloop hands every ready socket's read to its protocol in one turn: with thousands of
publishers blasting at once, one turn decodes 64 KB from each before any task or callback
(the Redis publish batcher, other clients' writes, timers) runs. Past this budget a read is
kept as it came (not decoded), reading from its connection is paused, and it is decoded on
a later turn: the connections deferred in one turn go first in the next, in the order they
were deferred, so a busy connection is never starved by newcomers.

The hot path (`MQTTServerProtocol.data_received`) is one add and one compare: `spent`
counts bytes lazily, and only a read that takes it past `limit` comes here. The counter is
reset once per turn only while the cap is biting (a `call_soon` armed by the first read
over the limit), so an idle or light loop schedules nothing; a turn may therefore decode up
to about twice the limit (what was read before the first read over it, plus the limit).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Protocol


class BudgetedReader(Protocol):
    """What the budget needs of a connection (MQTTServerProtocol)."""

    _closing: bool
    _reads_waiting: int  # reads of it in `TurnBudget.waiting`

    def _take(self, data: bytes) -> None: ...  # decode and run one read
    def _sync_reading(self) -> None: ...  # pause or resume reading from the socket


class TurnBudget:
    """The read budget of one event loop (one per broker, which runs on one loop)."""

    __slots__ = ("_loop", "armed", "limit", "spent", "waiting")

    def __init__(self, limit: int) -> None:
        self.spent = 0  # bytes read since the last reset (lazily: see the module doc)
        self.limit = limit if limit > 0 else sys.maxsize  # 0: no cap, never over
        self.armed = False  # a reset is scheduled for the start of the next turn
        # reads kept for a later turn, first deferred first
        self.waiting: deque[tuple[BudgetedReader, bytes]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def over(self, reader: BudgetedReader, data: bytes) -> bool:
        """`data` took `spent` past the limit: True if it is kept for a later turn (the
        caller then leaves it), False if it is decoded now (the first read over the limit
        since the last reset: the count before it is from earlier turns)."""
        if not self.armed:
            # nothing waits (what waits keeps a reset armed): start this turn's count here
            self.spent = len(data)
            self._arm()
            return False
        self.waiting.append((reader, data))
        reader._reads_waiting += 1
        if reader._reads_waiting == 1:
            reader._sync_reading()  # pause: the rest stays in the socket (TCP pushes back)
        return True

    def _arm(self) -> None:
        self.armed = True
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        loop.call_soon(self._new_turn)

    def _new_turn(self) -> None:
        """Reset the count, then decode what waits, oldest first, within this turn's
        budget; what is left waits for the next turn (before any newer read)."""
        self.armed = False
        self.spent = 0
        waiting = self.waiting
        if not waiting:
            return
        self._arm()
        limit = self.limit
        while waiting and self.spent <= limit:
            reader, data = waiting.popleft()
            reader._reads_waiting -= 1
            if reader._closing:
                continue  # closed while waiting: its bytes go with it
            self.spent += len(data)
            reader._take(data)
            if not reader._reads_waiting:
                reader._sync_reading()  # its last kept read is done: read it again
