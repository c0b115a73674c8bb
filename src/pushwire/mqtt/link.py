"""What a session sends through its MQTT connection (core.session.Link, plus PUBREL:
mqtt/session.py ReleasingLink): deliveries encoded by the machine (encode once, Maximum
Packet Size, topic aliases), PUBREL on resume, the close of a connection taken over."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from pushwire.mqtt.codec.publish import encode_publish_plain
from pushwire.mqtt.codec.publish_caches import (
    PACKET_ID,
    SMALL_PUBLISH_HEADS,
    topic_field,
)
from pushwire.mqtt.packets import PROTOCOL_V5, PubRel

if TYPE_CHECKING:
    from pushwire.core.hub import Hub
    from pushwire.core.session import Delivery
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import Event
    from pushwire.mqtt.session import MqttSession


class LinkSide:
    """Mixed into MQTTServerProtocol, which owns these attributes and methods."""

    hub: Hub
    conn: MQTTConnection
    session: MqttSession | None
    _paused: bool
    _closing: bool
    _loop: asyncio.AbstractEventLoop
    # created_at of the deliveries (time.time) and receipt of the PUBLISHes acked
    # (time.monotonic) written this turn, observed in `_observe_latencies`
    _sent_at: list[float]
    _acked_at: list[float]
    _out: list[bytes]

    if TYPE_CHECKING:

        def _write(self, data: bytes) -> None: ...
        def _write_now(self, data: bytes) -> None: ...
        def _act(self, events: list[Event]) -> None: ...

    @property
    def client_id(self) -> str:
        return self.conn.client_id

    @property
    def receive_maximum(self) -> int:
        """The client's Receive Maximum: inflight deliveries it accepts."""
        return self.conn.client_receive_maximum

    @receive_maximum.setter
    def receive_maximum(self, value: int) -> None:
        self.conn.client_receive_maximum = value

    @property
    def client_max_packet_size(self) -> int | None:
        """MQTT 5 Maximum Packet Size the client declared (the push gateway sends a small
        notice instead of a push that would not fit); None: no limit declared."""
        return self.conn.client_max_packet_size

    def writable(self) -> bool:
        return not self._paused and not self._closing

    def send_message(
        self, delivery: Delivery, dup: bool, wire_cache: dict[Any, Any] | None
    ) -> None:
        conn = self.conn
        msg = delivery.message
        if (
            wire_cache is None
            and conn.protocol_level != PROTOCOL_V5
            and conn.client_max_packet_size is None
        ):
            # a 3.1.1 delivery, one copy (the queue's path, every delivery of a busy QoS 1
            # subscriber): what `encode_delivery` would do, without its two calls and checks
            self._write(
                encode_publish_plain(
                    msg.topic, msg.payload, delivery.qos, delivery.retain, dup,
                    delivery.wire_id, False,
                )
            )  # fmt: skip
            self.hub.stats.messages_sent += 1
            self._sent_at.append(msg.created_at)
            return
        data = conn.encode_delivery(delivery, dup, wire_cache)
        if data is None:
            # too large for this client: complete the flow as if sent (MQTT-3.1.2-25), on
            # the next turn, as the session is in the middle of its pump
            if delivery.qos and delivery.wire_id is not None:
                self._loop.call_soon(self._complete_dropped, delivery)
            return
        self._write(data)
        self.hub.stats.messages_sent += 1
        if wire_cache is None:
            # the hub's fan-out passes a cache and observes the latency of all its sends;
            # here it is observed when the turn's bytes go to the transport (`_flush`)
            self._sent_at.append(delivery.message.created_at)

    def send_window(self, deliveries: list[Delivery]) -> None:
        """The deliveries a session's pump just moved from its queue into the inflight
        window (first sends, in order, packet ids set): encoded in one join and written at
        once when nothing waits before them in this turn's buffer. The pump runs on the
        subscriber's acks, and its next window then reaches the socket before this loop
        turn goes on to route the publishers' reads (`_flush` would send it only after
        them): the subscriber works on it meanwhile instead of waiting (bench/README.md,
        "QoS 1, sixth pass")."""
        conn = self.conn
        if conn.protocol_level == PROTOCOL_V5 or conn.client_max_packet_size is not None:
            # MQTT 5 (aliases, properties, a Maximum Packet Size): one by one, as before
            for d in deliveries:
                self.send_message(d, False, None)
            return
        # `encode_publish_plain` for each, inlined for a small QoS 1 PUBLISH
        parts: list[bytes] = []
        add = parts.append
        heads = SMALL_PUBLISH_HEADS
        pack = PACKET_ID.pack
        created: list[float] = []
        last_topic = None
        field = b""
        fixed = 0  # the topic field and the packet id
        for d in deliveries:
            msg = d.message
            topic = msg.topic
            payload = msg.payload
            if topic is not last_topic:  # a window is mostly one or a few topics
                last_topic = topic
                field = topic_field(topic)
                fixed = len(field) + 2
            length = fixed + len(payload)
            pid = d.wire_id
            if d.qos == 1 and pid is not None and 0 < pid < 65536 and length < 128:
                parts += (heads[0x33 if d.retain else 0x32][length], field, pack(pid), payload)
            else:
                add(encode_publish_plain(topic, payload, d.qos, d.retain, False, pid, False))
            created.append(msg.created_at)
        data = b"".join(parts)
        self.hub.stats.messages_sent += len(deliveries)
        if self._out or len(deliveries) == 1:
            # bytes of this turn wait before it: behind them, at the flush; and a single
            # delivery (the refill of one lone ack: a PUBCOMP, an ack not in a run) waits
            # for the flush too, so n lone acks in one read cost one write, not n
            self._write(data)
            self._sent_at.extend(created)
            return
        self._write_now(data)
        self.hub.stats.delivery_latency.observe_since(time.time(), created)

    def _observe_latencies(self) -> None:
        """The delivery and publish-to-ack latencies of what this turn wrote: one clock
        read each for all of them (exact counts, one observation per message)."""
        stats = self.hub.stats
        sent_at = self._sent_at
        if sent_at:
            stats.delivery_latency.observe_since(time.time(), sent_at)
            sent_at.clear()
        acked_at = self._acked_at
        if acked_at:
            stats.publish_ack_latency.observe_since(time.monotonic(), acked_at)
            acked_at.clear()

    def _complete_dropped(self, delivery: Delivery) -> None:
        session = self.session
        pid = delivery.wire_id
        if session is None or pid is None or session.inflight.get(pid) is not delivery:
            return
        if delivery.qos == 1:
            session.acknowledge(pid)
        else:
            session.received(pid)
            session.completed(pid)

    def send_release(self, packet_id: int) -> None:
        self._write(self.conn.send(PubRel(packet_id)))

    def close_taken_over(self) -> None:
        self._act(self.conn.taken_over())
