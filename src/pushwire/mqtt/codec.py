"""Sans-IO MQTT codec: bytes to packet dataclasses (`packets.py`) and back.

Covers MQTT 3.1.1 (protocol level 4) and MQTT 5.0 (protocol level 5). No sockets, no
asyncio: the connection feeds received bytes to a `Decoder` and writes what `encode` returns.

Spec sections followed (3.1.1 = OASIS Standard 29 October 2014, 5.0 = OASIS Standard
7 March 2019):

- data representation: 3.1.1 section 1.5, 5.0 section 1.5 (two/four byte integers, UTF-8
  strings without U+0000 and ill-formed sequences, variable byte integers of at most four
  bytes, binary data, string pairs);
- fixed header, packet types and their flag bits: 3.1.1 section 2.2, 5.0 section 2.1;
- packet identifiers: 3.1.1 section 2.3.1, 5.0 section 2.2.1;
- properties: 5.0 section 2.2.2 (identifier table 2.2.2.2);
- reason codes: 5.0 section 2.4;
- control packets: 3.1.1 sections 3.1-3.14, 5.0 sections 3.1-3.15;
- topic names: 3.1.1 section 4.7, 5.0 section 4.7; error handling: 5.0 section 4.13.

Every `DecodeError` carries the MQTT 5 reason code the connection should report in a
CONNACK or DISCONNECT (at level 4 the connection just closes). Choices where the specs leave
the code open:

- zero packet identifier where one is required, truncated or trailing bytes, ill-formed
  strings, unknown property identifiers: 0x81 Malformed Packet;
- PUBLISH topic name containing ``+`` or ``#``: 0x90 Topic Name invalid at level 5 (the code
  v5 defines for an unacceptable topic name), 0x82 Protocol Error at level 4;
- property present twice, not allowed in that packet, or outside its value range (boolean
  properties other than 0/1; zero Receive Maximum, Maximum Packet Size or Subscription
  Identifier), Subscription Identifier in a client's PUBLISH, and reason codes the spec does
  not define for that packet: 0x82 Protocol Error (5.0 section 4.13.1).

Left to the connection on purpose: topic filter syntax (answered with a SUBACK failure code),
Will Topic syntax (answered with CONNACK 0x90), Topic Alias values (0 and anything above the
negotiated maximum are 0x94), No Local on a shared subscription, packet-identifier state, a
second CONNECT, and the packet order in general.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Final

from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    PubAckRun,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    ReasonCode,
    Suback,
    Subscribe,
    SubscriptionOptions,
    Unsuback,
    Unsubscribe,
    Will,
)

__all__ = [
    "DecodeError",
    "Decoder",
    "PacketTooLarge",
    "UnsupportedProtocolVersion",
    "encode",
    "encode_publish_plain",
    "encode_publish_template",
    "patch_publish",
]

MALFORMED_PACKET: Final = int(ReasonCode.MALFORMED_PACKET)
PROTOCOL_ERROR: Final = int(ReasonCode.PROTOCOL_ERROR)
UNSUPPORTED_PROTOCOL_VERSION: Final = int(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
TOPIC_NAME_INVALID: Final = int(ReasonCode.TOPIC_NAME_INVALID)
PACKET_TOO_LARGE: Final = int(ReasonCode.PACKET_TOO_LARGE)

DEFAULT_MAX_PACKET_SIZE: Final = 1_048_576


class DecodeError(Exception):
    """Bytes that break the spec.

    reason_code is the MQTT 5 reason code to report (0x81 Malformed Packet by default).
    packets holds the packets that were decoded completely, in the same `feed` call, before
    the violation: the connection may still act on them before it closes.
    """

    def __init__(self, message: str, reason_code: int = MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.packets: list[Packet] = []


class UnsupportedProtocolVersion(DecodeError):
    """CONNECT with protocol name MQTT and a level other than 4/5, or MQIsdp (3.1).

    The server answers CONNACK 0x01 (3.1.1) / 0x84 (v5) and closes.
    """

    def __init__(self, message: str, protocol_level: int) -> None:
        super().__init__(message, UNSUPPORTED_PROTOCOL_VERSION)
        self.protocol_level = protocol_level


class PacketTooLarge(DecodeError):
    """The fixed header announced a packet larger than the decoder's max_packet_size."""

    def __init__(self, message: str, packet_size: int, max_packet_size: int) -> None:
        super().__init__(message, PACKET_TOO_LARGE)
        self.packet_size = packet_size
        self.max_packet_size = max_packet_size


# --- wire constants ---------------------------------------------------------------------

_TYPE_SHIFT: Final = 4
_FLAGS_MASK: Final = 0x0F
# PUBREL, SUBSCRIBE and UNSUBSCRIBE carry these fixed-header flags; every other
# non-PUBLISH packet carries 0 (3.1.1 table 2.2, 5.0 table 2-2).
_FLAGS_0010: Final = 0x02

_PUBLISH_DUP: Final = 0x08
_PUBLISH_QOS_SHIFT: Final = 1
_PUBLISH_QOS_MASK: Final = 0x03
_PUBLISH_RETAIN: Final = 0x01
# the QoS bits of a QoS 1 PUBLISH's first byte (QoS 2 sets the other, QoS 3 is refused)
_QOS1_BITS: Final = 1 << _PUBLISH_QOS_SHIFT
_QOS_INVALID: Final = 3

_VBI_CONTINUATION: Final = 0x80
_VBI_VALUE_MASK: Final = 0x7F
_VBI_SHIFT: Final = 7
_VBI_MAX_BYTES: Final = 4
_VBI_MAX: Final = 268_435_455
_U16_MAX: Final = 0xFFFF
_U32_MAX: Final = 0xFFFF_FFFF

