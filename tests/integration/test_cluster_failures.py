"""engine=redis failures: kill -9 of a node, Redis restarted. Nothing acknowledged is lost,
and nothing is acknowledged that Redis did not take."""

from __future__ import annotations

import threading

import pytest
import redis

from helpers.clients import PahoClient
from helpers.redis import RedisServer

from .cluster_util import (
    DEADLINE,
    StartNode,
    cluster_node,
    mqtt_subscriber,
    payloads,
    poll,
    publish_http,
    wait_for,
)

__all__ = ["cluster_node"]
pytestmark = pytest.mark.pushwire_only("engine=redis is pushwire's")


def _publish_acked(client: PahoClient, topic: str, payload: bytes) -> bool:
    """QoS 1 publish; True only when the PUBACK came."""
    try:
        info = client.client.publish(topic, payload, qos=1)
        info.wait_for_publish(5)
    except (RuntimeError, ValueError):
        return False
    return info.is_published()


def test_kill9_of_a_node_loses_no_acknowledged_message(cluster_node: StartNode) -> None:
    a, b = cluster_node(), cluster_node()
    publisher = PahoClient(a.host, a.mqtt_port, "pub")
    publisher.connect()
    acked: list[str] = []
    stop = threading.Event()

    def publish_until_cut() -> None:
        i = 0
        while not stop.is_set():
            if not _publish_acked(publisher, "k/t", f"p{i}".encode()):
                return
            acked.append(f"p{i}")
            i += 1

    # a reader on A takes a cursor, then A dies mid-stream (publishes in flight)
    first = poll(a, "k/t", "latest")["cursor"]
    thread = threading.Thread(target=publish_until_cut)
    thread.start()
    wait_for(lambda: len(acked) >= 10, "ten acknowledged publishes")
    body = poll(a, "k/t", first)
    seen = [m["payload"] for m in body["messages"]]
    cursor = body["cursor"]
    a.kill()
    thread.join(15)
    stop.set()
    assert not thread.is_alive()

    # the reader resumes on B from the cursor A gave it: every acknowledged message
    # follows, in publish order, with no gap
    def resumed() -> list[str] | None:
        b_body = poll(b, "k/t", cursor)
        assert not b_body["gap"], b_body
        got = seen + [m["payload"] for m in b_body["messages"]]
        return got if len(got) >= len(acked) else None

    got = wait_for(resumed, "every acknowledged message on node B")
    assert got[: len(acked)] == acked
    assert len(got) <= len(acked) + 1  # at most the one in flight when A died


def test_redis_restart_refuses_meanwhile_and_loses_nothing(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a, b = cluster_node(), cluster_node()
    sub = mqtt_subscriber(b, "sub-b", "s/#")
    acked = []
    for i in range(3):
        r = publish_http(a, "s/t", f"before{i}".encode())
        assert r.status_code == 201, r.text
        acked.append(f"before{i}")
    assert payloads(sub, 3) == [p.encode() for p in acked]
    # connected before Redis goes: a CONNECT must claim its client id in Redis, so one
    # while Redis is down is refused (test_cluster_sessions covers that)
    pub = PahoClient(a.host, a.mqtt_port, "pub-a")
    pub.connect()
    redis_server.stop()
    # HTTP: 503 with the JSON error body, never a false "stored"
    r = publish_http(a, "s/t", b"refused")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "store_unavailable"
    # MQTT QoS 1: no PUBACK; the connection is closed instead
    assert not _publish_acked(pub, "s/t", b"refused-mqtt")
    assert pub.disconnected.wait(10)
    redis_server.start()
    # the nodes reconnect (the publish path at the next publish, the fan-out reader with
    # backoff): publishing works again on both nodes
    wait_for(
        lambda: publish_http(a, "s/t", b"after-a").status_code == 201, "node A publishing again"
    )
    acked.append("after-a")
    r = publish_http(b, "s/t", b"after-b")
    assert r.status_code == 201, r.text
    acked.append("after-b")
    # node B's subscriber gets what was acknowledged after the restart, and the history
    # holds every acknowledged message once, in order, and none of the refused ones
    rest = payloads(sub, 2)
    assert rest == [b"after-a", b"after-b"]
    history = [m["payload"] for m in poll(b, "s/t", "all")["messages"]]
    assert history == acked
    assert history == [m["payload"] for m in poll(a, "s/t", "all")["messages"]]


def test_redis_that_lost_its_data_stops_the_node_and_cursors_report_a_gap(
    cluster_node: StartNode, redis_server: RedisServer
) -> None:
    a = cluster_node()
    r = publish_http(a, "l/t", b"kept-before")
    assert r.status_code == 201, r.text
    cursor = r.json()["cursor"]
    # Redis comes back empty (FLUSHALL is in the AOF: the restart replays it)
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    redis_server.restart()
    # the node notices at its reconnection: positions no longer match, so it stops with
    # an error (a process manager restarts it) instead of serving a silent loss
    assert a.proc is not None
    assert a.proc.wait(DEADLINE) == 1
    assert "redis lost its data" in a.output()
    a.start()
    r = publish_http(a, "l/t", b"after")
    assert r.status_code == 201, r.text
    assert r.json()["epoch"] != cursor.split(":")[0]
    body = poll(a, "l/t", cursor)
    assert body["gap"] is True
    assert [m["payload"] for m in body["messages"]] == ["after"]
