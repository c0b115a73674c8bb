"""Retained messages (MQTT 3.1.1 section 3.3.1.3)."""

from __future__ import annotations

from collections.abc import Callable

from helpers.raw import Packet, RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]


def _fresh_subscriber_sees(
    server: ServerProcess, raw_client: RawFactory, pub: RawClient, topic_filter: str, live: str
) -> list[Packet]:
    """Subscribe a new client, then publish a live (non-retained) marker to ``live``; return
    every PUBLISH the new client got up to and including the marker."""
    sub = raw_client(server, "")
    assert sub.subscribe(1, [(topic_filter, 2)]).granted == [2]
    pub.publish_complete(live, b"live-marker", qos=1, packet_id=999)
    got: list[Packet] = []
    while True:
        pkt = sub.recv_publish()
        sub.ack(pkt)
        got.append(pkt)
        if pkt.payload == b"live-marker":
            return got


def test_retained_set_replaced_cleared(server: ServerProcess, raw_client: RawFactory) -> None:
    pub = raw_client(server, "ret-pub")

    # set: a new subscriber gets it, with the retain flag set
    pub.publish_complete("r/t", b"first", qos=1, retain=True, packet_id=1)
    got = _fresh_subscriber_sees(server, raw_client, pub, "r/t", "r/t")
    assert [(p.payload, p.retain) for p in got] == [(b"first", True), (b"live-marker", False)]

    # replaced: only the newest retained message is kept ([MQTT-3.3.1-5])
    pub.publish_complete("r/t", b"second", qos=1, retain=True, packet_id=2)
    got = _fresh_subscriber_sees(server, raw_client, pub, "r/t", "r/t")
    assert [(p.payload, p.retain) for p in got] == [(b"second", True), (b"live-marker", False)]

    # cleared by a zero-byte retained message ([MQTT-3.3.1-10], [MQTT-3.3.1-11])
    pub.publish_complete("r/t", b"", qos=1, retain=True, packet_id=3)
    got = _fresh_subscriber_sees(server, raw_client, pub, "r/t", "r/t")
    assert [(p.payload, p.retain) for p in got] == [(b"live-marker", False)]


def test_retained_delivered_to_matching_wildcard(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    pub = raw_client(server, "ret-pub")
    pub.publish_complete("w/a", b"A", qos=1, retain=True, packet_id=1)
    pub.publish_complete("w/b/c", b"C", qos=2, retain=True, packet_id=2)
    pub.publish_complete("other/x", b"X", qos=1, retain=True, packet_id=3)
    got = _fresh_subscriber_sees(server, raw_client, pub, "w/#", "w/live")
    retained = {(p.topic, p.payload, p.qos) for p in got if p.retain}
    assert retained == {("w/a", b"A", 1), ("w/b/c", b"C", 2)}
    assert got[-1].payload == b"live-marker" and not got[-1].retain


def test_retained_qos_is_min_of_message_and_subscription(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    pub = raw_client(server, "ret-pub")
    pub.publish_complete("rq/t", b"q2", qos=2, retain=True, packet_id=1)
    sub = raw_client(server, "rq-sub")
    assert sub.subscribe(1, [("rq/t", 1)]).granted == [1]
    pkt = sub.recv_publish()
    assert (pkt.payload, pkt.qos, pkt.retain) == (b"q2", 1, True)
    sub.ack(pkt)


def test_live_subscriber_gets_retained_publish_without_retain_flag(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.3.1-9]: retain must be 0 when delivering to an established subscription."""
    sub = raw_client(server, "live-sub")
    assert sub.subscribe(1, [("lr/t", 1)]).granted == [1]
    pub = raw_client(server, "live-pub")
    pub.publish_complete("lr/t", b"stored-and-live", qos=1, retain=True, packet_id=1)
    pkt = sub.recv_publish()
    assert (pkt.payload, pkt.retain) == (b"stored-and-live", False)
    sub.ack(pkt)
    # ... and it was stored: a later subscriber gets it with the flag set
    late = raw_client(server, "late-sub")
    assert late.subscribe(1, [("lr/t", 1)]).granted == [1]
    pkt = late.recv_publish()
    assert (pkt.payload, pkt.retain) == (b"stored-and-live", True)


def test_zero_byte_retained_is_forwarded_to_live_subscribers(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.3.1-10]: the zero-byte retained message is delivered as a normal message."""
    pub = raw_client(server, "zb-pub")
    pub.publish_complete("zb/t", b"x", qos=1, retain=True, packet_id=1)
    sub = raw_client(server, "zb-sub")
    assert sub.subscribe(1, [("zb/t", 1)]).granted == [1]
    first = sub.recv_publish()
    assert (first.payload, first.retain) == (b"x", True)
    sub.ack(first)
    pub.publish_complete("zb/t", b"", qos=1, retain=True, packet_id=2)
    pkt = sub.recv_publish()
    assert (pkt.topic, pkt.payload, pkt.retain) == ("zb/t", b"", False)
