"""A subscriber that acknowledges a whole window of QoS 1 deliveries in one write (the
server takes such a run of PUBACKs in one step) gets every message once, in order, and its
window refilled after each run; the publisher gets every PUBACK."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from helpers import raw
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("the server's inflight window and ack runs")

WINDOW = 8


def test_window_acked_in_one_write_refills_and_loses_nothing(
    server_factory: Callable[..., ServerProcess],
) -> None:
    srv = server_factory(
        memory=True,
        max_inflight=WINDOW,
        extra_args=["--backpressure-progress-window", "30"],
    )
    sub = raw.connected_client(srv.host, srv.mqtt_port, "acks-in-runs")
    sub.subscribe(1, [("runs/#", 1)])
    pub = raw.connected_client(srv.host, srv.mqtt_port, "publisher")
    total = 150
    pub.send(
        b"".join(raw.publish("runs/x", b"%d" % i, qos=1, packet_id=i + 1) for i in range(total))
    )
    rng = random.Random(12)
    got: list[int] = []
    while len(got) < total:
        # the server sends at most a window before it hears back
        window = [sub.recv_publish(timeout=10) for _ in range(min(WINDOW, total - len(got)))]
        ids = [p.packet_id for p in window]
        assert None not in ids and len(set(ids)) == len(ids)  # distinct ids in flight
        got.extend(int(p.payload) for p in window)
        rng.shuffle(window)
        # the whole window in one write, in any order, plus an id that is not in flight
        sub.send(b"".join(raw.puback(p.packet_id) for p in window) + raw.puback(65000))
    assert got == list(range(total))  # every one, once, in order
    sub.send(raw.PINGREQ_BYTES)
    sub.expect(raw.PINGRESP)  # nothing else came (a duplicate would arrive before this)
    acks = [pub.expect(raw.PUBACK, timeout=10) for _ in range(total)]
    assert [a.packet_id for a in acks] == [i + 1 for i in range(total)]
