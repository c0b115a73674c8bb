"""The machine's *In events as hub calls: route a PUBLISH (`Hub.submit`) and queue its ack
on the receipt (acks.py), subscribe
(SUBACK, then retained messages), unsubscribe, and the client's acks of our deliveries
handed to its session. The ack bytes and reason codes come from the machine."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pushwire.core.message import Message, next_uid
from pushwire.mqtt.events import Authenticated, AuthTimer, SubscribeIn, UnsubscribeIn
from pushwire.mqtt.handle_publish import message_of

if TYPE_CHECKING:
    from pushwire.core.auth import AuthResult
    from pushwire.core.hub import Hub
    from pushwire.core.session import Session
    from pushwire.mqtt.acks import AckQueue
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import ConnectIn, Event, OutboundAck, PublishIn


class HubCalls:
    """Mixed into MQTTServerProtocol, which owns these attributes and `_write`."""

    hub: Hub
    conn: MQTTConnection
    session: Session | None

    if TYPE_CHECKING:

        @property
        def _acks(self) -> AckQueue: ...  # made at the first ack (protocol.py)

        def _write(self, data: bytes) -> None: ...
        def _arm_timer(self) -> None: ...
        def _connect_authenticated(self, ev: ConnectIn, result: AuthResult) -> None: ...

    def _rare_event(self, ev: Event) -> None:
        """The events `_act` does not dispatch itself, being off the per-packet path."""
        if isinstance(ev, SubscribeIn):
            self._subscribe(ev)
        elif isinstance(ev, UnsubscribeIn):
            self._unsubscribe(ev)
        elif isinstance(ev, Authenticated):
            self._connect_authenticated(ev.request, ev.result)
        elif isinstance(ev, AuthTimer) and ev.arm:
            self._arm_timer()  # the SCRAM challenge's deadline may come first

    def _publish(self, ev: PublishIn) -> None:
        p = ev.packet
        session = self.session
        assert session is not None
        if p.properties:
            msg = message_of(p, session.client_id)
        else:
            # message_of inlined for the common PUBLISH without properties (positional:
            # a dataclass __init__ with keywords and factories costs twice as much)
            msg = Message(
                p.topic, p.payload, p.qos, p.retain, {}, None, time.time(), next_uid(), None,
                session.client_id,
            )  # fmt: skip
        ack = ev.ack
        if ack is None:
            self.hub.publish(msg)  # QoS 0: no receipt to wait for, so none is made
            return
        receipt = self.hub.submit(msg)
        releases = ev.releases
        if self.hub.quota_exceeded:
            # every matching queue was full (docs/queues.md): the machine says how
            ack, releases = self.conn.quota_exceeded(ev)
        self._acks.add_published(ack, receipt, ev, releases)

    def _subscribe(self, ev: SubscribeIn) -> None:
        session = self.session
        assert session is not None
        added = [(sub, self.hub.subscribe(session, sub)) for sub in ev.subscriptions]
        self._write(ev.suback)
        # retained messages follow the SUBACK
        for sub, new in added:
            self.hub.send_retained(session, sub, new)

    def _unsubscribe(self, ev: UnsubscribeIn) -> None:
        session = self.session
        assert session is not None
        found = [self.hub.unsubscribe(session, flt) for flt in ev.filters]
        self._write(self.conn.unsuback(ev.packet_id, found))

    def _outbound_ack(self, ev: OutboundAck) -> None:
        session = self.session
        assert session is not None
        if ev.kind == "puback":
            session.acknowledge(ev.packet_id)
        elif ev.kind == "pubcomp":
            session.completed(ev.packet_id)
        else:
            found = session.received(ev.packet_id)
            self._write(self.conn.pubrel_for(ev.packet_id, found))
