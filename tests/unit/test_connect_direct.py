"""The machine's direct path for a CONNECT or DISCONNECT read alone (`connect_request`,
`disconnect`, which the glue calls without the event list) gives the same answers, state
and faults as the general path (`handle`)."""

from __future__ import annotations

import pytest

from helpers.machine import PlainSession, connect_events, connected
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.connection import MQTTConnection, ProtocolViolation
from pushwire.mqtt.events import Close, ConnectIn
from pushwire.mqtt.handle_connect import DISCONNECTED, NEVER_EXPIRES
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Connect,
    Disconnect,
    ReasonCode,
    Will,
)


def direct_request(conn: MQTTConnection, packet: Connect) -> object:
    (checked,) = conn.receive_data(encode(packet, packet.protocol_level), 0.0)
    assert isinstance(checked, Connect)
    return conn.connect_request(checked)


@pytest.mark.parametrize(
    "packet",
    [
        Connect("c", PROTOCOL_V311, clean_start=True, keepalive=60),
        Connect("c", PROTOCOL_V311, clean_start=False),
        Connect("c", PROTOCOL_V5, properties={"session_expiry_interval": 30}),
        Connect("c", PROTOCOL_V5, properties={"session_expiry_interval": NEVER_EXPIRES}),
        Connect("c", PROTOCOL_V5, will=Will("w/t", b"gone")),
    ],
)
def test_an_accepted_connect_gives_the_request_handle_would(packet: Connect) -> None:
    (expected,) = connect_events(MQTTConnection(), packet)
    request = direct_request(MQTTConnection(), packet)
    assert isinstance(request, ConnectIn) and request == expected


def test_an_assigned_client_id_is_assigned_on_the_direct_path_too() -> None:
    request = direct_request(MQTTConnection(), Connect("", PROTOCOL_V5))
    assert isinstance(request, ConnectIn) and request.assigned
    assert request.client_id.startswith("pushwire-")


@pytest.mark.parametrize(
    ("packet", "over_capacity"),
    [
        (Connect("c", PROTOCOL_V5), True),  # server busy
        (Connect("c", PROTOCOL_V311), True),
        (Connect("c", PROTOCOL_V5, will=Will("a/+", b"x")), False),  # invalid will topic
        (Connect("", PROTOCOL_V311, clean_start=False), False),  # MQTT-3.1.3-8
    ],
)
def test_a_refused_connect_gives_the_events_handle_would(
    packet: Connect, over_capacity: bool
) -> None:
    general, direct = MQTTConnection(), MQTTConnection()
    general.over_capacity = direct.over_capacity = over_capacity
    expected = connect_events(general, packet)
    assert isinstance(expected[-1], Close)
    assert direct_request(direct, packet) == expected
    assert direct.stats.connections_refused == general.stats.connections_refused


def test_disconnect_gives_the_close_reason_and_discards_the_will() -> None:
    conn, _, _ = connected(will=Will("w", b"gone"))
    (checked,) = conn.receive_data(encode(Disconnect(), PROTOCOL_V5), 1.0)
    assert isinstance(checked, Disconnect)
    assert conn.disconnect(checked) == DISCONNECTED
    assert conn.will is None
    (close,) = connected()[0].handle(Disconnect())
    assert close == Close(DISCONNECTED)


def test_disconnect_with_will_keeps_it_and_changes_the_session_expiry() -> None:
    conn, session, _ = connected(
        will=Will("w", b"gone"), properties={"session_expiry_interval": 10}
    )
    packet = Disconnect(ReasonCode.DISCONNECT_WITH_WILL, properties={"session_expiry_interval": 20})
    assert conn.disconnect(packet) == DISCONNECTED
    assert conn.will is not None and session.expiry_interval == 20


def test_disconnect_cannot_set_an_expiry_after_zero() -> None:
    conn, _, _ = connected(session=PlainSession(expiry_interval=0))
    with pytest.raises(ProtocolViolation):  # MQTT-3.14.2-2
        conn.disconnect(Disconnect(properties={"session_expiry_interval": 5}))
