"""CONNECT and CONNACK (3.1.1 sections 3.1-3.2, 5.0 sections 3.1-3.2): decode, encode, the
lone-CONNECT shortcut of a connection's first read and the prebuilt 3.1.1 CONNACKs."""

from __future__ import annotations

import struct
from typing import Final

from pushwire.mqtt.codec.errors import PROTOCOL_ERROR, DecodeError, UnsupportedProtocolVersion
from pushwire.mqtt.codec.primitives import (
    _check_reason,
    _encode_bin,
    _encode_str,
    _encode_u16,
    _expect_end,
    _frame,
    _read_bin,
    _read_byte,
    _read_str,
    _read_u16,
)
from pushwire.mqtt.codec.properties import (
    _ASSIGNED_CLIENT_IDENTIFIER,
    _AUTHENTICATION_DATA,
    _AUTHENTICATION_METHOD,
    _MAXIMUM_PACKET_SIZE,
    _MAXIMUM_QOS,
    _MESSAGE_ALLOWED,
    _REASON_STRING,
    _RECEIVE_MAXIMUM,
    _REQUEST_PROBLEM_INFORMATION,
    _REQUEST_RESPONSE_INFORMATION,
    _RESPONSE_INFORMATION,
    _RETAIN_AVAILABLE,
    _SERVER_KEEP_ALIVE,
    _SERVER_REFERENCE,
    _SESSION_EXPIRY_INTERVAL,
    _SHARED_SUBSCRIPTION_AVAILABLE,
    _SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    _TOPIC_ALIAS_MAXIMUM,
    _WILDCARD_SUBSCRIPTION_AVAILABLE,
    _WILL_DELAY_INTERVAL,
    _encode_properties,
    _PropertyContext,
    _read_properties,
)
from pushwire.mqtt.codec.wire import (
    _CONNACK,
    _CONNECT,
    _CONNECT_BYTE0,
    _PUBLISH_QOS_MASK,
    _QOS_INVALID,
    _TYPE_SHIFT,
    _codes,
)
from pushwire.mqtt.packets import PROTOCOL_V5, PROTOCOL_V311, Connack, Connect, Properties, Will

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


_PROTOCOL_NAME: Final = "MQTT"
_PROTOCOL_NAME_V31: Final = "MQIsdp"
_SUPPORTED_LEVELS: Final = frozenset({PROTOCOL_V311, PROTOCOL_V5})
# the protocol name field of CONNECT as every current client sends it (length 4, "MQTT")
_MQTT_NAME_FIELD: Final = b"\x00\x04MQTT"
# a CONNECT's variable header up to its client id's length: name field, level, flags,
# keep alive, client id length (3.1.1: no properties)
_CONNECT_311_HEAD: Final = struct.Struct(">6sBBHH")
_CONNECT_311_HEAD_END: Final = 2 + _CONNECT_311_HEAD.size  # after the fixed header's 2 bytes


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
