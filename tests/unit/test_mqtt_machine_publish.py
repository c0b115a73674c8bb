"""The MQTT protocol machine without I/O: PUBLISH in (aliases, depth, ACL, the inbound
QoS 2 table, Receive Maximum) and out (encode once, Maximum Packet Size, topic aliases)."""

from __future__ import annotations

import pytest

from helpers.machine import PrefixRights, connected, decode_out, feed, sent
from pushwire.core.message import Message
from pushwire.core.session import Delivery
from pushwire.mqtt.connection import Limits, MQTTConnection, ProtocolViolation
from pushwire.mqtt.events import Close, PublishIn, SendAck
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
)


def test_qos1_publish_is_routed_with_its_puback_to_follow() -> None:
    conn, _, _ = connected()
    (ev,) = feed(conn, Publish("a/b", b"x", 1, packet_id=7), now=3.0)
    assert isinstance(ev, PublishIn) and ev.packet.topic == "a/b"
    assert ev.ack is not None and decode_out(ev.ack, PROTOCOL_V5) == [PubAck(7)]
    assert ev.releases and ev.received == 3.0 and not ev.durable


def test_qos2_is_routed_once_and_completed_by_pubrel() -> None:
    conn, session, _ = connected(properties={"session_expiry_interval": 60})
    (ev,) = feed(conn, Publish("a", b"x", 2, packet_id=9))
    assert isinstance(ev, PublishIn) and ev.durable  # persistent: the id must be stored
    assert session.inbound_qos2 == {9}
    # a resend before PUBREL is acknowledged again, never routed again
    (again,) = feed(conn, Publish("a", b"x", 2, dup=True, packet_id=9))
    assert isinstance(again, SendAck) and sent([again], PROTOCOL_V5) == [PubRec(9)]
    (comp,) = feed(conn, PubRel(9))
    assert isinstance(comp, SendAck) and comp.durable and comp.releases
    assert sent([comp], PROTOCOL_V5) == [PubComp(9)] and session.inbound_qos2 == set()


def test_pubrel_for_an_unknown_id() -> None:
    conn, _, _ = connected()
    (comp,) = feed(conn, PubRel(4))
    assert sent([comp], PROTOCOL_V5) == [PubComp(4, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)]
    conn, _, _ = connected(PROTOCOL_V311)
    (comp,) = feed(conn, PubRel(4))
    assert sent([comp], PROTOCOL_V311) == [PubComp(4)]


def test_publish_outside_the_rights_is_acked_with_not_authorized_on_v5() -> None:
    conn, session, _ = connected(rights=PrefixRights("mine/"))
    (ack,) = feed(conn, Publish("other", b"x", 1, packet_id=1))
    assert sent([ack], PROTOCOL_V5) == [PubAck(1, ReasonCode.NOT_AUTHORIZED)]
    (rec,) = feed(conn, Publish("other", b"x", 2, packet_id=2))
    assert sent([rec], PROTOCOL_V5) == [PubRec(2, ReasonCode.NOT_AUTHORIZED)]
    assert session.inbound_qos2 == set()  # a failed PUBREC ends the flow
    assert feed(conn, Publish("other", b"x")) == []
    assert conn.stats.publish_denied == 3
    conn, _, _ = connected(PROTOCOL_V311, rights=PrefixRights("mine/"))
    (ack,) = feed(conn, Publish("other", b"x", 1, packet_id=1))
    assert sent([ack], PROTOCOL_V311) == [PubAck(1)]  # 3.1.1 cannot say no


def test_sys_topics_are_acked_but_never_routed() -> None:
    conn, _, _ = connected()
    (ack,) = feed(conn, Publish("$SYS/x", b"x", 1, packet_id=1))
    assert isinstance(ack, SendAck) and sent([ack], PROTOCOL_V5) == [PubAck(1)]
    assert feed(conn, Publish("$SYS/x", b"x")) == []


def test_topic_deeper_than_the_limit() -> None:
    limits = Limits(max_topic_levels=2)
    conn, _, _ = connected(limits=limits)
    (ack,) = feed(conn, Publish("a/b/c", b"x", 1, packet_id=1))
    assert sent([ack], PROTOCOL_V5) == [PubAck(1, ReasonCode.TOPIC_NAME_INVALID)]
    events = feed(conn, Publish("a/b/c", b"x"))
    assert sent(events, PROTOCOL_V5) == [Disconnect(ReasonCode.TOPIC_NAME_INVALID)]
    conn, _, _ = connected(PROTOCOL_V311, limits=limits)
    assert [type(e) for e in feed(conn, Publish("a/b/c", b"x", 1, packet_id=1))] == [Close]


def test_inbound_topic_alias_is_set_then_used() -> None:
    conn, _, _ = connected()
    feed(conn, Publish("long/topic", b"1", properties={"topic_alias": 3}))
    (ev,) = feed(conn, Publish("", b"2", properties={"topic_alias": 3}))
    assert isinstance(ev, PublishIn) and ev.packet.topic == "long/topic"
    assert "topic_alias" not in ev.packet.properties
    with pytest.raises(ProtocolViolation) as err:
        feed(conn, Publish("t", b"3", properties={"topic_alias": 9}))  # maximum is 8
    assert err.value.reason_code == ReasonCode.TOPIC_ALIAS_INVALID


