"""A QoS 1 subscriber that keeps up is not made to drop: publishers wait for it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import raw
from helpers.clients import PahoClient
from helpers.server import ServerProcess

pytestmark = pytest.mark.pushwire_only("pushwire holds publishers back for a subscriber")


def test_fast_publisher_slow_window_subscriber_loses_nothing(
    server_factory: Callable[..., ServerProcess], paho_client: Callable[..., PahoClient]
) -> None:
    srv = server_factory(memory=True, max_inflight=2, max_queued_messages=10)
    sub = paho_client(srv, "keeps-up")
    sub.subscribe("bp/#", qos=1)
    pub = raw.connected_client(srv.host, srv.mqtt_port, "blaster")
    pub.publish_complete("bp/x", b"warm-up", qos=1, packet_id=1)
    assert sub.get(timeout=5).payload == b"warm-up"  # the subscriber has acknowledged
    total = 400
    # far more than window + queue (12), all at once, without waiting for PUBACKs
    pub.send(
        b"".join(
            raw.publish("bp/x", b"%d" % i, qos=1, packet_id=i % 60000 + 2) for i in range(total)
        )
    )
    got = [int(sub.get(timeout=10).payload) for _ in range(total)]
    assert got == list(range(total))  # every one, in order, none dropped
    acks = [pub.expect(4, timeout=10) for _ in range(total)]
    assert len(acks) == total
