"""engine=redis: an offline persistent session whose node died misses nothing published
between the death and its adoption: the node that takes it replays the fan-out stream
from the position up to which the dead node had queued (mqtt/handover.py)."""

from __future__ import annotations

import pytest

from helpers.raw import RawClient, connected_client

from .cluster_util import StartNode, cluster_node, publish_http, wait_for

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")

FAST = (
    "--cluster-heartbeat-interval",
    "0.2",
    "--cluster-node-timeout",
    "1",
    "--cluster-takeover-timeout",
    "3",
)


def test_messages_published_while_the_holder_is_dead_reach_the_session(
    cluster_node: StartNode,
) -> None:
    a, b = cluster_node(*FAST), cluster_node(*FAST)
    with connected_client(a.host, a.mqtt_port, "gap-1", clean_session=False) as dev:
        dev.subscribe(1, [("g/#", 1)])
    # published on B while the client is offline: A (the holder) queues it from the
    # fan-out, unless it dies first (B's PUBACK does not wait for A)
    with connected_client(b.host, b.mqtt_port, "pub-1") as pub:
        pub.publish_complete("g/1", b"before-kill", qos=1, packet_id=1)
    a.kill()
    # acknowledged by B while nobody holds the session: only a replay can queue it
    with connected_client(b.host, b.mqtt_port, "pub-2") as pub:
        pub.publish_complete("g/1", b"during-gap", qos=1, packet_id=1)
    dev = RawClient(b.host, b.mqtt_port)

    def connected() -> bool:
        nonlocal dev
        ack = dev.mqtt_connect("gap-1", clean_session=False)
        if ack.return_code == 0:
            return True
        dev.close()  # refused (3) while A's heartbeat has not lapsed yet: try again
        dev = RawClient(b.host, b.mqtt_port)
        return False

    try:
        wait_for(connected, "node B to take the session of dead node A")
        # the marker: published after the client is back, through the live route
        assert publish_http(b, "g/1", b"after", qos="1").status_code == 201
        got: list[bytes] = []
        while b"after" not in got:
            pkt = dev.recv_publish()
            got.append(pkt.payload)
            dev.ack(pkt)
        assert got.index(b"before-kill") < got.index(b"during-gap") < got.index(b"after")
    finally:
        dev.close()
