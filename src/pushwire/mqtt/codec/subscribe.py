"""SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK (3.1.1 sections 3.8-3.11, 5.0 sections
3.8-3.11): decode and encode."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.codec import wire
from pushwire.mqtt.codec.errors import PROTOCOL_ERROR, DecodeError
from pushwire.mqtt.codec.primitives import (
    _check_packet_id,
    _check_reason,
    _encode_str,
    _expect_end,
    _frame,
    _read_byte,
    _read_packet_id,
    _read_str,
)
from pushwire.mqtt.codec.properties import (
    _ACK_ALLOWED,
    _SUBSCRIPTION_IDENTIFIER,
    _encode_properties,
    _PropertyContext,
    _read_properties,
)
from pushwire.mqtt.codec.wire import (
    _FLAGS_0010,
    _QOS_INVALID,
    _SUBACK,
    _SUBSCRIBE,
    _TYPE_SHIFT,
    _UNSUBACK,
    _UNSUBSCRIBE,
    _codes,
)
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Properties,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
)

# assigned, not `from`-imported, so calls on it keep LOAD_METHOD (see wire.py `_U16`)
_U16: Final = wire._U16

_SUB_V311_RESERVED: Final = 0xFC
_SUB_QOS_MASK: Final = 0x03
_SUB_NO_LOCAL: Final = 0x04
_SUB_RETAIN_AS_PUBLISHED: Final = 0x08
_SUB_RETAIN_HANDLING_SHIFT: Final = 4
_SUB_RETAIN_HANDLING_MASK: Final = 0x03
_SUB_RETAIN_HANDLING_INVALID: Final = 3
_SUB_V5_RESERVED: Final = 0xC0


_SUBACK_CODES_V311: Final = frozenset({0x00, 0x01, 0x02, 0x80})
_SUBACK_CODES_V5: Final = _codes(
    """
    SUCCESS GRANTED_QOS_1 GRANTED_QOS_2 UNSPECIFIED_ERROR IMPLEMENTATION_SPECIFIC_ERROR
    NOT_AUTHORIZED TOPIC_FILTER_INVALID PACKET_IDENTIFIER_IN_USE QUOTA_EXCEEDED
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
    """
)
_UNSUBACK_CODES_V5: Final = _codes(
    """
    SUCCESS NO_SUBSCRIPTION_EXISTED UNSPECIFIED_ERROR IMPLEMENTATION_SPECIFIC_ERROR
    NOT_AUTHORIZED TOPIC_FILTER_INVALID PACKET_IDENTIFIER_IN_USE
    """
)


_SUBSCRIBE_PROPS: Final = _PropertyContext("SUBSCRIBE", (_SUBSCRIPTION_IDENTIFIER,))
_SUBACK_PROPS: Final = _PropertyContext("SUBACK", _ACK_ALLOWED)
_UNSUBSCRIBE_PROPS: Final = _PropertyContext("UNSUBSCRIBE", ())
_UNSUBACK_PROPS: Final = _PropertyContext("UNSUBACK", _ACK_ALLOWED)


def _decode_subscribe(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Subscribe:
    packet_id = _read_packet_id(buf, start, end, "SUBSCRIBE")
    pos = start + 2
    properties: Properties = {}
    if level == PROTOCOL_V5:
        properties, pos = _read_properties(buf, pos, end, _SUBSCRIBE_PROPS)
    if pos == end:
        raise DecodeError("SUBSCRIBE without topic filters", PROTOCOL_ERROR)
    subscriptions: list[tuple[str, SubscriptionOptions]] = []
    while pos < end:
        topic_filter, pos = _read_str(buf, pos, end, "topic filter")
        options = _read_byte(buf, pos, end, "subscription options")
        pos += 1
        if level == PROTOCOL_V5:
            subscriptions.append((topic_filter, _subscription_options_v5(options)))
        else:
            # MQTT-3.8.3-4: reserved bits or QoS 3 make the packet malformed.
            if options & _SUB_V311_RESERVED or options == _QOS_INVALID:
                raise DecodeError(f"SUBSCRIBE requested QoS byte {options:#04x}")
            subscriptions.append((topic_filter, _QOS_ONLY_OPTIONS[options]))
    return Subscribe(packet_id, subscriptions, properties)


def _subscription_options_v5(options: int) -> SubscriptionOptions:
    if options & _SUB_V5_RESERVED:
        raise DecodeError("SUBSCRIBE options reserved bits are set")
    qos = options & _SUB_QOS_MASK
    if qos == _QOS_INVALID:
        raise DecodeError("SUBSCRIBE with maximum QoS 3", PROTOCOL_ERROR)
    retain_handling = (options >> _SUB_RETAIN_HANDLING_SHIFT) & _SUB_RETAIN_HANDLING_MASK
    if retain_handling == _SUB_RETAIN_HANDLING_INVALID:
        raise DecodeError("SUBSCRIBE with retain handling 3", PROTOCOL_ERROR)
    return SubscriptionOptions(
        qos,
        bool(options & _SUB_NO_LOCAL),
        bool(options & _SUB_RETAIN_AS_PUBLISHED),
        retain_handling,
    )


# SubscriptionOptions is frozen, so 3.1.1 subscriptions can share these.
_QOS_ONLY_OPTIONS: Final = tuple(SubscriptionOptions(qos) for qos in range(3))


def _decode_suback(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Suback:
    packet_id = _read_packet_id(buf, start, end, "SUBACK")
    pos = start + 2
    properties: Properties = {}
    valid = _SUBACK_CODES_V311
    if level == PROTOCOL_V5:
        properties, pos = _read_properties(buf, pos, end, _SUBACK_PROPS)
        valid = _SUBACK_CODES_V5
    if pos == end:
        raise DecodeError("SUBACK without reason codes", PROTOCOL_ERROR)
    codes = list(buf[pos:end])
    for code in codes:
        _check_reason(code, valid, "SUBACK")
    return Suback(packet_id, codes, properties)


def _decode_unsubscribe(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Unsubscribe:
    packet_id = _read_packet_id(buf, start, end, "UNSUBSCRIBE")
    pos = start + 2
    properties: Properties = {}
    if level == PROTOCOL_V5:
        properties, pos = _read_properties(buf, pos, end, _UNSUBSCRIBE_PROPS)
    if pos == end:
        raise DecodeError("UNSUBSCRIBE without topic filters", PROTOCOL_ERROR)
    filters: list[str] = []
    while pos < end:
        topic_filter, pos = _read_str(buf, pos, end, "topic filter")
        filters.append(topic_filter)
    return Unsubscribe(packet_id, filters, properties)


def _decode_unsuback(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Unsuback:
    packet_id = _read_packet_id(buf, start, end, "UNSUBACK")
    pos = start + 2
    if level != PROTOCOL_V5:
        _expect_end(pos, end, "UNSUBACK")
        return Unsuback(packet_id)
    properties, pos = _read_properties(buf, pos, end, _UNSUBACK_PROPS)
    if pos == end:
        raise DecodeError("UNSUBACK without reason codes", PROTOCOL_ERROR)
    codes = list(buf[pos:end])
    for code in codes:
        _check_reason(code, _UNSUBACK_CODES_V5, "UNSUBACK")
    return Unsuback(packet_id, codes, properties)


def _encode_subscribe(packet: Subscribe, level: int) -> bytes:
    parts = [_U16.pack(_check_packet_id(packet.packet_id, "SUBSCRIBE"))]
    if level == PROTOCOL_V5:
        parts.append(_encode_properties(packet.properties))
    for topic_filter, options in packet.subscriptions:
        parts.append(_encode_str(topic_filter))
        byte = options.qos
        if level == PROTOCOL_V5:
            if options.no_local:
                byte |= _SUB_NO_LOCAL
            if options.retain_as_published:
                byte |= _SUB_RETAIN_AS_PUBLISHED
            byte |= options.retain_handling << _SUB_RETAIN_HANDLING_SHIFT
        parts.append(bytes((byte,)))
    return _frame((_SUBSCRIBE << _TYPE_SHIFT) | _FLAGS_0010, *parts)


def _encode_suback(packet: Suback, level: int) -> bytes:
    parts = [_U16.pack(_check_packet_id(packet.packet_id, "SUBACK"))]
    if level == PROTOCOL_V5:
        parts.append(_encode_properties(packet.properties))
    parts.append(bytes(packet.reason_codes))
    return _frame(_SUBACK << _TYPE_SHIFT, *parts)


def _encode_unsubscribe(packet: Unsubscribe, level: int) -> bytes:
    parts = [_U16.pack(_check_packet_id(packet.packet_id, "UNSUBSCRIBE"))]
    if level == PROTOCOL_V5:
        parts.append(_encode_properties(packet.properties))
    parts.extend(_encode_str(topic_filter) for topic_filter in packet.filters)
    return _frame((_UNSUBSCRIBE << _TYPE_SHIFT) | _FLAGS_0010, *parts)


def _encode_unsuback(packet: Unsuback, level: int) -> bytes:
    parts = [_U16.pack(_check_packet_id(packet.packet_id, "UNSUBACK"))]
    if level == PROTOCOL_V5:
        parts.append(_encode_properties(packet.properties))
        parts.append(bytes(packet.reason_codes))
    return _frame(_UNSUBACK << _TYPE_SHIFT, *parts)