_CONNECT_RESERVED: Final = 0x01
_CONNECT_CLEAN_START: Final = 0x02
_CONNECT_WILL: Final = 0x04
_CONNECT_WILL_QOS_SHIFT: Final = 3
_CONNECT_WILL_RETAIN: Final = 0x20
_CONNECT_PASSWORD: Final = 0x40
_CONNECT_USERNAME: Final = 0x80
# reserved, will, will QoS and will retain: the flags whose combinations need checking
_CONNECT_CHECKED_FLAGS: Final = 0x3D

_CONNACK_SESSION_PRESENT: Final = 0x01
_CONNACK_FLAGS_RESERVED: Final = 0xFE
_CONNACK_V311_MAX_RETURN_CODE: Final = 5

_SUB_V311_RESERVED: Final = 0xFC
_SUB_QOS_MASK: Final = 0x03
_SUB_NO_LOCAL: Final = 0x04
_SUB_RETAIN_AS_PUBLISHED: Final = 0x08
_SUB_RETAIN_HANDLING_SHIFT: Final = 4
_SUB_RETAIN_HANDLING_MASK: Final = 0x03
_SUB_RETAIN_HANDLING_INVALID: Final = 3
_SUB_V5_RESERVED: Final = 0xC0

_PROTOCOL_NAME: Final = "MQTT"
_PROTOCOL_NAME_V31: Final = "MQIsdp"
_SUPPORTED_LEVELS: Final = frozenset({PROTOCOL_V311, PROTOCOL_V5})
# the protocol name field of CONNECT as every current client sends it (length 4, "MQTT")
_MQTT_NAME_FIELD: Final = b"\x00\x04MQTT"
# a CONNECT's variable header up to its client id's length: name field, level, flags,
# keep alive, client id length (3.1.1: no properties)
_CONNECT_311_HEAD: Final = struct.Struct(">6sBBHH")
_CONNECT_311_HEAD_END: Final = 2 + _CONNECT_311_HEAD.size  # after the fixed header's 2 bytes

_CONNECT: Final = int(PacketType.CONNECT)
# a CONNECT's first byte (its flags must be 0)
_CONNECT_BYTE0: Final = _CONNECT << 4
_CONNACK: Final = int(PacketType.CONNACK)
_PUBLISH: Final = int(PacketType.PUBLISH)
_PUBACK: Final = int(PacketType.PUBACK)
_PUBREC: Final = int(PacketType.PUBREC)
_PUBREL: Final = int(PacketType.PUBREL)
_PUBCOMP: Final = int(PacketType.PUBCOMP)
_SUBSCRIBE: Final = int(PacketType.SUBSCRIBE)
_SUBACK: Final = int(PacketType.SUBACK)
_UNSUBSCRIBE: Final = int(PacketType.UNSUBSCRIBE)
_UNSUBACK: Final = int(PacketType.UNSUBACK)
_PINGREQ: Final = int(PacketType.PINGREQ)
_PINGRESP: Final = int(PacketType.PINGRESP)
_DISCONNECT: Final = int(PacketType.DISCONNECT)
_AUTH: Final = int(PacketType.AUTH)

_SERVER_ONLY_TYPES: Final = frozenset({_CONNACK, _SUBACK, _UNSUBACK, _PINGRESP})
_CLIENT_ONLY_TYPES: Final = frozenset({_CONNECT, _SUBSCRIBE, _UNSUBSCRIBE, _PINGREQ})
_FLAGS_0010_TYPES: Final = frozenset({_PUBREL, _SUBSCRIBE, _UNSUBSCRIBE})

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")

# --- reason codes each packet may carry (5.0 section 2.4 and each packet's section) -----


def _codes(names: str) -> frozenset[int]:
    return frozenset(int(ReasonCode[name]) for name in names.split())


_CONNACK_CODES_V5: Final = _codes(
    """
    SUCCESS UNSPECIFIED_ERROR MALFORMED_PACKET PROTOCOL_ERROR IMPLEMENTATION_SPECIFIC_ERROR
    UNSUPPORTED_PROTOCOL_VERSION CLIENT_IDENTIFIER_NOT_VALID BAD_USER_NAME_OR_PASSWORD
    NOT_AUTHORIZED SERVER_UNAVAILABLE SERVER_BUSY BANNED BAD_AUTHENTICATION_METHOD
    TOPIC_NAME_INVALID PACKET_TOO_LARGE QUOTA_EXCEEDED PAYLOAD_FORMAT_INVALID
    RETAIN_NOT_SUPPORTED QOS_NOT_SUPPORTED USE_ANOTHER_SERVER SERVER_MOVED
    CONNECTION_RATE_EXCEEDED
    """
)
_PUBACK_CODES_V5: Final = _codes(
    """
    SUCCESS NO_MATCHING_SUBSCRIBERS UNSPECIFIED_ERROR IMPLEMENTATION_SPECIFIC_ERROR
    NOT_AUTHORIZED TOPIC_NAME_INVALID PACKET_IDENTIFIER_IN_USE QUOTA_EXCEEDED
    PAYLOAD_FORMAT_INVALID
    """
)
_PUBREL_CODES_V5: Final = _codes("SUCCESS PACKET_IDENTIFIER_NOT_FOUND")
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
_DISCONNECT_CODES_V5: Final = _codes(
    """
    SUCCESS DISCONNECT_WITH_WILL UNSPECIFIED_ERROR MALFORMED_PACKET PROTOCOL_ERROR
    IMPLEMENTATION_SPECIFIC_ERROR NOT_AUTHORIZED SERVER_BUSY SERVER_SHUTTING_DOWN
    KEEP_ALIVE_TIMEOUT SESSION_TAKEN_OVER TOPIC_FILTER_INVALID TOPIC_NAME_INVALID
    RECEIVE_MAXIMUM_EXCEEDED TOPIC_ALIAS_INVALID PACKET_TOO_LARGE MESSAGE_RATE_TOO_HIGH
    QUOTA_EXCEEDED ADMINISTRATIVE_ACTION PAYLOAD_FORMAT_INVALID RETAIN_NOT_SUPPORTED
    QOS_NOT_SUPPORTED USE_ANOTHER_SERVER SERVER_MOVED SHARED_SUBSCRIPTIONS_NOT_SUPPORTED
    CONNECTION_RATE_EXCEEDED MAXIMUM_CONNECT_TIME SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED
    """
)
# 0x18 Continue authentication, 0x19 Re-authenticate: not in ReasonCode (server-side enum).
_AUTH_CODES_V5: Final = frozenset({int(ReasonCode.SUCCESS), 0x18, 0x19})

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

