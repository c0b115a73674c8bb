"""PUBLISH and its acks PUBACK/PUBREC/PUBREL/PUBCOMP (3.1.1 sections 3.3-3.7, 5.0 sections
3.3-3.7): decode, encode, and the fan-out encoders (template + patch, plain)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from pushwire.mqtt.codec import publish_caches, wire
from pushwire.mqtt.codec.errors import PROTOCOL_ERROR, TOPIC_NAME_INVALID, DecodeError
from pushwire.mqtt.codec.primitives import (
    _check_packet_id,
    _check_reason,
    _encode_str,
    _encode_vbi,
    _expect_end,
    _frame,
    _read_packet_id,
)
from pushwire.mqtt.codec.properties import (
    _ACK_ALLOWED,
    _MESSAGE_ALLOWED,
    _NO_PROPERTIES_LENGTH,
    _SUBSCRIPTION_IDENTIFIER,
    _TOPIC_ALIAS,
    _encode_properties,
    _PropertyContext,
    _read_properties,
)
from pushwire.mqtt.codec.publish_caches import (
    _SMALL_HEADS,
    _TOPIC_CACHED_BYTES,
    _TOPICS_MAX,
    _topic_field,
)
from pushwire.mqtt.codec.wire import (
    _PUBLISH,
    _PUBLISH_DUP,
    _PUBLISH_QOS_MASK,
    _PUBLISH_QOS_SHIFT,
    _PUBLISH_RETAIN,
    _QOS_INVALID,
    _TYPE_SHIFT,
    _U16_MAX,
    _VBI_CONTINUATION,
    _codes,
    _PacketDecoder,
)
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Packet,
    PacketType,
    Properties,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
)

# assigned, not `from`-imported, so calls on it keep LOAD_METHOD (see wire.py `_U16`)
_U16: Final = wire._U16
_TOPICS: Final = publish_caches._TOPICS
_TOPIC_FIELDS: Final = publish_caches._TOPIC_FIELDS

_PUBACK_CODES_V5: Final = _codes(
    """
    SUCCESS NO_MATCHING_SUBSCRIBERS UNSPECIFIED_ERROR IMPLEMENTATION_SPECIFIC_ERROR
    NOT_AUTHORIZED TOPIC_NAME_INVALID PACKET_IDENTIFIER_IN_USE QUOTA_EXCEEDED
    PAYLOAD_FORMAT_INVALID
    """
)
_PUBREL_CODES_V5: Final = _codes("SUCCESS PACKET_IDENTIFIER_NOT_FOUND")


_PUBLISH_FROM_CLIENT_PROPS: Final = _PropertyContext(
    "PUBLISH from a client", (*_MESSAGE_ALLOWED, _TOPIC_ALIAS)
)
_PUBLISH_FROM_SERVER_PROPS: Final = _PropertyContext(
    "PUBLISH",
    (*_MESSAGE_ALLOWED, _TOPIC_ALIAS, _SUBSCRIPTION_IDENTIFIER),
    repeat_subscription_identifier=True,
)
_PUBACK_PROPS: Final = _PropertyContext("PUBACK", _ACK_ALLOWED)
_PUBREC_PROPS: Final = _PropertyContext("PUBREC", _ACK_ALLOWED)
_PUBREL_PROPS: Final = _PropertyContext("PUBREL", _ACK_ALLOWED)
_PUBCOMP_PROPS: Final = _PropertyContext("PUBCOMP", _ACK_ALLOWED)


def _topic_name(raw_topic: bytes, level: int) -> str:
    if b"+" in raw_topic or b"#" in raw_topic:
        reason = TOPIC_NAME_INVALID if level == PROTOCOL_V5 else PROTOCOL_ERROR
        raise DecodeError("PUBLISH topic name contains a wildcard", reason)
    # _utf8 inlined: this is the hottest string in the broker.
    if b"\x00" in raw_topic:
        raise DecodeError("topic name contains U+0000")
    try:
        topic = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("topic name is not well-formed UTF-8") from None
    if len(raw_topic) <= _TOPIC_CACHED_BYTES:
        if len(_TOPICS) >= _TOPICS_MAX:
            _TOPICS.clear()
        _TOPICS[raw_topic] = topic
    return topic


def _decode_publish(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Publish:
    if start + 2 > end:
        raise DecodeError("PUBLISH topic length truncated")
    topic_stop = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if topic_stop > end:
        raise DecodeError("PUBLISH topic longer than the packet")
    raw_topic = buf[start + 2 : topic_stop]
    topic = _TOPICS.get(raw_topic)
    if topic is None:
        topic = _topic_name(raw_topic, level)
    pos = topic_stop
    qos = (byte0 >> _PUBLISH_QOS_SHIFT) & _PUBLISH_QOS_MASK
    packet_id = None
    if qos:
        # _read_packet_id inlined (once per QoS 1/2 PUBLISH)
        if pos + 2 > end:
            raise DecodeError("PUBLISH packet identifier truncated")
        packet_id = (buf[pos] << 8) | buf[pos + 1]
        if not packet_id:
            raise DecodeError("PUBLISH with packet identifier 0")
        pos += 2
    properties: Properties
    if level == PROTOCOL_V5:
        if pos >= end:
            raise DecodeError("PUBLISH property length missing")
        if buf[pos] == _NO_PROPERTIES_LENGTH:
            properties = {}
            pos += 1
        else:
            context = _PUBLISH_FROM_CLIENT_PROPS if server_side else _PUBLISH_FROM_SERVER_PROPS
            properties, pos = _read_properties(buf, pos, end, context)
        if not topic and "topic_alias" not in properties:
            raise DecodeError("PUBLISH with empty topic and no topic alias", PROTOCOL_ERROR)
    else:
        properties = {}
        if not topic:
            raise DecodeError("PUBLISH with empty topic name")
    return Publish(
        topic,
        buf[pos:end],
        qos,
        (byte0 & _PUBLISH_RETAIN) != 0,
        (byte0 & _PUBLISH_DUP) != 0,
        packet_id,
        properties,
    )


def _ack_decoder(
    factory: Callable[[int, int, Properties], Packet],
    context: _PropertyContext,
    valid_codes: frozenset[int],
) -> _PacketDecoder:
    name = context.name

    def decode(
        buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
    ) -> Packet:
        length = end - start
        packet_id = _read_packet_id(buf, start, end, name)
        # v5 lets the reason code (length 2) and the properties (length 3) be omitted.
        if length == 2:
            return factory(packet_id, 0, {})
        if level != PROTOCOL_V5:
            raise DecodeError(f"{name} remaining length must be 2, got {length}")
        reason = buf[start + 2]
        _check_reason(reason, valid_codes, name)
        if length == 3:
            return factory(packet_id, reason, {})
        properties, pos = _read_properties(buf, start + 3, end, context)
        _expect_end(pos, end, name)
        return factory(packet_id, reason, properties)

    return decode


def _encode_publish(packet: Publish, level: int, packet_id: int | None) -> tuple[bytes, int]:
    qos = packet.qos
    if not 0 <= qos < _QOS_INVALID:
        raise ValueError(f"PUBLISH QoS must be 0, 1 or 2, got {qos}")
    byte0 = (_PUBLISH << _TYPE_SHIFT) | (qos << _PUBLISH_QOS_SHIFT)
    if packet.retain:
        byte0 |= _PUBLISH_RETAIN
    if packet.dup:
        if not qos:
            raise ValueError("PUBLISH QoS 0 must not have DUP set")
        byte0 |= _PUBLISH_DUP
    topic = _encode_str(packet.topic)
    id_bytes = _U16.pack(packet_id) if qos and packet_id is not None else b""
    props = _encode_properties(packet.properties) if level == PROTOCOL_V5 else b""
    payload = packet.payload
    header = bytes((byte0,)) + _encode_vbi(len(topic) + len(id_bytes) + len(props) + len(payload))
    offset = len(header) + len(topic) if qos else -1
    return b"".join((header, topic, id_bytes, props, payload)), offset


def _encode_publish_packet(packet: Publish, level: int) -> bytes:
    packet_id = _check_packet_id(packet.packet_id, "PUBLISH") if packet.qos else None
    return _encode_publish(packet, level, packet_id)[0]


_Ack = PubAck | PubRec | PubRel | PubComp


def _encode_ack(type_code: int, byte0: int) -> Callable[[_Ack, int], bytes]:
    name = PacketType(type_code).name

    # the common ack (success, no properties) is 4 bytes: one pack, no framing work
    short = struct.Struct(">BBH")

    def encode_ack(packet: _Ack, level: int) -> bytes:
        packet_id = packet.packet_id
        if level != PROTOCOL_V5 or (packet.reason_code == 0 and not packet.properties):
            return short.pack(byte0, 2, _check_packet_id(packet_id, name))
        id_bytes = _U16.pack(_check_packet_id(packet_id, name))
        reason = bytes((packet.reason_code,))
        if not packet.properties:
            return _frame(byte0, id_bytes, reason)
        return _frame(byte0, id_bytes, reason, _encode_properties(packet.properties))

    return encode_ack


def encode_publish_template(packet: Publish, protocol_level: int) -> tuple[bytes, int]:
    """Encode a PUBLISH once for fan-out to many subscribers.

    For QoS>0 returns the bytes with packet id 0 and the offset of the 2-byte packet id; for
    QoS 0 the offset is -1. packet.packet_id is ignored. Callers copy, patch the id (and the
    DUP bit 0x08 of byte 0 when redelivering), see `patch_publish`.
    """
    try:
        return _encode_publish(packet, protocol_level, 0)
    except struct.error as exc:
        raise ValueError(f"cannot encode PUBLISH: {exc}") from exc


def encode_publish_plain(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    packet_id: int | None,
    v5: bool,
) -> bytes:
    """A PUBLISH without properties (at level 5: an empty property section), packet id
    included, in one join: what a single delivery needs, without a Publish object or a
    template to patch. Same checks as `encode` (QoS, DUP only with QoS>0, id 1..65535)."""
    topic_field = _TOPIC_FIELDS.get(topic)
    if topic_field is None:
        topic_field = _topic_field(topic)  # raises ValueError when too long
    if qos == 1 or qos == 2:
        if packet_id is None or not 0 < packet_id <= _U16_MAX:
            raise ValueError(f"packet identifier must be in 1..65535, got {packet_id}")
        byte0 = 0x30 | (qos << _PUBLISH_QOS_SHIFT) | (_PUBLISH_DUP if dup else 0)
        id_bytes = _U16.pack(packet_id)
    elif qos == 0:
        if dup:
            raise ValueError("QoS 0 PUBLISH cannot be marked DUP")
        byte0 = 0x30
        id_bytes = b""
    else:
        raise ValueError(f"PUBLISH QoS must be 0, 1 or 2, got {qos}")
    if retain:
        byte0 |= _PUBLISH_RETAIN
    length = len(topic_field) + len(id_bytes) + v5 + len(payload)
    head = _SMALL_HEADS[byte0][length] if length < _VBI_CONTINUATION else None
    if head is None:
        head = bytes((byte0,)) + _encode_vbi(length)
    if v5:
        return b"".join((head, topic_field, id_bytes, b"\x00", payload))
    return b"".join((head, topic_field, id_bytes, payload))


def patch_publish(template: bytes, offset: int, packet_id: int, dup: bool = False) -> bytes:
    """A copy of template with packet_id at offset and the DUP bit set to dup.

    For a QoS 0 template (offset -1) there is no id to patch: the template itself is
    returned, and dup must be False (MQTT-3.3.1-2).
    """
    if offset < 0:
        if dup:
            raise ValueError("QoS 0 PUBLISH cannot be marked DUP")
        return template
    if not 0 < packet_id <= _U16_MAX:
        raise ValueError(f"packet identifier must be in 1..65535, got {packet_id}")
    if not dup and not template[0] & _PUBLISH_DUP:
        # the common case (a template is made without DUP): three slices, one join
        return b"".join((template[:offset], _U16.pack(packet_id), template[offset + 2 :]))
    out = bytearray(template)
    _U16.pack_into(out, offset, packet_id)
    if dup:
        out[0] |= _PUBLISH_DUP
    else:
        out[0] &= ~_PUBLISH_DUP & 0xFF
    return bytes(out)
