"""A QoS 1 subscriber that keeps up is not made to drop: publishers wait for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import raw
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire holds publishers back for a subscriber")


def test_fast_publisher_slow_window_subscriber_loses_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    # a generous progress window: on a loaded machine the subscriber may not acknowledge
    # within the default second, and then (by design) it no longer counts as keeping up
    srv = server_factory(
        memory=True,
        max_inflight=2,
        max_queued_messages=10,
        extra_args=["--backpressure-progress-window", "30"],
    )
    # a raw subscriber, so the test knows when the server has seen its acknowledgement
    # (paho sends its PUBACK after handing the message over, which raced the blast below)
    sub = raw.connected_client(srv.host, srv.mqtt_port, "keeps-up")
    sub.subscribe(1, [("bp/#", 1)])
    pub = raw.connected_client(srv.host, srv.mqtt_port, "blaster")
    pub.publish_complete("bp/x", b"warm-up", qos=1, packet_id=1)
    warm = sub.recv_publish()
    assert warm.payload == b"warm-up"
    sub.ack(warm)
    sub.send(raw.PINGREQ_BYTES)
    sub.expect(raw.PINGRESP)  # answered after the PUBACK: the subscriber is keeping up
    total = 400
    # far more than window + queue (12), all at once, without waiting for PUBACKs
    pub.send(
        b"".join(
            raw.publish("bp/x", b"%d" % i, qos=1, packet_id=i % 60000 + 2) for i in range(total)
        )
    )
    got = []
    for _ in range(total):
        pkt = sub.recv_publish(timeout=10)
        sub.ack(pkt)
        got.append(int(pkt.payload))
    assert got == list(range(total))  # every one, in order, none dropped
    acks = [pub.expect(4, timeout=10) for _ in range(total)]
    assert len(acks) == total