_CONNECT_PROPS: Final = _PropertyContext(
    "CONNECT",
    (
        _SESSION_EXPIRY_INTERVAL,
        _AUTHENTICATION_METHOD,
        _AUTHENTICATION_DATA,
        _REQUEST_PROBLEM_INFORMATION,
        _REQUEST_RESPONSE_INFORMATION,
        _RECEIVE_MAXIMUM,
        _TOPIC_ALIAS_MAXIMUM,
        _MAXIMUM_PACKET_SIZE,
    ),
)
_WILL_PROPS: Final = _PropertyContext("Will", (*_MESSAGE_ALLOWED, _WILL_DELAY_INTERVAL))
_CONNACK_PROPS: Final = _PropertyContext(
    "CONNACK",
    (
        _SESSION_EXPIRY_INTERVAL,
        _ASSIGNED_CLIENT_IDENTIFIER,
        _SERVER_KEEP_ALIVE,
        _AUTHENTICATION_METHOD,
        _AUTHENTICATION_DATA,
        _RESPONSE_INFORMATION,
        _SERVER_REFERENCE,
        _REASON_STRING,
        _RECEIVE_MAXIMUM,
        _TOPIC_ALIAS_MAXIMUM,
        _MAXIMUM_QOS,
        _RETAIN_AVAILABLE,
        _MAXIMUM_PACKET_SIZE,
        _WILDCARD_SUBSCRIPTION_AVAILABLE,
        _SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        _SHARED_SUBSCRIPTION_AVAILABLE,
    ),
)
# MQTT-3.3.4-6: a client's PUBLISH must not carry a Subscription Identifier.
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
_SUBSCRIBE_PROPS: Final = _PropertyContext("SUBSCRIBE", (_SUBSCRIPTION_IDENTIFIER,))
_SUBACK_PROPS: Final = _PropertyContext("SUBACK", _ACK_ALLOWED)
_UNSUBSCRIBE_PROPS: Final = _PropertyContext("UNSUBSCRIBE", ())
_UNSUBACK_PROPS: Final = _PropertyContext("UNSUBACK", _ACK_ALLOWED)
_DISCONNECT_PROPS: Final = _PropertyContext(
    "DISCONNECT", (_SESSION_EXPIRY_INTERVAL, _SERVER_REFERENCE, _REASON_STRING)
)
_AUTH_PROPS: Final = _PropertyContext(
    "AUTH", (_AUTHENTICATION_METHOD, _AUTHENTICATION_DATA, _REASON_STRING)
)

_NO_PROPERTIES_LENGTH: Final = 0


# --- fixed header validation --------------------------------------------------------------


def _first_byte_error(byte0: int, level: int, server_side: bool) -> tuple[str, int] | None:
    ptype = byte0 >> _TYPE_SHIFT
    flags = byte0 & _FLAGS_MASK
    if ptype == 0:
        return "packet type 0 is reserved", MALFORMED_PACKET
    if ptype == _AUTH and level != PROTOCOL_V5:
        return "AUTH does not exist in MQTT 3.1.1", MALFORMED_PACKET
    name = PacketType(ptype).name
    if ptype == _PUBLISH:
        qos = (flags >> _PUBLISH_QOS_SHIFT) & _PUBLISH_QOS_MASK
        if qos == _QOS_INVALID:
            return "PUBLISH with QoS 3", MALFORMED_PACKET
        if qos == 0 and flags & _PUBLISH_DUP:
            reason = PROTOCOL_ERROR if level == PROTOCOL_V5 else MALFORMED_PACKET
            return "PUBLISH QoS 0 with DUP set (MQTT-3.3.1-2)", reason
    else:
        expected = _FLAGS_0010 if ptype in _FLAGS_0010_TYPES else 0
        if flags != expected:
            return f"{name} with fixed header flags {flags:#06b}", MALFORMED_PACKET
    if server_side and ptype in _SERVER_ONLY_TYPES:
        return f"{name} is sent only by a server", PROTOCOL_ERROR
    if not server_side and ptype in _CLIENT_ONLY_TYPES:
        return f"{name} is sent only by a client", PROTOCOL_ERROR
    return None


# One lookup per packet instead of a chain of checks: (is_v5, server_side) -> 256 entries.
_HEADER_ERRORS: Final[dict[tuple[bool, bool], tuple[tuple[str, int] | None, ...]]] = {
    (is_v5, side): tuple(
        _first_byte_error(b, PROTOCOL_V5 if is_v5 else PROTOCOL_V311, side) for b in range(256)
    )
    for is_v5 in (False, True)
    for side in (False, True)
}


# --- primitive readers (bounded by the end of the packet or property list) -----------------


