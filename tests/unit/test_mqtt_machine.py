"""The MQTT protocol machine without I/O: CONNECT, DISCONNECT, wills, timers, closes.

Each rule here used to need a server and a real client (about a second per test); the
integration tests keep proving the wiring."""

from __future__ import annotations

import pytest

from helpers.machine import (
    OK,
    PlainSession,
    PrefixRights,
    connect_events,
    connected,
    decode_out,
    feed,
    sent,
)
from pushwire.core.identity import AuthResult
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError, UnsupportedProtocolVersion
from pushwire.mqtt.connection import Limits, MQTTConnection, ProtocolViolation
from pushwire.mqtt.events import Close, ConnectIn, Event, Send
from pushwire.mqtt.handle_connect import NEVER_EXPIRES, will_delay
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Auth,
    Connack,
    Connect,
    Disconnect,
    PingReq,
    ReasonCode,
    Will,
)


def connack_of(events: list[Event], level: int) -> Connack:
    packets = sent(events, level)
    assert isinstance(packets[0], Connack)
    return packets[0]


def test_v5_empty_client_id_gets_one_assigned_in_connack() -> None:
    conn, _, (connack,) = connected(client_id="")
    assert isinstance(connack, Connack) and connack.reason_code == 0
    assigned = connack.properties["assigned_client_identifier"]
    assert assigned.startswith("pushwire-") and conn.client_id == assigned


def test_v311_empty_client_id_with_a_persistent_session_is_rejected() -> None:
    conn = MQTTConnection()
    events = connect_events(conn, Connect("", PROTOCOL_V311, clean_start=False))
    assert connack_of(events, PROTOCOL_V311).reason_code == 2  # identifier rejected
    assert isinstance(events[-1], Close)


def test_v311_empty_client_id_with_a_clean_session_is_assigned_silently() -> None:
    conn, _, (connack,) = connected(PROTOCOL_V311, client_id="")
    assert isinstance(connack, Connack) and connack.properties == {}
    assert conn.client_id.startswith("pushwire-")


def test_keepalive_above_the_maximum_is_clamped_and_announced() -> None:
    conn, _, (connack,) = connected(limits=Limits(max_keepalive=30), keepalive=100)
    assert isinstance(connack, Connack)
    assert connack.properties["server_keep_alive"] == 30 and conn.keepalive == 30


def test_connack_announces_the_servers_limits() -> None:
    limits = Limits(max_packet_size=5000, topic_alias_maximum=7, receive_maximum=12)
    _, _, (connack,) = connected(limits=limits)
    assert isinstance(connack, Connack)
    props = connack.properties
    assert props["receive_maximum"] == 12
    assert props["topic_alias_maximum"] == 7
    assert props["maximum_packet_size"] == 5000
    assert "server_keep_alive" not in props


def test_session_expiry_is_read_from_connect() -> None:
    conn = MQTTConnection()
    (ev,) = connect_events(
        conn, Connect("c", PROTOCOL_V5, properties={"session_expiry_interval": 9})
    )
    assert isinstance(ev, ConnectIn) and ev.expiry_interval == 9
    conn = MQTTConnection()
    forever = {"session_expiry_interval": NEVER_EXPIRES}
    (ev,) = connect_events(conn, Connect("c", PROTOCOL_V5, properties=forever))
    assert isinstance(ev, ConnectIn) and ev.expiry_interval is None
    conn = MQTTConnection()
    (ev,) = connect_events(conn, Connect("c", PROTOCOL_V311, clean_start=False))
    assert isinstance(ev, ConnectIn) and ev.expiry_interval is None


@pytest.mark.parametrize(
    ("reason", "v5_code", "v311_code"),
    [
        ("bad_credentials", ReasonCode.BAD_USER_NAME_OR_PASSWORD, 4),
        ("not_authorized", ReasonCode.NOT_AUTHORIZED, 5),
        ("rate_limited", ReasonCode.CONNECTION_RATE_EXCEEDED, 5),
    ],
)
def test_refused_login_codes_per_protocol_version(
    reason: str, v5_code: int, v311_code: int
) -> None:
    for level, code in ((PROTOCOL_V5, v5_code), (PROTOCOL_V311, v311_code)):
        conn = MQTTConnection()
        (request,) = connect_events(conn, Connect("c", level))
        assert isinstance(request, ConnectIn)
        result = AuthResult(None, reason, "no")  # type: ignore[arg-type]
        events = conn.check_login(request, result, PrefixRights())
        assert connack_of(events, level).reason_code == code
        assert isinstance(events[-1], Close)


