"""The MQTT part of a session: packet ids, the QoS 2 handshakes, the inbound QoS 2 table.

core.session.Session keeps the protocol-neutral state (subscriptions, the queue, and the
inflight window keyed by each delivery's wire id). `MqttSession` adds what only MQTT has,
and the hub makes every session as one (the MQTT listener gives it the factory,
mqtt/broker.py):

- a packet id (1..65535) for each delivery entering the inflight window, never one still
  in use: its wire id, so the core's window is the map from packet id to delivery that
  PUBACK, PUBREC and PUBCOMP look up (one index: the QoS 1 path keeps no second one);
- the "released" state of an outgoing QoS 2 delivery (PUBREC received, PUBREL sent), and
  PUBREL instead of the PUBLISH when a reconnect resumes it;
- the ids of inbound QoS 2 messages routed but not yet released (PUBREL), so that a resend
  is not routed twice.

The next packet id and the inbound ids are an `MqttState` in the session's
`transport_state` slot, made when first needed: a session that only publishes at QoS 0/1
makes none, and an `MqttSession` has no __init__ of its own (connect storms).

Packet ids travel on the delivery (`Delivery.wire_id`), so they are journaled with it and a
persistent session resumes under the same ids after a restart (MQTT-4.4.0-1); the inbound
ids have their own table in the engine (`inbound_qos2_put` / `_delete`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from pushwire.core.session import Delivery, Link, Session

if TYPE_CHECKING:
    from pushwire.model import StoredSession

MAX_PACKET_ID = 65535

# the inbound ids of a session that has had none (as core.session's _NO_*): a subscriber
# never builds a set
_NO_PACKET_IDS = cast("set[int]", frozenset())


class ReleasingLink(Link, Protocol):
    """An MQTT connection attached to a session (mqtt/link.py): a core Link that also
    sends PUBREL."""

    def send_release(self, packet_id: int) -> None:
        """Send PUBREL (resuming a QoS 2 flow after a reconnect)."""


class MqttState:
    """What MQTT keeps of one session beside the core's state: made at the session's first
    delivery that needs a packet id, or its first inbound QoS 2 message."""

    __slots__ = ("inbound_qos2", "next_packet_id")

    def __init__(self) -> None:
        # where the search for a free packet id starts: the one after the last given
        self.next_packet_id = 1
        # inbound QoS 2 packet ids routed, not yet released by the client's PUBREL; the
        # shared empty set until the first
        self.inbound_qos2: set[int] = _NO_PACKET_IDS


class MqttSession(Session):
    """A session of an MQTT client: `Session` plus packet ids and the QoS 2 states.

    `inflight` is keyed by packet id (the deliveries' wire ids)."""

    __slots__ = ()

    def _state(self) -> MqttState:
        state: MqttState | None = self.transport_state
        if state is None:
            state = self.transport_state = MqttState()
        return state

    @property
    def inbound_qos2(self) -> set[int]:
        """Inbound QoS 2 packet ids not yet released (read only)."""
        state: MqttState | None = self.transport_state
        return _NO_PACKET_IDS if state is None else state.inbound_qos2

    # -- packet ids: given as a delivery enters the window --------------------------------

    def _track(self, d: Delivery) -> None:
        state: MqttState | None = self.transport_state
        if state is None:  # the session's first delivery
            state = self.transport_state = MqttState()
        inflight = self.inflight
        pid = state.next_packet_id
        # packet ids are 1..65535 and must not collide with one still inflight
        while pid in inflight:
            pid = pid % MAX_PACKET_ID + 1
        d.wire_id = pid
        inflight[pid] = d
        state.next_packet_id = pid % MAX_PACKET_ID + 1

    def _track_all(self, deliveries: list[Delivery]) -> None:
        state: MqttState | None = self.transport_state
        if state is None:  # queued while offline, never sent before
            state = self.transport_state = MqttState()
        inflight = self.inflight
        pid = state.next_packet_id
        for d in deliveries:
            while pid in inflight:
                pid = pid % MAX_PACKET_ID + 1
            d.wire_id = pid
            inflight[pid] = d
            pid = pid % MAX_PACKET_ID + 1
        state.next_packet_id = pid

    # -- the client's acknowledgements of our deliveries -------------------------------

    def acknowledge(self, packet_id: int) -> bool:
        """PUBACK for a QoS 1 delivery."""
        d = self.inflight.get(packet_id)
        if d is None or d.qos != 1:
            return False
        return self.settle(d)

    def acknowledge_all(self, packet_ids: list[int]) -> None:
        """PUBACKs for QoS 1 deliveries, in order (one that matches nothing inflight is
        ignored, as by `acknowledge`); the window is refilled once, after the last."""
        # the packet ids are the window's keys; QoS 2 ends with PUBCOMP, never with PUBACK
        self.settle_run(packet_ids, 1)

    def received(self, packet_id: int) -> bool:
        """PUBREC for a QoS 2 delivery: the message is now the client's; PUBREL follows."""
        d = self.inflight.get(packet_id)
        if d is None or d.qos != 2:
            return False
        self.restate(d, "released")
        return True

    def completed(self, packet_id: int) -> bool:
        """PUBCOMP for a QoS 2 delivery."""
        d = self.inflight.get(packet_id)
        if d is None or d.state != "released":
            return False
        return self.settle(d)

    def _resend(self, link: Link) -> None:
        """Resume every flow left inflight, in the order first sent: the PUBLISH again
        (DUP), or PUBREL for a QoS 2 delivery the client already received."""
        for packet_id, d in list(self.inflight.items()):
            if d.state == "released":
                cast(ReleasingLink, link).send_release(packet_id)
            else:
                link.send_message(d, True, None)

    # -- inbound QoS 2 ---------------------------------------------------------------------

    def inbound_qos2_seen(self, packet_id: int) -> bool:
        return packet_id in self.inbound_qos2

    def inbound_qos2_add(self, packet_id: int) -> None:
        state = self._state()
        ids = state.inbound_qos2
        if ids is _NO_PACKET_IDS:
            ids = state.inbound_qos2 = set()
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

    def restore_transport_state(self, stored: StoredSession) -> None:
        """At start-up: the journaled ids of inbound QoS 2 messages not yet released."""
        if stored.inbound_qos2:
            state = self._state()
            if state.inbound_qos2 is _NO_PACKET_IDS:
                state.inbound_qos2 = set()
            state.inbound_qos2.update(stored.inbound_qos2)