def test_receive_maximum_is_enforced_on_open_inbound_flows() -> None:
    conn, _, _ = connected(limits=Limits(receive_maximum=2))
    assert isinstance(feed(conn, Publish("a", b"1", 1, packet_id=1))[0], PublishIn)
    assert isinstance(feed(conn, Publish("a", b"2", 2, packet_id=2))[0], PublishIn)
    conn.ack_written()  # the PUBACK of 1 went out: one flow is free again
    assert isinstance(feed(conn, Publish("a", b"3", 1, packet_id=3))[0], PublishIn)
    # 2 (QoS 2, no PUBCOMP yet) and 3 (PUBACK not written) are open: a third is too many
    events = feed(conn, Publish("a", b"4", 1, packet_id=4))
    assert sent(events, PROTOCOL_V5) == [Disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)]
    assert isinstance(events[-1], Close)


def test_receive_maximum_frees_a_qos2_flow_at_pubcomp() -> None:
    conn, _, _ = connected(limits=Limits(receive_maximum=1))
    feed(conn, Publish("a", b"1", 2, packet_id=1))
    (comp,) = feed(conn, PubRel(1))
    assert isinstance(comp, SendAck) and comp.releases
    conn.ack_written()
    assert isinstance(feed(conn, Publish("a", b"2", 2, packet_id=2))[0], PublishIn)


def test_receive_maximum_does_not_apply_to_qos0_or_v311() -> None:
    conn, _, _ = connected(limits=Limits(receive_maximum=1))
    for _ in range(3):
        assert isinstance(feed(conn, Publish("a", b"x"))[0], PublishIn)
    conn, _, _ = connected(PROTOCOL_V311, limits=Limits(receive_maximum=1))
    for pid in range(1, 4):
        assert isinstance(feed(conn, Publish("a", b"x", 1, packet_id=pid))[0], PublishIn)


# -- outbound ----------------------------------------------------------------------------


def delivery(
    topic: str, payload: bytes = b"hello", qos: int = 0, pid: int | None = None
) -> Delivery:
    return Delivery(0, Message(topic, payload, qos), qos, False, wire_id=pid)


def client(**props: int) -> MQTTConnection:
    conn, _, _ = connected(limits=Limits(outgoing_topic_aliases=2), properties=props)
    return conn


def published(conn: MQTTConnection, data: bytes | None) -> Publish:
    assert data is not None
    (p,) = decode_out(data, conn.protocol_level)
    assert isinstance(p, Publish)
    return p


def test_a_publish_larger_than_the_clients_maximum_packet_size_is_dropped_and_counted() -> None:
    conn = client(maximum_packet_size=64)
    assert conn.encode_delivery(delivery("t", b"x" * 100), False, None) is None
    assert conn.stats.publish_too_large == 1
    small = conn.encode_delivery(delivery("t", b"x" * 10), False, None)
    assert small is not None and len(small) <= 64
    exact = conn.encode_delivery(delivery("t", b"x" * (64 - len(small) + 10)), False, None)
    assert exact is not None and len(exact) == 64  # the limit itself is allowed


def test_without_a_declared_maximum_any_size_is_sent() -> None:
    conn = client()
    assert conn.encode_delivery(delivery("t", b"x" * 100_000), False, None) is not None


def test_encode_once_shares_the_bytes_between_clients() -> None:
    cache: dict[object, object] = {}
    a, b = client(), client()
    first = a.encode_delivery(delivery("t"), False, cache)
    assert first is not None and b.encode_delivery(delivery("t"), False, cache) is first
    one = published(a, a.encode_delivery(delivery("t", qos=1, pid=5), True, cache))
    assert one.packet_id == 5 and one.dup


def test_outgoing_topic_aliases_are_assigned_per_connection_and_bounded() -> None:
    conn = client(topic_alias_maximum=5)  # the server's table holds 2 (outgoing_topic_aliases)
    first = published(conn, conn.encode_delivery(delivery("news/a"), False, None))
    assert first.topic == "news/a" and first.properties["topic_alias"] == 1
    again = published(conn, conn.encode_delivery(delivery("news/a"), False, None))
    assert again.topic == "" and again.properties["topic_alias"] == 1
    other = published(conn, conn.encode_delivery(delivery("news/b"), False, None))
    assert other.topic == "news/b" and other.properties["topic_alias"] == 2
    conn.encode_delivery(delivery("news/a"), False, None)  # news/b is now the oldest
    third = published(conn, conn.encode_delivery(delivery("news/c"), False, None))
    assert third.topic == "news/c" and third.properties["topic_alias"] == 2
    assert len(conn.out_aliases) == 2


def test_no_outgoing_aliases_unless_the_client_accepts_them() -> None:
    conn = client()
    for _ in range(2):
        p = published(conn, conn.encode_delivery(delivery("news/a"), False, None))
        assert p.topic == "news/a" and "topic_alias" not in p.properties
    conn, _, _ = connected(PROTOCOL_V311, limits=Limits(outgoing_topic_aliases=4))
    p = published(conn, conn.encode_delivery(delivery("news/a"), False, None))
    assert p.topic == "news/a"


def test_an_alias_never_announced_because_too_large_is_not_used() -> None:
    conn = client(topic_alias_maximum=2, maximum_packet_size=64)
    assert conn.encode_delivery(delivery("news/a", b"x" * 100), False, None) is None
    p = published(conn, conn.encode_delivery(delivery("news/a"), False, None))
    assert p.topic == "news/a" and p.properties["topic_alias"] == 1
