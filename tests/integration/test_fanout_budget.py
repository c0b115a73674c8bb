"""The fan-out a publisher causes is bounded per event-loop turn (`fanout_deliveries_per_turn`):
one read of many PUBLISH to many subscribers is dispatched over several turns, reading from
the publisher paused in between, so the writes of the fan-out go out and other clients are
served before the blast ends. Nothing is lost or reordered, and acks stay in order.

On engine=redis the publisher's messages come back from Redis' fan-out stream in one
batch, and the node routes them over turns the same way (core/pacing.py).

Real sockets against an in-process server (so a hub observer can look, on the server's own
loop, at what other clients have received at the moment a message is routed)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import raw
from helpers.inproc import InProcessServer
from helpers.raw import RawClient, connected_client
from pushwire.core.message import Message

SUBSCRIBERS = 10
BUDGET = 50  # deliveries per turn: 5 messages to the 10 subscribers
MESSAGES = 400  # sent in one write: one read of ~5 KB, 80 turns at this budget
DEADLINE = 10.0


@pytest.fixture(params=["memory", "redis"])
def srv(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessServer]:
    if request.param == "redis":
        redis_server = request.getfixturevalue("redis_server")
        server = InProcessServer(
            fanout_deliveries_per_turn=BUDGET,
            memory=False,
            engine="redis",
            redis_url=redis_server.url,
            data_dir=tmp_path,
        )
    else:
        server = InProcessServer(fanout_deliveries_per_turn=BUDGET)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def subscribers(srv: InProcessServer) -> Iterator[list[RawClient]]:
    yield from raw.subscribed_clients(srv.host, srv.mqtt_port, SUBSCRIBERS, "blast")


def payload(n: int) -> bytes:
    return b"%05d" % n


def blast(qos: int) -> bytes:
    return b"".join(
        raw.publish("blast", payload(n), qos=qos, packet_id=n + 1 if qos else None)
        for n in range(MESSAGES)
    )


def assert_all_in_order(subscribers: list[RawClient]) -> None:
    for client in subscribers:
        got = [client.recv_publish(timeout=DEADLINE).payload for _ in range(MESSAGES)]
        assert got == [payload(n) for n in range(MESSAGES)]


def has_data(sock: socket.socket) -> bool:
    try:
        return bool(sock.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, TimeoutError):  # nothing there (the socket has a timeout)
        return False


def test_other_clients_are_served_before_a_blast_ends(
    srv: InProcessServer, subscribers: list[RawClient]
) -> None:
    """The marker: a client sends PINGREQ while the blast's first message is routed; by the
    time its last message is routed, the PINGRESP is in that client's socket. Without the
    budget the whole read is routed in one turn, and the PINGREQ is read after it."""
    assert srv.server is not None
    hub = srv.server.hub
    pinger = connected_client(srv.host, srv.mqtt_port, "pinger", keepalive=60)
    seen: dict[str, bool] = {}

    def observe(message: Message) -> bool:
        # on the server's loop, between two of its callbacks: no sleep, no wait
        if message.topic != "blast":
            return False
        if message.payload == payload(0):
            pinger.sock.send(raw.PINGREQ_BYTES)
        elif message.payload == payload(MESSAGES - 1):
            seen["pingresp_before_end"] = has_data(pinger.sock)
        return False

    srv.call(lambda: hub.add_observer(observe))
    try:
        with connected_client(srv.host, srv.mqtt_port, "publisher", keepalive=60) as pub:
            pub.send(blast(0) + raw.PINGREQ_BYTES)
            pub.expect(raw.PINGRESP, timeout=DEADLINE)  # every packet before it was run
        assert_all_in_order(subscribers)
        pinger.expect(raw.PINGRESP, timeout=DEADLINE)
        assert seen == {"pingresp_before_end": True}
    finally:
        pinger.close()


def test_qos1_blast_is_acked_in_order_and_delivered_in_order(
    srv: InProcessServer, subscribers: list[RawClient]
) -> None:
    with connected_client(srv.host, srv.mqtt_port, "publisher", keepalive=60) as pub:
        pub.send(blast(1) + raw.PINGREQ_BYTES)
        acks: list[int] = []
        pingresp = False
        while len(acks) < MESSAGES or not pingresp:
            packet = pub.recv_packet(timeout=DEADLINE)
            # a durable engine's acks wait for its answer, a PINGRESP does not
            if packet.type == raw.PINGRESP:
                pingresp = True
            else:
                assert packet.type == raw.PUBACK
                acks.append(packet.packet_id)
        assert acks == list(range(1, MESSAGES + 1))
    assert_all_in_order(subscribers)


def test_publisher_closed_while_its_blast_waits_loses_nothing_acked(
    srv: InProcessServer, subscribers: list[RawClient]
) -> None:
    """A takeover closes the publisher while the rest of its read waits for a later turn:
    what it was acked reached every subscriber, in order, and the connection is gone."""
    assert srv.server is not None
    mqtt = srv.server.mqtt
    pub = connected_client(srv.host, srv.mqtt_port, "publisher", keepalive=60)
    try:
        pub.send(blast(1))
        assert pub.expect(raw.PUBACK, timeout=DEADLINE).packet_id == 1  # under way
        with connected_client(srv.host, srv.mqtt_port, "publisher", keepalive=60) as heir:
            acked = [p.packet_id for p in pub.read_until_closed(timeout=DEADLINE)]
            acked = [1, *[a for a in acked if a]]
            assert acked == list(range(1, len(acked) + 1))
            heir.send(raw.PINGREQ_BYTES)
            heir.expect(raw.PINGRESP, timeout=DEADLINE)
            for client in subscribers:
                got = []
                # every acked message arrived; whatever followed is in order too
                client.send(raw.PINGREQ_BYTES)
                while True:
                    packet = client.recv_packet(timeout=DEADLINE)
                    if packet.type == raw.PINGRESP:
                        break
                    got.append(packet.payload)
                assert got == [payload(n) for n in range(len(got))]
                assert len(got) >= len(acked)
            # the subscribers and the heir are left: the closed publisher is gone
            deadline = time.monotonic() + DEADLINE
            while srv.call(lambda: len(mqtt.connections)) != SUBSCRIBERS + 1:
                assert time.monotonic() < deadline, "the closed publisher is still registered"
                time.sleep(0.01)
    finally:
        pub.close()
