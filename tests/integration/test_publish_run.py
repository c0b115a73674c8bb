"""The PUBLISHes of one read go through the glue as a batch (mqtt/hub_calls.py
`_publish_run`): a run of plain QoS 0/1 PUBLISHes is routed without the machine's events,
and whatever is unusual goes through the machine at that very packet. Over real sockets,
each scenario is one write from the publisher, run on two servers side by side: the
default one (batched) and one with a publish rate so high it never throttles, which takes
every packet one by one (a rate counts each packet, so it turns the batch off). The
publisher's answers, the subscriber's deliveries and the counters must be the same."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import raw, raw5
from helpers.inproc import InProcessServer
from pushwire.core.acl import AclRule
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.connection import MQTTConnection
from pushwire.mqtt.packets import PROTOCOL_V5, PROTOCOL_V311, Publish

pytestmark = pytest.mark.pushwire_only("in-process servers and their counters")

ONE_BY_ONE = {"publish_rate_per_client": 1e9}  # a rate: never reached, but no batch
END = "t/zz-end"  # the marker published last: the subscriber has everything before it


def start(**settings: Any) -> InProcessServer:
    return InProcessServer(connect_rate_per_client_id=0, **settings).start()


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[InProcessServer, InProcessServer]]:
    extra = getattr(request, "param", {})
    batched = start(**extra)
    one_by_one = start(**(extra | ONE_BY_ONE))
    try:
        yield batched, one_by_one
    finally:
        batched.stop()
        one_by_one.stop()


def v4(topic: str, payload: bytes, qos: int = 1, pid: int | None = None) -> bytes:
    return encode(Publish(topic, payload, qos, False, False, pid if qos else None), PROTOCOL_V311)


def v5(topic: str, payload: bytes, qos: int = 1, pid: int | None = None, **props: Any) -> bytes:
    p = Publish(topic, payload, qos, False, False, pid if qos else None, dict(props))
    return encode(p, PROTOCOL_V5)


def answers(client: raw.RawClient) -> list[bytes]:
    """Every packet the server sends until the PINGRESP that follows the write, or until it
    closes the connection."""
    got: list[bytes] = []
    while True:
        try:
            pkt = client.recv_packet(timeout=10)
        except raw.ConnectionClosed:
            return [*got, b"closed"]
        if pkt.type == raw.PINGRESP:
            return got
        got.append(pkt.raw)


def exchange(
    srv: InProcessServer, data: bytes, *, level: int = 4, before: Any = None
) -> tuple[list[bytes], list[tuple[str, bytes, int]], tuple[int, ...]]:
    """(publisher's answers, subscriber's deliveries, counters) for one write `data`."""
    assert srv.server is not None
    if before is not None:
        before(srv)
    sub = raw.connected_client(srv.host, srv.mqtt_port, "run-sub")
    pub = raw.RawClient(srv.host, srv.mqtt_port)
    with sub, pub:
        assert sub.subscribe(1, [("t/#", 1)]).granted == [1]
        if level == 5:
            pub.send(raw5.connect("run-pub"))
            assert pub.expect(raw.CONNACK).body[1] == 0  # reason code: success
        else:
            assert pub.mqtt_connect("run-pub").return_code == 0
        pub.send(data + raw.PINGREQ_BYTES)
        said = answers(pub)
        with raw.connected_client(srv.host, srv.mqtt_port, "run-end") as end:
            end.publish_complete(END, b"", qos=1, packet_id=1)
        got: list[tuple[str, bytes, int]] = []
        while True:
            pkt = sub.recv_publish(timeout=10)
            sub.ack(pkt)
            if pkt.topic == END:
                break
            got.append((pkt.topic, pkt.payload, pkt.qos))
    stats = srv.server.hub.stats
    counters = srv.call(
        lambda: (stats.messages_received, stats.publish_denied, stats.protocol_errors)
    )
    return said, got, counters


def same_on_both(
    servers: tuple[InProcessServer, InProcessServer], data: bytes, **kwargs: Any
) -> tuple[list[bytes], list[tuple[str, bytes, int]], tuple[int, ...]]:
    batched = exchange(servers[0], data, **kwargs)
    assert batched == exchange(servers[1], data, **kwargs)
    return batched


def puback(pid: int, code: int | None = None) -> bytes:
    return (
        b"\x40\x02" + pid.to_bytes(2, "big")
        if code is None
        else (b"\x40\x03" + pid.to_bytes(2, "big") + bytes([code]))
    )


def test_mixed_qos_in_one_write_keeps_order_and_answers(
    servers: tuple[InProcessServer, InProcessServer],
) -> None:
    data = b"".join(
        [
            v4("t/a", b"1", 1, 1),
            v4("t/a", b"2", 0),
            v4("t/b", b"3", 2, 2),  # QoS 2: the machine's path, PUBREC
            v4("t/a", b"4", 1, 3),
            v4("t/c", b"5", 0),
            v4("t/a", b"6", 1, 4),
            raw.pubrel(2),
        ]
    )
    said, got, _ = same_on_both(servers, data)
    assert said == [puback(1), b"\x50\x02\x00\x02", puback(3), puback(4), b"\x70\x02\x00\x02"]
    assert [payload for _, payload, _ in got] == [b"1", b"2", b"3", b"4", b"5", b"6"]


def _deny_write_on_t_no(srv: InProcessServer) -> None:
    assert srv.server is not None
    auth = srv.server.auth
    srv._run(auth.add_rule(AclRule("anonymous", None, "allow", "readwrite", "t/#")))
    srv._run(auth.add_rule(AclRule("anonymous", None, "deny", "write", "t/no")))


@pytest.mark.parametrize("level", [4, 5])
def test_an_acl_refused_topic_in_the_middle_of_a_run(
    servers: tuple[InProcessServer, InProcessServer], level: int
) -> None:
    pub = v4 if level == 4 else v5
    data = b"".join(
        [
            pub("t/ok", b"1", 1, 1),
            pub("t/no", b"2", 1, 2),
            pub("t/no", b"3", 0),
            pub("t/ok", b"4", 1, 3),
        ]
    )
    said, got, (_, denied, _) = same_on_both(
        servers, data, level=level, before=_once(_deny_write_on_t_no)
    )
    # 3.1.1 cannot refuse: acknowledged and dropped; MQTT 5: 0x87 Not authorized
    assert said == [puback(1), puback(2) if level == 4 else puback(2, 0x87), puback(3)]
    assert got == [("t/ok", b"1", 1), ("t/ok", b"4", 1)]
    assert denied == 2


def _once(fn: Any) -> Any:
    """Run `fn` once per server (the rules stay for the server's life)."""
    done: set[int] = set()

    def run(srv: InProcessServer) -> None:
        if id(srv) not in done:
            done.add(id(srv))
            fn(srv)

    return run


@pytest.mark.parametrize("level", [4, 5])
def test_a_malformed_packet_after_a_run_keeps_the_run(
    servers: tuple[InProcessServer, InProcessServer], level: int
) -> None:
    pub = v4 if level == 4 else v5
    malformed = b"\x36\x03\x00\x01a"  # PUBLISH with QoS 3
    data = pub("t/a", b"1", 1, 1) + pub("t/a", b"2", 0) + pub("t/b", b"3", 1, 2) + malformed
    said, got, (_, _, errors) = same_on_both(servers, data, level=level)
    close = [b"closed"] if level == 4 else [b"\xe0\x01\x81", b"closed"]
    assert said == [puback(1), puback(2), *close]
    assert [payload for _, payload, _ in got] == [b"1", b"2", b"3"]
    assert errors >= 1


def test_topic_aliases_in_a_run(servers: tuple[InProcessServer, InProcessServer]) -> None:
    data = b"".join(
        [
            v5("t/a", b"1", 1, 1, topic_alias=1),  # sets alias 1
            v5("", b"2", 1, 2, topic_alias=1),  # uses it
            v5("t/b", b"3", 0),
            v5("t/c", b"4", 1, 3, topic_alias=1),  # moves alias 1 to t/c
            v5("", b"5", 0, topic_alias=1),
            v5("", b"6", 1, 4, topic_alias=2),  # unknown alias: protocol error
            v5("t/a", b"7", 1, 5),
        ]
    )
    said, got, _ = same_on_both(servers, data, level=5)
    assert said[:4] == [puback(1), puback(2), puback(3), b"\xe0\x01\x82"]
    assert said[4:] == [b"closed"]
    assert got == [("t/a", b"1", 1), ("t/a", b"2", 1), ("t/b", b"3", 0), ("t/c", b"4", 1),
                   ("t/c", b"5", 0)]  # fmt: skip


@pytest.mark.parametrize(
    "servers",
    [{"max_inflight": 2, "backpressure_queue_messages": 4, "max_queued_messages": 1000}],
    indirect=True,
)
def test_backpressure_engaging_mid_run_loses_nothing(
    servers: tuple[InProcessServer, InProcessServer],
) -> None:
    total = 120
    data = b"".join(v4("t/a", b"%d" % i, 1, i + 1) for i in range(total))
    for srv in servers:
        assert srv.server is not None
        stats = srv.server.hub.stats
        held_before = srv.call(lambda: stats.publishers_held)  # noqa: B023
        said, got = _publish_while_draining(srv, data, total)
        assert said == [puback(i + 1) for i in range(total)]  # each once, in order
        assert got == [b"%d" % i for i in range(total)]
        # the publisher was held part-way through its one write
        assert srv.call(lambda: stats.publishers_held) > held_before  # noqa: B023


def _publish_while_draining(
    srv: InProcessServer, data: bytes, total: int
) -> tuple[list[bytes], list[bytes]]:
    """(publisher's answers to the write `data`, the payloads a subscriber acknowledging
    as it reads got)."""
    with (
        raw.connected_client(srv.host, srv.mqtt_port, "bp-sub") as sub,
        raw.connected_client(srv.host, srv.mqtt_port, "bp-pub") as pub,
    ):
        assert sub.subscribe(1, [("t/#", 1)]).granted == [1]
        # one acknowledged delivery first: the subscriber counts as keeping up, so a full
        # queue holds the publisher instead of queueing on
        pub.publish_complete("t/warm", b"w", qos=1, packet_id=500)
        sub.ack(sub.recv_publish())
        got: list[bytes] = []

        def drain() -> None:
            while len(got) < total:
                pkt = sub.recv_publish(timeout=10)
                got.append(pkt.payload)
                sub.ack(pkt)

        reader = threading.Thread(target=drain)
        reader.start()
        pub.send(data + raw.PINGREQ_BYTES)
        said = answers(pub)
        reader.join(20)
    assert not reader.is_alive()
    return said, got


def test_a_plain_run_does_not_go_through_the_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batch is taken: no `MQTTConnection.handle` call for a plain QoS 0/1 PUBLISH."""
    handled: list[str] = []
    original = MQTTConnection.handle

    def counting(self: MQTTConnection, packet: Any, now: float = -1.0) -> Any:
        handled.append(type(packet).__name__)
        return original(self, packet, now)

    monkeypatch.setattr(MQTTConnection, "handle", counting)
    srv = start()
    try:
        data = b"".join(v4("t/a", b"%d" % i, i % 2, i + 1) for i in range(10))
        said, got, _ = exchange(srv, data)
    finally:
        srv.stop()
    assert said == [puback(i + 1) for i in range(10) if i % 2]
    assert len(got) == 10
    assert "Publish" not in handled


@pytest.mark.parametrize("servers", [{"max_inflight": 1, "max_queued_messages": 2}], indirect=True)
def test_quota_exceeded_mid_run_answers_0x97_in_place(
    servers: tuple[InProcessServer, InProcessServer],
) -> None:
    """MQTT 5: once the only subscriber's queue is full, each later QoS 1 PUBLISH of the
    run is answered 0x97, in its place among the successes."""
    data = b"".join(v5("t/q", b"%d" % i, 1, i + 1) for i in range(6))
    answered = []
    for srv in servers:
        with (
            raw.connected_client(srv.host, srv.mqtt_port, "q-sub") as sub,
            raw.RawClient(srv.host, srv.mqtt_port) as pub,
        ):
            assert sub.subscribe(1, [("t/#", 1)]).granted == [1]
            pub.send(raw5.connect("q-pub"))
            assert pub.expect(raw.CONNACK).body[1] == 0
            pub.send(data + raw.PINGREQ_BYTES)
            answered.append(answers(pub))
            first = sub.recv_publish()
            assert first.payload == b"0"
    assert answered[0] == answered[1]
    # one in flight, two queued, the rest refused
    assert answered[0] == [puback(1), puback(2), puback(3)] + [puback(i, 0x97) for i in (4, 5, 6)]
