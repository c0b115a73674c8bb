"""The machine's events turned into actions for an MQTT connection: bytes to the
transport, acks into their ordered queue (acks.py), the *In events to the hub side
(hub_calls.py, login.py), `Close` to the connection's end (farewell.py).

The machine decides; this only routes each event to the method that carries it out, in
the order the machine returned them. The tests run from the most to the least frequent
event (a PUBLISH to route, a run of PUBACKs from a subscriber, an inbound ack), as every
packet passes here; SUBSCRIBE, UNSUBSCRIBE and the SCRAM exchange go to `_rare_event`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pushwire.mqtt.events import (
    Close,
    ConnectIn,
    Event,
    OutboundAck,
    OutboundAcks,
    PublishIn,
    Send,
    SendAck,
)

if TYPE_CHECKING:
    from pushwire.core.hub import Hub
    from pushwire.mqtt.acks import AckQueue
    from pushwire.mqtt.session import MqttSession


class EventDispatch:
    """Mixed into MQTTServerProtocol, which owns these attributes and methods."""

    hub: Hub
    session: MqttSession | None

    if TYPE_CHECKING:

        @property
        def _acks(self) -> AckQueue: ...  # made at the first ack (defaults.py)

        def _publish(self, ev: PublishIn) -> None: ...
        def _write(self, data: bytes) -> None: ...
        def _outbound_ack(self, ev: OutboundAck) -> None: ...
        def _abort(self, reason: str, level: int = logging.DEBUG) -> None: ...
        def _authenticate(self, ev: ConnectIn) -> None: ...
        def _rare_event(self, ev: Event) -> None: ...

    def _act(self, events: list[Event]) -> None:
        """The machine's events, in order: bytes to the socket, the rest to the hub side."""
        for ev in events:
            if isinstance(ev, PublishIn):
                self._publish(ev)
            elif isinstance(ev, OutboundAcks):
                assert self.session is not None
                self.session.acknowledge_all(ev.packet_ids)
            elif isinstance(ev, SendAck):
                self._acks.add(ev.data, ev.durable, None, -1.0, ev.releases)
            elif isinstance(ev, Send):
                self._write(ev.data)
            elif isinstance(ev, OutboundAck):
                self._outbound_ack(ev)
            elif isinstance(ev, Close):
                if ev.protocol_error:
                    self.hub.stats.protocol_errors += 1
                self._abort(ev.reason, ev.level)
            elif isinstance(ev, ConnectIn):
                self._authenticate(ev)
            else:
                self._rare_event(ev)  # SUBSCRIBE, UNSUBSCRIBE, SCRAM (hub_calls.py)
