"""The end of an MQTT connection: a close (after what was written), one the server decides, the
will (what and when is the machine's `take_will`; a delayed one waits in `broker.wills`),
then the connection leaves the broker, its session the hub and, on engine=redis, its
client-id lock."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pushwire.mqtt.packets import ReasonCode
from pushwire.mqtt.wills import will_message

if TYPE_CHECKING:
    from pushwire.core.hub import Hub
    from pushwire.core.identity import Identity
    from pushwire.mqtt.broker import MQTTBroker
    from pushwire.mqtt.connection import MQTTConnection
    from pushwire.mqtt.events import Event
    from pushwire.mqtt.session import MqttSession

log = logging.getLogger(__name__)


class Farewell:
    """Mixed into MQTTServerProtocol, which owns these attributes."""

    broker: MQTTBroker
    hub: Hub
    conn: MQTTConnection
    session: MqttSession | None
    transport: asyncio.Transport | None
    _closing: bool
    identity: Identity | None
    admitted_ip: str | None
    _out: list[bytes]
    _sent_at: list[float]
    _acked_at: list[float]

    if TYPE_CHECKING:

        @property
        def peer(self) -> str: ...  # "ip:port", formatted when asked
        def _act(self, events: list[Event]) -> None: ...
        def _flush(self) -> None: ...
        @property
        def client_id(self) -> str: ...

    def _end_session(self) -> None:
        """The connection is lost: it leaves the broker, its will goes out (or waits for
        its delay), and its session detaches from the hub."""
        broker = self.broker
        broker.connections.discard(self)  # broker.unregister, inlined (one call less)
        if self.admitted_ip is not None:
            broker.admission.release(self.admitted_ip)
        identity = self.identity
        if identity is not None and (
            identity.token_id is not None or identity.username is not None
        ):
            broker.untrack_identity(self)  # type: ignore[arg-type]  # (never anonymous)
        session = self.session
        if session is None:
            return
        self.session = None
        self.hub.stats.clients_connected -= 1
        try:
            if self.conn.will is not None:
                self.publish_will(at_once=self.broker.shutting_down)
        except Exception:
            # whatever the will hit, the session must still leave the hub
            log.exception("publishing the will of %s failed", session.client_id)
        finally:
            self.hub.disconnect(session, self)  # type: ignore[arg-type]  # its Link
            if self.broker.handover is not None:
                self.broker.handover.gone(session.client_id)

    def close(self, reason_code: int = ReasonCode.SERVER_SHUTTING_DOWN) -> None:
        """Server-initiated close (shutdown, admin action, revoked rights)."""
        self._act(self.conn.server_close(reason_code))

    def publish_will(self, at_once: bool = False) -> None:
        """Publish the will, if the connection still has one (once); `at_once` ignores
        the will delay (the server is stopping and cannot wait)."""
        due = self.conn.take_will(at_once)
        if due is None:
            return
        will, delay = due
        msg = will_message(will, self.conn.client_id)
        if delay:
            self.broker.wills.schedule(self.conn.client_id, msg, delay)
        else:
            self.hub.publish(msg)

    def _abort(self, reason: str, level: int = logging.DEBUG) -> None:
        """Close after what is already written (CONNACK, DISCONNECT) has been sent."""
        if self._closing:
            return
        if log.isEnabledFor(level):  # the arguments cost more than the check
            log.log(level, "closing %s (%s): %s", self.client_id or "-", self.peer, reason)
        if self._out or self._sent_at or self._acked_at:  # else _flush has nothing to do
            self._flush()
        self._closing = True
        self.conn.close()
        if self.transport is not None:
            self.transport.close()
