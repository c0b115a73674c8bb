"""Server limits: --max-packet-size and --max-connections (MQTT over TCP)."""

from __future__ import annotations

import time
from collections.abc import Callable

from helpers import raw
from helpers.clients import PahoClient
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]
ServerFactory = Callable[..., ServerProcess]

CONNACK_SERVER_UNAVAILABLE = b"\x20\x02\x00\x03"


def test_oversized_packet_closes_only_that_connection(
    server_factory: ServerFactory, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    limit = 1024
    server = server_factory(max_packet_size=limit)
    healthy = paho_client(server, "healthy")
    assert healthy.subscribe("lim/t", 1) == [1]

    big = raw_client(server, "big")
    # well under the limit: accepted
    small = raw.publish("lim/t", b"s" * 900, qos=1, packet_id=1)
    assert len(small) < limit
    big.send(small)
    assert big.recv_packet().raw == raw.puback(1)
    assert healthy.get().payload == b"s" * 900
    # over the limit: the connection is closed, the message is not acknowledged
    oversized = raw.publish("lim/t", b"x" * 2000, qos=1, packet_id=2)
    big.try_send(oversized)
    got = big.read_until_closed(timeout=5)
    assert all(p.type != raw.PUBACK for p in got), got

    # the other client is unaffected and the oversized message was not delivered
    assert healthy.client.is_connected()
    paho_client(server, "after").publish("lim/t", b"after", qos=1)
    assert healthy.get().payload == b"after"
    assert server.alive()


def test_max_connections(server_factory: ServerFactory, raw_client: RawFactory) -> None:
    n = 5
    server = server_factory(max_connections=n)
    clients = [raw_client(server, f"conn-{i}") for i in range(n)]

    extra = raw_client(server)
    extra.try_send(raw.connect("one-too-many"))
    got = extra.read_until_closed(timeout=5)
    assert [p.raw for p in got] in ([], [CONNACK_SERVER_UNAVAILABLE]), got

    # the existing connections keep working
    for c in clients:
        assert c.is_open()
    assert clients[0].subscribe(1, [("mc/t", 1)]).granted == [1]
    clients[1].publish_complete("mc/t", b"still here", qos=1, packet_id=1)
    assert clients[0].recv_publish().payload == b"still here"

    # a freed slot can be used again (the server notices the close asynchronously: retry)
    clients[-1].send(raw.DISCONNECT_BYTES)
    clients[-1].read_until_closed()
    deadline = time.monotonic() + 5
    while True:
        again = raw_client(server)
        if again.try_send(raw.connect("replacement")):
            try:
                ack = again.recv_packet(timeout=2)
            except (TimeoutError, raw.ConnectionClosed):
                ack = None
            if ack is not None and ack.raw == b"\x20\x02\x00\x00":
                break
        again.close()
        assert time.monotonic() < deadline, "slot not freed after a client disconnected"
        time.sleep(0.1)
