"""Runs a connection's enhanced authentication (mqtt/handle_auth.py) on asyncio: sends what
the exchange decides, arms its `auth_timeout` timer, and hands the result to the
connection. Kept out of protocol.py so the connection needs only a few calls into it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pushwire.mqtt.handle_auth import (
    CONTINUE_AUTHENTICATION,
    Accepted,
    AuthStep,
    Challenge,
    EnhancedAuth,
    Refused,
)
from pushwire.mqtt.packets import Auth, Connack, Connect, Disconnect, ReasonCode

if TYPE_CHECKING:
    from pushwire.mqtt.protocol import MQTTServerProtocol

log = logging.getLogger(__name__)


class AuthLink:
    def __init__(self, proto: MQTTServerProtocol) -> None:
        self.proto = proto
        self.exchange = EnhancedAuth(proto.broker.auth, proto.ip)
        self._timer: asyncio.TimerHandle | None = None
        self._connect: tuple[Connect, str, bool] | None = None  # CONNECT awaiting CONNACK
        self._connack_props: dict[str, Any] = {}

    def connect(self, p: Connect, client_id: str, assigned: bool) -> None:
        """CONNECT named an Authentication Method."""
        self._connect = (p, client_id, assigned)
        self._apply(self.exchange.connect(p.properties, p.username))

    def auth(self, packet: Auth) -> None:
        self._apply(self.exchange.auth(packet))

    def connack_properties(self) -> dict[str, Any]:
        """Authentication Method and Data (server-final-message) for the CONNACK."""
        props, self._connack_props = self._connack_props, {}
        return props

    def _apply(self, step: AuthStep) -> None:
        proto = self.proto
        if isinstance(step, Challenge):
            proto._send(Auth(CONTINUE_AUTHENTICATION, step.properties))
            self._arm()
            return
        self._disarm()
        if isinstance(step, Accepted):
            if self._connect is not None:
                p, client_id, assigned = self._connect
                self._connect = None
                self._connack_props = step.properties
                proto._connect_authenticated(p, client_id, assigned, step.result)
            else:
                proto._send(Auth(ReasonCode.SUCCESS, step.properties))
                log.debug("%s re-authenticated", proto.client_id)
            return
        self._refuse(step)

    def _refuse(self, step: Refused) -> None:
        proto = self.proto
        props = {"reason_string": step.reason}
        if proto.session is None:
            proto._send(Connack(False, step.reason_code, props))
        else:
            proto._send(Disconnect(step.reason_code, props))
        proto._abort(f"enhanced authentication refused: {step.reason}", logging.INFO)

    def _arm(self) -> None:
        self._disarm()
        timeout = self.proto.broker.settings.auth_timeout
        self._timer = asyncio.get_running_loop().call_later(timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        step = self.exchange.timed_out()
        if step is not None:
            self._refuse(step)  # a no-op once the connection is closing
