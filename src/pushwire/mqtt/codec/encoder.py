"""`encode`: any packet to bytes, through the per-type encoder table."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from pushwire.mqtt.codec.connect import _encode_connack, _encode_connect
from pushwire.mqtt.codec.control import (
    _encode_auth,
    _encode_disconnect,
    _encode_pingreq,
    _encode_pingresp,
)
from pushwire.mqtt.codec.publish import _encode_ack, _encode_publish_packet
from pushwire.mqtt.codec.subscribe import (
    _encode_suback,
    _encode_subscribe,
    _encode_unsuback,
    _encode_unsubscribe,
)
from pushwire.mqtt.codec.wire import _FLAGS_0010, _PUBACK, _PUBCOMP, _PUBREC, _PUBREL, _TYPE_SHIFT
from pushwire.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
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
