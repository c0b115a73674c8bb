"""Will messages: what a will becomes when it is published, and the wills waiting for
their MQTT 5 delay (MQTT-3.1.3-9). When a will is due is the protocol machine's rule
(`handle_connect.will_delay`, and `handle_connect.pending_will_goes_out` when a new
connection takes the session); this module keeps the timers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from pushwire.core.hub import Hub
from pushwire.core.message import Message
from pushwire.mqtt.handle_connect import pending_will_goes_out
from pushwire.mqtt.packets import Will
from pushwire.mqtt.properties import forwarded


def will_message(will: Will, client_id: str) -> Message:
    expiry = will.properties.get("message_expiry_interval")
    return Message(
        will.topic,
        will.payload,
        will.qos,
        will.retain,
        forwarded(will.properties),
        expires_at=time.time() + expiry if expiry is not None else None,
        origin=client_id,
    )


class DelayedWills:
    """Wills waiting for their delay, by client id: one per session at most."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._pending: dict[str, tuple[asyncio.TimerHandle, Message]] = {}
        # the same dict, read-only by intent: a connect checks it before calling
        # session_connected (no will waits, the usual case: one call less per connect)
        self.pending: Mapping[str, object] = self._pending

    def schedule(self, client_id: str, message: Message, delay: float) -> None:
        def fire() -> None:
            self._pending.pop(client_id, None)
            self._hub.publish(message)

        self._drop(client_id)
        self._pending[client_id] = (asyncio.get_running_loop().call_later(delay, fire), message)

    def session_connected(self, client_id: str, session_present: bool) -> None:
        """A connection took the session of `client_id`: a will pending from an earlier
        connection is dropped, and published now or never as the machine's rule says."""
        if not self._pending:
            return  # no will waits at all (the usual case)
        message = self._drop(client_id)
        if message is not None and pending_will_goes_out(session_present):
            self._hub.publish(message)

    def publish_all(self) -> None:
        """Publish every pending will now (the server is stopping and cannot wait)."""
        for client_id in list(self._pending):
            message = self._drop(client_id)
            if message is not None:
                self._hub.publish(message)

    def _drop(self, client_id: str) -> Message | None:
        pending = self._pending.pop(client_id, None)
        if pending is None:
            return None
        pending[0].cancel()
        return pending[1]
