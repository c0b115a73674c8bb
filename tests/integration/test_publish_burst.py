"""Backpressure holds a QoS 1 publisher after the rest of its read, up to
`backpressure_publish_burst` PUBLISHes (mqtt/hub_calls.py `_publish_run`), not right after
the packet that found a subscriber behind: its window is acked whole, so it refills it in
one write instead of two halves that would split every later read of it. Over real
sockets, an in-process server with a small threshold and window so that the pressure
engages in the middle of one write."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers import raw
from helpers.inproc import InProcessServer, running
from helpers.workers import wait_for

pytestmark = pytest.mark.pushwire_only("in-process server and its counters")

THRESHOLD = 10  # backpressure_queue_messages
WINDOW = 2  # max_inflight
BURST = 32  # backpressure_publish_burst, the default
SENT = 30  # one write: the pressure engages at about THRESHOLD + WINDOW of them


def routed_when_held(srv: InProcessServer, held_before: int) -> int:
    """The PUBLISHes routed so far, read together with the hold counter on the server's
    loop once the publisher was held: what its run routed before the hold."""
    assert srv.server is not None
    stats = srv.server.hub.stats

    def held() -> int | None:
        held, routed = srv.call(lambda: (stats.publishers_held, stats.messages_received))
        return routed if held > held_before else None

    return wait_for(held, 10, "the publisher held")


def keep_up_then_blast(
    srv: InProcessServer, sub: raw.RawClient, pub: raw.RawClient, count: int
) -> tuple[raw.Packet, int]:
    """`sub` subscribes to t/# at QoS 1 and acks one delivery, so it keeps up
    (core/pressure.py: a full queue then holds its publishers instead of refusing their
    messages); then `pub` sends `count` QoS 1 PUBLISHes (ids and payloads 2..) in one
    write. Returns the first delivery and the hold counter from before the write."""
    assert srv.server is not None
    stats = srv.server.hub.stats
    assert sub.subscribe(1, [("t/#", 1)]).granted == [1]
    pub.publish_complete("t/a", b"0", qos=1, packet_id=1)
    first = sub.recv_publish()
    sub.ack(first)
    assert sub.is_open()  # its PUBACK was handled before the write
    held_before = srv.call(lambda: stats.publishers_held)
    pub.send(
        b"".join(raw.publish("t/a", b"%d" % n, qos=1, packet_id=n) for n in range(2, count + 2))
    )
    return first, held_before


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(
        InProcessServer(
            connect_rate_per_client_id=0,
            backpressure_queue_messages=THRESHOLD,
            max_inflight=WINDOW,
        )
    )


def test_a_held_publisher_gets_its_whole_read_acked(srv: InProcessServer) -> None:
    assert srv.server is not None
    stats = srv.server.hub.stats
    with (
        raw.connected_client(srv.host, srv.mqtt_port, "burst-sub") as sub,
        raw.connected_client(srv.host, srv.mqtt_port, "burst-pub") as pub,
    ):
        first, held_before = keep_up_then_blast(srv, sub, pub, SENT)
        # held only once the whole write was routed: the run that engaged the pressure
        # went on to the end of the read (the old path held the publisher right after the
        # packet that engaged it, with WINDOW + THRESHOLD + 1 routed)
        assert routed_when_held(srv, held_before) == 1 + SENT
        # so every PUBACK of the write came, in order, while the subscriber acked nothing
        for n in range(2, SENT + 2):
            assert pub.expect(raw.PUBACK, timeout=5).raw == raw.puback(n)
        got = [first.payload]
        while len(got) < SENT + 1:
            pkt = sub.recv_publish(timeout=10)
            sub.ack(pkt)
            got.append(pkt.payload)
        assert got == [b"0", *(b"%d" % n for n in range(2, SENT + 2))]
        # the hold is over: the publisher is read again, and nothing was refused
        pub.publish_complete("t/a", b"after", qos=1, packet_id=99)
        after = sub.recv_publish(timeout=10)
        assert after.payload == b"after"
        sub.ack(after)
        assert srv.call(lambda: (stats.queue_overflow, stats.publish_dropped)) == (0, 0)


def test_the_burst_is_bounded(srv: InProcessServer) -> None:
    """A read longer than the burst: the publisher is held after `BURST` PUBLISHes routed
    with the pressure on, and the rest waits for the subscriber, which then gets
    everything in order."""
    assert srv.server is not None
    stats = srv.server.hub.stats
    total = THRESHOLD + WINDOW + BURST + 40
    with (
        raw.connected_client(srv.host, srv.mqtt_port, "bound-sub") as sub,
        raw.connected_client(srv.host, srv.mqtt_port, "bound-pub") as pub,
    ):
        first, held_before = keep_up_then_blast(srv, sub, pub, total)
        # WINDOW sent, THRESHOLD queued, then the one that engaged the pressure and
        # BURST - 1 more: held there, with the rest of the write waiting
        in_run = WINDOW + THRESHOLD + BURST
        assert routed_when_held(srv, held_before) == 1 + in_run
        acked = [pub.expect(raw.PUBACK, timeout=5).packet_id for _ in range(in_run)]
        assert acked == list(range(2, in_run + 2))
        got = [first.payload]
        while len(got) < total + 1:
            pkt = sub.recv_publish(timeout=10)
            sub.ack(pkt)
            got.append(pkt.payload)
        assert got == [b"0", *(b"%d" % n for n in range(2, total + 2))]
        rest = [pub.expect(raw.PUBACK, timeout=5).packet_id for _ in range(total - len(acked))]
        assert acked + rest == list(range(2, total + 2))
        assert srv.call(lambda: stats.queue_overflow) == 0


def test_no_burst_once_a_queue_is_at_its_bound() -> None:
    """Held only at a full queue (no early threshold): what the publishers still send may
    overfill it by one more bound only, so no burst: held right after the packet that
    found it full, as before, and nothing is refused (the burst would have gone past 2x)."""
    bound = 10
    srv = InProcessServer(
        connect_rate_per_client_id=0,
        backpressure_queue_messages=0,
        max_queued_messages=bound,
        max_inflight=WINDOW,
    ).start()
    try:
        assert srv.server is not None
        stats = srv.server.hub.stats
        with (
            raw.connected_client(srv.host, srv.mqtt_port, "full-sub") as sub,
            raw.connected_client(srv.host, srv.mqtt_port, "full-pub") as pub,
        ):
            first, held_before = keep_up_then_blast(srv, sub, pub, SENT)
            assert routed_when_held(srv, held_before) == 1 + WINDOW + bound + 1
            got = [first.payload]
            while len(got) < SENT + 1:
                pkt = sub.recv_publish(timeout=10)
                sub.ack(pkt)
                got.append(pkt.payload)
            assert got == [b"0", *(b"%d" % n for n in range(2, SENT + 2))]
            for n in range(2, SENT + 2):
                assert pub.expect(raw.PUBACK, timeout=5).raw == raw.puback(n)
            assert srv.call(lambda: stats.queue_overflow) == 0
    finally:
        srv.stop()
