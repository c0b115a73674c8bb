"""Refuse URLs whose percent-encoded bytes are not UTF-8, before any route sees them.

Starlette decodes `%ff` (and an encoded surrogate such as `%ed%a0%80`) in a path or a query
value to U+FFFD: `POST /v1/publish/chat/%ff` would publish to `chat/\\ufffd`, a topic the
client never named. This ASGI middleware decodes the raw path and every query value
strictly first and answers 400 (`bad_topic` for a topic or filter in the path,
`bad_request` otherwise) with the error model.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from pushwire.http.errors import error_json

# paths whose tail is a topic or a filter
_TOPIC_PATHS = ("/v1/publish/", "/v1/poll/", "/v1/longpoll/", "/v1/sse/")


def is_utf8(raw: bytes) -> bool:
    if b"%" not in raw and raw.isascii():
        return True
    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def url_problem(scope: Scope) -> tuple[str, str] | None:
    """(code, message) when the request's path or query is not UTF-8; None when it is."""
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and not is_utf8(raw_path):
        path = scope.get("path", "")
        code = "bad_topic" if path.startswith(_TOPIC_PATHS) else "bad_request"
        return code, "the path is not UTF-8 once percent-decoded"
    query = scope.get("query_string", b"")
    if query and not is_utf8(query.replace(b"+", b" ")):
        return "bad_request", "the query string is not UTF-8 once percent-decoded"
    return None


class StrictUrlMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = url_problem(scope)
            if problem is not None:
                if scope["type"] == "http":
                    await error_json(400, *problem)(scope, receive, send)
                else:
                    # before accept: the server answers the handshake with 403
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
