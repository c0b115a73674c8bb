"""Acks of inbound flows in order, some held until the store is durable (the asyncio half
of the ack rules; the machine decides which ack and whether it must wait).

Acks never overtake each other (MQTT-4.6.0-2). A durable ack waits for the journal's
commit; when the store refused a write the ack vouches for, it is withheld and the
connection closes, so the client resends after reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from pushwire.core.message import Message
from pushwire.engines.base import WriteError

if TYPE_CHECKING:
    from pushwire.mqtt.protocol import MQTTServerProtocol

log = logging.getLogger(__name__)


class AckQueue:
    def __init__(self, owner: MQTTServerProtocol) -> None:
        self._owner: MQTTServerProtocol | None = owner
        # (sync future or None, encoded ack, the message whose storage it confirms, the
        # engine's failure mark when the ack was queued, the PUBLISH's receipt on the
        # monotonic clock or -1.0, whether writing it ends an inbound flow)
        self._queue: deque[
            tuple[asyncio.Future[None] | None, bytes, Message | None, int, float, bool]
        ] = deque()
        self._awaited: asyncio.Future[None] | None = None

    def add(
        self,
        data: bytes,
        durable: bool,
        message: Message | None = None,
        received: float = -1.0,
        releases: bool = False,
    ) -> None:
        """Send an ack now, or once the journal is durable. `message`: the published
        message the ack confirms; `received`: when its PUBLISH arrived (time.monotonic()),
        for the publish-to-ack histogram; `releases`: it ends an inbound QoS 1/2 flow."""
        owner = self._owner
        if owner is None:
            return  # the connection is gone: nobody to ack
        hub = owner.hub
        wait = durable and hub.engine.durable
        if not wait and not self._queue:
            owner._write(data)
            if releases:
                owner.conn.ack_written()
            if received >= 0:
                owner._acked_at.append(received)  # observed when flushed (mqtt/link.py)
            return
        fut = hub.sync_future() if wait else None
        self._queue.append((fut, data, message, hub.engine.failure_mark(), received, releases))
        if fut is not None and fut is not self._awaited:
            # many acks in one tick share one future: one callback releases them all
            self._awaited = fut
            fut.add_done_callback(self._release)

    def _store_refused(self, message: Message | None, mark: int) -> bool:
        """Did the store refuse a write this ack vouches for: the message's, or one of this
        client's session (its QoS 2 packet ids, its queue) since the ack was queued?"""
        owner = self._owner
        assert owner is not None
        engine = owner.hub.engine
        if message is not None and engine.write_failed(message):
            return True
        return bool(owner.client_id) and engine.session_failed_since(owner.client_id, mark)

    def detach(self) -> None:
        """The connection ended: drop what waits and the reference to it, so the
        connection and this queue are freed by reference counting, not by the cyclic GC
        (one connect cycle per device reconnect made the collector a quarter of its cost)."""
        self._owner = None
        self._queue.clear()

    def _release(self, _: asyncio.Future[None]) -> None:
        owner = self._owner
        if owner is None:
            return
        # one clock read for every ack this commit releases
        now = time.monotonic()
        latency = owner.hub.stats.publish_ack_latency
        queue = self._queue
        while queue:
            fut, data, message, mark, received, releases = queue[0]
            if fut is not None:
                if not fut.done():
                    return
                error = None if fut.cancelled() else fut.exception()
                if isinstance(error, WriteError):
                    # a write of no message or session failed: not this ack's concern
                    log.warning("journal: %s", error)
                    error = None
                if fut.cancelled() or error is not None or self._store_refused(message, mark):
                    # not durable: withhold the ack; the client resends after reconnect.
                    # Only this client's: another client's failed write is not its own.
                    log.error("journal write failed; closing %s", owner.client_id)
                    queue.clear()
                    owner._abort("storage failure")
                    return
            queue.popleft()
            owner._write(data)
            if releases:
                owner.conn.ack_written()
            if received >= 0:
                latency.observe(now - received)
