"""The one message type every transport produces and consumes."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

_uids = itertools.count(1)

# What one message costs in memory besides its payload, topic and properties: the Message
# and its log entry or delivery objects (measured: about 300 bytes on CPython 3.11+).
MESSAGE_OVERHEAD = 256


def next_uid() -> int:
    """Process-unique message identity (shared by every copy queued for many sessions)."""
    return next(_uids)


def bump_uid_floor(floor: int) -> None:
    """Make sure future uids are above `floor` (after loading persisted messages)."""
    global _uids
    current = next(_uids)
    _uids = itertools.count(max(current, floor + 1))


@dataclass(slots=True)
class Message:
    """An application message as published once and routed to many subscribers.

    `qos` and `retain` are what the publisher asked for; each delivery decides its own
    effective QoS (min of this and the subscription's) and retain flag.
    `properties` holds MQTT 5 publish properties that are forwarded (content_type,
    payload_format_indicator, response_topic, correlation_data, user_property, ...);
    `expires_at` is an absolute wall-clock time after which the message is not delivered.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None
    created_at: float = field(default_factory=time.time)
    uid: int = field(default_factory=next_uid)
    # set by the per-topic log (HTTP cursor) once the message is appended
    log_id: int | None = None
    # who published it, for MQTT 5 no_local (client id) and accounting
    origin: str | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now if now is not None else time.time()) >= (
            self.expires_at
        )

    def remaining_expiry(self, now: float | None = None) -> int | None:
        """Seconds left, rounded up, for the MQTT 5 message_expiry_interval on delivery."""
        if self.expires_at is None:
            return None
        left = self.expires_at - (now if now is not None else time.time())
        return max(0, int(left + 0.999))


def approx_size(message: Message) -> int:
    """Bytes a message holds in memory, for the byte bounds of the log and the queues:
    payload + topic + properties + a fixed overhead. O(1) without properties."""
    size = len(message.payload) + len(message.topic) + MESSAGE_OVERHEAD
    if message.properties:
        size += _value_size(message.properties)
    return size


def _value_size(value: Any) -> int:
    # properties hold str/bytes/ints, lists of them, and (name, value) pairs
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, dict):
        return sum(len(k) + _value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_value_size(v) for v in value)
    return 8
