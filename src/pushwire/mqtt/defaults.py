"""What an MQTT connection (`protocol.py`) starts with, and the parts it makes only when
first needed.

The starting values are class attributes, set on the instance only when they change: a
connect storm creates thousands of connections a second, most of which end after CONNECT
and DISCONNECT, so every store left out of `__init__` counts, and the instance dict stays
under CPython's 30-key sharing limit (bench/README.md; the guard is
tests/integration/test_connection_freed.py). Reading a class attribute from this base costs
what reading it from the class itself did: CPython's type attribute cache answers both. The
mixins keep their own rarely set state the same way (reading.py, timers.py, login.py).
"""

from __future__ import annotations

import asyncio
from functools import cached_property
from typing import Any

from pushwire.core.ratelimit import TokenBucket
from pushwire.mqtt.acks import AckQueue
from pushwire.mqtt.session import MqttSession


class ConnectionDefaults:
    """Mixed into MQTTServerProtocol: its starting state."""

    transport: asyncio.Transport | None = None
    session: MqttSession | None = None
    _peername: Any = "?"  # the transport's "peername", formatted by `peer` when asked
    ip = "?"
    _out_bytes = 0  # bytes in _out, not yet handed to the transport
    _flush_scheduled = False
    _paused = False  # the client is not reading what we send (pause_writing)
    _closing = False
    admitted_ip: str | None = None  # counted against max_connections_per_ip
    _publish_bucket: TokenBucket | None = None
    # reasons reading.py holds the packets that follow (publish rate, CONNECT being
    # checked, pressure) and its one-read-per-turn yield
    _throttled = False
    _yielding = False
    _backlog_at = 0  # reading.py: _backlog waits from here on
    _auth_pending = False
    _pressured = False
    _registered = False  # admitted in connection_made: connection_lost has work to undo

    @cached_property
    def _acks(self) -> AckQueue:
        """The acks of inbound flows, in order (acks.py): made at the first one, as most
        connections of a connect storm never publish; an instance attribute from then on."""
        return AckQueue(self)  # type: ignore[arg-type]  # mixed into MQTTServerProtocol

    @property
    def peer(self) -> str:
        """ "ip:port" of the client, for logs and the admin API (formatted when asked)."""
        peer = self._peername
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
