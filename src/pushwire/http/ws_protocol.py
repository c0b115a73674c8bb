"""uvicorn's sans-I/O WebSocket protocol, taking over a connection from the owned HTTP
protocol (http/connection.py) at the upgrade, and refusing a handshake cleanly.

Taking over: the owned protocol parsed the upgrade request; it hands the transport and the
request head to this protocol (`websocket_handover`), with the connection's verified client
certificate name, which goes into the scope's `tls` extension (MQTT over WebSocket and the
JSON WebSocket authenticate with it), and the per-address admission, released when the
WebSocket ends.

Refusing: pushwire refuses a WebSocket handshake with an HTTP error response and the JSON
error body (the ASGI `websocket.http.response` extension: 401 for bad credentials, 429 when
rate limited, 400 for a bad URL). uvicorn's sans-I/O protocol sends that response but never
marks the handshake as finished, so when the endpoint returns it logs "ASGI callable
returned without completing handshake" at ERROR for every refused client: a client could
fill the error log at will, and real errors would drown. This subclass marks the handshake
finished once the refusal's last body chunk is sent (as uvicorn's wsproto protocol does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from pushwire.tls import tls_extension


class WebSocketProtocol(WebSocketsSansIOProtocol):
    cert_name: str | None = None
    on_lost: Callable[[], None] | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None and self.scheme == "wss":
            scope["extensions"]["tls"] = tls_extension(self.cert_name)

    def connection_lost(self, exc: Exception | None) -> None:
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get(
            "more_body", False
        ):
            self.handshake_complete = True


class WebSocketHandover:
    """Makes a `WebSocketProtocol` the protocol of an upgraded connection."""

    def __init__(self, config: Config) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.state = ServerState()

    def __call__(
        self, transport: asyncio.Transport, cert_name: str | None, on_lost: Callable[[], None]
    ) -> None:
        protocol = WebSocketProtocol(config=self.config, server_state=self.state, app_state={})
        protocol.cert_name = cert_name
        protocol.on_lost = on_lost
        protocol.connection_made(transport)
        transport.set_protocol(protocol)

    async def shutdown(self, timeout: float, grace: float = 1.0) -> None:
        """WebSockets the server told to close (1001, with their cursors) get `grace`
        seconds to do so; the rest are closed by uvicorn (1012)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.state.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.state.connections):
            conn.shutdown()
        deadline = loop.time() + timeout
        while self.state.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in list(self.state.tasks):
            task.cancel()
