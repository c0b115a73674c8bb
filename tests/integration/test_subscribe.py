"""SUBSCRIBE / UNSUBSCRIBE, PINGREQ, DISCONNECT, topic wildcards, $SYS, overlapping
subscriptions (MQTT 3.1.1 sections 3.8-3.14, 4.7)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import raw
from helpers.clients import PahoClient, PahoMessage
from helpers.raw import RawClient
from helpers.server import SYS_ADMIN, ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]
ServerFactory = Callable[..., ServerProcess]


def test_suback_grants_requested_qos(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server, "granted")
    c.send(raw.subscribe(0x0102, [("g/0", 0), ("g/1", 1), ("g/2", 2)]))
    assert c.recv_packet().raw == b"\x90\x05\x01\x02\x00\x01\x02"


def test_delivery_qos_is_min_of_published_and_granted(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    sub = raw_client(server, "minqos-sub")
    assert sub.subscribe(1, [("m/0", 0), ("m/1", 1), ("m/2", 2)]).granted == [0, 1, 2]
    pub = raw_client(server, "minqos-pub")
    pid = 1
    for granted in (0, 1, 2):
        for published in (0, 1, 2):
            payload = f"{granted}-{published}".encode()
            pub.publish_complete(f"m/{granted}", payload, qos=published, packet_id=pid)
            pid += 1
    seen: dict[bytes, int] = {}
    for _ in range(9):
        pkt = sub.recv_publish()
        seen[pkt.payload] = pkt.qos
        sub.ack(pkt)
    expected = {f"{g}-{p}".encode(): min(g, p) for g in (0, 1, 2) for p in (0, 1, 2)}
    assert seen == expected


@pytest.mark.mosquitto_deviation(
    "mosquitto closes the connection on a malformed topic filter instead of SUBACK 0x80"
)
def test_invalid_wildcard_filter_gets_suback_failure(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """A filter with a misplaced wildcard (section 4.7.1) is refused with return code 0x80;
    the valid filter in the same SUBSCRIBE is granted and the connection stays usable.
    Every misplacement ("a/#/b", "a+/b", "+a") is a machine unit test
    (tests/unit/test_mqtt_machine_conformance.py); this case proves the wiring."""
    c = raw_client(server, "badfilter")
    c.send(raw.subscribe(5, [("ok/t", 1), ("a/b#", 1)]))
    assert c.recv_packet().raw == b"\x90\x04\x00\x05\x01\x80"
    assert c.is_open()
    paho_client(server, "pub").publish("ok/t", b"still-works", qos=1)
    pkt = c.recv_publish()
    assert pkt.payload == b"still-works"


def test_unsubscribe_stops_delivery(server: ServerProcess, raw_client: RawFactory) -> None:
    sub = raw_client(server, "unsub")
    assert sub.subscribe(1, [("u/t", 1), ("u/sentinel", 1)]).granted == [1, 1]
    pub = raw_client(server, "unsub-pub")
    pub.publish_complete("u/t", b"before", qos=1, packet_id=1)
    pkt = sub.recv_publish()
    assert pkt.payload == b"before"
    sub.ack(pkt)
    sub.send(raw.unsubscribe(0x0909, ["u/t"]))
    assert sub.recv_packet().raw == b"\xb0\x02\x09\x09"
    pub.publish_complete("u/t", b"after", qos=1, packet_id=2)
    pub.publish_complete("u/sentinel", b"sentinel", qos=1, packet_id=3)
    pkt = sub.recv_publish()
    assert pkt.payload == b"sentinel", f"received {pkt.payload!r} after UNSUBSCRIBE"


def test_pingreq_pingresp(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server, "pinger")
    for _ in range(3):
        c.send(raw.PINGREQ_BYTES)
        assert c.recv_packet().raw == raw.PINGRESP_BYTES


def test_disconnect_closes_connection(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server, "bye")
    c.send(raw.DISCONNECT_BYTES)
    assert c.read_until_closed(timeout=5) == []


# --- wildcards -----------------------------------------------------------------------------

TOPICS = [
    "sport",
    "sport/",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player2",
    "sport/tennis/player1/ranking",
    "/finance",
    "finance",
]

# Expected matches, from the examples in section 4.7.1.2 / 4.7.1.3 of the specification.
MATCHES = {
    "#": set(TOPICS),
    "sport/#": {t for t in TOPICS if t == "sport" or t.startswith("sport/")},
    "sport/tennis/player1/#": {"sport/tennis/player1", "sport/tennis/player1/ranking"},
    "sport/tennis/+": {"sport/tennis/player1", "sport/tennis/player2"},
    "sport/+": {"sport/", "sport/tennis"},
    "+": {"sport", "finance"},
    "+/+": {"sport/", "sport/tennis", "/finance"},
    "/+": {"/finance"},
    "+/tennis/#": {
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player2",
        "sport/tennis/player1/ranking",
    },
}

SENTINEL = "zz-sentinel"


def test_wildcard_matching(server: ServerProcess, paho_client: PahoFactory) -> None:
    subs: dict[str, PahoClient] = {}
    for i, topic_filter in enumerate(MATCHES):
        c = paho_client(server, f"wild-{i}")
        assert c.subscribe([(topic_filter, 1), (SENTINEL, 1)]) == [1, 1]
        subs[topic_filter] = c
    pub = paho_client(server, "wild-pub")
    for topic in TOPICS:
        pub.publish(topic, topic.encode(), qos=1)
    pub.publish(SENTINEL, b"end", qos=1)
    for topic_filter, c in subs.items():
        got = c.get_until(lambda m: m.topic == SENTINEL)
        received = {m.topic for m in got if m.topic != SENTINEL}
        assert received == MATCHES[topic_filter], topic_filter


def test_sys_topics_not_matched_by_leading_wildcards(
    server_factory: ServerFactory, paho_client: PahoFactory
) -> None:
    """[MQTT-4.7.2-1]: '#' and '+/...' filters must not match topics beginning with '$'.
    Every client is the admin (allowed to read $SYS), so only topic matching keeps $SYS out."""
    server = server_factory(sys_interval=1, admin=SYS_ADMIN)
    hash_all = paho_client(server, "sys-hash", auth=SYS_ADMIN)
    assert hash_all.subscribe("#", 0) == [0]
    plus = paho_client(server, "sys-plus", auth=SYS_ADMIN)
    assert plus.subscribe([("+/broker/#", 0), ("+/#", 0)]) == [0, 0]
    plus_only = paho_client(server, "sys-plus-only", auth=SYS_ADMIN)
    assert plus_only.subscribe([("+/broker/uptime", 0), ("normal/t", 0)]) == [0, 0]
    control = paho_client(server, "sys-control", auth=SYS_ADMIN)
    assert control.subscribe("$SYS/#", 0) == [0]
    # A live (non-retained) $SYS publication proves $SYS topics were published while the
    # wildcard subscribers above were already subscribed.
    live = control.get_until(lambda m: m.topic.startswith("$SYS/") and not m.retain, timeout=5)
    assert live
    paho_client(server, "sys-pub", auth=SYS_ADMIN).publish("normal/t", b"n", qos=0)
    for c in (hash_all, plus, plus_only):
        got = c.get_until(lambda m: m.topic == "normal/t")
        leaked = [m.topic for m in got if m.topic.startswith("$")]
        assert leaked == [], "$-topics matched by a wildcard at the first level"


def test_overlapping_subscriptions_respect_max_qos(
    server: ServerProcess, paho_client: PahoFactory
) -> None:
    """Section 3.3.5: with overlapping subscriptions the server may send one copy or one per
    subscription, but must respect the maximum QoS of the matching subscriptions. We assert
    at least one copy arrives at QoS min(published, max granted) and none above it."""
    sub = paho_client(server, "overlap")
    assert sub.subscribe([("ov/#", 0), ("ov/+", 1), ("ov/a", 2)]) == [0, 1, 2]
    pub = paho_client(server, "overlap-pub")
    cases = [
        ("ov/a", 2, 2),  # matches all three, max granted 2
        ("ov/a", 1, 1),  # published at 1
        ("ov/b", 2, 1),  # matches ov/# (0) and ov/+ (1)
        ("ov/b/c", 2, 0),  # matches ov/# only
    ]
    for n, (topic, pub_qos, expected) in enumerate(cases):
        payload = f"case-{n}".encode()
        pub.publish(topic, payload, qos=pub_qos)

        def wanted(m: PahoMessage, p: bytes = payload, e: int = expected) -> bool:
            return m.payload == p and m.qos == e

        got = sub.get_until(wanted)
        copies = [m for m in got if m.payload == payload]
        assert copies, topic
        assert max(m.qos for m in copies) == expected, (topic, [m.qos for m in copies])
        assert all(m.topic == topic for m in copies)
