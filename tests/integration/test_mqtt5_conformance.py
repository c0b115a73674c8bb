"""MQTT 5 rules seen from a real client (paho-mqtt, MQTT 5): Maximum Packet Size, topic
aliases towards the client, Receive Maximum, and when wills are (and are not) published.
The rules themselves are unit-tested on the protocol machine; these prove the wiring."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from helpers.metrics import sample, scrape
from helpers.paho5 import Paho5
from helpers.raw import RawClient
from helpers.server import ServerProcess

ServerFactory = Callable[..., ServerProcess]
# how long a will that must not come is waited for, after its delay has passed
WILL_DELAY = 2


@pytest.fixture
def paho5() -> Iterator[Callable[..., Paho5]]:
    clients: list[Paho5] = []

    def factory(srv: ServerProcess, client_id: str, **kw: object) -> Paho5:
        client = Paho5(srv, client_id, **kw)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        with contextlib.suppress(Exception):
            client.close()


def test_publish_larger_than_the_clients_maximum_packet_size_is_dropped_and_counted(
    server: ServerProcess, paho5: Callable[..., Paho5]
) -> None:
    sub = paho5(server, "small", connect={"MaximumPacketSize": 64})
    assert sub.subscribe("size/#") == [1]
    pub = paho5(server, "pub")
    pub.publish("size/big", b"x" * 200)
    pub.publish("size/small", b"marker")  # proves the pipe stayed open
    msg = sub.get()
    assert (msg.topic, msg.payload) == ("size/small", b"marker")
    assert sample(scrape(server), "pushwire_mqtt_too_large_total") == 1


def test_topic_aliases_towards_the_client(
    server: ServerProcess, paho5: Callable[..., Paho5]
) -> None:
    sub = paho5(server, "aliased", connect={"TopicAliasMaximum": 4})
    assert sub.subscribe("alias/#") == [1]
    pub = paho5(server, "pub")
    for n in range(3):
        pub.publish("alias/a-rather-long-topic-name", str(n).encode())
    got = [sub.get() for _ in range(3)]
    # paho 2.x hands over the PUBLISH as sent: the topic once, then the alias alone
    assert [m.topic for m in got] == ["alias/a-rather-long-topic-name", "", ""]
    assert [m.properties.TopicAlias for m in got] == [1, 1, 1]  # type: ignore[union-attr]
    assert [m.payload for m in got] == [b"0", b"1", b"2"]


def _v5_connect() -> bytes:
    # CONNECT, protocol MQTT level 5, clean start, keepalive 30, no properties, id "rm"
    body = b"\x00\x04MQTT\x05\x02\x00\x1e\x00" + b"\x00\x02rm"
    return bytes([0x10, len(body)]) + body


def _v5_publish_qos2(packet_id: int) -> bytes:
    body = b"\x00\x01t" + packet_id.to_bytes(2, "big") + b"\x00" + b"x"
    return bytes([0x34, len(body)]) + body


def test_receive_maximum_is_announced_and_enforced(
    server_factory: ServerFactory, paho5: Callable[..., Paho5]
) -> None:
    srv = server_factory(extra_args=["--receive-maximum", "2"])
    client = paho5(srv, "announced")
    assert client.connack_properties.ReceiveMaximum == 2
    with RawClient(srv.host, srv.mqtt_port) as raw:
        raw.send(_v5_connect())
        assert raw.recv_packet().type == 2  # CONNACK
        # QoS 2 flows stay open until PUBCOMP: a third one is more than CONNACK allowed
        raw.send(_v5_publish_qos2(1) + _v5_publish_qos2(2))
        assert raw.recv_packet().type == 5 and raw.recv_packet().type == 5  # two PUBRECs
        raw.send(_v5_publish_qos2(3))
        packets = raw.read_until_closed()
    assert packets and packets[-1].type == 14  # DISCONNECT
    assert packets[-1].body[0] == 0x93  # Receive Maximum exceeded


def _watch(srv: ServerProcess, paho5: Callable[..., Paho5]) -> Paho5:
    watcher = paho5(srv, "watcher")
    assert watcher.subscribe("will/#") == [1]
    return watcher


def test_will_delay_longer_than_the_session_publishes_when_the_session_ends(
    server: ServerProcess, paho5: Callable[..., Paho5]
) -> None:
    watcher = _watch(server, paho5)
    # the delay is far longer than this test waits: only the session's end can send it
    will = ("will/short-session", b"gone", 1, False, {"WillDelayInterval": 3600})
    client = paho5(server, "short-session", connect={"SessionExpiryInterval": 0}, will=will)
    client.drop()
    msg = watcher.get()
    assert (msg.topic, msg.payload) == ("will/short-session", b"gone")


@pytest.mark.parametrize("second_ends", ["disconnect", "drop"])
def test_reconnect_within_the_will_delay_cancels_that_will_for_good(
    server: ServerProcess, paho5: Callable[..., Paho5], second_ends: str
) -> None:
    watcher = _watch(server, paho5)
    will = ("will/flappy", b"offline", 1, False, {"WillDelayInterval": WILL_DELAY})
    session = {"SessionExpiryInterval": 600}
    first = paho5(server, "flappy", connect=session, will=will)
    first.drop()
    second = paho5(server, "flappy", clean_start=False, connect=session)
    assert second.session_present
    if second_ends == "disconnect":
        second.disconnect()
    else:
        second.drop()
    # wait past the will delay: the first will must not come
    with pytest.raises(queue.Empty):
        watcher.get(timeout=WILL_DELAY + 1.5)
    marker = paho5(server, "marker")
    marker.publish("will/marker", b"still open")
    msg = watcher.get()
    assert (msg.topic, msg.payload) == ("will/marker", b"still open")


def test_wills_are_published_and_stored_on_graceful_shutdown(
    server: ServerProcess, paho5: Callable[..., Paho5]
) -> None:
    watcher = _watch(server, paho5)
    will: tuple[str, bytes, int, bool, dict[str, Any]] = (
        "will/at-shutdown",
        b"server went away",
        1,
        True,
        {},
    )
    paho5(server, "connected-at-shutdown", will=will)
    delayed = ("will/delayed", b"later", 1, True, {"WillDelayInterval": 3600})
    paho5(server, "delayed-will", connect={"SessionExpiryInterval": 7200}, will=delayed)
    server.stop()  # SIGTERM
    got = {watcher.get().topic for _ in range(2)}
    assert got == {"will/at-shutdown", "will/delayed"}
    server.start()
    late = paho5(server, "after-restart")
    assert late.subscribe("will/#") == [1]
    retained = {late.get().topic for _ in range(2)}
    assert retained == {"will/at-shutdown", "will/delayed"}
