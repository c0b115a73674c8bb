"""A CONNECT or DISCONNECT that arrives alone in its read takes the glue's direct path to
the machine (no event list); these prove over a real socket that its answers and faults
are the general path's: the will kept by DISCONNECT 0x04, and the protocol error of a
DISCONNECT that sets a session expiry after 0 (MQTT-3.14.2-2)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from helpers import raw
from helpers.inproc import InProcessServer, running
from helpers.raw import RawClient, connected_client
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.packets import PROTOCOL_V5, Connect, Disconnect, ReasonCode, Will


@pytest.fixture
def srv() -> Iterator[InProcessServer]:
    yield from running(InProcessServer())


def v5_connect(client_id: str, **kw: object) -> bytes:
    return encode(Connect(client_id, PROTOCOL_V5, **kw), PROTOCOL_V5)  # type: ignore[arg-type]


def test_disconnect_with_will_alone_in_its_read_publishes_the_will(srv: InProcessServer) -> None:
    watcher = connected_client(srv.host, srv.mqtt_port, "watcher", keepalive=30)
    try:
        assert watcher.subscribe(1, [("will/#", 0)]).granted == [0]
        with RawClient(srv.host, srv.mqtt_port) as client:
            client.send(v5_connect("leaving", will=Will("will/leaving", b"gone")))
            assert client.expect(raw.CONNACK).body[1] == 0
            client.send(encode(Disconnect(ReasonCode.DISCONNECT_WITH_WILL), PROTOCOL_V5))
            assert client.read_until_closed() == []
        will = watcher.recv_publish()
        assert (will.topic, will.payload) == ("will/leaving", b"gone")
    finally:
        watcher.close()


def test_disconnect_setting_an_expiry_after_zero_alone_is_a_protocol_error(
    srv: InProcessServer,
) -> None:
    assert srv.server is not None
    stats = srv.server.hub.stats
    errors = srv.call(lambda: stats.protocol_errors)
    with RawClient(srv.host, srv.mqtt_port) as client:
        client.send(v5_connect("expiry", properties={"session_expiry_interval": 0}))
        assert client.expect(raw.CONNACK).body[1] == 0
        client.send(encode(Disconnect(properties={"session_expiry_interval": 5}), PROTOCOL_V5))
        packets = client.read_until_closed()
    assert [p.type for p in packets] == [raw.DISCONNECT]
    assert packets[0].body[0] == ReasonCode.PROTOCOL_ERROR
    assert srv.call(lambda: stats.protocol_errors) == errors + 1


def test_the_connect_deadline_on_shared_timers_closes_only_the_silent() -> None:
    srv = InProcessServer(connect_timeout=0.3).start()
    try:
        assert srv.server is not None
        mqtt = srv.server.mqtt
        with RawClient(srv.host, srv.mqtt_port) as silent:
            connected = connected_client(srv.host, srv.mqtt_port, "on-time", keepalive=0)
            try:
                # the silent one is closed at its deadline, without a CONNACK
                assert silent.read_until_closed() == []
                # the one that sent CONNECT in time is served past the same deadline
                connected.send(raw.PINGREQ_BYTES)
                connected.expect(raw.PINGRESP)
                # neither waits in a deadline slot once past it: nothing keeps them alive
                assert srv.call(lambda: mqtt.connect_deadlines is not None)
                wait_for_no_slot(srv)
                connected.send(raw.PINGREQ_BYTES)
                connected.expect(raw.PINGRESP)
            finally:
                connected.close()
    finally:
        srv.stop()


def test_a_connection_lost_before_its_deadline_leaves_its_slot(srv: InProcessServer) -> None:
    assert srv.server is not None
    mqtt = srv.server.mqtt
    client = connected_client(srv.host, srv.mqtt_port, "short", keepalive=30)
    assert srv.call(lambda: len(mqtt.connect_deadlines or ())) == 1
    client.send(raw.DISCONNECT_BYTES)
    assert client.read_until_closed() == []
    client.close()
    wait_for_no_slot(srv)


def wait_for_no_slot(srv: InProcessServer) -> None:
    assert srv.server is not None
    mqtt = srv.server.mqtt
    deadline = time.monotonic() + 5.0
    while srv.call(lambda: len(mqtt.connect_deadlines or ())) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.call(lambda: len(mqtt.connect_deadlines or ())) == 0
