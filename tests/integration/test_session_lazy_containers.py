"""A session builds its containers (the offline queue, the inflight window, the inbound
QoS 2 ids, the subscriptions) when it first puts something in them: a connect storm's
clean sessions that only publish hold none of their own (the queue's deque alone was
~760 bytes per connection, bench/README.md "Lazy session containers")."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from helpers import raw
from helpers.inproc import InProcessServer, running
from helpers.raw import RawClient, connected_client
from helpers.server import ServerProcess
from pushwire.mqtt.session import MqttSession

CONTAINERS = ("queue", "inflight", "inbound_qos2", "subscriptions")


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def session_of(srv: InProcessServer, client_id: str) -> MqttSession:
    assert srv.server is not None
    session = srv.server.hub.sessions[client_id]
    assert isinstance(session, MqttSession)  # the MQTT listener's sessions
    return session


def test_clean_sessions_that_only_publish_build_no_containers(srv: InProcessServer) -> None:
    clients: list[RawClient] = []
    try:
        sub = connected_client(srv.host, srv.mqtt_port, "lazy-sub", keepalive=30)
        clients.append(sub)
        sub.subscribe(1, [("lazy/#", 1)])
        for i in range(2):
            pub = connected_client(srv.host, srv.mqtt_port, f"lazy-pub{i}", keepalive=30)
            clients.append(pub)
            pub.publish_complete("lazy/t", f"q1-{i}".encode(), qos=1, packet_id=1)
            pub.publish_complete("lazy/t", f"q0-{i}".encode(), qos=0)
        # the subscriber got all four: the publishers' messages went through their sessions
        got = []
        for _ in range(4):
            pkt = sub.recv_publish()
            sub.ack(pkt)
            got.append(pkt.payload)
        assert sorted(got) == [b"q0-0", b"q0-1", b"q1-0", b"q1-1"]
        sub.send(raw.PINGREQ_BYTES)
        sub.expect(raw.PINGRESP)  # the PUBACKs above were handled before the PINGRESP

        def containers() -> tuple[dict[str, bool], dict[str, int], bool]:
            a, b = session_of(srv, "lazy-pub0"), session_of(srv, "lazy-pub1")
            s = session_of(srv, "lazy-sub")
            shared = {name: getattr(a, name) is getattr(b, name) for name in CONTAINERS}
            sizes = {name: len(getattr(a, name)) for name in CONTAINERS}
            return shared, sizes, s.inflight is a.inflight or s.subscriptions is a.subscriptions

        shared, sizes, sub_shares = srv.call(containers)
        # two publish-only sessions hold the same (empty, shared) containers: none of their own
        assert shared == dict.fromkeys(CONTAINERS, True)
        assert sizes == dict.fromkeys(CONTAINERS, 0)
        # the subscriber, which subscribed and had deliveries inflight, built its own
        assert not sub_shares
    finally:
        for c in clients:
            c.close()


def test_a_session_that_held_messages_leaves_new_sessions_empty(srv: InProcessServer) -> None:
    """What one session writes never lands in what fresh sessions share."""
    clients: list[RawClient] = []
    try:
        sub = connected_client(srv.host, srv.mqtt_port, "held-sub", keepalive=30)
        clients.append(sub)
        sub.subscribe(1, [("held/#", 1)])
        pub = connected_client(srv.host, srv.mqtt_port, "held-pub", keepalive=30)
        clients.append(pub)
        for i in range(3):
            # unacknowledged by the subscriber: they stay inflight in its session
            pub.publish_complete("held/t", b"m%d" % i, qos=1, packet_id=i + 1)
        pub.send(raw.publish("aside/q2", b"x", qos=2, packet_id=9))
        assert pub.expect(raw.PUBREC).packet_id == 9  # an inbound QoS 2 id is held
        for _ in range(3):
            sub.recv_publish()
        fresh = connected_client(srv.host, srv.mqtt_port, "held-fresh", keepalive=30)
        clients.append(fresh)

        def sizes() -> tuple[int, int, dict[str, int]]:
            s = session_of(srv, "held-sub")
            p = session_of(srv, "held-pub")
            f = session_of(srv, "held-fresh")
            return len(s.inflight), len(p.inbound_qos2), {n: len(getattr(f, n)) for n in CONTAINERS}

        inflight, qos2, fresh_sizes = srv.call(sizes)
        assert inflight == 3
        assert qos2 == 1
        assert fresh_sizes == dict.fromkeys(CONTAINERS, 0)
    finally:
        for c in clients:
            c.close()


def test_restored_inbound_qos2_ids_still_stop_a_duplicate_after_restart(
    server: ServerProcess, raw_client: Callable[..., RawClient]
) -> None:
    """The start-up restore builds the session's own id set (it wrote into the set
    directly, which the shared empty one refuses): a QoS 2 PUBLISH resent after a restart,
    before its PUBREL, is still not routed twice [MQTT-4.3.3-2]."""
    sub = raw_client(server, "q2r-sub", clean_session=False)
    assert sub.subscribe(1, [("q2r/t", 1)]).granted == [1]
    pub = raw_client(server, "q2r-pub", clean_session=False)
    pub.send(raw.publish("q2r/t", b"once", qos=2, packet_id=5))
    assert pub.expect(raw.PUBREC).packet_id == 5  # no PUBREL: the id stays held
    first = sub.recv_publish()
    assert first.payload == b"once"
    sub.ack(first)
    sub.send(raw.PINGREQ_BYTES)
    sub.expect(raw.PINGRESP)  # the PUBACK was handled

    server.stop()
    server.start()

    sub = raw_client(server)
    assert sub.mqtt_connect("q2r-sub", clean_session=False).session_present
    pub = raw_client(server)
    assert pub.mqtt_connect("q2r-pub", clean_session=False).session_present
    pub.send(raw.publish("q2r/t", b"once", qos=2, packet_id=5, dup=True))
    assert pub.expect(raw.PUBREC).packet_id == 5
    pub.send(raw.pubrel(5))
    assert pub.expect(raw.PUBCOMP).packet_id == 5
    pub.publish_complete("q2r/t", b"marker", qos=1, packet_id=6)
    # the marker comes next: the resent PUBLISH was known and not delivered again
    nxt = sub.recv_publish()
    assert nxt.payload == b"marker"
    sub.ack(nxt)
