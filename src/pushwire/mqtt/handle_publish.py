"""PUBLISH in both directions.

Inbound: MQTT 5 topic aliases, the topic depth limit (0x90 in the ack on MQTT 5, a close on
3.1.1), Receive Maximum (DISCONNECT 0x93), the inbound QoS 2 table (a resend before PUBREL
is acknowledged again, not routed again), the publisher's ACL (0x87 on MQTT 5), $SYS
(never published by clients) and which ack follows with what durability.

Outbound: a PUBLISH is encoded once per form and shared by every subscriber that takes it
(only packet ids are patched in), a packet larger than the client's Maximum Packet Size is
dropped and counted (MQTT-3.1.2-24/25), and topic aliases are assigned per connection
from a bounded table when the client allows them.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import TYPE_CHECKING, Any

from pushwire.core.message import Message, next_uid
from pushwire.mqtt.codec.publish import encode_publish_plain, encode_publish_template, patch_publish
from pushwire.mqtt.events import Close, Event, PublishIn, Send, SendAck
from pushwire.mqtt.packets import PROTOCOL_V5, Disconnect, PubAck, Publish, PubRec, ReasonCode
from pushwire.mqtt.properties import forwarded
from pushwire.mqtt.violation import ProtocolViolation

if TYPE_CHECKING:
    from pushwire.core.session import Delivery
    from pushwire.mqtt.connection import Limits, MQTTConnection


# PUBACK and PUBREC with a 2-byte body (the packet id alone): first byte, length, id
ACK = _ACK = struct.Struct(">BBH")
PUBACK_BYTE0 = _PUBACK_BYTE0 = 0x40
_PUBREC_BYTE0 = 0x50


def resolve_alias(aliases: dict[int, str], limits: Limits, packet: Publish) -> None:
    """MQTT 5 topic alias sent by the client: set or use one (MQTT-3.3.2-7 ... -12)."""
    alias = packet.properties.pop("topic_alias", None)
    if alias is None:
        if not packet.topic:
            raise ProtocolViolation("empty topic without a topic alias")
        return
    if not 0 < alias <= limits.topic_alias_maximum:
        raise ProtocolViolation("topic alias out of range", ReasonCode.TOPIC_ALIAS_INVALID)
    if packet.topic:
        aliases[alias] = packet.topic
        return
    topic = aliases.get(alias)
    if topic is None:
        raise ProtocolViolation("unknown topic alias", ReasonCode.PROTOCOL_ERROR)
    packet.topic = topic


def handle_publish(conn: MQTTConnection, p: Publish, now: float) -> list[Event]:
    session = conn.session
    assert session is not None
    qos = p.qos
    v5 = conn.protocol_level == PROTOCOL_V5
    topic = p.topic
    # the codec already refused wildcards, U+0000 and bad UTF-8 in the topic, and aliases
    # are resolved, so the name is valid here but for its depth
    max_levels = conn.limits.max_topic_levels
    if topic.count("/") >= max_levels:
        return _refuse_deep_topic(conn, p, max_levels)
    pid = p.packet_id
    if qos == 2 and pid is not None and session.inbound_qos2_seen(pid):
        # a resend before PUBREL: the message was routed already (exactly once)
        return [SendAck(conn.send(PubRec(pid)), False)]
    if qos and v5:
        if conn.inbound_open >= conn.limits.receive_maximum:
            # the client has more QoS 1/2 flows open than CONNACK allowed (MQTT-3.3.4-8)
            conn.stats.protocol_errors += 1
            return [
                Send(conn.send(Disconnect(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED))),
                Close("receive maximum exceeded", logging.INFO),
            ]
        conn.inbound_open += 1
    rights = conn.rights
    if rights is None or not rights.can_publish(topic):
        conn.stats.publish_denied += 1
        if qos == 0:
            return []
        assert pid is not None
        code = ReasonCode.NOT_AUTHORIZED if v5 else 0
        if qos == 1:
            return [SendAck(conn.send(PubAck(pid, code)), False, v5)]
        if code:
            # a failed PUBREC ends the flow
            return [SendAck(conn.send(PubRec(pid, code)), False, v5)]
        session.inbound_qos2_add(pid)
        return [SendAck(conn.send(PubRec(pid)), session.persistent)]
    # a successful PUBACK/PUBREC has the same four bytes in 3.1.1 and 5 (no reason code,
    # no properties): built here, not through the codec, as every QoS 1/2 publish needs one
    if qos == 1:
        assert pid is not None
        if topic.startswith("$SYS"):
            # clients never publish into $SYS; the flow is still acknowledged
            return [SendAck(_ACK.pack(_PUBACK_BYTE0, 2, pid), False, v5)]
        # only MQTT 5 counts open flows (Receive Maximum)
        return [PublishIn(p, _ACK.pack(_PUBACK_BYTE0, 2, pid), False, v5, now)]
    if qos == 0:
        return [] if topic.startswith("$SYS") else [PublishIn(p, None, False, False, -1.0)]
    assert pid is not None
    session.inbound_qos2_add(pid)
    ack = _ACK.pack(_PUBREC_BYTE0, 2, pid)
    durable = session.persistent
    if topic.startswith("$SYS"):
        return [SendAck(ack, durable, False)]
    return [PublishIn(p, ack, durable, False, now)]


def routes_plainly(conn: MQTTConnection, topic: str) -> bool:
    """Would `handle_publish` route a QoS 0/1 PUBLISH to `topic` as it is, with a plain
    success ack: within the depth limit, not $SYS, and allowed by the publisher's ACL? The
    glue's batch of one read's publishes (hub_calls.py `_publish_run`) asks once per
    distinct topic; any other answer sends that packet through `handle_publish`."""
    if topic.count("/") >= conn.limits.max_topic_levels or topic.startswith("$SYS"):
        return False
    rights = conn.rights
    return rights is not None and rights.can_publish(topic)


def room_for_flows(conn: MQTTConnection) -> bool:
    """MQTT 5: may the client open another QoS 1/2 flow (Receive Maximum, MQTT-3.3.4-8)?
    Always on 3.1.1, which counts none."""
    return conn.protocol_level != PROTOCOL_V5 or conn.inbound_open < conn.limits.receive_maximum


def message_of(p: Publish, origin: str) -> Message:
    """The application message a PUBLISH carries: its forwarded MQTT 5 properties, its
    expiry as an absolute time."""
    now = time.time()
    properties = p.properties
    if not properties:
        # positional: a dataclass __init__ with keywords and factories costs twice as much
        return Message(p.topic, p.payload, p.qos, p.retain, {}, None, now, next_uid(), None, origin)
    expiry = properties.get("message_expiry_interval")
    return Message(
        p.topic,
        p.payload,
        p.qos,
        p.retain,
        forwarded(properties),
        now + expiry if expiry is not None else None,
        now,
        next_uid(),
        None,
        origin,
    )


def quota_exceeded(conn: MQTTConnection, ev: PublishIn) -> tuple[bytes, bool]:
    """MQTT 5: the hub could queue the message for none of the matching subscribers (every
    queue was full, docs/queues.md): the ack says 0x97 Quota exceeded instead of success."""
    return failed_ack(conn, ev, ReasonCode.QUOTA_EXCEEDED)


def failed_ack(conn: MQTTConnection, ev: PublishIn, code: int) -> tuple[bytes, bool]:
    """MQTT 5: the PUBACK/PUBREC of `ev` with failure reason `code` instead of success:
    (ack bytes, whether writing it ends the inbound flow). A failed PUBREC ends the QoS 2
    flow, so the packet id leaves the inbound table."""
    p = ev.packet
    pid = p.packet_id
    assert pid is not None and conn.session is not None
    if p.qos == 1:
        return conn.send(PubAck(pid, code)), ev.releases
    conn.session.inbound_qos2_release(pid)
    return conn.send(PubRec(pid, code)), True


def _refuse_deep_topic(conn: MQTTConnection, p: Publish, max_levels: int) -> list[Event]:
    """More levels than max_topic_levels: MQTT 5 answers 0x90 Topic Name invalid (in the
    PUBACK/PUBREC, so the connection lives on; a QoS 0 publish has no ack, so it gets
    DISCONNECT 0x90), MQTT 3.1.1 has no way to say it and closes."""
    conn.stats.publish_denied += 1
    reason = f"topic has more than {max_levels} levels"
    if not conn.v5:
        return [Close(reason, logging.INFO)]
    code = ReasonCode.TOPIC_NAME_INVALID
    if p.qos == 1 and p.packet_id is not None:
        return [SendAck(conn.send(PubAck(p.packet_id, code)), False)]
    if p.qos == 2 and p.packet_id is not None:
        return [SendAck(conn.send(PubRec(p.packet_id, code)), False)]
    return [Send(conn.send(Disconnect(code))), Close(reason, logging.INFO)]


def encode_delivery(
    conn: MQTTConnection, delivery: Delivery, dup: bool, wire_cache: dict[Any, Any] | None
) -> bytes | None:
    msg = delivery.message
    v5 = conn.v5
    if wire_cache is None and not (
        v5
        and (
            msg.properties
            or delivery.subscription_ids
            or msg.expires_at is not None
            or (conn.client_topic_alias_maximum and conn.limits.outgoing_topic_aliases)
        )
    ):
        # one delivery of a message without properties on the wire (every 3.1.1 one; the
        # queue's path): encoded with its packet id in one go, nothing to share or patch
        data = encode_publish_plain(
            msg.topic, msg.payload, delivery.qos, delivery.retain, dup, delivery.wire_id, v5
        )
        limit = conn.client_max_packet_size
        if limit is not None and len(data) > limit:
            conn.stats.publish_too_large += 1
            return None
        return data
    props: dict[str, Any] = msg.properties if v5 else {}
    if v5 and (delivery.subscription_ids or msg.expires_at is not None):
        # per-delivery properties: this form is not shared
        props = dict(props)
        if delivery.subscription_ids:
            props["subscription_identifier"] = list(delivery.subscription_ids)
        remaining = msg.remaining_expiry()
        if remaining is not None:
            props["message_expiry_interval"] = remaining
        wire_cache = None
    topic = msg.topic
    alias = 0
    known = False
    if v5 and conn.client_topic_alias_maximum and conn.limits.outgoing_topic_aliases:
        alias, known = _outgoing_alias(conn, topic)
        if alias:
            props = dict(props)
            props["topic_alias"] = alias
            if known:
                topic = ""  # the alias alone names the topic (MQTT-3.3.2-12)
    key = (conn.protocol_level, delivery.qos, delivery.retain, alias, known)
    cached = wire_cache.get(key) if wire_cache is not None else None
    if cached is None:
        cached = encode_publish_template(
            Publish(topic, msg.payload, delivery.qos, delivery.retain, False, None, props),
            conn.protocol_level,
        )
        if wire_cache is not None:
            wire_cache[key] = cached
    template, offset = cached
    limit = conn.client_max_packet_size
    if limit is not None and len(template) > limit:
        # MQTT-3.1.2-24/25: never larger than the client accepts; the message is dropped
        # for this client as if it had been sent
        conn.stats.publish_too_large += 1
        if alias and not known:
            del conn.out_aliases[msg.topic]  # the alias was never announced
        return None
    if delivery.qos and delivery.wire_id is not None:
        return patch_publish(template, offset, delivery.wire_id, dup)
    return template


def _outgoing_alias(conn: MQTTConnection, topic: str) -> tuple[int, bool]:
    """(alias, already announced) for topic; (0, False) when it gets none. The table holds
    at most min(client's Topic Alias Maximum, outgoing_topic_aliases) topics; when full,
    the least recently sent topic gives its alias to the new one."""
    table = conn.out_aliases
    alias = table.pop(topic, 0)
    if alias:
        table[topic] = alias  # most recently used last
        return alias, True
    size = min(conn.client_topic_alias_maximum, conn.limits.outgoing_topic_aliases)
    if len(table) < size:
        used = set(table.values())  # at most `size` entries, and only for a new topic
        alias = next(n for n in range(1, size + 1) if n not in used)
    else:
        oldest = next(iter(table))
        alias = table.pop(oldest)
    table[topic] = alias
    return alias, False
