"""The HTTP listener's guard on the request head: a client must finish it in time and keep
it small, and a head the parser rejects gets the JSON error model; plus the per-IP
connection limits every door shares (`core.admission`).

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

Size: the parser (httptools) buffers a header value until it is complete, so an endless
header would grow in memory unseen by uvicorn's callbacks. The guard counts the bytes of
each request head in `data_received`, before the parser sees them: a request line longer
than `max_request_line` is answered `414 URI Too Long`, a head longer than `max_head`
`431 Request Header Fields Too Large`, at once and then the connection is closed. The same
path carries WebSocket upgrade requests and, decrypted, HTTPS.

Malformed requests (a garbage request line, an unknown HTTP version, a bad chunk size): the
parser's error becomes `400` with the JSON error model (uvicorn answers plain text), then
the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, Literal, cast

from pushwire.core.admission import Admission
from pushwire.tls import (
    certificate_username,
    forget_certificate_name,
    remember_certificate_name,
)


def _closing_response(status: str, code: str, message: str, extra: bytes = b"") -> bytes:
    """A complete response with the JSON error model, for a connection about to close."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n".encode()
        + extra
        + b"connection: close\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


RESPONSE_429 = _closing_response(
    "429 Too Many Requests",
    "rate_limited",
    "too many connections from this address",
    b"retry-after: 1\r\n",
)
RESPONSE_408 = _closing_response(
    "408 Request Timeout", "request_timeout", "the request head took too long"
)
RESPONSE_400 = _closing_response("400 Bad Request", "bad_request", "malformed HTTP request")


HeadState = Literal["idle", "head", "body"]


class _HeadGuard(asyncio.Protocol):
    """Mixin placed before uvicorn's HTTP protocol class (see `head_timeout_protocol`)."""

    head_timeout: ClassVar[float] = 10.0
    max_request_line: ClassVar[int] = 8192
    max_head: ClassVar[int] = 16384
    timeouts_total: ClassVar[int] = 0  # connections closed by the guard (all listeners)
    # heads refused (all listeners): too long (414/431), malformed (400)
    refused_total: ClassVar[dict[str, int]] = {"too_long": 0, "malformed": 0}
    admission: ClassVar[Admission | None] = None

    _head_timer: asyncio.TimerHandle | None = None
    _head_cycle: object = None
    _head_bytes = False
    _admitted_ip: str | None = None
    _cert_peer: tuple[str, int] | None = None
    # size accounting: where the parser is (idle: the next byte starts a head), the bytes
    # of the current head so far, whether its request line ended, the last bytes seen
    # (a blank line may straddle two reads)
    _state: HeadState = "idle"
    _head_size = 0
    _line_done = False
    _tail = b""
    _refused = False
    _linger: asyncio.TimerHandle | None = None

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
                self._refused = True
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
        if self._refused:
            return  # answered and closing: the parser sees nothing more
        if self._head_timer is None:
            cycle: Any = getattr(self, "cycle", None)
            if cycle is None or cycle.response_complete:
                self._arm()  # the first bytes of the next request on a kept-alive connection
        if self._head_timer is not None:
            self._head_bytes = True
        if self._state != "body":
            refusal = self._oversize(data)
            if refusal is not None:
                _HeadGuard.refused_total["too_long"] += 1
                self._refuse(refusal)
                return
        super().data_received(data)
        if self._head_timer is not None and getattr(self, "cycle", None) is not self._head_cycle:
            self._disarm()  # the head is complete

    # -- head size ------------------------------------------------------------------------
    # httptools calls these as the parser moves; the guard follows (counting bytes of heads
    # only: bodies are bounded by the routes)

    def on_message_begin(self) -> None:
        self._state = "head"
        cast(Any, super()).on_message_begin()

    def on_headers_complete(self) -> None:
        self._state = "body"
        cast(Any, super()).on_headers_complete()

    def on_message_complete(self) -> None:
        self._state = "idle"
        self._head_size = 0
        self._line_done = False
        self._tail = b""
        cast(Any, super()).on_message_complete()

    def _oversize(self, data: bytes) -> bytes | None:
        """Count `data` into the current head, before the parser buffers it: the refusal
        (414, 431) when the request line or the head is over its limit, else None.

        A read may hold the end of the head and then body bytes (or a pipelined request):
        only bytes up to the blank line that ends the head count."""
        start = self._head_size
        size = start + len(data)
        self._head_size = size
        tail, self._tail = self._tail, data[-3:]
        if not self._line_done:
            eol = data.find(b"\n")
            line = size if eol < 0 else start + eol + 1
            self._line_done = eol >= 0
            if line > self.max_request_line:
                return _closing_response(
                    "414 URI Too Long",
                    "uri_too_long",
                    f"the request line is over {self.max_request_line} bytes",
                )
        if size <= self.max_head:
            return None
        end = (tail + data).find(b"\r\n\r\n")
        if end >= 0 and start - len(tail) + end + 4 <= self.max_head:
            return None  # the head ended in time; the rest is not head
        return _closing_response(
            "431 Request Header Fields Too Large",
            "header_fields_too_large",
            f"the request head is over {self.max_head} bytes",
        )

    def send_400_response(self, msg: str) -> None:
        """The parser rejected the bytes (uvicorn would answer in plain text)."""
        _HeadGuard.refused_total["malformed"] += 1
        self._refuse(RESPONSE_400)

    def _refuse(self, response: bytes) -> None:
        """Answer `response` and close; the parser sees nothing more. If a response of an
        earlier request on this connection is under way (pipelining), close without a word
        rather than mix the two.

        A lingering close: closing a socket with unread input makes the kernel send a reset,
        which can destroy the answer before the client reads it (a client still sending its
        huge head). So the write side is shut after the answer (FIN; TLS has no half-close,
        the answer's content-length and `connection: close` say it is complete) and further
        input is discarded, unparsed, until the client closes, for at most `head_timeout`
        seconds."""
        self._refused = True
        self._disarm()
        transport: asyncio.Transport | None = getattr(self, "transport", None)
        if transport is None or transport.is_closing():
            return
        cycle: Any = getattr(self, "cycle", None)
        if cycle is None or cycle.response_complete or not cycle.response_started:
            transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
        self._linger = asyncio.get_running_loop().call_later(self.head_timeout, transport.close)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._disarm()
        cast(Any, super()).handle_websocket_upgrade(*args)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
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
        _HeadGuard.timeouts_total += 1
        if self._head_bytes:
            transport.write(RESPONSE_408)
        transport.close()


def head_timeouts_total() -> int:
    """Connections the guard closed, since the process started."""
    return _HeadGuard.timeouts_total


def heads_refused_total() -> dict[str, int]:
    """Request heads refused since the process started: too_long (414, 431), malformed
    (400)."""
    return dict(_HeadGuard.refused_total)


def head_timeout_protocol(
    timeout: float,
    admission: Admission | None = None,
    *,
    max_request_line: int = 8192,
    max_head: int = 16384,
) -> type[asyncio.Protocol]:
    """uvicorn's httptools HTTP protocol class with the request-head guard (timeout, size
    limits, JSON errors for malformed requests) and the per-IP connection limits
    (`uvicorn.Config(http=)`). httptools, not h11: the size accounting follows its parser
    callbacks (it is a dependency)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    return cast(
        type[asyncio.Protocol],
        type(
            f"HeadGuard{HttpToolsProtocol.__name__}",
            (_HeadGuard, HttpToolsProtocol),
            {
                "head_timeout": timeout,
                "admission": admission,
                "max_request_line": max_request_line,
                "max_head": max_head,
            },
        ),
    )