def test_over_capacity_is_refused_as_server_busy() -> None:
    for level, code in ((PROTOCOL_V5, ReasonCode.SERVER_BUSY), (PROTOCOL_V311, 3)):
        conn = MQTTConnection()
        conn.over_capacity = True
        events = connect_events(conn, Connect("c", level))
        assert connack_of(events, level).reason_code == code
        assert conn.stats.connections_refused == 1


def test_invalid_will_topic_is_refused() -> None:
    conn = MQTTConnection()
    events = connect_events(conn, Connect("c", PROTOCOL_V5, will=Will("a/+", b"x")))
    assert connack_of(events, PROTOCOL_V5).reason_code == ReasonCode.TOPIC_NAME_INVALID
    conn = MQTTConnection()
    events = connect_events(conn, Connect("c", PROTOCOL_V311, will=Will("a/+", b"x")))
    assert [type(e) for e in events] == [Close]  # 3.1.1 has no code for it


def test_will_topic_outside_the_rights_is_refused() -> None:
    conn = MQTTConnection()
    (request,) = connect_events(conn, Connect("c", PROTOCOL_V5, will=Will("other/x", b"x")))
    assert isinstance(request, ConnectIn)
    events = conn.check_login(request, OK, PrefixRights("mine/"))
    assert connack_of(events, PROTOCOL_V5).reason_code == ReasonCode.NOT_AUTHORIZED


def test_packets_before_connack_are_a_violation() -> None:
    conn = MQTTConnection()
    connect_events(conn, Connect("c", PROTOCOL_V5))  # being authenticated: no session yet
    (ping,) = conn.receive_data(b"\xc0\x00")
    with pytest.raises(ProtocolViolation):
        conn.handle(ping)


def test_normal_disconnect_discards_the_will_and_0x04_keeps_it() -> None:
    conn, _, _ = connected(will=Will("w", b"gone"))
    feed(conn, Disconnect())
    assert conn.will is None
    conn, _, _ = connected(will=Will("w", b"gone"))
    events = feed(conn, Disconnect(ReasonCode.DISCONNECT_WITH_WILL))
    assert conn.will is not None and isinstance(events[-1], Close)


def test_disconnect_may_change_session_expiry_but_not_from_zero() -> None:
    conn, session, _ = connected(properties={"session_expiry_interval": 10})
    feed(conn, Disconnect(properties={"session_expiry_interval": NEVER_EXPIRES}))
    assert session.expiry_interval is None
    conn, session, _ = connected(properties={"session_expiry_interval": 0})
    with pytest.raises(ProtocolViolation):  # MQTT-3.14.2-2
        feed(conn, Disconnect(properties={"session_expiry_interval": 5}))


def test_will_delay_ends_with_the_session() -> None:
    delayed = Will("w", b"x", properties={"will_delay_interval": 5})
    assert will_delay(delayed, 0) == 0  # session ends at once: the will goes now
    assert will_delay(delayed, 3) == 3  # the session ends first
    assert will_delay(delayed, 60) == 5
    assert will_delay(delayed, None) == 5  # a session that never expires
    assert will_delay(Will("w", b"x"), None) == 0


