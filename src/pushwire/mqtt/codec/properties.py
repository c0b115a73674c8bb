"""MQTT 5 properties (5.0 section 2.2.2): the identifier table, where each may appear, and
their reading and writing."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from pushwire.mqtt.codec import wire
from pushwire.mqtt.codec.errors import PROTOCOL_ERROR, DecodeError
from pushwire.mqtt.codec.primitives import (
    _SMALL_VBI,
    _encode_bin,
    _encode_str,
    _encode_vbi,
    _read_bin,
    _read_byte,
    _read_str,
    _read_u16,
    _read_u32,
    _read_vbi,
)
from pushwire.mqtt.packets import Properties

# assigned, not `from`-imported, so calls on it keep LOAD_METHOD (see wire.py `_U16`)
_U16: Final = wire._U16
_U32: Final = wire._U32

# --- properties (5.0 section 2.2.2.2) -----------------------------------------------------

_BYTE: Final = 0
_U16_KIND: Final = 1
_U32_KIND: Final = 2
_VBI_KIND: Final = 3
_STR_KIND: Final = 4
_BIN_KIND: Final = 5
_PAIR_KIND: Final = 6

_PAYLOAD_FORMAT_INDICATOR: Final = 0x01
_MESSAGE_EXPIRY_INTERVAL: Final = 0x02
_CONTENT_TYPE: Final = 0x03
_RESPONSE_TOPIC: Final = 0x08
_CORRELATION_DATA: Final = 0x09
_SUBSCRIPTION_IDENTIFIER: Final = 0x0B
_SESSION_EXPIRY_INTERVAL: Final = 0x11
_ASSIGNED_CLIENT_IDENTIFIER: Final = 0x12
_SERVER_KEEP_ALIVE: Final = 0x13
_AUTHENTICATION_METHOD: Final = 0x15
_AUTHENTICATION_DATA: Final = 0x16
_REQUEST_PROBLEM_INFORMATION: Final = 0x17
_WILL_DELAY_INTERVAL: Final = 0x18
_REQUEST_RESPONSE_INFORMATION: Final = 0x19
_RESPONSE_INFORMATION: Final = 0x1A
_SERVER_REFERENCE: Final = 0x1C
_REASON_STRING: Final = 0x1F
_RECEIVE_MAXIMUM: Final = 0x21
_TOPIC_ALIAS_MAXIMUM: Final = 0x22
_TOPIC_ALIAS: Final = 0x23
_MAXIMUM_QOS: Final = 0x24
_RETAIN_AVAILABLE: Final = 0x25
_USER_PROPERTY: Final = 0x26
_MAXIMUM_PACKET_SIZE: Final = 0x27
_WILDCARD_SUBSCRIPTION_AVAILABLE: Final = 0x28
_SUBSCRIPTION_IDENTIFIER_AVAILABLE: Final = 0x29
_SHARED_SUBSCRIPTION_AVAILABLE: Final = 0x2A

# identifier -> (snake_case name, wire kind)
_PROPERTY_BY_ID: Final[dict[int, tuple[str, int]]] = {
    _PAYLOAD_FORMAT_INDICATOR: ("payload_format_indicator", _BYTE),
    _MESSAGE_EXPIRY_INTERVAL: ("message_expiry_interval", _U32_KIND),
    _CONTENT_TYPE: ("content_type", _STR_KIND),
    _RESPONSE_TOPIC: ("response_topic", _STR_KIND),
    _CORRELATION_DATA: ("correlation_data", _BIN_KIND),
    _SUBSCRIPTION_IDENTIFIER: ("subscription_identifier", _VBI_KIND),
    _SESSION_EXPIRY_INTERVAL: ("session_expiry_interval", _U32_KIND),
    _ASSIGNED_CLIENT_IDENTIFIER: ("assigned_client_identifier", _STR_KIND),
    _SERVER_KEEP_ALIVE: ("server_keep_alive", _U16_KIND),
    _AUTHENTICATION_METHOD: ("authentication_method", _STR_KIND),
    _AUTHENTICATION_DATA: ("authentication_data", _BIN_KIND),
    _REQUEST_PROBLEM_INFORMATION: ("request_problem_information", _BYTE),
    _WILL_DELAY_INTERVAL: ("will_delay_interval", _U32_KIND),
    _REQUEST_RESPONSE_INFORMATION: ("request_response_information", _BYTE),
    _RESPONSE_INFORMATION: ("response_information", _STR_KIND),
    _SERVER_REFERENCE: ("server_reference", _STR_KIND),
    _REASON_STRING: ("reason_string", _STR_KIND),
    _RECEIVE_MAXIMUM: ("receive_maximum", _U16_KIND),
    _TOPIC_ALIAS_MAXIMUM: ("topic_alias_maximum", _U16_KIND),
    _TOPIC_ALIAS: ("topic_alias", _U16_KIND),
    _MAXIMUM_QOS: ("maximum_qos", _BYTE),
    _RETAIN_AVAILABLE: ("retain_available", _BYTE),
    _USER_PROPERTY: ("user_property", _PAIR_KIND),
    _MAXIMUM_PACKET_SIZE: ("maximum_packet_size", _U32_KIND),
    _WILDCARD_SUBSCRIPTION_AVAILABLE: ("wildcard_subscription_available", _BYTE),
    _SUBSCRIPTION_IDENTIFIER_AVAILABLE: ("subscription_identifier_available", _BYTE),
    _SHARED_SUBSCRIPTION_AVAILABLE: ("shared_subscription_available", _BYTE),
}
_PROPERTY_BY_NAME: Final[dict[str, tuple[int, int]]] = {
    name: (pid, kind) for pid, (name, kind) in _PROPERTY_BY_ID.items()
}

# The spec makes these a Protocol Error unless 0 or 1 ...
_BOOLEAN_PROPERTIES: Final = frozenset(
    {
        _PAYLOAD_FORMAT_INDICATOR,
        _REQUEST_PROBLEM_INFORMATION,
        _REQUEST_RESPONSE_INFORMATION,
        _MAXIMUM_QOS,
        _RETAIN_AVAILABLE,
        _WILDCARD_SUBSCRIPTION_AVAILABLE,
        _SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        _SHARED_SUBSCRIPTION_AVAILABLE,
    }
)
# ... and these a Protocol Error when 0. Topic Alias 0 is left to the connection, which
# answers every out-of-range alias with 0x94 Topic Alias invalid.
_NONZERO_PROPERTIES: Final = frozenset(
    {_RECEIVE_MAXIMUM, _MAXIMUM_PACKET_SIZE, _SUBSCRIPTION_IDENTIFIER}
)


class _PropertyContext:
    """Where a property list sits: which identifiers it may hold (5.0 table 2.2.2.2)."""

    __slots__ = ("allowed", "name", "repeatable")

    def __init__(
        self, name: str, allowed: Iterable[int], repeat_subscription_identifier: bool = False
    ) -> None:
        self.name = name
        self.allowed = frozenset(allowed) | {_USER_PROPERTY}
        # Repeatable properties decode to a list. Only a server-to-client PUBLISH carries
        # one Subscription Identifier per matching subscription.
        self.repeatable = frozenset(
            {_USER_PROPERTY, _SUBSCRIPTION_IDENTIFIER}
            if repeat_subscription_identifier
            else {_USER_PROPERTY}
        )


_ACK_ALLOWED: Final = (_REASON_STRING,)
_MESSAGE_ALLOWED: Final = (
    _PAYLOAD_FORMAT_INDICATOR,
    _MESSAGE_EXPIRY_INTERVAL,
    _CONTENT_TYPE,
    _RESPONSE_TOPIC,
    _CORRELATION_DATA,
)


_NO_PROPERTIES_LENGTH: Final = 0


def _read_property_value(buf: bytes, pos: int, end: int, kind: int, name: str) -> tuple[Any, int]:
    if kind == _BYTE:
        return _read_byte(buf, pos, end, name), pos + 1
    if kind == _U16_KIND:
        return _read_u16(buf, pos, end, name), pos + 2
    if kind == _U32_KIND:
        return _read_u32(buf, pos, end, name), pos + 4
    if kind == _VBI_KIND:
        return _read_vbi(buf, pos, end, name)
    if kind == _STR_KIND:
        return _read_str(buf, pos, end, name)
    if kind == _BIN_KIND:
        return _read_bin(buf, pos, end, name)
    key, pos = _read_str(buf, pos, end, name)
    value, pos = _read_str(buf, pos, end, name)
    return (key, value), pos


def _read_properties(
    buf: bytes, pos: int, end: int, context: _PropertyContext
) -> tuple[Properties, int]:
    length, pos = _read_vbi(buf, pos, end, "property length")
    stop = pos + length
    if stop > end:
        raise DecodeError(f"{context.name} property length exceeds the packet")
    props: Properties = {}
    while pos < stop:
        pid = buf[pos]
        pos += 1
        spec = _PROPERTY_BY_ID.get(pid)
        if spec is None:
            # Identifiers are variable byte integers, but every defined one fits in one byte,
            # so a byte >= 0x80 is as unknown as any other undefined value.
            raise DecodeError(f"unknown property identifier {pid:#04x}")
        name, kind = spec
        if pid not in context.allowed:
            raise DecodeError(f"{name} is not allowed in {context.name}", PROTOCOL_ERROR)
        # Values are bounded by the property list so an overrun is caught as malformed.
        value, pos = _read_property_value(buf, pos, stop, kind, name)
        if pid in _BOOLEAN_PROPERTIES:
            if value > 1:
                raise DecodeError(f"{name} must be 0 or 1, got {value}", PROTOCOL_ERROR)
        elif pid in _NONZERO_PROPERTIES and value == 0:
            raise DecodeError(f"{name} must not be 0", PROTOCOL_ERROR)
        if pid in context.repeatable:
            props.setdefault(name, []).append(value)
        elif name in props:
            raise DecodeError(f"{name} appears twice in {context.name}", PROTOCOL_ERROR)
        else:
            props[name] = value
    return props, stop


def _encode_property_value(kind: int, value: Any) -> bytes:
    if kind == _BYTE:
        return bytes((value,))
    if kind == _U16_KIND:
        return _U16.pack(value)
    if kind == _U32_KIND:
        return _U32.pack(value)
    if kind == _VBI_KIND:
        return _encode_vbi(value)
    if kind == _STR_KIND:
        return _encode_str(value)
    if kind == _BIN_KIND:
        return _encode_bin(bytes(value))
    key, text = value
    return _encode_str(key) + _encode_str(text)


def _encode_properties(properties: Properties) -> bytes:
    if not properties:
        return _SMALL_VBI[_NO_PROPERTIES_LENGTH]
    out = bytearray()
    for name, value in properties.items():
        spec = _PROPERTY_BY_NAME.get(name)
        if spec is None:
            raise ValueError(f"unknown property {name!r}")
        pid, kind = spec
        # user_property is always a list; subscription_identifier is a list on PUBLISH.
        values = value if isinstance(value, list) else (value,)
        for item in values:
            out.append(pid)
            out += _encode_property_value(kind, item)
    return _encode_vbi(len(out)) + out
