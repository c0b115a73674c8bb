"""The sans-IO connection state machine: packet order rules, MQTT 5 topic aliases."""

from __future__ import annotations

import pytest

from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.connection import Limits, MQTTConnection, ProtocolViolation, State
from pushwire.mqtt.packets import (
    Connect,
    Disconnect,
    PingReq,
    Publish,
    ReasonCode,
)


def connected(level: int = 4, aliases: int = 0) -> MQTTConnection:
    conn = MQTTConnection(Limits(max_packet_size=1 << 20, topic_alias_maximum=aliases))
    conn.receive_data(encode(Connect("c", protocol_level=level), level))
    assert conn.state is State.CONNECTED and conn.protocol_level == level
    return conn


def test_first_packet_must_be_connect() -> None:
    conn = MQTTConnection(Limits(max_packet_size=1024))
    with pytest.raises(ProtocolViolation):
        conn.receive_data(encode(PingReq(), 4))
    assert conn.state is State.CLOSED


def test_first_byte_that_is_not_connect_closes_before_the_packet_is_complete() -> None:
    conn = MQTTConnection(Limits(max_packet_size=1024))
    with pytest.raises(ProtocolViolation):
        conn.receive_data(b"\x30")  # a PUBLISH header, the rest never comes
    assert conn.state is State.CLOSED


def test_connect_split_after_its_first_byte_is_accepted() -> None:
    conn = MQTTConnection(Limits(max_packet_size=1024))
    data = encode(Connect("c"), 4)
    assert conn.receive_data(data[:1]) == []
    assert len(conn.receive_data(data[1:])) == 1
    assert conn.state is State.CONNECTED


def test_second_connect_is_a_protocol_violation() -> None:
    conn = connected()
    with pytest.raises(ProtocolViolation) as err:
        conn.receive_data(encode(Connect("c"), 4))
    assert err.value.reason_code == ReasonCode.PROTOCOL_ERROR


def test_nothing_counts_after_disconnect() -> None:
    conn = connected()
    data = encode(Disconnect(), 4) + encode(Publish("t", b"late"), 4)
    packets = conn.receive_data(data)
    assert [type(p) for p in packets] == [Disconnect]
    assert conn.receive_data(encode(PingReq(), 4)) == []


def test_connect_and_publish_in_one_segment() -> None:
    conn = MQTTConnection(Limits(max_packet_size=1024))
    data = encode(Connect("c", protocol_level=5), 5) + encode(Publish("t", b"x"), 5)
    packets = conn.receive_data(data)
    assert [type(p) for p in packets] == [Connect, Publish]


def test_v5_topic_alias_set_then_used() -> None:
    conn = connected(level=5, aliases=4)
    first = Publish("long/topic/name", b"1", properties={"topic_alias": 2})
    (p1,) = conn.receive_data(encode(first, 5))
    assert isinstance(p1, Publish) and p1.topic == "long/topic/name"
    assert "topic_alias" not in p1.properties
    (p2,) = conn.receive_data(encode(Publish("", b"2", properties={"topic_alias": 2}), 5))
    assert isinstance(p2, Publish) and p2.topic == "long/topic/name"


@pytest.mark.parametrize("alias", [5, 9])
def test_v5_topic_alias_above_maximum(alias: int) -> None:
    conn = connected(level=5, aliases=4)
    with pytest.raises(ProtocolViolation) as err:
        conn.receive_data(encode(Publish("t", b"", properties={"topic_alias": alias}), 5))
    assert err.value.reason_code == ReasonCode.TOPIC_ALIAS_INVALID


def test_v5_unknown_alias_is_a_protocol_error() -> None:
    conn = connected(level=5, aliases=4)
    with pytest.raises(DecodeError):
        conn.receive_data(encode(Publish("", b"", properties={"topic_alias": 3}), 5))
