"""The few MQTT 5 packets the raw-socket tests need, written from the OASIS MQTT 5.0
specification (helpers/raw.py is 3.1.1): CONNECT and PUBLISH without properties, and the
reason code of a PUBACK/PUBREC/PUBCOMP."""

from __future__ import annotations

import struct

from helpers import raw


def connect(client_id: str, keepalive: int = 30) -> bytes:
    """CONNECT, MQTT 5, clean start, no properties (section 3.1)."""
    body = raw.encode_str("MQTT") + b"\x05\x02" + struct.pack("!H", keepalive) + b"\x00"
    return raw.packet(raw.CONNECT << 4, body + raw.encode_str(client_id))


def publish(topic: str, payload: bytes, qos: int, packet_id: int) -> bytes:
    """PUBLISH QoS 1/2 without properties (section 3.3)."""
    body = raw.encode_str(topic) + struct.pack("!H", packet_id) + b"\x00" + payload
    return raw.packet((raw.PUBLISH << 4) | (qos << 1), body)


def reason(pkt: raw.Packet) -> int:
    """A PUBACK/PUBREC/PUBREL/PUBCOMP's reason code: absent means 0x00 (section 3.4.2.1)."""
    return pkt.body[2] if len(pkt.body) > 2 else 0
