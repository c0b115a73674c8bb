"""A closed MQTT connection is freed by reference counting, without the cyclic garbage
collector: a reconnect storm must not leave a cycle per connection for the collector to
find (its scans were a large share of a connect's CPU, bench/README.md)."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator

import pytest

from helpers import raw
from helpers.inproc import InProcessServer, running
from helpers.raw import connected_client
from pushwire.mqtt.protocol import MQTTServerProtocol


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def only_connection(srv: InProcessServer) -> weakref.ref[MQTTServerProtocol]:
    assert srv.server is not None
    (conn,) = srv.server.mqtt.connections
    return weakref.ref(conn)


@pytest.mark.parametrize("ending", ["disconnect", "drop"])
def test_a_closed_connection_is_freed_without_the_cycle_collector(
    srv: InProcessServer, ending: str
) -> None:
    gc.collect()
    gc.disable()
    try:
        client = connected_client(srv.host, srv.mqtt_port, "freed", keepalive=30)
        ref = srv.call(lambda: only_connection(srv))
        if ending == "disconnect":
            client.send(b"\xe0\x00")
        client.close()
        deadline = time.monotonic() + 5.0
        while srv.call(lambda: ref() is not None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.call(lambda: ref() is None), "the connection is kept alive by a cycle"
    finally:
        gc.enable()


# CPython keeps an instance dict key-sharing (small, built without resizes) only up to 30
# keys; above that every connection built and resized a dict of its own (bench/README.md)
KEY_SHARING_LIMIT = 30


def test_a_connection_object_stays_under_the_key_sharing_limit(srv: InProcessServer) -> None:
    client = connected_client(srv.host, srv.mqtt_port, "small", keepalive=30)
    try:
        client.send(b"\xc0\x00")  # PINGREQ: the connection is past CONNACK and serving
        client.expect(raw.PINGRESP)
        ref = srv.call(lambda: only_connection(srv))
        assert srv.call(lambda: len(vars(ref()))) <= KEY_SHARING_LIMIT
    finally:
        client.close()


def test_the_ack_queue_is_made_at_the_first_inbound_ack(srv: InProcessServer) -> None:
    client = connected_client(srv.host, srv.mqtt_port, "acks", keepalive=30)
    try:
        client.send(raw.publish("t/0", b"x", qos=0))
        client.send(b"\xc0\x00")
        client.expect(raw.PINGRESP)  # the QoS 0 publish was handled before it
        ref = srv.call(lambda: only_connection(srv))
        # a connect storm's connections never publish at QoS 1/2: no queue for them
        assert srv.call(lambda: "_acks" not in vars(ref()))
        client.send(raw.publish("t/1", b"x", qos=1, packet_id=7))
        assert client.expect(raw.PUBACK).packet_id == 7
        # a plain QoS 1 run is acked as it is routed (hub_calls.py `_publish_run`): no queue
        assert srv.call(lambda: "_acks" not in vars(ref()))
        client.send(raw.publish("t/2", b"x", qos=2, packet_id=8))
        assert client.expect(raw.PUBREC).packet_id == 8
        assert srv.call(lambda: "_acks" in vars(ref()))
    finally:
        client.close()


def test_a_connection_that_acked_a_publish_is_freed_without_the_cycle_collector(
    srv: InProcessServer,
) -> None:
    gc.collect()
    gc.disable()
    try:
        client = connected_client(srv.host, srv.mqtt_port, "acked", keepalive=30)
        ref = srv.call(lambda: only_connection(srv))
        client.send(raw.publish("t/1", b"x", qos=1, packet_id=3))
        assert client.expect(raw.PUBACK).packet_id == 3
        client.send(b"\xe0\x00")
        client.close()
        deadline = time.monotonic() + 5.0
        while srv.call(lambda: ref() is not None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.call(lambda: ref() is None), "the connection is kept alive by a cycle"
    finally:
        gc.enable()
