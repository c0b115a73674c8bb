"""The MQTT connection state machine (sans-IO): bytes in, checked packets out.

Like h11, it owns no socket and no event loop: `receive_data` turns bytes into packets
and enforces the connection-level rules the codec cannot see (CONNECT first and only once,
nothing after DISCONNECT, MQTT 5 topic aliases); `send` encodes packets at the negotiated
protocol level. Every rule here is unit-testable in microseconds.
"""

from __future__ import annotations

import enum

from pushwire.mqtt.codec import DecodeError, Decoder, encode
from pushwire.mqtt.packets import (
    PROTOCOL_V5,
    PROTOCOL_V311,
    Connect,
    Disconnect,
    Packet,
    Publish,
    ReasonCode,
)

# control packet type of CONNECT (the high nibble of the first byte)
_CONNECT_TYPE = 1


class State(enum.Enum):
    AWAIT_CONNECT = "await-connect"
    CONNECTED = "connected"
    CLOSED = "closed"


class ProtocolViolation(DecodeError):
    """A well-formed packet at the wrong time; closes the connection."""

    def __init__(self, message: str, reason_code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(message, reason_code)


class MQTTConnection:
    def __init__(self, max_packet_size: int, topic_alias_maximum: int = 0) -> None:
        self._decoder = Decoder(max_packet_size=max_packet_size, server_side=True)
        self.state = State.AWAIT_CONNECT
        self.protocol_level = PROTOCOL_V311
        # MQTT 5: aliases the client may set, as announced in CONNACK
        self.topic_alias_maximum = topic_alias_maximum
        self._aliases: dict[int, str] = {}
        self._first_byte_seen = False

    @property
    def v5(self) -> bool:
        return self.protocol_level == PROTOCOL_V5

    def receive_data(self, data: bytes) -> list[Packet]:
        """Decode and check; raises DecodeError (or ProtocolViolation) on the first fault.

        The error's `packets` holds the checked packets that came before the fault, so the
        caller can still act on them (a PUBLISH followed by garbage is still delivered)."""
        if self.state is State.CLOSED:
            return []
        if not self._first_byte_seen and data:
            self._first_byte_seen = True
            if data[0] >> 4 != _CONNECT_TYPE:
                # MQTT-3.1.0-1: judged on the first byte, so a partial packet (or one that
                # claims a large body and never sends it) cannot hold the socket open
                self.state = State.CLOSED
                raise ProtocolViolation("first packet must be CONNECT")
        try:
            packets = self._decoder.feed(data)
        except DecodeError as exc:
            if self.state is State.AWAIT_CONNECT:
                # a CONNECT that was readable up to its level: answer at that level
                self.protocol_level = self._decoder.protocol_level
            exc.packets = self._check(exc.packets)
            self.state = State.CLOSED
            raise
        return self._check(packets)

    def _check(self, packets: list[Packet]) -> list[Packet]:
        for i, packet in enumerate(packets):
            try:
                if self.state is State.AWAIT_CONNECT:
                    if not isinstance(packet, Connect):
                        raise ProtocolViolation("first packet must be CONNECT")
                    self.protocol_level = packet.protocol_level
                    self.state = State.CONNECTED
                elif isinstance(packet, Connect):
                    raise ProtocolViolation("second CONNECT on one connection")
                elif isinstance(packet, Publish) and self.v5:
                    self._resolve_alias(packet)
                elif isinstance(packet, Disconnect):
                    # nothing after DISCONNECT counts (MQTT-3.14.4-1/2)
                    self.state = State.CLOSED
                    return packets[: i + 1]
            except ProtocolViolation as exc:
                self.state = State.CLOSED
                exc.packets = packets[:i]
                raise
        return packets

    def _resolve_alias(self, packet: Publish) -> None:
        alias = packet.properties.pop("topic_alias", None)
        if alias is None:
            if not packet.topic:
                raise ProtocolViolation("empty topic without a topic alias")
            return
        if not 0 < alias <= self.topic_alias_maximum:
            raise ProtocolViolation("topic alias out of range", ReasonCode.TOPIC_ALIAS_INVALID)
        if packet.topic:
            self._aliases[alias] = packet.topic
            return
        topic = self._aliases.get(alias)
        if topic is None:
            raise ProtocolViolation("unknown topic alias", ReasonCode.PROTOCOL_ERROR)
        packet.topic = topic

    def send(self, packet: Packet) -> bytes:
        return encode(packet, self.protocol_level)

    def close(self) -> None:
        self.state = State.CLOSED
