"""PUBACK, PUBREC, PUBREL, PUBCOMP and PINGREQ.

Acks of our deliveries become `OutboundAck` events for the session (a run of PUBACKs one
`OutboundAcks`, so a subscriber's burst of acks refills its window once); PUBREL of an inbound
QoS 2 flow is answered from the session's inbound table (0x92 on MQTT 5 when the id is
unknown), and its PUBCOMP waits for the store when the id was journaled (a reused id must
not be taken for a duplicate after a crash)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushwire.mqtt.events import Event, OutboundAck, OutboundAcks, Send, SendAck
from pushwire.mqtt.packets import (
    PingReq,
    PingResp,
    PubAck,
    PubAckRun,
    PubComp,
    PubRec,
    PubRel,
    ReasonCode,
)

if TYPE_CHECKING:
    from pushwire.mqtt.connection import MQTTConnection


def handle_puback(conn: MQTTConnection, p: PubAck, now: float) -> list[Event]:
    return [OutboundAck("puback", p.packet_id)]


def handle_puback_run(conn: MQTTConnection, p: PubAckRun, now: float) -> list[Event]:
    return [OutboundAcks(p.packet_ids)]


def handle_pubrec(conn: MQTTConnection, p: PubRec, now: float) -> list[Event]:
    return [OutboundAck("pubrec", p.packet_id)]


def handle_pubcomp(conn: MQTTConnection, p: PubComp, now: float) -> list[Event]:
    return [OutboundAck("pubcomp", p.packet_id)]


def pubrel_for(conn: MQTTConnection, packet_id: int, found: bool) -> bytes:
    """PUBREL answering the client's PUBREC of one of our QoS 2 deliveries."""
    if found or not conn.v5:
        return conn.send(PubRel(packet_id))
    return conn.send(PubRel(packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND))


def handle_pubrel(conn: MQTTConnection, p: PubRel, now: float) -> list[Event]:
    session = conn.session
    assert session is not None
    found = session.inbound_qos2_release(p.packet_id)
    code = 0 if found or not conn.v5 else ReasonCode.PACKET_IDENTIFIER_NOT_FOUND
    return [
        SendAck(
            conn.send(PubComp(p.packet_id, code)), found and session.persistent, found and conn.v5
        )
    ]


def handle_pingreq(conn: MQTTConnection, p: PingReq, now: float) -> list[Event]:
    return [Send(conn.send(PingResp()))]