def _read_remaining_length(buf: bytes, pos: int, available: int) -> tuple[int, int]:
    """Remaining length starting at pos; (-1, -1) when its bytes have not all arrived."""
    value = 0
    shift = 0
    for index in range(pos, pos + _VBI_MAX_BYTES):
        if index >= available:
            return -1, -1
        byte = buf[index]
        value |= (byte & _VBI_VALUE_MASK) << shift
        if byte < _VBI_CONTINUATION:
            return value, index + 1
        shift += _VBI_SHIFT
    raise DecodeError("remaining length longer than four bytes")


def _read_vbi(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    value = 0
    shift = 0
    for index in range(pos, pos + _VBI_MAX_BYTES):
        if index >= end:
            raise DecodeError(f"{what} truncated")
        byte = buf[index]
        value |= (byte & _VBI_VALUE_MASK) << shift
        if byte < _VBI_CONTINUATION:
            return value, index + 1
        shift += _VBI_SHIFT
    raise DecodeError(f"{what} longer than four bytes")


def _read_byte(buf: bytes, pos: int, end: int, what: str) -> int:
    if pos >= end:
        raise DecodeError(f"{what} missing")
    return buf[pos]


def _read_u16(buf: bytes, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise DecodeError(f"{what} truncated")
    return (buf[pos] << 8) | buf[pos + 1]


def _read_u32(buf: bytes, pos: int, end: int, what: str) -> int:
    if pos + 4 > end:
        raise DecodeError(f"{what} truncated")
    value: int = _U32.unpack_from(buf, pos)[0]
    return value


def _read_packet_id(buf: bytes, pos: int, end: int, name: str) -> int:
    if pos + 2 > end:
        raise DecodeError(f"{name} packet identifier truncated")
    packet_id = (buf[pos] << 8) | buf[pos + 1]
    if packet_id == 0:
        raise DecodeError(f"{name} with packet identifier 0")
    return packet_id


def _read_bin(buf: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    length = _read_u16(buf, pos, end, f"{what} length")
    pos += 2
    stop = pos + length
    if stop > end:
        raise DecodeError(f"{what} longer than the packet")
    return buf[pos:stop], stop


def _utf8(raw: bytes, what: str) -> str:
    # Python's strict codec rejects overlong forms and encoded surrogates (MQTT-1.5.4-1).
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not well-formed UTF-8") from None
    if "\x00" in text:
        raise DecodeError(f"{what} contains U+0000")
    return text


def _read_str(buf: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    raw, pos = _read_bin(buf, pos, end, what)
    return _utf8(raw, what), pos


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


def _expect_end(pos: int, end: int, name: str) -> None:
    if pos != end:
        raise DecodeError(f"{name} has {end - pos} unexpected trailing bytes")


def _check_reason(reason: int, valid: frozenset[int], name: str) -> None:
    if reason not in valid:
        raise DecodeError(f"{name} with undefined reason code {reason:#04x}", PROTOCOL_ERROR)


# --- packet decoders ------------------------------------------------------------------------
# Each takes (buffer, first byte, body start, body end, protocol level, server side); the
# body is buf[start:end] and nothing outside it may be read.

_PacketDecoder = Callable[[bytes, int, int, int, int, bool], Packet]


def _decode_connect(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Connect:
    if start + 10 <= end and buf[start : start + 6] == _MQTT_NAME_FIELD:
        # the usual fixed part ("MQTT", level, flags, keep alive) read in one go: every
        # reconnecting device sends one (connect storms); anything else takes the long way
        protocol_name = _PROTOCOL_NAME
        protocol_level = buf[start + 6]
        flags = buf[start + 7]
        keepalive = (buf[start + 8] << 8) | buf[start + 9]
        pos = start + 10
        if protocol_level not in _SUPPORTED_LEVELS:
            raise UnsupportedProtocolVersion(
                f"unsupported protocol {protocol_name} level {protocol_level}", protocol_level
            )
    else:
        protocol_name, pos = _read_str(buf, start, end, "protocol name")
        if protocol_name not in (_PROTOCOL_NAME, _PROTOCOL_NAME_V31):
            raise DecodeError(f"unknown protocol name {protocol_name!r}", PROTOCOL_ERROR)
        protocol_level = _read_byte(buf, pos, end, "protocol level")
        pos += 1
        if protocol_name == _PROTOCOL_NAME_V31 or protocol_level not in _SUPPORTED_LEVELS:
            raise UnsupportedProtocolVersion(
                f"unsupported protocol {protocol_name} level {protocol_level}", protocol_level
            )
        flags = _read_byte(buf, pos, end, "connect flags")
        keepalive = _read_u16(buf, pos + 1, end, "keep alive")
        pos += 3
    will_flag = flags & _CONNECT_WILL
    will_qos = (flags >> _CONNECT_WILL_QOS_SHIFT) & _PUBLISH_QOS_MASK
    will_retain = flags & _CONNECT_WILL_RETAIN
    has_username = flags & _CONNECT_USERNAME
    has_password = flags & _CONNECT_PASSWORD
    if flags & _CONNECT_CHECKED_FLAGS:  # none of these is set in a CONNECT without a will
        if flags & _CONNECT_RESERVED:
            raise DecodeError("CONNECT reserved flag is set")
        if not will_flag and (will_qos or will_retain):
            raise DecodeError("CONNECT will QoS/retain set without the will flag")
        if will_qos == _QOS_INVALID:
            raise DecodeError("CONNECT will QoS 3")
    if protocol_level == PROTOCOL_V311 and has_password and not has_username:
        raise DecodeError("CONNECT password without user name (MQTT-3.1.2-22)")
    properties: Properties = {}
    if protocol_level == PROTOCOL_V5:
        properties, pos = _read_properties(buf, pos, end, _CONNECT_PROPS)
        if "authentication_data" in properties and "authentication_method" not in properties:
            raise DecodeError("authentication data without a method", PROTOCOL_ERROR)
    stop = pos + 2 + ((buf[pos] << 8) | buf[pos + 1]) if pos + 2 <= end else end + 1
    raw = buf[pos + 2 : stop]
    if stop <= end and raw.isascii() and b"\x00" not in raw:
        client_id = raw.decode("ascii")  # what _read_str would return, without its checks
        pos = stop
    else:
        client_id, pos = _read_str(buf, pos, end, "client identifier")
    will = None
    if will_flag:
        will_properties: Properties = {}
        if protocol_level == PROTOCOL_V5:
            will_properties, pos = _read_properties(buf, pos, end, _WILL_PROPS)
        will_topic, pos = _read_str(buf, pos, end, "will topic")
        will_payload, pos = _read_bin(buf, pos, end, "will payload")
        will = Will(will_topic, will_payload, will_qos, bool(will_retain), will_properties)
    username = None
    if has_username:
        username, pos = _read_str(buf, pos, end, "user name")
    password = None
    if has_password:
        password, pos = _read_bin(buf, pos, end, "password")
    if pos != end:  # _expect_end, inlined
        raise DecodeError(f"CONNECT has {end - pos} unexpected trailing bytes")
    return Connect(
        client_id,
        protocol_level,
        protocol_name,
        bool(flags & _CONNECT_CLEAN_START),
        keepalive,
        username,
        password,
        will,
        properties,
    )


def _connect_level(buf: bytes, start: int, end: int, default: int) -> int:
    """The supported protocol level a CONNECT announces, or default if it has none."""
    try:
        protocol_name, pos = _read_str(buf, start, end, "protocol name")
        protocol_level = _read_byte(buf, pos, end, "protocol level")
    except DecodeError:
        return default
    if protocol_name == _PROTOCOL_NAME and protocol_level in _SUPPORTED_LEVELS:
        return protocol_level
    return default


def _decode_connack(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Connack:
    flags = _read_byte(buf, start, end, "CONNACK flags")
    if flags & _CONNACK_FLAGS_RESERVED:
        raise DecodeError("CONNACK reserved flags are set")
    reason = _read_byte(buf, start + 1, end, "CONNACK reason code")
    pos = start + 2
    properties: Properties = {}
    if level == PROTOCOL_V5:
        _check_reason(reason, _CONNACK_CODES_V5, "CONNACK")
        properties, pos = _read_properties(buf, pos, end, _CONNACK_PROPS)
    elif reason > _CONNACK_V311_MAX_RETURN_CODE:
        raise DecodeError(f"CONNACK with reserved return code {reason}", PROTOCOL_ERROR)
    _expect_end(pos, end, "CONNACK")
    return Connack(bool(flags & _CONNACK_SESSION_PRESENT), reason, properties)


# topic names seen lately, as bytes -> the checked str: a publisher repeats its topics, and
# the checks (wildcards, U+0000, UTF-8) and the decoding are the same every time. Cleared
# when full, so a client that never repeats a topic costs one dict insert per PUBLISH.
_TOPICS: dict[bytes, str] = {}
_TOPICS_MAX: Final = 4096
_TOPIC_CACHED_BYTES: Final = 256  # longer names are checked each time: the cache stays small


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


def _decode_pingreq(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> PingReq:
    _expect_end(start, end, "PINGREQ")
    return PingReq()


def _decode_pingresp(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> PingResp:
    _expect_end(start, end, "PINGRESP")
    return PingResp()


def _read_reason_and_properties(
    buf: bytes, start: int, end: int, context: _PropertyContext, valid: frozenset[int]
) -> tuple[int, Properties]:
    """DISCONNECT/AUTH v5 body: both parts may be omitted (5.0 sections 3.14.2, 3.15.2)."""
    if start == end:
        return 0, {}
    reason = buf[start]
    _check_reason(reason, valid, context.name)
    if start + 1 == end:
        return reason, {}
    properties, pos = _read_properties(buf, start + 1, end, context)
    _expect_end(pos, end, context.name)
    return reason, properties


def _decode_disconnect(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Disconnect:
    if level != PROTOCOL_V5:
        _expect_end(start, end, "DISCONNECT")
        return Disconnect()
    reason, properties = _read_reason_and_properties(
        buf, start, end, _DISCONNECT_PROPS, _DISCONNECT_CODES_V5
    )
    return Disconnect(reason, properties)


def _decode_auth(
    buf: bytes, byte0: int, start: int, end: int, level: int, server_side: bool
) -> Auth:
    # The header check already rejected AUTH below level 5.
    reason, properties = _read_reason_and_properties(buf, start, end, _AUTH_PROPS, _AUTH_CODES_V5)
    return Auth(reason, properties)


_DECODERS: Final[dict[int, _PacketDecoder]] = {
    _CONNECT: _decode_connect,
    _CONNACK: _decode_connack,
    _PUBLISH: _decode_publish,
    _PUBACK: _ack_decoder(PubAck, _PUBACK_PROPS, _PUBACK_CODES_V5),
    _PUBREC: _ack_decoder(PubRec, _PUBREC_PROPS, _PUBACK_CODES_V5),
    _PUBREL: _ack_decoder(PubRel, _PUBREL_PROPS, _PUBREL_CODES_V5),
    _PUBCOMP: _ack_decoder(PubComp, _PUBCOMP_PROPS, _PUBREL_CODES_V5),
    _SUBSCRIBE: _decode_subscribe,
    _SUBACK: _decode_suback,
    _UNSUBSCRIBE: _decode_unsubscribe,
    _UNSUBACK: _decode_unsuback,
    _PINGREQ: _decode_pingreq,
    _PINGRESP: _decode_pingresp,
    _DISCONNECT: _decode_disconnect,
    _AUTH: _decode_auth,
}
_PUBACK_DECODER: Final = _DECODERS[_PUBACK]


def decode_lone_connect(
    buf: bytes, max_packet_size: int, level: int = PROTOCOL_V311
) -> Connect | None:
    """A read that is exactly one CONNECT (what a (re)connecting client sends first),
    decoded without `Decoder._decode_all`'s framing loop, and without a `Decoder` at all for
    the server's first read (mqtt/connection.py makes one only when a read is anything
    else). None for anything else, and for a CONNECT that fails to decode: the framing loop
    then frames it and raises as always. `buf[0]` must be the CONNECT byte (the caller
    checks it)."""
    size = len(buf)
    if not 2 < size < 130 or buf[1] != size - 2 or size > max_packet_size:
        return None  # one-byte length only (CONNECTs under 128 bytes), nothing after it
    if size >= _CONNECT_311_HEAD_END:
        # the commonest of all: 3.1.1, no will, user name or password, an ASCII client
        # id (_decode_connect's checks for exactly that shape, in one unpack)
        name, lvl, flags, keepalive, id_size = _CONNECT_311_HEAD.unpack_from(buf, 2)
        if (
            name == _MQTT_NAME_FIELD
            and lvl == PROTOCOL_V311
            and not flags & ~_CONNECT_CLEAN_START
            and id_size == size - _CONNECT_311_HEAD_END
        ):
            raw = buf[_CONNECT_311_HEAD_END:]
            if raw.isascii() and b"\x00" not in raw:
                return Connect(
                    raw.decode("ascii"), PROTOCOL_V311, _PROTOCOL_NAME, flags != 0, keepalive
                )
    try:
        return _decode_connect(buf, _CONNECT_BYTE0, 2, size, level, True)
    except DecodeError:
        return None


class Decoder:
    """Incremental decoder for one connection's byte stream.

    protocol_level is 4 until a decoded CONNECT says otherwise (server side); a client-side
    user sets it after sending its CONNECT. server_side=True decodes what a client sends.
    A CONNECT that fails to decode still sets protocol_level when its protocol name and level
    were readable and supported, so the connection can pick the CONNACK format.
    """

    # Starting values as class attributes, set on the instance when they change (every
    # connection makes a decoder; a connect storm's decode one CONNECT and one DISCONNECT).
    protocol_level = PROTOCOL_V311
    # Total size of the packet at the start of _pending once its header is known, so
    # a large packet arriving in many chunks is not re-parsed on every chunk.
    _need = 0
    _error: DecodeError | None = None

    def __init__(
        self,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        server_side: bool = True,
        ack_runs: bool = False,
    ) -> None:
        self.max_packet_size = max_packet_size
        self.server_side = server_side
        # hand over back-to-back plain PUBACKs as one PubAckRun (the server's connections)
        self.ack_runs = ack_runs
        self._pending = bytearray()

    @property
    def idle(self) -> bool:
        """Nothing buffered and no fault: the next read starts at a packet boundary."""
        return not self._pending and self._error is None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Buffer data and return every complete packet decoded, in order.

        Raises DecodeError on the first violation (with the packets decoded before it in
        its `packets` attribute); after that the decoder raises the same error on every call.
        """
        if self._error is not None:
            raise self._error
        pending = self._pending
        if pending:
            pending += data
            if len(pending) < self._need:
                return []
            buf = bytes(pending)
            pending.clear()
        else:
            buf = data if isinstance(data, bytes) else bytes(data)
            if buf and buf[0] == _CONNECT_BYTE0 and self.server_side:
                connect = self._lone_connect(buf)
                if connect is not None:
                    return [connect]
        self._need = 0
        packets: list[Packet] = []
        try:
            pos = self._decode_all(buf, packets)
        except DecodeError as exc:
            exc.packets = packets
            self._error = exc
            raise
        if pos < len(buf):
            pending += buf[pos:]
        return packets

    def _lone_connect(self, buf: bytes) -> Connect | None:
        """`decode_lone_connect`, at this decoder's limits; a CONNECT decoded sets the level
        everything after it is framed at."""
        connect = decode_lone_connect(buf, self.max_packet_size, self.protocol_level)
        if connect is not None:
            self.protocol_level = connect.protocol_level
        return connect

    def _decode_all(self, buf: bytes, packets: list[Packet]) -> int:
        """Decode whole packets from buf into packets; return where the unfinished tail starts."""
        server_side = self.server_side
        max_size = self.max_packet_size
        level = self.protocol_level
        header_errors = _HEADER_ERRORS[level == PROTOCOL_V5, server_side]
        ack_runs = self.ack_runs
        available = len(buf)
        pos = 0
        append = packets.append
        while pos < available:
            byte0 = buf[pos]
            error = header_errors[byte0]
            if error is not None:
                raise DecodeError(*error)
            if pos + 1 >= available:
                break
            length = buf[pos + 1]
            if length < _VBI_CONTINUATION:
                start = pos + 2
            else:
                length, start = _read_remaining_length(buf, pos + 1, available)
                if start < 0:
                    break
            end = start + length
            if end - pos > max_size:
                raise PacketTooLarge(
                    f"packet of {end - pos} bytes exceeds the maximum of {max_size}",
                    end - pos,
                    max_size,
                )
            if end > available:
                self._need = end - pos
                break
            ptype = byte0 >> _TYPE_SHIFT
            if ptype == _PUBLISH:
                if byte0 & _QOS1_BITS and level != PROTOCOL_V5 and start + 2 <= end:
                    # _decode_publish inlined for a 3.1.1 QoS 1 PUBLISH to a topic name
                    # already checked (the cache holds only valid names; an empty one is
                    # refused by the general path); the header check above refused QoS 3,
                    # so these bits mean QoS 1. `topic_stop`: after the packet id.
                    topic_stop = start + 4 + ((buf[start] << 8) | buf[start + 1])
                    topic = _TOPICS.get(buf[start + 2 : topic_stop - 2])
                    if topic and topic_stop <= end:
                        packet_id = (buf[topic_stop - 2] << 8) | buf[topic_stop - 1]
                        if packet_id:
                            append(
                                Publish(
                                    topic,
                                    buf[topic_stop:end],
                                    1,
                                    (byte0 & _PUBLISH_RETAIN) != 0,
                                    (byte0 & _PUBLISH_DUP) != 0,
                                    packet_id,
                                    {},
                                )
                            )
                            pos = end
                            continue
                append(_decode_publish(buf, byte0, start, end, level, server_side))
            elif ptype == _PUBACK:
                if ack_runs and end - start == 2:
                    # a PUBACK with only its packet id: take the ones right behind it in a
                    # tight loop (a subscriber acks a burst of deliveries in one write)
                    ids = [_read_packet_id(buf, start, end, "PUBACK")]
                    pos = end
                    while pos + 4 <= available and buf[pos] == byte0 and buf[pos + 1] == 2:
                        packet_id = (buf[pos + 2] << 8) | buf[pos + 3]
                        if not packet_id:
                            break  # malformed: the general path below says so
                        ids.append(packet_id)
                        pos += 4
                    append(PubAckRun(ids) if len(ids) > 1 else PubAck(ids[0]))
                    continue
                append(_PUBACK_DECODER(buf, byte0, start, end, level, server_side))
            elif ptype == _PINGREQ and start == end:
                append(PingReq())
            elif ptype == _DISCONNECT and start == end:
                append(Disconnect())  # no body: reason 0, no properties, at either level
            elif ptype == _CONNECT and server_side:
                try:
                    connect = _decode_connect(buf, byte0, start, end, level, server_side)
                except DecodeError:
                    # Lets the connection answer a faulty v5 CONNECT with a v5 CONNACK.
                    self.protocol_level = _connect_level(buf, start, end, level)
                    raise
                append(connect)
                # Everything after CONNECT is framed at the level it announced.
                level = self.protocol_level = connect.protocol_level
                header_errors = _HEADER_ERRORS[level == PROTOCOL_V5, server_side]
            else:
                append(_DECODERS[ptype](buf, byte0, start, end, level, server_side))
            pos = end
        return pos


# --- encoding -------------------------------------------------------------------------------

_SMALL_VBI: Final = tuple(bytes((value,)) for value in range(_VBI_CONTINUATION))


def _encode_vbi(value: int) -> bytes:
    if value < _VBI_CONTINUATION:
        if value < 0:
            raise ValueError(f"variable byte integer {value} is negative")
        return _SMALL_VBI[value]
    if value > _VBI_MAX:
        raise ValueError(f"variable byte integer {value} exceeds {_VBI_MAX}")
    out = bytearray()
    while value >= _VBI_CONTINUATION:
        out.append((value & _VBI_VALUE_MASK) | _VBI_CONTINUATION)
        value >>= _VBI_SHIFT
    out.append(value)
    return bytes(out)


def _encode_u16(value: int) -> bytes:
    return _U16.pack(value)


def _encode_bin(data: bytes) -> bytes:
    if len(data) > _U16_MAX:
        raise ValueError(f"field of {len(data)} bytes exceeds {_U16_MAX}")
    return _U16.pack(len(data)) + data


def _encode_str(text: str) -> bytes:
    return _encode_bin(text.encode("utf-8"))


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


def _frame(byte0: int, *parts: bytes) -> bytes:
    length = sum(len(part) for part in parts)
    return b"".join((bytes((byte0,)), _encode_vbi(length), *parts))


def _check_packet_id(packet_id: int | None, name: str) -> int:
    if packet_id is None or not 0 < packet_id <= _U16_MAX:
        raise ValueError(f"{name} needs a packet identifier in 1..65535, got {packet_id}")
    return packet_id


def _encode_connect(packet: Connect, level: int) -> bytes:
    # CONNECT announces its own level, so its layout follows packet.protocol_level.
    is_v5 = packet.protocol_level == PROTOCOL_V5
    flags = _CONNECT_CLEAN_START if packet.clean_start else 0
    will = packet.will
    if will is not None:
        flags |= _CONNECT_WILL | (will.qos << _CONNECT_WILL_QOS_SHIFT)
        if will.retain:
            flags |= _CONNECT_WILL_RETAIN
    if packet.username is not None:
        flags |= _CONNECT_USERNAME
    if packet.password is not None:
        flags |= _CONNECT_PASSWORD
    parts = [
        _encode_str(packet.protocol_name),
        bytes((packet.protocol_level, flags)),
        _encode_u16(packet.keepalive),
    ]
    if is_v5:
        parts.append(_encode_properties(packet.properties))
    parts.append(_encode_str(packet.client_id))
    if will is not None:
        if is_v5:
            parts.append(_encode_properties(will.properties))
        parts.append(_encode_str(will.topic))
        parts.append(_encode_bin(will.payload))
    if packet.username is not None:
        parts.append(_encode_str(packet.username))
    if packet.password is not None:
        parts.append(_encode_bin(packet.password))
    return _frame(_CONNECT << _TYPE_SHIFT, *parts)


def _encode_connack(packet: Connack, level: int) -> bytes:
    if level != PROTOCOL_V5:
        # MQTT 3.1.1: four bytes that depend on two fields only; built once each (connect storms)
        return _CONNACK_311[bool(packet.session_present), packet.reason_code & 0xFF]
    flags = _CONNACK_SESSION_PRESENT if packet.session_present else 0
    head = bytes((flags, packet.reason_code))
    if level == PROTOCOL_V5:
        return _frame(_CONNACK << _TYPE_SHIFT, head, _encode_properties(packet.properties))
    return _frame(_CONNACK << _TYPE_SHIFT, head)


_CONNACK_311: dict[tuple[bool, int], bytes] = {
    (present, code): bytes(
        (_CONNACK << _TYPE_SHIFT, 2, _CONNACK_SESSION_PRESENT if present else 0, code)
    )
    for present in (False, True)
    for code in range(256)
}


# the CONNACK accepting a 3.1.1 CONNECT, prebuilt (what `encode` would return), indexed by
# session present (False: 0, True: 1)
CONNACK_ACCEPTED_311: Final = (_CONNACK_311[False, 0], _CONNACK_311[True, 0])


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


_PINGREQ_BYTES: Final = bytes((_PINGREQ << _TYPE_SHIFT, 0))
_PINGRESP_BYTES: Final = bytes((_PINGRESP << _TYPE_SHIFT, 0))


def _encode_pingreq(packet: PingReq, level: int) -> bytes:
    return _PINGREQ_BYTES


def _encode_pingresp(packet: PingResp, level: int) -> bytes:
    return _PINGRESP_BYTES


def _encode_reason_and_properties(byte0: int, reason_code: int, properties: Properties) -> bytes:
    if not properties:
        if reason_code == 0:
            return _frame(byte0)
        return _frame(byte0, bytes((reason_code,)))
    return _frame(byte0, bytes((reason_code,)), _encode_properties(properties))


def _encode_disconnect(packet: Disconnect, level: int) -> bytes:
    byte0 = _DISCONNECT << _TYPE_SHIFT
    if level != PROTOCOL_V5:
        return _frame(byte0)
    return _encode_reason_and_properties(byte0, packet.reason_code, packet.properties)


def _encode_auth(packet: Auth, level: int) -> bytes:
    if level != PROTOCOL_V5:
        raise ValueError("AUTH exists only in MQTT 5")
    return _encode_reason_and_properties(
        _AUTH << _TYPE_SHIFT, packet.reason_code, packet.properties
    )


_ENCODERS: Final[dict[type, Callable[[Any, int], bytes]]] = {
    Connect: _encode_connect,
    Connack: _encode_connack,
    Publish: _encode_publish_packet,
    PubAck: _encode_ack(_PUBACK, _PUBACK << _TYPE_SHIFT),
    PubRec: _encode_ack(_PUBREC, _PUBREC << _TYPE_SHIFT),
    PubRel: _encode_ack(_PUBREL, (_PUBREL << _TYPE_SHIFT) | _FLAGS_0010),
    PubComp: _encode_ack(_PUBCOMP, _PUBCOMP << _TYPE_SHIFT),
    Subscribe: _encode_subscribe,
    Suback: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    Unsuback: _encode_unsuback,
    PingReq: _encode_pingreq,
    PingResp: _encode_pingresp,
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """Encode packet for a connection at protocol_level (4 or 5).

    Level-5-only fields (properties, reason codes of acks) are dropped at level 4. CONNECT
    is laid out by its own protocol_level. Raises ValueError for values that cannot be put
    on the wire (missing packet id for QoS>0, strings over 65535 bytes, integers out of
    range, unknown property) and TypeError for anything that is not a packet.
    """
    encoder = _ENCODERS.get(type(packet))
    if encoder is None:
        raise TypeError(f"not an MQTT packet: {packet!r}")
    try:
        return encoder(packet, protocol_level)
    except struct.error as exc:  # an integer field out of range
        raise ValueError(f"cannot encode {type(packet).__name__}: {exc}") from exc


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


# topic name -> its encoded field (2-byte length, UTF-8), for PUBLISHes encoded one by one:
# a subscriber gets the same few topics over and over. Bounded like _TOPICS.
_TOPIC_FIELDS: dict[str, bytes] = {}


def _topic_field(topic: str) -> bytes:
    field = _encode_str(topic)
    if len(field) <= _TOPIC_CACHED_BYTES + 2:
        if len(_TOPIC_FIELDS) >= _TOPICS_MAX:
            _TOPIC_FIELDS.clear()
        _TOPIC_FIELDS[topic] = field
    return field


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


# fixed headers of PUBLISH packets shorter than 128 bytes, by first byte and length
_SMALL_HEADS: Final = {
    byte0: tuple(bytes((byte0, n)) for n in range(_VBI_CONTINUATION)) for byte0 in range(0x30, 0x40)
}


# for encoders of several PUBLISHes in one join (mqtt/link.py `send_window`): the topic
# field of a name, cached, and the prebuilt fixed headers
SMALL_PUBLISH_HEADS: Final = _SMALL_HEADS
PACKET_ID: Final = _U16
TOPIC_FIELDS: Final = _TOPIC_FIELDS  # cleared in place when full, never replaced


def topic_field(topic: str) -> bytes:
    """The encoded topic name field (2-byte length, UTF-8), cached per name; raises
    ValueError when too long."""
    field = _TOPIC_FIELDS.get(topic)
    return field if field is not None else _topic_field(topic)


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
