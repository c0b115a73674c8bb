"""The codec's exceptions and the MQTT 5 reason codes they carry."""

from __future__ import annotations

from typing import Final

from pushwire.mqtt.packets import Packet, ReasonCode

MALFORMED_PACKET: Final = int(ReasonCode.MALFORMED_PACKET)
PROTOCOL_ERROR: Final = int(ReasonCode.PROTOCOL_ERROR)
UNSUPPORTED_PROTOCOL_VERSION: Final = int(ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
TOPIC_NAME_INVALID: Final = int(ReasonCode.TOPIC_NAME_INVALID)
PACKET_TOO_LARGE: Final = int(ReasonCode.PACKET_TOO_LARGE)


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
