"""The MQTT side of the server: listeners, the set of live connections, delayed wills."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from pushwire.config import Settings
from pushwire.core.admission import Admission, admission_from_settings
from pushwire.core.auth import AuthService
from pushwire.core.hub import Hub
from pushwire.mqtt.connection import Limits
from pushwire.mqtt.packets import ReasonCode
from pushwire.mqtt.protocol import MQTTServerProtocol
from pushwire.mqtt.session import MqttSession
from pushwire.mqtt.turn_budget import TurnBudget
from pushwire.mqtt.wills import DelayedWills

if TYPE_CHECKING:
    from pushwire.mqtt.deadlines import ConnectDeadlines
    from pushwire.mqtt.handover import SessionHandover

log = logging.getLogger(__name__)


class MQTTBroker:
    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        auth: AuthService,
        admission: Admission | None = None,
    ) -> None:
        self.hub = hub
        # the hub's sessions carry MQTT's packet ids and QoS 2 states (mqtt/session.py);
        # set before the hub restores the persistent sessions (server.py)
        hub.session_factory = MqttSession
        self.settings = settings
        # what every connection's protocol machine grants, computed once
        self.limits = Limits.from_settings(settings)
        self.auth = auth
        # live connections by token id and by username, to close them on revocation
        self._by_token: dict[str, set[MQTTServerProtocol]] = {}
        self._by_user: dict[str, set[MQTTServerProtocol]] = {}
        auth.on_revoked(self._token_revoked)
        auth.on_user_removed(self._user_removed)
        self.connections: set[MQTTServerProtocol] = set()
        self.shutting_down = False
        self._servers: list[asyncio.Server] = []
        self.wills = DelayedWills(hub)
        self.admission = admission or admission_from_settings(settings)
        # engine=redis: a CONNECT first takes its client id from whichever node holds it
        self.handover: SessionHandover | None = None
        # the loop the listeners run on, for their connections (looking it up costs a
        # getpid() syscall per connection)
        self.loop: asyncio.AbstractEventLoop | None = None
        # the CONNECT deadlines of new connections, on shared timers (made by the first)
        self.connect_deadlines: ConnectDeadlines | None = None
        # the MQTT bytes one loop turn decodes, across all connections
        self.read_budget = TurnBudget(settings.mqtt_read_bytes_per_turn)

    # -- connections -----------------------------------------------------------------

    def admit(self, ip: str) -> str | None:
        """Per-IP limits for a new connection: None to admit, else why not."""
        return self.admission.admit(ip)

    def track_identity(self, conn: MQTTServerProtocol) -> None:
        identity = conn.identity
        if identity is None:
            return
        if identity.token_id is not None:
            self._by_token.setdefault(identity.token_id, set()).add(conn)
        if identity.username is not None:
            self._by_user.setdefault(identity.username, set()).add(conn)

    def untrack_identity(self, conn: MQTTServerProtocol) -> None:
        identity = conn.identity
        if identity is None or (identity.token_id is None and identity.username is None):
            return  # never tracked (anonymous)
        for index, key in ((self._by_token, identity.token_id), (self._by_user, identity.username)):
            if key is None:
                continue
            conns = index.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del index[key]

    def _token_revoked(self, token_id: str) -> None:
        for conn in list(self._by_token.get(token_id, ())):
            log.info("closing %s: its token was revoked or expired", conn.client_id)
            conn.close(ReasonCode.NOT_AUTHORIZED)

    def _user_removed(self, username: str) -> None:
        for conn in list(self._by_user.get(username, ())):
            log.info("closing %s: user %s was removed", conn.client_id, username)
            conn.close(ReasonCode.NOT_AUTHORIZED)

    # -- listeners -------------------------------------------------------------------

    async def listen(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        reuse_port: bool = False,
    ) -> tuple[str, int]:
        loop = self.loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: MQTTServerProtocol(self),
            host,
            port,
            ssl=ssl_context,
            backlog=4096,
            reuse_port=reuse_port,  # --workers: one socket per worker on the same port
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def close(self) -> None:
        """Publish the wills that are due, stop accepting, then close every client
        connection cleanly. The server closing a connection is a reason to send its will
        (MQTT-3.1.2-8), and a delayed will cannot wait for a process that is ending: all go
        out now, before the connections that would receive them close."""
        self.shutting_down = True
        for conn in list(self.connections):
            try:
                conn.publish_will(at_once=True)
            except Exception:
                log.exception("publishing the will of %s at shutdown failed", conn.client_id)
        self.wills.publish_all()
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close(ReasonCode.SERVER_SHUTTING_DOWN)
        for server in self._servers:
            await server.wait_closed()
        # give transports a moment to deliver the close to their peers
        for _ in range(50):
            if not self.connections:
                break
            await asyncio.sleep(0.01)
