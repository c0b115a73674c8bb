"""Fixed-header validation: one table lookup per packet for the first byte (3.1.1 section
2.2, 5.0 section 2.1)."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.codec.errors import MALFORMED_PACKET, PROTOCOL_ERROR
from pushwire.mqtt.codec.wire import (
    _AUTH,
    _CLIENT_ONLY_TYPES,
    _FLAGS_0010,
    _FLAGS_0010_TYPES,
    _FLAGS_MASK,
    _PUBLISH,
    _PUBLISH_DUP,
    _PUBLISH_QOS_MASK,
    _PUBLISH_QOS_SHIFT,
    _QOS_INVALID,
    _SERVER_ONLY_TYPES,
    _TYPE_SHIFT,
)
from pushwire.mqtt.packets import PROTOCOL_V5, PROTOCOL_V311, PacketType

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
