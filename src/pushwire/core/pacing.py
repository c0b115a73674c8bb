"""Fan-out paced over loop turns, for messages that come in batches from elsewhere (the Redis
engine's fan-out reader hands over up to 16 publish batches of up to 2,048 messages per
read): `hub.deliver`, with at most `budget` deliveries (subscribers reached, `hub.routed`)
per event-loop turn. Past it, messages wait in order for the next turn, so the writes of
the fan-out go out (connections flush once per turn) and every other client is served in
between; the reader awaits `deliver.drained()` before it reads more, so what waits stays
bounded by one read. The MQTT read loop bounds its own publishers the same way
(mqtt/reading.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from pushwire.core.message import Message

if TYPE_CHECKING:
    from pushwire.core.hub import Hub
    from pushwire.core.routes import Route

log = logging.getLogger(__name__)


class PacedDelivery:
    """Callable as `hub.deliver`: route now while this turn's budget lasts, else queue."""

    def __init__(self, hub: Hub, budget: int) -> None:
        self._hub = hub
        self._budget = budget
        self._waiting: deque[Message] = deque()
        # hub.routed at which this turn's budget is spent; -1: no turn started yet
        self._spent_at = -1
        self._drained: list[asyncio.Future[None]] = []
        # the Redis fan-out reader's form (engines/redis/broker.py): the route of a topic,
        # looked up once for `pass_along` and `along`
        self.route_of: Callable[[str], Route] = hub.route_of
        # ... which routes a publish batch as a run (the log sees it in one call)
        self.hold_observers: Callable[[bool], bool] = hub.hold_observers
        self.release_observers: Callable[[], None] = hub.release_observers

    def __call__(self, message: Message) -> None:
        if self._waiting:
            self._waiting.append(message)  # in order, behind what already waits
            return
        hub = self._hub
        if self._spent_at < 0:
            self._start_turn()
        elif hub.routed >= self._spent_at:
            self._waiting.append(message)  # `_turn_over` routes it next turn
            return
        hub.deliver(message)

    def pass_by(self, topic: str, position: int, created_at: float, size: int) -> bool:
        """`Hub.pass_by` while nothing waits here: a message skipped straight into the log
        while earlier ones still wait for their turn would be logged before them."""
        return not self._waiting and self._hub.pass_by(topic, position, created_at, size)

    def pass_along(
        self, topic: str, route: Route, position: int, created_at: float, size: int
    ) -> bool:
        """`pass_by` with the route at hand (`Hub.pass_along`)."""
        return not self._waiting and self._hub.pass_along(topic, route, position, created_at, size)

    def along(self, message: Message, route: Route) -> None:
        """`__call__` with the route at hand: `Hub.route_along` now while this turn's budget
        lasts, else queued (its route is looked up again at its turn: the subscriptions
        may have changed by then)."""
        if self._waiting:
            self._waiting.append(message)
            return
        hub = self._hub
        if self._spent_at < 0:
            self._start_turn()
        elif hub.routed >= self._spent_at:
            self._waiting.append(message)
            return
        hub.route_along(message, route)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def first_waiting(self) -> int | None:
        """The position (log id) of the first message still waiting for its turn: nothing
        from there on has been routed yet. None when nothing waits."""
        return self._waiting[0].log_id if self._waiting else None

    def _start_turn(self) -> None:
        self._spent_at = self._hub.routed + self._budget
        asyncio.get_running_loop().call_soon(self._turn_over)

    def _turn_over(self) -> None:
        self._spent_at = -1
        if not self._waiting:
            return
        self._start_turn()
        hub, waiting, spent_at = self._hub, self._waiting, self._spent_at
        while waiting and hub.routed < spent_at:
            message = waiting.popleft()
            try:
                hub.deliver(message)
            except Exception:
                # one bad message must not stop the fan-out of the others
                log.exception("could not deliver message to %s", message.topic)
        if not waiting:
            drained, self._drained = self._drained, []
            for future in drained:
                if not future.done():
                    future.set_result(None)

    async def drained(self) -> None:
        """Once every message handed over so far has been routed."""
        if not self._waiting:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained.append(future)
        await future
