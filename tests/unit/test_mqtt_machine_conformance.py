"""MQTT conformance rules the integration suite checked with one server per case (about a
second or more each), fed to the protocol machine as the client's bytes and timer ticks.

Every variant is here; tests/integration keeps one case per rule family, which proves the
wiring (the glue in mqtt/protocol.py and its mixins acting on what the machine returns).
The bytes are the integration tests' own (helpers.raw), so both test the same input."""

from __future__ import annotations

import pytest

from helpers import raw
from helpers.machine import OK, PlainSession, PrefixRights, connected, decode_out, feed, sent
from pushwire.core.subscription import SubscriptionOptions
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.connection import Limits, MQTTConnection, State
from pushwire.mqtt.events import Close, ConnectIn, Event, Send, SubscribeIn
from pushwire.mqtt.handle_connect import pending_will_goes_out
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Connack,
    Disconnect,
    PingReq,
    Publish,
    ReasonCode,
    Subscribe,
    Will,
)


def fault(conn: MQTTConnection, data: bytes) -> list[Event]:
    """What the glue does with a read the machine refuses (protocol.py `data_received`):
    `receive_data` raises, then `decode_failed` says what to send before the close."""
    with pytest.raises(DecodeError) as err:
        conn.receive_data(data, 0.0)
    assert conn.state is State.CLOSED
    return conn.decode_failed(err.value)


# -- CONNECT first, at a level we speak (was tests/integration/test_connect.py) -------------


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(raw.PINGREQ_BYTES, id="pingreq"),
        pytest.param(raw.publish("x/y", b"early"), id="publish"),
        pytest.param(raw.subscribe(1, [("x/#", 0)]), id="subscribe"),
        pytest.param(raw.DISCONNECT_BYTES, id="disconnect"),
        # only the fixed header and part of the body: nothing more ever comes
        pytest.param(b"\x30\x64\x00\x03x/y", id="publish-partial"),
        pytest.param(b"\x82", id="subscribe-first-byte"),
        pytest.param(b"\xc0", id="pingreq-first-byte"),
    ],
)
def test_a_first_packet_other_than_connect_closes_at_once_without_connack(first: bytes) -> None:
    # MQTT-3.1.0-1, judged on the first byte: a partial packet cannot hold the socket open
    assert [type(e) for e in fault(MQTTConnection(), first)] == [Close]


@pytest.mark.parametrize(
    ("name", "level"),
    [("MQIsdp", 3), ("MQTT", 6), ("MQTT", 0)],
    ids=["mqtt31-MQIsdp", "level6", "level0"],
)
def test_an_unsupported_protocol_level_gets_connack_1_then_close(name: str, level: int) -> None:
    # MQTT-3.1.2-2: return code 1 (unacceptable protocol version), in 3.1.1's format
    events = fault(
        MQTTConnection(), raw.connect("badlevel", protocol_name=name, protocol_level=level)
    )
    assert isinstance(events[0], Send)
    assert events[0].data == b"\x20\x02\x00\x01"
    assert [type(e) for e in events[1:]] == [Close]


def test_a_reserved_connect_flag_closes_without_connack() -> None:
    # MQTT-3.1.2-3 (and MQTT-3.1.4-1: a CONNECT that does not conform gets no CONNACK)
    events = fault(MQTTConnection(), raw.connect("reserved", reserved_flag=True))
    assert [type(e) for e in events] == [Close]


def test_a_second_connect_closes_without_a_second_connack() -> None:
    conn, _, _ = connected(PROTOCOL_V311, client_id="twice")
    events = fault(conn, raw.connect("twice"))  # MQTT-3.1.0-2
    assert [type(e) for e in events] == [Close]


# -- wills and keepalive (was tests/integration/test_will_keepalive.py) ---------------------


@pytest.mark.parametrize(
    "violation",
    [
        pytest.param(raw.publish("x", b"", qos=1, packet_id=1)[:1] + b"\x00", id="truncated"),
        pytest.param(b"\x36\x05\x00\x01x\x00\x01", id="publish-qos3"),
        pytest.param(raw.connect("again"), id="second-connect"),
    ],
)
def test_a_protocol_error_close_keeps_the_will_for_publishing(violation: bytes) -> None:
    # section 3.1.2.5: the server closing for a protocol error is a reason to send the will
    will = Will("will/violator", b"violator is gone", 1)
    conn, _, _ = connected(PROTOCOL_V311, will=will)
    events = fault(conn, violation)
    assert isinstance(events[-1], Close) and events[-1].protocol_error
    assert conn.take_will(at_once=False) == (will, 0)


