"""CONNECT / CONNACK (MQTT 3.1.1 section 3.1, 3.2), session present, session takeover."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from helpers import raw
from helpers.raw import RawClient
from helpers.server import ServerProcess

RawFactory = Callable[..., RawClient]

CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
CONNACK_ACCEPTED_SESSION_PRESENT = b"\x20\x02\x01\x00"
CONNACK_BAD_PROTOCOL = b"\x20\x02\x00\x01"
CONNACK_IDENTIFIER_REJECTED = b"\x20\x02\x00\x02"


def test_connect_accepted(server: ServerProcess, raw_client: RawFactory) -> None:
    c = raw_client(server)
    ack = c.mqtt_connect("conn-ok", clean_session=True, keepalive=30)
    assert ack.raw == CONNACK_ACCEPTED
    assert c.is_open()


# Each rule below keeps one case here, for the wiring; every variant (MQIsdp and level 0,
# each first packet) is a machine unit test in tests/unit/test_mqtt_machine_conformance.py.


def test_unsupported_protocol_level_refused(server: ServerProcess, raw_client: RawFactory) -> None:
    """[MQTT-3.1.2-2]: CONNACK return code 1, then the server disconnects."""
    c = raw_client(server)
    c.send(raw.connect("badlevel", protocol_name="MQTT", protocol_level=6))
    got = c.read_until_closed(timeout=5)
    assert [p.raw for p in got] == [CONNACK_BAD_PROTOCOL]


def test_empty_client_id_clean_session_accepted(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.1.3-6]: a zero-byte ClientId with CleanSession=1 gets an assigned identifier."""
    c = raw_client(server)
    ack = c.mqtt_connect("", clean_session=True)
    assert ack.raw == CONNACK_ACCEPTED
    # the connection is usable: subscribe and receive our own publish
    suback = c.subscribe(1, [("anon/t", 1)])
    assert suback.granted == [1]
    c.send(raw.publish("anon/t", b"hi", qos=0))
    msg = c.recv_publish()
    assert (msg.topic, msg.payload) == ("anon/t", b"hi")


def test_empty_client_id_persistent_session_rejected(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.1.3-8]: zero-byte ClientId with CleanSession=0 -> CONNACK 0x02, then close."""
    c = raw_client(server)
    c.send(raw.connect("", clean_session=False))
    got = c.read_until_closed(timeout=5)
    assert [p.raw for p in got] == [CONNACK_IDENTIFIER_REJECTED]


def test_reserved_connect_flag_closes_without_connack(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.1.2-3]: reserved flag must be 0, otherwise disconnect (no CONNACK)."""
    c = raw_client(server)
    c.send(raw.connect("reserved", reserved_flag=True))
    assert c.read_until_closed(timeout=5) == []


def test_second_connect_closes_connection(server: ServerProcess, raw_client: RawFactory) -> None:
    """[MQTT-3.1.0-2]: a second CONNECT is a protocol violation: disconnect."""
    c = raw_client(server, "twice")
    c.send(raw.connect("twice"))
    got = c.read_until_closed(timeout=5)
    assert all(p.type != raw.CONNACK for p in got), got


def test_first_packet_must_be_connect(server: ServerProcess, raw_client: RawFactory) -> None:
    """[MQTT-3.1.0-1]: the first packet from a client must be CONNECT; otherwise close."""
    c = raw_client(server)
    c.send(raw.publish("x/y", b"early"))
    assert c.read_until_closed(timeout=5) == []


def test_session_present_flag(server: ServerProcess, raw_client: RawFactory) -> None:
    """[MQTT-3.2.2-1..3]: 0 for a clean session or no stored session, 1 when resuming."""
    # clean session: always 0
    with raw_client(server) as c:
        assert c.mqtt_connect("sp", clean_session=True).raw == CONNACK_ACCEPTED
        c.send(raw.DISCONNECT_BYTES)
        c.read_until_closed()
    # persistent session, first time: nothing stored yet -> 0
    with raw_client(server) as c:
        assert c.mqtt_connect("sp", clean_session=False).raw == CONNACK_ACCEPTED
        assert c.subscribe(1, [("sp/t", 1)]).granted == [1]
        c.send(raw.DISCONNECT_BYTES)
        c.read_until_closed()
    # resume: 1
    with raw_client(server) as c:
        assert c.mqtt_connect("sp", clean_session=False).raw == CONNACK_ACCEPTED_SESSION_PRESENT
        c.send(raw.DISCONNECT_BYTES)
        c.read_until_closed()
    # clean session discards the stored one -> 0 ...
    with raw_client(server) as c:
        assert c.mqtt_connect("sp", clean_session=True).raw == CONNACK_ACCEPTED
        c.send(raw.DISCONNECT_BYTES)
        c.read_until_closed()
    # ... and nothing is left for a later persistent connect -> 0
    with raw_client(server) as c:
        assert c.mqtt_connect("sp", clean_session=False).raw == CONNACK_ACCEPTED


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "persistent"])
def test_session_takeover_closes_first_connection(
    server: ServerProcess, raw_client: RawFactory, clean: bool
) -> None:
    """[MQTT-3.1.4-2]: a CONNECT with an existing ClientId disconnects the existing client."""
    first = raw_client(server, "same-id", clean_session=clean)
    assert first.is_open()
    second = raw_client(server)
    ack = second.mqtt_connect("same-id", clean_session=clean)
    assert ack.return_code == 0
    if not clean:
        assert ack.session_present, "the persistent session of the first connection exists"
    first.read_until_closed(timeout=5)
    assert second.is_open()
    # the new connection is fully functional
    assert second.subscribe(7, [("takeover/t", 0)]).raw == b"\x90\x03\x00\x07\x00"
    second.send(raw.publish("takeover/t", b"mine"))
    assert second.recv_publish().payload == b"mine"


@pytest.mark.pushwire_only("closes on the first byte that is not CONNECT")
def test_non_connect_first_packet_closes_at_once(
    server: ServerProcess, raw_client: RawFactory
) -> None:
    """[MQTT-3.1.0-1]: a first packet other than CONNECT closes the connection at once, not
    when the connect timeout ends or the rest of the packet comes. The close must be there
    before a marker: another client's full CONNECT + PINGREQ round trip, sent afterwards."""
    bad = raw_client(server)
    # only the fixed header and part of the body: nothing more ever comes
    bad.send(b"\x30\x64\x00\x03x/y")
    marker = raw_client(server, "marker")
    assert marker.is_open()
    # the server handled `bad`'s bytes long before the marker's; its FIN is already here
    bad.sock.setblocking(False)
    try:
        data = bad.sock.recv(64)
    except BlockingIOError:
        pytest.fail("the connection is still open after another client's round trip")
    except ConnectionResetError:
        data = b""
    assert data == b""
