"""Persistent sessions, redelivery, queue and inflight limits, restarts (MQTT 3.1.1 sections
3.1.2.4, 4.1, 4.4, 4.6)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from helpers import raw
from helpers.clients import PahoClient
from helpers.raw import Packet, RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]
PahoFactory = Callable[..., PahoClient]
ServerFactory = Callable[..., ServerProcess]


def _offline_subscriber(
    server: ServerProcess, raw_client: RawFactory, client_id: str, topic: str, qos: int
) -> None:
    """Create a persistent session subscribed to ``topic`` and leave it offline."""
    c = raw_client(server, client_id, clean_session=False)
    assert c.subscribe(1, [(topic, qos)]).granted == [qos]
    c.send(raw.DISCONNECT_BYTES)
    c.read_until_closed()


def _resume(server: ServerProcess, raw_client: RawFactory, client_id: str) -> RawClient:
    c = raw_client(server)
    ack = c.mqtt_connect(client_id, clean_session=False)
    assert ack.return_code == 0
    assert ack.session_present, "stored session not resumed"
    return c


def _collect_quiet(c: RawClient, quiet: float, ptype: int = raw.PUBLISH) -> list[Packet]:
    """Read packets of ``ptype`` until none arrives for ``quiet`` seconds."""
    got: list[Packet] = []
    while True:
        try:
            pkt = c.recv_packet(timeout=quiet)
        except TimeoutError:
            return got
        assert pkt.type == ptype, pkt
        got.append(pkt)


def test_offline_qos1_qos2_delivered_on_reconnect(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """Messages at QoS 1/2 published while a persistent session is offline are stored and
    delivered when it resumes ([MQTT-3.1.2-5]). QoS 0 may or may not be: not asserted."""
    _offline_subscriber(server, raw_client, "ps-sub", "ps/t", 2)
    pub = paho_client(server, "ps-pub")
    pub.publish("ps/t", b"m0", qos=0)
    pub.publish("ps/t", b"m1", qos=1)
    pub.publish("ps/t", b"m2", qos=2)
    c = _resume(server, raw_client, "ps-sub")
    got: dict[bytes, int] = {}
    while b"m1" not in got or b"m2" not in got:
        pkt = c.recv_publish()
        got[pkt.payload] = pkt.qos
        c.ack(pkt)
    assert (got[b"m1"], got[b"m2"]) == (1, 2)
    # the subscription is part of the session: live messages keep flowing
    pub.publish("ps/t", b"live", qos=1)
    pkt = c.recv_matching(lambda p: p.type == raw.PUBLISH and p.payload == b"live")
    assert pkt.qos == 1


def test_offline_queue_is_bounded(
    server_factory: ServerFactory, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """With a queue bound of 10, 30 messages published offline yield at most 10 on
    reconnect (which ones is the server's choice), still in publish order ([MQTT-4.6.0-6]).
    pushwire's persistent queues live in the store, bounded by their own setting."""
    server = server_factory(
        max_queued_messages=10, extra_args=["--max-persistent-queued-messages", "10"]
    )
    _offline_subscriber(server, raw_client, "qb-sub", "qb/t", 1)
    pub = paho_client(server, "qb-pub")
    for i in range(30):
        pub.publish("qb/t", b"%02d" % i, qos=1)
    sub = paho_client(server, "qb-sub", clean_session=False)
    assert sub.session_present
    first = sub.get(timeout=5)
    time.sleep(1.0)  # let whatever was queued drain before the end marker
    pub.publish("qb/t", b"end", qos=1)
    rest = sub.get_until(lambda m: m.payload == b"end")
    payloads = [first.payload] + [m.payload for m in rest[:-1]]
    assert 1 <= len(payloads) <= 10, payloads
    assert payloads == sorted(set(payloads)), f"duplicates or out of order: {payloads}"


def test_unacked_qos1_redelivered_with_dup(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """[MQTT-4.4.0-1]: unacknowledged PUBLISH re-sent on resume with the original packet id;
    [MQTT-3.3.1-1]: with DUP=1."""
    _offline_subscriber(server, raw_client, "dup-sub", "dup/t", 1)
    c = _resume(server, raw_client, "dup-sub")
    pub = paho_client(server, "dup-pub")
    pub.publish("dup/t", b"redeliver-me", qos=1)
    first = c.recv_publish()
    assert (first.payload, first.qos, first.dup) == (b"redeliver-me", 1, False)
    c.close()  # no PUBACK
    c = _resume(server, raw_client, "dup-sub")
    again = c.recv_publish()
    assert again.raw == raw.publish(
        "dup/t", b"redeliver-me", qos=1, dup=True, packet_id=first.packet_id
    )
    c.send(raw.puback(again.packet_id))
    # acknowledged now: the next delivery is a new message, not the same one again
    pub.publish("dup/t", b"next", qos=1)
    nxt = c.recv_publish()
    assert (nxt.payload, nxt.dup) == (b"next", False)


def test_unacked_qos2_publish_redelivered_with_dup(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    _offline_subscriber(server, raw_client, "dup2-sub", "dup2/t", 2)
    c = _resume(server, raw_client, "dup2-sub")
    paho_client(server, "dup2-pub").publish("dup2/t", b"q2", qos=2)
    first = c.recv_publish()
    assert (first.qos, first.dup) == (2, False)
    c.close()  # no PUBREC
    c = _resume(server, raw_client, "dup2-sub")
    again = c.recv_publish()
    assert again.raw == raw.publish("dup2/t", b"q2", qos=2, dup=True, packet_id=first.packet_id)
    c.ack(again)


def test_unacked_pubrel_resent_on_reconnect(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """[MQTT-4.4.0-1]: once PUBREC was sent, the server resends PUBREL (not the PUBLISH)."""
    _offline_subscriber(server, raw_client, "rel-sub", "rel/t", 2)
    c = _resume(server, raw_client, "rel-sub")
    pub = paho_client(server, "rel-pub")
    pub.publish("rel/t", b"q2", qos=2)
    first = c.recv_publish()
    c.send(raw.pubrec(first.packet_id))
    assert c.recv_packet().raw == raw.pubrel(first.packet_id)
    c.close()  # no PUBCOMP
    c = _resume(server, raw_client, "rel-sub")
    assert c.recv_packet().raw == raw.pubrel(first.packet_id)
    c.send(raw.pubcomp(first.packet_id))
    pub.publish("rel/t", b"after", qos=2)
    nxt = c.recv_publish()
    assert (nxt.payload, nxt.dup) == (b"after", False), "the completed message came back"
    c.ack(nxt)


@pytest.mark.mosquitto_deviation(
    "mosquitto 2.0.11 honours max_inflight_messages for the first batch, but one PUBACK "
    "releases every queued message (8 unacknowledged with a window of 5)"
)
def test_inflight_window(
    server_factory: ServerFactory, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    """With --max-inflight 5 a subscriber that does not acknowledge gets at most 5 QoS 1
    messages; each PUBACK opens the window for one more; nothing is lost."""
    server = server_factory(max_inflight=5)
    c = raw_client(server, "if-sub")
    assert c.subscribe(1, [("if/t", 1)]).granted == [1]
    pub = paho_client(server, "if-pub")
    total = 9
    for i in range(total):
        pub.publish("if/t", b"%d" % i, qos=1)
    batch = _collect_quiet(c, quiet=1.0)
    assert 1 <= len(batch) <= 5, f"{len(batch)} unacknowledged messages in flight"
    received = list(batch)
    unacked = list(batch)
    c.send(raw.puback(unacked.pop(0).packet_id))
    more = c.recv_publish(timeout=5)
    received.append(more)
    unacked.append(more)
    unacked += (extra := _collect_quiet(c, quiet=0.5))
    received += extra
    assert len(unacked) <= 5, f"{len(unacked)} unacknowledged messages in flight"
    while len(received) < total:
        for pkt in unacked:
            c.send(raw.puback(pkt.packet_id))
        unacked = [c.recv_publish(timeout=5)]
        received += unacked
    for pkt in unacked:
        c.send(raw.puback(pkt.packet_id))
    assert [p.payload for p in received] == [b"%d" % i for i in range(total)]
    assert not any(p.dup for p in received)


def test_session_and_retained_survive_graceful_restart(
    server: ServerProcess, raw_client: RawFactory, paho_client: PahoFactory
) -> None:
    _offline_subscriber(server, raw_client, "rs-sub", "rs/t", 2)
    pub = paho_client(server, "rs-pub")
    pub.publish("rs/retained", b"kept", qos=1, retain=True)
    for payload, qos in ((b"a", 1), (b"b", 1), (b"c", 2), (b"d", 1)):
        pub.publish("rs/t", payload, qos=qos)
    pub.disconnect()

    server.stop()
    server.start()

    c = _resume(server, raw_client, "rs-sub")
    got: list[tuple[bytes, int]] = []
    while len(got) < 4:
        pkt = c.recv_publish()
        got.append((pkt.payload, pkt.qos))
        c.ack(pkt)
    assert got == [(b"a", 1), (b"b", 1), (b"c", 2), (b"d", 1)]
    # the subscription itself survived
    pub2 = paho_client(server, "rs-pub2")
    pub2.publish("rs/t", b"after-restart", qos=1)
    assert c.recv_publish().payload == b"after-restart"
    # and so did the retained message
    late = raw_client(server, "rs-late")
    assert late.subscribe(1, [("rs/retained", 1)]).granted == [1]
    pkt = late.recv_publish()
    assert (pkt.payload, pkt.retain) == (b"kept", True)


@pytest.mark.slow
@pytest.mark.pushwire_only(
    "mosquitto saves its database asynchronously (autosave), even with autosave_on_changes "
    "the last PUBACKed messages are lost on SIGKILL; it does not promise this"
)
def test_acknowledged_messages_survive_kill_9(
    server_factory: ServerFactory, raw_client: RawFactory, broker: str
) -> None:
    """Every QoS 1 message the server PUBACKed to the publisher is delivered after SIGKILL."""
    n = 200
    server = server_factory(durability=True, max_queued_messages=1000)
    _offline_subscriber(server, raw_client, "k9-sub", "k9/t", 1)
    pub = raw_client(server, "k9-pub")
    pub.send(b"".join(raw.publish("k9/t", b"%03d" % i, qos=1, packet_id=i + 1) for i in range(n)))
    acked = {pub.expect(raw.PUBACK).packet_id for _ in range(n)}
    assert acked == set(range(1, n + 1))

    server.kill()
    server.start()

    c = _resume(server, raw_client, "k9-sub")
    order: list[bytes] = []
    seen: set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(seen) < n:
        try:
            pkt = c.recv_publish(timeout=min(5.0, max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        c.send(raw.puback(pkt.packet_id))
        if pkt.payload not in seen:
            seen.add(pkt.payload)
            order.append(pkt.payload)
    missing = sorted({b"%03d" % i for i in range(n)} - seen)
    assert not missing, f"{len(missing)} of {n} acknowledged messages lost: {missing[:10]}..."
    assert order == sorted(order), "redelivered out of order"
