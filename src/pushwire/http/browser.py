"""Browsers: CORS for the web origins the operator trusts (`cors_origins`), and Origin checks
that keep every other web page from using the server through its visitors' browsers.

A browser lets any page send a "simple" cross-site POST and open a WebSocket to any
address, with no CORS check at all; the page cannot read a cross-site response, but the
request has done its work. With anonymous loopback access on (the default), any web page
open on the server's machine could publish, and subscribe through `/v1/ws` or `/mqtt`. So:

- a WebSocket upgrade, and a state-changing request (POST, PUT, PATCH, DELETE), whose
  `Origin` is neither the server's own (the scheme and `Host` of the request) nor listed in
  `cors_origins` is refused: `403` with the JSON error model (`forbidden_origin`);
- requests without `Origin` (curl, SDKs, MQTT clients, same-origin GETs) are unaffected;
- with `cors_origins` set, Starlette's CORS middleware answers preflights and adds
  `Access-Control-Allow-Origin` (and exposes `Pushwire-Gap`, `Pushwire-Cursor`, `ETag`,
  `Last-Event-ID`) for those origins. It wraps the whole app; the owned HTTP protocol
  (http/connection.py) passes every request with `Origin` to the app, hot endpoints
  included, so these rules hold for all of them. `*` trusts every origin.

WebSockets have no CORS: the Origin check is their only protection.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from pushwire.http.errors import error_json
from pushwire.http.state import HttpStats

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXPOSED_HEADERS = ("Pushwire-Gap", "Pushwire-Cursor", "ETag", "Last-Event-ID", "Retry-After")
_HTTP_SCHEME = {"ws": "http", "wss": "https"}


def normalize_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def own_origin(scope: Scope) -> str | None:
    """The origin a page served by this server has: scheme and `Host` of the request."""
    host = _header(scope, b"host")
    if not host:
        return None
    return own_origin_of(str(scope.get("scheme", "http")), host)


def own_origin_of(scheme: str, host: str) -> str | None:
    """`own_origin` from the request's scheme and `Host` (the owned HTTP protocol's form)."""
    if not host:
        return None
    return f"{_HTTP_SCHEME.get(scheme, scheme)}://{host}".lower()


class OriginGuard:
    """ASGI middleware: refuses cross-origin WebSocket upgrades and state-changing requests
    from origins that are not trusted (see the module docstring)."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str], stats: HttpStats) -> None:
        self.app = app
        self.trusted = frozenset(normalize_origin(o) for o in trusted)
        self.any_origin = "*" in self.trusted
        self.stats = stats

    def allows(self, origin: str, scope: Scope) -> bool:
        origin = normalize_origin(origin)
        return self.any_origin or origin in self.trusted or origin == own_origin(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" or (kind == "http" and scope["method"] in STATE_CHANGING):
            origin = _header(scope, b"origin")
            if origin is not None and not self.allows(origin, scope):
                self.stats.forbidden += 1
                message = (
                    f"origin {origin!r} may not use this server from a browser (not the "
                    "server's own origin, and not in cors_origins)"
                )
                if kind == "websocket":
                    await _deny_websocket(scope, receive, send, message)
                else:
                    await error_json(403, "forbidden_origin", message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _deny_websocket(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    """Refuse the handshake with an HTTP 403 (the ASGI websocket.http.response extension,
    which uvicorn has); without it, a plain close."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": {"code": "forbidden_origin", "message": message}}).encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


def install_browser_policy(app: FastAPI, cors_origins: list[str], stats: HttpStats) -> None:
    """The Origin checks, and CORS when `cors_origins` is not empty (outermost, so that
    refusals and errors of trusted origins carry the CORS headers a page needs to read
    them)."""
    app.add_middleware(OriginGuard, trusted=cors_origins, stats=stats)
    if cors_origins:
        origins = [o.strip().rstrip("/") for o in cors_origins]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["*"],
            allow_credentials="*" not in origins,
            expose_headers=list(EXPOSED_HEADERS),
            max_age=600,
        )
