"""A QoS 1 subscriber's window refill (core/session.py `pump` -> mqtt/link.py
`send_window`): the deliveries one run of its PUBACKs frees room for are encoded in one
join and written while that read is being handled, not at the end of the loop turn, so
the subscriber works on them while the server goes on to the publishers' reads. Over real
sockets, in-process servers: what arrives (order, payloads of every size, packet ids, MQTT
3.1.1 and 5) is the same as one delivery at a time, and nothing is lost."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers import raw, raw5
from helpers.inproc import InProcessServer, running
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V5, Subscribe, SubscriptionOptions
from pushwire.mqtt.protocol import MQTTServerProtocol

pytestmark = pytest.mark.pushwire_only("in-process servers and their counters")

WINDOW = 20  # max_inflight, the default


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer(connect_rate_per_client_id=0))


def server_side(srv: InProcessServer, client_id: str) -> MQTTServerProtocol:
    assert srv.server is not None
    broker = srv.server.mqtt

    def find() -> MQTTServerProtocol:
        for proto in broker.connections:
            if proto.conn.client_id == client_id:
                return proto
        raise AssertionError(f"no connection of {client_id!r}")

    return srv.call(find)


def publish_all(srv: InProcessServer, payloads: list[bytes], topics: list[str]) -> None:
    """One write of QoS 1 PUBLISHes; returns once every PUBACK came back."""
    with raw.connected_client(srv.host, srv.mqtt_port, "refill-pub") as pub:
        pub.send(
            b"".join(
                raw.publish(topic, payload, qos=1, packet_id=i + 1)
                for i, (topic, payload) in enumerate(zip(topics, payloads, strict=True))
            )
        )
        for i in range(len(payloads)):
            assert pub.expect(raw.PUBACK, timeout=10).raw == raw.puback(i + 1)


def receive(sub: raw.RawClient, count: int) -> list[raw.Packet]:
    return [sub.recv_publish(timeout=10) for _ in range(count)]


def test_a_window_refill_is_written_while_the_acks_are_handled(srv: InProcessServer) -> None:
    """The refill goes to the transport inside the read of the acks that freed the room
    (the old pump left it in the turn's buffer for `_flush`)."""
    assert srv.server is not None
    stats = srv.server.hub.stats
    with raw.connected_client(srv.host, srv.mqtt_port, "refill-sub") as sub:
        assert sub.subscribe(1, [("t/#", 1)]).granted == [1]
        publish_all(srv, [b"%03d" % i for i in range(3 * WINDOW)], ["t/a"] * (3 * WINDOW))
        first = receive(sub, WINDOW)  # the window; 40 wait in the session's queue
        proto = server_side(srv, "refill-sub")
        # per read of the subscriber: bytes that went to its transport during that read,
        # and what was left in the turn's buffer for the flush
        seen: list[tuple[int, int]] = []
        original: Callable[[bytes], None] = proto.data_received

        def watched(data: bytes) -> None:
            before = stats.bytes_sent
            original(data)
            seen.append((stats.bytes_sent - before, len(proto._out)))

        def install() -> None:
            proto.data_received = watched  # type: ignore[method-assign]

        srv.call(install)
        sub.send(b"".join(raw.puback(p.packet_id) for p in first))
        second = receive(sub, WINDOW)
        assert [p.payload for p in first + second] == [b"%03d" % i for i in range(2 * WINDOW)]
        wire = sum(len(p.raw) for p in second)
        acked_reads = srv.call(lambda: list(seen))
        assert acked_reads, "the acks were never read"
        # every byte of the refill went out within the reads of the acks, none at the flush
        assert sum(sent for sent, _ in acked_reads) >= wire
        assert all(left == 0 for _, left in acked_reads)
        sub.send(b"".join(raw.puback(p.packet_id) for p in second))
        third = receive(sub, WINDOW)
        assert [p.payload for p in third] == [b"%03d" % i for i in range(2 * WINDOW, 3 * WINDOW)]
        for p in third:
            sub.ack(p)
        assert sub.is_open()


SIZES = [1, 60, 61, 62, 63, 64, 100, 124, 125, 126, 127, 128, 200, 1000, 20_000, 70_000]


@pytest.mark.parametrize("level", [4, 5])
def test_refilled_windows_deliver_everything_in_order(srv: InProcessServer, level: int) -> None:
    """A backlog drained window by window: payloads around the one-byte remaining-length
    bound (the prebuilt headers) and far above it, several topics, packet ids unique among
    what is unacknowledged; nothing lost, nothing twice."""
    payloads = [bytes([i % 251]) * SIZES[i % len(SIZES)] for i in range(6 * WINDOW)]
    topics = [f"t/{'ab'[i % 2]}/{'x' * (i % 7)}" for i in range(6 * WINDOW)]
    sub = raw.RawClient(srv.host, srv.mqtt_port)
    with sub:
        if level == 5:
            sub.send(raw5.connect("refill-sub5"))
            assert sub.expect(raw.CONNACK).body[1] == 0
        else:
            assert sub.mqtt_connect("refill-sub4").return_code == 0
        if level == 5:
            sub.send(encode(Subscribe(1, [("t/#", SubscriptionOptions(qos=1))]), PROTOCOL_V5))
        else:
            sub.send(raw.subscribe(1, [("t/#", 1)]))
        sub.expect(raw.SUBACK)
        # MQTT 5: an empty property section before the payload (helpers/raw.py reads 3.1.1)
        skip = 1 if level == 5 else 0
        publish_all(srv, payloads, topics)
        got: list[tuple[str, bytes]] = []
        while len(got) < len(payloads):
            window = receive(sub, min(WINDOW, len(payloads) - len(got)))
            ids = [p.packet_id for p in window]
            assert len(set(ids)) == len(ids) and all(0 < i < 65536 for i in ids)
            assert all(p.qos == 1 and not p.dup and not p.retain for p in window)
            got.extend((p.topic, p.payload[skip:]) for p in window)
            sub.send(b"".join(raw.puback(i) for i in ids))
        assert got == list(zip(topics, payloads, strict=True))
        assert sub.is_open()  # and nothing more came before the PINGRESP
        assert not sub._pending
    assert srv.server is not None
    stats = srv.server.hub.stats
    counted: Any = srv.call(lambda: (stats.messages_sent, stats.queue_overflow))
    assert counted[0] >= len(payloads) and counted[1] == 0
