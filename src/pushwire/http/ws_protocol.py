"""uvicorn's WebSocket protocol, refusing a handshake cleanly.

pushwire refuses a WebSocket handshake with an HTTP error response and the JSON error body
(the ASGI `websocket.http.response` extension: 401 for bad credentials, 429 when rate
limited, 400 for a bad URL). uvicorn's sans-I/O protocol sends that response but never
marks the handshake as finished, so when the endpoint returns it logs "ASGI callable
returned without completing handshake" at ERROR for every refused client: a client could
fill the error log at will, and real errors would drown. This subclass marks the handshake
finished once the refusal's last body chunk is sent (as uvicorn's wsproto protocol does).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get(
            "more_body", False
        ):
            self.handshake_complete = True
