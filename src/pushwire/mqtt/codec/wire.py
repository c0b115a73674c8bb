"""Wire constants shared by every packet family: packet types, fixed-header bits, variable
byte integer limits, the 2/4-byte integer structs, and the decoder signature."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from pushwire.mqtt.packets import Packet, PacketType, ReasonCode

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

# The other codec modules bind these (and publish_caches' dicts) by assignment, e.g.
# `_U16: Final = wire._U16`, not `from ... import _U16`: CPython 3.11 compiles
# `name.method(...)` on a `from`-imported name as an attribute load and a call (no
# LOAD_METHOD, so a bound method made per call), and `_U16.pack` is on the hot paths.
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")

# --- reason codes each packet may carry (5.0 section 2.4 and each packet's section) -----
# each packet family's module builds its sets with this


def _codes(names: str) -> frozenset[int]:
    return frozenset(int(ReasonCode[name]) for name in names.split())


# --- packet decoders (one module per packet family, tabled by decoder.py) ----------------
# Each takes (buffer, first byte, body start, body end, protocol level, server side); the
# body is buf[start:end] and nothing outside it may be read.

_PacketDecoder = Callable[[bytes, int, int, int, int, bool], Packet]
