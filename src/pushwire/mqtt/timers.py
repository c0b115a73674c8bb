"""The protocol machine's one timer, run on the event loop for an MQTT connection.

The machine (`connection.py`) keeps a single `deadline` (the CONNECT deadline, an AUTH
challenge's, the keepalive check) and decides in `tick` what is due; this module only
keeps a loop timer armed for it. Activity never touches the timer (the machine updates a
timestamp), so a busy keepalive connection costs one timer per period, not one per packet.

Until the connection first needs a timer of its own, its CONNECT deadline waits in a slot of
the shared timers of `deadlines.py`: a connect storm's connections end long before it.
`connection_made` joins the slot and `connection_lost` leaves it and cancels the timer,
inline, as every connection of a storm passes there.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pushwire.mqtt.broker import MQTTBroker
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import Event


class MachineTimer:
    """Mixed into MQTTServerProtocol, which owns these attributes and `_act`."""

    broker: MQTTBroker
    conn: MQTTConnection
    _closing: bool
    _loop: asyncio.AbstractEventLoop
    # the connection's own timer (None until first needed), or its shared slot (0: none);
    # one at a time, due at `_timer_due` (monotonic)
    _timer: asyncio.TimerHandle | None = None
    _timer_due = 0.0
    _deadline_slot = 0

    if TYPE_CHECKING:

        def _act(self, events: list[Event]) -> None: ...

    def _arm_timer(self) -> None:
        """For the machine's deadline, when before the armed one (a timer armed later
        fires early: `tick` then finds nothing due yet)."""
        due = self.conn.deadline
        if not due or self._closing:
            return
        if self._timer is not None:
            if self._timer_due <= due:
                return
            self._timer.cancel()
        elif self._deadline_slot:
            if self._timer_due <= due:
                return
            self._leave_deadline_slot()
        self._timer_due = due
        self._timer = self._loop.call_later(due - time.monotonic(), self._on_timer)

    def _leave_deadline_slot(self) -> None:
        deadlines = self.broker.connect_deadlines
        assert deadlines is not None
        deadlines.remove(self, self._deadline_slot)
        self._deadline_slot = 0

    def connect_deadline_passed(self) -> None:
        """The shared CONNECT-deadline timer fired (deadlines.py): as the connection's
        own timer would have."""
        self._deadline_slot = 0
        if not self._closing:
            self._on_timer()

    def _on_timer(self) -> None:
        self._timer = None
        self._act(self.conn.tick(time.monotonic()))
        self._arm_timer()
