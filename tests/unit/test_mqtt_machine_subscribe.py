"""The MQTT protocol machine without I/O: SUBSCRIBE/UNSUBSCRIBE codes, No Local on shared
subscriptions, acks of our own deliveries, PINGREQ."""

from __future__ import annotations

import pytest

from helpers.machine import PrefixRights, connected, decode_out, feed, sent
from pushwire.core.subscription import SubscriptionOptions
from pushwire.mqtt.connection import Limits, ProtocolViolation
from pushwire.mqtt.events import OutboundAck, SubscribeIn, UnsubscribeIn
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    ReasonCode,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

Q1 = SubscriptionOptions(qos=1)


def suback(ev: object, level: int) -> Suback:
    assert isinstance(ev, SubscribeIn)
    (packet,) = decode_out(ev.suback, level)
    assert isinstance(packet, Suback)
    return packet


def test_suback_codes_per_filter_and_version() -> None:
    filters = [
        ("mine/#", Q1),
        ("mine/+x", Q1),
        ("other", Q1),
        ("mine/a", SubscriptionOptions(qos=2)),
    ]
    conn, _, _ = connected(rights=PrefixRights("mine"))
    (ev,) = feed(conn, Subscribe(1, filters))
    assert suback(ev, PROTOCOL_V5).reason_codes == [
        1,
        ReasonCode.TOPIC_FILTER_INVALID,
        ReasonCode.NOT_AUTHORIZED,
        2,
    ]
    assert isinstance(ev, SubscribeIn)
    assert [s.filter for s in ev.subscriptions] == ["mine/#", "mine/a"]
    conn, _, _ = connected(PROTOCOL_V311, rights=PrefixRights("mine"))
    (ev,) = feed(conn, Subscribe(1, filters))
    assert suback(ev, PROTOCOL_V311).reason_codes == [1, 0x80, 0x80, 2]


def test_subscription_identifier_travels_with_each_subscription() -> None:
    conn, _, _ = connected()
    (ev,) = feed(conn, Subscribe(1, [("a", Q1)], {"subscription_identifier": 42}))
    assert isinstance(ev, SubscribeIn) and ev.subscriptions[0].subscription_id == 42


def test_subscription_quota_counts_what_the_session_holds_and_this_packet_adds() -> None:
    conn, session, _ = connected(limits=Limits(max_subscriptions=2))
    session.subscriptions["held"] = object()
    (ev,) = feed(conn, Subscribe(1, [("a", Q1), ("a", Q1), ("held", Q1), ("b", Q1)]))
    assert suback(ev, PROTOCOL_V5).reason_codes == [1, 1, 1, ReasonCode.QUOTA_EXCEEDED]


def test_no_local_on_a_shared_subscription_is_a_protocol_error() -> None:
    conn, _, _ = connected()
    with pytest.raises(ProtocolViolation):  # MQTT-3.8.3-4
        feed(conn, Subscribe(1, [("$share/g/a", SubscriptionOptions(qos=1, no_local=True))]))


def test_unsuback_reason_codes_on_v5_only() -> None:
    conn, _, _ = connected()
    (ev,) = feed(conn, Unsubscribe(3, ["a", "b"]))
    assert isinstance(ev, UnsubscribeIn) and ev.filters == ["a", "b"]
    data = conn.unsuback(3, [True, False])
    assert decode_out(data, PROTOCOL_V5) == [
        Unsuback(3, [ReasonCode.SUCCESS, ReasonCode.NO_SUBSCRIPTION_EXISTED])
    ]
    conn, _, _ = connected(PROTOCOL_V311)
    assert decode_out(conn.unsuback(3, [True, False]), PROTOCOL_V311) == [Unsuback(3, [])]


def test_acks_of_our_deliveries_go_to_the_session() -> None:
    conn, _, _ = connected()
    assert feed(conn, PubAck(1)) == [OutboundAck("puback", 1)]
    assert feed(conn, PubRec(2)) == [OutboundAck("pubrec", 2)]
    assert feed(conn, PubComp(2)) == [OutboundAck("pubcomp", 2)]
    assert decode_out(conn.pubrel_for(2, True), PROTOCOL_V5) == [PubRel(2)]
    unknown = decode_out(conn.pubrel_for(5, False), PROTOCOL_V5)
    assert unknown == [PubRel(5, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]


def test_pingreq_is_answered() -> None:
    conn, _, _ = connected()
    assert sent(feed(conn, PingReq()), PROTOCOL_V5) == [PingResp()]
