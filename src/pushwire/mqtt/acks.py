"""Acks of inbound flows in order, some held until the store is durable (the asyncio half
of the ack rules; the machine decides which ack and whether it must wait).

Acks never overtake each other (MQTT-4.6.0-2). The ack of a PUBLISH waits for its
`Receipt` (core/receipt.py): the durability future `Hub.submit` handed back, then whether the
store kept the message. Other durable acks (PUBREC of a $SYS publish, PUBCOMP) wait for the
journal's commit. When the store refused or failed a write the ack vouches for, an MQTT 5
publisher gets its PUBACK/PUBREC with 0x80 instead (the machine's `store_failed`) and keeps
its connection; anything else (MQTT 3.1.1, which has no failure ack, or an ack that is not a
PUBLISH's) is withheld and the connection closes, so the client resends after reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from pushwire.core.logthrottle import ThrottledLog
from pushwire.engines.base import WriteError

if TYPE_CHECKING:
    from pushwire.core.receipt import Receipt
    from pushwire.mqtt.events import PublishIn
    from pushwire.mqtt.protocol import MQTTServerProtocol

log = logging.getLogger(__name__)
# while Redis is unreachable every QoS 1/2 publish is refused: one line per client per 10 s
_refused_log = ThrottledLog(log, 10.0)


# (sync future or None, encoded ack, the receipt of the PUBLISH it answers or None, that
# PUBLISH's event or None, the engine's failure mark when the ack was queued, the PUBLISH's
# arrival on the monotonic clock or -1.0, whether writing it ends an inbound flow)
_Entry = tuple[
    "asyncio.Future[None] | None", bytes, "Receipt | None", "PublishIn | None", int, float, bool
]


class AckQueue:
    def __init__(self, owner: MQTTServerProtocol) -> None:
        self._owner: MQTTServerProtocol | None = owner
        self._queue: deque[_Entry] = deque()
        self._awaited: asyncio.Future[None] | None = None

    @property
    def idle(self) -> bool:
        """Nothing waits: an ack written now is in order (hub_calls.py `_publish_run`)."""
        return not self._queue

    def add(
        self,
        data: bytes,
        durable: bool,
        receipt: Receipt | None = None,
        received: float = -1.0,
        releases: bool = False,
    ) -> None:
        """Send an ack that answers no PUBLISH of ours to route (PUBREC of a $SYS publish,
        PUBCOMP, refusals) now, or once the journal is durable. `releases`: it ends an
        inbound QoS 1/2 flow."""
        owner = self._owner
        if owner is None:
            return  # the connection is gone: nobody to ack
        hub = owner.hub
        if not (durable and hub.engine.durable):
            if not self._queue:
                self._write(owner, data, releases, received)
                return
            fut = None
        else:
            fut = hub.sync_future()
        self._append(fut, data, receipt, None, hub.engine.failure_mark(), received, releases)

    def add_published(self, data: bytes, receipt: Receipt, ev: PublishIn, releases: bool) -> None:
        """The ack of a routed PUBLISH: sent once its receipt is durable and the store kept
        the message (with 0x80 on MQTT 5 when it did not). `ev.durable`: the ack also
        vouches for a session write (the QoS 2 packet id of a persistent session)."""
        owner = self._owner
        if owner is None:
            return
        fut = receipt.durable
        if fut is None:
            if not ev.durable or not owner.hub.engine.durable:
                if not self._queue:
                    # _write inlined: the ack of every QoS 1 publish on a memory engine
                    owner._write(data)
                    if releases:
                        owner.conn.ack_written()
                    received = ev.received
                    if received >= 0:
                        owner._acked_at.append(received)  # observed when flushed (link.py)
                    return
            else:
                fut = owner.hub.sync_future()
        self._append(fut, data, receipt, ev, owner.hub.engine.failure_mark(), ev.received, releases)

    def _append(
        self,
        fut: asyncio.Future[None] | None,
        data: bytes,
        receipt: Receipt | None,
        ev: PublishIn | None,
        mark: int,
        received: float,
        releases: bool,
    ) -> None:
        self._queue.append((fut, data, receipt, ev, mark, received, releases))
        if fut is not None and fut is not self._awaited:
            # many acks in one tick share one future: one callback releases them all
            self._awaited = fut
            fut.add_done_callback(self._release)

    @staticmethod
    def _write(owner: MQTTServerProtocol, data: bytes, releases: bool, received: float) -> None:
        owner._write(data)
        if releases:
            owner.conn.ack_written()
        if received >= 0:
            owner._acked_at.append(received)  # observed when flushed (mqtt/link.py)

    def _store_refused(self, receipt: Receipt | None, mark: int) -> bool:
        """Did the store refuse a write this ack vouches for: the message's (the broker
        refused it, or the store failed to keep it), or one of this client's session (its
        QoS 2 packet ids, its queue) since the ack was queued?"""
        owner = self._owner
        assert owner is not None
        if receipt is not None and not receipt.stored():
            return True
        return bool(owner.client_id) and owner.hub.engine.session_failed_since(
            owner.client_id, mark
        )

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
            fut, data, receipt, ev, mark, received, releases = queue[0]
            if fut is not None:
                if not fut.done():
                    return
                error = None if fut.cancelled() else fut.exception()
                if isinstance(error, WriteError):
                    # a write of no message or session failed: not this ack's concern
                    log.warning("journal: %s", error)
                    error = None
                if fut.cancelled() or error is not None or self._store_refused(receipt, mark):
                    # not durable. Only this client's failures count: another client's
                    # failed write is not its own.
                    failed = owner.conn.store_failed(ev) if ev is not None else None
                    if failed is None:
                        # no failure ack to give: withhold it; the client resends after
                        # reconnecting
                        log.error("journal write failed; closing %s", owner.client_id)
                        queue.clear()
                        owner._abort("storage failure")
                        return
                    # MQTT 5: say so in the ack (0x80), in its place in the order
                    _refused_log.log(
                        logging.WARNING,
                        owner.client_id,
                        "the store refused a publish of %r: acknowledged with 0x80",
                        owner.client_id,
                    )
                    data, releases = failed
            queue.popleft()
            owner._write(data)
            if releases:
                owner.conn.ack_written()
            if received >= 0:
                latency.observe(now - received)
