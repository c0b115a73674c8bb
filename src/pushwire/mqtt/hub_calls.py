"""The machine's *In events as hub calls: route a PUBLISH (`Hub.submit`) and queue its ack
on the receipt (acks.py), a run of plain QoS 0/1 PUBLISHes of one read as a batch
(`_publish_run`), subscribe
(SUBACK, then retained messages), unsubscribe, and the client's acks of our deliveries
handed to its session. The ack bytes and reason codes come from the machine."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pushwire.core.message import Message, next_uid
from pushwire.mqtt.events import Authenticated, AuthTimer, SubscribeIn, UnsubscribeIn
from pushwire.mqtt.handle_publish import (
    ACK,
    PUBACK_BYTE0,
    message_of,
    room_for_flows,
    routes_plainly,
)
from pushwire.mqtt.packets import PubAck, Publish, ReasonCode

if TYPE_CHECKING:
    from pushwire.core.hub import Hub
    from pushwire.core.identity import AuthResult
    from pushwire.core.routes import Route
    from pushwire.mqtt.acks import AckQueue
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import ConnectIn, Event, OutboundAck, PublishIn
    from pushwire.mqtt.packets import Packet
    from pushwire.mqtt.session import MqttSession


class HubCalls:
    """Mixed into MQTTServerProtocol, which owns these attributes and `_write`."""

    hub: Hub
    conn: MQTTConnection
    session: MqttSession | None
    _closing: bool
    _acked_at: list[float]

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

    def _publish_run(
        self, packets: list[Packet], start: int, spent_at: int, received: float, burst: int
    ) -> int:
        """Route packets[start:] while they are plain QoS 0/1 PUBLISHes, without the
        machine's events: what `handle_publish` + `_publish` + `AckQueue.add_published`
        do for each, with the topic rules, the ACL and the route looked up once per distinct
        topic, and the run's PUBACKs written as one. Returns the index of the first packet
        not handled (`start` when none was): it goes through the machine, which gives its
        exact answer (QoS 2, properties, $SYS, a refused or too deep topic, Receive Maximum
        reached). Stops after the `burst`-th QoS 1 PUBLISH routed with backpressure on
        (`backpressure_publish_burst`; 1: the packet that engaged it; at once when a queue
        is at its bound or the store is behind, `Backpressure.at_bound`), or after the one that
        spent the turn's fan-out budget (`hub.routed >= spent_at`), for the read loop to
        hold or defer the rest as it would after that packet. `received`: the read's
        monotonic time.

        Only when an ack goes out as soon as its message is routed and queued: a single
        node (no broker) whose engine promises no durability, with no ack waiting before
        it; otherwise every packet takes the machine's path and its `Receipt`."""
        hub = self.hub
        session = self.session
        if session is None or hub.broker is not None or hub.engine.durable:
            return start
        acks = self.__dict__.get("_acks")
        if acks is not None and not acks.idle:
            return start
        conn = self.conn
        stats = hub.stats
        pressure = hub.pressure
        client_id = session.client_id
        # topic -> (its route, or None when the topic needs the machine's answer; whether
        # a delivery may go to this very client, whose acks must then go out first)
        routes: dict[str, tuple[Route | None, bool]] = {}
        last_topic: str | None = None  # the topic of the packet before, and its route
        route: Route | None = None
        own = False
        pending: list[bytes] = []
        add_ack = pending.append  # `_write_acks` clears it in place
        pack_ack = ACK.pack
        wall = time.time()  # one creation time for one read's messages, as they arrived
        # MQTT 5's count of open flows does not move in a run: each ack is written as its
        # message is routed (`inbound_open` would go up and down by one)
        flows_ok = room_for_flows(conn)
        end = len(packets)
        i = start
        # the log appends the run's messages in one pass per topic at the end of the run
        # (`MessageLog.observe_run`); allowed here: no ack waits for a journal
        held = hub.hold_observers()
        try:
            while i < end and not self._closing:
                p = packets[i]
                if type(p) is not Publish or p.properties:
                    break
                qos = p.qos
                if qos > 1 or (qos and not flows_ok):
                    break
                topic = p.topic
                if topic is not last_topic:
                    # a run is mostly one topic: the decoder hands out one str per name
                    known = routes.get(topic)
                    if known is None:
                        known = routes[topic] = self._run_route(topic)
                    route, own = known
                    last_topic = topic
                if route is None:
                    break
                if own and pending:
                    # its own subscription: the acks before it precede the delivery, as one by one
                    self._write_acks(pending, received)
                msg = Message(
                    topic, p.payload, qos, p.retain, {}, None, wall, next_uid(), None, client_id
                )
                stats.messages_received += 1
                hub.route_along(msg, route)
                i += 1
                if qos:
                    pid = p.packet_id
                    assert pid is not None
                    if hub.quota_exceeded:
                        # every matching queue was full: 0x97 on MQTT 5 (docs/queues.md)
                        pending.append(conn.send(PubAck(pid, ReasonCode.QUOTA_EXCEEDED)))
                    else:
                        add_ack(pack_ack(PUBACK_BYTE0, 2, pid))
                    if pressure.active:
                        # a subscriber that keeps up is behind: the publisher is held, but
                        # only after up to `burst` of this read, so that its window is
                        # acked (and refilled) whole, not in two halves that would split
                        # every later read of it (bench/README.md, "QoS 1, sixth pass");
                        # right away when a queue is at its bound or the store is behind
                        burst -= 1
                        if burst <= 0 or pressure.at_bound or hub.store_held:
                            break
                elif pressure.active and hub.store_held:
                    break
                if hub.routed >= spent_at:
                    break
        finally:
            try:
                if held:
                    hub.release_observers()
            finally:
                # the acks of what was routed, also when a bug stops the run (as one by one)
                if pending:
                    self._write_acks(pending, received)
        return i

    def _run_route(self, topic: str) -> tuple[Route | None, bool]:
        """(the route, whether it may deliver to this client) for a topic `_publish_run`
        may route itself; (None, False) when the machine must answer for it."""
        if not routes_plainly(self.conn, topic):
            return None, False
        route = self.hub.route_of(topic)
        session = self.session
        # a shared group may pick this client
        return route, bool(route.groups) or any(t.session is session for t in route.targets)

    def _write_acks(self, pending: list[bytes], received: float) -> None:
        """The run's PUBACKs so far as one write; each counts in the publish-to-ack
        histogram as `AckQueue.add_published` would."""
        self._write(b"".join(pending) if len(pending) > 1 else pending[0])
        if received >= 0:
            self._acked_at.extend([received] * len(pending))
        pending.clear()

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
