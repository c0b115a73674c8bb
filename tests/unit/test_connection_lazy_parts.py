"""The machine makes its decoder and topic-alias tables only when a connection needs them
(connect storms: a lone CONNECT and a bare DISCONNECT need neither), and every rule holds
for a connection that needs them later."""

from __future__ import annotations

import pytest

from helpers.machine import connected, feed
from pushwire.mqtt.codec.encoder import encode
from pushwire.mqtt.connection import Limits, MQTTConnection, ProtocolViolation
from pushwire.mqtt.events import PublishIn
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Connect,
    Disconnect,
    Publish,
    Subscribe,
    SubscriptionOptions,
)


def _lazy_parts(conn: MQTTConnection) -> list[str]:
    return [name for name in ("_decoder", "_aliases", "out_aliases") if name in conn.__dict__]


def test_a_connect_storm_connection_makes_no_decoder_and_no_alias_tables() -> None:
    conn = MQTTConnection(Limits())
    assert conn.receive_data(encode(Connect("dev", PROTOCOL_V311), PROTOCOL_V311)) == [
        Connect("dev", PROTOCOL_V311)
    ]
    assert conn.receive_data(encode(Disconnect(), PROTOCOL_V311)) == [Disconnect()]
    assert _lazy_parts(conn) == []


def test_v5_aliases_work_when_the_client_uses_them_later() -> None:
    conn, _, _ = connected(PROTOCOL_V5)
    assert _lazy_parts(conn) == []  # the CONNECT read alone made none of them
    # the decoder made at the first PUBLISH frames at the level CONNECT announced (a v5
    # PUBLISH with properties would not decode at 3.1.1)
    (ev,) = feed(conn, Publish("long/topic", b"1", properties={"topic_alias": 3}))
    assert isinstance(ev, PublishIn) and ev.packet.topic == "long/topic"
    (ev,) = feed(conn, Publish("", b"2", properties={"topic_alias": 3}))
    assert isinstance(ev, PublishIn) and ev.packet.topic == "long/topic"
    assert conn._aliases == {3: "long/topic"}
    other, _, _ = connected(PROTOCOL_V5)  # tables are per connection, never shared
    with pytest.raises(ProtocolViolation):
        feed(other, Publish("", b"x", properties={"topic_alias": 3}))


def test_packets_after_a_lone_connect_are_not_judged_as_a_first_packet() -> None:
    conn = MQTTConnection(Limits())
    conn.receive_data(encode(Connect("dev", PROTOCOL_V311), PROTOCOL_V311))
    sub = Subscribe(1, [("a/#", SubscriptionOptions(0))])
    assert conn.receive_data(encode(sub, PROTOCOL_V311)) == [sub]
    # and a second CONNECT is still refused
    with pytest.raises(ProtocolViolation, match="second CONNECT"):
        conn.receive_data(encode(Connect("dev", PROTOCOL_V311), PROTOCOL_V311))


def test_a_connect_that_is_not_alone_in_its_read_takes_the_decoder() -> None:
    connect = encode(Connect("dev", PROTOCOL_V311), PROTOCOL_V311)
    publish = encode(Publish("t", b"x"), PROTOCOL_V311)
    conn = MQTTConnection(Limits())
    assert conn.receive_data(connect + publish) == [
        Connect("dev", PROTOCOL_V311),
        Publish("t", b"x"),
    ]
    split = MQTTConnection(Limits())
    assert split.receive_data(connect[:5]) == []
    assert split.receive_data(connect[5:]) == [Connect("dev", PROTOCOL_V311)]
    first = MQTTConnection(Limits())
    with pytest.raises(ProtocolViolation, match="first packet must be CONNECT"):
        first.receive_data(publish[:1])  # judged on its first byte