@pytest.mark.parametrize("keepalive", [1, 2, 10])
def test_a_silent_client_is_closed_at_one_and_a_half_keepalives_not_before(keepalive: int) -> None:
    # MQTT-3.1.2-24: the machine's deadline is 1.5 x Keep Alive after the last byte
    conn, _, _ = connected(PROTOCOL_V311, keepalive=keepalive)
    limit = 1.5 * keepalive
    assert conn.tick(limit - 0.01) == []  # within its allowance (a timer that fired early)
    assert conn.deadline == limit
    assert [type(e) for e in conn.tick(limit)] == [Close]


@pytest.mark.parametrize(
    "packet",
    [PingReq(), Publish("ka/t", b"tick"), Subscribe(1, [("ka/#", SubscriptionOptions())])],
    ids=["pingreq", "publish", "subscribe"],
)
def test_any_packet_within_the_keepalive_moves_its_deadline(packet: object) -> None:
    # section 3.1.2.10: any control packet resets the keepalive
    conn, _, _ = connected(PROTOCOL_V311, keepalive=1)
    for n in range(1, 8):  # a packet every second for 7 s, each within 1.5 s of the last
        feed(conn, packet, now=float(n))  # type: ignore[arg-type]
        assert conn.tick(n + 1.49) == []
    assert conn.state is State.CONNECTED
    assert [type(e) for e in conn.tick(7 + 1.5)] == [Close]  # then silence


def test_a_keepalive_timeout_closes_with_the_will_kept() -> None:
    will = Will("will/silent", b"silent is gone", 1)
    conn, _, _ = connected(PROTOCOL_V311, keepalive=1, will=will)
    assert [type(e) for e in conn.tick(1.5)] == [Close]
    assert conn.take_will(at_once=False) == (will, 0)


def test_a_keepalive_timeout_says_why_on_v5() -> None:
    conn, _, _ = connected(PROTOCOL_V5, keepalive=1)
    events = conn.tick(1.5)
    assert sent(events, PROTOCOL_V5) == [Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)]


def test_a_pending_will_is_never_sent_after_a_resume_and_sent_now_for_a_new_session() -> None:
    # MQTT-3.1.3-9, as mqtt/wills.py applies it to the will waiting for its delay
    assert pending_will_goes_out(session_present=True) is False
    assert pending_will_goes_out(session_present=False) is True


# -- SUBSCRIBE and UNSUBSCRIBE (was tests/integration/test_subscribe.py) --------------------


@pytest.mark.parametrize("bad_filter", ["a/b#", "a/#/b", "a+/b", "+a"])
def test_a_misplaced_wildcard_gets_0x80_and_the_valid_filter_beside_it_is_granted(
    bad_filter: str,
) -> None:
    # section 4.7.1: the refused filter fails alone; the connection stays usable
    conn, _, _ = connected(PROTOCOL_V311, client_id="badfilter")
    (packet,) = conn.receive_data(raw.subscribe(5, [("ok/t", 1), (bad_filter, 1)]), 0.0)
    (ev,) = conn.handle(packet, 0.0)
    assert isinstance(ev, SubscribeIn)
    assert ev.suback == b"\x90\x04\x00\x05\x01\x80"
    assert [s.filter for s in ev.subscriptions] == ["ok/t"]
    assert conn.state is State.CONNECTED


def test_suback_grants_the_requested_qos_per_filter() -> None:
    conn, _, _ = connected(PROTOCOL_V311, client_id="granted")
    (packet,) = conn.receive_data(raw.subscribe(0x0102, [("g/0", 0), ("g/1", 1), ("g/2", 2)]))
    (ev,) = conn.handle(packet)
    assert isinstance(ev, SubscribeIn) and ev.suback == b"\x90\x05\x01\x02\x00\x01\x02"


def test_unsuback_answers_a_filter_that_was_never_subscribed() -> None:
    # MQTT-3.10.4-5: UNSUBACK even when no subscription matched (3.1.1: no reason codes)
    conn, _, _ = connected(PROTOCOL_V311, client_id="unsub-none")
    (packet,) = conn.receive_data(raw.unsubscribe(3, ["never/subscribed"]))
    assert conn.handle(packet)  # the hub is asked; it finds nothing
    assert conn.unsuback(3, [False]) == b"\xb0\x02\x00\x03"


# -- the client's CONNECT read whole, as from a socket ---------------------------------------


def test_an_empty_client_id_with_a_clean_session_is_accepted_over_the_wire() -> None:
    # MQTT-3.1.3-6: the bytes of a real client's CONNECT, through to the CONNACK bytes
    conn = MQTTConnection(Limits())
    (packet,) = conn.receive_data(raw.connect("", clean_session=True), 0.0)
    (request,) = conn.handle(packet, 0.0)
    assert isinstance(request, ConnectIn) and request.assigned
    assert conn.check_login(request, OK, PrefixRights()) == []
    connack = conn.accept(request, PlainSession(), False)
    assert connack == b"\x20\x02\x00\x00"
    assert decode_out(connack, PROTOCOL_V311) == [Connack(False, 0)]
