"""A WebSocket upgrade request handed from the HTTP connection to the native WebSocket, and
the header helpers the connection uses to spot one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class UpgradeRequest:
    """A WebSocket upgrade request, offered to the native WebSocket once it is this
    connection's turn (`HttpServer.native_websocket`)."""

    __slots__ = (
        "cert_name",
        "client",
        "extra",
        "headers",
        "method",
        "path",
        "query",
        "release",
        "scheme",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        method: bytes,
        path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        extra: bytes,
        client: tuple[str, int] | None,
        cert_name: str | None,
        scheme: str,
        release: Callable[[], None],
    ) -> None:
        self.transport = transport
        self.method = method
        self.path = path  # raw, as sent
        self.query = query
        self.headers = headers  # names in lower case
        self.extra = extra  # bytes the client sent after the request head
        self.client = client
        self.cert_name = cert_name  # the verified TLS client certificate's name
        self.scheme = scheme
        self.release = release  # the per-address admission: call once when it ends


def _is_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"upgrade" and value.lower() == b"websocket" for name, value in headers)


def _first(headers: list[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    for name, value in headers:
        if name == wanted:
            return value
    return None
