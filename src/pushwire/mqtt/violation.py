"""The error a well-formed packet at the wrong time raises inside the protocol machine."""

from __future__ import annotations

from pushwire.mqtt.codec.errors import DecodeError
from pushwire.mqtt.packets import ReasonCode


class ProtocolViolation(DecodeError):
    """A well-formed packet at the wrong time; closes the connection."""

    def __init__(self, message: str, reason_code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(message, reason_code)
