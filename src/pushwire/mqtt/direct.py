"""A CONNECT or DISCONNECT read alone, taken straight to the machine's rule.

A (re)connecting device sends CONNECT, waits for CONNACK, and later sends DISCONNECT: each
arrives in a read of its own. For those reads `protocol.py`'s `data_received` skips the
general path (`reading.py`'s `_handle` and `_run`, the machine's `handle` and its event
list, `_act`) and calls `_direct`, which runs the same rules with the same answers and the
same faults, without building event objects (a connect storm's per-connection cost).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pushwire.mqtt import handle_connect
from pushwire.mqtt.events import ConnectIn
from pushwire.mqtt.packets import Connect, Disconnect, Packet, ReasonCode
from pushwire.mqtt.violation import ProtocolViolation

if TYPE_CHECKING:
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import Event

log = logging.getLogger(__name__)

# the packet types a read holding only one of them takes to `_direct`
DIRECT_PACKETS = frozenset((Connect, Disconnect))


class DirectPath:
    """Mixed into MQTTServerProtocol, which owns `conn` and these methods."""

    conn: MQTTConnection

    if TYPE_CHECKING:

        @property
        def peer(self) -> str: ...  # "ip:port", formatted when asked
        def _act(self, events: list[Event]) -> None: ...
        def _abort(self, reason: str, level: int = logging.DEBUG) -> None: ...
        def _authenticate(self, ev: ConnectIn) -> None: ...

    def _direct(self, packet: Packet) -> None:
        """One CONNECT or DISCONNECT, as `_run` would run it through `handle` and `_act`."""
        conn = self.conn
        try:
            # the machine's rules called without its one-line wrappers (`conn.disconnect`,
            # `conn.connect_request`): one call less each, on every connect of a storm
            if type(packet) is Disconnect:
                handle_connect.disconnect(conn, packet)
                self._abort(handle_connect.DISCONNECTED)
                return
            assert isinstance(packet, Connect)
            request = handle_connect.connect_request(conn, packet)
            if isinstance(request, ConnectIn):
                self._authenticate(request)
            else:
                self._act(request)  # refused
        except ProtocolViolation as exc:
            self._act(conn.protocol_error(str(exc), exc.reason_code))
        except Exception:
            # a bug must cost one connection, never the server
            log.exception("error handling %s from %s", type(packet).__name__, self.peer)
            self._act(conn.protocol_error("internal error", ReasonCode.UNSPECIFIED_ERROR))
