"""PINGREQ/PINGRESP, DISCONNECT and AUTH (3.1.1 sections 3.12-3.14, 5.0 sections 3.12-3.15):
decode and encode."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.codec.primitives import _check_reason, _expect_end, _frame
from pushwire.mqtt.codec.properties import (
    _AUTHENTICATION_DATA,
    _AUTHENTICATION_METHOD,
    _REASON_STRING,
    _SERVER_REFERENCE,
    _SESSION_EXPIRY_INTERVAL,
    _encode_properties,
    _PropertyContext,
    _read_properties,
)
from pushwire.mqtt.codec.wire import _AUTH, _DISCONNECT, _PINGREQ, _PINGRESP, _TYPE_SHIFT, _codes
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    Auth,
    Disconnect,
    PingReq,
    PingResp,
    Properties,
    ReasonCode,
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


_DISCONNECT_PROPS: Final = _PropertyContext(
    "DISCONNECT", (_SESSION_EXPIRY_INTERVAL, _SERVER_REFERENCE, _REASON_STRING)
)
_AUTH_PROPS: Final = _PropertyContext(
    "AUTH", (_AUTHENTICATION_METHOD, _AUTHENTICATION_DATA, _REASON_STRING)
)


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