def test_keepalive_tick_closes_after_one_and_a_half_periods() -> None:
    conn, _, _ = connected(keepalive=10)
    feed(conn, PingReq(), now=100.0)
    assert conn.tick(110.0) == [] and conn.deadline == pytest.approx(115.0)
    events = conn.tick(115.0)
    assert conn.deadline == 0
    (disconnect,) = sent(events, PROTOCOL_V5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT
    assert isinstance(events[-1], Close)


def test_keepalive_closes_3_1_1_without_a_disconnect() -> None:
    conn, _, _ = connected(PROTOCOL_V311, keepalive=2)
    assert [type(e) for e in conn.tick(3.0)] == [Close]


def test_keepalive_zero_needs_no_timer() -> None:
    conn = MQTTConnection()
    (request,) = connect_events(conn, Connect("c", PROTOCOL_V5, keepalive=0))
    assert isinstance(request, ConnectIn)
    conn.check_login(request, OK, PrefixRights())
    conn.accept(request, PlainSession(), False)
    assert conn.tick(1e9) == [] and conn.deadline == 0


def test_connect_timeout_closes_only_a_connection_without_connect() -> None:
    conn = MQTTConnection(Limits(connect_timeout=10.0), now=100.0)
    assert conn.deadline == 110.0
    assert conn.tick(105.0) == [] and conn.deadline == 110.0  # fired early: waits on
    assert [type(e) for e in conn.tick(110.0)] == [Close]


def test_connect_deadline_gives_way_to_the_keepalive_once_connected() -> None:
    conn = MQTTConnection(Limits(connect_timeout=10.0), now=100.0)
    (request,) = conn.handle(
        conn.receive_data(encode(Connect("c", PROTOCOL_V5, keepalive=2), PROTOCOL_V5), 101.0)[0]
    )
    assert isinstance(request, ConnectIn)
    conn.check_login(request, OK, PrefixRights())
    conn.accept(request, PlainSession(), False)
    assert conn.deadline == 104.0  # keepalive 2 s * 1.5 after CONNECT, before 110
    assert conn.tick(104.0)[-1] == Close("keepalive timeout after 3.0s")
    # a long keepalive keeps the earlier CONNECT deadline; the tick then finds it later
    conn = MQTTConnection(Limits(connect_timeout=10.0), now=100.0)
    (request,) = conn.handle(
        conn.receive_data(encode(Connect("c", PROTOCOL_V5, keepalive=60), PROTOCOL_V5), 101.0)[0]
    )
    assert isinstance(request, ConnectIn)
    conn.check_login(request, OK, PrefixRights())
    conn.accept(request, PlainSession(), False)
    assert conn.deadline == 110.0
    assert conn.tick(110.0) == [] and conn.deadline == 191.0


def test_the_will_is_taken_once_with_its_delay() -> None:
    will = Will("w/x", b"gone", properties={"will_delay_interval": 30})
    conn, _, _ = connected(will=will, properties={"session_expiry_interval": 5})
    assert conn.take_will(at_once=False) == (will, 5)  # the session ends first
    assert conn.take_will(at_once=False) is None


def test_the_will_goes_at_once_when_the_server_stops() -> None:
    will = Will("w/x", b"gone", properties={"will_delay_interval": 30})
    conn, _, _ = connected(will=will, properties={"session_expiry_interval": 60})
    assert conn.take_will(at_once=True) == (will, 0)


def test_the_will_is_dropped_when_its_topic_is_no_longer_allowed() -> None:
    rights = PrefixRights("w/")
    conn, _, _ = connected(will=Will("w/x", b"gone"), rights=rights)
    rights.prefix = "other/"  # rights changed while connected
    assert conn.take_will(at_once=False) is None


def test_a_disconnect_discards_the_will() -> None:
    conn, _, _ = connected(will=Will("w/x", b"gone"))
    feed(conn, Disconnect())
    assert conn.take_will(at_once=False) is None


def test_auth_packet_without_an_authentication_method_is_a_protocol_error() -> None:
    conn, _, _ = connected()
    (packet,) = conn.receive_data(
        encode(Auth(0x18, {"authentication_method": "SCRAM-SHA-256"}), PROTOCOL_V5), 0.0
    )
    with pytest.raises(ProtocolViolation) as exc:
        conn.handle(packet, 0.0)
    assert exc.value.reason_code == ReasonCode.PROTOCOL_ERROR


def test_server_closes_say_why_on_v5_only() -> None:
    conn, _, _ = connected()
    events = conn.taken_over()
    (disconnect,) = sent(events, PROTOCOL_V5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.SESSION_TAKEN_OVER
    conn, _, _ = connected(PROTOCOL_V311)
    events = conn.server_close(ReasonCode.SERVER_SHUTTING_DOWN)
    assert [type(e) for e in events] == [Close]


def test_protocol_error_sends_its_reason_code_once_connected() -> None:
    conn, _, _ = connected()
    events = conn.protocol_error("bad", ReasonCode.TOPIC_ALIAS_INVALID)
    assert isinstance(events[0], Send)
    (disconnect,) = decode_out(events[0].data, PROTOCOL_V5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == ReasonCode.TOPIC_ALIAS_INVALID
    last = events[-1]
    assert isinstance(last, Close) and last.protocol_error


def test_unsupported_protocol_level_is_answered_in_the_3_1_1_format() -> None:
    conn = MQTTConnection()
    body = b"\x00\x04MQTT\x06\x02\x00\x1e\x00\x01c"  # level 6
    with pytest.raises(UnsupportedProtocolVersion) as err:
        conn.receive_data(bytes([0x10, len(body)]) + body)
    events = conn.unsupported_version(err.value.protocol_level)
    assert connack_of(events, PROTOCOL_V311).reason_code == 1  # unacceptable version
    assert isinstance(events[-1], Close)


def _connect_bytes(level: int, properties: bytes, client_id: bytes = b"c") -> bytes:
    """A CONNECT built by hand, so its properties may be broken."""
    body = b"\x00\x04MQTT" + bytes([level]) + b"\x02\x00\x3c"
    if level == PROTOCOL_V5:
        body += bytes([len(properties)]) + properties
    body += len(client_id).to_bytes(2, "big") + client_id
    return bytes([0x10, len(body)]) + body


def test_malformed_v5_connect_is_answered_by_the_machine_with_a_connack() -> None:
    conn = MQTTConnection()
    with pytest.raises(DecodeError) as err:
        conn.receive_data(_connect_bytes(PROTOCOL_V5, b"\xff\x00"))  # unknown property
    assert err.value.packets == []
    events = conn.decode_failed(err.value)
    connack = connack_of(events, PROTOCOL_V5)
    assert connack.reason_code == err.value.reason_code >= 0x80
    last = events[-1]
    assert isinstance(last, Close) and last.protocol_error


def test_v5_connect_larger_than_the_server_accepts_gets_connack_packet_too_large() -> None:
    conn = MQTTConnection(Limits(max_packet_size=64))
    with pytest.raises(DecodeError) as err:
        conn.receive_data(_connect_bytes(PROTOCOL_V5, b"", b"c" * 100))
    events = conn.decode_failed(err.value)
    assert connack_of(events, PROTOCOL_V5).reason_code == ReasonCode.PACKET_TOO_LARGE


def test_malformed_v311_connect_is_closed_without_a_connack() -> None:
    # MQTT-3.1.4-1: a CONNECT that does not conform closes the connection, no CONNACK
    conn = MQTTConnection()
    body = b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01c"  # reserved flag bit set
    with pytest.raises(DecodeError) as err:
        conn.receive_data(bytes([0x10, len(body)]) + body)
    events = conn.decode_failed(err.value)
    assert [type(e) for e in events] == [Close]


def test_malformed_packet_after_connack_gets_disconnect_with_its_code() -> None:
    conn, _, _ = connected()
    with pytest.raises(DecodeError) as err:
        conn.receive_data(b"\x00\x00")  # packet type 0
    (disconnect,) = sent(conn.decode_failed(err.value), PROTOCOL_V5)
    assert isinstance(disconnect, Disconnect)
    assert disconnect.reason_code == err.value.reason_code


def test_unsupported_level_goes_through_decode_failed_too() -> None:
    conn = MQTTConnection()
    body = b"\x00\x04MQTT\x06\x02\x00\x1e\x00\x01c"  # level 6
    with pytest.raises(UnsupportedProtocolVersion) as err:
        conn.receive_data(bytes([0x10, len(body)]) + body)
    events = conn.decode_failed(err.value)
    assert connack_of(events, PROTOCOL_V311).reason_code == 1
