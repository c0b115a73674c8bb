"""A slowloris guard for the HTTP listener: a client must finish its request head in time;
and the per-IP connection limits every door shares (`core.admission`).

uvicorn closes idle keep-alive connections (`timeout_keep_alive`, after a response), but it
has no timeout for the request head itself: a client can open a connection and send
nothing, or one header byte every few seconds, and hold the connection (and its memory)
forever. This wraps uvicorn's HTTP protocol class (httptools when installed, else h11, as
uvicorn's "auto" does) with one timer per connection:

- armed when the connection is made, and when bytes of a new request arrive after the
  previous response was complete (a keep-alive connection starting its next request);
- disarmed when the head is complete (uvicorn creates the request's cycle), when the
  connection upgrades to a WebSocket, or when it is lost;
- on expiry: `408 Request Timeout` (only if part of a head arrived) and the connection closed.

Request bodies and responses are not covered (the routes bound body sizes; streams have
their own heartbeats). TLS handshakes are bounded by asyncio's `ssl_handshake_timeout`
(60 s) before this protocol sees the connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, cast

from pushwire.core.admission import Admission
from pushwire.tls import (
    certificate_username,
    forget_certificate_name,
    remember_certificate_name,
)

_BODY = json.dumps(
    {"error": {"code": "request_timeout", "message": "the request head took too long"}}
).encode()
_BODY_429 = json.dumps(
    {"error": {"code": "rate_limited", "message": "too many connections from this address"}}
).encode()
RESPONSE_429 = (
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\n"
    b"content-length: " + str(len(_BODY_429)).encode() + b"\r\n\r\n" + _BODY_429
)
RESPONSE_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class _HeadTimeout(asyncio.Protocol):
    """Mixin placed before uvicorn's HTTP protocol class (see `head_timeout_protocol`)."""

    head_timeout: ClassVar[float] = 10.0
    timeouts_total: ClassVar[int] = 0  # connections closed by the guard (all listeners)
    admission: ClassVar[Admission | None] = None

    _head_timer: asyncio.TimerHandle | None = None
    _head_cycle: object = None
    _head_bytes = False
    _admitted_ip: str | None = None
    _cert_peer: tuple[str, int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        admission = self.admission
        if admission is not None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) else ""
            if admission.admit(ip) is not None:
                # refused before a byte is read: one short answer, then close
                tr = cast(asyncio.Transport, transport)
                tr.write(RESPONSE_429)
                tr.close()
                return
            self._admitted_ip = ip
        name = certificate_username(transport.get_extra_info("peercert"))
        if name is not None:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple):
                self._cert_peer = (str(peer[0]), int(peer[1]))
                remember_certificate_name(self._cert_peer, name)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None:
            cycle: Any = getattr(self, "cycle", None)
            if cycle is None or cycle.response_complete:
                self._arm()  # the first bytes of the next request on a kept-alive connection
        if self._head_timer is not None:
            self._head_bytes = True
        super().data_received(data)
        if self._head_timer is not None and getattr(self, "cycle", None) is not self._head_cycle:
            self._disarm()  # the head is complete

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._disarm()
        cast(Any, super()).handle_websocket_upgrade(*args)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._cert_peer is not None:
            forget_certificate_name(self._cert_peer)
            self._cert_peer = None
        if self._admitted_ip is not None and self.admission is not None:
            self.admission.release(self._admitted_ip)
            self._admitted_ip = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_cycle = getattr(self, "cycle", None)
        self._head_bytes = False
        loop = asyncio.get_running_loop()
        self._head_timer = loop.call_later(self.head_timeout, self._expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expired(self) -> None:
        self._head_timer = None
        transport: asyncio.Transport | None = getattr(self, "transport", None)
        if transport is None or transport.is_closing() or transport.get_protocol() is not self:
            return
        if getattr(self, "cycle", None) is not self._head_cycle:
            return  # the head completed meanwhile
        _HeadTimeout.timeouts_total += 1
        if self._head_bytes:
            transport.write(RESPONSE_408)
        transport.close()


def head_timeouts_total() -> int:
    """Connections the guard closed, since the process started."""
    return _HeadTimeout.timeouts_total


def _uvicorn_http_protocol() -> type[asyncio.Protocol]:
    """The class uvicorn's http="auto" picks."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - httptools is installed with uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return HttpToolsProtocol


def head_timeout_protocol(
    timeout: float, admission: Admission | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the request-head timeout and the per-IP
    connection limits (`uvicorn.Config(http=)`)."""
    base = _uvicorn_http_protocol()
    return cast(
        type[asyncio.Protocol],
        type(
            f"HeadTimeout{base.__name__}",
            (_HeadTimeout, base),
            {"head_timeout": timeout, "admission": admission},
        ),
    )
