"""MQTT persistent sessions that follow their client across nodes (engine=redis).

Two pushwire nodes (in this process, each on its own loop and ports) share one private
redis-server; clients are raw MQTT 3.1.1 sockets. The tests check that the session, with
its queue and inflight messages, moves to the node the client connects to next.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from helpers.inproc import InProcessServer
from helpers.raw import (
    PUBLISH,
    ConnectionClosed,
    RawClient,
    connected_client,
)
from helpers.redis import RedisServer
from pushwire.mqtt.handover import SessionHandover

HOST = "127.0.0.1"


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[InProcessServer]]:
    started: list[InProcessServer] = []
    try:
        for name in ("a", "b"):
            node = InProcessServer(
                memory=False,
                engine="redis",
                redis_url=redis_server.url,
                data_dir=tmp_path / name,
                node_id=f"node-{name}",
                cluster_heartbeat_interval=0.1,
                sys_interval=0.1,
            )
            started.append(node.start())
        yield started
    finally:
        for node in reversed(started):
            node.stop()


def handover(node: InProcessServer) -> SessionHandover:
    assert node.server is not None and node.server.handover is not None
    return node.server.handover


def wait_until(cond: object, what: str, timeout: float = 10.0) -> None:
    assert callable(cond)
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_persistent_session_moves_with_queue_and_inflight(nodes: list[InProcessServer]) -> None:
    a, b = nodes
    dev = connected_client(HOST, a.mqtt_port, "dev-1", clean_session=False)
    assert dev.subscribe(1, [("t/#", 1)]).granted == [1]
    with connected_client(HOST, a.mqtt_port, "pub-1") as pub:
        pub.publish_complete("t/1", b"inflight", qos=1, packet_id=1)
        first = dev.recv_publish()
        assert first.payload == b"inflight"  # received, never acknowledged
        dev.close()

        def dev_1_left() -> bool:
            assert a.server is not None
            return a.server.hub.sessions["dev-1"].link is None

        wait_until(lambda: a.call(dev_1_left), "A to see dev-1 leave")
        # acknowledged by node A while dev-1 is offline: queued there
        pub.publish_complete("t/2", b"queued-1", qos=1, packet_id=2)
        pub.publish_complete("t/3", b"queued-2", qos=1, packet_id=3)

    # dev-1 comes back on node B: B takes the session from A, subscriptions and all
    moved = RawClient(HOST, b.mqtt_port)
    try:
        ack = moved.mqtt_connect("dev-1", clean_session=False)
        assert ack.return_code == 0 and ack.session_present
        again = moved.recv_publish()
        assert (again.payload, again.dup, again.packet_id) == (b"inflight", True, first.packet_id)
        moved.ack(again)
        rest = [moved.recv_publish() for _ in range(2)]
        assert [p.payload for p in rest] == [b"queued-1", b"queued-2"]
        for p in rest:
            moved.ack(p)
        assert a.call(lambda: "dev-1" not in a.server.hub.sessions)  # type: ignore[union-attr]
        assert handover(a).sessions_handed_over == 1 and handover(b).sessions_taken_over == 1
        # the subscription came along: a publish on B now reaches dev-1 there
        with connected_client(HOST, b.mqtt_port, "pub-2") as pub:
            pub.publish_complete("t/4", b"on-b", qos=1, packet_id=1)
        got = moved.recv_publish()
        assert got.payload == b"on-b"
        moved.ack(got)
    finally:
        moved.close()


def test_takeover_closes_the_connection_on_the_other_node(nodes: list[InProcessServer]) -> None:
    a, b = nodes
    old = connected_client(HOST, a.mqtt_port, "dev-2", clean_session=False)
    assert old.subscribe(1, [("x/#", 0)]).granted == [0]
    new = connected_client(HOST, b.mqtt_port, "dev-2", clean_session=False)
    try:
        # the old connection on node A is closed by A (kicked), nothing else arrives there
        with pytest.raises(ConnectionClosed):
            while True:
                pkt = old.recv_packet(timeout=10.0)
                assert pkt.type != PUBLISH
        assert new.is_open()
        assert handover(a).store.kicks_handled == 1
    finally:
        old.close()
        new.close()


def test_clean_start_elsewhere_drops_the_old_session(nodes: list[InProcessServer]) -> None:
    a, b = nodes
    with connected_client(HOST, a.mqtt_port, "dev-3", clean_session=False) as dev:
        dev.subscribe(1, [("y/#", 1)])
    with connected_client(HOST, b.mqtt_port, "dev-3", clean_session=True) as dev:
        ack_present = dev.is_open()
        assert ack_present
    # neither node keeps it, and it is gone from Redis: a persistent reconnect finds nothing
    with RawClient(HOST, a.mqtt_port) as dev:
        ack = dev.mqtt_connect("dev-3", clean_session=False)
        assert ack.return_code == 0 and not ack.session_present


def cluster_samples(node: InProcessServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert node.server is not None and node.server.http_address is not None
    host, port = node.server.http_address
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("pushwire_cluster_")
    }


def test_per_node_figures_and_cluster_totals(nodes: list[InProcessServer]) -> None:
    a, b = nodes
    clients = [connected_client(HOST, a.mqtt_port, f"fig-a{i}") for i in range(2)]
    clients.append(connected_client(HOST, b.mqtt_port, "fig-b0"))
    try:
        want = {
            ("pushwire_cluster_nodes", frozenset()): 2.0,
            ("pushwire_cluster_clients_connected", frozenset()): 3.0,
            ("pushwire_cluster_node_clients_connected", frozenset({("node", "node-a")})): 2.0,
            ("pushwire_cluster_node_clients_connected", frozenset({("node", "node-b")})): 1.0,
        }
        # any node answers for the whole cluster (as of the last heartbeat round)
        for node in (a, b):
            wait_until(
                lambda node=node: want.items() <= cluster_samples(node).items(),
                f"cluster figures on {node.settings.node_id}",
            )

        def sys_value(topic: str) -> bytes | None:
            retained = b.call(lambda: b.server.hub.retained.get(topic))  # type: ignore[union-attr]
            return None if retained is None else retained.payload

        wait_until(
            lambda: (
                sys_value("$SYS/broker/cluster/clients/connected") == b"3"
                and sys_value("$SYS/broker/nodes/node-a/clients/connected") == b"2"
                and sys_value("$SYS/broker/cluster/nodes") == b"2"
            ),
            "cluster figures in $SYS",
        )
    finally:
        for c in clients:
            c.close()


def test_directory_and_locks_follow_connections(
    nodes: list[InProcessServer], redis_server: RedisServer
) -> None:
    a, b = nodes
    r = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        with connected_client(HOST, a.mqtt_port, "tmp-1", clean_session=True):
            wait_until(lambda: r.hget("pw:where", "tmp-1") == "node-a", "tmp-1 listed on A")
        # a session that ended with its connection gives its lock back
        wait_until(lambda: not r.exists("pw:lock:tmp-1"), "tmp-1's lock released")
        assert r.hget("pw:where", "tmp-1") is None
        with connected_client(HOST, b.mqtt_port, "keep-1", clean_session=False):
            wait_until(lambda: r.hget("pw:where", "keep-1") == "node-b", "keep-1 listed on B")
        wait_until(lambda: r.hget("pw:where", "keep-1") is None, "keep-1 unlisted")
        # a persistent one stays held by the node that queues for it
        assert r.get("pw:lock:keep-1") == "node-b"
    finally:
        r.close()


def test_redis_down_refuses_connects_and_a_restart_keeps_the_queue(
    nodes: list[InProcessServer], redis_server: RedisServer
) -> None:
    a, b = nodes
    with connected_client(HOST, a.mqtt_port, "keep-2", clean_session=False) as dev:
        dev.subscribe(1, [("r/#", 1)])
    with connected_client(HOST, a.mqtt_port, "pub-3") as pub:
        pub.publish_complete("r/1", b"before-kill", qos=1, packet_id=1)  # acknowledged
    redis_server.kill()
    # nobody can say who holds "late-1": refused, never answered on a guess
    with RawClient(HOST, b.mqtt_port) as late:
        assert late.mqtt_connect("late-1", clean_session=False).return_code == 3
    redis_server.start()  # same port and AOF: what was acknowledged is there

    def connects() -> bool:
        with RawClient(HOST, b.mqtt_port) as probe:
            return probe.mqtt_connect("late-1", clean_session=True).return_code == 0

    wait_until(connects, "node B to reach Redis again")
    # a pooled connection that died with Redis may refuse one more CONNECT (code 3, never a
    # guess); the client tries again, as MQTT clients do
    dev = RawClient(HOST, b.mqtt_port)
    try:
        for _ in range(20):  # bounded: a refusal that persists fails the test
            if (ack := dev.mqtt_connect("keep-2", clean_session=False)).return_code != 3:
                break
            dev.close()
            dev = RawClient(HOST, b.mqtt_port)
        assert ack.return_code == 0 and ack.session_present
        got = dev.recv_publish()
        assert got.payload == b"before-kill"
        dev.ack(got)
    finally:
        dev.close()
