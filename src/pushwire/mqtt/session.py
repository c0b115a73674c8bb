"""The MQTT part of a session: packet ids, the QoS 2 handshakes, the inbound QoS 2 table.

core.session.Session keeps the protocol-neutral state (subscriptions, the queue, and the
inflight window keyed by each delivery's sequence number). `MqttSession` adds what only
MQTT has, and the hub makes every session as one (the MQTT listener gives it the factory,
mqtt/broker.py):

- a packet id (1..65535) for each delivery entering the inflight window, never one still
  in use, and the map from packet id to delivery that PUBACK, PUBREC and PUBCOMP look up;
- the "released" state of an outgoing QoS 2 delivery (PUBREC received, PUBREL sent), and
  PUBREL instead of the PUBLISH when a reconnect resumes it;
- the ids of inbound QoS 2 messages routed but not yet released (PUBREL), so that a resend
  is not routed twice.

Packet ids travel on the delivery (`Delivery.wire_id`), so they are journaled with it and a
persistent session resumes under the same ids after a restart (MQTT-4.4.0-1); the inbound
ids have their own table in the engine (`inbound_qos2_put` / `_delete`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, cast

from pushwire.core.session import Delivery, Link, Session, SessionLimits

if TYPE_CHECKING:
    from pushwire.core.pressure import Backpressure
    from pushwire.core.stats import Stats
    from pushwire.model import StoredSession
    from pushwire.ports import Engine

MAX_PACKET_ID = 65535

# shared empty containers until a session first writes one (as core.session's _NO_*):
# most sessions of a connect storm only publish at QoS 0/1 and never need either
_NO_DELIVERIES = cast("dict[int, Delivery]", MappingProxyType({}))
_NO_PACKET_IDS = cast("set[int]", frozenset())


class ReleasingLink(Link, Protocol):
    """An MQTT connection attached to a session (mqtt/link.py): a core Link that also
    sends PUBREL."""

    def send_release(self, packet_id: int) -> None:
        """Send PUBREL (resuming a QoS 2 flow after a reconnect)."""


class MqttSession(Session):
    """A session of an MQTT client: `Session` plus packet ids and the QoS 2 states.

    `by_packet_id` and `inbound_qos2` may be the shared empty ones above: read them
    freely, write them only through this class's methods."""

    __slots__ = ("_next_packet_id", "by_packet_id", "inbound_qos2")

    def __init__(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int | None,
        engine: Engine,
        limits: SessionLimits,
        stats: Stats,
        pressure: Backpressure | None = None,
    ) -> None:
        super().__init__(
            client_id, protocol_level, expiry_interval, engine, limits, stats, pressure
        )
        self._next_packet_id = 1
        # the deliveries inflight by packet id: every one in `inflight`, and only those
        self.by_packet_id: dict[int, Delivery] = _NO_DELIVERIES
        # inbound QoS 2 packet ids routed, not yet released by the client's PUBREL
        self.inbound_qos2: set[int] = _NO_PACKET_IDS

    # -- packet ids: given as a delivery enters the window --------------------------------

    def _track(self, d: Delivery) -> None:
        ids = self.by_packet_id
        if ids is _NO_DELIVERIES:  # the session's first delivery
            ids = self.by_packet_id = {}
        pid = self._next_packet_id
        # packet ids are 1..65535 and must not collide with one still inflight
        while pid in ids:
            pid = pid % MAX_PACKET_ID + 1
        d.wire_id = pid
        ids[pid] = d
        self._next_packet_id = pid % MAX_PACKET_ID + 1

    def _track_all(self, deliveries: list[Delivery]) -> None:
        ids = self.by_packet_id
        if ids is _NO_DELIVERIES:  # queued while offline, never sent before
            ids = self.by_packet_id = {}
        pid = self._next_packet_id
        for d in deliveries:
            while pid in ids:
                pid = pid % MAX_PACKET_ID + 1
            d.wire_id = pid
            ids[pid] = d
            pid = pid % MAX_PACKET_ID + 1
        self._next_packet_id = pid

    # -- the client's acknowledgements of our deliveries -------------------------------

    def acknowledge(self, packet_id: int) -> bool:
        """PUBACK for a QoS 1 delivery."""
        ids = self.by_packet_id
        d = ids.get(packet_id)
        if d is None or d.qos != 1:
            return False
        del ids[packet_id]
        return self.settle(d)

    def acknowledge_all(self, packet_ids: list[int]) -> None:
        """PUBACKs for QoS 1 deliveries, in order (one that matches nothing inflight is
        ignored, as by `acknowledge`); the window is refilled once, after the last."""
        ids = self.by_packet_id
        done: list[Delivery] = []
        for packet_id in packet_ids:
            d = ids.get(packet_id)
            if d is None or d.qos != 1:
                continue
            del ids[packet_id]
            done.append(d)
        if done:
            self.settle_all(done)

    def received(self, packet_id: int) -> bool:
        """PUBREC for a QoS 2 delivery: the message is now the client's; PUBREL follows."""
        d = self.by_packet_id.get(packet_id)
        if d is None or d.qos != 2:
            return False
        self.restate(d, "released")
        return True

    def completed(self, packet_id: int) -> bool:
        """PUBCOMP for a QoS 2 delivery."""
        ids = self.by_packet_id
        d = ids.get(packet_id)
        if d is None or d.state != "released":
            return False
        del ids[packet_id]
        return self.settle(d)

    def _resend(self, link: Link) -> None:
        """Resume every flow left inflight, in the order first sent: the PUBLISH again
        (DUP), or PUBREL for a QoS 2 delivery the client already received."""
        for d in list(self.inflight.values()):
            if d.state == "released" and d.wire_id is not None:
                cast(ReleasingLink, link).send_release(d.wire_id)
            else:
                link.send_message(d, True, None)

    # -- inbound QoS 2 ---------------------------------------------------------------------

    def inbound_qos2_seen(self, packet_id: int) -> bool:
        return packet_id in self.inbound_qos2

    def inbound_qos2_add(self, packet_id: int) -> None:
        ids = self.inbound_qos2
        if ids is _NO_PACKET_IDS:
            ids = self.inbound_qos2 = set()
        ids.add(packet_id)
        if self.journaled:
            self._engine.inbound_qos2_put(self.client_id, packet_id)

    def inbound_qos2_release(self, packet_id: int) -> bool:
        ids = self.inbound_qos2
        if packet_id not in ids:  # also when they are the shared empty ones
            return False
        ids.discard(packet_id)
        if self.journaled:
            self._engine.inbound_qos2_delete(self.client_id, packet_id)
        return True

    # -- journal and start-up -------------------------------------------------------------

    def journal_everything(self) -> None:
        super().journal_everything()
        engine = self._engine
        for packet_id in self.inbound_qos2:
            engine.inbound_qos2_put(self.client_id, packet_id)

    def restore_delivery(self, d: Delivery) -> None:
        super().restore_delivery(d)
        pid = d.wire_id
        if pid is not None and self.inflight.get(d.seq) is d:
            ids = self.by_packet_id
            if ids is _NO_DELIVERIES:
                ids = self.by_packet_id = {}
            ids[pid] = d

    def restore_transport_state(self, stored: StoredSession) -> None:
        """At start-up: the journaled ids of inbound QoS 2 messages not yet released."""
        if stored.inbound_qos2:
            ids = self.inbound_qos2
            if ids is _NO_PACKET_IDS:
                ids = self.inbound_qos2 = set()
            ids.update(stored.inbound_qos2)
