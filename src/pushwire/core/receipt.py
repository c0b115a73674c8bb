"""What a publish hands back: the message's position and when it is safe to acknowledge.

`Hub.submit` routes a message (or sends it to the broker, engine=redis) and returns a
`Receipt`. Its `durable` future is the one shared sync of the loop turn (group commit), or
None when nothing has to be waited for (nothing journaled, or an engine that promises no
durability). After it resolved, `position` is the message's log id (None for `$` topics
and unlogged ones), `stored()` says whether the store kept it, and `refused()` whether the
broker refused it outright (it then reached nobody and must not be acknowledged).
Transports acknowledge from the receipt instead of asking the engine themselves.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pushwire.core.message import Message

if TYPE_CHECKING:
    from pushwire.core.hub import Hub


class Receipt:
    # the hub, not its two bound checks: one object per QoS 1/2 publish, not three
    __slots__ = ("_hub", "durable", "message")

    def __init__(self, message: Message, durable: asyncio.Future[None] | None, hub: Hub) -> None:
        self.message = message
        self.durable = durable
        self._hub = hub

    @property
    def position(self) -> int | None:
        return self.message.log_id

    def stored(self) -> bool:
        """The store kept every write of the message (ask once `durable` resolved)."""
        return not self._hub.engine.write_failed(self.message)

    def refused(self) -> bool:
        """The broker did not take the message: nobody got it (ask once `durable` resolved)."""
        return self._hub.publish_refused(self.message)
